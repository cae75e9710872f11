// Verbs about proxies: `proxy start` (StartServer with the proxy behaviour:
// sugar over `server start --proxy-to`) and `proxy import` (the proxies of
// a toxiproxy config file). Both act on one agent or on every agent of a
// fleet (--agent A --agent B, --inventory FILE).
#include <google/protobuf/util/json_util.h>

#include <CLI/CLI.hpp>
#include <cstdint>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "cli/args.h"
#include "cli/client.h"
#include "cli/commands.h"
#include "cli/fleet.h"
#include "cli/proxy_import.h"
#include "cli/socket_tables.h"
#include "cli/tls_args.h"
#include "cli/toxiproxy.pb.h"

namespace sockctl {
namespace {

using sockagent::v1::ListServersResponse;
using sockagent::v1::StartServerRequest;
using sockagent::v1::StartServerResponse;

// A toxiproxy config file larger than this is refused (it lists proxies,
// a few hundred bytes each).
constexpr size_t kMaxImportBytes = 1 << 20;

struct StartArgs {
  bool tcp = false;
  bool udp = false;
  std::string unix_path;
  std::string listen = "127.0.0.1:0";
  std::string upstream;
  std::vector<std::string> labels;
  CLI::Option* unix_opt = nullptr;
  ServerTlsArgs tls;           // TLS termination on the accepted side.
  ClientTlsArgs upstream_tls;  // TLS origination toward the upstream.
};

// One proxy server's StartServer request: `listen` (HOST:PORT, ":PORT" for
// every address) or a UNIX path, relaying to `upstream`.
absl::StatusOr<StartServerRequest> ProxyRequest(
    sockagent::v1::Transport transport, absl::string_view listen,
    absl::string_view upstream, const std::vector<std::string>& labels) {
  StartServerRequest request;
  request.set_transport(transport);
  if (transport == sockagent::v1::TRANSPORT_UNIX) {
    if (listen.empty()) {
      return absl::InvalidArgumentError("--unix needs a socket path");
    }
    request.mutable_bind()->set_unix_path(std::string(listen));
  } else {
    absl::StatusOr<bool> has_port =
        ParseHostPort(listen, request.mutable_bind());
    if (!has_port.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "invalid listen address: ", has_port.status().message()));
    }
    if (!*has_port) {
      return absl::InvalidArgumentError(absl::StrCat(
          "invalid listen address '", listen,
          "': expected HOST:PORT, [IPV6]:PORT or :PORT (port 0: any)"));
    }
  }
  if (upstream.empty()) {
    return absl::InvalidArgumentError("the upstream is missing");
  }
  sockagent::v1::ProxyBehavior* proxy =
      request.mutable_behavior()->mutable_proxy();
  if (absl::Status s = ParseProxyUpstream(upstream, proxy); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid upstream: ", s.message()));
  }
  if (transport == sockagent::v1::TRANSPORT_UDP &&
      proxy->transport() == sockagent::v1::TRANSPORT_UNIX) {
    return absl::InvalidArgumentError(
        "a UDP proxy relays to a UDP HOST:PORT, not a UNIX socket");
  }
  if (transport == sockagent::v1::TRANSPORT_UNIX &&
      proxy->transport() == sockagent::v1::TRANSPORT_UNSPECIFIED) {
    proxy->set_transport(sockagent::v1::TRANSPORT_TCP);
  }
  if (absl::Status s = ParseLabels(labels, request.mutable_labels()); !s.ok()) {
    return s;
  }
  return request;
}

absl::StatusOr<StartServerRequest> BuildStart(const StartArgs& args) {
  absl::StatusOr<StartServerRequest> request =
      args.unix_opt->count() > 0
          ? ProxyRequest(sockagent::v1::TRANSPORT_UNIX, args.unix_path,
                         args.upstream, args.labels)
          : ProxyRequest(args.udp ? sockagent::v1::TRANSPORT_UDP
                                  : sockagent::v1::TRANSPORT_TCP,
                         args.listen, args.upstream, args.labels);
  if (!request.ok()) return request;
  if (absl::Status s = ApplyServerTls(args.tls, &*request); !s.ok()) return s;
  if (absl::Status s = ApplyUpstreamTls(
          args.upstream_tls, request->mutable_behavior()->mutable_proxy());
      !s.ok()) {
    return s;
  }
  return request;
}

// Starts every request on `client`, in order, into `started`; stops at the
// first failure (what started stays, and is printed).
grpc::Status StartAll(AgentClient& client,
                      const std::vector<StartServerRequest>& requests,
                      ListServersResponse* started) {
  for (const StartServerRequest& request : requests) {
    StartServerResponse response;
    auto ctx = client.NewContext();
    grpc::Status status =
        client.agent().StartServer(ctx.get(), request, &response);
    if (!status.ok()) return status;
    *started->add_servers() = response.server();
  }
  return grpc::Status::OK;
}

int RunStartAll(
    AgentClient& client,
    const absl::StatusOr<std::vector<StartServerRequest>>& requests) {
  if (!requests.ok()) return UsageError(requests.status().message());
  ListServersResponse started;
  grpc::Status status = StartAll(client, *requests, &started);
  const bool printed = started.servers_size() == 0 ||
                       PrintServers(std::cout, started, started.servers(),
                                    client.options().output, TableView::kBrief);
  if (!status.ok()) return client.Fail(status);
  return printed ? kExitOk : kExitFailure;
}

int RunStartAllOnEvery(
    Fleet& fleet,
    const absl::StatusOr<std::vector<StartServerRequest>>& requests) {
  if (!requests.ok()) return UsageError(requests.status().message());
  const OutputFormat format = fleet.output();
  return RunOnEveryAgent(
      fleet,
      format == OutputFormat::kTable ? ServerHeader(TableView::kBrief)
                                     : std::vector<std::string>{},
      [&](AgentClient& client, AgentOutput& out) {
        auto started = std::make_unique<ListServersResponse>();
        grpc::Status s = StartAll(client, *requests, started.get());
        for (const sockagent::v1::Server& server : started->servers()) {
          if (format == OutputFormat::kName) {
            out.rows.push_back({server.id()});
          } else if (format == OutputFormat::kAddr) {
            for (std::string& line : ServerAddrLines(server)) {
              out.rows.push_back({std::move(line)});
            }
          } else {
            out.rows.push_back(ServerRow(server, TableView::kBrief));
          }
        }
        out.response = std::move(started);
        return s;
      });
}

absl::StatusOr<std::vector<StartServerRequest>> StartRequests(
    const StartArgs& args) {
  absl::StatusOr<StartServerRequest> request = BuildStart(args);
  if (!request.ok()) return request.status();
  return std::vector<StartServerRequest>{*std::move(request)};
}

struct ImportArgs {
  std::string file;
  std::vector<std::string> labels;
};

}  // namespace

absl::StatusOr<std::vector<StartServerRequest>> ToxiproxyRequests(
    absl::string_view json, const std::vector<std::string>& labels) {
  // protobuf's parser would take a lone object for a one-element array.
  if (!absl::StartsWith(absl::StripLeadingAsciiWhitespace(json), "[")) {
    return absl::InvalidArgumentError(
        "not a toxiproxy config file (a JSON array of {name, listen, "
        "upstream, enabled}): it does not start with '['");
  }
  toxiproxy::Config config;
  google::protobuf::util::JsonParseOptions parse;
  parse.ignore_unknown_fields = true;
  // toxiproxy's file is a bare array; protobuf parses objects.
  const auto status = google::protobuf::util::JsonStringToMessage(
      absl::StrCat("{\"proxies\":", json, "}"), &config, parse);
  if (!status.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "not a toxiproxy config file (a JSON array of {name, listen, "
        "upstream, enabled}): ",
        std::string(status.message())));
  }
  std::vector<StartServerRequest> requests;
  for (int i = 0; i < config.proxies_size(); ++i) {
    const toxiproxy::Proxy& p = config.proxies(i);
    const std::string where =
        absl::StrCat("proxy ", i + 1, p.name().empty() ? "" : " (", p.name(),
                     p.name().empty() ? "" : ")");
    if (p.has_enabled() && !p.enabled()) continue;
    if (p.name().empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": its name is missing"));
    }
    if (p.listen().empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": its listen address is missing"));
    }
    std::vector<std::string> all = labels;
    all.push_back(absl::StrCat("toxiproxy=", p.name()));
    absl::StatusOr<StartServerRequest> request = ProxyRequest(
        sockagent::v1::TRANSPORT_TCP, p.listen(), p.upstream(), all);
    if (!request.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": ", request.status().message()));
    }
    requests.push_back(*std::move(request));
  }
  return requests;
}

namespace {

absl::StatusOr<std::vector<StartServerRequest>> ImportRequests(
    const ImportArgs& args) {
  std::ifstream in(args.file, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(absl::StrCat("cannot read ", args.file));
  }
  std::string json;
  json.resize(kMaxImportBytes + 1);
  in.read(json.data(), static_cast<std::streamsize>(json.size()));
  json.resize(static_cast<size_t>(in.gcount()));
  if (json.size() > kMaxImportBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(args.file, " is larger than ", kMaxImportBytes, " bytes"));
  }
  absl::StatusOr<std::vector<StartServerRequest>> requests =
      ToxiproxyRequests(json, args.labels);
  if (!requests.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(args.file, ": ", requests.status().message()));
  }
  return requests;
}

void AddStart(CLI::App& proxy, Commands& commands) {
  auto args = std::make_shared<StartArgs>();
  CLI::App* start = proxy.add_subcommand(
      "start",
      "Start a proxy: each connection to --listen is relayed to --upstream "
      "(server start --proxy-to)");
  start->footer(
      "Examples:\n"
      "  sockctl proxy start --listen 127.0.0.1:6380 --upstream "
      "127.0.0.1:6379\n"
      "  sockctl proxy start --udp --listen 127.0.0.1:5353 --upstream "
      "10.0.0.2:53\n"
      "  sockctl proxy start --unix /run/db.sock --upstream 127.0.0.1:5432\n"
      "  sockctl proxy start --ssl-self-signed --upstream 127.0.0.1:8080   "
      "# terminate TLS\n"
      "  sockctl proxy start --upstream example.test:443 --upstream-ssl      "
      "# originate TLS");
  CLI::Option* tcp = start->add_flag("--tcp", args->tcp, "TCP (the default)");
  CLI::Option* udp =
      start->add_flag("--udp", args->udp, "UDP: one upstream socket per peer");
  args->unix_opt = start->add_option("--unix", args->unix_path,
                                     "Listen on a UNIX stream socket at PATH");
  args->unix_opt->type_name("PATH");
  tcp->excludes(udp)->excludes(args->unix_opt);
  udp->excludes(args->unix_opt);
  CLI::Option* listen =
      start->add_option("--listen", args->listen,
                        "HOST:PORT to listen on (default 127.0.0.1:0: any "
                        "free port)");
  listen->excludes(args->unix_opt);
  start
      ->add_option("--upstream", args->upstream,
                   "Where to relay: HOST:PORT (names resolve per connection) "
                   "or unix:PATH")
      ->required();
  start->add_option("--label", args->labels,
                    "KEY=VALUE; repeat for more (both halves inherit them)");
  AddServerTlsOptions(start, args->tls);
  AddUpstreamTlsOptions(start, args->upstream_tls);
  commands.push_back({start,
                      [args](AgentClient& client) {
                        return RunStartAll(client, StartRequests(*args));
                      },
                      [args](Fleet& fleet) {
                        return RunStartAllOnEvery(fleet, StartRequests(*args));
                      },
                      kSocketOutputs});
}

void AddImport(CLI::App& proxy, Commands& commands) {
  auto args = std::make_shared<ImportArgs>();
  CLI::App* import = proxy.add_subcommand(
      "import",
      "Start the proxies of a toxiproxy config file (JSON array of {name, "
      "listen, upstream, enabled}); each gets the label toxiproxy=NAME");
  import->footer(
      "Example:\n"
      "  sockctl proxy import toxiproxy.json\n"
      "  sockctl --inventory fleet.yaml proxy import toxiproxy.json");
  import->add_option("FILE", args->file, "The toxiproxy config file")
      ->required();
  import->add_option("--label", args->labels,
                     "KEY=VALUE added to every proxy; repeat for more");
  commands.push_back({import,
                      [args](AgentClient& client) {
                        return RunStartAll(client, ImportRequests(*args));
                      },
                      [args](Fleet& fleet) {
                        return RunStartAllOnEvery(fleet, ImportRequests(*args));
                      },
                      kSocketOutputs});
}

}  // namespace

void AddProxyCommands(CLI::App& app, Commands& commands) {
  CLI::App* proxy = app.add_subcommand(
      "proxy", "Proxies: relay connections to an upstream (toxiproxy-like)");
  proxy->require_subcommand(1);
  AddStart(*proxy, commands);
  AddImport(*proxy, commands);
}

}  // namespace sockctl
