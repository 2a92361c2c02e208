// RaftConfig: everything a RaftGroup is configured with, validated up front.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <system_error>
#include <vector>

#include <raft/errc.hpp>
#include <raft/membership.hpp>
#include <raft/message.hpp>
#include <raft/types.hpp>

namespace tenure::raft {

/// The configuration of one RaftGroup. Durations are measured on the group's Clock.
struct RaftConfig {
  /// This node: one of `voters` or `learners`, or neither when both are empty (joining).
  NodeId self = kNoNode;
  /// Which group this is, stamped on every message for transports that multiplex groups.
  GroupId group = 0;
  /// The configuration the group starts with when its storage holds none (a first start): its
  /// voters and learners. Every member started this way must be given the same lists. Once a
  /// snapshot or a config entry has been stored, the configuration recovered from them wins and
  /// these lists are ignored (docs/raft.md, "Membership changes").
  ///
  /// Both empty: the node joins an existing group. It knows no members, never campaigns, and
  /// waits for a leader to replicate the log (or a snapshot) to it after the leader added it
  /// with RaftGroup::change_membership.
  std::vector<NodeId> voters;
  std::vector<NodeId> learners;

  /// A follower campaigns after a random timeout in [election_timeout_min, election_timeout_max)
  /// without hearing from a leader (paper section 5.2). The lease layer derives its lease from
  /// the minimum; voters refuse other candidates for that long after hearing from a leader.
  std::chrono::nanoseconds election_timeout_min{std::chrono::milliseconds(150)};
  std::chrono::nanoseconds election_timeout_max{std::chrono::milliseconds(300)};
  /// How often a leader sends heartbeats (and how often a probing follower is retried).
  std::chrono::nanoseconds heartbeat_interval{std::chrono::milliseconds(30)};

  /// Replication flow control: at most this many append messages, and this many payload bytes,
  /// in flight to one follower.
  std::uint32_t max_inflight_messages = 256;
  std::uint64_t max_inflight_bytes = std::uint64_t{32} << 20;
  /// The most payload bytes, and entries, in one append message (a single larger entry still
  /// goes alone).
  std::uint64_t max_message_bytes = std::uint64_t{1} << 20;
  std::uint32_t max_entries_per_message = 4096;

  /// Proposals are refused with errc::overloaded while the leader holds more uncommitted payload
  /// bytes than this.
  std::uint64_t max_uncommitted_bytes = std::uint64_t{64} << 20;
  /// The largest payload of one proposal; a larger one (or one larger than
  /// max_uncommitted_bytes, which could never be accepted) is refused with errc::too_large. An
  /// append carrying one such entry must fit the transport's frame limit when it reports one
  /// (RaftGroup checks at construction).
  std::uint64_t max_proposal_bytes = std::uint64_t{8} << 20;
  /// Pending ReadIndex reads, local and forwarded, at most (lesson 2); past it, overloaded.
  std::uint32_t max_pending_reads = 65536;
  /// Read batches forwarded by followers that a leader holds at once; past it, rejected.
  std::uint32_t max_remote_read_batches = 64;
  /// The bound on an operation whose caller gives no deadline (lesson 1).
  std::chrono::nanoseconds default_operation_timeout{std::chrono::seconds(5)};
  /// Entries kept in the log behind the compaction point, for followers that are only a little
  /// behind (they catch up by appends rather than a whole snapshot). With snapshots the log is
  /// compacted through the durable snapshot's index less this many; without, through the applied
  /// index less this many, and never past what a live follower still needs.
  std::uint64_t log_retention_entries = 100'000;

  /// Snapshots, when the StateMachine and the Storage support them (SnapshotStateMachine,
  /// SnapshotStorage): one is taken once this many entries have been applied since the last
  /// (0: only on request_snapshot()).
  std::uint64_t snapshot_entries = 100'000;
  /// The bytes read from the state machine per tick while a snapshot is saved, restored per
  /// chunk, and carried by one InstallSnapshot message.
  std::uint64_t snapshot_chunk_bytes = std::uint64_t{1} << 20;
  /// InstallSnapshot chunks in flight to one follower at once (flow control).
  std::uint32_t snapshot_window = 4;

  /// A learner is promoted to voter by a membership change only once its log is within this
  /// many entries of the leader's commit index, so that adding a node never leaves a voter that
  /// cannot yet help commit (and the group's fault tolerance lower while it catches up).
  std::uint64_t learner_catch_up_entries = 1000;

  /// PreVote (thesis section 9.6): a node campaigns only if a majority would vote for it.
  bool pre_vote = true;
  /// CheckQuorum: a leader that has not heard from a quorum within election_timeout_min steps
  /// down.
  bool check_quorum = true;
  /// Seeds the group's random election timeouts. 0: derived from `self` and `group`.
  std::uint64_t random_seed = 0;

  /// errc::invalid_config when a field is out of range or inconsistent with another.
  std::error_code validate(std::size_t max_peers) const {
    const auto bad = make_error_code(errc::invalid_config);
    if (self == kNoNode) {
      return bad;
    }
    if (!voters.empty() || !learners.empty()) {
      const Membership initial{voters, {}, learners};
      if (initial.validate(max_peers) || !initial.contains(self)) {
        return bad;
      }
    }
    if (election_timeout_min.count() <= 0 || election_timeout_max <= election_timeout_min ||
        heartbeat_interval.count() <= 0 || heartbeat_interval >= election_timeout_min ||
        default_operation_timeout.count() <= 0) {
      return bad;
    }
    if (max_inflight_messages == 0 || max_inflight_bytes == 0 || max_message_bytes == 0 ||
        max_entries_per_message == 0 || max_uncommitted_bytes == 0 || max_pending_reads == 0 ||
        max_remote_read_batches == 0 || max_proposal_bytes == 0 || snapshot_chunk_bytes == 0 ||
        snapshot_window == 0) {
      return bad;
    }
    return {};
  }
};

}  // namespace tenure::raft
