// Parsing and checks of the daemon's command line that deserve tests of
// their own: the --listen address and flag-name spelling.
#ifndef SOCKAGENT_SERVICE_DAEMON_OPTIONS_H_
#define SOCKAGENT_SERVICE_DAEMON_OPTIONS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace sockagent {

// --listen when none is given: the owner-only UNIX socket of
// proto/local_agent_socket.h.
std::string DefaultListen();

struct ListenAddress {
  std::string host;       // Without brackets; empty for UNIX.
  uint16_t port = 0;      // 0: pick one.
  std::string unix_path;  // Set for "unix:/path".
  bool loopback = false;  // 127.0.0.0/8, ::1, "localhost" or a UNIX socket.

  // gRPC's target syntax: "127.0.0.1:7878", "[::1]:0", "unix:/path".
  std::string GrpcTarget() const;
  // As GrpcTarget, with `actual_port` in place of the port.
  std::string Display(int actual_port) const;
};

// Accepts "HOST:PORT", "[IPV6]:PORT" and "unix:/absolute/path". HOST is an
// IP literal or "localhost" (names other than localhost are refused: the
// agent must know what it exposes). INVALID_ARGUMENT with the reason
// otherwise.
absl::StatusOr<ListenAddress> ParseListenAddress(absl::string_view text);

// Makes `dir` the private directory of the default socket: creates it with
// mode 0700 if missing; refuses (FAILED_PRECONDITION, saying why) one that
// is not a directory, is owned by another user, or that group or others may
// write to.
absl::Status PreparePrivateDir(const std::string& dir);

// Before serving on UNIX socket `path`: FAILED_PRECONDITION when an agent
// (anything accepting connections) already serves there, so a second
// daemon does not silently take over a live socket; a stale socket file
// left by a killed agent is fine (gRPC replaces it).
absl::Status CheckUnixSocketFree(const std::string& path);

// Serialises daemons on UNIX socket `path`: opens `path`.lock
// (O_NOFOLLOW|O_CREAT|O_CLOEXEC, mode 0600; never unlinked, so every daemon
// locks the same file) and takes an exclusive flock on it without waiting.
// Returns the descriptor, which the caller keeps open for its lifetime (the
// kernel drops the lock when the process ends, even on kill -9).
// FAILED_PRECONDITION when another process holds it ("another sockagentd
// serves or is starting on unix:PATH") or the lock file cannot be opened
// (a symbolic link there is refused).
absl::StatusOr<int> LockUnixSocketPath(const std::string& path);

}  // namespace sockagent

#endif  // SOCKAGENT_SERVICE_DAEMON_OPTIONS_H_
