// Ledger: what each connection is charged against the agent-wide byte
// bound, and the bounds of the closed history. It owns the BufferBudget
// (buffer_budget.h) and is the glue between it and the connections: it
// brings Conn::charged up to date after every buffer change (Recharge),
// pauses a reader at the bound and resumes it when the budget says so,
// files a finalized connection in the history, and trims that history
// (record count, then unreceived bytes and TLS PEMs, then whole records,
// oldest first) in a posted step, so
// no caller ever sees the connection it is working on disappear.
//
// Lock: a member of EngineImpl, guarded by the engine lock; every method is
// called with it held, and the posted trim and the budget's hooks take or
// assert it (EngineImpl::Locked, AssertEngineLock).
//
//   ledger_.Recharge(c);            // after c's buffers changed
//   if (ledger_.budget().Room() == 0) ledger_.PauseForTotal(c);
#ifndef SOCKAGENT_AGENT_LEDGER_H_
#define SOCKAGENT_AGENT_LEDGER_H_

#include <cstdint>

#include "agent/buffer_budget.h"
#include "agent/engine.h"
#include "agent/engine_objects.h"

namespace sockagent {
namespace engine_internal {

class EngineImpl;

// What `c` holds now against the byte bounds: buffered payload plus
// kDatagramOverheadBytes per queued datagram (held by a delay fault too),
// plus the bytes a RECEIVED fault holds between the read and delivery.
uint64_t RecvCharge(const Conn& c);
uint64_t SendCharge(const Conn& c);
// A TLS connection's kept handshake facts (the peer chain's text, at most
// ~16 KiB: kMaxTlsReportedChainBytes); 0 for others.
inline uint64_t FactsCharge(const Conn& c) {
  return c.extra != nullptr && c.extra->tls != nullptr
             ? c.extra->tls->facts_bytes
             : 0;
}

// Memory handed back: tells EngineOptions::on_memory_released, if set.
void NoteReleased(const EngineOptions& options, uint64_t bytes);

class Ledger {
 public:
  explicit Ledger(EngineImpl& engine);
  Ledger(const Ledger&) = delete;
  Ledger& operator=(const Ledger&) = delete;

  BufferBudget& budget() { return budget_; }
  const BufferBudget& budget() const { return budget_; }

  // Brings c.charged (and the budget) up to date after c's buffers
  // changed; call after every change.
  void Recharge(Conn& c);
  // Reading of `c` stopped at the agent-wide bound: the budget resumes it
  // (posted) once the total falls to three quarters of it.
  void PauseForTotal(Conn& c);
  // Finalize's last step: c's socket is closed, its record (and its bytes)
  // join the closed history, and trimming is scheduled.
  void FileInHistory(Conn& c);
  // Posts one trim of the history, unless one is posted already.
  void ScheduleTrim();

 private:
  // The budget's resume hook.
  void ResumeTotalPaused(uint64_t num);
  void TrimHistory();
  // Discards the unreceived bytes of a history record (history bound).
  void DiscardHistoryBytes(Conn& c);

  EngineImpl& engine_;
  BufferBudget budget_;
  bool trim_posted_ = false;
};

}  // namespace engine_internal
}  // namespace sockagent

#endif  // SOCKAGENT_AGENT_LEDGER_H_
