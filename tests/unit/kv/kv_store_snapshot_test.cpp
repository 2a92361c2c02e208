// KvStore snapshots (examples/kv/kv_store.hpp): the bytes a reader yields restore exactly the
// state it captured, whatever is applied while it is read and however the bytes are chunked; a
// damaged snapshot is refused with the old state kept; an abandoned reader leaves nothing behind.
#include <kv/kv_store.hpp>
#include <kv/protocol.hpp>

#include <doctest/doctest.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

using tenure::kv::CommandKind;
using tenure::kv::encode_command;
using tenure::kv::kMaxSnapshotFieldBytes;
using tenure::kv::kSnapshotMagic;
using tenure::kv::KvStore;

namespace {

using State = std::map<std::string, std::string>;
using Bytes = std::vector<std::byte>;

constexpr std::size_t kChunkSizes[] = {1, 7, 64, std::size_t{1} << 20};
// More than any snapshot of initial_keys() under random_write() can take: a reader that yields
// more is going round in circles, and the test fails rather than hangs.
constexpr std::size_t kNoSnapshotThisLong = 100000;

std::uint64_t apply(KvStore& store, CommandKind kind, std::string_view key,
                    std::string_view value = {},
                    std::optional<std::string_view> expected = std::nullopt) {
  Bytes payload;
  encode_command(kind, key, value, expected, payload);
  return store.apply(1, payload);
}

void put(KvStore& store, State& shadow, const std::string& key, const std::string& value) {
  REQUIRE(apply(store, CommandKind::put, key, value) == 1);
  shadow[key] = value;
}

void del(KvStore& store, State& shadow, const std::string& key) {
  REQUIRE(apply(store, CommandKind::del, key) == 1);
  shadow.erase(key);
}

// The store holds exactly `expected`: as many keys, each with its value.
void check_state(const KvStore& store, const State& expected) {
  REQUIRE(store.size() == expected.size());
  for (const auto& [key, value] : expected) {
    const auto got = store.get(key);
    REQUIRE(got.has_value());
    REQUIRE(*got == value);
  }
}

Bytes read_all(KvStore::snapshot_reader& reader, std::size_t chunk) {
  Bytes out;
  Bytes buffer(chunk);
  for (;;) {
    const std::size_t n = reader.read(buffer);
    if (n == 0) {
      break;
    }
    // Fewer than asked only at the end: the next read must be the final 0.
    if (n < chunk) {
      out.insert(out.end(), buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(n));
      REQUIRE(reader.read(buffer) == 0);
      break;
    }
    out.insert(out.end(), buffer.begin(), buffer.end());
  }
  CHECK(reader.read(buffer) == 0);
  return out;
}

Bytes snapshot_of(KvStore& store, std::size_t chunk = 64) {
  auto reader = store.begin_snapshot();
  return read_all(reader, chunk);
}

// Feeds `bytes` in chunks of `chunk` as the group does (abort on the first refused chunk);
// true when the restore took.
bool restore(KvStore& store, std::span<const std::byte> bytes, std::size_t chunk) {
  store.begin_restore();
  for (std::size_t at = 0; at < bytes.size(); at += chunk) {
    const std::size_t n = std::min(chunk, bytes.size() - at);
    if (!store.restore_chunk(bytes.subspan(at, n))) {
      store.abort_restore();
      return false;
    }
  }
  return store.finish_restore();
}

void put_le(Bytes& out, std::uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) {
    out.push_back(static_cast<std::byte>((v >> (8 * i)) & 0xff));
  }
}

void put_text(Bytes& out, std::string_view s) {
  for (char c : s) {
    out.push_back(static_cast<std::byte>(c));
  }
}

// A snapshot written by hand: header, the records as given (in that order), trailer `count`.
Bytes handmade(const std::vector<std::pair<std::string, std::string>>& records,
               std::uint64_t count) {
  Bytes out(kSnapshotMagic.begin(), kSnapshotMagic.end());
  for (const auto& [key, value] : records) {
    put_le(out, key.size(), 4);
    put_text(out, key);
    put_le(out, value.size(), 4);
    put_text(out, value);
  }
  put_le(out, count, 8);
  return out;
}

// Keys of varied lengths and bytes (empty, NUL, 0xff) and values likewise.
State many_keys(std::size_t n) {
  State state;
  state[""] = "empty key";
  state[std::string("nul\0key", 7)] = std::string("nul\0value", 9);
  state["\xff\xfe"] = "";
  for (std::size_t i = 0; i < n; ++i) {
    state["key-" + std::to_string(i * 7919 % 100003)] =
        std::string(i % 97, static_cast<char>('a' + i % 26)) + std::to_string(i);
  }
  return state;
}

KvStore store_of(const State& state) {
  KvStore store;
  State shadow;
  for (const auto& [key, value] : state) {
    put(store, shadow, key, value);
  }
  return store;
}

std::string key_of(std::uint32_t i) {
  std::string digits = std::to_string(i);
  return "k" + std::string(4 - digits.size(), '0') + digits;
}

// One random write over keys k0000..k0299 (some present, some not), on the store and on
// `shadow`, checking apply's result: puts, deletes, compare-and-sets that match (present or
// absent) and ones that do not.
void random_write(KvStore& store, State& shadow, std::mt19937& rng) {
  const std::string key = key_of(static_cast<std::uint32_t>(rng() % 300));
  const std::string value = "w" + std::to_string(rng() % 100000);
  const auto it = shadow.find(key);
  switch (rng() % 5) {
    case 0:
    case 1:
      put(store, shadow, key, value);
      break;
    case 2:
      del(store, shadow, key);
      break;
    case 3:
      if (it != shadow.end()) {
        REQUIRE(apply(store, CommandKind::cas, key, value, std::string_view(it->second)) == 1);
      } else {
        REQUIRE(apply(store, CommandKind::cas, key, value, std::nullopt) == 1);
      }
      shadow[key] = value;
      break;
    default:
      if (it != shadow.end()) {
        REQUIRE(apply(store, CommandKind::cas, key, value, std::string_view("no such value")) == 0);
      } else {
        REQUIRE(apply(store, CommandKind::cas, key, value, std::string_view("x")) == 0);
      }
      break;
  }
}

State initial_keys() {
  State state;
  // Every other key of the random writes' range: room for inserts between present keys.
  for (std::uint32_t i = 0; i < 300; i += 2) {
    state[key_of(i)] = "v" + std::to_string(i);
  }
  return state;
}

// Reads `reader` `chunk` bytes at a time with `writes_per_chunk` random writes after every
// read, keeping `shadow` up to date; the bytes read.
Bytes read_while_writing(KvStore::snapshot_reader& reader, KvStore& store, State& shadow,
                         std::size_t chunk, int writes_per_chunk, std::mt19937& rng) {
  Bytes out;
  Bytes buffer(chunk);
  for (;;) {
    const std::size_t n = reader.read(buffer);
    if (n == 0) {
      break;
    }
    out.insert(out.end(), buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(n));
    REQUIRE(out.size() < kNoSnapshotThisLong);
    for (int i = 0; i < writes_per_chunk; ++i) {
      random_write(store, shadow, rng);
    }
  }
  return out;
}

}  // namespace

TEST_CASE("KvStore apply puts deletes and compares-and-sets") {
  KvStore store;
  CHECK(apply(store, CommandKind::put, "a", "1") == 1);
  CHECK(store.get("a") == std::optional<std::string_view>("1"));
  CHECK(apply(store, CommandKind::cas, "a", "2", std::string_view("0")) == 0);
  CHECK(apply(store, CommandKind::cas, "a", "2", std::nullopt) == 0);
  CHECK(apply(store, CommandKind::cas, "a", "2", std::string_view("1")) == 1);
  CHECK(store.get("a") == std::optional<std::string_view>("2"));
  CHECK(apply(store, CommandKind::cas, "b", "3", std::nullopt) == 1);
  CHECK(store.size() == 2);
  CHECK(apply(store, CommandKind::del, "a") == 1);
  CHECK(apply(store, CommandKind::del, "a") == 1);
  CHECK_FALSE(store.get("a").has_value());
  CHECK(store.size() == 1);
  const std::byte garbage[] = {std::byte{9}};
  CHECK(store.apply(1, garbage) == 2);
  CHECK(store.size() == 1);
}

TEST_CASE("KvStore snapshot bytes follow the documented format") {
  KvStore store;
  State shadow;
  put(store, shadow, "b", "22");
  put(store, shadow, "a", "1");
  CHECK(snapshot_of(store) == handmade({{"a", "1"}, {"b", "22"}}, 2));
}

TEST_CASE("KvStore snapshot round trip of an empty store") {
  for (const std::size_t chunk : kChunkSizes) {
    CAPTURE(chunk);
    KvStore empty;
    const Bytes bytes = snapshot_of(empty, chunk);
    CHECK(bytes == handmade({}, 0));
    KvStore target = store_of({{"old", "state"}});
    REQUIRE(restore(target, bytes, chunk));
    check_state(target, {});
  }
}

TEST_CASE("KvStore snapshot round trip of many keys") {
  const State state = many_keys(3000);
  KvStore store = store_of(state);
  check_state(store, state);
  const Bytes reference = snapshot_of(store, 64);
  for (const std::size_t chunk : kChunkSizes) {
    CAPTURE(chunk);
    const Bytes bytes = snapshot_of(store, chunk);
    CHECK(bytes == reference);
    KvStore target = store_of({{"old", "state"}, {"key-0", "stale"}});
    REQUIRE(restore(target, bytes, chunk));
    check_state(target, state);
    // Restore chunks need not line up with the reader's.
    KvStore other;
    REQUIRE(restore(other, bytes, chunk == 7 ? 64 : 7));
    check_state(other, state);
    // The restored store goes on applying, and its own snapshot is the same bytes.
    CHECK(snapshot_of(target, chunk) == reference);
    State shadow = state;
    put(target, shadow, "key-0", "new");
    del(target, shadow, "");
    check_state(target, shadow);
  }
}

TEST_CASE("KvStore snapshot round trip of the longest field") {
  const std::string big(kMaxSnapshotFieldBytes, 'z');
  const State state{{"big", big}, {big, "small"}};
  KvStore store = store_of(state);
  const Bytes bytes = snapshot_of(store, 4096);
  KvStore target;
  REQUIRE(restore(target, bytes, 4096));
  check_state(target, state);
}

TEST_CASE("KvStore snapshot yields the state as of capture while writes go on") {
  for (const std::size_t chunk : {std::size_t{1}, std::size_t{7}, std::size_t{64}}) {
    CAPTURE(chunk);
    std::mt19937 rng(static_cast<std::uint32_t>(chunk));
    const State initial = initial_keys();
    KvStore store = store_of(initial);
    State shadow = initial;
    // Some churn before the capture, so that it is not simply the initial state.
    for (int i = 0; i < 200; ++i) {
      random_write(store, shadow, rng);
    }
    const State captured = shadow;
    auto reader = store.begin_snapshot();

    // Writes land on both sides of the reader's cursor as it moves: a key is deleted, then put
    // back, keys absent at capture come and go, and one key changes many times.
    const int writes_per_chunk = chunk == 1 ? 1 : 5;
    Bytes bytes;
    Bytes buffer(chunk);
    int round = 0;
    for (;;) {
      const std::size_t n = reader.read(buffer);
      if (n == 0) {
        break;
      }
      bytes.insert(bytes.end(), buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(n));
      REQUIRE(bytes.size() < kNoSnapshotThisLong);
      for (int i = 0; i < writes_per_chunk; ++i) {
        random_write(store, shadow, rng);
      }
      if (round % 50 == 0) {
        put(store, shadow, key_of(0), "first key " + std::to_string(round));
        put(store, shadow, key_of(299), "last key " + std::to_string(round));
        del(store, shadow, key_of(150));
        put(store, shadow, key_of(151), "between " + std::to_string(round));
        del(store, shadow, key_of(151));
      }
      ++round;
    }
    CHECK(round > 40);
    // The live store applied every write; the snapshot is the state at capture.
    check_state(store, shadow);
    CHECK(shadow != captured);
    KvStore target;
    REQUIRE(restore(target, bytes, 64));
    check_state(target, captured);

    // Once the reader is done, writes no longer touch it, and the next snapshot is the state now.
    for (int i = 0; i < 200; ++i) {
      random_write(store, shadow, rng);
    }
    KvStore again;
    REQUIRE(restore(again, snapshot_of(store, chunk), 64));
    check_state(again, shadow);
  }
}

TEST_CASE("KvStore snapshot keeps keys deleted and skips keys inserted after capture") {
  KvStore store;
  State shadow;
  put(store, shadow, "b", "2");
  put(store, shadow, "d", "4");
  put(store, shadow, "f", "6");
  const State captured = shadow;
  auto reader = store.begin_snapshot();
  Bytes bytes;
  Bytes buffer(8 + 4 + 1 + 4 + 1);  // the header and the record of "b"
  const std::size_t n = reader.read(buffer);
  bytes.insert(bytes.end(), buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(n));
  REQUIRE(n == 18);
  // Behind the cursor: changes the snapshot must not see (and must not record).
  put(store, shadow, "a", "new");
  put(store, shadow, "b", "changed");
  // Ahead of it: a deleted key, a new key, a changed key, one deleted and put back.
  del(store, shadow, "d");
  put(store, shadow, "c", "inserted");
  put(store, shadow, "e", "inserted");
  del(store, shadow, "e");
  put(store, shadow, "f", "first");
  put(store, shadow, "f", "second");
  put(store, shadow, "g", "inserted");
  del(store, shadow, "f");
  put(store, shadow, "f", "back");
  const Bytes rest = read_all(reader, 5);
  bytes.insert(bytes.end(), rest.begin(), rest.end());
  CHECK(bytes == handmade({{"b", "2"}, {"d", "4"}, {"f", "6"}}, 3));
  check_state(store, shadow);
  KvStore target;
  REQUIRE(restore(target, bytes, 3));
  check_state(target, captured);
}

TEST_CASE("KvStore restore of a truncated snapshot fails and keeps the old state") {
  const State state = many_keys(40);
  KvStore source = store_of(state);
  const Bytes bytes = snapshot_of(source);
  const State old{{"old", "state"}, {"key-0", "stale"}};
  KvStore target = store_of(old);
  for (std::size_t length = 0; length < bytes.size(); ++length) {
    CAPTURE(length);
    const auto truncated = std::span<const std::byte>(bytes).first(length);
    for (const std::size_t chunk : {std::size_t{1}, std::size_t{7}, std::size_t{1} << 20}) {
      CHECK_FALSE(restore(target, truncated, chunk));
      check_state(target, old);
    }
  }
  REQUIRE(restore(target, bytes, 7));
  check_state(target, state);
}

TEST_CASE("KvStore restore of a corrupted snapshot fails and keeps the old state") {
  const State state{{"alpha", "1"}, {"beta", "22"}, {"gamma", "333"}};
  KvStore source = store_of(state);
  const Bytes good = snapshot_of(source);
  REQUIRE(good == handmade({{"alpha", "1"}, {"beta", "22"}, {"gamma", "333"}}, 3));
  const State old{{"old", "state"}};

  std::vector<std::pair<std::string, Bytes>> cases;
  {
    Bytes b = good;
    b[0] = std::byte{'X'};
    cases.emplace_back("bad magic", b);
  }
  {
    Bytes b = good;
    b[7] = std::byte{'2'};
    cases.emplace_back("other version", b);
  }
  {
    Bytes b = good;
    b[b.size() - 8] = std::byte{2};
    cases.emplace_back("count too low", b);
  }
  {
    Bytes b = good;
    b[b.size() - 8] = std::byte{4};
    cases.emplace_back("count too high", b);
  }
  {
    Bytes b = good;
    b.push_back(std::byte{0});
    cases.emplace_back("a byte after the trailer", b);
  }
  {
    Bytes b = good;
    b.insert(b.end() - 8, std::byte{0});
    cases.emplace_back("a byte before the trailer", b);
  }
  {
    Bytes b = good;
    b[8] = std::byte{6};  // "alpha" claims a 6-byte key: every later length is off by one
    cases.emplace_back("key length off by one", b);
  }
  cases.emplace_back("keys out of order",
                     handmade({{"beta", "22"}, {"alpha", "1"}, {"gamma", "333"}}, 3));
  cases.emplace_back("a key twice", handmade({{"alpha", "1"}, {"alpha", "2"}}, 2));
  cases.emplace_back("no trailer", Bytes(good.begin(), good.end() - 8));
  cases.emplace_back("nothing", Bytes{});
  cases.emplace_back("trailer only", Bytes(good.end() - 8, good.end()));

  for (const auto& one : cases) {
    const std::string& name = one.first;
    const Bytes& bytes = one.second;
    CAPTURE(name);
    for (const std::size_t chunk : kChunkSizes) {
      CAPTURE(chunk);
      KvStore target = store_of(old);
      CHECK_FALSE(restore(target, bytes, chunk));
      check_state(target, old);
      // The store is fit for the next restore.
      REQUIRE(restore(target, good, chunk));
      check_state(target, state);
    }
  }
}

TEST_CASE("KvStore restore refuses an oversized length without waiting for its bytes") {
  for (const bool key : {true, false}) {
    CAPTURE(key);
    Bytes b(kSnapshotMagic.begin(), kSnapshotMagic.end());
    if (key) {
      put_le(b, kMaxSnapshotFieldBytes + 1, 4);
    } else {
      put_le(b, 1, 4);
      put_text(b, "k");
      put_le(b, kMaxSnapshotFieldBytes + 1, 4);
    }
    put_le(b, 0, 8);  // as much as a chunk may hold after it
    KvStore target = store_of({{"old", "state"}});
    target.begin_restore();
    CHECK_FALSE(target.restore_chunk(b));
    CHECK_FALSE(target.finish_restore());
    check_state(target, {{"old", "state"}});
  }
}

TEST_CASE("KvStore restore calls out of order are refused or start afresh") {
  const State state{{"a", "1"}, {"b", "2"}};
  KvStore source = store_of(state);
  const Bytes good = snapshot_of(source);
  const State old{{"old", "state"}};
  KvStore target = store_of(old);

  CHECK_FALSE(target.restore_chunk(good));
  CHECK_FALSE(target.finish_restore());
  check_state(target, old);

  // Aborted halfway: the old state stays, and finishing what was aborted fails.
  target.begin_restore();
  REQUIRE(target.restore_chunk(std::span<const std::byte>(good).first(good.size() / 2)));
  target.abort_restore();
  CHECK_FALSE(target.finish_restore());
  check_state(target, old);

  // A restore begun again drops the half-built state rather than adding to it.
  target.begin_restore();
  REQUIRE(target.restore_chunk(std::span<const std::byte>(good).first(good.size() / 2)));
  check_state(target, old);
  REQUIRE(restore(target, good, 5));
  check_state(target, state);

  // After a chunk is refused, the rest of that restore is refused too.
  Bytes bad = good;
  bad[0] = std::byte{0};
  target.begin_restore();
  CHECK_FALSE(target.restore_chunk(bad));
  CHECK_FALSE(target.restore_chunk(good));
  CHECK_FALSE(target.finish_restore());
  check_state(target, state);
}

TEST_CASE("KvStore reader destroyed before completion leaves the store consistent") {
  std::mt19937 rng(7);
  const State initial = initial_keys();
  KvStore store = store_of(initial);
  State shadow = initial;
  {
    auto reader = store.begin_snapshot();
    Bytes buffer(100);
    for (int i = 0; i < 10; ++i) {
      REQUIRE(reader.read(buffer) == buffer.size());
      for (int w = 0; w < 20; ++w) {
        random_write(store, shadow, rng);
      }
    }
  }
  for (int i = 0; i < 500; ++i) {
    random_write(store, shadow, rng);
  }
  check_state(store, shadow);

  // The next snapshot, read under writes too, is the state at its own capture.
  const State captured = shadow;
  auto reader = store.begin_snapshot();
  const Bytes bytes = read_while_writing(reader, store, shadow, 16, 3, rng);
  check_state(store, shadow);
  KvStore target;
  REQUIRE(restore(target, bytes, 16));
  check_state(target, captured);

  // A reader moved from yields nothing; the one moved to goes on where it was.
  const State captured2 = shadow;
  auto first = store.begin_snapshot();
  Bytes head(20);
  REQUIRE(first.read(head) == head.size());
  random_write(store, shadow, rng);
  auto moved = std::move(first);
  Bytes buffer(16);
  CHECK(first.read(buffer) == 0);  // NOLINT(bugprone-use-after-move)
  Bytes all = head;
  const Bytes tail = read_while_writing(moved, store, shadow, 16, 3, rng);
  all.insert(all.end(), tail.begin(), tail.end());
  KvStore target2;
  REQUIRE(restore(target2, all, 64));
  check_state(target2, captured2);
}

TEST_CASE("KvStore readers overlapping each other each yield their own capture") {
  std::mt19937 rng(11);
  const State initial = initial_keys();
  KvStore store = store_of(initial);
  State shadow = initial;
  const State captured1 = shadow;
  auto reader1 = store.begin_snapshot();
  Bytes bytes1;
  Bytes buffer(10);
  for (int i = 0; i < 30; ++i) {
    const std::size_t n = reader1.read(buffer);
    bytes1.insert(bytes1.end(), buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(n));
    random_write(store, shadow, rng);
  }
  const State captured2 = shadow;
  auto reader2 = store.begin_snapshot();
  Bytes bytes2;
  for (;;) {
    const std::size_t n1 = reader1.read(buffer);
    bytes1.insert(bytes1.end(), buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(n1));
    const std::size_t n2 = reader2.read(buffer);
    bytes2.insert(bytes2.end(), buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(n2));
    if (n1 == 0 && n2 == 0) {
      break;
    }
    REQUIRE(bytes1.size() + bytes2.size() < kNoSnapshotThisLong);
    random_write(store, shadow, rng);
    random_write(store, shadow, rng);
  }
  KvStore target1;
  REQUIRE(restore(target1, bytes1, 64));
  check_state(target1, captured1);
  KvStore target2;
  REQUIRE(restore(target2, bytes2, 64));
  check_state(target2, captured2);
}

TEST_CASE("KvStore reader survives a restore or a move of its store") {
  std::mt19937 rng(5);
  const State initial = initial_keys();
  const State replacement{{"other", "state"}};
  KvStore donor = store_of(replacement);
  const Bytes replacement_bytes = snapshot_of(donor);

  // A restore swaps the map while a reader is halfway through the old one.
  {
    KvStore store = store_of(initial);
    State shadow = initial;
    auto reader = store.begin_snapshot();
    Bytes bytes(50);
    REQUIRE(reader.read(bytes) == bytes.size());
    random_write(store, shadow, rng);
    REQUIRE(restore(store, replacement_bytes, 64));
    check_state(store, replacement);
    State after = replacement;
    put(store, after, key_of(298), "after restore");
    const Bytes rest = read_all(reader, 64);
    bytes.insert(bytes.end(), rest.begin(), rest.end());
    KvStore target;
    REQUIRE(restore(target, bytes, 64));
    check_state(target, initial);
  }

  // The store moves (its readers with it) and goes on applying.
  {
    auto store = std::make_unique<KvStore>(store_of(initial));
    State shadow = initial;
    auto reader = store->begin_snapshot();
    Bytes bytes(50);
    REQUIRE(reader.read(bytes) == bytes.size());
    KvStore moved = std::move(*store);
    store.reset();
    const Bytes rest = read_while_writing(reader, moved, shadow, 32, 3, rng);
    bytes.insert(bytes.end(), rest.begin(), rest.end());
    check_state(moved, shadow);
    KvStore target;
    REQUIRE(restore(target, bytes, 64));
    check_state(target, initial);
  }
}

TEST_CASE("kv store: the address book's keys - listed - versioned - carried by a snapshot") {
  using Book = std::vector<std::pair<std::uint64_t, std::string>>;
  const auto book_of = [](const KvStore& store) {
    Book book;
    store.for_each_node_key([&](std::uint64_t node, std::string_view endpoint) {
      book.emplace_back(node, std::string(endpoint));
    });
    return book;
  };
  KvStore store;
  State shadow;
  const auto v0 = store.node_keys_version();
  put(store, shadow, "client-key", "x");
  CHECK(store.node_keys_version() == v0);  // a client key is no part of the book
  put(store, shadow, tenure::kv::node_key(4), "127.0.0.1:7104/7204");
  put(store, shadow, tenure::kv::node_key(12), "127.0.0.1:7112/7212");
  put(store, shadow, std::string(tenure::kv::kNodeKeyPrefix) + "junk", "ignored");
  const auto v1 = store.node_keys_version();
  CHECK(v1 != v0);
  // In key order ("12" < "4"), entries whose key names no node id skipped.
  CHECK(book_of(store) == Book{{12, "127.0.0.1:7112/7212"}, {4, "127.0.0.1:7104/7204"}});
  // No client can name them: a client key is printable ASCII.
  CHECK_FALSE(tenure::kv::is_valid_key(tenure::kv::node_key(4)));

  // A snapshot carries the book; the restoring store's version moves, so a reader of the book
  // reads it again.
  auto reader = store.begin_snapshot();
  const Bytes bytes = read_all(reader, 64);
  KvStore restored;
  const auto r0 = restored.node_keys_version();
  restored.begin_restore();
  REQUIRE(restored.restore_chunk(bytes));
  REQUIRE(restored.finish_restore());
  CHECK(restored.node_keys_version() != r0);
  CHECK(book_of(restored) == book_of(store));

  del(store, shadow, tenure::kv::node_key(4));
  CHECK(store.node_keys_version() != v1);
  CHECK(book_of(store) == Book{{12, "127.0.0.1:7112/7212"}});
}
