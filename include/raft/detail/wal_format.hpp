// The write-ahead log's record format (docs/storage.md): encoding and bounds-checked decoding.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <vector>

#include <raft/crc32c.hpp>
#include <raft/membership.hpp>
#include <raft/message.hpp>
#include <raft/storage.hpp>
#include <raft/types.hpp>

namespace tenure::raft::detail::wal {

// Record layout, every field little-endian, every record a multiple of 8 bytes:
//   0  u32 crc32c of bytes [4, 16 + length), seeded with the segment's salt (0 for the
//      segment header itself): a record is valid only in the segment it was written to, so a
//      payload that holds the image of records cannot pass for them
//   4  u32 length of the payload
//   8  u8  type
//   9  7 bytes, zero
//  16  payload, then zeros up to a multiple of 8
inline constexpr std::size_t kHeaderSize = 16;
inline constexpr std::uint64_t kMagic = 0x314c4157'45525554ull;  // "TENUREWAL1" folded
inline constexpr std::uint32_t kVersion = 1;
/// The largest payload a record may declare: anything larger is corruption, not data.
inline constexpr std::uint32_t kMaxPayload = 256u << 20;

enum class RecordType : std::uint8_t {
  segment_header = 1,  // u64 magic, u32 version, u32 salt, u64 segment sequence
  entry = 2,           // u64 term, u64 index, u8 entry type, 7 zero, data
  hard_state = 3,      // u64 term, u64 vote, u64 commit
  truncate = 4,        // u64 first index removed
  compact = 5,         // u64 index, u64 term: entries up to index are gone
  batch_end = 6,       // u64 write sequence of the batch's last write
};

inline constexpr std::size_t padded(std::size_t n) noexcept {
  return (n + 7) & ~std::size_t{7};
}

inline std::uint32_t get_u32_unchecked(const std::byte* p) noexcept {
  std::uint32_t v = 0;
  for (int i = 0; i < 4; ++i) {
    v |= static_cast<std::uint32_t>(p[i]) << (8 * i);
  }
  return v;
}
inline void put_u32(std::byte* p, std::uint32_t v) noexcept {
  for (int i = 0; i < 4; ++i) {
    p[i] = static_cast<std::byte>(v >> (8 * i));
  }
}
inline void put_u64(std::byte* p, std::uint64_t v) noexcept {
  for (int i = 0; i < 8; ++i) {
    p[i] = static_cast<std::byte>(v >> (8 * i));
  }
}
inline std::uint32_t get_u32(const std::byte* p) noexcept {
  std::uint32_t v = 0;
  for (int i = 0; i < 4; ++i) {
    v |= static_cast<std::uint32_t>(p[i]) << (8 * i);
  }
  return v;
}
inline std::uint64_t get_u64(const std::byte* p) noexcept {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) {
    v |= static_cast<std::uint64_t>(p[i]) << (8 * i);
  }
  return v;
}

/// Appends one record whose payload is `head` followed by `tail` (either may be empty). Its CRC
/// is left zero: seal() fills it in once the segment (and its salt) is known.
inline void append_record(std::vector<std::byte>& out, RecordType type,
                          std::span<const std::byte> head, std::span<const std::byte> tail = {}) {
  const std::size_t length = head.size() + tail.size();
  const std::size_t at = out.size();
  out.resize(at + kHeaderSize + padded(length));  // zero-filled: reserved bytes and padding
  std::byte* r = out.data() + at;
  put_u32(r + 4, static_cast<std::uint32_t>(length));
  r[8] = static_cast<std::byte>(type);
  if (!head.empty()) {
    std::memcpy(r + kHeaderSize, head.data(), head.size());
  }
  if (!tail.empty()) {
    std::memcpy(r + kHeaderSize + head.size(), tail.data(), tail.size());
  }
}

/// Fills in the CRC of every record in `records` (whole records, back to back), seeded with
/// `salt`.
inline void seal(std::span<std::byte> records, std::uint32_t salt) noexcept {
  for (std::size_t at = 0; at + kHeaderSize <= records.size();) {
    std::byte* r = records.data() + at;
    const std::uint32_t length = get_u32_unchecked(r + 4);
    put_u32(r, crc32c(std::span<const std::byte>(r + 4, kHeaderSize - 4 + length), salt));
    at += kHeaderSize + padded(length);
  }
}

inline void append_words(std::vector<std::byte>& out, RecordType type,
                         std::initializer_list<std::uint64_t> words) {
  std::byte head[32];
  std::size_t n = 0;
  for (std::uint64_t w : words) {
    put_u64(head + n, w);
    n += 8;
  }
  append_record(out, type, std::span<const std::byte>(head, n));
}

inline void append_entry(std::vector<std::byte>& out, const EntryView& e) {
  std::byte head[24] = {};
  put_u64(head, e.term);
  put_u64(head + 8, e.index);
  head[16] = static_cast<std::byte>(e.type);
  append_record(out, RecordType::entry, head, e.payload);
}

inline void append_segment_header(std::vector<std::byte>& out, std::uint64_t sequence,
                                  std::uint32_t salt) {
  std::byte head[24] = {};
  put_u64(head, kMagic);
  put_u32(head + 8, kVersion);
  put_u32(head + 12, salt);
  put_u64(head + 16, sequence);
  append_record(out, RecordType::segment_header, head);
}

// A snapshot file (snap-<index>.snap), version 3:
//   0  u64 magic kSnapshotMagic ("TURESNP3")
//   8  u64 index (what its name says)
//  16  u64 term of the entry at index
//  24  u64 size of the configuration that follows
//  32  the configuration in force at index, as a config entry carries it (membership.hpp)
//   .  the state machine's bytes
//   .  trailer: u64 size of those bytes, u32 CRC-32C of the whole file before it (size
//      included), u32 zero
// Version 2 files (magic "TURESNP2", a u64 count of voters at 24 and a u64 id each in place of
// the configuration) and version 1 files (magic kMagic, index, term, size, data, u32 CRC) are
// still read.
inline constexpr std::uint64_t kSnapshotMagic = 0x33504e53'45525554ull;    // bytes "TURESNP3"
inline constexpr std::uint64_t kSnapshotMagicV2 = 0x32504e53'45525554ull;  // bytes "TURESNP2"
inline constexpr std::size_t kSnapshotHeadBytes = 32;
/// A configuration of more bytes than this in a snapshot header is corruption.
inline constexpr std::uint64_t kMaxSnapshotConfigBytes = 1u << 16;
/// More voters than this in a version 2 snapshot header is corruption, not a configuration.
inline constexpr std::uint64_t kMaxSnapshotVoters = 4096;

inline void append_snapshot_header(std::vector<std::byte>& out, std::uint64_t index,
                                   std::uint64_t term, const Membership& membership) {
  std::byte head[kSnapshotHeadBytes] = {};
  put_u64(head, kSnapshotMagic);
  put_u64(head + 8, index);
  put_u64(head + 16, term);
  put_u64(head + 24, encoded_size(membership));
  out.insert(out.end(), head, head + kSnapshotHeadBytes);
  const std::size_t at = out.size();
  out.resize(at + encoded_size(membership));
  encode_membership(membership, out.data() + at);
}

/// One record as read back: its type and payload, a view into the segment's bytes.
struct Record {
  RecordType type;
  std::span<const std::byte> payload;
  std::size_t size;  // bytes the record occupies, padding included
};

/// Reads the record at `offset` of `bytes`, or nullopt when the bytes there are not a whole,
/// valid record (too short, a length past the end, a CRC mismatch, an unknown type, non-zero
/// reserved bytes or padding). Never reads out of bounds.
inline std::optional<Record> read_record(std::span<const std::byte> bytes, std::size_t offset,
                                         std::uint32_t salt = 0) noexcept {
  if (offset > bytes.size() || bytes.size() - offset < kHeaderSize) {
    return std::nullopt;
  }
  const std::byte* r = bytes.data() + offset;
  const std::uint32_t length = get_u32(r + 4);
  if (length > kMaxPayload || bytes.size() - offset - kHeaderSize < padded(length)) {
    return std::nullopt;
  }
  const auto type = static_cast<std::uint8_t>(r[8]);
  if (type < 1 || type > static_cast<std::uint8_t>(RecordType::batch_end)) {
    return std::nullopt;
  }
  for (std::size_t i = 9; i < kHeaderSize; ++i) {
    if (r[i] != std::byte{0}) {
      return std::nullopt;
    }
  }
  for (std::size_t i = kHeaderSize + length; i < kHeaderSize + padded(length); ++i) {
    if (r[i] != std::byte{0}) {
      return std::nullopt;
    }
  }
  if (crc32c(std::span<const std::byte>(r + 4, kHeaderSize - 4 + length), salt) != get_u32(r)) {
    return std::nullopt;
  }
  return Record{static_cast<RecordType>(type), std::span<const std::byte>(r + kHeaderSize, length),
                kHeaderSize + padded(length)};
}

/// Whether a complete batch follows `offset`: a chain of valid records, starting at some 8-byte
/// boundary at or after it, that reaches a batch_end record. This is what tells a torn tail
/// (the last batch, cut short: nothing complete can follow) from corruption in the middle (the
/// batches after it are still whole). A payload that merely contains the image of a record
/// does not make a complete batch.
inline bool complete_batch_after(std::span<const std::byte> bytes, std::size_t offset,
                                 std::uint32_t salt) {
  // Chains that meet end the same way: each 8-byte slot is followed at most once, so the scan
  // is linear in the tail's length however many candidate starts it tries.
  std::vector<bool> visited((bytes.size() + 7) / 8, false);
  for (std::size_t start = padded(offset); start + kHeaderSize <= bytes.size(); start += 8) {
    std::size_t at = start;
    while (!visited[at / 8]) {
      visited[at / 8] = true;
      const auto record = read_record(bytes, at, salt);
      if (!record) {
        break;
      }
      if (record->type == RecordType::batch_end) {
        return true;
      }
      at += record->size;
      if (at + kHeaderSize > bytes.size()) {
        break;
      }
    }
  }
  return false;
}

/// The smallest unit a torn write loses: a device writes whole sectors (512 bytes at least), so
/// a power failure leaves each sector of a write either written or not.
inline constexpr std::size_t kSectorBytes = 512;

/// Whether a valid record starts at an 8-byte boundary in [from, to). After the first invalid
/// record of a segment at `o`, a valid record before `o + kSectorBytes` proves the damage is
/// smaller than a sector: not a torn write, which loses whole sectors (a record that straddles
/// or starts in a lost sector leaves the next valid record at least a sector further), but a
/// flipped bit, say in the end record of the last durable batch just before a torn one.
inline bool valid_record_within(std::span<const std::byte> bytes, std::size_t from, std::size_t to,
                                std::uint32_t salt) {
  for (std::size_t at = padded(from); at < to && at + kHeaderSize <= bytes.size(); at += 8) {
    if (read_record(bytes, at, salt)) {
      return true;
    }
  }
  return false;
}

/// The salt of a segment whose first record is a valid segment header, or nullopt.
inline std::optional<std::uint32_t> segment_salt(std::span<const std::byte> segment) noexcept {
  const auto header = read_record(segment, 0, 0);
  if (!header || header->type != RecordType::segment_header || header->payload.size() != 24) {
    return std::nullopt;
  }
  return get_u32(header->payload.data() + 12);
}

}  // namespace tenure::raft::detail::wal
