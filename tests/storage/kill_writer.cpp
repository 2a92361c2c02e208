// The child of the kill -9 test (tenure_kill9_driver): opens a FileStorage on a real directory
// with its sync thread, checks what recovery found, then appends entries until it is killed,
// acknowledging on stdout each batch that has become durable.
//
//     tenure_kill_writer <directory> <seed> <segment-bytes> <max-seconds>
//
// Output, one line each, flushed at once:
//     start <first> <last> <term>        recovery found entries first..last; appending in <term>
//     ack <index> <hs-term> <hs-commit>  entries up to <index>, and the hard state
//                                        {hs-term, 1, hs-commit}, are durable
// An ack is written only after durable_seq() covers the writes it names: that is the promise the
// driver holds FileStorage to after a SIGKILL. Batches are issued without waiting, up to
// kMaxInFlight at a time, so the sync thread groups them as it would under a busy Raft group.
//
// Exit status: killed by the driver; 0 after max-seconds (a driver that died); 2 usage; 3 recovery
// threw; 4 the recovered log is not the one written; 5 a write failed.
#include "kill9_log.hpp"

#include <raft/errc.hpp>
#include <raft/file_storage.hpp>
#include <raft/file_system.hpp>
#include <raft/storage.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <string>
#include <system_error>
#include <vector>

namespace {

using tenure::kill9::LogIndex;
using tenure::kill9::Term;
using tenure::raft::EntryType;
using tenure::raft::EntryView;
using tenure::raft::FileStorage;
using tenure::raft::HardState;
using tenure::raft::PosixFileSystem;
using tenure::raft::WriteSeq;

constexpr std::size_t kMaxInFlight = 4;       // batches issued but not yet durable
constexpr std::uint64_t kMaxBatch = 8;        // entries per batch: 1 to this
constexpr std::uint64_t kHardStateEvery = 8;  // on average, one batch in this many saves it

// A batch issued: the write sequence that makes it durable, what it holds.
struct Issued {
  WriteSeq seq = 0;
  LogIndex last = 0;
  HardState hard_state;
};

class Writer {
 public:
  Writer(FileStorage<PosixFileSystem>& storage, std::mutex& mutex, std::condition_variable& durable,
         std::uint64_t seed)
      : storage_(storage), mutex_(mutex), durable_(durable), rng_(seed) {}

  // Saves the new term before any entry of it, as a Raft node records its term before acting in
  // it; then appends until the deadline.
  int run(std::chrono::steady_clock::time_point deadline) {
    hard_state_ = storage_.hard_state();
    hard_state_.term += 1;
    hard_state_.vote = 1;
    const WriteSeq first = storage_.save_hard_state(hard_state_);
    acked_ = storage_.last_index();
    std::printf("start %llu %llu %llu\n", ull(storage_.first_index()), ull(storage_.last_index()),
                ull(hard_state_.term));
    std::fflush(stdout);
    in_flight_.push_back(Issued{first, acked_, hard_state_});

    while (std::chrono::steady_clock::now() < deadline) {
      issue_batch();
      if (in_flight_.size() >= kMaxInFlight) {
        wait_for(in_flight_.front().seq);
      }
      acknowledge();
      if (const auto ec = storage_.error()) {
        std::fprintf(stderr, "kill_writer: a write failed: %s\n", ec.message().c_str());
        return 5;
      }
    }
    return 0;
  }

 private:
  static unsigned long long ull(std::uint64_t v) { return static_cast<unsigned long long>(v); }

  void issue_batch() {
    const std::uint64_t count = 1 + tenure::kill9::splitmix64(rng_) % kMaxBatch;
    payloads_.resize(count);
    entries_.resize(count);
    const LogIndex first = storage_.last_index() + 1;
    for (std::uint64_t i = 0; i < count; ++i) {
      tenure::kill9::payload_of(first + i, hard_state_.term, payloads_[i]);
      entries_[i] = EntryView{hard_state_.term, first + i, EntryType::normal, payloads_[i]};
    }
    WriteSeq seq = storage_.append(entries_);
    if (tenure::kill9::splitmix64(rng_) % kHardStateEvery == 0) {
      hard_state_.commit = acked_;  // never beyond what is durable: a plausible commit index
      seq = storage_.save_hard_state(hard_state_);
    }
    in_flight_.push_back(Issued{seq, storage_.last_index(), hard_state_});
  }

  void wait_for(WriteSeq seq) {
    std::unique_lock lock(mutex_);
    durable_.wait(lock, [&] { return storage_.durable_seq() >= seq || storage_.error(); });
  }

  // Prints one ack for every batch durable so far (the newest of them stands for all).
  void acknowledge() {
    const WriteSeq durable = storage_.durable_seq();
    const Issued* newest = nullptr;
    Issued done;
    while (!in_flight_.empty() && in_flight_.front().seq <= durable) {
      done = in_flight_.front();
      newest = &done;
      in_flight_.pop_front();
    }
    if (newest != nullptr) {
      acked_ = done.last;
      std::printf("ack %llu %llu %llu\n", ull(done.last), ull(done.hard_state.term),
                  ull(done.hard_state.commit));
      std::fflush(stdout);
    }
  }

  FileStorage<PosixFileSystem>& storage_;
  std::mutex& mutex_;
  std::condition_variable& durable_;
  std::uint64_t rng_;
  HardState hard_state_;
  LogIndex acked_ = 0;
  std::deque<Issued> in_flight_;
  std::vector<std::vector<std::byte>> payloads_;
  std::vector<EntryView> entries_;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s <directory> <seed> <segment-bytes> <max-seconds>\n", argv[0]);
    return 2;
  }
  const std::string directory = argv[1];
  const std::uint64_t seed = std::strtoull(argv[2], nullptr, 0);
  const std::uint64_t segment_bytes = std::strtoull(argv[3], nullptr, 0);
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(std::strtoll(argv[4], nullptr, 0));

  // Declared before the storage: its sync thread calls on_durable until the storage is gone.
  std::mutex mutex;
  std::condition_variable durable;
  auto options = tenure::kill9::options(directory, segment_bytes, /*background_sync=*/true);
  options.on_durable = [&] {
    std::lock_guard lock(mutex);  // pairs with wait_for(): no wake-up falls between check and wait
    durable.notify_all();
  };

  PosixFileSystem fs;
  try {
    FileStorage<PosixFileSystem> storage(options, fs);
    if (const std::string problem = tenure::kill9::check_log(storage); !problem.empty()) {
      std::fprintf(stderr, "kill_writer: recovered a log that was never written: %s\n",
                   problem.c_str());
      return 4;
    }
    return Writer(storage, mutex, durable, seed).run(deadline);
  } catch (const std::system_error& e) {
    std::fprintf(stderr, "kill_writer: recovery failed: %s\n", e.what());
    return 3;
  }
}
