// The --allow-* policy flags through the real sockagentd, driven by gRPC
// and by the real sockctl: refusals are PERMISSION_DENIED naming the flag,
// nothing of a refused call happens (a plain listener sees no connection),
// and what the policy allows still works.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "sockagent/v1/agent.grpc.pb.h"
#include "tests/support/agent_process.h"
#include "tests/support/agent_rpc.h"
#include "tests/support/grpc_client.h"
#include "tests/support/posix_peer.h"
#include "tests/support/subprocess.h"
#include "tests/support/wait.h"

namespace sockagent::testing {
namespace {

using ::testing::HasSubstr;

constexpr int kExitPermissionDenied = 10 + 7;

// Whether a plain listener (non-blocking) has a connection waiting.
bool HasPendingConnection(const Fd& listener) {
  fcntl(listener.get(), F_SETFL, O_NONBLOCK);
  Fd accepted(::accept(listener.get(), nullptr, nullptr));
  return accepted.valid();
}

class PolicyE2e : public AgentTestBase {
 protected:
  grpc::Status Open(const std::string& host, uint16_t port,
                    v1::OpenClientResponse* response) {
    v1::OpenClientRequest request;
    request.mutable_remote()->set_host(host);
    request.mutable_remote()->set_port(port);
    auto context = ContextWithDeadline();
    return stub_->OpenClient(context.get(), request, response);
  }
};

TEST_F(PolicyE2e, ForbiddenDestinationIsRefusedAndNeverDialled) {
  uint16_t allowed_port = 0;
  uint16_t forbidden_port = 0;
  Fd allowed = TcpListen(16, &allowed_port);
  Fd forbidden = TcpListen(16, &forbidden_port);
  ASSERT_TRUE(allowed.valid() && forbidden.valid());
  StartAgent({absl::StrCat("--allow-dest=127.0.0.1:", allowed_port,
                           ",[::1/128]:", allowed_port)});

  v1::OpenClientResponse response;
  grpc::Status status = Open("127.0.0.1", forbidden_port, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(status.error_message(),
            absl::StrCat("connect 127.0.0.1:", forbidden_port,
                         ": destination 127.0.0.1:", forbidden_port,
                         " is not allowed by --allow-dest"));
  // Another loopback address, same port: not in 127.0.0.1/32.
  status = Open("127.0.0.2", allowed_port, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_FALSE(HasPendingConnection(forbidden));

  // The real CLI says the same, with exit code 10 + PERMISSION_DENIED.
  CommandResult cli = RunSockctl(
      agent_->address(),
      {"client", "open", "127.0.0.1", std::to_string(forbidden_port)});
  EXPECT_EQ(cli.exit_code, kExitPermissionDenied) << cli.err;
  EXPECT_THAT(cli.err, HasSubstr("PERMISSION_DENIED"));
  EXPECT_THAT(cli.err, HasSubstr("is not allowed by --allow-dest"));
  EXPECT_FALSE(HasPendingConnection(forbidden));
  // And the agent logs each refusal, naming the method and the rule.
  std::string log;
  EXPECT_TRUE(WaitFor([&] {
    log += agent_->Stderr();
    return log.find("event=policy_refusal") != std::string::npos &&
           log.find("OpenClient") != std::string::npos &&
           log.find("--allow-dest") != std::string::npos;
  })) << log;

  // The allowed destination works, and carries data.
  status = Open("127.0.0.1", allowed_port, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  fcntl(allowed.get(), F_SETFL, 0);
  Fd peer = Accept(allowed.get());
  ASSERT_TRUE(peer.valid());
  v1::SendRequest send;
  send.set_connection_id(response.connection().id());
  send.set_data("through");
  v1::SendResponse sent;
  auto context = ContextWithDeadline();
  ASSERT_TRUE(stub_->Send(context.get(), send, &sent).ok());
  EXPECT_EQ(ReadExactly(peer.get(), 7), "through");
}

TEST_F(PolicyE2e, BindPortsAndHosts) {
  StartAgent(
      {"--allow-bind-ports=20000-20100", "--allow-bind-hosts=127.0.0.0/8"});
  // Port 0 is not in the list (no "ephemeral").
  CommandResult r = RunSockctl(agent_->address(), {"server", "start"});
  EXPECT_EQ(r.exit_code, kExitPermissionDenied) << r.err;
  EXPECT_THAT(r.err, HasSubstr("bind port 0 (pick a free port) is not allowed "
                               "by --allow-bind-ports (allowed: 20000-20100)"));
  r = RunSockctl(agent_->address(), {"server", "start", "--port", "80"});
  EXPECT_EQ(r.exit_code, kExitPermissionDenied) << r.err;
  // Every address (0.0.0.0 and ::) is outside 127.0.0.0/8.
  r = RunSockctl(agent_->address(),
                 {"server", "start", "--any", "--port", "20050"});
  EXPECT_EQ(r.exit_code, kExitPermissionDenied) << r.err;
  EXPECT_THAT(r.err, HasSubstr("bind address 0.0.0.0 is not allowed by "
                               "--allow-bind-hosts"));
  // Nothing was started by the refused calls.
  r = RunSockctl(agent_->address(), {"--json", "server", "list", "--all"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr("srv-")));
  // An allowed port in the range binds (try a few: one may be in use).
  bool started = false;
  for (int port = 20000; port <= 20100 && !started; port += 7) {
    r = RunSockctl(agent_->address(), {"server", "start", "-q", "--echo",
                                       "--port", std::to_string(port)});
    started = r.exit_code == 0;
    if (started) {
      Fd c = TcpConnect(Ip("127.0.0.1", static_cast<uint16_t>(port)));
      ASSERT_TRUE(WriteAll(c.get(), "echo?"));
      EXPECT_EQ(ReadExactly(c.get(), 5), "echo?");
    }
  }
  EXPECT_TRUE(started) << r.err;
}

TEST_F(PolicyE2e, UnixPathsOutsideThePrefix) {
  TempDir dir;
  StartAgent({"--allow-unix-paths=" + dir.path() + "/allowed/"});
  CommandResult r = RunSockctl(
      agent_->address(), {"server", "start", "--unix", dir.path() + "/x.sock"});
  EXPECT_EQ(r.exit_code, kExitPermissionDenied) << r.err;
  EXPECT_THAT(r.err, HasSubstr("is not allowed by --allow-unix-paths"));
}

TEST_F(PolicyE2e, NoNameLookupsRefusesNamesEverywhere) {
  StartAgent({"--no-name-lookups"});
  v1::ResolveRequest request;
  request.set_host("localhost");
  v1::ResolveResponse response;
  auto context = ContextWithDeadline();
  grpc::Status status = stub_->Resolve(context.get(), request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(status.error_message(), HasSubstr("--no-name-lookups"));
  v1::OpenClientResponse opened;
  status = Open("localhost", 9, &opened);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  // Reverse lookups answer numerically, never through DNS.
  request.set_host("127.0.0.1");
  request.set_reverse(true);
  auto context2 = ContextWithDeadline();
  status = stub_->Resolve(context2.get(), request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.reverse_host(), "127.0.0.1");
}

TEST_F(PolicyE2e, StreamOpenGetsTheSameCheck) {
  uint16_t port = 0;
  Fd listener = TcpListen(4, &port);
  StartAgent({"--allow-dest=10.0.0.0/8"});
  auto context = ContextWithDeadline();
  auto stream = stub_->Stream(context.get());
  v1::StreamRequest start;
  start.mutable_start()->mutable_open()->mutable_remote()->set_host(
      "127.0.0.1");
  start.mutable_start()->mutable_open()->mutable_remote()->set_port(port);
  stream->Write(start);
  stream->WritesDone();
  v1::StreamResponse response;
  while (stream->Read(&response)) {
  }
  grpc::Status status = stream->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED)
      << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("--allow-dest"));
  EXPECT_FALSE(HasPendingConnection(listener));
}

TEST(PolicyFlags, MalformedPolicyStopsTheDaemonWithTheReason) {
  for (const auto& [flag, why] :
       std::vector<std::pair<std::string, std::string>>{
           {"--allow-dest=10.1.2.3/8", "--allow-dest: '10.1.2.3/8' has bits"},
           {"--allow-bind-ports=90-80", "--allow-bind-ports: '90-80'"},
           {"--allow-bind-hosts=localhost", "--allow-bind-hosts: 'localhost'"},
           {"--allow-unix-paths=relative/", "--allow-unix-paths: 'relative/'"},
       }) {
    CommandResult r = RunCommand(
        {SOCKAGENTD_PATH, "--listen=127.0.0.1:0", "--insecure", flag});
    EXPECT_EQ(r.exit_code, 1) << flag;
    EXPECT_THAT(r.err, HasSubstr(why)) << flag;
  }
}

}  // namespace
}  // namespace sockagent::testing
