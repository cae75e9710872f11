// Faults acting on the engine's connections (agent/fault_stage.h).
#include "agent/fault_stage.h"

#include <chrono>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "agent/engine_impl.h"
#include "agent/quote.h"

namespace sockagent {
namespace engine_internal {

absl::Status FaultStage::CheckTarget(const FaultSpec& spec) {
  engine_.AssertEngineLock();
  const FaultTarget& target = spec.target;
  // A fault for the other kind of socket could never act on its target.
  auto mismatch = [&spec](Transport transport, const std::string& what) {
    const bool udp = transport == Transport::kUdp;
    if (udp == IsDatagramFault(spec.type)) return absl::OkStatus();
    return absl::FailedPreconditionError(
        absl::StrCat("fault.", FaultTypeName(spec.type), ": ", what, " is ",
                     udp ? "UDP" : "a stream (TCP or UNIX)", "; ",
                     udp ? "UDP takes drop, duplicate and delay"
                         : "drop, duplicate and delay are for UDP"));
  };
  if (!target.server_id.empty()) {
    std::optional<uint64_t> num = ParseId(target.server_id, "srv-");
    if (!num.has_value()) {
      return absl::InvalidArgumentError(
          absl::StrCat("fault.target.server_id: malformed server id ",
                       QuoteInput(target.server_id), " (expected srv-N)"));
    }
    const Server* server = engine_.registry_.FindServer(*num);
    if (server == nullptr) {
      return absl::NotFoundError(absl::StrCat(
          "fault target: server ", QuoteInput(target.server_id), " not found"));
    }
    if (absl::Status s =
            mismatch(server->info.transport, "server " + target.server_id);
        !s.ok()) {
      return s;
    }
  }
  if (!target.connection_id.empty()) {
    std::optional<uint64_t> num = ParseId(target.connection_id, "conn-");
    if (!num.has_value()) {
      return absl::InvalidArgumentError(
          absl::StrCat("fault.target.connection_id: malformed connection id ",
                       QuoteInput(target.connection_id), " (expected conn-N)"));
    }
    const Conn* c = engine_.registry_.FindConn(*num);
    if (c == nullptr) {
      return absl::NotFoundError(absl::StrCat("fault target: connection ",
                                              QuoteInput(target.connection_id),
                                              " not found"));
    }
    if (absl::Status s =
            mismatch(c->transport, "connection " + target.connection_id);
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

bool FaultStage::Matches(const FaultSpec& spec, const Conn& c) const {
  // Stream faults on stream sockets, plain or TLS (they act on the
  // plaintext: the SEND stage before SSL_write, the RECEIVE stage after
  // SSL_read); UDP faults on UDP clients and peer sessions.
  if (c.finalized || c.state == ConnectionState::kClosed) return false;
  if (IsDatagramFault(spec.type)) {
    if (c.transport != Transport::kUdp) return false;
  } else if (c.stream == nullptr) {
    return false;
  }
  switch (spec.direction) {
    // Toward the upstream: what the agent sends on connections it dialled
    // (OpenClient, a proxy's upstream half); toward the downstream: on
    // connections it accepted.
    case FaultDirection::kUpstream:
      if (c.origin != Origin::kOpened && c.origin != Origin::kProxyUpstream) {
        return false;
      }
      break;
    case FaultDirection::kDownstream:
      if (c.origin == Origin::kOpened || c.origin == Origin::kProxyUpstream) {
        return false;
      }
      break;
    case FaultDirection::kSent:
    case FaultDirection::kReceived:
      break;
  }
  const FaultTarget& t = spec.target;
  if (!t.server_id.empty()) {
    return c.server_num != 0 && ParseId(t.server_id, "srv-") == c.server_num;
  }
  if (!t.connection_id.empty()) {
    return ParseId(t.connection_id, "conn-") == c.num;
  }
  return LabelsMatch(c.labels, t.selector);
}

void FaultStage::ApplyMatching(Conn& c) {
  engine_.AssertEngineLock();
  if (table_.size() == 0) return;
  for (auto& [id, info] : table_.faults()) {
    if (Matches(info.spec, c)) Apply(c, id, info);
  }
}

void FaultStage::Apply(Conn& c, uint64_t id, FaultInfo& info) {
  engine_.AssertEngineLock();
  if (!RollToxicity(info.spec.toxicity, info.spec.seed, info.spec.name,
                    c.num)) {
    ++info.skipped;
    return;
  }
  ConnExtra& x = c.Extra();
  if (x.faults == nullptr) x.faults = std::make_unique<ConnFaults>();
  const int64_t now = SteadyNowNs();
  ActiveFault f;
  f.fault_id = id;
  f.spec = info.spec;
  f.applied_ns = now;
  f.random = FaultRandom(MixSeed(info.spec.seed, info.spec.name, c.num));
  ++info.connections;
  ++info.applied;
  if (IsDatagramFault(info.spec.type)) {
    // Acts on the next datagram.
    (info.spec.direction == FaultDirection::kReceived
         ? x.faults->received_datagrams
         : x.faults->datagrams)
        .Add(std::move(f));
    engine_.Emit(EventKind::kFaultApplied, c.server_num, c.num, 0, {},
                 info.spec.name);
    return;
  }
  engine_.Emit(EventKind::kFaultApplied, c.server_num, c.num, 0, {},
               info.spec.name);
  if (info.spec.direction == FaultDirection::kReceived) {
    x.faults->receive.Add(
        std::move(f), x.faults->receive.written() + x.faults->received.size(),
        now);
    ReleaseReceived(c);  // Starts its clock (reset_peer, timeout).
    return;
  }
  x.faults->send.Add(std::move(f),
                     x.faults->send.written() + c.send_bytes.size(), now);
  engine_.conn_io_.Flush(
      c);  // Starts its clock (reset_peer, timeout) and holds what waits.
}

bool FaultStage::Idle(const ConnFaults& f) {
  return f.send.empty() && f.receive.empty() && f.received.empty() &&
         f.datagrams.empty() && f.datagrams.held() == 0 &&
         f.received_datagrams.empty() && f.received_datagrams.held() == 0;
}

void FaultStage::RemoveFrom(Conn& c, uint64_t id) {
  engine_.AssertEngineLock();
  if (c.extra == nullptr || c.extra->faults == nullptr) return;
  ConnFaults& f = *c.extra->faults;
  if (f.received_datagrams.Remove(id)) {
    // The last delay gone: what it held reaches the behaviour now.
    if (!f.received_datagrams.has_delay()) {
      ReleaseReceivedDatagrams(c, /*all=*/true);
    }
    if (c.extra != nullptr && c.extra->faults != nullptr && Idle(f)) {
      c.extra->faults.reset();
    }
    return;
  }
  if (f.datagrams.Remove(id)) {
    // The last delay gone: what it held leaves now, nothing lost.
    if (!f.datagrams.has_delay()) ReleaseHeld(c, /*all=*/true);
    if (c.extra != nullptr && c.extra->faults != nullptr && Idle(f)) {
      c.extra->faults.reset();
    }
    return;
  }
  if (f.receive.Remove(id)) {
    // What it held goes to the behaviour now, in order, then a held FIN.
    ReleaseReceived(c);
    if (c.extra != nullptr && c.extra->faults != nullptr && Idle(f) &&
        !c.reading.fin_held) {
      c.extra->faults.reset();
    }
    return;
  }
  if (!f.send.Remove(id)) return;
  if (Idle(f)) c.extra->faults.reset();
  engine_.conn_io_.Flush(c);  // What it held leaves now, in order.
}

void FaultStage::Drop(Conn& c) {
  engine_.AssertEngineLock();
  if (c.extra == nullptr || c.extra->faults == nullptr) return;
  ConnFaults& cf = *c.extra->faults;
  for (const auto* stage :
       {&cf.send.faults(), &cf.receive.faults(), &cf.datagrams.faults(),
        &cf.received_datagrams.faults()}) {
    for (const ActiveFault& f : *stage) {
      FaultInfo* info = table_.Find(f.fault_id);
      if (info != nullptr && info->connections > 0) --info->connections;
    }
  }
  // Held datagrams die with the connection. (Finalize counted a client's
  // whole send buffer as lost already; a peer session keeps what sits in
  // its server's queue, so only the held part is lost.)
  const uint64_t held = cf.datagrams.held_bytes();
  if (c.is_udp_session() && held > 0) {
    c.counters.send_bytes_lost += held;
    c.counters.send_buffered -= std::min(held, c.counters.send_buffered);
  }
  c.extra->faults.reset();
}

void FaultStage::DiscardQueued(Conn& c) {
  engine_.AssertEngineLock();
  c.counters.send_bytes_lost += c.send_bytes.size();
  c.send_bytes.Clear();
  c.counters.send_buffered = 0;
  engine_.ledger_.Recharge(c);
}

void FaultStage::ArmTimer(Conn& c, int64_t due_ns) {
  engine_.AssertEngineLock();
  if (due_ns == 0 || c.finalized || c.extra == nullptr ||
      c.extra->faults == nullptr) {
    return;
  }
  ConnFaults& f = *c.extra->faults;
  if (f.timer_due_ns != 0 && f.timer_due_ns <= due_ns) return;
  if (f.timer == nullptr) f.timer = std::make_unique<Timer>(engine_.io_);
  f.timer->expires_at(Timer::time_point(std::chrono::nanoseconds(due_ns)));
  f.timer_due_ns = due_ns;
  f.timer->async_wait(
      engine_.Locked([this, num = c.num](const asio::error_code& ec) {
        engine_.AssertEngineLock();
        if (!ec) OnTimer(num);
      }));
}

void FaultStage::OnTimer(uint64_t num) {
  engine_.AssertEngineLock();
  Conn* c = engine_.registry_.FindConn(num);
  if (c == nullptr || c->finalized || c->extra == nullptr ||
      c->extra->faults == nullptr) {
    return;
  }
  c->extra->faults->timer_due_ns = 0;
  if (c->transport == Transport::kUdp) {
    ReleaseHeld(*c, /*all=*/false);
    if (c->finalized || c->extra == nullptr || c->extra->faults == nullptr) {
      return;
    }
    ReleaseReceivedDatagrams(*c, /*all=*/false);
    return;
  }
  DecideBoth(*c);
}

bool FaultStage::Act(Conn& c, SendStage::Decision& d, bool keep_received) {
  engine_.AssertEngineLock();
  if (d.action == SendStage::Action::kReset) {
    engine_.closer_.StartClose(c, CloseReason::kLocalAbort, std::move(d.why),
                               /*abort=*/true);
    return true;
  }
  if (d.action == SendStage::Action::kClose &&
      c.state != ConnectionState::kClosed) {
    engine_.closer_.StartClose(c, CloseReason::kLocalClose, std::move(d.why),
                               /*abort=*/false, keep_received);
    return true;
  }
  return false;
}

void FaultStage::DecideBoth(Conn& c) {
  engine_.AssertEngineLock();
  // Each stage arms the shared timer for its own next look; the earlier
  // one wins.
  engine_.conn_io_.Flush(c);
  if (c.finalized || c.extra == nullptr || c.extra->faults == nullptr) return;
  ReleaseReceived(c);
}

bool FaultStage::HoldDatagram(Conn& c, const char* data, size_t n) {
  engine_.AssertEngineLock();
  ConnFaults& f = *c.extra->faults;
  if (f.received_datagrams.empty()) return false;
  const DatagramStage::Verdict v = f.received_datagrams.Decide(SteadyNowNs());
  ConnExtra& x = *c.extra;
  if (v.copies == 0) {
    ++x.fault_dropped;
    engine_.Emit(EventKind::kDatagramDropped, c.server_num, c.num, n, {},
                 absl::StrCat("fault ", v.dropped_by->spec.name, ": drop"));
    return true;
  }
  if (v.copies == 2) ++x.fault_duplicated;
  if (v.due_ns == 0) {
    for (int i = 0; i < v.copies; ++i) {
      engine_.udp_.Deliver(c, data, n);
      if (c.finalized) break;
    }
    return true;
  }
  // Held: charged like a buffered datagram, against the connection's
  // receive buffer and the agent-wide total; beyond them it is dropped as
  // a full receive buffer drops it.
  const uint64_t cost = (n + kDatagramOverheadBytes) * v.copies;
  if (!engine_.udp_.RoomToReceive(c, cost, n)) return true;
  ++x.fault_delayed;
  if (v.copies == 2) f.received_datagrams.Hold(v.due_ns, std::string(data, n));
  f.received_datagrams.Hold(v.due_ns, std::string(data, n));
  engine_.ledger_.Recharge(c);
  ArmTimer(c, f.received_datagrams.next_due_ns());
  return true;
}

void FaultStage::ReleaseReceivedDatagrams(Conn& c, bool all) {
  engine_.AssertEngineLock();
  ConnFaults& f = *c.extra->faults;
  std::vector<std::string> due =
      f.received_datagrams.TakeDue(SteadyNowNs(), all);
  engine_.ledger_.Recharge(c);
  for (const std::string& d : due) {
    engine_.udp_.Deliver(c, d.data(), d.size());
    if (c.finalized || c.extra == nullptr || c.extra->faults == nullptr) {
      return;
    }
  }
  ArmTimer(c, f.received_datagrams.next_due_ns());
}

bool FaultStage::HoldReceived(Conn& c, const char* data, size_t n) {
  engine_.AssertEngineLock();
  ConnFaults& f = *c.extra->faults;
  if (f.receive.empty() && f.received.empty()) return false;
  f.received.Append(absl::string_view(data, n));
  engine_.ledger_.Recharge(c);
  ReleaseReceived(c);
  return true;
}

bool FaultStage::HoldFin(Conn& c) {
  engine_.AssertEngineLock();
  ConnFaults& f = *c.extra->faults;
  if (c.reading.fin_held) return true;
  if (f.receive.empty() && f.received.empty()) return false;
  int64_t wake = 0;
  // Asked first: slow_close counts its delay from the FIN's arrival.
  const bool allowed = f.receive.FinAllowed(SteadyNowNs(), &wake);
  if (allowed && f.received.empty()) return false;
  c.reading.fin_held = true;
  ArmTimer(c, wake);
  return true;
}

void FaultStage::ReleaseReceived(Conn& c) {
  engine_.AssertEngineLock();
  ConnFaults& f = *c.extra->faults;
  int64_t wake = 0;
  for (;;) {
    const int64_t now = SteadyNowNs();
    SendStage::Decision d =
        f.receive.Decide(f.receive.written() + f.received.size(), now);
    wake = d.wake_ns;
    if (d.discard && !f.received.empty()) {
      // timeout and limit_data: what was read is dropped, as a network
      // that loses it would; counted as received on the wire.
      c.counters.bytes_received += f.received.size();
      f.received.Clear();
      engine_.ledger_.Recharge(c);
    }
    // limit_data: the reader keeps the N bytes it was given.
    if (Act(c, d, /*keep_received=*/true)) return;  // `f` may be gone.
    if (f.received.empty() || d.allowed == 0) break;
    // A copy: delivery may end the connection, and `f` with it.
    const std::string chunk =
        f.received.Take(std::min<uint64_t>(d.allowed, engine_.scratch_.size()));
    f.receive.Wrote(chunk.size(), now);
    engine_.ledger_.Recharge(c);
    engine_.conn_io_.DeliverNow(c, chunk.data(), chunk.size());
    if (c.finalized || c.extra == nullptr || c.extra->faults == nullptr) {
      return;
    }
  }
  ArmTimer(c, wake);
  engine_.conn_io_.ResumeReading(c);
  if (c.finalized || !c.reading.fin_held || !f.received.empty()) return;
  int64_t fin_wake = 0;
  if (!f.receive.FinAllowed(SteadyNowNs(), &fin_wake)) {
    ArmTimer(c, fin_wake);
    return;
  }
  c.reading.fin_held = false;  // HoldFin lets it through now.
  engine_.conn_io_.OnPeerFin(c);
  if (!c.finalized) engine_.conn_io_.ArmRead(c);  // Watches for a reset.
}

absl::Status FaultStage::SendDatagram(Conn& c, std::string data) {
  engine_.AssertEngineLock();
  ConnFaults& f = *c.extra->faults;
  const int64_t now = SteadyNowNs();
  DatagramStage::Verdict v = f.datagrams.Decide(now);
  ConnExtra& x = *c.extra;
  if (v.copies == 0) {
    ++x.fault_dropped;
    engine_.Emit(EventKind::kDatagramDropped, c.server_num, c.num, data.size(),
                 {}, absl::StrCat("fault ", v.dropped_by->spec.name, ": drop"));
    return absl::OkStatus();  // A network loses datagrams silently.
  }
  if (v.copies == 2) ++x.fault_duplicated;
  if (v.due_ns == 0) {
    if (v.copies == 2) {
      if (absl::Status s = engine_.udp_.SendNow(c, data); !s.ok()) return s;
    }
    return engine_.udp_.SendNow(c, std::move(data));
  }
  // Held: charged like a queued datagram, against the connection's send
  // buffer and the agent-wide total.
  const uint64_t size = data.size();
  const uint64_t cost = (size + kDatagramOverheadBytes) * v.copies;
  if (SendCharge(c) + cost > engine_.options_.send_buffer_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "send ", ConnId(c.num), ": send buffer full: ", f.datagrams.held(),
        " datagrams held by a delay fault; one more would exceed "
        "send_buffer_bytes (",
        engine_.options_.send_buffer_bytes, ")"));
  }
  if (absl::Status s = engine_.ledger_.budget().CheckRoom(
          absl::StrCat("send ", ConnId(c.num)), cost);
      !s.ok()) {
    return s;
  }
  ++x.fault_delayed;
  if (v.copies == 2) f.datagrams.Hold(v.due_ns, data);
  f.datagrams.Hold(v.due_ns, std::move(data));
  c.counters.send_buffered += size * v.copies;
  c.counters.send_buffered_peak =
      std::max(c.counters.send_buffered_peak, c.counters.send_buffered);
  engine_.ledger_.Recharge(c);
  ArmTimer(c, f.datagrams.next_due_ns());
  return absl::OkStatus();
}

void FaultStage::ReleaseHeld(Conn& c, bool all) {
  engine_.AssertEngineLock();
  ConnFaults& f = *c.extra->faults;
  std::vector<std::string> due = f.datagrams.TakeDue(SteadyNowNs(), all);
  for (std::string& d : due) {
    c.counters.send_buffered -=
        std::min<uint64_t>(d.size(), c.counters.send_buffered);
  }
  engine_.ledger_.Recharge(c);
  for (std::string& d : due) {
    const uint64_t size = d.size();
    // Sent as it would have been without the fault (queued if the socket
    // is full); a failure loses it, as a network would.
    if (!engine_.udp_.SendNow(c, std::move(d)).ok()) {
      c.counters.send_bytes_lost += size;
    }
    if (c.finalized || c.extra == nullptr || c.extra->faults == nullptr) {
      return;
    }
  }
  f.timer_due_ns = 0;
  ArmTimer(c, f.datagrams.next_due_ns());
}

void FaultStage::Flush(Conn& c) {
  engine_.AssertEngineLock();
  ConnFaults& f = *c.extra->faults;
  int64_t wake = 0;
  for (;;) {
    const int64_t now = SteadyNowNs();
    SendStage::Decision d =
        f.send.Decide(f.send.written() + c.send_bytes.size(), now);
    wake = d.wake_ns;
    if (d.discard && !c.send_bytes.empty()) DiscardQueued(c);
    // A graceful close runs this Flush again inside and sends the FIN.
    if (Act(c, d)) return;  // `f` may be gone with the connection.
    if (c.send_bytes.empty() || d.allowed == 0) break;
    const size_t before = c.send_bytes.size();
    const ConnIo::WriteOutcome outcome =
        engine_.conn_io_.WriteSome(c, d.allowed);
    if (outcome == ConnIo::WriteOutcome::kFailed) return;
    f.send.Wrote(before - c.send_bytes.size(), now);
    if (outcome == ConnIo::WriteOutcome::kBlocked) {
      ArmTimer(c, wake);  // reset_peer and timeout keep their time.
      return;
    }
  }
  ArmTimer(c, wake);
  engine_.conn_io_.ResumeReading(c);
  if (c.behavior == BehaviorKind::kProxy) engine_.proxy_.Drained(c);
  if (c.writing.fin_wanted && !c.writing.fin_sent && c.send_bytes.empty()) {
    int64_t fin_wake = 0;
    if (f.send.FinAllowed(SteadyNowNs(), &fin_wake)) {
      engine_.conn_io_.SendFin(c);
    } else {
      ArmTimer(c, fin_wake);
    }
  }
  engine_.streams_.Pump(c);
}

absl::StatusOr<FaultInfo> FaultStage::Add(FaultSpec spec) {
  engine_.AssertEngineLock();
  if (absl::Status s = ValidateFaultSpec(spec); !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckTarget(spec); !s.ok()) {
    return s;
  }
  uint64_t id = 0;
  auto added = table_.Add(std::move(spec), absl::Now(), &id);
  if (!added.ok()) {
    return added.status();
  }
  FaultInfo& info = *table_.Find(id);
  engine_.Emit(EventKind::kFaultAdded, 0, 0, 0, {}, info.spec.name);
  // Applying may close connections (reset_peer 0): no erasure happens
  // while iterating (trimming is posted).
  for (auto& [num, conn] : engine_.registry_.conns()) {
    if (Matches(info.spec, *conn)) Apply(*conn, id, info);
  }
  return info;
}

absl::StatusOr<FaultInfo> FaultStage::Update(FaultSpec spec) {
  engine_.AssertEngineLock();
  uint64_t id = 0;
  // Validated with the stored target (an update does not move a fault).
  bool known = false;
  for (const auto& [fid, info] : table_.faults()) {
    if (info.spec.name != spec.name) continue;
    spec.target = info.spec.target;
    known = true;
  }
  if (!known) {
    return absl::NotFoundError(
        absl::StrCat("fault ", QuoteInput(spec.name), " not found"));
  }
  for (const auto& [fid, info] : table_.faults()) {
    if (info.spec.name == spec.name &&
        IsDatagramFault(info.spec.type) != IsDatagramFault(spec.type)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "fault.", FaultTypeName(spec.type), ": fault ", spec.name, " is ",
          IsDatagramFault(info.spec.type) ? "a UDP" : "a stream",
          " fault; an update keeps the kind (remove it and add a new one)"));
    }
  }
  if (absl::Status s = ValidateFaultSpec(spec); !s.ok()) {
    return s;
  }
  auto updated = table_.Update(spec, absl::Now(), &id);
  if (!updated.ok()) {
    return updated.status();
  }
  FaultInfo& info = *table_.Find(id);
  const int64_t now = SteadyNowNs();
  for (auto& [num, conn] : engine_.registry_.conns()) {
    Conn& c = *conn;
    ConnFaults* cf = c.extra != nullptr ? c.extra->faults.get() : nullptr;
    bool has = false;
    bool in_receive = false;
    if (cf != nullptr) {
      for (const auto* stage :
           {&cf->send.faults(), &cf->receive.faults(), &cf->datagrams.faults(),
            &cf->received_datagrams.faults()}) {
        for (const ActiveFault& f : *stage) {
          if (f.fault_id != id) continue;
          has = true;
          in_receive = stage == &cf->receive.faults() ||
                       stage == &cf->received_datagrams.faults();
        }
      }
    }
    const bool want =
        Matches(info.spec, c) &&
        RollToxicity(info.spec.toxicity, info.spec.seed, info.spec.name, c.num);
    const bool moves =
        has && in_receive != (info.spec.direction == FaultDirection::kReceived);
    if (has && (moves || !want)) {
      // Gone from this connection, or to its other stage: what the old
      // stage held goes on now, then the new one applies afresh.
      if (info.connections > 0) --info.connections;
      RemoveFrom(c, id);
      if (moves && want && !c.finalized) Apply(c, id, info);
      continue;
    }
    if (has && want) {
      ActiveFault f;
      f.fault_id = id;
      f.spec = info.spec;
      f.applied_ns = now;
      f.random = FaultRandom(MixSeed(info.spec.seed, info.spec.name, c.num));
      if (IsDatagramFault(info.spec.type)) {
        // Held datagrams keep their time.
        if (in_receive) {
          cf->received_datagrams.Add(std::move(f));
          if (!cf->received_datagrams.has_delay()) {
            ReleaseReceivedDatagrams(c, /*all=*/true);
          }
        } else {
          cf->datagrams.Add(std::move(f));
          if (!cf->datagrams.has_delay()) ReleaseHeld(c, /*all=*/true);
        }
        continue;
      }
      if (in_receive) {
        cf->receive.Add(std::move(f),
                        cf->receive.written() + cf->received.size(), now);
      } else {
        cf->send.Add(std::move(f), cf->send.written() + c.send_bytes.size(),
                     now);
      }
      // Both stages decide again with the new parameters and re-arm the
      // timer they share.
      cf->timer_due_ns = 0;
      DecideBoth(c);
    } else if (Matches(info.spec, c)) {
      Apply(c, id, info);
    }
  }
  return info;
}

absl::StatusOr<std::vector<std::string>> FaultStage::Remove(
    const std::string& name, const Labels& selector, bool all) {
  engine_.AssertEngineLock();
  if (name.empty() && selector.empty() && !all) {
    return absl::InvalidArgumentError(
        "remove fault: give a name, a label_selector or all");
  }
  if (absl::Status s = CheckLabels(selector, "label_selector"); !s.ok()) {
    return s;
  }
  std::vector<std::pair<uint64_t, std::string>> gone;
  for (const auto& [id, info] : table_.faults()) {
    gone.emplace_back(id, info.spec.name);
  }
  auto removed = table_.Remove(name, selector, all);
  if (!removed.ok()) {
    return removed.status();
  }
  std::vector<std::string> names;
  for (uint64_t id : *removed) {
    for (const auto& [gid, gname] : gone) {
      if (gid == id) names.push_back(gname);
    }
    for (auto& [num, conn] : engine_.registry_.conns()) {
      RemoveFrom(*conn, id);
    }
  }
  for (const std::string& n : names) {
    engine_.Emit(EventKind::kFaultRemoved, 0, 0, 0, {}, n);
  }
  return names;
}

std::vector<FaultInfo> FaultStage::List() const {
  std::vector<FaultInfo> out;
  out.reserve(table_.size());
  for (const auto& [id, info] : table_.faults()) {
    out.push_back(info);
  }
  return out;
}

}  // namespace engine_internal
}  // namespace sockagent
