// Logs, metrics and status() of a RaftGroup, in simulated scenarios: each counter and log record
// must appear when its event happens (an election, a partition, a transfer, a refused proposal),
// with its cause, and not otherwise; status() must show a lagging follower's lag; StreamLogger's
// line format is exact.
#include <lease/lease_config.hpp>
#include <lease/lease_coordinator.hpp>
#include <raft/logger.hpp>
#include <raft/metrics.hpp>
#include <raft/prometheus_text.hpp>
#include <raft/status.hpp>
#include <raft/testing/kv_state_machine.hpp>
#include <raft/testing/sim_cluster.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using tenure::raft::AtomicMetrics;
using tenure::raft::Completion;
using tenure::raft::Counter;
using tenure::raft::errc;
using tenure::raft::Gauge;
using tenure::raft::GroupStatus;
using tenure::raft::Histogram;
using tenure::raft::kNoNode;
using tenure::raft::LogField;
using tenure::raft::LogLevel;
using tenure::raft::LogRecord;
using tenure::raft::NodeId;
using tenure::raft::ProposeOperation;
using tenure::raft::ProposeResult;
using tenure::raft::Result;
using tenure::raft::Role;
using tenure::raft::Term;

namespace {

// One logged record, copied out of the LogRecord (whose texts live only during log()).
struct Line {
  LogLevel level;
  std::string event;
  NodeId node;
  Term term;
  std::string role;
  std::map<std::string, std::string> fields;

  std::string field(const std::string& key) const {
    auto it = fields.find(key);
    return it == fields.end() ? std::string("<none>") : it->second;
  }
};

// A Logger that appends copies of its records to a vector shared by the whole cluster.
struct RecordingLogger {
  std::vector<Line>* lines = nullptr;
  bool enabled(LogLevel level) const noexcept { return lines != nullptr && level != LogLevel::off; }
  void log(const LogRecord& r) noexcept {
    try {
      Line line{r.level, std::string(r.event), r.node, r.term, std::string(r.role), {}};
      for (const LogField& f : r.extra()) {
        std::string value;
        switch (f.kind) {
          case LogField::Kind::unsigned_number:
            value = std::to_string(f.number);
            break;
          case LogField::Kind::signed_number:
            value = std::to_string(static_cast<std::int64_t>(f.number));
            break;
          case LogField::Kind::text:
            value = std::string(f.text);
            break;
        }
        line.fields[std::string(f.key)] = value;
      }
      lines->push_back(std::move(line));
    } catch (...) {
    }
  }
};
static_assert(tenure::raft::Logger<RecordingLogger>);
static_assert(tenure::raft::Metrics<AtomicMetrics>);
static_assert(tenure::raft::Logger<tenure::raft::StreamLogger>);

using Cluster =
    tenure::raft::testing::SimCluster<tenure::raft::testing::DigestStateMachine, 7,
                                      tenure::raft::NoPlantedBugs, tenure::raft::MemoryStorage,
                                      AtomicMetrics, RecordingLogger>;

Cluster::Options options(std::uint64_t seed, std::vector<Line>& lines) {
  Cluster::Options o;
  o.seed = seed;
  o.on_node_start = [&lines](Cluster::Node& n) { n.group->logger().lines = &lines; };
  return o;
}

NodeId ready_leader(Cluster& cluster) {
  const NodeId leader = cluster.wait_for_leader();
  if (leader == kNoNode ||
      !cluster.run_until([&] { return cluster.group(leader).leader_term() != 0; }, 2s)) {
    return kNoNode;
  }
  return leader;
}

std::vector<Line> select(const std::vector<Line>& lines, const std::string& event, NodeId node) {
  std::vector<Line> out;
  std::copy_if(lines.begin(), lines.end(), std::back_inserter(out),
               [&](const Line& l) { return l.event == event && l.node == node; });
  return out;
}

template <class T>
struct Probe {
  std::optional<Result<T>> outcome;
  static void done(void* self, Result<T> r) noexcept { static_cast<Probe*>(self)->outcome = r; }
  Completion<T> completion() { return {&done, this}; }
};

std::uint64_t sum_over(Cluster& cluster, Counter c) {
  std::uint64_t n = 0;
  for (NodeId id : cluster.ids()) {
    n += cluster.group(id).metrics().counter(c);
  }
  return n;
}

}  // namespace

TEST_CASE("an election is counted and logged once per node with its cause") {
  std::vector<Line> lines;
  Cluster cluster(options(101, lines));
  const NodeId leader = ready_leader(cluster);
  REQUIRE(leader != kNoNode);
  auto& g = cluster.group(leader);
  const auto& m = g.metrics();

  CHECK(m.counter(Counter::leader_elected) == 1);
  CHECK(m.counter(Counter::elections_started) >= 1);
  CHECK(sum_over(cluster, Counter::leader_elected) == 1);  // nobody else won
  CHECK(m.gauge(Gauge::role) == 3);
  CHECK(m.gauge(Gauge::term) == static_cast<std::int64_t>(g.term()));
  CHECK(m.gauge(Gauge::leader) == static_cast<std::int64_t>(leader));
  CHECK(m.gauge(Gauge::commit_index) == static_cast<std::int64_t>(g.commit_index()));
  CHECK(m.counter(Counter::entries_applied) == g.stats().entries_applied);
  CHECK(m.counter(Counter::messages_sent) == g.stats().messages_sent);
  CHECK(m.counter(Counter::messages_received) > 0);
  // The no-op was written and became durable: both histograms have samples.
  CHECK(m.histogram(Histogram::persist_batch_entries).count >= 1);
  CHECK(m.histogram(Histogram::persist_micros).count >= 1);

  // The winner logged its way up: pre-candidate on its election timeout, a term change caused
  // by the pre-vote quorum's answer, candidate, then leader, each at the term it reached.
  const auto roles = select(lines, "role_changed", leader);
  REQUIRE(!roles.empty());
  CHECK(roles.back().role == "leader");
  CHECK(roles.back().field("old_role") == "candidate");
  CHECK(roles.back().term == g.term());
  const auto terms = select(lines, "term_changed", leader);
  REQUIRE(!terms.empty());
  CHECK(terms.back().term == g.term());
  CHECK(terms.back().field("old_term") == std::to_string(g.term() - 1));
  CHECK(terms.back().field("cause") == "pre_vote_response");
  CHECK(terms.back().field("msg_term") == std::to_string(g.term()));

  for (NodeId id : cluster.ids()) {
    if (id == leader) {
      continue;
    }
    CAPTURE(id);
    const auto& fm = cluster.group(id).metrics();
    CHECK(fm.gauge(Gauge::role) == 0);
    CHECK(fm.gauge(Gauge::leader) == static_cast<std::int64_t>(leader));
    CHECK(fm.counter(Counter::leader_elected) == 0);
    // A follower's term moved because of a message, and the record names it.
    const auto moved = select(lines, "term_changed", id);
    REQUIRE(!moved.empty());
    const Line& last = moved.back();
    CHECK(last.term == g.term());
    CHECK(last.field("from") != "<none>");
    CHECK(last.field("msg_term") == std::to_string(g.term()));
    CHECK((last.field("cause") == "vote" || last.field("cause") == "append" ||
           last.field("cause") == "heartbeat" || last.field("cause") == "pre_vote_response" ||
           last.field("cause") == "vote_response"));
  }
  // Nobody lost leadership, and no record says otherwise.
  CHECK(sum_over(cluster, Counter::leadership_lost) == 0);
  CHECK(std::none_of(lines.begin(), lines.end(),
                     [](const Line& l) { return l.event == "leadership_lost"; }));
}

TEST_CASE("a partitioned leader steps down by CheckQuorum and logs why") {
  std::vector<Line> lines;
  Cluster cluster(options(102, lines));
  const NodeId old_leader = ready_leader(cluster);
  REQUIRE(old_leader != kNoNode);
  const Term old_term = cluster.group(old_leader).term();
  cluster.network().isolate(old_leader);
  REQUIRE(cluster.run_until([&] { return cluster.group(old_leader).role() != Role::leader; }, 2s));
  auto& og = cluster.group(old_leader);
  CHECK(og.metrics().counter(Counter::leadership_lost) == 1);
  CHECK(og.metrics().gauge(Gauge::role) != 3);
  const auto lost = select(lines, "leadership_lost", old_leader);
  REQUIRE(lost.size() == 1);
  CHECK(lost[0].level == LogLevel::warn);
  CHECK(lost[0].field("cause") == "check_quorum");
  CHECK(lost[0].field("reason") == "leadership_lost");
  CHECK(lost[0].term == old_term);

  // The majority elects a new leader; once healed, the old one learns the new term from it.
  NodeId new_leader = kNoNode;
  REQUIRE(cluster.run_until(
      [&] {
        for (NodeId id : cluster.ids()) {
          if (id != old_leader && cluster.group(id).role() == Role::leader) {
            new_leader = id;
            return true;
          }
        }
        return false;
      },
      3s));
  cluster.network().heal();
  const Term new_term = cluster.group(new_leader).term();
  REQUIRE(
      cluster.run_until([&] { return og.term() == new_term && og.leader() == new_leader; }, 3s));
  const auto moved = select(lines, "term_changed", old_leader);
  REQUIRE(!moved.empty());
  CHECK(moved.back().term == new_term);
  CHECK(moved.back().field("msg_term") == std::to_string(new_term));
  // Pre-vote keeps the isolated node's term still: the move came from the new leader.
  CHECK(moved.back().field("from") == std::to_string(new_leader));
  CHECK(og.metrics().gauge(Gauge::leader) == static_cast<std::int64_t>(new_leader));
}

TEST_CASE("a transfer revokes the lease once - logged with the target - and counted") {
  std::vector<Line> lines;
  Cluster cluster(options(103, lines));
  const NodeId leader = ready_leader(cluster);
  REQUIRE(leader != kNoNode);
  const NodeId target = leader == 1 ? 2 : 1;
  auto& g = cluster.group(leader);
  CHECK(g.metrics().counter(Counter::lease_revocations) == 0);
  Probe<void> probe;
  tenure::raft::TransferOperation op(probe.completion());
  g.transfer_leadership(op, target);
  CHECK(g.metrics().counter(Counter::lease_revocations) == 1);
  const auto revoked = select(lines, "lease_revoked", leader);
  REQUIRE(revoked.size() == 1);
  CHECK(revoked[0].field("cause") == "transfer");
  CHECK(revoked[0].field("target") == std::to_string(target));
  REQUIRE(cluster.run_until([&] { return probe.outcome.has_value(); }, 2s));
  REQUIRE(probe.outcome->has_value());
  CHECK(cluster.group(target).role() == Role::leader);
  CHECK(g.metrics().counter(Counter::leadership_lost) == 1);
  // The target campaigned because of the old leader's TimeoutNow, and says so.
  const auto terms = select(lines, "term_changed", target);
  REQUIRE(!terms.empty());
  CHECK(terms.back().field("cause") == "timeout_now");
  CHECK(terms.back().field("from") == std::to_string(leader));
  CHECK(cluster.group(target).metrics().counter(Counter::leader_elected) == 1);
}

TEST_CASE("refused proposals are counted by reason") {
  std::vector<Line> lines;
  Cluster cluster(options(104, lines));
  const NodeId leader = ready_leader(cluster);
  REQUIRE(leader != kNoNode);
  const NodeId follower = leader == 1 ? 2 : 1;
  const std::array<std::byte, 8> small{};
  const std::vector<std::byte> huge(cluster.group(leader).config().max_proposal_bytes + 1);

  Probe<ProposeResult> not_leader;
  ProposeOperation op1(not_leader.completion());
  cluster.group(follower).propose(op1, small);
  REQUIRE(not_leader.outcome.has_value());
  CHECK(not_leader.outcome->code() == errc::not_leader);
  CHECK(cluster.group(follower).metrics().counter(Counter::proposals_refused_not_leader) == 1);

  Probe<ProposeResult> too_large;
  ProposeOperation op2(too_large.completion());
  cluster.group(leader).propose(op2, huge);
  REQUIRE(too_large.outcome.has_value());
  CHECK(too_large.outcome->code() == errc::too_large);
  CHECK(cluster.group(leader).metrics().counter(Counter::proposals_refused_too_large) == 1);

  // A proposal that cannot commit (both followers cut off) times out, and is counted so.
  for (NodeId id : cluster.ids()) {
    if (id != leader) {
      cluster.network().block(leader, id);
    }
  }
  Probe<ProposeResult> late;
  ProposeOperation op3(late.completion());
  const auto accepted_before = cluster.group(leader).metrics().counter(Counter::proposals_accepted);
  cluster.group(leader).propose(op3, small, cluster.clock(leader).now() + 30ms);
  CHECK(cluster.group(leader).metrics().counter(Counter::proposals_accepted) ==
        accepted_before + 1);
  REQUIRE(cluster.run_until([&] { return late.outcome.has_value(); }, 1s));
  CHECK(late.outcome->code() == errc::timed_out);
  CHECK(cluster.group(leader).metrics().counter(Counter::proposals_refused_timed_out) == 1);
  CHECK(cluster.group(leader).metrics().counter(Counter::proposals_refused_overloaded) == 0);
}

TEST_CASE("status shows a cut-off follower's lag and renders it as text and JSON") {
  std::vector<Line> lines;
  Cluster cluster(options(105, lines));
  const NodeId leader = ready_leader(cluster);
  REQUIRE(leader != kNoNode);
  const NodeId behind = leader == 3 ? 2 : 3;
  const NodeId caught_up = 6 - leader - behind;
  cluster.network().isolate(behind);
  std::vector<Probe<ProposeResult>> probes(50);
  std::vector<std::unique_ptr<ProposeOperation>> ops;
  const std::array<std::byte, 8> payload{};
  for (auto& p : probes) {
    ops.push_back(std::make_unique<ProposeOperation>(p.completion()));
    cluster.group(leader).propose(*ops.back(), payload);
  }
  cluster.group(leader).flush();
  REQUIRE(cluster.run_until(
      [&] {
        return std::all_of(probes.begin(), probes.end(),
                           [](const auto& p) { return p.outcome.has_value(); });
      },
      2s));

  const GroupStatus s = cluster.group(leader).status();
  CHECK(s.role == Role::leader);
  CHECK(s.leader == leader);
  CHECK(s.lease_term == s.term);
  CHECK(s.commit_index == s.last_index);
  CHECK(s.quorum_ack_age_ns >= 0);
  CHECK(s.quorum_ack_age_ns < 100'000'000);  // a quorum answered within the lease window
  REQUIRE(s.member_count == 3);
  for (const auto& p : s.peers()) {
    CAPTURE(p.id);
    if (p.id == behind) {
      CHECK(p.lag >= 50);
      CHECK(p.match + p.lag == s.last_index);
    } else {
      CHECK(p.lag == 0);
      CHECK(p.match == s.last_index);
    }
    CHECK(p.voter);
    CHECK(p.self == (p.id == leader));
  }

  std::string text;
  tenure::raft::append_text(text, s);
  CHECK(text.find("leader term " + std::to_string(s.term)) != std::string::npos);
  CHECK(text.find("member " + std::to_string(behind) + " voter match") != std::string::npos);
  CHECK(text.find("lag " + std::to_string(s.last_index - s.members[0].match)) != std::string::npos);

  std::string json;
  tenure::raft::append_json(json, s);
  CHECK(json.front() == '{');
  CHECK(json.back() == '}');
  CHECK(json.find("\"role\":\"leader\"") != std::string::npos);
  CHECK(json.find("\"commit_index\":" + std::to_string(s.commit_index) + ",") != std::string::npos);
  CHECK(std::count(json.begin(), json.end(), '{') == 4);  // the group and its 3 members
  CHECK(std::count(json.begin(), json.end(), '{') == std::count(json.begin(), json.end(), '}'));

  // A follower knows no replication figures, but names the leader.
  const GroupStatus f = cluster.group(caught_up).status();
  CHECK(f.role == Role::follower);
  CHECK(f.leader == leader);
  CHECK(f.lease_term == 0);
  CHECK(f.quorum_ack_age_ns == -1);
  for (const auto& p : f.peers()) {
    CHECK(p.match == 0);
    CHECK(p.lag == 0);
  }
}

TEST_CASE("StreamLogger writes one logfmt line per record - filtered by level") {
  std::FILE* out = std::tmpfile();
  REQUIRE(out != nullptr);
  tenure::raft::StreamLogger logger(out, LogLevel::info);
  CHECK_FALSE(logger.enabled(LogLevel::debug));
  CHECK(logger.enabled(LogLevel::warn));

  LogRecord r;
  r.level = LogLevel::warn;
  r.event = "leadership_lost";
  r.message = "stopped leading";
  r.group = 2;
  r.node = 3;
  r.term = 8;
  r.role = "follower";
  r.with(LogField::t("reason", "leadership_lost"))
      .with(LogField::u("new_leader", 1))
      .with(LogField::i("delta", -4))
      .with(LogField::t("note", "a \"quoted\" = value"));
  logger.log(r);
  r.level = LogLevel::debug;  // below the level: not written
  logger.log(r);
  logger.set_level(LogLevel::off);
  r.level = LogLevel::error;
  logger.log(r);  // off: nothing at all

  std::fflush(out);
  std::rewind(out);
  std::array<char, 2048> buffer{};
  const std::size_t n = std::fread(buffer.data(), 1, buffer.size(), out);
  std::fclose(out);
  const std::string text(buffer.data(), n);
  REQUIRE(std::count(text.begin(), text.end(), '\n') == 1);
  // "2026-12-03T10:42:07.123456Z " then the record.
  REQUIRE(text.size() > 28);
  CHECK(text[4] == '-');
  CHECK(text[10] == 'T');
  CHECK(text[26] == 'Z');
  CHECK(text.substr(28) ==
        "level=warn event=leadership_lost group=2 node=3 term=8 role=follower "
        "reason=leadership_lost new_leader=1 delta=-4 note=\"a \\\"quoted\\\" = value\" "
        "msg=\"stopped leading\"\n");
  CHECK(tenure::raft::parse_log_level("warn") == LogLevel::warn);
  CHECK_FALSE(tenure::raft::parse_log_level("verbose").has_value());
}

TEST_CASE("a record longer than the line buffer is cut - not overflowed") {
  tenure::raft::detail::LineBuffer line;
  const std::string long_text(5000, 'x');
  LogRecord r;
  r.event = "e";
  r.with(LogField::t("k", long_text));
  tenure::raft::format_log_record(r, line);
  CHECK(line.view().size() < tenure::raft::detail::LineBuffer::kCapacity);
  CHECK(line.view().substr(line.view().size() - 3) == "...");
}

TEST_CASE("histogram buckets are powers of two") {
  CHECK(AtomicMetrics::bucket_of(0) == 0);
  CHECK(AtomicMetrics::bucket_of(1) == 0);
  CHECK(AtomicMetrics::bucket_of(2) == 1);
  CHECK(AtomicMetrics::bucket_of(3) == 2);
  CHECK(AtomicMetrics::bucket_of(4) == 2);
  CHECK(AtomicMetrics::bucket_of(5) == 3);
  CHECK(AtomicMetrics::bucket_of(~std::uint64_t{0}) == AtomicMetrics::kBuckets - 1);
  AtomicMetrics m;
  m.observe(Histogram::persist_micros, 3);
  m.observe(Histogram::persist_micros, 4);
  m.observe(Histogram::persist_micros, 100);
  const auto h = m.histogram(Histogram::persist_micros);
  CHECK(h.count == 3);
  CHECK(h.sum == 107);
  CHECK(h.buckets[2] == 2);
  CHECK(h.buckets[7] == 1);  // 64 < 100 <= 128
}

TEST_CASE("lease reads and their ReadIndex fallbacks are counted apart") {
  std::vector<Line> lines;
  Cluster cluster(options(106, lines));
  const NodeId leader = ready_leader(cluster);
  REQUIRE(leader != kNoNode);
  auto& g = cluster.group(leader);
  tenure::lease::LeaseConfig lease;
  lease.election_timeout_min = g.config().election_timeout_min;
  tenure::lease::LeaseCoordinator<Cluster::Group> coordinator(g, lease);
  // A lease of 1 ms against 20 ms heartbeats: its reads nearly all miss and fall back.
  tenure::lease::LeaseConfig short_lease;
  short_lease.max_clock_drift_ppm = 0;
  short_lease.margin = 99ms;
  tenure::lease::LeaseCoordinator<Cluster::Group> fallback(g, short_lease);

  // The leader's quorum acknowledged its heartbeats within the lease: served from memory.
  Probe<tenure::raft::LogIndex> hit;
  decltype(coordinator)::ReadOperation op1(hit.completion());
  coordinator.read(op1);
  REQUIRE(hit.outcome.has_value());
  CHECK(op1.served_by_lease());
  CHECK(g.metrics().counter(Counter::lease_reads) == 1);
  CHECK(g.metrics().counter(Counter::lease_fallbacks) == 0);

  cluster.run_for(30ms);  // past the short lease
  Probe<tenure::raft::LogIndex> miss;
  decltype(fallback)::ReadOperation op2(miss.completion());
  fallback.read(op2);
  CHECK_FALSE(op2.served_by_lease());
  CHECK(g.metrics().counter(Counter::lease_fallbacks) == 1);
  CHECK(g.metrics().counter(Counter::lease_reads) == 1);
  const auto rounds = g.metrics().counter(Counter::read_index_rounds);
  const auto confirmed = g.metrics().counter(Counter::reads_confirmed);
  g.flush();  // the fallback's round leaves
  CHECK(g.metrics().counter(Counter::read_index_rounds) == rounds + 1);
  REQUIRE(cluster.run_until([&] { return miss.outcome.has_value(); }, 1s));
  CHECK(miss.outcome->has_value());
  CHECK(g.metrics().counter(Counter::reads_confirmed) == confirmed + 1);
}

TEST_CASE("the Prometheus rendering writes each family once with a sample per group") {
  std::vector<Line> lines;
  Cluster cluster(options(107, lines));
  const NodeId leader = ready_leader(cluster);
  REQUIRE(leader != kNoNode);
  const NodeId follower = leader == 1 ? 2 : 1;
  GroupStatus leading = cluster.group(leader).status();
  leading.group = 1;  // the simulated groups are all group 0
  GroupStatus following = cluster.group(follower).status();
  following.group = 2;  // as if it were another group of the same node
  const tenure::raft::PrometheusGroup groups[] = {{&cluster.group(leader).metrics(), &leading},
                                                  {&cluster.group(follower).metrics(), &following}};
  std::string text;
  tenure::raft::append_prometheus(text, groups);

  auto count_of = [&](const std::string& needle) {
    std::size_t n = 0;
    for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) {
      ++n;
    }
    return n;
  };
  CHECK(count_of("# TYPE tenure_leader_elected_total counter\n") == 1);
  CHECK(count_of("tenure_leader_elected_total{group=\"1\"} 1\n") == 1);
  CHECK(count_of("tenure_leader_elected_total{group=\"2\"} 0\n") == 1);
  CHECK(count_of("tenure_role{group=\"1\"} 3\n") == 1);
  CHECK(count_of("tenure_lease_valid{group=\"1\"} 1\n") == 1);
  CHECK(count_of("tenure_lease_valid{group=\"2\"} 0\n") == 1);
  // Per-member figures come from the leader only, one sample per other member.
  CHECK(count_of("tenure_follower_lag_entries{group=\"1\",peer=") == 2);
  CHECK(count_of("tenure_follower_lag_entries{group=\"2\"") == 0);
  // Each per-member family carries its own figure (a missing case once wrote the ack age as
  // the in-flight bytes).
  for (const auto& p : leading.peers()) {
    if (p.self) {
      continue;
    }
    const std::string labels = "{group=\"1\",peer=\"" + std::to_string(p.id) + "\"} ";
    CHECK(count_of("tenure_follower_match_index" + labels + std::to_string(p.match) + "\n") == 1);
    CHECK(count_of("tenure_follower_lag_entries" + labels + std::to_string(p.lag) + "\n") == 1);
    CHECK(count_of("tenure_follower_inflight_messages" + labels +
                   std::to_string(p.inflight_messages) + "\n") == 1);
    CHECK(count_of("tenure_follower_inflight_bytes" + labels + std::to_string(p.inflight_bytes) +
                   "\n") == 1);
  }
  // A group id given beside the status wins over the status's.
  {
    const tenure::raft::PrometheusGroup relabelled[] = {
        {&cluster.group(leader).metrics(), &leading, 9}};
    std::string other;
    tenure::raft::append_prometheus(other, relabelled);
    CHECK(other.find("tenure_role{group=\"9\"} 3\n") != std::string::npos);
    CHECK(other.find("group=\"1\"") == std::string::npos);
  }
  CHECK(count_of("# TYPE tenure_persist_seconds histogram\n") == 1);
  CHECK(count_of("tenure_persist_seconds_bucket{group=\"1\",le=\"+Inf\"}") == 1);
  // Histogram buckets are cumulative: never decreasing, ending at _count.
  const auto h = cluster.group(leader).metrics().histogram(Histogram::persist_batch_entries);
  CHECK(count_of("tenure_persist_batch_entries_count{group=\"1\"} " + std::to_string(h.count) +
                 "\n") == 1);
  std::uint64_t previous = 0;
  std::size_t buckets = 0;
  const std::string prefix = "tenure_persist_batch_entries_bucket{group=\"1\",le=\"";
  for (auto at = text.find(prefix); at != std::string::npos; at = text.find(prefix, at + 1)) {
    const auto space = text.find(' ', at);
    const std::uint64_t v = std::stoull(text.substr(space + 1));
    CHECK(v >= previous);
    previous = v;
    ++buckets;
  }
  CHECK(buckets > 2);
  CHECK(previous == h.count);
  // Every family's TYPE appears once: no metric name is declared twice.
  std::map<std::string, int> types;
  for (auto at = text.find("# TYPE "); at != std::string::npos; at = text.find("# TYPE ", at + 1)) {
    const auto end = text.find(' ', at + 7);
    ++types[text.substr(at + 7, end - at - 7)];
  }
  for (const auto& [name, n] : types) {
    CAPTURE(name);
    CHECK(n == 1);
  }
  CHECK(types.size() == tenure::raft::kCounterCount + tenure::raft::kGaugeCount +
                            tenure::raft::kHistogramCount + 7);
}

TEST_CASE("a storage failure is logged once as an error - with the leadership it ends") {
  std::vector<Line> lines;
  Cluster cluster(options(108, lines));
  const NodeId leader = ready_leader(cluster);
  REQUIRE(leader != kNoNode);
  cluster.node(leader).storage().fail(std::make_error_code(std::errc::io_error));
  auto& g = cluster.group(leader);
  REQUIRE(cluster.run_until([&] { return g.stopped(); }, 1s));
  cluster.run_for(100ms);  // nothing more is logged for it
  const auto failed = select(lines, "storage_failed", leader);
  REQUIRE(failed.size() == 1);
  CHECK(failed[0].level == LogLevel::error);
  CHECK(failed[0].field("code") == std::to_string(static_cast<int>(std::errc::io_error)));
  CHECK(failed[0].field("category") == "generic");
  CHECK(g.metrics().counter(Counter::storage_failures) == 1);
  const auto lost = select(lines, "leadership_lost", leader);
  REQUIRE(lost.size() == 1);
  CHECK(lost[0].field("reason") == "storage_failure");
  CHECK(g.status().stopped);
  CHECK(g.status().failure == std::errc::io_error);
}

TEST_CASE("a membership change is logged on every member as its entries apply") {
  std::vector<Line> lines;
  Cluster::Options o = options(109, lines);
  o.standby = 1;  // node 4 starts as a joining node
  Cluster cluster(o);
  const NodeId leader = ready_leader(cluster);
  REQUIRE(leader != kNoNode);
  Probe<tenure::raft::LogIndex> done;
  tenure::raft::MembershipOperation op(done.completion());
  cluster.group(leader).change_membership(op, tenure::raft::Membership{{1, 2, 3, 4}, {}, {}},
                                          cluster.clock(leader).now() + 2s);
  REQUIRE(cluster.run_until([&] { return done.outcome.has_value(); }, 3s));
  REQUIRE(done.outcome->has_value());
  cluster.run_for(100ms);  // followers apply the last entry on the next heartbeat
  // 4 joins as a learner first, then becomes a voter: two entries, each logged where it applied.
  const auto changes = select(lines, "membership_changed", leader);
  REQUIRE(changes.size() == 2);
  CHECK(changes[0].field("voters") == "3");
  CHECK(changes[0].field("learners") == "1");
  CHECK(changes[1].field("voters") == "4");
  CHECK(changes[1].field("learners") == "0");
  CHECK(changes[1].field("index") == std::to_string(done.outcome->value()));
  CHECK(cluster.group(leader).metrics().counter(Counter::membership_changes) == 2);
  for (NodeId id : {NodeId{1}, NodeId{2}, NodeId{3}}) {
    CAPTURE(id);
    CHECK(select(lines, "membership_changed", id).size() == 2);
  }
}

namespace {
using KvCluster =
    tenure::raft::testing::SimCluster<tenure::raft::testing::KvStateMachine, 7,
                                      tenure::raft::NoPlantedBugs, tenure::raft::MemoryStorage,
                                      AtomicMetrics, RecordingLogger>;
}  // namespace

TEST_CASE("snapshots taken and installed are logged with their index and counted") {
  std::vector<Line> lines;
  KvCluster::Options o;
  o.seed = 110;
  o.config.snapshot_entries = 10;
  o.config.log_retention_entries = 0;
  o.on_node_start = [&lines](KvCluster::Node& n) { n.group->logger().lines = &lines; };
  KvCluster cluster(o);
  const NodeId leader = cluster.wait_for_leader();
  REQUIRE(leader != kNoNode);
  const NodeId lagging = leader % 3 + 1;
  cluster.network().isolate(lagging);
  std::deque<Probe<ProposeResult>> probes;
  std::deque<ProposeOperation> ops;
  std::deque<std::array<std::byte, tenure::raft::testing::kKvCommandSize>> payloads;
  for (std::uint64_t k = 0; k < 40; ++k) {
    auto& p = probes.emplace_back();
    auto& payload = payloads.emplace_back();
    tenure::raft::testing::encode_kv_command(
        tenure::raft::testing::KvCommand{tenure::raft::testing::KvOpKind::put, k,
                                         static_cast<std::int64_t>(k), 0, k + 1},
        payload);
    cluster.group(leader).propose(ops.emplace_back(p.completion()), payload);
  }
  cluster.group(leader).flush();
  REQUIRE(cluster.run_until(
      [&] {
        return std::all_of(probes.begin(), probes.end(),
                           [](const auto& p) { return p.outcome.has_value(); });
      },
      2s));
  cluster.run_for(300ms);
  auto& g = cluster.group(leader);
  const auto taken = select(lines, "snapshot_taken", leader);
  REQUIRE(!taken.empty());
  CHECK(taken.size() == g.stats().snapshots_taken);
  CHECK(g.metrics().counter(Counter::snapshots_taken) == g.stats().snapshots_taken);
  CHECK(taken.back().field("index") == std::to_string(g.snapshot_index()));

  cluster.network().heal();
  REQUIRE(cluster.run_until(
      [&] { return cluster.group(lagging).last_applied() >= g.last_applied(); }, 5s));
  const auto installed = select(lines, "snapshot_installed", lagging);
  REQUIRE(installed.size() == 1);
  CHECK(installed[0].field("leader") == std::to_string(leader));
  CHECK(cluster.group(lagging).metrics().counter(Counter::snapshots_installed) == 1);
  CHECK(g.metrics().counter(Counter::snapshot_chunks_sent) >= 1);
}
