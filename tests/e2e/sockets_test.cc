// The socket verbs through the real sockagentd over gRPC, with plain POSIX
// sockets (test code, not our engine) as the independent peers.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <atomic>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "sockagent/v1/agent.grpc.pb.h"
#include "tests/support/agent_process.h"
#include "tests/support/agent_rpc.h"
#include "tests/support/grpc_client.h"
#include "tests/support/posix_peer.h"

namespace sockagent::testing {
namespace {

using ::testing::HasSubstr;

// A running agent and a stub, with small helpers for the common calls.
class AgentFixture : public AgentTestBase {
 protected:
  void SetUp() override { StartAgent(); }

  v1::Server StartServer(v1::StartServerRequest request) {
    v1::StartServerResponse response;
    auto context = ContextWithDeadline();
    grpc::Status status = stub_->StartServer(context.get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response.server();
  }

  static v1::StartServerRequest Tcp(const std::string& host = "127.0.0.1") {
    v1::StartServerRequest request;
    request.set_transport(v1::TRANSPORT_TCP);
    request.mutable_bind()->set_host(host);
    request.mutable_bind()->set_port(0);
    return request;
  }

  std::vector<v1::Connection> Connections(const std::string& server_id,
                                          bool include_closed = false) {
    v1::ListConnectionsRequest request;
    request.set_server_id(server_id);
    request.set_include_closed(include_closed);
    v1::ListConnectionsResponse response;
    auto context = ContextWithDeadline();
    grpc::Status status =
        stub_->ListConnections(context.get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return {response.connections().begin(), response.connections().end()};
  }

  grpc::Status Receive(const std::string& id, v1::ReceiveResponse* response,
                       uint32_t max_bytes = 0,
                       absl::Duration wait = absl::Seconds(5)) {
    v1::ReceiveRequest request;
    request.set_connection_id(id);
    request.set_max_bytes(max_bytes);
    request.mutable_wait()->set_seconds(absl::ToInt64Seconds(wait));
    auto context = ContextWithDeadline();
    return stub_->Receive(context.get(), request, response);
  }

  int64_t AgentRss() { return ProcessRssBytes(agent_->pid()); }
};

uint16_t PortOf(const v1::Server& server, int i = 0) {
  return static_cast<uint16_t>(server.local_addresses(i).port());
}

TEST_F(AgentFixture, SeedGreetingServerGreetsPlainClientThenCloses) {
  v1::StartServerRequest request = Tcp();
  request.mutable_behavior()->mutable_greeting()->set_data(
      "Thank you for connecting");
  request.mutable_behavior()->mutable_greeting()->set_close_after(true);
  v1::Server server = StartServer(request);
  ASSERT_EQ(server.local_addresses_size(), 1);

  Fd client = TcpConnect(Ip("127.0.0.1", PortOf(server)));
  ASSERT_TRUE(client.valid());
  const uint16_t client_port = LocalPort(client.get());
  EXPECT_EQ(ReadToEof(client.get()), "Thank you for connecting");

  std::vector<v1::Connection> connections;
  ASSERT_TRUE(WaitFor([&] {
    connections = Connections(server.id(), /*include_closed=*/true);
    return connections.size() == 1 &&
           connections[0].state() == v1::CONNECTION_STATE_CLOSED;
  }));
  EXPECT_EQ(connections[0].origin(), v1::ORIGIN_ACCEPTED);
  EXPECT_EQ(connections[0].remote().ip(), "127.0.0.1");
  EXPECT_EQ(connections[0].remote().port(), client_port);
  EXPECT_EQ(connections[0].counters().bytes_sent(), 24u);
  EXPECT_EQ(connections[0].close_reason(), v1::CLOSE_REASON_LOCAL_CLOSE);
}

TEST_F(AgentFixture, ClientReadsPlainServersGreeting) {
  uint16_t port = 0;
  Fd listener = TcpListen(4, &port);
  ASSERT_TRUE(listener.valid());
  std::thread server([&] {
    Fd peer = Accept(listener.get());
    WriteAll(peer.get(), "Thank you for connecting");
  });
  v1::OpenClientRequest request;
  request.mutable_remote()->set_host("127.0.0.1");
  request.mutable_remote()->set_port(port);
  v1::OpenClientResponse opened;
  auto context = ContextWithDeadline();
  grpc::Status status = stub_->OpenClient(context.get(), request, &opened);
  ASSERT_TRUE(status.ok()) << status.error_message();
  server.join();
  std::string got;
  bool eof = false;
  while (!eof) {
    v1::ReceiveResponse response;
    ASSERT_TRUE(Receive(opened.connection().id(), &response).ok());
    got += response.data();
    eof = response.end_of_stream();
  }
  EXPECT_EQ(got, "Thank you for connecting");
}

TEST_F(AgentFixture, EchoOverIpv6Loopback) {
  v1::StartServerRequest request = Tcp("::1");
  request.mutable_behavior()->mutable_echo();
  v1::Server server = StartServer(request);
  ASSERT_EQ(server.local_addresses(0).family(), v1::FAMILY_IPV6);
  Fd client = TcpConnect(Ip("::1", PortOf(server)));
  ASSERT_TRUE(client.valid());
  ASSERT_TRUE(WriteAll(client.get(), "ping over v6"));
  EXPECT_EQ(ReadExactly(client.get(), 12), "ping over v6");
}

TEST_F(AgentFixture, UdpPeersGetSessionsAndReplies) {
  v1::StartServerRequest request = Tcp();
  request.set_transport(v1::TRANSPORT_UDP);
  v1::Server server = StartServer(request);
  Fd a = UdpBound(), b = UdpBound();
  const SocketAddress to = Ip("127.0.0.1", PortOf(server));
  ASSERT_TRUE(SendTo(a.get(), "from a", to));
  ASSERT_TRUE(SendTo(b.get(), "from b", to));
  std::vector<v1::Connection> sessions;
  ASSERT_TRUE(WaitFor([&] {
    sessions = Connections(server.id());
    return sessions.size() == 2;
  }));
  for (const auto& session : sessions) {
    EXPECT_EQ(session.origin(), v1::ORIGIN_UDP_PEER);
    ASSERT_TRUE(
        Send(session.id(), "reply " + std::to_string(session.remote().port()))
            .ok());
  }
  EXPECT_EQ(RecvDatagram(a.get()),
            "reply " + std::to_string(LocalPort(a.get())));
  EXPECT_EQ(RecvDatagram(b.get()),
            "reply " + std::to_string(LocalPort(b.get())));
}

TEST_F(AgentFixture, BackpressureKeepsBufferBoundedAndLosesNothing) {
  constexpr uint64_t kBound = 1 << 20;
  constexpr uint64_t kTotal = 64 << 20;
  agent_.reset();
  StartAgent({"--recv-buffer-bytes=" + std::to_string(kBound)});
  v1::Server server = StartServer(Tcp());
  const int64_t rss_before = AgentRss();

  Fd client = TcpConnect(Ip("127.0.0.1", PortOf(server)));
  ASSERT_TRUE(client.valid());
  std::atomic<uint64_t> written{0};
  std::thread writer([&] {
    constexpr size_t kChunk = 1 << 20;
    for (uint64_t off = 0; off < kTotal; off += kChunk) {
      if (!WriteAll(client.get(), Pattern(off, kChunk))) return;
      written += kChunk;
    }
  });
  // Nobody calls Receive: the agent fills its bound and stops reading.
  std::string id;
  ASSERT_TRUE(WaitFor([&] {
    auto conns = Connections(server.id());
    if (conns.empty()) return false;
    id = conns[0].id();
    return conns[0].counters().recv_buffered() >= kBound - 65536;
  }));
  // The plain sender stalls far short of the total: only kernel buffers
  // hold the rest.
  EXPECT_LT(written.load(), kTotal / 2);
  const int64_t rss_full = AgentRss();
  EXPECT_LT(rss_full - rss_before, 32 << 20) << "agent RSS grew too much";

  // Draining delivers every byte, in order.
  uint64_t received = 0;
  bool ok = true;
  while (received < kTotal && ok) {
    v1::ReceiveResponse response;
    grpc::Status status = Receive(id, &response, 1 << 20);
    ASSERT_TRUE(status.ok()) << status.error_message();
    ok = response.data() == Pattern(received, response.data().size());
    received += response.data().size();
  }
  writer.join();
  EXPECT_TRUE(ok) << "byte mismatch near offset " << received;
  EXPECT_EQ(received, kTotal);
  auto conns = Connections(server.id());
  ASSERT_EQ(conns.size(), 1u);
  EXPECT_LE(conns[0].counters().recv_buffered_peak(), kBound + 65536);
  EXPECT_EQ(conns[0].counters().bytes_received(), kTotal);
}

TEST_F(AgentFixture, ThousandParkedReceivesDoNotBlockOtherCalls) {
  constexpr int kConnections = 1000;
  v1::Server server = StartServer(Tcp());
  std::vector<Fd> clients;
  for (int i = 0; i < kConnections; ++i) {
    clients.push_back(TcpConnect(Ip("127.0.0.1", PortOf(server))));
    ASSERT_TRUE(clients.back().valid()) << i;
  }
  std::vector<std::string> ids;
  ASSERT_TRUE(WaitFor([&] {
    v1::ListConnectionsRequest request;
    request.set_server_id(server.id());
    request.set_page_size(1000);
    v1::ListConnectionsResponse response;
    auto context = ContextWithDeadline();
    if (!stub_->ListConnections(context.get(), request, &response).ok()) {
      return false;
    }
    ids.clear();
    for (const auto& c : response.connections()) ids.push_back(c.id());
    return ids.size() == kConnections;
  }));

  struct Parked {
    grpc::ClientContext context;
    v1::ReceiveRequest request;
    v1::ReceiveResponse response;
    grpc::Status status;
  };
  std::vector<std::unique_ptr<Parked>> parked;
  absl::Mutex mu;
  int done = 0;
  for (const auto& id : ids) {
    auto p = std::make_unique<Parked>();
    p->request.set_connection_id(id);
    p->request.mutable_wait()->set_seconds(60);
    p->context.set_deadline(std::chrono::system_clock::now() +
                            std::chrono::seconds(120));
    Parked* raw = p.get();
    stub_->async()->Receive(&raw->context, &raw->request, &raw->response,
                            [raw, &mu, &done](grpc::Status status) {
                              absl::MutexLock lock(&mu);
                              raw->status = status;
                              ++done;
                            });
    parked.push_back(std::move(p));
  }

  // Other calls answer promptly meanwhile.
  auto health = grpc::health::v1::Health::NewStub(ChannelTo(agent_->address()));
  for (int i = 0; i < 5; ++i) {
    auto context = ContextWithDeadline(std::chrono::seconds(2));
    grpc::health::v1::HealthCheckResponse h;
    EXPECT_TRUE(health->Check(context.get(), {}, &h).ok());
    v1::ListServersResponse servers;
    auto context2 = ContextWithDeadline(std::chrono::seconds(2));
    EXPECT_TRUE(stub_->ListServers(context2.get(), {}, &servers).ok());
  }
  {
    absl::MutexLock lock(&mu);
    EXPECT_EQ(done, 0) << "a parked Receive returned before data arrived";
  }
  // Send on a parked connection works (a hold server's connection can be
  // written to while its Receive waits).
  EXPECT_TRUE(Send(ids[0], "x").ok());
  EXPECT_EQ(ReadExactly(clients[0].get(), 1), "x");

  for (int i = 0; i < kConnections; ++i) {
    ASSERT_TRUE(WriteAll(clients[i].get(), "data " + std::to_string(i)));
  }
  {
    absl::MutexLock lock(&mu);
    ASSERT_TRUE(mu.AwaitWithTimeout(
        absl::Condition(
            +[](int* d) { return *d == kConnections; }, &done),
        absl::Seconds(60)));
  }
  for (const auto& p : parked) {
    EXPECT_TRUE(p->status.ok()) << p->status.error_message();
    EXPECT_THAT(p->response.data(), HasSubstr("data "));
  }
}

TEST_F(AgentFixture, ErrorsHaveClearCodes) {
  v1::Server server = StartServer(Tcp());
  {  // Address in use.
    v1::StartServerRequest again = Tcp();
    again.mutable_bind()->set_port(PortOf(server));
    v1::StartServerResponse response;
    auto context = ContextWithDeadline();
    grpc::Status status = stub_->StartServer(context.get(), again, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::ALREADY_EXISTS);
    EXPECT_THAT(status.error_message(), HasSubstr("in use"));
  }
  {  // Unknown ids.
    EXPECT_EQ(Send("conn-999999", "x").error_code(),
              grpc::StatusCode::NOT_FOUND);
    v1::ReceiveResponse response;
    EXPECT_EQ(Receive("conn-999999", &response).error_code(),
              grpc::StatusCode::NOT_FOUND);
    v1::StopServerRequest stop;
    stop.set_id("srv-999999");
    v1::StopServerResponse stopped;
    auto context = ContextWithDeadline();
    EXPECT_EQ(stub_->StopServer(context.get(), stop, &stopped).error_code(),
              grpc::StatusCode::NOT_FOUND);
  }
  {  // Port out of range; unknown enum.
    v1::StartServerRequest bad = Tcp();
    bad.mutable_bind()->set_port(65536);
    v1::StartServerResponse response;
    auto context = ContextWithDeadline();
    EXPECT_EQ(stub_->StartServer(context.get(), bad, &response).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
    bad = Tcp();
    bad.set_transport(static_cast<v1::Transport>(77));
    auto context2 = ContextWithDeadline();
    EXPECT_EQ(stub_->StartServer(context2.get(), bad, &response).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }
  {  // Connection refused: a port that was just closed.
    uint16_t port = 0;
    { Fd gone = TcpListen(1, &port); }
    v1::OpenClientRequest request;
    request.mutable_remote()->set_host("127.0.0.1");
    request.mutable_remote()->set_port(port);
    v1::OpenClientResponse response;
    auto context = ContextWithDeadline();
    grpc::Status status = stub_->OpenClient(context.get(), request, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
    EXPECT_THAT(status.error_message(), HasSubstr("refused"));
  }
  {  // Connect timeout: a listener whose backlog is full drops SYNs.
    uint16_t port = 0;
    Fd full = TcpListen(0, &port);
    std::vector<Fd> fillers;
    for (int i = 0; i < 4; ++i) {
      Fd f(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
      sockaddr_storage ss;
      socklen_t len = ToSockaddr(Ip("127.0.0.1", port), &ss);
      ::connect(f.get(), reinterpret_cast<sockaddr*>(&ss), len);
      fillers.push_back(std::move(f));
    }
    v1::OpenClientRequest request;
    request.mutable_remote()->set_host("127.0.0.1");
    request.mutable_remote()->set_port(port);
    request.mutable_connect_timeout()->set_nanos(300 * 1000 * 1000);
    v1::OpenClientResponse response;
    auto context = ContextWithDeadline();
    const absl::Time start = absl::Now();
    grpc::Status status = stub_->OpenClient(context.get(), request, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED)
        << status.error_message();
    EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  }
  {  // Port 0 is not a destination.
    v1::OpenClientRequest request;
    request.mutable_remote()->set_host("127.0.0.1");
    request.mutable_remote()->set_port(0);
    v1::OpenClientResponse response;
    auto context = ContextWithDeadline();
    EXPECT_EQ(stub_->OpenClient(context.get(), request, &response).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }
}

TEST_F(AgentFixture, LimitsAnswerResourceExhausted) {
  agent_.reset();
  StartAgent({"--max-servers=2", "--max-send-bytes=1024",
              "--send-buffer-bytes=4096", "--max-connections=2"});
  v1::Server server = StartServer(Tcp());
  StartServer(Tcp());
  v1::StartServerResponse response;
  auto context = ContextWithDeadline();
  grpc::Status status = stub_->StartServer(context.get(), Tcp(), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(status.error_message(), HasSubstr("servers"));

  Fd client = TcpConnect(Ip("127.0.0.1", PortOf(server)));
  std::string id;
  ASSERT_TRUE(WaitFor([&] {
    auto conns = Connections(server.id());
    if (conns.empty()) return false;
    id = conns[0].id();
    return true;
  }));
  // Over the per-call limit.
  status = Send(id, std::string(2048, 'x'));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  // The peer does not read; the send buffer (4 KiB) fills after the
  // kernel's buffers do.
  bool exhausted = false;
  for (int i = 0; i < 100000 && !exhausted; ++i) {
    status = Send(id, std::string(1024, 'y'));
    exhausted = status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED;
    if (!exhausted) {
      ASSERT_TRUE(status.ok()) << status.error_message();
    }
  }
  EXPECT_TRUE(exhausted);

  // Connection limit: the second accepted connection fits, a third is
  // refused by the agent and counted.
  Fd second = TcpConnect(Ip("127.0.0.1", PortOf(server)));
  Fd third = TcpConnect(Ip("127.0.0.1", PortOf(server)));
  ASSERT_TRUE(WaitFor([&] {
    v1::ListServersResponse servers;
    auto context = ContextWithDeadline();
    stub_->ListServers(context.get(), {}, &servers);
    for (const auto& s : servers.servers()) {
      if (s.id() == server.id()) {
        return s.counters().connections_rejected() >= 1;
      }
    }
    return false;
  }));
}

TEST(AgentPrivileges, PrivilegedPortAsNonRootIsPermissionDenied) {
  if (geteuid() != 0) GTEST_SKIP() << "SKIPPED: needs root to drop to nobody";
  if (RunCommand({"setpriv", "--version"}).exit_code != 0) {
    GTEST_SKIP() << "SKIPPED: setpriv (util-linux) is not installed";
  }
  auto child = ChildProcess::Start(
      {"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
       SOCKAGENTD_PATH, "--listen=127.0.0.1:0", "--insecure",
       // An open client connection holds a graceful shutdown for up to the
       // grace period.
       "--shutdown-grace=1s"});
  ASSERT_TRUE(child.ok()) << child.status();
  auto line = (*child)->ReadLine(absl::Now() + absl::Seconds(30));
  ASSERT_TRUE(line.ok()) << line.status();
  const std::string address = line->substr(line->find("serving on ") + 11);
  std::unique_ptr<v1::SocketAgent::Stub> stub =
      v1::SocketAgent::NewStub(ChannelTo(address));
  v1::StartServerRequest request;
  request.mutable_bind()->set_host("127.0.0.1");
  request.mutable_bind()->set_port(80);
  v1::StartServerResponse response;
  auto context = ContextWithDeadline();
  grpc::Status status = stub->StartServer(context.get(), request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(status.error_message(), HasSubstr("127.0.0.1:80"));
  auto stopped = (*child)->Stop(SIGTERM, absl::Now() + absl::Seconds(20));
  ASSERT_TRUE(stopped.ok());
  EXPECT_TRUE(WIFEXITED(*stopped) && WEXITSTATUS(*stopped) == 0);
}

}  // namespace
}  // namespace sockagent::testing
