// EngineImpl, stream connection I/O: readiness-driven reads into the loop's
// scratch buffer, bounded buffers with pause/resume (backpressure), writes,
// FIN and RST handling, and the TTL/idle/linger timers. Closing lives in
// engine_close.cc, UDP in engine_udp.cc.
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
// Buffers handed to one writev.
constexpr size_t kMaxWriteSpans = 16;

// getsockopt(SO_ERROR): the pending socket error, cleared by reading it.
using SocketErrorOption =
    asio::detail::socket_option::integer<SOL_SOCKET, SO_ERROR>;

}  // namespace

ConnectionInfo EngineImpl::AddOpenedConn(ClientAttempt& a) {
  auto conn = std::make_unique<Conn>();
  conn->num = NewConnNum();
  conn->transport = a.spec.transport;
  conn->origin = Origin::kOpened;
  if (a.proxy_for != 0) {  // A proxy's upstream half (agent/proxy.h).
    conn->origin = Origin::kProxyUpstream;
    conn->behavior = BehaviorKind::kProxy;
    conn->Extra().proxy_peer = a.proxy_for;
    if (const Conn* down = FindConn(a.proxy_for)) {
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
  Conn& c = AddConn(std::move(conn));
  Emit(EventKind::kConnectionConnected, c.server_num, c.num);
  if (a.spec.tls != nullptr && c.stream != nullptr &&
      !StartTls(c, nullptr, a.spec.tls, a.deadline)) {
    return Snapshot(c);  // Finalized with the reason.
  }
  StartConnection(c, a.spec.ttl, a.spec.idle_timeout);
  if (TlsActive(c)) DriveTlsHandshake(c);  // The ClientHello.
  // Faults first, so the client's early bytes the relay sends now pass them.
  ApplyMatchingFaults(c);
  if (a.proxy_for != 0) proxy_.OnUpstreamConnected(a.proxy_for, c);
  return Snapshot(c);
}

void EngineImpl::StartConnection(Conn& c, absl::Duration ttl,
                                 absl::Duration idle_timeout) {
  c.opened_at = absl::Now();
  asio::error_code ec;
  // Non-blocking for our own read_some/write_some calls: they must return
  // would_block instead of waiting.
  if (c.stream != nullptr) c.stream->non_blocking(true, ec);
  if (c.udp != nullptr) c.udp->non_blocking(true, ec);
  auto arm = [this, &c](std::unique_ptr<Timer>& timer, absl::Duration after,
                        ConnTimer which) {
    timer = std::make_unique<Timer>(io_, ToSteady(after));
    timer->async_wait(
        Locked([this, num = c.num, which](const asio::error_code& e) {
          AssertEngineLock();
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

void EngineImpl::Touch(Conn& c) {
  if (c.extra != nullptr && c.extra->idle_timer != nullptr) {
    c.extra->last_activity_ns = SteadyNowNs();
  }
}

void EngineImpl::ArmRead(Conn& c) {
  if (c.reading.armed || c.finalized) return;
  if (c.reading.paused || c.reading.eof) {
    ArmErrorWatch(c);
    return;
  }
  // Bytes OpenSSL holds already: the socket will not announce them.
  if (TlsActive(c) && c.extra->tls->session->HasPending()) {
    PostTlsRead(c);
    return;
  }
  auto handler = Locked([this, num = c.num](const asio::error_code& ec) {
    AssertEngineLock();
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

void EngineImpl::OnReadable(uint64_t num, const asio::error_code& ec) {
  Conn* c = FindConn(num);
  if (c == nullptr || c->finalized) return;
  c->reading.armed = false;
  if (ec) {
    if (ec != asio::error::operation_aborted) OnStreamError(*c, ec, "wait");
    return;
  }
  if (c->stream != nullptr) {
    ReadStream(*c);
  } else {
    ReadUdpClient(*c);
  }
}

size_t EngineImpl::ReadRoom(const Conn& c) const {
  const size_t scratch = scratch_.size();
  // A closing tail reads only to find the peer's FIN; it keeps nothing.
  if (c.state == ConnectionState::kClosed) return scratch;
  auto room = [](uint64_t used, uint64_t bound) -> uint64_t {
    return used >= bound ? 0 : bound - used;
  };
  uint64_t own = 0;
  switch (c.behavior) {
    case BehaviorKind::kEcho:
      own = room(c.counters.send_buffered, options_.send_buffer_bytes);
      break;
    case BehaviorKind::kDiscard:
      return scratch;
    case BehaviorKind::kProxy:
      own = proxy_.FeedRoom(c);
      break;
    case BehaviorKind::kHold:
    case BehaviorKind::kGreeting:
      own = room(c.counters.recv_buffered, options_.recv_buffer_bytes);
      break;
  }
  return std::min<uint64_t>({scratch, own, TotalRoom()});
}

void EngineImpl::PauseReading(Conn& c) {
  // Buffer full: stop reading. TCP flow control now slows the peer;
  // ResumeReading re-arms once the buffer drains to half (or, for the
  // agent-wide bound, ResumeTotalPaused once the total falls). Errors
  // are still watched for.
  c.reading.paused = true;
  if (TotalRoom() == 0) {
    PauseForTotal(c);
    NotifyReceiver(c);  // A condition waiting for more gives way.
  }
  ArmErrorWatch(c);
}

void EngineImpl::ReadStream(Conn& c) {
  if (TlsActive(c)) {
    ReadTls(c);
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
        c.stream->read_some(asio::buffer(scratch_.data(), room), ec);
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
    DeliverStream(c, scratch_.data(), n);
    if (c.finalized) return;
    if (n < room && n < kBulkRead) break;  // Nothing more for now.
  }
  ArmRead(c);
}

void EngineImpl::DeliverStream(Conn& c, const char* data, size_t n) {
  c.counters.bytes_received += n;
  if (Server* s = FindServer(c.server_num))
    s->info.counters.bytes_received += n;
  Touch(c);
  Emit(EventKind::kDataReceived, c.server_num, c.num, n,
       absl::string_view(data, n));
  if (c.state == ConnectionState::kClosed) return;
  switch (c.behavior) {
    case BehaviorKind::kEcho:
      c.send_bytes.Append(absl::string_view(data, n));
      c.counters.send_buffered = c.send_bytes.size();
      c.counters.send_buffered_peak =
          std::max(c.counters.send_buffered_peak, c.counters.send_buffered);
      Recharge(c);
      Flush(c);
      return;
    case BehaviorKind::kDiscard:
      return;
    case BehaviorKind::kProxy:
      if (proxy_.Relay(c, data, n)) return;
      break;  // No upstream yet: held below until it connects.
    case BehaviorKind::kHold:
    case BehaviorKind::kGreeting:
      break;
  }
  c.recv_bytes.Append(absl::string_view(data, n));
  c.counters.recv_buffered = c.recv_bytes.size();
  c.counters.recv_buffered_peak =
      std::max(c.counters.recv_buffered_peak, c.counters.recv_buffered);
  Recharge(c);
  NotifyReceiver(c);
}

void EngineImpl::ResumeReading(Conn& c) {
  if (!c.reading.paused || c.finalized) return;
  // Hysteresis: resume at half the bound, so a reader taking small pieces
  // does not toggle reading for every piece.
  if (c.state != ConnectionState::kClosed) {
    if (c.behavior == BehaviorKind::kProxy) {
      if (!proxy_.MayResume(c)) return;
    } else if (c.behavior == BehaviorKind::kEcho) {
      if (c.counters.send_buffered > options_.send_buffer_bytes / 2) return;
    } else if (c.counters.recv_buffered > options_.recv_buffer_bytes / 2) {
      return;
    }
  }
  c.reading.paused = false;
  // No readiness was consumed while paused, so the wait reports at once if
  // bytes are waiting (Asio re-registers the descriptor with epoll). An
  // error watch still pending stays: it finds reading active and leaves the
  // error to the read.
  ArmRead(c);
}

void EngineImpl::ArmErrorWatch(Conn& c) {
  if (c.reading.error_armed || c.reading.hangup || c.finalized ||
      c.stream == nullptr)
    return;
  c.stream->async_wait(asio::socket_base::wait_error,
                       Locked([this, num = c.num](const asio::error_code& ec) {
                         AssertEngineLock();
                         OnErrorWatch(num, ec);
                       }));
  c.reading.error_armed = true;
}

void EngineImpl::OnErrorWatch(uint64_t num, const asio::error_code& ec) {
  Conn* c = FindConn(num);
  if (c == nullptr || c->finalized) return;
  c->reading.error_armed = false;
  if (ec) {
    if (ec != asio::error::operation_aborted) OnStreamError(*c, ec, "wait");
    return;
  }
  // Reading again meanwhile: the read reports the error after the bytes
  // that came before it.
  if (!c->reading.eof && !c->reading.paused) {
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

void EngineImpl::OnPeerFin(Conn& c) {
  c.reading.eof = true;
  if (c.state == ConnectionState::kClosed) {
    // A closing tail ends once our FIN is out too.
    if (c.writing.fin_sent) Finalize(c, /*abort=*/false);
    return;
  }
  Emit(EventKind::kConnectionPeerClosed, c.server_num, c.num);
  if (c.behavior == BehaviorKind::kProxy) {
    proxy_.OnFin(c);  // FIN to the other half once its queue drained.
    if (c.finalized) return;
  }
  if (c.writing.fin_sent) {
    MarkClosed(c, CloseReason::kPeerClosed, "");
    Finalize(c, /*abort=*/false);
    return;
  }
  SetConnState(counters_, c, ConnectionState::kPeerClosed);
  if (c.behavior == BehaviorKind::kEcho ||
      c.behavior == BehaviorKind::kDiscard) {
    // Nothing more will come to echo or count: finish our side too.
    StartClose(c, CloseReason::kPeerClosed, "", /*abort=*/false);
    return;
  }
  NotifyReceiver(c);
}

void EngineImpl::OnStreamError(Conn& c, const asio::error_code& ec,
                               absl::string_view op) {
  const bool reset = IsResetError(ec);
  std::string detail =
      reset ? ErrorText(ec) : absl::StrCat(op, ": ", ErrorText(ec));
  if (c.state != ConnectionState::kClosed) {
    MarkClosed(c, reset ? CloseReason::kPeerReset : CloseReason::kError,
               std::move(detail));
  } else {
    ConnExtra& x = c.Extra();
    x.close_detail = x.close_detail.empty()
                         ? std::move(detail)
                         : absl::StrCat(x.close_detail, "; then ", detail);
  }
  // After a reset the connection is gone: a plain close discards what is
  // left, no SO_LINGER 0 needed. Other errors close with RST.
  Finalize(c, /*abort=*/!reset);
}

absl::StatusOr<SendResult> EngineImpl::QueueSend(Conn& c, std::string data,
                                                 bool stream) {
  const std::string id = ConnId(c.num);
  const uint64_t size = data.size();
  if (size > options_.max_send_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "send ", id, ": ", size, " bytes is above max_send_bytes (",
        options_.max_send_bytes, ")"));
  }
  if (c.state == ConnectionState::kClosed) {
    return absl::FailedPreconditionError(
        absl::StrCat("send ", id, ": connection is closed (",
                     CloseReasonText(c.close_reason), ")"));
  }
  if (c.writing.fin_wanted || c.state == ConnectionState::kLocalClosed) {
    return absl::FailedPreconditionError(
        absl::StrCat("send ", id, ": the write side is shut down"));
  }
  // Datagrams are checked when they must be queued (with their overhead).
  if (c.transport != Transport::kUdp) {
    if (!stream &&
        c.counters.send_buffered + size > options_.send_buffer_bytes) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "send ", id, ": send buffer full: ", c.counters.send_buffered,
          " bytes queued, ", size, " more would exceed send_buffer_bytes (",
          options_.send_buffer_bytes, "); retry after it drains"));
    }
    if (absl::Status s = CheckTotalRoom(absl::StrCat("send ", id), size);
        !s.ok()) {
      return s;
    }
  }
  if (c.is_udp_session()) {
    if (absl::Status s = SendSessionDatagram(c, std::move(data)); !s.ok()) {
      return s;
    }
  } else if (c.udp != nullptr) {
    ConnExtra& x = c.Extra();
    if (x.send_datagrams.empty()) {
      asio::error_code ec;
      c.udp->send(asio::buffer(data), 0, ec);
      if (!ec) {
        ++c.counters.datagrams_sent;
        c.counters.bytes_sent += size;
        Touch(c);
        Emit(EventKind::kDataSent, c.server_num, c.num, size);
        return SendResult{size, c.counters.send_buffered};
      }
      if (!IsWouldBlock(ec)) {
        return ErrorStatus(
            absl::StrCat("send ", id, " to ", c.remote.ToString()), ec);
      }
    }
    const uint64_t cost = size + kDatagramOverheadBytes;
    if (SendCharge(c) + cost > options_.send_buffer_bytes) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "send ", id, ": send buffer full: ", x.send_datagrams.size(),
          " datagrams queued; one more would exceed send_buffer_bytes (",
          options_.send_buffer_bytes, ", each datagram costing ",
          kDatagramOverheadBytes,
          " bytes on top of its payload); retry after it drains"));
    }
    if (absl::Status s = CheckTotalRoom(absl::StrCat("send ", id), cost);
        !s.ok()) {
      return s;
    }
    x.send_datagrams.push_back(std::move(data));
    c.counters.send_buffered += size;
    c.counters.send_buffered_peak =
        std::max(c.counters.send_buffered_peak, c.counters.send_buffered);
    Recharge(c);
    ArmWrite(c);
  } else {
    const uint64_t lost_before = c.counters.send_bytes_lost;
    c.send_bytes.AppendOwned(std::move(data));
    c.counters.send_buffered = c.send_bytes.size();
    c.counters.send_buffered_peak =
        std::max(c.counters.send_buffered_peak, c.counters.send_buffered);
    Recharge(c);
    Flush(c);
    // The write found the connection broken: these bytes are lost, and the
    // caller must hear it.
    if (c.finalized) {
      return SendFailure(c, c.counters.send_bytes_lost - lost_before);
    }
  }
  return SendResult{size, c.counters.send_buffered};
}

absl::Status EngineImpl::SendFailure(const Conn& c, uint64_t lost) const {
  const std::string detail =
      c.extra != nullptr && !c.extra->close_detail.empty()
          ? c.extra->close_detail
          : std::string(CloseReasonText(c.close_reason));
  std::string message = absl::StrCat("send ", ConnId(c.num), ": ", detail,
                                     "; the connection is closed and ", lost,
                                     " bytes were not sent");
  if (c.close_reason == CloseReason::kPeerReset) {
    return absl::AbortedError(std::move(message));
  }
  return absl::UnavailableError(std::move(message));
}

void EngineImpl::Flush(Conn& c) {
  if (c.finalized || c.stream == nullptr) return;
  // TLS: SSL_write takes the queued bytes (engine_tls.cc). Faults do not act
  // on TLS connections (ApplyMatchingFaults skips them).
  if (TlsActive(c)) {
    FlushTls(c);
    return;
  }
  // The SEND stage of faults (engine_faults.cc): every byte headed for a
  // stream socket passes here. Without faults: one pointer test.
  if (c.extra != nullptr && c.extra->faults != nullptr) {
    FlushFaulted(c);
    return;
  }
  while (!c.send_bytes.empty()) {
    if (WriteQueued(c, SIZE_MAX) != WriteOutcome::kWrote) return;
  }
  ResumeReading(c);
  if (c.behavior == BehaviorKind::kProxy) proxy_.Drained(c);
  if (c.writing.fin_wanted && !c.writing.fin_sent) SendFin(c);
  PumpStreamSend(c);
}

EngineImpl::WriteOutcome EngineImpl::WriteQueued(Conn& c, size_t limit) {
  std::array<absl::string_view, kMaxWriteSpans> spans;
  size_t count = c.send_bytes.Peek(spans.data(), spans.size());
  std::array<asio::const_buffer, kMaxWriteSpans> buffers;
  size_t left = limit;
  for (size_t i = 0; i < count; ++i) {
    const size_t take = std::min(spans[i].size(), left);
    buffers[i] = asio::buffer(spans[i].data(), take);
    left -= take;
    if (left == 0) {
      count = i + 1;
      break;
    }
  }
  asio::error_code ec;
  const size_t written =
      c.stream->write_some(absl::MakeConstSpan(buffers.data(), count), ec);
  if (ec) {
    if (IsWouldBlock(ec)) {
      ResumeReading(c);  // An echo may have drained below its mark.
      if (c.behavior == BehaviorKind::kProxy) proxy_.Drained(c);
      ArmWrite(c);
      PumpStreamSend(c);
      return WriteOutcome::kBlocked;
    }
    OnStreamError(c, ec, "write");
    return WriteOutcome::kFailed;
  }
  NoteWritten(c, written);
  return WriteOutcome::kWrote;
}

void EngineImpl::NoteWritten(Conn& c, size_t written) {
  c.send_bytes.Consume(written);
  c.counters.send_buffered = c.send_bytes.size();
  Recharge(c);
  c.counters.bytes_sent += written;
  if (Server* s = FindServer(c.server_num)) {
    s->info.counters.bytes_sent += written;
  }
  Touch(c);
  Emit(EventKind::kDataSent, c.server_num, c.num, written);
}

void EngineImpl::ArmWrite(Conn& c) {
  if (c.writing.armed || c.finalized) return;
  auto handler = Locked([this, num = c.num](const asio::error_code& ec) {
    AssertEngineLock();
    OnWritable(num, ec);
  });
  if (c.stream != nullptr) {
    c.stream->async_wait(asio::socket_base::wait_write, std::move(handler));
  } else if (c.udp != nullptr) {
    c.udp->async_wait(asio::socket_base::wait_write, std::move(handler));
  } else {
    return;
  }
  c.writing.armed = true;
}

void EngineImpl::OnWritable(uint64_t num, const asio::error_code& ec) {
  Conn* c = FindConn(num);
  if (c == nullptr || c->finalized) return;
  c->writing.armed = false;
  if (ec) {
    if (ec != asio::error::operation_aborted) OnStreamError(*c, ec, "wait");
    return;
  }
  if (c->stream != nullptr) {
    Flush(*c);
  } else {
    FlushUdpClient(*c);
  }
}

void EngineImpl::SendFin(Conn& c) {
  // TLS: close_notify goes out before the FIN.
  if (TlsActive(c)) c.extra->tls->session->SendCloseNotify();
  asio::error_code ec;
  c.stream->shutdown(asio::socket_base::shutdown_send, ec);
  if (ec == asio::error::not_connected) {
    // Connected until now: the peer's reset came first (a read would
    // report it; the kernel may already have consumed it).
    ec = asio::error::connection_reset;
  }
  if (ec) {
    OnStreamError(c, ec, "shutdown");
    return;
  }
  c.writing.fin_sent = true;
  PumpStreamSend(c);  // A StreamShutdownWrite waiting for this FIN.
  if (c.state == ConnectionState::kClosed) {
    // Tail: wait (up to close_linger) for the peer's FIN, unless seen.
    if (c.reading.eof) Finalize(c, /*abort=*/false);
    return;
  }
  if (c.reading.eof) {
    // Both directions are finished, ours last: an orderly end of stream,
    // and what the peer sent before its FIN stays receivable.
    MarkClosed(c, CloseReason::kPeerClosed, "");
    Finalize(c, /*abort=*/false);
    return;
  }
  SetConnState(counters_, c, ConnectionState::kLocalClosed);
}

void EngineImpl::ShutdownWrite(Conn& c) {
  if (c.state == ConnectionState::kClosed || c.writing.fin_wanted) return;
  c.writing.fin_wanted = true;
  if (!c.reading.eof) SetConnState(counters_, c, ConnectionState::kLocalClosed);
  if (c.stream != nullptr) Flush(c);  // Sends FIN once drained.
}

void EngineImpl::OnConnTimer(uint64_t num, ConnTimer which) {
  Conn* c = FindConn(num);
  if (c == nullptr || c->finalized) return;
  switch (which) {
    case ConnTimer::kTtl:
      StartClose(*c, CloseReason::kTtlExpired,
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
        StartClose(
            *c, CloseReason::kIdleTimeout,
            absl::StrCat("idle for ", absl::FormatDuration(x.idle_timeout)),
            /*abort=*/false);
        return;
      }
      // There was activity: sleep until the new deadline. Cheaper than
      // re-arming the timer on every read and write.
      x.idle_timer->expires_at(
          Timer::time_point(std::chrono::nanoseconds(due)));
      x.idle_timer->async_wait(Locked([this, num](const asio::error_code& ec) {
        AssertEngineLock();
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
      Finalize(*c, /*abort=*/unsent > 0);
      return;
    }
  }
}

}  // namespace engine_internal
}  // namespace sockagent
