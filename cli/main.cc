// sockctl: drives sockagentd agents over their gRPC API.
//
//   sockctl [--agent HOST:PORT]... [--inventory FILE] [--timeout 5s]
//           [-o table|json|yaml|name|addr] VERB [ARGS...]
//
// Global options may come before or after the verb; so may the output
// options (-o, --json = -o json, -q = -o name), and each verb refuses the
// forms it does not print (cli/output_format.h). --agent defaults to
// $SOCKAGENT_ADDR, else the agent's default owner-only UNIX socket
// (unix:/run/sockagent/sockagentd.sock as root; proto/local_agent_socket.h).
// --tls-ca/--tls-cert/--tls-key/--tls-server-name talk TLS to the agent. The
// bearer token sent on every call as `authorization: Bearer <token>` comes from
// the agent's token-file= in the inventory, else --token-file, else
// $SOCKAGENT_TOKEN.
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
#include <grpc/support/log.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "cli/args.h"
#include "cli/client.h"
#include "cli/commands.h"
#include "cli/fleet.h"
#include "cli/inventory.h"
#include "cli/output_format.h"
#include "cli/suggest.h"

namespace sockctl {
namespace {

constexpr char kFooter[] =
    R"(Global options (--agent, --inventory, --token-file, --tls-*, --timeout)
and the output options (-o, --json, -q) may be given before or after the
verb.

Output: -o table (the default), json (protobuf JSON, one line per object:
lowerCamelCase keys, 64-bit integers as strings, bytes as base64, enums by
name, durations as "1.5s"), yaml (the same data), name (ids, one per line:
servers and connections), addr (servers: each bound address; connections:
"LOCAL REMOTE"; resolve: each address; one per line). --json is -o json,
-q is -o name. A verb refuses forms it does not print; its --help lists
them.

TLS: --tls-ca FILE verifies the agent's certificate; --tls-cert/--tls-key
present a client certificate to an agent that requires one (mutual TLS). A
failed handshake is explained in words (untrusted certificate, client
certificate required or refused, agent without TLS).

Several agents: repeat --agent (each agent is named by its address) or give
--inventory FILE. Then info, hostname, health, resolve, server list and
conn list ask every agent at once (at most 32 in flight) and print one table
with an AGENT column in front (-o name|addr: "AGENT VALUE" lines); with
-o json one line per agent: {"agent":NAME,"response":{...}} or
{"agent":NAME,"error":{"code":"UNAVAILABLE","message":"..."}}. A failed
agent is reported on stderr (sockctl: NAME: CODE: message) and the others
still run; the exit code is the first failed agent's. `matrix` probes every
pair of agents. Other verbs act on one agent and refuse several.

Inventory file: one agent per line,
  NAME ADDRESS [token-file=PATH] [tls-ca=PATH] [tls-cert=PATH tls-key=PATH]
               [tls-server-name=NAME]
NAME: letters, digits, '-', '_', '.' (at most 64, unique); ADDRESS as for
--agent; token-file: a file holding this agent's bearer token (relative to
the inventory's directory); tls-*: the --tls-* flags for this agent.
'#' starts a comment; blank lines are ignored.
  # name   address          options
  web-1    10.0.0.11:7878   token-file=web.token
  db-1     [fd00::12]:7878

Environment:
  SOCKAGENT_ADDR   default for --agent (else the agent's default socket:
                   unix:/run/sockagent/sockagentd.sock as root, else
                   unix:$XDG_RUNTIME_DIR/sockagent/sockagentd.sock or
                   unix:/tmp/sockagent-UID/sockagentd.sock)
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

// The one line each verb's --help says about the global options.
constexpr char kVerbFooter[] =
    "Global options (--agent, --inventory, --token-file, --tls-*, --timeout) "
    "go before or after the verb: see sockctl --help.";

// Ends the help of `app` and of everything below it with kVerbFooter, after
// its own footer (examples) if it has one.
void AddVerbFooters(CLI::App& app) {
  for (CLI::App* sub : app.get_subcommands({})) {
    const std::string own = sub->get_footer();
    sub->footer(own.empty() ? kVerbFooter
                            : absl::StrCat(own, "\n\n", kVerbFooter));
    AddVerbFooters(*sub);
  }
}

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
  std::string tls_ca;               // --tls-ca and the rest: paths.
  std::string tls_cert;
  std::string tls_key;
  std::string tls_server_name;
};

// TLS from the --tls-* flags: PEM contents read here so that a missing file
// is a usage error before any call.
absl::StatusOr<TlsOptions> TlsFromFlags(const AgentFlags& flags) {
  TlsOptions tls;
  tls.enabled = !flags.tls_ca.empty() || !flags.tls_cert.empty() ||
                !flags.tls_key.empty() || !flags.tls_server_name.empty();
  if (!tls.enabled) return tls;
  if (flags.tls_cert.empty() != flags.tls_key.empty()) {
    return absl::InvalidArgumentError(
        "--tls-cert and --tls-key go together (a client certificate and its "
        "key)");
  }
  tls.server_name = flags.tls_server_name;
  for (auto [flag, path, out] :
       {std::tuple{"--tls-ca", &flags.tls_ca, &tls.ca},
        std::tuple{"--tls-cert", &flags.tls_cert, &tls.cert},
        std::tuple{"--tls-key", &flags.tls_key, &tls.key}}) {
    if (path->empty()) continue;
    absl::StatusOr<std::string> pem = ReadConfigFile(*path);
    if (!pem.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid ", flag, ": ", pem.status().message()));
    }
    *out = *std::move(pem);
  }
  return tls;
}

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
    if (!entry.tls_ca.empty() || !entry.tls_cert.empty() ||
        !entry.tls_server_name.empty()) {
      AgentFlags tls_flags;
      for (auto [in, out] : {std::pair{&entry.tls_ca, &tls_flags.tls_ca},
                             std::pair{&entry.tls_cert, &tls_flags.tls_cert},
                             std::pair{&entry.tls_key, &tls_flags.tls_key}}) {
        if (!in->empty()) *out = PathRelativeTo(path, *in);
      }
      tls_flags.tls_server_name = entry.tls_server_name;
      absl::StatusOr<TlsOptions> tls = TlsFromFlags(tls_flags);
      if (!tls.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("invalid --inventory '", path, "': line ", entry.line,
                         ": ", tls.status().message()));
      }
      member.options.tls = *std::move(tls);
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
  absl::StatusOr<TlsOptions> tls = TlsFromFlags(flags);
  if (!tls.ok()) return tls.status();
  common.tls = *std::move(tls);
  if (!flags.inventory.empty()) return FromInventory(flags.inventory, common);

  std::vector<std::string> addresses = flags.agents;
  std::string source = "--agent";
  if (addresses.empty()) {
    const char* env = std::getenv(kAgentEnv);
    if (env != nullptr && *env != '\0') {
      addresses.push_back(env);
      source = kAgentEnv;
    } else {
      addresses.push_back(DefaultAgent());
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
  app.set_version_flag("--version", "sockctl " SOCKAGENT_VERSION);
  app.failure_message([](const CLI::App*, const CLI::Error& e) {
    return absl::StrCat("sockctl: ", e.what(),
                        "\nRun with --help for more information.\n");
  });

  AgentFlags flags;
  std::string timeout = "5s";
  CLI::Option* agent_opt =
      app.add_option(
             "--agent", flags.agents,
             "Agent address: HOST:PORT, [IPV6]:PORT or unix:PATH (default: "
             "$SOCKAGENT_ADDR, else the agent's default UNIX socket); repeat "
             "for several agents")
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
  app.add_option("--tls-ca", flags.tls_ca,
                 "Talk TLS; trust agents whose certificate this PEM CA file "
                 "signed (default with other --tls-* flags: the system CAs)")
      ->type_name("FILE");
  app.add_option("--tls-cert", flags.tls_cert,
                 "Client certificate (PEM) for mutual TLS, with --tls-key")
      ->type_name("FILE");
  app.add_option("--tls-key", flags.tls_key, "Private key (PEM) of --tls-cert")
      ->type_name("FILE");
  app.add_option("--tls-server-name", flags.tls_server_name,
                 "Name the agent's certificate must carry (default: the host "
                 "of --agent)")
      ->type_name("NAME");
  app.add_option("--timeout", timeout,
                 "Deadline of each call, e.g. 5s, 500ms, 1m, 1.5s")
      ->type_name("DURATION")
      ->capture_default_str();
  OutputRequest output;
  AddOutputOptions(&app, output, AllOutputForms());

  Commands commands;
  AddNameCommands(app, commands);
  AddHostCommands(app, commands);
  AddServerCommands(app, commands);
  AddConnectionCommands(app, commands);
  AddDataCommands(app, commands);
  AddMatrixCommands(app, commands);
  AddWatchCommands(app, commands);
  AddStreamCommands(app, commands);
  AddInventoryCommands(app, commands);
  AddListenCommands(app, commands);
  AddProbeCommands(app, commands);
  AddPerfCommands(app, commands);
  AddProxyCommands(app, commands);
  AddFaultCommands(app, commands);
  AddApplyCommands(app, commands);
  AddCompletionCommands(app, commands);
  // Each verb shows (and takes after it) the output forms it prints; the
  // footer, set after the verbs were added, is the top level's alone.
  for (const Command& command : commands) {
    if (command.outputs.size() > 1) {
      AddOutputOptions(command.app, output, command.outputs);
    }
  }
  AddVerbFooters(app);
  app.footer(kFooter);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // An unknown verb or flag is named, with the closest known one.
    if (e.get_exit_code() != 0) {
      const std::string why = ExplainUnknownWord(
          app, std::vector<std::string>(argv + 1, argv + argc));
      if (!why.empty()) {
        return UsageError(
            absl::StrCat(why, "\nRun with --help for more information."));
      }
    }
    // --help and --version are "errors" with exit code 0.
    const int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitUsage;
  }

  const Command* verb = nullptr;
  for (const Command& command : commands) {
    if (command.app->parsed()) verb = &command;
  }
  if (verb == nullptr) return UsageError("no verb given");
  absl::StatusOr<OutputFormat> form =
      ChooseOutput(output, VerbName(*verb->app), verb->outputs);
  if (!form.ok()) return UsageError(form.status().message());
  if (verb->run_local) return verb->run_local();

  GlobalOptions common;
  absl::StatusOr<absl::Duration> deadline = ParseTimeout(timeout);
  if (!deadline.ok()) {
    return UsageError(std::string(deadline.status().message()));
  }
  common.timeout = *deadline;
  common.output = *form;
  absl::StatusOr<std::vector<FleetMember>> members = Members(flags, common);
  if (!members.ok()) return UsageError(members.status().message());

  for (const Command& command : commands) {
    if (&command != verb) continue;
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
  // gRPC's own error lines ("E1125 ... Handshake failed ...") repeat what
  // sockctl's one-line error says in words; GRPC_VERBOSITY brings them back.
  if (std::getenv("GRPC_VERBOSITY") == nullptr) {
    gpr_set_log_function([](gpr_log_func_args*) {});
  }
  // Debian's Abseil checks lock order on every absl::Mutex acquisition
  // (gRPC's locks are absl::Mutex): 2 % of sockctl's samples while it
  // streams stdin (BENCHMARKS.md, Relay). sockagentd turns it off too.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  return sockctl::Main(argc, argv);
}
