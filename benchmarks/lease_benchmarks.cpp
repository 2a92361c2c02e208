// Microbenchmarks of the lease hot paths: recording a follower's ack (the group's thread, on every
// answer to a heartbeat or append), reading the quorum-ack instant, and a lease read on the fast
// path (any thread, on every read). Each reports `allocs_per_op`, which must be 0 (lessons 4, 14);
// the CTest test benchmark.smoke checks that.
#include <lease/lease_coordinator.hpp>
#include <lease/quorum_ack_tracker.hpp>
#include <raft/errc.hpp>
#include <raft/steady_clock.hpp>
#include <raft/testing/allocation_guard.hpp>
#include <raft/types.hpp>

// The counting operator new/delete for AllocationGuard: in this translation unit only.
#include <raft/testing/count_allocations.hpp>

#include <benchmark/benchmark.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <stop_token>
#include <thread>

namespace {

using tenure::lease::LeaseConfig;
using tenure::lease::LeaseCoordinator;
using tenure::lease::QuorumAckTracker;
using tenure::raft::LogIndex;
using tenure::raft::NodeId;
using tenure::raft::SteadyClock;
using tenure::raft::Term;
using tenure::raft::testing::AllocationGuard;

constexpr NodeId kLeader = 1;
constexpr std::size_t kMaxPeers = 8;  // the leader and up to 7 followers
using Tracker = QuorumAckTracker<SteadyClock, kMaxPeers>;

SteadyClock::time_point at(std::int64_t nanos) {
  return SteadyClock::time_point{std::chrono::nanoseconds{nanos}};
}

// A zero-allocation claim is meaningless unless the counting operators are really in the program.
bool allocation_counting_or_skip(benchmark::State& state) {
  if (!tenure::raft::testing::allocation_counting_installed()) {
    state.SkipWithError("allocation counting is not installed: allocs_per_op would read 0");
    return false;
  }
  return true;
}

// Allocations this thread made inside the timed loop, per iteration. kAvgThreads: each thread
// counts its own, and a per-op figure must not grow with the number of threads.
void report_allocations(benchmark::State& state, const AllocationGuard& guard) {
  // Read before touching the counters map, whose first insertion allocates.
  const auto allocations = static_cast<double>(guard.allocations());
  const auto iterations = static_cast<double>(state.iterations());
  state.counters["allocs_per_op"] = benchmark::Counter(
      allocations / (iterations > 0 ? iterations : 1), benchmark::Counter::kAvgThreads);
}

// A leader with `followers` followers, every one of which has answered once already: the steady
// state of a term, not the cold start.
void configure(Tracker& tracker, std::size_t followers, std::int64_t& sent) {
  std::array<NodeId, kMaxPeers> voters{};
  for (std::size_t i = 0; i <= followers; ++i) {
    voters[i] = kLeader + i;
  }
  if (tracker.set_configuration(std::span<const NodeId>(voters.data(), followers + 1))) {
    std::abort();
  }
  for (std::size_t i = 1; i <= followers; ++i) {
    tracker.record(kLeader + i, at(sent += 1000));
  }
}

// Answers arrive round-robin from the followers, each echoing the send time of a later request
// than the one before (1 µs apart). Every record lands on the follower with the oldest ack, at or
// below the quorum instant, so each one pays for the full selection: the realistic worst case.
void BM_QuorumAckTracker_Record(benchmark::State& state) {
  if (!allocation_counting_or_skip(state)) {
    return;
  }
  const auto followers = static_cast<std::size_t>(state.range(0));
  Tracker tracker{kLeader};
  std::int64_t sent = 1'000'000;
  configure(tracker, followers, sent);
  std::size_t next = 0;

  AllocationGuard guard;
  for (auto _ : state) {
    sent += 1000;
    tracker.record(static_cast<NodeId>(kLeader + 1 + next), at(sent));
    next = next + 1 == followers ? 0 : next + 1;
  }
  report_allocations(state, guard);

  // A majority of the followers + 1 voters is the leader and the (followers + 1) / 2 freshest
  // followers; the oldest of those answered (followers + 1) / 2 - 1 acks before the last one.
  const auto behind = static_cast<std::int64_t>((followers + 1) / 2 - 1);
  const std::int64_t want = sent - behind * 1000;
  if (tracker.quorum_ack() != at(want)) {
    state.SkipWithError("record: the quorum-ack instant is not the one the acks imply");
  }
}
BENCHMARK(BM_QuorumAckTracker_Record)->Arg(3)->Arg(5)->Arg(7);

void BM_QuorumAckTracker_QuorumAck(benchmark::State& state) {
  if (!allocation_counting_or_skip(state)) {
    return;
  }
  Tracker tracker{kLeader};
  std::int64_t sent = 1'000'000;
  configure(tracker, 4, sent);

  AllocationGuard guard;
  for (auto _ : state) {
    benchmark::DoNotOptimize(tracker.quorum_ack());
  }
  report_allocations(state, guard);
  if (tracker.quorum_ack() == Tracker::kNever) {
    state.SkipWithError("quorum_ack: no quorum instant");
  }
}
BENCHMARK(BM_QuorumAckTracker_QuorumAck);

// A minimal LeaseProvider on the real clock: what an engine embedding a QuorumAckTracker offers.
// It leads term 3 of a three-voter group whose followers answer a heartbeat every 5 ms, recorded
// by a heartbeat thread standing in for the group's thread, so the lease holds however long the
// benchmark runs and the readers see the published instant change as they would in production.
class SteadyProvider {
 public:
  using clock_type = SteadyClock;
  using time_point = clock_type::time_point;

  struct read_request {
    explicit read_request(tenure::raft::Completion<LogIndex> done) noexcept : done(done) {}
    tenure::raft::Completion<LogIndex> done;
  };

  SteadyProvider() {
    const std::array<NodeId, 3> voters{kLeader, 2, 3};
    if (tracker_.set_configuration(voters)) {
      std::abort();
    }
    heartbeat();  // the lease holds from the first read on
    heartbeats_ = std::jthread([this](std::stop_token stop) {
      while (!stop.stop_requested()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
        heartbeat();
      }
    });
  }

  const clock_type& clock() const noexcept { return clock_; }
  Term leader_term() const noexcept { return term_.load(std::memory_order_acquire); }
  NodeId leader_hint() const noexcept { return kLeader; }
  LogIndex applied_index() const noexcept { return applied_.load(std::memory_order_acquire); }
  time_point quorum_ack() const noexcept { return tracker_.quorum_ack(); }
  // Never reached while the lease holds; answered at once so that a slow path cannot hang.
  void read_index(read_request& request, time_point) {
    request.done(tenure::raft::errc::lease_expired);
  }
  void subscribe_leader_loss(tenure::lease::LeaderLossCallback& callback) { losses_.add(callback); }

 private:
  // Both followers answered a request sent just now (the heartbeat thread is the only writer).
  void heartbeat() noexcept {
    const time_point sent = clock_.now();
    tracker_.record(2, sent);
    tracker_.record(3, sent);
  }

  clock_type clock_;
  std::atomic<Term> term_{3};
  std::atomic<LogIndex> applied_{42};
  Tracker tracker_{kLeader};
  tenure::lease::LeaderLossList losses_;
  std::jthread heartbeats_;  // last: stopped and joined before the tracker goes away
};

struct FastPathGroup {
  SteadyProvider provider;
  LeaseCoordinator<SteadyProvider> coordinator{provider, lease_config()};

  // The provider reports no election timeout: the config names it.
  static LeaseConfig lease_config() {
    LeaseConfig c;
    c.election_timeout_min = std::chrono::milliseconds(150);
    return c;
  }
};

// Shared by every thread of every run; built on first use, outside any timed loop.
FastPathGroup& fast_path_group() {
  static FastPathGroup group;
  return group;
}

// Every thread reads the same coordinator, as request handlers do. With two threads the reported
// time per read is wall time over the reads of both threads, so its inverse is the aggregate rate.
void BM_LeaseCoordinator_LeaseRead_FastPath(benchmark::State& state) {
  if (!allocation_counting_or_skip(state)) {
    return;
  }
  const auto& coordinator = fast_path_group().coordinator;
  std::int64_t failures = 0;

  AllocationGuard guard;
  for (auto _ : state) {
    auto read = coordinator.lease_read();
    benchmark::DoNotOptimize(read);
    failures += read.has_value() ? 0 : 1;
  }
  report_allocations(state, guard);

  state.counters["failed_reads"] =
      benchmark::Counter(static_cast<double>(failures), benchmark::Counter::kDefaults);
  if (failures != 0) {
    state.SkipWithError("lease_read: some reads were not served from the lease");
  }
}
BENCHMARK(BM_LeaseCoordinator_LeaseRead_FastPath)->Threads(1)->Threads(2);

}  // namespace

BENCHMARK_MAIN();
