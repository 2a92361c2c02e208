// tenure-lease-tour: the lease layer, step by step, on a tiny in-process engine.
//
// A leader may answer a read from its own memory, with no network round trip, while it holds a
// lease: an interval in which no other node can have been elected. This program walks through how
// tenure::lease decides that. It defines a stand-in engine (MiniEngine) that models the
// LeaseProvider concept on a clock the program moves by hand, plays the network itself, and
// narrates. Every line marked [ok] is a claim the program checks; it exits 1 when any fails.
// docs/lease.md explains the why; this is the how.
#include <lease/lease_coordinator.hpp>
#include <lease/quorum_ack_tracker.hpp>
#include <raft/manual_clock.hpp>

#include <boost/intrusive/list.hpp>

#include <atomic>
#include <chrono>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>

using namespace std::chrono_literals;
namespace bi = boost::intrusive;
using tenure::lease::LeaderLossCallback;
using tenure::lease::LeaderLossHandler;
using tenure::lease::LeaderLossList;
using tenure::lease::LeaseConfig;
using tenure::lease::LeaseCoordinator;
using tenure::lease::LeaseState;
using tenure::lease::QuorumAckTracker;
using tenure::raft::Completion;
using tenure::raft::DefaultErrorClassifier;
using tenure::raft::errc;
using tenure::raft::Error;
using tenure::raft::LogIndex;
using tenure::raft::ManualClock;
using tenure::raft::NodeId;
using tenure::raft::Result;
using tenure::raft::Term;

namespace {

using Tracker = QuorumAckTracker<ManualClock, 8>;
constexpr NodeId kVoters[] = {1, 2, 3};

/// A stand-in for your consensus engine: only the state the lease layer reads. It sends nothing;
/// the tour plays the network by calling the "driven by the tour" methods at the moments a real
/// engine would react to messages. A real engine runs those on its own thread.
class MiniEngine {
 public:
  using clock_type = ManualClock;
  using time_point = clock_type::time_point;

  /// A pending ReadIndex. The caller owns it (LeaseCoordinator::ReadOperation embeds one); the
  /// engine only links it into its queue, so waiting allocates nothing.
  class read_request : public bi::list_base_hook<bi::link_mode<bi::auto_unlink>> {
   public:
    explicit read_request(Completion<LogIndex> done) noexcept : done_(done) {}

   private:
    friend class MiniEngine;
    Completion<LogIndex> done_;
    time_point deadline_{};
  };

  explicit MiniEngine(NodeId self) : self_(self), tracker_(self) {
    if (tracker_.set_configuration(kVoters)) {
      throw std::logic_error("MiniEngine: bad voters");
    }
  }

  // --- The LeaseProvider concept. These five: any thread, lock-free loads. -------------------
  const clock_type& clock() const noexcept { return clock_; }
  /// Non-zero only while leading *and* ready: an entry of this term applied, no transfer.
  Term leader_term() const noexcept { return serving_term_.load(std::memory_order_acquire); }
  NodeId leader_hint() const noexcept { return hint_.load(std::memory_order_acquire); }
  LogIndex applied_index() const noexcept { return applied_.load(std::memory_order_acquire); }
  time_point quorum_ack() const noexcept { return tracker_.quorum_ack(); }
  // These two: the engine's thread.
  void read_index(read_request& request, time_point deadline) {
    request.deadline_ = deadline;
    reads_.push_back(request);  // a real engine now sends a heartbeat round
  }
  void subscribe_leader_loss(LeaderLossCallback& callback) noexcept { losses_.add(callback); }

  // --- Driven by the tour. ------------------------------------------------------------------
  ManualClock& tour_clock() noexcept { return clock_; }
  const Tracker& tracker() const noexcept { return tracker_; }
  int x() const noexcept { return x_; }  // the state machine: one register

  /// Won an election: acks from any earlier term prove nothing about this one.
  void win_election(Term term) {
    tracker_.reset();
    term_ = term;
    hint_.store(self_, std::memory_order_release);
  }
  /// Entries through `index` are committed and applied; the last one set x.
  void apply_through(LogIndex index, int x) {
    x_ = x;
    applied_.store(index, std::memory_order_release);
  }
  /// This leader's own first entry (its no-op) is applied at `index`: it is ready to serve.
  void noop_applied(LogIndex index) {
    apply_through(index, x_);
    serving_term_.store(term_, std::memory_order_release);
  }
  /// Sends a heartbeat; the returned stamp travels with it and followers echo it back.
  time_point send_heartbeat() const noexcept { return clock_.now(); }
  /// A follower's answer arrived, echoing the stamp of the request it answers.
  void on_heartbeat_answer(NodeId from, time_point echoed_stamp) {
    tracker_.record(from, echoed_stamp);
  }
  /// The heartbeat round of the pending ReadIndex requests ended with `outcome`. (A real engine
  /// would also record that round's answers in its tracker; the tour leaves the tracker alone
  /// here so that the caller-side lease shows on its own.)
  void finish_read_round(Result<LogIndex> outcome) {
    while (!reads_.empty()) {
      read_request& r = reads_.front();
      reads_.pop_front();  // unlink first: the completion may destroy or reuse the request
      r.done_(outcome);
    }
  }
  /// Completes with timed_out every pending read whose deadline has passed.
  void expire_reads() {
    for (auto it = reads_.begin(); it != reads_.end();) {
      read_request& r = *it;
      if (r.deadline_ <= clock_.now()) {
        it = reads_.erase(it);
        r.done_(errc::timed_out);
      } else {
        ++it;
      }
    }
  }
  std::size_t pending_reads() const noexcept { return reads_.size(); }
  /// No lease reads while a leadership transfer is under way (LeaseProvider contract).
  void start_transfer() { serving_term_.store(0, std::memory_order_release); }
  void abort_transfer() { serving_term_.store(term_, std::memory_order_release); }
  /// Learned of a newer term: forget the acks, tell the callbacks while leader_term() still
  /// reports the old term, and only then let the new role show.
  void step_down(NodeId new_leader) {
    tracker_.reset();
    losses_.notify(term_, [](std::exception_ptr) noexcept {});
    hint_.store(new_leader, std::memory_order_release);
    serving_term_.store(0, std::memory_order_release);
    finish_read_round(Error{errc::leadership_lost, new_leader});
  }

 private:
  NodeId self_;
  ManualClock clock_;
  Tracker tracker_;
  Term term_ = 0;  // the engine's thread only
  int x_ = 0;
  std::atomic<Term> serving_term_{0};
  std::atomic<NodeId> hint_{tenure::raft::kNoNode};
  std::atomic<LogIndex> applied_{0};
  LeaderLossList losses_;
  bi::list<read_request, bi::constant_time_size<false>> reads_;
};

/// Where the coordinator reports a leader-loss callback that threw (it never lets one escape).
struct PrintingReporter {
  void callback_threw(std::exception_ptr e) noexcept {
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      std::printf("                  reporter: a leader-loss callback threw \"%s\"; contained\n",
                  ex.what());
    } catch (...) {
      std::printf("                  reporter: a leader-loss callback threw; contained\n");
    }
  }
};

using Coordinator = LeaseCoordinator<MiniEngine, DefaultErrorClassifier, PrintingReporter>;

/// A read the tour waits for: the caller-owned operation and where its outcome lands.
struct PendingRead {
  std::optional<Result<LogIndex>> outcome;
  Coordinator::ReadOperation op{Completion<LogIndex>{&done, this}};

  static void done(void* self, Result<LogIndex> r) noexcept {
    static_cast<PendingRead*>(self)->outcome = r;
  }
};

/// Your own errors: a write conflict is a business outcome. This category declares it equivalent
/// to no tenure::raft::ErrorClass, so the default classifier files it under `permanent`.
class KvCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "kv"; }
  std::string message(int) const override { return "write conflict"; }
};
const std::error_category& kv_category() {
  static const KvCategory category;
  return category;
}
const std::error_code kWriteConflict{1, kv_category()};

double ms(std::chrono::nanoseconds d) {
  return static_cast<double>(d.count()) / 1e6;
}
double ms(ManualClock::time_point t) {
  return ms(t.time_since_epoch());
}
/// An instant as LeaseState stores it: nanoseconds of the clock.
std::int64_t to_nanos(ManualClock::time_point t) {
  return tenure::raft::to_nanos<ManualClock>(t);
}
bool gives(const Result<LogIndex>& r, LogIndex index) {
  return r.has_value() && r.value() == index;
}
bool gives(const std::optional<Result<LogIndex>>& r, LogIndex index) {
  return r && gives(*r, index);
}
/// The errc name, for the few codes the tour meets.
const char* name_of(std::error_code ec) {
  if (ec == errc::not_leader) {
    return "not_leader";
  }
  if (ec == errc::lease_expired) {
    return "lease_expired";
  }
  if (ec == errc::timed_out) {
    return "timed_out";
  }
  return ec ? "another error" : "success";
}
std::string class_of(std::error_code ec) {
  return make_error_condition(DefaultErrorClassifier::classify(ec)).message();
}

/// Prints the tour: each line stamped with node 1's clock; claims are checked and counted.
class Narrator {
 public:
  explicit Narrator(const ManualClock& clock) : clock_(clock) {}

  [[gnu::format(printf, 2, 3)]] void say(const char* format, ...) {
    std::printf("       t=%7.1f  ", ms(clock_.now()));
    va_list args;
    va_start(args, format);
    std::vprintf(format, args);
    va_end(args);
    std::printf("\n");
  }
  [[gnu::format(printf, 3, 4)]] void claim(bool holds, const char* format, ...) {
    ++claims_;
    failures_ += holds ? 0 : 1;
    std::printf("%s t=%7.1f  ", holds ? "[ok]  " : "[FAIL]", ms(clock_.now()));
    va_list args;
    va_start(args, format);
    std::vprintf(format, args);
    va_end(args);
    std::printf("\n");
  }
  static void heading(const char* text) { std::printf("-- %s\n", text); }

  int claims() const { return claims_; }
  int failures() const { return failures_; }

 private:
  const ManualClock& clock_;
  int claims_ = 0;
  int failures_ = 0;
};

}  // namespace

int main() {
  LeaseConfig config;
  config.election_timeout_min = 150ms;  // no voter campaigns or votes sooner after a heartbeat
  config.max_clock_drift_ppm = 1000;    // every clock runs within 0.1 % of true time
  config.margin = 1ms;
  config.default_read_timeout = 5s;

  MiniEngine engine(1);
  ManualClock& clock = engine.tour_clock();
  Coordinator coordinator(engine, config);  // registers for leader-loss notifications
  const auto lease = coordinator.lease_duration();
  Narrator n(clock);
  constexpr double rho = 0.001;

  std::printf("tenure lease tour: node 1 of the group {1, 2, 3}; t = node 1's clock in ms\n");
  std::printf("lease = 150 ms * (1 - rho) / (1 + rho) - 1 ms = %.3f ms, with rho = 0.1 %%\n",
              ms(lease));
  n.claim(ms(lease) / (1 - rho) <= 150.0 / (1 + rho),
          "on a clock 0.1 %% slow it lasts %.3f ms; a 0.1 %% fast timer fires at %.3f",
          ms(lease) / (1 - rho), 150.0 / (1 + rho));

  Narrator::heading("1. a 3-node leader becomes ready");
  engine.win_election(1);
  auto r = coordinator.lease_read();
  n.claim(r.code() == errc::not_leader,
          "node 1 wins term 1, nothing of term 1 applied yet: lease_read -> %s", name_of(r.code()));
  clock.advance(2ms);
  engine.noop_applied(1);
  r = coordinator.lease_read();
  n.claim(engine.leader_term() == 1 && r.code() == errc::lease_expired,
          "its no-op is applied at index 1: ready, but no quorum ack yet -> %s", name_of(r.code()));

  Narrator::heading("2. acks are anchored at the send time of the request they answer");
  const auto hb1 = engine.send_heartbeat();
  n.say("heartbeat to nodes 2 and 3, stamped %.1f; they echo the stamp", ms(hb1));
  clock.advance(3ms);
  engine.on_heartbeat_answer(2, hb1);
  n.claim(engine.tracker().last_ack(2) == hb1 && engine.quorum_ack() == hb1,
          "node 2 answers: ack %.1f (sent), not %.1f (received); nodes 1 + 2 are a quorum", ms(hb1),
          ms(clock.now()));

  Narrator::heading("3. reads served from memory");
  r = coordinator.lease_read();
  n.claim(gives(r, 1), "lease_read -> applied index %llu, no network; %.1f ms of lease left",
          static_cast<unsigned long long>(r.has_value() ? r.value() : 0),
          ms(hb1 + lease - clock.now()));
  {
    PendingRead read;
    coordinator.read(read.op);
    n.claim(gives(read.outcome, 1) && read.op.served_by_lease() && engine.pending_reads() == 0,
            "read() is served by the lease too: completed at once, no ReadIndex round");
  }

  Narrator::heading("4. no acks: the lease runs out and read() falls back to ReadIndex");
  clock.advance(155ms);
  r = coordinator.lease_read();
  n.claim(r.code() == errc::lease_expired, "last ack %.1f ms ago (> lease): lease_read -> %s",
          ms(clock.now() - hb1), name_of(r.code()));
  const auto before_round = clock.now();
  PendingRead slow;
  coordinator.read(slow.op);
  n.claim(!slow.outcome && engine.pending_reads() == 1,
          "read() starts a ReadIndex round, sampling the lease anchor %.1f first",
          ms(before_round));
  clock.advance(30ms);
  engine.finish_read_round(engine.applied_index());
  n.claim(gives(slow.outcome, 1) && !slow.op.served_by_lease(),
          "the round confirms leadership 30 ms later: read at index 1");
  n.claim(coordinator.state().expiry() == to_nanos(before_round + lease) &&
              coordinator.lease_read().has_value(),
          "caller-side lease: to %.1f = %.1f + lease (not %.1f, from the round's end)",
          ms(before_round + lease), ms(before_round), ms(clock.now() + lease));

  Narrator::heading("5. a committed write extends the lease from before its proposal");
  clock.advance(130ms);
  n.claim(coordinator.lease_read().code() == errc::lease_expired, "lease ran out again");
  const auto write = coordinator.begin_write();
  n.say("begin_write() samples %.1f, then the proposal x = 7 goes out", ms(write.at));
  clock.advance(6ms);
  engine.apply_through(2, 7);
  coordinator.on_write_committed(write);
  r = coordinator.lease_read();
  n.claim(gives(r, 2) && coordinator.state().expiry() == to_nanos(write.at + lease),
          "x = 7 commits at index 2; on_write_committed: lease to %.1f; read index 2",
          ms(write.at + lease));

  Narrator::heading("6. only leadership errors invalidate");
  const auto generation = coordinator.state().generation();
  coordinator.on_error(kWriteConflict);
  n.claim(coordinator.lease_read().has_value() && coordinator.state().generation() == generation,
          "on_error(%s: %s), class %s: lease kept", kWriteConflict.category().name(),
          kWriteConflict.message().c_str(), class_of(kWriteConflict).c_str());
  const std::error_code not_leader = errc::not_leader;
  coordinator.on_error(not_leader);
  n.claim(coordinator.lease_read().code() == errc::lease_expired,
          "on_error(%s: %s), class %s: lease invalidated", not_leader.category().name(),
          not_leader.message().c_str(), class_of(not_leader).c_str());
  const auto hb2 = engine.send_heartbeat();
  clock.advance(2ms);
  engine.on_heartbeat_answer(3, hb2);
  n.claim(coordinator.lease_read().has_value(),
          "the engine, still leader, gets node 3's answer to a heartbeat: lease again");

  Narrator::heading("7. revoke before a leadership transfer");
  coordinator.revoke(1);
  engine.start_transfer();
  r = coordinator.lease_read();
  n.claim(r.code() == errc::not_leader,
          "revoke(1); TimeoutNow leaves for node 2, and is delayed; lease_read -> %s",
          name_of(r.code()));
  clock.advance(150ms);
  engine.abort_transfer();
  const auto hb3 = engine.send_heartbeat();
  clock.advance(2ms);
  engine.on_heartbeat_answer(2, hb3);
  r = coordinator.lease_read();
  n.claim(
      engine.leader_term() == 1 && engine.quorum_ack() == hb3 && r.code() == errc::lease_expired,
      "transfer timed out; term 1 goes on, fresh ack %.1f, but lease_read -> %s", ms(hb3),
      name_of(r.code()));
  {
    PendingRead read;
    coordinator.read(read.op);
    engine.finish_read_round(engine.applied_index());
    n.claim(gives(read.outcome, 2) && !read.op.served_by_lease(),
            "read() still answers, through ReadIndex: index 2");
  }
  clock.advance(3ms);
  n.say("the late TimeoutNow reaches node 2, and voters do not wait out a lease for it:");
  n.claim(clock.now() < hb3 + lease,
          "node 2 wins term 2, commits x = 8; a restored term-1 lease would serve x = 7 to %.1f",
          ms(hb3 + lease));

  Narrator::heading("8. leader loss: lease invalidated first, then the callbacks");
  LeaderLossHandler audit{[](Term) { throw std::runtime_error("audit log unreachable"); }};
  bool second_ran = false;
  LeaderLossHandler sessions{[&](Term lost) {
    second_ran = true;
    n.claim(engine.leader_term() == lost && coordinator.state().expiry() == LeaseState::kNone,
            "callback 2 runs while leader_term() still says %llu; the lease is already gone",
            static_cast<unsigned long long>(lost));
  }};
  coordinator.subscribe_leader_loss(audit);  // throws: contained, the next one still runs
  coordinator.subscribe_leader_loss(sessions);
  clock.advance(2ms);
  n.say("node 1 hears of term 2 and steps down");
  engine.step_down(2);
  r = coordinator.lease_read();
  n.claim(second_ran && coordinator.callback_failures() == 1 && r.code() == errc::not_leader &&
              r.leader_hint() == 2,
          "callback_failures() = 1; lease_read -> %s, hint: node %llu", name_of(r.code()),
          static_cast<unsigned long long>(r.leader_hint()));

  Narrator::heading("9. a delayed answer: why the anchor is the send time");
  clock.advance(1000ms - clock.now().time_since_epoch());
  engine.apply_through(4, 8);  // node 2's no-op (3) and its x = 8 (4)
  engine.win_election(3);
  engine.noop_applied(5);
  const auto hb4 = engine.send_heartbeat();
  n.say("node 1 (x = 8) leads term 3, no-op at index 5; heartbeat stamped %.1f", ms(hb4));
  clock.advance(1ms);
  n.say("nodes 2 and 3 receive it, reset their election timers; node 1 is then cut off");
  clock.advance(120ms);
  engine.on_heartbeat_answer(2, hb4);
  Tracker receive_time(1);  // what a tracker anchored at receive times would hold
  (void)receive_time.set_configuration(kVoters);
  receive_time.record(2, clock.now());
  n.say("node 2's answer, queued 120 ms, arrives: anchor %.1f (sent) vs %.1f (received)",
        ms(engine.quorum_ack()), ms(receive_time.quorum_ack()));
  clock.advance(30ms);
  n.say("nodes 2 and 3 time out (150 ms after 1001.0); node 2 wins term 4, commits x = 9");
  clock.advance(49ms);
  n.claim(clock.now() - receive_time.quorum_ack() < lease,
          "a read of x at node 1: a receive-time lease holds until %.1f, serves x = %d: STALE",
          ms(receive_time.quorum_ack() + lease), engine.x());
  r = coordinator.lease_read();
  n.claim(r.code() == errc::lease_expired && ms(hb4 + lease) <= ms(hb4) + 150.0 / (1 + rho),
          "the send-time lease ended at %.1f, before any election could (%.1f): %s",
          ms(hb4 + lease), ms(hb4) + 150.0 / (1 + rho), name_of(r.code()));
  {
    PendingRead read;
    coordinator.read(read.op, clock.now() + 50ms);
    clock.advance(50ms);
    engine.expire_reads();
    n.claim(read.outcome && read.outcome->code() == errc::timed_out,
            "read() tries ReadIndex, which reaches no quorum: %s at its 50 ms deadline",
            read.outcome ? name_of(read.outcome->code()) : "(pending)");
  }

  if (n.failures() == 0) {
    std::printf("lease tour: all %d claims hold\n", n.claims());
    return 0;
  }
  std::printf("lease tour: %d of %d claims FAILED\n", n.failures(), n.claims());
  return 1;
}
