// Running one verb on many agents at once (`--agent A --agent B`, or
// `--inventory FILE`): the agents with their names and clients, and the
// runner that calls every agent concurrently, then prints one table with an
// AGENT column in front (or, with --json, one line per agent) and reports a
// failed agent on stderr without stopping the others.
//
//   int RunHostnameOnEvery(Fleet& fleet) {
//     return RunOnEveryAgent(fleet, {"HOSTNAME"},
//                            [](AgentClient& client, AgentOutput& out) {
//       auto info = std::make_unique<HostInfo>();
//       grpc::Status s = ...GetHostInfo(..., info.get());
//       out.rows.push_back({info->hostname()});
//       out.json = std::move(info);
//       return s;
//     });
//   }
//   // AGENT  HOSTNAME
//   // web-1  web-1.example.net
//   // sockctl: db-1: UNAVAILABLE: cannot reach the agent: ...   (stderr)
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "cli/client.h"

namespace google::protobuf {
class Message;
}  // namespace google::protobuf

namespace sockctl {

// Agents called at once by RunOnEveryAgent; the others wait their turn.
inline constexpr size_t kMaxAgentsInFlight = 32;

struct FleetMember {
  std::string name;       // For the AGENT column and messages.
  GlobalOptions options;  // Its address and token; shared --timeout, --json.
};

// The agents of one invocation, in the order given. Built on the main
// thread; client(i) may then be used from any thread (gRPC stubs are
// thread-safe and AgentClient's methods are const).
class Fleet final {
 public:
  explicit Fleet(std::vector<FleetMember> members);

  size_t size() const { return clients_.size(); }
  const std::string& name(size_t i) const { return names_[i]; }
  AgentClient& client(size_t i) const { return *clients_[i]; }
  bool json() const { return json_; }

 private:
  std::vector<std::string> names_;
  std::vector<std::unique_ptr<AgentClient>> clients_;
  bool json_ = false;
};

// What one agent answered, ready to print.
struct AgentOutput {
  // The --json "response" object; may stay null when the call failed.
  std::unique_ptr<google::protobuf::Message> json;
  // Table rows without the AGENT cell.
  std::vector<std::vector<std::string>> rows;
  // kExitOk, or the verb's verdict on an answer that is not a failed call
  // (health: kExitFailure when not SERVING).
  int exit_code = kExitOk;
};

// Makes the call(s) for one agent and fills the output; runs on a worker
// thread, so it must not print. Returns the first failed call's status;
// the output of an agent whose call failed is not printed.
using AgentCall = std::function<grpc::Status(AgentClient&, AgentOutput&)>;

// Runs `call` on every agent, at most kMaxAgentsInFlight at once, and
// returns once all have answered. Then, in agent order: each failed agent's
// line on stderr (`sockctl: NAME: CODE: message`); and on stdout either one
// JSON line per agent, {"agent":NAME,"response":{...}} or
// {"agent":NAME,"error":{"code":CODE,"message":...}}, or one table of
// AGENT + `header` with every agent's rows. An empty `header` is the quiet
// form: "NAME CELL..." lines, no header. Returns the exit code of the first
// agent (in agent order) that failed, or kExitOk.
int RunOnEveryAgent(const Fleet& fleet, const std::vector<std::string>& header,
                    const AgentCall& call);

// `sockctl: NAME: [WHAT: ]CODE: message` on stderr.
void ReportAgentFailure(absl::string_view name, const CallFailure& failure,
                        absl::string_view what = "");

}  // namespace sockctl
