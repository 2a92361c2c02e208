// Must NOT compile: a StateMachine that takes snapshots but cannot restore one. Without the check
// the group would run without snapshots and say nothing.
#include <raft/memory_storage.hpp>
#include <raft/raft_group.hpp>
#include <raft/testing/sim_network.hpp>

#include <cstddef>
#include <cstdint>
#include <span>

struct Machine {
  struct snapshot_reader {
    std::size_t read(std::span<std::byte>) { return 0; }
  };
  std::uint64_t apply(tenure::raft::LogIndex, std::span<const std::byte>) { return 0; }
  snapshot_reader begin_snapshot() { return {}; }
  // begin_restore, restore_chunk, finish_restore and abort_restore are missing.
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
