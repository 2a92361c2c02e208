// CRC-32C pinned to the standard: the known-answer vectors of RFC 3720 (iSCSI), appendix B.4,
// for every implementation this machine can run, and the fast paths against a bitwise reference
// on random lengths and alignments.
#include <raft/crc32c.hpp>
#include <raft/random.hpp>

#include <doctest/doctest.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

using Crc = std::function<std::uint32_t(std::span<const std::byte>, std::uint32_t)>;

// Every implementation that runs here, by name.
std::vector<std::pair<const char*, Crc>> implementations() {
  std::vector<std::pair<const char*, Crc>> all{
      {"bitwise", tenure::raft::detail::crc32c_bitwise},
      {"table", tenure::raft::detail::crc32c_table},
      {"crc32c()",
       [](std::span<const std::byte> d, std::uint32_t c) { return tenure::raft::crc32c(d, c); }}};
#if TENURE_CRC32C_HAS_SSE42
  if (tenure::raft::detail::crc32c_sse42_available()) {
    all.emplace_back("sse4.2", tenure::raft::detail::crc32c_sse42);
  }
#endif
  return all;
}

std::vector<std::byte> bytes(std::initializer_list<int> values) {
  std::vector<std::byte> out;
  for (int v : values) {
    out.push_back(static_cast<std::byte>(v));
  }
  return out;
}

std::vector<std::byte> filled(std::size_t n, int (*at)(std::size_t)) {
  std::vector<std::byte> out(n);
  for (std::size_t i = 0; i < n; ++i) {
    out[i] = static_cast<std::byte>(at(i));
  }
  return out;
}

}  // namespace

TEST_CASE("crc32c: the RFC 3720 known answers - every implementation") {
  const std::string_view digits = "123456789";
  const std::vector<std::byte> check(
      reinterpret_cast<const std::byte*>(digits.data()),
      reinterpret_cast<const std::byte*>(digits.data()) + digits.size());
  // RFC 3720, B.4 "CRC Examples" (the CRC as the number the register holds).
  const std::vector<std::pair<std::vector<std::byte>, std::uint32_t>> vectors{
      {check, 0xE3069283u},
      {filled(32, [](std::size_t) { return 0x00; }), 0x8A9136AAu},
      {filled(32, [](std::size_t) { return 0xFF; }), 0x62A8AB43u},
      {filled(32, [](std::size_t i) { return static_cast<int>(i); }), 0x46DD794Eu},
      {filled(32, [](std::size_t i) { return static_cast<int>(31 - i); }), 0x113FDB5Cu},
      // An iSCSI SCSI Read (10) command PDU, the RFC's last example.
      {bytes({0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
              0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00,
              0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18, 0x28, 0x00, 0x00, 0x00,
              0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}),
       0xD9963A56u},
      {{}, 0x00000000u},
  };
  for (const auto& [name, crc] : implementations()) {
    CAPTURE(name);
    for (const auto& [data, expected] : vectors) {
      CAPTURE(data.size());
      CHECK(crc(data, 0) == expected);
    }
  }
  MESSAGE("crc32c() runs the " << std::string(tenure::raft::crc32c_implementation())
                               << " implementation");
}

TEST_CASE("crc32c: the fast paths equal the bitwise reference on random lengths and alignments") {
  tenure::raft::Xoshiro256 random(20261203);
  std::vector<std::byte> buffer(4096 + 16);
  for (auto& b : buffer) {
    b = static_cast<std::byte>(random.next());
  }
  const auto all = implementations();
  for (int round = 0; round < 2000; ++round) {
    const std::size_t offset = random.below(16);
    const std::size_t length = random.below(round < 1000 ? 64 : 4096);
    const std::uint32_t seed = round % 3 == 0 ? 0 : static_cast<std::uint32_t>(random.next());
    const std::span<const std::byte> data(buffer.data() + offset, length);
    const std::uint32_t expected = tenure::raft::detail::crc32c_bitwise(data, seed);
    for (const auto& [name, crc] : all) {
      CAPTURE(name);
      CAPTURE(offset);
      CAPTURE(length);
      REQUIRE(crc(data, seed) == expected);
    }
    // Pieces chain: crc(b, crc(a, s)) == crc(a followed by b, s).
    const std::size_t cut = random.below(length + 1);
    CHECK(tenure::raft::crc32c(data.subspan(cut), tenure::raft::crc32c(data.first(cut), seed)) ==
          expected);
  }
}
