// FileStorage: the durable Storage policy. A segmented write-ahead log with CRC-32C records,
// group commit on a thread of its own, torn-tail recovery and snapshots by atomic rename.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <raft/crc32c.hpp>
#include <raft/detail/wal_format.hpp>
#include <raft/errc.hpp>
#include <raft/file_system.hpp>
#include <raft/memory_storage.hpp>
#include <raft/message.hpp>
#include <raft/random.hpp>
#include <raft/result.hpp>
#include <raft/snapshot.hpp>
#include <raft/storage.hpp>
#include <raft/types.hpp>

namespace tenure::raft {

/// How a FileStorage lays out and syncs its log.
struct FileStorageOptions {
  /// The directory of the log and snapshots; created when missing.
  std::string directory;
  /// A segment is closed and a new one started once it holds this many bytes.
  std::uint64_t segment_bytes = std::uint64_t{64} << 20;
  /// true: a thread owned by the storage writes and syncs each batch of pending writes (group
  /// commit: one fdatasync per batch, however many proposals it holds), so the group's thread
  /// never waits for the disk. false: nothing is written until the owner calls sync_now()
  /// (simulations and tests drive persistence points by hand).
  bool background_sync = true;
  /// Called after each batch becomes durable, on the sync thread (background_sync) or inside
  /// sync_now(). A runtime posts RaftGroup::on_persisted() to the group's executor from here.
  std::function<void()> on_durable;
  /// How long the sync thread looks for the next batch (yielding the core meanwhile, and
  /// without taking the storage's mutex) before it sleeps on a condition variable. Under load
  /// the next batch usually follows within microseconds, and a sleep and a wake-up cost more.
  /// Adaptive: after a spin that found nothing the thread sleeps at once, until a sleep ends
  /// within this time again (one client's writes, a round trip apart, never pay for it).
  /// 0: never spin.
  std::chrono::microseconds sync_spin{50};
  /// Seeds the salts of new segments. 0: drawn from std::random_device. Simulations set it,
  /// so that a run replays byte for byte.
  std::uint64_t salt_seed = 0;
};

/// What recovery found and did, for logs and tests.
struct RecoveryReport {
  std::size_t segments = 0;
  std::uint64_t records = 0;
  /// Bytes of a torn tail cut off the last segment (a write that never became durable).
  std::uint64_t torn_bytes = 0;
  /// The snapshot recovery started from (0: none).
  LogIndex snapshot_index = 0;
};

/// A durable log and hard state in a directory, laid out as documented in docs/storage.md.
///
/// Writes change the in-memory view at once and queue records; the storage's own thread (or
/// sync_now()) appends each batch to the current segment followed by a batch-end record and
/// calls fdatasync once, then advances durable_seq() and calls on_durable. A failed write or
/// sync is fail-stop: error() turns non-zero for good and durable_seq() never moves again.
///
/// Recovery (in the constructor) replays every segment up to the end of its last complete batch
/// (its batch_end record). What follows in the last segment is a torn tail (a batch whose sync
/// never completed) and is cut off, as long as no complete batch follows an invalid record. An
/// invalid record with a complete batch after it, or anywhere in an earlier segment, is
/// corruption: the constructor throws std::system_error with errc::corrupt_storage and a message
/// naming the file and offset, rather than silently drop data that may have been acknowledged.
/// An I/O error throws errc::storage_failure.
///
/// Thread-safety: the Storage members run on the group's thread; durable_seq() and error() are
/// atomic loads from any thread; the sync thread only touches the pending queue (under a mutex)
/// and the files. Allocation: queue buffers grow to the largest batch and are reused; the
/// in-memory log is a MemoryStorage.
template <FileSystem Fs = PosixFileSystem>
class FileStorage {
 public:
  FileStorage(FileStorageOptions options, Fs& fs)
      : options_(std::move(options)),
        fs_(fs),
        memory_(MemoryStorage::Options{}),
        salts_(options_.salt_seed != 0 ? options_.salt_seed : random_seed()) {
    recover();
    if (options_.background_sync) {
      thread_ = std::thread([this] { sync_loop(); });
    }
  }

  FileStorage(const FileStorage&) = delete;
  FileStorage& operator=(const FileStorage&) = delete;

  /// close()s the storage.
  ~FileStorage() { close(); }

  /// Writes and syncs what is pending (unless abandon()ed), stops the sync thread and closes the
  /// segment. When it returns, on_durable is not running and will never be called again: call it
  /// before destroying whatever on_durable refers to (a runtime that on_durable notifies). The
  /// storage may then still be read (a group being destroyed may look at it) but not written.
  /// Idempotent. Group's thread.
  void close() {
    if (thread_.joinable()) {
      {
        std::lock_guard lock(mutex_);
        stopping_ = true;
      }
      wake_.notify_one();
      thread_.join();
    } else if (!closed_) {
      sync_now();
    }
    closed_ = true;
    if (segment_open_) {
      fs_.close(segment_);
      segment_open_ = false;
    }
    if (writing_) {
      fs_.close(writing_->handle);  // its temporary file goes at the next recovery
      writing_.reset();
    }
  }

 private:
  static std::uint64_t random_seed() {
    std::random_device device;
    return (static_cast<std::uint64_t>(device()) << 32) ^ device() ^ 0x9e3779b97f4a7c15ull;
  }

 public:
  // --- Storage: reading (group's thread) -------------------------------------------------------
  LogIndex first_index() const noexcept { return memory_.first_index(); }
  LogIndex last_index() const noexcept { return memory_.last_index(); }
  Result<Term> term_at(LogIndex index) const noexcept { return memory_.term_at(index); }
  EntryView entry(LogIndex index) const noexcept { return memory_.entry(index); }
  HardState hard_state() const noexcept { return memory_.hard_state(); }

  // --- Storage: writing (group's thread) -------------------------------------------------------
  WriteSeq append(std::span<const EntryView> entries) {
    (void)memory_.append(entries);
    WriteSeq seq = 0;
    {
      std::lock_guard lock(mutex_);
      for (const EntryView& e : entries) {
        detail::wal::append_entry(pending_, e);
      }
      if (!entries.empty()) {
        pending_last_entry_ = std::max(pending_last_entry_, entries.back().index);
      }
      seq = queued();
    }
    wake_sync_thread();
    return seq;
  }

  WriteSeq truncate_suffix(LogIndex from) {
    (void)memory_.truncate_suffix(from);
    WriteSeq seq = 0;
    {
      std::lock_guard lock(mutex_);
      detail::wal::append_words(pending_, detail::wal::RecordType::truncate, {from});
      seq = queued();
    }
    wake_sync_thread();
    return seq;
  }

  WriteSeq save_hard_state(const HardState& hs) {
    (void)memory_.save_hard_state(hs);
    WriteSeq seq = 0;
    {
      std::lock_guard lock(mutex_);
      queued_hard_state_ = hs;
      detail::wal::append_words(pending_, detail::wal::RecordType::hard_state,
                                {hs.term, hs.vote, hs.commit});
      seq = queued();
    }
    wake_sync_thread();
    return seq;
  }

  /// Forgets entries up to `through` in memory only. The log on disk keeps them until a durable
  /// snapshot covers them (finish_snapshot): without one, they are what rebuilds the state
  /// machine after a restart, which therefore replays them.
  void compact(LogIndex through) {
    if (through >= memory_.first_index()) {
      memory_.compact(std::min(through, memory_.last_index()));
    }
  }

  WriteSeq durable_seq() const noexcept { return durable_seq_.load(std::memory_order_acquire); }

  std::error_code error() const noexcept {
    std::lock_guard lock(error_mutex_);
    return error_;
  }

  // --- beyond the Storage concept --------------------------------------------------------------

  /// The newest write issued (group's thread): writes up to durable_seq() are on disk, the rest
  /// are pending.
  WriteSeq last_seq() const noexcept { return last_seq_; }

  /// Drops every pending write, as a process killed before its next sync would: the
  /// destructor then writes nothing. For simulations and tests of crashes.
  void abandon() {
    std::lock_guard lock(mutex_);
    pending_.clear();
    for (Sealed& b : sealed_) {
      if (b.snapshot) {
        fs_.close(b.snapshot->handle);
      }
    }
    sealed_.clear();
  }

  /// Writes and syncs every pending write now, on this thread (background_sync = false; with a
  /// sync thread it waits for that thread to catch up instead, spinning for up to 400 us before
  /// it sleeps: a wake-up costs more than most of an fdatasync). When it returns without error,
  /// on_durable has been called for every write made before the call. Returns the first error.
  std::error_code sync_now() {
    if (thread_.joinable()) {
      WriteSeq target = 0;
      {
        std::lock_guard lock(mutex_);
        target = last_seq_;
      }
      wake_.notify_one();
      const auto reported = [&] {
        return reported_seq_.load(std::memory_order_acquire) >= target || failed_.load();
      };
      if (spin_until(reported, std::chrono::microseconds(400))) {
        return error();
      }
      std::unique_lock lock(mutex_);
      done_.wait(lock, reported);
      return error();
    }
    for (;;) {
      Batch meta;
      std::optional<Sealed> sealed;
      {
        std::lock_guard lock(mutex_);
        if (!sealed_.empty()) {
          sealed.emplace(std::move(sealed_.front()));
          sealed_.pop_front();
        } else if (pending_.empty()) {
          return error();
        } else {
          meta = take_batch(spare_);  // the buffers trade places: neither allocates once grown
        }
      }
      if (sealed) {
        write_sealed(*sealed);
      } else {
        write_batch(spare_, meta);
      }
      if (failed_.load()) {
        return error();
      }
    }
  }

  // --- SnapshotStorage (group's thread) ---------------------------------------------------------
  //
  // A snapshot streams into a temporary file (header, data, trailer with a CRC-32C) as the group
  // writes it. finish_snapshot() queues it behind the writes issued before it; the writer (the
  // sync thread, or sync_now()) makes those durable first, then fdatasyncs the file, renames it
  // into place and fsyncs the directory, and only then reports it durable and removes the older
  // snapshots and the segments it covers. Writes and reads of snapshot bytes are plain file I/O
  // on the group's thread (a chunk at a time: no whole snapshot is ever held in memory). A
  // failed snapshot write is fail-stop for the storage, like a failed log write.

  /// Starts writing a snapshot (drops one unfinished). Nothing existing changes until finish.
  void begin_snapshot(const SnapshotMeta& meta) {
    abort_snapshot();
    if (failed_.load()) {
      return;
    }
    SnapshotWrite w;
    w.meta = meta;
    w.meta.size = 0;
    w.final_path = path(snapshot_name(meta.index));
    w.temp_path = path(snapshot_name(meta.index) + "." + std::to_string(++temp_files_) + ".tmp");
    std::vector<std::byte> head;
    detail::wal::append_snapshot_header(head, meta.index, meta.term, meta.membership);
    w.data_offset = head.size();
    w.crc = crc32c(head);
    std::error_code ec = fs_.open_append(w.temp_path, w.handle);
    if (!ec) {
      ec = fs_.truncate(w.handle, 0);
      if (!ec) {
        ec = fs_.append(w.handle, head);
      }
      if (ec) {
        fs_.close(w.handle);
      }
    }
    if (ec) {
      fail(ec);
      return;
    }
    writing_ = std::move(w);
  }

  /// Appends the next bytes of the snapshot being written.
  void write_snapshot(std::span<const std::byte> bytes) {
    if (!writing_ || bytes.empty()) {
      return;
    }
    if (const auto ec = fs_.append(writing_->handle, bytes)) {
      abort_snapshot();
      fail(ec);
      return;
    }
    writing_->crc = crc32c(bytes, writing_->crc);
    writing_->meta.size += bytes.size();
  }

  /// Ends the snapshot being written: it is snapshot() from now on, durable (and the log it
  /// covers removable) once durable_seq() reaches the result.
  WriteSeq finish_snapshot() {
    std::lock_guard lock(mutex_);
    if (!writing_) {
      return last_seq_;  // nothing to finish (or failed: never durable)
    }
    std::byte size[8];
    detail::wal::put_u64(size, writing_->meta.size);
    const std::uint32_t crc = crc32c(size, writing_->crc);
    std::byte trailer[16] = {};
    detail::wal::put_u64(trailer, writing_->meta.size);
    detail::wal::put_u32(trailer + 8, crc);
    if (const auto ec = fs_.append(writing_->handle, trailer)) {
      fs_.close(writing_->handle);
      writing_.reset();
      fail_locked(ec);
      return last_seq_;
    }
    {
      std::lock_guard files(snapshot_mutex_);
      finished_ = SnapshotFile{writing_->meta, writing_->temp_path, writing_->data_offset};
    }
    // The writes issued before it become durable first: they go in a batch of their own.
    if (!pending_.empty()) {
      Sealed before;
      before.meta = take_batch(before.bytes);
      sealed_.push_back(std::move(before));
    }
    Sealed snapshot;
    snapshot.snapshot = std::move(writing_);
    writing_.reset();
    snapshot.meta.last = queued();
    sealed_.push_back(std::move(snapshot));
    if (thread_.joinable()) {
      wake_.notify_one();
    }
    return last_seq_;
  }

  /// Drops the snapshot being written (its temporary file).
  void abort_snapshot() {
    if (!writing_) {
      return;
    }
    fs_.close(writing_->handle);
    (void)fs_.remove(writing_->temp_path);
    writing_.reset();
  }

  /// The newest finished snapshot (durable or on its way), if any.
  std::optional<SnapshotMeta> snapshot() const {
    std::lock_guard files(snapshot_mutex_);
    return finished_ ? std::optional<SnapshotMeta>(finished_->meta) : std::nullopt;
  }

  /// Bytes of the newest finished snapshot from `offset`, up to `out.size()`; fewer only at its
  /// end. A failed read fails the storage and returns 0.
  std::size_t read_snapshot(std::uint64_t offset, std::span<std::byte> out) const {
    std::lock_guard files(snapshot_mutex_);  // the writer renames the file under it
    if (!finished_ || offset >= finished_->meta.size) {
      return 0;
    }
    const std::size_t want = static_cast<std::size_t>(
        std::min<std::uint64_t>(out.size(), finished_->meta.size - offset));
    std::size_t n = 0;
    const auto ec =
        fs_.read_at(finished_->path, finished_->data_offset + offset, out.first(want), n);
    if (ec || n != want) {
      const_cast<FileStorage*>(this)->fail(ec ? ec : std::make_error_code(std::errc::io_error));
      return 0;
    }
    return n;
  }

  /// Drops every entry: the log restarts after `index` (whose term is `term`), as after an
  /// installed snapshot that the log does not match. On disk, a truncation from index + 1:
  /// replayed after the snapshot at `index`, it removes whatever the older segments hold above it.
  WriteSeq reset_log(LogIndex index, Term term) {
    (void)memory_.reset_log(index, term);
    WriteSeq seq = 0;
    {
      std::lock_guard lock(mutex_);
      detail::wal::append_words(pending_, detail::wal::RecordType::truncate, {index + 1});
      seq = queued();
    }
    wake_sync_thread();
    return seq;
  }

  // --- beyond SnapshotStorage
  // ---------------------------------------------------------------------

  /// Saves a whole snapshot and waits until it is durable (begin, write, finish, sync_now): for
  /// tools and tests. Returns storage_failure (and the storage is failed) when a write fails.
  std::error_code save_snapshot(LogIndex index, Term term, std::span<const std::byte> data) {
    begin_snapshot(SnapshotMeta{index, term, {}, 0});
    write_snapshot(data);
    (void)finish_snapshot();
    if (sync_now()) {
      return make_error_code(errc::storage_failure);
    }
    return {};
  }

  /// The newest finished snapshot, read whole: for tests and tools (a group streams it).
  struct Snapshot {
    LogIndex index = 0;
    Term term = 0;
    Membership membership;
    std::vector<std::byte> data;
  };
  std::optional<Snapshot> recovered_snapshot() const {
    const auto meta = snapshot();
    if (!meta) {
      return std::nullopt;
    }
    Snapshot s{meta->index, meta->term, meta->membership, std::vector<std::byte>(meta->size)};
    std::size_t done = 0;
    while (done < s.data.size()) {
      const std::size_t n = read_snapshot(done, std::span<std::byte>(s.data).subspan(done));
      if (n == 0) {
        break;
      }
      done += n;
    }
    s.data.resize(done);
    return s;
  }

  const RecoveryReport& recovery() const noexcept { return report_; }
  const std::string& directory() const noexcept { return options_.directory; }

 private:
  using RecordType = detail::wal::RecordType;

  std::string path(const std::string& name) const { return options_.directory + "/" + name; }

  static std::string segment_name(std::uint64_t sequence) {
    char name[32];
    std::snprintf(name, sizeof name, "wal-%016llx.log", static_cast<unsigned long long>(sequence));
    return name;
  }
  static std::string snapshot_name(LogIndex index) {
    char name[40];
    std::snprintf(name, sizeof name, "snap-%016llx.snap", static_cast<unsigned long long>(index));
    return name;
  }
  static bool parse_hex(const std::string& name, const char* prefix, const char* suffix,
                        std::uint64_t& value) {
    const std::string p = prefix;
    const std::string s = suffix;
    if (name.size() != p.size() + 16 + s.size() || name.compare(0, p.size(), p) != 0 ||
        name.compare(name.size() - s.size(), s.size(), s) != 0) {
      return false;
    }
    value = 0;
    for (std::size_t i = p.size(); i < p.size() + 16; ++i) {
      const char c = name[i];
      const int digit = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
      if (digit < 0) {
        return false;
      }
      value = value << 4 | static_cast<std::uint64_t>(digit);
    }
    return true;
  }

  // A write was queued (mutex_ held). The caller wakes the sync thread once it has let go of
  // the mutex: woken under it, that thread would only block again on the mutex.
  WriteSeq queued() {
    ++last_seq_;
    queued_seq_.store(last_seq_, std::memory_order_release);
    return last_seq_;
  }

  void wake_sync_thread() {
    if (thread_.joinable()) {
      wake_.notify_one();
    }
  }

  void fail(std::error_code ec) {
    std::unique_lock lock(mutex_);
    fail_locked(ec);
  }

  // fail() with mutex_ held: the mutex that sync_now() checks its condition under. Set between
  // that check and its wait, and notified without the mutex, the failure would be a lost
  // wake-up, and sync_now() (save_snapshot() with it) would wait for ever.
  void fail_locked(std::error_code ec) {
    {
      std::lock_guard lock(error_mutex_);
      if (!error_) {
        error_ = ec;
      }
    }
    failed_.store(true);
    done_.notify_all();
  }

  [[noreturn]] void refuse(errc code, const std::string& what) {
    throw std::system_error(make_error_code(code), what);
  }

  // --- writing batches -------------------------------------------------------------------------

  // What a batch carries besides its bytes. Taken under mutex_.
  struct Batch {
    WriteSeq last = 0;              // the write sequence it makes durable
    HardState hard_state_before{};  // the hard state as of the previous batch
    LogIndex last_entry = 0;        // the highest entry index it holds (0: none)
  };

  struct SnapshotWrite {
    SnapshotMeta meta;
    std::string temp_path;
    std::string final_path;
    typename Fs::handle handle{};
    std::uint64_t data_offset = 0;
    std::uint32_t crc = 0;  // of everything written so far
  };
  struct SnapshotFile {
    SnapshotMeta meta;
    std::string path;
    std::uint64_t data_offset = 0;
  };
  struct Sealed {
    std::vector<std::byte> bytes;
    Batch meta;
    std::optional<SnapshotWrite> snapshot;
  };

  Batch take_batch(std::vector<std::byte>& batch) {
    batch.clear();
    batch.swap(pending_);  // pending_ keeps the old batch's capacity for the next one
    Batch b{last_seq_, batched_hard_state_, pending_last_entry_};
    batched_hard_state_ = queued_hard_state_;
    pending_last_entry_ = 0;
    return b;
  }

  // Spins for up to 50 microseconds until `ready()`; returns whether it became true.
  template <class Ready>
  static bool spin_until(Ready&& ready,
                         std::chrono::microseconds limit = std::chrono::microseconds(50)) {
    const auto until = std::chrono::steady_clock::now() + limit;
    do {
      if (ready()) {
        return true;
      }
      std::this_thread::yield();
    } while (std::chrono::steady_clock::now() < until);
    return ready();
  }

  // Whether a write was queued since the sync thread last took work: a hint, read without the
  // mutex (the wait's predicate, under it, decides).
  bool has_pending() const noexcept {
    return queued_seq_.load(std::memory_order_acquire) != taken_seq_;
  }

  void sync_loop() {
    std::vector<std::byte> batch;
    // Whether spinning pays: it did last time, or the last sleep ended within the spin's time.
    // One client's writes arrive a round trip apart, longer than any useful spin: then the
    // thread sleeps at once instead of burning sync_spin of CPU after every batch.
    bool spin = options_.sync_spin.count() > 0;
    for (;;) {
      Batch meta;
      std::optional<Sealed> sealed;
      if (spin) {
        spin = spin_until([&] { return has_pending(); }, options_.sync_spin);
      }
      {
        std::unique_lock lock(mutex_);
        // A sleep is timed only while spinning is off and adaptive: a short one turns it on.
        const bool timed = !spin && options_.sync_spin.count() > 0 && !has_pending();
        const auto sleep_began =
            timed ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
        wake_.wait(lock, [&] { return stopping_ || !pending_.empty() || !sealed_.empty(); });
        const bool slept_briefly =
            timed && std::chrono::steady_clock::now() - sleep_began < options_.sync_spin;
        if (!sealed_.empty()) {
          sealed.emplace(std::move(sealed_.front()));
          sealed_.pop_front();
        } else if (pending_.empty()) {
          return;  // stopping with nothing left
        } else {
          meta = take_batch(batch);
        }
        // Nothing left: the next write is news. Something left (a batch behind a sealed one):
        // 0 makes has_pending() true at once.
        taken_seq_ = sealed_.empty() && pending_.empty() ? last_seq_ : 0;
        spin = spin || slept_briefly;
      }
      if (sealed) {
        write_sealed(*sealed);
      } else {
        write_batch(batch, meta);
      }
      if (failed_.load()) {
        return;  // fail-stop: never retried
      }
    }
  }

  // Appends one batch and its batch-end record to the current segment, rotating first when it
  // is full, and makes it durable with one fdatasync.
  void write_batch(std::vector<std::byte>& batch, const Batch& meta) {
    if (failed_.load()) {
      return;
    }
    const std::size_t batch_bytes = batch.size();
    detail::wal::append_words(batch, RecordType::batch_end, {meta.last});
    std::error_code ec;
    bool new_segment = false;
    if (!segment_open_ || segment_size_ >= options_.segment_bytes) {
      ec = open_next_segment();
      new_segment = true;
    }
    (void)batch_bytes;
    if (!ec) {
      detail::wal::seal(batch, segment_salt_);
    }
    if (!ec && header_pending_) {
      // Every segment starts with its header and the hard state as of the batch before, so
      // that it can stand alone once older segments are removed.
      std::vector<std::byte> prefix;
      detail::wal::append_segment_header(prefix, segment_sequence_, segment_salt_);
      const std::size_t header_size = prefix.size();
      const HardState& hs = meta.hard_state_before;
      detail::wal::append_words(prefix, RecordType::hard_state, {hs.term, hs.vote, hs.commit});
      detail::wal::seal(std::span<std::byte>(prefix).first(header_size), 0);
      detail::wal::seal(std::span<std::byte>(prefix).subspan(header_size), segment_salt_);
      batch.insert(batch.begin(), prefix.begin(), prefix.end());
    }
    if (!ec) {
      ec = fs_.append(segment_, batch);
    }
    if (!ec) {
      ec = fs_.sync(segment_);
    }
    if (!ec && new_segment) {
      ec = fs_.sync_dir(options_.directory);  // the new file's name is durable too
    }
    if (ec) {
      fail(ec);
      return;
    }
    segment_size_ += batch.size();
    header_pending_ = false;
    {
      std::lock_guard lock(mutex_);
      if (meta.last_entry != 0) {
        note_segment_entry(segment_sequence_, meta.last_entry);
      }
    }
    report_durable(meta.last);
  }

  // A batch sealed by finish_snapshot(): the writes before a snapshot, or the snapshot itself
  // (synced, renamed into place, the directory synced; then what it covers is removed).
  void write_sealed(Sealed& sealed) {
    if (!sealed.snapshot) {
      write_batch(sealed.bytes, sealed.meta);
      return;
    }
    SnapshotWrite& w = *sealed.snapshot;
    if (failed_.load()) {
      fs_.close(w.handle);
      return;
    }
    std::error_code ec = fs_.sync(w.handle);
    fs_.close(w.handle);
    if (!ec) {
      std::lock_guard files(snapshot_mutex_);
      ec = fs_.rename(w.temp_path, w.final_path);
      if (!ec && finished_ && finished_->path == w.temp_path) {
        finished_->path = w.final_path;
      }
    }
    if (!ec) {
      ec = fs_.sync_dir(options_.directory);
    }
    if (ec) {
      fail(ec);
      return;
    }
    remove_obsolete(w.meta.index);
    report_durable(sealed.meta.last);
  }

  // Everything up to `last` is durable: say so, then run on_durable, then wake sync_now().
  void report_durable(WriteSeq last) {
    durable_seq_.store(last, std::memory_order_release);
    if (options_.on_durable) {
      options_.on_durable();
    }
    {
      // sync_now() returns only once on_durable has reported its writes.
      std::lock_guard lock(mutex_);
      reported_seq_.store(last, std::memory_order_release);
    }
    done_.notify_all();
  }

  // Creates the next segment file; its first batch writes the header (header_pending_).
  std::error_code open_next_segment() {
    if (segment_open_) {
      fs_.close(segment_);
      segment_open_ = false;
    }
    {
      std::lock_guard lock(mutex_);
      ++segment_sequence_;
      note_segment_entry(segment_sequence_, 0);
    }
    segment_size_ = 0;
    header_pending_ = true;
    segment_salt_ = static_cast<std::uint32_t>(salts_.next() >> 32);
    const std::error_code ec = fs_.open_append(path(segment_name(segment_sequence_)), segment_);
    segment_open_ = !ec;
    return ec;
  }

  void remove_obsolete(LogIndex snapshot_index) {
    std::vector<std::string> names;
    if (fs_.list(options_.directory, names)) {
      return;
    }
    for (const std::string& name : names) {
      std::uint64_t n = 0;
      if (parse_hex(name, "snap-", ".snap", n) && n < snapshot_index) {
        (void)fs_.remove(path(name));
      }
    }
    // The oldest segments, in order, while every entry in them is covered by the snapshot, never
    // the one being written. In order: a later segment may truncate entries of an earlier one,
    // so removing it alone could bring those entries back.
    std::vector<std::uint64_t> obsolete;
    {
      std::lock_guard lock(mutex_);
      std::sort(segment_last_entry_.begin(), segment_last_entry_.end());
      std::size_t n = 0;
      while (n < segment_last_entry_.size() && segment_last_entry_[n].first != segment_sequence_ &&
             segment_last_entry_[n].second <= snapshot_index) {
        obsolete.push_back(segment_last_entry_[n].first);
        ++n;
      }
      segment_last_entry_.erase(segment_last_entry_.begin(),
                                segment_last_entry_.begin() + static_cast<std::ptrdiff_t>(n));
    }
    for (const std::uint64_t sequence : obsolete) {
      (void)fs_.remove(path(segment_name(sequence)));
    }
    (void)fs_.sync_dir(options_.directory);
  }

  // --- recovery --------------------------------------------------------------------------------

  void recover() {
    if (const auto ec = fs_.make_dir(options_.directory)) {
      refuse(errc::storage_failure, "cannot create " + options_.directory + ": " + ec.message());
    }
    std::vector<std::string> names;
    if (const auto ec = fs_.list(options_.directory, names)) {
      refuse(errc::storage_failure, "cannot list " + options_.directory + ": " + ec.message());
    }
    std::vector<std::uint64_t> segments;
    std::uint64_t newest_snapshot = 0;
    bool have_snapshot = false;
    for (const std::string& name : names) {
      std::uint64_t n = 0;
      if (parse_hex(name, "wal-", ".log", n)) {
        segments.push_back(n);
      } else if (parse_hex(name, "snap-", ".snap", n)) {
        newest_snapshot = std::max(newest_snapshot, n);
        have_snapshot = true;
      } else if (name.size() > 4 && name.compare(name.size() - 4, 4, ".tmp") == 0) {
        (void)fs_.remove(path(name));  // a snapshot that never completed its rename
      }
    }
    std::sort(segments.begin(), segments.end());
    if (have_snapshot) {
      load_snapshot(newest_snapshot);
    }
    std::vector<std::byte> bytes;
    for (std::size_t i = 0; i < segments.size(); ++i) {
      const bool last = i + 1 == segments.size();
      const std::string name = path(segment_name(segments[i]));
      if (const auto ec = fs_.read_all(name, bytes)) {
        refuse(errc::storage_failure, "cannot read " + name + ": " + ec.message());
      }
      const std::size_t valid = replay_segment(name, segments[i], bytes, last);
      ++report_.segments;
      segment_sequence_ = segments[i];
      note_segment_entry(segments[i], 0);
      if (last) {
        if (const auto ec = fs_.open_append(name, segment_)) {
          refuse(errc::storage_failure, "cannot open " + name + ": " + ec.message());
        }
        segment_open_ = true;
        segment_size_ = valid;
        if (valid < bytes.size()) {
          report_.torn_bytes = bytes.size() - valid;
          if (const auto ec = fs_.truncate(segment_, valid)) {
            refuse(errc::storage_failure, "cannot truncate " + name + ": " + ec.message());
          }
        }
        if (repair_batch_end_) {
          std::vector<std::byte> end;
          detail::wal::append_words(end, RecordType::batch_end, {0});
          const auto salt = detail::wal::segment_salt(bytes);
          detail::wal::seal(end, salt ? *salt : 0);
          if (const auto ec = fs_.append(segment_, end)) {
            refuse(errc::storage_failure, "cannot repair " + name + ": " + ec.message());
          }
          segment_size_ += end.size();
        }
        // What was read may still sit in the page cache only (the previous process died before
        // its fdatasync): make it durable before anything is built on it, and the directory
        // with it.
        if (auto ec = fs_.sync(segment_); ec || (ec = fs_.sync_dir(options_.directory))) {
          refuse(errc::storage_failure, "cannot sync " + name + ": " + ec.message());
        }
        const auto salt = detail::wal::segment_salt(bytes);
        segment_salt_ = salt ? *salt : static_cast<std::uint32_t>(salts_.next() >> 32);
        // A segment whose very first batch was torn has no header left: the next batch
        // writes it again.
        header_pending_ = valid == 0;
      }
    }
    queued_hard_state_ = batched_hard_state_ = memory_.hard_state();
  }

  // Under mutex_ (or during recovery, before the sync thread starts).
  void note_segment_entry(std::uint64_t sequence, LogIndex index) {
    for (auto& [s, last] : segment_last_entry_) {
      if (s == sequence) {
        last = std::max(last, index);
        return;
      }
    }
    segment_last_entry_.emplace_back(sequence, index);
  }

  // Validates the snapshot file at `index` (streamed: its CRC a chunk at a time) and starts
  // the log after it. Anything wrong with it is corrupt_storage naming the file: never skipped
  // for an older one, since the segments it covers may be gone.
  void load_snapshot(LogIndex index) {
    const std::string name = path(snapshot_name(index));
    const auto bad = [&](const std::string& what) {
      refuse(errc::corrupt_storage, name + ": snapshot " + what);
    };
    std::vector<std::byte> buffer(std::size_t{1} << 20);
    const auto read = [&](std::uint64_t offset, std::span<std::byte> out) {
      std::size_t n = 0;
      if (const auto ec = fs_.read_at(name, offset, out, n)) {
        refuse(errc::storage_failure, "cannot read " + name + ": " + ec.message());
      }
      return n;
    };
    std::byte head[detail::wal::kSnapshotHeadBytes];
    const std::size_t got = read(0, head);
    SnapshotFile file;
    file.path = name;
    file.meta.index = index;
    if (got >= 8 && detail::wal::get_u64(head) == detail::wal::kMagic) {
      // Version 1 (magic, index, term, size, data, CRC of all before it): no configuration.
      std::vector<std::byte> bytes;
      if (const auto ec = fs_.read_all(name, bytes)) {
        refuse(errc::storage_failure, "cannot read " + name + ": " + ec.message());
      }
      if (bytes.size() < 36 || detail::wal::get_u64(bytes.data() + 8) != index ||
          detail::wal::get_u64(bytes.data() + 24) != bytes.size() - 36 ||
          crc32c(std::span<const std::byte>(bytes.data(), bytes.size() - 4)) !=
              detail::wal::get_u32(bytes.data() + bytes.size() - 4)) {
        bad("fails validation");
      }
      file.meta.term = detail::wal::get_u64(bytes.data() + 16);
      file.meta.size = bytes.size() - 36;
      file.data_offset = 32;
    } else {
      const bool v2 = got >= 8 && detail::wal::get_u64(head) == detail::wal::kSnapshotMagicV2;
      if (got < detail::wal::kSnapshotHeadBytes ||
          (detail::wal::get_u64(head) != detail::wal::kSnapshotMagic && !v2)) {
        bad("fails validation (not a tenure snapshot)");
      }
      if (detail::wal::get_u64(head + 8) != index) {
        bad("fails validation (its index is not the one its name says)");
      }
      file.meta.term = detail::wal::get_u64(head + 16);
      // Version 3: the size of the configuration; version 2: its count of voters.
      const std::uint64_t config = detail::wal::get_u64(head + 24);
      if (config > (v2 ? detail::wal::kMaxSnapshotVoters : detail::wal::kMaxSnapshotConfigBytes)) {
        bad("fails validation (a malformed configuration)");
      }
      file.data_offset = detail::wal::kSnapshotHeadBytes + (v2 ? 8 * config : config);
      // The whole file, checksummed as it streams by; the trailer is the last 16 bytes.
      std::uint32_t crc = 0;
      std::uint64_t offset = 0;
      std::vector<std::byte> tail;  // the last 16 bytes seen
      for (;;) {
        const std::size_t n = read(offset, buffer);
        const std::span<const std::byte> chunk(buffer.data(), n);
        if (offset == 0) {
          if (n < file.data_offset) {
            bad("fails validation (truncated)");
          }
          const std::byte* at = buffer.data() + detail::wal::kSnapshotHeadBytes;
          if (v2) {
            for (std::uint64_t v = 0; v < config; ++v) {
              file.meta.membership.voters.push_back(detail::wal::get_u64(at + 8 * v));
            }
          } else {
            std::size_t used = 0;
            auto m = detail::decode_membership(
                std::span<const std::byte>(at, static_cast<std::size_t>(config)), 4096, &used);
            if (!m || used != config) {
              bad("fails validation (a malformed configuration)");
            }
            file.meta.membership = std::move(*m);
          }
        }
        // Everything but the final 16 bytes goes into the CRC: hold back the last 16 seen.
        tail.insert(tail.end(), chunk.begin(), chunk.end());
        if (tail.size() > 16) {
          const std::size_t keep = 16;
          crc = crc32c(std::span<const std::byte>(tail.data(), tail.size() - keep), crc);
          tail.erase(tail.begin(), tail.end() - static_cast<std::ptrdiff_t>(keep));
        }
        offset += n;
        if (n < buffer.size()) {
          break;
        }
      }
      if (tail.size() != 16 || offset < file.data_offset + 16) {
        bad("fails validation (truncated)");
      }
      const std::uint64_t size = detail::wal::get_u64(tail.data());
      crc = crc32c(std::span<const std::byte>(tail.data(), 8), crc);
      if (size != offset - file.data_offset - 16 || crc != detail::wal::get_u32(tail.data() + 8) ||
          detail::wal::get_u32(tail.data() + 12) != 0) {
        bad("fails validation (its checksum or size does not match)");
      }
      file.meta.size = size;
    }
    memory_.restore_start(index, file.meta.term);
    snapshot_index_ = index;
    report_.snapshot_index = index;
    finished_ = std::move(file);
  }

  // Replays one segment into memory_ and returns how many of its bytes are durable: up to the
  // end of its last complete batch (the last batch_end record). Records after it belong to a
  // batch whose sync never completed; recovery cuts them off.
  std::size_t replay_segment(const std::string& name, std::uint64_t sequence,
                             std::span<const std::byte> bytes, bool last) {
    // Pass 1: find where the complete batches end, and tell a torn tail from corruption. The
    // header carries the salt every other record's CRC is seeded with.
    const std::optional<std::uint32_t> salt = detail::wal::segment_salt(bytes);
    if (!salt && !bytes.empty()) {
      // No readable header. In the last segment that is its first batch, torn, unless complete
      // batches follow, sealed with the salt the header holds (or held before one of its bits
      // flipped): then the header was damaged after the fact.
      if (!last || header_damaged(bytes)) {
        refuse(errc::corrupt_storage, name + ": bad segment header at offset 0");
      }
      return 0;
    }
    std::size_t offset = 0;
    std::size_t batches_end = 0;
    std::size_t prefix_end = 0;  // where the header and the hard state after it end (0: not yet)
    while (offset < bytes.size() && salt) {
      const auto record = detail::wal::read_record(bytes, offset, offset == 0 ? 0 : *salt);
      if (record && offset != 0 && prefix_end == 0 && record->type == RecordType::hard_state) {
        prefix_end = offset + record->size;
      } else if (record && offset != 0 && prefix_end == 0) {
        prefix_end = ~std::size_t{0};  // no hard state right after the header
      }
      if (!record) {
        if (last && !detail::wal::complete_batch_after(bytes, offset + 8, *salt) &&
            !detail::wal::valid_record_within(bytes, offset + 8, offset + detail::wal::kSectorBytes,
                                              *salt)) {
          // The end of the last segment: a torn write, or damage to the end record of the last
          // batch (whole, durable, perhaps acknowledged) with at most a torn batch after it. The
          // two look alike, so the whole records before the invalid one are kept either way and
          // sealed with a fresh end record: keeping a prefix of the writes issued is always
          // safe, while cutting a durable batch could lose a vote or an acknowledged entry.
          // A segment's first batch is kept only with its hard-state prefix whole: a segment
          // without one could lose the term and vote once older segments are removed.
          if (offset > batches_end &&
              (batches_end != 0 ||
               (prefix_end != ~std::size_t{0} && prefix_end != 0 && offset >= prefix_end))) {
            repair_batch_end_ = true;
            batches_end = offset;
          }
          break;
        }
        refuse(errc::corrupt_storage,
               name + ": invalid record at offset " + std::to_string(offset));
      }
      offset += record->size;
      if (record->type == RecordType::batch_end) {
        batches_end = offset;
      }
    }
    if (!last && batches_end != bytes.size()) {
      // A closed segment ends with a complete batch; anything else was damaged.
      refuse(errc::corrupt_storage, name + ": incomplete batch at offset " +
                                        std::to_string(batches_end) + " of a closed segment");
    }
    // Pass 2: replay the complete batches.
    offset = 0;
    while (offset < batches_end) {
      const auto record =
          detail::wal::read_record(bytes, offset, offset == 0 ? 0 : *salt);  // pass 1: valid
      if (offset == 0) {
        if (record->type != RecordType::segment_header || record->payload.size() != 24 ||
            detail::wal::get_u64(record->payload.data()) != detail::wal::kMagic ||
            detail::wal::get_u64(record->payload.data() + 16) != sequence) {
          refuse(errc::corrupt_storage, name + ": bad segment header at offset 0");
        }
        if (detail::wal::get_u32(record->payload.data() + 8) != detail::wal::kVersion) {
          refuse(errc::corrupt_storage, name + ": unsupported log version at offset 0");
        }
      } else {
        apply_record(name, sequence, offset, *record);
      }
      ++report_.records;
      offset += record->size;
    }
    return batches_end;
  }

  // Whether complete batches follow an unreadable segment header: tried with the salt as the
  // header's bytes say, and with each single bit of it flipped back.
  static bool header_damaged(std::span<const std::byte> bytes) noexcept {
    if (bytes.size() < 64) {
      return false;
    }
    const std::uint32_t raw = detail::wal::get_u32(bytes.data() + detail::wal::kHeaderSize + 12);
    if (detail::wal::complete_batch_after(bytes, 40, raw)) {
      return true;
    }
    for (int bit = 0; bit < 32; ++bit) {
      if (detail::wal::complete_batch_after(bytes, 40, raw ^ (1u << bit))) {
        return true;
      }
    }
    return false;
  }

  void apply_record(const std::string& name, std::uint64_t sequence, std::size_t offset,
                    const detail::wal::Record& r) {
    using detail::wal::get_u64;
    const auto bad = [&](const char* what) {
      refuse(errc::corrupt_storage,
             name + ": " + what + " in the record at offset " + std::to_string(offset));
    };
    const std::byte* p = r.payload.data();
    switch (r.type) {
      case RecordType::entry: {
        if (r.payload.size() < 24) {
          bad("a short entry");
        }
        const EntryView e{get_u64(p), get_u64(p + 8), static_cast<EntryType>(p[16]),
                          r.payload.subspan(24)};
        if (e.index <= snapshot_index_) {
          break;  // the snapshot already holds it
        }
        if (e.index != memory_.last_index() + 1) {
          bad("an entry out of sequence");
        }
        (void)memory_.append(std::span<const EntryView>(&e, 1));
        note_segment_entry(sequence, e.index);
        break;
      }
      case RecordType::hard_state:
        if (r.payload.size() != 24) {
          bad("a malformed hard state");
        }
        (void)memory_.save_hard_state(HardState{get_u64(p), get_u64(p + 8), get_u64(p + 16)});
        break;
      case RecordType::truncate: {
        if (r.payload.size() != 8) {
          bad("a malformed truncation");
        }
        // A truncation at or below the snapshot still removes the stale entries above it that
        // an older segment holds.
        const LogIndex from = std::max(get_u64(p), memory_.first_index());
        if (from <= memory_.last_index()) {
          (void)memory_.truncate_suffix(from);
        }
        break;
      }
      case RecordType::compact:
        // Written by earlier versions; compaction is in memory only (entries stay on disk
        // until a snapshot covers them), so there is nothing to replay.
        if (r.payload.size() != 16) {
          bad("a malformed compaction point");
        }
        break;
      case RecordType::batch_end:
        break;
      case RecordType::segment_header:
        bad("a second segment header");
    }
  }

  FileStorageOptions options_;
  Fs& fs_;
  MemoryStorage memory_;  // the in-memory view of the log; group's thread

  // Pending writes, shared with the sync thread.
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  std::vector<std::byte> pending_;
  std::vector<std::byte> spare_;  // sync_now()'s batch buffer, traded with pending_
  WriteSeq last_seq_ = 0;
  std::atomic<WriteSeq> queued_seq_{0};  // last_seq_, for the sync thread's lock-free look
  WriteSeq taken_seq_ = 0;               // last_seq_ when the sync thread last took work
  bool closed_ = false;                  // close() ran
  bool stopping_ = false;
  std::atomic<WriteSeq> durable_seq_{0};
  std::atomic<WriteSeq> reported_seq_{0};  // durable, and on_durable has been called for it
  std::atomic<bool> failed_{false};
  mutable std::mutex error_mutex_;
  std::error_code error_;

  // The segment being written; the sync thread's (or sync_now's caller's) after recovery.
  typename Fs::handle segment_{};
  bool segment_open_ = false;
  std::uint64_t segment_sequence_ = 0;
  std::uint64_t segment_size_ = 0;
  bool header_pending_ = false;     // the open segment still needs its header
  bool repair_batch_end_ = false;   // recovery: the last batch's damaged end is rewritten
  std::uint32_t segment_salt_ = 0;  // the open segment's CRC salt
  Xoshiro256 salts_;                // draws new segments' salts
  // Guarded by mutex_: the hard state as last queued, and as of the end of the last batch taken
  // (what a new segment's prefix records); the highest entry of the pending batch; the highest
  // entry in each segment, for removal once a snapshot covers it.
  HardState queued_hard_state_;
  HardState batched_hard_state_;
  LogIndex pending_last_entry_ = 0;
  std::vector<std::pair<std::uint64_t, LogIndex>> segment_last_entry_;
  LogIndex snapshot_index_ = 0;  // recovery: the snapshot the log starts after
  RecoveryReport report_;

  // Snapshots. The one being written (group's thread); the newest finished one, whose path the
  // writer changes from temporary to final under snapshot_mutex_ (reads hold it too).
  std::optional<SnapshotWrite> writing_;
  std::optional<SnapshotFile> finished_;
  mutable std::mutex snapshot_mutex_;
  std::uint64_t temp_files_ = 0;
  // Batches sealed by finish_snapshot(), in order, ahead of pending_ (guarded by mutex_): the
  // writes issued before a snapshot, then the snapshot.
  std::deque<Sealed> sealed_;

  std::thread thread_;  // last: started after everything above is ready
};

static_assert(detail::check_storage<FileStorage<PosixFileSystem>>());

}  // namespace tenure::raft
