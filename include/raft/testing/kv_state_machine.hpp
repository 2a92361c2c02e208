// KvStateMachine: a replicated key-value store for simulations, with its command encoding.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <unordered_map>

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
/// An optional observer sees every applied entry (the simulator's state-machine safety check).
/// Allocation: the map grows with the keys; simulations only.
class KvStateMachine {
 public:
  using Observer = void (*)(void* context, LogIndex index, std::span<const std::byte> payload);

  std::uint64_t apply(LogIndex index, std::span<const std::byte> payload) {
    last_applied_ = index;
    if (observer_ != nullptr) {
      observer_(observer_context_, index, payload);
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

  void set_observer(Observer observer, void* context) noexcept {
    observer_ = observer;
    observer_context_ = context;
  }

 private:
  std::unordered_map<std::uint64_t, std::int64_t> values_;
  LogIndex last_applied_ = 0;
  Observer observer_ = nullptr;
  void* observer_context_ = nullptr;
};

}  // namespace tenure::raft::testing
