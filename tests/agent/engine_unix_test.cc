// Engine tests over UNIX stream sockets: filesystem and abstract paths,
// path errors, cleanup on stop, and clients.
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/agent/engine_test_util.h"

namespace sockagent::testing {
namespace {

using ::testing::AnyOf;
using ::testing::HasSubstr;
using ::testing::SizeIs;

std::string TempSocketPath() {
  static std::atomic<int> counter{0};
  return absl::StrCat(::testing::TempDir(), "/engine-", ::getpid(), "-",
                      counter.fetch_add(1), ".sock");
}

bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

ServerSpec UnixServer(const std::string& path, BehaviorKind kind) {
  ServerSpec spec;
  spec.transport = Transport::kUnix;
  spec.bind.unix_path = path;
  spec.behavior.kind = kind;
  return spec;
}

class EngineUnixServer : public EngineTest {};
class EngineUnixClient : public EngineTest {};

TEST_F(EngineUnixServer, EchoOnPathAndFileRemovedOnStop) {
  const std::string path = TempSocketPath();
  absl::StatusOr<ServerInfo> server =
      sync_->StartServer(UnixServer(path, BehaviorKind::kEcho));
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_THAT(server->local_addresses, SizeIs(1));
  EXPECT_EQ(server->local_addresses[0].family, Family::kUnix);
  EXPECT_EQ(server->local_addresses[0].unix_path, path);
  EXPECT_EQ(server->transport, Transport::kUnix);

  Fd client = UnixConnect(path);
  ASSERT_TRUE(client.valid());
  ASSERT_TRUE(WriteAll(client.get(), "over unix"));
  EXPECT_EQ(ReadExactly(client.get(), 9), "over unix");
  std::vector<ConnectionInfo> conns = sync_->ConnectionsOf(server->id);
  ASSERT_THAT(conns, SizeIs(1));
  EXPECT_EQ(conns[0].transport, Transport::kUnix);
  EXPECT_EQ(conns[0].local.unix_path, path);

  ASSERT_TRUE(sync_->StopServers(Selector{server->id, {}}).ok());
  EXPECT_FALSE(Exists(path));
}

// Greeting and end of stream leave at accept over UNIX too: a peer that
// wrote first gets the careful tail, a quiet one is closed at once.
TEST_F(EngineUnixServer, GreetingAndCloseTails) {
  EngineOptions options;
  options.close_linger = absl::Milliseconds(60);
  MakeEngine(options);
  const std::string path = TempSocketPath();
  ServerSpec spec = UnixServer(path, BehaviorKind::kGreeting);
  spec.behavior.greeting = "hello unix";
  spec.behavior.close_after_greeting = true;
  absl::StatusOr<ServerInfo> server = sync_->StartServer(spec);
  ASSERT_TRUE(server.ok()) << server.status();

  // A UNIX connect queues the connection and its first bytes before the
  // agent accepts, so the agent almost always finds them and takes the
  // careful tail; if it ran first, it closed at once and the write or the
  // end of the read may see the close (EPIPE, ECONNRESET). The greeting
  // arrives either way.
  Fd writer = UnixConnect(path);
  ASSERT_TRUE(writer.valid());
  const bool wrote = WriteAll(writer.get(), "unread request");
  int error = 0;
  EXPECT_EQ(ReadToEof(writer.get(), &error), "hello unix");
  if (wrote) {
    EXPECT_THAT(error, AnyOf(0, ECONNRESET));
  }
  writer.Reset();

  // A quiet peer: nothing received, so the agent closed at once.
  Fd quiet = UnixConnect(path);
  ASSERT_TRUE(quiet.valid());
  EXPECT_EQ(ReadToEof(quiet.get(), &error), "hello unix");
  EXPECT_EQ(error, 0);
  std::optional<ConnectionInfo> conn =
      sync_->ConnectionWhen("conn-2", [&](const ConnectionInfo& c) {
        return c.state == ConnectionState::kClosed;
      });
  ASSERT_TRUE(conn.has_value());
  EXPECT_EQ(conn->close_reason, CloseReason::kLocalClose);
  EXPECT_EQ(conn->close_detail, "greeting sent");
  EXPECT_EQ(conn->transport, Transport::kUnix);
  std::optional<ConnectionInfo> first = sync_->Connection("conn-1");
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->counters.bytes_sent, 10u);
}

TEST_F(EngineUnixServer, ExistingPathIsAlreadyExists) {
  const std::string path = TempSocketPath();
  ASSERT_TRUE(sync_->StartServer(UnixServer(path, BehaviorKind::kHold)).ok());
  absl::StatusOr<ServerInfo> again =
      sync_->StartServer(UnixServer(path, BehaviorKind::kHold));
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(again.status().message(),
            absl::StrCat("bind unix:", path, ": address already in use"));
  // The failed start did not remove the first server's file.
  EXPECT_TRUE(Exists(path));
}

// A deep path binds (through its directory's descriptor); only the file
// name must fit in sun_path with /proc/self/fd/N/ in front of it.
TEST_F(EngineUnixServer, TooLongFileNameIsInvalidArgument) {
  const std::string path = "/tmp/" + std::string(120, 'p');
  absl::StatusOr<ServerInfo> server =
      sync_->StartServer(UnixServer(path, BehaviorKind::kHold));
  EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(server.status().message(), HasSubstr("at most 85"));
  ServerSpec spec = UnixServer(TempSocketPath(), BehaviorKind::kHold);
  spec.bind.host = "127.0.0.1";
  EXPECT_EQ(sync_->StartServer(spec).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(EngineUnixServer, AbstractNamespace) {
  const std::string name = absl::StrCat("@sockagent-engine-test-", ::getpid());
  absl::StatusOr<ServerInfo> server =
      sync_->StartServer(UnixServer(name, BehaviorKind::kHold));
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_EQ(server->local_addresses[0].unix_path, name);
  Fd client = UnixConnect(name);
  ASSERT_TRUE(client.valid());
  ASSERT_TRUE(WriteAll(client.get(), "abstract"));
  std::vector<ConnectionInfo> conns;
  ASSERT_TRUE(WaitFor([&] {
    conns = sync_->ConnectionsOf(server->id);
    return !conns.empty();
  }));
  EXPECT_EQ(sync_->ReceiveExactly(conns[0].id, 8).value_or(""), "abstract");
}

// The peer closed: a Send fails at once (the bytes could not be written)
// instead of reporting success for bytes that were lost.
TEST_F(EngineUnixServer, SendToClosedPeerFailsInsteadOfLosingBytes) {
  const std::string path = TempSocketPath();
  absl::StatusOr<ServerInfo> server =
      sync_->StartServer(UnixServer(path, BehaviorKind::kHold));
  ASSERT_TRUE(server.ok()) << server.status();
  Fd client = UnixConnect(path);
  ASSERT_TRUE(client.valid());
  std::string id;
  ASSERT_TRUE(WaitFor([&] {
    std::vector<ConnectionInfo> conns = sync_->ConnectionsOf(server->id);
    if (conns.empty()) return false;
    id = conns[0].id;
    return true;
  }));
  client.Reset();
  ASSERT_TRUE(WaitFor([&] {
    return sync_->Connection(id)->state == ConnectionState::kPeerClosed;
  }));
  absl::StatusOr<SendResult> sent = sync_->Send(id, "never read");
  EXPECT_EQ(sent.status().code(), absl::StatusCode::kAborted) << sent.status();
  EXPECT_THAT(sent.status().message(), HasSubstr(id));
  std::optional<ConnectionInfo> conn = sync_->Connection(id);
  EXPECT_EQ(conn->state, ConnectionState::kClosed);
  EXPECT_EQ(conn->counters.send_bytes_lost, 10u);
  EXPECT_EQ(conn->counters.bytes_sent, 0u);
}

TEST_F(EngineUnixClient, TalksToPlainUnixServer) {
  const std::string path = TempSocketPath();
  Fd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  ASSERT_EQ(
      ::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)),
      0);
  ASSERT_EQ(::listen(listener.get(), 4), 0);

  ClientSpec spec;
  spec.transport = Transport::kUnix;
  spec.remote.unix_path = path;
  absl::StatusOr<ConnectionInfo> conn = sync_->OpenClient(spec);
  ASSERT_TRUE(conn.ok()) << conn.status();
  EXPECT_EQ(conn->remote.unix_path, path);
  Fd peer = Accept(listener.get());
  ASSERT_TRUE(WriteAll(peer.get(), "Thank you for connecting"));
  peer.Reset();
  std::string got;
  for (;;) {
    absl::StatusOr<ReceiveResult> r =
        sync_->Receive(conn->id, absl::Seconds(5));
    ASSERT_TRUE(r.ok()) << r.status();
    got += r->data;
    if (r->end_of_stream) break;
  }
  EXPECT_EQ(got, "Thank you for connecting");
  ::unlink(path.c_str());
}

TEST_F(EngineUnixClient, MissingPathFails) {
  ClientSpec spec;
  spec.transport = Transport::kUnix;
  spec.remote.unix_path = TempSocketPath();
  absl::StatusOr<ConnectionInfo> conn = sync_->OpenClient(spec);
  EXPECT_EQ(conn.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(conn.status().message(),
              HasSubstr("connect unix:" + spec.remote.unix_path));
}

}  // namespace
}  // namespace sockagent::testing
