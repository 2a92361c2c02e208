// The messages Raft peers exchange, as plain values the core reads and writes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include <raft/types.hpp>

namespace tenure::raft {

/// Identifies one Raft group among many sharing a transport (multi-raft).
using GroupId = std::uint64_t;

/// What a log entry carries.
enum class EntryType : std::uint8_t {
  /// A user command, handed to the StateMachine when committed.
  normal = 0,
  /// The entry a new leader appends at the start of its term (Raft paper section 8): committing
  /// it commits everything before it and lets the leader serve reads.
  noop = 1,
  /// A membership change (joint consensus); its payload is an encoded configuration.
  config = 2,
};

/// A log entry seen through a view: the payload lives in storage or in a received frame, and the
/// view is valid only as long as the owner says (see each API).
struct EntryView {
  Term term = 0;
  LogIndex index = 0;
  EntryType type = EntryType::normal;
  std::span<const std::byte> payload;
};

/// Every kind of message. Values are part of the wire format: never renumber, only append.
enum class MessageType : std::uint8_t {
  append = 1,                ///< leader -> follower: entries after (index, log_term), commit
  append_response = 2,       ///< follower -> leader: accepted up to `index`, or reject + hint
  vote = 3,                  ///< candidate -> voter: last log (index, log_term)
  vote_response = 4,         ///< voter -> candidate: granted unless `reject`
  pre_vote = 5,              ///< would-be candidate -> voter, for term + 1, changes no state
  pre_vote_response = 6,     ///< voter -> would-be candidate
  heartbeat = 7,             ///< leader -> follower: commit, no entries
  heartbeat_response = 8,    ///< follower -> leader: echoes seq and sent_at
  timeout_now = 9,           ///< leader -> transfer target: campaign at once
  read_index = 10,           ///< follower -> leader: confirm leadership for batch `seq`
  read_index_response = 11,  ///< leader -> follower: read at `index` for batch `seq`, or reject
  snapshot = 12,             ///< leader -> follower: a chunk of a snapshot (reserved)
  snapshot_response = 13,    ///< follower -> leader (reserved)
  transfer_request = 14,     ///< follower -> its leader: please transfer leadership to me
};

inline constexpr std::uint8_t kMaxMessageType = 14;

/// The enumerator's name ("append"), for logs; "unknown" outside the enumeration.
constexpr std::string_view to_string(MessageType t) noexcept {
  switch (t) {
    case MessageType::append:
      return "append";
    case MessageType::append_response:
      return "append_response";
    case MessageType::vote:
      return "vote";
    case MessageType::vote_response:
      return "vote_response";
    case MessageType::pre_vote:
      return "pre_vote";
    case MessageType::pre_vote_response:
      return "pre_vote_response";
    case MessageType::heartbeat:
      return "heartbeat";
    case MessageType::heartbeat_response:
      return "heartbeat_response";
    case MessageType::timeout_now:
      return "timeout_now";
    case MessageType::read_index:
      return "read_index";
    case MessageType::read_index_response:
      return "read_index_response";
    case MessageType::snapshot:
      return "snapshot";
    case MessageType::snapshot_response:
      return "snapshot_response";
    case MessageType::transfer_request:
      return "transfer_request";
  }
  return "unknown";
}

/// Bits of Message::flags.
enum MessageFlags : std::uint8_t {
  /// vote / pre_vote: the election was started by TimeoutNow (leadership transfer), so voters
  /// grant it even while they have heard from a live leader.
  kFlagTransfer = 1u << 0,
  /// *_vote_response (a reject): the candidate is not a member of the configuration the
  /// responder has committed, the config entry at `index`. A node whose own latest
  /// configuration is no newer stops campaigning: it was removed.
  kFlagNotMember = 1u << 1,
};

/// One message. A single flat struct for every type, as in etcd's raftpb.Message: the fields a
/// type does not use stay zero. Entries are views, valid only during the call that hands the
/// message over (Transport::send copies what it keeps; RaftGroup::step reads them before it
/// returns).
///
/// Field use by type (every message carries type, group, from, to and term; a field a type does
/// not name stays zero):
// clang-format off
/// | type                | index                          | log_term               | commit        | other                                                    |
/// |---------------------|--------------------------------|------------------------|---------------|----------------------------------------------------------|
/// | append              | log index before the entries   | its term               | leader commit | entries; seq, sent_at: the leader's stamp                |
/// | append_response     | match index, or rejected index | conflict term (reject) | -             | reject, reject_hint: where to retry; seq, sent_at echoed |
/// | vote, pre_vote      | candidate's last log index     | its term               | -             | flags: kFlagTransfer                                     |
/// | *_vote_response     | config entry (kFlagNotMember)  | -                      | -             | reject; flags: kFlagNotMember                            |
/// | heartbeat           | -                              | -                      | leader commit | seq, sent_at: the leader's stamp                         |
/// | heartbeat_response  | -                              | -                      | -             | seq, sent_at echoed                                      |
/// | timeout_now         | -                              | -                      | -             | -                                                        |
/// | read_index          | -                              | -                      | -             | seq: the follower's batch id                             |
/// | read_index_response | read index                     | -                      | -             | seq: the batch id; reject                                |
/// | snapshot            | snapshot's last index          | its term               | leader commit | entries: one chunk; seq: its offset; reject_hint: size   |
/// | snapshot_response   | index covered, or commit       | -                      | -             | seq: bytes received; reject (a gap); reject_hint: 1 done |
/// | transfer_request    | -                              | -                      | -             | -                                                        |
// clang-format on
struct Message {
  MessageType type = MessageType::heartbeat;
  std::uint8_t flags = 0;
  bool reject = false;
  GroupId group = 0;
  NodeId from = kNoNode;
  NodeId to = kNoNode;
  Term term = 0;
  LogIndex index = 0;
  Term log_term = 0;
  LogIndex commit = 0;
  LogIndex reject_hint = 0;
  /// A per-leader-term sequence number stamped on every append and heartbeat and echoed in the
  /// response: it tells which heartbeat round a response confirms (ReadIndex batching). For
  /// read_index messages, the follower's batch id.
  std::uint64_t seq = 0;
  /// The leader's clock (nanoseconds) when it sent the request, echoed in the response: the
  /// send-time anchor of the lease (lesson 11). Meaningful only to the node that stamped it.
  std::int64_t sent_at = 0;
  std::span<const EntryView> entries;
};

}  // namespace tenure::raft
