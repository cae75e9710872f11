// The Stream RPC end to end: netcat through a real sockagentd, by the real
// sockctl (connect, attach) and by a raw gRPC client, against plain POSIX
// peers in this process. Bulk transfers are checked by SHA-256 (sha256sum),
// backpressure by the agent's own counters, and endings by the statuses and
// EndOfStream messages the contract names.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpc/health/v1/health.grpc.pb.h"
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
using StreamCall =
    grpc::ClientReaderWriter<v1::StreamRequest, v1::StreamResponse>;

constexpr size_t k64MiB = 64u << 20;

std::string RandomBytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string out(n, '\0');
  for (size_t i = 0; i + 8 <= n; i += 8) {
    const uint64_t v = rng();
    std::memcpy(out.data() + i, &v, 8);
  }
  return out;
}

// SHA-256 in hex, by an independent tool.
std::string Sha256(const std::string& data) {
  CommandResult r = RunCommand({"sha256sum"}, data, absl::Seconds(60));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return r.out.substr(0, 64);
}

class StreamTest : public AgentTestBase {
 protected:
  void SetUp() override { StartAgent({}); }

  v1::Server StartServer(void (*behave)(v1::Behavior*),
                         v1::Transport transport = v1::TRANSPORT_TCP,
                         const std::string& host = "127.0.0.1") {
    return StartLoopbackServer(*stub_, [&](v1::StartServerRequest& r) {
      r.set_transport(transport);
      r.mutable_bind()->set_host(host);
      r.mutable_behavior()->Clear();
      behave(r.mutable_behavior());
    });
  }

  // The connections of `server_id` (all states, history included).
  std::vector<v1::Connection> Connections(const std::string& server_id = "") {
    v1::ListConnectionsRequest request;
    request.set_server_id(server_id);
    request.set_include_closed(true);
    v1::ListConnectionsResponse response;
    auto context = ContextWithDeadline();
    grpc::Status s = stub_->ListConnections(context.get(), request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return {response.connections().begin(), response.connections().end()};
  }

  // The id of the first connection `server` accepted, once listed.
  std::string AcceptedId(const v1::Server& server) {
    std::string id;
    WaitFor([&] {
      auto conns = Connections(server.id());
      if (!conns.empty()) id = conns[0].id();
      return !id.empty();
    });
    return id;
  }

  std::optional<v1::Connection> Connection(const std::string& id) {
    for (const auto& c : Connections()) {
      if (c.id() == id) return c;
    }
    return std::nullopt;
  }

  // A Stream whose first message is `start`; reads the Connection reply.
  struct Call {
    std::unique_ptr<grpc::ClientContext> context;
    std::unique_ptr<StreamCall> stream;
    v1::Connection connection;
  };
  Call Open(const v1::StreamStart& start,
            std::chrono::milliseconds timeout = std::chrono::seconds(120)) {
    Call call;
    call.context = ContextWithDeadline(timeout);
    call.stream = stub_->Stream(call.context.get());
    v1::StreamRequest first;
    *first.mutable_start() = start;
    EXPECT_TRUE(call.stream->Write(first));
    v1::StreamResponse reply;
    if (call.stream->Read(&reply)) {
      EXPECT_TRUE(reply.has_connection()) << reply.DebugString();
      call.connection = reply.connection();
    }
    return call;
  }
  static v1::StreamStart OpenTo(const std::string& host, uint16_t port,
                                v1::Transport transport = v1::TRANSPORT_TCP) {
    v1::StreamStart start;
    start.mutable_open()->set_transport(transport);
    start.mutable_open()->mutable_remote()->set_host(host);
    start.mutable_open()->mutable_remote()->set_port(port);
    return start;
  }
  static v1::StreamStart AttachTo(const std::string& id) {
    v1::StreamStart start;
    start.set_attach_connection_id(id);
    return start;
  }

  // The first message's status of a Stream that must fail at its start.
  grpc::Status StartFails(const v1::StreamRequest& first) {
    auto context = ContextWithDeadline();
    auto stream = stub_->Stream(context.get());
    stream->Write(first);
    stream->WritesDone();
    v1::StreamResponse reply;
    while (stream->Read(&reply)) {
      ADD_FAILURE() << "unexpected reply " << reply.DebugString();
    }
    return stream->Finish();
  }

  void ExpectHealthy() {
    auto health =
        grpc::health::v1::Health::NewStub(ChannelTo(agent_->address()));
    grpc::health::v1::HealthCheckRequest request;
    grpc::health::v1::HealthCheckResponse response;
    auto context = ContextWithDeadline();
    ASSERT_TRUE(health->Check(context.get(), request, &response).ok());
    EXPECT_EQ(response.status(),
              grpc::health::v1::HealthCheckResponse::SERVING);
  }
};

void Echo(v1::Behavior* b) { b->mutable_echo(); }
void Hold(v1::Behavior* b) { b->mutable_hold(); }

TEST_F(StreamTest, ConnectThroughEchoKeepsEvery64MiBByte) {
  const v1::Server echo = StartServer(Echo);
  const std::string data = RandomBytes(k64MiB, 1);
  CommandResult r = RunSockctl(
      agent_->address(),
      {"connect", "127.0.0.1", absl::StrCat(echo.local_addresses(0).port())},
      data);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(r.out.size(), data.size());
  EXPECT_EQ(Sha256(r.out), Sha256(data));
}

TEST_F(StreamTest, ConnectIntoPlainSinkKeepsEvery64MiBByte) {
  uint16_t port = 0;
  Fd listener = TcpListen(1, &port);
  ASSERT_TRUE(listener.valid());
  std::string received;
  std::thread sink([&] {
    Fd conn = Accept(listener.get());
    received = ReadToEof(conn.get());
    WriteAll(conn.get(), "sink done\n");
    // Closing ends the other direction: sockctl exits.
  });
  const std::string data = RandomBytes(k64MiB, 2);
  CommandResult r =
      RunSockctl(agent_->address(),
                 {"connect", "-v", "127.0.0.1", absl::StrCat(port)}, data);
  sink.join();
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "sink done\n");
  EXPECT_THAT(r.err, HasSubstr("end of stream: peer closed"));
  ASSERT_EQ(received.size(), data.size());
  EXPECT_EQ(Sha256(received), Sha256(data));
}

TEST_F(StreamTest, AttachCarries64MiBBothWaysAfterBufferedBytes) {
  const v1::Server hold = StartServer(Hold);
  Fd peer = TcpConnect(FirstAddress(hold));
  ASSERT_TRUE(peer.valid());
  // Sent before anyone attaches: buffered by the agent, delivered first.
  ASSERT_TRUE(WriteAll(peer.get(), "early bytes|"));
  std::string id;
  ASSERT_TRUE(WaitFor([&] {
    for (const auto& c : Connections(hold.id())) {
      if (c.counters().recv_buffered() == 12) id = c.id();
    }
    return !id.empty();
  }));
  const std::string to_peer = RandomBytes(k64MiB, 3);
  const std::string from_peer = RandomBytes(k64MiB, 4);
  std::string peer_got;
  std::thread peer_thread([&] {
    std::thread writer([&] {
      WriteAll(peer.get(), from_peer);
      ::shutdown(peer.get(), SHUT_WR);
    });
    peer_got = ReadToEof(peer.get());
    writer.join();
  });
  CommandResult r = RunSockctl(agent_->address(), {"attach", id}, to_peer);
  peer_thread.join();
  EXPECT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(r.out.size(), 12 + from_peer.size());
  EXPECT_EQ(r.out.substr(0, 12), "early bytes|");
  EXPECT_EQ(Sha256(r.out.substr(12)), Sha256(from_peer));
  ASSERT_EQ(peer_got.size(), to_peer.size());
  EXPECT_EQ(Sha256(peer_got), Sha256(to_peer));
  // Both FINs: the attached connection ended in order.
  auto after = Connection(id);
  ASSERT_TRUE(after.has_value());
  EXPECT_EQ(after->state(), v1::CONNECTION_STATE_CLOSED);
  EXPECT_EQ(after->close_reason(), v1::CLOSE_REASON_PEER_CLOSED);
}

TEST_F(StreamTest, ConnectOverIpv6UnixAndUdp) {
  const v1::Server echo6 = StartServer(Echo, v1::TRANSPORT_TCP, "::1");
  CommandResult r6 = RunSockctl(
      agent_->address(),
      {"connect", "::1", absl::StrCat(echo6.local_addresses(0).port())},
      "over ipv6\n");
  EXPECT_EQ(r6.exit_code, 0) << r6.err;
  EXPECT_EQ(r6.out, "over ipv6\n");

  TempDir dir;
  const std::string path = dir.path() + "/echo.sock";
  StartLoopbackServer(*stub_, [&](v1::StartServerRequest& r) {
    r.set_transport(v1::TRANSPORT_UNIX);
    r.mutable_bind()->Clear();
    r.mutable_bind()->set_unix_path(path);
    r.mutable_behavior()->Clear();
    r.mutable_behavior()->mutable_echo();
  });
  CommandResult ru =
      RunSockctl(agent_->address(), {"connect", "--unix", path}, "over unix");
  EXPECT_EQ(ru.exit_code, 0) << ru.err;
  EXPECT_EQ(ru.out, "over unix");

  const v1::Server udp = StartServer(Echo, v1::TRANSPORT_UDP);
  const absl::Time start = absl::Now();
  CommandResult rd =
      RunSockctl(agent_->address(),
                 {"connect", "--udp", "--idle", "300ms", "127.0.0.1",
                  absl::StrCat(udp.local_addresses(0).port())},
                 "one datagram");
  EXPECT_EQ(rd.exit_code, 0) << rd.err;
  EXPECT_EQ(rd.out, "one datagram");
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(300));
}

// `connect --udp` sends each read of stdin as one datagram, as `nc -u` and
// `listen --udp` do: 100,000 bytes on stdin never become one datagram
// larger than UDP carries (65,507 bytes), and every byte arrives, in order,
// at a plain UDP socket.
TEST_F(StreamTest, ConnectOverUdpSendsEachReadAsADatagramUdpCanCarry) {
  Fd peer = UdpBound();
  const int rcvbuf = 1 << 20;
  ASSERT_EQ(
      ::setsockopt(peer.get(), SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf),
      0);
  const std::string input = RandomBytes(100000, 9);
  CommandResult r =
      RunSockctl(agent_->address(),
                 {"connect", "--udp", "--idle", "300ms", "127.0.0.1",
                  absl::StrCat(LocalPort(peer.get()))},
                 input);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::string got;
  size_t datagrams = 0;
  size_t largest = 0;
  std::vector<char> buf(65536);
  while (got.size() < input.size()) {
    pollfd ready = {peer.get(), POLLIN, 0};
    if (::poll(&ready, 1, 5000) != 1) break;
    const ssize_t n = ::recv(peer.get(), buf.data(), buf.size(), 0);
    if (n < 0) break;
    ++datagrams;
    largest = std::max(largest, static_cast<size_t>(n));
    got.append(buf.data(), static_cast<size_t>(n));
  }
  EXPECT_GE(datagrams, 2u);
  EXPECT_LE(largest, 65507u);
  EXPECT_EQ(got.size(), input.size());
  EXPECT_TRUE(got == input) << "the bytes differ";
}

TEST_F(StreamTest, WritesDoneIsFinAndEndOfStreamFollowsPeerClose) {
  uint16_t port = 0;
  Fd listener = TcpListen(1, &port);
  Call call = Open(OpenTo("127.0.0.1", port));
  ASSERT_FALSE(call.connection.id().empty());
  EXPECT_TRUE(call.connection.stream_attached());
  Fd peer = Accept(listener.get());
  v1::StreamRequest data;
  data.set_data("request");
  ASSERT_TRUE(call.stream->Write(data));
  ASSERT_TRUE(call.stream->WritesDone());
  // The half-close arrived as FIN after the bytes; the peer can still talk.
  EXPECT_EQ(ReadToEof(peer.get()), "request");
  ASSERT_TRUE(WriteAll(peer.get(), "reply"));
  peer.Reset();
  std::string got;
  v1::StreamResponse reply;
  std::vector<v1::StreamResponse> ends;
  while (call.stream->Read(&reply)) {
    if (reply.has_data()) got += reply.data();
    if (reply.has_end_of_stream()) ends.push_back(reply);
  }
  grpc::Status status = call.stream->Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(got, "reply");
  ASSERT_EQ(ends.size(), 1u);
  EXPECT_EQ(ends[0].end_of_stream().reason(), v1::CLOSE_REASON_PEER_CLOSED);
}

TEST_F(StreamTest, PeerResetEndsTheCallAborted) {
  uint16_t port = 0;
  Fd listener = TcpListen(1, &port);
  Call call = Open(OpenTo("127.0.0.1", port));
  Fd peer = Accept(listener.get());
  ASSERT_TRUE(WriteAll(peer.get(), "last words"));
  CloseWithReset(peer);
  std::string got;
  v1::StreamResponse reply;
  while (call.stream->Read(&reply)) got += reply.data();
  grpc::Status status = call.stream->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::ABORTED)
      << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("reset"));
  EXPECT_EQ(got, "last words");  // What came before the reset arrives.

  // sockctl says so in its exit code (10 + ABORTED).
  Fd listener2 = TcpListen(1, &port);
  std::thread resetter([&] {
    Fd p = Accept(listener2.get());
    CloseWithReset(p);
  });
  CommandResult r = RunSockctl(agent_->address(),
                               {"connect", "127.0.0.1", absl::StrCat(port)});
  resetter.join();
  EXPECT_EQ(r.exit_code, 10 + static_cast<int>(grpc::StatusCode::ABORTED))
      << r.err;
}

TEST_F(StreamTest, CallerGoneClosesOpenedButLeavesAttachedOpen) {
  uint16_t port = 0;
  Fd listener = TcpListen(2, &port);
  Call opened = Open(OpenTo("127.0.0.1", port));
  Fd opened_peer = Accept(listener.get());
  const std::string opened_id = opened.connection.id();
  opened.context->TryCancel();
  opened.stream->Finish();
  ASSERT_TRUE(WaitFor([&] {
    auto c = Connection(opened_id);
    return c.has_value() && c->state() == v1::CONNECTION_STATE_CLOSED;
  }));
  EXPECT_EQ(Connection(opened_id)->close_reason(),
            v1::CLOSE_REASON_STREAM_ENDED);
  EXPECT_EQ(ReadToEof(opened_peer.get()), "");  // A FIN, not a reset.

  const v1::Server hold = StartServer(Hold);
  Fd client = TcpConnect(FirstAddress(hold));
  const std::string id = AcceptedId(hold);
  ASSERT_FALSE(id.empty());
  Call attached = Open(AttachTo(id));
  ASSERT_EQ(attached.connection.id(), id);
  attached.context->TryCancel();
  attached.stream->Finish();
  ASSERT_TRUE(WaitFor([&] {
    auto c = Connection(id);
    return c.has_value() && !c->stream_attached();
  }));
  EXPECT_EQ(Connection(id)->state(), v1::CONNECTION_STATE_OPEN);
  // Receive works again once detached.
  ASSERT_TRUE(WriteAll(client.get(), "still here"));
  v1::ReceiveRequest receive;
  receive.set_connection_id(id);
  receive.set_min_bytes(10);
  receive.mutable_wait()->set_seconds(20);
  v1::ReceiveResponse got;
  auto context = ContextWithDeadline(std::chrono::seconds(30));
  grpc::Status s = stub_->Receive(context.get(), receive, &got);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(got.data(), "still here");
}

TEST_F(StreamTest, BadStartsAndConflictsHaveClearStatuses) {
  v1::StreamRequest data_first;
  data_first.set_data("x");
  grpc::Status s = StartFails(data_first);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("first message must be a"));

  v1::StreamRequest empty_start;
  empty_start.mutable_start();
  s = StartFails(empty_start);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("attach_connection_id or open"));

  v1::StreamRequest bad_port;
  *bad_port.mutable_start() = OpenTo("127.0.0.1", 0);
  bad_port.mutable_start()->mutable_open()->mutable_remote()->set_port(65536);
  s = StartFails(bad_port);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  v1::StreamRequest unknown;
  *unknown.mutable_start() = AttachTo("conn-999999");
  s = StartFails(unknown);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(s.error_message(), HasSubstr("conn-999999"));

  // Refused: nothing listens on a port we held and closed.
  uint16_t closed_port = 0;
  { Fd gone = TcpListen(1, &closed_port); }
  v1::StreamRequest refused;
  *refused.mutable_start() = OpenTo("127.0.0.1", closed_port);
  s = StartFails(refused);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(s.error_message(), HasSubstr("refused"));
  CommandResult r = RunSockctl(
      agent_->address(), {"connect", "127.0.0.1", absl::StrCat(closed_port)});
  EXPECT_EQ(r.exit_code, 10 + static_cast<int>(grpc::StatusCode::UNAVAILABLE));
  EXPECT_THAT(r.err, HasSubstr("refused"));
  r = RunSockctl(agent_->address(), {"attach", "conn-999999"});
  EXPECT_EQ(r.exit_code, 10 + static_cast<int>(grpc::StatusCode::NOT_FOUND));
  r = RunSockctl(agent_->address(), {"connect", "127.0.0.1"});
  EXPECT_EQ(r.exit_code, 2) << r.err;  // Usage: no port.

  // One Stream per connection; Receive refused while attached; a second
  // StreamStart is INVALID_ARGUMENT and ends the call.
  const v1::Server hold = StartServer(Hold);
  Fd client = TcpConnect(FirstAddress(hold));
  const std::string id = AcceptedId(hold);
  ASSERT_FALSE(id.empty());
  Call first = Open(AttachTo(id));
  ASSERT_EQ(first.connection.id(), id);
  v1::StreamRequest second;
  *second.mutable_start() = AttachTo(id);
  s = StartFails(second);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("another Stream"));
  v1::ReceiveRequest receive;
  receive.set_connection_id(id);
  v1::ReceiveResponse got;
  auto context = ContextWithDeadline();
  s = stub_->Receive(context.get(), receive, &got);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("Stream is attached"));
  ASSERT_TRUE(first.stream->Write(second));
  v1::StreamResponse reply;
  while (first.stream->Read(&reply)) {
  }
  s = first.stream->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("only for the first message"));

  // Attaching to a closed connection.
  CloseWithReset(client);
  ASSERT_TRUE(WaitFor([&] {
    auto c = Connection(id);
    return c.has_value() && c->state() == v1::CONNECTION_STATE_CLOSED;
  }));
  s = StartFails(second);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("closed"));
  ExpectHealthy();
}

// Neither direction buffers without bound: a caller that stops reading
// stops the agent reading the socket (the peer's writes block), and a peer
// that stops reading stops the caller's writes.
TEST_F(StreamTest, BackpressureHoldsBothDirections) {
  constexpr uint64_t kBuffer = 1 << 20;
  StartAgent({absl::StrCat("--recv-buffer-bytes=", kBuffer),
              absl::StrCat("--send-buffer-bytes=", kBuffer)});
  uint16_t port = 0;
  Fd listener = TcpListen(1, &port);
  Call call = Open(OpenTo("127.0.0.1", port));
  const std::string id = call.connection.id();
  Fd peer = Accept(listener.get());

  // Peer -> caller, the caller not reading.
  const std::string flood = RandomBytes(k64MiB, 5);
  std::atomic<size_t> flooded{0};
  std::thread flooder([&] {
    size_t done = 0;
    while (done < flood.size()) {
      const ssize_t n =
          ::send(peer.get(), flood.data() + done,
                 std::min<size_t>(64 << 10, flood.size() - done), MSG_NOSIGNAL);
      if (n <= 0) break;
      done += static_cast<size_t>(n);
      flooded.store(done);
    }
    ::shutdown(peer.get(), SHUT_WR);
  });
  // The agent's receive buffer fills and stays at its bound.
  ASSERT_TRUE(WaitFor([&] {
    auto c = Connection(id);
    return c.has_value() && c->counters().recv_buffered() >= kBuffer / 2;
  }));
  const size_t stalled_at = flooded.load();
  EXPECT_LT(stalled_at, flood.size()) << "the peer's writes never blocked";

  // Caller -> peer, the peer not reading.
  const std::string upload = RandomBytes(16u << 20, 6);
  std::atomic<size_t> uploaded{0};
  std::thread uploader([&] {
    for (size_t off = 0; off < upload.size(); off += 256 << 10) {
      v1::StreamRequest chunk;
      chunk.set_data(upload.substr(off, 256 << 10));
      if (!call.stream->Write(chunk)) return;
      uploaded.store(off + chunk.data().size());
    }
    call.stream->WritesDone();
  });
  ASSERT_TRUE(WaitFor([&] {
    auto c = Connection(id);
    return c.has_value() && c->counters().send_buffered() >= kBuffer / 2;
  }));
  auto mid = Connection(id);
  ASSERT_TRUE(mid.has_value());
  // One chunk beyond the bound at most (the one that waited for room).
  EXPECT_LE(mid->counters().send_buffered_peak(), kBuffer + (256 << 10));
  EXPECT_LE(mid->counters().recv_buffered_peak(), kBuffer);
  EXPECT_LT(uploaded.load(), upload.size()) << "the caller's writes never "
                                               "blocked";

  // Now both sides read: everything arrives, in order.
  std::string peer_got;
  std::thread peer_reader([&] { peer_got = ReadToEof(peer.get()); });
  std::string caller_got;
  v1::StreamResponse reply;
  while (call.stream->Read(&reply)) caller_got += reply.data();
  grpc::Status status = call.stream->Finish();
  flooder.join();
  uploader.join();
  peer_reader.join();
  EXPECT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(caller_got.size(), flood.size());
  EXPECT_EQ(Sha256(caller_got), Sha256(flood));
  ASSERT_EQ(peer_got.size(), upload.size());
  EXPECT_EQ(Sha256(peer_got), Sha256(upload));
}

TEST_F(StreamTest, SendFileShowsProgressWithRate) {
  const v1::Server hold = StartServer(Hold);
  Fd client = TcpConnect(FirstAddress(hold));
  const std::string id = AcceptedId(hold);
  ASSERT_FALSE(id.empty());
  TempDir dir;
  const std::string path = dir.path() + "/payload";
  const std::string data = RandomBytes(2u << 20, 7);
  {
    std::FILE* f = std::fopen(path.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(std::fwrite(data.data(), 1, data.size(), f), data.size());
    std::fclose(f);
  }
  std::string got;
  std::thread reader([&] { got = ReadExactly(client.get(), data.size()); });
  CommandResult r =
      RunSockctl(agent_->address(), {"send", id, "--file", path, "--progress"});
  reader.join();
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("100%"));
  EXPECT_THAT(r.err, HasSubstr("2.0 MiB / 2.0 MiB"));
  EXPECT_THAT(r.err, HasSubstr("/s"));
  EXPECT_EQ(got, data);
  // Not a terminal and not asked: no bar.
  CommandResult quiet = RunSockctl(agent_->address(), {"send", id, "x"});
  EXPECT_EQ(quiet.exit_code, 0);
  EXPECT_EQ(quiet.err, "");
}

}  // namespace
}  // namespace sockagent::testing
