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

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "agent/host_info.h"
#include "service/auth.h"
#include "service/convert.h"
#include "service/fault_rpc.h"
#include "service/perf_rpc.h"
#include "service/probe_rpc.h"
#include "service/status_mapping.h"
#include "service/watch_reactor.h"

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

// One page of a listing into `out`, within the answer budget. Returns the
// next page token: a page cut short by size goes on after its last item.
template <typename Item, typename Message, typename Convert>
std::string AppendPage(const Page<Item>& page,
                       google::protobuf::RepeatedPtrField<Message>* out,
                       uint64_t max_message_bytes, Convert convert) {
  size_t used = page.next_page_token.size() + 8;
  const size_t n = AppendWithin(
      page.items, out, AnswerBudget(max_message_bytes), &used, convert);
  return n < page.items.size() ? page.items[n - 1].id : page.next_page_token;
}

// What a Stop or Close by selector answers: the id of every object it
// acted on into `ids`, then as many whole objects into `out` as fit. True
// (truncated) when the answer names fewer than `total` objects or holds
// fewer objects than ids.
template <typename Item, typename Message, typename Convert>
bool AppendSelected(const std::vector<Item>& items, uint64_t total,
                    google::protobuf::RepeatedPtrField<std::string>* ids,
                    google::protobuf::RepeatedPtrField<Message>* out,
                    uint64_t max_message_bytes, Convert convert) {
  size_t used = 64;
  for (const auto& item : items) {
    ids->Add(std::string(item.id));
    used += item.id.size() + 2;
  }
  AppendWithin(items, out, AnswerBudget(max_message_bytes), &used, convert);
  return total > static_cast<uint64_t>(ids->size()) ||
         out->size() < ids->size();
}

// Send and Receive name one connection.
absl::StatusOr<std::string> ConnectionIdFromProto(const std::string& id) {
  if (id.empty()) return absl::InvalidArgumentError("connection_id is empty");
  return id;
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

// The Receive request as the engine's spec. The caller's going away ends
// the wait early: the context outlives the parked receive, because gRPC
// calls OnDone (which frees it) only after Finish, and Finish runs in the
// engine's `done`.
absl::StatusOr<ReceiveSpec> ReceiveSpecFromProto(
    const v1::ReceiveRequest& request, grpc::CallbackServerContext* context) {
  if (auto id = ConnectionIdFromProto(request.connection_id()); !id.ok()) {
    return id.status();
  }
  auto wait = DurationFromProto(request.wait(), "wait");
  if (!wait.ok()) return wait.status();
  if (request.delimiter().size() > kMaxDelimiterBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("delimiter is ", request.delimiter().size(),
                     " bytes; at most ", kMaxDelimiterBytes));
  }
  ReceiveSpec spec;
  spec.max_bytes = request.max_bytes();
  spec.min_bytes = request.min_bytes();
  spec.delimiter = request.delimiter();
  spec.max_datagrams = request.max_datagrams();
  spec.wait = *wait;
  spec.deadline = AnswerDeadline(DeadlineOf(context), absl::Now());
  spec.caller_gone = [context] { return context->IsCancelled(); };
  return spec;
}

}  // namespace

AgentService::AgentService(Engine& engine, ResolverPool* resolver,
                           AgentServiceOptions options)
    : engine_(engine),
      resolver_(resolver),
      options_(std::move(options)),
      watches_(NewWatchRegistry()),
      streams_(NewStreamRegistry()) {}

AgentService::~AgentService() = default;

void AgentService::EndStreamingCalls() {
  EndStreams(*streams_);
  EndWatches(*watches_);
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

absl::Status AgentService::Admit(
    const grpc::CallbackServerContext& context) const {
  return CheckBearerToken(context, options_.bearer_token);
}

template <typename Parse>
auto AgentService::Admit(const grpc::CallbackServerContext& context,
                         Parse parse) const -> decltype(parse()) {
  if (absl::Status s = Admit(context); !s.ok()) return s;
  return parse();
}

template <typename Result, typename Parse, typename Start, typename Fill>
grpc::ServerUnaryReactor* AgentService::Unary(
    grpc::CallbackServerContext* context, Parse parse, Start start, Fill fill) {
  auto argument = Admit(*context, std::move(parse));
  if (!argument.ok()) return FinishNow(context, argument.status());
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  start(*std::move(argument), Complete<Result>(reactor, std::move(fill)));
  return reactor;
}

grpc::ServerUnaryReactor* AgentService::StartServer(
    grpc::CallbackServerContext* context, const v1::StartServerRequest* request,
    v1::StartServerResponse* response) {
  return Unary<ServerInfo>(
      context,
      [&] { return ServerSpecFromProto(*request, options_.tls_path_dirs); },
      [&](ServerSpec spec, auto done) {
        engine_.StartServer(std::move(spec), std::move(done));
      },
      [response](auto& info) {
        ServerInfoToProto(info, response->mutable_server());
        response->set_outcome(StartOutcomeToProto(info.start_outcome));
        response->set_difference(info.start_difference);
      });
}

grpc::ServerUnaryReactor* AgentService::StopServer(
    grpc::CallbackServerContext* context, const v1::StopServerRequest* request,
    v1::StopServerResponse* response) {
  return Unary<StopResult>(
      context, [&] { return ServerSelectorFromProto(*request); },
      [&](Selector selector, auto done) {
        engine_.StopServers(std::move(selector), request->close_connections(),
                            std::move(done));
      },
      [this, response](auto& result) {
        response->set_truncated(AppendSelected(
            result.servers, result.servers_stopped,
            response->mutable_server_ids(), response->mutable_servers(),
            options_.max_message_bytes, ServerInfoToProto));
        response->set_connections_closed(result.connections_closed);
        response->set_servers_stopped(result.servers_stopped);
      });
}

grpc::ServerUnaryReactor* AgentService::ListServers(
    grpc::CallbackServerContext* context, const v1::ListServersRequest* request,
    v1::ListServersResponse* response) {
  return Unary<Page<ServerInfo>>(
      context, [&] { return ServerFilterFromProto(*request); },
      [&](ServerFilter filter, auto done) {
        engine_.ListServers(std::move(filter), std::move(done));
      },
      [this, response](auto& page) {
        response->set_next_page_token(
            AppendPage(page, response->mutable_servers(),
                       options_.max_message_bytes, ServerInfoToProto));
      });
}

grpc::ServerUnaryReactor* AgentService::OpenClient(
    grpc::CallbackServerContext* context, const v1::OpenClientRequest* request,
    v1::OpenClientResponse* response) {
  return Unary<ConnectionInfo>(
      context, [&] { return ClientSpecFromProto(*request); },
      [&](ClientSpec spec, auto done) {
        engine_.OpenClient(std::move(spec), DeadlineOf(context),
                           std::move(done));
      },
      [response](auto& connection) {
        ConnectionInfoToProto(connection, response->mutable_connection());
      });
}

grpc::ServerUnaryReactor* AgentService::ListConnections(
    grpc::CallbackServerContext* context,
    const v1::ListConnectionsRequest* request,
    v1::ListConnectionsResponse* response) {
  return Unary<Page<ConnectionInfo>>(
      context, [&] { return ConnectionFilterFromProto(*request); },
      [&](ConnectionFilter filter, auto done) {
        engine_.ListConnections(std::move(filter), std::move(done));
      },
      [this, response, full = !request->id().empty()](auto& page) {
        response->set_next_page_token(AppendPage(
            page, response->mutable_connections(), options_.max_message_bytes,
            full ? FullConnectionInfoToProto : ConnectionInfoToProto));
      });
}

grpc::ServerUnaryReactor* AgentService::Send(
    grpc::CallbackServerContext* context, const v1::SendRequest* request,
    v1::SendResponse* response) {
  return Unary<SendResult>(
      context, [&] { return ConnectionIdFromProto(request->connection_id()); },
      [&](std::string connection_id, auto done) {
        engine_.Send(std::move(connection_id), request->data(),
                     std::move(done));
      },
      [response](auto& result) {
        response->set_bytes_accepted(result.bytes_accepted);
        response->set_send_buffered(result.send_buffered);
      });
}

grpc::ServerUnaryReactor* AgentService::Receive(
    grpc::CallbackServerContext* context, const v1::ReceiveRequest* request,
    v1::ReceiveResponse* response) {
  auto spec =
      Admit(*context, [&] { return ReceiveSpecFromProto(*request, context); });
  if (!spec.ok()) return FinishNow(context, spec.status());
  auto* reactor = new ReceiveReactor(&engine_, response);
  reactor->Start(request->connection_id(), *std::move(spec));
  return reactor;
}

grpc::ServerUnaryReactor* AgentService::CloseConnection(
    grpc::CallbackServerContext* context,
    const v1::CloseConnectionRequest* request,
    v1::CloseConnectionResponse* response) {
  struct Close {
    Selector selector;
    CloseMode mode;
  };
  return Unary<CloseResult>(
      context,
      [&]() -> absl::StatusOr<Close> {
        auto selector =
            SelectorFromProto(request->id(), request->label_selector());
        if (!selector.ok()) return selector.status();
        auto mode = CloseModeFromProto(request->mode());
        if (!mode.ok()) return mode.status();
        return Close{*std::move(selector), *mode};
      },
      [&](Close close, auto done) {
        engine_.CloseConnections(std::move(close.selector), close.mode,
                                 std::move(done));
      },
      [this, response](auto& result) {
        response->set_truncated(AppendSelected(
            result.connections, result.count,
            response->mutable_connection_ids(), response->mutable_connections(),
            options_.max_message_bytes, ConnectionInfoToProto));
        response->set_connections_closed(result.count);
      });
}

grpc::ServerWriteReactor<v1::Event>* AgentService::Watch(
    grpc::CallbackServerContext* context, const v1::WatchRequest* request) {
  if (absl::Status s = Admit(*context); !s.ok()) {
    return new RefusedReactor<grpc::ServerWriteReactor<v1::Event>>(
        ToGrpcStatus(s));
  }
  return NewWatchReactor(engine_, watches_, *request,
                         {.queue_events = options_.watch_queue_events,
                          .max_watchers = options_.max_watchers});
}

StreamBidiReactor* AgentService::Stream(grpc::CallbackServerContext* context) {
  if (absl::Status s = Admit(*context); !s.ok()) {
    return new RefusedReactor<StreamBidiReactor>(ToGrpcStatus(s));
  }
  return NewStreamReactor(engine_, streams_, context);
}

grpc::ServerUnaryReactor* AgentService::Resolve(
    grpc::CallbackServerContext* context, const v1::ResolveRequest* request,
    v1::ResolveResponse* response) {
  // Reverse lookups take the address as it is.
  auto forward =
      Admit(*context, [&]() -> absl::StatusOr<std::optional<ResolveQuery>> {
        if (request->reverse()) return std::nullopt;
        return ResolveQueryFromProto(*request);
      });
  if (!forward.ok()) return FinishNow(context, forward.status());
  const absl::Time start = absl::Now();
  auto* reactor = new ResolveReactor(response);
  std::shared_ptr<ResolveReactor::State> state = reactor->state();
  bool queued;
  if (forward->has_value()) {
    queued = resolver_->SubmitResolve(
        **std::move(forward), DeadlineOf(context),
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
  auto spec = Admit(*context, [&] {
    return ProbeSpecFromProto(*request, context->deadline());
  });
  if (!spec.ok()) return FinishNow(context, spec.status());
  return StartProbe(engine_, *std::move(spec), response);
}

grpc::ServerUnaryReactor* AgentService::Perf(
    grpc::CallbackServerContext* context, const v1::PerfRequest* request,
    v1::PerfResponse* response) {
  auto spec = Admit(*context, [&] {
    return PerfSpecFromProto(*request, context->deadline());
  });
  if (!spec.ok()) return FinishNow(context, spec.status());
  return StartPerf(engine_, *std::move(spec), response);
}

grpc::ServerUnaryReactor* AgentService::AddFault(
    grpc::CallbackServerContext* context, const v1::AddFaultRequest* request,
    v1::AddFaultResponse* response) {
  return Unary<FaultInfo>(
      context, [&] { return FaultSpecFromProto(request->fault()); },
      [&](FaultSpec spec, auto done) {
        engine_.AddFault(std::move(spec), std::move(done));
      },
      [response](auto& info) {
        FaultInfoToProto(info, response->mutable_fault());
      });
}

grpc::ServerUnaryReactor* AgentService::UpdateFault(
    grpc::CallbackServerContext* context, const v1::UpdateFaultRequest* request,
    v1::UpdateFaultResponse* response) {
  return Unary<FaultInfo>(
      context, [&] { return FaultSpecFromProto(request->fault()); },
      [&](FaultSpec spec, auto done) {
        engine_.UpdateFault(std::move(spec), std::move(done));
      },
      [response](auto& info) {
        FaultInfoToProto(info, response->mutable_fault());
      });
}

grpc::ServerUnaryReactor* AgentService::RemoveFault(
    grpc::CallbackServerContext* context, const v1::RemoveFaultRequest* request,
    v1::RemoveFaultResponse* response) {
  return Unary<std::vector<std::string>>(
      context,
      [&]() -> absl::StatusOr<Labels> {
        return Labels(request->label_selector().begin(),
                      request->label_selector().end());
      },
      [&](Labels selector, auto done) {
        engine_.RemoveFaults(request->name(), std::move(selector),
                             request->all(), std::move(done));
      },
      [response](auto& names) {
        for (const std::string& n : names) response->add_names(n);
      });
}

grpc::ServerUnaryReactor* AgentService::ListFaults(
    grpc::CallbackServerContext* context,
    const v1::ListFaultsRequest* /*request*/,
    v1::ListFaultsResponse* response) {
  return Unary<std::vector<FaultInfo>>(
      context, [&]() -> absl::StatusOr<bool> { return true; },
      [&](bool, auto done) { engine_.ListFaults(std::move(done)); },
      [response](auto& faults) {
        for (const FaultInfo& f : faults) {
          FaultInfoToProto(f, response->add_faults());
        }
      });
}

grpc::ServerUnaryReactor* AgentService::GetHostInfo(
    grpc::CallbackServerContext* context, const v1::GetHostInfoRequest* request,
    v1::HostInfo* response) {
  if (absl::Status s = Admit(*context); !s.ok()) return FinishNow(context, s);
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
  const EngineOptions& o = engine_.options();
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
  return FinishNow(context, absl::OkStatus());
}

}  // namespace sockagent
