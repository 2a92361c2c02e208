// LeaseCoordinator over a scripted provider: lessons 4 to 9, one scenario per rule.
#include <lease/lease_coordinator.hpp>
#include <raft/testing/allocation_guard.hpp>

#include "../../support/scripted_provider.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <cstring>
#include <new>
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

TEST_CASE("lesson 4: no lease without a quorum ack - and none once it is older than the lease") {
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

TEST_CASE("lesson 4: only a leader of its current term serves - and a follower names the leader") {
  Fixture f;
  f.provider.ack(2, f.clock.now());
  REQUIRE(f.coordinator.lease_read().has_value());
  f.provider.lose_leadership(3);
  const auto r = f.coordinator.lease_read();
  CHECK(r.code() == errc::not_leader);
  CHECK(r.leader_hint() == 3);
}

TEST_CASE("lesson 4: a new term starts with no lease - whatever the old term had") {
  Fixture f;
  f.provider.ack(2, f.clock.now());
  REQUIRE(f.coordinator.lease_read().has_value());
  f.provider.lose_leadership();
  f.provider.lead(5, {1, 2, 3});  // re-elected: acks of term 3 prove nothing about term 5
  CHECK(f.coordinator.lease_read().code() == errc::lease_expired);
  f.provider.ack(3, f.clock.now());
  CHECK(f.coordinator.lease_read().has_value());
}

TEST_CASE("lesson 4: a single-voter group is its own quorum") {
  ScriptedProvider provider{1};
  Coordinator coordinator{provider, exact_config()};
  provider.lead(1, {1});
  provider.set_applied(7);
  provider.mutable_clock().advance(24h);
  CHECK(coordinator.lease_read().value() == 7);
}

TEST_CASE("lesson 8: the fast path returns the applied index published at the time of the read") {
  Fixture f;
  f.provider.ack(2, f.clock.now());
  CHECK(f.coordinator.lease_read().value() == 42);
  f.provider.set_applied(43);
  CHECK(f.coordinator.lease_read().value() == 43);
}

TEST_CASE("read() is served by the lease without a ReadIndex round when the lease holds") {
  Fixture f;
  f.provider.ack(3, f.clock.now());
  ReadProbe probe;
  Coordinator::ReadOperation op(probe.completion());
  f.coordinator.read(op);
  REQUIRE(probe.calls == 1);
  CHECK(probe.outcome->value() == 42);
  CHECK(op.served_by_lease());
  CHECK(f.provider.read_index_calls() == 0);
}

TEST_CASE("lesson 5: a ReadIndex round extends the lease from the instant sampled before it") {
  Fixture f;
  const auto t0 = f.clock.now();
  ReadProbe probe;
  Coordinator::ReadOperation op(probe.completion());
  f.coordinator.read(op);  // no ack yet: falls back to ReadIndex
  REQUIRE(probe.calls == 0);
  REQUIRE(f.provider.pending_reads() == 1);
  f.clock.advance(80ms);  // a slow round
  f.provider.finish_reads(LogIndex{42});
  REQUIRE(probe.calls == 1);
  CHECK(probe.outcome->value() == 42);
  CHECK(!op.served_by_lease());
  // Valid until t0 + 100 ms, not until completion + 100 ms.
  CHECK(f.coordinator.state().expiry() == (t0 + 100ms).time_since_epoch().count());
  f.clock.advance(19ms);
  CHECK(f.coordinator.lease_read().has_value());
  f.clock.advance(1ms);
  CHECK(f.coordinator.lease_read().code() == errc::lease_expired);
}

TEST_CASE("lesson 1: one caller deadline bounds the fast try and the fallback together") {
  Fixture f;
  ReadProbe probe;
  Coordinator::ReadOperation op(probe.completion());
  const auto deadline = f.clock.now() + 30ms;
  f.coordinator.read(op, deadline);
  REQUIRE(f.provider.pending_reads() == 1);
  f.clock.advance(29ms);
  f.provider.expire_reads();
  CHECK(probe.calls == 0);
  f.clock.advance(1ms);
  f.provider.expire_reads();
  REQUIRE(probe.calls == 1);
  CHECK(probe.outcome->code() == errc::timed_out);
  CHECK(f.coordinator.state().expiry() == tenure::lease::LeaseState::kNone);
}

TEST_CASE("lesson 1: a deadline already passed fails at once with timed_out") {
  Fixture f;
  ReadProbe probe;
  Coordinator::ReadOperation op(probe.completion());
  f.coordinator.read(op, f.clock.now());
  REQUIRE(probe.calls == 1);
  CHECK(probe.outcome->code() == errc::timed_out);
  CHECK(f.provider.read_index_calls() == 0);
}

TEST_CASE("lesson 1: a read without a deadline is bounded by the configured default") {
  Fixture f;
  ReadProbe probe;
  Coordinator::ReadOperation op(probe.completion());
  f.coordinator.read(op);
  f.clock.advance(5s - 1ns);
  f.provider.expire_reads();
  CHECK(probe.calls == 0);
  f.clock.advance(1ns);
  f.provider.expire_reads();
  REQUIRE(probe.calls == 1);
  CHECK(probe.outcome->code() == errc::timed_out);
}

TEST_CASE("a read on a follower goes to ReadIndex (forwarded) and its success extends nothing") {
  Fixture f;
  f.provider.lose_leadership(2);
  ReadProbe probe;
  Coordinator::ReadOperation op(probe.completion());
  f.coordinator.read(op);
  REQUIRE(f.provider.pending_reads() == 1);
  f.provider.finish_reads(LogIndex{40});
  CHECK(probe.outcome->value() == 40);
  CHECK(f.coordinator.state().expiry() == tenure::lease::LeaseState::kNone);
}

TEST_CASE("lesson 5: a committed write extends the lease from before its proposal was sent") {
  Fixture f;
  const auto anchor = f.coordinator.begin_write();
  CHECK(anchor.at == f.clock.now());
  f.clock.advance(30ms);  // replication round trip
  f.coordinator.on_write_committed(anchor);
  CHECK(f.coordinator.state().expiry() == (anchor.at + 100ms).time_since_epoch().count());
  f.clock.advance(69ms);
  CHECK(f.coordinator.lease_read().has_value());
  f.clock.advance(1ms);
  CHECK(f.coordinator.lease_read().code() == errc::lease_expired);
}

TEST_CASE("a write sampled in an earlier leadership cannot extend the lease of a later one") {
  Fixture f;
  const auto anchor = f.coordinator.begin_write();
  f.provider.lose_leadership();
  f.provider.lead(4, {1, 2, 3});
  f.coordinator.on_write_committed(anchor);
  CHECK(f.coordinator.lease_read().code() == errc::lease_expired);
}

TEST_CASE("lesson 6: a leader-loss event invalidates before anyone can see the new role") {
  Fixture f;
  f.coordinator.on_write_committed(f.coordinator.begin_write());
  f.provider.ack(2, f.clock.now());
  REQUIRE(f.coordinator.lease_read().has_value());
  bool checked = false;
  tenure::lease::LeaderLossHandler observer([&](tenure::raft::Term lost) {
    // The provider still reports the old term (the new role is not yet visible), yet the lease
    // is already gone: nothing can be served from it in this window.
    CHECK(lost == 3);
    CHECK(f.provider.leader_term() == 3);
    CHECK(f.coordinator.state().expiry() == tenure::lease::LeaseState::kNone);
    CHECK(f.coordinator.lease_read().code() == errc::lease_expired);
    checked = true;
  });
  f.coordinator.subscribe_leader_loss(observer);
  f.provider.lose_leadership(2);
  CHECK(checked);
}

TEST_CASE("lesson 6: a ReadIndex round that succeeded across a leader loss cannot resurrect") {
  Fixture f;
  ReadProbe probe;
  Coordinator::ReadOperation op(probe.completion());
  f.coordinator.read(op);
  f.provider.lose_leadership();
  f.provider.lead(4, {1, 2, 3});
  f.provider.finish_reads(LogIndex{42});  // late success of a term-3 round
  CHECK(probe.outcome->value() == 42);
  CHECK(f.coordinator.lease_read().code() == errc::lease_expired);
}

TEST_CASE(
    "lesson 7: coordinator callbacks run in order - one that throws is contained and reported") {
  struct CountingReporter {
    int* reports;
    void callback_threw(std::exception_ptr) noexcept { ++*reports; }
  };
  int reports = 0;
  ScriptedProvider provider{1};
  LeaseCoordinator<ScriptedProvider, tenure::raft::DefaultErrorClassifier, CountingReporter>
      coordinator{provider, exact_config(), CountingReporter{&reports}};
  provider.lead(2, {1, 2, 3});
  std::vector<int> order;
  tenure::lease::LeaderLossHandler first([&](tenure::raft::Term) { order.push_back(1); });
  tenure::lease::LeaderLossHandler thrower([&](tenure::raft::Term) {
    order.push_back(2);
    throw std::runtime_error("observer failed");
  });
  tenure::lease::LeaderLossHandler third([&](tenure::raft::Term) { order.push_back(3); });
  coordinator.subscribe_leader_loss(first);
  coordinator.subscribe_leader_loss(thrower);
  coordinator.subscribe_leader_loss(third);
  provider.lose_leadership();
  CHECK(order == std::vector<int>{1, 2, 3});
  CHECK(reports == 1);
  CHECK(coordinator.callback_failures() == 1);
  CHECK(provider.callback_failures() == 0);  // nothing escaped to the provider
}

namespace {

// A business layer's own errors (the conflict storm, docs/background.md): a write conflict must
// never touch the lease; a "shard moved" means leadership is elsewhere.
enum class KvError { write_conflict = 1, shard_moved = 2 };

class KvCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "kv"; }
  std::string message(int) const override { return "kv error"; }
  std::error_condition default_error_condition(int v) const noexcept override {
    if (v == static_cast<int>(KvError::shard_moved)) {
      return ErrorClass::leadership_lost;
    }
    return {v, *this};
  }
};

std::error_code kv_error(KvError e) {
  static const KvCategory category;
  return {static_cast<int>(e), category};
}

}  // namespace

TEST_CASE("lesson 9: a storm of business failures leaves the lease warm") {
  Fixture f;
  f.coordinator.on_write_committed(f.coordinator.begin_write());
  for (int i = 0; i < 1000; ++i) {
    f.coordinator.on_error(kv_error(KvError::write_conflict));
    f.coordinator.on_error(make_error_code(errc::timed_out));
    f.coordinator.on_error(make_error_code(errc::overloaded));
    f.coordinator.on_error(std::make_error_code(std::errc::io_error));
  }
  CHECK(f.coordinator.lease_read().has_value());
}

TEST_CASE("lesson 9: leadership errors - tenure's or the user's own - invalidate the lease") {
  for (auto ec : {make_error_code(errc::not_leader), make_error_code(errc::leadership_lost),
                  make_error_code(errc::transfer_in_progress), kv_error(KvError::shard_moved)}) {
    Fixture f;
    f.coordinator.on_write_committed(f.coordinator.begin_write());
    REQUIRE(f.coordinator.lease_read().has_value());
    CAPTURE(ec.message());
    f.coordinator.on_error(ec);
    CHECK(f.coordinator.lease_read().code() == errc::lease_expired);
  }
}

TEST_CASE("lesson 9: a failed ReadIndex invalidates only when it means leadership loss") {
  Fixture f;
  f.coordinator.on_write_committed(f.coordinator.begin_write());
  f.clock.advance(150ms);  // the lease lapses, so the next read goes to ReadIndex
  ReadProbe probe;
  Coordinator::ReadOperation op(probe.completion());
  f.coordinator.read(op);
  const auto generation = f.coordinator.state().generation();
  f.provider.finish_reads(tenure::raft::Error(errc::overloaded));
  CHECK(probe.outcome->code() == errc::overloaded);
  CHECK(f.coordinator.state().generation() == generation);
  Coordinator::ReadOperation op2(probe.completion());
  f.coordinator.read(op2);
  f.provider.finish_reads(tenure::raft::Error(errc::leadership_lost));
  CHECK(probe.outcome->code() == errc::leadership_lost);
  CHECK(f.coordinator.state().generation() == generation + 1);
}

TEST_CASE("the classifier is a compile-time policy the user can replace") {
  // A stricter classifier: a user's write conflict counts as leadership loss (for a system in
  // which conflicts mean another writer took over).
  struct ConflictMeansLoss {
    static ErrorClass classify(std::error_code ec) noexcept {
      if (ec == kv_error(KvError::write_conflict)) {
        return ErrorClass::leadership_lost;
      }
      return tenure::raft::DefaultErrorClassifier::classify(ec);
    }
  };
  ScriptedProvider provider{1};
  LeaseCoordinator<ScriptedProvider, ConflictMeansLoss> coordinator{provider, exact_config()};
  provider.lead(1, {1, 2, 3});
  coordinator.on_write_committed(coordinator.begin_write());
  REQUIRE(coordinator.lease_read().has_value());
  coordinator.on_error(kv_error(KvError::write_conflict));
  CHECK(coordinator.lease_read().code() == errc::lease_expired);
}

TEST_CASE("revoke: the lease is gone before a transfer's TimeoutNow leaves - for the whole term") {
  Fixture f;
  f.provider.ack(2, f.clock.now());
  f.coordinator.on_write_committed(f.coordinator.begin_write());
  REQUIRE(f.coordinator.lease_read().has_value());
  f.coordinator.revoke(3);
  CHECK(f.coordinator.lease_read().code() == errc::lease_expired);
  // Fresh acks and commits in the same term do not bring it back: the transfer target may be
  // elected at any moment without waiting out our lease.
  f.provider.ack(3, f.clock.now());
  f.coordinator.on_write_committed(f.coordinator.begin_write());
  CHECK(f.coordinator.lease_read().code() == errc::lease_expired);
  // ReadIndex still serves.
  ReadProbe probe;
  Coordinator::ReadOperation op(probe.completion());
  f.coordinator.read(op);
  f.provider.finish_reads(LogIndex{42});
  CHECK(probe.outcome->value() == 42);
  CHECK(f.coordinator.lease_read().code() == errc::lease_expired);
  // A later leadership term has its lease again.
  f.provider.lose_leadership();
  f.provider.lead(4, {1, 2, 3});
  f.provider.ack(2, f.clock.now());
  CHECK(f.coordinator.lease_read().has_value());
  // Revoking an earlier term changes nothing now.
  f.coordinator.revoke(3);
  f.provider.ack(2, f.clock.now());
  CHECK(f.coordinator.lease_read().has_value());
}

TEST_CASE("a configuration that leaves no positive lease is refused at construction") {
  ScriptedProvider provider{1};
  LeaseConfig bad = exact_config();
  bad.margin = 100ms;
  CHECK_THROWS_AS(Coordinator(provider, bad), std::system_error);
  try {
    Coordinator c(provider, bad);
  } catch (const std::system_error& e) {
    CHECK(e.code() == errc::invalid_config);
  }
}

TEST_CASE("a provider that reports no election timeout needs one in the LeaseConfig") {
  ScriptedProvider provider{1};
  static_assert(!tenure::lease::ReportsElectionTimeout<ScriptedProvider>);
  LeaseConfig c = exact_config();
  c.election_timeout_min = 0ns;
  try {
    Coordinator refused(provider, c);
    FAIL("a zero election_timeout_min was accepted from a provider that reports none");
  } catch (const std::system_error& e) {
    CHECK(e.code() == errc::invalid_config);
    CHECK(std::string(e.what()).find("LeaseConfig::election_timeout_min is 0") !=
          std::string::npos);
  }
}

TEST_CASE("the lease duration follows the configured drift bound and margin") {
  ScriptedProvider provider{1};
  LeaseConfig c;
  c.election_timeout_min = 150ms;
  c.max_clock_drift_ppm = 1000;
  c.margin = 2ms;
  Coordinator coordinator{provider, c};
  CHECK(coordinator.lease_duration() == tenure::lease::lease_duration(c).value());
  CHECK(coordinator.lease_duration() < 148ms);
}

TEST_CASE("a destroyed coordinator deregisters itself from the provider") {
  ScriptedProvider provider{1};
  provider.lead(1, {1, 2, 3});
  { Coordinator coordinator{provider, exact_config()}; }
  provider.lose_leadership();  // would call into the destroyed coordinator if still registered
  CHECK(provider.callback_failures() == 0);
}

TEST_CASE("a coordinator destroyed while reads wait detaches them - each completes once later") {
  ScriptedProvider provider{1};
  provider.mutable_clock().advance(1s);
  provider.lead(3, {1, 2, 3});
  provider.set_applied(42);
  // The coordinator lives in storage that is scribbled over once it is destroyed, so a read
  // that still reached it afterwards would follow garbage (and ASan sees it as a use after
  // the object's lifetime).
  alignas(Coordinator) unsigned char storage[sizeof(Coordinator)];
  auto* coordinator = new (storage) Coordinator(provider, exact_config());
  ReadProbe first;
  ReadProbe second;
  ReadProbe third;
  ReadProbe earlier;
  Coordinator::ReadOperation op1(first.completion());
  Coordinator::ReadOperation op2(second.completion());
  Coordinator::ReadOperation op3(third.completion());
  Coordinator::ReadOperation op0(earlier.completion());
  coordinator->read(op0);  // no quorum ack yet: every read falls back to ReadIndex
  provider.finish_reads(LogIndex{41});
  REQUIRE(earlier.calls == 1);              // completed and unlinked while the coordinator lived
  provider.mutable_clock().advance(200ms);  // past the lease that round extended
  coordinator->read(op1);
  coordinator->read(op2);
  coordinator->read(op3);
  REQUIRE(provider.pending_reads() == 3);
  coordinator->~Coordinator();
  std::memset(storage, 0xa5, sizeof(storage));
  CHECK(first.calls == 0);  // detached, not completed: the provider still owns them
  provider.finish_reads(LogIndex{42});
  for (const ReadProbe* p : {&first, &second, &third}) {
    CHECK(p->calls == 1);
    CHECK(p->outcome->value() == 42);
  }
  CHECK(earlier.calls == 1);
}

TEST_CASE("lease reads - reads - writes and errors allocate nothing") {
  REQUIRE(tenure::raft::testing::allocation_counting_installed());
  Fixture f;
  ReadProbe probe;
  Coordinator::ReadOperation slow(probe.completion());
  Coordinator::ReadOperation fast(probe.completion());
  tenure::raft::testing::AllocationGuard guard;
  f.coordinator.read(slow);  // ReadIndex fallback
  f.provider.finish_reads(LogIndex{42});
  for (int i = 0; i < 100; ++i) {
    f.provider.ack(2, f.clock.now());
    (void)f.coordinator.lease_read();
    f.coordinator.read(fast);
    const auto anchor = f.coordinator.begin_write();
    f.coordinator.on_write_committed(anchor);
    f.coordinator.on_error(make_error_code(errc::overloaded));
    f.clock.advance(1ms);
  }
  CHECK(guard.allocations() == 0);
  CHECK(probe.calls == 101);
}
