// The daemon's desired state (config_apply.h).
#include "service/config_apply.h"

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "agent/server_name.h"
#include "proto/agent_config.h"
#include "service/convert.h"
#include "service/log.h"

namespace sockagent {

namespace {

// Calls `call(done)` and waits for `done`'s value.
template <typename T, typename Call>
T Await(Call call) {
  auto result = std::make_shared<std::optional<T>>();
  auto done = std::make_shared<absl::Notification>();
  call([result, done](T value) {
    *result = std::move(value);
    done->Notify();
  });
  done->WaitForNotification();
  return *std::move(*result);
}

bool FromConfig(const ServerInfo& s) {
  auto it = s.labels.find(kSourceLabel);
  return it != s.labels.end() && it->second == kSourceConfig;
}

// Every listening server, by name (named ones only).
absl::StatusOr<absl::flat_hash_map<std::string, ServerInfo>> ListNamed(
    Engine& engine) {
  absl::flat_hash_map<std::string, ServerInfo> named;
  ServerFilter filter;
  filter.page_size = 1000;
  do {
    absl::StatusOr<Page<ServerInfo>> page =
        Await<absl::StatusOr<Page<ServerInfo>>>(
            [&](auto done) { engine.ListServers(filter, std::move(done)); });
    if (!page.ok()) return page.status();
    for (ServerInfo& s : page->items) {
      if (!s.name.empty()) named.emplace(s.name, std::move(s));
    }
    filter.page_token = page->next_page_token;
  } while (!filter.page_token.empty());
  return named;
}

std::string Where(const ConfigFile& file, size_t i) {
  const std::string& position =
      i < file.positions.size() ? file.positions[i] : std::string();
  return absl::StrCat(file.path, ": ", position, "servers[", i, "] ('",
                      file.servers[i].name, "'): ");
}

}  // namespace

absl::StatusOr<ConfigFile> LoadConfigFile(const std::string& path) {
  absl::StatusOr<std::string> text = ReadAgentConfigText(path);
  if (!text.ok()) return text.status();
  ConfigFile file;
  file.path = path;
  absl::StatusOr<v1::AgentConfig> config =
      ParseAgentConfig(*text, &file.positions);
  if (!config.ok()) {
    return absl::Status(config.status().code(),
                        absl::StrCat(path, ": ", config.status().message()));
  }
  for (int i = 0; i < config->servers_size(); ++i) {
    const std::string where =
        absl::StrCat(path, ": ", file.positions[i], "servers[", i, "]: ");
    absl::StatusOr<ServerSpec> spec = ServerSpecFromProto(config->servers(i));
    absl::Status status = spec.status();
    if (status.ok()) status = CheckServerName(spec->name, "name");
    if (!status.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(where, status.message()));
    }
    spec->labels[kSourceLabel] = kSourceConfig;
    if (spec->transport == Transport::kUnix) spec->replace_stale = true;
    spec->replace = false;
    spec->dry_run = false;
    file.servers.push_back(*std::move(spec));
  }
  return file;
}

absl::StatusOr<ConfigApplyResult> ApplyConfig(Engine& engine,
                                              const ConfigFile& file) {
  auto named = ListNamed(engine);
  if (!named.ok()) return named.status();
  // Whether each entry may replace the server holding its name.
  std::vector<bool> may_replace(file.servers.size());
  for (size_t i = 0; i < file.servers.size(); ++i) {
    auto it = named->find(file.servers[i].name);
    may_replace[i] = it != named->end() && FromConfig(it->second);
  }
  // Dry run: a file the engine refuses anywhere changes nothing. A name held
  // by a server not from the file is a conflict, reported when applying.
  for (size_t i = 0; i < file.servers.size(); ++i) {
    ServerSpec spec = file.servers[i];
    spec.dry_run = true;
    spec.replace = true;
    absl::StatusOr<ServerInfo> checked = Await<absl::StatusOr<ServerInfo>>(
        [&](auto done) { engine.StartServer(spec, std::move(done)); });
    if (!checked.ok()) {
      return absl::Status(
          checked.status().code(),
          absl::StrCat(Where(file, i), checked.status().message()));
    }
  }
  ConfigApplyResult result;
  absl::flat_hash_set<std::string> listed;
  for (size_t i = 0; i < file.servers.size(); ++i) {
    ServerSpec spec = file.servers[i];
    listed.insert(spec.name);
    spec.replace = may_replace[i];
    absl::StatusOr<ServerInfo> started = Await<absl::StatusOr<ServerInfo>>(
        [&](auto done) { engine.StartServer(spec, std::move(done)); });
    if (!started.ok()) {
      std::string why(started.status().message());
      if (started.status().code() == absl::StatusCode::kAlreadyExists &&
          !may_replace[i] && named->contains(spec.name)) {
        why = absl::StrCat(why,
                           " (that server was not started by the file: "
                           "left alone)");
      }
      LogEvent(LogLevel::kError, "config_server",
               {{"name", spec.name}, {"action", "failed"}, {"msg", why}});
      result.errors.push_back(absl::StrCat(spec.name, ": ", why));
      continue;
    }
    const char* action = "unchanged";
    switch (started->start_outcome) {
      case StartOutcome::kCreated:
        action = "created";
        ++result.created;
        break;
      case StartOutcome::kReplaced:
        action = "replaced";
        ++result.replaced;
        break;
      case StartOutcome::kUnchanged:
        ++result.unchanged;
        break;
    }
    if (started->start_outcome != StartOutcome::kUnchanged) {
      LogEvent(LogLevel::kInfo, "config_server",
               {{"name", spec.name},
                {"action", action},
                {"id", started->id},
                {"address", started->local_addresses.empty()
                                ? std::string()
                                : started->local_addresses[0].ToString()},
                {"difference", started->start_difference}});
    }
  }
  for (const auto& [name, server] : *named) {
    if (!FromConfig(server) || listed.contains(name)) continue;
    Selector selector;
    selector.name = name;
    absl::StatusOr<StopResult> stopped =
        Await<absl::StatusOr<StopResult>>([&](auto done) {
          engine.StopServers(selector, /*close_connections=*/false,
                             std::move(done));
        });
    if (!stopped.ok()) {
      // Stopped meanwhile (TTL, StopServer): nothing left to do.
      if (stopped.status().code() == absl::StatusCode::kNotFound) continue;
      result.errors.push_back(
          absl::StrCat(name, ": ", stopped.status().message()));
      continue;
    }
    ++result.stopped;
    LogEvent(LogLevel::kInfo, "config_server",
             {{"name", name}, {"action", "stopped"}, {"id", server.id}});
  }
  LogEvent(result.errors.empty() ? LogLevel::kInfo : LogLevel::kError,
           "config_applied",
           {{"path", file.path},
            {"created", absl::StrCat(result.created)},
            {"replaced", absl::StrCat(result.replaced)},
            {"unchanged", absl::StrCat(result.unchanged)},
            {"stopped", absl::StrCat(result.stopped)},
            {"failed", absl::StrCat(result.errors.size())}});
  return result;
}

}  // namespace sockagent
