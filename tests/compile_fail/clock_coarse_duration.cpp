// Must NOT compile: a Clock policy that counts milliseconds.
#include <raft/clock.hpp>

#include <chrono>

struct CoarseClock {
  using duration = std::chrono::milliseconds;
  using time_point = std::chrono::time_point<CoarseClock, duration>;
  static constexpr bool is_steady = true;
  time_point now() const noexcept { return {}; }
};

static_assert(tenure::raft::detail::check_clock<CoarseClock>());
