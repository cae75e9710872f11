// UDP faults (drop, duplicate, delay; agent/datagram_stage.h) on a real
// agent's UDP echo server, on the replies it sends (SENT) and on the
// datagrams it receives (RECEIVED, before the echo sees them), measured by
// a plain POSIX UDP peer in this process: the drop count of a fixed seed over
// 10,000 datagrams lands in the binomial 99.9 % interval of what the agent
// received (so kernel drops on the way in do not count), duplicates arrive
// twice, a delay holds replies and removing it releases every one, and the API
// refuses a UDP fault on a TCP server and the other way round. Timing bounds
// are one-sided and generous.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cmath>
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

// The next datagram on `fd` within `ms`, or "" (none).
std::string RecvWithin(int fd, int ms) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, ms) != 1) return "";
  char buf[2048];
  const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
}

class UdpFaults : public AgentTestBase,
                  public ::testing::WithParamInterface<v1::FaultDirection> {
 protected:
  void SetUp() override {
    // Echo replies are bounded by the reply budget (1,000 datagrams/s by
    // default); these tests measure the faults, not the budget.
    StartAgent(
        {"--udp-reply-rate=1000000", "--udp-reply-bytes-rate=1073741824"});
    server_ = StartLoopbackServer(*stub_, [](v1::StartServerRequest& r) {
      r.set_transport(v1::TRANSPORT_UDP);
      r.mutable_behavior()->mutable_echo();
    });
    peer_ = UdpBound();
    ASSERT_TRUE(peer_.valid());
    int big = 8 << 20;
    ::setsockopt(peer_.get(), SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
  }

  // On the echo server, with a fixed seed, in the direction under test.
  grpc::Status AddFault(v1::Fault f) {
    f.mutable_target()->set_server_id(server_.id());
    f.set_seed(42);
    f.set_direction(GetParam());
    return testing::AddFault(*stub_, f);
  }

  grpc::Status RemoveFault(const std::string& name) {
    return testing::RemoveFault(*stub_, name);
  }

  // The peer's session on the server (the only connection).
  v1::Connection Session() {
    v1::ListConnectionsRequest request;
    request.set_server_id(server_.id());
    v1::ListConnectionsResponse response;
    auto context = ContextWithDeadline();
    EXPECT_TRUE(stub_->ListConnections(context.get(), request, &response).ok());
    return response.connections_size() == 1 ? response.connections(0)
                                            : v1::Connection();
  }

  // What a delay holds: queued replies (SENT) or received datagrams
  // waiting for the echo (RECEIVED).
  uint64_t Held() {
    const v1::ConnectionCounters c = Session().counters();
    return GetParam() == v1::FAULT_DIRECTION_RECEIVED ? c.fault_received_held()
                                                      : c.send_buffered();
  }

  v1::Server server_;
  Fd peer_;
};

INSTANTIATE_TEST_SUITE_P(
    Directions, UdpFaults,
    ::testing::Values(v1::FAULT_DIRECTION_SENT, v1::FAULT_DIRECTION_RECEIVED),
    [](const ::testing::TestParamInfo<v1::FaultDirection>& info) {
      return info.param == v1::FAULT_DIRECTION_RECEIVED ? "Received" : "Sent";
    });

TEST_P(UdpFaults, DropLandsInTheBinomialIntervalOfWhatTheAgentReceived) {
  v1::Fault f;
  f.set_name("lossy");
  f.mutable_drop()->set_probability(0.3);
  ASSERT_TRUE(AddFault(f).ok());
  const SocketAddress to = FirstAddress(server_);
  // A reader counts replies while the writer sends, in batches small
  // enough for the agent's receive buffer; each batch waits until the
  // agent has read all of it, so the fault is removed only after every
  // datagram met it.
  std::atomic<int64_t> replies{0};
  std::atomic<bool> end_seen{false};
  std::thread reader([&] {
    while (!end_seen) {
      const std::string d = RecvWithin(peer_.get(), 20000);
      if (d.empty()) return;
      if (d == "END") {
        end_seen = true;
      } else {
        ++replies;
      }
    }
  });
  constexpr int kDatagrams = 10000;
  constexpr int kBatch = 100;
  for (int sent = 0; sent < kDatagrams; sent += kBatch) {
    for (int i = 0; i < kBatch; ++i) {
      ASSERT_TRUE(SendTo(peer_.get(), Pattern((sent + i) * 64, 64), to));
    }
    ASSERT_TRUE(WaitFor([&] {
      return Session().counters().datagrams_received() >=
             static_cast<uint64_t>(sent + kBatch);
    })) << "the agent read "
        << Session().counters().datagrams_received() << " of " << sent + kBatch;
  }
  // The marker passes unfaulted and after every reply (one socket, FIFO).
  ASSERT_TRUE(RemoveFault("lossy").ok());
  ASSERT_TRUE(SendTo(peer_.get(), "END", to));
  reader.join();
  ASSERT_TRUE(end_seen);
  const v1::Connection c = Session();
  const int64_t received = c.counters().datagrams_received() - 1;  // END
  const int64_t dropped = c.counters().fault_datagrams_dropped();
  // Every datagram the agent received was either echoed or dropped by the
  // fault: the agent's count and the peer's agree.
  EXPECT_EQ(replies + dropped, received);
  EXPECT_GE(received, kDatagrams * 9 / 10);
  // 99.9 % two-sided: mean +- 3.29 standard deviations.
  const double mean = 0.3 * static_cast<double>(received);
  const double sd = std::sqrt(received * 0.3 * 0.7);
  EXPECT_GE(dropped, mean - 3.29 * sd) << "received " << received;
  EXPECT_LE(dropped, mean + 3.29 * sd) << "received " << received;
}

TEST_P(UdpFaults, DuplicateSendsEveryReplyTwice) {
  v1::Fault f;
  f.set_name("twice");
  f.mutable_duplicate()->set_probability(1.0);
  ASSERT_TRUE(AddFault(f).ok());
  const SocketAddress to = FirstAddress(server_);
  for (int i = 0; i < 20; ++i) {
    const std::string msg = absl::StrCat("dup-", i);
    ASSERT_TRUE(SendTo(peer_.get(), msg, to));
    EXPECT_EQ(RecvWithin(peer_.get(), 10000), msg);
    EXPECT_EQ(RecvWithin(peer_.get(), 10000), msg);
  }
  EXPECT_EQ(Session().counters().fault_datagrams_duplicated(), 20u);
}

TEST_P(UdpFaults, DelayHoldsRepliesAndRemovingItReleasesEveryOneInOrder) {
  v1::Fault f;
  f.set_name("slow");
  SetDuration(absl::Milliseconds(200), f.mutable_delay()->mutable_delay());
  ASSERT_TRUE(AddFault(f).ok());
  const SocketAddress to = FirstAddress(server_);
  // A short delay: the reply comes, but not before it.
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(SendTo(peer_.get(), "first", to));
  EXPECT_EQ(RecvWithin(peer_.get(), 10000), "first");
  EXPECT_GE(std::chrono::steady_clock::now() - t0,
            std::chrono::milliseconds(200));
  // A long one holds the next replies (charged to the send buffer; or the
  // datagrams, to the receive buffer) until the fault goes; then every one
  // leaves at once, in order.
  v1::UpdateFaultRequest update;
  *update.mutable_fault() = f;
  update.mutable_fault()->set_direction(GetParam());  // Stays where it is.
  SetDuration(absl::Minutes(10),
              update.mutable_fault()->mutable_delay()->mutable_delay());
  v1::UpdateFaultResponse updated;
  auto context = ContextWithDeadline();
  ASSERT_TRUE(stub_->UpdateFault(context.get(), update, &updated).ok());
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(SendTo(peer_.get(), absl::StrCat("held-", i), to));
  }
  ASSERT_TRUE(WaitFor(
      [&] { return Session().counters().fault_datagrams_delayed() == 6; }));
  EXPECT_EQ(RecvWithin(peer_.get(), 0), "");  // Nothing out yet.
  EXPECT_GT(Held(), 0u);
  ASSERT_TRUE(RemoveFault("slow").ok());
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(RecvWithin(peer_.get(), 10000), absl::StrCat("held-", i));
  }
  EXPECT_EQ(Held(), 0u);
}

TEST_P(UdpFaults, TheWrongKindOfFaultForTheTargetIsRefused) {
  v1::Fault stream_fault;
  stream_fault.set_name("lat");
  SetDuration(absl::Milliseconds(5),
              stream_fault.mutable_latency()->mutable_latency());
  grpc::Status s = AddFault(stream_fault);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("drop, duplicate and delay"));

  const v1::Server tcp = StartLoopbackServer(*stub_);
  v1::Fault drop;
  drop.set_name("drop-on-tcp");
  drop.mutable_drop()->set_probability(0.5);
  drop.mutable_target()->set_server_id(tcp.id());
  s = testing::AddFault(*stub_, drop);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("are for UDP"));

  v1::Fault bad;
  bad.set_name("bad-p");
  bad.mutable_drop()->set_probability(1.5);
  s = AddFault(bad);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("drop.probability"));
}

}  // namespace
}  // namespace sockagent::testing
