// The wire codec: one Message as one self-describing, versioned binary frame, and back.
//
// A frame is a fixed 88-byte header followed by `entry_count` entries. Every integer is
// little-endian whatever the host; signed integers are two's complement. The layout is also
// described, with the reasons behind it, in docs/wire-format.md.
//
// Header (88 bytes):
// | offset | size | field       | notes                                                      |
// |-------:|-----:|-------------|------------------------------------------------------------|
// |      0 |    1 | version     | kCodecVersion (1); anything else is unsupported_version    |
// |      1 |    1 | type        | MessageType, 1..kMaxMessageType                            |
// |      2 |    1 | flags       | MessageFlags; unknown bits are malformed                   |
// |      3 |    1 | reject      | 0 or 1                                                     |
// |      4 |    4 | entry_count | u32; non-zero only for MessageType::append and ::snapshot  |
// |      8 |    8 | group       | u64                                                        |
// |     16 |    8 | from        | u64                                                        |
// |     24 |    8 | to          | u64                                                        |
// |     32 |    8 | term        | u64                                                        |
// |     40 |    8 | index       | u64                                                        |
// |     48 |    8 | log_term    | u64                                                        |
// |     56 |    8 | commit      | u64                                                        |
// |     64 |    8 | reject_hint | u64                                                        |
// |     72 |    8 | seq         | u64                                                        |
// |     80 |    8 | sent_at     | i64                                                        |
//
// Each entry (24 bytes + payload):
// | offset | size | field          | notes                                                   |
// |-------:|-----:|----------------|---------------------------------------------------------|
// |      0 |    8 | term           | u64                                                     |
// |      8 |    8 | index          | u64; entry i has index message.index + 1 + i            |
// |     16 |    1 | type           | EntryType                                               |
// |     17 |    3 | pad            | zero; checked, so a future version may give them a use  |
// |     20 |    4 | payload_length | u32                                                     |
// |     24 |    n | payload        | payload_length bytes                                    |
//
// The frame carries no length prefix and no checksum: the transport delimits frames and TCP
// already checksums them; a corrupt frame must still never crash the decoder, which is what the
// bounds checks below and tests/fuzz/codec_fuzz.cpp are for.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>

#include <raft/errc.hpp>
#include <raft/message.hpp>
#include <raft/result.hpp>

namespace tenure::raft {

/// The version byte every frame starts with. Bumped when the layout changes incompatibly; a
/// decoder refuses versions it does not know with errc::unsupported_version.
inline constexpr std::uint8_t kCodecVersion = 1;

/// Size of the fixed part of every frame.
inline constexpr std::size_t kFrameHeaderSize = 88;

/// Size of the fixed part of every entry (its payload follows).
inline constexpr std::size_t kEntryHeaderSize = 24;

namespace detail {

// Every flag bit this version defines; the decoder refuses the others so that a newer sender's
// flag is never silently dropped.
inline constexpr std::uint8_t kKnownMessageFlags = kFlagTransfer | kFlagNotMember;

// Header field offsets, matching the table at the top of this file.
inline constexpr std::size_t kOffVersion = 0;
inline constexpr std::size_t kOffType = 1;
inline constexpr std::size_t kOffFlags = 2;
inline constexpr std::size_t kOffReject = 3;
inline constexpr std::size_t kOffEntryCount = 4;
inline constexpr std::size_t kOffGroup = 8;
inline constexpr std::size_t kOffFrom = 16;
inline constexpr std::size_t kOffTo = 24;
inline constexpr std::size_t kOffTerm = 32;
inline constexpr std::size_t kOffIndex = 40;
inline constexpr std::size_t kOffLogTerm = 48;
inline constexpr std::size_t kOffCommit = 56;
inline constexpr std::size_t kOffRejectHint = 64;
inline constexpr std::size_t kOffSeq = 72;
inline constexpr std::size_t kOffSentAt = 80;

inline constexpr std::size_t kOffEntryTerm = 0;
inline constexpr std::size_t kOffEntryIndex = 8;
inline constexpr std::size_t kOffEntryType = 16;
inline constexpr std::size_t kOffEntryPayloadLength = 20;

inline constexpr bool kHostIsLittleEndian = std::endian::native == std::endian::little;
static_assert(kHostIsLittleEndian || std::endian::native == std::endian::big,
              "the codec supports little- and big-endian hosts only");

// Loads and stores go through std::memcpy: frames arrive at any alignment, and a casted pointer
// load would be undefined behaviour. On a little-endian host the memcpy is the whole job and
// compiles to one move; elsewhere the bytes are assembled explicitly.
template <class U>
inline U load_le(const std::byte* p) noexcept {
  if constexpr (kHostIsLittleEndian) {
    U value;
    std::memcpy(&value, p, sizeof value);
    return value;
  } else {
    U value = 0;
    for (std::size_t i = 0; i < sizeof(U); ++i) {
      value |= static_cast<U>(std::to_integer<U>(p[i]) << (8 * i));
    }
    return value;
  }
}

template <class U>
inline void store_le(std::byte* p, U value) noexcept {
  if constexpr (kHostIsLittleEndian) {
    std::memcpy(p, &value, sizeof value);
  } else {
    for (std::size_t i = 0; i < sizeof(U); ++i) {
      p[i] = static_cast<std::byte>(value >> (8 * i));
    }
  }
}

inline std::uint8_t load_u8(const std::byte* p) noexcept {
  return std::to_integer<std::uint8_t>(*p);
}
inline void store_u8(std::byte* p, std::uint8_t value) noexcept {
  *p = std::byte{value};
}

inline bool is_known_message_type(std::uint8_t type) noexcept {
  return type >= static_cast<std::uint8_t>(MessageType::append) && type <= kMaxMessageType;
}

// The types that may carry entries: an append, and a snapshot chunk (its bytes, and in the first
// chunk the configuration).
inline bool carries_entries(MessageType type) noexcept {
  return type == MessageType::append || type == MessageType::snapshot;
}

inline bool is_known_entry_type(std::uint8_t type) noexcept {
  return type <= static_cast<std::uint8_t>(EntryType::config);
}

// The frame size of `message`, or 0 when encode() must refuse it: the checks that make
// everything encode() writes acceptable to decode(), so a frame this build emits always
// round-trips. One pass over the entries validates and sizes them together.
inline std::size_t encodable_size(const Message& message) noexcept {
  if (!is_known_message_type(static_cast<std::uint8_t>(message.type)) ||
      (message.flags & ~kKnownMessageFlags) != 0) {
    return 0;
  }
  if (message.entries.empty()) {
    return kFrameHeaderSize;
  }
  if (!carries_entries(message.type) ||
      message.entries.size() > std::numeric_limits<std::uint32_t>::max()) {
    return 0;
  }
  std::size_t size = kFrameHeaderSize + message.entries.size() * kEntryHeaderSize;
  // Entry i must carry index message.index + 1 + i; `expected` never wraps past the maximum.
  LogIndex expected = message.index;
  for (const EntryView& entry : message.entries) {
    if (expected == std::numeric_limits<LogIndex>::max() || entry.index != ++expected ||
        !is_known_entry_type(static_cast<std::uint8_t>(entry.type)) ||
        entry.payload.size() > std::numeric_limits<std::uint32_t>::max()) {
      return 0;
    }
    size += entry.payload.size();
  }
  return size;
}

inline void encode_header(const Message& message, std::byte* out) noexcept {
  store_u8(out + kOffVersion, kCodecVersion);
  store_u8(out + kOffType, static_cast<std::uint8_t>(message.type));
  store_u8(out + kOffFlags, message.flags);
  store_u8(out + kOffReject, message.reject ? 1 : 0);
  store_le<std::uint32_t>(out + kOffEntryCount, static_cast<std::uint32_t>(message.entries.size()));
  store_le<std::uint64_t>(out + kOffGroup, message.group);
  store_le<std::uint64_t>(out + kOffFrom, message.from);
  store_le<std::uint64_t>(out + kOffTo, message.to);
  store_le<std::uint64_t>(out + kOffTerm, message.term);
  store_le<std::uint64_t>(out + kOffIndex, message.index);
  store_le<std::uint64_t>(out + kOffLogTerm, message.log_term);
  store_le<std::uint64_t>(out + kOffCommit, message.commit);
  store_le<std::uint64_t>(out + kOffRejectHint, message.reject_hint);
  store_le<std::uint64_t>(out + kOffSeq, message.seq);
  store_le<std::uint64_t>(out + kOffSentAt, std::bit_cast<std::uint64_t>(message.sent_at));
}

// Writes one entry at `out`, which has room for it; returns the bytes written.
inline std::size_t encode_entry(const EntryView& entry, std::byte* out) noexcept {
  store_le<std::uint64_t>(out + kOffEntryTerm, entry.term);
  store_le<std::uint64_t>(out + kOffEntryIndex, entry.index);
  // The type byte and its three zero pad bytes are one little-endian u32 holding the type.
  store_le<std::uint32_t>(out + kOffEntryType, static_cast<std::uint8_t>(entry.type));
  store_le<std::uint32_t>(out + kOffEntryPayloadLength,
                          static_cast<std::uint32_t>(entry.payload.size()));
  // An empty span may hold a null pointer, and memcpy from null is undefined even for 0 bytes.
  if (!entry.payload.empty()) {
    std::memcpy(out + kEntryHeaderSize, entry.payload.data(), entry.payload.size());
  }
  return kEntryHeaderSize + entry.payload.size();
}

// Decodes the fixed header into `message`; `frame` holds at least kFrameHeaderSize bytes and a
// known version. Returns false when a header byte has no meaning in this version.
inline bool decode_header(const std::byte* frame, Message& message) noexcept {
  const std::uint8_t type = load_u8(frame + kOffType);
  const std::uint8_t flags = load_u8(frame + kOffFlags);
  const std::uint8_t reject = load_u8(frame + kOffReject);
  if (!is_known_message_type(type) || (flags & ~kKnownMessageFlags) != 0 || reject > 1) {
    return false;
  }
  message.type = static_cast<MessageType>(type);
  message.flags = flags;
  message.reject = reject == 1;
  message.group = load_le<std::uint64_t>(frame + kOffGroup);
  message.from = load_le<std::uint64_t>(frame + kOffFrom);
  message.to = load_le<std::uint64_t>(frame + kOffTo);
  message.term = load_le<std::uint64_t>(frame + kOffTerm);
  message.index = load_le<std::uint64_t>(frame + kOffIndex);
  message.log_term = load_le<std::uint64_t>(frame + kOffLogTerm);
  message.commit = load_le<std::uint64_t>(frame + kOffCommit);
  message.reject_hint = load_le<std::uint64_t>(frame + kOffRejectHint);
  message.seq = load_le<std::uint64_t>(frame + kOffSeq);
  message.sent_at = std::bit_cast<std::int64_t>(load_le<std::uint64_t>(frame + kOffSentAt));
  return true;
}

}  // namespace detail

/// The exact number of bytes encode() writes for `message`: the frame header, plus per entry its
/// header and payload. Meaningful for messages encode() accepts; size the output buffer with it.
///
/// Thread-safety: a pure function of its argument. Allocation: none. Errors: none.
[[nodiscard]] inline std::size_t encoded_size(const Message& message) noexcept {
  std::size_t size = kFrameHeaderSize + message.entries.size() * kEntryHeaderSize;
  for (const EntryView& entry : message.entries) {
    size += entry.payload.size();
  }
  return size;
}

/// Writes `message` as one frame at the start of `out` and returns the number of bytes written,
/// which is encoded_size(message). Bytes of `out` past the frame are left untouched.
///
/// Thread-safety: a pure function; `out` must not be touched by another thread meanwhile.
/// Allocation: none; payloads are copied with memcpy.
/// Errors: errc::invalid_argument, with nothing written, when `out` is smaller than
/// encoded_size(message) or the message could not be decoded back: an unknown type, entry type
/// or flag bit, entries on a type other than append, entries whose indexes are not
/// message.index + 1, + 2, ..., or more than 2^32 - 1 entries or payload bytes in one entry.
inline Result<std::size_t> encode(const Message& message, std::span<std::byte> out) noexcept {
  const std::size_t size = detail::encodable_size(message);
  if (size == 0 || out.size() < size) {
    return errc::invalid_argument;
  }
  std::byte* cursor = out.data();
  detail::encode_header(message, cursor);
  cursor += kFrameHeaderSize;
  for (const EntryView& entry : message.entries) {
    cursor += detail::encode_entry(entry, cursor);
  }
  return size;
}

/// Decodes exactly one frame, which must fill `frame` completely.
///
/// Zero-copy: the returned Message's `entries` is a prefix of `entry_scratch`, and each entry's
/// payload points into `frame`. Both stay valid only as long as the caller keeps those buffers
/// alive and unchanged.
///
/// Thread-safety: a pure function; `entry_scratch` must not be shared with another thread
/// meanwhile. Allocation: none. Never undefined behaviour, whatever the bytes: every read is
/// bounds-checked and unaligned-safe.
/// Errors:
/// - errc::unsupported_version: the first byte is not kCodecVersion.
/// - errc::overloaded: the frame's entry count fits the frame but not `entry_scratch`; decoding
///   again with a larger scratch may succeed. Reported before the entries are examined.
/// - errc::malformed_message: anything else: an empty or truncated frame, trailing bytes, an
///   unknown message type, entry type or flag bit, a reject byte other than 0 or 1, entries on a
///   message other than append, an entry count the frame is too short to hold, non-zero padding,
///   entry indexes other than message.index + 1, + 2, ..., a payload running past the frame.
inline Result<Message> decode(std::span<const std::byte> frame,
                              std::span<EntryView> entry_scratch) noexcept {
  if (frame.empty()) {
    return errc::malformed_message;
  }
  // The version is checked before the length: a future version may have a shorter header.
  if (detail::load_u8(frame.data() + detail::kOffVersion) != kCodecVersion) {
    return errc::unsupported_version;
  }
  if (frame.size() < kFrameHeaderSize) {
    return errc::malformed_message;
  }
  Message message;
  if (!detail::decode_header(frame.data(), message)) {
    return errc::malformed_message;
  }

  const std::uint32_t count = detail::load_le<std::uint32_t>(frame.data() + detail::kOffEntryCount);
  if (count != 0 && !detail::carries_entries(message.type)) {
    return errc::malformed_message;
  }
  // Each entry takes at least its header, so this bounds `count` by the frame before anything
  // trusts it; only a plausible count can ask for a larger scratch.
  std::size_t remaining = frame.size() - kFrameHeaderSize;
  if (count > remaining / kEntryHeaderSize) {
    return errc::malformed_message;
  }
  if (count > entry_scratch.size()) {
    return errc::overloaded;
  }

  const std::byte* cursor = frame.data() + kFrameHeaderSize;
  LogIndex expected = message.index;
  for (std::uint32_t i = 0; i < count; ++i) {
    if (remaining < kEntryHeaderSize) {
      return errc::malformed_message;
    }
    // The type byte and its three pad bytes, read as one little-endian u32: the pad is zero
    // exactly when the value fits in the low byte.
    const std::uint32_t type_and_pad =
        detail::load_le<std::uint32_t>(cursor + detail::kOffEntryType);
    const auto type = static_cast<std::uint8_t>(type_and_pad & 0xff);
    const bool padded = (type_and_pad >> 8) == 0;
    const LogIndex index = detail::load_le<std::uint64_t>(cursor + detail::kOffEntryIndex);
    const std::size_t length =
        detail::load_le<std::uint32_t>(cursor + detail::kOffEntryPayloadLength);
    remaining -= kEntryHeaderSize;
    if (!detail::is_known_entry_type(type) || !padded ||
        expected == std::numeric_limits<LogIndex>::max() || index != ++expected ||
        length > remaining) {
      return errc::malformed_message;
    }
    EntryView& entry = entry_scratch[i];
    entry.term = detail::load_le<std::uint64_t>(cursor + detail::kOffEntryTerm);
    entry.index = index;
    entry.type = static_cast<EntryType>(type);
    entry.payload = {cursor + kEntryHeaderSize, length};
    cursor += kEntryHeaderSize + length;
    remaining -= length;
  }
  if (remaining != 0) {
    return errc::malformed_message;
  }
  message.entries = entry_scratch.first(count);
  return message;
}

}  // namespace tenure::raft
