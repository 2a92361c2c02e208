// The value a majority has reached: the k-th largest of a small set, by selection on the stack.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <functional>

namespace tenure::raft::detail {

/// Bit i set: member i of a fixed-size member table belongs to the set.
using MemberMask = std::uint64_t;

/// The largest value v such that a majority of the members in `mask` have `values[i] >= v`: with
/// the members' values in descending order, the (n/2 + 1)-th. `Empty` when the mask is empty.
///
/// Used for the commit index (match indexes), ReadIndex rounds (acknowledged sequence numbers)
/// and lease anchors (acknowledged send times). O(n) on a stack copy; no allocation, no sort of a
/// heap vector (lesson 14).
template <std::size_t N, class T>
T majority_value(const std::array<T, N>& values, MemberMask mask, T empty) noexcept {
  std::array<T, N> selected;
  std::size_t n = 0;
  for (MemberMask m = mask; m != 0; m &= m - 1) {
    selected[n++] = values[static_cast<std::size_t>(std::countr_zero(m))];
  }
  if (n == 0) {
    return empty;
  }
  const std::size_t kth = n / 2;
  std::nth_element(selected.begin(), selected.begin() + static_cast<std::ptrdiff_t>(kth),
                   selected.begin() + static_cast<std::ptrdiff_t>(n), std::greater<>{});
  return selected[kth];
}

/// Whether the members in `granted` form a majority of the members in `mask`.
inline bool is_majority(MemberMask granted, MemberMask mask) noexcept {
  return 2 * std::popcount(granted & mask) > std::popcount(mask);
}

}  // namespace tenure::raft::detail
