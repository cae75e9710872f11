// Faults on proxied connections, through the real sockagentd with plain
// POSIX peers as client and upstream: a fault with direction UPSTREAM acts
// only on the upstream half (bytes toward the upstream), DOWNSTREAM only on
// the accepted half (bytes toward the client); limit_data cuts the client's
// stream at exactly N bytes; on a UDP proxy, drop toward the peers and
// duplicate toward the upstream act per datagram. Timing bounds are
// one-sided lower bounds (a delay cannot come early).
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "sockagent/v1/agent.grpc.pb.h"
#include "tests/support/agent_process.h"
#include "tests/support/agent_rpc.h"
#include "tests/support/grpc_client.h"
#include "tests/support/posix_peer.h"
#include "tests/support/wait.h"

namespace sockagent::testing {
namespace {

using ::testing::ElementsAre;

class ProxyFaults : public AgentTestBase {
 protected:
  void SetUp() override { StartAgent({"--udp-reply-rate=100000"}); }

  v1::Server StartProxy(uint16_t upstream_port, v1::Transport transport) {
    return StartLoopbackServer(*stub_, [&](v1::StartServerRequest& r) {
      r.set_transport(transport);
      auto* proxy = r.mutable_behavior()->mutable_proxy();
      proxy->mutable_upstream()->set_host("127.0.0.1");
      proxy->mutable_upstream()->set_port(upstream_port);
    });
  }

  void AddFault(v1::Fault f, const v1::Server& on, v1::FaultDirection d) {
    f.mutable_target()->set_server_id(on.id());
    f.set_direction(d);
    f.set_seed(5);
    grpc::Status s = testing::AddFault(*stub_, f);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }

  std::optional<v1::Connection> Half(const std::string& server_id,
                                     v1::Origin origin) {
    v1::ListConnectionsRequest request;
    request.set_server_id(server_id);
    v1::ListConnectionsResponse response;
    auto context = ContextWithDeadline();
    EXPECT_TRUE(stub_->ListConnections(context.get(), request, &response).ok());
    for (const v1::Connection& c : response.connections()) {
      if (c.origin() == origin) return c;
    }
    return std::nullopt;
  }
};

TEST_F(ProxyFaults, UpstreamLatencyActsOnTheUpstreamHalfOnly) {
  uint16_t port = 0;
  Fd listener = TcpListen(4, &port);
  const v1::Server proxy = StartProxy(port, v1::TRANSPORT_TCP);
  v1::Fault f;
  f.set_name("toward-upstream");
  SetDuration(absl::Milliseconds(150), f.mutable_latency()->mutable_latency());
  AddFault(f, proxy, v1::FAULT_DIRECTION_UPSTREAM);
  Fd client = TcpConnect(FirstAddress(proxy));
  ASSERT_TRUE(client.valid());
  Fd upstream = Accept(listener.get());
  ASSERT_TRUE(upstream.valid());
  std::optional<v1::Connection> down, up;
  ASSERT_TRUE(WaitFor([&] {
    down = Half(proxy.id(), v1::ORIGIN_ACCEPTED);
    up = Half(proxy.id(), v1::ORIGIN_PROXY_UPSTREAM);
    return down && up;
  }));
  EXPECT_THAT(up->faults(), ElementsAre("toward-upstream"));
  EXPECT_TRUE(down->faults().empty());
  // Toward the upstream: held for the latency.
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(WriteAll(client.get(), "ping"));
  EXPECT_EQ(ReadExactly(upstream.get(), 4), "ping");
  EXPECT_GE(std::chrono::steady_clock::now() - t0,
            std::chrono::milliseconds(150));
  // Back toward the client: through, every byte.
  ASSERT_TRUE(WriteAll(upstream.get(), "pong"));
  EXPECT_EQ(ReadExactly(client.get(), 4), "pong");
}

TEST_F(ProxyFaults, DownstreamLimitDataCutsTheClientsStreamAtExactlyNBytes) {
  uint16_t port = 0;
  Fd listener = TcpListen(4, &port);
  const v1::Server proxy = StartProxy(port, v1::TRANSPORT_TCP);
  v1::Fault f;
  f.set_name("cut");
  f.mutable_limit_data()->set_bytes(10);
  AddFault(f, proxy, v1::FAULT_DIRECTION_DOWNSTREAM);
  Fd client = TcpConnect(FirstAddress(proxy));
  ASSERT_TRUE(client.valid());
  Fd upstream = Accept(listener.get());
  ASSERT_TRUE(upstream.valid());
  // The upstream direction is untouched.
  ASSERT_TRUE(WriteAll(client.get(), std::string(100, 'c')));
  EXPECT_EQ(ReadExactly(upstream.get(), 100), std::string(100, 'c'));
  ASSERT_TRUE(WriteAll(upstream.get(), Pattern(0, 100)));
  EXPECT_EQ(ReadToEof(client.get()), Pattern(0, 10));
}

TEST_F(ProxyFaults, UdpDropTowardThePeerAndDuplicateTowardTheUpstream) {
  Fd up = UdpBound();
  const v1::Server proxy = StartProxy(LocalPort(up.get()), v1::TRANSPORT_UDP);
  v1::Fault drop;
  drop.set_name("no-replies");
  drop.mutable_drop()->set_probability(1.0);
  AddFault(drop, proxy, v1::FAULT_DIRECTION_DOWNSTREAM);
  v1::Fault twice;
  twice.set_name("twice-up");
  twice.mutable_duplicate()->set_probability(1.0);
  AddFault(twice, proxy, v1::FAULT_DIRECTION_UPSTREAM);
  Fd peer = UdpBound();
  ASSERT_TRUE(SendTo(peer.get(), "hello", FirstAddress(proxy)));
  // The upstream gets it twice, from the proxy's upstream socket.
  sockaddr_storage from{};
  socklen_t len = sizeof from;
  char buf[64];
  for (int i = 0; i < 2; ++i) {
    pollfd p{up.get(), POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 30000), 1);
    len = sizeof from;
    const ssize_t n = ::recvfrom(up.get(), buf, sizeof buf, 0,
                                 reinterpret_cast<sockaddr*>(&from), &len);
    EXPECT_EQ(std::string(buf, n > 0 ? n : 0), "hello");
  }
  // Its reply never reaches the peer: the session drops it, and counts.
  ASSERT_EQ(
      ::sendto(up.get(), "back", 4, 0, reinterpret_cast<sockaddr*>(&from), len),
      4);
  std::optional<v1::Connection> session;
  ASSERT_TRUE(WaitFor([&] {
    session = Half(proxy.id(), v1::ORIGIN_UDP_PEER);
    return session && session->counters().fault_datagrams_dropped() == 1;
  }));
  EXPECT_EQ(RecvDatagram(peer.get(), absl::ZeroDuration()), std::nullopt);
  const std::optional<v1::Connection> upper =
      Half(proxy.id(), v1::ORIGIN_PROXY_UPSTREAM);
  ASSERT_TRUE(upper.has_value());
  EXPECT_EQ(upper->counters().fault_datagrams_duplicated(), 1u);
  EXPECT_THAT(upper->faults(), ElementsAre("twice-up"));
  EXPECT_THAT(session->faults(), ElementsAre("no-replies"));
}

}  // namespace
}  // namespace sockagent::testing
