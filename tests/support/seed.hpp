// Seeds of randomised tests: overridable from the environment, printed with a replay command.
#pragma once

#include <doctest/doctest.h>

#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>

namespace tenure::testing {

/// TENURE_SEED from the environment, when set: a failing seed is replayed by setting it.
inline std::optional<std::uint64_t> seed_override() {
  if (const char* env = std::getenv("TENURE_SEED"); env != nullptr && *env != '\0') {
    return std::strtoull(env, nullptr, 0);
  }
  return std::nullopt;
}

/// The seed a randomised test runs with: TENURE_SEED when set, else `default_seed`.
inline std::uint64_t test_seed(std::uint64_t default_seed) {
  return seed_override().value_or(default_seed);
}

/// The exact command that replays `seed` of the test case `test_name`.
inline std::string replay_command(std::uint64_t seed, const char* test_name) {
  const doctest::ContextOptions* options = doctest::getContextOptions();
  const std::string binary = options != nullptr && options->binary_name.size() > 0
                                 ? options->binary_name.c_str()
                                 : "build/debug/tests/tenure_unit_tests";
  return "TENURE_SEED=" + std::to_string(seed) + " " + binary + " -tc=\"" + test_name + "\"";
}

}  // namespace tenure::testing
