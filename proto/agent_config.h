// Desired-state files: a sockagent.v1.AgentConfig in YAML (yaml_proto.h),
// read by the daemon's --config and by `sockctl apply -f`, so both read the
// same file the same way. Also reads what `sockctl server list -o yaml`
// prints (a ListServersResponse): its named servers' `spec`s become the
// file's servers, so a listing can be applied back.
//
//   absl::StatusOr<v1::AgentConfig> config = ReadAgentConfigFile(path);
//   // "/etc/sockagent.yaml: line 7, column 5: servers[1]: no name: ..."
//
// Checked here: YAML syntax and the message's shape (line and column),
// every server named, no name twice. Everything else (the name's syntax,
// ports, behaviours, policy) is the agent's StartServer check, which the
// daemon runs on every entry before it starts and `sockctl apply` asks for
// with dry_run.
#ifndef SOCKAGENT_PROTO_AGENT_CONFIG_H_
#define SOCKAGENT_PROTO_AGENT_CONFIG_H_

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "sockagent/v1/agent.pb.h"

namespace sockagent {

// Bounds: a file larger than this is refused before parsing.
inline constexpr size_t kMaxAgentConfigBytes = 4 << 20;
// Servers in one file (an agent's --max_servers default is 1,000).
inline constexpr int kMaxAgentConfigServers = 10000;

// The reserved label every server the config file or `sockctl apply`
// started carries, and its values: what a reload or `apply --prune` may
// stop. Other servers (API-made, named or not) are never touched.
inline constexpr char kSourceLabel[] = "sockagent.io/source";
inline constexpr char kSourceConfig[] = "config";
inline constexpr char kSourceApply[] = "apply";

// INVALID_ARGUMENT "line L, column C: PATH: what" for the first mistake.
// `positions`, when given, receives "line L, column C: " of each server
// (for errors found later, e.g. by the agent).
absl::StatusOr<v1::AgentConfig> ParseAgentConfig(
    absl::string_view yaml, std::vector<std::string>* positions = nullptr);

// The file's text, at most kMaxAgentConfigBytes; errors start with "PATH: ".
absl::StatusOr<std::string> ReadAgentConfigText(const std::string& path);

// ParseAgentConfig on a file; errors start with "PATH: ". NOT_FOUND (and
// others, from errno) when it cannot be read; INVALID_ARGUMENT when larger
// than kMaxAgentConfigBytes.
absl::StatusOr<v1::AgentConfig> ReadAgentConfigFile(const std::string& path);

}  // namespace sockagent

#endif  // SOCKAGENT_PROTO_AGENT_CONFIG_H_
