// LeaseCoordinator over a scripted provider: lessons 4 to 9, one scenario per rule.
#include <lease/lease_coordinator.hpp>
#include <raft/testing/allocation_guard.hpp>

#include "../../support/scripted_provider.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using tenure::lease::LeaseConfig;
using tenure::lease::LeaseCoordinator;
using tenure::raft::errc;
using tenure::raft::ErrorClass;
using tenure::raft::LogIndex;
using tenure::raft::Result;
using tenure::testing::ScriptedProvider;

namespace {

// election_timeout_min 100 ms, no drift, no margin: a 100 ms lease, easy to reason about.
LeaseConfig exact_config() {
  LeaseConfig c;
  c.election_timeout_min = 100ms;
  c.max_clock_drift_ppm = 0;
  c.margin = 0ns;
  c.default_read_timeout = 5s;
  return c;
}

// Collects the outcome of one ReadOperation.
struct ReadProbe {
  std::optional<Result<LogIndex>> outcome;
  int calls = 0;
  static void done(void* self, Result<LogIndex> r) noexcept {
    auto& p = *static_cast<ReadProbe*>(self);
    p.outcome = r;
    ++p.calls;
  }
  tenure::raft::Completion<LogIndex> completion() { return {&done, this}; }
};

using Coordinator = LeaseCoordinator<ScriptedProvider>;

struct Fixture {
  ScriptedProvider provider{1};
  Coordinator coordinator{provider, exact_config()};
  ScriptedProvider::clock_type& clock = provider.mutable_clock();

  Fixture() {
    clock.advance(1s);  // start away from the epoch
    provider.lead(3, {1, 2, 3});
    provider.set_applied(42);
  }
};

}  // namespace

TEST_CASE("lesson 4: no lease without a quorum ack, and none once it is older than the lease") {
  Fixture f;
  CHECK(f.coordinator.lease_read().code() == errc::lease_expired);
  const auto sent = f.clock.now();
  f.provider.ack(2, sent);
  auto r = f.coordinator.lease_read();
  REQUIRE(r.has_value());
  CHECK(r.value() == 42);
  f.clock.advance(99ms);
  CHECK(f.coordinator.lease_read().has_value());
  f.clock.advance(1ms);  // now - quorum_ack == lease: no longer strictly inside
  CHECK(f.coordinator.lease_read().code() == errc::lease_expired);
}

TEST_CASE("lesson 4: only a leader of its current term serves, and a follower names the leader") {
  Fixture f;
  f.provider.ack(2, f.clock.now());
  REQUIRE(f.coordinator.lease_read().has_value());
  f.provider.lose_leadership(3);
  const auto r = f.coordinator.lease_read();
  CHECK(r.code() == errc::not_leader);
  CHECK(r.leader_hint() == 3);
}
