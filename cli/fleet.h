// Running one verb on many agents at once (`--agent A --agent B`, or
// `--inventory FILE`): the agents with their names and clients, and the
// runner that calls every agent concurrently, then prints one table with an
// AGENT column in front (or, with -o json|yaml, one object per agent; with
// -o name|addr, "AGENT VALUE" lines) and reports a
// failed agent on stderr without stopping the others.
//
//   int RunHostnameOnEvery(Fleet& fleet) {
//     return RunOnEveryAgent(fleet, {"HOSTNAME"},
//                            [](AgentClient& client, AgentOutput& out) {
//       auto info = std::make_unique<HostInfo>();
//       grpc::Status s = ...GetHostInfo(..., info.get());
//       out.rows.push_back({info->hostname()});
//       out.response = std::make_unique<Hostname>(...);
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
#include "cli/output_format.h"

namespace google::protobuf {
class Message;
}  // namespace google::protobuf

namespace sockctl {

// Agents called at once by RunOnEveryAgent; the others wait their turn.
inline constexpr size_t kMaxAgentsInFlight = 32;

struct FleetMember {
  std::string name;       // For the AGENT column and messages.
  GlobalOptions options;  // Its address and token; shared --timeout, -o.
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
  OutputFormat output() const { return output_; }

 private:
  std::vector<std::string> names_;
  std::vector<std::unique_ptr<AgentClient>> clients_;
  OutputFormat output_ = OutputFormat::kTable;
};

// What one agent answered, ready to print.
struct AgentOutput {
  // The -o json|yaml "response" object; may stay null when the call failed.
  // Its type must be the `response` of one of the Fleet* messages of
  // cli/sockctl/output.proto.
  std::unique_ptr<google::protobuf::Message> response;
  // Table rows (or -o name|addr values) without the AGENT cell.
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
// object per agent (-o json: a line each; -o yaml: a "---" document each),
// {"agent":NAME,"response":{...}} or
// {"agent":NAME,"error":{"code":CODE,"message":...}} (the Fleet* messages of
// cli/sockctl/output.proto), or one table of AGENT + `header` with every
// agent's rows. An empty `header` is the form of -o name and -o addr:
// "NAME CELL..." lines, no header. Returns the exit code of the first
// agent (in agent order) that failed, or kExitOk.
int RunOnEveryAgent(const Fleet& fleet, const std::vector<std::string>& header,
                    const AgentCall& call);

// The Fleet* message of cli/sockctl/output.proto for one agent's line:
// `agent` and either `response` (copied; its type picks the message) or,
// when `failure` is given, the error. Null (said on stderr) when no Fleet*
// message carries the response's type.
std::unique_ptr<google::protobuf::Message> FleetLine(
    absl::string_view agent, const google::protobuf::Message* response,
    const CallFailure* failure);

// `sockctl: NAME: [WHAT: ]CODE: message` on stderr.
void ReportAgentFailure(absl::string_view name, const CallFailure& failure,
                        absl::string_view what = "");

}  // namespace sockctl
