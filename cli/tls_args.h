// The data-socket TLS options of sockctl (ncat's names: --ssl, --ssl-ca,
// --sni, --ssl-verify-off, --ssl-cert/--ssl-key, --alpn, ...): for clients
// (`client open`, `connect`) and servers (`server start`). Files named on
// the command line are read here and sent as PEM. The `--tls-*` flags are
// the CONTROL channel's and are not these.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "sockagent/v1/agent.pb.h"

namespace sockctl {

struct ClientTlsArgs {
  bool ssl = false;
  std::string ca;
  std::string sni;
  bool verify_off = false;
  std::string cert;
  std::string key;
  std::string alpn;  // Comma-separated.
  std::string min_version;
  std::string max_version;
  std::string handshake_timeout;
};

struct ServerTlsArgs {
  std::string cert;
  std::string key;
  std::string cert_path;  // On the agent host (--allow-tls-paths).
  std::string key_path;
  bool self_signed = false;
  std::vector<std::string> names;
  std::string client_ca;
  std::string verify_client;  // require | request
  std::string alpn;
  std::string min_version;
  std::string max_version;
  std::string handshake_timeout;
};

void AddClientTlsOptions(CLI::App* app, ClientTlsArgs& args);
// Sets request->tls when --ssl (or any other TLS flag) was given;
// InvalidArgument naming the flag otherwise.
absl::Status ApplyClientTls(const ClientTlsArgs& args,
                            sockagent::v1::OpenClientRequest* request);
// The same flags for a request that carries TlsClientOptions elsewhere
// (`probe`: one copy per target). `*wanted` says whether any TLS flag was
// given; `tls` is filled only then.
absl::Status FillClientTlsOptions(const ClientTlsArgs& args, bool* wanted,
                                  sockagent::v1::TlsClientOptions* tls);

// A proxy's TLS toward its upstream: --upstream-ssl, --upstream-ssl-ca,
// --upstream-sni, --upstream-ssl-verify-off, --upstream-ssl-cert/-key,
// --upstream-alpn. Sets proxy->tls when --upstream-ssl was given.
void AddUpstreamTlsOptions(CLI::App* app, ClientTlsArgs& args);
absl::Status ApplyUpstreamTls(const ClientTlsArgs& args,
                              sockagent::v1::ProxyBehavior* proxy);

void AddServerTlsOptions(CLI::App* app, ServerTlsArgs& args);
absl::Status ApplyServerTls(const ServerTlsArgs& args,
                            sockagent::v1::StartServerRequest* request);

}  // namespace sockctl
