// RaftHarness: drives RaftGroups one message at a time, in the style of etcd's raft_paper_test.go.
//
// Every group runs on its own ManualClock, MemoryStorage and RecordingStateMachine, and sends into
// a CapturingTransport that keeps each message (entries and payloads copied) until a test looks
// at it, delivers it, rewrites it or drops it. Nothing moves unless the test says so: no network
// delays, no ticks, no randomness but the groups' own seeded election timeouts.
//
// Lifetime rule for tests: operations (ProposeOperation, ReadIndexOperation, TransferOperation)
// must outlive the groups that may hold them, so declare them (or their containers) *before* the
// harness: a group's destructor completes whatever it still holds with errc::stopped.
#pragma once

#include <raft/config.hpp>
#include <raft/manual_clock.hpp>
#include <raft/memory_storage.hpp>
#include <raft/message.hpp>
#include <raft/operations.hpp>
#include <raft/policies.hpp>
#include <raft/raft_group.hpp>
#include <raft/result.hpp>
#include <raft/storage.hpp>
#include <raft/types.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tenure::testing {

// ---------------------------------------------------------------------------------------------
// Payloads
// ---------------------------------------------------------------------------------------------

using Bytes = std::vector<std::byte>;

inline Bytes bytes_of(std::string_view text) {
  Bytes out(text.size());
  std::transform(text.begin(), text.end(), out.begin(),
                 [](char c) { return static_cast<std::byte>(c); });
  return out;
}

/// An FNV-1a digest of a payload: compact enough to compare across nodes and print.
inline std::uint64_t digest_of(std::span<const std::byte> payload) noexcept {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (std::byte b : payload) {
    h = (h ^ static_cast<std::uint64_t>(b)) * 0x100000001b3ull;
  }
  return h;
}

// ---------------------------------------------------------------------------------------------
// Messages that outlive the send() call
// ---------------------------------------------------------------------------------------------

/// A log entry that owns its payload.
struct OwnedEntry {
  raft::Term term = 0;
  raft::LogIndex index = 0;
  raft::EntryType type = raft::EntryType::normal;
  Bytes payload;
};

/// A message as a group sent it, with its entries and their payloads copied: valid as long as
/// this object lives. `get()` returns a Message whose entry views point into this object.
class CapturedMessage {
 public:
  explicit CapturedMessage(const raft::Message& m) : message_(m) {
    entries_.reserve(m.entries.size());
    for (const raft::EntryView& e : m.entries) {
      entries_.push_back(
          OwnedEntry{e.term, e.index, e.type, Bytes(e.payload.begin(), e.payload.end())});
    }
    rebind();
  }
  CapturedMessage(const CapturedMessage& other)
      : message_(other.message_), entries_(other.entries_) {
    rebind();
  }
  CapturedMessage& operator=(const CapturedMessage& other) {
    if (this != &other) {
      message_ = other.message_;
      entries_ = other.entries_;
      rebind();
    }
    return *this;
  }
  CapturedMessage(CapturedMessage&& other) noexcept
      : message_(other.message_), entries_(std::move(other.entries_)) {
    rebind();
  }
  CapturedMessage& operator=(CapturedMessage&& other) noexcept {
    message_ = other.message_;
    entries_ = std::move(other.entries_);
    rebind();
    return *this;
  }

  const raft::Message& get() const noexcept { return message_; }
  const raft::Message* operator->() const noexcept { return &message_; }
  const std::vector<OwnedEntry>& entries() const noexcept { return entries_; }

  /// A copy whose header fields `edit` may change (entries are kept).
  template <class Edit>
  CapturedMessage with(Edit&& edit) const {
    CapturedMessage copy(*this);
    edit(copy.message_);
    copy.rebind();
    return copy;
  }

 private:
  void rebind() {
    views_.clear();
    views_.reserve(entries_.size());
    for (const OwnedEntry& e : entries_) {
      views_.push_back(raft::EntryView{e.term, e.index, e.type, e.payload});
    }
    message_.entries = std::span<const raft::EntryView>(views_.data(), views_.size());
  }

  raft::Message message_;
  std::vector<OwnedEntry> entries_;
  std::vector<raft::EntryView> views_;
};

/// The Transport policy of the harness: records every message sent, in order.
class CapturingTransport {
 public:
  void send(const raft::Message& m) { sent_.emplace_back(m); }

  const std::vector<CapturedMessage>& sent() const noexcept { return sent_; }
  std::size_t size() const noexcept { return sent_.size(); }
  bool empty() const noexcept { return sent_.empty(); }
  void clear() noexcept { sent_.clear(); }

  /// Removes and returns every message sent so far.
  std::vector<CapturedMessage> take() { return std::exchange(sent_, {}); }

  /// Removes and returns the messages for which `keep(message)` holds; the others stay queued.
  template <class Predicate>
  std::vector<CapturedMessage> take_if(Predicate&& keep) {
    std::vector<CapturedMessage> taken;
    std::vector<CapturedMessage> rest;
    for (CapturedMessage& m : sent_) {
      if (keep(m.get())) {
        taken.push_back(std::move(m));
      } else {
        rest.push_back(std::move(m));
      }
    }
    sent_ = std::move(rest);
    return taken;
  }

  std::vector<CapturedMessage> take(raft::MessageType type) {
    return take_if([type](const raft::Message& m) { return m.type == type; });
  }

  /// How many queued messages satisfy `match`.
  template <class Predicate>
  std::size_t count_if(Predicate&& match) const {
    return static_cast<std::size_t>(std::count_if(
        sent_.begin(), sent_.end(), [&](const CapturedMessage& m) { return match(m.get()); }));
  }
  std::size_t count(raft::MessageType type) const {
    return count_if([type](const raft::Message& m) { return m.type == type; });
  }

 private:
  std::vector<CapturedMessage> sent_;
};

// ---------------------------------------------------------------------------------------------
// State machine
// ---------------------------------------------------------------------------------------------

/// One applied entry as the state machine saw it.
struct AppliedEntry {
  raft::LogIndex index = 0;
  Bytes payload;

  friend bool operator==(const AppliedEntry&, const AppliedEntry&) = default;
};

/// A StateMachine that records every (index, payload) it is handed, in order. Its result word is
/// result_for(index), so a test can tell it came from this machine. Default-constructible, so it
/// also serves as the machine of a SimCluster.
class RecordingStateMachine {
 public:
  static constexpr std::uint64_t result_for(raft::LogIndex index) noexcept {
    return index * 1000 + 7;
  }

  std::uint64_t apply(raft::LogIndex index, std::span<const std::byte> payload) {
    applied_.push_back(AppliedEntry{index, Bytes(payload.begin(), payload.end())});
    return result_for(index);
  }

  const std::vector<AppliedEntry>& applied() const noexcept { return applied_; }

  /// The payload applied at `index`, if a normal entry was applied there.
  const Bytes* payload_at(raft::LogIndex index) const noexcept {
    const auto it =
        std::lower_bound(applied_.begin(), applied_.end(), index,
                         [](const AppliedEntry& e, raft::LogIndex i) { return e.index < i; });
    return it != applied_.end() && it->index == index ? &it->payload : nullptr;
  }

  /// Whether every index was applied once, in increasing order.
  bool in_order() const noexcept {
    for (std::size_t i = 1; i < applied_.size(); ++i) {
      if (applied_[i].index <= applied_[i - 1].index) {
        return false;
      }
    }
    return true;
  }

 private:
  std::vector<AppliedEntry> applied_;
};

// ---------------------------------------------------------------------------------------------
// Policies and groups
// ---------------------------------------------------------------------------------------------

struct HarnessPolicies : raft::DefaultPolicies {
  using clock_type = raft::ManualClock;
  using transport_type = CapturingTransport;
  using storage_type = raft::MemoryStorage;
  using state_machine_type = RecordingStateMachine;
};
using HarnessGroup = raft::RaftGroup<HarnessPolicies>;
using TimePoint = raft::ManualClock::time_point;

/// Timeouts every harness test reasons with: elections in [100 ms, 200 ms), heartbeats every
/// 20 ms.
inline raft::RaftConfig harness_config() {
  raft::RaftConfig c;
  c.election_timeout_min = std::chrono::milliseconds(100);
  c.election_timeout_max = std::chrono::milliseconds(200);
  c.heartbeat_interval = std::chrono::milliseconds(20);
  c.group = 1;
  return c;
}

/// How one node starts: its configuration (self and voters are filled in), its storage, and an
/// optional log and hard state written (durably) before the group is built.
struct NodeOptions {
  raft::RaftConfig config = harness_config();
  raft::MemoryStorage::Options storage{};
  /// The terms of a log to preload: entry i+1 has term log_terms[i] and payload "<index>".
  std::vector<raft::Term> log_terms;
  raft::HardState hard_state{};
};

/// Builds a message by hand, as a peer would send it.
inline raft::Message make_message(raft::MessageType type, raft::NodeId from, raft::NodeId to,
                                  raft::Term term, raft::GroupId group = 1) {
  raft::Message m;
  m.type = type;
  m.from = from;
  m.to = to;
  m.term = term;
  m.group = group;
  return m;
}

/// One node: clock, transport, storage, state machine and group. Not movable (the group keeps
/// references to the rest).
class TestNode {
 public:
  TestNode(raft::NodeId id, std::vector<raft::NodeId> voters, NodeOptions options = {})
      : id_(id), options_(std::move(options)), storage_(options_.storage) {
    options_.config.self = id;
    options_.config.voters = std::move(voters);
    if (options_.config.random_seed == 0) {
      options_.config.random_seed = 0x5eed0000 + id;
    }
    preload();
    start();
  }

  TestNode(const TestNode&) = delete;
  TestNode& operator=(const TestNode&) = delete;

  raft::NodeId id() const noexcept { return id_; }
  HarnessGroup& group() noexcept { return *group_; }
  const HarnessGroup& group() const noexcept { return *group_; }
  HarnessGroup* operator->() noexcept { return group_.get(); }
  raft::ManualClock& clock() noexcept { return clock_; }
  CapturingTransport& transport() noexcept { return transport_; }
  raft::MemoryStorage& storage() noexcept { return storage_; }
  RecordingStateMachine& machine() noexcept { return *machine_; }
  const raft::RaftConfig& config() const noexcept { return options_.config; }
  bool up() const noexcept { return up_; }

  /// Hands a captured message to this node's group.
  void deliver(const CapturedMessage& m) { group_->step(m.get()); }
  void deliver(const raft::Message& m) { group_->step(m); }

  /// Lets `d` pass on this node's clock and ticks once.
  void advance(std::chrono::nanoseconds d) {
    clock_.advance(d);
    group_->tick();
  }

  /// Lets `d` pass in ticks of `step`, ticking after each; stops early (returning true) when
  /// `until()` holds after a tick.
  template <class Predicate>
  bool advance_until(std::chrono::nanoseconds d, std::chrono::nanoseconds step, Predicate&& until) {
    for (std::chrono::nanoseconds passed{0}; passed < d; passed += step) {
      advance(step);
      if (until()) {
        return true;
      }
    }
    return false;
  }

  /// Makes every storage write durable and tells the group (manual_sync storage).
  void sync() {
    storage_.sync();
    group_->on_persisted();
  }

  /// A crash: the group stops and receives nothing until restart(); with manual_sync storage,
  /// every write that was not durable is lost.
  void crash() {
    group_->stop();
    storage_.crash();
    up_ = false;
  }

  /// A new group and a fresh state machine over the same storage, as after a process restart
  /// (restart() without crash() keeps even the writes that were not durable).
  void restart() {
    group_.reset();
    start();
  }

  /// The terms of the log, index 1 first (the log must not be compacted).
  std::vector<raft::Term> log_terms() const {
    std::vector<raft::Term> terms;
    for (raft::LogIndex i = storage_.first_index(); i <= storage_.last_index(); ++i) {
      terms.push_back(storage_.entry(i).term);
    }
    return terms;
  }

 private:
  void preload() {
    std::vector<Bytes> payloads;
    std::vector<raft::EntryView> views;
    payloads.reserve(options_.log_terms.size());
    for (std::size_t i = 0; i < options_.log_terms.size(); ++i) {
      payloads.push_back(bytes_of(std::to_string(i + 1)));
    }
    for (std::size_t i = 0; i < options_.log_terms.size(); ++i) {
      views.push_back(
          raft::EntryView{options_.log_terms[i], i + 1, raft::EntryType::normal, payloads[i]});
    }
    if (!views.empty()) {
      (void)storage_.append(views);
    }
    if (options_.hard_state != raft::HardState{}) {
      (void)storage_.save_hard_state(options_.hard_state);
    }
    storage_.sync();
  }

  void start() {
    machine_ = std::make_unique<RecordingStateMachine>();
    group_ =
        std::make_unique<HarnessGroup>(options_.config, clock_, transport_, storage_, *machine_);
    up_ = true;
  }

  raft::NodeId id_;
  NodeOptions options_;
  raft::ManualClock clock_;
  CapturingTransport transport_;
  raft::MemoryStorage storage_;
  std::unique_ptr<RecordingStateMachine> machine_;
  std::unique_ptr<HarnessGroup> group_;
  bool up_ = true;
};

/// Nodes 1..n that exchange messages only when a test says so, etcd's `network` in miniature.
/// All clocks move together (advance_all); deliver_all() delivers every queued message, and
/// whatever that produces, synchronously and in a fixed order.
class Harness {
 public:
  /// `options(id)` gives each node's NodeOptions (the same for all by default).
  template <class Options>
  Harness(std::size_t n, Options&& options) {
    for (std::size_t i = 1; i <= n; ++i) {
      voters_.push_back(static_cast<raft::NodeId>(i));
    }
    for (raft::NodeId id : voters_) {
      nodes_.push_back(std::make_unique<TestNode>(id, voters_, options(id)));
    }
  }
  explicit Harness(std::size_t n, NodeOptions options = {})
      : Harness(n, [&](raft::NodeId) { return options; }) {}

  TestNode& node(raft::NodeId id) { return *nodes_.at(static_cast<std::size_t>(id - 1)); }
  HarnessGroup& group(raft::NodeId id) { return node(id).group(); }
  std::size_t size() const noexcept { return nodes_.size(); }
  const std::vector<raft::NodeId>& ids() const noexcept { return voters_; }
  std::chrono::nanoseconds elapsed() const noexcept { return elapsed_; }

  /// Moves every clock by `d` without ticking.
  void advance_all(std::chrono::nanoseconds d) {
    for (auto& n : nodes_) {
      n->clock().advance(d);
    }
    elapsed_ += d;
  }
  /// Moves every clock by `d`, then ticks every live node.
  void tick_all(std::chrono::nanoseconds d) {
    advance_all(d);
    for (auto& n : nodes_) {
      if (n->up()) {
        n->group().tick();
      }
    }
  }

  /// Messages from `from` to `to` are dropped by deliver_all (one way).
  void cut(raft::NodeId from, raft::NodeId to) { cut_.emplace_back(from, to); }
  void isolate(raft::NodeId id) {
    for (raft::NodeId other : voters_) {
      if (other != id) {
        cut(id, other);
        cut(other, id);
      }
    }
  }
  void heal() { cut_.clear(); }
  bool is_cut(raft::NodeId from, raft::NodeId to) const {
    return std::find(cut_.begin(), cut_.end(), std::pair{from, to}) != cut_.end();
  }

  /// Delivers every queued message, and every message that produces, until none is left.
  /// Messages on cut links, to crashed nodes, or for which `drop(message)` holds are discarded.
  /// Returns how many were delivered.
  template <class Drop>
  std::size_t deliver_all(Drop&& drop, std::size_t limit = 100'000) {
    std::size_t delivered = 0;
    bool any = true;
    while (any) {
      any = false;
      for (auto& n : nodes_) {
        for (const CapturedMessage& m : n->transport().take()) {
          any = true;
          if (m->to == raft::kNoNode || m->to > nodes_.size() || is_cut(m->from, m->to) ||
              drop(m.get())) {
            continue;
          }
          TestNode& to = node(m->to);
          if (!to.up()) {
            continue;
          }
          to.deliver(m);
          if (++delivered > limit) {
            throw std::runtime_error("Harness::deliver_all: messages never stop");
          }
        }
      }
    }
    return delivered;
  }
  std::size_t deliver_all() {
    return deliver_all([](const raft::Message&) { return false; });
  }

  /// Makes `id` leader: lets every node's post-start vote hold-off pass, has `id` campaign, and
  /// exchanges messages until quiet. Returns whether `id` leads and has committed in its term.
  bool elect(raft::NodeId id) {
    const auto hold_off = node(id).config().election_timeout_min;
    if (elapsed_ < hold_off) {
      advance_all(hold_off - elapsed_);
    }
    if (group(id).campaign()) {
      return false;
    }
    deliver_all();
    return group(id).role() == raft::Role::leader && group(id).leader_term() == group(id).term();
  }

  /// Discards every queued message of every node.
  void clear_all() {
    for (auto& n : nodes_) {
      n->transport().clear();
    }
  }

 private:
  std::vector<raft::NodeId> voters_;
  std::vector<std::unique_ptr<TestNode>> nodes_;
  std::vector<std::pair<raft::NodeId, raft::NodeId>> cut_;
  std::chrono::nanoseconds elapsed_{0};
};

// ---------------------------------------------------------------------------------------------
// Operations whose outcome a test inspects
// ---------------------------------------------------------------------------------------------

/// A caller-owned operation with a completion that records its outcome, how often it ran (must
/// be once), and when (on `clock`, if given). Not movable: keep it in a std::deque or on the
/// stack, declared before the groups that may hold it.
template <class Op, class T>
class Tracked {
 public:
  explicit Tracked(const raft::ManualClock* clock = nullptr) noexcept
      : clock_(clock), op(raft::Completion<T>{&done, this}) {}
  Tracked(const Tracked&) = delete;
  Tracked& operator=(const Tracked&) = delete;

  const std::optional<raft::Result<T>>& outcome() const noexcept { return outcome_; }
  bool completed() const noexcept { return outcome_.has_value(); }
  bool succeeded() const noexcept { return outcome_.has_value() && outcome_->has_value(); }
  /// The error code; success when pending or succeeded.
  std::error_code code() const noexcept {
    return outcome_.has_value() ? outcome_->code() : std::error_code{};
  }
  raft::NodeId leader_hint() const noexcept {
    return outcome_.has_value() ? outcome_->leader_hint() : raft::kNoNode;
  }
  int calls() const noexcept { return calls_; }
  std::optional<TimePoint> completed_at() const noexcept { return completed_at_; }

 private:
  static void done(void* self, raft::Result<T> r) noexcept {
    auto& t = *static_cast<Tracked*>(self);
    ++t.calls_;
    t.outcome_.emplace(std::move(r));
    if (t.clock_ != nullptr) {
      t.completed_at_ = t.clock_->now();
    }
  }

  const raft::ManualClock* clock_;
  std::optional<raft::Result<T>> outcome_;
  int calls_ = 0;
  std::optional<TimePoint> completed_at_;

 public:
  Op op;
};

using TrackedPropose = Tracked<raft::ProposeOperation, raft::ProposeResult>;
using TrackedRead = Tracked<raft::ReadIndexOperation, raft::LogIndex>;
using TrackedTransfer = Tracked<raft::TransferOperation, void>;

}  // namespace tenure::testing
