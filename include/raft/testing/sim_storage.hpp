// SimStorage: a simulated node's disk, for the two Storage policies a SimCluster can run on.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <system_error>

#include <raft/file_storage.hpp>
#include <raft/memory_storage.hpp>
#include <raft/testing/sim_file_system.hpp>

namespace tenure::raft::testing {

/// A simulated node's disk: what outlives a crash, and how a crash, a persistence point, a
/// power failure in the middle of an fdatasync, or media corruption affects it. Specialised for
/// MemoryStorage (fast: the log in memory, durable as far as the simulation says) and for
/// FileStorage over a SimFileSystem (the real write-ahead log, its format and its recovery).
template <class Storage>
class SimStorage;

/// MemoryStorage: durability is a prefix of the writes (sync_through); a crash keeps exactly it.
template <>
class SimStorage<MemoryStorage> {
 public:
  using Options = MemoryStorage::Options;

  explicit SimStorage(const Options& options) : storage_(options) {}

  MemoryStorage& get() noexcept { return storage_; }
  const MemoryStorage& get() const noexcept { return storage_; }
  /// Always true: a MemoryStorage has no format that could refuse to load.
  bool recover() { return true; }
  bool up() const noexcept { return true; }
  /// Loses every write that is not durable.
  void crash(std::uint64_t /*entropy*/) { storage_.crash(); }
  /// A persistence point: makes a random prefix of the pending writes durable.
  void persist(std::uint64_t entropy) {
    const WriteSeq durable = storage_.durable_seq();
    const WriteSeq last = storage_.last_seq();
    if (last > durable) {
      storage_.sync_through(durable + 1 + entropy % (last - durable));
    }
  }
  /// Makes every pending write durable.
  void persist_all() { storage_.sync(); }
  /// Whether a write issued is not yet durable (a crash now would lose it).
  bool unsynced() const noexcept { return storage_.unsynced_writes() != 0; }
  bool supports_media_faults() const noexcept { return false; }
  /// Power fails during a sync: nothing to tear in memory. Returns false (no crash needed).
  bool fail_sync(std::uint64_t) { return false; }
  bool corrupt(std::uint64_t) { return false; }
  const std::string& last_corruption() const noexcept { return failure_; }
  const std::string& last_failure() const noexcept { return failure_; }

 private:
  MemoryStorage storage_;
  std::string failure_;
};

/// FileStorage over a SimFileSystem: the write-ahead log as on a real disk. A persistence point
/// writes and syncs the pending batch; a failed sync leaves the batch written but not durable,
/// and the crash that follows keeps a prefix of it cut at a 512-byte or 4 KiB boundary
/// (possibly zero-extended), which recovery must cut off. Media corruption flips a bit of a
/// file; recovery must refuse to start (or, in a torn tail, cut it off), never hand a damaged
/// entry to the state machine.
template <>
class SimStorage<FileStorage<SimFileSystem>> {
 public:
  struct Options {
    /// Small segments, so that rotation and multi-segment recovery happen in every run.
    std::uint64_t segment_bytes = 16 << 10;
  };

  explicit SimStorage(const Options& options) : options_(options) { recover(); }

  FileStorage<SimFileSystem>& get() noexcept { return *storage_; }
  const FileStorage<SimFileSystem>& get() const noexcept { return *storage_; }
  bool up() const noexcept { return storage_ != nullptr; }

  /// Opens the log (recovery). Returns false, and keeps the reason, when recovery refuses:
  /// the node then stays down, as a real one would.
  bool recover() {
    storage_.reset();
    try {
      FileStorageOptions o;
      o.directory = "/node";
      o.segment_bytes = options_.segment_bytes;
      o.background_sync = false;
      o.salt_seed = ++salt_seed_;  // deterministic: a run replays byte for byte
      storage_ = std::make_unique<FileStorage<SimFileSystem>>(o, fs_);
      return true;
    } catch (const std::system_error& e) {
      failure_ = e.what();
      return false;
    }
  }

  /// The process dies: pending writes vanish, the disk keeps what `entropy` decides of the
  /// unsynced bytes (see fail_sync). The dead FileStorage object stays until recover(), so that
  /// the stopped group that refers to it never dangles; nothing writes through it any more.
  void crash(std::uint64_t entropy) {
    if (storage_) {
      storage_->abandon();
    }
    CrashPlan plan;
    for (const std::string& path : fs_.paths()) {
      const std::uint64_t unsynced = fs_.unsynced_bytes(path);
      if (unsynced == 0) {
        continue;
      }
      const std::uint64_t sector = (entropy & 1) != 0 ? 4096 : 512;
      const std::uint64_t kept = (entropy >> 1) % (unsynced + 1) / sector * sector;
      plan.kept_bytes[path] = kept;
      if ((entropy >> 40) % 2 == 0 && kept < unsynced) {
        plan.zero_bytes[path] = sector - kept % sector;  // the size got out, the data did not
      }
    }
    plan.kept_directory_ops =
        static_cast<std::size_t>((entropy >> 48) % (fs_.unsynced_directory_ops() + 1));
    fs_.crash(plan);
  }

  /// A persistence point: the pending batch is written and synced.
  void persist(std::uint64_t) {
    if (storage_) {
      (void)storage_->sync_now();
    }
  }

  void persist_all() { persist(0); }
  /// Whether a write issued is not yet durable (a crash now would lose it).
  bool unsynced() const noexcept {
    return storage_ != nullptr && storage_->durable_seq() < storage_->last_seq();
  }
  bool supports_media_faults() const noexcept { return true; }

  /// Power fails in the middle of the next sync: the batch is written, not durable, and the
  /// storage fails stop. Returns true: the caller must crash the node now.
  bool fail_sync(std::uint64_t) {
    if (!storage_) {
      return false;
    }
    fs_.fail_next_sync();
    (void)storage_->sync_now();
    return true;
  }

  /// Flips one bit of one of the node's files (call while it is down). Returns whether a bit
  /// was flipped.
  bool corrupt(std::uint64_t entropy) {
    const auto paths = fs_.paths();
    if (paths.empty()) {
      return false;
    }
    const std::string& path = paths[entropy % paths.size()];
    const std::uint64_t size = fs_.size(path);
    if (size == 0) {
      return false;
    }
    const std::uint64_t offset = (entropy >> 16) % size;
    corruption_ = path + " at byte " + std::to_string(offset) + " of " + std::to_string(size);
    return fs_.flip_bit(path, offset, static_cast<unsigned>(entropy >> 8));
  }
  /// Where the last corrupt() flipped a bit.
  const std::string& last_corruption() const noexcept { return corruption_; }

  const std::string& last_failure() const noexcept { return failure_; }
  SimFileSystem& file_system() noexcept { return fs_; }

 private:
  Options options_;
  SimFileSystem fs_;
  std::unique_ptr<FileStorage<SimFileSystem>> storage_;
  std::string failure_;
  std::string corruption_;
  std::uint64_t salt_seed_ = 0x5a17;
};

}  // namespace tenure::raft::testing
