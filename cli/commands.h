// How verbs plug into sockctl. Each group of verbs (one cmd_*.cc file)
// registers its CLI11 subcommands and, for each, the function that runs it
// once the command line parsed and the global options were validated.
// Adding a verb: add a subcommand and a Command in the group's Add*
// function; main.cc runs whichever subcommand was parsed.
#pragma once

#include <functional>
#include <vector>

namespace CLI {
class App;
}  // namespace CLI

namespace sockctl {

class AgentClient;

struct Command {
  CLI::App* app;  // The subcommand; owned by the parent CLI::App.
  // Makes the call(s), prints, returns the exit code.
  std::function<int(AgentClient&)> run;
};
using Commands = std::vector<Command>;

// cmd_names.cc: resolve.
void AddNameCommands(CLI::App& app, Commands& commands);
// cmd_host.cc: hostname, info, health.
void AddHostCommands(CLI::App& app, Commands& commands);
// cmd_server.cc: server start, server stop, server list.
void AddServerCommands(CLI::App& app, Commands& commands);
// cmd_conn.cc: client open, conn list, close.
void AddConnectionCommands(CLI::App& app, Commands& commands);
// cmd_data.cc: send, recv.
void AddDataCommands(CLI::App& app, Commands& commands);

}  // namespace sockctl
