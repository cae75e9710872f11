// Certificates and keys for the TLS files of the engine (tls.cc,
// tls_context.cc): reading PEM, what a key may cost, self-signed
// certificates, and a certificate described in words (agent/tls.h's
// TlsCertificateInfo). Internal: only agent/tls*.cc include it, so OpenSSL's
// headers stay out of the engine's (tls.h forward-declares what it names).
// No state, no lock: pure functions of their arguments.
//
//   absl::StatusOr<std::vector<X509Ptr>> chain =
//       ReadCertificates(pem, "certificate_chain_pem", 10);
//   TlsCertificateInfo info = Describe((*chain)[0].get());
#ifndef SOCKAGENT_AGENT_TLS_CERT_H_
#define SOCKAGENT_AGENT_TLS_CERT_H_

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "agent/tls.h"

namespace sockagent {
namespace tls_internal {

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

// InvalidArgument "tls.FIELD: WHAT".
absl::Status Invalid(absl::string_view field, absl::string_view what);
// OpenSSL's words for the oldest queued error ("unknown ca"), or ""; clears
// the queue.
std::string TakeErrorWords();
// Certificates of a PEM bundle, at most `max`; a field that holds none, or
// is malformed, is InvalidArgument naming it.
absl::StatusOr<std::vector<X509Ptr>> ReadCertificates(absl::string_view pem,
                                                      absl::string_view field,
                                                      size_t max);
// The one unencrypted private key of `pem`.
absl::StatusOr<PkeyPtr> ReadKey(absl::string_view pem, absl::string_view field);
// Handshakes run on the engine's loop: RSA up to 4096 bits, EC up to P-521,
// Ed25519 and Ed448 only.
absl::Status CheckKeyCost(EVP_PKEY* key, absl::string_view key_field);
bool IsIpLiteral(absl::string_view s);
// A host name or IP address for SNI, verification or a SAN.
absl::Status CheckName(absl::string_view name, absl::string_view field);
// A fresh P-256 key and a certificate for `names`, signed by itself.
absl::Status MakeSelfSigned(const std::vector<std::string>& names,
                            PkeyPtr* key_out, X509Ptr* cert_out);
// Peer-controlled bytes made printable ASCII (\xNN escapes), capped.
std::string PrintableText(absl::string_view raw);
// Subject, issuer, SANs, validity, fingerprint and PEM of `x`.
TlsCertificateInfo Describe(X509* x);
// The text a certificate's description holds (names, SANs, fingerprint,
// PEM): what FitChainToBudget counts.
size_t TextBytes(const TlsCertificateInfo& c);
// Trims `chain` (leaf first) to `budget` bytes of text: see
// kMaxTlsReportedChainBytes.
void FitChainToBudget(std::vector<TlsCertificateInfo>* chain, size_t budget);
// Lowercase hex SHA-256 of `data`.
std::string Sha256Hex(absl::string_view data);

}  // namespace tls_internal
}  // namespace sockagent

#endif  // SOCKAGENT_AGENT_TLS_CERT_H_
