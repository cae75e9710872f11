#include "service/agent_service.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "agent/host_info.h"
#include "service/auth.h"
#include "service/convert.h"
#include "service/probe_rpc.h"
#include "service/status_mapping.h"

namespace sockagent {
namespace {

grpc::ServerUnaryReactor* FinishNow(grpc::CallbackServerContext* context,
                                    const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

constexpr size_t kMaxDelimiterBytes = 256;

// Answers that list objects stay this far below the max message size: room
// for the page token, counts, ids and framing.
constexpr size_t kAnswerHeadroomBytes = 16 * 1024;

size_t AnswerBudget(uint64_t max_message_bytes) {
  return max_message_bytes > 2 * kAnswerHeadroomBytes
             ? max_message_bytes - kAnswerHeadroomBytes
             : max_message_bytes / 2;
}

// Converts items into `out` while the encoded answer stays within `budget`
// (`*used`: its bytes so far). The first item always goes in (one object is
// far below any allowed message size: labels and greetings are bounded).
// Returns how many went in.
template <typename Item, typename Message, typename Convert>
size_t AppendWithin(const std::vector<Item>& items,
                    google::protobuf::RepeatedPtrField<Message>* out,
                    size_t budget, size_t* used, Convert convert) {
  for (size_t i = 0; i < items.size(); ++i) {
    Message* m = out->Add();
    convert(items[i], m);
    // The field's tag and length prefix: at most 1 + 5 bytes.
    const size_t cost = m->ByteSizeLong() + 6;
    if (out->size() > 1 && *used + cost > budget) {
      out->RemoveLast();
      return i;
    }
    *used += cost;
  }
  return items.size();
}

absl::Status NoEngine() {
  return absl::UnavailableError("the socket engine is not running");
}

// An engine completion that fills the response with `fill` on success and
// finishes the RPC either way. Runs under the engine lock: inline in the
// engine call (on this gRPC thread), or later on the engine's loop thread.
template <typename T, typename Fill>
Done<absl::StatusOr<T>> Complete(grpc::ServerUnaryReactor* reactor, Fill fill) {
  return [reactor, fill = std::move(fill)](absl::StatusOr<T> result) mutable {
    if (result.ok()) fill(*result);
    reactor->Finish(ToGrpcStatus(result.status()));
  };
}

// Receive parks in the engine until data or the wait ends; a cancelled RPC
// (client gone, deadline) completes the parked receive early. The reactor
// is freed only when both Start() has returned and gRPC called OnDone(),
// because the completion may Finish() (inline, or on the loop thread) before
// Receive() returns its token.
class ReceiveReactor final : public grpc::ServerUnaryReactor {
 public:
  ReceiveReactor(Engine* engine, v1::ReceiveResponse* response)
      : engine_(engine), response_(response) {}

  void Start(std::string connection_id, ReceiveSpec spec) {
    const uint64_t token = engine_->Receive(
        std::move(connection_id), spec,
        [this](absl::StatusOr<ReceiveResult> result) {
          if (result.ok()) {
            response_->set_data(std::move(result->data));
            for (auto& datagram : result->datagrams) {
              v1::Datagram* out = response_->add_datagrams();
              out->set_data(std::move(datagram.data));
              SocketAddressToProto(datagram.peer, out->mutable_peer());
              TimeToProto(datagram.received_at, out->mutable_received_at());
            }
            response_->set_end_of_stream(result->end_of_stream);
            response_->set_recv_buffered(result->recv_buffered);
          }
          Finish(ToGrpcStatus(result.status()));
        });
    token_.store(token);
    // A cancel that arrived before the token was known is replayed here.
    if (cancelled_.load()) engine_->CancelReceive(token);
    Unref();
  }

  void OnCancel() override {
    cancelled_.store(true);
    const uint64_t token = token_.load();
    if (token != 0) engine_->CancelReceive(token);
  }

  void OnDone() override { Unref(); }

 private:
  void Unref() {
    if (refs_.fetch_sub(1) == 1) delete this;
  }

  Engine* const engine_;
  v1::ReceiveResponse* const response_;
  std::atomic<uint64_t> token_{0};
  std::atomic<bool> cancelled_{false};
  std::atomic<int> refs_{2};  // Start() and OnDone().
};

// Resolve finishes exactly once: when the lookup completes or when the call
// is cancelled (deadline, client gone, server shutdown), whichever comes
// first. A lookup hanging in libc therefore never holds the call, nor the
// server's shutdown; its late completion finds the call finished and only
// touches the shared state.
class ResolveReactor final : public grpc::ServerUnaryReactor {
 public:
  struct State {
    absl::Mutex mu;
    ResolveReactor* reactor ABSL_GUARDED_BY(mu) = nullptr;
    v1::ResolveResponse* response ABSL_GUARDED_BY(mu) = nullptr;
  };

  explicit ResolveReactor(v1::ResolveResponse* response) {
    absl::MutexLock lock(&state_->mu);
    state_->reactor = this;
    state_->response = response;
  }

  const std::shared_ptr<State>& state() const { return state_; }

  // From the lookup's callback, on a resolver thread. `fill` runs only if
  // the call is still waiting.
  template <typename Fill>
  static void Complete(const std::shared_ptr<State>& state,
                       const absl::Status& status, Fill fill) {
    absl::MutexLock lock(&state->mu);
    if (state->reactor == nullptr) return;
    if (status.ok()) fill(state->response);
    // OnDone (which deletes the reactor) never takes the lock.
    std::exchange(state->reactor, nullptr)->Finish(ToGrpcStatus(status));
  }

  void OnCancel() override {
    absl::MutexLock lock(&state_->mu);
    if (state_->reactor == nullptr) return;
    state_->reactor = nullptr;
    Finish(grpc::Status(grpc::StatusCode::CANCELLED,
                        "resolve: call cancelled before the lookup finished"));
  }

  void OnDone() override { delete this; }

 private:
  const std::shared_ptr<State> state_ = std::make_shared<State>();
};

class WatchReactor;

// What a watch reactor shares with the engine's wake callback and with
// EndStreamingCalls, both of which may run after the reactor is gone: they find
// `reactor` null then. `mu` also guards the reactor's own state.
struct WatchShared {
  absl::Mutex mu;
  WatchReactor* reactor ABSL_GUARDED_BY(mu) = nullptr;
};

}  // namespace

struct WatchRegistry {
  absl::Mutex mu;
  bool ended ABSL_GUARDED_BY(mu) = false;
  absl::flat_hash_set<std::shared_ptr<WatchShared>> live ABSL_GUARDED_BY(mu);
};

namespace {

// Watch: one write in flight at a time. Events come from the engine's
// bounded per-watcher queue in batches; when it is empty the reactor idles
// until the engine's wake callback pumps it again. Every
// state change happens under shared_->mu, so the wake, OnWriteDone,
// OnCancel and EndStreamingCalls never interleave. Finish is called exactly
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

  // EndStreamingCalls: the agent is shutting down.
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
    {
      absl::MutexLock lock(&registry_->mu);
      registry_->live.erase(shared_);
    }
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

AgentService::AgentService(Engine* engine, ResolverPool* resolver,
                           AgentServiceOptions options)
    : engine_(engine),
      resolver_(resolver),
      options_(std::move(options)),
      watches_(std::make_shared<WatchRegistry>()),
      streams_(NewStreamRegistry()) {}

AgentService::~AgentService() = default;

void AgentService::EndStreamingCalls() {
  EndStreams(*streams_);
  std::vector<std::shared_ptr<WatchShared>> live;
  {
    absl::MutexLock lock(&watches_->mu);
    watches_->ended = true;
    live.assign(watches_->live.begin(), watches_->live.end());
  }
  for (const auto& shared : live) {
    absl::MutexLock lock(&shared->mu);
    if (shared->reactor != nullptr) shared->reactor->End();
  }
}

void AgentService::StartFqdnLookup() {
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) != 0) return;
  ResolveQuery query;
  query.host = name;
  query.canonical_name = true;
  resolver_->SubmitResolve(
      query, absl::InfiniteFuture(),
      [cache = fqdn_](absl::StatusOr<std::vector<AddressEntry>> entries) {
        if (!entries.ok() || entries->empty()) return;
        absl::MutexLock lock(&cache->mu);
        cache->fqdn = entries->front().canonical_name;
      });
}

grpc::ServerUnaryReactor* AgentService::StartServer(
    grpc::CallbackServerContext* context, const v1::StartServerRequest* request,
    v1::StartServerResponse* response) {
  if (auto s = CheckBearerToken(*context, options_.bearer_token); !s.ok())
    return FinishNow(context, s);
  if (engine_ == nullptr) return FinishNow(context, NoEngine());
  auto spec = ServerSpecFromProto(*request);
  if (!spec.ok()) return FinishNow(context, spec.status());
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  engine_->StartServer(*std::move(spec),
                       Complete<ServerInfo>(reactor, [response](auto& info) {
                         ServerInfoToProto(info, response->mutable_server());
                       }));
  return reactor;
}

grpc::ServerUnaryReactor* AgentService::StopServer(
    grpc::CallbackServerContext* context, const v1::StopServerRequest* request,
    v1::StopServerResponse* response) {
  if (auto s = CheckBearerToken(*context, options_.bearer_token); !s.ok())
    return FinishNow(context, s);
  if (engine_ == nullptr) return FinishNow(context, NoEngine());
  auto selector = SelectorFromProto(request->id(), request->label_selector());
  if (!selector.ok()) return FinishNow(context, selector.status());
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  engine_->StopServers(
      *std::move(selector), request->close_connections(),
      Complete<StopResult>(reactor, [this, response](auto& result) {
        size_t used = 64;
        for (const auto& server : result.servers) {
          response->add_server_ids(server.id);
          used += server.id.size() + 2;
        }
        AppendWithin(result.servers, response->mutable_servers(),
                     AnswerBudget(options_.max_message_bytes), &used,
                     ServerInfoToProto);
        response->set_connections_closed(result.connections_closed);
        response->set_servers_stopped(result.servers_stopped);
        response->set_truncated(
            result.servers_stopped >
                static_cast<uint64_t>(response->server_ids_size()) ||
            response->servers_size() < response->server_ids_size());
      }));
  return reactor;
}

grpc::ServerUnaryReactor* AgentService::ListServers(
    grpc::CallbackServerContext* context, const v1::ListServersRequest* request,
    v1::ListServersResponse* response) {
  if (auto s = CheckBearerToken(*context, options_.bearer_token); !s.ok())
    return FinishNow(context, s);
  if (engine_ == nullptr) return FinishNow(context, NoEngine());
  auto filter = ServerFilterFromProto(*request);
  if (!filter.ok()) return FinishNow(context, filter.status());
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  engine_->ListServers(
      *std::move(filter),
      Complete<Page<ServerInfo>>(reactor, [this, response](auto& page) {
        size_t used = page.next_page_token.size() + 8;
        const size_t n = AppendWithin(page.items, response->mutable_servers(),
                                      AnswerBudget(options_.max_message_bytes),
                                      &used, ServerInfoToProto);
        // A page cut short by size goes on after its last item.
        response->set_next_page_token(n < page.items.size()
                                          ? page.items[n - 1].id
                                          : page.next_page_token);
      }));
  return reactor;
}

grpc::ServerUnaryReactor* AgentService::OpenClient(
    grpc::CallbackServerContext* context, const v1::OpenClientRequest* request,
    v1::OpenClientResponse* response) {
  if (auto s = CheckBearerToken(*context, options_.bearer_token); !s.ok())
    return FinishNow(context, s);
  if (engine_ == nullptr) return FinishNow(context, NoEngine());
  auto spec = ClientSpecFromProto(*request);
  if (!spec.ok()) return FinishNow(context, spec.status());
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  engine_->OpenClient(
      *std::move(spec), DeadlineOf(context),
      Complete<ConnectionInfo>(reactor, [response](auto& connection) {
        ConnectionInfoToProto(connection, response->mutable_connection());
      }));
  return reactor;
}

grpc::ServerUnaryReactor* AgentService::ListConnections(
    grpc::CallbackServerContext* context,
    const v1::ListConnectionsRequest* request,
    v1::ListConnectionsResponse* response) {
  if (auto s = CheckBearerToken(*context, options_.bearer_token); !s.ok())
    return FinishNow(context, s);
  if (engine_ == nullptr) return FinishNow(context, NoEngine());
  auto filter = ConnectionFilterFromProto(*request);
  if (!filter.ok()) return FinishNow(context, filter.status());
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  engine_->ListConnections(
      *std::move(filter),
      Complete<Page<ConnectionInfo>>(reactor, [this, response](auto& page) {
        size_t used = page.next_page_token.size() + 8;
        const size_t n =
            AppendWithin(page.items, response->mutable_connections(),
                         AnswerBudget(options_.max_message_bytes), &used,
                         ConnectionInfoToProto);
        response->set_next_page_token(n < page.items.size()
                                          ? page.items[n - 1].id
                                          : page.next_page_token);
      }));
  return reactor;
}

grpc::ServerUnaryReactor* AgentService::Send(
    grpc::CallbackServerContext* context, const v1::SendRequest* request,
    v1::SendResponse* response) {
  if (auto s = CheckBearerToken(*context, options_.bearer_token); !s.ok())
    return FinishNow(context, s);
  if (engine_ == nullptr) return FinishNow(context, NoEngine());
  if (request->connection_id().empty()) {
    return FinishNow(context,
                     absl::InvalidArgumentError("connection_id is empty"));
  }
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  engine_->Send(request->connection_id(), request->data(),
                Complete<SendResult>(reactor, [response](auto& result) {
                  response->set_bytes_accepted(result.bytes_accepted);
                  response->set_send_buffered(result.send_buffered);
                }));
  return reactor;
}

grpc::ServerUnaryReactor* AgentService::Receive(
    grpc::CallbackServerContext* context, const v1::ReceiveRequest* request,
    v1::ReceiveResponse* response) {
  if (auto s = CheckBearerToken(*context, options_.bearer_token); !s.ok())
    return FinishNow(context, s);
  if (engine_ == nullptr) return FinishNow(context, NoEngine());
  if (request->connection_id().empty()) {
    return FinishNow(context,
                     absl::InvalidArgumentError("connection_id is empty"));
  }
  auto wait = DurationFromProto(request->wait(), "wait");
  if (!wait.ok()) return FinishNow(context, wait.status());
  if (request->delimiter().size() > kMaxDelimiterBytes) {
    return FinishNow(context, absl::InvalidArgumentError(absl::StrCat(
                                  "delimiter is ", request->delimiter().size(),
                                  " bytes; at most ", kMaxDelimiterBytes)));
  }
  ReceiveSpec spec;
  spec.max_bytes = request->max_bytes();
  spec.min_bytes = request->min_bytes();
  spec.delimiter = request->delimiter();
  spec.max_datagrams = request->max_datagrams();
  spec.wait = *wait;
  spec.deadline = AnswerDeadline(DeadlineOf(context), absl::Now());
  // The context outlives the parked receive: gRPC calls OnDone (which
  // frees it) only after Finish, and Finish runs in the engine's `done`.
  spec.caller_gone = [context] { return context->IsCancelled(); };
  auto* reactor = new ReceiveReactor(engine_, response);
  reactor->Start(request->connection_id(), spec);
  return reactor;
}

grpc::ServerUnaryReactor* AgentService::CloseConnection(
    grpc::CallbackServerContext* context,
    const v1::CloseConnectionRequest* request,
    v1::CloseConnectionResponse* response) {
  if (auto s = CheckBearerToken(*context, options_.bearer_token); !s.ok())
    return FinishNow(context, s);
  if (engine_ == nullptr) return FinishNow(context, NoEngine());
  auto selector = SelectorFromProto(request->id(), request->label_selector());
  if (!selector.ok()) return FinishNow(context, selector.status());
  auto mode = CloseModeFromProto(request->mode());
  if (!mode.ok()) return FinishNow(context, mode.status());
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  engine_->CloseConnections(
      *std::move(selector), *mode,
      Complete<CloseResult>(reactor, [this, response](auto& result) {
        size_t used = 64;
        for (const auto& connection : result.connections) {
          response->add_connection_ids(connection.id);
          used += connection.id.size() + 2;
        }
        AppendWithin(result.connections, response->mutable_connections(),
                     AnswerBudget(options_.max_message_bytes), &used,
                     ConnectionInfoToProto);
        response->set_connections_closed(result.count);
        response->set_truncated(
            result.count >
                static_cast<uint64_t>(response->connection_ids_size()) ||
            response->connections_size() < response->connection_ids_size());
      }));
  return reactor;
}

grpc::ServerWriteReactor<v1::Event>* AgentService::Watch(
    grpc::CallbackServerContext* context, const v1::WatchRequest* request) {
  if (auto s = CheckBearerToken(*context, options_.bearer_token); !s.ok())
    return new RefusedReactor<grpc::ServerWriteReactor<v1::Event>>(
        ToGrpcStatus(s));
  auto shared = std::make_shared<WatchShared>();
  auto* reactor = new WatchReactor(engine_, watches_, shared);
  absl::Status refused;
  auto filter = WatchFilterFromProto(*request);
  if (engine_ == nullptr) {
    refused = NoEngine();
  } else if (!filter.ok()) {
    refused = filter.status();
  } else {
    absl::MutexLock lock(&watches_->mu);
    if (watches_->ended) {
      refused = absl::UnavailableError("agent shutting down");
    } else if (watches_->live.size() >= options_.max_watchers) {
      refused = absl::ResourceExhaustedError(
          absl::StrCat("watch: ", options_.max_watchers,
                       " watchers already (--max_watchers)"));
    } else {
      watches_->live.insert(shared);
    }
  }
  if (!refused.ok()) {
    reactor->Refuse(ToGrpcStatus(refused));
    return reactor;
  }
  // Unknown ids are NOT_FOUND, as everywhere. This gRPC thread does not
  // hold the engine lock, so the check completes inline, before the
  // reactor is returned (nothing can have cancelled it yet).
  const WatchFilter checked = *filter;
  engine_->CheckWatchFilter(
      checked, [reactor, filter = *std::move(filter),
                limit = options_.watch_queue_events](absl::Status s) mutable {
        if (!s.ok()) {
          reactor->Refuse(ToGrpcStatus(s));
          return;
        }
        reactor->Begin(std::move(filter), limit);
      });
  return reactor;
}

StreamBidiReactor* AgentService::Stream(grpc::CallbackServerContext* context) {
  if (auto s = CheckBearerToken(*context, options_.bearer_token); !s.ok())
    return new RefusedReactor<StreamBidiReactor>(ToGrpcStatus(s));
  return NewStreamReactor(engine_, streams_, context);
}

grpc::ServerUnaryReactor* AgentService::Resolve(
    grpc::CallbackServerContext* context, const v1::ResolveRequest* request,
    v1::ResolveResponse* response) {
  if (auto s = CheckBearerToken(*context, options_.bearer_token); !s.ok())
    return FinishNow(context, s);
  const absl::Time start = absl::Now();
  std::optional<ResolveQuery> forward;
  if (!request->reverse()) {
    auto query = ResolveQueryFromProto(*request);
    if (!query.ok()) return FinishNow(context, query.status());
    forward = *std::move(query);
  }
  auto* reactor = new ResolveReactor(response);
  std::shared_ptr<ResolveReactor::State> state = reactor->state();
  bool queued;
  if (forward.has_value()) {
    queued = resolver_->SubmitResolve(
        *std::move(forward), DeadlineOf(context),
        [state, start](absl::StatusOr<std::vector<AddressEntry>> result) {
          ResolveReactor::Complete(
              state, result.status(), [&](v1::ResolveResponse* out) {
                for (const auto& entry : *result) {
                  AddressEntryToProto(entry, out->add_entries());
                }
                DurationToProto(absl::Now() - start, out->mutable_elapsed());
              });
        });
  } else {
    ReverseQuery query;
    query.address = request->host();
    query.service = request->service();
    query.name_required = request->name_required();
    queued = resolver_->SubmitReverse(
        std::move(query), DeadlineOf(context),
        [state, start](absl::StatusOr<ReverseResult> result) {
          ResolveReactor::Complete(
              state, result.status(), [&](v1::ResolveResponse* out) {
                out->set_reverse_host(result->host);
                out->set_reverse_service(result->service);
                DurationToProto(absl::Now() - start, out->mutable_elapsed());
              });
        });
  }
  if (!queued) {
    ResolveReactor::Complete(
        state,
        absl::ResourceExhaustedError(
            "resolver queue is full: too many lookups waiting; retry later"),
        [](v1::ResolveResponse*) {});
  }
  return reactor;
}

grpc::ServerUnaryReactor* AgentService::Probe(
    grpc::CallbackServerContext* context, const v1::ProbeRequest* request,
    v1::ProbeResponse* response) {
  if (auto s = CheckBearerToken(*context, options_.bearer_token); !s.ok())
    return FinishNow(context, s);
  if (engine_ == nullptr) return FinishNow(context, NoEngine());
  auto spec = ProbeSpecFromProto(*request, context->deadline());
  if (!spec.ok()) return FinishNow(context, spec.status());
  return StartProbe(*engine_, *std::move(spec), response);
}

grpc::ServerUnaryReactor* AgentService::GetHostInfo(
    grpc::CallbackServerContext* context, const v1::GetHostInfoRequest* request,
    v1::HostInfo* response) {
  if (auto s = CheckBearerToken(*context, options_.bearer_token); !s.ok())
    return FinishNow(context, s);
  // getifaddrs and uname answer from the kernel at once; no lookup here.
  auto details = ReadHostDetails();
  if (!details.ok()) return FinishNow(context, details.status());
  response->set_hostname(details->hostname);
  {
    absl::MutexLock lock(&fqdn_->mu);
    response->set_fqdn(fqdn_->fqdn);
  }
  response->set_os(details->os);
  for (const auto& in : details->interfaces) {
    v1::NetworkInterface* out = response->add_interfaces();
    out->set_name(in.name);
    out->set_index(in.index);
    for (const auto& flag : in.flags) out->add_flags(flag);
    out->set_mtu(in.mtu);
    out->set_hardware_address(in.hardware_address);
    for (const auto& address : in.addresses) {
      v1::InterfaceAddress* a = out->add_addresses();
      a->set_family(FamilyToProto(address.family));
      a->set_address(address.address);
      a->set_prefix_length(address.prefix_length);
      a->set_broadcast(address.broadcast);
    }
  }
  response->set_agent_version(options_.version);
  response->set_pid(getpid());
  DurationToProto(absl::Now() - options_.started_at,
                  response->mutable_uptime());
  TimeToProto(options_.started_at, response->mutable_started_at());
  v1::Limits* limits = response->mutable_limits();
  limits->set_max_message_bytes(options_.max_message_bytes);
  if (engine_ != nullptr) {
    const EngineOptions& o = engine_->options();
    limits->set_max_servers(o.max_servers);
    limits->set_max_connections(o.max_connections);
    limits->set_recv_buffer_bytes(o.recv_buffer_bytes);
    limits->set_send_buffer_bytes(o.send_buffer_bytes);
    limits->set_max_send_bytes(o.max_send_bytes);
    limits->set_max_udp_sessions_per_server(o.max_udp_sessions_per_server);
    limits->set_max_watchers(options_.max_watchers);
    limits->set_watch_queue_events(options_.watch_queue_events);
    limits->set_closed_connections_kept(o.closed_connections_kept);
    limits->set_max_total_buffered_bytes(o.max_total_buffered_bytes);
  }
  return FinishNow(context, absl::OkStatus());
}

}  // namespace sockagent
