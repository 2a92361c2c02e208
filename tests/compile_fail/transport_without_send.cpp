// Must NOT compile: a Transport policy whose sending member has another name.
#include <raft/memory_storage.hpp>
#include <raft/raft_group.hpp>

#include <cstdint>
#include <span>

struct Machine {
  std::uint64_t apply(tenure::raft::LogIndex, std::span<const std::byte>) { return 0; }
};

struct MyTransport {
  void post(const tenure::raft::Message&) {}  // not send()
};

struct Policies : tenure::raft::DefaultPolicies {
  using transport_type = MyTransport;
  using storage_type = tenure::raft::MemoryStorage;
  using state_machine_type = Machine;
};

tenure::raft::RaftGroup<Policies>* instantiate = nullptr;
int main() {
  return sizeof(*instantiate) > 0 ? 0 : 1;
}
