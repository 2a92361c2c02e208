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
