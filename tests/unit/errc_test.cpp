#include <raft/errc.hpp>
#include <raft/error_classifier.hpp>

#include <doctest/doctest.h>

#include <cerrno>
#include <string>
#include <system_error>

using tenure::raft::DefaultErrorClassifier;
using tenure::raft::errc;
using tenure::raft::ErrorClass;

namespace {

constexpr errc kAllCodes[] = {
    errc::not_leader,        errc::leadership_lost,     errc::transfer_in_progress,
    errc::timed_out,         errc::overloaded,          errc::stopped,
    errc::corrupt_storage,   errc::invalid_config,      errc::invalid_argument,
    errc::malformed_message, errc::unsupported_version, errc::storage_failure,
    errc::cancelled,         errc::lease_expired,       errc::leader_active,
    errc::too_large,         errc::change_in_progress,
};

// A user's own error category, as a business layer would write it: a write conflict (must not
// touch the lease), a "region moved" (means leadership is elsewhere) and a throttling error.
enum class ShopError { write_conflict = 1, region_moved = 2, throttled = 3 };

class ShopCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "shop"; }
  std::string message(int) const override { return "shop error"; }
  std::error_condition default_error_condition(int value) const noexcept override {
    switch (static_cast<ShopError>(value)) {
      case ShopError::region_moved:
        return ErrorClass::leadership_lost;
      case ShopError::throttled:
        return ErrorClass::retryable;
      case ShopError::write_conflict:
        break;
    }
    return {value, *this};
  }
};

const ShopCategory& shop_category() {
  static const ShopCategory category;
  return category;
}

std::error_code make_shop(ShopError e) {
  return {static_cast<int>(e), shop_category()};
}

}  // namespace

TEST_CASE("every errc has its own message and the tenure category") {
  for (errc e : kAllCodes) {
    const std::error_code ec = e;  // implicit through is_error_code_enum
    CHECK(ec.category() == tenure::raft::error_category());
    CHECK(std::string(ec.category().name()) == "tenure");
    CHECK(ec.message().find("unknown tenure error") == std::string::npos);
    for (errc other : kAllCodes) {
      if (other != e) {
        CHECK(ec.message() != std::error_code(other).message());
      }
    }
  }
  CHECK(std::error_code(999, tenure::raft::error_category()).message().find("999") !=
        std::string::npos);
}

TEST_CASE("errc codes are values that never change") {
  // Logged and compared across versions: renumbering one is a breaking change.
  CHECK(static_cast<int>(errc::not_leader) == 1);
  CHECK(static_cast<int>(errc::timed_out) == 4);
  CHECK(static_cast<int>(errc::corrupt_storage) == 7);
  CHECK(static_cast<int>(errc::cancelled) == 13);
}

TEST_CASE("tenure's codes fall into the documented ErrorClass") {
  CHECK(std::error_code(errc::not_leader) == ErrorClass::leadership_lost);
  CHECK(std::error_code(errc::leadership_lost) == ErrorClass::leadership_lost);
  CHECK(std::error_code(errc::transfer_in_progress) == ErrorClass::leadership_lost);
  CHECK(std::error_code(errc::timed_out) == ErrorClass::retryable);
  CHECK(std::error_code(errc::overloaded) == ErrorClass::retryable);
  CHECK(std::error_code(errc::cancelled) == ErrorClass::retryable);
  CHECK(std::error_code(errc::lease_expired) == ErrorClass::retryable);
  CHECK(std::error_code(errc::leader_active) == ErrorClass::retryable);
  CHECK(std::error_code(errc::change_in_progress) == ErrorClass::retryable);
  for (errc e : {errc::stopped, errc::corrupt_storage, errc::invalid_config, errc::invalid_argument,
                 errc::malformed_message, errc::unsupported_version, errc::storage_failure}) {
    CAPTURE(std::error_code(e).message());
    CHECK(std::error_code(e) == ErrorClass::permanent);
    CHECK(std::error_code(e) != ErrorClass::leadership_lost);
    CHECK(std::error_code(e) != ErrorClass::retryable);
  }
  // Each code is in exactly one class.
  for (errc e : kAllCodes) {
    const std::error_code ec = e;
    const int classes = (ec == ErrorClass::leadership_lost) + (ec == ErrorClass::retryable) +
                        (ec == ErrorClass::permanent);
    CHECK(classes == 1);
  }
}

TEST_CASE("generic transport errors are retryable - other generic errors are not") {
  CHECK(std::make_error_code(std::errc::connection_refused) == ErrorClass::retryable);
  CHECK(std::make_error_code(std::errc::timed_out) == ErrorClass::retryable);
  CHECK(std::error_code(ECONNRESET, std::system_category()) == ErrorClass::retryable);
  CHECK(std::make_error_code(std::errc::io_error) != ErrorClass::retryable);
  CHECK(std::make_error_code(std::errc::io_error) != ErrorClass::leadership_lost);
}

TEST_CASE("DefaultErrorClassifier: only leadership errors are leadership_lost") {
  CHECK(DefaultErrorClassifier::classify(errc::not_leader) == ErrorClass::leadership_lost);
  CHECK(DefaultErrorClassifier::classify(errc::transfer_in_progress) ==
        ErrorClass::leadership_lost);
  CHECK(DefaultErrorClassifier::classify(errc::timed_out) == ErrorClass::retryable);
  CHECK(DefaultErrorClassifier::classify(errc::corrupt_storage) == ErrorClass::permanent);
  CHECK(DefaultErrorClassifier::classify(std::make_error_code(std::errc::io_error)) ==
        ErrorClass::permanent);
}

TEST_CASE("a user's category maps onto ErrorClass through error_condition equivalence") {
  CHECK(make_shop(ShopError::region_moved) == ErrorClass::leadership_lost);
  CHECK(make_shop(ShopError::throttled) == ErrorClass::retryable);
  // A business failure is neither: it must never invalidate a lease (lesson 9).
  CHECK(make_shop(ShopError::write_conflict) != ErrorClass::leadership_lost);
  CHECK(DefaultErrorClassifier::classify(make_shop(ShopError::write_conflict)) ==
        ErrorClass::permanent);
  CHECK(DefaultErrorClassifier::classify(make_shop(ShopError::region_moved)) ==
        ErrorClass::leadership_lost);
  CHECK(DefaultErrorClassifier::classify(make_shop(ShopError::throttled)) == ErrorClass::retryable);
}

TEST_CASE("ErrorClass conditions have their own category and messages") {
  const std::error_condition c = ErrorClass::leadership_lost;
  CHECK(c.category() == tenure::raft::error_class_category());
  CHECK(c.message() == "leadership lost");
  CHECK(std::error_condition(ErrorClass::retryable).message() == "retryable");
  CHECK(std::error_condition(ErrorClass::permanent).message() == "permanent");
}
