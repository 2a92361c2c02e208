// Three AsioGroups on one io_context (and a fourth that joins, add_joining()), joined by an
// in-process transport that passes encoded frames between strands; used by the AsioGroup tests.
// Real time (SteadyClock) with short timeouts; run_until() bounds every wait by a deadline and
// polls the io_context, never sleeps.
#pragma once

#include <raft/asio/asio_group.hpp>
#include <raft/codec.hpp>
#include <raft/memory_storage.hpp>
#include <raft/metrics.hpp>
#include <raft/policies.hpp>
#include <raft/steady_clock.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <doctest/doctest.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <vector>

#include "raft_harness.hpp"

namespace tenure::testing::asio_cluster {

using namespace std::chrono_literals;
using tenure::raft::kNoNode;
using tenure::raft::NodeId;

class LocalTransport;

// Node ids 1..4 index the arrays below (slot 0 is unused).
inline constexpr std::size_t kSlots = 5;

// With AtomicMetrics: the AsioGroup tests run with metrics recorded, and the threaded ones read
// them from other threads.
struct Policies : tenure::raft::DefaultPolicies {
  using transport_type = LocalTransport;
  using storage_type = tenure::raft::MemoryStorage;
  using state_machine_type = tenure::testing::RecordingStateMachine;
  using metrics_type = tenure::raft::AtomicMetrics;
};
using Group = tenure::raft::asio::AsioGroup<Policies>;

// Copies each message into a frame and steps it into the receiver on the receiver's strand.
class LocalTransport {
 public:
  explicit LocalTransport(std::array<Group*, kSlots>& nodes) : nodes_(nodes) {}
  void send(const tenure::raft::Message& m) {
    if (m.to == kNoNode || m.to >= nodes_.size() || nodes_[m.to] == nullptr || cut_[m.to] ||
        cut_[m.from] || deaf_[m.to]) {
      return;
    }
    auto frame = std::make_shared<std::vector<std::byte>>(tenure::raft::encoded_size(m));
    if (!tenure::raft::encode(m, *frame)) {
      return;
    }
    Group* to = nodes_[m.to];
    ::boost::asio::post(to->executor(), [to, frame] {
      // Room for the most entries an append may carry (a burst of writes fills one); one per
      // thread, reused (step() reads the views before it returns, and posts what it sends).
      thread_local std::vector<tenure::raft::EntryView> scratch(
          tenure::raft::RaftConfig{}.max_entries_per_message);
      auto decoded = tenure::raft::decode(*frame, scratch);
      REQUIRE(decoded);
      to->step(decoded.value());
    });
  }
  // Cuts off every node but `keep` both ways. Io thread (or before the io threads start).
  void cut_off_all_but(NodeId keep) {
    for (NodeId id = 1; id < cut_.size(); ++id) {
      cut_[id] = id != keep;
    }
  }

  // Set from the io thread only.
  std::array<bool, kSlots> cut_{};   // a node cut off both ways
  std::array<bool, kSlots> deaf_{};  // a node that sends but receives nothing

 private:
  std::array<Group*, kSlots>& nodes_;
};

struct Cluster {
  explicit Cluster(::boost::asio::io_context& io, bool check_quorum = true) : transport(nodes) {
    for (NodeId id = 1; id <= 3; ++id) {
      make(io, id, {1, 2, 3}, check_quorum);
    }
    for (NodeId id = 1; id <= 3; ++id) {
      groups[id]->start();
    }
  }
  // Starts node `id` (4) knowing no members: it waits for a leader to add it
  // (change_membership) and replicate to it.
  void add_joining(::boost::asio::io_context& io, NodeId id) {
    make(io, id, {}, true);
    groups[id]->start();
  }
  // Stops every group and lets the io_context finish what that posts.
  void stop_all(::boost::asio::io_context& io) {
    for (auto& group : groups) {
      if (group) {
        group->stop();
      }
    }
    io.run_for(50ms);
  }
  NodeId leader() const {
    for (NodeId id = 1; id < kSlots; ++id) {
      if (groups[id] && groups[id]->group().leader_term() != 0) {
        return id;
      }
    }
    return kNoNode;
  }

  void make(::boost::asio::io_context& io, NodeId id, std::vector<NodeId> voters,
            bool check_quorum) {
    tenure::raft::RaftConfig c;
    c.self = id;
    c.group = 7;
    c.voters = std::move(voters);
    c.election_timeout_min = 60ms;
    c.election_timeout_max = 120ms;
    c.heartbeat_interval = 10ms;
    c.check_quorum = check_quorum;
    tenure::raft::asio::AsioGroupOptions o;
    o.tick_interval = 5ms;
    o.lease.election_timeout_min = c.election_timeout_min;
    storages[id] = std::make_unique<tenure::raft::MemoryStorage>();
    machines[id] = std::make_unique<tenure::testing::RecordingStateMachine>();
    groups[id] = std::make_unique<Group>(io, c, o, clock, transport, *storages[id], *machines[id]);
    nodes[id] = groups[id].get();
  }

  tenure::raft::SteadyClock clock;
  std::array<Group*, kSlots> nodes{};
  LocalTransport transport;
  std::array<std::unique_ptr<tenure::raft::MemoryStorage>, kSlots> storages;
  std::array<std::unique_ptr<tenure::testing::RecordingStateMachine>, kSlots> machines;
  std::array<std::unique_ptr<Group>, kSlots> groups;
};

// Runs `io` until `done()` or `limit` passes; returns done().
inline bool run_until(::boost::asio::io_context& io, const std::function<bool()>& done,
                      std::chrono::milliseconds limit = 5s) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (!done() && std::chrono::steady_clock::now() < until) {
    io.run_one_for(5ms);
  }
  return done();
}

}  // namespace tenure::testing::asio_cluster
