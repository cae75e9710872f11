#include "service/daemon_options.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace sockagent {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(ParseListenAddress, Ipv4WithPort) {
  auto a = ParseListenAddress("127.0.0.1:7878");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 7878);
  EXPECT_TRUE(a->loopback);
  EXPECT_EQ(a->GrpcTarget(), "127.0.0.1:7878");
  EXPECT_EQ(a->Display(4242), "127.0.0.1:4242");
}

TEST(ParseListenAddress, BracketedIpv6) {
  auto a = ParseListenAddress("[::1]:0");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->host, "::1");
  EXPECT_TRUE(a->loopback);
  EXPECT_EQ(a->Display(99), "[::1]:99");
}

TEST(ParseListenAddress, WildcardIsNotLoopback) {
  auto a = ParseListenAddress("0.0.0.0:7878");
  ASSERT_TRUE(a.ok());
  EXPECT_FALSE(a->loopback);
  auto b = ParseListenAddress("[::]:7878");
  ASSERT_TRUE(b.ok());
  EXPECT_FALSE(b->loopback);
}

TEST(ParseListenAddress, WholeLoopbackRangeIsLoopback) {
  auto a = ParseListenAddress("127.3.4.5:1");
  ASSERT_TRUE(a.ok());
  EXPECT_TRUE(a->loopback);
}

TEST(ParseListenAddress, UnixPath) {
  auto a = ParseListenAddress("unix:/run/sockagent.sock");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->unix_path, "/run/sockagent.sock");
  EXPECT_TRUE(a->loopback);
  EXPECT_EQ(a->GrpcTarget(), "unix:/run/sockagent.sock");
}

TEST(ParseListenAddress, RejectsMalformedAddressesWithReason) {
  struct Case {
    std::string text;
    const char* why;
  } cases[] = {
      {"127.0.0.1", "expected HOST:PORT"},
      {"127.0.0.1:", "port must be a number"},
      {"127.0.0.1:65536", "port must be a number"},
      {"127.0.0.1:-1", "port must be a number"},
      {"127.0.0.1:http", "port must be a number"},
      {":7878", "empty host"},
      {"::1:7878", "brackets"},
      {"[::1:7878", "unbalanced"},
      {"[127.0.0.1]:1", "not an IPv6 address"},
      {"example.com:7878", "IP address or localhost"},
      {"unix:relative.sock", "absolute"},
      {"unix:/" + std::string(200, 'x'), "longer than"},
  };
  for (const auto& c : cases) {
    auto a = ParseListenAddress(c.text);
    ASSERT_FALSE(a.ok()) << c.text;
    EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(a.status().message(), HasSubstr(c.why)) << c.text;
  }
}

TEST(NormalizeFlagNames, DashesBecomeUnderscoresInNamesOnly) {
  std::string a0 = "sockagentd", a1 = "--max-servers=3",
              a2 = "--listen=unix:/tmp/a-b", a3 = "--", a4 = "--not-a-flag";
  char* argv[] = {a0.data(), a1.data(), a2.data(), a3.data(), a4.data()};
  EXPECT_THAT(NormalizeFlagNames(5, argv),
              ElementsAre("sockagentd", "--max_servers=3",
                          "--listen=unix:/tmp/a-b", "--", "--not-a-flag"));
}

}  // namespace
}  // namespace sockagent
