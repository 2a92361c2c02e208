// tenure-kv-bench: a closed-loop load generator for a tenure-kv cluster.
//
//   tenure-kv-bench --servers host:port,host:port,... [--clients N] [--duration S] [--keys K]
//                   [--mix put=20,get_lease=60,get_linearizable=10,get_stale=0,cas=5,del=5]
//                   [--value-bytes B] [--timeout-ms T] [--connections-per-server C]
//                   [--json FILE] [--seed X]
//
// How it drives the cluster (docs/kv-protocol.md describes the protocol):
// - At start it asks the first server that answers for `info`: the shard count, each shard's
//   leader and every node's client address.
// - Each of the N clients keeps exactly one request outstanding (closed loop): it picks an
//   operation by the mix and a key uniformly among K keys, sends it to the leader of the key's
//   shard, and issues the next one as soon as the answer (or its timeout) arrives.
// - Connections are per server, not per client: every client talking to a server shares that
//   server's connection(s), pipelining its requests with the others' and matching answers by
//   id, so N clients cost C connections per server (--connections-per-server, default 1), not
//   N x servers. Everything runs on one io_context on one thread.
// - A not_leader answer with a hint moves the shard to the hinted leader for every client and
//   the request is sent again (at most kMaxRedirects times); without a hint, or after a
//   connection failure, the shard's leader is forgotten and the next attempt tries the servers
//   in turn. Redirects are counted, not errors; the latency of an operation includes them.
// - A request unanswered after --timeout-ms counts as error `client_timeout`; its answer, if it
//   comes later, is ignored.
//
// Progress goes to stderr once a second; the summary to stdout, and with --json to FILE as well.
// Latencies are in microseconds, kept in log-bucketed histograms (3% relative precision).
// Exit status: 0 when at least one operation succeeded, 1 otherwise, 2 for bad usage.
#include "protocol.hpp"
#include "stream.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

// After the standard headers: Boost 1.74's Asio uses std::exchange without including <utility>.
#include <boost/asio.hpp>

namespace asio = boost::asio;
using asio::ip::tcp;
using tenure::kv::ReadLevel;
using tenure::kv::ReadSource;
using tenure::kv::Request;
using tenure::kv::Response;
using tenure::kv::ResponseKind;
using tenure::raft::errc;
using Clock = std::chrono::steady_clock;
using ErrorCode = boost::system::error_code;

namespace {

constexpr int kMaxRedirects = 5;
// Pause before the next attempt after a connection failure or a hint-less not_leader, so a dead
// node or an election does not turn the loop into a busy spin.
constexpr auto kBackoff = std::chrono::milliseconds(50);
// How long a failed connection stays failed before the next request tries to reconnect.
constexpr auto kReconnectPause = std::chrono::milliseconds(200);

// ---------------------------------------------------------------------------------------------
// Operation types and the mix.

enum class OpType : std::uint8_t { put, get_lease, get_linearizable, get_stale, cas, del };
constexpr std::size_t kOpTypes = 6;
constexpr std::array<std::string_view, kOpTypes> kOpNames = {
    "put", "get_lease", "get_linearizable", "get_stale", "cas", "del"};

std::size_t index_of(OpType op) {
  return static_cast<std::size_t>(op);
}

// Percentages per OpType, summing to 100.
using Mix = std::array<unsigned, kOpTypes>;
constexpr Mix kDefaultMix = {20, 60, 10, 0, 5, 5};

// ---------------------------------------------------------------------------------------------
// Latency histogram: HDR-style log buckets. Values below 2^(kSubBits+1) have a bucket each; above,
// every power of two is split into 2^kSubBits buckets, so a bucket's width is at most 1/32 of its
// values (about 3% relative error). Fixed size, no allocation after construction.

class Histogram {
 public:
  static constexpr unsigned kSubBits = 5;
  static constexpr std::uint64_t kSub = 1u << kSubBits;  // 32
  static constexpr std::uint64_t kLinear = 2 * kSub;     // 64 exact buckets
  static constexpr unsigned kMaxBits = 40;               // values clamp at 2^40 us (12 days)
  static constexpr std::size_t kBuckets = kLinear + (kMaxBits - kSubBits - 1) * kSub;

  void record(std::uint64_t value) {
    value = std::min<std::uint64_t>(value, (std::uint64_t{1} << kMaxBits) - 1);
    ++counts_[bucket_of(value)];
    ++count_;
    sum_ += value;
    max_ = std::max(max_, value);
    min_ = std::min(min_, value);
  }

  std::uint64_t count() const { return count_; }
  std::uint64_t max() const { return max_; }
  std::uint64_t min() const { return count_ == 0 ? 0 : min_; }
  double mean() const { return count_ == 0 ? 0.0 : static_cast<double>(sum_) / count_; }

  // The smallest bucket upper bound at or below which a fraction q of the values lie, capped at
  // the largest value seen (so p100 is the exact maximum).
  std::uint64_t percentile(double q) const {
    if (count_ == 0) {
      return 0;
    }
    const auto rank = static_cast<std::uint64_t>(q * static_cast<double>(count_) + 0.5);
    const std::uint64_t target = std::clamp<std::uint64_t>(rank, 1, count_);
    std::uint64_t seen = 0;
    for (std::size_t b = 0; b < kBuckets; ++b) {
      seen += counts_[b];
      if (seen >= target) {
        return std::min(upper_bound(b), max_);
      }
    }
    return max_;
  }

  // Calls f(upper_bound, count) for every non-empty bucket, in increasing order.
  template <class F>
  void for_each_bucket(F&& f) const {
    for (std::size_t b = 0; b < kBuckets; ++b) {
      if (counts_[b] != 0) {
        f(upper_bound(b), counts_[b]);
      }
    }
  }

 private:
  static std::size_t bucket_of(std::uint64_t v) {
    if (v < kLinear) {
      return static_cast<std::size_t>(v);
    }
    const unsigned msb = static_cast<unsigned>(std::bit_width(v)) - 1;  // >= kSubBits + 1
    const unsigned shift = msb - kSubBits;
    return kLinear + (shift - 1) * kSub + static_cast<std::size_t>((v >> shift) - kSub);
  }

  // The largest value that falls into bucket b.
  static std::uint64_t upper_bound(std::size_t b) {
    if (b < kLinear) {
      return b;
    }
    const std::size_t shift = (b - kLinear) / kSub + 1;
    const std::uint64_t sub = (b - kLinear) % kSub + kSub;
    return ((sub + 1) << shift) - 1;
  }

  std::array<std::uint64_t, kBuckets> counts_{};
  std::uint64_t count_ = 0;
  std::uint64_t sum_ = 0;
  std::uint64_t max_ = 0;
  std::uint64_t min_ = ~std::uint64_t{0};
};

// ---------------------------------------------------------------------------------------------
// Options.

struct Options {
  std::vector<std::string> servers;
  unsigned clients = 16;
  double duration_s = 10;
  unsigned keys = 1000;
  Mix mix = kDefaultMix;
  std::size_t value_bytes = 64;
  long timeout_ms = 1000;
  unsigned connections_per_server = 1;
  std::string json;
  std::uint64_t seed = 1;
  std::optional<tenure::raft::asio::TlsFiles> tls;
};

constexpr const char* kUsage =
    "usage: tenure-kv-bench --servers HOST:PORT[,HOST:PORT...] [options]\n"
    "  --clients N                 concurrent closed-loop clients (default 16)\n"
    "  --duration S                seconds to run (default 10)\n"
    "  --keys K                    keys k0..k(K-1), chosen uniformly (default 1000)\n"
    "  --mix OP=PCT,...            percentages summing to 100 over put, get_lease,\n"
    "                              get_linearizable, get_stale, cas, del (omitted ops: 0)\n"
    "                              default put=20,get_lease=60,get_linearizable=10,get_stale=0,"
    "cas=5,del=5\n"
    "  --value-bytes B             value size, 1..1024 (default 64)\n"
    "  --timeout-ms T              per-request timeout (default 1000)\n"
    "  --connections-per-server C  connections to each server, shared by the clients (default 1)\n"
    "  --json FILE                 also write the results as JSON to FILE\n"
    "  --seed X                    seed of the operation and key choice (default 1)\n"
    "  --tls-cert F --tls-key F --tls-ca F\n"
    "                              mutual TLS: this client's certificate and key, the CA\n"
    "exit status: 0 when some operation succeeded, 1 when none did, 2 for bad usage\n";

[[noreturn]] void usage_error(const std::string& message) {
  std::fprintf(stderr, "tenure-kv-bench: %s\n%s", message.c_str(), kUsage);
  std::exit(2);
}

std::vector<std::string> split_commas(std::string_view text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    const std::size_t comma = std::min(text.find(',', start), text.size());
    out.emplace_back(text.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

std::uint64_t parse_number(std::string_view option, const std::string& text, std::uint64_t low,
                           std::uint64_t high) {
  char* end = nullptr;
  const unsigned long long value = std::strtoull(text.c_str(), &end, 10);
  if (text.empty() || text[0] == '-' || *end != '\0' || value < low || value > high) {
    usage_error(std::string(option) + " needs a whole number in " + std::to_string(low) + ".." +
                std::to_string(high));
  }
  return value;
}

Mix parse_mix(std::string_view text) {
  Mix mix{};
  unsigned total = 0;
  for (const auto& item : split_commas(text)) {
    const std::size_t eq = item.find('=');
    const auto name = std::string_view(item).substr(0, eq);
    const auto it = std::find(kOpNames.begin(), kOpNames.end(), name);
    if (eq == std::string::npos || it == kOpNames.end()) {
      usage_error("--mix: unknown item '" + item + "'");
    }
    const auto pct = static_cast<unsigned>(parse_number("--mix", item.substr(eq + 1), 0, 100));
    mix[static_cast<std::size_t>(it - kOpNames.begin())] = pct;
    total += pct;
  }
  if (total != 100) {
    usage_error("--mix percentages must sum to 100, not " + std::to_string(total));
  }
  return mix;
}

Options parse_options(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (i + 1 >= argc) {
      usage_error(std::string(arg) + ": unknown option or missing value");
    }
    const std::string value = argv[++i];
    if (arg == "--servers") {
      o.servers = split_commas(value);
      for (const auto& s : o.servers) {
        if (!tenure::kv::is_valid_address(s)) {
          usage_error("--servers: '" + s + "' is not HOST:PORT");
        }
      }
    } else if (arg == "--clients") {
      o.clients = static_cast<unsigned>(parse_number(arg, value, 1, 100000));
    } else if (arg == "--duration") {
      char* end = nullptr;
      o.duration_s = std::strtod(value.c_str(), &end);
      if (value.empty() || *end != '\0' || !(o.duration_s > 0) || o.duration_s > 86400) {
        usage_error("--duration needs seconds in (0, 86400]");
      }
    } else if (arg == "--keys") {
      o.keys = static_cast<unsigned>(parse_number(arg, value, 1, 100000000));
    } else if (arg == "--mix") {
      o.mix = parse_mix(value);
    } else if (arg == "--value-bytes") {
      o.value_bytes = parse_number(arg, value, 1, tenure::kv::kMaxValueBytes);
    } else if (arg == "--timeout-ms") {
      o.timeout_ms = static_cast<long>(parse_number(arg, value, 1, 3600000));
    } else if (arg == "--connections-per-server") {
      o.connections_per_server = static_cast<unsigned>(parse_number(arg, value, 1, 1024));
    } else if (arg == "--json") {
      o.json = value;
    } else if (arg == "--seed") {
      o.seed = parse_number(arg, value, 0, ~std::uint64_t{0});
    } else if (arg == "--tls-cert" || arg == "--tls-key" || arg == "--tls-ca") {
      if (!o.tls) {
        o.tls.emplace();
      }
      (arg == "--tls-cert"  ? o.tls->certificate
       : arg == "--tls-key" ? o.tls->private_key
                            : o.tls->ca) = value;
    } else {
      usage_error("unknown option " + std::string(arg));
    }
  }
  if (o.servers.empty()) {
    usage_error("--servers is required");
  }
  if (o.tls && (o.tls->certificate.empty() || o.tls->private_key.empty() || o.tls->ca.empty())) {
    usage_error("TLS needs all of --tls-cert, --tls-key and --tls-ca");
  }
  if (o.tls && !tenure::raft::asio::kHasTls) {
    usage_error("this build has no TLS (OpenSSL was not found when it was built)");
  }
  return o;
}

// ---------------------------------------------------------------------------------------------
// Statistics.

struct Stats {
  std::array<std::uint64_t, kOpTypes> ok{};
  std::array<std::uint64_t, kOpTypes> failed{};
  std::array<Histogram, kOpTypes> latency;
  Histogram all;
  std::map<std::string, std::uint64_t, std::less<>> errors;  // by code name
  std::uint64_t redirects = 0;
  std::uint64_t lease_hits = 0;   // get_lease answered with how=lease
  std::uint64_t lease_reads = 0;  // get_lease answered ok (value or none)
  std::uint64_t cas_mismatches = 0;
  std::uint64_t ok_total = 0;
  std::uint64_t errors_total = 0;
  std::vector<std::uint64_t> per_second;  // successful operations in each whole second

  void error(OpType op, std::string_view code) {
    ++failed[index_of(op)];
    ++errors_total;
    const auto it = errors.find(code);
    if (it == errors.end()) {
      errors.emplace(std::string(code), 1);
    } else {
      ++it->second;
    }
  }
};

// ---------------------------------------------------------------------------------------------
// Connections.

// Whoever waits for answers on a connection. on_failure reports the request `id` as failed with
// a client-side error name ("connection", "protocol").
class Waiter {
 public:
  virtual void on_response(const Response& r) = 0;
  virtual void on_failure(std::uint64_t id, std::string_view code) = 0;

 protected:
  ~Waiter() = default;
};

// One TCP connection to one server, shared by every client that sends there. Requests are
// pipelined: lines queue in `pending_` and go out in batches, one write at a time; answers are
// matched to waiters by id. Connects lazily; after a failure every waiter is told, and for
// kReconnectPause new requests fail at once instead of hammering a dead node.
class Connection {
 public:
  Connection(asio::io_context& io, std::string address,
             std::optional<tenure::raft::asio::TlsFiles> tls)
      : io_(io), address_(std::move(address)), tls_(std::move(tls)), resolver_(io) {}

  const std::string& address() const { return address_; }

  void send(std::uint64_t id, std::string_view line, Waiter* waiter) {
    if (state_ == State::failed && Clock::now() < retry_after_) {
      asio::post(io_, [waiter, id] { waiter->on_failure(id, "connection"); });
      return;
    }
    waiting_[id] = waiter;
    pending_.append(line);
    if (state_ == State::idle || state_ == State::failed) {
      start_connect();
    } else if (state_ == State::connected && !writing_) {
      start_write();
    }
  }

  // The waiter gave up on `id` (timeout): a late answer is dropped.
  void forget(std::uint64_t id) { waiting_.erase(id); }

  void close() {
    if (stream_) {
      stream_->close();
    }
    resolver_.cancel();
  }

 private:
  enum class State { idle, connecting, connected, failed };

  void start_connect() {
    state_ = State::connecting;
    const unsigned generation = ++generation_;
    const auto split = tenure::kv::split_address(address_);  // validated with the arguments
    if (!split) {
      return fail("connection");
    }
    resolver_.async_resolve(
        std::string(split->host), std::to_string(split->port),
        [this, generation](ErrorCode ec, tcp::resolver::results_type endpoints) {
          if (generation != generation_) {
            return;
          }
          if (ec) {
            return fail("connection");
          }
          // A fresh stream per attempt (a TLS stream cannot be reused); handlers hold theirs,
          // so a stale one outlives its last operation.
          stream_ = std::make_shared<tenure::kv::Stream>(io_);
          asio::async_connect(stream_->socket(), endpoints,
                              [this, generation, s = stream_](ErrorCode ec2, const tcp::endpoint&) {
                                if (generation != generation_) {
                                  return;
                                }
                                if (ec2) {
                                  return fail("connection");
                                }
                                ErrorCode ignored;
                                s->socket().set_option(tcp::no_delay(true), ignored);
                                if (tls_) {
                                  s->use_tls(*tls_);
                                }
                                s->async_handshake(false, [this, generation, s](ErrorCode ec3) {
                                  if (generation != generation_) {
                                    return;
                                  }
                                  if (ec3) {
                                    return fail("connection");
                                  }
                                  state_ = State::connected;
                                  start_read();
                                  if (!pending_.empty()) {
                                    start_write();
                                  }
                                });
                              });
        });
  }

  void start_write() {
    writing_ = true;
    writing_buffer_.swap(pending_);
    pending_.clear();
    const unsigned generation = generation_;
    stream_->async_write(asio::buffer(writing_buffer_),
                         [this, generation, s = stream_](ErrorCode ec, std::size_t) {
                           if (generation != generation_) {
                             return;
                           }
                           writing_ = false;
                           writing_buffer_.clear();
                           if (ec) {
                             return fail("connection");
                           }
                           if (!pending_.empty()) {
                             start_write();
                           }
                         });
  }

  void start_read() {
    const unsigned generation = generation_;
    stream_->async_read_until(
        asio::dynamic_buffer(in_, tenure::kv::kMaxResponseLine + 1), '\n',
        [this, generation, s = stream_](ErrorCode ec, std::size_t length) {
          if (generation != generation_) {
            return;
          }
          if (ec) {
            return fail("connection");
          }
          const auto parsed = tenure::kv::parse_response(std::string_view(in_).substr(0, length));
          if (!parsed) {
            std::fprintf(stderr, "tenure-kv-bench: %s sent an unparseable line (%s)\n",
                         address_.c_str(), parsed.error().reason);
            return fail("protocol");
          }
          const auto it = waiting_.find(parsed->id);
          if (it != waiting_.end()) {
            Waiter* waiter = it->second;
            waiting_.erase(it);
            waiter->on_response(*parsed);  // may send() again; never touches in_
          }
          in_.erase(0, length);
          start_read();
        });
  }

  void fail(std::string_view code) {
    ++generation_;  // handlers of this connection attempt are now stale
    state_ = State::failed;
    retry_after_ = Clock::now() + kReconnectPause;
    writing_ = false;
    if (stream_) {
      stream_->close();
    }
    pending_.clear();
    writing_buffer_.clear();
    in_.clear();
    auto waiting = std::move(waiting_);
    waiting_.clear();
    for (const auto& [id, waiter] : waiting) {
      waiter->on_failure(id, code);
    }
  }

  asio::io_context& io_;
  std::string address_;
  std::optional<tenure::raft::asio::TlsFiles> tls_;
  std::shared_ptr<tenure::kv::Stream> stream_;  // the current attempt's
  tcp::resolver resolver_;
  State state_ = State::idle;
  unsigned generation_ = 0;  // bumped per connection attempt and failure
  Clock::time_point retry_after_{};
  bool writing_ = false;
  std::string pending_;         // lines not yet handed to a write
  std::string writing_buffer_;  // the lines of the write in flight
  std::string in_;
  std::unordered_map<std::uint64_t, Waiter*> waiting_;
};

// ---------------------------------------------------------------------------------------------
// The benchmark: routing table, connections, clients, timers.

class Bench;

class Client final : public Waiter {
 public:
  Client(Bench& bench, unsigned index, std::uint64_t seed);
  void start() { next(); }
  void on_response(const Response& r) override;
  void on_failure(std::uint64_t id, std::string_view code) override;

 private:
  void next();
  void issue();
  void finish_ok();
  void finish_error(std::string_view code);
  void pause_then(void (Client::*step)());
  bool outstanding(std::uint64_t id) const { return in_flight_ && id == id_; }

  Bench& bench_;
  unsigned index_;
  std::mt19937_64 rng_;
  asio::steady_timer timer_;
  OpType op_ = OpType::put;
  std::size_t key_ = 0;
  std::uint32_t shard_ = 0;
  std::uint64_t id_ = 0;
  bool in_flight_ = false;
  Connection* connection_ = nullptr;
  Clock::time_point started_{};
  int redirects_ = 0;
  std::string line_;           // the request line, kept until written
  std::string pending_value_;  // what a put or cas in flight would store
};

class Bench {
 public:
  explicit Bench(Options options) : options_(std::move(options)), progress_timer_(io_) {
    for (unsigned k = 0; k < options_.keys; ++k) {
      keys_.push_back("k" + std::to_string(k));
    }
    known_.resize(options_.keys);
    std::mt19937_64 rng(options_.seed);
    for (int v = 0; v < 16; ++v) {
      std::string value(options_.value_bytes, 'x');
      for (char& c : value) {
        c = static_cast<char>('a' + rng() % 26);
      }
      values_.push_back(std::move(value));
    }
  }

  int run();

  // --- used by clients ---
  asio::io_context& io() { return io_; }
  const Options& options() const { return options_; }
  Stats& stats() { return stats_; }
  bool stopping() const { return stopping_; }
  std::uint64_t next_id() { return ++last_id_; }
  std::uint32_t shards() const { return static_cast<std::uint32_t>(leaders_.size()); }
  const std::string& key(std::size_t k) const { return keys_[k]; }
  const std::string& value(std::size_t v) const { return values_[v % values_.size()]; }
  std::size_t value_count() const { return values_.size(); }
  // What this run last saw stored under key k (nullopt: absent or never seen): cas's expected.
  std::optional<std::string>& known(std::size_t k) { return known_[k]; }

  // The connection a client should use for `shard`: its leader's, or the next server in turn
  // when the leader is unknown.
  Connection& route(std::uint32_t shard, unsigned client) {
    std::string_view address = leaders_[shard];
    if (address.empty()) {
      address = fallback_[next_fallback_++ % fallback_.size()];
    }
    return connection(address, client);
  }
  void set_leader(std::uint32_t shard, std::string_view address) {
    leaders_[shard] = std::string(address);
  }
  void forget_leader(std::uint32_t shard) { leaders_[shard].clear(); }

 private:
  class Bootstrap final : public Waiter {
   public:
    void on_response(const Response& r) override {
      done = true;
      if (r.kind == ResponseKind::info) {
        info = tenure::kv::parse_cluster_info(r.info);
      } else if (r.kind == ResponseKind::error) {
        error = std::string(tenure::kv::name_of(r.code));
      }
    }
    void on_failure(std::uint64_t, std::string_view code) override {
      done = true;
      error = std::string(code);
    }
    bool done = false;
    std::optional<tenure::kv::ClusterInfo> info;
    std::string error;
  };

  Connection& connection(std::string_view address, unsigned client) {
    auto it = connections_.find(address);  // no allocation once the connection exists
    if (it == connections_.end()) {
      it = connections_.emplace(std::string(address), std::vector<std::unique_ptr<Connection>>{})
               .first;
    }
    auto& list = it->second;
    if (list.empty()) {
      for (unsigned c = 0; c < options_.connections_per_server; ++c) {
        list.push_back(std::make_unique<Connection>(io_, std::string(address), options_.tls));
      }
    }
    return *list[client % list.size()];
  }

  bool bootstrap();
  void tick();
  void print_progress(std::uint64_t ops, double elapsed) const;
  void print_summary(double elapsed) const;
  bool write_json(double elapsed) const;

  Options options_;
  asio::io_context io_;
  asio::steady_timer progress_timer_;
  Stats stats_;
  bool stopping_ = false;
  std::uint64_t last_id_ = 0;
  std::vector<std::string> keys_;
  std::vector<std::string> values_;
  std::vector<std::optional<std::string>> known_;
  std::vector<std::string> leaders_;   // per shard: the leader's client address, empty unknown
  std::vector<std::string> fallback_;  // every node's client address, tried in turn
  std::size_t next_fallback_ = 0;
  std::map<std::string, std::vector<std::unique_ptr<Connection>>, std::less<>> connections_;
  std::vector<std::unique_ptr<Client>> clients_;
  Bootstrap bootstrap_waiter_;  // outlives the io_context's handlers: a member, not a local
  std::uint32_t info_shards_ = 0;
  Clock::time_point start_{};
  Clock::time_point end_{};
  std::uint64_t ok_at_last_tick_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Client.

Client::Client(Bench& bench, unsigned index, std::uint64_t seed)
    : bench_(bench), index_(index), rng_(seed), timer_(bench.io()) {}

void Client::next() {
  if (bench_.stopping()) {
    return;
  }
  const auto& mix = bench_.options().mix;
  unsigned pick = static_cast<unsigned>(rng_() % 100);
  std::size_t op = 0;
  while (op + 1 < kOpTypes && pick >= mix[op]) {
    pick -= mix[op];
    ++op;
  }
  op_ = static_cast<OpType>(op);
  key_ = static_cast<std::size_t>(rng_() % bench_.options().keys);
  shard_ = tenure::kv::shard_of(bench_.key(key_), bench_.shards());
  redirects_ = 0;
  started_ = Clock::now();
  issue();
}

void Client::issue() {
  if (bench_.stopping()) {
    return;
  }
  id_ = bench_.next_id();
  const std::string& key = bench_.key(key_);
  const std::string& value = bench_.value(rng_() % bench_.value_count());
  Request r;
  switch (op_) {
    case OpType::put:
      r = Request::put(id_, key, value);
      break;
    case OpType::get_lease:
      r = Request::get(id_, key, ReadLevel::lease);
      break;
    case OpType::get_linearizable:
      r = Request::get(id_, key, ReadLevel::linearizable);
      break;
    case OpType::get_stale:
      r = Request::get(id_, key, ReadLevel::stale);
      break;
    case OpType::cas: {
      const auto& known = bench_.known(key_);
      r = Request::cas(
          id_, key,
          known ? std::optional<std::string_view>(*known) : std::optional<std::string_view>(),
          value);
      break;
    }
    case OpType::del:
      r = Request::del(id_, key);
      break;
  }
  line_.clear();
  tenure::kv::format_request(r, line_);
  if (op_ == OpType::cas || op_ == OpType::put) {
    // Remember what a successful write stores (the request's views die with line_ reuse).
    pending_value_ = value;
  }
  connection_ = &bench_.route(shard_, index_);
  in_flight_ = true;
  const std::uint64_t id = id_;
  timer_.expires_after(std::chrono::milliseconds(bench_.options().timeout_ms));
  timer_.async_wait([this, id](ErrorCode ec) {
    if (ec || !outstanding(id)) {
      return;
    }
    connection_->forget(id);
    finish_error("client_timeout");
  });
  connection_->send(id_, line_, this);
}

void Client::on_response(const Response& r) {
  if (!outstanding(r.id)) {
    return;
  }
  in_flight_ = false;
  timer_.cancel();
  Stats& stats = bench_.stats();
  if (r.kind == ResponseKind::error) {
    const bool hinted = r.code == errc::not_leader && !r.leader.empty();
    const bool elsewhere = r.code == errc::not_leader || r.code == errc::transfer_in_progress;
    if (elsewhere && redirects_ < kMaxRedirects && !bench_.stopping()) {
      ++redirects_;
      ++stats.redirects;
      if (hinted) {
        bench_.set_leader(shard_, r.leader);
        return issue();
      }
      bench_.forget_leader(shard_);
      return pause_then(&Client::issue);
    }
    return finish_error(tenure::kv::name_of(r.code));
  }
  const auto k = r.kind;
  const bool is_get =
      op_ == OpType::get_lease || op_ == OpType::get_linearizable || op_ == OpType::get_stale;
  auto& known = bench_.known(key_);
  if (is_get && (k == ResponseKind::value || k == ResponseKind::none)) {
    if (op_ == OpType::get_lease) {
      ++stats.lease_reads;
      stats.lease_hits += r.how == ReadSource::lease ? 1 : 0;
    }
    if (k == ResponseKind::value) {
      known = std::string(r.value);
    } else {
      known.reset();
    }
  } else if ((op_ == OpType::put || op_ == OpType::cas) && k == ResponseKind::ok) {
    known = pending_value_;
  } else if (op_ == OpType::del && k == ResponseKind::ok) {
    known.reset();
  } else if (op_ == OpType::cas && k == ResponseKind::mismatch) {
    ++stats.cas_mismatches;
    known = r.current ? std::optional<std::string>(std::string(*r.current)) : std::nullopt;
  } else {
    return finish_error("protocol");
  }
  finish_ok();
}

void Client::on_failure(std::uint64_t id, std::string_view code) {
  if (!outstanding(id)) {
    return;
  }
  in_flight_ = false;
  timer_.cancel();
  bench_.forget_leader(shard_);  // try another node next time
  bench_.stats().error(op_, code);
  pause_then(&Client::next);
}

void Client::finish_ok() {
  Stats& stats = bench_.stats();
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - started_);
  const auto latency = static_cast<std::uint64_t>(std::max<std::int64_t>(us.count(), 0));
  ++stats.ok[index_of(op_)];
  ++stats.ok_total;
  stats.latency[index_of(op_)].record(latency);
  stats.all.record(latency);
  next();
}

void Client::finish_error(std::string_view code) {
  in_flight_ = false;
  bench_.stats().error(op_, code);
  next();
}

void Client::pause_then(void (Client::*step)()) {
  timer_.expires_after(kBackoff);
  timer_.async_wait([this, step](ErrorCode ec) {
    if (!ec) {
      (this->*step)();
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Bench.

bool Bench::bootstrap() {
  const auto line_for = [this](std::uint64_t id) {
    std::string line;
    tenure::kv::format_request(Request::info(id), line);
    return line;
  };
  for (const auto& server : options_.servers) {
    bootstrap_waiter_ = Bootstrap{};
    const std::uint64_t id = next_id();
    Connection& c = connection(server, 0);
    c.send(id, line_for(id), &bootstrap_waiter_);
    const auto deadline = Clock::now() + std::chrono::milliseconds(options_.timeout_ms);
    io_.restart();
    while (!bootstrap_waiter_.done && io_.run_one_until(deadline) != 0) {
    }
    if (!bootstrap_waiter_.done) {
      c.forget(id);
      std::fprintf(stderr, "tenure-kv-bench: %s: info timed out\n", server.c_str());
      continue;
    }
    if (!bootstrap_waiter_.info) {
      std::fprintf(stderr, "tenure-kv-bench: %s: info failed: %s\n", server.c_str(),
                   bootstrap_waiter_.error.c_str());
      continue;
    }
    const auto& info = *bootstrap_waiter_.info;
    info_shards_ = info.shards();
    leaders_.assign(info.shards(), std::string());
    for (std::uint32_t s = 0; s < info.shards(); ++s) {
      leaders_[s] = std::string(info.address_of(info.leaders[s]));
    }
    for (const auto& a : info.addresses) {
      fallback_.push_back(a.address);
    }
    std::fprintf(stderr, "tenure-kv-bench: %s is node %llu: %u shard(s), %zu node(s)\n",
                 server.c_str(), static_cast<unsigned long long>(info.node), info.shards(),
                 info.addresses.size());
    return true;
  }
  return false;
}

int Bench::run() {
  if (!bootstrap()) {
    std::fprintf(stderr, "tenure-kv-bench: no server answered info\n");
    return 1;
  }
  for (unsigned i = 0; i < options_.clients; ++i) {
    clients_.push_back(std::make_unique<Client>(*this, i, options_.seed * 1000003 + i));
  }
  start_ = Clock::now();
  end_ = start_ + std::chrono::duration_cast<Clock::duration>(
                      std::chrono::duration<double>(options_.duration_s));
  for (auto& c : clients_) {
    c->start();
  }
  progress_timer_.expires_at(start_ + std::chrono::seconds(1));
  progress_timer_.async_wait([this](ErrorCode ec) {
    if (!ec) {
      tick();
    }
  });
  io_.restart();
  io_.run_until(end_);
  // Stop: answers still in flight are abandoned and not counted.
  stopping_ = true;
  const double elapsed = std::chrono::duration<double>(Clock::now() - start_).count();
  const std::uint64_t tail = stats_.ok_total - ok_at_last_tick_;
  if (stats_.per_second.size() < static_cast<std::size_t>(elapsed) || tail > 0) {
    stats_.per_second.push_back(tail);  // the last, possibly partial, second
  }
  print_summary(elapsed);
  const bool json_ok = options_.json.empty() || write_json(elapsed);
  io_.stop();
  for (auto& [address, list] : connections_) {
    for (auto& c : list) {
      c->close();
    }
  }
  return stats_.ok_total > 0 && json_ok ? 0 : 1;
}

void Bench::tick() {
  const std::uint64_t ops = stats_.ok_total - ok_at_last_tick_;
  ok_at_last_tick_ = stats_.ok_total;
  stats_.per_second.push_back(ops);
  print_progress(ops, std::chrono::duration<double>(Clock::now() - start_).count());
  progress_timer_.expires_at(start_ + std::chrono::seconds(stats_.per_second.size() + 1));
  progress_timer_.async_wait([this](ErrorCode ec) {
    if (!ec) {
      tick();
    }
  });
}

std::string lease_ratio_text(const Stats& s) {
  if (s.lease_reads == 0) {
    return "n/a";
  }
  char text[32];
  std::snprintf(text, sizeof text, "%.1f%%", 100.0 * s.lease_hits / s.lease_reads);
  return text;
}

void Bench::print_progress(std::uint64_t ops, double elapsed) const {
  std::fprintf(stderr, "[%6.1fs] %8llu ops/s  errors %llu  redirects %llu  lease hits %s\n",
               elapsed, static_cast<unsigned long long>(ops),
               static_cast<unsigned long long>(stats_.errors_total),
               static_cast<unsigned long long>(stats_.redirects), lease_ratio_text(stats_).c_str());
}

void print_latency_row(std::string_view name, std::uint64_t ok, std::uint64_t failed,
                       const Histogram& h) {
  std::printf("%-17.*s %9llu %7llu %8llu %8llu %8llu %8llu %8llu\n", static_cast<int>(name.size()),
              name.data(), static_cast<unsigned long long>(ok),
              static_cast<unsigned long long>(failed),
              static_cast<unsigned long long>(h.percentile(0.50)),
              static_cast<unsigned long long>(h.percentile(0.90)),
              static_cast<unsigned long long>(h.percentile(0.99)),
              static_cast<unsigned long long>(h.percentile(0.999)),
              static_cast<unsigned long long>(h.max()));
}

void Bench::print_summary(double elapsed) const {
  const auto& s = stats_;
  std::printf(
      "tenure-kv-bench: %.1f s, %u clients, %u keys, %u shard(s), %zu connection(s)/server, "
      "seed %llu\n",
      elapsed, options_.clients, options_.keys, info_shards_,
      static_cast<std::size_t>(options_.connections_per_server),
      static_cast<unsigned long long>(options_.seed));
  std::printf("%-17s %9s %7s %8s %8s %8s %8s %8s\n", "op", "ok", "errors", "p50_us", "p90_us",
              "p99_us", "p99.9_us", "max_us");
  for (std::size_t op = 0; op < kOpTypes; ++op) {
    if (s.ok[op] + s.failed[op] > 0) {
      print_latency_row(kOpNames[op], s.ok[op], s.failed[op], s.latency[op]);
    }
  }
  print_latency_row("all", s.ok_total, s.errors_total, s.all);
  std::printf("throughput: %.1f ops/s   redirects: %llu   cas mismatches: %llu\n",
              elapsed > 0 ? s.ok_total / elapsed : 0.0,
              static_cast<unsigned long long>(s.redirects),
              static_cast<unsigned long long>(s.cas_mismatches));
  std::printf("errors:");
  if (s.errors.empty()) {
    std::printf(" none");
  }
  for (const auto& [code, count] : s.errors) {
    std::printf(" %s=%llu", code.c_str(), static_cast<unsigned long long>(count));
  }
  std::printf("\nlease hit ratio: %s (%llu of %llu get_lease answered from the lease)\n",
              lease_ratio_text(s).c_str(), static_cast<unsigned long long>(s.lease_hits),
              static_cast<unsigned long long>(s.lease_reads));
}

// JSON by hand: every string written here is an op name, an error code name or an address,
// all printable ASCII without quotes or backslashes (the protocol's grammar), but escape anyway.
std::string json_string(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\u%04x", static_cast<unsigned>(c));
      out += escaped;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

void json_latency(std::FILE* f, const Histogram& h, const char* indent) {
  std::fprintf(f,
               "{\"count\": %llu, \"mean\": %.1f, \"min\": %llu, \"p50\": %llu, \"p90\": %llu, "
               "\"p99\": %llu, \"p999\": %llu, \"max\": %llu,\n%s \"histogram\": [",
               static_cast<unsigned long long>(h.count()), h.mean(),
               static_cast<unsigned long long>(h.min()),
               static_cast<unsigned long long>(h.percentile(0.50)),
               static_cast<unsigned long long>(h.percentile(0.90)),
               static_cast<unsigned long long>(h.percentile(0.99)),
               static_cast<unsigned long long>(h.percentile(0.999)),
               static_cast<unsigned long long>(h.max()), indent);
  bool first = true;
  h.for_each_bucket([&](std::uint64_t upper, std::uint64_t count) {
    std::fprintf(f, "%s{\"le\": %llu, \"count\": %llu}", first ? "" : ", ",
                 static_cast<unsigned long long>(upper), static_cast<unsigned long long>(count));
    first = false;
  });
  std::fprintf(f, "]}");
}

bool Bench::write_json(double elapsed) const {
  std::FILE* f = std::fopen(options_.json.c_str(), "w");
  if (f == nullptr) {
    std::fprintf(stderr, "tenure-kv-bench: cannot write %s\n", options_.json.c_str());
    return false;
  }
  const auto& s = stats_;
  const auto u = [](std::uint64_t v) { return static_cast<unsigned long long>(v); };
  std::fprintf(f, "{\n  \"config\": {\"servers\": [");
  for (std::size_t i = 0; i < options_.servers.size(); ++i) {
    std::fprintf(f, "%s%s", i ? ", " : "", json_string(options_.servers[i]).c_str());
  }
  std::fprintf(f,
               "], \"clients\": %u, \"duration_s\": %g, \"keys\": %u, \"value_bytes\": %zu, "
               "\"timeout_ms\": %ld, \"connections_per_server\": %u, \"seed\": %llu,\n"
               "             \"shards\": %u, \"mix\": {",
               options_.clients, options_.duration_s, options_.keys, options_.value_bytes,
               options_.timeout_ms, options_.connections_per_server, u(options_.seed),
               info_shards_);
  for (std::size_t op = 0; op < kOpTypes; ++op) {
    std::fprintf(f, "%s%s: %u", op ? ", " : "", json_string(kOpNames[op]).c_str(),
                 options_.mix[op]);
  }
  std::fprintf(f, "}},\n");
  std::fprintf(f, "  \"elapsed_s\": %.3f,\n  \"ops_ok\": %llu,\n  \"ops_per_s\": %.1f,\n", elapsed,
               u(s.ok_total), elapsed > 0 ? s.ok_total / elapsed : 0.0);
  std::fprintf(f, "  \"errors_total\": %llu,\n  \"errors\": {", u(s.errors_total));
  bool first = true;
  for (const auto& [code, count] : s.errors) {
    std::fprintf(f, "%s%s: %llu", first ? "" : ", ", json_string(code).c_str(), u(count));
    first = false;
  }
  std::fprintf(f, "},\n  \"redirects\": %llu,\n  \"cas_mismatches\": %llu,\n", u(s.redirects),
               u(s.cas_mismatches));
  std::fprintf(f, "  \"lease_reads\": %llu,\n  \"lease_hits\": %llu,\n  \"lease_hit_ratio\": ",
               u(s.lease_reads), u(s.lease_hits));
  if (s.lease_reads == 0) {
    std::fprintf(f, "null,\n");
  } else {
    std::fprintf(f, "%.6f,\n", static_cast<double>(s.lease_hits) / s.lease_reads);
  }
  std::fprintf(f, "  \"throughput_per_second\": [");
  for (std::size_t i = 0; i < s.per_second.size(); ++i) {
    std::fprintf(f, "%s%llu", i ? ", " : "", u(s.per_second[i]));
  }
  std::fprintf(f, "],\n  \"latency_unit\": \"us\",\n  \"latency\": ");
  json_latency(f, s.all, "  ");
  std::fprintf(f, ",\n  \"ops\": {");
  for (std::size_t op = 0; op < kOpTypes; ++op) {
    std::fprintf(f, "%s\n    %s: {\"ok\": %llu, \"errors\": %llu, \"latency\": ", op ? "," : "",
                 json_string(kOpNames[op]).c_str(), u(s.ok[op]), u(s.failed[op]));
    json_latency(f, s.latency[op], "      ");
    std::fprintf(f, "}");
  }
  std::fprintf(f, "\n  }\n}\n");
  const bool ok = std::ferror(f) == 0;
  return std::fclose(f) == 0 && ok;
}

}  // namespace

int main(int argc, char** argv) {
  Options options = parse_options(argc, argv);
  try {
    Bench bench(std::move(options));
    return bench.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tenure-kv-bench: %s\n", e.what());
    return 1;
  }
}
