#include "tests/support/topology.h"

#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace sockagent::testing {
namespace {

constexpr char kPrefix[] = "/24";
constexpr size_t kMaxAgents = 200;

// A fixed MAC per node, so that every node can know every other's.
std::string Mac(int subnet, size_t index) {
  return absl::StrFormat("02:5a:%02x:00:00:%02x", subnet & 0xff, index & 0xff);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Topology>> Topology::Build(
    const std::vector<std::string>& agents, int subnet) {
  if (agents.empty() || agents.size() > kMaxAgents || subnet < 0 ||
      subnet > 255) {
    return absl::InvalidArgumentError("1 to 200 agents, subnet 0..255");
  }
  auto topo = std::unique_ptr<Topology>(new Topology());
  topo->agents_ = agents;
  topo->subnet_ = subnet;
  auto bridge = TestNetns::Create("sa-br", "", "");
  if (!bridge.ok()) return bridge.status();
  topo->bridge_ = *std::move(bridge);
  for (const auto& argv : std::vector<std::vector<std::string>>{
           topo->bridge_->Exec({"ip", "link", "add", "br0", "type", "bridge"}),
           topo->bridge_->Exec({"ip", "link", "set", "br0", "up"})}) {
    if (absl::Status s = topo->Must(argv); !s.ok()) return s;
  }
  std::vector<std::string> names = agents;
  names.push_back("cli");
  const std::string subnet_prefix = absl::StrCat("198.18.", subnet, ".");
  std::string hosts = "127.0.0.1 localhost\n";
  for (size_t i = 0; i < names.size(); ++i) {
    absl::StrAppend(&hosts, subnet_prefix, 11 + i, " ", names[i], "\n");
  }
  // No DNS server exists in these namespaces: names come from hosts.
  const std::string resolv = "nameserver 127.0.0.1\noptions attempts:1\n";
  for (size_t i = 0; i < names.size(); ++i) {
    auto node = std::make_unique<Node>();
    node->name = names[i];
    node->ip = absl::StrCat(subnet_prefix, 11 + i);
    auto ns = TestNetns::Create(absl::StrCat("sa", i), hosts, resolv);
    if (!ns.ok()) return ns.status();
    node->netns = *std::move(ns);
    if (absl::Status s = topo->Wire(*node, i); !s.ok()) return s;
    topo->nodes_.push_back(std::move(node));
  }
  // Permanent neighbours: no ARP traffic, no table overflow. One `ip
  // -batch` per node.
  for (size_t i = 0; i < topo->nodes_.size(); ++i) {
    std::string batch;
    for (size_t j = 0; j < topo->nodes_.size(); ++j) {
      if (i == j) continue;
      absl::StrAppend(&batch, "neigh replace ", topo->nodes_[j]->ip, " lladdr ",
                      Mac(subnet, j), " dev eth0 nud permanent\n");
    }
    const std::vector<std::string> argv =
        topo->nodes_[i]->netns->Exec({"ip", "-batch", "-"});
    CommandResult r = RunCommand(argv, batch);
    if (r.exit_code != 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("ip -batch (neighbours) failed: ", r.err));
    }
  }
  for (auto& node : topo->nodes_) {
    if (node->name == "cli") continue;
    node->token_file = topo->secrets_.path() + "/" + node->name + ".token";
    std::ofstream(node->token_file) << "token-of-" << node->name << "-7c1e9a\n";
    chmod(node->token_file.c_str(), 0600);
    auto agent = AgentProcess::Start(
        {"--listen=" + node->ip + ":7878", "--token-file=" + node->token_file},
        node->netns->name());
    if (!agent.ok()) return agent.status();
    node->agent = *std::move(agent);
  }
  return topo;
}

CommandResult Topology::Ctl(const std::vector<std::string>& args,
                            absl::Duration timeout) {
  std::vector<std::string> argv = {SOCKCTL_PATH};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(node("cli").netns->Exec(argv), "", timeout);
}

Node& Topology::node(const std::string& name) {
  for (auto& n : nodes_) {
    if (n->name == name) return *n;
  }
  return *nodes_.back();
}

std::string Topology::Inventory() const {
  std::string text;
  for (const auto& n : nodes_) {
    if (n->name == "cli") continue;
    absl::StrAppend(&text, n->name, " ", n->name,
                    ":7878 token-file=", n->token_file, "\n");
  }
  return text;
}

absl::Status Topology::Must(const std::vector<std::string>& argv) {
  CommandResult r = RunCommand(argv);
  if (r.exit_code == 0) return absl::OkStatus();
  std::string cmd;
  for (const auto& a : argv) absl::StrAppend(&cmd, a, " ");
  return absl::FailedPreconditionError(absl::StrCat(cmd, "failed: ", r.err));
}

// A veth pair: one end in the node (with its address), one on the bridge.
absl::Status Topology::Wire(Node& node, size_t index) {
  const std::string tag = absl::StrCat(getpid() % 100000, "x", index);
  const std::string inside = "sv" + tag, outside = "sb" + tag;
  for (const auto& argv : std::vector<std::vector<std::string>>{
           {"ip", "link", "add", inside, "address", Mac(subnet_, index), "type",
            "veth", "peer", "name", outside},
           {"ip", "link", "set", inside, "netns", node.netns->name()},
           {"ip", "link", "set", outside, "netns", bridge_->name()},
           bridge_->Exec({"ip", "link", "set", outside, "master", "br0"}),
           bridge_->Exec({"ip", "link", "set", outside, "up"}),
           node.netns->Exec({"ip", "link", "set", inside, "name", "eth0"}),
           node.netns->Exec(
               {"ip", "addr", "add", node.ip + kPrefix, "dev", "eth0"}),
           node.netns->Exec({"ip", "link", "set", "eth0", "up"}),
       }) {
    if (absl::Status s = Must(argv); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status DropIncoming(const Node& node, const std::string& proto,
                          uint16_t port) {
  for (const std::vector<std::string>& argv :
       std::vector<std::vector<std::string>>{
           {"nft", "add", "table", "inet", "satest"},
           {"nft", "add", "chain", "inet", "satest", "input",
            "{ type filter hook input priority 0; policy accept; }"},
           {"nft", "add", "rule", "inet", "satest", "input", proto, "dport",
            std::to_string(port), "drop"}}) {
    CommandResult r = RunCommand(node.netns->Exec(argv));
    if (r.exit_code != 0) {
      return absl::InternalError(absl::StrCat(absl::StrJoin(argv, " "), " in ",
                                              node.name, ": ", r.err));
    }
  }
  return absl::OkStatus();
}

}  // namespace sockagent::testing
