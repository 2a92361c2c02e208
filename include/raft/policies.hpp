// DefaultPolicies: the bundle a user derives from, naming only what they change.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include <raft/clock.hpp>
#include <raft/error_classifier.hpp>
#include <raft/logger.hpp>
#include <raft/metrics.hpp>
#include <raft/random.hpp>
#include <raft/snapshot.hpp>
#include <raft/state_machine.hpp>
#include <raft/steady_clock.hpp>
#include <raft/storage.hpp>
#include <raft/transport.hpp>

namespace tenure::raft {

/// Bugs a simulation can plant in a RaftGroup to prove that it catches them (docs/testing.md,
/// "teeth"). Each is a real mistake from the lessons; never enable one outside a test.
enum class PlantedBug : std::uint32_t {
  /// Anchor the lease at the time an acknowledgement arrives, not when the request left.
  lease_anchor_at_receive = 1u << 0,
  /// Send TimeoutNow without revoking the lease first.
  no_lease_revoke_before_transfer = 1u << 1,
  /// Acknowledge appended entries (and count the leader's own) before they are durable.
  ack_before_durable = 1u << 2,
  /// Commit an entry of an earlier term by counting its replicas (Figure 8).
  commit_previous_term_by_counting = 1u << 3,
  /// Forget when the leader was last heard from whenever a message that is not from a leader
  /// moves the term, so that the node votes inside the old leader's lease.
  forget_leader_contact_on_term_bump = 1u << 4,
  /// Send vote requests (and lead on the other voters' votes alone) before the new term and
  /// the own vote are durable.
  campaign_before_durable = 1u << 5,
  /// Compact the log behind a snapshot as soon as it is written, before it is durable.
  compact_before_snapshot_durable = 1u << 6,
  /// In a joint configuration, count only the incoming voters' majority (for commits, elections,
  /// ReadIndex rounds and the lease), as if the configuration had already been left.
  joint_quorum_counts_only_incoming = 1u << 7,
  /// Answer a vote request with a grant before the vote (and the term it was cast in) is
  /// durable, so that a voter that crashes and loses the write votes again in the same term.
  vote_before_durable = 1u << 8,
  /// Truncate the log at the first entry of every append, even where it matches, so that a
  /// late or duplicated append deletes entries this follower already acknowledged.
  truncate_matching_entries = 1u << 9,
  /// Answer a leader's ReadIndex at its commit index without a heartbeat round confirming that
  /// it still leads, as a group that is alone would.
  read_index_without_round = 1u << 10,
  /// Take a new leader's commit index as the read index before it has committed an entry of its
  /// own term (its commit index may lag what the previous leader committed).
  read_index_before_term_commit = 1u << 11,
};

/// The planted-bugs policy of production: none, and every check compiles away.
struct NoPlantedBugs {
  static constexpr bool active(PlantedBug) noexcept { return false; }
};

/// The defaults of every policy of a RaftGroup. Derive, and override what differs:
///
///     struct MyPolicies : tenure::raft::DefaultPolicies {
///       using transport_type = MyTransport;          // required
///       using storage_type = tenure::raft::MemoryStorage;  // required
///       using state_machine_type = MyStateMachine;   // required
///       static constexpr std::size_t max_peers = 5;  // optional
///     };
///     tenure::raft::RaftGroup<MyPolicies> group(config, clock, transport, storage, machine);
///
/// The transport, storage and state machine have no default: they are the user's. Each policy is
/// checked where RaftGroup is instantiated, with a message that names what is missing.
struct DefaultPolicies {
  /// The clock of timeouts, deadlines and lease anchors.
  using clock_type = SteadyClock;
  /// Which errors mean leadership loss: the lease coordinator of a RaftGroup
  /// (`lease::LeaseCoordinator<RaftGroup<P>>`, and the one AsioGroup builds) invalidates its
  /// lease on exactly the codes this classifier calls `ErrorClass::leadership_lost`.
  using error_classifier = DefaultErrorClassifier;
  /// The per-group random source of election timeouts.
  using random_type = Xoshiro256;
  /// The most members a group can have (voters of both configurations of a joint configuration,
  /// the node itself included). Per-peer state lives in arrays of this size.
  static constexpr std::size_t max_peers = 7;
  /// Where the group logs role and term changes and the like (logger.hpp): one instance per
  /// group, reached through RaftGroup::logger(). NoLogger compiles every log statement away;
  /// StreamLogger writes lines to stderr.
  using logger_type = NoLogger;
  /// What the group counts (metrics.hpp): one instance per group, RaftGroup::metrics().
  /// NoMetrics compiles to nothing; AtomicMetrics keeps atomics an exporter reads.
  using metrics_type = NoMetrics;
  /// Test-only fault injection; see PlantedBug.
  using planted_bugs = NoPlantedBugs;
};

namespace detail {

/// The policies' logger_type and metrics_type, or the no-op defaults for policies written
/// before they existed (not derived from DefaultPolicies).
template <class P>
struct logger_of {
  using type = NoLogger;
};
template <class P>
requires requires {
  typename P::logger_type;
}
struct logger_of<P> {
  using type = typename P::logger_type;
};
template <class P>
struct metrics_of {
  using type = NoMetrics;
};
template <class P>
requires requires {
  typename P::metrics_type;
}
struct metrics_of<P> {
  using type = typename P::metrics_type;
};

template <class P>
consteval bool check_policies() {
  static_assert(
      requires { typename P::transport_type; },
      "tenure: the policies need `using transport_type = ...;` (your Transport)");
  static_assert(
      requires { typename P::storage_type; },
      "tenure: the policies need `using storage_type = ...;` (e.g. MemoryStorage)");
  static_assert(
      requires { typename P::state_machine_type; },
      "tenure: the policies need `using state_machine_type = ...;` (your StateMachine)");
  static_assert(
      requires { typename P::clock_type; },
      "tenure: the policies need `using clock_type = ...;` (derive from DefaultPolicies)");
  static_assert(
      requires { typename P::random_type; },
      "tenure: the policies need `using random_type = ...;` (derive from DefaultPolicies)");
  static_assert(
      requires { typename P::error_classifier; },
      "tenure: the policies need `using error_classifier = ...;` (derive from DefaultPolicies)");
  static_assert(
      requires { P::max_peers; },
      "tenure: the policies need `static constexpr std::size_t max_peers`");
  static_assert(
      requires { typename P::planted_bugs; },
      "tenure: the policies need `using planted_bugs = ...;` (derive from DefaultPolicies)");
  if constexpr (requires {
                  typename P::transport_type;
                  typename P::storage_type;
                  typename P::state_machine_type;
                  typename P::clock_type;
                  typename P::random_type;
                  typename P::error_classifier;
                  P::max_peers;
                }) {
    static_assert(check_transport<typename P::transport_type>());
    static_assert(check_storage<typename P::storage_type>());
    static_assert(check_snapshot_storage<typename P::storage_type>());
    static_assert(check_state_machine<typename P::state_machine_type>());
    static_assert(check_snapshot_state_machine<typename P::state_machine_type>());
    static_assert(check_clock<typename P::clock_type>());
    static_assert(check_random_source<typename P::random_type>());
    static_assert(check_error_classifier<typename P::error_classifier>());
    static_assert(Logger<typename logger_of<P>::type>,
                  "tenure: `logger_type` must model Logger: `bool enabled(LogLevel) const "
                  "noexcept` and `void log(const LogRecord&) noexcept`");
    static_assert(std::is_default_constructible_v<typename logger_of<P>::type>,
                  "tenure: `logger_type` must be default-constructible (the group makes its own)");
    static_assert(Metrics<typename metrics_of<P>::type>,
                  "tenure: `metrics_type` must model Metrics: `add(Counter, std::uint64_t) "
                  "noexcept`, `set(Gauge, std::int64_t) noexcept`, `observe(Histogram, "
                  "std::uint64_t) noexcept`");
    static_assert(std::is_default_constructible_v<typename metrics_of<P>::type>,
                  "tenure: `metrics_type` must be default-constructible (the group makes its "
                  "own)");
    static_assert(P::max_peers >= 1 && P::max_peers <= 64,
                  "tenure: `max_peers` must be between 1 and 64");
    return true;
  }
  return false;
}

}  // namespace detail

}  // namespace tenure::raft
