// CRC-32C (Castagnoli): the checksum of every WAL record and snapshot file.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <nmmintrin.h>
#define TENURE_CRC32C_HAS_SSE42 1
#else
#define TENURE_CRC32C_HAS_SSE42 0
#endif

namespace tenure::raft {

namespace detail {

inline constexpr std::uint32_t kCrc32cPolynomial = 0x82f63b78u;  // reflected 0x1EDC6F41

// Slicing-by-8 tables, built at compile time: no hardware dependency, ~1 byte per cycle.
consteval std::array<std::array<std::uint32_t, 256>, 8> make_crc32c_tables() {
  std::array<std::array<std::uint32_t, 256>, 8> t{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) {
      c = (c & 1) != 0 ? (c >> 1) ^ kCrc32cPolynomial : c >> 1;
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

/// The reference: one bit at a time, straight from the polynomial. Slow; tests compare the fast
/// paths with it.
inline std::uint32_t crc32c_bitwise(std::span<const std::byte> data, std::uint32_t crc) noexcept {
  std::uint32_t c = ~crc;
  for (std::byte b : data) {
    c ^= static_cast<std::uint8_t>(b);
    for (int k = 0; k < 8; ++k) {
      c = (c & 1) != 0 ? (c >> 1) ^ kCrc32cPolynomial : c >> 1;
    }
  }
  return ~c;
}

/// Slicing-by-8 over the tables above: the portable path.
inline std::uint32_t crc32c_table(std::span<const std::byte> data, std::uint32_t crc) noexcept {
  const auto& t = kCrc32cTables;
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

#if TENURE_CRC32C_HAS_SSE42
/// The SSE4.2 `crc32` instruction (same polynomial), 8 bytes at a time. Only call where
/// crc32c_sse42_available() holds.
__attribute__((target("sse4.2"))) inline std::uint32_t crc32c_sse42(std::span<const std::byte> data,
                                                                    std::uint32_t crc) noexcept {
  std::uint64_t c = ~crc;
  const std::byte* p = data.data();
  std::size_t n = data.size();
  while (n >= 8) {
    std::uint64_t word;
    std::memcpy(&word, p, 8);  // any alignment
    c = _mm_crc32_u64(c, word);
    p += 8;
    n -= 8;
  }
  auto c32 = static_cast<std::uint32_t>(c);
  while (n-- != 0) {
    c32 = _mm_crc32_u8(c32, static_cast<std::uint8_t>(*p++));
  }
  return ~c32;
}

/// Whether this CPU has SSE4.2: known at compile time with -msse4.2 (or an -march that implies
/// it), asked of the CPU once otherwise.
inline bool crc32c_sse42_available() noexcept {
#if defined(__SSE4_2__)
  return true;
#else
  static const bool available = __builtin_cpu_supports("sse4.2");
  return available;
#endif
}
#endif

}  // namespace detail

/// Extends a CRC-32C over `data`. Start with `crc32c({})` == 0 or pass a previous result to
/// checksum data in pieces: crc32c(b, crc32c(a)) == crc32c(a followed by b).
///
/// On x86-64 with GCC or Clang it uses the SSE4.2 `crc32` instruction when the CPU has it (known
/// at compile time with -msse4.2 or -march=native, asked of the CPU once otherwise), and the
/// slicing-by-8 tables elsewhere; both give the same result (crc32c_test.cpp pins them to the
/// RFC 3720 vectors and to a bitwise reference). crc32c_implementation() says which runs.
/// Pure function: any thread, no allocation.
inline std::uint32_t crc32c(std::span<const std::byte> data, std::uint32_t crc = 0) noexcept {
#if TENURE_CRC32C_HAS_SSE42
  if (detail::crc32c_sse42_available()) {
    return detail::crc32c_sse42(data, crc);
  }
#endif
  return detail::crc32c_table(data, crc);
}

/// "sse4.2" or "table": which implementation crc32c() uses on this machine.
inline const char* crc32c_implementation() noexcept {
#if TENURE_CRC32C_HAS_SSE42
  if (detail::crc32c_sse42_available()) {
    return "sse4.2";
  }
#endif
  return "table";
}

}  // namespace tenure::raft
