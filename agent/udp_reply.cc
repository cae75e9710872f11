// UdpIo, UDP servers: the reply budget of echo and greeting replies
// (agent/udp_budget.h). Runs under the engine lock, on the loop thread
// (replies are sent as datagrams arrive).
#include <cstring>

#include "agent/engine_impl.h"
#include "agent/udp_budget.h"

namespace sockagent {
namespace engine_internal {
namespace {

UdpPeerIp PeerIpOf(const asio::ip::udp::endpoint& from) {
  UdpPeerIp ip;
  const asio::ip::address a = from.address();
  if (a.is_v4()) {
    const auto bytes = a.to_v4().to_bytes();
    std::memcpy(ip.bytes.data(), bytes.data(), bytes.size());
    ip.size = static_cast<uint8_t>(bytes.size());
  } else {
    const auto bytes = a.to_v6().to_bytes();
    std::memcpy(ip.bytes.data(), bytes.data(), bytes.size());
    ip.size = static_cast<uint8_t>(bytes.size());
  }
  return ip;
}

}  // namespace

bool UdpIo::AdmitReply(Server& s, Conn& c, const asio::ip::udp::endpoint& from,
                       size_t received, size_t reply_bytes) {
  engine_.AssertEngineLock();
  if (s.reply_budget == nullptr) return true;
  const UdpReplyBudget::Verdict verdict = s.reply_budget->Admit(
      PeerIpOf(from), received, reply_bytes, SteadyNowNs());
  if (verdict == UdpReplyBudget::Verdict::kAllow) return true;
  ++s.info.counters.replies_dropped;
  s.info.counters.reply_bytes_dropped += reply_bytes;
  engine_.Emit(EventKind::kDatagramDropped, s.num, c.num, reply_bytes, {},
               UdpReplyBudget::Reason(verdict));
  return false;
}

}  // namespace engine_internal
}  // namespace sockagent
