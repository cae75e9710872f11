// The audit log: one info-level line (event=audit) for every call that
// creates or ends something on the host — StartServer, StopServer,
// OpenClient, CloseConnection, Stream opens, and AddFault, UpdateFault and
// RemoveFault (faults change what the host's connections do) — saying who
// asked, what,
// the result and how long it took:
//
//   ts=... level=info event=audit method=StartServer
//       peer=ipv4:127.0.0.1:40312 client_cn="" token=sha256:1f2e3d4c
//       request="transport: TRANSPORT_TCP bind { host: \"127.0.0.1\" } ..."
//       code=OK ids=srv-3 took=1.2ms
//
// - peer: the control connection's address (unix: for the UNIX socket).
// - client_cn: under mutual TLS (--tls-client-ca), the subject CN of the
//   client certificate that verified (at most 64 bytes); "" otherwise.
// - token: the first 8 hex digits of SHA-256 of the bearer token the call
//   carried ("none" without one). Enough to tell tokens apart after a
//   rotation; never the token.
// - request: the request message on one line in protobuf text format,
//   strings and bytes cut after 64 bytes, the whole after 512 bytes.
// - ids: the ids the answer names (the server started, the connections
//   closed: at most 10, then "+N"). A Stream is logged when it opened (its
//   first answer, took = time to open) or when it failed before that.
//
// Calls that fail the token check are not audited here (they are
// auth_failure lines, rate-limited per peer IP, so an unauthenticated
// caller cannot flood the log); every authenticated call is, whatever its
// result. Reads (List, Receive, Watch, Resolve, ...) appear only at
// --log-level=debug (event=rpc).
//
//   interceptors.push_back(AuditInterceptorFactory());
#ifndef SOCKAGENT_SERVICE_AUDIT_LOG_H_
#define SOCKAGENT_SERVICE_AUDIT_LOG_H_

#include <grpcpp/support/server_interceptor.h>

#include <memory>
#include <string>

#include "absl/strings/string_view.h"

namespace sockagent {

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
AuditInterceptorFactory();

// "sha256:1f2e3d4c" for an `authorization` metadata value "Bearer T";
// "none" when empty; "malformed" when not a bearer token.
std::string TokenFingerprint(absl::string_view authorization);

}  // namespace sockagent

#endif  // SOCKAGENT_SERVICE_AUDIT_LOG_H_
