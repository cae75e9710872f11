// Open (not reset) HTTP/2 streams on the control port (issue 12, §1): a
// client without a token keeps Health/Watch calls open, each costing the
// agent ~17 KiB, over many connections. Connections that have not made an
// authenticated call may hold 16 open streams each and 256 together; past
// that they are cut. Clients that authenticate are never limited, even when
// their first calls are many concurrent long Watches.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <atomic>
#include <fstream>
#include <iostream>
#include <memory>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "sockagent/v1/agent.grpc.pb.h"
#include "tests/hostile/control_support.h"
#include "tests/support/agent_process.h"
#include "tests/support/grpc_client.h"
#include "tests/support/wait.h"

namespace sockagent::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kToken[] = "open-streams-token-0123456789abcdef";

std::string WriteToken(const TempDir& dir) {
  const std::string path = dir.path() + "/token";
  std::ofstream(path) << kToken << "\n";
  return path;
}

// 128 connections x 256 Health/Watch streams, no token, held 4 s: 32,768
// open streams would cost the agent ~550 MiB (measured on main). Now each
// connection gets 16 streams through, waits 2 s for an authenticated call
// that never comes and is cut; all of them together never hold more than
// 256. Health and an authenticated call answer within 1 s throughout.
TEST(OpenStreams, UnauthenticatedWatchesAreBoundedAndCut) {
  SKIP_WITHOUT_RELEASE_AGENT();
  TempDir dir;
  auto agent = AgentProcess::Start({"--token-file=" + WriteToken(dir)}, "",
                                   ReleaseAgentPath());
  ASSERT_TRUE(agent.ok()) << agent.status();
  const pid_t pid = (*agent)->pid();
  const std::string address = (*agent)->address();
  auto channel = ChannelTo(address);
  ASSERT_TRUE(AgentAnswers(channel, absl::Seconds(5), kToken));
  const uint64_t start_rss = RssBytes(pid);

  auto attack = ChildProcess::Start(
      {"/usr/bin/python3",
       std::string(SOCKAGENT_SOURCE_DIR) + "/tests/hostile/h2_open_streams.py",
       "127.0.0.1", absl::StrCat(PortOf(address)), "128", "256", "4"});
  ASSERT_TRUE(attack.ok()) << attack.status();
  PeakRss peak(pid, start_rss);
  absl::StatusOr<std::string> summary;
  std::atomic<bool> finished{false};
  std::thread reader([&] {
    summary = (*attack)->ReadLine(absl::Now() + absl::Seconds(240));
    finished.store(true);
  });
  int checks = 0;
  const absl::Time start = absl::Now();
  while (!finished.load() && absl::Now() - start < absl::Seconds(240)) {
    EXPECT_TRUE(AgentAnswers(channel, absl::Seconds(1), kToken))
        << "check " << checks;
    ++checks;
    if (HasFailure()) break;
    absl::SleepFor(absl::Milliseconds(100));  // Pace of the checks.
  }
  reader.join();
  const uint64_t peak_rss = peak.Stop();
  ASSERT_TRUE(summary.ok()) << summary.status();
  std::cerr << "open streams: " << *summary << "; rss start "
            << (start_rss >> 20) << " MiB peak " << (peak_rss >> 20)
            << " MiB; checks " << checks << "\n";
  EXPECT_THAT(*summary, HasSubstr("\"errors\": []"));
  EXPECT_THAT(*summary, HasSubstr("\"closed_by_server\": 128"));
  EXPECT_THAT(*summary, HasSubstr("\"open_at_end\": 0"));
  EXPECT_LE(peak_rss, start_rss + (64u << 20))
      << "start " << start_rss << " peak " << peak_rss;
  EXPECT_GT(checks, 0);
  const std::string log = (*agent)->Stderr();
  EXPECT_THAT(log, HasSubstr("event=control_connection_cut"));
  EXPECT_THAT(log, HasSubstr("reason=unauthenticated_streams"));
  EXPECT_TRUE(AgentAnswers(ChannelTo(address), absl::Seconds(1), kToken));
}

// How the agent is reached in the not-cut test.
struct Access {
  std::string name;
  bool token = false;     // --token-file, calls carry it.
  bool insecure = false;  // --insecure: no token at all.
};

void PrintTo(const Access& access, std::ostream* out) { *out << access.name; }

class AuthenticatedClient : public ::testing::TestWithParam<Access> {};

// 50 concurrent SocketAgent Watches started at once on a fresh channel:
// they are the connection's first calls, so most of their HEADERS reach the
// agent before any call was authenticated. The connection waits for the
// first calls' token check instead of being cut, and every Watch runs.
TEST_P(AuthenticatedClient, ManyConcurrentWatchesAreNotCut) {
  const Access access = GetParam();
  TempDir dir;
  std::vector<std::string> flags;
  if (access.token) flags.push_back("--token-file=" + WriteToken(dir));
  if (access.insecure) flags.push_back("--insecure");
  auto agent = AgentProcess::Start(flags);
  ASSERT_TRUE(agent.ok()) << agent.status();
  auto channel = ChannelTo((*agent)->address());
  auto stub = sockagent::v1::SocketAgent::NewStub(channel);

  constexpr int kWatches = 50;
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  for (int i = 0; i < kWatches; ++i) {
    contexts.push_back(std::make_unique<grpc::ClientContext>());
    if (access.token) AddBearerToken(contexts.back().get(), kToken);
  }
  absl::Mutex mu;
  int snapshots = 0;
  std::vector<grpc::Status> statuses(kWatches);
  std::vector<std::thread> threads;
  for (int i = 0; i < kWatches; ++i) {
    threads.emplace_back([&, i] {
      sockagent::v1::WatchRequest request;
      request.set_snapshot(true);
      auto reader = stub->Watch(contexts[i].get(), request);
      sockagent::v1::Event event;
      bool counted = false;
      while (reader->Read(&event)) {
        if (!counted &&
            event.kind() == sockagent::v1::EVENT_KIND_SNAPSHOT_END) {
          counted = true;
          absl::MutexLock lock(&mu);
          ++snapshots;
        }
      }
      statuses[i] = reader->Finish();
    });
  }
  const bool all_running = WaitFor(
      [&] {
        absl::MutexLock lock(&mu);
        return snapshots == kWatches;
      },
      absl::Seconds(30));
  // Longer than the 2 s an unauthenticated connection may wait.
  absl::SleepFor(absl::Seconds(3));  // Not a synchronisation: time passing.
  const std::string log = (*agent)->Stderr();
  for (auto& context : contexts) context->TryCancel();
  for (auto& t : threads) t.join();
  EXPECT_TRUE(all_running) << snapshots << " of " << kWatches;
  for (int i = 0; i < kWatches; ++i) {
    EXPECT_EQ(statuses[i].error_code(), grpc::StatusCode::CANCELLED)
        << i << ": " << statuses[i].error_message();
  }
  EXPECT_THAT(log, Not(HasSubstr("event=control_connection_cut")));
  // And the same connection still serves.
  EXPECT_TRUE(
      AgentAnswers(channel, absl::Seconds(5), access.token ? kToken : ""));
}

INSTANTIATE_TEST_SUITE_P(
    Access, AuthenticatedClient,
    ::testing::Values(Access{"Token", /*token=*/true, /*insecure=*/false},
                      Access{"Insecure", /*token=*/false, /*insecure=*/true}),
    [](const ::testing::TestParamInfo<Access>& info) {
      return info.param.name;
    });

}  // namespace
}  // namespace sockagent::testing
