// Membership changes on SimCluster: learners staged and promoted once caught up, joint
// consensus (both majorities), the removed leader's lease and hand-over, a removed node that
// does not disrupt, the errors of change_membership, and the configuration recovered after a
// crash. Simulated time only; every run is seeded.
#include <raft/errc.hpp>
#include <raft/file_storage.hpp>
#include <raft/membership.hpp>
#include <raft/raft_group.hpp>
#include <raft/testing/kv_state_machine.hpp>
#include <raft/testing/sim_cluster.hpp>
#include <raft/testing/sim_file_system.hpp>
#include <raft/types.hpp>

#include "../../support/raft_harness.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using tenure::raft::errc;
using tenure::raft::kNoNode;
using tenure::raft::LogIndex;
using tenure::raft::Membership;
using tenure::raft::NodeId;
using tenure::raft::Role;
using tenure::raft::Term;
using tenure::testing::Bytes;
using tenure::testing::bytes_of;
using tenure::testing::RecordingStateMachine;
using tenure::testing::Tracked;
using tenure::testing::TrackedPropose;

namespace {

using Cluster = tenure::raft::testing::SimCluster<RecordingStateMachine, 7>;
using TrackedChange = Tracked<tenure::raft::MembershipOperation, LogIndex>;

Cluster::Options options(std::uint64_t seed, std::size_t voters, std::size_t standby) {
  Cluster::Options o;
  o.seed = seed;
  o.nodes = voters;
  o.standby = standby;
  return o;
}

bool same_set(std::vector<NodeId> a, std::vector<NodeId> b) {
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  return a == b;
}

bool commit_one(Cluster& c, NodeId id, std::deque<TrackedPropose>& proposals, const Bytes& payload,
                std::chrono::nanoseconds limit = 2s) {
  auto& p = proposals.emplace_back(&c.clock(id));
  c.group(id).propose(p.op, payload);
  c.group(id).flush();
  c.run_until([&] { return p.completed(); }, limit);
  return p.succeeded();
}

// Starts a change on the leader and runs until it completes (or `limit` passes).
void change(Cluster& c, NodeId leader, TrackedChange& op, Membership target,
            std::chrono::nanoseconds limit = 3s) {
  c.group(leader).change_membership(op.op, std::move(target),
                                    c.clock(leader).now() + std::chrono::seconds(2));
  c.run_until([&] { return op.completed(); }, limit);
}

// Every configuration the leader put in force, in order (watched after every event).
struct ConfigWatch {
  std::vector<Membership> seen;
  void observe(Cluster& c) {
    const NodeId leader = c.leader();
    if (leader == kNoNode) {
      return;
    }
    const Membership& m = c.group(leader).membership();
    if (seen.empty() || !(seen.back() == m)) {
      seen.push_back(m);
    }
  }
  bool had_joint() const {
    return std::any_of(seen.begin(), seen.end(), [](const Membership& m) { return m.joint(); });
  }
};

}  // namespace

TEST_CASE("membership: a node added as a voter is staged as a learner - catches up - then votes") {
  ConfigWatch watch;
  auto o = options(11, 3, 1);
  Cluster* cp = nullptr;
  o.on_event = [&] { watch.observe(*cp); };
  Cluster c(o);
  cp = &c;
  const NodeId leader = c.wait_for_leader();
  REQUIRE(leader != kNoNode);
  std::deque<TrackedPropose> proposals;
  for (int i = 0; i < 50; ++i) {
    REQUIRE(commit_one(c, leader, proposals, bytes_of("w" + std::to_string(i))));
  }
  TrackedChange op;
  change(c, leader, op, Membership{{1, 2, 3, 4}, {}, {}});
  REQUIRE(op.succeeded());
  CHECK(same_set(c.group(leader).membership().voters, {1, 2, 3, 4}));
  // On the way: 4 was a learner (voters still 1, 2, 3) before it became a voter.
  bool staged = false;
  for (const Membership& m : watch.seen) {
    staged = staged || (m.is_learner(4) && same_set(m.voters, {1, 2, 3}));
  }
  CHECK(staged);
  CHECK_FALSE(watch.had_joint());  // one voter more: a direct change
  // Node 4 has the whole log, and it counts: with 4 and one old voter cut off, the leader and
  // the other old voter are 2 of 4, no majority (they were 2 of 3 before).
  REQUIRE(commit_one(c, leader, proposals, bytes_of("after")));
  c.run_for(200ms);
  CHECK(c.group(4).last_applied() == c.group(leader).last_applied());
  CHECK(c.machine(4).applied().size() == c.machine(leader).applied().size());
  c.network().isolate(4);
  c.network().isolate(leader == 1 ? 2 : 1);
  CHECK_FALSE(commit_one(c, leader, proposals, bytes_of("needs 3 of 4"), 1s));
}

TEST_CASE("membership: a learner that cannot catch up is not promoted - the voters stay") {
  Cluster c(options(12, 3, 1));
  const NodeId leader = c.wait_for_leader();
  REQUIRE(leader != kNoNode);
  std::deque<TrackedPropose> proposals;
  for (int i = 0; i < 20; ++i) {
    REQUIRE(commit_one(c, leader, proposals, bytes_of("w" + std::to_string(i))));
  }
  // Node 4 hears nothing: staged as a learner, it never catches up.
  c.network().isolate(4);
  auto& g = c.group(leader);
  TrackedChange op;
  g.change_membership(op.op, Membership{{1, 2, 3, 4}, {}, {}}, c.clock(leader).now() + 1s);
  c.run_until([&] { return op.completed(); }, 3s);
  REQUIRE(op.completed());
  CHECK(op.code() == errc::timed_out);
  CHECK(same_set(g.membership().voters, {1, 2, 3}));
  CHECK(g.membership().is_learner(4));
  // The group's fault tolerance is as before: one voter down, the other two commit.
  c.crash(leader == 1 ? 2 : 1);
  CHECK(commit_one(c, leader, proposals, bytes_of("still 2 of 3")));
}

TEST_CASE("membership: replacing a voter goes through a joint configuration and leaves it") {
  ConfigWatch watch;
  auto o = options(13, 3, 2);
  Cluster* cp = nullptr;
  o.on_event = [&] { watch.observe(*cp); };
  Cluster c(o);
  cp = &c;
  NodeId leader = c.wait_for_leader();
  REQUIRE(leader != kNoNode);
  const NodeId gone = leader == 3 ? 2 : 3;
  std::vector<NodeId> target;
  for (NodeId id : {NodeId{1}, NodeId{2}, NodeId{3}}) {
    if (id != gone) {
      target.push_back(id);
    }
  }
  target.push_back(4);
  TrackedChange op;
  change(c, leader, op, Membership{target, {}, {}});
  REQUIRE(op.succeeded());
  CHECK(watch.had_joint());
  const Membership& now = c.group(leader).membership();
  CHECK_FALSE(now.joint());
  CHECK(same_set(now.voters, target));
  CHECK_FALSE(now.contains(gone));
  // The leader no longer replicates to the removed node, which never learns that its removal
  // committed: it times out and asks for votes, and the members tell it that it is out. It then
  // stops campaigning, and the group's term and leader never moved.
  const Term term = c.group(leader).term();
  c.run_for(1s);
  const auto elections = c.group(gone).stats().elections_started;
  c.run_for(3s);
  CHECK(c.group(gone).stats().elections_started == elections);
  CHECK(c.group(gone).campaign() == errc::invalid_argument);
  CHECK(c.group(gone).removed());
  CHECK_FALSE(c.group(leader).removed());
  CHECK_FALSE(c.group(4).removed());
  CHECK(c.group(leader).term() == term);
  CHECK(c.leader() == leader);
}

TEST_CASE("membership: in a joint configuration an entry commits only with both majorities") {
  // Replace all three voters by 4, 5, 6. Once the joint configuration is in force, cut 5 and 6
  // off: the old majority still answers, the new one cannot, and nothing may commit.
  auto o = options(14, 3, 3);
  Cluster* cp = nullptr;
  bool cut = false;
  o.on_event = [&] {
    Cluster& c = *cp;
    const NodeId l = c.leader();
    if (!cut && l != kNoNode && c.group(l).membership().joint()) {
      c.network().isolate(5);
      c.network().isolate(6);
      cut = true;
    }
  };
  Cluster c(o);
  cp = &c;
  const NodeId leader = c.wait_for_leader();
  REQUIRE(leader != kNoNode);
  TrackedChange op;
  c.group(leader).change_membership(op.op, Membership{{4, 5, 6}, {}, {}},
                                    c.clock(leader).now() + 5s);
  c.run_until([&] { return cut; }, 3s);
  REQUIRE(cut);
  auto& g = c.group(leader);
  const LogIndex joint_at = g.membership_index();
  std::deque<TrackedPropose> proposals;
  auto& p = proposals.emplace_back(&c.clock(leader));
  g.propose(p.op, bytes_of("joint"));
  g.flush();
  c.run_for(1s);
  CHECK(g.commit_index() < joint_at);  // 1, 2, 3 and 4 have it; 5 and 6 do not
  CHECK_FALSE(p.succeeded());
  CHECK(g.leader_term() == 0);  // and no lease: the leader is not in the new voters
  // CheckQuorum: without a majority of 4, 5, 6 answering, leader 1 steps down too (the change
  // fails with leadership_lost), and no one can be elected until the new majority is back.
  c.network().heal();
  c.run_until(
      [&] {
        const NodeId l = c.leader();
        return l >= 4 && !c.group(l).changing_membership();
      },
      5s);
  const NodeId now = c.leader();
  REQUIRE(now != kNoNode);
  CHECK(now >= 4);
  CHECK(same_set(c.group(now).membership().voters, {4, 5, 6}));
  CHECK(op.completed());
}

TEST_CASE("membership: a removed leader revokes its lease at once - steps down - hands over") {
  Cluster c(options(15, 4, 0));
  const NodeId leader = c.wait_for_leader();
  REQUIRE(leader != kNoNode);
  c.run_for(300ms);  // the lease is live
  auto& g = c.group(leader);
  REQUIRE(g.leader_term() == g.term());
  std::vector<NodeId> rest;
  for (NodeId id : c.ids()) {
    if (id != leader) {
      rest.push_back(id);
    }
  }
  TrackedChange op;
  g.change_membership(op.op, Membership{rest, {}, {}}, c.clock(leader).now() + 2s);
  // Revoked before the entry that removes it can even leave.
  CHECK(g.role() == Role::leader);
  CHECK(g.leader_term() == 0);
  const auto started = c.now();
  c.run_until([&] { return op.completed(); }, 2s);
  REQUIRE(op.succeeded());
  // Hand-over by TimeoutNow: a new leader well within an election timeout.
  c.run_until(
      [&] {
        const NodeId l = c.leader();
        return l != kNoNode && l != leader;
      },
      2s);
  const NodeId next = c.leader();
  REQUIRE(next != kNoNode);
  CHECK(next != leader);
  CHECK(c.now() - started < std::chrono::nanoseconds(100ms).count());
  CHECK(g.role() == Role::follower);
  // It may ask for votes once more (the configuration before its removal counts it: see
  // may_campaign), is told it is out, and stops; the new leader's term never moves.
  const Term term = c.group(next).term();
  c.run_for(1s);
  const auto elections = g.stats().elections_started;
  c.run_for(2s);
  CHECK(g.stats().elections_started == elections);
  CHECK(g.campaign() == errc::invalid_argument);
  CHECK(c.leader() == next);
  CHECK(g.removed());
  CHECK(c.group(next).term() == term);
}

TEST_CASE("membership: a node removed while cut off does not disrupt the group when it returns") {
  Cluster c(options(16, 4, 0));
  const NodeId leader = c.wait_for_leader();
  REQUIRE(leader != kNoNode);
  const NodeId gone = leader == 4 ? 3 : 4;
  c.network().isolate(gone);
  std::vector<NodeId> rest;
  for (NodeId id : c.ids()) {
    if (id != gone) {
      rest.push_back(id);
    }
  }
  TrackedChange op;
  change(c, leader, op, Membership{rest, {}, {}});
  REQUIRE(op.succeeded());
  // It never heard of its removal: it still believes it votes, times out and campaigns.
  c.run_for(2s);
  CHECK(c.group(gone).membership().contains(gone));
  CHECK(c.group(gone).stats().elections_started > 0);
  const Term term = c.group(leader).term();
  c.network().heal();
  c.run_for(3s);
  // PreVote and leader stickiness: the group's term and leader are unchanged.
  CHECK(c.leader() == leader);
  CHECK(c.group(leader).term() == term);
}

TEST_CASE("membership: change_membership refuses bad targets - a second change - and followers") {
  Cluster c(options(17, 3, 1));
  const NodeId leader = c.wait_for_leader();
  REQUIRE(leader != kNoNode);
  auto& g = c.group(leader);
  const auto refused = [&](Membership target) {
    TrackedChange op;
    g.change_membership(op.op, std::move(target));
    REQUIRE(op.completed());
    return op.code();
  };
  CHECK(refused(Membership{{}, {}, {}}) == errc::invalid_argument);             // no voters
  CHECK(refused(Membership{{1, 2, 2}, {}, {}}) == errc::invalid_argument);      // twice
  CHECK(refused(Membership{{1, 2, 3}, {}, {3}}) == errc::invalid_argument);     // both
  CHECK(refused(Membership{{1, 0, 3}, {}, {}}) == errc::invalid_argument);      // kNoNode
  CHECK(refused(Membership{{1, 2}, {1, 2, 3}, {}}) == errc::invalid_argument);  // joint given
  CHECK(refused(Membership{{1, 2, 3, 4, 5, 6, 7, 8}, {}, {}}) == errc::invalid_argument);
  c.run_for(100ms);  // the followers hear from the leader
  const NodeId follower = leader == 1 ? 2 : 1;
  TrackedChange on_follower;
  c.group(follower).change_membership(on_follower.op, Membership{{1, 2, 3, 4}, {}, {}});
  CHECK(on_follower.code() == errc::not_leader);
  CHECK(on_follower.leader_hint() == leader);
  TrackedChange first;
  g.change_membership(first.op, Membership{{1, 2, 3, 4}, {}, {}});
  CHECK_FALSE(first.completed());
  CHECK(g.changing_membership());
  CHECK(refused(Membership{{1, 2}, {}, {}}) == errc::change_in_progress);
  c.run_until([&] { return first.completed(); }, 3s);
  CHECK(first.succeeded());
  CHECK_FALSE(g.changing_membership());
}

TEST_CASE("membership: the configuration is recovered after a crash in the middle of a change") {
  // Crash every node the instant the leader enters the joint configuration, then restart all:
  // the configuration comes back from the logs, a new leader leaves the joint configuration on
  // its own, and the target is reached without anyone asking again.
  auto o = options(18, 3, 3);
  o.storage.manual_sync = false;
  Cluster* cp = nullptr;
  bool crashed = false;
  std::vector<NodeId> applied_joint;  // nodes that had applied the joint configuration
  o.on_event = [&] {
    Cluster& c = *cp;
    if (crashed) {
      return;
    }
    for (NodeId id : c.ids()) {
      if (c.group(id).committed_membership().joint()) {
        applied_joint.push_back(id);
      }
    }
    if (!applied_joint.empty()) {
      crashed = true;
      for (NodeId id : c.ids()) {
        c.crash(id);
      }
    }
  };
  Cluster c(o);
  cp = &c;
  NodeId leader = c.wait_for_leader();
  REQUIRE(leader != kNoNode);
  TrackedChange op;
  c.group(leader).change_membership(op.op, Membership{{1, 4, 5}, {}, {}},
                                    c.clock(leader).now() + 5s);
  c.run_until([&] { return crashed; }, 3s);
  REQUIRE(crashed);
  CHECK(op.code() == errc::stopped);
  for (NodeId id : c.ids()) {
    REQUIRE(c.restart(id));
  }
  // Right after restart, before any message: a node that had applied the joint configuration
  // recovers it from its log (or the final one after it, if its log had that too), never the
  // old one. (What it knows to be committed may be older: the commit index is not synced.)
  for (NodeId id : applied_joint) {
    CAPTURE(id);
    const Membership& m = c.group(id).membership();
    CHECK(same_set(m.voters, {1, 4, 5}));
    CHECK((!m.joint() || same_set(m.outgoing, {1, 2, 3})));
  }
  c.run_until(
      [&] {
        const NodeId l = c.leader();
        return l != kNoNode && !c.group(l).membership().joint() &&
               c.group(l).membership_index() <= c.group(l).commit_index();
      },
      5s);
  leader = c.leader();
  REQUIRE(leader != kNoNode);
  CHECK(same_set(c.group(leader).membership().voters, {1, 4, 5}));
  // And again after a second restart of everyone, from the committed log.
  c.run_for(200ms);
  for (NodeId id : c.ids()) {
    c.crash(id);
    REQUIRE(c.restart(id));
  }
  for (NodeId id : {NodeId{1}, NodeId{4}, NodeId{5}}) {
    CHECK(same_set(c.group(id).membership().voters, {1, 4, 5}));
    CHECK_FALSE(c.group(id).membership().joint());
  }
}

TEST_CASE("membership: Membership encodes and decodes - malformed bytes are refused") {
  const Membership m{{1, 2, 3}, {1, 2, 9}, {7}};
  const auto bytes = tenure::raft::detail::encode_membership(m);
  CHECK(bytes.size() == tenure::raft::detail::encoded_size(m));
  std::size_t used = 0;
  const auto back = tenure::raft::detail::decode_membership(bytes, 64, &used);
  REQUIRE(back);
  CHECK(*back == m);
  CHECK(used == bytes.size());
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    CHECK_FALSE(
        tenure::raft::detail::decode_membership(std::span<const std::byte>(bytes.data(), n), 64));
  }
  auto bad = bytes;
  bad[0] = std::byte{2};  // unknown version
  CHECK_FALSE(tenure::raft::detail::decode_membership(bad, 64));
  bad = bytes;
  bad[2] = std::byte{1};  // reserved
  CHECK_FALSE(tenure::raft::detail::decode_membership(bad, 64));
  CHECK_FALSE(tenure::raft::detail::decode_membership(bytes, 2));  // more than allowed
  CHECK(m.size() == 5);
  CHECK(m.is_voter(9));
  CHECK(m.is_learner(7));
  CHECK_FALSE(m.contains(4));
  CHECK(tenure::raft::is_simple_change({1, 2, 3}, {1, 2, 3, 4}));
  CHECK(tenure::raft::is_simple_change({1, 2, 3}, {1, 2}));
  CHECK_FALSE(tenure::raft::is_simple_change({1, 2, 3}, {1, 2, 4}));
}

namespace {

using tenure::raft::FileStorage;
using tenure::raft::testing::KvStateMachine;
using tenure::raft::testing::SimFileSystem;
using FileCluster =
    tenure::raft::testing::SimCluster<KvStateMachine, 7, tenure::raft::NoPlantedBugs,
                                      FileStorage<SimFileSystem>>;

// FileStorage over a SimFileSystem is durable only when told: every write, after every event.
void persist_all(FileCluster& c) {
  for (NodeId id : c.ids()) {
    auto& n = c.node(id);
    if (n.up) {
      n.disk.persist_all();
      n.group->on_persisted();
    }
  }
}

bool put(FileCluster& c, NodeId id, std::deque<TrackedPropose>& proposals, std::uint64_t n) {
  std::array<std::byte, tenure::raft::testing::kKvCommandSize> payload{};
  tenure::raft::testing::encode_kv_command(
      tenure::raft::testing::KvCommand{tenure::raft::testing::KvOpKind::put, n % 7,
                                       static_cast<std::int64_t>(n), tenure::raft::testing::kAbsent,
                                       n},
      payload);
  auto& p = proposals.emplace_back(&c.clock(id));
  c.group(id).propose(p.op, payload);
  c.group(id).flush();
  c.run_until([&] { return p.completed(); }, 2s);
  return p.succeeded();
}

}  // namespace

TEST_CASE(
    "membership: FileStorage recovers the configuration from a snapshot once the log is gone") {
  FileCluster::Options o;
  o.seed = 19;
  o.nodes = 3;
  o.standby = 1;
  o.config.snapshot_entries = 20;
  o.config.log_retention_entries = 0;
  o.config.snapshot_chunk_bytes = 64;
  FileCluster* cp = nullptr;
  o.on_event = [&] { persist_all(*cp); };
  FileCluster c(o);
  cp = &c;
  const NodeId leader = c.wait_for_leader();
  REQUIRE(leader != kNoNode);
  TrackedChange op;
  c.group(leader).change_membership(op.op, Membership{{1, 2, 3}, {}, {4}},
                                    c.clock(leader).now() + 2s);
  c.run_until([&] { return op.completed(); }, 3s);
  REQUIRE(op.succeeded());
  const LogIndex config_at = op.outcome()->value();
  std::deque<TrackedPropose> proposals;
  for (std::uint64_t n = 1; n <= 120; ++n) {
    REQUIRE(put(c, leader, proposals, n));
  }
  c.run_for(500ms);
  for (NodeId id : c.ids()) {
    CAPTURE(id);
    // The config entry is compacted away everywhere; the snapshot carries the configuration.
    REQUIRE(c.node(id).storage().first_index() > config_at);
    REQUIRE(c.node(id).storage().snapshot());
    CHECK(c.node(id).storage().snapshot()->membership.learners == std::vector<NodeId>{4});
  }
  for (NodeId id : c.ids()) {
    c.crash(id);
    REQUIRE(c.restart(id));
    CAPTURE(id);
    CHECK(same_set(c.group(id).membership().voters, {1, 2, 3}));
    CHECK(c.group(id).membership().learners == std::vector<NodeId>{4});
  }
  // Node 4 (a joining node by its own RaftConfig) knows it is a learner and never campaigns.
  CHECK(c.group(4).campaign() == errc::invalid_argument);
  const NodeId after = c.wait_for_leader(3s);
  REQUIRE(after != kNoNode);
  CHECK(after != 4);
}

TEST_CASE("membership: a leader cut off with the only copy of its removal campaigns and ends it") {
  // 4 voters; the leader removes itself, but is cut off before the entry leaves. The others,
  // still in the four-voter configuration, need 3 votes: theirs and the old leader's, which
  // refuses their shorter logs. It must campaign (in the configuration before its removal it
  // votes), win by the new configuration's votes, commit its own removal and step down.
  auto o = options(20, 4, 0);
  o.storage.manual_sync = false;
  Cluster c(o);
  const NodeId leader = c.wait_for_leader();
  REQUIRE(leader != kNoNode);
  std::vector<NodeId> rest;
  for (NodeId id : c.ids()) {
    if (id != leader) {
      rest.push_back(id);
    }
  }
  c.run_for(200ms);                 // the leader's no-op commits
  const NodeId dead = rest.back();  // one of the others is gone for good
  c.crash(dead);
  c.network().isolate(leader);
  TrackedChange op;
  c.group(leader).change_membership(op.op, Membership{rest, {}, {}}, c.clock(leader).now() + 1s);
  c.run_for(50ms);
  REQUIRE_FALSE(c.group(leader).membership().contains(leader));  // in its log alone
  // CheckQuorum deposes it; then reconnect it. Only it can make progress now.
  c.run_until([&] { return c.group(leader).role() != Role::leader; }, 2s);
  c.network().heal();
  c.run_until(
      [&] {
        const NodeId l = c.leader();
        return l != kNoNode && l != leader &&
               c.group(l).membership_index() <= c.group(l).commit_index() &&
               !c.group(l).membership().contains(leader);
      },
      5s);
  const NodeId next = c.leader();
  REQUIRE(next != kNoNode);
  CHECK(next != leader);
  CHECK(same_set(c.group(next).membership().voters, rest));
  CHECK(c.group(next).commit_index() >= c.group(next).membership_index());
}
