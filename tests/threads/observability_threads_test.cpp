// Metrics and status are read on other threads than the groups': an exporter scrapes
// AtomicMetrics and asks for status while two io threads run three groups under writes. Run under
// ThreadSanitizer by the tsan preset: any unsynchronised access is a failure there.
#include <raft/metrics.hpp>
#include <raft/prometheus_text.hpp>
#include <raft/status.hpp>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "../support/asio_cluster.hpp"

using namespace std::chrono_literals;
using tenure::raft::Counter;
using tenure::raft::kNoNode;
using tenure::raft::NodeId;
using tenure::raft::ProposeResult;
using tenure::raft::Result;
using tenure::testing::asio_cluster::Cluster;
using tenure::testing::asio_cluster::run_until;

TEST_CASE("metrics and status are read from another thread while the groups run") {
  constexpr int kWrites = 400;
  ::boost::asio::io_context io;
  Cluster c(io);
  REQUIRE(run_until(io, [&] { return c.leader() != kNoNode; }));
  const NodeId leader = c.leader();
  auto& g = *c.groups[leader];

  auto guard = ::boost::asio::make_work_guard(io);
  std::vector<std::thread> runners;
  for (int i = 0; i < 2; ++i) {
    runners.emplace_back([&io] { io.run(); });
  }

  std::atomic<int> committed{0};
  std::atomic<int> failed{0};
  // The writer starts only once the exporter is scraping: 400 writes can commit before a thread
  // that merely starts after them reaches its first scrape, and then nothing ran concurrently.
  std::atomic<bool> scraping{false};
  const std::vector<std::byte> payload(32, std::byte{7});
  std::thread writer([&] {
    while (!scraping.load()) {
      std::this_thread::yield();
    }
    for (int i = 0; i < kWrites; ++i) {
      g.async_propose(payload, 5s, [&](Result<ProposeResult> r) {
        (r ? committed : failed).fetch_add(1, std::memory_order_relaxed);
      });
    }
  });

  // The exporter: renders every group's metrics with a status taken on its strand, until the
  // writes are done.
  std::string body;
  const auto until = std::chrono::steady_clock::now() + 10s;
  scraping.store(true);
  do {
    std::vector<tenure::raft::GroupStatus> statuses;
    for (NodeId id = 1; id <= 3; ++id) {
      std::promise<tenure::raft::GroupStatus> p;
      c.groups[id]->async_status([&p](tenure::raft::GroupStatus s) { p.set_value(s); });
      auto f = p.get_future();
      REQUIRE(f.wait_for(5s) == std::future_status::ready);
      statuses.push_back(f.get());
    }
    std::vector<tenure::raft::PrometheusGroup> groups;
    for (NodeId id = 1; id <= 3; ++id) {
      groups.push_back({&c.groups[id]->group().metrics(), &statuses[id - 1]});
    }
    body.clear();
    tenure::raft::append_prometheus(body, groups);
  } while (committed.load() + failed.load() < kWrites && std::chrono::steady_clock::now() < until);
  writer.join();
  CHECK(committed.load() == kWrites);
  CHECK(failed.load() == 0);
  CHECK(body.find("tenure_role{group=\"7\"} 3\n") != std::string::npos);
  // Every write the leader accepted was counted, seen from this thread.
  CHECK(g.group().metrics().counter(Counter::proposals_accepted) >= kWrites);

  for (auto& group : c.groups) {
    if (group) {
      group->stop();
    }
  }
  guard.reset();
  io.stop();
  for (auto& t : runners) {
    t.join();
  }
}
