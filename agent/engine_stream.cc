// EngineImpl, Stream attachments: one caller (the Stream RPC) attached to a
// connection receives its bytes in order and sends with backpressure.
//
// Receiving reuses the parked-Receive machinery (the attachment's token
// lets it past the "a Stream is attached" refusal). Sending differs from
// Send: a chunk that does not fit the send buffer waits (Attachment::waiting)
// instead of being refused, and PumpStreamSend queues it as soon as the
// buffer drains or fails it once the connection closes. So a stream holds
// at most send_buffer_bytes plus one chunk, and the caller reads its next
// chunk only after the engine took the previous one.
#include <utility>

#include "absl/strings/str_cat.h"
#include "agent/engine_impl.h"

namespace sockagent {
namespace engine_internal {

void EngineImpl::AttachStream(std::string connection_id, bool close_on_detach,
                              Done<absl::StatusOr<StreamAttachment>> done) {
  PostWork(std::move(done),
           [this, id = std::move(connection_id),
            close_on_detach](Done<absl::StatusOr<StreamAttachment>> d) {
             AssertEngineLock();
             absl::StatusOr<Conn*> c = LookupConn(id);
             if (!c.ok()) {
               d(c.status());
               return;
             }
             d(DoAttach(**c, close_on_detach));
           });
}

void EngineImpl::OpenStream(ClientSpec spec, absl::Time deadline,
                            Done<absl::StatusOr<StreamAttachment>> done) {
  PostWork(std::move(done), [this, spec = std::move(spec), deadline](
                                Done<absl::StatusOr<StreamAttachment>> d) {
    DoOpenClient(spec, deadline,
                 [this, d = std::move(d)](
                     absl::StatusOr<ConnectionInfo> opened) mutable {
                   AssertEngineLock();
                   if (!opened.ok()) {
                     d(opened.status());
                     return;
                   }
                   // Runs on the loop right after the connection was created,
                   // so nobody else can attach (or Receive) first.
                   std::optional<uint64_t> num = ParseId(opened->id, "conn-");
                   Conn* c = num.has_value() ? FindConn(*num) : nullptr;
                   if (c == nullptr) {
                     d(absl::InternalError(
                         absl::StrCat("stream: ", opened->id, " vanished")));
                     return;
                   }
                   d(DoAttach(*c, /*close_on_detach=*/true));
                 });
  });
}

absl::StatusOr<StreamAttachment> EngineImpl::DoAttach(Conn& c,
                                                      bool close_on_detach) {
  const std::string id = ConnId(c.num);
  if (c.state == ConnectionState::kClosed) {
    return absl::FailedPreconditionError(
        absl::StrCat("stream ", id, ": connection is closed (",
                     CloseReasonText(c.close_reason), ")"));
  }
  if (c.extra != nullptr && c.extra->attachment != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "stream ", id, ": another Stream is attached to it already"));
  }
  // A parked Receive whose caller went away gives way.
  if (c.receive != nullptr && CallerGone(*c.receive)) CompleteReceive(c);
  if (c.receive != nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("stream ", id, ": a Receive is waiting on it"));
  }
  const uint64_t token = next_token_.fetch_add(1);
  Attachment& a = attachments_[token];
  a.token = token;
  a.conn_num = c.num;
  a.close_on_detach = close_on_detach;
  c.Extra().attachment = token;
  return StreamAttachment{token, Snapshot(c)};
}

Attachment* EngineImpl::FindAttachment(uint64_t token) {
  auto it = attachments_.find(token);
  return it == attachments_.end() ? nullptr : &it->second;
}

Conn* EngineImpl::AttachedConn(uint64_t token, Attachment** attachment) {
  *attachment = FindAttachment(token);
  return *attachment == nullptr ? nullptr : FindConn((*attachment)->conn_num);
}

absl::Status EngineImpl::ClosedStatus(const Conn& c,
                                      absl::string_view op) const {
  const std::string detail =
      c.extra != nullptr && !c.extra->close_detail.empty()
          ? c.extra->close_detail
          : std::string(CloseReasonText(c.close_reason));
  std::string message = absl::StrCat(op, " ", ConnId(c.num),
                                     ": connection is closed (", detail, ")");
  switch (c.close_reason) {
    case CloseReason::kPeerReset:
      return absl::AbortedError(std::move(message));
    case CloseReason::kAgentShutdown:
      return ShuttingDownError();
    case CloseReason::kError:
      return absl::UnavailableError(std::move(message));
    default:
      return absl::FailedPreconditionError(std::move(message));
  }
}

uint64_t EngineImpl::StreamReceive(uint64_t attachment, size_t max_bytes,
                                   Done<absl::StatusOr<StreamChunk>> done) {
  const uint64_t token = next_token_.fetch_add(1);
  PostWork(std::move(done), [this, attachment, max_bytes,
                             token](Done<absl::StatusOr<StreamChunk>> d) {
    AssertEngineLock();
    DoStreamReceive(attachment, max_bytes, token, std::move(d));
  });
  return token;
}

void EngineImpl::DoStreamReceive(uint64_t attachment, size_t max_bytes,
                                 uint64_t token,
                                 Done<absl::StatusOr<StreamChunk>> done) {
  Attachment* a = FindAttachment(attachment);
  if (a == nullptr) {
    done(absl::FailedPreconditionError("stream: detached"));
    return;
  }
  ReceiveSpec spec;
  spec.max_bytes = max_bytes;
  spec.wait = absl::InfiniteDuration();
  a->receive_token = token;
  const uint64_t num = a->conn_num;
  DoReceive(
      ConnId(num), spec, token,
      [this, attachment, num,
       done = std::move(done)](absl::StatusOr<ReceiveResult> r) mutable {
        AssertEngineLock();
        if (Attachment* att = FindAttachment(attachment)) {
          att->receive_token = 0;
        }
        const Conn* c = FindConn(num);
        StreamChunk chunk;
        if (r.ok()) {
          chunk.data = std::move(r->data);
          chunk.datagrams = std::move(r->datagrams);
          chunk.peer_closed = r->end_of_stream;
        } else if (c == nullptr || c->state != ConnectionState::kClosed ||
                   !absl::IsFailedPrecondition(r.status()) ||
                   (c->extra != nullptr && c->extra->history_discarded > 0)) {
          done(r.status());  // Reset, error, shutdown, detached.
          return;
        }
        // Ended in order (both FINs, or a local close) and drained. After
        // a reset or an error the next StreamReceive reports it instead.
        const bool orderly = c != nullptr &&
                             c->close_reason != CloseReason::kPeerReset &&
                             c->close_reason != CloseReason::kError &&
                             c->close_reason != CloseReason::kAgentShutdown;
        if (orderly && c->state == ConnectionState::kClosed &&
            c->counters.recv_buffered == 0 && !c->has_datagrams()) {
          chunk.closed = true;
          chunk.reason = c->close_reason;
          if (c->extra != nullptr) chunk.detail = c->extra->close_detail;
        }
        done(std::move(chunk));
      },
      attachment);
}

void EngineImpl::StreamSend(uint64_t attachment, std::string data,
                            Done<absl::Status> done) {
  PostWork(std::move(done), [this, attachment, data = std::move(data)](
                                Done<absl::Status> d) mutable {
    AssertEngineLock();
    DoStreamSend(attachment, std::move(data), std::move(d));
  });
}

void EngineImpl::DoStreamSend(uint64_t attachment, std::string data,
                              Done<absl::Status> done) {
  Attachment* a = nullptr;
  Conn* c = AttachedConn(attachment, &a);
  if (c == nullptr) {
    done(absl::FailedPreconditionError("stream: detached"));
    return;
  }
  if (a->waiting.has_value()) {
    done(absl::FailedPreconditionError(
        absl::StrCat("stream ", ConnId(c->num),
                     ": the previous chunk is still waiting for room")));
    return;
  }
  if (data.size() > options_.max_send_bytes) {
    done(absl::InvalidArgumentError(absl::StrCat(
        "stream ", ConnId(c->num), ": a chunk of ", data.size(),
        " bytes is above max_send_bytes (", options_.max_send_bytes, ")")));
    return;
  }
  if (data.empty() && c->transport != Transport::kUdp) {
    done(absl::OkStatus());  // Nothing to write; not a datagram either.
    return;
  }
  a->waiting = std::move(data);
  a->waiting_done = std::move(done);
  PumpStreamSend(*c);
}

void EngineImpl::PumpStreamSend(Conn& c) {
  if (c.extra == nullptr || c.extra->attachment == 0) return;
  Attachment* a = FindAttachment(c.extra->attachment);
  if (a == nullptr) return;
  if (a->fin_done != nullptr &&
      (c.writing.fin_sent || c.state == ConnectionState::kClosed)) {
    Done<absl::Status> fin_done = std::move(a->fin_done);
    a->fin_done = nullptr;
    fin_done(c.writing.fin_sent ? absl::OkStatus()
                                : ClosedStatus(c, "shutdown-write"));
  }
  if (!a->waiting.has_value()) return;
  const bool closed = c.state == ConnectionState::kClosed || c.finalized;
  if (!closed) {
    const uint64_t size = a->waiting->size();
    const uint64_t bound = options_.send_buffer_bytes;
    const uint64_t held = SendCharge(c);
    const uint64_t cost =
        size + (c.transport == Transport::kUdp ? kDatagramOverheadBytes : 0);
    // Wait while the own buffer is too full, or while the agent-wide bound
    // is and this connection's draining will free some of it. An empty
    // buffer always takes one chunk (QueueSend still checks the agent-wide
    // bound then).
    if (held > 0 && (held + cost > bound || cost > TotalRoom())) return;
  }
  std::string data = std::move(*a->waiting);
  a->waiting.reset();
  Done<absl::Status> done = std::move(a->waiting_done);
  a->waiting_done = nullptr;
  if (closed) {
    done(ClosedStatus(c, "stream"));
    return;
  }
  done(QueueSend(c, std::move(data), /*stream=*/true).status());
}

void EngineImpl::StreamShutdownWrite(uint64_t attachment,
                                     Done<absl::Status> done) {
  PostWork(std::move(done), [this, attachment](Done<absl::Status> d) {
    AssertEngineLock();
    DoStreamShutdownWrite(attachment, std::move(d));
  });
}

void EngineImpl::DoStreamShutdownWrite(uint64_t attachment,
                                       Done<absl::Status> done) {
  Attachment* a = nullptr;
  Conn* c = AttachedConn(attachment, &a);
  if (c == nullptr) {
    done(absl::FailedPreconditionError("stream: detached"));
    return;
  }
  if (c->transport == Transport::kUdp || c->writing.fin_sent) {
    done(absl::OkStatus());  // UDP has no FIN; a stream's FIN went out.
    return;
  }
  if (c->state == ConnectionState::kClosed) {
    done(ClosedStatus(*c, "shutdown-write"));
    return;
  }
  if (a->fin_done != nullptr) {
    done(absl::FailedPreconditionError(
        absl::StrCat("stream ", ConnId(c->num), ": already shutting down")));
    return;
  }
  a->fin_done = std::move(done);
  ShutdownWrite(*c);  // Flushes; SendFin (or a close) completes fin_done.
  if (Conn* still = FindConn(a->conn_num)) PumpStreamSend(*still);
}

void EngineImpl::DetachStream(uint64_t attachment) {
  // Once Shutdown began it closes the connection itself.
  RunOrPost([this, attachment] {
    AssertEngineLock();
    DoDetachStream(attachment);
  });
}

void EngineImpl::DoDetachStream(uint64_t attachment) {
  auto it = attachments_.find(attachment);
  if (it == attachments_.end()) return;
  Attachment a = std::move(it->second);
  attachments_.erase(it);
  if (a.waiting_done != nullptr) {
    a.waiting_done(absl::CancelledError("stream: detached"));
  }
  if (a.fin_done != nullptr) {
    a.fin_done(absl::CancelledError("stream: detached"));
  }
  Conn* c = FindConn(a.conn_num);
  if (c == nullptr) return;
  if (c->extra != nullptr && c->extra->attachment == attachment) {
    c->extra->attachment = 0;
  }
  // A parked StreamReceive answers now (empty): the caller is going away.
  if (c->receive != nullptr && c->receive->token == a.receive_token) {
    CompleteReceive(*c);
  }
  if (a.close_on_detach && c->state != ConnectionState::kClosed) {
    StartClose(*c, CloseReason::kStreamEnded, "", /*abort=*/false);
  }
}

}  // namespace engine_internal
}  // namespace sockagent
