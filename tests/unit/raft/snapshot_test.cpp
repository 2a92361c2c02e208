// RaftGroup snapshots over a simulated cluster of KvStateMachines: taken, compacted behind,
// installed on a follower that needs compacted entries (in chunks, through loss), restored at a
// restart.
#include <raft/testing/kv_state_machine.hpp>
#include <raft/testing/sim_cluster.hpp>

#include <doctest/doctest.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <deque>
#include <optional>

using namespace std::chrono_literals;
using tenure::raft::kNoNode;
using tenure::raft::LogIndex;
using tenure::raft::NodeId;
using tenure::raft::ProposeOperation;
using tenure::raft::ProposeResult;
using tenure::raft::Result;
using tenure::raft::testing::encode_kv_command;
using tenure::raft::testing::kKvCommandSize;
using tenure::raft::testing::KvCommand;
using tenure::raft::testing::KvOpKind;
using tenure::raft::testing::KvStateMachine;
using Cluster = tenure::raft::testing::SimCluster<KvStateMachine>;

static_assert(Cluster::Group::kSnapshots);

namespace {

struct Write {
  std::optional<Result<ProposeResult>> outcome;
  std::array<std::byte, kKvCommandSize> payload{};
  ProposeOperation op{{&done, this}};
  static void done(void* self, Result<ProposeResult> r) noexcept {
    static_cast<Write*>(self)->outcome = r;
  }
};

Cluster::Options options(std::uint64_t seed, std::uint64_t chunk_bytes) {
  Cluster::Options o;
  o.seed = seed;
  o.config.snapshot_entries = 10;
  o.config.snapshot_chunk_bytes = chunk_bytes;
  o.config.snapshot_window = 2;
  o.config.log_retention_entries = 0;
  return o;
}

// Puts keys [first, first + count) through the leader, each once committed.
void put_keys(Cluster& cluster, std::deque<Write>& writes, std::uint64_t first,
              std::uint64_t count) {
  for (std::uint64_t k = first; k < first + count; ++k) {
    const NodeId leader = cluster.wait_for_leader();
    REQUIRE(leader != kNoNode);
    Write& w = writes.emplace_back();
    encode_kv_command(KvCommand{KvOpKind::put, k, static_cast<std::int64_t>(k * 10), 0, k + 1},
                      w.payload);
    cluster.group(leader).propose(w.op, w.payload);
    cluster.group(leader).flush();
    REQUIRE(cluster.run_until([&] { return w.outcome.has_value(); }, 2s));
    REQUIRE(w.outcome->has_value());
  }
}

}  // namespace

TEST_CASE("snapshots: a follower that needs compacted entries gets the snapshot in chunks") {
  std::deque<Write> writes;
  for (const std::uint64_t chunk : {std::uint64_t{16}, std::uint64_t{4096}}) {
    CAPTURE(chunk);
    Cluster cluster(options(21, chunk));
    const NodeId leader = cluster.wait_for_leader();
    REQUIRE(leader != kNoNode);
    const NodeId lagging = leader % 3 + 1;
    cluster.network().isolate(lagging);
    put_keys(cluster, writes, 0, 60);
    cluster.run_for(300ms);  // a chunk a tick: the leader's snapshot is saved and durable
    auto& g = cluster.group(leader);
    REQUIRE(g.snapshot_index() >= 20);
    REQUIRE(g.stats().snapshots_taken >= 1);
    const LogIndex first = cluster.node(leader).storage().first_index();
    REQUIRE(first > cluster.group(lagging).last_index() + 1);  // it needs compacted entries

    cluster.network().heal();
    REQUIRE(cluster.run_until(
        [&] { return cluster.group(lagging).last_applied() >= g.last_applied(); }, 5s));
    auto& f = cluster.group(lagging);
    CHECK(f.stats().snapshots_installed == 1);
    CHECK(cluster.machine(lagging).restores() == 1);
    CHECK(cluster.machine(lagging).digest() == cluster.machine(leader).digest());
    for (std::uint64_t k = 0; k < 60; ++k) {
      CHECK(cluster.machine(lagging).get(k) == static_cast<std::int64_t>(k * 10));
    }
    if (chunk == 16) {
      CHECK(g.stats().snapshot_chunks_sent > 10);  // many chunks, a window at a time
    }
    // It replicates on from there by appends.
    put_keys(cluster, writes, 100, 5);
    REQUIRE(cluster.run_until([&] { return cluster.machine(lagging).get(104) == 1040; }, 2s));
  }
}

TEST_CASE("snapshots: an install survives lost and duplicated chunks") {
  std::deque<Write> writes;
  Cluster::Options o = options(23, 16);
  Cluster cluster(o);
  const NodeId leader = cluster.wait_for_leader();
  REQUIRE(leader != kNoNode);
  const NodeId lagging = leader % 3 + 1;
  cluster.network().isolate(lagging);
  put_keys(cluster, writes, 0, 40);
  cluster.run_for(100ms);
  cluster.network().heal();
  cluster.network().set_drop_rate(0.3);
  cluster.network().set_duplicate_rate(0.3);
  const bool installed = cluster.run_until(
      [&] {
        return cluster.group(lagging).stats().snapshots_installed == 1 &&
               cluster.machine(lagging).get(39) == 390;
      },
      10s);
  REQUIRE(installed);
  cluster.network().set_drop_rate(0);
  cluster.network().set_duplicate_rate(0);
  REQUIRE(cluster.run_until(
      [&] { return cluster.group(lagging).last_applied() == cluster.group(leader).last_applied(); },
      2s));
  CHECK(cluster.machine(lagging).digest() == cluster.machine(leader).digest());
}

TEST_CASE("snapshots: a restarted node starts from its snapshot and replays only the log after") {
  std::deque<Write> writes;
  Cluster cluster(options(25, 64));
  REQUIRE(cluster.wait_for_leader() != kNoNode);
  put_keys(cluster, writes, 0, 35);
  cluster.run_for(200ms);
  const NodeId leader = cluster.wait_for_leader();
  const NodeId follower = leader % 3 + 1;
  const LogIndex snapshot = cluster.group(follower).snapshot_index();
  REQUIRE(snapshot >= 30);
  const auto digest = cluster.machine(follower).digest();
  cluster.crash(follower);
  REQUIRE(cluster.restart(follower));
  CHECK(cluster.machine(follower).restores() == 1);
  CHECK(cluster.group(follower).last_applied() >= snapshot);
  cluster.run_for(300ms);
  CHECK(cluster.machine(follower).digest() == digest);
  CHECK(cluster.machine(follower).get(34) == 340);
}

// A transfer takes many round trips (small chunks, a window of one) while writes keep coming fast
// enough to make snapshots due again and again: a new snapshot would supersede the one in flight
// and restart the transfer from its first byte, so none would ever finish. The leader holds
// automatic snapshots back while a follower is receiving one.
TEST_CASE("snapshots: a transfer completes under writes that keep making snapshots due") {
  std::deque<Write> writes;
  Cluster::Options o = options(27, 16);
  o.config.snapshot_entries = 5;
  o.config.snapshot_window = 1;
  // A round trip of about 10 ms: sending a chunk takes five times as long as saving one (a tick).
  o.network.min_delay = 4ms;
  o.network.max_delay = 6ms;
  Cluster cluster(o);
  const NodeId leader = cluster.wait_for_leader();
  REQUIRE(leader != kNoNode);
  const NodeId lagging = leader % 3 + 1;
  cluster.network().isolate(lagging);
  put_keys(cluster, writes, 0, 150);  // about 2.4 KB of state: 150 chunks
  cluster.run_for(500ms);
  cluster.network().heal();
  std::uint64_t key = 1000;
  while (cluster.group(lagging).stats().snapshots_installed == 0 && key < 1600) {
    put_keys(cluster, writes, key, 5);
    key += 5;
  }
  CHECK(cluster.group(lagging).stats().snapshots_installed == 1);
  MESSAGE((key - 1000) << " writes while the transfer ran; the leader took "
                       << cluster.group(leader).stats().snapshots_taken << " snapshots");
}

// The first chunk carries the configuration in the same single entry as its bytes: a transport
// or simulator that carries one entry a message still delivers it.
TEST_CASE("snapshots: installed with one entry a message") {
  std::deque<Write> writes;
  Cluster::Options o = options(29, 64);
  o.config.max_entries_per_message = 1;
  Cluster cluster(o);
  const NodeId leader = cluster.wait_for_leader();
  REQUIRE(leader != kNoNode);
  const NodeId lagging = leader % 3 + 1;
  cluster.network().isolate(lagging);
  put_keys(cluster, writes, 0, 30);
  cluster.run_for(300ms);
  cluster.network().heal();
  REQUIRE(cluster.run_until([&] { return cluster.machine(lagging).get(29) == 290; }, 3s));
  CHECK(cluster.group(lagging).stats().snapshots_installed == 1);
}

// The leader crashes in the middle of a transfer: the new leader sends its own snapshot (another
// index, or the same one resumed) and the follower installs that one, never a mix of the two.
TEST_CASE("snapshots: a leader change in the middle of an install") {
  std::deque<Write> writes;
  Cluster::Options o = options(31, 16);
  o.config.snapshot_window = 1;
  o.network.min_delay = 3ms;
  o.network.max_delay = 4ms;
  Cluster cluster(o);
  const NodeId leader = cluster.wait_for_leader();
  REQUIRE(leader != kNoNode);
  const NodeId lagging = leader % 3 + 1;
  cluster.network().isolate(lagging);
  put_keys(cluster, writes, 0, 80);
  cluster.run_for(600ms);  // every node saves a snapshot of its own
  REQUIRE(cluster.group(leader).snapshot_index() > 0);
  cluster.network().heal();
  const std::uint64_t sent_before = cluster.group(leader).stats().snapshot_chunks_sent;
  REQUIRE(cluster.run_until(
      [&] { return cluster.group(leader).stats().snapshot_chunks_sent >= sent_before + 20; }, 2s));
  REQUIRE(cluster.group(lagging).stats().snapshots_installed == 0);  // mid-install
  cluster.crash(leader);
  REQUIRE(cluster.run_until(
      [&] {
        const NodeId l = cluster.leader();
        return l != kNoNode && l != leader;
      },
      3s));
  const NodeId next = cluster.leader();
  put_keys(cluster, writes, 200, 3);
  REQUIRE(cluster.run_until(
      [&] {
        return cluster.machine(lagging).get(202) == 2020 && cluster.machine(lagging).get(79) == 790;
      },
      5s));
  CHECK(cluster.group(lagging).stats().snapshots_installed == 1);
  CHECK(cluster.machine(lagging).restores() == 1);
  REQUIRE(cluster.run_until(
      [&] { return cluster.group(lagging).last_applied() == cluster.group(next).last_applied(); },
      2s));
  CHECK(cluster.machine(lagging).digest() == cluster.machine(next).digest());
}
