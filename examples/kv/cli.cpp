// tenure-kv-cli: one request to a tenure-kv cluster, its answer printed for a human.
//
//   tenure-kv-cli --server host:port [--timeout-ms N] [--verbose] put KEY VALUE
//   tenure-kv-cli --server host:port get KEY [--read=linearizable|lease|stale]
//   tenure-kv-cli --server host:port del KEY
//   tenure-kv-cli --server host:port cas KEY EXPECTED NEW       (EXPECTED `-`: must be absent)
//   tenure-kv-cli --server host:port info
//   tenure-kv-cli --server host:port snapshot    (that node snapshots every shard now)
//   tenure-kv-cli --server host:port add-node ID HOST:RAFT_PORT/CLIENT_PORT [--shard N|all]
//   tenure-kv-cli --server host:port remove-node ID [--shard N|all]
//   tenure-kv-cli --server host:port members [--shard N|all]
//   tenure-kv-cli --server host:port status
//
// The request goes to --server; a not_leader answer with a hint sends it on to the hinted leader
// (at most kMaxRedirects times). Output: `OK`, the value, `(none)`, `mismatch: current is X`, or
// the cluster's shape for info, on stdout. The membership commands go to each shard's leader
// in turn (all shards by default; `info` first tells how many) and are resent where that is
// safe: a change is idempotent (adding a voter twice, or removing a node twice, is the same
// change), so timed_out and leadership_lost are resent too, until --timeout-ms (30 s for
// add-node and remove-node unless given). Exit status: 0 success, 1 error (on stderr), 2 bad
// usage, 3 cas mismatch. `status` asks --server for the cluster's nodes (info), then every node for
// its view of every shard (`status`), and prints per shard its leader, term, lease and, for each
// member, its role and the leader's view of its replication (match index, lag, last ack age):
// status_report.hpp. Its exit status is 1 when a node did not answer or a shard has no leader.
// The protocol is docs/kv-protocol.md; the client speaks it through
// examples/kv/protocol.hpp over a Boost.Asio socket whose every operation has a deadline.
#include "protocol.hpp"
#include "status_report.hpp"
#include "stream.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

// After the standard headers: Boost 1.74's Asio uses std::exchange without including <utility>.
#include <boost/asio.hpp>

namespace asio = boost::asio;
using asio::ip::tcp;
using tenure::kv::Op;
using tenure::kv::ReadLevel;
using tenure::kv::Request;
using tenure::kv::Response;
using tenure::kv::ResponseKind;
using tenure::raft::errc;
using Clock = std::chrono::steady_clock;

namespace {

constexpr int kExitOk = 0;
constexpr int kExitError = 1;
constexpr int kExitUsage = 2;
constexpr int kExitMismatch = 3;

// How often a not_leader hint is followed before giving up, and how often a request is retried
// where retrying is safe (no hint yet: an election is likely in progress).
constexpr int kMaxRedirects = 5;
constexpr int kMaxRetries = 10;
constexpr auto kRetryPause = std::chrono::milliseconds(100);

constexpr const char* kUsage =
    "usage: tenure-kv-cli --server HOST:PORT [--timeout-ms N] [--verbose] COMMAND\n"
    "commands:\n"
    "  put KEY VALUE\n"
    "  get KEY [--read=linearizable|lease|stale]   (default linearizable)\n"
    "  del KEY\n"
    "  cas KEY EXPECTED NEW                        (EXPECTED '-': the key must be absent)\n"
    "  info\n"
    "  snapshot                                    (the node at --server snapshots each shard)\n"
    "  add-node ID HOST:RAFT_PORT/CLIENT_PORT [--shard N|all]\n"
    "                      make node ID (started with tenure-kv --join) a voter of the shard(s)\n"
    "  remove-node ID [--shard N|all]              remove node ID from the shard(s)\n"
    "  members [--shard N|all]                     each shard's voters, learners and addresses\n"
    "  status                                      every node's view of every shard: leader,\n"
    "                      term, lease, and each member's role, match index, lag and last ack\n"
    "                      as the leader sees them (exit 1 if a node does not answer or a shard\n"
    "                      has no leader)\n"
    "options:\n"
    "  --server HOST:PORT   a node's client address (any node: not_leader hints are followed)\n"
    "  --timeout-ms N       deadline for the whole command, redirects included (default 5000;\n"
    "                       30000 for add-node and remove-node)\n"
    "  --shard N|all        the shard of a membership command (default all)\n"
    "  --verbose            also print on stderr how a get was served and each redirect\n"
    "  --tls-cert FILE --tls-key FILE --tls-ca FILE\n"
    "                       mutual TLS: this client's certificate and key, and the cluster CA\n"
    "  --                   end of options (for a key or value that starts with --)\n"
    "exit status: 0 success, 1 error (status: or an unreachable node, a shard without a\n"
    "leader), 2 bad usage, 3 cas mismatch\n";

struct Args {
  std::string server;
  long timeout_ms = 5000;
  bool timeout_given = false;
  std::optional<std::uint32_t> shard;  // --shard N; nullopt: all
  bool shard_given = false;
  bool verbose = false;
  ReadLevel level = ReadLevel::linearizable;
  bool level_given = false;
  std::vector<std::string> words;  // the command and its operands
  std::optional<tenure::raft::asio::TlsFiles> tls;
};

[[noreturn]] void usage_error(const std::string& message) {
  std::fprintf(stderr, "tenure-kv-cli: %s\n%s", message.c_str(), kUsage);
  std::exit(kExitUsage);
}

Args parse_args(int argc, char** argv) {
  Args args;
  bool options_done = false;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (options_done || arg.substr(0, 2) != "--") {
      args.words.emplace_back(arg);
      continue;
    }
    const auto value_of = [&](std::string_view name) -> std::string {
      if (i + 1 >= argc) {
        usage_error(std::string(name) + " needs a value");
      }
      return argv[++i];
    };
    if (arg == "--") {
      options_done = true;
    } else if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(kExitOk);
    } else if (arg == "--server") {
      args.server = value_of(arg);
    } else if (arg == "--timeout-ms") {
      const std::string text = value_of(arg);
      char* end = nullptr;
      args.timeout_ms = std::strtol(text.c_str(), &end, 10);
      if (text.empty() || *end != '\0' || args.timeout_ms <= 0) {
        usage_error("--timeout-ms needs a positive number of milliseconds");
      }
      args.timeout_given = true;
    } else if (arg == "--shard") {
      const std::string text = value_of(arg);
      args.shard_given = true;
      if (text != "all") {
        char* end = nullptr;
        const long shard = std::strtol(text.c_str(), &end, 10);
        if (text.empty() || *end != '\0' || shard < 0 ||
            shard >= static_cast<long>(tenure::kv::kMaxShards)) {
          usage_error("--shard needs a shard number or 'all'");
        }
        args.shard = static_cast<std::uint32_t>(shard);
      }
    } else if (arg == "--verbose") {
      args.verbose = true;
    } else if (arg == "--tls-cert" || arg == "--tls-key" || arg == "--tls-ca") {
      if (!args.tls) {
        args.tls.emplace();
      }
      (arg == "--tls-cert"  ? args.tls->certificate
       : arg == "--tls-key" ? args.tls->private_key
                            : args.tls->ca) = value_of(arg);
    } else if (arg.substr(0, 7) == "--read=") {
      const auto level = tenure::kv::read_level_from_name(arg.substr(7));
      if (!level) {
        usage_error("--read must be linearizable, lease or stale");
      }
      args.level = *level;
      args.level_given = true;
    } else {
      usage_error("unknown option " + std::string(arg));
    }
  }
  if (args.server.empty()) {
    usage_error("--server is required");
  }
  if (!tenure::kv::is_valid_address(args.server)) {
    usage_error("--server must be HOST:PORT");
  }
  if (args.tls &&
      (args.tls->certificate.empty() || args.tls->private_key.empty() || args.tls->ca.empty())) {
    usage_error("TLS needs all of --tls-cert, --tls-key and --tls-ca");
  }
  if (args.tls && !tenure::raft::asio::kHasTls) {
    usage_error("this build has no TLS (OpenSSL was not found when it was built)");
  }
  return args;
}

// The request the command words ask for (views into `args.words`), or a usage error.
Request request_of(const Args& args) {
  const auto& w = args.words;
  if (w.empty()) {
    usage_error("no command");
  }
  const auto need = [&](std::size_t operands) {
    if (w.size() != operands + 1) {
      usage_error(w[0] + " takes " + std::to_string(operands) + " operand(s)");
    }
  };
  const auto key = [&](std::size_t i) -> std::string_view {
    if (!tenure::kv::is_valid_key(w[i])) {
      usage_error("invalid key: keys are 1-1024 printable ASCII bytes, no spaces, not '-'");
    }
    return w[i];
  };
  const auto value = [&](std::size_t i) -> std::string_view {
    if (!tenure::kv::is_valid_value(w[i])) {
      usage_error("invalid value: values are 1-1024 printable ASCII bytes, no spaces, not '-'");
    }
    return w[i];
  };
  if (args.level_given && w[0] != "get") {
    usage_error("--read applies to get only");
  }
  if (args.shard_given && w[0] != "add-node" && w[0] != "remove-node" && w[0] != "members") {
    usage_error("--shard applies to add-node, remove-node and members only");
  }
  // The id is arbitrary: one request is outstanding at a time, and each attempt gets its own.
  if (w[0] == "put") {
    need(2);
    return Request::put(1, key(1), value(2));
  }
  if (w[0] == "get") {
    need(1);
    return Request::get(1, key(1), args.level);
  }
  if (w[0] == "del") {
    need(1);
    return Request::del(1, key(1));
  }
  if (w[0] == "cas") {
    need(3);
    const std::optional<std::string_view> expected =
        w[2] == "-" ? std::nullopt : std::optional<std::string_view>(value(2));
    return Request::cas(1, key(1), expected, value(3));
  }
  if (w[0] == "info") {
    need(0);
    return Request::info(1);
  }
  if (w[0] == "snapshot") {
    need(0);
    return Request::snapshot(1);
  }
  if (w[0] == "status") {
    need(0);
    return Request::status(1);
  }
  // Membership commands: the shard is filled in per shard (run_membership).
  const auto node = [&](std::size_t i) -> std::uint64_t {
    char* end = nullptr;
    const unsigned long long id = std::strtoull(w[i].c_str(), &end, 10);
    if (w[i].empty() || *end != '\0' || id == 0 || w[i][0] == '-') {
      usage_error("invalid node id '" + w[i] + "': a positive number");
    }
    return id;
  };
  if (w[0] == "add-node") {
    need(2);
    if (!tenure::kv::is_valid_endpoint(w[2])) {
      usage_error("invalid endpoint '" + w[2] + "': want HOST:RAFT_PORT/CLIENT_PORT");
    }
    return Request::add_node(1, 0, node(1), w[2]);
  }
  if (w[0] == "remove-node") {
    need(1);
    return Request::remove_node(1, 0, node(1));
  }
  if (w[0] == "members") {
    need(0);
    return Request::members(1, 0);
  }
  usage_error("unknown command " + w[0]);
}

// One connection to one server, every operation bounded by the command's deadline: each is
// started asynchronously and the io_context runs until it completes or the deadline passes, in
// which case the socket is closed and the operation reported as timed out.
class Connection {
 public:
  Connection(asio::io_context& io, Clock::time_point deadline) : io_(io), deadline_(deadline) {}

  // Connects to `address` (`host:port`, IPv6 hosts in brackets), with TLS when `tls` is given.
  boost::system::error_code connect(std::string_view address,
                                    const std::optional<tenure::raft::asio::TlsFiles>& tls) {
    const auto split = tenure::kv::split_address(address);
    if (!split) {
      return asio::error::invalid_argument;
    }
    const std::string host(split->host);
    const std::string port = std::to_string(split->port);
    boost::system::error_code result = asio::error::would_block;
    tcp::resolver resolver(io_);
    resolver.async_resolve(host, port, [&](boost::system::error_code ec, auto endpoints) {
      if (ec) {
        result = ec;
        return;
      }
      asio::async_connect(
          stream_.socket(), endpoints,
          [&](boost::system::error_code ec2, const tcp::endpoint&) { result = ec2; });
    });
    run(result, [&] { resolver.cancel(); });
    if (result || !tls) {
      return result;
    }
    stream_.use_tls(*tls);
    result = asio::error::would_block;
    stream_.async_handshake(false, [&](boost::system::error_code ec) { result = ec; });
    run(result, [] {});
    return result;
  }

  // Sends `line` and reads lines until one answers `id`. On success `response` views `buffer_`.
  boost::system::error_code exchange(const std::string& line, std::uint64_t id,
                                     std::optional<Response>& response) {
    boost::system::error_code result = asio::error::would_block;
    stream_.async_write(asio::buffer(line),
                        [&](boost::system::error_code ec, std::size_t) { result = ec; });
    run(result, [] {});
    while (!result) {
      buffer_.erase(0, consumed_);
      consumed_ = 0;
      result = asio::error::would_block;
      std::size_t length = 0;
      stream_.async_read_until(asio::dynamic_buffer(buffer_, tenure::kv::kMaxResponseLine + 1),
                               '\n', [&](boost::system::error_code ec, std::size_t n) {
                                 result = ec;
                                 length = n;
                               });
      run(result, [] {});
      if (result) {
        break;
      }
      consumed_ = length;
      const auto parsed = tenure::kv::parse_response(std::string_view(buffer_).substr(0, length));
      if (!parsed) {
        std::fprintf(stderr, "tenure-kv-cli: unparseable answer (%s): %.*s", parsed.error().reason,
                     static_cast<int>(length), buffer_.data());
        return boost::system::errc::make_error_code(boost::system::errc::protocol_error);
      }
      if (parsed->id == id) {
        response = *parsed;
        return {};
      }
      // An answer to an earlier attempt on this connection: not ours.
    }
    return result;
  }

 private:
  // Runs the io_context until `result` is set or the deadline passes; on the deadline, cancels
  // with `cancel` and the socket, waits for the handlers, and reports timed_out.
  template <class Cancel>
  void run(boost::system::error_code& result, Cancel cancel) {
    io_.restart();
    while (result == asio::error::would_block && Clock::now() < deadline_) {
      if (io_.run_one_until(deadline_) == 0) {
        break;
      }
    }
    if (result == asio::error::would_block) {
      cancel();
      stream_.close();
      io_.restart();
      io_.run();
      result = asio::error::timed_out;
    }
  }

  asio::io_context& io_;
  Clock::time_point deadline_;
  tenure::kv::Stream stream_{io_};
  std::string buffer_;
  std::size_t consumed_ = 0;
};

bool is_write(Op op) {
  return op == Op::put || op == Op::del || op == Op::cas;
}

std::string line_of(const Response& r) {
  std::string out;
  tenure::kv::format_response(r, out);
  return out;
}

bool is_membership(Op op) {
  return op == Op::add_node || op == Op::remove_node || op == Op::members;
}

// Prints a successful answer; returns the exit status.
int print_answer(const Request& request, const Response& r, bool verbose) {
  switch (r.kind) {
    case ResponseKind::ok:
      std::puts("OK");
      return kExitOk;
    case ResponseKind::value:
    case ResponseKind::none:
      if (r.kind == ResponseKind::value) {
        std::printf("%.*s\n", static_cast<int>(r.value.size()), r.value.data());
      } else {
        std::puts("(none)");
      }
      if (verbose) {
        const auto how = tenure::kv::name_of(r.how);
        std::fprintf(stderr, "served by: %.*s\n", static_cast<int>(how.size()), how.data());
      }
      return kExitOk;
    case ResponseKind::mismatch: {
      const std::string_view current = r.current ? *r.current : std::string_view{"(none)"};
      std::printf("mismatch: current is %.*s\n", static_cast<int>(current.size()), current.data());
      return kExitMismatch;
    }
    case ResponseKind::info: {
      const auto info = tenure::kv::parse_cluster_info(r.info);
      if (!info) {
        std::fputs("tenure-kv-cli: malformed info answer\n", stderr);
        return kExitError;
      }
      std::printf("node %llu, %u shard(s)\n", static_cast<unsigned long long>(info->node),
                  info->shards());
      for (std::uint32_t s = 0; s < info->shards(); ++s) {
        const auto leader = info->leaders[s];
        const auto address = info->address_of(leader);
        std::printf("  shard %u: leader %s%s%.*s%s\n", s,
                    leader == 0 ? "unknown" : std::to_string(leader).c_str(),
                    address.empty() ? "" : " (", static_cast<int>(address.size()), address.data(),
                    address.empty() ? "" : ")");
      }
      for (const auto& a : info->addresses) {
        std::printf("  node %llu at %s\n", static_cast<unsigned long long>(a.node),
                    a.address.c_str());
      }
      return kExitOk;
    }
    case ResponseKind::members:  // not asked for here (run_membership, run_status)
    case ResponseKind::status:
    case ResponseKind::error:
      break;
  }
  (void)request;
  return kExitError;
}

// Sends `request` to --server, follows not_leader hints (at most kMaxRedirects) and resends
// where that is safe, until an answer other than an error that allows a resend, or the
// deadline. Returns the answer's line (an error answer too), or nullopt after printing why there
// is none.
std::optional<std::string> call(const Args& args, Request request, Clock::time_point deadline) {
  asio::io_context io;
  std::string address = args.server;
  int redirects = 0;
  int retries = 0;
  std::string line;
  // A change resends after any error that leaves the outcome unknown: it is idempotent.
  const bool change = request.op == Op::add_node || request.op == Op::remove_node;
  while (true) {
    Connection connection(io, deadline);
    if (const auto ec = connection.connect(address, args.tls)) {
      std::fprintf(stderr, "tenure-kv-cli: cannot connect to %s: %s\n", address.c_str(),
                   ec.message().c_str());
      return std::nullopt;
    }
    line.clear();
    tenure::kv::format_request(request, line);
    std::optional<Response> response;
    if (const auto ec = connection.exchange(line, request.id, response)) {
      std::fprintf(stderr, "tenure-kv-cli: %s: %s%s\n", address.c_str(), ec.message().c_str(),
                   (is_write(request.op) || change) && ec != asio::error::connection_refused
                       ? " (the write's outcome is unknown)"
                       : "");
      return std::nullopt;
    }
    const std::string answer = line_of(*response);
    if (response->kind != ResponseKind::error) {
      return answer;
    }
    const errc code = response->code;
    const auto name = tenure::kv::name_of(code);
    const bool redirect = code == errc::not_leader && !response->leader.empty();
    // Safe to send again: the server refused before doing anything, or the request is a read,
    // or a membership change (idempotent).
    const bool retry_here =
        code == errc::not_leader || code == errc::transfer_in_progress ||
        code == errc::overloaded || code == errc::change_in_progress ||
        (!is_write(request.op) &&
         (code == errc::timed_out || code == errc::leadership_lost || code == errc::lease_expired ||
          (change && (code == errc::stopped || code == errc::cancelled))));
    const int max_retries = is_membership(request.op) ? 1000 : kMaxRetries;
    if (redirect && redirects < kMaxRedirects) {
      ++redirects;
      if (args.verbose) {
        std::fprintf(stderr, "not_leader: following hint to %.*s\n",
                     static_cast<int>(response->leader.size()), response->leader.data());
      }
      address = std::string(response->leader);
    } else if (retry_here && (!redirect || is_membership(request.op)) && retries < max_retries &&
               Clock::now() + kRetryPause < deadline) {
      ++retries;
      if (redirect) {
        redirects = 0;  // a membership change moved the leader again: follow the new hint
        address = std::string(response->leader);
      }
      if (args.verbose) {
        std::fprintf(stderr, "%.*s: retrying in %lld ms\n", static_cast<int>(name.size()),
                     name.data(), static_cast<long long>(kRetryPause.count()));
      }
      std::this_thread::sleep_for(kRetryPause);
    } else {
      return answer;
    }
    ++request.id;  // a fresh id per attempt, so a late answer to an old one is never mistaken
  }
}

// Prints an error answer; returns kExitError.
int print_error(const Request& request, const Response& r) {
  const auto name = tenure::kv::name_of(r.code);
  const bool unknown =
      (is_write(request.op) || request.op == Op::add_node || request.op == Op::remove_node) &&
      (r.code == errc::timed_out || r.code == errc::leadership_lost);
  std::fprintf(stderr, "tenure-kv-cli: error %.*s%s%.*s%s%s\n", static_cast<int>(name.size()),
               name.data(), r.leader.empty() ? "" : " (leader hint ",
               static_cast<int>(r.leader.size()), r.leader.data(), r.leader.empty() ? "" : ")",
               !unknown               ? ""
               : is_write(request.op) ? ": the write's outcome is unknown (it may or may not "
                                        "have taken effect)"
                                      : ": the change's outcome is unknown (see `members`)");
  return kExitError;
}

int run(const Args& args, const Request& request) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(args.timeout_ms);
  const auto line = call(args, request, deadline);
  if (!line) {
    return kExitError;
  }
  const auto response = tenure::kv::parse_response(*line);
  if (!response) {
    return kExitError;
  }
  if (response->kind == ResponseKind::error) {
    return print_error(request, *response);
  }
  return print_answer(request, *response, args.verbose);
}

void print_members(const tenure::kv::MembersInfo& m) {
  const auto ids = [](const std::vector<std::uint64_t>& list) {
    std::string out;
    tenure::kv::ids_list(list, out);
    return out;
  };
  std::printf("shard %u: configuration at index %llu, %s\n", m.shard,
              static_cast<unsigned long long>(m.index),
              m.committed ? "committed" : "not yet committed");
  std::printf("  voters   %s\n", ids(m.voters).c_str());
  if (m.joint()) {
    std::printf("  joint: the outgoing voters %s must agree too until it is left\n",
                ids(m.outgoing).c_str());
  }
  std::printf("  learners %s\n", ids(m.learners).c_str());
  std::vector<std::uint64_t> all = m.voters;
  for (const auto* list : {&m.outgoing, &m.learners}) {
    for (const auto id : *list) {
      if (std::find(all.begin(), all.end(), id) == all.end()) {
        all.push_back(id);
      }
    }
  }
  for (const auto id : all) {
    const auto endpoint = m.endpoint_of(id);
    const bool voter = std::find(m.voters.begin(), m.voters.end(), id) != m.voters.end();
    const bool outgoing = std::find(m.outgoing.begin(), m.outgoing.end(), id) != m.outgoing.end();
    std::printf("  node %llu at %.*s (%s)\n", static_cast<unsigned long long>(id),
                static_cast<int>(endpoint.empty() ? 7 : endpoint.size()),
                endpoint.empty() ? "unknown" : endpoint.data(),
                voter      ? "voter"
                : outgoing ? "outgoing voter"
                           : "learner");
  }
}

// add-node, remove-node, members: on each shard asked for, in turn.
int run_membership(const Args& args, Request request) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(args.timeout_ms);
  std::vector<std::uint32_t> shards;
  if (args.shard) {
    shards.push_back(*args.shard);
  } else {
    const auto line = call(args, Request::info(1), deadline);
    const auto info_answer = line ? tenure::kv::parse_response(*line)
                                  : tenure::kv::Parsed<Response>(tenure::kv::ParseError{});
    if (!info_answer || info_answer->kind != ResponseKind::info) {
      if (info_answer && info_answer->kind == ResponseKind::error) {
        print_error(Request::info(1), *info_answer);
      }
      std::fputs("tenure-kv-cli: cannot learn the number of shards (info)\n", stderr);
      return kExitError;
    }
    for (std::uint32_t s = 0; s < info_answer->info.shards; ++s) {
      shards.push_back(s);
    }
  }
  int status = kExitOk;
  for (const std::uint32_t s : shards) {
    request.shard = s;
    const auto line = call(args, request, deadline);
    if (!line) {
      std::fprintf(stderr, "tenure-kv-cli: shard %u: no answer\n", s);
      status = kExitError;
      continue;
    }
    const auto response = tenure::kv::parse_response(*line);
    if (!response) {
      status = kExitError;
      continue;
    }
    if (response->kind == ResponseKind::error) {
      std::fprintf(stderr, "tenure-kv-cli: shard %u: ", s);
      status = print_error(request, *response);
      continue;
    }
    if (request.op == Op::members && response->kind == ResponseKind::members) {
      const auto members = tenure::kv::parse_members_info(response->members);
      if (members) {
        print_members(*members);
      }
      continue;
    }
    std::printf("shard %u: node %llu %s\n", s, static_cast<unsigned long long>(request.node),
                request.op == Op::add_node ? "is a voter" : "is no longer a member");
  }
  return status;
}

// status: the cluster's nodes from --server's `info`, then each node's `status` (at most 2 s each,
// and within --timeout-ms in all), rendered per shard.
int run_status(const Args& args) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(args.timeout_ms);
  const auto line = call(args, Request::info(1), deadline);
  const auto answer = line ? tenure::kv::parse_response(*line)
                           : tenure::kv::Parsed<Response>(tenure::kv::ParseError{});
  if (!answer || answer->kind != ResponseKind::info) {
    if (answer && answer->kind == ResponseKind::error) {
      print_error(Request::info(1), *answer);
    }
    std::fputs("tenure-kv-cli: cannot learn the cluster's nodes (info)\n", stderr);
    return kExitError;
  }
  const auto info = tenure::kv::parse_cluster_info(answer->info);
  if (!info) {
    return kExitError;
  }
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  const auto per_node =
      std::clamp(left / static_cast<long>(std::max<std::size_t>(1, info->addresses.size())),
                 std::chrono::milliseconds(200), std::chrono::milliseconds(2000));
  const auto reports = tenure::kv::collect_status(*info, per_node, args.tls);
  const auto table = tenure::kv::render_status(reports, info->shards());
  std::fputs(table.text.c_str(), stdout);
  return table.healthy() ? kExitOk : kExitError;
}

}  // namespace

int main(int argc, char** argv) {
  Args args = parse_args(argc, argv);
  const Request request = request_of(args);
  try {
    if (is_membership(request.op)) {
      if (!args.timeout_given && request.op != Op::members) {
        args.timeout_ms = 30000;  // a new voter may have a snapshot to catch up from
      }
      return run_membership(args, request);
    }
    if (request.op == Op::status) {
      return run_status(args);
    }
    return run(args, request);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tenure-kv-cli: %s\n", e.what());
    return kExitError;
  }
}
