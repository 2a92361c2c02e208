// The ErrorClassifier policy: which errors mean "this node lost leadership" (lesson 9).
#pragma once

#include <concepts>
#include <system_error>

#include <raft/errc.hpp>

namespace tenure::raft {

/// Sorts any std::error_code into an ErrorClass, at compile time chosen by the user.
///
/// Semantics the compiler cannot check:
/// - `classify` is a pure function of the code: the same code always yields the same class;
/// - it is callable from any thread, does not block, does not allocate and does not throw;
/// - it is only asked about failures (a non-zero code).
///
/// Only codes classified `ErrorClass::leadership_lost` may invalidate the caller-side lease
/// (lease::LeaseCoordinator::on_error). The provider's own lease, the quorum-ack instant a
/// RaftGroup refreshes with every heartbeat round, is not the caller's to end: it lapses when the
/// group loses leadership, and a group revokes it itself before a transfer (to stop lease reads
/// at once for another reason, use LeaseCoordinator::revoke). A business failure
/// (a write conflict, a validation error) must land in `retryable` or `permanent`, otherwise a
/// storm of such failures keeps the lease cold forever (the conflict storm, docs/background.md).
template <class C>
concept ErrorClassifier = requires(std::error_code ec) {
  { C::classify(ec) }
  noexcept->std::same_as<ErrorClass>;
};

/// The classifier tenure uses unless told otherwise: it asks the ErrorClass conditions, so it
/// classifies tenure's own codes, generic transport errors, and every user code whose category
/// declares equivalence to an ErrorClass. Anything else is `permanent`: an unknown failure must
/// not invalidate a lease, and must not be retried blindly either.
struct DefaultErrorClassifier {
  static ErrorClass classify(std::error_code ec) noexcept {
    if (ec == ErrorClass::leadership_lost) {
      return ErrorClass::leadership_lost;
    }
    if (ec == ErrorClass::retryable) {
      return ErrorClass::retryable;
    }
    return ErrorClass::permanent;
  }
};

static_assert(ErrorClassifier<DefaultErrorClassifier>);

namespace detail {

/// Checks an ErrorClassifier policy so that the compiler names what is missing.
template <class C>
consteval bool check_error_classifier() {
  static_assert(
      requires(std::error_code ec) {
        { C::classify(ec) } -> std::same_as<ErrorClass>;
      },
      "tenure: the ErrorClassifier policy (`error_classifier`) needs "
      "`static tenure::raft::ErrorClass classify(std::error_code) noexcept`");
  static_assert(
      !requires(std::error_code ec) {
        { C::classify(ec) } -> std::same_as<ErrorClass>;
      } ||
          requires(std::error_code ec) {
            { C::classify(ec) }
            noexcept;
          },
      "tenure: the ErrorClassifier policy's `classify` must be noexcept: it runs on the read "
      "path, from any thread, and an exception there would escape a lease check");
  return ErrorClassifier<C>;
}

}  // namespace detail

}  // namespace tenure::raft
