// Leader-loss callbacks: caller-owned, O(1) to register and deregister, run synchronously and in
// registration order, with exceptions contained (lesson 7).
#pragma once

#include <cstddef>
#include <exception>
#include <type_traits>
#include <utility>

#include <boost/intrusive/list.hpp>

#include <raft/types.hpp>

namespace tenure::lease {

using raft::Term;

/// A registration for "this node stopped being leader". The caller owns the object; registering
/// links it into a list with no allocation, and destroying it unlinks it (O(1)), which also
/// releases whatever the callback captured, since the captures live in the object.
///
/// Derive from it, or use LeaderLossHandler<F> for a lambda. The callback runs on the thread that
/// reports the loss (the group's thread), synchronously, before the new role is visible to other
/// observers. It must not block. It may throw: the exception is contained and reported, and the
/// remaining callbacks still run.
///
/// Thread-safety: register, deregister and destroy on the group's thread only.
class LeaderLossCallback : public boost::intrusive::list_base_hook<
                               boost::intrusive::link_mode<boost::intrusive::auto_unlink>> {
 public:
  using Function = void (*)(LeaderLossCallback& self, Term lost_term);

  explicit LeaderLossCallback(Function function) noexcept : function_(function) {}

  // A registration has one identity: copying would not copy the registration.
  LeaderLossCallback(const LeaderLossCallback&) = delete;
  LeaderLossCallback& operator=(const LeaderLossCallback&) = delete;

  /// Whether the callback is registered.
  bool registered() const noexcept { return is_linked(); }

  /// Deregisters, O(1). Safe when not registered, and from inside a callback.
  void deregister() noexcept { unlink(); }

  /// Runs the callback (used by LeaderLossList).
  void invoke(Term lost_term) { function_(*this, lost_term); }

 private:
  Function function_;
};

/// A LeaderLossCallback that owns a callable `void(Term lost_term)`.
template <class F>
class LeaderLossHandler final : public LeaderLossCallback {
  static_assert(
      std::is_invocable_v<F&, Term>,
      "LeaderLossHandler: the callable must accept the lost term: void(tenure::raft::Term)");

 public:
  explicit LeaderLossHandler(F f) noexcept(std::is_nothrow_move_constructible_v<F>)
      : LeaderLossCallback(&call), f_(std::move(f)) {}

 private:
  static void call(LeaderLossCallback& self, Term lost_term) {
    static_cast<LeaderLossHandler&>(self).f_(lost_term);
  }

  F f_;
};

/// The list a provider or a coordinator keeps its leader-loss callbacks in.
///
/// Thread-safety: the group's thread only. Allocation: none.
class LeaderLossList {
 public:
  LeaderLossList() = default;
  LeaderLossList(const LeaderLossList&) = delete;
  LeaderLossList& operator=(const LeaderLossList&) = delete;
  ~LeaderLossList() { list_.clear(); }  // unlinks every callback; they outlive the list safely

  /// Registers `callback` at the end, O(1). A callback that is already registered (here or
  /// elsewhere) is moved to the end of this list, and counts as newly registered: during a
  /// notification it does not run again until the next one.
  void add(LeaderLossCallback& callback) noexcept {
    callback.deregister();
    list_.push_back(callback);
  }

  bool empty() const noexcept { return list_.empty(); }

  /// Runs every callback registered when the call starts, in registration order. A callback may
  /// deregister itself or any other callback, or register new ones (which run next time). When a
  /// callback throws, `on_exception(std::exception_ptr)` is called and the rest still run.
  /// Returns how many callbacks threw.
  template <class OnException>
  std::size_t notify(Term lost_term, OnException&& on_exception) noexcept {
    // Move the whole list aside and return each callback to the list just before it runs: a
    // callback that deregisters a later one removes it from `pending`, which is what we walk.
    List pending;
    pending.splice(pending.end(), list_);
    std::size_t failures = 0;
    while (!pending.empty()) {
      LeaderLossCallback& callback = pending.front();
      pending.pop_front();
      list_.push_back(callback);
      try {
        callback.invoke(lost_term);
      } catch (...) {
        ++failures;
        try {
          on_exception(std::current_exception());
        } catch (...) {  // a reporter that throws must not stop the notification either
        }
      }
    }
    return failures;
  }

 private:
  using List =
      boost::intrusive::list<LeaderLossCallback, boost::intrusive::constant_time_size<false>>;
  List list_;
};

}  // namespace tenure::lease
