// Three agents and a CLI host, like docker-compose.yml, but built from
// network namespaces this test creates and always removes:
//
//   sa-a ─┐                      each node: veth to a bridge that lives in
//   sa-b ─┼── br0 (in sa-br)     its own namespace, address in 198.18.7.0/24
//   sa-c ─┤                      (the benchmark range, RFC 2544), which exists
//   sa-cli┘                      only inside these namespaces
//
// Every node has an /etc/netns hosts file naming the others, so agents
// resolve each other by name. sockagentd runs in each agent namespace with
// a bearer token of its own (--token-file, as a fleet across hosts should
// run); the real sockctl runs in sa-cli and names each agent's token file
// (--token-file, or token-file= in the inventory).
// Without root or namespaces the whole suite reports SKIPPED with the
// reason.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tests/support/agent_process.h"
#include "tests/support/netns.h"

namespace sockagent::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kSubnet[] = "198.18.7.";
constexpr char kPrefix[] = "/24";

struct Node {
  std::string name;  // Host name, e.g. "agent-a".
  std::string ip;
  std::unique_ptr<TestNetns> netns;
  std::unique_ptr<AgentProcess> agent;  // Null for the CLI node.
  std::string token_file;               // This agent's; "" for the CLI.
};

class Topology {
 public:
  static absl::StatusOr<std::unique_ptr<Topology>> Build() {
    auto topo = std::unique_ptr<Topology>(new Topology());
    auto bridge = TestNetns::Create("sa-br", "", "");
    if (!bridge.ok()) return bridge.status();
    topo->bridge_ = *std::move(bridge);
    if (absl::Status s = topo->Must(topo->bridge_->Exec(
            {"ip", "link", "add", "br0", "type", "bridge"}));
        !s.ok()) {
      return s;
    }
    if (absl::Status s =
            topo->Must(topo->bridge_->Exec({"ip", "link", "set", "br0", "up"}));
        !s.ok()) {
      return s;
    }
    const std::vector<std::string> names = {"agent-a", "agent-b", "agent-c",
                                            "cli"};
    std::string hosts = "127.0.0.1 localhost\n";
    for (size_t i = 0; i < names.size(); ++i) {
      absl::StrAppend(&hosts, kSubnet, 11 + i, " ", names[i], "\n");
    }
    // No DNS server exists in these namespaces: names come from hosts.
    const std::string resolv = "nameserver 127.0.0.1\noptions attempts:1\n";
    for (size_t i = 0; i < names.size(); ++i) {
      auto node = std::make_unique<Node>();
      node->name = names[i];
      node->ip = absl::StrCat(kSubnet, 11 + i);
      auto ns = TestNetns::Create("sa-" + names[i].substr(names[i].size() - 1),
                                  hosts, resolv);
      if (!ns.ok()) return ns.status();
      node->netns = *std::move(ns);
      if (absl::Status s = topo->Wire(*node, i); !s.ok()) return s;
      topo->nodes_.push_back(std::move(node));
    }
    for (auto& node : topo->nodes_) {
      if (node->name == "cli") continue;
      node->token_file = topo->secrets_.path() + "/" + node->name + ".token";
      std::ofstream(node->token_file)
          << "token-of-" << node->name << "-7c1e9a\n";
      chmod(node->token_file.c_str(), 0600);
      auto agent = AgentProcess::Start({"--listen=" + node->ip + ":7878",
                                        "--token-file=" + node->token_file},
                                       node->netns->name());
      if (!agent.ok()) return agent.status();
      node->agent = *std::move(agent);
    }
    return topo;
  }

  // sockctl run in the CLI namespace.
  CommandResult Ctl(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {SOCKCTL_PATH};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(node("cli").netns->Exec(argv), "", absl::Seconds(120));
  }

  Node& node(const std::string& name) {
    for (auto& n : nodes_) {
      if (n->name == name) return *n;
    }
    return *nodes_.back();
  }

 private:
  absl::Status Must(const std::vector<std::string>& argv) {
    CommandResult r = RunCommand(argv);
    if (r.exit_code == 0) return absl::OkStatus();
    std::string cmd;
    for (const auto& a : argv) absl::StrAppend(&cmd, a, " ");
    return absl::FailedPreconditionError(absl::StrCat(cmd, "failed: ", r.err));
  }

  // A veth pair: one end in the node (with its address), one on the bridge.
  absl::Status Wire(Node& node, size_t index) {
    const std::string tag = absl::StrCat(getpid() % 100000, "x", index);
    const std::string inside = "sv" + tag, outside = "sb" + tag;
    for (const auto& argv : std::vector<std::vector<std::string>>{
             {"ip", "link", "add", inside, "type", "veth", "peer", "name",
              outside},
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

  // Declared first so it is destroyed last: agents stop before the
  // namespaces they run in disappear.
  std::unique_ptr<TestNetns> bridge_;
  std::vector<std::unique_ptr<Node>> nodes_;
  TempDir secrets_;  // The agents' token files.
};

class MultihostTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    reason_ = new std::string();
    auto topo = Topology::Build();
    if (!topo.ok()) {
      *reason_ = std::string(topo.status().message());
      return;
    }
    topo_ = topo->release();
  }
  static void TearDownTestSuite() {
    delete topo_;
    delete reason_;
    topo_ = nullptr;
  }
  void SetUp() override {
    if (topo_ == nullptr) GTEST_SKIP() << "SKIPPED: " << *reason_;
  }

  // sockctl against one agent; expects success and returns stdout.
  std::string On(const std::string& agent, std::vector<std::string> args) {
    args.insert(args.begin(), {"--agent", agent + ":7878", "--token-file",
                               topo_->node(agent).token_file});
    CommandResult r = topo_->Ctl(args);
    EXPECT_EQ(r.exit_code, 0) << agent << " " << args[2] << ": " << r.err;
    std::string out = r.out;
    while (!out.empty() && out.back() == '\n') out.pop_back();
    return out;
  }

  // The three agents, each with its own token file.
  static std::string Inventory() {
    std::string text;
    for (const char* name : {"agent-a", "agent-b", "agent-c"}) {
      absl::StrAppend(&text, name, " ", name,
                      ":7878 token-file=", topo_->node(name).token_file, "\n");
    }
    return text;
  }

  static Topology* topo_;
  static std::string* reason_;
};
Topology* MultihostTest::topo_ = nullptr;
std::string* MultihostTest::reason_ = nullptr;

TEST_F(MultihostTest, TcpServerOnOneAgentClientOnAnother) {
  const std::string server =
      On("agent-a", {"server", "start", "-q", "--any", "--port", "9000"});
  const std::string client =
      On("agent-b", {"client", "open", "-q", "agent-a", "9000"});
  std::string accepted;
  ASSERT_TRUE(WaitFor([&] {
    accepted = On("agent-a", {"conn", "list", "-q", "--server", server});
    return !accepted.empty();
  }));
  // The accepted connection's peer is agent-b's address.
  EXPECT_THAT(On("agent-a", {"conn", "list", "--server", server}),
              HasSubstr(topo_->node("agent-b").ip + ":"));
  On("agent-b", {"send", client, "from b"});
  EXPECT_EQ(
      On("agent-a", {"recv", accepted, "--exactly", "6", "--wait", "10s"}),
      "from b");
  On("agent-a", {"send", accepted, "from a"});
  EXPECT_EQ(On("agent-b", {"recv", client, "--exactly", "6", "--wait", "10s"}),
            "from a");
  On("agent-a", {"server", "stop", server, "--close-connections"});
  On("agent-b", {"close", client});
}

TEST_F(MultihostTest, UdpEchoAcrossAgents) {
  const std::string server = On(
      "agent-c",
      {"server", "start", "-q", "--udp", "--any", "--port", "9001", "--echo"});
  const std::string client =
      On("agent-a", {"client", "open", "-q", "--udp", "agent-c", "9001"});
  On("agent-a", {"send", client, "datagram"});
  EXPECT_EQ(On("agent-a", {"recv", client, "--wait", "10s"}), "datagram");
  EXPECT_THAT(On("agent-c", {"conn", "list", "--server", server}),
              HasSubstr(topo_->node("agent-a").ip + ":"));
  On("agent-c", {"server", "stop", server});
  On("agent-a", {"close", client});
}

TEST_F(MultihostTest, AgentResolvesAnotherByName) {
  const std::string out =
      On("agent-a", {"resolve", "-4", "--type", "stream", "agent-b"});
  EXPECT_THAT(out, HasSubstr(topo_->node("agent-b").ip));
}

TEST_F(MultihostTest, FanOutLabelsRowsWithAgentNames) {
  TempDir dir;
  const std::string inventory = dir.path() + "/inventory";
  std::ofstream(inventory) << "# name address\n" << Inventory();
  CommandResult r = topo_->Ctl({"--inventory", inventory, "hostname"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* name : {"agent-a", "agent-b", "agent-c"}) {
    EXPECT_THAT(r.out, HasSubstr(name));
  }
}

TEST_F(MultihostTest, MatrixAllOkThenFirewallShowsExactlyTheBlockedCells) {
  TempDir dir;
  const std::string inventory = dir.path() + "/inventory";
  std::ofstream(inventory) << Inventory();
  const std::vector<std::string> matrix = {
      "--inventory", inventory, "matrix", "--tcp",
      "--udp",       "--port",  "9100",   "--timeout-per-probe",
      "1s"};
  CommandResult all_ok = topo_->Ctl(matrix);
  ASSERT_EQ(all_ok.exit_code, 0) << all_ok.out << all_ok.err;
  for (const char* bad :
       {"TIMEOUT", "REFUSED", "UNREACHABLE", "DNS", "ERROR"}) {
    EXPECT_THAT(all_ok.out, Not(HasSubstr(bad))) << all_ok.out;
  }

  // agent-c drops incoming TCP to the probe port; UDP still passes.
  Node& c = topo_->node("agent-c");
  for (const auto& argv : std::vector<std::vector<std::string>>{
           {"nft", "add", "table", "inet", "satest"},
           {"nft", "add", "chain", "inet", "satest", "input",
            "{ type filter hook input priority 0; policy accept; }"},
           {"nft", "add", "rule", "inet", "satest", "input", "tcp", "dport",
            "9100", "drop"}}) {
    CommandResult r = RunCommand(c.netns->Exec(argv));
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }

  const std::string expect_blocked = dir.path() + "/blocked";
  std::ofstream(expect_blocked) << "* agent-c tcp TIMEOUT\n";
  std::vector<std::string> args = matrix;
  args.insert(args.end(), {"--expect", expect_blocked, "--deadline", "20s"});
  CommandResult blocked = topo_->Ctl(args);
  EXPECT_EQ(blocked.exit_code, 0) << blocked.out << blocked.err;
  EXPECT_THAT(blocked.out, HasSubstr("TIMEOUT"));

  const std::string expect_all_ok = dir.path() + "/all-ok";
  std::ofstream(expect_all_ok) << "# every cell OK\n";
  args = matrix;
  args.insert(args.end(), {"--expect", expect_all_ok, "--deadline", "3s"});
  CommandResult differs = topo_->Ctl(args);
  EXPECT_EQ(differs.exit_code, 1) << differs.out << differs.err;
  const std::string report = differs.out + differs.err;
  EXPECT_THAT(report,
              HasSubstr("agent-a -> agent-c tcp: expected OK, got TIMEOUT"));
  EXPECT_THAT(report,
              HasSubstr("agent-b -> agent-c tcp: expected OK, got TIMEOUT"));
  EXPECT_THAT(report, Not(HasSubstr("udp: expected")));
  EXPECT_THAT(report, Not(HasSubstr("-> agent-a")));
  EXPECT_THAT(report, Not(HasSubstr("-> agent-b")));

  RunCommand(c.netns->Exec({"nft", "delete", "table", "inet", "satest"}));
  // The matrix cleaned up after itself on every agent.
  for (const char* agent : {"agent-a", "agent-b", "agent-c"}) {
    EXPECT_EQ(On(agent, {"server", "list", "-q"}), "") << agent;
    EXPECT_EQ(On(agent, {"conn", "list", "-q"}), "") << agent;
  }
}

// --tls: every pair verifies with the run's CA. Dialling agent-c at
// agent-b's address (a wrong --target-host, as when a name points at the
// wrong service) reaches agent-b's server, whose certificate does not name
// that address: exactly the cells into agent-c fail, as TLS, in words.
TEST_F(MultihostTest, MatrixTlsVerifiesEveryPairAndCatchesTheWrongService) {
  TempDir dir;
  const std::string inventory = dir.path() + "/inventory";
  std::ofstream(inventory) << Inventory();
  const std::vector<std::string> matrix = {
      "--inventory",         inventory, "matrix", "--tls", "--port", "9102",
      "--timeout-per-probe", "2s"};
  CommandResult all_ok = topo_->Ctl(matrix);
  ASSERT_EQ(all_ok.exit_code, 0) << all_ok.out << all_ok.err;
  EXPECT_THAT(all_ok.out, Not(HasSubstr("TLS"))) << all_ok.out;

  std::vector<std::string> args = matrix;
  args.insert(args.end(),
              {"--target-host", "agent-c=" + topo_->node("agent-b").ip});
  CommandResult wrong = topo_->Ctl(args);
  EXPECT_EQ(wrong.exit_code, 1) << wrong.out << wrong.err;
  EXPECT_THAT(wrong.out, HasSubstr("TLS: wrong name"));
  const std::string report = wrong.out + wrong.err;
  EXPECT_THAT(report,
              HasSubstr("agent-a -> agent-c tcp: expected OK, got TLS"));
  EXPECT_THAT(report,
              HasSubstr("agent-b -> agent-c tcp: expected OK, got TLS"));
  EXPECT_THAT(report, Not(HasSubstr("-> agent-a")));
  EXPECT_THAT(report, Not(HasSubstr("-> agent-b")));
  for (const char* agent : {"agent-a", "agent-b", "agent-c"}) {
    EXPECT_EQ(On(agent, {"server", "list", "-q"}), "") << agent;
    EXPECT_EQ(On(agent, {"conn", "list", "-q"}), "") << agent;
  }
}

}  // namespace
}  // namespace sockagent::testing
