// The streaming calls of one kind in progress (Watch, Stream), so that
// shutdown can end every one of them and refuse new ones, and a cap can
// refuse one too many. `Shared` is what a call's reactor shares with the
// completions that may outlive it (it has a mutex and a reactor pointer
// that turns null when the reactor is gone); the registry holds only that.
//
//   if (absl::Status s = registry.Add(shared); !s.ok()) refuse the call;
//   for (auto& shared : registry.EndAll()) { /* lock shared->mu, end */ }
#ifndef SOCKAGENT_SERVICE_CALL_REGISTRY_H_
#define SOCKAGENT_SERVICE_CALL_REGISTRY_H_

#include <cstddef>
#include <limits>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"

namespace sockagent {

template <typename Shared>
class CallRegistry {
 public:
  // Adds a call: UNAVAILABLE "agent shutting down" once EndAll ran, or
  // `full` (which must not be OK) when `max` calls are in progress. Any
  // thread.
  absl::Status Add(std::shared_ptr<Shared> call,
                   size_t max = std::numeric_limits<size_t>::max(),
                   absl::Status full = absl::ResourceExhaustedError("full")) {
    absl::MutexLock lock(&mu_);
    if (ended_) return absl::UnavailableError("agent shutting down");
    if (live_.size() >= max) return full;
    live_.insert(std::move(call));
    return absl::OkStatus();
  }

  // Removes a call as its reactor is done; true when none is left. Any
  // thread.
  bool Remove(const std::shared_ptr<Shared>& call) {
    absl::MutexLock lock(&mu_);
    live_.erase(call);
    return live_.empty();
  }

  // Refuses every later Add and returns the calls in progress, for the
  // caller to end each one. Any thread.
  std::vector<std::shared_ptr<Shared>> EndAll() {
    absl::MutexLock lock(&mu_);
    ended_ = true;
    return {live_.begin(), live_.end()};
  }

 private:
  absl::Mutex mu_;
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  absl::flat_hash_set<std::shared_ptr<Shared>> live_ ABSL_GUARDED_BY(mu_);
};

}  // namespace sockagent

#endif  // SOCKAGENT_SERVICE_CALL_REGISTRY_H_
