// How verbs plug into sockctl. Each group of verbs (one cmd_*.cc file)
// registers its CLI11 subcommands and, for each, the function that runs it
// once the command line parsed and the global options were validated.
// Adding a verb: add a subcommand and a Command in the group's Add*
// function; main.cc runs whichever subcommand was parsed: `run` when one
// agent is given, `run_fleet` when several are (or always, for a verb that
// has no `run`). A verb with only `run` acts on one agent, and more is a
// usage error. `outputs` lists the -o forms the verb prints (main.cc refuses
// the others, naming the verb, and shows them in the verb's --help).
#pragma once

#include <functional>
#include <vector>

#include "cli/output_format.h"

namespace CLI {
class App;
}  // namespace CLI

namespace sockctl {

class AgentClient;
class Fleet;

struct Command {
  CLI::App* app;  // The subcommand; owned by the parent CLI::App.
  // Makes the call(s), prints, returns the exit code.
  std::function<int(AgentClient&)> run;
  // The same for every agent of a fleet (see fleet.h); null for verbs that
  // act on one agent.
  std::function<int(Fleet&)> run_fleet = nullptr;
  // The -o forms it prints; the first is the default's name (table).
  OutputForms outputs = {OutputFormat::kTable};
  // Verbs that talk to no agent (`inventory from-kubectl`): run before any
  // agent address or token is looked at; `run` and `run_fleet` stay null.
  std::function<int()> run_local = nullptr;
};

// The forms of the verbs that print servers or connections.
inline const OutputForms kSocketOutputs = {
    OutputFormat::kTable, OutputFormat::kJson, OutputFormat::kYaml,
    OutputFormat::kName, OutputFormat::kAddr};
// The forms of the verbs that print one response (or a stream of them).
inline const OutputForms kStructuredOutputs = {
    OutputFormat::kTable, OutputFormat::kJson, OutputFormat::kYaml};
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
// cmd_matrix.cc: matrix (fleet only).
void AddMatrixCommands(CLI::App& app, Commands& commands);
// cmd_watch.cc: watch.
void AddWatchCommands(CLI::App& app, Commands& commands);
// cmd_stream.cc: connect, attach.
void AddStreamCommands(CLI::App& app, Commands& commands);
// cmd_inventory.cc: inventory from-kubectl (local, no agent).
void AddInventoryCommands(CLI::App& app, Commands& commands);
// cmd_listen.cc: listen.
void AddListenCommands(CLI::App& app, Commands& commands);
// cmd_probe.cc: probe.
void AddProbeCommands(CLI::App& app, Commands& commands);
// cmd_perf.cc: perf (a pair of agents, or many pairs).
void AddPerfCommands(CLI::App& app, Commands& commands);
// cmd_proxy.cc: proxy start, proxy import.
void AddProxyCommands(CLI::App& app, Commands& commands);
// cmd_fault.cc: fault add, fault update, fault remove, fault list.
void AddFaultCommands(CLI::App& app, Commands& commands);
// cmd_apply.cc: apply (one agent or a fleet).
void AddApplyCommands(CLI::App& app, Commands& commands);
// completion.cc: completion (hidden; walks `app`, so add it last).
void AddCompletionCommands(CLI::App& app, Commands& commands);

}  // namespace sockctl
