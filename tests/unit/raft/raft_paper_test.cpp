// RaftGroup against the rules of the Raft paper (Figure 2 and section 5), one TEST_CASE per rule,
// in the style of etcd's raft_paper_test.go; then the extensions tenure builds in (PreVote,
// CheckQuorum, leader stickiness, the restart hold-off, durability gating, ReadIndex batching,
// flow control, leadership transfer). Every message is captured and delivered by hand
// (tests/support/raft_harness.hpp); time moves only when a test advances a ManualClock.
#include <raft/errc.hpp>
#include <raft/message.hpp>
#include <raft/raft_group.hpp>
#include <raft/types.hpp>

#include "../../support/raft_harness.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <set>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

using namespace std::chrono_literals;
using tenure::raft::EntryType;
using tenure::raft::EntryView;
using tenure::raft::errc;
using tenure::raft::HardState;
using tenure::raft::kFlagTransfer;
using tenure::raft::kNoNode;
using tenure::raft::LogIndex;
using tenure::raft::Message;
using tenure::raft::MessageType;
using tenure::raft::NodeId;
using tenure::raft::Role;
using tenure::raft::Term;
using tenure::testing::Bytes;
using tenure::testing::bytes_of;
using tenure::testing::CapturedMessage;
using tenure::testing::Harness;
using tenure::testing::make_message;
using tenure::testing::NodeOptions;
using tenure::testing::OwnedEntry;
using tenure::testing::RecordingStateMachine;
using tenure::testing::TestNode;
using tenure::testing::TrackedPropose;
using tenure::testing::TrackedRead;
using tenure::testing::TrackedTransfer;

namespace {

NodeOptions without_pre_vote() {
  NodeOptions o;
  o.config.pre_vote = false;
  return o;
}

NodeOptions with_log(std::vector<Term> terms, Term term, LogIndex commit = 0) {
  NodeOptions o;
  o.log_terms = std::move(terms);
  o.hard_state = HardState{term, kNoNode, commit};
  return o;
}

// The messages of `type` addressed to `to` among `messages`.
std::vector<CapturedMessage> addressed(const std::vector<CapturedMessage>& messages,
                                       MessageType type, NodeId to) {
  std::vector<CapturedMessage> out;
  for (const CapturedMessage& m : messages) {
    if (m->type == type && m->to == to) {
      out.push_back(m);
    }
  }
  return out;
}

// The single message of `type` to `to` that `node` has queued (removing it and every other
// queued message of that node).
CapturedMessage only(TestNode& node, MessageType type, NodeId to) {
  const auto sent = node.transport().take();
  const auto matching = addressed(sent, type, to);
  REQUIRE(matching.size() == 1);
  return matching.front();
}

// An append from `leader` in `term` after (prev_index, prev_term) with entries of `terms`
// (indexes following prev_index) and leader commit `commit`.
struct AppendBuilder {
  std::vector<OwnedEntry> entries;
  std::vector<EntryView> views;
  Message m;

  AppendBuilder(NodeId leader, NodeId to, Term term, LogIndex prev_index, Term prev_term,
                std::vector<Term> terms, LogIndex commit) {
    m = make_message(MessageType::append, leader, to, term);
    m.index = prev_index;
    m.log_term = prev_term;
    m.commit = commit;
    for (std::size_t i = 0; i < terms.size(); ++i) {
      const LogIndex index = prev_index + 1 + i;
      entries.push_back(
          OwnedEntry{terms[i], index, EntryType::normal, bytes_of("e" + std::to_string(index))});
    }
    for (const OwnedEntry& e : entries) {
      views.push_back(EntryView{e.term, e.index, e.type, e.payload});
    }
    m.entries = views;
  }
  AppendBuilder(const AppendBuilder&) = delete;
};

Message vote_request(MessageType type, NodeId from, NodeId to, Term term, LogIndex last_index,
                     Term last_term, std::uint8_t flags = 0) {
  Message m = make_message(type, from, to, term);
  m.index = last_index;
  m.log_term = last_term;
  m.flags = flags;
  return m;
}

Message vote_response(NodeId from, NodeId to, Term term, bool reject) {
  Message m = make_message(MessageType::vote_response, from, to, term);
  m.reject = reject;
  return m;
}

Message heartbeat(NodeId from, NodeId to, Term term, LogIndex commit = 0) {
  Message m = make_message(MessageType::heartbeat, from, to, term);
  m.commit = commit;
  return m;
}

}  // namespace

// =============================================================================================
// 5.1: terms
// =============================================================================================

TEST_CASE("5.1: a node that sees a higher term becomes follower and adopts it") {
  Harness h(3, without_pre_vote());
  h.advance_all(100ms);
  TestNode& n = h.node(1);

  SUBCASE("from follower") {
    n.deliver(heartbeat(2, 1, 1));
    REQUIRE(n->role() == Role::follower);
    REQUIRE(n->term() == 1);
  }
  SUBCASE("from candidate") {
    REQUIRE_FALSE(n->campaign());
    REQUIRE(n->role() == Role::candidate);
    REQUIRE(n->term() == 1);
  }
  SUBCASE("from leader") {
    REQUIRE(h.elect(1));
    REQUIRE(n->term() == 1);
  }
  n.transport().clear();

  n.deliver(heartbeat(3, 1, 5));
  CHECK(n->role() == Role::follower);
  CHECK(n->term() == 5);
  CHECK(n->leader() == 3);
  CHECK(n->vote() == kNoNode);
  CHECK(n.storage().hard_state().term == 5);
  CHECK(n.storage().hard_state().vote == kNoNode);
}

TEST_CASE(
    "5.1: a response with a higher term makes a leader or candidate follow - leader unknown") {
  Harness h(3, without_pre_vote());
  h.advance_all(100ms);
  TestNode& n = h.node(1);
  SUBCASE("candidate, rejected vote in a later term") {
    REQUIRE_FALSE(n->campaign());
    REQUIRE(n->role() == Role::candidate);
    n.deliver(vote_response(2, 1, 4, /*reject=*/true));
  }
  SUBCASE("leader, rejected heartbeat response in a later term") {
    REQUIRE(h.elect(1));
    Message r = make_message(MessageType::heartbeat_response, 2, 1, 4);
    r.reject = true;
    n.deliver(r);
  }
  CHECK(n->role() == Role::follower);
  CHECK(n->term() == 4);
  CHECK(n->leader() == kNoNode);
  CHECK(n.storage().hard_state().term == 4);
}

TEST_CASE("5.1: a request with a stale term is rejected and the answer carries the newer term") {
  Harness h(3);
  TestNode& n = h.node(1);
  n.deliver(heartbeat(2, 1, 3));
  REQUIRE(n->term() == 3);
  REQUIRE(n->leader() == 2);
  n.transport().clear();

  SUBCASE("append") {
    AppendBuilder a(3, 1, 2, 0, 0, {2}, 0);
    n.deliver(a.m);
    const CapturedMessage r = only(n, MessageType::append_response, 3);
    CHECK(r->reject);
    CHECK(r->term == 3);
    CHECK(n->last_index() == 0);  // nothing appended
  }
  SUBCASE("heartbeat") {
    n.deliver(heartbeat(3, 1, 2));
    const CapturedMessage r = only(n, MessageType::heartbeat_response, 3);
    CHECK(r->reject);
    CHECK(r->term == 3);
  }
  CHECK(n->term() == 3);
  CHECK(n->leader() == 2);  // the stale sender did not become leader
  CHECK(n->role() == Role::follower);
}

// =============================================================================================
// 5.2: leader election
// =============================================================================================

TEST_CASE("5.2: a follower that hears nothing within the election timeout campaigns") {
  Harness h(3, without_pre_vote());
  TestNode& n = h.node(1);
  std::chrono::milliseconds waited{0};
  while (n->role() == Role::follower && waited < 300ms) {
    CHECK(n.transport().empty());  // silent until the timeout
    n.advance(1ms);
    waited += 1ms;
  }
  CAPTURE(waited.count());
  CHECK(waited >= 100ms);
  CHECK(waited <= 200ms);
  REQUIRE(n->role() == Role::candidate);
  CHECK(n->term() == 1);
  CHECK(n->vote() == 1);
  CHECK(n.storage().hard_state() == HardState{1, 1, 0});
  const auto sent = n.transport().take();
  std::set<NodeId> asked;
  for (const CapturedMessage& m : sent) {
    REQUIRE(m->type == MessageType::vote);
    CHECK(m->term == 1);
    CHECK(m->index == 0);
    CHECK(m->log_term == 0);
    CHECK(m->flags == 0);
    asked.insert(m->to);
  }
  CHECK(asked == std::set<NodeId>{2, 3});
  CHECK(sent.size() == 2);
}

TEST_CASE("5.2: a follower that keeps hearing from its leader never campaigns") {
  Harness h(3, without_pre_vote());
  TestNode& n = h.node(1);
  for (int i = 0; i < 40; ++i) {
    n.deliver(heartbeat(2, 1, 1));
    n.advance(50ms);
    CHECK(n->role() == Role::follower);
    CHECK(n->term() == 1);
    CHECK(n.transport().count(MessageType::vote) == 0);
    n.transport().clear();
  }
  // And once the heartbeats stop, it campaigns within election_timeout_max of the last one.
  n.deliver(heartbeat(2, 1, 1));
  CHECK(n.advance_until(200ms, 1ms, [&] { return n->role() == Role::candidate; }));
}

TEST_CASE(
    "5.2: election timeouts are randomised in from election_timeout_min up to "
    "election_timeout_max") {
  std::set<std::int64_t> seen;
  for (std::uint64_t seed = 1; seed <= 60; ++seed) {
    CAPTURE(seed);
    NodeOptions o = without_pre_vote();
    o.config.random_seed = seed;
    TestNode n(1, {1, 2, 3}, o);
    std::chrono::milliseconds waited{0};
    while (n->role() == Role::follower && waited < 300ms) {
      n.advance(1ms);
      waited += 1ms;
    }
    CAPTURE(waited.count());
    CHECK(waited >= 100ms);
    CHECK(waited <= 200ms);  // deadline < 200 ms, seen at the next 1 ms tick
    seen.insert(waited.count());
  }
  CHECK(seen.size() >= 20);  // spread out, not a constant
}

TEST_CASE("5.2: a candidate that wins a majority becomes leader") {
  struct Case {
    std::size_t size;
    std::vector<NodeId> grants;
    std::vector<NodeId> rejects;
    Role expected;
  };
  const std::vector<Case> cases = {
      {1, {}, {}, Role::leader},          {3, {2}, {}, Role::leader},
      {3, {2, 3}, {}, Role::leader},      {3, {}, {}, Role::candidate},
      {3, {}, {2, 3}, Role::follower},    {5, {2}, {}, Role::candidate},
      {5, {2, 3}, {}, Role::leader},      {5, {2}, {3, 4}, Role::candidate},
      {5, {}, {2, 3, 4}, Role::follower}, {5, {2}, {3, 4, 5}, Role::follower},
  };
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    CAPTURE(i);
    Harness h(c.size, without_pre_vote());
    TestNode& n = h.node(1);
    h.advance_all(100ms);
    REQUIRE_FALSE(n->campaign());
    for (NodeId id : c.grants) {
      n.deliver(vote_response(id, 1, 1, false));
    }
    for (NodeId id : c.rejects) {
      n.deliver(vote_response(id, 1, 1, true));
    }
    CHECK(n->role() == c.expected);
    CHECK(n->term() == 1);
    if (c.expected == Role::leader) {
      CHECK(n->leader() == 1);
    }
  }
}

TEST_CASE("5.2: each node votes for at most one candidate per term") {
  Harness h(3);
  TestNode& n = h.node(1);
  h.advance_all(100ms);  // past the restart hold-off

  n.deliver(vote_request(MessageType::vote, 2, 1, 1, 0, 0));
  CHECK_FALSE(only(n, MessageType::vote_response, 2)->reject);
  CHECK(n->vote() == 2);
  CHECK(n.storage().hard_state().vote == 2);

  n.deliver(vote_request(MessageType::vote, 3, 1, 1, 0, 0));
  CHECK(only(n, MessageType::vote_response, 3)->reject);
  CHECK(n->vote() == 2);

  n.deliver(vote_request(MessageType::vote, 2, 1, 1, 0, 0));  // a retransmission
  CHECK_FALSE(only(n, MessageType::vote_response, 2)->reject);

  // A candidate has voted for itself.
  Harness h2(3, without_pre_vote());
  h2.advance_all(100ms);
  REQUIRE_FALSE(h2.group(1).campaign());
  h2.node(1).transport().clear();
  h2.node(1).deliver(vote_request(MessageType::vote, 2, 1, 1, 0, 0));
  CHECK(only(h2.node(1), MessageType::vote_response, 2)->reject);
  CHECK(h2.group(1).role() == Role::candidate);
}

TEST_CASE("5.2: a candidate that hears from a leader of its own term becomes its follower") {
  Harness h(3, without_pre_vote());
  TestNode& n = h.node(1);
  h.advance_all(100ms);
  REQUIRE_FALSE(n->campaign());
  REQUIRE(n->role() == Role::candidate);
  REQUIRE(n->term() == 1);

  SUBCASE("a stale leader changes nothing") {
    n.deliver(heartbeat(2, 1, 0));
    CHECK(n->role() == Role::candidate);
    CHECK(n->term() == 1);
  }
  SUBCASE("an append of the same term") {
    AppendBuilder a(2, 1, 1, 0, 0, {1}, 0);
    n.deliver(a.m);
    CHECK(n->role() == Role::follower);
    CHECK(n->leader() == 2);
    CHECK(n->term() == 1);
    CHECK(n->vote() == 1);  // the vote of the term stays cast
    CHECK(n->last_index() == 1);
  }
  SUBCASE("a heartbeat of the same term") {
    n.deliver(heartbeat(3, 1, 1));
    CHECK(n->role() == Role::follower);
    CHECK(n->leader() == 3);
  }
}

// =============================================================================================
// 5.3: log replication
// =============================================================================================

TEST_CASE("5.3: a follower accepts an append whose prev entry matches - commit is capped") {
  TestNode n(1, {1, 2, 3}, with_log({1, 1, 2}, 2));
  AppendBuilder a(2, 1, 2, 3, 2, {2, 2}, /*commit=*/10);
  n.deliver(a.m);
  const CapturedMessage r = only(n, MessageType::append_response, 2);
  CHECK_FALSE(r->reject);
  CHECK(r->index == 5);
  CHECK(n.log_terms() == std::vector<Term>{1, 1, 2, 2, 2});
  // Figure 2: commitIndex = min(leaderCommit, index of last new entry).
  CHECK(n->commit_index() == 5);
  CHECK(n->last_applied() == 5);
  REQUIRE(n.machine().applied().size() == 5);
  CHECK(n.machine().applied()[3].payload == bytes_of("e4"));
  CHECK(n.machine().applied()[4].payload == bytes_of("e5"));

  // A heartbeat never commits past what the follower holds.
  TestNode m(1, {1, 2, 3}, with_log({1, 1}, 1));
  m.deliver(heartbeat(2, 1, 1, /*commit=*/9));
  CHECK(m->commit_index() == 2);
}

TEST_CASE("5.3: the leader's append with a mismatching prev entry is rejected") {
  SUBCASE("prev index beyond the follower's log: hint is its last index + 1") {
    TestNode n(1, {1, 2, 3}, with_log({1, 1, 2, 2}, 3));
    AppendBuilder a(2, 1, 3, 6, 3, {3}, 6);
    n.deliver(a.m);
    const CapturedMessage r = only(n, MessageType::append_response, 2);
    CHECK(r->reject);
    CHECK(r->index == 6);
    CHECK(r->reject_hint == 5);
    CHECK(r->log_term == 0);
    CHECK(n.log_terms() == std::vector<Term>{1, 1, 2, 2});
    CHECK(n->commit_index() == 0);  // a rejected append commits nothing
  }
  SUBCASE("prev term differs: hint is the first index of the conflicting term") {
    TestNode n(1, {1, 2, 3}, with_log({1, 1, 2, 2}, 3));
    AppendBuilder a(2, 1, 3, 4, 3, {3}, 4);
    n.deliver(a.m);
    const CapturedMessage r = only(n, MessageType::append_response, 2);
    CHECK(r->reject);
    CHECK(r->index == 4);
    CHECK(r->log_term == 2);
    CHECK(r->reject_hint == 3);
    CHECK(n.log_terms() == std::vector<Term>{1, 1, 2, 2});
    CHECK(n->commit_index() == 0);
  }
  SUBCASE("the hint never reaches into the committed prefix") {
    TestNode n(1, {1, 2, 3}, with_log({2, 2, 2, 2}, 3, /*commit=*/2));
    AppendBuilder a(2, 1, 3, 4, 3, {3}, 4);
    n.deliver(a.m);
    const CapturedMessage r = only(n, MessageType::append_response, 2);
    CHECK(r->reject);
    CHECK(r->log_term == 2);
    CHECK(r->reject_hint == 3);
  }
}

TEST_CASE("5.3: a follower truncates conflicting entries and appends the leader's") {
  struct Case {
    LogIndex prev_index;
    Term prev_term;
    std::vector<Term> entries;
    std::vector<Term> expected_log;
  };
  // The follower holds [(1,1), (2,2)] (etcd's TestFollowerAppendEntries).
  const std::vector<Case> cases = {
      {2, 2, {3}, {1, 2, 3}},
      {1, 1, {3, 4}, {1, 3, 4}},
      {0, 0, {1}, {1, 2}},  // a matching prefix never truncates what follows it
      {0, 0, {3}, {3}},
  };
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    CAPTURE(i);
    TestNode n(1, {1, 2, 3}, with_log({1, 2}, 2));
    AppendBuilder a(2, 1, 4, c.prev_index, c.prev_term, c.entries, 0);
    n.deliver(a.m);
    const CapturedMessage r = only(n, MessageType::append_response, 2);
    CHECK_FALSE(r->reject);
    CHECK(r->index == c.prev_index + c.entries.size());
    CHECK(n.log_terms() == c.expected_log);
    // New entries carry the leader's payloads; an entry already present keeps its own.
    for (std::size_t k = 0; k < c.entries.size(); ++k) {
      const LogIndex index = c.prev_index + 1 + k;
      const auto payload = n.storage().entry(index).payload;
      CHECK(Bytes(payload.begin(), payload.end()) ==
            bytes_of(i == 2 ? std::to_string(index) : "e" + std::to_string(index)));
    }
  }
}

TEST_CASE(
    "5.3: the leader retries with a lower index after rejection (fast backtracking uses the "
    "hint)") {
  auto drop_appends_to_2 = [](const Message& m) {
    return (m.type == MessageType::append && m.to == 2) ||
           (m.type == MessageType::append_response && m.from == 2);
  };

  SUBCASE("a follower that is behind: the hint is its last index + 1") {
    const std::vector<Term> leader_log = {1, 1, 1, 2, 2};
    Harness h(3, [&](NodeId id) {
      return id == 2 ? with_log({1, 1, 1}, 2) : with_log(leader_log, 2);
    });
    h.advance_all(100ms);
    REQUIRE_FALSE(h.group(1).campaign());
    h.deliver_all(drop_appends_to_2);
    REQUIRE(h.group(1).role() == Role::leader);
    REQUIRE(h.group(1).last_index() == 6);  // the no-op of term 3

    h.node(1).advance(20ms);  // the next probe
    const CapturedMessage probe = only(h.node(1), MessageType::append, 2);
    CHECK(probe->index == 5);
    CHECK(probe->log_term == 2);
    h.node(2).deliver(probe);
    const CapturedMessage reject = only(h.node(2), MessageType::append_response, 1);
    REQUIRE(reject->reject);
    CHECK(reject->reject_hint == 4);

    h.node(1).deliver(reject);  // the retry leaves at once
    const CapturedMessage retry = only(h.node(1), MessageType::append, 2);
    CHECK(retry->index == 3);  // straight to the hint, not 4
    CHECK(retry->log_term == 1);
    REQUIRE(retry.entries().size() == 3);
    CHECK(retry.entries()[0].index == 4);
    h.node(2).deliver(retry);
    const CapturedMessage ok = only(h.node(2), MessageType::append_response, 1);
    CHECK_FALSE(ok->reject);
    CHECK(ok->index == 6);
    CHECK(h.node(2).log_terms() == h.node(1).log_terms());
  }

  SUBCASE("a conflicting term: the retry skips every entry of it at once") {
    Harness h(3, [&](NodeId id) {
      return id == 2 ? with_log({1, 1, 1, 2, 2, 2, 2}, 2) : with_log({1, 1, 1, 3, 3}, 3);
    });
    h.advance_all(100ms);
    REQUIRE_FALSE(h.group(1).campaign());
    h.deliver_all(drop_appends_to_2);
    REQUIRE(h.group(1).role() == Role::leader);

    h.node(1).advance(20ms);
    const CapturedMessage probe = only(h.node(1), MessageType::append, 2);
    CHECK(probe->index == 5);
    CHECK(probe->log_term == 3);
    h.node(2).deliver(probe);
    const CapturedMessage reject = only(h.node(2), MessageType::append_response, 1);
    REQUIRE(reject->reject);
    CHECK(reject->log_term == 2);
    CHECK(reject->reject_hint == 4);
    h.node(1).deliver(reject);
    const CapturedMessage retry = only(h.node(1), MessageType::append, 2);
    CHECK(retry->index == 3);
    CHECK(retry->log_term == 1);
    h.node(2).deliver(retry);
    CHECK_FALSE(only(h.node(2), MessageType::append_response, 1)->reject);
    CHECK(h.node(2).log_terms() == std::vector<Term>{1, 1, 1, 3, 3, 4});
  }

  SUBCASE("the leader also skips its own entries of terms after the follower's conflict") {
    // The hint says the follower's term 2 starts at 4, but the leader's entries 2 and 3 are of
    // term 3, which the follower cannot hold either: the retry goes straight to index 1.
    Harness h(3, [&](NodeId id) {
      return id == 2 ? with_log({1, 1, 1, 2, 2}, 2) : with_log({1, 3, 3, 3, 3}, 3);
    });
    h.advance_all(100ms);
    REQUIRE_FALSE(h.group(1).campaign());
    h.deliver_all(drop_appends_to_2);
    REQUIRE(h.group(1).role() == Role::leader);
    h.node(1).advance(20ms);
    h.node(2).deliver(only(h.node(1), MessageType::append, 2));
    const CapturedMessage reject = only(h.node(2), MessageType::append_response, 1);
    REQUIRE(reject->reject);
    CHECK(reject->log_term == 2);
    CHECK(reject->reject_hint == 4);
    h.node(1).deliver(reject);
    const CapturedMessage retry = only(h.node(1), MessageType::append, 2);
    CHECK(retry->index == 1);
    CHECK(retry->log_term == 1);
    h.node(2).deliver(retry);
    CHECK_FALSE(only(h.node(2), MessageType::append_response, 1)->reject);
    CHECK(h.node(2).log_terms() == h.node(1).log_terms());
  }

  SUBCASE("a long divergence costs one rejection, not one per entry") {
    std::vector<Term> leader_log(51, 3);
    leader_log[0] = 1;
    std::vector<Term> follower_log(61, 2);
    follower_log[0] = 1;
    Harness h(3, [&](NodeId id) {
      return id == 2 ? with_log(follower_log, 2) : with_log(leader_log, 3);
    });
    h.advance_all(100ms);
    int rejections = 0;
    int walked = 0;
    REQUIRE_FALSE(h.group(1).campaign());
    const auto count = [&](const Message& m) {
      rejections += m.type == MessageType::append_response && m.from == 2 && m.reject ? 1 : 0;
      walked += m.type == MessageType::append && m.to == 2 && m.index > 1 && m.index < 51 ? 1 : 0;
      return false;
    };
    h.deliver_all(count);
    h.tick_all(20ms);
    h.deliver_all(count);
    // One rejection of the probe (a heartbeat answer may release a duplicate probe, rejected
    // too), and never an entry-by-entry walk back through the 50 conflicting entries.
    CHECK(rejections >= 1);
    CHECK(rejections <= 2);
    CHECK(walked == 0);
    CHECK(h.node(2).log_terms() == h.node(1).log_terms());
  }
}

TEST_CASE("5.3: a heartbeat never commits follower entries the leader has not matched") {
  // Node 1 leads with [1, 1, 3, 3] committed; node 2 holds a divergent, uncommitted [1, 1, 2, 2, 2]
  // and has not been probed yet. Heartbeats must not make it commit its own (3, 2) and (4, 2).
  Harness h(3, [](NodeId id) {
    return id == 2 ? with_log({1, 1, 2, 2, 2}, 2) : with_log({1, 1, 3, 3}, 3, /*commit=*/4);
  });
  h.advance_all(100ms);
  REQUIRE_FALSE(h.group(1).campaign());
  h.deliver_all([](const Message& m) {
    return (m.type == MessageType::append && m.to == 2) ||
           (m.type == MessageType::append_response && m.from == 2);
  });
  REQUIRE(h.group(1).role() == Role::leader);
  REQUIRE(h.group(1).commit_index() == 5);
  h.tick_all(20ms);
  h.deliver_all([](const Message& m) { return m.type == MessageType::append && m.to == 2; });
  CHECK(h.group(2).commit_index() <= 2);
  CHECK(h.node(2).machine().payload_at(3) == nullptr);
  h.tick_all(20ms);
  h.deliver_all();  // now probed and repaired
  CHECK(h.node(2).log_terms() == h.node(1).log_terms());
  CHECK(h.group(2).commit_index() == 5);
}

TEST_CASE("5.3: a leader brings every follower log of Figure 7 in line with its own") {
  const std::vector<Term> leader_log = {1, 1, 1, 4, 4, 5, 5, 6, 6, 6};
  const std::vector<std::vector<Term>> followers = {
      {1, 1, 1, 4, 4, 5, 5, 6, 6},           // (a)
      {1, 1, 1, 4},                          // (b)
      {1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6},     // (c)
      {1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7},  // (d)
      {1, 1, 1, 4, 4, 4, 4},                 // (e)
      {1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3},     // (f)
  };
  for (std::size_t i = 0; i < followers.size(); ++i) {
    CAPTURE(i);
    Harness h(3, [&](NodeId id) {
      if (id == 2) {
        return with_log(followers[i], followers[i].back());
      }
      return with_log(leader_log, 8);
    });
    REQUIRE(h.elect(1));
    h.tick_all(20ms);
    h.deliver_all();
    std::vector<Term> expected = leader_log;
    expected.push_back(h.group(1).term());  // the no-op
    CHECK(h.node(1).log_terms() == expected);
    CHECK(h.node(2).log_terms() == expected);
    CHECK(h.group(2).commit_index() == expected.size());
    CHECK(h.node(2).machine().applied() == h.node(1).machine().applied());
  }
}

// =============================================================================================
// 5.4: safety
// =============================================================================================

TEST_CASE("5.4.1: a voter refuses a candidate whose log is less up to date") {
  struct Case {
    LogIndex last_index;
    Term last_term;
    bool grant;
  };
  // The voter's log is [(1,1), (2,2)].
  const std::vector<Case> cases = {
      {2, 2, true},   // as up to date
      {3, 2, true},   // longer, same last term
      {1, 3, true},   // shorter, later last term
      {1, 2, false},  // shorter, same last term
      {5, 1, false},  // longer, earlier last term
      {0, 0, false},  // empty
  };
  for (const MessageType type : {MessageType::vote, MessageType::pre_vote}) {
    for (std::size_t i = 0; i < cases.size(); ++i) {
      const Case& c = cases[i];
      CAPTURE(static_cast<int>(type));
      CAPTURE(i);
      TestNode n(1, {1, 2, 3}, with_log({1, 2}, 2));
      n.clock().advance(100ms);  // past the restart hold-off
      n.deliver(vote_request(type, 2, 1, 3, c.last_index, c.last_term));
      const MessageType answer =
          type == MessageType::vote ? MessageType::vote_response : MessageType::pre_vote_response;
      const CapturedMessage r = only(n, answer, 2);
      CHECK(r->reject == !c.grant);
      CHECK(n->vote() == (type == MessageType::vote && c.grant ? 2 : kNoNode));
    }
  }
}

TEST_CASE("5.4.2: a leader never commits an entry of an earlier term by counting replicas") {
  // Figure 8: node 1 holds (2, term 2) from its earlier term; it leads again in term 3 and
  // replicates that entry to node 2, a majority with itself. It must not count it committed
  // until an entry of term 3 is on a majority too. One entry per message lets the test hold the
  // replication between the two.
  Harness h(3, [](NodeId id) {
    NodeOptions o = id == 1 ? with_log({1, 2}, 2, /*commit=*/1) : with_log({1}, 2, 1);
    o.config.max_entries_per_message = 1;
    return o;
  });
  h.advance_all(100ms);
  REQUIRE_FALSE(h.group(1).campaign());
  h.deliver_all([](const Message& m) {
    return m.type == MessageType::append || m.type == MessageType::append_response;
  });
  TestNode& leader = h.node(1);
  TestNode& follower = h.node(2);
  REQUIRE(leader->role() == Role::leader);
  const Term term = leader->term();
  REQUIRE(leader->last_index() == 3);
  REQUIRE(leader.storage().entry(3).term == term);
  CHECK(leader->commit_index() == 1);

  leader.advance(20ms);
  follower.deliver(only(leader, MessageType::append, 2));  // probe after (2, 2): rejected
  leader.deliver(only(follower, MessageType::append_response, 1));
  const CapturedMessage second = only(leader, MessageType::append, 2);
  REQUIRE(second->index == 1);
  REQUIRE(second.entries().size() == 1);
  REQUIRE(second.entries()[0].term == 2);
  follower.deliver(second);
  const CapturedMessage ack2 = only(follower, MessageType::append_response, 1);
  REQUIRE(ack2->index == 2);
  leader.deliver(ack2);

  CHECK(leader->match_of(2) == 2);
  CHECK(leader->commit_index() == 1);  // (2, term 2) is on a majority, yet not committed
  CHECK(leader.machine().payload_at(2) == nullptr);
  CHECK(leader->leader_term() == 0);

  const CapturedMessage third = only(leader, MessageType::append, 2);
  REQUIRE(third.entries().size() == 1);
  CHECK(third.entries()[0].index == 3);
  follower.deliver(third);
  leader.deliver(only(follower, MessageType::append_response, 1));
  CHECK(leader->commit_index() == 3);  // the no-op of term 3 commits, and (2, 2) with it
  REQUIRE(leader.machine().payload_at(2) != nullptr);
  CHECK(*leader.machine().payload_at(2) == bytes_of("2"));
  CHECK(leader->leader_term() == term);
}

// =============================================================================================
// Figure 2: persistence before answering
// =============================================================================================

TEST_CASE("Figure 2: term and vote are persisted before a vote response leaves") {
  Harness h(3, [](NodeId id) {
    NodeOptions o = with_log({1}, 1);
    o.storage.manual_sync = id == 1;
    return o;
  });
  TestNode& n = h.node(1);
  h.advance_all(100ms);

  SUBCASE("a granted vote") {
    n.deliver(vote_request(MessageType::vote, 2, 1, 2, 1, 1));
    CHECK(n.transport().empty());
    CHECK(n.storage().hard_state().term == 2);  // written, not yet durable
    CHECK(n.storage().hard_state().vote == 2);
    CHECK(n.storage().durable_seq() < n.storage().last_seq());
    n->on_persisted();  // nothing became durable: still held
    CHECK(n.transport().empty());
    n.sync();
    const CapturedMessage r = only(n, MessageType::vote_response, 2);
    CHECK_FALSE(r->reject);
    CHECK(r->term == 2);
  }
  SUBCASE("a refusal in a new term waits for the term") {
    n.deliver(vote_request(MessageType::vote, 3, 1, 2, 0, 0));
    CHECK(n.transport().empty());
    CHECK(n.storage().hard_state().term == 2);
    n.sync();
    const CapturedMessage r = only(n, MessageType::vote_response, 3);
    CHECK(r->reject);
    CHECK(r->term == 2);
  }
  SUBCASE("a pre-vote answer writes nothing and leaves at once") {
    const auto seq = n.storage().last_seq();
    n.deliver(vote_request(MessageType::pre_vote, 2, 1, 2, 1, 1));
    CHECK_FALSE(only(n, MessageType::pre_vote_response, 2)->reject);
    CHECK(n.storage().last_seq() == seq);
  }
}

TEST_CASE("Figure 2: an append response leaves only after the entries are durable") {
  NodeOptions o;
  o.storage.manual_sync = true;
  TestNode n(1, {1, 2, 3}, o);
  n.deliver(heartbeat(2, 1, 1));
  n.sync();
  n.transport().clear();

  AppendBuilder a(2, 1, 1, 0, 0, {1, 1}, 0);
  n.deliver(a.m);
  CHECK(n->last_index() == 2);  // visible to readers at once
  CHECK(n.transport().count(MessageType::append_response) == 0);
  n->on_persisted();
  CHECK(n.transport().count(MessageType::append_response) == 0);
  n.sync();
  const CapturedMessage r = only(n, MessageType::append_response, 2);
  CHECK_FALSE(r->reject);
  CHECK(r->index == 2);

  // A retransmission of entries already durable is acknowledged at once.
  n.deliver(a.m);
  CHECK(only(n, MessageType::append_response, 2)->index == 2);

  // A rejection acknowledges nothing and is not held back.
  AppendBuilder far(2, 1, 1, 7, 1, {1}, 0);
  n.deliver(far.m);
  CHECK(only(n, MessageType::append_response, 2)->reject);
}

// Regression: the leader's own log Waiter was released only by on_persisted() and elections, so
// with storage durable at once (MemoryStorage's default, SimCluster) its own entries never
// counted and a 3-node group with one follower down committed nothing (fixed in bee43e0: flush()
// releases waiters).
TEST_CASE("durable-at-once storage: the leader's own append counts without on_persisted") {
  std::deque<TrackedPropose> proposals;
  Harness h(3);
  REQUIRE(h.elect(1));
  TestNode& n = h.node(1);
  const Bytes payload = bytes_of("p");
  n->propose(proposals.emplace_back().op, payload);
  n->flush();
  CHECK(n.storage().durable_seq() == n.storage().last_seq());  // durable already
  CHECK(n->match_of(1) == n->last_index());
  h.isolate(3);
  h.deliver_all();  // node 2 acknowledges: with the leader's own copy, a majority
  CHECK(n->match_of(2) == n->last_index());
  CHECK(n->commit_index() == n->last_index());
  CHECK(proposals[0].succeeded());
}

TEST_CASE(
    "a leader keeps replicating while its own append is not yet durable - but it campaigns and "
    "leads only in a term that is durable") {
  TrackedPropose p;
  Harness h(3, [](NodeId id) {
    NodeOptions o = without_pre_vote();
    o.storage.manual_sync = id == 1;
    return o;
  });
  TestNode& n = h.node(1);
  h.advance_all(100ms);

  SUBCASE("vote requests leave only once the term and the own vote are durable") {
    REQUIRE_FALSE(n->campaign());
    CHECK(n->role() == Role::candidate);
    CHECK(n->term() == 1);
    CHECK(n.transport().empty());  // nothing of term 1 leaves before term 1 is on disk
    n.sync();
    const auto requests = n.transport().take();
    CHECK(addressed(requests, MessageType::vote, 2).size() == 1);
    CHECK(addressed(requests, MessageType::vote, 3).size() == 1);
    n.deliver(vote_response(2, 1, 1, false));
    CHECK(n->role() == Role::leader);  // its own durable vote and node 2's
  }
  SUBCASE("the other voters' votes alone never make it lead") {
    // Votes that arrive before the own vote is durable (stale or duplicated answers of an
    // earlier campaign in the same term) do not let it lead a term it may still forget.
    REQUIRE_FALSE(n->campaign());
    n.deliver(vote_response(2, 1, 1, false));
    n.deliver(vote_response(3, 1, 1, false));
    CHECK(n->role() == Role::candidate);
    CHECK(n->last_index() == 0);  // no entry of term 1 either
    n.sync();
    CHECK(n->role() == Role::leader);
  }
  SUBCASE("own append") {
    REQUIRE_FALSE(n->campaign());
    n.sync();
    h.deliver_all();
    n.sync();
    h.deliver_all();
    REQUIRE(n->role() == Role::leader);
    REQUIRE(n->commit_index() == 1);
    const LogIndex before = n->commit_index();

    const Bytes payload = bytes_of("x");
    n->propose(p.op, payload);
    n->flush();
    const auto appends = n.transport().take();
    REQUIRE(addressed(appends, MessageType::append, 2).size() == 1);
    REQUIRE(addressed(appends, MessageType::append, 3).size() == 1);
    CHECK(n.storage().durable_seq() < n.storage().last_seq());  // sent before own durability

    h.node(2).deliver(addressed(appends, MessageType::append, 2).front());
    n.deliver(only(h.node(2), MessageType::append_response, 1));
    CHECK(n->commit_index() == before);  // node 2 + own non-durable entry is no majority
    CHECK_FALSE(p.completed());

    SUBCASE("until the own append is durable") {
      n.sync();
      CHECK(n->commit_index() == before + 1);
      CHECK(p.succeeded());
    }
    SUBCASE("or a majority of others has it") {
      h.node(3).deliver(addressed(appends, MessageType::append, 3).front());
      n.deliver(only(h.node(3), MessageType::append_response, 1));
      CHECK(n->commit_index() == before + 1);
      CHECK(p.succeeded());
      n.sync();
    }
    REQUIRE(p.succeeded());
    CHECK(p.outcome()->value().index == before + 1);
    CHECK(p.outcome()->value().result == RecordingStateMachine::result_for(before + 1));
  }
}

// Hole 2 (CHANGELOG 0.2.0): a candidate sent its vote requests, won on the others' votes and
// replicated entries of a term that was not yet durable on its own disk. Crashing then, it came
// back in the old term, campaigned for the same term again, was granted again by voters whose vote
// was already its own, and appended different entries at the same (index, term).
TEST_CASE("a candidate that crashes before its term is durable never leads that term twice") {
  TrackedPropose first;
  TrackedPropose second;
  Harness h(3, [](NodeId id) {
    NodeOptions o = without_pre_vote();
    o.storage.manual_sync = id == 1;
    return o;
  });
  TestNode& n = h.node(1);
  h.advance_all(100ms);
  REQUIRE_FALSE(n->campaign());
  const Term term = n->term();
  // Whatever leaves node 1 in that term reaches the others; entries reach node 2 only, so that
  // node 3, which may have voted, stays as up to date as node 1 after a crash.
  const auto entries_to_3 = [](const Message& m) {
    return m.type == MessageType::append && m.to == 3;
  };
  h.deliver_all(entries_to_3);
  const Bytes one = bytes_of("first");
  n->propose(first.op, one);  // refused unless it leads
  n->flush();
  h.deliver_all(entries_to_3);

  n.crash();  // before anything of node 1 was durable
  n.restart();
  REQUIRE(n->term() == term - 1);
  h.advance_all(100ms);
  REQUIRE_FALSE(n->campaign());
  for (int i = 0; i < 3; ++i) {
    n.sync();
    h.deliver_all();
  }
  REQUIRE(n->role() == Role::leader);
  const Bytes two = bytes_of("second");
  n->propose(second.op, two);
  n->flush();
  for (int i = 0; i < 3; ++i) {
    n.sync();
    h.tick_all(20ms);
    h.deliver_all();
  }
  CHECK(second.succeeded());

  // Log Matching across the cluster: one entry per (index, term), and one applied per index.
  for (LogIndex i = 1; i <= n->last_index(); ++i) {
    for (NodeId other : {NodeId{2}, NodeId{3}}) {
      auto& st = h.node(other).storage();
      if (i > st.last_index() || st.entry(i).term != n.storage().entry(i).term) {
        continue;
      }
      const auto mine = n.storage().entry(i).payload;
      const auto theirs = st.entry(i).payload;
      CHECK_MESSAGE(
          Bytes(mine.begin(), mine.end()) == Bytes(theirs.begin(), theirs.end()),
          "index " << i << " term " << n.storage().entry(i).term << " differs on node " << other);
    }
  }
  for (const auto& e : n.machine().applied()) {
    const Bytes* theirs = h.node(2).machine().payload_at(e.index);
    REQUIRE(theirs != nullptr);
    CHECK(*theirs == e.payload);  // the same command applied at the same index
  }
}

// Regression: a truncation did not lower durable_last_, so a leader counted the durable copy of
// entries its log no longer held and committed index 4 on 2 of 5 durable copies; match_of(1)
// even reported 5 > last_index() (fixed in bee43e0). Since a candidate also waits for its term to
// be durable before it campaigns (hole 2), the truncated suffix is durable by the time it leads;
// its no-op still is not.
TEST_CASE(
    "a leader's own entry counts towards a commit only once durable - also after its log "
    "was truncated") {
  // Node 1 holds five durable entries of term 1. As a follower of node 2 (term 2) it truncates
  // them at index 3 and appends (3, term 2), not yet durable. It then campaigns for term 3: no
  // vote request leaves before that term (and so the truncation) is durable. It wins with the
  // votes of nodes 3, 4 and 5 and appends its no-op at 4. Nodes 3 and 4 acknowledge it: with the
  // leader's own copy that would be 3 of 5, but the leader's copy is not durable.
  Harness h(5, [](NodeId id) {
    NodeOptions o = id == 1 ? with_log({1, 1, 1, 1, 1}, 1) : with_log({1, 1}, 2);
    o.config.pre_vote = false;
    o.storage.manual_sync = id == 1;
    return o;
  });
  TestNode& n = h.node(1);
  h.advance_all(100ms);
  AppendBuilder a(2, 1, 2, 2, 1, {2}, 0);
  n.deliver(a.m);
  REQUIRE(n.log_terms() == std::vector<Term>{1, 1, 2});
  REQUIRE(n.storage().durable_seq() < n.storage().last_seq());
  n.transport().clear();

  h.isolate(2);
  h.advance_all(100ms);  // node 2 was heard from: campaign() waits out its lease
  REQUIRE_FALSE(n->campaign());
  CHECK(n.transport().empty());
  CHECK(n->match_of(1) == 0);  // not leading
  n.sync();
  h.deliver_all([](const Message& m) { return m.type == MessageType::append && m.to == 5; });
  REQUIRE(n->role() == Role::leader);
  REQUIRE(n->last_index() == 4);
  REQUIRE(h.group(3).last_index() == 4);
  REQUIRE(h.group(4).last_index() == 4);
  REQUIRE(n.storage().durable_seq() < n.storage().last_seq());
  CHECK(n->match_of(1) == 3);  // its durable prefix: the truncated log, not the no-op
  CHECK(n->commit_index() < 4);
  n.sync();
  CHECK(n->match_of(1) == 4);
  CHECK(n->commit_index() == 4);
}

// =============================================================================================
// Leader no-op, stickiness, restart hold-off, CheckQuorum, PreVote
// =============================================================================================

TEST_CASE("a new leader appends a no-op of its term") {
  Harness h(3, with_log({1, 1}, 1));
  h.advance_all(100ms);
  REQUIRE_FALSE(h.group(1).campaign());
  h.deliver_all([](const Message& m) { return m.type == MessageType::append_response; });
  TestNode& n = h.node(1);
  REQUIRE(n->role() == Role::leader);
  const Term term = n->term();
  REQUIRE(n->last_index() == 3);
  CHECK(n.storage().entry(3).type == EntryType::noop);
  CHECK(n.storage().entry(3).term == term);
  CHECK(n.storage().entry(3).payload.empty());
  CHECK(n->leader_term() == 0);  // not serving until the no-op is committed and applied
  CHECK(h.node(2).log_terms() == std::vector<Term>{1, 1, term});  // it went out

  h.tick_all(20ms);
  h.deliver_all();
  CHECK(n->commit_index() == 3);
  CHECK(n->leader_term() == term);
  // The no-op reaches no state machine; the entries before it do.
  CHECK(n.machine().applied().size() == 2);
}

TEST_CASE(
    "leader stickiness: a follower that heard from a live leader within election_timeout_min "
    "ignores a vote request (but not one flagged as a transfer)") {
  Harness h(3);
  REQUIRE(h.elect(1));
  const Term term = h.group(1).term();
  TestNode& n = h.node(2);
  n.transport().clear();
  n.clock().advance(99ms);  // since the leader's last message

  n.deliver(vote_request(MessageType::vote, 3, 2, term + 1, 10, term));
  n.deliver(vote_request(MessageType::pre_vote, 3, 2, term + 1, 10, term));
  CHECK(n.transport().empty());  // no answer at all
  CHECK(n->term() == term);      // not even the term moved
  CHECK(n->leader() == 1);
  CHECK(n->vote() != 3);

  SUBCASE("a transfer-flagged vote is answered") {
    n.deliver(vote_request(MessageType::vote, 3, 2, term + 1, 10, term, kFlagTransfer));
    CHECK_FALSE(only(n, MessageType::vote_response, 3)->reject);
    CHECK(n->term() == term + 1);
    CHECK(n->vote() == 3);
  }
  SUBCASE("once election_timeout_min has passed since the leader was heard") {
    n.clock().advance(1ms);
    n.deliver(vote_request(MessageType::pre_vote, 3, 2, term + 1, 10, term));
    CHECK_FALSE(only(n, MessageType::pre_vote_response, 3)->reject);
    CHECK(n->term() == term);
    n.deliver(vote_request(MessageType::vote, 3, 2, term + 1, 10, term));
    CHECK_FALSE(only(n, MessageType::vote_response, 3)->reject);
    CHECK(n->term() == term + 1);
  }
}

// Hole 1 (CHANGELOG 0.2.0): a message that moved the term without coming from a leader made a
// follower forget that it had just heard from one, and it voted inside that leader's lease.
TEST_CASE(
    "leader stickiness survives a term change: within election_timeout_min of its leader's last "
    "message a follower votes for no one else - whatever message moved its term") {
  Harness h(3);
  REQUIRE(h.elect(1));
  const Term term = h.group(1).term();
  TestNode& n = h.node(2);
  h.clear_all();
  n.clock().advance(1ms);  // the leader was heard from 1 ms ago

  Message bump;
  SUBCASE("a late pre-vote refusal from another node") {
    bump = make_message(MessageType::pre_vote_response, 3, 2, term + 1);
    bump.reject = true;
  }
  SUBCASE("a reject answering an append this node sent when it led") {
    bump = make_message(MessageType::append_response, 3, 2, term + 1);
    bump.reject = true;
  }
  SUBCASE("a reject answering a heartbeat this node sent when it led") {
    bump = make_message(MessageType::heartbeat_response, 3, 2, term + 1);
    bump.reject = true;
  }
  SUBCASE("a read forwarded by a node of a later term") {
    bump = make_message(MessageType::read_index, 3, 2, term + 1);
  }
  n.deliver(bump);
  REQUIRE(n->term() == term + 1);  // the term moves: that is right
  CHECK(n->leader() == kNoNode);
  n.transport().clear();  // (the forwarded read is refused: not the leader)

  for (const Term t : {term + 1, term + 2}) {
    n.deliver(vote_request(MessageType::pre_vote, 3, 2, t + 1, 10, term));
    n.deliver(vote_request(MessageType::vote, 3, 2, t, 10, term));
  }
  CHECK(n.transport().empty());  // no vote, no pre-vote, granted or refused
  CHECK(n->vote() == kNoNode);
  CHECK(n->term() == term + 1);  // nor did a vote request move the term further

  // Nor does it campaign, by timeout or on request, inside that window.
  n.advance(97ms);
  CHECK(n->role() == Role::follower);
  CHECK(n->campaign() == errc::leader_active);
  CHECK(n.transport().empty());

  n.clock().advance(2ms);  // election_timeout_min since the leader's last message
  n.deliver(vote_request(MessageType::vote, 3, 2, term + 2, 10, term));
  CHECK_FALSE(only(n, MessageType::vote_response, 3)->reject);
  CHECK(n->vote() == 3);
}

TEST_CASE(
    "5.2: a vote request that moves the term but is refused does not restart the election timer") {
  // Figure 2: the timer restarts on an append from the leader or a granted vote. A node whose
  // log is behind, campaigning without PreVote, must not push everyone's next campaign back by
  // a whole timeout each time it tries: it would lock their timers to its own and keep anyone
  // else from getting a campaign in first.
  Harness h(3, without_pre_vote());
  REQUIRE(h.elect(1));
  const Term term = h.group(1).term();
  TestNode& n = h.node(2);
  h.clear_all();
  n.clock().advance(100ms);  // the leader's last message is election_timeout_min old
  n.deliver(vote_request(MessageType::vote, 3, 2, term + 1, 0, 0));  // a log far behind
  REQUIRE(only(n, MessageType::vote_response, 3)->reject);
  REQUIRE(n->term() == term + 1);
  // It campaigns before election_timeout_max has passed since the leader's last message.
  const bool campaigned = n.advance_until(99ms, 1ms, [&] { return n->role() == Role::candidate; });
  CHECK(campaigned);
}

TEST_CASE("a restarted node grants no vote for election_timeout_min after it starts") {
  TestNode n(1, {1, 2, 3}, with_log({1, 2, 3}, 3));
  n.clock().advance(10s);
  n.restart();  // starts at 10 s
  CHECK(n->term() == 3);

  n.clock().advance(99ms);
  n.deliver(vote_request(MessageType::vote, 2, 1, 4, 3, 3));
  n.deliver(vote_request(MessageType::pre_vote, 2, 1, 4, 3, 3));
  CHECK(n.transport().empty());
  CHECK(n->term() == 3);

  SUBCASE("unless the election is a transfer") {
    n.deliver(vote_request(MessageType::vote, 2, 1, 4, 3, 3, kFlagTransfer));
    CHECK_FALSE(only(n, MessageType::vote_response, 2)->reject);
  }
  SUBCASE("after the hold-off") {
    n.clock().advance(1ms);
    n.deliver(vote_request(MessageType::vote, 2, 1, 4, 3, 3));
    CHECK_FALSE(only(n, MessageType::vote_response, 2)->reject);
    CHECK(n->term() == 4);
  }
}

TEST_CASE("Figure 2: a restarted node remembers its term and its vote") {
  TestNode n(1, {1, 2, 3}, with_log({1}, 4));
  n.clock().advance(100ms);
  n.deliver(vote_request(MessageType::vote, 2, 1, 5, 1, 1));
  CHECK_FALSE(only(n, MessageType::vote_response, 2)->reject);
  n.restart();
  CHECK(n->term() == 5);
  CHECK(n->vote() == 2);
  n.clock().advance(100ms);
  n.deliver(vote_request(MessageType::vote, 3, 1, 5, 1, 1));
  CHECK(only(n, MessageType::vote_response, 3)->reject);
  n.deliver(vote_request(MessageType::vote, 2, 1, 5, 1, 1));
  CHECK_FALSE(only(n, MessageType::vote_response, 2)->reject);
}

TEST_CASE(
    "CheckQuorum: a leader that hears from no quorum within election_timeout_min steps down") {
  std::deque<TrackedPropose> proposals;
  Harness h(3);
  REQUIRE(h.elect(1));  // every request of the election was answered at this instant
  TestNode& n = h.node(1);
  const Bytes payload = bytes_of("p");

  SUBCASE("silence") {
    n->propose(proposals.emplace_back(&n.clock()).op, payload);
    n->flush();
    std::chrono::milliseconds waited{0};
    while (n->role() == Role::leader && waited < 1s) {
      n.advance(1ms);
      n.transport().clear();
      waited += 1ms;
    }
    CAPTURE(waited.count());
    CHECK(waited >= 100ms);
    CHECK(waited <= 101ms);
    CHECK(n->role() == Role::follower);
    CHECK(n->leader() == kNoNode);
    CHECK(n->leader_term() == 0);
    REQUIRE(proposals.front().completed());
    CHECK(proposals.front().code() == errc::leadership_lost);
  }
  SUBCASE("one follower answering is a quorum") {
    for (int i = 0; i < 500; ++i) {
      n.advance(2ms);
      const auto sent = n.transport().take();
      for (const CapturedMessage& m : addressed(sent, MessageType::heartbeat, 2)) {
        h.node(2).deliver(m);
      }
      for (const CapturedMessage& r : h.node(2).transport().take()) {
        n.deliver(r);
      }
      REQUIRE(n->role() == Role::leader);
    }
  }
  SUBCASE("disabled") {
    Harness off(3, [](NodeId) {
      NodeOptions o;
      o.config.check_quorum = false;
      return o;
    });
    REQUIRE(off.elect(1));
    for (int i = 0; i < 500; ++i) {
      off.node(1).advance(2ms);
      off.node(1).transport().clear();
    }
    CHECK(off.group(1).role() == Role::leader);
  }
}

TEST_CASE("PreVote: a pre-candidate does not increase its term") {
  Harness h(3);
  TestNode& n = h.node(1);
  const auto seq = n.storage().last_seq();
  REQUIRE(n.advance_until(300ms, 1ms, [&] { return n->role() != Role::follower; }));
  CHECK(n->role() == Role::pre_candidate);
  CHECK(n->term() == 0);
  CHECK(n->vote() == kNoNode);
  CHECK(n.storage().last_seq() == seq);  // nothing written
  const auto sent = n.transport().take();
  REQUIRE(sent.size() == 2);
  for (const CapturedMessage& m : sent) {
    CHECK(m->type == MessageType::pre_vote);
    CHECK(m->term == 1);  // the term it would campaign in
  }

  SUBCASE("rejected by a majority: back to follower, same term") {
    Message r = make_message(MessageType::pre_vote_response, 2, 1, 0);
    r.reject = true;
    n.deliver(r);
    r.from = 3;
    n.deliver(r);
    CHECK(n->role() == Role::follower);
    CHECK(n->term() == 0);
  }
  SUBCASE("granted by a majority: a real election in term + 1") {
    n.deliver(make_message(MessageType::pre_vote_response, 2, 1, 1));
    CHECK(n->role() == Role::candidate);
    CHECK(n->term() == 1);
    CHECK(n->vote() == 1);
    CHECK(n.transport().count(MessageType::vote) == 2);
  }
}

TEST_CASE("PreVote: a voter answers a pre-vote without changing its term or its vote") {
  TestNode n(2, {1, 2, 3});
  n.clock().advance(100ms);
  const auto seq = n.storage().last_seq();
  n.deliver(vote_request(MessageType::pre_vote, 1, 2, 1, 0, 0));
  const CapturedMessage r = only(n, MessageType::pre_vote_response, 1);
  CHECK_FALSE(r->reject);
  CHECK(r->term == 1);
  CHECK(n->term() == 0);
  CHECK(n->vote() == kNoNode);
  CHECK(n.storage().last_seq() == seq);
  // ... and it may still vote for someone else in that term.
  n.deliver(vote_request(MessageType::vote, 3, 2, 1, 0, 0));
  CHECK_FALSE(only(n, MessageType::vote_response, 3)->reject);
}

// Regression: in_lease() never held on the leader itself, so it granted a rejoining follower's
// pre-vote; in a 3-node group that made a majority, and the leader stepped down on the vote
// request that followed (fixed in bee43e0: a leader ignores non-transfer (pre-)votes).
TEST_CASE("PreVote: a leader with a live quorum does not help a rejoining follower disrupt it") {
  Harness h(3);
  REQUIRE(h.elect(1));
  const Term term = h.group(1).term();
  h.isolate(3);
  // Node 3 hears nothing, node 2 keeps hearing the leader, until node 3 gives up waiting.
  bool campaigning = false;
  for (int i = 0; i < 200 && !campaigning; ++i) {
    h.tick_all(2ms);
    campaigning = h.group(3).role() == Role::pre_candidate;
    if (!campaigning) {
      h.deliver_all();
    }
  }
  REQUIRE(campaigning);
  CHECK(h.group(3).term() == term);  // PreVote: no inflation while cut off
  h.heal();
  h.deliver_all();  // node 3's pre-votes now reach 1 and 2
  CHECK(h.group(1).role() == Role::leader);
  CHECK(h.group(1).term() == term);
  CHECK(h.group(2).term() == term);
  CHECK(h.group(3).term() == term);
}

// =============================================================================================
// ReadIndex (thesis 6.4; lessons 1 to 3)
// =============================================================================================

TEST_CASE("ReadIndex: one heartbeat round confirms every read queued before it") {
  std::deque<TrackedRead> reads;
  Harness h(3);
  REQUIRE(h.elect(1));
  TestNode& n = h.node(1);
  h.clear_all();
  const auto rounds = n->stats().heartbeat_rounds;
  const LogIndex commit = n->commit_index();

  for (int i = 0; i < 100; ++i) {
    n->read_index(reads.emplace_back().op);
  }
  n->flush();
  CHECK(n->pending_reads() == 100);
  const auto round1 = n.transport().take();
  CHECK(n->stats().heartbeat_rounds == rounds + 1);
  REQUIRE(addressed(round1, MessageType::heartbeat, 2).size() == 1);
  REQUIRE(addressed(round1, MessageType::heartbeat, 3).size() == 1);

  n->read_index(reads.emplace_back().op);  // after round 1 left: it needs a new round
  n->flush();
  const auto round2 = n.transport().take();
  REQUIRE(addressed(round2, MessageType::heartbeat, 2).size() == 1);
  CHECK(addressed(round2, MessageType::heartbeat, 2).front()->seq >
        addressed(round1, MessageType::heartbeat, 2).front()->seq);

  h.node(2).deliver(addressed(round1, MessageType::heartbeat, 2).front());
  n.deliver(only(h.node(2), MessageType::heartbeat_response, 1));
  for (std::size_t i = 0; i < 100; ++i) {
    CAPTURE(i);
    REQUIRE(reads[i].succeeded());
    CHECK(reads[i].outcome()->value() == commit);
    CHECK(reads[i].calls() == 1);
  }
  CHECK_FALSE(reads[100].completed());  // round 1 says nothing about a read that came after it

  h.node(2).deliver(addressed(round2, MessageType::heartbeat, 2).front());
  n.deliver(only(h.node(2), MessageType::heartbeat_response, 1));
  CHECK(reads[100].succeeded());
  CHECK(n->pending_reads() == 0);
}

TEST_CASE(
    "ReadIndex: a read at a new leader before its first commit in the term waits - then "
    "succeeds") {
  std::deque<TrackedRead> reads;
  Harness h(3, with_log({1, 1}, 1));
  h.advance_all(100ms);
  REQUIRE_FALSE(h.group(1).campaign());
  h.deliver_all([](const Message& m) { return m.type == MessageType::append_response; });
  TestNode& n = h.node(1);
  REQUIRE(n->role() == Role::leader);
  REQUIRE(n->commit_index() == 0);
  const LogIndex noop = n->last_index();

  n->read_index(reads.emplace_back().op);
  n->flush();
  CHECK_FALSE(reads[0].completed());
  h.tick_all(20ms);
  h.deliver_all();
  REQUIRE(reads[0].succeeded());
  CHECK(reads[0].outcome()->value() >= noop);  // never the stale commit index of the last term
  CHECK(n->last_applied() >= reads[0].outcome()->value());
}

TEST_CASE("ReadIndex: a term change fails every pending read with leadership_lost") {
  std::deque<TrackedRead> reads;
  Harness h(3);
  REQUIRE(h.elect(1));
  const Term term = h.group(1).term();
  h.clear_all();

  SUBCASE("at the leader") {
    TestNode& n = h.node(1);
    for (int i = 0; i < 10; ++i) {
      n->read_index(reads.emplace_back().op);
    }
    n->flush();
    n.deliver(heartbeat(2, 1, term + 1));
    CHECK(n->pending_reads() == 0);
  }
  SUBCASE("forwarded by a follower") {
    TestNode& n = h.node(2);
    for (int i = 0; i < 10; ++i) {
      n->read_index(reads.emplace_back().op);
    }
    n->flush();
    CHECK(only(n, MessageType::read_index, 1)->to == 1);
    n.deliver(heartbeat(3, 2, term + 1));
  }
  for (std::size_t i = 0; i < reads.size(); ++i) {
    CAPTURE(i);
    REQUIRE(reads[i].completed());
    CHECK(reads[i].code() == errc::leadership_lost);
    CHECK(reads[i].calls() == 1);
  }
}

// Found by the simulator's stale messages (late duplicates): a follower numbered its forwarded read
// batches from 1 again after a restart, so a late answer to a batch it had sent before the
// restart confirmed a read begun after it, at a read index older than the read.
TEST_CASE("ReadIndex: an answer to a batch forwarded before a restart confirms no read after it") {
  std::deque<TrackedRead> reads;
  std::deque<TrackedPropose> proposals;
  Harness h(3);
  REQUIRE(h.elect(1));
  const Term term = h.group(1).term();
  TestNode& f = h.node(2);
  h.clear_all();
  f->read_index(reads.emplace_back().op);
  f->flush();
  const CapturedMessage forwarded = only(f, MessageType::read_index, 1);
  h.node(1).deliver(forwarded);
  h.tick_all(20ms);  // the leader's heartbeat round confirms the batch
  std::optional<CapturedMessage> answer;
  h.deliver_all([&](const Message& m) {
    if (m.type != MessageType::read_index_response) {
      return false;
    }
    answer.emplace(m);  // held back
    return true;
  });
  REQUIRE(answer.has_value());
  const CapturedMessage stale = *answer;
  REQUIRE_FALSE(stale->reject);

  f.restart();  // before the answer arrived
  // A write commits after the answer was made and before the new read starts.
  const Bytes payload = bytes_of("w");
  h.group(1).propose(proposals.emplace_back().op, payload);
  h.group(1).flush();
  h.deliver_all();
  REQUIRE(proposals.back().succeeded());
  const LogIndex written = proposals.back().outcome()->value().index;
  REQUIRE(stale->index < written);
  h.tick_all(20ms);
  h.deliver_all();
  REQUIRE(f->leader() == 1);
  REQUIRE(f->term() == term);

  f->read_index(reads.emplace_back().op);
  f->flush();
  f.transport().clear();  // the new batch is lost; only the stale answer arrives
  f.deliver(stale);
  CHECK_FALSE(reads.back().completed());  // it would read at an index before the write
}

// Regression: leave_leadership() failed proposals but not local reads; a leader that stepped
// down in its own term (CheckQuorum) kept them, unconfirmable, until their deadlines, counting
// against max_pending_reads (fixed in bee43e0).
TEST_CASE(
    "ReadIndex: a leader that steps down fails its pending reads with leadership_lost at "
    "once") {
  std::deque<TrackedRead> reads;
  Harness h(3);
  REQUIRE(h.elect(1));
  TestNode& n = h.node(1);
  for (int i = 0; i < 10; ++i) {
    n->read_index(reads.emplace_back(&n.clock()).op);
  }
  n->flush();
  REQUIRE(n.advance_until(200ms, 1ms, [&] { return n->role() != Role::leader; }));
  for (std::size_t i = 0; i < reads.size(); ++i) {
    CAPTURE(i);
    REQUIRE(reads[i].completed());
    CHECK(reads[i].code() == errc::leadership_lost);
  }
  CHECK(n->pending_reads() == 0);
}

TEST_CASE("ReadIndex: past max_pending_reads a read is refused at once with overloaded") {
  std::deque<TrackedRead> reads;
  Harness h(3, [](NodeId) {
    NodeOptions o;
    o.config.max_pending_reads = 5;
    return o;
  });
  REQUIRE(h.elect(1));
  TestNode& n = h.node(1);
  for (int i = 0; i < 5; ++i) {
    n->read_index(reads.emplace_back().op);
    CHECK_FALSE(reads.back().completed());
  }
  n->read_index(reads.emplace_back().op);
  REQUIRE(reads.back().completed());
  CHECK(reads.back().code() == errc::overloaded);
  CHECK(n->pending_reads() == 5);
  n->flush();
  h.deliver_all();
  CHECK(n->pending_reads() == 0);
  n->read_index(reads.emplace_back().op);  // room again
  CHECK_FALSE(reads.back().completed());
  n->flush();
  h.deliver_all();
  CHECK(reads.back().succeeded());
}

TEST_CASE("ReadIndex: a read ends with timed_out at its deadline - not before") {
  std::deque<TrackedRead> reads;
  Harness h(3);
  REQUIRE(h.elect(1));
  TestNode& n = h.node(1);
  const auto deadline = n.clock().now() + 30ms;
  n->read_index(reads.emplace_back(&n.clock()).op, deadline);
  n->flush();
  h.clear_all();  // the round is lost
  n.advance(29ms);
  CHECK_FALSE(reads[0].completed());
  n.advance(1ms);
  REQUIRE(reads[0].completed());
  CHECK(reads[0].code() == errc::timed_out);
  CHECK(*reads[0].completed_at() == deadline);
}

// =============================================================================================
// Proposals, flow control
// =============================================================================================

TEST_CASE("a follower refuses a proposal with not_leader and the leader hint") {
  std::deque<TrackedPropose> proposals;
  std::deque<TrackedTransfer> transfers;
  Harness h(3);
  REQUIRE(h.elect(1));
  const Bytes payload = bytes_of("p");
  h.group(2).propose(proposals.emplace_back().op, payload);
  REQUIRE(proposals.back().completed());
  CHECK(proposals.back().code() == errc::not_leader);
  CHECK(proposals.back().leader_hint() == 1);
  h.group(2).transfer_leadership(transfers.emplace_back().op, 3);
  REQUIRE(transfers.back().completed());
  CHECK(transfers.back().code() == errc::not_leader);
  CHECK(transfers.back().leader_hint() == 1);
  CHECK(h.group(2).last_index() == h.group(1).last_index());  // nothing appended
}

TEST_CASE("flow control: at most max_inflight_messages appends are in flight to a follower") {
  std::deque<TrackedPropose> proposals;
  Harness h(3, [](NodeId) {
    NodeOptions o;
    o.config.max_inflight_messages = 2;
    o.config.max_entries_per_message = 1;
    return o;
  });
  REQUIRE(h.elect(1));  // followers acknowledged the no-op: replicating
  TestNode& n = h.node(1);
  h.clear_all();
  const Bytes payload = bytes_of("p");
  for (int i = 0; i < 5; ++i) {
    n->propose(proposals.emplace_back().op, payload);
  }
  n->flush();
  auto to2 = addressed(n.transport().take(), MessageType::append, 2);
  REQUIRE(to2.size() == 2);
  CHECK(to2[0].entries().size() == 1);
  CHECK(to2[1]->index == to2[0]->index + 1);  // pipelined, not waiting for the first answer

  h.node(2).deliver(to2[0]);
  n.deliver(only(h.node(2), MessageType::append_response, 1));
  to2 = addressed(n.transport().take(), MessageType::append, 2);
  CHECK(to2.size() == 1);  // one acknowledged, one more may go
}

TEST_CASE(
    "flow control: an append carries at most max_message_bytes - unless one entry is larger") {
  std::deque<TrackedPropose> proposals;
  Harness h(3, [](NodeId) {
    NodeOptions o;
    o.config.max_message_bytes = 100;
    return o;
  });
  REQUIRE(h.elect(1));
  TestNode& n = h.node(1);
  h.clear_all();
  const Bytes small(40, std::byte{1});
  const Bytes big(250, std::byte{2});
  for (int i = 0; i < 3; ++i) {
    n->propose(proposals.emplace_back().op, small);
  }
  n->propose(proposals.emplace_back().op, big);
  n->flush();
  const auto to2 = addressed(n.transport().take(), MessageType::append, 2);
  std::vector<std::size_t> sizes;
  for (const CapturedMessage& m : to2) {
    std::size_t bytes = 0;
    for (const auto& e : m.entries()) {
      bytes += e.payload.size();
    }
    sizes.push_back(bytes);
  }
  CHECK(sizes == std::vector<std::size_t>{80, 40, 250});
}

TEST_CASE("proposals beyond max_uncommitted_bytes are refused with overloaded") {
  std::deque<TrackedPropose> proposals;
  Harness h(3, [](NodeId) {
    NodeOptions o;
    o.config.max_uncommitted_bytes = 1000;
    return o;
  });
  REQUIRE(h.elect(1));
  TestNode& n = h.node(1);
  const Bytes payload(100, std::byte{7});
  for (int i = 0; i < 10; ++i) {
    n->propose(proposals.emplace_back().op, payload);
    CHECK_FALSE(proposals.back().completed());
  }
  CHECK(n->uncommitted_bytes() == 1000);
  n->propose(proposals.emplace_back().op, payload);
  REQUIRE(proposals.back().completed());
  CHECK(proposals.back().code() == errc::overloaded);
  const LogIndex last = n->last_index();
  n->flush();
  h.deliver_all();
  CHECK(n->uncommitted_bytes() == 0);
  for (std::size_t i = 0; i < 10; ++i) {
    CAPTURE(i);
    CHECK(proposals[i].succeeded());
  }
  CHECK(n->commit_index() == last);
  n->propose(proposals.emplace_back().op, payload);  // room again
  CHECK_FALSE(proposals.back().completed());
}

// Regression: in the replicate state a lost append was never sent again until a new proposal
// made the follower reject; an idle follower stayed behind for good (fixed in bee43e0: a
// heartbeat response from a follower that is behind triggers an append, empty if need be).
TEST_CASE("replication: a follower whose append was lost catches up without new proposals") {
  std::deque<TrackedPropose> proposals;
  Harness h(3);
  REQUIRE(h.elect(1));
  TestNode& n = h.node(1);
  const Bytes payload = bytes_of("p");
  n->propose(proposals.emplace_back().op, payload);
  n->flush();
  h.deliver_all([](const Message& m) { return m.type == MessageType::append && m.to == 3; });
  REQUIRE(proposals[0].succeeded());
  REQUIRE(h.group(3).last_index() < n->last_index());
  // Heartbeats flow both ways; no new proposal ever comes.
  for (int i = 0; i < 10; ++i) {
    h.tick_all(20ms);
    h.deliver_all();
  }
  CHECK(h.group(3).last_index() == n->last_index());
  CHECK(h.group(3).commit_index() == n->commit_index());
  CHECK(n->match_of(3) == n->last_index());
}

// =============================================================================================
// Operations: deadlines, a single voter, stop, storage failure
// =============================================================================================

TEST_CASE("a proposal without a quorum ends with timed_out at its deadline") {
  std::deque<TrackedPropose> proposals;
  Harness h(3, [](NodeId) {
    NodeOptions o;
    o.config.check_quorum = false;
    return o;
  });
  REQUIRE(h.elect(1));
  TestNode& n = h.node(1);
  const auto deadline = n.clock().now() + 50ms;
  const Bytes payload = bytes_of("p");
  n->propose(proposals.emplace_back(&n.clock()).op, payload, deadline);
  n->propose(proposals.emplace_back(&n.clock()).op, payload);  // default_operation_timeout
  n->flush();
  h.clear_all();
  n.advance(49ms);
  CHECK_FALSE(proposals[0].completed());
  n.advance(1ms);
  REQUIRE(proposals[0].completed());
  CHECK(proposals[0].code() == errc::timed_out);
  CHECK(*proposals[0].completed_at() == deadline);
  CHECK_FALSE(proposals[1].completed());
  REQUIRE(n.advance_until(5s, 10ms, [&] { return proposals[1].completed(); }));
  CHECK(proposals[1].code() == errc::timed_out);
  CHECK(*proposals[1].completed_at() - (deadline - 50ms) <= n->config().default_operation_timeout);
  CHECK(*proposals[1].completed_at() - (deadline - 50ms) >
        n->config().default_operation_timeout - 10ms);
}

TEST_CASE("a single-voter group leads - commits and reads on its own") {
  std::deque<TrackedPropose> proposals;
  std::deque<TrackedRead> reads;
  TestNode n(1, {1});
  REQUIRE(n.advance_until(300ms, 1ms, [&] { return n->role() == Role::leader; }));
  CHECK(n.transport().empty());
  CHECK(n->commit_index() == 1);  // its no-op
  CHECK(n->leader_term() == n->term());
  const Bytes payload = bytes_of("solo");
  n->propose(proposals.emplace_back().op, payload);
  n->flush();
  REQUIRE(proposals[0].succeeded());
  CHECK(proposals[0].outcome()->value().index == 2);
  n->read_index(reads.emplace_back().op);
  n->flush();
  REQUIRE(reads[0].succeeded());
  CHECK(reads[0].outcome()->value() == 2);
  CHECK(n.machine().applied() == std::vector<tenure::testing::AppliedEntry>{{2, bytes_of("solo")}});
}

TEST_CASE("stop() completes every pending operation with stopped - exactly once") {
  std::deque<TrackedPropose> proposals;
  std::deque<TrackedRead> reads;
  std::deque<TrackedTransfer> transfers;
  Harness h(3);
  REQUIRE(h.elect(1));
  TestNode& n = h.node(1);
  const Bytes payload = bytes_of("p");
  n->propose(proposals.emplace_back().op, payload);
  n->read_index(reads.emplace_back().op);
  h.cut(1, 3);
  n->flush();
  h.deliver_all([](const Message& m) { return m.type == MessageType::append; });
  n->transfer_leadership(transfers.emplace_back().op, 3);
  REQUIRE_FALSE(transfers[0].completed());
  n->stop();
  CHECK(n->stopped());
  CHECK(n->role() == Role::follower);
  CHECK(n->leader_term() == 0);
  CHECK(proposals[0].code() == errc::stopped);
  CHECK(reads[0].code() == errc::stopped);
  CHECK(transfers[0].code() == errc::stopped);
  CHECK(proposals[0].calls() + reads[0].calls() + transfers[0].calls() == 3);
  n->stop();  // idempotent
  CHECK(proposals[0].calls() + reads[0].calls() + transfers[0].calls() == 3);
  n->propose(proposals.emplace_back().op, payload);
  CHECK(proposals.back().code() == errc::stopped);
  n->read_index(reads.emplace_back().op);
  CHECK(reads.back().code() == errc::stopped);
}

TEST_CASE("a storage failure stops the group: pending operations fail with storage_failure") {
  std::deque<TrackedPropose> proposals;
  std::deque<TrackedRead> reads;
  Harness h(3);
  REQUIRE(h.elect(1));
  TestNode& n = h.node(1);
  h.clear_all();
  const Bytes payload = bytes_of("p");
  n->propose(proposals.emplace_back().op, payload);
  n->read_index(reads.emplace_back().op);
  n.storage().fail(std::make_error_code(std::errc::io_error));
  n->flush();
  CHECK(n->stopped());
  CHECK(proposals[0].code() == errc::storage_failure);
  CHECK(reads[0].code() == errc::storage_failure);
  CHECK(n.transport().empty());  // fail-stop: nothing more leaves
}

// =============================================================================================
// Leadership transfer (thesis 3.10)
// =============================================================================================

TEST_CASE(
    "transfer: TimeoutNow leaves only once the target has caught up - the target wins at once") {
  std::deque<TrackedPropose> proposals;
  std::deque<TrackedTransfer> transfers;
  Harness h(3);
  REQUIRE(h.elect(1));
  const Term term = h.group(1).term();
  TestNode& n = h.node(1);
  const Bytes payload = bytes_of("p");

  // Node 3 falls behind: its append is held back (not lost) while node 2 commits the entry.
  n->propose(proposals.emplace_back().op, payload);
  n->flush();
  const auto sent = n.transport().take();
  const auto held = addressed(sent, MessageType::append, 3);
  REQUIRE(held.size() == 1);
  h.node(2).deliver(addressed(sent, MessageType::append, 2).front());
  n.deliver(only(h.node(2), MessageType::append_response, 1));
  REQUIRE(proposals[0].succeeded());
  REQUIRE(n->match_of(3) < n->last_index());

  n->transfer_leadership(transfers.emplace_back(&n.clock()).op, 3);
  CHECK(n->transferring());
  CHECK(n->leader_term() == 0);  // the lease ends before TimeoutNow can leave
  CHECK(n.transport().count(MessageType::timeout_now) == 0);
  n->propose(proposals.emplace_back().op, payload);
  REQUIRE(proposals.back().completed());
  CHECK(proposals.back().code() == errc::transfer_in_progress);
  CHECK(proposals.back().leader_hint() == 1);

  h.node(3).deliver(held.front());
  n.deliver(only(h.node(3), MessageType::append_response, 1));
  CHECK(n->match_of(3) == n->last_index());
  CHECK(n.transport().count(MessageType::timeout_now) == 1);

  h.deliver_all([&](const Message& m) {
    if (m.type == MessageType::vote && m.from == 3) {
      CHECK((m.flags & kFlagTransfer) != 0);  // voters in their lease still answer it
    }
    CHECK(m.type != MessageType::pre_vote);  // no pre-vote round
    return false;
  });
  CHECK(h.group(3).role() == Role::leader);
  CHECK(h.group(3).term() == term + 1);
  CHECK(h.group(1).role() == Role::follower);
  CHECK(h.group(1).leader() == 3);
  REQUIRE(transfers[0].completed());
  CHECK(transfers[0].calls() == 1);
  CHECK(transfers[0].code() == std::error_code{});
  CHECK(transfers[0].succeeded());
}

TEST_CASE("transfer: a second transfer - a non-member - and the leader itself") {
  std::deque<TrackedTransfer> transfers;
  Harness h(3);
  REQUIRE(h.elect(1));
  TestNode& n = h.node(1);
  n->transfer_leadership(transfers.emplace_back().op, 9);
  CHECK(transfers.back().code() == errc::invalid_argument);
  n->transfer_leadership(transfers.emplace_back().op, 1);
  CHECK(transfers.back().succeeded());
  h.cut(1, 2);
  n->transfer_leadership(transfers.emplace_back(&n.clock()).op, 2, n.clock().now() + 50ms);
  CHECK_FALSE(transfers.back().completed());
  n->transfer_leadership(transfers.emplace_back().op, 3);
  CHECK(transfers.back().code() == errc::transfer_in_progress);
  // The pending one ends at its deadline, and the leader serves again.
  TrackedTransfer& pending = transfers[2];
  n.advance(50ms);
  REQUIRE(pending.completed());
  CHECK(pending.code() == errc::timed_out);
  CHECK_FALSE(n->transferring());
  CHECK(n->role() == Role::leader);
}

// Hole 4 (CHANGELOG 0.2.0): campaign() on a follower inside the leader's lease elected a new
// leader (the follower voting for itself) while the old one still served lease reads.
TEST_CASE(
    "campaign() inside a leader's lease: refused with leader_active - or served by the leader as "
    "a transfer") {
  Harness h(3);
  REQUIRE(h.elect(1));
  const Term term = h.group(1).term();
  TestNode& f = h.node(2);
  h.clear_all();
  f.clock().advance(50ms);

  SUBCASE("refused by default, and nothing leaves") {
    CHECK(f->campaign() == errc::leader_active);
    CHECK(f.transport().empty());
    CHECK(f->term() == term);
    CHECK(f->role() == Role::follower);
    f.clock().advance(50ms);  // the leader's lease has run out on the follower's clock
    CHECK_FALSE(f->campaign());
    CHECK(f->role() != Role::follower);
  }
  SUBCASE("transfer_from_leader: the leader revokes its lease, then hands over") {
    REQUIRE_FALSE(f->campaign(tenure::raft::CampaignMode::transfer_from_leader));
    REQUIRE(f.transport().count(MessageType::transfer_request) == 1);
    CHECK(f->role() == Role::follower);  // it does not campaign itself
    h.node(1).deliver(only(f, MessageType::transfer_request, 1));
    CHECK(h.group(1).transferring());
    CHECK(h.group(1).leader_term() == 0);  // lease gone before TimeoutNow can leave
    h.deliver_all();
    CHECK(f->role() == Role::leader);
    CHECK(f->term() == term + 1);
    CHECK(h.group(1).role() == Role::follower);
  }
  SUBCASE("a leader ignores a request from a non-member, and from its own term's past") {
    Message stranger = make_message(MessageType::transfer_request, 9, 1, term);
    h.node(1).deliver(stranger);
    Message stale = make_message(MessageType::transfer_request, 2, 1, term - 1);
    h.node(1).deliver(stale);
    CHECK_FALSE(h.group(1).transferring());
    CHECK(h.group(1).leader_term() == term);
  }
}

TEST_CASE("campaign() right after a start waits out the lease a crashed node may still hold") {
  TestNode n(1, {1, 2, 3}, with_log({1, 2, 3}, 3));
  n.clock().advance(10s);
  n.restart();
  n.clock().advance(99ms);
  CHECK(n->campaign() == errc::leader_active);
  CHECK(n->campaign(tenure::raft::CampaignMode::transfer_from_leader) == errc::not_leader);
  CHECK(n.transport().empty());
  n.clock().advance(1ms);
  CHECK_FALSE(n->campaign());
  CHECK(n->role() == Role::pre_candidate);
}

// Hole 5 (CHANGELOG 0.2.0): compaction dropped entries a live follower still needed, and without
// snapshots the follower could never catch up.
TEST_CASE("compaction keeps every entry a follower heard from within election_timeout_min needs") {
  std::deque<TrackedPropose> proposals;
  Harness h(3, [](NodeId) {
    NodeOptions o;
    o.config.log_retention_entries = 4;
    return o;
  });
  REQUIRE(h.elect(1));
  TestNode& n = h.node(1);
  const Bytes payload = bytes_of("p");
  // Node 3 hears heartbeats and answers them, but every append to it is lost: live, and behind.
  const auto appends_to_3 = [](const Message& m) {
    return m.type == MessageType::append && m.to == 3;
  };
  const auto write = [&](int count) {
    for (int i = 0; i < count; ++i) {
      n->propose(proposals.emplace_back().op, payload);
      n->flush();
      h.deliver_all(appends_to_3);
    }
    REQUIRE(proposals.back().succeeded());
  };
  for (int i = 0; i < 8; ++i) {  // past the new leader's grace period
    h.tick_all(20ms);
    h.deliver_all(appends_to_3);
  }
  const LogIndex behind = n->match_of(3);
  write(40);
  REQUIRE(n->last_index() > behind + 30);

  SUBCASE("a live follower's entries stay, and it catches up") {
    CHECK(n.storage().first_index() <= behind + 1);
    h.tick_all(20ms);
    h.deliver_all();
    CHECK(h.group(3).last_index() == n->last_index());
  }
  SUBCASE("a follower silent for election_timeout_min no longer holds compaction back") {
    h.isolate(3);
    for (int i = 0; i < 6; ++i) {
      h.tick_all(20ms);
      h.deliver_all();
    }
    write(10);
    CHECK(n.storage().first_index() > behind + 1);
    CHECK(n->last_index() - n.storage().first_index() < 20);  // the retention tail, roughly
  }
}
