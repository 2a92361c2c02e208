// LeaseState: the caller-side lease, a generation counter and an expiry, lock-free (lesson 6).
#pragma once

#include <atomic>
#include <cstdint>
#include <limits>

namespace tenure::lease {

namespace detail {

/// No-op hooks. Tests substitute a type that runs an invalidate inside an extend's windows (after
/// its generation check, or after its store) to prove the undo deterministically.
struct NoLeaseStateHooks {
  static void before_extend_store() noexcept {}
  static void after_extend_store() noexcept {}
};

}  // namespace detail

/// The lease a caller extends after quorum operations it observed (a confirmed ReadIndex round, a
/// committed write): an expiry instant and a generation counter, both atomics.
///
/// - extend(until, generation) is monotonic: a CAS loop that only ever moves the expiry later, so
///   an out-of-order completion can never shorten a lease another one extended.
/// - invalidate() always wins: it bumps the generation *before* clearing the expiry. An extend
///   that started under an older generation re-checks it after its store, and undoes its own
///   store when an invalidate came in between; so a quorum operation that succeeded just before
///   leadership was lost cannot resurrect the lease. The win is eventual by a few instructions:
///   between such a store and its undo a reader can see the stale expiry, which is why a reader
///   must also check the provider's term (LeaseCoordinator does, before and after).
///
/// Instants are nanoseconds of the lease's clock (see raft::to_nanos). `kNone` means no lease.
///
/// Thread-safety: every member may be called from any thread concurrently; lock-free.
/// Allocation: none.
template <class Hooks = detail::NoLeaseStateHooks>
class BasicLeaseState {
 public:
  static constexpr std::int64_t kNone = std::numeric_limits<std::int64_t>::min();

  /// The current generation. Capture it *before* the quorum operation whose success will extend
  /// the lease, together with the instant the lease is anchored at.
  std::uint64_t generation() const noexcept { return generation_.load(std::memory_order_acquire); }

  /// The expiry instant, or kNone.
  std::int64_t expiry() const noexcept { return expiry_.load(std::memory_order_acquire); }

  /// Whether the lease is valid at `now` (strictly before its expiry).
  bool valid_at(std::int64_t now) const noexcept { return now < expiry(); }

  /// Extends the lease to `until` unless the generation has moved past `generation` (the value
  /// captured before the quorum operation). Never moves the expiry backwards. Returns whether the
  /// lease now reaches `until` under that generation.
  bool extend(std::int64_t until, std::uint64_t generation) noexcept {
    if (generation_.load(std::memory_order_acquire) != generation) {
      return false;
    }
    Hooks::before_extend_store();
    std::int64_t current = expiry_.load(std::memory_order_acquire);
    while (current < until) {
      if (expiry_.compare_exchange_weak(current, until, std::memory_order_acq_rel,
                                        std::memory_order_acquire)) {
        Hooks::after_extend_store();
        if (generation_.load(std::memory_order_seq_cst) != generation) {
          // An invalidate ran between our check and our store: take our store back. Only an
          // expiry equal to ours is removed; a later extend under the new generation to another
          // instant is left alone (one to the very same instant is removed too: conservative).
          std::int64_t ours = until;
          expiry_.compare_exchange_strong(ours, kNone, std::memory_order_acq_rel);
          return false;
        }
        return true;
      }
    }
    return generation_.load(std::memory_order_acquire) == generation;
  }

  /// Ends the lease. The generation is bumped first, so every extend that captured an older one
  /// either fails its first check or undoes its store.
  void invalidate() noexcept {
    generation_.fetch_add(1, std::memory_order_seq_cst);
    expiry_.store(kNone, std::memory_order_seq_cst);
  }

 private:
  std::atomic<std::uint64_t> generation_{1};
  std::atomic<std::int64_t> expiry_{kNone};
};

/// The lease state every LeaseCoordinator uses.
using LeaseState = BasicLeaseState<>;

}  // namespace tenure::lease
