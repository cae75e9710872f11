// The proxy behaviour through the real sockagentd, with plain POSIX peers
// as client and upstream (never the engine against itself): bytes both
// ways, a 64 MiB transfer checked byte by byte, backpressure from a
// non-reading upstream, half-close both ways, resets, upstream refusal and
// policy refusal, the proxied halves refusing Receive/Send/Stream, UDP with
// two peers, a UNIX listener relaying to TCP, and the CLI verbs.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
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

class Proxy : public AgentTestBase {
 protected:
  // A TCP proxy server on 127.0.0.1 relaying to 127.0.0.1:`upstream_port`.
  v1::Server StartProxy(uint16_t upstream_port,
                        v1::Transport transport = v1::TRANSPORT_TCP) {
    return StartLoopbackServer(*stub_, [&](v1::StartServerRequest& r) {
      r.set_transport(transport);
      (*r.mutable_labels())["team"] = "qa";
      auto* proxy = r.mutable_behavior()->mutable_proxy();
      proxy->mutable_upstream()->set_host("127.0.0.1");
      proxy->mutable_upstream()->set_port(upstream_port);
    });
  }

  std::vector<v1::Connection> Connections(const std::string& server_id) {
    v1::ListConnectionsRequest request;
    request.set_server_id(server_id);
    request.set_include_closed(true);
    request.set_page_size(1000);
    v1::ListConnectionsResponse response;
    auto context = ContextWithDeadline();
    grpc::Status s = stub_->ListConnections(context.get(), request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return {response.connections().begin(), response.connections().end()};
  }

  std::optional<v1::Connection> Find(const std::string& server_id,
                                     v1::Origin origin) {
    for (const v1::Connection& c : Connections(server_id)) {
      if (c.origin() == origin) return c;
    }
    return std::nullopt;
  }

  // A client through proxy `server` and the upstream's side of it.
  void Connect(const v1::Server& server, int upstream_listener, Fd* client,
               Fd* upstream) {
    *client = TcpConnect(FirstAddress(server));
    ASSERT_TRUE(client->valid());
    *upstream = Accept(upstream_listener);
    ASSERT_TRUE(upstream->valid());
  }

  // A port nothing listens on (bound, then closed).
  static uint16_t ClosedPort() {
    uint16_t port = 0;
    Fd listener = TcpListen(1, &port);
    return port;
  }
};

TEST_F(Proxy, RelaysBothWaysAndListsTwoLinkedHalves) {
  StartAgent();
  uint16_t port = 0;
  Fd listener = TcpListen(4, &port);
  const v1::Server server = StartProxy(port);
  EXPECT_TRUE(server.behavior().has_proxy());
  Fd client, upstream;
  Connect(server, listener.get(), &client, &upstream);
  ASSERT_TRUE(WriteAll(client.get(), "ping"));
  EXPECT_EQ(ReadExactly(upstream.get(), 4), "ping");
  ASSERT_TRUE(WriteAll(upstream.get(), "pong!"));
  EXPECT_EQ(ReadExactly(client.get(), 5), "pong!");

  std::optional<v1::Connection> down, up;
  ASSERT_TRUE(WaitFor([&] {
    down = Find(server.id(), v1::ORIGIN_ACCEPTED);
    up = Find(server.id(), v1::ORIGIN_PROXY_UPSTREAM);
    return down && up && down->counters().bytes_sent() == 5 &&
           up->counters().bytes_sent() == 4;
  }));
  EXPECT_EQ(down->peer_connection_id(), up->id());
  EXPECT_EQ(up->peer_connection_id(), down->id());
  EXPECT_EQ(up->server_id(), server.id());
  EXPECT_EQ(up->labels().at("team"), "qa");
  EXPECT_EQ(down->counters().bytes_received(), 4u);
  EXPECT_EQ(up->counters().bytes_received(), 5u);
  EXPECT_EQ(up->remote().port(), port);
}

TEST_F(Proxy, Transfers64MiBIntactBothWays) {
  StartAgent();
  uint16_t port = 0;
  Fd listener = TcpListen(4, &port);
  const v1::Server server = StartProxy(port);
  Fd client, upstream;
  Connect(server, listener.get(), &client, &upstream);
  constexpr size_t kTotal = 64u << 20;
  constexpr size_t kChunk = 60000;
  // Each side writes its pattern and reads the other's: both directions
  // at once, every byte checked by position.
  auto pump = [&](int out, int in, size_t* mismatches, size_t* got) {
    std::thread writer([&, out] {
      for (size_t off = 0; off < kTotal; off += kChunk) {
        if (!WriteAll(out, Pattern(off, std::min(kChunk, kTotal - off)))) {
          return;
        }
      }
      ::shutdown(out, SHUT_WR);
    });
    std::vector<char> buf(1 << 16);
    while (*got < kTotal) {
      const ssize_t n = ::recv(in, buf.data(), buf.size(), 0);
      if (n <= 0) break;
      for (ssize_t i = 0; i < n; ++i) {
        if (buf[i] != PatternByte(*got + i)) ++*mismatches;
      }
      *got += static_cast<size_t>(n);
    }
    writer.join();
  };
  size_t up_bad = 0, up_got = 0, down_bad = 0, down_got = 0;
  std::thread a([&] { pump(client.get(), upstream.get(), &up_bad, &up_got); });
  pump(upstream.get(), client.get(), &down_bad, &down_got);
  a.join();
  EXPECT_EQ(up_got, kTotal);
  EXPECT_EQ(down_got, kTotal);
  EXPECT_EQ(up_bad, 0u);
  EXPECT_EQ(down_bad, 0u);
  // Both FINs went through: both halves end in order.
  EXPECT_EQ(ReadToEof(client.get()), "");
  EXPECT_TRUE(WaitFor([&] {
    auto up = Find(server.id(), v1::ORIGIN_PROXY_UPSTREAM);
    auto down = Find(server.id(), v1::ORIGIN_ACCEPTED);
    return up && down && up->state() == v1::CONNECTION_STATE_CLOSED &&
           down->state() == v1::CONNECTION_STATE_CLOSED;
  }));
}

TEST_F(Proxy, NonReadingUpstreamBlocksTheClientWithinTheBound) {
  constexpr uint64_t kBound = 1 << 20;
  StartAgent({absl::StrCat("--send-buffer-bytes=", kBound),
              absl::StrCat("--recv-buffer-bytes=", kBound)});
  uint16_t port = 0;
  Fd listener = TcpListen(4, &port);
  const v1::Server server = StartProxy(port);
  Fd client, upstream;
  Connect(server, listener.get(), &client, &upstream);
  int small = 65536;
  setsockopt(upstream.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  setsockopt(client.get(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
  // Write without blocking until the client cannot write for a while:
  // its send blocks because the agent stopped reading.
  const std::string chunk = Pattern(0, 16384);
  uint64_t written = 0;
  int quiet = 0;
  while (quiet < 5 && written < (64u << 20)) {
    const ssize_t n =
        ::send(client.get(), chunk.data(), chunk.size(), MSG_DONTWAIT);
    if (n > 0) {
      written += static_cast<uint64_t>(n);
      quiet = 0;
      continue;
    }
    ASSERT_TRUE(errno == EAGAIN || errno == EWOULDBLOCK) << errno;
    pollfd p{client.get(), POLLOUT, 0};
    if (::poll(&p, 1, 200) == 0) ++quiet;
  }
  EXPECT_EQ(quiet, 5) << "the client never blocked after " << written;
  std::optional<v1::Connection> up =
      Find(server.id(), v1::ORIGIN_PROXY_UPSTREAM);
  std::optional<v1::Connection> down = Find(server.id(), v1::ORIGIN_ACCEPTED);
  ASSERT_TRUE(up && down);
  EXPECT_LE(up->counters().send_buffered_peak(), kBound);
  EXPECT_LE(down->counters().recv_buffered_peak(), kBound);
  EXPECT_GT(up->counters().send_buffered(), 0u);
  // The kernel buffers plus the agent's bound hold what was written.
  EXPECT_LT(written, 16u << 20);
  // Now the upstream reads everything, in order.
  const std::string all = ReadExactly(upstream.get(), written);
  ASSERT_EQ(all.size(), written);
  EXPECT_EQ(all.substr(0, 16384), chunk);
}

TEST_F(Proxy, HalfCloseFromClientKeepsTheOtherWayOpen) {
  StartAgent();
  uint16_t port = 0;
  Fd listener = TcpListen(4, &port);
  const v1::Server server = StartProxy(port);
  Fd client, upstream;
  Connect(server, listener.get(), &client, &upstream);
  ASSERT_TRUE(WriteAll(client.get(), "request"));
  ASSERT_EQ(::shutdown(client.get(), SHUT_WR), 0);
  EXPECT_EQ(ReadToEof(upstream.get()), "request");
  ASSERT_TRUE(WriteAll(upstream.get(), "late answer"));
  EXPECT_EQ(ReadExactly(client.get(), 11), "late answer");
  ASSERT_EQ(::shutdown(upstream.get(), SHUT_WR), 0);
  EXPECT_EQ(ReadToEof(client.get()), "");
}

TEST_F(Proxy, HalfCloseFromUpstreamKeepsTheOtherWayOpen) {
  StartAgent();
  uint16_t port = 0;
  Fd listener = TcpListen(4, &port);
  const v1::Server server = StartProxy(port);
  Fd client, upstream;
  Connect(server, listener.get(), &client, &upstream);
  ASSERT_TRUE(WriteAll(upstream.get(), "banner"));
  ASSERT_EQ(::shutdown(upstream.get(), SHUT_WR), 0);
  EXPECT_EQ(ReadToEof(client.get()), "banner");
  ASSERT_TRUE(WriteAll(client.get(), "still talking"));
  EXPECT_EQ(ReadExactly(upstream.get(), 13), "still talking");
}

TEST_F(Proxy, UpstreamResetResetsTheClient) {
  StartAgent();
  uint16_t port = 0;
  Fd listener = TcpListen(4, &port);
  const v1::Server server = StartProxy(port);
  Fd client, upstream;
  Connect(server, listener.get(), &client, &upstream);
  ASSERT_TRUE(WriteAll(client.get(), "x"));
  ASSERT_EQ(ReadExactly(upstream.get(), 1), "x");
  CloseWithReset(upstream);
  int error = 0;
  ReadToEof(client.get(), &error);
  EXPECT_EQ(error, ECONNRESET);
  EXPECT_TRUE(WaitFor([&] {
    auto down = Find(server.id(), v1::ORIGIN_ACCEPTED);
    return down && down->state() == v1::CONNECTION_STATE_CLOSED &&
           down->close_reason() == v1::CLOSE_REASON_LOCAL_ABORT &&
           absl::StrContains(down->close_detail(), "reset");
  }));
}

TEST_F(Proxy, ClientResetResetsTheUpstream) {
  StartAgent();
  uint16_t port = 0;
  Fd listener = TcpListen(4, &port);
  const v1::Server server = StartProxy(port);
  Fd client, upstream;
  Connect(server, listener.get(), &client, &upstream);
  ASSERT_TRUE(WriteAll(client.get(), "x"));
  ASSERT_EQ(ReadExactly(upstream.get(), 1), "x");
  CloseWithReset(client);
  int error = 0;
  ReadToEof(upstream.get(), &error);
  EXPECT_EQ(error, ECONNRESET);
}

TEST_F(Proxy, RefusedUpstreamClosesTheClientWithAReason) {
  StartAgent();
  const v1::Server server = StartProxy(ClosedPort());
  Fd client = TcpConnect(FirstAddress(server));
  ASSERT_TRUE(client.valid());
  int error = 0;
  EXPECT_EQ(ReadToEof(client.get(), &error), "");
  EXPECT_EQ(error, 0);  // FIN, as toxiproxy does.
  std::optional<v1::Connection> down;
  ASSERT_TRUE(WaitFor([&] {
    down = Find(server.id(), v1::ORIGIN_ACCEPTED);
    return down && down->state() == v1::CONNECTION_STATE_CLOSED;
  }));
  EXPECT_EQ(down->close_reason(), v1::CLOSE_REASON_ERROR);
  EXPECT_THAT(down->close_detail(), HasSubstr("proxy upstream"));
  EXPECT_THAT(down->close_detail(), HasSubstr("refused"));
}

TEST_F(Proxy, PolicyRefusesTheUpstreamDial) {
  StartAgent({"--allow-dest=127.0.0.1:1-2"});
  uint16_t port = 0;
  Fd listener = TcpListen(4, &port);
  const v1::Server server = StartProxy(port);
  Fd client = TcpConnect(FirstAddress(server));
  ASSERT_TRUE(client.valid());
  EXPECT_EQ(ReadToEof(client.get()), "");
  std::optional<v1::Connection> down;
  ASSERT_TRUE(WaitFor([&] {
    down = Find(server.id(), v1::ORIGIN_ACCEPTED);
    return down && down->state() == v1::CONNECTION_STATE_CLOSED;
  }));
  EXPECT_THAT(down->close_detail(), HasSubstr("proxy upstream"));
  EXPECT_THAT(down->close_detail(), HasSubstr("allow-dest"));
  // Nothing reached the upstream.
  pollfd p{listener.get(), POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 0), 0);
}

TEST_F(Proxy, ProxiedHalvesRefuseReceiveSendAndStream) {
  StartAgent();
  uint16_t port = 0;
  Fd listener = TcpListen(4, &port);
  const v1::Server server = StartProxy(port);
  Fd client, upstream;
  Connect(server, listener.get(), &client, &upstream);
  std::optional<v1::Connection> down, up;
  ASSERT_TRUE(WaitFor([&] {
    down = Find(server.id(), v1::ORIGIN_ACCEPTED);
    up = Find(server.id(), v1::ORIGIN_PROXY_UPSTREAM);
    return down && up;
  }));
  for (const std::string& id : {down->id(), up->id()}) {
    grpc::Status send = Send(id, "x");
    EXPECT_EQ(send.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_THAT(send.error_message(), HasSubstr("the proxy relays"));

    v1::ReceiveRequest receive;
    receive.set_connection_id(id);
    v1::ReceiveResponse received;
    auto context = ContextWithDeadline();
    grpc::Status r = stub_->Receive(context.get(), receive, &received);
    EXPECT_EQ(r.error_code(), grpc::StatusCode::FAILED_PRECONDITION);

    auto stream_context = ContextWithDeadline();
    auto stream = stub_->Stream(stream_context.get());
    v1::StreamRequest start;
    start.mutable_start()->set_attach_connection_id(id);
    stream->Write(start);
    stream->WritesDone();
    v1::StreamResponse reply;
    while (stream->Read(&reply)) {
    }
    grpc::Status st = stream->Finish();
    EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION)
        << st.error_message();

    v1::CloseConnectionRequest half;
    half.set_id(id);
    half.set_mode(v1::CLOSE_MODE_SHUTDOWN_WRITE);
    v1::CloseConnectionResponse closed;
    auto close_context = ContextWithDeadline();
    EXPECT_EQ(
        stub_->CloseConnection(close_context.get(), half, &closed).error_code(),
        grpc::StatusCode::FAILED_PRECONDITION);
  }
  // The relay still works.
  ASSERT_TRUE(WriteAll(client.get(), "ok"));
  EXPECT_EQ(ReadExactly(upstream.get(), 2), "ok");
}

TEST_F(Proxy, CloseConnectionOnOneHalfClosesBoth) {
  StartAgent();
  uint16_t port = 0;
  Fd listener = TcpListen(4, &port);
  const v1::Server server = StartProxy(port);
  Fd client, upstream;
  Connect(server, listener.get(), &client, &upstream);
  std::optional<v1::Connection> up;
  ASSERT_TRUE(WaitFor([&] {
    up = Find(server.id(), v1::ORIGIN_PROXY_UPSTREAM);
    return up.has_value();
  }));
  v1::CloseConnectionRequest request;
  request.set_id(up->id());
  v1::CloseConnectionResponse response;
  auto context = ContextWithDeadline();
  ASSERT_TRUE(stub_->CloseConnection(context.get(), request, &response).ok());
  int error = 0;
  EXPECT_EQ(ReadToEof(upstream.get(), &error), "");
  EXPECT_EQ(ReadToEof(client.get(), &error), "");
  EXPECT_EQ(error, 0);
}

TEST_F(Proxy, BadProxySpecsAreInvalidArgument) {
  StartAgent();
  auto start = [&](auto fill) {
    v1::StartServerRequest request;
    request.mutable_bind()->set_host("127.0.0.1");
    fill(request);
    v1::StartServerResponse response;
    auto context = ContextWithDeadline();
    return stub_->StartServer(context.get(), request, &response);
  };
  grpc::Status no_port = start([](v1::StartServerRequest& r) {
    r.mutable_behavior()->mutable_proxy()->mutable_upstream()->set_host(
        "127.0.0.1");
  });
  EXPECT_EQ(no_port.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(no_port.error_message(), HasSubstr("upstream.port"));
  grpc::Status no_host = start([](v1::StartServerRequest& r) {
    r.mutable_behavior()->mutable_proxy()->mutable_upstream()->set_port(80);
  });
  EXPECT_EQ(no_host.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(no_host.error_message(), HasSubstr("upstream.host"));
  grpc::Status udp_to_tcp = start([](v1::StartServerRequest& r) {
    r.set_transport(v1::TRANSPORT_UDP);
    auto* proxy = r.mutable_behavior()->mutable_proxy();
    proxy->set_transport(v1::TRANSPORT_TCP);
    proxy->mutable_upstream()->set_host("127.0.0.1");
    proxy->mutable_upstream()->set_port(80);
  });
  EXPECT_EQ(udp_to_tcp.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(udp_to_tcp.error_message(),
              HasSubstr("behavior.proxy.transport"));
  grpc::Status unix_relative = start([](v1::StartServerRequest& r) {
    auto* proxy = r.mutable_behavior()->mutable_proxy();
    proxy->set_transport(v1::TRANSPORT_UNIX);
    proxy->mutable_upstream()->set_unix_path("relative.sock");
  });
  EXPECT_EQ(unix_relative.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(unix_relative.error_message(), HasSubstr("unix_path"));
}

TEST_F(Proxy, UdpRepliesGoToTheRightPeer) {
  StartAgent();
  // The upstream: a plain UDP socket that answers "to:" + what it got.
  Fd up = UdpBound();
  const uint16_t up_port = LocalPort(up.get());
  const v1::Server server = StartProxy(up_port, v1::TRANSPORT_UDP);
  Fd a = UdpBound(), b = UdpBound();
  const SocketAddress to = FirstAddress(server);
  ASSERT_TRUE(SendTo(a.get(), "from-a", to));
  ASSERT_TRUE(SendTo(b.get(), "from-b", to));
  for (int i = 0; i < 2; ++i) {
    sockaddr_storage from{};
    socklen_t len = sizeof from;
    char buf[64];
    pollfd p{up.get(), POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 30000), 1);
    const ssize_t n = ::recvfrom(up.get(), buf, sizeof buf, 0,
                                 reinterpret_cast<sockaddr*>(&from), &len);
    ASSERT_GT(n, 0);
    const std::string reply = absl::StrCat("to:", std::string(buf, n));
    ASSERT_EQ(::sendto(up.get(), reply.data(), reply.size(), 0,
                       reinterpret_cast<sockaddr*>(&from), len),
              static_cast<ssize_t>(reply.size()));
  }
  EXPECT_EQ(RecvDatagram(a.get(), absl::Seconds(30)), "to:from-a");
  EXPECT_EQ(RecvDatagram(b.get(), absl::Seconds(30)), "to:from-b");
  // Two sessions, each linked to its own upstream socket.
  int linked = 0;
  for (const v1::Connection& c : Connections(server.id())) {
    if (c.origin() == v1::ORIGIN_UDP_PEER && !c.peer_connection_id().empty()) {
      ++linked;
    }
  }
  EXPECT_EQ(linked, 2);
}

TEST_F(Proxy, UdpUpstreamRepliesFallUnderTheReplyBudget) {
  StartAgent();
  Fd up = UdpBound();
  const v1::Server server = StartLoopbackServer(*stub_, [&](auto& r) {
    r.set_transport(v1::TRANSPORT_UDP);
    r.mutable_udp()->set_reply_peer_ratio(1);
    r.mutable_udp()->set_reply_peer_grant_bytes(100);
    auto* proxy = r.mutable_behavior()->mutable_proxy();
    proxy->mutable_upstream()->set_host("127.0.0.1");
    proxy->mutable_upstream()->set_port(LocalPort(up.get()));
  });
  Fd a = UdpBound();
  ASSERT_TRUE(SendTo(a.get(), "x", FirstAddress(server)));
  sockaddr_storage from{};
  socklen_t len = sizeof from;
  char buf[16];
  pollfd p{up.get(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 30000), 1);
  ASSERT_EQ(::recvfrom(up.get(), buf, sizeof buf, 0,
                       reinterpret_cast<sockaddr*>(&from), &len),
            1);
  // An amplifying upstream: 1 byte in, 1,000 bytes back. Above 1x + 100.
  const std::string big(1000, 'A');
  ASSERT_EQ(::sendto(up.get(), big.data(), big.size(), 0,
                     reinterpret_cast<sockaddr*>(&from), len),
            1000);
  ASSERT_TRUE(WaitFor([&] {
    v1::ListServersRequest request;
    v1::ListServersResponse response;
    auto context = ContextWithDeadline();
    stub_->ListServers(context.get(), request, &response);
    for (const v1::Server& s : response.servers()) {
      if (s.id() == server.id()) return s.counters().replies_dropped() == 1;
    }
    return false;
  }));
  EXPECT_EQ(RecvDatagram(a.get(), absl::Milliseconds(200)), std::nullopt);
}

TEST_F(Proxy, UnixListenerRelaysToTcpUpstream) {
  StartAgent();
  TempDir dir;
  const std::string path = dir.path() + "/proxy.sock";
  uint16_t port = 0;
  Fd listener = TcpListen(4, &port);
  StartLoopbackServer(*stub_, [&](v1::StartServerRequest& r) {
    r.set_transport(v1::TRANSPORT_UNIX);
    r.mutable_bind()->Clear();
    r.mutable_bind()->set_unix_path(path);
    auto* proxy = r.mutable_behavior()->mutable_proxy();
    proxy->set_transport(v1::TRANSPORT_TCP);
    proxy->mutable_upstream()->set_host("127.0.0.1");
    proxy->mutable_upstream()->set_port(port);
  });
  Fd client = UnixConnect(path);
  ASSERT_TRUE(client.valid());
  Fd upstream = Accept(listener.get());
  ASSERT_TRUE(upstream.valid());
  ASSERT_TRUE(WriteAll(client.get(), "over unix"));
  EXPECT_EQ(ReadExactly(upstream.get(), 9), "over unix");
  ASSERT_TRUE(WriteAll(upstream.get(), "back"));
  EXPECT_EQ(ReadExactly(client.get(), 4), "back");
}

TEST_F(Proxy, CliProxyStartAndConnList) {
  StartAgent();
  uint16_t port = 0;
  Fd listener = TcpListen(4, &port);
  CommandResult start = RunSockctl(
      agent_->address(),
      {"-o", "addr", "proxy", "start", "--listen", "127.0.0.1:0", "--upstream",
       absl::StrCat("127.0.0.1:", port), "--label", "team=qa"});
  ASSERT_EQ(start.exit_code, 0) << start.err;
  const std::string addr(absl::StripAsciiWhitespace(start.out));
  const size_t colon = addr.rfind(':');
  ASSERT_NE(colon, std::string::npos) << addr;
  Fd client = TcpConnect(Ip(
      "127.0.0.1", static_cast<uint16_t>(std::stoi(addr.substr(colon + 1)))));
  ASSERT_TRUE(client.valid());
  Fd upstream = Accept(listener.get());
  ASSERT_TRUE(WriteAll(client.get(), "hi"));
  EXPECT_EQ(ReadExactly(upstream.get(), 2), "hi");
  CommandResult list = RunSockctl(agent_->address(), {"conn", "list"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_THAT(list.out, HasSubstr("proxy upstream of srv-1, peer conn-"));
  EXPECT_THAT(list.out, HasSubstr("accepted by srv-1, peer conn-"));
  CommandResult servers = RunSockctl(agent_->address(), {"server", "list"});
  EXPECT_THAT(servers.out, HasSubstr(absl::StrCat("proxy>127.0.0.1:", port)));

  CommandResult bad = RunSockctl(agent_->address(),
                                 {"proxy", "start", "--upstream", "127.0.0.1"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.err, HasSubstr("HOST:PORT"));
  CommandResult server_start =
      RunSockctl(agent_->address(), {"-q", "server", "start", "--proxy-to",
                                     absl::StrCat("127.0.0.1:", port)});
  EXPECT_EQ(server_start.exit_code, 0) << server_start.err;
}

TEST_F(Proxy, CliImportsToxiproxyConfig) {
  StartAgent();
  uint16_t port = 0;
  Fd listener = TcpListen(4, &port);
  TempDir dir;
  const std::string file = dir.path() + "/toxiproxy.json";
  std::ofstream(file) << R"([
    {"name": "redis", "listen": "127.0.0.1:0",
     "upstream": "127.0.0.1:)"
                      << port << R"(", "enabled": true,
     "toxics": [{"type": "latency", "attributes": {"latency": 10}}]},
    {"name": "off", "listen": "127.0.0.1:0",
     "upstream": "127.0.0.1:1", "enabled": false}
  ])";
  CommandResult import =
      RunSockctl(agent_->address(), {"-o", "json", "proxy", "import", file});
  ASSERT_EQ(import.exit_code, 0) << import.err;
  EXPECT_THAT(import.out, HasSubstr(R"("toxiproxy":"redis")"));
  EXPECT_THAT(import.out, ::testing::Not(HasSubstr(R"("toxiproxy":"off")")));

  std::ofstream(file) << R"([{"name": "x", "listen": "127.0.0.1:0"}])";
  CommandResult missing =
      RunSockctl(agent_->address(), {"proxy", "import", file});
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_THAT(missing.err, HasSubstr("proxy 1 (x)"));
  std::ofstream(file) << "{not json";
  CommandResult garbage =
      RunSockctl(agent_->address(), {"proxy", "import", file});
  EXPECT_EQ(garbage.exit_code, 2);
  EXPECT_THAT(garbage.err, HasSubstr("not a toxiproxy config file"));
}

}  // namespace
}  // namespace sockagent::testing
