// GroupStatus: what one RaftGroup knows about itself and, as leader, its followers, as a value
// (RaftGroup::status()), with a text and a JSON rendering for an admin endpoint.
#pragma once

#include <array>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <system_error>

#include <raft/message.hpp>
#include <raft/types.hpp>

namespace tenure::raft {

/// The role of a node in its group (Raft paper section 5.1; PreVote, thesis section 9.6).
enum class Role : std::uint8_t { follower, pre_candidate, candidate, leader };

constexpr std::string_view to_string(Role role) noexcept {
  switch (role) {
    case Role::follower:
      return "follower";
    case Role::pre_candidate:
      return "pre_candidate";
    case Role::candidate:
      return "candidate";
    case Role::leader:
      return "leader";
  }
  return "unknown";
}

/// One member as the node sees it. Replication fields (match, next, lag, in flight, ack age) are
/// the leader's view and zero on other nodes.
struct PeerStatus {
  NodeId id = kNoNode;
  bool self = false;
  bool voter = false;  ///< a voter of the configuration in force (either half when joint)
  bool learner = false;
  LogIndex match = 0;     ///< the highest index known to be on the member (durable there)
  LogIndex next = 0;      ///< the next index the leader sends it
  std::uint64_t lag = 0;  ///< the leader's last index minus match
  std::uint32_t inflight_messages = 0;  ///< appends sent and not yet answered
  std::uint64_t inflight_bytes = 0;
  /// Nanoseconds since the member last answered a heartbeat or append of this leader; -1 when
  /// it has not in this term.
  std::int64_t last_ack_age_ns = -1;
  std::string_view replication;  ///< "probe", "replicate", "snapshot" (leader only)
};

/// A snapshot of a RaftGroup's state (RaftGroup::status()): a value, no references into the
/// group, safe to copy to another thread. Allocation: none (the members sit in a fixed array).
struct GroupStatus {
  static constexpr std::size_t kMaxMembers = 64;

  GroupId group = 0;
  NodeId self = kNoNode;
  Role role = Role::follower;
  Term term = 0;
  NodeId leader = kNoNode;  ///< who this node believes leads; kNoNode when it does not know
  NodeId vote = kNoNode;
  LogIndex first_index = 0;
  LogIndex last_index = 0;
  LogIndex commit_index = 0;
  LogIndex applied_index = 0;
  LogIndex snapshot_index = 0;  ///< the newest snapshot (0: none)
  std::uint64_t pending_proposals = 0;
  std::uint64_t pending_reads = 0;  ///< ReadIndex reads waiting (the queue is bounded)
  std::uint64_t uncommitted_bytes = 0;
  /// The term in which this node serves lease reads (0: it does not).
  Term lease_term = 0;
  /// Nanoseconds since the newest heartbeat round a quorum acknowledged was sent (leader; -1
  /// when no round has been acknowledged in this term, 0 for a leader that is a quorum alone).
  /// A lease lasts election_timeout_min (less the clock drift bound) from that send.
  std::int64_t quorum_ack_age_ns = -1;
  bool joint = false;         ///< in a joint configuration
  bool transferring = false;  ///< a leadership transfer is under way
  bool stopped = false;
  std::error_code failure;  ///< why the group stopped itself (RaftGroup::failure())
  std::array<PeerStatus, kMaxMembers> members{};
  std::size_t member_count = 0;

  std::span<const PeerStatus> peers() const noexcept {
    return std::span<const PeerStatus>(members.data(), member_count);
  }
};

namespace detail {
inline void append_number(std::string& out, std::uint64_t v) {
  char digits[24];
  auto r = std::to_chars(digits, digits + sizeof digits, v);
  out.append(digits, r.ptr);
}
inline void append_signed(std::string& out, std::int64_t v) {
  char digits[24];
  auto r = std::to_chars(digits, digits + sizeof digits, v);
  out.append(digits, r.ptr);
}
// Milliseconds with one decimal, or "-" for an unknown age.
inline void append_age(std::string& out, std::int64_t ns) {
  if (ns < 0) {
    out += '-';
    return;
  }
  append_number(out, static_cast<std::uint64_t>(ns / 1'000'000));
  out += '.';
  append_number(out, static_cast<std::uint64_t>(ns / 100'000 % 10));
  out += "ms";
}
}  // namespace detail

/// Appends a human-readable rendering to `out`: one line for the group, one per member.
///
///     group 2 node 3: leader term 8, leader 3, commit 1042 applied 1042 last 1042, lease term 8
///       (quorum ack 12.5ms ago), 0 reads pending, 0 proposals pending
///       member 1 voter match 1042 lag 0 ack 12.5ms ago replicate
inline void append_text(std::string& out, const GroupStatus& s) {
  using detail::append_number;
  out += "group ";
  append_number(out, s.group);
  out += " node ";
  append_number(out, s.self);
  out += ": ";
  out += s.stopped ? std::string_view("stopped") : to_string(s.role);
  out += " term ";
  append_number(out, s.term);
  out += ", leader ";
  if (s.leader == kNoNode) {
    out += "unknown";
  } else {
    append_number(out, s.leader);
  }
  out += ", commit ";
  append_number(out, s.commit_index);
  out += " applied ";
  append_number(out, s.applied_index);
  out += " last ";
  append_number(out, s.last_index);
  if (s.snapshot_index != 0) {
    out += " snapshot ";
    append_number(out, s.snapshot_index);
  }
  out += ", lease ";
  if (s.lease_term == 0) {
    out += "none";
  } else {
    out += "term ";
    append_number(out, s.lease_term);
  }
  if (s.quorum_ack_age_ns >= 0) {
    out += " (quorum ack ";
    detail::append_age(out, s.quorum_ack_age_ns);
    out += " ago)";
  }
  out += ", ";
  append_number(out, s.pending_reads);
  out += " reads pending, ";
  append_number(out, s.pending_proposals);
  out += " proposals pending";
  if (s.joint) {
    out += ", joint configuration";
  }
  if (s.transferring) {
    out += ", transferring leadership";
  }
  if (s.failure) {
    out += ", failed: ";
    out += s.failure.message();
  }
  out += '\n';
  for (const PeerStatus& p : s.peers()) {
    out += "  member ";
    append_number(out, p.id);
    out += p.voter ? " voter" : (p.learner ? " learner" : " (leaving)");
    if (p.self) {
      out += " (self)";
    }
    if (s.role == Role::leader) {
      out += " match ";
      append_number(out, p.match);
      out += " lag ";
      append_number(out, p.lag);
      if (!p.self) {
        out += " ack ";
        detail::append_age(out, p.last_ack_age_ns);
        out += " ago ";
        out += p.replication;
        if (p.inflight_messages != 0) {
          out += ", ";
          append_number(out, p.inflight_messages);
          out += " appends in flight";
        }
      }
    }
    out += '\n';
  }
}

/// Appends `s` as one JSON object (keys as in GroupStatus; ages in nanoseconds, -1 unknown).
inline void append_json(std::string& out, const GroupStatus& s) {
  using detail::append_number;
  using detail::append_signed;
  auto key = [&out](std::string_view k) {
    out += '"';
    out += k;
    out += "\":";
  };
  auto num = [&](std::string_view k, std::uint64_t v) {
    key(k);
    append_number(out, v);
    out += ',';
  };
  auto str = [&](std::string_view k, std::string_view v) {
    key(k);
    out += '"';
    out += v;  // only enumerator names and error messages without quotes reach here
    out += "\",";
  };
  auto boolean = [&](std::string_view k, bool v) {
    key(k);
    out += v ? "true," : "false,";
  };
  out += '{';
  num("group", s.group);
  num("node", s.self);
  str("role", s.stopped ? std::string_view("stopped") : to_string(s.role));
  num("term", s.term);
  num("leader", s.leader);
  num("vote", s.vote);
  num("first_index", s.first_index);
  num("last_index", s.last_index);
  num("commit_index", s.commit_index);
  num("applied_index", s.applied_index);
  num("snapshot_index", s.snapshot_index);
  num("pending_proposals", s.pending_proposals);
  num("pending_reads", s.pending_reads);
  num("uncommitted_bytes", s.uncommitted_bytes);
  num("lease_term", s.lease_term);
  key("quorum_ack_age_ns");
  append_signed(out, s.quorum_ack_age_ns);
  out += ',';
  boolean("joint", s.joint);
  boolean("transferring", s.transferring);
  boolean("stopped", s.stopped);
  key("failure");
  if (s.failure) {
    out += '"';
    for (char c : s.failure.message()) {
      if (c == '"' || c == '\\') {
        out += '\\';
      }
      out += static_cast<unsigned char>(c) < 0x20 ? ' ' : c;
    }
    out += "\",";
  } else {
    out += "null,";
  }
  key("members");
  out += '[';
  bool first = true;
  for (const PeerStatus& p : s.peers()) {
    if (!first) {
      out += ',';
    }
    first = false;
    out += '{';
    num("id", p.id);
    boolean("self", p.self);
    boolean("voter", p.voter);
    boolean("learner", p.learner);
    num("match", p.match);
    num("next", p.next);
    num("lag", p.lag);
    num("inflight_messages", p.inflight_messages);
    num("inflight_bytes", p.inflight_bytes);
    str("replication", p.replication);
    key("last_ack_age_ns");
    append_signed(out, p.last_ack_age_ns);
    out += '}';
  }
  out += "]}";
}

}  // namespace tenure::raft
