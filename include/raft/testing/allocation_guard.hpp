// AllocationGuard: asserts that a region of code performs no heap allocation.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tenure::raft::testing {

/// Heap operations counted on one thread since it started.
struct AllocationCounts {
  std::uint64_t allocations = 0;
  std::uint64_t deallocations = 0;
  std::uint64_t bytes = 0;
};

namespace detail {

// Plain thread-locals with constant initialisation: touching them from operator new can never
// allocate or recurse. Written only by the replacement operators in
// <raft/testing/count_allocations.hpp>.
inline constinit thread_local AllocationCounts thread_counts{};
inline constinit bool counting_installed = false;

}  // namespace detail

/// This thread's totals so far. Zero forever unless the program links the counting operators.
inline AllocationCounts thread_allocation_counts() noexcept {
  return detail::thread_counts;
}

/// Whether this program replaced global operator new/delete with tenure's counting versions.
/// A zero-allocation assertion is meaningless without them, so check this first.
inline bool allocation_counting_installed() noexcept {
  return detail::counting_installed;
}

/// Counts the heap allocations made by the current thread from construction onwards.
///
///     AllocationGuard guard;
///     hot_path();
///     CHECK(guard.allocations() == 0);
///
/// Requires the counting operators: include <raft/testing/count_allocations.hpp> in exactly one
/// translation unit of the test program. Only the constructing thread's allocations are counted,
/// so a test framework or sanitizer working on another thread cannot disturb the result.
///
/// Thread-safety: use on the thread that constructed it. Allocation: none.
class AllocationGuard {
 public:
  AllocationGuard() noexcept : start_(thread_allocation_counts()) {}

  /// Calls to operator new (every form) since construction.
  std::uint64_t allocations() const noexcept {
    return thread_allocation_counts().allocations - start_.allocations;
  }
  /// Calls to operator delete (every form, null pointers excluded) since construction.
  std::uint64_t deallocations() const noexcept {
    return thread_allocation_counts().deallocations - start_.deallocations;
  }
  /// Bytes requested from operator new since construction.
  std::uint64_t bytes() const noexcept { return thread_allocation_counts().bytes - start_.bytes; }

 private:
  AllocationCounts start_;
};

}  // namespace tenure::raft::testing
