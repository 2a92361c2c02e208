// tenure-kv-demo: starts a 3-node tenure-kv cluster on 127.0.0.1, runs a workload with progress,
// kills the leader with SIGKILL, shows the new leader and the cluster's status as
// `tenure-kv-cli status` prints it (the killed node unreachable and falling behind), proves that
// no acknowledged write was lost
// by reading every acknowledged key back, wipes the killed node's data directory and restarts it
// empty, shows it rejoining through the leaders' snapshots (with its timing), replaces it by a
// fourth node under a new workload (started with --join, add-node, remove-node; the removed node
// exits by itself) and reads every acknowledged write back again, then shuts everything down
// and prints a summary. Exit status 0 only if every check held. The nodes take a
// snapshot every 2000 entries per shard and keep 500 behind it, so that the wiped node is far
// enough behind to need one.
//
//   tenure-kv-demo [--server PATH] [--data-dir DIR] [--shards N] [--clients N] [--seconds S]
//                  [--tls-dir DIR]
//
// With --tls-dir (certificates made by scripts/make-certs: ca.pem, node-<id>.pem, client.pem
// and their keys) every node and every client speaks mutual TLS.
//
// Without --data-dir the data and logs go to a fresh directory under /tmp, removed again when the
// demo succeeds.
#include "blocking_client.hpp"
#include "local_cluster.hpp"
#include "protocol.hpp"
#include "status_report.hpp"

#include <boost/asio.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using tenure::kv::BlockingClient;
using tenure::kv::CallResult;
using tenure::kv::LocalCluster;
using Node = tenure::kv::LocalNode;
using tenure::kv::Request;
using tenure::kv::ResponseKind;

struct Options {
  std::string server;
  std::string data_dir;
  bool own_data_dir = false;  // made under /tmp by the demo: removed after a successful run
  std::uint32_t shards = 3;
  unsigned clients = 4;
  unsigned seconds = 6;
  std::string tls_dir;  // empty: plain TCP
};

const Clock::time_point kStart = Clock::now();

void say(const std::string& line) {
  static std::mutex mutex;
  std::lock_guard lock(mutex);
  const double t = std::chrono::duration<double>(Clock::now() - kStart).count();
  std::printf("[%6.2f s] %s\n", t, line.c_str());
  std::fflush(stdout);
}

[[noreturn]] void die(const std::string& why) {
  say("FAILED: " + why);
  std::exit(1);
}

std::string describe(const std::vector<std::uint64_t>& leaders) {
  std::string s;
  for (std::size_t i = 0; i < leaders.size(); ++i) {
    s += (i ? ", " : "") + std::string("shard ") + std::to_string(i) + " -> node " +
         std::to_string(leaders[i]);
  }
  return s;
}

// What the workload knows about one key: written by one client only, in order.
struct KeyState {
  std::optional<std::string> acknowledged;  // the last value whose put was acknowledged
  std::vector<std::string> unknown;         // later puts whose outcome is unknown
};

// The TLS files the demo's clients present (--tls-dir), when the cluster runs TLS.
std::optional<tenure::raft::asio::TlsFiles> g_client_tls;

struct Stats {
  std::atomic<std::uint64_t> puts_ok{0}, puts_unknown{0}, puts_refused{0}, gets_ok{0},
      gets_lease{0}, errors{0};
};

// One client: puts to its own keys (values count up) and lease-reads them back; follows
// not_leader hints. Records what was acknowledged.
void client_loop(unsigned index, const std::vector<Node>& nodes, std::atomic<bool>& stop,
                 Stats& stats, std::map<std::string, KeyState>& keys, std::mutex& keys_mutex) {
  std::vector<std::unique_ptr<BlockingClient>> conns;
  for (const auto& n : nodes) {
    conns.push_back(std::make_unique<BlockingClient>(n.client_address(), g_client_tls));
  }
  std::uint64_t id = 0;
  std::uint64_t counter = 0;
  std::size_t target = index % nodes.size();
  while (!stop.load()) {
    const std::string key = "c" + std::to_string(index) + "-k" + std::to_string(counter % 25);
    const std::string value = "v" + std::to_string(++counter);
    const bool is_get = counter % 3 == 0;
    const Request req = is_get ? Request::get(++id, key, tenure::kv::ReadLevel::lease)
                               : Request::put(++id, key, value);
    CallResult r;
    for (int attempt = 0; attempt < 4; ++attempt) {
      r = conns[target]->call(req, 1500ms);
      if (r.response && r.response->kind == ResponseKind::error &&
          r.response->code == tenure::raft::errc::not_leader && !r.response->leader.empty()) {
        for (std::size_t i = 0; i < nodes.size(); ++i) {
          if (nodes[i].client_address() == r.response->leader) {
            target = i;
          }
        }
        continue;
      }
      break;
    }
    if (!r.response) {
      target = (target + 1) % nodes.size();  // that node is gone: try another
    }
    if (is_get) {
      if (r.ok()) {
        ++stats.gets_ok;
        if (r.response->how == tenure::kv::ReadSource::lease) {
          ++stats.gets_lease;
        }
      } else {
        ++stats.errors;
      }
      continue;
    }
    std::lock_guard lock(keys_mutex);
    KeyState& k = keys[key];
    if (r.ok()) {
      ++stats.puts_ok;
      k.acknowledged = value;
      k.unknown.clear();
    } else if (r.response && r.response->code != tenure::raft::errc::timed_out &&
               r.response->code != tenure::raft::errc::leadership_lost) {
      ++stats.puts_refused;  // refused before it was appended: it never takes effect
      ++stats.errors;
    } else {
      ++stats.puts_unknown;  // no answer, timed out or leadership lost: outcome unknown
      ++stats.errors;
      k.unknown.push_back(value);
    }
  }
}

void progress(const Stats& s, std::uint64_t& last_ops) {
  const std::uint64_t ops = s.puts_ok + s.gets_ok;
  say("  " + std::to_string(ops - last_ops) + " ops/s, " + std::to_string(s.puts_ok.load()) +
      " writes acknowledged, " + std::to_string(s.errors.load()) + " errors so far, lease hits " +
      std::to_string(s.gets_ok ? 100 * s.gets_lease / s.gets_ok : 0) + " %");
  last_ops = ops;
}

Options parse(int argc, char** argv) {
  Options o;
  const std::filesystem::path self = std::filesystem::absolute(argv[0]).parent_path();
  o.server = (self / "tenure-kv").string();
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::cerr << "tenure-kv-demo: " << a << " needs a value\n";
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--server") {
      o.server = value();
    } else if (a == "--data-dir") {
      o.data_dir = value();
    } else if (a == "--shards") {
      o.shards = static_cast<std::uint32_t>(std::max(1, std::atoi(value().c_str())));
    } else if (a == "--clients") {
      o.clients = static_cast<unsigned>(std::max(1, std::atoi(value().c_str())));
    } else if (a == "--seconds") {
      o.seconds = static_cast<unsigned>(std::max(1, std::atoi(value().c_str())));
    } else if (a == "--tls-dir") {
      o.tls_dir = value();
    } else {
      std::cerr << "usage: tenure-kv-demo [--server PATH] [--data-dir DIR] [--shards N] "
                   "[--clients N] [--seconds S] [--tls-dir DIR]\n";
      std::exit(a == "--help" || a == "-h" ? 0 : 2);
    }
  }
  if (!o.data_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(o.data_dir, ec);
    if (ec) {
      std::cerr << "tenure-kv-demo: cannot create " << o.data_dir << ": " << ec.message() << "\n";
      std::exit(2);
    }
  } else {
    char templ[] = "/tmp/tenure-kv-demo-XXXXXX";
    if (mkdtemp(templ) == nullptr) {
      die("cannot create a data directory under /tmp");
    }
    o.data_dir = templ;
    o.own_data_dir = true;
  }
  return o;
}

LocalCluster* g_cluster = nullptr;  // for wait_for's check that no node died

// Waits as LocalCluster::wait_until does; a node that dies meanwhile ends the demo.
template <class F>
bool wait_for(F&& f, std::chrono::milliseconds limit) {
  std::string died;
  const bool done = g_cluster->wait_until(std::forward<F>(f), limit, died);
  if (!died.empty()) {
    die(died);
  }
  return done;
}

// The leaders of every shard, as all running nodes agree, within 20 s; a node that dies
// meanwhile ends the demo.
std::optional<std::vector<std::uint64_t>> wait_for_leaders() {
  std::string died;
  auto leaders = g_cluster->wait_for_leaders(20s, died);
  if (!died.empty()) {
    die(died);
  }
  return leaders;
}

// Prints the cluster's status as `tenure-kv-cli status` does (status_report.hpp): every node's
// view of every shard, the leader's view of each member's replication.
void print_status(const std::vector<Node>& nodes, std::uint32_t shards) {
  tenure::kv::ClusterInfo info;
  info.leaders.assign(shards, 0);
  for (const auto& n : nodes) {
    info.addresses.push_back({n.id, n.client_address()});
  }
  const auto reports = tenure::kv::collect_status(info, 2s, g_client_tls);
  const auto table = tenure::kv::render_status(reports, shards);
  say("   the cluster's status (tenure-kv-cli status):");
  std::size_t start = 0;
  while (start < table.text.size()) {
    const std::size_t end = table.text.find('\n', start);
    const std::string line = table.text.substr(start, end - start);
    std::printf("%s%s\n", line.empty() ? "" : "    ", line.c_str());
    start = end == std::string::npos ? table.text.size() : end + 1;
  }
  std::fflush(stdout);
}

// Bytes of the regular files under `dir`.
std::uintmax_t directory_bytes(const std::string& dir) {
  std::uintmax_t total = 0;
  std::error_code ec;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir, ec)) {
    if (e.is_regular_file(ec)) {
      total += e.file_size(ec);
    }
  }
  return total;
}

// How many lines of the file at `path` contain `what`.
std::size_t count_lines(const std::string& path, const std::string& what) {
  std::ifstream in(path);
  std::size_t n = 0;
  for (std::string line; std::getline(in, line);) {
    n += line.find(what) != std::string::npos ? 1 : 0;
  }
  return n;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  std::signal(SIGPIPE, SIG_IGN);
  LocalCluster cluster(o.server, o.data_dir, 3, o.shards);
  g_cluster = &cluster;
  // Snapshots often enough that every shard has compacted its log by step 5 even at a sanitizer
  // build's pace (about 1,000 writes a shard there; at 2000 entries a snapshot, an ASan run once
  // had none, and the wiped node caught up by appends alone).
  cluster.set_server_args({"--snapshot-every", "400", "--log-retention", "100"});
  if (!o.tls_dir.empty()) {
    cluster.set_tls_dir(o.tls_dir);
    g_client_tls = cluster.client_tls();
    say("0. mutual TLS on every port, certificates from " + o.tls_dir);
  }
  std::vector<Node>& nodes = cluster.nodes();
  const auto stop_all = [&](int signal) { cluster.stop_all(signal); };

  say("1. starting 3 tenure-kv nodes on 127.0.0.1 with " + std::to_string(o.shards) +
      " shard(s) each; data and logs in " + o.data_dir);
  for (auto& n : nodes) {
    cluster.start(n.id);
    say("   node " + std::to_string(n.id) + ": pid " + std::to_string(n.pid) + ", clients on " +
        n.client_address());
  }
  std::vector<std::uint64_t> lead;
  if (auto l = wait_for_leaders()) {
    lead = *l;
  } else {
    stop_all(SIGKILL);
    die("no leader for every shard within 20 s (see " + o.data_dir + "/node*.log)");
  }
  say("   leaders: " + describe(lead));

  say("2. workload: " + std::to_string(o.clients) + " clients, puts and lease reads, " +
      std::to_string(o.seconds) + " s");
  Stats stats;
  std::map<std::string, KeyState> keys;
  std::mutex keys_mutex;
  std::atomic<bool> stop{false};
  std::vector<std::thread> clients;
  for (unsigned c = 0; c < o.clients; ++c) {
    clients.emplace_back([&, c] { client_loop(c, nodes, stop, stats, keys, keys_mutex); });
  }
  std::uint64_t last_ops = 0;
  for (unsigned s = 0; s < o.seconds; ++s) {
    std::this_thread::sleep_for(1s);  // the progress clock of the demo
    progress(stats, last_ops);
  }

  const std::uint64_t victim = lead[0];
  Node& dead = nodes[victim - 1];
  say("3. SIGKILL node " + std::to_string(victim) + " (pid " + std::to_string(dead.pid) +
      "), leader of shard 0, while the clients keep writing");
  const auto killed_at = Clock::now();
  cluster.kill(victim);
  if (auto l = wait_for_leaders()) {
    lead = *l;
  } else {
    stop = true;
    for (auto& t : clients) {
      t.join();
    }
    stop_all(SIGKILL);
    die("no new leader within 20 s");
  }
  const auto failover =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - killed_at);
  say("   new leaders after " + std::to_string(failover.count()) + " ms: " + describe(lead));
  print_status(nodes, o.shards);
  for (unsigned s = 0; s < 3; ++s) {
    std::this_thread::sleep_for(1s);
    progress(stats, last_ops);
  }
  stop = true;
  for (auto& t : clients) {
    t.join();
  }

  say("4. reading back every acknowledged write (" + std::to_string(keys.size()) +
      " keys, linearizable reads)");
  std::size_t checked = 0;
  std::size_t lost = 0;
  std::vector<std::unique_ptr<BlockingClient>> conns;
  for (const auto& n : nodes) {
    conns.push_back(std::make_unique<BlockingClient>(n.client_address(), g_client_tls));
  }
  std::uint64_t id = 1'000'000;
  // What the attempts of the last read_at that found no value got, for the report of a key lost
  // (the first few attempts, then a count).
  std::string read_failures;
  const auto read_at = [&](std::size_t node, const std::string& key, tenure::kv::ReadLevel level,
                           bool follow = true) -> std::optional<std::string> {
    std::size_t target = node;
    read_failures.clear();
    int failed_attempts = 0;
    // Following hints and trying the other nodes, like a client would, for up to 3 s: right
    // after a membership change a node may briefly answer without a hint (or be gone), and six
    // immediate attempts once ran out in milliseconds and reported an acknowledged key as lost.
    const auto give_up = std::chrono::steady_clock::now() + 3s;
    for (int attempt = 0; attempt < (follow ? 1000 : 1); ++attempt) {
      if (attempt != 0) {
        if (std::chrono::steady_clock::now() >= give_up) {
          break;
        }
        std::this_thread::sleep_for(20ms);  // a client's pause before it retries elsewhere
      }
      auto r = conns[target]->call(Request::get(++id, key, level), 2s);
      if (r.response && r.response->kind == ResponseKind::value) {
        return std::string(r.response->value);
      }
      if (r.response && r.response->kind == ResponseKind::none) {
        return std::string("(none)");
      }
      if (++failed_attempts <= 4) {
        read_failures +=
            " node " + std::to_string(nodes[target].id) + ": " +
            (r.response ? std::string(tenure::kv::name_of(r.response->code)) +
                              (r.response->leader.empty()
                                   ? std::string()
                                   : " (leader " + std::string(r.response->leader) + ")")
                        : "no answer (" + r.transport_error + ")") +
            ";";
      }
      if (r.response && r.response->kind == ResponseKind::error && !r.response->leader.empty()) {
        for (std::size_t i = 0; i < nodes.size(); ++i) {
          if (nodes[i].client_address() == r.response->leader) {
            target = i;
          }
        }
      } else {
        target = (target + 1) % nodes.size();
        while (nodes[target].pid < 0) {
          target = (target + 1) % nodes.size();
        }
      }
    }
    if (failed_attempts > 4) {
      read_failures += " and " + std::to_string(failed_attempts - 4) + " more attempts";
    }
    return std::nullopt;
  };
  std::size_t live = 0;
  while (nodes[live].pid < 0) {
    ++live;
  }
  std::map<std::string, std::string> final_values;
  for (const auto& [key, state] : keys) {
    if (!state.acknowledged) {
      continue;
    }
    const auto got = read_at(live, key, tenure::kv::ReadLevel::linearizable);
    ++checked;
    const bool fine =
        got && (*got == *state.acknowledged ||
                std::find(state.unknown.begin(), state.unknown.end(), *got) != state.unknown.end());
    if (!fine) {
      ++lost;
      say("   LOST: " + key + " acknowledged " + *state.acknowledged + ", read " +
          (got ? *got : "no answer:" + read_failures));
    } else {
      final_values[key] = *got;
    }
  }
  say("   " + std::to_string(checked) + " acknowledged keys checked, " + std::to_string(lost) +
      " lost");

  // Every shard snapshots on each live node now, so that the wiped node finds snapshots to
  // install whatever the workload's length.
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    if (nodes[i].pid > 0) {
      (void)conns[i]->call(Request::snapshot(++id), 2s);
    }
  }
  const std::string wiped_dir = cluster.data_dir() + "/node" + std::to_string(victim);
  std::error_code wipe_error;
  const auto wiped_bytes = directory_bytes(wiped_dir);
  std::filesystem::remove_all(wiped_dir, wipe_error);
  say("5. wiping node " + std::to_string(victim) + "'s data directory (" +
      std::to_string(wiped_bytes / 1024) +
      " KiB) and restarting it empty; it rejoins through the "
      "leaders' snapshots");
  const auto restarted_at = Clock::now();
  cluster.start(dead.id);
  const bool caught_up =
      !wipe_error && wait_for(
                         [&] {
                           for (const auto& [key, value] : final_values) {
                             const auto got =
                                 read_at(victim - 1, key, tenure::kv::ReadLevel::stale, false);
                             if (!got || *got != value) {
                               return false;
                             }
                           }
                           return true;
                         },
                         30s);
  const auto catch_up =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - restarted_at);
  // Each shard logs its installs (event=snapshot_installed) as they complete; the line may still
  // be on its way to the file: wait for it (bounded) before counting.
  const std::string victim_log = cluster.data_dir() + "/node" + std::to_string(victim) + ".log";
  if (caught_up) {
    wait_for([&] { return count_lines(victim_log, "event=snapshot_installed") != 0; }, 2s);
  }
  const std::size_t installs = count_lines(victim_log, "event=snapshot_installed");
  if (caught_up) {
    say("   node " + std::to_string(victim) + " serves all " + std::to_string(final_values.size()) +
        " keys from its own state after " + std::to_string(catch_up.count()) + " ms (" +
        std::to_string(installs) + " snapshot(s) installed, then appends)");
  } else {
    say("   node " + std::to_string(victim) + " did not catch up within 30 s");
  }

  // 6. Membership: a fourth node replaces the wiped one while clients write.
  const std::uint64_t fresh = cluster.add_node();
  std::vector<Node> routes = nodes;  // a copy: the clients read it while the cluster changes
  std::uint64_t contact = victim % 3 + 1;
  say("6. replacing node " + std::to_string(victim) + " by node " + std::to_string(fresh) +
      " under a new workload: node " + std::to_string(fresh) +
      " starts with --join (knowing node " + std::to_string(contact) +
      "), add-node, then remove-node " + std::to_string(victim));
  cluster.start_joining(fresh, {contact});
  const std::uint64_t acknowledged_before = stats.puts_ok.load();
  stop = false;
  clients.clear();
  for (unsigned c = 0; c < o.clients; ++c) {
    clients.emplace_back([&, c] { client_loop(c, routes, stop, stats, keys, keys_mutex); });
  }
  std::vector<std::string> member_addresses;
  for (const auto& n : nodes) {
    if (n.id != victim && n.id != fresh) {
      member_addresses.push_back(n.client_address());
    }
  }
  const auto replace_started = Clock::now();
  bool replaced = true;
  for (std::uint32_t s = 0; s < o.shards && replaced; ++s) {
    const auto added = tenure::kv::membership_call(
        member_addresses, Request::add_node(0, s, fresh, cluster.node(fresh).endpoint()), 30s,
        g_client_tls);
    say("   shard " + std::to_string(s) + ": add-node " + std::to_string(fresh) + ": " +
        (added.ok ? "a voter" : "FAILED (" + added.error + ")"));
    replaced = added.ok;
  }
  for (std::uint32_t s = 0; s < o.shards && replaced; ++s) {
    const auto removed = tenure::kv::membership_call(
        member_addresses, Request::remove_node(0, s, victim), 30s, g_client_tls);
    say("   shard " + std::to_string(s) + ": remove-node " + std::to_string(victim) + ": " +
        (removed.ok ? "removed" : "FAILED (" + removed.error + ")"));
    replaced = removed.ok;
  }
  const auto exit_status = replaced ? cluster.wait_exit(victim, 20s) : std::nullopt;
  const bool exited_clean =
      exit_status && WIFEXITED(*exit_status) && WEXITSTATUS(*exit_status) == 0;
  const auto replace_took =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - replace_started);
  say("   node " + std::to_string(victim) + " " +
      (exited_clean ? "noticed its removal and exited (status 0)"
                    : std::string("did NOT exit by itself")) +
      ", " + std::to_string(replace_took.count()) + " ms after the change began");
  stop = true;
  for (auto& t : clients) {
    t.join();
  }
  if (!exited_clean) {
    cluster.kill(victim);
  }
  conns.clear();
  for (const auto& n : nodes) {
    conns.push_back(std::make_unique<BlockingClient>(n.client_address(), g_client_tls));
  }
  std::size_t checked_after = 0;
  std::size_t lost_after = 0;
  for (const auto& [key, state] : keys) {
    if (!state.acknowledged) {
      continue;
    }
    const auto got = read_at(fresh - 1, key, tenure::kv::ReadLevel::linearizable);
    ++checked_after;
    if (!got ||
        (*got != *state.acknowledged &&
         std::find(state.unknown.begin(), state.unknown.end(), *got) == state.unknown.end())) {
      ++lost_after;
      say("   LOST: " + key + " acknowledged " + *state.acknowledged + ", read " +
          (got ? *got : "no answer:" + read_failures));
    }
  }
  say("   " + std::to_string(stats.puts_ok.load() - acknowledged_before) +
      " writes acknowledged during the replacement; " + std::to_string(checked_after) +
      " acknowledged keys read back through node " + std::to_string(fresh) + ", " +
      std::to_string(lost_after) + " lost");
  lost += lost_after;

  say("7. shutting down (SIGTERM)");
  stop_all(SIGTERM);
  say("summary: " + std::to_string(stats.puts_ok.load()) + " writes acknowledged, " +
      std::to_string(stats.gets_ok.load()) + " reads (" +
      std::to_string(stats.gets_ok ? 100 * stats.gets_lease / stats.gets_ok : 0) +
      " % from the lease), " + std::to_string(stats.puts_unknown.load()) +
      " writes with unknown outcome during the failover, failover " +
      std::to_string(failover.count()) + " ms, " + std::to_string(lost) +
      " acknowledged writes lost, wiped node " +
      (caught_up ? "caught up in " + std::to_string(catch_up.count()) + " ms"
                 : std::string("DID NOT catch up")) +
      ", node " + std::to_string(victim) + " replaced by node " + std::to_string(fresh) + " " +
      (replaced && exited_clean ? "in " + std::to_string(replace_took.count()) + " ms"
                                : std::string("INCOMPLETELY")));
  if (lost != 0 || !caught_up || checked == 0 || installs == 0 || !replaced || !exited_clean ||
      checked_after == 0) {
    if (installs == 0) {
      say("   the wiped node installed no snapshot");
    }
    say("FAILED");
    return 1;
  }
  say("OK: no acknowledged write was lost");
  if (o.own_data_dir) {
    std::error_code ignored;
    std::filesystem::remove_all(o.data_dir, ignored);  // kept when a check failed, for its logs
  }
  return 0;
}
