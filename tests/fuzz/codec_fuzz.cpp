// Fuzz target for <raft/codec.hpp>: any bytes must decode to a valid Message or fail cleanly,
// and whatever decodes must survive encode -> decode unchanged, field by field. Built with
// libFuzzer by the `fuzz` preset (scripts/fuzz); replayed over the committed corpus by
// tenure_codec_fuzz_replay in every build.
#include <raft/codec.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <vector>

namespace {

using tenure::raft::EntryView;
using tenure::raft::errc;
using tenure::raft::Message;
using tenure::raft::Result;

// Large enough for every seed; a frame with more entries exercises the overloaded path.
constexpr std::size_t kScratchEntries = 64;

// abort() rather than assert(): the check must hold in every build type.
void require(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "codec_fuzz: %s\n", what);
    std::abort();
  }
}

void require_same(const Message& a, const Message& b) {
  require(a.type == b.type, "type differs after round trip");
  require(a.flags == b.flags, "flags differ after round trip");
  require(a.reject == b.reject, "reject differs after round trip");
  require(a.group == b.group, "group differs after round trip");
  require(a.from == b.from, "from differs after round trip");
  require(a.to == b.to, "to differs after round trip");
  require(a.term == b.term, "term differs after round trip");
  require(a.index == b.index, "index differs after round trip");
  require(a.log_term == b.log_term, "log_term differs after round trip");
  require(a.commit == b.commit, "commit differs after round trip");
  require(a.reject_hint == b.reject_hint, "reject_hint differs after round trip");
  require(a.seq == b.seq, "seq differs after round trip");
  require(a.sent_at == b.sent_at, "sent_at differs after round trip");
  require(a.entries.size() == b.entries.size(), "entry count differs after round trip");
  for (std::size_t i = 0; i < a.entries.size(); ++i) {
    const EntryView& x = a.entries[i];
    const EntryView& y = b.entries[i];
    require(x.term == y.term, "entry term differs after round trip");
    require(x.index == y.index, "entry index differs after round trip");
    require(x.type == y.type, "entry type differs after round trip");
    require(std::ranges::equal(x.payload, y.payload), "entry payload differs after round trip");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // libFuzzer may pass a null pointer with size 0; an empty span needs no pointer.
  const std::span<const std::byte> frame =
      size == 0 ? std::span<const std::byte>{}
                : std::span<const std::byte>{reinterpret_cast<const std::byte*>(data), size};

  std::array<EntryView, kScratchEntries> scratch;
  const Result<Message> first = tenure::raft::decode(frame, scratch);
  if (!first) {
    const auto ec = first.code();
    require(
        ec == errc::malformed_message || ec == errc::unsupported_version || ec == errc::overloaded,
        "decode failed with an unexpected error code");
    return 0;
  }

  const Message& message = first.value();
  for (const EntryView& entry : message.entries) {
    require(entry.payload.empty() ||
                (entry.payload.data() >= frame.data() &&
                 entry.payload.data() + entry.payload.size() <= frame.data() + frame.size()),
            "a payload points outside the frame");
  }

  // The encoding is canonical: a frame that decodes is exactly what encode() makes of it.
  const std::size_t size_needed = tenure::raft::encoded_size(message);
  require(size_needed == size, "encoded_size differs from the decoded frame's size");
  std::vector<std::byte> encoded(size_needed);
  const Result<std::size_t> written = tenure::raft::encode(message, encoded);
  require(written.has_value(), "encode refused a message decode accepted");
  require(written.value() == size_needed, "encode wrote other than encoded_size bytes");
  require(std::ranges::equal(encoded, frame), "re-encoded frame differs from the input");

  std::array<EntryView, kScratchEntries> scratch_again;
  const Result<Message> second = tenure::raft::decode(encoded, scratch_again);
  require(second.has_value(), "decode refused a frame encode produced");
  require_same(message, second.value());
  return 0;
}
