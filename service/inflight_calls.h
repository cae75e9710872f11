// Calls in flight on the control API, by method, counted by a server
// interceptor: the daemon's shutdown waits for them (up to
// --shutdown-grace) instead of for idle client connections, and logs what
// held it.
//
// Open-ended streams that carry no work (grpc.health.v1.Health/Watch and
// server reflection) are not counted: shutdown ends them at once, as it ends
// Watch and Stream (AgentService::EndStreamingCalls).
//
//   InflightCalls& calls = ProcessInflightCalls();
//   if (!calls.AwaitIdle(deadline)) LogEvent(..., {{"held_by",
//   calls.Describe()}});
#ifndef SOCKAGENT_SERVICE_INFLIGHT_CALLS_H_
#define SOCKAGENT_SERVICE_INFLIGHT_CALLS_H_

#include <grpcpp/support/server_interceptor.h>

#include <cstddef>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace sockagent {

class InflightCalls {
 public:
  // Methods counted by name; calls of further methods (a client may name
  // any path) count under "other".
  static constexpr size_t kMaxMethods = 64;

  // True when calls of `method` are counted.
  static bool Counted(absl::string_view method);

  // Any thread.
  void Begin(absl::string_view method);
  void End(absl::string_view method);
  size_t Count();
  // Blocks until no call is in flight or `deadline` passed; true if none.
  bool AwaitIdle(absl::Time deadline);
  // "2 calls in flight: /sockagent.v1.SocketAgent/Receive x2", or "none".
  std::string Describe();

 private:
  absl::Mutex mu_;
  size_t total_ ABSL_GUARDED_BY(mu_) = 0;
  // Only methods with calls in flight.
  absl::flat_hash_map<std::string, size_t> by_method_ ABSL_GUARDED_BY(mu_);
};

// The daemon's counter, fed by RpcLogInterceptors().
InflightCalls& ProcessInflightCalls();

// A factory whose interceptors count each call in `calls` from its start
// until gRPC destroys it (after the call is done).
std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
InflightInterceptorFactory(InflightCalls* calls);

}  // namespace sockagent

#endif  // SOCKAGENT_SERVICE_INFLIGHT_CALLS_H_
