// The engine's Receive path (agent/receiver.h).
#include "agent/receiver.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "agent/engine_impl.h"

namespace sockagent {
namespace engine_internal {
namespace {

constexpr size_t kDefaultReceiveBytes = 64 * 1024;

}  // namespace

void Receiver::Receive(absl::string_view id, const ReceiveSpec& spec,
                       uint64_t token, Done<absl::StatusOr<ReceiveResult>> done,
                       uint64_t attachment) {
  engine_.AssertEngineLock();
  absl::StatusOr<Conn*> found = engine_.registry_.LookupConn(id);
  if (!found.ok()) {
    done(found.status());
    return;
  }
  Conn& c = **found;
  if (c.behavior == BehaviorKind::kProxy)
    return done(ProxiedRefusal(c, "receive"));
  if (c.extra != nullptr && c.extra->attachment != attachment) {
    done(absl::FailedPreconditionError(
        absl::StrCat("receive ", id,
                     ": a Stream is attached to it and receives its bytes")));
    return;
  }
  // Its caller went away (gRPC's OnCancel may run later, on another
  // thread): it must not block this one.
  if (c.receive != nullptr && CallerGone(*c.receive)) Complete(c);
  if (c.receive != nullptr) {
    if (attachment != 0) {
      done(absl::FailedPreconditionError(absl::StrCat(
          "receive ", id, ": another Receive is already waiting")));
      return;
    }
    Contend(c, spec, token, std::move(done));
    return;
  }
  const absl::Duration wait = std::min(spec.wait, spec.deadline - absl::Now());
  size_t scanned = 0;
  if (Ready(c, spec, &scanned) || wait <= absl::ZeroDuration()) {
    done(Take(c, spec));
    return;
  }
  auto pending = std::make_unique<PendingReceive>();
  pending->token = token;
  pending->spec = spec;
  pending->done = std::move(done);
  pending->scanned = scanned;
  pending->timer = std::make_unique<Timer>(engine_.io_, ToSteady(wait));
  pending->timer->async_wait(
      engine_.Locked([this, num = c.num, token](const asio::error_code& ec) {
        engine_.AssertEngineLock();
        if (!ec) OnTimer(num, token);
      }));
  c.receive = std::move(pending);
  tokens_[token] = c.num;
}

bool Receiver::Ready(const Conn& c, const ReceiveSpec& spec,
                     size_t* scanned) const {
  if (c.reading.eof || c.state == ConnectionState::kClosed) return true;
  if (c.transport == Transport::kUdp) return c.has_datagrams();
  return ReadyBytes(c, spec, scanned) > 0;
}

size_t Receiver::ReadyBytes(const Conn& c, const ReceiveSpec& spec,
                            size_t* scanned) const {
  const size_t buffered = c.recv_bytes.size();
  if (buffered == 0) return 0;
  const size_t max = std::min<uint64_t>(
      spec.max_bytes == 0 ? kDefaultReceiveBytes : spec.max_bytes,
      engine_.options_.max_receive_bytes);
  const bool closing = c.reading.eof || c.state == ConnectionState::kClosed;
  // Never wait for more than the receive buffer can hold: reading pauses
  // there, so the condition could not be met. The same once reading
  // stopped at the agent-wide bound: nothing more comes until bytes are
  // taken.
  const size_t cap =
      c.reading.paused && c.reading.total_paused
          ? buffered
          : std::min<uint64_t>(max, engine_.options_.recv_buffer_bytes);
  if (!spec.delimiter.empty()) {
    const size_t end =
        c.recv_bytes.FindEnd(spec.delimiter, scanned ? *scanned : 0, max);
    if (end != std::string::npos) return end;
    if (scanned != nullptr) {
      const size_t searched = std::min(buffered, max);
      const size_t overlap = spec.delimiter.size() - 1;
      *scanned = searched > overlap ? searched - overlap : 0;
    }
    return buffered >= cap || closing ? std::min(buffered, max) : 0;
  }
  const size_t need = std::max<size_t>(1, std::min(spec.min_bytes, cap));
  return buffered >= need || closing ? std::min(buffered, max) : 0;
}

absl::StatusOr<ReceiveResult> Receiver::Take(Conn& c, const ReceiveSpec& spec) {
  engine_.AssertEngineLock();
  const size_t max = std::min<uint64_t>(
      spec.max_bytes == 0 ? kDefaultReceiveBytes : spec.max_bytes,
      engine_.options_.max_receive_bytes);
  ReceiveResult result;
  bool got = false;
  if (c.transport == Transport::kUdp) {
    const SocketAddress peer = c.remote.Unpack();
    size_t bytes = 0;
    while (c.has_datagrams()) {
      Fifo<ReceivedDatagram>& queue = c.extra->recv_datagrams;
      if (spec.max_datagrams != 0 &&
          result.datagrams.size() >= spec.max_datagrams) {
        break;
      }
      ReceivedDatagram& d = queue.front();
      // Always at least one whole datagram, however large. Each costs its
      // overhead too, so empty ones cannot make an answer unbounded.
      const size_t cost = d.data.size() + kDatagramOverheadBytes;
      if (!result.datagrams.empty() && bytes + cost > max) break;
      bytes += cost;
      c.counters.recv_buffered -= d.data.size();
      result.datagrams.push_back(
          DatagramInfo{std::move(d.data), peer, d.received_at});
      queue.pop_front();
    }
    got = !result.datagrams.empty();
    engine_.ledger_.Recharge(c);
  } else {
    // With min_bytes or a delimiter unmet (the wait ended), nothing is
    // taken.
    const bool conditional = spec.min_bytes > 1 || !spec.delimiter.empty();
    result.data =
        c.recv_bytes.Take(conditional ? ReadyBytes(c, spec, nullptr) : max);
    c.counters.recv_buffered = c.recv_bytes.size();
    engine_.ledger_.Recharge(c);
    got = !result.data.empty();
    if (got) engine_.conn_io_.ResumeReading(c);
  }
  result.recv_buffered = c.counters.recv_buffered;
  const bool drained = result.recv_buffered == 0;
  if (got) {
    result.end_of_stream = drained && c.reading.eof;
    return result;
  }
  if (c.state == ConnectionState::kClosed) {
    const std::string id = ConnId(c.num);
    const std::string detail =
        c.extra != nullptr ? c.extra->close_detail : std::string();
    if (c.extra != nullptr && c.extra->history_discarded > 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "receive ", id, ": connection is closed (",
          CloseReasonText(c.close_reason), ") and its ",
          c.extra->history_discarded,
          " unreceived bytes were discarded: closed connections keep at most ",
          engine_.options_.max_total_buffered_bytes / 4,
          " bytes in all (a quarter of max_total_buffered_bytes)"));
    }
    switch (c.close_reason) {
      case CloseReason::kPeerClosed:
        result.end_of_stream = true;
        return result;
      case CloseReason::kPeerReset:
        return absl::AbortedError(
            absl::StrCat("receive ", id, ": ",
                         detail.empty() ? "connection reset by peer" : detail));
      case CloseReason::kAgentShutdown:
        return ShuttingDownError();
      case CloseReason::kError:
        return absl::UnavailableError(
            absl::StrCat("receive ", id, ": ", detail));
      default:
        return absl::FailedPreconditionError(
            absl::StrCat("receive ", id, ": connection is closed (",
                         CloseReasonText(c.close_reason), ")"));
    }
  }
  result.end_of_stream = c.reading.eof;
  return result;
}

bool Receiver::CallerGone(const PendingReceive& pending) {
  return pending.spec.caller_gone != nullptr && pending.spec.caller_gone();
}

void Receiver::Contend(Conn& c, const ReceiveSpec& spec, uint64_t token,
                       Done<absl::StatusOr<ReceiveResult>> done) {
  PendingReceive& parked = *c.receive;
  if (parked.next != nullptr) {
    done(absl::FailedPreconditionError(absl::StrCat(
        "receive ", ConnId(c.num), ": another Receive is already waiting")));
    return;
  }
  const absl::Time now = absl::Now();
  auto next = std::make_unique<ContendingReceive>();
  next->token = token;
  next->spec = spec;
  next->arrived = now;
  next->done = std::move(done);
  const absl::Duration give_way = std::max(
      absl::ZeroDuration(), std::min(kReceiveGiveWay, spec.deadline - now));
  next->timer = std::make_unique<Timer>(engine_.io_, ToSteady(give_way));
  next->timer->async_wait(
      engine_.Locked([this, num = c.num, token](const asio::error_code& ec) {
        engine_.AssertEngineLock();
        if (!ec) OnGiveWayTimer(num, token);
      }));
  parked.next = std::move(next);
  tokens_[token] = c.num;
}

void Receiver::OnGiveWayTimer(uint64_t num, uint64_t token) {
  engine_.AssertEngineLock();
  Conn* c = engine_.registry_.FindConn(num);
  if (c == nullptr || c->receive == nullptr || c->receive->next == nullptr ||
      c->receive->next->token != token) {
    return;
  }
  std::unique_ptr<ContendingReceive> next = std::move(c->receive->next);
  tokens_.erase(token);
  next->done(absl::FailedPreconditionError(absl::StrCat(
      "receive ", ConnId(num), ": another Receive is already waiting")));
}

void Receiver::Notify(Conn& c) {
  if (c.receive != nullptr && Ready(c, c.receive->spec, &c.receive->scanned)) {
    Complete(c);
  }
}

void Receiver::Complete(Conn& c) {
  std::unique_ptr<PendingReceive> pending = std::move(c.receive);
  if (pending == nullptr) return;
  tokens_.erase(pending->token);
  if (pending->timer != nullptr) pending->timer->cancel();
  std::unique_ptr<ContendingReceive> next = std::move(pending->next);
  if (CallerGone(*pending)) {
    // Nobody would read the answer: leave the bytes for the next Receive.
    pending->done(absl::CancelledError(
        absl::StrCat("receive ", ConnId(c.num), ": the caller went away")));
  } else {
    pending->done(Take(c, pending->spec));
  }
  if (next == nullptr) return;
  // The Receive that waited for this one takes its place, with what is
  // left of its wait.
  next->timer->cancel();
  tokens_.erase(next->token);
  ReceiveSpec spec = next->spec;
  spec.wait -= absl::Now() - next->arrived;
  Receive(ConnId(c.num), spec, next->token, std::move(next->done));
}

void Receiver::OnTimer(uint64_t num, uint64_t token) {
  engine_.AssertEngineLock();
  Conn* c = engine_.registry_.FindConn(num);
  if (c == nullptr || c->receive == nullptr || c->receive->token != token) {
    return;
  }
  Complete(*c);
}

void Receiver::Cancel(uint64_t token) {
  engine_.AssertEngineLock();
  auto it = tokens_.find(token);
  if (it == tokens_.end()) return;
  Conn* c = engine_.registry_.FindConn(it->second);
  if (c == nullptr || c->receive == nullptr) return;
  if (c->receive->token == token) {
    Complete(*c);
    return;
  }
  if (c->receive->next != nullptr && c->receive->next->token == token) {
    std::unique_ptr<ContendingReceive> next = std::move(c->receive->next);
    tokens_.erase(token);
    next->timer->cancel();
    next->done(absl::CancelledError(
        absl::StrCat("receive ", ConnId(c->num), ": the caller went away")));
  }
}

}  // namespace engine_internal
}  // namespace sockagent
