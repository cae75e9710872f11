// TlsStage: TLS on the engine's stream connections, the glue between a
// connection and its TlsSession (agent/tls.h). The session lives on the
// connection's own non-blocking socket (SSL_set_fd) and is driven by the
// same readiness waits as a plain connection: SSL_read takes the place of
// recv into the loop's scratch buffer, SSL_write the place of writev, and a
// WANT_READ / WANT_WRITE arms the matching wait. Handshakes run on the loop
// too, each bounded by its timer; no thread per connection. It owns the
// client session cache (resumption); each connection owns its session
// (ConnExtra::tls).
//
// Hooks: the engine's read path (ReadStream, ArmRead), Flush, SendFin and
// OpenClient hand TLS connections here; Finalize calls End.
//
// Lock: a member of EngineImpl, guarded by the engine lock; every method
// is called with it held, and its handlers take it (EngineImpl::Locked).
// Entry points assert it for clang's analysis (AssertEngineLock).
//
//   if (!tls_.Start(c, server.tls, nullptr)) return;  // after accept
//   if (TlsStage::Active(c)) { tls_.Read(c); return; }
#ifndef SOCKAGENT_AGENT_TLS_STAGE_H_
#define SOCKAGENT_AGENT_TLS_STAGE_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "agent/conn_io.h"
#include "agent/engine.h"
#include "agent/engine_objects.h"
#include "agent/tls.h"

namespace sockagent {
namespace engine_internal {

class EngineImpl;

class TlsStage {
 public:
  explicit TlsStage(EngineImpl& engine) : engine_(engine) {}
  TlsStage(const TlsStage&) = delete;
  TlsStage& operator=(const TlsStage&) = delete;

  // Whether `c` speaks TLS (its session exists).
  static bool Active(const Conn& c) {
    return c.extra != nullptr && c.extra->tls != nullptr &&
           c.extra->tls->session != nullptr;
  }
  // Makes c's session (server: `server`, client: `client`) on its socket
  // and arms the handshake timer (its timeout, capped by `deadline`, the
  // OpenClient call's). False: it could not; c is finalized.
  bool Start(Conn& c, const std::shared_ptr<const TlsServerContext>& server,
             const std::shared_ptr<const TlsClientContext>& client,
             absl::Time deadline = absl::InfiniteFuture());
  // Runs the handshake as far as the socket allows. True once it is done
  // (then queued bytes are flushed); false while waiting (the wait is
  // armed) or when it failed (c is finalized).
  bool DriveHandshake(Conn& c);
  // Reads what the session gives (the read path's TLS branch).
  void Read(Conn& c);
  // Flush's TLS turn: false while the handshake runs (it flushes once
  // done); true when queued bytes may be written (WriteQueued).
  bool ReadyToWrite(Conn& c);
  // One SSL_write of at most `limit` queued bytes (ConnIo::WriteSome).
  ConnIo::WriteOutcome WriteQueued(Conn& c, size_t limit);
  // A read without waiting for readability (OpenSSL holds bytes).
  void PostRead(Conn& c);
  // OpenClient waiting for the handshake of conn `id`: answered now if it
  // has ended, else when it ends.
  void AwaitHandshake(absl::string_view id,
                      Done<absl::StatusOr<ConnectionInfo>> done);
  // From Finalize: answers a waiting OpenClient, frees the session.
  void End(Conn& c);

 private:
  void Fail(Conn& c, const TlsIo& r, absl::string_view op);
  void NoteError(Conn& c, std::string detail);
  void FailHandshake(Conn& c, absl::string_view words);
  // Keeps `info` as c's TLS facts and charges them to the ledger. When the
  // agent-wide byte bound has no room for them, the peer chain is trimmed
  // to what room there is (FitChainToBudget: PEM first; the leaf's summary
  // always stays).
  void KeepFacts(Conn& c, std::shared_ptr<const TlsInfo> info);
  void OnHandshakeTimer(uint64_t num);

  EngineImpl& engine_;
  // Client sessions for resumption; outlives the connections (EngineImpl
  // declares this stage before the registry).
  TlsSessionCache sessions_;
};

}  // namespace engine_internal
}  // namespace sockagent

#endif  // SOCKAGENT_AGENT_TLS_STAGE_H_
