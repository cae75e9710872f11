// Ledger (agent/ledger.h): byte accounting against the BufferBudget and
// the closed history's bounds.
//
// Threads: everything here runs under the engine lock (agent/engine_impl.h).
#include "agent/ledger.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "agent/engine_impl.h"

namespace sockagent {
namespace engine_internal {

uint64_t RecvCharge(const Conn& c) {
  uint64_t n = c.counters.recv_buffered;
  if (c.extra != nullptr) {
    n += kDatagramOverheadBytes * c.extra->recv_datagrams.size();
    if (const ConnFaults* f = c.extra->faults.get(); f != nullptr) {
      n += f->received.size() + f->received_datagrams.held_bytes() +
           kDatagramOverheadBytes * f->received_datagrams.held();
    }
  }
  return n;
}

uint64_t SendCharge(const Conn& c) {
  uint64_t n = c.counters.send_buffered;
  if (c.extra != nullptr) {
    const size_t held =
        c.extra->faults != nullptr ? c.extra->faults->datagrams.held() : 0;
    n += kDatagramOverheadBytes *
         (c.extra->send_datagrams.size() + c.extra->out_datagrams + held);
  }
  return n;
}

Ledger::Ledger(EngineImpl& engine)
    : engine_(engine),
      budget_(engine.options_.max_total_buffered_bytes,
              BufferBudget::Hooks{
                  .post_resume =
                      [this] {
                        asio::post(engine_.io_, engine_.Locked([this] {
                          engine_.AssertEngineLock();
                          budget_.ResumePaused();
                        }));
                      },
                  // The budget calls these under the engine lock.
                  .resume =
                      [this](uint64_t num) {
                        engine_.AssertEngineLock();
                        ResumeTotalPaused(num);
                      },
                  .history_full =
                      [this] {
                        engine_.AssertEngineLock();
                        ScheduleTrim();
                      },
              }) {}

void NoteReleased(const EngineOptions& options, uint64_t bytes) {
  if (options.on_memory_released && bytes > 0) {
    options.on_memory_released(bytes);
  }
}

void Ledger::Recharge(Conn& c) {
  const uint64_t now = RecvCharge(c) + SendCharge(c) + FactsCharge(c);
  if (now == c.charged) return;
  const uint64_t was = c.charged;
  c.charged = now;
  budget_.Recharge(was, now, c.finalized);
  engine_.counters_.buffered_bytes.store(budget_.total(),
                                         std::memory_order_relaxed);
  // Buffers of a closed connection going away (discarded, or its history
  // trimmed) are memory to hand back; a live one's Receive is not.
  if (now < was && c.state == ConnectionState::kClosed) {
    NoteReleased(engine_.options_, was - now);
  }
}

void Ledger::PauseForTotal(Conn& c) {
  if (c.reading.total_paused) return;
  c.reading.total_paused = true;
  budget_.Pause(c.num);
}

void Ledger::ResumeTotalPaused(uint64_t num) {
  engine_.AssertEngineLock();
  Conn* c = engine_.registry_.FindConn(num);
  if (c == nullptr || !c->reading.total_paused) return;
  c->reading.total_paused = false;
  // Resumes unless its own buffer is still above half its bound; a
  // connection that finds the total full again pauses again.
  engine_.conn_io_.ResumeReading(*c);
}

void Ledger::FileInHistory(Conn& c) {
  engine_.AssertEngineLock();
  budget_.MoveToHistory(c.charged);
  engine_.registry_.ConnFinalized(c.num);
  ScheduleTrim();
}

void Ledger::DiscardHistoryBytes(Conn& c) {
  // A closed TLS connection's peer PEMs go (the chain's summary stays).
  if (c.extra != nullptr && c.extra->tls != nullptr &&
      c.extra->tls->info != nullptr) {
    ConnTls& t = *c.extra->tls;
    std::shared_ptr<const TlsInfo> lean = TlsInfoWithoutPem(t.info);
    if (lean != t.info) {
      t.info = std::move(lean);
      t.facts_bytes = TlsInfoBytes(*t.info);
      Recharge(c);
    }
  }
  const uint64_t bytes = c.counters.recv_buffered;
  const size_t datagrams =
      c.extra != nullptr ? c.extra->recv_datagrams.size() : 0;
  if (bytes == 0 && datagrams == 0) return;
  c.recv_bytes.Clear();
  ConnExtra& x = c.Extra();
  x.recv_datagrams.clear();
  c.counters.recv_buffered = 0;
  x.history_discarded += bytes;
  const std::string detail = absl::StrCat(
      bytes, " unreceived bytes discarded (closed connections keep at most ",
      budget_.history_cap(), " bytes in all)");
  x.close_detail = x.close_detail.empty()
                       ? detail
                       : absl::StrCat(x.close_detail, "; ", detail);
  Recharge(c);
}

void Ledger::ScheduleTrim() {
  if (trim_posted_) return;
  trim_posted_ = true;
  asio::post(engine_.io_, engine_.Locked([this] {
    engine_.AssertEngineLock();
    TrimHistory();
  }));
}

void Ledger::TrimHistory() {
  engine_.AssertEngineLock();
  trim_posted_ = false;
  Registry& registry = engine_.registry_;
  auto forget = [this](Conn& c) {
    budget_.Forget(c.charged);
    engine_.counters_.buffered_bytes.store(budget_.total(),
                                           std::memory_order_relaxed);
    uint64_t freed = sizeof(Conn) + sizeof(ConnExtra) + c.charged;
    if (c.labels != nullptr && c.labels.use_count() == 1) {
      freed += LabelsBytes(*c.labels);
    }
    NoteReleased(engine_.options_, freed);
  };
  registry.TrimClosed(engine_.options_.closed_connections_kept, forget);
  // The bytes nobody received yet (and closed TLS connections' PEMs):
  // oldest records give theirs up first.
  registry.VisitClosed([this](Conn& c) {
    if (budget_.history() <= budget_.history_cap()) return false;
    DiscardHistoryBytes(c);
    return true;
  });
  // What cannot be discarded, a closed TLS connection's facts without PEM
  // (~1-2 KiB, more for a peer with long names): the oldest records go
  // whole until the history is back within its share.
  while (budget_.history() > budget_.history_cap() &&
         registry.closed_conns() > 0) {
    registry.TrimClosed(registry.closed_conns() - 1, forget);
  }
  registry.TrimStopped(engine_.options_.closed_connections_kept);
}

}  // namespace engine_internal
}  // namespace sockagent
