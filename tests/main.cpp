// The one doctest main of the unit-test program. It also installs the counting global operator
// new/delete, so every test in this program can use AllocationGuard.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <raft/testing/count_allocations.hpp>
