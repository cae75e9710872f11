// Relays TCP control connections to gRPC through a socketpair, so the
// daemon sees each connection's HTTP/2 frames before gRPC does
// (h2_guard.h: RST_STREAM buckets, streams before the SETTINGS ack).
//
//   client --TCP-- A [relay] B ==socketpair== C -- gRPC
//
// Every byte is forwarded unchanged and in order, both ways. A FIN from the
// client becomes shutdown(SHUT_WR) on B; gRPC closing C (B reads EOF) closes
// A once what gRPC wrote was passed on. Bounded: one buffer of
// `buffer_bytes` per direction and connection, allocated only while that
// direction has data in flight (an idle connection holds none); a direction
// reads again only after its buffer was written out, so a side that does not
// read stops the other side's reading (the kernel's buffers push back on the
// sender).
//
// When the agent-wide RST_STREAM bucket is empty, a connection that wants
// to pass one more RST_STREAM stops being read until a token is due (at
// most `agent_rst_per_second` resets per second reach gRPC, whatever the
// number of connections); a connection over its own bucket is closed and
// reported through `on_cut`.
//
// Open streams of connections without an authenticated call are bounded
// per connection and agent-wide (h2_guard.h, H2StreamBudget): the relay
// reads the agent's frame headers too (END_STREAM, RST_STREAM). A
// connection is authenticated once the flag given to Add() is set (the
// listener sets it when a call on it passes the token check) or, under
// mutual TLS, once its client certificate verified. When the agent-wide
// budget is spent, the unauthenticated connection holding the most open
// streams is cut.
//
// With `tls` set, the client side speaks TLS (control_tls.h): the relay
// does the server handshake (at most `handshake_timeout`, else the
// connection is closed) and relays the decrypted bytes. A failed handshake
// is reported through `on_tls_failure`.
//
// One thread (Asio) for all connections. Add() and Stop() from any thread;
// `on_cut` runs on the relay's thread.
#ifndef SOCKAGENT_SERVICE_CONTROL_RELAY_H_
#define SOCKAGENT_SERVICE_CONTROL_RELAY_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "service/h2_guard.h"

namespace sockagent {

class ControlTls;

struct ControlRelayOptions {
  H2GuardLimits limits;
  double agent_rst_per_second = 1000;
  double agent_rst_burst = 1000;
  size_t buffer_bytes = 128 * 1024;
  // Open streams of unauthenticated connections (`open` is ignored).
  H2StreamBudget streams;
  // Not owned; outlives the relay. Set: clients speak TLS.
  ControlTls* tls = nullptr;
  absl::Duration handshake_timeout = absl::Seconds(10);
};

class ControlRelay {
 public:
  // (key, seq, reason): the connection added with that key and seq was cut.
  using CutCallback =
      std::function<void(int key, uint64_t seq, absl::string_view reason)>;
  // (key, seq, what): that connection's TLS handshake failed.
  using TlsFailureCallback =
      std::function<void(int key, uint64_t seq, absl::string_view what)>;

  // (key, seq, client_cn): that connection's mutual-TLS client certificate
  // verified and names this subject CN (ClientCommonName). Called before
  // any of the connection's bytes reach gRPC.
  using TlsClientCallback =
      std::function<void(int key, uint64_t seq, absl::string_view client_cn)>;

  ControlRelay(const ControlRelayOptions& options, CutCallback on_cut,
               TlsFailureCallback on_tls_failure = nullptr,
               TlsClientCallback on_tls_client = nullptr);
  ~ControlRelay();  // Stop(); every relayed connection is closed.

  ControlRelay(const ControlRelay&) = delete;
  ControlRelay& operator=(const ControlRelay&) = delete;

  // Starts the relay thread. Once.
  void Start();
  // Relays `client_fd` (a TCP socket, ownership taken) and `grpc_side_fd`
  // (our end of the socketpair, ownership taken). `authenticated` is set
  // (by anyone, any thread) once a call on the connection passed the token
  // check; the relay sets it itself under mutual TLS. Any thread.
  void Add(int client_fd, int grpc_side_fd, int key, uint64_t seq,
           std::shared_ptr<std::atomic<bool>> authenticated);
  // Unauthenticated open streams of all connections now (tests, logs).
  // Any thread.
  uint32_t unauthenticated_streams() const;
  // Stops the thread and closes every connection. Idempotent.
  void Stop();
  // When a connection last had to wait for the agent-wide RST_STREAM
  // bucket (InfinitePast if never). Any thread.
  absl::Time last_throttled() const;

  class Impl;  // In control_relay.cc (its connections need to name it).

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace sockagent

#endif  // SOCKAGENT_SERVICE_CONTROL_RELAY_H_
