// The daemon's desired state (--config FILE): the file's servers made real
// on the engine, at start and again on SIGHUP, through the same StartServer
// and StopServers paths as the API (named servers, agent/server_name.h).
//
//   absl::StatusOr<ConfigFile> file = LoadConfigFile(path);  // before start
//   ConfigApplyResult r = ApplyConfig(engine, *file);
//
// Applying is a diff against the listening servers:
//   * a file server whose name nobody holds is created;
//   * one held by a server that came from the file (label
//     sockagent.io/source=config) is started with replace: unchanged when
//     the spec is the same (agent/server_name.h), replaced otherwise;
//   * one held by any other server (made over the API) is left alone: the
//     same spec counts as unchanged, another is a conflict (logged, failed);
//   * servers from the file that it no longer lists are stopped (their
//     accepted connections stay open).
// Every file server gets the label sockagent.io/source=config (whatever the
// file says for that key) and, for UNIX paths, replace_stale (a socket file
// left by a killed agent is taken over; a live one is not).
//
// Thread: any thread but the engine's loop and gRPC's callback threads: it
// waits for the engine's answers (the daemon's main thread).
#ifndef SOCKAGENT_SERVICE_CONFIG_APPLY_H_
#define SOCKAGENT_SERVICE_CONFIG_APPLY_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "agent/engine.h"

namespace sockagent {

// A desired-state file, read and checked: every entry converted to a spec
// (with the label and replace_stale above) and its name valid.
struct ConfigFile {
  std::string path;
  std::vector<ServerSpec> servers;
  // "line L, column C: " of each server in the file ("" when unknown).
  std::vector<std::string> positions;
};

// INVALID_ARGUMENT "PATH: line L, column C: servers[I]...: what" for the
// first mistake (YAML, shape, missing or repeated name, a field the API
// refuses); other codes when the file cannot be read.
absl::StatusOr<ConfigFile> LoadConfigFile(const std::string& path);

struct ConfigApplyResult {
  int created = 0;
  int replaced = 0;
  int unchanged = 0;
  int stopped = 0;
  // One line per server that could not be made as the file says, e.g.
  // "web: bind 0.0.0.0:80: permission denied".
  std::vector<std::string> errors;
};

// Applies `file` (see the file comment), logging one line per change and a
// summary. Before changing anything, every entry is checked by a dry run:
// an entry the engine refuses (policy, max_servers, a host that does not
// resolve) is a failure of the whole file, returned with the engine's code
// and the entry's position, and nothing changes.
absl::StatusOr<ConfigApplyResult> ApplyConfig(Engine& engine,
                                              const ConfigFile& file);

}  // namespace sockagent

#endif  // SOCKAGENT_SERVICE_CONFIG_APPLY_H_
