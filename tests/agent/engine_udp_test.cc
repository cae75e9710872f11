// Engine tests over UDP: per-datagram behaviours, peer sessions (created,
// listed, answered, capped, expired), bounded receive queues, and connected
// UDP clients. Plain POSIX UDP sockets are the peers.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/agent/engine_test_util.h"

namespace sockagent::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::SizeIs;

class EngineUdpServer : public EngineTest {
 protected:
  SocketAddress Start(ServerSpec spec) {
    absl::StatusOr<ServerInfo> server = sync_->StartServer(spec);
    EXPECT_TRUE(server.ok()) << server.status();
    if (!server.ok()) return {};
    server_id_ = server->id;
    SocketAddress at = server->local_addresses[0];
    if (at.ip == "0.0.0.0") at.ip = "127.0.0.1";
    return at;
  }
  std::vector<ConnectionInfo> Sessions(size_t n) {
    std::vector<ConnectionInfo> out;
    WaitFor([&] {
      out = sync_->ConnectionsOf(server_id_);
      return out.size() >= n;
    });
    return out;
  }

  std::string server_id_;
};

class EngineUdpClient : public EngineTest {};

TEST_F(EngineUdpServer, EchoMakesOneSessionPerPeerAndSendAnswersEach) {
  const SocketAddress at =
      Start(LoopbackServer(BehaviorKind::kEcho, Transport::kUdp));
  Fd a = UdpBound();
  Fd b = UdpBound();
  ASSERT_TRUE(SendTo(a.get(), "from a", at));
  ASSERT_TRUE(SendTo(b.get(), "from b", at));
  EXPECT_EQ(RecvDatagram(a.get()).value_or(""), "from a");
  EXPECT_EQ(RecvDatagram(b.get()).value_or(""), "from b");
  ASSERT_TRUE(SendTo(a.get(), "again", at));  // Same peer, same session.
  EXPECT_EQ(RecvDatagram(a.get()).value_or(""), "again");

  std::vector<ConnectionInfo> sessions = Sessions(2);
  ASSERT_THAT(sessions, SizeIs(2));
  for (const ConnectionInfo& s : sessions) {
    EXPECT_EQ(s.origin, Origin::kUdpPeer);
    EXPECT_EQ(s.transport, Transport::kUdp);
    EXPECT_EQ(s.server_id, server_id_);
    EXPECT_EQ(s.state, ConnectionState::kOpen);
  }
  EXPECT_EQ(sessions[0].remote.port, LocalPort(a.get()));
  EXPECT_EQ(sessions[1].remote.port, LocalPort(b.get()));
  EXPECT_EQ(sessions[0].counters.datagrams_received, 2u);
  EXPECT_EQ(sessions[0].counters.datagrams_sent, 2u);

  ASSERT_TRUE(sync_->Send(sessions[0].id, "to a").ok());
  ASSERT_TRUE(sync_->Send(sessions[1].id, "to b").ok());
  EXPECT_EQ(RecvDatagram(a.get()).value_or(""), "to a");
  EXPECT_EQ(RecvDatagram(b.get()).value_or(""), "to b");

  std::optional<ServerInfo> info = sync_->Server(server_id_);
  EXPECT_EQ(info->counters.connections_accepted, 2u);
  EXPECT_EQ(info->counters.datagrams_received, 3u);
  EXPECT_EQ(info->counters.datagrams_sent, 5u);
}

TEST_F(EngineUdpServer, HoldSessionReceivesDatagramsWithPeer) {
  const SocketAddress at =
      Start(LoopbackServer(BehaviorKind::kHold, Transport::kUdp));
  Fd peer = UdpBound();
  for (const char* d : {"one", "two", "three"}) {
    ASSERT_TRUE(SendTo(peer.get(), d, at));
  }
  std::vector<ConnectionInfo> sessions = Sessions(1);
  ASSERT_THAT(sessions, SizeIs(1));
  const std::string id = sessions[0].id;
  ASSERT_TRUE(WaitFor(
      [&] { return sync_->Connection(id)->counters.datagrams_received == 3; }));
  ReceiveSpec spec;
  spec.max_datagrams = 2;
  absl::StatusOr<ReceiveResult> r = sync_->Receive(id, spec);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_THAT(r->datagrams, SizeIs(2));
  EXPECT_EQ(r->datagrams[0].data, "one");
  EXPECT_EQ(r->datagrams[1].data, "two");
  EXPECT_EQ(r->datagrams[0].peer.port, LocalPort(peer.get()));
  EXPECT_EQ(r->recv_buffered, 5u);
  // max_bytes smaller than a datagram still returns one whole datagram.
  spec = {};
  spec.max_bytes = 1;
  r = sync_->Receive(id, spec);
  ASSERT_THAT(r->datagrams, SizeIs(1));
  EXPECT_EQ(r->datagrams[0].data, "three");
}

TEST_F(EngineUdpServer, SessionCapDropsNewPeers) {
  ServerSpec spec = LoopbackServer(BehaviorKind::kHold, Transport::kUdp);
  spec.udp_max_sessions = 1;
  const SocketAddress at = Start(spec);
  Fd a = UdpBound();
  Fd b = UdpBound();
  ASSERT_TRUE(SendTo(a.get(), "a", at));
  ASSERT_THAT(Sessions(1), SizeIs(1));
  ASSERT_TRUE(SendTo(b.get(), "b", at));
  std::optional<ServerInfo> info;
  ASSERT_TRUE(WaitFor([&] {
    info = sync_->Server(server_id_);
    return info->counters.datagrams_received == 2;
  }));
  EXPECT_EQ(info->counters.datagrams_dropped, 1u);
  EXPECT_EQ(info->counters.connections_accepted, 1u);
  EXPECT_EQ(info->udp_max_sessions, 1u);
  EXPECT_THAT(sync_->ConnectionsOf(server_id_), SizeIs(1));
}

TEST_F(EngineUdpServer, IdleSessionExpiresAndPeerGetsANewOne) {
  ServerSpec spec = LoopbackServer(BehaviorKind::kHold, Transport::kUdp);
  spec.udp_session_idle_timeout = absl::Milliseconds(200);
  const SocketAddress at = Start(spec);
  Fd peer = UdpBound();
  ASSERT_TRUE(SendTo(peer.get(), "hi", at));
  const std::string first = Sessions(1)[0].id;
  std::optional<ConnectionInfo> conn =
      sync_->ConnectionWhen(first, [&](const ConnectionInfo& c) {
        return c.state == ConnectionState::kClosed;
      });
  ASSERT_TRUE(conn.has_value());
  EXPECT_EQ(conn->close_reason, CloseReason::kIdleTimeout);
  ASSERT_TRUE(SendTo(peer.get(), "back", at));
  ASSERT_TRUE(
      WaitFor([&] { return sync_->ConnectionsOf(server_id_).size() == 2; }));
  std::vector<ConnectionInfo> all = sync_->ConnectionsOf(server_id_);
  EXPECT_NE(all[1].id, first);
  EXPECT_EQ(all[1].state, ConnectionState::kOpen);
}

TEST_F(EngineUdpServer, FullReceiveQueueDropsAndCounts) {
  EngineOptions options;
  options.recv_buffer_bytes = 1000;
  options.max_send_bytes = 1000;
  options.send_buffer_bytes = 1000;
  MakeEngine(options);
  const SocketAddress at =
      Start(LoopbackServer(BehaviorKind::kHold, Transport::kUdp));
  Fd peer = UdpBound();
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(SendTo(peer.get(), std::string(600, 'a' + i), at));
  }
  const std::string id = Sessions(1)[0].id;
  std::optional<ConnectionInfo> conn =
      sync_->ConnectionWhen(id, [&](const ConnectionInfo& c) {
        return c.counters.datagrams_received == 3;
      });
  ASSERT_TRUE(conn.has_value());
  EXPECT_EQ(conn->counters.datagrams_dropped, 2u);
  EXPECT_EQ(conn->counters.recv_buffered, 600u);
  EXPECT_LE(conn->counters.recv_buffered_peak, options.recv_buffer_bytes);
  EXPECT_EQ(sync_->Server(server_id_)->counters.datagrams_dropped, 2u);
  absl::StatusOr<ReceiveResult> r = sync_->Receive(id);
  ASSERT_THAT(r->datagrams, SizeIs(1));
  EXPECT_EQ(r->datagrams[0].data, std::string(600, 'a'));
}

// Each queued datagram costs its payload plus a fixed overhead against the
// receive buffer, so empty datagrams cannot queue without limit.
TEST_F(EngineUdpServer, EmptyDatagramsCountAgainstTheReceiveBuffer) {
  EngineOptions options;
  options.recv_buffer_bytes = 100 * 64;  // 100 empty datagrams.
  MakeEngine(options);
  const SocketAddress at =
      Start(LoopbackServer(BehaviorKind::kHold, Transport::kUdp));
  Fd peer = UdpBound();
  constexpr int kSent = 300;
  // In batches, so the kernel's receive buffer never overflows.
  for (int batch = 0; batch < kSent / 50; ++batch) {
    for (int i = 0; i < 50; ++i) ASSERT_TRUE(SendTo(peer.get(), "", at));
    ASSERT_TRUE(WaitFor([&] {
      return sync_->Server(server_id_)->counters.datagrams_received ==
             50u * (batch + 1);
    }));
  }
  std::optional<ConnectionInfo> conn = sync_->Connection(Sessions(1)[0].id);
  EXPECT_EQ(conn->counters.datagrams_received, uint64_t{kSent});
  EXPECT_EQ(conn->counters.datagrams_dropped, uint64_t{kSent - 100});
  EXPECT_EQ(conn->counters.recv_buffered, 0u);  // Payload bytes only.
}

// One Receive answer counts the same overhead per datagram against
// max_bytes: it stays near max_bytes whatever the datagrams' sizes.
TEST_F(EngineUdpServer, ReceiveCountsPerDatagramOverheadAgainstMaxBytes) {
  const SocketAddress at =
      Start(LoopbackServer(BehaviorKind::kHold, Transport::kUdp));
  Fd peer = UdpBound();
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(SendTo(peer.get(), "", at));
  const std::string id = Sessions(1)[0].id;
  ASSERT_TRUE(WaitFor([&] {
    return sync_->Connection(id)->counters.datagrams_received == 100;
  }));
  absl::StatusOr<ReceiveResult> r =
      sync_->Receive(id, absl::ZeroDuration(), 10 * 64);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(r->datagrams, SizeIs(10));
  // At least one datagram, however small max_bytes is.
  r = sync_->Receive(id, absl::ZeroDuration(), 1);
  EXPECT_THAT(r->datagrams, SizeIs(1));
}

// No SO_REUSEADDR on UDP: a second socket on the same port would share (and
// steal) its datagrams.
TEST_F(EngineUdpServer, SecondServerOnTheSamePortIsAlreadyExists) {
  const SocketAddress at =
      Start(LoopbackServer(BehaviorKind::kHold, Transport::kUdp));
  ServerSpec spec = LoopbackServer(BehaviorKind::kHold, Transport::kUdp);
  spec.bind.port = std::to_string(at.port);
  absl::StatusOr<ServerInfo> second = sync_->StartServer(spec);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kAlreadyExists)
      << second.status();
}

TEST_F(EngineUdpServer, GreetingRepliesToEachDatagram) {
  ServerSpec spec = LoopbackServer(BehaviorKind::kGreeting, Transport::kUdp);
  spec.behavior.greeting = "Thank you for connecting";
  spec.behavior.close_after_greeting = true;
  const SocketAddress at = Start(spec);
  Fd peer = UdpBound();
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(SendTo(peer.get(), "knock", at));
    EXPECT_EQ(RecvDatagram(peer.get()).value_or(""),
              "Thank you for connecting");
  }
  // close_after: each datagram's session ends after the reply.
  std::vector<ConnectionInfo> all = Sessions(2);
  ASSERT_THAT(all, SizeIs(2));
  for (const ConnectionInfo& c : all) {
    EXPECT_EQ(c.state, ConnectionState::kClosed);
    EXPECT_EQ(c.close_reason, CloseReason::kLocalClose);
  }
}

TEST_F(EngineUdpServer, DiscardCountsAndDualStack) {
  const SocketAddress at =
      Start(LoopbackServer(BehaviorKind::kDiscard, Transport::kUdp, ""));
  std::optional<ServerInfo> info = sync_->Server(server_id_);
  ASSERT_THAT(info->local_addresses, SizeIs(2));
  EXPECT_EQ(info->local_addresses[1].port, at.port);
  Fd v4 = UdpBound(Family::kIpv4);
  Fd v6 = UdpBound(Family::kIpv6);
  ASSERT_TRUE(SendTo(v4.get(), "1234", Ip("127.0.0.1", at.port)));
  ASSERT_TRUE(SendTo(v6.get(), "567", Ip("::1", at.port)));
  ASSERT_TRUE(WaitFor([&] {
    info = sync_->Server(server_id_);
    return info->counters.bytes_received == 7;
  }));
  std::vector<ConnectionInfo> sessions = sync_->ConnectionsOf(server_id_);
  ASSERT_THAT(sessions, SizeIs(2));
  EXPECT_EQ(sessions[0].local.family, Family::kIpv4);
  EXPECT_EQ(sessions[1].local.family, Family::kIpv6);
  EXPECT_EQ(sessions[1].remote.ip, "::1");
}

TEST_F(EngineUdpServer, StopClosesSessions) {
  const SocketAddress at =
      Start(LoopbackServer(BehaviorKind::kHold, Transport::kUdp));
  Fd peer = UdpBound();
  ASSERT_TRUE(SendTo(peer.get(), "x", at));
  const std::string id = Sessions(1)[0].id;
  absl::StatusOr<StopResult> stop =
      sync_->StopServers(Selector{server_id_, {}});
  ASSERT_TRUE(stop.ok());
  EXPECT_EQ(stop->connections_closed, 1u);
  std::optional<ConnectionInfo> conn = sync_->Connection(id);
  EXPECT_EQ(conn->state, ConnectionState::kClosed);
  EXPECT_EQ(conn->close_reason, CloseReason::kServerStopped);
  EXPECT_EQ(sync_->Send(id, "y").status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(EngineUdpClient, ConnectedSocketSendsAndReceives) {
  Fd peer = UdpBound();
  const uint16_t port = LocalPort(peer.get());
  absl::StatusOr<ConnectionInfo> conn =
      sync_->OpenClient(ClientTo(Ip("127.0.0.1", port), Transport::kUdp));
  ASSERT_TRUE(conn.ok()) << conn.status();
  EXPECT_EQ(conn->transport, Transport::kUdp);
  EXPECT_EQ(conn->remote.port, port);
  ASSERT_TRUE(sync_->Send(conn->id, "ping").ok());
  EXPECT_EQ(RecvDatagram(peer.get()).value_or(""), "ping");
  ASSERT_TRUE(SendTo(peer.get(), "pong", conn->local));
  absl::StatusOr<ReceiveResult> r = sync_->Receive(conn->id, absl::Seconds(10));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_THAT(r->datagrams, SizeIs(1));
  EXPECT_EQ(r->datagrams[0].data, "pong");
  EXPECT_EQ(r->datagrams[0].peer.port, port);
  std::optional<ConnectionInfo> info = sync_->Connection(conn->id);
  EXPECT_EQ(info->counters.datagrams_sent, 1u);
  EXPECT_EQ(info->counters.datagrams_received, 1u);
  // A zero-length datagram is a datagram.
  ASSERT_TRUE(sync_->Send(conn->id, "").ok());
  EXPECT_EQ(RecvDatagram(peer.get()).value_or("x"), "");
}

TEST_F(EngineUdpClient, ShutdownWriteIsInvalidArgument) {
  Fd peer = UdpBound();
  absl::StatusOr<ConnectionInfo> conn = sync_->OpenClient(
      ClientTo(Ip("127.0.0.1", LocalPort(peer.get())), Transport::kUdp));
  ASSERT_TRUE(conn.ok()) << conn.status();
  absl::StatusOr<std::vector<ConnectionInfo>> r =
      sync_->Close(conn->id, CloseMode::kShutdownWrite);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("stream"));
  EXPECT_EQ(sync_->Connection(conn->id)->state, ConnectionState::kOpen);
  ASSERT_TRUE(sync_->Send(conn->id, "still open").ok());
  EXPECT_EQ(RecvDatagram(peer.get()).value_or(""), "still open");
}

}  // namespace
}  // namespace sockagent::testing
