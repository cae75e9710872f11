// Issue 12 §5, tokens and auth failures: a short token is refused at start
// with a message saying how to make a good one; a flood of wrong-token calls
// is refused every time but writes a bounded number of log lines (one per
// peer IP per interval, each counting the ones not written).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "sockagent/v1/agent.grpc.pb.h"
#include "tests/support/agent_process.h"
#include "tests/support/grpc_client.h"
#include "tests/support/subprocess.h"
#include "tests/support/wait.h"

namespace sockagent::testing {
namespace {

using ::testing::HasSubstr;

void WriteToken(const std::string& path, const std::string& token) {
  std::ofstream(path) << token << "\n";
  chmod(path.c_str(), 0600);
}

TEST(Tokens, ShortTokenIsRefusedWithHowToMakeOne) {
  TempDir dir;
  const std::string path = dir.path() + "/token";
  WriteToken(path, "x");
  CommandResult r = RunCommand(
      {SOCKAGENTD_PATH, "--listen=127.0.0.1:0", "--token-file=" + path}, "",
      absl::Seconds(30));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("the token has 1 characters; at least 16"));
  EXPECT_THAT(r.err, HasSubstr("head -c 32 /dev/urandom | base64 > " + path));
  EXPECT_THAT(r.err, HasSubstr("chmod 600 " + path));

  WriteToken(path, "fifteen-chars-x");
  r = RunCommand(
      {SOCKAGENTD_PATH, "--listen=127.0.0.1:0", "--token-file=" + path}, "",
      absl::Seconds(30));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("at least 16"));

  // Sixteen is enough.
  WriteToken(path, "sixteen-chars-xy");
  auto agent = AgentProcess::Start({"--token-file=" + path});
  EXPECT_TRUE(agent.ok()) << agent.status();
}

// The auth_failure lines with their suppressed=N counts.
struct AuthLines {
  int lines = 0;
  uint64_t suppressed = 0;
};

AuthLines CountAuthLines(const std::string& log) {
  AuthLines out;
  for (absl::string_view line : absl::StrSplit(log, '\n')) {
    if (line.find("event=auth_failure") == absl::string_view::npos) continue;
    ++out.lines;
    const size_t at = line.find(" suppressed=");
    if (at == absl::string_view::npos) continue;
    absl::string_view rest = line.substr(at + 12);
    rest = rest.substr(0, rest.find(' '));
    uint64_t n = 0;
    if (absl::SimpleAtoi(rest, &n)) out.suppressed += n;
  }
  return out;
}

// 12,000 wrong-token calls from one IP over several connections (several
// ports) wrote 12,019 warn lines. Every call is still refused; the log gets
// one line per interval, and the lines plus their suppressed counts add up
// to the calls.
TEST(AuthFailures, FloodIsRefusedEveryTimeButLoggedBounded) {
  TempDir dir;
  const std::string path = dir.path() + "/token";
  WriteToken(path, "the-right-token-0123456789");
  constexpr absl::Duration kInterval = absl::Seconds(2);
  auto agent = AgentProcess::Start(
      {"--token-file=" + path, "--log-refusal-interval=2s"});
  ASSERT_TRUE(agent.ok()) << agent.status();
  const std::string address = (*agent)->address();

  constexpr int kThreads = 4;
  constexpr int kCallsEach = 3000;
  std::atomic<int> refused{0};
  std::atomic<int> other{0};
  const absl::Time start = absl::Now();
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      // Its own connection (own source port) per thread.
      grpc::ChannelArguments args;
      args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
      args.SetInt("sockagent.test.channel", t);
      auto stub = v1::SocketAgent::NewStub(grpc::CreateCustomChannel(
          address, grpc::InsecureChannelCredentials(), args));
      for (int i = 0; i < kCallsEach; ++i) {
        auto context = ContextWithDeadline();
        AddBearerToken(context.get(), "a-wrong-token-0123456789");
        v1::ListServersResponse response;
        const grpc::Status s = stub->ListServers(
            context.get(), v1::ListServersRequest(), &response);
        if (s.error_code() == grpc::StatusCode::UNAUTHENTICATED) {
          ++refused;
        } else {
          ++other;
        }
      }
    });
  }
  // Reads the agent's stderr while the flood runs, so a chatty log cannot
  // fill the pipe and stall the agent (polling, not synchronisation).
  std::atomic<bool> flooding{true};
  std::thread drainer([&] {
    while (flooding) {
      (void)(*agent)->Stderr();
      absl::SleepFor(absl::Milliseconds(10));
    }
  });
  for (std::thread& t : threads) t.join();
  const absl::Duration took = absl::Now() - start;
  flooding = false;
  drainer.join();
  constexpr int kCalls = kThreads * kCallsEach;
  EXPECT_EQ(refused.load(), kCalls);
  EXPECT_EQ(other.load(), 0);

  AuthLines seen = CountAuthLines((*agent)->Stderr());
  // One line per interval (plus the first), all from 127.0.0.1.
  const int bound = 2 + static_cast<int>(took / kInterval);
  EXPECT_GE(seen.lines, 1);
  EXPECT_LE(seen.lines, bound) << "flood took " << took;

  // The counts: one more wrong call after the interval writes a line
  // carrying the suppressed count of the last window.
  auto stub = v1::SocketAgent::NewStub(ChannelTo(address));
  int extra = 0;
  ASSERT_TRUE(WaitFor(
      [&] {
        auto context = ContextWithDeadline();
        AddBearerToken(context.get(), "a-wrong-token-0123456789");
        v1::ListServersResponse response;
        const grpc::Status s = stub->ListServers(
            context.get(), v1::ListServersRequest(), &response);
        EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
        ++extra;
        seen = CountAuthLines((*agent)->Stderr());
        return seen.lines + seen.suppressed == uint64_t{kCalls} + extra;
      },
      absl::Seconds(30)))
      << "lines " << seen.lines << " suppressed " << seen.suppressed
      << " calls " << kCalls + extra;
  EXPECT_LE(seen.lines, bound + 1);
  const std::string log = (*agent)->Stderr();
  EXPECT_LT(log.size(), size_t{64} << 10) << "log of " << log.size() << " B";
}

}  // namespace
}  // namespace sockagent::testing
