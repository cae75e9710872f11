#include "cli/fleet.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>

#include <cstdio>
#include <iostream>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cli/output.h"
#include "cli/parallel.h"
#include "sockctl/output.pb.h"

namespace sockctl {

Fleet::Fleet(std::vector<FleetMember> members) {
  if (!members.empty()) output_ = members.front().options.output;
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

std::unique_ptr<google::protobuf::Message> FleetLine(
    absl::string_view agent, const google::protobuf::Message* response,
    const CallFailure* failure) {
  using google::protobuf::Descriptor;
  using google::protobuf::FieldDescriptor;
  // The Fleet* messages share AgentError's file; each has agent, response
  // (of the verb's response type) and error.
  const google::protobuf::FileDescriptor* file =
      sockctl::output::AgentError::descriptor()->file();
  const Descriptor* wanted =
      response != nullptr ? response->GetDescriptor() : nullptr;
  const Descriptor* line_type = nullptr;
  for (int i = 0; i < file->message_type_count() && line_type == nullptr; ++i) {
    const Descriptor* d = file->message_type(i);
    const FieldDescriptor* field = d->FindFieldByName("response");
    if (field != nullptr && d->FindFieldByName("agent") != nullptr &&
        field->message_type() != nullptr &&
        (wanted == nullptr || field->message_type() == wanted)) {
      line_type = d;
    }
  }
  if (line_type == nullptr) {
    std::fprintf(stderr, "sockctl: no fleet output message carries %s\n",
                 wanted->full_name().c_str());
    return nullptr;
  }
  std::unique_ptr<google::protobuf::Message> line(
      google::protobuf::MessageFactory::generated_factory()
          ->GetPrototype(line_type)
          ->New());
  const google::protobuf::Reflection* reflection = line->GetReflection();
  reflection->SetString(line.get(), line_type->FindFieldByName("agent"),
                        std::string(agent));
  if (failure != nullptr) {
    sockctl::output::AgentError error;
    error.set_code(failure->code);
    error.set_message(failure->Detail());
    reflection->MutableMessage(line.get(), line_type->FindFieldByName("error"))
        ->CopyFrom(error);
  } else {
    reflection
        ->MutableMessage(line.get(), line_type->FindFieldByName("response"))
        ->CopyFrom(*response);
  }
  return line;
}

int RunOnEveryAgent(const Fleet& fleet, const std::vector<std::string>& header,
                    const AgentCall& call) {
  std::vector<AgentOutput> outputs(fleet.size());
  std::vector<grpc::Status> statuses(fleet.size());
  ForEachBounded(fleet.size(), kMaxAgentsInFlight, [&](size_t i) {
    statuses[i] = call(fleet.client(i), outputs[i]);
  });

  const bool structured = fleet.output() == OutputFormat::kJson ||
                          fleet.output() == OutputFormat::kYaml;
  int rc = kExitOk;
  std::ostringstream documents;
  for (size_t i = 0; i < fleet.size(); ++i) {
    int agent_rc = outputs[i].exit_code;
    std::unique_ptr<google::protobuf::Message> line;
    if (!statuses[i].ok()) {
      const CallFailure failure = fleet.client(i).Describe(statuses[i]);
      ReportAgentFailure(fleet.name(i), failure);
      agent_rc = failure.exit_code;
      // An error line looks the same in every Fleet* message; the verb's
      // own when its (empty) response is there.
      if (structured) {
        line = FleetLine(fleet.name(i), outputs[i].response.get(), &failure);
      }
    } else if (structured && outputs[i].response != nullptr) {
      line = FleetLine(fleet.name(i), outputs[i].response.get(), nullptr);
    }
    if (structured && line != nullptr &&
        !PrintStructured(documents, *line, fleet.output(), /*stream=*/true)) {
      line = nullptr;  // Said on stderr.
    }
    if (structured && line == nullptr && agent_rc == kExitOk) {
      agent_rc = kExitFailure;
    }
    if (rc == kExitOk) rc = agent_rc;
  }

  bool any_answer = false;
  for (const grpc::Status& status : statuses) any_answer |= status.ok();
  if (structured) {
    std::cout << documents.str();
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
