// Certificates and keys (agent/tls_cert.h), on OpenSSL's X509 and EVP
// APIs: nothing here parses ASN.1 itself.
#include "agent/tls_cert.h"

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
namespace tls_internal {
namespace {

int NoPassword(char*, int, int, void*) { return 0; }

absl::Time AsnTime(const ASN1_TIME* t) {
  struct tm tm;
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) return absl::InfinitePast();
  return absl::FromTimeT(timegm(&tm));
}

std::string NameText(const X509_NAME* name) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, n > 0 ? static_cast<size_t>(n) : 0);
}

}  // namespace

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

size_t TextBytes(const TlsCertificateInfo& c) {
  size_t n = c.subject.size() + c.issuer.size() + c.sha256_fingerprint.size() +
             c.pem.size();
  for (const std::string& san : c.sans) n += san.size();
  return n;
}

void FitChainToBudget(std::vector<TlsCertificateInfo>* chain, size_t budget) {
  size_t used = 0;
  for (size_t i = 0; i < chain->size(); ++i) {
    TlsCertificateInfo& c = (*chain)[i];
    if (used + TextBytes(c) > budget) c.pem.clear();
    size_t dropped = 0;
    while (!c.sans.empty() && used + TextBytes(c) > budget) {
      c.sans.pop_back();
      ++dropped;
    }
    if (dropped > 0) {
      c.sans.push_back(absl::StrCat("...", dropped, " more SANs not kept"));
    }
    // The leaf stays (its names are at most a few KiB); later certificates
    // that do not fit go, with the ones after them.
    if (i > 0 && used + TextBytes(c) > budget) {
      chain->resize(i);
      return;
    }
    used += TextBytes(c);
  }
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

}  // namespace tls_internal

using tls_internal::Describe;
using tls_internal::ReadCertificates;
using tls_internal::X509Ptr;

absl::StatusOr<TlsCertificateInfo> DescribePemCertificate(
    absl::string_view pem) {
  absl::StatusOr<std::vector<X509Ptr>> certs =
      ReadCertificates(pem, "certificate", kMaxTlsChainCertificates);
  if (!certs.ok()) return certs.status();
  return Describe((*certs)[0].get());
}

}  // namespace sockagent
