// lease_duration: election_timeout_min * (1 - rho) / (1 + rho) - margin (lessons 4 and 11).
#include <lease/lease_config.hpp>

#include <doctest/doctest.h>

#include <chrono>

using namespace std::chrono_literals;
using tenure::lease::kMaxClockDriftPpm;
using tenure::lease::lease_duration;
using tenure::lease::LeaseConfig;
using tenure::raft::errc;

namespace {

LeaseConfig config(std::chrono::nanoseconds timeout, std::int64_t ppm,
                   std::chrono::nanoseconds margin) {
  LeaseConfig c;
  c.election_timeout_min = timeout;
  c.max_clock_drift_ppm = ppm;
  c.margin = margin;
  return c;
}

}  // namespace

TEST_CASE("without drift or margin the lease is the election timeout") {
  CHECK(lease_duration(config(150ms, 0, 0ns)).value() == 150ms);
}

TEST_CASE("the lease shrinks by the drift bound and the margin") {
  // 100 ms * (1 - 0.001) / (1 + 0.001) = 99.800199800... ms, rounded down; minus 1 ms.
  CHECK(lease_duration(config(100ms, 1000, 0ns)).value().count() == 99'800'199);
  CHECK(lease_duration(config(100ms, 1000, 1ms)).value().count() == 98'800'199);
  // 10 %: 150 ms * 0.9 / 1.1 = 122.7272727... ms
  CHECK(lease_duration(config(150ms, 100'000, 0ns)).value().count() == 122'727'272);
}

TEST_CASE("the lease never outlives the earliest election in true time") {
  // Leader clock slow by rho measures the lease as lease / (1 - rho) of true time; a follower
  // clock fast by rho ends its wait after timeout / (1 + rho). The first must not exceed the
  // second for any drift up to the bound.
  for (std::int64_t ppm : {0, 1, 50, 500, 1000, 20'000, 100'000}) {
    for (std::chrono::nanoseconds timeout :
         {std::chrono::nanoseconds(1ms), std::chrono::nanoseconds(150ms),
          std::chrono::nanoseconds(1s), std::chrono::nanoseconds(24h)}) {
      const auto lease = lease_duration(config(timeout, ppm, 0ns)).value();
      const long double rho = static_cast<long double>(ppm) / 1e6L;
      const long double true_lease = static_cast<long double>(lease.count()) / (1 - rho);
      const long double earliest_vote = static_cast<long double>(timeout.count()) / (1 + rho);
      CAPTURE(ppm);
      CAPTURE(timeout.count());
      CHECK(true_lease <= earliest_vote + 1e-6L);
    }
  }
}

TEST_CASE("a configuration that leaves no positive lease is refused with invalid_config") {
  CHECK(lease_duration(config(10ms, 0, 10ms)).code() == errc::invalid_config);
  CHECK(lease_duration(config(10ms, 0, 20ms)).code() == errc::invalid_config);
  CHECK(lease_duration(config(0ms, 0, 0ns)).code() == errc::invalid_config);
  CHECK(lease_duration(config(-5ms, 0, 0ns)).code() == errc::invalid_config);
  CHECK(lease_duration(config(100ms, -1, 0ns)).code() == errc::invalid_config);
  CHECK(lease_duration(config(100ms, kMaxClockDriftPpm + 1, 0ns)).code() == errc::invalid_config);
  CHECK(lease_duration(config(100ms, 0, -1ns)).code() == errc::invalid_config);
  LeaseConfig no_read_bound = config(100ms, 0, 0ns);
  no_read_bound.default_read_timeout = 0ns;
  CHECK(lease_duration(no_read_bound).code() == errc::invalid_config);
  // Just enough is accepted.
  CHECK(lease_duration(config(10ms, 0, 10ms - 1ns)).value() == 1ns);
}

TEST_CASE("the default configuration takes the election timeout from the provider") {
  // On its own, the default has none (LeaseCoordinator fills it in from the provider).
  CHECK(lease_duration(LeaseConfig{}).code() == errc::invalid_config);
  LeaseConfig c;
  c.election_timeout_min = 150ms;  // RaftConfig's default
  const auto lease = lease_duration(c).value();
  CHECK(lease > 140ms);
  CHECK(lease < 150ms);
}
