// tenure-sim: runs the seeded cluster simulator over many seeds, or one seed with a trace.
//
//   tenure-sim --seeds N [--start S] [--jobs J]     N seeds from S, J threads; a summary
//   tenure-sim --seed S [--trace]                   one seed, optionally with a readable trace
//   tenure-sim --determinism N                      N seeds twice each: equal trace hashes
//   tenure-sim --bug NAME --expect-failure --seeds N   a planted bug must be caught
//
// Other options: --nodes 3|5, --chaos-ms MS, --faults a,b (fault classes to allow, spaces and
// slashes written as underscores: loss, duplication, delay_reorder, clogged_link,
// symmetric_partition, asymmetric_partition, crash-restart, process_pause, clock_drift_skew,
// leadership_transfer, flaky_links, divergence, disk_faults, stale_messages). Exit status: 0
// when every run passed (or, with --expect-failure, when some run failed), 1 otherwise, 2 for
// bad usage.
#include <raft/testing/simulator.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

using tenure::raft::PlantedBug;
using tenure::raft::testing::FaultClass;
using tenure::raft::testing::kFaultClasses;
using tenure::raft::testing::run_simulation;
using tenure::raft::testing::SimulationOptions;
using tenure::raft::testing::SimulationReport;

namespace {

struct Args {
  std::uint64_t start = 1;
  std::uint64_t seeds = 0;
  std::uint64_t one_seed = 0;
  bool trace = false;
  unsigned jobs = 0;
  std::uint64_t determinism = 0;
  std::string bug;
  bool expect_failure = false;
  std::size_t nodes = 0;
  std::int64_t chaos_ms = 0;
  std::string faults;  // comma-separated fault classes to allow; empty: all
};

[[noreturn]] void usage(const char* message) {
  std::fprintf(stderr,
               "tenure-sim: %s\n"
               "usage: tenure-sim --seeds N [--start S] [--jobs J] [--nodes 3|5] [--chaos-ms MS]\n"
               "       tenure-sim --seed S [--trace]\n"
               "       tenure-sim --determinism N\n"
               "       tenure-sim --bug NAME --expect-failure --seeds N\n"
               "bugs: lease_anchor_at_receive, no_lease_revoke_before_transfer, "
               "ack_before_durable, commit_previous_term_by_counting, excessive_clock_drift,\n"
               "      forget_leader_contact_on_term_bump, campaign_before_durable,\n"
               "      compact_before_snapshot_durable, joint_quorum_counts_only_incoming,\n"
               "      vote_before_durable, truncate_matching_entries, read_index_without_round,\n"
               "      read_index_before_term_commit\n",
               message);
  std::exit(2);
}

std::uint64_t number(const char* text, const char* what) {
  char* end = nullptr;
  const unsigned long long v = std::strtoull(text, &end, 10);
  if (end == text || *end != '\0') {
    usage((std::string(what) + " needs a number").c_str());
  }
  return v;
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    auto value = [&](const char* what) {
      if (i + 1 >= argc) {
        usage((std::string(what) + " needs a value").c_str());
      }
      return argv[++i];
    };
    if (arg == "--seeds") {
      a.seeds = number(value("--seeds"), "--seeds");
    } else if (arg == "--start") {
      a.start = number(value("--start"), "--start");
    } else if (arg == "--seed") {
      a.one_seed = number(value("--seed"), "--seed");
    } else if (arg == "--trace") {
      a.trace = true;
    } else if (arg == "--jobs") {
      a.jobs = static_cast<unsigned>(number(value("--jobs"), "--jobs"));
    } else if (arg == "--determinism") {
      a.determinism = number(value("--determinism"), "--determinism");
    } else if (arg == "--bug") {
      a.bug = value("--bug");
    } else if (arg == "--expect-failure") {
      a.expect_failure = true;
    } else if (arg == "--nodes") {
      a.nodes = number(value("--nodes"), "--nodes");
      if (a.nodes != 3 && a.nodes != 5) {
        usage("--nodes must be 3 or 5");
      }
    } else if (arg == "--faults") {
      a.faults = value("--faults");
    } else if (arg == "--chaos-ms") {
      a.chaos_ms = static_cast<std::int64_t>(number(value("--chaos-ms"), "--chaos-ms"));
    } else {
      usage(("unknown argument " + std::string(arg)).c_str());
    }
  }
  if (a.seeds == 0 && a.one_seed == 0 && a.determinism == 0) {
    usage("give --seeds, --seed or --determinism");
  }
  return a;
}

SimulationOptions options_for(const Args& a, std::uint64_t seed) {
  SimulationOptions o;
  o.seed = seed;
  o.nodes = a.nodes;
  if (a.chaos_ms > 0) {
    o.chaos = std::chrono::milliseconds(a.chaos_ms);
  }
  if (!a.faults.empty()) {
    o.allowed_faults = 0;
    std::size_t begin = 0;
    while (begin <= a.faults.size()) {
      const std::size_t end = std::min(a.faults.find(',', begin), a.faults.size());
      const std::string name = a.faults.substr(begin, end - begin);
      bool known = false;
      for (std::size_t f = 0; f < kFaultClasses; ++f) {
        std::string fault = to_string(static_cast<FaultClass>(f));
        std::replace(fault.begin(), fault.end(), ' ', '_');
        std::replace(fault.begin(), fault.end(), '/', '_');
        if (fault == name) {
          o.allowed_faults |= 1u << f;
          known = true;
        }
      }
      if (!known) {
        usage(("unknown fault class " + name).c_str());
      }
      begin = end + 1;
    }
  }
  if (a.bug.empty()) {
    return o;
  }
  if (a.bug == "lease_anchor_at_receive") {
    o.planted_bugs = static_cast<std::uint32_t>(PlantedBug::lease_anchor_at_receive);
  } else if (a.bug == "no_lease_revoke_before_transfer") {
    o.planted_bugs = static_cast<std::uint32_t>(PlantedBug::no_lease_revoke_before_transfer);
  } else if (a.bug == "ack_before_durable") {
    o.planted_bugs = static_cast<std::uint32_t>(PlantedBug::ack_before_durable);
  } else if (a.bug == "commit_previous_term_by_counting") {
    o.planted_bugs = static_cast<std::uint32_t>(PlantedBug::commit_previous_term_by_counting);
  } else if (a.bug == "forget_leader_contact_on_term_bump") {
    o.planted_bugs = static_cast<std::uint32_t>(PlantedBug::forget_leader_contact_on_term_bump);
  } else if (a.bug == "campaign_before_durable") {
    o.planted_bugs = static_cast<std::uint32_t>(PlantedBug::campaign_before_durable);
  } else if (a.bug == "compact_before_snapshot_durable") {
    o.planted_bugs = static_cast<std::uint32_t>(PlantedBug::compact_before_snapshot_durable);
  } else if (a.bug == "joint_quorum_counts_only_incoming") {
    o.planted_bugs = static_cast<std::uint32_t>(PlantedBug::joint_quorum_counts_only_incoming);
  } else if (a.bug == "vote_before_durable") {
    o.planted_bugs = static_cast<std::uint32_t>(PlantedBug::vote_before_durable);
  } else if (a.bug == "truncate_matching_entries") {
    o.planted_bugs = static_cast<std::uint32_t>(PlantedBug::truncate_matching_entries);
  } else if (a.bug == "read_index_without_round") {
    o.planted_bugs = static_cast<std::uint32_t>(PlantedBug::read_index_without_round);
  } else if (a.bug == "read_index_before_term_commit") {
    o.planted_bugs = static_cast<std::uint32_t>(PlantedBug::read_index_before_term_commit);
  } else if (a.bug == "excessive_clock_drift") {
    o.excessive_drift = true;
  } else {
    usage(("unknown bug " + a.bug).c_str());
  }
  return o;
}

std::string replay_command(const Args& a, std::uint64_t seed) {
  std::string c = "tenure-sim --seed " + std::to_string(seed);
  if (!a.bug.empty()) {
    c += " --bug " + a.bug;
  }
  if (a.nodes != 0) {
    c += " --nodes " + std::to_string(a.nodes);
  }
  if (a.chaos_ms != 0) {
    c += " --chaos-ms " + std::to_string(a.chaos_ms);
  }
  if (!a.faults.empty()) {
    c += " --faults " + a.faults;
  }
  return c + " --trace";
}

int run_one(const Args& a) {
  SimulationOptions o = options_for(a, a.one_seed);
  if (a.trace) {
    o.trace = &std::cout;
  }
  const SimulationReport r = run_simulation(o);
  std::printf(
      "seed %llu: %s, %zu nodes on %s%s, %llu operations (%llu ok, %llu failed, %llu ambiguous), "
      "%llu lease reads (%llu from memory), max term %llu, liveness %.1f ms, %llu torn syncs, "
      "%llu corruptions detected, %llu snapshots taken, %llu installed, trace %016llx\n",
      static_cast<unsigned long long>(r.seed), r.ok ? "passed" : "FAILED", r.nodes,
      r.file_storage ? "FileStorage" : "MemoryStorage", r.pre_vote ? "" : " without PreVote",
      static_cast<unsigned long long>(r.operations),
      static_cast<unsigned long long>(r.ok_operations),
      static_cast<unsigned long long>(r.failed_operations),
      static_cast<unsigned long long>(r.ambiguous_operations),
      static_cast<unsigned long long>(r.lease_reads),
      static_cast<unsigned long long>(r.lease_fast_path),
      static_cast<unsigned long long>(r.max_term), static_cast<double>(r.liveness_ns) / 1e6,
      static_cast<unsigned long long>(r.torn_syncs),
      static_cast<unsigned long long>(r.corruptions_detected),
      static_cast<unsigned long long>(r.snapshots_taken),
      static_cast<unsigned long long>(r.snapshots_installed),
      static_cast<unsigned long long>(r.trace_hash));
  if (!r.ok) {
    std::printf("  %s\n", r.failure.c_str());
  }
  return (r.ok != a.expect_failure) ? 0 : 1;
}

int run_many(const Args& a) {
  const unsigned jobs = a.jobs != 0 ? a.jobs : std::max(1u, std::thread::hardware_concurrency());
  std::atomic<std::uint64_t> next{a.start};
  const std::uint64_t end = a.start + a.seeds;
  std::mutex mutex;
  std::uint64_t done = 0;
  std::uint64_t failures = 0;
  std::uint64_t first_failure = 0;
  std::array<std::uint64_t, kFaultClasses> fired{};
  std::uint64_t operations = 0;
  std::uint64_t file_runs = 0, torn_syncs = 0, corruptions = 0;
  std::uint64_t snapshot_runs = 0, snapshots_taken = 0, snapshots_installed = 0;
  const auto started = std::chrono::steady_clock::now();
  const bool stop_at_first = a.expect_failure;
  std::atomic<bool> stop{false};
  auto worker = [&] {
    for (;;) {
      const std::uint64_t seed = next.fetch_add(1);
      if (seed >= end || stop.load()) {
        return;
      }
      const SimulationReport r = run_simulation(options_for(a, seed));
      std::lock_guard lock(mutex);
      ++done;
      operations += r.operations;
      file_runs += r.file_storage ? 1 : 0;
      torn_syncs += r.torn_syncs;
      corruptions += r.corruptions_detected;
      snapshot_runs += r.snapshots ? 1 : 0;
      snapshots_taken += r.snapshots_taken;
      snapshots_installed += r.snapshots_installed;
      for (std::size_t f = 0; f < kFaultClasses; ++f) {
        fired[f] += r.faults[f] ? 1 : 0;
      }
      if (!r.ok) {
        ++failures;
        if (first_failure == 0 || seed < first_failure) {
          first_failure = seed;
        }
        std::printf("seed %llu FAILED: %s\n  replay: %s\n", static_cast<unsigned long long>(seed),
                    r.failure.c_str(), replay_command(a, seed).c_str());
        if (stop_at_first) {
          stop = true;
        }
      }
      if (done % 100 == 0) {
        const double s =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        std::printf("  %llu/%llu seeds, %llu failed, %.1f s\n",
                    static_cast<unsigned long long>(done), static_cast<unsigned long long>(a.seeds),
                    static_cast<unsigned long long>(failures), s);
      }
      std::fflush(stdout);
    }
  };
  std::vector<std::thread> threads;
  for (unsigned j = 0; j < jobs; ++j) {
    threads.emplace_back(worker);
  }
  for (auto& t : threads) {
    t.join();
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::printf("%llu seeds (%llu..%llu) in %.1f s on %u threads: %llu failed, %llu operations\n",
              static_cast<unsigned long long>(done), static_cast<unsigned long long>(a.start),
              static_cast<unsigned long long>(end - 1), seconds, jobs,
              static_cast<unsigned long long>(failures),
              static_cast<unsigned long long>(operations));
  if (!a.expect_failure) {
    std::printf(
        "%llu runs on FileStorage over a simulated disk: %llu torn syncs recovered, %llu "
        "corrupted disks refused at recovery\n",
        static_cast<unsigned long long>(file_runs), static_cast<unsigned long long>(torn_syncs),
        static_cast<unsigned long long>(corruptions));
    std::printf(
        "%llu runs with snapshots: %llu taken and %llu installed by the nodes up at the end\n",
        static_cast<unsigned long long>(snapshot_runs),
        static_cast<unsigned long long>(snapshots_taken),
        static_cast<unsigned long long>(snapshots_installed));
    std::printf("fault classes (seeds in which each fired):\n");
    for (std::size_t f = 0; f < kFaultClasses; ++f) {
      std::printf(
          "  %-22s %5.1f %%\n", to_string(static_cast<FaultClass>(f)),
          done == 0 ? 0.0 : 100.0 * static_cast<double>(fired[f]) / static_cast<double>(done));
    }
  }
  if (a.expect_failure) {
    if (failures == 0) {
      std::printf("planted bug %s was NOT caught in %llu seeds\n", a.bug.c_str(),
                  static_cast<unsigned long long>(done));
      return 1;
    }
    std::printf("planted bug %s caught (first at seed %llu)\n", a.bug.c_str(),
                static_cast<unsigned long long>(first_failure));
    return 0;
  }
  return failures == 0 ? 0 : 1;
}

int run_determinism(const Args& a) {
  int bad = 0;
  for (std::uint64_t seed = a.start; seed < a.start + a.determinism; ++seed) {
    const auto first = run_simulation(options_for(a, seed));
    const auto second = run_simulation(options_for(a, seed));
    if (first.trace_hash != second.trace_hash || first.operations != second.operations) {
      std::printf("seed %llu is not deterministic: trace %016llx vs %016llx\n",
                  static_cast<unsigned long long>(seed),
                  static_cast<unsigned long long>(first.trace_hash),
                  static_cast<unsigned long long>(second.trace_hash));
      ++bad;
    }
  }
  std::printf("determinism: %llu seeds run twice, %d differed\n",
              static_cast<unsigned long long>(a.determinism), bad);
  return bad == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  if (a.determinism != 0) {
    return run_determinism(a);
  }
  if (a.one_seed != 0) {
    return run_one(a);
  }
  return run_many(a);
}
