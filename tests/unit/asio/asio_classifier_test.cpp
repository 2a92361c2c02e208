// AsioGroup with the policies' own ErrorClassifier: the runtime's lease coordinator classifies the
// errors of its operations with it, not with DefaultErrorClassifier.
#include <raft/asio/asio_group.hpp>
#include <raft/memory_storage.hpp>
#include <raft/policies.hpp>
#include <raft/steady_clock.hpp>

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
  tenure::raft::RaftConfig c;
  c.self = 1;
  c.voters = {1};
  c.election_timeout_min = 20ms;
  c.election_timeout_max = 40ms;
  c.heartbeat_interval = 5ms;
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
