// Must NOT compile: a LeaseProvider whose clock is not monotonic (lesson 12). A wall clock can be
// stepped backwards and make an old acknowledgement look fresh.
#include <lease/lease_coordinator.hpp>

#include <chrono>

struct WallClock {
  using duration = std::chrono::nanoseconds;
  using time_point = std::chrono::time_point<WallClock, duration>;
  static constexpr bool is_steady = false;
  time_point now() const noexcept { return {}; }
};

struct WallClockProvider {
  using clock_type = WallClock;
  struct read_request {
    explicit read_request(tenure::raft::Completion<tenure::raft::LogIndex>) {}
  };
  const clock_type& clock() const noexcept { return clock_; }
  tenure::raft::Term leader_term() const noexcept { return 0; }
  tenure::raft::NodeId leader_hint() const noexcept { return 0; }
  tenure::raft::LogIndex applied_index() const noexcept { return 0; }
  clock_type::time_point quorum_ack() const noexcept { return {}; }
  void read_index(read_request&, clock_type::time_point) {}
  void subscribe_leader_loss(tenure::lease::LeaderLossCallback&) {}
  WallClock clock_;
};

tenure::lease::LeaseCoordinator<WallClockProvider>* instantiate = nullptr;
int main() {
  return sizeof(*instantiate) > 0 ? 0 : 1;
}
