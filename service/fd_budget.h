// How sockagentd shares its file descriptors (RLIMIT_NOFILE) between the
// control plane and the socket engine, so that neither can starve the
// other, and the rate-limited log line written when descriptors run out.
//
// At start the soft limit is raised to the hard limit. Of that limit L:
//   control = 4 * max_control_connections + kControlBaseFds
//             (each relayed TCP control connection holds four descriptors:
//             the client's socket, both ends of the socketpair to gRPC and
//             the listener's watch; the base covers gRPC's own epoll and
//             wakeup fds, the listener, the relay, the log, the lock file),
//   engine  = L - control - kProcessBaseFds,
// and the engine's --max_connections is lowered to
//   engine - 2 * max_servers
// when it does not fit (a server may hold two listeners: IPv4 and IPv6).
// With the hard limit 20,000 and the defaults (256 control connections,
// 1,024 servers, 16,384 connections) nothing is lowered: control 1,088,
// engine 18,848 >= 16,384 + 2,048.
//
//   FdBudget b = ComputeFdBudget(RaiseNoFileLimit(), 256, 1024, 16384);
#ifndef SOCKAGENT_SERVICE_FD_BUDGET_H_
#define SOCKAGENT_SERVICE_FD_BUDGET_H_

#include <cstdint>

namespace sockagent {

inline constexpr uint64_t kControlBaseFds = 64;
inline constexpr uint64_t kFdsPerControlConnection = 4;
inline constexpr uint64_t kProcessBaseFds = 64;

// Raises the soft RLIMIT_NOFILE to the hard one (best effort); returns the
// soft limit in force afterwards.
uint64_t RaiseNoFileLimit();

struct FdBudget {
  uint64_t limit = 0;            // RLIMIT_NOFILE (soft).
  uint64_t control_fds = 0;      // Kept for the control plane.
  uint64_t engine_fds = 0;       // What the engine may use.
  uint64_t max_connections = 0;  // The engine's connection cap that fits.
  bool lowered = false;          // max_connections had to be lowered.
};

FdBudget ComputeFdBudget(uint64_t limit, uint64_t max_control_connections,
                         uint64_t max_servers, uint64_t max_connections);

// One warn line, event=fd_exhausted where=WHERE error=EMFILE|ENFILE, at
// most once per 10 s per call site, with the count of the events since the
// last line (suppressed=N). Any thread. Fits DescriptorExhaustionHook
// (agent/descriptor_exhaustion.h).
void LogDescriptorExhaustion(const char* where, int err);

}  // namespace sockagent

#endif  // SOCKAGENT_SERVICE_FD_BUDGET_H_
