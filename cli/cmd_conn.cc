// Verbs about connections: `client open` (OpenClient), `conn list`
// (ListConnections, also on every agent of a fleet) and `close`
// (CloseConnection). The verb `connect` is
// kept free for an interactive, streaming client.
#include <CLI/CLI.hpp>
#include <cstdint>
#include <iostream>
#include <memory>
#include <optional>
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
#include "cli/paging.h"
#include "cli/proto_text.h"
#include "cli/socket_tables.h"

namespace sockctl {
namespace {

using sockagent::v1::CloseConnectionRequest;
using sockagent::v1::CloseConnectionResponse;
using sockagent::v1::ListConnectionsRequest;
using sockagent::v1::ListConnectionsResponse;
using sockagent::v1::OpenClientRequest;
using sockagent::v1::OpenClientResponse;

struct OpenArgs {
  std::string host;
  std::string port;
  bool tcp = false;
  bool udp = false;
  std::string unix_path;
  bool ipv4 = false;
  bool ipv6 = false;
  std::string connect_timeout;
  std::string source;
  bool nodelay = false;
  bool keepalive = false;
  std::string keepalive_idle;
  std::string keepalive_interval;
  uint32_t keepalive_count = 0;
  std::vector<std::string> labels;
  std::string ttl;
  std::string idle_timeout;
  bool quiet = false;
  CLI::Option* unix_opt = nullptr;
};

absl::Status BuildRemote(const OpenArgs& args, OpenClientRequest& request) {
  auto* remote = request.mutable_remote();
  if (args.unix_opt->count() > 0) {
    if (!args.host.empty() || !args.port.empty()) {
      return absl::InvalidArgumentError(
          "with --unix PATH give no HOST or PORT");
    }
    if (args.unix_path.empty()) {
      return absl::InvalidArgumentError("--unix needs a socket path");
    }
    request.set_transport(sockagent::v1::TRANSPORT_UNIX);
    remote->set_unix_path(args.unix_path);
    return absl::OkStatus();
  }
  request.set_transport(args.udp ? sockagent::v1::TRANSPORT_UDP
                                 : sockagent::v1::TRANSPORT_TCP);
  if (args.host.empty()) {
    return absl::InvalidArgumentError(
        "client open needs HOST PORT (or --unix PATH)");
  }
  // HOST may also be HOST:PORT or [IPV6]:PORT, or [IPV6] before PORT.
  absl::StatusOr<bool> has_port = ParseHostPort(args.host, remote);
  if (!has_port.ok()) return has_port.status();
  if (*has_port && !args.port.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the port is given twice: in '", args.host, "' and as '",
                     args.port, "'"));
  }
  if (!*has_port) {
    if (args.port.empty()) {
      return absl::InvalidArgumentError(
          "client open needs a PORT (a number or a service name such as "
          "www)");
    }
    if (absl::Status s = ParsePort(args.port, remote); !s.ok()) return s;
  }
  if (remote->host().empty()) {
    return absl::InvalidArgumentError("empty HOST");
  }
  return absl::OkStatus();
}

absl::StatusOr<OpenClientRequest> BuildOpenRequest(const OpenArgs& args) {
  OpenClientRequest request;
  if (absl::Status s = BuildRemote(args, request); !s.ok()) return s;
  if (args.ipv4) request.set_family(sockagent::v1::FAMILY_IPV4);
  if (args.ipv6) request.set_family(sockagent::v1::FAMILY_IPV6);
  if (!args.source.empty()) {
    absl::StatusOr<bool> has_port =
        ParseHostPort(args.source, request.mutable_source());
    if (!has_port.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid --source: ", has_port.status().message()));
    }
  }
  request.set_tcp_nodelay(args.nodelay);
  auto* keepalive = request.mutable_keepalive();
  // Any keepalive setting turns keepalive on.
  keepalive->set_enable(args.keepalive || !args.keepalive_idle.empty() ||
                        !args.keepalive_interval.empty() ||
                        args.keepalive_count > 0);
  keepalive->set_count(args.keepalive_count);
  for (absl::Status s : {
           ParseDurationFlag("--connect-timeout", args.connect_timeout,
                             request.mutable_connect_timeout()),
           ParseDurationFlag("--keepalive-idle", args.keepalive_idle,
                             keepalive->mutable_idle()),
           ParseDurationFlag("--keepalive-interval", args.keepalive_interval,
                             keepalive->mutable_interval()),
           ParseDurationFlag("--ttl", args.ttl, request.mutable_ttl()),
           ParseDurationFlag("--idle-timeout", args.idle_timeout,
                             request.mutable_idle_timeout()),
       }) {
    if (!s.ok()) return s;
  }
  if (!keepalive->enable()) request.clear_keepalive();
  if (absl::Status s = ParseLabels(args.labels, request.mutable_labels());
      !s.ok()) {
    return s;
  }
  return request;
}

int RunOpen(AgentClient& client, const OpenArgs& args) {
  absl::StatusOr<OpenClientRequest> request = BuildOpenRequest(args);
  if (!request.ok()) return UsageError(request.status().message());
  OpenClientResponse response;
  // A connect timeout longer than --timeout is not cut short by the call.
  auto ctx = request->has_connect_timeout()
                 ? client.NewContext(FromProto(request->connect_timeout()) +
                                     kWaitSlack)
                 : client.NewContext();
  grpc::Status status =
      client.agent().OpenClient(ctx.get(), *request, &response);
  if (!status.ok()) return client.Fail(status);
  google::protobuf::RepeatedPtrField<sockagent::v1::Connection> opened;
  *opened.Add() = response.connection();
  return PrintConnections(std::cout, response, opened,
                          {.json = client.options().json, .quiet = args.quiet},
                          TableView::kBrief)
             ? kExitOk
             : kExitFailure;
}

struct ListArgs {
  std::string server;
  std::vector<std::string> labels;
  std::vector<std::string> states;
  bool all = false;
  bool tcp = false;
  bool udp = false;
  bool unix_ = false;
  uint32_t page_size = 0;
  bool quiet = false;
};

absl::StatusOr<ListConnectionsRequest> BuildListRequest(const ListArgs& args) {
  ListConnectionsRequest request;
  request.set_server_id(args.server);
  if (absl::Status s =
          ParseLabels(args.labels, request.mutable_label_selector());
      !s.ok()) {
    return s;
  }
  for (const std::string& word : args.states) {
    std::optional<sockagent::v1::ConnectionState> state =
        ParseConnectionState(word);
    if (!state.has_value()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "invalid --state '", word,
          "': expected open, peer-closed, local-closed or closed"));
    }
    request.add_states(*state);
    // Closed connections live in the history: asking for them means it.
    if (*state == sockagent::v1::CONNECTION_STATE_CLOSED) {
      request.set_include_closed(true);
    }
  }
  if (args.all) request.set_include_closed(true);
  if (args.tcp) request.set_transport(sockagent::v1::TRANSPORT_TCP);
  if (args.udp) request.set_transport(sockagent::v1::TRANSPORT_UDP);
  if (args.unix_) request.set_transport(sockagent::v1::TRANSPORT_UNIX);
  request.set_page_size(args.page_size);
  return request;
}

int RunList(AgentClient& client, const ListArgs& args) {
  absl::StatusOr<ListConnectionsRequest> request = BuildListRequest(args);
  if (!request.ok()) return UsageError(request.status().message());
  ListConnectionsResponse all;
  if (grpc::Status s = ListAllPages(
          client, *request, &sockagent::v1::SocketAgent::Stub::ListConnections,
          &all);
      !s.ok()) {
    return client.Fail(s);
  }
  return PrintConnections(std::cout, all, all.connections(),
                          {.json = client.options().json, .quiet = args.quiet},
                          TableView::kFull)
             ? kExitOk
             : kExitFailure;
}

// -q prints "AGENT ID" lines: an id alone does not say whose it is.
int RunListOnEvery(Fleet& fleet, const ListArgs& args) {
  absl::StatusOr<ListConnectionsRequest> request = BuildListRequest(args);
  if (!request.ok()) return UsageError(request.status().message());
  return RunOnEveryAgent(
      fleet,
      args.quiet ? std::vector<std::string>{}
                 : ConnectionHeader(TableView::kFull),
      [&](AgentClient& client, AgentOutput& out) {
        auto all = std::make_unique<ListConnectionsResponse>();
        grpc::Status s = ListAllPages(
            client, *request,
            &sockagent::v1::SocketAgent::Stub::ListConnections, all.get());
        for (const auto& connection : all->connections()) {
          out.rows.push_back(args.quiet
                                 ? std::vector<std::string>{connection.id()}
                                 : ConnectionRow(connection, TableView::kFull));
        }
        out.json = std::move(all);
        return s;
      });
}

struct CloseArgs {
  std::string id;
  std::vector<std::string> labels;
  bool abort = false;
  bool shutdown_write = false;
  bool quiet = false;
};

int RunClose(AgentClient& client, const CloseArgs& args) {
  if (args.id.empty() == args.labels.empty()) {
    return UsageError(
        "close takes either a connection ID or --label KEY=VALUE selectors "
        "(exactly one of them)");
  }
  CloseConnectionRequest request;
  request.set_id(args.id);
  if (absl::Status s =
          ParseLabels(args.labels, request.mutable_label_selector());
      !s.ok()) {
    return UsageError(s.message());
  }
  request.set_mode(args.abort ? sockagent::v1::CLOSE_MODE_ABORT
                   : args.shutdown_write
                       ? sockagent::v1::CLOSE_MODE_SHUTDOWN_WRITE
                       : sockagent::v1::CLOSE_MODE_GRACEFUL);
  CloseConnectionResponse response;
  auto ctx = client.NewContext();
  grpc::Status status =
      client.agent().CloseConnection(ctx.get(), request, &response);
  if (!status.ok()) return client.Fail(status);
  return PrintConnections(std::cout, response, response.connections(),
                          {.json = client.options().json, .quiet = args.quiet},
                          TableView::kFull)
             ? kExitOk
             : kExitFailure;
}

void AddOpen(CLI::App& app, Commands& commands) {
  CLI::App* group = app.add_subcommand(
      "client", "Client connections from the agent's host: open");
  group->require_subcommand(1);
  auto args = std::make_shared<OpenArgs>();
  CLI::App* open = group->add_subcommand(
      "open",
      "Connect from the agent's host to HOST PORT (OpenClient) and print the "
      "connection; with -q only its id: id=$(sockctl client open -q HOST "
      "PORT)");
  open->footer(
      "Examples:\n"
      "  sockctl client open 127.0.0.1 80\n"
      "  sockctl client open -6 localhost www --nodelay\n"
      "  sockctl client open '[::1]:7000' --source '[::1]:40000'\n"
      "  sockctl client open --udp 127.0.0.1 53\n"
      "  sockctl client open --unix /run/app.sock");
  open->add_option("HOST", args->host,
                   "Host name or address (also HOST:PORT, [IPV6]:PORT)");
  open->add_option("PORT", args->port, "Port number or service name (www)");
  CLI::Option* tcp = open->add_flag("--tcp", args->tcp, "TCP (the default)")
                         ->group("Transport");
  CLI::Option* udp =
      open->add_flag("--udp", args->udp, "UDP (a connected UDP socket)")
          ->group("Transport");
  args->unix_opt = open->add_option("--unix", args->unix_path,
                                    "UNIX stream socket at PATH (no HOST "
                                    "PORT; '@name': abstract)")
                       ->type_name("PATH")
                       ->group("Transport");
  tcp->excludes(udp)->excludes(args->unix_opt);
  udp->excludes(args->unix_opt);
  CLI::Option* v4 =
      open->add_flag("-4", args->ipv4, "IPv4 only")->group("Connect");
  CLI::Option* v6 =
      open->add_flag("-6", args->ipv6, "IPv6 only")->group("Connect");
  v4->excludes(v6);
  open->add_option("--connect-timeout", args->connect_timeout,
                   "Give up connecting after D (default: the agent's, 10s, "
                   "within --timeout)")
      ->type_name("D")
      ->group("Connect");
  open->add_option("--source", args->source,
                   "Bind to HOST[:PORT] first ([IPV6]:PORT, :PORT)")
      ->type_name("ADDR")
      ->group("Connect");
  open->add_flag("--nodelay", args->nodelay, "TCP_NODELAY")->group("Socket");
  open->add_flag("--keepalive", args->keepalive, "SO_KEEPALIVE")
      ->group("Socket");
  open->add_option("--keepalive-idle", args->keepalive_idle,
                   "TCP_KEEPIDLE (implies --keepalive)")
      ->type_name("D")
      ->group("Socket");
  open->add_option("--keepalive-interval", args->keepalive_interval,
                   "TCP_KEEPINTVL (implies --keepalive)")
      ->type_name("D")
      ->group("Socket");
  open->add_option("--keepalive-count", args->keepalive_count,
                   "TCP_KEEPCNT (implies --keepalive)")
      ->check(CLI::PositiveNumber)
      ->group("Socket");
  open->add_option("--label", args->labels, "KEY=VALUE; repeat for more")
      ->type_name("KEY=VALUE")
      ->allow_extra_args(false)
      ->group("Lifetime");
  open->add_option("--ttl", args->ttl, "Close by itself after D")
      ->type_name("D")
      ->group("Lifetime");
  open->add_option("--idle-timeout", args->idle_timeout,
                   "Close after D without a byte either way")
      ->type_name("D")
      ->group("Lifetime");
  open->add_flag("-q,--quiet", args->quiet, "Print only the connection id");
  commands.push_back(
      {open, [args](AgentClient& client) { return RunOpen(client, *args); }});
}

void AddList(CLI::App& app, Commands& commands) {
  CLI::App* group =
      app.add_subcommand("conn", "Connections on the agent's host: list");
  group->require_subcommand(1);
  auto args = std::make_shared<ListArgs>();
  CLI::App* list = group->add_subcommand(
      "list",
      "List connections and UDP peer sessions with their counters "
      "(ListConnections, every page); open ones unless --all or --state");
  list->add_option("--server", args->server,
                   "Only those accepted by (UDP: peers of) this server id")
      ->type_name("ID");
  list->add_option("--label", args->labels,
                   "KEY=VALUE the connections must carry; repeat for more")
      ->type_name("KEY=VALUE")
      ->allow_extra_args(false);
  list->add_option("--state", args->states,
                   "open, peer-closed, local-closed or closed; repeat or "
                   "comma-separate for more")
      ->type_name("STATE")
      ->delimiter(',')
      ->allow_extra_args(false);
  list->add_flag("--all", args->all,
                 "Include recently closed connections (the agent's history)");
  CLI::Option* tcp = list->add_flag("--tcp", args->tcp, "TCP only");
  CLI::Option* udp = list->add_flag("--udp", args->udp, "UDP only");
  CLI::Option* unix_ = list->add_flag("--unix", args->unix_, "UNIX only");
  tcp->excludes(udp)->excludes(unix_);
  udp->excludes(unix_);
  list->add_option("--page-size", args->page_size,
                   "Connections per call (0: the agent's default, 100)");
  list->add_flag("-q,--quiet", args->quiet, "Print only the ids");
  commands.push_back(
      {list, [args](AgentClient& client) { return RunList(client, *args); },
       [args](Fleet& fleet) { return RunListOnEvery(fleet, *args); }});
}

void AddClose(CLI::App& app, Commands& commands) {
  auto args = std::make_shared<CloseArgs>();
  CLI::App* close = app.add_subcommand(
      "close",
      "Close a connection by ID, or every connection matching --label "
      "selectors (CloseConnection): graceful (flush, FIN) by default");
  close->add_option("ID", args->id, "Connection id, e.g. conn-1");
  close
      ->add_option("--label", args->labels,
                   "KEY=VALUE the connections must carry; repeat for more")
      ->type_name("KEY=VALUE")
      ->allow_extra_args(false);
  CLI::Option* abort = close->add_flag("--abort", args->abort,
                                       "Reset: RST, buffered bytes discarded");
  CLI::Option* shutdown = close->add_flag(
      "--shutdown-write", args->shutdown_write,
      "Half-close: flush, FIN, keep reading (recv still works)");
  abort->excludes(shutdown);
  close->add_flag("-q,--quiet", args->quiet, "Print only the ids");
  commands.push_back(
      {close, [args](AgentClient& client) { return RunClose(client, *args); }});
}

}  // namespace

void AddConnectionCommands(CLI::App& app, Commands& commands) {
  AddOpen(app, commands);
  AddList(app, commands);
  AddClose(app, commands);
}

}  // namespace sockctl
