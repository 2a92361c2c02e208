// KvOperation: one client operation on a key-value store, as a linearizability checker sees it.
//
// Kept apart from the checker (<raft/testing/linearizability.hpp>) so that a simulator or a
// load generator can record histories without compiling the search.
#pragma once

#include <cstdint>
#include <limits>
#include <string>

namespace tenure::raft::testing {

/// What a client asked the store to do.
enum class KvOpKind : std::uint8_t {
  put,  ///< write `value`
  get,  ///< read; the answer is `observed`
  del,  ///< make the key absent
  cas,  ///< write `value` if the current value equals `expected`
};

/// The value of an absent key ("no value"): a read of a key never written, or deleted, observes
/// it, and a cas whose `expected` is kAbsent expects the key to be absent. Never a value a put or
/// a cas writes.
inline constexpr std::int64_t kAbsent = std::numeric_limits<std::int64_t>::min();

/// What the client learned about the operation's effect.
enum class KvOutcome : std::uint8_t {
  /// It took effect (a cas may still have found another value: see `cas_succeeded`), between
  /// `call` and `ret`.
  ok,
  /// It certainly did not take effect, e.g. refused with not_leader before it was appended. The
  /// checker drops it.
  failed,
  /// It may or may not have taken effect, at any instant after `call`: a write that timed out or
  /// saw leadership_lost after it may have been appended. An ambiguous read carries no
  /// information; the checker drops it.
  ambiguous,
};

/// One operation of a client history. Times are true (simulated or wall) time in nanoseconds
/// from any common origin; a client that waits for each answer before its next call produces
/// operations that never overlap, but nothing here requires that.
///
/// A plain aggregate: no allocation, no invariants enforced on construction (the checker
/// validates what it is given and says what is wrong).
struct KvOperation {
  std::uint64_t client = 0;  ///< informational: who issued it (shown in reports)
  KvOpKind kind = KvOpKind::get;
  std::uint64_t key = 0;
  std::int64_t value = kAbsent;     ///< put/cas: the value written; never kAbsent
  std::int64_t expected = kAbsent;  ///< cas: the value expected (kAbsent: expects the key absent)
  std::int64_t call = 0;            ///< invocation instant
  std::int64_t ret = 0;             ///< response instant, >= call; ignored when ambiguous
  KvOutcome outcome = KvOutcome::ok;
  std::int64_t observed = kAbsent;  ///< get with outcome ok: the value read
  bool cas_succeeded = false;       ///< cas with outcome ok: whether it took effect
  /// Informational: 0 linearizable (ReadIndex), 1 lease, 2 stale. Stale reads are not
  /// linearizable by design; leave them out of a history given to the checker, which checks
  /// every operation it is given whatever its level.
  std::uint8_t read_level = 0;
};

inline constexpr const char* to_string(KvOpKind kind) noexcept {
  switch (kind) {
    case KvOpKind::put:
      return "put";
    case KvOpKind::get:
      return "get";
    case KvOpKind::del:
      return "del";
    case KvOpKind::cas:
      return "cas";
  }
  return "invalid-kind";
}

inline constexpr const char* to_string(KvOutcome outcome) noexcept {
  switch (outcome) {
    case KvOutcome::ok:
      return "ok";
    case KvOutcome::failed:
      return "failed";
    case KvOutcome::ambiguous:
      return "ambiguous";
  }
  return "invalid-outcome";
}

/// A value as reports print it: the number, or "absent".
inline std::string kv_value_to_string(std::int64_t value) {
  return value == kAbsent ? std::string("absent") : std::to_string(value);
}

/// One line, e.g. `client 2 cas(k=7, 3 -> 4) -> false [1500, 2100] ok` or
/// `client 1 put(k=7, 5) [900, ?] ambiguous`. Allocates the returned string.
inline std::string to_string(const KvOperation& op) {
  std::string s = "client " + std::to_string(op.client) + " " + to_string(op.kind) +
                  "(k=" + std::to_string(op.key);
  switch (op.kind) {
    case KvOpKind::put:
      s += ", " + kv_value_to_string(op.value) + ")";
      break;
    case KvOpKind::get:
      s += ")";
      if (op.outcome == KvOutcome::ok) {
        s += " -> " + kv_value_to_string(op.observed);
      }
      break;
    case KvOpKind::del:
      s += ")";
      break;
    case KvOpKind::cas:
      s += ", " + kv_value_to_string(op.expected) + " -> " + kv_value_to_string(op.value) + ")";
      if (op.outcome == KvOutcome::ok) {
        s += op.cas_succeeded ? " -> true" : " -> false";
      }
      break;
  }
  s += " [" + std::to_string(op.call) + ", ";
  s += op.outcome == KvOutcome::ambiguous ? std::string("?") : std::to_string(op.ret);
  s += "] ";
  s += to_string(op.outcome);
  if (op.read_level != 0) {
    s += " (read level " + std::to_string(op.read_level) + ")";
  }
  return s;
}

}  // namespace tenure::raft::testing
