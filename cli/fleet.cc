#include "cli/fleet.h"

#include <google/protobuf/message.h>

#include <cstdio>
#include <iostream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cli/output.h"
#include "cli/parallel.h"

namespace sockctl {

Fleet::Fleet(std::vector<FleetMember> members) {
  if (!members.empty()) json_ = members.front().options.json;
  for (FleetMember& member : members) {
    names_.push_back(std::move(member.name));
    clients_.push_back(
        std::make_unique<AgentClient>(std::move(member.options)));
  }
}

void ReportAgentFailure(absl::string_view name, const CallFailure& failure,
                        absl::string_view what) {
  std::string line = absl::StrCat("sockctl: ", name, ": ");
  if (!what.empty()) absl::StrAppend(&line, what, ": ");
  absl::StrAppend(&line, failure.code);
  const std::string detail = failure.Detail();
  if (!detail.empty()) absl::StrAppend(&line, ": ", detail);
  std::fprintf(stderr, "%s\n", line.c_str());
}

int RunOnEveryAgent(const Fleet& fleet, const std::vector<std::string>& header,
                    const AgentCall& call) {
  std::vector<AgentOutput> outputs(fleet.size());
  std::vector<grpc::Status> statuses(fleet.size());
  ForEachBounded(fleet.size(), kMaxAgentsInFlight, [&](size_t i) {
    statuses[i] = call(fleet.client(i), outputs[i]);
  });

  int rc = kExitOk;
  std::string json_lines;
  for (size_t i = 0; i < fleet.size(); ++i) {
    const std::string agent = JsonString(fleet.name(i));
    int agent_rc = outputs[i].exit_code;
    if (!statuses[i].ok()) {
      const CallFailure failure = fleet.client(i).Describe(statuses[i]);
      ReportAgentFailure(fleet.name(i), failure);
      agent_rc = failure.exit_code;
      absl::StrAppend(&json_lines, "{\"agent\":", agent,
                      ",\"error\":{\"code\":", JsonString(failure.code),
                      ",\"message\":", JsonString(failure.Detail()), "}}\n");
    } else if (fleet.json() && outputs[i].json != nullptr) {
      std::string response;
      if (FormatJson(*outputs[i].json, &response)) {
        absl::StrAppend(&json_lines, "{\"agent\":", agent,
                        ",\"response\":", response, "}\n");
      } else if (agent_rc == kExitOk) {
        agent_rc = kExitFailure;  // Said on stderr.
      }
    }
    if (rc == kExitOk) rc = agent_rc;
  }

  bool any_answer = false;
  for (const grpc::Status& status : statuses) any_answer |= status.ok();
  if (fleet.json()) {
    std::cout << json_lines;
  } else if (!any_answer) {
    // Only failures, all said on stderr: no table of nothing.
  } else if (header.empty()) {
    std::string lines;
    for (size_t i = 0; i < fleet.size(); ++i) {
      if (!statuses[i].ok()) continue;
      for (const auto& row : outputs[i].rows) {
        absl::StrAppend(&lines, fleet.name(i), " ", absl::StrJoin(row, " "),
                        "\n");
      }
    }
    std::cout << lines;
  } else {
    std::vector<std::string> columns = {"AGENT"};
    columns.insert(columns.end(), header.begin(), header.end());
    Table table(std::move(columns));
    for (size_t i = 0; i < fleet.size(); ++i) {
      if (!statuses[i].ok()) continue;
      for (auto& row : outputs[i].rows) {
        row.insert(row.begin(), fleet.name(i));
        table.AddRow(std::move(row));
      }
    }
    table.Print(std::cout);
  }
  std::cout.flush();
  return rc;
}

}  // namespace sockctl
