// The Stream RPC's attachments (agent/streams.h).
#include "agent/streams.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "agent/engine_impl.h"

namespace sockagent {
namespace engine_internal {
namespace {

// A call on an attachment that is gone (detached, or never was).
absl::Status DetachedError() {
  return absl::FailedPreconditionError("stream: detached");
}

}  // namespace

absl::StatusOr<StreamAttachment> Streams::Attach(Conn& c,
                                                 bool close_on_detach) {
  engine_.AssertEngineLock();
  const std::string id = ConnId(c.num);
  if (c.behavior == BehaviorKind::kProxy) return ProxiedRefusal(c, "stream");
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
  if (c.receive != nullptr && Receiver::CallerGone(*c.receive))
    engine_.receiver_.Complete(c);
  if (c.receive != nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("stream ", id, ": a Receive is waiting on it"));
  }
  const uint64_t token = engine_.next_token_.fetch_add(1);
  Attachment& a = attachments_[token];
  a.token = token;
  a.conn_num = c.num;
  a.close_on_detach = close_on_detach;
  c.Extra().attachment = token;
  return StreamAttachment{token, Snapshot(c)};
}

Attachment* Streams::Find(uint64_t token) {
  auto it = attachments_.find(token);
  return it == attachments_.end() ? nullptr : &it->second;
}

Conn* Streams::AttachedConn(uint64_t token, Attachment** attachment) {
  engine_.AssertEngineLock();
  *attachment = Find(token);
  return *attachment == nullptr
             ? nullptr
             : engine_.registry_.FindConn((*attachment)->conn_num);
}

absl::Status Streams::ClosedStatus(const Conn& c, absl::string_view op) {
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

void Streams::Receive(uint64_t attachment, size_t max_bytes, uint64_t token,
                      Done<absl::StatusOr<StreamChunk>> done) {
  engine_.AssertEngineLock();
  Attachment* a = Find(attachment);
  if (a == nullptr) {
    done(DetachedError());
    return;
  }
  ReceiveSpec spec;
  spec.max_bytes = max_bytes;
  spec.wait = absl::InfiniteDuration();
  a->receive_token = token;
  const uint64_t num = a->conn_num;
  engine_.receiver_.Receive(
      ConnId(num), spec, token,
      [this, attachment, num,
       done = std::move(done)](absl::StatusOr<ReceiveResult> r) mutable {
        engine_.AssertEngineLock();
        if (Attachment* att = Find(attachment)) {
          att->receive_token = 0;
        }
        const Conn* c = engine_.registry_.FindConn(num);
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

void Streams::Send(uint64_t attachment, std::string data,
                   Done<absl::Status> done) {
  engine_.AssertEngineLock();
  Attachment* a = nullptr;
  Conn* c = AttachedConn(attachment, &a);
  if (c == nullptr) {
    done(DetachedError());
    return;
  }
  if (a->waiting.has_value()) {
    done(absl::FailedPreconditionError(
        absl::StrCat("stream ", ConnId(c->num),
                     ": the previous chunk is still waiting for room")));
    return;
  }
  if (data.size() > engine_.options_.max_send_bytes) {
    done(absl::InvalidArgumentError(
        absl::StrCat("stream ", ConnId(c->num), ": a chunk of ", data.size(),
                     " bytes is above max_send_bytes (",
                     engine_.options_.max_send_bytes, ")")));
    return;
  }
  if (data.empty() && c->transport != Transport::kUdp) {
    done(absl::OkStatus());  // Nothing to write; not a datagram either.
    return;
  }
  a->waiting = std::move(data);
  a->waiting_done = std::move(done);
  Pump(*c);
}

void Streams::Pump(Conn& c) {
  engine_.AssertEngineLock();
  if (c.extra == nullptr || c.extra->attachment == 0) return;
  Attachment* a = Find(c.extra->attachment);
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
    const uint64_t bound = engine_.options_.send_buffer_bytes;
    const uint64_t held = SendCharge(c);
    const uint64_t cost =
        size + (c.transport == Transport::kUdp ? kDatagramOverheadBytes : 0);
    // Wait while the own buffer is too full, or while the agent-wide bound
    // is and this connection's draining will free some of it. An empty
    // buffer always takes one chunk (QueueSend still checks the agent-wide
    // bound then).
    if (held > 0 &&
        (held + cost > bound || cost > engine_.ledger_.budget().Room()))
      return;
  }
  std::string data = std::move(*a->waiting);
  a->waiting.reset();
  Done<absl::Status> done = std::move(a->waiting_done);
  a->waiting_done = nullptr;
  if (closed) {
    done(ClosedStatus(c, "stream"));
    return;
  }
  done(
      engine_.conn_io_.QueueSend(c, std::move(data), /*stream=*/true).status());
}

void Streams::ShutdownWrite(uint64_t attachment, Done<absl::Status> done) {
  engine_.AssertEngineLock();
  Attachment* a = nullptr;
  Conn* c = AttachedConn(attachment, &a);
  if (c == nullptr) {
    done(DetachedError());
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
  engine_.conn_io_.ShutdownWrite(
      *c);  // Flushes; SendFin (or a close) completes fin_done.
  if (Conn* still = engine_.registry_.FindConn(a->conn_num)) Pump(*still);
}

void Streams::Detach(uint64_t attachment) {
  engine_.AssertEngineLock();
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
  Conn* c = engine_.registry_.FindConn(a.conn_num);
  if (c == nullptr) return;
  if (c->extra != nullptr && c->extra->attachment == attachment) {
    c->extra->attachment = 0;
  }
  // A parked StreamReceive answers now (empty): the caller is going away.
  if (c->receive != nullptr && c->receive->token == a.receive_token) {
    engine_.receiver_.Complete(*c);
  }
  if (a.close_on_detach && c->state != ConnectionState::kClosed) {
    engine_.closer_.StartClose(*c, CloseReason::kStreamEnded, "",
                               /*abort=*/false);
  }
}

}  // namespace engine_internal
}  // namespace sockagent
