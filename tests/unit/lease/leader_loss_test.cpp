// Leader-loss callbacks: registration order, exceptions contained, O(1) caller-owned
// deregistration (lesson 7).
#include <lease/leader_loss.hpp>
#include <raft/testing/allocation_guard.hpp>

#include <doctest/doctest.h>

#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

using tenure::lease::LeaderLossCallback;
using tenure::lease::LeaderLossHandler;
using tenure::lease::LeaderLossList;
using tenure::raft::Term;

namespace {

auto ignore_exceptions = [](std::exception_ptr) {};

}  // namespace

TEST_CASE("callbacks run synchronously - in registration order - with the lost term") {
  std::vector<std::string> log;
  LeaderLossList list;
  auto record = [&](char who, Term t) {
    std::string entry(1, who);
    entry += std::to_string(t);
    log.push_back(entry);
  };
  LeaderLossHandler a([&](Term t) { record('a', t); });
  LeaderLossHandler b([&](Term t) { record('b', t); });
  LeaderLossHandler c([&](Term t) { record('c', t); });
  list.add(b);
  list.add(a);
  list.add(c);
  CHECK(list.notify(7, ignore_exceptions) == 0);
  CHECK(log == std::vector<std::string>{"b7", "a7", "c7"});
  // Still registered afterwards, in the same order.
  log.clear();
  CHECK(list.notify(8, ignore_exceptions) == 0);
  CHECK(log == std::vector<std::string>{"b8", "a8", "c8"});
}

TEST_CASE("a callback that throws is contained and reported - the rest still run") {
  std::vector<std::string> ran;
  std::vector<std::string> reported;
  LeaderLossList list;
  LeaderLossHandler first([&](Term) { ran.push_back("first"); });
  LeaderLossHandler thrower([&](Term) {
    ran.push_back("thrower");
    throw std::runtime_error("callback failed");
  });
  LeaderLossHandler last([&](Term) { ran.push_back("last"); });
  list.add(first);
  list.add(thrower);
  list.add(last);
  const auto failures = list.notify(2, [&](std::exception_ptr e) {
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      reported.push_back(ex.what());
    }
  });
  CHECK(failures == 1);
  CHECK(ran == std::vector<std::string>{"first", "thrower", "last"});
  CHECK(reported == std::vector<std::string>{"callback failed"});
}

TEST_CASE("a reporter that throws does not stop the notification") {
  int ran = 0;
  LeaderLossList list;
  LeaderLossHandler thrower([&](Term) {
    ++ran;
    throw 42;
  });
  LeaderLossHandler after([&](Term) { ++ran; });
  list.add(thrower);
  list.add(after);
  CHECK(list.notify(1, [](std::exception_ptr) { throw std::logic_error("reporter"); }) == 1);
  CHECK(ran == 2);
}

TEST_CASE("deregistering is O(1) and stops the callback") {
  int calls = 0;
  LeaderLossList list;
  LeaderLossHandler h([&](Term) { ++calls; });
  list.add(h);
  CHECK(h.registered());
  h.deregister();
  CHECK(!h.registered());
  h.deregister();  // idempotent
  list.notify(1, ignore_exceptions);
  CHECK(calls == 0);
  CHECK(list.empty());
}

TEST_CASE("destroying a registered callback unlinks it and releases what it captured") {
  LeaderLossList list;
  auto captured = std::make_shared<int>(5);
  std::weak_ptr<int> watch = captured;
  {
    LeaderLossHandler h([payload = std::move(captured)](Term) { (void)*payload; });
    list.add(h);
    CHECK(!list.empty());
    CHECK(!watch.expired());
  }
  CHECK(watch.expired());
  CHECK(list.empty());
  list.notify(1, ignore_exceptions);  // nothing dangling to call
}

TEST_CASE("callbacks may deregister themselves or a later callback during notification") {
  std::vector<std::string> ran;
  LeaderLossList list;
  std::optional<LeaderLossHandler<std::function<void(Term)>>> later;
  LeaderLossHandler<std::function<void(Term)>> self_removing([&](Term) { ran.push_back("self"); });
  LeaderLossHandler remover([&](Term) {
    ran.push_back("remover");
    self_removing.deregister();
    later->deregister();
  });
  later.emplace([&](Term) { ran.push_back("later"); });
  list.add(remover);
  list.add(self_removing);  // removed by `remover` before its turn
  list.add(*later);         // removed too
  list.notify(3, ignore_exceptions);
  CHECK(ran == std::vector<std::string>{"remover"});
  ran.clear();
  list.notify(4, ignore_exceptions);
  CHECK(ran == std::vector<std::string>{"remover"});
}

TEST_CASE("a callback registered during notification runs from the next notification on") {
  int late_calls = 0;
  LeaderLossList list;
  LeaderLossHandler late([&](Term) { ++late_calls; });
  LeaderLossHandler registrar([&](Term) {
    if (!late.registered()) {
      list.add(late);
    }
  });
  list.add(registrar);
  list.notify(1, ignore_exceptions);
  CHECK(late_calls == 0);
  list.notify(2, ignore_exceptions);
  CHECK(late_calls == 1);
}

TEST_CASE("registering and notifying allocate nothing") {
  REQUIRE(tenure::raft::testing::allocation_counting_installed());
  int calls = 0;
  LeaderLossList list;
  LeaderLossHandler a([&](Term) { ++calls; });
  LeaderLossHandler b([&](Term) { ++calls; });
  tenure::raft::testing::AllocationGuard guard;
  list.add(a);
  list.add(b);
  list.notify(1, ignore_exceptions);
  a.deregister();
  list.notify(2, ignore_exceptions);
  CHECK(guard.allocations() == 0);
  CHECK(calls == 3);
}

TEST_CASE("a list destroyed first leaves its callbacks unregistered and safe") {
  LeaderLossHandler h([](Term) {});
  {
    LeaderLossList list;
    list.add(h);
    CHECK(h.registered());
  }
  CHECK(!h.registered());
}
