// Benchmarks of FileStorage on a real disk against the disk itself.
//
// - BM_FileStorage_Append/<entries per batch>: one durable batch per iteration. The benchmark
//   thread appends the batch of 128-byte entries and waits in sync_now() while the storage's own
//   sync thread (background_sync, as in production) writes it and calls fdatasync once.
//   items_per_second = entries made durable; bytes_per_second = their payload bytes (the WAL
//   writes ~40 more per entry: record header, entry header); fsyncs_per_second and
//   fsyncs_per_batch count the storage's sync() and sync_dir() calls, so a second sync per batch
//   would show. allocs_per_op: heap allocations per batch, on the benchmark thread and the sync
//   thread together (not zero: batches and recovery state are vectors; benchmark.smoke only
//   checks that it is reported).
// - BM_RawFdatasync: write(128 bytes) + fdatasync in a loop on a file in the same directory: what
//   the disk allows. fsync_ratio on BM_FileStorage_Append/1 is its batches per second over the
//   syncs per second of the same raw loop run just before and just after it (or compare
//   Append/1's items_per_second with RawFdatasync's); 1.0 means FileStorage adds nothing to a
//   sync-bound write. A disk shared with other work makes both noisy: compare medians.
//
// The directory is a fresh one under $TENURE_BENCH_DIR (default /tmp), removed afterwards; point
// it at the disk you mean to measure. The counting operator new lives in lease_benchmarks.cpp.
#include <raft/file_storage.hpp>
#include <raft/file_system.hpp>
#include <raft/message.hpp>
#include <raft/storage.hpp>
#include <raft/testing/allocation_guard.hpp>
#include <raft/types.hpp>

#include <benchmark/benchmark.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <span>
#include <string>
#include <system_error>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

namespace {

using tenure::raft::EntryType;
using tenure::raft::EntryView;
using tenure::raft::FileStorage;
using tenure::raft::FileStorageOptions;
using tenure::raft::LogIndex;
using tenure::raft::PosixFileSystem;
using tenure::raft::testing::thread_allocation_counts;

constexpr std::size_t kEntryBytes = 128;
// The in-memory log is compacted once it holds this many entries, as a group compacts what it
// has applied, so a long run neither grows without bound nor copies ever larger rings.
constexpr LogIndex kRetainedEntries = 1 << 16;

// A scratch directory under $TENURE_BENCH_DIR (or /tmp), removed with the object.
class ScratchDirectory {
 public:
  ScratchDirectory() {
    const char* base = std::getenv("TENURE_BENCH_DIR");
    std::string pattern =
        std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/tenure-bench-XXXXXX";
    if (::mkdtemp(pattern.data()) != nullptr) {
      path_ = pattern;
    }
  }
  ScratchDirectory(const ScratchDirectory&) = delete;
  ScratchDirectory& operator=(const ScratchDirectory&) = delete;
  ~ScratchDirectory() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  bool ok() const { return !path_.empty(); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// PosixFileSystem, counting the syncs FileStorage asks for (from its sync thread).
class CountingFileSystem {
 public:
  using handle = PosixFileSystem::handle;

  std::error_code open_append(const std::string& path, handle& h) {
    return fs_.open_append(path, h);
  }
  std::error_code append(handle h, std::span<const std::byte> data) { return fs_.append(h, data); }
  std::error_code sync(handle h) {
    syncs_.fetch_add(1, std::memory_order_relaxed);
    return fs_.sync(h);
  }
  std::error_code truncate(handle h, std::uint64_t size) { return fs_.truncate(h, size); }
  void close(handle h) { fs_.close(h); }
  std::error_code read_all(const std::string& path, std::vector<std::byte>& bytes) {
    return fs_.read_all(path, bytes);
  }
  std::error_code read_at(const std::string& path, std::uint64_t offset, std::span<std::byte> out,
                          std::size_t& n) {
    return fs_.read_at(path, offset, out, n);
  }
  std::error_code list(const std::string& dir, std::vector<std::string>& names) {
    return fs_.list(dir, names);
  }
  std::error_code rename(const std::string& from, const std::string& to) {
    return fs_.rename(from, to);
  }
  std::error_code remove(const std::string& path) { return fs_.remove(path); }
  std::error_code sync_dir(const std::string& dir) {
    syncs_.fetch_add(1, std::memory_order_relaxed);
    return fs_.sync_dir(dir);
  }
  std::error_code make_dir(const std::string& dir) { return fs_.make_dir(dir); }

  std::uint64_t syncs() const { return syncs_.load(std::memory_order_relaxed); }

 private:
  PosixFileSystem fs_;
  std::atomic<std::uint64_t> syncs_{0};
};
static_assert(tenure::raft::FileSystem<CountingFileSystem>);

// A raw loop timed in `directory`: write(128 bytes) + fdatasync on a file of its own.
struct RawSyncs {
  double syncs = 0;
  double seconds = 0;
  bool failed = false;

  // Runs `count` syncs or for `limit` seconds, whichever ends first, adding to the totals.
  void run(const std::string& directory, int count, double limit) {
    const std::string path = directory + "/raw-calibration";
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
      failed = true;
      return;
    }
    const std::byte record[kEntryBytes] = {};
    const auto start = std::chrono::steady_clock::now();
    double elapsed = 0;
    for (int done = 0; done < count && elapsed < limit; ++done) {
      if (::write(fd, record, sizeof record) != static_cast<ssize_t>(sizeof record) ||
          ::fdatasync(fd) != 0) {
        failed = true;
        break;
      }
      elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      syncs += 1;
    }
    seconds += elapsed;
    ::close(fd);
    ::unlink(path.c_str());
  }

  double per_second() const { return !failed && seconds > 0 ? syncs / seconds : 0; }
};

void BM_FileStorage_Append(benchmark::State& state) {
  if (!tenure::raft::testing::allocation_counting_installed()) {
    state.SkipWithError("allocation counting is not installed: allocs_per_op would read 0");
    return;
  }
  const auto batch = static_cast<std::size_t>(state.range(0));
  ScratchDirectory scratch;
  if (!scratch.ok()) {
    state.SkipWithError("cannot create a scratch directory");
    return;
  }
  // The raw rate on the same disk, just before and just after (a shared disk drifts): the
  // baseline of fsync_ratio.
  RawSyncs raw;
  if (batch == 1) {
    raw.run(scratch.path(), 2000, 0.25);
  }

  CountingFileSystem fs;
  // Allocations on the sync thread, read there after each batch (on_durable runs on it).
  std::atomic<std::uint64_t> sync_thread_allocations{0};
  FileStorageOptions options;
  options.directory = scratch.path() + "/log";
  options.background_sync = true;
  options.on_durable = [&sync_thread_allocations] {
    sync_thread_allocations.store(thread_allocation_counts().allocations,
                                  std::memory_order_relaxed);
  };
  FileStorage<CountingFileSystem> storage(options, fs);

  const std::vector<std::byte> payload(kEntryBytes, std::byte{0x5a});
  std::vector<EntryView> entries(batch);
  const auto append_batch = [&] {
    const LogIndex first = storage.last_index() + 1;
    for (std::size_t i = 0; i < batch; ++i) {
      entries[i] = EntryView{1, first + i, EntryType::normal, payload};
    }
    (void)storage.append(entries);
    if (storage.last_index() - storage.first_index() >= kRetainedEntries) {
      storage.compact(storage.last_index() - 1);
    }
    return storage.sync_now();
  };
  // Warm-up: buffers reach the batch's size, the segment exists.
  for (int i = 0; i < 16; ++i) {
    if (append_batch()) {
      state.SkipWithError("a warm-up batch failed");
      return;
    }
  }

  const std::uint64_t syncs_before = fs.syncs();
  const std::uint64_t sync_thread_before = sync_thread_allocations.load();
  bool ok = true;
  const auto start = std::chrono::steady_clock::now();
  tenure::raft::testing::AllocationGuard guard;
  for (auto _ : state) {
    if (append_batch()) {
      ok = false;
      break;
    }
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const std::uint64_t allocations =
      guard.allocations() + (sync_thread_allocations.load() - sync_thread_before);
  const std::uint64_t syncs = fs.syncs() - syncs_before;
  if (!ok) {
    state.SkipWithError(("a batch failed: " + storage.error().message()).c_str());
    return;
  }

  const auto iterations = static_cast<double>(state.iterations());
  const auto items = static_cast<std::int64_t>(state.iterations() * batch);
  state.SetItemsProcessed(items);
  state.SetBytesProcessed(items * static_cast<std::int64_t>(kEntryBytes));
  state.counters["allocs_per_op"] = static_cast<double>(allocations) / iterations;
  state.counters["fsyncs_per_second"] =
      benchmark::Counter(static_cast<double>(syncs), benchmark::Counter::kIsRate);
  state.counters["fsyncs_per_batch"] = static_cast<double>(syncs) / iterations;
  if (batch == 1) {
    raw.run(scratch.path(), 2000, 0.25);
    if (raw.per_second() > 0 && seconds > 0) {
      state.counters["fsync_ratio"] = iterations / seconds / raw.per_second();
    }
  }
}
BENCHMARK(BM_FileStorage_Append)
    ->Arg(1)
    ->Arg(16)
    ->Arg(256)
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

void BM_RawFdatasync(benchmark::State& state) {
  ScratchDirectory scratch;
  const std::string path = scratch.path() + "/raw";
  const int fd =
      scratch.ok() ? ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644) : -1;
  if (fd < 0) {
    state.SkipWithError("cannot create a file in a scratch directory");
    return;
  }
  const std::byte record[kEntryBytes] = {};
  bool ok = true;
  tenure::raft::testing::AllocationGuard guard;
  for (auto _ : state) {
    if (::write(fd, record, sizeof record) != static_cast<ssize_t>(sizeof record) ||
        ::fdatasync(fd) != 0) {
      ok = false;
      break;
    }
  }
  const auto allocations = guard.allocations();
  ::close(fd);
  if (!ok) {
    state.SkipWithError("write or fdatasync failed");
    return;
  }
  const auto iterations = static_cast<double>(state.iterations());
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(kEntryBytes));
  state.counters["allocs_per_op"] = static_cast<double>(allocations) / iterations;
  state.counters["fsyncs_per_second"] = benchmark::Counter(iterations, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_RawFdatasync)->Unit(benchmark::kMicrosecond)->UseRealTime();

}  // namespace
