// The seeded cluster simulator: a key-value store on N RaftGroups, clients, faults, invariant
// checks after every event and a linearizability check of the history (docs/testing.md).
#pragma once

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include <lease/lease_coordinator.hpp>
#include <raft/operations.hpp>
#include <raft/policies.hpp>
#include <raft/random.hpp>
#include <raft/testing/invariants.hpp>
#include <raft/testing/kv_history.hpp>
#include <raft/testing/kv_state_machine.hpp>
#include <raft/testing/linearizability.hpp>
#include <raft/testing/sim_cluster.hpp>
#include <raft/testing/sim_file_system.hpp>
#include <raft/testing/sim_storage.hpp>

namespace tenure::raft::testing {

/// The planted-bugs policy of simulations: which bugs are on is chosen per run, per thread (each
/// simulation runs on one thread; several may run in parallel).
struct SimPlantedBugs {
  static inline thread_local std::uint32_t mask = 0;
  static bool active(PlantedBug bug) noexcept {
    return (mask & static_cast<std::uint32_t>(bug)) != 0;
  }
};

/// The classes of fault a simulation can inject. Each run draws its own mix from its seed.
enum class FaultClass : std::uint8_t {
  loss,
  duplication,
  delay_reorder,
  clogged_link,
  symmetric_partition,
  asymmetric_partition,
  crash_restart,
  pause,
  clock_skew,
  leadership_transfer,
  flaky_links,
  divergence,
  disk_faults,
  stale_messages,
  membership,
};
inline constexpr std::size_t kFaultClasses = 15;

inline constexpr const char* to_string(FaultClass f) noexcept {
  switch (f) {
    case FaultClass::loss:
      return "loss";
    case FaultClass::duplication:
      return "duplication";
    case FaultClass::delay_reorder:
      return "delay/reorder";
    case FaultClass::clogged_link:
      return "clogged link";
    case FaultClass::symmetric_partition:
      return "symmetric partition";
    case FaultClass::asymmetric_partition:
      return "asymmetric partition";
    case FaultClass::crash_restart:
      return "crash-restart";
    case FaultClass::pause:
      return "process pause";
    case FaultClass::clock_skew:
      return "clock drift/skew";
    case FaultClass::leadership_transfer:
      return "leadership transfer";
    case FaultClass::flaky_links:
      return "flaky links";
    case FaultClass::divergence:
      return "divergence";
    case FaultClass::disk_faults:
      return "disk faults";
    case FaultClass::stale_messages:
      return "stale messages";
    case FaultClass::membership:
      return "membership changes";
  }
  return "?";
}

/// What one simulation run does. Everything not given here derives from `seed`.
struct SimulationOptions {
  std::uint64_t seed = 1;
  /// 0: 3 or 5, drawn from the seed.
  std::size_t nodes = 0;
  /// How long faults are injected (simulated time); then they heal and liveness is checked.
  std::chrono::nanoseconds chaos{std::chrono::seconds(4)};
  std::size_t clients = 4;
  std::size_t keys = 4;
  /// PlantedBug bits to switch on (teeth tests).
  std::uint32_t planted_bugs = 0;
  /// Plants the clock bug: nodes drift far beyond the configured max_clock_drift.
  bool excessive_drift = false;
  /// Restricts the faults drawn to these classes (bit i: FaultClass i); all by default.
  std::uint32_t allowed_faults = ~std::uint32_t{0};
  /// When set, a readable trace of the run (faults, leaders, operations) goes here.
  std::ostream* trace = nullptr;
  /// Which Storage the nodes run on: FileStorage over a simulated disk (its log format,
  /// recovery, torn writes and bit flips) or MemoryStorage. By default, drawn from the seed.
  enum class StorageKind : std::uint8_t { drawn, memory, file };
  StorageKind storage = StorageKind::drawn;
};

/// What a run found.
struct SimulationReport {
  std::uint64_t seed = 0;
  bool ok = true;
  std::string failure;  // the first invariant, linearizability or liveness failure
  std::uint64_t trace_hash = 0;
  std::array<bool, kFaultClasses> faults{};  // which fault classes fired
  std::size_t nodes = 0;
  bool file_storage = false;               // the nodes ran FileStorage over a simulated disk
  bool pre_vote = true;                    // RaftConfig::pre_vote of the run
  bool snapshots = false;                  // snapshots and compaction on
  std::uint64_t snapshots_taken = 0;       // by the nodes up at the end, since their start
  std::uint64_t snapshots_installed = 0;   // likewise
  std::uint64_t torn_syncs = 0;            // power failures in the middle of an fdatasync
  std::uint64_t corruptions_detected = 0;  // nodes whose recovery refused a flipped bit
  std::uint64_t operations = 0, ok_operations = 0, failed_operations = 0, ambiguous_operations = 0;
  std::uint64_t lease_reads = 0, lease_fast_path = 0;
  Term max_term = 0;
  std::int64_t liveness_ns = 0;  // from heal to the first committed write
};

namespace detail {

template <class Storage>
class Simulation {
 public:
  // Room for a joint configuration that replaces all of 5 voters at once, and a learner.
  using Cluster = SimCluster<KvStateMachine, 11, SimPlantedBugs, Storage>;
  using Group = Cluster::Group;
  using Coordinator = lease::LeaseCoordinator<Group>;

  explicit Simulation(const SimulationOptions& options)
      : options_(options), random_(options.seed * 0x9e3779b97f4a7c15ull + 17) {
    report_.seed = options.seed;
    report_.nodes = options.nodes != 0 ? options.nodes : (random_.below(2) == 0 ? 3 : 5);
    // Membership changes draw from their own stream: the runs without them replay as before.
    changes_ = allowed(FaultClass::membership) && membership_random_.below(100) < 60;
    total_nodes_ = report_.nodes + (changes_ ? report_.nodes : 0);  // a standby per voter
    checker_ = std::make_unique<InvariantChecker>(total_nodes_);
    // Sized once: machines and coordinators keep pointers into these.
    observers_.resize(total_nodes_ + 1);
    extras_.resize(total_nodes_ + 1);
    draw_faults();
    cluster_ = std::make_unique<Cluster>(cluster_options());
    cluster_->network().keep_last_requests(enabled(FaultClass::stale_messages));
    for (NodeId id : cluster_->ids()) {
      if (const auto ec = cluster_->clock(id).set_drift_ppm(drift_ppm(id))) {
        throw std::system_error(ec, "simulation drift");
      }
    }
    for (std::size_t c = 0; c < options_.clients; ++c) {
      clients_.push_back(std::make_unique<Client>(this, c + 1));
      clients_.back()->next_at = static_cast<std::int64_t>(random_.below(50'000'000));
      clients_.back()->target = static_cast<NodeId>(1 + random_.below(total_nodes_));
    }
  }

  SimulationReport run() {
    SimPlantedBugs::mask = options_.planted_bugs;
    const std::int64_t chaos_end = options_.chaos.count();
    while (cluster_->now() < chaos_end && checker_->ok()) {
      step(true);
    }
    if (checker_->ok()) {
      heal_and_check_liveness();
    }
    // Let pending operations finish or time out, then stop clients and check the history.
    const std::int64_t drain_end = cluster_->now() + 1'000'000'000;
    stop_clients_ = true;
    while (cluster_->now() < drain_end && checker_->ok() && busy_clients() != 0) {
      step(false);
    }
    SimPlantedBugs::mask = 0;
    finish();
    return report_;
  }

 private:
  static constexpr std::int64_t kStep = 1'000'000;  // 1 ms of true time per driver step
  static constexpr std::int64_t kRhoPpm = 1000;     // the configured max_clock_drift

  struct Client;

  struct NodeExtras {
    std::unique_ptr<Coordinator> coordinator;
  };

  // --- setup -----------------------------------------------------------------------------------

  bool allowed(FaultClass f) const noexcept {
    return (options_.allowed_faults >> static_cast<unsigned>(f) & 1u) != 0;
  }

  void draw_faults() {
    for (std::size_t f = 0; f < kFaultClasses; ++f) {
      enabled_[f] = allowed(static_cast<FaultClass>(f)) && random_.below(100) < 45;
    }
    if constexpr (!std::is_same_v<Storage, MemoryStorage>) {
      // Disk faults need a disk: the runs on FileStorage get them more often.
      enabled_[static_cast<std::size_t>(FaultClass::disk_faults)] =
          allowed(FaultClass::disk_faults) && random_.below(100) < 75;
    }
    // How fast the disks are: each millisecond a node syncs a random prefix of its pending
    // writes with this chance (1 in 1 .. 1 in 12): slow disks hold acknowledgements back longer.
    // Half the runs give every node its own disk speed: a candidate on a slow disk then hears
    // the votes of nodes on fast ones before its own term is on disk.
    static constexpr std::uint64_t kSyncOdds[] = {1, 2, 4, 12};
    const std::uint64_t odds = kSyncOdds[random_.below(4)];
    const bool mixed = random_.below(2) == 0;
    for (std::size_t id = 0; id < sync_odds_.size(); ++id) {
      // The first 8 from the main stream (as before there were standby nodes).
      auto& r = id < 8 ? random_ : membership_random_;
      sync_odds_[id] = mixed ? kSyncOdds[r.below(4)] : odds;
    }
    // And fsync latency spikes: per node and millisecond, the chance in 1000 that its disk
    // stalls for 10-80 ms (never, or about twice a second).
    static constexpr std::uint64_t kStallPerMille[] = {0, 0, 2};
    stall_per_mille_ = kStallPerMille[random_.below(3)];
    // How often a newly elected leader crashes within milliseconds (a crash loop): never, 1 in
    // 4, or 3 in 4 of them.
    static constexpr std::uint64_t kDoomPercent[] = {0, 25, 75};
    doom_percent_ = kDoomPercent[random_.below(3)];
    // How often a leader crashes right as its commit index advances, in 1/10000: a crash
    // point between committing an entry and replicating the next one.
    static constexpr std::uint64_t kCommitCrash[] = {0, 20, 200};
    commit_crash_ = kCommitCrash[random_.below(3)];
    // How often a node that has just become candidate, or leader, crashes before its pending
    // writes are durable (its new term and vote; a leader's no-op), in percent: the crash point
    // between a hard-state write and its sync.
    static constexpr std::uint64_t kCandidateCrashPercent[] = {0, 5, 15};
    static constexpr std::uint64_t kLeaderCrashPercent[] = {0, 25, 50};
    const auto crash_odds = random_.below(3);
    candidate_crash_percent_ = kCandidateCrashPercent[crash_odds];
    leader_crash_percent_ = kLeaderCrashPercent[crash_odds];
    // A quarter of the runs go without PreVote: elections then move terms on every timeout,
    // which is what exposes a candidate that acts in a term it has not made durable.
    report_.pre_vote = random_.below(4) != 0;
    // Snapshots and compaction in most runs on storage that keeps snapshots.
    snapshots_ = Cluster::Group::kSnapshots && random_.below(3) != 0;
    report_.snapshots = snapshots_;
    if (options_.excessive_drift) {
      enabled_[static_cast<std::size_t>(FaultClass::clock_skew)] = true;
    }
    enabled_[static_cast<std::size_t>(FaultClass::membership)] = changes_;
  }

  bool enabled(FaultClass f) const noexcept { return enabled_[static_cast<std::size_t>(f)]; }
  void fired(FaultClass f) noexcept { report_.faults[static_cast<std::size_t>(f)] = true; }

  std::int64_t drift_ppm(NodeId) {
    if (options_.excessive_drift) {
      // Far beyond the configured bound: alternate fast and slow nodes by 7 to 10 %.
      const auto magnitude = static_cast<std::int64_t>(70'000 + random_.below(30'001));
      fired(FaultClass::clock_skew);
      return random_.below(2) == 0 ? magnitude : -magnitude;
    }
    if (!enabled(FaultClass::clock_skew)) {
      return 0;
    }
    fired(FaultClass::clock_skew);
    return static_cast<std::int64_t>(random_.below(2 * kRhoPpm + 1)) - kRhoPpm;
  }

  typename Cluster::Options cluster_options() {
    typename Cluster::Options o;
    o.nodes = report_.nodes;
    o.standby = total_nodes_ - report_.nodes;
    o.seed = options_.seed;
    o.config.election_timeout_min = std::chrono::milliseconds(100);
    // Narrow ranges make split votes likely; wide ones make elections slow. Both happen, but a
    // narrow one only over fast disks and with PreVote. An election round takes two fsyncs (the
    // candidate's term before its requests leave, each voter's vote before its answer) and two
    // network delays; a spread narrower than that leaves candidates that started together to a
    // slow random walk of their timers before one gets in first, the more so without PreVote,
    // where a node whose log is behind bumps the term at every timeout. That livelock belongs
    // to the configuration, not to the code (docs/raft.md, "Choosing timeouts").
    static constexpr std::int64_t kElectionSpreadMs[] = {10, 50, 100};
    const bool fast_disks =
        *std::max_element(sync_odds_.begin() + 1, sync_odds_.begin() + report_.nodes + 1) <= 2;
    const std::uint64_t spread = random_.below(3);
    o.config.election_timeout_max = std::chrono::milliseconds(
        100 + kElectionSpreadMs[spread == 0 && !(fast_disks && report_.pre_vote) ? 1 : spread]);
    election_timeout_max_ = o.config.election_timeout_max.count();
    election_timeout_min_ = o.config.election_timeout_min.count();
    o.config.heartbeat_interval = std::chrono::milliseconds(20);
    o.config.default_operation_timeout = std::chrono::milliseconds(500);
    o.config.pre_vote = report_.pre_vote;
    if (snapshots_) {
      // Snapshots often (every 20-500 applied entries), in small chunks (so an install takes
      // several, and chunks get lost, duplicated and reordered), a short retention tail (so
      // lagging and restarted followers need them).
      static constexpr std::uint64_t kEvery[] = {20, 60, 150, 500};
      static constexpr std::uint64_t kChunk[] = {16, 64, 256, 4096};
      static constexpr std::uint32_t kWindow[] = {1, 2, 8};
      static constexpr std::uint64_t kRetention[] = {0, 5, 50};
      o.config.snapshot_entries = kEvery[random_.below(4)];
      o.config.snapshot_chunk_bytes = kChunk[random_.below(4)];
      o.config.snapshot_window = kWindow[random_.below(3)];
      o.config.log_retention_entries = kRetention[random_.below(3)];
    } else {
      o.config.snapshot_entries = 0;
      o.config.log_retention_entries = std::uint64_t{1} << 40;  // no compaction: restarts replay
    }
    o.config.max_pending_reads = 4096;
    // Small appends split a new leader's catch-up from its no-op, which is where an entry of an
    // earlier term can end up replicated on a majority before anything of the new term is.
    static constexpr std::uint32_t kEntriesPerMessage[] = {1, 2, 8, 64, 4096};
    o.config.max_entries_per_message = kEntriesPerMessage[random_.below(5)];
    static constexpr std::uint32_t kInflight[] = {1, 4, 256};
    o.config.max_inflight_messages = kInflight[random_.below(3)];
    if constexpr (std::is_same_v<Storage, MemoryStorage>) {
      o.storage.manual_sync = true;
      o.storage.initial_entries = 256;
      o.storage.initial_bytes = 16 << 10;
    } else {
      static constexpr std::uint64_t kSegmentBytes[] = {4 << 10, 16 << 10, 256 << 10};
      o.storage.segment_bytes = kSegmentBytes[random_.below(3)];
    }
    o.tick_interval = std::chrono::milliseconds(2);
    o.network.min_delay = std::chrono::microseconds(200);
    o.network.max_delay = std::chrono::milliseconds(2);
    if (enabled(FaultClass::delay_reorder)) {
      o.network.max_delay =
          std::chrono::milliseconds(2 + static_cast<std::int64_t>(random_.below(30)));
    }
    if (enabled(FaultClass::loss)) {
      o.network.drop_rate = static_cast<double>(random_.below(301)) / 1000.0;
    }
    if (enabled(FaultClass::duplication)) {
      o.network.duplicate_rate = static_cast<double>(random_.below(501)) / 1000.0;
    }
    if (enabled(FaultClass::stale_messages)) {
      // Up to 10 % of messages arrive once more, 50-600 ms later.
      o.network.late_duplicate_rate = static_cast<double>(1 + random_.below(100)) / 1000.0;
    }
    if (enabled(FaultClass::clock_skew) || options_.excessive_drift) {
      for (std::size_t i = 0; i < report_.nodes; ++i) {
        o.clock_offsets.push_back(
            std::chrono::seconds(static_cast<std::int64_t>(random_.below(100'000))));
      }
    }
    o.on_node_start = [this](typename Cluster::Node& n) { node_started(n); };
    o.on_event = [this] { check_invariants(); };
    o.on_resume = [this](NodeId id) { release_queued(id); };
    return o;
  }

  void node_started(typename Cluster::Node& n) {
    checker_->node_started(n.id);
    n.machine->set_observer(&Simulation::observe_apply, &observer_context(n.id));
    lease::LeaseConfig lc;
    lc.election_timeout_min = std::chrono::milliseconds(100);
    lc.max_clock_drift_ppm = kRhoPpm;
    lc.margin = std::chrono::microseconds(100);
    lc.default_read_timeout = std::chrono::milliseconds(500);
    extras_[n.id].coordinator.reset();
    extras_[n.id].coordinator = std::make_unique<Coordinator>(*n.group, lc);
  }

  struct ObserverContext {
    Simulation* simulation = nullptr;
    NodeId node = kNoNode;
  };
  ObserverContext& observer_context(NodeId id) {
    observers_[id] = ObserverContext{this, id};
    return observers_[id];
  }
  static void observe_apply(void* context, LogIndex index, std::span<const std::byte> payload,
                            std::uint64_t digest) {
    auto& c = *static_cast<ObserverContext*>(context);
    c.simulation->checker_->applied(c.node, index, payload, digest);
  }

  // --- the run ---------------------------------------------------------------------------------

  void step(bool chaos) {
    chaos_ = chaos;
    if (chaos) {
      inject_faults();
    }
    sync_storage();
    issue_client_operations();
    cluster_->run_for(std::chrono::nanoseconds(kStep));
  }

  void check_invariants() {
    checker_->check(*cluster_, [this](NodeId id) {
      auto& n = cluster_->node(id);
      return n.up && !cluster_->paused(id) && extras_[id].coordinator &&
             extras_[id].coordinator->lease_read().has_value();
    });
    const NodeId leader = cluster_->leader();
    if (leader != last_leader_ && options_.trace != nullptr) {
      trace() << "leader " << leader << " (term "
              << (leader != kNoNode ? cluster_->group(leader).term() : 0) << ")\n";
    }
    if (leader != last_leader_ && leader != kNoNode && chaos_ &&
        enabled(FaultClass::crash_restart) && doomed_ == kNoNode &&
        random_.below(100) < doom_percent_) {
      // A leader that dies within a few milliseconds of its election, its no-op and first
      // entries on a minority at most: how logs come to diverge across terms (Figure 8).
      doomed_ = leader;
      doomed_at_ = cluster_->now() + static_cast<std::int64_t>(random_.below(6'000'000));
      fired(FaultClass::crash_restart);
    }
    if (leader != last_leader_ && leader != kNoNode && chaos_ &&
        (enabled(FaultClass::clock_skew) || options_.excessive_drift) && random_.below(2) == 0) {
      redraw_drift(leader);  // the clock nemesis picks on every other new leader
      fired(FaultClass::clock_skew);
      if (random_.below(2) == 0) {
        // And then cuts it off: its lease, timed by the slow clock, must still end before a
        // follower's fast clock lets it campaign (lesson 11).
        slow_victim_ = leader;
        isolate_slow_at_ =
            cluster_->now() + 30'000'000 + static_cast<std::int64_t>(random_.below(300'000'000));
      }
    }
    if (chaos_ && (divergence_.phase == 2 || divergence_.phase == 4)) {
      run_divergence(leader);  // at once, between events: no message of the new leader leaves
    }
    if (leader != kNoNode && chaos_ && changes_ && cluster_->group(leader).membership().joint() &&
        cluster_->group(leader).membership_index() != joint_crash_drawn_) {
      const Membership joint = cluster_->group(leader).membership();
      joint_crash_drawn_ = cluster_->group(leader).membership_index();
      auto& r = membership_random_;
      if (enabled(FaultClass::crash_restart) && r.below(3) == 0) {
        // A leader that dies between entering a joint configuration and leaving it: its
        // successor must leave it.
        crash_now(leader, "in a joint configuration");
        fired(FaultClass::crash_restart);
      } else if (r.below(2) == 0) {
        // A partition mid-change: the old voters on one side, the new on the other (a node in
        // both, and everyone else, on a side drawn at random), for 100-400 ms. Only a side with
        // a majority of both may elect or commit.
        auto& net = cluster_->network();
        net.heal();
        std::vector<NodeId> side[2];
        for (NodeId id : cluster_->ids()) {
          const bool old_voter = Membership::has(joint.outgoing, id);
          const bool new_voter = Membership::has(joint.voters, id);
          side[old_voter == new_voter ? r.below(2) : (old_voter ? 0 : 1)].push_back(id);
        }
        for (NodeId a : side[0]) {
          for (NodeId b : side[1]) {
            net.block(a, b);
            net.block(b, a);
          }
        }
        heal_at_ = cluster_->now() + 100'000'000 + static_cast<std::int64_t>(r.below(300'000'000));
        fired(FaultClass::membership);
        if (options_.trace != nullptr) {
          trace() << "fault: partition the old voters from the new in a joint configuration\n";
        }
      }
    }
    crash_on_new_term();
    watch_stale_term();
    watch_lost_term();
    if (leader != kNoNode && chaos_ && enabled(FaultClass::crash_restart) && doomed_ == kNoNode) {
      const LogIndex commit = cluster_->group(leader).commit_index();
      if (leader == last_leader_ && commit > last_leader_commit_ &&
          random_.below(10'000) < commit_crash_) {
        // A crash point right after a commit, at once (we are between events). Half the time
        // the most up-to-date follower goes down with it, as a rack would: the survivors must
        // still never lose a committed entry.
        crash_now(leader, "commit point");
        if (random_.below(2) == 0) {
          const NodeId best = most_up_to_date(kNoNode);
          if (best != kNoNode) {
            crash_now(best, "with it");
          }
        }
        fired(FaultClass::crash_restart);
      }
      last_leader_commit_ = commit;
    }
    last_leader_ = leader;
  }

  // The crash point between a hard-state write and its sync: a node that has just become
  // candidate (its new term and self-vote written, not yet durable) or leader (its no-op
  // written) crashes at once, between events, losing what its disk has not synced. It restarts
  // in the term it had on disk; a stale TimeoutNow or a timeout without PreVote has it campaign
  // for the same term again.
  void crash_on_new_term() {
    for (NodeId id : cluster_->ids()) {
      auto& n = cluster_->node(id);
      if constexpr (Cluster::Group::kSnapshots) {
        // The crash point between writing a snapshot and its sync: a quarter of the snapshots
        // finished and not yet durable die with their node.
        const auto written = n.up ? n.storage().snapshot() : std::nullopt;
        if (chaos_ && snapshots_ && enabled(FaultClass::crash_restart) && written &&
            written->index > n.group->snapshot_index() && written->index != snapshot_crash_[id]) {
          snapshot_crash_[id] = written->index;
          if (random_.below(4) == 0) {
            fired(FaultClass::crash_restart);
            crash_now(id, "snapshot written, not yet durable");
            continue;
          }
        }
      }
      const Role role = n.up ? n.group->role() : Role::follower;
      const Role before = roles_[id];
      roles_[id] = role;
      // The same crash point on a voter: it has just granted its vote (written, not yet durable)
      // and dies before the sync. It must not have answered: back at once in the term it had on
      // disk, it could grant another candidate of the same term.
      const Ballot ballot{n.up ? n.group->term() : 0, n.up ? n.group->vote() : kNoNode};
      const Ballot cast_before = ballots_[id];
      ballots_[id] = ballot;
      if (chaos_ && enabled(FaultClass::crash_restart) && n.up && role == Role::follower &&
          ballot.vote != kNoNode && ballot.vote != id && ballot != cast_before &&
          n.disk.unsynced() && extra_random_.below(100) < 2 * candidate_crash_percent_) {
        fired(FaultClass::crash_restart);
        crash_now(id, "voter, its vote not yet durable");
        restart_at_[id] = cluster_->now() + 1'000'000 +
                          static_cast<std::int64_t>(extra_random_.below(10'000'000));
        continue;
      }
      if (chaos_ && role == Role::candidate && before != Role::candidate &&
          (stall_per_mille_ != 0 || leader_crash_percent_ != 0) && random_.below(2) == 0) {
        // The fsync of its new term hits a latency spike: the votes of nodes on quicker disks
        // come back before its own term is on disk.
        stalled_until_[id] =
            std::max(stalled_until_[id], cluster_->now() + 5'000'000 +
                                             static_cast<std::int64_t>(random_.below(35'000'000)));
      }
      if (!chaos_ || !enabled(FaultClass::crash_restart) || role == before ||
          (role != Role::candidate && role != Role::leader) || !n.disk.unsynced() ||
          random_.below(100) >=
              (role == Role::candidate ? candidate_crash_percent_ : leader_crash_percent_)) {
        continue;
      }
      roles_[id] = Role::follower;
      fired(FaultClass::crash_restart);
      crash_now(id, role == Role::candidate ? "candidate, its term not yet durable"
                                            : "new leader, its writes not yet durable");
      if (random_.below(4) != 0) {
        // A power failure: what it had sent but not yet put on the wire is gone too, so no
        // one hears of its term from it.
        cluster_->network().drop_from(id);
      }
      if (random_.below(2) == 0) {
        // And it comes back at once (a supervisor restarts it), before the others time out:
        // the moment in which it could campaign for the same term again.
        restart_at_[id] =
            cluster_->now() + 1'000'000 + static_cast<std::int64_t>(random_.below(10'000'000));
      }
    }
  }

  // An operator has `id` campaign: refused inside a leader's lease (errc::leader_active), or,
  // half the time, passed to that leader as a transfer request.
  void operator_campaign(NodeId id) {
    auto& n = cluster_->node(id);
    if (!n.up || cluster_->paused(id) || n.group->role() == Role::leader) {
      return;
    }
    const auto mode = random_.below(2) == 0 ? CampaignMode::unless_leader_active
                                            : CampaignMode::transfer_from_leader;
    const std::error_code refused = n.group->campaign(mode);
    fired(FaultClass::leadership_transfer);
    if (options_.trace != nullptr) {
      trace() << "fault: operator has node " << id << " campaign"
              << (mode == CampaignMode::transfer_from_leader ? " (by transfer)" : "")
              << (refused ? ": " + refused.message() : std::string()) << "\n";
    }
  }

  // The lost-term nemesis, built on a transfer: its target's fsync of the new term stalls (a
  // latency spike), the target crashes by power failure the moment it leads, comes straight
  // back, and then the TimeoutNow that started its election arrives once more. A candidate that
  // had waited for its term to be durable restarts in that term and ignores the stale TimeoutNow;
  // one that had led before its term was durable restarts in the term before, campaigns for the
  // same term again, and voters whose vote is already its own elect it again (rule 2 of
  // docs/lease.md).
  struct LostTerm {
    int phase = 0;
    NodeId leader = kNoNode, target = kNoNode;
    std::int64_t until = 0;
  };

  void start_lost_term(NodeId leader, NodeId target) {
    lost_term_ = LostTerm{1, leader, target, cluster_->now() + 200'000'000};
    stalled_until_[target] =
        std::max(stalled_until_[target], cluster_->now() + 60'000'000 +
                                             static_cast<std::int64_t>(random_.below(60'000'000)));
    if (options_.trace != nullptr) {
      trace() << "nemesis: lost term: transfer leadership " << leader << " -> " << target
              << ", whose disk stalls as it campaigns\n";
    }
  }

  // Between events: the moment the target leads, it dies.
  void watch_lost_term() {
    LostTerm& lt = lost_term_;
    if (lt.phase == 0) {
      return;
    }
    if (cluster_->now() >= lt.until || !cluster_->node(lt.target).up) {
      if (lt.phase == 1 || cluster_->now() >= lt.until) {
        lost_term_ = LostTerm{};
      }
      return;
    }
    if (lt.phase == 1 && cluster_->group(lt.target).role() == Role::leader) {
      crash_now(lt.target, "lost term: the new leader loses power");
      cluster_->network().drop_from(lt.target);
      restart_at_[lt.target] =
          cluster_->now() + 1'000'000 + static_cast<std::int64_t>(random_.below(4'000'000));
      lt.phase = 2;  // the restart path replays the TimeoutNow
    }
  }

  // A stale TimeoutNow: one sent to `id` before it crashed arrives after its restart. Its term is
  // the one the node restarted in when the crash lost what its election had written: the node
  // campaigns (with the transfer flag, which voters honour inside a lease) for the same term
  // again.
  void replay_timeout_now(NodeId id) {
    for (NodeId from : cluster_->ids()) {
      if (from != id && cluster_->network().replay_last(from, id, SimNetwork::Kept::timeout_now)) {
        fired(FaultClass::stale_messages);
        if (options_.trace != nullptr) {
          trace() << "fault: node " << id << " gets node " << from
                  << "'s last TimeoutNow once more\n";
        }
        return;
      }
    }
  }

  // The stale-term nemesis (runs without PreVote, where a node cut off from the leader moves
  // its term at every timeout): a follower F inside the leader L's lease hears of a later term
  // from a node that is not a leader, and must still refuse to vote within election_timeout_min
  // of L's last message (rule 1 of docs/lease.md). The clients pause, so that logs are level and
  // only the lease rule stands between the cut-off node and a vote. 1. Cut C (and, of 5, D) off
  // from L; F stays connected to both. 2. Once C is out of L's lease, C campaigns; F's last
  // request to C (a heartbeat from when F led, a pre-vote of an old campaign) arrives once more,
  // stale: C's refusal carries its later term to F, while F's answers to L lag. 3. The instant
  // F has that term, an operator has C campaign again. A follower that forgot L's last message
  // votes, C leads and commits while L still serves lease reads.
  struct StaleTerm {
    int phase = 0;
    NodeId leader = kNoNode, follower = kNoNode, candidate = kNoNode, helper = kNoNode;
    std::int64_t until = 0;
  };

  void start_stale_term(NodeId leader) {
    std::vector<NodeId> followers;
    for (NodeId id : cluster_->ids()) {
      if (id != leader && cluster_->node(id).up && !cluster_->paused(id)) {
        followers.push_back(id);
      }
    }
    if (cluster_->group(leader).leader_term() == 0 || followers.size() + 1 < report_.nodes) {
      return;
    }
    StaleTerm& st = stale_term_;
    st = StaleTerm{};
    st.leader = leader;
    st.follower = followers[random_.below(followers.size())];
    do {
      st.candidate = followers[random_.below(followers.size())];
    } while (st.candidate == st.follower);
    if (report_.nodes == 5) {
      for (NodeId id : followers) {
        if (id != st.follower && id != st.candidate) {
          st.helper = id;
          break;
        }
      }
    }
    cluster_->network().heal();
    quiet_until_ = cluster_->now() + 1'000'000'000;
    st.phase = 1;
    st.until = cluster_->now() + 30'000'000;  // the writes in flight land everywhere
    fired(FaultClass::stale_messages);
    if (options_.trace != nullptr) {
      trace() << "nemesis: stale term: leader " << leader << ", follower " << st.follower
              << ", candidate " << st.candidate << "; clients pause\n";
    }
  }

  void end_stale_term() {
    cluster_->network().heal();
    quiet_until_ = 0;
    stale_term_ = StaleTerm{};
  }

  // Phases 1 and 2, at the millisecond steps of inject_faults.
  void run_stale_term() {
    StaleTerm& st = stale_term_;
    auto& net = cluster_->network();
    const std::int64_t now = cluster_->now();
    if (now < st.until) {
      return;
    }
    const bool up = cluster_->node(st.follower).up && cluster_->node(st.candidate).up &&
                    cluster_->node(st.leader).up;
    if (!up || st.phase >= 3) {
      end_stale_term();
      return;
    }
    if (st.phase == 1) {
      net.block(st.candidate, st.leader);
      net.block(st.leader, st.candidate);
      if (st.helper != kNoNode) {
        net.block(st.helper, st.leader);
        net.block(st.leader, st.helper);
      }
      st.phase = 2;
      st.until = now + 120'000'000 + static_cast<std::int64_t>(random_.below(40'000'000));
      return;
    }
    // Phase 2: the candidate is out of the leader's lease by now.
    auto& c = cluster_->group(st.candidate);
    if (c.term() <= cluster_->group(st.follower).term() && c.campaign()) {
      end_stale_term();
      return;
    }
    if (!net.replay_last(st.follower, st.candidate, SimNetwork::Kept::answered_request)) {
      end_stale_term();
      return;
    }
    net.clog(st.follower, st.leader,
             std::chrono::milliseconds(50 + static_cast<std::int64_t>(random_.below(40))));
    st.phase = 3;
    st.until = now + 300'000'000;
    if (options_.trace != nullptr) {
      trace() << "nemesis: stale term: node " << st.candidate << " in term " << c.term()
              << " gets node " << st.follower << "'s last request once more\n";
    }
  }

  // Phase 3, between events: the instant the follower has the later term, the candidate
  // campaigns again.
  void watch_stale_term() {
    StaleTerm& st = stale_term_;
    if (st.phase != 3 || !cluster_->node(st.candidate).up || !cluster_->node(st.follower).up) {
      return;
    }
    auto& c = cluster_->group(st.candidate);
    if (cluster_->group(st.follower).term() >= c.term() && c.role() != Role::leader) {
      const auto refused = c.campaign();
      st.phase = 4;  // the rest of the run decides; phase 1-2 code ends it at `until`
      if (options_.trace != nullptr) {
        trace() << "nemesis: stale term: node " << st.follower << " reached term "
                << cluster_->group(st.follower).term() << "; node " << st.candidate << " campaigns"
                << (refused ? " (refused: " + refused.message() + ")" : "") << "\n";
      }
    }
  }

  // The divergence nemesis: a scripted schedule, built from the same crashes and partitions as
  // the random faults, that leaves logs diverging across three terms (the situation of Figure 8
  // in the Raft paper) and then takes down exactly the nodes that carry the newest entries.
  // 1. Cut the leader off with one follower; clients keep writing to it (entries on a
  //    minority). 2. Crash both. 3. When the majority elects a leader, isolate it at once and
  //    crash it (its no-op stays on it alone). 4. Heal and restart all but that one; the next
  //    leader carries the minority's old entries. 5. As soon as its commit index moves, crash it
  //    and the most up-to-date follower, and bring back the isolated one. A correct Raft loses
  //    nothing; one that commits earlier-term entries by counting does.
  struct Divergence {
    int phase = 0;
    std::vector<NodeId> minority;  // the leader first
    NodeId lonely = kNoNode;       // the leader isolated in phase 3
    NodeId next_leader = kNoNode;
    LogIndex commit = 0;
    std::int64_t until = 0;
  };

  void start_divergence(NodeId leader) {
    auto& net = cluster_->network();
    net.heal();
    divergence_ = Divergence{};
    // The largest minority, the leader in it: 1 of 3, 2 of 5.
    std::vector<NodeId>& minority = divergence_.minority;
    minority.push_back(leader);
    for (NodeId id = leader % report_.nodes + 1; minority.size() < report_.nodes / 2;
         id = id % report_.nodes + 1) {
      minority.push_back(id);
    }
    std::vector<NodeId> majority;
    for (NodeId id : cluster_->ids()) {
      if (std::find(minority.begin(), minority.end(), id) == minority.end()) {
        majority.push_back(id);
      }
    }
    net.partition(minority, majority);
    divergence_.phase = 1;
    divergence_.until =
        cluster_->now() + 20'000'000 + static_cast<std::int64_t>(random_.below(40'000'000));
    fired(FaultClass::divergence);
    if (options_.trace != nullptr) {
      trace() << "nemesis: divergence, the leader and " << minority.size() - 1
              << " follower(s) cut off\n";
    }
  }

  void run_divergence(NodeId leader) {
    Divergence& d = divergence_;
    auto& net = cluster_->network();
    const std::int64_t now = cluster_->now();
    switch (d.phase) {
      case 1:  // entries pile up on the minority
        if (now >= d.until) {
          for (NodeId id : d.minority) {
            if (cluster_->node(id).up) {
              crash_now(id, "divergence");
              restart_at_[id] = 0;  // the script restarts them
            }
          }
          d.phase = 2;
          d.until = now + 1'500'000'000;
        }
        break;
      case 2:  // the majority elects; isolate and crash its leader at once
        if (leader != kNoNode &&
            std::find(d.minority.begin(), d.minority.end(), leader) == d.minority.end()) {
          net.isolate(leader);
          d.lonely = leader;
          d.phase = 3;
          d.until = now + 1'000'000;
        } else if (now >= d.until) {
          end_divergence();
        }
        break;
      case 3:
        if (now >= d.until) {
          if (cluster_->node(d.lonely).up) {
            cluster_->node(d.lonely).disk.persist_all();  // its no-op reached its disk alone
            crash_now(d.lonely, "divergence");
            restart_at_[d.lonely] = 0;
          }
          net.heal();
          for (NodeId id : d.minority) {
            if (!cluster_->node(id).up) {
              restart_node(id);
            }
          }
          d.phase = 4;
          d.until = now + 1'500'000'000;
        }
        break;
      case 4:  // wait for the next leader, then for its first commit
        if (leader != kNoNode && d.next_leader != leader) {
          d.next_leader = leader;
          d.commit = cluster_->group(leader).commit_index();
        } else if (leader != kNoNode && cluster_->group(leader).commit_index() > d.commit) {
          if (options_.trace != nullptr) {
            const auto& g = cluster_->group(leader);
            const auto& st = cluster_->node(leader).storage();
            const auto& lonely = cluster_->node(d.lonely).storage();
            trace() << "nemesis: leader " << leader << " term " << g.term() << " committed "
                    << g.commit_index() << " (term " << st.term_at(g.commit_index()).value()
                    << "); node " << d.lonely << " last " << lonely.last_index() << " term "
                    << lonely.term_at(lonely.last_index()).value() << "\n";
          }
          crash_now(leader, "divergence");
          restart_at_[leader] = 0;
          for (std::size_t i = 1; i < d.minority.size(); ++i) {  // and its best followers
            const NodeId best = most_up_to_date(d.lonely);
            if (best != kNoNode) {
              crash_now(best, "divergence");
              restart_at_[best] = 0;
            }
          }
          restart_node(d.lonely);
          d.phase = 5;
          d.until = now + 1'000'000'000;
        } else if (now >= d.until) {
          end_divergence();
        }
        break;
      default:  // 5: let the survivors elect, then bring everyone back
        if (now >= d.until) {
          end_divergence();
        }
        break;
    }
  }

  // The up node whose log is most up to date in the sense of section 5.4.1 (last term, then
  // last index), other than `except`.
  NodeId most_up_to_date(NodeId except) {
    NodeId best = kNoNode;
    auto rank = [&](NodeId id) {
      const auto& st = cluster_->node(id).storage();
      const LogIndex last = st.last_index();
      const auto term = st.term_at(last);
      return std::pair<Term, LogIndex>(term ? term.value() : 0, last);
    };
    for (NodeId id : cluster_->ids()) {
      if (cluster_->node(id).up && id != except && (best == kNoNode || rank(id) > rank(best))) {
        best = id;
      }
    }
    return best;
  }

  void end_divergence() {
    cluster_->network().heal();
    for (NodeId id : cluster_->ids()) {
      if (!cluster_->node(id).up) {
        restart_at_[id] = cluster_->now() + static_cast<std::int64_t>(random_.below(50'000'000));
      }
    }
    divergence_ = Divergence{};
  }

  // New clock rates for every node; with a `slow` node, adversarially: its clock slow and every
  // other fast, the worst case for a lease held by `slow` (docs/lease.md), which must still be
  // safe while the rates stay within max_clock_drift.
  void redraw_drift(NodeId slow) {
    const std::int64_t magnitude = std::abs(drift_ppm(slow));  // one rate: the widest skew
    for (NodeId id : cluster_->ids()) {
      std::int64_t ppm = drift_ppm(id);
      if (slow != kNoNode) {
        ppm = id == slow ? -magnitude : magnitude;
      }
      if (const auto ec = cluster_->clock(id).set_drift_ppm(ppm)) {
        throw std::system_error(ec, "simulation drift");
      }
    }
  }

  // Media corruption while a node is down: one bit of one of its files. At most one node per
  // run, so that a majority can always come back (recovery will refuse to start that node).
  void maybe_corrupt(NodeId id) {
    auto& n = cluster_->node(id);
    if (!chaos_ || !enabled(FaultClass::disk_faults) || !n.disk.supports_media_faults() ||
        corrupted_ != kNoNode || random_.below(4) != 0) {
      return;
    }
    if (n.disk.corrupt(random_.next())) {
      corrupted_ = id;
      fired(FaultClass::disk_faults);
      if (options_.trace != nullptr) {
        trace() << "fault: flip a bit on node " << id << "'s disk: " << n.disk.last_corruption()
                << "\n";
      }
    }
  }

  // Restarts a node; a recovery that refuses to start (corruption detected) leaves it down.
  bool restart_node(NodeId id) {
    if (cluster_->restart(id)) {
      if (options_.trace != nullptr) {
        trace() << "fault: restart node " << id << " (term " << cluster_->group(id).term()
                << ", vote " << cluster_->group(id).vote() << ", last "
                << cluster_->group(id).last_index() << ")\n";
      }
      return true;
    }
    if (id != corrupted_) {
      checker_->fail("node " + std::to_string(id) +
                     " refused to start without corruption: " + cluster_->node(id).failure());
    } else if (!corruption_counted_) {
      corruption_counted_ = true;
      ++report_.corruptions_detected;
    }
    if (options_.trace != nullptr) {
      trace() << "node " << id << " refuses to start: " << cluster_->node(id).failure() << "\n";
    }
    return false;
  }

  void crash_now(NodeId id, const char* why, std::uint64_t entropy = 0) {
    const LogIndex last = cluster_->group(id).last_index();
    cluster_->crash(id, entropy);
    restart_at_[id] =
        cluster_->now() + 20'000'000 + static_cast<std::int64_t>(random_.below(150'000'000));
    if (options_.trace != nullptr) {
      trace() << "fault: crash node " << id << " (" << why << "; last " << last << ")\n";
    }
  }

  std::ostream& trace() {
    char stamp[32];
    std::snprintf(stamp, sizeof stamp, "[%8.3f ms] ", static_cast<double>(cluster_->now()) / 1e6);
    *options_.trace << stamp;
    return *options_.trace;
  }

  // Random persistence points: each node's disk makes a random prefix of its pending writes
  // durable every few milliseconds.
  void sync_storage() {
    for (NodeId id : cluster_->ids()) {
      auto& n = cluster_->node(id);
      if (chaos_ && stall_per_mille_ != 0 && random_.below(1000) < stall_per_mille_) {
        // An fsync latency spike: this disk syncs nothing for 10-80 ms.
        stalled_until_[id] =
            cluster_->now() + 10'000'000 + static_cast<std::int64_t>(random_.below(70'000'000));
      }
      if (!n.up || cluster_->now() < stalled_until_[id] || random_.below(sync_odds_[id]) != 0) {
        continue;
      }
      if (chaos_ && enabled(FaultClass::disk_faults) && n.disk.supports_media_faults() &&
          random_.below(200) == 0) {
        // Power fails in the middle of this fdatasync: the batch is written, not durable; the
        // crash keeps a prefix of it torn at a sector boundary.
        const std::uint64_t entropy = random_.next();
        n.disk.fail_sync(entropy);
        ++report_.torn_syncs;
        fired(FaultClass::disk_faults);
        crash_now(id, "power failure during fdatasync", entropy);
        continue;
      }
      n.disk.persist(random_.next());
      if (!cluster_->paused(id)) {
        n.group->on_persisted();
      }
    }
  }

  // The membership nemesis: every 20-220 ms a change on the leader, drawn among adding a voter
  // (a standby node, or one removed earlier), removing one (the leader too), replacing one by a
  // non-member (a joint configuration), replacing all at once, adding, removing or promoting a
  // learner. Voters stay between 3 and 7. The change runs under every other fault.
  void change_membership(NodeId leader) {
    auto& r = membership_random_;
    const std::int64_t now = cluster_->now();
    if (now < next_change_at_ || change_op_.pending() || leader == kNoNode ||
        cluster_->paused(leader)) {
      return;
    }
    next_change_at_ = now + 20'000'000 + static_cast<std::int64_t>(r.below(200'000'000));
    auto& g = cluster_->group(leader);
    if (g.changing_membership()) {
      return;
    }
    const Membership& current = g.membership();
    std::vector<NodeId> outsiders;
    for (NodeId id : cluster_->ids()) {
      if (!current.contains(id)) {
        outsiders.push_back(id);
      }
    }
    const auto pick = [&](const std::vector<NodeId>& from) {
      return from[static_cast<std::size_t>(r.below(from.size()))];
    };
    const auto erase = [](std::vector<NodeId>& v, NodeId id) {
      v.erase(std::remove(v.begin(), v.end(), id), v.end());
    };
    Membership target{current.voters, {}, current.learners};
    const char* what = nullptr;
    switch (r.below(8)) {
      case 0:  // add a voter
        if (!outsiders.empty() && target.voters.size() < 7) {
          target.voters.push_back(pick(outsiders));
          what = "add a voter";
        }
        break;
      case 1:  // remove a voter
        if (target.voters.size() > 3) {
          erase(target.voters, pick(target.voters));
          what = "remove a voter";
        }
        break;
      case 2:  // remove the leader
        if (target.voters.size() > 3) {
          erase(target.voters, leader);
          what = "remove the leader";
        } else if (!outsiders.empty()) {
          erase(target.voters, leader);
          target.voters.push_back(pick(outsiders));
          what = "replace the leader";
        }
        break;
      case 3:  // replace one voter
        if (!outsiders.empty()) {
          erase(target.voters, pick(target.voters));
          target.voters.push_back(pick(outsiders));
          what = "replace a voter";
        }
        break;
      case 4:  // replace every voter at once
        if (outsiders.size() >= target.voters.size()) {
          const std::size_t n = target.voters.size();
          target.voters.clear();
          while (target.voters.size() < n) {
            const NodeId id = pick(outsiders);
            erase(outsiders, id);
            target.voters.push_back(id);
          }
          what = "replace every voter";
        }
        break;
      case 5:  // add a learner
        if (!outsiders.empty()) {
          target.learners.push_back(pick(outsiders));
          what = "add a learner";
        }
        break;
      case 6:  // remove a learner
        if (!target.learners.empty()) {
          erase(target.learners, pick(target.learners));
          what = "remove a learner";
        }
        break;
      case 7:  // promote a learner
        if (!target.learners.empty() && target.voters.size() < 7) {
          const NodeId id = pick(target.learners);
          erase(target.learners, id);
          target.voters.push_back(id);
          what = "promote a learner";
        }
        break;
    }
    if (what == nullptr) {
      return;
    }
    for (NodeId id : target.voters) {
      erase(target.learners, id);
    }
    fired(FaultClass::membership);
    if (options_.trace != nullptr) {
      std::string line =
          std::string("membership: ") + what + " on leader " + std::to_string(leader) + ": voters";
      for (NodeId id : target.voters) {
        line += " " + std::to_string(id);
      }
      line += ", learners";
      for (NodeId id : target.learners) {
        line += " " + std::to_string(id);
      }
      trace() << line << "\n";
    }
    g.change_membership(change_op_, std::move(target),
                        g.clock().now() + std::chrono::milliseconds(1500));
    g.flush();
  }

  void inject_faults() {
    const NodeId n = static_cast<NodeId>(1 + random_.below(total_nodes_));
    const NodeId leader = cluster_->leader();
    if (changes_) {
      change_membership(leader);
    }
    auto& net = cluster_->network();
    if (divergence_.phase != 0) {
      run_divergence(leader);
      return;  // the script owns the faults while it runs
    }
    if (stale_term_.phase != 0) {
      run_stale_term();
      return;  // likewise
    }
    if (heal_at_ != 0 && cluster_->now() >= heal_at_) {
      net.heal();
      heal_at_ = 0;
    }
    if (isolate_slow_at_ != 0 && cluster_->now() >= isolate_slow_at_) {
      isolate_slow_at_ = 0;
      if (slow_victim_ == leader) {
        net.heal();
        net.isolate(slow_victim_);
        heal_at_ =
            cluster_->now() + 300'000'000 + static_cast<std::int64_t>(random_.below(400'000'000));
        if (options_.trace != nullptr) {
          trace() << "fault: isolate slow-clocked leader " << slow_victim_ << "\n";
        }
      }
    }
    for (NodeId id : cluster_->ids()) {
      if (restart_at_.size() > id && restart_at_[id] != 0 && cluster_->now() >= restart_at_[id]) {
        restart_at_[id] = 0;
        maybe_corrupt(id);
        if (restart_node(id)) {
          if (lost_term_.phase == 2 && lost_term_.target == id) {
            cluster_->network().replay_last(lost_term_.leader, id, SimNetwork::Kept::timeout_now);
            if (options_.trace != nullptr) {
              trace() << "nemesis: lost term: node " << id << " gets node " << lost_term_.leader
                      << "'s TimeoutNow once more\n";
            }
            lost_term_ = LostTerm{};
          } else if (enabled(FaultClass::stale_messages) && random_.below(4) != 0) {
            replay_timeout_now(id);
          }
          if (enabled(FaultClass::leadership_transfer) && random_.below(2) == 0) {
            // An operator moves leadership to the restarted machine as soon as it may campaign
            // (campaign() refuses within election_timeout_min of its start).
            campaign_at_[id] = cluster_->now() + election_timeout_min_ +
                               static_cast<std::int64_t>(random_.below(3'000'000));
          }
        }
      }
    }
    for (NodeId id : cluster_->ids()) {
      if (campaign_at_[id] != 0 && cluster_->now() >= campaign_at_[id]) {
        campaign_at_[id] = 0;
        operator_campaign(id);
      }
    }
    if (doomed_ != kNoNode && cluster_->now() >= doomed_at_) {
      if (cluster_->node(doomed_).up) {
        cluster_->crash(doomed_);
        restart_at_[doomed_] =
            cluster_->now() + 20'000'000 + static_cast<std::int64_t>(random_.below(150'000'000));
        if (options_.trace != nullptr) {
          trace() << "fault: crash new leader " << doomed_ << "\n";
        }
      }
      doomed_ = kNoNode;
    }
    if (enabled(FaultClass::flaky_links) && random_.below(8) == 0) {
      // Links that fail and recover every few milliseconds: elections and replication cut off
      // halfway, entries left on minorities, logs that diverge across terms (Figure 8).
      const NodeId to = static_cast<NodeId>(1 + random_.below(report_.nodes));
      if (to != n) {
        if (net.blocked(n, to)) {
          net.unblock(n, to);
        } else {
          net.block(n, to);
          if (heal_at_ == 0) {
            heal_at_ = cluster_->now() + 100'000'000 +
                       static_cast<std::int64_t>(random_.below(200'000'000));
          }
        }
        fired(FaultClass::flaky_links);
      }
    }
    // Roughly one fault decision every 50 ms of true time.
    if (random_.below(50) != 0) {
      return;
    }
    // Membership changes have their own nemesis (change_membership), not a turn here.
    switch (static_cast<FaultClass>(random_.below(kFaultClasses - 1))) {
      case FaultClass::symmetric_partition:
        if (enabled(FaultClass::symmetric_partition)) {
          const NodeId victim = leader != kNoNode && random_.below(2) == 0 ? leader : n;
          net.heal();
          net.isolate(victim);
          heal_at_ =
              cluster_->now() + 50'000'000 + static_cast<std::int64_t>(random_.below(400'000'000));
          fired(FaultClass::symmetric_partition);
          if (options_.trace != nullptr) {
            trace() << "fault: isolate node " << victim << "\n";
          }
        }
        break;
      case FaultClass::asymmetric_partition:
        if (enabled(FaultClass::asymmetric_partition)) {
          const NodeId to = static_cast<NodeId>(1 + random_.below(report_.nodes));
          if (to != n) {
            net.block(n, to);
            heal_at_ = cluster_->now() + 50'000'000 +
                       static_cast<std::int64_t>(random_.below(400'000'000));
            fired(FaultClass::asymmetric_partition);
            if (options_.trace != nullptr) {
              trace() << "fault: block " << n << " -> " << to << "\n";
            }
          }
        }
        break;
      case FaultClass::clogged_link:
        if (enabled(FaultClass::clogged_link)) {
          const NodeId to = static_cast<NodeId>(1 + random_.below(report_.nodes));
          if (to != n) {
            net.clog(n, to,
                     std::chrono::milliseconds(10 + static_cast<std::int64_t>(random_.below(150))));
            heal_at_ = cluster_->now() + 100'000'000 +
                       static_cast<std::int64_t>(random_.below(400'000'000));
            fired(FaultClass::clogged_link);
            if (options_.trace != nullptr) {
              trace() << "fault: clog " << n << " -> " << to << "\n";
            }
          }
        }
        break;
      case FaultClass::crash_restart:
        if (enabled(FaultClass::crash_restart) && leader != kNoNode && lost_term_.phase == 0 &&
            !transfer_.pending() && !cluster_->paused(leader) && random_.below(3) == 0) {
          const NodeId target = leader % report_.nodes + 1;
          if (cluster_->node(target).up && !cluster_->paused(target)) {
            transfer_done_ = std::nullopt;
            cluster_->group(leader).transfer_leadership(
                transfer_, target, cluster_->clock(leader).now() + std::chrono::milliseconds(300));
            start_lost_term(leader, target);
            fired(FaultClass::crash_restart);
          }
        } else if (enabled(FaultClass::crash_restart)) {
          // Leaders half the time: a leader that crashes with entries on a minority is where
          // Figure 8 of the Raft paper begins.
          const NodeId victim = leader != kNoNode && random_.below(2) == 0 ? leader : n;
          if (cluster_->node(victim).up) {
            cluster_->crash(victim);
            restart_at_[victim] = cluster_->now() + 20'000'000 +
                                  static_cast<std::int64_t>(random_.below(300'000'000));
            fired(FaultClass::crash_restart);
            if (options_.trace != nullptr) {
              trace() << "fault: crash node " << victim << "\n";
            }
          }
        }
        break;
      case FaultClass::pause:
        if (enabled(FaultClass::pause) && cluster_->node(n).up) {
          const NodeId victim = leader != kNoNode && random_.below(2) == 0 ? leader : n;
          cluster_->pause(victim, std::chrono::milliseconds(
                                      200 + static_cast<std::int64_t>(random_.below(300))));
          fired(FaultClass::pause);
          if (options_.trace != nullptr) {
            trace() << "fault: pause node " << victim << "\n";
          }
        }
        break;
      case FaultClass::leadership_transfer:
        if (enabled(FaultClass::leadership_transfer) && random_.below(3) == 0) {
          operator_campaign(n);
        } else if (enabled(FaultClass::leadership_transfer) && leader != kNoNode &&
                   !transfer_.pending() && !cluster_->paused(leader)) {
          const NodeId target = leader % report_.nodes + 1;
          transfer_done_ = std::nullopt;
          cluster_->group(leader).transfer_leadership(
              transfer_, target, cluster_->clock(leader).now() + std::chrono::milliseconds(300));
          fired(FaultClass::leadership_transfer);
          if (options_.trace != nullptr) {
            trace() << "fault: transfer leadership " << leader << " -> " << target << "\n";
          }

          // Half the time the old leader then hears everything late: the new leader is elected
          // and commits while the old one has not yet learned of the new term and its quorum
          // evidence still looks fresh. Only the lease revoke at the transfer keeps its lease
          // reads from going stale in that window (lesson 6).
          if (random_.below(2) == 0) {
            const auto lag =
                std::chrono::milliseconds(40 + static_cast<std::int64_t>(random_.below(160)));
            for (NodeId from : cluster_->ids()) {
              if (from != leader) {
                net.clog(from, leader, lag);
              }
            }
            heal_at_ = cluster_->now() + 100'000'000 +
                       static_cast<std::int64_t>(random_.below(300'000'000));
            if (options_.trace != nullptr) {
              trace() << "fault: messages to node " << leader << " lag " << lag.count() << " ms\n";
            }
          }
        }
        break;
      case FaultClass::clock_skew:
        if (enabled(FaultClass::clock_skew) && leader != kNoNode) {
          if (random_.below(2) == 0) {
            // A leader's monotonic clock stepping forward only shortens its lease.
            cluster_->clock(leader).jump(
                std::chrono::milliseconds(1 + static_cast<std::int64_t>(random_.below(30))));
          } else {
            // Oscillators wander (temperature, load): every node draws a new rate.
            redraw_drift(kNoNode);
          }
          fired(FaultClass::clock_skew);
        }
        break;
      case FaultClass::divergence:
        if (enabled(FaultClass::divergence) && divergence_.phase == 0 && leader != kNoNode) {
          start_divergence(leader);
        }
        break;
      case FaultClass::stale_messages:
        if (enabled(FaultClass::stale_messages) && !report_.pre_vote && leader != kNoNode &&
            !cluster_->paused(leader)) {
          start_stale_term(leader);
        }
        break;
      case FaultClass::membership:
      case FaultClass::loss:
      case FaultClass::duplication:
      case FaultClass::delay_reorder:
      case FaultClass::flaky_links:
      case FaultClass::disk_faults:
        break;  // standing faults, or injected at persistence points and restarts
    }
    if (enabled(FaultClass::loss)) {
      fired(FaultClass::loss);
    }
    if (enabled(FaultClass::duplication)) {
      fired(FaultClass::duplication);
    }
    if (enabled(FaultClass::delay_reorder)) {
      fired(FaultClass::delay_reorder);
    }
    if (enabled(FaultClass::stale_messages)) {
      fired(FaultClass::stale_messages);
    }
  }

  void heal_and_check_liveness() {
    auto& net = cluster_->network();
    divergence_ = Divergence{};
    stale_term_ = StaleTerm{};
    lost_term_ = LostTerm{};
    quiet_until_ = 0;
    campaign_at_.fill(0);
    doomed_ = kNoNode;
    net.heal();
    net.set_drop_rate(0);
    net.set_duplicate_rate(0);
    net.set_late_duplicate_rate(0);
    for (NodeId id : cluster_->ids()) {
      cluster_->resume(id);  // a paused process continues: healing ends every fault
      if (!cluster_->node(id).up) {
        restart_node(id);
      }
    }
    restart_at_.assign(restart_at_.size(), 0);
    heal_at_ = 0;
    isolate_slow_at_ = 0;
    if (options_.trace != nullptr) {
      trace() << "healed: checking liveness\n";
    }
    // Liveness: a leader is elected and a write commits within 10 election timeouts (the
    // slowest, election_timeout_max) of simulated time, once a majority is connected. With
    // membership changes, 20: a joint configuration needs two majorities at once, and a run may
    // have lost a voter for good (a corrupted disk), leaving elections that need every other
    // voter of a four-node configuration to agree.
    const std::int64_t start = cluster_->now();
    const std::int64_t limit = start + (changes_ ? 20 : 10) * election_timeout_max_;
    std::optional<Result<ProposeResult>> outcome;
    struct Probe {
      std::optional<Result<ProposeResult>>* out;
      static void done(void* self, Result<ProposeResult> r) noexcept {
        *static_cast<Probe*>(self)->out = r;
      }
    } probe{&outcome};
    ProposeOperation op(Completion<ProposeResult>{&Probe::done, &probe});
    std::array<std::byte, kKvCommandSize> payload{};
    encode_kv_command(KvCommand{KvOpKind::put, 1'000'000, 1, kAbsent, ~std::uint64_t{0}}, payload);
    bool committed = false;
    while (cluster_->now() < limit && checker_->ok()) {
      const NodeId leader = cluster_->leader();
      if (leader != kNoNode && !op.pending() && !cluster_->paused(leader)) {
        if (outcome && outcome->has_value()) {
          committed = true;
          break;
        }
        outcome.reset();
        cluster_->group(leader).propose(op, payload);
        cluster_->group(leader).flush();
      }
      step(false);
    }
    if (outcome && outcome->has_value()) {
      committed = true;
    }
    while (op.pending()) {  // it must complete before it goes out of scope
      step(false);
    }
    report_.liveness_ns = cluster_->now() - start;
    if (!committed && options_.trace != nullptr) {
      for (NodeId id : cluster_->ids()) {
        auto& n = cluster_->node(id);
        if (!n.up) {
          trace() << "node " << id << ": down\n";
          continue;
        }
        const auto& g = *n.group;
        trace() << "node " << id << ": role " << static_cast<int>(g.role()) << ", term " << g.term()
                << ", vote " << g.vote() << ", leader " << g.leader() << ", last index "
                << g.last_index() << " (term " << n.storage().term_at(g.last_index()).value()
                << "), commit " << g.commit_index() << ", unsynced " << n.disk.unsynced()
                << ", elections " << g.stats().elections_started << describe(g) << "\n";
      }
    }
    if (!committed && checker_->ok()) {
      checker_->fail("liveness: no write committed within " + std::to_string(changes_ ? 20 : 10) +
                     " election timeouts after healing");
    }
    if (committed && checker_->ok()) {
      catch_up(outcome->value().index);
    }
  }

  // The configurations of a node, for traces: in force (and its index), and applied.
  static std::string describe(const Group& g) {
    if (g.membership().voters.empty() && g.committed_membership().voters.empty()) {
      return "";
    }
    const auto list = [](const std::vector<NodeId>& ids) {
      std::string out;
      for (NodeId id : ids) {
        out += (out.empty() ? "" : ",") + std::to_string(id);
      }
      return out;
    };
    const auto one = [&](const Membership& m) {
      return "{" + list(m.voters) + (m.joint() ? " | " + list(m.outgoing) : "") +
             (m.learners.empty() ? "" : "; learners " + list(m.learners)) + "}";
    };
    return ", config " + one(g.membership()) + " at " + std::to_string(g.membership_index()) +
           ", applied " + one(g.committed_membership());
  }

  // Liveness of the followers: with the network healed, every node that is up applies the probe
  // write within 20 election timeouts, by appends or by a snapshot (a follower stuck behind a
  // stalled transfer fails here; the majority alone would hide it).
  void catch_up(LogIndex index) {
    const std::int64_t limit = cluster_->now() + 20 * election_timeout_max_;
    // Nodes that a membership change removed (or never added) are not expected to follow.
    const auto behind = [&] {
      const NodeId leader = cluster_->leader();
      if (leader != kNoNode) {
        last_membership_ = cluster_->group(leader).membership();
      }
      for (NodeId id : cluster_->ids()) {
        const auto& n = cluster_->node(id);
        if (n.up && !n.group->stopped() && n.group->last_applied() < index &&
            (!changes_ || last_membership_.contains(id))) {
          return id;
        }
      }
      return kNoNode;
    };
    while (cluster_->now() < limit && checker_->ok() && behind() != kNoNode) {
      step(false);
    }
    if (const NodeId id = behind(); id != kNoNode && checker_->ok()) {
      const auto& g = cluster_->group(id);
      checker_->fail("liveness: node " + std::to_string(id) + " has applied " +
                     std::to_string(g.last_applied()) + " of " + std::to_string(index) +
                     " 20 election timeouts after healing (role " +
                     std::to_string(static_cast<int>(g.role())) + ", term " +
                     std::to_string(g.term()) + ", commit " + std::to_string(g.commit_index()) +
                     ", last " + std::to_string(g.last_index()) + ", snapshot " +
                     std::to_string(g.snapshot_index()) + ")");
    }
  }

  // --- clients ---------------------------------------------------------------------------------

  struct Client {
    Simulation* sim;
    std::uint64_t id;
    NodeId target = 1;
    std::int64_t next_at = 0;
    bool busy = false;
    bool in_call = false;
    bool queued = false;           // sent to `target` while it was paused (see release_queued)
    std::int64_t queued_call = 0;  // when it was sent
    std::size_t record = 0;        // index in history_
    NodeId at = kNoNode;           // the node the operation went to
    std::int64_t counter = 0;
    std::array<std::byte, kKvCommandSize> payload{};
    ProposeOperation propose;
    ReadIndexOperation read;
    typename Coordinator::ReadOperation lease_read;

    Client(Simulation* s, std::uint64_t client_id)
        : sim(s),
          id(client_id),
          propose(Completion<ProposeResult>{&Client::on_propose, this}),
          read(Completion<LogIndex>{&Client::on_read, this}),
          lease_read(Completion<LogIndex>{&Client::on_read, this}) {}

    static void on_propose(void* self, Result<ProposeResult> r) noexcept {
      auto& c = *static_cast<Client*>(self);
      c.sim->complete_write(c, r);
    }
    static void on_read(void* self, Result<LogIndex> r) noexcept {
      auto& c = *static_cast<Client*>(self);
      c.sim->complete_read(c, r);
    }
  };

  std::size_t busy_clients() const {
    std::size_t n = 0;
    for (const auto& c : clients_) {
      n += c->busy ? 1 : 0;
    }
    return n;
  }

  void issue_client_operations() {
    for (auto& cp : clients_) {
      if (cp->queued) {
        release_queued(cp->target);  // the node crashed, or a heal resumed it
      }
    }
    if (stop_clients_ || cluster_->now() < quiet_until_) {
      return;
    }
    for (auto& cp : clients_) {
      Client& c = *cp;
      if (c.busy || cluster_->now() < c.next_at) {
        continue;
      }
      issue(c);
    }
  }

  // Requests sent to a paused process wait in its socket and are the first thing it handles when
  // it continues, before its overdue timers and the messages that arrived meanwhile: a leader
  // that was stopped past its lease answers them while it still believes it leads. (A node that
  // crashed meanwhile resets the connection: nothing was invoked.)
  void release_queued(NodeId id) {
    auto& n = cluster_->node(id);
    const bool resumed = n.up && !cluster_->paused(id);
    if (n.up && !resumed) {
      return;
    }
    for (auto& cp : clients_) {
      Client& c = *cp;
      if (!c.queued || c.target != id) {
        continue;
      }
      c.queued = false;
      c.busy = false;
      if (resumed && !stop_clients_ && cluster_->now() >= quiet_until_) {
        issue(c, c.queued_call);
      }
    }
  }

  void issue(Client& c, std::int64_t sent_at = -1) {
    const NodeId node = c.target;
    auto& n = cluster_->node(node);
    if (n.up && cluster_->paused(node) && extra_random_.below(2) == 0) {
      c.busy = true;
      c.queued = true;
      c.queued_call = cluster_->now();
      return;
    }
    if (!n.up || cluster_->paused(node)) {
      c.target = static_cast<NodeId>(1 + random_.below(total_nodes_));
      c.next_at = cluster_->now() + 5'000'000;
      return;  // the connection is refused: no operation was invoked
    }
    KvOperation op;
    op.client = c.id;
    op.key = random_.below(options_.keys);
    op.call = sent_at >= 0 ? sent_at : cluster_->now();
    const auto roll = random_.below(100);
    op.kind = roll < 35   ? KvOpKind::put
              : roll < 75 ? KvOpKind::get
              : roll < 85 ? KvOpKind::del
                          : KvOpKind::cas;
    const auto deadline =
        cluster_->clock(node).now() +
        std::chrono::milliseconds(100 + static_cast<std::int64_t>(random_.below(400)));
    c.busy = true;
    c.at = node;
    c.record = history_.size();
    ++report_.operations;
    if (op.kind == KvOpKind::get) {
      const auto level = random_.below(100);
      op.read_level = level < 40 ? 0 : level < 80 ? 1 : 2;
      history_.push_back(op);
      c.in_call = true;
      if (op.read_level == 0) {
        n.group->read_index(c.read, deadline);
        n.group->flush();
      } else if (op.read_level == 1) {
        ++report_.lease_reads;
        extras_[node].coordinator->read(c.lease_read, deadline);
        if (c.lease_read.served_by_lease()) {
          ++report_.lease_fast_path;
        }
        n.group->flush();
      } else {
        complete_read(c, Result<LogIndex>(n.machine->last_applied()));
      }
      c.in_call = false;
      return;
    }
    op.value = static_cast<std::int64_t>(c.id * 1'000'000'000 + ++c.counter);
    if (op.kind == KvOpKind::cas) {
      // Expect the value this client saw last for the key, or a guess: both succeed and fail.
      op.expected = random_.below(3) == 0 ? kAbsent : last_value_seen_;
    }
    history_.push_back(op);
    encode_kv_command(KvCommand{op.kind, op.key, op.value, op.expected, c.id << 40 | c.counter},
                      c.payload);
    c.in_call = true;
    n.group->propose(c.propose, c.payload, deadline);
    n.group->flush();
    c.in_call = false;
  }

  void client_done(Client& c, KvOutcome outcome) {
    KvOperation& op = history_[c.record];
    op.outcome = outcome;
    op.ret = cluster_->now();
    c.busy = false;
    c.next_at = cluster_->now() + static_cast<std::int64_t>(random_.below(20'000'000));
    switch (outcome) {
      case KvOutcome::ok:
        ++report_.ok_operations;
        break;
      case KvOutcome::failed:
        ++report_.failed_operations;
        break;
      case KvOutcome::ambiguous:
        ++report_.ambiguous_operations;
        break;
    }
    if (options_.trace != nullptr) {
      trace() << to_string(op) << " at node " << c.at << "\n";
    }
  }

  void follow_hint(Client& c, const Error& e) {
    if (e.code == errc::not_leader || e.code == errc::leadership_lost) {
      c.target = e.leader_hint != kNoNode && e.leader_hint <= total_nodes_
                     ? e.leader_hint
                     : static_cast<NodeId>(1 + random_.below(total_nodes_));
    } else if (e.code == errc::timed_out && random_.below(2) == 0) {
      // Real clients give up on a node that does not answer, and try another.
      c.target = static_cast<NodeId>(1 + random_.below(total_nodes_));
    }
  }

  void complete_write(Client& c, const Result<ProposeResult>& r) {
    KvOperation& op = history_[c.record];
    if (r) {
      op.cas_succeeded = r.value().result == 1;
      client_done(c, KvOutcome::ok);
      return;
    }
    follow_hint(c, r.error());
    // Refused inside the call: never appended. Afterwards: it may have been.
    client_done(c, c.in_call ? KvOutcome::failed : KvOutcome::ambiguous);
  }

  void complete_read(Client& c, const Result<LogIndex>& r) {
    KvOperation& op = history_[c.record];
    if (!r) {
      follow_hint(c, r.error());
      client_done(c, KvOutcome::failed);
      return;
    }
    op.observed = cluster_->machine(c.at).get(op.key);
    if (op.observed != kAbsent) {
      last_value_seen_ = op.observed;
    }
    client_done(c, KvOutcome::ok);
  }

  // --- the end ---------------------------------------------------------------------------------

  void finish() {
    report_.trace_hash = cluster_->trace_hash();
    for (NodeId id : cluster_->ids()) {
      if (cluster_->node(id).up) {
        const auto& g = cluster_->group(id);
        if (g.stopped()) {
          // Nothing here fails a disk for good: a group that stopped itself found its own
          // storage or state machine inconsistent (a snapshot it could not restore).
          checker_->fail("node " + std::to_string(id) + " stopped itself without a disk fault");
        }
        report_.max_term = std::max(report_.max_term, g.term());
        report_.snapshots_taken += g.stats().snapshots_taken;
        report_.snapshots_installed += g.stats().snapshots_installed;
      }
    }
    // Stop every group: what is still pending completes (a write: ambiguous), and nothing is
    // left holding a client's operation.
    for (NodeId id : cluster_->ids()) {
      if (cluster_->node(id).up) {
        cluster_->group(id).stop();
      }
    }
    if (!checker_->ok()) {
      report_.ok = false;
      report_.failure = checker_->violation();
    } else {
      std::vector<KvOperation> checked;
      checked.reserve(history_.size());
      for (const KvOperation& op : history_) {
        if (op.read_level != 2) {  // stale reads are not linearizable by design
          checked.push_back(op);
        }
      }
      const auto verdict = check_linearizability(checked);
      if (!verdict.linearizable()) {
        report_.ok = false;
        report_.failure = "linearizability: " + to_string(verdict);
      }
    }
  }

  static constexpr std::size_t kIdSlots = 16;  // per-node arrays, indexed by node id

  SimulationOptions options_;
  Xoshiro256 random_;
  Xoshiro256 membership_random_{options_.seed * 0xd1342543de82ef95ull + 7};
  // The draws of faults added after the seed corpus was fixed (requests waiting for a paused
  // node, crashes right after a vote): their own stream, so that runs without those moments
  // replay as they did before.
  Xoshiro256 extra_random_{options_.seed * 0x2545f4914f6cdd1dull + 11};
  bool changes_ = false;         // membership changes in this run
  std::size_t total_nodes_ = 0;  // the initial voters and the standby nodes
  MembershipOperation change_op_{Completion<LogIndex>{&Simulation::on_change, this}};
  std::int64_t next_change_at_ = 0;
  LogIndex joint_crash_drawn_ = 0;  // the joint configuration a leader crash was drawn for
  Membership last_membership_;      // the leader's, as last seen
  SimulationReport report_;
  std::array<bool, kFaultClasses> enabled_{};
  std::unique_ptr<InvariantChecker> checker_;
  std::vector<ObserverContext> observers_;
  std::vector<NodeExtras> extras_;
  std::vector<std::unique_ptr<Client>> clients_;
  std::unique_ptr<Cluster> cluster_;
  std::vector<KvOperation> history_;
  std::vector<std::int64_t> restart_at_ = std::vector<std::int64_t>(kIdSlots, 0);
  std::int64_t heal_at_ = 0;
  NodeId slow_victim_ = kNoNode;      // a leader the clock nemesis made slow...
  std::int64_t isolate_slow_at_ = 0;  // ...and when it is to be cut off
  std::int64_t election_timeout_max_ = 200'000'000;
  std::int64_t election_timeout_min_ = 100'000'000;
  NodeId doomed_ = kNoNode;     // a new leader to crash at doomed_at_
  NodeId corrupted_ = kNoNode;  // the node whose disk got a flipped bit
  bool corruption_counted_ = false;
  Divergence divergence_;
  StaleTerm stale_term_;
  LostTerm lost_term_;
  std::int64_t quiet_until_ = 0;                      // clients issue nothing before this
  std::array<std::int64_t, kIdSlots> campaign_at_{};  // per node: an operator has it campaign then
  std::uint64_t doom_percent_ = 0;
  std::uint64_t commit_crash_ = 0;
  bool snapshots_ = false;
  std::array<LogIndex, kIdSlots>
      snapshot_crash_{};  // per node: the snapshot a crash point was drawn for
  std::uint64_t candidate_crash_percent_ = 0;
  std::uint64_t leader_crash_percent_ = 0;
  std::vector<Role> roles_ = std::vector<Role>(kIdSlots, Role::follower);  // as of the last event
  struct Ballot {
    Term term = 0;
    NodeId vote = kNoNode;
    bool operator==(const Ballot&) const = default;
  };
  std::vector<Ballot> ballots_ = std::vector<Ballot>(kIdSlots);  // as of the last event
  LogIndex last_leader_commit_ = 0;
  std::int64_t doomed_at_ = 0;
  bool chaos_ = false;
  std::array<std::uint64_t, kIdSlots> sync_odds_{};  // per node (index: node id)
  std::uint64_t stall_per_mille_ = 0;
  std::array<std::int64_t, kIdSlots> stalled_until_{};  // per node: its disk syncs nothing before
  std::int64_t last_value_seen_ = kAbsent;
  NodeId last_leader_ = kNoNode;
  bool stop_clients_ = false;
  TransferOperation transfer_{Completion<void>{&Simulation::on_transfer, this}};
  std::optional<Result<void>> transfer_done_;

  static void on_transfer(void* self, Result<void> r) noexcept {
    static_cast<Simulation*>(self)->transfer_done_ = r;
  }

  static void on_change(void* self, Result<LogIndex> r) noexcept {
    auto& sim = *static_cast<Simulation*>(self);
    if (sim.options_.trace != nullptr) {
      if (r) {
        sim.trace() << "membership change committed at " << r.value() << "\n";
      } else {
        sim.trace() << "membership change: " << r.error().code.message() << "\n";
      }
    }
  }
};

}  // namespace detail

/// Runs one simulation: a key-value store on 3 or 5 RaftGroups with LeaseCoordinators, clients
/// issuing put / get (linearizable, lease, stale) / del / cas with deadlines, and the faults its
/// seed draws. Checks every invariant after every event, liveness after the faults heal, and the
/// client history for linearizability (stale reads excluded). The same options give the same
/// report, trace hash included.
inline SimulationReport run_simulation(const SimulationOptions& options) {
  bool file = options.storage == SimulationOptions::StorageKind::file;
  if (options.storage == SimulationOptions::StorageKind::drawn) {
    file = Xoshiro256(options.seed ^ 0x5f0e5f0e5f0e5f0eull).below(2) == 0;
  }
  if (file) {
    detail::Simulation<FileStorage<SimFileSystem>> simulation(options);
    SimulationReport report = simulation.run();
    report.file_storage = true;
    return report;
  }
  detail::Simulation<MemoryStorage> simulation(options);
  return simulation.run();
}

}  // namespace tenure::raft::testing
