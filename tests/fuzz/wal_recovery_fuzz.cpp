// Fuzz target for FileStorage recovery (<raft/file_storage.hpp>): any bytes, laid out as a log
// directory on a SimFileSystem (wal_recovery_input.hpp), must either be refused with
// std::system_error carrying errc::corrupt_storage or errc::storage_failure, or recover into a
// well-formed log:
//
// - indexes contiguous from first_index() >= 1 (past any snapshot) to last_index(), every entry
//   at its own index, term_at() agreeing with it, every payload byte readable (ASan checks the
//   views stay inside the storage's buffers);
// - recovering the same directory again (after the first recovery cut any torn tail) finds
//   exactly the same log, hard state and snapshot, and nothing torn;
// - a writer can carry on: an entry appended and synced after recovery is there, with all the
//   rest, when the directory is recovered once more.
//
// Built with libFuzzer by the `fuzz` preset (scripts/fuzz wal_recovery); replayed over the
// committed corpus (tests/fuzz/corpus/wal_recovery, from make_wal_recovery_corpus.cpp) by
// tenure_wal_recovery_fuzz_replay in every build.
#include "wal_recovery_input.hpp"

#include <raft/errc.hpp>
#include <raft/file_storage.hpp>
#include <raft/testing/sim_file_system.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <vector>

namespace {

using tenure::raft::EntryType;
using tenure::raft::EntryView;
using tenure::raft::errc;
using tenure::raft::FileStorage;
using tenure::raft::FileStorageOptions;
using tenure::raft::HardState;
using tenure::raft::LogIndex;
using tenure::raft::Term;
using tenure::raft::testing::SimFileSystem;
namespace input = tenure::fuzz::wal_recovery;

using Storage = FileStorage<SimFileSystem>;

// abort() rather than assert(): the check must hold in every build type.
void require(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "wal_recovery_fuzz: %s\n", what);
    std::abort();
  }
}

struct Entry {
  Term term = 0;
  EntryType type = EntryType::normal;
  std::vector<std::byte> payload;
  friend bool operator==(const Entry&, const Entry&) = default;
};

// Everything recovery rebuilt, copied out of the storage.
struct State {
  LogIndex first = 0;
  LogIndex last = 0;
  Term compacted_term = 0;  // term_at(first - 1)
  HardState hard_state;
  std::vector<Entry> entries;
  bool has_snapshot = false;
  LogIndex snapshot_index = 0;
  Term snapshot_term = 0;
  std::vector<std::byte> snapshot_data;
  friend bool operator==(const State&, const State&) = default;
};

FileStorageOptions options() {
  FileStorageOptions o;
  o.directory = input::kDirectory;
  o.segment_bytes = 4096;  // a writer after recovery may rotate
  o.background_sync = false;
  o.salt_seed = 0x5eed;  // a new segment's salt is the same in every run: no flaky coverage
  return o;
}

void install(SimFileSystem& fs, const std::string& path, std::span<const std::byte> bytes) {
  SimFileSystem::handle h{};
  require(!fs.open_append(path, h), "SimFileSystem refused a file");
  require(!fs.append(h, bytes) && !fs.sync(h), "SimFileSystem refused a write");
  fs.close(h);
}

void install(SimFileSystem& fs, input::Layout& layout) {
  if (layout.has_snapshot) {
    if (layout.fix_checksums) {
      input::fix_snapshot_checksum(layout.snapshot);
    }
    install(fs, input::snapshot_path(input::snapshot_index(layout.snapshot)), layout.snapshot);
  }
  for (std::size_t i = 0; i < layout.segments.size(); ++i) {
    if (layout.fix_checksums) {
      input::fix_record_checksums(layout.segments[i]);
    }
    install(fs, input::segment_path(i + 1), layout.segments[i]);
  }
  require(!fs.sync_dir(input::kDirectory), "SimFileSystem refused a directory sync");
}

// Reads every entry and checks the log's shape. `max_entries` bounds how many entries the files
// could hold at all, so that an index arithmetic slip shows up as a failure, not a long loop.
State read_state(const Storage& s, std::size_t max_entries) {
  State st;
  st.first = s.first_index();
  st.last = s.last_index();
  require(st.first >= 1, "first_index() is 0");
  require(st.last >= st.first - 1, "last_index() is below first_index() - 1");
  require(st.last - (st.first - 1) <= max_entries, "more entries than the files could hold");
  const auto compacted = s.term_at(st.first - 1);
  require(compacted.has_value(), "term_at(first_index() - 1) fails");
  st.compacted_term = compacted.value();
  st.hard_state = s.hard_state();
  for (LogIndex i = st.first; i <= st.last && i != 0; ++i) {
    const EntryView e = s.entry(i);
    require(e.index == i, "an entry carries another index than its position");
    const auto term = s.term_at(i);
    require(term.has_value() && term.value() == e.term, "term_at() disagrees with entry()");
    require(e.payload.empty() || e.payload.data() != nullptr, "a payload without bytes");
    st.entries.push_back(Entry{e.term, e.type, {e.payload.begin(), e.payload.end()}});
  }
  if (const auto& snap = s.recovered_snapshot()) {
    require(st.first > snap->index, "the log starts at or before the snapshot's index");
    st.has_snapshot = true;
    st.snapshot_index = snap->index;
    st.snapshot_term = snap->term;
    st.snapshot_data = snap->data;
  }
  return st;
}

// Recovers the directory: nullopt when FileStorage refused it, with one of the two codes it may
// refuse with. `torn` is what the recovery cut off.
std::optional<State> recover(SimFileSystem& fs, std::size_t max_entries, std::uint64_t& torn) {
  try {
    Storage s(options(), fs);
    torn = s.recovery().torn_bytes;
    return read_state(s, max_entries);
  } catch (const std::system_error& e) {
    require(e.code() == errc::corrupt_storage || e.code() == errc::storage_failure,
            "recovery threw a std::system_error with an unexpected code");
    return std::nullopt;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // libFuzzer may pass a null pointer with size 0; an empty span needs no pointer.
  const std::span<const std::byte> bytes =
      size == 0 ? std::span<const std::byte>{}
                : std::span<const std::byte>{reinterpret_cast<const std::byte*>(data), size};
  input::Layout layout = input::decode(bytes);
  SimFileSystem fs;
  install(fs, layout);
  // Every entry takes a 40-byte record at least.
  const std::size_t max_entries = size / 40;

  std::uint64_t torn = 0;
  const std::optional<State> first = recover(fs, max_entries, torn);
  if (!first) {
    return 0;
  }

  std::uint64_t torn_again = 0;
  const std::optional<State> second = recover(fs, max_entries, torn_again);
  require(second.has_value(), "a directory recovered once is refused the second time");
  require(torn_again == 0, "the second recovery found a torn tail the first one left");
  require(*second == *first, "the second recovery differs from the first");

  if (first->last == ~LogIndex{0}) {
    return 0;  // no index left to append at
  }
  const Term term = std::max({first->hard_state.term, first->compacted_term,
                              first->entries.empty() ? Term{1} : first->entries.back().term});
  const std::byte after[] = {std::byte{'a'}, std::byte{'f'}, std::byte{'t'}, std::byte{'e'},
                             std::byte{'r'}};
  {
    Storage s(options(), fs);
    const EntryView e{term, first->last + 1, EntryType::normal, after};
    (void)s.append(std::span<const EntryView>(&e, 1));
    require(!s.sync_now(), "appending after recovery failed");
  }
  State want = *first;
  want.last += 1;
  want.entries.push_back(Entry{term, EntryType::normal, {std::begin(after), std::end(after)}});
  std::uint64_t torn_third = 0;
  const std::optional<State> third = recover(fs, max_entries + 1, torn_third);
  require(third.has_value(), "the directory is refused after a writer appended to it");
  require(*third == want, "an entry appended after recovery is not recovered with the rest");
  return 0;
}
