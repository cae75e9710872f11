// Verbs about names: `resolve` (getaddrinfo / getnameinfo on the agent, or
// on every agent of a fleet).
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

namespace sockctl {
namespace {

using sockagent::v1::Family;
using sockagent::v1::ResolveRequest;
using sockagent::v1::ResolveResponse;
using sockagent::v1::SocketType;

struct ResolveArgs {
  std::string host;
  std::string service;
  bool ipv4 = false;
  bool ipv6 = false;
  std::string family = "any";
  std::string type = "any";
  bool canonname = false;
  bool numeric_host = false;
  bool numeric_service = false;
  bool passive = false;
  bool addrconfig = false;
  bool reverse = false;
  bool name_required = false;
};

Family ToFamily(const ResolveArgs& args) {
  if (args.ipv4 || args.family == "ipv4") return sockagent::v1::FAMILY_IPV4;
  if (args.ipv6 || args.family == "ipv6") return sockagent::v1::FAMILY_IPV6;
  return sockagent::v1::FAMILY_UNSPECIFIED;
}

SocketType ToSocketType(const std::string& type) {
  if (type == "stream") return sockagent::v1::SOCKET_TYPE_STREAM;
  if (type == "dgram") return sockagent::v1::SOCKET_TYPE_DGRAM;
  if (type == "raw") return sockagent::v1::SOCKET_TYPE_RAW;
  return sockagent::v1::SOCKET_TYPE_UNSPECIFIED;
}

ResolveRequest BuildRequest(const ResolveArgs& args) {
  ResolveRequest request;
  request.set_host(args.host);
  request.set_service(args.service);
  request.set_family(ToFamily(args));
  request.set_socket_type(ToSocketType(args.type));
  request.set_canonical_name(args.canonname);
  request.set_numeric_host(args.numeric_host);
  request.set_numeric_service(args.numeric_service);
  request.set_passive(args.passive);
  request.set_address_config(args.addrconfig);
  request.set_reverse(args.reverse);
  request.set_name_required(args.name_required);
  return request;
}

grpc::Status CallResolve(AgentClient& client, const ResolveRequest& request,
                         ResolveResponse* response) {
  auto ctx = client.NewContext();
  return client.agent().Resolve(ctx.get(), request, response);
}

// A reverse lookup's answer: the name, then the service's name when one was
// asked for and found.
std::vector<std::string> ReverseCells(const ResolveArgs& args,
                                      const ResolveResponse& response) {
  std::vector<std::string> cells = {response.reverse_host()};
  if (!args.service.empty() && !response.reverse_service().empty()) {
    cells.push_back(response.reverse_service());
  }
  return cells;
}

const std::vector<std::string>& EntryHeader() {
  static const auto* const kHeader = new std::vector<std::string>{
      "FAMILY", "TYPE", "PROTO", "CANONNAME", "ADDRESS", "PORT"};
  return *kHeader;
}

std::vector<std::vector<std::string>> EntryRows(
    const ResolveResponse& response) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& entry : response.entries()) {
    rows.push_back(
        {FamilyName(entry.family()), SocketTypeName(entry.socket_type()),
         entry.protocol_name().empty() ? absl::StrCat(entry.protocol())
                                       : entry.protocol_name(),
         entry.canonical_name(), entry.address(), absl::StrCat(entry.port())});
  }
  return rows;
}

// -o addr: each entry's address and port as one dials it,
// "127.0.0.1:80", "[::1]:80".
std::vector<std::string> AddrLines(const ResolveResponse& response) {
  std::vector<std::string> lines;
  for (const auto& entry : response.entries()) {
    lines.push_back(
        entry.address().find(':') == std::string::npos
            ? absl::StrCat(entry.address(), ":", entry.port())
            : absl::StrCat("[", entry.address(), "]:", entry.port()));
  }
  return lines;
}

// A reverse lookup answers a name, not addresses.
int CheckOutput(const ResolveArgs& args, OutputFormat format) {
  if (args.reverse && format == OutputFormat::kAddr) {
    return UsageError(
        "resolve -r prints a name, not addresses: it takes -o "
        "table|json|yaml");
  }
  return kExitOk;
}

int RunResolve(AgentClient& client, const ResolveArgs& args) {
  if (int rc = CheckOutput(args, client.options().output); rc != kExitOk) {
    return rc;
  }
  ResolveResponse response;
  grpc::Status status = CallResolve(client, BuildRequest(args), &response);
  if (!status.ok()) return client.Fail(status);

  const OutputFormat format = client.options().output;
  if (format == OutputFormat::kJson || format == OutputFormat::kYaml) {
    return PrintStructured(std::cout, response, format) ? kExitOk
                                                        : kExitFailure;
  }
  if (format == OutputFormat::kAddr) {
    for (const std::string& line : AddrLines(response)) {
      std::cout << line << "\n";
    }
    return kExitOk;
  }
  if (args.reverse) {
    std::cout << absl::StrJoin(ReverseCells(args, response), " ") << "\n";
    return kExitOk;
  }
  Table table(EntryHeader());
  for (auto& row : EntryRows(response)) table.AddRow(std::move(row));
  table.Print(std::cout);
  return kExitOk;
}

int RunResolveOnEvery(Fleet& fleet, const ResolveArgs& args) {
  if (int rc = CheckOutput(args, fleet.output()); rc != kExitOk) return rc;
  const ResolveRequest request = BuildRequest(args);
  const bool addr = fleet.output() == OutputFormat::kAddr;
  std::vector<std::string> header = EntryHeader();
  if (addr) {
    header.clear();  // "AGENT ADDRESS" lines.
  } else if (args.reverse) {
    header = {"HOST"};
    if (!args.service.empty()) header.push_back("SERVICE");
  }
  return RunOnEveryAgent(
      fleet, header, [&](AgentClient& client, AgentOutput& out) {
        auto response = std::make_unique<ResolveResponse>();
        grpc::Status s = CallResolve(client, request, response.get());
        if (addr) {
          for (std::string& line : AddrLines(*response)) {
            out.rows.push_back({std::move(line)});
          }
        } else if (args.reverse) {
        } else {
          out.rows = EntryRows(*response);
        }
        out.response = std::move(response);
        return s;
      });
}

}  // namespace

void AddNameCommands(CLI::App& app, Commands& commands) {
  auto args = std::make_shared<ResolveArgs>();
  CLI::App* resolve = app.add_subcommand(
      "resolve",
      "Resolve HOST [SERVICE] on the agent (getaddrinfo), or with -r an "
      "address back to a name (getnameinfo)");
  resolve->add_option("HOST", args->host, "Host name or address")->required();
  resolve->add_option("SERVICE", args->service,
                      "Service name (e.g. www) or port number");
  CLI::Option* v4 =
      resolve->add_flag("-4", args->ipv4, "IPv4 only (--family ipv4)");
  CLI::Option* v6 =
      resolve->add_flag("-6", args->ipv6, "IPv6 only (--family ipv6)");
  CLI::Option* family =
      resolve->add_option("--family", args->family, "Address family")
          ->check(CLI::IsMember({"any", "ipv4", "ipv6"}))
          ->capture_default_str();
  v4->excludes(v6)->excludes(family);
  v6->excludes(family);
  resolve->add_option("--type", args->type, "Socket type")
      ->check(CLI::IsMember({"stream", "dgram", "raw", "any"}))
      ->capture_default_str();
  resolve->add_flag("--canonname", args->canonname,
                    "Ask for the canonical name (AI_CANONNAME)");
  resolve->add_flag("--numeric-host", args->numeric_host,
                    "HOST must be an address, no lookup (AI_NUMERICHOST)");
  resolve->add_flag("--numeric-service", args->numeric_service,
                    "SERVICE must be a port number (AI_NUMERICSERV)");
  resolve->add_flag("--passive", args->passive,
                    "Wildcard addresses for bind (AI_PASSIVE)");
  resolve->add_flag("--addrconfig", args->addrconfig,
                    "Only families the host has addresses for (AI_ADDRCONFIG)");
  CLI::Option* reverse = resolve->add_flag(
      "-r,--reverse", args->reverse,
      "Reverse lookup: HOST is an address; prints its name (and SERVICE's "
      "name)");
  resolve
      ->add_flag("--name-required", args->name_required,
                 "With -r: fail with NOT_FOUND when the address has no name "
                 "(NI_NAMEREQD)")
      ->needs(reverse);
  commands.push_back(
      {resolve,
       [args](AgentClient& client) { return RunResolve(client, *args); },
       [args](Fleet& fleet) { return RunResolveOnEvery(fleet, *args); },
       OutputForms{OutputFormat::kTable, OutputFormat::kJson,
                   OutputFormat::kYaml, OutputFormat::kAddr}});
}

}  // namespace sockctl
