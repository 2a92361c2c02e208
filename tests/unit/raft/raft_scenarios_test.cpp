// RaftGroup in whole-cluster scenarios on SimCluster: split votes, a partitioned leader, the
// ReadIndex pile-up (docs/background.md), PreVote on rejoin, leadership transfer under load, and
// the error contract of proposals and reads (lessons 1 to 3). Simulated time only; every run is
// seeded and prints its seed when it fails.
#include <raft/errc.hpp>
#include <raft/raft_group.hpp>
#include <raft/random.hpp>
#include <raft/testing/sim_cluster.hpp>
#include <raft/types.hpp>

#include "../../support/raft_harness.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <initializer_list>
#include <map>
#include <string>
#include <system_error>
#include <vector>

using namespace std::chrono_literals;
using tenure::raft::errc;
using tenure::raft::kNoNode;
using tenure::raft::LogIndex;
using tenure::raft::NodeId;
using tenure::raft::Role;
using tenure::raft::Term;
using tenure::raft::Xoshiro256;
using tenure::testing::Bytes;
using tenure::testing::bytes_of;
using tenure::testing::RecordingStateMachine;
using tenure::testing::TimePoint;
using tenure::testing::TrackedPropose;
using tenure::testing::TrackedRead;
using tenure::testing::TrackedTransfer;

namespace {

using Cluster = tenure::raft::testing::SimCluster<RecordingStateMachine>;

constexpr std::chrono::nanoseconds kTick = 2ms;  // SimCluster's default tick_interval

Cluster::Options options(std::uint64_t seed, std::size_t nodes) {
  Cluster::Options o;
  o.seed = seed;
  o.nodes = nodes;
  o.tick_interval = kTick;
  return o;
}

// Moves simulated time to the next tick boundary, so that deadlines computed from it fall on a
// tick and expire exactly at their instant.
void align_to_tick(Cluster& c) {
  const std::int64_t rest = c.now() % kTick.count();
  if (rest != 0) {
    c.run_for(std::chrono::nanoseconds(kTick.count() - rest));
  }
}

// Election safety (Figure 3): at most one leader per term, checked after every event.
struct ElectionSafety {
  std::map<Term, NodeId> leaders;
  Term violated_in = 0;

  void observe(Cluster& c) {
    for (NodeId id : c.ids()) {
      auto& g = c.group(id);
      if (g.role() != Role::leader) {
        continue;
      }
      const auto [it, inserted] = leaders.emplace(g.term(), id);
      if (!inserted && it->second != id) {
        violated_in = g.term();
      }
    }
  }
};

// State machine safety: no two nodes applied different payloads at the same index.
void check_applied_agree(Cluster& c) {
  for (NodeId a : c.ids()) {
    for (NodeId b : c.ids()) {
      if (a >= b) {
        continue;
      }
      for (const auto& e : c.machine(a).applied()) {
        const Bytes* other = c.machine(b).payload_at(e.index);
        if (other != nullptr) {
          CAPTURE(a);
          CAPTURE(b);
          CAPTURE(e.index);
          CHECK(*other == e.payload);
        }
      }
    }
    CHECK(c.machine(a).in_order());
  }
}

bool applied_anywhere(Cluster& c, const Bytes& payload) {
  for (NodeId id : c.ids()) {
    for (const auto& e : c.machine(id).applied()) {
      if (e.payload == payload) {
        return true;
      }
    }
  }
  return false;
}

// Proposes at `id` and runs until the proposal completes; returns whether it succeeded.
bool commit_one(Cluster& c, NodeId id, std::deque<TrackedPropose>& proposals, const Bytes& payload,
                std::chrono::nanoseconds limit = 2s) {
  auto& p = proposals.emplace_back(&c.clock(id));
  c.group(id).propose(p.op, payload);
  c.group(id).flush();
  c.run_until([&] { return p.completed(); }, limit);
  return p.succeeded();
}

// Cuts every node but `leader` off from everyone: the leader stays, but no quorum answers it
// and the followers cannot elect among themselves.
void isolate_followers(Cluster& c, NodeId leader) {
  for (NodeId id : c.ids()) {
    if (id != leader) {
      c.network().isolate(id);
    }
  }
}

bool is_one_of(std::error_code ec, std::initializer_list<errc> codes) {
  return std::any_of(codes.begin(), codes.end(),
                     [&](errc e) { return ec == tenure::raft::make_error_code(e); });
}

}  // namespace

// =============================================================================================
// Elections
// =============================================================================================

TEST_CASE("split votes resolve: one leader emerges and no term ever has two leaders") {
  Term leaderless_terms = 0;
  for (std::uint64_t seed = 1; seed <= 30; ++seed) {
    CAPTURE(seed);
    Cluster::Options o = options(seed, 5);
    o.config.election_timeout_min = 100ms;  // a 5 ms spread against up to 2 ms of delay:
    o.config.election_timeout_max = 105ms;  // candidates often collide
    Cluster c(o);
    ElectionSafety safety;
    c.run_until(
        [&] {
          safety.observe(c);
          return false;
        },
        3s);
    CHECK(safety.violated_in == 0);
    const NodeId leader = c.leader();
    REQUIRE(leader != kNoNode);
    for (NodeId id : c.ids()) {
      CAPTURE(id);
      CHECK(c.group(id).term() == c.group(leader).term());
      CHECK(c.group(id).leader() == leader);
    }
    leaderless_terms += c.group(leader).term() - safety.leaders.size();
  }
  CHECK(leaderless_terms > 0);  // votes did split: some terms ended without a leader
}

TEST_CASE("split votes resolve: two forced simultaneous campaigns") {
  for (std::uint64_t seed = 1; seed <= 20; ++seed) {
    CAPTURE(seed);
    Cluster c(options(seed, 4));
    c.run_for(100ms);  // past every node's post-start vote hold-off
    REQUIRE_FALSE(c.group(1).campaign());
    REQUIRE_FALSE(c.group(2).campaign());
    ElectionSafety safety;
    const bool elected = c.run_until(
        [&] {
          safety.observe(c);
          const NodeId l = c.leader();
          return l != kNoNode && c.group(l).leader_term() != 0;
        },
        5s);
    CHECK(elected);
    CHECK(safety.violated_in == 0);
    c.run_for(500ms);
    const NodeId leader = c.leader();
    REQUIRE(leader != kNoNode);
    for (NodeId id : c.ids()) {
      CAPTURE(id);
      CHECK(c.group(id).leader() == leader);
    }
  }
}

// =============================================================================================
// A partitioned leader (section 5, CheckQuorum)
// =============================================================================================

TEST_CASE(
    "a partitioned leader cannot commit - steps down by CheckQuorum - and the majority elects a "
    "leader that commits") {
  for (std::uint64_t seed = 1; seed <= 8; ++seed) {
    CAPTURE(seed);
    std::deque<TrackedPropose> proposals;
    std::deque<TrackedRead> reads;
    Cluster c(options(seed, 5));
    const NodeId old_leader = c.wait_for_leader();
    REQUIRE(old_leader != kNoNode);
    REQUIRE(commit_one(c, old_leader, proposals, bytes_of("warm-up")));
    align_to_tick(c);

    auto& g = c.group(old_leader);
    auto& clock = c.clock(old_leader);
    const Term old_term = g.term();
    const std::int64_t t0 = c.now();
    c.network().isolate(old_leader);

    const Bytes lost = bytes_of("minority-" + std::to_string(seed));
    auto& minority = proposals.emplace_back(&clock);
    g.propose(minority.op, lost);
    const TimePoint short_deadline = clock.now() + 40ms;
    auto& short_read = reads.emplace_back(&clock);
    g.read_index(short_read.op, short_deadline);
    const TimePoint long_deadline = clock.now() + g.config().default_operation_timeout;
    auto& long_read = reads.emplace_back(&clock);
    g.read_index(long_read.op);
    g.flush();

    REQUIRE(c.run_until([&] { return g.role() != Role::leader; }, 1s));
    const auto stepped_down_after = std::chrono::nanoseconds(c.now() - t0);
    CAPTURE(stepped_down_after.count());
    // The last acknowledged heartbeat left at most a heartbeat interval and a round trip before
    // t0; CheckQuorum fires election_timeout_min after it, at the next tick.
    CHECK(stepped_down_after <= g.config().election_timeout_min + kTick);
    CHECK(stepped_down_after >=
          g.config().election_timeout_min - g.config().heartbeat_interval - 2 * 2ms);
    CHECK(g.term() == old_term);
    CHECK(g.leader_term() == 0);

    REQUIRE(short_read.completed());
    CHECK(short_read.code() == errc::timed_out);
    CHECK(*short_read.completed_at() == short_deadline);
    REQUIRE(minority.completed());  // failed by the step-down at the latest, never a success
    CHECK(is_one_of(minority.code(), {errc::leadership_lost, errc::timed_out}));
    // A read no round can confirm any more ends with the step-down, not at its distant deadline.
    REQUIRE(long_read.completed());
    CHECK(long_read.code() == errc::leadership_lost);
    CHECK(*long_read.completed_at() == clock.now());
    CHECK(*long_read.completed_at() < long_deadline);

    NodeId new_leader = kNoNode;
    REQUIRE(c.run_until(
        [&] {
          new_leader = c.leader();
          return new_leader != kNoNode && new_leader != old_leader &&
                 c.group(new_leader).leader_term() != 0;
        },
        2s));
    CHECK(c.group(new_leader).term() > old_term);
    CHECK(commit_one(c, new_leader, proposals, bytes_of("majority-" + std::to_string(seed))));

    c.network().heal();
    c.run_for(1s);
    CHECK(g.role() == Role::follower);
    CHECK(g.term() == c.group(new_leader).term());
    CHECK(g.leader() == new_leader);
    CHECK_FALSE(applied_anywhere(c, lost));  // the minority's entry was overwritten, never applied
    CHECK(minority.calls() == 1);
    check_applied_agree(c);
  }
}

// =============================================================================================
// The ReadIndex pile-up (docs/background.md): reads stuck behind a lost quorum (lessons 1 and 2)
// =============================================================================================

TEST_CASE(
    "the ReadIndex pile-up: with the quorum lost - thousands of ReadIndex calls each end by their "
    "deadline and the pending queue stays bounded") {
  constexpr std::uint32_t kMaxPending = 1000;
  constexpr int kBatches = 100;
  constexpr int kPerBatch = 50;  // 5000 reads over 200 ms
  bool check_quorum = false;
  SUBCASE("without CheckQuorum: the stalled leader keeps leading") {
    check_quorum = false;
  }
  SUBCASE("with CheckQuorum: the stalled leader steps down meanwhile") {
    check_quorum = true;
  }
  CAPTURE(check_quorum);
  for (std::uint64_t seed = 11; seed <= 13; ++seed) {
    CAPTURE(seed);
    std::deque<TrackedPropose> proposals;
    std::deque<TrackedRead> reads;
    Cluster::Options o = options(seed, 3);
    o.config.max_pending_reads = kMaxPending;
    o.config.check_quorum = check_quorum;
    Cluster c(o);
    const NodeId leader = c.wait_for_leader();
    REQUIRE(leader != kNoNode);
    REQUIRE(commit_one(c, leader, proposals, bytes_of("warm-up")));
    align_to_tick(c);

    // One follower loses its route, the other stalls as well: no quorum answers the leader.
    isolate_followers(c, leader);
    auto& g = c.group(leader);
    auto& clock = c.clock(leader);
    Xoshiro256 random(seed);
    std::vector<TimePoint> deadlines;
    std::uint32_t most_pending = 0;
    int refused_full = 0;
    for (int batch = 0; batch < kBatches; ++batch) {
      for (int k = 0; k < kPerBatch; ++k) {
        const std::uint32_t pending_before = g.pending_reads();
        const TimePoint deadline = clock.now() + (5 + static_cast<int>(random.below(146))) * kTick;
        auto& r = reads.emplace_back(&clock);
        deadlines.push_back(deadline);
        g.read_index(r.op, deadline);
        if (pending_before >= kMaxPending) {
          CAPTURE(reads.size());
          REQUIRE(r.completed());  // refused at once, not queued
          CHECK(r.code() == errc::overloaded);
          ++refused_full;
        } else if (r.completed()) {
          CHECK(r.code() == errc::not_leader);  // only once it no longer leads
          CHECK(g.role() != Role::leader);
        }
        most_pending = std::max(most_pending, g.pending_reads());
      }
      g.flush();
      c.run_until(
          [&] {
            most_pending = std::max(most_pending, g.pending_reads());
            return false;
          },
          kTick);
    }
    c.run_until(
        [&] {
          most_pending = std::max(most_pending, g.pending_reads());
          return std::all_of(reads.begin(), reads.end(),
                             [](const TrackedRead& r) { return r.completed(); });
        },
        1s);

    CHECK(most_pending <= kMaxPending);
    CHECK(refused_full > 0);  // the bound was reached
    int timed_out = 0;
    for (std::size_t i = 0; i < reads.size(); ++i) {
      CAPTURE(i);
      const TrackedRead& r = reads[i];
      REQUIRE(r.completed());
      CHECK(r.calls() == 1);
      CHECK_FALSE(r.succeeded());  // no quorum ever confirmed leadership
      REQUIRE(r.completed_at().has_value());
      CHECK(*r.completed_at() <= deadlines[i]);  // never later than the caller's deadline
      if (r.code() == errc::timed_out) {
        CHECK(*r.completed_at() == deadlines[i]);  // and a timeout not before it either
        ++timed_out;
      }
    }
    CHECK(timed_out > 0);
    CHECK(g.pending_reads() == 0);

    // The quorum returns: new reads succeed.
    c.network().heal();
    NodeId now_leading = kNoNode;
    REQUIRE(c.run_until(
        [&] {
          now_leading = c.leader();
          return now_leading != kNoNode && c.group(now_leading).leader_term() != 0 &&
                 std::all_of(c.ids().begin(), c.ids().end(),
                             [&](NodeId id) { return c.group(id).leader() == now_leading; });
        },
        2s));
    for (NodeId at : c.ids()) {
      CAPTURE(at);
      auto& r = reads.emplace_back(&c.clock(at));
      c.group(at).read_index(r.op);
      c.group(at).flush();
      c.run_until([&] { return r.completed(); }, 1s);
      CHECK(r.succeeded());
    }
  }
}

// =============================================================================================
// PreVote (thesis 9.6)
// =============================================================================================

TEST_CASE("PreVote keeps a rejoining node from inflating terms or disrupting the leader") {
  for (std::uint64_t seed = 1; seed <= 10; ++seed) {
    CAPTURE(seed);
    std::deque<TrackedPropose> proposals;
    Cluster c(options(seed, 5));
    const NodeId leader = c.wait_for_leader();
    REQUIRE(leader != kNoNode);
    REQUIRE(commit_one(c, leader, proposals, bytes_of("warm-up")));
    const Term term = c.group(leader).term();
    const auto times_leader = c.group(leader).stats().times_leader;
    const NodeId rejoining = leader % 5 + 1;
    const auto campaigns = c.group(rejoining).stats().elections_started;

    c.network().isolate(rejoining);
    c.run_for(1s);  // five maximal election timeouts
    CHECK(c.group(rejoining).stats().elections_started >= campaigns + 5);  // it kept trying
    CHECK(c.group(rejoining).term() == term);                              // ... in vain

    c.network().heal();
    ElectionSafety safety;
    c.run_until(
        [&] {
          safety.observe(c);
          return false;
        },
        1s);
    CHECK(c.leader() == leader);
    CHECK(c.group(leader).stats().times_leader == times_leader);
    CHECK(safety.leaders.size() == 1);
    for (NodeId id : c.ids()) {
      CAPTURE(id);
      CHECK(c.group(id).term() == term);
      CHECK(c.group(id).leader() == leader);
    }
    CHECK(commit_one(c, leader, proposals, bytes_of("after")));
  }
}

TEST_CASE("without PreVote the same isolation does inflate the term (the scenario has teeth)") {
  std::deque<TrackedPropose> proposals;
  Cluster::Options o = options(3, 5);
  o.config.pre_vote = false;
  Cluster c(o);
  const NodeId leader = c.wait_for_leader();
  REQUIRE(leader != kNoNode);
  const Term term = c.group(leader).term();
  const NodeId rejoining = leader % 5 + 1;
  c.network().isolate(rejoining);
  c.run_for(1s);
  CHECK(c.group(rejoining).term() >= term + 5);
}

// Regression: see raft_paper_test.cpp, "PreVote: a leader with a live quorum does not help a
// rejoining follower disrupt it"; the rejoining node's campaign is forced right at the heal, as
// its own timer does by chance.
TEST_CASE(
    "PreVote: a rejoining follower of a 3-node group does not disrupt a leader with a live "
    "quorum") {
  for (std::uint64_t seed = 1; seed <= 10; ++seed) {
    CAPTURE(seed);
    std::deque<TrackedPropose> proposals;
    Cluster c(options(seed, 3));
    const NodeId leader = c.wait_for_leader();
    REQUIRE(leader != kNoNode);
    REQUIRE(commit_one(c, leader, proposals, bytes_of("warm-up")));
    const Term term = c.group(leader).term();
    const NodeId rejoining = leader % 3 + 1;
    c.network().isolate(rejoining);
    c.run_for(1s);
    c.network().heal();
    REQUIRE_FALSE(c.group(rejoining).campaign());
    c.run_for(1s);
    CHECK(c.leader() == leader);
    for (NodeId id : c.ids()) {
      CAPTURE(id);
      CHECK(c.group(id).term() == term);
    }
  }
}

// =============================================================================================
// Leadership transfer (thesis 3.10)
// =============================================================================================

namespace {

// Proposes at whoever leads, once per millisecond for 400 ms, and transfers leadership at 100 ms.
// `reordering`: links deliver in random order (delays of 0.5 to 2 ms); otherwise every message
// takes exactly 1 ms, so each link is FIFO.
void transfer_under_load(std::uint64_t seed, bool reordering) {
  CAPTURE(seed);
  CAPTURE(reordering);
  std::deque<TrackedPropose> proposals;
  std::deque<TrackedTransfer> transfers;
  std::vector<Bytes> payloads;
  Cluster::Options o = options(seed, 3);
  if (!reordering) {
    o.network.min_delay = 1ms;
    o.network.max_delay = 1ms;
  }
  Cluster c(o);
  const NodeId leader = c.wait_for_leader();
  REQUIRE(leader != kNoNode);
  REQUIRE(c.run_until([&] { return c.group(leader).leader_term() != 0; }, 1s));
  const NodeId target = leader % 3 + 1;
  const Term term = c.group(leader).term();

  int refused_for_transfer = 0;
  for (int step = 0; step < 400; ++step) {
    if (step == 100) {
      c.group(leader).transfer_leadership(transfers.emplace_back(&c.clock(leader)).op, target);
      REQUIRE_FALSE(transfers.back().completed());
    }
    const NodeId at = c.leader();
    payloads.push_back(bytes_of(std::to_string(seed) + "/" + std::to_string(step)));
    auto& p = proposals.emplace_back(at == kNoNode ? nullptr : &c.clock(at));
    if (at != kNoNode) {
      auto& g = c.group(at);
      const bool transferring = g.transferring();
      g.propose(p.op, payloads.back());
      g.flush();
      if (transferring) {
        CAPTURE(step);
        REQUIRE(p.completed());
        CHECK(p.code() == errc::transfer_in_progress);
        ++refused_for_transfer;
      }
    }
    c.run_for(1ms);
  }
  c.run_for(1s);

  CHECK(refused_for_transfer > 0);
  REQUIRE(transfers.size() == 1);
  REQUIRE(transfers[0].completed());
  CHECK(transfers[0].calls() == 1);
  CHECK(transfers[0].code() == std::error_code{});
  CHECK(c.leader() == target);
  CHECK(c.group(target).term() == term + 1);

  // Every acknowledged proposal is applied on every node, at its index, with its payload.
  int acknowledged = 0;
  int acknowledged_after = 0;
  for (std::size_t i = 0; i < proposals.size(); ++i) {
    const TrackedPropose& p = proposals[i];
    if (!p.succeeded()) {
      continue;
    }
    ++acknowledged;
    const LogIndex index = p.outcome()->value().index;
    CHECK(p.outcome()->value().result == RecordingStateMachine::result_for(index));
    if (p.outcome()->value().term == term + 1) {
      ++acknowledged_after;
    }
    for (NodeId id : c.ids()) {
      CAPTURE(i);
      CAPTURE(id);
      const Bytes* applied = c.machine(id).payload_at(index);
      REQUIRE(applied != nullptr);
      CHECK(*applied == payloads[i]);
    }
  }
  CHECK(acknowledged > 300);
  CHECK(acknowledged_after > 0);  // the new leader carried the load on
  check_applied_agree(c);
}

}  // namespace

TEST_CASE(
    "leadership transfer under load: proposals during it are refused - the target takes over - and "
    "no acknowledged proposal is lost") {
  for (std::uint64_t seed = 1; seed <= 8; ++seed) {
    transfer_under_load(seed, /*reordering=*/false);
  }
}

// Regression: with links that reorder, seed 3 lost an append for good (the target rejected
// append(prev 100) that overtook append(prev 99); the leader dropped that rejection as stale
// and never resent entry 101), so with proposals refused the transfer could only time out.
TEST_CASE(
    "leadership transfer under load over reordering links: the target takes over and no "
    "acknowledged proposal is lost") {
  for (std::uint64_t seed = 1; seed <= 8; ++seed) {
    transfer_under_load(seed, /*reordering=*/true);
  }
}

// =============================================================================================
// ReadIndex (thesis 6.4)
// =============================================================================================

TEST_CASE(
    "ReadIndex on a follower is forwarded and succeeds - seeing every write acknowledged "
    "before it") {
  const std::uint64_t seed = 5;
  CAPTURE(seed);
  std::deque<TrackedPropose> proposals;
  std::deque<TrackedRead> reads;
  Cluster c(options(seed, 3));
  const NodeId leader = c.wait_for_leader();
  REQUIRE(leader != kNoNode);
  for (int i = 0; i < 20; ++i) {
    CAPTURE(i);
    const Bytes payload = bytes_of("w" + std::to_string(i));
    REQUIRE(commit_one(c, leader, proposals, payload));
    const LogIndex written = proposals.back().outcome()->value().index;
    const NodeId at = (leader + static_cast<NodeId>(i % 2)) % 3 + 1;  // each follower in turn
    REQUIRE(at != leader);
    auto& r = reads.emplace_back(&c.clock(at));
    c.group(at).read_index(r.op);
    c.group(at).flush();
    REQUIRE(c.run_until([&] { return r.completed(); }, 1s));
    REQUIRE(r.succeeded());
    CHECK(r.outcome()->value() >= written);
    // Completion means the read index is applied here: the write is visible.
    CHECK(c.group(at).last_applied() >= r.outcome()->value());
    const Bytes* seen = c.machine(at).payload_at(written);
    REQUIRE(seen != nullptr);
    CHECK(*seen == payload);
  }
}

TEST_CASE(
    "ReadIndex: a read arriving at a new leader before its first commit waits - then "
    "succeeds") {
  for (std::uint64_t seed = 1; seed <= 10; ++seed) {
    CAPTURE(seed);
    std::deque<TrackedRead> reads;
    Cluster c(options(seed, 5));
    for (int round = 0; round < 2; ++round) {
      CAPTURE(round);
      NodeId leader = kNoNode;
      // Stop at the first instant some node leads but has not committed in its term.
      REQUIRE(c.run_until(
          [&] {
            leader = c.leader();
            return leader != kNoNode && c.group(leader).leader_term() == 0 &&
                   c.group(leader).commit_index() < c.group(leader).last_index();
          },
          5s));
      const LogIndex noop = c.group(leader).last_index();
      auto& r = reads.emplace_back(&c.clock(leader));
      c.group(leader).read_index(r.op);
      c.group(leader).flush();
      CHECK_FALSE(r.completed());  // not refused, not answered from the last term's commit
      REQUIRE(c.run_until([&] { return r.completed(); }, 2s));
      CHECK(r.succeeded());
      if (r.succeeded()) {
        CHECK(r.outcome()->value() >= noop);
      }
      c.crash(leader);  // round 2: the next leader, over a log with history
    }
  }
}

TEST_CASE(
    "ReadIndex: a partitioned leader's pending reads fail with leadership_lost when it learns the "
    "newer term") {
  const std::uint64_t seed = 7;
  CAPTURE(seed);
  std::deque<TrackedPropose> proposals;
  std::deque<TrackedRead> reads;
  Cluster::Options o = options(seed, 3);
  o.config.check_quorum = false;  // the isolated leader keeps its term until it hears a newer
  Cluster c(o);
  const NodeId leader = c.wait_for_leader();
  REQUIRE(leader != kNoNode);
  REQUIRE(commit_one(c, leader, proposals, bytes_of("warm-up")));
  auto& g = c.group(leader);
  const Term term = g.term();
  c.network().isolate(leader);
  for (int i = 0; i < 20; ++i) {
    g.read_index(reads.emplace_back(&c.clock(leader)).op);  // default deadline: 5 s
  }
  g.flush();
  REQUIRE(c.run_until(
      [&] {
        for (NodeId id : c.ids()) {
          if (id != leader && c.group(id).role() == Role::leader) {
            return true;
          }
        }
        return false;
      },
      3s));
  c.network().heal();
  REQUIRE(c.run_until([&] { return g.term() > term; }, 1s));
  const TimePoint at = c.clock(leader).now();
  for (std::size_t i = 0; i < reads.size(); ++i) {
    CAPTURE(i);
    REQUIRE(reads[i].completed());
    CHECK(reads[i].code() == errc::leadership_lost);
    CHECK(*reads[i].completed_at() == at);  // at the term change, not at a deadline
  }
  CHECK(g.pending_reads() == 0);
}

// =============================================================================================
// Safety under faults
// =============================================================================================

TEST_CASE(
    "under loss - duplication - reordering and crashes - no term has two leaders and every "
    "acknowledged proposal is applied everywhere at its index") {
  for (std::uint64_t seed = 1; seed <= 12; ++seed) {
    CAPTURE(seed);
    std::deque<TrackedPropose> proposals;
    std::vector<Bytes> payloads;
    Cluster::Options o = options(seed, seed % 2 == 0 ? 5 : 3);
    o.network.drop_rate = 0.05;
    o.network.duplicate_rate = 0.05;
    o.network.max_delay = 5ms;
    Cluster c(o);
    Xoshiro256 random(seed);
    ElectionSafety safety;
    NodeId crashed = kNoNode;
    for (int step = 0; step < 1500; ++step) {
      const NodeId at = c.leader();
      payloads.push_back(bytes_of("c" + std::to_string(seed) + "/" + std::to_string(step)));
      auto& p = proposals.emplace_back(at == kNoNode ? nullptr : &c.clock(at));
      if (at != kNoNode) {
        c.group(at).propose(p.op, payloads.back());
        c.group(at).flush();
      }
      if (step % 300 == 150) {  // crash the leader (or a random node), restart it 150 ms later
        crashed = at != kNoNode ? at : 1 + random.below(c.size());
        c.crash(crashed);
      } else if (step % 300 == 0 && crashed != kNoNode) {
        c.restart(crashed);
        crashed = kNoNode;
      }
      c.run_until(
          [&] {
            safety.observe(c);
            return false;
          },
          1ms);
    }
    if (crashed != kNoNode) {
      c.restart(crashed);
    }
    c.network().set_drop_rate(0);
    c.network().set_duplicate_rate(0);
    c.run_until(
        [&] {
          safety.observe(c);
          return false;
        },
        2s);
    CHECK(safety.violated_in == 0);
    check_applied_agree(c);

    int acknowledged = 0;
    for (std::size_t i = 0; i < proposals.size(); ++i) {
      const TrackedPropose& p = proposals[i];
      CHECK(p.calls() <= 1);
      if (!p.succeeded()) {
        continue;
      }
      ++acknowledged;
      const LogIndex index = p.outcome()->value().index;
      for (NodeId id : c.ids()) {
        CAPTURE(i);
        CAPTURE(id);
        const Bytes* applied = c.machine(id).payload_at(index);
        REQUIRE(applied != nullptr);
        CHECK(*applied == payloads[i]);
      }
    }
    CHECK(acknowledged > 0);
    // Once the faults stop, the cluster is live again and every node catches up.
    const NodeId leader = c.wait_for_leader(2s);
    REQUIRE(leader != kNoNode);
    CHECK(commit_one(c, leader, proposals, bytes_of("after the storm")));
    c.run_for(200ms);
    for (NodeId id : c.ids()) {
      CAPTURE(id);
      CHECK(c.group(id).last_applied() == c.group(leader).last_applied());
    }
    check_applied_agree(c);
  }
}

namespace {

// Each up node's disk makes a random prefix of its pending writes durable, now and then.
void sync_some(Cluster& c, Xoshiro256& random) {
  for (NodeId id : c.ids()) {
    auto& n = c.node(id);
    if (!n.up || random.below(3) != 0) {
      continue;
    }
    const auto durable = n.storage().durable_seq();
    const auto last = n.storage().last_seq();
    n.storage().sync_through(durable + random.below(last - durable + 1));
    n.group->on_persisted();
  }
}

}  // namespace

TEST_CASE(
    "with slow disks and crashes that lose unsynced writes - every acknowledged proposal "
    "survives") {
  for (std::uint64_t seed = 1; seed <= 12; ++seed) {
    CAPTURE(seed);
    std::deque<TrackedPropose> proposals;
    std::vector<Bytes> payloads;
    Cluster::Options o = options(seed, seed % 2 == 0 ? 5 : 3);
    o.storage.manual_sync = true;
    o.network.drop_rate = 0.02;
    o.network.duplicate_rate = 0.02;
    o.network.max_delay = 5ms;
    Cluster c(o);
    Xoshiro256 random(seed * 7919);
    ElectionSafety safety;
    NodeId crashed = kNoNode;
    for (int step = 0; step < 1500; ++step) {
      const NodeId at = c.leader();
      payloads.push_back(bytes_of("d" + std::to_string(seed) + "/" + std::to_string(step)));
      auto& p = proposals.emplace_back(at == kNoNode ? nullptr : &c.clock(at));
      if (at != kNoNode) {
        c.group(at).propose(p.op, payloads.back());
        c.group(at).flush();
      }
      if (step % 250 == 125) {  // crash the leader (or any node), restart it 100 ms later
        crashed = at != kNoNode && random.below(2) == 0 ? at : 1 + random.below(c.size());
        c.crash(crashed);
      } else if (step % 250 == 225 && crashed != kNoNode) {
        c.restart(crashed);
        crashed = kNoNode;
      }
      sync_some(c, random);
      c.run_until(
          [&] {
            safety.observe(c);
            return false;
          },
          1ms);
    }
    if (crashed != kNoNode) {
      c.restart(crashed);
    }
    c.network().set_drop_rate(0);
    c.network().set_duplicate_rate(0);
    for (int step = 0; step < 1000; ++step) {
      for (NodeId id : c.ids()) {
        c.node(id).storage().sync();
        c.group(id).on_persisted();
      }
      c.run_until(
          [&] {
            safety.observe(c);
            return false;
          },
          1ms);
    }
    CHECK(safety.violated_in == 0);
    check_applied_agree(c);
    int acknowledged = 0;
    for (std::size_t i = 0; i < proposals.size(); ++i) {
      const TrackedPropose& p = proposals[i];
      if (!p.succeeded()) {
        continue;
      }
      ++acknowledged;
      const LogIndex index = p.outcome()->value().index;
      for (NodeId id : c.ids()) {
        CAPTURE(i);
        CAPTURE(id);
        const Bytes* applied = c.machine(id).payload_at(index);
        REQUIRE(applied != nullptr);
        CHECK(*applied == payloads[i]);
      }
    }
    CHECK(acknowledged > 0);
  }
}

// =============================================================================================
// Proposals and the error contract (lessons 1 and 3)
// =============================================================================================

// Regression: appends lost in the partition were never resent and the leader's own entries did
// not count, so after the heal nothing committed and every proposal was refused with overloaded
// for good.
TEST_CASE(
    "proposals beyond max_uncommitted_bytes are refused with overloaded - and accepted again "
    "once the partition heals") {
  const std::uint64_t seed = 9;
  CAPTURE(seed);
  std::deque<TrackedPropose> proposals;
  Cluster::Options o = options(seed, 3);
  o.config.max_uncommitted_bytes = 1000;
  o.config.check_quorum = false;
  Cluster c(o);
  const NodeId leader = c.wait_for_leader();
  REQUIRE(leader != kNoNode);
  REQUIRE(c.run_until([&] { return c.group(leader).leader_term() != 0; }, 1s));
  auto& g = c.group(leader);
  isolate_followers(c, leader);
  const Bytes payload(100, std::byte{0x5a});
  for (int i = 0; i < 10; ++i) {
    g.propose(proposals.emplace_back(&c.clock(leader)).op, payload);
    CHECK_FALSE(proposals.back().completed());
  }
  g.propose(proposals.emplace_back(&c.clock(leader)).op, payload);
  REQUIRE(proposals.back().completed());
  CHECK(proposals.back().code() == errc::overloaded);
  CHECK(proposals.back().leader_hint() == leader);
  g.flush();
  c.run_for(200ms);
  for (std::size_t i = 0; i < 10; ++i) {
    CHECK_FALSE(proposals[i].completed());  // nothing commits without a quorum
  }
  c.network().heal();
  REQUIRE(c.run_until([&] { return proposals[9].completed(); }, 2s));
  for (std::size_t i = 0; i < 10; ++i) {
    CAPTURE(i);
    CHECK(proposals[i].succeeded());
  }
  CHECK(g.uncommitted_bytes() == 0);
  CHECK(commit_one(c, leader, proposals, payload));  // room again
}

TEST_CASE("not_leader carries the leader hint") {
  const std::uint64_t seed = 4;
  CAPTURE(seed);
  std::deque<TrackedPropose> proposals;
  std::deque<TrackedRead> reads;
  std::deque<TrackedTransfer> transfers;
  Cluster c(options(seed, 3));
  const NodeId leader = c.wait_for_leader();
  REQUIRE(leader != kNoNode);
  c.run_for(100ms);
  const NodeId follower = leader % 3 + 1;
  auto& f = c.group(follower);
  const Bytes payload = bytes_of("x");

  f.propose(proposals.emplace_back().op, payload);
  REQUIRE(proposals.back().completed());
  CHECK(proposals.back().code() == errc::not_leader);
  CHECK(proposals.back().leader_hint() == leader);
  f.transfer_leadership(transfers.emplace_back().op, follower);
  REQUIRE(transfers.back().completed());
  CHECK(transfers.back().code() == errc::not_leader);
  CHECK(transfers.back().leader_hint() == leader);

  // A node that knows no leader says so, at once, for reads too.
  c.network().isolate(follower);
  REQUIRE(c.run_until([&] { return f.role() != Role::follower; }, 1s));  // campaigning
  f.read_index(reads.emplace_back().op);
  REQUIRE(reads.back().completed());
  CHECK(reads.back().code() == errc::not_leader);
  CHECK(reads.back().leader_hint() == kNoNode);
  f.propose(proposals.emplace_back().op, payload);
  REQUIRE(proposals.back().completed());
  CHECK(proposals.back().code() == errc::not_leader);
  CHECK(proposals.back().leader_hint() == kNoNode);
}

TEST_CASE("on step-down - pending proposals fail with leadership_lost at once") {
  for (std::uint64_t seed = 1; seed <= 5; ++seed) {
    CAPTURE(seed);
    std::deque<TrackedPropose> proposals;
    Cluster c(options(seed, 3));
    const NodeId leader = c.wait_for_leader();
    REQUIRE(leader != kNoNode);
    REQUIRE(commit_one(c, leader, proposals, bytes_of("warm-up")));
    auto& g = c.group(leader);
    c.network().isolate(leader);
    const std::size_t first = proposals.size();
    for (int i = 0; i < 10; ++i) {
      g.propose(proposals.emplace_back(&c.clock(leader)).op, bytes_of("p" + std::to_string(i)));
    }
    g.flush();
    REQUIRE(c.run_until([&] { return g.role() != Role::leader; }, 1s));
    const TimePoint stepped_down = c.clock(leader).now();
    for (std::size_t i = first; i < proposals.size(); ++i) {
      CAPTURE(i);
      REQUIRE(proposals[i].completed());
      CHECK(proposals[i].code() == errc::leadership_lost);
      CHECK(*proposals[i].completed_at() == stepped_down);
      CHECK(proposals[i].calls() == 1);
    }
  }
}

// Regression: see raft_paper_test.cpp, "durable-at-once storage: the leader's own append counts
// without on_persisted".
TEST_CASE("a 3-node cluster with one follower down still commits") {
  for (std::uint64_t seed = 1; seed <= 5; ++seed) {
    CAPTURE(seed);
    std::deque<TrackedPropose> proposals;
    Cluster c(options(seed, 3));
    const NodeId leader = c.wait_for_leader();
    REQUIRE(leader != kNoNode);
    REQUIRE(commit_one(c, leader, proposals, bytes_of("warm-up")));
    const NodeId down = leader % 3 + 1;
    c.crash(down);
    CHECK(commit_one(c, leader, proposals, bytes_of("with one down")));
    c.restart(down);
    c.run_for(500ms);
    c.crash(leader);  // the two others must elect a leader that commits its no-op
    NodeId next = kNoNode;
    CHECK(c.run_until(
        [&] {
          next = c.leader();
          return next != kNoNode && c.group(next).leader_term() != 0;
        },
        3s));
  }
}

TEST_CASE("cancel completes a pending proposal or read at once with cancelled and frees its slot") {
  const std::uint64_t seed = 21;
  CAPTURE(seed);
  Cluster::Options o = options(seed, 3);
  o.config.max_pending_reads = 1;
  Cluster c(o);
  const NodeId leader = c.wait_for_leader();
  REQUIRE(leader != kNoNode);
  REQUIRE(c.run_until([&] { return c.group(leader).leader_term() != 0; }, 1s));
  auto& g = c.group(leader);
  isolate_followers(c, leader);  // nothing can commit or confirm: both stay pending
  TrackedPropose p(&c.clock(leader));
  TrackedRead r(&c.clock(leader));
  g.propose(p.op, bytes_of("x"));
  g.read_index(r.op);
  g.flush();
  c.run_for(10ms);
  REQUIRE_FALSE(p.completed());
  REQUIRE_FALSE(r.completed());
  TrackedRead refused(&c.clock(leader));
  g.read_index(refused.op);
  CHECK(refused.code() == errc::overloaded);  // the one read slot is taken

  g.cancel(p.op);
  g.cancel(r.op);
  CHECK(p.code() == errc::cancelled);
  CHECK(r.code() == errc::cancelled);
  CHECK(p.leader_hint() == leader);
  g.cancel(p.op);  // no longer pending: nothing happens
  CHECK(p.calls() == 1);
  CHECK(r.calls() == 1);
  CHECK(g.pending_reads() == 0);
  TrackedRead again(&c.clock(leader));
  g.read_index(again.op);
  CHECK_FALSE(again.completed());  // the slot was freed
  c.network().heal();
  REQUIRE(c.run_until([&] { return again.completed(); }, 2s));
  CHECK(again.succeeded());
  CHECK(p.calls() == 1);  // the entry may commit, but the completion never runs twice
}
