// The pending operations of one AsioGroup that an Asio cancellation slot may withdraw, found by
// id rather than by address.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include <boost/intrusive/set.hpp>

namespace tenure::raft::asio::detail {

/// One pending operation that a cancellation slot may withdraw. Linked into its group's
/// CancellationRegistry (on the group's strand) from the moment it starts until it completes.
struct CancellableOperation : ::boost::intrusive::set_base_hook<
                                  ::boost::intrusive::link_mode<::boost::intrusive::safe_link>> {
  /// Withdraws the operation from the group, which then completes it with errc::cancelled (and
  /// unlinks it). Runs on the strand.
  using CancelFn = void (*)(CancellableOperation&) noexcept;

  std::uint64_t cancel_id = 0;  // 0: no slot was connected; never linked
  CancelFn cancel = nullptr;
};

/// Ids of pending cancellable operations, on one group's strand.
///
/// Why ids and not pointers: a slot's cancellation handler stays installed after its operation
/// completes (until the slot is reused or its signal destroyed), so a late emit must not reach
/// freed memory, nor a newer operation that happens to occupy the same address. An id is never
/// reused (64 bits), and lookup goes through the registry, which only holds live operations.
///
/// Lifetime: the group owns the registry through a shared_ptr, and every installed cancellation
/// handler holds a copy, so a handler that fires after the group is gone finds an empty registry
/// (the group's destructor clears it) rather than a dangling one.
///
/// Thread-safety: none of its own; everything but next_id() runs on the group's strand (or in
/// the group's destructor, when nothing runs there). Allocation: none (intrusive).
class CancellationRegistry {
 public:
  CancellationRegistry() = default;
  CancellationRegistry(const CancellationRegistry&) = delete;
  CancellationRegistry& operator=(const CancellationRegistry&) = delete;
  ~CancellationRegistry() { set_.clear(); }

  /// A fresh id. Any thread (initiating functions run on the caller's thread).
  std::uint64_t next_id() noexcept { return next_.fetch_add(1, std::memory_order_relaxed); }

  /// Links `op` if it carries an id. O(log n).
  void add(CancellableOperation& op) {
    if (op.cancel_id != 0) {
      set_.insert_unique(op);
    }
  }

  /// Unlinks `op` if it is linked. O(1) amortised.
  void remove(CancellableOperation& op) noexcept {
    if (op.is_linked()) {
      set_.erase(set_.iterator_to(op));
    }
  }

  /// Withdraws the operation with `id` if it is still pending; otherwise does nothing.
  void cancel(std::uint64_t id) noexcept {
    const auto it = set_.find(id, IdLess{});
    if (it != set_.end()) {
      CancellableOperation& op = *it;
      op.cancel(op);  // completes it, which unlinks it: `it` is not used again
    }
  }

  /// Unlinks everything (the group is going away).
  void clear() noexcept { set_.clear(); }

  /// How many cancellable operations are pending (for tests).
  std::size_t size() const noexcept { return set_.size(); }

 private:
  struct IdLess {
    bool operator()(const CancellableOperation& a, const CancellableOperation& b) const noexcept {
      return a.cancel_id < b.cancel_id;
    }
    bool operator()(std::uint64_t a, const CancellableOperation& b) const noexcept {
      return a < b.cancel_id;
    }
    bool operator()(const CancellableOperation& a, std::uint64_t b) const noexcept {
      return a.cancel_id < b;
    }
  };

  ::boost::intrusive::set<CancellableOperation, ::boost::intrusive::compare<IdLess>> set_;
  std::atomic<std::uint64_t> next_{1};
};

}  // namespace tenure::raft::asio::detail
