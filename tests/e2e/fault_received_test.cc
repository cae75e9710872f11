// Faults with direction RECEIVED: the RECEIVE stage between the agent's
// socket read and its behaviour (agent/fault_stage.h), through the real
// sockagentd with plain POSIX peers in this process. Where the peer can
// see the effect it measures it (an echo answers only what was delivered);
// where only the agent's reader can (a hold server's Receive), the test's
// own clock measures the Receive. Timing bounds are one-sided and generous
// (2-core CI under ASan); tight figures belong in BENCHMARKS.md.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "sockagent/v1/agent.grpc.pb.h"
#include "tests/support/agent_process.h"
#include "tests/support/agent_rpc.h"
#include "tests/support/grpc_client.h"
#include "tests/support/posix_peer.h"
#include "tests/support/wait.h"

namespace sockagent::testing {
namespace {

using ::testing::HasSubstr;

int64_t NowUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

bool Readable(int fd, int ms) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, ms) == 1;
}

class ReceivedFaults : public AgentTestBase {
 protected:
  v1::Server Start(bool echo) {
    return StartLoopbackServer(*stub_, [echo](v1::StartServerRequest& r) {
      if (echo) r.mutable_behavior()->mutable_echo();
    });
  }

  static v1::Fault Received(const v1::Server& s, const std::string& name) {
    v1::Fault f;
    f.set_name(name);
    f.set_direction(v1::FAULT_DIRECTION_RECEIVED);
    f.mutable_target()->set_server_id(s.id());
    return f;
  }

  grpc::Status Add(const v1::Fault& f) { return AddFault(*stub_, f); }

  std::vector<v1::Connection> Connections(const std::string& server_id) {
    v1::ListConnectionsRequest request;
    request.set_server_id(server_id);
    request.set_include_closed(true);
    v1::ListConnectionsResponse response;
    auto context = ContextWithDeadline();
    EXPECT_TRUE(stub_->ListConnections(context.get(), request, &response).ok());
    return {response.connections().begin(), response.connections().end()};
  }

  // The one connection of `server`, once it is listed.
  v1::Connection Only(const std::string& server_id) {
    v1::Connection c;
    EXPECT_TRUE(WaitFor([&] {
      auto conns = Connections(server_id);
      if (conns.size() != 1) return false;
      c = conns[0];
      return true;
    }));
    return c;
  }

  grpc::Status Receive(const std::string& id, uint64_t min_bytes,
                       v1::ReceiveResponse* out) {
    v1::ReceiveRequest request;
    request.set_connection_id(id);
    request.set_min_bytes(min_bytes);
    request.set_max_bytes(1 << 20);
    request.mutable_wait()->set_seconds(30);
    auto context = ContextWithDeadline(std::chrono::seconds(60));
    return stub_->Receive(context.get(), request, out);
  }
};

Fd ConnectNoDelay(const SocketAddress& at) {
  Fd fd = TcpConnect(at);
  int one = 1;
  ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

// The peer's bytes reach a Receive late; what the agent sends is not
// delayed. The fault applies to a connection already open.
TEST_F(ReceivedFaults, LatencyDelaysWhatTheAgentReadsNotWhatItWrites) {
  StartAgent();
  const v1::Server server = Start(/*echo=*/false);
  Fd fd = ConnectNoDelay(FirstAddress(server));
  ASSERT_TRUE(fd.valid());
  const std::string id = Only(server.id()).id();
  v1::Fault f = Received(server, "late-in");
  // Long enough that the listing below sees the bytes held even on a
  // loaded machine.
  SetDuration(absl::Seconds(3), f.mutable_latency()->mutable_latency());
  ASSERT_TRUE(Add(f).ok());

  const int64_t t0 = NowUs();
  ASSERT_TRUE(WriteAll(fd.get(), "ping"));
  // The agent read it and holds it (listed), it did not deliver it.
  ASSERT_TRUE(WaitFor(
      [&] { return Only(server.id()).counters().fault_received_held() == 4; }));
  const v1::Connection held = Only(server.id());
  EXPECT_EQ(held.counters().bytes_received(), 0u);
  EXPECT_THAT(held.faults(), ::testing::ElementsAre("late-in"));
  // Our own bytes go out at once.
  ASSERT_TRUE(Send(id, "pong").ok());
  EXPECT_EQ(ReadExactly(fd.get(), 4), "pong");
  const int64_t sent_after = NowUs() - t0;

  v1::ReceiveResponse got;
  ASSERT_TRUE(Receive(id, 4, &got).ok());
  const int64_t received_after = NowUs() - t0;
  EXPECT_EQ(got.data(), "ping");
  std::cout << "received latency 3s: our Send arrived after " << sent_after
            << " us, the peer's bytes reached Receive after " << received_after
            << " us\n";
  EXPECT_GE(received_after, 3000000);
  EXPECT_LT(sent_after, 3000000);
  EXPECT_EQ(Only(server.id()).counters().fault_received_held(), 0u);
}

TEST_F(ReceivedFaults, LatencyAddsToEveryEchoRoundTrip) {
  StartAgent();
  const v1::Server server = Start(/*echo=*/true);
  v1::Fault f = Received(server, "lat");
  SetDuration(absl::Milliseconds(20), f.mutable_latency()->mutable_latency());
  ASSERT_TRUE(Add(f).ok());
  Fd fd = ConnectNoDelay(FirstAddress(server));
  std::vector<int64_t> rtts;
  for (int i = 0; i < 100; ++i) {
    const std::string msg = Pattern(i * 16, 16);
    const int64_t t0 = NowUs();
    ASSERT_TRUE(WriteAll(fd.get(), msg));
    ASSERT_EQ(ReadExactly(fd.get(), msg.size()), msg);
    rtts.push_back(NowUs() - t0);
  }
  std::sort(rtts.begin(), rtts.end());
  std::cout << "received latency 20ms: min " << rtts.front() << " us, p50 "
            << rtts[50] << " us, p99 " << rtts[98] << " us\n";
  EXPECT_GE(rtts.front(), 20000);
  EXPECT_LE(rtts[50], 20000 + 25000);
}

// A 2 MB/s cap on what the echo reads: the peer gets its 4 MB back no
// faster than the cap allows (100 ms of burst).
TEST_F(ReceivedFaults, BandwidthCapsWhatTheAgentTakes) {
  StartAgent();
  const v1::Server server = Start(/*echo=*/true);
  constexpr uint64_t kRate = 2'000'000;
  constexpr size_t kTotal = 4'000'000;
  v1::Fault f = Received(server, "bw-in");
  f.mutable_bandwidth()->set_rate_bytes_per_second(kRate);
  ASSERT_TRUE(Add(f).ok());
  Fd fd = TcpConnect(FirstAddress(server));
  const std::string sent = Pattern(0, kTotal);
  const int64_t t0 = NowUs();
  std::thread writer([&] { WriteAll(fd.get(), sent); });
  const std::string got = ReadExactly(fd.get(), kTotal);
  const int64_t took = NowUs() - t0;
  writer.join();
  ASSERT_EQ(got.size(), sent.size());
  EXPECT_TRUE(got == sent);
  const double rate = kTotal / (took / 1e6);
  std::cout << "received bandwidth 2 MB/s: " << kTotal << " bytes in " << took
            << " us = " << rate / 1e6 << " MB/s\n";
  // (4 MB - 0.2 MB of burst) / 2 MB/s = 1.9 s at the least.
  EXPECT_GE(took, 1800000);
  EXPECT_LE(rate, kRate * 1.1);
}

// Each slice the stage lets through is its own delivery, so the echo
// writes it back as its own segment.
TEST_F(ReceivedFaults, SlicerDeliversInSlices) {
  StartAgent();
  const v1::Server server = Start(/*echo=*/true);
  v1::Fault f = Received(server, "slices-in");
  f.mutable_slicer()->set_average_size(100);
  f.mutable_slicer()->set_size_variation(20);
  SetDuration(absl::Milliseconds(20), f.mutable_slicer()->mutable_delay());
  ASSERT_TRUE(Add(f).ok());
  Fd fd = ConnectNoDelay(FirstAddress(server));
  const std::string sent = Pattern(0, 1000);
  const int64_t t0 = NowUs();
  ASSERT_TRUE(WriteAll(fd.get(), sent));
  std::string got;
  const std::vector<size_t> reads = ReadSizes(fd.get(), sent.size(), &got);
  const int64_t took = NowUs() - t0;
  EXPECT_EQ(got, sent);
  EXPECT_GE(reads.size(), 8u);
  EXPECT_GE(took, 7 * 20000);
  size_t within = 0;
  for (size_t i = 0; i + 1 < reads.size(); ++i) {
    if (reads[i] >= 80 && reads[i] <= 120) ++within;
  }
  EXPECT_GE(within, (reads.size() - 1) * 8 / 10);
}

// The agent's reader gets exactly N bytes; the rest is dropped and the
// connection closed with a FIN.
TEST_F(ReceivedFaults, LimitDataTakesExactlyNBytesThenCloses) {
  StartAgent();
  const v1::Server server = Start(/*echo=*/false);
  v1::Fault f = Received(server, "limit-in");
  f.mutable_limit_data()->set_bytes(1000);
  ASSERT_TRUE(Add(f).ok());
  Fd fd = TcpConnect(FirstAddress(server));
  ASSERT_TRUE(WriteAll(fd.get(), Pattern(0, 5000)));
  ::shutdown(fd.get(), SHUT_WR);
  int error = 0;
  EXPECT_EQ(ReadToEof(fd.get(), &error), "");
  EXPECT_EQ(error, 0);  // A FIN, not a reset.
  ASSERT_TRUE(WaitFor([&] {
    return Only(server.id()).state() == v1::CONNECTION_STATE_CLOSED;
  }));
  const v1::Connection c = Only(server.id());
  EXPECT_THAT(c.close_detail(), HasSubstr("limit_data"));
  v1::ReceiveResponse got;
  const grpc::Status rs = Receive(c.id(), 1, &got);
  ASSERT_TRUE(rs.ok()) << rs.error_code() << " " << rs.error_message();
  EXPECT_EQ(got.data(), Pattern(0, 1000));
  EXPECT_EQ(c.counters().recv_buffered(), 1000u);
}

TEST_F(ReceivedFaults, TimeoutSwallowsWhatArrivesUntilRemoved) {
  StartAgent();
  const v1::Server server = Start(/*echo=*/true);
  v1::Fault hole = Received(server, "hole-in");
  hole.mutable_timeout();  // 0: never closes.
  ASSERT_TRUE(Add(hole).ok());
  Fd fd = TcpConnect(FirstAddress(server));
  ASSERT_TRUE(WriteAll(fd.get(), "into the hole"));
  // Read (counted) and dropped.
  ASSERT_TRUE(WaitFor(
      [&] { return Only(server.id()).counters().bytes_received() == 13; }));
  EXPECT_FALSE(Readable(fd.get(), 300));
  ASSERT_TRUE(RemoveFault(*stub_, "hole-in").ok());
  ASSERT_TRUE(WriteAll(fd.get(), "after"));
  EXPECT_EQ(ReadExactly(fd.get(), 5), "after");
}

// The peer's FIN reaches the echo late: the echo answers at once but
// closes its side only after the delay.
TEST_F(ReceivedFaults, SlowCloseDelaysThePeersFin) {
  StartAgent();
  const v1::Server server = Start(/*echo=*/true);
  v1::Fault f = Received(server, "slow-in");
  SetDuration(absl::Seconds(1), f.mutable_slow_close()->mutable_delay());
  ASSERT_TRUE(Add(f).ok());
  Fd fd = ConnectNoDelay(FirstAddress(server));
  const int64_t t0 = NowUs();
  ASSERT_TRUE(WriteAll(fd.get(), "bye"));
  ::shutdown(fd.get(), SHUT_WR);
  EXPECT_EQ(ReadExactly(fd.get(), 3), "bye");
  const int64_t echoed = NowUs() - t0;
  int error = 0;
  EXPECT_EQ(ReadToEof(fd.get(), &error), "");
  const int64_t fin = NowUs() - t0;
  std::cout << "received slow_close 1s: echo after " << echoed
            << " us, the echo's FIN after " << fin << " us\n";
  EXPECT_EQ(error, 0);
  EXPECT_LT(echoed, 1000000);
  EXPECT_GE(fin, 1000000);
}

// Removing a 10-minute latency releases what it held, in order, and the
// FIN behind it.
TEST_F(ReceivedFaults, RemovingLatencyDeliversEveryByteAndTheFinInOrder) {
  StartAgent();
  const v1::Server server = Start(/*echo=*/true);
  v1::Fault f = Received(server, "long-in");
  SetDuration(absl::Minutes(10), f.mutable_latency()->mutable_latency());
  ASSERT_TRUE(Add(f).ok());
  Fd fd = TcpConnect(FirstAddress(server));
  const std::string sent = Pattern(0, 200000);
  ASSERT_TRUE(WriteAll(fd.get(), sent));
  ::shutdown(fd.get(), SHUT_WR);
  ASSERT_TRUE(WaitFor([&] {
    return Only(server.id()).counters().fault_received_held() == sent.size();
  }));
  EXPECT_EQ(Only(server.id()).state(), v1::CONNECTION_STATE_OPEN);
  EXPECT_FALSE(Readable(fd.get(), 100));
  ASSERT_TRUE(RemoveFault(*stub_, "long-in").ok());
  int error = 0;
  EXPECT_TRUE(ReadToEof(fd.get(), &error) == sent);
  EXPECT_EQ(error, 0);
  ASSERT_TRUE(WaitFor([&] {
    return Only(server.id()).state() == v1::CONNECTION_STATE_CLOSED;
  }));
  const v1::Connection c = Only(server.id());
  EXPECT_EQ(c.close_reason(), v1::CLOSE_REASON_PEER_CLOSED) << c.close_detail();
  EXPECT_EQ(c.counters().bytes_received(), sent.size());
}

// Closing a connection whose peer FIN a RECEIVED fault holds ends at once:
// the FIN was read, so the close has no FIN left to wait for. (Waiting
// would end at the 5 s linger with "close timed out waiting for the
// peer's FIN" in the detail.)
TEST_F(ReceivedFaults, ClosingWithAHeldFinDoesNotWaitForAnother) {
  StartAgent();
  const v1::Server server = Start(/*echo=*/false);
  v1::Fault f = Received(server, "slow-fin");
  SetDuration(absl::Minutes(10), f.mutable_slow_close()->mutable_delay());
  ASSERT_TRUE(Add(f).ok());
  Fd fd = TcpConnect(FirstAddress(server));
  ASSERT_TRUE(WriteAll(fd.get(), "last"));
  ::shutdown(fd.get(), SHUT_WR);
  const std::string id = Only(server.id()).id();
  v1::ReceiveResponse got;
  ASSERT_TRUE(Receive(id, 4, &got).ok());
  EXPECT_EQ(got.data(), "last");
  EXPECT_FALSE(got.end_of_stream());  // The FIN is held.
  // The agent's descriptors: its socket for this connection goes when the
  // close ends.
  auto fds = [this] {
    size_t n = 0;
    for (const auto& e : std::filesystem::directory_iterator(
             absl::StrCat("/proc/", agent_->pid(), "/fd"))) {
      (void)e;
      ++n;
    }
    return n;
  };
  const size_t before = fds();
  v1::CloseConnectionRequest request;
  request.set_id(id);
  v1::CloseConnectionResponse response;
  auto context = ContextWithDeadline();
  ASSERT_TRUE(stub_->CloseConnection(context.get(), request, &response).ok());
  int error = 0;
  EXPECT_EQ(ReadToEof(fd.get(), &error), "");
  EXPECT_EQ(error, 0);
  EXPECT_TRUE(WaitFor([&] { return fds() < before; }, absl::Seconds(20)))
      << "the close waits for a FIN that was read already";
  const v1::Connection c = Only(server.id());
  EXPECT_EQ(c.state(), v1::CONNECTION_STATE_CLOSED);
  EXPECT_THAT(c.close_detail(), ::testing::Not(HasSubstr("timed out")));
}

// A 10-minute latency on a fast sender: what it holds counts against the
// receive buffer, so reading pauses there and the sender is stopped.
TEST_F(ReceivedFaults, LongLatencyPausesReadingAtTheReceiveBuffer) {
  constexpr uint64_t kRecvBuffer = 1 << 20;
  StartAgent({absl::StrCat("--recv-buffer-bytes=", kRecvBuffer)});
  const v1::Server server = Start(/*echo=*/true);
  v1::Fault f = Received(server, "long-in");
  SetDuration(absl::Minutes(10), f.mutable_latency()->mutable_latency());
  ASSERT_TRUE(Add(f).ok());
  Fd fd = TcpConnect(FirstAddress(server));
  const uint64_t written = WriteUntilStopped(fd.get(), 64u << 20);
  const v1::Connection c = Only(server.id());
  std::cout << "received latency 10m: peer wrote " << written
            << ", the fault holds " << c.counters().fault_received_held()
            << "\n";
  EXPECT_LT(written, 64u << 20);
  EXPECT_GT(c.counters().fault_received_held(), 0u);
  EXPECT_LE(c.counters().fault_received_held(), kRecvBuffer);
  EXPECT_EQ(c.counters().bytes_received(), 0u);
  ASSERT_TRUE(RemoveFault(*stub_, "long-in").ok());
}

// An update may move a fault between SENT and RECEIVED.
TEST_F(ReceivedFaults, DirectionMovesOnUpdate) {
  StartAgent();
  const v1::Server server = Start(/*echo=*/true);
  v1::Fault f = Received(server, "moving");
  f.set_direction(v1::FAULT_DIRECTION_SENT);
  SetDuration(absl::Milliseconds(30), f.mutable_latency()->mutable_latency());
  ASSERT_TRUE(Add(f).ok());
  Fd fd = ConnectNoDelay(FirstAddress(server));
  auto round_trip = [&](int i) {
    const std::string msg = Pattern(i * 8, 8);
    const int64_t t0 = NowUs();
    EXPECT_TRUE(WriteAll(fd.get(), msg));
    EXPECT_EQ(ReadExactly(fd.get(), msg.size()), msg);
    return NowUs() - t0;
  };
  EXPECT_GE(round_trip(0), 30000);
  f.set_direction(v1::FAULT_DIRECTION_RECEIVED);
  {
    v1::UpdateFaultRequest request;
    *request.mutable_fault() = f;
    v1::UpdateFaultResponse response;
    auto context = ContextWithDeadline();
    grpc::Status s = stub_->UpdateFault(context.get(), request, &response);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(response.fault().direction(), v1::FAULT_DIRECTION_RECEIVED);
    EXPECT_EQ(response.fault().connections(), 1u);
  }
  EXPECT_GE(round_trip(1), 30000);
  EXPECT_THAT(Only(server.id()).faults(), ::testing::ElementsAre("moving"));
}

}  // namespace
}  // namespace sockagent::testing
