// The steady state of a simulated cluster allocates nothing: batched proposals through commit and
// apply, heartbeats, ReadIndex reads (on the leader and forwarded by a follower), lease reads
// through a LeaseCoordinator over the leader's RaftGroup, and MemoryStorage compaction reusing its
// rings. Counted with AllocationGuard (tests/main.cpp installs the counting operator new).
#include <lease/lease_config.hpp>
#include <lease/lease_coordinator.hpp>
#include <raft/metrics.hpp>
#include <raft/testing/allocation_guard.hpp>
#include <raft/testing/counting_logger.hpp>
#include <raft/testing/sim_cluster.hpp>

#include <doctest/doctest.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>

using namespace std::chrono_literals;
using tenure::raft::Completion;
using tenure::raft::kNoNode;
using tenure::raft::LogIndex;
using tenure::raft::NodeId;
using tenure::raft::ProposeOperation;
using tenure::raft::ProposeResult;
using tenure::raft::ReadIndexOperation;
using tenure::raft::Result;
using tenure::raft::testing::AllocationGuard;
// The default policies, and the same cluster with metrics recorded (AtomicMetrics) and a logger
// that is enabled: observability must not cost the hot paths an allocation either.
using PlainCluster = tenure::raft::testing::SimCluster<>;
using ObservedCluster =
    tenure::raft::testing::SimCluster<tenure::raft::testing::DigestStateMachine, 7,
                                      tenure::raft::NoPlantedBugs, tenure::raft::MemoryStorage,
                                      tenure::raft::AtomicMetrics,
                                      tenure::raft::testing::CountingLogger>;

namespace {

constexpr std::size_t kProposalsPerRound = 100;
constexpr std::size_t kLeaderReadsPerRound = 16;
constexpr std::size_t kFollowerReadsPerRound = 8;
constexpr std::size_t kLeaseReadsPerRound = 16;
constexpr std::size_t kFallbackReadsPerRound = 8;
constexpr std::size_t kPayloadBytes = 64;

// Outcomes of every operation of the workload, counted without allocating (no doctest macro
// runs inside the guarded region: a failing one would build strings).
struct Tally {
  std::uint64_t outstanding = 0;
  std::uint64_t proposals_ok = 0;
  std::uint64_t reads_ok = 0;
  std::uint64_t lease_reads_ok = 0;
  std::uint64_t served_by_lease = 0;
  std::uint64_t served_by_read_index = 0;
  std::uint64_t fast_path_ok = 0;
  std::uint64_t failures = 0;
  LogIndex last_result = 0;
};

// An operation with a completion that reports to a Tally. Not movable: the completion points at
// the slot, so slots live in a fixed array.
struct ProposalSlot {
  Tally* tally = nullptr;
  ProposeOperation op{Completion<ProposeResult>{&done, this}};
  static void done(void* self, Result<ProposeResult> r) noexcept {
    Tally& t = *static_cast<ProposalSlot*>(self)->tally;
    --t.outstanding;
    if (r) {
      ++t.proposals_ok;
      t.last_result = r.value().index;
    } else {
      ++t.failures;
    }
  }
};

struct ReadSlot {
  Tally* tally = nullptr;
  ReadIndexOperation op{Completion<LogIndex>{&done, this}};
  static void done(void* self, Result<LogIndex> r) noexcept {
    Tally& t = *static_cast<ReadSlot*>(self)->tally;
    --t.outstanding;
    if (r) {
      ++t.reads_ok;
    } else {
      ++t.failures;
    }
  }
};

template <class Coordinator>
struct LeaseReadSlot {
  Tally* tally = nullptr;
  typename Coordinator::ReadOperation op{Completion<LogIndex>{&done, this}};
  static void done(void* self, Result<LogIndex> r) noexcept {
    Tally& t = *static_cast<LeaseReadSlot*>(self)->tally;
    --t.outstanding;
    if (r) {
      ++t.lease_reads_ok;
    } else {
      ++t.failures;
    }
  }
};

template <class Cluster>
typename Cluster::Options cluster_options() {
  typename Cluster::Options o;
  o.nodes = 3;
  o.seed = 11;
  o.config.log_retention_entries = 1000;  // compacts every few hundred entries: the rings cycle
  return o;
}

template <class Options>
tenure::lease::LeaseConfig lease_config(const Options& o) {
  tenure::lease::LeaseConfig c;
  c.election_timeout_min = o.config.election_timeout_min;
  return c;
}

// A lease of 1 ms (the group's 100 ms election timeout less a 99 ms margin), far shorter than the
// 20 ms heartbeat interval: nearly every read through this coordinator misses the lease and takes
// the ReadIndex fallback (which then extends the caller-side lease from its anchor).
tenure::lease::LeaseConfig short_lease_config() {
  tenure::lease::LeaseConfig c;
  c.max_clock_drift_ppm = 0;
  c.margin = 99ms;
  return c;
}

// The workload: every round proposes a batch and flushes once, queues ReadIndex reads on the
// leader and on a follower, reads through the coordinator (served by the lease) and its fast
// path, and through a short-lease coordinator (the ReadIndex fallback), then runs the simulation
// until everything completed and a few more ticks passed.
template <class Cluster>
class Workload {
 public:
  using Coordinator = tenure::lease::LeaseCoordinator<typename Cluster::Group>;

  Workload(Cluster& cluster, NodeId leader, NodeId follower, Coordinator& coordinator,
           Coordinator& short_lease)
      : cluster_(cluster),
        leader_(cluster.group(leader)),
        follower_(cluster.group(follower)),
        coordinator_(coordinator),
        short_lease_(short_lease),
        proposals_(new ProposalSlot[kProposalsPerRound]),
        leader_reads_(new ReadSlot[kLeaderReadsPerRound]),
        follower_reads_(new ReadSlot[kFollowerReadsPerRound]),
        lease_reads_(new LeaseReadSlot<Coordinator>[kLeaseReadsPerRound]),
        fallback_reads_(new LeaseReadSlot<Coordinator>[kFallbackReadsPerRound]) {
    for (std::size_t i = 0; i < kProposalsPerRound; ++i) {
      proposals_[i].tally = &tally_;
    }
    for (std::size_t i = 0; i < kLeaderReadsPerRound; ++i) {
      leader_reads_[i].tally = &tally_;
    }
    for (std::size_t i = 0; i < kFollowerReadsPerRound; ++i) {
      follower_reads_[i].tally = &tally_;
    }
    for (std::size_t i = 0; i < kLeaseReadsPerRound; ++i) {
      lease_reads_[i].tally = &tally_;
    }
    for (std::size_t i = 0; i < kFallbackReadsPerRound; ++i) {
      fallback_reads_[i].tally = &tally_;
    }
  }

  // Runs `rounds` rounds; returns false if one did not complete within a simulated second.
  bool run(std::size_t rounds) {
    for (std::size_t r = 0; r < rounds; ++r) {
      if (!round()) {
        return false;
      }
    }
    return true;
  }

  const Tally& tally() const noexcept { return tally_; }

 private:
  bool round() {
    ++round_;
    for (std::size_t i = 0; i < kProposalsPerRound; ++i) {
      payload_[0] = static_cast<std::byte>(round_);
      payload_[1] = static_cast<std::byte>(i);
      ++tally_.outstanding;
      leader_.propose(proposals_[i].op, payload_);
    }
    leader_.flush();  // one batch: appends leave now
    for (std::size_t i = 0; i < kLeaderReadsPerRound; ++i) {
      ++tally_.outstanding;
      leader_.read_index(leader_reads_[i].op);
    }
    leader_.flush();  // one heartbeat round confirms them all
    for (std::size_t i = 0; i < kFollowerReadsPerRound; ++i) {
      ++tally_.outstanding;
      follower_.read_index(follower_reads_[i].op);
    }
    follower_.flush();  // one forwarded batch
    for (std::size_t i = 0; i < kLeaseReadsPerRound; ++i) {
      ++tally_.outstanding;
      coordinator_.read(lease_reads_[i].op);
      if (lease_reads_[i].op.served_by_lease()) {
        ++tally_.served_by_lease;
      }
    }
    for (std::size_t i = 0; i < kFallbackReadsPerRound; ++i) {
      ++tally_.outstanding;
      short_lease_.read(fallback_reads_[i].op);
      if (!fallback_reads_[i].op.served_by_lease()) {
        ++tally_.served_by_read_index;
      }
    }
    leader_.flush();
    for (int i = 0; i < 4; ++i) {
      if (coordinator_.lease_read()) {
        ++tally_.fast_path_ok;
      }
    }
    if (!cluster_.run_until([&] { return tally_.outstanding == 0; }, 1s)) {
      return false;
    }
    cluster_.run_for(3ms);  // ticks: heartbeats go out on their own schedule too
    return true;
  }

  Cluster& cluster_;
  typename Cluster::Group& leader_;
  typename Cluster::Group& follower_;
  Coordinator& coordinator_;
  Coordinator& short_lease_;
  Tally tally_;
  std::uint64_t round_ = 0;
  std::array<std::byte, kPayloadBytes> payload_{};
  std::unique_ptr<ProposalSlot[]> proposals_;
  std::unique_ptr<ReadSlot[]> leader_reads_;
  std::unique_ptr<ReadSlot[]> follower_reads_;
  std::unique_ptr<LeaseReadSlot<Coordinator>[]> lease_reads_;
  std::unique_ptr<LeaseReadSlot<Coordinator>[]> fallback_reads_;
};

template <class Cluster>
void check_steady_state_allocates_nothing() {
  using Coordinator = typename Workload<Cluster>::Coordinator;
  REQUIRE(tenure::raft::testing::allocation_counting_installed());

  const typename Cluster::Options options = cluster_options<Cluster>();
  Cluster cluster(options);
  const NodeId leader = cluster.wait_for_leader();
  REQUIRE(leader != kNoNode);
  const NodeId follower = leader == 1 ? 2 : 1;
  Coordinator coordinator(cluster.group(leader), lease_config(options));
  Coordinator short_lease(cluster.group(leader), short_lease_config());
  // Until the leader's no-op commits, neither reads nor the lease are served: let it settle.
  REQUIRE(cluster.run_until([&] { return cluster.group(leader).leader_term() != 0; }, 1s));
  cluster.run_for(100ms);
  Workload<Cluster> workload(cluster, leader, follower, coordinator, short_lease);

  // Warm-up: the same workload, unguarded, long enough for every ring, pool and heap (storage
  // rings, durability waiters, network frames and event heap) to reach its high-water mark.
  REQUIRE(workload.run(300));
  const Tally warm = workload.tally();
  REQUIRE(warm.failures == 0);
  REQUIRE(cluster.group(leader).storage().first_index() > 1);  // compaction happened
  const auto& storage = cluster.group(leader).storage();
  const std::size_t entry_capacity = storage.entry_capacity();
  const std::size_t byte_capacity = storage.byte_capacity();
  const LogIndex first_before = storage.first_index();
  const auto heartbeats_before = cluster.group(leader).stats().heartbeat_rounds;

  AllocationGuard guard;
  const bool completed = workload.run(300);
  const auto allocations = guard.allocations();
  const auto deallocations = guard.deallocations();

  REQUIRE(completed);
  CHECK(allocations == 0);
  CHECK(deallocations == 0);

  const Tally& t = workload.tally();
  CHECK(t.failures == 0);
  CHECK(t.outstanding == 0);
  CHECK(cluster.leader() == leader);
  CHECK(t.proposals_ok - warm.proposals_ok == 300 * kProposalsPerRound);
  CHECK(t.reads_ok - warm.reads_ok == 300 * (kLeaderReadsPerRound + kFollowerReadsPerRound));
  CHECK(t.lease_reads_ok - warm.lease_reads_ok ==
        300 * (kLeaseReadsPerRound + kFallbackReadsPerRound));
  CHECK(t.served_by_lease > warm.served_by_lease);            // the lease path ran
  CHECK(t.served_by_read_index > warm.served_by_read_index);  // and the ReadIndex fallback
  CHECK(t.fast_path_ok > warm.fast_path_ok);
  CHECK(cluster.group(leader).stats().heartbeat_rounds > heartbeats_before);
  CHECK(storage.first_index() > first_before);  // compacted while guarded
  CHECK(storage.entry_capacity() == entry_capacity);
  CHECK(storage.byte_capacity() == byte_capacity);
  cluster.run_for(100ms);  // followers learn the last commit index from a heartbeat
  for (const NodeId id : cluster.ids()) {
    CAPTURE(id);
    CHECK(cluster.group(id).last_applied() >= t.last_result);
    CHECK(cluster.machine(id).digest_at(t.last_result) ==
          cluster.machine(leader).digest_at(t.last_result));
  }
}

}  // namespace

TEST_CASE(
    "a warmed-up 3-node cluster commits - applies - heartbeats and reads without allocating") {
  check_steady_state_allocates_nothing<PlainCluster>();
}

TEST_CASE("with metrics recorded and a logger enabled the steady state still allocates nothing") {
  check_steady_state_allocates_nothing<ObservedCluster>();
}

TEST_CASE("the observed cluster's metrics moved during the workload") {
  // The allocation test above is only meaningful if the metrics were live: check they were.
  ObservedCluster cluster(cluster_options<ObservedCluster>());
  const NodeId leader = cluster.wait_for_leader();
  REQUIRE(leader != kNoNode);
  cluster.run_for(100ms);
  const auto& m = cluster.group(leader).metrics();
  CHECK(m.counter(tenure::raft::Counter::leader_elected) == 1);
  CHECK(m.counter(tenure::raft::Counter::messages_sent) > 0);
  CHECK(m.histogram(tenure::raft::Histogram::persist_micros).count > 0);
  CHECK(cluster.group(leader).logger().records >= 2);  // at least its term and role changes
}
