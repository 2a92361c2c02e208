// The LeaseProvider concept: what a consensus engine offers the lease layer.
#pragma once

#include <concepts>

#include <raft/clock.hpp>
#include <raft/completion.hpp>
#include <raft/types.hpp>

#include <lease/leader_loss.hpp>

namespace tenure::lease {

/// A consensus engine the LeaseCoordinator can serve lease reads over. tenure's RaftGroup models
/// it; so can any other engine that embeds a QuorumAckTracker.
///
/// Requirements the compiler checks: the nested types `clock_type` (a raft::MonotonicClock) and
/// `read_request` (a caller-owned ReadIndex operation, constructible from a
/// raft::Completion<raft::LogIndex>), and these members:
///
// clang-format off
/// | member                                                 | thread | meaning |
/// |--------------------------------------------------------|--------|---------|
/// | `const clock_type& clock() const noexcept`             | any    | the clock every instant below is read on |
/// | `Term leader_term() const noexcept`                    | any    | the term in which this node leads and may serve reads, else 0 |
/// | `NodeId leader_hint() const noexcept`                  | any    | the leader this node believes in, kNoNode if none |
/// | `LogIndex applied_index() const noexcept`              | any    | the newest index applied to the state machine |
/// | `time_point quorum_ack() const noexcept`               | any    | QuorumAckTracker::quorum_ack() of this term |
/// | `void read_index(read_request&, time_point deadline)`  | group  | start a ReadIndex round |
/// | `void subscribe_leader_loss(LeaderLossCallback&)`      | group  | register a leader-loss callback |
// clang-format on
///
/// Semantics the compiler cannot check:
/// - the any-thread members are lock-free loads that never block or allocate;
/// - leader_term() is non-zero only once this node, as leader of that term, has committed and
///   applied an entry of that term (so applied_index() covers everything acknowledged by any
///   earlier leader), and only while no leadership transfer is under way; once a transfer has
///   started in a term it stays 0 for the rest of that term;
/// - a write is acknowledged to its client only once applied_index() covers it (a lease read
///   returns applied_index(), so a write acknowledged at commit could be missed);
/// - quorum_ack() is anchored at the *send* time of acknowledged requests of the current term
///   (lesson 11) and is reset on every leader-loss transition;
/// - leader-loss callbacks run synchronously on every transition from leader to anything else and
///   at shutdown, *before* leader_term() stops reporting the old term (lesson 6);
/// - read_index does not throw; it completes the request exactly once, on the group's thread, no
///   later than the deadline (errc::timed_out), with a read index whose entries are applied by
///   then, or with an error (not_leader with a hint, leadership_lost, overloaded, ...). It lets go
///   of the request before calling the completion, which may destroy or reuse it;
/// - leader_hint() names another node when one is known; while this node leads but cannot serve
///   (not yet ready, transferring) it may name itself, and callers should fall back to ReadIndex
///   rather than forward (LeaseCoordinator::read does);
/// - voters neither vote for another candidate nor campaign within election_timeout_min of
///   hearing from the leader, except in an election the leader itself started by TimeoutNow; and
///   a node that starts (or restarts, having forgotten when it last heard from a leader) waits
///   election_timeout_min before granting any vote.
template <class P>
concept LeaseProvider = raft::MonotonicClock<typename P::clock_type> &&
    std::constructible_from<typename P::read_request, raft::Completion<raft::LogIndex>> &&
    requires(const P& cp, P& p, typename P::read_request& request,
             typename P::clock_type::time_point deadline, LeaderLossCallback& callback) {
  { cp.clock() }
  noexcept->std::same_as<const typename P::clock_type&>;
  { cp.leader_term() }
  noexcept->std::same_as<raft::Term>;
  { cp.leader_hint() }
  noexcept->std::same_as<raft::NodeId>;
  { cp.applied_index() }
  noexcept->std::same_as<raft::LogIndex>;
  { cp.quorum_ack() }
  noexcept->std::same_as<typename P::clock_type::time_point>;
  p.read_index(request, deadline);
  p.subscribe_leader_loss(callback);
};

/// A provider that reports the election_timeout_min its voters wait (RaftGroup does): the
/// LeaseCoordinator then derives its lease from it instead of trusting a second copy in
/// LeaseConfig. Optional; the value must be the smallest election_timeout_min of any voter of the
/// group (tenure's RaftGroup reports its own RaftConfig's: configure every member alike).
template <class P>
concept ReportsElectionTimeout = requires(const P& p) {
  { p.election_timeout_min() }
  noexcept->std::convertible_to<typename P::clock_type::duration>;
};

namespace detail {

/// Checks a LeaseProvider piece by piece so that the compiler names what is missing.
template <class P>
consteval bool check_lease_provider() {
  static_assert(
      requires { typename P::clock_type; },
      "tenure: a LeaseProvider needs a nested `clock_type` (its MonotonicClock)");
  static_assert(
      requires { typename P::read_request; },
      "tenure: a LeaseProvider needs a nested `read_request` type, constructible from "
      "raft::Completion<raft::LogIndex>");
  if constexpr (requires {
                  typename P::clock_type;
                  typename P::read_request;
                }) {
    static_assert(raft::detail::check_clock<typename P::clock_type>());
    static_assert(
        std::constructible_from<typename P::read_request, raft::Completion<raft::LogIndex>>,
        "tenure: a LeaseProvider's `read_request` must be constructible from "
        "raft::Completion<raft::LogIndex>");
    static_assert(
        requires(const P& p) {
          { p.clock() }
          noexcept->std::same_as<const typename P::clock_type&>;
        },
        "tenure: a LeaseProvider needs `const clock_type& clock() const noexcept`");
    static_assert(
        requires(const P& p) {
          { p.leader_term() }
          noexcept->std::same_as<raft::Term>;
        },
        "tenure: a LeaseProvider needs `Term leader_term() const noexcept` (lock-free)");
    static_assert(
        requires(const P& p) {
          { p.leader_hint() }
          noexcept->std::same_as<raft::NodeId>;
        },
        "tenure: a LeaseProvider needs `NodeId leader_hint() const noexcept` (lock-free)");
    static_assert(
        requires(const P& p) {
          { p.applied_index() }
          noexcept->std::same_as<raft::LogIndex>;
        },
        "tenure: a LeaseProvider needs `LogIndex applied_index() const noexcept` (lock-free)");
    static_assert(
        requires(const P& p) {
          { p.quorum_ack() }
          noexcept->std::same_as<typename P::clock_type::time_point>;
        },
        "tenure: a LeaseProvider needs `time_point quorum_ack() const noexcept` (lock-free)");
    static_assert(
        requires(P & p, typename P::read_request & r, typename P::clock_type::time_point deadline) {
          p.read_index(r, deadline);
        },
        "tenure: a LeaseProvider needs `read_index(read_request&, time_point deadline)`");
    static_assert(
        requires(P & p, LeaderLossCallback & c) { p.subscribe_leader_loss(c); },
        "tenure: a LeaseProvider needs `subscribe_leader_loss(LeaderLossCallback&)`");
  }
  return LeaseProvider<P>;
}

}  // namespace detail

}  // namespace tenure::lease
