// Who may drive the agent: the bearer token check run at the entry of every
// SocketAgent handler (unary and streaming), the token file it comes from,
// and the PEM files of the control API's TLS (terminated by the daemon:
// service/control_tls.h).
//
// The health service and server reflection are not checked: health says
// only SERVING or not (load balancers and Docker's HEALTHCHECK probe it
// without secrets), and reflection describes the public API of
// proto/sockagent/v1/agent.proto, nothing about the host. Under mutual TLS
// they too need a client certificate, as every call on the port does.
//
//   absl::Status s = CheckBearerToken(*context, options.bearer_token);
//   if (!s.ok()) return FinishNow(context, s);  // UNAUTHENTICATED, no effect
// (AgentService::Admit runs it for every SocketAgent call.)
#ifndef SOCKAGENT_SERVICE_AUTH_H_
#define SOCKAGENT_SERVICE_AUTH_H_

#include <grpcpp/grpcpp.h>

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace sockagent {

// Largest token, certificate or key file the daemon reads.
inline constexpr size_t kMaxCredentialFileBytes = 1 << 20;

// OK when `expected` is empty (no token configured) or the call carries
// `authorization: Bearer <expected>`. Otherwise UNAUTHENTICATED: "missing
// bearer token ...", "malformed authorization metadata ..." or "wrong
// bearer token". The comparison takes the same time whatever prefix of the
// token matches. Any thread.
absl::Status CheckBearerToken(const grpc::ServerContextBase& context,
                              absl::string_view expected);

// Shortest token the daemon accepts (printable characters).
inline constexpr size_t kMinTokenChars = 16;

// Reads a token file: its content with surrounding whitespace trimmed, which
// must be one word of printable ASCII, at least kMinTokenChars long. The
// error names the path, says what is wrong and, for a short token, how to
// make a good one. `*loose_permissions` is set when group or others
// may read the file (the daemon warns about it).
absl::StatusOr<std::string> LoadTokenFile(const std::string& path,
                                          bool* loose_permissions);

// A whole PEM file (at most kMaxCredentialFileBytes), or an error naming the
// flag, the path and the cause.
absl::StatusOr<std::string> ReadPemFile(absl::string_view flag,
                                        const std::string& path);

// The --tls-* flags (ControlTls::Create reads them).
struct TlsFiles {
  std::string cert;       // --tls-cert: the agent's certificate chain (PEM).
  std::string key;        // --tls-key: its private key (PEM).
  std::string client_ca;  // --tls-client-ca: set = mutual TLS.
};

// A streaming reactor that ends its RPC at once with `status`: what a
// streaming handler returns when the call is refused before it starts.
template <typename Base>
class RefusedReactor final : public Base {
 public:
  explicit RefusedReactor(const grpc::Status& status) { this->Finish(status); }
  void OnDone() override { delete this; }
};

}  // namespace sockagent

#endif  // SOCKAGENT_SERVICE_AUTH_H_
