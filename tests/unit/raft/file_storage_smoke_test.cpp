// FileStorage over SimFileSystem: the basics (the crash-state enumeration lives in
// file_storage_crash_test.cpp).
#include <raft/file_storage.hpp>
#include <raft/testing/sim_file_system.hpp>

#include <doctest/doctest.h>

#include <string>
#include <vector>

using tenure::raft::EntryType;
using tenure::raft::EntryView;
using tenure::raft::errc;
using tenure::raft::FileStorage;
using tenure::raft::FileStorageOptions;
using tenure::raft::HardState;
using tenure::raft::LogIndex;
using tenure::raft::testing::SimFileSystem;

namespace {

FileStorageOptions manual(std::uint64_t segment_bytes = 1 << 20) {
  FileStorageOptions o;
  o.directory = "/data";
  o.segment_bytes = segment_bytes;
  o.background_sync = false;
  return o;
}

std::string text(const EntryView& e) {
  return {reinterpret_cast<const char*>(e.payload.data()), e.payload.size()};
}

void put(FileStorage<SimFileSystem>& s, tenure::raft::Term term, const std::string& p) {
  const EntryView e{term, s.last_index() + 1, EntryType::normal, std::as_bytes(std::span(p))};
  (void)s.append(std::span<const EntryView>(&e, 1));
}

}  // namespace

TEST_CASE("FileStorage: a clean restart recovers every write - synced or pending at shutdown") {
  SimFileSystem fs;
  {
    FileStorage<SimFileSystem> s(manual(), fs);
    put(s, 1, "a");
    put(s, 1, "bb");
    (void)s.save_hard_state(HardState{1, 3, 2});
    REQUIRE(!s.sync_now());
    CHECK(s.durable_seq() == 3);
    put(s, 2, "ccc");  // pending: the destructor syncs it
  }
  FileStorage<SimFileSystem> r(manual(), fs);
  CHECK(r.last_index() == 3);
  CHECK(text(r.entry(2)) == "bb");
  CHECK(text(r.entry(3)) == "ccc");
  CHECK(r.term_at(3).value() == 2);
  CHECK(r.hard_state() == HardState{1, 3, 2});
  CHECK(r.recovery().torn_bytes == 0);
}

TEST_CASE("FileStorage: a crash loses exactly the writes that were not synced") {
  SimFileSystem fs;
  auto s = std::make_unique<FileStorage<SimFileSystem>>(manual(), fs);
  put(*s, 1, "one");
  REQUIRE(!s->sync_now());
  put(*s, 1, "two");
  s->abandon();  // the process dies before its next sync...
  fs.crash();    // ...and the power fails
  s.reset();
  FileStorage<SimFileSystem> r(manual(), fs);
  CHECK(r.last_index() == 1);
  CHECK(text(r.entry(1)) == "one");
}

TEST_CASE("FileStorage: truncation and rewrite survive a restart") {
  SimFileSystem fs;
  {
    FileStorage<SimFileSystem> s(manual(256), fs);  // small segments: rotation too
    for (int i = 0; i < 20; ++i) {
      put(s, 1, "entry " + std::to_string(i + 1));
      REQUIRE(!s.sync_now());
    }
    (void)s.truncate_suffix(15);
    put(s, 2, "new 15");
    REQUIRE(!s.sync_now());
  }
  FileStorage<SimFileSystem> r(manual(256), fs);
  CHECK(r.recovery().segments > 1);
  CHECK(r.last_index() == 15);
  CHECK(text(r.entry(15)) == "new 15");
  CHECK(r.term_at(15).value() == 2);
  CHECK(text(r.entry(14)) == "entry 14");
}

TEST_CASE("FileStorage: a failed sync is fail-stop") {
  SimFileSystem fs;
  FileStorage<SimFileSystem> s(manual(), fs);
  put(s, 1, "x");
  fs.fail_next_sync();
  CHECK(s.sync_now().value() == EIO);
  CHECK(s.error());
  CHECK(s.durable_seq() == 0);
  put(s, 1, "y");
  CHECK(s.sync_now());  // never retried, even though the disk would now succeed
  CHECK(s.durable_seq() == 0);
}

TEST_CASE("FileStorage: a flipped bit before the tail refuses to start and names file and offset") {
  SimFileSystem fs;
  {
    FileStorage<SimFileSystem> s(manual(), fs);
    for (int i = 0; i < 5; ++i) {
      put(s, 1, "payload " + std::to_string(i));
      REQUIRE(!s.sync_now());
    }
  }
  REQUIRE(fs.flip_bit("/data/wal-0000000000000001.log", 100, 3));
  try {
    FileStorage<SimFileSystem> r(manual(), fs);
    FAIL("recovery accepted a corrupt log");
  } catch (const std::system_error& e) {
    CHECK(e.code() == errc::corrupt_storage);
    CHECK(std::string(e.what()).find("wal-0000000000000001.log") != std::string::npos);
    CHECK(std::string(e.what()).find("offset") != std::string::npos);
  }
}
