// check_linearizability: decides whether a key-value client history is linearizable.
//
// The algorithm is Wing & Gong's search ("Testing and verifying concurrent objects", 1993) with
// Lowe's memoization ("Testing for linearizability", 2017), the combination Porcupine uses:
//   1. Partition by key. Linearizability is local (P-compositional): a history of a key-value
//      store is linearizable iff each key's sub-history is, so each key is searched alone.
//   2. Per key, lay the calls and returns on one time line. Repeatedly take the earliest point
//      of the line: a call there may be linearized next if the sequential model accepts it; a
//      return there means its operation had to be linearized before now, so the last choice is
//      undone (backtracking). A choice is skipped when the pair (set of operations linearized,
//      model value) has been reached before: what follows depends on nothing else.
//   3. Ambiguous writes (timed out: may have taken effect at any time after their call, or
//      never) are what makes such searches blow up. detail::prepare_key shrinks them by exact
//      reductions before the search, and the memo skips a state when one reached before differs
//      only by having fewer of them placed (detail::LinStateCache).
// The search is iterative (an explicit stack), so a long history cannot overflow the call stack.
// tests/unit/linearizability_test.cpp compares it against a plain exhaustive search.
#pragma once

#include <algorithm>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <ostream>
#include <span>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <raft/testing/kv_history.hpp>

namespace tenure::raft::testing {

/// Limits of the search. Deciding linearizability is NP-complete (Gibbons & Korach 1997), so a
/// pathological history must end with `unknown` rather than run forever.
///
/// A plain aggregate; no allocation.
struct CheckOptions {
  /// The most search states (set of operations linearized, value of the key) remembered for one
  /// key; reaching more ends that key's search with `unknown`. A linearizable history with a few
  /// concurrent clients needs about one state per operation, and refuting a wrong one a few
  /// times that. A state costs some 30-50 bytes and a microsecond or so (optimised build), so
  /// the default stops a key after roughly a second and 50 MB.
  std::size_t max_states_per_key = 1'000'000;
};

/// An operation of the checked history together with its position in it (`history[index]`).
/// A plain aggregate; no allocation.
struct KvHistoryEntry {
  std::size_t index = 0;
  KvOperation op{};
};

enum class LinearizabilityVerdict : std::uint8_t {
  linearizable,
  not_linearizable,
  unknown,  ///< the search budget of some key ran out before a verdict; no key was found wrong
};

inline constexpr const char* to_string(LinearizabilityVerdict v) noexcept {
  switch (v) {
    case LinearizabilityVerdict::linearizable:
      return "linearizable";
    case LinearizabilityVerdict::not_linearizable:
      return "not linearizable";
    case LinearizabilityVerdict::unknown:
      return "unknown";
  }
  return "invalid-verdict";
}

/// Why one key's sub-history is not linearizable: the furthest point in time the search reached.
/// Every operation whose return came before `unplaced`'s return is in `prefix` or not needed;
/// `unplaced` had returned, so it had to be linearized by then, and no order of the operations
/// invoked so far let it be. Where a single operation is wrong (a read of an impossible value),
/// that is the one `unplaced` names. A linearization exists up to `prefix` (leaving
/// `value_after_prefix`); from there neither `unplaced` nor any of `concurrent` leads to a
/// placement of `unplaced`.
///
/// A value type (copying copies its vectors); no internal synchronisation.
struct KvViolation {
  /// The operations of the key the search considered (failed operations, ambiguous reads and
  /// ambiguous writes shown irrelevant are not counted).
  std::size_t key_operations = 0;
  /// The longest linearizable prefix found that reaches `unplaced`'s return, in linearization
  /// order.
  std::vector<KvHistoryEntry> prefix;
  /// The key's value after `prefix` (kAbsent when absent).
  std::int64_t value_after_prefix = kAbsent;
  /// The operation that had to come next (it returned before any operation not in `prefix`
  /// or `concurrent` was invoked) and that no continuation of `prefix` could place.
  KvHistoryEntry unplaced{};
  /// The operations not in `prefix` invoked before `unplaced` returned: the other candidates at
  /// that point, none of which leads to a linearization.
  std::vector<KvHistoryEntry> concurrent;
};

/// The result of check_linearizability.
///
/// A value type (copying copies its vectors); no internal synchronisation. Print it with
/// to_string(report) or `<<`.
struct LinearizabilityReport {
  LinearizabilityVerdict verdict = LinearizabilityVerdict::linearizable;
  /// not_linearizable: the key found wrong. unknown: the first key whose budget ran out.
  std::uint64_t key = 0;
  /// Present exactly when verdict is not_linearizable.
  std::optional<KvViolation> violation;
  /// Operations searched: those given, less the ignored ones.
  std::size_t operations_checked = 0;
  /// Operations dropped as carrying no information: failed operations, ambiguous reads, and
  /// ambiguous writes whose value nothing could have observed.
  std::size_t operations_ignored = 0;
  /// Keys searched. The check stops at the first key found wrong (keys go in ascending order),
  /// so after a violation this and the counts above cover the keys up to that one.
  std::size_t keys_checked = 0;
  /// Search states remembered, summed over keys: a measure of the work done.
  std::size_t states_explored = 0;

  bool linearizable() const noexcept { return verdict == LinearizabilityVerdict::linearizable; }
};

namespace detail {

// SplitMix64's finaliser: a cheap bijective mixer for hashing.
inline constexpr std::uint64_t lin_mix(std::uint64_t x) noexcept {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

inline constexpr std::uint32_t kNoOp = std::numeric_limits<std::uint32_t>::max();

// One operation of one key's sub-history, reduced to what the search needs.
struct LinOp {
  KvOpKind kind = KvOpKind::get;
  bool ambiguous = false;  // else ok (failed ones never get here)
  // Has a return the search must place it before: every ok operation, and ambiguous writes
  // given a deadline (see prepare_key). The others may be placed after their call or never.
  bool required = true;
  bool cas_succeeded = false;
  std::int64_t value = kAbsent;  // canonical: see prepare_key
  std::int64_t expected = kAbsent;
  std::int64_t observed = kAbsent;
  std::size_t index = 0;     // in the caller's history
  std::size_t reported = 0;  // the history index to blame when stuck at this one's return
  // An ambiguous operation with the same effect as this one and an earlier call: this one may
  // be placed only after it (see prepare_key). kNoOp when none.
  std::uint32_t class_prev = kNoOp;
};

// The sequential model of one key: its value, kAbsent when absent. Returns whether `op` may take
// effect on `value` with the answer it got, and the value after it.
inline bool lin_step(const LinOp& op, std::int64_t value, std::int64_t& after) noexcept {
  after = value;
  switch (op.kind) {
    case KvOpKind::get:
      return value == op.observed;  // ambiguous reads were dropped
    case KvOpKind::put:
      after = op.value;
      return true;
    case KvOpKind::del:
      after = kAbsent;
      return true;
    case KvOpKind::cas:
      if (op.ambiguous) {
        // An ambiguous cas that finds another value changes nothing, which is the same as not
        // linearizing it at all; refusing it here keeps the search from exploring no-op copies.
        after = op.value;
        return value == op.expected;
      }
      if (op.cas_succeeded) {
        after = op.value;
        return value == op.expected;
      }
      return value != op.expected;
  }
  return false;
}

// The memo of Lowe's algorithm: the search states reached so far. A state is the set of
// operations placed and the value they leave. The set has two parts: the required operations
// placed, and the optional ones (ambiguous writes without a deadline). Optional operations may
// stay unplaced for ever, so a state dominates another with the same required part and value
// and a superset of its optional part: whatever the latter can still do, the former can too
// (it can place the extra writes, or interchangeable ones, later or never). A state dominated by
// one already reached is not explored again. With no optional operations this is Lowe's exact
// memo.
//
// Required operations are numbered in call order and placed roughly in that order, so their set
// is stored compressed: its count of leading all-ones words, then the words up to its last
// non-zero one, usually one or two words whatever the history's length. States with the same
// required part and value form a group, searched through a hash table; within a group the
// optional parts are compared one by one.
//
// Allocation: grows its vectors as states are added. Not thread-safe.
class LinStateCache {
 public:
  explicit LinStateCache(std::size_t optional_words) : optional_words_(optional_words) {}

  // States remembered (at most one per group when there are no optional operations).
  std::size_t size() const noexcept { return member_next_.size(); }

  // Adds the state unless a remembered one dominates it; returns whether it was added.
  // `required_hash` is a hash of `required` alone (maintained incrementally by the caller).
  bool insert(std::span<const std::uint64_t> required, std::uint64_t required_hash,
              std::int64_t value, std::span<const std::uint64_t> optional) {
    std::size_t full = 0;
    while (full < required.size() && required[full] == ~std::uint64_t{0}) {
      ++full;
    }
    std::size_t end = required.size();
    while (end > full && required[end - 1] == 0) {
      --end;
    }
    const std::span<const std::uint64_t> tail = required.subspan(full, end - full);
    const std::uint64_t hash = lin_mix(required_hash ^ lin_mix(static_cast<std::uint64_t>(value)));

    if ((groups_.size() + 1) * 2 > slots_.size()) {
      grow();
    }
    const std::size_t mask = slots_.size() - 1;
    std::size_t slot = static_cast<std::size_t>(hash) & mask;
    for (; slots_[slot] != 0; slot = (slot + 1) & mask) {
      Group& g = groups_[slots_[slot] - 1];
      if (g.hash == hash && g.value == value && g.full_words == full &&
          g.tail_words == tail.size() &&
          std::equal(tail.begin(), tail.end(),
                     tails_.begin() + static_cast<std::ptrdiff_t>(g.tail_offset))) {
        for (std::uint32_t m = g.members; m != kNoOp; m = member_next_[m]) {
          if (subset(m, optional)) {
            return false;
          }
        }
        g.members = add_member(optional, g.members);
        return true;
      }
    }
    groups_.push_back(
        Group{hash, value, tails_.size(), full, tail.size(), add_member(optional, kNoOp)});
    tails_.insert(tails_.end(), tail.begin(), tail.end());
    slots_[slot] = groups_.size();
    return true;
  }

 private:
  struct Group {
    std::uint64_t hash;
    std::int64_t value;
    std::size_t tail_offset;  // into tails_
    std::size_t full_words;
    std::size_t tail_words;
    std::uint32_t members;  // the first of its optional parts, chained through member_next_
  };

  // Whether member m's optional part is a subset of `optional`.
  bool subset(std::uint32_t m, std::span<const std::uint64_t> optional) const noexcept {
    const std::uint64_t* words = member_sets_.data() + std::size_t{m} * optional_words_;
    for (std::size_t i = 0; i < optional_words_; ++i) {
      if ((words[i] & ~optional[i]) != 0) {
        return false;
      }
    }
    return true;
  }

  std::uint32_t add_member(std::span<const std::uint64_t> optional, std::uint32_t next) {
    member_sets_.insert(member_sets_.end(), optional.begin(), optional.end());
    member_next_.push_back(next);
    return static_cast<std::uint32_t>(member_next_.size() - 1);
  }

  void grow() {
    const std::size_t capacity = slots_.empty() ? 1024 : slots_.size() * 2;
    slots_.assign(capacity, 0);
    const std::size_t mask = capacity - 1;
    for (std::size_t i = 0; i < groups_.size(); ++i) {
      std::size_t slot = static_cast<std::size_t>(groups_[i].hash) & mask;
      while (slots_[slot] != 0) {
        slot = (slot + 1) & mask;
      }
      slots_[slot] = i + 1;
    }
  }

  std::size_t optional_words_;
  std::vector<Group> groups_;
  std::vector<std::uint64_t> tails_;
  std::vector<std::size_t> slots_;          // open addressing; 0 empty, else group index + 1
  std::vector<std::uint64_t> member_sets_;  // optional_words_ per member
  std::vector<std::uint32_t> member_next_;  // next member of the same group, kNoOp at the end
};

// What the search of one key concluded.
struct KeyVerdict {
  LinearizabilityVerdict verdict = LinearizabilityVerdict::linearizable;
  std::size_t states = 0;
  std::optional<KvViolation> violation;
};

// The search over one key's sub-history (Wing & Gong with Lowe's memo). Calls and returns sit
// in a doubly linked list in time order; placing an operation unlinks its call and return
// ("lift"), backtracking relinks them in reverse order, which a doubly linked list undoes
// exactly. The candidates at each step are the calls before the first return; required ones
// are tried before optional ones, so that the states reached first carry the fewest optional
// writes and dominate the rest. Not thread-safe; allocates at construction and as the memo
// grows.
class KeySearch {
 public:
  // `ops` in call order; `calls`/`rets` their instants (rets only where required).
  KeySearch(std::vector<LinOp> ops, std::span<const std::int64_t> calls,
            std::span<const std::int64_t> rets)
      : ops_(std::move(ops)),
        slot_(ops_.size()),
        call_entry_(ops_.size()),
        ret_entry_(ops_.size(), kNoOp) {
    struct Point {
      std::int64_t time;
      bool is_return;
      std::uint32_t op;
    };
    std::vector<Point> points;
    points.reserve(ops_.size() * 2);
    for (std::uint32_t i = 0; i < ops_.size(); ++i) {
      points.push_back({calls[i], false, i});
      if (ops_[i].required) {
        points.push_back({rets[i], true, i});
        zobrist_.push_back(lin_mix(0x6a09e667f3bcc909ull + required_));
        slot_[i] = static_cast<std::uint32_t>(required_++);
      } else {
        slot_[i] = static_cast<std::uint32_t>(optional_++);
      }
    }
    // A call at the same instant as a return counts as concurrent with it (calls sort first):
    // instants this close cannot be ordered, so the check does not presume an order.
    std::sort(points.begin(), points.end(), [](const Point& a, const Point& b) {
      if (a.time != b.time) {
        return a.time < b.time;
      }
      if (a.is_return != b.is_return) {
        return !a.is_return;
      }
      return a.op < b.op;
    });
    // Entry 0 is the head sentinel, entry size+1 the tail sentinel.
    const std::size_t n = points.size();
    next_.resize(n + 2);
    prev_.resize(n + 2);
    entry_op_.resize(n + 2, 0);
    entry_is_call_.resize(n + 2, 0);
    for (std::size_t i = 0; i < n + 2; ++i) {
      next_[i] = static_cast<std::uint32_t>(i + 1 < n + 2 ? i + 1 : i);
      prev_[i] = static_cast<std::uint32_t>(i == 0 ? 0 : i - 1);
    }
    for (std::size_t i = 0; i < n; ++i) {
      const auto e = static_cast<std::uint32_t>(i + 1);
      entry_op_[e] = points[i].op;
      entry_is_call_[e] = points[i].is_return ? 0 : 1;
      (points[i].is_return ? ret_entry_ : call_entry_)[points[i].op] = e;
    }
  }

  KeyVerdict run(std::size_t max_states) {
    Placed placed{std::vector<std::uint64_t>((required_ + 63) / 64, 0),
                  std::vector<std::uint64_t>((optional_ + 63) / 64, 0), 0};
    LinStateCache cache(placed.optional.size());
    std::int64_t value = kAbsent;  // every key starts absent
    std::size_t undecided = required_;
    std::vector<Frame> stack;
    stack.reserve(ops_.size());

    std::uint32_t e = next_[kHead];
    bool optional_pass = false;  // scanning the candidates a second time, for optional ones
    while (undecided > 0) {
      // The list still holds the return of an undecided required operation, and every call
      // before it precedes it: the scan meets a return before the tail.
      assert(e != tail());
      const std::uint32_t op = entry_op_[e];
      if (entry_is_call_[e]) {
        std::int64_t after = value;
        if (ops_[op].required != optional_pass && in_turn(placed, op) &&
            (stack.empty() || useful_after(stack.back().op, op)) &&
            lin_step(ops_[op], value, after)) {
          flip(placed, op);
          if (cache.insert(placed.required, placed.required_hash, after, placed.optional)) {
            if (cache.size() > max_states) {
              return KeyVerdict{LinearizabilityVerdict::unknown, cache.size(), std::nullopt};
            }
            stack.push_back(Frame{op, value, optional_pass});
            value = after;
            lift(op);
            undecided -= ops_[op].required ? 1 : 0;
            e = next_[kHead];
            optional_pass = false;
            continue;
          }
          flip(placed, op);
        }
        e = next_[e];
        continue;
      }
      if (!optional_pass) {
        optional_pass = true;
        e = next_[kHead];
        continue;
      }
      // A return: its operation had to be placed by now, and no choice left reaches it.
      note_stuck(op, e, stack, value);
      if (stack.empty()) {
        return KeyVerdict{LinearizabilityVerdict::not_linearizable, cache.size(),
                          std::move(explanation_)};
      }
      const Frame f = stack.back();
      stack.pop_back();
      flip(placed, f.op);
      value = f.value_before;
      unlift(f.op);
      undecided += ops_[f.op].required ? 1 : 0;
      e = next_[call_entry_[f.op]];
      optional_pass = f.optional_pass;
    }
    // Every required operation is placed; the optional ones left may all be left out.
    return KeyVerdict{LinearizabilityVerdict::linearizable, cache.size(), std::nullopt};
  }

  // Fills the operations into a violation found by run(), and replays its prefix with the
  // values as written (the search saw canonical ones).
  static void resolve(KvViolation& v, std::span<const KvOperation> history) {
    std::int64_t value = kAbsent;
    for (auto& h : v.prefix) {
      h.op = history[h.index];
      value = apply_as_written(h.op, value);
    }
    v.value_after_prefix = value;
    v.unplaced.op = history[v.unplaced.index];
    for (auto& h : v.concurrent) {
      h.op = history[h.index];
    }
  }

 private:
  static constexpr std::uint32_t kHead = 0;

  struct Frame {
    std::uint32_t op;
    std::int64_t value_before;
    bool optional_pass;
  };

  // The operations placed: one bit per required operation, one per optional one.
  struct Placed {
    std::vector<std::uint64_t> required;
    std::vector<std::uint64_t> optional;
    std::uint64_t required_hash;  // Zobrist hash of `required`
  };

  std::uint32_t tail() const noexcept { return static_cast<std::uint32_t>(next_.size() - 1); }

  void flip(Placed& placed, std::uint32_t op) const noexcept {
    const std::uint32_t s = slot_[op];
    if (ops_[op].required) {
      placed.required[s / 64] ^= std::uint64_t{1} << (s % 64);
      placed.required_hash ^= zobrist_[s];
    } else {
      placed.optional[s / 64] ^= std::uint64_t{1} << (s % 64);
    }
  }
  // Whether the interchangeable operations before `op` are all placed (see prepare_key); they
  // are optional, as `op` is.
  bool in_turn(const Placed& placed, std::uint32_t op) const noexcept {
    if (ops_[op].class_prev == kNoOp) {
      return true;
    }
    const std::uint32_t s = slot_[ops_[op].class_prev];
    return ((placed.optional[s / 64] >> (s % 64)) & 1) != 0;
  }

  // Whether placing `op` right after `prev` can lead anywhere new. An optional write serves
  // only the operation placed right after it, if that one reads the value: were it followed by
  // a put or a del, the same state minus the optional write dominates, and the search reaches
  // it by placing the second operation alone.
  bool useful_after(std::uint32_t prev, std::uint32_t op) const noexcept {
    return ops_[prev].required || ops_[op].kind == KvOpKind::get || ops_[op].kind == KvOpKind::cas;
  }

  // The effect of a placed operation on the value, with the values the history holds.
  static std::int64_t apply_as_written(const KvOperation& op, std::int64_t value) noexcept {
    switch (op.kind) {
      case KvOpKind::get:
        return value;
      case KvOpKind::put:
        return op.value;
      case KvOpKind::del:
        return kAbsent;
      case KvOpKind::cas:
        if (op.outcome == KvOutcome::ok) {
          return op.cas_succeeded ? op.value : value;
        }
        return value == op.expected ? op.value : value;
    }
    return value;
  }

  void unlink(std::uint32_t e) noexcept {
    next_[prev_[e]] = next_[e];
    prev_[next_[e]] = prev_[e];
  }
  // Valid only in the reverse order of unlink (the neighbours it remembers are then current).
  void relink(std::uint32_t e) noexcept {
    next_[prev_[e]] = e;
    prev_[next_[e]] = e;
  }
  void lift(std::uint32_t op) noexcept {
    unlink(call_entry_[op]);
    if (ret_entry_[op] != kNoOp) {
      unlink(ret_entry_[op]);
    }
  }
  void unlift(std::uint32_t op) noexcept {
    if (ret_entry_[op] != kNoOp) {
      relink(ret_entry_[op]);
    }
    relink(call_entry_[op]);
  }

  // Remembers the furthest point of the time line where the search got stuck, and there the
  // longest prefix: the explanation a reader can follow. No branch of the search got past that
  // return, so its operation is where the history goes wrong; branches stuck earlier only show
  // a wrong guess, however many operations they had placed.
  void note_stuck(std::uint32_t op, std::uint32_t ret, const std::vector<Frame>& stack,
                  std::int64_t value) {
    if (explanation_ &&
        (stuck_at_ > ret || (stuck_at_ == ret && explanation_->prefix.size() >= stack.size()))) {
      return;
    }
    stuck_at_ = ret;
    KvViolation v;
    v.key_operations = ops_.size();
    v.prefix.reserve(stack.size());
    for (const Frame& f : stack) {
      v.prefix.push_back(KvHistoryEntry{ops_[f.op].index, {}});
    }
    v.value_after_prefix = value;
    // An ambiguous write's deadline is its first observer's return: blame the observer.
    const std::size_t blamed = ops_[op].reported;
    v.unplaced = KvHistoryEntry{blamed, {}};
    for (std::uint32_t e = next_[kHead]; e != ret; e = next_[e]) {
      if (entry_is_call_[e] && ops_[entry_op_[e]].index != blamed) {
        v.concurrent.push_back(KvHistoryEntry{ops_[entry_op_[e]].index, {}});
      }
    }
    explanation_ = std::move(v);
  }

  std::vector<LinOp> ops_;
  std::size_t required_ = 0;
  std::size_t optional_ = 0;
  std::vector<std::uint32_t> slot_;        // op -> its bit among the required or the optional
  std::vector<std::uint64_t> zobrist_;     // required slot -> its share of the set's hash
  std::vector<std::uint32_t> call_entry_;  // op -> its call's entry
  std::vector<std::uint32_t> ret_entry_;   // op -> its return's entry, kNoOp when optional
  std::vector<std::uint32_t> next_;        // the time line, as a doubly linked list of entries
  std::vector<std::uint32_t> prev_;
  std::vector<std::uint32_t> entry_op_;
  std::vector<std::uint8_t> entry_is_call_;  // bool, without vector<bool>'s bit games
  std::optional<KvViolation> explanation_;   // the explanation, should the key be wrong
  std::uint32_t stuck_at_ = 0;               // the return entry explanation_ got stuck at
};

inline void validate(std::span<const KvOperation> history) {
  if (history.size() >= std::numeric_limits<std::uint32_t>::max() / 2) {
    throw std::invalid_argument("check_linearizability: history too long");
  }
  for (std::size_t i = 0; i < history.size(); ++i) {
    const KvOperation& op = history[i];
    const char* problem = nullptr;
    if (op.kind > KvOpKind::cas) {
      problem = "kind is not a KvOpKind";
    } else if (op.outcome > KvOutcome::ambiguous) {
      problem = "outcome is not a KvOutcome";
    } else if (op.outcome == KvOutcome::ok && op.ret < op.call) {
      problem = "it returned before it was called";
    } else if (op.outcome != KvOutcome::failed &&
               (op.kind == KvOpKind::put || op.kind == KvOpKind::cas) && op.value == kAbsent) {
      problem = "a put or cas must write a value other than kAbsent (a del makes a key absent)";
    }
    if (problem != nullptr) {
      throw std::invalid_argument("check_linearizability: operation #" + std::to_string(i) + " (" +
                                  to_string(op) + "): " + problem);
    }
  }
}

// Whether an operation carries information about the key's values at all.
inline bool lin_informative(const KvOperation& op) noexcept {
  return op.outcome == KvOutcome::ok ||
         (op.outcome == KvOutcome::ambiguous && op.kind != KvOpKind::get);
}

// One key's sub-history made ready for the search.
struct PreparedKey {
  std::vector<LinOp> ops;  // in call order
  std::vector<std::int64_t> calls;
  std::vector<std::int64_t> rets;  // where ops[i].required
  std::size_t ignored = 0;
};

// Turns one key's operations (in call order, failed ones and ambiguous reads already gone) into
// the search's input, shrinking the search without changing its verdict. Ambiguous writes are
// what makes the search expensive: each may be placed anywhere after its call, or nowhere, so k
// of them open 2^k subsets. Four exact reductions, in order:
//
//  1. Canonical values. The model only ever compares the value with values some operation
//     names (a read's answer, a cas's expectation); all other written values behave alike and
//     become one value that nobody names.
//  2. Irrelevant writes. Suppose an ambiguous write of v was placed somewhere. Until the next
//     write only reads and cas see v; if no operation names v, they are cas that did not take
//     effect, and leaving the write out changes the value they saw to the previous one. That
//     matters only to a cas answered "did not take effect", which might have matched it. So on
//     keys without such a cas, ambiguous writes of unnamed values are dropped.
//  3. Deadlines. An ambiguous write that is the only writer of v, which some ok operation
//     observed (a read of v, a successful cas expecting v), must have taken effect before that
//     operation returned: it gets that return as its own (the earliest such), and the report
//     blames the observer should it not fit.
//  4. Interchangeable writes. Ambiguous writes left without a deadline that have the same effect
//     (same kind, value and expectation) are used in call order: placing the i-th earliest
//     called wherever some i-th one could go is always possible, so the others need no trial.
//     This leaves k such writes k + 1 subsets instead of 2^k.
inline PreparedKey prepare_key(std::span<const KvOperation> history,
                               std::span<const std::size_t> key_ops) {
  std::vector<std::int64_t> named;
  bool refused_cas = false;
  for (std::size_t i : key_ops) {
    const KvOperation& op = history[i];
    if (op.kind == KvOpKind::get) {
      named.push_back(op.observed);
    } else if (op.kind == KvOpKind::cas) {
      named.push_back(op.expected);
      refused_cas = refused_cas || (op.outcome == KvOutcome::ok && !op.cas_succeeded);
    }
  }
  std::sort(named.begin(), named.end());
  named.erase(std::unique(named.begin(), named.end()), named.end());
  auto is_named = [&](std::int64_t v) { return std::binary_search(named.begin(), named.end(), v); };
  std::int64_t unnamed = kAbsent + 1;
  while (is_named(unnamed)) {
    ++unnamed;
  }

  PreparedKey key;
  for (std::size_t i : key_ops) {  // 1 and 2
    const KvOperation& op = history[i];
    const bool ambiguous = op.outcome == KvOutcome::ambiguous;
    const bool writes_value = op.kind == KvOpKind::put || op.kind == KvOpKind::cas;
    const std::int64_t written = writes_value ? op.value : kAbsent;
    if (ambiguous && !refused_cas && !is_named(written)) {
      ++key.ignored;
      continue;
    }
    key.ops.push_back(LinOp{op.kind, ambiguous, !ambiguous, op.cas_succeeded,
                            writes_value && !is_named(op.value) ? unnamed : op.value, op.expected,
                            op.observed, i, i, kNoOp});
    key.calls.push_back(op.call);
    key.rets.push_back(op.ret);
  }

  // 3. The earliest ok observer of each value, and how many operations write each value.
  struct Observer {
    std::int64_t value;
    std::int64_t ret;
    std::size_t index;
  };
  std::vector<Observer> observers;
  std::vector<std::int64_t> writes;
  for (std::size_t j = 0; j < key.ops.size(); ++j) {
    const LinOp& op = key.ops[j];
    if (!op.ambiguous && op.kind == KvOpKind::get) {
      observers.push_back({op.observed, key.rets[j], op.index});
    } else if (!op.ambiguous && op.kind == KvOpKind::cas && op.cas_succeeded) {
      observers.push_back({op.expected, key.rets[j], op.index});
    }
    if (op.kind == KvOpKind::put || op.kind == KvOpKind::cas) {
      writes.push_back(op.value);
    }
  }
  std::sort(observers.begin(), observers.end(), [](const Observer& a, const Observer& b) {
    return a.value != b.value ? a.value < b.value : a.ret < b.ret;
  });
  std::sort(writes.begin(), writes.end());
  for (std::size_t j = 0; j < key.ops.size(); ++j) {
    LinOp& op = key.ops[j];
    if (!op.ambiguous || op.kind == KvOpKind::get || op.kind == KvOpKind::del ||
        op.value == unnamed) {
      continue;
    }
    const auto [first, last] = std::equal_range(writes.begin(), writes.end(), op.value);
    if (last - first != 1) {
      continue;
    }
    const auto observer =
        std::lower_bound(observers.begin(), observers.end(), op.value,
                         [](const Observer& o, std::int64_t v) { return o.value < v; });
    if (observer == observers.end() || observer->value != op.value) {
      continue;
    }
    op.required = true;
    // An observer that returned before the write was called cannot be explained; the search
    // finds that at the observer's own return.
    key.rets[j] = std::max(observer->ret, key.calls[j]);
    op.reported = observer->index;
  }

  // 4. Chain each optional ambiguous write to the previous one with the same effect.
  std::map<std::tuple<KvOpKind, std::int64_t, std::int64_t>, std::uint32_t> last_of_effect;
  for (std::size_t j = 0; j < key.ops.size(); ++j) {
    LinOp& op = key.ops[j];
    if (!op.ambiguous || op.required) {
      continue;
    }
    const std::int64_t value = op.kind == KvOpKind::del ? kAbsent : op.value;
    const std::int64_t expected = op.kind == KvOpKind::cas ? op.expected : kAbsent;
    const auto [it, first] =
        last_of_effect.try_emplace({op.kind, value, expected}, static_cast<std::uint32_t>(j));
    if (!first) {
      op.class_prev = it->second;
      it->second = static_cast<std::uint32_t>(j);
    }
  }
  return key;
}

}  // namespace detail

/// Decides whether `history` is linearizable with respect to a key-value store of int64 values
/// in which every key starts absent. (To check from a populated store, put each initial value
/// first: an ok put with call = ret earlier than every other operation.)
///
/// What it checks: every operation given, at face value (see KvOperation for the meaning of each
/// field and outcome). Operations at the read levels that promise less than linearizability —
/// stale reads — must be left out by the caller: they are not linearizable by design and would
/// be reported as violations. Operations a and b are ordered in real time when a.ret < b.call;
/// equal instants count as concurrent.
///
/// Complexity: partitioning costs O(n log n) for n operations. Per key the search is
/// exponential in the worst case (the problem is NP-complete), but the memo bounds it by the
/// number of distinct (set of operations linearized, value) pairs reachable: for a key with n
/// operations overlapping at most w at a time, O(n · 2^w) states of O(w + n/64) time each, and
/// in practice (a few concurrent clients, unique written values) about n states. Ambiguous
/// writes widen w: one whose unique value an ok operation observed must precede that
/// observer's return; one nobody could observe is dropped (operations_ignored); the others
/// stay open until the end of the key's history. 2000 operations over one key with five
/// clients take a few milliseconds in an optimised build. The budget
/// CheckOptions::max_states_per_key turns a search that grows past it into `unknown`.
///
/// Thread-safety: a pure function; any number of threads may call it at once. Allocation: O(n)
/// plus the memo of the key being searched, freed before the next key. Errors: throws
/// std::invalid_argument naming the operation when an operation is malformed (an ok operation
/// returning before its call, a put or cas writing kAbsent, an out-of-range enum), and
/// std::bad_alloc.
inline LinearizabilityReport check_linearizability(std::span<const KvOperation> history,
                                                   const CheckOptions& options = {}) {
  detail::validate(history);
  LinearizabilityReport report;

  std::vector<std::size_t> order;
  order.reserve(history.size());
  for (std::size_t i = 0; i < history.size(); ++i) {
    if (detail::lin_informative(history[i])) {
      order.push_back(i);
    }
  }
  report.operations_ignored = history.size() - order.size();
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    const KvOperation& x = history[a];
    const KvOperation& y = history[b];
    if (x.key != y.key) {
      return x.key < y.key;
    }
    return x.call != y.call ? x.call < y.call : a < b;
  });

  bool unknown = false;
  for (std::size_t begin = 0; begin < order.size();) {
    const std::uint64_t key = history[order[begin]].key;
    std::size_t end = begin;
    while (end < order.size() && history[order[end]].key == key) {
      ++end;
    }
    const std::span<const std::size_t> key_ops(order.data() + begin, end - begin);
    begin = end;

    detail::PreparedKey prepared = detail::prepare_key(history, key_ops);
    report.operations_ignored += prepared.ignored;
    report.operations_checked += prepared.ops.size();
    ++report.keys_checked;

    detail::KeySearch search(std::move(prepared.ops), prepared.calls, prepared.rets);
    detail::KeyVerdict verdict = search.run(options.max_states_per_key);
    report.states_explored += verdict.states;
    if (verdict.verdict == LinearizabilityVerdict::not_linearizable) {
      report.verdict = verdict.verdict;
      report.key = key;
      report.violation = std::move(verdict.violation);
      detail::KeySearch::resolve(*report.violation, history);
      return report;
    }
    if (verdict.verdict == LinearizabilityVerdict::unknown && !unknown) {
      unknown = true;
      report.verdict = LinearizabilityVerdict::unknown;
      report.key = key;
    }
  }
  return report;
}

namespace detail {

inline void lin_print_entries(std::string& s, std::span<const KvHistoryEntry> entries,
                              std::size_t limit) {
  if (entries.empty()) {
    s += "    (none)\n";
    return;
  }
  std::size_t first = 0;
  if (entries.size() > limit) {
    first = entries.size() - limit;
    s += "    ... " + std::to_string(first) + " earlier operations\n";
  }
  for (std::size_t i = first; i < entries.size(); ++i) {
    s += "    #" + std::to_string(entries[i].index) + " " + to_string(entries[i].op) + "\n";
  }
}

}  // namespace detail

/// A readable account: the verdict and counts; for a violation, the key, the end of the longest
/// linearizable prefix found (the last `max_prefix` operations), the value after it, the
/// operation that could not be placed, and the candidates that were tried before it. Each
/// operation shows its index in the checked history (`#12`). Allocates the returned string.
inline std::string to_string(const LinearizabilityReport& report, std::size_t max_prefix = 32) {
  std::string s = to_string(report.verdict);
  if (report.verdict == LinearizabilityVerdict::not_linearizable && report.violation) {
    const KvViolation& v = *report.violation;
    s += ": key " + std::to_string(report.key) + "\n";
    s += "  longest linearizable prefix found (" + std::to_string(v.prefix.size()) + " of " +
         std::to_string(v.key_operations) + " operations of the key), in linearization order:\n";
    detail::lin_print_entries(s, v.prefix, max_prefix);
    s += "  value after it: " + kv_value_to_string(v.value_after_prefix) + "\n";
    s += "  cannot be placed next, yet had returned:\n";
    detail::lin_print_entries(s, std::span(&v.unplaced, 1), 1);
    s += "  the other operations not placed and invoked before it returned:\n";
    detail::lin_print_entries(s, v.concurrent, std::numeric_limits<std::size_t>::max());
    return s;
  }
  if (report.verdict == LinearizabilityVerdict::unknown) {
    s += ": the search budget ran out on key " + std::to_string(report.key) + ";";
  } else {
    s += ":";
  }
  s += " " + std::to_string(report.operations_checked) + " operations checked on " +
       std::to_string(report.keys_checked) + " keys (" + std::to_string(report.operations_ignored) +
       " ignored), " + std::to_string(report.states_explored) + " states explored\n";
  return s;
}

inline std::ostream& operator<<(std::ostream& out, const LinearizabilityReport& report) {
  return out << to_string(report);
}

inline std::ostream& operator<<(std::ostream& out, LinearizabilityVerdict verdict) {
  return out << to_string(verdict);
}

}  // namespace tenure::raft::testing
