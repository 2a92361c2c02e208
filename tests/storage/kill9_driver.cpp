// The kill -9 test of FileStorage on a real disk (CTest storage.kill9): runs tenure_kill_writer
// over and over on one directory, kills it with SIGKILL at a random moment, and recovers the
// directory in this process to check that no acknowledged write was lost:
//
// - recovery succeeds (a torn tail is cut off; nothing is reported corrupt);
// - the log is contiguous from index 1 and every entry carries the payload its index and term
//   imply (kill9_log.hpp), terms never decreasing;
// - every entry the writer acknowledged is there, in the term it was written in, and the hard
//   state is at least the last one acknowledged;
// - whatever an earlier recovery found stays (it was durable: the next writer built on it), and
//   the next writer's own recovery finds exactly what this one did.
//
//     tenure_kill9_driver --writer <tenure_kill_writer> [--iterations 30] [--seconds 20]
//                         [--seed N] [--segment-bytes 262144]
//
// The seed (--seed, else TENURE_SEED, else random) picks the kill moments and the writer's batch
// sizes; the disk's timing is not reproducible, so a replay repeats the schedule, not the exact
// interleaving. The scratch directory is removed after a pass and kept after a failure.
#include "kill9_log.hpp"

#include <raft/file_storage.hpp>
#include <raft/file_system.hpp>
#include <raft/storage.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

namespace {

using tenure::kill9::LogIndex;
using tenure::kill9::Term;
using tenure::raft::FileStorage;
using tenure::raft::HardState;
using tenure::raft::PosixFileSystem;
using Clock = std::chrono::steady_clock;

struct Settings {
  std::string writer;
  int iterations = 30;
  int seconds = 20;
  std::uint64_t seed = 0;
  std::uint64_t segment_bytes = 256 * 1024;
};

// What one writer said before it died.
struct Report {
  bool started = false;
  LogIndex start_first = 0;
  LogIndex start_last = 0;
  Term term = 0;
  LogIndex acked = 0;  // highest acknowledged index (0: no ack)
  bool acked_any = false;
  HardState acked_hard_state;
  std::size_t acks = 0;
};

// What this process knows must be on disk: the terms of every entry some recovery has found.
struct Expected {
  std::vector<Term> terms;  // terms[i - 1] is entry i's
  HardState hard_state;
};

[[noreturn]] void usage(const char* program) {
  std::fprintf(stderr,
               "usage: %s --writer <tenure_kill_writer> [--iterations N] [--seconds S] [--seed N] "
               "[--segment-bytes B]\n",
               program);
  std::exit(2);
}

Settings parse(int argc, char** argv) {
  Settings s;
  std::optional<std::uint64_t> seed;
  if (const char* env = std::getenv("TENURE_SEED"); env != nullptr && *env != '\0') {
    seed = std::strtoull(env, nullptr, 0);
  }
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (i + 1 >= argc) {
      usage(argv[0]);
    }
    const char* value = argv[++i];
    if (arg == "--writer") {
      s.writer = value;
    } else if (arg == "--iterations") {
      s.iterations = std::atoi(value);
    } else if (arg == "--seconds") {
      s.seconds = std::atoi(value);
    } else if (arg == "--seed") {
      seed = std::strtoull(value, nullptr, 0);
    } else if (arg == "--segment-bytes") {
      s.segment_bytes = std::strtoull(value, nullptr, 0);
    } else {
      usage(argv[0]);
    }
  }
  if (s.writer.empty() || s.iterations <= 0 || s.seconds <= 0 || s.segment_bytes == 0) {
    usage(argv[0]);
  }
  s.seed = seed ? *seed : (std::uint64_t{std::random_device{}()} << 32 | std::random_device{}());
  return s;
}

std::string replay(const char* program, const Settings& s) {
  std::ostringstream out;
  out << program << " --writer " << s.writer << " --iterations " << s.iterations << " --seconds "
      << s.seconds << " --segment-bytes " << s.segment_bytes << " --seed " << s.seed;
  return out.str();
}

// Parses one line of the writer's output into `r`; false when it is not a line it writes.
bool take_line(const std::string& line, Report& r) {
  unsigned long long a = 0;
  unsigned long long b = 0;
  unsigned long long c = 0;
  if (std::sscanf(line.c_str(), "start %llu %llu %llu", &a, &b, &c) == 3) {
    r.started = true;
    r.start_first = a;
    r.start_last = b;
    r.term = c;
    return true;
  }
  if (std::sscanf(line.c_str(), "ack %llu %llu %llu", &a, &b, &c) == 3) {
    r.acked = a;
    r.acked_any = true;
    r.acked_hard_state = HardState{b, 1, c};
    ++r.acks;
    return true;
  }
  return false;
}

// Starts the writer with its stdout on a pipe; returns its pid and the pipe's read end.
pid_t spawn(const Settings& s, const std::string& directory, std::uint64_t seed, int& out) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    std::perror("kill9: pipe2");
    std::exit(1);
  }
  const std::string seed_arg = std::to_string(seed);
  const std::string segment_arg = std::to_string(s.segment_bytes);
  // A writer outliving a crashed driver stops by itself well after the driver's budget.
  const std::string seconds_arg = std::to_string(s.seconds + 60);
  const pid_t pid = ::fork();
  if (pid < 0) {
    std::perror("kill9: fork");
    std::exit(1);
  }
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    ::dup2(fds[1], STDOUT_FILENO);  // dup2 clears O_CLOEXEC on the copy
    const char* args[] = {s.writer.c_str(),    directory.c_str(),   seed_arg.c_str(),
                          segment_arg.c_str(), seconds_arg.c_str(), nullptr};
    ::execv(s.writer.c_str(), const_cast<char* const*>(args));
    std::fprintf(stderr, "kill9: cannot run %s: %s\n", s.writer.c_str(), std::strerror(errno));
    ::_exit(127);
  }
  ::close(fds[1]);
  out = fds[0];
  return pid;
}

// Reads whole lines from `fd` into `r` until `deadline`, end of file (returns false), or, with
// `until_started`, the writer's start line.
bool read_until(int fd, Clock::time_point deadline, std::string& buffer, Report& r,
                bool until_started = false) {
  for (;;) {
    const auto now = Clock::now();
    if (now >= deadline || (until_started && r.started)) {
      return true;
    }
    // At most a second per poll: `deadline` may be time_point::max().
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - now).count();
    pollfd p{fd, POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(std::min<long long>(left, 1000)));
    if (ready <= 0) {
      continue;  // EINTR or a timeout: the loop checks the deadline
    }
    char chunk[4096];
    const ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return false;
    }
    buffer.append(chunk, static_cast<std::size_t>(n));
    for (std::size_t end; (end = buffer.find('\n')) != std::string::npos;) {
      if (!take_line(buffer.substr(0, end), r)) {
        std::fprintf(stderr, "kill9: unexpected output from the writer: %s\n",
                     buffer.substr(0, end).c_str());
      }
      buffer.erase(0, end + 1);
    }
  }
}

// When the kill comes: one time in eight within 20 ms of the start (exec, recovery, the
// truncation and syncs that end it); otherwise up to 300 ms after the writer reported
// that it had recovered and started appending, however long its recovery of a growing log takes.
struct KillPlan {
  bool during_startup = false;
  std::chrono::milliseconds delay{0};
};

KillPlan kill_plan(std::mt19937_64& rng) {
  if (rng() % 8 == 0) {
    return {true, std::chrono::milliseconds(rng() % 20)};
  }
  return {false, std::chrono::milliseconds(rng() % 300)};
}

// Recovers the directory here and checks it against what the writer acknowledged and what
// earlier iterations saw. Returns a description of the first problem, or an empty string.
std::string check_recovery(const Settings& s, const std::string& directory, const Report& r,
                           Expected& expected, std::string& summary) {
  PosixFileSystem fs;
  try {
    FileStorage<PosixFileSystem> storage(
        tenure::kill9::options(directory, s.segment_bytes, /*background_sync=*/false), fs);
    if (std::string problem = tenure::kill9::check_log(storage); !problem.empty()) {
      return problem;
    }
    const LogIndex last = storage.last_index();
    if (r.started && r.start_first != 1) {
      return "the writer recovered a log starting at " + std::to_string(r.start_first);
    }
    if (r.started && r.start_last != expected.terms.size()) {
      return "the writer recovered last index " + std::to_string(r.start_last) +
             " where the previous recovery found " + std::to_string(expected.terms.size());
    }
    if (last < expected.terms.size()) {
      return "last index " + std::to_string(last) + " is below " +
             std::to_string(expected.terms.size()) + ", which an earlier recovery found";
    }
    for (LogIndex i = 1; i <= expected.terms.size(); ++i) {
      if (storage.term_at(i).value() != expected.terms[i - 1]) {
        return "entry " + std::to_string(i) + " changed term since an earlier recovery";
      }
    }
    if (r.acked_any) {
      if (last < r.acked) {
        return "acknowledged index " + std::to_string(r.acked) + " lost: last index is " +
               std::to_string(last);
      }
      for (LogIndex i = r.start_last + 1; i <= r.acked; ++i) {
        if (storage.term_at(i).value() != r.term) {
          return "acknowledged entry " + std::to_string(i) + " is not the one written in term " +
                 std::to_string(r.term);
        }
      }
    }
    const HardState hs = storage.hard_state();
    for (const HardState& floor : {expected.hard_state, r.acked_hard_state}) {
      if (hs.term < floor.term || (hs.term == floor.term && hs.commit < floor.commit)) {
        return "hard state {" + std::to_string(hs.term) + ", " + std::to_string(hs.commit) +
               "} is older than the durable {" + std::to_string(floor.term) + ", " +
               std::to_string(floor.commit) + "}";
      }
    }
    expected.terms.resize(last);
    for (LogIndex i = 1; i <= last; ++i) {
      expected.terms[i - 1] = storage.term_at(i).value();
    }
    expected.hard_state = hs;
    summary = "recovered " + std::to_string(last) + " entries in " +
              std::to_string(storage.recovery().segments) + " segments, torn tail " +
              std::to_string(storage.recovery().torn_bytes) + " bytes";
    return {};
  } catch (const std::system_error& e) {
    return std::string("recovery threw: ") + e.what();
  }
}

}  // namespace

int main(int argc, char** argv) {
  const Settings s = parse(argc, argv);
  std::printf("kill9: seed %llu; replay: %s\n", static_cast<unsigned long long>(s.seed),
              replay(argv[0], s).c_str());

  char pattern[] = "/tmp/tenure-kill9-XXXXXX";
  if (::mkdtemp(pattern) == nullptr) {
    std::perror("kill9: mkdtemp");
    return 1;
  }
  const std::string directory = std::string(pattern) + "/log";

  std::mt19937_64 rng(s.seed);
  Expected expected;
  const auto start = Clock::now();
  const auto budget = std::chrono::seconds(s.seconds);
  std::size_t total_acks = 0;
  int done = 0;
  for (; done < s.iterations && Clock::now() - start < budget; ++done) {
    int out = -1;
    const pid_t pid = spawn(s, directory, rng(), out);
    const KillPlan plan = kill_plan(rng);
    Report report;
    std::string buffer;
    bool open = true;
    if (!plan.during_startup) {
      open = read_until(out, Clock::now() + std::chrono::seconds(30), buffer, report, true);
    }
    if (open) {
      open = read_until(out, Clock::now() + plan.delay, buffer, report);
    }
    ::kill(pid, SIGKILL);
    if (open) {
      // Lines the writer wrote before it died are in the pipe: each is an acknowledgement.
      read_until(out, Clock::time_point::max(), buffer, report);
    }
    ::close(out);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    std::string problem;
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL) {
      problem = "the writer did not die of SIGKILL but " +
                (WIFEXITED(status) ? "exited with status " + std::to_string(WEXITSTATUS(status))
                                   : "died of signal " + std::to_string(WTERMSIG(status)));
    }
    std::string summary;
    if (problem.empty()) {
      problem = check_recovery(s, directory, report, expected, summary);
    }
    total_acks += report.acks;
    std::printf("kill9: #%d killed %lld ms after %s: %s, acked through %llu (%zu acks); %s\n", done,
                static_cast<long long>(plan.delay.count()),
                plan.during_startup ? "spawning" : "starting",
                report.started ? "appending" : "still recovering",
                static_cast<unsigned long long>(report.acked), report.acks,
                problem.empty() ? summary.c_str() : "FAILED");
    std::fflush(stdout);
    if (!problem.empty()) {
      std::fprintf(stderr,
                   "kill9: FAILED at iteration %d: %s\n  directory kept: %s\n  replay: %s\n", done,
                   problem.c_str(), directory.c_str(), replay(argv[0], s).c_str());
      return 1;
    }
  }
  const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
  std::printf("kill9: passed %d kills in %lld ms: %zu entries, %zu acknowledgements, none lost\n",
              done, static_cast<long long>(elapsed.count()), expected.terms.size(), total_acks);
  std::error_code ec;
  std::filesystem::remove_all(pattern, ec);
  if (done < 2) {
    std::fprintf(stderr, "kill9: only %d iterations ran within the time budget\n", done);
    return 1;
  }
  return 0;
}
