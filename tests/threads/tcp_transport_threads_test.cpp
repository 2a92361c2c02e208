// AsioTcpTransport under threads: two nodes share one io_context run by two threads while two
// more threads call send() concurrently, in both directions and for two groups. ThreadSanitizer
// (the tsan preset) checks the strands, the per-peer queues, the frame pool and the handler slots.

// GCC 12 warns (-Wtsan) that ThreadSanitizer does not model the std::atomic_thread_fence in
// Asio's fenced_block. Harmless here: Asio's scheduler and strands also hand handlers over
// through mutexes, which TSan does see.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#pragma GCC diagnostic ignored "-Wtsan"
#endif

#include <raft/asio/tcp_transport.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using tenure::raft::EntryType;
using tenure::raft::EntryView;
using tenure::raft::Message;
using tenure::raft::MessageType;
using tenure::raft::asio::AsioTcpTransport;
using tenure::raft::asio::TcpTransportOptions;

TEST_CASE("tcp transport: concurrent senders and a two-thread io_context") {
  boost::asio::io_context io;
  auto make = [&](tenure::raft::NodeId id) {
    TcpTransportOptions o;
    o.self = id;
    o.max_queue_frames = 1 << 16;  // nothing is dropped: every message must arrive
    o.max_queue_bytes = std::size_t{256} << 20;
    return std::make_unique<AsioTcpTransport>(io, o);
  };
  auto a = make(1);
  auto b = make(2);
  constexpr std::uint64_t kPerSender = 3000;

  // Per receiving node and group: the next seq expected (each group has one sender thread, so
  // its stream must arrive in order), and whether anything arrived out of order or damaged.
  std::atomic<std::uint64_t> next[2][2] = {};
  std::atomic<bool> broken{false};
  auto receiver = [&](int node, int group) {
    return [&, node, group](const Message& m) {
      // Runs on the group's strand: one at a time per group.
      const std::uint64_t expected = next[node][group].load(std::memory_order_relaxed);
      bool ok = m.seq == expected && m.entries.size() == m.seq % 3;
      for (const EntryView& e : m.entries) {
        ok = ok && e.payload.size() == 16 + e.index % 50 &&
             e.payload[0] == static_cast<std::byte>(e.index & 0xff);
      }
      if (!ok) {
        broken.store(true);
      }
      next[node][group].store(expected + 1, std::memory_order_release);
    };
  };
  a->add_group(10, boost::asio::make_strand(io), receiver(0, 0));
  a->add_group(11, boost::asio::make_strand(io), receiver(0, 1));
  b->add_group(10, boost::asio::make_strand(io), receiver(1, 0));
  b->add_group(11, boost::asio::make_strand(io), receiver(1, 1));
  a->set_peer(2, b->local_endpoint());
  b->set_peer(1, a->local_endpoint());
  a->start();
  b->start();

  auto work = boost::asio::make_work_guard(io);
  std::vector<std::thread> runners;
  for (int i = 0; i < 2; ++i) {
    runners.emplace_back([&] { io.run(); });
  }

  // Sender thread s sends group 10 + s from node a to b and from node b to a.
  auto sender = [&](int s) {
    std::vector<std::vector<std::byte>> bytes(3, std::vector<std::byte>(128));
    std::vector<EntryView> entries;
    for (std::uint64_t seq = 0; seq < kPerSender; ++seq) {
      entries.clear();
      for (std::uint64_t i = 0; i < seq % 3; ++i) {
        const std::uint64_t index = seq * 10 + 1 + i;
        bytes[i][0] = static_cast<std::byte>(index & 0xff);
        entries.push_back({1, index, EntryType::normal,
                           std::span<const std::byte>(bytes[i].data(), 16 + index % 50)});
      }
      Message m;
      m.type = MessageType::append;
      m.group = static_cast<tenure::raft::GroupId>(10 + s);
      m.index = seq * 10;
      m.seq = seq;
      m.entries = entries;
      m.from = 1;
      m.to = 2;
      a->send(m);
      m.from = 2;
      m.to = 1;
      b->send(m);
    }
  };
  std::thread s0(sender, 0);
  std::thread s1(sender, 1);
  s0.join();
  s1.join();

  const auto deadline = std::chrono::steady_clock::now() + 60s;
  auto all_arrived = [&] {
    for (auto& row : next) {
      for (auto& n : row) {
        if (n.load(std::memory_order_acquire) != kPerSender) {
          return false;
        }
      }
    }
    return true;
  };
  while (!all_arrived() && !broken.load() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(1ms);  // polling for completion, not synchronising
  }
  CHECK(all_arrived());
  CHECK_FALSE(broken.load());

  a->stop();
  b->stop();
  work.reset();
  for (auto& t : runners) {
    t.join();  // run() returns: stop() left no work
  }
  const auto sa = a->stats();
  const auto sb = b->stats();
  CHECK(sa.frames_sent == 2 * kPerSender);
  CHECK(sb.frames_sent == 2 * kPerSender);
  CHECK(sa.frames_received == 2 * kPerSender);
  CHECK(sa.dropped_queue_full + sb.dropped_queue_full == 0);
  CHECK(sa.connects == 1);
}
