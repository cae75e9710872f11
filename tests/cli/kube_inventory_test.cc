// `inventory from-kubectl`: kubectl's pod JSON in, an inventory out.
#include "cli/kube_inventory.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "cli/inventory.h"

namespace sockctl {
namespace {

using ::testing::HasSubstr;

std::string Pod(const std::string& name, const std::string& node,
                const std::string& phase, const std::string& ip,
                bool ready = true, const std::string& ports = "") {
  return "{\"kind\":\"Pod\",\"metadata\":{\"name\":\"" + name +
         "\",\"uid\":\"u\"},\"spec\":{\"nodeName\":\"" + node +
         "\",\"containers\":[{\"name\":\"sockagentd\",\"image\":\"x\","
         "\"ports\":[" +
         ports + "]}]},\"status\":{\"phase\":\"" + phase + "\",\"podIP\":\"" +
         ip +
         "\",\"conditions\":[{\"type\":\"Ready\","
         "\"status\":\"" +
         (ready ? "True" : "False") + "\"}]}}";
}

std::string List(const std::string& items) {
  return "{\"apiVersion\":\"v1\",\"kind\":\"List\",\"metadata\":{"
         "\"resourceVersion\":\"\"},\"items\":[" +
         items + "]}";
}

TEST(KubeInventory, OneLinePerRunningPodNamedAfterItsNode) {
  auto out = InventoryFromKubectl(
      List(Pod("sa-1", "node-a", "Running", "198.18.0.11", true,
               "{\"name\":\"grpc\",\"containerPort\":7979}") +
           "," + Pod("sa-2", "node-b", "Running", "fd00::12")),
      {.token_file = "tokens/fleet"});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out,
            "# sockctl inventory from-kubectl\n"
            "node-a 198.18.0.11:7979 token-file=tokens/fleet\n"
            "node-b [fd00::12]:7878 token-file=tokens/fleet\n");
  auto parsed = ParseInventory(*out);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ((*parsed)[1].address, "[fd00::12]:7878");
}

TEST(KubeInventory, PodsNotRunningAreCommentsAndNotReadyIsSaid) {
  auto out = InventoryFromKubectl(
      List(Pod("sa-1", "node-a", "Pending", "") + "," +
           Pod("sa-2", "node-b", "Running", "198.18.0.12", false)),
      {});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_THAT(*out, HasSubstr("# skipped sa-1: phase Pending, no pod IP\n"));
  EXPECT_THAT(*out,
              HasSubstr("node-b 198.18.0.12:7878  # pod sa-2 not Ready\n"));
}

TEST(KubeInventory, SecondPodOnANodeIsNamedAfterItselfAndNamesAreCleaned) {
  auto out = InventoryFromKubectl(
      List(Pod("sa-1", "node a", "Running", "198.18.0.11") + "," +
           Pod("sa-2", "node a", "Running", "198.18.0.12")),
      {});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_THAT(*out, HasSubstr("node-a 198.18.0.11:7878\n"));
  EXPECT_THAT(*out, HasSubstr("sa-2 198.18.0.12:7878\n"));
}

TEST(KubeInventory, ASinglePodIsAcceptedToo) {
  auto out =
      InventoryFromKubectl(Pod("sa-1", "", "Running", "198.18.0.11"), {});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_THAT(*out, HasSubstr("sa-1 198.18.0.11:7878\n"));
}

TEST(KubeInventory, RefusesWhatIsNotPodJson) {
  EXPECT_THAT(InventoryFromKubectl("not json", {}).status().message(),
              HasSubstr("not kubectl's JSON"));
  EXPECT_THAT(
      InventoryFromKubectl("{\"kind\":\"Service\"}", {}).status().message(),
      HasSubstr("is a 'Service', not a Pod or a List"));
  EXPECT_THAT(InventoryFromKubectl(List(Pod("sa-1", "n", "Pending", "")), {})
                  .status()
                  .message(),
              HasSubstr("no Running pod with an IP among the 1"));
  // Only text: the inventory is never dialled here.
  EXPECT_THAT(InventoryFromKubectl(
                  List(Pod("sa-1", "n", "Running", "1.2.3.4 evil=1")), {})
                  .status()
                  .message(),
              HasSubstr("is not an IP address"));
  EXPECT_THAT(InventoryFromKubectl(List(Pod("sa-1", "n", "Running", "::1")),
                                   {.token_file = "a b"})
                  .status()
                  .message(),
              HasSubstr("cannot hold whitespace"));
}

}  // namespace
}  // namespace sockctl
