// The real sockctl binary against the real sockagentd: output formats,
// --json, exit codes and the error paths of the command line.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <memory>
#include <string>

#include "absl/time/clock.h"
#include "tests/support/agent_process.h"
#include "tests/support/posix_peer.h"

namespace sockagent::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::StartsWith;

class CliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto agent = AgentProcess::Start();
    ASSERT_TRUE(agent.ok()) << agent.status();
    agent_ = agent->release();
  }
  static void TearDownTestSuite() {
    delete agent_;
    agent_ = nullptr;
  }
  CommandResult Ctl(const std::vector<std::string>& args,
                    const std::string& input = "") {
    return RunSockctl(agent_->address(), args, input);
  }
  static AgentProcess* agent_;
};
AgentProcess* CliTest::agent_ = nullptr;

TEST_F(CliTest, HostnameIsGethostname) {
  char name[256] = {};
  gethostname(name, sizeof(name) - 1);
  CommandResult r = Ctl({"hostname"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, std::string(name) + "\n");
  r = Ctl({"--json", "hostname"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "{\"hostname\":\"" + std::string(name) + "\"}\n");
}

TEST_F(CliTest, InfoShowsVersionAndLoopbackInterface) {
  CommandResult r = Ctl({"info"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("agent version:  " SOCKAGENT_VERSION_FOR_TEST));
  EXPECT_THAT(r.out, MatchesRegex("(.|\n)*\nlo +1 +UP,LOOPBACK(.|\n)*"));
  EXPECT_THAT(r.out, HasSubstr("127.0.0.1/8"));
  r = Ctl({"--json", "info"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, StartsWith("{"));
  EXPECT_THAT(r.out, HasSubstr("\"name\":\"lo\""));
  EXPECT_THAT(r.out, HasSubstr("\"agentVersion\""));
}

TEST_F(CliTest, HealthIsServing) {
  CommandResult r = Ctl({"health"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "SERVING\n");
  r = Ctl({"health", "--service", "sockagent.v1.SocketAgent"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  r = Ctl({"health", "--service", "no.such.Service"});
  EXPECT_EQ(r.exit_code, 15);  // NOT_FOUND from gRPC's health service.
}

TEST_F(CliTest, ResolveLocalhostWwwTable) {
  CommandResult r = Ctl({"resolve", "localhost", "www"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out,
              StartsWith("FAMILY   TYPE         PROTO  CANONNAME  ADDRESS    "
                         "PORT\n"));
  EXPECT_THAT(r.out, HasSubstr("AF_INET  SOCK_STREAM  tcp    -          "
                               "127.0.0.1  80\n"));
  r = Ctl({"--json", "resolve", "-4", "--type", "stream", "localhost", "www"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("\"address\":\"127.0.0.1\""));
  EXPECT_THAT(r.out, HasSubstr("\"port\":80"));
  EXPECT_THAT(r.out, HasSubstr("\"family\":\"FAMILY_IPV4\""));
}

TEST_F(CliTest, ResolveErrorsHaveExitCodes) {
  CommandResult r = Ctl({"resolve", ""});
  EXPECT_EQ(r.exit_code, 13);  // 10 + INVALID_ARGUMENT.
  EXPECT_THAT(r.err, HasSubstr("sockctl: INVALID_ARGUMENT:"));
  r = Ctl({"resolve", "--numeric-host", "localhost"});
  EXPECT_EQ(r.exit_code, 15);
  EXPECT_THAT(r.err, HasSubstr("NOT_FOUND"));
  r = Ctl({"resolve", std::string(10 * 1024, 'h')});
  EXPECT_EQ(r.exit_code, 13);
  EXPECT_THAT(r.err, HasSubstr("longer than the limit"));
}

TEST_F(CliTest, UsageErrorsExit2WithoutACall) {
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{
           {"--no-such-flag", "info"},
           {"no-such-verb"},
           {"--timeout", "abc", "info"},
           {"--timeout", "-1s", "info"},
           {"resolve"},
       }) {
    CommandResult r = Ctl(args);
    EXPECT_EQ(r.exit_code, 2) << args[0] << ": " << r.err;
    EXPECT_FALSE(r.err.empty());
  }
  for (const std::string& bad :
       {std::string("nonsense"), std::string("127.0.0.1:"),
        std::string("127.0.0.1:70000"), std::string(":7878"),
        std::string("::1:7878"), std::string(5000, 'a') + ":1"}) {
    CommandResult r = RunCommand({SOCKCTL_PATH, "--agent", bad, "info"}, "",
                                 absl::Seconds(30));
    EXPECT_EQ(r.exit_code, 2) << bad << ": " << r.err;
    EXPECT_THAT(r.err, HasSubstr("invalid --agent"));
  }
}

TEST_F(CliTest, UnreachableAgentFailsFastWithClearMessage) {
  uint16_t port = 0;
  { Fd closed = TcpListen(1, &port); }  // A port nobody listens on now.
  const std::string address = "127.0.0.1:" + std::to_string(port);
  const absl::Time start = absl::Now();
  CommandResult r =
      RunCommand({SOCKCTL_PATH, "--agent", address, "--timeout", "20s", "info"},
                 "", absl::Seconds(60));
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_THAT(r.err, HasSubstr("cannot reach agent at " + address));
  // A refused connection ends the call at once, not at the deadline (the
  // bound is generous: ASan start-up on a loaded machine takes seconds).
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
}

TEST_F(CliTest, SilentAgentFailsWithinTheTimeout) {
  // Accepts TCP but never speaks HTTP/2.
  uint16_t port = 0;
  Fd silent = TcpListen(16, &port);
  const absl::Time start = absl::Now();
  CommandResult r =
      RunCommand({SOCKCTL_PATH, "--agent", "127.0.0.1:" + std::to_string(port),
                  "--timeout", "500ms", "info"},
                 "", absl::Seconds(30));
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

TEST_F(CliTest, AgentAddressFromEnvironment) {
  setenv("SOCKAGENT_ADDR", agent_->address().c_str(), 1);
  CommandResult r = RunCommand({SOCKCTL_PATH, "health"}, "", absl::Seconds(30));
  unsetenv("SOCKAGENT_ADDR");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "SERVING\n");
}

}  // namespace
}  // namespace sockagent::testing
