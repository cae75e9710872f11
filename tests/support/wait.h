// Waiting for a condition with a deadline: the tests' only way to
// synchronise with another process or thread.
#ifndef SOCKAGENT_TESTS_SUPPORT_WAIT_H_
#define SOCKAGENT_TESTS_SUPPORT_WAIT_H_

#include <functional>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace sockagent::testing {

// Polls `cond` until it holds or `timeout` passes. The short sleep between
// checks is a poll interval, not synchronisation: the result is the
// condition, never the passage of time.
inline bool WaitFor(const std::function<bool()>& cond,
                    absl::Duration timeout = absl::Seconds(30)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!cond()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(2));
  }
  return true;
}

}  // namespace sockagent::testing

#endif  // SOCKAGENT_TESTS_SUPPORT_WAIT_H_
