// FileStorage's own sync thread against the thread that appends (and one that watches): run
// under ThreadSanitizer by the tsan preset. The group thread appends, truncates, saves hard
// states and snapshots while the sync thread writes and syncs batches and reports through
// on_durable; a watcher reads durable_seq() and error() as a runtime would.
#include <raft/file_storage.hpp>
#include <raft/testing/sim_file_system.hpp>
#include <raft/types.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

using tenure::raft::EntryType;
using tenure::raft::EntryView;
using tenure::raft::FileStorage;
using tenure::raft::FileStorageOptions;
using tenure::raft::HardState;
using tenure::raft::LogIndex;
using tenure::raft::WriteSeq;
using tenure::raft::testing::SimFileSystem;

TEST_CASE("FileStorage: the sync thread and the group thread share the log safely") {
  SimFileSystem fs;
  std::atomic<WriteSeq> reported{0};
  std::atomic<bool> watching{true};
  std::atomic<bool> went_backwards{false};
  constexpr int kEntries = 3000;
  {
    FileStorageOptions o;
    o.directory = "/data";
    o.segment_bytes = 16 * 1024;  // many rotations while the other thread appends
    o.background_sync = true;
    FileStorage<SimFileSystem>* storage = nullptr;
    o.on_durable = [&] {
      // Runs on the sync thread: what it reports must already be visible there.
      reported.store(storage->durable_seq(), std::memory_order_release);
    };
    FileStorage<SimFileSystem> s(o, fs);
    storage = &s;
    std::thread watcher([&] {
      WriteSeq last = 0;
      while (watching.load(std::memory_order_acquire)) {
        const WriteSeq now = s.durable_seq();
        if (now < last || s.error()) {
          went_backwards.store(true);
        }
        last = now;
        std::this_thread::yield();
      }
    });
    const std::string payload(100, 'x');
    std::uint64_t term = 1;
    for (int i = 1; i <= kEntries; ++i) {
      if (i % 500 == 0) {
        ++term;
        (void)s.save_hard_state(HardState{term, 1, s.last_index()});
        // Overwrite the last few entries, as a new leader's log would.
        (void)s.truncate_suffix(s.last_index() - 2);
      }
      const EntryView e{term, s.last_index() + 1, EntryType::normal,
                        std::as_bytes(std::span(payload))};
      (void)s.append(std::span<const EntryView>(&e, 1));
      if (i % 1000 == 0) {
        REQUIRE(!s.sync_now());
        const std::vector<std::byte> data(64, std::byte{1});
        REQUIRE(!s.save_snapshot(s.last_index() - 10, term, data));
        s.compact(s.last_index() - 10);
      }
    }
    REQUIRE(!s.sync_now());
    watching.store(false, std::memory_order_release);
    watcher.join();
    CHECK(reported.load() == s.durable_seq());
    CHECK(!went_backwards.load());
    CHECK(!s.error());
  }
  FileStorageOptions o;
  o.directory = "/data";
  o.background_sync = false;
  FileStorage<SimFileSystem> r(o, fs);
  CHECK(r.last_index() == static_cast<LogIndex>(kEntries - 3 * (kEntries / 500)));
  CHECK(r.hard_state().term == 1 + kEntries / 500);
}
