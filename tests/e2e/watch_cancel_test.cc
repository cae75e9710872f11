// Ending Watch streams in every way a client can while events flow: client
// cancel, an expiring deadline, a killed sockctl, the watcher limit and
// SIGTERM with watchers attached. A real sockagentd, real gRPC, plain POSIX
// peers producing the events. Under ASan a leak or use-after-free in the
// watch reactor makes the agent exit non-zero, so every test checks the exit
// status is exactly 0.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "sockagent/v1/agent.grpc.pb.h"
#include "tests/support/agent_process.h"
#include "tests/support/agent_rpc.h"
#include "tests/support/grpc_client.h"
#include "tests/support/posix_peer.h"
#include "tests/support/subprocess.h"
#include "tests/support/wait.h"

namespace sockagent::testing {
namespace {

using Reader = grpc::ClientReader<v1::Event>;

// Generous for one step of a sanitized agent on a shared 2-core machine;
// a hang shows up as this instead of as the ctest timeout.
constexpr absl::Duration kStepTimeout = absl::Seconds(20);

std::chrono::system_clock::time_point ChronoDeadline(absl::Duration d) {
  return absl::ToChronoTime(absl::Now() + d);
}

// An open Watch, or why it is not open.
struct Watch {
  std::unique_ptr<grpc::ClientContext> context;
  std::unique_ptr<Reader> reader;
  grpc::Status status;  // Set when the stream ended before SNAPSHOT_END.
  bool open = false;
};

// Starts a snapshot watch on `context` and reads up to its SNAPSHOT_END (the
// watch is then subscribed). A stream that ends first is finished and its
// status kept.
Watch OpenWatch(v1::SocketAgent::Stub& stub,
                std::unique_ptr<grpc::ClientContext> context) {
  Watch w;
  w.context = std::move(context);
  v1::WatchRequest request;
  request.set_snapshot(true);
  w.reader = stub.Watch(w.context.get(), request);
  v1::Event e;
  while (w.reader->Read(&e)) {
    if (e.kind() == v1::EVENT_KIND_SNAPSHOT_END) {
      w.open = true;
      return w;
    }
  }
  w.status = w.reader->Finish();
  return w;
}

Watch OpenWatch(v1::SocketAgent::Stub& stub) {
  return OpenWatch(stub, ContextWithDeadline(std::chrono::seconds(60)));
}

// Cancels an open watch and returns how it finished.
grpc::Status CancelWatch(Watch& w) {
  w.context->TryCancel();
  v1::Event e;
  while (w.reader->Read(&e)) {
  }
  return w.reader->Finish();
}

// Bytes the agent has read on server `id`, or nullopt when it cannot tell.
std::optional<uint64_t> BytesReceived(v1::SocketAgent::Stub& stub,
                                      const std::string& id) {
  v1::ListServersRequest request;
  v1::ListServersResponse response;
  auto context = ContextWithDeadline(std::chrono::seconds(10));
  if (!stub.ListServers(context.get(), request, &response).ok()) {
    return std::nullopt;
  }
  for (const auto& s : response.servers()) {
    if (s.id() == id) return s.counters().bytes_received();
  }
  return std::nullopt;
}

// A plain TCP client that keeps events flowing on a hold server: short
// writes on a connection replaced every few rounds (accepted, data, peer
// closed, closed events). Each round waits until the agent has read what
// was sent, so the pace is the agent's and nothing piles up. Runs on its
// own thread until Stop().
class Traffic {
 public:
  Traffic(const std::string& agent_address, const v1::Server& server)
      : stub_(v1::SocketAgent::NewStub(ChannelTo(agent_address))),
        server_id_(server.id()),
        to_(FirstAddress(server)),
        thread_([this] { Run(); }) {}
  ~Traffic() { Stop(); }

  void Stop() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
  }

  uint64_t rounds() const { return rounds_.load(); }

  // Empty while it works; what went wrong otherwise.
  std::string error() {
    absl::MutexLock lock(&mu_);
    return error_;
  }

 private:
  static constexpr int kMaxRounds = 1'000'000;  // Bounds the loop.
  static constexpr int kRoundsPerConnection = 8;
  static constexpr int kWritesPerRound = 4;

  void Fail(std::string message) {
    absl::MutexLock lock(&mu_);
    error_ = std::move(message);
  }

  void Run() {
    Fd connection;
    uint64_t sent = 0;
    for (int round = 0; round < kMaxRounds && !stop_.load(); ++round) {
      if (round % kRoundsPerConnection == 0) {
        connection = TcpConnect(to_);
        if (!connection.valid()) return Fail("connect failed");
      }
      for (int i = 0; i < kWritesPerRound; ++i) {
        if (!WriteAll(connection.get(), "ping")) return Fail("write failed");
        sent += 4;
      }
      const bool read = WaitFor(
          [&] {
            if (stop_.load()) return true;
            auto got = BytesReceived(*stub_, server_id_);
            return got.has_value() && *got >= sent;
          },
          kStepTimeout);
      if (!read) {
        return Fail(absl::StrCat("agent did not read ", sent, " bytes"));
      }
      rounds_.fetch_add(1);
    }
  }

  std::unique_ptr<v1::SocketAgent::Stub> stub_;
  const std::string server_id_;
  const SocketAddress to_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> rounds_{0};
  absl::Mutex mu_;
  std::string error_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;  // Last: starts once the rest is constructed.
};

grpc::StatusCode HealthCheck(const std::string& address,
                             grpc::health::v1::HealthCheckResponse* response) {
  auto stub = grpc::health::v1::Health::NewStub(ChannelTo(address));
  grpc::health::v1::HealthCheckRequest request;
  request.set_service("sockagent.v1.SocketAgent");
  auto context = ContextWithDeadline(std::chrono::seconds(2));
  return stub->Check(context.get(), request, response).error_code();
}

// SIGTERM; the agent must exit 0 within `within` (ASan reports at exit
// make the status non-zero). Returns how long it took.
absl::Duration StopAndExpectExitZero(AgentProcess& agent,
                                     absl::Duration within) {
  const absl::Time start = absl::Now();
  auto status = agent.Stop();
  const absl::Duration took = absl::Now() - start;
  EXPECT_TRUE(status.ok()) << status.status() << "\nagent stderr:\n"
                           << agent.Stderr();
  if (status.ok()) {
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
        << "waitpid status " << *status << " (exited " << WIFEXITED(*status)
        << ", code " << WEXITSTATUS(*status) << ", signalled "
        << WIFSIGNALED(*status) << ")\nagent stderr:\n"
        << agent.Stderr();
  }
  EXPECT_LT(took, within) << "agent stderr:\n" << agent.Stderr();
  return took;
}

TEST(WatchCancel, ManyCancelsNeitherLeakNorHang) {
  // Fewer watcher slots than iterations of each kind: a watcher that is
  // never unregistered makes a later iteration RESOURCE_EXHAUSTED.
  constexpr int kMaxWatchers = 8;
  auto agent = AgentProcess::Start(
      {"--shutdown-grace=1s", absl::StrCat("--max-watchers=", kMaxWatchers)});
  ASSERT_TRUE(agent.ok()) << agent.status();
  const std::string address = (*agent)->address();
  auto stub = v1::SocketAgent::NewStub(ChannelTo(address));
  const v1::Server server = StartLoopbackServer(*stub);
  ASSERT_FALSE(server.id().empty());
  Traffic traffic(address, server);
  ASSERT_TRUE(WaitFor([&] { return traffic.rounds() > 0; }, kStepTimeout))
      << traffic.error();

  constexpr int kIterations = 3 * 16;  // 16 of each kind, > kMaxWatchers.
  static_assert(kIterations / 3 > kMaxWatchers);
  int deadline_runs = 0;
  int deadline_runs_with_events = 0;
  absl::Duration slowest_end;
  for (int i = 0; i < kIterations; ++i) {
    SCOPED_TRACE(absl::StrCat("iteration ", i));
    ASSERT_EQ(traffic.error(), "");
    switch (i % 3) {
      case 0: {  // Client cancel after 0..3 live events.
        Watch w = OpenWatch(*stub);
        ASSERT_TRUE(w.open)
            << w.status.error_code() << " " << w.status.error_message();
        v1::Event e;
        for (int n = 0; n < (i / 3) % 4; ++n) {
          ASSERT_TRUE(w.reader->Read(&e));
        }
        const absl::Time start = absl::Now();
        const grpc::Status status = CancelWatch(w);
        const absl::Duration took = absl::Now() - start;
        slowest_end = std::max(slowest_end, took);
        EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED)
            << status.error_message();
        EXPECT_LT(took, absl::Seconds(5));
        break;
      }
      case 1: {  // A deadline of 50..149 ms expires while events flow.
        const absl::Duration timeout = absl::Milliseconds(50 + (i * 37) % 100);
        auto context = std::make_unique<grpc::ClientContext>();
        context->set_deadline(ChronoDeadline(timeout));
        const absl::Time start = absl::Now();
        Watch w = OpenWatch(*stub, std::move(context));
        ++deadline_runs;
        if (w.open) {
          // Under ASan the snapshot may take the whole deadline; only
          // streams that got this far count as "mid-stream".
          int live = 0;
          v1::Event e;
          while (w.reader->Read(&e)) ++live;
          w.status = w.reader->Finish();
          if (live > 0) ++deadline_runs_with_events;
        }
        const absl::Duration took = absl::Now() - start - timeout;
        slowest_end = std::max(slowest_end, took);
        EXPECT_EQ(w.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED)
            << w.status.error_message();
        EXPECT_LT(took, absl::Seconds(5));
        break;
      }
      case 2: {  // A real sockctl killed with SIGKILL mid-stream.
        auto child = ChildProcess::Start(
            {SOCKCTL_PATH, "--agent", address, "watch", "--snapshot"});
        ASSERT_TRUE(child.ok()) << child.status();
        const absl::Time deadline = absl::Now() + kStepTimeout;
        // The snapshot lines come first; a line after them is a live event.
        bool live = false;
        for (int n = 0; n < 10'000 && !live; ++n) {
          auto line = (*child)->ReadLine(deadline);
          ASSERT_TRUE(line.ok()) << line.status();
          live = line->find("snapshot") == std::string::npos;
        }
        ASSERT_TRUE(live);
        auto status = (*child)->Stop(SIGKILL, absl::Now() + kStepTimeout);
        ASSERT_TRUE(status.ok()) << status.status();
        EXPECT_TRUE(WIFSIGNALED(*status) && WTERMSIG(*status) == SIGKILL)
            << *status;
        break;
      }
    }
  }
  EXPECT_GT(deadline_runs_with_events, 0)
      << "no deadline expired mid-stream in " << deadline_runs << " runs";
  RecordProperty("deadline_runs_with_events", deadline_runs_with_events);
  RecordProperty("slowest_end_ms",
                 static_cast<int>(absl::ToInt64Milliseconds(slowest_end)));
  RecordProperty("traffic_rounds", static_cast<int>(traffic.rounds()));

  // Every ended watch was unregistered: all slots open again at once (the
  // last unregistrations may still be on their way, hence the retry).
  std::vector<Watch> all;
  const bool all_open = WaitFor(
      [&] {
        all.clear();
        for (int n = 0; n < kMaxWatchers; ++n) {
          all.push_back(OpenWatch(*stub));
          if (!all.back().open) break;
        }
        if (all.back().open) return true;
        EXPECT_EQ(all.back().status.error_code(),
                  grpc::StatusCode::RESOURCE_EXHAUSTED)
            << all.back().status.error_message();
        for (Watch& w : all) {
          if (w.open) CancelWatch(w);
        }
        return false;
      },
      kStepTimeout);
  EXPECT_TRUE(all_open) << "a watcher slot stayed taken after its stream "
                           "ended: "
                        << all.back().status.error_message();
  for (Watch& w : all) {
    if (w.open) CancelWatch(w);
  }
  traffic.Stop();
  EXPECT_EQ(traffic.error(), "");

  // Still answering, promptly.
  grpc::health::v1::HealthCheckResponse health;
  ASSERT_EQ(HealthCheck(address, &health), grpc::StatusCode::OK);
  EXPECT_EQ(health.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  {
    v1::ListServersRequest request;
    v1::ListServersResponse response;
    auto context = ContextWithDeadline(std::chrono::seconds(2));
    grpc::Status status = stub->ListServers(context.get(), request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    ASSERT_EQ(response.servers_size(), 1);
    EXPECT_EQ(response.servers(0).id(), server.id());
  }
  {
    v1::GetHostInfoRequest request;
    v1::HostInfo response;
    auto context = ContextWithDeadline(std::chrono::seconds(2));
    grpc::Status status = stub->GetHostInfo(context.get(), request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(static_cast<int64_t>(response.pid()), (*agent)->pid());
    EXPECT_EQ(response.limits().max_watchers(),
              static_cast<uint32_t>(kMaxWatchers));
  }

  const absl::Duration took = StopAndExpectExitZero(**agent, absl::Seconds(10));
  RecordProperty("sigterm_to_exit_ms",
                 static_cast<int>(absl::ToInt64Milliseconds(took)));
}

TEST(WatchCancel, MaxWatchersIsResourceExhausted) {
  auto agent = AgentProcess::Start({"--max-watchers=2"});
  ASSERT_TRUE(agent.ok()) << agent.status();
  auto stub = v1::SocketAgent::NewStub(ChannelTo((*agent)->address()));
  Watch first = OpenWatch(*stub);
  ASSERT_TRUE(first.open) << first.status.error_message();
  Watch second = OpenWatch(*stub);
  ASSERT_TRUE(second.open) << second.status.error_message();

  Watch third = OpenWatch(*stub);
  ASSERT_FALSE(third.open);
  EXPECT_EQ(third.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(third.status.error_message().find("2"), std::string::npos)
      << third.status.error_message();
  EXPECT_NE(third.status.error_message().find("max_watchers"),
            std::string::npos)
      << third.status.error_message();

  // The refusal did not disturb the open ones: the second still gets events.
  const v1::Server server = StartLoopbackServer(*stub);
  v1::Event e;
  ASSERT_TRUE(second.reader->Read(&e));
  EXPECT_EQ(e.kind(), v1::EVENT_KIND_SERVER_STARTED);
  EXPECT_EQ(e.server_id(), server.id());

  EXPECT_EQ(CancelWatch(first).error_code(), grpc::StatusCode::CANCELLED);
  // The slot frees when the agent has finished the cancelled stream, which
  // may be just after the client saw CANCELLED.
  Watch replacement;
  ASSERT_TRUE(WaitFor(
      [&] {
        replacement = OpenWatch(*stub);
        if (replacement.open) return true;
        EXPECT_EQ(replacement.status.error_code(),
                  grpc::StatusCode::RESOURCE_EXHAUSTED)
            << replacement.status.error_message();
        return false;
      },
      kStepTimeout))
      << replacement.status.error_message();
  // And the limit still holds with the replacement in place.
  Watch over = OpenWatch(*stub);
  EXPECT_FALSE(over.open);
  EXPECT_EQ(over.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);

  EXPECT_EQ(CancelWatch(second).error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_EQ(CancelWatch(replacement).error_code(), grpc::StatusCode::CANCELLED);
  const absl::Duration took = StopAndExpectExitZero(**agent, absl::Seconds(10));
  RecordProperty("sigterm_to_exit_ms",
                 static_cast<int>(absl::ToInt64Milliseconds(took)));
}

TEST(WatchCancel, SigtermWithWatchersExitsZero) {
  auto agent = AgentProcess::Start();
  ASSERT_TRUE(agent.ok()) << agent.status();
  const std::string address = (*agent)->address();
  auto stub = v1::SocketAgent::NewStub(ChannelTo(address));
  const v1::Server server = StartLoopbackServer(*stub);

  constexpr int kWatchers = 5;
  struct Watcher {
    std::unique_ptr<grpc::ClientContext> context;
    std::thread thread;
    std::atomic<bool> subscribed{false};
    std::atomic<bool> ended{false};
    grpc::Status status;  // Written by the thread before `ended`.
    absl::Time ended_at;
  };
  std::vector<std::unique_ptr<Watcher>> watchers;
  for (int i = 0; i < kWatchers; ++i) {
    auto w = std::make_unique<Watcher>();
    // Only a safety net: the test expects the end well before it.
    w->context = ContextWithDeadline(std::chrono::seconds(60));
    // A channel each: separate clients, not one shared connection.
    w->thread = std::thread([w = w.get(), address] {
      auto own = v1::SocketAgent::NewStub(ChannelTo(address));
      v1::WatchRequest request;
      request.set_snapshot(true);
      auto reader = own->Watch(w->context.get(), request);
      v1::Event e;
      for (int n = 0; n < 1'000'000 && reader->Read(&e); ++n) {
        if (e.kind() == v1::EVENT_KIND_SNAPSHOT_END) w->subscribed.store(true);
      }
      w->status = reader->Finish();
      w->ended_at = absl::Now();
      w->ended.store(true);
    });
    watchers.push_back(std::move(w));
  }
  auto count = [&](auto member) {
    return std::count_if(watchers.begin(), watchers.end(),
                         [&](const auto& w) { return ((*w).*member).load(); });
  };
  ASSERT_TRUE(WaitFor([&] { return count(&Watcher::subscribed) == kWatchers; },
                      kStepTimeout))
      << count(&Watcher::subscribed) << " subscribed";
  // Events in flight when the signal comes.
  Fd client = TcpConnect(FirstAddress(server));
  ASSERT_TRUE(client.valid());
  ASSERT_TRUE(WriteAll(client.get(), "hello"));

  const absl::Time start = absl::Now();
  const absl::Duration took = StopAndExpectExitZero(**agent, absl::Seconds(15));
  const bool all_ended =
      WaitFor([&] { return count(&Watcher::ended) == kWatchers; },
              absl::Seconds(15) - (absl::Now() - start));
  EXPECT_TRUE(all_ended) << count(&Watcher::ended) << " of " << kWatchers
                         << " watch streams ended within 15 s of SIGTERM";
  if (!all_ended) {
    for (auto& w : watchers) w->context->TryCancel();  // Do not hang here.
  }
  absl::Duration slowest;
  for (auto& w : watchers) {
    w->thread.join();
    const grpc::StatusCode code = w->status.error_code();
    EXPECT_TRUE(code == grpc::StatusCode::OK ||
                code == grpc::StatusCode::CANCELLED ||
                code == grpc::StatusCode::UNAVAILABLE)
        << code << " " << w->status.error_message();
    slowest = std::max(slowest, w->ended_at - start);
  }
  RecordProperty("sigterm_to_exit_ms",
                 static_cast<int>(absl::ToInt64Milliseconds(took)));
  RecordProperty("sigterm_to_last_stream_end_ms",
                 static_cast<int>(absl::ToInt64Milliseconds(slowest)));
}

// After a client cancelled its Watch, nothing of that call holds the agent's
// shutdown: SIGTERM exits well within the grace. (This looked like an agent
// defect until the test client's idle-channel polling was made prompt; see
// kClientPollsOften in tests/support/grpc_client.h.)
TEST(WatchCancel, SigtermAfterCancelledWatchDoesNotWaitOutGrace) {
  auto agent = AgentProcess::Start({"--shutdown-grace=3s"});
  ASSERT_TRUE(agent.ok()) << agent.status();
  auto stub = v1::SocketAgent::NewStub(ChannelTo((*agent)->address()));
  Watch w = OpenWatch(*stub);
  ASSERT_TRUE(w.open) << w.status.error_message();
  EXPECT_EQ(CancelWatch(w).error_code(), grpc::StatusCode::CANCELLED);
  // Nothing else is in flight and the agent answers (MaxWatchers shows the
  // cancelled call's slot is reusable, i.e. the agent finished the call).
  ASSERT_TRUE(WaitFor(
      [&] {
        auto context = ContextWithDeadline(std::chrono::seconds(5));
        v1::GetHostInfoRequest request;
        v1::HostInfo response;
        return stub->GetHostInfo(context.get(), request, &response).ok();
      },
      kStepTimeout));
  const absl::Duration took = StopAndExpectExitZero(**agent, absl::Seconds(2));
  RecordProperty("sigterm_to_exit_ms",
                 static_cast<int>(absl::ToInt64Milliseconds(took)));
}

}  // namespace
}  // namespace sockagent::testing
