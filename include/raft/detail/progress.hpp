// Per-follower replication progress, kept by the leader (Raft paper Figure 2: nextIndex,
// matchIndex; flow control in the manner of etcd's tracker.Progress).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include <raft/types.hpp>

namespace tenure::raft::detail {

/// The append messages in flight to one follower, for flow control: a ring of (last index sent,
/// payload bytes), sized once at construction.
class Inflights {
 public:
  void init(std::size_t capacity, std::uint64_t max_bytes) {
    ring_.assign(capacity, Slot{});
    max_bytes_ = max_bytes;
    reset();
  }
  void reset() noexcept {
    head_ = 0;
    count_ = 0;
    bytes_ = 0;
  }
  bool full() const noexcept { return count_ == ring_.size() || bytes_ >= max_bytes_; }
  std::size_t count() const noexcept { return count_; }
  std::uint64_t bytes() const noexcept { return bytes_; }

  void add(LogIndex last, std::uint64_t bytes) noexcept {
    ring_[(head_ + count_) % ring_.size()] = Slot{last, bytes};
    ++count_;
    bytes_ += bytes;
  }

  /// Frees the oldest message in flight: lets one append through a window that lost messages.
  void free_first() noexcept {
    if (count_ != 0) {
      bytes_ -= ring_[head_].bytes;
      head_ = (head_ + 1) % ring_.size();
      --count_;
    }
  }

  /// Frees every message whose last entry is at or below `index` (acknowledged).
  void free_through(LogIndex index) noexcept {
    while (count_ != 0 && ring_[head_].last <= index) {
      bytes_ -= ring_[head_].bytes;
      head_ = (head_ + 1) % ring_.size();
      --count_;
    }
  }

 private:
  struct Slot {
    LogIndex last = 0;
    std::uint64_t bytes = 0;
  };
  std::vector<Slot> ring_;
  std::size_t head_ = 0;
  std::size_t count_ = 0;
  std::uint64_t bytes_ = 0;
  std::uint64_t max_bytes_ = 0;
};

/// How the leader replicates to one follower.
enum class ProgressState : std::uint8_t {
  /// Finding the point where the logs match: one append at a time, retried each heartbeat.
  probe,
  /// Logs match: appends are pipelined up to the inflight window.
  replicate,
  /// The follower needs entries the leader has compacted: a snapshot must be sent.
  snapshot,
};

/// The leader's view of one follower. Valid only while leader; reset on election.
struct Progress {
  LogIndex match = 0;  // highest index known replicated on the follower
  LogIndex next = 1;   // next index to send
  ProgressState state = ProgressState::probe;
  bool probe_sent = false;      // probe: an append is outstanding
  std::uint64_t acked_seq = 0;  // newest heartbeat/append sequence the follower answered
  Inflights inflight;
  // Snapshot state: which snapshot is being sent, how far, and how far acknowledged.
  LogIndex snap_index = 0;
  std::uint64_t snap_sent = 0;
  std::uint64_t snap_acked = 0;
  std::uint64_t snap_rewound = ~std::uint64_t{0};  // the offset last resent from
  std::uint64_t snap_acked_at_heartbeat = 0;
  bool snap_started = false;  // a chunk of this snapshot went out (an empty one: one message)
  std::int64_t snap_progress_at = 0;  // leader's clock (ns): the transfer began or last advanced
  bool snap_done_recently = false;    // it answered "done" since the last heartbeat

  void reset(LogIndex last_index) noexcept {
    match = 0;
    next = last_index + 1;
    state = ProgressState::probe;
    probe_sent = false;
    acked_seq = 0;
    inflight.reset();
    snap_index = 0;
    snap_sent = 0;
    snap_acked = 0;
    snap_rewound = ~std::uint64_t{0};
    snap_acked_at_heartbeat = 0;
    snap_started = false;
    snap_progress_at = 0;
    snap_done_recently = false;
  }
};

}  // namespace tenure::raft::detail
