#include <raft/testing/kv_history.hpp>
#include <raft/testing/linearizability.hpp>

#include "../support/seed.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

using tenure::raft::testing::check_linearizability;
using tenure::raft::testing::CheckOptions;
using tenure::raft::testing::kAbsent;
using tenure::raft::testing::KvOperation;
using tenure::raft::testing::KvOpKind;
using tenure::raft::testing::KvOutcome;
using tenure::raft::testing::LinearizabilityReport;
using tenure::raft::testing::LinearizabilityVerdict;

namespace {

// --- building histories by hand ------------------------------------------------------------------

KvOperation put(std::uint64_t client, std::uint64_t key, std::int64_t value, std::int64_t call,
                std::int64_t ret) {
  return KvOperation{.client = client,
                     .kind = KvOpKind::put,
                     .key = key,
                     .value = value,
                     .call = call,
                     .ret = ret};
}

KvOperation get(std::uint64_t client, std::uint64_t key, std::int64_t observed, std::int64_t call,
                std::int64_t ret) {
  return KvOperation{.client = client,
                     .kind = KvOpKind::get,
                     .key = key,
                     .call = call,
                     .ret = ret,
                     .observed = observed};
}

KvOperation del(std::uint64_t client, std::uint64_t key, std::int64_t call, std::int64_t ret) {
  return KvOperation{.client = client, .kind = KvOpKind::del, .key = key, .call = call, .ret = ret};
}

KvOperation cas(std::uint64_t client, std::uint64_t key, std::int64_t expected, std::int64_t value,
                bool succeeded, std::int64_t call, std::int64_t ret) {
  return KvOperation{.client = client,
                     .kind = KvOpKind::cas,
                     .key = key,
                     .value = value,
                     .expected = expected,
                     .call = call,
                     .ret = ret,
                     .cas_succeeded = succeeded};
}

// An operation whose client never learned whether it took effect: its return is meaningless.
KvOperation ambiguous(KvOperation op) {
  op.outcome = KvOutcome::ambiguous;
  op.ret = -1;
  return op;
}

KvOperation failed(KvOperation op) {
  op.outcome = KvOutcome::failed;
  return op;
}

LinearizabilityVerdict verdict_of(const std::vector<KvOperation>& history) {
  return check_linearizability(history).verdict;
}

constexpr auto kYes = LinearizabilityVerdict::linearizable;
constexpr auto kNo = LinearizabilityVerdict::not_linearizable;

// --- seeds -----------------------------------------------------------------------------------

class Rng {
 public:
  explicit Rng(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() noexcept {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  std::int64_t below(std::int64_t n) noexcept {
    return static_cast<std::int64_t>(next() % static_cast<std::uint64_t>(n));
  }
  bool one_in(std::int64_t n) noexcept { return below(n) == 0; }

 private:
  std::uint64_t state_;
};

constexpr std::uint64_t kDefaultSeed = 20240917;

// TENURE_SEED=<n> replays one seed; otherwise `count` seeds from the default run.
std::vector<std::uint64_t> test_seeds(std::uint64_t count) {
  if (const auto seed = tenure::testing::seed_override()) {
    return {*seed};
  }
  std::vector<std::uint64_t> seeds;
  for (std::uint64_t i = 0; i < count; ++i) {
    seeds.push_back(kDefaultSeed + i);
  }
  return seeds;
}

using tenure::testing::replay_command;

// --- generated linearizable histories --------------------------------------------------------

struct GenOptions {
  std::size_t operations = 200;
  std::uint64_t keys = 4;
  std::uint64_t clients = 4;
  std::int64_t max_latency = 40;  // how far a call or return may lie from the linearization point
  std::int64_t max_gap = 10;      // between consecutive linearization points
  bool faults = true;             // failed and ambiguous operations
};

// Runs a sequential key-value store and wraps each operation in a random interval around the
// instant it took effect, each client waiting for one answer before its next call: the result is
// linearizable by construction. Ambiguous writes take effect at once, later (as a write that
// timed out but committed afterwards would), or never. Written values are 1, 2, 3, ... and unique.
std::vector<KvOperation> generate_history(std::uint64_t seed, const GenOptions& g) {
  struct Deferred {
    std::int64_t at;
    KvOperation op;
  };
  Rng rng(seed);
  std::map<std::uint64_t, std::int64_t> store;
  auto value_of = [&](std::uint64_t key) {
    auto it = store.find(key);
    return it == store.end() ? kAbsent : it->second;
  };
  auto apply = [&](const KvOperation& op) {  // a write's effect; a cas only if it matches
    if (op.kind == KvOpKind::put || (op.kind == KvOpKind::cas && value_of(op.key) == op.expected)) {
      store[op.key] = op.value;
    } else if (op.kind == KvOpKind::del) {
      store.erase(op.key);
    }
  };
  std::vector<std::int64_t> free_at(g.clients, -1);  // a client's previous operation returned then
  std::vector<Deferred> deferred;
  std::vector<KvOperation> history;
  std::int64_t next_value = 1;
  std::int64_t now = 0;  // the current linearization point

  while (history.size() < g.operations) {
    now += 1 + rng.below(g.max_gap);
    // A deferred ambiguous write takes effect now, this instant being its own.
    if (auto it =
            std::min_element(deferred.begin(), deferred.end(),
                             [](const Deferred& a, const Deferred& b) { return a.at < b.at; });
        it != deferred.end() && it->at <= now) {
      apply(it->op);
      deferred.erase(it);
      continue;
    }
    const auto client = static_cast<std::uint64_t>(rng.below(static_cast<std::int64_t>(g.clients)));
    if (free_at[client] >= now) {
      continue;
    }
    KvOperation op;
    op.client = client;
    op.key = static_cast<std::uint64_t>(rng.below(static_cast<std::int64_t>(g.keys)));
    op.call = now - rng.below(std::min(g.max_latency, now - free_at[client]));
    op.ret = now + rng.below(g.max_latency);
    const std::int64_t current = value_of(op.key);
    switch (rng.below(10)) {
      case 0:
      case 1:
      case 2:
      case 3:
        op.kind = KvOpKind::get;
        op.observed = current;
        break;
      case 4:
      case 5:
      case 6:
        op.kind = KvOpKind::put;
        op.value = next_value++;
        break;
      case 7:
        op.kind = KvOpKind::del;
        break;
      default: {
        op.kind = KvOpKind::cas;
        op.value = next_value++;
        const std::int64_t choices[] = {current, current, kAbsent, next_value - 2, 1};
        op.expected = choices[rng.below(5)];
        op.cas_succeeded = op.expected == current;
        break;
      }
    }
    if (g.faults && rng.one_in(20)) {
      // Refused before it was appended: no effect. Its answer fields are garbage on purpose.
      op.outcome = KvOutcome::failed;
      op.observed = 999'999;
      op.cas_succeeded = rng.one_in(2);
    } else if (g.faults && rng.one_in(12)) {
      op.outcome = KvOutcome::ambiguous;
      op.observed = 888'888;
      op.cas_succeeded = rng.one_in(2);
      switch (rng.below(3)) {
        case 0:
          apply(op);
          break;
        case 1:
          deferred.push_back({now + 1 + rng.below(20 * g.max_gap), op});
          break;
        default:
          break;  // lost
      }
    } else {
      apply(op);
    }
    free_at[client] = op.ret;
    if (op.outcome == KvOutcome::ambiguous) {
      op.ret = -7;  // meaningless by contract
    }
    history.push_back(op);
  }
  return history;
}

// --- an independent oracle for small histories ------------------------------------------------

// Exhaustive search without partitioning or any of the checker's reductions: tries every order
// of the operations that respects real time, leaving out any subset of the ambiguous writes,
// remembering only the exact states (operations placed, every key's value) that failed.
class BruteForce {
 public:
  explicit BruteForce(const std::vector<KvOperation>& history) {
    for (const KvOperation& op : history) {
      if (op.outcome == KvOutcome::ok ||
          (op.outcome == KvOutcome::ambiguous && op.kind != KvOpKind::get)) {
        ops_.push_back(op);
      }
    }
    placed_.assign(ops_.size(), false);
    REQUIRE(ops_.size() <= 64);
  }

  bool linearizable() { return search(); }

 private:
  bool definite(std::size_t i) const { return ops_[i].outcome == KvOutcome::ok; }

  bool search() {
    bool all_definite_placed = true;
    for (std::size_t i = 0; i < ops_.size(); ++i) {
      all_definite_placed = all_definite_placed && (placed_[i] || !definite(i));
    }
    if (all_definite_placed) {
      return true;
    }
    std::uint64_t mask = 0;
    for (std::size_t i = 0; i < ops_.size(); ++i) {
      mask |= placed_[i] ? std::uint64_t{1} << i : 0;
    }
    if (!failed_.insert({mask, store_}).second) {
      return false;
    }
    for (std::size_t i = 0; i < ops_.size(); ++i) {
      if (placed_[i] || !minimal(i)) {
        continue;
      }
      const KvOperation& op = ops_[i];
      const std::int64_t before = value(op.key);
      bool ok = true;
      std::int64_t after = before;
      switch (op.kind) {
        case KvOpKind::get:
          ok = before == op.observed;
          break;
        case KvOpKind::put:
          after = op.value;
          break;
        case KvOpKind::del:
          after = kAbsent;
          break;
        case KvOpKind::cas:
          if (!definite(i)) {
            after = before == op.expected ? op.value : before;
          } else if (op.cas_succeeded) {
            ok = before == op.expected;
            after = op.value;
          } else {
            ok = before != op.expected;
          }
          break;
      }
      if (!ok) {
        continue;
      }
      placed_[i] = true;
      set_value(op.key, after);
      if (search()) {
        return true;
      }
      set_value(op.key, before);
      placed_[i] = false;
    }
    return false;
  }

  // No unplaced definite operation returned before `i` was called.
  bool minimal(std::size_t i) const {
    for (std::size_t j = 0; j < ops_.size(); ++j) {
      if (!placed_[j] && definite(j) && ops_[j].ret < ops_[i].call) {
        return false;
      }
    }
    return true;
  }

  // Absent keys are not stored, so equal stores compare equal.
  void set_value(std::uint64_t key, std::int64_t v) {
    if (v == kAbsent) {
      store_.erase(key);
    } else {
      store_[key] = v;
    }
  }

  std::int64_t value(std::uint64_t key) const {
    auto it = store_.find(key);
    return it == store_.end() ? kAbsent : it->second;
  }

  std::vector<KvOperation> ops_;
  std::vector<bool> placed_;
  std::map<std::uint64_t, std::int64_t> store_;
  std::set<std::pair<std::uint64_t, std::map<std::uint64_t, std::int64_t>>> failed_;
};

// Small histories on two keys: mostly up to 7 operations, some up to 16. Half use values from a
// tiny set, so that both verdicts come up often; half write unique values, as real tests do (and
// as some of the checker's reductions need to apply).
std::vector<KvOperation> random_small_history(Rng& rng) {
  std::vector<KvOperation> history;
  const auto count = static_cast<std::size_t>(rng.one_in(4) ? 8 + rng.below(9) : 2 + rng.below(6));
  const std::int64_t span = 2 * static_cast<std::int64_t>(count);
  const bool unique = rng.one_in(2);
  std::vector<std::int64_t> names = {kAbsent};
  for (std::int64_t v = 1; v <= (unique ? static_cast<std::int64_t>(count) : 3); ++v) {
    names.push_back(v);
  }
  auto any_name = [&] {
    return names[static_cast<std::size_t>(rng.below(static_cast<std::int64_t>(names.size())))];
  };
  for (std::size_t i = 0; i < count; ++i) {
    KvOperation op;
    op.client = i;
    op.key = static_cast<std::uint64_t>(rng.below(2));
    op.call = rng.below(span);
    op.ret = op.call + rng.below(6);
    op.kind = static_cast<KvOpKind>(rng.below(4));
    op.value = unique ? static_cast<std::int64_t>(i) + 1 : 1 + rng.below(3);
    op.expected = any_name();
    op.observed = any_name();
    op.cas_succeeded = rng.one_in(2);
    const std::int64_t outcome = rng.below(10);
    op.outcome = outcome < 6   ? KvOutcome::ok
                 : outcome < 9 ? KvOutcome::ambiguous
                               : KvOutcome::failed;
    history.push_back(op);
  }
  return history;
}

}  // namespace

// --- hand-written histories ---------------------------------------------------------------------

TEST_CASE("check_linearizability accepts sequential puts and gets") {
  CHECK(verdict_of({}) == kYes);
  CHECK(verdict_of({get(1, 7, kAbsent, 0, 5)}) == kYes);
  CHECK(verdict_of({put(1, 7, 1, 0, 10), get(1, 7, 1, 20, 30), put(1, 7, 2, 40, 50),
                    get(2, 7, 2, 60, 70)}) == kYes);
  // The same reads in the wrong places are rejected.
  CHECK(verdict_of({get(1, 7, 1, 0, 5), put(1, 7, 1, 10, 20)}) == kNo);
  CHECK(verdict_of({put(1, 7, 1, 0, 10), get(1, 7, kAbsent, 20, 30)}) == kNo);
}

TEST_CASE("check_linearizability: a get concurrent with a put may see the old or the new value") {
  const KvOperation first = put(1, 7, 1, 0, 10);
  const KvOperation second = put(1, 7, 2, 20, 40);
  CHECK(verdict_of({first, second, get(2, 7, 1, 25, 35)}) == kYes);
  CHECK(verdict_of({first, second, get(2, 7, 2, 25, 35)}) == kYes);
  // Overlapping only at one end counts as concurrent too.
  CHECK(verdict_of({first, second, get(2, 7, 2, 5, 20)}) == kYes);
  CHECK(verdict_of({first, second, get(2, 7, 1, 40, 50)}) == kYes);
}

TEST_CASE("check_linearizability rejects a stale read after a completed write") {
  const std::vector<KvOperation> history = {put(1, 7, 1, 0, 10), put(1, 7, 2, 20, 30),
                                            get(2, 7, 1, 40, 50)};
  const LinearizabilityReport report = check_linearizability(history);
  REQUIRE(report.verdict == kNo);
  CHECK(report.key == 7);
  REQUIRE(report.violation.has_value());
  // The explanation: both puts linearize, after which the read of 1 cannot.
  CHECK(report.violation->prefix.size() == 2);
  CHECK(report.violation->value_after_prefix == 2);
  CHECK(report.violation->unplaced.index == 2);
  CHECK(report.violation->unplaced.op.observed == 1);
  CHECK(report.violation->concurrent.empty());
  CHECK(report.violation->key_operations == 3);
}

TEST_CASE("check_linearizability rejects a read of a value never written") {
  CHECK(verdict_of({put(1, 7, 1, 0, 10), get(2, 7, 5, 5, 15)}) == kNo);
  CHECK(verdict_of({get(2, 7, 5, 5, 15)}) == kNo);
}

TEST_CASE("check_linearizability rejects reads in real-time order seeing new then old") {
  const KvOperation first = put(1, 7, 1, 0, 10);
  const KvOperation second = put(1, 7, 2, 20, 100);
  // Both reads are concurrent with the second put, but the first read returns before the
  // second read is called: once a client has seen 2, nobody may see 1 again.
  CHECK(verdict_of({first, second, get(2, 7, 2, 30, 40), get(3, 7, 1, 50, 60)}) == kNo);
  // Old then new is fine.
  CHECK(verdict_of({first, second, get(2, 7, 1, 30, 40), get(3, 7, 2, 50, 60)}) == kYes);
  // And so is new and old when the reads overlap each other.
  CHECK(verdict_of({first, second, get(2, 7, 2, 30, 55), get(3, 7, 1, 50, 60)}) == kYes);
}

TEST_CASE("check_linearizability: an ambiguous put may have taken effect - or not") {
  const KvOperation first = put(1, 7, 1, 0, 10);
  const KvOperation lost = ambiguous(put(1, 7, 2, 20, 0));
  SUBCASE("observed") {
    CHECK(verdict_of({first, lost, get(2, 7, 2, 30, 40)}) == kYes);
    // Even long after the client gave up: a timed-out write may commit late.
    CHECK(verdict_of({first, lost, get(2, 7, 1, 1000, 1010), get(2, 7, 2, 5000, 5010)}) == kYes);
  }
  SUBCASE("never observed") {
    CHECK(verdict_of({first, lost, get(2, 7, 1, 30, 40), get(2, 7, 1, 50, 60)}) == kYes);
    CHECK(verdict_of({first, lost}) == kYes);
  }
  SUBCASE("but not before it was called") {
    CHECK(verdict_of({first, get(2, 7, 2, 11, 15), lost}) == kNo);
  }
}

TEST_CASE("check_linearizability rejects an ambiguous put seen and then unseen") {
  const std::vector<KvOperation> history = {put(1, 7, 1, 0, 10), ambiguous(put(1, 7, 2, 20, 0)),
                                            get(2, 7, 2, 30, 40), get(3, 7, 1, 50, 60)};
  const LinearizabilityReport report = check_linearizability(history);
  CHECK(report.verdict == kNo);
  CHECK(report.key == 7);
  // Unless something wrote 1 again in between, which an ambiguous put may have done.
  std::vector<KvOperation> rewritten = history;
  rewritten.push_back(ambiguous(put(4, 7, 1, 35, 0)));
  CHECK(verdict_of(rewritten) == kYes);
}

TEST_CASE("check_linearizability: cas") {
  const KvOperation first = put(1, 7, 1, 0, 10);
  SUBCASE("success and failure in sequence") {
    CHECK(verdict_of({first, cas(2, 7, 1, 2, true, 20, 30), get(3, 7, 2, 40, 50)}) == kYes);
    CHECK(verdict_of({first, cas(2, 7, 5, 2, false, 20, 30), get(3, 7, 1, 40, 50)}) == kYes);
    // Wrong answers: a success whose expectation did not hold, a failure whose did.
    CHECK(verdict_of({first, cas(2, 7, 5, 2, true, 20, 30)}) == kNo);
    CHECK(verdict_of({first, cas(2, 7, 1, 2, false, 20, 30)}) == kNo);
    // A failed cas leaves the value alone.
    CHECK(verdict_of({first, cas(2, 7, 5, 2, false, 20, 30), get(3, 7, 2, 40, 50)}) == kNo);
  }
  SUBCASE("on an absent key") {
    CHECK(verdict_of({cas(2, 7, kAbsent, 2, true, 0, 10), get(3, 7, 2, 20, 30)}) == kYes);
    CHECK(verdict_of({first, cas(2, 7, kAbsent, 2, true, 20, 30)}) == kNo);
    CHECK(verdict_of({first, cas(2, 7, kAbsent, 2, false, 20, 30)}) == kYes);
  }
  SUBCASE("two concurrent successful cas with the same expected value") {
    CHECK(verdict_of({first, cas(2, 7, 1, 2, true, 20, 40), cas(3, 7, 1, 3, true, 25, 45)}) == kNo);
    // One wins, the other fails: fine either way round.
    CHECK(verdict_of({first, cas(2, 7, 1, 2, true, 20, 40), cas(3, 7, 1, 3, false, 25, 45),
                      get(4, 7, 2, 50, 60)}) == kYes);
    CHECK(verdict_of({first, cas(2, 7, 1, 2, false, 20, 40), cas(3, 7, 1, 3, true, 25, 45),
                      get(4, 7, 3, 50, 60)}) == kYes);
    // A chain works: 1 -> 2 -> 3.
    CHECK(verdict_of({first, cas(2, 7, 1, 2, true, 20, 40), cas(3, 7, 2, 3, true, 25, 45),
                      get(4, 7, 3, 50, 60)}) == kYes);
  }
  SUBCASE("ambiguous") {
    const KvOperation maybe = ambiguous(cas(2, 7, 1, 2, false, 20, 0));
    CHECK(verdict_of({first, maybe, get(3, 7, 2, 40, 50)}) == kYes);
    CHECK(verdict_of({first, maybe, get(3, 7, 1, 40, 50)}) == kYes);
    // It could only have written 2 if it found 1.
    CHECK(verdict_of({put(1, 7, 5, 0, 10), maybe, get(3, 7, 2, 40, 50)}) == kNo);
  }
}

TEST_CASE("check_linearizability: del makes the key absent") {
  const KvOperation first = put(1, 7, 1, 0, 10);
  CHECK(verdict_of({first, del(1, 7, 20, 30), get(2, 7, kAbsent, 40, 50)}) == kYes);
  CHECK(verdict_of({first, del(1, 7, 20, 30), get(2, 7, 1, 40, 50)}) == kNo);
  CHECK(verdict_of({first, del(1, 7, 20, 30), put(1, 7, 3, 40, 50), get(2, 7, 3, 60, 70)}) == kYes);
  CHECK(verdict_of({del(1, 7, 0, 10), get(2, 7, kAbsent, 20, 30)}) == kYes);
  // An ambiguous del may explain an absent read.
  CHECK(verdict_of({first, ambiguous(del(1, 7, 20, 0)), get(2, 7, kAbsent, 40, 50)}) == kYes);
  CHECK(verdict_of({first, del(1, 7, 20, 30), get(2, 7, kAbsent, 40, 50), get(2, 7, 1, 60, 70)}) ==
        kNo);
}

TEST_CASE("check_linearizability ignores failed operations and ambiguous reads") {
  const KvOperation first = put(1, 7, 1, 0, 10);
  const std::vector<KvOperation> history = {
      first,
      failed(put(2, 7, 2, 20, 30)),
      failed(get(3, 7, 42, 20, 30)),
      failed(del(3, 7, 30, 31)),
      failed(cas(3, 7, 99, 4, true, 30, 32)),
      ambiguous(get(4, 7, 1234, 20, 0)),
      get(5, 7, 1, 40, 50),
  };
  const LinearizabilityReport report = check_linearizability(history);
  CHECK(report.verdict == kYes);
  CHECK(report.operations_ignored == 5);
  CHECK(report.operations_checked == 2);
  // A failed write that was seen anyway is a violation: failed means it did not happen.
  CHECK(verdict_of({first, failed(put(2, 7, 2, 20, 30)), get(5, 7, 2, 40, 50)}) == kNo);
}

TEST_CASE("check_linearizability checks keys independently and names the wrong one") {
  std::vector<KvOperation> history;
  for (std::uint64_t key = 1; key <= 5; ++key) {
    const auto v = static_cast<std::int64_t>(key * 10);
    history.push_back(put(key, key, v, 0, 10));
    history.push_back(get(key + 1, key, v, 20, 30));
  }
  // A read of key 1's value on key 2 would be fine if keys shared one register; they do not.
  history.push_back(put(9, 3, 31, 40, 50));
  history.push_back(get(9, 3, 30, 60, 70));
  // Interleaving keys in time changes nothing.
  history.push_back(get(8, 4, 40, 5, 65));
  const LinearizabilityReport report = check_linearizability(history);
  REQUIRE(report.verdict == kNo);
  CHECK(report.key == 3);
  REQUIRE(report.violation.has_value());
  CHECK(report.violation->unplaced.op.key == 3);
  CHECK(report.violation->unplaced.op.observed == 30);
  CHECK(report.violation->unplaced.index == history.size() - 2);
  for (const auto& entry : report.violation->prefix) {
    CHECK(entry.op.key == 3);
  }
  // Without the bad read every key is fine.
  history.erase(history.end() - 2);
  const LinearizabilityReport fine = check_linearizability(history);
  CHECK(fine.verdict == kYes);
  CHECK(fine.keys_checked == 5);
  CHECK(fine.operations_checked == history.size());
}

TEST_CASE("check_linearizability gives up with unknown when the budget runs out") {
  GenOptions g;
  g.operations = 300;
  g.keys = 1;
  g.clients = 6;
  const std::vector<KvOperation> big = generate_history(kDefaultSeed, g);
  CheckOptions tiny;
  tiny.max_states_per_key = 5;
  const LinearizabilityReport report = check_linearizability(big, tiny);
  CHECK(report.verdict == LinearizabilityVerdict::unknown);
  CHECK(report.key == 0);
  CHECK_FALSE(report.violation.has_value());
  CHECK(check_linearizability(big).verdict == kYes);

  // A violation found on another key outranks an unknown one.
  std::vector<KvOperation> both = big;
  both.push_back(put(1, 99, 1, 0, 10));
  both.push_back(get(1, 99, 2, 20, 30));
  const LinearizabilityReport wrong = check_linearizability(both, tiny);
  CHECK(wrong.verdict == kNo);
  CHECK(wrong.key == 99);
}

TEST_CASE("check_linearizability's report prints the violation") {
  const std::vector<KvOperation> history = {put(1, 7, 1, 0, 10), put(1, 7, 2, 20, 30),
                                            get(2, 7, 1, 40, 50), get(3, 7, 2, 45, 55)};
  const LinearizabilityReport report = check_linearizability(history);
  std::ostringstream out;
  out << report;
  const std::string text = out.str();
  INFO(text);
  CHECK(text.find("not linearizable: key 7") != std::string::npos);
  CHECK(text.find("#2 client 2 get(k=7) -> 1 [40, 50] ok") != std::string::npos);
  CHECK(text.find("#3 client 3 get(k=7) -> 2 [45, 55] ok") != std::string::npos);
  CHECK(text.find("value after it: 2") != std::string::npos);
  CHECK(to_string(check_linearizability(std::vector<KvOperation>{put(1, 7, 1, 0, 10)}))
            .starts_with("linearizable: 1 operations checked on 1 keys"));
  CHECK(to_string(ambiguous(put(1, 7, 5, 900, 0))) == "client 1 put(k=7, 5) [900, ?] ambiguous");
  CHECK(to_string(cas(2, 7, kAbsent, 4, false, 1, 2)) ==
        "client 2 cas(k=7, absent -> 4) -> false [1, 2] ok");
}

TEST_CASE("check_linearizability refuses malformed operations") {
  CHECK_THROWS_AS(check_linearizability(std::vector<KvOperation>{get(1, 7, kAbsent, 10, 5)}),
                  std::invalid_argument);
  CHECK_THROWS_AS(check_linearizability(std::vector<KvOperation>{put(1, 7, kAbsent, 0, 5)}),
                  std::invalid_argument);
  KvOperation bad_kind = get(1, 7, kAbsent, 0, 5);
  bad_kind.kind = static_cast<KvOpKind>(9);
  CHECK_THROWS_AS(check_linearizability(std::vector<KvOperation>{bad_kind}), std::invalid_argument);
  // What is dropped unread is not validated: an ambiguous operation's return is meaningless.
  CHECK(verdict_of({ambiguous(put(1, 7, 2, 10, 0))}) == kYes);
}

// --- generated histories ------------------------------------------------------------------------

constexpr const char* kRandomHistoriesTest =
    "check_linearizability accepts random linearizable histories and one impossible read";
TEST_CASE(kRandomHistoriesTest) {
  for (const std::uint64_t seed : test_seeds(200)) {
    Rng shape(seed ^ 0x5bd1e995);
    GenOptions g;
    g.operations = static_cast<std::size_t>(20 + shape.below(300));
    g.keys = static_cast<std::uint64_t>(1 + shape.below(5));
    g.clients = static_cast<std::uint64_t>(1 + shape.below(6));
    g.max_latency = 1 + shape.below(60);
    g.max_gap = 1 + shape.below(15);
    std::vector<KvOperation> history = generate_history(seed, g);
    const std::string replay = replay_command(seed, kRandomHistoriesTest);
    INFO("seed ", seed, "; replay with: ", replay);

    const LinearizabilityReport accepted = check_linearizability(history);
    INFO(to_string(accepted));
    REQUIRE(accepted.verdict == kYes);

    std::vector<std::size_t> reads;
    for (std::size_t i = 0; i < history.size(); ++i) {
      if (history[i].kind == KvOpKind::get && history[i].outcome == KvOutcome::ok) {
        reads.push_back(i);
      }
    }
    if (reads.empty()) {
      continue;
    }
    const std::size_t victim =
        reads[static_cast<std::size_t>(shape.below(static_cast<std::int64_t>(reads.size())))];
    history[victim].observed = 1'000'000'007;  // never written: values count up from 1
    const LinearizabilityReport rejected = check_linearizability(history);
    INFO("victim #", victim, "\n", to_string(rejected));
    REQUIRE(rejected.verdict == kNo);
    CHECK(rejected.key == history[victim].key);
    REQUIRE(rejected.violation.has_value());
    // No branch of the search gets past the bad read's return, and some branch reaches it.
    CHECK(rejected.violation->unplaced.index == victim);
  }
}

constexpr const char* kExhaustiveTest =
    "check_linearizability agrees with exhaustive search on small random histories";
TEST_CASE(kExhaustiveTest) {
  std::size_t linearizable = 0;
  std::size_t not_linearizable = 0;
  for (const std::uint64_t seed : test_seeds(10000)) {
    Rng rng(seed);
    const std::vector<KvOperation> history = random_small_history(rng);
    const std::string replay = replay_command(seed, kExhaustiveTest);
    INFO("seed ", seed, "; replay with: ", replay);
    const LinearizabilityReport report = check_linearizability(history);
    INFO(to_string(report));
    const bool expected = BruteForce(history).linearizable();
    REQUIRE(report.verdict == (expected ? kYes : kNo));
    (expected ? linearizable : not_linearizable) += 1;
  }
  if (!tenure::testing::seed_override()) {
    // Both verdicts were exercised in earnest.
    CHECK(linearizable > 1000);
    CHECK(not_linearizable > 1000);
  }
}

// A generated linearizable history, shrunk to a few operations, with up to two random faults
// injected: near misses, where the checker's shortcuts would show.
std::vector<KvOperation> perturbed_history(std::uint64_t seed) {
  Rng rng(seed * 7919);
  GenOptions g;
  g.operations = static_cast<std::size_t>(4 + rng.below(12));
  g.keys = static_cast<std::uint64_t>(1 + rng.below(2));
  g.clients = static_cast<std::uint64_t>(1 + rng.below(5));
  g.max_latency = 1 + rng.below(30);
  g.max_gap = 1 + rng.below(8);
  std::vector<KvOperation> history = generate_history(seed, g);
  if (rng.one_in(2)) {  // values that repeat, so that no write is the only one of its value
    for (KvOperation& op : history) {
      for (std::int64_t* v : {&op.value, &op.expected, &op.observed}) {
        *v = *v == kAbsent ? kAbsent : 1 + *v % 3;
      }
    }
  }
  for (std::int64_t faults = rng.below(3); faults > 0; --faults) {
    KvOperation& op =
        history[static_cast<std::size_t>(rng.below(static_cast<std::int64_t>(history.size())))];
    switch (rng.below(6)) {
      case 0:
        op.observed = rng.one_in(3) ? kAbsent : 1 + rng.below(6);
        break;
      case 1:
        op.cas_succeeded = !op.cas_succeeded;
        break;
      case 2:
        op.outcome = static_cast<KvOutcome>(rng.below(3));
        op.ret = op.call + rng.below(10);
        break;
      case 3:
        op.call -= rng.below(20);
        break;
      case 4:
        op.ret = op.call + rng.below(5);
        break;
      default:
        op.expected = rng.one_in(2) ? kAbsent : 1 + rng.below(6);
        break;
    }
  }
  return history;
}

constexpr const char* kPerturbedTest =
    "check_linearizability agrees with exhaustive search on perturbed linearizable histories";
TEST_CASE(kPerturbedTest) {
  std::size_t linearizable = 0;
  std::size_t not_linearizable = 0;
  for (const std::uint64_t seed : test_seeds(5000)) {
    const std::vector<KvOperation> history = perturbed_history(seed);
    const std::string replay = replay_command(seed, kPerturbedTest);
    INFO("seed ", seed, "; replay with: ", replay);
    const LinearizabilityReport report = check_linearizability(history);
    INFO(to_string(report));
    const bool expected = BruteForce(history).linearizable();
    REQUIRE(report.verdict == (expected ? kYes : kNo));
    (expected ? linearizable : not_linearizable) += 1;
  }
  if (!tenure::testing::seed_override()) {
    CHECK(linearizable > 1000);
    CHECK(not_linearizable > 300);
  }
}

TEST_CASE("check_linearizability verifies a 2000-operation history with default options") {
  SUBCASE("over 20 keys") {
    GenOptions g;
    g.operations = 2000;
    g.keys = 20;
    g.clients = 5;
    const std::vector<KvOperation> history = generate_history(kDefaultSeed, g);
    const LinearizabilityReport report = check_linearizability(history);
    INFO(to_string(report));
    CHECK(report.verdict == kYes);
    CHECK(report.keys_checked == 20);
  }
  SUBCASE("all on one key") {
    GenOptions g;
    g.operations = 2000;
    g.keys = 1;
    g.clients = 5;
    const std::vector<KvOperation> history = generate_history(kDefaultSeed + 1, g);
    const LinearizabilityReport report = check_linearizability(history);
    INFO(to_string(report));
    CHECK(report.verdict == kYes);
  }
}
