// EngineImpl's side of live events: the Engine watch API, and Emit and
// TakeSnapshot, which build events from the Registry and hand them to the
// WatchHub (watch_hub.h holds the queues and their bounds).
#include <utility>

#include "absl/strings/str_cat.h"
#include "agent/engine_impl.h"
#include "agent/quote.h"

namespace sockagent {
namespace engine_internal {

void EngineImpl::CheckWatchFilter(const WatchFilter& filter,
                                  Done<absl::Status> done) {
  PostWork(std::move(done),
           [this, server_id = filter.server_id,
            conn_id = filter.connection_id](Done<absl::Status> d) {
             AssertEngineLock();
             if (!server_id.empty()) {
               std::optional<uint64_t> num = ParseId(server_id, "srv-");
               if (!num.has_value()) {
                 d(MalformedWatchId("server", server_id, "srv-N"));
                 return;
               }
               if (registry_.FindServer(*num) == nullptr) {
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
               if (registry_.FindConn(*num) == nullptr) {
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
  const bool snapshot = filter.snapshot;
  absl::StatusOr<std::unique_ptr<Watcher>> w =
      WatchHub::MakeWatcher(std::move(filter), queue_limit, std::move(wake));
  if (!w.ok()) return w.status();
  absl::MutexLock post_lock(&post_mu_);
  if (!accepting_) return ShuttingDownError();
  const uint64_t id = watch_.Add(*std::move(w));
  counters_.watchers.store(watch_.size(), std::memory_order_relaxed);
  if (snapshot) {
    asio::post(io_, Locked([this, id] {
                 AssertEngineLock();
                 TakeSnapshot(id);
               }));
  }
  return id;
}

std::vector<EngineEvent> EngineImpl::Drain(uint64_t watcher, size_t max) {
  return watch_.Drain(watcher, max);
}

void EngineImpl::Unsubscribe(uint64_t watcher) {
  NoteReleased(options_, watch_.Remove(watcher));
  counters_.watchers.store(watch_.size(), std::memory_order_relaxed);
}

size_t EngineImpl::QueuedEvents(uint64_t watcher) {
  return watch_.Queued(watcher);
}

void EngineImpl::Emit(EventKind kind, uint64_t server_num, uint64_t conn_num,
                      uint64_t size, absl::string_view data,
                      absl::string_view message) {
  const uint64_t seq = watch_.NextSeq();
  CountEvent(kind, server_num, conn_num, size, message);
  if (!watch_.HasWatchers()) return;

  Conn* c = conn_num != 0 ? registry_.FindConn(conn_num) : nullptr;
  if (c != nullptr && server_num == 0) server_num = c->server_num;
  Server* s = server_num != 0 ? registry_.FindServer(server_num) : nullptr;
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
  watch_.Publish(base, server_num, conn_num, labels, data,
                 [c, s](EngineEvent& e) {
                   if (c != nullptr) {
                     e.connection = Snapshot(*c);
                   } else if (s != nullptr) {
                     e.server = Snapshot(*s);
                   }
                 });
}

void EngineImpl::TakeSnapshot(uint64_t id) {
  watch_.Snapshot(id, [this](WatchHub::SnapshotSink& sink) {
    AssertEngineLock();
    for (const auto& [num, sp] : registry_.servers()) {
      const Server& s = *sp;
      if (s.stopped() ||
          !sink.Wants(EventKind::kSnapshotServer, s.num, 0, s.labels.get())) {
        continue;
      }
      EngineEvent e = sink.Make(EventKind::kSnapshotServer);
      e.server_id = ServerId(s.num);
      e.server = Snapshot(s);
      sink.Push(std::move(e));
    }
    for (const auto& [num, cp] : registry_.conns()) {
      const Conn& c = *cp;
      if (c.state == ConnectionState::kClosed ||
          !sink.Wants(EventKind::kSnapshotConnection, c.server_num, c.num,
                      c.labels.get())) {
        continue;
      }
      EngineEvent e = sink.Make(EventKind::kSnapshotConnection);
      if (c.server_num != 0) e.server_id = ServerId(c.server_num);
      e.connection_id = ConnId(c.num);
      e.connection = Snapshot(c);
      sink.Push(std::move(e));
    }
  });
}

}  // namespace engine_internal
}  // namespace sockagent
