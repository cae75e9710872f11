// Test helpers for the engine tests: a blocking wrapper around the engine's
// callback API, plain POSIX sockets as independent peers (so the engine is
// never tested against itself), and waiting for a condition with a deadline.
//
// Any thread may use these; SyncEngine calls block the calling test thread
// (never the engine's loop thread, nor under the engine lock) until the
// engine answers.
#ifndef SOCKAGENT_TESTS_AGENT_ENGINE_TEST_UTIL_H_
#define SOCKAGENT_TESTS_AGENT_ENGINE_TEST_UTIL_H_

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "agent/engine.h"
#include "agent/resolver.h"
#include "gtest/gtest.h"
#include "tests/support/posix_peer.h"
#include "tests/support/wait.h"

namespace sockagent::testing {

// How long any single engine call or socket wait may take before the test
// fails. Generous: sanitizers and a shared 2-core machine are slow.
inline constexpr absl::Duration kTimeout = kPeerTimeout;

// Blocking calls on an Engine.
class SyncEngine {
 public:
  explicit SyncEngine(Engine* engine) : engine_(engine) {}

  absl::StatusOr<ServerInfo> StartServer(ServerSpec spec) {
    return Call<ServerInfo>([&](auto done) {
      engine_->StartServer(std::move(spec), std::move(done));
    });
  }
  absl::StatusOr<StopResult> StopServers(Selector selector,
                                         bool close_connections = false) {
    return Call<StopResult>([&](auto done) {
      engine_->StopServers(std::move(selector), close_connections,
                           std::move(done));
    });
  }
  absl::StatusOr<Page<ServerInfo>> ListServers(ServerFilter filter) {
    return Call<Page<ServerInfo>>([&](auto done) {
      engine_->ListServers(std::move(filter), std::move(done));
    });
  }
  absl::StatusOr<ConnectionInfo> OpenClient(
      ClientSpec spec, absl::Time deadline = absl::InfiniteFuture()) {
    return Call<ConnectionInfo>([&](auto done) {
      engine_->OpenClient(std::move(spec), deadline, std::move(done));
    });
  }
  absl::StatusOr<Page<ConnectionInfo>> ListConnections(
      ConnectionFilter filter) {
    return Call<Page<ConnectionInfo>>([&](auto done) {
      engine_->ListConnections(std::move(filter), std::move(done));
    });
  }
  absl::StatusOr<SendResult> Send(const std::string& id, std::string data) {
    return Call<SendResult>([&](auto done) {
      engine_->Send(id, std::move(data), std::move(done));
    });
  }
  absl::StatusOr<ReceiveResult> Receive(
      const std::string& id, absl::Duration wait = absl::ZeroDuration(),
      size_t max_bytes = 0) {
    ReceiveSpec spec;
    spec.wait = wait;
    spec.max_bytes = max_bytes;
    return Receive(id, spec);
  }
  absl::StatusOr<ReceiveResult> Receive(const std::string& id,
                                        ReceiveSpec spec) {
    return Call<ReceiveResult>(
        [&](auto done) { engine_->Receive(id, spec, std::move(done)); });
  }
  absl::StatusOr<std::vector<ConnectionInfo>> Close(
      Selector selector, CloseMode mode = CloseMode::kGraceful) {
    absl::StatusOr<CloseResult> closed = Call<CloseResult>([&](auto done) {
      engine_->CloseConnections(std::move(selector), mode, std::move(done));
    });
    if (!closed.ok()) return closed.status();
    return std::move(closed->connections);
  }
  absl::StatusOr<std::vector<ConnectionInfo>> Close(
      const std::string& id, CloseMode mode = CloseMode::kGraceful) {
    return Close(Selector{id, {}}, mode);
  }

  // Every connection (closed ones too), following pages.
  std::vector<ConnectionInfo> AllConnections(ConnectionFilter filter = {}) {
    filter.include_closed = true;
    filter.page_size = 1000;
    std::vector<ConnectionInfo> out;
    for (;;) {
      absl::StatusOr<Page<ConnectionInfo>> page = ListConnections(filter);
      EXPECT_TRUE(page.ok()) << page.status();
      if (!page.ok()) return out;
      for (auto& c : page->items) out.push_back(std::move(c));
      if (page->next_page_token.empty()) return out;
      filter.page_token = page->next_page_token;
    }
  }
  std::optional<ConnectionInfo> Connection(const std::string& id) {
    for (auto& c : AllConnections()) {
      if (c.id == id) return c;
    }
    return std::nullopt;
  }
  // Waits until connection `id` is listed and `pred` holds for it; returns
  // it as it was then, or nullopt when that did not happen within the wait.
  //   std::optional<ConnectionInfo> conn = sync_->ConnectionWhen(
  //       "conn-1", [](const ConnectionInfo& c) { return c.state == kClosed;
  //       });
  //   ASSERT_TRUE(conn.has_value());
  std::optional<ConnectionInfo> ConnectionWhen(
      const std::string& id,
      const std::function<bool(const ConnectionInfo&)>& pred) {
    std::optional<ConnectionInfo> conn;
    if (!WaitFor([&] {
          conn = Connection(id);
          return conn.has_value() && pred(*conn);
        })) {
      return std::nullopt;
    }
    return conn;
  }
  std::vector<ConnectionInfo> ConnectionsOf(const std::string& server_id) {
    ConnectionFilter filter;
    filter.server_id = server_id;
    return AllConnections(filter);
  }
  std::optional<ServerInfo> Server(const std::string& id) {
    ServerFilter filter;
    filter.include_stopped = true;
    filter.page_size = 1000;
    absl::StatusOr<Page<ServerInfo>> page = ListServers(filter);
    if (!page.ok()) return std::nullopt;
    for (auto& s : page->items) {
      if (s.id == id) return s;
    }
    return std::nullopt;
  }

  // Receives until `n` bytes arrived, end of stream, an error or kTimeout.
  absl::StatusOr<std::string> ReceiveExactly(const std::string& id, size_t n) {
    std::string out;
    const absl::Time deadline = absl::Now() + kTimeout;
    while (out.size() < n) {
      if (absl::Now() > deadline) {
        return absl::DeadlineExceededError("test: ReceiveExactly timed out");
      }
      absl::StatusOr<ReceiveResult> r =
          Receive(id, absl::Seconds(1), n - out.size());
      if (!r.ok()) return r.status();
      out += r->data;
      if (r->end_of_stream) break;
    }
    return out;
  }

 private:
  template <typename T, typename Fn>
  absl::StatusOr<T> Call(Fn fn) {
    // Shared: a late answer after a test timeout must not touch freed memory.
    struct State {
      absl::Notification done;
      std::optional<absl::StatusOr<T>> result;
    };
    auto state = std::make_shared<State>();
    fn(Done<absl::StatusOr<T>>([state](absl::StatusOr<T> r) {
      state->result = std::move(r);
      state->done.Notify();
    }));
    if (!state->done.WaitForNotificationWithTimeout(kTimeout)) {
      return absl::DeadlineExceededError("test: the engine did not answer");
    }
    return std::move(*state->result);
  }

  Engine* engine_;
};

// A loopback server spec with port 0.
inline ServerSpec LoopbackServer(BehaviorKind kind,
                                 Transport transport = Transport::kTcp,
                                 const std::string& host = "127.0.0.1") {
  ServerSpec spec;
  spec.transport = transport;
  spec.bind.host = host;
  spec.behavior.kind = kind;
  return spec;
}

inline ClientSpec ClientTo(const SocketAddress& to,
                           Transport transport = Transport::kTcp) {
  ClientSpec spec;
  spec.transport = transport;
  spec.remote.host = to.ip;
  spec.remote.port = std::to_string(to.port);
  return spec;
}

// The connection a server accepted, once it shows up in listings.
inline std::optional<ConnectionInfo> AcceptedBy(SyncEngine& sync,
                                                const std::string& server_id,
                                                size_t index = 0) {
  std::optional<ConnectionInfo> out;
  WaitFor([&] {
    std::vector<ConnectionInfo> conns = sync.ConnectionsOf(server_id);
    if (conns.size() <= index) return false;
    out = conns[index];
    return true;
  });
  return out;
}

// A fresh engine per test, shut down at the end.
class EngineTest : public ::testing::Test {
 protected:
  // The opening of most engine tests: `spec` (by default a hold server on
  // 127.0.0.1, port 0) started and one plain TCP client connected to it.
  // Returns the server, or an error when it did not start or the client did
  // not connect (a test failure is recorded either way).
  //   Fd client;
  //   absl::StatusOr<ServerInfo> server = StartWithClient(&client);
  //   ASSERT_TRUE(server.ok()) << server.status();
  absl::StatusOr<ServerInfo> StartWithClient(
      Fd* client, ServerSpec spec = LoopbackServer(BehaviorKind::kHold)) {
    absl::StatusOr<ServerInfo> server = sync_->StartServer(std::move(spec));
    EXPECT_TRUE(server.ok()) << server.status();
    if (!server.ok()) return server;
    *client = TcpConnect(server->local_addresses[0]);
    EXPECT_TRUE(client->valid());
    if (!client->valid()) {
      return absl::UnavailableError("test: the client did not connect");
    }
    return server;
  }

  // A hold server on 127.0.0.1 with one plain client connected to it;
  // returns the id of the connection the engine accepted ("" on failure,
  // after a test failure was recorded).
  std::string HoldServerWithClient(Fd* client) {
    absl::StatusOr<ServerInfo> server = StartWithClient(client);
    if (!server.ok()) return "";
    std::optional<ConnectionInfo> conn = AcceptedBy(*sync_, server->id);
    EXPECT_TRUE(conn.has_value());
    return conn.has_value() ? conn->id : "";
  }

  void SetUp() override { MakeEngine(EngineOptions{}); }
  void MakeEngine(const EngineOptions& options) {
    engine_.reset();
    // What the engine used to build for itself: 2 threads, a queue for
    // every lookup it admits.
    resolver_ = std::make_unique<ResolverPool>(ResolverPool::Options{
        .threads = 2,
        .max_queued = kMaxNameLookups,
        .numeric_hosts_only = options.numeric_hosts_only});
    absl::StatusOr<std::unique_ptr<Engine>> e =
        Engine::Create(options, resolver_.get());
    ASSERT_TRUE(e.ok()) << e.status();
    engine_ = *std::move(e);
    sync_ = std::make_unique<SyncEngine>(engine_.get());
  }
  void TearDown() override {
    sync_.reset();
    if (engine_ != nullptr) engine_->Shutdown();
    engine_.reset();
  }

  std::unique_ptr<ResolverPool> resolver_;  // Outlives engine_.
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<SyncEngine> sync_;
};

}  // namespace sockagent::testing

#endif  // SOCKAGENT_TESTS_AGENT_ENGINE_TEST_UTIL_H_
