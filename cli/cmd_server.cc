// Verbs about servers: `server start` (StartServer), `server stop`
// (StopServer) and `server list` (ListServers, also on every agent of a
// fleet).
#include <CLI/CLI.hpp>
#include <cstdint>
#include <iostream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "cli/args.h"
#include "cli/client.h"
#include "cli/commands.h"
#include "cli/fleet.h"
#include "cli/socket_list.h"
#include "cli/socket_tables.h"
#include "cli/tls_args.h"

namespace sockctl {
namespace {

using sockagent::v1::ListServersRequest;
using sockagent::v1::ListServersResponse;
using sockagent::v1::StartServerRequest;
using sockagent::v1::StartServerResponse;
using sockagent::v1::StopServerRequest;
using sockagent::v1::StopServerResponse;

constexpr char kDefaultHost[] = "127.0.0.1";
constexpr char kDefaultHost6[] = "::1";

struct StartArgs {
  bool tcp = false;
  bool udp = false;
  std::string unix_path;
  std::string host = kDefaultHost;
  bool any = false;
  std::string port = "0";
  bool ipv4 = false;
  bool ipv6 = false;
  int32_t backlog = 0;
  bool no_reuseaddr = false;
  bool replace_stale = false;
  bool hold = false;
  bool echo = false;
  bool discard = false;
  std::string greeting;
  std::string greeting_hex;
  bool close_after = false;
  std::string proxy_to;
  std::vector<std::string> labels;
  std::string ttl;
  std::string idle_timeout;
  uint32_t max_sessions = 0;
  std::string session_idle;
  std::string name;
  bool replace = false;
  bool metrics = false;
  ServerTlsArgs tls;
  // Whether an option was given, where its value alone cannot tell.
  CLI::Option* host_opt = nullptr;
  CLI::Option* unix_opt = nullptr;
  CLI::Option* greeting_opt = nullptr;
  CLI::Option* greeting_hex_opt = nullptr;
};

absl::StatusOr<StartServerRequest> BuildStartRequest(const StartArgs& args) {
  StartServerRequest request;
  if (args.unix_opt->count() > 0) {
    if (args.unix_path.empty()) {
      return absl::InvalidArgumentError("--unix needs a socket path");
    }
    request.set_transport(sockagent::v1::TRANSPORT_UNIX);
    request.mutable_bind()->set_unix_path(args.unix_path);
  } else {
    request.set_transport(args.udp ? sockagent::v1::TRANSPORT_UDP
                                   : sockagent::v1::TRANSPORT_TCP);
    std::string host = args.host;
    if (args.any) {
      host.clear();
    } else if (args.ipv6 && args.host_opt->count() == 0) {
      host = kDefaultHost6;  // -6 alone means IPv6 loopback.
    }
    request.mutable_bind()->set_host(host);
    if (absl::Status s = ParsePort(args.port, request.mutable_bind());
        !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid --port: ", s.message()));
    }
    if (args.ipv4) request.set_family(sockagent::v1::FAMILY_IPV4);
    if (args.ipv6) request.set_family(sockagent::v1::FAMILY_IPV6);
  }
  request.set_backlog(args.backlog);
  if (args.no_reuseaddr) request.set_reuse_address(false);
  if (args.replace_stale) {
    if (args.unix_opt->count() == 0) {
      return absl::InvalidArgumentError("--replace-stale goes with --unix");
    }
    request.set_replace_stale(true);
  }

  auto* behavior = request.mutable_behavior();
  const bool greeting = args.greeting_opt->count() > 0;
  const bool greeting_hex = args.greeting_hex_opt->count() > 0;
  if (args.close_after && !greeting && !greeting_hex) {
    return absl::InvalidArgumentError(
        "--close-after goes with --greeting or --greeting-hex");
  }
  if (greeting || greeting_hex) {
    absl::StatusOr<std::string> data =
        greeting ? UnescapeC(args.greeting) : ParseHex(args.greeting_hex);
    if (!data.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid ", greeting ? "--greeting" : "--greeting-hex",
                       ": ", data.status().message()));
    }
    behavior->mutable_greeting()->set_data(*std::move(data));
    behavior->mutable_greeting()->set_close_after(args.close_after);
  } else if (!args.proxy_to.empty()) {
    if (absl::Status s =
            ParseProxyUpstream(args.proxy_to, behavior->mutable_proxy());
        !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid --proxy-to: ", s.message()));
    }
  } else if (args.echo) {
    behavior->mutable_echo();
  } else if (args.discard) {
    behavior->mutable_discard();
  } else {
    behavior->mutable_hold();
  }

  if (absl::Status s = ParseLabels(args.labels, request.mutable_labels());
      !s.ok()) {
    return s;
  }
  for (absl::Status s : {
           ParseDurationFlag("--ttl", args.ttl, request.mutable_ttl()),
           ParseDurationFlag("--idle-timeout", args.idle_timeout,
                             request.mutable_idle_timeout()),
           ParseDurationFlag(
               "--session-idle", args.session_idle,
               request.mutable_udp()->mutable_session_idle_timeout()),
       }) {
    if (!s.ok()) return s;
  }
  request.mutable_udp()->set_max_sessions(args.max_sessions);
  if (!args.udp) request.clear_udp();
  request.set_name(args.name);
  request.set_metrics(args.metrics);
  if (args.replace) {
    if (args.name.empty()) {
      return absl::InvalidArgumentError("--replace goes with --name");
    }
    request.set_replace(true);
  }
  if (absl::Status s = ApplyServerTls(args.tls, &request); !s.ok()) return s;
  return request;
}

int RunStart(AgentClient& client, const StartArgs& args) {
  absl::StatusOr<StartServerRequest> request = BuildStartRequest(args);
  if (!request.ok()) return UsageError(request.status().message());
  StartServerResponse response;
  auto ctx = client.NewContext();
  grpc::Status status =
      client.agent().StartServer(ctx.get(), *request, &response);
  if (!status.ok()) return client.Fail(status);
  // On stderr, so the listing stays parseable.
  if (response.outcome() == sockagent::v1::START_OUTCOME_UNCHANGED) {
    std::cerr << "unchanged: server '" << response.server().name()
              << "' already runs this spec (" << response.server().id()
              << ")\n";
  } else if (response.outcome() == sockagent::v1::START_OUTCOME_REPLACED) {
    std::cerr << "replaced: server '" << response.server().name()
              << "' (was: " << response.difference() << ")\n";
  }
  google::protobuf::RepeatedPtrField<sockagent::v1::Server> started;
  *started.Add() = response.server();
  return PrintServers(std::cout, response, started, client.options().output,
                      TableView::kBrief)
             ? kExitOk
             : kExitFailure;
}

struct StopArgs {
  std::string id;  // Or a name: ids look like srv-N, names never do.
  std::string name;
  std::vector<std::string> labels;
  bool close_connections = false;
};

// "srv-" and digits: what the agent's ids look like (names never do).
bool LooksLikeServerId(const std::string& s) {
  if (s.size() <= 4 || s.compare(0, 4, "srv-") != 0) return false;
  for (size_t i = 4; i < s.size(); ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
  }
  return true;
}

int RunStop(AgentClient& client, const StopArgs& args) {
  StopServerRequest request;
  const int given =
      !args.id.empty() + !args.name.empty() + !args.labels.empty();
  if (given != 1) {
    return UsageError(
        "server stop takes a server ID or NAME, --name NAME, or --label "
        "KEY=VALUE selectors (exactly one of them)");
  }
  if (!args.name.empty()) {
    request.set_name(args.name);
  } else if (LooksLikeServerId(args.id)) {
    request.set_id(args.id);
  } else {
    request.set_name(args.id);
  }
  if (absl::Status s =
          ParseLabels(args.labels, request.mutable_label_selector());
      !s.ok()) {
    return UsageError(s.message());
  }
  request.set_close_connections(args.close_connections);
  StopServerResponse response;
  auto ctx = client.NewContext();
  grpc::Status status =
      client.agent().StopServer(ctx.get(), request, &response);
  if (!status.ok()) return client.Fail(status);
  const OutputFormat format = client.options().output;
  if (!PrintServers(std::cout, response, response.servers(), format,
                    TableView::kFull)) {
    return kExitFailure;
  }
  if (args.close_connections && format == OutputFormat::kTable) {
    std::cout << "connections closed: " << response.connections_closed()
              << "\n";
  }
  // A bulk stop lists a bounded number of servers: say how many there were
  // (on stderr, so the listing stays parseable).
  if (response.truncated() && format != OutputFormat::kJson &&
      format != OutputFormat::kYaml) {
    std::cerr << "servers stopped: " << response.servers_stopped()
              << " (listed: the first " << response.servers_size() << ")\n";
  }
  return kExitOk;
}

struct ListArgs {
  std::vector<std::string> labels;
  bool tcp = false;
  bool udp = false;
  bool unix_ = false;
  bool all = false;
  uint32_t page_size = 0;
};

absl::StatusOr<ListServersRequest> BuildListRequest(const ListArgs& args) {
  ListServersRequest request;
  if (absl::Status s =
          ParseLabels(args.labels, request.mutable_label_selector());
      !s.ok()) {
    return s;
  }
  if (args.tcp) request.set_transport(sockagent::v1::TRANSPORT_TCP);
  if (args.udp) request.set_transport(sockagent::v1::TRANSPORT_UDP);
  if (args.unix_) request.set_transport(sockagent::v1::TRANSPORT_UNIX);
  request.set_include_stopped(args.all);
  request.set_page_size(args.page_size);
  return request;
}

// How `server list` lists (socket_list.h): -o addr is a line per bound
// address.
const SocketList<ListServersRequest, ListServersResponse, sockagent::v1::Server>
    kServers = {&sockagent::v1::SocketAgent::Stub::ListServers,
                &ListServersResponse::servers,
                PrintServers,
                ServerHeader,
                ServerRow,
                ServerAddrLines};

void AddStart(CLI::App& server, Commands& commands) {
  auto args = std::make_shared<StartArgs>();
  CLI::App* start = server.add_subcommand(
      "start",
      "Start a server on the agent's host (StartServer) and print it; with -q "
      "only its id: id=$(sockctl server start -q --echo), with -o addr its "
      "bound address: addr=$(sockctl server start -o addr --echo)");
  start->footer(
      "Examples:\n"
      "  sockctl server start --echo --port 7000\n"
      "  sockctl server start --any --port www --greeting 'HTTP/1.0 200 "
      "OK\\r\\n\\r\\nhi' --close-after\n"
      "  sockctl server start --udp --echo --label team=sre\n"
      "  sockctl server start --unix /tmp/x.sock --discard\n"
      "  sockctl server start --unix /run/app/s.sock --replace-stale\n"
      "  sockctl server start --name web --echo --port 8080 --replace");
  CLI::Option* tcp = start->add_flag("--tcp", args->tcp, "TCP (the default)")
                         ->group("Transport");
  CLI::Option* udp =
      start->add_flag("--udp", args->udp, "UDP: one peer session per sender")
          ->group("Transport");
  args->unix_opt =
      start
          ->add_option("--unix", args->unix_path,
                       "UNIX stream socket at PATH ('@name': abstract)")
          ->type_name("PATH")
          ->group("Transport");
  tcp->excludes(udp)->excludes(args->unix_opt);
  udp->excludes(args->unix_opt);

  args->host_opt =
      start
          ->add_option("--host", args->host,
                       "Address or name to bind; \"\" = every address (dual "
                       "stack)")
          ->type_name("HOST")
          ->capture_default_str()
          ->group("Address");
  CLI::Option* any =
      start
          ->add_flag("--any", args->any,
                     "Every address, like --host \"\" (with -4/-6: of that "
                     "family only)")
          ->group("Address");
  CLI::Option* port =
      start
          ->add_option("--port", args->port,
                       "Port number or service name (www, ssh); 0 = pick one")
          ->type_name("PORT")
          ->capture_default_str()
          ->group("Address");
  CLI::Option* v4 =
      start->add_flag("-4", args->ipv4, "IPv4 only")->group("Address");
  CLI::Option* v6 =
      start->add_flag("-6", args->ipv6, "IPv6 only (default host ::1)")
          ->group("Address");
  any->excludes(args->host_opt);
  v4->excludes(v6);
  for (CLI::Option* o : {args->host_opt, any, port, v4, v6}) {
    o->excludes(args->unix_opt);
  }
  start
      ->add_option("--backlog", args->backlog,
                   "listen() backlog (default: the agent's, SOMAXCONN)")
      ->check(CLI::NonNegativeNumber)
      ->group("Address");
  start
      ->add_flag("--no-reuseaddr", args->no_reuseaddr,
                 "Do not set SO_REUSEADDR")
      ->group("Address");
  start
      ->add_flag("--replace-stale", args->replace_stale,
                 "With --unix: replace a socket file nobody listens on (left "
                 "by a killed process); never a live one or another file")
      ->group("Transport");

  CLI::Option* hold = start
                          ->add_flag("--hold", args->hold,
                                     "Keep connections open and buffer what "
                                     "arrives for recv (the default)")
                          ->group("Behaviour");
  CLI::Option* echo =
      start->add_flag("--echo", args->echo, "Write back every byte (datagram)")
          ->group("Behaviour");
  CLI::Option* discard =
      start->add_flag("--discard", args->discard, "Read, count, keep nothing")
          ->group("Behaviour");
  args->greeting_opt =
      start
          ->add_option("--greeting", args->greeting,
                       "Send TEXT on accept (UDP: in reply to each datagram), "
                       "then hold; escapes like \\r\\n, \\x00, \\\\ work")
          ->type_name("TEXT")
          ->group("Behaviour");
  args->greeting_hex_opt =
      start
          ->add_option("--greeting-hex", args->greeting_hex,
                       "The greeting as hex bytes, e.g. '48 69 0a'")
          ->type_name("HEX")
          ->group("Behaviour");
  start
      ->add_flag("--close-after", args->close_after,
                 "With a greeting: close once it is sent")
      ->group("Behaviour");
  CLI::Option* proxy_to =
      start
          ->add_option("--proxy-to", args->proxy_to,
                       "Relay each connection (UDP: each peer) to UPSTREAM, "
                       "HOST:PORT or unix:PATH, dialled by the agent")
          ->type_name("UPSTREAM")
          ->group("Behaviour");
  AddServerTlsOptions(start, args->tls);
  const std::vector<CLI::Option*> behaviours = {
      hold,    echo, discard, args->greeting_opt, args->greeting_hex_opt,
      proxy_to};
  for (size_t i = 0; i < behaviours.size(); ++i) {
    for (size_t j = i + 1; j < behaviours.size(); ++j) {
      behaviours[i]->excludes(behaviours[j]);
    }
  }

  start
      ->add_option("--label", args->labels,
                   "KEY=VALUE; repeat for more (accepted connections inherit "
                   "them)")
      ->type_name("KEY=VALUE")
      ->allow_extra_args(false)
      ->group("Lifetime");
  start->add_option("--ttl", args->ttl, "Stop by itself after D, e.g. 10m")
      ->type_name("D")
      ->group("Lifetime");
  start
      ->add_option("--idle-timeout", args->idle_timeout,
                   "Close accepted connections idle for D")
      ->type_name("D")
      ->group("Lifetime");
  start
      ->add_option("--name", args->name,
                   "Name the server (a DNS label, unique on the agent): the "
                   "same name and spec again answers the running server")
      ->type_name("NAME")
      ->group("Lifetime");
  start
      ->add_flag("--replace", args->replace,
                 "With --name: if a server of that name runs another spec, "
                 "stop it and start this one")
      ->group("Lifetime");
  start
      ->add_flag("--metrics", args->metrics,
                 "Export this server's own series on the agent's /metrics "
                 "(at most 64 servers at once)")
      ->group("Lifetime");
  start
      ->add_option("--max-sessions", args->max_sessions,
                   "UDP: peer sessions at most (default: the agent's)")
      ->needs(udp)
      ->group("UDP");
  start
      ->add_option("--session-idle", args->session_idle,
                   "UDP: a peer session idle for D expires (default: 60s)")
      ->type_name("D")
      ->needs(udp)
      ->group("UDP");
  commands.push_back(
      {start, [args](AgentClient& client) { return RunStart(client, *args); },
       nullptr, kSocketOutputs});
}

void AddStop(CLI::App& server, Commands& commands) {
  auto args = std::make_shared<StopArgs>();
  CLI::App* stop = server.add_subcommand(
      "stop",
      "Stop a server by ID or NAME, or every server matching --label "
      "selectors (StopServer); prints the stopped servers");
  stop->add_option("ID", args->id,
                   "Server id (srv-1) or name (web: the listening server of "
                   "that name)");
  stop->add_option("--name", args->name, "The listening server of this name")
      ->type_name("NAME");
  stop->add_option("--label", args->labels,
                   "KEY=VALUE the servers must carry; repeat for more")
      ->type_name("KEY=VALUE")
      ->allow_extra_args(false);
  stop->add_flag("--close-connections", args->close_connections,
                 "Also close (gracefully) the connections they accepted");
  commands.push_back(
      {stop, [args](AgentClient& client) { return RunStop(client, *args); },
       nullptr, kSocketOutputs});
}

void AddList(CLI::App& server, Commands& commands) {
  auto args = std::make_shared<ListArgs>();
  CLI::App* list = server.add_subcommand(
      "list", "List servers with their counters (ListServers, every page)");
  list->add_option("--label", args->labels,
                   "KEY=VALUE the servers must carry; repeat for more")
      ->type_name("KEY=VALUE")
      ->allow_extra_args(false);
  CLI::Option* tcp = list->add_flag("--tcp", args->tcp, "TCP servers only");
  CLI::Option* udp = list->add_flag("--udp", args->udp, "UDP servers only");
  CLI::Option* unix_ =
      list->add_flag("--unix", args->unix_, "UNIX servers only");
  tcp->excludes(udp)->excludes(unix_);
  udp->excludes(unix_);
  list->add_flag("--all", args->all, "Include stopped servers");
  list->add_option("--page-size", args->page_size,
                   "Servers per call (0: the agent's default, 100)");
  commands.push_back(
      {list,
       [args](AgentClient& client) {
         return RunSocketList(client, kServers, BuildListRequest(*args));
       },
       [args](Fleet& fleet) {
         return RunSocketListOnEvery(fleet, kServers, BuildListRequest(*args));
       },
       kSocketOutputs});
}

}  // namespace

void AddServerCommands(CLI::App& app, Commands& commands) {
  CLI::App* server = app.add_subcommand(
      "server", "Servers on the agent's host: start, stop, list");
  server->require_subcommand(1);
  AddStart(*server, commands);
  AddStop(*server, commands);
  AddList(*server, commands);
}

}  // namespace sockctl
