// ManualClock: a Clock policy advanced by hand, with per-instance offset and rate drift.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <system_error>

#include <raft/clock.hpp>
#include <raft/errc.hpp>

namespace tenure::raft {

/// A clock that moves only when told to: the Clock policy of tests and of the deterministic
/// simulator. Each instance models one node's local monotonic clock:
///
///     local = offset + elapsed + elapsed * drift_ppm / 1'000'000 (+ forward jumps)
///
/// where `elapsed` is the "true" time the test advances. A simulation gives every node its own
/// ManualClock, advances them all by the same true duration, and skews them with different
/// offsets and drifts. Drift is applied exactly: sub-nanosecond remainders carry over between
/// advances, so a thousand 1 ms steps read the same as one 1 s step.
///
/// Errors: a drift whose magnitude exceeds kMaxDriftPpm is refused with errc::invalid_config
/// (beyond it the clock is no model of a real oscillator, and at -1'000'000 ppm it would stop);
/// a negative advance or jump throws std::system_error with errc::invalid_argument, since it
/// would break monotonicity.
///
/// Thread-safety: `now()` may be called from any thread, concurrently with the mutators; the
/// mutators (`advance`, `jump`, `set_drift_ppm`) must be called from one thread at a time.
/// Allocation: none. Not copyable or movable (a node's clock has one identity).
class ManualClock {
 public:
  using rep = std::int64_t;
  using period = std::nano;
  using duration = std::chrono::nanoseconds;
  using time_point = std::chrono::time_point<ManualClock, duration>;
  static constexpr bool is_steady = true;

  /// The largest rate error accepted, in parts per million (10 %). Quartz drifts by tens of ppm
  /// and NTP slews by at most 500 ppm; simulations inject far more, but not a stopped clock.
  static constexpr std::int64_t kMaxDriftPpm = 100'000;

  /// A clock that reads `offset` before the first advance and runs at true rate.
  explicit ManualClock(duration offset = duration::zero()) noexcept : local_(offset.count()) {}

  ManualClock(const ManualClock&) = delete;
  ManualClock& operator=(const ManualClock&) = delete;

  time_point now() const noexcept {
    return time_point{duration{local_.load(std::memory_order_acquire)}};
  }

  /// Lets `true_elapsed` of true time pass; the local reading moves by that much, scaled by the
  /// drift.
  void advance(duration true_elapsed) {
    require_forward(true_elapsed, "ManualClock::advance");
    elapsed_ += true_elapsed;
    // d * ppm / 1e6 without overflow for any d: split d into millions and a remainder.
    const std::int64_t d = true_elapsed.count();
    const std::int64_t whole = (d / kMillion) * drift_ppm_;
    const std::int64_t scaled = (d % kMillion) * drift_ppm_ + carry_;
    carry_ = scaled % kMillion;
    move_local(d + whole + scaled / kMillion);
  }

  /// Steps the local reading forward by `step` without true time passing: a clock that was
  /// corrected forwards, or a node that resumes after a pause it did not see.
  void jump(duration step) {
    require_forward(step, "ManualClock::jump");
    move_local(step.count());
  }

  /// Sets the rate error applied to later advances. Returns errc::invalid_config, and changes
  /// nothing, when |ppm| > kMaxDriftPpm.
  [[nodiscard]] std::error_code set_drift_ppm(std::int64_t ppm) noexcept {
    if (ppm > kMaxDriftPpm || ppm < -kMaxDriftPpm) {
      return make_error_code(errc::invalid_config);
    }
    drift_ppm_ = ppm;
    carry_ = 0;
    return {};
  }

  std::int64_t drift_ppm() const noexcept { return drift_ppm_; }

  /// The true time advanced so far (excluding offset, drift and jumps).
  duration true_elapsed() const noexcept { return elapsed_; }

 private:
  static constexpr std::int64_t kMillion = 1'000'000;

  static void require_forward(duration d, const char* what) {
    if (d < duration::zero()) {
      throw std::system_error(make_error_code(errc::invalid_argument),
                              std::string(what) + ": a monotonic clock cannot move backwards");
    }
  }

  void move_local(std::int64_t delta) noexcept {
    // Only the mutating thread writes, so load + store is race-free; readers see either value.
    local_.store(local_.load(std::memory_order_relaxed) + delta, std::memory_order_release);
  }

  std::atomic<std::int64_t> local_;
  duration elapsed_{0};
  std::int64_t drift_ppm_ = 0;
  std::int64_t carry_ = 0;  // remainder of drift below one nanosecond, in 1e-6 ns
};

static_assert(detail::check_clock<ManualClock>());

}  // namespace tenure::raft
