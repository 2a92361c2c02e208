// RaftGroup: the consensus core. A deterministic state machine: no I/O of its own, no threads.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cassert>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include <boost/intrusive/list.hpp>
#include <boost/intrusive/set.hpp>

#include <lease/leader_loss.hpp>
#include <lease/quorum_ack_tracker.hpp>
#include <raft/clock.hpp>
#include <raft/codec.hpp>
#include <raft/completion.hpp>
#include <raft/config.hpp>
#include <raft/detail/deferred_messages.hpp>
#include <raft/detail/majority.hpp>
#include <raft/detail/progress.hpp>
#include <raft/errc.hpp>
#include <raft/logger.hpp>
#include <raft/membership.hpp>
#include <raft/message.hpp>
#include <raft/metrics.hpp>
#include <raft/operations.hpp>
#include <raft/policies.hpp>
#include <raft/result.hpp>
#include <raft/snapshot.hpp>
#include <raft/status.hpp>
#include <raft/storage.hpp>
#include <raft/types.hpp>

namespace tenure::raft {

namespace detail {
template <class M, bool kSupported>
struct SnapshotReaderOf {
  struct type {};
};
template <class M>
struct SnapshotReaderOf<M, true> {
  using type = typename M::snapshot_reader;
};
}  // namespace detail

/// What RaftGroup::campaign() does when this node has heard from a leader (or started) within
/// election_timeout_min, the window in which that leader may still be serving lease reads that
/// count on this node's acknowledgement.
enum class CampaignMode : std::uint8_t {
  /// Refuse with errc::leader_active. Campaigning then would let this node vote for itself
  /// inside the leader's lease, and win with the votes of nodes the leader does not count.
  unless_leader_active,
  /// Ask the active leader to hand over by a leadership transfer (it revokes its lease before
  /// TimeoutNow leaves, as RaftGroup::transfer_leadership does); campaign at once when no leader
  /// is active. The request is fire and forget: the outcome shows as this node leading, or not.
  transfer_from_leader,
};

/// One Raft group: the replicated log of the Raft paper with PreVote, CheckQuorum, leader
/// stickiness, pipelined replication, ReadIndex, leadership transfer, and the quorum-ack tracking
/// that lets LeaseCoordinator serve reads from memory.
///
/// It does no I/O and starts no threads. Inputs: tick() (time passes; read from the Clock),
/// step() (a message from the Transport), on_persisted() (the Storage made writes durable), and
/// the operations propose(), read_index(), transfer_leadership(). Outputs: calls on the Transport
/// (send) and Storage (writes), and committed entries handed to the StateMachine. The same inputs
/// produce the same outputs: a simulated cluster replays exactly from its seed.
///
/// Ordering rules, written once (compare etcd's doc.go):
/// - a vote, and every append acknowledgement, leaves only after the writes before it are
///   durable (term and vote persisted before any vote is answered; Figure 2);
/// - the leader replicates while its own append is still being persisted; its own entry counts
///   towards a commit only once durable;
/// - entries are applied only once committed, in order; a proposal completes after its entry is
///   applied on this node;
/// - on every transition from leader to anything else, and at stop(), the quorum-ack tracker is
///   reset and leader-loss callbacks run synchronously *before* leader_term() stops reporting the
///   old term (lesson 6).
///
/// Thread-safety: every member runs on one thread (the group's), except the LeaseProvider
/// accessors leader_term(), leader_hint(), applied_index() and quorum_ack(), which are atomic
/// loads callable from any thread. Allocation: at construction, and when a queue grows past its
/// previous high-water mark; none in steady state (pinned by tests).
/// Errors: the constructor throws std::system_error with errc::invalid_config for a bad
/// RaftConfig. Operations report errors through their completions (see operations.hpp).
template <class Policies>
class RaftGroup {
  static_assert(detail::check_policies<Policies>());

 public:
  using clock_type = typename Policies::clock_type;
  using transport_type = typename Policies::transport_type;
  using storage_type = typename Policies::storage_type;
  using state_machine_type = typename Policies::state_machine_type;
  using random_type = typename Policies::random_type;
  /// The policies' ErrorClassifier: `lease::LeaseCoordinator<RaftGroup>` (and AsioGroup's
  /// coordinator) classify errors with it unless given another.
  using error_classifier = typename Policies::error_classifier;
  /// The policies' Logger (NoLogger unless they name one): one per group, logger().
  using logger_type = typename detail::logger_of<Policies>::type;
  /// The policies' Metrics (NoMetrics unless they name one): one per group, metrics().
  using metrics_type = typename detail::metrics_of<Policies>::type;
  using time_point = typename clock_type::time_point;
  using duration = typename clock_type::duration;
  /// The LeaseProvider's ReadIndex operation type.
  using read_request = ReadIndexOperation;
  static constexpr std::size_t kMaxPeers = Policies::max_peers;
  using Tracker = lease::QuorumAckTracker<clock_type, kMaxPeers>;
  /// Whether this group takes, sends and installs snapshots: its StateMachine and its Storage
  /// both support them (SnapshotStateMachine, SnapshotStorage; docs/raft.md, "Snapshots").
  static constexpr bool kSnapshots =
      SnapshotStateMachine<state_machine_type> && SnapshotStorage<storage_type>;

  /// Counters for tests, benchmarks and metrics. Group's thread.
  struct Stats {
    std::uint64_t elections_started = 0;
    std::uint64_t times_leader = 0;
    std::uint64_t messages_sent = 0;
    /// Messages step() dropped unread: for another group or node (a transport's routing
    /// mistake), or answers from a node that is not a member.
    std::uint64_t messages_ignored = 0;
    std::uint64_t appends_sent = 0;
    std::uint64_t heartbeat_rounds = 0;
    std::uint64_t entries_applied = 0;
    std::uint64_t reads_confirmed = 0;
    std::uint64_t leader_loss_callback_failures = 0;
    std::uint64_t snapshots_taken = 0;  // saved and durable here
    std::uint64_t snapshot_chunks_sent = 0;
    std::uint64_t snapshots_installed = 0;  // received from a leader and restored
    std::uint64_t config_entries_applied = 0;
  };

  RaftGroup(const RaftConfig& config, clock_type& clock, transport_type& transport,
            storage_type& storage, state_machine_type& machine)
      : config_(checked(config)),
        clock_(clock),
        transport_(transport),
        storage_(storage),
        machine_(machine),
        random_(config.random_seed != 0 ? config.random_seed
                                        : (config.self * 0x9e3779b97f4a7c15ull) ^ config.group),
        tracker_(config.self),
        entry_scratch_(config.max_entries_per_message),
        waiters_(64) {
    check_frame_limit(config_, transport_);
    for (detail::Progress& p : progress_) {
      p.inflight.init(config_.max_inflight_messages, config_.max_inflight_bytes);
    }
    remote_reads_.resize(config_.max_remote_read_batches);

    const HardState hs = storage_.hard_state();
    term_ = hs.term;
    vote_ = hs.vote;
    // A commit index beyond the log it recovered names entries this node does not have (a
    // storage that acknowledged writes it then lost): claiming them would have it tell a leader
    // it holds them, and the two would trade appends and rejections for ever.
    commit_ = std::max(std::min(hs.commit, storage_.last_index()), storage_.first_index() - 1);
    applied_ = storage_.first_index() - 1;
    durable_last_ = storage_.last_index();
    last_write_seq_ = storage_.durable_seq();
    durable_seen_ = last_write_seq_;
    applied_membership_ = Membership{config_.voters, {}, config_.learners};
    if constexpr (kSnapshots) {
      // Room for the configuration ahead of the first chunk's bytes.
      chunk_.resize(static_cast<std::size_t>(config_.snapshot_chunk_bytes) +
                    detail::max_encoded_size(kMaxPeers));
      // A restart begins from the newest durable snapshot: the state machine is rebuilt from it,
      // and the log entries after it are applied on top.
      if (auto snapshot = storage_.snapshot()) {
        restore_machine(*snapshot);
        snapshot_index_ = snapshot->index;
        if (!snapshot->membership.voters.empty()) {  // files of version 1 have none
          applied_membership_ = snapshot->membership;
          applied_membership_index_ = snapshot->index;
        }
        durable_snapshot_ = std::move(*snapshot);
        applied_ = std::max(applied_, snapshot_index_);
        commit_ = std::max(commit_, snapshot_index_);
        published_applied_.store(applied_, std::memory_order_release);
      }
    }
    const time_point now = clock_.now();
    started_at_ = now;
    // Forwarded read batches are numbered from the clock's reading at start: an answer to a
    // batch sent before a restart (a late duplicate) can then never confirm a read after it. The
    // clock must not go back across restarts (a monotonic clock does not within one boot, and no
    // message outlives a reboot).
    next_batch_ = std::max<std::uint64_t>(
        1, static_cast<std::uint64_t>(std::max<std::int64_t>(0, to_nanos<clock_type>(now))));
    reset_election_timer(now);
    // The configuration in force is the latest in the log, committed or not (thesis 4.1).
    if (!adopt_membership(log_membership())) {
      throw std::system_error(make_error_code(errc::corrupt_storage),
                              "RaftGroup: the recovered configuration has more members than "
                              "max_peers");
    }
    apply_committed();
    // A log compacted without snapshots starts past entries this run will never apply.
    published_applied_.store(applied_, std::memory_order_release);
  }

  RaftGroup(const RaftGroup&) = delete;
  RaftGroup& operator=(const RaftGroup&) = delete;

  ~RaftGroup() { stop(); }

  // ===========================================================================================
  // Inputs
  // ===========================================================================================

  /// Lets time pass: fires election and heartbeat timers, CheckQuorum and operation deadlines,
  /// then sends what that produced. Call at least every heartbeat_interval / 2; more often makes
  /// deadlines more exact.
  void tick() {
    if (input_depth_ != 0) {
      deferred_tick_ = true;
      return;
    }
    as_input([this] { tick_now(); });
  }

  /// Hands a received message to the group. Messages for another group or addressed to another
  /// node are ignored, and so are answers from a node that is not a member (a leader's requests
  /// are taken from anyone: a joining node knows no members yet).
  ///
  /// May be called from inside this group's own Transport::send() (a transport that delivers at
  /// once, through peers that answer at once): inputs do not nest, so the message is copied and
  /// handled when the input that is sending ends, before that input returns. See as_input().
  void step(const Message& m) {
    if (input_depth_ != 0) {
      deferred_.push(m);
      return;
    }
    as_input([&] { step_now(m); });
  }

  /// The Storage made more writes durable: releases what waited for them (held-back votes and
  /// acknowledgements, the leader's own match, the candidate's own vote).
  void on_persisted() {
    if (input_depth_ != 0) {
      deferred_persisted_ = true;
      return;
    }
    as_input([this] { on_persisted_now(); });
  }

  /// Sends what earlier inputs produced: appends (batching every proposal made since the last
  /// flush), a heartbeat round for waiting reads, forwarded read batches. tick(), step() and
  /// on_persisted() flush by themselves; call it after a batch of propose() / read_index().
  void flush() {
    if (input_depth_ != 0) {
      deferred_flush_ = true;
      return;
    }
    as_input([this] { flush_now(); });
  }

 private:
  void tick_now() {
    if (stopped_) {
      return;
    }
    const time_point now = clock_.now();
    expire_operations(now);
    if constexpr (kSnapshots) {
      advance_snapshot();
    }
    if (role_ == Role::leader) {
      if (config_.check_quorum && !quorum_active(now)) {
        const CauseScope cause(*this, nullptr, "check_quorum");
        become_follower(term_, kNoNode, now);  // CheckQuorum: a minority leader steps down
      } else if (now >= next_heartbeat_) {
        broadcast_heartbeat(now);
        advance_change();  // a learner may have caught up
      }
    } else if (now >= election_deadline_) {
      const CauseScope cause(*this, nullptr, "election_timeout");
      campaign(/*transfer=*/false, now);
    }
    flush_now();
  }

  void step_now(const Message& m) {
    if (stopped_) {
      return;
    }
    if (m.group != config_.group || m.to != config_.self ||
        (answers_leader(m.type) && slot_of(m.from) == kNoSlot)) {
      ++stats_.messages_ignored;  // misrouted, or an answer from a node that is not a member
      count(Counter::messages_ignored);
      return;
    }
    count(Counter::messages_received);
    const CauseScope cause(*this, &m, {});
    const time_point now = clock_.now();
    if (non_member_vote(m, now)) {
      flush_now();
      return;
    }
    if (!handle_term(m, now)) {
      flush_now();
      return;
    }
    switch (m.type) {
      case MessageType::append:
        on_append(m, now);
        break;
      case MessageType::append_response:
        on_append_response(m, now);
        break;
      case MessageType::heartbeat:
        on_heartbeat(m, now);
        break;
      case MessageType::heartbeat_response:
        on_heartbeat_response(m, now);
        break;
      case MessageType::vote:
      case MessageType::pre_vote:
        on_vote_request(m, now);
        break;
      case MessageType::vote_response:
      case MessageType::pre_vote_response:
        on_vote_response(m, now);
        break;
      case MessageType::timeout_now:
        if (role_ != Role::leader) {
          campaign(/*transfer=*/true, now);
        }
        break;
      case MessageType::read_index:
        on_read_index_request(m);
        break;
      case MessageType::read_index_response:
        on_read_index_response(m);
        break;
      case MessageType::transfer_request:
        on_transfer_request(m);
        break;
      case MessageType::snapshot:
        on_snapshot(m, now);
        break;
      case MessageType::snapshot_response:
        on_snapshot_response(m);
        break;
    }
    flush_now();
  }

  void on_persisted_now() {
    if (stopped_) {
      return;
    }
    release_durable();
    flush_now();
  }

  void flush_now() {
    if (stopped_) {
      return;
    }
    if (const auto ec = storage_.error()) {
      fail_stop(ec);
      return;
    }
    if (storage_contract_broken_) {
      fail_stop(make_error_code(errc::storage_failure));
      return;
    }
    // Storage that is durable at once, or that synced on its own thread since, needs no
    // on_persisted() call to release what waited for it.
    release_durable();
    if (role_ == Role::leader) {
      for (std::size_t i = 0; i < members_; ++i) {
        if (i != self_slot_) {
          while (send_append(i)) {
          }
        }
      }
      if (read_round_needed_ > seq_) {
        count(Counter::read_index_rounds);
        broadcast_heartbeat(clock_.now());
      }
    } else if (forward_batch_pending_ && leader_ != kNoNode) {
      Message m = base_message(MessageType::read_index, leader_);
      m.seq = next_batch_;
      send(m);
      ++next_batch_;
      forward_batch_pending_ = false;
    }
  }

 public:
  /// Proposes `payload` for replication. The payload is copied; `op` completes when the entry is
  /// applied here (or fails, see ProposeOperation). Batched: appends leave at the next flush().
  /// Without a deadline, default_operation_timeout applies.
  void propose(ProposeOperation& op, std::span<const std::byte> payload,
               time_point deadline = time_point::max()) {
    as_input([&] {
      assert(!op.pending());
      if (const auto refused = refuse_proposal(payload.size())) {
        count_refusal(refused->code);
        op.done_(*refused);
        return;
      }
      count(Counter::proposals_accepted);
      const EntryView entry{term_, storage_.last_index() + 1, EntryType::normal, payload};
      append_own(std::span<const EntryView>(&entry, 1));
      uncommitted_bytes_ += payload.size();
      op.index_ = entry.index;
      op.term_ = term_;
      proposals_.push_back(op);
      arm_deadline(op, deadline);
      if (solo_) {
        release_durable();  // a single voter commits on its own durability
      }
    });
  }

  /// A linearizable read through ReadIndex (lessons 1 to 3). On the leader, one heartbeat round
  /// confirms every read queued before it; a read that arrives before the leader's first commit
  /// in its term waits for it. On a follower, reads are forwarded to the leader in batches. The
  /// pending-read queue is bounded (max_pending_reads): past it, overloaded at once. Without a
  /// deadline, default_operation_timeout applies.
  void read_index(ReadIndexOperation& op, time_point deadline = time_point::max()) {
    as_input([&] {
      assert(!op.pending());
      if (stopped_) {
        op.done_(errc::stopped);
        return;
      }
      if (pending_reads_ >= config_.max_pending_reads) {
        op.done_(errc::overloaded);
        return;
      }
      if (role_ == Role::leader) {
        if ((solo_ || planted(PlantedBug::read_index_without_round)) &&
            (committed_in_term_ || planted(PlantedBug::read_index_before_term_commit))) {
          op.read_index_ = commit_;
          enqueue_read(op, deadline, reads_wait_apply_);
          complete_applied_reads();
          return;
        }
        if (!committed_in_term_ && !planted(PlantedBug::read_index_before_term_commit)) {
          enqueue_read(op, deadline, reads_wait_commit_);
          return;
        }
        op.read_index_ = commit_;
        op.needs_ = seq_ + 1;
        read_round_needed_ = op.needs_;
        enqueue_read(op, deadline, reads_wait_round_);
        return;
      }
      if (leader_ == kNoNode || role_ != Role::follower) {
        op.done_(Error::not_leader(leader_));
        return;
      }
      op.needs_ = next_batch_;
      forward_batch_pending_ = true;
      enqueue_read(op, deadline, reads_forwarded_);
    });
  }

  /// Hands leadership to `target` (thesis section 3.10): catches it up, revokes the lease, then
  /// sends TimeoutNow. Proposals are refused with transfer_in_progress meanwhile. Bounded by
  /// `deadline` (default_operation_timeout without one).
  void transfer_leadership(TransferOperation& op, NodeId target,
                           time_point deadline = time_point::max()) {
    as_input([&] {
      assert(!op.pending());
      if (refused_unless_leader(op)) {
        return;
      }
      const std::size_t slot = slot_of(target);
      if (slot == kNoSlot || (incoming_ & (detail::MemberMask{1} << slot)) == 0) {
        op.done_(errc::invalid_argument);
        return;
      }
      if (target == config_.self) {
        op.done_(Result<void>{});
        return;
      }
      if (transfer_ != nullptr) {
        op.done_(Error(errc::transfer_in_progress, config_.self));
        return;
      }
      if (membership_index_ > commit_) {
        op.done_(Error(errc::change_in_progress, config_.self));  // its entry must commit first
        return;
      }
      transfer_ = &op;
      transfer_target_ = slot;
      timeout_now_sent_ = false;
      arm_deadline(op, deadline);
      // The lease ends before TimeoutNow can leave, for the rest of this term: the target's
      // election does not wait out our lease (lesson 6; docs/lease.md).
      if (!planted(PlantedBug::no_lease_revoke_before_transfer)) {
        lease_revoked_term_ = term_;
        count(Counter::lease_revocations);
        if (logs(LogLevel::info)) {
          LogRecord r = log_record(LogLevel::info, "lease_revoked",
                                   "lease revoked before handing leadership over");
          r.with(LogField::t("cause", "transfer")).with(LogField::u("target", target));
          logger_.log(r);
        }
      }
      publish_leader_term();
      maybe_send_timeout_now();
      flush_now();
    });
  }

  /// Starts an election now, as an election timeout would: for operators and tests.
  ///
  /// Within election_timeout_min of hearing from a leader (or of this group's start, when it
  /// cannot know), an election could end that leader's term while it still serves lease reads
  /// counting on this node: this node would vote for itself, breaking the promise the lease
  /// rests on (lease_provider.hpp). So then, by default, it refuses with errc::leader_active;
  /// CampaignMode::transfer_from_leader instead sends the leader a transfer request, which the
  /// leader serves like transfer_leadership(): lease revoked first, target caught up, then
  /// TimeoutNow (errc::not_leader when no leader is known to ask).
  /// Other errors: stopped; invalid_argument when this node is not a voter. On the leader it
  /// does nothing and succeeds. No allocation.
  [[nodiscard]] std::error_code campaign(CampaignMode mode = CampaignMode::unless_leader_active) {
    return as_input([&]() -> std::error_code {
      if (stopped_) {
        return errc::stopped;
      }
      if (role_ == Role::leader) {
        return {};
      }
      if (!may_campaign()) {
        return errc::invalid_argument;
      }
      const time_point now = clock_.now();
      if (leader_active(now)) {
        if (mode == CampaignMode::unless_leader_active) {
          return errc::leader_active;
        }
        if (leader_ == kNoNode) {
          return errc::not_leader;  // the term moved since: no leader to ask yet
        }
        send(base_message(MessageType::transfer_request, leader_));
        flush_now();
        return {};
      }
      const CauseScope cause(*this, nullptr, "campaign_requested");
      campaign(false, now);
      flush_now();
      return {};
    });
  }

  /// Changes the group's membership to `target` (Raft thesis chapter 4), in as many steps as it
  /// takes, each a config entry that is in force as soon as it is in a log:
  /// 1. nodes that `target` makes voters and that are not members yet join as learners;
  /// 2. once every learner to be promoted is within RaftConfig::learner_catch_up_entries of the
  ///    commit index (so that a new voter never lowers the fault tolerance while it catches up),
  ///    the voters change: directly when they differ by one node, else through the joint
  ///    configuration C_old,new (every quorum then needs both majorities);
  /// 3. a joint configuration is left as soon as it is committed (by whichever node leads then).
  /// `op` completes with the index of the entry that committed `target` (order within the lists
  /// does not matter). A leader that `target` removes revokes its lease when it appends the
  /// entry that removes it, keeps leading until that entry commits, then steps down and hands
  /// over by TimeoutNow.
  ///
  /// Errors: not_leader; stopped; invalid_argument when `target` fails Membership::validate, or
  /// it and the current configuration together name more than max_peers nodes (a joint
  /// configuration holds both); change_in_progress while another change is pending, a config
  /// entry is not yet committed or a joint configuration not yet left; transfer_in_progress.
  /// Then timed_out (default_operation_timeout without a deadline), leadership_lost or
  /// cancelled, with the outcome unknown (see MembershipOperation). Allocates (a config change is
  /// rare); group's thread.
  void change_membership(MembershipOperation& op, Membership target,
                         time_point deadline = time_point::max()) {
    as_input([&] {
      assert(!op.pending());
      if (refused_unless_leader(op)) {
        return;
      }
      Membership both = membership_;
      for (const auto* list : {&target.voters, &target.outgoing, &target.learners}) {
        for (NodeId id : *list) {
          if (!both.contains(id)) {
            both.learners.push_back(id);
          }
        }
      }
      if (!both.contains(config_.self)) {
        both.learners.push_back(config_.self);
      }
      if (!target.outgoing.empty() || target.validate(kMaxPeers) || both.size() > kMaxPeers) {
        op.done_(Error(errc::invalid_argument, config_.self));
        return;
      }
      if (changing_membership()) {
        op.done_(Error(errc::change_in_progress, config_.self));
        return;
      }
      if (transfer_ != nullptr) {
        op.done_(Error(errc::transfer_in_progress, config_.self));
        return;
      }
      op.target_ = std::move(target);
      change_ = &op;
      arm_deadline(op, deadline);
      advance_change();
      flush_now();
    });
  }

  /// The configuration in force: the latest config entry in this node's log (committed or
  /// not), else the latest snapshot's, else RaftConfig's voters and learners. Empty on a node
  /// that joins and has not heard from a leader yet.
  const Membership& membership() const noexcept { return membership_; }
  /// The index of the config entry membership() comes from (0: RaftConfig).
  LogIndex membership_index() const noexcept { return membership_index_; }
  /// The configuration as of the last applied entry: what this node knows is committed.
  const Membership& committed_membership() const noexcept { return applied_membership_; }
  /// Whether this node knows it is no longer a member: the configuration it applied last leaves
  /// it out and is the one in force, or a member told it so (a removed node is not replicated to
  /// once the configuration without it is in force, so it usually learns it this way, when it
  /// next asks for votes). A runtime shuts such a node down. A joining node that has not heard
  /// from a leader yet is not removed.
  bool removed() const noexcept {
    if (removed_notice_ && membership_index_ <= removed_at_) {
      return true;
    }
    return membership_index_ != 0 && applied_membership_index_ == membership_index_ &&
           !membership_.contains(config_.self);
  }
  /// Whether a membership change is under way on this leader (an operation pending, an entry not
  /// committed, a joint configuration not left).
  bool changing_membership() const noexcept {
    return change_ != nullptr || membership_index_ > commit_ || membership_.joint();
  }

  /// Takes a snapshot at the next tick (when this group supports snapshots and has applied
  /// anything since the last one), whatever RaftConfig::snapshot_entries says. Group's thread.
  void request_snapshot() noexcept { snapshot_requested_ = true; }

  /// The index of the newest durable snapshot (0: none).
  LogIndex snapshot_index() const noexcept { return snapshot_index_; }

  /// Withdraws a pending operation: it completes at once with errc::cancelled (with the leader
  /// hint). As after timed_out, a cancelled proposal's entry may still commit: its outcome is
  /// unknown. An operation that is not pending is left alone, so a cancel that races with the
  /// completion is harmless. O(log n); no allocation.
  void cancel(detail::OperationBase& op) {
    as_input([&] {
      if (op.pending()) {
        complete_with_error(op, Error(errc::cancelled, leader_));
      }
    });
  }

  /// Stops the group for good: leader-loss callbacks run if it was leader, and every pending
  /// operation completes with errc::stopped. Idempotent.
  void stop() {
    as_input([this] { stop_with(errc::stopped); });
  }

  // ===========================================================================================
  // LeaseProvider (lease::LeaseProvider): the accessors are lock-free, any thread.
  // ===========================================================================================

  const clock_type& clock() const noexcept { return clock_; }
  /// RaftConfig::election_timeout_min: the window in which this node neither campaigns nor votes
  /// for another candidate after hearing from a leader. LeaseCoordinator derives its lease from
  /// it, so that the two cannot disagree.
  duration election_timeout_min() const noexcept {
    return std::chrono::duration_cast<duration>(config_.election_timeout_min);
  }

  /// The term in which this node leads and may serve lease reads: it has committed and applied
  /// an entry of this term, and no transfer has revoked the lease in it. 0 otherwise.
  Term leader_term() const noexcept { return published_term_.load(std::memory_order_acquire); }
  NodeId leader_hint() const noexcept { return published_leader_.load(std::memory_order_acquire); }
  LogIndex applied_index() const noexcept {
    return published_applied_.load(std::memory_order_acquire);
  }
  time_point quorum_ack() const noexcept { return tracker_.quorum_ack(); }
  void subscribe_leader_loss(lease::LeaderLossCallback& callback) { leader_losses_.add(callback); }

  // ===========================================================================================
  // Observers (group's thread)
  // ===========================================================================================

  NodeId self() const noexcept { return config_.self; }
  GroupId group() const noexcept { return config_.group; }
  Role role() const noexcept { return role_; }
  Term term() const noexcept { return term_; }
  NodeId vote() const noexcept { return vote_; }
  NodeId leader() const noexcept { return leader_; }
  LogIndex commit_index() const noexcept { return commit_; }
  LogIndex last_applied() const noexcept { return applied_; }
  LogIndex last_index() const noexcept { return storage_.last_index(); }
  bool stopped() const noexcept { return stopped_; }
  /// Why the group stopped by itself: the storage's error(), errc::corrupt_storage (a snapshot or
  /// log that cannot be read back), or errc::storage_failure (a storage broke the WriteSeq rules,
  /// storage.hpp). Empty while it runs and after stop(). Operations failed with storage_failure.
  std::error_code failure() const noexcept { return failure_; }
  std::uint32_t pending_reads() const noexcept { return pending_reads_; }
  std::uint64_t uncommitted_bytes() const noexcept { return uncommitted_bytes_; }
  bool transferring() const noexcept { return transfer_ != nullptr; }
  /// The earliest deadline of a pending operation, or time_point::max() when none. A runtime
  /// arms a timer for it and calls tick() then, so that a caller's deadline is honoured exactly
  /// rather than at the next periodic tick (lesson 1).
  time_point next_deadline() const noexcept {
    return deadlines_.empty() ? time_point::max()
                              : from_nanos<clock_type>(deadlines_.begin()->deadline_);
  }
  const Stats& stats() const noexcept { return stats_; }
  /// This group's logger, to configure (a level, an output). Its log() runs on the group's
  /// thread, inside inputs.
  logger_type& logger() noexcept { return logger_; }
  const logger_type& logger() const noexcept { return logger_; }
  /// This group's metrics (an exporter reads them; AtomicMetrics allows any thread).
  metrics_type& metrics() noexcept { return metrics_; }
  const metrics_type& metrics() const noexcept { return metrics_; }
  /// A snapshot of the group's state, members and (as leader) their replication, as a value
  /// (status.hpp; print it with append_text or append_json). Group's thread; no allocation.
  GroupStatus status() const noexcept {
    GroupStatus s;
    s.group = config_.group;
    s.self = config_.self;
    s.role = role_;
    s.term = term_;
    s.leader = leader_;
    s.vote = vote_;
    s.first_index = storage_.first_index();
    s.last_index = storage_.last_index();
    s.commit_index = commit_;
    s.applied_index = applied_;
    s.snapshot_index = snapshot_index_;
    s.pending_proposals = proposals_.size();
    s.pending_reads = pending_reads_;
    s.uncommitted_bytes = uncommitted_bytes_;
    s.lease_term = published_term_.load(std::memory_order_relaxed);
    s.joint = outgoing_ != 0;
    s.transferring = transfer_ != nullptr;
    s.stopped = stopped_;
    s.failure = failure_;
    const time_point now = clock_.now();
    const bool leading = role_ == Role::leader && !stopped_;
    const time_point quorum_ack = tracker_.quorum_ack();
    if (leading && quorum_ack == Tracker::kAlways) {
      s.quorum_ack_age_ns = 0;  // the leader alone is a quorum: acknowledged at every instant
    } else if (leading && quorum_ack >= became_leader_at_) {  // kNever: none in this term yet
      s.quorum_ack_age_ns = to_nanos<clock_type>(now) - to_nanos<clock_type>(quorum_ack);
    }
    const LogIndex last = storage_.last_index();
    for (std::size_t i = 0; i < members_ && i < GroupStatus::kMaxMembers; ++i) {
      PeerStatus& p = s.members[s.member_count++];
      const Mask bit = Mask{1} << i;
      p.id = ids_[i];
      p.self = i == self_slot_;
      p.voter = (voting_ & bit) != 0;
      p.learner = !p.voter && Membership::has(membership_.learners, ids_[i]);
      if (!leading) {
        continue;
      }
      const detail::Progress& pr = progress_[i];
      p.match = p.self ? durable_last_ : pr.match;
      p.next = p.self ? last + 1 : pr.next;
      p.lag = last > p.match ? last - p.match : 0;
      if (!p.self) {
        p.inflight_messages = static_cast<std::uint32_t>(pr.inflight.count());
        p.inflight_bytes = pr.inflight.bytes();
        const time_point heard = tracker_.last_ack(ids_[i]);
        if (heard >= became_leader_at_) {
          p.last_ack_age_ns = to_nanos<clock_type>(now) - to_nanos<clock_type>(heard);
        }
        p.replication = pr.state == detail::ProgressState::probe       ? "probe"
                        : pr.state == detail::ProgressState::replicate ? "replicate"
                                                                       : "snapshot";
      }
    }
    return s;
  }
  const RaftConfig& config() const noexcept { return config_; }
  const storage_type& storage() const noexcept { return storage_; }
  /// The leader's view of `peer`'s match index (0 when not leader or unknown).
  LogIndex match_of(NodeId peer) const noexcept {
    const std::size_t s = slot_of(peer);
    if (role_ != Role::leader || s == kNoSlot) {
      return 0;
    }
    return s == self_slot_ ? durable_last_ : progress_[s].match;
  }

 private:
  static constexpr std::size_t kNoSlot = std::numeric_limits<std::size_t>::max();
  using Mask = detail::MemberMask;

  template <class Op>
  using Queue = boost::intrusive::list<Op, boost::intrusive::base_hook<detail::QueueHook>,
                                       boost::intrusive::constant_time_size<false>>;

  struct DeadlineOrder {
    bool operator()(const detail::OperationBase& a, const detail::OperationBase& b) const noexcept {
      return a.deadline_ < b.deadline_;
    }
  };
  using DeadlineIndex = boost::intrusive::multiset<
      detail::OperationBase, boost::intrusive::base_hook<detail::DeadlineHook>,
      boost::intrusive::compare<DeadlineOrder>, boost::intrusive::constant_time_size<false>>;

  /// Something that must wait until storage write `seq` is durable.
  struct Waiter {
    enum class Kind : std::uint8_t { send, log, self_vote, snapshot_saved, snapshot_installed };
    WriteSeq seq = 0;
    Kind kind = Kind::send;
    LogIndex last_index = 0;  // log: the last index after the write
    Term term = 0;            // self_vote: the term voted in
    Message message;          // send: the held-back message (never carries entries)
  };

  /// A read batch forwarded by a follower, held by the leader until a round confirms it.
  struct RemoteRead {
    NodeId from = kNoNode;
    std::uint64_t batch = 0;
    LogIndex read_index = 0;
    std::uint64_t needs = 0;
    bool awaiting_commit = false;
  };

  // Completes `op` with stopped, or not_leader with the hint, unless this node leads. Returns
  // whether it did.
  // Runs `body` as one input. Inputs do not nest: one that arrives while another runs (a
  // transport whose send() delivers at once, to peers that answer at once; a completion callback
  // that steps the group) would otherwise run in the middle of the first, on a state it has
  // half changed, and a cluster of such transports would recurse without bound. step(), tick(),
  // on_persisted() and flush() arriving meanwhile are deferred (a message is copied) and run
  // here, in arrival order, before the outermost input returns; operations (propose() and the
  // like) called meanwhile run at once, as a completion callback expects. The stack then holds
  // each group at most once, however the transport delivers.
  template <class F>
  decltype(auto) as_input(F&& body) {
    if (input_depth_ != 0) {
      return body();
    }
    ++input_depth_;
    struct Leave {
      std::uint32_t& depth;
      ~Leave() { --depth; }
    } leave{input_depth_};
    if constexpr (std::is_void_v<decltype(body())>) {
      body();
      run_deferred();
      publish_gauges();
    } else {
      auto result = body();
      run_deferred();
      publish_gauges();
      return result;
    }
  }

  // -------------------------------------------------------------------------------------------
  // Observability: logs and metrics (both compile away with the default policies)
  // -------------------------------------------------------------------------------------------

  static constexpr bool kMetrics = detail::metrics_enabled<metrics_type>();

  // What the group is reacting to, for the logs: the message being stepped, or a named cause (a
  // timer, an operator's request). Restored on scope exit.
  struct CauseScope {
    RaftGroup& group;
    const Message* message;
    std::string_view text;
    CauseScope(RaftGroup& g, const Message* m, std::string_view t) noexcept
        : group(g), message(std::exchange(g.cause_message_, m)), text(std::exchange(g.cause_, t)) {}
    ~CauseScope() {
      group.cause_message_ = message;
      group.cause_ = text;
    }
    CauseScope(const CauseScope&) = delete;
    CauseScope& operator=(const CauseScope&) = delete;
  };

  bool logs(LogLevel level) const noexcept { return logger_.enabled(level); }

  LogRecord log_record(LogLevel level, std::string_view event,
                       std::string_view message) const noexcept {
    LogRecord r;
    r.level = level;
    r.event = event;
    r.message = message;
    r.group = config_.group;
    r.node = config_.self;
    r.term = term_;
    r.role = stopped_ ? std::string_view("stopped") : to_string(role_);
    return r;
  }

  void add_cause(LogRecord& r) const noexcept {
    if (cause_message_ != nullptr) {
      r.with(LogField::t("cause", to_string(cause_message_->type)))
          .with(LogField::u("from", cause_message_->from))
          .with(LogField::u("msg_term", cause_message_->term));
    } else if (!cause_.empty()) {
      r.with(LogField::t("cause", cause_));
    }
  }

  void count(Counter c, std::uint64_t n = 1) noexcept { metrics_.add(c, n); }

  void count_refusal(std::error_code ec) noexcept {
    if (ec == errc::overloaded) {
      count(Counter::proposals_refused_overloaded);
    } else if (ec == errc::not_leader) {
      count(Counter::proposals_refused_not_leader);
    } else if (ec == errc::too_large) {
      count(Counter::proposals_refused_too_large);
    }
  }

  void note_term_change(Term old_term) noexcept {
    count(Counter::term_changes);
    if (logs(LogLevel::info)) {
      LogRecord r = log_record(LogLevel::info, "term_changed", "term moved");
      r.with(LogField::u("old_term", old_term));
      add_cause(r);
      logger_.log(r);
    }
  }

  void note_role_change(Role old_role, LogLevel level) noexcept {
    if (old_role == role_ || !logs(level)) {
      return;
    }
    LogRecord r = log_record(level, "role_changed", "role changed");
    r.with(LogField::t("old_role", to_string(old_role))).with(LogField::u("leader", leader_));
    add_cause(r);
    logger_.log(r);
  }

  // Samples the time one log write takes to become durable (one write at a time is timed: the
  // clock is read twice per sample, not per write).
  void note_persist_sample(std::size_t entries) noexcept {
    if constexpr (kMetrics) {
      metrics_.observe(Histogram::persist_batch_entries, entries);
      if (persist_sample_seq_ == 0 && last_write_seq_ != 0) {
        persist_sample_seq_ = last_write_seq_;
        persist_sample_at_ = clock_.now();
      }
    } else {
      (void)entries;
    }
  }

  void publish_gauges() noexcept {
    if constexpr (kMetrics) {
      metrics_.set(Gauge::term, static_cast<std::int64_t>(term_));
      metrics_.set(Gauge::role, static_cast<std::int64_t>(role_));
      metrics_.set(Gauge::leader, static_cast<std::int64_t>(leader_));
      metrics_.set(Gauge::commit_index, static_cast<std::int64_t>(commit_));
      metrics_.set(Gauge::applied_index, static_cast<std::int64_t>(applied_));
      metrics_.set(Gauge::last_index, static_cast<std::int64_t>(storage_.last_index()));
      metrics_.set(Gauge::pending_reads, static_cast<std::int64_t>(pending_reads_));
      metrics_.set(Gauge::uncommitted_bytes, static_cast<std::int64_t>(uncommitted_bytes_));
    }
  }

  void run_deferred() {
    while (deferred_tick_ || deferred_persisted_ || deferred_flush_ || !deferred_.empty()) {
      if (std::exchange(deferred_persisted_, false)) {
        on_persisted_now();
      }
      deferred_.drain([this](const Message& m) { step_now(m); });
      if (std::exchange(deferred_tick_, false)) {
        tick_now();
      }
      if (std::exchange(deferred_flush_, false)) {
        flush_now();
      }
    }
  }

  template <class Op>
  bool refused_unless_leader(Op& op) {
    if (stopped_) {
      op.done_(errc::stopped);
      return true;
    }
    if (role_ != Role::leader) {
      op.done_(Error::not_leader(leader_));
      return true;
    }
    return false;
  }

  static bool planted(PlantedBug bug) noexcept { return Policies::planted_bugs::active(bug); }

  static const RaftConfig& checked(const RaftConfig& config) {
    if (const auto ec = config.validate(kMaxPeers)) {
      throw std::system_error(ec, "RaftConfig");
    }
    return config;
  }

  // The largest append this configuration sends: at most max_entries_per_message entries whose
  // payloads add up to max_message_bytes, or one entry alone that is larger (a proposal of up to
  // max_proposal_bytes).
  static std::uint64_t max_append_frame_bytes(const RaftConfig& c) noexcept {
    const std::uint64_t append =
        kFrameHeaderSize + std::uint64_t{c.max_entries_per_message} * kEntryHeaderSize +
        std::max(c.max_message_bytes, std::min(c.max_proposal_bytes, c.max_uncommitted_bytes));
    if constexpr (!kSnapshots) {
      return append;
    }
    // A snapshot chunk: its bytes, and in the first the configuration.
    const std::uint64_t chunk = kFrameHeaderSize + kEntryHeaderSize + c.snapshot_chunk_bytes +
                                detail::max_encoded_size(kMaxPeers);
    return std::max(append, chunk);
  }

  // A transport with a frame limit must carry the largest append, or replication stalls.
  static void check_frame_limit(const RaftConfig& c, const transport_type& transport) {
    if constexpr (ReportsFrameLimit<transport_type>) {
      const std::uint64_t needed = max_append_frame_bytes(c);
      const std::uint64_t limit = transport.max_frame_bytes();
      if (needed > limit) {
        throw std::system_error(
            make_error_code(errc::invalid_config),
            "RaftConfig lets an append frame reach " + std::to_string(needed) +
                " bytes (max_message_bytes, max_proposal_bytes, max_entries_per_message, "
                "snapshot_chunk_bytes), but the transport carries at most " +
                std::to_string(limit) +
                " (TcpTransportOptions::max_frame_bytes and max_queue_bytes): lower the former or "
                "raise the latter");
      }
    } else {
      (void)c;
      (void)transport;
    }
  }

  // -------------------------------------------------------------------------------------------
  // Members and messages
  // -------------------------------------------------------------------------------------------

  // The messages a leader (or candidate) takes only from members: it keeps per-member state for
  // them.
  static bool answers_leader(MessageType type) noexcept {
    switch (type) {
      case MessageType::append_response:
      case MessageType::heartbeat_response:
      case MessageType::vote_response:
      case MessageType::pre_vote_response:
      case MessageType::snapshot_response:
      case MessageType::transfer_request:
        return true;
      default:
        return false;
    }
  }

  std::size_t slot_of(NodeId id) const noexcept {
    for (std::size_t i = 0; i < members_; ++i) {
      if (ids_[i] == id) {
        return i;
      }
    }
    return kNoSlot;
  }

  Message base_message(MessageType type, NodeId to) const noexcept {
    Message m;
    m.type = type;
    m.group = config_.group;
    m.from = config_.self;
    m.to = to;
    m.term = term_;
    return m;
  }

  void send(const Message& m) {
    ++stats_.messages_sent;
    count(Counter::messages_sent);
    transport_.send(m);
  }

  /// Sends `m` once every write issued so far is durable.
  void send_when_durable(const Message& m) {
    if (last_write_seq_ <= durable_seq()) {
      send(m);
      return;
    }
    Waiter& w = push_waiter(last_write_seq_, Waiter::Kind::send);
    w.message = m;
    w.message.entries = {};
  }

  // -------------------------------------------------------------------------------------------
  // Storage writes and durability
  // -------------------------------------------------------------------------------------------

  Waiter& push_waiter(WriteSeq seq, typename Waiter::Kind kind) {
    if (waiter_count_ == waiters_.size()) {
      std::vector<Waiter> bigger(waiters_.size() * 2);
      for (std::size_t i = 0; i < waiter_count_; ++i) {
        bigger[i] = waiters_[(waiter_head_ + i) % waiters_.size()];
      }
      waiters_.swap(bigger);
      waiter_head_ = 0;
    }
    Waiter& w = waiters_[(waiter_head_ + waiter_count_) % waiters_.size()];
    ++waiter_count_;
    w = Waiter{};
    w.seq = seq;
    w.kind = kind;
    return w;
  }

  // Tracks the durable prefix of the log: after each log write, the log's last index once that
  // write is durable. Consecutive log writes collapse into one waiter.
  void note_log_write(WriteSeq seq) {
    if (waiter_count_ != 0) {
      Waiter& back = waiters_[(waiter_head_ + waiter_count_ - 1) % waiters_.size()];
      if (back.kind == Waiter::Kind::log) {
        back.seq = seq;
        back.last_index = storage_.last_index();
        return;
      }
    }
    push_waiter(seq, Waiter::Kind::log).last_index = storage_.last_index();
  }

  void append_own(std::span<const EntryView> entries) {
    record_write(storage_.append(entries));
    note_log_write(last_write_seq_);
    note_persist_sample(entries.size());
  }

  void persist_hard_state() {
    record_write(storage_.save_hard_state(HardState{term_, vote_, commit_}));
  }

  // The storage's durable_seq(), checked against WriteSeq rule 3 (never backwards). A storage
  // that breaks it has taken back a write the group may already have acknowledged: nothing more
  // is released, and the group stops at the end of this input.
  WriteSeq durable_seq() noexcept {
    const WriteSeq durable = storage_.durable_seq();
    if (durable < durable_seen_) {
      storage_contract_broken_ = true;
    }
    durable_seen_ = durable;
    return durable;
  }

  // Notes a write's number, checked against WriteSeq rule 1 (non-decreasing): a smaller number
  // than an earlier write's would let what waits on it leave before that earlier write is
  // durable. The group waits on the larger and stops at the end of this input.
  WriteSeq record_write(WriteSeq seq) noexcept {
    if (seq < last_write_seq_) {
      storage_contract_broken_ = true;
      return last_write_seq_;
    }
    last_write_seq_ = seq;
    return seq;
  }

  void release_durable() {
    const WriteSeq durable = durable_seq();
    if constexpr (kMetrics) {
      if (persist_sample_seq_ != 0 && durable >= persist_sample_seq_) {
        persist_sample_seq_ = 0;
        const std::int64_t ns =
            to_nanos<clock_type>(clock_.now()) - to_nanos<clock_type>(persist_sample_at_);
        metrics_.observe(Histogram::persist_micros,
                         static_cast<std::uint64_t>(std::max<std::int64_t>(ns, 0) / 1000));
      }
    }
    while (waiter_count_ != 0) {
      Waiter& w = waiters_[waiter_head_];
      if (w.seq > durable) {
        break;
      }
      const Waiter done = w;
      waiter_head_ = (waiter_head_ + 1) % waiters_.size();
      --waiter_count_;
      switch (done.kind) {
        case Waiter::Kind::send:
          send(done.message);
          break;
        case Waiter::Kind::log:
          durable_last_ = std::min(done.last_index, storage_.last_index());
          if (role_ == Role::leader) {
            maybe_commit();
          }
          break;
        case Waiter::Kind::self_vote:
          if (role_ == Role::candidate && term_ == done.term) {
            votes_granted_ |= Mask{1} << self_slot_;  // our own vote counts once durable
            maybe_win_election(clock_.now());
          }
          break;
        case Waiter::Kind::snapshot_saved:
          if constexpr (kSnapshots) {
            snapshot_saved();
          }
          break;
        case Waiter::Kind::snapshot_installed:
          if constexpr (kSnapshots) {
            complete_install();
          }
          break;
      }
    }
  }

  // -------------------------------------------------------------------------------------------
  // Terms and roles
  // -------------------------------------------------------------------------------------------

  // Applies the term rules of Figure 2 and section 9.6 to an incoming message. Returns false when
  // the message must be dropped.
  bool handle_term(const Message& m, time_point now) {
    if (m.term > term_) {
      if ((m.type == MessageType::vote || m.type == MessageType::pre_vote) && in_lease(m, now)) {
        return false;  // leader stickiness: a disruptive candidate cannot even bump our term
      }
      if (m.type == MessageType::pre_vote) {
        return true;  // a pre-vote changes nothing
      }
      if (m.type == MessageType::pre_vote_response && !m.reject) {
        return true;  // a granted pre-vote echoes the future term
      }
      const bool from_leader = m.type == MessageType::append || m.type == MessageType::heartbeat ||
                               m.type == MessageType::timeout_now ||
                               m.type == MessageType::snapshot;
      become_follower(m.term, from_leader ? m.from : kNoNode, now);
      return true;
    }
    if (m.term < term_) {
      // A stale leader learns of the new term from our answer (needed with CheckQuorum and
      // PreVote, where it would otherwise never hear a higher term).
      if (m.type == MessageType::append || m.type == MessageType::heartbeat) {
        Message r = base_message(m.type == MessageType::append ? MessageType::append_response
                                                               : MessageType::heartbeat_response,
                                 m.from);
        r.reject = true;
        send(r);
      } else if (m.type == MessageType::pre_vote) {
        Message r = base_message(MessageType::pre_vote_response, m.from);
        r.reject = true;
        send(r);
      }
      return false;
    }
    return true;
  }

  // Whether this node refuses to vote for `m.from` now: while it leads, and within
  // election_timeout_min of the last message it had from a leader (or of its own start, since a
  // restarted node has forgotten when that was). The window rests on the time of that message
  // alone, not on whom the node now believes leads: a message from elsewhere that moves the term
  // (a late pre-vote answer, a reject answering what it sent as leader) leaves the old leader's
  // lease as live as before (rule 1 of docs/lease.md). Two exceptions: an election started by
  // TimeoutNow (the leader revoked its lease before sending it), and a vote for the very leader
  // last heard from (it campaigns only after stepping down, which ended its lease).
  bool in_lease(const Message& m, time_point now) const noexcept {
    if ((m.flags & kFlagTransfer) != 0) {
      return false;
    }
    if (now < started_at_ + config_.election_timeout_min) {
      return true;
    }
    if (role_ == Role::leader) {
      return true;  // a live leader (CheckQuorum would have deposed a dead one) keeps its term
    }
    return m.from != contact_leader_ && now < leader_contact_ + config_.election_timeout_min;
  }

  // Whether a leader may still count on this node's acknowledgement for its lease: it heard from
  // one (or started) within election_timeout_min.
  bool leader_active(time_point now) const noexcept {
    return now < started_at_ + config_.election_timeout_min ||
           now < leader_contact_ + config_.election_timeout_min;
  }

  void heard_from_leader(NodeId leader, time_point now) noexcept {
    leader_contact_ = now;
    contact_leader_ = leader;
  }

  void reset_election_timer(time_point now) {
    const auto spread = static_cast<std::uint64_t>(
        (config_.election_timeout_max - config_.election_timeout_min).count());
    election_deadline_ = now + config_.election_timeout_min +
                         duration(static_cast<std::int64_t>(random_below(random_, spread)));
  }

  void become_follower(Term term, NodeId leader, time_point now) {
    const bool was_leader = role_ == Role::leader;
    const Role old_role = role_;
    const Term old_term = term_;
    if (was_leader) {
      leave_leadership(errc::leadership_lost, leader);
    }
    const bool term_changed = term != term_;
    if (term_changed) {
      term_ = term;
      vote_ = kNoNode;
      persist_hard_state();
      fail_reads(errc::leadership_lost, leader);
      if (leader == kNoNode && planted(PlantedBug::forget_leader_contact_on_term_bump)) {
        leader_contact_ = time_point{};
      }
    }
    role_ = Role::follower;
    leader_ = leader;
    if (leader != kNoNode) {
      heard_from_leader(leader, now);
    }
    publish_leader_term();
    // The timer restarts on news from a leader (Figure 2) and when leadership ends, not when a
    // candidate's request or a reject moves the term: a node that cannot win (its log behind)
    // would otherwise reset everyone's timer at each of its campaigns, locking their phase to
    // its own, and without PreVote nobody else would get a campaign in first.
    if (leader != kNoNode || was_leader) {
      reset_election_timer(now);
    }
    if (term_changed) {
      note_term_change(old_term);
    }
    // note_role_change logs nothing when the node was a follower already.
    note_role_change(old_role, old_role == Role::pre_candidate ? LogLevel::debug : LogLevel::info);
  }

  // Everything that ends with leadership, in the order lesson 6 demands: the lease is gone
  // (tracker reset, callbacks run) while leader_term() still reports the old term, then the role
  // changes and pending operations learn their fate.
  void leave_leadership(errc reason, NodeId new_leader) {
    count(Counter::leadership_lost);
    // Stopping on purpose is no cause for alarm; losing leadership otherwise is.
    const LogLevel level = reason == errc::stopped ? LogLevel::info : LogLevel::warn;
    if (logs(level)) {
      LogRecord r = log_record(level, "leadership_lost", "stopped leading");
      r.with(LogField::t("reason", to_string(reason))).with(LogField::u("new_leader", new_leader));
      add_cause(r);
      logger_.log(r);
    }
    tracker_.reset();
    stats_.leader_loss_callback_failures +=
        leader_losses_.notify(term_, [](std::exception_ptr) noexcept {});
    role_ = Role::follower;
    publish_leader_term();
    while (!proposals_.empty()) {
      ProposeOperation& op = proposals_.front();
      finish(op);
      op.done_(Error(reason, new_leader));
    }
    if (transfer_ != nullptr && (new_leader != kNoNode || reason != errc::leadership_lost)) {
      conclude_transfer(new_leader, reason);
    }
    // Otherwise the transfer stays pending until we learn who leads (conclude_transfer from
    // on_append / on_heartbeat) or its deadline passes.
    if (change_ != nullptr) {
      MembershipOperation& op = *change_;
      change_ = nullptr;
      finish(op);
      op.done_(Error(reason, new_leader));
    }
    fail_reads(reason, new_leader);  // no round of ours can confirm them any more
    fail_remote_reads();
    uncommitted_bytes_ = 0;
  }

  void campaign(bool transfer, time_point now) {
    if (!may_campaign()) {
      return;  // a learner, a joining node, a node whose removal it applied
    }
    ++stats_.elections_started;
    count(Counter::elections_started);
    reset_election_timer(now);
    if (config_.pre_vote && !transfer) {
      const Role old_role = role_;
      role_ = Role::pre_candidate;
      leader_ = kNoNode;
      publish_leader_term();
      note_role_change(old_role, LogLevel::debug);
      votes_granted_ = Mask{1} << self_slot_;  // a pre-vote for ourselves needs no persistence
      votes_rejected_ = 0;
      if (has_quorum(votes_granted_)) {
        start_election(false, now);
        return;
      }
      request_votes(MessageType::pre_vote, term_ + 1, 0);
      return;
    }
    start_election(transfer, now);
  }

  void start_election(bool transfer, time_point now) {
    if constexpr (kSnapshots) {
      drop_partial_install();
    }
    reset_election_timer(now);
    const Term old_term = term_;
    const Role old_role = role_;
    term_ += 1;
    vote_ = config_.self;
    role_ = Role::candidate;
    leader_ = kNoNode;
    publish_leader_term();
    note_term_change(old_term);
    note_role_change(old_role, LogLevel::info);
    if (old_term != term_) {
      fail_reads(errc::leadership_lost, kNoNode);
    }
    persist_hard_state();
    votes_granted_ = 0;
    votes_rejected_ = 0;
    push_waiter(last_write_seq_, Waiter::Kind::self_vote).term = term_;
    // Rule 2 of docs/lease.md: the new term and our own vote are durable before any message of
    // the term leaves. A candidate that crashed before that write would restart in the old term,
    // campaign for this one again, be granted again by voters whose vote is already ours, and
    // lead the same term twice with different entries at the same indexes.
    request_votes(MessageType::vote, term_, transfer ? kFlagTransfer : 0,
                  !planted(PlantedBug::campaign_before_durable));
    release_durable();  // counts our own vote, and sends the requests, if already durable
  }

  void request_votes(MessageType type, Term term, std::uint8_t flags, bool when_durable = false) {
    const LogIndex last = storage_.last_index();
    const Term last_term = term_at(last);
    for (std::size_t i = 0; i < members_; ++i) {
      if (i == self_slot_ || (voting_ & (Mask{1} << i)) == 0) {
        continue;
      }
      Message m = base_message(type, ids_[i]);
      m.term = term;
      m.index = last;
      m.log_term = last_term;
      m.flags = flags;
      if (when_durable) {
        send_when_durable(m);
      } else {
        send(m);
      }
    }
  }

  bool log_up_to_date(LogIndex index, Term log_term) const noexcept {
    const LogIndex last = storage_.last_index();
    const Term last_term = term_at(last);
    return log_term > last_term || (log_term == last_term && index >= last);
  }

  void on_vote_request(const Message& m, time_point now) {
    if (in_lease(m, now)) {
      return;  // heard from a live leader recently: ignore (see in_lease)
    }
    const bool pre = m.type == MessageType::pre_vote;
    Message r =
        base_message(pre ? MessageType::pre_vote_response : MessageType::vote_response, m.from);
    bool grant = false;
    if (pre) {
      // term_ < m.term here: handle_term dropped older ones and kept ours unchanged.
      grant = m.term > term_ && log_up_to_date(m.index, m.log_term);
      r.term = grant ? m.term : term_;
    } else {
      grant = (vote_ == kNoNode || vote_ == m.from) && log_up_to_date(m.index, m.log_term);
      if (grant && vote_ != m.from) {
        vote_ = m.from;
        persist_hard_state();
      }
      if (grant) {
        reset_election_timer(now);
      }
    }
    r.reject = !grant;
    if (pre || planted(PlantedBug::vote_before_durable)) {
      send(r);
    } else {
      send_when_durable(r);  // term and vote are on disk before the answer leaves
    }
  }

  void on_vote_response(const Message& m, time_point now) {
    const std::size_t slot = slot_of(m.from);
    const bool pre = m.type == MessageType::pre_vote_response;
    if ((pre && role_ != Role::pre_candidate) || (!pre && role_ != Role::candidate)) {
      return;
    }
    if (pre && m.term != term_ + 1 && !m.reject) {
      return;
    }
    if (m.reject) {
      votes_rejected_ |= Mask{1} << slot;
      if (quorum_impossible(votes_rejected_)) {
        become_follower(term_, kNoNode, now);  // lost: wait for the next timeout
      }
      return;
    }
    votes_granted_ |= Mask{1} << slot;
    if (pre) {
      if (has_quorum(votes_granted_)) {
        start_election(false, now);
      }
      return;
    }
    maybe_win_election(now);
  }

  // Our own vote is among the majority: a leader never acts in a term that is not durable here
  // (rule 2 of docs/lease.md; with the requests held back, no other vote can arrive sooner
  // anyway, but a stale or duplicated response could).
  void maybe_win_election(time_point now) {
    const bool own_vote = (votes_granted_ & (Mask{1} << self_slot_)) != 0 ||
                          planted(PlantedBug::campaign_before_durable);
    if (role_ == Role::candidate && own_vote && has_quorum(votes_granted_)) {
      become_leader(now);
    }
  }

  void become_leader(time_point now) {
    if (transfer_ != nullptr) {
      conclude_transfer(config_.self, errc::leadership_lost);  // the target did not take over
    }
    const Role old_role = role_;
    role_ = Role::leader;
    leader_ = config_.self;
    ++stats_.times_leader;
    count(Counter::leader_elected);
    note_role_change(old_role, LogLevel::info);
    const LogIndex last = storage_.last_index();
    for (std::size_t i = 0; i < members_; ++i) {
      progress_[i].reset(last);
    }
    tracker_.reset();
    became_leader_at_ = now;
    committed_in_term_ = false;
    uncommitted_bytes_ = 0;
    read_round_needed_ = 0;
    remote_read_count_ = 0;
    // The no-op of section 8: committing it commits every earlier entry and lets us serve reads.
    const EntryView noop{term_, last + 1, EntryType::noop, {}};
    append_own(std::span<const EntryView>(&noop, 1));
    noop_index_ = noop.index;
    publish_leader_term();
    broadcast_heartbeat(now);
    release_durable();
  }

  void publish_leader_term() noexcept {
    // A leader outside the voters of the configuration in force serves no lease reads: it is on
    // its way out (append_config), and a voter it does not count may be elected without it.
    const bool serving =
        role_ == Role::leader && committed_in_term_ && applied_ >= noop_index_ &&
        (incoming_ & (Mask{1} << self_slot_)) != 0 &&
        (transfer_ == nullptr || planted(PlantedBug::no_lease_revoke_before_transfer)) &&
        lease_revoked_term_ != term_;
    published_term_.store(serving ? term_ : 0, std::memory_order_release);
    published_leader_.store(leader_, std::memory_order_release);
  }

  // -------------------------------------------------------------------------------------------
  // Membership (thesis chapter 4): quorums of the configuration in force
  // -------------------------------------------------------------------------------------------

  bool counts_outgoing() const noexcept {
    return outgoing_ != 0 && !planted(PlantedBug::joint_quorum_counts_only_incoming);
  }

  // Whether the members in `granted` are a quorum: a majority of the voters, and while joint a
  // majority of the outgoing voters too.
  bool has_quorum(Mask granted) const noexcept {
    return detail::is_majority(granted, incoming_) &&
           (!counts_outgoing() || detail::is_majority(granted, outgoing_));
  }

  // Whether the members in `refused` leave no quorum possible.
  bool quorum_impossible(Mask refused) const noexcept {
    return detail::is_majority(refused, incoming_) ||
           (counts_outgoing() && detail::is_majority(refused, outgoing_));
  }

  // The largest value a quorum has reached.
  template <class T>
  T quorum_value(const std::array<T, kMaxPeers>& values, T empty) const noexcept {
    const T in = detail::majority_value(values, incoming_, empty);
    return counts_outgoing() ? std::min(in, detail::majority_value(values, outgoing_, empty)) : in;
  }

  std::optional<Membership> decode_config(std::span<const std::byte> payload) const {
    auto m = detail::decode_membership(payload, 64);
    if (!m || m->validate(kMaxPeers)) {
      return std::nullopt;
    }
    return m;
  }

  struct LogMembership {
    Membership latest;
    LogIndex index = 0;
    Membership prior;  // the configuration before it (the latest itself when it is applied)
  };

  // The configuration in force by the log: its latest config entry after the applied one, or
  // the applied configuration. nullopt when a config entry does not decode.
  std::optional<LogMembership> log_membership() const {
    LogMembership found{applied_membership_, applied_membership_index_, applied_membership_};
    for (LogIndex i = std::max(applied_ + 1, storage_.first_index()); i <= storage_.last_index();
         ++i) {
      const EntryView e = storage_.entry(i);
      if (e.type == EntryType::config) {
        auto m = decode_config(e.payload);
        if (!m) {
          return std::nullopt;
        }
        found.prior = std::move(found.latest);
        found.latest = std::move(*m);
        found.index = i;
      }
    }
    return found;
  }

  bool adopt_membership(const std::optional<LogMembership>& found) {
    if (!found || !set_membership(found->latest, found->index)) {
      return false;
    }
    prior_membership_ = found->prior;
    return true;
  }

  // The log changed at `from` or after (appended, truncated, reset): a config entry there
  // changes the configuration in force. Fails the group on a config it cannot hold.
  void refresh_membership() {
    bool config_in_log = false;
    for (LogIndex i = std::max(applied_ + 1, storage_.first_index());
         i <= storage_.last_index() && !config_in_log; ++i) {
      config_in_log = storage_.entry(i).type == EntryType::config;
    }
    if (!config_in_log) {
      // The applied configuration is in force: copied by assignment, into lists that keep their
      // capacity (a snapshot install allocates nothing once warm).
      if ((membership_index_ != applied_membership_index_ ||
           !(membership_ == applied_membership_)) &&
          !set_membership(applied_membership_, applied_membership_index_)) {
        fail_stop(make_error_code(errc::corrupt_storage));
        return;
      }
      prior_membership_ = applied_membership_;
      return;
    }
    if (!adopt_membership(log_membership())) {
      fail_stop(make_error_code(errc::corrupt_storage));
    }
  }

  // Puts `m` (the config entry at `index`) in force: member slots, quorum masks, the lease
  // tracker. Members that stay keep their replication progress; new ones are probed from the
  // end of the log. False, changing nothing, when it has more members than kMaxPeers.
  bool set_membership(const Membership& m, LogIndex index) {
    std::array<NodeId, kMaxPeers> ids{};
    std::size_t n = 0;
    bool fits = true;
    auto place = [&](NodeId id) -> Mask {
      for (std::size_t i = 0; i < n; ++i) {
        if (ids[i] == id) {
          return Mask{1} << i;
        }
      }
      if (n == kMaxPeers) {
        fits = false;
        return 0;
      }
      ids[n] = id;
      return Mask{1} << n++;
    };
    Mask in = 0;
    Mask out = 0;
    for (NodeId id : m.voters) {
      in |= place(id);
    }
    for (NodeId id : m.outgoing) {
      out |= place(id);
    }
    for (NodeId id : m.learners) {
      place(id);  // a slot (replication progress), in no quorum
    }
    const Mask self = place(config_.self);
    if (!fits) {
      return false;
    }
    if (transfer_ != nullptr) {
      bool stays = false;
      for (std::size_t i = 0; i < n; ++i) {
        stays = stays || ids[i] == ids_[transfer_target_];
      }
      if (!stays) {
        conclude_transfer(kNoNode, errc::leadership_lost);
      }
    }
    // Every slot's Inflights ring was allocated at construction: move them around, never
    // allocate. Members that stay carry their progress; the others get a spare one, reset.
    const LogIndex last = storage_.last_index();
    std::array<detail::Progress, kMaxPeers> next;
    std::array<bool, kMaxPeers> filled{};
    std::array<bool, kMaxPeers> taken{};
    std::size_t transfer_slot = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const std::size_t old = slot_of(ids[i]);
      if (old != kNoSlot) {
        next[i] = std::move(progress_[old]);
        filled[i] = taken[old] = true;
        if (transfer_ != nullptr && old == transfer_target_) {
          transfer_slot = i;
        }
      }
    }
    std::size_t spare = 0;
    for (std::size_t i = 0; i < kMaxPeers; ++i) {
      if (!filled[i]) {
        while (taken[spare]) {
          ++spare;
        }
        taken[spare] = true;
        next[i] = std::move(progress_[spare]);
        next[i].reset(last);
      }
    }
    progress_ = std::move(next);
    transfer_target_ = transfer_slot;
    ids_ = ids;
    members_ = n;
    self_slot_ = static_cast<std::size_t>(std::countr_zero(self));
    incoming_ = in;
    outgoing_ = out;
    voting_ = in | out;
    solo_ = in == self && (!counts_outgoing() || out == self);
    votes_granted_ = 0;
    votes_rejected_ = 0;
    if (!m.voters.empty()) {
      (void)tracker_.set_configuration(
          std::span<const NodeId>(m.voters),
          counts_outgoing() ? std::span<const NodeId>(m.outgoing) : std::span<const NodeId>());
    }
    if (&m != &membership_) {
      membership_ = m;
    }
    membership_index_ = index;
    return true;
  }

  // Leader: appends `m` as a config entry, in force at once (thesis 4.1). A leader that `m`
  // leaves without a vote revokes its lease first, for the rest of its term, as a transfer does:
  // once the entry commits it steps down and hands over by TimeoutNow, and the new leader's
  // election must not wait out (or break) a lease.
  void append_config(const Membership& m) {
    config_scratch_.resize(detail::encoded_size(m));
    detail::encode_membership(m, config_scratch_.data());
    const EntryView entry{term_, storage_.last_index() + 1, EntryType::config,
                          std::span<const std::byte>(config_scratch_)};
    append_own(std::span<const EntryView>(&entry, 1));
    if (!Membership::has(m.voters, config_.self) && lease_revoked_term_ != term_) {
      lease_revoked_term_ = term_;
      count(Counter::lease_revocations);
      if (logs(LogLevel::info)) {
        LogRecord r = log_record(LogLevel::info, "lease_revoked",
                                 "lease revoked: the new configuration removes this leader");
        r.with(LogField::t("cause", "removed")).with(LogField::u("index", entry.index));
        logger_.log(r);
      }
    }
    const Membership copy = m;  // m may be membership_ itself or the operation's target
    prior_membership_ = membership_;
    (void)set_membership(copy, entry.index);  // the caller checked that it fits
    publish_leader_term();
    if (solo_) {
      release_durable();
    }
  }

  static bool same_set(const std::vector<NodeId>& a, const std::vector<NodeId>& b) noexcept {
    if (a.size() != b.size()) {
      return false;
    }
    for (NodeId id : a) {
      if (!Membership::has(b, id)) {
        return false;
      }
    }
    return true;
  }

  static bool same_members(const Membership& a, const Membership& b) noexcept {
    return same_set(a.voters, b.voters) && same_set(a.outgoing, b.outgoing) &&
           same_set(a.learners, b.learners);
  }

  // Leader: moves membership forward once the configuration in force is committed. A joint
  // configuration is left (whoever entered it: a leader that crashed in between leaves it to
  // its successor). A change under way stages the nodes that will vote as learners, waits for
  // them to catch up, then makes the change: directly when the voters differ by one node, else
  // through a joint configuration.
  void advance_change() {
    if (role_ != Role::leader || !committed_in_term_ || transfer_ != nullptr || stopped_ ||
        membership_index_ > commit_) {
      return;
    }
    if (membership_.joint()) {
      append_config(Membership{membership_.voters, {}, membership_.learners});
      return;
    }
    if (change_ == nullptr) {
      return;
    }
    const Membership& target = change_->target_;
    if (same_members(membership_, target)) {
      MembershipOperation& op = *change_;
      change_ = nullptr;
      finish(op);
      op.done_(membership_index_);
      return;
    }
    Membership staged = membership_;
    for (NodeId id : target.voters) {
      if (!staged.contains(id)) {
        staged.learners.push_back(id);
      }
    }
    if (staged.learners.size() != membership_.learners.size()) {
      append_config(staged);
      return;
    }
    for (NodeId id : target.voters) {
      const detail::Progress& p = progress_[slot_of(id)];
      if (membership_.is_learner(id) && (p.state != detail::ProgressState::replicate ||
                                         p.match + config_.learner_catch_up_entries < commit_)) {
        return;  // not caught up: promoting it now would lower the fault tolerance
      }
    }
    if (is_simple_change(membership_.voters, target.voters)) {
      append_config(target);
    } else {
      append_config(Membership{target.voters, membership_.voters, target.learners});
    }
  }

  // A removed node that never learned its removal committed (the leader stops replicating to it
  // once the configuration without it is in force) keeps timing out and asking for votes. A
  // member that has committed a configuration without it tells it so, without letting its term
  // move (so even without PreVote it disrupts nothing), and the node stops campaigning until its
  // own log brings it a newer configuration (it may be added again). Returns whether `m` was
  // handled here.
  bool non_member_vote(const Message& m, time_point now) {
    const bool request = m.type == MessageType::vote || m.type == MessageType::pre_vote;
    const bool response =
        m.type == MessageType::vote_response || m.type == MessageType::pre_vote_response;
    if (response && (m.flags & kFlagNotMember) != 0) {
      if (m.index >= membership_index_ && (!removed_notice_ || m.index > removed_at_)) {
        removed_notice_ = true;
        removed_at_ = m.index;
        if (role_ == Role::pre_candidate || role_ == Role::candidate) {
          become_follower(term_, kNoNode, now);
        }
      }
      return true;
    }
    // Only to a candidate this node would refuse anyway (its log is behind ours): a node that
    // merely lags (its committed configuration older than the candidate's) must still grant the
    // votes a new configuration needs from it.
    if (!request || applied_membership_.voters.empty() || applied_membership_.contains(m.from) ||
        membership_.contains(m.from) || log_up_to_date(m.index, m.log_term)) {
      return false;
    }
    Message r = base_message(
        m.type == MessageType::vote ? MessageType::vote_response : MessageType::pre_vote_response,
        m.from);
    r.term = m.term;  // so that the candidate reads it in its own term
    r.reject = true;
    r.flags = kFlagNotMember;
    r.index = applied_membership_index_;
    send(r);
    return true;
  }

  // Whether this node may stand for election: it votes in the configuration in force, or in the
  // one before it in its log. The second case is a node whose log holds a configuration that
  // removes it, perhaps not yet committed: if that entry is on it alone (a removed leader that
  // lost its quorum before the entry spread), the others, still in the previous configuration,
  // may need it to win a majority there, and it would refuse their shorter logs; so it
  // campaigns, counts votes by the configuration in its log (safe whoever counts), commits its
  // own removal and steps down. (What it applied is no guide: a restart forgets how far the
  // commit index had gone.) A node removed for good hears so from the members
  // (non_member_vote) and stops.
  bool may_campaign() const noexcept {
    if (removed_notice_ && membership_index_ <= removed_at_) {
      return false;  // told it was removed (non_member_vote)
    }
    return (voting_ & (Mask{1} << self_slot_)) != 0 || prior_membership_.is_voter(config_.self);
  }

  // Leader: the configuration it no longer votes in is committed. It steps down, handing over
  // at once to the voter with the most of the log (its lease is already revoked, see
  // append_config), rather than leave the group without a leader for an election timeout.
  void step_down_removed(time_point now) {
    std::size_t best = kNoSlot;
    for (std::size_t i = 0; i < members_; ++i) {
      if (i != self_slot_ && (incoming_ & (Mask{1} << i)) != 0 &&
          (best == kNoSlot || progress_[i].match > progress_[best].match)) {
        best = i;
      }
    }
    if (best != kNoSlot && progress_[best].match == storage_.last_index()) {
      send(base_message(MessageType::timeout_now, ids_[best]));
    }
    become_follower(term_, kNoNode, now);
  }

  // -------------------------------------------------------------------------------------------
  // Replication (sections 5.3, 5.4)
  // -------------------------------------------------------------------------------------------

  Term term_at(LogIndex index) const noexcept {
    const auto t = storage_.term_at(index);
    return t ? t.value() : 0;
  }

  // Sends one append to the follower in `slot` if flow control allows. Returns whether another
  // may follow at once (pipelining in the replicate state).
  bool send_append(std::size_t slot, bool even_if_empty = false) {
    detail::Progress& p = progress_[slot];
    if (p.state == detail::ProgressState::probe && p.probe_sent) {
      return false;
    }
    if (p.state == detail::ProgressState::replicate && p.inflight.full()) {
      return false;
    }
    if (p.next < storage_.first_index() || p.state == detail::ProgressState::snapshot) {
      // It needs entries compacted away: a snapshot (without snapshot support compaction never
      // goes that far for a live follower, see maybe_compact).
      p.state = detail::ProgressState::snapshot;
      if constexpr (kSnapshots) {
        // Right after it said "done", a follower that still lacks what precedes our log is
        // inconsistent (its commit index outran its log): one transfer per heartbeat then, not
        // a ping-pong of snapshot, "done" and rejected append at network speed.
        if (!p.snap_done_recently) {
          send_snapshot_chunks(slot);
        }
      }
      return false;
    }
    const LogIndex last = storage_.last_index();
    if (p.state == detail::ProgressState::replicate && p.next > last && !even_if_empty) {
      return false;
    }
    Message m = base_message(MessageType::append, ids_[slot]);
    m.index = p.next - 1;
    m.log_term = term_at(m.index);
    std::size_t n = 0;
    std::uint64_t bytes = 0;
    for (LogIndex i = p.next; i <= last && n < entry_scratch_.size(); ++i) {
      const EntryView e = storage_.entry(i);
      if (n != 0 && bytes + e.payload.size() > config_.max_message_bytes) {
        break;
      }
      entry_scratch_[n++] = e;
      bytes += e.payload.size();
    }
    m.entries = std::span<const EntryView>(entry_scratch_.data(), n);
    m.commit = commit_;
    m.seq = ++seq_;
    m.sent_at = to_nanos<clock_type>(clock_.now());
    ++stats_.appends_sent;
    send(m);
    if (p.state == detail::ProgressState::replicate) {
      if (n != 0) {
        p.next = m.index + n + 1;
        p.inflight.add(p.next - 1, bytes);
      }
      return n != 0;
    }
    p.probe_sent = true;
    return false;
  }

  void broadcast_heartbeat(time_point now) {
    ++stats_.heartbeat_rounds;
    for (std::size_t i = 0; i < members_; ++i) {
      progress_[i].probe_sent = false;  // a probe is retried once per heartbeat interval
    }
    const std::uint64_t seq = ++seq_;
    const std::int64_t sent_at = to_nanos<clock_type>(now);
    for (std::size_t i = 0; i < members_; ++i) {
      if (i == self_slot_) {
        continue;
      }
      if constexpr (kSnapshots) {
        retry_stalled_snapshot(i);
      }
      Message m = base_message(MessageType::heartbeat, ids_[i]);
      // A follower may only learn a commit index its log is known to reach (etcd does the same).
      m.commit = std::min(progress_[i].match, commit_);
      m.seq = seq;
      m.sent_at = sent_at;
      send(m);
    }
    next_heartbeat_ = now + config_.heartbeat_interval;
    if (solo_) {
      confirm_reads(std::numeric_limits<std::uint64_t>::max());
    }
  }

  // An append or heartbeat from the leader of our term: follow it.
  void follow(NodeId leader, time_point now) {
    if (role_ != Role::follower) {
      become_follower(term_, leader, now);
    }
    leader_ = leader;
    heard_from_leader(leader, now);
    publish_leader_term();
    reset_election_timer(now);
    if (transfer_ != nullptr) {
      conclude_transfer(leader, errc::leadership_lost);
    }
  }

  void on_append(const Message& m, time_point now) {
    follow(m.from, now);
    Message r = base_message(MessageType::append_response, m.from);
    r.seq = m.seq;
    r.sent_at = m.sent_at;
    if (m.index < commit_) {
      // Everything up to our commit index is known to match; say so.
      r.index = commit_;
      send_when_durable(r);
      return;
    }
    if (!matches(m.index, m.log_term)) {
      r.reject = true;
      r.index = m.index;
      // Hint (fast backtracking, section 5.3): the first index of our conflicting term, or our
      // last index + 1 when our log is shorter.
      const LogIndex last = storage_.last_index();
      if (m.index > last) {
        r.reject_hint = last + 1;
        r.log_term = 0;
      } else {
        const Term conflict = term_at(m.index);
        LogIndex first = m.index;
        while (first > commit_ + 1 && first > storage_.first_index() &&
               term_at(first - 1) == conflict) {
          --first;
        }
        r.reject_hint = first;
        r.log_term = conflict;
      }
      send(r);  // a rejection acknowledges nothing durable
      return;
    }
    if constexpr (kSnapshots) {
      drop_partial_install();  // the leader replicates to us by appends: that install is moot
    }
    // Skip the entries we already have; truncate at the first conflict; append the rest.
    std::size_t skip = 0;
    const LogIndex last = storage_.last_index();
    while (skip < m.entries.size() && !planted(PlantedBug::truncate_matching_entries)) {
      const EntryView& e = m.entries[skip];
      if (e.index > last || term_at(e.index) != e.term) {
        break;
      }
      ++skip;
    }
    if (skip < m.entries.size()) {
      const LogIndex from = m.entries[skip].index;
      bool config_changed = from <= membership_index_;  // truncated
      if (from <= last) {
        assert(from > commit_);
        // The durable copy of the truncated entries no longer matches our log.
        durable_last_ = std::min(durable_last_, from - 1);
        record_write(storage_.truncate_suffix(from));
        note_log_write(last_write_seq_);
      }
      record_write(storage_.append(m.entries.subspan(skip)));
      note_log_write(last_write_seq_);
      note_persist_sample(m.entries.size() - skip);
      for (std::size_t i = skip; i < m.entries.size() && !config_changed; ++i) {
        config_changed = m.entries[i].type == EntryType::config;
      }
      if (config_changed) {
        refresh_membership();  // in force once in the log (thesis 4.1)
        if (stopped_) {
          return;
        }
      }
    }
    const LogIndex last_new = m.index + m.entries.size();
    if (m.commit > commit_) {
      set_commit(std::min(m.commit, last_new));
    }
    r.index = last_new;
    if (planted(PlantedBug::ack_before_durable)) {
      send(r);
    } else {
      send_when_durable(r);
    }
  }

  bool matches(LogIndex index, Term term) const noexcept {
    const auto t = storage_.term_at(index);
    return t && t.value() == term;
  }

  void on_append_response(const Message& m, time_point now) {
    if (role_ != Role::leader) {
      return;
    }
    const std::size_t slot = slot_of(m.from);
    record_ack(slot, m);
    detail::Progress& p = progress_[slot];
    if (m.reject) {
      // A rejection answers one particular append; ignore it when a later answer already
      // moved us past it (replicate: it rejects an index we know matches; probe: it is not the
      // answer to the outstanding probe).
      const bool stale =
          p.state == detail::ProgressState::replicate ? m.index <= p.match : m.index + 1 != p.next;
      if (stale) {
        return;
      }
      LogIndex next = std::min(p.next - 1, m.reject_hint == 0 ? p.next - 1 : m.reject_hint);
      if (m.log_term != 0) {
        // Skip every entry of the follower's conflicting term we also hold (section 5.3).
        LogIndex i = std::min(m.index, storage_.last_index());
        while (i > p.match && i >= storage_.first_index() && term_at(i) > m.log_term) {
          --i;
        }
        next = std::min(next, i + 1);
      }
      if (m.log_term == 0 && m.reject_hint != 0 && m.reject_hint <= p.match) {
        // Its log ends before entries it acknowledged: its storage lost acknowledged writes
        // (something Raft cannot mask). Believe the log it has and send the entries again;
        // holding on to the old match would send the same append, and take the same refusal,
        // for ever at network speed.
        p.match = m.reject_hint - 1;
        next = std::min(next, m.reject_hint);
      }
      p.next = std::max(next, p.match + 1);
      p.state = detail::ProgressState::probe;
      p.probe_sent = false;
      p.inflight.reset();
      return;
    }
    if (m.index > p.match) {
      p.match = m.index;
    }
    if (p.next <= p.match) {
      p.next = p.match + 1;
    }
    p.inflight.free_through(m.index);
    if (p.state == detail::ProgressState::probe) {
      p.state = detail::ProgressState::replicate;
      p.probe_sent = false;
      p.next = p.match + 1;
      p.inflight.reset();
    }
    maybe_commit();
    if (transfer_ != nullptr && slot == transfer_target_) {
      maybe_send_timeout_now();
    }
    (void)now;
  }

  void on_heartbeat(const Message& m, time_point now) {
    follow(m.from, now);
    if (m.commit > commit_) {
      set_commit(std::min(m.commit, storage_.last_index()));
    }
    Message r = base_message(MessageType::heartbeat_response, m.from);
    r.seq = m.seq;
    r.sent_at = m.sent_at;
    send(r);
  }

  void on_heartbeat_response(const Message& m, time_point) {
    if (role_ != Role::leader) {
      return;
    }
    const std::size_t slot = slot_of(m.from);
    record_ack(slot, m);
    detail::Progress& p = progress_[slot];
    p.probe_sent = false;  // resume probing
    if (p.match < storage_.last_index()) {
      // The follower is behind although we may think everything is on its way: an append may
      // have been lost. Send one, empty if need be; a follower missing entries rejects it, which
      // sends us back to probing from where it really is (as etcd does).
      if (p.state == detail::ProgressState::replicate && p.inflight.full()) {
        p.inflight.free_first();
      }
      send_append(slot, /*even_if_empty=*/true);
    }
  }

  // A response in our term from a voter: it reset its election timer no earlier than we sent
  // the request it answers (lesson 11), and it confirms every ReadIndex round up to m.seq.
  void record_ack(std::size_t slot, const Message& m) {
    if (m.reject && m.type == MessageType::heartbeat_response) {
      return;
    }
    tracker_.record(m.from, planted(PlantedBug::lease_anchor_at_receive)
                                ? clock_.now()
                                : from_nanos<clock_type>(m.sent_at));
    detail::Progress& p = progress_[slot];
    if (m.seq > p.acked_seq) {
      p.acked_seq = m.seq;
      confirm_reads(quorum_seq());
    }
  }

  std::uint64_t quorum_seq() const noexcept {
    std::array<std::uint64_t, kMaxPeers> acked{};
    for (std::size_t i = 0; i < members_; ++i) {
      acked[i] =
          i == self_slot_ ? std::numeric_limits<std::uint64_t>::max() : progress_[i].acked_seq;
    }
    return quorum_value(acked, std::uint64_t{0});
  }

  void maybe_commit() {
    std::array<LogIndex, kMaxPeers> match{};
    for (std::size_t i = 0; i < members_; ++i) {
      match[i] = i != self_slot_                           ? progress_[i].match
                 : planted(PlantedBug::ack_before_durable) ? storage_.last_index()
                                                           : durable_last_;
    }
    const LogIndex quorum = quorum_value(match, LogIndex{0});
    // Only an entry of the current term commits by counting replicas (section 5.4.2).
    if (quorum > commit_ &&
        (term_at(quorum) == term_ || planted(PlantedBug::commit_previous_term_by_counting))) {
      set_commit(quorum);
    }
  }

  void set_commit(LogIndex commit) {
    if (commit <= commit_) {
      return;
    }
    if (role_ == Role::leader) {
      // Uncommitted bytes of this term's entries now committed.
      for (LogIndex i = std::max(commit_ + 1, noop_index_); i <= commit; ++i) {
        const std::uint64_t size = storage_.entry(i).payload.size();
        uncommitted_bytes_ -= std::min(uncommitted_bytes_, size);
      }
    }
    commit_ = commit;
    if (role_ == Role::leader && !committed_in_term_ && commit_ >= noop_index_) {
      committed_in_term_ = true;
      start_waiting_reads();
    }
    apply_committed();
  }

  // -------------------------------------------------------------------------------------------
  // Applying (section 5.3: apply in order once committed)
  // -------------------------------------------------------------------------------------------

  void apply_committed() {
    bool config_applied = false;
    while (applied_ < commit_ && applied_ < storage_.last_index()) {
      const LogIndex index = applied_ + 1;
      const EntryView e = storage_.entry(index);
      std::uint64_t result = 0;
      if (e.type == EntryType::normal) {
        result = machine_.apply(index, e.payload);
      } else if (e.type == EntryType::config) {
        // Decoded when it entered the log: it is valid.
        if (auto m = decode_config(e.payload)) {
          applied_membership_ = std::move(*m);
          applied_membership_index_ = index;
          ++stats_.config_entries_applied;
          count(Counter::membership_changes);
          if (logs(LogLevel::info)) {
            LogRecord r =
                log_record(LogLevel::info, "membership_changed", "a configuration entry applied");
            r.with(LogField::u("index", index))
                .with(LogField::u("voters", applied_membership_.voters.size()))
                .with(LogField::u("outgoing_voters", applied_membership_.outgoing.size()))
                .with(LogField::u("learners", applied_membership_.learners.size()));
            logger_.log(r);
          }
          config_applied = true;
        }
      }
      applied_ = index;
      ++stats_.entries_applied;
      count(Counter::entries_applied);
      published_applied_.store(applied_, std::memory_order_release);
      complete_proposals(e, result);
    }
    if (role_ == Role::leader && applied_ >= noop_index_) {
      publish_leader_term();
    }
    complete_applied_reads();
    maybe_compact();
    if (role_ == Role::leader) {
      advance_change();
      if (config_applied && membership_index_ == applied_membership_index_ &&
          !membership_.is_voter(config_.self)) {
        step_down_removed(clock_.now());
      }
    }
  }

  void complete_proposals(const EntryView& e, std::uint64_t result) {
    while (!proposals_.empty() && proposals_.front().index_ <= e.index) {
      ProposeOperation& op = proposals_.front();
      finish(op);
      if (op.index_ == e.index && op.term_ == e.term) {
        op.done_(ProposeResult{e.index, e.term, result});
      } else {
        op.done_(Error(errc::leadership_lost, leader_));  // overwritten by another leader
      }
    }
  }

  // Drops applied entries beyond the retention tail, but never one that a follower heard from
  // within election_timeout_min still needs: without snapshots, a follower whose next entry is
  // gone could never catch up. A new leader, which has heard from no one yet, counts every
  // follower as live until election_timeout_min has passed.
  void maybe_compact() {
    if constexpr (kSnapshots) {
      return;  // compaction follows durable snapshots (snapshot_saved, complete_install)
    }
    const std::uint64_t keep = config_.log_retention_entries;
    if (applied_ <= keep) {
      return;
    }
    LogIndex through = applied_ - keep;
    if (role_ == Role::leader) {
      const time_point now = clock_.now();
      const bool new_leader = now - became_leader_at_ < config_.election_timeout_min;
      for (std::size_t i = 0; i < members_; ++i) {
        if (i == self_slot_) {
          continue;
        }
        const time_point heard = tracker_.last_ack(ids_[i]);
        const bool live = new_leader || (heard != time_point::min() &&
                                         now - heard < config_.election_timeout_min);
        if (live) {
          through = std::min(through, progress_[i].match);
        }
      }
    }
    // The latest applied config entry stays: without a snapshot, a restart recovers the
    // configuration from the log.
    if (applied_membership_index_ != 0) {
      through = std::min(through, applied_membership_index_ - 1);
    }
    if (through >= storage_.first_index() + keep / 4) {
      storage_.compact(through);
    }
  }

  // -------------------------------------------------------------------------------------------
  // Proposals
  // -------------------------------------------------------------------------------------------

  std::optional<Error> refuse_proposal(std::size_t size) const noexcept {
    if (stopped_) {
      return Error(errc::stopped);
    }
    if (size > std::min(config_.max_proposal_bytes, config_.max_uncommitted_bytes)) {
      return Error(errc::too_large, leader_);
    }
    if (role_ != Role::leader) {
      return Error::not_leader(leader_);
    }
    if (transfer_ != nullptr) {
      return Error(errc::transfer_in_progress, config_.self);
    }
    if (uncommitted_bytes_ + size > config_.max_uncommitted_bytes) {
      return Error(errc::overloaded, config_.self);
    }
    return std::nullopt;
  }

  // -------------------------------------------------------------------------------------------
  // ReadIndex (thesis section 6.4; lessons 1 to 3)
  // -------------------------------------------------------------------------------------------

  void enqueue_read(ReadIndexOperation& op, time_point deadline, Queue<ReadIndexOperation>& queue) {
    queue.push_back(op);
    ++pending_reads_;
    arm_deadline(op, deadline);
  }

  // The leader's first commit in its term: reads that waited for it get their read index now.
  void start_waiting_reads() {
    if (!reads_wait_commit_.empty()) {
      const std::uint64_t needs = seq_ + 1;
      while (!reads_wait_commit_.empty()) {
        ReadIndexOperation& op = reads_wait_commit_.front();
        reads_wait_commit_.pop_front();
        op.read_index_ = commit_;
        op.needs_ = needs;
        reads_wait_round_.push_back(op);
      }
      read_round_needed_ = needs;
    }
    for (std::size_t i = 0; i < remote_read_count_; ++i) {
      RemoteRead& r = remote_read(i);
      if (r.awaiting_commit) {
        r.awaiting_commit = false;
        r.read_index = commit_;
        r.needs = seq_ + 1;
        read_round_needed_ = r.needs;
      }
    }
    if (solo_) {
      confirm_reads(std::numeric_limits<std::uint64_t>::max());
    }
  }

  // Every read whose round a quorum has acknowledged is confirmed: local ones wait for apply,
  // forwarded ones are answered. Pops from the fronts only (the queues are in round order).
  void confirm_reads(std::uint64_t quorum) {
    while (!reads_wait_round_.empty() && reads_wait_round_.front().needs_ <= quorum) {
      ReadIndexOperation& op = reads_wait_round_.front();
      reads_wait_round_.pop_front();
      reads_wait_apply_.push_back(op);
      ++stats_.reads_confirmed;
      count(Counter::reads_confirmed);
    }
    while (remote_read_count_ != 0 && !remote_read(0).awaiting_commit &&
           remote_read(0).needs <= quorum) {
      const RemoteRead r = remote_read(0);
      remote_read_head_ = (remote_read_head_ + 1) % remote_reads_.size();
      --remote_read_count_;
      Message m = base_message(MessageType::read_index_response, r.from);
      m.seq = r.batch;
      m.index = r.read_index;
      send(m);
    }
    complete_applied_reads();
  }

  void complete_applied_reads() {
    while (!reads_wait_apply_.empty() && reads_wait_apply_.front().read_index_ <= applied_) {
      ReadIndexOperation& op = reads_wait_apply_.front();
      finish(op);
      op.done_(op.read_index_);
    }
  }

  RemoteRead& remote_read(std::size_t i) noexcept {
    return remote_reads_[(remote_read_head_ + i) % remote_reads_.size()];
  }

  void on_read_index_request(const Message& m) {
    if (role_ != Role::leader || transfer_ != nullptr ||
        remote_read_count_ == remote_reads_.size()) {
      Message r = base_message(MessageType::read_index_response, m.from);
      r.seq = m.seq;
      r.reject = true;
      send(r);
      return;
    }
    RemoteRead& r = remote_read(remote_read_count_++);
    r = RemoteRead{m.from, m.seq, commit_, seq_ + 1, !committed_in_term_};
    if (committed_in_term_) {
      read_round_needed_ = r.needs;
      if (solo_) {
        confirm_reads(std::numeric_limits<std::uint64_t>::max());
      }
    }
  }

  void on_read_index_response(const Message& m) {
    if (role_ != Role::follower || m.from != leader_) {
      return;
    }
    while (!reads_forwarded_.empty() && reads_forwarded_.front().needs_ <= m.seq) {
      ReadIndexOperation& op = reads_forwarded_.front();
      if (m.reject) {
        finish(op);
        op.done_(Error::not_leader(leader_));
        continue;
      }
      reads_forwarded_.pop_front();
      op.read_index_ = m.index;
      reads_wait_apply_.push_back(op);
    }
    complete_applied_reads();
  }

  void fail_reads(errc reason, NodeId hint) {
    for (Queue<ReadIndexOperation>* q :
         {&reads_wait_commit_, &reads_wait_round_, &reads_wait_apply_, &reads_forwarded_}) {
      while (!q->empty()) {
        ReadIndexOperation& op = q->front();
        finish(op);
        op.done_(Error(reason, hint));
      }
    }
    read_round_needed_ = 0;
    forward_batch_pending_ = false;
  }

  void fail_remote_reads() {
    remote_read_count_ = 0;  // the followers' deadlines answer for them
  }

  // -------------------------------------------------------------------------------------------
  // Snapshots (thesis chapter 5): taken a chunk per tick, compacted behind once durable, sent in
  // flow-controlled chunks, installed atomically.
  // -------------------------------------------------------------------------------------------

  // One step of a snapshot being saved (a chunk per tick, so the group's thread never stalls for
  // a whole state), or the start of one that is due.
  void advance_snapshot() {
    if (installing_ || snapshot_unsaved_) {
      return;  // an install owns the storage's pending snapshot; one save at a time
    }
    if (saving_reader_) {
      const std::size_t n = saving_reader_->read(chunk_bytes());
      if (n != 0) {
        storage_.write_snapshot(std::span<const std::byte>(chunk_.data(), n));
        saving_meta_.size += n;
      }
      if (n == chunk_bytes().size()) {
        return;  // more next tick
      }
      saving_reader_.reset();
      record_write(storage_.finish_snapshot());
      push_waiter(last_write_seq_, Waiter::Kind::snapshot_saved).last_index = saving_meta_.index;
      snapshot_unsaved_ = true;
      if (planted(PlantedBug::compact_before_snapshot_durable)) {
        compact_behind(saving_meta_.index);
      }
      release_durable();
      return;
    }
    const bool due =
        snapshot_requested_ ||
        (config_.snapshot_entries != 0 && applied_ - snapshot_index_ >= config_.snapshot_entries &&
         !sending_snapshot());
    if (!due || applied_ <= snapshot_index_) {
      return;
    }
    snapshot_requested_ = false;
    saving_meta_.index = applied_;
    saving_meta_.term = term_at(applied_);
    saving_meta_.membership = applied_membership_;
    saving_meta_.size = 0;
    storage_.begin_snapshot(saving_meta_);
    saving_reader_.emplace(machine_.begin_snapshot());
  }

  // Leader: whether a follower is receiving the current snapshot and acknowledged a chunk within
  // the last two election timeouts. A new snapshot would supersede it and restart the transfer
  // from its first byte, so automatic snapshots wait (under a steady write load they would
  // otherwise come faster than a large transfer completes, and it never would); a follower that
  // stopped answering no longer holds them back.
  bool sending_snapshot() const {
    if (role_ != Role::leader) {
      return false;
    }
    const std::int64_t now = to_nanos<clock_type>(clock_.now());
    const std::int64_t patience =
        2 *
        std::chrono::duration_cast<std::chrono::nanoseconds>(config_.election_timeout_max).count();
    for (std::size_t slot = 0; slot < progress_.size(); ++slot) {
      const detail::Progress& p = progress_[slot];
      if (slot != self_slot_ && p.state == detail::ProgressState::snapshot &&
          p.snap_index == durable_snapshot_.index && p.snap_started &&
          now - p.snap_progress_at < patience) {
        return true;
      }
    }
    return false;
  }

  // The snapshot being saved is durable: it is the one to send, and the log behind it may go.
  void snapshot_saved() {
    snapshot_unsaved_ = false;
    ++stats_.snapshots_taken;
    count(Counter::snapshots_taken);
    if (logs(LogLevel::info)) {
      LogRecord r = log_record(LogLevel::info, "snapshot_taken", "snapshot saved and durable");
      r.with(LogField::u("index", saving_meta_.index));
      logger_.log(r);
    }
    if (saving_meta_.index > snapshot_index_) {
      snapshot_index_ = saving_meta_.index;
      durable_snapshot_ = saving_meta_;
    }
    compact_behind(snapshot_index_);
  }

  // Compacts through `index` less the retention tail (only applied entries).
  void compact_behind(LogIndex index) {
    const std::uint64_t keep = config_.log_retention_entries;
    if (index <= keep) {
      return;
    }
    const LogIndex through = std::min(index - keep, applied_);
    if (through >= storage_.first_index()) {
      storage_.compact(through);
    }
  }

  // Rebuilds the state machine from the storage's snapshot (construction). Throws
  // std::system_error (corrupt_storage) when the state machine refuses its bytes.
  void restore_machine(const SnapshotMeta& meta) {
    if (!restore_from_storage(meta)) {
      throw std::system_error(
          make_error_code(errc::corrupt_storage),
          "RaftGroup: the state machine refused snapshot " + std::to_string(meta.index));
    }
  }

  bool restore_from_storage(const SnapshotMeta& meta) {
    machine_.begin_restore();
    for (std::uint64_t offset = 0; offset < meta.size;) {
      const std::size_t n = storage_.read_snapshot(offset, chunk_bytes());
      if (n == 0 || !machine_.restore_chunk(std::span<const std::byte>(chunk_.data(), n))) {
        machine_.abort_restore();
        return false;
      }
      offset += n;
    }
    return machine_.finish_restore();
  }

  // The part of chunk_ that holds snapshot bytes when saving or restoring.
  std::span<std::byte> chunk_bytes() noexcept {
    return std::span<std::byte>(chunk_.data(),
                                static_cast<std::size_t>(config_.snapshot_chunk_bytes));
  }

  // A chunk's snapshot bytes: the first chunk (a config entry) has the configuration ahead of
  // them.
  static std::span<const std::byte> chunk_data(const EntryView& e) noexcept {
    if (e.type != EntryType::config) {
      return e.payload;
    }
    if (e.payload.size() < detail::kMembershipHeadBytes) {
      return {};
    }
    return e.payload.subspan(detail::encoded_size_at(e.payload));
  }

  // Leader: the follower in `slot` needs the snapshot. Sends chunks of the newest durable one
  // while fewer than snapshot_window are unacknowledged; a newer snapshot than the one being
  // sent restarts the transfer from its first byte (the follower drops the old one).
  void send_snapshot_chunks(std::size_t slot) {
    detail::Progress& p = progress_[slot];
    if (snapshot_index_ == 0) {
      return;  // nothing to send: the log still holds everything (no compaction without one)
    }
    if (snapshot_unsaved_ || install_finishing_) {
      // The storage reads the newest finished snapshot, which is not durable_snapshot_ until
      // its write is durable: wait for that (the heartbeat retries) rather than send bytes of
      // one snapshot under the name of another.
      return;
    }
    if (p.snap_index != durable_snapshot_.index) {
      p.snap_index = durable_snapshot_.index;
      p.snap_sent = 0;
      p.snap_acked = 0;
      p.snap_rewound = ~std::uint64_t{0};
      p.snap_started = false;
      p.snap_progress_at = to_nanos<clock_type>(clock_.now());
      p.inflight.reset();
    }
    const std::uint64_t size = durable_snapshot_.size;
    const std::uint64_t window = config_.snapshot_chunk_bytes * config_.snapshot_window;
    while ((!p.snap_started || p.snap_sent < size) && p.snap_sent - p.snap_acked < window) {
      // One entry a chunk; the first (a config entry) carries the configuration ahead of its
      // bytes.
      std::size_t head = 0;
      if (p.snap_sent == 0) {
        head = detail::encode_membership(durable_snapshot_.membership, chunk_.data());
      }
      const std::size_t n = storage_.read_snapshot(
          p.snap_sent, std::span<std::byte>(chunk_.data() + head, config_.snapshot_chunk_bytes));
      Message m = base_message(MessageType::snapshot, ids_[slot]);
      m.index = durable_snapshot_.index;
      m.log_term = durable_snapshot_.term;
      m.seq = p.snap_sent;   // the offset of this chunk
      m.reject_hint = size;  // the whole snapshot's size
      m.commit = commit_;
      m.sent_at = to_nanos<clock_type>(clock_.now());
      const EntryView view{durable_snapshot_.term, m.index + 1,
                           head != 0 ? EntryType::config : EntryType::normal,
                           std::span<const std::byte>(chunk_.data(), head + n)};
      m.entries = std::span<const EntryView>(&view, 1);
      send(m);
      ++stats_.snapshot_chunks_sent;
      count(Counter::snapshot_chunks_sent);
      p.snap_started = true;
      p.snap_sent += n;
      if (n == 0) {
        break;  // an empty snapshot: one message says it all
      }
    }
  }

  // Leader, at each heartbeat: a transfer that made no progress since the last one resends
  // from the follower's last acknowledged byte (chunks lost).
  void retry_stalled_snapshot(std::size_t slot) {
    detail::Progress& p = progress_[slot];
    const bool held_back = std::exchange(p.snap_done_recently, false);
    if (p.state != detail::ProgressState::snapshot) {
      return;
    }
    if (held_back) {
      send_snapshot_chunks(slot);
      return;
    }
    if (p.snap_acked == p.snap_acked_at_heartbeat && p.snap_sent > p.snap_acked) {
      // No progress for a heartbeat: the chunks in flight are lost. Resend from the last
      // acknowledged offset, and let the next answer rewind further (a follower that started
      // over is behind even that).
      p.snap_sent = p.snap_acked;
      p.snap_started = p.snap_acked != 0;
      p.snap_rewound = ~std::uint64_t{0};
    }
    p.snap_acked_at_heartbeat = p.snap_acked;
  }

  // Leader: a follower's answer to a chunk: how far it has received, or that it is done.
  void on_snapshot_response(const Message& m) {
    if (role_ != Role::leader) {
      return;
    }
    detail::Progress& p = progress_[slot_of(m.from)];
    if (m.reject_hint == kSnapshotDone) {
      // Installed (or it already held everything up to m.index): replicate from there.
      p.snap_done_recently = true;
      if (m.index > p.match) {
        p.match = m.index;
      }
      p.next = std::max(p.next, p.match + 1);
      if (p.state == detail::ProgressState::snapshot) {
        p.state = detail::ProgressState::probe;
        p.probe_sent = false;
        p.inflight.reset();
        p.snap_index = 0;
      }
      maybe_commit();
      return;
    }
    if (p.state != detail::ProgressState::snapshot || m.index != p.snap_index) {
      return;  // about another transfer
    }
    if (m.reject && m.seq < p.snap_sent && m.seq != p.snap_rewound) {
      // It is missing bytes from m.seq on (a chunk lost, or it started over): resend from there,
      // once per such offset (the answers to the chunks after a gap all name the same one). An
      // answer without reject only acknowledges: the chunks after it are still on their way.
      p.snap_sent = m.seq;
      p.snap_acked = m.seq;
      p.snap_started = m.seq != 0;
      p.snap_rewound = m.seq;
      return;
    }
    // Acknowledged bytes never exceed those sent (a late answer from before a rewind may name
    // more: the follower has them, so sending resumes there).
    if (m.seq > p.snap_acked) {
      p.snap_acked = m.seq;
      p.snap_progress_at = to_nanos<clock_type>(clock_.now());
    }
    p.snap_sent = std::max(p.snap_sent, p.snap_acked);
  }

  // Follower: a chunk of the leader's snapshot.
  void on_snapshot(const Message& m, time_point now) {
    follow(m.from, now);
    Message r = base_message(MessageType::snapshot_response, m.from);
    r.index = m.index;
    if (m.index <= commit_) {
      // Everything it covers is committed here already (an earlier install, or the log): say so.
      r.index = commit_;
      r.reject_hint = kSnapshotDone;
      send_when_durable(r);
      return;
    }
    if constexpr (!kSnapshots) {
      send(r);  // cannot install: received nothing
      return;
    } else {
      if (installing_ && (install_meta_.index != m.index || install_meta_.term != m.log_term ||
                          install_meta_.size != m.reject_hint)) {
        if (install_finishing_ || m.seq != 0) {
          r.seq = 0;  // a newer snapshot: from its first byte, once this one is done or dropped
          r.reject = true;
          send(r);
          return;
        }
        storage_.abort_snapshot();  // superseded: the old state stays until an install finishes
        installing_ = false;
      }
      if (!installing_) {
        if (m.seq != 0) {
          r.seq = 0;  // nothing of it here: from its first byte
          r.reject = true;
          send(r);
          return;
        }
        begin_install(m);
      }
      install_from_ = m.from;
      if (!install_finishing_ && m.seq == install_received_ && !m.entries.empty()) {
        const auto bytes = chunk_data(m.entries[0]);
        storage_.write_snapshot(bytes);
        install_received_ += bytes.size();
      } else if (!install_finishing_ && m.seq > install_received_) {
        r.reject = true;  // a gap before this chunk: resend from r.seq
      }
      if (!install_finishing_ && install_received_ >= install_meta_.size) {
        install_finishing_ = true;
        record_write(storage_.finish_snapshot());
        push_waiter(last_write_seq_, Waiter::Kind::snapshot_installed);
        return;  // the answer goes once it is installed
      }
      r.seq = install_received_;
      send(r);
    }
  }

  // Drops a snapshot being received whose sender moved on (a new leader that replicates by
  // appends, or this node campaigning): left in place, it would hold the storage's snapshot slot
  // and keep this node from taking snapshots of its own for good. One already finishing stays.
  void drop_partial_install() {
    if (installing_ && !install_finishing_) {
      storage_.abort_snapshot();
      installing_ = false;
    }
  }

  void begin_install(const Message& m) {
    if (saving_reader_ || snapshot_unsaved_) {
      // A save of our own in progress gives way (its storage slot is the install's now).
      if (saving_reader_) {
        saving_reader_.reset();
        storage_.abort_snapshot();
      }
    }
    install_meta_.index = m.index;
    install_meta_.term = m.log_term;
    install_meta_.size = m.reject_hint;
    // Into the lists install_meta_ already has: installs allocate nothing once warm. A first
    // chunk without a configuration that decodes is malformed: keep what we know.
    if (m.entries.empty() || m.entries[0].type != EntryType::config ||
        !detail::decode_membership_into(m.entries[0].payload, 64, install_meta_.membership) ||
        install_meta_.membership.validate(kMaxPeers)) {
      install_meta_.membership = applied_membership_;
    }
    storage_.begin_snapshot(install_meta_);
    installing_ = true;
    install_finishing_ = false;
    install_received_ = 0;
  }

  // Follower: the received snapshot is durable. Unless the log already brought this node that
  // far, the state machine is rebuilt from it in one step and the log restarts after it (kept
  // where it agrees with the snapshot's last entry).
  void complete_install() {
    installing_ = false;
    install_finishing_ = false;
    const LogIndex index = install_meta_.index;
    if (index > snapshot_index_) {
      snapshot_index_ = index;
      durable_snapshot_ = install_meta_;
    }
    if (index > applied_ && index > commit_) {
      if (!restore_from_storage(install_meta_)) {
        fail_stop(make_error_code(errc::corrupt_storage));
        return;
      }
      if (matches(index, install_meta_.term)) {
        storage_.compact(index);
      } else {
        const LogIndex from = storage_.first_index();
        if (from <= storage_.last_index()) {
          durable_last_ = std::min(durable_last_, from - 1);
        }
        record_write(storage_.reset_log(index, install_meta_.term));
        note_log_write(last_write_seq_);
      }
      commit_ = index;
      applied_ = index;
      applied_membership_ = install_meta_.membership;
      applied_membership_index_ = index;
      refresh_membership();
      if (stopped_) {
        return;
      }
      published_applied_.store(applied_, std::memory_order_release);
      persist_hard_state();
      ++stats_.snapshots_installed;
      count(Counter::snapshots_installed);
      if (logs(LogLevel::info)) {
        LogRecord r =
            log_record(LogLevel::info, "snapshot_installed", "snapshot from the leader restored");
        r.with(LogField::u("index", index)).with(LogField::u("leader", leader_));
        logger_.log(r);
      }
      complete_applied_reads();
    }
    compact_behind(snapshot_index_);
    Message r = base_message(MessageType::snapshot_response, install_from_);
    r.index = std::max(commit_, index);
    r.reject_hint = kSnapshotDone;
    send_when_durable(r);
  }

  // -------------------------------------------------------------------------------------------
  // Transfer (thesis section 3.10)
  // -------------------------------------------------------------------------------------------

  // Ends a transfer once the outcome is known: success when `new_leader` is its target.
  void conclude_transfer(NodeId new_leader, errc otherwise) {
    TransferOperation& op = *transfer_;
    transfer_ = nullptr;
    finish(op);
    const bool handed_over = new_leader != kNoNode && new_leader == ids_[transfer_target_];
    op.done_(handed_over ? Result<void>{} : Result<void>(Error(otherwise, new_leader)));
  }

  // A follower asks to lead (campaign() with CampaignMode::transfer_from_leader): served as a
  // transfer of our own, unless one is under way already or it is not a voter.
  void on_transfer_request(const Message& m) {
    const std::size_t slot = slot_of(m.from);
    if (role_ != Role::leader || transfer_ != nullptr || requested_transfer_.pending() ||
        slot == kNoSlot || membership_index_ > commit_ || (incoming_ & (Mask{1} << slot)) == 0) {
      return;
    }
    transfer_leadership(requested_transfer_, m.from);
  }

  static void requested_transfer_done(void*, Result<void>) noexcept {}

  void maybe_send_timeout_now() {
    if (transfer_ == nullptr || timeout_now_sent_) {
      return;
    }
    if (progress_[transfer_target_].match == storage_.last_index()) {
      send(base_message(MessageType::timeout_now, ids_[transfer_target_]));
      timeout_now_sent_ = true;
    }
  }

  // -------------------------------------------------------------------------------------------
  // Deadlines (lesson 1)
  // -------------------------------------------------------------------------------------------

  void arm_deadline(detail::OperationBase& op, time_point deadline) {
    if (deadline == time_point::max()) {
      deadline = clock_.now() + config_.default_operation_timeout;
    }
    op.deadline_ = to_nanos<clock_type>(deadline);
    // Deadlines mostly arrive in order (most callers use the same timeout): append in O(1) when
    // this one is no earlier than any ever indexed, else insert in O(log n).
    if (op.deadline_ >= latest_deadline_) {
      latest_deadline_ = op.deadline_;
      deadlines_.push_back(op);
    } else {
      deadlines_.insert(op);
    }
  }

  // Unlinks a completed operation from its queue and the deadline index, O(1) and O(log n).
  void finish(detail::OperationBase& op) noexcept {
    detail::QueueHook& queued = op;
    if (queued.is_linked()) {
      queued.unlink();
    }
    if (static_cast<detail::DeadlineHook&>(op).is_linked()) {
      deadlines_.erase(deadlines_.iterator_to(op));
    }
    if (op.kind_ == detail::OperationKind::read) {
      --pending_reads_;
    }
  }

  void expire_operations(time_point now) {
    const std::int64_t now_ns = to_nanos<clock_type>(now);
    while (!deadlines_.empty() && deadlines_.begin()->deadline_ <= now_ns) {
      detail::OperationBase& op = *deadlines_.begin();
      complete_with_error(op, Error(errc::timed_out, leader_));
    }
  }

  void complete_with_error(detail::OperationBase& op, Error error) {
    finish(op);
    switch (op.kind_) {
      case detail::OperationKind::propose:
        if (error.code == errc::timed_out) {
          count(Counter::proposals_refused_timed_out);
        }
        static_cast<ProposeOperation&>(op).done_(error);
        break;
      case detail::OperationKind::read:
        static_cast<ReadIndexOperation&>(op).done_(error);
        break;
      case detail::OperationKind::transfer:
        transfer_ = nullptr;
        publish_leader_term();
        static_cast<TransferOperation&>(op).done_(error);
        break;
      case detail::OperationKind::membership:
        change_ = nullptr;
        static_cast<MembershipOperation&>(op).done_(error);
        break;
    }
  }

  // -------------------------------------------------------------------------------------------
  // CheckQuorum, stop
  // -------------------------------------------------------------------------------------------

  // Whether a quorum has acknowledged a request sent within the last election_timeout_min.
  bool quorum_active(time_point now) const noexcept {
    const time_point anchor = std::max(tracker_.quorum_ack(), became_leader_at_);
    return now - anchor < config_.election_timeout_min;
  }

  void fail_stop(std::error_code cause) {
    if (!stopped_) {
      failure_ = cause;
      count(Counter::storage_failures);
      if (logs(LogLevel::error)) {
        const std::string what = cause.message();  // a failure path: allocating is fine here
        LogRecord r = log_record(LogLevel::error, "storage_failed",
                                 "the storage failed: the group stops for good");
        r.with(LogField::t("category", cause.category().name()))
            .with(LogField::i("code", cause.value()))
            .with(LogField::t("error", what));
        logger_.log(r);
      }
    }
    stop_with(errc::storage_failure);
  }

  void stop_with(errc reason) {
    if (stopped_) {
      return;
    }
    if (role_ == Role::leader) {
      leave_leadership(reason, kNoNode);
    }
    stopped_ = true;
    role_ = Role::follower;
    published_term_.store(0, std::memory_order_release);
    fail_reads(reason, kNoNode);
    while (!deadlines_.empty()) {
      complete_with_error(*deadlines_.begin(), Error(reason));
    }
  }

  // -------------------------------------------------------------------------------------------
  // State. Fields are owned by the group's thread unless marked otherwise.
  // -------------------------------------------------------------------------------------------

  const RaftConfig config_;
  clock_type& clock_;
  transport_type& transport_;
  storage_type& storage_;
  state_machine_type& machine_;
  random_type random_;

  // Membership: slot i is member ids_[i] (this node always has a slot, member or not); the masks
  // mark the slots of each set.
  std::array<NodeId, kMaxPeers> ids_{};
  std::size_t members_ = 0;
  std::size_t self_slot_ = 0;
  Mask incoming_ = 0;              // voters of the configuration in force (C_new when joint)
  Mask outgoing_ = 0;              // voters of the configuration being left; 0 unless joint
  Mask voting_ = 0;                // incoming_ | outgoing_
  bool solo_ = false;              // this node alone is a quorum
  Membership membership_;          // in force: the latest config entry in the log, or the start
  LogIndex membership_index_ = 0;  // ... and its index (0: from RaftConfig)
  Membership prior_membership_;    // the configuration before membership_ in the log
  Membership applied_membership_;  // the latest config at or before applied_
  LogIndex applied_membership_index_ = 0;
  MembershipOperation* change_ = nullptr;  // leader: the change under way
  bool removed_notice_ = false;  // a member said this node is not in its committed configuration
  LogIndex removed_at_ = 0;      // ... the config entry it named
  std::vector<std::byte> config_scratch_;  // an encoded config entry being appended

  // Persistent state (Figure 2), mirrored in storage.
  Term term_ = 0;
  NodeId vote_ = kNoNode;

  // Volatile state.
  Role role_ = Role::follower;
  NodeId leader_ = kNoNode;
  LogIndex commit_ = 0;
  LogIndex applied_ = 0;
  LogIndex durable_last_ = 0;  // last index of the durable log prefix
  WriteSeq last_write_seq_ = 0;
  WriteSeq durable_seen_ = 0;  // the newest durable_seq() read (WriteSeq rule 3)
  bool storage_contract_broken_ = false;
  std::error_code failure_;
  bool stopped_ = false;
  // Inputs that arrived while another ran (as_input()).
  std::uint32_t input_depth_ = 0;
  bool deferred_tick_ = false;
  bool deferred_persisted_ = false;
  bool deferred_flush_ = false;
  detail::DeferredMessages deferred_;

  // Timers.
  time_point started_at_{};
  time_point election_deadline_{};
  time_point leader_contact_{};      // when a leader was last heard from (kept across terms)
  NodeId contact_leader_ = kNoNode;  // ... and which
  time_point next_heartbeat_{};      // leader only
  time_point became_leader_at_{};    // leader only

  // Elections.
  Mask votes_granted_ = 0;
  Mask votes_rejected_ = 0;

  // Leader only: replication. Valid while role_ == leader.
  std::array<detail::Progress, kMaxPeers> progress_{};
  LogIndex noop_index_ = std::numeric_limits<LogIndex>::max();
  bool committed_in_term_ = false;
  std::uint64_t uncommitted_bytes_ = 0;
  std::uint64_t seq_ = 0;  // stamps every append and heartbeat round
  Tracker tracker_;
  std::vector<EntryView> entry_scratch_;

  // Durability waiters: a ring in write order.
  std::vector<Waiter> waiters_;
  std::size_t waiter_head_ = 0;
  std::size_t waiter_count_ = 0;

  // Operations (caller-owned, intrusive).
  Queue<ProposeOperation> proposals_;
  Queue<ReadIndexOperation> reads_wait_commit_;  // leader, before its first commit in the term
  Queue<ReadIndexOperation> reads_wait_round_;   // leader, waiting for a heartbeat quorum
  Queue<ReadIndexOperation> reads_wait_apply_;   // confirmed, waiting for apply
  Queue<ReadIndexOperation> reads_forwarded_;    // follower, forwarded to the leader
  DeadlineIndex deadlines_;
  std::int64_t latest_deadline_ = std::numeric_limits<std::int64_t>::min();  // >= every indexed
  std::uint32_t pending_reads_ = 0;
  std::uint64_t read_round_needed_ = 0;  // leader: a round with this seq must be sent
  std::uint64_t next_batch_ = 1;         // follower: the batch that next forwarded reads join
  bool forward_batch_pending_ = false;
  std::vector<RemoteRead> remote_reads_;  // leader: ring of forwarded batches, in arrival order
  std::size_t remote_read_head_ = 0;
  std::size_t remote_read_count_ = 0;

  // Transfer.
  TransferOperation* transfer_ = nullptr;
  TransferOperation requested_transfer_{Completion<void>{&requested_transfer_done, nullptr}};
  std::size_t transfer_target_ = 0;
  bool timeout_now_sent_ = false;
  Term lease_revoked_term_ = 0;

  // Snapshots (only used when kSnapshots).
  static constexpr LogIndex kSnapshotDone = 1;  // snapshot_response.reject_hint: installed
  using SnapshotReader = typename detail::SnapshotReaderOf<state_machine_type, kSnapshots>::type;
  std::vector<std::byte> chunk_;   // snapshot_chunk_bytes: saving, sending, restoring
  LogIndex snapshot_index_ = 0;    // the newest durable snapshot's index
  SnapshotMeta durable_snapshot_;  // ... and the rest of it
  bool snapshot_requested_ = false;
  std::optional<SnapshotReader> saving_reader_;  // a save under way
  SnapshotMeta saving_meta_;
  bool snapshot_unsaved_ = false;   // finished, not yet durable
  bool installing_ = false;         // a leader's snapshot is being received
  bool install_finishing_ = false;  // ... all of it, waiting for durability
  SnapshotMeta install_meta_;
  std::uint64_t install_received_ = 0;
  NodeId install_from_ = kNoNode;

  // Leader loss (lesson 7).
  lease::LeaderLossList leader_losses_;

  // Published for other threads (LeaseProvider).
  alignas(64) std::atomic<Term> published_term_{0};
  std::atomic<NodeId> published_leader_{kNoNode};
  std::atomic<LogIndex> published_applied_{0};

  Stats stats_;
  [[no_unique_address]] logger_type logger_;
  [[no_unique_address]] metrics_type metrics_;
  const Message* cause_message_ = nullptr;  // the message being stepped (logs)
  std::string_view cause_;                  // else what else the group is reacting to (logs)
  WriteSeq persist_sample_seq_ = 0;         // the log write being timed (0: none)
  time_point persist_sample_at_{};
};

}  // namespace tenure::raft
