// QuorumAckTracker: lessons 10 to 14 one rule at a time, a seeded randomized comparison with a
// naive model, and the hazard of lesson 11 (a receive-time anchor) played out on a coordinator.
#include <lease/lease_coordinator.hpp>
#include <lease/quorum_ack_tracker.hpp>
#include <raft/errc.hpp>
#include <raft/manual_clock.hpp>
#include <raft/testing/allocation_guard.hpp>
#include <raft/types.hpp>

#include "../../support/scripted_provider.hpp"

#include "../../support/seed.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <limits>
#include <span>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

using namespace std::chrono_literals;
using tenure::lease::LeaseConfig;
using tenure::lease::LeaseCoordinator;
using tenure::lease::QuorumAckTracker;
using tenure::raft::errc;
using tenure::raft::kNoNode;
using tenure::raft::ManualClock;
using tenure::raft::NodeId;
using tenure::testing::ScriptedProvider;

namespace {

using Tracker = QuorumAckTracker<ManualClock, 7>;

constexpr std::int64_t kNeverNs = std::numeric_limits<std::int64_t>::min();
constexpr std::int64_t kAlwaysNs = std::numeric_limits<std::int64_t>::max();

// Instants are written as plain nanoseconds so that a failed CHECK prints a number.
ManualClock::time_point at(std::int64_t nanos) {
  return ManualClock::time_point{std::chrono::nanoseconds{nanos}};
}
std::int64_t ns(ManualClock::time_point t) {
  return t.time_since_epoch().count();
}

template <class T>
std::error_code configure(T& tracker, std::vector<NodeId> voters,
                          std::vector<NodeId> outgoing = {}) {
  return tracker.set_configuration(voters, outgoing);
}

}  // namespace

// --- basics -------------------------------------------------------------------------------------

TEST_CASE("QuorumAckTracker: no quorum before the first configuration") {
  Tracker t{1};
  CHECK(ns(t.quorum_ack()) == kNeverNs);
  t.record(2, at(10));  // nobody is a member yet
  CHECK(ns(t.quorum_ack()) == kNeverNs);
  CHECK_FALSE(t.is_voter(1));
}

TEST_CASE("QuorumAckTracker: a leader that is the only voter is its own quorum (lesson 13)") {
  Tracker t{1};
  REQUIRE_FALSE(configure(t, {1}));
  CHECK(t.quorum_ack() == Tracker::kAlways);
  t.record(2, at(10));  // not a member: changes nothing
  CHECK(t.quorum_ack() == Tracker::kAlways);
  t.reset();  // a new term: the leader alone still needs nobody
  CHECK(t.quorum_ack() == Tracker::kAlways);
}

TEST_CASE("QuorumAckTracker: three voters without an ack have no quorum") {
  Tracker t{1};
  REQUIRE_FALSE(configure(t, {1, 2, 3}));
  CHECK(t.quorum_ack() == Tracker::kNever);
  CHECK(ns(t.last_ack(2)) == kNeverNs);
  CHECK(t.last_ack(1) == Tracker::kAlways);
}

TEST_CASE("QuorumAckTracker: one follower's ack and the leader make a quorum of three") {
  Tracker t{1};
  REQUIRE_FALSE(configure(t, {1, 2, 3}));
  t.record(3, at(100));
  CHECK(ns(t.quorum_ack()) == 100);
  t.record(2, at(70));  // the older of two acks is not the freshest majority's oldest
  CHECK(ns(t.quorum_ack()) == 100);
  t.record(2, at(150));
  CHECK(ns(t.quorum_ack()) == 150);
}

TEST_CASE("QuorumAckTracker: five voters take the oldest ack among the freshest majority") {
  Tracker t{1};
  REQUIRE_FALSE(configure(t, {1, 2, 3, 4, 5}));
  t.record(2, at(10));
  CHECK(ns(t.quorum_ack()) == kNeverNs);  // self + 2 are only two of five
  t.record(3, at(50));
  CHECK(ns(t.quorum_ack()) == 10);  // self, 3 (50), 2 (10)
  t.record(4, at(30));
  CHECK(ns(t.quorum_ack()) == 30);  // self, 3 (50), 4 (30): the second freshest follower
  t.record(5, at(20));
  CHECK(ns(t.quorum_ack()) == 30);  // 5 is not among the freshest three
  t.record(5, at(40));
  CHECK(ns(t.quorum_ack()) == 40);  // now it is: self, 3 (50), 5 (40)
  t.record(3, at(60));
  CHECK(ns(t.quorum_ack()) == 40);  // raising the freshest leaves the majority's oldest alone
  t.record(2, at(45));
  CHECK(ns(t.quorum_ack()) == 45);  // self, 3 (60), 2 (45)
}

TEST_CASE("QuorumAckTracker: an even voter count needs more than half") {
  Tracker t{1};
  REQUIRE_FALSE(configure(t, {1, 2, 3, 4}));
  t.record(2, at(30));
  CHECK(ns(t.quorum_ack()) == kNeverNs);  // two of four is no majority
  t.record(3, at(20));
  CHECK(ns(t.quorum_ack()) == 20);
  t.record(4, at(10));
  CHECK(ns(t.quorum_ack()) == 20);
}

TEST_CASE("QuorumAckTracker: an ack older than one already recorded is ignored") {
  Tracker t{1};
  REQUIRE_FALSE(configure(t, {1, 2, 3}));
  t.record(2, at(50));
  t.record(2, at(40));  // the answer to an earlier heartbeat, overtaken in the network
  CHECK(ns(t.last_ack(2)) == 50);
  CHECK(ns(t.quorum_ack()) == 50);
  t.record(2, at(50));  // a duplicate
  CHECK(ns(t.last_ack(2)) == 50);
  CHECK(ns(t.quorum_ack()) == 50);
}

TEST_CASE("QuorumAckTracker: acks from non-members and from the leader itself are ignored") {
  Tracker t{1};
  REQUIRE_FALSE(configure(t, {1, 2, 3, 4, 5}));
  t.record(2, at(50));
  t.record(9, at(100));  // not a member (lesson 13): must not stand in for a voter
  t.record(8, at(100));
  CHECK(ns(t.quorum_ack()) == kNeverNs);
  CHECK_FALSE(t.is_voter(9));
  CHECK(ns(t.last_ack(9)) == kNeverNs);
  t.record(1, at(100));  // the leader's own "ack" is no evidence about any follower
  CHECK(t.last_ack(1) == Tracker::kAlways);
  CHECK(ns(t.quorum_ack()) == kNeverNs);
  t.record(kNoNode, at(100));
  CHECK(ns(t.quorum_ack()) == kNeverNs);
  t.record(3, at(40));
  CHECK(ns(t.quorum_ack()) == 40);
}

TEST_CASE("QuorumAckTracker: reset forgets every ack and keeps the configuration (lesson 13)") {
  Tracker t{1};
  REQUIRE_FALSE(configure(t, {1, 2, 3}, {1, 4, 5}));
  t.record(2, at(10));
  t.record(4, at(20));
  REQUIRE(ns(t.quorum_ack()) == 10);
  t.reset();
  CHECK(ns(t.quorum_ack()) == kNeverNs);
  CHECK(ns(t.last_ack(2)) == kNeverNs);
  CHECK(ns(t.last_ack(4)) == kNeverNs);
  CHECK(t.last_ack(1) == Tracker::kAlways);
  CHECK(t.joint());
  for (NodeId id : {1, 2, 3, 4, 5}) {
    CHECK(t.is_voter(id));
  }
  // The configuration still applies: a quorum of both sets is needed again.
  t.record(3, at(30));
  CHECK(ns(t.quorum_ack()) == kNeverNs);
  t.record(5, at(40));
  CHECK(ns(t.quorum_ack()) == 30);
}

TEST_CASE("QuorumAckTracker: a removed peer is pruned and members that stay keep their acks") {
  Tracker t{1};
  REQUIRE_FALSE(configure(t, {1, 2, 3}));
  t.record(2, at(50));
  t.record(3, at(40));
  REQUIRE(ns(t.quorum_ack()) == 50);

  REQUIRE_FALSE(configure(t, {1, 2, 4}));
  CHECK(ns(t.last_ack(2)) == 50);  // stays
  CHECK_FALSE(t.is_voter(3));
  CHECK(ns(t.last_ack(3)) == kNeverNs);
  CHECK(ns(t.quorum_ack()) == 50);
  t.record(3, at(60));  // a late answer from the removed peer
  CHECK(ns(t.last_ack(3)) == kNeverNs);

  // Re-added, 3 starts from nothing: its ack from before the removal proves nothing now.
  REQUIRE_FALSE(configure(t, {1, 3, 4}));
  CHECK(ns(t.last_ack(3)) == kNeverNs);
  CHECK(ns(t.quorum_ack()) == kNeverNs);  // 2 (50) left: no follower of the new set has acked
  t.record(4, at(70));
  CHECK(ns(t.quorum_ack()) == 70);
}

TEST_CASE("QuorumAckTracker: a joint configuration needs a quorum in both sets") {
  Tracker t{1};
  REQUIRE_FALSE(configure(t, {1, 2, 3}, {1, 4, 5}));
  CHECK(t.joint());
  t.record(2, at(100));
  CHECK(ns(t.quorum_ack()) == kNeverNs);  // incoming has 100, outgoing nothing
  t.record(4, at(50));
  CHECK(ns(t.quorum_ack()) == 50);  // min(100, 50)
  t.record(5, at(70));
  CHECK(ns(t.quorum_ack()) == 70);  // outgoing: self, 5 (70)
  t.record(3, at(200));
  CHECK(ns(t.quorum_ack()) == 70);  // incoming rose to 200; outgoing still holds it back
  t.record(4, at(300));
  CHECK(ns(t.quorum_ack()) == 200);

  // Leaving the joint configuration: only the incoming set counts.
  REQUIRE_FALSE(configure(t, {1, 2, 3}));
  CHECK_FALSE(t.joint());
  CHECK(ns(t.quorum_ack()) == 200);
  CHECK_FALSE(t.is_voter(4));
}

TEST_CASE("QuorumAckTracker: a joint configuration whose incoming set leaves the leader out") {
  // The leader (1) is being removed: it still leads the joint configuration but does not count
  // in the incoming set, so there a majority of followers must have acknowledged.
  Tracker t{1};
  REQUIRE_FALSE(configure(t, {2, 3, 4}, {1, 2, 3}));
  t.record(2, at(100));
  CHECK(ns(t.quorum_ack()) == kNeverNs);  // outgoing: self + 2 = 100; incoming: one of three
  t.record(3, at(80));
  CHECK(ns(t.quorum_ack()) == 80);  // incoming: 2 (100), 3 (80); outgoing: self, 2 (100)
  t.record(4, at(90));
  CHECK(ns(t.quorum_ack()) == 90);  // incoming: 2 (100), 4 (90)

  // The leader is gone from both sets: it is no longer counted anywhere.
  REQUIRE_FALSE(configure(t, {2, 3, 4}));
  CHECK_FALSE(t.is_voter(1));
  CHECK(ns(t.quorum_ack()) == 90);
  REQUIRE_FALSE(configure(t, {2, 3, 4, 5, 6}));
  CHECK(ns(t.quorum_ack()) == 80);  // 2 (100), 4 (90), 3 (80)

  // The symmetric case: the leader is only in the incoming set (it is being added as a voter).
  Tracker u{1};
  REQUIRE_FALSE(configure(u, {1, 2, 3}, {2, 3, 4}));
  u.record(2, at(100));
  CHECK(ns(u.quorum_ack()) == kNeverNs);
  u.record(4, at(60));
  CHECK(ns(u.quorum_ack()) == 60);
}

TEST_CASE("QuorumAckTracker: set_configuration refuses bad voter sets and changes nothing") {
  QuorumAckTracker<ManualClock, 5> t{1};
  REQUIRE_FALSE(configure(t, {1, 2, 3}, {1, 3, 4}));
  t.record(2, at(100));
  t.record(3, at(90));
  t.record(4, at(80));
  REQUIRE(ns(t.quorum_ack()) == 90);

  auto unchanged = [&t] {
    CHECK(ns(t.quorum_ack()) == 90);
    CHECK(t.joint());
    for (NodeId id : {1, 2, 3, 4}) {
      CHECK(t.is_voter(id));
    }
    CHECK_FALSE(t.is_voter(5));
    CHECK(ns(t.last_ack(2)) == 100);
    CHECK(ns(t.last_ack(3)) == 90);
    CHECK(ns(t.last_ack(4)) == 80);
  };
  const std::error_code invalid = make_error_code(errc::invalid_config);

  SUBCASE("no voters") {
    CHECK(configure(t, {}) == invalid);
    CHECK(configure(t, {}, {1, 2, 3}) == invalid);
  }
  SUBCASE("kNoNode") {
    CHECK(configure(t, {1, kNoNode, 3}) == invalid);
    CHECK(configure(t, {1, 2, 3}, {kNoNode}) == invalid);
  }
  SUBCASE("a node twice in one set") {
    CHECK(configure(t, {1, 2, 2}) == invalid);
    CHECK(configure(t, {1, 2, 3}, {4, 5, 4}) == invalid);
  }
  SUBCASE("more distinct members than MaxPeers") {
    CHECK(configure(t, {1, 2, 3, 4, 5, 6}) == invalid);
    CHECK(configure(t, {1, 2, 3}, {4, 5, 6}) == invalid);      // 6 distinct over both sets
    CHECK(configure(t, {1, 2, 3, 4, 5}, {2, 6}) == invalid);   // the sixth only in outgoing
    CHECK(configure(t, {6, 7, 8, 9, 10}, {5, 6}) == invalid);  // the leader not even a voter
  }
  unchanged();

  // The boundary: exactly MaxPeers distinct members, shared between the sets, is accepted.
  CHECK_FALSE(configure(t, {1, 2, 3, 4}, {2, 3, 4, 5}));
  CHECK(t.is_voter(5));
  CHECK(ns(t.last_ack(2)) == 100);
}

TEST_CASE("QuorumAckTracker: 64 members are as many as its bit mask holds") {
  QuorumAckTracker<ManualClock, 64> t{1};
  std::vector<NodeId> members;
  for (NodeId id = 1; id <= 64; ++id) {
    members.push_back(id);
  }
  REQUIRE_FALSE(configure(t, members));
  for (NodeId id = 2; id <= 63; ++id) {
    t.record(id, at(static_cast<std::int64_t>(id) * 10));
  }
  // A majority of 64 is 33: the leader and the 32 freshest followers, 63 down to 32.
  CHECK(ns(t.quorum_ack()) == 320);
  t.record(64, at(1000));  // the member in the last slot, bit 63 of the mask
  CHECK(ns(t.quorum_ack()) == 330);

  members.push_back(65);
  CHECK(configure(t, members) == make_error_code(errc::invalid_config));
  CHECK(configure(t, {1, 2, 3}, members) == make_error_code(errc::invalid_config));
  CHECK(ns(t.quorum_ack()) == 330);
}

// --- lesson 14: no allocation -------------------------------------------------------------------

TEST_CASE("QuorumAckTracker: record and quorum_ack allocate nothing (lesson 14)") {
  using tenure::raft::testing::AllocationGuard;
  REQUIRE(tenure::raft::testing::allocation_counting_installed());
  using Wide = QuorumAckTracker<ManualClock, 16>;
  Wide t{1};
  const std::array<NodeId, 9> voters{1, 2, 3, 4, 5, 6, 7, 8, 9};
  const std::array<NodeId, 5> outgoing{1, 10, 11, 12, 13};
  REQUIRE_FALSE(t.set_configuration(voters, outgoing));

  std::size_t finite_reads = 0;  // keeps the reads observable, and proves they saw acks
  std::uint64_t allocations = 0;
  {
    AllocationGuard guard;
    for (std::int64_t sent = 1; sent <= 2000; ++sent) {
      t.record(static_cast<NodeId>(2 + sent % 12), at(sent));
      t.record(static_cast<NodeId>(2 + (sent * 7) % 12), at(sent - 5));  // some stale
      finite_reads += t.quorum_ack() != Wide::kNever ? 1 : 0;
    }
    t.reset();
    finite_reads += t.quorum_ack() != Wide::kNever ? 1 : 0;
    allocations = guard.allocations();
  }
  CHECK(allocations == 0);
  CHECK(finite_reads > 1900);

  // Reconfiguring allocates nothing either (the new member table is built on the stack).
  bool accepted = false;
  {
    AllocationGuard guard;
    const std::array<NodeId, 3> smaller{1, 2, 3};
    accepted = !t.set_configuration(smaller);
    t.record(2, at(5000));
    allocations = guard.allocations();
  }
  CHECK(accepted);
  CHECK(allocations == 0);
  CHECK(ns(t.quorum_ack()) == 5000);
}

// --- randomized comparison with a naive model ---------------------------------------------------

namespace {

// A naive tracker: state indexed by node id, a vector and a sort for the quorum, the definition
// read literally. Slow and obviously right. Ids must be below kMaxId.
class ReferenceTracker {
 public:
  static constexpr std::size_t kMaxId = 64;

  ReferenceTracker(NodeId self, std::size_t max_peers) : self_(self), max_peers_(max_peers) {
    acks_.fill(kNeverNs);
  }

  std::error_code set_configuration(const std::vector<NodeId>& voters,
                                    const std::vector<NodeId>& outgoing) {
    const std::error_code invalid = make_error_code(errc::invalid_config);
    if (voters.empty() || !well_formed(voters) || !well_formed(outgoing)) {
      return invalid;
    }
    std::vector<NodeId> members = voters;
    members.insert(members.end(), outgoing.begin(), outgoing.end());
    std::sort(members.begin(), members.end());
    members.erase(std::unique(members.begin(), members.end()), members.end());
    if (members.size() > max_peers_) {
      return invalid;
    }
    voters_ = voters;
    outgoing_ = outgoing;
    member_.fill(false);
    for (NodeId id : members) {
      member_[id] = true;
    }
    for (std::size_t id = 0; id < kMaxId; ++id) {
      if (!member_[id]) {
        acks_[id] = kNeverNs;  // pruned: a member added later starts from nothing
      }
    }
    return {};
  }

  void record(NodeId from, std::int64_t sent) {
    if (from != self_ && is_member(from)) {
      acks_[from] = std::max(acks_[from], sent);
    }
  }

  void reset() { acks_.fill(kNeverNs); }

  bool is_member(NodeId id) const { return member_[id]; }

  std::int64_t last_ack(NodeId id) const { return is_member(id) ? ack_of(id) : kNeverNs; }

  bool joint() const { return !outgoing_.empty(); }

  std::int64_t quorum_ack() const {
    if (voters_.empty()) {
      return kNeverNs;
    }
    std::int64_t q = quorum_of(voters_);
    if (!outgoing_.empty()) {
      q = std::min(q, quorum_of(outgoing_));
    }
    return q;
  }

 private:
  // For a member: the leader is always fresh, a follower has its newest ack or none.
  std::int64_t ack_of(NodeId id) const { return id == self_ ? kAlwaysNs : acks_[id]; }

  static bool well_formed(std::vector<NodeId> set) {
    std::sort(set.begin(), set.end());
    return std::find(set.begin(), set.end(), kNoNode) == set.end() &&
           std::adjacent_find(set.begin(), set.end()) == set.end();
  }

  // The latest instant a majority of `set` acknowledged at or after: sorted freshest first, the
  // majority's oldest is the last of the first size/2 + 1.
  std::int64_t quorum_of(const std::vector<NodeId>& set) const {
    std::vector<std::int64_t> acks;
    acks.reserve(set.size());
    for (NodeId id : set) {
      acks.push_back(ack_of(id));
    }
    std::sort(acks.begin(), acks.end(), std::greater<>{});
    const std::size_t majority = set.size() / 2 + 1;
    return acks[majority - 1];
  }

  NodeId self_;
  std::size_t max_peers_;
  std::vector<NodeId> voters_;
  std::vector<NodeId> outgoing_;
  std::array<bool, kMaxId> member_{};
  std::array<std::int64_t, kMaxId> acks_{};
};

// splitmix64: tiny, fast in a Debug build, and the same sequence on every standard library (a
// seed printed by one build replays on another).
class Rng {
 public:
  explicit Rng(std::uint64_t seed) noexcept : state_(seed) {}
  std::uint64_t next() noexcept {
    std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  std::size_t below(std::size_t n) noexcept { return static_cast<std::size_t>(next() % n); }
  bool one_in(std::size_t n) noexcept { return below(n) == 0; }

 private:
  std::uint64_t state_;
};

constexpr std::uint64_t kDefaultSeed = 20240611;

std::uint64_t test_seed() {
  return tenure::testing::test_seed(kDefaultSeed);
}

using tenure::testing::replay_command;

std::string describe(const std::vector<NodeId>& set) {
  std::string s = "{";
  for (std::size_t i = 0; i < set.size(); ++i) {
    s += (i == 0 ? "" : ",") + std::to_string(set[i]);
  }
  return s + "}";
}

// How often the generator reached each situation worth testing, so a change to it that stops
// producing one is caught rather than silently testing less.
struct Coverage {
  std::size_t simple_configs = 0;
  std::size_t joint_configs = 0;
  std::size_t leader_outside_a_set = 0;  // accepted joint configs missing the leader on one side
  std::size_t refused_configs = 0;
  std::size_t resets = 0;
  std::size_t counted_acks = 0;
  std::size_t stale_acks = 0;    // from a member, no newer than its recorded ack
  std::size_t foreign_acks = 0;  // from a non-member or the leader
  std::size_t always = 0;        // quorum_ack() == kAlways observed
  std::size_t finite = 0;        // a real instant observed
};

// Drives one tracker and the model through the same random operations, comparing every
// observable after each. Returns an empty string, or the first mismatch with the operations that
// led to it when `trace` is set (a failing case is re-run with tracing on, so passing cases pay
// nothing for it).
template <std::size_t MaxPeers>
class RandomCase {
 public:
  RandomCase(std::uint64_t case_seed, Coverage& coverage, bool trace)
      : rng_(case_seed), coverage_(coverage), trace_(trace) {}

  std::string run() {
    // Ids 1..MaxPeers+3: a configuration always leaves some out, so non-members answer too.
    pool_ = MaxPeers + 3;
    static_assert(MaxPeers + 3 < ReferenceTracker::kMaxId);
    const NodeId self = 1 + rng_.below(pool_);
    QuorumAckTracker<ManualClock, MaxPeers> tracker{self};
    ReferenceTracker model{self, MaxPeers};
    self_ = self;
    log([&] { return "self " + std::to_string(self); });
    if (auto mismatch = compare(tracker, model, true); !mismatch.empty()) {
      return mismatch;
    }
    const std::size_t operations = 6 + rng_.below(20);
    for (std::size_t op = 0; op < operations; ++op) {
      const std::size_t kind = rng_.below(100);
      // Membership and every last_ack are swept only when they may have changed wholesale; after
      // a record, the quorum and the sender's ack are what can go wrong.
      bool sweep = true;
      if (kind < 20 || voters_.empty()) {
        reconfigure(tracker, model);
      } else if (kind < 24) {
        log([] { return std::string("reset"); });
        ++coverage_.resets;
        tracker.reset();
        model.reset();
      } else {
        ack(tracker, model);
        sweep = op + 1 == operations;
      }
      if (auto mismatch = compare(tracker, model, sweep); !mismatch.empty()) {
        return mismatch;
      }
    }
    return {};
  }

 private:
  using RealTracker = QuorumAckTracker<ManualClock, MaxPeers>;

  NodeId random_id() { return 1 + rng_.below(pool_); }

  // A random set of distinct ids. The leader is usually among them but not always: a leader
  // that is being removed, or added, is a voter of only one set of a joint configuration.
  std::vector<NodeId> random_set(std::size_t size) {
    std::vector<NodeId> set;
    if (!rng_.one_in(4)) {
      set.push_back(self_);
    }
    while (set.size() < size) {
      const NodeId id = random_id();
      if (std::find(set.begin(), set.end(), id) == set.end()) {
        set.push_back(id);
      }
    }
    return set;
  }

  // Small changes to a set, as real reconfigurations make: add one, remove one, swap one.
  std::vector<NodeId> mutate(std::vector<NodeId> set) {
    const std::size_t changes = 1 + rng_.below(2);
    for (std::size_t i = 0; i < changes; ++i) {
      if (!set.empty() && rng_.one_in(2)) {
        set.erase(set.begin() + static_cast<std::ptrdiff_t>(rng_.below(set.size())));
      }
      if (set.empty() || rng_.one_in(2)) {
        const NodeId id = random_id();
        if (std::find(set.begin(), set.end(), id) == set.end()) {
          set.push_back(id);
        }
      }
    }
    return set;
  }

  void corrupt(std::vector<NodeId>& set) {
    switch (rng_.below(3)) {
      case 0:
        set.push_back(kNoNode);
        break;
      case 1:
        if (!set.empty()) {
          set.push_back(set[rng_.below(set.size())]);
        }
        break;
      default:
        set.clear();
        break;
    }
  }

  void reconfigure(RealTracker& tracker, ReferenceTracker& model) {
    std::vector<NodeId> voters;
    std::vector<NodeId> outgoing;
    const std::size_t shape = rng_.below(10);
    if (shape < 3 || voters_.empty()) {
      voters = random_set(1 + rng_.below(MaxPeers));  // a fresh configuration
    } else if (shape < 6) {
      voters = mutate(voters_);  // a simple change
    } else if (shape < 8) {
      // Enter (or move within) a joint configuration: the current voters become the outgoing set.
      voters = mutate(voters_);
      outgoing = voters_;
    } else if (shape < 9) {
      // An arbitrary joint configuration: the sets may share anything from nothing to everything.
      voters = random_set(1 + rng_.below(MaxPeers));
      outgoing = random_set(1 + rng_.below(MaxPeers));
    } else {
      voters = voters_;  // leave a joint configuration, or re-apply the same one
    }
    if (rng_.one_in(12)) {
      corrupt(rng_.one_in(2) ? voters : outgoing);
    }
    const std::error_code got = tracker.set_configuration(voters, outgoing);
    const std::error_code want = model.set_configuration(voters, outgoing);
    log([&] {
      return "set_configuration " + describe(voters) + " " + describe(outgoing) + " -> " +
             (want ? "refused" : "ok");
    });
    if (got != want) {
      config_mismatch_ =
          "set_configuration returned " + got.message() + ", the model " + want.message();
    }
    if (!want) {
      voters_ = voters;
      outgoing_ = outgoing;
      if (outgoing.empty()) {
        ++coverage_.simple_configs;
      } else {
        ++coverage_.joint_configs;
        const auto has_self = [this](const std::vector<NodeId>& set) {
          return std::find(set.begin(), set.end(), self_) != set.end();
        };
        coverage_.leader_outside_a_set += has_self(voters) != has_self(outgoing) ? 1 : 0;
      }
    } else {
      ++coverage_.refused_configs;
    }
  }

  void ack(RealTracker& tracker, ReferenceTracker& model) {
    // Leader time moves forward; answers echo a send time from a little while ago, so some are
    // stale, some tie, and they arrive in any order.
    now_ += static_cast<std::int64_t>(rng_.below(4));
    const std::int64_t sent = now_ - static_cast<std::int64_t>(rng_.below(12));
    // Mostly members of either set, sometimes anyone (non-members and the leader too).
    const std::vector<NodeId>& set = outgoing_.empty() || rng_.one_in(2) ? voters_ : outgoing_;
    const NodeId from = rng_.one_in(5) || set.empty() ? random_id() : set[rng_.below(set.size())];
    log([&] { return "record " + std::to_string(from) + " @" + std::to_string(sent); });
    last_sender_ = from;
    if (from == self_ || !model.is_member(from)) {
      ++coverage_.foreign_acks;
    } else if (sent <= model.last_ack(from)) {
      ++coverage_.stale_acks;
    } else {
      ++coverage_.counted_acks;
    }
    tracker.record(from, at(sent));
    model.record(from, sent);
  }

  std::string compare(const RealTracker& tracker, const ReferenceTracker& model, bool sweep) {
    std::string mismatch = std::move(config_mismatch_);
    config_mismatch_.clear();
    const std::int64_t quorum = model.quorum_ack();
    coverage_.always += quorum == kAlwaysNs ? 1 : 0;
    coverage_.finite += quorum != kAlwaysNs && quorum != kNeverNs ? 1 : 0;
    if (mismatch.empty() && ns(tracker.quorum_ack()) != quorum) {
      mismatch = "quorum_ack " + std::to_string(ns(tracker.quorum_ack())) + ", the model " +
                 std::to_string(model.quorum_ack());
    }
    if (mismatch.empty() && tracker.joint() != model.joint()) {
      mismatch = "joint() differs";
    }
    const NodeId first = sweep ? 1 : last_sender_;
    const NodeId last = sweep ? pool_ : last_sender_;
    for (NodeId id = first; mismatch.empty() && id <= last; ++id) {
      if (tracker.is_voter(id) != model.is_member(id)) {
        mismatch = "is_voter(" + std::to_string(id) + ") differs";
      } else if (ns(tracker.last_ack(id)) != model.last_ack(id)) {
        mismatch = "last_ack(" + std::to_string(id) + ") " +
                   std::to_string(ns(tracker.last_ack(id))) + ", the model " +
                   std::to_string(model.last_ack(id));
      }
    }
    if (mismatch.empty()) {
      return {};
    }
    return trace_ ? trace_text_ + "MISMATCH: " + mismatch : mismatch;
  }

  // Builds the line only when tracing: passing cases pay nothing for the log.
  template <class MakeLine>
  void log(MakeLine make_line) {
    if (trace_) {
      trace_text_ += "  " + make_line() + "\n";
    }
  }

  Rng rng_;
  Coverage& coverage_;
  bool trace_;
  std::size_t pool_ = 0;
  NodeId self_ = kNoNode;
  NodeId last_sender_ = kNoNode;
  std::int64_t now_ = 1000;
  std::vector<NodeId> voters_;  // the configuration last accepted
  std::vector<NodeId> outgoing_;
  std::string config_mismatch_;
  std::string trace_text_;
};

template <std::size_t MaxPeers>
void compare_with_model(const char* test_name, std::size_t cases) {
  const std::uint64_t seed = test_seed();
  const std::string replay = replay_command(seed, test_name);
  INFO("seed ", seed, "; replay with: ", replay);
  Rng seeds{seed};
  Coverage coverage;
  for (std::size_t i = 0; i < cases; ++i) {
    const std::uint64_t case_seed = seeds.next();
    if (RandomCase<MaxPeers>{case_seed, coverage, false}.run().empty()) {
      continue;
    }
    Coverage ignored;
    const std::string trace = RandomCase<MaxPeers>{case_seed, ignored, true}.run();
    FAIL("case ", i, " of ", cases, " (MaxPeers ", MaxPeers, ") diverged from the model:\n", trace);
  }
  // Every situation must have come up often (thresholds far below what the default seed gives).
  const std::size_t often = cases / 20;
  CHECK(coverage.simple_configs > often);
  CHECK(coverage.joint_configs > often);
  CHECK(coverage.leader_outside_a_set > often);
  CHECK(coverage.refused_configs > often);
  CHECK(coverage.resets > often);
  CHECK(coverage.counted_acks > often);
  CHECK(coverage.stale_acks > often);
  CHECK(coverage.foreign_acks > often);
  CHECK(coverage.always > often);
  CHECK(coverage.finite > often);
}

constexpr const char* kRandom7 =
    "QuorumAckTracker: matches a naive model on random cases with 7 peers";
constexpr const char* kRandom16 =
    "QuorumAckTracker: matches a naive model on random cases with 16 peers";

}  // namespace

// The replay command printed on failure names the test through the same constant.
TEST_CASE(kRandom7) {
  compare_with_model<7>(kRandom7, 50'000);
}

TEST_CASE(kRandom16) {
  compare_with_model<16>(kRandom16, 8'000);
}

// --- lesson 11: anchor at the send time, not the receive time -----------------------------------

namespace {

// election_timeout_min 100 ms, no drift, no margin: the lease is exactly the election timeout, so
// any hazard below comes from the anchor alone, not from a missing safety margin.
LeaseConfig exact_config() {
  LeaseConfig c;
  c.election_timeout_min = 100ms;
  c.max_clock_drift_ppm = 0;
  c.margin = 0ns;
  c.default_read_timeout = 5s;
  return c;
}

// One leader, modelled twice: identical but for the instant each records a follower's ack at.
struct TwoAnchors {
  ScriptedProvider send_side{1};
  ScriptedProvider receive_side{1};
  LeaseCoordinator<ScriptedProvider> send_anchor{send_side, exact_config()};
  LeaseCoordinator<ScriptedProvider> receive_anchor{receive_side, exact_config()};

  TwoAnchors() {
    for (ScriptedProvider* p : {&send_side, &receive_side}) {
      p->mutable_clock().advance(1s);  // start away from the epoch
      p->lead(3, {1, 2, 3});
      p->set_applied(42);
    }
  }
  ScriptedProvider::time_point now() const { return send_side.clock().now(); }
  void advance(std::chrono::nanoseconds d) {
    send_side.mutable_clock().advance(d);
    receive_side.mutable_clock().advance(d);
  }
};

struct Delays {
  std::chrono::milliseconds request_delay;  // heartbeat h on its way to follower 2
  std::chrono::milliseconds answer_delay;   // 2's answer on its way back
};

// Voters {1, 2, 3}; 1 leads term 3; every clock runs at true rate; election timeout E = 100 ms,
// so lease = 100 ms.
//
// At S the leader sends heartbeat h (stamped S). Follower 3 is cut off from the leader and has
// heard nothing since before S. Follower 2 receives h at F = S + request_delay, resets its election
// timer *at F* and answers at once; the network then holds the answer for answer_delay, so it
// reaches the leader at R = F + answer_delay. Every later heartbeat to 2 is lost, so F is 2's last
// timer reset.
//
// From F + E on, 2's timer has run out: 3 (whose timer ran out earlier) may campaign and 2 may
// vote for it, so a new leader of term 4 may exist and commit writes that leader 1 never sees. A
// read served by 1 from then on may be stale. Leader 1 must therefore stop serving by F + E, but it
// never learns F: it only knows S <= F <= R.
// - Receive-time anchor: takes the reset to be at R, so serves until R + E = F + answer_delay + E:
//   too long by exactly the answer's time in the network. The slow leg that matters is the one
//   *after* the follower's reset; a slow request delays the reset with it and costs the receive
//   anchor nothing, which is why the answer is the delayed message here.
// - Send-time anchor: serves until S + E <= F + E, whichever leg was slow. Safe; the price is
//   request_delay of lease the leader cannot prove.
void check_anchors(Delays delays) {
  const auto lease = 100ms;
  TwoAnchors leader;
  REQUIRE(leader.send_anchor.lease_duration() == lease);
  const auto s = leader.now();
  const auto f = s + delays.request_delay;  // follower 2's last election-timer reset
  const auto r = f + delays.answer_delay;   // its answer reaches the leader
  const auto new_leader_possible = f + lease;

  leader.advance(r - s);
  leader.send_side.ack(2, s);     // echoes the send stamp of h
  leader.receive_side.ack(2, r);  // stamped on arrival
  // Both serve now: 2's timer is still running, so this read is safe under either anchor.
  CHECK(leader.send_anchor.lease_read().has_value());
  CHECK(leader.receive_anchor.lease_read().has_value());

  // Just before S + E the send anchor still serves: it is no more careful than it has to be.
  leader.advance((s + lease - 1ns) - leader.now());
  CHECK(leader.send_anchor.lease_read().has_value());

  // From F + E on a new leader may exist: the receive anchor still serves (the hazard), the send
  // anchor does not. Checked at the first such instant and well inside the window.
  for (const auto when : {new_leader_possible, new_leader_possible + 10ms}) {
    leader.advance(when - leader.now());
    REQUIRE(leader.now() < r + lease);
    const auto hazard = leader.receive_anchor.lease_read();
    CHECK_MESSAGE(hazard.has_value(),
                  "the receive-time anchor should (wrongly) still serve: it credits follower 2 "
                  "with a timer reset at R, later than the one it really made at F");
    const auto refused = leader.send_anchor.lease_read();
    CHECK(refused.code() == errc::lease_expired);
  }

  // The receive anchor keeps serving possibly stale reads until R + E.
  leader.advance((r + lease - 1ns) - leader.now());
  CHECK(leader.receive_anchor.lease_read().has_value());
  leader.advance(1ns);
  CHECK(leader.receive_anchor.lease_read().code() == errc::lease_expired);
}

}  // namespace

TEST_CASE(
    "lesson 11: after a delayed answer a receive-time anchor serves when a new leader may exist "
    "but the send-time anchor does not") {
  SUBCASE("the answer is delayed and the heartbeat is not") {
    check_anchors({0ms, 60ms});
  }
  SUBCASE("both legs are delayed") {
    check_anchors({20ms, 60ms});
  }
}
