// Must NOT compile: a RandomSource policy named after its own member, not next().
#include <raft/memory_storage.hpp>
#include <raft/raft_group.hpp>
#include <raft/testing/sim_network.hpp>

#include <cstdint>
#include <span>
#include <system_error>

struct Machine {
  std::uint64_t apply(tenure::raft::LogIndex, std::span<const std::byte>) { return 0; }
};

// Draws with draw(), not next().
struct MyRandom {
  explicit MyRandom(std::uint64_t seed) : state(seed) {}
  std::uint64_t draw() { return state += 0x9e3779b97f4a7c15ull; }
  std::uint64_t state;
};

struct Policies : tenure::raft::DefaultPolicies {
  using transport_type = tenure::raft::testing::SimTransport;
  using storage_type = tenure::raft::MemoryStorage;
  using state_machine_type = Machine;
  using random_type = MyRandom;
};

tenure::raft::RaftGroup<Policies>* instantiate = nullptr;
int main() {
  return sizeof(*instantiate) > 0 ? 0 : 1;
}
