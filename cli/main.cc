// sockctl: drives a sockagentd agent over its gRPC API.
//
//   sockctl [--agent HOST:PORT] [--timeout 5s] [--json] VERB [ARGS...]
//
// Global options may come before or after the verb. --agent defaults to
// $SOCKAGENT_ADDR, else 127.0.0.1:7878; $SOCKAGENT_TOKEN, when set, is sent
// on every call as `authorization: Bearer <token>`.
//
// Exit codes (also in `sockctl --help`):
//   0       success
//   1       `health`: the service is not SERVING; `recv`: --exactly or
//           --until not met (nothing within --wait, or the stream ended
//           short) (or output failed)
//   2       usage error: unknown verb or flag, bad --agent or --timeout, ...
//   3       cannot reach the agent (refused, unreachable, no answer within
//           --timeout before a connection was made)
//   10 + N  the call failed with gRPC status code N, e.g. 13 INVALID_ARGUMENT,
//           14 DEADLINE_EXCEEDED, 15 NOT_FOUND, 22 UNIMPLEMENTED,
//           24 UNAVAILABLE (answered by the agent), 26 UNAUTHENTICATED
// Errors print one line to stderr: `sockctl: NOT_FOUND: <agent's message>`,
// or `sockctl: cannot reach agent at ADDR: <gRPC's message>`.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "cli/client.h"
#include "cli/commands.h"

namespace sockctl {
namespace {

constexpr char kFooter[] =
    R"(Global options (--agent, --timeout, --json; see sockctl --help) may be
given before or after the verb.

Environment:
  SOCKAGENT_ADDR   default for --agent (else 127.0.0.1:7878)
  SOCKAGENT_TOKEN  sent on every call as 'authorization: Bearer <token>'

Exit codes:
  0       success
  1       health: not SERVING; recv: --exactly/--until not met (nothing
          within --wait, or the stream ended short)
  2       usage error (unknown verb or flag, bad --agent or --timeout, ...)
  3       cannot reach the agent
  10+N    the call failed with gRPC status code N: 13 INVALID_ARGUMENT,
          14 DEADLINE_EXCEEDED, 15 NOT_FOUND, 22 UNIMPLEMENTED,
          24 UNAVAILABLE, 26 UNAUTHENTICATED, ...)";

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

  std::string agent;
  std::string timeout = "5s";
  bool json = false;
  CLI::Option* agent_opt =
      app.add_option(
             "--agent", agent,
             "Agent address: HOST:PORT, [IPV6]:PORT or unix:PATH (default: "
             "$SOCKAGENT_ADDR, else 127.0.0.1:7878)")
          ->type_name("ADDR");
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

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version are "errors" with exit code 0.
    const int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitUsage;
  }

  GlobalOptions options;
  std::string agent_source = "--agent";
  if (agent_opt->count() == 0) {
    const char* env = std::getenv(kAgentEnv);
    if (env != nullptr && *env != '\0') {
      agent = env;
      agent_source = kAgentEnv;
    } else {
      agent = kDefaultAgent;
    }
  }
  absl::StatusOr<std::string> target = ParseAgentAddress(agent);
  if (!target.ok()) {
    return UsageError(absl::StrCat("invalid ", agent_source, " '", agent,
                                   "': ", target.status().message()));
  }
  options.agent = *std::move(target);
  absl::StatusOr<absl::Duration> deadline = ParseTimeout(timeout);
  if (!deadline.ok()) {
    return UsageError(std::string(deadline.status().message()));
  }
  options.timeout = *deadline;
  options.json = json;
  if (const char* token = std::getenv(kTokenEnv); token != nullptr) {
    options.token = token;
  }

  AgentClient client(std::move(options));
  for (const Command& command : commands) {
    if (command.app->parsed()) return command.run(client);
  }
  // require_subcommand(1) makes this unreachable.
  return UsageError("no verb given");
}

}  // namespace
}  // namespace sockctl

int main(int argc, char** argv) { return sockctl::Main(argc, argv); }
