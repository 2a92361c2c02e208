// CountingLogger: a Logger that is enabled at info and above and counts the records it gets
// instead of writing them, so that tests and benchmarks measure the group's own logging work
// (building records, the level checks) without stdio.
#pragma once

#include <cstdint>

#include <raft/logger.hpp>

namespace tenure::raft::testing {

/// Thread-safety: the group's thread only. Allocation: none.
struct CountingLogger {
  std::uint64_t records = 0;
  static constexpr bool enabled(LogLevel level) noexcept {
    return level >= LogLevel::info && level != LogLevel::off;
  }
  void log(const LogRecord&) noexcept { ++records; }
};

}  // namespace tenure::raft::testing
