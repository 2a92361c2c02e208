// SteadyClock: the production Clock policy, std::chrono::steady_clock.
#pragma once

#include <chrono>

#include <raft/clock.hpp>

namespace tenure::raft {

/// std::chrono::steady_clock as a Clock policy: monotonic by the standard's guarantee (never
/// CLOCK_REALTIME, which NTP or an operator may step).
///
/// Thread-safety: stateless; `now()` from any thread. Allocation: none.
struct SteadyClock {
  using rep = std::int64_t;
  using period = std::nano;
  using duration = std::chrono::nanoseconds;
  using time_point = std::chrono::time_point<SteadyClock, duration>;
  static constexpr bool is_steady = true;

  time_point now() const noexcept {
    return time_point{
        std::chrono::duration_cast<duration>(std::chrono::steady_clock::now().time_since_epoch())};
  }
};

static_assert(detail::check_clock<SteadyClock>());

}  // namespace tenure::raft
