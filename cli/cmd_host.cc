// Verbs about the agent's host and the agent itself: `hostname`, `info`
// (both GetHostInfo) and `health` (grpc.health.v1.Health/Check). Each also
// runs on every agent of a fleet, one row per agent.
#include <CLI/CLI.hpp>
#include <iostream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cli/client.h"
#include "cli/commands.h"
#include "cli/fleet.h"
#include "cli/output.h"
#include "cli/proto_text.h"
#include "sockctl/output.pb.h"

namespace sockctl {
namespace {

using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;
using sockagent::v1::GetHostInfoRequest;
using sockagent::v1::HostInfo;

grpc::Status FetchHostInfo(AgentClient& client, HostInfo* info) {
  auto ctx = client.NewContext();
  return client.agent().GetHostInfo(ctx.get(), GetHostInfoRequest(), info);
}

// `hostname -o json`: just the name, as {"hostname":"..."}; `info -o json`
// has the rest.
std::unique_ptr<sockctl::output::Hostname> HostnameMessage(
    const HostInfo& info) {
  auto message = std::make_unique<sockctl::output::Hostname>();
  message->set_hostname(info.hostname());
  return message;
}

bool Structured(const AgentClient& client) {
  return client.options().output != OutputFormat::kTable;
}

int RunHostname(AgentClient& client) {
  HostInfo info;
  if (grpc::Status s = FetchHostInfo(client, &info); !s.ok()) {
    return client.Fail(s);
  }
  if (Structured(client)) {
    return PrintStructured(std::cout, *HostnameMessage(info),
                           client.options().output)
               ? kExitOk
               : kExitFailure;
  }
  std::cout << info.hostname() << "\n";
  return kExitOk;
}

int RunHostnameOnEvery(Fleet& fleet) {
  return RunOnEveryAgent(fleet, {"HOSTNAME"},
                         [](AgentClient& client, AgentOutput& out) {
                           HostInfo info;
                           grpc::Status s = FetchHostInfo(client, &info);
                           out.rows.push_back({info.hostname()});
                           out.response = HostnameMessage(info);
                           return s;
                         });
}

void PrintHostInfo(const HostInfo& info) {
  PrintFields(std::cout, {{"hostname", info.hostname()},
                          {"fqdn", info.fqdn()},
                          {"os", info.os()},
                          {"agent version", info.agent_version()},
                          {"pid", absl::StrCat(info.pid())},
                          {"uptime", FormatUptime(FromProto(info.uptime()))}});
  const auto& l = info.limits();
  std::cout << "limits:\n";
  PrintFields(
      std::cout,
      {{"max servers", absl::StrCat(l.max_servers())},
       {"max connections", absl::StrCat(l.max_connections())},
       {"recv buffer", FormatBytes(l.recv_buffer_bytes())},
       {"send buffer", FormatBytes(l.send_buffer_bytes())},
       {"max send", FormatBytes(l.max_send_bytes())},
       {"max udp sessions per server",
        absl::StrCat(l.max_udp_sessions_per_server())},
       {"closed connections kept", absl::StrCat(l.closed_connections_kept())},
       {"max message", FormatBytes(l.max_message_bytes())},
       {"max watchers", absl::StrCat(l.max_watchers())},
       {"watch queue events", absl::StrCat(l.watch_queue_events())},
       {"max total buffered", FormatBytes(l.max_total_buffered_bytes())}},
      /*indent=*/2);
  std::cout << "\n";
  Table table({"NAME", "INDEX", "FLAGS", "MTU", "ADDRESSES"});
  for (const auto& iface : info.interfaces()) {
    std::vector<std::string> addresses;
    for (const auto& a : iface.addresses()) {
      addresses.push_back(absl::StrCat(a.address(), "/", a.prefix_length()));
    }
    table.AddRow({iface.name(), absl::StrCat(iface.index()),
                  absl::StrJoin(iface.flags(), ","), absl::StrCat(iface.mtu()),
                  absl::StrJoin(addresses, ",")});
  }
  table.Print(std::cout);
}

int RunInfo(AgentClient& client) {
  HostInfo info;
  if (grpc::Status s = FetchHostInfo(client, &info); !s.ok()) {
    return client.Fail(s);
  }
  if (Structured(client)) {
    return PrintStructured(std::cout, info, client.options().output)
               ? kExitOk
               : kExitFailure;
  }
  PrintHostInfo(info);
  return kExitOk;
}

// The addresses other hosts may reach this one at: those of every interface
// that is not a loopback.
std::string ReachableAddresses(const HostInfo& info) {
  std::vector<std::string> addresses;
  for (const auto& iface : info.interfaces()) {
    bool loopback = false;
    for (const std::string& flag : iface.flags())
      loopback |= flag == "LOOPBACK";
    if (loopback) continue;
    for (const auto& a : iface.addresses()) addresses.push_back(a.address());
  }
  return absl::StrJoin(addresses, ",");
}

// Several agents: one summary row each; --json has everything.
int RunInfoOnEvery(Fleet& fleet) {
  return RunOnEveryAgent(
      fleet, {"HOSTNAME", "OS", "VERSION", "PID", "UPTIME", "ADDRESSES"},
      [](AgentClient& client, AgentOutput& out) {
        auto info = std::make_unique<HostInfo>();
        grpc::Status s = FetchHostInfo(client, info.get());
        out.rows.push_back({info->hostname(), info->os(), info->agent_version(),
                            absl::StrCat(info->pid()),
                            FormatUptime(FromProto(info->uptime())),
                            ReachableAddresses(*info)});
        out.response = std::move(info);
        return s;
      });
}

grpc::Status CheckHealth(AgentClient& client, const std::string& service,
                         HealthCheckResponse* response) {
  HealthCheckRequest request;
  request.set_service(service);
  auto ctx = client.NewContext();
  return client.health().Check(ctx.get(), request, response);
}

std::string ServingStatusName(const HealthCheckResponse& response) {
  std::string name = HealthCheckResponse::ServingStatus_Name(response.status());
  // A newer server may answer a status this CLI does not know.
  if (name.empty()) name = absl::StrCat(response.status());
  return name;
}

int HealthVerdict(const HealthCheckResponse& response) {
  return response.status() == HealthCheckResponse::SERVING ? kExitOk
                                                           : kExitFailure;
}

int RunHealth(AgentClient& client, const std::string& service) {
  HealthCheckResponse response;
  grpc::Status status = CheckHealth(client, service, &response);
  if (!status.ok()) return client.Fail(status);
  if (Structured(client)) {
    if (!PrintStructured(std::cout, response, client.options().output)) {
      return kExitFailure;
    }
  } else {
    std::cout << ServingStatusName(response) << "\n";
  }
  return HealthVerdict(response);
}

int RunHealthOnEvery(Fleet& fleet, const std::string& service) {
  return RunOnEveryAgent(
      fleet, {"STATUS"}, [&service](AgentClient& client, AgentOutput& out) {
        auto response = std::make_unique<HealthCheckResponse>();
        grpc::Status s = CheckHealth(client, service, response.get());
        out.rows.push_back({ServingStatusName(*response)});
        out.exit_code = HealthVerdict(*response);
        out.response = std::move(response);
        return s;
      });
}

}  // namespace

void AddHostCommands(CLI::App& app, Commands& commands) {
  CLI::App* hostname = app.add_subcommand(
      "hostname",
      "Print the agent host's name (like socket.gethostname()); with -o json "
      "{\"hostname\":NAME}");
  commands.push_back(
      {hostname, RunHostname, RunHostnameOnEvery, kStructuredOutputs});

  CLI::App* info = app.add_subcommand(
      "info",
      "Show the agent's host: names, OS, agent version, uptime, limits and "
      "network interfaces");
  commands.push_back({info, RunInfo, RunInfoOnEvery, kStructuredOutputs});

  auto service = std::make_shared<std::string>();
  CLI::App* health = app.add_subcommand(
      "health",
      "Check the agent's health (grpc.health.v1); prints SERVING, "
      "NOT_SERVING, ...; exit 0 only when SERVING, else 1");
  health->add_option("--service", *service,
                     "Service to check (default: \"\", the whole agent)");
  commands.push_back(
      {health,
       [service](AgentClient& client) { return RunHealth(client, *service); },
       [service](Fleet& fleet) { return RunHealthOnEvery(fleet, *service); },
       kStructuredOutputs});
}

}  // namespace sockctl
