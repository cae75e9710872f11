// TLS sessions on the engine's sockets and what their handshakes saw
// (agent/tls.h), on OpenSSL. Contexts are in tls_context.cc, certificates
// in tls_cert.cc.
#include "agent/tls.h"

#include <arpa/inet.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <time.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "agent/tls_cert.h"

namespace sockagent {

using tls_internal::Describe;
using tls_internal::FitChainToBudget;
using tls_internal::PrintableText;
using tls_internal::Sha256Hex;
using tls_internal::TakeErrorWords;

const char* TlsVersionName(TlsVersion v) {
  switch (v) {
    case TlsVersion::kTls12:
      return "TLSv1.2";
    case TlsVersion::kTls13:
      return "TLSv1.3";
    case TlsVersion::kDefault:
      break;
  }
  return "default";
}

// ---- Sessions.

absl::StatusOr<std::unique_ptr<TlsSession>> TlsSession::CreateServer(
    std::shared_ptr<const TlsServerContext> ctx, int fd) {
  std::unique_ptr<TlsSession> s(new TlsSession());
  s->ssl_ = SSL_new(ctx->ctx());
  if (s->ssl_ == nullptr || SSL_set_fd(s->ssl_, fd) != 1) {
    ERR_clear_error();
    return absl::ResourceExhaustedError("tls: no memory for a session");
  }
  SSL_set_accept_state(s->ssl_);
  SSL_set_app_data(s->ssl_, s.get());
  s->handshake_timeout_ = ctx->handshake_timeout();
  s->server_ctx_ = std::move(ctx);
  return s;
}

absl::StatusOr<std::unique_ptr<TlsSession>> TlsSession::CreateClient(
    std::shared_ptr<const TlsClientContext> ctx, int fd, TlsSessionCache* cache,
    std::string cache_key) {
  std::unique_ptr<TlsSession> s(new TlsSession());
  s->client_ = true;
  s->ssl_ = SSL_new(ctx->ctx());
  if (s->ssl_ == nullptr || SSL_set_fd(s->ssl_, fd) != 1) {
    ERR_clear_error();
    return absl::ResourceExhaustedError("tls: no memory for a session");
  }
  SSL_set_connect_state(s->ssl_);
  SSL_set_app_data(s->ssl_, s.get());
  const std::string& name = ctx->name();
  if (!name.empty()) {
    const bool set =
        ctx->name_is_ip()
            ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s->ssl_),
                                            name.c_str()) == 1
            : SSL_set_tlsext_host_name(s->ssl_, name.c_str()) == 1 &&
                  SSL_set1_host(s->ssl_, name.c_str()) == 1;
    if (!set) {
      // Never fail open: a session that cannot check the name is refused.
      ERR_clear_error();
      return absl::InternalError(absl::StrCat(
          "tls: cannot set the name ", PrintableText(name), " to verify"));
    }
  }
  // The key names everything that decides whether a resumed session may
  // stand for a verified one: trust, client certificate, name.
  const TlsClientSpec& spec = ctx->spec();
  s->cache_key_ = absl::StrCat(
      cache_key, "|", name, "|", static_cast<int>(spec.trust), "|",
      Sha256Hex(absl::StrCat(spec.ca_pem, "|", spec.certificate_chain_pem, "|",
                             absl::StrJoin(spec.alpn, ","), "|",
                             static_cast<int>(spec.min_version), "|",
                             static_cast<int>(spec.max_version))));
  s->cache_ = cache;
  if (cache != nullptr) {
    if (SSL_SESSION* old = cache->Get(s->cache_key_)) {
      SSL_set_session(s->ssl_, old);
    }
  }
  s->handshake_timeout_ = ctx->handshake_timeout();
  s->client_ctx_ = std::move(ctx);
  return s;
}

TlsSession::~TlsSession() { SSL_free(ssl_); }

TlsIo TlsSession::Result(int ret, const char* op) {
  TlsIo r;
  const int saved_errno = errno;
  const int err = SSL_get_error(ssl_, ret);
  switch (err) {
    case SSL_ERROR_WANT_READ:
      r.kind = TlsIoKind::kWantRead;
      return r;
    case SSL_ERROR_WANT_WRITE:
      r.kind = TlsIoKind::kWantWrite;
      return r;
    case SSL_ERROR_ZERO_RETURN:
      r.kind = TlsIoKind::kClosed;
      return r;
    case SSL_ERROR_SYSCALL:
      if (ERR_peek_error() == 0) {
        ERR_clear_error();
        if (saved_errno == 0) {
          r.kind = TlsIoKind::kTruncated;
          return r;
        }
        r.kind = TlsIoKind::kError;
        r.sys_errno = saved_errno;
        r.error = std::strerror(saved_errno);
        return r;
      }
      break;
    default:
      break;
  }
  const unsigned long e = ERR_peek_error();
  if (err == SSL_ERROR_SSL && ERR_GET_LIB(e) == ERR_LIB_SSL &&
      ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
    ERR_clear_error();
    r.kind = TlsIoKind::kTruncated;
    return r;
  }
  std::string words = TakeErrorWords();
  const long verify = SSL_get_verify_result(ssl_);
  if (!handshake_done_ && client_ && verify != X509_V_OK) {
    words = absl::StrCat("certificate verify failed: ",
                         X509_verify_cert_error_string(verify));
  }
  if (words.empty()) words = absl::StrCat(op, " failed");
  r.kind = TlsIoKind::kError;
  r.error = std::move(words);
  return r;
}

TlsIo TlsSession::Handshake() {
  if (handshake_done_) return TlsIo{};
  ERR_clear_error();
  errno = 0;
  const int ret = SSL_do_handshake(ssl_);
  if (ret == 1) {
    handshake_done_ = true;
    return TlsIo{};
  }
  return Result(ret, "handshake");
}

TlsIo TlsSession::Read(char* buf, size_t n) {
  ERR_clear_error();
  errno = 0;
  size_t got = 0;
  const int ret = SSL_read_ex(ssl_, buf, n, &got);
  if (ret == 1) return TlsIo{TlsIoKind::kDone, got, 0, {}};
  return Result(ret, "read");
}

TlsIo TlsSession::Write(const char* data, size_t n) {
  ERR_clear_error();
  errno = 0;
  size_t put = 0;
  const int ret = SSL_write_ex(ssl_, data, n, &put);
  if (ret == 1) return TlsIo{TlsIoKind::kDone, put, 0, {}};
  return Result(ret, "write");
}

void TlsSession::SendCloseNotify() {
  if (close_notify_sent_ || !handshake_done_) return;
  close_notify_sent_ = true;
  ERR_clear_error();
  SSL_shutdown(ssl_);
  ERR_clear_error();
}

bool TlsSession::HasPending() const {
  // Decrypted bytes only: SSL_has_pending also counts an unprocessed part
  // of a record, which needs more bytes from the socket, so posting a read
  // for it would spin the loop until they arrive.
  return handshake_done_ && SSL_pending(ssl_) > 0;
}

std::shared_ptr<const TlsInfo> TlsSession::Facts() {
  if (facts_ != nullptr) return facts_;
  auto info = std::make_shared<TlsInfo>();
  info->client = client_;
  info->handshake_done = handshake_done_;
  info->version = SSL_get_version(ssl_);
  if (const SSL_CIPHER* c = SSL_get_current_cipher(ssl_)) {
    info->cipher = SSL_CIPHER_get_name(c);
  }
  const unsigned char* alpn = nullptr;
  unsigned int alpn_len = 0;
  SSL_get0_alpn_selected(ssl_, &alpn, &alpn_len);
  if (alpn != nullptr) {
    info->alpn = PrintableText(
        absl::string_view(reinterpret_cast<const char*>(alpn), alpn_len));
  }
  if (const char* sni = SSL_get_servername(ssl_, TLSEXT_NAMETYPE_host_name)) {
    info->sni = PrintableText(sni);
  }
  info->resumed = SSL_session_reused(ssl_) == 1;
  // The peer's chain, leaf first (a server's list leaves the client's leaf
  // out).
  std::vector<X509*> chain;
  X509* leaf = SSL_get0_peer_certificate(ssl_);
  STACK_OF(X509)* stack = SSL_get_peer_cert_chain(ssl_);
  if (leaf != nullptr) chain.push_back(leaf);
  for (int i = 0; stack != nullptr && i < sk_X509_num(stack); ++i) {
    X509* x = sk_X509_value(stack, i);
    if (x != leaf) chain.push_back(x);
  }
  info->peer_chain_length = static_cast<uint32_t>(chain.size());
  for (size_t i = 0; i < chain.size() && i < kMaxTlsReportedChain; ++i) {
    info->peer_chain.push_back(Describe(chain[i]));
  }
  FitChainToBudget(&info->peer_chain, kMaxTlsReportedChainBytes);
  const bool verify_off =
      client_ && client_ctx_->spec().trust == TlsTrust::kNone;
  const long verify = SSL_get_verify_result(ssl_);
  if (verify_off) {
    info->verification = "verification off";
  } else if (!client_ &&
             server_ctx_->info()->client_auth == TlsClientAuth::kNone) {
    info->verification = "not requested";
  } else if (leaf == nullptr) {
    info->verification = "no certificate presented";
  } else if (verify == X509_V_OK) {
    info->verification = "ok";
    info->verified = true;
  } else {
    info->verification = X509_verify_cert_error_string(verify);
  }
  facts_ = std::move(info);
  return facts_;
}

uint64_t TlsInfoBytes(const TlsInfo& info) {
  uint64_t n = sizeof(TlsInfo) + info.version.size() + info.cipher.size() +
               info.alpn.size() + info.sni.size() + info.verification.size() +
               info.failure.size() +
               info.peer_chain.size() * sizeof(TlsCertificateInfo);
  for (const TlsCertificateInfo& c : info.peer_chain) {
    n += tls_internal::TextBytes(c);
  }
  return n;
}

std::shared_ptr<const TlsInfo> TlsInfoWithoutPem(
    std::shared_ptr<const TlsInfo> info) {
  bool any = false;
  for (const TlsCertificateInfo& c : info->peer_chain) any |= !c.pem.empty();
  if (!any) return info;
  auto out = std::make_shared<TlsInfo>(*info);
  for (TlsCertificateInfo& c : out->peer_chain) c.pem.clear();
  return out;
}

}  // namespace sockagent
