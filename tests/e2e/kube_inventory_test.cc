// `kubectl get pods -o json | sockctl inventory from-kubectl` end to end:
// the printed inventory drives real agents. The pod JSON stands in for
// kubectl (no cluster here), with the agents' loopback addresses as pod IPs.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tests/support/agent_process.h"
#include "tests/support/subprocess.h"

namespace sockagent::testing {
namespace {

using ::testing::HasSubstr;

TEST(KubeInventoryE2e, InventoryFromKubectlDrivesTheAgents) {
  TempDir dir;
  const std::string token = dir.path() + "/token";
  std::ofstream(token) << "kube-inventory-test-token-0123456789\n";
  std::vector<std::unique_ptr<AgentProcess>> agents;
  std::string items;
  for (int i = 0; i < 2; ++i) {
    auto agent = AgentProcess::Start({"--token-file=" + token});
    ASSERT_TRUE(agent.ok()) << agent.status();
    std::vector<std::string> host_port =
        absl::StrSplit((*agent)->address(), ':');
    ASSERT_EQ(host_port.size(), 2u);
    absl::StrAppend(
        &items, i ? "," : "", "{\"kind\":\"Pod\",\"metadata\":{\"name\":\"sa-",
        i, "\"},\"spec\":{\"nodeName\":\"node-", i,
        "\",\"containers\":[{\"name\":\"sockagentd\",\"ports\":[{\"name\":"
        "\"grpc\",\"containerPort\":",
        host_port[1],
        "}]}]},\"status\":{\"phase\":\"Running\",\"podIP\":\"127.0.0.1\","
        "\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\"}]}}");
    agents.push_back(*std::move(agent));
  }
  const std::string json =
      absl::StrCat("{\"kind\":\"List\",\"items\":[", items, "]}");
  CommandResult inv = RunCommand(
      {SOCKCTL_PATH, "inventory", "from-kubectl", "--token-file", token}, json);
  ASSERT_EQ(inv.exit_code, 0) << inv.err;
  const std::string fleet = dir.path() + "/fleet";
  std::ofstream(fleet) << inv.out;

  CommandResult r =
      RunCommand({SOCKCTL_PATH, "--inventory", fleet, "hostname"});
  ASSERT_EQ(r.exit_code, 0) << r.err << inv.out;
  EXPECT_THAT(r.out, HasSubstr("node-0"));
  EXPECT_THAT(r.out, HasSubstr("node-1"));

  // Nothing on stdin is a usage error that says what to pipe in.
  CommandResult empty =
      RunCommand({SOCKCTL_PATH, "inventory", "from-kubectl"}, "");
  EXPECT_EQ(empty.exit_code, 2);
  EXPECT_THAT(empty.err, HasSubstr("kubectl get pods"));
}

}  // namespace
}  // namespace sockagent::testing
