// Two daemons on one control address (issue 12, §3): exactly one serves;
// the other exits non-zero saying why, and leaves the live agent's socket
// alone.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "tests/support/agent_process.h"
#include "tests/support/grpc_client.h"
#include "tests/support/subprocess.h"

namespace sockagent::testing {
namespace {

using ::testing::HasSubstr;

bool Healthy(const std::string& address) {
  auto stub = grpc::health::v1::Health::NewStub(ChannelTo(address));
  grpc::health::v1::HealthCheckRequest req;
  grpc::health::v1::HealthCheckResponse resp;
  auto ctx = ContextWithDeadline(std::chrono::seconds(5));
  return stub->Check(ctx.get(), req, &resp).ok();
}

TEST(DoubleDaemon, SecondTcpDaemonOnALivePortExitsSayingAddressInUse) {
  auto first = AgentProcess::Start();
  ASSERT_TRUE(first.ok()) << first.status();
  const std::string address = (*first)->address();
  CommandResult second =
      RunCommand({SOCKAGENTD_PATH, "--insecure", "--listen=" + address}, "",
                 absl::Seconds(30));
  EXPECT_NE(second.exit_code, 0);
  EXPECT_THAT(second.err, HasSubstr("address in use"));
  EXPECT_TRUE(Healthy(address));
}

// Both started at the same moment, 20 times: exactly one serves; once the
// loser is gone the survivor is still reachable on the path.
TEST(DoubleDaemon, SimultaneousUnixStartsLeaveExactlyOneServing) {
  for (int round = 0; round < 20; ++round) {
    TempDir dir;
    const std::string listen = "--listen=unix:" + dir.path() + "/s.sock";
    auto a = ChildProcess::Start({SOCKAGENTD_PATH, listen});
    auto b = ChildProcess::Start({SOCKAGENTD_PATH, listen});
    ASSERT_TRUE(a.ok() && b.ok());
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    auto line_a = (*a)->ReadLine(deadline);
    auto line_b = (*b)->ReadLine(deadline);
    const int serving = (line_a.ok() ? 1 : 0) + (line_b.ok() ? 1 : 0);
    ASSERT_EQ(serving, 1) << "round " << round;
    std::unique_ptr<ChildProcess>& loser = line_a.ok() ? *b : *a;
    auto status = loser->Stop(0, absl::Now() + absl::Seconds(30));  // Wait.
    ASSERT_TRUE(status.ok());
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) != 0) << *status;
    EXPECT_THAT(loser->DrainStderr(),
                HasSubstr("another agent already serves"));
    EXPECT_TRUE(Healthy("unix:" + dir.path() + "/s.sock")) << "round " << round;
    std::unique_ptr<ChildProcess>& winner = line_a.ok() ? *a : *b;
    ASSERT_TRUE(winner->Stop(SIGTERM, absl::Now() + absl::Seconds(30)).ok());
    struct stat st;
    EXPECT_NE(lstat((dir.path() + "/s.sock").c_str(), &st), 0)
        << "the winner unlinks its socket at exit";
  }
}

}  // namespace
}  // namespace sockagent::testing
