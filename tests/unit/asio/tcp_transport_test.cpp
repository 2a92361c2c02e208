// AsioTcpTransport over real sockets on 127.0.0.1 (ephemeral ports): exchange in order across
// groups, drops that are counted, malformed input that closes only its own connection, reconnect
// after the acceptor restarts, stop() letting run() return, and a steady state that allocates
// nothing. Each node has its own io_context, all run on the test thread in short slices until a
// condition holds or a generous deadline passes.
#include <raft/asio/tcp_transport.hpp>
#include <raft/testing/allocation_guard.hpp>

#include <doctest/doctest.h>

#include <sys/resource.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

using namespace std::chrono_literals;
using tenure::raft::EntryType;
using tenure::raft::EntryView;
using tenure::raft::GroupId;
using tenure::raft::Message;
using tenure::raft::MessageType;
using tenure::raft::NodeId;
using tenure::raft::asio::AsioTcpTransport;
using tenure::raft::asio::TcpTransportOptions;
using tenure::raft::testing::AllocationGuard;
using tcp = boost::asio::ip::tcp;

namespace {

constexpr auto kDeadline = 20s;

/// What a group received, in order.
struct Received {
  GroupId group = 0;
  NodeId from = 0;
  std::uint64_t seq = 0;
  std::vector<std::string> payloads;
};

/// One node: its io_context, its transport and what its groups received.
struct Node {
  explicit Node(NodeId node_id, TcpTransportOptions options = {}) : id(node_id) {
    options.self = id;
    options.log = [this](std::string_view line) { logs.emplace_back(line); };
    transport = std::make_unique<AsioTcpTransport>(io, std::move(options));
  }
  Node(NodeId node_id, tcp::endpoint listen, TcpTransportOptions options = {})
      : Node(node_id, with_listen(std::move(options), listen)) {}

  static TcpTransportOptions with_listen(TcpTransportOptions o, tcp::endpoint listen) {
    o.listen = listen;
    return o;
  }

  void add_group(GroupId group) {
    transport->add_group(group, boost::asio::make_strand(io), [this, group](const Message& m) {
      Received r{group, m.from, m.seq, {}};
      for (const EntryView& e : m.entries) {
        r.payloads.emplace_back(reinterpret_cast<const char*>(e.payload.data()), e.payload.size());
      }
      received[group].push_back(std::move(r));
    });
  }

  tcp::endpoint endpoint() const { return transport->local_endpoint(); }
  std::size_t count(GroupId group) const {
    auto it = received.find(group);
    return it == received.end() ? 0 : it->second.size();
  }

  NodeId id;
  boost::asio::io_context io;
  std::unique_ptr<AsioTcpTransport> transport;
  std::map<GroupId, std::vector<Received>> received;
  std::vector<std::string> logs;  // written on the test thread, which runs every io_context

  bool logged(std::string_view needle) const {
    for (const auto& l : logs) {
      if (l.find(needle) != std::string::npos) {
        return true;
      }
    }
    return false;
  }
};

/// Runs every node's io_context in short slices until `done` holds or the deadline passes.
bool run_until(const std::vector<Node*>& nodes, const std::function<bool()>& done,
               std::chrono::steady_clock::duration limit = kDeadline) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) {
      return false;
    }
    for (Node* n : nodes) {
      n->io.restart();
      n->io.run_for(1ms);
    }
  }
  return true;
}

/// Stops a node and runs its io_context until it has no work left: true when run() returned.
bool stop_and_drain(Node& node) {
  node.transport->stop();
  node.io.restart();
  node.io.run_for(kDeadline);
  return node.io.stopped();
}

std::string payload_for(GroupId group, NodeId from, std::uint64_t seq, std::size_t i) {
  return "g" + std::to_string(group) + "-n" + std::to_string(from) + "-s" + std::to_string(seq) +
         "-e" + std::to_string(i) + std::string(seq % 7 * 10, 'x');
}

/// Sends an append from `from` to `to` for `group` carrying seq % 4 entries with known payloads.
void send_append(AsioTcpTransport& t, GroupId group, NodeId from, NodeId to, std::uint64_t seq) {
  std::vector<std::string> payloads;
  for (std::size_t i = 0; i < seq % 4; ++i) {
    payloads.push_back(payload_for(group, from, seq, i));
  }
  std::vector<EntryView> entries;
  for (std::size_t i = 0; i < payloads.size(); ++i) {
    entries.push_back(
        {3, seq * 10 + 1 + i, EntryType::normal, std::as_bytes(std::span(payloads[i]))});
  }
  Message m;
  m.type = MessageType::append;
  m.group = group;
  m.from = from;
  m.to = to;
  m.term = 3;
  m.index = seq * 10;
  m.seq = seq;
  m.entries = entries;
  t.send(m);
  // The transport copied what it keeps: scribble over the views' targets.
  for (auto& p : payloads) {
    p.assign(p.size(), '?');
  }
}

/// Checks that `node` received exactly seq 0..n-1 from `from` for `group`, in order, intact.
void check_stream(const Node& node, GroupId group, NodeId from, std::uint64_t n) {
  std::uint64_t next = 0;
  auto it = node.received.find(group);
  REQUIRE(it != node.received.end());
  for (const Received& r : it->second) {
    if (r.from != from) {
      continue;
    }
    CHECK(r.group == group);
    REQUIRE(r.seq == next);
    REQUIRE(r.payloads.size() == next % 4);
    for (std::size_t i = 0; i < r.payloads.size(); ++i) {
      CHECK(r.payloads[i] == payload_for(group, from, next, i));
    }
    ++next;
  }
  CHECK(next == n);
}

/// Connects every pair (each node learns every other's endpoint) and starts them.
void mesh(const std::vector<Node*>& nodes) {
  for (Node* a : nodes) {
    for (Node* b : nodes) {
      if (a != b) {
        a->transport->set_peer(b->id, b->endpoint());
      }
    }
  }
  for (Node* n : nodes) {
    n->transport->start();
  }
}

}  // namespace

TEST_CASE("tcp transport: two nodes exchange appends with entries for two groups in order") {
  Node a(1);
  Node b(2);
  for (Node* n : {&a, &b}) {
    n->add_group(7);
    n->add_group(8);
  }
  mesh({&a, &b});
  constexpr std::uint64_t kPerStream = 200;
  for (std::uint64_t seq = 0; seq < kPerStream; ++seq) {
    send_append(*a.transport, 7, 1, 2, seq);
    send_append(*a.transport, 8, 1, 2, seq);
    send_append(*b.transport, 7, 2, 1, seq);
    send_append(*b.transport, 8, 2, 1, seq);
  }
  REQUIRE(run_until({&a, &b}, [&] {
    return a.count(7) == kPerStream && a.count(8) == kPerStream && b.count(7) == kPerStream &&
           b.count(8) == kPerStream;
  }));
  check_stream(b, 7, 1, kPerStream);
  check_stream(b, 8, 1, kPerStream);
  check_stream(a, 7, 2, kPerStream);
  check_stream(a, 8, 2, kPerStream);

  const auto sa = a.transport->stats();
  const auto sb = b.transport->stats();
  CHECK(sa.frames_sent == 2 * kPerStream);
  CHECK(sb.frames_received == 2 * kPerStream);
  CHECK(sa.bytes_sent == sb.bytes_received);
  CHECK(sa.connects == 1);  // one connection for the pair, both directions, both groups
  CHECK(sb.connects == 1);
  CHECK(sa.dropped_queue_full + sa.dropped_unknown_peer + sa.dropped_invalid == 0);
  CHECK(sa.malformed_frames + sb.malformed_frames == 0);
  CHECK(stop_and_drain(a));
  CHECK(stop_and_drain(b));
}

TEST_CASE("tcp transport: three nodes in a mesh keep each stream in order") {
  Node n1(1);
  Node n2(2);
  Node n3(3);
  std::vector<Node*> nodes{&n1, &n2, &n3};
  for (Node* n : nodes) {
    n->add_group(100);
    n->add_group(200);
  }
  mesh(nodes);
  constexpr std::uint64_t kPerStream = 60;
  for (std::uint64_t seq = 0; seq < kPerStream; ++seq) {
    for (Node* from : nodes) {
      for (Node* to : nodes) {
        if (from != to) {
          send_append(*from->transport, 100, from->id, to->id, seq);
          send_append(*from->transport, 200, from->id, to->id, seq);
        }
      }
    }
  }
  REQUIRE(run_until(nodes, [&] {
    for (Node* n : nodes) {
      if (n->count(100) != 2 * kPerStream || n->count(200) != 2 * kPerStream) {
        return false;
      }
    }
    return true;
  }));
  for (Node* to : nodes) {
    for (Node* from : nodes) {
      if (from != to) {
        check_stream(*to, 100, from->id, kPerStream);
        check_stream(*to, 200, from->id, kPerStream);
      }
    }
  }
  // The lower id dials: node 1 dials 2 and 3, node 2 dials 3; each pair has one connection.
  CHECK(n1.transport->stats().connects == 2);
  CHECK(n2.transport->stats().connects == 2);
  CHECK(n3.transport->stats().connects == 2);
  for (Node* n : nodes) {
    CHECK(stop_and_drain(*n));
  }
}

TEST_CASE("tcp transport: unknown groups and peers are dropped and counted") {
  Node a(1);
  Node b(2);
  b.add_group(7);
  mesh({&a, &b});
  send_append(*a.transport, 99, 1, 2, 1);  // group 99 is not registered on b
  send_append(*a.transport, 7, 1, 5, 1);   // node 5 is unknown
  send_append(*a.transport, 7, 1, 1, 1);   // to self
  send_append(*a.transport, 7, 1, 2, 0);
  REQUIRE(run_until({&a, &b}, [&] { return b.count(7) == 1; }));
  CHECK(b.transport->stats().dropped_unknown_group == 1);
  CHECK(b.transport->stats().frames_received == 1);
  CHECK(a.transport->stats().dropped_unknown_peer == 2);

  // A removed group is unknown again.
  b.transport->remove_group(7);
  send_append(*a.transport, 7, 1, 2, 1);
  REQUIRE(run_until({&a, &b}, [&] { return b.transport->stats().dropped_unknown_group == 2; }));
  CHECK(b.count(7) == 1);
  CHECK(stop_and_drain(a));
  CHECK(stop_and_drain(b));
}

namespace {

/// A raw client of `node`: blocking writes are fine (a few bytes into the kernel's buffer).
struct RawClient {
  explicit RawClient(const Node& node) : socket(io) { socket.connect(node.endpoint()); }

  void write(const std::vector<std::uint8_t>& bytes) {
    boost::asio::write(socket, boost::asio::buffer(bytes));
  }

  /// Reads until the peer closes: true when it did (the node's hello may come first). Called
  /// only once the node has counted the malformed input, i.e. after it closed the socket.
  bool closed_by_peer() {
    std::array<char, 64> buf{};
    boost::system::error_code ec;
    for (int i = 0; i < 100 && !ec; ++i) {
      socket.read_some(boost::asio::buffer(buf), ec);
    }
    return ec == boost::asio::error::eof || ec == boost::asio::error::connection_reset;
  }

  boost::asio::io_context io;
  tcp::socket socket;
};

std::vector<std::uint8_t> hello(NodeId from) {
  std::vector<std::uint8_t> h{'T', 'N', 'R', '1', 1};
  for (int i = 0; i < 8; ++i) {
    h.push_back(static_cast<std::uint8_t>(from >> (8 * i)));
  }
  return h;
}

std::vector<std::uint8_t> le32(std::uint32_t v) {
  return {static_cast<std::uint8_t>(v), static_cast<std::uint8_t>(v >> 8),
          static_cast<std::uint8_t>(v >> 16), static_cast<std::uint8_t>(v >> 24)};
}

std::vector<std::uint8_t> concat(std::vector<std::uint8_t> a, const std::vector<std::uint8_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

/// Makes `id` a configured peer of `node` (at a port that refuses: nobody answers its dials), so
/// that a raw client may say hello as `id`.
void configure_raw_peer(Node& node, NodeId id) {
  node.transport->set_peer(id, tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 1));
}

/// The bytes of `m` as one length-prefixed frame.
std::vector<std::uint8_t> framed(const Message& m) {
  std::vector<std::byte> frame(tenure::raft::encoded_size(m));
  REQUIRE(tenure::raft::encode(m, frame));
  std::vector<std::uint8_t> out = le32(static_cast<std::uint32_t>(frame.size()));
  for (std::byte b : frame) {
    out.push_back(static_cast<std::uint8_t>(b));
  }
  return out;
}

}  // namespace

TEST_CASE("tcp transport: malformed input closes only its own connection") {
  Node a(1);
  Node b(2);
  b.add_group(7);
  mesh({&a, &b});
  std::uint64_t sent = 0;
  auto traffic_flows = [&] {
    send_append(*a.transport, 7, 1, 2, sent++);
    return run_until({&a, &b}, [&] { return b.count(7) == sent; });
  };
  REQUIRE(traffic_flows());
  configure_raw_peer(b, 9);

  SUBCASE("a bad hello") {
    RawClient raw(b);
    raw.write({'H', 'T', 'T', 'P', '/', '1', '.', '1', ' ', '2', '0', '0', '\n'});
    REQUIRE(run_until({&a, &b}, [&] { return b.transport->stats().malformed_frames == 1; }));
    CHECK(raw.closed_by_peer());
    CHECK(b.logged("bad hello"));
  }
  SUBCASE("a valid hello then a length above the limit") {
    RawClient raw(b);
    raw.write(concat(hello(9), le32(0xffffffffu)));
    REQUIRE(run_until({&a, &b}, [&] { return b.transport->stats().malformed_frames == 1; }));
    CHECK(raw.closed_by_peer());
    CHECK(b.logged("bad frame length"));
  }
  SUBCASE("a valid hello then a zero length") {
    RawClient raw(b);
    raw.write(concat(hello(9), le32(0)));
    REQUIRE(run_until({&a, &b}, [&] { return b.transport->stats().malformed_frames == 1; }));
    CHECK(raw.closed_by_peer());
  }
  SUBCASE("a valid hello and length then a frame the codec refuses") {
    RawClient raw(b);
    std::vector<std::uint8_t> junk(100, 0xab);
    junk[0] = 1;  // the codec version, so the rest is what is malformed
    raw.write(concat(concat(hello(9), le32(100)), junk));
    REQUIRE(run_until({&a, &b}, [&] { return b.transport->stats().malformed_frames == 1; }));
    CHECK(raw.closed_by_peer());
    CHECK(b.logged("malformed message"));
  }
  SUBCASE("an unsupported codec version") {
    RawClient raw(b);
    raw.write(concat(concat(hello(9), le32(88)), std::vector<std::uint8_t>(88, 0x7f)));
    REQUIRE(run_until({&a, &b}, [&] { return b.transport->stats().malformed_frames == 1; }));
    CHECK(raw.closed_by_peer());
    CHECK(b.logged("version"));
  }
  // The other connection never noticed.
  REQUIRE(traffic_flows());
  REQUIRE(traffic_flows());
  check_stream(b, 7, 1, sent);
  CHECK(a.transport->stats().disconnects == 0);
  CHECK(a.transport->stats().connects == 1);
  CHECK(stop_and_drain(a));
  CHECK(stop_and_drain(b));
}

TEST_CASE("tcp transport: the dialer reconnects when the acceptor comes back on the same port") {
  TcpTransportOptions fast;
  fast.reconnect_min = 5ms;
  fast.reconnect_max = 40ms;
  Node a(1, fast);
  auto b = std::make_unique<Node>(2, fast);
  const tcp::endpoint b_endpoint = b->endpoint();
  a.add_group(7);
  b->add_group(7);
  mesh({&a, b.get()});
  send_append(*a.transport, 7, 1, 2, 0);
  REQUIRE(run_until({&a, b.get()}, [&] { return b->count(7) == 1; }));

  REQUIRE(stop_and_drain(*b));
  b.reset();
  // The dialer notices, and retries (refused) with backoff while nobody listens.
  REQUIRE(run_until({&a}, [&] { return a.transport->stats().disconnects == 1; }));
  REQUIRE(run_until({&a}, [&] { return a.logged("connect failed"); }));
  // Queued while disconnected: delivered once the connection is back.
  send_append(*a.transport, 7, 1, 2, 1);

  b = std::make_unique<Node>(2, b_endpoint, fast);
  b->add_group(7);
  b->transport->set_peer(1, a.endpoint());
  b->transport->start();
  REQUIRE(run_until({&a, b.get()}, [&] { return b->count(7) == 1; }));
  CHECK(a.transport->stats().connects == 2);
  CHECK(b->received[7][0].seq == 1);
  // Both directions use the new connection.
  send_append(*b->transport, 7, 2, 1, 0);
  send_append(*a.transport, 7, 1, 2, 2);
  REQUIRE(run_until({&a, b.get()}, [&] { return a.count(7) == 1 && b->count(7) == 2; }));
  CHECK(b->received[7][1].seq == 2);
  CHECK(stop_and_drain(a));
  CHECK(stop_and_drain(*b));
}

TEST_CASE("tcp transport: a full queue drops and counts") {
  // Peer 2's address has nobody listening: messages queue up to the bounds, the rest are dropped.
  tcp::endpoint nobody;
  {
    boost::asio::io_context io;
    tcp::acceptor probe(io, tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0));
    nobody = probe.local_endpoint();
  }
  SUBCASE("by frames") {
    TcpTransportOptions o;
    o.max_queue_frames = 4;
    Node a(1, o);
    a.transport->set_peer(2, nobody);
    for (std::uint64_t seq = 0; seq < 10; ++seq) {
      send_append(*a.transport, 7, 1, 2, seq);
    }
    CHECK(a.transport->stats().dropped_queue_full == 6);
    CHECK(stop_and_drain(a));
  }
  SUBCASE("by bytes") {
    TcpTransportOptions o;
    o.max_queue_bytes = 2 * (4 + tenure::raft::kFrameHeaderSize);
    Node a(1, o);
    a.transport->set_peer(2, nobody);
    a.transport->start();  // dialing and failing changes nothing
    for (std::uint64_t seq = 0; seq < 5; ++seq) {
      send_append(*a.transport, 7, 1, 2, seq * 4);  // no entries: header-only frames
    }
    CHECK(a.transport->stats().dropped_queue_full == 3);
    REQUIRE(run_until({&a}, [&] { return a.logged("connect failed"); }));
    CHECK(stop_and_drain(a));
  }
}

TEST_CASE("tcp transport: stop makes run return") {
  Node a(1);
  Node b(2);
  a.add_group(7);
  b.add_group(7);
  mesh({&a, &b});
  send_append(*a.transport, 7, 1, 2, 0);
  REQUIRE(run_until({&a, &b}, [&] { return b.count(7) == 1; }));
  a.transport->stop();
  a.transport->stop();  // idempotent
  b.transport->stop();
  a.io.restart();
  a.io.run_for(kDeadline);
  CHECK(a.io.stopped());
  b.io.restart();
  b.io.run_for(kDeadline);
  CHECK(b.io.stopped());
  send_append(*a.transport, 7, 1, 2, 1);
  CHECK(a.transport->stats().dropped_stopped == 1);
}

TEST_CASE("tcp transport: a bad listen address throws std::system_error") {
  boost::asio::io_context io;
  Node a(1);
  TcpTransportOptions o;
  o.self = 2;
  o.listen = a.endpoint();  // taken, and listening
  CHECK_THROWS_AS(AsioTcpTransport(io, o), std::system_error);
  o.self = tenure::raft::kNoNode;
  o.listen = tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0);
  CHECK_THROWS_AS(AsioTcpTransport(io, o), std::system_error);
}

// The sanitizer runtimes need descriptors of their own (UBSan's vptr check opens a pipe to probe
// memory), so under them the lowered descriptor limit trips the runtime, not only accept(): the
// test runs in the plain builds only.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitizedBuild = true;
#else
constexpr bool kSanitizedBuild = false;
#endif

TEST_CASE("tcp transport: out of descriptors - accept pauses and retries instead of spinning" *
          doctest::skip(kSanitizedBuild)) {
  TcpTransportOptions o;
  o.accept_retry = std::chrono::milliseconds(100);
  Node b(2, o);
  configure_raw_peer(b, 9);
  b.transport->start();
  RawClient raw(b);  // the kernel completes the handshake; the connection waits to be accepted
  raw.write(hello(9));

  // Lower the soft descriptor limit to the lowest free descriptor: every descriptor below it is
  // in use, so accept() fails with EMFILE.
  rlimit saved{};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &saved) == 0);
  const int lowest_free = ::dup(0);
  REQUIRE(lowest_free >= 0);
  ::close(lowest_free);
  rlimit tight = saved;
  tight.rlim_cur = static_cast<rlim_t>(lowest_free);
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &tight) == 0);
  const auto window = std::chrono::milliseconds(500);
  b.io.restart();
  b.io.run_for(window);
  const auto failures = b.transport->stats().accept_failures;
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &saved) == 0);

  // One failure per accept_retry: about 5 in the window. Retrying at once would fail thousands
  // of times.
  CHECK(failures >= 1);
  CHECK(failures <= 10);
  CHECK(b.logged("accept failed"));
  CHECK(b.transport->stats().connects == 0);
  // With descriptors back, the next retry accepts the waiting connection and reads its hello.
  REQUIRE(run_until({&b}, [&] { return b.transport->stats().connects == 1; }));
  CHECK(stop_and_drain(b));
}

TEST_CASE("tcp transport: steady-state send and receive allocate nothing") {
  REQUIRE(tenure::raft::testing::allocation_counting_installed());
  // Both nodes on one io_context, run on this thread, so AllocationGuard sees all their work.
  boost::asio::io_context io;
  auto make = [&](NodeId id) {
    TcpTransportOptions o;
    o.self = id;
    return std::make_unique<AsioTcpTransport>(io, o);
  };
  auto a = make(1);
  auto b = make(2);
  std::uint64_t received_by_a = 0;
  std::uint64_t received_by_b = 0;
  std::uint64_t payload_bytes = 0;
  a->add_group(7, boost::asio::make_strand(io), [&](const Message& m) {
    ++received_by_a;
    for (const EntryView& e : m.entries) {
      payload_bytes += e.payload.size();
    }
  });
  b->add_group(7, boost::asio::make_strand(io), [&](const Message& m) {
    ++received_by_b;
    for (const EntryView& e : m.entries) {
      payload_bytes += e.payload.size();
    }
  });
  b->add_group(8, boost::asio::make_strand(io), [&](const Message&) { ++received_by_b; });
  a->set_peer(2, b->local_endpoint());
  b->set_peer(1, a->local_endpoint());
  a->start();
  b->start();

  // Fixed messages: an append with 3 entries and a heartbeat response.
  const std::string p1(200, 'a');
  const std::string p2(3000, 'b');
  const std::string p3(17, 'c');
  const std::array<EntryView, 3> entries{
      {{2, 11, EntryType::normal, std::as_bytes(std::span(p1))},
       {2, 12, EntryType::normal, std::as_bytes(std::span(p2))},
       {2, 13, EntryType::normal, std::as_bytes(std::span(p3))}}};
  Message append;
  append.type = MessageType::append;
  append.group = 7;
  append.from = 1;
  append.to = 2;
  append.index = 10;
  append.entries = entries;
  Message response;
  response.type = MessageType::heartbeat_response;
  response.group = 7;
  response.from = 2;
  response.to = 1;
  Message other_group = append;
  other_group.group = 8;

  std::uint64_t target_a = 0;
  std::uint64_t target_b = 0;
  auto round = [&](int burst) {
    for (int i = 0; i < burst; ++i) {
      a->send(append);
      a->send(other_group);
      b->send(response);
    }
    target_a += static_cast<std::uint64_t>(burst);
    target_b += 2 * static_cast<std::uint64_t>(burst);
    const auto deadline = std::chrono::steady_clock::now() + kDeadline;
    while ((received_by_a < target_a || received_by_b < target_b) &&
           std::chrono::steady_clock::now() < deadline) {
      io.run_one_for(10ms);
    }
    return received_by_a == target_a && received_by_b == target_b;
  };

  // Warm-up: connections, pools, scratch and Asio's per-thread caches reach their high-water.
  for (int i = 0; i < 50; ++i) {
    REQUIRE(round(1 + i % 32));
  }
  bool all_delivered = true;
  std::uint64_t allocations = 0;
  {
    AllocationGuard guard;
    for (int i = 0; i < 200; ++i) {
      all_delivered = round(1 + i % 32) && all_delivered;
    }
    allocations = guard.allocations();
  }
  CHECK(all_delivered);
  CHECK(allocations == 0);
  CHECK(a->stats().handler_fallbacks == 0);
  CHECK(b->stats().handler_fallbacks == 0);
  CHECK(payload_bytes == target_b / 2 * (p1.size() + p2.size() + p3.size()));
  a->stop();
  b->stop();
  io.restart();
  io.run_for(kDeadline);
  CHECK(io.stopped());
}

TEST_CASE("tcp transport: a hello naming a node that is not a configured peer is refused") {
  Node b(2);
  b.add_group(7);
  b.transport->start();
  RawClient raw(b);
  raw.write(concat(hello(9), framed([] {
                     Message m;
                     m.type = MessageType::heartbeat;
                     m.group = 7;
                     m.from = 9;
                     m.to = 2;
                     m.term = 1;
                     return m;
                   }())));
  REQUIRE(run_until({&b}, [&] { return b.transport->stats().unknown_hellos == 1; }));
  CHECK(raw.closed_by_peer());
  CHECK(b.logged("not a configured peer"));
  CHECK(b.transport->stats().malformed_frames == 1);
  CHECK(b.transport->stats().connects == 0);
  CHECK(b.count(7) == 0);  // nothing it sent was delivered
  // And it created nothing: a send to node 9 still finds no such peer.
  Message m;
  m.group = 7;
  m.from = 2;
  m.to = 9;
  b.transport->send(m);
  CHECK(b.transport->stats().dropped_unknown_peer == 1);
  CHECK(stop_and_drain(b));
}

TEST_CASE("tcp transport: a frame whose from is not the node of the hello closes the connection") {
  Node b(2);
  b.add_group(7);
  configure_raw_peer(b, 9);
  b.transport->start();
  RawClient raw(b);
  Message m;
  m.type = MessageType::heartbeat;
  m.group = 7;
  m.to = 2;
  m.term = 1;
  m.from = 9;
  const auto honest = framed(m);
  m.from = 5;  // node 9 speaking for node 5
  raw.write(concat(concat(hello(9), honest), framed(m)));
  REQUIRE(run_until({&b}, [&] { return b.transport->stats().wrong_sender == 1; }));
  CHECK(raw.closed_by_peer());
  CHECK(b.logged("frame from node 5 on the connection of node 9"));
  CHECK(b.count(7) == 1);  // the honest frame only
  CHECK(b.received[7].front().from == 9);
  CHECK(stop_and_drain(b));
}

TEST_CASE("tcp transport: past max_inbound_connections an accepted connection is closed at once") {
  TcpTransportOptions o;
  o.max_inbound_connections = 2;
  Node b(2, o);
  b.transport->start();
  RawClient first(b);
  RawClient second(b);
  b.io.restart();
  b.io.run_for(50ms);  // both accepted
  RawClient third(b);
  REQUIRE(run_until({&b}, [&] { return b.transport->stats().refused_connections == 1; }));
  CHECK(third.closed_by_peer());
  CHECK(b.logged("max_inbound_connections"));
  // Once one of the first two goes, a new one is taken again.
  first.socket.close();
  REQUIRE(run_until({&b}, [&] { return b.logged("no hello"); }));
  RawClient fourth(b);
  b.io.restart();
  b.io.run_for(50ms);
  CHECK(b.transport->stats().refused_connections == 1);
  CHECK(stop_and_drain(b));
}

TEST_CASE("tcp transport: a frame's buffer grows only as its bytes arrive") {
  Node b(2);
  configure_raw_peer(b, 9);
  b.transport->start();
  RawClient raw(b);
  // A length of 60 MiB (under the 64 MiB limit), then 100 bytes, then nothing.
  raw.write(concat(concat(hello(9), le32(60u << 20)), std::vector<std::uint8_t>(100, 1)));
  REQUIRE(run_until({&b}, [&] { return b.transport->stats().connects == 1; }));
  b.io.restart();
  b.io.run_for(50ms);
  CHECK(b.transport->stats().pool_bytes < (std::uint64_t{1} << 20));
  raw.socket.close();
  CHECK(stop_and_drain(b));
}

TEST_CASE("tcp transport: an accepted connection that says no hello is closed at hello_timeout") {
  TcpTransportOptions o;
  o.hello_timeout = 100ms;
  o.max_inbound_connections = 1;
  Node b(2, o);
  b.transport->start();
  RawClient silent(b);
  REQUIRE(run_until({&b}, [&] { return b.logged("no hello within 100 ms"); }));
  CHECK(silent.closed_by_peer());
  // Its slot is free again: the next connection is taken, not refused.
  RawClient next(b);
  b.io.restart();
  b.io.run_for(30ms);
  CHECK(b.transport->stats().refused_connections == 0);
  CHECK(stop_and_drain(b));
}

#if defined(TENURE_WITH_TLS) && defined(TENURE_TEST_CERTS)

namespace {

// The TLS files of `node` from the test certificates (`ca_dir`: the cluster CA's, or "/other"
// for a CA nobody trusts); `presented` is the node whose certificate it presents.
TcpTransportOptions tls_options(NodeId presented, const std::string& ca_dir = "") {
  const std::string dir = std::string(TENURE_TEST_CERTS) + ca_dir;
  TcpTransportOptions o;
  o.tls = tenure::raft::asio::TlsFiles{dir + "/node-" + std::to_string(presented) + ".pem",
                                       dir + "/node-" + std::to_string(presented) + "-key.pem",
                                       dir + "/ca.pem"};
  return o;
}

}  // namespace

TEST_CASE(
    "tcp transport with TLS: two nodes with certificates of the cluster CA exchange appends") {
  Node a(1, tls_options(1));
  Node b(2, tls_options(2));
  a.add_group(7);
  b.add_group(7);
  mesh({&a, &b});
  constexpr std::uint64_t kMessages = 50;
  for (std::uint64_t seq = 0; seq < kMessages; ++seq) {
    send_append(*a.transport, 7, 1, 2, seq);
    send_append(*b.transport, 7, 2, 1, seq);
  }
  REQUIRE(run_until({&a, &b}, [&] { return a.count(7) == kMessages && b.count(7) == kMessages; }));
  check_stream(b, 7, 1, kMessages);
  check_stream(a, 7, 2, kMessages);
  CHECK(a.transport->stats().tls_refused == 0);
  CHECK(b.transport->stats().tls_refused == 0);
  CHECK(stop_and_drain(a));
  CHECK(stop_and_drain(b));
}

TEST_CASE("tcp transport with TLS: a certificate from another CA is refused and changes nothing") {
  Node a(1, tls_options(1, "/other"));  // a valid-looking node 1, but its CA is not the cluster's
  Node b(2, tls_options(2));
  a.add_group(7);
  b.add_group(7);
  mesh({&a, &b});
  send_append(*a.transport, 7, 1, 2, 1);
  REQUIRE(run_until({&a, &b}, [&] { return b.transport->stats().tls_refused >= 1; }));
  b.io.restart();
  b.io.run_for(50ms);
  CHECK(b.count(7) == 0);
  CHECK(b.transport->stats().connects == 0);
  CHECK(b.logged("TLS handshake failed"));
  CHECK(stop_and_drain(a));
  CHECK(stop_and_drain(b));
}

TEST_CASE("tcp transport with TLS: a node claiming another id than its certificate is refused") {
  Node a(1, tls_options(3));  // says hello as node 1, presents node 3's certificate
  Node b(2, tls_options(2));
  a.add_group(7);
  b.add_group(7);
  mesh({&a, &b});
  send_append(*a.transport, 7, 1, 2, 1);
  REQUIRE(run_until({&a, &b}, [&] { return b.transport->stats().tls_refused >= 1; }));
  CHECK(b.logged("TLS certificate names 'node-3', the hello node 1"));
  b.io.restart();
  b.io.run_for(50ms);
  CHECK(b.count(7) == 0);
  CHECK(b.transport->stats().connects == 0);
  CHECK(stop_and_drain(a));
  CHECK(stop_and_drain(b));
}

TEST_CASE("tcp transport with TLS: a connection without TLS is refused before its hello is read") {
  Node b(2, tls_options(2));
  b.add_group(7);
  configure_raw_peer(b, 9);
  b.transport->start();
  RawClient raw(b);
  raw.write(hello(9));
  REQUIRE(run_until({&b}, [&] { return b.transport->stats().tls_refused == 1; }));
  CHECK(raw.closed_by_peer());
  CHECK(b.transport->stats().connects == 0);
  CHECK(stop_and_drain(b));
}

TEST_CASE("tcp transport with TLS: missing files are refused at construction - naming the file") {
  TcpTransportOptions o = tls_options(2);
  o.tls->ca = "/nonexistent/ca.pem";
  o.self = 2;
  boost::asio::io_context io;
  try {
    AsioTcpTransport t(io, o);
    FAIL("a missing CA file was accepted");
  } catch (const std::system_error& e) {
    CHECK(e.code() == tenure::raft::errc::invalid_config);
    CHECK(std::string(e.what()).find("/nonexistent/ca.pem") != std::string::npos);
  }
}

#endif

TEST_CASE("tcp transport: peers learned after start - removed - and named again") {
  Node a(1);
  Node b(2);
  a.add_group(7);
  b.add_group(7);
  a.transport->start();
  b.transport->start();
  // Both running, neither knowing the other: node 1 learns node 2 at run time and dials it.
  a.transport->set_peer(2, b.endpoint());
  b.transport->set_peer(1, a.endpoint());
  for (std::uint64_t seq = 0; seq < 10; ++seq) {
    send_append(*a.transport, 7, 1, 2, seq);
    send_append(*b.transport, 7, 2, 1, seq);
  }
  REQUIRE(run_until({&a, &b}, [&] { return a.count(7) == 10 && b.count(7) == 10; }));
  check_stream(b, 7, 1, 10);
  check_stream(a, 7, 2, 10);
  CHECK(a.transport->stats().connects == 1);

  // Node 1 forgets node 2: the connection closes, sends to 2 drop, and 1 no longer dials 2.
  a.transport->remove_peer(2);
  REQUIRE(run_until({&a, &b}, [&] {
    return a.transport->stats().disconnects == 1 && b.transport->stats().disconnects == 1;
  }));
  CHECK(a.logged("peer 2 removed"));
  const auto dropped = a.transport->stats().dropped_unknown_peer;
  send_append(*a.transport, 7, 1, 2, 10);
  CHECK(a.transport->stats().dropped_unknown_peer == dropped + 1);
  // Node 2 still knows node 1 and queues for it, but only the lower id dials: with node 1 no
  // longer dialing, nothing reconnects (a reconnect would take reconnect_min, 10 ms, here).
  send_append(*b.transport, 7, 2, 1, 10);
  const auto until = std::chrono::steady_clock::now() + 300ms;
  run_until({&a, &b}, [&] { return std::chrono::steady_clock::now() > until; });
  CHECK(a.transport->stats().connects == 1);
  CHECK(a.count(7) == 10);

  // Node 2 forgets node 1 too, and node 1 names node 2 again: it dials, and node 2 refuses the
  // hello of a node it removed.
  b.transport->remove_peer(1);
  a.transport->set_peer(2, b.endpoint());
  REQUIRE(run_until({&a, &b}, [&] { return b.transport->stats().unknown_hellos >= 1; }));
  CHECK(b.logged("not a configured peer"));
  CHECK(b.transport->stats().connects == 1);  // none since the first

  // Named again on both sides: they reconnect (the dialer's backoff is at most reconnect_max)
  // and traffic flows; what node 2 queued before it removed node 1 was dropped.
  b.transport->set_peer(1, a.endpoint());
  // (Node 1 counts each refused attempt as a connect too: it saw node 2's hello.)
  REQUIRE(run_until({&a, &b}, [&] { return b.transport->stats().connects == 2; }));
  Message m;
  m.type = MessageType::heartbeat;
  m.group = 7;
  m.from = 1;
  m.to = 2;
  m.term = 4;
  m.seq = 99;
  a.transport->send(m);
  m.from = 2;
  m.to = 1;
  b.transport->send(m);
  REQUIRE(run_until({&a, &b}, [&] { return a.count(7) == 11 && b.count(7) == 11; }));
  CHECK(a.received[7].back().seq == 99);  // not the seq-10 append queued before the removal
  CHECK(b.received[7].back().seq == 99);
  CHECK(stop_and_drain(a));
  CHECK(stop_and_drain(b));
}

TEST_CASE("tcp transport: a peer that refuses the hello is redialed with a growing backoff") {
  // Node 2 does not know node 1 (as after remove_peer): it sends its hello, reads node 1's and
  // closes. Node 1 saw a hello, but no frame: that must not reset its backoff to reconnect_min,
  // or it would redial every 5-10 ms for as long as it runs (and fill both logs).
  Node a(1);
  Node b(2);
  b.add_group(7);
  b.transport->start();
  a.transport->set_peer(2, b.endpoint());
  a.transport->start();
  const auto until = std::chrono::steady_clock::now() + 500ms;
  run_until({&a, &b}, [&] { return std::chrono::steady_clock::now() > until; });
  const auto refused = b.transport->stats().unknown_hellos;
  // Delays of at least 5, 10, 20, 40, 80, 160 ms... (each in [d/2, d]): at most 8 attempts in
  // 500 ms; with the backoff reset after each hello it was about one every 10 ms.
  CHECK(refused >= 2);
  CHECK(refused <= 9);
  CHECK(stop_and_drain(a));
  CHECK(stop_and_drain(b));
}
