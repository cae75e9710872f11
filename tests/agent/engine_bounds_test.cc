// Engine tests of the bounds that protect the agent as a whole: every socket
// the engine holds (closing tails and connects in progress included) counts
// against max_connections.
#include <sys/socket.h>

#include <cerrno>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/agent/engine_test_util.h"

namespace sockagent::testing {
namespace {

using ::testing::HasSubstr;

class EngineConnectionLimit : public EngineTest {};

// Peers that read a greeting but never send their FIN leave graceful-close
// tails behind: each holds a socket for up to close_linger, so each counts.
TEST_F(EngineConnectionLimit, ClosingTailsCountAgainstMaxConnections) {
  EngineOptions options;
  options.max_connections = 2;
  MakeEngine(options);
  ServerSpec spec = LoopbackServer(BehaviorKind::kGreeting);
  spec.behavior.greeting = "hi";
  spec.behavior.close_after_greeting = true;
  absl::StatusOr<ServerInfo> server = sync_->StartServer(spec);
  ASSERT_TRUE(server.ok()) << server.status();
  std::vector<Fd> quiet;
  for (int i = 0; i < 2; ++i) {
    quiet.push_back(TcpConnect(server->local_addresses[0]));
    EXPECT_EQ(ReadToEof(quiet.back().get()), "hi");  // Greeting, then FIN.
  }
  ASSERT_TRUE(WaitFor([&] {
    std::vector<ConnectionInfo> all = sync_->AllConnections();
    return all.size() == 2 && all[0].state == ConnectionState::kClosed &&
           all[1].state == ConnectionState::kClosed;
  }));
  Fd third = TcpConnect(server->local_addresses[0]);
  int error = 0;
  EXPECT_EQ(ReadToEof(third.get(), &error), "");
  EXPECT_EQ(error, ECONNRESET);
  EXPECT_EQ(sync_->Server(server->id)->counters.connections_rejected, 1u);
  absl::StatusOr<ConnectionInfo> client =
      sync_->OpenClient(ClientTo(server->local_addresses[0]));
  EXPECT_EQ(client.status().code(), absl::StatusCode::kResourceExhausted);
  // Once the tails end (the peers' FINs), there is room again.
  quiet.clear();
  ASSERT_TRUE(WaitFor([&] {
    return sync_->OpenClient(ClientTo(server->local_addresses[0])).ok();
  }));
}

// A connect in progress holds a socket too: accepts count it.
TEST_F(EngineConnectionLimit, ConnectsInProgressCountAgainstAccepts) {
  EngineOptions options;
  options.max_connections = 1;
  MakeEngine(options);
  absl::StatusOr<ServerInfo> server =
      sync_->StartServer(LoopbackServer(BehaviorKind::kHold));
  ASSERT_TRUE(server.ok()) << server.status();
  // A listener with backlog 0 that never accepts: once one connection
  // fills its queue, further connects hang.
  uint16_t port = 0;
  Fd listener = TcpListen(0, &port);
  Fd filler = TcpConnect(Ip("127.0.0.1", port));
  ASSERT_TRUE(filler.valid());
  struct State {
    absl::Notification done;
    absl::Status status;
  };
  auto state = std::make_shared<State>();
  ClientSpec hanging = ClientTo(Ip("127.0.0.1", port));
  hanging.connect_timeout = absl::Seconds(60);
  engine_->OpenClient(hanging, absl::InfiniteFuture(),
                      [state](absl::StatusOr<ConnectionInfo> r) {
                        state->status = r.status();
                        state->done.Notify();
                      });
  // Calls run in order: once this one is answered the connect is underway.
  ASSERT_TRUE(sync_->ListServers(ServerFilter{}).ok());
  Fd peer = TcpConnect(server->local_addresses[0]);
  int error = 0;
  EXPECT_EQ(ReadToEof(peer.get(), &error), "");
  EXPECT_EQ(error, ECONNRESET);
  EXPECT_EQ(sync_->Server(server->id)->counters.connections_rejected, 1u);
  EXPECT_FALSE(state->done.HasBeenNotified());
}

}  // namespace
}  // namespace sockagent::testing
