// The per-run certificate authority of `sockctl matrix --tls`: a fresh P-256
// CA that exists only in sockctl's memory for one run, and the certificates
// it issues, one per agent, for the host the other agents dial (so every
// pair verifies: the CA is the only trust each probe has). The same
// certificate serves as the agent's client certificate with --mtls. Nothing
// is written to disk; the CA's key dies with the process.
//
//   absl::StatusOr<RunCa> ca = RunCa::Create("1a2b3c4d");
//   absl::StatusOr<IssuedCert> web = ca->Issue("web-1", {"10.0.0.5"});
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace sockctl {

struct IssuedCert {
  std::string certificate_pem;  // The leaf, then the CA.
  std::string private_key_pem;
};

class RunCa {
 public:
  // A CA named "sockctl matrix CA RUN", valid from an hour ago for a day.
  static absl::StatusOr<RunCa> Create(absl::string_view run);

  // The CA's certificate: what probes trust.
  const std::string& certificate_pem() const { return ca_pem_; }

  // A P-256 key and a certificate with subject CN `name` and SANs `hosts`
  // (IP addresses as IP SANs, anything else as DNS names), for server and
  // client authentication, valid as long as the CA.
  absl::StatusOr<IssuedCert> Issue(absl::string_view name,
                                   const std::vector<std::string>& hosts) const;

 private:
  struct Keys;
  explicit RunCa(std::shared_ptr<const Keys> keys, std::string ca_pem)
      : keys_(std::move(keys)), ca_pem_(std::move(ca_pem)) {}

  std::shared_ptr<const Keys> keys_;
  std::string ca_pem_;
};

}  // namespace sockctl
