// Random sources for election timeouts: per group, seeded, never process-global.
#pragma once

#include <concepts>
#include <cstdint>

namespace tenure::raft {

/// A source of random 64-bit words, owned by one group. Semantics: deterministic from its seed
/// (a simulation replays exactly), cheap, no allocation.
template <class R>
concept RandomSource = std::constructible_from<R, std::uint64_t> && requires(R& r) {
  { r.next() } -> std::same_as<std::uint64_t>;
};

/// xoshiro256** seeded through SplitMix64: fast, small state, good statistical quality. Not for
/// cryptography.
class Xoshiro256 {
 public:
  explicit Xoshiro256(std::uint64_t seed) noexcept {
    for (auto& word : state_) {
      seed += 0x9e3779b97f4a7c15ull;  // SplitMix64
      std::uint64_t z = seed;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
      word = z ^ (z >> 31);
    }
  }

  std::uint64_t next() noexcept {
    const std::uint64_t result = rotl(state_[1] * 5, 7) * 9;
    const std::uint64_t t = state_[1] << 17;
    state_[2] ^= state_[0];
    state_[3] ^= state_[1];
    state_[1] ^= state_[2];
    state_[0] ^= state_[3];
    state_[2] ^= t;
    state_[3] = rotl(state_[3], 45);
    return result;
  }

  /// In [0, bound) for bound > 0. The modulo bias is below 2^-40 for the bounds tenure uses
  /// (timeouts in nanoseconds, well under 2^24 apart).
  std::uint64_t below(std::uint64_t bound) noexcept { return next() % bound; }

 private:
  static std::uint64_t rotl(std::uint64_t x, int k) noexcept { return (x << k) | (x >> (64 - k)); }
  std::uint64_t state_[4];
};

static_assert(RandomSource<Xoshiro256>);

}  // namespace tenure::raft
