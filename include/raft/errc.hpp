// tenure's errors: the codes it reports (errc) and the classes a caller acts on (ErrorClass), each
// an enum with its std::error_category, names and messages in one place.
#pragma once

#include <string>
#include <string_view>
#include <system_error>

namespace tenure::raft {

/// Every error tenure itself reports. Values are stable: they may be logged and compared across
/// versions, so new codes are only ever appended.
///
/// What a code means to a caller is expressed by the ErrorClass conditions below: test
/// `ec == ErrorClass::leadership_lost`, not individual codes, and a user's own error category can
/// declare its codes equivalent to those conditions.
enum class errc : int {
  /// This node is not the leader. The error may carry a hint naming the leader it believes in
  /// (see Error::leader_hint), so the caller can forward instead of retrying here.
  not_leader = 1,
  /// The node lost leadership while the operation was pending. For a write, the outcome is
  /// unknown: the entry may still commit under the next leader.
  leadership_lost = 2,
  /// A leadership transfer is in progress; new proposals are refused until it ends.
  transfer_in_progress = 3,
  /// The operation's deadline passed before it completed.
  timed_out = 4,
  /// A bounded queue (pending reads, uncommitted bytes, a send queue) is full. Retry later.
  overloaded = 5,
  /// The group or runtime was stopped; the operation will never complete.
  stopped = 6,
  /// Persistent state failed validation (a CRC mismatch, an impossible record). The node refuses
  /// to start rather than silently discard acknowledged data.
  corrupt_storage = 7,
  /// A configuration value is out of range or inconsistent with another.
  invalid_config = 8,
  /// An argument passed to a tenure function is invalid.
  invalid_argument = 9,
  /// A received frame is truncated, corrupted or otherwise not decodable.
  malformed_message = 10,
  /// A received frame uses a codec version this build does not understand.
  unsupported_version = 11,
  /// A durable write or sync failed. tenure treats this as fail-stop: it is never retried.
  storage_failure = 12,
  /// The caller cancelled the operation before it completed.
  cancelled = 13,
  /// No valid lease: the read cannot be served from memory right now. Serve it through ReadIndex
  /// (LeaseCoordinator::read does this by itself).
  lease_expired = 14,
  /// A leader was heard from within election_timeout_min (or the node has just started): an
  /// election now could end that leader's term while it still serves lease reads. Wait, or move
  /// leadership by a transfer (RaftGroup::campaign with CampaignMode::transfer_from_leader).
  leader_active = 15,
  /// An argument is larger than a configured limit allows: a proposal over
  /// RaftConfig::max_proposal_bytes. Sending it again will not help.
  too_large = 16,
  /// A membership change is under way (an operation pending, or a configuration entry not yet
  /// committed, or a joint configuration not yet left): one change at a time. Retry once it ends.
  change_in_progress = 17,
};

/// The enumerator's name ("not_leader"): for logs and metrics labels, where the message is
/// too long. "unknown" for a value outside the enumeration.
constexpr std::string_view to_string(errc e) noexcept {
  switch (e) {
    case errc::not_leader:
      return "not_leader";
    case errc::leadership_lost:
      return "leadership_lost";
    case errc::transfer_in_progress:
      return "transfer_in_progress";
    case errc::timed_out:
      return "timed_out";
    case errc::overloaded:
      return "overloaded";
    case errc::stopped:
      return "stopped";
    case errc::corrupt_storage:
      return "corrupt_storage";
    case errc::invalid_config:
      return "invalid_config";
    case errc::invalid_argument:
      return "invalid_argument";
    case errc::malformed_message:
      return "malformed_message";
    case errc::unsupported_version:
      return "unsupported_version";
    case errc::storage_failure:
      return "storage_failure";
    case errc::cancelled:
      return "cancelled";
    case errc::lease_expired:
      return "lease_expired";
    case errc::leader_active:
      return "leader_active";
    case errc::too_large:
      return "too_large";
    case errc::change_in_progress:
      return "change_in_progress";
  }
  return "unknown";
}

namespace detail {

class ErrcCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "tenure"; }

  std::string message(int value) const override {
    switch (static_cast<errc>(value)) {
      case errc::not_leader:
        return "not the leader";
      case errc::leadership_lost:
        return "leadership lost; the operation's outcome is unknown";
      case errc::transfer_in_progress:
        return "leadership transfer in progress";
      case errc::timed_out:
        return "deadline expired";
      case errc::overloaded:
        return "overloaded: a bounded queue is full";
      case errc::stopped:
        return "stopped";
      case errc::corrupt_storage:
        return "corrupt storage";
      case errc::invalid_config:
        return "invalid configuration";
      case errc::invalid_argument:
        return "invalid argument";
      case errc::malformed_message:
        return "malformed message";
      case errc::unsupported_version:
        return "unsupported message version";
      case errc::storage_failure:
        return "storage failure";
      case errc::cancelled:
        return "cancelled";
      case errc::lease_expired:
        return "no valid lease";
      case errc::leader_active:
        return "a leader is active: campaigning now would break its lease";
      case errc::too_large:
        return "too large for the configured limit";
      case errc::change_in_progress:
        return "a membership change is in progress";
    }
    return "unknown tenure error " + std::to_string(value);
  }
};

}  // namespace detail

/// The category of every tenure::raft::errc. A function-local static: no allocation after the
/// first call, safe to call from any thread.
inline const std::error_category& error_category() noexcept {
  static const detail::ErrcCategory category;
  return category;
}

inline std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

/// How a caller should react to an error: the three classes an ErrorClassifier policy sorts every
/// std::error_code into (lesson 9). These are std::error_conditions, so
/// `ec == ErrorClass::leadership_lost` holds for tenure's own codes of that class and for codes of
/// any category that declares itself equivalent: override `default_error_condition` (or
/// `equivalent`) in your category to return `make_error_condition(ErrorClass::...)`.
enum class ErrorClass : int {
  /// This node is not, or is no longer, the leader: not_leader, leadership_lost,
  /// transfer_in_progress. The only class that may invalidate a lease.
  leadership_lost = 1,
  /// Transient: trying again later, or elsewhere, may succeed. tenure's timed_out, overloaded,
  /// cancelled, lease_expired, leader_active and change_in_progress; from the generic category
  /// timed_out,
  /// resource_unavailable_try_again, interrupted
  /// and the connection and reachability errors a transport sees.
  retryable = 2,
  /// Trying again will not help: stopped, corrupt_storage, invalid_config, invalid_argument,
  /// malformed_message, unsupported_version, storage_failure, too_large. A classifier also puts
  /// here every
  /// code it cannot place.
  permanent = 3,
};

namespace detail {

inline bool is_retryable_generic(int value) noexcept {
  switch (static_cast<std::errc>(value)) {
    case std::errc::timed_out:
    case std::errc::resource_unavailable_try_again:
    case std::errc::interrupted:
    case std::errc::connection_refused:
    case std::errc::connection_reset:
    case std::errc::connection_aborted:
    case std::errc::not_connected:
    case std::errc::network_down:
    case std::errc::network_unreachable:
    case std::errc::network_reset:
    case std::errc::host_unreachable:
    case std::errc::broken_pipe:
      return true;
    default:
      return false;
  }
}

inline ErrorClass class_of(errc e) noexcept {
  switch (e) {
    case errc::not_leader:
    case errc::leadership_lost:
    case errc::transfer_in_progress:
      return ErrorClass::leadership_lost;
    case errc::timed_out:
    case errc::overloaded:
    case errc::cancelled:
    case errc::lease_expired:
    case errc::leader_active:
    case errc::change_in_progress:
      return ErrorClass::retryable;
    default:
      return ErrorClass::permanent;
  }
}

class ErrorClassCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "tenure.error_class"; }

  std::string message(int value) const override {
    switch (static_cast<ErrorClass>(value)) {
      case ErrorClass::leadership_lost:
        return "leadership lost";
      case ErrorClass::retryable:
        return "retryable";
      case ErrorClass::permanent:
        return "permanent";
    }
    return "unknown error class " + std::to_string(value);
  }

  // Called for `code == condition` after the code's own category declined: this is where
  // tenure's codes, and the generic codes a transport or disk reports, join a class.
  bool equivalent(const std::error_code& code, int condition) const noexcept override {
    if (code.category() == tenure::raft::error_category()) {
      return static_cast<int>(class_of(static_cast<errc>(code.value()))) == condition;
    }
    if (code.category() == std::generic_category() || code.category() == std::system_category()) {
      const auto generic = code.default_error_condition();
      if (generic.category() == std::generic_category() && is_retryable_generic(generic.value())) {
        return condition == static_cast<int>(ErrorClass::retryable);
      }
    }
    return false;
  }
};

}  // namespace detail

/// The category of ErrorClass conditions. Safe to call from any thread; no allocation.
inline const std::error_category& error_class_category() noexcept {
  static const detail::ErrorClassCategory category;
  return category;
}

inline std::error_condition make_error_condition(ErrorClass c) noexcept {
  return {static_cast<int>(c), error_class_category()};
}

}  // namespace tenure::raft

template <>
struct std::is_error_code_enum<tenure::raft::errc> : std::true_type {};

template <>
struct std::is_error_condition_enum<tenure::raft::ErrorClass> : std::true_type {};
