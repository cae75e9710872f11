// Closer: how the engine's connections end. A graceful close flushes,
// sends FIN, then reads and discards until the peer's FIN or close_linger
// (so the peer never sees a reset for bytes it sent late); an abort sends
// RST; greeting-and-close servers close at accept when the peer sent
// nothing yet (GreetAndClose); Finalize closes the socket and files the
// record in the closed history. A connection's linger timer lives on the
// Conn.
//
// Lock: a member of EngineImpl, guarded by the engine lock; every method
// is called with it held (from reads, writes, timers, Close calls and
// stopping servers alike), and its timers' handlers take it
// (EngineImpl::Locked). Entry points assert it for clang's analysis
// (AssertEngineLock).
//
//   closer_.StartClose(c, CloseReason::kLocalClose, "", /*abort=*/false);
//   closer_.Finalize(c, /*abort=*/true);  // RST now, record filed
#ifndef SOCKAGENT_AGENT_CLOSER_H_
#define SOCKAGENT_AGENT_CLOSER_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/engine.h"
#include "agent/engine_objects.h"

namespace sockagent {
namespace engine_internal {

class EngineImpl;

class Closer {
 public:
  explicit Closer(EngineImpl& engine) : engine_(engine) {}
  Closer(const Closer&) = delete;
  Closer& operator=(const Closer&) = delete;

  // The CloseConnections call: closes (or shuts down writing on) the
  // connections `selector` picks; all or nothing for shutdown-write.
  void CloseSelected(const Selector& selector, CloseMode mode,
                     Done<absl::StatusOr<CloseResult>> done);
  // Graceful: flush, FIN, drain until peer FIN or close_linger. Abort: RST.
  // `keep_received`: bytes already delivered stay for Receive even though
  // the close is local (a RECEIVED limit_data: the reader gets its N).
  void StartClose(Conn& c, CloseReason reason, std::string detail, bool abort,
                  bool keep_received = false);
  // Bookkeeping of "this connection is now closed" (state, counters,
  // timers, parked Receive, event) without touching the socket.
  void MarkClosed(Conn& c, CloseReason reason, std::string detail,
                  bool keep_received = false);
  // Closes the socket (abort: SO_LINGER 0, RST) and files the record.
  void Finalize(Conn& c, bool abort);
  // Hands c.raw_fd to the reactor (c.stream). False: it could not, and the
  // connection is finalized with the error.
  bool AdoptSocket(Conn& c);
  // Writes the greeting of a greeting-and-close server and its FIN straight
  // after accept, then closes at once if the peer sent nothing yet, else
  // leaves the reactor's graceful tail. False when the greeting did not go
  // out whole (`*greeted`: the bytes that did): the reactor path goes on.
  bool GreetAndClose(Server& s, Conn& c, size_t* greeted);

 private:
  void ArmLingerTimer(Conn& c, absl::Duration after);
  EngineImpl& engine_;
};

}  // namespace engine_internal
}  // namespace sockagent

#endif  // SOCKAGENT_AGENT_CLOSER_H_
