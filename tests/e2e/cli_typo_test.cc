// sockctl names a mistyped verb or flag and suggests the closest one, like
// git and kubectl, before talking to any agent.
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/agent_process.h"

namespace sockagent::testing {
namespace {

using ::testing::HasSubstr;

TEST(SockctlTypos, NamesTheWordAndSuggestsTheClosest) {
  // Nothing listens here: a usage error must come before any call.
  const std::string nowhere = "unix:/nonexistent/sockagent-typo.sock";
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  for (const Case& c : std::vector<Case>{
           {{"sever", "list"}, "unknown verb 'sever' (did you mean 'server'?)"},
           {{"server", "lst"},
            "unknown verb 'lst' for 'server' (did you mean 'list'?)"},
           {{"server", "start", "--eco"},
            "server start: unknown flag '--eco' (did you mean '--echo'?)"},
           {{"conn", "list", "--lable", "a=b"},
            "conn list: unknown flag '--lable' (did you mean '--label'?)"},
       }) {
    CommandResult r = RunSockctl(nowhere, c.args);
    EXPECT_EQ(r.exit_code, 2) << c.message << ": " << r.err;
    EXPECT_THAT(r.err, HasSubstr(c.message));
    EXPECT_EQ(r.out, "");
  }
}

}  // namespace
}  // namespace sockagent::testing
