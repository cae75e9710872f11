// What every SocketAgent call does first (AgentService::Admit): the bearer
// token check comes before anything in the request is looked at, on all
// twelve RPCs, and a checked call then gets its own handler's answer.
// In-process service on a real engine, real gRPC on 127.0.0.1.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "tests/service/in_process_agent.h"

namespace sockagent {
namespace {

using ::testing::HasSubstr;

constexpr char kToken[] = "admission-test-token-0123456789";

// One call of each RPC, with a request its handler refuses (INVALID_ARGUMENT
// with `message`) where the RPC has such a request.
struct Call {
  const char* rpc;
  std::function<grpc::Status(v1::SocketAgent::Stub&, grpc::ClientContext*)> run;
  grpc::StatusCode refused_code = grpc::StatusCode::OK;
  const char* message = "";
};

template <typename Request, typename Response, typename Method>
std::function<grpc::Status(v1::SocketAgent::Stub&, grpc::ClientContext*)> Unary(
    Method method, Request request) {
  return [method, request](v1::SocketAgent::Stub& stub,
                           grpc::ClientContext* context) {
    Response response;
    return (stub.*method)(context, request, &response);
  };
}

std::vector<Call> EveryRpc() {
  using Stub = v1::SocketAgent::Stub;
  const auto invalid = grpc::StatusCode::INVALID_ARGUMENT;
  v1::StartServerRequest start_server;
  start_server.set_transport(static_cast<v1::Transport>(42));
  v1::ListServersRequest list_servers;
  list_servers.set_transport(static_cast<v1::Transport>(42));
  v1::ListConnectionsRequest list_connections;
  list_connections.add_states(static_cast<v1::ConnectionState>(99));
  v1::ReceiveRequest long_delimiter;
  long_delimiter.set_connection_id("conn-1");
  long_delimiter.set_delimiter(std::string(300, '\n'));
  v1::CloseConnectionRequest close;
  close.set_id("conn-1");
  close.set_mode(static_cast<v1::CloseMode>(42));
  v1::WatchRequest watch;
  watch.add_kinds(static_cast<v1::EventKind>(99));
  return {
      {"StartServer",
       Unary<v1::StartServerRequest, v1::StartServerResponse>(
           &Stub::StartServer, start_server),
       invalid, "unknown transport value 42"},
      {"StopServer",
       Unary<v1::StopServerRequest, v1::StopServerResponse>(&Stub::StopServer,
                                                            {}),
       invalid, "give an id or a non-empty label selector"},
      {"ListServers",
       Unary<v1::ListServersRequest, v1::ListServersResponse>(
           &Stub::ListServers, list_servers),
       invalid, "unknown transport value 42"},
      {"OpenClient",
       Unary<v1::OpenClientRequest, v1::OpenClientResponse>(&Stub::OpenClient,
                                                            {}),
       invalid},
      {"ListConnections",
       Unary<v1::ListConnectionsRequest, v1::ListConnectionsResponse>(
           &Stub::ListConnections, list_connections),
       invalid, "unknown connection state value 99"},
      {"Send", Unary<v1::SendRequest, v1::SendResponse>(&Stub::Send, {}),
       invalid, "connection_id is empty"},
      {"Receive",
       Unary<v1::ReceiveRequest, v1::ReceiveResponse>(&Stub::Receive, {}),
       invalid, "connection_id is empty"},
      {"Receive (long delimiter)",
       Unary<v1::ReceiveRequest, v1::ReceiveResponse>(&Stub::Receive,
                                                      long_delimiter),
       invalid, "delimiter is 300 bytes; at most 256"},
      {"CloseConnection",
       Unary<v1::CloseConnectionRequest, v1::CloseConnectionResponse>(
           &Stub::CloseConnection, close),
       invalid, "unknown close mode value 42"},
      {"Watch",
       [watch](Stub& stub, grpc::ClientContext* context) {
         auto reader = stub.Watch(context, watch);
         v1::Event event;
         while (reader->Read(&event)) {
         }
         return reader->Finish();
       },
       invalid, "watch: unknown event kind 99"},
      {"Stream",
       [](Stub& stub, grpc::ClientContext* context) {
         // The token is checked before the first message is read; with it,
         // a call that sends no StreamStart is refused.
         auto stream = stub.Stream(context);
         stream->WritesDone();
         v1::StreamResponse response;
         while (stream->Read(&response)) {
         }
         return stream->Finish();
       },
       invalid, "before sending its StreamStart"},
      {"Resolve",
       Unary<v1::ResolveRequest, v1::ResolveResponse>(&Stub::Resolve, {}),
       invalid},
      {"GetHostInfo",
       Unary<v1::GetHostInfoRequest, v1::HostInfo>(&Stub::GetHostInfo, {})},
  };
}

class AdmissionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    AgentServiceOptions options;
    options.bearer_token = kToken;
    ASSERT_TRUE(agent_.Start(options).ok());
  }

  grpc::Status Run(const Call& call, const char* authorization) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(20));
    if (authorization != nullptr) {
      context.AddMetadata("authorization", authorization);
    }
    return call.run(agent_.stub(), &context);
  }

  InProcessAgent agent_;
};

TEST_F(AdmissionTest, EveryRpcWithoutTokenIsUnauthenticated) {
  const std::vector<Call> calls = EveryRpc();
  ASSERT_EQ(calls.size(), 13u);  // Twelve RPCs, Receive twice.
  for (const Call& call : calls) {
    const grpc::Status status = Run(call, nullptr);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED)
        << call.rpc << ": " << status.error_message();
    EXPECT_THAT(status.error_message(), HasSubstr("missing bearer token"))
        << call.rpc;
  }
}

TEST_F(AdmissionTest, TokenIsCheckedBeforeTheRequest) {
  const std::string right = absl::StrCat("Bearer ", kToken);
  for (const Call& call : EveryRpc()) {
    const grpc::Status wrong = Run(call, "Bearer not-the-token-at-all-0000");
    EXPECT_EQ(wrong.error_code(), grpc::StatusCode::UNAUTHENTICATED)
        << call.rpc << ": " << wrong.error_message();
    EXPECT_THAT(wrong.error_message(), HasSubstr("wrong bearer token"))
        << call.rpc;
    const grpc::Status checked = Run(call, right.c_str());
    EXPECT_EQ(checked.error_code(), call.refused_code)
        << call.rpc << ": " << checked.error_message();
    EXPECT_THAT(checked.error_message(), HasSubstr(call.message)) << call.rpc;
  }
}

TEST_F(AdmissionTest, AdmittedCallsReachTheEngine) {
  const std::string right = absl::StrCat("Bearer ", kToken);
  grpc::ClientContext start_context;
  start_context.AddMetadata("authorization", right);
  v1::StartServerRequest start;
  start.set_transport(v1::TRANSPORT_TCP);
  start.mutable_bind()->set_host("127.0.0.1");
  start.mutable_bind()->set_port(0);
  start.mutable_behavior()->mutable_hold();
  v1::StartServerResponse started;
  ASSERT_TRUE(agent_.stub().StartServer(&start_context, start, &started).ok());
  ASSERT_GT(started.server().local_addresses_size(), 0);
  EXPECT_GT(started.server().local_addresses(0).port(), 0u);

  grpc::ClientContext stop_context;
  stop_context.AddMetadata("authorization", right);
  v1::StopServerRequest stop;
  stop.set_id(started.server().id());
  v1::StopServerResponse stopped;
  ASSERT_TRUE(agent_.stub().StopServer(&stop_context, stop, &stopped).ok());
  EXPECT_EQ(stopped.servers_stopped(), 1u);
  ASSERT_EQ(stopped.server_ids_size(), 1);
  EXPECT_EQ(stopped.server_ids(0), started.server().id());
  EXPECT_FALSE(stopped.truncated());

  grpc::ClientContext unknown_context;
  unknown_context.AddMetadata("authorization", right);
  stop.set_id("srv-999");
  const grpc::Status unknown =
      agent_.stub().StopServer(&unknown_context, stop, &stopped);
  EXPECT_EQ(unknown.error_code(), grpc::StatusCode::NOT_FOUND)
      << unknown.error_message();
}

}  // namespace
}  // namespace sockagent

namespace sockagent {
namespace {

TEST(WatchAdmission, OneWatchBeyondTheCapIsResourceExhausted) {
  InProcessAgent agent;
  AgentServiceOptions options;
  options.max_watchers = 1;
  ASSERT_TRUE(agent.Start(options).ok());
  grpc::ClientContext first_context;
  v1::WatchRequest snapshot;
  snapshot.set_snapshot(true);
  auto first = agent.stub().Watch(&first_context, snapshot);
  // The snapshot's end says the first watch holds its slot.
  v1::Event event;
  bool live = false;
  while (!live && first->Read(&event)) {
    live = event.kind() == v1::EVENT_KIND_SNAPSHOT_END;
  }
  ASSERT_TRUE(live);

  grpc::ClientContext second_context;
  second_context.set_deadline(std::chrono::system_clock::now() +
                              std::chrono::seconds(20));
  auto second = agent.stub().Watch(&second_context, v1::WatchRequest());
  while (second->Read(&event)) {
  }
  const grpc::Status refused = second->Finish();
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << refused.error_message();
  EXPECT_THAT(refused.error_message(),
              HasSubstr("watch: 1 watchers already (--max_watchers)"));
  first_context.TryCancel();
  (void)first->Finish();
}

}  // namespace
}  // namespace sockagent
