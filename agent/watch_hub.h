// WatchHub: the watchers of live events (Engine::Subscribe) and their
// bounded queues.
//
// Owns: every Watcher (its parsed filter, its queue, its lost-event count),
// the agent-wide bytes of all queues (bounded by max_watch_bytes), and the
// event sequence number. It does not look objects up: the engine builds
// each event (Emit) and the snapshot (TakeSnapshot) from its Registry and
// hands them over.
//
// Locks: its own mutex (mu_) guards the watchers; it is taken after the
// engine lock, never before it, and no callback runs under it (wakes run
// after it is released). Publish, Snapshot and NextSeq run under the
// engine lock (the loop thread, or a gRPC thread inside an inline control
// call such as Send); Add, Drain, Remove and Queued run on any thread.
// Publish costs one relaxed atomic load (HasWatchers) when nobody watches.
//
// Ordering of a full queue: events past the bound are counted, not queued;
// the next event that finds room is preceded by one kEventsLost carrying the
// count, and a Drain that empties the queue appends it, so the marker sits
// exactly where the gap is and a slow watcher learns of it at its next
// delivery.
//
// Example:
//   uint64_t id = hub.Add(*WatchHub::MakeWatcher(filter, 0, wake));
//   std::vector<EngineEvent> events = hub.Drain(id, 64);
#ifndef SOCKAGENT_AGENT_WATCH_HUB_H_
#define SOCKAGENT_AGENT_WATCH_HUB_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/engine.h"

namespace sockagent {
namespace engine_internal {

// One watcher of live events.
struct Watcher {
  WatchFilter filter;
  std::optional<uint64_t> server_num;  // Parsed filter ids.
  std::optional<uint64_t> conn_num;
  uint32_t kinds = ~0u;  // Bit per EngineEventKind.
  size_t limit = kDefaultWatchQueueEvents;
  bool active = false;  // Snapshot taken (or none asked): live events flow.
  std::deque<EngineEvent> queue;
  uint64_t lost = 0;
  uint64_t last_lost_seq = 0;
  uint64_t bytes = 0;  // EventBytes of what `queue` holds.
  std::shared_ptr<const std::function<void()>> wake;
};

// What a queued event costs against EngineOptions::max_watch_bytes.
uint64_t EventBytes(const EngineEvent& e);
// InvalidArgument for a watch filter's malformed `what` ("server") id.
absl::Status MalformedWatchId(absl::string_view what, absl::string_view id,
                              absl::string_view form);

class WatchHub final {
 public:
  // The snapshot of one watcher, filled by the engine (see Snapshot).
  class SnapshotSink {
   public:
    // True if the watcher's filter takes an event about this object.
    bool Wants(EngineEventKind kind, uint64_t server_num, uint64_t conn_num,
               const Labels* labels) const;
    // An event of `kind` numbered and timed as the snapshot.
    EngineEvent Make(EngineEventKind kind) const;
    // Queues `e` if the agent-wide watch bytes allow (counted lost else).
    void Push(EngineEvent e);

   private:
    friend class WatchHub;
    SnapshotSink(WatchHub& hub, Watcher& w, uint64_t seq, absl::Time now)
        : hub_(hub), w_(w), seq_(seq), now_(now) {}
    WatchHub& hub_;
    Watcher& w_;
    const uint64_t seq_;
    const absl::Time now_;
  };

  // `lost_total` (may be null) counts every event lost for any watcher,
  // for the agent's metrics.
  explicit WatchHub(uint64_t max_bytes,
                    std::atomic<uint64_t>* lost_total = nullptr)
      : max_bytes_(max_bytes), lost_total_(lost_total) {}
  WatchHub(const WatchHub&) = delete;
  WatchHub& operator=(const WatchHub&) = delete;

  // Checks and parses `filter` (InvalidArgument names what is wrong);
  // `queue_limit` 0: the default, clamped to kMaxWatchQueueEvents.
  static absl::StatusOr<std::unique_ptr<Watcher>> MakeWatcher(
      WatchFilter filter, size_t queue_limit, std::function<void()> wake);
  // Any thread. Returns the watcher's id.
  uint64_t Add(std::unique_ptr<Watcher> w);
  // Any thread. Up to `max` queued events, oldest first.
  std::vector<EngineEvent> Drain(uint64_t id, size_t max);
  // Any thread. The bytes its queue held (0 if unknown).
  uint64_t Remove(uint64_t id);
  size_t Queued(uint64_t id);

  // Engine lock. Every event takes a number, watched or not.
  uint64_t NextSeq() { return ++seq_; }
  uint64_t seq() const { return seq_; }
  // Watchers subscribed now. Any thread.
  size_t size() const { return count_.load(std::memory_order_relaxed); }
  bool HasWatchers() const {
    return count_.load(std::memory_order_relaxed) != 0;
  }
  // Engine lock. Queues `base` (with up to include_data_bytes of `data`)
  // for every active watcher whose filter matches, then wakes those whose
  // queue was empty. `add_snapshot` runs at most once, before the first
  // copy, for lifecycle events (the object's listing goes with them).
  void Publish(EngineEvent& base, uint64_t server_num, uint64_t conn_num,
               const Labels* labels, absl::string_view data,
               absl::FunctionRef<void(EngineEvent&)> add_snapshot);
  // Engine lock. Fills watcher `id`'s snapshot through `fill` (its kinds
  // filter does not apply to snapshot events), ends it with
  // kSnapshotEnd, activates the watcher and wakes it.
  void Snapshot(uint64_t id, absl::FunctionRef<void(SnapshotSink&)> fill);

 private:
  static bool Matches(const Watcher& w, EngineEventKind kind,
                      uint64_t server_num, uint64_t conn_num,
                      const Labels* labels);
  // Queues `e` for `w` if the agent-wide watch bytes allow; false (and the
  // event counted lost for `w`) otherwise.
  bool QueueEvent(Watcher& w, EngineEvent e, uint64_t seq)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Queues a small marker (lost count, snapshot end) whatever the bytes.
  void QueueMarker(Watcher& w, EngineEvent e)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const uint64_t max_bytes_;
  uint64_t seq_ = 0;  // Engine lock.
  absl::Mutex mu_;
  absl::flat_hash_map<uint64_t, std::unique_ptr<Watcher>> watchers_
      ABSL_GUARDED_BY(mu_);
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  // watchers_.size(), read by HasWatchers without the lock.
  std::atomic<size_t> count_{0};
  std::atomic<uint64_t>* const lost_total_;
  void CountLost() {
    if (lost_total_ != nullptr) {
      lost_total_->fetch_add(1, std::memory_order_relaxed);
    }
  }
  // Sum of every Watcher::bytes; bounded by max_bytes_.
  uint64_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace engine_internal
}  // namespace sockagent

#endif  // SOCKAGENT_AGENT_WATCH_HUB_H_
