// FaultStage: faults (agent/faults.h) acting on the engine's connections.
// It owns the fault table, decides which connections a fault acts on (at
// AddFault for those open, at accept/connect for new ones), and runs each
// faulted connection's SEND stage between its send queue and the socket
// write, and each faulted UDP connection's datagram stage (drop,
// duplicate, delay: agent/datagram_stage.h) between the sender and the
// socket, with one timer per faulted connection. Faults with direction
// RECEIVED act in the RECEIVE stage, between the socket read (after TLS)
// and the behaviour: the bytes wait in ConnFaults::received, charged to
// the receive buffer, and the peer's FIN waits behind them. The model and the
// decisions (latency, bandwidth, slicer, ...) live in agent/faults.h; each
// connection's state is ConnExtra::faults. On TLS connections faults act
// on the plaintext (before SSL_write, after SSL_read).
//
// Lock: a member of EngineImpl, guarded by the engine lock; every method
// is called with it held (EngineImpl's public fault calls through
// PostWork, the I/O paths' hooks), and its timer's handler takes it.
// Entry points assert it for clang's analysis (AssertEngineLock).
//
//   absl::StatusOr<FaultInfo> added = faults_.Add(spec);  // AddFault
//   faults_.Flush(c);  // Flush's branch for a faulted connection
#ifndef SOCKAGENT_AGENT_FAULT_STAGE_H_
#define SOCKAGENT_AGENT_FAULT_STAGE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "agent/engine.h"
#include "agent/engine_objects.h"
#include "agent/faults.h"

namespace sockagent {
namespace engine_internal {

class EngineImpl;

class FaultStage {
 public:
  explicit FaultStage(EngineImpl& engine) : engine_(engine) {}
  FaultStage(const FaultStage&) = delete;
  FaultStage& operator=(const FaultStage&) = delete;

  // The work of the public calls (engine.h's AddFault, UpdateFault,
  // RemoveFaults, ListFaults).
  absl::StatusOr<FaultInfo> Add(FaultSpec spec);
  absl::StatusOr<FaultInfo> Update(FaultSpec spec);
  absl::StatusOr<std::vector<std::string>> Remove(const std::string& name,
                                                  const Labels& selector,
                                                  bool all);
  std::vector<FaultInfo> List() const;
  bool empty() const { return table_.size() == 0; }

  // A new connection: the faults that match it start acting on it.
  void ApplyMatching(Conn& c);
  // The SEND stage of a faulted connection: what its faults let through
  // goes to the socket now; the rest waits for the stage's timer.
  void Flush(Conn& c);
  // From Finalize: c's faults stop (their counts drop); held datagrams
  // are lost.
  void Drop(Conn& c);
  // The RECEIVE stage (direction RECEIVED) of a connection with faults:
  // `n` bytes read from its socket (after TLS). False: no RECEIVED fault
  // acts on it, deliver them now. True: taken; they reach the behaviour
  // (ConnIo::DeliverNow) when the stage lets them, in order.
  bool HoldReceived(Conn& c, const char* data, size_t n);
  // UDP: a datagram received on `c` (counted already). False: no RECEIVED
  // UDP fault acts on it, deliver it now. True: taken (dropped, delivered
  // twice, or held for its delay, charged to the receive buffer; beyond
  // it dropped and counted in datagrams_dropped).
  bool HoldDatagram(Conn& c, const char* data, size_t n);
  // The peer's FIN was read. True: held (c.reading.fin_held) until the
  // bytes before it are delivered and slow_close allows; then the stage
  // calls ConnIo::OnPeerFin again.
  bool HoldFin(Conn& c);
  // UDP: a datagram the agent sends on `c`, which has faults (a peer
  // session or a UDP client): dropped (OK: the sender cannot tell), sent
  // twice, or held for its delay, charged to the send buffer
  // (ResourceExhausted when that is full).
  absl::Status SendDatagram(Conn& c, std::string data);

 private:
  // NotFound for a missing target; FailedPrecondition for one the fault
  // can never act on (TLS, or UDP faults on a stream socket and back).
  absl::Status CheckTarget(const FaultSpec& spec);
  bool Matches(const FaultSpec& spec, const Conn& c) const;
  void Apply(Conn& c, uint64_t id, FaultInfo& info);
  void RemoveFrom(Conn& c, uint64_t id);
  void DiscardQueued(Conn& c);
  void ArmTimer(Conn& c, int64_t due_ns);
  void OnTimer(uint64_t num);
  // Sends the held datagrams that are due (every one: `all`) and arms the
  // timer for the next.
  void ReleaseHeld(Conn& c, bool all);
  // A stage's reset_peer (RST) or limit_data/timeout close: started, true
  // (the connection is closing; its faults may be gone).
  // `keep_received`: a close keeps what the reader was given (RECEIVE).
  bool Act(Conn& c, SendStage::Decision& d, bool keep_received = false);
  // Both stages of a stream connection look again (the timer fired, or
  // parameters changed): its SEND stage (Flush), then its RECEIVE stage.
  void DecideBoth(Conn& c);
  // Delivers the received datagrams that are due (every one: `all`) and
  // arms the timer for the next.
  void ReleaseReceivedDatagrams(Conn& c, bool all);
  // Delivers what the RECEIVE stage lets through now (then a held FIN),
  // and arms the timer for the rest.
  void ReleaseReceived(Conn& c);
  // No fault acts on it and nothing is held: ConnFaults can go.
  static bool Idle(const ConnFaults& f);

  EngineImpl& engine_;
  FaultTable table_;
};

}  // namespace engine_internal
}  // namespace sockagent

#endif  // SOCKAGENT_AGENT_FAULT_STAGE_H_
