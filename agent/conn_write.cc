// ConnIo (agent/conn_io.h), stream connection writes: Send's queueing
// (QueueSend), the flush to the socket (Flush, WriteQueued with writev,
// ArmWrite and its readiness handler), and our FIN (SendFin, ShutdownWrite).
// TLS and the faults' SEND stage take their turn in Flush (tls_stage.cc,
// fault_stage.cc). Reads and the connection timers are in
// conn_io.cc.
//
// Threads: under the engine lock (agent/engine_impl.h), on the loop thread
// or inline on a gRPC thread in a public call. Nothing here blocks.
#include <sys/socket.h>
#include <sys/uio.h>

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

// Buffers handed to one writev.
constexpr size_t kMaxWriteSpans = 16;

}  // namespace

void ConnIo::Send(absl::string_view id, std::string data,
                  Done<absl::StatusOr<SendResult>> done) {
  engine_.AssertEngineLock();
  absl::StatusOr<Conn*> c = engine_.registry_.LookupConn(id);
  if (!c.ok()) {
    done(c.status());
    return;
  }
  if ((*c)->behavior == BehaviorKind::kProxy) {
    done(ProxiedRefusal(**c, "send"));
    return;
  }
  done(QueueSend(**c, std::move(data)));
}

absl::StatusOr<SendResult> ConnIo::QueueSend(Conn& c, std::string data,
                                             bool stream) {
  engine_.AssertEngineLock();
  const std::string id = ConnId(c.num);
  const uint64_t size = data.size();
  if (size > engine_.options_.max_send_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "send ", id, ": ", size, " bytes is above max_send_bytes (",
        engine_.options_.max_send_bytes, ")"));
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
        c.counters.send_buffered + size > engine_.options_.send_buffer_bytes) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "send ", id, ": send buffer full: ", c.counters.send_buffered,
          " bytes queued, ", size, " more would exceed send_buffer_bytes (",
          engine_.options_.send_buffer_bytes, "); retry after it drains"));
    }
    if (absl::Status s =
            engine_.ledger_.budget().CheckRoom(absl::StrCat("send ", id), size);
        !s.ok()) {
      return s;
    }
  }
  if (c.transport == Transport::kUdp) {
    if (absl::Status s = engine_.udp_.SendDatagram(c, std::move(data));
        !s.ok()) {
      return s;
    }
  } else {
    const uint64_t lost_before = c.counters.send_bytes_lost;
    c.send_bytes.AppendOwned(std::move(data));
    c.counters.send_buffered = c.send_bytes.size();
    c.counters.send_buffered_peak =
        std::max(c.counters.send_buffered_peak, c.counters.send_buffered);
    engine_.ledger_.Recharge(c);
    Flush(c);
    // The write found the connection broken: these bytes are lost, and the
    // caller must hear it.
    if (c.finalized) {
      return SendFailure(c, c.counters.send_bytes_lost - lost_before);
    }
  }
  return SendResult{size, c.counters.send_buffered};
}

absl::Status ConnIo::SendFailure(const Conn& c, uint64_t lost) const {
  engine_.AssertEngineLock();
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

void ConnIo::Flush(Conn& c) {
  engine_.AssertEngineLock();
  if (c.finalized || c.stream == nullptr) return;
  // TLS: nothing is written before the handshake ends (it flushes then).
  if (TlsStage::Active(c) && !engine_.tls_.ReadyToWrite(c)) return;
  // The SEND stage of faults (fault_stage.cc): every byte headed for a
  // stream socket passes here, plaintext on TLS. Without faults: one
  // pointer test.
  if (c.extra != nullptr && c.extra->faults != nullptr) {
    engine_.faults_.Flush(c);
    return;
  }
  while (!c.send_bytes.empty()) {
    if (WriteSome(c, SIZE_MAX) != WriteOutcome::kWrote) return;
  }
  ResumeReading(c);
  if (c.behavior == BehaviorKind::kProxy) engine_.proxy_.Drained(c);
  if (c.writing.fin_wanted && !c.writing.fin_sent) SendFin(c);
  engine_.streams_.Pump(c);
}

ConnIo::WriteOutcome ConnIo::WriteSome(Conn& c, size_t limit) {
  return TlsStage::Active(c) ? engine_.tls_.WriteQueued(c, limit)
                             : WriteQueued(c, limit);
}

ConnIo::WriteOutcome ConnIo::WriteQueued(Conn& c, size_t limit) {
  engine_.AssertEngineLock();
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
      if (c.behavior == BehaviorKind::kProxy) engine_.proxy_.Drained(c);
      ArmWrite(c);
      engine_.streams_.Pump(c);
      return WriteOutcome::kBlocked;
    }
    OnStreamError(c, ec, "write");
    return WriteOutcome::kFailed;
  }
  NoteWritten(c, written);
  return WriteOutcome::kWrote;
}

void ConnIo::NoteWritten(Conn& c, size_t written) {
  engine_.AssertEngineLock();
  c.send_bytes.Consume(written);
  c.counters.send_buffered = c.send_bytes.size();
  engine_.ledger_.Recharge(c);
  c.counters.bytes_sent += written;
  if (Server* s = engine_.registry_.FindServer(c.server_num)) {
    s->info.counters.bytes_sent += written;
  }
  Touch(c);
  engine_.Emit(EventKind::kDataSent, c.server_num, c.num, written);
}

void ConnIo::ArmWrite(Conn& c) {
  engine_.AssertEngineLock();
  if (c.writing.armed || c.finalized) return;
  auto handler =
      engine_.Locked([this, num = c.num](const asio::error_code& ec) {
        engine_.AssertEngineLock();
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

void ConnIo::OnWritable(uint64_t num, const asio::error_code& ec) {
  engine_.AssertEngineLock();
  Conn* c = engine_.registry_.FindConn(num);
  if (c == nullptr || c->finalized) return;
  c->writing.armed = false;
  if (ec) {
    if (ec != asio::error::operation_aborted) OnStreamError(*c, ec, "wait");
    return;
  }
  if (c->stream != nullptr) {
    Flush(*c);
  } else {
    engine_.udp_.FlushClient(*c);
  }
}

void ConnIo::SendFin(Conn& c) {
  engine_.AssertEngineLock();
  // TLS: close_notify goes out before the FIN.
  if (TlsStage::Active(c)) c.extra->tls->session->SendCloseNotify();
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
  engine_.streams_.Pump(c);  // A StreamShutdownWrite waiting for this FIN.
  if (c.state == ConnectionState::kClosed) {
    // Tail: wait (up to close_linger) for the peer's FIN, unless seen.
    if (c.reading.eof) engine_.closer_.Finalize(c, /*abort=*/false);
    return;
  }
  if (c.reading.eof) {
    // Both directions are finished, ours last: an orderly end of stream,
    // and what the peer sent before its FIN stays receivable.
    engine_.closer_.MarkClosed(c, CloseReason::kPeerClosed, "");
    engine_.closer_.Finalize(c, /*abort=*/false);
    return;
  }
  SetConnState(engine_.counters_, c, ConnectionState::kLocalClosed);
}

void ConnIo::ShutdownWrite(Conn& c) {
  engine_.AssertEngineLock();
  if (c.state == ConnectionState::kClosed || c.writing.fin_wanted) return;
  c.writing.fin_wanted = true;
  if (!c.reading.eof)
    SetConnState(engine_.counters_, c, ConnectionState::kLocalClosed);
  if (c.stream != nullptr) Flush(c);  // Sends FIN once drained.
}

}  // namespace engine_internal
}  // namespace sockagent
