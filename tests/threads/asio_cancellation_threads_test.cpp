// AsioGroup cancellation under threads: the io_context runs on two threads while the test
// thread starts reads and emits their cancellation slots at once, racing each cancellation
// against the operation's start on the strand and (for stale reads) against its completion.
// ThreadSanitizer (the boost181-tsan preset) checks the handoff: a slot's handler runs on the
// emitting thread and only posts; the registry is touched on the strand alone. Needs Boost 1.77
// or newer; under the system's 1.74 only the last test runs.

// GCC 12 warns (-Wtsan) that ThreadSanitizer does not model the std::atomic_thread_fence in
// Asio's fenced_block. Harmless here: Asio's scheduler and strands also hand handlers over
// through mutexes, which TSan does see.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#pragma GCC diagnostic ignored "-Wtsan"
#endif

#include <raft/asio/asio_group.hpp>

#include <doctest/doctest.h>

#include "../support/asio_cluster.hpp"

#if TENURE_ASIO_HAS_CANCELLATION_SLOTS

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/executor_work_guard.hpp>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <future>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using tenure::raft::errc;
using tenure::raft::kNoNode;
using tenure::raft::NodeId;
using tenure::raft::Result;
using tenure::raft::asio::ReadLevel;
using tenure::raft::asio::ReadResult;
using tenure::testing::asio_cluster::Cluster;
using tenure::testing::asio_cluster::run_until;

TEST_CASE("AsioGroup cancellation: emits from another thread than the io_context's two") {
  constexpr int kReads = 300;  // every third one stale: it completes at once, racing the emit
  ::boost::asio::io_context io;
  Cluster c(io, /*check_quorum=*/false);
  REQUIRE(run_until(io, [&] { return c.leader() != kNoNode; }));
  const NodeId leader = c.leader();
  c.transport.cut_off_all_but(leader);  // before the io threads start: they only read it
  auto& g = *c.groups[leader];

  auto guard = ::boost::asio::make_work_guard(io);
  std::vector<std::thread> runners;
  for (int i = 0; i < 2; ++i) {
    runners.emplace_back([&io] { io.run(); });
  }

  std::mutex mutex;
  std::condition_variable all_done;
  int done = 0;
  int cancelled = 0;
  int served = 0;
  int other = 0;
  // Outlive every emit and every operation: a slot's storage belongs to its signal.
  std::vector<std::unique_ptr<::boost::asio::cancellation_signal>> signals;
  for (int i = 0; i < kReads; ++i) {
    signals.push_back(std::make_unique<::boost::asio::cancellation_signal>());
    const ReadLevel level = i % 3 == 0 ? ReadLevel::stale : ReadLevel::linearizable;
    g.async_read(
        level, 10s,
        ::boost::asio::bind_cancellation_slot(signals.back()->slot(), [&](Result<ReadResult> r) {
          std::lock_guard lock(mutex);
          if (r.code() == errc::cancelled) {
            ++cancelled;
          } else if (r.has_value()) {
            ++served;
          } else {
            ++other;
          }
          if (++done == kReads) {
            all_done.notify_all();
          }
        }));
    signals.back()->emit(::boost::asio::cancellation_type::terminal);
  }
  {
    std::unique_lock lock(mutex);
    REQUIRE(all_done.wait_for(lock, 10s, [&] { return done == kReads; }));
    // Linearizable reads cannot complete without a quorum: each ended by its cancellation. A
    // stale read completes at once; its late emit must change nothing.
    CHECK(cancelled == kReads - kReads / 3);
    CHECK(served == kReads / 3);
    CHECK(other == 0);
  }
  // Late emits again, after everything completed: nothing to find.
  for (auto& s : signals) {
    s->emit(::boost::asio::cancellation_type::terminal);
  }
  std::promise<std::pair<std::uint32_t, std::size_t>> pending;
  ::boost::asio::post(g.executor(), [&] {
    pending.set_value({g.group().pending_reads(), g.cancellable_pending()});
  });
  auto future = pending.get_future();
  REQUIRE(future.wait_for(10s) == std::future_status::ready);
  const auto [reads, registered] = future.get();
  CHECK(reads == 0);
  CHECK(registered == 0);

  for (auto& group : c.groups) {
    if (group) {
      group->stop();
    }
  }
  guard.reset();
  io.stop();
  for (auto& t : runners) {
    t.join();
  }
}

#endif  // TENURE_ASIO_HAS_CANCELLATION_SLOTS

TEST_CASE("AsioGroup cancellation: the threaded test compiles in with cancellation slots") {
  // Documents which build ran what: the boost181-tsan preset has the slots, tsan (1.74) not.
  CHECK(tenure::raft::asio::kHasCancellationSlots == (BOOST_ASIO_VERSION >= 101900));
}
