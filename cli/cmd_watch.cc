// `sockctl watch`: the agent's live events (the Watch stream), one line per
// event, or one JSON object per line with -o json (a "---" YAML document
// each with -o yaml). Runs until Ctrl-C, until
// --count events arrived, or for --for DURATION; the call has no deadline
// otherwise.
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdint>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "cli/args.h"
#include "cli/client.h"
#include "cli/commands.h"
#include "cli/output.h"
#include "cli/proto_text.h"

namespace sockctl {
namespace {

using sockagent::v1::Event;
using sockagent::v1::EventKind;
using sockagent::v1::WatchRequest;

constexpr char kKindPrefix[] = "EVENT_KIND_";

struct WatchArgs {
  std::string server;
  std::string conn;
  std::vector<std::string> kinds;
  std::vector<std::string> labels;
  uint32_t data = 0;
  bool snapshot = false;
  uint64_t count = 0;
  std::string for_duration;
};

// "accepted", "data-received", "CONNECTION_CLOSED", ... -> EventKind.
absl::StatusOr<EventKind> KindFromWord(const std::string& word) {
  std::string name = absl::AsciiStrToUpper(word);
  absl::StrReplaceAll({{"-", "_"}}, &name);
  static const std::pair<const char*, const char*> kShort[] = {
      {"ACCEPTED", "CONNECTION_ACCEPTED"},
      {"CONNECTED", "CONNECTION_CONNECTED"},
      {"CLOSED", "CONNECTION_CLOSED"},
      {"PEER_CLOSED", "CONNECTION_PEER_CLOSED"},
      {"DROPPED", "DATAGRAM_DROPPED"},
      {"LOST", "EVENTS_LOST"},
  };
  for (const auto& [alias, full] : kShort) {
    if (name == alias) name = full;
  }
  EventKind kind;
  if (!sockagent::v1::EventKind_Parse(kKindPrefix + name, &kind) ||
      kind == sockagent::v1::EVENT_KIND_UNSPECIFIED) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown event kind '", word,
        "' (accepted, connected, closed, peer-closed, data-received, "
        "data-sent, dropped, error, lost, server-started, server-stopped)"));
  }
  return kind;
}

// EVENT_KIND_DATA_RECEIVED -> "data-received".
std::string KindWord(EventKind kind) {
  std::string name = sockagent::v1::EventKind_Name(kind);
  if (name.rfind(kKindPrefix, 0) == 0) name.erase(0, sizeof(kKindPrefix) - 1);
  name = absl::AsciiStrToLower(name);
  absl::StrReplaceAll({{"_", "-"}}, &name);
  return name;
}

std::string EventLine(const Event& e) {
  const absl::Time t = absl::FromUnixSeconds(e.time().seconds()) +
                       absl::Nanoseconds(e.time().nanos());
  std::string line =
      absl::StrCat(absl::FormatTime("%H:%M:%E3S", t, absl::LocalTimeZone()),
                   "  #", e.seq(), "  ", KindWord(e.kind()));
  if (!e.server_id().empty()) absl::StrAppend(&line, "  ", e.server_id());
  if (!e.connection_id().empty()) {
    absl::StrAppend(&line, "  ", e.connection_id());
  }
  if (e.has_connection() && !e.connection().remote().ip().empty()) {
    absl::StrAppend(&line, "  remote=", FormatAddress(e.connection().remote()));
  } else if (e.has_peer() && !e.peer().ip().empty()) {
    absl::StrAppend(&line, "  peer=", FormatAddress(e.peer()));
  }
  if (e.has_server() && e.server().local_addresses_size() > 0) {
    absl::StrAppend(&line,
                    "  at=", FormatAddresses(e.server().local_addresses()));
  }
  if (e.size() != 0) absl::StrAppend(&line, "  size=", e.size());
  if (e.kind() == sockagent::v1::EVENT_KIND_EVENTS_LOST) {
    absl::StrAppend(&line, "  lost=", e.lost());
  }
  if (e.close_reason() != sockagent::v1::CLOSE_REASON_UNSPECIFIED &&
      e.has_connection()) {
    absl::StrAppend(&line, "  reason=", CloseReasonText(e.connection()));
  }
  if (!e.message().empty()) absl::StrAppend(&line, "  \"", e.message(), "\"");
  if (!e.data().empty()) {
    absl::StrAppend(&line, "  data=\"", absl::CHexEscape(e.data()), "\"");
  }
  return line;
}

int RunWatch(AgentClient& client, const WatchArgs& args) {
  WatchRequest request;
  request.set_server_id(args.server);
  request.set_connection_id(args.conn);
  for (const std::string& word : args.kinds) {
    for (absl::string_view part : absl::StrSplit(word, ',')) {
      if (part.empty()) continue;
      auto kind = KindFromWord(std::string(part));
      if (!kind.ok()) return UsageError(kind.status().message());
      request.add_kinds(*kind);
    }
  }
  if (absl::Status s =
          ParseLabels(args.labels, request.mutable_label_selector());
      !s.ok()) {
    return UsageError(s.message());
  }
  request.set_include_data_bytes(args.data);
  request.set_snapshot(args.snapshot);

  auto ctx = client.NewContext();
  if (args.for_duration.empty()) {
    ctx->set_deadline(std::chrono::system_clock::time_point::max());
  } else {
    auto d = ParseDurationFlag("--for", args.for_duration);
    if (!d.ok()) return UsageError(d.status().message());
    ctx->set_deadline(std::chrono::system_clock::now() +
                      absl::ToChronoNanoseconds(*d));
  }
  auto reader = client.agent().Watch(ctx.get(), request);
  Event event;
  uint64_t seen = 0;
  while (reader->Read(&event)) {
    if (client.options().output != OutputFormat::kTable) {
      if (!PrintStructured(std::cout, event, client.options().output,
                           /*stream=*/true)) {
        return kExitFailure;
      }
    } else {
      std::cout << EventLine(event) << "\n";
    }
    std::cout.flush();
    if (args.count != 0 && ++seen >= args.count) {
      ctx->TryCancel();
      reader->Finish();  // CANCELLED by us: not an error.
      return kExitOk;
    }
  }
  grpc::Status status = reader->Finish();
  // --for elapsed: the watch ran as long as asked.
  if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED &&
      !args.for_duration.empty()) {
    return kExitOk;
  }
  return status.ok() ? kExitOk : client.Fail(status);
}

}  // namespace

void AddWatchCommands(CLI::App& app, Commands& commands) {
  auto args = std::make_shared<WatchArgs>();
  CLI::App* watch = app.add_subcommand(
      "watch",
      "Live events: servers started/stopped, connections accepted/"
      "connected/closed, data, drops. Runs until Ctrl-C, --count or --for");
  watch->add_option("--server", args->server,
                    "Only this server's events and its connections'");
  watch->add_option("--conn", args->conn, "Only this connection's events");
  watch->add_option("--kind", args->kinds,
                    "Only these kinds (comma-separated or repeated): "
                    "accepted, connected, closed, peer-closed, data-received, "
                    "data-sent, dropped, error, lost, server-started, "
                    "server-stopped");
  watch->add_option("--label", args->labels,
                    "k=v: only objects with these labels (repeatable)");
  watch->add_option("--data", args->data,
                    "Include up to N first bytes of each data event");
  watch->add_flag("--snapshot", args->snapshot,
                  "Start with the current servers and connections");
  watch->add_option("--count", args->count, "Stop after N events");
  watch->add_option("--for", args->for_duration,
                    "Stop after this long (e.g. 30s); default: until Ctrl-C");
  commands.push_back(
      {watch, [args](AgentClient& client) { return RunWatch(client, *args); },
       nullptr, kStructuredOutputs});
}

}  // namespace sockctl
