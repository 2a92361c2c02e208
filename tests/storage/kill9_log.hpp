// The log that tenure_kill_writer writes and tenure_kill9_driver checks: every entry's payload is
// a function of its index and term, so either side can tell a recovered entry from a damaged or
// misplaced one without remembering what was written.
#pragma once

#include <raft/file_storage.hpp>
#include <raft/file_system.hpp>
#include <raft/storage.hpp>
#include <raft/types.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace tenure::kill9 {

using raft::EntryView;
using raft::FileStorage;
using raft::LogIndex;
using raft::PosixFileSystem;
using raft::Term;

inline std::uint64_t splitmix64(std::uint64_t& state) noexcept {
  std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/// The payload of entry `index` written in term `term`: the index (8 bytes, little-endian), then
/// 0 to 248 bytes drawn from a generator seeded with both.
inline void payload_of(LogIndex index, Term term, std::vector<std::byte>& out) {
  std::uint64_t state = index * 0x2545f4914f6cdd1dull ^ term;
  const std::size_t extra = splitmix64(state) % 249;
  out.resize(8 + extra);
  for (std::size_t i = 0; i < 8; ++i) {
    out[i] = static_cast<std::byte>(index >> (8 * i));
  }
  std::uint64_t word = 0;
  for (std::size_t i = 0; i < extra; ++i) {
    if (i % 8 == 0) {
      word = splitmix64(state);
    }
    out[8 + i] = static_cast<std::byte>(word >> (8 * (i % 8)));
  }
}

/// What makes a recovered log well-formed here, or an empty string: it starts at index 1 (the
/// writer never compacts), every entry sits at its own index with the payload its index and term
/// imply, terms never decrease, and the hard state's term is at least the last entry's (each
/// writer saves its term before appending in it).
template <class Storage>
std::string check_log(const Storage& s) {
  if (s.first_index() != 1) {
    return "first_index() is " + std::to_string(s.first_index()) + ", not 1";
  }
  std::vector<std::byte> want;
  Term previous = 0;
  for (LogIndex i = 1; i <= s.last_index(); ++i) {
    const EntryView e = s.entry(i);
    const std::string at = "entry " + std::to_string(i) + ": ";
    if (e.index != i) {
      return at + "carries index " + std::to_string(e.index);
    }
    if (!s.term_at(i) || s.term_at(i).value() != e.term) {
      return at + "term_at() disagrees with the entry";
    }
    if (e.term < previous) {
      return at + "term " + std::to_string(e.term) + " after term " + std::to_string(previous);
    }
    previous = e.term;
    payload_of(i, e.term, want);
    if (e.payload.size() != want.size() ||
        !std::equal(want.begin(), want.end(), e.payload.begin())) {
      return at + "payload differs from the one written in term " + std::to_string(e.term);
    }
  }
  if (s.hard_state().term < previous) {
    return "hard state term " + std::to_string(s.hard_state().term) +
           " is below the last entry's term " + std::to_string(previous);
  }
  return {};
}

/// The options both sides open the directory with: small segments, so that a run rotates through
/// many of them and kills land inside rotation too.
inline raft::FileStorageOptions options(const std::string& directory, std::uint64_t segment_bytes,
                                        bool background_sync) {
  raft::FileStorageOptions o;
  o.directory = directory;
  o.segment_bytes = segment_bytes;
  o.background_sync = background_sync;
  return o;
}

}  // namespace tenure::kill9
