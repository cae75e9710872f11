// TLS contexts, sessions and certificate facts (agent/tls.h), on OpenSSL.
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

namespace sockagent {

namespace {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;

absl::Status Invalid(absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("tls.", field, ": ", what));
}

// OpenSSL's words for the oldest queued error ("unknown ca"), or "".
std::string TakeErrorWords() {
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "";
  const char* reason = ERR_reason_error_string(e);
  if (reason != nullptr) return reason;
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

int NoPassword(char*, int, int, void*) { return 0; }

// Certificates of a PEM bundle, at most `max`; a field that holds none, or
// is malformed, is InvalidArgument naming it.
absl::StatusOr<std::vector<X509Ptr>> ReadCertificates(absl::string_view pem,
                                                      absl::string_view field,
                                                      size_t max) {
  if (pem.size() > kMaxTlsPemBytes) {
    return Invalid(field, absl::StrCat(pem.size(), " bytes is above the ",
                                       kMaxTlsPemBytes, "-byte bound"));
  }
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  std::vector<X509Ptr> out;
  ERR_clear_error();
  while (true) {
    X509* x = PEM_read_bio_X509(bio.get(), nullptr, NoPassword, nullptr);
    if (x == nullptr) break;
    out.emplace_back(x);
    if (out.size() > max) {
      return Invalid(field, absl::StrCat("more than ", max, " certificates"));
    }
  }
  const unsigned long e = ERR_peek_last_error();
  ERR_clear_error();
  // The loop ends with "no start line" at the end of the bundle; any other
  // error is a malformed certificate.
  if (e != 0 && ERR_GET_REASON(e) != PEM_R_NO_START_LINE) {
    return Invalid(field, "malformed PEM certificate");
  }
  if (out.empty()) return Invalid(field, "no PEM certificate found");
  return out;
}

absl::StatusOr<PkeyPtr> ReadKey(absl::string_view pem,
                                absl::string_view field) {
  if (pem.size() > kMaxTlsPemBytes) {
    return Invalid(field, absl::StrCat(pem.size(), " bytes is above the ",
                                       kMaxTlsPemBytes, "-byte bound"));
  }
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  ERR_clear_error();
  EVP_PKEY* k =
      PEM_read_bio_PrivateKey(bio.get(), nullptr, NoPassword, nullptr);
  ERR_clear_error();
  if (k == nullptr) {
    return Invalid(field,
                   "no unencrypted PEM private key found (malformed PEM, or "
                   "protected by a password)");
  }
  return PkeyPtr(k);
}

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

// Handshakes run on the engine's loop: a private key whose operations cost
// seconds (RSA-16384) would stall every connection of the agent. RSA up to
// 4096 bits, EC up to P-521, Ed25519 and Ed448 only.
absl::Status CheckKeyCost(EVP_PKEY* key, absl::string_view key_field) {
  const int bits = EVP_PKEY_get_bits(key);
  switch (EVP_PKEY_get_base_id(key)) {
    case EVP_PKEY_RSA:
    case EVP_PKEY_RSA_PSS:
      if (bits > 4096) {
        return Invalid(key_field,
                       absl::StrCat("an RSA key of ", bits,
                                    " bits; at most 4096 (handshakes run on "
                                    "the agent's event loop)"));
      }
      return absl::OkStatus();
    case EVP_PKEY_EC:
      if (bits > 521) {
        return Invalid(key_field, absl::StrCat("an EC key of ", bits,
                                               " bits; at most 521"));
      }
      return absl::OkStatus();
    case EVP_PKEY_ED25519:
    case EVP_PKEY_ED448:
      return absl::OkStatus();
    default:
      return Invalid(key_field,
                     "not an RSA, EC, Ed25519 or Ed448 key (DSA and DH keys "
                     "are refused)");
  }
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

bool IsIpLiteral(absl::string_view s) {
  unsigned char buf[16];
  const std::string z(s);
  return inet_pton(AF_INET, z.c_str(), buf) == 1 ||
         inet_pton(AF_INET6, z.c_str(), buf) == 1;
}

absl::Status CheckName(absl::string_view name, absl::string_view field) {
  if (name.empty() || name.size() > kMaxTlsNameBytes) {
    return Invalid(field, absl::StrCat("a name must have 1 to ",
                                       kMaxTlsNameBytes, " bytes"));
  }
  if (IsIpLiteral(name)) return absl::OkStatus();
  for (char ch : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(ch)) && ch != '-' &&
        ch != '.' && ch != '*' && ch != '_') {
      return Invalid(field, absl::StrCat("\"", absl::CHexEscape(name),
                                         "\" is neither a host name nor an "
                                         "IP address"));
    }
  }
  return absl::OkStatus();
}

// A fresh P-256 key and a certificate for `names` valid from an hour ago for
// 30 days, signed by itself.
absl::Status MakeSelfSigned(const std::vector<std::string>& names,
                            PkeyPtr* key_out, X509Ptr* cert_out) {
  PkeyPtr key(EVP_EC_gen("P-256"));
  X509Ptr x(X509_new());
  if (key == nullptr || x == nullptr) {
    return absl::InternalError("tls.self_signed: key generation failed");
  }
  X509_set_version(x.get(), 2);
  unsigned char serial[16];
  if (RAND_bytes(serial, sizeof serial) != 1) {
    return absl::InternalError("tls.self_signed: no random bytes");
  }
  serial[0] &= 0x7f;
  BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x.get()));
  BN_free(bn);
  X509_gmtime_adj(X509_getm_notBefore(x.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x.get()), 30L * 24 * 3600);
  X509_set_pubkey(x.get(), key.get());
  X509_NAME* subject = X509_get_subject_name(x.get());
  const std::string cn = names.front().substr(0, 64);
  X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn.c_str()),
                             -1, -1, 0);
  X509_NAME_add_entry_by_txt(
      subject, "O", MBSTRING_ASC,
      reinterpret_cast<const unsigned char*>("sockagent self-signed"), -1, -1,
      0);
  X509_set_issuer_name(x.get(), subject);
  std::vector<std::string> sans;
  for (const std::string& n : names) {
    sans.push_back(absl::StrCat(IsIpLiteral(n) ? "IP:" : "DNS:", n));
  }
  const std::string san = absl::StrJoin(sans, ",");
  X509V3_CTX v3;
  X509V3_set_ctx_nodb(&v3);
  X509V3_set_ctx(&v3, x.get(), x.get(), nullptr, nullptr, 0);
  for (auto [nid, value] :
       {std::pair<int, const char*>{NID_subject_alt_name, san.c_str()},
        {NID_basic_constraints, "critical,CA:FALSE"},
        {NID_ext_key_usage, "serverAuth,clientAuth"}}) {
    X509_EXTENSION* ext =
        X509V3_EXT_conf_nid(nullptr, &v3, nid, const_cast<char*>(value));
    if (ext == nullptr) {
      ERR_clear_error();
      return Invalid("self_signed.names", "OpenSSL refused the names");
    }
    X509_add_ext(x.get(), ext, -1);
    X509_EXTENSION_free(ext);
  }
  if (X509_sign(x.get(), key.get(), EVP_sha256()) == 0) {
    ERR_clear_error();
    return absl::InternalError("tls.self_signed: signing failed");
  }
  *key_out = std::move(key);
  *cert_out = std::move(x);
  return absl::OkStatus();
}

absl::Time AsnTime(const ASN1_TIME* t) {
  struct tm tm;
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) return absl::InfinitePast();
  return absl::FromTimeT(timegm(&tm));
}

// Peer-controlled bytes go into proto3 strings, which must be UTF-8: every
// byte outside printable ASCII is escaped (\xNN), and the text is capped.
std::string PrintableText(absl::string_view raw) {
  constexpr size_t kMaxText = 1024;
  std::string out;
  for (unsigned char ch : raw.substr(0, kMaxText)) {
    if (ch >= 0x20 && ch < 0x7f && ch != '\\') {
      out.push_back(static_cast<char>(ch));
    } else {
      absl::StrAppend(&out, "\\x", absl::Hex(ch, absl::kZeroPad2));
    }
  }
  if (raw.size() > kMaxText) out.append("...");
  return out;
}

std::string NameText(const X509_NAME* name) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, n > 0 ? static_cast<size_t>(n) : 0);
}

TlsCertificateInfo Describe(X509* x) {
  TlsCertificateInfo info;
  info.subject = PrintableText(NameText(X509_get_subject_name(x)));
  info.issuer = PrintableText(NameText(X509_get_issuer_name(x)));
  info.not_before = AsnTime(X509_get0_notBefore(x));
  info.not_after = AsnTime(X509_get0_notAfter(x));
  GENERAL_NAMES* sans = static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(x, NID_subject_alt_name, nullptr, nullptr));
  for (int i = 0; sans != nullptr && i < sk_GENERAL_NAME_num(sans); ++i) {
    if (info.sans.size() >= 64) break;  // Reported SANs are capped.
    const GENERAL_NAME* g = sk_GENERAL_NAME_value(sans, i);
    // Only these four hold an ASN1_STRING (IA5String / OCTET STRING); the
    // others hold other types and are named, not read.
    const ASN1_STRING* s = nullptr;
    switch (g->type) {
      case GEN_DNS:
        s = g->d.dNSName;
        break;
      case GEN_EMAIL:
        s = g->d.rfc822Name;
        break;
      case GEN_URI:
        s = g->d.uniformResourceIdentifier;
        break;
      case GEN_IPADD:
        s = g->d.iPAddress;
        break;
      case GEN_DIRNAME:
        info.sans.push_back(
            absl::StrCat("DirName:", PrintableText(NameText(g->d.dirn))));
        continue;
      case GEN_OTHERNAME:
        info.sans.push_back("othername:<unsupported>");
        continue;
      case GEN_RID:
        info.sans.push_back("RID:<unsupported>");
        continue;
      default:  // X400Name, EdiPartyName.
        info.sans.push_back("other:<unsupported>");
        continue;
    }
    if (s == nullptr) continue;
    const unsigned char* d = ASN1_STRING_get0_data(s);
    const int len = ASN1_STRING_length(s);
    const std::string raw(reinterpret_cast<const char*>(d),
                          len > 0 ? static_cast<size_t>(len) : 0);
    switch (g->type) {
      case GEN_DNS:
        info.sans.push_back(absl::StrCat("DNS:", PrintableText(raw)));
        break;
      case GEN_EMAIL:
        info.sans.push_back(absl::StrCat("email:", PrintableText(raw)));
        break;
      case GEN_URI:
        info.sans.push_back(absl::StrCat("URI:", PrintableText(raw)));
        break;
      case GEN_IPADD: {
        char text[INET6_ADDRSTRLEN] = {};
        if (len == 4 || len == 16) {
          inet_ntop(len == 4 ? AF_INET : AF_INET6, d, text, sizeof text);
          info.sans.push_back(absl::StrCat("IP:", text));
        }
        break;
      }
      default:
        break;
    }
  }
  GENERAL_NAMES_free(sans);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  if (X509_digest(x, EVP_sha256(), md, &md_len) == 1) {
    std::vector<std::string> hex;
    for (unsigned int i = 0; i < md_len; ++i) {
      hex.push_back(absl::StrCat(absl::Hex(md[i], absl::kZeroPad2)));
    }
    info.sha256_fingerprint = absl::AsciiStrToUpper(absl::StrJoin(hex, ":"));
  }
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(bio.get(), x);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  info.pem.assign(data, n > 0 ? static_cast<size_t>(n) : 0);
  return info;
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

std::string Sha256Hex(absl::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out += absl::StrCat(absl::Hex(md[i], absl::kZeroPad2));
  }
  return out;
}

}  // namespace

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

absl::StatusOr<TlsCertificateInfo> DescribePemCertificate(
    absl::string_view pem) {
  absl::StatusOr<std::vector<X509Ptr>> certs =
      ReadCertificates(pem, "certificate", kMaxTlsChainCertificates);
  if (!certs.ok()) return certs.status();
  return Describe((*certs)[0].get());
}

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
  out->name_ = spec.server_name.empty() ? std::string(host) : spec.server_name;
  if (!out->name_.empty()) {
    if (absl::Status s = CheckName(out->name_, "server_name"); !s.ok()) {
      return s;
    }
  }
  out->name_is_ip_ = IsIpLiteral(out->name_);
  if (out->name_.empty() && spec.trust != TlsTrust::kNone) {
    // A UNIX path names no host: without a name any certificate a trusted
    // CA issued would pass.
    return Invalid("server_name",
                   "required to verify a peer that has no host name (a UNIX "
                   "socket); or set verify_off");
  }
  switch (spec.trust) {
    case TlsTrust::kSystem:
      if (!spec.ca_pem.empty()) {
        return Invalid("ca_pem", "given, but trust is the system store");
      }
      SSL_CTX_set_default_verify_paths(ctx);
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

}  // namespace sockagent
