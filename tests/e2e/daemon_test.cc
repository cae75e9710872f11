// The real sockagentd process: start-up line, health, reflection, clean
// exits on signals, and refusals of bad command lines.
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "grpc/health/v1/health.grpc.pb.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "sockagent/v1/agent.grpc.pb.h"
#include "tests/support/agent_process.h"
#include "tests/support/grpc_client.h"

namespace sockagent::testing {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;

grpc::health::v1::HealthCheckResponse::ServingStatus Health(
    const std::string& address, const std::string& service) {
  auto stub = grpc::health::v1::Health::NewStub(ChannelTo(address));
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  auto context = ContextWithDeadline();
  grpc::Status status = stub->Check(context.get(), request, &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return response.status();
}

TEST(Daemon, PrintsRealAddressAndServesHealth) {
  auto agent = AgentProcess::Start();
  ASSERT_TRUE(agent.ok()) << agent.status();
  EXPECT_THAT((*agent)->address(), MatchesRegex("127\\.0\\.0\\.1:[0-9]+"));
  EXPECT_NE((*agent)->address(), "127.0.0.1:0");
  EXPECT_EQ(Health((*agent)->address(), ""),
            grpc::health::v1::HealthCheckResponse::SERVING);
  EXPECT_EQ(Health((*agent)->address(), "sockagent.v1.SocketAgent"),
            grpc::health::v1::HealthCheckResponse::SERVING);
}

TEST(Daemon, ReflectionListsTheService) {
  auto agent = AgentProcess::Start();
  ASSERT_TRUE(agent.ok()) << agent.status();
  auto stub = grpc::reflection::v1alpha::ServerReflection::NewStub(
      ChannelTo((*agent)->address()));
  auto context = ContextWithDeadline();
  auto stream = stub->ServerReflectionInfo(context.get());
  grpc::reflection::v1alpha::ServerReflectionRequest request;
  request.set_list_services("");
  ASSERT_TRUE(stream->Write(request));
  grpc::reflection::v1alpha::ServerReflectionResponse response;
  ASSERT_TRUE(stream->Read(&response));
  std::vector<std::string> names;
  for (const auto& s : response.list_services_response().service()) {
    names.push_back(s.name());
  }
  EXPECT_THAT(names, Contains("sockagent.v1.SocketAgent"));
  EXPECT_THAT(names, Contains("grpc.health.v1.Health"));
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
}

TEST(Daemon, ServesIpv6Loopback) {
  auto agent = AgentProcess::Start({"--listen=[::1]:0"});
  ASSERT_TRUE(agent.ok()) << agent.status();
  EXPECT_THAT((*agent)->address(), MatchesRegex("\\[::1\\]:[0-9]+"));
  EXPECT_EQ(Health((*agent)->address(), ""),
            grpc::health::v1::HealthCheckResponse::SERVING);
}

TEST(Daemon, ServesUnixSocket) {
  TempDir dir;
  const std::string path = dir.path() + "/agent.sock";
  auto agent = AgentProcess::Start({"--listen=unix:" + path});
  ASSERT_TRUE(agent.ok()) << agent.status();
  EXPECT_EQ((*agent)->address(), "unix:" + path);
  EXPECT_EQ(Health((*agent)->address(), ""),
            grpc::health::v1::HealthCheckResponse::SERVING);
}

TEST(Daemon, ExitsCleanlyOnSigtermAndSigint) {
  for (int sig : {SIGTERM, SIGINT}) {
    auto agent = AgentProcess::Start();
    ASSERT_TRUE(agent.ok()) << agent.status();
    kill((*agent)->pid(), sig);
    auto status = (*agent)->Stop();  // Re-sends SIGTERM; harmless.
    ASSERT_TRUE(status.ok()) << status.status();
    ASSERT_TRUE(WIFEXITED(*status)) << "signal " << sig;
    EXPECT_EQ(WEXITSTATUS(*status), 0) << (*agent)->Stderr();
  }
}

CommandResult RunDaemon(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {SOCKAGENTD_PATH};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv, "", absl::Seconds(30));
}

TEST(Daemon, RefusesNonLoopbackWithoutAuthentication) {
  CommandResult r = RunDaemon({"--listen=0.0.0.0:0"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("refusing to listen on 0.0.0.0:0"));
  EXPECT_THAT(r.err, HasSubstr("--insecure"));
  EXPECT_EQ(r.out, "");
}

TEST(Daemon, RejectsMalformedListenAddress) {
  CommandResult r = RunDaemon({"--listen=nonsense"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("expected HOST:PORT"));
  r = RunDaemon({"--listen", "127.0.0.1:99999"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("port must be a number"));
}

TEST(Daemon, RejectsUnknownFlagsAndArguments) {
  CommandResult r = RunDaemon({"--no-such-flag"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("no_such_flag"));
  r = RunDaemon({"stray"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("unexpected argument"));
}

TEST(Daemon, AcceptsDashedFlagNames) {
  auto agent = AgentProcess::Start({"--max-servers=7"});
  ASSERT_TRUE(agent.ok()) << agent.status();
  auto stub = v1::SocketAgent::NewStub(ChannelTo((*agent)->address()));
  auto context = ContextWithDeadline();
  v1::HostInfo info;
  ASSERT_TRUE(stub->GetHostInfo(context.get(), {}, &info).ok());
  EXPECT_EQ(info.limits().max_servers(), 7u);
}

TEST(Daemon, ReportsAddressInUse) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(fd, 1), 0);
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  const std::string listen_at =
      "--listen=127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  CommandResult r = RunDaemon({listen_at});
  close(fd);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("cannot listen on 127.0.0.1:"));
}

TEST(Daemon, SurvivesGarbageOnTheControlPort) {
  auto agent = AgentProcess::Start();
  ASSERT_TRUE(agent.ok()) << agent.status();
  const std::string& address = (*agent)->address();
  const int port = std::stoi(address.substr(address.rfind(':') + 1));
  for (const std::string& garbage :
       {std::string("GET / HTTP/1.1\r\n\r\n"), std::string(4096, '\xff'),
        std::string("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")}) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    ASSERT_EQ(send(fd, garbage.data(), garbage.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(garbage.size()));
    close(fd);
  }
  EXPECT_EQ(Health(address, ""),
            grpc::health::v1::HealthCheckResponse::SERVING);
}

}  // namespace
}  // namespace sockagent::testing
