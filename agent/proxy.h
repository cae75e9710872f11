// ProxyRelay: the proxy behaviour. A proxy server's accepted connection (a
// UDP server's peer session) gets a linked upstream connection that the
// agent dials; the relay moves bytes between the two halves.
//
// Owns: the link between the halves (ConnExtra::proxy_peer on both, so an
// idle Conn keeps its size), the dials in progress for a downstream, and the
// rules of the relay. The halves are ordinary engine connections: listed,
// counted, watched, charged to the BufferBudget, closed by the usual paths.
//
// Lock: a member of EngineImpl, guarded by the engine lock like every engine
// object; every method is called with that lock held (a loop handler, or an
// inline control call). It has no thread, timer or lock of its own.
//
//   relay.Dial(server, accepted);                  // at accept
//   if (!relay.Relay(conn, data, n)) { hold it; }  // bytes read from a half
//
// The data path, stream transports: bytes read from one half go straight to
// the other half's send queue (ByteQueue, written with writev). A half
// reads only while the other half's send queue is below send_buffer_bytes
// (ReadRoom asks FeedRoom), and resumes when that queue drains to half of
// it (Drained), so a slow side pauses the reading of the other and no more
// than send_buffer_bytes per direction (plus the agent-wide bound) is ever
// buffered. Before the upstream is connected the downstream's bytes are
// held in its receive buffer (recv_buffer_bytes, reading paused beyond)
// and handed over on connect. A FIN read on one half becomes a FIN on the
// other once its queue drained; the other direction goes on. A reset or
// error on one half aborts the other (RST); any other close of one half
// (CloseConnection, TTL, idle timeout, server stop) closes the other the
// same way: gracefully (flush, FIN) or, for an abort, with RST. An upstream
// dial that fails (refused, timed out, refused by the policy, unknown name)
// closes the downstream gracefully (FIN, as toxiproxy does), reason ERROR,
// the detail saying why. A downstream that is closed (its client reset it,
// an idle timeout, a Close call) while its dial is still in progress
// cancels the dial: its socket closes at once and no upstream half is
// filed; the downstream's close detail says so.
//
// A proxy never dials itself: an upstream that is one of the server's own
// listening addresses (the same address and port, or a wildcard bind's
// port and a local address) would have every accepted connection dial the
// proxy again, forever. A literal upstream is refused at StartServer
// (CheckProxyNotItself); a name, resolved per connection, is refused at
// dial time, closing the downstream with reason ERROR.
//
// UDP: each peer session dials its own connected UDP socket to the
// upstream; the session's datagrams go out on it (held in the session's
// receive queue, bounded, until it is connected) and the upstream's replies
// go back to that peer through the server socket, under the server's UDP
// reply budget (agent/udp_budget.h): a forged source cannot make the agent
// an amplifier. Sessions expire as usual and take their upstream along.
#ifndef SOCKAGENT_AGENT_PROXY_H_
#define SOCKAGENT_AGENT_PROXY_H_

#include <asio.hpp>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "agent/engine.h"
#include "agent/engine_objects.h"

namespace sockagent {
namespace engine_internal {

class EngineImpl;

// StartServer's checks of a proxy behaviour (InvalidArgument naming the
// field); the dial itself is checked (policy, names) per connection.
absl::Status CheckProxySpec(const ServerSpec& spec);

// StartServer, once bound to `bound`: InvalidArgument naming
// behavior.proxy.upstream when the upstream (an IP literal and a numeric
// port) is one of them (see DialsItself). Names are checked per dial.
absl::Status CheckProxyNotItself(const ServerSpec& spec,
                                 const std::vector<SocketAddress>& bound);

// The address of `bound` that dialling `to` port `port` would reach ("" for
// none): the same address and port, or a wildcard of its family with that
// port when `to` is an address of this host (loopback, the unspecified
// address, or an interface's, from getifaddrs). IPv4-mapped IPv6 counts as
// IPv4.
std::string DialsItself(const std::vector<SocketAddress>& bound,
                        const asio::ip::address& to, uint16_t port);

// Why Receive, Send, Stream attach or shutdown-write cannot act on the
// proxied half `c` (FailedPrecondition), `op` naming the call.
absl::Status ProxiedRefusal(const Conn& c, absl::string_view op);

class ProxyRelay final {
 public:
  explicit ProxyRelay(EngineImpl& engine) : engine_(engine) {}
  ProxyRelay(const ProxyRelay&) = delete;
  ProxyRelay& operator=(const ProxyRelay&) = delete;

  // `down` was just accepted by proxy server `s` (stream: adopted by the
  // reactor; UDP: a new peer session): starts its upstream dial.
  void Dial(Server& s, Conn& down);
  // Connector: the upstream dialled for `down_num` connected and is filed
  // as `up` (origin kProxyUpstream, the server's labels): link and start.
  void OnUpstreamConnected(uint64_t down_num, Conn& up);
  // Connector: which of the proxy server's own listening addresses
  // dialling `to` for downstream `down_num` would reach ("" for none).
  std::string OwnAddressDialled(uint64_t down_num,
                                const asio::ip::tcp::endpoint& to) const;

  // The live other half of `c`, or null (not linked yet, or gone).
  Conn* Peer(const Conn& c) const;
  // Bytes `reader` may read now without overfilling where they go.
  uint64_t FeedRoom(const Conn& reader) const;
  // True when `reader` may resume (what it feeds drained to half).
  bool MayResume(const Conn& reader) const;
  // Bytes read from stream half `from`: queued on the other half and
  // flushed. False: no upstream yet, the caller holds them.
  bool Relay(Conn& from, const char* data, size_t n);
  // `c`'s send queue drained (some or all): its feeder may read again.
  void Drained(Conn& c);
  // The peer's FIN was read on `c`: FIN to the other half once drained.
  void OnFin(Conn& c);
  // `c` was just marked closed (MarkClosed): close the other half.
  void OnClosed(Conn& c);

  // UDP: a datagram of peer session `session` of proxy server `s`.
  void OnSessionDatagram(Server& s, Conn& session, const char* data, size_t n);
  // UDP: a datagram read on upstream socket `up`.
  void OnUpstreamDatagram(Conn& up, const char* data, size_t n);

 private:
  void OnDialFailed(uint64_t down_num, const absl::Status& status);

  EngineImpl& engine_;
};

}  // namespace engine_internal
}  // namespace sockagent

#endif  // SOCKAGENT_AGENT_PROXY_H_
