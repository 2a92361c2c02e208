// Must NOT compile: a Metrics policy without observe() (histograms).
#include <raft/memory_storage.hpp>
#include <raft/raft_group.hpp>
#include <raft/testing/sim_network.hpp>

#include <cstdint>
#include <span>

struct Machine {
  std::uint64_t apply(tenure::raft::LogIndex, std::span<const std::byte>) { return 0; }
};

struct MyMetrics {
  void add(tenure::raft::Counter, std::uint64_t) noexcept {}
  void set(tenure::raft::Gauge, std::int64_t) noexcept {}
};

struct Policies : tenure::raft::DefaultPolicies {
  using transport_type = tenure::raft::testing::SimTransport;
  using storage_type = tenure::raft::MemoryStorage;
  using state_machine_type = Machine;
  using metrics_type = MyMetrics;
};

tenure::raft::RaftGroup<Policies>* instantiate = nullptr;
int main() {
  return sizeof(*instantiate) > 0 ? 0 : 1;
}
