// Sixteen agents in namespaces (tests/support/topology.h) and the real
// sockctl: the TCP+UDP matrix all OK; one agent firewalled; --expect
// converging on the blocked cells with only those re-probed; an expectation
// that cannot be met ending at its --deadline; and nothing of any run left
// on any agent. Without root or namespaces: SKIPPED with the reason.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <iostream>
#include <memory>
#include <regex>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "tests/support/topology.h"

namespace sockagent::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr int kAgents = 16;
constexpr int kCells = kAgents * (kAgents - 1) * 2;  // TCP and UDP.

size_t Count(const std::string& text, const std::regex& re) {
  return static_cast<size_t>(
      std::distance(std::sregex_iterator(text.begin(), text.end(), re),
                    std::sregex_iterator()));
}

// sockctl -v's "probing took D" line, in seconds; -1 when missing.
double ProbingSeconds(const std::string& err) {
  std::smatch m;
  if (!std::regex_search(err, m, std::regex("probing took ([0-9.]+)s"))) {
    return -1;
  }
  double seconds = -1;
  return absl::SimpleAtod(m[1].str(), &seconds) ? seconds : -1;
}

class Fleet16 : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    reason_ = new std::string();
    std::vector<std::string> names;
    for (int i = 1; i <= kAgents; ++i) {
      names.push_back(absl::StrFormat("agent-%02d", i));
    }
    auto topo = Topology::Build(names, 8);
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
    inventory_ = dir_.path() + "/inventory";
    std::ofstream(inventory_) << topo_->Inventory();
  }

  // Nothing of any run is left on any agent.
  void ExpectNothingLeft() {
    for (const char* what : {"server", "conn"}) {
      CommandResult r =
          topo_->Ctl({"--inventory", inventory_, what, "list", "-q"});
      EXPECT_EQ(r.exit_code, 0) << r.err;
      EXPECT_EQ(r.out, "") << what;
    }
  }

  static Topology* topo_;
  static std::string* reason_;
  TempDir dir_;
  std::string inventory_;
};
Topology* Fleet16::topo_ = nullptr;
std::string* Fleet16::reason_ = nullptr;

TEST_F(Fleet16, MatrixAllOkFirewallConvergesAndTheDeadlineHolds) {
  const std::vector<std::string> matrix = {
      "--inventory", inventory_, "matrix", "--tcp",
      "--udp",       "--port",   "9100",   "--timeout-per-probe",
      "1s",          "-v"};
  std::vector<std::string> args = matrix;
  args.insert(args.end(), {"-o", "json"});
  CommandResult all_ok = topo_->Ctl(args);
  ASSERT_EQ(all_ok.exit_code, 0) << all_ok.out << all_ok.err;
  EXPECT_EQ(Count(all_ok.out, std::regex(R"("result":\s*"OK")")), kCells)
      << all_ok.out;
  ExpectNothingLeft();

  // The last agent drops everything sent to the echo servers' port.
  Node& walled = topo_->node("agent-16");
  const absl::Status firewall = DropIncoming(walled, "th", 9100);
  ASSERT_TRUE(firewall.ok()) << firewall;

  // Converges: the blocked cells are expected to time out.
  const std::string blocked = dir_.path() + "/blocked";
  std::ofstream(blocked) << "* agent-16 * TIMEOUT\n";
  args = matrix;
  args.insert(args.end(), {"--expect", blocked, "--deadline", "20s"});
  CommandResult converged = topo_->Ctl(args);
  EXPECT_EQ(converged.exit_code, 0) << converged.out << converged.err;
  // All 30 TIMEOUT cells cost one probe timeout together: one round.
  EXPECT_THAT(converged.err, Not(HasSubstr("re-probing")));
  const double one_round = ProbingSeconds(converged.err);
  std::cout << "converging run: probing took " << one_round << " s\n";
  EXPECT_GE(one_round, 1.0) << converged.err;
  EXPECT_LT(one_round, 5.0) << converged.err;

  // Cannot converge: every cell expected OK. Only the 30 cells into the
  // walled agent are re-probed, and probing ends at the deadline.
  const std::string all_ok_file = dir_.path() + "/all-ok";
  std::ofstream(all_ok_file) << "# every cell OK\n";
  args = matrix;
  args.insert(args.end(), {"--expect", all_ok_file, "--deadline", "3s"});
  CommandResult differs = topo_->Ctl(args);
  EXPECT_EQ(differs.exit_code, 1) << differs.out << differs.err;
  EXPECT_THAT(differs.err, HasSubstr("re-probing 30 cells"));
  EXPECT_THAT(differs.err,
              HasSubstr("agent-01 -> agent-16 udp: expected OK, got TIMEOUT"));
  EXPECT_THAT(differs.err, HasSubstr("30 of 480 cells still differ"));
  const double probing = ProbingSeconds(differs.err);
  std::cout << "3 s deadline: probing took " << probing << " s\n";
  EXPECT_GE(probing, 2.5) << differs.err;
  EXPECT_LE(probing, 3.5) << differs.err;

  RunCommand(walled.netns->Exec({"nft", "delete", "table", "inet", "satest"}));
  ExpectNothingLeft();
}

}  // namespace
}  // namespace sockagent::testing
