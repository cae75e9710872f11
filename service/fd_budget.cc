#include "service/fd_budget.h"

#include <sys/resource.h>

#include <algorithm>
#include <cerrno>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "service/log.h"

namespace sockagent {

uint64_t RaiseNoFileLimit() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return 1024;
  if (lim.rlim_cur < lim.rlim_max) {
    rlimit raised = lim;
    raised.rlim_cur = lim.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) lim = raised;
  }
  return lim.rlim_cur == RLIM_INFINITY ? uint64_t{1} << 20 : lim.rlim_cur;
}

FdBudget ComputeFdBudget(uint64_t limit, uint64_t max_control_connections,
                         uint64_t max_servers, uint64_t max_connections) {
  FdBudget b;
  b.limit = limit;
  b.control_fds =
      kFdsPerControlConnection * max_control_connections + kControlBaseFds;
  const uint64_t reserved = b.control_fds + kProcessBaseFds;
  b.engine_fds = limit > reserved ? limit - reserved : 0;
  const uint64_t listeners = 2 * max_servers;
  const uint64_t fits = b.engine_fds > listeners ? b.engine_fds - listeners : 1;
  b.max_connections = std::max<uint64_t>(1, std::min(max_connections, fits));
  b.lowered = b.max_connections < max_connections;
  return b;
}

namespace {

struct Site {
  absl::Time last_line = absl::InfinitePast();
  uint64_t suppressed = 0;
};

absl::Mutex g_mu;
absl::flat_hash_map<std::string, Site>* g_sites ABSL_GUARDED_BY(g_mu) = nullptr;

}  // namespace

void LogDescriptorExhaustion(const char* where, int err) {
  constexpr absl::Duration kInterval = absl::Seconds(10);
  uint64_t suppressed = 0;
  {
    absl::MutexLock lock(&g_mu);
    if (g_sites == nullptr)
      g_sites = new absl::flat_hash_map<std::string, Site>;
    Site& site = (*g_sites)[where];
    const absl::Time now = absl::Now();
    if (now - site.last_line < kInterval) {
      ++site.suppressed;
      return;
    }
    site.last_line = now;
    suppressed = site.suppressed;
    site.suppressed = 0;
  }
  LogEvent(LogLevel::kWarn, "fd_exhausted",
           {{"where", where},
            {"error", err == ENFILE ? "ENFILE" : "EMFILE"},
            {"suppressed", absl::StrCat(suppressed)},
            {"msg", err == ENFILE
                        ? "the system's file table is full; connections are "
                          "refused until descriptors are freed"
                        : "this process is out of file descriptors "
                          "(RLIMIT_NOFILE); connections are refused until "
                          "descriptors are freed"}});
}

}  // namespace sockagent
