// tenure-kv: one node of a replicated key-value store. N shards (Raft groups) per process share
// one io_context and one TCP transport (multi-raft); each shard keeps its log in FileStorage
// under the data directory; clients speak the line protocol of docs/kv-protocol.md.
//
//   tenure-kv --id 1 --cluster 1=127.0.0.1:7101/7201,2=127.0.0.1:7102/7202,3=127.0.0.1:7103/7203
//             --data-dir /tmp/kv1 [--shards 4] [--threads 1] [--timeout-ms 2000]
//             [--no-check-quorum] [--quiet] [--max-clients 1024] [--max-inflight 1024]
//             [--max-queued-bytes 1048576] [--idle-timeout-ms 300000]
//             [--shutdown-grace-ms 1000] [--shutdown-timeout-ms 3000]
//             [--tls-cert FILE --tls-key FILE --tls-ca FILE] [--snapshot-every N]
//             [--log-retention N] [--join] [--change-timeout-ms 10000]
//             [--log-level debug|info|warn|error|off] [--admin-port PORT [--admin-address IP]]
//
// `--cluster` lists every node as id=host:raft_port/client_port. `--timeout-ms` is every
// operation's deadline. `--no-check-quorum` lets a leader that lost its quorum keep leading (as
// etcd/raft does without CheckQuorum): its reads and writes then end only by their deadline.
// Lease reads stay safe either way: a lease needs fresh quorum acknowledgements.
//
// Whatever clients do, a node's resources stay bounded (docs/runtime.md, "Security"): at most
// --max-clients connections (one more is told `0 error overloaded -` and closed), at most
// --max-inflight requests in flight per connection (read, and not yet answered or not yet written
// to the socket) and --max-queued-bytes of answers waiting to be written to it (past either, the
// node stops reading that connection until its client reads), and a connection idle for
// --idle-timeout-ms is closed. At SIGTERM, connections get
// --shutdown-grace-ms to take their answers, then close; if the event loop still holds work at
// --shutdown-timeout-ms, the process exits at once with status 3 (what was acknowledged is
// durable; the log names what was still open).
//
// With --tls-cert, --tls-key and --tls-ca (PEM; scripts/make-certs makes test ones) both ports
// speak mutual TLS: peers must present a certificate of the CA naming "node-<id>" for the id
// they claim, clients one of the same CA.
//
// Each shard snapshots its store every --snapshot-every applied entries (default 100000) and on
// a `snapshot` request (tenure-kv-cli snapshot); its log on disk is then cut behind the snapshot,
// a restart loads the snapshot and replays only the entries after it, and a node that is too
// far behind (or whose data directory was wiped) catches up through one. A leader keeps
// --log-retention entries (default 100000) behind its snapshot in memory, so that a follower
// only a little behind catches up by appends instead.
//
// Membership (docs/runtime.md, "Replacing a node"): `add-node`, `remove-node` and `members`
// requests (tenure-kv-cli add-node, remove-node, members) change and show each shard's members
// on its leader. A node started with --join starts every shard knowing no members (--cluster
// then names itself and at least one running member to learn the others from), catches up as a
// learner once a leader adds it, and is made a voter by the add-node change. Where nodes are is
// known from three sources, later ones winning: --cluster, the file `peers` in the data
// directory (what this node learned before, rewritten on every change), and each shard's
// address book: add-node writes the new node's endpoint under a reserved key of that shard's
// store before changing the membership (remove-node deletes it), so every member, a restarted
// node and one catching up from a snapshot know it. A node no member of any shard and in no book
// is forgotten (the transport closes its connection). A node that finds itself removed from a
// shard stops that shard; removed from every shard it was a member of, it says so and exits 0.
//
// Observability (issue 19). Logs: stderr, one logfmt line per event with a UTC timestamp
// (`2026-12-03T10:42:07.123456Z level=info event=role_changed group=2 node=3 term=8 ...`), at
// --log-level and above (default info): each shard's Raft group logs through its own
// StreamLogger (role and term changes with their cause, leadership lost and why, snapshots,
// configuration changes, storage failures), the node logs its own events (event=leader_changed,
// serving, peer_learned, ...) and the transport's connection events (event=transport, the
// transport's text in `line`, the peer in `peer`). Nothing is logged per request at info.
// --quiet is --log-level warn (unless --log-level is given too). Metrics and status: with
// --admin-port an HTTP server (admin_http.hpp) on --admin-address (127.0.0.1 by default) serves
// /metrics (Prometheus text: every shard's counters, gauges and histograms, the leader's view of
// each follower, the transport's and the client port's counters) and /status (JSON: every
// shard's GroupStatus, as of the monitor's last round at most 50 ms ago, and the transport's
// counters); port 0 lets the system pick one, and the node logs where it listens
// (event=admin_listening address=HOST:PORT, whatever the log level). The client protocol's
// `status` request answers with this node's view of every shard, taken on each shard's strand
// (tenure-kv-cli status renders the whole cluster's).
#include "admin_http.hpp"
#include "blocking_client.hpp"
#include "kv_store.hpp"
#include "protocol.hpp"
#include "status_report.hpp"
#include "stream.hpp"

#include <raft/asio/asio_group.hpp>
#include <raft/asio/tcp_transport.hpp>
#include <raft/config.hpp>
#include <raft/errc.hpp>
#include <raft/file_storage.hpp>
#include <raft/file_system.hpp>
#include <raft/logger.hpp>
#include <raft/metrics.hpp>
#include <raft/policies.hpp>
#include <raft/prometheus_text.hpp>
#include <raft/status.hpp>
#include <raft/steady_clock.hpp>

#include <boost/asio.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

namespace net = ::boost::asio;
using tcp = net::ip::tcp;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using tenure::raft::errc;
using tenure::raft::LogField;
using tenure::raft::LogLevel;
using tenure::raft::NodeId;

struct Policies : tenure::raft::DefaultPolicies {
  using transport_type = tenure::raft::asio::TransportRef;
  using storage_type = tenure::raft::FileStorage<tenure::raft::PosixFileSystem>;
  using state_machine_type = tenure::kv::KvStore;
  using logger_type = tenure::raft::StreamLogger;    // one per shard, to stderr (--log-level)
  using metrics_type = tenure::raft::AtomicMetrics;  // read by /metrics from any thread
};
using Group = tenure::raft::asio::AsioGroup<Policies>;

struct NodeSpec {
  NodeId id = 0;
  std::string host;
  std::uint16_t raft_port = 0;
  std::uint16_t client_port = 0;
  std::string client_address() const { return host + ":" + std::to_string(client_port); }
  /// `host:raft_port/client_port`, as add-node and the address book carry it.
  std::string endpoint() const {
    return host + ":" + std::to_string(raft_port) + "/" + std::to_string(client_port);
  }
  friend bool operator==(const NodeSpec&, const NodeSpec&) = default;
};

std::optional<NodeSpec> spec_of(NodeId id, std::string_view endpoint) {
  const auto e = tenure::kv::split_endpoint(endpoint);
  if (!e || id == 0) {
    return std::nullopt;
  }
  return NodeSpec{id, std::string(e->host), e->raft_port, e->client_port};
}

struct Args {
  NodeId id = 0;
  std::vector<NodeSpec> cluster;
  std::string data_dir;
  std::uint32_t shards = 1;
  unsigned threads = 1;
  std::chrono::milliseconds timeout{2000};
  bool check_quorum = true;
  bool sync_inline = false;
  bool quiet = false;
  std::size_t max_clients = 1024;
  std::size_t max_inflight = 1024;
  std::size_t max_queued_bytes = std::size_t{1} << 20;
  std::chrono::milliseconds idle_timeout{300'000};
  std::chrono::milliseconds shutdown_grace{1000};
  std::chrono::milliseconds shutdown_timeout{3000};
  std::optional<tenure::raft::asio::TlsFiles> tls;
  std::uint64_t snapshot_every = 100'000;  // applied entries between snapshots, per shard
  std::uint64_t log_retention = 100'000;   // entries kept behind a snapshot for slow followers
  bool join = false;                       // start every shard knowing no members
  std::chrono::milliseconds change_timeout{10000};  // deadline of one membership change
  LogLevel log_level = LogLevel::info;
  bool log_level_given = false;
  std::optional<std::uint16_t> admin_port;  // --admin-port: serve /metrics and /status
  std::string admin_address = "127.0.0.1";
};

[[noreturn]] void usage(const std::string& error) {
  if (!error.empty()) {
    std::cerr << "tenure-kv: " << error << "\n";
  }
  (error.empty() ? std::cout : std::cerr)
      << "usage: tenure-kv --id N --cluster ID=HOST:RAFT_PORT/CLIENT_PORT,... --data-dir DIR\n"
         "                 [--shards N] [--threads N] [--timeout-ms MS] [--no-check-quorum]\n"
         "                 [--quiet] [--max-clients N] [--max-inflight N]\n"
         "                 [--max-queued-bytes N] [--idle-timeout-ms MS]\n"
         "                 [--shutdown-grace-ms MS] [--shutdown-timeout-ms MS]\n"
         "                 [--tls-cert FILE --tls-key FILE --tls-ca FILE]\n"
         "                 [--snapshot-every N] [--log-retention N]\n"
         "                 [--join] [--change-timeout-ms MS] [--sync-inline]\n"
         "                 [--log-level debug|info|warn|error|off]\n"
         "                 [--admin-port PORT [--admin-address IP]]\n"
         "  --log-level: what goes to stderr, one logfmt line per event (default info: role,\n"
         "          term and leader changes with their cause, snapshots, membership changes,\n"
         "          peer connections; never one line per request); off logs nothing\n"
         "  --quiet: --log-level warn (unless --log-level is given)\n"
         "  --admin-port: serve GET /metrics (Prometheus text) and /status (JSON) over HTTP on\n"
         "          --admin-address (default 127.0.0.1); port 0 picks a free port, logged as\n"
         "          event=admin_listening address=HOST:PORT whatever the log level\n"
         "  --sync-inline: sync each shard's log on the event loop, not on a storage thread:\n"
         "          less CPU per write, but every sync blocks the loop (data on tmpfs or\n"
         "          persistent memory only, never on a disk)\n"
         "  --join: a new node: every shard starts knowing no members and waits to be added\n"
         "          (tenure-kv-cli add-node); --cluster names this node and at least one member\n";
  std::exit(error.empty() ? 0 : 2);
}

std::optional<std::uint64_t> number(std::string_view s) {
  std::uint64_t v = 0;
  if (s.empty() || s.size() > 18) {
    return std::nullopt;
  }
  for (char c : s) {
    if (c < '0' || c > '9') {
      return std::nullopt;
    }
    v = v * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return v;
}

std::optional<NodeSpec> parse_node(std::string_view s) {
  const auto eq = s.find('=');
  const auto colon = s.rfind(':');
  const auto slash = s.rfind('/');
  if (eq == std::string_view::npos || colon == std::string_view::npos ||
      slash == std::string_view::npos || !(eq < colon && colon < slash)) {
    return std::nullopt;
  }
  const auto id = number(s.substr(0, eq));
  const auto raft = number(s.substr(colon + 1, slash - colon - 1));
  const auto client = number(s.substr(slash + 1));
  if (!id || *id == 0 || *id > 1'000'000 || !raft || *raft == 0 || *raft > 65535 || !client ||
      *client == 0 || *client > 65535) {
    return std::nullopt;
  }
  NodeSpec n;
  n.id = *id;
  n.host = std::string(s.substr(eq + 1, colon - eq - 1));
  n.raft_port = static_cast<std::uint16_t>(*raft);
  n.client_port = static_cast<std::uint16_t>(*client);
  if (n.host.empty()) {
    return std::nullopt;
  }
  return n;
}

Args parse_args(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    const auto value = [&]() -> std::string_view {
      if (i + 1 >= argc) {
        usage(std::string(arg) + " needs a value");
      }
      return argv[++i];
    };
    if (arg == "--help" || arg == "-h") {
      usage("");
    } else if (arg == "--id") {
      const auto v = number(value());
      if (!v || *v == 0) {
        usage("--id must be a positive number");
      }
      a.id = *v;
    } else if (arg == "--cluster") {
      std::string_view list = value();
      while (!list.empty()) {
        const auto comma = list.find(',');
        const auto item = list.substr(0, comma);
        const auto node = parse_node(item);
        if (!node) {
          usage("bad --cluster entry '" + std::string(item) +
                "' (want ID=HOST:RAFT_PORT/CLIENT_PORT)");
        }
        a.cluster.push_back(*node);
        list = comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
      }
    } else if (arg == "--data-dir") {
      a.data_dir = std::string(value());
    } else if (arg == "--shards") {
      const auto v = number(value());
      if (!v || *v == 0 || *v > tenure::kv::kMaxShards) {
        usage("--shards must be 1.." + std::to_string(tenure::kv::kMaxShards));
      }
      a.shards = static_cast<std::uint32_t>(*v);
    } else if (arg == "--threads") {
      const auto v = number(value());
      if (!v || *v == 0 || *v > 64) {
        usage("--threads must be 1..64");
      }
      a.threads = static_cast<unsigned>(*v);
    } else if (arg == "--timeout-ms") {
      const auto v = number(value());
      if (!v || *v == 0) {
        usage("--timeout-ms must be positive");
      }
      a.timeout = std::chrono::milliseconds(*v);
    } else if (arg == "--max-clients" || arg == "--max-inflight" || arg == "--max-queued-bytes" ||
               arg == "--idle-timeout-ms" || arg == "--shutdown-grace-ms" ||
               arg == "--shutdown-timeout-ms") {
      const auto v = number(value());
      if (!v || *v == 0) {
        usage(std::string(arg) + " must be a positive number");
      }
      if (arg == "--max-clients") {
        a.max_clients = *v;
      } else if (arg == "--max-inflight") {
        a.max_inflight = *v;
      } else if (arg == "--max-queued-bytes") {
        a.max_queued_bytes = *v;
      } else if (arg == "--idle-timeout-ms") {
        a.idle_timeout = std::chrono::milliseconds(*v);
      } else if (arg == "--shutdown-grace-ms") {
        a.shutdown_grace = std::chrono::milliseconds(*v);
      } else {
        a.shutdown_timeout = std::chrono::milliseconds(*v);
      }
    } else if (arg == "--tls-cert" || arg == "--tls-key" || arg == "--tls-ca") {
      if (!a.tls) {
        a.tls.emplace();
      }
      (arg == "--tls-cert"  ? a.tls->certificate
       : arg == "--tls-key" ? a.tls->private_key
                            : a.tls->ca) = std::string(value());
    } else if (arg == "--snapshot-every") {
      const auto v = number(value());
      if (!v || *v == 0) {
        usage("--snapshot-every must be a positive number of entries");
      }
      a.snapshot_every = *v;
    } else if (arg == "--log-retention") {
      const auto v = number(value());
      if (!v) {
        usage("--log-retention must be a number of entries");
      }
      a.log_retention = *v;
    } else if (arg == "--change-timeout-ms") {
      const auto v = number(value());
      if (!v || *v == 0) {
        usage("--change-timeout-ms must be positive");
      }
      a.change_timeout = std::chrono::milliseconds(*v);
    } else if (arg == "--join") {
      a.join = true;
    } else if (arg == "--no-check-quorum") {
      a.check_quorum = false;
    } else if (arg == "--sync-inline") {
      a.sync_inline = true;
    } else if (arg == "--quiet") {
      a.quiet = true;
    } else if (arg == "--log-level") {
      const auto level = tenure::raft::parse_log_level(value());
      if (!level) {
        usage("--log-level must be debug, info, warn, error or off");
      }
      a.log_level = *level;
      a.log_level_given = true;
    } else if (arg == "--admin-port") {
      const auto v = number(value());
      if (!v || *v > 65535) {
        usage("--admin-port must be a port number 0..65535 (0: any free port)");
      }
      a.admin_port = static_cast<std::uint16_t>(*v);
    } else if (arg == "--admin-address") {
      a.admin_address = std::string(value());
      boost::system::error_code ec;
      (void)net::ip::make_address(a.admin_address, ec);
      if (ec) {
        usage("--admin-address must be an IP address (e.g. 127.0.0.1 or ::1)");
      }
    } else {
      usage("unknown option " + std::string(arg));
    }
  }
  if (a.id == 0 || a.cluster.empty() || a.data_dir.empty()) {
    usage("--id, --cluster and --data-dir are required");
  }
  if (a.tls && (a.tls->certificate.empty() || a.tls->private_key.empty() || a.tls->ca.empty())) {
    usage("TLS needs all of --tls-cert, --tls-key and --tls-ca");
  }
  if (a.tls && !tenure::raft::asio::kHasTls) {
    usage("this build has no TLS (OpenSSL was not found when it was built)");
  }
  std::sort(a.cluster.begin(), a.cluster.end(),
            [](const NodeSpec& x, const NodeSpec& y) { return x.id < y.id; });
  for (std::size_t i = 1; i < a.cluster.size(); ++i) {
    if (a.cluster[i].id == a.cluster[i - 1].id) {
      usage("node " + std::to_string(a.cluster[i].id) + " is listed twice in --cluster");
    }
  }
  if (a.cluster.size() > Policies::max_peers) {
    usage("at most " + std::to_string(Policies::max_peers) + " nodes");
  }
  if (std::none_of(a.cluster.begin(), a.cluster.end(),
                   [&](const NodeSpec& n) { return n.id == a.id; })) {
    usage("--id " + std::to_string(a.id) + " is not in --cluster");
  }
  if (a.join && a.cluster.size() < 2) {
    usage("--join needs --cluster to name at least one running member besides this node");
  }
  if (a.quiet && !a.log_level_given) {
    a.log_level = LogLevel::warn;
  }
  return a;
}

// The process's own log: the node's events and the transport's, one logfmt line each on stderr
// (StreamLogger: one fwrite per line, so lines of different threads and of the shards' own
// loggers never interleave). Its level is --log-level; main sets it before anything logs.
tenure::raft::StreamLogger process_log(stderr, LogLevel::info);

/// Logs one event of this node: `event` a stable name, `message` for people, `group` the shard's
/// Raft group (shard + 1; 0 for none).
void log_event(LogLevel level, std::string_view event, NodeId node, std::string_view message,
               std::initializer_list<LogField> fields = {}, std::uint64_t group = 0) {
  if (!process_log.enabled(level)) {
    return;
  }
  tenure::raft::LogRecord r;
  r.level = level;
  r.event = event;
  r.node = node;
  r.group = group;
  r.message = message;
  for (const LogField& f : fields) {
    r.with(f);
  }
  process_log.log(r);
}

// The transport's lines (TcpTransportOptions::log, any I/O thread) as event=transport records:
// the text in `line`, the peer in `peer` when the line names one. Refused or malformed
// connections are warnings; a failing connect is logged once at info, then at debug until the
// peer connects again (a dialer retries every second while a peer is down).
class TransportLog {
 public:
  explicit TransportLog(NodeId self) : self_(self) {}

  void operator()(std::string_view line) {
    const NodeId peer = peer_of(line);
    LogLevel level = LogLevel::info;
    for (const std::string_view bad : {"bad hello", "bad frame", "frame from node", "hello", "TLS",
                                       "accept failed", "refused a connection", "out of memory"}) {
      if (line.find(bad) != std::string_view::npos) {
        level = LogLevel::warn;
      }
    }
    if (line.find("connect failed") != std::string_view::npos && peer != tenure::raft::kNoNode) {
      std::lock_guard lock(mutex_);
      level = failing_.insert(peer).second ? LogLevel::info : LogLevel::debug;
    } else if (line.find(": connected") != std::string_view::npos) {
      std::lock_guard lock(mutex_);
      failing_.erase(peer);
    }
    if (peer != tenure::raft::kNoNode) {
      log_event(level, "transport", self_, {},
                {LogField::u("peer", peer), LogField::t("line", line)});
    } else {
      log_event(level, "transport", self_, {}, {LogField::t("line", line)});
    }
  }

 private:
  // "node 1: peer 2 ...": 2; kNoNode when the line names no peer.
  static NodeId peer_of(std::string_view line) {
    const auto at = line.find(": peer ");
    if (at == std::string_view::npos) {
      return tenure::raft::kNoNode;
    }
    NodeId id = 0;
    for (std::size_t i = at + 7; i < line.size() && line[i] >= '0' && line[i] <= '9'; ++i) {
      id = id * 10 + static_cast<NodeId>(line[i] - '0');
    }
    return id;
  }

  NodeId self_;
  std::mutex mutex_;
  std::set<NodeId> failing_;  // peers whose last connection attempt failed
};

// One shard: its storage, state machine and group.
struct Shard {
  Shard(net::io_context& io, const Args& args, std::uint32_t index,
        tenure::raft::asio::TransportRef& transport, tenure::raft::SteadyClock& clock,
        tenure::raft::PosixFileSystem& fs)
      : storage(storage_options(args, index, this), fs) {
    tenure::raft::RaftConfig c;
    c.self = args.id;
    c.group = index + 1;
    if (!args.join) {  // joining: no members; a leader adds this node (a stored config wins)
      for (const auto& n : args.cluster) {
        c.voters.push_back(n.id);
      }
    }
    c.random_seed = 0;
    c.check_quorum = args.check_quorum;
    c.snapshot_entries = args.snapshot_every;
    c.log_retention_entries = args.log_retention;
    tenure::raft::asio::AsioGroupOptions o;  // the lease takes the group's election timeout
    o.sync_inline = args.sync_inline;
    group = std::make_unique<Group>(io, c, o, clock, transport, storage, store);
    // Not started yet: the group may be configured from here.
    group->group().logger().set_output(stderr);
    group->group().logger().set_level(args.log_level);
    metrics = &group->group().metrics();
    cache_status(group->group().status());
    runner.store(group.get(), std::memory_order_release);
  }

  static tenure::raft::FileStorageOptions storage_options(const Args& args, std::uint32_t index,
                                                          Shard* self) {
    tenure::raft::FileStorageOptions o;
    o.directory = args.data_dir + "/shard-" + std::to_string(index);
    o.background_sync = !args.sync_inline;  // --sync-inline: the group's strand syncs
    o.on_durable = [self] {
      if (Group* g = self->runner.load(std::memory_order_acquire)) {
        g->notify_persisted();
      }
    };
    return o;
  }

  // The storage's sync thread reports durability to the group (on_durable): it is stopped while
  // the group is still alive, and only then the group goes. (Members alone would destroy the
  // group first, and a last on_durable would reach freed memory: SIGSEGV at SIGTERM.)
  ~Shard() {
    storage.close();
    runner.store(nullptr, std::memory_order_release);
    group.reset();
  }
  Shard(const Shard&) = delete;
  Shard& operator=(const Shard&) = delete;

  std::atomic<Group*> runner{nullptr};
  tenure::kv::KvStore store;
  Policies::storage_type storage;
  std::unique_ptr<Group> group;
  /// The group's metrics: relaxed atomics, read by /metrics from any thread.
  const tenure::raft::AtomicMetrics* metrics = nullptr;
  NodeId last_leader = tenure::raft::kNoNode;
  tenure::raft::Term last_term = 0;
  std::uint64_t book_version = ~std::uint64_t{0};  // the address book as last published (strand)

  // What the monitor publishes from the shard's strand for the membership watcher thread.
  struct View {
    bool valid = false;
    tenure::raft::asio::MembershipStatus status;
    std::vector<NodeSpec> book;  // the shard's address book
  };
  View view() const {
    std::lock_guard lock(view_mutex);
    return view_;
  }
  void publish(tenure::raft::asio::MembershipStatus status, const std::vector<NodeSpec>* book) {
    std::lock_guard lock(view_mutex);
    view_.valid = true;
    view_.status = std::move(status);
    if (book != nullptr) {
      view_.book = *book;
    }
  }
  /// The group's status as the monitor last took it on the shard's strand (every 50 ms), and
  /// when: for the admin routes, which run elsewhere and must not wait for the strand.
  struct CachedStatus {
    tenure::raft::GroupStatus status;
    Clock::time_point taken{};
  };
  void cache_status(const tenure::raft::GroupStatus& status) {
    std::lock_guard lock(status_mutex);
    cached_.status = status;
    cached_.taken = Clock::now();
  }
  CachedStatus cached_status() const {
    std::lock_guard lock(status_mutex);
    return cached_;
  }

  /// The shard's address book as its store holds it. Strand only (or before start()).
  std::vector<NodeSpec> read_book() const {
    std::vector<NodeSpec> book;
    store.for_each_node_key([&](std::uint64_t node, std::string_view endpoint) {
      if (auto spec = spec_of(node, endpoint)) {
        book.push_back(std::move(*spec));
      }
    });
    return book;
  }

  /// Membership requests under way on this shard: the monitor moves no leadership meanwhile.
  std::atomic<int> changes{0};
  /// This node was removed from the shard: the group is stopped, requests get not_leader.
  std::atomic<bool> removed{false};
  std::atomic<NodeId> leader_after_removal{tenure::raft::kNoNode};

 private:
  mutable std::mutex view_mutex;
  View view_;  // guarded by view_mutex
  mutable std::mutex status_mutex;
  CachedStatus cached_;  // guarded by status_mutex
};

class Server;

// One client connection: reads request lines, answers each when its operation completes (in
// any order), writes responses in the order they complete. Everything but respond() and
// close_after_writes() runs on the session's strand.
//
// A client that half-closes (EOF) still gets every answer before the connection closes. A
// write that fails means the client is gone: the connection closes at once and later answers
// are dropped. (Writing on regardless once left a send pending for ever on the dead socket,
// and with it the io_context at shutdown.)
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(Server& server, tcp::socket socket);
  ~Session();

  void start();
  /// Closes the connection once every request read so far is answered and written.
  void close_after_writes() {
    net::post(strand_, [self = shared_from_this()] {
      self->close_when_drained_ = true;
      self->close_if_drained();
    });
  }
  /// Closes the connection now: answers not yet written are dropped (shutdown's grace is over).
  void close_now() {
    net::post(strand_, [self = shared_from_this()] { self->close(); });
  }
  /// Answers one request that handle() took. Any thread.
  void respond(const tenure::kv::Response& r);

 private:
  void read();

  // Backpressure: past max_inflight requests being served, or max_queued_bytes of answers not
  // yet written, the session stops reading its socket; the client's own writes then block in
  // TCP, and the node's memory for it stays bounded whatever the client does.
  bool over_limits() const;
  void resume_if_below_limits() {
    if (paused_ && !closed_ && !over_limits()) {
      paused_ = false;
      read();
    }
  }

  void touch();

  // Answers accumulate in pending_ while a write is in flight and go out together in the next
  // one: a pipelining client (tenure-kv-bench shares one connection among all its clients) gets
  // a burst of answers in one send instead of one send each.
  void enqueue(std::string_view line) {
    if (closed_) {
      return;  // the client is gone: nobody to answer
    }
    pending_.append(line);
    ++pending_count_;
    if (!writing_) {
      write();
    }
  }

  void write() {
    writing_ = true;
    writing_buffer_.swap(pending_);
    writing_count_ = pending_count_;
    pending_count_ = 0;
    stream_.async_write(
        net::buffer(writing_buffer_),
        net::bind_executor(
            strand_, [self = shared_from_this()](const boost::system::error_code& ec, std::size_t) {
              self->writing_ = false;
              if (ec) {
                self->close();
                return;
              }
              self->writing_buffer_.clear();
              self->writing_count_ = 0;
              if (!self->pending_.empty()) {
                self->write();
              } else {
                self->close_if_drained();
              }
              self->resume_if_below_limits();
            }));
  }

  void close_if_drained() {
    if (close_when_drained_ && !writing_ && pending_.empty() && outstanding_ == 0) {
      close();
    }
  }

  void close() {
    if (closed_) {
      return;
    }
    closed_ = true;
    pending_.clear();
    pending_count_ = 0;
    idle_.cancel();
    stream_.close();
  }

  Server& server_;
  tenure::kv::Stream stream_;
  net::strand<tcp::socket::executor_type> strand_;
  net::steady_timer idle_;
  std::string input_;
  std::string pending_;  // answers not yet handed to a write
  std::size_t pending_count_ = 0;
  std::string writing_buffer_;  // the answers of the write in flight
  std::size_t writing_count_ = 0;
  std::size_t outstanding_ = 0;  // requests handed to handle() and not yet answered
  bool writing_ = false;
  bool paused_ = false;  // not reading: over a limit
  bool close_when_drained_ = false;
  bool closed_ = false;
};

class Server {
 public:
  Server(net::io_context& io, Args args)
      : io_(io),
        args_(std::move(args)),
        transport_log_(std::make_shared<TransportLog>(args_.id)),
        transport_(io, transport_options()),
        transport_ref_{&transport_},
        acceptor_(io),
        accept_retry_(io),
        grace_strand_(net::make_strand(io)),
        grace_(grace_strand_),
        monitor_(io),
        signals_(io, SIGINT, SIGTERM) {
    // Where the other nodes are: --cluster, then what this node learned before (the peers
    // file), then the shards' address books (below, once the stores are recovered).
    for (const auto& n : args_.cluster) {
      learn(n, true, "--cluster");
    }
    load_directory();
    for (std::uint32_t s = 0; s < args_.shards; ++s) {
      shards_.push_back(std::make_unique<Shard>(io, args_, s, transport_ref_, clock_, fs_));
      Shard& shard = *shards_.back();
      Group* g = shard.group.get();
      transport_.add_group(s + 1, g->executor(),
                           [g](const tenure::raft::Message& m) { g->step(m); });
      const auto& r = shard.storage.recovery();
      log(LogLevel::info, "recovered",
          "shard " + std::to_string(s) + ": recovered " + std::to_string(r.records) +
              " records from " + std::to_string(r.segments) + " segments, log " +
              std::to_string(shard.storage.first_index()) + ".." +
              std::to_string(shard.storage.last_index()),
          {LogField::u("shard", s)}, s + 1);
      // Not started yet: the group and its store may be read here.
      for (const auto& n : shard.read_book()) {
        learn(n, true, "address book of shard " + std::to_string(s));
      }
      shard.book_version = shard.store.node_keys_version();
      const auto& m = g->group().membership();
      if (m.voters.empty()) {
        log(LogLevel::info, "waiting_to_join",
            "shard " + std::to_string(s) +
                ": no members known: waiting for a leader to add this node (tenure-kv-cli "
                "add-node " +
                std::to_string(args_.id) + " " + self_spec().endpoint() + ")",
            {LogField::u("shard", s)}, s + 1);
      } else {
        log(LogLevel::info, "members",
            "shard " + std::to_string(s) + ": members " + describe(m) +
                (m.contains(args_.id) ? "" : " (this node is not one of them)"),
            {LogField::u("shard", s)}, s + 1);
      }
    }
    save_directory();
    const auto& me = self_spec();
    const tcp::endpoint client_ep(net::ip::make_address(me.host), me.client_port);
    acceptor_.open(client_ep.protocol());
    acceptor_.set_option(tcp::acceptor::reuse_address(true));
    acceptor_.bind(client_ep);
    acceptor_.listen();
  }

  ~Server() { stop_watcher(); }

  void start() {
    // The admin port first: when it cannot be bound, nothing has started yet.
    if (args_.admin_port) {
      start_admin();
    }
    transport_.start();
    for (auto& s : shards_) {
      s->group->start();
    }
    accept();
    monitor();
    watcher_ = std::thread([this] { watch(); });
    signals_.async_wait([this](const boost::system::error_code& ec, int signal) {
      if (!ec) {
        log(LogLevel::info, "shutdown",
            std::string("signal ") + (signal == SIGINT ? "SIGINT" : "SIGTERM") + ": shutting down");
        stop();
      }
    });
    log(LogLevel::info, "serving",
        "node " + std::to_string(args_.id) + " serving " + std::to_string(args_.shards) +
            " shard(s): raft on " + transport_.local_endpoint().address().to_string() + ":" +
            std::to_string(transport_.local_endpoint().port()) + ", clients on " +
            self_spec().client_address());
  }

  void stop() {
    if (stopping_.exchange(true)) {
      return;
    }
    // Shutdown has a deadline too: if the event loop still holds work at shutdown_timeout, the
    // process exits at once with status 3, without running a destructor. Stopping the loop and
    // unwinding instead destroyed the server (the transport's frame pool with it) while the
    // loop's queued handlers still pointed into it. Everything acknowledged is durable already.
    watchdog_ = std::thread([this] {
      std::unique_lock lock(finished_mutex_);
      if (!finished_cv_.wait_for(lock, args_.shutdown_timeout, [this] { return finished_; })) {
        const auto t = transport_.stats();
        log(LogLevel::error, "shutdown_cut_off",
            "work still pending " + std::to_string(args_.shutdown_timeout.count()) +
                " ms after shutdown began (client sessions alive: " +
                std::to_string(live_sessions_.load()) +
                ", peer connections established and not closed: " +
                std::to_string(t.connects - t.disconnects) + "); exiting with status 3");
        std::fflush(stderr);
        std::_Exit(kForcedExit);
      }
    });
    {
      std::lock_guard lock(watch_mutex_);
      watch_stop_ = true;
    }
    watch_cv_.notify_all();
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    if (admin_) {
      admin_->stop();
    }
    accept_retry_.cancel();
    monitor_.cancel();
    signals_.cancel();
    for (auto& s : shards_) {
      s->group->stop();
    }
    transport_.stop();
    // Client connections end too (their reads would keep the io_context running): answers
    // already queued are written first, for shutdown_grace; then whatever a client has not read
    // is dropped.
    for_each_session([](Session& s) { s.close_after_writes(); });
    net::post(grace_strand_, [this] {
      if (live_sessions_.load() == 0) {
        return;  // nobody to wait for
      }
      grace_.expires_after(args_.shutdown_grace);
      grace_.async_wait([this](const boost::system::error_code& ec) {
        if (!ec) {
          for_each_session([](Session& s) { s.close_now(); });
        }
      });
    });
  }

  /// The process's exit status when shutdown had to be cut off (see stop()).
  static constexpr int kForcedExit = 3;
  /// SO_SNDBUF and SO_RCVBUF of a client connection.
  static constexpr int kSessionSocketBuffer = 128 << 10;

  void handle(const std::shared_ptr<Session>& session, std::string_view line) {
    const auto parsed = tenure::kv::parse_request(line);
    if (!parsed) {
      malformed_requests_.fetch_add(1, std::memory_order_relaxed);
      session->respond(tenure::kv::Response::failure(parsed.error().id, errc::invalid_argument));
      return;
    }
    const tenure::kv::Request& req = *parsed;
    requests_[static_cast<std::size_t>(req.op)].fetch_add(1, std::memory_order_relaxed);
    if (req.op == tenure::kv::Op::status) {
      handle_status(session, req);
      return;
    }
    if (req.op == tenure::kv::Op::info) {
      std::string leaders;
      std::string addresses;
      info_lists(leaders, addresses);
      tenure::kv::InfoView info;
      info.node = args_.id;
      info.shards = args_.shards;
      info.leaders = leaders;
      info.addresses = addresses;
      session->respond(tenure::kv::Response::cluster_info(req.id, info));  // formats at once
      return;
    }
    if (req.op == tenure::kv::Op::add_node || req.op == tenure::kv::Op::remove_node ||
        req.op == tenure::kv::Op::members) {
      handle_membership(session, req);
      return;
    }
    if (req.op == tenure::kv::Op::snapshot) {
      // Each shard takes one at its next tick (on its strand); the answer says it is asked for.
      for (const auto& shard : shards_) {
        net::post(shard->group->executor(),
                  [g = shard->group.get()] { g->group().request_snapshot(); });
      }
      session->respond(tenure::kv::Response::ok(req.id));
      return;
    }
    const std::uint32_t s = tenure::kv::shard_of(req.key, args_.shards);
    Shard& shard = *shards_[s];
    Group& g = *shard.group;
    const std::uint64_t id = req.id;
    if (shard.removed.load()) {
      fail(*session, id, tenure::raft::Error::not_leader(shard.leader_after_removal.load()));
      return;
    }
    if (req.op == tenure::kv::Op::get && req.level == tenure::kv::ReadLevel::lease) {
      // Only a leader has a lease: send lease readers there (a follower would forward the read
      // as a ReadIndex, a round trip that the client asked to avoid).
      const auto& group = g.group();
      const NodeId hint = group.leader_hint();
      if (group.leader_term() == 0 && hint != args_.id) {
        fail(*session, req.id, tenure::raft::Error::not_leader(hint));
        return;
      }
    }
    if (req.op == tenure::kv::Op::get) {
      const auto level =
          req.level == tenure::kv::ReadLevel::lease   ? tenure::raft::asio::ReadLevel::lease
          : req.level == tenure::kv::ReadLevel::stale ? tenure::raft::asio::ReadLevel::stale
                                                      : tenure::raft::asio::ReadLevel::linearizable;
      const auto how = level == tenure::raft::asio::ReadLevel::stale
                           ? tenure::kv::ReadSource::stale
                           : tenure::kv::ReadSource::readindex;
      g.async_read(level, args_.timeout,
                   [this, session, &shard, id, how, key = std::string(req.key)](
                       tenure::raft::Result<tenure::raft::asio::ReadResult> r) {
                     if (!r) {
                       fail(*session, id, r.error());
                       return;
                     }
                     // On the shard's strand: the map is as of at least r.index.
                     const auto source = r.value().from_lease ? tenure::kv::ReadSource::lease : how;
                     const auto value = shard.store.get(key);
                     session->respond(value ? tenure::kv::Response::found(id, *value, source)
                                            : tenure::kv::Response::absent(id, source));
                   });
      return;
    }
    auto payload = std::make_shared<std::vector<std::byte>>();
    const auto kind = req.op == tenure::kv::Op::put   ? tenure::kv::CommandKind::put
                      : req.op == tenure::kv::Op::del ? tenure::kv::CommandKind::del
                                                      : tenure::kv::CommandKind::cas;
    tenure::kv::encode_command(kind, req.key, req.value, req.expected, *payload);
    g.async_propose(*payload, args_.timeout,
                    [this, session, &shard, id, payload, key = std::string(req.key)](
                        tenure::raft::Result<tenure::raft::ProposeResult> r) {
                      if (!r) {
                        fail(*session, id, r.error());
                        return;
                      }
                      if (r.value().result == 0) {
                        session->respond(tenure::kv::Response::mismatch(id, shard.store.get(key)));
                        return;
                      }
                      session->respond(tenure::kv::Response::ok(id));
                    });
  }

  void info_lists(std::string& leaders, std::string& addresses) const {
    std::vector<std::uint64_t> ids;
    for (const auto& s : shards_) {
      ids.push_back(s->group->group().leader_hint());
    }
    tenure::kv::leaders_list(ids, leaders);
    std::vector<tenure::kv::NodeAddress> list;
    for (const auto& n : directory()) {
      list.push_back(tenure::kv::NodeAddress{n.id, n.client_address()});
    }
    tenure::kv::addresses_list(list, addresses);
  }

  /// The event loop has returned: the shutdown watchdog may go.
  void finished() {
    {
      std::lock_guard lock(finished_mutex_);
      finished_ = true;
    }
    finished_cv_.notify_all();
    if (watchdog_.joinable()) {
      watchdog_.join();
    }
    stop_watcher();
  }

  const Args& args() const noexcept { return args_; }
  bool stopping() const noexcept { return stopping_.load(); }
  /// A session is gone. Any thread. The last one to go during shutdown ends the grace period
  /// at once (its timer would otherwise hold the event loop for the whole grace).
  void session_ended() {
    if (live_sessions_.fetch_sub(1) == 1 && stopping_.load()) {
      net::post(grace_strand_, [this] { grace_.cancel(); });
    }
  }
  void session_started() { live_sessions_.fetch_add(1); }
  /// Counts an answer for /metrics (errors by code). Any thread.
  void count_answer(const tenure::kv::Response& r) {
    if (r.kind == tenure::kv::ResponseKind::error) {
      const auto code = static_cast<std::size_t>(r.code);
      if (code < errors_.size()) {
        errors_[code].fetch_add(1, std::memory_order_relaxed);
      }
    }
  }

 private:
  void fail(Session& session, std::uint64_t id, const tenure::raft::Error& e) {
    std::string leader;
    if (e.leader_hint != tenure::raft::kNoNode) {
      if (const auto n = find_node(e.leader_hint)) {
        leader = n->client_address();
      }
    }
    const auto code = e.code.category() == tenure::raft::error_category()
                          ? static_cast<errc>(e.code.value())
                          : errc::storage_failure;
    session.respond(tenure::kv::Response::failure(id, code, leader));
  }

  // ---- status --------------------------------------------------------------------------------

  // `status` / `status <shard>`: each shard's GroupStatus taken on its strand (AsioGroup::
  // async_status); the last one to arrive answers. The answer is this node's view, fresh: the
  // admin routes use the monitor's cached copies instead, as they cannot wait.
  void handle_status(const std::shared_ptr<Session>& session, const tenure::kv::Request& req) {
    std::vector<std::uint32_t> which;
    if (req.shard == tenure::kv::kAllShards) {
      for (std::uint32_t s = 0; s < shards_.size(); ++s) {
        which.push_back(s);
      }
    } else if (req.shard < shards_.size()) {
      which.push_back(req.shard);
    } else {
      session->respond(tenure::kv::Response::failure(req.id, errc::invalid_argument));
      return;
    }
    struct Gather {
      std::vector<tenure::kv::ShardStatus> groups;
      std::atomic<std::size_t> left{0};
    };
    auto gather = std::make_shared<Gather>();
    gather->groups.resize(which.size());
    gather->left.store(which.size());
    const std::uint64_t id = req.id;
    for (std::size_t i = 0; i < which.size(); ++i) {
      const std::uint32_t s = which[i];
      // Each handler runs on its shard's strand and fills its own slot; the last one (the
      // counter's acq_rel orders the others' writes before it) answers.
      shards_[s]->group->async_status(
          [this, session, gather, i, s, id](const tenure::raft::GroupStatus& status) {
            gather->groups[i] = tenure::kv::shard_status_of(s, status);
            if (gather->left.fetch_sub(1, std::memory_order_acq_rel) == 1) {
              std::string groups;
              tenure::kv::status_groups(gather->groups, groups);
              // "<id> status node=<id> shards=<n> groups=" is well under 100 bytes.
              if (groups.size() + 100 > tenure::kv::kMaxResponseLine) {
                session->respond(tenure::kv::Response::failure(id, errc::too_large));
                return;
              }
              session->respond(tenure::kv::Response::node_status(
                  id, tenure::kv::StatusView{args_.id, args_.shards, groups}));
            }
          });
    }
  }

  // ---- the admin HTTP endpoint (--admin-port) -------------------------------------------------

  void start_admin() {
    const tcp::endpoint where(net::ip::make_address(args_.admin_address), *args_.admin_port);
    admin_ = std::make_unique<tenure::kv::AdminHttpServer>(io_, where);
    admin_->add_route("/metrics", [this] { return metrics_reply(); });
    admin_->add_route("/status", [this] { return status_reply(); });
    admin_->start();  // throws when the address cannot be bound: main reports it, exit 1
    const auto bound = admin_->local_endpoint();
    const std::string address =
        bound.address().is_v6()
            ? "[" + bound.address().to_string() + "]:" + std::to_string(bound.port())
            : bound.address().to_string() + ":" + std::to_string(bound.port());
    // Whatever the log level: with --admin-port 0 this line is the only way to learn the port.
    tenure::raft::LogRecord r;
    r.level = LogLevel::info;
    r.event = "admin_listening";
    r.node = args_.id;
    const std::string message = "admin HTTP on " + address + ": GET /metrics, /status";
    r.message = message;
    r.with(LogField::t("address", address));
    tenure::raft::StreamLogger(stderr, LogLevel::debug).log(r);
  }

  // Runs on the admin server's strand, on an io thread: reads only what any thread may read
  // (atomics, the transport's stats, the cached statuses under their mutexes), never waits for
  // a shard's strand (with --threads 1 that would be this very thread).
  tenure::kv::AdminReply metrics_reply() const {
    using tenure::raft::PrometheusWriter;
    using Label = PrometheusWriter::Label;
    const auto now = Clock::now();
    std::vector<Shard::CachedStatus> cached;
    cached.reserve(shards_.size());
    for (const auto& shard : shards_) {
      cached.push_back(shard->cached_status());
    }
    std::vector<tenure::raft::PrometheusGroup> groups;
    for (std::size_t i = 0; i < shards_.size(); ++i) {
      groups.push_back({shards_[i]->metrics, &cached[i].status});
    }
    std::string out;
    out.reserve(16384 + 8192 * shards_.size());
    tenure::raft::append_prometheus(out, groups);
    PrometheusWriter w(out);
    const auto counter = [&](std::string_view name, std::string_view help, std::uint64_t value) {
      w.family(name, help, "counter");
      w.sample(name, {}, value);
    };
    const auto gauge = [&](std::string_view name, std::string_view help, std::uint64_t value) {
      w.family(name, help, "gauge");
      w.sample(name, {}, value);
    };

    // This node and its shards.
    const std::string node = std::to_string(args_.id);
    w.family("tenure_node_info", "This node: its id in the label node (the value is always 1).",
             "gauge");
    {
      const Label labels[] = {{"node", node}};
      w.sample("tenure_node_info", labels, std::uint64_t{1});
    }
    w.family("process_start_time_seconds", "When this process started, in seconds since the epoch.",
             "gauge");
    w.sample("process_start_time_seconds", {},
             std::chrono::duration<double>(started_at_.time_since_epoch()).count());
    gauge("tenure_kv_shards", "Shards (Raft groups) this node runs.", shards_.size());
    w.family("tenure_kv_status_age_seconds",
             "Age of the group status behind the status figures (tenure_lease_valid, "
             "tenure_quorum_ack_age_seconds, tenure_follower_*): refreshed every 50 ms.",
             "gauge");
    for (std::size_t i = 0; i < shards_.size(); ++i) {
      const std::string group = std::to_string(i + 1);
      const Label labels[] = {{"group", group}};
      w.sample("tenure_kv_status_age_seconds", labels,
               std::chrono::duration<double>(now - cached[i].taken).count());
    }
    w.family("tenure_kv_shard_removed",
             "1 when this node was removed from the shard's group (it stopped serving it).",
             "gauge");
    for (std::size_t i = 0; i < shards_.size(); ++i) {
      const std::string group = std::to_string(i + 1);
      const Label labels[] = {{"group", group}};
      w.sample("tenure_kv_shard_removed", labels, std::uint64_t{shards_[i]->removed.load()});
    }

    // The client port.
    gauge("tenure_kv_client_connections", "Client connections open now.", live_sessions_.load());
    counter("tenure_kv_clients_refused_total",
            "Client connections refused at once: --max-clients were open.",
            refused_clients_.load());
    counter("tenure_kv_client_accept_failures_total",
            "Failed accepts on the client port (out of descriptors, mostly).",
            accept_failures_.load());
    w.family("tenure_kv_requests_total", "Client requests received, by op.", "counter");
    for (std::size_t op = 0; op < requests_.size(); ++op) {
      const Label labels[] = {{"op", tenure::kv::name_of(static_cast<tenure::kv::Op>(op))}};
      w.sample("tenure_kv_requests_total", labels, requests_[op].load(std::memory_order_relaxed));
    }
    counter("tenure_kv_malformed_requests_total",
            "Client request lines that did not parse (answered invalid_argument).",
            malformed_requests_.load(std::memory_order_relaxed));
    w.family("tenure_kv_request_errors_total", "Client requests answered with an error, by code.",
             "counter");
    for (std::size_t code = 1; code < errors_.size(); ++code) {
      const auto name = tenure::kv::name_of(static_cast<errc>(code));
      if (name == "?") {
        continue;
      }
      const Label labels[] = {{"code", name}};
      w.sample("tenure_kv_request_errors_total", labels,
               errors_[code].load(std::memory_order_relaxed));
    }

    // The Raft transport.
    const auto t = transport_.stats();
    w.family("tenure_transport_frames_total", "Raft frames sent to and received from peers.",
             "counter");
    {
      const Label sent[] = {{"direction", "sent"}};
      const Label received[] = {{"direction", "received"}};
      w.sample("tenure_transport_frames_total", sent, t.frames_sent);
      w.sample("tenure_transport_frames_total", received, t.frames_received);
      w.family("tenure_transport_bytes_total",
               "Bytes of Raft frames sent and received, length prefixes included.", "counter");
      w.sample("tenure_transport_bytes_total", sent, t.bytes_sent);
      w.sample("tenure_transport_bytes_total", received, t.bytes_received);
    }
    counter("tenure_transport_connects_total", "Peer connections established (hellos exchanged).",
            t.connects);
    counter("tenure_transport_disconnects_total", "Established peer connections that closed.",
            t.disconnects);
    gauge("tenure_transport_connections", "Peer connections established and open now.",
          t.connects - std::min(t.connects, t.disconnects));
    counter("tenure_transport_refused_connections_total",
            "Inbound peer connections refused at once: too many were open.", t.refused_connections);
    w.family("tenure_transport_dropped_frames_total",
             "Messages the transport dropped instead of sending, by reason.", "counter");
    const std::pair<std::string_view, std::uint64_t> dropped[] = {
        {"queue_full", t.dropped_queue_full},
        {"unknown_peer", t.dropped_unknown_peer},
        {"unknown_group", t.dropped_unknown_group},
        {"invalid", t.dropped_invalid},
        {"stopped", t.dropped_stopped}};
    for (const auto& [reason, value] : dropped) {
      const Label labels[] = {{"reason", reason}};
      w.sample("tenure_transport_dropped_frames_total", labels, value);
    }
    counter("tenure_transport_malformed_frames_total",
            "Bad hellos, bad lengths and frames the codec refused (each closed its connection).",
            t.malformed_frames);
    counter("tenure_transport_unknown_hellos_total",
            "Hellos from nodes that are not configured peers.", t.unknown_hellos);
    counter("tenure_transport_wrong_sender_total",
            "Frames whose sender was not the node the connection's hello named.", t.wrong_sender);
    counter("tenure_transport_tls_refused_total",
            "Peer connections refused for TLS (handshake or certificate).", t.tls_refused);
    counter("tenure_transport_accept_failures_total", "Failed accepts on the Raft port.",
            t.accept_failures);
    gauge("tenure_transport_pool_bytes", "Bytes of frame buffers the transport holds.",
          t.pool_bytes);
    return {200, "text/plain; version=0.0.4", std::move(out)};
  }

  tenure::kv::AdminReply status_reply() const {
    const auto now = Clock::now();
    std::string out;
    const auto num = [&out](std::string_view key, std::uint64_t v, bool comma = true) {
      out += '"';
      out += key;
      out += "\":";
      out += std::to_string(v);
      if (comma) {
        out += ',';
      }
    };
    out += '{';
    num("node", args_.id);
    num("shards", args_.shards);
    out += "\"uptime_seconds\":";
    {
      char text[32];
      std::snprintf(text, sizeof text, "%.3f",
                    std::chrono::duration<double>(now - started_steady_).count());
      out += text;
    }
    out += ",\"clients\":{";
    num("connections", live_sessions_.load());
    num("refused", refused_clients_.load());
    num("accept_failures", accept_failures_.load(), false);
    out += "},\"transport\":{";
    const auto t = transport_.stats();
    num("frames_sent", t.frames_sent);
    num("frames_received", t.frames_received);
    num("bytes_sent", t.bytes_sent);
    num("bytes_received", t.bytes_received);
    num("connects", t.connects);
    num("disconnects", t.disconnects);
    num("refused_connections", t.refused_connections);
    num("malformed_frames", t.malformed_frames);
    num("unknown_hellos", t.unknown_hellos);
    num("wrong_sender", t.wrong_sender);
    num("tls_refused", t.tls_refused);
    num("accept_failures", t.accept_failures);
    num("dropped_queue_full", t.dropped_queue_full);
    num("dropped_unknown_peer", t.dropped_unknown_peer);
    num("dropped_unknown_group", t.dropped_unknown_group);
    num("dropped_invalid", t.dropped_invalid);
    num("dropped_stopped", t.dropped_stopped);
    num("pool_bytes", t.pool_bytes, false);
    out += "},\"groups\":[";
    for (std::size_t i = 0; i < shards_.size(); ++i) {
      const auto cached = shards_[i]->cached_status();
      out += i == 0 ? "{" : ",{";
      num("shard", i);
      out += "\"removed\":";
      out += shards_[i]->removed.load() ? "true," : "false,";
      num("status_age_ns",
          static_cast<std::uint64_t>(
              std::chrono::duration_cast<std::chrono::nanoseconds>(now - cached.taken).count()));
      out += "\"status\":";
      tenure::raft::append_json(out, cached.status);
      out += '}';
    }
    out += "]}\n";
    return {200, "application/json", std::move(out)};
  }

  // ---- membership requests ------------------------------------------------------------------

  // add-node, remove-node and members, on the leader of the request's shard. A change first
  // writes the node's address-book entry (add: its endpoint; remove: deleted) through the shard's
  // log, then changes the membership with the target computed on the strand from the
  // configuration in force (AsioGroup::async_change_membership with an edit), so that two
  // changes never undo each other. Both steps are idempotent: a client may resend after
  // timed_out or leadership_lost.
  void handle_membership(const std::shared_ptr<Session>& session, const tenure::kv::Request& req) {
    using tenure::raft::Membership;
    const std::uint64_t id = req.id;
    if (req.shard >= shards_.size()) {
      session->respond(tenure::kv::Response::failure(id, errc::invalid_argument));
      return;
    }
    const std::uint32_t s = req.shard;
    Shard& shard = *shards_[s];
    Group& g = *shard.group;
    if (shard.removed.load()) {
      fail(*session, id, tenure::raft::Error::not_leader(shard.leader_after_removal.load()));
      return;
    }
    if (req.op == tenure::kv::Op::members) {
      net::post(g.executor(), [this, session, &g, id, s] {
        const auto status = g.membership_status();
        if (status.role != tenure::raft::Role::leader) {
          fail(*session, id, tenure::raft::Error::not_leader(status.leader));
          return;
        }
        respond_members(*session, id, s, status.membership, status.index,
                        status.in_force_committed);
      });
      return;
    }
    const bool add = req.op == tenure::kv::Op::add_node;
    const NodeId node = req.node;
    std::optional<NodeSpec> spec;
    if (add) {
      spec = spec_of(node, req.endpoint);
      boost::system::error_code ec;
      if (spec) {
        (void)net::ip::make_address(spec->host, ec);
      }
      if (!spec || ec) {
        session->respond(tenure::kv::Response::failure(id, errc::invalid_argument));
        return;
      }
    }
    shard.changes.fetch_add(1);
    auto payload = std::make_shared<std::vector<std::byte>>();
    const std::string key = tenure::kv::node_key(node);
    tenure::kv::encode_command(add ? tenure::kv::CommandKind::put : tenure::kv::CommandKind::del,
                               key, add ? std::string_view(spec->endpoint()) : std::string_view{},
                               std::nullopt, *payload);
    const std::string what = std::string(add ? "add-node " : "remove-node ") +
                             std::to_string(node) + " (shard " + std::to_string(s) + ")";
    g.async_propose(
        *payload, args_.timeout,
        [this, session, &shard, &g, id, node, add, spec, payload,
         what](tenure::raft::Result<tenure::raft::ProposeResult> r) {
          if (!r) {
            shard.changes.fetch_sub(1);
            fail(*session, id, r.error());
            return;
          }
          if (add) {
            learn(*spec, true, what);  // the leader replicates to it at once
          }
          const auto edit = [node, add](const Membership& m) {
            Membership target = m;
            target.outgoing.clear();
            std::erase(target.learners, node);
            std::erase(target.voters, node);
            if (add) {
              target.voters.push_back(node);
            }
            return target;
          };
          log(LogLevel::info, "membership_change",
              what + ": address book updated at index " + std::to_string(r.value().index) +
                  "; changing the membership");
          g.async_change_membership(
              edit, args_.change_timeout,
              [this, session, &shard, id, what](tenure::raft::Result<tenure::raft::LogIndex> c) {
                shard.changes.fetch_sub(1);
                if (!c) {
                  log(LogLevel::warn, "membership_change",
                      what + ": " +
                          std::string(tenure::kv::name_of(static_cast<errc>(c.code().value()))));
                  fail(*session, id, c.error());
                  return;
                }
                log(LogLevel::info, "membership_change",
                    what + ": done, configuration committed at index " + std::to_string(c.value()));
                session->respond(tenure::kv::Response::ok(id));
              });
        });
  }

  void respond_members(Session& session, std::uint64_t id, std::uint32_t s,
                       const tenure::raft::Membership& m, tenure::raft::LogIndex index,
                       bool committed) {
    std::string voters;
    std::string outgoing;
    std::string learners;
    std::string nodes;
    tenure::kv::ids_list(m.voters, voters);
    tenure::kv::ids_list(m.outgoing, outgoing);
    tenure::kv::ids_list(m.learners, learners);
    std::vector<tenure::kv::NodeEndpoint> endpoints;
    for (const auto& n : directory()) {
      if (m.contains(n.id)) {
        endpoints.push_back({n.id, n.endpoint()});
      }
    }
    tenure::kv::endpoints_list(endpoints, nodes);
    session.respond(tenure::kv::Response::shard_members(
        id, tenure::kv::MembersView{s, index, committed, voters, outgoing, learners, nodes}));
  }

  static std::string describe(const tenure::raft::Membership& m) {
    std::string out = "voters ";
    tenure::kv::ids_list(m.voters, out);
    if (m.joint()) {
      out += ", joint with outgoing ";
      tenure::kv::ids_list(m.outgoing, out);
    }
    if (!m.learners.empty()) {
      out += ", learners ";
      tenure::kv::ids_list(m.learners, out);
    }
    return out;
  }

  // ---- the directory: where every node is ----------------------------------------------------

  std::optional<NodeSpec> find_node(NodeId id) const {
    std::lock_guard lock(directory_mutex_);
    const auto it = directory_.find(id);
    if (it == directory_.end()) {
      return std::nullopt;
    }
    return it->second;
  }

  std::vector<NodeSpec> directory() const {
    std::lock_guard lock(directory_mutex_);
    std::vector<NodeSpec> out;
    for (const auto& [id, n] : directory_) {
      out.push_back(n);
    }
    return out;
  }

  // Records where node `n` is (replacing a different endpoint only with `overwrite`) and tells
  // the transport. This node's own entry always comes from --cluster. Any thread.
  void learn(const NodeSpec& n, bool overwrite, const std::string& source) {
    if (n.id == args_.id && source != "--cluster") {
      return;
    }
    {
      std::lock_guard lock(directory_mutex_);
      const auto it = directory_.find(n.id);
      if (it != directory_.end() && (it->second == n || !overwrite)) {
        return;
      }
      directory_[n.id] = n;
      directory_dirty_ = true;
    }
    if (n.id == args_.id) {
      return;
    }
    boost::system::error_code ec;
    const auto ip = net::ip::make_address(n.host, ec);
    if (ec) {
      log(LogLevel::warn, "peer_unreachable",
          "node " + std::to_string(n.id) + " at " + n.endpoint() + " (" + source +
              "): not an IP address, cannot reach it",
          {LogField::u("peer", n.id)});
      return;
    }
    transport_.set_peer(n.id, tcp::endpoint(ip, n.raft_port));
    if (source != "--cluster") {
      log(LogLevel::info, "peer_learned",
          "node " + std::to_string(n.id) + " is at " + n.endpoint() + " (" + source + ")",
          {LogField::u("peer", n.id)});
    }
  }

  void forget(NodeId id, const std::string& why) {
    {
      std::lock_guard lock(directory_mutex_);
      if (id == args_.id || directory_.erase(id) == 0) {
        return;
      }
      directory_dirty_ = true;
    }
    transport_.remove_peer(id);
    log(LogLevel::info, "peer_forgotten", "forgot node " + std::to_string(id) + ": " + why,
        {LogField::u("peer", id)});
  }

  std::string peers_file() const { return args_.data_dir + "/peers"; }

  // The peers file: a line `<id> <host>:<raft_port>/<client_port>` per node this node knew of
  // when it last changed. A cache of the directory: it lets a restarted node reach nodes it
  // learned about at run time before its logs are replayed.
  void load_directory() {
    std::ifstream in(peers_file());
    std::string line;
    while (std::getline(in, line)) {
      std::istringstream fields(line);
      std::uint64_t node = 0;
      std::string endpoint;
      if (fields >> node >> endpoint) {
        if (const auto spec = spec_of(node, endpoint)) {
          learn(*spec, true, "peers file");
        }
      }
    }
  }

  void save_directory() {
    std::string text;
    {
      std::lock_guard lock(directory_mutex_);
      if (!directory_dirty_) {
        return;
      }
      directory_dirty_ = false;
      for (const auto& [id, n] : directory_) {
        text += std::to_string(id) + " " + n.endpoint() + "\n";
      }
    }
    const std::string tmp = peers_file() + ".tmp";
    {
      std::ofstream out(tmp, std::ios::trunc);
      out << text;
      if (!out) {
        log(LogLevel::warn, "peers_file_failed", "cannot write " + tmp);
        return;
      }
    }
    std::error_code ec;
    std::filesystem::rename(tmp, peers_file(), ec);
    if (ec) {
      log(LogLevel::warn, "peers_file_failed",
          "cannot replace " + peers_file() + ": " + ec.message());
    }
  }

  // ---- the membership watcher (its own thread) -----------------------------------------------

  // Every 100 ms, from what the monitor publishes for each shard: learns the address books;
  // notices this node's removal (from its committed configuration, or, for a member that hears
  // no leader for 2 s, from the configuration a leader reports to a `members` probe); fills in
  // members it has no address for (and, joining, the members of shards it knows none of) by
  // asking other nodes `members` on their client ports; forgets nodes that are no member of any
  // shard and in no address book; keeps the peers file. Blocking probes (500 ms each at most)
  // run here, off the event loop.
  void watch() {
    struct State {
      bool was_member = false;
      std::optional<Clock::time_point> no_leader_since;
      Clock::time_point last_probe{};
      Clock::time_point last_fill{};
    };
    std::vector<State> state(shards_.size());
    std::map<NodeId, Clock::time_point> unneeded_since;  // in the directory, in no shard
    bool shutting_down = false;
    for (;;) {
      {
        std::unique_lock lock(watch_mutex_);
        if (watch_cv_.wait_for(lock, 100ms, [this] { return watch_stop_; })) {
          return;
        }
      }
      std::vector<Shard::View> views;
      for (const auto& shard : shards_) {
        views.push_back(shard->view());
      }
      if (std::any_of(views.begin(), views.end(), [](const auto& v) { return !v.valid; })) {
        continue;
      }
      const auto now = Clock::now();
      for (std::uint32_t s = 0; s < views.size(); ++s) {
        for (const auto& n : views[s].book) {
          learn(n, true, "address book of shard " + std::to_string(s));
        }
      }
      int probes = 0;  // at most two blocking probes per round
      for (std::uint32_t s = 0; s < views.size(); ++s) {
        Shard& shard = *shards_[s];
        const auto& v = views[s].status;
        State& st = state[s];
        if (shard.removed.load()) {
          continue;
        }
        if (v.committed.contains(args_.id)) {
          st.was_member = true;
        }
        if (st.was_member && !v.committed.voters.empty() && !v.committed.contains(args_.id)) {
          removed_from(s, v.leader,
                       "its committed configuration (" + describe(v.committed) + ") leaves it out");
          continue;
        }
        if (st.was_member && v.removed) {  // RaftGroup::removed(): a member told it so
          removed_from(s, v.leader, "a member told it so when it asked for votes");
          continue;
        }
        if (st.was_member && v.role != tenure::raft::Role::leader &&
            v.leader == tenure::raft::kNoNode) {
          if (!st.no_leader_since) {
            st.no_leader_since = now;
          }
          if (now - *st.no_leader_since >= 2s && now - st.last_probe >= 2s && probes < 2) {
            ++probes;
            st.last_probe = now;
            NodeId answered_by = tenure::raft::kNoNode;
            if (const auto m = probe_members(s, answered_by)) {
              learn_all(*m, s);
              if (m->committed && m->index > v.index && !m->contains(args_.id)) {
                removed_from(s, answered_by,
                             "the leader's committed configuration at index " +
                                 std::to_string(m->index) + " leaves it out");
                continue;
              }
            }
          }
        } else {
          st.no_leader_since.reset();
        }
        // Members without an address (or, joining, no members known yet): ask around.
        const auto& m = v.membership;
        bool gap = m.voters.empty();
        for (const auto* list : {&m.voters, &m.outgoing, &m.learners}) {
          for (NodeId id : *list) {
            gap = gap || !find_node(id).has_value();
          }
        }
        if (gap && now - st.last_fill >= 1s && probes < 2) {
          ++probes;
          st.last_fill = now;
          NodeId answered_by = tenure::raft::kNoNode;
          if (const auto info = probe_members(s, answered_by)) {
            learn_all(*info, s);
          }
        }
      }
      // Removed from every shard it was a member of: nothing left to serve.
      bool any_removed = false;
      bool still_member = false;
      for (std::uint32_t s = 0; s < shards_.size(); ++s) {
        any_removed = any_removed || shards_[s]->removed.load();
        still_member = still_member || (state[s].was_member && !shards_[s]->removed.load());
      }
      if (any_removed && !still_member && !shutting_down) {
        shutting_down = true;
        log(LogLevel::warn, "removed",
            "this node is no longer a member of any shard: it stops serving and shuts down");
        net::post(io_, [this] { stop(); });
      }
      // Forget the nodes no shard has as a member and no address book names, once every shard
      // knows its members and its leader (a joining node keeps its contacts).
      bool all_known = true;
      std::set<NodeId> keep{args_.id};
      for (std::uint32_t s = 0; s < views.size(); ++s) {
        const auto& view = views[s];
        if (shards_[s]->removed.load()) {
          continue;  // stopped here: its members are no concern of this node
        }
        const auto& m = view.status.membership;
        // Only a view that is current: a shard with no leader may be a node back from a long
        // outage, whose log still names members long gone, and which needs the nodes it was
        // told about (--cluster) to find the ones that replaced them.
        all_known = all_known && !m.voters.empty() && view.status.leader != tenure::raft::kNoNode;
        for (const auto* list : {&m.voters, &m.outgoing, &m.learners}) {
          keep.insert(list->begin(), list->end());
        }
        for (const auto& n : view.book) {
          keep.insert(n.id);
        }
      }
      // ... and only after 5 s out of them: a removed node that did not see its removal learns
      // it when it next asks for votes and a member answers that it is out
      // (RaftGroup::removed()); forgotten at once, its requests would never arrive.
      for (const auto& n : directory()) {
        if (!all_known || keep.contains(n.id)) {
          unneeded_since.erase(n.id);
        } else if (const auto since = unneeded_since.try_emplace(n.id, now).first->second;
                   now - since >= 5s) {
          forget(n.id, "no member of any shard, in no address book");
          unneeded_since.erase(n.id);
        }
      }
      save_directory();
    }
  }

  void learn_all(const tenure::kv::MembersInfo& m, std::uint32_t s) {
    for (const auto& n : m.nodes) {
      if (const auto spec = spec_of(n.node, n.endpoint)) {
        learn(*spec, false, "members of shard " + std::to_string(s) + " from another node");
      }
    }
  }

  // Asks other nodes for the members of shard `s`: the next ones in the directory in turn, at
  // most three (a node may be down or gone), each followed to the leader it hints. Blocking,
  // each request at most 500 ms.
  std::optional<tenure::kv::MembersInfo> probe_members(std::uint32_t s, NodeId& answered_by) {
    std::vector<NodeSpec> others;
    for (auto& n : directory()) {
      if (n.id != args_.id) {
        others.push_back(std::move(n));
      }
    }
    for (std::size_t tries = 0; tries < std::min<std::size_t>(3, others.size()); ++tries) {
      const NodeSpec& first = others[probe_cursor_++ % others.size()];
      std::string address = first.client_address();
      answered_by = first.id;
      for (int hop = 0; hop < 2; ++hop) {
        tenure::kv::BlockingClient client(address, args_.tls);
        const auto r = client.call(tenure::kv::Request::members(++probe_id_, s), 500ms);
        if (r.response && r.response->kind == tenure::kv::ResponseKind::members) {
          return tenure::kv::parse_members_info(r.response->members);
        }
        if (!r.response || r.response->kind != tenure::kv::ResponseKind::error ||
            r.response->code != errc::not_leader || r.response->leader.empty()) {
          break;  // down, or no leader known there: the next node
        }
        address = std::string(r.response->leader);
        answered_by = tenure::raft::kNoNode;
        for (const auto& n : others) {
          if (n.client_address() == address) {
            answered_by = n.id;
          }
        }
      }
    }
    return std::nullopt;
  }

  void removed_from(std::uint32_t s, NodeId leader, const std::string& why) {
    Shard& shard = *shards_[s];
    shard.leader_after_removal.store(leader);
    if (shard.removed.exchange(true)) {
      return;
    }
    log(LogLevel::warn, "removed_from_shard",
        "shard " + std::to_string(s) + ": this node was removed: " + why + "; the shard stops here",
        {LogField::u("shard", s)}, s + 1);
    shard.group->stop();
  }

  void stop_watcher() {
    {
      std::lock_guard lock(watch_mutex_);
      watch_stop_ = true;
    }
    watch_cv_.notify_all();
    if (watcher_.joinable() && watcher_.get_id() != std::this_thread::get_id()) {
      watcher_.join();
    }
  }

  const NodeSpec& self_spec() const {
    for (const auto& n : args_.cluster) {
      if (n.id == args_.id) {
        return n;
      }
    }
    std::abort();  // parse_args checked it
  }

  tenure::raft::asio::TcpTransportOptions transport_options() const {
    tenure::raft::asio::TcpTransportOptions o;
    o.self = args_.id;
    const auto& me = self_spec();
    o.listen = tcp::endpoint(net::ip::make_address(me.host), me.raft_port);
    o.log = [log = transport_log_](std::string_view line) { (*log)(line); };
    o.tls = args_.tls;
    return o;
  }

  template <class F>
  void for_each_session(F&& f) {
    std::lock_guard lock(sessions_mutex_);
    for (auto& w : sessions_) {
      if (auto session = w.lock()) {
        f(*session);
      }
    }
  }

  void accept() {
    acceptor_.async_accept([this](const boost::system::error_code& ec, tcp::socket socket) {
      if (stopping_) {
        return;
      }
      if (ec) {
        // Out of descriptors (EMFILE, ENFILE) or buffers: the condition lasts a while, and an
        // accept retried at once would spin. Pause, then accept again; never stop for good.
        const std::uint64_t failures = accept_failures_.fetch_add(1) + 1;
        if (failures == 1 || failures % 100 == 0) {
          log(LogLevel::warn, "client_accept_failed",
              "accept failed (" + ec.message() + "), " + std::to_string(failures) +
                  " so far; retrying in 100 ms");
        }
        accept_retry_.expires_after(100ms);
        accept_retry_.async_wait([this](const boost::system::error_code& wait_ec) {
          if (!wait_ec && !stopping_) {
            accept();
          }
        });
        return;
      }
      boost::system::error_code ignored;
      if (live_sessions_.load() >= args_.max_clients) {
        // One too many: say why, where the socket takes it at once, and close.
        std::string line;
        tenure::kv::format_response(tenure::kv::Response::failure(0, errc::overloaded), line);
        socket.non_blocking(true, ignored);
        if (!args_.tls) {  // plain text cannot go before a TLS handshake
          socket.write_some(net::buffer(line), ignored);
        }
        socket.shutdown(tcp::socket::shutdown_both, ignored);
        socket.close(ignored);
        if (const std::uint64_t refused = refused_clients_.fetch_add(1) + 1;
            refused == 1 || refused % 1000 == 0) {
          log(LogLevel::warn, "client_refused",
              "refused a client: " + std::to_string(args_.max_clients) +
                  " connections open (--max-clients); " + std::to_string(refused) +
                  " refused so far");
        }
        accept();
        return;
      }
      socket.set_option(tcp::no_delay(true), ignored);
      // Modest socket buffers: a client that stops reading is noticed after 128 KiB of answers
      // sit in the kernel, not after the megabytes autotuning would let pile up there (each
      // of them a request served on that client's behalf, and CPU taken from everyone else),
      // and a client's unread requests hold at most 128 KiB of kernel memory.
      socket.set_option(net::socket_base::send_buffer_size(kSessionSocketBuffer), ignored);
      socket.set_option(net::socket_base::receive_buffer_size(kSessionSocketBuffer), ignored);
      auto session = std::make_shared<Session>(*this, std::move(socket));
      {
        std::lock_guard lock(sessions_mutex_);
        std::erase_if(sessions_, [](const std::weak_ptr<Session>& w) { return w.expired(); });
        sessions_.push_back(session);
      }
      session->start();
      accept();
    });
  }

  // Every 50 ms: report leadership changes, refresh each shard's cached status (the admin
  // routes') and the membership view (the watcher's); every 2 s, hand a shard this node leads to
  // its preferred leader (shard s prefers the (s mod n)-th node), so leaders spread across nodes.
  void monitor() {
    monitor_.expires_after(50ms);
    monitor_.async_wait([this](const boost::system::error_code& ec) {
      if (ec || stopping_) {
        return;
      }
      // The round goes to each shard's strand by value: with --threads > 1 those run on other
      // threads, and reading the member there raced with the next round's increment.
      const std::uint64_t round = ++monitor_rounds_;
      for (std::uint32_t s = 0; s < shards_.size(); ++s) {
        Shard& shard = *shards_[s];
        Group& g = *shard.group;
        net::post(g.executor(), [this, &shard, &g, s, round] {
          const auto& group = g.group();
          const NodeId leader = group.leader_hint();
          if (leader != shard.last_leader || group.term() != shard.last_term) {
            if (leader != tenure::raft::kNoNode && leader != shard.last_leader) {
              log(LogLevel::info, "leader_changed",
                  "shard " + std::to_string(s) + ": leader is node " + std::to_string(leader) +
                      " (term " + std::to_string(group.term()) + ")" +
                      (leader == args_.id ? ", this node" : ""),
                  {LogField::u("shard", s), LogField::u("leader", leader),
                   LogField::u("term", group.term())},
                  s + 1);
            }
            shard.last_leader = leader;
            shard.last_term = group.term();
          }
          // Snapshots taken and installed: the group logs them itself (event=snapshot_taken,
          // snapshot_installed). Its status, for the admin routes:
          shard.cache_status(group.status());
          // The membership and the address book, for the watcher thread.
          const bool book_changed = shard.store.node_keys_version() != shard.book_version;
          std::vector<NodeSpec> book;
          if (book_changed) {
            book = shard.read_book();
            shard.book_version = shard.store.node_keys_version();
          }
          shard.publish(g.membership_status(), book_changed ? &book : nullptr);
          // Shard s prefers the (s mod n)-th of its voters in id order; no leadership moves
          // while its membership changes.
          std::vector<NodeId> voters = group.membership().voters;
          std::sort(voters.begin(), voters.end());
          if (round % 40 == 0 && group.leader_term() != 0 && !voters.empty() &&
              !group.changing_membership() && shard.changes.load() == 0 && !shard.removed) {
            const NodeId preferred = voters[s % voters.size()];
            if (preferred != args_.id && group.match_of(preferred) >= group.commit_index()) {
              g.async_transfer_leadership(preferred, 1s, [](tenure::raft::Result<void>) {});
            }
          }
        });
      }
      monitor();
    });
  }

  void log(LogLevel level, std::string_view event, const std::string& message,
           std::initializer_list<LogField> fields = {}, std::uint64_t group = 0) const {
    log_event(level, event, args_.id, message, fields, group);
  }

  net::io_context& io_;
  Args args_;
  std::shared_ptr<TransportLog> transport_log_;  // before transport_: its log callback
  tenure::raft::SteadyClock clock_;
  tenure::raft::PosixFileSystem fs_;
  tenure::raft::asio::AsioTcpTransport transport_;
  tenure::raft::asio::TransportRef transport_ref_;
  std::vector<std::unique_ptr<Shard>> shards_;
  tcp::acceptor acceptor_;
  net::steady_timer accept_retry_;
  net::strand<net::io_context::executor_type> grace_strand_;
  net::steady_timer grace_;                        // on grace_strand_
  std::atomic<std::uint64_t> accept_failures_{0};  // written by the accept chain; /metrics reads
  std::atomic<std::uint64_t> refused_clients_{0};  // likewise
  std::atomic<std::size_t> live_sessions_{0};
  net::steady_timer monitor_;
  net::signal_set signals_;
  std::unique_ptr<tenure::kv::AdminHttpServer> admin_;  // --admin-port
  const std::chrono::system_clock::time_point started_at_ = std::chrono::system_clock::now();
  const Clock::time_point started_steady_ = Clock::now();
  // Client requests by op, malformed lines, and error answers by code (errc value), for
  // /metrics: relaxed increments on the request path.
  std::array<std::atomic<std::uint64_t>, static_cast<std::size_t>(tenure::kv::Op::status) + 1>
      requests_{};
  std::atomic<std::uint64_t> malformed_requests_{0};
  std::array<std::atomic<std::uint64_t>, 32> errors_{};
  std::atomic<bool> stopping_{false};
  std::uint64_t monitor_rounds_ = 0;  // the monitor timer's chain only
  std::thread watchdog_;
  std::mutex finished_mutex_;
  std::condition_variable finished_cv_;
  bool finished_ = false;
  std::mutex sessions_mutex_;
  std::vector<std::weak_ptr<Session>> sessions_;
  mutable std::mutex directory_mutex_;
  std::map<NodeId, NodeSpec> directory_;  // guarded by directory_mutex_
  bool directory_dirty_ = false;          // guarded: not yet in the peers file
  std::thread watcher_;
  std::mutex watch_mutex_;
  std::condition_variable watch_cv_;
  bool watch_stop_ = false;       // guarded by watch_mutex_
  std::size_t probe_cursor_ = 0;  // the watcher thread only
  std::uint64_t probe_id_ = 0;    // likewise
};

Session::Session(Server& server, tcp::socket socket)
    : server_(server),
      stream_(std::move(socket)),
      strand_(stream_.socket().get_executor()),
      idle_(strand_) {
  server_.session_started();
  if (server_.args().tls) {
    stream_.use_tls(*server_.args().tls);
  }
}

// With TLS the handshake (the client's certificate checked against the CA) comes first; the
// idle timeout covers it too.
void Session::start() {
  touch();
  stream_.async_handshake(
      true,
      net::bind_executor(strand_, [self = shared_from_this()](const boost::system::error_code& ec) {
        if (ec) {
          self->close();
          return;
        }
        self->read();
      }));
}

Session::~Session() {
  server_.session_ended();
}

void Session::respond(const tenure::kv::Response& r) {
  server_.count_answer(r);
  std::string line;
  tenure::kv::format_response(r, line);
  net::post(strand_, [self = shared_from_this(), line = std::move(line)]() mutable {
    --self->outstanding_;
    self->enqueue(std::move(line));
    self->close_if_drained();
    self->resume_if_below_limits();
  });
}

// In flight: read and not yet answered, or answered and not yet written to the socket. Answers
// queue up only for a client that does not read them.
bool Session::over_limits() const {
  return outstanding_ + pending_count_ + writing_count_ >= server_.args().max_inflight ||
         pending_.size() + writing_buffer_.size() >= server_.args().max_queued_bytes;
}

// A connection that sends nothing for idle_timeout, with nothing of its own still being served
// or written, is closed.
void Session::touch() {
  idle_.expires_after(server_.args().idle_timeout);
  idle_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
    if (ec || self->closed_) {
      return;  // re-armed, or closed
    }
    if (self->outstanding_ == 0 && self->pending_.empty() && !self->writing_) {
      self->close();
    } else {
      self->touch();
    }
  });
}

void Session::read() {
  stream_.async_read_until(
      net::dynamic_buffer(input_, tenure::kv::kMaxRequestLine + 1), '\n',
      net::bind_executor(
          strand_, [self = shared_from_this()](const boost::system::error_code& ec, std::size_t n) {
            if (self->closed_) {
              return;
            }
            if (ec) {
              if (ec == net::error::not_found) {
                // A line longer than the protocol allows: answer, then close.
                std::string line;
                tenure::kv::format_response(
                    tenure::kv::Response::failure(0, errc::invalid_argument), line);
                self->enqueue(std::move(line));
              }
              // End of input (or a broken connection): answer what was asked, then close.
              self->close_when_drained_ = true;
              self->close_if_drained();
              return;
            }
            self->touch();
            // Every complete line the read brought is handled in this one pass (a pipelining
            // client sends several per packet): their answers then complete together, and leave
            // together (enqueue).
            std::size_t consumed = 0;
            std::size_t end = n;
            for (;;) {
              std::string_view line(self->input_.data() + consumed, end - consumed - 1);
              if (!line.empty() && line.back() == '\r') {
                line.remove_suffix(1);
              }
              if (!self->server_.stopping()) {
                ++self->outstanding_;  // handle() answers through respond(), exactly once
                self->server_.handle(self, line);
              }
              consumed = end;
              if (self->closed_ || self->over_limits()) {
                break;
              }
              const std::size_t next = self->input_.find('\n', consumed);
              if (next == std::string::npos) {
                break;
              }
              end = next + 1;
            }
            self->input_.erase(0, consumed);
            if (self->closed_) {
              return;
            }
            if (self->over_limits()) {
              self->paused_ = true;  // resume_if_below_limits() reads on
              return;
            }
            self->read();
          }));
}

}  // namespace

int main(int argc, char** argv) {
  const Args args = parse_args(argc, argv);
  process_log.set_level(args.log_level);
  try {
    std::filesystem::create_directories(args.data_dir);
    net::io_context io;
    Server server(io, args);
    server.start();
    std::vector<std::thread> threads;
    for (unsigned i = 1; i < args.threads; ++i) {
      threads.emplace_back([&io] { io.run(); });
    }
    io.run();
    for (auto& t : threads) {
      t.join();
    }
    server.finished();
    log_event(LogLevel::info, "stopped", args.id, "stopped");
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "tenure-kv: " << e.what() << "\n";
    return 1;
  }
}
