#include <raft/version.hpp>

#include <doctest/doctest.h>

#include <string>

TEST_CASE("TENURE_VERSION macros agree with each other") {
  const std::string expected = std::to_string(TENURE_VERSION_MAJOR) + "." +
                               std::to_string(TENURE_VERSION_MINOR) + "." +
                               std::to_string(TENURE_VERSION_PATCH);
  CHECK(expected == TENURE_VERSION_STRING);
  CHECK(TENURE_VERSION ==
        TENURE_VERSION_MAJOR * 10000 + TENURE_VERSION_MINOR * 100 + TENURE_VERSION_PATCH);
}
