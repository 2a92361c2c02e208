// Writes the seed corpus of the codec fuzzer: valid frames of every message type, appends with
// entries, and frames broken in each way the decoder must refuse. The committed files in
// tests/fuzz/corpus/codec/ come from this program; regenerate them after a wire-format change:
//
//     cmake --build build/debug --target tenure_codec_make_corpus
//     build/debug/tests/tenure_codec_make_corpus tests/fuzz/corpus/codec
//
// Seeds only need to be small and varied: libFuzzer mutates from them, so each one starts it
// near a different branch of the decoder.
#include <raft/codec.hpp>

#include "corpus_writer.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace {

using tenure::raft::EntryType;
using tenure::raft::EntryView;
using tenure::raft::Message;
using tenure::raft::MessageType;

using Frame = std::vector<std::byte>;

Frame encode_frame(const Message& message) {
  Frame frame(tenure::raft::encoded_size(message));
  if (!tenure::raft::encode(message, frame)) {
    std::fprintf(stderr, "make_codec_corpus: encode refused a seed\n");
    std::exit(1);
  }
  return frame;
}

void put_le(Frame& frame, std::size_t at, std::uint64_t value, std::size_t width) {
  for (std::size_t i = 0; i < width; ++i) {
    frame.at(at + i) = static_cast<std::byte>((value >> (8 * i)) & 0xff);
  }
}

Message header_of(MessageType type) {
  Message m;
  m.type = type;
  m.group = 3;
  m.from = 1;
  m.to = 2;
  m.term = 5;
  m.index = 100;
  m.log_term = 4;
  m.commit = 90;
  m.seq = 17;
  m.sent_at = 1'000'000'000;
  return m;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <output-directory>\n", argv[0]);
    return 2;
  }
  std::filesystem::create_directories(argv[1]);
  tenure::fuzz::CorpusWriter out(argv[1], "make_codec_corpus");

  // Every message type, header only.
  const char* names[] = {"",
                         "append",
                         "append_response",
                         "vote",
                         "vote_response",
                         "pre_vote",
                         "pre_vote_response",
                         "heartbeat",
                         "heartbeat_response",
                         "timeout_now",
                         "read_index",
                         "read_index_response",
                         "snapshot",
                         "snapshot_response"};
  for (std::uint8_t t = 1; t <= tenure::raft::kMaxMessageType; ++t) {
    out.write(std::string("valid-") + names[t], encode_frame(header_of(MessageType{t})));
  }
  Message transfer_vote = header_of(MessageType::vote);
  transfer_vote.flags = tenure::raft::kFlagTransfer;
  out.write("valid-vote-transfer", encode_frame(transfer_vote));
  Message rejected = header_of(MessageType::append_response);
  rejected.reject = true;
  rejected.reject_hint = 77;
  rejected.sent_at = -1;
  out.write("valid-append_response-reject", encode_frame(rejected));

  // Appends with entries.
  const std::array<std::byte, 8> command{std::byte{'s'}, std::byte{'e'}, std::byte{'t'},
                                         std::byte{' '}, std::byte{'x'}, std::byte{'='},
                                         std::byte{'4'}, std::byte{'2'}};
  std::array<EntryView, 65> entries{};
  for (std::size_t i = 0; i < entries.size(); ++i) {
    entries[i] = {.term = 5,
                  .index = 101 + i,
                  .type = i % 7 == 0 ? EntryType::noop : EntryType::normal,
                  .payload = i % 3 == 0 ? std::span<const std::byte>{} : command};
  }
  entries[2].type = EntryType::config;
  Message append = header_of(MessageType::append);
  append.entries = std::span(entries).first(1);
  out.write("valid-append-1-entry", encode_frame(append));
  append.entries = std::span(entries).first(3);
  const Frame append3 = encode_frame(append);
  out.write("valid-append-3-entries", append3);
  append.entries = std::span(entries).first(16);
  out.write("valid-append-16-entries", encode_frame(append));
  // One more entry than the fuzzer's scratch holds: the overloaded path.
  append.entries = entries;
  out.write("overloaded-append-65-entries", encode_frame(append));

  // Broken frames, one way each. Offsets follow the table in <raft/codec.hpp>.
  constexpr std::size_t kFirstEntry = tenure::raft::kFrameHeaderSize;
  constexpr std::size_t kSecondEntry = kFirstEntry + tenure::raft::kEntryHeaderSize;
  const auto broken = [&](const std::string& name, auto change) {
    Frame frame = append3;
    change(frame);
    out.write("bad-" + name, frame);
  };
  out.write("bad-empty", {});
  broken("truncated-header", [](Frame& f) { f.resize(40); });
  broken("truncated-entry", [](Frame& f) { f.resize(f.size() - 3); });
  broken("trailing-byte", [](Frame& f) { f.push_back(std::byte{0}); });
  broken("version-2", [](Frame& f) { put_le(f, 0, 2, 1); });
  broken("type-0", [](Frame& f) { put_le(f, 1, 0, 1); });
  broken("flags-unknown", [](Frame& f) { put_le(f, 2, 0x80, 1); });
  broken("reject-2", [](Frame& f) { put_le(f, 3, 2, 1); });
  broken("count-huge", [](Frame& f) { put_le(f, 4, 0xffffffff, 4); });
  broken("count-short", [](Frame& f) { put_le(f, 4, 2, 4); });
  broken("entries-on-heartbeat", [](Frame& f) { put_le(f, 1, 7, 1); });
  broken("entry-type-3", [&](Frame& f) { put_le(f, kSecondEntry + 16, 3, 1); });
  broken("entry-pad", [&](Frame& f) { put_le(f, kSecondEntry + 18, 1, 1); });
  broken("entry-index-gap", [&](Frame& f) { put_le(f, kSecondEntry + 8, 200, 8); });
  broken("entry-index-wraps", [&](Frame& f) {
    put_le(f, 40, ~std::uint64_t{0}, 8);
    put_le(f, kFirstEntry + 8, 0, 8);
  });
  broken("payload-past-end", [&](Frame& f) { put_le(f, kSecondEntry + 20, 0x7fffffff, 4); });

  std::printf("make_codec_corpus: wrote %d files to %s\n", out.written(), argv[1]);
  return 0;
}
