// Must NOT compile: an ErrorClassifier whose classify() may throw.
#include <raft/memory_storage.hpp>
#include <raft/raft_group.hpp>
#include <raft/testing/sim_network.hpp>

#include <cstdint>
#include <span>
#include <system_error>

struct Machine {
  std::uint64_t apply(tenure::raft::LogIndex, std::span<const std::byte>) { return 0; }
};

struct MyClassifier {
  static tenure::raft::ErrorClass classify(std::error_code) {  // not noexcept
    return tenure::raft::ErrorClass::permanent;
  }
};

struct Policies : tenure::raft::DefaultPolicies {
  using transport_type = tenure::raft::testing::SimTransport;
  using storage_type = tenure::raft::MemoryStorage;
  using state_machine_type = Machine;
  using error_classifier = MyClassifier;
};

tenure::raft::RaftGroup<Policies>* instantiate = nullptr;
int main() {
  return sizeof(*instantiate) > 0 ? 0 : 1;
}
