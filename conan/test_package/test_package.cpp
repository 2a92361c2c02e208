// test_package: a three-node tenure cluster in one process, on the simulated network. It elects a
// leader, commits a write, and serves a read from the leader's lease, checking each step; it
// exits non-zero when one fails. Conan's test_package builds it against the packaged tenure, and
// the test suite builds it against a `cmake --install` tree (consumer.conan_test_package).
#include <lease/lease_coordinator.hpp>
#include <raft/raft_group.hpp>
#include <raft/testing/kv_state_machine.hpp>
#include <raft/testing/sim_cluster.hpp>
#include <raft/version.hpp>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <optional>

using namespace std::chrono_literals;
using tenure::raft::Completion;
using tenure::raft::kNoNode;
using tenure::raft::LogIndex;
using tenure::raft::NodeId;
using tenure::raft::ProposeOperation;
using tenure::raft::ProposeResult;
using tenure::raft::Result;
namespace testing = tenure::raft::testing;

// Three RaftGroups with a key-value state machine, over one SimNetwork, in simulated time.
using Cluster = testing::SimCluster<testing::KvStateMachine>;
using Coordinator = tenure::lease::LeaseCoordinator<Cluster::Group>;

namespace {

// Where a caller-owned operation's completion leaves its outcome.
template <class T>
struct Outcome {
  std::optional<Result<T>> result;
  Completion<T> completion() {
    return {[](void* self, Result<T> r) noexcept { static_cast<Outcome*>(self)->result = r; },
            this};
  }
};

int check(bool ok, const char* step) {
  std::printf("[%s] %s\n", ok ? "ok" : "FAILED", step);
  return ok ? 0 : 1;
}

}  // namespace

int main() {
  std::printf("tenure %s\n", TENURE_VERSION_STRING);
  Cluster::Options options;
  options.nodes = 3;
  options.seed = 1;
  Cluster cluster(options);

  // 1. The nodes elect a leader.
  const NodeId leader = cluster.wait_for_leader(10s);
  if (check(leader != kNoNode, "a leader is elected") != 0) {
    return 1;
  }
  Cluster::Group& group = cluster.group(leader);

  // 2. The leader commits put(7, 42): a majority stored it and the leader applied it.
  std::array<std::byte, testing::kKvCommandSize> payload{};
  testing::encode_kv_command({testing::KvOpKind::put, 7, 42, testing::kAbsent, 1}, payload);
  Outcome<ProposeResult> proposed;
  ProposeOperation propose(proposed.completion());
  group.propose(propose, payload);
  group.flush();  // proposals are batched: flush sends them
  cluster.run_until([&] { return proposed.result.has_value(); }, 2s);
  if (check(proposed.result && proposed.result->has_value(), "put(7, 42) commits") != 0) {
    return 1;
  }
  const LogIndex written = proposed.result->value().index;

  // 3. A LeaseCoordinator on the leader serves a linearizable read from its memory: the lease
  //    holds, so no round trip is needed. The lease must end before any follower may campaign.
  tenure::lease::LeaseConfig lease;
  Coordinator coordinator(group, lease);
  Outcome<LogIndex> read;
  Coordinator::ReadOperation read_op(read.completion());
  coordinator.read(read_op);
  cluster.run_until([&] { return read.result.has_value(); }, 1s);
  const bool served = read.result && read.result->has_value() && read_op.served_by_lease() &&
                      read.result->value() >= written;
  if (check(served, "the leader serves a lease read at or after the write") != 0) {
    return 1;
  }
  if (check(cluster.machine(leader).get(7) == 42, "the read sees 42") != 0) {
    return 1;
  }

  // A follower holds no lease: it names the leader instead.
  const NodeId follower = leader == 1 ? 2 : 1;
  Coordinator on_follower(cluster.group(follower), lease);
  const Result<LogIndex> refused = on_follower.lease_read();
  return check(!refused.has_value() && refused.leader_hint() == leader,
               "a follower refuses a lease read and names the leader");
}
