// The StateMachine policy: the user's code that committed entries are applied to.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>

#include <raft/types.hpp>

namespace tenure::raft {

/// The user's replicated state machine.
///
/// `apply(index, payload)` is called once per committed normal entry, in log order, on the
/// group's thread. Its return value is a result word handed to the proposer's completion
/// (ProposeResult::result), e.g. whether a compare-and-set took effect; the payload view is valid
/// only during the call.
///
/// Semantics the compiler cannot check:
/// - deterministic: the same entries in the same order produce the same state and results on
///   every node (no clocks, no randomness, no I/O that can differ);
/// - it does not block for long: the group applies synchronously;
/// - exceptions are not expected; one that escapes stops the group (a state machine that cannot
///   apply a committed entry cannot continue safely).
/// A state machine that can also save and restore its state satisfies SnapshotStateMachine
/// (snapshot.hpp) as well, and the group then takes, sends and installs snapshots.
template <class M>
concept StateMachine = requires(M& m, LogIndex index, std::span<const std::byte> payload) {
  { m.apply(index, payload) } -> std::same_as<std::uint64_t>;
};

namespace detail {

template <class M>
consteval bool check_state_machine() {
  static_assert(
      requires(M & m, LogIndex i, std::span<const std::byte> p) {
        { m.apply(i, p) } -> std::same_as<std::uint64_t>;
      },
      "tenure: the StateMachine policy needs "
      "`std::uint64_t apply(LogIndex, std::span<const std::byte>)`");
  return StateMachine<M>;
}

}  // namespace detail

}  // namespace tenure::raft
