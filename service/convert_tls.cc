// Proto <-> engine for TLS on data sockets (agent/tls.h): options into
// validated OpenSSL contexts, handshake facts into messages.
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "service/convert.h"
#include "service/open_beneath.h"

namespace sockagent {

namespace {

absl::StatusOr<TlsVersion> VersionFromProto(v1::TlsVersion v,
                                            absl::string_view field) {
  switch (v) {
    case v1::TLS_VERSION_UNSPECIFIED:
      return TlsVersion::kDefault;
    case v1::TLS_VERSION_1_2:
      return TlsVersion::kTls12;
    case v1::TLS_VERSION_1_3:
      return TlsVersion::kTls13;
    default:
      break;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("tls.", field, ": unknown version ", static_cast<int>(v)));
}

v1::TlsVersion VersionToProto(TlsVersion v) {
  switch (v) {
    case TlsVersion::kTls12:
      return v1::TLS_VERSION_1_2;
    case TlsVersion::kTls13:
      return v1::TLS_VERSION_1_3;
    case TlsVersion::kDefault:
      break;
  }
  return v1::TLS_VERSION_UNSPECIFIED;
}

v1::TlsClientAuth ClientAuthToProto(TlsClientAuth a) {
  switch (a) {
    case TlsClientAuth::kRequest:
      return v1::TLS_CLIENT_AUTH_REQUEST;
    case TlsClientAuth::kRequire:
      return v1::TLS_CLIENT_AUTH_REQUIRE;
    case TlsClientAuth::kNone:
      break;
  }
  return v1::TLS_CLIENT_AUTH_UNSPECIFIED;
}

// A regular file under one of `dirs` (absolute, without a trailing '/'), at
// most kMaxTlsPemBytes. The path must name the file under the directory as
// spelled there: a path outside every directory is refused before the
// filesystem is touched, so the answer says nothing about what exists
// elsewhere on the host. Below the directory, ".." and symlinks may not
// lead out of it. Errors name the field and the path, never the contents.
absl::StatusOr<std::string> ReadAllowedFile(
    const std::string& path, absl::string_view field,
    const std::vector<std::string>& dirs) {
  const std::string what = absl::StrCat("tls.", field);
  if (dirs.empty()) {
    return absl::PermissionDeniedError(absl::StrCat(
        what,
        ": this agent reads no files for TLS (the daemon flag "
        "--allow-tls-paths is unset); send the PEM in the request"));
  }
  if (path.empty() || path.size() > PATH_MAX || path[0] != '/' ||
      path.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": must be an absolute path"));
  }
  const std::string* under = nullptr;
  for (const std::string& dir : dirs) {
    if (path.size() > dir.size() + 1 &&
        absl::StartsWith(path, absl::StrCat(dir, "/"))) {
      under = &dir;
      break;
    }
  }
  if (under == nullptr) {
    return absl::PermissionDeniedError(absl::StrCat(
        what, ": ", path, " is not under a directory --allow-tls-paths names"));
  }
  const int dir_fd = ::open(under->c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        what, ": the allowed directory ", *under, ": ", std::strerror(errno)));
  }
  const std::string relative = path.substr(under->size() + 1);
  const int fd = OpenBeneath(dir_fd, relative);
  const int open_errno = errno;
  ::close(dir_fd);
  if (fd < 0) {
    switch (open_errno) {
      case ENOENT:
      case ENOTDIR:
        return absl::NotFoundError(
            absl::StrCat(what, ": ", path, ": ", std::strerror(open_errno)));
      case EXDEV:
      case ELOOP:
        return absl::PermissionDeniedError(
            absl::StrCat(what, ": ", path, " leads out of ", *under,
                         " (by \"..\" or a symlink)"));
      default:
        return absl::PermissionDeniedError(
            absl::StrCat(what, ": ", path, ": ", std::strerror(open_errno)));
    }
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": ", path, " is not a regular file"));
  }
  std::string out;
  if (static_cast<uint64_t>(st.st_size) <= kMaxTlsPemBytes) {
    char buf[16384];
    while (out.size() <= kMaxTlsPemBytes) {
      const ssize_t n = ::read(fd, buf, sizeof buf);
      if (n <= 0) break;
      out.append(buf, static_cast<size_t>(n));
    }
  }
  ::close(fd);
  if (static_cast<uint64_t>(st.st_size) > kMaxTlsPemBytes ||
      out.size() > kMaxTlsPemBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": ", path, " is above the ", kMaxTlsPemBytes, "-byte bound"));
  }
  return out;
}

void CertificateToProto(const TlsCertificateInfo& in, bool with_pem,
                        v1::TlsCertificate* out) {
  out->set_subject(in.subject);
  out->set_issuer(in.issuer);
  for (const std::string& san : in.sans) out->add_sans(san);
  if (in.not_before != absl::InfinitePast()) {
    TimeToProto(in.not_before, out->mutable_not_before());
  }
  if (in.not_after != absl::InfinitePast()) {
    TimeToProto(in.not_after, out->mutable_not_after());
  }
  out->set_sha256_fingerprint(in.sha256_fingerprint);
  if (with_pem) out->set_pem(in.pem);
}

}  // namespace

namespace {

// The fields servers and clients share: ALPN, versions, handshake timeout.
template <typename Options, typename Spec>
absl::Status CommonFromProto(const Options& in, Spec* spec) {
  if (in.alpn_size() > static_cast<int>(kMaxTlsAlpnProtocols)) {
    return absl::InvalidArgumentError(absl::StrCat("tls.alpn: ", in.alpn_size(),
                                                   " names; at most ",
                                                   kMaxTlsAlpnProtocols));
  }
  for (const std::string& p : in.alpn()) spec->alpn.push_back(p);
  absl::StatusOr<TlsVersion> min =
      VersionFromProto(in.min_version(), "min_version");
  if (!min.ok()) return min.status();
  absl::StatusOr<TlsVersion> max =
      VersionFromProto(in.max_version(), "max_version");
  if (!max.ok()) return max.status();
  spec->min_version = *min;
  spec->max_version = *max;
  absl::StatusOr<absl::Duration> timeout =
      DurationFromProto(in.handshake_timeout(), "tls.handshake_timeout");
  if (!timeout.ok()) return timeout.status();
  spec->handshake_timeout = *timeout;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::shared_ptr<const TlsServerContext>> TlsServerFromProto(
    const v1::TlsServerOptions& in,
    const std::vector<std::string>& tls_path_dirs) {
  TlsServerSpec spec;
  spec.certificate_chain_pem = in.certificate_chain_pem();
  spec.private_key_pem = in.private_key_pem();
  if (!in.certificate_chain_path().empty()) {
    if (!spec.certificate_chain_pem.empty()) {
      return absl::InvalidArgumentError(
          "tls.certificate_chain_path: give the PEM or a path, not both");
    }
    absl::StatusOr<std::string> pem = ReadAllowedFile(
        in.certificate_chain_path(), "certificate_chain_path", tls_path_dirs);
    if (!pem.ok()) return pem.status();
    spec.certificate_chain_pem = *std::move(pem);
    spec.certificate_chain_path = in.certificate_chain_path();
  }
  if (!in.private_key_path().empty()) {
    if (!spec.private_key_pem.empty()) {
      return absl::InvalidArgumentError(
          "tls.private_key_path: give the PEM or a path, not both");
    }
    absl::StatusOr<std::string> pem = ReadAllowedFile(
        in.private_key_path(), "private_key_path", tls_path_dirs);
    if (!pem.ok()) return pem.status();
    spec.private_key_pem = *std::move(pem);
    spec.private_key_path = in.private_key_path();
  }
  spec.self_signed = in.has_self_signed();
  if (in.self_signed().names_size() > static_cast<int>(kMaxTlsNames)) {
    return absl::InvalidArgumentError(
        absl::StrCat("tls.self_signed.names: ", in.self_signed().names_size(),
                     " names; at most ", kMaxTlsNames));
  }
  for (const std::string& name : in.self_signed().names()) {
    spec.self_signed_names.push_back(name);
  }
  spec.client_ca_pem = in.client_ca_pem();
  switch (in.client_auth()) {
    case v1::TLS_CLIENT_AUTH_UNSPECIFIED:
      spec.client_auth = TlsClientAuth::kNone;
      break;
    case v1::TLS_CLIENT_AUTH_REQUEST:
      spec.client_auth = TlsClientAuth::kRequest;
      break;
    case v1::TLS_CLIENT_AUTH_REQUIRE:
      spec.client_auth = TlsClientAuth::kRequire;
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("tls.client_auth: unknown value ",
                       static_cast<int>(in.client_auth())));
  }
  if (absl::Status s = CommonFromProto(in, &spec); !s.ok()) return s;
  return TlsServerContext::Create(spec);
}

absl::StatusOr<TlsClientSpec> TlsClientSpecFromProto(
    const v1::TlsClientOptions& in) {
  TlsClientSpec spec;
  spec.server_name = in.server_name();
  if (in.verify_off()) {
    if (!in.ca_pem().empty()) {
      return absl::InvalidArgumentError(
          "tls.ca_pem: given, but verify_off is set");
    }
    spec.trust = TlsTrust::kNone;
  } else if (!in.ca_pem().empty()) {
    spec.trust = TlsTrust::kCaPem;
    spec.ca_pem = in.ca_pem();
  }
  spec.certificate_chain_pem = in.certificate_chain_pem();
  spec.private_key_pem = in.private_key_pem();
  if (absl::Status s = CommonFromProto(in, &spec); !s.ok()) return s;
  return spec;
}

absl::StatusOr<std::shared_ptr<const TlsClientContext>> TlsClientFromProto(
    const v1::TlsClientOptions& in, absl::string_view host) {
  absl::StatusOr<TlsClientSpec> spec = TlsClientSpecFromProto(in);
  if (!spec.ok()) return spec.status();
  return TlsClientContext::Create(*spec, host);
}

void TlsServerSpecToProto(const TlsServerSpec& in, v1::TlsServerOptions* out) {
  // A file is named by its path; PEM from the request is listed, except the
  // private key, which no answer carries (re-applying such a listing needs
  // the key again: INVALID_ARGUMENT naming tls.private_key_pem).
  if (!in.certificate_chain_path.empty()) {
    out->set_certificate_chain_path(in.certificate_chain_path);
  } else {
    out->set_certificate_chain_pem(in.certificate_chain_pem);
  }
  if (!in.private_key_path.empty()) {
    out->set_private_key_path(in.private_key_path);
  }
  if (in.self_signed) {
    v1::TlsSelfSigned* self = out->mutable_self_signed();
    for (const std::string& name : in.self_signed_names) self->add_names(name);
  }
  out->set_client_ca_pem(in.client_ca_pem);
  out->set_client_auth(ClientAuthToProto(in.client_auth));
  for (const std::string& p : in.alpn) out->add_alpn(p);
  out->set_min_version(VersionToProto(in.min_version));
  out->set_max_version(VersionToProto(in.max_version));
  if (in.handshake_timeout > absl::ZeroDuration()) {
    DurationToProto(in.handshake_timeout, out->mutable_handshake_timeout());
  }
}

void TlsClientSpecToProto(const TlsClientSpec& in, v1::TlsClientOptions* out) {
  out->set_server_name(in.server_name);
  out->set_ca_pem(in.ca_pem);
  out->set_verify_off(in.trust == TlsTrust::kNone);
  out->set_certificate_chain_pem(in.certificate_chain_pem);
  for (const std::string& p : in.alpn) out->add_alpn(p);
  out->set_min_version(VersionToProto(in.min_version));
  out->set_max_version(VersionToProto(in.max_version));
  if (in.handshake_timeout > absl::ZeroDuration()) {
    DurationToProto(in.handshake_timeout, out->mutable_handshake_timeout());
  }
}

void TlsServerInfoToProto(const TlsServerInfo& in, v1::TlsServerInfo* out) {
  out->set_self_signed(in.self_signed);
  CertificateToProto(in.certificate, /*with_pem=*/true,
                     out->mutable_certificate());
  out->set_client_auth(ClientAuthToProto(in.client_auth));
  for (const std::string& p : in.alpn) out->add_alpn(p);
  out->set_min_version(VersionToProto(in.min_version));
  out->set_max_version(VersionToProto(in.max_version));
  DurationToProto(in.handshake_timeout, out->mutable_handshake_timeout());
}

void TlsInfoToProto(const TlsInfo* in, bool handshaking, bool with_pem,
                    v1::TlsConnectionInfo* out) {
  out->set_handshaking(handshaking);
  if (in == nullptr) return;
  out->set_client(in->client);
  out->set_handshake_done(in->handshake_done);
  out->set_version(in->version);
  out->set_cipher(in->cipher);
  out->set_alpn(in->alpn);
  out->set_sni(in->sni);
  out->set_resumed(in->resumed);
  out->set_verification(in->verification);
  out->set_verified(in->verified);
  for (const TlsCertificateInfo& cert : in->peer_chain) {
    CertificateToProto(cert, with_pem, out->add_peer_chain());
  }
  out->set_peer_chain_length(in->peer_chain_length);
  out->set_truncated(in->truncated);
  out->set_failure(in->failure);
}

}  // namespace sockagent
