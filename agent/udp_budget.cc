#include "agent/udp_budget.h"

#include <algorithm>
#include <limits>

namespace sockagent {
namespace {

template <typename T>
T Tighter(T agent, T spec) {
  if (agent == 0) return spec;
  if (spec == 0) return agent;
  return std::min(agent, spec);
}

}  // namespace

UdpReplyLimits EffectiveUdpReplyLimits(const UdpReplyLimits& agent,
                                       const UdpReplyLimits& spec) {
  UdpReplyLimits out;
  out.datagrams_per_sec =
      Tighter(agent.datagrams_per_sec, spec.datagrams_per_sec);
  out.bytes_per_sec = Tighter(agent.bytes_per_sec, spec.bytes_per_sec);
  out.peer_ratio = Tighter(agent.peer_ratio, spec.peer_ratio);
  // The grant only matters with a ratio; a server may lower the agent's.
  if (agent.peer_ratio == 0) {
    out.peer_grant_bytes = spec.peer_grant_bytes;
  } else {
    out.peer_grant_bytes =
        spec.peer_grant_bytes == 0
            ? agent.peer_grant_bytes
            : std::min(agent.peer_grant_bytes, spec.peer_grant_bytes);
  }
  if (out.peer_ratio == 0) out.peer_grant_bytes = 0;
  return out;
}

bool UdpReplyBudget::Bucket::Has(double amount, int64_t now_ns) {
  if (rate == 0) return true;
  const double elapsed = static_cast<double>(now_ns - last_ns) / 1e9;
  if (elapsed > 0) {
    tokens = std::min(capacity, tokens + elapsed * rate);
    last_ns = now_ns;
  }
  return tokens >= amount;
}

bool UdpReplyBudget::Bucket::Take(double amount, int64_t now_ns) {
  if (!Has(amount, now_ns)) return false;
  if (rate != 0) tokens -= amount;
  return true;
}

UdpReplyBudget::UdpReplyBudget(const UdpReplyLimits& limits) : limits_(limits) {
  datagrams_.rate = limits.datagrams_per_sec;
  datagrams_.capacity = std::max<double>(1, limits.datagrams_per_sec);
  datagrams_.tokens = datagrams_.capacity;
  bytes_.rate = static_cast<double>(limits.bytes_per_sec);
  bytes_.capacity = std::max<double>(static_cast<double>(kMaxReplyBytes),
                                     static_cast<double>(limits.bytes_per_sec));
  bytes_.tokens = bytes_.capacity;
}

UdpReplyBudget::Peer& UdpReplyBudget::Track(const UdpPeerIp& peer,
                                            int64_t now_ns) {
  const int64_t idle_ns = absl::ToInt64Nanoseconds(kPeerIdle);
  // Forget peers idle too long (least recently seen first).
  while (!lru_.empty()) {
    auto oldest = peers_.find(lru_.front());
    if (now_ns - oldest->second.last_seen_ns < idle_ns) break;
    peers_.erase(oldest);
    lru_.pop_front();
  }
  auto it = peers_.find(peer);
  if (it == peers_.end()) {
    if (peers_.size() >= kMaxTrackedPeers) {
      peers_.erase(lru_.front());
      lru_.pop_front();
    }
    it = peers_.try_emplace(peer).first;
    it->second.lru = lru_.insert(lru_.end(), peer);
  } else {
    lru_.splice(lru_.end(), lru_, it->second.lru);
  }
  it->second.last_seen_ns = now_ns;
  return it->second;
}

UdpReplyBudget::Verdict UdpReplyBudget::Admit(const UdpPeerIp& peer,
                                              uint64_t received,
                                              uint64_t reply_bytes,
                                              int64_t now_ns) {
  Peer* p = nullptr;
  if (limits_.peer_ratio != 0) {
    p = &Track(peer, now_ns);
    p->received += received;
    constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
    const uint64_t allowance =
        p->received > (kMax - limits_.peer_grant_bytes) / limits_.peer_ratio
            ? kMax
            : limits_.peer_ratio * p->received + limits_.peer_grant_bytes;
    if (reply_bytes > allowance || p->sent > allowance - reply_bytes) {
      return Verdict::kPeerAllowance;
    }
  }
  if (!datagrams_.Has(1, now_ns)) return Verdict::kServerRate;
  if (!bytes_.Has(static_cast<double>(reply_bytes), now_ns)) {
    return Verdict::kServerByteRate;
  }
  datagrams_.Take(1, now_ns);
  bytes_.Take(static_cast<double>(reply_bytes), now_ns);
  if (p != nullptr) p->sent += reply_bytes;
  return Verdict::kAllow;
}

absl::string_view UdpReplyBudget::Reason(Verdict verdict) {
  switch (verdict) {
    case Verdict::kAllow:
      return "";
    case Verdict::kServerRate:
      return "reply dropped: the server's reply rate (datagrams per second) "
             "is used up";
    case Verdict::kServerByteRate:
      return "reply dropped: the server's reply byte rate (bytes per second) "
             "is used up";
    case Verdict::kPeerAllowance:
      return "reply dropped: it would exceed what this peer may be sent (a "
             "multiple of the bytes it sent, plus a grant)";
  }
  return "reply dropped";
}

}  // namespace sockagent
