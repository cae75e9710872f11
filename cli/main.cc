// sockctl: drives sockagentd agents over their gRPC API.
//
//   sockctl [--agent HOST:PORT]... [--inventory FILE] [--timeout 5s] [--json]
//           VERB [ARGS...]
//
// Global options may come before or after the verb. --agent defaults to
// $SOCKAGENT_ADDR, else 127.0.0.1:7878. The bearer token sent on every call
// as `authorization: Bearer <token>` comes from the agent's token-file= in
// the inventory, else --token-file, else $SOCKAGENT_TOKEN.
//
// Several agents (--agent repeated, or an inventory; format in inventory.h
// and `sockctl --help`): info, hostname, health, resolve, server list and
// conn list run on every agent at once and print one table with an AGENT
// column in front, or with --json one line per agent; `matrix` probes every
// pair. The other verbs act on one agent and refuse more.
//
// Exit codes (also in `sockctl --help`):
//   0       success
//   1       `health`: the service is not SERVING; `recv`: --exactly or
//           --until not met (nothing within --wait, or the stream ended
//           short); `matrix`: not every cell as expected (or output failed)
//   2       usage error: unknown verb or flag, bad --agent or --timeout, ...
//   3       cannot reach the agent (refused, unreachable, no answer within
//           --timeout before a connection was made)
//   10 + N  the call failed with gRPC status code N, e.g. 13 INVALID_ARGUMENT,
//           14 DEADLINE_EXCEEDED, 15 NOT_FOUND, 22 UNIMPLEMENTED,
//           24 UNAVAILABLE (answered by the agent), 26 UNAUTHENTICATED
//   130     `matrix` interrupted (SIGINT/SIGTERM), after its cleanup
// With several agents, the code is the first failed agent's (in the order
// given). Errors print one line to stderr: `sockctl: NOT_FOUND: <agent's
// message>`, or `sockctl: cannot reach agent at ADDR: <gRPC's message>`; for
// one agent of several `sockctl: NAME: CODE: <message>`.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "cli/args.h"
#include "cli/client.h"
#include "cli/commands.h"
#include "cli/fleet.h"
#include "cli/inventory.h"

namespace sockctl {
namespace {

constexpr char kFooter[] =
    R"(Global options (--agent, --inventory, --token-file, --timeout, --json;
see sockctl --help) may be given before or after the verb.

Several agents: repeat --agent (each agent is named by its address) or give
--inventory FILE. Then info, hostname, health, resolve, server list and
conn list ask every agent at once (at most 32 in flight) and print one table
with an AGENT column in front (-q: "AGENT ID" lines); with --json one line
per agent: {"agent":NAME,"response":{...}} or
{"agent":NAME,"error":{"code":"UNAVAILABLE","message":"..."}}. A failed
agent is reported on stderr (sockctl: NAME: CODE: message) and the others
still run; the exit code is the first failed agent's. `matrix` probes every
pair of agents. Other verbs act on one agent and refuse several.

Inventory file: one agent per line,
  NAME ADDRESS [token-file=PATH]
NAME: letters, digits, '-', '_', '.' (at most 64, unique); ADDRESS as for
--agent; token-file: a file holding this agent's bearer token (relative to
the inventory's directory). '#' starts a comment; blank lines are ignored.
  # name   address          options
  web-1    10.0.0.11:7878   token-file=web.token
  db-1     [fd00::12]:7878

Environment:
  SOCKAGENT_ADDR   default for --agent (else 127.0.0.1:7878)
  SOCKAGENT_TOKEN  sent on every call as 'authorization: Bearer <token>'
                   (unless --token-file or an inventory token-file is given)

Exit codes:
  0       success
  1       health: not SERVING; recv: --exactly/--until not met (nothing
          within --wait, or the stream ended short); matrix: a cell is not
          as expected
  2       usage error (unknown verb or flag, bad --agent or --timeout,
          malformed inventory, ...)
  3       cannot reach the agent
  10+N    the call failed with gRPC status code N: 13 INVALID_ARGUMENT,
          14 DEADLINE_EXCEEDED, 15 NOT_FOUND, 22 UNIMPLEMENTED,
          24 UNAVAILABLE, 26 UNAUTHENTICATED, ...
  130     matrix: interrupted (after cleaning up)
With several agents: the code of the first agent (in the order given) that
failed.)";

// "server list", "info": the words that name a verb, for messages.
std::string VerbName(const CLI::App& app) {
  std::string name = app.get_name();
  for (const CLI::App* parent = app.get_parent();
       parent != nullptr && parent->get_parent() != nullptr;
       parent = parent->get_parent()) {
    name = absl::StrCat(parent->get_name(), " ", name);
  }
  return name;
}

struct AgentFlags {
  std::vector<std::string> agents;  // --agent, in order.
  std::string inventory;            // --inventory; "" when not given.
  std::string token_file;           // --token-file; "" when not given.
};

// The token to send when an agent has none of its own: --token-file, else
// $SOCKAGENT_TOKEN, else none.
absl::StatusOr<std::string> DefaultToken(const AgentFlags& flags) {
  if (flags.token_file.empty()) {
    const char* token = std::getenv(kTokenEnv);
    return token == nullptr ? "" : token;
  }
  absl::StatusOr<std::string> contents = ReadConfigFile(flags.token_file);
  if (!contents.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid --token-file: ", contents.status().message()));
  }
  absl::StatusOr<std::string> token = ParseToken(*contents);
  if (!token.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid --token-file '", flags.token_file,
                     "': ", token.status().message()));
  }
  return token;
}

absl::StatusOr<std::vector<FleetMember>> FromInventory(
    const std::string& path, const GlobalOptions& common) {
  absl::StatusOr<std::string> text = ReadConfigFile(path);
  if (!text.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid --inventory: ", text.status().message()));
  }
  absl::StatusOr<std::vector<InventoryEntry>> entries = ParseInventory(*text);
  if (!entries.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid --inventory '", path, "': ", entries.status().message()));
  }
  std::vector<FleetMember> members;
  for (InventoryEntry& entry : *entries) {
    FleetMember member{entry.name, common};
    member.options.agent = entry.address;
    if (!entry.token_file.empty()) {
      const std::string token_path = PathRelativeTo(path, entry.token_file);
      absl::StatusOr<std::string> token = ReadConfigFile(token_path);
      if (token.ok()) {
        token = ParseToken(*token);
        if (!token.ok()) {
          token = absl::InvalidArgumentError(absl::StrCat(
              "token-file '", token_path, "': ", token.status().message()));
        }
      }
      if (!token.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("invalid --inventory '", path, "': line ", entry.line,
                         ": ", token.status().message()));
      }
      member.options.token = *std::move(token);
    }
    members.push_back(std::move(member));
  }
  return members;
}

// Every agent this invocation talks to, named, each with its own address
// and token and the shared --timeout and --json. Errors are usage errors.
absl::StatusOr<std::vector<FleetMember>> Members(const AgentFlags& flags,
                                                 GlobalOptions common) {
  absl::StatusOr<std::string> token = DefaultToken(flags);
  if (!token.ok()) return token.status();
  common.token = *std::move(token);
  if (!flags.inventory.empty()) return FromInventory(flags.inventory, common);

  std::vector<std::string> addresses = flags.agents;
  std::string source = "--agent";
  if (addresses.empty()) {
    const char* env = std::getenv(kAgentEnv);
    if (env != nullptr && *env != '\0') {
      addresses.push_back(env);
      source = kAgentEnv;
    } else {
      addresses.push_back(kDefaultAgent);
    }
  }
  std::vector<FleetMember> members;
  std::set<std::string> seen;
  for (const std::string& address : addresses) {
    absl::StatusOr<std::string> target = ParseAgentAddress(address);
    if (!target.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "invalid ", source, " '", address, "': ", target.status().message()));
    }
    if (!seen.insert(*target).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("--agent '", address, "' is given twice"));
    }
    // With --agent the name is the address: nothing shorter is known.
    FleetMember member{*target, common};
    member.options.agent = *std::move(target);
    members.push_back(std::move(member));
  }
  return members;
}

int Main(int argc, char** argv) {
  CLI::App app("sockctl: drive a sockagentd agent over gRPC", "sockctl");
  // Inherited by the subcommands added below, so that global options after
  // the verb fall through to this app.
  app.fallthrough();
  app.require_subcommand(1);
  app.footer(kFooter);
  app.set_version_flag("--version", "sockctl " SOCKAGENT_VERSION);
  app.failure_message([](const CLI::App*, const CLI::Error& e) {
    return absl::StrCat("sockctl: ", e.what(),
                        "\nRun with --help for more information.\n");
  });

  AgentFlags flags;
  std::string timeout = "5s";
  bool json = false;
  CLI::Option* agent_opt =
      app.add_option(
             "--agent", flags.agents,
             "Agent address: HOST:PORT, [IPV6]:PORT or unix:PATH (default: "
             "$SOCKAGENT_ADDR, else 127.0.0.1:7878); repeat for several agents")
          ->type_name("ADDR")
          ->allow_extra_args(false);
  CLI::Option* inventory_opt =
      app.add_option("--inventory", flags.inventory,
                     "File naming the agents, one per line: NAME ADDRESS "
                     "[token-file=PATH] (see below)")
          ->type_name("FILE");
  agent_opt->excludes(inventory_opt);
  app.add_option("--token-file", flags.token_file,
                 "File holding the bearer token (instead of "
                 "$SOCKAGENT_TOKEN); an inventory's token-file= wins")
      ->type_name("FILE");
  app.add_option("--timeout", timeout,
                 "Deadline of each call, e.g. 5s, 500ms, 1m, 1.5s")
      ->type_name("DURATION")
      ->capture_default_str();
  app.add_flag("--json", json,
               "Print each response as one line of protobuf JSON");

  Commands commands;
  AddNameCommands(app, commands);
  AddHostCommands(app, commands);
  AddServerCommands(app, commands);
  AddConnectionCommands(app, commands);
  AddDataCommands(app, commands);
  AddMatrixCommands(app, commands);
  AddWatchCommands(app, commands);
  AddStreamCommands(app, commands);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version are "errors" with exit code 0.
    const int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitUsage;
  }

  GlobalOptions common;
  absl::StatusOr<absl::Duration> deadline = ParseTimeout(timeout);
  if (!deadline.ok()) {
    return UsageError(std::string(deadline.status().message()));
  }
  common.timeout = *deadline;
  common.json = json;
  absl::StatusOr<std::vector<FleetMember>> members = Members(flags, common);
  if (!members.ok()) return UsageError(members.status().message());

  for (const Command& command : commands) {
    if (!command.app->parsed()) continue;
    if (members->size() == 1 && command.run) {
      AgentClient client(std::move(members->front().options));
      return command.run(client);
    }
    if (!command.run_fleet) {
      return UsageError(absl::StrCat(VerbName(*command.app),
                                     " acts on one agent, but ",
                                     members->size(), " are given"));
    }
    Fleet fleet(*std::move(members));
    return command.run_fleet(fleet);
  }
  // require_subcommand(1) makes this unreachable.
  return UsageError("no verb given");
}

}  // namespace
}  // namespace sockctl

int main(int argc, char** argv) {
  // Agent names resolve like every other command-line tool's: through the
  // system resolver (/etc/hosts, nsswitch), not gRPC's own DNS client, which
  // would skip nsswitch and wait on DNS for names the hosts file answers.
  // Set before gRPC reads its configuration; an explicit setting wins.
  setenv("GRPC_DNS_RESOLVER", "native", /*overwrite=*/0);
  return sockctl::Main(argc, argv);
}
