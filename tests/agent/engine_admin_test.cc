// Engine tests of the bookkeeping around sockets: limits, the closed
// history, label selectors, pagination, TTL and idle timeouts, shutdown,
// option validation, and the memory an idle connection costs.
#include <malloc.h>
#include <sys/socket.h>

#include <atomic>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/agent/engine_test_util.h"

#if defined(__SANITIZE_ADDRESS__)
// From the sanitizer runtime (GCC ships the symbol but not the header).
extern "C" size_t __sanitizer_get_current_allocated_bytes();
#endif

namespace sockagent::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::SizeIs;

class EngineLimits : public EngineTest {};
class EngineSelectors : public EngineTest {};
class EnginePagination : public EngineTest {};
class EngineTimeouts : public EngineTest {};
class EngineLifecycle : public EngineTest {};

std::vector<std::string> Ids(const std::vector<ConnectionInfo>& conns) {
  std::vector<std::string> out;
  for (const auto& c : conns) out.push_back(c.id);
  return out;
}

TEST_F(EngineLimits, MaxServers) {
  EngineOptions options;
  options.max_servers = 2;
  MakeEngine(options);
  absl::StatusOr<ServerInfo> a =
      sync_->StartServer(LoopbackServer(BehaviorKind::kHold));
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(sync_->StartServer(LoopbackServer(BehaviorKind::kHold)).ok());
  absl::StatusOr<ServerInfo> third =
      sync_->StartServer(LoopbackServer(BehaviorKind::kHold));
  EXPECT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(third.status().message(), HasSubstr("max_servers (2)"));
  ASSERT_TRUE(sync_->StopServers(Selector{a->id, {}}).ok());
  EXPECT_TRUE(sync_->StartServer(LoopbackServer(BehaviorKind::kHold)).ok());
}

// Per-server metrics series are an opt-in with a bound: beyond it a server
// that asks is refused (one that does not ask still starts), a stopped one
// frees its slot, and a named server replaced by itself keeps it.
TEST_F(EngineLimits, MaxMetricsServers) {
  EngineOptions options;
  options.max_metrics_servers = 2;
  MakeEngine(options);
  auto with_metrics = [](std::string name = "") {
    ServerSpec spec = LoopbackServer(BehaviorKind::kHold);
    spec.metrics = true;
    spec.name = std::move(name);
    return spec;
  };
  absl::StatusOr<ServerInfo> a = sync_->StartServer(with_metrics());
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_TRUE(a->metrics);
  absl::StatusOr<ServerInfo> named = sync_->StartServer(with_metrics("web"));
  ASSERT_TRUE(named.ok()) << named.status();
  absl::StatusOr<ServerInfo> third = sync_->StartServer(with_metrics());
  EXPECT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(third.status().message(),
              HasSubstr("metrics: 2 listening servers already export"));
  EXPECT_TRUE(sync_->StartServer(LoopbackServer(BehaviorKind::kHold)).ok());
  // Replacing "web" (another backlog) swaps it for itself: same slot.
  ServerSpec again = with_metrics("web");
  again.backlog = 7;
  again.replace = true;
  absl::StatusOr<ServerInfo> replaced = sync_->StartServer(again);
  ASSERT_TRUE(replaced.ok()) << replaced.status();
  EXPECT_EQ(replaced->start_outcome, StartOutcome::kReplaced);
  ASSERT_TRUE(sync_->StopServers(Selector{a->id, {}}).ok());
  EXPECT_TRUE(sync_->StartServer(with_metrics()).ok());
}

TEST_F(EngineLimits, MaxConnectionsRejectsAcceptsAndClients) {
  EngineOptions options;
  options.max_connections = 2;
  MakeEngine(options);
  Fd a;
  absl::StatusOr<ServerInfo> server = StartWithClient(&a);
  ASSERT_TRUE(server.ok()) << server.status();
  Fd b = TcpConnect(server->local_addresses[0]);
  ASSERT_TRUE(WaitFor([&] { return sync_->AllConnections().size() == 2; }));
  Fd c = TcpConnect(server->local_addresses[0]);  // Completes in the kernel.
  int error = 0;
  ReadToEof(c.get(), &error);
  EXPECT_EQ(error, ECONNRESET);  // Then the engine refuses it.
  std::optional<ServerInfo> info = sync_->Server(server->id);
  EXPECT_EQ(info->counters.connections_rejected, 1u);
  EXPECT_EQ(info->counters.connections_accepted, 2u);
  absl::StatusOr<ConnectionInfo> client =
      sync_->OpenClient(ClientTo(server->local_addresses[0]));
  EXPECT_EQ(client.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(client.status().message(), HasSubstr("max_connections (2)"));
}

TEST_F(EngineLimits, ClosedHistoryIsBoundedOldestFirst) {
  EngineOptions options;
  options.closed_connections_kept = 3;
  MakeEngine(options);
  absl::StatusOr<ServerInfo> server =
      sync_->StartServer(LoopbackServer(BehaviorKind::kHold));
  ASSERT_TRUE(server.ok());
  std::vector<Fd> clients;
  for (int i = 0; i < 5; ++i) {
    clients.push_back(TcpConnect(server->local_addresses[0]));
  }
  ASSERT_TRUE(WaitFor([&] { return sync_->AllConnections().size() == 5; }));
  for (const char* id : {"conn-2", "conn-1", "conn-5", "conn-4", "conn-3"}) {
    ASSERT_TRUE(sync_->Close(id, CloseMode::kAbort).ok());
  }
  // The two closed first (conn-2, conn-1) are forgotten.
  std::vector<ConnectionInfo> all;
  ASSERT_TRUE(WaitFor([&] {
    all = sync_->AllConnections();
    return all.size() == 3;
  }));
  EXPECT_THAT(Ids(all), ElementsAre("conn-3", "conn-4", "conn-5"));
  for (const auto& c : all) {
    EXPECT_EQ(c.close_reason, CloseReason::kLocalAbort);
    EXPECT_NE(c.closed_at, absl::InfinitePast());
  }
  EXPECT_EQ(sync_->Receive("conn-1").status().code(),
            absl::StatusCode::kNotFound);
  // The default listing shows open connections only.
  absl::StatusOr<Page<ConnectionInfo>> open =
      sync_->ListConnections(ConnectionFilter{});
  EXPECT_TRUE(open->items.empty());
}

TEST_F(EngineSelectors, StopAndCloseByLabel) {
  ServerSpec a = LoopbackServer(BehaviorKind::kHold);
  a.labels = {{"team", "a"}, {"run", "1"}};
  ServerSpec b = LoopbackServer(BehaviorKind::kHold);
  b.labels = {{"team", "b"}};
  absl::StatusOr<ServerInfo> sa = sync_->StartServer(a);
  absl::StatusOr<ServerInfo> sb = sync_->StartServer(b);
  ASSERT_TRUE(sa.ok() && sb.ok());
  Fd ca1 = TcpConnect(sa->local_addresses[0]);
  Fd ca2 = TcpConnect(sa->local_addresses[0]);
  Fd cb = TcpConnect(sb->local_addresses[0]);
  ASSERT_TRUE(WaitFor([&] { return sync_->AllConnections().size() == 3; }));

  ConnectionFilter filter;
  filter.selector = {{"team", "a"}};
  EXPECT_THAT(sync_->ListConnections(filter)->items, SizeIs(2));
  ServerFilter sfilter;
  sfilter.selector = {{"team", "b"}};
  EXPECT_THAT(sync_->ListServers(sfilter)->items, SizeIs(1));

  // Errors: both, neither; a selector matching nothing is fine.
  EXPECT_EQ(
      sync_->StopServers(Selector{sa->id, {{"team", "a"}}}).status().code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(sync_->StopServers(Selector{}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(sync_->Close(Selector{}).status().code(),
            absl::StatusCode::kInvalidArgument);
  absl::StatusOr<StopResult> none =
      sync_->StopServers(Selector{"", {{"team", "nobody"}}});
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->servers.empty());

  absl::StatusOr<StopResult> stopped =
      sync_->StopServers(Selector{"", {{"team", "a"}}}, true);
  ASSERT_TRUE(stopped.ok());
  ASSERT_THAT(stopped->servers, SizeIs(1));
  EXPECT_EQ(stopped->servers[0].id, sa->id);
  EXPECT_EQ(stopped->servers[0].state, ServerState::kStopped);
  EXPECT_EQ(stopped->servers[0].stop_reason, "stopped by request");
  EXPECT_EQ(stopped->connections_closed, 2u);
  for (const auto& c : sync_->ConnectionsOf(sa->id)) {
    EXPECT_EQ(c.state, ConnectionState::kClosed);
    EXPECT_EQ(c.close_reason, CloseReason::kServerStopped);
  }
  EXPECT_EQ(ReadToEof(ca1.get()), "");
  // Stopped servers stay listable when asked.
  EXPECT_THAT(sync_->ListServers(ServerFilter{})->items, SizeIs(1));
  ServerFilter with_stopped;
  with_stopped.include_stopped = true;
  EXPECT_THAT(sync_->ListServers(with_stopped)->items, SizeIs(2));

  absl::StatusOr<std::vector<ConnectionInfo>> closed =
      sync_->Close(Selector{"", {{"team", "b"}}}, CloseMode::kGraceful);
  ASSERT_TRUE(closed.ok());
  ASSERT_THAT(*closed, SizeIs(1));
  EXPECT_EQ((*closed)[0].close_reason, CloseReason::kLocalClose);
  // The server without close_connections keeps serving.
  EXPECT_EQ(sync_->Server(sb->id)->state, ServerState::kListening);
}

TEST_F(EnginePagination, PagesFollowCreationOrder) {
  absl::StatusOr<ServerInfo> server =
      sync_->StartServer(LoopbackServer(BehaviorKind::kHold));
  ASSERT_TRUE(server.ok());
  std::vector<Fd> clients;
  for (int i = 0; i < 25; ++i) {
    clients.push_back(TcpConnect(server->local_addresses[0]));
  }
  ASSERT_TRUE(WaitFor([&] { return sync_->AllConnections().size() == 25; }));
  ConnectionFilter filter;
  filter.page_size = 10;
  std::vector<std::string> seen;
  std::vector<size_t> sizes;
  for (;;) {
    absl::StatusOr<Page<ConnectionInfo>> page = sync_->ListConnections(filter);
    ASSERT_TRUE(page.ok()) << page.status();
    sizes.push_back(page->items.size());
    for (const auto& c : page->items) seen.push_back(c.id);
    if (page->next_page_token.empty()) break;
    filter.page_token = page->next_page_token;
    if (sizes.size() == 2) {
      // Created while paging: appears on a later page, never twice.
      clients.push_back(TcpConnect(server->local_addresses[0]));
      ASSERT_TRUE(
          WaitFor([&] { return sync_->AllConnections().size() == 26; }));
    }
  }
  EXPECT_THAT(sizes, ElementsAre(10, 10, 6));
  ASSERT_THAT(seen, SizeIs(26));
  for (int i = 0; i < 26; ++i) EXPECT_EQ(seen[i], absl::StrCat("conn-", i + 1));

  filter = {};  // page_size 0: 100, so everything at once.
  absl::StatusOr<Page<ConnectionInfo>> all = sync_->ListConnections(filter);
  EXPECT_THAT(all->items, SizeIs(26));
  EXPECT_TRUE(all->next_page_token.empty());
  filter.page_token = "garbage";
  EXPECT_EQ(sync_->ListConnections(filter).status().code(),
            absl::StatusCode::kInvalidArgument);
  ServerFilter sfilter;
  sfilter.page_token = "conn-3";
  EXPECT_EQ(sync_->ListServers(sfilter).status().code(),
            absl::StatusCode::kInvalidArgument);
  // Filters by transport and state.
  filter = {};
  filter.transport = Transport::kUdp;
  EXPECT_TRUE(sync_->ListConnections(filter)->items.empty());
  filter = {};
  filter.states = {ConnectionState::kPeerClosed};
  EXPECT_TRUE(sync_->ListConnections(filter)->items.empty());
  ::shutdown(clients[0].get(), SHUT_WR);
  ASSERT_TRUE(WaitFor([&] {
    auto page = sync_->ListConnections(filter);
    return page->items.size() == 1 && page->items[0].id == "conn-1";
  }));
}

TEST_F(EngineTimeouts, ServerTtlStopsServer) {
  ServerSpec spec = LoopbackServer(BehaviorKind::kHold);
  spec.ttl = absl::Milliseconds(200);
  absl::StatusOr<ServerInfo> server = sync_->StartServer(spec);
  ASSERT_TRUE(server.ok());
  EXPECT_EQ(server->ttl, absl::Milliseconds(200));
  std::optional<ServerInfo> info;
  ASSERT_TRUE(WaitFor([&] {
    info = sync_->Server(server->id);
    return info->state == ServerState::kStopped;
  }));
  EXPECT_EQ(info->stop_reason, "ttl expired");
  EXPECT_FALSE(TcpConnect(server->local_addresses[0]).valid());
}

TEST_F(EngineTimeouts, IdleTimeoutClosesAcceptedConnection) {
  ServerSpec spec = LoopbackServer(BehaviorKind::kHold);
  spec.idle_timeout = absl::Milliseconds(300);
  Fd client;
  absl::StatusOr<ServerInfo> server = StartWithClient(&client, spec);
  ASSERT_TRUE(server.ok()) << server.status();
  const absl::Time start = absl::Now();
  EXPECT_EQ(ReadToEof(client.get()), "");
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(250));
  std::optional<ConnectionInfo> conn = sync_->Connection("conn-1");
  EXPECT_EQ(conn->close_reason, CloseReason::kIdleTimeout);
  EXPECT_EQ(conn->idle_timeout, absl::Milliseconds(300));
}

TEST_F(EngineTimeouts, ClientTtlAndIdle) {
  uint16_t port = 0;
  Fd listener = TcpListen(8, &port);
  ClientSpec spec = ClientTo(Ip("127.0.0.1", port));
  spec.ttl = absl::Milliseconds(200);
  absl::StatusOr<ConnectionInfo> ttl_conn = sync_->OpenClient(spec);
  ASSERT_TRUE(ttl_conn.ok());
  spec.ttl = absl::ZeroDuration();
  spec.idle_timeout = absl::Milliseconds(200);
  absl::StatusOr<ConnectionInfo> idle_conn = sync_->OpenClient(spec);
  ASSERT_TRUE(idle_conn.ok());
  std::optional<ConnectionInfo> a, b;
  ASSERT_TRUE(WaitFor([&] {
    a = sync_->Connection(ttl_conn->id);
    b = sync_->Connection(idle_conn->id);
    return a->state == ConnectionState::kClosed &&
           b->state == ConnectionState::kClosed;
  }));
  EXPECT_EQ(a->close_reason, CloseReason::kTtlExpired);
  EXPECT_EQ(b->close_reason, CloseReason::kIdleTimeout);
}

TEST_F(EngineLifecycle, DryRunDescribesTheServerWithItsLabelsAndStartsNothing) {
  // Found by the service fuzzer: a dry run of a new server answered
  // without the labels it would carry.
  ServerSpec spec = LoopbackServer(BehaviorKind::kEcho);
  spec.name = "web";
  spec.labels = {{"team", "qa"}, {std::string(63, 'k'), std::string(256, 'v')}};
  spec.dry_run = true;
  absl::StatusOr<ServerInfo> preview = sync_->StartServer(spec);
  ASSERT_TRUE(preview.ok()) << preview.status();
  EXPECT_EQ(preview->labels, spec.labels);
  EXPECT_EQ(preview->name, "web");
  EXPECT_TRUE(preview->id.empty());
  ServerFilter all;
  all.include_stopped = true;
  absl::StatusOr<Page<ServerInfo>> listed = sync_->ListServers(all);
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_TRUE(listed->items.empty());
}

TEST_F(EngineLifecycle, ShutdownClosesEverythingAndAnswersLateCalls) {
  Fd client;
  absl::StatusOr<ServerInfo> server = StartWithClient(&client);
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_TRUE(WaitFor([&] { return sync_->AllConnections().size() == 1; }));
  absl::Notification parked_done;
  absl::StatusOr<ReceiveResult> parked;
  ReceiveSpec spec;
  spec.wait = absl::Seconds(60);
  engine_->Receive("conn-1", spec, [&](absl::StatusOr<ReceiveResult> r) {
    parked = std::move(r);
    parked_done.Notify();
  });
  engine_->Shutdown();
  ASSERT_TRUE(parked_done.HasBeenNotified());
  EXPECT_EQ(parked.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(parked.status().message(), "agent shutting down");
  // The peer sees the connection end, and the listener is gone.
  EXPECT_EQ(ReadToEof(client.get()), "");
  EXPECT_FALSE(TcpConnect(server->local_addresses[0]).valid());
  // Calls after shutdown are answered at once, on the caller's thread.
  absl::StatusOr<Page<ServerInfo>> late = sync_->ListServers(ServerFilter{});
  EXPECT_EQ(late.status().code(), absl::StatusCode::kUnavailable);
  engine_->Shutdown();  // Idempotent.
}

TEST(EngineOptionsTest, CreateRejectsBadOptions) {
  ResolverPool resolver({.threads = 1});
  EngineOptions options;
  options.recv_buffer_bytes = 0;
  EXPECT_EQ(Engine::Create(options, &resolver).status().code(),
            absl::StatusCode::kInvalidArgument);
  options = {};
  options.max_send_bytes = options.send_buffer_bytes + 1;
  EXPECT_EQ(Engine::Create(options, &resolver).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// User memory now: the sanitizer allocator's count under ASan (which
// replaces malloc), glibc's otherwise.
size_t AllocatedBytes() {
#if defined(__SANITIZE_ADDRESS__)
  return __sanitizer_get_current_allocated_bytes();
#else
  return mallinfo2().uordblks;
#endif
}

TEST_F(EngineLifecycle, IdleConnectionCostsWellUnderOneKiB) {
  absl::StatusOr<ServerInfo> server =
      sync_->StartServer(LoopbackServer(BehaviorKind::kHold));
  ASSERT_TRUE(server.ok());
  constexpr int kWarm = 50;
  constexpr int kConns = 2000;
  std::vector<Fd> clients;
  clients.reserve(kWarm + kConns);
  auto connect = [&](int n) {
    for (int i = 0; i < n; ++i) {
      clients.push_back(TcpConnect(server->local_addresses[0]));
    }
    const size_t want = clients.size();
    return WaitFor([&] {
      return sync_->Server(server->id)->counters.connections_accepted == want;
    });
  };
  ASSERT_TRUE(connect(kWarm));  // Warm up the maps and Asio's pools.
  const size_t before = AllocatedBytes();
  ASSERT_TRUE(connect(kConns));
  const size_t after = AllocatedBytes();
  const double per_conn = static_cast<double>(after - before) / kConns;
  std::fprintf(stderr,
               "[ measure  ] user memory per idle TCP connection: %.0f bytes\n",
               per_conn);
  EXPECT_LT(per_conn, 1024 * 0.8);
}

}  // namespace
}  // namespace sockagent::testing
