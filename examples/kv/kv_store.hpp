// The replicated state machine of tenure-kv: a map from string keys to string values, changed by
// commands that are Raft log entries.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <raft/types.hpp>

namespace tenure::kv {

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

/// The key-value map. StateMachine policy of tenure-kv's groups: apply() runs on the group's
/// strand, and so must every read of the map. Values of apply(): 1 when the write took effect,
/// 0 when a compare-and-set found another value, 2 for an entry it cannot decode (never written
/// by tenure-kv; skipped so that one bad entry cannot wedge the replica).
class KvStore {
 public:
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
        map_.insert_or_assign(std::string(*key), std::string(*value));
        return 1;
      case CommandKind::del:
        map_.erase(std::string(*key));
        return 1;
      case CommandKind::cas: {
        const auto current = get(*key);
        const bool matches = *has_expected != 0 ? current.has_value() && *current == *expected
                                                : !current.has_value();
        if (!matches) {
          return 0;
        }
        map_.insert_or_assign(std::string(*key), std::string(*value));
        return 1;
      }
    }
    return 2;
  }

  /// The value of `key`, or nullopt. The view is valid until the next apply().
  std::optional<std::string_view> get(std::string_view key) const {
    const auto it = map_.find(std::string(key));
    if (it == map_.end()) {
      return std::nullopt;
    }
    return std::string_view(it->second);
  }

  std::size_t size() const noexcept { return map_.size(); }

 private:
  std::unordered_map<std::string, std::string> map_;
};

}  // namespace tenure::kv
