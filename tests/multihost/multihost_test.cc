// Three agents and a CLI host, like docker-compose.yml, but built from
// network namespaces this test creates and always removes
// (tests/support/topology.h): each agent has a bearer token of its own
// (--token-file, as a fleet across hosts should run); the real sockctl runs
// in the CLI node and names each agent's token file (--token-file, or
// token-file= in the inventory). Without root or namespaces the whole suite
// reports SKIPPED with the reason.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tests/support/topology.h"
#include "tests/support/wait.h"

namespace sockagent::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class MultihostTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    reason_ = new std::string();
    auto topo = Topology::Build({"agent-a", "agent-b", "agent-c"}, 7);
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
  static std::string Inventory() { return topo_->Inventory(); }

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
  const absl::Status firewall = DropIncoming(c, "tcp", 9100);
  ASSERT_TRUE(firewall.ok()) << firewall;

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
