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

absl::Status FaultStage::CheckTarget(const FaultTarget& target) {
  engine_.AssertEngineLock();
  if (!target.server_id.empty()) {
    std::optional<uint64_t> num = ParseId(target.server_id, "srv-");
    if (!num.has_value()) {
      return absl::InvalidArgumentError(
          absl::StrCat("fault.target.server_id: malformed server id ",
                       QuoteInput(target.server_id), " (expected srv-N)"));
    }
    if (engine_.registry_.FindServer(*num) == nullptr) {
      return absl::NotFoundError(absl::StrCat(
          "fault target: server ", QuoteInput(target.server_id), " not found"));
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
    if (TlsStage::Active(*c)) {
      return absl::FailedPreconditionError(
          absl::StrCat("fault target: connection ", target.connection_id,
                       " speaks TLS; faults act on plain TCP and UNIX "
                       "connections only for now"));
    }
  }
  return absl::OkStatus();
}

bool FaultStage::Matches(const FaultSpec& spec, const Conn& c) const {
  // Plain stream sockets only for now (UDP faults are refused by
  // validation; TLS connections write through SSL_write, which the SEND
  // stage does not reach).
  if (c.finalized || c.state == ConnectionState::kClosed ||
      c.stream == nullptr || TlsStage::Active(c)) {
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
  x.faults->send.Add(std::move(f),
                     x.faults->send.written() + c.send_bytes.size(), now);
  ++info.connections;
  ++info.applied;
  engine_.Emit(EventKind::kFaultApplied, c.server_num, c.num, 0, {},
               info.spec.name);
  engine_.conn_io_.Flush(
      c);  // Starts its clock (reset_peer, timeout) and holds what waits.
}

void FaultStage::RemoveFrom(Conn& c, uint64_t id) {
  engine_.AssertEngineLock();
  if (c.extra == nullptr || c.extra->faults == nullptr) return;
  if (!c.extra->faults->send.Remove(id)) return;
  if (c.extra->faults->send.empty()) c.extra->faults.reset();
  engine_.conn_io_.Flush(c);  // What it held leaves now, in order.
}

void FaultStage::Drop(Conn& c) {
  engine_.AssertEngineLock();
  if (c.extra == nullptr || c.extra->faults == nullptr) return;
  for (const ActiveFault& f : c.extra->faults->send.faults()) {
    FaultInfo* info = table_.Find(f.fault_id);
    if (info != nullptr && info->connections > 0) --info->connections;
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
  engine_.conn_io_.Flush(*c);
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
    if (d.action == SendStage::Action::kReset) {
      engine_.closer_.StartClose(c, CloseReason::kLocalAbort, std::move(d.why),
                                 /*abort=*/true);
      return;  // `f` is gone with the connection.
    }
    if (d.action == SendStage::Action::kClose &&
        c.state != ConnectionState::kClosed) {
      // Closes gracefully: this Flush runs again inside and sends the FIN.
      engine_.closer_.StartClose(c, CloseReason::kLocalClose, std::move(d.why),
                                 /*abort=*/false);
      return;
    }
    if (c.send_bytes.empty() || d.allowed == 0) break;
    const size_t before = c.send_bytes.size();
    const ConnIo::WriteOutcome outcome =
        engine_.conn_io_.WriteQueued(c, d.allowed);
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
  if (absl::Status s = CheckTarget(spec.target); !s.ok()) {
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
    if (cf != nullptr) {
      for (const ActiveFault& f : cf->send.faults()) {
        has = has || f.fault_id == id;
      }
    }
    const bool want =
        Matches(info.spec, c) &&
        RollToxicity(info.spec.toxicity, info.spec.seed, info.spec.name, c.num);
    if (has && want) {
      ActiveFault f;
      f.fault_id = id;
      f.spec = info.spec;
      f.applied_ns = now;
      f.random = FaultRandom(MixSeed(info.spec.seed, info.spec.name, c.num));
      cf->send.Add(std::move(f), cf->send.written() + c.send_bytes.size(), now);
      cf->timer_due_ns = 0;  // Decide again with the new parameters.
      engine_.conn_io_.Flush(c);
    } else if (has) {
      if (info.connections > 0) --info.connections;
      RemoveFrom(c, id);
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
