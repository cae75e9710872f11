// `sockctl matrix --tls` and `--mtls` against two real agents on loopback:
// every pair completes a verified TLS handshake with the run's own CA and
// echoes over it, the agents' servers count those handshakes, and nothing
// of the run is left behind. (A pair whose handshake fails, and the cell
// that says why, is in tests/multihost: it needs two hosts.)
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <iterator>
#include <memory>
#include <regex>
#include <string>
#include <vector>

#include "tests/support/agent_process.h"
#include "tests/support/subprocess.h"

namespace sockagent::testing {
namespace {

using ::testing::HasSubstr;

size_t Count(const std::string& text, const std::string& pattern) {
  const std::regex re(pattern);
  return static_cast<size_t>(
      std::distance(std::sregex_iterator(text.begin(), text.end(), re),
                    std::sregex_iterator()));
}

class MatrixTls : public ::testing::Test {
 protected:
  void SetUp() override {
    for (auto* agent : {&a_, &b_}) {
      auto started = AgentProcess::Start();
      ASSERT_TRUE(started.ok()) << started.status();
      *agent = *std::move(started);
    }
  }
  CommandResult Matrix(std::vector<std::string> extra) {
    std::vector<std::string> argv = {
        SOCKCTL_PATH,  "--agent", a_->address(),         "--agent",
        b_->address(), "matrix",  "--timeout-per-probe", "10s"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return RunCommand(argv, "", absl::Seconds(90));
  }
  std::unique_ptr<AgentProcess> a_, b_;
};

TEST_F(MatrixTls, EveryPairVerifiesWithTheRunsCaAndMutualTlsToo) {
  for (const char* mode : {"--tls", "--mtls"}) {
    CommandResult r = Matrix({mode, "-o", "json"});
    ASSERT_EQ(r.exit_code, 0) << mode << "\n" << r.out << r.err;
    EXPECT_EQ(Count(r.out, R"("result":\s*"OK")"), 2u) << r.out;
    EXPECT_EQ(Count(r.out, R"("result":)"), 2u) << r.out;
  }
  // Each agent's two echo servers (one per run) each completed one
  // handshake, with the other agent's probe; the runs left nothing open.
  for (AgentProcess* agent : {a_.get(), b_.get()}) {
    CommandResult list =
        RunSockctl(agent->address(), {"server", "list", "--all", "-o", "json"});
    ASSERT_EQ(list.exit_code, 0) << list.err;
    EXPECT_EQ(Count(list.out, R"("tlsHandshakes":\s*"1")"), 2u) << list.out;
    EXPECT_EQ(Count(list.out, R"("tlsHandshakeFailures":\s*"[1-9])"), 0u)
        << list.out;
    EXPECT_EQ(RunSockctl(agent->address(), {"server", "list", "-q"}).out, "");
    EXPECT_EQ(RunSockctl(agent->address(), {"conn", "list", "-q"}).out, "");
  }
}

TEST_F(MatrixTls, UdpHasNoTlsAndIsAUsageError) {
  CommandResult r = Matrix({"--tls", "--udp"});
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr("UDP has no TLS here (no DTLS)"));
  EXPECT_EQ(RunSockctl(a_->address(), {"server", "list", "-q", "--all"}).out,
            "");
}

}  // namespace
}  // namespace sockagent::testing
