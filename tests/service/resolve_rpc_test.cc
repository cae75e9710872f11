// The Resolve and GetHostInfo RPCs served in-process over real gRPC on
// loopback, by a service on a real engine. Names come from this machine's
// /etc/hosts (localhost -> 127.0.0.1) or are numeric; the one negative
// lookup that may reach the machine's DNS server uses a name under
// .invalid, once.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <memory>

#include "service/agent_service.h"
#include "tests/service/in_process_agent.h"

namespace sockagent {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;

class ResolveRpcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    EngineOptions engine_options;
    engine_options.max_servers = 7;
    engine_options.closed_connections_kept = 9;
    AgentServiceOptions options;
    options.max_watchers = 5;
    ASSERT_TRUE(agent_.Start(options, engine_options).ok());
    stub_ = &agent_.stub();
  }

  grpc::Status Resolve(const v1::ResolveRequest& request,
                       v1::ResolveResponse* response) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(20));
    return stub_->Resolve(&context, request, response);
  }

  InProcessAgent agent_;
  v1::SocketAgent::Stub* stub_ = nullptr;
};

TEST_F(ResolveRpcTest, LocalhostWwwIsLoopbackPort80) {
  v1::ResolveRequest request;
  request.set_host("localhost");
  request.set_service("www");
  request.set_family(v1::FAMILY_IPV4);
  v1::ResolveResponse response;
  ASSERT_TRUE(Resolve(request, &response).ok());
  ASSERT_GT(response.entries_size(), 0);
  for (const auto& entry : response.entries()) {
    EXPECT_EQ(entry.family(), v1::FAMILY_IPV4);
    EXPECT_EQ(entry.address(), "127.0.0.1");
    EXPECT_EQ(entry.port(), 80u);
  }
  // /etc/services lists www for tcp only.
  EXPECT_EQ(response.entries(0).socket_type(), v1::SOCKET_TYPE_STREAM);
  EXPECT_EQ(response.entries(0).protocol_name(), "tcp");
}

TEST_F(ResolveRpcTest, NumericPortWithoutTypeFilterGivesEveryType) {
  v1::ResolveRequest request;
  request.set_host("127.0.0.1");
  request.set_service("8080");
  v1::ResolveResponse response;
  ASSERT_TRUE(Resolve(request, &response).ok());
  std::vector<int> types;
  for (const auto& e : response.entries()) types.push_back(e.socket_type());
  EXPECT_THAT(types, Contains(v1::SOCKET_TYPE_STREAM));
  EXPECT_THAT(types, Contains(v1::SOCKET_TYPE_DGRAM));
  EXPECT_THAT(types, Contains(v1::SOCKET_TYPE_RAW));
}

TEST_F(ResolveRpcTest, SocketTypeFilterAndProtocolName) {
  v1::ResolveRequest request;
  request.set_host("::1");
  request.set_service("22");
  request.set_numeric_host(true);
  request.set_socket_type(v1::SOCKET_TYPE_DGRAM);
  v1::ResolveResponse response;
  ASSERT_TRUE(Resolve(request, &response).ok());
  ASSERT_EQ(response.entries_size(), 1);
  EXPECT_EQ(response.entries(0).family(), v1::FAMILY_IPV6);
  EXPECT_EQ(response.entries(0).address(), "::1");
  EXPECT_EQ(response.entries(0).port(), 22u);
  EXPECT_EQ(response.entries(0).protocol_name(), "udp");
}

TEST_F(ResolveRpcTest, ReverseLookupOfLoopback) {
  v1::ResolveRequest request;
  request.set_host("127.0.0.1");
  request.set_service("80");
  request.set_reverse(true);
  v1::ResolveResponse response;
  ASSERT_TRUE(Resolve(request, &response).ok());
  EXPECT_EQ(response.reverse_host(), "localhost");
  EXPECT_EQ(response.reverse_service(), "http");
}

TEST_F(ResolveRpcTest, ErrorsMapToStatusCodes) {
  struct Case {
    std::function<void(v1::ResolveRequest*)> fill;
    grpc::StatusCode code;
    const char* message;
  } cases[] = {
      {[](auto* r) {}, grpc::StatusCode::INVALID_ARGUMENT, ""},
      {[](auto* r) {
         r->set_host("localhost");
         r->set_family(static_cast<v1::Family>(42));
       },
       grpc::StatusCode::INVALID_ARGUMENT, "unknown family value 42"},
      {[](auto* r) {
         r->set_host("localhost");
         r->set_family(v1::FAMILY_UNIX);
       },
       grpc::StatusCode::INVALID_ARGUMENT, ""},
      {[](auto* r) {
         r->set_host("localhost");
         r->set_socket_type(static_cast<v1::SocketType>(9));
       },
       grpc::StatusCode::INVALID_ARGUMENT, "unknown socket type value 9"},
      {[](auto* r) { r->set_host(std::string(10 * 1024, 'a')); },
       grpc::StatusCode::INVALID_ARGUMENT, ""},
      {[](auto* r) {
         r->set_host("localhost");
         r->set_numeric_host(true);
       },
       grpc::StatusCode::NOT_FOUND, "localhost"},
      {[](auto* r) {
         r->set_host("127.0.0.1");
         r->set_service("no-such-service-name");
       },
       grpc::StatusCode::NOT_FOUND, "no-such-service-name"},
      {[](auto* r) {
         r->set_host("not-an-address");
         r->set_reverse(true);
       },
       grpc::StatusCode::INVALID_ARGUMENT, ""},
  };
  for (const auto& c : cases) {
    v1::ResolveRequest request;
    c.fill(&request);
    v1::ResolveResponse response;
    grpc::Status status = Resolve(request, &response);
    EXPECT_EQ(status.error_code(), c.code) << request.ShortDebugString();
    EXPECT_THAT(status.error_message(), HasSubstr(c.message));
    EXPECT_FALSE(status.error_message().empty());
  }
}

TEST_F(ResolveRpcTest, UnknownNameIsNotFound) {
  // The only lookup in this file that may reach the machine's DNS server.
  v1::ResolveRequest request;
  request.set_host("sockagent-test.invalid");
  v1::ResolveResponse response;
  grpc::Status status = Resolve(request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND)
      << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("sockagent-test.invalid"));
}

TEST_F(ResolveRpcTest, HostInfoHasLoopbackAndAgentFacts) {
  grpc::ClientContext context;
  v1::HostInfo info;
  ASSERT_TRUE(
      stub_->GetHostInfo(&context, v1::GetHostInfoRequest(), &info).ok());
  char name[256] = {};
  gethostname(name, sizeof(name) - 1);
  EXPECT_EQ(info.hostname(), name);
  EXPECT_EQ(info.pid(), getpid());
  EXPECT_EQ(info.agent_version(), SOCKAGENT_VERSION);
  EXPECT_FALSE(info.os().empty());
  bool found_lo = false;
  for (const auto& interface : info.interfaces()) {
    if (interface.name() != "lo") continue;
    found_lo = true;
    EXPECT_THAT(interface.flags(), Contains("LOOPBACK"));
    EXPECT_THAT(interface.flags(), Contains("UP"));
    EXPECT_GT(interface.mtu(), 0u);
    std::vector<std::string> addresses;
    for (const auto& a : interface.addresses())
      addresses.push_back(a.address());
    EXPECT_THAT(addresses, Contains("127.0.0.1"));
  }
  EXPECT_TRUE(found_lo);
}

TEST_F(ResolveRpcTest, HostInfoReportsTheEngineLimits) {
  grpc::ClientContext context;
  v1::HostInfo info;
  ASSERT_TRUE(
      stub_->GetHostInfo(&context, v1::GetHostInfoRequest(), &info).ok());
  const EngineOptions defaults;
  EXPECT_EQ(info.limits().max_servers(), 7u);
  EXPECT_EQ(info.limits().closed_connections_kept(), 9u);
  EXPECT_EQ(info.limits().max_watchers(), 5u);
  EXPECT_EQ(info.limits().max_connections(), defaults.max_connections);
  EXPECT_EQ(info.limits().recv_buffer_bytes(), defaults.recv_buffer_bytes);
  EXPECT_EQ(info.limits().max_total_buffered_bytes(),
            defaults.max_total_buffered_bytes);
}

}  // namespace
}  // namespace sockagent
