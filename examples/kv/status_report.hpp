// The cluster's status as an operator reads it: every node's `status` answer (its view of every
// shard, docs/kv-protocol.md), gathered and rendered as one table per shard. Shared by
// `tenure-kv-cli status` and tenure-kv-demo; the server uses shard_status_of to answer `status`.
//
//   shard 0: leader 1, term 4, commit 1042, lease valid (quorum ack 3.1ms ago)
//     node  role           term    applied      match      lag  last ack  replication
//     1     leader            4       1042       1042        0  -         self
//     2     follower          4       1042       1042        0  3.1ms     replicate
//     3     UNREACHABLE       -          -       1000       42  2.41s     probe
//
// role, term and applied are each node's own answer; match, lag, last ack and replication are
// the leader's view of that member (what it knows is on the member, how many entries the member
// is behind the leader's log, how long ago it last answered the leader).
#pragma once

#include "blocking_client.hpp"
#include "protocol.hpp"

#include <raft/status.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace tenure::kv {

/// Shard `shard`'s GroupStatus in the `status` answer's form (the server's side).
inline ShardStatus shard_status_of(std::uint32_t shard, const raft::GroupStatus& s) {
  ShardStatus g;
  g.shard = shard;
  g.role = s.stopped ? std::string("stopped") : std::string(raft::to_string(s.role));
  g.term = s.term;
  g.leader = s.leader;
  g.commit = s.commit_index;
  g.applied = s.applied_index;
  g.last = s.last_index;
  g.lease_term = s.lease_term;
  if (s.quorum_ack_age_ns >= 0) {
    g.quorum_ack_age_us = static_cast<std::uint64_t>(s.quorum_ack_age_ns) / 1000;
  }
  const bool leading = s.role == raft::Role::leader && !s.stopped;
  for (const raft::PeerStatus& p : s.peers()) {
    MemberStatus m;
    m.id = p.id;
    m.kind = p.voter ? "voter" : (p.learner ? "learner" : "leaving");
    if (leading) {
      m.match = p.match;
      m.lag = p.lag;
      if (p.self) {
        m.replication = "self";
      } else {
        if (p.last_ack_age_ns >= 0) {
          m.ack_age_us = static_cast<std::uint64_t>(p.last_ack_age_ns) / 1000;
        }
        m.replication = p.replication.empty() ? std::string("probe") : std::string(p.replication);
      }
    }
    g.members.push_back(std::move(m));
  }
  return g;
}

/// One node's answer to `status`, or why there is none.
struct NodeReport {
  std::uint64_t node = 0;
  std::string address;
  std::optional<NodeStatus> status;  ///< nullopt: the node did not answer (see `error`)
  std::string error;
};

/// Asks every node of `info` for its status, one after the other, each within `per_node`. A node
/// whose every-shard answer would be too long (`too_large`) is asked shard by shard.
inline std::vector<NodeReport> collect_status(const ClusterInfo& info,
                                              std::chrono::milliseconds per_node,
                                              const std::optional<raft::asio::TlsFiles>& tls) {
  std::vector<NodeReport> reports;
  std::uint64_t id = 0;
  for (const auto& a : info.addresses) {
    NodeReport report;
    report.node = a.node;
    report.address = a.address;
    BlockingClient client(a.address, tls);
    const auto r = client.call(Request::status(++id), per_node);
    if (r.response && r.response->kind == ResponseKind::status) {
      report.status = parse_node_status(r.response->status);
      if (!report.status) {
        report.error = "malformed status answer";
      }
    } else if (r.response && r.response->kind == ResponseKind::error &&
               r.response->code == raft::errc::too_large) {
      NodeStatus all;
      all.node = a.node;
      all.shards = info.shards();
      for (std::uint32_t s = 0; s < info.shards(); ++s) {
        const auto one = client.call(Request::status(++id, s), per_node);
        if (!one.response) {
          report.error = one.transport_error;
          break;
        }
        if (one.response->kind == ResponseKind::status) {
          if (auto part = parse_node_status(one.response->status)) {
            all.node = part->node;
            for (auto& g : part->groups) {
              all.groups.push_back(std::move(g));
            }
          }
        }
      }
      if (report.error.empty()) {
        report.status = std::move(all);
      }
    } else if (r.response) {
      report.error = "answered error " + std::string(name_of(r.response->kind == ResponseKind::error
                                                                 ? r.response->code
                                                                 : raft::errc::invalid_argument));
    } else {
      report.error = r.transport_error;
    }
    reports.push_back(std::move(report));
  }
  return reports;
}

namespace status_detail {

// A duration in microseconds for a person: "0.4ms", "312.5ms", "2.41s", "95s"; "-" for none.
inline std::string age(const std::optional<std::uint64_t>& us) {
  if (!us) {
    return "-";
  }
  char text[32];
  if (*us < 1'000'000) {
    std::snprintf(text, sizeof text, "%.1fms", static_cast<double>(*us) / 1e3);
  } else if (*us < 60'000'000) {
    std::snprintf(text, sizeof text, "%.2fs", static_cast<double>(*us) / 1e6);
  } else {
    std::snprintf(text, sizeof text, "%llus", static_cast<unsigned long long>(*us / 1'000'000));
  }
  return text;
}

inline std::string number(const std::optional<std::uint64_t>& v) {
  return v ? std::to_string(*v) : std::string("-");
}

}  // namespace status_detail

/// What render_status found.
struct StatusTable {
  std::string text;
  std::vector<std::uint64_t> unreachable;  ///< nodes that did not answer
  std::vector<std::uint32_t> leaderless;   ///< shards no answering node leads
  bool healthy() const noexcept { return unreachable.empty() && leaderless.empty(); }
};

/// Renders `reports` (collect_status) for a cluster of `shards` shards: a line per node (answered
/// or unreachable, and why), then per shard a headline (its leader, term, commit index and lease
/// as the leader reports them, or that no answering node leads it) and a table with a row per
/// member. Fits 80 columns for ids and indexes below 10^9.
inline StatusTable render_status(const std::vector<NodeReport>& reports, std::uint32_t shards) {
  using status_detail::age;
  using status_detail::number;
  StatusTable table;
  std::string& out = table.text;
  char line[256];
  std::snprintf(line, sizeof line, "%zu node(s), %u shard(s)\n", reports.size(), shards);
  out += line;
  for (const auto& r : reports) {
    out += "  node " + std::to_string(r.node) + " at " + r.address;
    if (r.status) {
      out += ": answered\n";
    } else {
      out += ": UNREACHABLE (" + r.error + ")\n";
      table.unreachable.push_back(r.node);
    }
  }
  const auto report_of = [&](std::uint64_t node) -> const NodeReport* {
    for (const auto& r : reports) {
      if (r.node == node) {
        return &r;
      }
    }
    return nullptr;
  };
  for (std::uint32_t s = 0; s < shards; ++s) {
    out += '\n';
    // The leader: the answering node that says it leads, in the highest term.
    const ShardStatus* leader = nullptr;
    std::uint64_t leader_node = 0;
    std::set<std::uint64_t> rows;
    std::set<std::uint64_t> believed;  // leaders named by followers that answered
    std::vector<std::pair<std::uint64_t, std::uint64_t>> other_claims;  // node, term
    for (const auto& r : reports) {
      const ShardStatus* g = r.status ? r.status->shard(s) : nullptr;
      if (g == nullptr) {
        continue;
      }
      for (const auto& m : g->members) {
        rows.insert(m.id);
      }
      if (g->leader != 0 && !g->leads()) {
        believed.insert(g->leader);
      }
      if (g->leads()) {
        if (leader != nullptr && leader->term >= g->term) {
          other_claims.emplace_back(r.node, g->term);
          continue;
        }
        if (leader != nullptr) {
          other_claims.emplace_back(leader_node, leader->term);
        }
        leader = g;
        leader_node = r.node;
      }
    }
    if (leader != nullptr) {
      rows.clear();  // the leader's configuration is the one that counts
      for (const auto& m : leader->members) {
        rows.insert(m.id);
      }
      std::snprintf(line, sizeof line, "shard %u: leader %llu, term %llu, commit %llu, ", s,
                    static_cast<unsigned long long>(leader_node),
                    static_cast<unsigned long long>(leader->term),
                    static_cast<unsigned long long>(leader->commit));
      out += line;
      if (leader->lease_term != 0) {
        out += "lease valid (quorum ack " + age(leader->quorum_ack_age_us) + " ago)\n";
      } else {
        out += "NO LEASE (lease reads go through ReadIndex)\n";
      }
      for (const auto& [node, term] : other_claims) {
        std::snprintf(line, sizeof line, "  node %llu also claims to lead it, in term %llu\n",
                      static_cast<unsigned long long>(node), static_cast<unsigned long long>(term));
        out += line;
      }
    } else {
      table.leaderless.push_back(s);
      std::snprintf(line, sizeof line, "shard %u: NO LEADER among the nodes that answered", s);
      out += line;
      if (!believed.empty()) {
        out += " (believed leader:";
        for (const auto b : believed) {
          const NodeReport* r = report_of(b);
          out += " node " + std::to_string(b) + (r != nullptr && !r->status ? " UNREACHABLE" : "");
        }
        out += ')';
      }
      out += '\n';
    }
    if (rows.empty()) {  // nobody answered for this shard: every node, as far as info knows
      for (const auto& r : reports) {
        rows.insert(r.node);
      }
    }
    out += "  node  role           term    applied      match      lag  last ack  replication\n";
    for (const std::uint64_t id : rows) {
      const NodeReport* r = report_of(id);
      const ShardStatus* own = r != nullptr && r->status ? r->status->shard(s) : nullptr;
      const MemberStatus* view = leader != nullptr ? leader->member(id) : nullptr;
      std::string role = "?";
      if (r == nullptr) {
        role = "unknown node";
      } else if (!r->status) {
        role = "UNREACHABLE";
      } else if (own != nullptr) {
        role = own->role;
        if (view != nullptr && view->kind != "voter" && role == "follower") {
          role = view->kind;  // a learner, or a voter being removed
        }
      }
      std::snprintf(
          line, sizeof line, "  %-5llu %-13s %5s %10s %10s %8s  %-8s  %s\n",
          static_cast<unsigned long long>(id), role.c_str(),
          own != nullptr ? std::to_string(own->term).c_str() : "-",
          own != nullptr ? std::to_string(own->applied).c_str() : "-",
          number(view != nullptr ? view->match : std::nullopt).c_str(),
          number(view != nullptr ? view->lag : std::nullopt).c_str(),
          age(view != nullptr ? view->ack_age_us : std::nullopt).c_str(),
          view != nullptr && !view->replication.empty() ? view->replication.c_str() : "-");
      out += line;
    }
  }
  return table;
}

}  // namespace tenure::kv
