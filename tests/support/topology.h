// A fleet of agents and a CLI host built from network namespaces the test
// creates and always removes, like docker-compose.yml across hosts:
//
//   ns agent-a ─┐                each node: a veth to a bridge that lives
//   ns agent-b ─┼── br0 (own ns) in a namespace of its own, an address in
//   ...         │                198.18.N.0/24 (the benchmark range, RFC
//   ns cli    ──┘                2544), which exists only inside them
//
// Every node has an /etc/netns hosts file naming the others, so agents
// resolve each other by name, and permanent neighbour entries for all of
// them (a fully meshed fleet would otherwise fill the kernel's shared ARP
// table). sockagentd runs in each agent namespace on ADDRESS:7878 with a
// bearer token of its own (--token-file); sockctl runs in the CLI node.
//
//   auto topo = Topology::Build({"agent-a", "agent-b"}, 7);
//   if (!topo.ok()) GTEST_SKIP() << topo.status().message();
//   CommandResult r = (*topo)->Ctl({"--inventory", inv, "matrix"});
#ifndef SOCKAGENT_TESTS_SUPPORT_TOPOLOGY_H_
#define SOCKAGENT_TESTS_SUPPORT_TOPOLOGY_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tests/support/agent_process.h"
#include "tests/support/netns.h"
#include "tests/support/subprocess.h"

namespace sockagent::testing {

struct Node {
  std::string name;  // Host name, e.g. "agent-a".
  std::string ip;
  std::unique_ptr<TestNetns> netns;
  std::unique_ptr<AgentProcess> agent;  // Null for the CLI node.
  std::string token_file;               // This agent's; "" for the CLI.
};

class Topology {
 public:
  // Agents named `agents` (at most 200) at 198.18.<subnet>.11, .12, ...,
  // and a node "cli" after them. Fails (the caller skips) without root or
  // namespaces; the status says why.
  static absl::StatusOr<std::unique_ptr<Topology>> Build(
      const std::vector<std::string>& agents, int subnet);

  // sockctl run in the CLI namespace.
  CommandResult Ctl(const std::vector<std::string>& args,
                    absl::Duration timeout = absl::Seconds(120));

  // The node named `name` (the CLI node for an unknown name).
  Node& node(const std::string& name);
  const std::vector<std::string>& agents() const { return agents_; }
  // "NAME NAME:7878 token-file=FILE" per agent, for --inventory.
  std::string Inventory() const;

 private:
  Topology() = default;
  absl::Status Must(const std::vector<std::string>& argv);
  absl::Status Wire(Node& node, size_t index);

  // Declared first so it is destroyed last: agents stop before the
  // namespaces they run in disappear.
  std::unique_ptr<TestNetns> bridge_;
  std::vector<std::unique_ptr<Node>> nodes_;
  std::vector<std::string> agents_;
  int subnet_ = 0;
  TempDir secrets_;  // The agents' token files.
};

// A firewall inside `node`'s namespace: nft drops every packet arriving for
// `port` ("tcp", "udp", or "th" for both). It goes with the namespace.
absl::Status DropIncoming(const Node& node, const std::string& proto,
                          uint16_t port);

}  // namespace sockagent::testing

#endif  // SOCKAGENT_TESTS_SUPPORT_TOPOLOGY_H_
