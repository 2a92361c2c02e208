// End-to-end benchmarks of the consensus core over the deterministic simulator: N RaftGroups in
// one process, every message encoded and decoded by the codec (SimNetwork). They measure CPU cost
// per committed entry and per confirmed read; simulated time is free, so the network is set fast
// (fixed small delay, no loss) and ticks are rare.
//
// - BM_SimCluster_Commit/<nodes>/<payload bytes>: entries proposed on the leader in batches of
//   kBatch (one flush each), committed, and applied on the leader (followers apply them when the
//   next append carries the commit index). items_per_second = entries committed and applied.
// - BM_SimCluster_ReadIndex: kReadsPerRound ReadIndex reads queued on a 3-node leader, confirmed
//   by one heartbeat round. items_per_second = reads confirmed.
//
// Both report allocs_per_op (allocations in the timed loop per entry or read), which must be 0:
// the setup runs the same workload first, so every ring, pool and heap has reached its
// high-water mark (benchmark.smoke checks it). The counting operator new lives in
// lease_benchmarks.cpp, the one translation unit of this program that includes it.
#include <raft/logger.hpp>
#include <raft/memory_storage.hpp>
#include <raft/metrics.hpp>
#include <raft/operations.hpp>
#include <raft/policies.hpp>
#include <raft/testing/allocation_guard.hpp>
#include <raft/testing/counting_logger.hpp>
#include <raft/testing/sim_cluster.hpp>
#include <raft/types.hpp>

#include <benchmark/benchmark.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

namespace {

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

constexpr std::size_t kBatch = 512;           // proposals per flush
constexpr std::size_t kReadsPerRound = 1024;  // reads per heartbeat round
constexpr std::size_t kWarmupRounds = 64;
// Warm-up also spans this many heartbeat rounds: heartbeats and their answers in flight next to
// appends are what takes the network's frame pool to its high-water mark.
constexpr std::uint64_t kWarmupHeartbeats = 8;

// A state machine that costs next to nothing, so that the numbers are the core's and the
// simulator's (DigestStateMachine hashes every payload byte on every node, which would dominate
// with 1 KiB entries). It still reads each payload.
class CountingStateMachine {
 public:
  std::uint64_t apply(LogIndex index, std::span<const std::byte> payload) noexcept {
    ++applied_;
    bytes_ += payload.size();
    if (!payload.empty()) {
      checksum_ +=
          static_cast<std::uint64_t>(payload.front()) ^ static_cast<std::uint64_t>(payload.back());
    }
    return index;
  }
  std::uint64_t applied() const noexcept { return applied_; }

 private:
  std::uint64_t applied_ = 0;
  std::uint64_t bytes_ = 0;
  std::uint64_t checksum_ = 0;
};

using Cluster = tenure::raft::testing::SimCluster<CountingStateMachine>;

// The same cluster with observability on: every group records AtomicMetrics and has a logger
// that is enabled at info (it counts records instead of writing them, so that the comparison is
// the core's bookkeeping, not stdio). BM_SimCluster_Commit against BM_SimCluster_Commit_Observed
// shows what metrics cost; the default policies (NoMetrics, NoLogger) compile it all away.
using ObservedCluster =
    tenure::raft::testing::SimCluster<CountingStateMachine, 7, tenure::raft::NoPlantedBugs,
                                      tenure::raft::MemoryStorage, tenure::raft::AtomicMetrics,
                                      tenure::raft::testing::CountingLogger>;

bool allocation_counting_or_skip(benchmark::State& state) {
  if (!tenure::raft::testing::allocation_counting_installed()) {
    state.SkipWithError("allocation counting is not installed: allocs_per_op would read 0");
    return false;
  }
  return true;
}

template <class C = Cluster>
typename C::Options fast_options(std::size_t nodes, std::size_t payload_bytes) {
  typename C::Options o;
  o.nodes = nodes;
  o.seed = 42;
  o.network.min_delay = 100us;  // fixed: no reordering. Simulated time costs nothing;
  o.network.max_delay = 100us;  // a batch round takes ~200 µs of it.
  o.network.drop_rate = 0.0;
  o.network.duplicate_rate = 0.0;
  o.tick_interval = 5ms;  // rare (one per ~25 rounds), yet under heartbeat_interval / 2
  o.config.log_retention_entries = 4 * kBatch;  // compacts often: the storage rings cycle
  o.config.max_entries_per_message = 4096;
  o.config.max_message_bytes = std::uint64_t{4} << 20;  // a whole batch of 1 KiB entries
  o.storage.initial_entries = 8 * kBatch;
  o.storage.initial_bytes = 8 * kBatch * (payload_bytes + 64);
  return o;
}

// Elects a leader and waits until it serves (its no-op is committed and applied).
template <class C>
NodeId settle(C& cluster) {
  const NodeId leader = cluster.wait_for_leader();
  if (leader == kNoNode ||
      !cluster.run_until([&] { return cluster.group(leader).leader_term() != 0; }, 1s)) {
    return kNoNode;
  }
  cluster.run_for(50ms);
  return leader;
}

struct Tally {
  std::uint64_t outstanding = 0;
  std::uint64_t failures = 0;
};

struct ProposalSlot {
  Tally* tally = nullptr;
  ProposeOperation op{Completion<ProposeResult>{&done, this}};
  static void done(void* self, Result<ProposeResult> r) noexcept {
    Tally& t = *static_cast<ProposalSlot*>(self)->tally;
    --t.outstanding;
    t.failures += r ? 0 : 1;
  }
};

struct ReadSlot {
  Tally* tally = nullptr;
  ReadIndexOperation op{Completion<LogIndex>{&done, this}};
  static void done(void* self, Result<LogIndex> r) noexcept {
    Tally& t = *static_cast<ReadSlot*>(self)->tally;
    --t.outstanding;
    t.failures += r ? 0 : 1;
  }
};

// One batch: kBatch proposals, one flush, run until every one is applied on the leader.
template <class C>
bool commit_batch(C& cluster, typename C::Group& leader, ProposalSlot* slots,
                  std::vector<std::byte>& payload, Tally& tally, std::uint64_t& counter) {
  for (std::size_t i = 0; i < kBatch; ++i) {
    payload.front() = static_cast<std::byte>(++counter);
    ++tally.outstanding;
    leader.propose(slots[i].op, payload);
  }
  leader.flush();
  return cluster.run_until([&] { return tally.outstanding == 0; }, 1s) && tally.failures == 0;
}

template <class C>
void commit_benchmark(benchmark::State& state) {
  if (!allocation_counting_or_skip(state)) {
    return;
  }
  const auto nodes = static_cast<std::size_t>(state.range(0));
  const auto payload_bytes = static_cast<std::size_t>(state.range(1));
  C cluster(fast_options<C>(nodes, payload_bytes));
  const NodeId leader_id = settle(cluster);
  if (leader_id == kNoNode) {
    state.SkipWithError("no leader");
    return;
  }
  typename C::Group& leader = cluster.group(leader_id);
  Tally tally;
  const std::unique_ptr<ProposalSlot[]> slots(new ProposalSlot[kBatch]);
  for (std::size_t i = 0; i < kBatch; ++i) {
    slots[i].tally = &tally;
  }
  std::vector<std::byte> payload(payload_bytes, std::byte{0x5a});
  std::uint64_t counter = 0;
  const std::uint64_t heartbeats = leader.stats().heartbeat_rounds;
  for (std::size_t r = 0;
       r < kWarmupRounds || leader.stats().heartbeat_rounds < heartbeats + kWarmupHeartbeats; ++r) {
    if (!commit_batch(cluster, leader, slots.get(), payload, tally, counter)) {
      state.SkipWithError("warm-up: a batch did not commit");
      return;
    }
  }
  const std::uint64_t applied_before = cluster.machine(leader_id).applied();

  bool ok = true;
  AllocationGuard guard;
  for (auto _ : state) {
    if (!commit_batch(cluster, leader, slots.get(), payload, tally, counter)) {
      ok = false;
      break;
    }
  }
  const auto allocations = guard.allocations();
  if (!ok) {
    state.SkipWithError("a batch did not commit (or a proposal failed)");
    return;
  }
  const auto entries = static_cast<std::int64_t>(state.iterations() * kBatch);
  if (cluster.machine(leader_id).applied() - applied_before !=
      static_cast<std::uint64_t>(entries)) {
    state.SkipWithError("the leader applied a different number of entries than it committed");
    return;
  }
  cluster.run_for(50ms);  // a heartbeat brings the followers the last commit index
  for (const NodeId id : cluster.ids()) {
    if (cluster.machine(id).applied() != cluster.machine(leader_id).applied()) {
      state.SkipWithError("a follower applied a different number of entries than the leader");
      return;
    }
  }
  state.SetItemsProcessed(entries);
  state.SetBytesProcessed(entries * static_cast<std::int64_t>(payload_bytes));
  state.counters["allocs_per_op"] =
      static_cast<double>(allocations) / static_cast<double>(entries > 0 ? entries : 1);
  state.counters["batch"] = static_cast<double>(kBatch);
}

void BM_SimCluster_Commit(benchmark::State& state) {
  commit_benchmark<Cluster>(state);
}
BENCHMARK(BM_SimCluster_Commit)
    ->Args({3, 64})
    ->Args({3, 1024})
    ->Args({5, 64})
    ->Args({5, 1024})
    ->Unit(benchmark::kMicrosecond);

void BM_SimCluster_Commit_Observed(benchmark::State& state) {
  commit_benchmark<ObservedCluster>(state);
}
BENCHMARK(BM_SimCluster_Commit_Observed)->Args({3, 64})->Unit(benchmark::kMicrosecond);

// One heartbeat round: kReadsPerRound reads queued on the leader, one flush, run until every one
// is confirmed (and, its read index being applied already, completed).
bool read_round(Cluster& cluster, Cluster::Group& leader, ReadSlot* slots, Tally& tally) {
  for (std::size_t i = 0; i < kReadsPerRound; ++i) {
    ++tally.outstanding;
    leader.read_index(slots[i].op);
  }
  leader.flush();
  return cluster.run_until([&] { return tally.outstanding == 0; }, 1s) && tally.failures == 0;
}

void BM_SimCluster_ReadIndex(benchmark::State& state) {
  if (!allocation_counting_or_skip(state)) {
    return;
  }
  Cluster cluster(fast_options(3, 64));
  const NodeId leader_id = settle(cluster);
  if (leader_id == kNoNode) {
    state.SkipWithError("no leader");
    return;
  }
  Cluster::Group& leader = cluster.group(leader_id);
  Tally tally;
  const std::unique_ptr<ReadSlot[]> slots(new ReadSlot[kReadsPerRound]);
  for (std::size_t i = 0; i < kReadsPerRound; ++i) {
    slots[i].tally = &tally;
  }
  for (std::size_t r = 0; r < kWarmupRounds; ++r) {
    if (!read_round(cluster, leader, slots.get(), tally)) {
      state.SkipWithError("warm-up: a read round did not complete");
      return;
    }
  }
  const std::uint64_t confirmed_before = leader.stats().reads_confirmed;

  bool ok = true;
  AllocationGuard guard;
  for (auto _ : state) {
    if (!read_round(cluster, leader, slots.get(), tally)) {
      ok = false;
      break;
    }
  }
  const auto allocations = guard.allocations();
  if (!ok) {
    state.SkipWithError("a read round did not complete (or a read failed)");
    return;
  }
  const auto reads = static_cast<std::int64_t>(state.iterations() * kReadsPerRound);
  if (leader.stats().reads_confirmed - confirmed_before != static_cast<std::uint64_t>(reads)) {
    state.SkipWithError("the leader confirmed a different number of reads than were queued");
    return;
  }
  state.SetItemsProcessed(reads);
  state.counters["allocs_per_op"] =
      static_cast<double>(allocations) / static_cast<double>(reads > 0 ? reads : 1);
  state.counters["reads_per_round"] = static_cast<double>(kReadsPerRound);
}
BENCHMARK(BM_SimCluster_ReadIndex)->Unit(benchmark::kMicrosecond);

}  // namespace
