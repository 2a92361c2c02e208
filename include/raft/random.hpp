// Random sources for election timeouts: per group, seeded, never process-global.
#pragma once

#include <concepts>
#include <cstdint>

namespace tenure::raft {

/// A source of random 64-bit words, owned by one group.
///
/// Requirements the compiler checks: a constructor from `std::uint64_t` (the seed: RaftConfig's
/// random_seed, or one derived from the node and group ids) and `std::uint64_t next()`.
/// Optional: `std::uint64_t below(std::uint64_t bound)`, a number in [0, bound) for bound > 0;
/// without it the group uses `next() % bound` (see random_below()).
///
/// Semantics the compiler cannot check:
/// - deterministic from its seed: the same seed gives the same words, so that a simulated cluster
///   replays exactly; never seeded from the time or a device behind the group's back;
/// - the words are spread evenly enough that two nodes' election timeouts rarely collide (a
///   counter is not enough: every node would time out together, election after election);
/// - cheap, does not block, does not allocate, does not throw; called on the group's thread only.
template <class R>
concept RandomSource = std::constructible_from<R, std::uint64_t> && requires(R& r) {
  { r.next() } -> std::same_as<std::uint64_t>;
};

/// A number in [0, bound), bound > 0: the source's own `below()` when it has one, else
/// `next() % bound` (for the bounds a group asks, election timeout spreads in nanoseconds, the
/// modulo bias is far below anything an election could notice).
template <RandomSource R>
std::uint64_t random_below(R& r, std::uint64_t bound) {
  if constexpr (requires {
                  { r.below(bound) } -> std::same_as<std::uint64_t>;
                }) {
    return r.below(bound);
  } else {
    return r.next() % bound;
  }
}

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

namespace detail {

/// Checks a RandomSource policy member by member so that the compiler names what is missing.
template <class R>
consteval bool check_random_source() {
  static_assert(std::constructible_from<R, std::uint64_t>,
                "tenure: the RandomSource policy (`random_type`) needs a constructor from "
                "`std::uint64_t` (the seed)");
  static_assert(
      requires(R & r) {
        { r.next() } -> std::same_as<std::uint64_t>;
      },
      "tenure: the RandomSource policy (`random_type`) needs `std::uint64_t next()`");
  static_assert(
      !requires(R & r, std::uint64_t bound) { r.below(bound); } ||
          requires(R & r, std::uint64_t bound) {
            { r.below(bound) } -> std::same_as<std::uint64_t>;
          },
      "tenure: the RandomSource policy's optional `below` must be "
      "`std::uint64_t below(std::uint64_t bound)`");
  return RandomSource<R>;
}

}  // namespace detail

}  // namespace tenure::raft
