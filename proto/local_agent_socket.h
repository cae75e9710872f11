// Where an agent listens when no --listen is given, and where sockctl looks
// for it when no --agent is given: a UNIX socket that only its owner may
// use (mode 0600 in a 0700 directory), so other local users cannot drive an
// agent run by root (Docker's model). The daemon and the CLI both compute it
// here, the same way; header-only, no dependencies, so that cli/ (which
// depends on proto/ only) and service/ can share it.
//
//   root:       /run/sockagent/sockagentd.sock
//   other user: $XDG_RUNTIME_DIR/sockagent/sockagentd.sock when
//               XDG_RUNTIME_DIR is an absolute path, else
//               /tmp/sockagent-<uid>/sockagentd.sock
#ifndef SOCKAGENT_PROTO_LOCAL_AGENT_SOCKET_H_
#define SOCKAGENT_PROTO_LOCAL_AGENT_SOCKET_H_

#include <stdlib.h>
#include <unistd.h>

#include <string>

namespace sockagent {

inline constexpr char kLocalAgentSocketName[] = "sockagentd.sock";

// The directory holding the default socket, for the effective user.
inline std::string LocalAgentSocketDir() {
  const uid_t uid = geteuid();
  if (uid == 0) return "/run/sockagent";
  const char* runtime = getenv("XDG_RUNTIME_DIR");
  if (runtime != nullptr && runtime[0] == '/') {
    return std::string(runtime) + "/sockagent";
  }
  return "/tmp/sockagent-" + std::to_string(uid);
}

inline std::string LocalAgentSocketPath() {
  return LocalAgentSocketDir() + "/" + kLocalAgentSocketName;
}

}  // namespace sockagent

#endif  // SOCKAGENT_PROTO_LOCAL_AGENT_SOCKET_H_
