// A gRPC server interceptor that logs how calls end, so that no handler has
// to: every call ending UNAUTHENTICATED is logged at warn level as
// event=auth_failure, every call ending PERMISSION_DENIED as
// event=policy_refusal, each with the method, the peer's address, the code
// and the message; with --log-level=debug every other call as event=rpc.
// A request message that does not parse (gRPC answers UNIMPLEMENTED with no
// words) becomes INVALID_ARGUMENT saying so, logged as
// event=malformed_request at warn level.
//
//   builder.experimental().SetInterceptorCreators(RpcLogInterceptors());
#ifndef SOCKAGENT_SERVICE_RPC_LOG_H_
#define SOCKAGENT_SERVICE_RPC_LOG_H_

#include <grpcpp/support/server_interceptor.h>

#include <memory>
#include <vector>

namespace sockagent {

std::vector<
    std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
RpcLogInterceptors();

// Routes gRPC's own log lines (by default only its errors, GRPC_VERBOSITY)
// into the structured log: a failed TLS handshake (a client without a
// certificate under mutual TLS, a client speaking plaintext) as
// event=tls_handshake_failure at warn level, the rest as event=grpc. Call
// once, before the server starts.
void RouteGrpcLogs();

}  // namespace sockagent

#endif  // SOCKAGENT_SERVICE_RPC_LOG_H_
