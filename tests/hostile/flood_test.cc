// Unauthenticated floods against the control port (issue 12, §1): HTTP/2
// rapid reset (HEADERS + RST_STREAM, over and over, from an independent
// HTTP/2 client: python3-h2) and idle connection hoarding. The agent must
// keep its memory bounded, keep answering, and say what it refused.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "sockagent/v1/agent.grpc.pb.h"
#include "tests/hostile/control_support.h"
#include "tests/support/agent_process.h"
#include "tests/support/grpc_client.h"
#include "tests/support/posix_peer.h"
#include "tests/support/wait.h"

namespace sockagent::testing {
namespace {

using ::testing::HasSubstr;

constexpr char kToken[] = "flood-test-token-0123456789abcdef";

std::string WriteToken(const TempDir& dir) {
  const std::string path = dir.path() + "/token";
  std::ofstream(path) << kToken << "\n";
  return path;
}

::testing::AssertionResult AgentAnswers(
    const std::shared_ptr<grpc::Channel>& channel, absl::Duration limit) {
  return sockagent::testing::AgentAnswers(channel, limit, kToken);
}

struct FloodRun {
  std::string summary;  // The script's JSON line.
  absl::Duration took;
  uint64_t start_rss = 0;
  uint64_t peak_rss = 0;
  uint64_t end_rss = 0;
  bool settled = false;  // RSS came back within 16 MiB of its start.
  int checks = 0;
  std::string agent_stderr;
};

// Where the flood goes: plaintext, or TLS with these certificates.
struct FloodTarget {
  const TestCerts* tls = nullptr;
};

// Starts a RelWithDebInfo agent, runs h2_rapid_reset.py with `args` (after
// HOST PORT) against it, and checks every ~100 ms that health and an
// authenticated call answer within 1 s (EXPECTs). RSS is sampled all along.
void RunFlood(const std::vector<std::string>& args, FloodRun& run,
              FloodTarget target = {}) {
  const std::string release = ReleaseAgentPath();
  TempDir dir;
  std::vector<std::string> flags = {"--token-file=" + WriteToken(dir)};
  if (target.tls != nullptr) {
    for (std::string& f : target.tls->ServerFlags(/*mutual=*/false)) {
      flags.push_back(std::move(f));
    }
  }
  auto agent = AgentProcess::Start(flags, "", release);
  ASSERT_TRUE(agent.ok()) << agent.status();
  const pid_t pid = (*agent)->pid();
  const std::string address = (*agent)->address();
  auto channel_to = [&] {
    return target.tls != nullptr
               ? TlsChannelTo(address, target.tls->Pem("ca.crt"))
               : ChannelTo(address);
  };
  // A monitoring client with its channel open before the flood.
  auto channel = channel_to();
  ASSERT_TRUE(AgentAnswers(channel, absl::Seconds(5)));
  run.start_rss = RssBytes(pid);

  const absl::Time flood_start = absl::Now();
  std::vector<std::string> argv = {
      "env",
      absl::StrCat("H2_FLOOD_TLS=", target.tls != nullptr ? 1 : 0),
      "/usr/bin/python3",
      std::string(SOCKAGENT_SOURCE_DIR) + "/tests/hostile/h2_rapid_reset.py",
      "127.0.0.1",
      absl::StrCat(PortOf(address))};
  argv.insert(argv.end(), args.begin(), args.end());
  auto flood = ChildProcess::Start(argv);
  ASSERT_TRUE(flood.ok()) << flood.status();

  PeakRss peak_rss(pid, run.start_rss);
  // While the flood runs: health and an authenticated call answer in 1 s.
  absl::StatusOr<std::string> summary;
  std::atomic<bool> finished{false};
  std::thread reader([&] {
    summary = (*flood)->ReadLine(absl::Now() + absl::Seconds(240));
    finished.store(true);
  });
  while (!finished.load() && absl::Now() - flood_start < absl::Seconds(240)) {
    EXPECT_TRUE(AgentAnswers(channel, absl::Seconds(1)))
        << "check " << run.checks;
    ++run.checks;
    if (::testing::Test::HasFailure()) break;
    absl::SleepFor(absl::Milliseconds(100));  // Pace of the checks.
    if (waitpid((*flood)->pid(), nullptr, WNOHANG) != 0) break;
  }
  reader.join();
  run.took = absl::Now() - flood_start;
  ASSERT_TRUE(summary.ok()) << summary.status();
  run.summary = *summary;

  // Memory comes back once the queued calls drained.
  run.settled =
      WaitFor([&] { return RssBytes(pid) <= run.start_rss + (16 << 20); },
              absl::Seconds(60));
  run.peak_rss = peak_rss.Stop();
  run.end_rss = RssBytes(pid);
  EXPECT_TRUE(AgentAnswers(channel_to(), absl::Seconds(1)));
  run.agent_stderr = (*agent)->Stderr();
  auto status = (*agent)->Stop();
  ASSERT_TRUE(status.ok());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << *status;
  std::cerr << "flood: " << run.summary << " took "
            << absl::FormatDuration(run.took) << "; rss start "
            << (run.start_rss >> 20) << " MiB peak " << (run.peak_rss >> 20)
            << " MiB end " << (run.end_rss >> 20) << " MiB; checks "
            << run.checks << "\n";
}

// 200k HEADERS + RST_STREAM pairs, no token, from one process that
// reconnects whenever the agent closes the connection: each connection is
// closed once past its own RST_STREAM bucket (burst 100), before gRPC saw
// more than that.
TEST(RapidReset, UnauthenticatedFloodCostsBoundedMemory) {
  SKIP_WITHOUT_RELEASE_AGENT();
  constexpr int kPairs = 200000;
  FloodRun run;
  RunFlood({absl::StrCat(kPairs), "1"}, run);
  if (HasFatalFailure()) return;
  EXPECT_THAT(run.summary, HasSubstr(absl::StrCat("\"sent\": ", kPairs)));
  EXPECT_THAT(run.summary, HasSubstr("\"errors\": []"));
  EXPECT_LE(run.peak_rss, run.start_rss + (64u << 20))
      << "start " << run.start_rss << " peak " << run.peak_rss;
  EXPECT_TRUE(run.settled) << "start " << run.start_rss << " end "
                           << run.end_rss;
  EXPECT_GT(run.checks, 0);
  EXPECT_THAT(run.agent_stderr, HasSubstr("event=control_connection_cut"));
  EXPECT_THAT(run.agent_stderr, HasSubstr("reason=rapid_reset"));
}

// The same flood over TLS: the daemon terminates TLS itself, so the same
// frame checks apply (before, gRPC's own TLS listener queued every stream:
// 200k pairs took the agent past 1.2 GiB and it stopped reading).
TEST(RapidReset, TlsFloodCostsBoundedMemory) {
  SKIP_WITHOUT_RELEASE_AGENT();
  TestCerts certs;
  absl::Status made = certs.Make();
  ASSERT_TRUE(made.ok()) << made;
  constexpr int kPairs = 200000;
  FloodRun run;
  RunFlood({absl::StrCat(kPairs), "1"}, run, {.tls = &certs});
  if (HasFatalFailure()) return;
  EXPECT_THAT(run.summary, HasSubstr(absl::StrCat("\"sent\": ", kPairs)));
  EXPECT_THAT(run.summary, HasSubstr("\"errors\": []"));
  EXPECT_LE(run.peak_rss, run.start_rss + (64u << 20))
      << "start " << run.start_rss << " peak " << run.peak_rss;
  EXPECT_TRUE(run.settled) << "start " << run.start_rss << " end "
                           << run.end_rss;
  EXPECT_GT(run.checks, 0);
  EXPECT_THAT(run.agent_stderr, HasSubstr("reason=rapid_reset"));
}

// The same attack spread over 100 connections that each stay under their
// own bucket (90 pairs each): every pair reaches the agent, but no faster
// than the agent-wide bucket (1,000 resets/s, burst 1,000) lets through,
// so gRPC's queue stays short. 9,000 pairs therefore take at least 8 s.
TEST(RapidReset, ResetsSpreadOverManyConnectionsAreHeldToTheAgentRate) {
  SKIP_WITHOUT_RELEASE_AGENT();
  FloodRun run;
  RunFlood({"9000", "100", "90", "spread"}, run);
  if (HasFatalFailure()) return;
  EXPECT_THAT(run.summary, HasSubstr("\"sent\": 9000"));
  EXPECT_THAT(run.summary, HasSubstr("\"done\": 100"));
  EXPECT_THAT(run.summary, HasSubstr("\"closed_by_server\": 0"));
  EXPECT_THAT(run.summary, HasSubstr("\"errors\": []"));
  EXPECT_GE(run.took, absl::Seconds(6));
  EXPECT_LE(run.peak_rss, run.start_rss + (64u << 20))
      << "start " << run.start_rss << " peak " << run.peak_rss;
  EXPECT_TRUE(run.settled) << "start " << run.start_rss << " end "
                           << run.end_rss;
  EXPECT_GT(run.checks, 0);
}

// `n` plain TCP connections to the agent's control port that never send a
// byte (closed when dropped); none, after a test failure, if one failed.
std::vector<Fd> IdleConnections(const std::string& address, int n) {
  const uint16_t port = static_cast<uint16_t>(PortOf(address));
  std::vector<Fd> idle;
  for (int i = 0; i < n; ++i) {
    idle.push_back(TcpConnect(Ip("127.0.0.1", port)));
    if (!idle.back().valid()) {
      ADD_FAILURE() << "connection " << i << " to " << address << " failed";
      return {};
    }
  }
  return idle;
}

// Idle connections beyond the cap (no token, no call) neither lock out an
// authenticated client nor eat the engine's descriptors.
TEST(ConnectionHoarding, IdleConnectionsBeyondTheCapAreEvicted) {
  TempDir dir;
  constexpr int kCap = 64;
  auto agent =
      AgentProcess::Start({"--token-file=" + WriteToken(dir),
                           absl::StrCat("--max-control-connections=", kCap)});
  ASSERT_TRUE(agent.ok()) << agent.status();
  const std::vector<Fd> idle = IdleConnections((*agent)->address(), 3 * kCap);
  ASSERT_EQ(idle.size(), 3u * kCap);
  // The agent saw them all (the log says it evicted some).
  ASSERT_TRUE(WaitFor([&] {
    return (*agent)->Stderr().find("event=control_connection_limit") !=
           std::string::npos;
  })) << (*agent)->Stderr();
  EXPECT_TRUE(AgentAnswers(ChannelTo((*agent)->address()), absl::Seconds(5)));
  // And the authenticated client can start a server.
  auto stub =
      sockagent::v1::SocketAgent::NewStub(ChannelTo((*agent)->address()));
  sockagent::v1::StartServerRequest req;
  req.set_transport(sockagent::v1::TRANSPORT_TCP);
  req.mutable_bind()->set_host("127.0.0.1");
  req.mutable_bind()->set_port(0);
  sockagent::v1::StartServerResponse server;
  auto ctx = ContextWithDeadline(std::chrono::seconds(5));
  AddBearerToken(ctx.get(), kToken);
  grpc::Status s = stub->StartServer(ctx.get(), req, &server);
  EXPECT_TRUE(s.ok()) << s.error_message();
}

// The cap holds for TLS too: connections that never finish (or never
// start) their handshake are counted from accept() and evicted first.
TEST(ConnectionHoarding, TlsConnectionsCountAgainstTheCap) {
  TestCerts certs;
  absl::Status made = certs.Make();
  ASSERT_TRUE(made.ok()) << made;
  TempDir dir;
  constexpr int kCap = 16;
  std::vector<std::string> flags = certs.ServerFlags(/*mutual=*/false);
  flags.push_back("--token-file=" + WriteToken(dir));
  flags.push_back(absl::StrCat("--max-control-connections=", kCap));
  auto agent = AgentProcess::Start(flags);
  ASSERT_TRUE(agent.ok()) << agent.status();
  const std::vector<Fd> idle = IdleConnections((*agent)->address(), 3 * kCap);
  ASSERT_EQ(idle.size(), 3u * kCap);
  ASSERT_TRUE(WaitFor([&] {
    return (*agent)->Stderr().find("action=evicted") != std::string::npos;
  })) << (*agent)->Stderr();
  EXPECT_TRUE(
      AgentAnswers(TlsChannelTo((*agent)->address(), certs.Pem("ca.crt")),
                   absl::Seconds(5)));
}

}  // namespace
}  // namespace sockagent::testing
