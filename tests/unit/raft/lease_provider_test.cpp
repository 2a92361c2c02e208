// RaftGroup as a lease::LeaseProvider: the quorum-ack tracker wired in with send-time anchoring,
// leader-loss notifications, and the lease revoked before a transfer (issue 5, item 7).
#include <lease/lease_coordinator.hpp>
#include <lease/lease_provider.hpp>
#include <raft/testing/sim_cluster.hpp>

#include <doctest/doctest.h>

#include <optional>
#include <string>
#include <system_error>
#include <vector>

using namespace std::chrono_literals;
using tenure::raft::errc;
using tenure::raft::kNoNode;
using tenure::raft::LogIndex;
using tenure::raft::NodeId;
using tenure::raft::Result;
using tenure::raft::Role;
using tenure::raft::Term;
using Cluster = tenure::raft::testing::SimCluster<>;
using Group = Cluster::Group;
using Coordinator = tenure::lease::LeaseCoordinator<Group>;

static_assert(tenure::lease::LeaseProvider<Group>);

namespace {

tenure::lease::LeaseConfig lease_config(const Cluster& cluster) {
  (void)cluster;
  tenure::lease::LeaseConfig c;
  c.election_timeout_min = Cluster::default_config().election_timeout_min;
  c.max_clock_drift_ppm = 1000;
  c.margin = 1ms;
  return c;
}

Cluster::Options options(std::uint64_t seed) {
  Cluster::Options o;
  o.seed = seed;
  return o;
}

// Runs until the leader serves reads: its no-op committed and applied.
NodeId ready_leader(Cluster& cluster) {
  NodeId leader = kNoNode;
  cluster.run_until(
      [&] {
        leader = cluster.leader();
        return leader != kNoNode && cluster.group(leader).leader_term() != 0;
      },
      10s);
  return leader;
}

}  // namespace

// Hole 3 (CHANGELOG 0.2.0): LeaseConfig::election_timeout_min was never compared with what the
// group's voters actually wait, so a lease longer than that was accepted silently.
TEST_CASE(
    "the lease is derived from the group's own election timeout - a different one is refused") {
  Cluster cluster(options(3));
  Group& group = cluster.group(1);
  REQUIRE(group.election_timeout_min() == Cluster::default_config().election_timeout_min);

  tenure::lease::LeaseConfig c;  // election_timeout_min left 0: taken from the group
  c.max_clock_drift_ppm = 1000;
  c.margin = 1ms;
  Coordinator taken(group, c);
  tenure::lease::LeaseConfig expected = c;
  expected.election_timeout_min = 100ms;
  CHECK(taken.lease_duration() == tenure::lease::lease_duration(expected).value());

  c.election_timeout_min = 100ms;  // the same, spelled out: accepted
  Coordinator same(group, c);
  CHECK(same.lease_duration() == taken.lease_duration());

  for (const auto wrong : {150ms, 99ms}) {
    c.election_timeout_min = wrong;
    try {
      Coordinator refused(group, c);
      FAIL("a LeaseConfig::election_timeout_min other than the group's was accepted");
    } catch (const std::system_error& e) {
      CHECK(e.code() == errc::invalid_config);
      const std::string what = e.what();
      CHECK(what.find("LeaseConfig::election_timeout_min") != std::string::npos);
      CHECK(what.find("RaftConfig::election_timeout_min") != std::string::npos);
    }
  }
}

namespace {

struct ReadProbe {
  int completions = 0;
  std::optional<Result<LogIndex>> outcome;
  static void done(void* self, Result<LogIndex> r) noexcept {
    auto* probe = static_cast<ReadProbe*>(self);
    ++probe->completions;
    probe->outcome = r;
  }
  tenure::raft::Completion<LogIndex> completion() { return {&done, this}; }
};

struct TransferProbe {
  std::optional<Result<void>> outcome;
  static void done(void* self, Result<void> r) noexcept {
    static_cast<TransferProbe*>(self)->outcome = r;
  }
  tenure::raft::Completion<void> completion() { return {&done, this}; }
};

}  // namespace

TEST_CASE("only a ready leader reports a leader term - followers name the leader") {
  Cluster cluster(options(11));
  const NodeId leader = ready_leader(cluster);
  REQUIRE(leader != kNoNode);
  const Term term = cluster.group(leader).term();
  CHECK(cluster.group(leader).leader_term() == term);
  CHECK(cluster.group(leader).applied_index() >= 1);
  for (NodeId id : cluster.ids()) {
    if (id != leader) {
      CHECK(cluster.group(id).leader_term() == 0);
      CHECK(cluster.group(id).leader_hint() == leader);
    }
  }
}

TEST_CASE("the leader's quorum ack is anchored at the send time of acknowledged heartbeats") {
  Cluster cluster(options(12));
  const NodeId leader = ready_leader(cluster);
  REQUIRE(leader != kNoNode);
  auto& g = cluster.group(leader);
  // Slow every link a lot: answers now take 30 ms to come back; the anchor must be the time the
  // heartbeat left (<= now - 30 ms at arrival of its answer), never the arrival.
  cluster.network().set_delay(15ms, 15ms);
  cluster.run_for(200ms);
  const auto now = cluster.clock(leader).now();
  const auto ack = g.quorum_ack();
  CHECK(ack <= now - 30ms);
  CHECK(ack >= now - 30ms - Cluster::default_config().heartbeat_interval - 5ms);
}

TEST_CASE("a LeaseCoordinator over a RaftGroup serves lease reads on the leader only") {
  Cluster cluster(options(13));
  const NodeId leader = ready_leader(cluster);
  REQUIRE(leader != kNoNode);
  Coordinator on_leader(cluster.group(leader), lease_config(cluster));
  const NodeId follower = leader == 1 ? 2 : 1;
  Coordinator on_follower(cluster.group(follower), lease_config(cluster));
  cluster.run_for(100ms);
  const auto r = on_leader.lease_read();
  REQUIRE(r.has_value());
  CHECK(r.value() == cluster.group(leader).applied_index());
  const auto f = on_follower.lease_read();
  CHECK(f.code() == errc::not_leader);
  CHECK(f.leader_hint() == leader);
}

TEST_CASE("the lease goes cold when the leader is cut off - before anyone else can lead") {
  Cluster cluster(options(14));
  const NodeId leader = ready_leader(cluster);
  REQUIRE(leader != kNoNode);
  Coordinator coordinator(cluster.group(leader), lease_config(cluster));
  cluster.run_for(100ms);
  REQUIRE(coordinator.lease_read().has_value());
  cluster.network().isolate(leader);
  // Run until another node leads; at every step before that, whenever the old leader still
  // serves, no newer leader may exist.
  bool stale_read = false;
  cluster.run_until(
      [&] {
        const bool serves = coordinator.lease_read().has_value();
        for (NodeId id : cluster.ids()) {
          if (id != leader && cluster.group(id).role() == Role::leader && serves) {
            stale_read = true;
          }
        }
        const NodeId l = cluster.leader();
        return l != kNoNode && l != leader;
      },
      5s);
  CHECK(!stale_read);
  CHECK(!coordinator.lease_read().has_value());
}

TEST_CASE(
    "leader-loss callbacks fire synchronously on step-down - while the old term still shows") {
  Cluster cluster(options(15));
  const NodeId leader = ready_leader(cluster);
  REQUIRE(leader != kNoNode);
  auto& g = cluster.group(leader);
  const Term term = g.term();
  std::vector<Term> lost;
  Term leader_term_during_callback = 0;
  tenure::lease::LeaderLossHandler handler([&](Term t) {
    lost.push_back(t);
    leader_term_during_callback = g.leader_term();
  });
  g.subscribe_leader_loss(handler);
  cluster.network().isolate(leader);
  cluster.run_until([&] { return g.role() != Role::leader; }, 2s);  // CheckQuorum
  REQUIRE(lost.size() == 1);
  CHECK(lost[0] == term);
  CHECK(leader_term_during_callback == term);
  CHECK(g.leader_term() == 0);
}

TEST_CASE("leader-loss callbacks fire at shutdown") {
  Cluster cluster(options(16));
  const NodeId leader = ready_leader(cluster);
  REQUIRE(leader != kNoNode);
  int calls = 0;
  tenure::lease::LeaderLossHandler handler([&](Term) { ++calls; });
  cluster.group(leader).subscribe_leader_loss(handler);
  cluster.crash(leader);  // stops the group
  CHECK(calls == 1);
  CHECK(cluster.group(leader).leader_term() == 0);
}

TEST_CASE("a transfer revokes the lease before TimeoutNow leaves - for the rest of the term") {
  Cluster cluster(options(17));
  const NodeId leader = ready_leader(cluster);
  REQUIRE(leader != kNoNode);
  auto& g = cluster.group(leader);
  const NodeId target = leader == 1 ? 2 : 1;
  // Block the target so the transfer cannot complete: it times out.
  cluster.network().block(leader, target);
  TransferProbe probe;
  tenure::raft::TransferOperation op(probe.completion());
  const Term term = g.term();
  g.transfer_leadership(op, target, cluster.clock(leader).now() + 50ms);
  CHECK(g.leader_term() == 0);  // revoked synchronously, before anything was sent
  cluster.run_until([&] { return probe.outcome.has_value(); }, 1s);
  REQUIRE(probe.outcome.has_value());
  CHECK(probe.outcome->code() == errc::timed_out);
  cluster.network().heal();
  cluster.run_for(200ms);
  REQUIRE(g.role() == Role::leader);
  REQUIRE(g.term() == term);
  CHECK(g.leader_term() == 0);  // still leader of the same term, but no lease in it again
}

TEST_CASE("LeaseCoordinator::cancel withdraws a read waiting for ReadIndex - the lease stays") {
  Cluster cluster(options(18));
  const NodeId leader = ready_leader(cluster);
  REQUIRE(leader != kNoNode);
  auto& g = cluster.group(leader);
  Coordinator coordinator(g, lease_config(cluster));
  cluster.network().isolate(leader);
  // The lease runs out before CheckQuorum ends the leadership: a read then needs ReadIndex,
  // which cannot complete without a quorum.
  cluster.run_until([&] { return coordinator.lease_read().code() == errc::lease_expired; }, 2s);
  REQUIRE(coordinator.lease_read().code() == errc::lease_expired);
  REQUIRE(g.role() == Role::leader);
  const auto generation = coordinator.state().generation();
  ReadProbe probe;
  Coordinator::ReadOperation op(probe.completion());
  coordinator.read(op, cluster.clock(leader).now() + 10s);
  REQUIRE_FALSE(probe.outcome.has_value());
  REQUIRE(g.pending_reads() == 1);

  coordinator.cancel(op);
  REQUIRE(probe.outcome.has_value());  // at once, not at the deadline
  CHECK(probe.outcome->code() == errc::cancelled);
  CHECK(g.pending_reads() == 0);
  // A caller's choice, not a leadership loss: the caller-side lease is not invalidated.
  CHECK(coordinator.state().generation() == generation);
  coordinator.cancel(op);  // completed already: nothing happens
  CHECK(probe.completions == 1);
}
