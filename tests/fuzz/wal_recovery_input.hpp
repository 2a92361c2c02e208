// How a wal_recovery fuzz input lays out a FileStorage directory, shared by the fuzz target and
// the program that writes its seed corpus:
//
//   byte 0       flags: kSnapshot, kTwoSegments, kFixChecksums (other bits ignored)
//   [kSnapshot]     u32 length, then that many bytes: the snapshot file
//   [kTwoSegments]  u32 length, then that many bytes: segment 1; the rest is segment 2
//   otherwise       the rest is segment 1
//
// Lengths are little-endian and cut to the bytes that remain, so every input means something.
// The snapshot is named after the index in its bytes 8..16 (the index its header claims).
// kFixChecksums rewrites each record's CRC (seeded with the segment's salt, as FileStorage seals
// them) and the snapshot's before recovery, so that mutated records reach the checks past the CRC
// instead of all dying as torn tails.
#pragma once

#include <raft/crc32c.hpp>
#include <raft/detail/wal_format.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <span>
#include <string>
#include <vector>

namespace tenure::fuzz::wal_recovery {

inline constexpr std::uint8_t kSnapshot = 1;
inline constexpr std::uint8_t kTwoSegments = 2;
inline constexpr std::uint8_t kFixChecksums = 4;

inline const std::string kDirectory = "/d";

inline std::string segment_path(std::uint64_t sequence) {
  char name[40];
  std::snprintf(name, sizeof name, "/d/wal-%016llx.log", static_cast<unsigned long long>(sequence));
  return name;
}

inline std::string snapshot_path(std::uint64_t index) {
  char name[40];
  std::snprintf(name, sizeof name, "/d/snap-%016llx.snap", static_cast<unsigned long long>(index));
  return name;
}

/// The files of one input.
struct Layout {
  bool fix_checksums = false;
  bool has_snapshot = false;
  std::vector<std::byte> snapshot;
  std::vector<std::vector<std::byte>> segments;  // segment i + 1
};

namespace detail {

inline std::vector<std::byte> take(std::span<const std::byte>& in, std::size_t n) {
  n = std::min(n, in.size());
  std::vector<std::byte> out(in.begin(), in.begin() + static_cast<std::ptrdiff_t>(n));
  in = in.subspan(n);
  return out;
}

inline std::size_t take_length(std::span<const std::byte>& in) {
  std::byte word[4] = {};
  const std::size_t n = std::min<std::size_t>(4, in.size());
  std::copy_n(in.begin(), n, word);
  in = in.subspan(n);
  return raft::detail::wal::get_u32(word);
}

inline void put_length(std::vector<std::byte>& out, std::size_t n) {
  std::byte word[4];
  raft::detail::wal::put_u32(word, static_cast<std::uint32_t>(n));
  out.insert(out.end(), word, word + 4);
}

}  // namespace detail

inline Layout decode(std::span<const std::byte> in) {
  Layout layout;
  if (in.empty()) {
    return layout;  // an empty directory
  }
  const auto flags = static_cast<std::uint8_t>(in[0]);
  in = in.subspan(1);
  layout.fix_checksums = (flags & kFixChecksums) != 0;
  if ((flags & kSnapshot) != 0) {
    layout.has_snapshot = true;
    layout.snapshot = detail::take(in, detail::take_length(in));
  }
  if ((flags & kTwoSegments) != 0) {
    layout.segments.push_back(detail::take(in, detail::take_length(in)));
  }
  layout.segments.push_back(detail::take(in, in.size()));
  return layout;
}

/// The input that decode() turns into `layout` (the corpus writer's side).
inline std::vector<std::byte> encode(const Layout& layout) {
  std::vector<std::byte> out;
  std::uint8_t flags = layout.fix_checksums ? kFixChecksums : 0;
  flags |= layout.has_snapshot ? kSnapshot : 0;
  flags |= layout.segments.size() == 2 ? kTwoSegments : 0;
  out.push_back(static_cast<std::byte>(flags));
  if (layout.has_snapshot) {
    detail::put_length(out, layout.snapshot.size());
    out.insert(out.end(), layout.snapshot.begin(), layout.snapshot.end());
  }
  if (layout.segments.size() == 2) {
    detail::put_length(out, layout.segments[0].size());
  }
  for (const auto& segment : layout.segments) {
    out.insert(out.end(), segment.begin(), segment.end());
  }
  return out;
}

/// The index a snapshot file claims (its name must match it), or 0 when it is too short to say.
inline std::uint64_t snapshot_index(const std::vector<std::byte>& snapshot) {
  return snapshot.size() >= 16 ? raft::detail::wal::get_u64(snapshot.data() + 8) : 0;
}

/// Rewrites the CRC of every record whose header can be read, front to back, stopping at the
/// first declared length that does not fit. The segment header's CRC is seeded with 0, every
/// other record's with the salt the header holds (bytes 12..16 of its payload).
inline void fix_record_checksums(std::vector<std::byte>& segment) {
  namespace wal = raft::detail::wal;
  const std::uint32_t salt = segment.size() >= wal::kHeaderSize + 16
                                 ? wal::get_u32(segment.data() + wal::kHeaderSize + 12)
                                 : 0;
  std::size_t at = 0;
  while (segment.size() - at >= wal::kHeaderSize) {
    std::byte* r = segment.data() + at;
    const std::uint32_t length = wal::get_u32(r + 4);
    if (length > wal::kMaxPayload || segment.size() - at - wal::kHeaderSize < wal::padded(length)) {
      return;
    }
    wal::put_u32(r, raft::crc32c(std::span<const std::byte>(r + 4, wal::kHeaderSize - 4 + length),
                                 at == 0 ? 0 : salt));
    at += wal::kHeaderSize + wal::padded(length);
  }
}

/// Rewrites a snapshot file's trailing CRC (the last 4 bytes, over everything before them).
inline void fix_snapshot_checksum(std::vector<std::byte>& snapshot) {
  if (snapshot.size() >= 4) {
    raft::detail::wal::put_u32(
        snapshot.data() + snapshot.size() - 4,
        raft::crc32c(std::span<const std::byte>(snapshot.data(), snapshot.size() - 4)));
  }
}

}  // namespace tenure::fuzz::wal_recovery
