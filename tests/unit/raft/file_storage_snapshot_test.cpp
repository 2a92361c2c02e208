// FileStorage as a SnapshotStorage: snapshots streamed in chunks, durable only through the
// writer (sync, rename, directory sync), recovered and validated at restart, and the log on
// disk bounded by them.
#include <raft/file_storage.hpp>
#include <raft/snapshot.hpp>
#include <raft/testing/sim_file_system.hpp>

#include <doctest/doctest.h>

#include <cstddef>
#include <string>
#include <vector>

using tenure::raft::EntryType;
using tenure::raft::EntryView;
using tenure::raft::errc;
using tenure::raft::FileStorage;
using tenure::raft::FileStorageOptions;
using tenure::raft::LogIndex;
using tenure::raft::SnapshotMeta;
using tenure::raft::testing::SimFileSystem;

static_assert(tenure::raft::SnapshotStorage<FileStorage<SimFileSystem>>);

namespace {

FileStorageOptions manual(std::uint64_t segment_bytes = 4096) {
  FileStorageOptions o;
  o.directory = "/data";
  o.segment_bytes = segment_bytes;
  o.background_sync = false;
  return o;
}

void put(FileStorage<SimFileSystem>& s, tenure::raft::Term term, std::size_t bytes) {
  const std::vector<std::byte> payload(bytes, std::byte{0x5a});
  const EntryView e{term, s.last_index() + 1, EntryType::normal, payload};
  (void)s.append(std::span<const EntryView>(&e, 1));
}

std::vector<std::byte> pattern(std::size_t n, unsigned seed) {
  std::vector<std::byte> v(n);
  for (std::size_t i = 0; i < n; ++i) {
    v[i] = static_cast<std::byte>((i * 131 + seed * 7) & 0xff);
  }
  return v;
}

// Streams `data` as a snapshot at `index` in chunks of `chunk` bytes; returns the finish's seq.
std::uint64_t stream(FileStorage<SimFileSystem>& s, LogIndex index, std::vector<std::byte> data,
                     std::size_t chunk) {
  s.begin_snapshot(SnapshotMeta{index, 1, {{1, 2, 3}, {}, {4}}, 0});
  for (std::size_t at = 0; at < data.size(); at += chunk) {
    s.write_snapshot(std::span(data).subspan(at, std::min(chunk, data.size() - at)));
  }
  return s.finish_snapshot();
}

std::size_t files_with(SimFileSystem& fs, const std::string& part) {
  std::size_t n = 0;
  for (const auto& p : fs.paths()) {
    n += p.find(part) != std::string::npos ? 1 : 0;
  }
  return n;
}

}  // namespace

TEST_CASE("FileStorage snapshots: streamed in chunks and read back in chunks") {
  SimFileSystem fs;
  FileStorage<SimFileSystem> s(manual(), fs);
  for (int i = 0; i < 20; ++i) {
    put(s, 1, 100);
  }
  REQUIRE(!s.sync_now());
  const auto data = pattern(10'000, 1);
  const auto seq = stream(s, 15, data, 333);
  // Finished: it is the snapshot now, readable, but not durable until the writer runs.
  REQUIRE(s.snapshot());
  CHECK(s.snapshot()->index == 15);
  CHECK(s.snapshot()->size == data.size());
  CHECK(s.snapshot()->membership.voters == std::vector<tenure::raft::NodeId>{1, 2, 3});
  CHECK(s.snapshot()->membership.learners == std::vector<tenure::raft::NodeId>{4});
  CHECK(s.durable_seq() < seq);
  std::vector<std::byte> back(data.size());
  for (std::size_t at = 0; at < back.size();) {
    const std::size_t n = s.read_snapshot(
        at, std::span(back).subspan(at, std::min<std::size_t>(777, back.size() - at)));
    REQUIRE(n > 0);
    at += n;
  }
  CHECK(back == data);
  CHECK(s.read_snapshot(data.size(), back) == 0);
  CHECK(files_with(fs, ".tmp") == 1);
  REQUIRE(!s.sync_now());
  CHECK(s.durable_seq() >= seq);
  CHECK(files_with(fs, ".tmp") == 0);
  CHECK(files_with(fs, "snap-000000000000000f.snap") == 1);
}

TEST_CASE("FileStorage snapshots: a crash before the writer ran keeps the old snapshot") {
  SimFileSystem fs;
  {
    FileStorage<SimFileSystem> s(manual(), fs);
    for (int i = 0; i < 10; ++i) {
      put(s, 1, 50);
    }
    (void)stream(s, 5, pattern(500, 2), 100);
    REQUIRE(!s.sync_now());
    for (int i = 0; i < 10; ++i) {
      put(s, 1, 50);
    }
    REQUIRE(!s.sync_now());
    (void)stream(s, 15, pattern(700, 3), 100);  // finished, never written through
    s.abandon();
  }
  fs.crash();
  FileStorage<SimFileSystem> r(manual(), fs);
  REQUIRE(r.snapshot());
  CHECK(r.snapshot()->index == 5);
  CHECK(r.recovered_snapshot()->data == pattern(500, 2));
  CHECK(r.last_index() == 20);
  CHECK(files_with(fs, ".tmp") == 0);  // the unfinished one is gone
}

TEST_CASE("FileStorage snapshots: a damaged snapshot is refused and named") {
  SimFileSystem fs;
  {
    FileStorage<SimFileSystem> s(manual(), fs);
    for (int i = 0; i < 10; ++i) {
      put(s, 1, 50);
    }
    (void)stream(s, 8, pattern(3000, 4), 512);
    REQUIRE(!s.sync_now());
  }
  const std::string path = "/data/snap-0000000000000008.snap";
  const std::uint64_t size = fs.size(path);
  REQUIRE(size > 3000);
  for (const std::uint64_t offset :
       {std::uint64_t{3}, std::uint64_t{30}, std::uint64_t{50}, size / 2, size - 10, size - 1}) {
    CAPTURE(offset);
    REQUIRE(fs.flip_bit(path, offset, 1));
    try {
      FileStorage<SimFileSystem> r(manual(), fs);
      FAIL("recovery accepted a damaged snapshot");
    } catch (const std::system_error& e) {
      CHECK(e.code() == errc::corrupt_storage);
      CHECK(std::string(e.what()).find(path) != std::string::npos);
    }
    REQUIRE(fs.flip_bit(path, offset, 1));  // and back
  }
  FileStorage<SimFileSystem> r(manual(), fs);
  CHECK(r.recovered_snapshot()->data == pattern(3000, 4));
}

TEST_CASE("FileStorage snapshots: reset_log survives a restart") {
  SimFileSystem fs;
  {
    FileStorage<SimFileSystem> s(manual(), fs);
    for (int i = 0; i < 30; ++i) {
      put(s, 1, 40);  // entries of term 1 that the snapshot's history does not share
    }
    REQUIRE(!s.sync_now());
    (void)stream(s, 20, pattern(100, 5), 100);
    (void)s.reset_log(20, 2);
    put(s, 2, 40);  // 21, of term 2
    REQUIRE(!s.sync_now());
    CHECK(s.first_index() == 21);
    CHECK(s.last_index() == 21);
  }
  FileStorage<SimFileSystem> r(manual(), fs);
  CHECK(r.snapshot()->index == 20);
  CHECK(r.first_index() == 21);
  CHECK(r.last_index() == 21);
  CHECK(r.term_at(21).value() == 2);
}

// A steady write load with a snapshot every 500 entries: the segments behind each durable
// snapshot go, so the directory stops growing (without snapshots it grows with every entry).
TEST_CASE("FileStorage snapshots: disk use stays bounded under a steady write load") {
  SimFileSystem fs;
  FileStorage<SimFileSystem> s(manual(16 << 10), fs);
  const auto bytes_on_disk = [&] {
    std::uint64_t total = 0;
    for (const auto& p : fs.paths()) {
      total += fs.size(p);
    }
    return total;
  };
  std::uint64_t at_5000 = 0;
  for (int i = 1; i <= 20'000; ++i) {
    put(s, 1, 100);
    if (i % 10 == 0) {
      REQUIRE(!s.sync_now());
    }
    if (i % 500 == 0) {
      (void)stream(s, s.last_index(), pattern(4000, 6), 1000);
      s.compact(s.last_index());
      REQUIRE(!s.sync_now());
    }
    if (i == 5000) {
      at_5000 = bytes_on_disk();
    }
  }
  const std::uint64_t at_20000 = bytes_on_disk();
  MESSAGE("bytes on disk after 5000 entries: " << at_5000 << ", after 20000: " << at_20000);
  CHECK(at_20000 < 2 * 16384 + 500 * 200 + 8192);  // about one segment, the tail, a snapshot
  CHECK(at_20000 <= at_5000 + 16384);
  CHECK(files_with(fs, "snap-") == 1);
}
