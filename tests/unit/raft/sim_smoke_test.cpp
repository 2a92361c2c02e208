#include <raft/testing/sim_cluster.hpp>

#include <doctest/doctest.h>

#include <array>
#include <optional>

using namespace std::chrono_literals;
using tenure::raft::kNoNode;
using tenure::raft::ProposeOperation;
using tenure::raft::ProposeResult;
using tenure::raft::Result;
using tenure::raft::Role;
using Cluster = tenure::raft::testing::SimCluster<>;

namespace {

struct ProposeProbe {
  std::optional<Result<ProposeResult>> outcome;
  static void done(void* self, Result<ProposeResult> r) noexcept {
    static_cast<ProposeProbe*>(self)->outcome = r;
  }
  tenure::raft::Completion<ProposeResult> completion() { return {&done, this}; }
};

}  // namespace

TEST_CASE("a 3-node simulated cluster elects a leader and commits a proposal") {
  Cluster::Options o;
  o.seed = 7;
  Cluster cluster(o);
  const auto leader = cluster.wait_for_leader();
  REQUIRE(leader != kNoNode);
  auto& g = cluster.group(leader);
  ProposeProbe probe;
  ProposeOperation op(probe.completion());
  const std::array<std::byte, 3> payload{std::byte{1}, std::byte{2}, std::byte{3}};
  g.propose(op, payload);
  g.flush();
  REQUIRE(cluster.run_until([&] { return probe.outcome.has_value(); }, 2s));
  REQUIRE(probe.outcome->has_value());
  const auto index = probe.outcome->value().index;
  CHECK(index >= 2);
  CHECK(probe.outcome->value().result == index);  // DigestStateMachine returns the index
  cluster.run_for(200ms);
  for (auto id : cluster.ids()) {
    CAPTURE(id);
    CHECK(cluster.group(id).last_applied() >= index);
    CHECK(cluster.machine(id).digest_at(index) == cluster.machine(leader).digest_at(index));
  }
}

TEST_CASE("lesson 1: a deadline between two ticks is honoured exactly") {
  Cluster::Options o;
  o.seed = 9;
  Cluster cluster(o);
  const auto leader = cluster.wait_for_leader();
  REQUIRE(leader != kNoNode);
  // Cut the leader off so that its read cannot be confirmed and must end at its deadline.
  cluster.network().isolate(leader);
  auto& g = cluster.group(leader);
  struct Probe {
    std::optional<Result<tenure::raft::LogIndex>> outcome;
    Cluster::Group::time_point at{};
    Cluster* cluster = nullptr;
    tenure::raft::NodeId node = kNoNode;
    static void done(void* self, Result<tenure::raft::LogIndex> r) noexcept {
      auto& p = *static_cast<Probe*>(self);
      p.outcome = r;
      p.at = p.cluster->clock(p.node).now();
    }
  } probe{std::nullopt, {}, &cluster, leader};
  tenure::raft::ReadIndexOperation op({&Probe::done, &probe});
  const auto deadline = cluster.clock(leader).now() + 7'654'321ns;  // not a multiple of a tick
  g.read_index(op, deadline);
  REQUIRE(cluster.run_until([&] { return probe.outcome.has_value(); }, 1s));
  CHECK(probe.outcome->code() == tenure::raft::errc::timed_out);
  CHECK(probe.at >= deadline);
  CHECK(probe.at - deadline < 10ns);
}
