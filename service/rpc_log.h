// A gRPC server interceptor that logs how calls end, so that no handler has
// to: every call ending UNAUTHENTICATED is logged at warn level as
// event=auth_failure, every call ending PERMISSION_DENIED as
// event=policy_refusal, each with the method, the peer's address, the code
// and the message; with --log-level=debug every other call as event=rpc.
// A request message that does not parse (gRPC answers UNIMPLEMENTED with no
// words) becomes INVALID_ARGUMENT saying so, logged as
// event=malformed_request at warn level.
// The warn lines are rate-limited: at most one per event and peer IP per
// interval (SetRefusalLogInterval, default 10 s), carrying suppressed=N, the
// lines of that kind from that IP not written since its previous one.
// They also write the audit lines (audit_log.h) and count the calls in flight
// (ProcessInflightCalls(), service/inflight_calls.h) for the daemon's shutdown.
//
//   builder.experimental().SetInterceptorCreators(RpcLogInterceptors());
#ifndef SOCKAGENT_SERVICE_RPC_LOG_H_
#define SOCKAGENT_SERVICE_RPC_LOG_H_

#include <grpcpp/support/server_interceptor.h>

#include <memory>
#include <vector>

#include "absl/time/time.h"

namespace sockagent {

std::vector<
    std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
RpcLogInterceptors();

// Interval of the auth_failure / policy_refusal rate limit. Any thread.
void SetRefusalLogInterval(absl::Duration interval);

// Routes gRPC's own log lines (by default only its errors, GRPC_VERBOSITY)
// into the structured log: a failed TLS handshake (a client without a
// certificate under mutual TLS, a client speaking plaintext) as
// event=tls_handshake_failure at warn level, the rest as event=grpc. Call
// once, before the server starts.
void RouteGrpcLogs();

}  // namespace sockagent

#endif  // SOCKAGENT_SERVICE_RPC_LOG_H_
