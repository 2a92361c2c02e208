// Replaces global operator new and delete with versions that count per thread, for
// AllocationGuard. Include in exactly ONE translation unit of a test or benchmark program; never
// in a library or in production code.
#pragma once

#include <cstdlib>
#include <new>

#include <raft/testing/allocation_guard.hpp>

namespace tenure::raft::testing::detail {

inline void* counted_allocate(std::size_t size, std::size_t alignment) noexcept {
  if (size == 0) {
    size = 1;  // operator new must return a unique pointer even for zero bytes
  }
  void* p = nullptr;
  if (alignment <= alignof(std::max_align_t)) {
    p = std::malloc(size);
  } else {
    // aligned_alloc wants a size that is a multiple of the alignment.
    p = std::aligned_alloc(alignment, (size + alignment - 1) / alignment * alignment);
  }
  if (p != nullptr) {
    ++thread_counts.allocations;
    thread_counts.bytes += size;
  }
  return p;
}

inline void* counted_allocate_or_throw(std::size_t size, std::size_t alignment) {
  for (;;) {
    if (void* p = counted_allocate(size, alignment)) {
      return p;
    }
    std::new_handler handler = std::get_new_handler();
    if (handler == nullptr) {
      throw std::bad_alloc();
    }
    handler();
  }
}

inline void counted_free(void* p) noexcept {
  if (p != nullptr) {
    ++thread_counts.deallocations;
    std::free(p);
  }
}

// Marks the counting as present before main() runs, for allocation_counting_installed().
inline const bool registered = (counting_installed = true);

}  // namespace tenure::raft::testing::detail

// The replaceable global allocation functions ([new.delete]); each forwards to the counters.
// clang-format off
void* operator new(std::size_t n) { return tenure::raft::testing::detail::counted_allocate_or_throw(n, 0); }
void* operator new[](std::size_t n) { return tenure::raft::testing::detail::counted_allocate_or_throw(n, 0); }
void* operator new(std::size_t n, std::align_val_t a) { return tenure::raft::testing::detail::counted_allocate_or_throw(n, static_cast<std::size_t>(a)); }
void* operator new[](std::size_t n, std::align_val_t a) { return tenure::raft::testing::detail::counted_allocate_or_throw(n, static_cast<std::size_t>(a)); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return tenure::raft::testing::detail::counted_allocate(n, 0); }
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return tenure::raft::testing::detail::counted_allocate(n, 0); }
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept { return tenure::raft::testing::detail::counted_allocate(n, static_cast<std::size_t>(a)); }
void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept { return tenure::raft::testing::detail::counted_allocate(n, static_cast<std::size_t>(a)); }
void operator delete(void* p) noexcept { tenure::raft::testing::detail::counted_free(p); }
void operator delete[](void* p) noexcept { tenure::raft::testing::detail::counted_free(p); }
void operator delete(void* p, std::size_t) noexcept { tenure::raft::testing::detail::counted_free(p); }
void operator delete[](void* p, std::size_t) noexcept { tenure::raft::testing::detail::counted_free(p); }
void operator delete(void* p, std::align_val_t) noexcept { tenure::raft::testing::detail::counted_free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { tenure::raft::testing::detail::counted_free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { tenure::raft::testing::detail::counted_free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { tenure::raft::testing::detail::counted_free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { tenure::raft::testing::detail::counted_free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { tenure::raft::testing::detail::counted_free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { tenure::raft::testing::detail::counted_free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { tenure::raft::testing::detail::counted_free(p); }
// clang-format on
