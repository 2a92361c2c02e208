// SimNetwork: a deterministic simulated network for RaftGroups in one process.
#pragma once

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <unordered_map>
#include <utility>
#include <vector>

#include <raft/codec.hpp>
#include <raft/message.hpp>
#include <raft/random.hpp>
#include <raft/types.hpp>

namespace tenure::raft::testing {

/// The faults a SimNetwork starts with; each can be changed while it runs.
struct SimNetworkOptions {
  /// Every message is delayed by a uniform random time in [min_delay, max_delay]; a wide range
  /// reorders messages.
  std::chrono::nanoseconds min_delay{std::chrono::microseconds(500)};
  std::chrono::nanoseconds max_delay{std::chrono::milliseconds(2)};
  /// Probability that a message is lost, and that it is delivered twice.
  double drop_rate = 0.0;
  double duplicate_rate = 0.0;
  /// Probability that a message is also delivered once more much later, after
  /// [late_min_delay, late_max_delay] more: a copy held up in a buffer or on a slow path, which
  /// arrives after terms have moved on and its receiver may have restarted (stale requests,
  /// stale responses, stale TimeoutNow).
  double late_duplicate_rate = 0.0;
  std::chrono::nanoseconds late_min_delay{std::chrono::milliseconds(50)};
  std::chrono::nanoseconds late_max_delay{std::chrono::milliseconds(600)};
  /// Seeds every random choice of the network.
  std::uint64_t seed = 1;
  /// The most entries one delivered append may carry (the decoder's scratch).
  std::size_t max_entries_per_message = 4096;
  /// The most messages in flight at once; past it the network drops (a real one has finite
  /// buffers, and a message storm must not exhaust the simulator's memory).
  std::size_t max_in_flight = 200'000;
};

/// A network between nodes 1..64 that is deterministic from its seed: delays (hence
/// reordering), loss, duplication (soon after, or much later), one-way blocks (asymmetric
/// partitions), symmetric partitions and clogged links (extra delay on one link).
///
/// Every message is encoded with tenure's codec when sent and decoded when delivered, so the
/// wire format is exercised by every simulation, and a delivered message never aliases the
/// sender's memory. Frames live in pooled buffers and events in a pre-grown heap: after warm-up,
/// sending and delivering allocate nothing.
///
/// Time is the simulation's true time in nanoseconds, set by the driver (SimCluster) with
/// set_now() before it sends or delivers.
///
/// Thread-safety: one thread. Allocation: when a pool or the event heap grows past its
/// high-water mark.
class SimNetwork {
 public:
  struct Stats {
    std::uint64_t sent = 0;
    std::uint64_t delivered = 0;
    std::uint64_t dropped = 0;      // lost at random
    std::uint64_t duplicated = 0;   // delivered twice
    std::uint64_t late = 0;         // delivered once more, much later
    std::uint64_t blocked = 0;      // lost to a block or partition
    std::uint64_t undecodable = 0;  // must stay 0: a frame the codec refused
    std::uint64_t overflowed = 0;   // lost because max_in_flight messages were in flight
  };

  static constexpr std::size_t kMaxNodes = 64;

  explicit SimNetwork(SimNetworkOptions options = {})
      : options_(options), random_(options.seed), scratch_(options.max_entries_per_message) {
    events_.reserve(1024);
  }

  SimNetwork(const SimNetwork&) = delete;
  SimNetwork& operator=(const SimNetwork&) = delete;

  // --- time and sending ------------------------------------------------------------------------
  void set_now(std::int64_t now) noexcept { now_ = now; }
  std::int64_t now() const noexcept { return now_; }

  /// Takes a message from a group: copies it into a frame and schedules its delivery, or drops
  /// it as the faults say.
  void send(const Message& m) {
    ++stats_.sent;
    if (blocked(m.from, m.to)) {
      ++stats_.blocked;
      return;
    }
    if (chance(options_.drop_rate)) {
      ++stats_.dropped;
      return;
    }
    if (events_.size() >= options_.max_in_flight) {
      ++stats_.overflowed;
      return;
    }
    const std::size_t frame = encode_frame(m);
    if (keep_requests_ && (is_answered_request(m.type) || m.type == MessageType::timeout_now)) {
      const Kept kind =
          m.type == MessageType::timeout_now ? Kept::timeout_now : Kept::answered_request;
      auto& kept = kept_[kept_key(m.from, m.to, kind)];
      kept.assign(frames_[frame].data(), frames_[frame].data() + frame_sizes_[frame]);
    }
    schedule(frame, m.from, m.to);
    if (chance(options_.duplicate_rate)) {
      ++stats_.duplicated;
      schedule(copy_frame(frame), m.from, m.to);
    }
    if (chance(options_.late_duplicate_rate)) {
      ++stats_.late;
      const std::int64_t span = options_.late_max_delay.count() - options_.late_min_delay.count();
      const std::int64_t extra =
          options_.late_min_delay.count() +
          (span > 0 ? static_cast<std::int64_t>(random_.below(static_cast<std::uint64_t>(span)))
                    : 0);
      schedule(copy_frame(frame), m.from, m.to, extra);
    }
  }

  /// The delivery time of the next message, or INT64_MAX when none is in flight.
  std::int64_t next_delivery() const noexcept {
    return events_.empty() ? std::numeric_limits<std::int64_t>::max() : events_.front().at;
  }

  /// Delivers the earliest message due at or before now() to `deliver(const Message&)`. Returns
  /// false when none is due. A message whose link became blocked while in flight is lost.
  template <class Deliver>
  bool deliver_next(Deliver&& deliver) {
    return deliver_next(std::forward<Deliver>(deliver), [](NodeId) { return std::int64_t{0}; });
  }

  /// As above, but a message to a node for which `hold_until(to)` is in the future waits until
  /// then (a paused process reads its socket only when it resumes).
  template <class Deliver, class HoldUntil>
  bool deliver_next(Deliver&& deliver, HoldUntil&& hold_until) {
    if (events_.empty() || events_.front().at > now_) {
      return false;
    }
    std::pop_heap(events_.begin(), events_.end(), Later{});
    Event e = events_.back();
    events_.pop_back();
    if (const std::int64_t until = hold_until(e.to); until > now_) {
      e.at = until;
      events_.push_back(e);
      std::push_heap(events_.begin(), events_.end(), Later{});
      return true;
    }
    if (blocked(e.from, e.to)) {
      ++stats_.blocked;
      release(e.frame);
      return true;
    }
    const std::vector<std::byte>& bytes = frames_[e.frame];
    const auto decoded =
        decode(std::span<const std::byte>(bytes.data(), frame_sizes_[e.frame]), scratch_);
    if (!decoded) {
      ++stats_.undecodable;
      release(e.frame);
      return true;
    }
    ++stats_.delivered;
    deliver(decoded.value());
    release(e.frame);  // only after the receiver is done with the entry views
    return true;
  }

  // --- faults ----------------------------------------------------------------------------------
  void set_drop_rate(double p) noexcept { options_.drop_rate = p; }
  void set_duplicate_rate(double p) noexcept { options_.duplicate_rate = p; }
  void set_late_duplicate_rate(double p) noexcept { options_.late_duplicate_rate = p; }
  void set_delay(std::chrono::nanoseconds min, std::chrono::nanoseconds max) noexcept {
    options_.min_delay = min;
    options_.max_delay = std::max(min, max);
  }
  /// Messages from `from` to `to` are lost (one way: an asymmetric partition).
  void block(NodeId from, NodeId to) noexcept { blocked_[index(from)] |= bit(to); }
  void unblock(NodeId from, NodeId to) noexcept { blocked_[index(from)] &= ~bit(to); }
  /// Cuts `node` off from every other node, both ways.
  void isolate(NodeId node) noexcept {
    for (std::size_t i = 0; i < kMaxNodes; ++i) {
      blocked_[i] |= bit(node);
    }
    blocked_[index(node)] = ~std::uint64_t{0};
  }
  /// Splits the nodes in two groups that cannot reach each other (a symmetric partition).
  void partition(std::span<const NodeId> side_a, std::span<const NodeId> side_b) noexcept {
    for (NodeId a : side_a) {
      for (NodeId b : side_b) {
        block(a, b);
        block(b, a);
      }
    }
  }
  /// Adds `extra` delay to every message from `from` to `to` (a clogged link).
  void clog(NodeId from, NodeId to, std::chrono::nanoseconds extra) noexcept {
    clog_[index(from)][index(to)] = extra.count();
  }
  /// Removes every block, partition and clog.
  void heal() noexcept {
    blocked_.fill(0);
    for (auto& row : clog_) {
      row.fill(0);
    }
  }
  bool blocked(NodeId from, NodeId to) const noexcept {
    return (blocked_[index(from)] & bit(to)) != 0;
  }

  const Stats& stats() const noexcept { return stats_; }
  std::size_t in_flight() const noexcept { return events_.size(); }
  /// Drops every message `from` has in flight: a power failure takes the send buffers and the
  /// NIC queue with the process. Returns how many were lost.
  std::size_t drop_from(NodeId from) {
    std::size_t lost = 0;
    for (std::size_t i = 0; i < events_.size();) {
      if (events_[i].from == from) {
        release(events_[i].frame);
        events_[i] = events_.back();
        events_.pop_back();
        ++lost;
      } else {
        ++i;
      }
    }
    std::make_heap(events_.begin(), events_.end(), Later{});
    stats_.dropped += lost;
    return lost;
  }

  /// Keeps, per link, a copy of the last request sent on it that a receiver answers even when it
  /// is stale (append, heartbeat, pre-vote), and of the last TimeoutNow, so that replay_last()
  /// can deliver one once more much later. Off by default (it costs a copy per request).
  void keep_last_requests(bool on) {
    keep_requests_ = on;
    if (!on) {
      kept_.clear();
    }
  }

  /// What replay_last() replays: the last request answered even when stale, or the last
  /// TimeoutNow.
  enum class Kept : std::uint8_t { answered_request, timeout_now };

  /// Delivers the last message of kind `kind` that `from` sent `to` once more, after the usual
  /// delay: a stale duplicate, arriving after its receiver's term moved on or after it
  /// restarted. Returns false when none was kept.
  bool replay_last(NodeId from, NodeId to, Kept kind) {
    const auto it = kept_.find(kept_key(from, to, kind));
    if (it == kept_.end()) {
      return false;
    }
    const std::size_t frame = acquire(it->second.size());
    std::copy(it->second.begin(), it->second.end(), frames_[frame].data());
    schedule(frame, from, to);
    ++stats_.late;
    return true;
  }

  /// Drops every message in flight (e.g. when a whole cluster restarts).
  void clear() noexcept {
    for (const Event& e : events_) {
      release(e.frame);
    }
    events_.clear();
  }

 private:
  struct Event {
    std::int64_t at = 0;
    std::uint64_t order = 0;  // ties broken by send order: deterministic
    NodeId from = kNoNode;
    NodeId to = kNoNode;
    std::size_t frame = 0;
  };
  struct Later {
    bool operator()(const Event& a, const Event& b) const noexcept {
      return a.at != b.at ? a.at > b.at : a.order > b.order;
    }
  };

  // The requests a receiver answers even when they are stale (with a reject in its own term).
  static bool is_answered_request(MessageType t) noexcept {
    return t == MessageType::append || t == MessageType::heartbeat || t == MessageType::pre_vote;
  }

  static std::uint32_t kept_key(NodeId from, NodeId to, Kept kind) noexcept {
    return static_cast<std::uint32_t>(index(from) << 8 | index(to) << 1) |
           static_cast<std::uint32_t>(kind);
  }

  static std::size_t index(NodeId id) noexcept {
    return static_cast<std::size_t>((id - 1) % kMaxNodes);
  }
  static std::uint64_t bit(NodeId id) noexcept { return std::uint64_t{1} << index(id); }

  bool chance(double p) noexcept {
    if (p <= 0.0) {
      return false;
    }
    return static_cast<double>(random_.next() >> 11) * 0x1.0p-53 < p;
  }

  std::size_t acquire(std::size_t size) {
    std::size_t frame;
    if (free_.empty()) {
      frame = frames_.size();
      frames_.emplace_back();
      frame_sizes_.push_back(0);
    } else {
      frame = free_.back();
      free_.pop_back();
    }
    if (frames_[frame].size() < size) {
      frames_[frame].resize(std::max(size, frames_[frame].size() * 2));
    }
    frame_sizes_[frame] = size;
    return frame;
  }

  void release(std::size_t frame) { free_.push_back(frame); }

  std::size_t encode_frame(const Message& m) {
    const std::size_t size = encoded_size(m);
    const std::size_t frame = acquire(size);
    const auto written = encode(m, std::span<std::byte>(frames_[frame].data(), size));
    (void)written;  // a message the core built is always encodable; the codec tests pin it
    return frame;
  }

  std::size_t copy_frame(std::size_t frame) {
    const std::size_t size = frame_sizes_[frame];
    const std::size_t copy = acquire(size);
    std::copy_n(frames_[frame].data(), size, frames_[copy].data());
    return copy;
  }

  void schedule(std::size_t frame, NodeId from, NodeId to, std::int64_t extra = 0) {
    const std::int64_t span = options_.max_delay.count() - options_.min_delay.count();
    const std::int64_t delay =
        options_.min_delay.count() +
        (span > 0 ? static_cast<std::int64_t>(random_.below(static_cast<std::uint64_t>(span) + 1))
                  : 0) +
        clog_[index(from)][index(to)] + extra;
    events_.push_back(Event{now_ + delay, ++order_, from, to, frame});
    std::push_heap(events_.begin(), events_.end(), Later{});
  }

  SimNetworkOptions options_;
  Xoshiro256 random_;
  std::int64_t now_ = 0;
  std::uint64_t order_ = 0;
  std::vector<Event> events_;  // a binary heap, earliest first
  std::vector<std::vector<std::byte>> frames_;
  std::vector<std::size_t> frame_sizes_;
  std::vector<std::size_t> free_;
  std::vector<EntryView> scratch_;
  std::array<std::uint64_t, kMaxNodes> blocked_{};  // bit j of row i: i -> j blocked
  std::array<std::array<std::int64_t, kMaxNodes>, kMaxNodes> clog_{};
  bool keep_requests_ = false;
  std::unordered_map<std::uint32_t, std::vector<std::byte>> kept_;  // see keep_last_requests
  Stats stats_;
};

/// The Transport policy of a simulated node: hands every message to the SimNetwork.
class SimTransport {
 public:
  explicit SimTransport(SimNetwork& network) noexcept : network_(&network) {}
  void send(const Message& m) { network_->send(m); }

 private:
  SimNetwork* network_;
};

}  // namespace tenure::raft::testing
