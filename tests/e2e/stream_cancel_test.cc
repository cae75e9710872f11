// Ending Stream calls in every way a client can while bytes flow: client
// cancel, an expiring deadline, a SIGKILLed sockctl, and SIGTERM of the
// agent with streams attached. A real sockagentd (under ASan a leak or a
// use-after-free in the stream reactor makes it exit non-zero, so the test
// checks the exit status is exactly 0), plain POSIX peers.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "sockagent/v1/agent.grpc.pb.h"
#include "tests/support/agent_process.h"
#include "tests/support/agent_rpc.h"
#include "tests/support/grpc_client.h"
#include "tests/support/posix_peer.h"
#include "tests/support/subprocess.h"
#include "tests/support/wait.h"

namespace sockagent::testing {
namespace {

using StreamCall =
    grpc::ClientReaderWriter<v1::StreamRequest, v1::StreamResponse>;

constexpr absl::Duration kStepTimeout = absl::Seconds(20);

v1::StreamRequest OpenRequest(const v1::Server& server) {
  v1::StreamRequest first;
  auto* open = first.mutable_start()->mutable_open();
  open->mutable_remote()->set_host("127.0.0.1");
  open->mutable_remote()->set_port(server.local_addresses(0).port());
  open->mutable_labels()->insert({"test", "cancel"});
  return first;
}

// Open (or recently closed) connections with the test's label.
int OpenStreamConnections(v1::SocketAgent::Stub& stub) {
  v1::ListConnectionsRequest request;
  request.mutable_label_selector()->insert({"test", "cancel"});
  v1::ListConnectionsResponse response;
  auto context = ContextWithDeadline();
  if (!stub.ListConnections(context.get(), request, &response).ok()) {
    return -1;
  }
  return response.connections_size();
}

// Writes chunks and reads the echo until the call breaks.
void Pump(StreamCall* stream, int* round_trips) {
  const std::string chunk(16 << 10, 'c');
  v1::StreamRequest data;
  data.set_data(chunk);
  v1::StreamResponse reply;
  while (stream->Write(data) && stream->Read(&reply)) ++*round_trips;
}

TEST(StreamCancel, ManyCancelsNeitherLeakNorHang) {
  auto agent = AgentProcess::Start({"--shutdown-grace=2s"});
  ASSERT_TRUE(agent.ok()) << agent.status();
  const std::string address = (*agent)->address();
  auto stub = v1::SocketAgent::NewStub(ChannelTo(address));
  const v1::Server echo =
      StartLoopbackServer(*stub, [](v1::StartServerRequest& r) {
        r.mutable_behavior()->Clear();
        r.mutable_behavior()->mutable_echo();
      });
  const v1::Server hold = StartLoopbackServer(*stub);
  ASSERT_FALSE(echo.id().empty());

  constexpr int kIterations = 3 * 16;  // 16 of each kind.
  int deadline_runs_mid_stream = 0;
  absl::Duration slowest_end;
  const char* only = getenv("STREAM_CANCEL_ONLY");
  for (int i = 0; i < kIterations; ++i) {
    SCOPED_TRACE(absl::StrCat("iteration ", i));
    if (only != nullptr && i % 3 != atoi(only)) continue;
    switch (i % 3) {
      case 0: {  // Client cancel after some round trips.
        auto context = ContextWithDeadline(std::chrono::seconds(60));
        auto stream = stub->Stream(context.get());
        ASSERT_TRUE(stream->Write(OpenRequest(echo)));
        v1::StreamResponse reply;
        ASSERT_TRUE(stream->Read(&reply));
        ASSERT_TRUE(reply.has_connection());
        v1::StreamRequest data;
        data.set_data(std::string(1 + i * 97, 'x'));
        for (int n = 0; n < 1 + i % 4; ++n) {
          ASSERT_TRUE(stream->Write(data));
          ASSERT_TRUE(stream->Read(&reply));
        }
        const absl::Time start = absl::Now();
        context->TryCancel();
        while (stream->Read(&reply)) {
        }
        const grpc::Status status = stream->Finish();
        slowest_end = std::max(slowest_end, absl::Now() - start);
        EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED);
        break;
      }
      case 1: {  // A deadline of 50..149 ms expires while bytes flow.
        const auto timeout = std::chrono::milliseconds(50 + (i * 37) % 100);
        auto context = ContextWithDeadline(timeout);
        const absl::Time start = absl::Now();
        auto stream = stub->Stream(context.get());
        int round_trips = 0;
        if (stream->Write(OpenRequest(echo))) {
          v1::StreamResponse reply;
          if (stream->Read(&reply)) Pump(stream.get(), &round_trips);
        }
        const grpc::Status status = stream->Finish();
        if (round_trips > 0) ++deadline_runs_mid_stream;
        slowest_end = std::max(slowest_end,
                               absl::Now() - start - absl::FromChrono(timeout));
        EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED)
            << status.error_message();
        break;
      }
      case 2: {  // A real sockctl connect killed with SIGKILL mid-stream:
                 // stdin ended (FIN sent), the hold peer never closes.
        auto child = ChildProcess::Start(
            {"sh", "-c",
             absl::StrCat("exec ", SOCKCTL_PATH, " --agent ", address,
                          " connect --label test=cancel 127.0.0.1 ",
                          hold.local_addresses(0).port(), " < /dev/null")});
        ASSERT_TRUE(child.ok()) << child.status();
        ASSERT_TRUE(WaitFor(
            [&] {
              v1::ListConnectionsRequest request;
              request.mutable_label_selector()->insert({"test", "cancel"});
              v1::ListConnectionsResponse response;
              auto context = ContextWithDeadline();
              if (!stub->ListConnections(context.get(), request, &response)
                       .ok()) {
                return false;
              }
              for (const auto& c : response.connections()) {
                if (c.stream_attached() &&
                    c.state() == v1::CONNECTION_STATE_LOCAL_CLOSED) {
                  return true;
                }
              }
              return false;
            },
            kStepTimeout));
        auto status = (*child)->Stop(SIGKILL, absl::Now() + kStepTimeout);
        ASSERT_TRUE(status.ok()) << status.status();
        EXPECT_TRUE(WIFSIGNALED(*status) && WTERMSIG(*status) == SIGKILL);
        break;
      }
    }
    // Every stream's connection is closed once its caller is gone.
    ASSERT_TRUE(WaitFor([&] { return OpenStreamConnections(*stub) == 0; },
                        kStepTimeout))
        << OpenStreamConnections(*stub) << " still open";
  }
  EXPECT_LT(slowest_end, absl::Seconds(5));
  EXPECT_GT(deadline_runs_mid_stream, 0);
  RecordProperty("deadline_runs_mid_stream", deadline_runs_mid_stream);
  RecordProperty("slowest_end_ms",
                 static_cast<int>(absl::ToInt64Milliseconds(slowest_end)));

  auto exit_status = (*agent)->Stop();
  ASSERT_TRUE(exit_status.ok()) << exit_status.status();
  EXPECT_TRUE(WIFEXITED(*exit_status) && WEXITSTATUS(*exit_status) == 0)
      << *exit_status << "\n"
      << (*agent)->Stderr();
}

TEST(StreamCancel, SigtermWithStreamsAttachedEndsThemAndExitsZero) {
  // A grace far above what the test allows: ending the streams must not
  // wait for it.
  auto agent = AgentProcess::Start({"--shutdown-grace=60s"});
  ASSERT_TRUE(agent.ok()) << agent.status();
  auto stub = v1::SocketAgent::NewStub(ChannelTo((*agent)->address()));
  const v1::Server hold = StartLoopbackServer(*stub);
  struct Open {
    std::unique_ptr<grpc::ClientContext> context;
    std::unique_ptr<StreamCall> stream;
  };
  std::vector<Open> streams;
  for (int i = 0; i < 8; ++i) {
    Open o;
    o.context = ContextWithDeadline(std::chrono::seconds(120));
    o.stream = stub->Stream(o.context.get());
    ASSERT_TRUE(o.stream->Write(OpenRequest(hold)));
    v1::StreamResponse reply;
    ASSERT_TRUE(o.stream->Read(&reply));
    ASSERT_TRUE(reply.has_connection());
    streams.push_back(std::move(o));
  }
  const absl::Time start = absl::Now();
  ASSERT_EQ(::kill((*agent)->pid(), SIGTERM), 0);
  for (auto& o : streams) {
    v1::StreamResponse reply;
    while (o.stream->Read(&reply)) {
    }
    const grpc::Status status = o.stream->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE)
        << status.error_message();
  }
  auto exit_status = (*agent)->Stop();
  ASSERT_TRUE(exit_status.ok()) << exit_status.status();
  EXPECT_TRUE(WIFEXITED(*exit_status) && WEXITSTATUS(*exit_status) == 0)
      << *exit_status << "\n"
      << (*agent)->Stderr();
  EXPECT_LT(absl::Now() - start, absl::Seconds(15));
}

}  // namespace
}  // namespace sockagent::testing
