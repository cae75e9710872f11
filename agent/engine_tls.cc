// EngineImpl, TLS on stream connections: the glue between a connection and
// its TlsSession (agent/tls.h). The session lives on the connection's own
// non-blocking socket (SSL_set_fd) and is driven by the same readiness
// waits as a plain connection: SSL_read takes the place of recv into the
// loop's scratch buffer, SSL_write the place of writev, and a WANT_READ /
// WANT_WRITE arms the matching wait. Handshakes run on the loop too, each
// bounded by its timer; no thread per connection.
//
// Threads: everything here runs under the engine lock (agent/engine_impl.h).
#include <algorithm>
#include <cerrno>
#include <utility>

#include "absl/strings/str_cat.h"
#include "agent/engine_impl.h"
#include "agent/net_error.h"

namespace sockagent {
namespace engine_internal {

namespace {

// SSL_read returns at most one record (16 KiB): more reads per wakeup than
// a plain socket gets, so a wakeup still moves up to 1 MiB.
constexpr int kTlsReadsPerWakeup = 64;
// Bytes handed to one SSL_write. It must never shrink between a
// WANT_WRITE and its retry: the queue's front only grows, and so does
// min(front, this).
constexpr size_t kTlsWriteChunk = 1 << 20;

}  // namespace

bool EngineImpl::StartTls(Conn& c,
                          const std::shared_ptr<const TlsServerContext>& server,
                          const std::shared_ptr<const TlsClientContext>& client,
                          absl::Time deadline) {
  const int fd = c.stream->native_handle();
  absl::StatusOr<std::unique_ptr<TlsSession>> session =
      server != nullptr ? TlsSession::CreateServer(server, fd)
                        : TlsSession::CreateClient(client, fd, &tls_sessions_,
                                                   c.remote.ToString());
  auto tls = std::make_unique<ConnTls>();
  if (!session.ok()) {
    c.Extra().tls = std::move(tls);
    MarkClosed(c, CloseReason::kError, std::string(session.status().message()));
    Finalize(c, /*abort=*/true);
    return false;
  }
  tls->session = *std::move(session);
  tls->handshake_timeout = tls->session->handshake_timeout();
  if (deadline != absl::InfiniteFuture()) {
    tls->handshake_timeout =
        std::max(std::min(deadline - absl::Now(), tls->handshake_timeout),
                 absl::Milliseconds(1));
  }
  tls->handshake_timer =
      std::make_unique<Timer>(io_, ToSteady(tls->handshake_timeout));
  tls->handshake_timer->async_wait(
      Locked([this, num = c.num](const asio::error_code& ec) {
        AssertEngineLock();
        if (!ec) OnTlsHandshakeTimer(num);
      }));
  c.Extra().tls = std::move(tls);
  return true;
}

bool EngineImpl::DriveTlsHandshake(Conn& c) {
  ConnTls& t = *c.extra->tls;
  if (t.session->handshake_done()) return true;
  const TlsIo r = t.session->Handshake();
  switch (r.kind) {
    case TlsIoKind::kDone:
      break;
    case TlsIoKind::kWantRead:
      ArmRead(c);
      return false;
    case TlsIoKind::kWantWrite:
      ArmWrite(c);
      return false;
    case TlsIoKind::kClosed:
    case TlsIoKind::kTruncated:
      FailTlsHandshake(c,
                       "the peer closed the connection during the "
                       "handshake");
      return false;
    case TlsIoKind::kError:
      FailTlsHandshake(c, r.error);
      return false;
  }
  t.info = t.session->Facts();
  t.handshake_timer.reset();
  if (Server* s = FindServer(c.server_num)) ++s->info.counters.tls_handshakes;
  if (t.on_handshake) {
    Done<absl::StatusOr<ConnectionInfo>> done = std::move(t.on_handshake);
    t.on_handshake = nullptr;
    done(Snapshot(c));
    if (c.finalized) return false;
  }
  ArmRead(c);  // Application data now (a wait may be armed already).
  if (!c.send_bytes.empty() || c.writing.fin_wanted) Flush(c);
  return !c.finalized;
}

// Closed by a TLS error: reason ERROR with `detail`, or, when the close had
// begun already (a greeting-and-close server), the detail appended.
void EngineImpl::NoteTlsError(Conn& c, std::string detail) {
  if (c.state != ConnectionState::kClosed) {
    MarkClosed(c, CloseReason::kError, std::move(detail));
  } else {
    ConnExtra& x = c.Extra();
    x.close_detail = x.close_detail.empty()
                         ? std::move(detail)
                         : absl::StrCat(x.close_detail, "; then ", detail);
  }
}

void EngineImpl::FailTlsHandshake(Conn& c, absl::string_view words) {
  ConnTls& t = *c.extra->tls;
  // What the handshake saw so far (a client's rejected chain, say).
  auto info = std::make_shared<TlsInfo>(*t.session->Facts());
  info->failure = std::string(words);
  t.info = std::move(info);
  t.handshake_timer.reset();
  if (Server* s = FindServer(c.server_num)) {
    ++s->info.counters.tls_handshake_failures;
  }
  std::string detail = absl::StrCat("TLS handshake failed: ", words);
  Emit(EventKind::kError, c.server_num, c.num, 0, {},
       absl::StrCat(ConnId(c.num), ": ", detail));
  NoteTlsError(c, std::move(detail));
  Finalize(c, /*abort=*/false);
}

void EngineImpl::OnTlsHandshakeTimer(uint64_t num) {
  Conn* c = FindConn(num);
  if (c == nullptr || c->finalized || !TlsActive(*c) ||
      c->extra->tls->session->handshake_done()) {
    return;
  }
  FailTlsHandshake(
      *c, absl::StrCat("timed out after ",
                       absl::FormatDuration(c->extra->tls->handshake_timeout)));
}

void EngineImpl::FailTls(Conn& c, const TlsIo& r, absl::string_view op) {
  if (r.sys_errno != 0) {
    OnStreamError(c, asio::error_code(r.sys_errno, asio::system_category()),
                  op);
    return;
  }
  std::string detail = absl::StrCat("TLS ", op, ": ", r.error);
  NoteTlsError(c, std::move(detail));
  Finalize(c, /*abort=*/true);
}

void EngineImpl::PostTlsRead(Conn& c) {
  if (c.reading.armed) return;
  c.reading.armed = true;
  asio::post(io_, Locked([this, num = c.num] {
               AssertEngineLock();
               OnReadable(num, asio::error_code());
             }));
}

void EngineImpl::ReadTls(Conn& c) {
  ConnTls& t = *c.extra->tls;
  if (!t.session->handshake_done() && !DriveTlsHandshake(c)) return;
  if (c.finalized) return;
  if (t.write_wants_read) {
    t.write_wants_read = false;
    Flush(c);
    if (c.finalized) return;
  }
  for (int i = 0; i < kTlsReadsPerWakeup; ++i) {
    const size_t room = ReadRoom(c);
    if (room == 0) {
      PauseReading(c);
      return;
    }
    const TlsIo r = t.session->Read(scratch_.data(), room);
    switch (r.kind) {
      case TlsIoKind::kDone:
        DeliverStream(c, scratch_.data(), r.bytes);
        if (c.finalized) return;
        continue;
      case TlsIoKind::kWantRead:
        ArmRead(c);
        return;
      case TlsIoKind::kWantWrite:
        t.read_wants_write = true;
        ArmWrite(c);
        return;
      case TlsIoKind::kTruncated: {
        auto info = std::make_shared<TlsInfo>(*t.info);
        info->truncated = true;
        t.info = std::move(info);
        OnPeerFin(c);
        if (c.state == ConnectionState::kClosed &&
            c.extra->close_detail.empty()) {
          c.extra->close_detail =
              "the peer closed without TLS close_notify (truncation)";
        }
        ArmRead(c);
        return;
      }
      case TlsIoKind::kClosed:
        OnPeerFin(c);
        ArmRead(c);  // No more reading: watches for a reset instead.
        return;
      case TlsIoKind::kError:
        FailTls(c, r, "read");
        return;
    }
  }
  ArmRead(c);  // Posts a read when OpenSSL still holds bytes.
}

void EngineImpl::FlushTls(Conn& c) {
  ConnTls& t = *c.extra->tls;
  if (!t.session->handshake_done()) {
    DriveTlsHandshake(c);  // Flushes itself once done.
    return;
  }
  if (t.read_wants_write) {
    t.read_wants_write = false;
    PostTlsRead(c);
  }
  while (!c.send_bytes.empty()) {
    absl::string_view span;
    c.send_bytes.Peek(&span, 1);
    const size_t len = std::min(span.size(), kTlsWriteChunk);
    const TlsIo r = t.session->Write(span.data(), len);
    switch (r.kind) {
      case TlsIoKind::kDone:
        NoteWritten(c, r.bytes);
        continue;
      case TlsIoKind::kWantWrite:
        ResumeReading(c);  // An echo may have drained below its mark.
        if (c.behavior == BehaviorKind::kProxy) proxy_.Drained(c);
        ArmWrite(c);
        PumpStreamSend(c);
        return;
      case TlsIoKind::kWantRead:
        t.write_wants_read = true;
        ArmRead(c);
        return;
      case TlsIoKind::kClosed:
      case TlsIoKind::kTruncated:
      case TlsIoKind::kError:
        FailTls(c, r, "write");
        return;
    }
  }
  ResumeReading(c);
  if (c.behavior == BehaviorKind::kProxy) proxy_.Drained(c);
  if (c.writing.fin_wanted && !c.writing.fin_sent) SendFin(c);
  PumpStreamSend(c);
}

void EngineImpl::AwaitTlsHandshake(absl::string_view id,
                                   Done<absl::StatusOr<ConnectionInfo>> done) {
  if (!done) return;
  const std::optional<uint64_t> num = ParseId(id, "conn-");
  Conn* c = num.has_value() ? FindConn(*num) : nullptr;
  if (c == nullptr) {
    done(absl::InternalError(absl::StrCat("open: ", id, " vanished")));
    return;
  }
  if (c->finalized || !TlsActive(*c)) {
    const std::string detail =
        c->extra != nullptr ? c->extra->close_detail : std::string();
    done(absl::UnavailableError(absl::StrCat(
        "open ", id, " to ", c->remote.ToString(), ": ",
        detail.empty() ? std::string("closed during the TLS handshake")
                       : detail)));
    return;
  }
  ConnTls& t = *c->extra->tls;
  if (t.session->handshake_done()) {
    done(Snapshot(*c));
    return;
  }
  t.on_handshake = std::move(done);
}

void EngineImpl::EndTls(Conn& c) {
  ConnTls& t = *c.extra->tls;
  t.handshake_timer.reset();
  if (t.session != nullptr && t.info == nullptr) {
    // Closed before the handshake ended (reset, shutdown, a Close call).
    auto info = std::make_shared<TlsInfo>(*t.session->Facts());
    info->handshake_done = false;
    if (info->failure.empty()) info->failure = "closed during the handshake";
    t.info = std::move(info);
  }
  t.session.reset();  // SSL_free: the socket closes right after.
  if (t.on_handshake) {
    Done<absl::StatusOr<ConnectionInfo>> done = std::move(t.on_handshake);
    t.on_handshake = nullptr;
    const std::string& detail = c.extra->close_detail;
    const std::string message = absl::StrCat(
        "open ", ConnId(c.num), " to ", c.remote.ToString(), ": ",
        detail.empty() ? std::string("closed during the TLS handshake")
                       : detail);
    done(c.close_reason == CloseReason::kAgentShutdown
             ? ShuttingDownError()
             : absl::UnavailableError(message));
  }
}

}  // namespace engine_internal
}  // namespace sockagent
