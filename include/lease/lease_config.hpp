// LeaseConfig: the timing a lease is derived from, and the derivation (lessons 4 and 11).
#pragma once

#include <chrono>
#include <cstdint>
#include <system_error>

#include <raft/errc.hpp>
#include <raft/result.hpp>

namespace tenure::lease {

/// The timing of a lease.
///
/// The lease is `election_timeout_min * (1 - rho) / (1 + rho) - margin`, with
/// `rho = max_clock_drift_ppm / 1e6`. Why: a follower that acknowledged a request sent at instant
/// S refuses to vote for anyone else until `election_timeout_min` has passed on *its* clock since
/// it received that request, and it received it no earlier than S. A follower clock running fast
/// by rho ends that wait after `election_timeout_min / (1 + rho)` of true time; a leader clock
/// running slow by rho measures `lease` as `lease / (1 - rho)` of true time. Requiring the second
/// to be at most the first gives the bound. `margin` is an extra allowance on top, for whatever
/// the model leaves out.
struct LeaseConfig {
  /// The smallest election timeout of any voter: no follower campaigns, or votes for another
  /// candidate, sooner than this after hearing from the leader.
  ///
  /// Zero (the default): taken from the provider, which must then report it
  /// (`election_timeout_min()`, as RaftGroup does from RaftConfig::election_timeout_min), so the
  /// lease cannot be longer than what voters actually wait. A LeaseCoordinator refuses a non-zero
  /// value that differs from the provider's with errc::invalid_config. Set it only for a provider
  /// that does not report one.
  std::chrono::nanoseconds election_timeout_min{0};
  /// The largest rate difference of any voter's clock from true time, in parts per million.
  std::int64_t max_clock_drift_ppm = 1000;
  /// Subtracted from the drift-adjusted timeout.
  std::chrono::nanoseconds margin{std::chrono::milliseconds(1)};
  /// The bound on a read whose caller gives no deadline (lesson 1: never wait forever).
  std::chrono::nanoseconds default_read_timeout{std::chrono::seconds(5)};
};

/// The largest max_clock_drift_ppm accepted: 10 %. A clock worse than that is broken, not drifting.
inline constexpr std::int64_t kMaxClockDriftPpm = 100'000;

/// The lease duration `config` yields, or errc::invalid_config when `config` is out of range
/// (non-positive timeout or read timeout, negative margin, drift outside [0, kMaxClockDriftPpm])
/// or leaves no positive lease. Rounds down, never up.
inline raft::Result<std::chrono::nanoseconds> lease_duration(const LeaseConfig& config) noexcept {
  const std::int64_t timeout = config.election_timeout_min.count();
  const std::int64_t rho = config.max_clock_drift_ppm;
  if (timeout <= 0 || config.default_read_timeout.count() <= 0 || config.margin.count() < 0 ||
      rho < 0 || rho > kMaxClockDriftPpm) {
    return raft::errc::invalid_config;
  }
  // timeout * (1e6 - rho) / (1e6 + rho), exactly and without overflow: split the timeout into
  // multiples of the denominator and a remainder.
  constexpr std::int64_t kMillion = 1'000'000;
  const std::int64_t numerator = kMillion - rho;
  const std::int64_t denominator = kMillion + rho;
  const std::int64_t scaled =
      (timeout / denominator) * numerator + (timeout % denominator) * numerator / denominator;
  const std::int64_t lease = scaled - config.margin.count();
  if (lease <= 0) {
    return raft::errc::invalid_config;
  }
  return std::chrono::nanoseconds(lease);
}

}  // namespace tenure::lease
