// AsioGroup: one RaftGroup (and its LeaseCoordinator) run on a Boost.Asio strand, with
// asynchronous operations that take Asio completion tokens.
#pragma once

#include <atomic>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <system_error>
#include <type_traits>
#include <utility>

#include <boost/asio/associated_allocator.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/version.hpp>

// Per-operation cancellation arrived in Asio 1.19 (Boost 1.77). Older Boost (Debian bookworm's
// libboost-dev is 1.74) builds everything else; operations then end by result, deadline or stop().
#if BOOST_ASIO_VERSION >= 101900
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/cancellation_type.hpp>
#define TENURE_ASIO_HAS_CANCELLATION_SLOTS 1
#else
#define TENURE_ASIO_HAS_CANCELLATION_SLOTS 0
#endif

#include <lease/lease_config.hpp>
#include <lease/lease_coordinator.hpp>
#include <raft/asio/detail/cancellation_registry.hpp>
#include <raft/config.hpp>
#include <raft/errc.hpp>
#include <raft/membership.hpp>
#include <raft/message.hpp>
#include <raft/operations.hpp>
#include <raft/raft_group.hpp>
#include <raft/result.hpp>
#include <raft/status.hpp>
#include <raft/types.hpp>

namespace tenure::raft::asio {

/// Whether AsioGroup's operations honour their handlers' Asio cancellation slots (Boost >= 1.77).
inline constexpr bool kHasCancellationSlots = TENURE_ASIO_HAS_CANCELLATION_SLOTS != 0;

/// How a read is served (docs/design.md, "Reads, three levels").
enum class ReadLevel : std::uint8_t {
  /// ReadIndex: one heartbeat round, batched with every read waiting for it. Linearizable.
  linearizable,
  /// From the leader's lease when it holds (no round trip), else ReadIndex. Linearizable while
  /// clocks drift less than max_clock_drift (docs/lease.md).
  lease,
  /// The local applied state, on any node, at once. Possibly stale.
  stale,
};

/// What a successful read reports: read the state machine at (at least) `index`, on the
/// group's strand; `from_lease` tells whether the lease served it without a round trip.
struct ReadResult {
  LogIndex index = 0;
  bool from_lease = false;
};

/// A copy of a group's membership as its node sees it, taken on the strand (async_membership):
/// for code that runs elsewhere. Everything is as of one instant.
struct MembershipStatus {
  /// The configuration in force: the latest config entry in this node's log, committed or not
  /// (RaftGroup::membership()); empty on a joining node that has heard from no leader yet.
  Membership membership;
  /// The index of that entry (0: the RaftConfig lists).
  LogIndex index = 0;
  /// The configuration as of the last applied entry: what this node knows is committed.
  Membership committed;
  /// Whether index <= commit_index: the configuration in force is committed.
  bool in_force_committed = false;
  /// On a leader: whether a membership change is under way (RaftGroup::changing_membership()).
  bool changing = false;
  /// Whether this node knows it is no longer a member (RaftGroup::removed()): a runtime shuts
  /// such a node (or this group of it) down.
  bool removed = false;
  Role role = Role::follower;
  Term term = 0;
  /// The leader this node knows of (kNoNode: none).
  NodeId leader = kNoNode;
  LogIndex commit_index = 0;
  LogIndex applied_index = 0;
};

/// Options of the runtime around one group.
struct AsioGroupOptions {
  /// How often the group's timers are checked. Operation deadlines are honoured exactly anyway
  /// (the runtime also wakes at RaftGroup::next_deadline()).
  std::chrono::nanoseconds tick_interval{std::chrono::milliseconds(10)};
  /// The lease layer's configuration. Leave election_timeout_min 0: it is taken from the group's
  /// RaftConfig (a different value is refused with invalid_config).
  lease::LeaseConfig lease;
  /// Syncs the storage on the group's strand, after each input, instead of leaving it to a
  /// storage thread: for a Storage with `std::error_code sync_now()` and `WriteSeq last_seq()`
  /// that writes nothing by itself (FileStorage with background_sync = false). It saves the
  /// hand-offs between the strand and a sync thread (a third of a write's CPU in tenure-kv on
  /// tmpfs, docs/benchmarks.md) and blocks the strand for every sync: only for storage whose
  /// sync takes microseconds (tmpfs, persistent memory), never for a disk. The constructor
  /// refuses it (invalid_config) for a storage without those members.
  bool sync_inline = false;
};

/// Runs one RaftGroup on a strand of an io_context: timers become tick()s, received messages
/// become step()s (the transport calls step() on executor()), the storage's durability
/// notifications become on_persisted(), and proposals, reads and transfers are asynchronous
/// operations that take any Asio completion token (a callback, use_future, use_awaitable). Many
/// AsioGroups share one io_context and one transport (multi-raft).
///
/// Completion signatures carry a Result, so that a not_leader error keeps its leader hint:
/// - async_propose: void(Result<ProposeResult>)
/// - async_read: void(Result<ReadResult>)
/// - async_transfer_leadership: void(Result<void>)
/// - async_change_membership: void(Result<LogIndex>)
/// - async_membership: void(MembershipStatus) (never fails: it reads the group's state)
/// Every operation has a deadline (its timeout from the moment it reaches the strand) and
/// completes exactly once: with its result, timed_out, an error of the group (not_leader,
/// leadership_lost, overloaded, ...), or stopped once stop() has run. The handler runs on its
/// associated executor (the strand when it has none). A propose payload must stay valid until
/// the handler runs, as a buffer for async_write must.
///
/// Cancellation (Boost >= 1.77, kHasCancellationSlots): an operation whose handler has a
/// connected cancellation slot (bind_cancellation_slot, a coroutine's `||`, parallel_group)
/// completes with errc::cancelled (carrying the leader hint) when the slot is emitted while it
/// is pending. Reads have no side effects and honour terminal,
/// partial and total cancellation. A proposal is appended the moment it reaches the strand and a
/// transfer may already have sent TimeoutNow, so they honour terminal cancellation only: the
/// entry of a cancelled proposal may still commit (its outcome is unknown, as after timed_out),
/// and a cancelled transfer may still hand leadership over. A cancellation that arrives after the
/// operation completed does nothing; so does one emitted after the group was destroyed. Emit
/// from any thread, but (as for every Asio slot) not concurrently with the initiating call.
///
/// Thread-safety: the async_* functions, notify_persisted() and stop() may be called from any
/// thread. step(), group() and lease() belong to the strand. Allocation: each asynchronous
/// operation allocates its state with the handler's associated allocator (one allocation per
/// call, as Asio's own operations do); installing a cancellation handler lets the slot allocate
/// its storage (Asio reuses it for the slot's later operations), and an emitted cancellation
/// posts one handler to the strand. The group allocates once at construction (the registry of
/// cancellable operations) and nothing in steady state.
///
/// Lifetime: destroy the group only when nothing of it is pending (after stop() completed and
/// the strand ran dry) and nothing runs on its strand.
template <class Policies>
class AsioGroup {
 public:
  using group_type = RaftGroup<Policies>;
  /// The lease coordinator classifies errors with the policies' `error_classifier`.
  using coordinator_type =
      lease::LeaseCoordinator<group_type, typename group_type::error_classifier>;
  using executor_type = ::boost::asio::strand<::boost::asio::io_context::executor_type>;
  using clock_type = typename group_type::clock_type;
  using transport_type = typename group_type::transport_type;
  using storage_type = typename group_type::storage_type;
  using state_machine_type = typename group_type::state_machine_type;
  using time_point = typename group_type::time_point;
  using duration = typename group_type::duration;

  /// Builds the group (recovering from `storage`) and its lease coordinator. Nothing runs until
  /// start(). Throws std::system_error (invalid_config) for a bad configuration.
  AsioGroup(::boost::asio::io_context& io, const RaftConfig& config,
            const AsioGroupOptions& options, clock_type& clock, transport_type& transport,
            storage_type& storage, state_machine_type& machine)
      : strand_(::boost::asio::make_strand(io)),
        timer_(strand_),
        options_(checked(options)),
        clock_(clock),
        storage_(storage),
        group_(config, clock, transport, storage, machine),
        lease_(group_, options.lease),
        registry_(std::make_shared<detail::CancellationRegistry>()) {}

  AsioGroup(const AsioGroup&) = delete;
  AsioGroup& operator=(const AsioGroup&) = delete;

  /// Late cancellation handlers (still installed in their slots) find an empty registry.
  ~AsioGroup() { registry_->clear(); }

  /// The strand everything of this group runs on.
  executor_type executor() const noexcept { return strand_; }

  /// Starts the timers. Any thread.
  void start() {
    ::boost::asio::post(strand_, [this] {
      next_tick_ = clock_.now() + options_.tick_interval;
      rearm();
    });
  }

  /// Stops the group: every pending operation completes with stopped, later ones fail with
  /// stopped at once, the timer stops. Any thread; idempotent. The io_context may then run out
  /// of work once every connection of the transport is closed too.
  void stop() {
    ::boost::asio::post(strand_, [this] {
      stopped_ = true;
      group_.stop();
      timer_.cancel();
    });
  }

  /// A message from the transport. Strand only.
  void step(const Message& m) {
    group_.step(m);
    rearm();
  }

  /// The storage made writes durable. Any thread (FileStorage's on_durable calls it from its
  /// sync thread). Coalesced: at most one notification waits on the strand at a time.
  void notify_persisted() {
    if (!persist_posted_.exchange(true, std::memory_order_acq_rel)) {
      ::boost::asio::post(strand_, [this] {
        // An exchange, not a store: a release store may be reordered after the loads in
        // on_persisted() (store buffering). The sync thread could then see the flag still set
        // and post nothing while this handler read the durable_seq of before its write, and the
        // group would notice that write a tick late. Two read-modify-writes of the flag are
        // ordered: whichever comes second sees the first.
        persist_posted_.exchange(false, std::memory_order_acq_rel);
        group_.on_persisted();
        rearm();
      });
    }
  }

  /// The group itself, for inspection. Strand only (its LeaseProvider accessors: any thread).
  group_type& group() noexcept { return group_; }
  const group_type& group() const noexcept { return group_; }
  /// The lease coordinator (lease_read() is lock-free from any thread).
  coordinator_type& lease() noexcept { return lease_; }
  /// The group's status() (a GroupStatus value, status.hpp), taken on the strand; completes on
  /// the handler's associated executor (the strand by default). Any thread; allocates the
  /// handler's state (this is for admin endpoints, not hot paths).
  template <class CompletionToken>
  auto async_status(CompletionToken&& token) {
    return ::boost::asio::async_initiate<CompletionToken, void(GroupStatus)>(
        [this](auto handler) {
          auto work = ::boost::asio::make_work_guard(
              ::boost::asio::get_associated_executor(handler, strand_));
          ::boost::asio::post(
              strand_, [this, handler = std::move(handler), work = std::move(work)]() mutable {
                const GroupStatus status = group_.status();
                auto executor = work.get_executor();
                work.reset();
                ::boost::asio::dispatch(executor, [handler = std::move(handler), status]() mutable {
                  std::move(handler)(status);
                });
              });
        },
        token);
  }

  /// How many operations with a connected cancellation slot are pending. Strand only.
  std::size_t cancellable_pending() const noexcept { return registry_->size(); }

  /// Proposes `payload`; completes with where it committed and what the state machine returned.
  /// A write that fails with timed_out or leadership_lost after it was appended may still
  /// commit: its outcome is unknown (docs/raft.md).
  template <class CompletionToken>
  auto async_propose(std::span<const std::byte> payload, duration timeout,
                     CompletionToken&& token) {
    return ::boost::asio::async_initiate<CompletionToken, void(Result<ProposeResult>)>(
        [this, payload, timeout](auto handler) {
          launch<ProposeOp>(std::move(handler), kTerminalOnly, [this, payload, timeout](auto& op) {
            op.anchor = lease_.begin_write();
            group_.propose(op.raft_op, payload, clock_.now() + timeout);
            flush_soon();
            rearm();
          });
        },
        token);
  }

  /// Reads at `level`; completes with the index to read the state machine at.
  template <class CompletionToken>
  auto async_read(ReadLevel level, duration timeout, CompletionToken&& token) {
    return ::boost::asio::async_initiate<CompletionToken, void(Result<ReadResult>)>(
        [this, level, timeout](auto handler) {
          launch<ReadOp>(std::move(handler), kAnyCancellation, [this, level, timeout](auto& op) {
            const time_point deadline = clock_.now() + timeout;
            switch (level) {
              case ReadLevel::stale:
                op.complete(Result<ReadResult>(ReadResult{group_.applied_index(), false}));
                return;
              case ReadLevel::lease:
                op.via_lease = true;
                lease_.read(op.lease_op, deadline);
                break;
              case ReadLevel::linearizable:
                group_.read_index(op.raft_op, deadline);
                break;
            }
            flush_soon();
            rearm();
          });
        },
        token);
  }

  /// Changes the group's membership to `target` (RaftGroup::change_membership: new voters are
  /// staged as learners and promoted once caught up, through a joint configuration when more
  /// than one voter changes); completes with the index of the config entry that committed
  /// `target`. Errors as RaftGroup::change_membership: not_leader (with the hint),
  /// change_in_progress, transfer_in_progress, invalid_argument, stopped (nothing was done); or
  /// timed_out, leadership_lost, cancelled, after which the outcome is unknown (read the
  /// membership on the leader to know). Honours terminal cancellation only: a config entry may
  /// be out already. `timeout` should leave a new voter the time to catch up (a snapshot
  /// transfer, for a group with much state).
  template <class CompletionToken>
  auto async_change_membership(Membership target, duration timeout, CompletionToken&& token) {
    return async_change_membership(
        [target = std::move(target)](const Membership&) { return target; }, timeout,
        std::forward<CompletionToken>(token));
  }

  /// As above, with the target computed on the strand from the configuration in force at the
  /// moment the change starts: `edit(membership())` (e.g. "the current voters plus node 4").
  /// Two changes computed this way never undo each other, where targets computed elsewhere from
  /// an earlier reading could (the second one's target would lack the first one's node).
  /// `edit` runs once, on the strand, unless the group has stopped by then.
  template <class Edit, class CompletionToken>
  requires std::is_invocable_r_v<Membership, Edit&, const Membership&>
  auto async_change_membership(Edit edit, duration timeout, CompletionToken&& token) {
    return ::boost::asio::async_initiate<CompletionToken, void(Result<LogIndex>)>(
        [this, timeout](auto handler, Edit edit_fn) {
          launch<MembershipOp>(std::move(handler), kTerminalOnly,
                               [this, timeout, edit_fn = std::move(edit_fn)](auto& op) mutable {
                                 Membership target = edit_fn(group_.membership());
                                 group_.change_membership(op.raft_op, std::move(target),
                                                          clock_.now() + timeout);
                                 rearm();
                               });
        },
        token, std::move(edit));
  }

  /// A copy of the group's membership and leadership as of now (see MembershipStatus), taken on
  /// the strand: the thread-safe way to read them from elsewhere. Completes with stopped-time
  /// values too (a stopped group still knows its configuration).
  template <class CompletionToken>
  auto async_membership(CompletionToken&& token) {
    return ::boost::asio::async_initiate<CompletionToken, void(MembershipStatus)>(
        [this](auto handler) {
          auto* op = make_op<StatusOp<decltype(handler)>>(std::move(handler), this);
          ::boost::asio::post(strand_, [this, op] { op->complete(membership_status()); });
        },
        token);
  }

  /// The membership status now. Strand only (async_membership is the way from elsewhere).
  MembershipStatus membership_status() const {
    MembershipStatus s;
    s.membership = group_.membership();
    s.index = group_.membership_index();
    s.committed = group_.committed_membership();
    s.in_force_committed = group_.membership_index() <= group_.commit_index();
    s.changing = group_.changing_membership();
    s.removed = group_.removed();
    s.role = group_.role();
    s.term = group_.term();
    s.leader = group_.leader();
    s.commit_index = group_.commit_index();
    s.applied_index = group_.last_applied();
    return s;
  }

  /// Hands leadership to `target` (TimeoutNow); completes once it has taken over.
  template <class CompletionToken>
  auto async_transfer_leadership(NodeId target, duration timeout, CompletionToken&& token) {
    return ::boost::asio::async_initiate<CompletionToken, void(Result<void>)>(
        [this, target, timeout](auto handler) {
          launch<TransferOp>(std::move(handler), kTerminalOnly, [this, target, timeout](auto& op) {
            group_.transfer_leadership(op.raft_op, target, clock_.now() + timeout);
            rearm();
          });
        },
        token);
  }

 private:
  // The state of one asynchronous operation: the caller-owned node the core links into its
  // queues, the handler, and a work guard on the handler's executor. Freed (with the handler's
  // allocator) before the handler is invoked, as Asio requires.
  template <class Handler, class T>
  struct OpBase : detail::CancellableOperation {
    using allocator_type = typename std::allocator_traits<
        ::boost::asio::associated_allocator_t<Handler>>::template rebind_alloc<std::byte>;
    using handler_executor = ::boost::asio::associated_executor_t<Handler, executor_type>;

    OpBase(Handler&& h, AsioGroup* g)
        : handler(std::move(h)),
          work(::boost::asio::get_associated_executor(handler, g->strand_)),
          owner(g) {}

    Handler handler;
    ::boost::asio::executor_work_guard<handler_executor> work;
    AsioGroup* owner;
  };

  // How every operation begins: its state is made (with the handler's allocator), its handler's
  // cancellation slot connected, and `start(op)` runs on the strand, unless the group has
  // stopped by then, in which case the operation completes with stopped.
  template <template <class> class OpT, class Handler, class Start>
  void launch(Handler handler, unsigned cancellable, Start start) {
    auto* op = make_op<OpT<Handler>>(std::move(handler), this);
    connect_slot(*op, cancellable);
    ::boost::asio::post(strand_, [this, op, start = std::move(start)]() mutable {
      if (stopped_) {
        op->complete(errc::stopped);
        return;
      }
      registry_->add(*op);
      start(*op);
    });
  }

  template <class Op, class Handler>
  Op* make_op(Handler&& handler, AsioGroup* self) {
    using Alloc = typename std::allocator_traits<
        ::boost::asio::associated_allocator_t<Handler>>::template rebind_alloc<Op>;
    Alloc alloc(::boost::asio::get_associated_allocator(handler));
    Op* op = std::allocator_traits<Alloc>::allocate(alloc, 1);
    try {
      std::allocator_traits<Alloc>::construct(alloc, op, std::move(handler), self);
    } catch (...) {
      std::allocator_traits<Alloc>::deallocate(alloc, op, 1);
      throw;
    }
    return op;
  }

  // The cancellation types an operation honours (a bitmask of cancellation_type values; see the
  // class comment for why proposals and transfers take terminal only).
  static constexpr unsigned kTerminalOnly = 1U;     // cancellation_type::terminal
  static constexpr unsigned kAnyCancellation = 7U;  // terminal | partial | total
#if TENURE_ASIO_HAS_CANCELLATION_SLOTS
  static_assert(kTerminalOnly == static_cast<unsigned>(::boost::asio::cancellation_type::terminal));
  static_assert(kAnyCancellation ==
                static_cast<unsigned>(::boost::asio::cancellation_type::terminal |
                                      ::boost::asio::cancellation_type::partial |
                                      ::boost::asio::cancellation_type::total));
#endif

  // Installs a cancellation handler in the slot of `op`'s handler, if it has a connected one.
  // Runs in the initiating call, before the operation is posted: the strand may complete and
  // free `op` as soon as it is.
  template <class Op>
  void connect_slot([[maybe_unused]] Op& op, [[maybe_unused]] unsigned supported) {
#if TENURE_ASIO_HAS_CANCELLATION_SLOTS
    auto slot = ::boost::asio::get_associated_cancellation_slot(op.handler);
    if (slot.is_connected()) {
      op.cancel_id = registry_->next_id();
      op.cancel = &Op::on_cancel;
      slot.template emplace<Canceller>(registry_, strand_, op.cancel_id, supported);
    }
#endif
  }

#if TENURE_ASIO_HAS_CANCELLATION_SLOTS
  // What a slot calls when emitted, from whichever thread emits. It only posts: the operation
  // belongs to the strand, and may have completed (or the group gone) by the time this runs.
  struct Canceller {
    std::shared_ptr<detail::CancellationRegistry> registry;
    executor_type strand;
    std::uint64_t id;
    unsigned supported;

    void operator()(::boost::asio::cancellation_type_t type) const {
      if ((static_cast<unsigned>(type) & supported) == 0) {
        return;  // e.g. partial or total for a proposal already appended: cannot honour it
      }
      ::boost::asio::post(strand, [registry = registry, id = id] { registry->cancel(id); });
    }
  };
#endif

  // Moves the handler out, frees `op`, and dispatches the handler with `result` to its
  // executor.
  template <class Op, class R>
  static void finish(Op* op, R result) {
    op->owner->registry_->remove(*op);
    using Handler = decltype(op->handler);
    using Alloc = typename std::allocator_traits<
        ::boost::asio::associated_allocator_t<Handler>>::template rebind_alloc<Op>;
    Handler handler(std::move(op->handler));
    auto work = std::move(op->work);
    Alloc alloc(::boost::asio::get_associated_allocator(handler));
    std::allocator_traits<Alloc>::destroy(alloc, op);
    std::allocator_traits<Alloc>::deallocate(alloc, op, 1);
    auto executor = work.get_executor();
    ::boost::asio::dispatch(executor,
                            BoundHandler<Handler, R>{std::move(handler), std::move(result)});
    work.reset();
  }

  // A handler with its result bound, for dispatch. It keeps the handler's associated allocator
  // (a lambda would lose it), so that when the handler's executor is not the current one and
  // dispatch has to post, the posted operation is allocated with the allocator the caller chose.
  template <class Handler, class R>
  struct BoundHandler {
    using allocator_type = ::boost::asio::associated_allocator_t<Handler>;
    allocator_type get_allocator() const noexcept {
      return ::boost::asio::get_associated_allocator(handler);
    }
    void operator()() { std::move(handler)(std::move(result)); }

    Handler handler;
    R result;
  };

  template <class Handler>
  struct ProposeOp : OpBase<Handler, ProposeResult> {
    ProposeOp(Handler&& h, AsioGroup* g)
        : OpBase<Handler, ProposeResult>(std::move(h), g),
          raft_op(Completion<ProposeResult>{&on_done, this}) {}

    static void on_done(void* self, Result<ProposeResult> r) noexcept {
      auto* op = static_cast<ProposeOp*>(self);
      if (r) {
        op->owner->lease_.on_write_committed(op->anchor);  // lesson 5
      } else {
        op->owner->lease_.on_error(r.code());
      }
      op->complete(std::move(r));
    }
    void complete(Result<ProposeResult> r) { finish(this, std::move(r)); }
    static void on_cancel(detail::CancellableOperation& self) noexcept {
      auto& op = static_cast<ProposeOp&>(self);
      op.owner->group_.cancel(op.raft_op);
    }

    ProposeOperation raft_op;
    typename coordinator_type::WriteAnchor anchor{};
  };

  template <class Handler>
  struct ReadOp : OpBase<Handler, ReadResult> {
    ReadOp(Handler&& h, AsioGroup* g)
        : OpBase<Handler, ReadResult>(std::move(h), g),
          raft_op(Completion<LogIndex>{&on_done, this}),
          lease_op(Completion<LogIndex>{&on_done, this}) {}

    static void on_done(void* self, Result<LogIndex> r) noexcept {
      auto* op = static_cast<ReadOp*>(self);
      if (!r) {
        op->complete(Result<ReadResult>(r.error()));
        return;
      }
      const bool from_lease = op->via_lease && op->lease_op.served_by_lease();
      op->complete(Result<ReadResult>(ReadResult{r.value(), from_lease}));
    }
    void complete(Result<ReadResult> r) { finish(this, std::move(r)); }
    static void on_cancel(detail::CancellableOperation& self) noexcept {
      auto& op = static_cast<ReadOp&>(self);
      if (op.via_lease) {
        op.owner->lease_.cancel(op.lease_op);
      } else {
        op.owner->group_.cancel(op.raft_op);
      }
    }

    ReadIndexOperation raft_op;
    typename coordinator_type::ReadOperation lease_op;
    bool via_lease = false;
  };

  template <class Handler>
  struct TransferOp : OpBase<Handler, void> {
    TransferOp(Handler&& h, AsioGroup* g)
        : OpBase<Handler, void>(std::move(h), g), raft_op(Completion<void>{&on_done, this}) {}

    static void on_done(void* self, Result<void> r) noexcept {
      static_cast<TransferOp*>(self)->complete(std::move(r));
    }
    void complete(Result<void> r) { finish(this, std::move(r)); }
    static void on_cancel(detail::CancellableOperation& self) noexcept {
      auto& op = static_cast<TransferOp&>(self);
      op.owner->group_.cancel(op.raft_op);
    }

    TransferOperation raft_op;
  };

  template <class Handler>
  struct MembershipOp : OpBase<Handler, LogIndex> {
    MembershipOp(Handler&& h, AsioGroup* g)
        : OpBase<Handler, LogIndex>(std::move(h), g),
          raft_op(Completion<LogIndex>{&on_done, this}) {}

    static void on_done(void* self, Result<LogIndex> r) noexcept {
      static_cast<MembershipOp*>(self)->complete(std::move(r));
    }
    void complete(Result<LogIndex> r) { finish(this, std::move(r)); }
    static void on_cancel(detail::CancellableOperation& self) noexcept {
      auto& op = static_cast<MembershipOp&>(self);
      op.owner->group_.cancel(op.raft_op);
    }

    MembershipOperation raft_op;
  };

  // async_membership: completes on the strand right away; never registered for cancellation.
  template <class Handler>
  struct StatusOp : OpBase<Handler, MembershipStatus> {
    StatusOp(Handler&& h, AsioGroup* g) : OpBase<Handler, MembershipStatus>(std::move(h), g) {}
    void complete(MembershipStatus s) { finish(this, std::move(s)); }
  };

  // Sets the timer for the earlier of the next tick and the group's next operation deadline.
  // Adaptive batching: the group flushes (sends the appends for every proposal, one heartbeat
  // round for every read) once the strand has run the operations already queued on it, not
  // after each. Alone, an operation waits one handler hop; under load, every operation that
  // arrived meanwhile shares one append per follower and one ReadIndex round.
  void flush_soon() {
    if (flush_posted_) {
      return;
    }
    flush_posted_ = true;
    ::boost::asio::post(strand_, [this] {
      flush_posted_ = false;
      group_.flush();
      rearm();
    });
  }

  static constexpr bool kCanSyncInline = requires(storage_type & st) {
    { st.sync_now() } -> std::same_as<std::error_code>;
    { st.last_seq() } -> std::convertible_to<WriteSeq>;
  };

  static const AsioGroupOptions& checked(const AsioGroupOptions& o) {
    if (o.sync_inline && !kCanSyncInline) {
      throw std::system_error(make_error_code(errc::invalid_config),
                              "AsioGroupOptions::sync_inline: the storage has no sync_now() and "
                              "last_seq()");
    }
    return o;
  }

  // AsioGroupOptions::sync_inline: makes every write issued so far durable, on the strand, and
  // releases what waited for it; again while that issued more (a completion that proposes).
  void sync_inline() {
    if constexpr (kCanSyncInline) {
      while (!stopped_ && storage_.durable_seq() < storage_.last_seq()) {
        if (storage_.sync_now()) {
          group_.flush();  // sees the storage's error and stops the group (fail-stop)
          return;
        }
        group_.on_persisted();
      }
    }
  }

  void rearm() {
    if (options_.sync_inline) {
      sync_inline();  // every input ends here
    }
    if (stopped_) {
      return;
    }
    time_point wake = next_tick_;
    const time_point deadline = group_.next_deadline();
    if (deadline < wake) {
      wake = deadline;
    }
    if (armed_ && wake >= armed_for_) {
      return;  // already set for an earlier instant
    }
    armed_ = true;
    armed_for_ = wake;
    const auto delay = wake - clock_.now();
    timer_.expires_after(std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        delay.count() > 0 ? delay : duration::zero()));
    timer_.async_wait([this](const ::boost::system::error_code& ec) {
      if (ec == ::boost::asio::error::operation_aborted) {
        return;  // re-armed for an earlier instant, or stopped; that wait took over
      }
      armed_ = false;
      if (stopped_) {
        return;
      }
      const time_point now = clock_.now();
      if (now >= next_tick_) {
        next_tick_ = now + options_.tick_interval;
      }
      group_.tick();  // fires timers and expires every operation deadline that has passed
      rearm();
    });
  }

  executor_type strand_;
  ::boost::asio::steady_timer timer_;
  AsioGroupOptions options_;
  clock_type& clock_;
  storage_type& storage_;
  group_type group_;
  coordinator_type lease_;
  std::shared_ptr<detail::CancellationRegistry> registry_;  // shared with installed Cancellers
  std::atomic<bool> persist_posted_{false};
  time_point next_tick_{};
  time_point armed_for_{};
  bool armed_ = false;
  bool flush_posted_ = false;  // a flush_soon() handler waits on the strand
  bool stopped_ = false;
};

}  // namespace tenure::raft::asio
