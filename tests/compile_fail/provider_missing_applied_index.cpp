// Must NOT compile: a LeaseProvider that does not publish its applied index (lesson 8).
#include <lease/lease_coordinator.hpp>
#include <raft/steady_clock.hpp>

struct IncompleteProvider {
  using clock_type = tenure::raft::SteadyClock;
  struct read_request {
    explicit read_request(tenure::raft::Completion<tenure::raft::LogIndex>) {}
  };
  const clock_type& clock() const noexcept { return clock_; }
  tenure::raft::Term leader_term() const noexcept { return 0; }
  tenure::raft::NodeId leader_hint() const noexcept { return 0; }
  clock_type::time_point quorum_ack() const noexcept { return {}; }
  void read_index(read_request&, clock_type::time_point) {}
  void subscribe_leader_loss(tenure::lease::LeaderLossCallback&) {}
  clock_type clock_;
};

tenure::lease::LeaseCoordinator<IncompleteProvider>* instantiate = nullptr;
int main() {
  return sizeof(*instantiate) > 0 ? 0 : 1;
}
