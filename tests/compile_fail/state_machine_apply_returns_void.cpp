// Must NOT compile: a StateMachine whose apply() returns nothing (the result word is required:
// it is what a proposal's completion reports).
#include <raft/memory_storage.hpp>
#include <raft/raft_group.hpp>
#include <raft/testing/sim_network.hpp>

#include <span>

struct Machine {
  void apply(tenure::raft::LogIndex, std::span<const std::byte>) {}
};

struct Policies : tenure::raft::DefaultPolicies {
  using transport_type = tenure::raft::testing::SimTransport;
  using storage_type = tenure::raft::MemoryStorage;
  using state_machine_type = Machine;
};

tenure::raft::RaftGroup<Policies>* instantiate = nullptr;
int main() {
  return sizeof(*instantiate) > 0 ? 0 : 1;
}
