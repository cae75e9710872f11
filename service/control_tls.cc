#include "service/control_tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <algorithm>
#include <asio.hpp>
#include <asio/ssl.hpp>
#include <utility>

#include "absl/strings/str_cat.h"
#include "service/auth.h"

namespace sockagent {
namespace {

// gRPC's TLS 1.2 list (HTTP/2 forbids the rest); TLS 1.3 uses OpenSSL's
// default suites (all AEAD).
constexpr char kTls12Ciphers[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

// ALPN: "h2" or nothing (the handshake then fails with
// no_application_protocol, as gRPC's own TLS server does).
int SelectH2(SSL* /*ssl*/, const unsigned char** out, unsigned char* out_len,
             const unsigned char* in, unsigned int in_len, void* /*arg*/) {
  static const unsigned char kH2[] = {2, 'h', '2'};
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(&selected, out_len, kH2, sizeof kH2, in, in_len) !=
      OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  }
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

// Mutual TLS: the chain is verified as usual, but a missing or untrusted
// client certificate does not fail the handshake inside OpenSSL (which would
// send an alert that gRPC clients report only as a corrupted read);
// CheckHandshake refuses the connection after it, with a plain close, as
// gRPC's own TLS server did. SSL_get_verify_result keeps the verdict.
int AcceptAndRecord(int /*preverified*/, X509_STORE_CTX* /*ctx*/) { return 1; }

absl::Status Unusable(absl::string_view flag, const std::string& path,
                      absl::string_view as, const asio::error_code& ec) {
  return absl::InvalidArgumentError(absl::StrCat(flag, " \"", path,
                                                 "\": cannot be used as ", as,
                                                 " (", TlsErrorText(ec), ")"));
}

}  // namespace

ControlTls::ControlTls(std::unique_ptr<asio::ssl::context> context, bool mutual)
    : context_(std::move(context)), mutual_(mutual) {}

ControlTls::~ControlTls() = default;

absl::StatusOr<std::unique_ptr<ControlTls>> ControlTls::Create(
    const TlsFiles& files) {
  if (files.cert.empty() || files.key.empty()) {
    return absl::InvalidArgumentError(
        "TLS needs both --tls-cert and --tls-key");
  }
  auto cert = ReadPemFile("--tls-cert", files.cert);
  if (!cert.ok()) return cert.status();
  auto key = ReadPemFile("--tls-key", files.key);
  if (!key.ok()) return key.status();
  absl::StatusOr<std::string> ca;
  if (!files.client_ca.empty()) {
    ca = ReadPemFile("--tls-client-ca", files.client_ca);
    if (!ca.ok()) return ca.status();
  }

  auto context =
      std::make_unique<asio::ssl::context>(asio::ssl::context::tls_server);
  SSL_CTX* ctx = context->native_handle();
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                               SSL_OP_CIPHER_SERVER_PREFERENCE);
  // Idle connections give their OpenSSL buffers back.
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  // A cache an unauthenticated peer could fill; TLS 1.3 tickets are
  // stateless.
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  if (SSL_CTX_set_cipher_list(ctx, kTls12Ciphers) != 1) {
    return absl::InternalError("TLS: the cipher list was refused");
  }
  SSL_CTX_set_alpn_select_cb(ctx, &SelectH2, nullptr);

  asio::error_code ec;
  context->use_certificate_chain(asio::buffer(*cert), ec);
  if (ec) return Unusable("--tls-cert", files.cert, "a certificate chain", ec);
  context->use_private_key(asio::buffer(*key), asio::ssl::context::pem, ec);
  if (ec) {
    // OpenSSL checks the key against the certificate as it loads it.
    if (ERR_GET_REASON(static_cast<unsigned long>(ec.value())) ==
        X509_R_KEY_VALUES_MISMATCH) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the TLS certificate and key do not match: --tls-key \"", files.key,
          "\" is not the key of --tls-cert \"", files.cert, "\""));
    }
    return Unusable("--tls-key", files.key, "a private key", ec);
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the TLS certificate and key do not match: --tls-key \"", files.key,
        "\" is not the key of --tls-cert \"", files.cert, "\""));
  }
  const bool mutual = !files.client_ca.empty();
  if (mutual) {
    context->add_certificate_authority(asio::buffer(*ca), ec);
    if (ec) {
      return Unusable("--tls-client-ca", files.client_ca, "CA certificates",
                      ec);
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, &AcceptAndRecord);
  } else {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  }
  return std::unique_ptr<ControlTls>(
      new ControlTls(std::move(context), mutual));
}

absl::Status CheckHandshake(SSL* ssl, bool mutual) {
  if (mutual) {
    X509* cert = SSL_get0_peer_certificate(ssl);
    if (cert == nullptr) {
      return absl::UnauthenticatedError("peer did not return a certificate");
    }
    const long result = SSL_get_verify_result(ssl);
    if (result != X509_V_OK) {
      return absl::UnauthenticatedError(
          absl::StrCat("the client certificate does not verify against "
                       "--tls-client-ca: ",
                       X509_verify_cert_error_string(result)));
    }
  }
  const unsigned char* proto = nullptr;
  unsigned int len = 0;
  SSL_get0_alpn_selected(ssl, &proto, &len);
  if (len == 2 && proto[0] == 'h' && proto[1] == '2') return absl::OkStatus();
  return absl::FailedPreconditionError(
      "the client did not offer ALPN \"h2\" (gRPC needs HTTP/2)");
}

std::string ClientCommonName(SSL* ssl) {
  X509* cert = SSL_get0_peer_certificate(ssl);
  if (cert == nullptr || SSL_get_verify_result(ssl) != X509_V_OK) return "";
  X509_NAME* subject = X509_get_subject_name(cert);
  if (subject == nullptr) return "";
  const int index = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
  if (index < 0) return "";
  ASN1_STRING* data =
      X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, index));
  unsigned char* utf8 = nullptr;
  const int len = ASN1_STRING_to_UTF8(&utf8, data);
  if (len < 0 || utf8 == nullptr) return "";
  constexpr int kMaxCommonName = 64;
  std::string cn(reinterpret_cast<const char*>(utf8),
                 static_cast<size_t>(std::min(len, kMaxCommonName)));
  OPENSSL_free(utf8);
  return cn;
}

std::string TlsErrorText(const std::error_code& ec) {
  if (ec.category() == asio::error::get_ssl_category()) {
    const char* reason =
        ERR_reason_error_string(static_cast<unsigned long>(ec.value()));
    if (reason != nullptr) return reason;
  }
  if (ec == asio::ssl::error::stream_truncated) {
    return "the client closed the connection during the handshake";
  }
  return ec.message();
}

}  // namespace sockagent
