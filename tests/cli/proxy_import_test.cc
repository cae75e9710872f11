// `sockctl proxy`'s parsers: upstream words and toxiproxy config files become
// the right StartServer requests, and every mistake names what is wrong.
#include "cli/proxy_import.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "cli/args.h"

namespace sockctl {
namespace {

using ::testing::HasSubstr;

TEST(ParseProxyUpstream, HostPortV6AndUnix) {
  sockagent::v1::ProxyBehavior p;
  ASSERT_TRUE(ParseProxyUpstream("db.internal:5432", &p).ok());
  EXPECT_EQ(p.upstream().host(), "db.internal");
  EXPECT_EQ(p.upstream().port(), 5432u);
  sockagent::v1::ProxyBehavior six;
  ASSERT_TRUE(ParseProxyUpstream("[::1]:53", &six).ok());
  EXPECT_EQ(six.upstream().host(), "::1");
  sockagent::v1::ProxyBehavior unix_path;
  ASSERT_TRUE(ParseProxyUpstream("unix:/run/x.sock", &unix_path).ok());
  EXPECT_EQ(unix_path.transport(), sockagent::v1::TRANSPORT_UNIX);
  EXPECT_EQ(unix_path.upstream().unix_path(), "/run/x.sock");
}

TEST(ParseProxyUpstream, RejectsMissingPortHostOrPath) {
  for (const char* bad : {"127.0.0.1", ":80", "127.0.0.1:0",
                          "unix:", "127.0.0.1:99999", "[::1"}) {
    sockagent::v1::ProxyBehavior p;
    EXPECT_FALSE(ParseProxyUpstream(bad, &p).ok()) << bad;
  }
}

// Parsing only: nothing here is dialled.
TEST(ToxiproxyRequests, EnabledProxiesWithNameLabel) {
  auto requests = ToxiproxyRequests(
      R"([{"name":"redis","listen":"127.0.0.1:26379","upstream":"localhost:6379","enabled":true,"toxics":[]},
          {"name":"pg","listen":"[::1]:25432","upstream":"198.18.0.5:5432"},
          {"name":"off","listen":":1","upstream":"a:1","enabled":false}])",
      {"env=ci"});
  ASSERT_TRUE(requests.ok()) << requests.status();
  ASSERT_EQ(requests->size(), 2u);
  const auto& redis = (*requests)[0];
  EXPECT_EQ(redis.bind().host(), "127.0.0.1");
  EXPECT_EQ(redis.bind().port(), 26379u);
  EXPECT_EQ(redis.behavior().proxy().upstream().host(), "localhost");
  EXPECT_EQ(redis.labels().at("toxiproxy"), "redis");
  EXPECT_EQ(redis.labels().at("env"), "ci");
  EXPECT_EQ((*requests)[1].bind().host(), "::1");
}

TEST(ToxiproxyRequests, MistakesNameTheProxy) {
  EXPECT_THAT(ToxiproxyRequests("{}", {}).status().message(),
              HasSubstr("not a toxiproxy config file"));
  EXPECT_THAT(ToxiproxyRequests(R"([{"name":"a","listen":"127.0.0.1:1"}])", {})
                  .status()
                  .message(),
              HasSubstr("proxy 1 (a): the upstream is missing"));
  EXPECT_THAT(ToxiproxyRequests(R"([{"listen":"1:1","upstream":"a:1"}])", {})
                  .status()
                  .message(),
              HasSubstr("name is missing"));
  EXPECT_THAT(ToxiproxyRequests(
                  R"([{"name":"b","listen":"nope","upstream":"a:1"}])", {})
                  .status()
                  .message(),
              HasSubstr("proxy 1 (b): invalid listen address"));
  EXPECT_TRUE(ToxiproxyRequests("[]", {})->empty());
}

}  // namespace
}  // namespace sockctl
