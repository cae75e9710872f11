// ProxyRelay: see agent/proxy.h. Every method runs under the engine lock;
// each one says so to clang's -Wthread-safety with AssertEngineLock().
#include "agent/proxy.h"

#include <ifaddrs.h>
#include <netinet/in.h>

#include <algorithm>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "agent/address.h"
#include "agent/engine_impl.h"
#include "agent/registry.h"
#include "agent/unix_path.h"

namespace sockagent {
namespace engine_internal {

namespace {

uint64_t Room(uint64_t used, uint64_t bound) {
  return used >= bound ? 0 : bound - used;
}

bool IsAbortReason(CloseReason reason) {
  return reason == CloseReason::kPeerReset || reason == CloseReason::kError ||
         reason == CloseReason::kLocalAbort;
}

Transport UpstreamTransport(const ServerSpec& spec) {
  return spec.behavior.proxy_transport.value_or(spec.transport);
}

// IPv4-mapped IPv6 (::ffff:127.0.0.1) as the IPv4 address it reaches.
asio::ip::address Unmapped(const asio::ip::address& a) {
  if (a.is_v6() && a.to_v6().is_v4_mapped()) {
    return asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6());
  }
  return a;
}

// Whether a connect to `a` stays on this host: loopback, the unspecified
// address (Linux connects it to the host itself), or an address of one of
// its interfaces.
bool IsLocalAddress(const asio::ip::address& a) {
  if (a.is_loopback() || a.is_unspecified()) return true;
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return false;
  bool local = false;
  for (const ifaddrs* i = list; i != nullptr && !local; i = i->ifa_next) {
    const sockaddr* sa = i->ifa_addr;
    if (sa == nullptr) continue;
    if (sa->sa_family == AF_INET && a.is_v4()) {
      const auto* in = reinterpret_cast<const sockaddr_in*>(sa);
      local = asio::ip::address_v4(ntohl(in->sin_addr.s_addr)) == a.to_v4();
    } else if (sa->sa_family == AF_INET6 && a.is_v6()) {
      const auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
      asio::ip::address_v6::bytes_type bytes;
      std::copy(std::begin(in6->sin6_addr.s6_addr),
                std::end(in6->sin6_addr.s6_addr), bytes.begin());
      // Link-local addresses carry a scope; compare the bytes only.
      local = asio::ip::address_v6(bytes) ==
              asio::ip::address_v6(a.to_v6().to_bytes());
    }
  }
  ::freeifaddrs(list);
  return local;
}

}  // namespace

std::string DialsItself(const std::vector<SocketAddress>& bound,
                        const asio::ip::address& to, uint16_t port) {
  const asio::ip::address dialled = Unmapped(to);
  std::optional<bool> local;  // getifaddrs once, and only when needed.
  for (const SocketAddress& b : bound) {
    if (b.port != port) continue;
    const std::optional<asio::ip::address> own = ParseIpLiteral(b.ip);
    if (!own.has_value() || own->is_v4() != dialled.is_v4()) continue;
    if (own->is_unspecified()) {
      if (!local.has_value()) local = IsLocalAddress(dialled);
      if (*local) return b.ToString();
      continue;
    }
    const bool same =
        own->is_v4() ? own->to_v4() == dialled.to_v4()
                     : own->to_v6().to_bytes() == dialled.to_v6().to_bytes();
    if (same) return b.ToString();
  }
  return "";
}

absl::Status CheckProxyNotItself(const ServerSpec& spec,
                                 const std::vector<SocketAddress>& bound) {
  if (spec.behavior.kind != BehaviorKind::kProxy ||
      UpstreamTransport(spec) == Transport::kUnix) {
    return absl::OkStatus();
  }
  const Endpoint& up = spec.behavior.proxy_upstream;
  const std::optional<asio::ip::address> to = ParseIpLiteral(up.host);
  absl::StatusOr<std::optional<uint16_t>> port = ParsePort(up.port);
  if (!to.has_value() || !port.ok() || !port->has_value()) {
    return absl::OkStatus();  // A name: checked per dial.
  }
  const std::string own = DialsItself(bound, *to, **port);
  if (own.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "behavior.proxy.upstream: ", ToSocketAddress(*to, **port).ToString(),
      " would dial the proxy itself (its own listening address ", own,
      "), and every connection it accepted would dial it again"));
}

absl::Status CheckProxySpec(const ServerSpec& spec) {
  const Endpoint& up = spec.behavior.proxy_upstream;
  const Transport t = UpstreamTransport(spec);
  if ((spec.transport == Transport::kUdp) != (t == Transport::kUdp)) {
    return absl::InvalidArgumentError(
        "behavior.proxy.transport: a UDP server relays to a UDP upstream, a "
        "TCP or UNIX server to a TCP or UNIX upstream");
  }
  if (t == Transport::kUnix) {
    if (!up.host.empty() || !up.port.empty()) {
      return absl::InvalidArgumentError(
          "behavior.proxy.upstream: a UNIX upstream takes unix_path only, not "
          "host or port");
    }
    if (absl::Status s = CheckUnixPathSyntax(up.unix_path); !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("behavior.proxy.upstream.unix_path: ", s.message()));
    }
    if (spec.transport == Transport::kUnix &&
        up.unix_path == spec.bind.unix_path) {
      return absl::InvalidArgumentError(absl::StrCat(
          "behavior.proxy.upstream.unix_path: unix:", up.unix_path,
          " would dial the proxy itself (its own listening address), and "
          "every connection it accepted would dial it again"));
    }
    return absl::OkStatus();
  }
  if (!up.unix_path.empty()) {
    return absl::InvalidArgumentError(
        "behavior.proxy.upstream.unix_path is for a UNIX upstream (set "
        "behavior.proxy.transport to UNIX)");
  }
  if (up.host.empty()) {
    return absl::InvalidArgumentError(
        "behavior.proxy.upstream.host is empty: the proxy needs an upstream "
        "host and port");
  }
  if (up.port.empty() || up.port == "0") {
    return absl::InvalidArgumentError(
        "behavior.proxy.upstream.port is missing or 0: the proxy needs an "
        "upstream port");
  }
  return absl::OkStatus();
}

absl::Status ProxiedRefusal(const Conn& c, absl::string_view op) {
  return absl::FailedPreconditionError(absl::StrCat(
      op, " ", ConnId(c.num),
      ": the proxy relays this connection's bytes (close it, or stop its "
      "server ",
      ServerId(c.server_num), ")"));
}

void ProxyRelay::Dial(Server& s, Conn& down) {
  engine_.AssertEngineLock();
  ClientSpec spec;
  spec.transport = s.info.behavior.proxy_transport.value_or(s.info.transport);
  spec.remote = s.info.behavior.proxy_upstream;
  spec.tls = s.info.behavior.proxy_tls;
  // The upstream half shares the server's labels (set when it is filed).
  engine_.connector_.Open(
      std::move(spec), absl::InfiniteFuture(),
      [this, down_num = down.num](absl::StatusOr<ConnectionInfo> result) {
        if (!result.ok()) OnDialFailed(down_num, result.status());
      },
      /*proxy_for=*/down.num);
}

std::string ProxyRelay::OwnAddressDialled(
    uint64_t down_num, const asio::ip::tcp::endpoint& to) const {
  engine_.AssertEngineLock();
  const Conn* down = engine_.registry_.FindConn(down_num);
  if (down == nullptr) return "";
  const Server* s = engine_.registry_.FindServer(down->server_num);
  if (s == nullptr) return "";
  return DialsItself(s->info.local_addresses, to.address(), to.port());
}

void ProxyRelay::OnDialFailed(uint64_t down_num, const absl::Status& status) {
  engine_.AssertEngineLock();
  Conn* down = engine_.registry_.FindConn(down_num);
  if (down == nullptr || down->state == ConnectionState::kClosed) return;
  // FIN, as toxiproxy closes the client when its upstream cannot be
  // reached; the reason and detail say why.
  engine_.closer_.StartClose(*down, CloseReason::kError,
                             absl::StrCat("proxy upstream: ", status.message()),
                             /*abort=*/false);
}

void ProxyRelay::OnUpstreamConnected(uint64_t down_num, Conn& up) {
  engine_.AssertEngineLock();
  Conn* down = engine_.registry_.FindConn(down_num);
  if (down == nullptr || down->state == ConnectionState::kClosed) {
    const bool abort = down != nullptr && IsAbortReason(down->close_reason);
    engine_.closer_.StartClose(
        up, abort ? CloseReason::kLocalAbort : CloseReason::kLocalClose,
        absl::StrCat("proxy: ", ConnId(down_num),
                     " closed before the upstream connected"),
        abort);
    return;
  }
  down->Extra().proxy_peer = up.num;
  if (down->is_udp_session()) {
    // Datagrams held while dialling go out in order.
    Fifo<ReceivedDatagram> held = std::move(down->Extra().recv_datagrams);
    down->Extra().recv_datagrams.clear();
    down->counters.recv_buffered = 0;
    engine_.ledger_.Recharge(*down);
    while (!held.empty()) {
      std::string data = std::move(held.front().data);
      held.pop_front();
      if (!engine_.conn_io_.QueueSend(up, std::move(data)).ok()) {
        ++down->counters.datagrams_dropped;
      }
    }
    return;
  }
  if (!down->recv_bytes.empty()) {
    // Bytes held while dialling: the upstream's send queue takes them.
    const size_t held = down->recv_bytes.size();
    std::string data = down->recv_bytes.Take(held);
    down->counters.recv_buffered = 0;
    engine_.ledger_.Recharge(*down);
    up.send_bytes.AppendOwned(std::move(data));
    up.counters.send_buffered = up.send_bytes.size();
    up.counters.send_buffered_peak =
        std::max(up.counters.send_buffered_peak, up.counters.send_buffered);
    engine_.ledger_.Recharge(up);
    engine_.conn_io_.Flush(up);
    if (up.finalized) return;
  }
  engine_.conn_io_.ResumeReading(*down);
  if (down->reading.eof) engine_.conn_io_.ShutdownWrite(up);
}

Conn* ProxyRelay::Peer(const Conn& c) const {
  engine_.AssertEngineLock();
  if (c.extra == nullptr || c.extra->proxy_peer == 0) return nullptr;
  Conn* p = engine_.registry_.FindConn(c.extra->proxy_peer);
  if (p == nullptr || p->finalized) return nullptr;
  return p;
}

uint64_t ProxyRelay::FeedRoom(const Conn& reader) const {
  engine_.AssertEngineLock();
  const EngineOptions& o = engine_.options_;
  if (const Conn* p = Peer(reader)) {
    return Room(p->counters.send_buffered, o.send_buffer_bytes);
  }
  return Room(reader.counters.recv_buffered, o.recv_buffer_bytes);
}

bool ProxyRelay::MayResume(const Conn& reader) const {
  engine_.AssertEngineLock();
  const EngineOptions& o = engine_.options_;
  if (const Conn* p = Peer(reader)) {
    return p->counters.send_buffered <= o.send_buffer_bytes / 2;
  }
  return reader.counters.recv_buffered <= o.recv_buffer_bytes / 2;
}

bool ProxyRelay::Relay(Conn& from, const char* data, size_t n) {
  engine_.AssertEngineLock();
  Conn* to = Peer(from);
  if (to == nullptr) return false;
  // The other half is closing: it closes `from` too (OnClosed), so these
  // bytes have nowhere to go.
  if (to->state == ConnectionState::kClosed || to->writing.fin_wanted) {
    return true;
  }
  to->send_bytes.Append(absl::string_view(data, n));
  to->counters.send_buffered = to->send_bytes.size();
  to->counters.send_buffered_peak =
      std::max(to->counters.send_buffered_peak, to->counters.send_buffered);
  engine_.ledger_.Recharge(*to);
  engine_.conn_io_.Flush(*to);
  return true;
}

void ProxyRelay::Drained(Conn& c) {
  engine_.AssertEngineLock();
  if (Conn* feeder = Peer(c)) engine_.conn_io_.ResumeReading(*feeder);
}

void ProxyRelay::OnFin(Conn& c) {
  engine_.AssertEngineLock();
  // Not linked yet: OnUpstreamConnected sends the FIN after the held bytes.
  if (Conn* p = Peer(c)) engine_.conn_io_.ShutdownWrite(*p);
}

void ProxyRelay::OnClosed(Conn& c) {
  engine_.AssertEngineLock();
  if (c.origin != Origin::kProxyUpstream &&
      (c.extra == nullptr || c.extra->proxy_peer == 0)) {
    // The client left while its upstream was still being dialled: the dial
    // has nobody to serve.
    const std::string dialling = engine_.connector_.CancelProxyDial(c.num);
    if (!dialling.empty()) {
      ConnExtra& x = c.Extra();
      const std::string note = absl::StrCat(
          "proxy: the client left before the upstream connected; the dial "
          "to ",
          dialling, " was cancelled");
      x.close_detail = x.close_detail.empty()
                           ? note
                           : absl::StrCat(x.close_detail, "; ", note);
    }
    return;
  }
  Conn* p = Peer(c);
  if (p == nullptr || p->state == ConnectionState::kClosed) return;
  // Both FINs went through `c`: the other half finishes its own FIN
  // exchange (it has the FIN relayed from `c` queued) and closes by itself.
  if (c.close_reason == CloseReason::kPeerClosed) return;
  const bool abort = IsAbortReason(c.close_reason);
  const std::string detail =
      c.extra != nullptr && !c.extra->close_detail.empty()
          ? absl::StrCat(" (", c.extra->close_detail, ")")
          : std::string();
  engine_.closer_.StartClose(
      *p, abort ? CloseReason::kLocalAbort : CloseReason::kLocalClose,
      absl::StrCat("proxy: the other half ", ConnId(c.num),
                   " closed: ", CloseReasonText(c.close_reason), detail),
      abort);
}

void ProxyRelay::OnSessionDatagram(Server& s, Conn& session, const char* data,
                                   size_t n) {
  engine_.AssertEngineLock();
  Conn* up = Peer(session);
  if (up == nullptr) {
    // Dialling: held in the session's receive queue (bounded, drops
    // counted) until the upstream socket is connected.
    engine_.udp_.BufferDatagram(session, data, n);
    return;
  }
  absl::StatusOr<SendResult> sent =
      engine_.conn_io_.QueueSend(*up, std::string(data, n));
  if (!sent.ok()) {
    ++session.counters.datagrams_dropped;
    ++s.info.counters.datagrams_dropped;
    engine_.Emit(EngineEventKind::kDatagramDropped, s.num, session.num, n, {},
                 sent.status().message());
  }
}

void ProxyRelay::OnUpstreamDatagram(Conn& up, const char* data, size_t n) {
  engine_.AssertEngineLock();
  Conn* session = Peer(up);
  Server* s = session != nullptr
                  ? engine_.registry_.FindServer(session->server_num)
                  : nullptr;
  if (session == nullptr || s == nullptr || s->stopped() ||
      session->state == ConnectionState::kClosed) {
    ++up.counters.datagrams_dropped;
    return;
  }
  // The peer's bytes since the last reply earn it its reply allowance.
  ConnExtra& x = session->Extra();
  const uint64_t received = session->counters.bytes_received - x.proxy_credited;
  x.proxy_credited = session->counters.bytes_received;
  if (!engine_.udp_.AdmitReply(*s, *session, session->remote.udp(), received,
                               n)) {
    return;
  }
  if (!engine_.udp_.SendDatagram(*session, std::string(data, n)).ok()) {
    ++session->counters.datagrams_dropped;
    ++s->info.counters.datagrams_dropped;
  }
}

}  // namespace engine_internal
}  // namespace sockagent
