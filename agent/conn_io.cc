// ConnIo (agent/conn_io.h), stream connection I/O: readiness-driven reads into
// the loop's scratch buffer, bounded buffers with pause/resume (backpressure),
// the peer's FIN and errors, and the TTL/idle/linger timers. Writes live in
// conn_write.cc, closing in closer.cc, UDP in udp_io.cc.
//
// Threads: everything here runs under the engine lock (agent/engine_impl.h):
// in a completion handler on the loop thread, or inline on the caller's
// thread (a gRPC thread) inside a public Engine call. Nothing here blocks;
// socket calls are non-blocking.
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "agent/engine_impl.h"
#include "agent/net_error.h"

namespace sockagent {
namespace engine_internal {

namespace {

// Reads per readiness wakeup before yielding to other sockets.
constexpr int kReadsPerWakeup = 8;
// A read that returns less than asked means the socket was empty at that
// instant, but a sender writing small pieces on the other core refills it
// while we copy (8 KiB writes: ~64 KiB per read). After a read at least
// this large the loop reads again instead of paying an epoll round trip
// (epoll_wait plus Asio's EPOLL_CTL_MOD re-arm) for what came meanwhile.
// Smaller reads (interactive traffic) stop at once: no extra EAGAIN read.
constexpr size_t kBulkRead = 32 * 1024;

// getsockopt(SO_ERROR): the pending socket error, cleared by reading it.
using SocketErrorOption =
    asio::detail::socket_option::integer<SOL_SOCKET, SO_ERROR>;

}  // namespace

ConnectionInfo ConnIo::AddOpened(ClientAttempt& a) {
  engine_.AssertEngineLock();
  auto conn = std::make_unique<Conn>();
  conn->num = engine_.registry_.NewConnNum();
  conn->transport = a.spec.transport;
  conn->origin = Origin::kOpened;
  if (a.proxy_for != 0) {  // A proxy's upstream half (agent/proxy.h).
    conn->origin = Origin::kProxyUpstream;
    conn->behavior = BehaviorKind::kProxy;
    conn->Extra().proxy_peer = a.proxy_for;
    if (const Conn* down = engine_.registry_.FindConn(a.proxy_for)) {
      conn->server_num = down->server_num;
      conn->labels = down->labels;
    }
  }
  if (!a.spec.labels.empty()) {
    conn->labels = std::make_shared<const Labels>(std::move(a.spec.labels));
  }
  asio::error_code error;
  if (a.stream != nullptr) {
    const StreamProtocol::endpoint local = a.stream->local_endpoint(error);
    if (!error)
      conn->local = PackedAddress::FromKernel(local.data(), local.size());
    const StreamProtocol::endpoint remote = a.stream->remote_endpoint(error);
    if (!error) {
      conn->remote = PackedAddress::FromKernel(remote.data(), remote.size());
    }
    if (a.spec.transport == Transport::kUnix) {
      conn->remote = PackedAddress::Unix(
          std::make_shared<const std::string>(a.spec.remote.unix_path));
    }
    conn->stream = std::move(a.stream);
  } else {
    const asio::ip::udp::endpoint local = a.udp->local_endpoint(error);
    if (!error) conn->local = PackedAddress::Ip(local.address(), local.port());
    const asio::ip::udp::endpoint remote = a.udp->remote_endpoint(error);
    if (!error) {
      conn->remote = PackedAddress::Ip(remote.address(), remote.port());
    }
    conn->udp = std::move(a.udp);
  }
  Conn& c = engine_.registry_.AddConn(std::move(conn));
  engine_.Emit(EventKind::kConnectionConnected, c.server_num, c.num);
  if (a.spec.tls != nullptr && c.stream != nullptr &&
      !engine_.tls_.Start(c, nullptr, a.spec.tls, a.deadline)) {
    return Snapshot(c);  // Finalized with the reason.
  }
  Start(c, a.spec.ttl, a.spec.idle_timeout);
  if (TlsStage::Active(c)) engine_.tls_.DriveHandshake(c);  // The ClientHello.
  // Faults first, so the client's early bytes the relay sends now pass them.
  engine_.faults_.ApplyMatching(c);
  if (a.proxy_for != 0) engine_.proxy_.OnUpstreamConnected(a.proxy_for, c);
  return Snapshot(c);
}

void ConnIo::Start(Conn& c, absl::Duration ttl, absl::Duration idle_timeout) {
  engine_.AssertEngineLock();
  c.opened_at = absl::Now();
  asio::error_code ec;
  // Non-blocking for our own read_some/write_some calls: they must return
  // would_block instead of waiting.
  if (c.stream != nullptr) c.stream->non_blocking(true, ec);
  if (c.udp != nullptr) c.udp->non_blocking(true, ec);
  auto arm = [this, &c](std::unique_ptr<Timer>& timer, absl::Duration after,
                        ConnTimer which) {
    timer = std::make_unique<Timer>(engine_.io_, ToSteady(after));
    timer->async_wait(
        engine_.Locked([this, num = c.num, which](const asio::error_code& e) {
          engine_.AssertEngineLock();
          if (!e) OnConnTimer(num, which);
        }));
  };
  if (ttl > absl::ZeroDuration()) {
    ConnExtra& x = c.Extra();
    x.ttl = ttl;
    arm(x.ttl_timer, ttl, ConnTimer::kTtl);
  }
  if (idle_timeout > absl::ZeroDuration()) {
    ConnExtra& x = c.Extra();
    x.idle_timeout = idle_timeout;
    x.last_activity_ns = SteadyNowNs();
    arm(x.idle_timer, idle_timeout, ConnTimer::kIdle);
  }
  ArmRead(c);
}

void ConnIo::Touch(Conn& c) {
  engine_.AssertEngineLock();
  if (c.extra != nullptr && c.extra->idle_timer != nullptr) {
    c.extra->last_activity_ns = SteadyNowNs();
  }
}

void ConnIo::ArmRead(Conn& c) {
  engine_.AssertEngineLock();
  if (c.reading.armed || c.finalized) return;
  if (c.reading.paused || c.reading.eof || c.reading.fin_held) {
    ArmErrorWatch(c);
    return;
  }
  // Bytes OpenSSL holds already: the socket will not announce them.
  if (TlsStage::Active(c) && c.extra->tls->session->HasPending()) {
    engine_.tls_.PostRead(c);
    return;
  }
  auto handler =
      engine_.Locked([this, num = c.num](const asio::error_code& ec) {
        engine_.AssertEngineLock();
        OnReadable(num, ec);
      });
  if (c.stream != nullptr) {
    c.stream->async_wait(asio::socket_base::wait_read, std::move(handler));
  } else if (c.udp != nullptr) {
    c.udp->async_wait(asio::socket_base::wait_read, std::move(handler));
  } else {
    return;  // A UDP peer session reads through its server's socket.
  }
  c.reading.armed = true;
}

void ConnIo::OnReadable(uint64_t num, const asio::error_code& ec) {
  engine_.AssertEngineLock();
  Conn* c = engine_.registry_.FindConn(num);
  if (c == nullptr || c->finalized) return;
  c->reading.armed = false;
  if (ec) {
    if (ec != asio::error::operation_aborted) OnStreamError(*c, ec, "wait");
    return;
  }
  if (c->stream != nullptr) {
    ReadStream(*c);
  } else {
    engine_.udp_.ReadClient(*c);
  }
}

size_t ConnIo::ReadRoom(const Conn& c) const {
  engine_.AssertEngineLock();
  const size_t scratch = engine_.scratch_.size();
  // A closing tail reads only to find the peer's FIN; it keeps nothing.
  if (c.state == ConnectionState::kClosed) return scratch;
  auto room = [](uint64_t used, uint64_t bound) -> uint64_t {
    return used >= bound ? 0 : bound - used;
  };
  uint64_t own = 0;
  switch (c.behavior) {
    case BehaviorKind::kEcho:
      own = room(c.counters.send_buffered, engine_.options_.send_buffer_bytes);
      break;
    case BehaviorKind::kDiscard:
      own = scratch;
      break;
    case BehaviorKind::kProxy:
      own = engine_.proxy_.FeedRoom(c);
      break;
    case BehaviorKind::kHold:
    case BehaviorKind::kGreeting:
      own = room(c.counters.recv_buffered, engine_.options_.recv_buffer_bytes);
      break;
  }
  // Bytes a RECEIVED fault holds go to the behaviour later: they count
  // against its room and against the receive buffer's bound, so a long
  // latency pauses reading instead of growing memory.
  if (c.extra != nullptr && c.extra->faults != nullptr) {
    const uint64_t held = c.extra->faults->received.size();
    own = std::min(own > held ? own - held : 0,
                   room(held, engine_.options_.recv_buffer_bytes));
  } else if (c.behavior == BehaviorKind::kDiscard) {
    return scratch;
  }
  return std::min<uint64_t>({scratch, own, engine_.ledger_.budget().Room()});
}

void ConnIo::PauseReading(Conn& c) {
  engine_.AssertEngineLock();
  // Buffer full: stop reading. TCP flow control now slows the peer;
  // ResumeReading re-arms once the buffer drains to half (or, for the
  // agent-wide bound, ResumeTotalPaused once the total falls). Errors
  // are still watched for.
  c.reading.paused = true;
  if (engine_.ledger_.budget().Room() == 0) {
    engine_.ledger_.PauseForTotal(c);
    engine_.receiver_.Notify(c);  // A condition waiting for more gives way.
  }
  ArmErrorWatch(c);
}

void ConnIo::ReadStream(Conn& c) {
  engine_.AssertEngineLock();
  if (TlsStage::Active(c)) {
    engine_.tls_.Read(c);
    return;
  }
  for (int i = 0; i < kReadsPerWakeup; ++i) {
    const size_t room = ReadRoom(c);
    if (room == 0) {
      PauseReading(c);
      return;
    }
    asio::error_code ec;
    const size_t n =
        c.stream->read_some(asio::buffer(engine_.scratch_.data(), room), ec);
    if (ec) {
      if (IsWouldBlock(ec)) break;
      if (ec == asio::error::eof) {
        OnPeerFin(c);
        ArmRead(c);  // No more reading: watches for a reset instead.
      } else {
        OnStreamError(c, ec, "read");
      }
      return;
    }
    DeliverStream(c, engine_.scratch_.data(), n);
    if (c.finalized) return;
    if (n < room && n < kBulkRead) break;  // Nothing more for now.
  }
  ArmRead(c);
}

void ConnIo::DeliverStream(Conn& c, const char* data, size_t n) {
  engine_.AssertEngineLock();
  // The RECEIVE stage of faults (fault_stage.cc) holds what it must delay;
  // it calls DeliverNow when the bytes may go on. Without faults: one
  // pointer test.
  if (c.extra != nullptr && c.extra->faults != nullptr &&
      c.state != ConnectionState::kClosed &&
      engine_.faults_.HoldReceived(c, data, n)) {
    return;
  }
  DeliverNow(c, data, n);
}

void ConnIo::DeliverNow(Conn& c, const char* data, size_t n) {
  engine_.AssertEngineLock();
  c.counters.bytes_received += n;
  if (Server* s = engine_.registry_.FindServer(c.server_num))
    s->info.counters.bytes_received += n;
  Touch(c);
  engine_.Emit(EventKind::kDataReceived, c.server_num, c.num, n,
               absl::string_view(data, n));
  if (c.state == ConnectionState::kClosed) return;
  switch (c.behavior) {
    case BehaviorKind::kEcho:
      c.send_bytes.Append(absl::string_view(data, n));
      c.counters.send_buffered = c.send_bytes.size();
      c.counters.send_buffered_peak =
          std::max(c.counters.send_buffered_peak, c.counters.send_buffered);
      engine_.ledger_.Recharge(c);
      Flush(c);
      return;
    case BehaviorKind::kDiscard:
      return;
    case BehaviorKind::kProxy:
      if (engine_.proxy_.Relay(c, data, n)) return;
      break;  // No upstream yet: held below until it connects.
    case BehaviorKind::kHold:
    case BehaviorKind::kGreeting:
      break;
  }
  c.recv_bytes.Append(absl::string_view(data, n));
  c.counters.recv_buffered = c.recv_bytes.size();
  c.counters.recv_buffered_peak =
      std::max(c.counters.recv_buffered_peak, c.counters.recv_buffered);
  engine_.ledger_.Recharge(c);
  engine_.receiver_.Notify(c);
}

void ConnIo::ResumeReading(Conn& c) {
  engine_.AssertEngineLock();
  if (!c.reading.paused || c.finalized) return;
  // Hysteresis: resume at half the bound, so a reader taking small pieces
  // does not toggle reading for every piece.
  if (c.state != ConnectionState::kClosed) {
    if (c.behavior == BehaviorKind::kProxy) {
      if (!engine_.proxy_.MayResume(c)) return;
    } else if (c.behavior == BehaviorKind::kEcho) {
      if (c.counters.send_buffered > engine_.options_.send_buffer_bytes / 2)
        return;
    } else if (c.counters.recv_buffered >
               engine_.options_.recv_buffer_bytes / 2) {
      return;
    }
    if (c.extra != nullptr && c.extra->faults != nullptr &&
        c.extra->faults->received.size() >
            engine_.options_.recv_buffer_bytes / 2) {
      return;  // A RECEIVED fault still holds half the bound.
    }
  }
  c.reading.paused = false;
  // No readiness was consumed while paused, so the wait reports at once if
  // bytes are waiting (Asio re-registers the descriptor with epoll). An
  // error watch still pending stays: it finds reading active and leaves the
  // error to the read.
  ArmRead(c);
}

void ConnIo::ArmErrorWatch(Conn& c) {
  engine_.AssertEngineLock();
  if (c.reading.error_armed || c.reading.hangup || c.finalized ||
      c.stream == nullptr)
    return;
  c.stream->async_wait(
      asio::socket_base::wait_error,
      engine_.Locked([this, num = c.num](const asio::error_code& ec) {
        engine_.AssertEngineLock();
        OnErrorWatch(num, ec);
      }));
  c.reading.error_armed = true;
}

void ConnIo::OnErrorWatch(uint64_t num, const asio::error_code& ec) {
  engine_.AssertEngineLock();
  Conn* c = engine_.registry_.FindConn(num);
  if (c == nullptr || c->finalized) return;
  c->reading.error_armed = false;
  if (ec) {
    if (ec != asio::error::operation_aborted) OnStreamError(*c, ec, "wait");
    return;
  }
  // Reading again meanwhile: the read reports the error after the bytes
  // that came before it.
  if (!c->reading.eof && !c->reading.paused && !c->reading.fin_held) {
    ArmRead(*c);
    return;
  }
  asio::error_code error;
  SocketErrorOption pending;
  c->stream->get_option(pending, error);
  if (!error && pending.value() != 0) {
    error =
        asio::error_code(pending.value(), asio::error::get_system_category());
    // After the peer's FIN (CLOSE_WAIT) Linux reports its reset as EPIPE.
    if (error == asio::error::broken_pipe) {
      error = asio::error::connection_reset;
    }
    OnStreamError(*c, error, "read");
    return;
  }
  // No error: urgent data (EPOLLPRI), or a hang-up without one (a UNIX
  // peer closed; both FINs exchanged while paused). A hang-up stays
  // reported, so watching on would spin: the next read or write sees what
  // became of the socket.
  pollfd p{c->stream->native_handle(), POLLPRI, 0};
  if (::poll(&p, 1, 0) == 1 && p.revents == POLLPRI) {
    char urgent;  // An out-of-band byte nobody asked for: drop it.
    ::recv(p.fd, &urgent, 1, MSG_OOB | MSG_DONTWAIT);
    p.revents = 0;
    ::poll(&p, 1, 0);
  }
  if (p.revents != 0) {
    c->reading.hangup = true;  // Nothing left that watching could clear.
    return;
  }
  ArmErrorWatch(*c);
}

void ConnIo::OnPeerFin(Conn& c) {
  engine_.AssertEngineLock();
  // A RECEIVED fault delivers the FIN after the bytes it holds (and late,
  // for slow_close); reading stops meanwhile (fin_held).
  if (c.extra != nullptr && c.extra->faults != nullptr &&
      c.state != ConnectionState::kClosed && engine_.faults_.HoldFin(c)) {
    return;
  }
  c.reading.eof = true;
  if (c.state == ConnectionState::kClosed) {
    // A closing tail ends once our FIN is out too.
    if (c.writing.fin_sent) engine_.closer_.Finalize(c, /*abort=*/false);
    return;
  }
  engine_.Emit(EventKind::kConnectionPeerClosed, c.server_num, c.num);
  if (c.behavior == BehaviorKind::kProxy) {
    engine_.proxy_.OnFin(c);  // FIN to the other half once its queue drained.
    if (c.finalized) return;
  }
  if (c.writing.fin_sent) {
    engine_.closer_.MarkClosed(c, CloseReason::kPeerClosed, "");
    engine_.closer_.Finalize(c, /*abort=*/false);
    return;
  }
  SetConnState(engine_.counters_, c, ConnectionState::kPeerClosed);
  if (c.behavior == BehaviorKind::kEcho ||
      c.behavior == BehaviorKind::kDiscard) {
    // Nothing more will come to echo or count: finish our side too.
    engine_.closer_.StartClose(c, CloseReason::kPeerClosed, "",
                               /*abort=*/false);
    return;
  }
  engine_.receiver_.Notify(c);
}

void ConnIo::OnStreamError(Conn& c, const asio::error_code& ec,
                           absl::string_view op) {
  engine_.AssertEngineLock();
  const bool reset = IsResetError(ec);
  std::string detail =
      reset ? ErrorText(ec) : absl::StrCat(op, ": ", ErrorText(ec));
  if (c.state != ConnectionState::kClosed) {
    engine_.closer_.MarkClosed(
        c, reset ? CloseReason::kPeerReset : CloseReason::kError,
        std::move(detail));
  } else {
    ConnExtra& x = c.Extra();
    x.close_detail = x.close_detail.empty()
                         ? std::move(detail)
                         : absl::StrCat(x.close_detail, "; then ", detail);
  }
  // After a reset the connection is gone: a plain close discards what is
  // left, no SO_LINGER 0 needed. Other errors close with RST.
  engine_.closer_.Finalize(c, /*abort=*/!reset);
}

void ConnIo::OnConnTimer(uint64_t num, ConnTimer which) {
  engine_.AssertEngineLock();
  Conn* c = engine_.registry_.FindConn(num);
  if (c == nullptr || c->finalized) return;
  switch (which) {
    case ConnTimer::kTtl:
      engine_.closer_.StartClose(
          *c, CloseReason::kTtlExpired,
          absl::StrCat("ttl of ", absl::FormatDuration(c->extra->ttl),
                       " expired"),
          /*abort=*/false);
      return;
    case ConnTimer::kIdle: {
      if (c->state == ConnectionState::kClosed) return;
      ConnExtra& x = *c->extra;
      const int64_t idle_ns = absl::ToInt64Nanoseconds(x.idle_timeout);
      const int64_t due = x.last_activity_ns + idle_ns;
      if (SteadyNowNs() >= due) {
        engine_.closer_.StartClose(
            *c, CloseReason::kIdleTimeout,
            absl::StrCat("idle for ", absl::FormatDuration(x.idle_timeout)),
            /*abort=*/false);
        return;
      }
      // There was activity: sleep until the new deadline. Cheaper than
      // re-arming the timer on every read and write.
      x.idle_timer->expires_at(
          Timer::time_point(std::chrono::nanoseconds(due)));
      x.idle_timer->async_wait(
          engine_.Locked([this, num](const asio::error_code& ec) {
            engine_.AssertEngineLock();
            if (!ec) OnConnTimer(num, ConnTimer::kIdle);
          }));
      return;
    }
    case ConnTimer::kLinger: {
      const uint64_t unsent = c->counters.send_buffered;
      ConnExtra& x = c->Extra();
      std::string detail =
          unsent > 0
              ? absl::StrCat("close timed out with ", unsent, " bytes unsent")
              : std::string("close timed out waiting for the peer's FIN");
      x.close_detail = x.close_detail.empty()
                           ? std::move(detail)
                           : absl::StrCat(x.close_detail, "; ", detail);
      engine_.closer_.Finalize(*c, /*abort=*/unsent > 0);
      return;
    }
  }
}

}  // namespace engine_internal
}  // namespace sockagent