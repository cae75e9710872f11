// Connector: the engine's outgoing side. It owns the OpenClient calls in
// progress (resolve, then try each address in order until one connects, all
// under one deadline) and the engine's name lookups, OpenClient's and
// StartServer's. Numeric hosts and ports never reach a resolver; names go to
// the ResolverPool given to Engine::Create, the one pool the daemon also
// answers the Resolve RPC from (--resolver-threads, --resolver-queue).
//
// Lock: a member of EngineImpl, guarded by the engine lock like every engine
// object. Every method is called with that lock held (a public Engine call
// running inline on a gRPC thread, or a handler on the loop thread); its
// own Asio handlers take it (EngineImpl::Locked). Pool threads never touch
// the Connector's state: they post each result to the loop, which finds the
// lookup by number (or nothing: it was cancelled or timed out).
//
//   connector.Open(spec, deadline, [](absl::StatusOr<ConnectionInfo> c) {});
//   connector.Resolve(query, deadline, [](absl::StatusOr<IpEndpoints> e) {});
//
// Bounds: at most kMaxNameLookups of the engine's lookups at once, and
// connects in progress count against max_connections. When the pool's queue
// is full (its queue is shared with Resolve RPCs), a lookup is not queued:
// it answers at once RESOURCE_EXHAUSTED "resolve NAME: too many name lookups
// are in progress; retry later", and the OpenClient or StartServer that
// needed it fails with that status.
//
// Lifetime: the pool must outlive the engine. A lookup still running in libc
// when the engine goes away (the pool's threads cannot be interrupted) ends
// on the pool; its result finds the Connector gone and is dropped.
#ifndef SOCKAGENT_AGENT_CONNECTOR_H_
#define SOCKAGENT_AGENT_CONNECTOR_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/engine.h"
#include "agent/engine_sockets.h"
#include "agent/resolver.h"
#include "agent/unix_path.h"

namespace sockagent {
namespace engine_internal {

class EngineImpl;

struct LookupQuery {
  std::string host;
  std::string port;  // Decimal or a service name.
  Transport transport = Transport::kTcp;
  Family family = Family::kUnspecified;
  // Servers: "" means every local address of the family, and the family is
  // a filter. Clients: "" is invalid and the family only orders results.
  bool passive = false;
};

// An OpenClient in progress.
struct ClientAttempt {
  uint64_t id = 0;
  ClientSpec spec;
  Done<absl::StatusOr<ConnectionInfo>> done;
  std::unique_ptr<Timer> timer;  // min(connect timeout, RPC deadline).
  absl::Duration timeout;
  absl::Time deadline = absl::InfiniteFuture();  // The RPC's (TLS caps by it).
  uint64_t resolve_id = 0;  // Non-zero while the name lookup runs.
  std::string target;       // "host:port" or "unix:/path", for messages.
  std::vector<StreamProtocol::endpoint> endpoints;
  size_t next = 0;     // Next endpoint to try.
  std::string trying;  // Address being tried now, for messages.
  absl::Status last_error;
  std::optional<asio::ip::address> source_address;
  uint16_t source_port = 0;
  std::unique_ptr<StreamSocket> stream;
  std::unique_ptr<UdpSocket> udp;
  UniqueFd unix_target;  // UNIX: the O_PATH file connect() goes through.
  // A proxy's upstream dial: the downstream connection's number (0: an
  // OpenClient). The connection is filed as its upstream half.
  uint64_t proxy_for = 0;
};

class Connector final {
 public:
  // `engine` owns this Connector and `pool` outlives the engine.
  Connector(EngineImpl& engine, ResolverPool& pool);
  // After the loop thread is joined: results of lookups still running
  // arrive to nobody and are dropped.
  ~Connector();
  Connector(const Connector&) = delete;
  Connector& operator=(const Connector&) = delete;

  // OpenClient: validates, resolves, connects; `done` gets the new
  // connection (EngineImpl::AddOpenedConn) or why not. May answer inline.
  // `proxy_for`: see ClientAttempt.
  void Open(ClientSpec spec, absl::Time deadline,
            Done<absl::StatusOr<ConnectionInfo>> done, uint64_t proxy_for = 0);

  // Completes inline (returning 0) when host and port are numeric, or when
  // the lookup cannot be queued (RESOURCE_EXHAUSTED, see above); otherwise
  // returns an id for CancelResolve. `deadline`: a lookup still queued then
  // is not run (DEADLINE_EXCEEDED).
  uint64_t Resolve(LookupQuery query, absl::Time deadline,
                   Done<absl::StatusOr<IpEndpoints>> done);
  // The lookup runs on (libc cannot be interrupted); `done` never runs.
  void CancelResolve(uint64_t resolve_id);

  // Connects in progress (max_connections counts them).
  size_t attempts() const { return attempts_.size(); }

  // The upstream dial of proxied downstream `down_num`, if one is still in
  // progress, ends at once without answering: its lookup is forgotten and
  // its socket closed. Returns what it was dialling ("" when there was no
  // dial).
  std::string CancelProxyDial(uint64_t down_num);

  // Answers every attempt and lookup in progress with "agent shutting down".
  void Shutdown();

 private:
  struct PendingResolve {
    LookupQuery query;
    std::optional<asio::ip::address> literal;  // Numeric host, named port.
    Done<absl::StatusOr<IpEndpoints>> done;
  };
  // What a pool thread's callback holds (by shared_ptr: it may run after
  // the engine is gone): the Connector to post results to, null once it is
  // destroyed.
  struct Inbox {
    absl::Mutex mu;
    Connector* connector ABSL_GUARDED_BY(mu) = nullptr;
  };

  // A pool thread: posts the result to the loop.
  void Deliver(uint64_t resolve_id,
               absl::StatusOr<std::vector<AddressEntry>> entries);
  void OnResolved(uint64_t resolve_id,
                  absl::StatusOr<std::vector<AddressEntry>> entries);
  void OnClientResolved(uint64_t attempt_id,
                        absl::StatusOr<IpEndpoints> endpoints);
  void ConnectNext(ClientAttempt& a);
  void OnClientConnected(uint64_t attempt_id, const asio::error_code& ec);
  void OnClientTimeout(uint64_t attempt_id);
  void FinishAttempt(uint64_t attempt_id, absl::StatusOr<ConnectionInfo> r);
  // Ends the attempt without answering: its `done`, for whoever answers
  // later (a TLS handshake). Null when the attempt is gone.
  Done<absl::StatusOr<ConnectionInfo>> ReleaseAttempt(uint64_t attempt_id);
  // Opens a socket for `to`, sets the options, binds the source. `*fatal`:
  // the error would repeat for every address (bad option or source).
  absl::Status OpenClientSocket(ClientAttempt& a,
                                const StreamProtocol::endpoint& to,
                                bool* fatal);

  EngineImpl& engine_;
  ResolverPool& pool_;
  const std::shared_ptr<Inbox> inbox_ = std::make_shared<Inbox>();
  uint64_t next_attempt_id_ = 1;
  uint64_t next_resolve_id_ = 1;
  absl::flat_hash_map<uint64_t, std::unique_ptr<ClientAttempt>> attempts_;
  // Proxy dials in progress: downstream number -> attempt id.
  absl::flat_hash_map<uint64_t, uint64_t> proxy_attempts_;
  absl::flat_hash_map<uint64_t, std::unique_ptr<PendingResolve>> resolves_;
};

}  // namespace engine_internal
}  // namespace sockagent

#endif  // SOCKAGENT_AGENT_CONNECTOR_H_
