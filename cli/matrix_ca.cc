// The per-run CA of `sockctl matrix --tls`: see matrix_ca.h. Certificates
// come from OpenSSL's X509 API; nothing here parses ASN.1.
#include "cli/matrix_ca.h"

#include <arpa/inet.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <initializer_list>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace sockctl {
namespace {

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;
using BioPtr = std::unique_ptr<BIO, BioFree>;

// Valid from an hour ago (clocks of a fleet differ) for a day: a run lasts
// minutes, its servers at most their TTL.
constexpr long kBackdateSeconds = 3600;
constexpr long kLifetimeSeconds = 24 * 3600;

absl::Status OpenSslError(absl::string_view what) {
  const unsigned long e = ERR_get_error();
  char words[256] = "unknown error";
  if (e != 0) ERR_error_string_n(e, words, sizeof words);
  ERR_clear_error();
  return absl::InternalError(
      absl::StrCat("matrix --tls: ", what, " failed: ", words));
}

bool IsIp(const std::string& host) {
  unsigned char buf[16];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 ||
         inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

// A certificate for `key` with subject CN `cn`, a random serial and the
// run's validity, not yet signed and without extensions.
absl::StatusOr<X509Ptr> NewCertificate(EVP_PKEY* key, absl::string_view cn) {
  X509Ptr x(X509_new());
  unsigned char serial[16];
  if (x == nullptr || RAND_bytes(serial, sizeof serial) != 1) {
    return OpenSslError("making a certificate");
  }
  serial[0] &= 0x7f;  // A positive serial.
  BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
  const bool serial_set =
      bn != nullptr &&
      BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x.get())) != nullptr;
  BN_free(bn);
  const std::string name(cn.substr(0, 64));  // X.509's CN upper bound.
  if (!serial_set || X509_set_version(x.get(), 2) != 1 ||
      X509_gmtime_adj(X509_getm_notBefore(x.get()), -kBackdateSeconds) ==
          nullptr ||
      X509_gmtime_adj(X509_getm_notAfter(x.get()), kLifetimeSeconds) ==
          nullptr ||
      X509_set_pubkey(x.get(), key) != 1 ||
      X509_NAME_add_entry_by_txt(
          X509_get_subject_name(x.get()), "CN", MBSTRING_ASC,
          reinterpret_cast<const unsigned char*>(name.c_str()), -1, -1,
          0) != 1) {
    return OpenSslError("filling a certificate");
  }
  return x;
}

// Adds v3 extensions (nid, OpenSSL config value) to `x`, issued by `issuer`.
absl::Status AddExtensions(
    X509* x, X509* issuer,
    std::initializer_list<std::pair<int, std::string>> extensions) {
  X509V3_CTX v3;
  X509V3_set_ctx_nodb(&v3);
  X509V3_set_ctx(&v3, issuer, x, nullptr, nullptr, 0);
  for (const auto& [nid, value] : extensions) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &v3, nid, value.c_str());
    if (ext == nullptr) {
      return OpenSslError(
          absl::StrCat("extension ", OBJ_nid2sn(nid), "=", value));
    }
    const int added = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    if (added != 1) return OpenSslError("adding an extension");
  }
  return absl::OkStatus();
}

template <typename Write>
absl::StatusOr<std::string> ToPem(Write write) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr || write(bio.get()) != 1) return OpenSslError("PEM");
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

absl::StatusOr<std::string> CertPem(X509* x) {
  return ToPem([x](BIO* b) { return PEM_write_bio_X509(b, x); });
}

}  // namespace

struct RunCa::Keys {
  PkeyPtr key;
  X509Ptr cert;
};

absl::StatusOr<RunCa> RunCa::Create(absl::string_view run) {
  auto keys = std::make_shared<Keys>();
  keys->key.reset(EVP_EC_gen("P-256"));
  if (keys->key == nullptr) return OpenSslError("CA key generation");
  absl::StatusOr<X509Ptr> x =
      NewCertificate(keys->key.get(), absl::StrCat("sockctl matrix CA ", run));
  if (!x.ok()) return x.status();
  keys->cert = *std::move(x);
  X509* cert = keys->cert.get();
  if (X509_set_issuer_name(cert, X509_get_subject_name(cert)) != 1) {
    return OpenSslError("CA issuer");
  }
  if (absl::Status s =
          AddExtensions(cert, cert,
                        {{NID_basic_constraints, "critical,CA:TRUE,pathlen:0"},
                         {NID_key_usage, "critical,keyCertSign,cRLSign"},
                         {NID_subject_key_identifier, "hash"}});
      !s.ok()) {
    return s;
  }
  if (X509_sign(cert, keys->key.get(), EVP_sha256()) == 0) {
    return OpenSslError("signing the CA");
  }
  absl::StatusOr<std::string> pem = CertPem(cert);
  if (!pem.ok()) return pem.status();
  return RunCa(std::move(keys), *std::move(pem));
}

absl::StatusOr<IssuedCert> RunCa::Issue(
    absl::string_view name, const std::vector<std::string>& hosts) const {
  if (hosts.empty()) {
    return absl::InvalidArgumentError(
        "matrix --tls: a certificate needs a host");
  }
  PkeyPtr key(EVP_EC_gen("P-256"));
  if (key == nullptr) return OpenSslError("key generation");
  absl::StatusOr<X509Ptr> x = NewCertificate(key.get(), name);
  if (!x.ok()) return x.status();
  X509* cert = x->get();
  if (X509_set_issuer_name(cert, X509_get_subject_name(keys_->cert.get())) !=
      1) {
    return OpenSslError("issuer");
  }
  std::vector<std::string> sans;
  for (const std::string& h : hosts) {
    sans.push_back(absl::StrCat(IsIp(h) ? "IP:" : "DNS:", h));
  }
  if (absl::Status s =
          AddExtensions(cert, keys_->cert.get(),
                        {{NID_subject_alt_name, absl::StrJoin(sans, ",")},
                         {NID_basic_constraints, "critical,CA:FALSE"},
                         {NID_key_usage, "critical,digitalSignature"},
                         {NID_ext_key_usage, "serverAuth,clientAuth"},
                         {NID_authority_key_identifier, "keyid"}});
      !s.ok()) {
    return s;
  }
  if (X509_sign(cert, keys_->key.get(), EVP_sha256()) == 0) {
    return OpenSslError("signing");
  }
  IssuedCert out;
  absl::StatusOr<std::string> leaf = CertPem(cert);
  if (!leaf.ok()) return leaf.status();
  out.certificate_pem = absl::StrCat(*leaf, ca_pem_);
  absl::StatusOr<std::string> key_pem = ToPem([&key](BIO* b) {
    return PEM_write_bio_PrivateKey(b, key.get(), nullptr, nullptr, 0, nullptr,
                                    nullptr);
  });
  if (!key_pem.ok()) return key_pem.status();
  out.private_key_pem = *std::move(key_pem);
  return out;
}

}  // namespace sockctl
