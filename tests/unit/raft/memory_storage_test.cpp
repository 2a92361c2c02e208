// MemoryStorage: the rings, compaction, and the manual durability model with crash().
#include <raft/memory_storage.hpp>

#include "../../support/seed.hpp"

#include <doctest/doctest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

using tenure::raft::EntryType;
using tenure::raft::EntryView;
using tenure::raft::errc;
using tenure::raft::HardState;
using tenure::raft::LogIndex;
using tenure::raft::MemoryStorage;
using tenure::raft::Term;

namespace {

std::vector<std::byte> bytes_of(const std::string& s) {
  std::vector<std::byte> b(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    b[i] = static_cast<std::byte>(s[i]);
  }
  return b;
}

std::string text(const EntryView& e) {
  return {reinterpret_cast<const char*>(e.payload.data()), e.payload.size()};
}

void append(MemoryStorage& s, Term term, const std::string& payload) {
  const auto b = bytes_of(payload);
  const EntryView e{term, s.last_index() + 1, EntryType::normal, b};
  (void)s.append(std::span<const EntryView>(&e, 1));
}

}  // namespace

TEST_CASE("MemoryStorage: an empty log") {
  MemoryStorage s;
  CHECK(s.first_index() == 1);
  CHECK(s.last_index() == 0);
  CHECK(s.term_at(0).value() == 0);
  CHECK(s.term_at(1).code() == errc::invalid_argument);
  CHECK(s.durable_seq() == 0);
}

TEST_CASE("MemoryStorage: append - read back - truncate - compact") {
  MemoryStorage s;
  append(s, 1, "a");
  append(s, 1, "bb");
  append(s, 2, "");
  append(s, 2, "dddd");
  CHECK(s.last_index() == 4);
  CHECK(text(s.entry(2)) == "bb");
  CHECK(s.entry(3).payload.empty());
  CHECK(s.term_at(4).value() == 2);
  (void)s.truncate_suffix(3);
  CHECK(s.last_index() == 2);
  append(s, 3, "new");
  CHECK(text(s.entry(3)) == "new");
  CHECK(s.term_at(3).value() == 3);
  s.compact(2);
  CHECK(s.first_index() == 3);
  CHECK(s.term_at(2).value() == 1);  // the compaction point keeps its term
  CHECK(s.term_at(1).code() == errc::invalid_argument);
  CHECK(text(s.entry(3)) == "new");
}

TEST_CASE("MemoryStorage: rings wrap and grow without corrupting payloads") {
  MemoryStorage s(MemoryStorage::Options{false, 16, 64});
  std::mt19937_64 rng(5);
  std::vector<std::string> expected(1, "");
  for (int i = 0; i < 5000; ++i) {
    std::string p(rng() % 40, static_cast<char>('a' + i % 26));
    append(s, 1, p);
    expected.push_back(p);
    if (i % 7 == 0 && s.last_index() > 20) {
      s.compact(s.last_index() - 20);
    }
  }
  for (LogIndex i = s.first_index(); i <= s.last_index(); ++i) {
    REQUIRE(text(s.entry(i)) == expected[i]);
  }
  CHECK(s.byte_capacity() < 4096);  // compaction let it reuse memory
}

TEST_CASE("MemoryStorage: writes are durable at once by default") {
  MemoryStorage s;
  append(s, 1, "x");
  CHECK(s.durable_seq() == s.last_seq());
}

TEST_CASE("MemoryStorage manual_sync: durability follows sync - crash loses the rest") {
  MemoryStorage s(MemoryStorage::Options{true, 16, 256});
  append(s, 1, "one");
  append(s, 1, "two");
  (void)s.save_hard_state(HardState{1, 2, 0});
  const auto after_three = s.last_seq();
  CHECK(s.durable_seq() == 0);
  s.sync_through(after_three);
  CHECK(s.durable_seq() == after_three);
  // Not durable: overwrite entry 2, append 3, change the vote.
  (void)s.truncate_suffix(2);
  append(s, 2, "TWO");
  append(s, 2, "three");
  (void)s.save_hard_state(HardState{2, 3, 0});
  CHECK(s.unsynced_writes() == 4);
  s.crash();
  CHECK(s.last_index() == 2);
  CHECK(text(s.entry(2)) == "two");
  CHECK(s.term_at(2).value() == 1);
  CHECK(s.hard_state() == HardState{1, 2, 0});
  // Sequence numbers keep growing; new writes work.
  append(s, 3, "after");
  CHECK(s.last_seq() > after_three + 4);
  CHECK(text(s.entry(3)) == "after");
}

TEST_CASE("MemoryStorage manual_sync: a crash keeps exactly the synced prefix") {
  const std::uint64_t seed = tenure::testing::test_seed(77);
  INFO("replay: " << tenure::testing::replay_command(
           seed, "MemoryStorage manual_sync: a crash keeps exactly the synced prefix"));
  std::mt19937_64 rng(seed);
  for (int round = 0; round < 200; ++round) {
    MemoryStorage s(MemoryStorage::Options{true, 16, 128});
    // A reference of what the storage looked like after each write.
    std::vector<std::vector<std::string>> states{{}};
    std::vector<std::string> log;
    std::vector<HardState> hard{{}};
    HardState hs;
    for (int w = 0; w < 30; ++w) {
      const auto op = rng() % 4;
      if (op == 0 && !log.empty()) {
        const LogIndex from = 1 + rng() % log.size();
        (void)s.truncate_suffix(from);
        log.resize(from - 1);
      } else if (op == 1) {
        hs.term += 1;
        hs.vote = rng() % 5;
        (void)s.save_hard_state(hs);
      } else {
        const std::string p = std::to_string(rng() % 1000);
        append(s, 1, p);
        log.push_back(p);
      }
      states.push_back(log);
      hard.push_back(hs);
      if (rng() % 5 == 0) {
        s.sync_through(s.durable_seq() + rng() % 4);
      }
    }
    const auto durable = s.durable_seq();
    s.crash();
    const auto& want = states[durable];
    REQUIRE(s.last_index() == want.size());
    for (LogIndex i = 1; i <= want.size(); ++i) {
      REQUIRE(text(s.entry(i)) == want[i - 1]);
    }
    REQUIRE(s.hard_state() == hard[durable]);
  }
}
