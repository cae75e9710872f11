// sockctl's data-socket TLS options (cli/tls_args.h).
#include "cli/tls_args.h"

#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "cli/args.h"

namespace sockctl {

namespace {

constexpr size_t kMaxPemFileBytes = 64 * 1024;  // As the agent's bound.

absl::StatusOr<std::string> ReadPemFile(absl::string_view flag,
                                        const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": cannot read ", path));
  }
  std::string out(kMaxPemFileBytes + 1, '\0');
  in.read(out.data(), static_cast<std::streamsize>(out.size()));
  out.resize(static_cast<size_t>(in.gcount()));
  if (out.size() > kMaxPemFileBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        flag, ": ", path, " is above ", kMaxPemFileBytes, " bytes"));
  }
  return out;
}

absl::StatusOr<sockagent::v1::TlsVersion> ParseVersion(absl::string_view flag,
                                                       const std::string& v) {
  if (v.empty()) return sockagent::v1::TLS_VERSION_UNSPECIFIED;
  if (v == "1.2" || v == "tls1.2" || v == "TLSv1.2") {
    return sockagent::v1::TLS_VERSION_1_2;
  }
  if (v == "1.3" || v == "tls1.3" || v == "TLSv1.3") {
    return sockagent::v1::TLS_VERSION_1_3;
  }
  return absl::InvalidArgumentError(
      absl::StrCat(flag, ": '", v, "' is not 1.2 or 1.3"));
}

template <typename Options>
absl::Status SetCommon(const std::string& alpn, const std::string& min,
                       const std::string& max, const std::string& timeout,
                       Options* tls) {
  for (absl::string_view name : absl::StrSplit(alpn, ',', absl::SkipEmpty())) {
    tls->add_alpn(std::string(name));
  }
  absl::StatusOr<sockagent::v1::TlsVersion> lo =
      ParseVersion("--ssl-min-version", min);
  if (!lo.ok()) return lo.status();
  absl::StatusOr<sockagent::v1::TlsVersion> hi =
      ParseVersion("--ssl-max-version", max);
  if (!hi.ok()) return hi.status();
  tls->set_min_version(*lo);
  tls->set_max_version(*hi);
  return ParseDurationFlag("--ssl-handshake-timeout", timeout,
                           tls->mutable_handshake_timeout());
}

}  // namespace

void AddClientTlsOptions(CLI::App* app, ClientTlsArgs& args) {
  const char* group = "TLS on the connection (like ncat --ssl)";
  app->add_flag("--ssl", args.ssl,
                "Speak TLS over the connection (verifies the server against "
                "the system store unless --ssl-ca or --ssl-verify-off)")
      ->group(group);
  app->add_option("--ssl-ca", args.ca, "PEM file of the CAs to trust")
      ->group(group);
  app->add_option("--sni", args.sni,
                  "Server name sent (SNI) and verified (default: HOST)")
      ->group(group);
  app->add_flag("--ssl-verify-off", args.verify_off,
                "Verify nothing (reported as \"verification off\")")
      ->group(group);
  app->add_option("--ssl-cert", args.cert, "Client certificate chain (PEM)")
      ->group(group);
  app->add_option("--ssl-key", args.key, "Client private key (PEM)")
      ->group(group);
  app->add_option("--alpn", args.alpn, "ALPN protocols, e.g. h2,http/1.1")
      ->group(group);
  app->add_option("--ssl-min-version", args.min_version, "1.2 or 1.3")
      ->group(group);
  app->add_option("--ssl-max-version", args.max_version, "1.2 or 1.3")
      ->group(group);
  app->add_option("--ssl-handshake-timeout", args.handshake_timeout,
                  "Handshake bound (default 10s)")
      ->group(group);
}

namespace {

// The client options of `args` into `tls`; `prefix` names the flags in
// messages ("--" for a connection's own, "--upstream-" for a proxy's).
absl::Status FillClientTls(const ClientTlsArgs& args, absl::string_view prefix,
                           sockagent::v1::TlsClientOptions* tls) {
  tls->set_server_name(args.sni);
  tls->set_verify_off(args.verify_off);
  if (!args.ca.empty()) {
    absl::StatusOr<std::string> pem =
        ReadPemFile(absl::StrCat(prefix, "ssl-ca"), args.ca);
    if (!pem.ok()) return pem.status();
    tls->set_ca_pem(*std::move(pem));
  }
  if (args.cert.empty() != args.key.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(prefix, "ssl-cert and ", prefix, "ssl-key go together"));
  }
  if (!args.cert.empty()) {
    absl::StatusOr<std::string> cert =
        ReadPemFile(absl::StrCat(prefix, "ssl-cert"), args.cert);
    if (!cert.ok()) return cert.status();
    absl::StatusOr<std::string> key =
        ReadPemFile(absl::StrCat(prefix, "ssl-key"), args.key);
    if (!key.ok()) return key.status();
    tls->set_certificate_chain_pem(*std::move(cert));
    tls->set_private_key_pem(*std::move(key));
  }
  return SetCommon(args.alpn, args.min_version, args.max_version,
                   args.handshake_timeout, tls);
}

bool AnyClientTls(const ClientTlsArgs& args) {
  return args.ssl || !args.ca.empty() || !args.sni.empty() || args.verify_off ||
         !args.cert.empty() || !args.key.empty() || !args.alpn.empty() ||
         !args.min_version.empty() || !args.max_version.empty() ||
         !args.handshake_timeout.empty();
}

}  // namespace

absl::Status FillClientTlsOptions(const ClientTlsArgs& args, bool* wanted,
                                  sockagent::v1::TlsClientOptions* tls) {
  *wanted = AnyClientTls(args);
  if (!*wanted) return absl::OkStatus();
  if (!args.ssl) {
    return absl::InvalidArgumentError(
        "the --ssl-*, --sni and --alpn flags go with --ssl");
  }
  return FillClientTls(args, "--", tls);
}

absl::Status ApplyClientTls(const ClientTlsArgs& args,
                            sockagent::v1::OpenClientRequest* request) {
  bool wanted = false;
  sockagent::v1::TlsClientOptions tls;
  if (absl::Status s = FillClientTlsOptions(args, &wanted, &tls); !s.ok()) {
    return s;
  }
  if (wanted) *request->mutable_tls() = std::move(tls);
  return absl::OkStatus();
}

void AddUpstreamTlsOptions(CLI::App* app, ClientTlsArgs& args) {
  const char* group = "TLS toward the upstream";
  app->add_flag("--upstream-ssl", args.ssl,
                "Speak TLS to the upstream (verified against the system "
                "store unless --upstream-ssl-ca or --upstream-ssl-verify-off)")
      ->group(group);
  app->add_option("--upstream-ssl-ca", args.ca, "PEM file of the CAs to trust")
      ->group(group);
  app->add_option("--upstream-sni", args.sni,
                  "Server name sent and verified (default: the upstream host)")
      ->group(group);
  app->add_flag("--upstream-ssl-verify-off", args.verify_off,
                "Verify nothing (reported as \"verification off\")")
      ->group(group);
  app->add_option("--upstream-ssl-cert", args.cert,
                  "Client certificate chain for the upstream (PEM file)")
      ->group(group);
  app->add_option("--upstream-ssl-key", args.key, "Its private key (PEM file)")
      ->group(group);
  app->add_option("--upstream-alpn", args.alpn,
                  "ALPN protocols offered to the upstream")
      ->group(group);
}

absl::Status ApplyUpstreamTls(const ClientTlsArgs& args,
                              sockagent::v1::ProxyBehavior* proxy) {
  if (!AnyClientTls(args)) return absl::OkStatus();
  if (!args.ssl) {
    return absl::InvalidArgumentError(
        "the --upstream-ssl-*, --upstream-sni and --upstream-alpn flags go "
        "with --upstream-ssl");
  }
  return FillClientTls(args, "--upstream-", proxy->mutable_tls());
}

void AddServerTlsOptions(CLI::App* app, ServerTlsArgs& args) {
  const char* group = "TLS on accepted connections";
  app->add_option("--ssl-cert", args.cert,
                  "Certificate chain, leaf first (PEM file, sent)")
      ->group(group);
  app->add_option("--ssl-key", args.key, "Its private key (PEM file, sent)")
      ->group(group);
  app->add_option("--ssl-cert-path", args.cert_path,
                  "Certificate chain file ON THE AGENT HOST (needs "
                  "sockagentd --allow-tls-paths)")
      ->group(group);
  app->add_option("--ssl-key-path", args.key_path, "Key file ON THE AGENT HOST")
      ->group(group);
  app->add_flag("--ssl-self-signed", args.self_signed,
                "A fresh P-256 key and self-signed certificate (shown by "
                "`server list -o json`)")
      ->group(group);
  app->add_option("--ssl-name", args.names,
                  "A name for --ssl-self-signed (repeat; default localhost, "
                  "127.0.0.1, ::1)")
      ->group(group);
  app->add_option("--ssl-client-ca", args.client_ca,
                  "Mutual TLS: PEM file of the CAs client certificates need")
      ->group(group);
  app->add_option("--ssl-verify-client", args.verify_client,
                  "require | request (a client certificate)")
      ->group(group);
  app->add_option("--alpn", args.alpn, "ALPN protocols offered, e.g. h2")
      ->group(group);
  app->add_option("--ssl-min-version", args.min_version, "1.2 or 1.3")
      ->group(group);
  app->add_option("--ssl-max-version", args.max_version, "1.2 or 1.3")
      ->group(group);
  app->add_option("--ssl-handshake-timeout", args.handshake_timeout,
                  "Handshake bound (default 10s)")
      ->group(group);
}

absl::Status ApplyServerTls(const ServerTlsArgs& args,
                            sockagent::v1::StartServerRequest* request) {
  const bool keyed = !args.cert.empty() || !args.key.empty() ||
                     !args.cert_path.empty() || !args.key_path.empty();
  const bool other = !args.names.empty() || !args.client_ca.empty() ||
                     !args.verify_client.empty() || !args.alpn.empty() ||
                     !args.min_version.empty() || !args.max_version.empty() ||
                     !args.handshake_timeout.empty();
  if (!keyed && !args.self_signed) {
    if (other) {
      return absl::InvalidArgumentError(
          "the --ssl-* and --alpn flags need --ssl-cert/--ssl-key (or "
          "--ssl-self-signed)");
    }
    return absl::OkStatus();
  }
  if (keyed && args.self_signed) {
    return absl::InvalidArgumentError(
        "--ssl-self-signed or --ssl-cert/--ssl-key, not both");
  }
  if (!args.names.empty() && !args.self_signed) {
    return absl::InvalidArgumentError("--ssl-name goes with --ssl-self-signed");
  }
  sockagent::v1::TlsServerOptions* tls = request->mutable_tls();
  if (args.self_signed) {
    auto* self = tls->mutable_self_signed();
    for (const std::string& n : args.names) self->add_names(n);
  }
  if (!args.cert.empty()) {
    absl::StatusOr<std::string> pem = ReadPemFile("--ssl-cert", args.cert);
    if (!pem.ok()) return pem.status();
    tls->set_certificate_chain_pem(*std::move(pem));
  }
  if (!args.key.empty()) {
    absl::StatusOr<std::string> pem = ReadPemFile("--ssl-key", args.key);
    if (!pem.ok()) return pem.status();
    tls->set_private_key_pem(*std::move(pem));
  }
  tls->set_certificate_chain_path(args.cert_path);
  tls->set_private_key_path(args.key_path);
  if (!args.client_ca.empty()) {
    absl::StatusOr<std::string> pem =
        ReadPemFile("--ssl-client-ca", args.client_ca);
    if (!pem.ok()) return pem.status();
    tls->set_client_ca_pem(*std::move(pem));
  }
  if (args.verify_client == "require") {
    tls->set_client_auth(sockagent::v1::TLS_CLIENT_AUTH_REQUIRE);
  } else if (args.verify_client == "request") {
    tls->set_client_auth(sockagent::v1::TLS_CLIENT_AUTH_REQUEST);
  } else if (!args.verify_client.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--ssl-verify-client: '", args.verify_client,
                     "' is not require or request"));
  } else if (!args.client_ca.empty()) {
    tls->set_client_auth(sockagent::v1::TLS_CLIENT_AUTH_REQUIRE);
  }
  return SetCommon(args.alpn, args.min_version, args.max_version,
                   args.handshake_timeout, tls);
}

}  // namespace sockctl
