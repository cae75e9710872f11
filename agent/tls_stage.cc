// TLS on the engine's stream connections (agent/tls_stage.h).
#include "agent/tls_stage.h"

#include <algorithm>
#include <cerrno>
#include <utility>

#include "absl/strings/str_cat.h"
#include "agent/engine_impl.h"
#include "agent/net_error.h"
#include "agent/tls_cert.h"

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

bool TlsStage::Start(Conn& c,
                     const std::shared_ptr<const TlsServerContext>& server,
                     const std::shared_ptr<const TlsClientContext>& client,
                     absl::Time deadline) {
  engine_.AssertEngineLock();
  const int fd = c.stream->native_handle();
  absl::StatusOr<std::unique_ptr<TlsSession>> session =
      server != nullptr ? TlsSession::CreateServer(server, fd)
                        : TlsSession::CreateClient(client, fd, &sessions_,
                                                   c.remote.ToString());
  auto tls = std::make_unique<ConnTls>();
  if (!session.ok()) {
    c.Extra().tls = std::move(tls);
    engine_.closer_.MarkClosed(c, CloseReason::kError,
                               std::string(session.status().message()));
    engine_.closer_.Finalize(c, /*abort=*/true);
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
      std::make_unique<Timer>(engine_.io_, ToSteady(tls->handshake_timeout));
  tls->handshake_timer->async_wait(
      engine_.Locked([this, num = c.num](const asio::error_code& ec) {
        engine_.AssertEngineLock();
        if (!ec) OnHandshakeTimer(num);
      }));
  c.Extra().tls = std::move(tls);
  return true;
}

bool TlsStage::DriveHandshake(Conn& c) {
  engine_.AssertEngineLock();
  ConnTls& t = *c.extra->tls;
  if (t.session->handshake_done()) return true;
  const TlsIo r = t.session->Handshake();
  switch (r.kind) {
    case TlsIoKind::kDone:
      break;
    case TlsIoKind::kWantRead:
      engine_.conn_io_.ArmRead(c);
      return false;
    case TlsIoKind::kWantWrite:
      engine_.conn_io_.ArmWrite(c);
      return false;
    case TlsIoKind::kClosed:
    case TlsIoKind::kTruncated:
      FailHandshake(c,
                    "the peer closed the connection during the "
                    "handshake");
      return false;
    case TlsIoKind::kError:
      FailHandshake(c, r.error);
      return false;
  }
  KeepFacts(c, t.session->Facts());
  t.handshake_timer.reset();
  if (Server* s = engine_.registry_.FindServer(c.server_num)) {
    ++s->info.counters.tls_handshakes;
    // A TLS-terminating proxy dials its upstream now (servers_accept.cc).
    if (c.origin == Origin::kAccepted && c.behavior == BehaviorKind::kProxy) {
      engine_.proxy_.Dial(*s, c);
      if (c.finalized) return false;
    }
  }
  if (t.on_handshake) {
    Done<absl::StatusOr<ConnectionInfo>> done = std::move(t.on_handshake);
    t.on_handshake = nullptr;
    done(Snapshot(c));
    if (c.finalized) return false;
  }
  engine_.conn_io_.ArmRead(
      c);  // Application data now (a wait may be armed already).
  if (!c.send_bytes.empty() || c.writing.fin_wanted) engine_.conn_io_.Flush(c);
  return !c.finalized;
}

// Closed by a TLS error: reason ERROR with `detail`, or, when the close had
// begun already (a greeting-and-close server), the detail appended.
void TlsStage::NoteError(Conn& c, std::string detail) {
  engine_.AssertEngineLock();
  if (c.state != ConnectionState::kClosed) {
    engine_.closer_.MarkClosed(c, CloseReason::kError, std::move(detail));
  } else {
    ConnExtra& x = c.Extra();
    x.close_detail = x.close_detail.empty()
                         ? std::move(detail)
                         : absl::StrCat(x.close_detail, "; then ", detail);
  }
}

void TlsStage::KeepFacts(Conn& c, std::shared_ptr<const TlsInfo> info) {
  engine_.AssertEngineLock();
  ConnTls& t = *c.extra->tls;
  uint64_t bytes = TlsInfoBytes(*info);
  // The facts these replace give their charge back first.
  const uint64_t room = engine_.ledger_.budget().Room() + t.facts_bytes;
  if (bytes > room) {
    uint64_t text = 0;
    for (const TlsCertificateInfo& cert : info->peer_chain) {
      text += tls_internal::TextBytes(cert);
    }
    const uint64_t fixed = bytes - text;
    auto fitted = std::make_shared<TlsInfo>(*info);
    tls_internal::FitChainToBudget(&fitted->peer_chain,
                                   room > fixed ? room - fixed : 0);
    bytes = TlsInfoBytes(*fitted);
    info = std::move(fitted);
  }
  t.info = std::move(info);
  t.facts_bytes = bytes;
  engine_.ledger_.Recharge(c);
}

void TlsStage::FailHandshake(Conn& c, absl::string_view words) {
  engine_.AssertEngineLock();
  ConnTls& t = *c.extra->tls;
  // What the handshake saw so far (a client's rejected chain, say).
  auto info = std::make_shared<TlsInfo>(*t.session->Facts());
  info->failure = std::string(words);
  KeepFacts(c, std::move(info));
  t.handshake_timer.reset();
  if (Server* s = engine_.registry_.FindServer(c.server_num)) {
    ++s->info.counters.tls_handshake_failures;
  }
  std::string detail = absl::StrCat("TLS handshake failed: ", words);
  engine_.Emit(EventKind::kError, c.server_num, c.num, 0, {},
               absl::StrCat(ConnId(c.num), ": ", detail));
  NoteError(c, std::move(detail));
  engine_.closer_.Finalize(c, /*abort=*/false);
}

void TlsStage::OnHandshakeTimer(uint64_t num) {
  engine_.AssertEngineLock();
  Conn* c = engine_.registry_.FindConn(num);
  if (c == nullptr || c->finalized || !Active(*c) ||
      c->extra->tls->session->handshake_done()) {
    return;
  }
  FailHandshake(
      *c, absl::StrCat("timed out after ",
                       absl::FormatDuration(c->extra->tls->handshake_timeout)));
}

void TlsStage::Fail(Conn& c, const TlsIo& r, absl::string_view op) {
  engine_.AssertEngineLock();
  if (r.sys_errno != 0) {
    engine_.conn_io_.OnStreamError(
        c, asio::error_code(r.sys_errno, asio::system_category()), op);
    return;
  }
  std::string detail = absl::StrCat("TLS ", op, ": ", r.error);
  NoteError(c, std::move(detail));
  engine_.closer_.Finalize(c, /*abort=*/true);
}

void TlsStage::PostRead(Conn& c) {
  engine_.AssertEngineLock();
  if (c.reading.armed) return;
  c.reading.armed = true;
  asio::post(engine_.io_, engine_.Locked([this, num = c.num] {
    engine_.AssertEngineLock();
    engine_.conn_io_.OnReadable(num, asio::error_code());
  }));
}

void TlsStage::Read(Conn& c) {
  engine_.AssertEngineLock();
  ConnTls& t = *c.extra->tls;
  if (!t.session->handshake_done() && !DriveHandshake(c)) return;
  if (c.finalized) return;
  if (t.write_wants_read) {
    t.write_wants_read = false;
    engine_.conn_io_.Flush(c);
    if (c.finalized) return;
  }
  for (int i = 0; i < kTlsReadsPerWakeup; ++i) {
    const size_t room = engine_.conn_io_.ReadRoom(c);
    if (room == 0) {
      engine_.conn_io_.PauseReading(c);
      return;
    }
    const TlsIo r = t.session->Read(engine_.scratch_.data(), room);
    switch (r.kind) {
      case TlsIoKind::kDone:
        engine_.conn_io_.DeliverStream(c, engine_.scratch_.data(), r.bytes);
        if (c.finalized) return;
        continue;
      case TlsIoKind::kWantRead:
        engine_.conn_io_.ArmRead(c);
        return;
      case TlsIoKind::kWantWrite:
        t.read_wants_write = true;
        engine_.conn_io_.ArmWrite(c);
        return;
      case TlsIoKind::kTruncated: {
        auto info = std::make_shared<TlsInfo>(*t.info);
        info->truncated = true;
        KeepFacts(c, std::move(info));
        engine_.conn_io_.OnPeerFin(c);
        if (c.state == ConnectionState::kClosed &&
            c.extra->close_detail.empty()) {
          c.extra->close_detail =
              "the peer closed without TLS close_notify (truncation)";
        }
        engine_.conn_io_.ArmRead(c);
        return;
      }
      case TlsIoKind::kClosed:
        engine_.conn_io_.OnPeerFin(c);
        engine_.conn_io_.ArmRead(
            c);  // No more reading: watches for a reset instead.
        return;
      case TlsIoKind::kError:
        Fail(c, r, "read");
        return;
    }
  }
  engine_.conn_io_.ArmRead(c);  // Posts a read when OpenSSL still holds bytes.
}

bool TlsStage::ReadyToWrite(Conn& c) {
  engine_.AssertEngineLock();
  ConnTls& t = *c.extra->tls;
  if (!t.session->handshake_done()) {
    DriveHandshake(c);  // Flushes itself once done.
    return false;
  }
  if (t.read_wants_write) {
    t.read_wants_write = false;
    PostRead(c);
  }
  return true;
}

ConnIo::WriteOutcome TlsStage::WriteQueued(Conn& c, size_t limit) {
  engine_.AssertEngineLock();
  ConnTls& t = *c.extra->tls;
  absl::string_view span;
  c.send_bytes.Peek(&span, 1);
  // A write that wanted a retry must be retried at least as long: OpenSSL
  // encrypted those bytes already (a fault's smaller allowance can wait).
  const size_t len =
      std::min({span.size(), kTlsWriteChunk, std::max(limit, t.retry_len)});
  const TlsIo r = t.session->Write(span.data(), len);
  switch (r.kind) {
    case TlsIoKind::kDone:
      t.retry_len = 0;
      engine_.conn_io_.NoteWritten(c, r.bytes);
      return ConnIo::WriteOutcome::kWrote;
    case TlsIoKind::kWantWrite:
      t.retry_len = len;
      engine_.conn_io_.ResumeReading(
          c);  // An echo may have drained below its mark.
      if (c.behavior == BehaviorKind::kProxy) engine_.proxy_.Drained(c);
      engine_.conn_io_.ArmWrite(c);
      engine_.streams_.Pump(c);
      return ConnIo::WriteOutcome::kBlocked;
    case TlsIoKind::kWantRead:
      t.retry_len = len;
      t.write_wants_read = true;
      engine_.conn_io_.ArmRead(c);
      return ConnIo::WriteOutcome::kBlocked;
    case TlsIoKind::kClosed:
    case TlsIoKind::kTruncated:
    case TlsIoKind::kError:
      break;
  }
  Fail(c, r, "write");
  return ConnIo::WriteOutcome::kFailed;
}

void TlsStage::AwaitHandshake(absl::string_view id,
                              Done<absl::StatusOr<ConnectionInfo>> done) {
  engine_.AssertEngineLock();
  if (!done) return;
  const std::optional<uint64_t> num = ParseId(id, "conn-");
  Conn* c = num.has_value() ? engine_.registry_.FindConn(*num) : nullptr;
  if (c == nullptr) {
    done(absl::InternalError(absl::StrCat("open: ", id, " vanished")));
    return;
  }
  if (c->finalized || !Active(*c)) {
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

void TlsStage::End(Conn& c) {
  engine_.AssertEngineLock();
  ConnTls& t = *c.extra->tls;
  t.handshake_timer.reset();
  if (t.session != nullptr && t.info == nullptr) {
    // Closed before the handshake ended (reset, shutdown, a Close call).
    auto info = std::make_shared<TlsInfo>(*t.session->Facts());
    info->handshake_done = false;
    if (info->failure.empty()) info->failure = "closed during the handshake";
    KeepFacts(c, std::move(info));
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
