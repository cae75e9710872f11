// The --allow-* policy: its parsers and matchers, and the engine applying it
// to real binds and connects on loopback (refusals name the flag; allowed
// traffic still flows).
#include "agent/policy.h"

#include <fcntl.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "agent/address.h"
#include "agent/resolver.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/agent/engine_test_util.h"
#include "tests/support/agent_process.h"

namespace sockagent::testing {
namespace {

using ::testing::HasSubstr;

TEST(PolicyParse, PortRangesAcceptPortsRangesAndEphemeral) {
  absl::StatusOr<std::vector<PortRange>> r =
      ParsePortRanges(" 1024-65535, 80 ,ephemeral");
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->size(), 3u);
  EXPECT_EQ((*r)[0].first, 1024);
  EXPECT_EQ((*r)[0].last, 65535);
  EXPECT_EQ((*r)[1].first, 80);
  EXPECT_EQ((*r)[1].last, 80);
  EXPECT_EQ((*r)[2].first, 0);
  EXPECT_TRUE(ParsePortRanges("none")->empty());
}

TEST(PolicyParse, PortRangesRejectNonsenseNamingTheItem) {
  for (const char* bad : {"65536", "-1", "80-", "-80", "90-80", "http", "1e3",
                          "", ",", "0x50", "99999999999999999999"}) {
    absl::StatusOr<std::vector<PortRange>> r = ParsePortRanges(bad);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_THAT(ParsePortRanges("80,90-80").status().message(),
              HasSubstr("'90-80'"));
}

TEST(PolicyParse, PrefixesRejectHostBitsAndBadLengths) {
  EXPECT_TRUE(ParseIpPrefixes("127.0.0.0/8,::1,10.1.2.3,fd00::/8").ok());
  for (const char* bad : {"10.1.2.3/8", "10.0.0.0/33", "::1/129", "10.0.0.0/",
                          "localhost", "10.0.0.0/8x", "fe80::1%lo/128"}) {
    EXPECT_EQ(ParseIpPrefixes(bad).status().code(),
              absl::StatusCode::kInvalidArgument)
        << bad;
  }
  EXPECT_THAT(ParseIpPrefixes("10.1.2.3/8").status().message(),
              HasSubstr("10.1.2.3/32"));
}

TEST(PolicyParse, DestinationRulesWithAndWithoutPorts) {
  absl::StatusOr<std::vector<DestinationRule>> r = ParseDestinationRules(
      "127.0.0.0/8,::1/128,10.0.0.0/8:443,[fd00::/8]:8000-8100");
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->size(), 4u);
  EXPECT_FALSE((*r)[0].ports.has_value());
  EXPECT_FALSE((*r)[1].ports.has_value());
  ASSERT_TRUE((*r)[2].ports.has_value());
  EXPECT_EQ((*r)[2].ports->first, 443);
  ASSERT_TRUE((*r)[3].ports.has_value());
  EXPECT_EQ((*r)[3].ports->last, 8100);
  for (const char* bad : {"[::1/128]:", "[::1/128", "10.0.0.0/8:", "a:80",
                          "10.0.0.0/8:99999", "[::1]x"}) {
    EXPECT_EQ(ParseDestinationRules(bad).status().code(),
              absl::StatusCode::kInvalidArgument)
        << bad;
  }
}

TEST(PolicyParse, UnixPrefixesMustBeAbsoluteOrAbstract) {
  EXPECT_TRUE(ParseUnixPathPrefixes("/run/sockagent/,@sa-").ok());
  EXPECT_EQ(ParseUnixPathPrefixes("run/").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(PolicyMatch, DestinationsByPrefixAndPort) {
  Policy p;
  p.destinations =
      *ParseDestinationRules("127.0.0.0/8,10.0.0.0/8:443,[fd00::/8]:80-90");
  EXPECT_TRUE(p.CheckDestination("127.1.2.3", 22).ok());
  EXPECT_TRUE(p.CheckDestination("10.9.9.9", 443).ok());
  EXPECT_TRUE(p.CheckDestination("fd00::5", 85).ok());
  EXPECT_FALSE(p.CheckDestination("fd00::5", 91).ok());
  EXPECT_FALSE(p.CheckDestination("::1", 80).ok());
  EXPECT_FALSE(p.CheckDestination("128.0.0.1", 80).ok());
  const absl::Status s = p.CheckDestination("10.1.2.3", 22);
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(s.message(),
            "destination 10.1.2.3:22 is not allowed by --allow-dest");
  EXPECT_THAT(p.CheckDestination("fd00::5", 91).message(),
              HasSubstr("[fd00::5]:91"));
}

TEST(PolicyMatch, MappedIpv4IsCheckedAsIpv4) {
  Policy p;
  p.destinations = *ParseDestinationRules("127.0.0.0/8,[::/0]:1");
  EXPECT_TRUE(p.CheckDestination("::ffff:127.0.0.1", 80).ok());
  // ::/0 does not open IPv4 through its mapped form.
  EXPECT_FALSE(p.CheckDestination("::ffff:10.0.0.1", 1).ok());
}

TEST(PolicyMatch, PrefixLengthsAtBitGranularity) {
  IpPrefix p = (*ParseIpPrefixes("192.168.4.0/22"))[0];
  EXPECT_TRUE(PrefixContains(p, "192.168.7.255"));
  EXPECT_FALSE(PrefixContains(p, "192.168.8.0"));
  EXPECT_FALSE(PrefixContains(p, "192.168.3.255"));
  IpPrefix all = (*ParseIpPrefixes("0.0.0.0/0"))[0];
  EXPECT_TRUE(PrefixContains(all, "255.255.255.255"));
  EXPECT_FALSE(PrefixContains(all, "::1"));
  EXPECT_FALSE(PrefixContains(all, "not-an-address"));
}

TEST(PolicyMatch, EmptyListAllowsNothingUnsetAllowsAll) {
  Policy open;
  EXPECT_TRUE(open.CheckBind("0.0.0.0", 22).ok());
  EXPECT_TRUE(open.CheckDestination("8.8.8.8", 53).ok());
  EXPECT_TRUE(open.CheckUnixPath("bind", "/anything").ok());
  EXPECT_EQ(open.Describe(), "none");
  Policy closed;
  closed.destinations = *ParseDestinationRules("none");
  closed.bind_ports = *ParsePortRanges("none");
  EXPECT_FALSE(closed.CheckDestination("127.0.0.1", 80).ok());
  EXPECT_FALSE(closed.CheckBind("127.0.0.1", 8080).ok());
}

TEST(PolicyMatch, BindPortZeroNeedsEphemeral) {
  Policy p;
  p.bind_ports = *ParsePortRanges("1024-65535");
  const absl::Status s = p.CheckBind("127.0.0.1", 0);
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(s.message(), HasSubstr("bind port 0 (pick a free port) is not "
                                     "allowed by --allow-bind-ports"));
  EXPECT_THAT(p.CheckBind("127.0.0.1", 80).message(),
              HasSubstr("allowed: 1024-65535"));
  p.bind_ports = *ParsePortRanges("1024-65535,ephemeral");
  EXPECT_TRUE(p.CheckBind("127.0.0.1", 0).ok());
}

TEST(PolicyMatch, ClientSourceIsCheckedOnlyWhereTheCallerPinsIt) {
  Policy p;
  p.bind_hosts = *ParseIpPrefixes("127.0.0.2/32");
  p.bind_ports = *ParsePortRanges("40000-40100");  // No "ephemeral".
  EXPECT_TRUE(p.CheckSource("", 0).ok());          // The kernel picks both.
  EXPECT_TRUE(p.CheckSource("127.0.0.2", 0).ok());
  EXPECT_TRUE(p.CheckSource("", 40050).ok());
  absl::Status s = p.CheckSource("127.0.0.1", 0);
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(s.message(),
            "source address 127.0.0.1 is not allowed by --allow-bind-hosts "
            "(allowed: 127.0.0.2/32)");
  s = p.CheckSource("127.0.0.2", 22);
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(s.message(), HasSubstr("source port 22 is not allowed by "
                                     "--allow-bind-ports"));
}

TEST(PolicyMatch, UnixPathsByPrefixWithoutDotDot) {
  Policy p;
  p.unix_path_prefixes = *ParseUnixPathPrefixes("/run/sa/,@sa-");
  EXPECT_TRUE(p.CheckUnixPath("bind", "/run/sa/x.sock").ok());
  EXPECT_TRUE(p.CheckUnixPath("bind", "@sa-1").ok());
  EXPECT_FALSE(p.CheckUnixPath("bind", "/run/sa/../../etc/x").ok());
  EXPECT_FALSE(p.CheckUnixPath("bind", "@other").ok());
  EXPECT_EQ(p.CheckUnixPath("connect", "/tmp/x").message(),
            "connect unix:/tmp/x is not allowed by --allow-unix-paths");
}

// ---- The engine applies the policy.

class EnginePolicyTest : public EngineTest {
 protected:
  void WithPolicy(const Policy& policy, bool numeric_only = false) {
    EngineOptions o;
    o.policy = policy;
    o.numeric_hosts_only = numeric_only;
    MakeEngine(o);
  }
};

TEST_F(EnginePolicyTest, ClientToForbiddenDestinationIsRefusedBeforeConnect) {
  // A real listener the policy forbids: it must see no connection at all.
  uint16_t port = 0;
  Fd listener = TcpListen(16, &port);
  ASSERT_TRUE(listener.valid());
  Policy p;
  p.destinations = *ParseDestinationRules("127.0.0.0/8:1-1023");
  WithPolicy(p);
  absl::StatusOr<ConnectionInfo> c =
      sync_->OpenClient(ClientTo(Ip("127.0.0.1", port)));
  ASSERT_EQ(c.status().code(), absl::StatusCode::kPermissionDenied)
      << c.status();
  EXPECT_EQ(c.status().message(),
            absl::StrCat("connect 127.0.0.1:", port, ": destination 127.0.0.1:",
                         port, " is not allowed by --allow-dest"));
  // Nothing reached the listener: a non-blocking accept finds no one.
  ASSERT_EQ(fcntl(listener.get(), F_SETFL, O_NONBLOCK), 0);
  EXPECT_EQ(::accept(listener.get(), nullptr, nullptr), -1);
  EXPECT_TRUE(sync_->AllConnections().empty());
}

TEST_F(EnginePolicyTest, ClientToAllowedDestinationCarriesData) {
  Policy p;
  p.destinations = *ParseDestinationRules("127.0.0.0/8");
  WithPolicy(p);
  absl::StatusOr<ServerInfo> echo =
      sync_->StartServer(LoopbackServer(BehaviorKind::kEcho));
  ASSERT_TRUE(echo.ok()) << echo.status();
  absl::StatusOr<ConnectionInfo> c =
      sync_->OpenClient(ClientTo(echo->local_addresses[0]));
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE(sync_->Send(c->id, "ping").ok());
  EXPECT_EQ(*sync_->ReceiveExactly(c->id, 4), "ping");
}

TEST_F(EnginePolicyTest, ClientSourceOutsideTheBindPolicyIsRefused) {
  Policy p;
  p.bind_hosts = *ParseIpPrefixes("127.0.0.2/32");
  p.bind_ports = *ParsePortRanges("ephemeral,40000-40100");
  WithPolicy(p);
  absl::StatusOr<ServerInfo> echo =
      sync_->StartServer(LoopbackServer(BehaviorKind::kEcho));
  ASSERT_FALSE(echo.ok());  // 127.0.0.1 itself may not be bound...
  uint16_t port = 0;
  Fd listener = TcpListen(16, &port);  // ...so a plain listener instead.
  ASSERT_TRUE(listener.valid());

  ClientSpec refused = ClientTo(Ip("127.0.0.1", port));
  refused.source.host = "127.0.0.1";
  absl::StatusOr<ConnectionInfo> c = sync_->OpenClient(refused);
  ASSERT_EQ(c.status().code(), absl::StatusCode::kPermissionDenied)
      << c.status();
  EXPECT_THAT(c.status().message(),
              HasSubstr("source address 127.0.0.1 is not allowed by "
                        "--allow-bind-hosts"));
  refused.source.host = "127.0.0.2";
  refused.source.port = "22";
  c = sync_->OpenClient(refused);
  ASSERT_EQ(c.status().code(), absl::StatusCode::kPermissionDenied)
      << c.status();
  EXPECT_THAT(c.status().message(), HasSubstr("source port 22"));
  EXPECT_TRUE(sync_->AllConnections().empty());

  ClientSpec allowed = ClientTo(Ip("127.0.0.1", port));
  allowed.source.host = "127.0.0.2";
  c = sync_->OpenClient(allowed);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->local.ip, "127.0.0.2");
  c = sync_->OpenClient(ClientTo(Ip("127.0.0.1", port)));  // Source unset.
  EXPECT_TRUE(c.ok()) << c.status();
}

TEST_F(EnginePolicyTest, NameResolvingToForbiddenAddressIsRefused) {
  // "localhost" comes from /etc/hosts (127.0.0.1): the check sees the
  // resolved address, not the name.
  Policy p;
  p.destinations = *ParseDestinationRules("10.0.0.0/8");
  WithPolicy(p);
  ClientSpec spec;
  spec.remote.host = "localhost";
  spec.remote.port = "9";
  absl::StatusOr<ConnectionInfo> c = sync_->OpenClient(spec);
  ASSERT_EQ(c.status().code(), absl::StatusCode::kPermissionDenied)
      << c.status();
  EXPECT_THAT(c.status().message(),
              HasSubstr("destination 127.0.0.1:9 is not allowed"));
}

TEST_F(EnginePolicyTest, ServiceNameResolvingToForbiddenPortIsRefused) {
  Policy p;
  p.bind_ports = *ParsePortRanges("1024-65535,ephemeral");
  WithPolicy(p);
  ServerSpec spec = LoopbackServer(BehaviorKind::kHold);
  spec.bind.port = "www";  // 80, from /etc/services.
  absl::StatusOr<ServerInfo> s = sync_->StartServer(spec);
  ASSERT_EQ(s.status().code(), absl::StatusCode::kPermissionDenied)
      << s.status();
  EXPECT_THAT(s.status().message(),
              HasSubstr("bind port 80 is not allowed by --allow-bind-ports"));
  // Port 0 is allowed by "ephemeral".
  EXPECT_TRUE(sync_->StartServer(LoopbackServer(BehaviorKind::kHold)).ok());
}

TEST_F(EnginePolicyTest, WildcardBindNeedsWildcardAllowed) {
  Policy p;
  p.bind_hosts = *ParseIpPrefixes("127.0.0.0/8,::1");
  WithPolicy(p);
  absl::StatusOr<ServerInfo> any =
      sync_->StartServer(LoopbackServer(BehaviorKind::kHold, Transport::kTcp,
                                        /*host=*/""));
  ASSERT_EQ(any.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(any.status().message(),
              HasSubstr("bind address 0.0.0.0 is not allowed by "
                        "--allow-bind-hosts"));
  absl::StatusOr<ServerInfo> udp = sync_->StartServer(
      LoopbackServer(BehaviorKind::kEcho, Transport::kUdp, "127.0.0.2"));
  EXPECT_TRUE(udp.ok()) << udp.status();
  // Nothing half-started: only the allowed server is listed.
  ServerFilter filter;
  filter.include_stopped = true;
  EXPECT_EQ(sync_->ListServers(filter)->items.size(), 1u);
}

TEST_F(EnginePolicyTest, UnixPathsOutsideThePrefixAreRefused) {
  TempDir dir;
  Policy p;
  p.unix_path_prefixes = *ParseUnixPathPrefixes(dir.path() + "/ok-");
  WithPolicy(p);
  ServerSpec bad = LoopbackServer(BehaviorKind::kHold, Transport::kUnix);
  bad.bind.host.clear();
  bad.bind.unix_path = dir.path() + "/bad.sock";
  absl::StatusOr<ServerInfo> s = sync_->StartServer(bad);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(::access(bad.bind.unix_path.c_str(), F_OK), 0)
      << "no file may be created";
  ServerSpec good = bad;
  good.bind.unix_path = dir.path() + "/ok-1.sock";
  ASSERT_TRUE(sync_->StartServer(good).ok());
  ClientSpec client;
  client.transport = Transport::kUnix;
  client.remote.unix_path = dir.path() + "/ok-1.sock/../bad.sock";
  absl::StatusOr<ConnectionInfo> c = sync_->OpenClient(client);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(c.status().message(), HasSubstr("'..'"));
  client.remote.unix_path = good.bind.unix_path;
  EXPECT_TRUE(sync_->OpenClient(client).ok());
}

TEST_F(EnginePolicyTest, NumericHostsOnlyRefusesNamesWithoutLookingUp) {
  WithPolicy(Policy{}, /*numeric_only=*/true);
  ClientSpec spec;
  spec.remote.host = "localhost";
  spec.remote.port = "9";
  absl::StatusOr<ConnectionInfo> c = sync_->OpenClient(spec);
  ASSERT_EQ(c.status().code(), absl::StatusCode::kPermissionDenied)
      << c.status();
  EXPECT_THAT(c.status().message(), HasSubstr("--no-name-lookups"));
  // Service names still work (from /etc/services, no DNS), numeric hosts
  // too.
  ServerSpec server = LoopbackServer(BehaviorKind::kHold);
  server.bind.host = "localhost";
  EXPECT_EQ(sync_->StartServer(server).status().code(),
            absl::StatusCode::kPermissionDenied);
  server.bind.host = "127.0.0.1";
  server.bind.port = "0";
  EXPECT_TRUE(sync_->StartServer(server).ok());
}

TEST(EngineAddress, SignedPortIsOutOfRangeNotAServiceName) {
  // Not looked up as a service called "-1".
  EXPECT_EQ(ParsePort("-1").status().message(),
            "port -1 is out of range 0..65535");
  EXPECT_EQ(ParsePort("+80").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(ParsePort("-").value().has_value());  // A (strange) name.
}

TEST(ResolverPoolNumericOnly, ReverseLookupStaysNumeric) {
  ResolverPool pool({.threads = 1, .numeric_hosts_only = true});
  absl::Notification done;
  absl::StatusOr<ReverseResult> result;
  ReverseQuery q;
  q.address = "127.0.0.1";
  ASSERT_TRUE(pool.SubmitReverse(q, absl::InfiniteFuture(),
                                 [&](absl::StatusOr<ReverseResult> r) {
                                   result = std::move(r);
                                   done.Notify();
                                 }));
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(kTimeout));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->host, "127.0.0.1");  // Not "localhost" from /etc/hosts.
}

}  // namespace
}  // namespace sockagent::testing
