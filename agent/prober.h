// Prober: one request dials many targets concurrently on the engine's loop
// (agnhost connect's job, and `sockctl matrix`'s, without four RPCs per
// probe). Each probe resolves its target (numeric hosts and ports without a
// lookup, names on the ResolverPool), checks the policy, connects, sends its
// payload, and waits for the echo when asked, all within its own timeout;
// its class comes from the errno (or the resolver's status code), never
// from parsing messages. A TCP target may ask for TLS: after the connect a
// TLS client handshake (agent/tls.h, on the probe's own socket, driven by
// its readiness waits), then the payload and its echo over TLS; a failed or
// timed-out handshake ends the probe kTls ("TLS handshake failed: " and
// OpenSSL's words). The handshake counts inside the probe's timeout (and
// the spec's handshake_timeout, when shorter).
//
//   Prober prober(io, {.policy = &policy, .resolver = &pool});
//   uint64_t token = prober.Start(spec, [](absl::StatusOr<ProbeReport> r) {
//     ...  // On the loop thread, once.
//   });
//
// Owns: the calls in progress and their probes' sockets and timers. Its own
// sockets are not the engine's connections: they are not listed, emit no
// events and do not count against max_connections; instead a call holds at
// most `max_concurrency` sockets and at most `max_calls` calls run at once
// (so at most max_calls x max_concurrency sockets, 4 x 256 by default).
//
// Threads: Start and Cancel from any thread (they post to the loop);
// everything else, and every handler, runs on the loop thread, touching only
// the prober's own state, so no engine lock is taken. Shutdown from the loop
// thread, or from any thread once the loop no longer runs.
//
// Bounds (each refused with INVALID_ARGUMENT naming the field): at most
// `max_targets` targets, payloads of at most `max_payload_bytes` each and
// `max_total_payload_bytes` together, a timeout of at most `max_timeout`;
// TLS only on TCP targets, and a TLS spec TlsClientContext::Create accepts
// ("targets[3].tls.ca_pem: ..."), and at most `max_tls_specs` distinct TLS
// specs. Targets with the same TLS spec share one OpenSSL context (each
// host its own name over it), made by Start on the calling thread.
// A call beyond `max_calls` is RESOURCE_EXHAUSTED. A call ends by its
// deadline: probes still running end TIMEOUT, probes not started end
// TIMEOUT "not started".
#ifndef SOCKAGENT_AGENT_PROBER_H_
#define SOCKAGENT_AGENT_PROBER_H_

#include <asio.hpp>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/engine.h"
#include "agent/policy.h"
#include "agent/resolver.h"

namespace sockagent {

struct ProberOptions {
  const Policy* policy = nullptr;    // Not owned; null: allow all.
  ResolverPool* resolver = nullptr;  // Not owned; null: numeric only.
  size_t max_calls = 4;
  size_t max_targets = 1024;
  size_t max_concurrency = 256;
  size_t max_payload_bytes = 64 * 1024;
  size_t max_total_payload_bytes = 1024 * 1024;
  // Distinct TLS settings (trust, CA, client certificate, ...) in one call:
  // each is an OpenSSL context to build. Hosts are free (one context serves
  // every host with the same settings).
  size_t max_tls_specs = 16;
  absl::Duration max_timeout = absl::Seconds(60);
};

class Prober {
 public:
  // `io` is the loop's context; it and the options' pointees outlive this.
  Prober(asio::io_context& io, ProberOptions options);
  ~Prober();

  Prober(const Prober&) = delete;
  Prober& operator=(const Prober&) = delete;

  // Checks `spec` (on the calling thread: a bad one is answered at once,
  // through `done`) and starts the call on the loop. Returns a token for
  // Cancel. `done` runs exactly once, on the loop thread (or in Shutdown).
  uint64_t Start(ProbeSpec spec, Done<absl::StatusOr<ProbeReport>> done);
  // Ends the call at once: its probes' sockets are closed and `done` gets
  // CANCELLED. Unknown or finished tokens are ignored. Any thread.
  void Cancel(uint64_t token);
  // Ends every call with UNAVAILABLE "agent shutting down".
  void Shutdown();
  // OpenSSL client contexts made so far (one per distinct spec per call). Any
  // thread.
  uint64_t tls_contexts_made() const { return tls_contexts_made_.load(); }

  struct Call;   // prober.cc
  struct Alive;  // prober.cc

 private:
  void Begin(uint64_t token, std::shared_ptr<Call> call);
  // Starts probes while the call has room for them; finishes it when all
  // ended.
  void Fill(uint64_t token, const std::shared_ptr<Call>& call);
  void Finish(uint64_t token, absl::Status status);

  asio::io_context& io_;
  const ProberOptions options_;
  std::atomic<size_t> calls_{0};  // Admitted and not yet finished.
  std::atomic<uint64_t> next_token_{1};
  std::atomic<uint64_t> tls_contexts_made_{0};
  // Loop thread only.
  absl::flat_hash_map<uint64_t, std::shared_ptr<Call>> running_;
  // Lets resolver callbacks (pool threads) find out whether the prober, and
  // with it `io_`, is still there before posting to it.
  std::shared_ptr<Alive> alive_;
};

}  // namespace sockagent

#endif  // SOCKAGENT_AGENT_PROBER_H_
