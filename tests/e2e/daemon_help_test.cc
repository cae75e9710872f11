// sockagentd's --help, -h, --version and flag files, as a user runs them.
#include <fstream>
#include <regex>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/agent_process.h"
#include "tests/support/subprocess.h"

namespace sockagent::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

CommandResult RunDaemon(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {SOCKAGENTD_PATH};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv, "", absl::Seconds(30));
}

TEST(DaemonHelp, HelpAndDashHListTheAgentsFlagsGroupedWithDefaults) {
  for (const std::string flag : {"--help", "-h", "--helpfull"}) {
    CommandResult r = RunDaemon({flag});
    EXPECT_EQ(r.exit_code, 0) << flag << ": " << r.err;
    EXPECT_THAT(r.out, HasSubstr("Usage: sockagentd [flags]")) << flag;
    for (const char* group :
         {"Listening and access", "Limits", "Policy", "Logging", "Lifecycle"}) {
      EXPECT_THAT(r.out, HasSubstr(std::string("\n") + group)) << flag;
    }
    EXPECT_THAT(r.out, HasSubstr("--listen (default \"\")"));
    EXPECT_THAT(r.out, HasSubstr("--log-level (default info)"));
    EXPECT_THAT(r.out, HasSubstr("--max-servers (default 1024)"));
    EXPECT_THAT(r.out, HasSubstr("--allow-dest (default \"\")"));
    EXPECT_THAT(r.out, HasSubstr("--shutdown-grace (default 5s)"));
    // Not Abseil's own flags, nor a build path.
    EXPECT_THAT(r.out, Not(HasSubstr("--fromenv")));
    EXPECT_THAT(r.out, Not(HasSubstr(".cc")));
  }
}

TEST(DaemonHelp, VersionPrintsTheVersion) {
  CommandResult r = RunDaemon({"--version"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(std::regex_match(
      r.out, std::regex("sockagentd [0-9]+\\.[0-9]+\\.[0-9]+( \\(git "
                        "[0-9a-f]+\\))?\n")))
      << r.out;
}

TEST(DaemonHelp, DashedFlagsInAFlagFileWork) {
  TempDir dir;
  const std::string file = dir.path() + "/agent.flags";
  std::ofstream(file) << "# a flag file as README shows it\n"
                         "--log-level=debug\n--max-servers=1\n";
  auto agent = AgentProcess::Start({"--flagfile=" + file});
  ASSERT_TRUE(agent.ok()) << agent.status();
  const std::string addr = (*agent)->address();
  CommandResult first = RunSockctl(addr, {"server", "start", "-q"});
  EXPECT_EQ(first.exit_code, 0) << first.err;
  // --max-servers=1 from the file: a second server is refused.
  CommandResult second = RunSockctl(addr, {"server", "start", "-q"});
  EXPECT_NE(second.exit_code, 0);
  EXPECT_THAT(second.err, HasSubstr("RESOURCE_EXHAUSTED"));
  // --log-level=debug from the file: every call's end is logged.
  ASSERT_TRUE((*agent)->Stop().ok());
  EXPECT_THAT((*agent)->Stderr(), HasSubstr("level=debug"));
}

}  // namespace
}  // namespace sockagent::testing
