// LocalCluster: tenure-kv processes on 127.0.0.1, started, signalled and watched by one parent.
// For the demo and the integration tests.
#pragma once

#include "blocking_client.hpp"
#include "protocol.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

namespace tenure::kv {

/// How a membership request ended (membership_call).
struct MembershipAnswer {
  bool ok = false;                     ///< `ok`, or a `members` answer (in `members`)
  std::optional<MembersInfo> members;  ///< the answer to `members`
  std::string error;                   ///< otherwise: the last error's code, or why no answer
};

/// Sends a membership request (add-node, remove-node or members) to the nodes at `addresses`
/// until one answers it for good: follows not_leader hints and resends, every 50 ms until
/// `limit`, after answers that did nothing (not_leader, change_in_progress,
/// transfer_in_progress, overloaded) and after those that leave the outcome unknown (timed_out,
/// leadership_lost, stopped, cancelled, no answer): a change is idempotent. Moves to the next
/// address when one does not answer.
inline MembershipAnswer membership_call(const std::vector<std::string>& addresses, Request request,
                                        std::chrono::milliseconds limit,
                                        std::optional<raft::asio::TlsFiles> tls = std::nullopt) {
  using raft::errc;
  MembershipAnswer out;
  const auto until = std::chrono::steady_clock::now() + limit;
  std::size_t next = 0;
  std::string address = addresses.empty() ? std::string() : addresses[0];
  while (std::chrono::steady_clock::now() < until && !address.empty()) {
    BlockingClient client(address, tls);
    ++request.id;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        until - std::chrono::steady_clock::now());
    const auto r = client.call(request, std::max(left, std::chrono::milliseconds(1)));
    if (r.response && r.response->kind != ResponseKind::error) {
      out.ok = true;
      out.error.clear();
      if (r.response->kind == ResponseKind::members) {
        out.members = parse_members_info(r.response->members);
      }
      return out;
    }
    if (r.response) {
      const errc code = r.response->code;
      out.error = std::string(name_of(code));
      if (code == errc::invalid_argument || code == errc::too_large) {
        return out;
      }
      if (code == errc::not_leader && !r.response->leader.empty()) {
        address = std::string(r.response->leader);
        continue;
      }
      if (code == errc::not_leader) {
        address = addresses[++next % addresses.size()];  // no leader known there
      }
    } else {
      out.error = "no answer from " + address + ": " + r.transport_error;
      address = addresses[++next % addresses.size()];
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // a pause between attempts
  }
  return out;
}

struct LocalNode {
  std::uint64_t id = 0;
  unsigned short raft_port = 0;
  unsigned short client_port = 0;
  pid_t pid = -1;  ///< -1: not running
  std::string client_address() const { return "127.0.0.1:" + std::to_string(client_port); }
  /// `host:raft_port/client_port`, as add-node takes it.
  std::string endpoint() const {
    return "127.0.0.1:" + std::to_string(raft_port) + "/" + std::to_string(client_port);
  }
};

/// Nodes 1..n of one cluster, each a child process running `server` with its data under
/// `data_dir`/node<id> and its output in `data_dir`/node<id>.log. Ports are drawn from the
/// kernel's ephemeral range. The destructor kills whatever still runs. Not thread-safe.
class LocalCluster {
 public:
  LocalCluster(std::string server, std::string data_dir, std::size_t nodes, std::uint32_t shards)
      : server_(std::move(server)), data_dir_(std::move(data_dir)), shards_(shards) {
    for (std::size_t i = 0; i < nodes; ++i) {
      LocalNode n;
      n.id = i + 1;
      n.raft_port = free_port();
      n.client_port = free_port();
      nodes_.push_back(n);
    }
  }
  LocalCluster(const LocalCluster&) = delete;
  LocalCluster& operator=(const LocalCluster&) = delete;
  ~LocalCluster() { stop_all(SIGKILL); }

  /// Extra arguments for every server started from now on (e.g. `--timeout-ms 500`).
  void set_server_args(std::vector<std::string> args) { server_args_ = std::move(args); }

  /// Mutual TLS from now on, with the certificates scripts/make-certs made in `dir`: node `id`
  /// presents node-<id>.pem, and clients of this cluster (client_tls()) client.pem.
  void set_tls_dir(std::string dir) { tls_dir_ = std::move(dir); }
  /// The TLS files a client of this cluster presents, when it runs TLS.
  std::optional<raft::asio::TlsFiles> client_tls() const {
    if (tls_dir_.empty()) {
      return std::nullopt;
    }
    return raft::asio::TlsFiles{tls_dir_ + "/client.pem", tls_dir_ + "/client-key.pem",
                                tls_dir_ + "/ca.pem"};
  }

  std::vector<LocalNode>& nodes() noexcept { return nodes_; }
  LocalNode& node(std::uint64_t id) { return nodes_.at(id - 1); }
  const std::string& data_dir() const noexcept { return data_dir_; }

  /// A new node (id = the number of nodes so far + 1) with fresh ports, not started: start it
  /// with start_joining() and add it with add-node. Returns its id.
  std::uint64_t add_node() {
    LocalNode n;
    n.id = nodes_.size() + 1;
    n.raft_port = free_port();
    n.client_port = free_port();
    nodes_.push_back(n);
    return n.id;
  }

  /// Starts node `id` (again, after a kill: it recovers from its data directory), its
  /// --cluster naming every node of this cluster.
  void start(std::uint64_t id) { launch(id, cluster_flag(), false); }

  /// Starts node `id` with --join: every shard knowing no members. Its --cluster names only
  /// itself and `contacts` (it learns the other members from them).
  void start_joining(std::uint64_t id, const std::vector<std::uint64_t>& contacts) {
    std::vector<std::uint64_t> ids = contacts;
    ids.push_back(id);
    std::sort(ids.begin(), ids.end());
    std::string flag;
    for (const auto i : ids) {
      const LocalNode& n = node(i);
      flag += (flag.empty() ? "" : ",") + std::to_string(n.id) +
              "=127.0.0.1:" + std::to_string(n.raft_port) + "/" + std::to_string(n.client_port);
    }
    launch(id, flag, true);
  }

  /// The log file of node `id`.
  std::string log_path(std::uint64_t id) const {
    return data_dir_ + "/node" + std::to_string(id) + ".log";
  }

  /// Waits up to `limit` for node `id` to exit on its own, reaping it: its wait status, or
  /// nullopt when it still runs (or was not running).
  std::optional<int> wait_exit(std::uint64_t id, std::chrono::milliseconds limit) {
    LocalNode& n = node(id);
    const auto until = std::chrono::steady_clock::now() + limit;
    while (n.pid > 0) {
      int status = 0;
      if (waitpid(n.pid, &status, WNOHANG) == n.pid) {
        n.pid = -1;
        return status;
      }
      if (std::chrono::steady_clock::now() >= until) {
        break;
      }
      std::this_thread::sleep_for(
          std::chrono::milliseconds(20));  // another process: nothing to wait on
    }
    return std::nullopt;
  }

 private:
  void launch(std::uint64_t id, const std::string& cluster, bool join) {
    LocalNode& n = node(id);
    const std::string dir = data_dir_ + "/node" + std::to_string(id);
    const std::string log = log_path(id);
    const std::string id_text = std::to_string(id);
    const std::string shards = std::to_string(shards_);
    std::vector<const char*> argv{server_.c_str(), "--id",          id_text.c_str(),
                                  "--cluster",     cluster.c_str(), "--data-dir",
                                  dir.c_str(),     "--shards",      shards.c_str()};
    if (join) {
      argv.push_back("--join");
    }
    for (const auto& a : server_args_) {
      argv.push_back(a.c_str());
    }
    const std::string cert = tls_dir_ + "/node-" + id_text + ".pem";
    const std::string key = tls_dir_ + "/node-" + id_text + "-key.pem";
    const std::string ca = tls_dir_ + "/ca.pem";
    if (!tls_dir_.empty()) {
      for (const char* a :
           {"--tls-cert", cert.c_str(), "--tls-key", key.c_str(), "--tls-ca", ca.c_str()}) {
        argv.push_back(a);
      }
    }
    argv.push_back(nullptr);
    const pid_t pid = fork();
    if (pid < 0) {
      throw std::runtime_error("fork failed");
    }
    if (pid == 0) {
      if (FILE* f = std::fopen(log.c_str(), "a"); f != nullptr) {
        dup2(fileno(f), STDERR_FILENO);
        dup2(fileno(f), STDOUT_FILENO);
      }
      execv(server_.c_str(), const_cast<char* const*>(argv.data()));
      std::perror("exec tenure-kv");
      _exit(127);
    }
    n.pid = pid;
  }

 public:
  void start_all() {
    for (const auto& n : nodes_) {
      start(n.id);
    }
  }

  /// Sends `signal` (SIGSTOP, SIGCONT, ...) to node `id` if it runs.
  void signal(std::uint64_t id, int signal) {
    if (node(id).pid > 0) {
      ::kill(node(id).pid, signal);
    }
  }

  /// SIGKILL, and reaps it.
  void kill(std::uint64_t id) {
    LocalNode& n = node(id);
    if (n.pid > 0) {
      ::kill(n.pid, SIGCONT);  // a stopped process dies only once continued
      ::kill(n.pid, SIGKILL);
      waitpid(n.pid, nullptr, 0);
      n.pid = -1;
    }
  }

  /// Sends `signal` to node `id` (continuing it first, if stopped), reaps it and returns its
  /// wait status; -1 when it was not running.
  int stop(std::uint64_t id, int signal) {
    LocalNode& n = node(id);
    if (n.pid <= 0) {
      return -1;
    }
    ::kill(n.pid, SIGCONT);
    ::kill(n.pid, signal);
    int status = 0;
    waitpid(n.pid, &status, 0);
    n.pid = -1;
    return status;
  }

  /// Sends `signal` to every running node and reaps them all.
  void stop_all(int signal) {
    for (auto& n : nodes_) {
      if (n.pid > 0) {
        ::kill(n.pid, SIGCONT);
        ::kill(n.pid, signal);
      }
    }
    for (auto& n : nodes_) {
      if (n.pid > 0) {
        waitpid(n.pid, nullptr, 0);
        n.pid = -1;
      }
    }
  }

  /// A description of a node that exited on its own since the last call (reaping it), or
  /// nullopt.
  std::optional<std::string> exited() {
    for (auto& n : nodes_) {
      int status = 0;
      if (n.pid > 0 && waitpid(n.pid, &status, WNOHANG) == n.pid) {
        n.pid = -1;
        return "node " + std::to_string(n.id) + " exited (status " + std::to_string(status) +
               "); see " + data_dir_ + "/node" + std::to_string(n.id) + ".log";
      }
    }
    return std::nullopt;
  }

  /// The leader of each shard as every running node agrees on it (each a running node), or
  /// nullopt while some shard has none or the nodes disagree.
  std::optional<std::vector<std::uint64_t>> leaders() {
    std::optional<std::vector<std::uint64_t>> agreed;
    for (const auto& n : nodes_) {
      if (n.pid < 0) {
        continue;
      }
      BlockingClient c(n.client_address(), client_tls());
      auto r = c.call(Request::info(1), std::chrono::milliseconds(500));
      if (!r.ok() || r.response->kind != ResponseKind::info) {
        return std::nullopt;
      }
      const auto info = parse_cluster_info(r.response->info);
      if (!info) {
        return std::nullopt;
      }
      if (std::any_of(info->leaders.begin(), info->leaders.end(), [&](std::uint64_t l) {
            return l == 0 || l > nodes_.size() || nodes_[l - 1].pid < 0;
          })) {
        return std::nullopt;
      }
      if (agreed && *agreed != info->leaders) {
        return std::nullopt;
      }
      agreed = info->leaders;
    }
    return agreed;
  }

  /// Polls `done` every 20 ms until it holds or `limit` passes; returns whether it held. Stops at
  /// once when a node exits on its own, describing it in `died` (left empty otherwise).
  template <class Done>
  bool wait_until(Done&& done, std::chrono::milliseconds limit, std::string& died) {
    died.clear();
    const auto until = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < until) {
      if (auto exit = exited()) {
        died = std::move(*exit);
        return false;
      }
      if (done()) {
        return true;
      }
      std::this_thread::sleep_for(
          std::chrono::milliseconds(20));  // other processes: nothing to wait on
    }
    return done();
  }

  /// The leaders (see leaders()) once every running node agrees on one per shard, within
  /// `limit`; nullopt otherwise, with `died` as in wait_until.
  std::optional<std::vector<std::uint64_t>> wait_for_leaders(std::chrono::milliseconds limit,
                                                             std::string& died) {
    std::optional<std::vector<std::uint64_t>> agreed;
    wait_until(
        [&] {
          agreed = leaders();
          return agreed.has_value();
        },
        limit, died);
    return agreed;
  }

  /// The node whose client address is `address`, or 0.
  std::uint64_t node_at(std::string_view address) const {
    for (const auto& n : nodes_) {
      if (n.client_address() == address) {
        return n.id;
      }
    }
    return 0;
  }

 private:
  // A port that was free a moment ago, drawn below Linux's ephemeral range (32768 and up by
  // default): the kernel hands ports of that range to every outgoing connection, so a port it
  // gave out (bound, then released) could become some client's source port before the node
  // binds it (an integration test saw "Address already in use" that way). Here only another
  // process picking the same port in between can take it. Ports are never repeated within one
  // process.
  static unsigned short free_port() {
    static std::uint64_t state =
        static_cast<std::uint64_t>(::getpid()) * 0x9e3779b97f4a7c15ull ^
        static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    static std::vector<unsigned short> given;
    for (int attempt = 0; attempt < 1000; ++attempt) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      const auto port = static_cast<unsigned short>(20000 + (state >> 33) % 12000);
      if (std::find(given.begin(), given.end(), port) != given.end()) {
        continue;
      }
      ::boost::asio::io_context io;
      ::boost::asio::ip::tcp::acceptor a(io);
      ::boost::system::error_code ec;
      a.open(::boost::asio::ip::tcp::v4(), ec);
      if (!ec) {
        a.bind({::boost::asio::ip::make_address("127.0.0.1"), port}, ec);
      }
      if (!ec) {
        given.push_back(port);
        return port;
      }
    }
    ::boost::asio::io_context io;  // a crowded range: fall back to one the kernel picks
    ::boost::asio::ip::tcp::acceptor a(io, {::boost::asio::ip::make_address("127.0.0.1"), 0});
    return a.local_endpoint().port();
  }

  std::string cluster_flag() const {
    std::string s;
    for (const auto& n : nodes_) {
      s += (s.empty() ? "" : ",") + std::to_string(n.id) +
           "=127.0.0.1:" + std::to_string(n.raft_port) + "/" + std::to_string(n.client_port);
    }
    return s;
  }

  std::string server_;
  std::string data_dir_;
  std::uint32_t shards_;
  std::vector<LocalNode> nodes_;
  std::vector<std::string> server_args_;
  std::string tls_dir_;
};

}  // namespace tenure::kv
