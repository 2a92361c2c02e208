// tenure-clock-skew: why a lease needs a drift bound, shown with three skewed ManualClocks.
//
// A leader may serve reads from memory only while no other node can have been elected. Followers
// wait at least `election_timeout_min` on *their* clocks before campaigning; the leader measures
// its lease on *its* clock. If the clocks run at different rates, the leader's idea of "less than
// an election timeout has passed" can be wrong. This program runs three node clocks with the
// drifts given on the command line through one simulated stretch of time, prints how far they
// disagree, and checks the lease bound tenure uses: lease = timeout * (1 - rho) / (1 + rho).
//
// usage: tenure-clock-skew [drift_ppm_a drift_ppm_b drift_ppm_c] [seconds]
#include <raft/errc.hpp>
#include <raft/manual_clock.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

using namespace std::chrono_literals;
using tenure::raft::ManualClock;

namespace {

std::int64_t parse(const char* text, const char* what) {
  char* end = nullptr;
  const long long value = std::strtoll(text, &end, 10);
  if (end == text || *end != '\0') {
    std::fprintf(stderr, "tenure-clock-skew: %s must be an integer, got '%s'\n", what, text);
    std::exit(2);
  }
  return value;
}

double ms(std::chrono::nanoseconds d) {
  return static_cast<double>(d.count()) / 1e6;
}

}  // namespace

int main(int argc, char** argv) {
  std::array<std::int64_t, 3> drift_ppm{+200, 0, -200};
  std::int64_t seconds = 60;
  if (argc != 1 && argc != 4 && argc != 5) {
    std::fprintf(stderr, "usage: %s [drift_ppm_a drift_ppm_b drift_ppm_c] [seconds]\n", argv[0]);
    return 2;
  }
  if (argc >= 4) {
    for (int i = 0; i < 3; ++i) {
      drift_ppm[i] = parse(argv[i + 1], "a drift");
    }
  }
  if (argc == 5) {
    seconds = parse(argv[4], "seconds");
    if (seconds <= 0) {
      std::fprintf(stderr, "tenure-clock-skew: seconds must be positive\n");
      return 2;
    }
  }

  std::array<ManualClock, 3> clocks;
  for (int i = 0; i < 3; ++i) {
    if (const auto ec = clocks[i].set_drift_ppm(drift_ppm[i])) {
      std::fprintf(stderr, "tenure-clock-skew: node %d drift %lld ppm refused: %s (bound +-%lld)\n",
                   i + 1, static_cast<long long>(drift_ppm[i]), ec.message().c_str(),
                   static_cast<long long>(ManualClock::kMaxDriftPpm));
      return 2;
    }
  }

  std::printf("three node clocks, drift %+lld / %+lld / %+lld ppm, %lld s of true time\n",
              static_cast<long long>(drift_ppm[0]), static_cast<long long>(drift_ppm[1]),
              static_cast<long long>(drift_ppm[2]), static_cast<long long>(seconds));
  const std::int64_t report_every = seconds >= 10 ? seconds / 10 : 1;
  for (std::int64_t s = 1; s <= seconds; ++s) {
    for (auto& c : clocks) {
      c.advance(1s);
    }
    if (s % report_every == 0 || s == seconds) {
      std::printf("  t=%5llds  node1 %+9.3f ms  node2 %+9.3f ms  node3 %+9.3f ms  (vs true time)\n",
                  static_cast<long long>(s),
                  ms(clocks[0].now().time_since_epoch() - clocks[0].true_elapsed()),
                  ms(clocks[1].now().time_since_epoch() - clocks[1].true_elapsed()),
                  ms(clocks[2].now().time_since_epoch() - clocks[2].true_elapsed()));
    }
  }

  // The worst case for a lease: the leader's clock runs slow (it thinks less time passed) while a
  // follower's runs fast (its election timer fires early).
  std::int64_t rho_ppm = 0;
  for (auto d : drift_ppm) {
    rho_ppm = std::max(rho_ppm, d < 0 ? -d : d);
  }
  const double rho = static_cast<double>(rho_ppm) / 1e6;
  const auto timeout = 150ms;
  const double lease_ms = ms(timeout) * (1 - rho) / (1 + rho);
  // The slowest clock measures `lease` of its own time; how much true time is that?
  const double true_lease_ms = lease_ms / (1 - rho);
  // The fastest clock fires its election timer after this much true time.
  const double true_timeout_ms = ms(timeout) / (1 + rho);
  std::printf("\nelection timeout %.0f ms, rho %lld ppm -> lease %.4f ms on the leader's clock\n",
              ms(timeout), static_cast<long long>(rho_ppm), lease_ms);
  std::printf("worst case in true time: lease ends after %.4f ms, earliest election at %.4f ms\n",
              true_lease_ms, true_timeout_ms);
  const bool safe = true_lease_ms <= true_timeout_ms + 1e-9;
  std::printf("lease %s the earliest possible election\n",
              safe ? "ends no later than" : "OUTLIVES (unsafe)");
  return safe ? 0 : 1;
}
