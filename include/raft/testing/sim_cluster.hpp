// SimCluster: N RaftGroups in one process over a SimNetwork, deterministic from a seed.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include <raft/config.hpp>
#include <raft/manual_clock.hpp>
#include <raft/memory_storage.hpp>
#include <raft/policies.hpp>
#include <raft/raft_group.hpp>
#include <raft/testing/sim_network.hpp>
#include <raft/testing/sim_storage.hpp>
#include <raft/types.hpp>

namespace tenure::raft::testing {

/// A StateMachine for simulations: folds every applied entry into an order-sensitive digest, so
/// two nodes that applied the same entries at the same indexes agree on digest_at(index).
/// Returns the entry's index as its result word. Allocation: none after construction.
class DigestStateMachine {
 public:
  explicit DigestStateMachine(std::size_t history = 4096) : history_(history) {}

  std::uint64_t apply(LogIndex index, std::span<const std::byte> payload) noexcept {
    std::uint64_t h = digest_ ^ (index * 0x9e3779b97f4a7c15ull);
    for (std::byte b : payload) {
      h = (h ^ static_cast<std::uint64_t>(b)) * 0x100000001b3ull;  // FNV-1a step
    }
    digest_ = h;
    last_applied_ = index;
    ++applied_count_;
    history_[index % history_.size()] = Record{index, digest_};
    return index;
  }

  std::uint64_t digest() const noexcept { return digest_; }
  LogIndex last_applied() const noexcept { return last_applied_; }
  std::uint64_t applied_count() const noexcept { return applied_count_; }
  /// The digest right after applying `index`, if it is still in the recent history.
  std::optional<std::uint64_t> digest_at(LogIndex index) const noexcept {
    const Record& r = history_[index % history_.size()];
    if (r.index != index) {
      return std::nullopt;
    }
    return r.digest;
  }

 private:
  struct Record {
    LogIndex index = 0;
    std::uint64_t digest = 0;
  };
  std::uint64_t digest_ = 0xcbf29ce484222325ull;
  LogIndex last_applied_ = 0;
  std::uint64_t applied_count_ = 0;
  std::vector<Record> history_;
};

/// N RaftGroups, each with its own ManualClock, MemoryStorage and state machine, over one
/// SimNetwork, driven by one simulated timeline. Same seed, same run: every random choice (the
/// network's, each group's election timeouts) derives from it.
///
/// The driver advances true time from event to event (message deliveries, ticks every
/// tick_interval), advancing every node's clock by the same true duration (each scaled by its
/// own drift: `clock(id).set_drift_ppm`). Nodes are numbered 1..N.
///
/// Thread-safety: one thread. Allocation: at construction and restart; after warm-up, running
/// allocates only what the groups and network do (nothing, in steady state).
template <class Machine = DigestStateMachine, std::size_t MaxPeers = 7,
          class PlantedBugs = NoPlantedBugs, class Storage = MemoryStorage,
          class MetricsPolicy = NoMetrics, class LoggerPolicy = NoLogger>
class SimCluster {
 public:
  struct Policies : DefaultPolicies {
    using clock_type = ManualClock;
    using transport_type = SimTransport;
    using storage_type = Storage;
    using state_machine_type = Machine;
    static constexpr std::size_t max_peers = MaxPeers;
    using planted_bugs = PlantedBugs;
    using metrics_type = MetricsPolicy;
    using logger_type = LoggerPolicy;
  };
  using Group = RaftGroup<Policies>;

  struct Node;

  struct Options {
    /// The voters the group starts with: nodes 1..nodes.
    std::size_t nodes = 3;
    /// Nodes nodes+1 .. nodes+standby start too, as joining nodes (RaftConfig with no voters):
    /// they take part once a membership change adds them.
    std::size_t standby = 0;
    std::uint64_t seed = 1;
    /// The template of every node's configuration; `self`, `voters` and `random_seed` are filled
    /// in per node.
    RaftConfig config = default_config();
    SimNetworkOptions network{};
    std::chrono::nanoseconds tick_interval{std::chrono::milliseconds(2)};
    typename SimStorage<Storage>::Options storage{};
    /// Each node's clock epoch (node i reads clock_offsets[i - 1] at time 0; missing: 0): no
    /// two monotonic clocks need agree on their origin, and nothing may assume they do.
    std::vector<std::chrono::nanoseconds> clock_offsets{};
    /// Called whenever a node's group is (re)created, e.g. to attach a LeaseCoordinator.
    std::function<void(Node&)> on_node_start;
    /// Called after every event (delivery or tick round), e.g. to check invariants.
    std::function<void()> on_event;
    /// Called when a pause of node `id` runs out, before the node handles anything else (a
    /// timer, a message): what waited for the process in its sockets can be handed to it first.
    std::function<void(NodeId)> on_resume;
  };

  static RaftConfig default_config() {
    RaftConfig c;
    c.election_timeout_min = std::chrono::milliseconds(100);
    c.election_timeout_max = std::chrono::milliseconds(200);
    c.heartbeat_interval = std::chrono::milliseconds(20);
    return c;
  }

  struct Node {
    NodeId id;
    ManualClock clock;
    SimStorage<Storage> disk;
    SimTransport transport;
    std::unique_ptr<Machine> machine;
    std::unique_ptr<Group> group;
    bool up = true;
    std::int64_t paused_until = 0;  // true time; the node neither ticks nor reads before it
    std::string start_failure;      // why the last restart failed, when it did

    /// Why this node last refused to start: its recovery, or its group's construction.
    const std::string& failure() const noexcept {
      return start_failure.empty() ? disk.last_failure() : start_failure;
    }

    Node(NodeId node, SimNetwork& network,
         const typename SimStorage<Storage>::Options& storage_options,
         std::chrono::nanoseconds clock_offset)
        : id(node), clock(clock_offset), disk(storage_options), transport(network) {}

    Storage& storage() noexcept { return disk.get(); }
    const Storage& storage() const noexcept { return disk.get(); }
  };

  explicit SimCluster(Options options) : options_(std::move(options)), network_(network_options()) {
    if (options_.nodes == 0 || options_.nodes > MaxPeers) {
      throw std::invalid_argument("SimCluster: 1..MaxPeers nodes");
    }
    for (std::size_t i = 1; i <= options_.nodes; ++i) {
      voters_.push_back(static_cast<NodeId>(i));
    }
    for (std::size_t i = 1; i <= options_.nodes + options_.standby; ++i) {
      all_.push_back(static_cast<NodeId>(i));
    }
    for (NodeId id : all_) {
      const std::size_t i = static_cast<std::size_t>(id - 1);
      const auto offset = i < options_.clock_offsets.size() ? options_.clock_offsets[i]
                                                            : std::chrono::nanoseconds::zero();
      nodes_.push_back(std::make_unique<Node>(id, network_, options_.storage, offset));
      start(*nodes_.back());
    }
    next_tick_ = options_.tick_interval.count();
  }

  // --- running ---------------------------------------------------------------------------------

  /// Runs the simulation for `d` of true time.
  void run_for(std::chrono::nanoseconds d) { run_until_time(now_ + d.count()); }

  /// Runs until `done()` holds (checked after every event) or `limit` of true time passed.
  /// Returns whether `done()` held.
  template <class Predicate>
  bool run_until(Predicate&& done, std::chrono::nanoseconds limit) {
    const std::int64_t end = now_ + limit.count();
    if (done()) {
      return true;
    }
    while (now_ < end || network_.next_delivery() <= now_) {
      step_once(end);
      if (done()) {
        return true;
      }
    }
    return false;
  }

  /// Runs until some node leads with a majority able to hear it; returns it, or kNoNode when
  /// none does within `limit`.
  NodeId wait_for_leader(std::chrono::nanoseconds limit = std::chrono::seconds(10)) {
    run_until([&] { return leader() != kNoNode; }, limit);
    return leader();
  }

  /// The node that leads in the highest term, or kNoNode.
  NodeId leader() const {
    NodeId best = kNoNode;
    Term best_term = 0;
    for (const auto& n : nodes_) {
      if (n->up && n->group->role() == Role::leader && n->group->term() >= best_term) {
        best = n->id;
        best_term = n->group->term();
      }
    }
    return best;
  }

  // --- nodes -----------------------------------------------------------------------------------
  Group& group(NodeId id) { return *node(id).group; }
  Node& node(NodeId id) { return *nodes_.at(static_cast<std::size_t>(id - 1)); }
  ManualClock& clock(NodeId id) { return node(id).clock; }
  Machine& machine(NodeId id) { return *node(id).machine; }
  std::size_t size() const noexcept { return nodes_.size(); }
  /// Every node, the standby ones included.
  std::span<const NodeId> ids() const noexcept { return all_; }
  /// The voters the group started with.
  std::span<const NodeId> initial_voters() const noexcept { return voters_; }
  SimNetwork& network() noexcept { return network_; }
  std::int64_t now() const noexcept { return now_; }

  /// Stops a node as a crash would: its group stops (pending operations fail with stopped) and
  /// it receives nothing until restart(). Storage in manual_sync mode loses every write that
  /// was not yet durable; with durable-at-once storage nothing written is lost.
  void crash(NodeId id, std::uint64_t entropy = 0) {
    Node& n = node(id);
    n.group->stop();
    n.disk.crash(entropy);
    n.up = false;
  }

  /// Pauses a node for `d` of true time (a stop-the-world pause, SIGSTOP): it neither ticks nor
  /// reads messages, which wait for it; its clock keeps running.
  void pause(NodeId id, std::chrono::nanoseconds d) {
    node(id).paused_until = std::max(node(id).paused_until, now_ + d.count());
  }
  bool paused(NodeId id) { return node(id).paused_until > now_; }
  /// Ends a pause now (SIGCONT): the node's expired deadlines fire at its next turn.
  void resume(NodeId id) { node(id).paused_until = std::min(node(id).paused_until, now_); }

  /// A hash of every event so far (deliveries and ticks, with their content): two runs of the
  /// same seed must agree on it.
  std::uint64_t trace_hash() const noexcept { return trace_hash_; }

  /// Brings a crashed node back: its storage recovers, then a new group and a fresh state
  /// machine re-apply the log from the hard state's commit index. Returns false, leaving the
  /// node down, when recovery refuses (corrupt storage): node(id).disk.last_failure() says why.
  bool restart(NodeId id) {
    Node& n = node(id);
    n.group.reset();
    n.start_failure.clear();
    if (!n.disk.recover()) {
      n.up = false;
      return false;
    }
    try {
      start(n);
    } catch (const std::system_error& e) {
      // The group refused what the storage recovered (a snapshot its state machine cannot
      // restore): the node stays down and the simulator decides whether that is a failure.
      n.group.reset();
      n.up = false;
      n.start_failure = e.what();
      return false;
    }
    return true;
  }

 private:
  SimNetworkOptions network_options() const {
    SimNetworkOptions o = options_.network;
    o.seed = options_.seed * 0x2545f4914f6cdd1dull + 1;
    o.max_entries_per_message = options_.config.max_entries_per_message;
    return o;
  }

  void start(Node& n) {
    RaftConfig c = options_.config;
    c.self = n.id;
    c.voters = n.id <= options_.nodes ? voters_ : std::vector<NodeId>{};
    c.learners.clear();
    c.random_seed = (options_.seed * 1000003) ^ (n.id * 0x9e3779b97f4a7c15ull) ^ ++restarts_;
    n.machine = std::make_unique<Machine>();
    n.group = std::make_unique<Group>(c, n.clock, n.transport, n.disk.get(), *n.machine);
    n.up = true;
    n.paused_until = 0;
    if (options_.on_node_start) {
      options_.on_node_start(n);
    }
  }

  void mix(std::uint64_t v) noexcept { trace_hash_ = (trace_hash_ ^ v) * 0x100000001b3ull; }

  void run_until_time(std::int64_t end) {
    while (now_ < end || network_.next_delivery() <= now_) {
      step_once(end);
    }
  }

  // When node `n`'s earliest operation deadline falls, in true time (INT64_MAX: none). Its clock
  // runs at (1 + drift) of true time; rounding up never wakes it before the deadline.
  std::int64_t deadline_of(const Node& n) const {
    if (!n.up || !n.group) {
      return std::numeric_limits<std::int64_t>::max();
    }
    const auto deadline = n.group->next_deadline();
    if (deadline == ManualClock::time_point::max()) {
      return std::numeric_limits<std::int64_t>::max();
    }
    const std::int64_t local = (deadline - n.clock.now()).count();
    if (local <= 0) {
      return std::max(now_, n.paused_until);  // a paused node expires it when it resumes
    }
    const std::int64_t rate = 1'000'000 + n.clock.drift_ppm();
    const std::int64_t true_ns = (local * 1'000'000 + rate - 1) / rate + 1;
    return std::max(now_, std::max(n.paused_until, now_ + true_ns));
  }

  // One event: the earliest of a delivery, a tick, an operation deadline, or the end of the run.
  void step_once(std::int64_t end) {
    std::int64_t next_deadline = std::numeric_limits<std::int64_t>::max();
    for (const auto& n : nodes_) {
      next_deadline = std::min(next_deadline, deadline_of(*n));
    }
    const std::int64_t next = std::min({next_tick_, network_.next_delivery(), next_deadline, end});
    if (next > now_) {
      advance_to(next);
      steps_at_now_ = 0;
    } else if (++steps_at_now_ > kMaxStepsAtOneInstant) {
      // Something keeps scheduling work for the same instant: a runtime would spin on it.
      throw std::logic_error("simulated time stopped at " + std::to_string(now_) +
                             " ns: next tick " + std::to_string(next_tick_) + ", delivery " +
                             std::to_string(network_.next_delivery()) + ", deadline " +
                             std::to_string(next_deadline));
    }
    if (next_deadline <= now_ && now_ < next_tick_ && network_.next_delivery() > now_) {
      // A deadline falls between ticks: expire it now, exactly (lesson 1).
      for (auto& n : nodes_) {
        if (deadline_of(*n) <= now_ && n->paused_until <= now_) {
          n->group->tick();
          if (deadline_of(*n) <= now_) {
            // A deadline that a tick does not expire would spin a runtime (and this loop).
            throw std::logic_error("node " + std::to_string(n->id) +
                                   ": a tick left an expired operation deadline pending");
          }
        }
      }
      mix(static_cast<std::uint64_t>(now_) ^ 0x5555);
      if (options_.on_event) {
        options_.on_event();
      }
      return;
    }
    const bool delivered = network_.deliver_next(
        [&](const Message& m) { deliver(m); },
        [&](NodeId to) {
          return to != kNoNode && to <= nodes_.size() ? node(to).paused_until : std::int64_t{0};
        });
    if (!delivered && now_ >= next_tick_) {
      mix(static_cast<std::uint64_t>(now_));
      for (auto& n : nodes_) {
        if (n->up && n->paused_until <= now_) {
          n->group->tick();
        }
      }
      next_tick_ += options_.tick_interval.count();
    } else if (!delivered) {
      return;
    }
    if (options_.on_event) {
      options_.on_event();
    }
  }

  static constexpr std::uint64_t kMaxStepsAtOneInstant = 10'000'000;
  std::uint64_t steps_at_now_ = 0;  // events since simulated time last moved

  void advance_to(std::int64_t t) {
    const std::chrono::nanoseconds dt(t - now_);
    const std::int64_t before = now_;
    for (auto& n : nodes_) {
      n->clock.advance(dt);
    }
    now_ = t;
    network_.set_now(t);
    if (options_.on_resume) {
      for (auto& n : nodes_) {
        if (n->up && n->paused_until > before && n->paused_until <= t) {
          options_.on_resume(n->id);
        }
      }
    }
  }

  void deliver(const Message& m) {
    if (m.to == kNoNode || m.to > nodes_.size()) {
      return;
    }
    Node& n = node(m.to);
    mix(static_cast<std::uint64_t>(now_));
    mix((m.from << 8) ^ m.to ^ (static_cast<std::uint64_t>(m.type) << 16));
    mix(m.term ^ (m.index << 20) ^ (m.commit << 40) ^ m.entries.size());
    if (n.up) {
      n.group->step(m);
    }
  }

  Options options_;
  SimNetwork network_;
  std::vector<NodeId> voters_;
  std::vector<NodeId> all_;
  std::vector<std::unique_ptr<Node>> nodes_;
  std::int64_t now_ = 0;
  std::int64_t next_tick_ = 0;
  std::uint64_t restarts_ = 0;
  std::uint64_t trace_hash_ = 0xcbf29ce484222325ull;
};

}  // namespace tenure::raft::testing
