// Rate limit for repeated log lines (auth failures, policy refusals): at most
// one line per key (a peer's IP address) per interval; the lines not written
// are counted and the count goes on the key's next written line. It limits
// the log, never the check that produced the line.
//
// Bounded: at most `max_keys` keys are tracked; beyond that, keys share one
// overflow entry (kOverflowKey), so the log still gets at most
// max_keys + 1 lines per interval whatever the number of peers. Entries
// whose interval has passed are forgotten (swept when the table is full, at
// most once per interval).
//
//   LogLimiter limiter({.interval = absl::Seconds(10)});
//   LogLimiter::Decision d = limiter.Admit(PeerIp(context->peer()), Now());
//   if (d.log) LogEvent(..., {"suppressed", d.suppressed});
#ifndef SOCKAGENT_SERVICE_LOG_LIMITER_H_
#define SOCKAGENT_SERVICE_LOG_LIMITER_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace sockagent {

struct LogLimiterOptions {
  absl::Duration interval = absl::Seconds(10);
  size_t max_keys = 1024;
};

class LogLimiter {
 public:
  // The key peers share once max_keys are tracked.
  static constexpr absl::string_view kOverflowKey = "other-peers";

  struct Decision {
    bool log = false;
    // Lines of this key not written since its last written one.
    uint64_t suppressed = 0;
    // The key counted: the one given, or kOverflowKey.
    std::string key;
  };

  explicit LogLimiter(LogLimiterOptions options = {});

  // Any thread.
  Decision Admit(absl::string_view key, absl::Time now);
  // Interval of later Admit calls. Any thread.
  void SetInterval(absl::Duration interval);
  // Keys tracked now (tests). Any thread.
  size_t Tracked();

 private:
  struct Entry {
    absl::Time window_start;
    uint64_t suppressed = 0;
  };
  // Admit for an existing entry.
  Decision Count(Entry& e, absl::string_view key, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SweepExpired(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Mutex mu_;
  LogLimiterOptions options_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);
  Entry overflow_ ABSL_GUARDED_BY(mu_);
  bool overflow_used_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time last_sweep_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

// The IP part of a gRPC peer string: "ipv4:127.0.0.1:40312" -> "127.0.0.1",
// "ipv6:[::1]:40312" and "ipv6:%5B::1%5D:40312" -> "::1"; other peers (UNIX
// sockets) unchanged. Many connections from one host then count as one.
std::string PeerIp(absl::string_view peer);

}  // namespace sockagent

#endif  // SOCKAGENT_SERVICE_LOG_LIMITER_H_
