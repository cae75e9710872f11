// `sockctl apply -f FILE [--prune] [--dry-run]`: a desired-state file
// (proto/agent_config.h, the format of the daemon's --config) applied over
// the API to one agent or every agent of a fleet, like `kubectl apply`.
//
// Per agent: the file's servers (each labelled sockagent.io/source=apply)
// are checked with StartServer dry runs, which answer what each would do
// under the agent's own "same spec" rule (create, replace, unchanged);
// with --prune, listening servers labelled sockagent.io/source=apply that
// the file no longer names are to stop. Nothing changes on an agent where a
// check fails. Then, unless --dry-run, the plan is carried out (StartServer
// with replace, StopServer by name) and one row per server is printed:
//
//   AGENT   NAME  ACTION     DETAIL
//   web-1   echo  created    127.0.0.1:9000
//   web-1   old   stopped    srv-4
//   web-2   echo  unchanged  127.0.0.1:9000
//   web-1: 1 created, 0 replaced, 1 stopped, 0 unchanged
//   web-2: no changes
//
// Servers the daemon's config file started (sockagent.io/source=config)
// are never replaced or stopped: such a name is a conflict (the agent
// fails, nothing changes on it).
#include <CLI/CLI.hpp>
#include <atomic>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cli/client.h"
#include "cli/commands.h"
#include "cli/fleet.h"
#include "proto/agent_config.h"

namespace sockctl {
namespace {

namespace v1 = sockagent::v1;

struct ApplyArgs {
  std::string file;
  bool prune = false;
  bool dry_run = false;
};

struct Tally {
  int created = 0;
  int replaced = 0;
  int stopped = 0;
  int unchanged = 0;
};

grpc::Status ListNamed(AgentClient& client,
                       absl::flat_hash_map<std::string, v1::Server>* named) {
  v1::ListServersRequest request;
  request.set_page_size(1000);
  do {
    v1::ListServersResponse response;
    auto ctx = client.NewContext();
    grpc::Status s = client.agent().ListServers(ctx.get(), request, &response);
    if (!s.ok()) return s;
    for (v1::Server& server : *response.mutable_servers()) {
      if (!server.name().empty()) {
        std::string name = server.name();
        named->emplace(std::move(name), std::move(server));
      }
    }
    request.set_page_token(response.next_page_token());
  } while (!request.page_token().empty());
  return grpc::Status::OK;
}

std::string Source(const v1::Server& server) {
  auto it = server.labels().find(sockagent::kSourceLabel);
  return it == server.labels().end() ? "" : it->second;
}

std::string FirstAddress(const v1::Server& server) {
  if (server.local_addresses().empty()) return "";
  const v1::SocketAddress& a = server.local_addresses(0);
  if (!a.unix_path().empty()) return absl::StrCat("unix:", a.unix_path());
  if (a.ip().find(':') != std::string::npos) {
    return absl::StrCat("[", a.ip(), "]:", a.port());
  }
  return absl::StrCat(a.ip(), ":", a.port());
}

// One agent: plan with dry runs, then (unless dry_run) apply.
grpc::Status ApplyOne(AgentClient& client, const v1::AgentConfig& config,
                      const ApplyArgs& args, AgentOutput& out, Tally& tally) {
  absl::flat_hash_map<std::string, v1::Server> named;
  if (grpc::Status s = ListNamed(client, &named); !s.ok()) return s;
  struct Step {
    v1::StartServerRequest request;  // Empty name: a stop.
    std::string stop_name;
    v1::StartOutcome outcome = v1::START_OUTCOME_UNSPECIFIED;
    std::string detail;
  };
  std::vector<Step> plan;
  absl::flat_hash_set<std::string> listed;
  for (const v1::StartServerRequest& wanted : config.servers()) {
    Step step;
    step.request = wanted;
    (*step.request.mutable_labels())[sockagent::kSourceLabel] =
        sockagent::kSourceApply;
    step.request.set_replace(true);
    listed.insert(wanted.name());
    auto held = named.find(wanted.name());
    if (held != named.end() &&
        Source(held->second) == sockagent::kSourceConfig) {
      return grpc::Status(
          grpc::StatusCode::FAILED_PRECONDITION,
          absl::StrCat("server '", wanted.name(), "' (", held->second.id(),
                       ") comes from the agent's --config file: change it "
                       "there; nothing was applied on this agent"));
    }
    v1::StartServerRequest check = step.request;
    check.set_dry_run(true);
    v1::StartServerResponse answer;
    auto ctx = client.NewContext();
    grpc::Status s = client.agent().StartServer(ctx.get(), check, &answer);
    if (!s.ok()) {
      return grpc::Status(
          s.error_code(),
          absl::StrCat("server '", wanted.name(), "': ", s.error_message(),
                       " (nothing was applied on this agent)"));
    }
    step.outcome = answer.outcome();
    step.detail = answer.outcome() == v1::START_OUTCOME_REPLACED
                      ? answer.difference()
                      : FirstAddress(answer.server());
    plan.push_back(std::move(step));
  }
  if (args.prune) {
    std::map<std::string, std::string> stale;  // Name -> id, sorted.
    for (const auto& [name, server] : named) {
      if (Source(server) == sockagent::kSourceApply && !listed.contains(name)) {
        stale.emplace(name, server.id());
      }
    }
    for (const auto& [name, id] : stale) {
      Step step;
      step.stop_name = name;
      step.detail = id;
      plan.push_back(std::move(step));
    }
  }
  for (Step& step : plan) {
    const bool stop = !step.stop_name.empty();
    const std::string name = stop ? step.stop_name : step.request.name();
    std::string action;
    if (stop) {
      action = args.dry_run ? "stop" : "stopped";
      ++tally.stopped;
    } else if (step.outcome == v1::START_OUTCOME_UNCHANGED) {
      action = "unchanged";
      ++tally.unchanged;
    } else if (step.outcome == v1::START_OUTCOME_REPLACED) {
      action = args.dry_run ? "replace" : "replaced";
      ++tally.replaced;
    } else {
      action = args.dry_run ? "create" : "created";
      ++tally.created;
    }
    if (!args.dry_run && step.outcome != v1::START_OUTCOME_UNCHANGED) {
      auto ctx = client.NewContext();
      grpc::Status s;
      if (stop) {
        v1::StopServerRequest request;
        request.set_name(name);
        v1::StopServerResponse response;
        s = client.agent().StopServer(ctx.get(), request, &response);
        // Gone meanwhile (TTL, another caller): what --prune wanted.
        if (s.error_code() == grpc::StatusCode::NOT_FOUND) s = grpc::Status::OK;
      } else {
        v1::StartServerResponse response;
        s = client.agent().StartServer(ctx.get(), step.request, &response);
        if (s.ok() && step.outcome != v1::START_OUTCOME_REPLACED) {
          step.detail = FirstAddress(response.server());
        }
      }
      if (!s.ok()) {
        return grpc::Status(
            s.error_code(),
            absl::StrCat("server '", name, "': ", s.error_message(),
                         " (the rows before it were applied)"));
      }
    }
    out.rows.push_back({name, action, step.detail});
  }
  return grpc::Status::OK;
}

std::string Summary(const Tally& t, bool dry_run) {
  if (t.created + t.replaced + t.stopped == 0) {
    return absl::StrCat("no changes (", t.unchanged, " unchanged)");
  }
  return absl::StrCat(dry_run ? "would have " : "", t.created, " created, ",
                      t.replaced, " replaced, ", t.stopped, " stopped, ",
                      t.unchanged, " unchanged",
                      dry_run ? " (dry run: nothing changed)" : "");
}

int RunApply(Fleet& fleet, const ApplyArgs& args) {
  absl::StatusOr<v1::AgentConfig> config =
      sockagent::ReadAgentConfigFile(args.file);
  if (!config.ok()) return UsageError(config.status().message());
  std::vector<Tally> tallies(fleet.size());
  std::vector<std::atomic<bool>> done(fleet.size());
  const int code = RunOnEveryAgent(
      fleet, {"NAME", "ACTION", "DETAIL"},
      [&](AgentClient& client, AgentOutput& out) {
        size_t i = 0;
        while (&fleet.client(i) != &client) ++i;
        grpc::Status s = ApplyOne(client, *config, args, out, tallies[i]);
        done[i] = s.ok();
        return s;
      });
  for (size_t i = 0; i < fleet.size(); ++i) {
    if (done[i]) {
      std::cout << fleet.name(i) << ": " << Summary(tallies[i], args.dry_run)
                << "\n";
    }
  }
  return code;
}

}  // namespace

void AddApplyCommands(CLI::App& app, Commands& commands) {
  auto args = std::make_shared<ApplyArgs>();
  CLI::App* apply = app.add_subcommand(
      "apply",
      "Make the agent(s) hold the named servers of a desired-state file "
      "(the daemon's --config format, or `server list -o yaml` output): "
      "create what is missing, replace what differs, print what was done");
  apply->footer(
      "Examples:\n"
      "  sockctl apply -f servers.yaml --dry-run\n"
      "  sockctl --inventory fleet.yaml apply -f servers.yaml --prune\n"
      "  sockctl server list -o yaml > now.yaml && sockctl apply -f now.yaml");
  apply->add_option("-f,--filename", args->file, "The file (YAML)")
      ->required()
      ->type_name("FILE");
  apply->add_flag("--prune", args->prune,
                  "Also stop servers an earlier apply made that the file no "
                  "longer lists (label sockagent.io/source=apply)");
  apply->add_flag("--dry-run", args->dry_run,
                  "Print what would be done; change nothing");
  commands.push_back({apply,
                      nullptr,
                      [args](Fleet& fleet) { return RunApply(fleet, *args); },
                      {OutputFormat::kTable}});
}

}  // namespace sockctl
