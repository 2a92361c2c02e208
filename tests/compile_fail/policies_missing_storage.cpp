// Must NOT compile: policies that name no storage.
#include <raft/raft_group.hpp>
#include <raft/testing/sim_network.hpp>

#include <cstdint>
#include <span>

struct Machine {
  std::uint64_t apply(tenure::raft::LogIndex, std::span<const std::byte>) { return 0; }
};

struct Policies : tenure::raft::DefaultPolicies {
  using transport_type = tenure::raft::testing::SimTransport;
  using state_machine_type = Machine;
};

tenure::raft::RaftGroup<Policies>* instantiate = nullptr;
int main() {
  return sizeof(*instantiate) > 0 ? 0 : 1;
}
