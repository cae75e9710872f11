#include "service/watch_reactor.h"

#include <deque>
#include <memory>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "service/call_registry.h"
#include "service/convert.h"
#include "service/status_mapping.h"

namespace sockagent {
namespace {

class WatchReactor;

// What a watch reactor shares with the engine's wake callback and with
// EndWatches, both of which may run after the reactor is gone: they find
// `reactor` null then. `mu` also guards the reactor's own state.
struct WatchShared {
  absl::Mutex mu;
  WatchReactor* reactor ABSL_GUARDED_BY(mu) = nullptr;
};

}  // namespace

struct WatchRegistry final : CallRegistry<WatchShared> {};

namespace {

// Watch: one write in flight at a time. Events come from the engine's
// bounded per-watcher queue in batches; when it is empty the reactor idles
// until the engine's wake callback pumps it again. Every
// state change happens under shared_->mu, so the wake, OnWriteDone,
// OnCancel and EndWatches never interleave. Finish is called exactly
// once, never with a write outstanding: a finish wanted while writing is done
// by OnWriteDone (whatever its `ok`), so Server::Shutdown never hangs.
class WatchReactor final : public grpc::ServerWriteReactor<v1::Event> {
 public:
  static constexpr size_t kBatch = 64;
  static constexpr size_t kDataBatch = 8;

  WatchReactor(Engine* engine, std::shared_ptr<WatchRegistry> registry,
               std::shared_ptr<WatchShared> shared)
      : engine_(engine),
        registry_(std::move(registry)),
        shared_(std::move(shared)) {}

  // Subscribes and starts writing; or finishes with `refused`.
  void Begin(WatchFilter filter, size_t queue_limit) {
    absl::MutexLock lock(&shared_->mu);
    // Drained events leave the engine's byte budget (max_watch_bytes):
    // watchers asking for data bytes take small batches, so what waits
    // here stays small (8 x 4 KiB).
    batch_ = filter.include_data_bytes > 256 ? kDataBatch : kBatch;
    shared_->reactor = this;
    auto id =
        engine_->Subscribe(std::move(filter), queue_limit, [shared = shared_] {
          absl::MutexLock wake_lock(&shared->mu);
          if (shared->reactor != nullptr) shared->reactor->Pump();
        });
    if (!id.ok()) {
      EndLocked(ToGrpcStatus(id.status()));
      return;
    }
    id_ = *id;
    Pump();
  }

  void Refuse(const grpc::Status& status) {
    absl::MutexLock lock(&shared_->mu);
    shared_->reactor = this;
    EndLocked(status);
  }

  // EndWatches: the agent is shutting down.
  void End() { EndLocked(grpc::Status::OK); }

  // Writes the next queued event unless a write is in flight or the stream
  // is ending. Caller holds shared_->mu.
  void Pump() {
    if (end_wanted_ || writing_) return;
    if (pending_.empty()) {
      if (id_ == 0) return;
      std::vector<EngineEvent> batch = engine_->Drain(id_, batch_);
      for (auto& e : batch) pending_.push_back(std::move(e));
      if (pending_.empty()) return;  // Idle until the next wake.
    }
    message_.Clear();
    EngineEventToProto(pending_.front(), &message_);
    pending_.pop_front();
    writing_ = true;
    StartWrite(&message_);
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&shared_->mu);
    writing_ = false;
    if (!ok) {
      // The stream broke (client gone): OnCancel follows or came already.
      EndLocked(grpc::Status::CANCELLED);
      return;
    }
    if (end_wanted_) {
      EndLocked(end_status_);
      return;
    }
    Pump();
  }

  void OnCancel() override {
    absl::MutexLock lock(&shared_->mu);
    EndLocked(grpc::Status::CANCELLED);
  }

  void OnDone() override {
    {
      absl::MutexLock lock(&shared_->mu);
      Unsubscribe();
      shared_->reactor = nullptr;
    }
    registry_->Remove(shared_);
    delete this;
  }

 private:
  void Unsubscribe() {
    if (id_ != 0) engine_->Unsubscribe(id_);
    id_ = 0;
  }

  // Unsubscribes and finishes once; deferred to OnWriteDone while a write
  // is in flight.
  void EndLocked(const grpc::Status& status) {
    Unsubscribe();
    if (finished_) return;
    if (!end_wanted_) {
      end_wanted_ = true;
      end_status_ = status;
    }
    if (writing_) return;
    finished_ = true;
    Finish(end_status_);
  }

  Engine* const engine_;
  const std::shared_ptr<WatchRegistry> registry_;
  const std::shared_ptr<WatchShared> shared_;
  uint64_t id_ = 0;  // Engine watcher; 0: none.
  size_t batch_ = kBatch;
  std::deque<EngineEvent> pending_;  // At most batch_.
  v1::Event message_;                // Alive until OnWriteDone.
  bool writing_ = false;
  bool end_wanted_ = false;
  bool finished_ = false;
  grpc::Status end_status_;
};

}  // namespace

std::shared_ptr<WatchRegistry> NewWatchRegistry() {
  return std::make_shared<WatchRegistry>();
}

void EndWatches(WatchRegistry& registry) {
  for (const auto& shared : registry.EndAll()) {
    absl::MutexLock lock(&shared->mu);
    if (shared->reactor != nullptr) shared->reactor->End();
  }
}

grpc::ServerWriteReactor<v1::Event>* NewWatchReactor(
    Engine& engine, std::shared_ptr<WatchRegistry> registry,
    const v1::WatchRequest& request, const WatchLimits& limits) {
  auto shared = std::make_shared<WatchShared>();
  auto* reactor = new WatchReactor(&engine, registry, shared);
  auto filter = WatchFilterFromProto(request);
  absl::Status refused = filter.status();
  if (refused.ok()) {
    refused = registry->Add(shared, limits.max_watchers,
                            absl::ResourceExhaustedError(absl::StrCat(
                                "watch: ", limits.max_watchers,
                                " watchers already (--max_watchers)")));
  }
  if (!refused.ok()) {
    reactor->Refuse(ToGrpcStatus(refused));
    return reactor;
  }
  // Unknown ids are NOT_FOUND, as everywhere. This gRPC thread does not
  // hold the engine lock, so the check completes inline, before the
  // reactor is returned (nothing can have cancelled it yet).
  const WatchFilter checked = *filter;
  engine.CheckWatchFilter(
      checked, [reactor, filter = *std::move(filter),
                limit = limits.queue_events](absl::Status s) mutable {
        if (!s.ok()) {
          reactor->Refuse(ToGrpcStatus(s));
          return;
        }
        reactor->Begin(std::move(filter), limit);
      });
  return reactor;
}

}  // namespace sockagent
