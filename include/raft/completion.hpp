// Completion<T>: how a caller-owned operation learns its outcome without a heap-allocated callback.
#pragma once

#include <raft/result.hpp>

namespace tenure::raft {

/// A function pointer and a context pointer: the completion of a caller-owned operation.
///
/// tenure owns no callback on the heap (docs/design.md, "Hot paths allocate nothing"): the caller
/// owns the operation object, which embeds a Completion pointing back at itself, and the group
/// calls it exactly once when the operation ends. The function must not throw and must not block;
/// it runs on the thread that completes the operation (the group's thread).
///
/// Thread-safety: a value; copying it is trivial. Allocation: none.
template <class T>
struct Completion {
  using Function = void (*)(void* context, Result<T> outcome) noexcept;

  Function function = nullptr;
  void* context = nullptr;

  void operator()(Result<T> outcome) const noexcept { function(context, std::move(outcome)); }
  explicit operator bool() const noexcept { return function != nullptr; }
};

}  // namespace tenure::raft
