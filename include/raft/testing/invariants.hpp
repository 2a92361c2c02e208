// InvariantChecker: the safety properties of Raft (and of leases), checked after every event.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include <raft/raft_group.hpp>
#include <raft/types.hpp>

namespace tenure::raft::testing {

/// A 64-bit FNV-1a hash of a payload: cheap, and enough to tell simulated entries apart.
inline std::uint64_t payload_hash(std::span<const std::byte> payload) noexcept {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (std::byte b : payload) {
    h = (h ^ static_cast<std::uint64_t>(b)) * 0x100000001b3ull;
  }
  return h ^ payload.size();
}

/// Checks, after every event of a simulation, the properties of Figure 3 of the Raft paper and
/// the lease property of tenure:
///
/// - Election Safety: at most one leader per term, and at most one leadership: a node that led a
///   term before a crash never leads it again after the restart (it would if it had led in a
///   term it had not made durable);
/// - Append Uniqueness: no two different entries are ever appended with the same (index, term),
///   anywhere in the cluster, across restarts. Every entry is recorded as first seen in any log
///   after any event (an entry lives in its log at least until the end of the event that
///   appended it: crashes and truncations happen at or after event boundaries), and the record
///   is never forgotten;
/// - Log Matching: two logs with an entry of the same index and term agree on the term of the
///   entry before it (hence, inductively, on the whole prefix);
/// - Leader Append-Only: a leader never overwrites or removes entries of its log in its term;
/// - Leader Completeness: a node that becomes leader of term T holds every entry committed in a
///   term before T (a leader of an older term, elected late, need not);
/// - State Machine Safety: every node applies the same entry at a given index;
/// - the commit index never decreases within a node's lifetime, and applied <= commit;
/// - Lease Safety: while a node's lease lets it serve a read in term T, no leader of a later term
///   has committed an entry of its own term.
///
/// These are assertions kept on in every build: a violation is recorded (the first one, with a
/// description) rather than aborting, so that the simulator can print the seed and the command
/// that replays it. The checker is generic over the cluster type; nodes are 1..N.
///
/// Thread-safety: one simulation thread. Allocation: grows with the log (simulations only).
class InvariantChecker {
 public:
  explicit InvariantChecker(std::size_t nodes) : nodes_(nodes + 1) {}

  bool ok() const noexcept { return violation_.empty(); }
  const std::string& violation() const noexcept { return violation_; }

  /// Records a violation found elsewhere (e.g. by a state machine observer).
  void fail(std::string what) {
    if (violation_.empty()) {
      violation_ = std::move(what);
    }
  }

  /// A node (re)started: its commit index may start lower again.
  void node_started(NodeId id) {
    const std::uint64_t incarnation = nodes_[id].incarnation + 1;
    nodes_[id] = NodeState{};
    nodes_[id].incarnation = incarnation;
  }

  /// State Machine Safety: node `id` applied `payload` at `index`.
  void applied(NodeId id, LogIndex index, std::span<const std::byte> payload) {
    const std::uint64_t h = payload_hash(payload);
    auto [it, inserted] = applied_.try_emplace(index, h);
    if (!inserted && it->second != h) {
      fail("state machine safety: node " + std::to_string(id) + " applied a different entry at " +
           std::to_string(index));
    }
  }

  /// As above, with the digest of the node's whole applied history after `index` (a state
  /// machine that keeps one, as KvStateMachine does). Every node must agree on it at every
  /// index, however much of that history reached it in a snapshot: a snapshot that does not
  /// agree with the log, or a restart that lost applied entries, shows here.
  void applied(NodeId id, LogIndex index, std::span<const std::byte> payload,
               std::uint64_t digest) {
    applied(id, index, payload);
    auto [it, inserted] = digests_.try_emplace(index, digest);
    if (!inserted && it->second != digest) {
      fail("snapshot agreement: node " + std::to_string(id) + "'s applied history differs at " +
           std::to_string(index) + " (a snapshot or a restart lost or changed entries)");
    }
  }

  /// Checks every property on the current state. `Group` is a RaftGroup; `lease_ok(id)` says
  /// whether node `id` would serve a lease read now (false for nodes without a lease layer).
  template <class Cluster, class LeaseOk>
  void check(Cluster& cluster, LeaseOk&& lease_ok) {
    if (!ok()) {
      return;
    }
    for (NodeId id : cluster.ids()) {
      auto& n = cluster.node(id);
      if (!n.up) {
        continue;
      }
      check_node(id, *n.group, n.storage());
      if (!ok()) {
        return;
      }
    }
    // Lease Safety, after the loop has recorded every leader's committed term.
    for (NodeId id : cluster.ids()) {
      auto& n = cluster.node(id);
      if (!n.up) {
        continue;
      }
      const Term t = n.group->leader_term();
      if (t != 0 && max_committed_leader_term_ > t && lease_ok(id)) {
        fail("lease safety: node " + std::to_string(id) + " serves a lease read in term " +
             std::to_string(t) + " while a leader of term " +
             std::to_string(max_committed_leader_term_) + " has committed");
        return;
      }
    }
  }

  Term max_committed_leader_term() const noexcept { return max_committed_leader_term_; }

 private:
  struct NodeState {
    std::uint64_t incarnation = 0;  // how many times the node has started
    LogIndex checked_through = 0;   // Log Matching checked up to here
    Term checked_term = 0;          // the term of that entry when checked
    LogIndex commit = 0;
    Term leader_term = 0;       // leader append-only: the term we saw it lead
    LogIndex leader_last = 0;   // ... its last index then
    Term leader_last_term = 0;  // ... and that entry's term
  };
  struct Seen {
    std::uint64_t hash = 0;
    Term previous_term = 0;
    NodeId node = kNoNode;  // where it was first seen
  };
  struct Leadership {
    NodeId node = kNoNode;
    std::uint64_t incarnation = 0;
  };
  struct CommittedEntry {
    Term term = 0;  // the entry's own term
    std::uint64_t hash = 0;
    Term commit_term = 0;  // the term in which it was first seen committed
  };

  static std::uint64_t key(LogIndex index, Term term) noexcept {
    return (index * 0x9e3779b97f4a7c15ull) ^ (term * 0xc2b2ae3d27d4eb4full);
  }

  template <class Group, class Storage>
  void check_node(NodeId id, const Group& g, const Storage& storage) {
    NodeState& s = nodes_[id];
    const LogIndex first = storage.first_index();
    const LogIndex last = storage.last_index();
    const auto term_at = [&](LogIndex i) -> Term {
      const auto t = storage.term_at(i);
      return t ? t.value() : 0;
    };

    // Commit monotonic, applied <= commit.
    if (g.commit_index() < s.commit) {
      fail("commit index of node " + std::to_string(id) + " went back from " +
           std::to_string(s.commit) + " to " + std::to_string(g.commit_index()));
      return;
    }
    s.commit = g.commit_index();
    if (g.last_applied() > g.commit_index()) {
      fail("node " + std::to_string(id) + " applied beyond its commit index");
      return;
    }

    // Election Safety.
    if (g.role() == Role::leader) {
      auto [it, inserted] = leaders_.try_emplace(g.term(), Leadership{id, s.incarnation});
      if (!inserted && it->second.node != id) {
        fail("election safety: nodes " + std::to_string(it->second.node) + " and " +
             std::to_string(id) + " both lead term " + std::to_string(g.term()));
        return;
      }
      if (!inserted && it->second.incarnation != s.incarnation) {
        fail("election safety: node " + std::to_string(id) + " leads term " +
             std::to_string(g.term()) +
             " again after a restart (it led it before: a term it had "
             "not made durable)");
        return;
      }
      if (g.leader_term() != 0 && g.term() > max_committed_leader_term_) {
        max_committed_leader_term_ = g.term();
      }
    }

    // Log Matching, incrementally: entries below the commit index never change, so after a
    // truncation recheck from there.
    if (s.checked_through > last || (s.checked_through >= first && s.checked_through != 0 &&
                                     term_at(s.checked_through) != s.checked_term)) {
      s.checked_through = std::min(s.checked_through, g.commit_index());
    }
    for (LogIndex i = std::max(s.checked_through + 1, first); i <= last; ++i) {
      const EntryView e = storage.entry(i);
      const Seen seen{payload_hash(e.payload) ^ static_cast<std::uint64_t>(e.type), term_at(i - 1),
                      id};
      auto [it, inserted] = log_.try_emplace(key(i, e.term), seen);
      if (!inserted && it->second.hash != seen.hash) {
        fail("append uniqueness: node " + std::to_string(id) + " holds an entry at index " +
             std::to_string(i) + " term " + std::to_string(e.term) +
             " that differs from the one node " + std::to_string(it->second.node) +
             " held there earlier");
        return;
      }
      if (!inserted && i > first && it->second.previous_term != seen.previous_term) {
        fail("log matching: node " + std::to_string(id) +
             " holds a different prefix before index " + std::to_string(i) + " term " +
             std::to_string(e.term));
        return;
      }
    }
    s.checked_through = last;
    s.checked_term = term_at(last);

    // Leader Append-Only, and Leader Completeness on becoming leader.
    if (g.role() == Role::leader) {
      if (s.leader_term == g.term()) {
        if (last < s.leader_last || term_at(s.leader_last) != s.leader_last_term) {
          fail("leader append-only: leader " + std::to_string(id) + " of term " +
               std::to_string(g.term()) + " lost or overwrote entry " +
               std::to_string(s.leader_last));
          return;
        }
      } else {
        for (LogIndex i = std::max(first, LogIndex{1}); i < committed_.size(); ++i) {
          if (committed_[i].term != 0 && committed_[i].commit_term < g.term() &&
              (i > last || term_at(i) != committed_[i].term ||
               payload_hash(storage.entry(i).payload) != committed_[i].hash)) {
            fail("leader completeness: node " + std::to_string(id) + " leads term " +
                 std::to_string(g.term()) + " without committed entry " + std::to_string(i));
            return;
          }
        }
      }
      s.leader_term = g.term();
      s.leader_last = last;
      s.leader_last_term = term_at(last);
    } else {
      s.leader_term = 0;
    }

    // Record what is committed (from the node's own log, which must agree with everyone's).
    const LogIndex commit = std::min(g.commit_index(), last);
    if (commit >= committed_.size()) {
      const LogIndex from = std::max<LogIndex>(committed_.size(), first);
      committed_.resize(commit + 1);
      for (LogIndex i = from; i <= commit; ++i) {
        committed_[i] =
            CommittedEntry{term_at(i), payload_hash(storage.entry(i).payload), g.term()};
      }
    }
  }

  std::vector<NodeState> nodes_;
  std::unordered_map<Term, Leadership> leaders_;
  std::unordered_map<std::uint64_t, Seen> log_;
  std::unordered_map<LogIndex, std::uint64_t> applied_;
  std::unordered_map<LogIndex, std::uint64_t> digests_;
  std::vector<CommittedEntry> committed_;  // index -> the entry committed there
  Term max_committed_leader_term_ = 0;
  std::string violation_;
};

}  // namespace tenure::raft::testing
