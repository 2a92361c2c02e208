#include <raft/codec.hpp>
#include <raft/testing/allocation_guard.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <system_error>
#include <vector>

using tenure::raft::decode;
using tenure::raft::encode;
using tenure::raft::encoded_size;
using tenure::raft::EntryType;
using tenure::raft::EntryView;
using tenure::raft::errc;
using tenure::raft::kCodecVersion;
using tenure::raft::kEntryHeaderSize;
using tenure::raft::kFlagTransfer;
using tenure::raft::kFrameHeaderSize;
using tenure::raft::kMaxMessageType;
using tenure::raft::Message;
using tenure::raft::MessageType;
using tenure::raft::Result;
using tenure::raft::testing::allocation_counting_installed;
using tenure::raft::testing::AllocationGuard;

namespace {

constexpr std::uint64_t kMax64 = std::numeric_limits<std::uint64_t>::max();

// Offsets the tests corrupt; they restate the documented layout rather than reuse the header's
// constants, so a silent layout change fails here.
constexpr std::size_t kVersionAt = 0;
constexpr std::size_t kTypeAt = 1;
constexpr std::size_t kFlagsAt = 2;
constexpr std::size_t kRejectAt = 3;
constexpr std::size_t kCountAt = 4;
constexpr std::size_t kIndexAt = 40;
constexpr std::size_t kFirstEntryAt = 88;
constexpr std::size_t kEntryIndexAt = 8;
constexpr std::size_t kEntryTypeAt = 16;
constexpr std::size_t kEntryPadAt = 17;
constexpr std::size_t kEntryLengthAt = 20;

std::vector<std::byte> bytes_of(std::initializer_list<int> values) {
  std::vector<std::byte> out;
  for (int v : values) {
    out.push_back(static_cast<std::byte>(v));
  }
  return out;
}

std::vector<std::byte> repeated(std::size_t n, int seed) {
  std::vector<std::byte> out(n);
  for (std::size_t i = 0; i < n; ++i) {
    out[i] = static_cast<std::byte>((seed + 7 * i) & 0xff);
  }
  return out;
}

void put_u8(std::vector<std::byte>& frame, std::size_t at, std::uint8_t value) {
  frame.at(at) = std::byte{value};
}

void put_le(std::vector<std::byte>& frame, std::size_t at, std::uint64_t value, std::size_t width) {
  for (std::size_t i = 0; i < width; ++i) {
    frame.at(at + i) = static_cast<std::byte>((value >> (8 * i)) & 0xff);
  }
}

std::uint64_t get_le(const std::vector<std::byte>& frame, std::size_t at, std::size_t width) {
  std::uint64_t value = 0;
  for (std::size_t i = 0; i < width; ++i) {
    value |= std::to_integer<std::uint64_t>(frame.at(at + i)) << (8 * i);
  }
  return value;
}

std::vector<std::byte> encode_to_vector(const Message& message) {
  std::vector<std::byte> frame(encoded_size(message));
  const Result<std::size_t> written = encode(message, frame);
  REQUIRE(written.has_value());
  REQUIRE(written.value() == frame.size());
  return frame;
}

// A message of `type` with every header field set to a value distinct from every other field.
Message distinctive(MessageType type) {
  Message m;
  m.type = type;
  m.flags = kFlagTransfer;
  m.reject = true;
  m.group = 0x0102030405060708;
  m.from = 0x1112131415161718;
  m.to = 0x2122232425262728;
  m.term = 0x3132333435363738;
  m.index = 0x4142434445464748;
  m.log_term = 0x5152535455565758;
  m.commit = 0x6162636465666768;
  m.reject_hint = 0x7172737475767778;
  m.seq = 0x8182838485868788;
  m.sent_at = -0x0123456789abcdef;
  return m;
}

void check_same(const Message& a, const Message& b) {
  CHECK(a.type == b.type);
  CHECK(a.flags == b.flags);
  CHECK(a.reject == b.reject);
  CHECK(a.group == b.group);
  CHECK(a.from == b.from);
  CHECK(a.to == b.to);
  CHECK(a.term == b.term);
  CHECK(a.index == b.index);
  CHECK(a.log_term == b.log_term);
  CHECK(a.commit == b.commit);
  CHECK(a.reject_hint == b.reject_hint);
  CHECK(a.seq == b.seq);
  CHECK(a.sent_at == b.sent_at);
  REQUIRE(a.entries.size() == b.entries.size());
  for (std::size_t i = 0; i < a.entries.size(); ++i) {
    CAPTURE(i);
    CHECK(a.entries[i].term == b.entries[i].term);
    CHECK(a.entries[i].index == b.entries[i].index);
    CHECK(a.entries[i].type == b.entries[i].type);
    CHECK(std::ranges::equal(a.entries[i].payload, b.entries[i].payload));
  }
}

// An append after index 41 with three entries: an empty payload, a short one and a longer one.
struct SampleAppend {
  std::vector<std::byte> small = bytes_of({0xde, 0xad, 0xbe, 0xef, 0x00});
  std::vector<std::byte> large = repeated(300, 3);
  std::array<EntryView, 3> entries{{
      {.term = 7, .index = 42, .type = EntryType::noop, .payload = {}},
      {.term = 7, .index = 43, .type = EntryType::normal, .payload = small},
      {.term = 8, .index = 44, .type = EntryType::config, .payload = large},
  }};
  Message message;

  SampleAppend() {
    message = distinctive(MessageType::append);
    message.flags = 0;
    message.index = 41;
    message.entries = entries;
  }
};

Result<Message> decode_with(const std::vector<std::byte>& frame, std::size_t scratch_size) {
  static std::array<EntryView, 64> scratch;
  REQUIRE(scratch_size <= scratch.size());
  return decode(frame, std::span(scratch).first(scratch_size));
}

std::error_code decode_error(const std::vector<std::byte>& frame, std::size_t scratch_size = 64) {
  return decode_with(frame, scratch_size).code();
}

}  // namespace

TEST_CASE("codec: every message type round-trips with every header field set") {
  for (std::uint8_t t = 1; t <= kMaxMessageType; ++t) {
    CAPTURE(static_cast<int>(t));
    const Message sent = distinctive(static_cast<MessageType>(t));
    const std::vector<std::byte> frame = encode_to_vector(sent);
    CHECK(frame.size() == kFrameHeaderSize);

    std::array<EntryView, 4> scratch;
    const Result<Message> received = decode(frame, scratch);
    REQUIRE(received.has_value());
    check_same(received.value(), sent);
  }
}

TEST_CASE("codec: extreme values round-trip: all-ones fields - the most negative sent_at - zeros") {
  Message sent;
  sent.type = MessageType::vote_response;
  sent.group = sent.from = sent.to = sent.term = sent.index = sent.log_term = kMax64;
  sent.commit = sent.reject_hint = sent.seq = kMax64;
  for (const std::int64_t sent_at :
       {std::numeric_limits<std::int64_t>::min(), std::numeric_limits<std::int64_t>::max(),
        std::int64_t{-1}, std::int64_t{0}}) {
    CAPTURE(sent_at);
    sent.sent_at = sent_at;
    const std::vector<std::byte> frame = encode_to_vector(sent);
    std::array<EntryView, 1> scratch;
    const Result<Message> received = decode(frame, scratch);
    REQUIRE(received.has_value());
    check_same(received.value(), sent);
  }

  const Message zero{};
  std::array<EntryView, 1> scratch;
  const Result<Message> received = decode(encode_to_vector(zero), scratch);
  REQUIRE(received.has_value());
  check_same(received.value(), zero);
}

TEST_CASE("codec: the frame follows the documented little-endian layout byte for byte") {
  const SampleAppend sample;
  const std::vector<std::byte> frame = encode_to_vector(sample.message);
  const Message& m = sample.message;

  CHECK(frame.size() == 88 + 3 * 24 + 0 + 5 + 300);
  CHECK(get_le(frame, kVersionAt, 1) == kCodecVersion);
  CHECK(get_le(frame, kTypeAt, 1) == 1);
  CHECK(get_le(frame, kFlagsAt, 1) == 0);
  CHECK(get_le(frame, kRejectAt, 1) == 1);
  CHECK(get_le(frame, kCountAt, 4) == 3);
  const std::uint64_t fields[] = {
      m.group,    m.from,   m.to,          m.term, m.index,
      m.log_term, m.commit, m.reject_hint, m.seq,  static_cast<std::uint64_t>(m.sent_at)};
  for (std::size_t i = 0; i < std::size(fields); ++i) {
    CAPTURE(i);
    CHECK(get_le(frame, 8 + 8 * i, 8) == fields[i]);
  }
  // The second entry: after the first entry's header (its payload is empty).
  const std::size_t second = kFirstEntryAt + 24;
  CHECK(get_le(frame, second, 8) == 7);
  CHECK(get_le(frame, second + kEntryIndexAt, 8) == 43);
  CHECK(get_le(frame, second + kEntryTypeAt, 1) == 0);
  CHECK(get_le(frame, second + kEntryPadAt, 3) == 0);
  CHECK(get_le(frame, second + kEntryLengthAt, 4) == 5);
  CHECK(std::ranges::equal(std::span(frame).subspan(second + 24, 5), sample.small));
}

TEST_CASE("codec: an append round-trips entries with empty and non-empty payloads") {
  const SampleAppend sample;
  const std::vector<std::byte> frame = encode_to_vector(sample.message);
  CHECK(frame.size() == encoded_size(sample.message));

  std::array<EntryView, 3> scratch;
  const Result<Message> received = decode(frame, scratch);
  REQUIRE(received.has_value());
  check_same(received.value(), sample.message);
  CHECK(received.value().entries[0].payload.empty());
  CHECK(received.value().entries[2].payload.size() == 300);
}

TEST_CASE("codec: decode is zero-copy: entries live in the scratch - payloads in the frame") {
  const SampleAppend sample;
  const std::vector<std::byte> frame = encode_to_vector(sample.message);

  std::array<EntryView, 8> scratch;
  const Result<Message> received = decode(frame, scratch);
  REQUIRE(received.has_value());
  const Message& m = received.value();
  CHECK(m.entries.data() == scratch.data());
  CHECK(m.entries.size() == 3);
  const std::byte* begin = frame.data();
  const std::byte* end = frame.data() + frame.size();
  for (const EntryView& entry : m.entries) {
    CHECK(entry.payload.data() >= begin);
    CHECK(entry.payload.data() + entry.payload.size() <= end);
  }
  // The 300-byte payload is the last thing in the frame.
  CHECK(m.entries[2].payload.data() == end - 300);
}

TEST_CASE("codec: every truncation of a valid frame is malformed") {
  const SampleAppend sample;
  const std::vector<std::byte> frame = encode_to_vector(sample.message);
  for (std::size_t length = 0; length < frame.size(); ++length) {
    CAPTURE(length);
    // A fresh heap copy of exactly `length` bytes, so ASan sees any read past the prefix.
    const std::vector<std::byte> prefix(frame.begin(), frame.begin() + length);
    std::array<EntryView, 8> scratch;
    const Result<Message> received = decode(prefix, scratch);
    REQUIRE_FALSE(received.has_value());
    CHECK(received.code() == errc::malformed_message);
  }
}

TEST_CASE("codec: a corrupted byte anywhere decodes to a valid message or fails cleanly") {
  const SampleAppend sample;
  const std::vector<std::byte> frame = encode_to_vector(sample.message);
  int decoded = 0;
  int refused = 0;
  for (std::size_t at = 0; at < frame.size(); ++at) {
    const auto original = std::to_integer<unsigned>(frame[at]);
    for (const unsigned value : {0x00u, 0xffu, 0x01u, 0x80u, original ^ 0x01u, original ^ 0x80u,
                                 (original + 1) & 0xffu, (original - 1) & 0xffu}) {
      if (value == original) {
        continue;
      }
      CAPTURE(at);
      CAPTURE(value);
      std::vector<std::byte> corrupted = frame;
      corrupted[at] = static_cast<std::byte>(value);
      std::array<EntryView, 8> scratch;
      const Result<Message> received = decode(corrupted, scratch);
      if (received.has_value()) {
        // Whatever decodes is a message encode() accepts, and it encodes to the same bytes:
        // the encoding is canonical, so no two frames mean the same message.
        ++decoded;
        CHECK(encode_to_vector(received.value()) == corrupted);
      } else {
        ++refused;
        const std::error_code ec = received.code();
        CHECK((ec == errc::malformed_message || ec == errc::unsupported_version ||
               ec == errc::overloaded));
      }
    }
  }
  // Both outcomes happen: a changed term is a valid message, a changed pad byte is not.
  CHECK(decoded > 0);
  CHECK(refused > 0);
}

TEST_CASE("codec: an unknown version is unsupported_version - even when the rest is garbage") {
  const SampleAppend sample;
  for (const std::uint8_t version : {0, 2, 0x81, 0xff}) {
    CAPTURE(static_cast<int>(version));
    std::vector<std::byte> frame = encode_to_vector(sample.message);
    put_u8(frame, kVersionAt, version);
    CHECK(decode_error(frame) == errc::unsupported_version);
    // A short frame of another version is still reported as that version, not as truncated.
    CHECK(decode_error(bytes_of({version})) == errc::unsupported_version);
  }
  CHECK(decode_error({}) == errc::malformed_message);
}

TEST_CASE("codec: malformed headers are refused with malformed_message") {
  const Message heartbeat = distinctive(MessageType::heartbeat);
  const std::vector<std::byte> valid = encode_to_vector(heartbeat);

  SUBCASE("trailing bytes") {
    std::vector<std::byte> frame = valid;
    frame.push_back(std::byte{0});
    CHECK(decode_error(frame) == errc::malformed_message);
  }
  SUBCASE("unknown message type") {
    for (const std::uint8_t type : {0, kMaxMessageType + 1, 0x80, 0xff}) {
      CAPTURE(static_cast<int>(type));
      std::vector<std::byte> frame = valid;
      put_u8(frame, kTypeAt, type);
      CHECK(decode_error(frame) == errc::malformed_message);
    }
  }
  SUBCASE("reject byte other than 0 or 1") {
    for (const std::uint8_t reject : {2, 0x80, 0xff}) {
      CAPTURE(static_cast<int>(reject));
      std::vector<std::byte> frame = valid;
      put_u8(frame, kRejectAt, reject);
      CHECK(decode_error(frame) == errc::malformed_message);
    }
  }
  SUBCASE("unknown flag bits") {
    for (const std::uint8_t flags : {0x04, 0x80, 0xff}) {
      CAPTURE(static_cast<int>(flags));
      std::vector<std::byte> frame = valid;
      put_u8(frame, kFlagsAt, flags);
      CHECK(decode_error(frame) == errc::malformed_message);
    }
  }
  SUBCASE("entries on a message other than append or snapshot") {
    // A well-formed entry following a header of another type that counts it.
    SampleAppend sample;
    sample.message.entries = std::span(sample.entries).first(1);
    std::vector<std::byte> frame = encode_to_vector(sample.message);
    REQUIRE(decode_error(frame).value() == 0);
    for (std::uint8_t t = 2; t <= kMaxMessageType; ++t) {
      CAPTURE(static_cast<int>(t));
      put_u8(frame, kTypeAt, t);
      if (t == static_cast<std::uint8_t>(MessageType::snapshot)) {
        CHECK(decode_error(frame).value() == 0);  // a snapshot chunk carries its bytes so
      } else {
        CHECK(decode_error(frame) == errc::malformed_message);
      }
    }
  }
}

TEST_CASE(
    "codec: an entry count is malformed if the frame cannot hold it - overloaded if only the "
    "scratch cannot") {
  const SampleAppend sample;
  const std::vector<std::byte> valid = encode_to_vector(sample.message);

  SUBCASE("a count the frame is far too short for") {
    for (const std::uint32_t count : {4u, 100u, 0xffffffffu}) {
      CAPTURE(count);
      std::vector<std::byte> frame = valid;
      put_le(frame, kCountAt, count, 4);
      CHECK(decode_error(frame) == errc::malformed_message);
    }
    std::vector<std::byte> empty_append = encode_to_vector(distinctive(MessageType::append));
    put_le(empty_append, kCountAt, 1, 4);
    CHECK(decode_error(empty_append) == errc::malformed_message);
  }
  SUBCASE("a plausible count larger than the scratch") {
    CHECK(decode_error(valid, 2) == errc::overloaded);
    CHECK(decode_error(valid, 0) == errc::overloaded);
    CHECK(decode_error(valid, 3).value() == 0);
  }
  SUBCASE("a count one lower than the entries present leaves trailing bytes") {
    std::vector<std::byte> frame = valid;
    put_le(frame, kCountAt, 2, 4);
    CHECK(decode_error(frame) == errc::malformed_message);
  }
}

TEST_CASE("codec: malformed entries are refused with malformed_message") {
  const SampleAppend sample;
  const std::vector<std::byte> valid = encode_to_vector(sample.message);
  // The second entry's header: the first entry has an empty payload.
  const std::size_t second = kFirstEntryAt + kEntryHeaderSize;

  SUBCASE("unknown entry type") {
    for (const std::uint8_t type : {3, 0x80, 0xff}) {
      CAPTURE(static_cast<int>(type));
      std::vector<std::byte> frame = valid;
      put_u8(frame, second + kEntryTypeAt, type);
      CHECK(decode_error(frame) == errc::malformed_message);
    }
  }
  SUBCASE("non-zero padding") {
    for (std::size_t pad = 0; pad < 3; ++pad) {
      CAPTURE(pad);
      std::vector<std::byte> frame = valid;
      put_u8(frame, second + kEntryPadAt + pad, 1);
      CHECK(decode_error(frame) == errc::malformed_message);
    }
  }
  SUBCASE("indexes not contiguous from message.index + 1") {
    std::vector<std::byte> first_wrong = valid;
    put_le(first_wrong, kFirstEntryAt + kEntryIndexAt, 41, 8);
    CHECK(decode_error(first_wrong) == errc::malformed_message);

    std::vector<std::byte> gap = valid;
    put_le(gap, second + kEntryIndexAt, 44, 8);
    CHECK(decode_error(gap) == errc::malformed_message);

    std::vector<std::byte> prev_moved = valid;
    put_le(prev_moved, kIndexAt, 40, 8);
    CHECK(decode_error(prev_moved) == errc::malformed_message);
  }
  SUBCASE("an entry index that would wrap past the largest index") {
    // message.index = max: the first entry's index would be max + 1, which wraps to 0.
    std::vector<std::byte> frame = valid;
    put_le(frame, kIndexAt, kMax64, 8);
    put_le(frame, kFirstEntryAt + kEntryIndexAt, 0, 8);
    CHECK(decode_error(frame) == errc::malformed_message);
  }
  SUBCASE("a payload length running past the frame end") {
    const std::size_t last = second + kEntryHeaderSize + 5;  // the 300-byte entry
    for (const std::uint32_t length : {301u, 0x10000u, 0xffffffffu}) {
      CAPTURE(length);
      std::vector<std::byte> frame = valid;
      put_le(frame, last + kEntryLengthAt, length, 4);
      CHECK(decode_error(frame) == errc::malformed_message);
    }
    // A middle entry's length that swallows the next entry's header.
    std::vector<std::byte> frame = valid;
    put_le(frame, second + kEntryLengthAt, 5 + 24 + 300 + 1, 4);
    CHECK(decode_error(frame) == errc::malformed_message);
  }
}

TEST_CASE("codec: encode refuses a too-small buffer with invalid_argument and writes nothing") {
  const SampleAppend sample;
  const std::size_t size = encoded_size(sample.message);
  for (const std::size_t capacity : {std::size_t{0}, std::size_t{1}, kFrameHeaderSize, size - 1}) {
    CAPTURE(capacity);
    std::vector<std::byte> out(capacity, std::byte{0xaa});
    const Result<std::size_t> written = encode(sample.message, out);
    REQUIRE_FALSE(written.has_value());
    CHECK(written.code() == errc::invalid_argument);
    CHECK(std::ranges::all_of(out, [](std::byte b) { return b == std::byte{0xaa}; }));
  }
  // A larger buffer is fine, and the bytes past the frame stay as they were.
  std::vector<std::byte> out(size + 10, std::byte{0xaa});
  const Result<std::size_t> written = encode(sample.message, out);
  REQUIRE(written.has_value());
  CHECK(written.value() == size);
  CHECK(out[size] == std::byte{0xaa});
}

TEST_CASE("codec: encode refuses messages that could not be decoded with invalid_argument") {
  SampleAppend sample;
  std::vector<std::byte> out(4096);
  const auto refused = [&](const Message& m) {
    return encode(m, out).code() == errc::invalid_argument;
  };
  REQUIRE(encode(sample.message, out).has_value());

  SUBCASE("entries on a message other than append") {
    Message m = sample.message;
    m.type = MessageType::heartbeat;
    CHECK(refused(m));
  }
  SUBCASE("unknown message type") {
    Message m = distinctive(MessageType::heartbeat);
    m.type = static_cast<MessageType>(0);
    CHECK(refused(m));
    m.type = static_cast<MessageType>(kMaxMessageType + 1);
    CHECK(refused(m));
  }
  SUBCASE("unknown flag bits") {
    Message m = distinctive(MessageType::vote);
    m.flags = 0x80;
    CHECK(refused(m));
  }
  SUBCASE("unknown entry type") {
    sample.entries[1].type = static_cast<EntryType>(3);
    CHECK(refused(sample.message));
  }
  SUBCASE("indexes not contiguous from message.index + 1") {
    sample.entries[2].index = 45;
    CHECK(refused(sample.message));
  }
  SUBCASE("entry indexes past the largest index") {
    Message m = sample.message;
    m.index = kMax64;
    sample.entries[0].index = 0;
    m.entries = std::span(sample.entries).first(1);
    CHECK(refused(m));
  }
}

TEST_CASE("codec: decode and encode allocate nothing") {
  REQUIRE(allocation_counting_installed());
  const SampleAppend sample;
  const std::vector<std::byte> frame = encode_to_vector(sample.message);
  std::vector<std::byte> out(frame.size());
  std::array<EntryView, 8> scratch;

  AllocationGuard guard;
  const Result<Message> received = decode(frame, scratch);
  const Result<std::size_t> written = received ? encode(received.value(), out) : errc::stopped;
  const Result<Message> refused = decode(std::span(frame).first(50), scratch);
  CHECK(guard.allocations() == 0);

  REQUIRE(received.has_value());
  REQUIRE(written.has_value());
  CHECK(out == frame);
  CHECK_FALSE(refused.has_value());
}

TEST_CASE("codec: an append of 1000 64-byte entries round-trips") {
  std::vector<std::byte> payload = repeated(64, 11);
  std::vector<EntryView> entries(1000);
  for (std::size_t i = 0; i < entries.size(); ++i) {
    entries[i] = {.term = 5, .index = 101 + i, .type = EntryType::normal, .payload = payload};
  }
  Message sent = distinctive(MessageType::append);
  sent.index = 100;
  sent.entries = entries;
  const std::vector<std::byte> frame = encode_to_vector(sent);
  CHECK(frame.size() == kFrameHeaderSize + 1000 * (kEntryHeaderSize + 64));

  std::vector<EntryView> scratch(1000);
  const Result<Message> received = decode(frame, scratch);
  REQUIRE(received.has_value());
  check_same(received.value(), sent);
}
