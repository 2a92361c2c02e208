// The program both consumer projects build: it includes tenure's headers as a user would and
// fails (non-zero exit) if what it gets does not behave.
#include <raft/errc.hpp>
#include <raft/manual_clock.hpp>
#include <raft/result.hpp>
#include <raft/version.hpp>

#include <chrono>
#include <cstdio>
#include <cstring>

int main() {
  using namespace std::chrono_literals;
  tenure::raft::ManualClock clock;
  clock.advance(5ms);
  const tenure::raft::Result<int> r = tenure::raft::Error::not_leader(3);
  const bool ok = clock.now().time_since_epoch() == 5ms && !r.has_value() && r.leader_hint() == 3 &&
                  r.code() == tenure::raft::ErrorClass::leadership_lost &&
                  std::strlen(TENURE_VERSION_STRING) > 0;
  std::printf("tenure %s consumer: %s\n", TENURE_VERSION_STRING, ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}
