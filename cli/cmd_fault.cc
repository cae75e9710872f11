// `fault add|update|remove|list`: network trouble on the agent's own
// connections (the AddFault, UpdateFault, RemoveFault, ListFaults RPCs),
// on one agent or on every agent of a fleet at once.
//
//   sockctl fault add srv-3 latency -p latency=20ms -p jitter=5ms
//   NAME         TYPE     TARGET  DIRECTION  TOXICITY  CONNS  PARAMETERS
//   latency-1a2  latency  srv-3   sent       1         2      latency=20ms ...
//   sockctl fault remove --all
//
// Parameters are the proto's field names (toxiproxy's attribute names):
// latency, jitter, rate (bytes/s), average_size, size_variation, delay,
// bytes, timeout, probability. Durations as 20ms, 1s, 1m.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <functional>
#include <iostream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "cli/args.h"
#include "cli/client.h"
#include "cli/commands.h"
#include "cli/fleet.h"
#include "cli/output.h"

namespace sockctl {
namespace {

namespace v1 = sockagent::v1;

struct FaultArgs {
  std::string target;
  std::string name;
  std::string type;
  std::vector<std::string> params;
  std::string direction;
  double toxicity = -1;  // Not given.
  uint64_t seed = 0;
  std::vector<std::string> labels;
  std::vector<std::string> selector;  // remove
  bool all = false;                   // remove
};

absl::Status SetDuration(const std::string& key, const std::string& value,
                         google::protobuf::Duration* out) {
  return ParseDurationFlag(absl::StrCat("-p ", key), value, out);
}

absl::Status SetCount(const std::string& key, const std::string& value,
                      uint64_t* out) {
  if (!absl::SimpleAtoi(value, out)) {
    return absl::InvalidArgumentError(
        absl::StrCat("-p ", key, "=", value, ": not a whole number"));
  }
  return absl::OkStatus();
}

absl::Status SetParam(v1::Fault& f, const std::string& key,
                      const std::string& value) {
  const auto unknown = [&] {
    return absl::InvalidArgumentError(absl::StrCat(
        "-p ", key, ": not a parameter of ", f.type_case() ? "this type" : "?",
        " (see sockctl fault add --help)"));
  };
  uint64_t n = 0;
  switch (f.type_case()) {
    case v1::Fault::kLatency:
      if (key == "latency")
        return SetDuration(key, value, f.mutable_latency()->mutable_latency());
      if (key == "jitter")
        return SetDuration(key, value, f.mutable_latency()->mutable_jitter());
      return unknown();
    case v1::Fault::kBandwidth:
      if (key != "rate" && key != "rate_bytes_per_second") return unknown();
      if (absl::Status s = SetCount(key, value, &n); !s.ok()) return s;
      f.mutable_bandwidth()->set_rate_bytes_per_second(n);
      return absl::OkStatus();
    case v1::Fault::kSlicer:
      if (key == "delay")
        return SetDuration(key, value, f.mutable_slicer()->mutable_delay());
      if (key != "average_size" && key != "size_variation") return unknown();
      if (absl::Status s = SetCount(key, value, &n); !s.ok()) return s;
      if (key == "average_size") {
        f.mutable_slicer()->set_average_size(n);
      } else {
        f.mutable_slicer()->set_size_variation(n);
      }
      return absl::OkStatus();
    case v1::Fault::kLimitData:
      if (key != "bytes") return unknown();
      if (absl::Status s = SetCount(key, value, &n); !s.ok()) return s;
      f.mutable_limit_data()->set_bytes(n);
      return absl::OkStatus();
    case v1::Fault::kResetPeer:
      if (key != "timeout") return unknown();
      return SetDuration(key, value, f.mutable_reset_peer()->mutable_timeout());
    case v1::Fault::kTimeout:
      if (key != "timeout") return unknown();
      return SetDuration(key, value, f.mutable_timeout()->mutable_timeout());
    case v1::Fault::kSlowClose:
      if (key != "delay") return unknown();
      return SetDuration(key, value, f.mutable_slow_close()->mutable_delay());
    case v1::Fault::kDrop:
    case v1::Fault::kDuplicate: {
      if (key != "probability") return unknown();
      double p = 0;
      if (!absl::SimpleAtod(value, &p)) {
        return absl::InvalidArgumentError(
            absl::StrCat("-p ", key, "=", value, ": not a number"));
      }
      if (f.type_case() == v1::Fault::kDrop) {
        f.mutable_drop()->set_probability(p);
      } else {
        f.mutable_duplicate()->set_probability(p);
      }
      return absl::OkStatus();
    }
    case v1::Fault::kDelay:
      if (key == "delay")
        return SetDuration(key, value, f.mutable_delay()->mutable_delay());
      if (key == "jitter")
        return SetDuration(key, value, f.mutable_delay()->mutable_jitter());
      return unknown();
    default:
      return unknown();
  }
}

absl::Status SetType(v1::Fault& f, const std::string& type) {
  if (type == "latency") {
    f.mutable_latency();
  } else if (type == "bandwidth") {
    f.mutable_bandwidth();
  } else if (type == "slicer") {
    f.mutable_slicer();
  } else if (type == "limit_data") {
    f.mutable_limit_data();
  } else if (type == "reset_peer") {
    f.mutable_reset_peer();
  } else if (type == "timeout") {
    f.mutable_timeout();
  } else if (type == "slow_close") {
    f.mutable_slow_close();
  } else if (type == "drop") {
    f.mutable_drop();
  } else if (type == "duplicate") {
    f.mutable_duplicate();
  } else if (type == "delay") {
    f.mutable_delay();
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown fault type \"", type,
        "\": latency, bandwidth, slicer, limit_data, reset_peer, timeout, "
        "slow_close (TCP, UNIX); drop, duplicate, delay (UDP)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::Fault> BuildFault(const FaultArgs& args, bool with_target) {
  v1::Fault f;
  if (absl::Status s = SetType(f, args.type); !s.ok()) return s;
  for (const std::string& p : args.params) {
    std::pair<std::string, std::string> kv = absl::StrSplit(p, '=');
    if (kv.first.empty() || p.find('=') == std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("-p \"", p, "\": give KEY=VALUE"));
    }
    if (absl::Status s = SetParam(f, kv.first, kv.second); !s.ok()) return s;
  }
  if (with_target) {
    const std::string& t = args.target;
    if (absl::StartsWith(t, "srv-")) {
      f.mutable_target()->set_server_id(t);
    } else if (absl::StartsWith(t, "conn-")) {
      f.mutable_target()->set_connection_id(t);
    } else {
      std::vector<std::string> words = absl::StrSplit(t, ',');
      if (absl::Status s =
              ParseLabels(words, f.mutable_target()->mutable_label_selector());
          !s.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "TARGET \"", t, "\": give srv-N, conn-N or KEY=VALUE[,KEY=VALUE]"));
      }
    }
  }
  if (args.name.empty()) {
    // A readable default: the type and a short unique tail.
    f.set_name(
        absl::StrCat(absl::StrReplaceAll(args.type, {{"_", "-"}}), "-",
                     absl::Hex(absl::ToUnixMicros(absl::Now()) & 0xffffff)));
  } else {
    f.set_name(args.name);
  }
  if (!args.direction.empty()) {
    const std::string& d = args.direction;
    if (d == "sent") {
      f.set_direction(v1::FAULT_DIRECTION_SENT);
    } else if (d == "received") {
      f.set_direction(v1::FAULT_DIRECTION_RECEIVED);
    } else if (d == "up" || d == "upstream") {
      f.set_direction(v1::FAULT_DIRECTION_UPSTREAM);
    } else if (d == "down" || d == "downstream") {
      f.set_direction(v1::FAULT_DIRECTION_DOWNSTREAM);
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("--direction \"", d, "\": up, down, sent or received"));
    }
  }
  if (args.toxicity >= 0) f.set_toxicity(args.toxicity);
  f.set_seed(args.seed);
  if (absl::Status s = ParseLabels(args.labels, f.mutable_labels()); !s.ok()) {
    return s;
  }
  return f;
}

std::string Dur(const google::protobuf::Duration& d) {
  return absl::FormatDuration(absl::Seconds(d.seconds()) +
                              absl::Nanoseconds(d.nanos()));
}

std::string TypeAndParams(const v1::Fault& f, std::string* params) {
  switch (f.type_case()) {
    case v1::Fault::kLatency:
      *params = absl::StrCat("latency=", Dur(f.latency().latency()),
                             " jitter=", Dur(f.latency().jitter()));
      return "latency";
    case v1::Fault::kBandwidth:
      *params = absl::StrCat("rate=", f.bandwidth().rate_bytes_per_second());
      return "bandwidth";
    case v1::Fault::kSlicer:
      *params = absl::StrCat("average_size=", f.slicer().average_size(),
                             " size_variation=", f.slicer().size_variation(),
                             " delay=", Dur(f.slicer().delay()));
      return "slicer";
    case v1::Fault::kLimitData:
      *params = absl::StrCat("bytes=", f.limit_data().bytes());
      return "limit_data";
    case v1::Fault::kResetPeer:
      *params = absl::StrCat("timeout=", Dur(f.reset_peer().timeout()));
      return "reset_peer";
    case v1::Fault::kTimeout:
      *params = absl::StrCat("timeout=", Dur(f.timeout().timeout()));
      return "timeout";
    case v1::Fault::kSlowClose:
      *params = absl::StrCat("delay=", Dur(f.slow_close().delay()));
      return "slow_close";
    case v1::Fault::kDrop:
      *params = absl::StrCat("probability=", f.drop().probability());
      return "drop";
    case v1::Fault::kDuplicate:
      *params = absl::StrCat("probability=", f.duplicate().probability());
      return "duplicate";
    case v1::Fault::kDelay:
      *params = absl::StrCat("delay=", Dur(f.delay().delay()),
                             " jitter=", Dur(f.delay().jitter()));
      return "delay";
    default:
      return "?";
  }
}

std::string TargetText(const v1::FaultTarget& t) {
  if (!t.server_id().empty()) return t.server_id();
  if (!t.connection_id().empty()) return t.connection_id();
  std::vector<std::string> words;
  for (const auto& [k, v] : t.label_selector()) {
    words.push_back(absl::StrCat(k, "=", v));
  }
  std::sort(words.begin(), words.end());
  return absl::StrJoin(words, ",");
}

std::string DirectionText(v1::FaultDirection d) {
  switch (d) {
    case v1::FAULT_DIRECTION_UPSTREAM:
      return "upstream";
    case v1::FAULT_DIRECTION_DOWNSTREAM:
      return "downstream";
    case v1::FAULT_DIRECTION_RECEIVED:
      return "received";
    default:
      return "sent";
  }
}

const std::vector<std::string>& Header() {
  static const auto* const kHeader = new std::vector<std::string>{
      "NAME", "TYPE", "TARGET", "DIRECTION", "TOXICITY", "CONNS", "PARAMETERS"};
  return *kHeader;
}

std::vector<std::string> Row(const v1::Fault& f) {
  std::string params;
  std::string type = TypeAndParams(f, &params);
  return {f.name(),
          type,
          TargetText(f.target()),
          DirectionText(f.direction()),
          absl::StrCat(f.toxicity()),
          absl::StrCat(f.connections()),
          params};
}

template <typename Response>
int Print(AgentClient& client, const Response& response,
          std::vector<std::vector<std::string>> rows,
          const std::vector<std::string>& header) {
  const OutputFormat format = client.options().output;
  if (format == OutputFormat::kJson || format == OutputFormat::kYaml) {
    return PrintStructured(std::cout, response, format) ? kExitOk
                                                        : kExitFailure;
  }
  Table table(header);
  for (auto& row : rows) table.AddRow(std::move(row));
  table.Print(std::cout);
  return kExitOk;
}

// One call per verb, shared by the one-agent and the fleet forms.
using FaultCall = std::function<grpc::Status(
    AgentClient&, std::unique_ptr<google::protobuf::Message>*,
    std::vector<std::vector<std::string>>*)>;

int RunOne(AgentClient& client, const FaultCall& call,
           const std::vector<std::string>& header) {
  std::unique_ptr<google::protobuf::Message> response;
  std::vector<std::vector<std::string>> rows;
  grpc::Status s = call(client, &response, &rows);
  if (!s.ok()) return client.Fail(s);
  return Print(client, *response, std::move(rows), header);
}

int RunEvery(Fleet& fleet, const FaultCall& call,
             const std::vector<std::string>& header) {
  return RunOnEveryAgent(fleet, header,
                         [&](AgentClient& client, AgentOutput& out) {
                           return call(client, &out.response, &out.rows);
                         });
}

void AddVerb(CLI::App* app, Commands& commands, FaultCall call,
             std::vector<std::string> header) {
  auto shared = std::make_shared<FaultCall>(std::move(call));
  auto cols = std::make_shared<std::vector<std::string>>(std::move(header));
  commands.push_back(
      {app,
       [shared, cols](AgentClient& client) {
         return RunOne(client, *shared, *cols);
       },
       [shared, cols](Fleet& fleet) { return RunEvery(fleet, *shared, *cols); },
       kStructuredOutputs});
}

void AddFaultOptions(CLI::App* cmd, FaultArgs& args) {
  cmd->add_option("-p,--param", args.params,
                  "KEY=VALUE, repeatable: latency, jitter (latency); rate "
                  "(bandwidth, bytes/s); average_size, size_variation, delay "
                  "(slicer); bytes (limit_data); timeout (reset_peer, "
                  "timeout); delay (slow_close); probability (drop, "
                  "duplicate: UDP); delay, jitter (delay: UDP)");
  cmd->add_option("--direction", args.direction,
                  "sent (default), received (what the agent reads), "
                  "up|upstream (connections the agent opened), "
                  "down|downstream (accepted connections)");
  cmd->add_option("--toxicity", args.toxicity,
                  "Probability (0..1) that a connection gets it; default 1")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--seed", args.seed,
                  "Makes the toxicity roll and the randomness reproducible");
  cmd->add_option("--label", args.labels,
                  "KEY=VALUE label of the fault itself (for fault remove "
                  "--label)");
}

}  // namespace

void AddFaultCommands(CLI::App& app, Commands& commands) {
  CLI::App* fault = app.add_subcommand(
      "fault",
      "Network trouble on the agent's own connections (toxiproxy's toxics): "
      "latency, bandwidth, slicer, limit_data, reset_peer, timeout, "
      "slow_close");
  fault->require_subcommand(1);

  auto add_args = std::make_shared<FaultArgs>();
  CLI::App* add = fault->add_subcommand(
      "add",
      "Add a fault on TARGET (srv-N: its connections now and later; conn-N; "
      "or KEY=VALUE[,KEY=VALUE]: matching connections now and later)\n"
      "  sockctl fault add srv-1 latency -p latency=20ms -p jitter=5ms\n"
      "  sockctl fault add app=web bandwidth -p rate=1000000 --toxicity 0.5");
  add->add_option("TARGET", add_args->target, "srv-N, conn-N or KEY=VALUE,...")
      ->required();
  add->add_option("TYPE", add_args->type,
                  "latency, bandwidth, slicer, limit_data, reset_peer, "
                  "timeout, slow_close")
      ->required();
  add->add_option("--name", add_args->name,
                  "Unique per agent (DNS label); default TYPE-<hex>");
  AddFaultOptions(add, *add_args);
  AddVerb(
      add, commands,
      [add_args](AgentClient& client,
                 std::unique_ptr<google::protobuf::Message>* out,
                 std::vector<std::vector<std::string>>* rows) {
        absl::StatusOr<v1::Fault> f = BuildFault(*add_args, true);
        if (!f.ok()) {
          return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                              std::string(f.status().message()));
        }
        v1::AddFaultRequest request;
        *request.mutable_fault() = *std::move(f);
        auto response = std::make_unique<v1::AddFaultResponse>();
        auto ctx = client.NewContext();
        grpc::Status s =
            client.agent().AddFault(ctx.get(), request, response.get());
        if (s.ok()) rows->push_back(Row(response->fault()));
        *out = std::move(response);
        return s;
      },
      Header());

  auto update_args = std::make_shared<FaultArgs>();
  CLI::App* update = fault->add_subcommand(
      "update",
      "Replace the type and parameters of fault NAME (its target stays)\n"
      "  sockctl fault update slow latency -p latency=100ms");
  update->add_option("NAME", update_args->name, "The fault's name")->required();
  update->add_option("TYPE", update_args->type, "As for fault add")->required();
  AddFaultOptions(update, *update_args);
  AddVerb(
      update, commands,
      [update_args](AgentClient& client,
                    std::unique_ptr<google::protobuf::Message>* out,
                    std::vector<std::vector<std::string>>* rows) {
        absl::StatusOr<v1::Fault> f = BuildFault(*update_args, false);
        if (!f.ok()) {
          return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                              std::string(f.status().message()));
        }
        v1::UpdateFaultRequest request;
        *request.mutable_fault() = *std::move(f);
        auto response = std::make_unique<v1::UpdateFaultResponse>();
        auto ctx = client.NewContext();
        grpc::Status s =
            client.agent().UpdateFault(ctx.get(), request, response.get());
        if (s.ok()) rows->push_back(Row(response->fault()));
        *out = std::move(response);
        return s;
      },
      Header());

  auto remove_args = std::make_shared<FaultArgs>();
  CLI::App* remove = fault->add_subcommand(
      "remove",
      "Remove fault NAME, every fault matching --label, or --all; the bytes "
      "they delayed leave at once, in order");
  remove->add_option("NAME", remove_args->name, "The fault's name");
  remove->add_option("--label", remove_args->selector,
                     "KEY=VALUE selector on the faults' own labels");
  remove->add_flag("--all", remove_args->all, "Every fault of the agent");
  AddVerb(remove, commands,
          [remove_args](AgentClient& client,
                        std::unique_ptr<google::protobuf::Message>* out,
                        std::vector<std::vector<std::string>>* rows) {
            v1::RemoveFaultRequest request;
            const int given = (remove_args->name.empty() ? 0 : 1) +
                              (remove_args->selector.empty() ? 0 : 1) +
                              (remove_args->all ? 1 : 0);
            if (given != 1) {
              return grpc::Status(
                  grpc::StatusCode::INVALID_ARGUMENT,
                  "fault remove takes a NAME, --label KEY=VALUE or --all "
                  "(exactly one of them)");
            }
            request.set_name(remove_args->name);
            request.set_all(remove_args->all);
            if (absl::Status s = ParseLabels(remove_args->selector,
                                             request.mutable_label_selector());
                !s.ok()) {
              return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                  std::string(s.message()));
            }
            auto response = std::make_unique<v1::RemoveFaultResponse>();
            auto ctx = client.NewContext();
            grpc::Status s =
                client.agent().RemoveFault(ctx.get(), request, response.get());
            for (const std::string& n : response->names()) rows->push_back({n});
            *out = std::move(response);
            return s;
          },
          {"REMOVED"});

  CLI::App* list = fault->add_subcommand("list", "The agent's faults");
  AddVerb(
      list, commands,
      [](AgentClient& client, std::unique_ptr<google::protobuf::Message>* out,
         std::vector<std::vector<std::string>>* rows) {
        auto response = std::make_unique<v1::ListFaultsResponse>();
        auto ctx = client.NewContext();
        grpc::Status s = client.agent().ListFaults(
            ctx.get(), v1::ListFaultsRequest(), response.get());
        for (const v1::Fault& f : response->faults()) rows->push_back(Row(f));
        *out = std::move(response);
        return s;
      },
      Header());
}

}  // namespace sockctl
