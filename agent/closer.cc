// Closer (agent/closer.h), closing a connection: the graceful tail (flush, FIN,
// read and discard until the peer's FIN or close_linger), aborts (RST), the
// greeting-and-close fast path, and filing the closed record in the history
// (Finalize). Its own file because closing is a stage of its own, with its
// own state (linger timers), entered from reads, writes, timers, Close calls
// and stopping servers alike.
//
// Threads: everything here runs under the engine lock (agent/engine_impl.h):
// in a completion handler on the loop thread, or inline on the caller's
// thread (a gRPC thread) inside a public Engine call. Nothing here blocks;
// socket calls are non-blocking.
#include "agent/closer.h"

#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "agent/engine_impl.h"
#include "agent/net_error.h"

namespace sockagent {
namespace engine_internal {

namespace {

// Bytes the peer sent before the close stay available to Receive after
// these closes; the others were asked for (or decided) locally and discard
// them.
bool KeepsReceivedBytes(CloseReason reason) {
  return reason == CloseReason::kPeerClosed ||
         reason == CloseReason::kPeerReset || reason == CloseReason::kError;
}

}  // namespace

void CloseDescriptor(int fd, bool abort) {
  if (abort) {
    const linger reset{1, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
  }
  ::close(fd);
}

void Closer::StartClose(Conn& c, CloseReason reason, std::string detail,
                        bool abort, bool keep_received) {
  engine_.AssertEngineLock();
  if (c.finalized) return;
  if (c.state == ConnectionState::kClosed) {
    if (abort) Finalize(c, /*abort=*/true);  // Cut a closing tail short.
    return;
  }
  MarkClosed(c, reason, std::move(detail), keep_received);
  if (abort || c.stream == nullptr ||
      engine_.options_.close_linger <= absl::ZeroDuration()) {
    // UDP has no FIN to wait for: datagrams still queued count as lost.
    if (!abort && c.stream != nullptr) engine_.conn_io_.Flush(c);
    if (!c.finalized) Finalize(c, abort || c.counters.send_buffered > 0);
    return;
  }
  // Graceful tail: flush, FIN, then read until the peer's FIN; the linger
  // timer bounds all of it. It is armed only if the flush and FIN did not
  // end the connection already (a peer that reset or closed first).
  c.writing.fin_wanted = true;
  c.reading.paused = false;
  if (c.reading.fin_held) {
    // The peer's FIN was read already (a RECEIVED fault held it): the tail
    // has none to wait for.
    c.reading.fin_held = false;
    engine_.conn_io_.OnPeerFin(c);
    if (c.finalized) return;
  }
  engine_.conn_io_.Flush(c);
  if (c.finalized) return;
  ArmLingerTimer(c, engine_.options_.close_linger);
  engine_.conn_io_.ArmRead(c);
}

void Closer::ArmLingerTimer(Conn& c, absl::Duration after) {
  engine_.AssertEngineLock();
  ConnExtra& x = c.Extra();
  x.linger_timer = std::make_unique<Timer>(engine_.io_, ToSteady(after));
  x.linger_timer->async_wait(
      engine_.Locked([this, num = c.num](const asio::error_code& ec) {
        engine_.AssertEngineLock();
        if (!ec) engine_.conn_io_.OnConnTimer(num, ConnTimer::kLinger);
      }));
}

bool Closer::AdoptSocket(Conn& c) {
  engine_.AssertEngineLock();
  const bool unix_socket = c.transport == Transport::kUnix;
  const int family = unix_socket                          ? AF_UNIX
                     : c.remote.family() == Family::kIpv6 ? AF_INET6
                                                          : AF_INET;
  auto stream = std::make_unique<StreamSocket>(engine_.io_);
  asio::error_code ec;
  stream->assign(StreamProtocol(family, unix_socket ? 0 : IPPROTO_TCP),
                 c.raw_fd, ec);
  if (ec) {
    // The reactor could not take it (out of memory): the connection ends.
    engine_.conn_io_.OnStreamError(c, ec, "register");
    return false;
  }
  c.raw_fd = -1;
  c.stream = std::move(stream);
  return true;
}

// The seed's server, made cheap: greeting and FIN leave at accept, and one
// recv tells whether the peer sent anything yet. Nothing (the common case:
// a client that connects and reads): the socket is closed at once and the
// kernel finishes the close (the peer's ACK and FIN, or its reset, are
// handled by the orphaned socket, on the peer's CPU time on loopback).
// Bytes: the careful tail of any graceful close (read and discard until
// the peer's FIN, at most close_linger), so they are never answered with
// RST. Per connection: accept4, send, shutdown, recv, close. Bytes that
// arrive after the recv are answered with RST, as by the seed's own
// server; the greeting and the FIN left before it, and a peer's kernel
// keeps what it received (the greeting-delivery tests: 10,000 peers that
// write right after connect).
bool Closer::GreetAndClose(Server& s, Conn& c, size_t* greeted) {
  engine_.AssertEngineLock();
  const int fd = c.raw_fd;
  if (s.greeting != nullptr) {
    const std::string& g = *s.greeting;
    // MSG_MORE holds the greeting back for the FIN: both leave in one
    // segment, which the peer acknowledges once, instead of two segments
    // and two ACKs (on loopback all of that runs on our CPU time).
    const ssize_t n = ::send(fd, g.data(), g.size(), MSG_NOSIGNAL | MSG_MORE);
    if (n > 0) {
      *greeted = static_cast<size_t>(n);
      c.counters.bytes_sent += *greeted;
      s.info.counters.bytes_sent += *greeted;
      engine_.Emit(EventKind::kDataSent, s.num, c.num, *greeted);
    }
    // A full socket buffer or an error: the reactor path writes the rest
    // (and reports the error).
    if (*greeted != g.size()) return false;
  }
  MarkClosed(c, CloseReason::kLocalClose, "greeting sent");
  c.writing.fin_wanted = true;
  if (::shutdown(fd, SHUT_WR) != 0) {
    asio::error_code ec(errno, asio::error::get_system_category());
    // As in SendFin: not connected any more means the peer reset first.
    if (ec == asio::error::not_connected) ec = asio::error::connection_reset;
    engine_.conn_io_.OnStreamError(c, ec, "shutdown");
    return true;
  }
  c.writing.fin_sent = true;
  const ssize_t n = ::recv(fd, engine_.scratch_.data(), engine_.scratch_.size(),
                           MSG_DONTWAIT);
  if (n == 0) {
    // The peer's FIN already: both directions are done.
    c.reading.eof = true;
    Finalize(c, /*abort=*/false);
    return true;
  }
  if (n < 0) {
    const asio::error_code ec(errno, asio::error::get_system_category());
    if (IsWouldBlock(ec)) {
      Finalize(c, /*abort=*/false);  // Nothing received: close now.
    } else {
      engine_.conn_io_.OnStreamError(c, ec, "read");  // The peer's reset.
    }
    return true;
  }
  engine_.conn_io_.DeliverStream(c, engine_.scratch_.data(),
                                 static_cast<size_t>(n));  // Counted.
  // The peer sent bytes: closing now could answer them with RST, so the
  // reactor's tail reads and discards until its FIN, for close_linger.
  if (!AdoptSocket(c)) return true;
  asio::error_code ec;
  c.stream->non_blocking(true, ec);
  ArmLingerTimer(c, engine_.options_.close_linger);
  engine_.conn_io_.ArmRead(c);
  return true;
}

void Closer::MarkClosed(Conn& c, CloseReason reason, std::string detail,
                        bool keep_received) {
  engine_.AssertEngineLock();
  if (c.state == ConnectionState::kClosed) return;
  SetConnState(engine_.counters_, c, ConnectionState::kClosed);
  c.close_reason = reason;
  ConnExtra& x = c.Extra();
  x.close_detail = std::move(detail);
  x.closed_at = absl::Now();
  x.ttl_timer.reset();
  x.idle_timer.reset();
  if (Server* s = engine_.registry_.FindServer(c.server_num)) {
    // A proxy's upstream half is not one of its accepted connections.
    if (c.origin != Origin::kProxyUpstream)
      --s->info.counters.connections_active;
    if (c.is_udp_session()) {
      s->sessions.erase({c.udp_socket_index, c.remote.udp()});
    }
  }
  if (!keep_received && !KeepsReceivedBytes(reason)) {
    c.recv_bytes.Clear();
    x.recv_datagrams.clear();
    c.counters.recv_buffered = 0;
    engine_.ledger_.Recharge(c);
  }
  engine_.Emit(EventKind::kConnectionClosed, c.server_num, c.num);
  engine_.receiver_.Notify(c);
  engine_.streams_.Pump(c);  // A waiting StreamSend fails now.
  if (c.behavior == BehaviorKind::kProxy) engine_.proxy_.OnClosed(c);
}

void Closer::Finalize(Conn& c, bool abort) {
  engine_.AssertEngineLock();
  if (c.finalized) return;
  if (c.extra != nullptr && c.extra->tls != nullptr) engine_.tls_.End(c);
  asio::error_code ec;
  if (c.raw_fd >= 0) {
    CloseDescriptor(c.raw_fd, abort);
    c.raw_fd = -1;
  }
  if (c.stream != nullptr) {
    // SO_LINGER 0: close() sends RST and drops what the kernel still holds.
    if (abort) c.stream->set_option(asio::socket_base::linger(true, 0), ec);
    c.stream->close(ec);
    c.stream.reset();
  }
  if (c.udp != nullptr) {
    c.udp->close(ec);
    c.udp.reset();
  }
  // A peer session's queued datagrams sit in its server's socket queue and
  // are still sent; everything else not yet written is lost.
  if (!c.is_udp_session() && c.counters.send_buffered > 0) {
    c.counters.send_bytes_lost += c.counters.send_buffered;
    c.counters.send_buffered = 0;
  }
  c.send_bytes.Clear();
  if (c.extra != nullptr) {
    c.extra->send_datagrams.clear();
    c.extra->ttl_timer.reset();
    c.extra->idle_timer.reset();
    c.extra->linger_timer.reset();
    engine_.faults_.Drop(c);
  }
  c.reading.armed = false;
  c.writing.armed = false;
  c.reading.error_armed = false;
  engine_.ledger_.Recharge(c);
  // From here on its bytes belong to the closed history.
  c.finalized = true;
  engine_.ledger_.FileInHistory(c);
}

void Closer::CloseSelected(const Selector& selector, CloseMode mode,
                           Done<absl::StatusOr<CloseResult>> done) {
  engine_.AssertEngineLock();
  if (absl::Status s = CheckSelector(selector); !s.ok()) {
    done(s);
    return;
  }
  std::vector<Conn*> targets;
  if (!selector.id.empty()) {
    absl::StatusOr<Conn*> c = engine_.registry_.LookupConn(selector.id);
    if (!c.ok()) {
      done(c.status());
      return;
    }
    targets.push_back(*c);
  } else {
    for (auto& [num, c] : engine_.registry_.conns()) {
      if (c->state != ConnectionState::kClosed &&
          LabelsMatch(c->labels, selector.labels)) {
        targets.push_back(c.get());
      }
    }
  }
  if (mode == CloseMode::kShutdownWrite) {
    // All or nothing: UDP has no half-close to shut down.
    for (const Conn* c : targets) {
      if (c->transport == Transport::kUdp) {
        done(absl::InvalidArgumentError(absl::StrCat(
            "close ", ConnId(c->num),
            ": shutdown-write is for stream sockets (TCP, UNIX); UDP has "
            "no half-close")));
        return;
      }
      if (c->behavior == BehaviorKind::kProxy) {
        done(ProxiedRefusal(*c, "shutdown-write"));
        return;
      }
    }
  }
  // Trimming of the history is posted, so these pointers stay valid.
  for (Conn* c : targets) {
    switch (mode) {
      case CloseMode::kGraceful:
        StartClose(*c, CloseReason::kLocalClose, "", /*abort=*/false);
        break;
      case CloseMode::kAbort:
        StartClose(*c, CloseReason::kLocalAbort, "", /*abort=*/true);
        break;
      case CloseMode::kShutdownWrite:
        engine_.conn_io_.ShutdownWrite(*c);
        break;
    }
  }
  CloseResult out;
  out.count = targets.size();
  const size_t listed = std::min(targets.size(), kMaxListedResults);
  out.connections.reserve(listed);
  for (size_t i = 0; i < listed; ++i) {
    out.connections.push_back(Snapshot(*targets[i]));
  }
  done(std::move(out));
}

}  // namespace engine_internal
}  // namespace sockagent
