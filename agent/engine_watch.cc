// Live events: per-watcher bounded queues filled on the loop thread
// (Emit, TakeSnapshot) and drained from any thread (Drain).
//
// Ordering of a full queue: events past the bound are counted, not queued;
// the next event that finds room is preceded by one kEventsLost carrying the
// count, and a Drain that empties the queue appends it, so the marker sits
// exactly where the gap is and a slow watcher learns of it at its next
// delivery.
#include <algorithm>
#include <utility>

#include "absl/container/inlined_vector.h"
#include "absl/strings/str_cat.h"
#include "agent/engine_impl.h"
#include "agent/quote.h"

namespace sockagent {
namespace engine_internal {
namespace {

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

absl::Status MalformedWatchId(absl::string_view what, absl::string_view id,
                              absl::string_view form) {
  return absl::InvalidArgumentError(absl::StrCat("watch: malformed ", what,
                                                 " id ", QuoteInput(id),
                                                 " (expected ", form, ")"));
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

bool EngineImpl::QueueEvent(Watcher& w, EngineEvent e, uint64_t seq) {
  const uint64_t cost = EventBytes(e);
  if (watch_bytes_ + cost > options_.max_watch_bytes) {
    ++w.lost;
    EngineCounters::Add(counters_.events_lost);
    w.last_lost_seq = seq;
    return false;
  }
  watch_bytes_ += cost;
  w.bytes += cost;
  w.queue.push_back(std::move(e));
  return true;
}

void EngineImpl::CheckWatchFilter(const WatchFilter& filter,
                                  Done<absl::Status> done) {
  PostWork(std::move(done),
           [this, server_id = filter.server_id,
            conn_id = filter.connection_id](Done<absl::Status> d) {
             if (!server_id.empty()) {
               std::optional<uint64_t> num = ParseId(server_id, "srv-");
               if (!num.has_value()) {
                 d(MalformedWatchId("server", server_id, "srv-N"));
                 return;
               }
               if (FindServer(*num) == nullptr) {
                 d(absl::NotFoundError(absl::StrCat(
                     "watch: server ", QuoteInput(server_id), " not found")));
                 return;
               }
             }
             if (!conn_id.empty()) {
               std::optional<uint64_t> num = ParseId(conn_id, "conn-");
               if (!num.has_value()) {
                 d(MalformedWatchId("connection", conn_id, "conn-N"));
                 return;
               }
               if (FindConn(*num) == nullptr) {
                 d(absl::NotFoundError(absl::StrCat(
                     "watch: connection ", QuoteInput(conn_id), " not found")));
                 return;
               }
             }
             d(absl::OkStatus());
           });
}

absl::StatusOr<uint64_t> EngineImpl::Subscribe(WatchFilter filter,
                                               size_t queue_limit,
                                               std::function<void()> wake) {
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
  const bool snapshot = filter.snapshot;
  w->filter = std::move(filter);

  absl::MutexLock post_lock(&post_mu_);
  if (!accepting_) return ShuttingDownError();
  uint64_t id = 0;
  {
    absl::MutexLock lock(&watch_mu_);
    id = next_watcher_id_++;
    watchers_.emplace(id, std::move(w));
    watcher_count_.store(watchers_.size(), std::memory_order_relaxed);
    counters_.watchers.store(watchers_.size(), std::memory_order_relaxed);
  }
  if (snapshot) asio::post(io_, Locked([this, id] { TakeSnapshot(id); }));
  return id;
}

std::vector<EngineEvent> EngineImpl::Drain(uint64_t watcher, size_t max) {
  std::vector<EngineEvent> out;
  absl::MutexLock lock(&watch_mu_);
  auto it = watchers_.find(watcher);
  if (it == watchers_.end() || max == 0) return out;
  Watcher& w = *it->second;
  const size_t n = std::min(max, w.queue.size());
  out.reserve(n + 1);
  for (size_t i = 0; i < n; ++i) {
    const uint64_t cost = EventBytes(w.queue.front());
    w.bytes -= cost;
    watch_bytes_ -= cost;
    out.push_back(std::move(w.queue.front()));
    w.queue.pop_front();
  }
  if (w.queue.empty() && w.lost > 0 && out.size() < max) {
    out.push_back(LostEvent(w));
  }
  return out;
}

void EngineImpl::Unsubscribe(uint64_t watcher) {
  uint64_t released = 0;
  {
    absl::MutexLock lock(&watch_mu_);
    auto it = watchers_.find(watcher);
    if (it == watchers_.end()) return;
    released = it->second->bytes;
    watch_bytes_ -= released;
    watchers_.erase(it);
    watcher_count_.store(watchers_.size(), std::memory_order_relaxed);
    counters_.watchers.store(watchers_.size(), std::memory_order_relaxed);
  }
  NoteReleased(released);
}

size_t EngineImpl::QueuedEvents(uint64_t watcher) {
  absl::MutexLock lock(&watch_mu_);
  auto it = watchers_.find(watcher);
  return it == watchers_.end() ? 0 : it->second->queue.size();
}

bool EngineImpl::WatcherMatches(const Watcher& w, EventKind kind,
                                uint64_t server_num, uint64_t conn_num,
                                const Labels* labels) const {
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

void EngineImpl::Emit(EventKind kind, uint64_t server_num, uint64_t conn_num,
                      uint64_t size, absl::string_view data,
                      absl::string_view message) {
  const uint64_t seq = ++event_seq_;
  CountEvent(kind, server_num, conn_num, size, message);
  if (watcher_count_.load(std::memory_order_relaxed) == 0) return;

  Conn* c = conn_num != 0 ? FindConn(conn_num) : nullptr;
  if (c != nullptr && server_num == 0) server_num = c->server_num;
  Server* s = server_num != 0 ? FindServer(server_num) : nullptr;
  const Labels* labels = c != nullptr   ? c->labels.get()
                         : s != nullptr ? s->labels.get()
                                        : nullptr;

  EngineEvent base;
  base.seq = seq;
  base.time = absl::Now();
  base.kind = kind;
  if (server_num != 0) base.server_id = ServerId(server_num);
  if (conn_num != 0) base.connection_id = ConnId(conn_num);
  base.size = size;
  base.message = std::string(message);
  if (c != nullptr) {
    if (c->transport == Transport::kUdp &&
        (kind == EventKind::kDataReceived || kind == EventKind::kDataSent ||
         kind == EventKind::kDatagramDropped)) {
      base.peer = c->remote.Unpack();
    }
    if (kind == EventKind::kConnectionClosed) {
      base.close_reason = c->close_reason;
      if (c->extra != nullptr && base.message.empty()) {
        base.message = c->extra->close_detail;
      }
    }
  }
  bool snapshotted = false;

  absl::InlinedVector<std::shared_ptr<const std::function<void()>>, 4> wakes;
  {
    absl::MutexLock lock(&watch_mu_);
    for (auto& [id, wp] : watchers_) {
      Watcher& w = *wp;
      if (!w.active || !WatcherMatches(w, kind, server_num, conn_num, labels)) {
        continue;
      }
      const bool was_empty = w.queue.empty();
      if (w.lost > 0) {
        if (w.queue.size() + 1 < w.limit) {
          // Small and at most one per queued event: not held to the bytes.
          EngineEvent lost = LostEvent(w);
          const uint64_t cost = EventBytes(lost);
          watch_bytes_ += cost;
          w.bytes += cost;
          w.queue.push_back(std::move(lost));
        } else {
          ++w.lost;
          EngineCounters::Add(counters_.events_lost);
          w.last_lost_seq = seq;
          continue;
        }
      }
      if (w.queue.size() >= w.limit) {
        ++w.lost;
        EngineCounters::Add(counters_.events_lost);
        w.last_lost_seq = seq;
        continue;
      }
      // Lifecycle snapshots only once someone takes the event.
      if (!snapshotted && IsLifecycle(kind)) {
        snapshotted = true;
        if (c != nullptr) {
          base.connection = Snapshot(*c);
        } else if (s != nullptr) {
          base.server = Snapshot(*s);
        }
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

void EngineImpl::TakeSnapshot(uint64_t id) {
  std::shared_ptr<const std::function<void()>> wake;
  {
    absl::MutexLock lock(&watch_mu_);
    auto it = watchers_.find(id);
    if (it == watchers_.end()) return;
    Watcher& w = *it->second;
    const uint64_t seq = event_seq_;
    const absl::Time now = absl::Now();
    auto make = [&](EventKind kind) {
      EngineEvent e;
      e.seq = seq;
      e.time = now;
      e.kind = kind;
      return e;
    };
    const uint32_t all = w.kinds;
    // The kinds filter applies to live events only.
    w.kinds = ~0u;
    for (const auto& [num, sp] : servers_) {
      const Server& s = *sp;
      if (s.stopped() || !WatcherMatches(w, EventKind::kSnapshotServer, s.num,
                                         0, s.labels.get())) {
        continue;
      }
      if (w.conn_num) continue;
      EngineEvent e = make(EventKind::kSnapshotServer);
      e.server_id = ServerId(s.num);
      e.server = Snapshot(s);
      QueueEvent(w, std::move(e), seq);
    }
    for (const auto& [num, cp] : conns_) {
      const Conn& c = *cp;
      if (c.state == ConnectionState::kClosed ||
          !WatcherMatches(w, EventKind::kSnapshotConnection, c.server_num,
                          c.num, c.labels.get())) {
        continue;
      }
      EngineEvent e = make(EventKind::kSnapshotConnection);
      if (c.server_num != 0) e.server_id = ServerId(c.server_num);
      e.connection_id = ConnId(c.num);
      e.connection = Snapshot(c);
      QueueEvent(w, std::move(e), seq);
    }
    // The end marker always goes in: small, one per watcher.
    EngineEvent end = make(EventKind::kSnapshotEnd);
    const uint64_t cost = EventBytes(end);
    watch_bytes_ += cost;
    w.bytes += cost;
    w.queue.push_back(std::move(end));
    w.kinds = all;
    w.active = true;
    wake = w.wake;
  }
  if (*wake) (*wake)();
}

}  // namespace engine_internal
}  // namespace sockagent
