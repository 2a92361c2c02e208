// Renders groups' AtomicMetrics and GroupStatus in the Prometheus text exposition format
// (version 0.0.4), for an admin endpoint's /metrics.
//
// Every family is written once, with a sample per group (label `group`, and `peer` for the
// per-member figures of status()), so a node with several groups exposes one family per metric
// as Prometheus requires. Durations are exported in seconds.
#pragma once

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include <raft/metrics.hpp>
#include <raft/status.hpp>

namespace tenure::raft {

/// One group to render: its metrics (may be null: only status figures then) and a recent status.
struct PrometheusGroup {
  const AtomicMetrics* metrics = nullptr;
  const GroupStatus* status = nullptr;
  /// The `group` label; 0 takes it from the status (and is 0 without one).
  GroupId group = 0;
};

/// Writes families into a string: `family()` once, then `sample()` for each labelled value.
/// Label values are escaped (backslash, double quote, newline) as the format requires.
class PrometheusWriter {
 public:
  explicit PrometheusWriter(std::string& out) noexcept : out_(out) {}

  /// `# HELP` and `# TYPE` lines; `type` is counter, gauge or histogram.
  void family(std::string_view name, std::string_view help, std::string_view type) {
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    for (char c : help) {
      if (c == '\\') {
        out_ += "\\\\";
      } else if (c == '\n') {
        out_ += "\\n";
      } else {
        out_ += c;
      }
    }
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
  }

  struct Label {
    std::string_view name;
    std::string_view value;
  };

  void sample(std::string_view name, std::span<const Label> labels, std::uint64_t value) {
    head(name, labels);
    detail::append_number(out_, value);
    out_ += '\n';
  }
  void sample(std::string_view name, std::span<const Label> labels, std::int64_t value) {
    head(name, labels);
    detail::append_signed(out_, value);
    out_ += '\n';
  }
  void sample(std::string_view name, std::span<const Label> labels, double value) {
    head(name, labels);
    char digits[32];
    auto r = std::to_chars(digits, digits + sizeof digits, value);
    out_.append(digits, r.ptr);
    out_ += '\n';
  }

 private:
  void head(std::string_view name, std::span<const Label> labels) {
    out_ += name;
    if (!labels.empty()) {
      out_ += '{';
      bool first = true;
      for (const Label& l : labels) {
        if (!first) {
          out_ += ',';
        }
        first = false;
        out_ += l.name;
        out_ += "=\"";
        for (char c : l.value) {
          if (c == '\\' || c == '"') {
            out_ += '\\';
            out_ += c;
          } else if (c == '\n') {
            out_ += "\\n";
          } else {
            out_ += c;
          }
        }
        out_ += '"';
      }
      out_ += '}';
    }
    out_ += ' ';
  }

  std::string& out_;
};

namespace detail {
inline std::string_view decimal(std::uint64_t v, char (&buffer)[24]) noexcept {
  auto r = std::to_chars(buffer, buffer + sizeof buffer, v);
  return std::string_view(buffer, static_cast<std::size_t>(r.ptr - buffer));
}
}  // namespace detail

/// Appends every metric of `groups` to `out`: the counters, gauges and histograms of each
/// group's AtomicMetrics, then from its status the lease and quorum-ack figures and, on a leader,
/// each other member's match index, lag, appends in flight and time since its last
/// acknowledgement. Allocation: grows `out`.
inline void append_prometheus(std::string& out, std::span<const PrometheusGroup> groups) {
  PrometheusWriter w(out);
  using Label = PrometheusWriter::Label;
  auto group_label = [](const PrometheusGroup& g, char(&buffer)[24]) {
    const GroupId id = g.group != 0 ? g.group : (g.status != nullptr ? g.status->group : 0);
    return Label{"group", detail::decimal(id, buffer)};
  };

  for (std::size_t c = 0; c < kCounterCount; ++c) {
    w.family(kCounterInfo[c].name, kCounterInfo[c].help, "counter");
    for (const PrometheusGroup& g : groups) {
      if (g.metrics == nullptr) {
        continue;
      }
      char buffer[24];
      const Label labels[] = {group_label(g, buffer)};
      w.sample(kCounterInfo[c].name, labels, g.metrics->counter(static_cast<Counter>(c)));
    }
  }
  for (std::size_t k = 0; k < kGaugeCount; ++k) {
    w.family(kGaugeInfo[k].name, kGaugeInfo[k].help, "gauge");
    for (const PrometheusGroup& g : groups) {
      if (g.metrics == nullptr) {
        continue;
      }
      char buffer[24];
      const Label labels[] = {group_label(g, buffer)};
      w.sample(kGaugeInfo[k].name, labels, g.metrics->gauge(static_cast<Gauge>(k)));
    }
  }
  for (std::size_t h = 0; h < kHistogramCount; ++h) {
    const auto which = static_cast<Histogram>(h);
    const std::string_view name = kHistogramInfo[h].name;
    const bool seconds = is_duration(which);
    w.family(name, kHistogramInfo[h].help, "histogram");
    const std::string bucket = std::string(name) + "_bucket";
    const std::string sum = std::string(name) + "_sum";
    const std::string count = std::string(name) + "_count";
    for (const PrometheusGroup& g : groups) {
      if (g.metrics == nullptr) {
        continue;
      }
      const AtomicMetrics::HistogramValue v = g.metrics->histogram(which);
      char buffer[24];
      const Label group = group_label(g, buffer);
      std::uint64_t cumulative = 0;
      // The last bucket has no upper bound: it is +Inf, and the buckets below it are cut at 2^25
      // (33 s, 33 M entries), past which nothing tenure measures goes.
      for (std::size_t b = 0; b + 1 < AtomicMetrics::kBuckets && b <= 25; ++b) {
        cumulative += v.buckets[b];
        char le[32];
        const std::uint64_t bound = AtomicMetrics::bucket_bound(b);
        std::to_chars_result r{};
        if (seconds) {
          r = std::to_chars(le, le + sizeof le, static_cast<double>(bound) / 1e6);
        } else {
          r = std::to_chars(le, le + sizeof le, bound);
        }
        const Label labels[] = {group,
                                {"le", std::string_view(le, static_cast<std::size_t>(r.ptr - le))}};
        w.sample(bucket, labels, cumulative);
      }
      const Label inf[] = {group, {"le", "+Inf"}};
      w.sample(bucket, inf, v.count);
      const Label only[] = {group};
      if (seconds) {
        w.sample(sum, only, static_cast<double>(v.sum) / 1e6);
      } else {
        w.sample(sum, only, v.sum);
      }
      w.sample(count, only, v.count);
    }
  }

  // From status(): what is read, not pushed.
  w.family("tenure_lease_valid", "1 while this node serves lease reads in its term.", "gauge");
  for (const PrometheusGroup& g : groups) {
    if (g.status != nullptr) {
      char buffer[24];
      const Label labels[] = {group_label(g, buffer)};
      w.sample("tenure_lease_valid", labels, std::uint64_t{g.status->lease_term != 0 ? 1u : 0u});
    }
  }
  w.family("tenure_quorum_ack_age_seconds",
           "Leader: time since the newest heartbeat round a quorum acknowledged was sent.",
           "gauge");
  for (const PrometheusGroup& g : groups) {
    if (g.status != nullptr && g.status->quorum_ack_age_ns >= 0) {
      char buffer[24];
      const Label labels[] = {group_label(g, buffer)};
      w.sample("tenure_quorum_ack_age_seconds", labels,
               static_cast<double>(g.status->quorum_ack_age_ns) / 1e9);
    }
  }
  struct PeerFamily {
    std::string_view name;
    std::string_view help;
  };
  static constexpr PeerFamily kPeer[] = {
      {"tenure_follower_match_index", "Leader: the highest index known on the member."},
      {"tenure_follower_lag_entries", "Leader: its last index minus the member's match index."},
      {"tenure_follower_inflight_messages", "Leader: appends sent to the member, not answered."},
      {"tenure_follower_inflight_bytes", "Leader: bytes of the appends in flight to the member."},
      {"tenure_follower_last_ack_age_seconds",
       "Leader: time since the member last acknowledged a message of this term."},
  };
  for (std::size_t f = 0; f < std::size(kPeer); ++f) {
    w.family(kPeer[f].name, kPeer[f].help, "gauge");
    for (const PrometheusGroup& g : groups) {
      if (g.status == nullptr || g.status->role != Role::leader || g.status->stopped) {
        continue;
      }
      char buffer[24];
      const Label group = group_label(g, buffer);
      for (const PeerStatus& p : g.status->peers()) {
        if (p.self) {
          continue;
        }
        char peer_buffer[24];
        const Label labels[] = {group, {"peer", detail::decimal(p.id, peer_buffer)}};
        switch (f) {
          case 0:
            w.sample(kPeer[f].name, labels, p.match);
            break;
          case 1:
            w.sample(kPeer[f].name, labels, p.lag);
            break;
          case 2:
            w.sample(kPeer[f].name, labels, std::uint64_t{p.inflight_messages});
            break;
          case 3:
            w.sample(kPeer[f].name, labels, p.inflight_bytes);
            break;
          default:
            if (p.last_ack_age_ns >= 0) {
              w.sample(kPeer[f].name, labels, static_cast<double>(p.last_ack_age_ns) / 1e9);
            }
        }
      }
    }
  }
}

}  // namespace tenure::raft
