// Server keepalive: a client that keeps a call open but stops answering
// (frozen with SIGSTOP: the kernel still ACKs its TCP segments, so only an
// HTTP/2 PING that goes unanswered can tell) loses its call within
// --keepalive-time + --keepalive-timeout, and what it held is freed.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <string>

#include "absl/time/clock.h"
#include "tests/support/agent_process.h"
#include "tests/support/subprocess.h"
#include "tests/support/wait.h"

namespace sockagent::testing {
namespace {

constexpr int kExitResourceExhausted = 10 + 8;

// A Watch of 200 ms on `address`: its exit code (0 = a watcher slot was free).
int ShortWatch(const std::string& address) {
  return RunSockctl(address, {"--timeout", "2s", "watch", "--for", "200ms"})
      .exit_code;
}

TEST(Keepalive, FrozenClientLosesItsStreamAndFreesTheSlot) {
  auto agent =
      AgentProcess::Start({"--max-watchers=1", "--keepalive-time=1s",
                           "--keepalive-timeout=1s", "--log-level=debug"});
  ASSERT_TRUE(agent.ok()) << agent.status();
  const std::string address = (*agent)->address();
  // A server, so that `watch --snapshot` prints a line once it is live.
  ASSERT_EQ(RunSockctl(address, {"server", "start", "-q"}).exit_code, 0);
  auto frozen = ChildProcess::Start(
      {SOCKCTL_PATH, "--agent", address, "watch", "--snapshot"});
  ASSERT_TRUE(frozen.ok()) << frozen.status();
  auto line = (*frozen)->ReadLine(absl::Now() + absl::Seconds(20));
  ASSERT_TRUE(line.ok()) << line.status();
  // It holds the only slot.
  ASSERT_EQ(ShortWatch(address), kExitResourceExhausted);
  ASSERT_EQ(kill((*frozen)->pid(), SIGSTOP), 0);
  const absl::Time stopped = absl::Now();
  // Unanswered pings end the frozen client's call: the slot frees up.
  EXPECT_TRUE(
      WaitFor([&] { return ShortWatch(address) == 0; }, absl::Seconds(20)));
  const absl::Duration took = absl::Now() - stopped;
  // 1 s of silence + 1 s ping timeout, plus scheduling on a loaded machine;
  // without keepalive (60 s default) the slot stays taken for a minute.
  EXPECT_LT(took, absl::Seconds(15)) << took;
  kill((*frozen)->pid(), SIGCONT);
  (void)(*frozen)->Stop(SIGKILL, absl::Now() + absl::Seconds(10));
}

}  // namespace
}  // namespace sockagent::testing
