#include "cli/labelled_run.h"

#include <algorithm>
#include <cstdio>
#include <random>

#include "absl/strings/str_format.h"
#include "cli/parallel.h"
#include "sockagent/v1/agent.grpc.pb.h"

namespace sockctl {

std::string NewRunId() {
  std::random_device random;
  return absl::StrFormat("%08x", random());
}

bool StopLabelledServers(const Fleet& fleet, const std::string& label,
                         const std::string& run,
                         const std::vector<std::atomic<bool>>& reached) {
  std::vector<char> failed(fleet.size(), 0);  // Not vector<bool>: threads.
  ForEachBounded(fleet.size(), kMaxAgentsInFlight, [&](size_t i) {
    if (!reached[i].load()) return;
    AgentClient& client = fleet.client(i);
    sockagent::v1::StopServerRequest stop;
    (*stop.mutable_label_selector())[label] = run;
    stop.set_close_connections(true);
    sockagent::v1::StopServerResponse stopped;
    auto ctx = client.NewContext();
    const grpc::Status s = client.agent().StopServer(ctx.get(), stop, &stopped);
    if (!s.ok()) {
      ReportAgentFailure(fleet.name(i), client.Describe(s), "cleanup");
      failed[i] = 1;
    }
  });
  if (std::count(failed.begin(), failed.end(), 1) == 0) return true;
  std::fprintf(stderr,
               "sockctl: what is left stops with: sockctl server stop "
               "--label %s=%s --close-connections (or at its TTL)\n",
               label.c_str(), run.c_str());
  return false;
}

}  // namespace sockctl
