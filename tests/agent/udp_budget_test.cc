// UdpReplyBudget: the per-server rate buckets, the per-peer allowance
// (ratio x received + grant), the bounded peer table, and how a server's
// limits combine with the agent's. Time is passed in, so no clock is read.
#include "agent/udp_budget.h"

#include <gtest/gtest.h>

#include <cstdint>

namespace sockagent {
namespace {

using Verdict = UdpReplyBudget::Verdict;

constexpr int64_t kSecond = 1'000'000'000;

UdpPeerIp V4(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  UdpPeerIp ip;
  ip.bytes[0] = a;
  ip.bytes[1] = b;
  ip.bytes[2] = c;
  ip.bytes[3] = d;
  ip.size = 4;
  return ip;
}

TEST(UdpReplyBudget, FirstEmptyDatagramGetsTheGrantOnly) {
  UdpReplyBudget budget(kDefaultUdpReplyLimits);
  const UdpPeerIp peer = V4(127, 0, 0, 1);
  // The seed's 24-byte greeting answers an empty datagram.
  EXPECT_EQ(budget.Admit(peer, 0, 24, 0), Verdict::kAllow);
  // A 65,507-byte one does not.
  UdpReplyBudget other(kDefaultUdpReplyLimits);
  EXPECT_EQ(other.Admit(peer, 0, 65507, 0), Verdict::kPeerAllowance);
  EXPECT_EQ(other.Admit(peer, 0, 1200, 0), Verdict::kAllow);
  EXPECT_EQ(other.Admit(peer, 0, 1, 0), Verdict::kPeerAllowance);
}

TEST(UdpReplyBudget, EchoAlwaysFitsThePeerAllowance) {
  UdpReplyLimits limits = kDefaultUdpReplyLimits;
  limits.datagrams_per_sec = 0;
  limits.bytes_per_sec = 0;
  UdpReplyBudget budget(limits);
  const UdpPeerIp peer = V4(10, 0, 0, 1);
  for (int i = 0; i < 10000; ++i) {
    ASSERT_EQ(budget.Admit(peer, 1400, 1400, i), Verdict::kAllow);
  }
}

TEST(UdpReplyBudget, ReflectedBytesStayWithinRatioPlusGrant) {
  UdpReplyLimits limits = kDefaultUdpReplyLimits;
  limits.datagrams_per_sec = 0;
  limits.bytes_per_sec = 0;
  UdpReplyBudget budget(limits);
  const UdpPeerIp peer = V4(10, 0, 0, 2);
  uint64_t received = 0;
  uint64_t sent = 0;
  for (int i = 0; i < 1000; ++i) {
    received += 10;
    if (budget.Admit(peer, 10, 100, i) == Verdict::kAllow) sent += 100;
  }
  EXPECT_LE(sent, 3 * received + 1200);
  EXPECT_GE(sent, 3 * received + 1200 - 100);
}

TEST(UdpReplyBudget, PeersAreKeyedByIpNotPort) {
  // (The key has no port at all: a forger changing ports gains nothing.)
  UdpReplyBudget budget(kDefaultUdpReplyLimits);
  EXPECT_EQ(budget.Admit(V4(10, 0, 0, 3), 0, 1200, 0), Verdict::kAllow);
  EXPECT_EQ(budget.Admit(V4(10, 0, 0, 3), 0, 24, 0), Verdict::kPeerAllowance);
  EXPECT_EQ(budget.Admit(V4(10, 0, 0, 4), 0, 24, 0), Verdict::kAllow);
}

TEST(UdpReplyBudget, ServerRateRefillsOverTime) {
  UdpReplyLimits limits;
  limits.datagrams_per_sec = 10;
  UdpReplyBudget budget(limits);
  const UdpPeerIp peer = V4(10, 0, 0, 5);
  int allowed = 0;
  for (int i = 0; i < 100; ++i) {
    if (budget.Admit(peer, 1, 1, 0) == Verdict::kAllow) ++allowed;
  }
  EXPECT_EQ(allowed, 10);  // One second's worth.
  EXPECT_EQ(budget.Admit(peer, 1, 1, 0), Verdict::kServerRate);
  EXPECT_EQ(budget.Admit(peer, 1, 1, kSecond / 10), Verdict::kAllow);
  EXPECT_EQ(budget.Admit(peer, 1, 1, kSecond / 10), Verdict::kServerRate);
  // Never more than one second's worth, however long it was idle.
  allowed = 0;
  for (int i = 0; i < 100; ++i) {
    if (budget.Admit(peer, 1, 1, 100 * kSecond) == Verdict::kAllow) ++allowed;
  }
  EXPECT_EQ(allowed, 10);
}

TEST(UdpReplyBudget, ByteRateHoldsAtLeastOneLargestDatagram) {
  UdpReplyLimits limits;
  limits.bytes_per_sec = 1000;
  UdpReplyBudget budget(limits);
  const UdpPeerIp peer = V4(10, 0, 0, 6);
  EXPECT_EQ(budget.Admit(peer, 0, 65507, 0), Verdict::kAllow);
  EXPECT_EQ(budget.Admit(peer, 0, 1, 0), Verdict::kServerByteRate);
  EXPECT_EQ(budget.Admit(peer, 0, 1000, kSecond), Verdict::kAllow);
}

TEST(UdpReplyBudget, PeerTableIsBoundedAndForgetsIdlePeers) {
  UdpReplyBudget budget(kDefaultUdpReplyLimits);
  for (int i = 0; i < 3000; ++i) {
    budget.Admit(
        V4(10, 1, static_cast<uint8_t>(i >> 8), static_cast<uint8_t>(i & 0xff)),
        0, 1, i);
  }
  EXPECT_EQ(budget.tracked_peers(), UdpReplyBudget::kMaxTrackedPeers);
  const int64_t later =
      3000 + absl::ToInt64Nanoseconds(UdpReplyBudget::kPeerIdle);
  budget.Admit(V4(10, 2, 0, 0), 0, 1, later);
  EXPECT_EQ(budget.tracked_peers(), 1u);
  // A forgotten peer gets its grant again.
  const UdpPeerIp peer = V4(10, 3, 0, 0);
  EXPECT_EQ(budget.Admit(peer, 0, 1200, later), Verdict::kAllow);
  EXPECT_EQ(budget.Admit(peer, 0, 1, later), Verdict::kPeerAllowance);
  const int64_t much_later =
      later + absl::ToInt64Nanoseconds(UdpReplyBudget::kPeerIdle);
  EXPECT_EQ(budget.Admit(peer, 0, 1200, much_later), Verdict::kAllow);
}

TEST(UdpReplyBudget, NoOverflowWithHugeCounts) {
  UdpReplyLimits limits;
  limits.peer_ratio = 0xffffffffu;
  limits.peer_grant_bytes = 0xffffffffu;
  UdpReplyBudget budget(limits);
  const UdpPeerIp peer = V4(10, 0, 0, 7);
  EXPECT_EQ(budget.Admit(peer, uint64_t{1} << 62, 65507, 0), Verdict::kAllow);
  EXPECT_EQ(budget.Admit(peer, uint64_t{1} << 62, 65507, 0), Verdict::kAllow);
}

TEST(EffectiveUdpReplyLimits, ServersOnlyTightenTheAgents) {
  UdpReplyLimits spec;
  EXPECT_EQ(EffectiveUdpReplyLimits(kDefaultUdpReplyLimits, spec),
            kDefaultUdpReplyLimits);
  spec.datagrams_per_sec = 5;
  spec.bytes_per_sec = uint64_t{1} << 40;
  spec.peer_ratio = 100;
  spec.peer_grant_bytes = 100;
  const UdpReplyLimits e =
      EffectiveUdpReplyLimits(kDefaultUdpReplyLimits, spec);
  EXPECT_EQ(e.datagrams_per_sec, 5u);
  EXPECT_EQ(e.bytes_per_sec, kDefaultUdpReplyLimits.bytes_per_sec);
  EXPECT_EQ(e.peer_ratio, 3u);
  EXPECT_EQ(e.peer_grant_bytes, 100u);
  // An agent without limits takes the server's.
  const UdpReplyLimits open = EffectiveUdpReplyLimits(UdpReplyLimits{}, spec);
  EXPECT_EQ(open.datagrams_per_sec, 5u);
  EXPECT_EQ(open.peer_ratio, 100u);
  EXPECT_EQ(open.peer_grant_bytes, 100u);
}

}  // namespace
}  // namespace sockagent
