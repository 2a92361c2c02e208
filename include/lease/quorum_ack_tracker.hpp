// QuorumAckTracker: the instant by which a quorum of voters had acknowledged this leader
// (lessons 10 to 14).
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <system_error>

#include <raft/clock.hpp>
#include <raft/detail/majority.hpp>
#include <raft/errc.hpp>
#include <raft/types.hpp>

namespace tenure::lease {

using raft::NodeId;

/// Tracks, for each voter, the *send* time of the newest leader request that voter has
/// acknowledged, and publishes the quorum-ack instant: the latest instant T such that a quorum of
/// voters has acknowledged a request sent at or after T.
///
/// Why the send time (lesson 11): a follower that answers a request resets its election timer on
/// receipt, which is no earlier than the leader sent it. The send time is therefore a safe lower
/// bound on the follower's last timer reset, measured on the leader's own clock, however long the
/// request or its answer sat in the network. Anchoring at the *receive* time of the answer would
/// credit the follower with a reset it may have done much earlier.
///
/// The quorum-ack instant is the oldest among the freshest majority of voters (lesson 10), the
/// leader itself counting as always fresh when it is a voter. With a joint configuration
/// (incoming and outgoing voter sets, Raft paper section 6) a quorum must hold in both, so the
/// instant is the older of the two sets' instants. A group whose only voter is the leader is its
/// own quorum: its quorum-ack instant is `kAlways`.
///
/// Thread-safety: every member except quorum_ack() must be called from one thread at a time (the
/// group's thread). quorum_ack() is a single atomic load and may be called from any thread.
/// Allocation: none, ever; all state lives in fixed arrays of MaxPeers slots.
/// Complexity: record() is O(MaxPeers) and selects over a small on-stack array (no sort of a heap
/// vector, lesson 14).
///
/// Errors: set_configuration() refuses bad voter sets with errc::invalid_config and leaves the
/// tracker unchanged.
template <raft::MonotonicClock Clock, std::size_t MaxPeers>
class QuorumAckTracker {
  static_assert(MaxPeers >= 1, "QuorumAckTracker: MaxPeers counts every member, the leader too");
  static_assert(MaxPeers <= 64, "QuorumAckTracker: at most 64 members (membership is a bit mask)");

 public:
  using clock_type = Clock;
  using time_point = typename Clock::time_point;

  /// The most members (voters of either configuration, the leader included) tracked at once.
  static constexpr std::size_t kMaxPeers = MaxPeers;
  /// quorum_ack() when no quorum has acknowledged anything since the last reset.
  static constexpr time_point kNever =
      raft::from_nanos<Clock>(std::numeric_limits<std::int64_t>::min());
  /// quorum_ack() when the leader alone is a quorum: acknowledged at every instant.
  static constexpr time_point kAlways =
      raft::from_nanos<Clock>(std::numeric_limits<std::int64_t>::max());

  /// A tracker for the leader `self` with no configuration yet (quorum_ack() is kNever until
  /// set_configuration succeeds).
  explicit QuorumAckTracker(NodeId self) noexcept : self_(self) {}

  QuorumAckTracker(const QuorumAckTracker&) = delete;
  QuorumAckTracker& operator=(const QuorumAckTracker&) = delete;

  /// Sets the voters. `outgoing` is empty for a simple configuration; non-empty, it makes a joint
  /// configuration in which a quorum must hold in `voters` and in `outgoing` at once.
  ///
  /// Members that stay keep their acknowledgements; members that are in neither set are pruned
  /// (lesson 13), and a member added later starts with none. Returns errc::invalid_config, changing
  /// nothing, when `voters` is empty, a set names kNoNode or a node twice, or the two sets together
  /// name more than MaxPeers distinct nodes.
  [[nodiscard]] std::error_code set_configuration(std::span<const NodeId> voters,
                                                  std::span<const NodeId> outgoing = {}) noexcept {
    if (voters.empty() || !valid_set(voters) || !valid_set(outgoing)) {
      return make_error_code(raft::errc::invalid_config);
    }
    // Build the new member table on the stack, carrying over the acks of members that stay.
    std::array<NodeId, MaxPeers> next_ids{};
    std::array<std::int64_t, MaxPeers> next_acks{};
    std::size_t count = 0;
    Mask incoming_mask = 0;
    Mask outgoing_mask = 0;
    auto place = [&](NodeId id, Mask& mask) -> bool {
      for (std::size_t i = 0; i < count; ++i) {
        if (next_ids[i] == id) {
          mask |= Mask{1} << i;
          return true;
        }
      }
      if (count == MaxPeers) {
        return false;
      }
      next_ids[count] = id;
      next_acks[count] = id == self_ ? kAlwaysNanos : ack_of(id);
      mask |= Mask{1} << count;
      ++count;
      return true;
    };
    for (NodeId id : voters) {
      if (!place(id, incoming_mask)) {
        return make_error_code(raft::errc::invalid_config);
      }
    }
    for (NodeId id : outgoing) {
      if (!place(id, outgoing_mask)) {
        return make_error_code(raft::errc::invalid_config);
      }
    }
    ids_ = next_ids;
    acks_ = next_acks;
    count_ = count;
    incoming_ = incoming_mask;
    outgoing_ = outgoing_mask;
    recompute();
    return {};
  }

  /// Records that `from` acknowledged a request this leader sent at `sent_at` (the stamp the
  /// response echoes). Ignored when `from` is not a voter of the current configuration (lesson 13),
  /// is the leader itself, or has already acknowledged a later request (answers may arrive out of
  /// order). Call only for answers to requests sent in the current leadership term.
  void record(NodeId from, time_point sent_at) noexcept {
    const std::int64_t sent = raft::to_nanos<Clock>(sent_at);
    for (std::size_t i = 0; i < count_; ++i) {
      if (ids_[i] != from) {
        continue;
      }
      const std::int64_t previous = acks_[i];
      if (from == self_ || sent <= previous) {
        return;
      }
      acks_[i] = sent;
      // Raising an ack that was already above a set's quorum instant leaves that set's instant
      // unchanged (it stays among the freshest); skip the selection then.
      const Mask bit = Mask{1} << i;
      const bool affects_incoming = (incoming_ & bit) != 0 && previous <= incoming_quorum_;
      const bool affects_outgoing = (outgoing_ & bit) != 0 && previous <= outgoing_quorum_;
      if (affects_incoming || affects_outgoing) {
        recompute();
      }
      return;
    }
  }

  /// The quorum-ack instant: kNever when no quorum has acknowledged since the last reset or
  /// configuration, kAlways when the leader alone is a quorum. One atomic load, any thread.
  time_point quorum_ack() const noexcept {
    return raft::from_nanos<Clock>(published_.load(std::memory_order_acquire));
  }

  /// Forgets every acknowledgement, keeping the configuration. Call on every leader-loss
  /// transition (lesson 13) and before leading a new term: acks from an old term prove nothing
  /// about the new one.
  void reset() noexcept {
    for (std::size_t i = 0; i < count_; ++i) {
      acks_[i] = ids_[i] == self_ ? kAlwaysNanos : kNeverNanos;
    }
    recompute();
  }

  /// Whether `id` is a voter of the current configuration (either set when joint).
  bool is_voter(NodeId id) const noexcept { return find(id) != count_; }

  /// The newest acknowledged send time of `id`: kNever for a member that has acknowledged
  /// nothing yet or a node that is not a member, kAlways for the leader itself.
  time_point last_ack(NodeId id) const noexcept { return raft::from_nanos<Clock>(ack_of(id)); }

  /// Whether the configuration is joint.
  bool joint() const noexcept { return outgoing_ != 0; }

 private:
  using Mask = raft::detail::MemberMask;
  static constexpr std::int64_t kNeverNanos = std::numeric_limits<std::int64_t>::min();
  static constexpr std::int64_t kAlwaysNanos = std::numeric_limits<std::int64_t>::max();

  static bool valid_set(std::span<const NodeId> set) noexcept {
    for (std::size_t i = 0; i < set.size(); ++i) {
      if (set[i] == raft::kNoNode) {
        return false;
      }
      for (std::size_t j = 0; j < i; ++j) {
        if (set[j] == set[i]) {
          return false;
        }
      }
    }
    return true;
  }

  std::size_t find(NodeId id) const noexcept {
    std::size_t i = 0;
    while (i < count_ && ids_[i] != id) {
      ++i;
    }
    return i;
  }

  std::int64_t ack_of(NodeId id) const noexcept {
    const std::size_t i = find(id);
    return i == count_ ? kNeverNanos : acks_[i];
  }

  // The oldest ack among the freshest majority of the set (lesson 10).
  std::int64_t quorum_of(Mask mask) const noexcept {
    return raft::detail::majority_value(acks_, mask, kNeverNanos);
  }

  void recompute() noexcept {
    incoming_quorum_ = incoming_ != 0 ? quorum_of(incoming_) : kNeverNanos;
    outgoing_quorum_ = outgoing_ != 0 ? quorum_of(outgoing_) : kAlwaysNanos;
    const std::int64_t quorum = std::min(incoming_quorum_, outgoing_quorum_);
    // Store only on change: readers on other cores keep the line in their caches.
    if (published_.load(std::memory_order_relaxed) != quorum) {
      published_.store(quorum, std::memory_order_release);
    }
  }

  // The published instant sits on its own cache line: readers on other threads load it on every
  // lease read and must not share a line with the slots this thread writes on every ack.
  alignas(64) std::atomic<std::int64_t> published_{kNeverNanos};

  // Owned by the group's thread. Slot i is one member: its id, and the send time (ns) of the
  // newest request it acknowledged (kAlways for the leader itself).
  alignas(64) std::array<NodeId, MaxPeers> ids_{};
  std::array<std::int64_t, MaxPeers> acks_{};
  std::size_t count_ = 0;
  Mask incoming_ = 0;  // slots that are voters of the incoming (or only) configuration
  Mask outgoing_ = 0;  // slots that are voters of the outgoing configuration; 0 unless joint
  std::int64_t incoming_quorum_ = kNeverNanos;
  std::int64_t outgoing_quorum_ = kAlwaysNanos;
  NodeId self_;
};

}  // namespace tenure::lease
