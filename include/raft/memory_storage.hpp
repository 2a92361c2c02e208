// MemoryStorage: the Storage policy that keeps the log in memory, in rings that are reused.
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <system_error>
#include <vector>

#include <raft/errc.hpp>
#include <raft/message.hpp>
#include <raft/result.hpp>
#include <raft/snapshot.hpp>
#include <raft/storage.hpp>
#include <raft/types.hpp>

namespace tenure::raft {

/// An in-memory log and hard state: for tests, simulations, and groups whose durability comes
/// from elsewhere.
///
/// Entries live in two rings, one of fixed-size records and one of payload bytes, that grow by
/// doubling only when the live log outgrows them. Compaction releases the front of both, so a
/// long run with a bounded live log (applied entries compacted) reuses the same memory and
/// allocates nothing in steady state.
///
/// Durability: by default every write is durable when it returns. With `manual_sync`, writes
/// become durable only when `sync()` (or `sync_through(seq)`, a prefix) is called, which lets a
/// test or simulation hold a leader's own append in flight while it keeps replicating (the
/// asynchronous completion of the Storage concept), then call RaftGroup::on_persisted(). In that
/// mode `crash()` loses every write that is not durable yet, as a power failure would: it keeps
/// an undo journal of non-durable writes (allocating as it grows; simulations only).
///
/// Thread-safety: one thread (the group's), except durable_seq(), an atomic load. Allocation:
/// only when a ring grows. Errors: none of its own; `fail(ec)` injects a failure for tests.
class MemoryStorage {
 public:
  struct Options {
    /// Writes stay non-durable until sync() (default: durable at once).
    bool manual_sync = false;
    /// Initial capacity of the entry ring, in entries (rounded up to a power of two).
    std::size_t initial_entries = 1024;
    /// Initial capacity of the payload ring, in bytes.
    std::size_t initial_bytes = std::size_t{1} << 20;
  };

  MemoryStorage() : MemoryStorage(Options{}) {}
  explicit MemoryStorage(Options options)
      : manual_sync_(options.manual_sync),
        metas_(std::bit_ceil(std::max<std::size_t>(options.initial_entries, 16))),
        bytes_(std::max<std::size_t>(options.initial_bytes, 64)) {}

  MemoryStorage(const MemoryStorage&) = delete;
  MemoryStorage& operator=(const MemoryStorage&) = delete;

  // --- reading ---------------------------------------------------------------------------------
  LogIndex first_index() const noexcept { return first_index_; }
  LogIndex last_index() const noexcept { return first_index_ + count_ - 1; }

  Result<Term> term_at(LogIndex index) const noexcept {
    if (index + 1 == first_index_) {
      return compacted_term_;
    }
    if (index < first_index_ || index > last_index()) {
      return errc::invalid_argument;
    }
    return meta(index).term;
  }

  EntryView entry(LogIndex index) const noexcept {
    assert(index >= first_index_ && index <= last_index());
    const Meta& m = meta(index);
    const std::size_t pos = static_cast<std::size_t>(m.offset % bytes_.size());
    return EntryView{m.term, index, m.type,
                     std::span<const std::byte>(bytes_.data() + pos, m.length)};
  }

  HardState hard_state() const noexcept { return hard_state_; }

  // --- writing ---------------------------------------------------------------------------------
  WriteSeq append(std::span<const EntryView> entries) {
    if (manual_sync_ && !entries.empty()) {
      Undo u;
      u.seq = last_seq_ + 1;
      u.kind = Undo::Kind::append;
      u.index = entries.front().index;
      journal_.push_back(std::move(u));
    }
    for (const EntryView& e : entries) {
      assert(e.index == last_index() + 1);
      push(e);
    }
    return written();
  }

  WriteSeq truncate_suffix(LogIndex from) {
    assert(from >= first_index_);
    if (from <= last_index()) {
      if (manual_sync_) {
        journal_truncation(from);
      }
      count_ = from - first_index_;
      byte_tail_ = count_ == 0 ? byte_head_ : end_of(last_index());
    }
    return written();
  }

  WriteSeq save_hard_state(const HardState& hard_state) {
    if (manual_sync_) {
      Undo u;
      u.seq = last_seq_ + 1;
      u.kind = Undo::Kind::hard_state;
      u.hard_state = hard_state_;
      journal_.push_back(std::move(u));
    }
    hard_state_ = hard_state;
    return written();
  }

  void compact(LogIndex through) {
    if (through < first_index_) {
      return;
    }
    through = std::min(through, last_index());
    compacted_term_ = meta(through).term;
    const LogIndex dropped = through - first_index_ + 1;
    meta_head_ = (meta_head_ + dropped) & (metas_.size() - 1);
    count_ -= dropped;
    first_index_ = through + 1;
    byte_head_ = count_ == 0 ? byte_tail_ : meta(first_index_).offset;
  }

  WriteSeq durable_seq() const noexcept { return durable_seq_.load(std::memory_order_acquire); }
  std::error_code error() const noexcept { return error_; }

  // --- snapshots (SnapshotStorage) -----------------------------------------------------------
  void begin_snapshot(const SnapshotMeta& meta) {
    pending_.emplace();
    pending_->meta = meta;
  }
  void write_snapshot(std::span<const std::byte> bytes) {
    if (pending_) {
      pending_->data.insert(pending_->data.end(), bytes.begin(), bytes.end());
    }
  }
  WriteSeq finish_snapshot() {
    if (!pending_) {
      return written();
    }
    if (manual_sync_) {
      Undo u;
      u.seq = last_seq_ + 1;
      u.kind = Undo::Kind::snapshot;
      u.snapshot = std::move(snapshot_);
      journal_.push_back(std::move(u));
    }
    pending_->meta.size = pending_->data.size();
    snapshot_ = std::move(pending_);
    pending_.reset();
    return written();
  }
  void abort_snapshot() { pending_.reset(); }
  std::optional<SnapshotMeta> snapshot() const {
    return snapshot_ ? std::optional<SnapshotMeta>(snapshot_->meta) : std::nullopt;
  }
  std::size_t read_snapshot(std::uint64_t offset, std::span<std::byte> out) const {
    if (!snapshot_ || offset >= snapshot_->data.size()) {
      return 0;
    }
    const std::size_t n = static_cast<std::size_t>(
        std::min<std::uint64_t>(out.size(), snapshot_->data.size() - offset));
    std::memcpy(out.data(), snapshot_->data.data() + offset, n);
    return n;
  }
  WriteSeq reset_log(LogIndex index, Term term) {
    if (manual_sync_) {
      journal_truncation(first_index_);
      Undo& u = journal_.back();
      u.kind = Undo::Kind::reset;
      u.index = first_index_;
      u.term = compacted_term_;
    }
    count_ = 0;
    byte_head_ = byte_tail_;
    first_index_ = index + 1;
    compacted_term_ = term;
    return written();
  }

  /// Makes an empty log start after `index`, whose term was `term` (the point a snapshot or a
  /// compaction left). For recovery; a no-op unless the log is empty.
  void restore_start(LogIndex index, Term term) noexcept {
    if (count_ == 0) {
      first_index_ = index + 1;
      compacted_term_ = term;
    }
  }

  // --- for tests and simulations --------------------------------------------------------------
  /// Makes every write so far durable (manual_sync mode; a no-op otherwise).
  void sync() noexcept { sync_through(last_seq_); }

  /// Makes the writes up to `seq` durable: a prefix of those issued (manual_sync mode).
  void sync_through(WriteSeq seq) noexcept {
    seq = std::min(seq, last_seq_);
    if (seq <= durable_seq_.load(std::memory_order_relaxed)) {
      return;
    }
    std::size_t keep = 0;
    while (keep < journal_.size() && journal_[keep].seq <= seq) {
      ++keep;
    }
    journal_.erase(journal_.begin(), journal_.begin() + static_cast<std::ptrdiff_t>(keep));
    durable_seq_.store(seq, std::memory_order_release);
  }

  /// Loses every write that is not durable (manual_sync mode): the log and hard state return to
  /// what the last durable write left. Sequence numbers keep growing across the crash.
  void crash() {
    while (!journal_.empty()) {
      Undo u = std::move(journal_.back());
      journal_.pop_back();
      switch (u.kind) {
        case Undo::Kind::append:
          // (An append below first_index_ means entries were compacted before they were durable,
          // which the core never does; what is left of the log goes with them.)
          if (u.index <= last_index()) {
            count_ = u.index > first_index_ ? u.index - first_index_ : 0;
            byte_tail_ = count_ == 0 ? byte_head_ : end_of(last_index());
          }
          break;
        case Undo::Kind::truncate:
          for (std::size_t k = 0; k < u.entries.size(); ++k) {
            const UndoEntry& e = u.entries[k];
            if (u.index + k == last_index() + 1) {
              push(EntryView{e.term, last_index() + 1, e.type, e.payload});
            }
          }
          break;
        case Undo::Kind::hard_state:
          hard_state_ = u.hard_state;
          break;
        case Undo::Kind::snapshot:
          snapshot_ = std::move(u.snapshot);
          break;
        case Undo::Kind::reset:
          first_index_ = u.index;
          compacted_term_ = u.term;
          for (const UndoEntry& e : u.entries) {
            push(EntryView{e.term, last_index() + 1, e.type, e.payload});
          }
          break;
      }
    }
  }

  /// How many writes were issued but are not durable yet.
  std::uint64_t unsynced_writes() const noexcept {
    return last_seq_ - durable_seq_.load(std::memory_order_relaxed);
  }
  /// The newest write issued.
  WriteSeq last_seq() const noexcept { return last_seq_; }
  /// Makes the storage fail for good with `ec` (fail-stop), as a broken disk would.
  void fail(std::error_code ec) noexcept { error_ = ec; }
  /// Capacity of the rings, to check that a steady workload stops growing them.
  std::size_t entry_capacity() const noexcept { return metas_.size(); }
  std::size_t byte_capacity() const noexcept { return bytes_.size(); }

 private:
  struct Meta {
    Term term = 0;
    std::uint64_t offset = 0;  // absolute position of the payload in the byte ring
    std::uint32_t length = 0;
    EntryType type = EntryType::normal;
  };

  const Meta& meta(LogIndex index) const noexcept {
    return metas_[(meta_head_ + (index - first_index_)) & (metas_.size() - 1)];
  }

  std::uint64_t end_of(LogIndex index) const noexcept {
    const Meta& m = meta(index);
    return m.offset + m.length;
  }

  WriteSeq written() noexcept {
    ++last_seq_;
    if (!manual_sync_) {
      durable_seq_.store(last_seq_, std::memory_order_release);
    }
    return last_seq_;
  }

  void push(const EntryView& e) {
    if (count_ == metas_.size()) {
      grow_metas();
    }
    const std::uint64_t length = e.payload.size();
    std::uint64_t offset = reserve_bytes(length);
    if (length != 0) {
      std::memcpy(bytes_.data() + offset % bytes_.size(), e.payload.data(), length);
    }
    Meta& m = metas_[(meta_head_ + count_) & (metas_.size() - 1)];
    m = Meta{e.term, offset, static_cast<std::uint32_t>(length), e.type};
    ++count_;
  }

  // Finds room for `length` contiguous bytes at the tail, skipping the ring's end when the
  // payload would straddle it, and growing when the live bytes would not fit.
  std::uint64_t reserve_bytes(std::uint64_t length) {
    for (;;) {
      const std::uint64_t capacity = bytes_.size();
      const std::uint64_t pos = byte_tail_ % capacity;
      const std::uint64_t skip = pos + length > capacity ? capacity - pos : 0;
      if (byte_tail_ + skip + length - byte_head_ <= capacity) {
        byte_tail_ += skip;
        const std::uint64_t offset = byte_tail_;
        byte_tail_ += length;
        return offset;
      }
      grow_bytes(length);
    }
  }

  void grow_metas() {
    std::vector<Meta> bigger(metas_.size() * 2);
    for (std::size_t i = 0; i < count_; ++i) {
      bigger[i] = metas_[(meta_head_ + i) & (metas_.size() - 1)];
    }
    metas_.swap(bigger);
    meta_head_ = 0;
  }

  // Lays the live payloads out again from position 0 of a ring at least twice as large.
  void grow_bytes(std::uint64_t extra) {
    const std::uint64_t live = byte_tail_ - byte_head_;
    std::uint64_t capacity = bytes_.size() * 2;
    while (capacity < 2 * (live + extra)) {
      capacity *= 2;
    }
    std::vector<std::byte> bigger(capacity);
    std::uint64_t tail = 0;
    for (std::size_t i = 0; i < count_; ++i) {
      Meta& m = metas_[(meta_head_ + i) & (metas_.size() - 1)];
      if (m.length != 0) {
        std::memcpy(bigger.data() + tail, bytes_.data() + m.offset % bytes_.size(), m.length);
      }
      m.offset = tail;
      tail += m.length;
    }
    bytes_.swap(bigger);
    byte_head_ = 0;
    byte_tail_ = tail;
  }

  // The undo journal of manual_sync mode: how to take back each write not yet durable.
  struct UndoEntry {
    Term term = 0;
    EntryType type = EntryType::normal;
    std::vector<std::byte> payload;
  };
  struct StoredSnapshot {
    SnapshotMeta meta;
    std::vector<std::byte> data;
  };
  struct Undo {
    enum class Kind : std::uint8_t { append, truncate, hard_state, snapshot, reset };
    WriteSeq seq = 0;
    Kind kind = Kind::append;
    LogIndex index = 0;              // append: the first index appended; reset: first_index_
    Term term = 0;                   // reset: compacted_term_
    HardState hard_state;            // hard_state: the value it replaced
    std::vector<UndoEntry> entries;  // truncate, reset: the entries removed, in order
    std::optional<StoredSnapshot> snapshot;  // snapshot: the one it replaced
  };

  void journal_truncation(LogIndex from) {
    Undo u;
    u.seq = last_seq_ + 1;
    u.kind = Undo::Kind::truncate;
    u.index = from;
    for (LogIndex i = from; i <= last_index(); ++i) {
      const EntryView e = entry(i);
      u.entries.push_back(UndoEntry{e.term, e.type, {e.payload.begin(), e.payload.end()}});
    }
    journal_.push_back(std::move(u));
  }

  bool manual_sync_;
  std::vector<Undo> journal_;
  std::vector<Meta> metas_;  // ring; capacity a power of two
  std::size_t meta_head_ = 0;
  LogIndex count_ = 0;
  LogIndex first_index_ = 1;
  Term compacted_term_ = 0;
  std::vector<std::byte> bytes_;  // ring of payloads
  std::uint64_t byte_head_ = 0;   // absolute position of the first live payload byte
  std::uint64_t byte_tail_ = 0;   // absolute position after the last
  HardState hard_state_;
  std::optional<StoredSnapshot> snapshot_;  // the newest finished snapshot
  std::optional<StoredSnapshot> pending_;   // the one being written
  WriteSeq last_seq_ = 0;
  std::atomic<WriteSeq> durable_seq_{0};
  std::error_code error_;
};

static_assert(detail::check_storage<MemoryStorage>());
static_assert(SnapshotStorage<MemoryStorage>);

}  // namespace tenure::raft
