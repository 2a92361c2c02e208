// KvStateMachine: a replicated key-value store for simulations, with its command encoding.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <unordered_map>
#include <utility>
#include <vector>

#include <raft/snapshot.hpp>
#include <raft/testing/kv_history.hpp>
#include <raft/types.hpp>

namespace tenure::raft::testing {

/// One write command: put, del or cas (a get is a read, never a command).
struct KvCommand {
  KvOpKind kind = KvOpKind::put;
  std::uint64_t key = 0;
  std::int64_t value = kAbsent;
  std::int64_t expected = kAbsent;
  /// Unique per operation; makes every payload distinct so that traces and the state-machine
  /// safety check can tell entries apart.
  std::uint64_t id = 0;
};

/// The encoded size of every KvCommand: kind, key, value, expected, id.
inline constexpr std::size_t kKvCommandSize = 1 + 4 * 8;

/// Encodes `c` into `out` (little-endian). Never fails.
inline void encode_kv_command(const KvCommand& c,
                              std::span<std::byte, kKvCommandSize> out) noexcept {
  out[0] = static_cast<std::byte>(c.kind);
  const std::uint64_t words[4] = {c.key, static_cast<std::uint64_t>(c.value),
                                  static_cast<std::uint64_t>(c.expected), c.id};
  for (std::size_t w = 0; w < 4; ++w) {
    for (std::size_t b = 0; b < 8; ++b) {
      out[1 + 8 * w + b] = static_cast<std::byte>(words[w] >> (8 * b));
    }
  }
}

/// Decodes a command; nullopt for a payload that is not one (wrong size, unknown kind, a get).
inline std::optional<KvCommand> decode_kv_command(std::span<const std::byte> in) noexcept {
  if (in.size() != kKvCommandSize) {
    return std::nullopt;
  }
  const auto kind = static_cast<KvOpKind>(in[0]);
  if (kind != KvOpKind::put && kind != KvOpKind::del && kind != KvOpKind::cas) {
    return std::nullopt;
  }
  std::uint64_t words[4] = {};
  for (std::size_t w = 0; w < 4; ++w) {
    for (std::size_t b = 0; b < 8; ++b) {
      words[w] |= static_cast<std::uint64_t>(in[1 + 8 * w + b]) << (8 * b);
    }
  }
  return KvCommand{kind, words[0], static_cast<std::int64_t>(words[1]),
                   static_cast<std::int64_t>(words[2]), words[3]};
}

/// A key-value StateMachine. apply() returns 1 when the command took effect (every put and del;
/// a cas whose expectation held) and 0 otherwise (a cas that found another value, a payload that
/// is not a command). Reads go straight to get() on the group's thread, after a ReadIndex or
/// lease read has said which index the state must have reached.
///
/// It also keeps a digest of every entry applied so far (index and payload, in order), which a
/// snapshot carries: two nodes that applied the same history agree on the digest at every index,
/// however much of it came to them in a snapshot. An optional observer sees every applied entry
/// with the digest after it (the simulator's state-machine safety and snapshot agreement checks).
///
/// Snapshots (SnapshotStateMachine): begin_snapshot() copies the state (small in simulations)
/// into the reader; a restore builds the new state from the bytes and swaps it in at the end.
/// Allocation: the map grows with the keys; simulations only.
class KvStateMachine {
 public:
  using Observer = void (*)(void* context, LogIndex index, std::span<const std::byte> payload,
                            std::uint64_t digest);

  std::uint64_t apply(LogIndex index, std::span<const std::byte> payload) {
    last_applied_ = index;
    digest_ = fold(digest_, index, payload);
    if (observer_ != nullptr) {
      observer_(observer_context_, index, payload, digest_);
    }
    const auto command = decode_kv_command(payload);
    if (!command) {
      return 0;
    }
    switch (command->kind) {
      case KvOpKind::put:
        values_[command->key] = command->value;
        return 1;
      case KvOpKind::del:
        values_.erase(command->key);
        return 1;
      case KvOpKind::cas:
        if (get(command->key) != command->expected) {
          return 0;
        }
        values_[command->key] = command->value;
        return 1;
      case KvOpKind::get:
        break;
    }
    return 0;
  }

  /// The value of `key`, or kAbsent.
  std::int64_t get(std::uint64_t key) const {
    const auto it = values_.find(key);
    return it == values_.end() ? kAbsent : it->second;
  }

  LogIndex last_applied() const noexcept { return last_applied_; }
  std::size_t size() const noexcept { return values_.size(); }
  std::uint64_t digest() const noexcept { return digest_; }

  /// The digest of a history: `digest` extended by the entry (`index`, `payload`).
  static std::uint64_t fold(std::uint64_t digest, LogIndex index,
                            std::span<const std::byte> payload) noexcept {
    std::uint64_t h = (digest ^ (index * 0x9e3779b97f4a7c15ull)) * 0x100000001b3ull;
    for (std::byte b : payload) {
      h = (h ^ static_cast<std::uint64_t>(b)) * 0x100000001b3ull;
    }
    return h;
  }

  // --- snapshots -------------------------------------------------------------------------------
  /// The state as of the last applied entry, serialized: last applied, digest, count, then
  /// (key, value) pairs in key order; u64 little-endian each.
  class snapshot_reader {
   public:
    std::size_t read(std::span<std::byte> out) {
      const std::size_t n = std::min(out.size(), bytes_.size() - offset_);
      std::copy_n(bytes_.data() + offset_, n, out.data());
      offset_ += n;
      return n;
    }

   private:
    friend class KvStateMachine;
    std::vector<std::byte> bytes_;
    std::size_t offset_ = 0;
  };

  snapshot_reader begin_snapshot() const {
    snapshot_reader r;
    std::vector<std::pair<std::uint64_t, std::int64_t>> sorted(values_.begin(), values_.end());
    std::sort(sorted.begin(), sorted.end());
    put(r.bytes_, last_applied_);
    put(r.bytes_, digest_);
    put(r.bytes_, sorted.size());
    for (const auto& [key, value] : sorted) {
      put(r.bytes_, key);
      put(r.bytes_, static_cast<std::uint64_t>(value));
    }
    return r;
  }

  void begin_restore() { restoring_.clear(); }
  bool restore_chunk(std::span<const std::byte> bytes) {
    restoring_.insert(restoring_.end(), bytes.begin(), bytes.end());
    return true;
  }
  bool finish_restore() {
    const auto& b = restoring_;
    if (b.size() < 24) {
      return false;
    }
    const std::uint64_t count = get_u64(b, 16);
    if (b.size() != 24 + 16 * count) {
      return false;
    }
    std::unordered_map<std::uint64_t, std::int64_t> values;
    for (std::uint64_t i = 0; i < count; ++i) {
      values[get_u64(b, 24 + 16 * i)] = static_cast<std::int64_t>(get_u64(b, 32 + 16 * i));
    }
    last_applied_ = get_u64(b, 0);
    digest_ = get_u64(b, 8);
    values_.swap(values);
    restoring_.clear();
    restores_ += 1;
    return true;
  }
  void abort_restore() { restoring_.clear(); }
  /// How many snapshots this machine was restored from.
  std::uint64_t restores() const noexcept { return restores_; }

  void set_observer(Observer observer, void* context) noexcept {
    observer_ = observer;
    observer_context_ = context;
  }

 private:
  static void put(std::vector<std::byte>& out, std::uint64_t v) {
    for (int b = 0; b < 8; ++b) {
      out.push_back(static_cast<std::byte>(v >> (8 * b)));
    }
  }
  static std::uint64_t get_u64(const std::vector<std::byte>& in, std::size_t at) {
    std::uint64_t v = 0;
    for (int b = 0; b < 8; ++b) {
      v |= static_cast<std::uint64_t>(in[at + static_cast<std::size_t>(b)]) << (8 * b);
    }
    return v;
  }

  std::unordered_map<std::uint64_t, std::int64_t> values_;
  std::vector<std::byte> restoring_;
  std::uint64_t digest_ = 0xcbf29ce484222325ull;
  std::uint64_t restores_ = 0;
  LogIndex last_applied_ = 0;
  Observer observer_ = nullptr;
  void* observer_context_ = nullptr;
};

static_assert(SnapshotStateMachine<KvStateMachine>);

}  // namespace tenure::raft::testing
