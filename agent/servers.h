// Servers: starting, binding, accepting on and stopping the engine's
// servers. Start validates a spec, resolves its bind address (through the
// Connector), checks the bind policy, settles a named server (the same
// server again, ALREADY_EXISTS, or a replace), binds every address (TCP,
// UDP, UNIX with safe stale-socket replacement) and activates it; accepting
// drains a listener's queue (accept4, bounded per wakeup, backing off when
// out of descriptors) and hands each connection its behaviour; Stop closes
// listeners and UDP sockets and, when asked, the servers' connections.
// It owns no state of its own: servers live in the Registry.
//
// Lock: a member of EngineImpl, guarded by the engine lock; every method
// is called with it held (the public StartServer/StopServers through
// PostWork, shutdown, TTL and accept handlers), and its handlers take it
// (EngineImpl::Locked). Entry points assert it for clang's analysis
// (AssertEngineLock).
//
//   servers_.Start(std::move(spec), std::move(done));  // StartServer
//   servers_.StopMatching(selector, /*close_connections=*/true, done);
#ifndef SOCKAGENT_AGENT_SERVERS_H_
#define SOCKAGENT_AGENT_SERVERS_H_

#include <sys/socket.h>

#include <asio.hpp>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "agent/engine.h"
#include "agent/engine_objects.h"
#include "agent/engine_sockets.h"

namespace sockagent {
namespace engine_internal {

class EngineImpl;

class Servers {
 public:
  explicit Servers(EngineImpl& engine) : engine_(engine) {}
  Servers(const Servers&) = delete;
  Servers& operator=(const Servers&) = delete;

  // StartServer's work.
  void Start(ServerSpec spec, Done<absl::StatusOr<ServerInfo>> done);
  // StopServers' work: every listening server `selector` matches.
  void StopMatching(const Selector& selector, bool close_connections,
                    Done<absl::StatusOr<StopResult>> done);
  // Closes the listeners and UDP sockets (ending UDP sessions with
  // `conn_reason`, counted in `closed`); accepted stream connections stay
  // (StopMatching closes them, in one pass for all stopped servers).
  void Stop(Server& s, absl::string_view reason, CloseReason conn_reason,
            uint64_t* closed);

 private:
  void BindIp(ServerSpec spec,
              const std::shared_ptr<const std::string>& greeting,
              const IpEndpoints& endpoints,
              Done<absl::StatusOr<ServerInfo>> done);
  absl::Status BindAll(Server& s, const ServerSpec& spec,
                       const IpEndpoints& endpoints, bool* retry);
  absl::Status BindUnix(Server& s, const ServerSpec& spec);
  // Named specs, with the engine lock held just before binding: answers
  // `done` and returns true when nothing is to bind (the same server is
  // there, its spec differs and no replace, or a dry run); otherwise sets
  // *replacing to the server to stop first (or nullptr), *difference to
  // how it differs, and returns false.
  bool SettleName(const ServerSpec& spec, absl::string_view greeting,
                  Done<absl::StatusOr<ServerInfo>>& done, Server** replacing,
                  std::string* difference);
  // Right before binding: SettleName, the server and metrics-slot bounds
  // checked again (a lookup may have run since Start), and the server being
  // replaced stopped. False: `done` was answered.
  bool ReadyToBind(const ServerSpec& spec, absl::string_view greeting,
                   Done<absl::StatusOr<ServerInfo>>& done, Server** replacing,
                   std::string* difference);
  void Activate(std::unique_ptr<Server> server,
                Done<absl::StatusOr<ServerInfo>> done,
                StartOutcome outcome = StartOutcome::kCreated,
                std::string difference = "");

  // servers_accept.cc: accepting on TCP and UNIX listeners.
  void ArmAccept(Server& s, size_t index);
  void OnAcceptReady(uint64_t server_num, size_t index,
                     const asio::error_code& ec);
  // `fd`: a socket from accept4 (non-blocking, close-on-exec), now ours;
  // `remote`/`remote_len`: the peer's address as accept4 reported it.
  void OnAccepted(Server& s, const Listener& listener, int fd,
                  const sockaddr_storage& remote, socklen_t remote_len);

  EngineImpl& engine_;
};

}  // namespace engine_internal
}  // namespace sockagent

#endif  // SOCKAGENT_AGENT_SERVERS_H_
