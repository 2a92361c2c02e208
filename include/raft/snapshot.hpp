// Snapshots: what one covers, and what a state machine and a storage offer to take, keep, send and
// install them (docs/raft.md, "Snapshots").
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include <raft/membership.hpp>
#include <raft/types.hpp>

namespace tenure::raft {

/// What a snapshot covers: every entry up to `index` (whose term is `term`), applied, with the
/// membership configuration in force there; `size` bytes of state-machine state.
struct SnapshotMeta {
  LogIndex index = 0;
  Term term = 0;
  /// The membership configuration in force at `index` (the latest config entry at or before it).
  Membership membership;
  /// Bytes of state.
  std::uint64_t size = 0;

  friend bool operator==(const SnapshotMeta&, const SnapshotMeta&) = default;
};

/// A StateMachine that can save its state as of its last applied index and restore from such a
/// save, streamed in chunks so that neither side needs a whole snapshot in memory at once.
///
/// Requirements the compiler checks (a type with any of these members means to support
/// snapshots, and detail::check_snapshot_state_machine then names whichever is missing):
///
// clang-format off
/// | member                                                       | meaning                                                            |
/// |--------------------------------------------------------------|--------------------------------------------------------------------|
/// | `using snapshot_reader = ...`                                | what begin_snapshot() returns                                      |
/// | `snapshot_reader begin_snapshot()`                           | captures the state as of the last applied entry                    |
/// | `std::size_t snapshot_reader::read(std::span<std::byte> out)` | the next bytes of that state, up to `out.size()`; 0 once all read |
/// | `void begin_restore()`                                       | starts building a new state aside, from an empty one               |
/// | `bool restore_chunk(std::span<const std::byte>)`             | the next bytes of a snapshot; false: malformed                     |
/// | `bool finish_restore()`                                      | replaces the state with the one built; false: malformed, old kept  |
/// | `void abort_restore()`                                       | drops the state being built; the old one is kept                   |
// clang-format on
///
/// Semantics it cannot check:
/// - begin_snapshot() is called on the group's thread and must be quick (a copy-on-write handle,
///   or a copy of a small state): the group reads the reader a chunk per tick while it goes on
///   applying, and the reader must keep yielding the state as of its capture, whatever is
///   applied meanwhile. The bytes are the state machine's own format, opaque to tenure;
/// - restoring the bytes a reader yielded gives the same state (and the same future results of
///   apply) as the state it captured; the state must not change until finish_restore(), which
///   swaps in the new state as one step;
/// - all of it runs on the group's thread, and none of it throws.
template <class M>
concept SnapshotStateMachine = requires(M& m, typename M::snapshot_reader& reader,
                                        std::span<std::byte> out, std::span<const std::byte> in) {
  typename M::snapshot_reader;
  { m.begin_snapshot() } -> std::same_as<typename M::snapshot_reader>;
  { reader.read(out) } -> std::same_as<std::size_t>;
  { m.begin_restore() } -> std::same_as<void>;
  { m.restore_chunk(in) } -> std::same_as<bool>;
  { m.finish_restore() } -> std::same_as<bool>;
  { m.abort_restore() } -> std::same_as<void>;
};

/// A Storage that keeps snapshots: one being written at a time, and the newest finished one. A
/// type with any of these members means to support snapshots, and detail::check_snapshot_storage
/// then names whichever is missing.
///
// clang-format off
/// | member                                                                     | meaning                                                                |
/// |----------------------------------------------------------------------------|------------------------------------------------------------------------|
/// | `void begin_snapshot(const SnapshotMeta&)`                                 | starts writing a snapshot (drops one unfinished)                       |
/// | `void write_snapshot(std::span<const std::byte>)`                          | appends its next bytes                                                 |
/// | `WriteSeq finish_snapshot()`                                               | it becomes the snapshot, durable once `durable_seq()` reaches the result |
/// | `void abort_snapshot()`                                                    | drops the one being written                                            |
/// | `std::optional<SnapshotMeta> snapshot() const`                             | the newest finished snapshot                                           |
/// | `std::size_t read_snapshot(std::uint64_t offset, std::span<std::byte> out) const` | its bytes from `offset`, up to `out.size()`; fewer only at its end |
/// | `WriteSeq reset_log(LogIndex index, Term term)`                            | drops every entry; the log restarts after `index` (term `term`)        |
// clang-format on
///
/// Semantics: finish_snapshot() and reset_log() are writes like the others, durable in issue
/// order. After a crash, snapshot() is the newest snapshot whose finish was durable, never one
/// half written; compact() never drops an entry that the durable snapshot does not cover (the
/// core only compacts below it). `begin_snapshot` replaces nothing that exists until
/// `finish_snapshot`.
template <class S>
concept SnapshotStorage = requires(S& s, const S& cs, const SnapshotMeta& meta,
                                   std::span<const std::byte> in, std::span<std::byte> out,
                                   std::uint64_t offset, LogIndex index, Term term) {
  { s.begin_snapshot(meta) } -> std::same_as<void>;
  { s.write_snapshot(in) } -> std::same_as<void>;
  { s.finish_snapshot() } -> std::same_as<std::uint64_t>;
  { s.abort_snapshot() } -> std::same_as<void>;
  { cs.snapshot() } -> std::same_as<std::optional<SnapshotMeta>>;
  { cs.read_snapshot(offset, out) } -> std::same_as<std::size_t>;
  { s.reset_log(index, term) } -> std::same_as<std::uint64_t>;
};

namespace detail {

template <class M>
concept MeansSnapshotStateMachine = requires {
  typename M::snapshot_reader;
}
|| requires {
  &M::begin_snapshot;
}
|| requires {
  &M::begin_restore;
}
|| requires {
  &M::restore_chunk;
}
|| requires {
  &M::finish_restore;
}
|| requires {
  &M::abort_restore;
};

/// A state machine with any SnapshotStateMachine member means to support snapshots: a member
/// missing or mistyped would otherwise turn snapshots off without a word. Names what is missing.
template <class M>
consteval bool check_snapshot_state_machine() {
  if constexpr (MeansSnapshotStateMachine<M>) {
    static_assert(
        requires { typename M::snapshot_reader; },
        "tenure: a StateMachine with snapshots needs a nested `snapshot_reader` type");
    if constexpr (requires { typename M::snapshot_reader; }) {
      static_assert(
          requires(M & m) {
            { m.begin_snapshot() } -> std::same_as<typename M::snapshot_reader>;
          },
          "tenure: a StateMachine with snapshots needs `snapshot_reader begin_snapshot()`");
      static_assert(
          requires(typename M::snapshot_reader & r, std::span<std::byte> out) {
            { r.read(out) } -> std::same_as<std::size_t>;
          },
          "tenure: a StateMachine's `snapshot_reader` needs "
          "`std::size_t read(std::span<std::byte>)`");
    }
    static_assert(
        requires(M & m) {
          { m.begin_restore() } -> std::same_as<void>;
        },
        "tenure: a StateMachine with snapshots needs `void begin_restore()`");
    static_assert(
        requires(M & m, std::span<const std::byte> in) {
          { m.restore_chunk(in) } -> std::same_as<bool>;
        },
        "tenure: a StateMachine with snapshots needs "
        "`bool restore_chunk(std::span<const std::byte>)`");
    static_assert(
        requires(M & m) {
          { m.finish_restore() } -> std::same_as<bool>;
        },
        "tenure: a StateMachine with snapshots needs `bool finish_restore()`");
    static_assert(
        requires(M & m) {
          { m.abort_restore() } -> std::same_as<void>;
        },
        "tenure: a StateMachine with snapshots needs `void abort_restore()`");
    return SnapshotStateMachine<M>;
  }
  return true;
}

template <class S>
concept MeansSnapshotStorage = requires {
  &S::begin_snapshot;
}
|| requires {
  &S::write_snapshot;
}
|| requires {
  &S::finish_snapshot;
}
|| requires {
  &S::abort_snapshot;
}
|| requires {
  &S::snapshot;
}
|| requires {
  &S::read_snapshot;
}
|| requires {
  &S::reset_log;
};

/// A storage with any SnapshotStorage member means to keep snapshots. Names what is missing.
template <class S>
consteval bool check_snapshot_storage() {
  if constexpr (MeansSnapshotStorage<S>) {
    static_assert(
        requires(S & s, const SnapshotMeta& meta) {
          { s.begin_snapshot(meta) } -> std::same_as<void>;
        },
        "tenure: a Storage with snapshots needs `void begin_snapshot(const SnapshotMeta&)`");
    static_assert(
        requires(S & s, std::span<const std::byte> in) {
          { s.write_snapshot(in) } -> std::same_as<void>;
        },
        "tenure: a Storage with snapshots needs `void write_snapshot(std::span<const std::byte>)`");
    static_assert(
        requires(S & s) {
          { s.finish_snapshot() } -> std::same_as<std::uint64_t>;
        },
        "tenure: a Storage with snapshots needs `WriteSeq finish_snapshot()`");
    static_assert(
        requires(S & s) {
          { s.abort_snapshot() } -> std::same_as<void>;
        },
        "tenure: a Storage with snapshots needs `void abort_snapshot()`");
    static_assert(
        requires(const S& s) {
          { s.snapshot() } -> std::same_as<std::optional<SnapshotMeta>>;
        },
        "tenure: a Storage with snapshots needs `std::optional<SnapshotMeta> snapshot() const`");
    static_assert(
        requires(const S& s, std::uint64_t offset, std::span<std::byte> out) {
          { s.read_snapshot(offset, out) } -> std::same_as<std::size_t>;
        },
        "tenure: a Storage with snapshots needs "
        "`std::size_t read_snapshot(std::uint64_t offset, std::span<std::byte>) const`");
    static_assert(
        requires(S & s, LogIndex index, Term term) {
          { s.reset_log(index, term) } -> std::same_as<std::uint64_t>;
        },
        "tenure: a Storage with snapshots needs `WriteSeq reset_log(LogIndex, Term)`");
    return SnapshotStorage<S>;
  }
  return true;
}

}  // namespace detail

}  // namespace tenure::raft
