#include <raft/testing/allocation_guard.hpp>

#include <doctest/doctest.h>

#include <memory>
#include <new>
#include <thread>
#include <vector>

using tenure::raft::testing::AllocationGuard;

namespace {

// Keeps the optimiser from eliding a new/delete pair (permitted since C++14).
template <class T>
void escape(T* p) {
  asm volatile("" : : "g"(p) : "memory");
}

}  // namespace

TEST_CASE("allocation counting is installed in the test program") {
  CHECK(tenure::raft::testing::allocation_counting_installed());
}

TEST_CASE("AllocationGuard detects an allocation inside its region") {
  AllocationGuard guard;
  auto p = std::make_unique<int>(42);
  escape(p.get());
  CHECK(guard.allocations() == 1);
  CHECK(guard.bytes() >= sizeof(int));
  p.reset();
  CHECK(guard.deallocations() == 1);
}

TEST_CASE("AllocationGuard counts every form of operator new") {
  AllocationGuard guard;
  auto* array = new int[8];
  escape(array);
  delete[] array;
  struct alignas(64) Wide {
    char bytes[64];
  };
  auto* wide = new Wide;
  escape(wide);
  CHECK(reinterpret_cast<std::uintptr_t>(wide) % 64 == 0);
  delete wide;
  auto* nothrow = new (std::nothrow) long;
  escape(nothrow);
  delete nothrow;
  CHECK(guard.allocations() == 3);
  CHECK(guard.deallocations() == 3);
}

TEST_CASE("AllocationGuard reports zero for a region that does not allocate") {
  std::vector<int> v;
  v.reserve(16);
  AllocationGuard guard;
  for (int i = 0; i < 16; ++i) {
    v.push_back(i);
  }
  CHECK(guard.allocations() == 0);
  v.push_back(16);  // past capacity: must be seen
  CHECK(guard.allocations() == 1);
}

TEST_CASE("AllocationGuard counts only its own thread") {
  AllocationGuard guard;
  std::uint64_t other_thread_allocations = 0;
  std::thread worker([&] {
    AllocationGuard inner;
    auto p = std::make_unique<int[]>(100);
    escape(p.get());
    other_thread_allocations = inner.allocations();
  });
  worker.join();
  CHECK(other_thread_allocations == 1);
  // Starting a thread may allocate on this thread (its state block), but never the 100 ints.
  CHECK(guard.bytes() < 100 * sizeof(int));
}
