// AsioGroup with the policies' own choices: its ErrorClassifier (the runtime's lease coordinator
// classifies the errors of its operations with it, not with DefaultErrorClassifier), and
// AsioGroupOptions::sync_inline over a storage without a sync thread.
#include <raft/asio/asio_group.hpp>
#include <raft/file_storage.hpp>
#include <raft/memory_storage.hpp>
#include <raft/policies.hpp>
#include <raft/steady_clock.hpp>
#include <raft/testing/sim_file_system.hpp>

#include <boost/asio/io_context.hpp>

#include <doctest/doctest.h>

#include <chrono>
#include <cstddef>
#include <optional>
#include <system_error>
#include <type_traits>
#include <vector>

#include "../../support/asio_cluster.hpp"
#include "../../support/raft_harness.hpp"

using namespace std::chrono_literals;
using tenure::raft::errc;
using tenure::raft::ErrorClass;
using tenure::raft::ProposeResult;
using tenure::raft::Result;

namespace {

struct DropEverything {
  void send(const tenure::raft::Message&) {}
};

// Calls a refused oversized proposal a leadership loss (a deliberately odd choice, so that the
// test can tell this classifier from the default one, which calls too_large permanent).
struct TooLargeMeansFenced {
  static ErrorClass classify(std::error_code ec) noexcept {
    if (ec == errc::too_large) {
      return ErrorClass::leadership_lost;
    }
    return tenure::raft::DefaultErrorClassifier::classify(ec);
  }
};

template <class Classifier>
struct SoloPolicies : tenure::raft::DefaultPolicies {
  using transport_type = DropEverything;
  using storage_type = tenure::raft::MemoryStorage;
  using state_machine_type = tenure::testing::RecordingStateMachine;
  using error_classifier = Classifier;
};

// A single voter with short timeouts, elected within milliseconds.
tenure::raft::RaftConfig solo_config() {
  tenure::raft::RaftConfig c;
  c.self = 1;
  c.voters = {1};
  c.election_timeout_min = 20ms;
  c.election_timeout_max = 40ms;
  c.heartbeat_interval = 5ms;
  return c;
}

// Runs a single-voter AsioGroup, has it refuse an oversized proposal, and returns how far the
// caller-side lease's generation moved (each invalidation moves it).
template <class Classifier>
std::uint64_t generations_moved_by_a_refused_proposal() {
  using Group = tenure::raft::asio::AsioGroup<SoloPolicies<Classifier>>;
  static_assert(
      std::is_same_v<typename Group::coordinator_type,
                     tenure::lease::LeaseCoordinator<typename Group::group_type, Classifier>>);
  ::boost::asio::io_context io;
  tenure::raft::SteadyClock clock;
  DropEverything transport;
  tenure::raft::MemoryStorage storage;
  tenure::testing::RecordingStateMachine machine;
  tenure::raft::RaftConfig c = solo_config();
  c.max_proposal_bytes = 16;
  tenure::raft::asio::AsioGroupOptions o;
  o.tick_interval = 2ms;
  Group g(io, c, o, clock, transport, storage, machine);
  g.start();
  REQUIRE(
      tenure::testing::asio_cluster::run_until(io, [&] { return g.group().leader_term() != 0; }));

  const std::uint64_t before = g.lease().state().generation();
  const std::vector<std::byte> too_large(64);
  std::optional<Result<ProposeResult>> refused;
  g.async_propose(too_large, 1s, [&](Result<ProposeResult> r) { refused = r; });
  REQUIRE(tenure::testing::asio_cluster::run_until(io, [&] { return refused.has_value(); }));
  CHECK(refused->code() == errc::too_large);
  const std::uint64_t moved = g.lease().state().generation() - before;
  g.stop();
  io.run_for(20ms);
  return moved;
}

}  // namespace

TEST_CASE("AsioGroup's lease coordinator classifies errors with the policies' error_classifier") {
  CHECK(generations_moved_by_a_refused_proposal<TooLargeMeansFenced>() == 1);
  CHECK(generations_moved_by_a_refused_proposal<tenure::raft::DefaultErrorClassifier>() == 0);
}

// ---------------------------------------------------------------------------------------------
// AsioGroupOptions::sync_inline: the strand syncs a storage that writes nothing by itself.
// ---------------------------------------------------------------------------------------------

namespace {

struct InlinePolicies : tenure::raft::DefaultPolicies {
  using transport_type = DropEverything;
  using storage_type = tenure::raft::FileStorage<tenure::raft::testing::SimFileSystem>;
  using state_machine_type = tenure::testing::RecordingStateMachine;
};

// A single voter over FileStorage without a sync thread: returns how many of `writes` proposals
// completed, and checks that everything acknowledged is durable.
int inline_sync_run(bool sync_inline, int writes) {
  using Group = tenure::raft::asio::AsioGroup<InlinePolicies>;
  ::boost::asio::io_context io;
  tenure::raft::SteadyClock clock;
  DropEverything transport;
  tenure::raft::testing::SimFileSystem fs;
  tenure::raft::FileStorageOptions so;
  so.directory = "/data";
  so.background_sync = false;  // nothing is written unless someone calls sync_now()
  so.salt_seed = 1;
  InlinePolicies::storage_type storage(so, fs);
  tenure::testing::RecordingStateMachine machine;
  tenure::raft::RaftConfig c = solo_config();
  tenure::raft::asio::AsioGroupOptions o;
  o.tick_interval = 2ms;
  o.sync_inline = sync_inline;
  Group g(io, c, o, clock, transport, storage, machine);
  g.start();
  tenure::testing::asio_cluster::run_until(
      io, [&] { return g.group().leader_term() != 0; }, 500ms);
  int done = 0;
  const std::vector<std::byte> payload(32);
  for (int i = 0; i < writes; ++i) {
    g.async_propose(payload, 1s, [&](Result<ProposeResult> r) { done += r.has_value() ? 1 : 0; });
  }
  tenure::testing::asio_cluster::run_until(
      io, [&] { return done == writes; },
      sync_inline ? 2000ms : 300ms);  // without it nothing can complete
  if (done != 0) {
    CHECK(storage.durable_seq() == storage.last_seq());  // acknowledged: durable
  }
  g.stop();
  io.run_for(20ms);
  return done;
}

}  // namespace

TEST_CASE(
    "AsioGroup sync_inline syncs the storage on the strand: writes commit with no sync thread") {
  CHECK(inline_sync_run(true, 200) == 200);
  CHECK(inline_sync_run(false, 200) == 0);  // without it nothing becomes durable: nothing commits
}

TEST_CASE("AsioGroup refuses sync_inline over a storage that cannot sync on request") {
  ::boost::asio::io_context io;
  tenure::raft::SteadyClock clock;
  DropEverything transport;
  tenure::raft::MemoryStorage storage;
  tenure::testing::RecordingStateMachine machine;
  const tenure::raft::RaftConfig c = solo_config();
  tenure::raft::asio::AsioGroupOptions o;
  o.sync_inline = true;
  using Group = tenure::raft::asio::AsioGroup<SoloPolicies<tenure::raft::DefaultErrorClassifier>>;
  CHECK_THROWS_AS(Group(io, c, o, clock, transport, storage, machine), std::system_error);
}

// ---------------------------------------------------------------------------------------------
// Observability through the runtime: async_status() and the policies' metrics.
// ---------------------------------------------------------------------------------------------

namespace {
struct ObservedPolicies : SoloPolicies<tenure::raft::DefaultErrorClassifier> {
  using metrics_type = tenure::raft::AtomicMetrics;
};
}  // namespace

TEST_CASE("AsioGroup: async_status reports the group from its strand - lease reads are counted") {
  using Group = tenure::raft::asio::AsioGroup<ObservedPolicies>;
  ::boost::asio::io_context io;
  tenure::raft::SteadyClock clock;
  DropEverything transport;
  tenure::raft::MemoryStorage storage;
  tenure::testing::RecordingStateMachine machine;
  tenure::raft::asio::AsioGroupOptions o;
  o.tick_interval = 2ms;
  Group g(io, solo_config(), o, clock, transport, storage, machine);
  g.start();
  REQUIRE(
      tenure::testing::asio_cluster::run_until(io, [&] { return g.group().leader_term() != 0; }));

  std::optional<Result<tenure::raft::asio::ReadResult>> read;
  g.async_read(tenure::raft::asio::ReadLevel::lease, 1s,
               [&](Result<tenure::raft::asio::ReadResult> r) { read = r; });
  REQUIRE(tenure::testing::asio_cluster::run_until(io, [&] { return read.has_value(); }));
  REQUIRE(read->has_value());

  std::optional<tenure::raft::GroupStatus> status;
  g.async_status([&](tenure::raft::GroupStatus s) { status = s; });
  CHECK_FALSE(status.has_value());  // posted: never completes inside the call
  REQUIRE(tenure::testing::asio_cluster::run_until(io, [&] { return status.has_value(); }));
  CHECK(status->role == tenure::raft::Role::leader);
  CHECK(status->leader == 1);
  CHECK(status->lease_term == status->term);
  CHECK(status->quorum_ack_age_ns == 0);  // a single voter is its own quorum at every instant
  CHECK(status->commit_index >= 1);
  REQUIRE(status->member_count == 1);
  CHECK(status->members[0].self);
  const auto& m = g.group().metrics();
  CHECK(m.counter(tenure::raft::Counter::leader_elected) == 1);
  CHECK(m.counter(tenure::raft::Counter::lease_reads) +
            m.counter(tenure::raft::Counter::lease_fallbacks) ==
        1);
  g.stop();
  io.run_for(20ms);
}
