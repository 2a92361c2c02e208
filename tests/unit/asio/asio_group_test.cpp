// AsioGroup: three groups on one io_context (tests/support/asio_cluster.hpp). Real time with
// short timeouts; every wait is bounded by a deadline and polls the io_context, never sleeps.
#include <raft/asio/asio_group.hpp>

#include <utility>  // before Asio: Boost 1.74's awaitable.hpp uses std::exchange without it

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>

#include <doctest/doctest.h>

#include <chrono>
#include <cstddef>
#include <future>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "../../support/asio_cluster.hpp"

using namespace std::chrono_literals;
using tenure::raft::errc;
using tenure::raft::kNoNode;
using tenure::raft::NodeId;
using tenure::raft::ProposeResult;
using tenure::raft::Result;
using tenure::raft::asio::ReadLevel;
using tenure::raft::asio::ReadResult;

using tenure::testing::asio_cluster::Cluster;
using tenure::testing::asio_cluster::Group;
using tenure::testing::asio_cluster::run_until;

namespace {

struct AllocationCounts {
  int allocations = 0;
  int deallocations = 0;
};

template <class T>
struct CountingAllocator {
  using value_type = T;
  explicit CountingAllocator(AllocationCounts* c) noexcept : counts(c) {}
  template <class U>
  CountingAllocator(const CountingAllocator<U>& other) noexcept : counts(other.counts) {}
  T* allocate(std::size_t n) {
    ++counts->allocations;
    return std::allocator<T>().allocate(n);
  }
  void deallocate(T* p, std::size_t n) noexcept {
    ++counts->deallocations;
    std::allocator<T>().deallocate(p, n);
  }
  template <class U>
  bool operator==(const CountingAllocator<U>& other) const noexcept {
    return counts == other.counts;
  }
  AllocationCounts* counts;
};

// A completion handler with its own executor and a counting allocator.
struct CountedHandler {
  using executor_type = ::boost::asio::io_context::executor_type;
  using allocator_type = CountingAllocator<std::byte>;
  executor_type get_executor() const noexcept { return executor; }
  allocator_type get_allocator() const noexcept { return allocator_type(counts); }
  void operator()(Result<ReadResult> r) { *out = r; }

  executor_type executor;
  AllocationCounts* counts;
  std::optional<Result<ReadResult>>* out;
};

}  // namespace

TEST_CASE(
    "AsioGroup: a cluster elects a leader and commits proposals and serves reads at all levels") {
  ::boost::asio::io_context io;
  Cluster c(io);
  REQUIRE(run_until(io, [&] { return c.leader() != kNoNode; }));
  const NodeId leader = c.leader();
  Group& g = *c.groups[leader];

  const std::vector<std::byte> payload{std::byte{1}, std::byte{2}, std::byte{3}};
  std::optional<Result<ProposeResult>> proposed;
  g.async_propose(payload, 1s, [&](Result<ProposeResult> r) { proposed = r; });
  REQUIRE(run_until(io, [&] { return proposed.has_value(); }));
  REQUIRE(proposed->has_value());
  const auto index = proposed->value().index;
  CHECK(proposed->value().result == tenure::testing::RecordingStateMachine::result_for(index));
  CHECK(c.machines[leader]->applied().back().payload == payload);

  std::optional<Result<ReadResult>> linearizable;
  std::optional<Result<ReadResult>> leased;
  std::optional<Result<ReadResult>> stale;
  g.async_read(ReadLevel::linearizable, 1s, [&](Result<ReadResult> r) { linearizable = r; });
  REQUIRE(run_until(io, [&] { return linearizable.has_value(); }));
  g.async_read(ReadLevel::lease, 1s, [&](Result<ReadResult> r) { leased = r; });
  REQUIRE(run_until(io, [&] { return leased.has_value(); }));
  g.async_read(ReadLevel::stale, 1s, [&](Result<ReadResult> r) { stale = r; });
  REQUIRE(run_until(io, [&] { return stale.has_value(); }));
  REQUIRE(linearizable->has_value());
  REQUIRE(leased->has_value());
  REQUIRE(stale->has_value());
  CHECK(linearizable->value().index >= index);
  CHECK_FALSE(linearizable->value().from_lease);
  CHECK(leased->value().index >= index);
  CHECK(leased->value().from_lease);  // a committed write just extended the lease

  // A follower refuses a proposal with a hint naming the leader.
  const NodeId follower = leader % 3 + 1;
  std::optional<Result<ProposeResult>> refused;
  c.groups[follower]->async_propose(payload, 1s, [&](Result<ProposeResult> r) { refused = r; });
  REQUIRE(run_until(io, [&] { return refused.has_value(); }));
  CHECK(refused->code() == errc::not_leader);
  CHECK(refused->leader_hint() == leader);

  c.stop_all(io);
}

TEST_CASE("AsioGroup: a read without a quorum fails at its deadline - not before and not later") {
  ::boost::asio::io_context io;
  Cluster c(io, /*check_quorum=*/false);  // the leader keeps leading: only the deadline ends it
  REQUIRE(run_until(io, [&] { return c.leader() != kNoNode; }));
  const NodeId leader = c.leader();
  Group& g = *c.groups[leader];
  c.transport.cut_off_all_but(leader);
  std::optional<Result<ReadResult>> read;
  const auto start = std::chrono::steady_clock::now();
  g.async_read(ReadLevel::linearizable, 250ms, [&](Result<ReadResult> r) { read = r; });
  REQUIRE(run_until(io, [&] { return read.has_value(); }));
  const auto took = std::chrono::steady_clock::now() - start;
  // Lesson 1: the runtime wakes at the operation's deadline (next_deadline()), not at some later
  // tick or timeout. The upper slack is for a loaded machine or a sanitizer build.
  CHECK(read->code() == errc::timed_out);
  CHECK(took >= 250ms);
  CHECK(took < 250ms + 200ms);
  c.stop_all(io);
}

TEST_CASE("AsioGroup: stop() fails pending operations with stopped and later ones at once") {
  ::boost::asio::io_context io;
  Cluster c(io);
  REQUIRE(run_until(io, [&] { return c.leader() != kNoNode; }));
  const NodeId leader = c.leader();
  Group& g = *c.groups[leader];
  c.transport.cut_off_all_but(leader);
  const std::vector<std::byte> payload{std::byte{9}};
  std::optional<Result<ProposeResult>> pending;
  g.async_propose(payload, 10s, [&](Result<ProposeResult> r) { pending = r; });
  io.run_for(20ms);  // shorter than an election timeout: still the leader, nothing commits
  REQUIRE_FALSE(pending.has_value());
  g.stop();
  REQUIRE(run_until(io, [&] { return pending.has_value(); }));
  CHECK(pending->code() == errc::stopped);
  std::optional<Result<ReadResult>> after;
  g.async_read(ReadLevel::stale, 1s, [&](Result<ReadResult> r) { after = r; });
  REQUIRE(run_until(io, [&] { return after.has_value(); }));
  CHECK(after->code() == errc::stopped);
  c.stop_all(io);
}

TEST_CASE("AsioGroup: use_future completions with the io_context on another thread") {
  ::boost::asio::io_context io;
  Cluster c(io);
  auto guard = ::boost::asio::make_work_guard(io);
  std::thread runner([&] { io.run(); });
  NodeId leader = kNoNode;
  const auto until = std::chrono::steady_clock::now() + 5s;
  while (leader == kNoNode && std::chrono::steady_clock::now() < until) {
    leader = c.leader();  // leader_term() is an atomic load: any thread
    std::this_thread::yield();
  }
  REQUIRE(leader != kNoNode);
  const std::vector<std::byte> payload{std::byte{4}};
  auto future = c.groups[leader]->async_propose(payload, 1s, ::boost::asio::use_future);
  REQUIRE(future.wait_for(5s) == std::future_status::ready);
  const Result<ProposeResult> r = future.get();
  CHECK(r.has_value());
  for (auto& group : c.groups) {
    if (group) {
      group->stop();
    }
  }
  guard.reset();
  io.stop();
  runner.join();
}

TEST_CASE("AsioGroup: use_awaitable completions in a coroutine") {
  ::boost::asio::io_context io;
  Cluster c(io);
  REQUIRE(run_until(io, [&] { return c.leader() != kNoNode; }));
  Group& g = *c.groups[c.leader()];
  const std::vector<std::byte> payload{std::byte{5}};
  std::optional<Result<ProposeResult>> proposed;
  std::optional<Result<ReadResult>> read;
  ::boost::asio::co_spawn(
      io,
      [&]() -> ::boost::asio::awaitable<void> {
        proposed = co_await g.async_propose(payload, 1s, ::boost::asio::use_awaitable);
        read = co_await g.async_read(ReadLevel::lease, 1s, ::boost::asio::use_awaitable);
      },
      ::boost::asio::detached);
  REQUIRE(run_until(io, [&] { return read.has_value(); }));
  REQUIRE(proposed->has_value());
  REQUIRE(read->has_value());
  CHECK(read->value().index >= proposed->value().index);
  CHECK(read->value().from_lease);
  c.stop_all(io);
}

TEST_CASE(
    "AsioGroup: the operation and the completion's post allocate with the handler's allocator") {
  ::boost::asio::io_context io;
  ::boost::asio::io_context elsewhere;  // the handler's executor: completing there takes a post
  Cluster c(io);
  AllocationCounts counts;
  std::optional<Result<ReadResult>> read;
  c.groups[1]->async_read(ReadLevel::stale, 1s,
                          CountedHandler{elsewhere.get_executor(), &counts, &read});
  CHECK(counts.allocations == 1);                                   // the operation's state
  REQUIRE(run_until(io, [&] { return counts.allocations == 2; }));  // the post to `elsewhere`
  CHECK(counts.deallocations == 1);  // the state, freed before the handler runs
  REQUIRE_FALSE(read.has_value());
  const auto until = std::chrono::steady_clock::now() + 5s;
  while (!read.has_value() && std::chrono::steady_clock::now() < until) {
    elsewhere.run_one_for(5ms);
  }
  REQUIRE(read.has_value());
  CHECK(read->has_value());
  CHECK(counts.allocations == 2);
  CHECK(counts.deallocations == 2);  // Asio frees the posted operation before the upcall
  c.stop_all(io);
}

TEST_CASE("AsioGroup: async_change_membership adds a joining node and removes another") {
  using tenure::raft::LogIndex;
  using tenure::raft::Membership;
  using tenure::raft::asio::MembershipStatus;
  ::boost::asio::io_context io;
  Cluster c(io);
  REQUIRE(run_until(io, [&] { return c.leader() != kNoNode; }));
  const NodeId leader = c.leader();
  Group& g = *c.groups[leader];
  const std::vector<std::byte> before{std::byte{1}};
  std::optional<Result<ProposeResult>> proposed;
  g.async_propose(before, 1s, [&](Result<ProposeResult> r) { proposed = r; });
  REQUIRE(run_until(io, [&] { return proposed.has_value(); }));
  REQUIRE(proposed->has_value());

  // Node 4 starts knowing no members; the leader adds it (the target computed on the strand).
  c.add_joining(io, 4);
  std::optional<MembershipStatus> joining;
  c.groups[4]->async_membership([&](MembershipStatus s) { joining = std::move(s); });
  REQUIRE(run_until(io, [&] { return joining.has_value(); }));
  CHECK(joining->membership.voters.empty());
  CHECK(joining->leader == kNoNode);

  // A follower refuses with the leader's id as hint, and changes nothing.
  const NodeId follower = leader % 3 + 1;
  std::optional<Result<LogIndex>> refused;
  c.groups[follower]->async_change_membership(Membership{{1, 2, 3, 4}, {}, {}}, 1s,
                                              [&](Result<LogIndex> r) { refused = r; });
  REQUIRE(run_until(io, [&] { return refused.has_value(); }));
  CHECK(refused->code() == errc::not_leader);
  CHECK(refused->leader_hint() == leader);

  std::optional<Result<LogIndex>> added;
  std::optional<Result<LogIndex>> second;
  g.async_change_membership(
      [](const Membership& m) {
        Membership next = m;
        next.voters.push_back(4);
        return next;
      },
      3s, [&](Result<LogIndex> r) { added = r; });
  // A second change while the first is under way is refused at once.
  g.async_change_membership(Membership{{1, 2, 3}, {}, {4}}, 3s,
                            [&](Result<LogIndex> r) { second = r; });
  REQUIRE(run_until(io, [&] { return added.has_value() && second.has_value(); }));
  CHECK(second->code() == errc::change_in_progress);
  REQUIRE(added->has_value());
  const LogIndex index = added->value();
  CHECK(index > proposed->value().index);

  // Every node, the new one included, ends in {1,2,3,4} (as of the change's entry) and node 4
  // has applied the write made before it joined.
  std::optional<MembershipStatus> seen;
  for (NodeId id = 1; id <= 4; ++id) {
    REQUIRE(run_until(io, [&] {
      seen.reset();
      c.groups[id]->async_membership([&](MembershipStatus s) { seen = std::move(s); });
      run_until(io, [&] { return seen.has_value(); });
      return seen->index >= index && seen->in_force_committed;
    }));
    CAPTURE(id);
    CHECK(seen->membership == Membership{{1, 2, 3, 4}, {}, {}});
    CHECK(seen->committed.voters.size() == 4);
  }
  REQUIRE(run_until(io, [&] { return !c.machines[4]->applied().empty(); }));
  CHECK(c.machines[4]->applied().front().payload == before);

  // Remove a follower other than node 4; the group keeps committing with the rest.
  const NodeId removed = leader == 1 ? 2 : 1;
  std::vector<NodeId> rest;
  for (NodeId id = 1; id <= 4; ++id) {
    if (id != removed) {
      rest.push_back(id);
    }
  }
  std::optional<Result<LogIndex>> dropped;
  g.async_change_membership(Membership{rest, {}, {}}, 3s, [&](Result<LogIndex> r) { dropped = r; });
  REQUIRE(run_until(io, [&] { return dropped.has_value(); }));
  REQUIRE(dropped->has_value());
  CHECK(dropped->value() > index);
  std::optional<MembershipStatus> at_leader;
  g.async_membership([&](MembershipStatus s) { at_leader = std::move(s); });
  REQUIRE(run_until(io, [&] { return at_leader.has_value(); }));
  CHECK(at_leader->membership.voters == rest);
  CHECK(at_leader->role == tenure::raft::Role::leader);
  CHECK_FALSE(at_leader->changing);
  c.stop_all(io);
}
