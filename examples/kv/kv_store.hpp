// The replicated state machine of tenure-kv: a map from string keys to string values, changed by
// commands that are Raft log entries, with snapshots streamed in and out a chunk at a time.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <raft/snapshot.hpp>
#include <raft/types.hpp>

namespace tenure::kv {

/// The prefix of the keys tenure-kv keeps for itself in every shard's store: its address book,
/// `\0node/<id>` -> `host:raft_port/client_port`, one entry per node added with `add-node` (and
/// deleted by `remove-node`). No client can read or write them: a client key is printable ASCII
/// (0x21..0x7e), and these start with a NUL byte. Being ordinary entries of the map, they travel
/// in the log and in snapshots like every other key, so every member of a shard, and a node
/// restarted or catching up from a snapshot, holds the same book.
inline constexpr std::string_view kNodeKeyPrefix{"\0node/", 6};

/// The address-book key of `node`.
inline std::string node_key(std::uint64_t node) {
  return std::string(kNodeKeyPrefix) + std::to_string(node);
}

/// A write, as it travels in a log entry.
enum class CommandKind : std::uint8_t { put = 1, del = 2, cas = 3 };

/// Encodes a write into `out` (replacing its contents). Layout, little-endian: u8 kind,
/// u32 key length, key, u32 value length, value, u8 has_expected, u32 expected length, expected.
inline void encode_command(CommandKind kind, std::string_view key, std::string_view value,
                           std::optional<std::string_view> expected, std::vector<std::byte>& out) {
  out.clear();
  const auto put_u32 = [&](std::size_t v) {
    for (int i = 0; i < 4; ++i) {
      out.push_back(static_cast<std::byte>((v >> (8 * i)) & 0xff));
    }
  };
  const auto put_bytes = [&](std::string_view s) {
    put_u32(s.size());
    const auto* p = reinterpret_cast<const std::byte*>(s.data());
    out.insert(out.end(), p, p + s.size());
  };
  out.push_back(static_cast<std::byte>(kind));
  put_bytes(key);
  put_bytes(value);
  out.push_back(static_cast<std::byte>(expected.has_value() ? 1 : 0));
  put_bytes(expected.value_or(std::string_view{}));
}

/// Snapshot format of KvStore, little-endian:
///
///     header   8 bytes  "KVSNAP01"
///     records  per key, in increasing key order (bytewise): u32 key length, key bytes,
///                                                            u32 value length, value bytes
///     trailer  8 bytes  u64 number of records
///
/// Nothing marks where the records end but the end of the stream: a restore starts reading a
/// record only where more than 8 bytes follow, and checks the last 8 as the trailer in
/// finish_restore().
inline constexpr std::array<std::byte, 8> kSnapshotMagic{
    std::byte{'K'}, std::byte{'V'}, std::byte{'S'}, std::byte{'N'},
    std::byte{'A'}, std::byte{'P'}, std::byte{'0'}, std::byte{'1'}};

/// The longest key or value a snapshot may carry: far above what the client protocol accepts
/// (kMaxKeyBytes, kMaxValueBytes), and low enough that a corrupt length cannot make a restore
/// buffer much before it is refused.
inline constexpr std::uint32_t kMaxSnapshotFieldBytes = 1u << 20;

// Out of KvStore because Clang cannot use a nested class's default member initializers
// before the enclosing class is complete (optional::emplace of one fails to compile).
namespace detail {

using KvMap = std::map<std::string, std::string, std::less<>>;

// What a snapshot reader shares with its store. The reader owns it; the store watches it
// (weak_ptr) and stops recording into it once the reader is done with the records or gone.
struct KvCapture {
  // The map the reader walks: the store's own, or `retired` once the store let go of it.
  const KvMap* live = nullptr;
  std::shared_ptr<const KvMap> retired;
  // Keys changed since the capture that the reader has not reached, with their value then
  // (nullopt: absent then). Every key here is above `cursor`.
  std::map<std::string, std::optional<std::string>, std::less<>> before;
  // The last key the reader dealt with (yielded or skipped); nullopt before the first.
  std::optional<std::string> cursor;
};

// A snapshot being restored.
struct KvRestore {
  KvMap map;
  std::vector<std::byte> buffer;  // bytes received and not yet parsed, from `at`
  std::size_t at = 0;
  std::uint64_t count = 0;  // records parsed
  bool header_seen = false;
};

}  // namespace detail

/// The key-value map. StateMachine and SnapshotStateMachine policy of tenure-kv's groups.
///
/// Values of apply(): 1 when the write took effect, 0 when a compare-and-set found another
/// value, 2 for an entry it cannot decode (never written by tenure-kv; skipped so that one bad
/// entry cannot wedge the replica).
///
/// Snapshots: begin_snapshot() copies nothing, since a store may hold millions of keys. The
/// reader walks the live map in key order; until it has passed a key, the first apply() that
/// changes the key saves the key's value as of the capture (or its absence) aside, and the
/// reader yields that instead of the live value. The saved values are dropped as the reader
/// passes them, and all of them when the reader finishes or is destroyed. A restore replacing
/// the map, or the store going away, hands the old map to the readers under way (a move), so a
/// reader stays valid and right whatever happens to the store.
///
/// Thread-safety: none. apply(), get(), the readers and the restore all run on the group's
/// strand (a reader shares state with its store, unsynchronized).
///
/// Allocation: apply() allocates a map node for a new key (and a value that outgrows its
/// string); while a reader is under way, one saved copy per key changed ahead of the reader; a
/// reader buffers one record; a restore buffers at most one record and a chunk, and builds the
/// whole new map aside, so that the peak is two maps.
class KvStore {
  using Map = detail::KvMap;
  using Capture = detail::KvCapture;
  using Restore = detail::KvRestore;

 public:
  /// The state as of begin_snapshot(), serialized (kSnapshotMagic: the format) a chunk at a
  /// time. Move-only: two readers on one cursor would each yield half of the state.
  class snapshot_reader {
   public:
    // A moved-from reader yields nothing, rather than a header or trailer of its own.
    snapshot_reader(snapshot_reader&& other) noexcept
        : capture_(std::move(other.capture_)),
          pending_(std::move(other.pending_)),
          pending_at_(std::exchange(other.pending_at_, 0)),
          count_(std::exchange(other.count_, 0)),
          stage_(std::exchange(other.stage_, Stage::done)) {
      other.pending_.clear();
    }
    snapshot_reader& operator=(snapshot_reader&& other) noexcept {
      if (this != &other) {
        capture_ = std::move(other.capture_);
        pending_ = std::move(other.pending_);
        other.pending_.clear();
        pending_at_ = std::exchange(other.pending_at_, 0);
        count_ = std::exchange(other.count_, 0);
        stage_ = std::exchange(other.stage_, Stage::done);
      }
      return *this;
    }
    snapshot_reader(const snapshot_reader&) = delete;
    snapshot_reader& operator=(const snapshot_reader&) = delete;
    ~snapshot_reader() = default;

    /// Fills `out` with the next bytes, as many as fit; fewer only at the end; 0 once all are
    /// read.
    std::size_t read(std::span<std::byte> out) {
      std::size_t n = 0;
      while (n < out.size()) {
        if (pending_at_ == pending_.size()) {
          pending_.clear();
          pending_at_ = 0;
          if (!produce()) {
            break;
          }
        }
        const std::size_t k = std::min(out.size() - n, pending_.size() - pending_at_);
        std::memcpy(out.data() + n, pending_.data() + pending_at_, k);
        n += k;
        pending_at_ += k;
      }
      return n;
    }

   private:
    friend class KvStore;
    enum class Stage : std::uint8_t { header, records, done };

    explicit snapshot_reader(std::shared_ptr<Capture> capture) : capture_(std::move(capture)) {}

    // Appends the next piece (header, one record or trailer) to pending_; false once all are.
    bool produce() {
      switch (stage_) {
        case Stage::header:
          pending_.insert(pending_.end(), kSnapshotMagic.begin(), kSnapshotMagic.end());
          stage_ = Stage::records;
          return true;
        case Stage::records:
          if (capture_ != nullptr && next_record()) {
            return true;
          }
          // Dropping the capture is what tells the store to stop recording for this reader.
          capture_.reset();
          put_le(count_, 8);
          stage_ = Stage::done;
          return true;
        case Stage::done:
          break;
      }
      return false;
    }

    // Appends the next key's record as of the capture; false when no key is left.
    bool next_record() {
      Capture& c = *capture_;
      for (;;) {
        const auto live = c.cursor ? c.live->upper_bound(*c.cursor) : c.live->begin();
        const auto saved = c.before.begin();
        const bool live_left = live != c.live->end();
        if (!live_left && saved == c.before.end()) {
          return false;
        }
        // A saved key not above the next live one was changed since the capture: its saved
        // value wins over the live one (if any), and its absence means skip it.
        if (saved != c.before.end() && (!live_left || saved->first <= live->first)) {
          auto node = c.before.extract(saved);
          c.cursor = std::move(node.key());
          if (node.mapped()) {
            put_record(*c.cursor, *node.mapped());
            return true;
          }
          continue;
        }
        put_record(live->first, live->second);
        c.cursor = live->first;
        return true;
      }
    }

    void put_record(std::string_view key, std::string_view value) {
      put_le(key.size(), 4);
      const auto* k = reinterpret_cast<const std::byte*>(key.data());
      pending_.insert(pending_.end(), k, k + key.size());
      put_le(value.size(), 4);
      const auto* v = reinterpret_cast<const std::byte*>(value.data());
      pending_.insert(pending_.end(), v, v + value.size());
      count_ += 1;
    }

    void put_le(std::uint64_t v, int bytes) {
      for (int i = 0; i < bytes; ++i) {
        pending_.push_back(static_cast<std::byte>((v >> (8 * i)) & 0xff));
      }
    }

    std::shared_ptr<Capture> capture_;
    std::vector<std::byte> pending_;  // the piece being handed out, from pending_at_
    std::size_t pending_at_ = 0;
    std::uint64_t count_ = 0;
    Stage stage_ = Stage::header;
  };

  KvStore() = default;
  // A copy takes the map alone: the source's readers stay with the source. A move takes the
  // readers under way along with the map, whose nodes do not move, so they go on unharmed.
  KvStore(const KvStore& other) : map_(other.map_) {}
  KvStore(KvStore&& other) noexcept
      : map_(std::move(other.map_)),
        captures_(std::move(other.captures_)),
        restore_(std::move(other.restore_)) {
    other.map_.clear();
    ++other.node_keys_version_;
    for (const auto& weak : captures_) {
      if (const auto c = weak.lock()) {
        c->live = &map_;
      }
    }
  }
  KvStore& operator=(const KvStore& other) {
    if (this != &other) {
      *this = KvStore(other);
    }
    return *this;
  }
  KvStore& operator=(KvStore&& other) noexcept {
    if (this != &other) {
      retire_map();
      map_ = std::move(other.map_);
      other.map_.clear();
      captures_ = std::move(other.captures_);
      other.captures_.clear();
      restore_ = std::move(other.restore_);
      other.restore_.reset();
      ++node_keys_version_;  // the book may differ: whoever reads it reads it again
      ++other.node_keys_version_;
      for (const auto& weak : captures_) {
        if (const auto c = weak.lock()) {
          c->live = &map_;
        }
      }
    }
    return *this;
  }
  ~KvStore() { retire_map(); }

  std::uint64_t apply(raft::LogIndex, std::span<const std::byte> payload) {
    std::size_t at = 0;
    const auto u8 = [&]() -> std::optional<std::uint8_t> {
      if (at + 1 > payload.size()) {
        return std::nullopt;
      }
      return static_cast<std::uint8_t>(payload[at++]);
    };
    const auto bytes = [&]() -> std::optional<std::string_view> {
      if (at + 4 > payload.size()) {
        return std::nullopt;
      }
      std::uint32_t n = 0;
      for (int i = 0; i < 4; ++i) {
        n |= static_cast<std::uint32_t>(payload[at + i]) << (8 * i);
      }
      at += 4;
      if (n > payload.size() - at) {
        return std::nullopt;
      }
      std::string_view s(reinterpret_cast<const char*>(payload.data() + at), n);
      at += n;
      return s;
    };
    const auto kind = u8();
    const auto key = bytes();
    const auto value = bytes();
    const auto has_expected = u8();
    const auto expected = bytes();
    if (!kind || !key || !value || !has_expected || !expected || at != payload.size()) {
      return 2;
    }
    switch (static_cast<CommandKind>(*kind)) {
      case CommandKind::put:
        put(*key, *value);
        return 1;
      case CommandKind::del:
        erase(*key);
        return 1;
      case CommandKind::cas: {
        const auto current = get(*key);
        const bool matches = *has_expected != 0 ? current.has_value() && *current == *expected
                                                : !current.has_value();
        if (!matches) {
          return 0;
        }
        put(*key, *value);
        return 1;
      }
    }
    return 2;
  }

  /// The value of `key`, or nullopt. The view is valid until the next apply() or
  /// finish_restore().
  std::optional<std::string_view> get(std::string_view key) const {
    const auto it = map_.find(key);
    if (it == map_.end()) {
      return std::nullopt;
    }
    return std::string_view(it->second);
  }

  std::size_t size() const noexcept { return map_.size(); }

  /// Changes whenever an address-book key (kNodeKeyPrefix) changes or a snapshot is restored:
  /// a reader of the book compares it with the version it last read.
  std::uint64_t node_keys_version() const noexcept { return node_keys_version_; }

  /// Calls `f(node, endpoint)` for each address-book entry whose key names a node id, in key
  /// order. The views are valid during the call only.
  template <class F>
  void for_each_node_key(F&& f) const {
    for (auto it = map_.lower_bound(kNodeKeyPrefix);
         it != map_.end() &&
         std::string_view(it->first).substr(0, kNodeKeyPrefix.size()) == kNodeKeyPrefix;
         ++it) {
      const std::string_view digits = std::string_view(it->first).substr(kNodeKeyPrefix.size());
      std::uint64_t node = 0;
      bool ok = !digits.empty() && digits.size() <= 18;
      for (char c : digits) {
        ok = ok && c >= '0' && c <= '9';
        node = node * 10 + static_cast<std::uint64_t>(c - '0');
      }
      if (ok && node != 0) {
        f(node, std::string_view(it->second));
      }
    }
  }

  // --- snapshots (raft::SnapshotStateMachine) --------------------------------------------------
  /// Captures the state as it is now, in O(1): see the class comment.
  snapshot_reader begin_snapshot() {
    auto capture = std::make_shared<Capture>();
    capture->live = &map_;
    prune_captures();
    captures_.push_back(capture);
    return snapshot_reader(std::move(capture));
  }

  /// Starts building a new state aside, from an empty one (dropping one being built).
  void begin_restore() { restore_.emplace(); }

  /// Parses the next bytes of a snapshot. false: malformed, and the restore is dropped.
  bool restore_chunk(std::span<const std::byte> in) {
    if (!restore_) {
      return false;
    }
    restore_->buffer.insert(restore_->buffer.end(), in.begin(), in.end());
    if (!parse(*restore_)) {
      restore_.reset();
      return false;
    }
    return true;
  }

  /// Swaps in the state built, if the snapshot was whole: the header, whole records and a
  /// trailer with their count. false: the old state is kept.
  bool finish_restore() {
    if (!restore_) {
      return false;
    }
    Restore r = std::move(*restore_);
    restore_.reset();
    if (!r.header_seen || r.buffer.size() - r.at != 8 ||
        get_le(std::span<const std::byte>(r.buffer).subspan(r.at), 8) != r.count) {
      return false;
    }
    retire_map();
    map_ = std::move(r.map);
    ++node_keys_version_;
    return true;
  }

  /// Drops the state being built; the old one is kept.
  void abort_restore() { restore_.reset(); }

 private:
  static std::uint64_t get_le(std::span<const std::byte> in, std::size_t bytes) {
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < bytes; ++i) {
      v |= static_cast<std::uint64_t>(in[i]) << (8 * i);
    }
    return v;
  }

  // Moves every whole record out of r.buffer into r.map; false on a malformed one.
  static bool parse(Restore& r) {
    const std::span<const std::byte> b(r.buffer);
    for (;;) {
      const std::size_t avail = b.size() - r.at;
      if (!r.header_seen) {
        if (avail < kSnapshotMagic.size()) {
          break;
        }
        if (!std::equal(kSnapshotMagic.begin(), kSnapshotMagic.end(), b.begin() + r.at)) {
          return false;
        }
        r.at += kSnapshotMagic.size();
        r.header_seen = true;
        continue;
      }
      // At a record boundary the last 8 bytes of a snapshot are its trailer: only more than 8
      // bytes from here say that a record starts here.
      if (avail <= 8) {
        break;
      }
      const auto key_size = static_cast<std::size_t>(get_le(b.subspan(r.at), 4));
      if (key_size > kMaxSnapshotFieldBytes) {
        return false;
      }
      if (avail < 4 + key_size + 4) {
        break;
      }
      const auto value_size = static_cast<std::size_t>(get_le(b.subspan(r.at + 4 + key_size), 4));
      if (value_size > kMaxSnapshotFieldBytes) {
        return false;
      }
      if (avail < 4 + key_size + 4 + value_size) {
        break;
      }
      const std::string_view key(reinterpret_cast<const char*>(b.data() + r.at + 4), key_size);
      const std::string_view value(
          reinterpret_cast<const char*>(b.data() + r.at + 4 + key_size + 4), value_size);
      // A writer yields each key once, in order: anything else is damage, and would also make
      // the trailer's count disagree with the map.
      if (!r.map.empty() && key <= r.map.rbegin()->first) {
        return false;
      }
      r.map.emplace_hint(r.map.end(), key, value);
      r.count += 1;
      r.at += 4 + key_size + 4 + value_size;
    }
    if (r.at > 0) {
      r.buffer.erase(r.buffer.begin(), r.buffer.begin() + static_cast<std::ptrdiff_t>(r.at));
      r.at = 0;
    }
    return true;
  }

  void note_node_key(std::string_view key) noexcept {
    if (!key.empty() && key.front() == kNodeKeyPrefix.front()) {
      ++node_keys_version_;
    }
  }

  void put(std::string_view key, std::string_view value) {
    note_node_key(key);
    const auto it = map_.lower_bound(key);
    if (it != map_.end() && it->first == key) {
      note_change(key, &it->second);
      it->second.assign(value);
    } else {
      note_change(key, nullptr);
      map_.emplace_hint(it, key, value);
    }
  }

  void erase(std::string_view key) {
    note_node_key(key);
    const auto it = map_.find(key);
    if (it != map_.end()) {
      note_change(key, &it->second);
      map_.erase(it);
    }
  }

  // Before `key` changes from `old` (nullptr: absent): saves it for every reader that has not
  // passed the key and has no older value of it saved.
  void note_change(std::string_view key, const std::string* old) {
    if (captures_.empty()) {
      return;
    }
    prune_captures();
    for (const auto& weak : captures_) {
      const auto c = weak.lock();
      if (c == nullptr || (c->cursor && key <= *c->cursor) || c->before.contains(key)) {
        continue;
      }
      c->before.emplace(std::string(key), old != nullptr ? std::optional<std::string>(*old)
                                                         : std::optional<std::string>());
    }
  }

  void prune_captures() {
    std::erase_if(captures_, [](const auto& weak) { return weak.expired(); });
  }

  // The map is about to be replaced or destroyed: the readers under way take it over, unchanged
  // from now on, so what they saved aside stays right.
  void retire_map() {
    prune_captures();
    if (captures_.empty()) {
      return;
    }
    auto retired = std::make_shared<const Map>(std::move(map_));
    map_.clear();
    for (const auto& weak : captures_) {
      if (const auto c = weak.lock()) {
        c->retired = retired;
        c->live = retired.get();
      }
    }
    captures_.clear();
  }

  Map map_;
  std::uint64_t node_keys_version_ = 0;
  // The readers of this store's map under way (expired ones pruned lazily). Usually none or
  // one: the group starts a snapshot only after dropping the previous reader.
  std::vector<std::weak_ptr<Capture>> captures_;
  std::optional<Restore> restore_;
};

static_assert(raft::SnapshotStateMachine<KvStore>);

}  // namespace tenure::kv
