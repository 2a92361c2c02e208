#include <raft/result.hpp>

#include <doctest/doctest.h>

#include <string>
#include <system_error>

using tenure::raft::errc;
using tenure::raft::Error;
using tenure::raft::kNoNode;
using tenure::raft::Result;

TEST_CASE("Result holds a value") {
  Result<std::string> r = std::string("applied");
  REQUIRE(r.has_value());
  CHECK(static_cast<bool>(r));
  CHECK(r.value() == "applied");
  CHECK(!r.code());
  CHECK(r.leader_hint() == kNoNode);
  std::string moved = std::move(r).value();
  CHECK(moved == "applied");
}

TEST_CASE("a not_leader Result carries the leader hint") {
  Result<std::uint64_t> r = Error::not_leader(7);
  REQUIRE(!r.has_value());
  CHECK(r.code() == errc::not_leader);
  CHECK(r.leader_hint() == 7);
  CHECK(r.error() == Error(errc::not_leader, 7));
}

TEST_CASE("a not_leader Result with an unknown leader says so") {
  Result<int> r = Error::not_leader(kNoNode);
  CHECK(r.code() == errc::not_leader);
  CHECK(r.leader_hint() == kNoNode);
}

TEST_CASE("value() on an error throws system_error with the code") {
  Result<int> r = errc::timed_out;
  try {
    (void)r.value();
    FAIL("value() did not throw");
  } catch (const std::system_error& e) {
    CHECK(e.code() == errc::timed_out);
  }
}

TEST_CASE("Result<void>") {
  Result<void> ok;
  CHECK(ok.has_value());
  CHECK_NOTHROW(ok.value());
  Result<void> failed = Error(errc::leadership_lost, 4);
  CHECK(!failed.has_value());
  CHECK(failed.code() == errc::leadership_lost);
  CHECK(failed.leader_hint() == 4);
  CHECK_THROWS_AS(failed.value(), std::system_error);
}

TEST_CASE("Result is a small value that never allocates") {
  static_assert(sizeof(Result<std::uint64_t>) <= 40);
  static_assert(std::is_trivially_copyable_v<Error>);
}
