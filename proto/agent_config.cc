// Desired-state files (agent_config.h).
#include "proto/agent_config.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "proto/yaml_proto.h"

namespace sockagent {

absl::StatusOr<v1::AgentConfig> ParseAgentConfig(
    absl::string_view yaml, std::vector<std::string>* positions) {
  v1::AgentConfig config;
  absl::Status parsed = YamlToMessage(yaml, &config);
  const bool listing_used = !parsed.ok();
  if (listing_used) {
    // A listing (`sockctl server list -o yaml`) has the same `servers` key
    // with Server items: take their specs.
    v1::ListServersResponse listing;
    if (!YamlToMessage(yaml, &listing).ok()) return parsed;
    config.Clear();
    for (const v1::Server& server : listing.servers()) {
      if (server.has_spec() && !server.spec().name().empty() &&
          server.state() != v1::SERVER_STATE_STOPPED) {
        *config.add_servers() = server.spec();
      }
    }
  }
  if (config.servers_size() > kMaxAgentConfigServers) {
    return absl::InvalidArgumentError(absl::StrCat(
        "servers: ", config.servers_size(), " servers, more than the limit of ",
        kMaxAgentConfigServers));
  }
  // A listing's items are Servers, some skipped: no positions for them.
  std::vector<std::string> where;
  if (!listing_used) where = YamlItemPositions(yaml, "servers");
  where.resize(config.servers_size());
  absl::flat_hash_map<std::string, int> seen;
  for (int i = 0; i < config.servers_size(); ++i) {
    const std::string& name = config.servers(i).name();
    if (name.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          where[i], "servers[", i,
          "]: no name: every server in a desired-state file needs one (what "
          "the agent knows it by across reloads)"));
    }
    auto [it, fresh] = seen.emplace(name, i);
    if (!fresh) {
      return absl::InvalidArgumentError(
          absl::StrCat(where[i], "servers[", i, "].name '", name,
                       "' is servers[", it->second, "]'s name already"));
    }
  }
  if (positions != nullptr) *positions = std::move(where);
  return config;
}

absl::StatusOr<std::string> ReadAgentConfigText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    return absl::Status(
        err == ENOENT ? absl::StatusCode::kNotFound
                      : absl::StatusCode::kFailedPrecondition,
        absl::StrCat(path, ": cannot read: ", std::strerror(err)));
  }
  std::string text;
  char buffer[65536];
  while (in.read(buffer, sizeof buffer) || in.gcount() > 0) {
    text.append(buffer, static_cast<size_t>(in.gcount()));
    if (text.size() > kMaxAgentConfigBytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": larger than the limit of ", kMaxAgentConfigBytes, " bytes"));
    }
  }
  return text;
}

absl::StatusOr<v1::AgentConfig> ReadAgentConfigFile(const std::string& path) {
  absl::StatusOr<std::string> text = ReadAgentConfigText(path);
  if (!text.ok()) return text.status();
  absl::StatusOr<v1::AgentConfig> config = ParseAgentConfig(*text);
  if (!config.ok()) {
    return absl::Status(config.status().code(),
                        absl::StrCat(path, ": ", config.status().message()));
  }
  return config;
}

}  // namespace sockagent
