// LeaseCoordinator: linearizable reads from the leader's memory, with ReadIndex as the fallback.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <limits>
#include <string>
#include <system_error>
#include <utility>

#include <boost/intrusive/list.hpp>

#include <raft/completion.hpp>
#include <raft/errc.hpp>
#include <raft/error_classifier.hpp>
#include <raft/metrics.hpp>
#include <raft/result.hpp>
#include <raft/types.hpp>

#include <lease/leader_loss.hpp>
#include <lease/lease_config.hpp>
#include <lease/lease_provider.hpp>
#include <lease/lease_state.hpp>

namespace tenure::lease {

using raft::LogIndex;

/// Where a LeaseCoordinator reports what it contained rather than let it escape: a leader-loss
/// callback that threw. Called on the group's thread; must not throw.
template <class R>
concept LeaseReporter = requires(R& r, std::exception_ptr e) {
  { r.callback_threw(e) }
  noexcept;
};

/// The reporter used unless told otherwise: it ignores the report (the coordinator still counts
/// it, see LeaseCoordinator::callback_failures()).
struct NullLeaseReporter {
  void callback_threw(std::exception_ptr) noexcept {}
};

namespace detail {

/// The classifier a provider names (`Provider::error_classifier`, as RaftGroup does from its
/// policies), else DefaultErrorClassifier.
template <class Provider>
struct provider_classifier {
  using type = raft::DefaultErrorClassifier;
};
template <class Provider>
requires requires {
  typename Provider::error_classifier;
}
struct provider_classifier<Provider> {
  using type = typename Provider::error_classifier;
};

}  // namespace detail

/// Serves linearizable reads from the leader's memory while its lease holds, and through the
/// provider's ReadIndex otherwise. Works over any LeaseProvider (tenure's RaftGroup, or another
/// engine that embeds a QuorumAckTracker).
///
/// A read may be served locally when the provider reports this node leader in its current term
/// and either
/// - the quorum-ack instant is fresh: `now - quorum_ack < lease_duration()` (lessons 10, 11: the
///   engine refreshes it on every heartbeat, whatever reads do), or
/// - the caller-side lease, extended after quorum operations this coordinator observed, is valid
///   (lessons 5, 6: extended from the instant sampled *before* the operation).
///
/// Errors: the constructor throws std::system_error with errc::invalid_config when the
/// configuration leaves no positive lease (see lease_duration()). lease_read() answers not_leader
/// (with the provider's leader hint) or lease_expired; read() completes with the fast path's
/// answer, the provider's ReadIndex outcome, or timed_out.
///
/// Thread-safety: lease_read(), begin_write(), on_error(), revoke(), lease_duration(),
/// callback_failures() and state() are lock-free and may be called from any thread. Everything
/// else, the constructor and the destructor included, runs on the provider's (group's) thread.
/// Lifetime: destroy the coordinator before the provider. A coordinator destroyed while reads wait
/// for the provider's ReadIndex detaches them: each still completes exactly once, with the
/// provider's outcome (errc::stopped when the provider stops first), and no longer touches the
/// coordinator. A ReadOperation itself must outlive its completion.
/// Allocation: none after construction; operations and callbacks are caller-owned.
/// Classifier: the provider's `error_classifier` when it names one (a RaftGroup names its
/// policies'), else raft::DefaultErrorClassifier.
template <class Provider, class Classifier = typename detail::provider_classifier<Provider>::type,
          class Reporter = NullLeaseReporter>
class LeaseCoordinator {
  static_assert(detail::check_lease_provider<Provider>());
  static_assert(raft::detail::check_error_classifier<Classifier>());
  static_assert(
      LeaseReporter<Reporter>,
      "tenure: the Reporter policy needs `void callback_threw(std::exception_ptr) noexcept`");

 public:
  using clock_type = typename Provider::clock_type;
  using time_point = typename clock_type::time_point;
  using duration = typename clock_type::duration;

  /// What a write samples before its proposal is sent, so that its commit can extend the lease
  /// from that instant (lesson 5).
  struct WriteAnchor {
    time_point at;
    std::uint64_t generation = 0;
    raft::Term term = 0;  // the leadership term at sampling; 0 when not leading
  };

  /// A caller-owned read: construct it with the completion to call, pass it to read(), keep it
  /// alive (and do not reuse it) until the completion has run. The completion runs exactly once,
  /// with the index to read at (everything up to it is applied) or an error.
  class ReadOperation {
   public:
    explicit ReadOperation(raft::Completion<LogIndex> done) noexcept
        : done_(done), request_(raft::Completion<LogIndex>{&on_read_index, this}) {}

    ReadOperation(const ReadOperation&) = delete;
    ReadOperation& operator=(const ReadOperation&) = delete;

    /// Whether read() served it from the lease without a ReadIndex round.
    bool served_by_lease() const noexcept { return served_by_lease_; }

   private:
    friend class LeaseCoordinator;

    static void on_read_index(void* self, raft::Result<LogIndex> outcome) noexcept {
      auto& op = *static_cast<ReadOperation*>(self);
      // No owner: the coordinator was destroyed while this read waited (it detached it).
      if (LeaseCoordinator* owner = op.owner_) {
        op.waiting_hook_.unlink();
        if (outcome) {
          owner->extend_from(op.anchor_);  // the round confirmed leadership as of the anchor
        } else {
          owner->on_error(outcome.code());
        }
      }
      op.done_(outcome);
    }

    raft::Completion<LogIndex> done_;
    typename Provider::read_request request_;
    LeaseCoordinator* owner_ = nullptr;
    // Its place in the coordinator's list of reads waiting for the provider. auto_unlink: a
    // completion unlinks it in O(1) without the list.
    boost::intrusive::list_member_hook<boost::intrusive::link_mode<boost::intrusive::auto_unlink>>
        waiting_hook_;
    WriteAnchor anchor_;
    bool served_by_lease_ = false;
  };

  /// Registers with `provider` for leader-loss notifications. Throws std::system_error
  /// (errc::invalid_config) when `config` leaves no positive lease.
  LeaseCoordinator(Provider& provider, const LeaseConfig& config, Reporter reporter = {})
      : provider_(provider),
        lease_(checked_lease(provider, config)),
        default_read_timeout_(config.default_read_timeout),
        reporter_(std::move(reporter)),
        loss_hook_(*this) {
    provider_.subscribe_leader_loss(loss_hook_);
  }

  LeaseCoordinator(const LeaseCoordinator&) = delete;
  LeaseCoordinator& operator=(const LeaseCoordinator&) = delete;

  /// Drops the caller-side lease and deregisters (the heartbeat tax, docs/background.md: a teardown
  /// path drops the lease). Reads still waiting for the provider's ReadIndex are detached, not
  /// completed: they complete later, from the provider, without the coordinator.
  ~LeaseCoordinator() {
    state_.invalidate();
    while (!waiting_.empty()) {
      waiting_.front().owner_ = nullptr;
      waiting_.pop_front();
    }
  }

  /// How long after a quorum-ack instant (or a caller-side anchor) the lease holds.
  duration lease_duration() const noexcept { return lease_; }

  /// The fast path: the applied index to read at when the lease holds, else not_leader (with the
  /// leader hint) or lease_expired. A handful of atomic loads and one clock read; no writes to
  /// shared memory, so readers on many cores do not slow each other down.
  raft::Result<LogIndex> lease_read() const noexcept {
    const raft::Term term = provider_.leader_term();
    if (term == 0) {
      return raft::Error::not_leader(provider_.leader_hint());
    }
    if (revoked_through_.load(std::memory_order_acquire) >= term) {
      return raft::errc::lease_expired;
    }
    const std::int64_t now = raft::to_nanos<clock_type>(provider_.clock().now());
    if (!holds_at(now)) {
      return raft::errc::lease_expired;
    }
    const LogIndex applied = provider_.applied_index();
    // Re-check after the time checks: a revoke (before a transfer) or a change of term that
    // landed meanwhile means the answer cannot be trusted.
    if (provider_.leader_term() != term ||
        revoked_through_.load(std::memory_order_acquire) >= term) {
      return raft::errc::lease_expired;
    }
    return applied;
  }

  /// A linearizable read: served from the lease when it holds, otherwise through the provider's
  /// ReadIndex, with `deadline` bounding both together (lesson 1). Without a deadline
  /// (`time_point::max()`), LeaseConfig::default_read_timeout applies. A successful ReadIndex
  /// round extends the caller-side lease from the instant sampled before it. Completes `op`
  /// exactly once, possibly before returning. Group's thread.
  ///
  /// Over a RaftGroup, a read that falls back to ReadIndex waits for the group's next flush()
  /// (its heartbeat round confirms every read queued before it): call `group.flush()` after a
  /// batch of reads, as AsioGroup does, or the round leaves at the next tick().
  void read(ReadOperation& op, time_point deadline = time_point::max()) {
    op.owner_ = nullptr;  // linked (and owned) only while it waits for the provider
    op.served_by_lease_ = false;
    const time_point now = provider_.clock().now();  // sampled before the round (lesson 5)
    if (deadline == time_point::max()) {
      deadline = now + default_read_timeout_;
    }
    if (now >= deadline) {
      op.done_(raft::errc::timed_out);
      return;
    }
    auto fast = lease_read();
    if (fast) {
      op.served_by_lease_ = true;
      count(raft::Counter::lease_reads);
      op.done_(fast);
      return;
    }
    count(raft::Counter::lease_fallbacks);
    op.anchor_ = WriteAnchor{now, state_.generation(), provider_.leader_term()};
    // Linked before the call: the provider may complete the read before read_index returns.
    op.owner_ = this;
    waiting_.push_back(op);
    // A follower's provider may forward the read to the leader; its success then extends nothing
    // here (anchor term 0).
    provider_.read_index(op.request_, deadline);
  }

  /// Withdraws a read waiting for the provider's ReadIndex round: it completes at once with the
  /// provider's cancellation error (errc::cancelled for RaftGroup), which leaves the lease alone
  /// (a retryable error, not a leadership loss). A read that already completed, or was served
  /// from the lease, is left alone, so a cancel that races with the completion is harmless.
  /// Available when the provider can cancel (`p.cancel(request)`, as RaftGroup can). Group's
  /// thread; no allocation.
  void cancel(ReadOperation& op) requires
      requires(Provider& p, typename Provider::read_request& r) {
    p.cancel(r);
  }
  { provider_.cancel(op.request_); }

  /// Samples what a write's commit will extend the lease from. Call before sending the proposal.
  WriteAnchor begin_write() const noexcept {
    return WriteAnchor{provider_.clock().now(), state_.generation(), provider_.leader_term()};
  }

  /// The write sampled by `anchor` committed: a quorum accepted an append sent after the anchor,
  /// so the lease extends to `anchor.at + lease_duration()`, unless leadership changed since.
  /// Group's thread.
  void on_write_committed(const WriteAnchor& anchor) noexcept { extend_from(anchor); }

  /// An operation failed with `ec`: the caller-side lease is invalidated if, and only if, the
  /// Classifier calls it a leadership loss (lesson 9). A write conflict or any other business
  /// failure leaves it. (The provider's quorum-ack lease is the provider's to end: it resets its
  /// tracker when it actually loses leadership.)
  void on_error(std::error_code ec) noexcept {
    if (ec && Classifier::classify(ec) == raft::ErrorClass::leadership_lost) {
      state_.invalidate();
    }
  }

  /// Ends every lease of `term` and of earlier terms for good: call before a leadership transfer
  /// sends TimeoutNow, or before the leader removes itself, so that the lease is gone before the
  /// message leaves. Pass the engine's current term, taken before the transfer starts
  /// (leader_term() reads 0 once a transfer is under way). The target of a transfer may win an
  /// election at once (voters do not wait out the old leader's lease for it), so not even a fresh
  /// quorum ack may serve a read in this term again; ReadIndex still may. Any thread.
  void revoke(raft::Term term) noexcept {
    raft::Term current = revoked_through_.load(std::memory_order_relaxed);
    while (current < term &&
           !revoked_through_.compare_exchange_weak(current, term, std::memory_order_seq_cst)) {
    }
    state_.invalidate();
  }

  /// Registers a callback run when this node stops being leader, after the lease is invalidated.
  /// Group's thread; O(1).
  void subscribe_leader_loss(LeaderLossCallback& callback) noexcept { callbacks_.add(callback); }

  /// How many leader-loss callbacks have thrown (each also reported to the Reporter).
  std::uint64_t callback_failures() const noexcept {
    return callback_failures_.load(std::memory_order_relaxed);
  }

  /// The caller-side lease state (for inspection and tests).
  const LeaseState& state() const noexcept { return state_; }

 private:
  // The coordinator's own registration with the provider: invalidate first, then tell the user.
  class LossHook final : public LeaderLossCallback {
   public:
    explicit LossHook(LeaseCoordinator& owner) noexcept
        : LeaderLossCallback(&call), owner_(owner) {}

   private:
    static void call(LeaderLossCallback& self, raft::Term lost_term) {
      static_cast<LossHook&>(self).owner_.on_leader_lost(lost_term);
    }
    LeaseCoordinator& owner_;
  };

  // The lease from `config`, with the election timeout the provider's voters actually wait when
  // it reports one (hole: a lease configured longer than that is unsafe, and nothing compared
  // the two).
  static duration checked_lease(const Provider& provider, LeaseConfig config) {
    if constexpr (ReportsElectionTimeout<Provider>) {
      const auto reported =
          std::chrono::duration_cast<std::chrono::nanoseconds>(provider.election_timeout_min());
      if (config.election_timeout_min.count() != 0 && config.election_timeout_min != reported) {
        throw std::system_error(
            raft::errc::invalid_config,
            "LeaseConfig::election_timeout_min (" +
                std::to_string(config.election_timeout_min.count()) +
                " ns) differs from the provider's election_timeout_min (RaftConfig::"
                "election_timeout_min, " +
                std::to_string(reported.count()) +
                " ns): leave it 0 to take the provider's, which is what voters wait");
      }
      config.election_timeout_min = reported;
    } else if (config.election_timeout_min.count() == 0) {
      throw std::system_error(raft::errc::invalid_config,
                              "LeaseConfig::election_timeout_min is 0 and the provider does not "
                              "report one (`duration election_timeout_min() const noexcept`): set "
                              "it to the smallest election timeout of any voter");
    }
    const auto lease = lease::lease_duration(config);
    if (!lease) {
      throw std::system_error(lease.code(),
                              "LeaseConfig leaves no positive lease (election_timeout_min * "
                              "(1 - rho) / (1 + rho) - margin must be > 0)");
    }
    return lease.value();
  }

  bool holds_at(std::int64_t now) const noexcept {
    const std::int64_t quorum_ack = raft::to_nanos<clock_type>(provider_.quorum_ack());
    // now - quorum_ack < lease, written so that neither sentinel of a QuorumAckTracker (kNever,
    // the minimum; kAlways, the maximum) can overflow the subtraction.
    if (quorum_ack != std::numeric_limits<std::int64_t>::min() &&
        (quorum_ack >= now || now - quorum_ack < lease_.count())) {
      return true;
    }
    return state_.valid_at(now);
  }

  void extend_from(const WriteAnchor& anchor) noexcept {
    if (anchor.term != 0 && provider_.leader_term() == anchor.term) {
      state_.extend(raft::to_nanos<clock_type>(anchor.at + lease_), anchor.generation);
    }
  }

  void on_leader_lost(raft::Term lost_term) {
    state_.invalidate();  // before anyone can observe the new role (lesson 6)
    const std::size_t failures =
        callbacks_.notify(lost_term, [this](std::exception_ptr e) { reporter_.callback_threw(e); });
    if (failures != 0) {
      callback_failures_.fetch_add(failures, std::memory_order_relaxed);
    }
  }

  // Lease hits and fallbacks go to the provider's metrics when it has any (a RaftGroup's
  // metrics_type; NoMetrics compiles this away).
  void count(raft::Counter c) noexcept {
    if constexpr (requires { provider_.metrics().add(c, std::uint64_t{1}); }) {
      provider_.metrics().add(c, 1);
    }
  }

  Provider& provider_;
  const duration lease_;
  const duration default_read_timeout_;
  LeaseState state_;
  std::atomic<raft::Term> revoked_through_{0};
  std::atomic<std::uint64_t> callback_failures_{0};
  [[no_unique_address]] Reporter reporter_;
  LeaderLossList callbacks_;
  // Reads waiting for the provider's ReadIndex (intrusive: no allocation).
  boost::intrusive::list<
      ReadOperation,
      boost::intrusive::member_hook<ReadOperation, decltype(ReadOperation::waiting_hook_),
                                    &ReadOperation::waiting_hook_>,
      boost::intrusive::constant_time_size<false>>
      waiting_;
  LossHook loss_hook_;  // last: unlinked from the provider first on destruction
};

}  // namespace tenure::lease
