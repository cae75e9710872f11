// Verbs about connections: `client open` (OpenClient), `conn list`
// (ListConnections, also on every agent of a fleet) and `close`
// (CloseConnection). `connect` (cmd_stream.cc) shares the open options.
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
#include "absl/time/time.h"
#include "cli/args.h"
#include "cli/client.h"
#include "cli/commands.h"
#include "cli/fleet.h"
#include "cli/open_args.h"
#include "cli/proto_text.h"
#include "cli/socket_list.h"
#include "cli/socket_tables.h"

namespace sockctl {
namespace {

using sockagent::v1::CloseConnectionRequest;
using sockagent::v1::CloseConnectionResponse;
using sockagent::v1::ListConnectionsRequest;
using sockagent::v1::ListConnectionsResponse;
using sockagent::v1::OpenClientRequest;
using sockagent::v1::OpenClientResponse;

struct ClientOpenArgs {
  OpenArgs open;
};

int RunOpen(AgentClient& client, const ClientOpenArgs& args) {
  absl::StatusOr<OpenClientRequest> request =
      BuildOpenRequest(args.open, "client open");
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
  return PrintConnections(std::cout, response, opened, client.options().output,
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

// How `conn list` lists (socket_list.h): -o addr is "LOCAL REMOTE".
const SocketList<ListConnectionsRequest, ListConnectionsResponse,
                 sockagent::v1::Connection>
    kConnections = {&sockagent::v1::SocketAgent::Stub::ListConnections,
                    &ListConnectionsResponse::connections,
                    PrintConnections,
                    ConnectionHeader,
                    ConnectionRow,
                    ConnectionAddrLines};

struct CloseArgs {
  std::string id;
  std::vector<std::string> labels;
  bool abort = false;
  bool shutdown_write = false;
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
  const OutputFormat format = client.options().output;
  if (!PrintConnections(std::cout, response, response.connections(), format,
                        TableView::kFull)) {
    return kExitFailure;
  }
  // A bulk close lists a bounded number of connections: say how many there
  // were (on stderr, so the listing stays parseable).
  if (response.truncated() && format != OutputFormat::kJson &&
      format != OutputFormat::kYaml) {
    std::cerr << "connections closed: " << response.connections_closed()
              << " (listed: the first " << response.connections_size() << ")\n";
  }
  return kExitOk;
}

void AddShow(CLI::App* conn, Commands& commands);

void AddOpen(CLI::App& app, Commands& commands) {
  CLI::App* group = app.add_subcommand(
      "client", "Client connections from the agent's host: open");
  group->require_subcommand(1);
  auto args = std::make_shared<ClientOpenArgs>();
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
  AddOpenOptions(open, args->open);
  commands.push_back(
      {open, [args](AgentClient& client) { return RunOpen(client, *args); },
       nullptr, kSocketOutputs});
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
  commands.push_back({list,
                      [args](AgentClient& client) {
                        return RunSocketList(client, kConnections,
                                             BuildListRequest(*args));
                      },
                      [args](Fleet& fleet) {
                        return RunSocketListOnEvery(fleet, kConnections,
                                                    BuildListRequest(*args));
                      },
                      kSocketOutputs});
  AddShow(group, commands);
}

std::string FormatTimestamp(const google::protobuf::Timestamp& t) {
  return absl::FormatTime("%Y-%m-%d %H:%M:%S UTC",
                          absl::FromUnixSeconds(t.seconds()),
                          absl::UTCTimeZone());
}

// `conn show ID`: one connection with every detail (ListConnections by
// id): the counters and, for TLS, the handshake and the peer's chain.
int RunShow(AgentClient& client, const std::string& id) {
  ListConnectionsRequest request;
  request.set_id(id);
  ListConnectionsResponse response;
  auto ctx = client.NewContext();
  grpc::Status status =
      client.agent().ListConnections(ctx.get(), request, &response);
  if (!status.ok()) return client.Fail(status);
  if (client.options().output != OutputFormat::kTable ||
      response.connections_size() != 1) {
    return PrintConnections(std::cout, response, response.connections(),
                            client.options().output, TableView::kFull)
               ? kExitOk
               : kExitFailure;
  }
  const sockagent::v1::Connection& c = response.connections(0);
  if (!PrintConnections(std::cout, response, response.connections(),
                        OutputFormat::kTable, TableView::kFull)) {
    return kExitFailure;
  }
  if (!c.close_detail().empty()) {
    std::cout << "close detail: " << c.close_detail() << "\n";
  }
  if (!c.has_tls()) return kExitOk;
  const auto& t = c.tls();
  std::cout << "tls: " << (t.client() ? "client" : "server") << "\n";
  auto line = [](absl::string_view key, absl::string_view value) {
    if (!value.empty()) std::cout << "  " << key << ": " << value << "\n";
  };
  line("state", t.handshaking()      ? "handshaking"
                : t.handshake_done() ? "established"
                                     : "no handshake");
  line("failure", t.failure());
  line("version", t.version());
  line("cipher", t.cipher());
  line("alpn", t.alpn());
  line("sni", t.sni());
  line("resumed", t.resumed() ? "yes" : "no");
  line("verification", t.verification());
  line("truncated", t.truncated() ? "yes (no close_notify)" : "");
  std::cout << "  peer chain: " << t.peer_chain_length() << " certificate(s)\n";
  int i = 0;
  for (const auto& cert : t.peer_chain()) {
    std::cout << "  [" << i++ << "] subject: " << cert.subject() << "\n"
              << "      issuer: " << cert.issuer() << "\n";
    for (const std::string& san : cert.sans()) {
      std::cout << "      san: " << san << "\n";
    }
    std::cout << "      not before: " << FormatTimestamp(cert.not_before())
              << "\n      not after: " << FormatTimestamp(cert.not_after())
              << "\n      sha256: " << cert.sha256_fingerprint() << "\n";
    if (!cert.pem().empty()) std::cout << cert.pem();
  }
  return kExitOk;
}

void AddShow(CLI::App* conn, Commands& commands) {
  auto id = std::make_shared<std::string>();
  CLI::App* show = conn->add_subcommand(
      "show",
      "One connection with every detail: counters, close detail and, for "
      "TLS, version, cipher, ALPN, SNI, resumption, verification and the "
      "peer's certificate chain with PEM (-o json for all of it as JSON)");
  show->add_option("ID", *id, "Connection id, e.g. conn-1")->required();
  commands.push_back(
      {show, [id](AgentClient& client) { return RunShow(client, *id); },
       nullptr, kSocketOutputs});
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
  commands.push_back(
      {close, [args](AgentClient& client) { return RunClose(client, *args); },
       nullptr, kSocketOutputs});
}

}  // namespace

void AddConnectionCommands(CLI::App& app, Commands& commands) {
  AddOpen(app, commands);
  AddList(app, commands);
  AddClose(app, commands);
}

}  // namespace sockctl
