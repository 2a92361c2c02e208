#include <raft/manual_clock.hpp>

#include "../support/seed.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <cstdint>
#include <random>

using namespace std::chrono_literals;
using tenure::raft::errc;
using tenure::raft::ManualClock;

namespace {

std::int64_t nanos(const ManualClock& c) {
  return c.now().time_since_epoch().count();
}

}  // namespace

TEST_CASE("ManualClock moves only when advanced") {
  ManualClock clock;
  CHECK(nanos(clock) == 0);
  CHECK(nanos(clock) == 0);
  clock.advance(150ms);
  CHECK(clock.now().time_since_epoch() == 150ms);
  CHECK(clock.true_elapsed() == 150ms);
}

TEST_CASE("ManualClock starts at its offset") {
  ManualClock ahead(5s);
  ManualClock behind(-2s);
  CHECK(ahead.now().time_since_epoch() == 5s);
  CHECK(behind.now().time_since_epoch() == -2s);
  ahead.advance(1s);
  behind.advance(1s);
  CHECK(ahead.now() - behind.now() == 7s);
}

TEST_CASE("ManualClock drift is applied exactly - however time is sliced") {
  ManualClock fast;
  ManualClock slow;
  ManualClock fast_once;
  REQUIRE(!fast.set_drift_ppm(500));
  REQUIRE(!slow.set_drift_ppm(-500));
  REQUIRE(!fast_once.set_drift_ppm(500));
  for (int i = 0; i < 1000; ++i) {
    fast.advance(1ms);
    slow.advance(1ms);
  }
  fast_once.advance(1s);
  CHECK(nanos(fast) == 1'000'500'000);
  CHECK(nanos(slow) == 999'500'000);
  CHECK(nanos(fast_once) == nanos(fast));
  // Steps far below the nanosecond drift quantum still add up.
  ManualClock tiny;
  REQUIRE(!tiny.set_drift_ppm(3));
  for (int i = 0; i < 1'000'000; ++i) {
    tiny.advance(1ns);
  }
  CHECK(nanos(tiny) == 1'000'003);
}

TEST_CASE("ManualClock drift does not overflow on long advances") {
  ManualClock clock;
  REQUIRE(!clock.set_drift_ppm(ManualClock::kMaxDriftPpm));
  const auto day = std::chrono::duration_cast<std::chrono::nanoseconds>(24h * 365);
  clock.advance(day);
  CHECK(nanos(clock) == day.count() + day.count() / 10);
}

TEST_CASE("ManualClock refuses a drift outside the sane bound") {
  ManualClock clock;
  REQUIRE(!clock.set_drift_ppm(200));
  CHECK(clock.set_drift_ppm(ManualClock::kMaxDriftPpm + 1) == errc::invalid_config);
  CHECK(clock.set_drift_ppm(-ManualClock::kMaxDriftPpm - 1) == errc::invalid_config);
  CHECK(clock.set_drift_ppm(-1'000'000) == errc::invalid_config);
  CHECK(clock.drift_ppm() == 200);  // a refused change leaves the clock as it was
  CHECK(!clock.set_drift_ppm(ManualClock::kMaxDriftPpm));
  CHECK(!clock.set_drift_ppm(-ManualClock::kMaxDriftPpm));
}

TEST_CASE("ManualClock refuses to move backwards") {
  ManualClock clock(1s);
  CHECK_THROWS_AS(clock.advance(-1ns), std::system_error);
  CHECK_THROWS_AS(clock.jump(-1ms), std::system_error);
  try {
    clock.advance(-1ns);
  } catch (const std::system_error& e) {
    CHECK(e.code() == errc::invalid_argument);
  }
  CHECK(clock.now().time_since_epoch() == 1s);
}

TEST_CASE("ManualClock jump steps the local reading only") {
  ManualClock clock;
  clock.advance(10ms);
  clock.jump(3s);
  CHECK(clock.now().time_since_epoch() == 3s + 10ms);
  CHECK(clock.true_elapsed() == 10ms);
}

TEST_CASE("ManualClock stays monotonic under random advances and drift changes") {
  const std::uint64_t seed = tenure::testing::test_seed(20261127);
  INFO("replay: " << tenure::testing::replay_command(
           seed, "ManualClock stays monotonic under random advances and drift changes"));
  std::mt19937_64 rng(seed);
  ManualClock clock;
  auto last = clock.now();
  for (int i = 0; i < 100'000; ++i) {
    switch (rng() % 8) {
      case 0: {
        const auto ppm = static_cast<std::int64_t>(rng() % (2 * ManualClock::kMaxDriftPpm + 1)) -
                         ManualClock::kMaxDriftPpm;
        REQUIRE(!clock.set_drift_ppm(ppm));
        break;
      }
      case 1:
        clock.jump(std::chrono::nanoseconds(rng() % 1000));
        break;
      default:
        clock.advance(std::chrono::nanoseconds(rng() % 5000));
    }
    const auto now = clock.now();
    REQUIRE(now >= last);
    last = now;
  }
}
