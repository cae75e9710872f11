// TLS on the control port, terminated by the daemon itself (OpenSSL through
// Asio's SSL stream) so that a TLS connection goes through the same
// listener and relay as a plaintext one (control_listener.h,
// control_relay.h): connection cap, HTTP/2 frame checks before gRPC, open
// stream bounds. gRPC then gets the decrypted HTTP/2 over a socketpair
// (grpc::AddInsecureChannelFromFd), as for plain TCP. Nothing in the service
// reads gRPC's auth_context, so nothing is lost by not letting gRPC do TLS.
//
// The context: TLS 1.2 or newer, AEAD ciphers only for TLS 1.2 (HTTP/2's
// rule, gRPC's list), no renegotiation, no compression, no server-side
// session cache (bounded memory), ALPN "h2" required (gRPC clients refuse a
// TLS server that does not select it). With a client CA, the client must
// present a certificate that verifies against it (mutual TLS).
//
//   auto tls = ControlTls::Create(files);  // the daemon exits on error
//   ... relay: asio::ssl::stream<Socket&> s(socket, (*tls)->context());
//       s.async_handshake(asio::ssl::stream_base::server, ...);
//       then CheckHandshake(s.native_handle(), (*tls)->mutual()).
#ifndef SOCKAGENT_SERVICE_CONTROL_TLS_H_
#define SOCKAGENT_SERVICE_CONTROL_TLS_H_

#include <memory>
#include <string>
#include <system_error>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

// Kept out of this header (it is included where Asio's SSL is not needed).
namespace asio::ssl {
class context;
}
typedef struct ssl_st SSL;

namespace sockagent {

struct TlsFiles;  // service/auth.h

class ControlTls {
 public:
  // Reads and checks the PEM files. INVALID_ARGUMENT naming the flag, the
  // path and the cause: "TLS needs both --tls-cert and --tls-key", "not a
  // PEM file", "--tls-cert ...: cannot be used as a certificate chain (...)",
  // "the TLS certificate and key do not match (...)".
  static absl::StatusOr<std::unique_ptr<ControlTls>> Create(
      const TlsFiles& files);
  ~ControlTls();

  ControlTls(const ControlTls&) = delete;
  ControlTls& operator=(const ControlTls&) = delete;

  asio::ssl::context& context() { return *context_; }
  // Clients must present a verified certificate (--tls-client-ca).
  bool mutual() const { return mutual_; }

 private:
  ControlTls(std::unique_ptr<asio::ssl::context> context, bool mutual);

  std::unique_ptr<asio::ssl::context> context_;
  const bool mutual_;
};

// After a server handshake that OpenSSL completed: under `mutual` TLS the
// client presented a certificate that verified (else UNAUTHENTICATED: "peer
// did not return a certificate", "the client certificate does not verify
// ..."), and ALPN selected "h2" (else FAILED_PRECONDITION). The connection
// is then closed without an alert, as gRPC's own TLS server did.
absl::Status CheckHandshake(SSL* ssl, bool mutual);

// The subject common name of the client certificate that verified under
// mutual TLS, as UTF-8, cut to 64 bytes (X.520's bound for a CN); "" when
// there is none (no certificate, no CN). For the audit log: never a
// credential on its own (the certificate's verification is).
std::string ClientCommonName(SSL* ssl);

// A failed handshake's error in words for the log (OpenSSL's reason, e.g.
// "peer did not return a certificate").
std::string TlsErrorText(const std::error_code& ec);

}  // namespace sockagent

#endif  // SOCKAGENT_SERVICE_CONTROL_TLS_H_
