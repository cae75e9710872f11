// Resolve through the real daemon running inside network namespaces the
// test creates, so every name comes from a hosts file the test controls and
// no lookup reaches the machine's DNS server:
//   - "dns" namespace: resolv.conf points at 127.0.0.1 inside it, where a
//     fake DNS server answers NXDOMAIN to everything (NOT_FOUND path);
//   - "nodns" namespace: resolv.conf points at 127.0.0.1 where nothing
//     listens (temporary failure -> UNAVAILABLE path);
//   - "slowdns" namespace: a DNS server that never answers, so a lookup
//     hangs until the resolver's timeout (the call's deadline must win).
// The daemons listen on UNIX sockets in a temp dir, reachable from the test
// outside the namespaces. The real sockctl checks table and --json output.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "sockagent/v1/agent.grpc.pb.h"
#include "tests/support/agent_process.h"
#include "tests/support/grpc_client.h"
#include "tests/support/netns.h"

namespace sockagent::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

constexpr char kHosts[] =
    "127.0.0.1 localhost\n"
    "::1 localhost ip6-localhost\n"
    "192.0.2.10 web.test web\n"
    "2001:db8::10 web.test web\n"
    "192.0.2.20 v4only.test\n"
    "2001:db8::30 v6only.test\n";
constexpr char kResolvConf[] =
    "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n";

struct NamespacedAgent {
  std::unique_ptr<TestNetns> netns;
  std::unique_ptr<ChildProcess> dns;  // Only in the "dns" namespace.
  std::unique_ptr<AgentProcess> agent;
};

class ResolveNetnsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    skip_reason_ = new std::string();
    auto dns = Make("sa-dns", "answer");
    auto nodns = Make("sa-nodns", "");
    auto slowdns = Make("sa-slowdns", "silent");
    for (auto* made : {&dns, &nodns, &slowdns}) {
      if (!made->ok()) {
        *skip_reason_ = std::string(made->status().message());
        return;
      }
    }
    dns_ = dns->release();
    nodns_ = nodns->release();
    slowdns_ = slowdns->release();
  }

  static void TearDownTestSuite() {
    delete dns_;
    delete nodns_;
    delete slowdns_;
    delete dir_;
    delete skip_reason_;
    dns_ = nodns_ = slowdns_ = nullptr;
  }

  // `dns_mode`: "" no DNS server, "answer" NXDOMAIN to all, "silent" never
  // answers.
  static absl::StatusOr<std::unique_ptr<NamespacedAgent>> Make(
      const std::string& prefix, const std::string& dns_mode) {
    auto out = std::make_unique<NamespacedAgent>();
    auto netns = TestNetns::Create(
        prefix, kHosts,
        dns_mode == "silent"
            ? "nameserver 127.0.0.1\noptions timeout:5 attempts:2\n"
            : kResolvConf);
    if (!netns.ok()) return netns.status();
    out->netns = *std::move(netns);
    if (!dns_mode.empty()) {
      auto dns = ChildProcess::Start(out->netns->Exec(
          {"python3",
           std::string(SOCKAGENT_SOURCE_DIR) + "/tests/support/fake_dns.py",
           "127.0.0.1", dns_mode == "silent" ? "--silent" : "--answer"}));
      if (!dns.ok()) return dns.status();
      auto ready = (*dns)->ReadLine(absl::Now() + absl::Seconds(20));
      if (!ready.ok()) return ready.status();
      out->dns = *std::move(dns);
    }
    auto agent = AgentProcess::Start(
        {"--listen=unix:" + dir_->path() + "/" + prefix + ".sock"},
        out->netns->name());
    if (!agent.ok()) return agent.status();
    out->agent = *std::move(agent);
    return out;
  }

  void SetUp() override {
    if (dns_ == nullptr) GTEST_SKIP() << "SKIPPED: " << *skip_reason_;
  }

  static grpc::Status Resolve(NamespacedAgent* where,
                              const v1::ResolveRequest& request,
                              v1::ResolveResponse* response) {
    auto stub = v1::SocketAgent::NewStub(ChannelTo(where->agent->address()));
    auto context = ContextWithDeadline();
    return stub->Resolve(context.get(), request, response);
  }

  static std::vector<std::string> Addresses(
      const v1::ResolveResponse& response) {
    std::vector<std::string> out;
    for (const auto& e : response.entries()) {
      out.push_back(e.address() + " " + std::to_string(e.port()));
    }
    return out;
  }

  static TempDir* dir_;
  static std::string* skip_reason_;
  static NamespacedAgent* dns_;
  static NamespacedAgent* nodns_;
  static NamespacedAgent* slowdns_;
};

TempDir* ResolveNetnsTest::dir_ = nullptr;
std::string* ResolveNetnsTest::skip_reason_ = nullptr;
NamespacedAgent* ResolveNetnsTest::dns_ = nullptr;
NamespacedAgent* ResolveNetnsTest::nodns_ = nullptr;
NamespacedAgent* ResolveNetnsTest::slowdns_ = nullptr;

TEST_F(ResolveNetnsTest, NameWithBothFamiliesAndWwwIsPort80) {
  v1::ResolveRequest request;
  request.set_host("web.test");
  request.set_service("www");
  v1::ResolveResponse response;
  grpc::Status status = Resolve(dns_, request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_THAT(Addresses(response),
              UnorderedElementsAre("192.0.2.10 80", "2001:db8::10 80"));
}

TEST_F(ResolveNetnsTest, FamilyFilter) {
  v1::ResolveRequest request;
  request.set_host("web.test");
  request.set_service("443");
  request.set_socket_type(v1::SOCKET_TYPE_STREAM);
  request.set_family(v1::FAMILY_IPV6);
  v1::ResolveResponse response;
  ASSERT_TRUE(Resolve(dns_, request, &response).ok());
  EXPECT_THAT(Addresses(response), UnorderedElementsAre("2001:db8::10 443"));
  request.set_family(v1::FAMILY_IPV4);
  response.Clear();
  ASSERT_TRUE(Resolve(dns_, request, &response).ok());
  EXPECT_THAT(Addresses(response), UnorderedElementsAre("192.0.2.10 443"));
}

TEST_F(ResolveNetnsTest, CanonicalNameFromHostsFile) {
  v1::ResolveRequest request;
  request.set_host("web");  // An alias of web.test.
  request.set_canonical_name(true);
  request.set_family(v1::FAMILY_IPV4);
  request.set_socket_type(v1::SOCKET_TYPE_STREAM);
  v1::ResolveResponse response;
  ASSERT_TRUE(Resolve(dns_, request, &response).ok());
  ASSERT_GT(response.entries_size(), 0);
  EXPECT_EQ(response.entries(0).canonical_name(), "web.test");
}

TEST_F(ResolveNetnsTest, ReverseLookupOfBothFamilies) {
  for (const char* address : {"192.0.2.10", "2001:db8::10"}) {
    v1::ResolveRequest request;
    request.set_host(address);
    request.set_service("80");
    request.set_reverse(true);
    v1::ResolveResponse response;
    ASSERT_TRUE(Resolve(dns_, request, &response).ok()) << address;
    EXPECT_EQ(response.reverse_host(), "web.test");
    EXPECT_EQ(response.reverse_service(), "http");
  }
}

TEST_F(ResolveNetnsTest, UnknownNameIsNotFound) {
  v1::ResolveRequest request;
  request.set_host("nosuch.test");
  v1::ResolveResponse response;
  grpc::Status status = Resolve(dns_, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND)
      << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("nosuch.test"));
}

TEST_F(ResolveNetnsTest, ReverseWithNameRequiredAndNoNameIsNotFound) {
  v1::ResolveRequest request;
  request.set_host("192.0.2.99");
  request.set_reverse(true);
  request.set_name_required(true);
  v1::ResolveResponse response;
  grpc::Status status = Resolve(dns_, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND)
      << status.error_message();
}

TEST_F(ResolveNetnsTest, DeadResolverIsUnavailable) {
  v1::ResolveRequest request;
  request.set_host("nosuch.test");
  v1::ResolveResponse response;
  grpc::Status status = Resolve(nodns_, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("nosuch.test"));
  // Names in the hosts file still resolve there.
  request.set_host("v6only.test");
  response.Clear();
  ASSERT_TRUE(Resolve(nodns_, request, &response).ok());
}

TEST_F(ResolveNetnsTest, HangingResolverIsCutByTheCallsDeadline) {
  v1::ResolveRequest request;
  request.set_host("hangs.test");
  v1::ResolveResponse response;
  auto stub = v1::SocketAgent::NewStub(ChannelTo(slowdns_->agent->address()));
  auto context = ContextWithDeadline(std::chrono::milliseconds(300));
  const absl::Time start = absl::Now();
  grpc::Status status = stub->Resolve(context.get(), request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED)
      << status.error_message();
  // The resolver would wait 10 s (timeout:5 attempts:2).
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
  // The agent still answers, also lookups the hosts file can answer.
  request.set_host("web.test");
  request.set_family(v1::FAMILY_IPV4);
  v1::ResolveResponse again;
  auto context2 = ContextWithDeadline();
  EXPECT_TRUE(stub->Resolve(context2.get(), request, &again).ok());
}

TEST_F(ResolveNetnsTest, SockctlPrintsTableAndJson) {
  CommandResult table =
      RunSockctl(dns_->agent->address(), {"resolve", "web.test", "www"});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_THAT(table.out, HasSubstr("ADDRESS"));
  EXPECT_THAT(table.out, HasSubstr("AF_INET6"));
  EXPECT_THAT(table.out, HasSubstr("2001:db8::10"));
  EXPECT_THAT(table.out, HasSubstr("192.0.2.10"));
  EXPECT_THAT(table.out, HasSubstr("SOCK_STREAM"));

  CommandResult json = RunSockctl(dns_->agent->address(),
                                  {"--json", "resolve", "web.test", "www"});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  EXPECT_THAT(json.out, HasSubstr("\"address\":\"192.0.2.10\""));
  EXPECT_THAT(json.out, HasSubstr("\"port\":80"));
}

TEST_F(ResolveNetnsTest, SockctlExitCodesForResolverErrors) {
  CommandResult missing =
      RunSockctl(dns_->agent->address(), {"resolve", "nosuch.test"});
  EXPECT_EQ(missing.exit_code, 15);  // 10 + NOT_FOUND.
  EXPECT_THAT(missing.err, HasSubstr("NOT_FOUND"));
  CommandResult down =
      RunSockctl(nodns_->agent->address(), {"resolve", "nosuch.test"});
  EXPECT_EQ(down.exit_code, 24);  // 10 + UNAVAILABLE.
  EXPECT_THAT(down.err, HasSubstr("UNAVAILABLE"));
}

TEST_F(ResolveNetnsTest, SockctlReverse) {
  CommandResult r =
      RunSockctl(dns_->agent->address(), {"resolve", "-r", "192.0.2.10"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("web.test"));
}

}  // namespace
}  // namespace sockagent::testing
