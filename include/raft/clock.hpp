// The Clock policy: a monotonic source of time for timeouts, leases and quorum-ack anchors.
#pragma once

#include <chrono>
#include <concepts>
#include <cstdint>

namespace tenure::raft {

/// A monotonic clock with nanosecond resolution, read through an instance so that each node in a
/// simulation can own a differently skewed clock.
///
/// Semantics the compiler cannot check:
/// - `now()` never decreases between two calls on the same instance (lesson 12: a wall clock that
///   can step backwards could make an old acknowledgement look fresh and stretch a lease);
/// - it runs at real rate within the drift bound the lease layer is configured with
///   (`max_clock_drift`);
/// - `now()` is callable from any thread, does not block, does not allocate, does not throw;
/// - a restarted group's clock reads no earlier than the old one did (forwarded read batches are
///   numbered from the clock's reading at start, so that a late answer to a batch sent before the
///   restart cannot confirm a read after it): std::chrono::steady_clock within one boot is fine,
///   and no message outlives a reboot.
///
/// The natural shape: `using duration = std::chrono::nanoseconds;`,
/// `using time_point = std::chrono::time_point<MyClock, duration>;`,
/// `static constexpr bool is_steady = true;` and `time_point now() const noexcept`.
template <class C>
concept MonotonicClock = requires(const C& clock) {
  typename C::duration;
  typename C::time_point;
  requires std::same_as<typename C::duration, std::chrono::nanoseconds>;
  requires std::same_as<typename C::time_point::duration, std::chrono::nanoseconds>;
  requires C::is_steady;
  { clock.now() }
  noexcept->std::same_as<typename C::time_point>;
};

namespace detail {

/// Checks a Clock policy piece by piece so that the compiler names what is missing.
/// Use as `static_assert(detail::check_clock<C>())` where a Clock policy is consumed.
template <class C>
consteval bool check_clock() {
  static_assert(
      requires { typename C::duration; },
      "tenure: the Clock policy needs a nested `duration` type");
  static_assert(
      requires { typename C::time_point; },
      "tenure: the Clock policy needs a nested `time_point` type");
  if constexpr (requires {
                  typename C::duration;
                  typename C::time_point;
                }) {
    static_assert(std::same_as<typename C::duration, std::chrono::nanoseconds>,
                  "tenure: the Clock policy's `duration` must be std::chrono::nanoseconds");
    static_assert(std::same_as<typename C::time_point::duration, std::chrono::nanoseconds>,
                  "tenure: the Clock policy's `time_point` must count std::chrono::nanoseconds");
  }
  static_assert(
      requires { requires C::is_steady; },
      "tenure: the Clock policy must be monotonic and say so with "
      "`static constexpr bool is_steady = true`");
  static_assert(
      requires(const C& c) {
        { c.now() }
        noexcept;
      },
      "tenure: the Clock policy needs `time_point now() const noexcept`");
  return MonotonicClock<C>;
}

}  // namespace detail

/// Nanoseconds since the clock's own epoch, the representation tenure stores in atomics.
template <MonotonicClock C>
constexpr std::int64_t to_nanos(typename C::time_point t) noexcept {
  return t.time_since_epoch().count();
}

template <MonotonicClock C>
constexpr typename C::time_point from_nanos(std::int64_t nanos) noexcept {
  return typename C::time_point{std::chrono::nanoseconds{nanos}};
}

}  // namespace tenure::raft
