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

namespace {

const std::string kFirstSegment = "/data/wal-0000000000000001.log";

// Two synced batches and a third whose sync fails (written, not durable). Returns where the
// second batch, and with it the durable log, ends.
std::uint64_t two_durable_batches_and_a_failed_one(SimFileSystem& fs) {
  FileStorage<SimFileSystem> s(manual(), fs);
  put(s, 1, "first");
  REQUIRE(!s.sync_now());
  put(s, 1, "second, acknowledged");
  REQUIRE(!s.sync_now());
  const std::uint64_t durable_end = fs.size(kFirstSegment);
  put(s, 1, "third, torn");
  fs.fail_next_sync();
  REQUIRE(s.sync_now());
  return durable_end;
}

}  // namespace

// A bit flipped in the end record of the last durable batch, with a torn batch after it. Taking
// the damage for the torn tail and cutting there would lose a durable (acknowledged) batch.
TEST_CASE("FileStorage: a damaged end of the last durable batch is never cut as a torn tail") {
  SimFileSystem fs;
  const std::uint64_t durable_end = two_durable_batches_and_a_failed_one(fs);
  tenure::raft::testing::CrashPlan plan;
  SUBCASE("nothing of the torn batch but its size: the batch is kept and its end rewritten") {
    plan.zero_bytes[kFirstSegment] = 512;
    fs.crash(plan);
    REQUIRE(fs.flip_bit(kFirstSegment, durable_end - 24 + 7, 2));  // the end record's length
    {
      FileStorage<SimFileSystem> r(manual(), fs);
      CHECK(r.last_index() == 2);
    }
    FileStorage<SimFileSystem> again(manual(), fs);  // the repair is itself a valid log
    CHECK(again.last_index() == 2);
    CHECK(again.recovery().torn_bytes == 0);
  }
  SUBCASE("the torn batch's whole records follow within a sector: refused as corruption") {
    // No torn write leaves that: it loses whole sectors.
    plan.kept_bytes[kFirstSegment] = fs.unsynced_bytes(kFirstSegment) - 24;
    fs.crash(plan);
    REQUIRE(fs.flip_bit(kFirstSegment, durable_end - 24, 0));
    try {
      FileStorage<SimFileSystem> r(manual(), fs);
      FAIL("recovery cut a durable batch as if it were torn; last index " << r.last_index());
    } catch (const std::system_error& e) {
      CHECK(e.code() == errc::corrupt_storage);
      CHECK(std::string(e.what()).find("invalid record at offset " +
                                       std::to_string(durable_end - 24)) != std::string::npos);
    }
  }
  SUBCASE("undamaged: only what never became durable may go") {
    plan.kept_bytes[kFirstSegment] = fs.unsynced_bytes(kFirstSegment) - 24;
    fs.crash(plan);
    FileStorage<SimFileSystem> r(manual(), fs);
    CHECK(r.last_index() >= 2);
  }
}
