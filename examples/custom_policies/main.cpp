// tenure-custom-policies: a three-node Raft cluster in one process, on policies you write yourself.
//
// tenure's RaftGroup does no I/O of its own. It reads time from a Clock, sends messages through a
// Transport, keeps its log in a Storage, hands committed entries to a StateMachine, and asks an
// ErrorClassifier which errors mean "this node lost leadership". This program writes each of
// those policies itself, with nothing from tenure's testing headers, runs three groups on them in
// one thread, and does what an application does with a group: elect a leader, commit writes, read
// through ReadIndex and through the lease, react to errors, transfer leadership.
// docs/getting-started.md walks through it section by section.
//
// Time is a clock the program moves by hand, so the run is deterministic and takes milliseconds
// of real time. Every line marked [ok] is a claim the program checks; it exits 1 at the first
// that fails.
#include <lease/lease_coordinator.hpp>
#include <raft/codec.hpp>
#include <raft/completion.hpp>
#include <raft/config.hpp>
#include <raft/errc.hpp>
#include <raft/error_classifier.hpp>
#include <raft/message.hpp>
#include <raft/operations.hpp>
#include <raft/policies.hpp>
#include <raft/raft_group.hpp>
#include <raft/result.hpp>
#include <raft/storage.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <vector>

using namespace std::chrono_literals;
using tenure::raft::Completion;
using tenure::raft::EntryType;
using tenure::raft::EntryView;
using tenure::raft::errc;
using tenure::raft::ErrorClass;
using tenure::raft::HardState;
using tenure::raft::LogIndex;
using tenure::raft::Message;
using tenure::raft::NodeId;
using tenure::raft::ProposeOperation;
using tenure::raft::ProposeResult;
using tenure::raft::Result;
using tenure::raft::Term;
using tenure::raft::WriteSeq;

// =================================================================================================
// 1. The Clock: time that moves only when the program says so.
//
// RaftGroup measures every timeout, and the lease layer every lease, on this clock. The compiler
// checks the types (nanoseconds, is_steady, a noexcept now()); what it cannot check is that now()
// never goes backwards and may be called from any thread (LeaseCoordinator::lease_read() reads it
// on the caller's thread), hence the atomic.
// =================================================================================================
namespace app {

class StepClock {
 public:
  using rep = std::int64_t;
  using period = std::nano;
  using duration = std::chrono::nanoseconds;
  using time_point = std::chrono::time_point<StepClock, duration>;
  static constexpr bool is_steady = true;

  time_point now() const noexcept {
    return time_point{duration{nanos_.load(std::memory_order_acquire)}};
  }

  /// Moves time forward (a negative step is ignored: the clock is monotonic).
  void advance(duration step) noexcept {
    if (step > duration::zero()) {
      nanos_.fetch_add(step.count(), std::memory_order_acq_rel);
    }
  }

 private:
  std::atomic<std::int64_t> nanos_{0};
};

// =================================================================================================
// 2. The Transport: an in-process wire that copies every message into a queue.
//
// send() must not block and may drop, and it must copy what it keeps: a message's entries are
// views into the sender's log, valid only during the call. So each message is encoded into a
// byte frame of its own (tenure::raft::encode), exactly as it would be for a socket. The event
// loop later takes frames off the queue, decodes them and hands them to the receiving group's
// step(): a group is never re-entered from inside its own send().
// =================================================================================================
class Wire {
 public:
  void post(const Message& message) noexcept {
    try {
      std::vector<std::byte> frame(tenure::raft::encoded_size(message));
      if (!tenure::raft::encode(message, frame)) {
        ++dropped_;  // not encodable: drop it (Raft retransmits what matters)
        return;
      }
      bytes_ += frame.size();
      ++frames_;
      in_flight_.push_back(std::move(frame));
    } catch (...) {
      ++dropped_;  // out of memory: a transport may drop, it may not throw
    }
  }

  /// The oldest frame in flight, removed from the wire; nullopt when none.
  std::optional<std::vector<std::byte>> take() {
    if (in_flight_.empty()) {
      return std::nullopt;
    }
    std::vector<std::byte> frame = std::move(in_flight_.front());
    in_flight_.pop_front();
    return frame;
  }

  std::uint64_t frames() const noexcept { return frames_; }
  std::uint64_t bytes() const noexcept { return bytes_; }
  std::uint64_t dropped() const noexcept { return dropped_; }

 private:
  std::deque<std::vector<std::byte>> in_flight_;
  std::uint64_t frames_ = 0;
  std::uint64_t bytes_ = 0;
  std::uint64_t dropped_ = 0;
};

/// The Transport policy: one per node, all posting to the same wire. message.to names the
/// receiver; the wire needs nothing else.
class WireTransport {
 public:
  explicit WireTransport(Wire& wire) noexcept : wire_(wire) {}
  void send(const Message& message) { wire_.post(message); }

 private:
  Wire& wire_;
};

// =================================================================================================
// 3. The Storage: an in-memory log whose writes become durable later.
//
// Every write (append, truncate_suffix, save_hard_state) is visible to the next read at once and
// returns a WriteSeq, a number that grows with each write. It becomes durable later, in the order
// the writes were issued; durable_seq() says how far. RaftGroup never waits for a write: it holds
// back what must not leave before durability (a vote, an append acknowledgement, its own entry's
// share in a commit) and releases it when told, through on_persisted(), that durable_seq() moved.
//
// Here "the disk" is the event loop: it calls sync() (everything issued becomes durable) and then
// group.on_persisted(). A real storage writes a file, fsyncs it on its own thread, stores the new
// durable WriteSeq in an atomic, and has the group's thread call on_persisted().
// =================================================================================================
class AsyncLog {
 public:
  // --- reads: they see every write at once ------------------------------------------------------
  LogIndex first_index() const noexcept { return first_; }
  LogIndex last_index() const noexcept { return first_ + entries_.size() - 1; }

  Result<Term> term_at(LogIndex index) const noexcept {
    if (index + 1 == first_) {
      return base_term_;  // the entry the log was compacted through (index 0: term 0)
    }
    if (index < first_ || index > last_index()) {
      return errc::invalid_argument;
    }
    return entries_[index - first_].term;
  }

  /// Precondition: first_index() <= index <= last_index(). The view is valid until the next
  /// write or compaction.
  EntryView entry(LogIndex index) const noexcept {
    const Stored& e = entries_[index - first_];
    return EntryView{e.term, index, e.type, e.payload};
  }

  HardState hard_state() const noexcept { return hard_state_; }

  // --- writes: visible now, durable at the next sync(), in issue order ---------------------------
  WriteSeq append(std::span<const EntryView> entries) {
    for (const EntryView& e : entries) {  // indexes continue last_index(); the payloads are copied
      entries_.push_back(Stored{e.term, e.type, {e.payload.begin(), e.payload.end()}});
    }
    return issue();
  }

  WriteSeq truncate_suffix(LogIndex from) {
    while (!entries_.empty() && last_index() >= from) {
      entries_.pop_back();
    }
    return issue();
  }

  WriteSeq save_hard_state(const HardState& hard_state) {
    hard_state_ = hard_state;
    return issue();
  }

  /// Forgets entries up to `through` (the group compacts only applied entries). Not a write.
  void compact(LogIndex through) {
    while (!entries_.empty() && first_ <= through) {
      base_term_ = entries_.front().term;
      entries_.pop_front();
      ++first_;
    }
  }

  /// The newest durable write. An atomic: a storage thread may advance it while the group reads.
  WriteSeq durable_seq() const noexcept { return durable_.load(std::memory_order_acquire); }

  /// Non-zero once a write failed; the group then stops for good (fail-stop). This log in memory
  /// never fails.
  std::error_code error() const noexcept { return {}; }

  // --- the disk, driven by the event loop --------------------------------------------------------
  /// Makes every write issued so far durable. Returns whether that was news.
  bool sync() noexcept {
    if (durable_.load(std::memory_order_relaxed) == issued_) {
      return false;
    }
    durable_.store(issued_, std::memory_order_release);
    ++syncs_;
    return true;
  }
  WriteSeq issued() const noexcept { return issued_; }
  std::uint64_t syncs() const noexcept { return syncs_; }

 private:
  struct Stored {
    Term term = 0;
    EntryType type = EntryType::normal;
    std::vector<std::byte> payload;
  };

  WriteSeq issue() noexcept { return ++issued_; }

  std::deque<Stored> entries_;  // entries first_ .. last_index()
  LogIndex first_ = 1;          // an empty log: first_index() == last_index() + 1
  Term base_term_ = 0;
  HardState hard_state_;
  WriteSeq issued_ = 0;
  std::atomic<WriteSeq> durable_{0};
  std::uint64_t syncs_ = 0;
};

// =================================================================================================
// 4. The StateMachine: a tiny key-value map.
//
// apply() is called once per committed entry, in log order, on every node. It must be
// deterministic: same entries, same state, same result words, everywhere. The payload view is
// valid only during the call, so the map copies what it keeps.
// =================================================================================================
class KvStore {
 public:
  /// A payload is "key=value". The result word, handed to the proposer, is the store's version:
  /// how many writes it has applied.
  std::uint64_t apply(LogIndex index, std::span<const std::byte> payload) {
    const std::string_view text(reinterpret_cast<const char*>(payload.data()), payload.size());
    const std::size_t eq = text.find('=');
    const std::string_view key = text.substr(0, eq);
    const std::string_view value = eq == std::string_view::npos ? "" : text.substr(eq + 1);
    data_[std::string(key)] = std::string(value);
    applied_index_ = index;
    return ++version_;
  }

  std::string get(const std::string& key) const {
    const auto it = data_.find(key);
    return it == data_.end() ? std::string() : it->second;
  }
  std::uint64_t version() const noexcept { return version_; }
  LogIndex applied_index() const noexcept { return applied_index_; }

  friend bool operator==(const KvStore&, const KvStore&) = default;

 private:
  std::map<std::string, std::string> data_;
  std::uint64_t version_ = 0;
  LogIndex applied_index_ = 0;
};

/// A payload for KvStore.
inline std::vector<std::byte> kv_payload(const std::string& key, const std::string& value) {
  const std::string text = key + "=" + value;
  std::vector<std::byte> bytes(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    bytes[i] = static_cast<std::byte>(text[i]);
  }
  return bytes;
}

// =================================================================================================
// 5. The ErrorClassifier: which of *your* errors mean "leadership lost".
//
// The application reports its own failures as std::error_codes of its own category. A lease may
// be invalidated only by a leadership loss: a business failure such as a write conflict must
// leave it alone, or a burst of conflicts would keep every read off the fast path.
// =================================================================================================
enum class AppError {
  conflict = 1,  // a compare-and-set lost: a business outcome
  fenced = 2,    // an outside authority (a lock service, a newer epoch) says we no longer lead
  busy = 3,      // a downstream dependency asked us to back off
};

class AppErrorCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "app"; }
  std::string message(int value) const override {
    switch (static_cast<AppError>(value)) {
      case AppError::conflict:
        return "write conflict";
      case AppError::fenced:
        return "fenced by a newer leader";
      case AppError::busy:
        return "busy";
    }
    return "unknown app error";
  }
};

inline const std::error_category& app_category() noexcept {
  static const AppErrorCategory category;
  return category;
}

inline std::error_code make_error_code(AppError e) noexcept {
  return {static_cast<int>(e), app_category()};
}

}  // namespace app

template <>
struct std::is_error_code_enum<app::AppError> : std::true_type {};

namespace app {

/// Classifies the application's own codes itself, and everything else (tenure's errc, the
/// generic codes of sockets and disks) as tenure's DefaultErrorClassifier does. Pure, noexcept,
/// any thread: LeaseCoordinator::on_error calls it from wherever the error surfaced.
struct AppErrorClassifier {
  static ErrorClass classify(std::error_code ec) noexcept {
    if (ec.category() == app_category()) {
      switch (static_cast<AppError>(ec.value())) {
        case AppError::fenced:
          return ErrorClass::leadership_lost;
        case AppError::busy:
          return ErrorClass::retryable;
        case AppError::conflict:
          return ErrorClass::permanent;
      }
      return ErrorClass::permanent;  // a code we do not know: never a leadership loss
    }
    return tenure::raft::DefaultErrorClassifier::classify(ec);
  }
};

// =================================================================================================
// 6. The policies: derive from DefaultPolicies and name what is yours.
//
// RaftGroup<AppPolicies> checks each policy where it is instantiated, with a static_assert that
// names the policy and the member it misses. random_type and planted_bugs keep their defaults.
// =================================================================================================
struct AppPolicies : tenure::raft::DefaultPolicies {
  using clock_type = StepClock;
  using transport_type = WireTransport;
  using storage_type = AsyncLog;
  using state_machine_type = KvStore;
  using error_classifier = AppErrorClassifier;
  static constexpr std::size_t max_peers = 3;
};

using Group = tenure::raft::RaftGroup<AppPolicies>;
/// Lease reads over a group. Its classifier defaults to the group's: AppErrorClassifier.
using Coordinator = tenure::lease::LeaseCoordinator<Group>;
static_assert(
    std::is_same_v<Coordinator, tenure::lease::LeaseCoordinator<Group, AppErrorClassifier>>);

// =================================================================================================
// 7. The event loop: three nodes, one clock, one wire.
//
// A RaftGroup has four inputs: tick() (time passed), step() (a message arrived), on_persisted()
// (storage writes became durable) and the operations (propose, read_index, ...). This loop is
// what a runtime does with them, on one thread.
// =================================================================================================
struct Node {
  Node(const tenure::raft::RaftConfig& config, StepClock& clock, Wire& wire)
      : transport(wire),
        group(config, clock, transport, storage, machine),
        lease(group, tenure::lease::LeaseConfig{}) {}

  // The group holds references to these: they are declared (constructed) before it.
  WireTransport transport;
  AsyncLog storage;
  KvStore machine;
  Group group;
  // Destroyed before the group it registered with. LeaseConfig{}: the lease is derived from the
  // group's election_timeout_min, with 0.1 % clock drift and a 1 ms margin.
  Coordinator lease;
};

class Cluster {
 public:
  static constexpr std::chrono::nanoseconds kTick = 1ms;

  // scratch_: room for the most entries one message carries, for decode().
  explicit Cluster(tenure::raft::RaftConfig config) : scratch_(config.max_entries_per_message) {
    config.voters = {1, 2, 3};  // every member starts with the same voters
    for (const NodeId id : {1, 2, 3}) {
      config.self = id;
      nodes_.push_back(std::make_unique<Node>(config, clock_, wire_));
    }
  }

  // Stop every group first: each completes what it still holds (errc::stopped) while the
  // coordinators and the operations those completions touch are all still alive.
  ~Cluster() {
    for (auto& n : nodes_) {
      n->group.stop();
    }
  }

  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  StepClock& clock() noexcept { return clock_; }
  const Wire& wire() const noexcept { return wire_; }
  std::span<const std::unique_ptr<Node>> nodes() const noexcept { return nodes_; }
  Node& node(NodeId id) { return *nodes_.at(static_cast<std::size_t>(id - 1)); }

  /// The node that leads, or nullptr.
  Node* leader() {
    for (auto& n : nodes_) {
      if (n->group.role() == tenure::raft::Role::leader) {
        return n.get();
      }
    }
    return nullptr;
  }

  /// Hands every frame on the wire to its receiver's step(), including the frames those steps
  /// send, until the wire is empty. Returns how many were delivered.
  std::size_t deliver() {
    std::size_t delivered = 0;
    while (auto frame = wire_.take()) {
      // The decoded message points into `frame` and `scratch_`: valid during step(), which is
      // all the group needs.
      auto message = tenure::raft::decode(*frame, scratch_);
      if (!message) {
        ++undecodable_;
        continue;
      }
      const NodeId to = message.value().to;
      if (to >= 1 && to <= nodes_.size()) {
        node(to).group.step(message.value());
      }
      ++delivered;
    }
    return delivered;
  }

  /// Makes every node's writes durable and tells its group. Returns whether any was news.
  bool sync_disks() {
    bool any = false;
    for (auto& n : nodes_) {
      if (n->storage.sync()) {
        n->group.on_persisted();  // releases the votes and acknowledgements that waited
        any = true;
      }
    }
    return any;
  }

  /// Delivers and syncs until nothing moves: every consequence of what happened so far.
  void settle() {
    for (;;) {
      const bool delivered = deliver() != 0;
      const bool synced = sync_disks();
      if (!delivered && !synced) {
        return;
      }
    }
  }

  /// One millisecond passes: every group ticks (timers, heartbeats, deadlines), then settle.
  void step() {
    clock_.advance(kTick);
    for (auto& n : nodes_) {
      n->group.tick();
    }
    settle();
  }

  void run_for(std::chrono::nanoseconds d) {
    const auto end = clock_.now() + d;
    while (clock_.now() < end) {
      step();
    }
  }

  /// Steps until `done()` holds or `limit` passed; returns whether it held.
  template <class Predicate>
  bool run_until(Predicate&& done, std::chrono::nanoseconds limit) {
    const auto end = clock_.now() + limit;
    while (!done()) {
      if (clock_.now() >= end) {
        return false;
      }
      step();
    }
    return true;
  }

  std::uint64_t undecodable() const noexcept { return undecodable_; }

 private:
  StepClock clock_;
  Wire wire_;
  std::vector<EntryView> scratch_;
  std::vector<std::unique_ptr<Node>> nodes_;
  std::uint64_t undecodable_ = 0;
};

// =================================================================================================
// 8. Operations: caller-owned, completed through a Completion (a function and a context pointer).
//
// The group links an operation into its queues and calls its completion exactly once. The object
// must stay where it is and stay alive until then: never move it, reuse it only after it
// completed. Pending<T, Op> keeps the outcome next to the operation.
// =================================================================================================
template <class T, class Op>
struct Pending {
  std::optional<Result<T>> outcome;
  Op op{Completion<T>{&done, this}};

  static void done(void* self, Result<T> result) noexcept {
    static_cast<Pending*>(self)->outcome = result;
  }
  bool ok() const noexcept { return outcome && outcome->has_value(); }
};

using Proposal = Pending<ProposeResult, ProposeOperation>;
using IndexRead = Pending<LogIndex, tenure::raft::ReadIndexOperation>;
using LeaseRead = Pending<LogIndex, Coordinator::ReadOperation>;
using Transfer = Pending<void, tenure::raft::TransferOperation>;

/// A write wired to the lease: begin_write() samples the instant before the proposal leaves; the
/// commit extends the caller-side lease from it, a failure goes to on_error().
struct LeaseWrite {
  Coordinator* lease = nullptr;
  Coordinator::WriteAnchor anchor;
  std::optional<Result<ProposeResult>> outcome;
  ProposeOperation op{Completion<ProposeResult>{&done, this}};

  static void done(void* self, Result<ProposeResult> result) noexcept {
    auto& w = *static_cast<LeaseWrite*>(self);
    if (result) {
      w.lease->on_write_committed(w.anchor);
    } else {
      w.lease->on_error(result.code());
    }
    w.outcome = result;
  }
};

// =================================================================================================
// Narration: claims are checked; the first that fails ends the program.
// =================================================================================================
class Story {
 public:
  explicit Story(const StepClock& clock) : clock_(clock) {}

  [[gnu::format(printf, 3, 4)]] bool claim(bool holds, const char* format, ...) {
    ++claims_;
    std::printf("%s t=%5lld ms  ", holds ? "[ok]  " : "[FAIL]", static_cast<long long>(ms()));
    va_list args;
    va_start(args, format);
    std::vprintf(format, args);
    va_end(args);
    std::printf("\n");
    if (!holds) {
      std::fprintf(stderr, "custom_policies: claim %d failed\n", claims_);
    }
    return holds;
  }
  static void heading(const char* text) { std::printf("-- %s\n", text); }
  int claims() const noexcept { return claims_; }
  std::int64_t ms() const noexcept {
    return std::chrono::duration_cast<std::chrono::milliseconds>(clock_.now().time_since_epoch())
        .count();
  }

 private:
  const StepClock& clock_;
  int claims_ = 0;
};

unsigned long long u(std::uint64_t v) {
  return static_cast<unsigned long long>(v);
}

const char* class_name(ErrorClass c) {
  switch (c) {
    case ErrorClass::leadership_lost:
      return "leadership_lost";
    case ErrorClass::retryable:
      return "retryable";
    case ErrorClass::permanent:
      return "permanent";
  }
  return "?";
}

/// Whether all three state machines hold the same data, version and applied index.
bool stores_agree(Cluster& cluster) {
  const KvStore& first = cluster.node(1).machine;
  for (const auto& n : cluster.nodes()) {
    if (!(n->machine == first)) {
      return false;
    }
  }
  return true;
}

}  // namespace app

int main() {
  using namespace app;
  constexpr std::size_t kBatch = 100;
  constexpr std::size_t kBatches = 10;

  // Caller-owned operations first: declared before the cluster, they outlive the groups that may
  // hold them (the cluster stops its groups, completing what they hold, before they go).
  std::array<Proposal, kBatch> batch;
  IndexRead leader_read;
  IndexRead follower_read;
  LeaseRead lease_read;
  LeaseRead revoked_read;
  LeaseWrite lease_write;
  Transfer transfer;
  Proposal last_write;

  tenure::raft::RaftConfig config;  // election timeout 150-300 ms, heartbeats every 30 ms
  config.group = 1;
  Cluster cluster(config);
  Story story(cluster.clock());
  std::printf(
      "tenure-custom-policies: 3 nodes on a user-written clock, wire, log, classifier "
      "and key-value store; t = simulated time\n");

  // ---------------------------------------------------------------------------------------------
  Story::heading("1. elect a leader");
  const bool ready = cluster.run_until(
      [&] {
        Node* l = cluster.leader();
        return l != nullptr && l->group.leader_term() != 0;
      },
      5s);
  Node* leader = cluster.leader();
  if (!story.claim(ready && leader != nullptr,
                   "node %llu leads term %llu, its no-op applied (leader_term() = %llu)",
                   u(leader ? leader->group.self() : 0), u(leader ? leader->group.term() : 0),
                   u(leader ? leader->group.leader_term() : 0))) {
    return 1;
  }
  Group& lg = leader->group;
  bool followers_know = true;
  for (const auto& n : cluster.nodes()) {
    if (n.get() != leader) {
      followers_know = followers_know && n->group.role() == tenure::raft::Role::follower &&
                       n->group.leader() == lg.self() && n->group.term() == lg.term();
    }
  }
  if (!story.claim(followers_know, "the other two follow it in the same term")) {
    return 1;
  }
  Node& follower = cluster.node(lg.self() % 3 + 1);  // the node after the leader
  Node& third = cluster.node(follower.group.self() % 3 + 1);

  // ---------------------------------------------------------------------------------------------
  Story::heading("2. a write commits only once a majority has it durable");
  const LogIndex commit_before = lg.commit_index();
  for (std::size_t i = 0; i < kBatch; ++i) {
    lg.propose(batch[i].op, kv_payload("k" + std::to_string(i % 10), "v" + std::to_string(i)));
  }
  lg.flush();         // the batch leaves in one append per follower
  cluster.deliver();  // ... and arrives, but no disk has synced
  bool none_done = true;
  for (const Proposal& p : batch) {
    none_done = none_done && !p.outcome;
  }
  if (!story.claim(
          none_done && lg.commit_index() == commit_before &&
              follower.storage.last_index() == lg.last_index() &&
              third.storage.last_index() == lg.last_index() &&
              leader->storage.durable_seq() < leader->storage.issued() &&
              follower.storage.durable_seq() < follower.storage.issued(),
          "100 proposals appended on all nodes (last index %llu), none durable: commit stays %llu",
          u(follower.storage.last_index()), u(lg.commit_index()))) {
    return 1;
  }
  cluster.settle();  // disks sync, on_persisted() releases the acknowledgements, entries commit
  bool all_done = true;
  for (const Proposal& p : batch) {
    all_done = all_done && p.ok();
  }
  if (!story.claim(all_done && lg.commit_index() == lg.last_index(),
                   "sync + on_persisted(): acknowledgements leave, all 100 commit (index %llu)",
                   u(lg.commit_index()))) {
    return 1;
  }

  // ---------------------------------------------------------------------------------------------
  Story::heading("3. commit 1000 writes");
  bool in_order = true;
  LogIndex last_index = 0;
  std::uint64_t expected_version = 0;
  for (std::size_t b = 0; b < kBatches; ++b) {
    if (b != 0) {  // batch 0 was proposed above
      for (std::size_t i = 0; i < kBatch; ++i) {
        const std::size_t n = b * kBatch + i;
        batch[i].outcome.reset();  // completed: the operation may be reused
        lg.propose(batch[i].op, kv_payload("k" + std::to_string(n % 10), "v" + std::to_string(n)));
      }
      lg.flush();
      cluster.step();  // 1 ms: deliver, sync, commit, apply
    }
    for (const Proposal& p : batch) {
      in_order = in_order && p.ok() && p.outcome->value().index > last_index &&
                 p.outcome->value().result == ++expected_version;
      last_index = p.ok() ? p.outcome->value().index : last_index;
    }
  }
  if (!story.claim(in_order && expected_version == kBatch * kBatches,
                   "1000 proposals completed in order; result words (the store's version) "
                   "1..1000; last at index %llu",
                   u(last_index))) {
    return 1;
  }
  cluster.run_for(config.heartbeat_interval * 2);  // followers learn the commit index and apply
  if (!story.claim(stores_agree(cluster) && leader->machine.version() == 1000 &&
                       leader->machine.applied_index() == last_index,
                   "all three stores equal: version %llu, applied through %llu, k3 = %s",
                   u(follower.machine.version()), u(follower.machine.applied_index()),
                   follower.machine.get("k3").c_str())) {
    return 1;
  }

  // ---------------------------------------------------------------------------------------------
  Story::heading("4. linearizable reads through ReadIndex");
  lg.read_index(leader_read.op);
  lg.flush();  // one heartbeat round confirms every read queued before it
  cluster.settle();
  if (!story.claim(leader_read.ok() && leader_read.outcome->value() >= last_index &&
                       lg.last_applied() >= leader_read.outcome->value(),
                   "leader: read index %llu >= last commit %llu, applied: read k3 = %s",
                   u(leader_read.ok() ? leader_read.outcome->value() : 0), u(last_index),
                   leader->machine.get("k3").c_str())) {
    return 1;
  }
  follower.group.read_index(follower_read.op);
  follower.group.flush();  // forwarded to the leader in a batch
  cluster.settle();
  if (!story.claim(follower_read.ok() && follower_read.outcome->value() >= last_index &&
                       follower.group.last_applied() >= follower_read.outcome->value() &&
                       follower.machine.get("k3") == leader->machine.get("k3"),
                   "follower %llu: forwarded, read index %llu, applied: k3 = %s there too",
                   u(follower.group.self()),
                   u(follower_read.ok() ? follower_read.outcome->value() : 0),
                   follower.machine.get("k3").c_str())) {
    return 1;
  }

  // ---------------------------------------------------------------------------------------------
  Story::heading("5. lease reads from the leader's memory");
  Coordinator& lease = leader->lease;
  const auto fast = lease.lease_read();  // any thread: atomics and one clock read
  if (!story.claim(fast.has_value() && fast.value() == lg.applied_index(),
                   "lease_read() -> applied index %llu, no message sent (lease %.3f ms)",
                   u(fast ? fast.value() : 0),
                   static_cast<double>(lease.lease_duration().count()) / 1e6)) {
    return 1;
  }
  const auto frames_before = cluster.wire().frames();
  lease.read(lease_read.op);  // the lease when it holds, else ReadIndex
  if (!story.claim(lease_read.ok() && lease_read.op.served_by_lease() &&
                       cluster.wire().frames() == frames_before,
                   "read() completes at once, served_by_lease(): index %llu",
                   u(lease_read.ok() ? lease_read.outcome->value() : 0))) {
    return 1;
  }
  const auto follower_fast = follower.lease.lease_read();
  if (!story.claim(
          follower_fast.code() == errc::not_leader && follower_fast.leader_hint() == lg.self(),
          "on follower %llu: lease_read() -> not_leader, hint: node %llu", u(follower.group.self()),
          u(follower_fast.leader_hint()))) {
    return 1;
  }

  // ---------------------------------------------------------------------------------------------
  Story::heading("6. errors: only a leadership loss invalidates the lease");
  const ErrorClass fenced_class = AppErrorClassifier::classify(AppError::fenced);
  const ErrorClass conflict_class = AppErrorClassifier::classify(AppError::conflict);
  const ErrorClass busy_class = AppErrorClassifier::classify(AppError::busy);
  const ErrorClass not_leader_class = AppErrorClassifier::classify(errc::not_leader);
  const ErrorClass refused_class =
      AppErrorClassifier::classify(std::make_error_code(std::errc::connection_refused));
  if (!story.claim(fenced_class == ErrorClass::leadership_lost &&
                       conflict_class == ErrorClass::permanent &&
                       busy_class == ErrorClass::retryable &&
                       not_leader_class == ErrorClass::leadership_lost &&
                       refused_class == ErrorClass::retryable,
                   "classify: fenced %s, conflict %s, busy %s, errc::not_leader %s, "
                   "ECONNREFUSED %s",
                   class_name(fenced_class), class_name(conflict_class), class_name(busy_class),
                   class_name(not_leader_class), class_name(refused_class))) {
    return 1;
  }
  // A write through the lease: its commit extends the caller-side lease.
  lease_write.lease = &lease;
  lease_write.anchor = lease.begin_write();  // before the proposal leaves
  lg.propose(lease_write.op, kv_payload("owner", "node" + std::to_string(lg.self())));
  lg.flush();
  cluster.settle();
  const auto expiry =
      tenure::raft::to_nanos<StepClock>(lease_write.anchor.at) + lease.lease_duration().count();
  if (!story.claim(lease_write.outcome && lease_write.outcome->has_value() &&
                       lease.state().expiry() == expiry,
                   "a write commits: on_write_committed() extends the caller-side lease to "
                   "t = %.3f ms",
                   static_cast<double>(expiry) / 1e6)) {
    return 1;
  }
  const auto generation = lease.state().generation();
  lease.on_error(AppError::conflict);
  if (!story.claim(lease.state().generation() == generation && lease.state().expiry() == expiry,
                   "on_error(conflict): generation stays %llu, the lease is kept", u(generation))) {
    return 1;
  }
  lease.on_error(AppError::fenced);
  if (!story.claim(lease.state().generation() == generation + 1 &&
                       lease.state().expiry() == tenure::lease::LeaseState::kNone,
                   "on_error(fenced): generation %llu -> %llu, the caller-side lease is gone",
                   u(generation), u(lease.state().generation()))) {
    return 1;
  }
  if (!story.claim(lease.lease_read().has_value(),
                   "lease_read() still served: the group's quorum-ack lease is not the "
                   "caller's to end")) {
    return 1;
  }
  // To stop fast reads after such an error, end every lease of this term: reads then go through
  // ReadIndex, which proves leadership on each round.
  const Term fenced_term = lg.term();
  lease.revoke(fenced_term);
  const auto after_revoke = lease.lease_read();
  lease.read(revoked_read.op);
  lg.flush();  // read() queued a ReadIndex round on the group: send it
  cluster.settle();
  if (!story.claim(after_revoke.code() == errc::lease_expired && revoked_read.ok() &&
                       !revoked_read.op.served_by_lease(),
                   "revoke(%llu): lease_read() -> lease_expired; read() goes through ReadIndex: "
                   "index %llu",
                   u(fenced_term), u(revoked_read.ok() ? revoked_read.outcome->value() : 0))) {
    return 1;
  }

  // ---------------------------------------------------------------------------------------------
  Story::heading("7. leadership transfer");
  const NodeId old_id = lg.self();
  const NodeId target = follower.group.self();
  const Term old_term = lg.term();
  lg.transfer_leadership(transfer.op, target);
  const auto during = lease.lease_read();
  if (!story.claim(!transfer.outcome && lg.leader_term() == 0 && during.code() == errc::not_leader,
                   "transfer to node %llu started: the lease is revoked at once "
                   "(leader_term() = 0, lease_read() -> not_leader)",
                   u(target))) {
    return 1;
  }
  const bool transferred = cluster.run_until([&] { return transfer.outcome.has_value(); }, 2s);
  Node* new_leader = cluster.leader();
  if (!story.claim(
          transferred && transfer.ok() && new_leader == &follower &&
              follower.group.term() > old_term && cluster.node(old_id).group.leader() == target,
          "transfer completed: node %llu leads term %llu, node %llu follows it",
          u(new_leader ? new_leader->group.self() : 0), u(follower.group.term()), u(old_id))) {
    return 1;
  }
  const bool serving =
      cluster.run_until([&] { return follower.lease.lease_read().has_value(); }, 1s);
  const auto old_read = cluster.node(old_id).lease.lease_read();
  if (!story.claim(
          serving && old_read.code() == errc::not_leader && old_read.leader_hint() == target,
          "node %llu serves lease reads; node %llu answers not_leader, hint: node %llu", u(target),
          u(old_id), u(old_read.leader_hint()))) {
    return 1;
  }
  follower.group.propose(last_write.op, kv_payload("k3", "after-transfer"));
  follower.group.flush();
  cluster.settle();
  cluster.run_for(config.heartbeat_interval * 2);
  if (!story.claim(last_write.ok() && stores_agree(cluster) && third.machine.version() == 1002 &&
                       third.machine.get("k3") == "after-transfer",
                   "a write through the new leader: all three stores equal, version %llu, "
                   "k3 = %s",
                   u(third.machine.version()), third.machine.get("k3").c_str())) {
    return 1;
  }

  if (!story.claim(cluster.wire().dropped() == 0 && cluster.undecodable() == 0,
                   "%llu frames (%llu KiB) on the wire, none dropped or undecodable; "
                   "%llu syncs on node %llu's disk",
                   u(cluster.wire().frames()), u(cluster.wire().bytes() / 1024),
                   u(cluster.node(old_id).storage.syncs()), u(old_id))) {
    return 1;
  }
  std::printf("custom_policies: all %d claims hold\n", story.claims());
  return 0;
}
