// Writes the seed corpus of the wal_recovery fuzzer: log directories that FileStorage itself
// wrote over a SimFileSystem (one segment, two segments, a snapshot with the log after it), the
// same with their tails cut off at several points, with a bit flipped in the middle and at the
// end, and with records changed and re-checksummed (kFixChecksums) so that they fail the checks
// behind the CRC. The committed files in tests/fuzz/corpus/wal_recovery/ come from this program;
// regenerate them after a change to the log format:
//
//     cmake --build build/debug --target tenure_wal_recovery_make_corpus
//     build/debug/tests/tenure_wal_recovery_make_corpus tests/fuzz/corpus/wal_recovery
#include "corpus_writer.hpp"
#include "wal_recovery_input.hpp"

#include <raft/detail/wal_format.hpp>
#include <raft/file_storage.hpp>
#include <raft/testing/sim_file_system.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace {

using tenure::raft::EntryType;
using tenure::raft::EntryView;
using tenure::raft::FileStorage;
using tenure::raft::FileStorageOptions;
using tenure::raft::HardState;
using tenure::raft::LogIndex;
using tenure::raft::Term;
using tenure::raft::testing::SimFileSystem;
namespace input = tenure::fuzz::wal_recovery;
namespace wal = tenure::raft::detail::wal;

using Bytes = std::vector<std::byte>;
using Storage = FileStorage<SimFileSystem>;

// Segment salts drawn from a fixed seed: the corpus is the same every time it is written.
constexpr std::uint64_t kSaltSeed = 0x5eed;

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "make_wal_recovery_corpus: %s\n", what.c_str());
  std::exit(1);
}

void put(Storage& s, Term term, EntryType type, const std::string& text) {
  const EntryView e{term, s.last_index() + 1, type, std::as_bytes(std::span(text))};
  (void)s.append(std::span<const EntryView>(&e, 1));
}

void sync(Storage& s) {
  if (s.sync_now()) {
    fail("a sync failed");
  }
}

// How every seed log is written: by hand (manual sync), with fixed salts so that the corpus
// regenerates byte for byte.
FileStorageOptions seed_options(std::uint64_t segment_bytes) {
  FileStorageOptions o;
  o.directory = input::kDirectory;
  o.segment_bytes = segment_bytes;
  o.background_sync = false;
  o.salt_seed = kSaltSeed;
  return o;
}

// Runs `script` on a FileStorage in a fresh SimFileSystem and returns the directory it left.
input::Layout write_log(std::uint64_t segment_bytes, const std::function<void(Storage&)>& script) {
  SimFileSystem fs;
  {
    Storage s(seed_options(segment_bytes), fs);
    script(s);
  }
  input::Layout layout;
  for (const std::string& path : fs.paths()) {  // sorted: snapshot names after segment names
    Bytes bytes;
    if (fs.read_all(path, bytes)) {
      fail("cannot read back " + path);
    }
    if (path.find("/snap-") != std::string::npos) {
      layout.has_snapshot = true;
      layout.snapshot = std::move(bytes);
    } else {
      layout.segments.push_back(std::move(bytes));
    }
  }
  if (layout.segments.empty() || layout.segments.size() > 2) {  // decode() makes 1 or 2
    fail("a seed log has " + std::to_string(layout.segments.size()) + " segments, not 1 or 2");
  }
  return layout;
}

// Entries of every type over three terms, a hard state per term, a truncation and its rewrite,
// in several batches.
void busy_log(Storage& s) {
  put(s, 1, EntryType::noop, "");
  put(s, 1, EntryType::normal, "set x=1");
  (void)s.save_hard_state(HardState{1, 1, 1});
  sync(s);
  put(s, 1, EntryType::config, "voters 1 2 3");
  put(s, 1, EntryType::normal, std::string(40, 'p'));
  sync(s);
  (void)s.save_hard_state(HardState{2, 2, 3});
  (void)s.truncate_suffix(4);
  put(s, 2, EntryType::noop, "");
  put(s, 2, EntryType::normal, "set y=2");
  sync(s);
  (void)s.save_hard_state(HardState{3, 3, 5});
  put(s, 3, EntryType::normal, "set z=3");
  sync(s);
}

// How many segments busy_log() fills with segments of `segment_bytes`.
std::size_t count_segments(std::uint64_t segment_bytes) {
  SimFileSystem fs;
  {
    Storage s(seed_options(segment_bytes), fs);
    busy_log(s);
  }
  return fs.paths().size();
}

// Offsets of the records of `segment`, in order.
std::vector<std::size_t> record_offsets(const Bytes& segment) {
  std::vector<std::size_t> offsets;
  const auto salt = wal::segment_salt(segment);
  if (!salt) {
    fail("a seed segment has no header");
  }
  for (std::size_t at = 0; at < segment.size();) {
    const auto record = wal::read_record(segment, at, at == 0 ? 0 : *salt);
    if (!record) {
      fail("a seed segment does not parse");
    }
    offsets.push_back(at);
    at += record->size;
  }
  return offsets;
}

// The offset of the `n`th (from 0) record of `type` in `segment`.
std::size_t nth_record(const Bytes& segment, wal::RecordType type, std::size_t n) {
  for (const std::size_t at : record_offsets(segment)) {
    if (static_cast<wal::RecordType>(segment[at + 8]) == type && n-- == 0) {
      return at;
    }
  }
  fail("a seed segment lacks a record it should have");
}

// One seed: `layout` as the fuzzer reads it.
void write(tenure::fuzz::CorpusWriter& out, const std::string& name, const input::Layout& layout) {
  out.write(name, input::encode(layout));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <output-directory>\n", argv[0]);
    return 2;
  }
  std::filesystem::create_directories(argv[1]);
  tenure::fuzz::CorpusWriter out(argv[1], "make_wal_recovery_corpus");

  // Valid directories, as FileStorage writes them.
  out.write("empty-directory", {});
  const input::Layout one = write_log(1 << 20, busy_log);
  write(out, "valid-one-segment", one);
  // The smallest segment size at which busy_log() rotates exactly once.
  std::uint64_t two_segment_bytes = 64;
  while (count_segments(two_segment_bytes) != 2) {
    two_segment_bytes += 8;
  }
  const input::Layout two = write_log(two_segment_bytes, busy_log);
  write(out, "valid-two-segments", two);
  const input::Layout snapshot = write_log(1 << 20, [](Storage& s) {
    busy_log(s);
    const std::string state = "x=1 y=2";
    if (s.save_snapshot(4, 2, std::as_bytes(std::span(state)))) {
      fail("save_snapshot failed");
    }
    s.compact(4);
    put(s, 3, EntryType::normal, "after the snapshot");
    sync(s);
  });
  if (!snapshot.has_snapshot) {
    fail("the snapshot seed has no snapshot");
  }
  write(out, "valid-snapshot", snapshot);
  input::Layout fixing = one;
  fixing.fix_checksums = true;
  write(out, "valid-one-segment-fix-checksums", fixing);

  // Torn tails: the last segment cut inside its header, inside a record, at a record boundary.
  const std::vector<std::size_t> records = record_offsets(one.segments[0]);
  const std::size_t size = one.segments[0].size();
  for (const std::size_t cut : {std::size_t{8}, records[1] + 5, records[records.size() - 1],
                                records[records.size() - 1] + 20, size - 1}) {
    input::Layout torn = one;
    torn.segments[0].resize(cut);
    write(out, "torn-at-" + std::to_string(cut), torn);
  }
  input::Layout torn_second = two;
  torn_second.segments[1].resize(torn_second.segments[1].size() - 3);
  write(out, "torn-second-segment", torn_second);

  // Bit flips: in the middle (valid records follow: corruption), in the last record (a torn
  // tail), and in the first of two segments (corruption, however late in it).
  const auto flipped = [&](const std::string& name, input::Layout layout, std::size_t segment,
                           std::size_t offset) {
    layout.segments.at(segment).at(offset) ^= std::byte{0x10};
    write(out, name, layout);
  };
  flipped("flip-middle-record", one, 0, records[records.size() / 2] + 20);
  flipped("flip-last-record", one, 0, records[records.size() - 1] + 20);
  flipped("flip-first-segment-end", two, 0, two.segments[0].size() - 2);
  flipped("flip-segment-header", one, 0, 17);
  input::Layout bad_snapshot = snapshot;
  bad_snapshot.snapshot.at(33) ^= std::byte{1};
  write(out, "flip-snapshot", bad_snapshot);

  // Records that pass the CRC once it is fixed, but not the checks behind it.
  using wal::RecordType;
  const auto rewritten = [&](const std::string& name, RecordType type, std::size_t n,
                             std::size_t field, std::uint64_t value, std::size_t width = 8) {
    input::Layout layout = one;
    layout.fix_checksums = true;
    const std::size_t at = nth_record(layout.segments[0], type, n);
    std::byte* p = layout.segments[0].data() + at + wal::kHeaderSize + field;
    if (width == 4) {
      wal::put_u32(p, static_cast<std::uint32_t>(value));
    } else {
      wal::put_u64(p, value);
    }
    write(out, name, layout);
  };
  rewritten("fixed-entry-index-gap", RecordType::entry, 1, 8, 7);  // entry 2 claims index 7
  rewritten("fixed-segment-sequence", RecordType::segment_header, 0, 16, 2);  // claims segment 2
  rewritten("fixed-log-version-2", RecordType::segment_header, 0, 8, 2, 4);   // a newer format
  rewritten("fixed-segment-magic", RecordType::segment_header, 0, 0, 0);      // not a tenure log
  rewritten("fixed-truncate-far", RecordType::truncate, 0, 0, 1000);      // past the end: ignored
  rewritten("fixed-hard-state-term-9", RecordType::hard_state, 1, 0, 9);  // a later term
  input::Layout type_changed = one;
  type_changed.fix_checksums = true;
  const std::size_t entry = nth_record(type_changed.segments[0], RecordType::entry, 0);
  type_changed.segments[0][entry + 8] = static_cast<std::byte>(RecordType::segment_header);
  write(out, "fixed-second-segment-header", type_changed);

  // Well-formed records slipped into the last batch: a compaction point as earlier versions
  // wrote them (ignored), and records whose payload has the wrong size for their type.
  const auto inserted = [&](const std::string& name, RecordType type, std::size_t payload) {
    input::Layout layout = one;
    Bytes record;
    const Bytes bytes(payload, std::byte{0});
    wal::append_record(record, type, bytes);
    wal::seal(record, wal::segment_salt(layout.segments[0]).value());
    const auto last_batch_end = static_cast<std::ptrdiff_t>(records.back());
    layout.segments[0].insert(layout.segments[0].begin() + last_batch_end, record.begin(),
                              record.end());
    write(out, name, layout);
  };
  inserted("valid-legacy-compact-record", RecordType::compact, 16);
  inserted("short-entry", RecordType::entry, 16);
  inserted("short-hard-state", RecordType::hard_state, 16);
  inserted("short-truncation", RecordType::truncate, 4);
  inserted("short-compact-record", RecordType::compact, 8);

  // A closed segment whose last batch lost its batch_end: every record valid, the batch not.
  input::Layout incomplete = two;
  incomplete.segments[0].resize(record_offsets(two.segments[0]).back());
  write(out, "closed-segment-incomplete-batch", incomplete);

  std::printf("make_wal_recovery_corpus: wrote %d files to %s\n", out.written(), argv[1]);
  return 0;
}
