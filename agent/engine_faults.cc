// EngineImpl, faults: the Add/Update/Remove/ListFaults calls, which
// connections a fault acts on, and the SEND stage glued to the socket
// write (FlushFaulted) with its one timer per faulted connection. The
// model and the decisions live in agent/faults.h.
//
// Threads: everything here runs under the engine lock (agent/engine_impl.h):
// in a completion handler on the loop thread, or inline on the caller's
// thread (a gRPC thread) inside a public Engine call. Nothing here blocks.
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

absl::Status EngineImpl::CheckFaultTarget(const FaultTarget& target) {
  if (!target.server_id.empty()) {
    std::optional<uint64_t> num = ParseId(target.server_id, "srv-");
    if (!num.has_value()) {
      return absl::InvalidArgumentError(
          absl::StrCat("fault.target.server_id: malformed server id ",
                       QuoteInput(target.server_id), " (expected srv-N)"));
    }
    if (FindServer(*num) == nullptr) {
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
    const Conn* c = FindConn(*num);
    if (c == nullptr) {
      return absl::NotFoundError(absl::StrCat("fault target: connection ",
                                              QuoteInput(target.connection_id),
                                              " not found"));
    }
    if (TlsActive(*c)) {
      return absl::FailedPreconditionError(
          absl::StrCat("fault target: connection ", target.connection_id,
                       " speaks TLS; faults act on plain TCP and UNIX "
                       "connections only for now"));
    }
  }
  return absl::OkStatus();
}

bool EngineImpl::FaultMatches(const FaultSpec& spec, const Conn& c) const {
  // Plain stream sockets only for now (UDP faults are refused by
  // validation; TLS connections write through SSL_write, which the SEND
  // stage does not reach).
  if (c.finalized || c.state == ConnectionState::kClosed ||
      c.stream == nullptr || TlsActive(c)) {
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

void EngineImpl::ApplyMatchingFaults(Conn& c) {
  if (faults_.size() == 0) return;
  for (auto& [id, info] : faults_.faults()) {
    if (FaultMatches(info.spec, c)) ApplyFault(c, id, info);
  }
}

void EngineImpl::ApplyFault(Conn& c, uint64_t id, FaultInfo& info) {
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
  Emit(EventKind::kFaultApplied, c.server_num, c.num, 0, {}, info.spec.name);
  Flush(c);  // Starts its clock (reset_peer, timeout) and holds what waits.
}

void EngineImpl::RemoveFaultFrom(Conn& c, uint64_t id) {
  if (c.extra == nullptr || c.extra->faults == nullptr) return;
  if (!c.extra->faults->send.Remove(id)) return;
  if (c.extra->faults->send.empty()) c.extra->faults.reset();
  Flush(c);  // What it held leaves now, in order.
}

void EngineImpl::DropFaults(Conn& c) {
  if (c.extra == nullptr || c.extra->faults == nullptr) return;
  for (const ActiveFault& f : c.extra->faults->send.faults()) {
    FaultInfo* info = faults_.Find(f.fault_id);
    if (info != nullptr && info->connections > 0) --info->connections;
  }
  c.extra->faults.reset();
}

void EngineImpl::DiscardQueued(Conn& c) {
  c.counters.send_bytes_lost += c.send_bytes.size();
  c.send_bytes.Clear();
  c.counters.send_buffered = 0;
  Recharge(c);
}

void EngineImpl::ArmFaultTimer(Conn& c, int64_t due_ns) {
  if (due_ns == 0 || c.finalized || c.extra == nullptr ||
      c.extra->faults == nullptr) {
    return;
  }
  ConnFaults& f = *c.extra->faults;
  if (f.timer_due_ns != 0 && f.timer_due_ns <= due_ns) return;
  if (f.timer == nullptr) f.timer = std::make_unique<Timer>(io_);
  f.timer->expires_at(Timer::time_point(std::chrono::nanoseconds(due_ns)));
  f.timer_due_ns = due_ns;
  f.timer->async_wait(Locked([this, num = c.num](const asio::error_code& ec) {
    AssertEngineLock();
    if (!ec) OnFaultTimer(num);
  }));
}

void EngineImpl::OnFaultTimer(uint64_t num) {
  Conn* c = FindConn(num);
  if (c == nullptr || c->finalized || c->extra == nullptr ||
      c->extra->faults == nullptr) {
    return;
  }
  c->extra->faults->timer_due_ns = 0;
  Flush(*c);
}

void EngineImpl::FlushFaulted(Conn& c) {
  ConnFaults& f = *c.extra->faults;
  int64_t wake = 0;
  for (;;) {
    const int64_t now = SteadyNowNs();
    SendStage::Decision d =
        f.send.Decide(f.send.written() + c.send_bytes.size(), now);
    wake = d.wake_ns;
    if (d.discard && !c.send_bytes.empty()) DiscardQueued(c);
    if (d.action == SendStage::Action::kReset) {
      StartClose(c, CloseReason::kLocalAbort, std::move(d.why),
                 /*abort=*/true);
      return;  // `f` is gone with the connection.
    }
    if (d.action == SendStage::Action::kClose &&
        c.state != ConnectionState::kClosed) {
      // Closes gracefully: this Flush runs again inside and sends the FIN.
      StartClose(c, CloseReason::kLocalClose, std::move(d.why),
                 /*abort=*/false);
      return;
    }
    if (c.send_bytes.empty() || d.allowed == 0) break;
    const size_t before = c.send_bytes.size();
    const WriteOutcome outcome = WriteQueued(c, d.allowed);
    if (outcome == WriteOutcome::kFailed) return;
    f.send.Wrote(before - c.send_bytes.size(), now);
    if (outcome == WriteOutcome::kBlocked) {
      ArmFaultTimer(c, wake);  // reset_peer and timeout keep their time.
      return;
    }
  }
  ArmFaultTimer(c, wake);
  ResumeReading(c);
  if (c.behavior == BehaviorKind::kProxy) proxy_.Drained(c);
  if (c.writing.fin_wanted && !c.writing.fin_sent && c.send_bytes.empty()) {
    int64_t fin_wake = 0;
    if (f.send.FinAllowed(SteadyNowNs(), &fin_wake)) {
      SendFin(c);
    } else {
      ArmFaultTimer(c, fin_wake);
    }
  }
  PumpStreamSend(c);
}

// ---- The public calls.

void EngineImpl::AddFault(FaultSpec spec,
                          Done<absl::StatusOr<FaultInfo>> done) {
  PostWork(std::move(done), [this, spec = std::move(spec)](
                                Done<absl::StatusOr<FaultInfo>> d) mutable {
    AssertEngineLock();
    if (absl::Status s = ValidateFaultSpec(spec); !s.ok()) {
      d(s);
      return;
    }
    if (absl::Status s = CheckFaultTarget(spec.target); !s.ok()) {
      d(s);
      return;
    }
    uint64_t id = 0;
    auto added = faults_.Add(std::move(spec), absl::Now(), &id);
    if (!added.ok()) {
      d(added.status());
      return;
    }
    FaultInfo& info = *faults_.Find(id);
    Emit(EventKind::kFaultAdded, 0, 0, 0, {}, info.spec.name);
    // Applying may close connections (reset_peer 0): no erasure happens
    // while iterating (trimming is posted).
    for (auto& [num, conn] : registry_.conns()) {
      if (FaultMatches(info.spec, *conn)) ApplyFault(*conn, id, info);
    }
    d(info);
  });
}

void EngineImpl::UpdateFault(FaultSpec spec,
                             Done<absl::StatusOr<FaultInfo>> done) {
  PostWork(std::move(done), [this, spec = std::move(spec)](
                                Done<absl::StatusOr<FaultInfo>> d) mutable {
    AssertEngineLock();
    uint64_t id = 0;
    // Validated with the stored target (an update does not move a fault).
    bool known = false;
    for (const auto& [fid, info] : faults_.faults()) {
      if (info.spec.name != spec.name) continue;
      spec.target = info.spec.target;
      known = true;
    }
    if (!known) {
      d(absl::NotFoundError(
          absl::StrCat("fault ", QuoteInput(spec.name), " not found")));
      return;
    }
    if (absl::Status s = ValidateFaultSpec(spec); !s.ok()) {
      d(s);
      return;
    }
    auto updated = faults_.Update(spec, absl::Now(), &id);
    if (!updated.ok()) {
      d(updated.status());
      return;
    }
    FaultInfo& info = *faults_.Find(id);
    const int64_t now = SteadyNowNs();
    for (auto& [num, conn] : registry_.conns()) {
      Conn& c = *conn;
      ConnFaults* cf = c.extra != nullptr ? c.extra->faults.get() : nullptr;
      bool has = false;
      if (cf != nullptr) {
        for (const ActiveFault& f : cf->send.faults()) {
          has = has || f.fault_id == id;
        }
      }
      const bool want = FaultMatches(info.spec, c) &&
                        RollToxicity(info.spec.toxicity, info.spec.seed,
                                     info.spec.name, c.num);
      if (has && want) {
        ActiveFault f;
        f.fault_id = id;
        f.spec = info.spec;
        f.applied_ns = now;
        f.random = FaultRandom(MixSeed(info.spec.seed, info.spec.name, c.num));
        cf->send.Add(std::move(f), cf->send.written() + c.send_bytes.size(),
                     now);
        cf->timer_due_ns = 0;  // Decide again with the new parameters.
        Flush(c);
      } else if (has) {
        if (info.connections > 0) --info.connections;
        RemoveFaultFrom(c, id);
      } else if (FaultMatches(info.spec, c)) {
        ApplyFault(c, id, info);
      }
    }
    d(info);
  });
}

void EngineImpl::RemoveFaults(
    std::string name, Labels selector, bool all,
    Done<absl::StatusOr<std::vector<std::string>>> done) {
  PostWork(std::move(done),
           [this, name = std::move(name), selector = std::move(selector),
            all](Done<absl::StatusOr<std::vector<std::string>>> d) {
             AssertEngineLock();
             if (name.empty() && selector.empty() && !all) {
               d(absl::InvalidArgumentError(
                   "remove fault: give a name, a label_selector or all"));
               return;
             }
             if (absl::Status s = CheckLabels(selector, "label_selector");
                 !s.ok()) {
               d(s);
               return;
             }
             std::vector<std::pair<uint64_t, std::string>> gone;
             for (const auto& [id, info] : faults_.faults()) {
               gone.emplace_back(id, info.spec.name);
             }
             auto removed = faults_.Remove(name, selector, all);
             if (!removed.ok()) {
               d(removed.status());
               return;
             }
             std::vector<std::string> names;
             for (uint64_t id : *removed) {
               for (const auto& [gid, gname] : gone) {
                 if (gid == id) names.push_back(gname);
               }
               for (auto& [num, conn] : registry_.conns()) {
                 RemoveFaultFrom(*conn, id);
               }
             }
             for (const std::string& n : names) {
               Emit(EventKind::kFaultRemoved, 0, 0, 0, {}, n);
             }
             d(std::move(names));
           });
}

void EngineImpl::ListFaults(Done<absl::StatusOr<std::vector<FaultInfo>>> done) {
  PostWork(std::move(done),
           [this](Done<absl::StatusOr<std::vector<FaultInfo>>> d) {
             AssertEngineLock();
             std::vector<FaultInfo> out;
             out.reserve(faults_.size());
             for (const auto& [id, info] : faults_.faults()) {
               out.push_back(info);
             }
             d(std::move(out));
           });
}

}  // namespace engine_internal
}  // namespace sockagent
