// CRC-32C (Castagnoli): the checksum of every WAL record and snapshot file.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

namespace tenure::raft {

namespace detail {

// Slicing-by-8 tables, built at compile time: no hardware dependency, ~1 byte per cycle.
consteval std::array<std::array<std::uint32_t, 256>, 8> make_crc32c_tables() {
  std::array<std::array<std::uint32_t, 256>, 8> t{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) {
      c = (c & 1) != 0 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
    }
    t[0][i] = c;
  }
  for (std::uint32_t i = 0; i < 256; ++i) {
    for (std::size_t s = 1; s < 8; ++s) {
      t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xff];
    }
  }
  return t;
}

inline constexpr auto kCrc32cTables = make_crc32c_tables();

}  // namespace detail

/// Extends a CRC-32C over `data`. Start with `crc32c({})` == 0 or pass a previous result to
/// checksum data in pieces: crc32c(b, crc32c(a)) == crc32c(a followed by b).
/// Pure function: any thread, no allocation.
inline std::uint32_t crc32c(std::span<const std::byte> data, std::uint32_t crc = 0) noexcept {
  const auto& t = detail::kCrc32cTables;
  std::uint32_t c = ~crc;
  const std::byte* p = data.data();
  std::size_t n = data.size();
  while (n >= 8) {
    const std::uint32_t lo =
        c ^ (static_cast<std::uint32_t>(p[0]) | static_cast<std::uint32_t>(p[1]) << 8 |
             static_cast<std::uint32_t>(p[2]) << 16 | static_cast<std::uint32_t>(p[3]) << 24);
    c = t[7][lo & 0xff] ^ t[6][(lo >> 8) & 0xff] ^ t[5][(lo >> 16) & 0xff] ^ t[4][lo >> 24] ^
        t[3][static_cast<std::uint8_t>(p[4])] ^ t[2][static_cast<std::uint8_t>(p[5])] ^
        t[1][static_cast<std::uint8_t>(p[6])] ^ t[0][static_cast<std::uint8_t>(p[7])];
    p += 8;
    n -= 8;
  }
  while (n-- != 0) {
    c = t[0][(c ^ static_cast<std::uint8_t>(*p++)) & 0xff] ^ (c >> 8);
  }
  return ~c;
}

}  // namespace tenure::raft
