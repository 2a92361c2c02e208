// AsioGroup and Asio per-operation cancellation (Boost >= 1.77). The project's default build
// uses Debian's Boost 1.74, which has no cancellation slots: there only the first test runs. The
// `boost181` preset (scripts/test runs it) builds these tests against Boost 1.81.
#include <raft/asio/asio_group.hpp>

#include <doctest/doctest.h>

#include "../../support/asio_cluster.hpp"

#if TENURE_ASIO_HAS_CANCELLATION_SLOTS

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>
#include <cstddef>
#include <optional>
#include <variant>
#include <vector>

using namespace std::chrono_literals;
using tenure::raft::errc;
using tenure::raft::kNoNode;
using tenure::raft::NodeId;
using tenure::raft::ProposeResult;
using tenure::raft::Result;
using tenure::raft::asio::ReadLevel;
using tenure::raft::asio::ReadResult;
using tenure::testing::asio_cluster::Cluster;
using tenure::testing::asio_cluster::Group;
using tenure::testing::asio_cluster::run_until;
using Cancel = ::boost::asio::cancellation_type;

namespace {

// A cluster whose leader keeps leading (no CheckQuorum) but reaches no quorum: nothing it starts
// can finish except by deadline or cancellation. Cut off, it neither sends nor receives (the
// followers time out); deaf, it still sends, so the followers keep following and store what it
// appends, but it hears no acknowledgement.
enum class Isolation { cut, deaf };
struct IsolatedLeader {
  IsolatedLeader(::boost::asio::io_context& io, Isolation how = Isolation::cut)
      : cluster(io, /*check_quorum=*/false) {
    REQUIRE(run_until(io, [&] { return cluster.leader() != kNoNode; }));
    leader = cluster.leader();
    if (how == Isolation::deaf) {
      cluster.transport.deaf_[leader] = true;
      return;
    }
    cluster.transport.cut_off_all_but(leader);
  }
  Group& group() { return *cluster.groups[leader]; }
  void heal() {
    cluster.transport.cut_ = {};
    cluster.transport.deaf_ = {};
  }

  Cluster cluster;
  NodeId leader = kNoNode;
};

}  // namespace

TEST_CASE("AsioGroup cancellation: an emitted slot ends a pending linearizable read at once") {
  // Reads have no side effects, so every cancellation type is honoured.
  for (const Cancel type : {Cancel::terminal, Cancel::partial, Cancel::total}) {
    CAPTURE(static_cast<unsigned>(type));
    ::boost::asio::io_context io;
    IsolatedLeader c(io);
    Group& g = c.group();
    ::boost::asio::cancellation_signal signal;
    std::optional<Result<ReadResult>> read;
    g.async_read(ReadLevel::linearizable, 10s,
                 ::boost::asio::bind_cancellation_slot(signal.slot(),
                                                       [&](Result<ReadResult> r) { read = r; }));
    io.run_for(20ms);
    REQUIRE_FALSE(read.has_value());
    REQUIRE(g.group().pending_reads() == 1);
    REQUIRE(g.cancellable_pending() == 1);

    const auto start = std::chrono::steady_clock::now();
    signal.emit(type);
    REQUIRE(run_until(io, [&] { return read.has_value(); }));
    CHECK(std::chrono::steady_clock::now() - start < 1s);  // not the 10 s deadline
    CHECK(read->code() == errc::cancelled);
    CHECK(read->leader_hint() == c.leader);
    CHECK(g.group().pending_reads() == 0);  // withdrawn from the group's queue, not orphaned
    CHECK(g.cancellable_pending() == 0);
    c.cluster.stop_all(io);
  }
}

TEST_CASE("AsioGroup cancellation: a lease read waiting for ReadIndex is withdrawn") {
  ::boost::asio::io_context io;
  IsolatedLeader c(io);
  Group& g = c.group();
  // With the followers cut off, the lease runs out after lease_duration (under one election
  // timeout); wait until the fast path says so, then the read falls back to ReadIndex.
  REQUIRE(run_until(io, [&] { return g.lease().lease_read().code() == errc::lease_expired; }));
  ::boost::asio::cancellation_signal signal;
  std::optional<Result<ReadResult>> read;
  g.async_read(ReadLevel::lease, 10s,
               ::boost::asio::bind_cancellation_slot(signal.slot(),
                                                     [&](Result<ReadResult> r) { read = r; }));
  io.run_for(20ms);
  REQUIRE_FALSE(read.has_value());
  REQUIRE(g.group().pending_reads() == 1);
  const auto generation = g.lease().state().generation();

  signal.emit(Cancel::total);
  REQUIRE(run_until(io, [&] { return read.has_value(); }));
  CHECK(read->code() == errc::cancelled);
  CHECK(g.group().pending_reads() == 0);
  // A cancellation is the caller's choice, not a leadership loss: the lease is not invalidated.
  CHECK(g.lease().state().generation() == generation);
  c.cluster.stop_all(io);
}

TEST_CASE("AsioGroup cancellation: a proposal honours terminal cancellation only and may commit") {
  ::boost::asio::io_context io;
  IsolatedLeader c(io, Isolation::deaf);  // the followers store the entry; the leader cannot know
  Group& g = c.group();
  const std::vector<std::byte> payload{std::byte{0x5a}};
  ::boost::asio::cancellation_signal signal;
  std::optional<Result<ProposeResult>> proposed;
  g.async_propose(payload, 10s,
                  ::boost::asio::bind_cancellation_slot(
                      signal.slot(), [&](Result<ProposeResult> r) { proposed = r; }));
  io.run_for(20ms);
  REQUIRE_FALSE(proposed.has_value());
  const auto appended_at = g.group().last_index();

  // Appended already: withdrawing it without side effects (total) or to a well-known state
  // (partial) is impossible, so those requests are ignored.
  signal.emit(Cancel::total);
  io.run_for(30ms);
  signal.emit(Cancel::partial);
  io.run_for(30ms);
  REQUIRE_FALSE(proposed.has_value());
  CHECK(g.cancellable_pending() == 1);

  signal.emit(Cancel::terminal);
  REQUIRE(run_until(io, [&] { return proposed.has_value(); }));
  CHECK(proposed->code() == errc::cancelled);
  CHECK(g.cancellable_pending() == 0);

  // Its outcome was unknown, and indeed: once the leader hears its followers again, it commits.
  // (Had they elected a leader meanwhile, it could as well have been overwritten.)
  c.heal();
  REQUIRE(run_until(io, [&] {
    const auto* applied = c.cluster.machines[c.leader]->payload_at(appended_at);
    return applied != nullptr && *applied == payload;
  }));
  c.cluster.stop_all(io);
}

TEST_CASE("AsioGroup cancellation: a transfer ends and the leader takes proposals again") {
  ::boost::asio::io_context io;
  IsolatedLeader c(io);
  Group& g = c.group();
  const NodeId target = c.leader % 3 + 1;  // cut off: it never catches up nor hears TimeoutNow
  ::boost::asio::cancellation_signal signal;
  std::optional<Result<void>> transferred;
  g.async_transfer_leadership(target, 10s,
                              ::boost::asio::bind_cancellation_slot(
                                  signal.slot(), [&](Result<void> r) { transferred = r; }));
  io.run_for(20ms);
  REQUIRE_FALSE(transferred.has_value());
  REQUIRE(g.group().transferring());

  signal.emit(Cancel::partial);  // TimeoutNow may be out: ignored
  io.run_for(20ms);
  REQUIRE_FALSE(transferred.has_value());
  signal.emit(Cancel::terminal);
  REQUIRE(run_until(io, [&] { return transferred.has_value(); }));
  CHECK(transferred->code() == errc::cancelled);
  CHECK_FALSE(g.group().transferring());

  // No longer transferring: proposals are taken again (this one waits for its deadline, since
  // the quorum is still gone) instead of being refused with transfer_in_progress.
  const std::vector<std::byte> payload{std::byte{7}};
  std::optional<Result<ProposeResult>> proposed;
  g.async_propose(payload, 100ms, [&](Result<ProposeResult> r) { proposed = r; });
  REQUIRE(run_until(io, [&] { return proposed.has_value(); }));
  CHECK(proposed->code() == errc::timed_out);
  c.cluster.stop_all(io);
}

TEST_CASE(
    "AsioGroup cancellation: a late emit touches neither a newer operation nor a gone group") {
  ::boost::asio::io_context io;
  ::boost::asio::cancellation_signal signal;  // outlives the cluster
  {
    IsolatedLeader c(io);
    Group& g = c.group();
    // The first read completes (stale reads complete at once); its cancellation handler stays
    // installed in the slot.
    std::optional<Result<ReadResult>> first;
    g.async_read(ReadLevel::stale, 1s,
                 ::boost::asio::bind_cancellation_slot(signal.slot(),
                                                       [&](Result<ReadResult> r) { first = r; }));
    REQUIRE(run_until(io, [&] { return first.has_value(); }));
    REQUIRE(first->has_value());
    REQUIRE(signal.slot().has_handler());

    // A second read, not bound to the slot, is pending when the stale handler fires.
    std::optional<Result<ReadResult>> second;
    g.async_read(ReadLevel::linearizable, 10s, [&](Result<ReadResult> r) { second = r; });
    io.run_for(20ms);
    signal.emit(Cancel::terminal);
    io.run_for(50ms);
    CHECK_FALSE(second.has_value());
    CHECK(g.group().pending_reads() == 1);

    // A third, bound to the same slot, replaces the handler: an emit now ends the third only.
    std::optional<Result<ReadResult>> third;
    g.async_read(ReadLevel::linearizable, 10s,
                 ::boost::asio::bind_cancellation_slot(signal.slot(),
                                                       [&](Result<ReadResult> r) { third = r; }));
    io.run_for(20ms);
    signal.emit(Cancel::terminal);
    REQUIRE(run_until(io, [&] { return third.has_value(); }));
    CHECK(third->code() == errc::cancelled);
    CHECK_FALSE(second.has_value());
    CHECK(g.group().pending_reads() == 1);

    c.cluster.stop_all(io);
    REQUIRE(second.has_value());
    CHECK(second->code() == errc::stopped);
  }
  // The groups are destroyed; the slot still holds the third read's handler. Emitting posts to
  // the (still valid) strand and finds an empty registry: under AddressSanitizer a dangling
  // access would fail this test.
  REQUIRE(signal.slot().has_handler());
  signal.emit(Cancel::terminal);
  io.restart();
  io.run_for(50ms);
}

TEST_CASE("AsioGroup cancellation: a coroutine's || with a timer withdraws the losing read") {
  using namespace ::boost::asio::experimental::awaitable_operators;
  ::boost::asio::io_context io;
  IsolatedLeader c(io);
  Group& g = c.group();
  std::optional<std::size_t> winner;
  ::boost::asio::co_spawn(
      io,
      [&]() -> ::boost::asio::awaitable<void> {
        ::boost::asio::steady_timer timer(io, 50ms);
        auto outcome =
            co_await (g.async_read(ReadLevel::linearizable, 10s, ::boost::asio::use_awaitable) ||
                      timer.async_wait(::boost::asio::use_awaitable));
        winner = outcome.index();
      },
      ::boost::asio::detached);
  REQUIRE(run_until(io, [&] { return winner.has_value(); }));
  CHECK(*winner == 1);  // the timer
  // `||` waits for the loser to complete: by now the read is out of the group's queue.
  CHECK(g.group().pending_reads() == 0);
  CHECK(g.cancellable_pending() == 0);
  c.cluster.stop_all(io);
}

#endif  // TENURE_ASIO_HAS_CANCELLATION_SLOTS

TEST_CASE("AsioGroup cancellation: support follows the Boost version") {
  // Pins the version test in asio_group.hpp: slots exist from Asio 1.19 (Boost 1.77) on.
  CHECK(tenure::raft::asio::kHasCancellationSlots == (BOOST_ASIO_VERSION >= 101900));
}
