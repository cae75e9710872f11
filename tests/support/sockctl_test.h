// A fixture base for end-to-end tests of sockctl: a fresh real sockagentd
// per test and the real sockctl pointed at it.
//
//   class CliThingTest : public SockctlTest {};
//   TEST_F(CliThingTest, ListsNothing) {
//     EXPECT_EQ(Ok({"-q", "server", "list"}), "");
//   }
#ifndef SOCKAGENT_TESTS_SUPPORT_SOCKCTL_TEST_H_
#define SOCKAGENT_TESTS_SUPPORT_SOCKCTL_TEST_H_

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_join.h"
#include "tests/support/agent_process.h"

namespace sockagent::testing {

class SockctlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto agent = AgentProcess::Start();
    ASSERT_TRUE(agent.ok()) << agent.status();
    agent_ = *std::move(agent);
  }

  // Runs sockctl with `args` (and `input` on its stdin).
  CommandResult Ctl(const std::vector<std::string>& args,
                    const std::string& input = "") {
    return RunSockctl(agent_->address(), args, input);
  }

  // Runs sockctl, expects exit 0, returns stdout.
  std::string Ok(const std::vector<std::string>& args,
                 const std::string& input = "") {
    CommandResult r = Ctl(args, input);
    EXPECT_EQ(r.exit_code, 0) << absl::StrJoin(args, " ") << ": " << r.err;
    return r.out;
  }

  std::unique_ptr<AgentProcess> agent_;
};

}  // namespace sockagent::testing

#endif  // SOCKAGENT_TESTS_SUPPORT_SOCKCTL_TEST_H_
