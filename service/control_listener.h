// The control API's own listening socket and accept loop (TCP, TLS and
// UNIX listeners). gRPC 1.51 has no connection cap and no
// defence against HTTP/2 "rapid reset" (HEADERS then RST_STREAM, over and
// over: each stream leaves a ~20 KB call queued behind the callback
// server's one-at-a-time matching), so the daemon accepts the connections
// itself and hands each descriptor to gRPC (grpc::AddInsecureChannelFromFd),
// keeping a duplicate of it to watch and, when needed, shutdown(2) it:
//
// - at most `max_connections` control connections. At the cap, a new
//   connection evicts the oldest one that has not yet made an
//   authenticated SocketAgent call (idle hoarders go first, working clients
//   stay); when every connection is authenticated the new one is closed.
//   TLS connections count from accept(), handshake included.
// - a connection whose calls end cancelled more than
//   `max_cancels_per_second` times within one second is cut (the rapid
//   reset signature; a real client cancels a handful of calls).
// - after a connection is cut, freed heap memory is given back to the
//   kernel (malloc_trim) while the queued calls drain.
// - accept failing with EMFILE/ENFILE is logged (rate-limited) and the
//   pending connection is refused through a spare descriptor, so the
//   listen queue does not spin.
//
// - TCP connections reach gRPC through the daemon's relay
//   (control_relay.h), which counts HTTP/2 frames before gRPC parses them:
//   a connection resetting streams faster than its RST_STREAM bucket is
//   closed, and all connections together pass at most the agent-wide rate
//   of resets (the others wait). This is what bounds a rapid-reset flood;
//   the cancelled-calls cut above acts only after gRPC queued the calls.
//   The relay also bounds the open streams of connections that have not
//   made an authenticated call (per connection and agent-wide).
// - With TLS (options.relay.tls) the relay terminates TLS itself
//   (control_tls.h) and relays the decrypted HTTP/2 the same way; UNIX
//   connections are then relayed too. Failed handshakes are logged
//   (event=tls_handshake_failure, rate-limited per peer IP).
//
// gRPC names such a connection's peer "fd:N"; PeerAddress maps it back to
// "ipv4:127.0.0.1:40312" for logs.
//
// TCP sockets are bound without SO_REUSEPORT: a second daemon on the same
// address fails with "address in use". A UNIX socket is created owner-only
// (0600), an existing socket file is replaced only when nothing accepts on
// it (the caller holds the path's lock, daemon_options.h), and on exit the
// path is unlinked only if it is still the socket this process bound.
//
//   auto listener = ControlListener::Bind(address, options);
//   ... BuildAndStart ...
//   (*listener)->Start([&](int fd) { grpc::AddInsecureChannelFromFd(s, fd); });
//   ... (*listener)->Stop();  // before the server shuts down
#ifndef SOCKAGENT_SERVICE_CONTROL_LISTENER_H_
#define SOCKAGENT_SERVICE_CONTROL_LISTENER_H_

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "service/control_relay.h"
#include "service/daemon_options.h"
#include "service/log_limiter.h"

namespace sockagent {

struct ControlListenerOptions {
  uint32_t max_connections = 256;
  uint32_t max_cancels_per_second = 100;
  // TCP connections are relayed through a socketpair and their HTTP/2
  // frames checked before gRPC reads them (control_relay.h). UNIX ones are
  // handed to gRPC directly (the socket is owner-only), unless TLS is on.
  bool relay_tcp = true;
  ControlRelayOptions relay;
};

class ControlListener {
 public:
  // Binds and listens. FAILED_PRECONDITION naming the address and the
  // cause ("address in use: is another sockagentd serving there?").
  static absl::StatusOr<std::unique_ptr<ControlListener>> Bind(
      const ListenAddress& address, const ControlListenerOptions& options);
  ~ControlListener();  // Stop(), then unlinks the UNIX socket it bound.

  ControlListener(const ControlListener&) = delete;
  ControlListener& operator=(const ControlListener&) = delete;

  // The bound TCP port (0 for UNIX).
  int port() const { return port_; }

  // Starts the accept thread; `hand_off` receives each accepted descriptor
  // (gRPC owns it from then on). Call once, after the server started.
  void Start(std::function<void(int fd)> hand_off);

  // Stops accepting and joins the thread. Open connections stay with gRPC
  // (its Shutdown ends them). Idempotent; call before the server shuts down.
  void Stop();

  // How a call on `peer` (gRPC's peer string) ended: `cancelled` by the
  // client or a broken connection, `authenticated` when it was a
  // SocketAgent call that passed the token check. Any thread.
  void OnCallEnded(absl::string_view peer, bool cancelled, bool authenticated);
  // A SocketAgent call on `peer` passed the token check as it started: the
  // connection is authenticated (kept at the cap, its streams no longer
  // limited). Any thread.
  void OnCallAuthenticated(absl::string_view peer);

  // "fd:N" -> the connection's address as gRPC would name it
  // ("ipv4:127.0.0.1:40312", "unix:"); other strings unchanged. Any thread.
  std::string PeerAddress(absl::string_view peer);
  // "fd:N" -> the subject CN of the connection's verified mutual-TLS client
  // certificate; "" when there is none. Any thread.
  std::string PeerClientCn(absl::string_view peer);

  // Open control connections (for tests and logs). Any thread.
  size_t connections();

 private:
  struct Conn {
    int watch_fd = -1;  // Our duplicate: watched for hang-up, shut down to cut.
    std::string address;
    std::string client_cn;  // Mutual TLS: the verified certificate's CN.
    uint64_t seq = 0;       // Accept order.
    // Set once a call passed the token check (or, under mutual TLS, by the
    // relay once the client certificate verified). Shared with the relay.
    std::shared_ptr<std::atomic<bool>> authenticated;
    bool cut = false;
    absl::Time window_start;
    uint32_t window_cancels = 0;
  };

  ControlListener(int fd, const ControlListenerOptions& options);
  void Loop();
  void AcceptReady();
  void Admit(int fd, std::string address);
  // Cuts `conn` (shutdown of both directions): gRPC then sees the
  // connection end and cancels its calls.
  void CutLocked(int key, Conn& conn, absl::string_view reason)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The relay closed connection (key, seq): log it as a cut. Relay thread.
  void OnRelayCut(int key, uint64_t seq, absl::string_view reason);
  // Connection (key, seq) failed its TLS handshake: log it (rate-limited
  // per peer IP). Relay thread.
  void OnTlsFailure(int key, uint64_t seq, absl::string_view what);
  // Connection (key, seq)'s client certificate verified: remember its CN
  // for the audit log. Relay thread.
  void OnTlsClient(int key, uint64_t seq, absl::string_view client_cn);

  const ControlListenerOptions options_;
  int listen_fd_ = -1;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  int spare_fd_ = -1;  // Closed to refuse a connection when out of fds.
  int port_ = 0;
  std::string unix_path_;  // Set for a UNIX listener.
  dev_t unix_dev_ = 0;
  ino_t unix_ino_ = 0;
  std::function<void(int)> hand_off_;
  std::unique_ptr<ControlRelay> relay_;  // TCP only (options_.relay_tcp).
  std::thread thread_;
  bool stopped_ = false;

  absl::Mutex mu_;
  // Keyed by gRPC's descriptor number (the N of "fd:N").
  absl::flat_hash_map<int, Conn> conns_ ABSL_GUARDED_BY(mu_);
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time last_cut_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Time last_refusal_log_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  uint64_t refusals_ ABSL_GUARDED_BY(mu_) = 0;
  LogLimiter tls_log_{{.interval = absl::Seconds(10)}};
};

// gRPC's peer string for logs: "fd:N" of the daemon's running control
// listener mapped to "ipv4:127.0.0.1:40312"; anything else unchanged. Any
// thread.
std::string DisplayPeer(absl::string_view grpc_peer);
// The verified mutual-TLS client CN of gRPC's peer "fd:N" on the running
// control listener; "" otherwise. Any thread.
std::string DisplayClientCn(absl::string_view grpc_peer);

}  // namespace sockagent

#endif  // SOCKAGENT_SERVICE_CONTROL_LISTENER_H_
