#include "service/log_limiter.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/strip.h"

namespace sockagent {

LogLimiter::LogLimiter(LogLimiterOptions options)
    : options_(std::move(options)) {
  if (options_.max_keys == 0) options_.max_keys = 1;
}

void LogLimiter::SetInterval(absl::Duration interval) {
  absl::MutexLock lock(&mu_);
  options_.interval = interval;
}

size_t LogLimiter::Tracked() {
  absl::MutexLock lock(&mu_);
  return entries_.size();
}

LogLimiter::Decision LogLimiter::Count(Entry& e, absl::string_view key,
                                       absl::Time now) {
  Decision d;
  d.key = std::string(key);
  if (now - e.window_start < options_.interval) {
    ++e.suppressed;
    return d;
  }
  d.log = true;
  d.suppressed = e.suppressed;
  e.window_start = now;
  e.suppressed = 0;
  return d;
}

void LogLimiter::SweepExpired(absl::Time now) {
  if (now - last_sweep_ < options_.interval) return;
  last_sweep_ = now;
  // An expired entry's suppressed lines are not reported: its count is
  // lost, as it would be if that peer never came back.
  const absl::Duration interval = options_.interval;
  absl::erase_if(entries_, [&](const auto& kv) {
    return now - kv.second.window_start >= interval;
  });
}

LogLimiter::Decision LogLimiter::Admit(absl::string_view key, absl::Time now) {
  absl::MutexLock lock(&mu_);
  if (auto it = entries_.find(key); it != entries_.end()) {
    return Count(it->second, key, now);
  }
  if (entries_.size() >= options_.max_keys) SweepExpired(now);
  if (entries_.size() >= options_.max_keys) {
    if (!overflow_used_) {
      overflow_used_ = true;
      overflow_.window_start = now;
      Decision d;
      d.log = true;
      d.key = std::string(kOverflowKey);
      return d;
    }
    return Count(overflow_, kOverflowKey, now);
  }
  entries_.emplace(key, Entry{now, 0});
  Decision d;
  d.log = true;
  d.key = std::string(key);
  return d;
}

std::string PeerIp(absl::string_view peer) {
  absl::string_view rest = peer;
  if (!absl::ConsumePrefix(&rest, "ipv4:") &&
      !absl::ConsumePrefix(&rest, "ipv6:")) {
    return std::string(peer);
  }
  // "ADDR:PORT"; an IPv6 ADDR is bracketed, as "[...]" or, URI-escaped
  // (gRPC 1.51), "%5B...%5D".
  const size_t colon = rest.rfind(':');
  if (colon != absl::string_view::npos) rest = rest.substr(0, colon);
  if (absl::ConsumePrefix(&rest, "[")) {
    absl::ConsumeSuffix(&rest, "]");
  } else if (absl::ConsumePrefix(&rest, "%5B") ||
             absl::ConsumePrefix(&rest, "%5b")) {
    if (!absl::ConsumeSuffix(&rest, "%5D")) absl::ConsumeSuffix(&rest, "%5d");
  }
  return std::string(rest);
}

}  // namespace sockagent
