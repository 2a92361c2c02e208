// FileStorage's own sync thread against the thread that appends (and one that watches): run
// under ThreadSanitizer by the tsan preset. The group thread appends, truncates, saves hard
// states and snapshots while the sync thread writes and syncs batches and reports through
// on_durable; a watcher reads durable_seq() and error() as a runtime would.
#include <raft/file_storage.hpp>
#include <raft/testing/sim_file_system.hpp>
#include <raft/types.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>
#include <system_error>
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

namespace {

// SimFileSystem with a sync that takes a set time and fails when armed: the sync thread's
// failure then lands at a chosen moment of a sync_now() waiting on another thread.
class SlowFailingFs {
 public:
  using handle = SimFileSystem::handle;
  std::error_code open_append(const std::string& p, handle& h) { return fs_.open_append(p, h); }
  std::error_code append(handle h, std::span<const std::byte> d) { return fs_.append(h, d); }
  std::error_code sync(handle h) {
    const auto until = std::chrono::steady_clock::now() + delay;
    while (std::chrono::steady_clock::now() < until) {
      // a disk busy for `delay`: spin, so the moment of the failure is exact
    }
    if (fail.exchange(false)) {
      return std::error_code(EIO, std::generic_category());
    }
    return fs_.sync(h);
  }
  std::error_code truncate(handle h, std::uint64_t size) { return fs_.truncate(h, size); }
  void close(handle h) { fs_.close(h); }
  std::error_code read_all(const std::string& p, std::vector<std::byte>& b) {
    return fs_.read_all(p, b);
  }
  std::error_code read_at(const std::string& p, std::uint64_t offset, std::span<std::byte> out,
                          std::size_t& n) {
    return fs_.read_at(p, offset, out, n);
  }
  std::error_code list(const std::string& p, std::vector<std::string>& n) { return fs_.list(p, n); }
  std::error_code rename(const std::string& a, const std::string& b) { return fs_.rename(a, b); }
  std::error_code remove(const std::string& p) { return fs_.remove(p); }
  std::error_code sync_dir(const std::string& p) { return fs_.sync_dir(p); }
  std::error_code make_dir(const std::string& p) { return fs_.make_dir(p); }

  std::atomic<bool> fail{false};
  std::chrono::nanoseconds delay{0};

 private:
  SimFileSystem fs_;
};

}  // namespace

// Regression (issue: a lost wake-up): the sync thread's fail() set the failure flag and notified
// without holding the mutex that sync_now() checks its condition under. A failure that landed
// between that check and the wait left sync_now(), and save_snapshot() behind it, waiting for
// ever. Here a failing sync ends at every moment around the point where a waiting sync_now()
// stops spinning (400 us) and goes to sleep; each must return the error within a second.
TEST_CASE("FileStorage: a write failure on the sync thread always wakes a waiting sync_now") {
  constexpr int kRounds = 1000;
  int hung = 0;
  for (int round = 0; round < kRounds && hung == 0; ++round) {
    SlowFailingFs fs;
    fs.delay = std::chrono::microseconds(380) + std::chrono::nanoseconds(round * 17 % 40'000);
    FileStorageOptions o;
    o.directory = "/data";
    o.background_sync = true;
    FileStorage<SlowFailingFs> s(o, fs);
    const std::string payload(32, 'x');
    const EntryView e{1, 1, EntryType::normal, std::as_bytes(std::span(payload))};
    fs.fail = true;
    (void)s.append(std::span<const EntryView>(&e, 1));
    std::atomic<bool> returned{false};
    std::error_code result;
    std::thread waiter([&] {
      result = s.sync_now();
      returned.store(true, std::memory_order_release);
    });
    const auto limit = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    while (!returned.load(std::memory_order_acquire) && std::chrono::steady_clock::now() < limit) {
      std::this_thread::yield();  // watching another thread's progress against a deadline
    }
    if (!returned.load()) {
      ++hung;
      FAIL("sync_now() still waits 1 s after the sync thread failed (round " << round << ")");
      std::_Exit(1);  // the waiter cannot be joined: it would wait for ever
    }
    waiter.join();
    CHECK(result);
    CHECK(s.error());
  }
}
