// Must NOT compile: a Clock policy that does not declare itself steady. The test passes when the
// compiler's message names the missing piece (see tests/CMakeLists.txt).
#include <raft/clock.hpp>

#include <chrono>

struct WallClock {
  using duration = std::chrono::nanoseconds;
  using time_point = std::chrono::time_point<WallClock, duration>;
  time_point now() const noexcept { return {}; }
};

static_assert(tenure::raft::detail::check_clock<WallClock>());
