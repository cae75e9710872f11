// WatchHub: watchers and their bounded event queues (see watch_hub.h).
#include "agent/watch_hub.h"

#include <algorithm>
#include <utility>

#include "absl/container/inlined_vector.h"
#include "absl/strings/str_cat.h"
#include "agent/labels.h"
#include "agent/quote.h"
#include "agent/registry.h"

namespace sockagent {
namespace engine_internal {
namespace {

using EventKind = EngineEventKind;

bool IsLifecycle(EventKind kind) {
  switch (kind) {
    case EventKind::kServerStarted:
    case EventKind::kServerStopped:
    case EventKind::kConnectionAccepted:
    case EventKind::kConnectionConnected:
    case EventKind::kConnectionPeerClosed:
    case EventKind::kConnectionClosed:
      return true;
    default:
      return false;
  }
}

EngineEvent LostEvent(Watcher& w) {
  EngineEvent e;
  e.seq = w.last_lost_seq;
  e.time = absl::Now();
  e.kind = EventKind::kEventsLost;
  e.lost = w.lost;
  e.message =
      absl::StrCat(w.lost, " events lost: watcher queue full (", w.limit,
                   " events, or all watchers' max_watch_bytes)");
  w.lost = 0;
  return e;
}

}  // namespace

absl::Status MalformedWatchId(absl::string_view what, absl::string_view id,
                              absl::string_view form) {
  return absl::InvalidArgumentError(absl::StrCat("watch: malformed ", what,
                                                 " id ", QuoteInput(id),
                                                 " (expected ", form, ")"));
}

uint64_t EventBytes(const EngineEvent& e) {
  // Containers and strings cost about this much beyond their payload.
  constexpr uint64_t kPerLabel = 96;
  uint64_t n = sizeof(EngineEvent) + e.server_id.size() +
               e.connection_id.size() + e.data.size() + e.message.size();
  if (e.server.has_value()) {
    n += sizeof(ServerInfo) + LabelsBytes(e.server->labels) +
         kPerLabel * e.server->labels.size() +
         e.server->behavior.greeting.size() + e.server->stop_reason.size() +
         e.server->local_addresses.size() * sizeof(SocketAddress);
  }
  if (e.connection.has_value()) {
    n += sizeof(ConnectionInfo) + LabelsBytes(e.connection->labels) +
         kPerLabel * e.connection->labels.size() +
         e.connection->close_detail.size();
  }
  return n;
}

absl::StatusOr<std::unique_ptr<Watcher>> WatchHub::MakeWatcher(
    WatchFilter filter, size_t queue_limit, std::function<void()> wake) {
  if (absl::Status s = CheckLabels(filter.selector, "watch: label_selector");
      !s.ok()) {
    return s;
  }
  auto w = std::make_unique<Watcher>();
  if (!filter.server_id.empty()) {
    w->server_num = ParseId(filter.server_id, "srv-");
    if (!w->server_num) {
      return MalformedWatchId("server", filter.server_id, "srv-N");
    }
  }
  if (!filter.connection_id.empty()) {
    w->conn_num = ParseId(filter.connection_id, "conn-");
    if (!w->conn_num) {
      return MalformedWatchId("connection", filter.connection_id, "conn-N");
    }
  }
  if (!filter.kinds.empty()) {
    w->kinds = 0;
    for (EventKind k : filter.kinds) {
      const int v = static_cast<int>(k);
      if (v <= 0 || v > kMaxEngineEventKind) {
        return absl::InvalidArgumentError(
            absl::StrCat("watch: unknown event kind ", v));
      }
      w->kinds |= 1u << v;
    }
  }
  filter.include_data_bytes =
      std::min(filter.include_data_bytes, kMaxWatchDataBytes);
  w->limit = queue_limit == 0 ? kDefaultWatchQueueEvents
                              : std::min(queue_limit, kMaxWatchQueueEvents);
  // Room for one event and the lost marker before it.
  w->limit = std::max<size_t>(w->limit, 2);
  w->active = !filter.snapshot;
  w->wake = std::make_shared<const std::function<void()>>(std::move(wake));
  w->filter = std::move(filter);
  return w;
}

uint64_t WatchHub::Add(std::unique_ptr<Watcher> w) {
  absl::MutexLock lock(&mu_);
  const uint64_t id = next_id_++;
  watchers_.emplace(id, std::move(w));
  count_.store(watchers_.size(), std::memory_order_relaxed);
  return id;
}

std::vector<EngineEvent> WatchHub::Drain(uint64_t id, size_t max) {
  std::vector<EngineEvent> out;
  absl::MutexLock lock(&mu_);
  auto it = watchers_.find(id);
  if (it == watchers_.end() || max == 0) return out;
  Watcher& w = *it->second;
  const size_t n = std::min(max, w.queue.size());
  out.reserve(n + 1);
  for (size_t i = 0; i < n; ++i) {
    const uint64_t cost = EventBytes(w.queue.front());
    w.bytes -= cost;
    bytes_ -= cost;
    out.push_back(std::move(w.queue.front()));
    w.queue.pop_front();
  }
  if (w.queue.empty() && w.lost > 0 && out.size() < max) {
    out.push_back(LostEvent(w));
  }
  return out;
}

uint64_t WatchHub::Remove(uint64_t id) {
  absl::MutexLock lock(&mu_);
  auto it = watchers_.find(id);
  if (it == watchers_.end()) return 0;
  const uint64_t released = it->second->bytes;
  bytes_ -= released;
  watchers_.erase(it);
  count_.store(watchers_.size(), std::memory_order_relaxed);
  return released;
}

size_t WatchHub::Queued(uint64_t id) {
  absl::MutexLock lock(&mu_);
  auto it = watchers_.find(id);
  return it == watchers_.end() ? 0 : it->second->queue.size();
}

bool WatchHub::Matches(const Watcher& w, EventKind kind, uint64_t server_num,
                       uint64_t conn_num, const Labels* labels) {
  if ((w.kinds & (1u << static_cast<int>(kind))) == 0) return false;
  if (w.server_num && *w.server_num != server_num) return false;
  if (w.conn_num && *w.conn_num != conn_num) return false;
  if (!w.filter.selector.empty()) {
    if (labels == nullptr) return false;
    for (const auto& [key, value] : w.filter.selector) {
      auto it = labels->find(key);
      if (it == labels->end() || it->second != value) return false;
    }
  }
  return true;
}

bool WatchHub::QueueEvent(Watcher& w, EngineEvent e, uint64_t seq) {
  const uint64_t cost = EventBytes(e);
  if (bytes_ + cost > max_bytes_) {
    ++w.lost;
    CountLost();
    w.last_lost_seq = seq;
    return false;
  }
  bytes_ += cost;
  w.bytes += cost;
  w.queue.push_back(std::move(e));
  return true;
}

void WatchHub::QueueMarker(Watcher& w, EngineEvent e) {
  const uint64_t cost = EventBytes(e);
  bytes_ += cost;
  w.bytes += cost;
  w.queue.push_back(std::move(e));
}

void WatchHub::Publish(EngineEvent& base, uint64_t server_num,
                       uint64_t conn_num, const Labels* labels,
                       absl::string_view data,
                       absl::FunctionRef<void(EngineEvent&)> add_snapshot) {
  const EventKind kind = base.kind;
  const uint64_t seq = base.seq;
  bool snapshotted = false;
  absl::InlinedVector<std::shared_ptr<const std::function<void()>>, 4> wakes;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [id, wp] : watchers_) {
      Watcher& w = *wp;
      if (!w.active || !Matches(w, kind, server_num, conn_num, labels)) {
        continue;
      }
      const bool was_empty = w.queue.empty();
      if (w.lost > 0) {
        if (w.queue.size() + 1 < w.limit) {
          // Small and at most one per queued event: not held to the bytes.
          QueueMarker(w, LostEvent(w));
        } else {
          ++w.lost;
          CountLost();
          w.last_lost_seq = seq;
          continue;
        }
      }
      if (w.queue.size() >= w.limit) {
        ++w.lost;
        CountLost();
        w.last_lost_seq = seq;
        continue;
      }
      // Lifecycle snapshots only once someone takes the event.
      if (!snapshotted && IsLifecycle(kind)) {
        snapshotted = true;
        add_snapshot(base);
      }
      EngineEvent e = base;
      if (!data.empty() && w.filter.include_data_bytes > 0) {
        e.data.assign(data.data(),
                      std::min(data.size(), w.filter.include_data_bytes));
      }
      if (!QueueEvent(w, std::move(e), seq)) continue;
      if (was_empty) wakes.push_back(w.wake);
    }
  }
  for (const auto& wake : wakes) {
    if (*wake) (*wake)();
  }
}

bool WatchHub::SnapshotSink::Wants(EventKind kind, uint64_t server_num,
                                   uint64_t conn_num,
                                   const Labels* labels) const {
  return Matches(w_, kind, server_num, conn_num, labels);
}

EngineEvent WatchHub::SnapshotSink::Make(EventKind kind) const {
  EngineEvent e;
  e.seq = seq_;
  e.time = now_;
  e.kind = kind;
  return e;
}

void WatchHub::SnapshotSink::Push(EngineEvent e) {
  // Only WatchHub::Snapshot makes a sink, and it holds the lock.
  hub_.mu_.AssertHeld();
  hub_.QueueEvent(w_, std::move(e), seq_);
}

void WatchHub::Snapshot(uint64_t id,
                        absl::FunctionRef<void(SnapshotSink&)> fill) {
  std::shared_ptr<const std::function<void()>> wake;
  {
    absl::MutexLock lock(&mu_);
    auto it = watchers_.find(id);
    if (it == watchers_.end()) return;
    Watcher& w = *it->second;
    const uint32_t all = w.kinds;
    // The kinds filter applies to live events only.
    w.kinds = ~0u;
    SnapshotSink sink(*this, w, seq_, absl::Now());
    fill(sink);
    // The end marker always goes in: small, one per watcher.
    QueueMarker(w, sink.Make(EventKind::kSnapshotEnd));
    w.kinds = all;
    w.active = true;
    wake = w.wake;
  }
  if (*wake) (*wake)();
}

}  // namespace engine_internal
}  // namespace sockagent
