// Caller-owned operations: a proposal, a ReadIndex read, a leadership transfer. Each links into
// the group's queues with intrusive hooks and is completed in place, exactly once.
#pragma once

#include <cstdint>

#include <boost/intrusive/list_hook.hpp>
#include <boost/intrusive/set_hook.hpp>

#include <raft/completion.hpp>
#include <raft/membership.hpp>
#include <raft/types.hpp>

namespace tenure::raft {

template <class Policies>
class RaftGroup;

namespace detail {

enum class OperationKind : std::uint8_t { propose, read, transfer, membership };

struct QueueTag;
struct DeadlineTag;
/// The hook of the queue an operation waits in (proposals by index, reads by round or index).
/// auto_unlink: the group unlinks an operation in O(1) without knowing which queue holds it.
using QueueHook =
    boost::intrusive::list_base_hook<boost::intrusive::tag<QueueTag>,
                                     boost::intrusive::link_mode<boost::intrusive::auto_unlink>>;
/// The hook of the group's deadline index. Safe mode: destroying an operation that is still
/// pending trips an assertion in debug builds instead of corrupting the index.
using DeadlineHook = boost::intrusive::set_base_hook<boost::intrusive::tag<DeadlineTag>>;

/// What every waiting operation has: a place in one of the group's queues, a place in the
/// group's deadline index, and its deadline. The caller owns the memory (docs/design.md: the core
/// never owns a callback on the heap); the hooks make enqueue and cancel O(1) and deadline
/// expiry O(log n), and nothing ever walks a whole queue per tick (lesson 2).
class OperationBase : public QueueHook, public DeadlineHook {
 public:
  OperationBase(const OperationBase&) = delete;
  OperationBase& operator=(const OperationBase&) = delete;

  /// Whether the group still holds the operation (it has not completed). An operation must not
  /// be destroyed or reused while pending.
  bool pending() const noexcept { return DeadlineHook::is_linked(); }

 protected:
  explicit OperationBase(OperationKind kind) noexcept : kind_(kind) {}
  ~OperationBase() = default;

 private:
  template <class>
  friend class tenure::raft::RaftGroup;

  std::int64_t deadline_ = 0;  // nanoseconds of the group's clock
  OperationKind kind_;
};

}  // namespace detail

/// What a committed proposal reports.
struct ProposeResult {
  /// Where the entry was committed, and in which term.
  LogIndex index = 0;
  Term term = 0;
  /// What StateMachine::apply returned for it.
  std::uint64_t result = 0;
};

/// A proposal: construct it with its completion, pass it to RaftGroup::propose, keep it alive
/// until the completion has run. The completion receives the ProposeResult once the entry is
/// committed and applied on this node, or an error:
/// - not_leader (with a leader hint), transfer_in_progress, overloaded, stopped: refused, the
///   entry was not appended;
/// - timed_out: the deadline passed first; the entry may still commit (outcome unknown);
/// - leadership_lost: this node stopped leading first; the entry may still commit under the next
///   leader, or be discarded (outcome unknown, documented in docs/raft.md).
class ProposeOperation : public detail::OperationBase {
 public:
  explicit ProposeOperation(Completion<ProposeResult> done) noexcept
      : OperationBase(detail::OperationKind::propose), done_(done) {}

 private:
  template <class>
  friend class RaftGroup;
  Completion<ProposeResult> done_;
  LogIndex index_ = 0;
  Term term_ = 0;
};

/// A linearizable read through ReadIndex (Raft thesis section 6.4): completes with an index such
/// that every entry up to it is applied on this node and reading the state machine then is
/// linearizable; or with not_leader, leadership_lost, overloaded, timed_out or stopped.
/// It is also the `read_request` type of RaftGroup as a lease::LeaseProvider.
class ReadIndexOperation : public detail::OperationBase {
 public:
  explicit ReadIndexOperation(Completion<LogIndex> done) noexcept
      : OperationBase(detail::OperationKind::read), done_(done) {}

 private:
  template <class>
  friend class RaftGroup;
  Completion<LogIndex> done_;
  LogIndex read_index_ = 0;
  /// Leader: the heartbeat sequence whose quorum acknowledgement confirms this read.
  /// Follower: the batch it was forwarded in.
  std::uint64_t needs_ = 0;
};

/// A leadership transfer (Raft thesis section 3.10): completes with success once the target has
/// taken over, or with not_leader, invalid_argument, transfer_in_progress, leadership_lost,
/// timed_out or stopped.
class TransferOperation : public detail::OperationBase {
 public:
  explicit TransferOperation(Completion<void> done) noexcept
      : OperationBase(detail::OperationKind::transfer), done_(done) {}

 private:
  template <class>
  friend class RaftGroup;
  Completion<void> done_;
};

/// A membership change (RaftGroup::change_membership): completes with the index of the config
/// entry that made the target configuration committed, or with an error:
/// - not_leader, change_in_progress, transfer_in_progress, invalid_argument, stopped: refused,
///   nothing was appended;
/// - timed_out, leadership_lost, cancelled: the outcome is unknown; the change may have been
///   made, in part or in whole (a joint configuration is always left, by whichever node leads).
///   Read RaftGroup::membership() on the leader to know.
class MembershipOperation : public detail::OperationBase {
 public:
  explicit MembershipOperation(Completion<LogIndex> done) noexcept
      : OperationBase(detail::OperationKind::membership), done_(done) {}

 private:
  template <class>
  friend class RaftGroup;
  Completion<LogIndex> done_;
  Membership target_;
};

}  // namespace tenure::raft
