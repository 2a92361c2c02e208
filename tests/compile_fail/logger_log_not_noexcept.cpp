// Must NOT compile: a Logger whose log() may throw (it runs inside the group's inputs).
#include <raft/memory_storage.hpp>
#include <raft/raft_group.hpp>
#include <raft/testing/sim_network.hpp>

#include <cstdint>
#include <span>

struct Machine {
  std::uint64_t apply(tenure::raft::LogIndex, std::span<const std::byte>) { return 0; }
};

struct MyLogger {
  bool enabled(tenure::raft::LogLevel) const noexcept { return true; }
  void log(const tenure::raft::LogRecord&) {}  // not noexcept
};

struct Policies : tenure::raft::DefaultPolicies {
  using transport_type = tenure::raft::testing::SimTransport;
  using storage_type = tenure::raft::MemoryStorage;
  using state_machine_type = Machine;
  using logger_type = MyLogger;
};

tenure::raft::RaftGroup<Policies>* instantiate = nullptr;
int main() {
  return sizeof(*instantiate) > 0 ? 0 : 1;
}
