#include <raft/clock.hpp>
#include <raft/manual_clock.hpp>
#include <raft/steady_clock.hpp>

#include <doctest/doctest.h>

#include <chrono>

using tenure::raft::ManualClock;
using tenure::raft::MonotonicClock;
using tenure::raft::SteadyClock;

namespace {

struct NoSteadyFlag {
  using duration = std::chrono::nanoseconds;
  using time_point = std::chrono::time_point<NoSteadyFlag, duration>;
  time_point now() const noexcept { return {}; }
};

struct WallClockLike {
  using duration = std::chrono::nanoseconds;
  using time_point = std::chrono::time_point<WallClockLike, duration>;
  static constexpr bool is_steady = false;
  time_point now() const noexcept { return {}; }
};

struct MillisecondClock {
  using duration = std::chrono::milliseconds;
  using time_point = std::chrono::time_point<MillisecondClock, duration>;
  static constexpr bool is_steady = true;
  time_point now() const noexcept { return {}; }
};

struct ThrowingNow {
  using duration = std::chrono::nanoseconds;
  using time_point = std::chrono::time_point<ThrowingNow, duration>;
  static constexpr bool is_steady = true;
  time_point now() const { return {}; }
};

}  // namespace

TEST_CASE("the MonotonicClock concept accepts tenure's clocks and refuses lookalikes") {
  static_assert(MonotonicClock<SteadyClock>);
  static_assert(MonotonicClock<ManualClock>);
  static_assert(!MonotonicClock<NoSteadyFlag>);
  static_assert(!MonotonicClock<WallClockLike>);
  static_assert(!MonotonicClock<MillisecondClock>);
  static_assert(!MonotonicClock<ThrowingNow>);
  static_assert(!MonotonicClock<std::chrono::system_clock>);  // static now(), not steady
  CHECK(true);
}

TEST_CASE("SteadyClock follows std::chrono::steady_clock") {
  SteadyClock clock;
  const auto before = std::chrono::steady_clock::now().time_since_epoch();
  const auto a = clock.now();
  const auto b = clock.now();
  const auto after = std::chrono::steady_clock::now().time_since_epoch();
  CHECK(b >= a);
  CHECK(a.time_since_epoch() >= before);
  CHECK(b.time_since_epoch() <= after);
}

TEST_CASE("nanosecond round trip through the atomic representation") {
  const auto t = ManualClock::time_point{std::chrono::nanoseconds{123456789}};
  CHECK(tenure::raft::to_nanos<ManualClock>(t) == 123456789);
  CHECK(tenure::raft::from_nanos<ManualClock>(123456789) == t);
}
