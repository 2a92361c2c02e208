// The Storage policy: the Raft log and hard state, written now and durable later.
#pragma once

#include <concepts>
#include <cstdint>
#include <span>
#include <system_error>

#include <raft/message.hpp>
#include <raft/result.hpp>
#include <raft/types.hpp>

namespace tenure::raft {

/// What a node must remember across a crash besides its log (Raft paper, Figure 2).
struct HardState {
  Term term = 0;
  NodeId vote = kNoNode;
  /// A lower bound on the commit index; lets a restarted node apply without waiting for a leader.
  LogIndex commit = 0;

  friend bool operator==(const HardState&, const HardState&) = default;
};

/// A sequence number of a storage write: how a Storage tells the group, later, which of its writes
/// are durable. 0 means "no write".
///
/// The contract, numbered so that docs and checks can name a rule:
/// 1. **Non-decreasing.** Each write (`append`, `truncate_suffix`, `save_hard_state`, and the
///    SnapshotStorage writes that return one) returns a number no smaller than any the storage
///    returned before. Numbers need not be consecutive, and one number may cover several writes:
///    a storage that makes a batch durable together may give every write in it the batch's
///    number. Unique numbers are the simple choice.
/// 2. **A prefix.** `durable_seq()` is the largest N such that every write numbered N or less is
///    durable (survives a crash of the process and of the machine: fsync'd, or the equivalent),
///    together with every write issued before it. Writes are never durable out of order as far
///    as the group can tell.
/// 3. **Never backwards.** `durable_seq()` never decreases, including across a concurrent storage
///    thread's updates (an atomic, read with acquire ordering).
/// 4. **Not ahead of the writes.** A write is durable when `durable_seq()` reaches its number:
///    a storage that is durable at once (MemoryStorage) returns a number its `durable_seq()`
///    already reports; one that syncs later returns a number above it.
/// 5. **`on_persisted()` is for latency, not correctness.** Every input of the group (tick(),
///    step(), flush()) reads `durable_seq()` and releases what waited for it, so a storage that
///    never calls RaftGroup::on_persisted() is still correct; calling it (on the group's thread)
///    right after `durable_seq()` moves releases held-back votes and acknowledgements at once
///    instead of at the next input. Extra calls are harmless.
/// 6. **Failure is final.** A write that cannot be made durable makes `error()` non-zero for good
///    and `durable_seq()` stops short of it; the group stops at its next input (fail-stop: a
///    failed fsync is never retried, since the page cache may already have dropped the data).
///
/// RaftGroup checks rules 1 and 3 at run time (one comparison each) and stops with
/// errc::storage_failure when a storage breaks them (see RaftGroup::failure()): acknowledging a
/// write that a storage took back could lose a committed entry.
using WriteSeq = std::uint64_t;

/// The log and hard state of one group.
///
/// Writes (`append`, `truncate_suffix`, `save_hard_state`) take effect at once for readers (the
/// next `entry`, `term_at`, `last_index` see them) and become durable later, asynchronously, in
/// issue order: each returns a WriteSeq, and `durable_seq()` is the newest durable one. The core
/// never waits: it holds back whatever must not leave before durability (a vote, an append
/// acknowledgement) and releases it when told via RaftGroup::on_persisted(). This is how a leader
/// keeps replicating while its own disk syncs. The rules of the numbers are WriteSeq's, above
/// (docs/design.md, "Storage").
///
/// Requirements the compiler checks are the members below. Semantics it cannot check:
/// - `first_index()` is the first entry present; `last_index()` the last; an empty log has
///   `first_index() == last_index() + 1`. `term_at(first_index() - 1)` is the term of the entry
///   the log was compacted through (or of the snapshot); other indexes outside
///   `[first_index(), last_index()]` answer errc::invalid_argument.
/// - `entry(i)` requires `first_index() <= i <= last_index()`; the view (its payload) stays valid
///   until the next write or compaction.
/// - `append` takes entries whose indexes continue `last_index()` without a gap (the core
///   truncates first where they conflict); it copies the payloads.
/// - `truncate_suffix(i)` removes entries `>= i`; the core never truncates committed entries.
/// - `compact(i)` forgets entries `<= i` (the core only compacts applied entries); it is not a
///   durability barrier and returns nothing.
/// - A fresh, empty storage has `first_index() == 1`, `last_index() == 0`, a zero HardState.
/// - `durable_seq()` and the numbers writes return follow WriteSeq's rules (above). An `append`
///   of no entries or a `truncate_suffix` that removes nothing is still a write (it may return
///   the previous number). A write that fails makes `error()` non-zero for good; the group then
///   stops (fail-stop: a failed fsync is never retried).
/// - Called only from the group's thread, except `durable_seq()`, which a storage thread may
///   advance concurrently (it must be an atomic load).
template <class S>
concept Storage = requires(S& s, const S& cs, LogIndex index, std::span<const EntryView> entries,
                           const HardState& hard_state) {
  { cs.first_index() }
  noexcept->std::same_as<LogIndex>;
  { cs.last_index() }
  noexcept->std::same_as<LogIndex>;
  { cs.term_at(index) }
  noexcept->std::same_as<Result<Term>>;
  { cs.entry(index) }
  noexcept->std::same_as<EntryView>;
  { cs.hard_state() }
  noexcept->std::same_as<HardState>;
  { s.append(entries) } -> std::same_as<WriteSeq>;
  { s.truncate_suffix(index) } -> std::same_as<WriteSeq>;
  { s.save_hard_state(hard_state) } -> std::same_as<WriteSeq>;
  { s.compact(index) } -> std::same_as<void>;
  { cs.durable_seq() }
  noexcept->std::same_as<WriteSeq>;
  { cs.error() }
  noexcept->std::same_as<std::error_code>;
};

namespace detail {

/// Checks a Storage policy member by member so that the compiler names what is missing.
template <class S>
consteval bool check_storage() {
  static_assert(
      requires(const S& s) {
        { s.first_index() }
        noexcept->std::same_as<LogIndex>;
        { s.last_index() }
        noexcept->std::same_as<LogIndex>;
      },
      "tenure: the Storage policy needs `LogIndex first_index() const noexcept` and "
      "`LogIndex last_index() const noexcept`");
  static_assert(
      requires(const S& s, LogIndex i) {
        { s.term_at(i) }
        noexcept->std::same_as<Result<Term>>;
      },
      "tenure: the Storage policy needs `Result<Term> term_at(LogIndex) const noexcept`");
  static_assert(
      requires(const S& s, LogIndex i) {
        { s.entry(i) }
        noexcept->std::same_as<EntryView>;
      },
      "tenure: the Storage policy needs `EntryView entry(LogIndex) const noexcept`");
  static_assert(
      requires(const S& s) {
        { s.hard_state() }
        noexcept->std::same_as<HardState>;
      },
      "tenure: the Storage policy needs `HardState hard_state() const noexcept`");
  static_assert(
      requires(S & s, std::span<const EntryView> e) {
        { s.append(e) } -> std::same_as<WriteSeq>;
      },
      "tenure: the Storage policy needs `WriteSeq append(std::span<const EntryView>)`");
  static_assert(
      requires(S & s, LogIndex i) {
        { s.truncate_suffix(i) } -> std::same_as<WriteSeq>;
      },
      "tenure: the Storage policy needs `WriteSeq truncate_suffix(LogIndex)`");
  static_assert(
      requires(S & s, const HardState& h) {
        { s.save_hard_state(h) } -> std::same_as<WriteSeq>;
      },
      "tenure: the Storage policy needs `WriteSeq save_hard_state(const HardState&)`");
  static_assert(
      requires(S & s, LogIndex i) {
        { s.compact(i) } -> std::same_as<void>;
      },
      "tenure: the Storage policy needs `void compact(LogIndex)`");
  static_assert(
      requires(const S& s) {
        { s.durable_seq() }
        noexcept->std::same_as<WriteSeq>;
      },
      "tenure: the Storage policy needs `WriteSeq durable_seq() const noexcept` (asynchronous "
      "completion: the newest durable write)");
  static_assert(
      requires(const S& s) {
        { s.error() }
        noexcept->std::same_as<std::error_code>;
      },
      "tenure: the Storage policy needs `std::error_code error() const noexcept` (fail-stop)");
  return Storage<S>;
}

}  // namespace detail

}  // namespace tenure::raft
