// Faults through the real sockagentd, with plain POSIX peers: a peer that
// resets in the middle of a large Send, a peer that goes away while a
// Receive waits, and SIGTERM with 1,000 open connections. Nothing crashes,
// and no byte accepted by Send is silently lost: it was written to the
// socket (bytes_sent), or counted in send_bytes_lost with the close reason,
// or the peer saw a reset instead of a clean end.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
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

using ::testing::AnyOf;
using ::testing::HasSubstr;

class Faults : public AgentTestBase {
 protected:
  std::optional<v1::Connection> Connection(const std::string& id) {
    v1::ListConnectionsRequest request;
    request.set_include_closed(true);
    request.set_page_size(1000);
    v1::ListConnectionsResponse response;
    auto context = ContextWithDeadline();
    if (!stub_->ListConnections(context.get(), request, &response).ok()) {
      return std::nullopt;
    }
    for (const v1::Connection& c : response.connections()) {
      if (c.id() == id) return c;
    }
    return std::nullopt;
  }
};

// Fills the agent's send buffer towards a peer that reads only the first
// part, then resets: every accepted byte is either written to the socket
// (bytes_sent) or counted lost, and the close reason says "peer reset".
TEST_F(Faults, PeerResetMidSendLosesNothingSilently) {
  constexpr size_t kChunk = 60000;
  StartAgent({"--send-buffer-bytes=1048576", "--max-send-bytes=65536"});
  Fd peer;
  const std::string id = OpenToPlainPeer(&peer);
  ASSERT_FALSE(id.empty());
  // Shrink the peer's receive buffer so the agent's own buffer fills soon.
  int small = 16384;
  setsockopt(peer.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));

  uint64_t accepted = 0;
  uint64_t failed_after_queueing = 0;
  grpc::Status status;
  // Send until the agent's send buffer is full (RESOURCE_EXHAUSTED).
  for (int i = 0; i < 10000; ++i) {
    status = Send(id, Pattern(accepted, kChunk));
    if (!status.ok()) break;
    accepted += kChunk;
  }
  ASSERT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << status.error_message();
  // The peer takes a first part, then resets with bytes still unread and
  // the agent's buffer still full.
  const std::string got = ReadExactly(peer.get(), 100000);
  ASSERT_EQ(got, Pattern(0, got.size()));
  CloseWithReset(peer);

  // The agent sees the reset: at its next write, or at our next Send.
  std::optional<v1::Connection> conn;
  ASSERT_TRUE(WaitFor([&] {
    // Accepted while the agent has not seen the reset yet. A Send whose
    // own write meets the reset fails (ABORTED) and, as documented, its
    // bytes also count in send_bytes_lost.
    const grpc::Status st = Send(id, "after reset");
    if (st.ok()) accepted += 11;
    if (st.error_code() == grpc::StatusCode::ABORTED ||
        st.error_code() == grpc::StatusCode::UNAVAILABLE) {
      failed_after_queueing += 11;
    }
    conn = Connection(id);
    return conn.has_value() && conn->state() == v1::CONNECTION_STATE_CLOSED;
  }));
  EXPECT_EQ(conn->close_reason(), v1::CLOSE_REASON_PEER_RESET)
      << conn->close_detail();
  const v1::ConnectionCounters& c = conn->counters();
  EXPECT_GT(c.send_bytes_lost(), 0u);
  EXPECT_EQ(c.send_buffered(), 0u);
  EXPECT_EQ(c.bytes_sent() + c.send_bytes_lost(),
            accepted + failed_after_queueing)
      << "sent " << c.bytes_sent() << " lost " << c.send_bytes_lost();
  EXPECT_GE(c.bytes_sent(), got.size());
  std::cout << "accepted " << accepted << ", peer read " << got.size()
            << ", bytes_sent " << c.bytes_sent() << ", send_bytes_lost "
            << c.send_bytes_lost() << "\n";
  // A Send on the closed connection is refused, never accepted and dropped.
  status = Send(id, "x");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION)
      << status.error_message();
}

// A Receive waiting for data ends as soon as the peer goes away: OK with
// end_of_stream after a FIN (the peer process killed), ABORTED after a reset.
TEST_F(Faults, PeerVanishingDuringReceiveEndsIt) {
  StartAgent();
  v1::Server server = StartLoopbackServer(*stub_);
  const SocketAddress at = FirstAddress(server);
  auto conn_of = [&](size_t index) {
    std::string id;
    EXPECT_TRUE(WaitFor([&] {
      v1::ListConnectionsRequest request;
      request.set_server_id(server.id());
      request.set_include_closed(true);
      v1::ListConnectionsResponse response;
      auto context = ContextWithDeadline();
      stub_->ListConnections(context.get(), request, &response);
      if (static_cast<size_t>(response.connections_size()) <= index) {
        return false;
      }
      id = response.connections(index).id();
      return true;
    }));
    return id;
  };
  auto receive_for = [&](const std::string& id, v1::ReceiveResponse* response,
                         absl::Duration* took) {
    v1::ReceiveRequest request;
    request.set_connection_id(id);
    request.mutable_wait()->set_seconds(60);
    auto context = ContextWithDeadline(std::chrono::seconds(90));
    const absl::Time start = absl::Now();
    grpc::Status s = stub_->Receive(context.get(), request, response);
    *took = absl::Now() - start;
    return s;
  };

  // A python3 peer process connects, sends a few bytes, and is SIGKILLed
  // while a Receive waits for more: the kernel closes its socket (FIN).
  auto python = ChildProcess::Start(
      {"python3", "-c",
       absl::StrCat("import signal,socket\n"
                    "s=socket.create_connection(('127.0.0.1',",
                    at.port,
                    "))\n"
                    "s.sendall(b'last words')\n"
                    "print('connected',flush=True)\n"
                    "signal.pause()\n")});  // Until the SIGKILL.
  ASSERT_TRUE(python.ok()) << python.status();
  ASSERT_TRUE((*python)->ReadLine(absl::Now() + absl::Seconds(30)).ok());
  const std::string killed_id = conn_of(0);
  v1::ReceiveResponse first;
  absl::Duration took;
  // The bytes sent before come first.
  ASSERT_TRUE(receive_for(killed_id, &first, &took).ok());
  EXPECT_EQ(first.data(), "last words");
  // A Receive is parked once a second one is refused (one receiver at a
  // time): then the peer goes away.
  auto parked = [&](const std::string& id) {
    return WaitFor([&] {
      v1::ReceiveRequest probe;
      probe.set_connection_id(id);
      v1::ReceiveResponse ignored;
      auto context = ContextWithDeadline();
      return stub_->Receive(context.get(), probe, &ignored).error_code() ==
             grpc::StatusCode::FAILED_PRECONDITION;
    });
  };
  v1::ReceiveResponse end;
  grpc::Status s;
  std::thread receiver([&] { s = receive_for(killed_id, &end, &took); });
  EXPECT_TRUE(parked(killed_id));
  EXPECT_TRUE((*python)->Stop(SIGKILL, absl::Now() + absl::Seconds(30)).ok());
  receiver.join();
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(end.end_of_stream());
  EXPECT_LT(took, absl::Seconds(30)) << "Receive waited out its wait";

  // A plain peer that resets while a Receive waits: ABORTED.
  Fd resetting = TcpConnect(at);
  const std::string reset_id = conn_of(1);
  v1::ReceiveResponse aborted;
  receiver = std::thread([&] { s = receive_for(reset_id, &aborted, &took); });
  EXPECT_TRUE(parked(reset_id));
  CloseWithReset(resetting);
  receiver.join();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ABORTED) << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("reset"));
  EXPECT_LT(took, absl::Seconds(30));
}

// SIGTERM with 1,000 open connections (accepted by an echo server, with a
// few opened by the agent holding unsent bytes): exit 0 within a bounded
// time, every peer sees the end (FIN, or RST where bytes were unsent).
TEST_F(Faults, SigtermWithThousandConnectionsExitsCleanly) {
  constexpr int kConnections = 1000;
  // Both ends live in processes with this limit (the agent inherits it).
  rlimit files{};
  getrlimit(RLIMIT_NOFILE, &files);
  files.rlim_cur = files.rlim_max;
  setrlimit(RLIMIT_NOFILE, &files);
  if (files.rlim_cur < kConnections + 200) {
    GTEST_SKIP() << "needs " << kConnections + 200
                 << " open files; the hard limit is " << files.rlim_max;
  }
  StartAgent({"--shutdown-grace=2s", "--send-buffer-bytes=1048576",
              "--max-send-bytes=65536"});
  v1::Server echo = StartLoopbackServer(*stub_, [](v1::StartServerRequest& r) {
    r.mutable_behavior()->mutable_echo();
  });
  std::vector<Fd> peers;
  peers.reserve(kConnections);
  for (int i = 0; i < kConnections; ++i) {
    peers.push_back(TcpConnect(FirstAddress(echo)));
    ASSERT_TRUE(peers.back().valid()) << i;
  }
  // Every connection is live: each echoes its own tag.
  for (int i = 0; i < kConnections; ++i) {
    const std::string tag = absl::StrCat("<", i, ">");
    ASSERT_TRUE(WriteAll(peers[i].get(), tag));
    ASSERT_EQ(ReadExactly(peers[i].get(), tag.size()), tag) << i;
  }
  // A connection the agent opened, with bytes accepted by Send but stuck in
  // the agent's buffer (the peer does not read).
  Fd stuck_peer;
  const std::string stuck = OpenToPlainPeer(&stuck_peer);
  int small = 16384;
  setsockopt(stuck_peer.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
  grpc::Status status;
  for (int i = 0; i < 10000; ++i) {
    status = Send(stuck, std::string(60000, 's'));
    if (!status.ok()) break;
  }
  ASSERT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);

  const absl::Time start = absl::Now();
  absl::StatusOr<int> exit = agent_->Stop();
  const absl::Duration took = absl::Now() - start;
  ASSERT_TRUE(exit.ok()) << exit.status();
  ASSERT_TRUE(WIFEXITED(*exit)) << "status " << *exit;
  EXPECT_EQ(WEXITSTATUS(*exit), 0) << agent_->Stderr();
  EXPECT_LT(took, absl::Seconds(10));
  const std::string log = agent_->Stderr();
  EXPECT_THAT(log, ::testing::Not(HasSubstr("ERROR: AddressSanitizer")));
  EXPECT_THAT(log, ::testing::Not(HasSubstr("runtime error")));

  // Every accepted peer sees the end of its stream (EOF or reset), nothing
  // more.
  int ended = 0;
  for (int i = 0; i < kConnections; ++i) {
    int error = 0;
    const std::string rest = ReadToEof(peers[i].get(), &error);
    EXPECT_TRUE(rest.empty()) << i;
    EXPECT_THAT(error, AnyOf(0, ECONNRESET)) << i;
    if (error == 0 || error == ECONNRESET) ++ended;
  }
  EXPECT_EQ(ended, kConnections);
  // The peer with unsent bytes sees a reset after what reached it, never a
  // clean end that would hide the loss.
  int error = 0;
  ReadToEof(stuck_peer.get(), &error);
  EXPECT_EQ(error, ECONNRESET);
  std::cout << "SIGTERM with " << kConnections + 1 << " connections: exit "
            << WEXITSTATUS(*exit) << " after "
            << absl::ToInt64Milliseconds(took) << " ms\n";
  RecordProperty("sigterm_exit_ms",
                 std::to_string(absl::ToInt64Milliseconds(took)));
}

}  // namespace
}  // namespace sockagent::testing
