// Must NOT compile: a Storage policy that cannot report asynchronous completion.
#include <raft/memory_storage.hpp>
#include <raft/raft_group.hpp>
#include <raft/testing/sim_network.hpp>

#include <cstdint>
#include <span>

struct Machine {
  std::uint64_t apply(tenure::raft::LogIndex, std::span<const std::byte>) { return 0; }
};

// Everything MemoryStorage has, except durable_seq().
struct SyncOnlyStorage {
  tenure::raft::LogIndex first_index() const noexcept { return 1; }
  tenure::raft::LogIndex last_index() const noexcept { return 0; }
  tenure::raft::Result<tenure::raft::Term> term_at(tenure::raft::LogIndex) const noexcept {
    return tenure::raft::Term{0};
  }
  tenure::raft::EntryView entry(tenure::raft::LogIndex) const noexcept { return {}; }
  tenure::raft::HardState hard_state() const noexcept { return {}; }
  tenure::raft::WriteSeq append(std::span<const tenure::raft::EntryView>) { return 0; }
  tenure::raft::WriteSeq truncate_suffix(tenure::raft::LogIndex) { return 0; }
  tenure::raft::WriteSeq save_hard_state(const tenure::raft::HardState&) { return 0; }
  void compact(tenure::raft::LogIndex) {}
  std::error_code error() const noexcept { return {}; }
};

struct Policies : tenure::raft::DefaultPolicies {
  using transport_type = tenure::raft::testing::SimTransport;
  using storage_type = SyncOnlyStorage;
  using state_machine_type = Machine;
};

tenure::raft::RaftGroup<Policies>* instantiate = nullptr;
int main() {
  return sizeof(*instantiate) > 0 ? 0 : 1;
}
