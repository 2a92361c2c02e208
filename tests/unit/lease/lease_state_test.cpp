// LeaseState: monotonic extend, invalidate wins, and the undo of an extend that raced (lesson 6).
#include <lease/lease_state.hpp>

#include <doctest/doctest.h>

#include <cstdint>

using tenure::lease::BasicLeaseState;
using tenure::lease::LeaseState;

TEST_CASE("a new lease state holds no lease") {
  LeaseState s;
  CHECK(s.expiry() == LeaseState::kNone);
  CHECK(!s.valid_at(0));
  CHECK(!s.valid_at(LeaseState::kNone + 1));
}

TEST_CASE("extend makes the lease valid strictly before its expiry") {
  LeaseState s;
  REQUIRE(s.extend(1000, s.generation()));
  CHECK(s.valid_at(999));
  CHECK(!s.valid_at(1000));
}

TEST_CASE("extend is monotonic: an earlier expiry never shortens the lease") {
  LeaseState s;
  const auto g = s.generation();
  REQUIRE(s.extend(2000, g));
  CHECK(s.extend(1500, g));  // still valid under g; the lease already reaches further
  CHECK(s.expiry() == 2000);
  REQUIRE(s.extend(2500, g));
  CHECK(s.expiry() == 2500);
}

TEST_CASE("invalidate wins: bumps the generation and clears the expiry") {
  LeaseState s;
  const auto g = s.generation();
  REQUIRE(s.extend(5000, g));
  s.invalidate();
  CHECK(s.generation() == g + 1);
  CHECK(s.expiry() == LeaseState::kNone);
  CHECK(!s.valid_at(0));
  // An extend that captured the generation before the invalidate cannot resurrect the lease.
  CHECK(!s.extend(9000, g));
  CHECK(s.expiry() == LeaseState::kNone);
  // One that captured it after can.
  CHECK(s.extend(9000, s.generation()));
  CHECK(s.valid_at(8999));
}

namespace {

// Runs a whole invalidate between an extend's generation check and its store: the interleaving
// a leader-loss callback on the group's thread can produce against an extend on another thread.
// Without the undo, the extend's store would land after the clear and resurrect the lease.
struct InvalidateInTheWindow {
  static inline BasicLeaseState<InvalidateInTheWindow>* target = nullptr;
  static inline int fired = 0;
  static void after_extend_store() noexcept {}
  static void before_extend_store() noexcept {
    if (target != nullptr) {
      auto* t = target;
      target = nullptr;  // once
      ++fired;
      t->invalidate();
    }
  }
};

// The same interleaving, but the invalidate lands first and a legitimate extend of the new
// generation follows before the stale extend re-checks.
struct InvalidateThenLegitExtend {
  static inline BasicLeaseState<InvalidateThenLegitExtend>* target = nullptr;
  static void before_extend_store() noexcept {}
  static void after_extend_store() noexcept {
    if (target != nullptr) {
      auto* t = target;
      target = nullptr;
      t->invalidate();
      t->extend(7000, t->generation());  // newer lease, must survive the stale extend's undo
    }
  }
};

}  // namespace

TEST_CASE("an extend that raced with an invalidate undoes its own store") {
  BasicLeaseState<InvalidateInTheWindow> s;
  const auto g = s.generation();
  InvalidateInTheWindow::target = &s;
  // The extend passes its generation check, the invalidate runs, the extend stores: it must see
  // the new generation and take its store back.
  CHECK(!s.extend(5000, g));
  CHECK(InvalidateInTheWindow::fired == 1);
  CHECK(s.expiry() == BasicLeaseState<InvalidateInTheWindow>::kNone);
  CHECK(!s.valid_at(0));
}

TEST_CASE("the undo removes only the stale extend's own value") {
  BasicLeaseState<InvalidateThenLegitExtend> s;
  const auto g = s.generation();
  InvalidateThenLegitExtend::target = &s;
  CHECK(!s.extend(5000, g));
  CHECK(s.expiry() == 7000);  // the extend of the new generation stands
}
