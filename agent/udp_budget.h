// The reply budget of a UDP server: what its echo and greeting behaviours
// may send back. A UDP source address can be forged, so without a bound a
// greeting server answering an empty datagram with 65,507 bytes is a
// ~2,300x amplifier aimed at whoever the forged source names.
//
// Two bounds, both checked before each automatic reply (Send calls by the
// operator are not replies and are never limited here):
//  - per server, a rate: replies per second and reply bytes per second
//    (token buckets holding one second's worth, and at least one largest
//    datagram of bytes);
//  - per peer IP address (not IP:port: a forger picks ports freely), the
//    reply bytes sent to it may not exceed peer_ratio times the bytes
//    received from it plus peer_grant_bytes. With the defaults (3x + 1,200)
//    an echo always answers, and a greeting of up to 1,200 bytes answers a
//    peer's first empty datagram (the seed's one-shot client), but a forged
//    flood gets at most 3x its own bytes reflected, plus 1,200 bytes per
//    victim address while it is tracked.
// Peers are tracked per server in a bounded table (kMaxTrackedPeers; the
// least recently seen is forgotten first) and forgotten after
// kPeerIdle without a datagram, which gives them a fresh grant.
//
// Not thread-safe: the engine calls it under its engine lock only (on the
// loop thread, or on a gRPC thread inside an inline control call).
//
//   UdpReplyBudget budget(EffectiveUdpReplyLimits(options.udp_reply, {}));
//   if (budget.Admit(peer_ip, received, reply.size(), SteadyNowNs()) !=
//       UdpReplyBudget::Verdict::kAllow) { count the drop; }
#ifndef SOCKAGENT_AGENT_UDP_BUDGET_H_
#define SOCKAGENT_AGENT_UDP_BUDGET_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <list>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace sockagent {

// Zero means "no bound" in EngineOptions (the agent's values), and "the
// agent's value" in a ServerSpec; a server may only tighten the agent's.
struct UdpReplyLimits {
  uint32_t datagrams_per_sec = 0;
  uint64_t bytes_per_sec = 0;
  uint32_t peer_ratio = 0;  // 0: no per-peer bound (the grant is unused).
  uint32_t peer_grant_bytes = 0;

  bool operator==(const UdpReplyLimits&) const = default;
};

// The agent's defaults: safe, and wide enough for interactive use and the
// seed's greeting (see the file comment).
inline constexpr UdpReplyLimits kDefaultUdpReplyLimits{
    .datagrams_per_sec = 1000,
    .bytes_per_sec = 1 << 20,
    .peer_ratio = 3,
    .peer_grant_bytes = 1200,
};

// What a server with `spec` (zeros: the agent's) gets under the agent's
// `agent` limits: for each field, the smaller non-zero value.
UdpReplyLimits EffectiveUdpReplyLimits(const UdpReplyLimits& agent,
                                       const UdpReplyLimits& spec);

// A peer's IP address as bytes (4 or 16), without the port.
struct UdpPeerIp {
  std::array<uint8_t, 16> bytes{};
  uint8_t size = 0;

  bool operator==(const UdpPeerIp&) const = default;
  template <typename H>
  friend H AbslHashValue(H h, const UdpPeerIp& p) {
    return H::combine(
        std::move(h),
        absl::string_view(reinterpret_cast<const char*>(p.bytes.data()),
                          p.size));
  }
};

class UdpReplyBudget {
 public:
  static constexpr size_t kMaxTrackedPeers = 512;
  static constexpr absl::Duration kPeerIdle = absl::Seconds(60);
  // Largest UDP payload: the byte bucket holds at least this.
  static constexpr uint64_t kMaxReplyBytes = 65507;

  enum class Verdict { kAllow, kServerRate, kServerByteRate, kPeerAllowance };

  explicit UdpReplyBudget(const UdpReplyLimits& limits);

  // A datagram of `received` bytes came from `peer`; may a reply of
  // `reply_bytes` go back? Records the received bytes whatever the answer,
  // and on kAllow charges the reply. `now_ns`: a monotonic clock.
  Verdict Admit(const UdpPeerIp& peer, uint64_t received, uint64_t reply_bytes,
                int64_t now_ns);

  // Words for a drop event: "reply dropped: ...".
  static absl::string_view Reason(Verdict verdict);

  const UdpReplyLimits& limits() const { return limits_; }
  size_t tracked_peers() const { return peers_.size(); }

 private:
  struct Peer {
    uint64_t received = 0;
    uint64_t sent = 0;
    int64_t last_seen_ns = 0;
    std::list<UdpPeerIp>::iterator lru;  // Its place in lru_.
  };
  struct Bucket {
    double tokens = 0;
    double rate = 0;  // Per second; 0: unlimited.
    double capacity = 0;
    int64_t last_ns = 0;
    bool Take(double amount, int64_t now_ns);
    bool Has(double amount, int64_t now_ns);
  };
  Peer& Track(const UdpPeerIp& peer, int64_t now_ns);

  const UdpReplyLimits limits_;
  Bucket datagrams_;
  Bucket bytes_;
  absl::flat_hash_map<UdpPeerIp, Peer> peers_;
  std::list<UdpPeerIp> lru_;  // Least recently seen first.
};

}  // namespace sockagent

#endif  // SOCKAGENT_AGENT_UDP_BUDGET_H_
