// Result<T>: a value or an Error; an Error can carry the leader hint a not_leader answer needs.
#pragma once

#include <cassert>
#include <system_error>
#include <type_traits>
#include <utility>
#include <variant>

#include <raft/errc.hpp>
#include <raft/types.hpp>

namespace tenure::raft {

/// A failed outcome: the code, and for errors that concern leadership the best hint this node has
/// of who the leader is (lesson 3), so a caller can forward instead of piling up here.
///
/// A small value type: no allocation, trivially copyable.
struct Error {
  std::error_code code;
  /// The node this node believes leads, or kNoNode when it does not know. Set with
  /// errc::not_leader (and where known with leadership_lost and transfer_in_progress).
  NodeId leader_hint = kNoNode;

  Error() = default;
  Error(std::error_code c, NodeId hint = kNoNode) noexcept : code(c), leader_hint(hint) {}
  Error(errc e, NodeId hint = kNoNode) noexcept : code(make_error_code(e)), leader_hint(hint) {}

  /// "Not the leader; try `hint`" (kNoNode when the leader is unknown).
  static Error not_leader(NodeId hint) noexcept { return {errc::not_leader, hint}; }

  friend bool operator==(const Error&, const Error&) = default;
};

/// The outcome of an operation that produces a T: either the value or an Error.
///
/// Thread-safety: a value type; no internal synchronisation. Allocation: none beyond what T
/// itself does. `value()` on an error throws std::system_error carrying the code; every other
/// member is noexcept.
template <class T>
class [[nodiscard]] Result {
  static_assert(!std::is_same_v<std::remove_cv_t<T>, Error>, "Result<Error> is ambiguous");

 public:
  Result(const T& value) noexcept(std::is_nothrow_copy_constructible_v<T>)
      : state_(std::in_place_index<0>, value) {}
  Result(T&& value) noexcept(std::is_nothrow_move_constructible_v<T>)
      : state_(std::in_place_index<0>, std::move(value)) {}
  /// Precondition: `error.code` is a failure (non-zero).
  Result(Error error) noexcept : state_(std::in_place_index<1>, error) { assert(error.code); }
  Result(errc e) noexcept : Result(Error{e}) {}

  bool has_value() const noexcept { return state_.index() == 0; }
  explicit operator bool() const noexcept { return has_value(); }

  T& value() & { return check(), std::get<0>(state_); }
  const T& value() const& { return check(), std::get<0>(state_); }
  T&& value() && { return check(), std::get<0>(std::move(state_)); }

  /// Precondition: `!has_value()`.
  const Error& error() const noexcept { return *std::get_if<1>(&state_); }
  /// The error's code, or a default (success) code when there is a value.
  std::error_code code() const noexcept { return has_value() ? std::error_code{} : error().code; }
  /// The leader hint of the error, or kNoNode when there is a value or no hint.
  NodeId leader_hint() const noexcept { return has_value() ? kNoNode : error().leader_hint; }

 private:
  void check() const {
    if (!has_value()) {
      throw std::system_error(error().code);
    }
  }

  std::variant<T, Error> state_;
};

/// The outcome of an operation that produces nothing but success or an Error.
template <>
class [[nodiscard]] Result<void> {
 public:
  Result() noexcept = default;
  /// An Error whose code is success (zero) makes a successful Result.
  Result(Error error) noexcept : error_(error) {}
  Result(errc e) noexcept : error_(e) {}

  bool has_value() const noexcept { return !error_.code; }
  explicit operator bool() const noexcept { return has_value(); }
  /// Throws std::system_error when there is an error.
  void value() const {
    if (!has_value()) {
      throw std::system_error(error_.code);
    }
  }
  /// Precondition: `!has_value()`.
  const Error& error() const noexcept { return error_; }
  std::error_code code() const noexcept { return error_.code; }
  NodeId leader_hint() const noexcept { return error_.leader_hint; }

 private:
  Error error_;
};

}  // namespace tenure::raft
