// TLS contexts (agent/tls.h): a server's certificate, trust, ALPN and
// versions, a client's trust and identity; and the client session cache.
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
#include "agent/tls.h"
#include "agent/tls_cert.h"

namespace sockagent {
namespace {

using tls_internal::CheckKeyCost;
using tls_internal::CheckName;
using tls_internal::Describe;
using tls_internal::Invalid;
using tls_internal::IsIpLiteral;
using tls_internal::MakeSelfSigned;
using tls_internal::PkeyPtr;
using tls_internal::ReadCertificates;
using tls_internal::ReadKey;
using tls_internal::TakeErrorWords;
using tls_internal::X509Ptr;

int VersionNumber(TlsVersion v) {
  switch (v) {
    case TlsVersion::kTls12:
      return TLS1_2_VERSION;
    case TlsVersion::kTls13:
      return TLS1_3_VERSION;
    case TlsVersion::kDefault:
      break;
  }
  return 0;
}

absl::Status SetVersions(SSL_CTX* ctx, TlsVersion min, TlsVersion max) {
  if (min != TlsVersion::kDefault && max != TlsVersion::kDefault &&
      VersionNumber(min) > VersionNumber(max)) {
    return Invalid("min_version", "is above max_version");
  }
  SSL_CTX_set_min_proto_version(
      ctx, min == TlsVersion::kDefault ? TLS1_2_VERSION : VersionNumber(min));
  if (max != TlsVersion::kDefault) {
    SSL_CTX_set_max_proto_version(ctx, VersionNumber(max));
  }
  return absl::OkStatus();
}

// ALPN names in wire format (each prefixed by its length).
absl::StatusOr<std::string> AlpnWire(const std::vector<std::string>& alpn) {
  if (alpn.size() > kMaxTlsAlpnProtocols) {
    return Invalid("alpn", absl::StrCat(alpn.size(), " names; at most ",
                                        kMaxTlsAlpnProtocols));
  }
  std::string wire;
  for (const std::string& name : alpn) {
    if (name.empty() || name.size() > kMaxTlsAlpnNameBytes) {
      return Invalid("alpn", absl::StrCat("a name must have 1 to ",
                                          kMaxTlsAlpnNameBytes, " bytes"));
    }
    for (char ch : name) {
      if (ch <= 0x20 || ch >= 0x7f || ch == ',') {
        return Invalid("alpn",
                       absl::StrCat("name \"", absl::CHexEscape(name),
                                    "\" has a byte outside printable ASCII "
                                    "(or a comma)"));
      }
    }
    wire.push_back(static_cast<char>(name.size()));
    wire += name;
  }
  return wire;
}

void CommonOptions(SSL_CTX* ctx) {
  // Partial writes and a queue whose front may move between retries (the
  // engine's ByteQueue); buffers freed while idle, so a held connection
  // costs little.
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                            SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                            SSL_MODE_RELEASE_BUFFERS);
  // A peer may not make us redo handshakes (each runs on the loop), nor
  // send a certificate list above kMaxTlsPeerCertList; servers keep a small
  // session cache (TLS 1.3 resumption uses stateless tickets anyway).
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_max_cert_list(ctx, kMaxTlsPeerCertList);
  SSL_CTX_sess_set_cache_size(ctx, kTlsServerSessionCacheEntries);
}

absl::Status UseChainAndKey(SSL_CTX* ctx, absl::string_view chain_pem,
                            absl::string_view key_pem,
                            absl::string_view chain_field,
                            absl::string_view key_field, X509Ptr* leaf) {
  absl::StatusOr<std::vector<X509Ptr>> chain =
      ReadCertificates(chain_pem, chain_field, kMaxTlsChainCertificates);
  if (!chain.ok()) return chain.status();
  absl::StatusOr<PkeyPtr> key = ReadKey(key_pem, key_field);
  if (!key.ok()) return key.status();
  if (absl::Status s = CheckKeyCost(key->get(), key_field); !s.ok()) {
    return s;
  }
  if (SSL_CTX_use_certificate(ctx, (*chain)[0].get()) != 1) {
    return Invalid(chain_field,
                   absl::StrCat("certificate refused: ", TakeErrorWords()));
  }
  for (size_t i = 1; i < chain->size(); ++i) {
    if (SSL_CTX_add1_chain_cert(ctx, (*chain)[i].get()) != 1) {
      ERR_clear_error();
      return Invalid(chain_field, "chain certificate refused");
    }
  }
  if (SSL_CTX_use_PrivateKey(ctx, key->get()) != 1 ||
      SSL_CTX_check_private_key(ctx) != 1) {
    ERR_clear_error();
    return Invalid(key_field, absl::StrCat("does not match the certificate in ",
                                           chain_field));
  }
  if (leaf != nullptr) *leaf = std::move((*chain)[0]);
  return absl::OkStatus();
}

absl::Status AddTrusted(SSL_CTX* ctx, absl::string_view pem,
                        absl::string_view field, bool client_ca_list) {
  absl::StatusOr<std::vector<X509Ptr>> certs =
      ReadCertificates(pem, field, 1000);
  if (!certs.ok()) return certs.status();
  X509_STORE* store = SSL_CTX_get_cert_store(ctx);
  for (const X509Ptr& x : *certs) {
    X509_STORE_add_cert(store, x.get());
    if (client_ca_list) SSL_CTX_add_client_CA(ctx, x.get());
  }
  ERR_clear_error();
  return absl::OkStatus();
}

int SelectAlpn(SSL*, const unsigned char** out, unsigned char* outlen,
               const unsigned char* in, unsigned int inlen, void* arg) {
  const auto* ctx = static_cast<const TlsServerContext*>(arg);
  const std::string& wire = ctx->alpn_wire();
  if (wire.empty()) return SSL_TLSEXT_ERR_NOACK;
  unsigned char* selected = nullptr;
  // Server preference: ours first.
  if (SSL_select_next_proto(&selected, outlen,
                            reinterpret_cast<const unsigned char*>(wire.data()),
                            static_cast<unsigned int>(wire.size()), in,
                            inlen) != OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_NOACK;
  }
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

int AcceptAnyCertificate(int, X509_STORE_CTX*) { return 1; }

int NewClientSession(SSL* ssl, SSL_SESSION* session) {
  auto* s = static_cast<TlsSession*>(SSL_get_app_data(ssl));
  if (s == nullptr || s->cache() == nullptr) return 0;
  s->cache()->Put(s->cache_key(), session);
  return 1;  // Ours now.
}

}  // namespace

// ---- Server contexts.

absl::StatusOr<std::shared_ptr<const TlsServerContext>>
TlsServerContext::Create(const TlsServerSpec& spec) {
  std::shared_ptr<TlsServerContext> out(new TlsServerContext());
  out->spec_ = spec;
  out->ctx_ = SSL_CTX_new(TLS_server_method());
  if (out->ctx_ == nullptr) return absl::InternalError("tls: SSL_CTX_new");
  SSL_CTX* ctx = out->ctx_;
  CommonOptions(ctx);
  auto info = std::make_shared<TlsServerInfo>();
  if (absl::Status s = SetVersions(ctx, spec.min_version, spec.max_version);
      !s.ok()) {
    return s;
  }
  info->min_version = spec.min_version;
  info->max_version = spec.max_version;
  if (spec.handshake_timeout < absl::ZeroDuration() ||
      spec.handshake_timeout > kMaxTlsHandshakeTimeout) {
    return Invalid(
        "handshake_timeout",
        absl::StrCat("must be between 0 (the default, ",
                     absl::FormatDuration(kDefaultTlsHandshakeTimeout),
                     ") and ", absl::FormatDuration(kMaxTlsHandshakeTimeout)));
  }
  if (spec.handshake_timeout > absl::ZeroDuration()) {
    info->handshake_timeout = spec.handshake_timeout;
  }
  const bool has_pem =
      !spec.certificate_chain_pem.empty() || !spec.private_key_pem.empty();
  X509Ptr leaf;
  if (spec.self_signed) {
    if (has_pem) {
      return Invalid("self_signed",
                     "give either self_signed or a certificate and key, not "
                     "both");
    }
    std::vector<std::string> names = spec.self_signed_names;
    if (names.empty()) names = {"localhost", "127.0.0.1", "::1"};
    if (names.size() > kMaxTlsNames) {
      return Invalid(
          "self_signed.names",
          absl::StrCat(names.size(), " names; at most ", kMaxTlsNames));
    }
    for (const std::string& n : names) {
      if (absl::Status s = CheckName(n, "self_signed.names"); !s.ok()) {
        return s;
      }
    }
    PkeyPtr key;
    if (absl::Status s = MakeSelfSigned(names, &key, &leaf); !s.ok()) return s;
    if (SSL_CTX_use_certificate(ctx, leaf.get()) != 1 ||
        SSL_CTX_use_PrivateKey(ctx, key.get()) != 1) {
      ERR_clear_error();
      return absl::InternalError("tls.self_signed: OpenSSL refused it");
    }
    info->self_signed = true;
  } else {
    if (spec.certificate_chain_pem.empty()) {
      return Invalid("certificate_chain_pem",
                     "required (or self_signed) for a TLS server");
    }
    if (spec.private_key_pem.empty()) {
      return Invalid("private_key_pem", "required with certificate_chain_pem");
    }
    if (absl::Status s = UseChainAndKey(
            ctx, spec.certificate_chain_pem, spec.private_key_pem,
            "certificate_chain_pem", "private_key_pem", &leaf);
        !s.ok()) {
      return s;
    }
  }
  info->certificate = Describe(leaf.get());
  if (!spec.client_ca_pem.empty()) {
    if (absl::Status s =
            AddTrusted(ctx, spec.client_ca_pem, "client_ca_pem", true);
        !s.ok()) {
      return s;
    }
  }
  switch (spec.client_auth) {
    case TlsClientAuth::kNone:
      SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
      break;
    case TlsClientAuth::kRequest:
      // Asks for a certificate, takes any (or none): the verification
      // result is reported, not enforced.
      SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, AcceptAnyCertificate);
      break;
    case TlsClientAuth::kRequire:
      if (spec.client_ca_pem.empty()) {
        return Invalid("client_ca_pem", "required when client_auth is REQUIRE");
      }
      SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                         nullptr);
      break;
  }
  info->client_auth = spec.client_auth;
  static constexpr unsigned char kSessionContext[] = "sockagent";
  SSL_CTX_set_session_id_context(ctx, kSessionContext,
                                 sizeof kSessionContext - 1);
  absl::StatusOr<std::string> wire = AlpnWire(spec.alpn);
  if (!wire.ok()) return wire.status();
  out->alpn_wire_ = *std::move(wire);
  info->alpn = spec.alpn;
  if (!out->alpn_wire_.empty()) {
    SSL_CTX_set_alpn_select_cb(ctx, SelectAlpn, out.get());
  }
  out->info_ = std::move(info);
  return std::shared_ptr<const TlsServerContext>(std::move(out));
}

TlsServerContext::~TlsServerContext() { SSL_CTX_free(ctx_); }

namespace {

// The system's trust store (OpenSSL's default paths: the bundle file and
// the hashed directory), loaded once per process on first use and shared by
// every client context that trusts the system. X509_STORE is
// reference-counted and locks itself for lookups, so concurrent handshakes
// may verify against it. Never freed: it lives as long as the process.
X509_STORE* SystemTrustStore() {
  static X509_STORE* const store = [] {
    X509_STORE* s = X509_STORE_new();
    if (s != nullptr && X509_STORE_set_default_paths(s) != 1) {
      X509_STORE_free(s);
      s = nullptr;
    }
    return s;
  }();
  return store;
}

}  // namespace

// ---- Client contexts.

absl::StatusOr<std::shared_ptr<const TlsClientContext>>
TlsClientContext::Create(const TlsClientSpec& spec, absl::string_view host) {
  std::shared_ptr<TlsClientContext> out(new TlsClientContext());
  out->spec_ = spec;
  out->ctx_ = SSL_CTX_new(TLS_client_method());
  if (out->ctx_ == nullptr) return absl::InternalError("tls: SSL_CTX_new");
  SSL_CTX* ctx = out->ctx_;
  CommonOptions(ctx);
  if (absl::Status s = SetVersions(ctx, spec.min_version, spec.max_version);
      !s.ok()) {
    return s;
  }
  if (spec.handshake_timeout < absl::ZeroDuration() ||
      spec.handshake_timeout > kMaxTlsHandshakeTimeout) {
    return Invalid("handshake_timeout",
                   absl::StrCat("must be between 0 (the default) and ",
                                absl::FormatDuration(kMaxTlsHandshakeTimeout)));
  }
  if (absl::Status s = out->SetName(host); !s.ok()) return s;
  switch (spec.trust) {
    case TlsTrust::kSystem:
      if (!spec.ca_pem.empty()) {
        return Invalid("ca_pem", "given, but trust is the system store");
      }
      // One store for every such context: loading the system bundle into
      // each one cost ~830 KiB and a parse of every certificate (measured,
      // BENCHMARKS.md "TLS client contexts").
      if (X509_STORE* store = SystemTrustStore(); store != nullptr) {
        SSL_CTX_set1_cert_store(ctx, store);  // Takes a reference.
      } else {
        return absl::InternalError("tls: the system trust store");
      }
      SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
      break;
    case TlsTrust::kCaPem:
      if (spec.ca_pem.empty()) return Invalid("ca_pem", "is empty");
      if (absl::Status s = AddTrusted(ctx, spec.ca_pem, "ca_pem", false);
          !s.ok()) {
        return s;
      }
      SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
      break;
    case TlsTrust::kNone:
      if (!spec.ca_pem.empty()) {
        return Invalid("ca_pem", "given, but verification is off");
      }
      SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
      break;
  }
  const bool has_cert = !spec.certificate_chain_pem.empty();
  const bool has_key = !spec.private_key_pem.empty();
  if (has_cert != has_key) {
    return Invalid(has_cert ? "private_key_pem" : "certificate_chain_pem",
                   "a client certificate needs both certificate_chain_pem "
                   "and private_key_pem");
  }
  if (has_cert) {
    if (absl::Status s = UseChainAndKey(
            ctx, spec.certificate_chain_pem, spec.private_key_pem,
            "certificate_chain_pem", "private_key_pem", nullptr);
        !s.ok()) {
      return s;
    }
  }
  absl::StatusOr<std::string> wire = AlpnWire(spec.alpn);
  if (!wire.ok()) return wire.status();
  if (!wire->empty()) {
    SSL_CTX_set_alpn_protos(
        ctx, reinterpret_cast<const unsigned char*>(wire->data()),
        static_cast<unsigned int>(wire->size()));
  }
  SSL_CTX_set_session_cache_mode(
      ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_new_cb(ctx, NewClientSession);
  return std::shared_ptr<const TlsClientContext>(std::move(out));
}

absl::Status TlsClientContext::SetName(absl::string_view host) {
  name_ = spec_.server_name.empty() ? std::string(host) : spec_.server_name;
  if (!name_.empty()) {
    if (absl::Status s = CheckName(name_, "server_name"); !s.ok()) return s;
  }
  name_is_ip_ = IsIpLiteral(name_);
  if (name_.empty() && spec_.trust != TlsTrust::kNone) {
    // A UNIX path names no host: without a name any certificate a trusted
    // CA issued would pass.
    return Invalid("server_name",
                   "required to verify a peer that has no host name (a UNIX "
                   "socket); or set verify_off");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<const TlsClientContext>>
TlsClientContext::ForHost(absl::string_view host) const {
  std::shared_ptr<TlsClientContext> out(new TlsClientContext());
  out->spec_ = spec_;
  if (absl::Status s = out->SetName(host); !s.ok()) return s;
  SSL_CTX_up_ref(ctx_);
  out->ctx_ = ctx_;
  return std::shared_ptr<const TlsClientContext>(std::move(out));
}

TlsClientContext::~TlsClientContext() { SSL_CTX_free(ctx_); }

absl::Duration TlsClientContext::handshake_timeout() const {
  return spec_.handshake_timeout > absl::ZeroDuration()
             ? spec_.handshake_timeout
             : kDefaultTlsHandshakeTimeout;
}

// ---- The client session cache.

TlsSessionCache::~TlsSessionCache() {
  for (auto& [key, entry] : map_) SSL_SESSION_free(entry.first);
}

void TlsSessionCache::Put(const std::string& key, SSL_SESSION* session) {
  auto it = map_.find(key);
  if (it != map_.end()) {
    SSL_SESSION_free(it->second.first);
    order_.erase(it->second.second);
    map_.erase(it);
  }
  while (map_.size() >= kTlsSessionCacheEntries && !order_.empty()) {
    auto old = map_.find(order_.front());
    SSL_SESSION_free(old->second.first);
    map_.erase(old);
    order_.pop_front();
  }
  order_.push_back(key);
  map_.emplace(key, std::make_pair(session, std::prev(order_.end())));
}

SSL_SESSION* TlsSessionCache::Get(const std::string& key) const {
  auto it = map_.find(key);
  return it == map_.end() ? nullptr : it->second.first;
}

}  // namespace sockagent
