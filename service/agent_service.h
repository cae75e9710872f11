// The gRPC service sockagent.v1.SocketAgent: translates requests into
// engine calls and engine results into responses. Every handler is a
// callback-API reaction that never blocks: an engine call does its socket
// work on the calling gRPC thread and completes there when it can, or
// later on the engine's loop thread (a parked Receive, a connect, a name
// lookup), and each completion calls Finish() from where it runs.
//
// Include this only where the service is assembled (the daemon's main and
// tests): it pulls in grpcpp.
#ifndef SOCKAGENT_SERVICE_AGENT_SERVICE_H_
#define SOCKAGENT_SERVICE_AGENT_SERVICE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/engine.h"
#include "agent/resolver.h"
#include "service/stream_reactor.h"
#include "service/watch_reactor.h"
#include "sockagent/v1/agent.grpc.pb.h"

namespace sockagent {

struct AgentServiceOptions {
  std::string version = SOCKAGENT_VERSION;
  absl::Time started_at = absl::Now();
  uint64_t max_message_bytes = 4 << 20;  // Reported in GetHostInfo.
  // Watch: each watcher's queue bound (events), and watchers at once (one
  // more is RESOURCE_EXHAUSTED).
  uint32_t watch_queue_events = kDefaultWatchQueueEvents;
  uint32_t max_watchers = kDefaultMaxWatchers;
  // Every SocketAgent call must carry `authorization: Bearer <token>`
  // with this token (see service/auth.h); empty: no token needed.
  std::string bearer_token;
  // Canonical directories StartServer's TLS file paths may name
  // (--allow-tls-paths); empty: none (PERMISSION_DENIED).
  std::vector<std::string> tls_path_dirs;
};

// The generated CallbackService, except that Stream takes raw messages
// (grpc::ByteBuffer) and parses them itself: gRPC 1.51 reports a streamed
// message that fails to parse exactly like the caller's half-close
// (OnReadDone(false)), and the two must end differently (stream_reactor.h).
using AgentServiceBase = v1::SocketAgent::WithCallbackMethod_StartServer<
    v1::SocketAgent::WithCallbackMethod_StopServer<v1::SocketAgent::WithCallbackMethod_ListServers<
        v1::SocketAgent::WithCallbackMethod_OpenClient<v1::SocketAgent::WithCallbackMethod_ListConnections<
            v1::SocketAgent::WithCallbackMethod_Send<v1::SocketAgent::WithCallbackMethod_Receive<
                v1::SocketAgent::WithCallbackMethod_CloseConnection<
                    v1::SocketAgent::WithCallbackMethod_Watch<v1::SocketAgent::WithRawCallbackMethod_Stream<
                        v1::SocketAgent::WithCallbackMethod_Resolve<
                            v1::SocketAgent::WithCallbackMethod_GetHostInfo<
                                v1::SocketAgent::WithCallbackMethod_Probe<
                                    v1::SocketAgent::WithCallbackMethod_AddFault<
                                        v1::SocketAgent::WithCallbackMethod_UpdateFault<
                                            v1::SocketAgent::WithCallbackMethod_RemoveFault<
                                                v1::SocketAgent::WithCallbackMethod_ListFaults<
                                                    v1::SocketAgent::WithCallbackMethod_Perf<
                                                        v1::SocketAgent::
                                                            Service>>>>>>>>>>>>>>>>>>;

class AgentService final : public AgentServiceBase {
 public:
  // `engine` and `resolver` must outlive the service (and the gRPC server
  // serving it).
  AgentService(Engine& engine, ResolverPool* resolver,
               AgentServiceOptions options);
  ~AgentService() override;

  // Ends every Watch (OK) and Stream (UNAVAILABLE "agent shutting down")
  // call and refuses new ones, so a server shutdown does not wait out its
  // grace period for calls that never end by themselves. Any thread.
  void EndStreamingCalls();

  // Looks the host's fully qualified name up once, on the resolver pool,
  // and caches it for GetHostInfo (which reports "" until it is known).
  void StartFqdnLookup();

  grpc::ServerUnaryReactor* StartServer(
      grpc::CallbackServerContext* context,
      const v1::StartServerRequest* request,
      v1::StartServerResponse* response) override;
  grpc::ServerUnaryReactor* StopServer(
      grpc::CallbackServerContext* context,
      const v1::StopServerRequest* request,
      v1::StopServerResponse* response) override;
  grpc::ServerUnaryReactor* ListServers(
      grpc::CallbackServerContext* context,
      const v1::ListServersRequest* request,
      v1::ListServersResponse* response) override;
  grpc::ServerUnaryReactor* OpenClient(
      grpc::CallbackServerContext* context,
      const v1::OpenClientRequest* request,
      v1::OpenClientResponse* response) override;
  grpc::ServerUnaryReactor* ListConnections(
      grpc::CallbackServerContext* context,
      const v1::ListConnectionsRequest* request,
      v1::ListConnectionsResponse* response) override;
  grpc::ServerUnaryReactor* Send(grpc::CallbackServerContext* context,
                                 const v1::SendRequest* request,
                                 v1::SendResponse* response) override;
  grpc::ServerUnaryReactor* Receive(grpc::CallbackServerContext* context,
                                    const v1::ReceiveRequest* request,
                                    v1::ReceiveResponse* response) override;
  grpc::ServerUnaryReactor* CloseConnection(
      grpc::CallbackServerContext* context,
      const v1::CloseConnectionRequest* request,
      v1::CloseConnectionResponse* response) override;
  grpc::ServerWriteReactor<v1::Event>* Watch(
      grpc::CallbackServerContext* context,
      const v1::WatchRequest* request) override;
  StreamBidiReactor* Stream(grpc::CallbackServerContext* context) override;
  grpc::ServerUnaryReactor* Resolve(grpc::CallbackServerContext* context,
                                    const v1::ResolveRequest* request,
                                    v1::ResolveResponse* response) override;
  grpc::ServerUnaryReactor* GetHostInfo(grpc::CallbackServerContext* context,
                                        const v1::GetHostInfoRequest* request,
                                        v1::HostInfo* response) override;
  grpc::ServerUnaryReactor* Probe(grpc::CallbackServerContext* context,
                                  const v1::ProbeRequest* request,
                                  v1::ProbeResponse* response) override;
  grpc::ServerUnaryReactor* Perf(grpc::CallbackServerContext* context,
                                 const v1::PerfRequest* request,
                                 v1::PerfResponse* response) override;
  // Faults (service/fault_rpc.h converts).
  grpc::ServerUnaryReactor* AddFault(grpc::CallbackServerContext* context,
                                     const v1::AddFaultRequest* request,
                                     v1::AddFaultResponse* response) override;
  grpc::ServerUnaryReactor* UpdateFault(
      grpc::CallbackServerContext* context,
      const v1::UpdateFaultRequest* request,
      v1::UpdateFaultResponse* response) override;
  grpc::ServerUnaryReactor* RemoveFault(
      grpc::CallbackServerContext* context,
      const v1::RemoveFaultRequest* request,
      v1::RemoveFaultResponse* response) override;
  grpc::ServerUnaryReactor* ListFaults(
      grpc::CallbackServerContext* context,
      const v1::ListFaultsRequest* request,
      v1::ListFaultsResponse* response) override;

 private:
  // The bearer token check every SocketAgent call starts with
  // (service/auth.h): OK, or UNAUTHENTICATED with no effect.
  absl::Status Admit(const grpc::CallbackServerContext& context) const;
  // Admit, then `parse` (the request checked and turned into what the
  // engine takes): the first refusal, or what `parse` returned.
  template <typename Parse>
  auto Admit(const grpc::CallbackServerContext& context, Parse parse) const
      -> decltype(parse());
  // A unary call that is one engine call: Admit and `parse` as above, then
  // `start(argument, done)` makes the call, and `done` fills the response
  // with `fill(result)` on success and finishes the call either way. A
  // refusal finishes the call at once.
  template <typename Result, typename Parse, typename Start, typename Fill>
  grpc::ServerUnaryReactor* Unary(grpc::CallbackServerContext* context,
                                  Parse parse, Start start, Fill fill);

  Engine& engine_;
  ResolverPool* const resolver_;
  const AgentServiceOptions options_;
  // Shared with the lookup's callback, which may outlive the service when
  // the daemon stops during a slow lookup.
  struct FqdnCache {
    absl::Mutex mu;
    std::string fqdn ABSL_GUARDED_BY(mu);
  };
  const std::shared_ptr<FqdnCache> fqdn_ = std::make_shared<FqdnCache>();
  // Watch and Stream calls in progress; shared with their reactors.
  const std::shared_ptr<WatchRegistry> watches_;
  const std::shared_ptr<StreamRegistry> streams_;
};

}  // namespace sockagent

#endif  // SOCKAGENT_SERVICE_AGENT_SERVICE_H_
