// Issue 12 §5, UDP reflection/amplification: echo and greeting servers
// answer whoever a datagram's source names, and that source can be forged.
// Their replies are bounded by a reply budget (agent/udp_budget.h): a
// per-server rate and, per peer IP, 3x the bytes it sent plus 1,200 bytes.
// Drops are counted in the server's counters, shown by `sockctl server list`
// and seen in Watch. Plain POSIX UDP sockets on 127.0.0.1 are the peers
// (no forged source is needed to see the bounds).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "sockagent/v1/agent.grpc.pb.h"
#include "tests/support/agent_rpc.h"
#include "tests/support/posix_peer.h"
#include "tests/support/wait.h"

namespace sockagent::testing {
namespace {

using ::testing::HasSubstr;

constexpr size_t kLargestDatagram = 65507;

class UdpReplyBudget : public AgentTestBase {
 protected:
  v1::Server StartUdp(const std::string& greeting,
                      uint32_t reply_datagrams_per_sec = 0) {
    return StartLoopbackServer(*stub_, [&](v1::StartServerRequest& r) {
      r.set_transport(v1::TRANSPORT_UDP);
      if (greeting.empty()) {
        r.mutable_behavior()->mutable_echo();
      } else {
        r.mutable_behavior()->mutable_greeting()->set_data(greeting);
      }
      r.mutable_udp()->set_reply_datagrams_per_sec(reply_datagrams_per_sec);
    });
  }

  v1::ServerCounters Counters(const std::string& id) {
    v1::ListServersRequest request;
    v1::ListServersResponse response;
    auto context = ContextWithDeadline();
    grpc::Status s = stub_->ListServers(context.get(), request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    for (const v1::Server& server : response.servers()) {
      if (server.id() == id) return server.counters();
    }
    ADD_FAILURE() << "no server " << id;
    return {};
  }
};

// The seed's greeting still answers a first empty datagram, under the
// default budget.
TEST_F(UdpReplyBudget, SeedGreetingAnswersAFirstEmptyDatagram) {
  StartAgent();
  const v1::Server server = StartUdp("Thank you for connecting");
  Fd peer = UdpBound();
  ASSERT_TRUE(SendTo(peer.get(), "", FirstAddress(server)));
  EXPECT_EQ(RecvDatagram(peer.get()).value_or("(none)"),
            "Thank you for connecting");
  EXPECT_EQ(Counters(server.id()).replies_dropped(), 0u);
}

// A 65,507-byte greeting answering an empty datagram was a ~2,300x
// amplifier. Now an empty datagram gets at most 1,200 bytes back, so the
// big greeting is not sent; the drop is counted and shown in Watch with its
// reason and peer.
TEST_F(UdpReplyBudget, EmptyDatagramGetsNoBigGreetingAndTheDropIsVisible) {
  StartAgent();
  const v1::Server server = StartUdp(std::string(kLargestDatagram, 'G'));
  ASSERT_EQ(server.udp().reply_peer_ratio(), 3u);
  ASSERT_EQ(server.udp().reply_peer_grant_bytes(), 1200u);

  v1::WatchRequest watch;
  watch.set_server_id(server.id());
  watch.add_kinds(v1::EVENT_KIND_DATAGRAM_DROPPED);
  watch.set_snapshot(true);
  grpc::ClientContext watch_context;
  watch_context.set_deadline(std::chrono::system_clock::now() +
                             std::chrono::seconds(60));
  auto reader = stub_->Watch(&watch_context, watch);
  v1::Event event;
  while (reader->Read(&event) && event.kind() != v1::EVENT_KIND_SNAPSHOT_END) {
  }

  Fd peer = UdpBound();
  constexpr int kSent = 20;
  for (int i = 0; i < kSent; ++i) {
    ASSERT_TRUE(SendTo(peer.get(), "", FirstAddress(server)));
  }
  v1::ServerCounters c;
  ASSERT_TRUE(WaitFor([&] {
    c = Counters(server.id());
    return c.datagrams_received() == kSent;
  }));
  EXPECT_EQ(c.datagrams_sent(), 0u);
  EXPECT_EQ(c.bytes_sent(), 0u);
  EXPECT_EQ(c.replies_dropped(), uint64_t{kSent});
  EXPECT_EQ(c.reply_bytes_dropped(), uint64_t{kSent} * kLargestDatagram);
  EXPECT_EQ(c.datagrams_dropped(), 0u);  // Those are drops on the way in.

  ASSERT_TRUE(reader->Read(&event));
  EXPECT_EQ(event.kind(), v1::EVENT_KIND_DATAGRAM_DROPPED);
  EXPECT_EQ(event.size(), kLargestDatagram);
  EXPECT_THAT(event.message(), HasSubstr("reply dropped"));
  EXPECT_THAT(event.message(), HasSubstr("peer"));
  EXPECT_FALSE(event.connection_id().empty());
  EXPECT_EQ(event.peer().port(), LocalPort(peer.get()));
  watch_context.TryCancel();

  CommandResult list = RunSockctl(agent_->address(), {"server", "list"});
  EXPECT_EQ(list.exit_code, 0) << list.err;
  EXPECT_THAT(list.out, HasSubstr("DROPPED"));
  EXPECT_THAT(list.out, HasSubstr("0 in, 20 replies"));
}

// Bytes sent earn replies: a peer sending 7,000-byte datagrams gets a
// 20,000-byte greeting for each, never more than 3x what it sent plus the
// grant in total.
TEST_F(UdpReplyBudget, PeerAllowanceGrowsWithWhatThePeerSent) {
  StartAgent();
  const v1::Server server = StartUdp(std::string(20000, 'g'));
  Fd peer = UdpBound();
  const std::string chunk(7000, 'x');
  ASSERT_TRUE(SendTo(peer.get(), chunk, FirstAddress(server)));
  ASSERT_TRUE(SendTo(peer.get(), chunk, FirstAddress(server)));
  ASSERT_TRUE(SendTo(peer.get(), chunk, FirstAddress(server)));
  // The first datagram earns 3 x 7,000 + 1,200 = 22,200 bytes: one greeting
  // goes; after the second 43,200: a second (40,000); after the third
  // 64,200: a third (60,000).
  v1::ServerCounters c;
  ASSERT_TRUE(WaitFor([&] {
    c = Counters(server.id());
    return c.datagrams_received() == 3;
  }));
  EXPECT_EQ(c.datagrams_sent(), 3u);
  EXPECT_EQ(c.replies_dropped(), 0u);
  // Now tiny datagrams: each earns 3 bytes, far from another 20,000.
  for (int i = 0; i < 5; ++i)
    ASSERT_TRUE(SendTo(peer.get(), "x", FirstAddress(server)));
  ASSERT_TRUE(WaitFor([&] {
    c = Counters(server.id());
    return c.datagrams_received() == 8;
  }));
  EXPECT_EQ(c.datagrams_sent(), 3u);
  EXPECT_EQ(c.replies_dropped(), 5u);
  // Reflected bytes stay within 3x received plus the grant.
  EXPECT_LE(c.bytes_sent(), 3 * c.bytes_received() + 1200);
}

// A flood from one peer gets replies at the server's rate, and every reply
// held back is counted.
TEST_F(UdpReplyBudget, FloodGetsRepliesAtTheServersRate) {
  StartAgent();
  constexpr uint32_t kRate = 50;
  const v1::Server server = StartUdp("", kRate);
  ASSERT_EQ(server.udp().reply_datagrams_per_sec(), kRate);
  Fd peer = UdpBound();
  constexpr int kSent = 2000;
  const absl::Time start = absl::Now();
  for (int batch = 0; batch < kSent / 200; ++batch) {
    for (int i = 0; i < 200; ++i) {
      ASSERT_TRUE(SendTo(peer.get(), "0123456789", FirstAddress(server)));
    }
    // In batches the kernel's receive buffer never overflows.
    ASSERT_TRUE(WaitFor([&] {
      return Counters(server.id()).datagrams_received() == 200u * (batch + 1);
    }));
  }
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  const v1::ServerCounters c = Counters(server.id());
  // A burst of one second's worth, then kRate per second.
  EXPECT_LE(c.datagrams_sent(), kRate + kRate * seconds + 1);
  EXPECT_GE(c.datagrams_sent(), kRate);
  EXPECT_EQ(c.datagrams_sent() + c.replies_dropped(), uint64_t{kSent});
}

// The daemon's flags set the agent-wide budget; a server may only tighten
// it (asking for more gets the agent's value).
TEST_F(UdpReplyBudget, DaemonFlagsSetTheBudgetAndServersOnlyTighten) {
  StartAgent({"--udp-reply-rate=10", "--udp-reply-peer-ratio=0"});
  v1::Server server = StartUdp("", 5000);
  EXPECT_EQ(server.udp().reply_datagrams_per_sec(), 10u);
  EXPECT_EQ(server.udp().reply_peer_ratio(), 0u);
  server = StartUdp("", 4);
  EXPECT_EQ(server.udp().reply_datagrams_per_sec(), 4u);

  // Without a per-peer bound, a big greeting answers an empty datagram:
  // the operator opened it.
  const v1::Server big = StartUdp(std::string(kLargestDatagram, 'G'));
  Fd peer = UdpBound();
  ASSERT_TRUE(SendTo(peer.get(), "", FirstAddress(big)));
  EXPECT_EQ(RecvDatagram(peer.get()).value_or("").size(), kLargestDatagram);
}

}  // namespace
}  // namespace sockagent::testing
