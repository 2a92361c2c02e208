// The lease layer across threads: run under ThreadSanitizer by the tsan preset.
#include <lease/lease_coordinator.hpp>
#include <lease/lease_state.hpp>

#include "../support/scripted_provider.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdint>
#include <random>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using tenure::lease::LeaseState;

TEST_CASE("lesson 6: an extend racing an invalidate never survives it") {
  // Each round, one thread extends with the generation it captured while the other invalidates.
  // If the capture came before the invalidate, the extend must not leave a lease behind, whether
  // its store landed before the invalidate's clear (cleared) or after it (undone). If the capture
  // came after, the extend stands.
  constexpr int kRounds = 20'000;
  const std::uint64_t seed = 6;
  LeaseState state;
  std::barrier sync(2);
  std::atomic<int> violations{0};
  std::atomic<int> stale_captures{0};
  std::thread extender([&] {
    for (int round = 0; round < kRounds; ++round) {
      sync.arrive_and_wait();  // round starts
      const auto captured = state.generation();
      const std::int64_t until = 1'000'000 + round;
      const bool extended = state.extend(until, captured);
      sync.arrive_and_wait();  // both done
      const auto generation_after = state.generation();
      if (captured + 1 == generation_after) {
        ++stale_captures;
        // The extend may have finished before the invalidate (and returned true); either way no
        // lease may be left once both are done.
        if (state.expiry() != LeaseState::kNone) {
          ++violations;
        }
      } else if (captured == generation_after) {
        // Captured between the invalidate's bump and its clear: the clear may still remove the
        // new lease (invalidate wins, conservatively), but nothing else may.
        const auto expiry = state.expiry();
        if (!extended || (expiry != until && expiry != LeaseState::kNone)) {
          ++violations;
        }
      } else {
        ++violations;  // exactly one invalidate per round
      }
      sync.arrive_and_wait();  // checked
    }
  });
  std::mt19937 rng(seed);
  for (int round = 0; round < kRounds; ++round) {
    const unsigned spin = rng() % 64;
    sync.arrive_and_wait();
    for (unsigned i = 0; i < spin; ++i) {
      std::atomic_signal_fence(std::memory_order_seq_cst);  // keeps the delay loop
    }
    state.invalidate();
    sync.arrive_and_wait();
    sync.arrive_and_wait();
  }
  extender.join();
  CAPTURE(seed);
  CHECK(violations.load() == 0);
  // Both orders must actually have happened, or the test proved nothing.
  CHECK(stale_captures.load() > 0);
  CHECK(stale_captures.load() < kRounds);
}

TEST_CASE("lease reads on other threads never serve a revoked or lost term") {
  // The group thread cycles through terms: lead, keep acks fresh, then either revoke (as before a
  // transfer) or lose leadership; after each it publishes the term as ended. Readers sample the
  // ended term before each lease read, and the applied index encodes the term it was published
  // in, so a read served from an ended term is detected.
  using tenure::testing::ScriptedProvider;
  tenure::lease::LeaseConfig config;
  config.election_timeout_min = 100ms;
  config.max_clock_drift_ppm = 0;
  config.margin = 0ns;
  ScriptedProvider provider{1};
  tenure::lease::LeaseCoordinator<ScriptedProvider> coordinator{provider, config};
  auto& clock = provider.mutable_clock();
  clock.advance(1s);

  constexpr tenure::raft::Term kTerms = 100;
  constexpr std::uint64_t kIndexPerTerm = 1'000'000;
  std::atomic<tenure::raft::Term> ended_through{0};
  std::atomic<bool> done{false};
  std::atomic<int> violations{0};
  std::atomic<std::uint64_t> served{0};
  std::vector<std::thread> readers;
  for (int r = 0; r < 2; ++r) {
    readers.emplace_back([&] {
      while (!done.load(std::memory_order_acquire)) {
        const auto ended = ended_through.load(std::memory_order_acquire);
        const auto result = coordinator.lease_read();
        if (result) {
          served.fetch_add(1, std::memory_order_relaxed);
          if (result.value() / kIndexPerTerm <= ended) {
            violations.fetch_add(1, std::memory_order_relaxed);
          }
        }
      }
    });
  }
  for (tenure::raft::Term term = 1; term <= kTerms; ++term) {
    provider.set_applied(term * kIndexPerTerm);
    provider.lead(term, {1, 2, 3});
    for (int i = 0; i < 30; ++i) {
      provider.ack(2, clock.now());
      provider.set_applied(term * kIndexPerTerm + static_cast<std::uint64_t>(i));
      coordinator.on_write_committed(coordinator.begin_write());
      clock.advance(1ms);
      std::this_thread::yield();
    }
    if (term % 2 == 0) {
      coordinator.revoke(term);
    } else {
      provider.lose_leadership();
    }
    ended_through.store(term, std::memory_order_release);
    if (term % 2 == 0) {
      provider.lose_leadership();
    }
  }
  done.store(true, std::memory_order_release);
  for (auto& t : readers) {
    t.join();
  }
  CHECK(violations.load() == 0);
  CHECK(served.load() > 0);
}
