// Engine tests of the bounds that protect the agent as a whole: every socket
// the engine holds (closing tails and connects in progress included) counts
// against max_connections; all buffered bytes together are bounded by
// max_total_buffered_bytes (the closed history by a quarter of it); name
// lookups in progress are bounded and Shutdown does not wait for them;
// listings do not copy long greetings.
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/agent/engine_test_util.h"
#include "tests/support/netns.h"
#include "tests/support/subprocess.h"

namespace sockagent::testing {
namespace {

using ::testing::HasSubstr;

class EngineConnectionLimit : public EngineTest {};
class EngineTotalBytes : public EngineTest {};
class EngineServerListing : public EngineTest {};

// Peers that never send their FIN leave graceful-close tails behind when
// the agent closes: each holds a socket for up to close_linger, so each
// counts. (A greeting-and-close server no longer leaves tails for peers
// that sent nothing: it closes those sockets at once.)
TEST_F(EngineConnectionLimit, ClosingTailsCountAgainstMaxConnections) {
  EngineOptions options;
  options.max_connections = 2;
  MakeEngine(options);
  absl::StatusOr<ServerInfo> server =
      sync_->StartServer(LoopbackServer(BehaviorKind::kHold));
  ASSERT_TRUE(server.ok()) << server.status();
  std::vector<Fd> quiet;
  for (int i = 0; i < 2; ++i) {
    quiet.push_back(TcpConnect(server->local_addresses[0]));
    ASSERT_TRUE(quiet.back().valid());
  }
  ASSERT_TRUE(WaitFor([&] { return sync_->AllConnections().size() == 2; }));
  for (const ConnectionInfo& c : sync_->AllConnections()) {
    ASSERT_TRUE(sync_->Close(c.id).ok());
  }
  for (Fd& q : quiet) EXPECT_EQ(ReadToEof(q.get()), "");  // The agent's FIN.
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

// The agent-wide bound pauses TCP reading like a full receive buffer (the
// writer stalls, nothing is lost), refuses Send, and once the total falls
// resumes every paused connection, also one whose own buffer is empty.
TEST_F(EngineTotalBytes, FullTotalPausesReadingRefusesSendAndResumes) {
  EngineOptions options;
  options.max_total_buffered_bytes = 256 * 1024;
  MakeEngine(options);
  Fd writer;
  absl::StatusOr<ServerInfo> server = StartWithClient(&writer);
  ASSERT_TRUE(server.ok()) << server.status();
  constexpr size_t kTotal = 4 << 20;
  const std::string payload = Pattern(0, kTotal);
  std::atomic<bool> wrote{false};
  std::thread write_thread([&] {
    wrote = WriteAll(writer.get(), payload);
    ::shutdown(writer.get(), SHUT_WR);
  });
  absl::Cleanup stop_writer = [&] {
    if (!write_thread.joinable()) return;
    ::shutdown(writer.get(), SHUT_RDWR);  // A failed test: unblock it.
    write_thread.join();
  };
  const std::string writer_id = "conn-1";
  ASSERT_TRUE(WaitFor([&] {
    return sync_->Connection(writer_id)->counters.recv_buffered ==
           options.max_total_buffered_bytes;
  }));
  absl::StatusOr<SendResult> sent = sync_->Send(writer_id, "x");
  EXPECT_EQ(sent.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(sent.status().message(), HasSubstr("max_total_buffered_bytes"));
  // A second connection finds no room at all: it pauses with nothing
  // buffered, and only the agent-wide resume can wake it.
  Fd second = TcpConnect(server->local_addresses[0]);
  ASSERT_TRUE(WriteAll(second.get(), "ping"));
  ASSERT_TRUE(WaitFor([&] { return sync_->AllConnections().size() == 2; }));
  absl::StatusOr<std::string> got = sync_->ReceiveExactly(writer_id, kTotal);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(*got == payload) << got->size();
  write_thread.join();
  EXPECT_TRUE(wrote);
  ASSERT_TRUE(WaitFor([&] {
    return sync_->Connection("conn-2")->counters.recv_buffered == 4;
  }));
  EXPECT_EQ(sync_->Receive("conn-2")->data, "ping");
}

TEST_F(EngineTotalBytes, FullTotalDropsDatagrams) {
  EngineOptions options;
  options.max_total_buffered_bytes = 10 * kDatagramOverheadBytes;
  MakeEngine(options);
  absl::StatusOr<ServerInfo> server =
      sync_->StartServer(LoopbackServer(BehaviorKind::kHold, Transport::kUdp));
  ASSERT_TRUE(server.ok()) << server.status();
  Fd peer = UdpBound();
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(SendTo(peer.get(), "", server->local_addresses[0]));
  }
  std::optional<ServerInfo> info;
  ASSERT_TRUE(WaitFor([&] {
    info = sync_->Server(server->id);
    return info->counters.datagrams_received == 20;
  }));
  EXPECT_EQ(info->counters.datagrams_dropped, 10u);
}

// Closed connections keep what their peer sent before a reset, but all of
// them together at most a quarter of the agent-wide bound: the oldest give
// theirs up first, and Receive then says so.
TEST_F(EngineTotalBytes, ClosedHistoryKeepsAtMostAQuarter) {
  EngineOptions options;
  options.max_total_buffered_bytes = 4000;  // History: 1000 bytes.
  MakeEngine(options);
  absl::StatusOr<ServerInfo> server =
      sync_->StartServer(LoopbackServer(BehaviorKind::kHold));
  ASSERT_TRUE(server.ok()) << server.status();
  for (const char* id : {"conn-1", "conn-2"}) {
    Fd peer = TcpConnect(server->local_addresses[0]);
    ASSERT_TRUE(WriteAll(peer.get(), std::string(800, id[5])));
    ASSERT_TRUE(WaitFor(
        [&] { return sync_->Connection(id)->counters.recv_buffered == 800; }));
    CloseWithReset(peer);
    ASSERT_TRUE(WaitFor([&] {
      return sync_->Connection(id)->state == ConnectionState::kClosed;
    }));
  }
  std::optional<ConnectionInfo> first;
  ASSERT_TRUE(WaitFor([&] {
    first = sync_->Connection("conn-1");
    return first->counters.recv_buffered == 0;
  }));
  EXPECT_THAT(first->close_detail, HasSubstr("800 unreceived bytes discarded"));
  absl::StatusOr<ReceiveResult> r = sync_->Receive("conn-1");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(r.status().message(), HasSubstr("discarded"));
  r = sync_->Receive("conn-2");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->data, std::string(800, '2'));
  EXPECT_EQ(sync_->Receive("conn-2").status().code(),
            absl::StatusCode::kAborted);
}

TEST(EngineTotalBytesOption, ZeroIsInvalid) {
  EngineOptions options;
  options.max_total_buffered_bytes = 0;
  ResolverPool resolver({.threads = 1});
  EXPECT_EQ(Engine::Create(options, &resolver).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// Listings carry a bounded piece of the greeting and its full size; peers
// get all of it.
TEST_F(EngineServerListing, LongGreetingIsListedShortened) {
  ServerSpec spec = LoopbackServer(BehaviorKind::kGreeting);
  spec.behavior.greeting = Pattern(3, 1 << 20);
  spec.behavior.close_after_greeting = true;
  absl::StatusOr<ServerInfo> server = sync_->StartServer(spec);
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_EQ(server->greeting_bytes, spec.behavior.greeting.size());
  EXPECT_EQ(server->behavior.greeting,
            spec.behavior.greeting.substr(0, kListedGreetingBytes));
  std::optional<ServerInfo> listed = sync_->Server(server->id);
  EXPECT_EQ(listed->greeting_bytes, spec.behavior.greeting.size());
  EXPECT_EQ(listed->behavior.greeting.size(), kListedGreetingBytes);
  Fd peer = TcpConnect(server->local_addresses[0]);
  EXPECT_TRUE(ReadToEof(peer.get()) == spec.behavior.greeting);
  absl::StatusOr<StopResult> stopped =
      sync_->StopServers(Selector{server->id, {}});
  ASSERT_TRUE(stopped.ok());
  EXPECT_EQ(stopped->servers[0].behavior.greeting.size(), kListedGreetingBytes);
}

// Several servers stopped at once with close_connections: each one's
// connections close, nobody else's.
TEST_F(EngineServerListing, StoppingSeveralServersClosesOnlyTheirConnections) {
  std::vector<ServerInfo> servers;
  std::vector<Fd> peers;
  for (const char* team : {"a", "b", "a"}) {
    ServerSpec spec = LoopbackServer(BehaviorKind::kHold);
    spec.labels = {{"team", team}};
    absl::StatusOr<ServerInfo> s = sync_->StartServer(spec);
    ASSERT_TRUE(s.ok()) << s.status();
    servers.push_back(*s);
    peers.push_back(TcpConnect(s->local_addresses[0]));
    peers.push_back(TcpConnect(s->local_addresses[0]));
  }
  ASSERT_TRUE(WaitFor([&] { return sync_->AllConnections().size() == 6; }));
  absl::StatusOr<StopResult> stopped =
      sync_->StopServers(Selector{"", {{"team", "a"}}}, true);
  ASSERT_TRUE(stopped.ok()) << stopped.status();
  EXPECT_EQ(stopped->servers.size(), 2u);
  EXPECT_EQ(stopped->connections_closed, 4u);
  for (const ConnectionInfo& c : sync_->AllConnections()) {
    const bool of_b = c.server_id == servers[1].id;
    EXPECT_EQ(c.state, of_b ? ConnectionState::kOpen : ConnectionState::kClosed)
        << c.id;
  }
}

// Name lookups that hang: run in a child process inside a network
// namespace of its own whose resolv.conf names a DNS server that never
// answers (the machine's DNS server is never asked).
constexpr char kLookupChildEnv[] = "SOCKAGENT_ENGINE_LOOKUP_CHILD";

TEST(EngineNameLookups, BoundedAndShutdownDoesNotWaitForThem) {
  absl::StatusOr<std::unique_ptr<TestNetns>> netns =
      TestNetns::Create("sa-lookup", "127.0.0.1 localhost\n",
                        "nameserver 127.0.0.1\noptions timeout:5 attempts:1\n");
  if (!netns.ok()) GTEST_SKIP() << "SKIPPED: " << netns.status();
  char self[4096];
  const ssize_t n = ::readlink("/proc/self/exe", self, sizeof(self) - 1);
  ASSERT_GT(n, 0);
  self[n] = '\0';
  CommandResult child =
      RunCommand({"ip", "netns", "exec", (*netns)->name(), "env",
                  std::string(kLookupChildEnv) + "=1", self,
                  "--gtest_filter=EngineNameLookupsChild.*"},
                 "", absl::Seconds(60));
  EXPECT_FALSE(child.timed_out);
  EXPECT_EQ(child.exit_code, 0) << child.out << child.err;
  EXPECT_THAT(child.out, HasSubstr("[  PASSED  ] 1 test"));
}

// The child's half: skipped unless run by the test above.
TEST(EngineNameLookupsChild, InNamespace) {
  if (std::getenv(kLookupChildEnv) == nullptr) {
    GTEST_SKIP() << "runs inside EngineNameLookups' namespace only";
  }
  // The namespace's DNS server: it reads queries and answers none (until
  // the end, so the lookups still running let go of their threads).
  Fd dns(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_storage ss;
  const socklen_t len = ToSockaddr(Ip("127.0.0.1", 53), &ss);
  ASSERT_EQ(::bind(dns.get(), reinterpret_cast<sockaddr*>(&ss), len), 0);

  auto resolver = std::make_unique<ResolverPool>(
      ResolverPool::Options{.threads = 2, .max_queued = kMaxNameLookups});
  absl::StatusOr<std::unique_ptr<Engine>> engine =
      Engine::Create(EngineOptions{}, resolver.get());
  ASSERT_TRUE(engine.ok()) << engine.status();
  struct Answers {
    absl::Mutex mu;
    std::vector<absl::Status> statuses ABSL_GUARDED_BY(mu);
  };
  auto answers = std::make_shared<Answers>();
  auto open = [&](int i) {
    ClientSpec spec;
    spec.remote.host = absl::StrCat("slow-", i, ".test");
    spec.remote.port = "80";
    (*engine)->OpenClient(spec, absl::InfiniteFuture(),
                          [answers](absl::StatusOr<ConnectionInfo> r) {
                            absl::MutexLock lock(&answers->mu);
                            answers->statuses.push_back(r.status());
                          });
  };
  for (size_t i = 0; i < kMaxNameLookups; ++i) open(static_cast<int>(i));
  // One more is refused at once.
  SyncEngine sync(engine->get());
  ClientSpec spec;
  spec.remote.host = "one-too-many.test";
  spec.remote.port = "80";
  absl::StatusOr<ConnectionInfo> refused = sync.OpenClient(spec);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted)
      << refused.status();
  {
    absl::MutexLock lock(&answers->mu);
    EXPECT_TRUE(answers->statuses.empty());
  }
  // A lookup is now blocked in libc, waiting for the DNS server.
  pollfd p{dns.get(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 20000), 1);
  const absl::Time start = absl::Now();
  (*engine)->Shutdown();
  const absl::Duration took = absl::Now() - start;
  EXPECT_LT(took, absl::Seconds(3));  // A lookup takes 5 s to time out.
  {
    absl::MutexLock lock(&answers->mu);
    EXPECT_EQ(answers->statuses.size(), kMaxNameLookups);
    for (const absl::Status& s : answers->statuses) {
      EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
    }
  }
  // Answer NXDOMAIN to what is waiting, so the resolver threads finish
  // their lookups before the pool is destroyed.
  std::atomic<bool> stop{false};
  std::thread answer([&] {
    while (!stop) {
      pollfd q{dns.get(), POLLIN, 0};
      if (::poll(&q, 1, 50) != 1) continue;
      char query[4096];
      sockaddr_storage from;
      socklen_t from_len = sizeof(from);
      const ssize_t got =
          ::recvfrom(dns.get(), query, sizeof(query), 0,
                     reinterpret_cast<sockaddr*>(&from), &from_len);
      if (got < 12) continue;
      query[2] = static_cast<char>(0x80 | (query[2] & 0x79));  // QR, RD.
      query[3] = static_cast<char>(0x80 | 3);                  // RA, NXDOMAIN.
      std::memset(query + 6, 0, 6);  // No answer, authority, additional.
      ::sendto(dns.get(), query, got, 0, reinterpret_cast<sockaddr*>(&from),
               from_len);
    }
  });
  engine->reset();
  resolver.reset();
  stop = true;
  answer.join();
}

}  // namespace
}  // namespace sockagent::testing
