// Proposal sizes against the limits of the configuration and of the transport (issue: a
// proposal just under max_uncommitted_bytes made an append frame over the TCP transport's
// max_frame_bytes, which dropped it on every send: replication stalled without a word).
#include <raft/config.hpp>
#include <raft/errc.hpp>
#include <raft/manual_clock.hpp>
#include <raft/memory_storage.hpp>
#include <raft/message.hpp>
#include <raft/policies.hpp>
#include <raft/raft_group.hpp>

#include "../../support/raft_harness.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <cstddef>
#include <deque>
#include <string>
#include <system_error>
#include <vector>

using namespace std::chrono_literals;
using tenure::raft::errc;
using tenure::raft::RaftConfig;
using tenure::testing::Bytes;
using tenure::testing::Harness;
using tenure::testing::NodeOptions;
using tenure::testing::RecordingStateMachine;
using tenure::testing::TrackedPropose;

namespace {

// A transport that can carry frames of up to `limit` bytes, as AsioTcpTransport reports.
struct LimitedTransport {
  std::size_t limit = 0;
  void send(const tenure::raft::Message&) {}
  std::size_t max_frame_bytes() const noexcept { return limit; }
};
static_assert(tenure::raft::ReportsFrameLimit<LimitedTransport>);

struct LimitedPolicies : tenure::raft::DefaultPolicies {
  using clock_type = tenure::raft::ManualClock;
  using transport_type = LimitedTransport;
  using storage_type = tenure::raft::MemoryStorage;
  using state_machine_type = RecordingStateMachine;
};

RaftConfig config() {
  RaftConfig c;
  c.self = 1;
  c.voters = {1, 2, 3};
  return c;
}

}  // namespace

TEST_CASE("a proposal over max_proposal_bytes is refused with too_large - one at the limit goes") {
  std::deque<TrackedPropose> proposals;
  NodeOptions o;
  o.config.max_proposal_bytes = 1000;
  Harness h(3, o);
  REQUIRE(h.elect(1));
  const Bytes too_big(1001, std::byte{7});
  h.group(1).propose(proposals.emplace_back().op, too_big);
  REQUIRE(proposals.back().completed());
  CHECK(proposals.back().code() == errc::too_large);
  CHECK(proposals.back().leader_hint() == 1);
  CHECK(h.group(1).last_index() == 1);  // nothing appended
  const Bytes at_limit(1000, std::byte{7});
  h.group(1).propose(proposals.emplace_back().op, at_limit);
  h.group(1).flush();
  h.deliver_all();
  CHECK(proposals.back().succeeded());
}

TEST_CASE("max_proposal_bytes must be positive") {
  RaftConfig c = config();
  CHECK_FALSE(c.validate(7));
  c.max_proposal_bytes = 0;
  CHECK(c.validate(7) == errc::invalid_config);
}

TEST_CASE("a proposal larger than max_uncommitted_bytes is too_large - not overloaded") {
  // It could never be accepted: overloaded (retryable) would have the client retry for ever.
  std::deque<TrackedPropose> proposals;
  NodeOptions o;
  o.config.max_uncommitted_bytes = 500;
  Harness h(3, o);
  REQUIRE(h.elect(1));
  const Bytes big(501, std::byte{7});
  h.group(1).propose(proposals.emplace_back().op, big);
  REQUIRE(proposals.back().completed());
  CHECK(proposals.back().code() == errc::too_large);
}

TEST_CASE("a group refuses a transport whose frames cannot carry its largest append") {
  tenure::raft::ManualClock clock;
  tenure::raft::MemoryStorage storage;
  RecordingStateMachine machine;
  RaftConfig c = config();
  // The largest append: 4096 entry headers of 24 bytes and 8 MiB of payload in one entry, plus
  // the 88-byte frame header.
  const std::size_t needed = 88 + 4096 * 24 + (std::size_t{8} << 20);
  LimitedTransport narrow{needed - 1};
  try {
    tenure::raft::RaftGroup<LimitedPolicies> group(c, clock, narrow, storage, machine);
    FAIL("a transport one byte too narrow was accepted");
  } catch (const std::system_error& e) {
    CHECK(e.code() == errc::invalid_config);
    const std::string what = e.what();
    CHECK(what.find("max_proposal_bytes") != std::string::npos);
    CHECK(what.find("max_frame_bytes") != std::string::npos);
    CHECK(what.find(std::to_string(needed)) != std::string::npos);
  }
  LimitedTransport wide{needed};
  CHECK_NOTHROW(tenure::raft::RaftGroup<LimitedPolicies>(c, clock, wide, storage, machine));
  c.max_proposal_bytes = 1 << 20;  // a smaller limit fits a narrower transport
  CHECK_NOTHROW(tenure::raft::RaftGroup<LimitedPolicies>(c, clock, narrow, storage, machine));
}
