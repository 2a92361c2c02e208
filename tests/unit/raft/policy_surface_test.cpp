// The policy surface as a user's own policies meet it: a transport that delivers inside send(), a
// random source with only next(), an error classifier of the user's, and the Storage contract's
// debug checks.
#include <raft/manual_clock.hpp>
#include <raft/memory_storage.hpp>
#include <raft/operations.hpp>
#include <raft/policies.hpp>
#include <raft/raft_group.hpp>
#include <raft/random.hpp>

#include <lease/lease_coordinator.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <system_error>
#include <type_traits>
#include <vector>

#include "../../support/raft_harness.hpp"

using namespace std::chrono_literals;
using tenure::raft::errc;
using tenure::raft::ErrorClass;
using tenure::raft::kNoNode;
using tenure::raft::LogIndex;
using tenure::raft::NodeId;
using tenure::raft::ProposeOperation;
using tenure::raft::ProposeResult;
using tenure::raft::ReadIndexOperation;
using tenure::raft::Result;
using tenure::raft::TransferOperation;
using tenure::testing::RecordingStateMachine;

namespace {

// ---------------------------------------------------------------------------------------------
// A transport that delivers at once: send() steps the receiving group before it returns.
// ---------------------------------------------------------------------------------------------

class DirectTransport;

// A random source with next() only (SplitMix64); counts its draws.
class NextOnlyRandom {
 public:
  explicit NextOnlyRandom(std::uint64_t seed) noexcept : state_(seed) {}
  std::uint64_t next() noexcept {
    ++draws;
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  static inline std::uint64_t draws = 0;

 private:
  std::uint64_t state_;
};
template <class R>
concept HasBelow = requires(R& r) {
  r.below(std::uint64_t{1});
};
static_assert(!HasBelow<NextOnlyRandom>);

// The application's own error, which it wants to end the lease: a fencing token refused by a
// downstream system means another node leads.
enum class AppError { fenced = 1, conflict = 2 };
const std::error_category& app_category() {
  struct Category : std::error_category {
    const char* name() const noexcept override { return "app"; }
    std::string message(int v) const override { return v == 1 ? "fenced" : "conflict"; }
  };
  static const Category category;
  return category;
}
std::error_code make_error_code(AppError e) {
  return {static_cast<int>(e), app_category()};
}

struct FencingClassifier {
  static ErrorClass classify(std::error_code ec) noexcept {
    if (ec == make_error_code(AppError::fenced)) {
      return ErrorClass::leadership_lost;
    }
    return tenure::raft::DefaultErrorClassifier::classify(ec);
  }
};

struct DirectPolicies : tenure::raft::DefaultPolicies {
  using clock_type = tenure::raft::ManualClock;
  using transport_type = DirectTransport;
  using storage_type = tenure::raft::MemoryStorage;
  using state_machine_type = RecordingStateMachine;
  using random_type = NextOnlyRandom;
  using error_classifier = FencingClassifier;
};
using DirectGroup = tenure::raft::RaftGroup<DirectPolicies>;

class DirectTransport {
 public:
  void send(const tenure::raft::Message& m) {
    if (m.to >= groups.size() || groups[m.to] == nullptr) {
      return;
    }
    ++depth_;
    deepest = std::max(deepest, depth_);
    ++delivered;
    groups[m.to]->step(m);  // the receiver may answer at once, from inside this call
    --depth_;
  }

  std::array<DirectGroup*, 4> groups{};
  int deepest = 0;
  std::uint64_t delivered = 0;

 private:
  int depth_ = 0;
};

struct DirectCluster {
  DirectCluster() {
    for (NodeId id = 1; id <= 3; ++id) {
      tenure::raft::RaftConfig c = tenure::testing::harness_config();
      c.self = id;
      c.voters = {1, 2, 3};
      storages[id] = std::make_unique<tenure::raft::MemoryStorage>();
      machines[id] = std::make_unique<RecordingStateMachine>();
      groups[id] = std::make_unique<DirectGroup>(c, clock, transport, *storages[id], *machines[id]);
      transport.groups[id] = groups[id].get();
    }
  }
  ~DirectCluster() {
    for (auto& g : groups) {
      if (g) {
        g->stop();
      }
    }
  }
  NodeId leader() const {
    for (NodeId id = 1; id <= 3; ++id) {
      if (groups[id]->leader_term() != 0) {
        return id;
      }
    }
    return kNoNode;
  }
  // Lets `span` of time pass in 5 ms steps, ticking every group.
  void run_for(std::chrono::milliseconds span) {
    for (auto t = 0ms; t < span; t += 5ms) {
      clock.advance(5ms);
      for (NodeId id = 1; id <= 3; ++id) {
        groups[id]->tick();
      }
    }
  }
  bool run_until_leader() {
    for (int i = 0; i < 400 && leader() == kNoNode; ++i) {
      run_for(5ms);
    }
    return leader() != kNoNode;
  }

  tenure::raft::ManualClock clock;
  DirectTransport transport;
  std::array<std::unique_ptr<tenure::raft::MemoryStorage>, 4> storages;
  std::array<std::unique_ptr<RecordingStateMachine>, 4> machines;
  std::array<std::unique_ptr<DirectGroup>, 4> groups;
};

template <class T>
struct Outcome {
  std::optional<Result<T>> result;
  tenure::raft::Completion<T> completion() {
    return {[](void* self, Result<T> r) noexcept { static_cast<Outcome*>(self)->result = r; },
            this};
  }
};

}  // namespace

TEST_CASE("A transport whose send() steps the peer at once runs a cluster without recursion") {
  constexpr int kCommits = 1000;
  std::vector<Outcome<ProposeResult>> proposed(kCommits);
  std::deque<ProposeOperation> proposals;  // operations do not move
  for (auto& p : proposed) {
    proposals.emplace_back(p.completion());
  }
  Outcome<LogIndex> leader_read;
  Outcome<LogIndex> follower_read;
  ReadIndexOperation leader_read_op(leader_read.completion());
  ReadIndexOperation follower_read_op(follower_read.completion());
  Outcome<void> transferred;
  TransferOperation transfer_op(transferred.completion());

  DirectCluster c;
  REQUIRE(c.run_until_leader());
  const NodeId leader = c.leader();
  DirectGroup& g = *c.groups[leader];

  const auto payload = tenure::testing::bytes_of("x");
  for (int i = 0; i < kCommits; ++i) {
    g.propose(proposals[static_cast<std::size_t>(i)], payload);
    if (i % 10 == 9) {
      g.flush();  // the appends, and every answer to them, happen inside this call
    }
  }
  c.run_for(50ms);
  for (const auto& p : proposed) {
    REQUIRE(p.result.has_value());
    REQUIRE(p.result->has_value());
  }
  const LogIndex last = proposed.back().result->value().index;
  for (NodeId id = 1; id <= 3; ++id) {
    CHECK(c.machines[id]->applied().size() == c.machines[leader]->applied().size());
    CHECK(c.machines[id]->in_order());
  }

  // ReadIndex, where the first one used to recurse until the stack ran out: on the leader (a
  // heartbeat round inside flush) and forwarded from a follower.
  const NodeId follower = leader % 3 + 1;
  g.read_index(leader_read_op);
  g.flush();
  c.groups[follower]->read_index(follower_read_op);
  c.groups[follower]->flush();
  c.run_for(20ms);
  REQUIRE(leader_read.result.has_value());
  REQUIRE(follower_read.result.has_value());
  REQUIRE(leader_read.result->has_value());
  REQUIRE(follower_read.result->has_value());
  CHECK(leader_read.result->value() >= last);
  CHECK(follower_read.result->value() >= last);

  // A lease read through the coordinator, and a leadership transfer (TimeoutNow and the target's
  // whole election happen inside transfer_leadership()).
  {
    tenure::lease::LeaseCoordinator<DirectGroup> lease(g, tenure::lease::LeaseConfig{});
    c.run_for(30ms);  // a heartbeat round refreshes the quorum ack
    CHECK(lease.lease_read().has_value());
  }
  const NodeId target = leader % 3 + 2 > 3 ? 1 : leader % 3 + 2;
  g.transfer_leadership(transfer_op, target);
  c.run_for(50ms);
  REQUIRE(transferred.result.has_value());
  CHECK(transferred.result->has_value());
  CHECK(c.leader() == target);

  // Each group was on the stack at most once: a send inside a send inside a send, no deeper.
  CHECK(c.transport.deepest <= 3);
  CHECK(c.transport.delivered > 2 * kCommits / 10);  // at least an append each way per batch
}

TEST_CASE("A random source with only next() serves election timeouts") {
  NextOnlyRandom::draws = 0;
  DirectCluster c;
  CHECK(NextOnlyRandom::draws >= 3);  // each group drew its first election timeout
  REQUIRE(c.run_until_leader());
  // Timeouts spread by the draws: one election (two at worst) settles it.
  std::uint64_t elections = 0;
  for (NodeId id = 1; id <= 3; ++id) {
    elections += c.groups[id]->stats().elections_started;
  }
  CHECK(elections <= 2);
  CHECK(NextOnlyRandom::draws >= 4);  // the winner drew again on becoming candidate
}

TEST_CASE("The policies' error classifier is the one a RaftGroup's lease coordinator uses") {
  static_assert(std::is_same_v<DirectGroup::error_classifier, FencingClassifier>);
  DirectCluster c;
  REQUIRE(c.run_until_leader());
  tenure::lease::LeaseCoordinator<DirectGroup> lease(*c.groups[c.leader()],
                                                     tenure::lease::LeaseConfig{});
  const auto before = lease.state().generation();
  lease.on_error(make_error_code(AppError::conflict));  // a business error: the lease stays
  CHECK(lease.state().generation() == before);
  lease.on_error(make_error_code(AppError::fenced));  // the user's classifier: leadership lost
  CHECK(lease.state().generation() > before);
}

namespace {

// MemoryStorage (durable at once) that breaks the WriteSeq rules when told to.
struct UnreliableStorage : tenure::raft::MemoryStorage {
  tenure::raft::WriteSeq durable_seq() const noexcept {
    const auto durable = MemoryStorage::durable_seq();
    return rewind ? durable - 2 : durable;  // rule 3: never backwards
  }
  tenure::raft::WriteSeq append(std::span<const tenure::raft::EntryView> entries) {
    const auto seq = MemoryStorage::append(entries);
    return reuse_old_number ? 1 : seq;  // rule 1: non-decreasing
  }
  bool rewind = false;
  bool reuse_old_number = false;
};

struct UnreliablePolicies : tenure::raft::DefaultPolicies {
  using clock_type = tenure::raft::ManualClock;
  using transport_type = DirectTransport;
  using storage_type = UnreliableStorage;
  using state_machine_type = RecordingStateMachine;
};
using UnreliableGroup = tenure::raft::RaftGroup<UnreliablePolicies>;

// A single voter on UnreliableStorage: elected and committing before the storage misbehaves.
struct Solo {
  Solo() {
    tenure::raft::RaftConfig c = tenure::testing::harness_config();
    c.self = 1;
    c.voters = {1};
    group = std::make_unique<UnreliableGroup>(c, clock, transport, storage, machine);
    for (int i = 0; i < 100 && group->leader_term() == 0; ++i) {
      clock.advance(10ms);
      group->tick();
    }
  }
  tenure::raft::ManualClock clock;
  DirectTransport transport;
  UnreliableStorage storage;
  RecordingStateMachine machine;
  std::unique_ptr<UnreliableGroup> group;
};

}  // namespace

TEST_CASE("A storage whose durable_seq() goes back stops the group with storage_failure") {
  Outcome<ProposeResult> first;
  Outcome<ProposeResult> second;
  ProposeOperation first_op(first.completion());
  ProposeOperation second_op(second.completion());
  Solo solo;
  REQUIRE(solo.group->leader_term() != 0);
  const auto payload = tenure::testing::bytes_of("x");
  solo.group->propose(first_op, payload);
  solo.group->flush();
  REQUIRE(first.result.has_value());
  REQUIRE(first.result->has_value());
  CHECK_FALSE(solo.group->failure());

  solo.storage.rewind = true;
  solo.group->propose(second_op, payload);
  solo.group->flush();
  CHECK(solo.group->stopped());
  CHECK(solo.group->failure() == errc::storage_failure);
  REQUIRE(second.result.has_value());
  CHECK(second.result->code() == errc::storage_failure);
  CHECK(solo.machine.applied().size() == 1);  // the first write, nothing after
}

TEST_CASE("A storage whose write numbers go back stops the group with storage_failure") {
  Outcome<ProposeResult> proposed;
  ProposeOperation op(proposed.completion());
  Solo solo;
  REQUIRE(solo.group->leader_term() != 0);
  solo.storage.reuse_old_number = true;
  solo.group->propose(op, tenure::testing::bytes_of("x"));
  solo.group->flush();
  CHECK(solo.group->stopped());
  CHECK(solo.group->failure() == errc::storage_failure);
  // The write waited on the newest number instead (MemoryStorage made it durable at once).
  REQUIRE(proposed.result.has_value());
}

TEST_CASE("step() counts the messages it drops unread: another group or another node") {
  DirectCluster c;
  REQUIRE(c.run_until_leader());
  DirectGroup& g = *c.groups[1];
  const auto before = g.stats().messages_ignored;
  const std::uint64_t term = g.term();
  tenure::raft::Message m;
  m.type = tenure::raft::MessageType::heartbeat;
  m.group = 99;  // not this group
  m.from = 2;
  m.to = 1;
  m.term = term + 5;
  g.step(m);
  m.group = g.config().group;
  m.to = 3;  // not this node
  g.step(m);
  CHECK(g.stats().messages_ignored == before + 2);
  CHECK(g.term() == term);  // neither moved the term
}
