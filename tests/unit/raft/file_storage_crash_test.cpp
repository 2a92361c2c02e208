// FileStorage crash-state enumeration, in the manner of ALICE (Pillai et al., "All File Systems
// Are Not Created Equal", OSDI 2014): run a workload over SimFileSystem, stop the process at every
// persistence point, and for every state the disk may be left in (each prefix of the unsynced
// bytes, cut at sector boundaries, with or without the file's size persisted, and each prefix of
// the unsynced directory operations) recover and check what came back against what was written
// and acknowledged. Also bit flips in a synced log, and fsync failures.
//
// SimFileSystem cannot be copied, so each crash state replays the workload into a fresh one: the
// workloads are deterministic, and small enough that the whole file runs in a few seconds.
#include <raft/detail/wal_format.hpp>
#include <raft/file_storage.hpp>
#include <raft/testing/sim_file_system.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <system_error>
#include <vector>

using tenure::raft::crc32c;
using tenure::raft::EntryType;
using tenure::raft::EntryView;
using tenure::raft::errc;
using tenure::raft::FileStorage;
using tenure::raft::FileStorageOptions;
using tenure::raft::FileSystem;
using tenure::raft::HardState;
using tenure::raft::LogIndex;
using tenure::raft::NodeId;
using tenure::raft::Term;
using tenure::raft::WriteSeq;
using tenure::raft::testing::CrashPlan;
using tenure::raft::testing::SimFileSystem;
namespace wal = tenure::raft::detail::wal;

namespace {

constexpr std::size_t kNever = std::numeric_limits<std::size_t>::max();
const std::string kDirectory = "/data";

FileStorageOptions options(std::uint64_t segment_bytes) {
  FileStorageOptions o;
  o.directory = kDirectory;
  o.segment_bytes = segment_bytes;
  o.background_sync = false;  // writes reach the disk only inside sync_now()
  return o;
}

// Deterministic, incompressible bytes: no payload looks like a record by accident.
std::vector<std::byte> noise(std::uint64_t seed, std::size_t size) {
  std::vector<std::byte> out(size);
  std::uint64_t x = seed * 0x9e3779b97f4a7c15ull + 0x2545f4914f6cdd1dull;
  for (std::byte& b : out) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    b = static_cast<std::byte>(x >> 24);
  }
  return out;
}

// --- the process under test ----------------------------------------------------------------------

/// The file system as one process sees it: SimFileSystem's calls, until the process dies at a
/// chosen barrier (the n-th fsync of a file or directory, counted from 0: that fsync never
/// happens) or is killed between two calls. A dead process's calls fail with EIO and change
/// nothing, so destroying its FileStorage (whose destructor syncs what is pending) cannot write
/// past the moment it died.
class ProcessFs {
 public:
  using handle = SimFileSystem::handle;

  ProcessFs(SimFileSystem& disk, std::size_t die_at_barrier)
      : disk_(disk), die_at_(die_at_barrier) {}

  std::error_code open_append(const std::string& path, handle& h) {
    return dead_ ? eio() : disk_.open_append(path, h);
  }
  std::error_code append(handle h, std::span<const std::byte> data) {
    return dead_ ? eio() : disk_.append(h, data);
  }
  std::error_code sync(handle h) { return barrier() ? eio() : disk_.sync(h); }
  std::error_code truncate(handle h, std::uint64_t size) {
    return dead_ ? eio() : disk_.truncate(h, size);
  }
  void close(handle h) {
    if (!dead_) {
      disk_.close(h);
    }
  }
  std::error_code read_all(const std::string& path, std::vector<std::byte>& bytes) {
    return dead_ ? eio() : disk_.read_all(path, bytes);
  }
  std::error_code read_at(const std::string& path, std::uint64_t offset, std::span<std::byte> out,
                          std::size_t& n) {
    n = 0;
    return dead_ ? eio() : disk_.read_at(path, offset, out, n);
  }
  std::error_code list(const std::string& dir, std::vector<std::string>& names) {
    return dead_ ? eio() : disk_.list(dir, names);
  }
  std::error_code rename(const std::string& from, const std::string& to) {
    return dead_ ? eio() : disk_.rename(from, to);
  }
  std::error_code remove(const std::string& path) { return dead_ ? eio() : disk_.remove(path); }
  std::error_code sync_dir(const std::string& dir) {
    return barrier() ? eio() : disk_.sync_dir(dir);
  }
  std::error_code make_dir(const std::string& dir) { return dead_ ? eio() : disk_.make_dir(dir); }

  void kill() noexcept { dead_ = true; }
  /// Dies at the barrier `n` barriers from now.
  void die_in(std::size_t n) noexcept { die_at_ = barriers_ + n; }
  bool dead() const noexcept { return dead_; }
  /// Whether the process dies at its next barrier (which therefore never reaches the disk).
  bool dies_at_next_barrier() const noexcept { return !dead_ && barriers_ == die_at_; }
  std::size_t barriers() const noexcept { return barriers_; }
  SimFileSystem& disk() noexcept { return disk_; }

 private:
  static std::error_code eio() { return {EIO, std::generic_category()}; }

  bool barrier() {
    if (!dead_ && barriers_++ == die_at_) {
      dead_ = true;
    }
    return dead_;
  }

  SimFileSystem& disk_;
  std::size_t die_at_;
  std::size_t barriers_ = 0;
  bool dead_ = false;
};

static_assert(FileSystem<ProcessFs>);

// --- what was written: the model -----------------------------------------------------------------

struct Written {
  Term term = 0;
  EntryType type = EntryType::normal;
  std::vector<std::byte> payload;

  friend bool operator==(const Written&, const Written&) = default;
};

/// The log and hard state as the workload left them after some number of records. Compacted
/// entries stay in `log` (an entry's content never changes); `first` says where the log starts.
struct ModelState {
  LogIndex first = 1;
  std::vector<std::size_t> log;  // log[i - 1]: entry i, an index into History::entries
  HardState hard_state;

  LogIndex last() const noexcept { return log.size(); }
};

struct SnapshotImage {
  LogIndex index = 0;
  Term term = 0;
  std::vector<std::byte> data;

  friend bool operator==(const SnapshotImage&, const SnapshotImage&) = default;
};

/// Everything a workload wrote, record by record, and how much of it was acknowledged.
struct History {
  std::vector<Written> entries;
  std::vector<ModelState> states{ModelState{}};  // states[n]: after the first n records
  std::map<WriteSeq, std::size_t> state_of_seq{{0, 0}};
  std::size_t acked = 0;  // states[acked]: what the newest durable_seq() covers
  std::vector<SnapshotImage> snapshots;
  LogIndex acked_snapshot = 0;  // the newest snapshot save_snapshot() reported saved

  const ModelState& now() const { return states.back(); }
};

/// Thrown to end a workload at its crash point.
struct Stop {};

/// Where the process dies: before its `steps`-th workload step, or at its `barrier`-th fsync.
struct CrashPoint {
  std::size_t steps = kNever;
  std::size_t barrier = kNever;
};

/// One run of a workload: a process with a FileStorage over a ProcessFs, recording every write
/// into a History. A step is one call below; the process stops (throws Stop) at its crash point.
class Node {
 public:
  Node(SimFileSystem& disk, const FileStorageOptions& o, CrashPoint at, History& history)
      : fs_(disk, at.barrier), stop_before_(at.steps), history_(history), storage_(o, fs_) {}
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;
  // A crashed process runs no more code: its storage's destructor finds the file system gone.
  ~Node() { fs_.kill(); }

  void append(Term term, std::initializer_list<std::size_t> sizes,
              EntryType type = EntryType::normal) {
    std::vector<std::vector<std::byte>> payloads;
    for (const std::size_t size : sizes) {
      payloads.push_back(noise(history_.entries.size() + payloads.size() + 1, size));
    }
    append_payloads(term, std::move(payloads), type);
  }

  void append_payloads(Term term, std::vector<std::vector<std::byte>> payloads,
                       EntryType type = EntryType::normal) {
    step();
    const std::size_t first_id = history_.entries.size();
    for (auto& p : payloads) {
      history_.entries.push_back(Written{term, type, std::move(p)});
    }
    std::vector<EntryView> views;
    for (std::size_t i = first_id; i < history_.entries.size(); ++i) {
      views.push_back(EntryView{term, storage_.last_index() + 1 + (i - first_id), type,
                                history_.entries[i].payload});
    }
    const WriteSeq seq = storage_.append(views);
    ModelState s = history_.now();
    for (std::size_t i = first_id; i < history_.entries.size(); ++i) {
      s.log.push_back(i);
      history_.states.push_back(s);  // one record per entry
    }
    history_.state_of_seq[seq] = history_.states.size() - 1;
  }

  void hard_state(Term term, NodeId vote, LogIndex commit) {
    step();
    const HardState hs{term, vote, commit};
    const WriteSeq seq = storage_.save_hard_state(hs);
    ModelState s = history_.now();
    s.hard_state = hs;
    record(std::move(s), seq);
  }

  void truncate(LogIndex from) {
    step();
    const WriteSeq seq = storage_.truncate_suffix(from);
    ModelState s = history_.now();
    s.log.resize(std::min<std::size_t>(s.log.size(), from - 1));
    record(std::move(s), seq);
  }

  void compact(LogIndex through) {
    step();
    ModelState s = history_.now();
    storage_.compact(through);
    if (through >= s.first) {  // the live log now starts after `through`
      s.first = std::min<LogIndex>(through, s.last()) + 1;
      history_.states.push_back(std::move(s));
    }
  }

  void sync() {
    step();
    const std::error_code ec = storage_.sync_now();
    note_durable();
    if (fs_.dead()) {
      throw Stop{};
    }
    REQUIRE_MESSAGE(!ec, "sync_now: " << ec.message());
    REQUIRE(storage_.durable_seq() == history_.state_of_seq.rbegin()->first);  // all of it
  }

  /// A sync whose fdatasync fails with EIO (injected here when `inject`): fail-stop.
  void failing_sync(bool inject) {
    step();
    const WriteSeq before = storage_.durable_seq();
    if (inject && !fs_.dies_at_next_barrier()) {  // a fault for an fsync that is never issued
      fs_.disk().fail_next_sync();                // would hit the next process instead
    }
    const std::error_code ec = storage_.sync_now();
    note_durable();
    if (fs_.dead()) {
      throw Stop{};
    }
    REQUIRE(ec);
    CHECK(storage_.error());
    CHECK(storage_.durable_seq() == before);
  }

  void snapshot(LogIndex index, std::size_t size) {
    step();
    const Term term = history_.entries[history_.now().log.at(index - 1)].term;
    history_.snapshots.push_back(
        SnapshotImage{index, term, noise(1000000 + history_.snapshots.size(), size)});
    const std::error_code ec = storage_.save_snapshot(index, term, history_.snapshots.back().data);
    record(history_.now(), storage_.last_seq());  // the snapshot is a write of its own
    note_durable();
    if (!ec) {
      history_.acked_snapshot = index;  // reported saved, even if the process dies right after
    }
    if (fs_.dead()) {
      throw Stop{};
    }
    REQUIRE_MESSAGE(!ec, "save_snapshot: " << ec.message());
  }

  std::size_t steps() const noexcept { return steps_; }
  std::size_t barriers() const noexcept { return fs_.barriers(); }
  ProcessFs& fs() noexcept { return fs_; }
  FileStorage<ProcessFs>& storage() noexcept { return storage_; }

 private:
  void step() {
    if (steps_ == stop_before_) {
      throw Stop{};
    }
    ++steps_;
  }

  void record(ModelState s, WriteSeq seq) {
    history_.states.push_back(std::move(s));
    history_.state_of_seq[seq] = history_.states.size() - 1;
  }

  void note_durable() { history_.acked = history_.state_of_seq.at(storage_.durable_seq()); }

  ProcessFs fs_;
  std::size_t stop_before_;
  std::size_t steps_ = 0;
  History& history_;
  FileStorage<ProcessFs> storage_;  // last: destroyed first, after ~Node() killed the process
};

struct Workload {
  const char* name;
  std::uint64_t segment_bytes;
  void (*body)(Node&);
};

struct RunResult {
  std::size_t steps = 0;
  std::size_t barriers = 0;
  bool stopped = false;
};

RunResult run(const Workload& w, SimFileSystem& disk, CrashPoint at, History& history) {
  Node node(disk, options(w.segment_bytes), at, history);
  try {
    w.body(node);
  } catch (const Stop&) {
    return {node.steps(), node.barriers(), true};
  }
  return {node.steps(), node.barriers(), false};
}

// --- the workloads -------------------------------------------------------------------------------

// Appends of 0 B to 4 KB payloads, batches of one to six records, several writes per batch and a
// batch holding only a hard state; 4 KiB segments, so batches rotate segments (a new file, an
// fsync of the directory).
void appends(Node& n) {
  n.hard_state(1, 1, 0);
  n.append(1, {0, 17, 100});
  n.sync();
  n.append(1, {3000});
  n.sync();
  n.append(1, {512, 1, 2000, 40});
  n.hard_state(1, 1, 5);
  n.sync();
  n.append(1, {4000, 8});
  n.sync();
  n.hard_state(2, 2, 8);
  n.append(2, {0}, EntryType::noop);
  n.append(2, {0, 3, 64, 65, 700}, EntryType::config);
  n.sync();
  n.append(2, {2500});
  n.append(2, {1200, 900});
  n.sync();
  n.append(2, {4095, 4096, 4097});  // 12 KiB in one batch: many sectors, three pages
  n.hard_state(2, 2, 16);
  n.sync();
  n.append(2, {511, 513, 1023, 1025});
  n.sync();
  n.hard_state(2, 2, 23);
  n.sync();  // a batch holding only a hard state
  n.hard_state(3, 3, 23);
  for (std::size_t round = 0; round < 8; ++round) {
    n.append(3, {300 * round + 5, 2900 - 250 * round, 17 * round, 1500});
    n.hard_state(3, 3, 23 + 4 * round);
    n.sync();
  }
}

// A new leader overwrites an uncommitted suffix (Raft section 5.3), more than once, including
// entries of the same unsynced batch and entries synced in an earlier segment.
void truncations(Node& n) {
  n.hard_state(1, 1, 0);
  n.append(1, {100, 200, 300, 50});  // 1..4
  n.sync();
  n.append(1, {700, 10, 600});  // 5..7
  n.hard_state(1, 1, 4);
  n.sync();
  n.hard_state(2, 2, 4);
  n.truncate(5);
  n.append(2, {0}, EntryType::noop);  // 5
  n.append(2, {1500, 20});            // 6..7
  n.sync();
  n.append(2, {300, 300});  // 8..9, truncated again before they are synced
  n.truncate(8);
  n.append(2, {900});  // 8
  n.hard_state(2, 2, 6);
  n.sync();
  n.hard_state(3, 3, 6);
  n.truncate(7);
  n.append(3, {0}, EntryType::noop);  // 7
  n.append(3, {2100, 5, 400});        // 8..10
  n.sync();
  n.truncate(10);  // synced in the previous batch
  n.append(3, {33});
  n.hard_state(3, 3, 9);
  n.sync();
  n.hard_state(4, 4, 9);
  n.truncate(10);
  n.append(4, {0}, EntryType::noop);  // 10
  n.append(4, {3000, 2500});          // 11..12
  n.hard_state(4, 4, 11);
  n.sync();
  // Rounds of leaders that each overwrite the previous one's last two entries.
  for (Term term = 5; term < 11; ++term) {
    n.hard_state(term, term, 10 + term - 5);
    n.truncate(n.storage().last_index() - 1);
    n.append(term, {0}, EntryType::noop);
    n.append(term, {1000 + 400 * (term % 3), 2100 - 300 * (term % 4), 8 * term});
    n.sync();
  }
}

// Compaction points, and snapshots that replace older ones and let older segments go.
void compactions(Node& n) {
  n.hard_state(1, 1, 0);
  n.append(1, {300, 300, 300, 300});  // 1..4
  n.hard_state(1, 1, 4);
  n.sync();
  n.compact(2);
  n.append(1, {800, 800});  // 5..6
  n.hard_state(1, 1, 6);
  n.sync();
  n.snapshot(4, 200);
  n.compact(4);
  n.append(1, {1000, 1000, 1000});  // 7..9
  n.hard_state(1, 1, 9);
  n.sync();
  n.hard_state(2, 2, 9);
  n.append(2, {0}, EntryType::noop);  // 10
  n.append(2, {600, 600});            // 11..12
  n.hard_state(2, 2, 12);
  n.sync();
  n.snapshot(9, 1500);
  n.compact(9);
  n.append(2, {100});  // 13
  n.sync();
  n.snapshot(12, 100);
  n.compact(11);
  n.append(2, {50, 50});  // 14..15
  n.hard_state(2, 2, 15);
  n.sync();
  n.append(2, {2000, 2000});  // 16..17
  n.hard_state(2, 2, 17);
  n.sync();
  n.snapshot(17, 5000);  // a snapshot file of several sectors
  n.compact(17);
  n.append(2, {10});  // 18
  n.sync();
  // Steady state: append, snapshot what is committed, compact behind it.
  for (std::size_t round = 0; round < 4; ++round) {
    n.append(2, {1700, 900 + 300 * round, 60});
    n.hard_state(2, 2, n.storage().last_index());
    n.sync();
    n.snapshot(n.storage().last_index() - 1, 700 + 900 * round);
    n.compact(n.storage().last_index() - 2);
  }
  n.append(2, {5});
  n.sync();
}

// A follower's uncommitted tail (5..10, term 1) is overwritten by a new leader (term 2), which
// commits 5..9; the follower then snapshots at 9: between the truncation point and the end of the
// overwritten tail, so the older segment holding the stale entries (its last entry, 10, is above
// the snapshot) stays, and with it every later one.
void snapshot_above_truncation(Node& n) {
  n.hard_state(1, 1, 0);
  n.append(1, {200, 200, 200, 200});  // 1..4
  n.hard_state(1, 1, 4);
  n.sync();
  n.append(1, {200, 200, 200, 200, 200, 200});  // 5..10: acknowledged, never committed
  n.sync();
  n.hard_state(2, 2, 4);
  n.truncate(5);
  n.append(2, {0}, EntryType::noop);  // 5
  n.append(2, {400, 400});            // 6..7: fill the segment, so 8.. start the next
  n.hard_state(2, 2, 7);
  n.sync();
  n.append(2, {200, 200});  // 8..9
  n.hard_state(2, 2, 9);
  n.sync();
  n.snapshot(9, 100);
  n.compact(9);
  n.append(2, {100});  // 10
  n.sync();
}

// An entry whose payload carries the image of a complete WAL batch (an entry record and its
// batch_end: a nested log, a shipped segment, or bytes a client chose), and more bytes after it.
void record_image_payload(Node& n) {
  n.append(1, {100});
  n.sync();
  std::vector<std::byte> payload;
  const std::vector<std::byte> inner = noise(77, 64);
  wal::append_entry(payload, EntryView{1, 7, EntryType::normal, inner});
  wal::append_words(payload, wal::RecordType::batch_end, {7});
  const std::vector<std::byte> tail = noise(78, 1900);
  payload.insert(payload.end(), tail.begin(), tail.end());
  n.append_payloads(1, {payload});
  n.sync();
}

// A failed fdatasync, then more writes that must never be written or synced.
void failed_sync(Node& n) {
  n.hard_state(1, 1, 0);
  n.append(1, {100, 600});
  n.sync();
  n.append(1, {1300, 40});
  n.hard_state(1, 1, 2);
  n.failing_sync(true);
  n.append(1, {70});
  n.failing_sync(false);
}

const Workload kAppends{"appends", 4096, appends};
const Workload kTruncations{"truncations", 2048, truncations};
const Workload kCompactions{"compactions", 2048, compactions};
const Workload kSnapshotAboveTruncation{"snapshot above truncation", 1024,
                                        snapshot_above_truncation};
const Workload kRecordImagePayload{"record image payload", 1 << 20, record_image_payload};
const Workload kFailedSync{"failed sync", 2048, failed_sync};

// --- what recovery found -------------------------------------------------------------------------

struct Recovered {
  LogIndex first = 0;
  LogIndex last = 0;
  Term term_before_first = 0;
  HardState hard_state;
  std::vector<Written> entries;  // first..last
  std::optional<SnapshotImage> snapshot;
  std::uint64_t torn_bytes = 0;
  std::string malformed;  // why the log is not well-formed; empty when it is

  bool same_state(const Recovered& o) const {
    return first == o.first && last == o.last && term_before_first == o.term_before_first &&
           hard_state == o.hard_state && entries == o.entries && snapshot == o.snapshot;
  }
};

std::string describe(const HardState& hs) {
  return "{term " + std::to_string(hs.term) + ", vote " + std::to_string(hs.vote) + ", commit " +
         std::to_string(hs.commit) + "}";
}

std::string describe(const Recovered& r) {
  std::string s = "log " + std::to_string(r.first) + ".." + std::to_string(r.last) +
                  " hard state " + describe(r.hard_state);
  if (r.snapshot) {
    s += " snapshot " + std::to_string(r.snapshot->index);
  }
  s += " terms";
  for (const Written& w : r.entries) {
    s += " " + std::to_string(w.term);
  }
  return s;
}

std::string describe(const ModelState& m) {
  return "log " + std::to_string(m.first) + ".." + std::to_string(m.last()) + " hard state " +
         describe(m.hard_state);
}

// Reads the storage's state, and checks the log is well-formed: indexes contiguous from
// first_index() to last_index(), term_at() agreeing with entry(), terms never decreasing.
template <class S>
Recovered capture(const S& s) {
  Recovered r;
  r.first = s.first_index();
  r.last = s.last_index();
  r.hard_state = s.hard_state();
  r.torn_bytes = s.recovery().torn_bytes;
  if (const auto& snap = s.recovered_snapshot()) {
    r.snapshot = SnapshotImage{snap->index, snap->term, snap->data};
  }
  if (r.first == 0 || r.first > r.last + 1) {
    r.malformed = "first_index " + std::to_string(r.first) + " > last_index + 1";
    return r;
  }
  const auto before = s.term_at(r.first - 1);
  if (!before) {
    r.malformed = "term_at(first_index - 1) fails";
    return r;
  }
  r.term_before_first = before.value();
  Term previous = r.term_before_first;
  for (LogIndex i = r.first; i <= r.last; ++i) {
    const EntryView e = s.entry(i);
    const auto term = s.term_at(i);
    if (!r.malformed.empty()) {
      // keep the first problem
    } else if (e.index != i || !term || term.value() != e.term) {
      r.malformed = "entry " + std::to_string(i) + " disagrees with term_at() or its index";
    } else if (e.term < previous) {
      r.malformed = "the term decreases at entry " + std::to_string(i);
    }
    previous = e.term;
    r.entries.push_back(Written{e.term, e.type, {e.payload.begin(), e.payload.end()}});
  }
  return r;
}

std::optional<Recovered> recover(SimFileSystem& disk, std::uint64_t segment_bytes,
                                 std::string& error) {
  try {
    const FileStorage<SimFileSystem> s(options(segment_bytes), disk);
    return capture(s);
  } catch (const std::exception& e) {
    error = e.what();
    return std::nullopt;
  }
}

// Whether `r` is the state `m` left, seen through the snapshot recovery started from: the same
// hard state and last entry; a first entry after the snapshot and no later than where `m`'s
// log (or the snapshot) starts, since recovery may bring back entries compacted in memory only;
// and every entry it has, and the term before the first, as written.
bool matches(const Recovered& r, const History& h, const ModelState& m, LogIndex snapshot) {
  if (r.hard_state != m.hard_state || r.last != m.last() || r.first < snapshot + 1 ||
      r.first > std::max(m.first, snapshot + 1)) {
    return false;
  }
  const Term before = r.first >= 2 ? h.entries[m.log[r.first - 2]].term : 0;
  if (r.term_before_first != before) {
    return false;
  }
  for (LogIndex i = r.first; i <= r.last; ++i) {
    if (r.entries[i - r.first] != h.entries[m.log[i - 1]]) {
      return false;
    }
  }
  return true;
}

// Where `r` first departs from `m`, for a failure message.
std::string first_difference(const Recovered& r, const History& h, const ModelState& m) {
  if (r.hard_state != m.hard_state) {
    return "hard state " + describe(r.hard_state) + " instead of " + describe(m.hard_state);
  }
  for (LogIndex i = std::max(r.first, m.first); i <= std::min(r.last, m.last()); ++i) {
    const Written& want = h.entries[m.log[i - 1]];
    const Written& got = r.entries[i - r.first];
    if (got != want) {
      return "entry " + std::to_string(i) + " has term " + std::to_string(got.term) + " and " +
             std::to_string(got.payload.size()) + " bytes instead of term " +
             std::to_string(want.term) + " and " + std::to_string(want.payload.size()) + " bytes" +
             (got.term == want.term && got.payload.size() == want.payload.size()
                  ? " (same size, other bytes)"
                  : "");
    }
  }
  if (r.last < m.last()) {
    return "entries " + std::to_string(r.last + 1) + ".." + std::to_string(m.last()) +
           " are missing";
  }
  return "";
}

// Why `r` is not a state the history allows, or "" when it is: the log and hard state after some
// prefix of the records written, no shorter than the acknowledged prefix states[from].
std::string explain(const Recovered& r, const History& h, std::size_t from) {
  if (!r.malformed.empty()) {
    return "a malformed log (" + r.malformed + "): " + describe(r);
  }
  LogIndex snapshot = 0;
  if (r.snapshot) {
    const auto it =
        std::find_if(h.snapshots.begin(), h.snapshots.end(),
                     [&](const SnapshotImage& s) { return s.index == r.snapshot->index; });
    if (it == h.snapshots.end() || !(*it == *r.snapshot)) {
      return "a snapshot at " + std::to_string(r.snapshot->index) + " that was never saved";
    }
    snapshot = r.snapshot->index;
  }
  if (h.acked_snapshot > snapshot) {
    return "the snapshot at " + std::to_string(h.acked_snapshot) +
           " was reported saved but recovery found " +
           (r.snapshot ? "the one at " + std::to_string(snapshot) : std::string("none"));
  }
  for (std::size_t p = from; p < h.states.size(); ++p) {
    if (matches(r, h, h.states[p], snapshot)) {
      return "";
    }
  }
  return "recovered " + describe(r) +
         ": no prefix of the writes leaves that (acknowledged: " + describe(h.states[from]) +
         ", written: " + describe(h.now()) + "; " + first_difference(r, h, h.states[from]) + ")";
}

// --- crash states --------------------------------------------------------------------------------

std::string describe(const CrashPlan& plan, std::size_t dir_ops) {
  std::string s = "plan {";
  for (const auto& [path, kept] : plan.kept_bytes) {
    s += path + " keeps " + std::to_string(kept) + " unsynced bytes";
    if (const auto z = plan.zero_bytes.find(path); z != plan.zero_bytes.end()) {
      s += " + " + std::to_string(z->second) + " zeros";
    }
    s += "; ";
  }
  return s + std::to_string(plan.kept_directory_ops) + " of " + std::to_string(dir_ops) +
         " directory ops}";
}

// Every state a crash may leave: for each file with unsynced bytes, every prefix of them cut at a
// 512-byte sector boundary (of the file, and of the unsynced write: 4 KiB pages are among them),
// plus none and all of them, each with and without the file's size reaching the disk (zeros up
// to the full length); times every prefix of the unsynced directory operations.
std::vector<CrashPlan> crash_plans(const SimFileSystem& disk) {
  std::vector<CrashPlan> plans{CrashPlan{}};
  for (const std::string& path : disk.paths()) {
    const std::uint64_t unsynced = disk.unsynced_bytes(path);
    if (unsynced == 0) {
      continue;
    }
    const std::uint64_t durable = disk.size(path) - unsynced;
    std::set<std::uint64_t> cuts{0, unsynced};
    for (std::uint64_t k = 512; k < unsynced; k += 512) {
      cuts.insert(k);
    }
    for (std::uint64_t at = (durable / 512 + 1) * 512; at < durable + unsynced; at += 512) {
      cuts.insert(at - durable);
    }
    std::vector<CrashPlan> next;
    for (const CrashPlan& p : plans) {
      for (const std::uint64_t cut : cuts) {
        CrashPlan q = p;
        q.kept_bytes[path] = cut;
        next.push_back(q);
        if (cut < unsynced) {
          q.zero_bytes[path] = unsynced - cut;
          next.push_back(q);
        }
      }
    }
    plans = std::move(next);
  }
  std::vector<CrashPlan> out;
  for (const CrashPlan& p : plans) {
    for (std::size_t n = 0; n <= disk.unsynced_directory_ops(); ++n) {
      CrashPlan q = p;
      q.kept_directory_ops = n;
      out.push_back(q);
    }
  }
  return out;
}

// A fingerprint of every file's name and content, to count distinct disk images.
std::uint64_t image_of(SimFileSystem& disk) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  std::vector<std::byte> bytes;
  for (const std::string& path : disk.paths()) {
    (void)disk.read_all(path, bytes);
    for (const std::uint64_t v : {std::uint64_t{crc32c(std::as_bytes(std::span(path)))},
                                  std::uint64_t{crc32c(bytes)}, std::uint64_t{bytes.size()}}) {
      h = (h ^ v) * 0x100000001b3ull;
    }
  }
  return h;
}

enum class Check {
  /// Power fails: recovery must bring back an allowed state, a second recovery after another
  /// power failure the same one, and the recovered log must take a new write that survives the
  /// next power failure.
  recovery,
  /// Only the process dies (the page cache survives): what a restart recovers must survive a
  /// power failure right after it.
  restart_without_power_loss,
};

// The checks of one crash state: `disk` after the power failure (or, for
// Check::restart_without_power_loss, as the dead process left it). Returns what is wrong, or "".
std::string check_crash_state(SimFileSystem& disk, const History& h, std::uint64_t segment_bytes,
                              Check check) {
  std::string error;
  if (check == Check::restart_without_power_loss) {
    const auto first = recover(disk, segment_bytes, error);
    if (!first) {
      return "the restart threw: " + error;
    }
    if (auto why = explain(*first, h, h.acked); !why.empty()) {
      return why;
    }
    disk.crash({});
    const auto second = recover(disk, segment_bytes, error);
    if (!second) {
      return "the restart recovered " + describe(*first) +
             ", but after a power failure recovery threw: " + error;
    }
    const bool covers =
        second->hard_state == first->hard_state && second->last == first->last &&
        second->term_before_first == first->term_before_first && second->first <= first->first &&
        std::equal(first->entries.begin(), first->entries.end(),
                   second->entries.end() - static_cast<std::ptrdiff_t>(first->entries.size()));
    if (!covers) {
      return "the restart recovered " + describe(*first) +
             " without making it durable: after a power failure, " + describe(*second);
    }
    return "";
  }
  const auto first = recover(disk, segment_bytes, error);
  if (!first) {
    return "recovery threw: " + error;
  }
  if (auto why = explain(*first, h, h.acked); !why.empty()) {
    return why;
  }
  disk.crash({});  // power fails again right after recovery: only what it synced is left
  const auto second = recover(disk, segment_bytes, error);
  if (!second) {
    return "the second recovery threw: " + error;
  }
  if (!second->same_state(*first)) {
    return "the second recovery found " + describe(*second) + " after the first found " +
           describe(*first);
  }
  if (second->torn_bytes != 0) {
    return "the first recovery cut " + std::to_string(first->torn_bytes) +
           " torn bytes but not durably: the second cut " + std::to_string(second->torn_bytes);
  }
  // The recovered log takes a new write, which survives the next power failure.
  const std::vector<std::byte> payload = noise(424242, 300);
  try {
    FileStorage<SimFileSystem> s(options(segment_bytes), disk);
    const EntryView e{std::max(s.term_at(s.last_index()).value(), Term{1}), s.last_index() + 1,
                      EntryType::normal, payload};
    (void)s.append(std::span<const EntryView>(&e, 1));
    if (const auto ec = s.sync_now()) {
      return "a write after recovery failed: " + ec.message();
    }
  } catch (const std::exception& e) {
    return "the recovery before a new write threw: " + std::string(e.what());
  }
  disk.crash({});
  const auto after = recover(disk, segment_bytes, error);
  if (!after) {
    return "recovered " + describe(*second) +
           " and wrote one entry after it; then recovery threw: " + error;
  }
  if (after->first != second->first || after->last != second->last + 1 ||
      after->hard_state != second->hard_state || after->entries.back().payload != payload ||
      !std::equal(second->entries.begin(), second->entries.end(), after->entries.begin())) {
    return "recovered " + describe(*second) + " and wrote one entry after it; then recovered " +
           describe(*after);
  }
  return "";
}

struct Tally {
  std::size_t points = 0;
  std::size_t states = 0;
  std::set<std::uint64_t> images;
  std::size_t failures = 0;
  std::vector<std::string> reports;  // the first few failures
};

std::string describe(CrashPoint at) {
  return at.barrier != kNever ? "dies at fsync #" + std::to_string(at.barrier)
                              : "dies before step " + std::to_string(at.steps);
}

// Runs `w` once to count its steps and fsyncs, then crashes it at every fsync and between every
// two steps, checking every crash state of each point.
Tally enumerate(const Workload& w, Check check) {
  SimFileSystem full_disk;
  History full;
  const RunResult whole = run(w, full_disk, {}, full);
  REQUIRE(!whole.stopped);
  std::vector<CrashPoint> points;
  for (std::size_t b = 0; b < whole.barriers; ++b) {
    points.push_back(CrashPoint{kNever, b});
  }
  for (std::size_t s = 0; s <= whole.steps; ++s) {
    points.push_back(CrashPoint{s, kNever});
  }
  Tally tally;
  for (const CrashPoint at : points) {
    std::optional<SimFileSystem> disk(std::in_place);
    History h;
    REQUIRE(run(w, *disk, at, h).stopped == (at.steps < whole.steps || at.barrier != kNever));
    const std::size_t dir_ops = disk->unsynced_directory_ops();
    const std::vector<CrashPlan> plans = check == Check::restart_without_power_loss
                                             ? std::vector<CrashPlan>{CrashPlan{}}
                                             : crash_plans(*disk);
    ++tally.points;
    for (std::size_t i = 0; i < plans.size(); ++i) {
      if (i > 0) {  // a fresh copy of the disk as the process left it
        disk.emplace();
        h = History{};
        run(w, *disk, at, h);
      }
      if (check != Check::restart_without_power_loss) {
        disk->crash(plans[i]);
      }
      ++tally.states;
      tally.images.insert(image_of(*disk));
      const std::string why = check_crash_state(*disk, h, w.segment_bytes, check);
      if (!why.empty()) {
        if (++tally.failures <= 5) {
          tally.reports.push_back(std::string(w.name) + ", the process " + describe(at) + ", " +
                                  describe(plans[i], dir_ops) + ": " + why);
        }
      }
    }
  }
  return tally;
}

void report(const char* name, const Tally& t, std::size_t at_least) {
  MESSAGE(std::string(name) << ": " << t.points << " crash points, " << t.states
                            << " crash states checked (" << t.images.size()
                            << " distinct disk images), " << t.failures << " wrong");
  for (const std::string& r : t.reports) {
    FAIL_CHECK(r);
  }
  CHECK(t.failures == 0);
  CHECK(t.states >= at_least);
}

std::size_t segments_of(SimFileSystem& disk) {
  std::vector<std::string> names;
  (void)disk.list(kDirectory, names);
  return static_cast<std::size_t>(std::count_if(
      names.begin(), names.end(), [](const auto& n) { return n.rfind("wal-", 0) == 0; }));
}

}  // namespace

// --- crash-state enumeration ---------------------------------------------------------------------

TEST_CASE("FileStorage crash states: appends across segment rotations") {
  SimFileSystem disk;
  History h;
  run(kAppends, disk, {}, h);
  REQUIRE(segments_of(disk) >= 5);  // the workload rotates segments
  report(kAppends.name, enumerate(kAppends, Check::recovery), 500);
}

TEST_CASE("FileStorage crash states: suffix truncation and rewrite") {
  SimFileSystem disk;
  History h;
  run(kTruncations, disk, {}, h);
  REQUIRE(segments_of(disk) >= 3);
  report(kTruncations.name, enumerate(kTruncations, Check::recovery), 300);
}

TEST_CASE("FileStorage crash states: compaction and snapshots") {
  SimFileSystem disk;
  History h;
  run(kCompactions, disk, {}, h);
  REQUIRE(h.snapshots.size() == 8);
  REQUIRE(h.acked_snapshot == h.snapshots.back().index);
  report(kCompactions.name, enumerate(kCompactions, Check::recovery), 380);
}

// Regression: recovery used to drop a truncation record whose first index was at or below the
// snapshot, bringing back stale entries above the snapshot that an older segment still held.
TEST_CASE("FileStorage crash states: a snapshot above an overwritten suffix") {
  report(kSnapshotAboveTruncation.name, enumerate(kSnapshotAboveTruncation, Check::recovery), 90);
}

// Regression: an entry whose payload holds the image of a complete batch, cut by a power failure
// after that image, used to make recovery refuse to start (the image passed for records). Each
// record's CRC is now seeded with its segment's salt, so an image copied into a payload never
// checks out.
TEST_CASE("FileStorage crash states: a torn entry whose payload holds a record image") {
  report(kRecordImagePayload.name, enumerate(kRecordImagePayload, Check::recovery), 30);
}

TEST_CASE("FileStorage crash states: what a restart without power loss recovers is durable") {
  for (const Workload* w : {&kAppends, &kTruncations, &kCompactions, &kFailedSync}) {
    report(w->name, enumerate(*w, Check::restart_without_power_loss), 10);
  }
}

// --- bit flips -----------------------------------------------------------------------------------

namespace {

// Eight synced batches over 1 KiB segments.
void synced_segments(Node& n) {
  n.hard_state(1, 1, 0);
  for (std::size_t batch = 0; batch < 8; ++batch) {
    n.append(1 + batch / 4, {40 * batch, 300, 7});
    n.hard_state(1 + batch / 4, 1, 3 * batch);
    n.sync();
  }
}
const Workload kSyncedSegments{"synced segments", 1024, synced_segments};

struct SegmentLayout {
  std::string path;
  std::uint64_t size = 0;
  std::vector<std::size_t> records;  // where each record starts
};

std::vector<SegmentLayout> segment_layouts(SimFileSystem& disk) {
  std::vector<SegmentLayout> out;
  for (const std::string& path : disk.paths()) {
    if (path.find("/wal-") == std::string::npos) {
      continue;
    }
    std::vector<std::byte> bytes;
    REQUIRE(!disk.read_all(path, bytes));
    SegmentLayout s{path, bytes.size(), {}};
    const auto salt = wal::segment_salt(bytes);
    REQUIRE(salt);
    for (std::size_t at = 0; at < bytes.size();) {
      const auto r = wal::read_record(bytes, at, at == 0 ? 0 : *salt);
      REQUIRE(r);
      s.records.push_back(at);
      at += r->size;
    }
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace

TEST_CASE("FileStorage bit flips: refused with file and offset unless in the torn tail") {
  std::optional<SimFileSystem> disk;
  History h;
  const auto build = [&] {
    disk.emplace();
    h = History{};
    run(kSyncedSegments, *disk, {}, h);
  };
  build();
  const std::vector<SegmentLayout> segments = segment_layouts(*disk);
  REQUIRE(segments.size() >= 3);
  std::size_t flips = 0;
  std::size_t refused = 0;
  std::size_t tolerated = 0;
  for (const SegmentLayout& seg : segments) {
    const bool last_segment = &seg == &segments.back();
    // Every 8th byte, each byte of the 8-byte word in turn; three bits of each.
    for (std::uint64_t k = 0; 8 * k + k % 8 < seg.size; ++k) {
      const std::uint64_t offset = 8 * k + k % 8;
      const std::size_t record =
          *std::prev(std::upper_bound(seg.records.begin(), seg.records.end(), offset));
      // Only the last segment's last record, the final batch's batch-end, may be torn.
      const bool in_tail = last_segment && record == seg.records.back();
      for (const unsigned bit : {k % 8, (k + 3) % 8, (k + 6) % 8}) {
        const std::string where =
            seg.path + " byte " + std::to_string(offset) + " bit " + std::to_string(bit);
        REQUIRE(disk->flip_bit(seg.path, offset, bit));
        ++flips;
        try {
          const FileStorage<SimFileSystem> s(options(kSyncedSegments.segment_bytes), *disk);
          const Recovered r = capture(s);
          ++tolerated;
          if (!in_tail) {
            FAIL_CHECK(where << ": recovery accepted a flipped bit outside the torn tail");
          }
          if (const std::string why = explain(r, h, h.acked); !why.empty()) {
            FAIL_CHECK(where << ": " << why);
          }
          build();  // recovery cut the tail off: start again from an intact disk
          continue;
        } catch (const std::system_error& e) {
          ++refused;
          const std::string what = e.what();
          if (e.code() != errc::corrupt_storage || what.find(seg.path) == std::string::npos ||
              what.find("offset " + std::to_string(record)) == std::string::npos) {
            FAIL_CHECK(where << " (in the record at offset " << record << "): " << e.code() << " "
                             << what);
          }
        }
        REQUIRE(disk->flip_bit(seg.path, offset, bit));  // and back
      }
    }
  }
  MESSAGE(flips << " bit flips over " << segments.size() << " segments: " << refused << " refused, "
                << tolerated << " cut off as the torn tail");
  CHECK(flips >= 1000);
  CHECK(tolerated > 0);
  std::string error;
  const auto intact = recover(*disk, kSyncedSegments.segment_bytes, error);
  REQUIRE_MESSAGE(intact, error);
  CHECK(explain(*intact, h, h.acked) == "");
  CHECK(intact->torn_bytes == 0);
}

// --- fsync errors --------------------------------------------------------------------------------

TEST_CASE("FileStorage fsync EIO: fail-stop and a restart recovers only what was durable") {
  SimFileSystem disk;
  std::size_t durable_calls = 0;
  FileStorageOptions o = options(2048);
  o.on_durable = [&] { ++durable_calls; };
  std::vector<std::vector<std::byte>> payloads;
  const auto put = [&](FileStorage<SimFileSystem>& s, std::size_t size) {
    payloads.push_back(noise(payloads.size() + 1, size));
    const EntryView e{1, s.last_index() + 1, EntryType::normal, payloads.back()};
    return s.append(std::span<const EntryView>(&e, 1));
  };
  const auto bytes_on_disk = [&] {
    std::uint64_t n = 0;
    for (const std::string& path : disk.paths()) {
      n += disk.size(path);
    }
    return n;
  };
  std::uint64_t syncs = 0;
  std::uint64_t size = 0;
  {
    FileStorage<SimFileSystem> s(o, disk);
    put(s, 100);
    put(s, 600);
    const WriteSeq acked = s.save_hard_state(HardState{1, 1, 1});
    REQUIRE(!s.sync_now());
    REQUIRE(s.durable_seq() == acked);
    CHECK(durable_calls == 1);

    put(s, 1300);
    (void)s.save_hard_state(HardState{1, 1, 3});
    disk.fail_next_sync();
    syncs = disk.syncs();
    const std::error_code ec = s.sync_now();
    CHECK(ec == std::error_code(EIO, std::generic_category()));
    CHECK(s.error() == ec);
    CHECK(s.durable_seq() == acked);
    CHECK(durable_calls == 1);
    CHECK(disk.syncs() == syncs + 1);

    // Fail-stop: later writes reach neither the files nor fdatasync; nothing is retried.
    syncs = disk.syncs();
    size = bytes_on_disk();
    put(s, 70);
    CHECK(s.sync_now() == ec);
    const std::vector<std::byte> image = noise(99, 50);
    CHECK(s.save_snapshot(2, 1, image));
    CHECK(s.error() == ec);
    CHECK(s.durable_seq() == acked);
    CHECK(durable_calls == 1);
    CHECK(disk.syncs() == syncs);
    CHECK(bytes_on_disk() == size);
  }  // nor does the destructor write anything
  CHECK(disk.syncs() == syncs);
  CHECK(bytes_on_disk() == size);
  CHECK(disk.unsynced_directory_ops() == 0);

  disk.crash({});  // power fails: nothing of the failed batch reached the disk
  const FileStorage<SimFileSystem> r(o, disk);
  REQUIRE(r.last_index() == 2);
  CHECK(r.first_index() == 1);
  CHECK(r.hard_state() == HardState{1, 1, 1});
  for (LogIndex i = 1; i <= 2; ++i) {
    const EntryView e = r.entry(i);
    CHECK(std::equal(e.payload.begin(), e.payload.end(), payloads[i - 1].begin(),
                     payloads[i - 1].end()));
  }
  CHECK(!r.recovered_snapshot());

  // Any part of the failed batch may have reached the disk: every such state recovers.
  report(kFailedSync.name, enumerate(kFailedSync, Check::recovery), 20);
}

// --- an interrupted removal ----------------------------------------------------------------------

TEST_CASE("FileStorage crash states: segments left by an interrupted removal are removed later") {
  SimFileSystem disk;
  const FileStorageOptions o = options(1024);
  const auto put = [](auto& s, std::size_t size) {
    const std::vector<std::byte> p = noise(s.last_index() + 1, size);
    const EntryView e{1, s.last_index() + 1, EntryType::normal, p};
    (void)s.append(std::span<const EntryView>(&e, 1));
    REQUIRE(!s.sync_now());
  };
  {
    ProcessFs fs(disk, kNever);
    FileStorage<ProcessFs> s(o, fs);
    for (int i = 0; i < 12; ++i) {
      put(s, 300);
    }
    // save_snapshot fsyncs the snapshot file, the directory after the rename, and the directory
    // after removing the segments it covers: the process dies at that last one.
    fs.die_in(2);
    CHECK(!s.save_snapshot(8, 1, noise(5, 100)));
    CHECK(fs.dead());
    CHECK(disk.unsynced_directory_ops() > 0);
  }
  disk.crash({});  // the removals are lost; the snapshot is durable
  REQUIRE(segments_of(disk) > 2);
  {
    FileStorage<SimFileSystem> s(o, disk);
    REQUIRE(s.recovered_snapshot());
    REQUIRE(s.recovered_snapshot()->index == 8);
    for (int i = 0; i < 4; ++i) {
      put(s, 300);
    }
    REQUIRE(!s.save_snapshot(s.last_index(), 1, noise(6, 100)));  // covers every entry
  }
  // Every segment but the one being written holds only entries the snapshot covers.
  std::vector<std::string> names;
  REQUIRE(!disk.list(kDirectory, names));
  INFO("left: " << [&] {
    std::string all;
    for (const std::string& name : names) {
      all += name + " ";
    }
    return all;
  }());
  CHECK(segments_of(disk) == 1);
}
