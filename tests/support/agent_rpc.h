// Small helpers for end-to-end tests that drive a real agent over gRPC:
// start a loopback server, find where it listens, and read the agent
// process's memory.
#ifndef SOCKAGENT_TESTS_SUPPORT_AGENT_RPC_H_
#define SOCKAGENT_TESTS_SUPPORT_AGENT_RPC_H_

#include <gtest/gtest.h>
#include <sys/types.h>

#include <cstdint>
#include <fstream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "agent/types.h"
#include "sockagent/v1/agent.grpc.pb.h"
#include "tests/support/agent_process.h"
#include "tests/support/grpc_client.h"
#include "tests/support/posix_peer.h"

namespace sockagent::testing {

// A fixture base: one real agent process and a stub talking to it.
class AgentTestBase : public ::testing::Test {
 protected:
  // (Re)starts the agent with `args` (a TCP agent without a token gets
  // --insecure from AgentProcess::Start).
  void StartAgent(std::vector<std::string> args = {}) {
    stub_.reset();
    agent_.reset();
    auto agent = AgentProcess::Start(std::move(args));
    ASSERT_TRUE(agent.ok()) << agent.status();
    agent_ = *std::move(agent);
    stub_ = v1::SocketAgent::NewStub(ChannelTo(agent_->address()));
  }

  // The agent opens a TCP connection to a plain listener on 127.0.0.1;
  // returns its id and the accepted peer ("" and an invalid peer, after a
  // recorded failure, if either step failed).
  std::string OpenToPlainPeer(Fd* peer) {
    uint16_t port = 0;
    Fd listener = TcpListen(4, &port);
    EXPECT_TRUE(listener.valid());
    v1::OpenClientRequest request;
    request.mutable_remote()->set_host("127.0.0.1");
    request.mutable_remote()->set_port(port);
    v1::OpenClientResponse response;
    auto context = ContextWithDeadline();
    grpc::Status s = stub_->OpenClient(context.get(), request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    if (!s.ok()) return "";
    *peer = Accept(listener.get());
    EXPECT_TRUE(peer->valid());
    return response.connection().id();
  }

  // Send with the default deadline; the response is not needed.
  grpc::Status Send(const std::string& id, const std::string& data) {
    v1::SendRequest request;
    request.set_connection_id(id);
    request.set_data(data);
    v1::SendResponse response;
    auto context = ContextWithDeadline();
    return stub_->Send(context.get(), request, &response);
  }

  std::unique_ptr<AgentProcess> agent_;
  std::unique_ptr<v1::SocketAgent::Stub> stub_;
};

// A server on 127.0.0.1, port 0, with the hold behaviour unless `fill`
// changes the request.
template <typename Fill>
v1::Server StartLoopbackServer(v1::SocketAgent::Stub& stub, Fill fill) {
  v1::StartServerRequest request;
  request.set_transport(v1::TRANSPORT_TCP);
  request.mutable_bind()->set_host("127.0.0.1");
  request.mutable_behavior()->mutable_hold();
  fill(request);
  v1::StartServerResponse response;
  auto context = ContextWithDeadline();
  grpc::Status status = stub.StartServer(context.get(), request, &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return response.server();
}
inline v1::Server StartLoopbackServer(v1::SocketAgent::Stub& stub) {
  return StartLoopbackServer(stub, [](v1::StartServerRequest&) {});
}

// `d` as a proto Duration, for a request field.
inline void SetDuration(absl::Duration d, google::protobuf::Duration* out) {
  out->set_seconds(absl::ToInt64Seconds(d));
  out->set_nanos(static_cast<int32_t>(
      absl::ToInt64Nanoseconds(d - absl::Seconds(out->seconds()))));
}

// AddFault with `fault` as given; `out`: the fault as stored.
inline grpc::Status AddFault(v1::SocketAgent::Stub& stub,
                             const v1::Fault& fault, v1::Fault* out = nullptr) {
  v1::AddFaultRequest request;
  *request.mutable_fault() = fault;
  v1::AddFaultResponse response;
  auto context = ContextWithDeadline();
  grpc::Status s = stub.AddFault(context.get(), request, &response);
  if (out != nullptr) *out = response.fault();
  return s;
}

// RemoveFault by name.
inline grpc::Status RemoveFault(v1::SocketAgent::Stub& stub,
                                const std::string& name) {
  v1::RemoveFaultRequest request;
  request.set_name(name);
  v1::RemoveFaultResponse response;
  auto context = ContextWithDeadline();
  return stub.RemoveFault(context.get(), request, &response);
}

// The server's first bound address, for a plain peer to connect to.
inline SocketAddress FirstAddress(const v1::Server& server) {
  return Ip(server.local_addresses(0).ip(),
            static_cast<uint16_t>(server.local_addresses(0).port()));
}

// Resident set size of process `pid` in bytes (VmRSS), or -1.
inline int64_t ProcessRssBytes(pid_t pid) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) != 0) continue;
    std::string digits;
    for (char c : line) {
      if (c >= '0' && c <= '9') digits += c;
    }
    int64_t kib = 0;
    return absl::SimpleAtoi(digits, &kib) ? kib * 1024 : -1;
  }
  return -1;
}

}  // namespace sockagent::testing

#endif  // SOCKAGENT_TESTS_SUPPORT_AGENT_RPC_H_
