// Metrics: a policy with one instance per RaftGroup, pushed counters, gauges and histograms, and
// a default (NoMetrics) that compiles to nothing.
//
// The group pushes what happens as it happens (an election, a refused proposal, the time a
// write took to become durable); state that is cheaper to read than to push on every change
// (each follower's match index and lag, the age of the quorum ack) is in RaftGroup::status(),
// read when someone asks. An exporter (tenure-kv's /metrics) renders both; the names below are
// the Prometheus names it uses.
#pragma once

#include <array>
#include <atomic>
#include <bit>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace tenure::raft {

// clang-format off
/// Monotonic counts of events.
enum class Counter : std::uint8_t {
  elections_started,         ///< campaigns (pre-vote rounds included) this node started
  leader_elected,            ///< terms this node won
  term_changes,              ///< times this node's term moved
  leadership_lost,           ///< times this node stopped leading (step-down, a higher term, stop)
  proposals_accepted,        ///< proposals appended to the leader's log
  proposals_refused_overloaded,
  proposals_refused_not_leader,
  proposals_refused_timed_out,  ///< accepted, then not committed before their deadline
  proposals_refused_too_large,
  entries_applied,
  read_index_rounds,         ///< heartbeat rounds that confirmed (or tried to) ReadIndex reads
  reads_confirmed,           ///< ReadIndex reads confirmed on this node
  lease_reads,               ///< reads answered from the leader's lease (AsioGroup)
  lease_fallbacks,           ///< lease reads that fell back to ReadIndex (no valid lease)
  lease_revocations,         ///< leases this node revoked before handing over leadership
  snapshots_taken,
  snapshots_installed,
  snapshot_chunks_sent,
  membership_changes,        ///< configuration entries applied
  messages_sent,
  messages_received,
  messages_ignored,          ///< dropped unread by step(): another group or node, a non-member
  storage_failures,
};
inline constexpr std::size_t kCounterCount = 23;

/// Values that go up and down; the last one set wins.
enum class Gauge : std::uint8_t {
  term,
  role,                      ///< 0 follower, 1 pre-candidate, 2 candidate, 3 leader
  leader,                    ///< the node this one believes leads (0: unknown)
  commit_index,
  applied_index,
  last_index,
  pending_reads,             ///< ReadIndex reads waiting for a round or for the apply
  uncommitted_bytes,         ///< payload bytes proposed and not committed (leader)
};
inline constexpr std::size_t kGaugeCount = 8;

/// Distributions; each value lands in a power-of-two bucket.
enum class Histogram : std::uint8_t {
  persist_micros,            ///< from a log write to its durability (the fsync as Raft sees it)
  persist_batch_entries,     ///< entries per log write
};
inline constexpr std::size_t kHistogramCount = 2;
// clang-format on

/// The Prometheus name and help of each metric (counters end in `_total`).
struct MetricInfo {
  std::string_view name;
  std::string_view help;
};

inline constexpr std::array<MetricInfo, kCounterCount> kCounterInfo = {{
    {"tenure_elections_started_total", "Campaigns (pre-vote rounds included) this node started."},
    {"tenure_leader_elected_total", "Terms this node won."},
    {"tenure_term_changes_total", "Times this node's term moved."},
    {"tenure_leadership_lost_total", "Times this node stopped leading."},
    {"tenure_proposals_accepted_total", "Proposals appended to the leader's log."},
    {"tenure_proposals_refused_overloaded_total",
     "Proposals refused: too many or too many bytes uncommitted (overloaded)."},
    {"tenure_proposals_refused_not_leader_total", "Proposals refused: this node does not lead."},
    {"tenure_proposals_refused_timed_out_total",
     "Proposals that missed their deadline before committing."},
    {"tenure_proposals_refused_too_large_total", "Proposals refused: larger than an entry may be."},
    {"tenure_entries_applied_total", "Log entries applied to the state machine."},
    {"tenure_read_index_rounds_total", "Heartbeat rounds run to confirm ReadIndex reads."},
    {"tenure_reads_confirmed_total", "ReadIndex reads confirmed."},
    {"tenure_lease_reads_total", "Reads answered from the leader's lease."},
    {"tenure_lease_fallbacks_total", "Lease reads that fell back to ReadIndex."},
    {"tenure_lease_revocations_total", "Leases revoked before handing over leadership."},
    {"tenure_snapshots_taken_total", "Snapshots saved and durable on this node."},
    {"tenure_snapshots_installed_total", "Snapshots received from a leader and restored."},
    {"tenure_snapshot_chunks_sent_total", "Snapshot chunks sent to followers."},
    {"tenure_membership_changes_total", "Configuration entries applied."},
    {"tenure_messages_sent_total", "Raft messages handed to the transport."},
    {"tenure_messages_received_total", "Raft messages stepped into the group."},
    {"tenure_messages_ignored_total", "Messages dropped unread (another group or node)."},
    {"tenure_storage_failures_total", "Times the group stopped on a storage failure."},
}};

inline constexpr std::array<MetricInfo, kGaugeCount> kGaugeInfo = {{
    {"tenure_term", "The current term."},
    {"tenure_role", "0 follower, 1 pre-candidate, 2 candidate, 3 leader."},
    {"tenure_leader", "The node this one believes leads; 0 when unknown."},
    {"tenure_commit_index", "The highest log index known committed."},
    {"tenure_applied_index", "The highest log index applied to the state machine."},
    {"tenure_last_index", "The last index in this node's log."},
    {"tenure_pending_reads", "ReadIndex reads waiting for a round or for the apply."},
    {"tenure_uncommitted_bytes", "Payload bytes proposed and not yet committed (leader)."},
}};

inline constexpr std::array<MetricInfo, kHistogramCount> kHistogramInfo = {{
    {"tenure_persist_seconds", "Time from a log write to its durability."},
    {"tenure_persist_batch_entries", "Entries per log write."},
}};

/// Whether a histogram's values are microseconds (exported as seconds).
constexpr bool is_duration(Histogram h) noexcept {
  return h != Histogram::persist_batch_entries;
}

/// What a RaftGroup needs of its `metrics_type`:
/// - `add(counter, n)`, `set(gauge, value)`, `observe(histogram, value)`: record. Called on the
///   group's thread, inside its inputs, on hot paths: they must not block, allocate or throw.
/// - optionally `static constexpr bool enabled = false` to tell the group that nothing is
///   recorded, so that it skips the clock reads some measurements need (NoMetrics does).
/// Readers (an exporter on another thread) are the implementation's business: AtomicMetrics
/// stores relaxed atomics any thread may read.
template <class M>
concept Metrics = requires(M& m, Counter c, Gauge g, Histogram h, std::uint64_t n, std::int64_t v) {
  { m.add(c, n) }
  noexcept;
  { m.set(g, v) }
  noexcept;
  { m.observe(h, n) }
  noexcept;
};

/// The default: records nothing, compiles to nothing.
struct NoMetrics {
  static constexpr bool enabled = false;
  static constexpr void add(Counter, std::uint64_t) noexcept {}
  static constexpr void set(Gauge, std::int64_t) noexcept {}
  static constexpr void observe(Histogram, std::uint64_t) noexcept {}
};

namespace detail {
template <class M>
constexpr bool metrics_enabled() noexcept {
  if constexpr (requires { M::enabled; }) {
    return M::enabled;
  } else {
    return true;
  }
}
}  // namespace detail

/// Metrics in relaxed atomics: written by the group's thread, read by any (an exporter).
/// Allocation: none (fixed arrays). Histogram bucket b counts values v with
/// 2^(b-1) < v <= 2^b (bucket 0: v <= 1); the last bucket is everything larger.
class AtomicMetrics {
 public:
  static constexpr std::size_t kBuckets = 32;

  void add(Counter c, std::uint64_t n) noexcept {
    counters_[index(c)].fetch_add(n, std::memory_order_relaxed);
  }
  void set(Gauge g, std::int64_t v) noexcept {
    gauges_[index(g)].store(v, std::memory_order_relaxed);
  }
  void observe(Histogram h, std::uint64_t v) noexcept {
    Distribution& d = histograms_[index(h)];
    d.buckets[bucket_of(v)].fetch_add(1, std::memory_order_relaxed);
    d.sum.fetch_add(v, std::memory_order_relaxed);
    d.count.fetch_add(1, std::memory_order_relaxed);
  }

  std::uint64_t counter(Counter c) const noexcept {
    return counters_[index(c)].load(std::memory_order_relaxed);
  }
  std::int64_t gauge(Gauge g) const noexcept {
    return gauges_[index(g)].load(std::memory_order_relaxed);
  }

  /// A histogram read at one moment (each field atomically, not all at one instant).
  struct HistogramValue {
    std::array<std::uint64_t, kBuckets> buckets{};  // per bucket, not cumulative
    std::uint64_t sum = 0;
    std::uint64_t count = 0;
  };
  HistogramValue histogram(Histogram h) const noexcept {
    const Distribution& d = histograms_[index(h)];
    HistogramValue out;
    for (std::size_t b = 0; b < kBuckets; ++b) {
      out.buckets[b] = d.buckets[b].load(std::memory_order_relaxed);
    }
    out.sum = d.sum.load(std::memory_order_relaxed);
    out.count = d.count.load(std::memory_order_relaxed);
    return out;
  }
  /// The upper bound of bucket b (inclusive); the last bucket has none.
  static constexpr std::uint64_t bucket_bound(std::size_t b) noexcept {
    return std::uint64_t{1} << b;
  }
  static constexpr std::size_t bucket_of(std::uint64_t v) noexcept {
    if (v <= 1) {
      return 0;
    }
    const auto b = static_cast<std::size_t>(std::bit_width(v - 1));
    return b < kBuckets ? b : kBuckets - 1;
  }

 private:
  template <class E>
  static constexpr std::size_t index(E e) noexcept {
    return static_cast<std::size_t>(e);
  }
  struct Distribution {
    std::array<std::atomic<std::uint64_t>, kBuckets> buckets{};
    std::atomic<std::uint64_t> sum{0};
    std::atomic<std::uint64_t> count{0};
  };
  std::array<std::atomic<std::uint64_t>, kCounterCount> counters_{};
  std::array<std::atomic<std::int64_t>, kGaugeCount> gauges_{};
  std::array<Distribution, kHistogramCount> histograms_{};
};

}  // namespace tenure::raft
