// The Watch RPC: one reactor per call streams the engine's events for a
// filter (server, connection, kinds, labels) to the caller, one write in
// flight at a time. Events wait in the engine's bounded per-watcher queue
// (a watcher that falls behind loses events and is told how many); the
// reactor drains them in small batches, so what it holds itself stays
// small, and idles while the queue is empty until the engine's wake
// callback pumps it again.
//
//   auto registry = NewWatchRegistry();
//   return NewWatchReactor(engine, registry, *request, limits);
#ifndef SOCKAGENT_SERVICE_WATCH_REACTOR_H_
#define SOCKAGENT_SERVICE_WATCH_REACTOR_H_

#include <cstddef>
#include <cstdint>
#include <memory>

#include "agent/engine.h"
#include "sockagent/v1/agent.grpc.pb.h"

namespace sockagent {

// The Watch calls in progress, so shutdown can end them all and a new one
// beyond the cap is refused.
struct WatchRegistry;

std::shared_ptr<WatchRegistry> NewWatchRegistry();

// Ends every Watch call with OK and refuses new ones (UNAVAILABLE "agent
// shutting down"). Any thread.
void EndWatches(WatchRegistry& registry);

// Watchers at once unless the daemon says otherwise (--max-watchers).
inline constexpr uint32_t kDefaultMaxWatchers = 64;

struct WatchLimits {
  size_t queue_events = kDefaultWatchQueueEvents;  // Per watcher.
  // Watchers at once; one more is RESOURCE_EXHAUSTED.
  uint32_t max_watchers = kDefaultMaxWatchers;
};

// Starts a Watch call for `request`, or one that ends at once with
// INVALID_ARGUMENT (a bad filter), NOT_FOUND (an unknown server or
// connection id), RESOURCE_EXHAUSTED (max_watchers) or UNAVAILABLE (after
// EndWatches). A gRPC thread that does not hold the engine lock. `engine`
// must outlive the call.
grpc::ServerWriteReactor<v1::Event>* NewWatchReactor(
    Engine& engine, std::shared_ptr<WatchRegistry> registry,
    const v1::WatchRequest& request, const WatchLimits& limits);

}  // namespace sockagent

#endif  // SOCKAGENT_SERVICE_WATCH_REACTOR_H_
