// Multi-threaded tests: built into their own program so that the test command can also run them
// under ThreadSanitizer.
#include <raft/manual_clock.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <thread>

using namespace std::chrono_literals;
using tenure::raft::ManualClock;

TEST_CASE("ManualClock::now is safe to read while another thread advances it") {
  ManualClock clock;
  std::atomic<bool> done{false};
  std::atomic<bool> went_backwards{false};
  std::thread reader([&] {
    auto last = clock.now();
    while (!done.load(std::memory_order_acquire)) {
      const auto now = clock.now();
      if (now < last) {
        went_backwards = true;
      }
      last = now;
    }
  });
  for (int i = 0; i < 200'000; ++i) {
    clock.advance(1us);
  }
  done = true;
  reader.join();
  CHECK(!went_backwards);
  CHECK(clock.now().time_since_epoch() == 200ms);
}
