// ConnIo: the engine's stream connections (TCP and UNIX) on their sockets.
// Reads are readiness-driven, into the loop's one scratch buffer, and stop
// at the receive buffer's bound or the agent-wide one (backpressure: TCP's
// own flow control slows the peer); Send's bytes queue on the connection
// and go out with writev when the socket takes them; FIN and RST are
// noticed and sent; a connection that stopped reading still watches for
// errors; the TTL, idle and linger timers run here. TLS and faults take
// their turn in the read and write paths (tls_stage.h, fault_stage.h). It
// owns no state of its own: buffers and flags live on the Conn
// (engine_objects.h: its read-side and write-side structs).
//
// Lock: a member of EngineImpl, guarded by the engine lock; every method
// is called with it held (the loop's handlers, or Send/Close inline on a
// gRPC thread), and its handlers take it (EngineImpl::Locked). Entry points
// assert it for clang's analysis (AssertEngineLock).
//
//   absl::StatusOr<SendResult> r = conn_io_.QueueSend(c, std::move(data));
//   conn_io_.ArmRead(c);  // start (or resume) reading c
#ifndef SOCKAGENT_AGENT_CONN_IO_H_
#define SOCKAGENT_AGENT_CONN_IO_H_

#include <asio.hpp>
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "agent/engine.h"
#include "agent/engine_objects.h"

namespace sockagent {
namespace engine_internal {

class EngineImpl;
struct ClientAttempt;

class ConnIo {
 public:
  explicit ConnIo(EngineImpl& engine) : engine_(engine) {}
  ConnIo(const ConnIo&) = delete;
  ConnIo& operator=(const ConnIo&) = delete;

  // Files the connection `a` opened (its socket moves to the record),
  // starts reading it, and describes it.
  ConnectionInfo AddOpened(ClientAttempt& a);
  // A new connection's timers (TTL, idle) and its first read.
  void Start(Conn& c, absl::Duration ttl, absl::Duration idle_timeout);

  // ---- Reading (conn_io.cc).
  void ArmRead(Conn& c);
  // The buffer bound is reached: stop reading, watch for errors.
  void PauseReading(Conn& c);
  void ResumeReading(Conn& c);
  // Bytes the next read may take without exceeding a bound (0: pause).
  size_t ReadRoom(const Conn& c) const;
  // Received bytes into c's buffer (or to its behaviour: echo, discard,
  // the proxy's other half), through the RECEIVE stage of faults if any
  // (which may hold them and call DeliverNow later).
  void DeliverStream(Conn& c, const char* data, size_t n);
  void DeliverNow(Conn& c, const char* data, size_t n);
  // The peer's FIN was read (a RECEIVED fault may hold it: fin_held).
  void OnPeerFin(Conn& c);
  void OnStreamError(Conn& c, const asio::error_code& ec, absl::string_view op);
  // While a stream connection does not read (peer FIN, or paused), waits
  // for a socket error so a reset is still noticed.
  void ArmErrorWatch(Conn& c);
  // Activity: the idle timer starts again.
  void Touch(Conn& c);

  // ---- Writing (conn_write.cc).
  // The Send call: queues `data` on connection `id` and writes what the
  // socket takes now.
  void Send(absl::string_view id, std::string data,
            Done<absl::StatusOr<SendResult>> done);
  // `stream`: a StreamSend, which waited for room already and may take the
  // buffer past send_buffer_bytes by this one chunk.
  absl::StatusOr<SendResult> QueueSend(Conn& c, std::string data,
                                       bool stream = false);
  // Send's answer once writing found `c` broken (it is finalized).
  absl::Status SendFailure(const Conn& c, uint64_t lost) const;
  void Flush(Conn& c);
  void ArmWrite(Conn& c);
  void SendFin(Conn& c);
  void ShutdownWrite(Conn& c);
  enum class WriteOutcome { kWrote, kBlocked, kFailed };
  // One write of at most `limit` queued bytes (Flush's step): through
  // SSL_write on TLS (TlsStage::WriteQueued), else writev (WriteQueued).
  // Blocked: the matching wait is armed.
  WriteOutcome WriteSome(Conn& c, size_t limit);
  WriteOutcome WriteQueued(Conn& c, size_t limit);
  // Bytes the kernel took from c's send queue: consumed and counted.
  void NoteWritten(Conn& c, size_t written);

  // Handlers, also called directly: c is readable (TLS: OpenSSL holds
  // bytes), one of c's timers fired (closing: the linger ran out).
  void OnReadable(uint64_t num, const asio::error_code& ec);
  void OnConnTimer(uint64_t num, ConnTimer which);

 private:
  void ReadStream(Conn& c);
  void OnErrorWatch(uint64_t num, const asio::error_code& ec);
  void OnWritable(uint64_t num, const asio::error_code& ec);

  EngineImpl& engine_;
};

}  // namespace engine_internal
}  // namespace sockagent

#endif  // SOCKAGENT_AGENT_CONN_IO_H_
