// Engine tests of the proxy behaviour (agent/proxy.h) with plain POSIX
// peers as client and upstream: a named upstream resolved when the
// connection arrives (the client's first bytes held meanwhile), the relay
// stalling a writer within send_buffer_bytes when the upstream does not
// read, and stopping the server closing both halves; a proxy whose
// upstream is its own listening address (refused at start when it is a
// literal, per connection when a name resolves to it), and a client that
// leaves while the upstream dial hangs (a listener whose accept queue is
// full drops the SYN: the dial sits in SYN_SENT) cancelling that dial.
#include <sys/socket.h>

#include <atomic>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/agent/engine_test_util.h"

namespace sockagent::testing {
namespace {

class EngineProxy : public EngineTest {
 protected:
  ServerSpec ProxyTo(const std::string& host, uint16_t port) {
    ServerSpec spec = LoopbackServer(BehaviorKind::kProxy);
    spec.behavior.proxy_upstream.host = host;
    spec.behavior.proxy_upstream.port = absl::StrCat(port);
    spec.labels = {{"team", "qa"}};
    return spec;
  }
  std::optional<ConnectionInfo> Half(const std::string& server_id,
                                     Origin origin) {
    ConnectionFilter filter;
    filter.server_id = server_id;
    filter.include_closed = true;
    absl::StatusOr<Page<ConnectionInfo>> page = sync_->ListConnections(filter);
    if (!page.ok()) return std::nullopt;
    for (const ConnectionInfo& c : page->items) {
      if (c.origin == origin) return c;
    }
    return std::nullopt;
  }
};

TEST_F(EngineProxy, NamedUpstreamResolvesPerConnectionAndHeldBytesArrive) {
  uint16_t port = 0;
  Fd listener = TcpListen(4, &port);
  Fd client;
  absl::StatusOr<ServerInfo> server =
      StartWithClient(&client, ProxyTo("localhost", port));
  ASSERT_TRUE(server.ok());
  // Written at once: the name lookup runs on the resolver pool meanwhile.
  ASSERT_TRUE(WriteAll(client.get(), "early bytes"));
  ASSERT_EQ(::shutdown(client.get(), SHUT_WR), 0);
  Fd upstream = Accept(listener.get());
  ASSERT_TRUE(upstream.valid());
  EXPECT_EQ(ReadToEof(upstream.get()), "early bytes");
  std::optional<ConnectionInfo> up = Half(server->id, Origin::kProxyUpstream);
  ASSERT_TRUE(up.has_value());
  EXPECT_EQ(up->labels.at("team"), "qa");
  EXPECT_FALSE(up->peer_connection_id.empty());
}

TEST_F(EngineProxy, NonReadingUpstreamStallsTheWriterWithinTheBound) {
  uint16_t port = 0;
  Fd listener = TcpListen(4, &port);
  Fd client;
  absl::StatusOr<ServerInfo> server =
      StartWithClient(&client, ProxyTo("127.0.0.1", port));
  ASSERT_TRUE(server.ok());
  Fd upstream = Accept(listener.get());
  ASSERT_TRUE(upstream.valid());
  std::atomic<uint64_t> written{0};
  std::thread writer([&] {
    const std::string piece = Pattern(0, 1 << 16);
    while (written.load() < (256ull << 20)) {
      const ssize_t n =
          ::send(client.get(), piece.data(), piece.size(), MSG_NOSIGNAL);
      if (n <= 0) return;
      written.fetch_add(static_cast<uint64_t>(n));
    }
  });
  // The writer stops making progress: the agent stopped reading it.
  uint64_t last = written.load();
  absl::Time since = absl::Now();
  EXPECT_TRUE(WaitFor([&] {
    const uint64_t now = written.load();
    if (now != last) {
      last = now;
      since = absl::Now();
    }
    return absl::Now() - since >= absl::Milliseconds(500);
  }));
  std::optional<ConnectionInfo> up = Half(server->id, Origin::kProxyUpstream);
  ASSERT_TRUE(up.has_value());
  EXPECT_LE(up->counters.send_buffered_peak,
            engine_->options().send_buffer_bytes);
  EXPECT_LT(written.load(), 256ull << 20);
  // Reading everything releases the writer; nothing is lost or reordered.
  ::shutdown(client.get(), SHUT_RDWR);  // Ends the writer's last send.
  writer.join();
  const uint64_t total = written.load();
  const std::string got = ReadExactly(upstream.get(), total);
  ASSERT_EQ(got.size(), total);
  for (uint64_t i = 0; i < total; i += 4099) {
    ASSERT_EQ(got[i], PatternByte(i % (1 << 16))) << i;
  }
}

// Sockets of this network namespace in SYN_SENT toward 127.0.0.1:`port`,
// from the kernel's own table (/proc/net/tcp): the proxy's upstream dials
// still waiting for an answer.
int SynSentTo(uint16_t port) {
  std::ifstream in("/proc/net/tcp");
  std::string line;
  std::getline(in, line);  // The header.
  char want[16];
  std::snprintf(want, sizeof(want), "0100007F:%04X", port);
  int n = 0;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string slot, local, remote, state;
    fields >> slot >> local >> remote >> state;
    if (remote == want && state == "02") ++n;
  }
  return n;
}

// A port nobody listens on now (bound, then closed again).
uint16_t FreePort() {
  uint16_t port = 0;
  Fd fd = TcpListen(1, &port);
  return port;
}

TEST_F(EngineProxy, AnUpstreamThatIsTheProxysOwnAddressIsRefusedAtStart) {
  const uint16_t port = FreePort();
  struct Case {
    const char* bind;
    const char* upstream;
  } loops[] = {
      {"127.0.0.1", "127.0.0.1"},
      {"0.0.0.0", "127.0.0.1"},
      {"0.0.0.0", "0.0.0.0"},
      {"127.0.0.1", "::ffff:127.0.0.1"},
  };
  for (const Case& c : loops) {
    ServerSpec spec = ProxyTo(c.upstream, port);
    spec.bind.host = c.bind;
    spec.bind.port = absl::StrCat(port);
    absl::StatusOr<ServerInfo> server = sync_->StartServer(spec);
    ASSERT_FALSE(server.ok()) << c.bind << " -> " << c.upstream;
    EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(server.status().message(),
                ::testing::HasSubstr("behavior.proxy.upstream"));
    EXPECT_THAT(server.status().message(),
                ::testing::HasSubstr("its own listening address"));
  }
  // Nothing stayed bound: the port serves a proxy to another address (not
  // a loop: 127.0.0.2 is not an address this server listens on).
  ServerSpec other = ProxyTo("127.0.0.2", port);
  other.bind.port = absl::StrCat(port);
  absl::StatusOr<ServerInfo> server = sync_->StartServer(other);
  EXPECT_TRUE(server.ok()) << server.status();
}

TEST_F(EngineProxy, AnUpstreamNameThatResolvesToItselfIsRefusedPerConnection) {
  const uint16_t port = FreePort();
  // "localhost" is only known once a connection dials it.
  ServerSpec spec = ProxyTo("localhost", port);
  spec.bind.port = absl::StrCat(port);
  Fd client;
  absl::StatusOr<ServerInfo> server = StartWithClient(&client, spec);
  ASSERT_TRUE(server.ok());
  EXPECT_EQ(ReadToEof(client.get()), "");  // Closed with a FIN.
  std::optional<ConnectionInfo> down;
  ASSERT_TRUE(WaitFor([&] {
    down = Half(server->id, Origin::kAccepted);
    return down.has_value() && down->state == ConnectionState::kClosed;
  }));
  EXPECT_EQ(down->close_reason, CloseReason::kError);
  EXPECT_THAT(down->close_detail,
              ::testing::HasSubstr("its own listening address 127.0.0.1:"));
  // One connection, not a loop of them, and no upstream half.
  std::optional<ServerInfo> s = sync_->Server(server->id);
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->counters.connections_accepted, 1u);
  EXPECT_FALSE(Half(server->id, Origin::kProxyUpstream).has_value());
}

TEST_F(EngineProxy, AClientLeavingBeforeTheUpstreamConnectsCancelsTheDial) {
  EngineOptions options;
  options.default_connect_timeout = absl::Seconds(60);
  MakeEngine(options);
  // Backlog 0 and one connection nobody accepts: the queue is full, the
  // kernel drops further SYNs, and the proxy's dial waits in SYN_SENT.
  uint16_t port = 0;
  Fd listener = TcpListen(0, &port);
  Fd filler = TcpConnect(Ip("127.0.0.1", port));
  ASSERT_TRUE(filler.valid());
  Fd client;
  absl::StatusOr<ServerInfo> server =
      StartWithClient(&client, ProxyTo("127.0.0.1", port));
  ASSERT_TRUE(server.ok());
  ASSERT_TRUE(WaitFor([&] { return SynSentTo(port) == 1; }, absl::Seconds(20)))
      << "the upstream dial never waited in SYN_SENT";
  // The client leaves: a reset closes the downstream. (A FIN alone is a
  // half-close: the proxy still dials, to deliver the held bytes and the
  // FIN, as before.)
  CloseWithReset(client);
  // The dial's socket goes at once, not at the 60 s connect timeout.
  EXPECT_TRUE(WaitFor([&] { return SynSentTo(port) == 0; }, absl::Seconds(5)));
  std::optional<ConnectionInfo> down;
  ASSERT_TRUE(WaitFor([&] {
    down = Half(server->id, Origin::kAccepted);
    return down.has_value() && down->state == ConnectionState::kClosed;
  }));
  EXPECT_THAT(down->close_detail,
              ::testing::HasSubstr("the client left before the upstream "
                                   "connected"));
  EXPECT_FALSE(Half(server->id, Origin::kProxyUpstream).has_value());
}

TEST_F(EngineProxy, StoppingTheServerClosesBothHalves) {
  uint16_t port = 0;
  Fd listener = TcpListen(4, &port);
  Fd client;
  absl::StatusOr<ServerInfo> server =
      StartWithClient(&client, ProxyTo("127.0.0.1", port));
  ASSERT_TRUE(server.ok());
  Fd upstream = Accept(listener.get());
  ASSERT_TRUE(upstream.valid());
  ASSERT_TRUE(WaitFor(
      [&] { return Half(server->id, Origin::kProxyUpstream).has_value(); }));
  Selector selector;
  selector.id = server->id;
  ASSERT_TRUE(sync_->StopServers(selector, /*close_connections=*/true).ok());
  EXPECT_EQ(ReadToEof(client.get()), "");
  EXPECT_EQ(ReadToEof(upstream.get()), "");
  std::optional<ConnectionInfo> up = Half(server->id, Origin::kProxyUpstream);
  ASSERT_TRUE(up.has_value());
  EXPECT_EQ(up->state, ConnectionState::kClosed);
  EXPECT_THAT(up->close_detail, ::testing::HasSubstr("proxy: the other half"));
}

}  // namespace
}  // namespace sockagent::testing
