// Installing a multi-MiB snapshot on a follower over the deterministic simulator (3 nodes, one
// process, every message encoded and decoded by the codec in SimNetwork).
//
// - BM_Snapshot_Install: a follower that needs compacted entries receives the leader's
//   kSnapshotBytes snapshot in snapshot_chunk_bytes (1 MiB) chunks, snapshot_window (4) at a
//   time, writes them to its storage, and restores its state machine from it. Each iteration
//   first (untimed) isolates the follower, commits one entry without it, has the leader take a
//   snapshot and compact its log past the follower; then (timed) heals the network and runs the
//   simulation until the follower has installed the snapshot. The timed part is therefore the
//   whole catch-up: the rejoin handshake that finds the follower needs a snapshot, the chunks
//   (leader: read from storage, encode; follower: decode, write to storage, acknowledge) and the
//   restore (read back from storage, restore_chunk per chunk). bytes_per_second = snapshot bytes
//   installed; simulated time costs nothing, so this is CPU (mostly memcpy) throughput.
//   allocs_per_op: heap allocations in the timed part per chunk sent in it, which must be 0
//   after the warm-up installs (benchmark.smoke checks it). chunks_per_install: every chunk the
//   leader sent per install, timed or not (into the partition before the heal, and after the
//   follower had every byte): kSnapshotBytes / kChunkBytes = 8 when none is sent twice.
//   The storage is MemoryStorage with its snapshot slots replaced (ReusingSnapshotStorage below):
//   MemoryStorage keeps each snapshot in a fresh std::vector that grows by insert as chunks
//   arrive, which is a property of that test storage, not of the group (FileStorage, the
//   production one, streams a snapshot into a file). Replacing only the snapshot slots keeps the
//   allocation count about the group, the codec and the simulated network.
// - BM_Snapshot_Install_MemoryStorage: the same over plain MemoryStorage. Its allocs_per_op is
//   reported, not required to be 0: per install, the follower's begin_snapshot copies the voters
//   into a new SnapshotMeta and write_snapshot grows the data vector 1, 2, 4, 8 MiB (5
//   allocations), and finish_snapshot frees the 8 MiB of the snapshot it replaces.
//
// The counting operator new lives in lease_benchmarks.cpp.
#include <raft/memory_storage.hpp>
#include <raft/operations.hpp>
#include <raft/snapshot.hpp>
#include <raft/testing/allocation_guard.hpp>
#include <raft/testing/sim_cluster.hpp>
#include <raft/testing/sim_storage.hpp>
#include <raft/types.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace bench_snapshot {

using tenure::raft::LogIndex;
using tenure::raft::MemoryStorage;
using tenure::raft::SnapshotMeta;
using tenure::raft::WriteSeq;

// The snapshot: an 8-byte stamp (the last applied index) and a blob, 8 MiB in all.
constexpr std::size_t kSnapshotBytes = std::size_t{8} << 20;
constexpr std::size_t kStampBytes = 8;
constexpr std::size_t kBlobBytes = kSnapshotBytes - kStampBytes;
constexpr std::uint64_t kChunkBytes = std::uint64_t{1} << 20;
constexpr std::uint32_t kWindow = 4;

// A SnapshotStateMachine whose state is a stamp, which apply() sets, and a large blob that
// apply() never changes. begin_snapshot() captures the stamp by value and the blob by pointer
// (unchanged until a restore, and a follower drops its own save before it installs anything, so
// the pointer is never read across one). A restore copies into a second blob allocated up front
// and swaps the two at the end: restoring allocates nothing.
class BlobStateMachine {
 public:
  BlobStateMachine() : blob_(kBlobBytes), restoring_(kBlobBytes) {
    for (std::size_t i = 0; i < blob_.size(); ++i) {
      blob_[i] = static_cast<std::byte>((i * 131) >> 7);
    }
  }

  std::uint64_t apply(LogIndex index, std::span<const std::byte> /*payload*/) noexcept {
    stamp_ = index;
    return index;
  }

  class snapshot_reader {
   public:
    std::size_t read(std::span<std::byte> out) noexcept {
      std::size_t n = 0;
      while (n < out.size() && offset_ < kSnapshotBytes) {
        const std::byte* from =
            offset_ < kStampBytes ? stamp_.data() + offset_ : blob_ + (offset_ - kStampBytes);
        const std::size_t left =
            offset_ < kStampBytes ? kStampBytes - offset_ : kSnapshotBytes - offset_;
        const std::size_t k = std::min(left, out.size() - n);
        std::memcpy(out.data() + n, from, k);
        n += k;
        offset_ += k;
      }
      return n;
    }

   private:
    friend class BlobStateMachine;
    std::array<std::byte, kStampBytes> stamp_{};
    const std::byte* blob_ = nullptr;
    std::size_t offset_ = 0;
  };

  snapshot_reader begin_snapshot() const noexcept {
    snapshot_reader r;
    std::memcpy(r.stamp_.data(), &stamp_, kStampBytes);
    r.blob_ = blob_.data();
    return r;
  }

  void begin_restore() noexcept { restored_ = 0; }

  bool restore_chunk(std::span<const std::byte> in) noexcept {
    if (in.size() > kSnapshotBytes - restored_) {
      return false;
    }
    std::size_t used = 0;
    if (restored_ < kStampBytes) {
      used = std::min(in.size(), kStampBytes - restored_);
      std::memcpy(restoring_stamp_.data() + restored_, in.data(), used);
      restored_ += used;
    }
    if (used < in.size()) {
      std::memcpy(restoring_.data() + (restored_ - kStampBytes), in.data() + used,
                  in.size() - used);
      restored_ += in.size() - used;
    }
    return true;
  }

  bool finish_restore() noexcept {
    if (restored_ != kSnapshotBytes) {
      return false;
    }
    blob_.swap(restoring_);
    std::memcpy(&stamp_, restoring_stamp_.data(), kStampBytes);
    ++restores_;
    return true;
  }

  void abort_restore() noexcept { restored_ = 0; }

  std::uint64_t stamp() const noexcept { return stamp_; }
  std::uint64_t restores() const noexcept { return restores_; }
  std::span<const std::byte> blob() const noexcept { return blob_; }

 private:
  std::uint64_t stamp_ = 0;
  std::vector<std::byte> blob_;
  std::vector<std::byte> restoring_;  // the next state, built by a restore
  std::array<std::byte, kStampBytes> restoring_stamp_{};
  std::size_t restored_ = 0;  // bytes restored so far
  std::uint64_t restores_ = 0;
};

static_assert(tenure::raft::SnapshotStateMachine<BlobStateMachine>);

// MemoryStorage whose snapshot slots (the one being written, the newest finished) are two
// buffers that live as long as the storage and are reused: a new snapshot overwrites the older
// slot in place instead of growing a fresh vector chunk by chunk (see the header comment). The
// log, hard state and durability are MemoryStorage's; writes are durable at once (no
// manual_sync, so no crash journal to keep the replaced snapshot in).
class ReusingSnapshotStorage : public MemoryStorage {
 public:
  ReusingSnapshotStorage() : ReusingSnapshotStorage(Options{}) {}
  explicit ReusingSnapshotStorage(Options options) : MemoryStorage(options) {
    for (Slot& s : slots_) {
      s.data.reserve(kSnapshotBytes);
      s.meta.membership.voters.reserve(8);
      s.meta.membership.learners.reserve(8);
    }
  }

  void begin_snapshot(const SnapshotMeta& meta) {
    Slot& s = pending();
    s.meta.index = meta.index;
    s.meta.term = meta.term;
    s.meta.membership.voters.assign(meta.membership.voters.begin(), meta.membership.voters.end());
    s.meta.membership.outgoing.assign(meta.membership.outgoing.begin(),
                                      meta.membership.outgoing.end());
    s.meta.membership.learners.assign(meta.membership.learners.begin(),
                                      meta.membership.learners.end());
    s.meta.size = 0;
    s.data.clear();  // keeps its capacity
    writing_ = true;
  }
  void write_snapshot(std::span<const std::byte> bytes) {
    if (writing_) {
      pending().data.insert(pending().data.end(), bytes.begin(), bytes.end());
    }
  }
  WriteSeq finish_snapshot() {
    if (writing_) {
      pending().meta.size = pending().data.size();
      current_ = 1 - current_;
      has_snapshot_ = true;
      writing_ = false;
    }
    // A write like any other, durable at once: MemoryStorage's sequence numbers (hard state
    // persisted unchanged would do the same) say when. Its last_seq() is the newest issued.
    return MemoryStorage::last_seq();
  }
  void abort_snapshot() { writing_ = false; }
  std::optional<SnapshotMeta> snapshot() const {
    return has_snapshot_ ? std::optional<SnapshotMeta>(slots_[current_].meta) : std::nullopt;
  }
  std::size_t read_snapshot(std::uint64_t offset, std::span<std::byte> out) const {
    const std::vector<std::byte>& data = slots_[current_].data;
    if (!has_snapshot_ || offset >= data.size()) {
      return 0;
    }
    const std::size_t n =
        static_cast<std::size_t>(std::min<std::uint64_t>(out.size(), data.size() - offset));
    std::memcpy(out.data(), data.data() + offset, n);
    return n;
  }

 private:
  struct Slot {
    SnapshotMeta meta;
    std::vector<std::byte> data;
  };
  Slot& pending() noexcept { return slots_[1 - current_]; }

  std::array<Slot, 2> slots_;
  std::size_t current_ = 0;  // slots_[current_]: the newest finished snapshot, if has_snapshot_
  bool has_snapshot_ = false;
  bool writing_ = false;
};

static_assert(tenure::raft::SnapshotStorage<ReusingSnapshotStorage>);

}  // namespace bench_snapshot

// SimCluster keeps each node's storage in a SimStorage<Storage>: this one, like MemoryStorage's,
// has no format to recover and nothing to lose (writes are durable at once).
template <>
class tenure::raft::testing::SimStorage<bench_snapshot::ReusingSnapshotStorage> {
 public:
  using Options = MemoryStorage::Options;

  explicit SimStorage(const Options& options) : storage_(options) {}

  bench_snapshot::ReusingSnapshotStorage& get() noexcept { return storage_; }
  const bench_snapshot::ReusingSnapshotStorage& get() const noexcept { return storage_; }
  bool recover() { return true; }
  bool up() const noexcept { return true; }
  void crash(std::uint64_t /*entropy*/) {}
  void persist(std::uint64_t /*entropy*/) {}
  void persist_all() {}
  bool unsynced() const noexcept { return false; }
  bool supports_media_faults() const noexcept { return false; }
  bool fail_sync(std::uint64_t /*entropy*/) { return false; }
  bool corrupt(std::uint64_t /*entropy*/) { return false; }
  const std::string& last_corruption() const noexcept { return failure_; }
  const std::string& last_failure() const noexcept { return failure_; }

 private:
  bench_snapshot::ReusingSnapshotStorage storage_;
  std::string failure_;
};

namespace bench_snapshot {
namespace {

using namespace std::chrono_literals;
using tenure::raft::Completion;
using tenure::raft::kNoNode;
using tenure::raft::NodeId;
using tenure::raft::NoPlantedBugs;
using tenure::raft::ProposeOperation;
using tenure::raft::ProposeResult;
using tenure::raft::Result;
using tenure::raft::testing::thread_allocation_counts;

template <class Storage>
using ClusterOn = tenure::raft::testing::SimCluster<BlobStateMachine, 7, NoPlantedBugs, Storage>;
static_assert(ClusterOn<ReusingSnapshotStorage>::Group::kSnapshots);
static_assert(ClusterOn<MemoryStorage>::Group::kSnapshots);

// Installs before the timed ones: the network's frame pool, the follower's and leader's scratch
// and the storages' slots reach their high-water marks (two, so that both slots have held one).
constexpr int kWarmupInstalls = 5;

bool allocation_counting_or_skip(benchmark::State& state) {
  if (!tenure::raft::testing::allocation_counting_installed()) {
    state.SkipWithError("allocation counting is not installed: allocs_per_op would read 0");
    return false;
  }
  return true;
}

template <class Cluster>
typename Cluster::Options install_options() {
  typename Cluster::Options o;
  o.nodes = 3;
  o.seed = 42;
  o.network.min_delay = 100us;  // fixed: no reordering, no loss. Simulated time costs nothing.
  o.network.max_delay = 100us;
  o.network.drop_rate = 0.0;
  o.network.duplicate_rate = 0.0;
  o.tick_interval = 5ms;          // under heartbeat_interval / 2; the leader saves a chunk a tick
  o.config.snapshot_entries = 0;  // snapshots only when the benchmark asks for one
  o.config.snapshot_chunk_bytes = kChunkBytes;
  o.config.snapshot_window = kWindow;
  o.config.log_retention_entries = 0;  // the leader compacts through its snapshot
  return o;
}

struct Proposal {
  std::optional<Result<ProposeResult>> outcome;
  std::array<std::byte, 8> payload{};
  ProposeOperation op{Completion<ProposeResult>{&done, this}};
  static void done(void* self, Result<ProposeResult> r) noexcept {
    static_cast<Proposal*>(self)->outcome = r;
  }
};

// One leader and one follower that will be made to need a snapshot, again and again.
template <class Cluster>
class InstallRig {
 public:
  explicit InstallRig(Cluster& cluster) : cluster_(cluster) {}

  // Elects a leader and waits until it serves. Returns an error message, or nullptr.
  const char* start() {
    leader_ = cluster_.wait_for_leader();
    if (leader_ == kNoNode ||
        !cluster_.run_until([&] { return cluster_.group(leader_).leader_term() != 0; }, 1s)) {
      return "no leader";
    }
    cluster_.run_for(50ms);
    follower_ = leader_ % 3 + 1;
    return nullptr;
  }

  // Untimed, after an install: the follower's answers reach the leader (the last one says it is
  // done), which replicates to it by appends again, as after a real catch-up.
  const char* settle() {
    typename Cluster::Group& leader = cluster_.group(leader_);
    const bool caught_up = cluster_.run_until(
        [&] {
          return leader.match_of(follower_) == leader.last_index() &&
                 cluster_.group(follower_).last_applied() == leader.last_applied();
        },
        1s);
    return caught_up ? nullptr : "the follower did not catch up after an install";
  }

  // Untimed: once the last install has settled, the follower is cut off, an entry is committed
  // without it, and the leader takes a snapshot (a chunk per tick) and compacts its log past the
  // follower's last entry.
  const char* prepare() {
    if (const char* error = settle()) {
      return error;
    }
    if (cluster_.leader() != leader_) {
      return "the leader changed";
    }
    typename Cluster::Group& leader = cluster_.group(leader_);
    cluster_.network().isolate(follower_);
    proposal_.outcome.reset();
    ++counter_;
    std::memcpy(proposal_.payload.data(), &counter_, sizeof counter_);
    leader.propose(proposal_.op, proposal_.payload);
    leader.flush();
    if (!cluster_.run_until([&] { return proposal_.outcome.has_value(); }, 1s) ||
        !proposal_.outcome->has_value()) {
      return "an entry did not commit without the follower";
    }
    const LogIndex target = leader.last_applied();
    leader.request_snapshot();
    const bool compacted = cluster_.run_until(
        [&] {
          return leader.snapshot_index() >= target &&
                 cluster_.node(leader_).storage().first_index() >
                     cluster_.group(follower_).last_index() + 1;
        },
        2s);
    if (!compacted) {
      return "the leader did not take a snapshot and compact past the follower";
    }
    return nullptr;
  }

  // Timed: the network heals and the follower installs the snapshot.
  bool install() {
    typename Cluster::Group& follower = cluster_.group(follower_);
    const std::uint64_t installed = follower.stats().snapshots_installed;
    cluster_.network().heal();
    const bool done =
        cluster_.run_until([&] { return follower.stats().snapshots_installed > installed; }, 5s);
    installs_ += done ? 1 : 0;
    return done;
  }

  // After the run (settled): the follower was restored once per install and holds exactly the
  // leader's state.
  const char* verify() {
    const BlobStateMachine& l = cluster_.machine(leader_);
    const BlobStateMachine& f = cluster_.machine(follower_);
    if (f.restores() != installs_) {
      return "the follower was not restored once per install";
    }
    if (f.stamp() != l.stamp() || f.stamp() != cluster_.group(leader_).last_applied()) {
      return "the follower's stamp differs from the leader's";
    }
    if (!std::equal(l.blob().begin(), l.blob().end(), f.blob().begin(), f.blob().end())) {
      return "the follower's blob differs from the leader's";
    }
    return nullptr;
  }

  typename Cluster::Group& leader() { return cluster_.group(leader_); }

 private:
  Cluster& cluster_;
  NodeId leader_ = kNoNode;
  NodeId follower_ = kNoNode;
  Proposal proposal_;
  std::uint64_t counter_ = 0;
  std::uint64_t installs_ = 0;
};

template <class Storage>
void run_installs(benchmark::State& state) {
  if (!allocation_counting_or_skip(state)) {
    return;
  }
  using Cluster = ClusterOn<Storage>;
  Cluster cluster(install_options<Cluster>());
  InstallRig<Cluster> rig(cluster);
  if (const char* error = rig.start()) {
    state.SkipWithError(error);
    return;
  }
  for (int i = 0; i < kWarmupInstalls; ++i) {
    if (const char* error = rig.prepare()) {
      state.SkipWithError(error);
      return;
    }
    if (!rig.install()) {
      state.SkipWithError("warm-up: the follower did not install the snapshot");
      return;
    }
  }

  const char* error = nullptr;
  std::uint64_t allocations = 0;
  std::uint64_t chunks = 0;  // sent while timed
  const std::uint64_t chunks_at_start = rig.leader().stats().snapshot_chunks_sent;
  for (auto _ : state) {
    state.PauseTiming();
    error = rig.prepare();
    if (error != nullptr) {
      break;
    }
    const std::uint64_t chunks_before = rig.leader().stats().snapshot_chunks_sent;
    state.ResumeTiming();
    const std::uint64_t allocations_before = thread_allocation_counts().allocations;
    const bool installed = rig.install();
    allocations += thread_allocation_counts().allocations - allocations_before;
    chunks += rig.leader().stats().snapshot_chunks_sent - chunks_before;
    if (!installed) {
      error = "the follower did not install the snapshot";
      break;
    }
  }
  if (error == nullptr) {
    error = rig.settle();
  }
  if (error == nullptr) {
    error = rig.verify();
  }
  if (error != nullptr) {
    state.SkipWithError(error);
    return;
  }
  const auto installs = static_cast<std::int64_t>(state.iterations());
  state.SetItemsProcessed(installs);
  state.SetBytesProcessed(installs * static_cast<std::int64_t>(kSnapshotBytes));
  state.counters["allocs_per_op"] =
      static_cast<double>(allocations) / static_cast<double>(chunks > 0 ? chunks : 1);
  // Every chunk the leader sent for these installs, timed or not: kSnapshotBytes / kChunkBytes
  // if none were sent twice (or into the partition before the heal).
  const std::uint64_t chunks_in_all = rig.leader().stats().snapshot_chunks_sent - chunks_at_start;
  state.counters["chunks_per_install"] =
      static_cast<double>(chunks_in_all) / static_cast<double>(installs > 0 ? installs : 1);
}

void BM_Snapshot_Install(benchmark::State& state) {
  run_installs<ReusingSnapshotStorage>(state);
}
BENCHMARK(BM_Snapshot_Install)->Unit(benchmark::kMillisecond);

void BM_Snapshot_Install_MemoryStorage(benchmark::State& state) {
  run_installs<MemoryStorage>(state);
}
BENCHMARK(BM_Snapshot_Install_MemoryStorage)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace bench_snapshot
