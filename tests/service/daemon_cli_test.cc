#include "service/daemon_cli.h"

#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/agent_process.h"

namespace sockagent {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(PrepareDaemonArgs, DashesBecomeUnderscoresInNamesOnly) {
  auto args =
      PrepareDaemonArgs({"sockagentd", "--max-servers=3",
                         "--listen=unix:/tmp/a-b", "-h", "--", "--not-a-flag"});
  ASSERT_TRUE(args.ok()) << args.status();
  EXPECT_THAT(*args, ElementsAre("sockagentd", "--max_servers=3",
                                 "--listen=unix:/tmp/a-b", "--help", "--",
                                 "--not-a-flag"));
}

TEST(PrepareDaemonArgs, FlagFilesAreExpandedWithDashedNames) {
  testing::TempDir dir;
  const std::string inner = dir.path() + "/inner.flags";
  const std::string outer = dir.path() + "/outer.flags";
  std::ofstream(inner) << "--max-servers=7\n";
  std::ofstream(outer) << "# settings\n\n  --log-level=debug  \n--flagfile="
                       << inner << "\n--allow-dest=127.0.0.0/8\n";
  auto args = PrepareDaemonArgs(
      {"sockagentd", "--flagfile", outer, "--shutdown-grace=1s"});
  ASSERT_TRUE(args.ok()) << args.status();
  EXPECT_THAT(*args,
              ElementsAre("sockagentd", "--log_level=debug", "--max_servers=7",
                          "--allow_dest=127.0.0.0/8", "--shutdown_grace=1s"));
}

TEST(PrepareDaemonArgs, UnreadableOrLoopingFlagFilesAreRefused) {
  testing::TempDir dir;
  auto missing =
      PrepareDaemonArgs({"sockagentd", "--flagfile=" + dir.path() + "/none"});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(missing.status().message(), HasSubstr("cannot be read"));
  const std::string self = dir.path() + "/self.flags";
  std::ofstream(self) << "--flagfile=" << self << "\n";
  auto loop = PrepareDaemonArgs({"sockagentd", "--flagfile=" + self});
  EXPECT_EQ(loop.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(loop.status().message(), HasSubstr("nest more than 8 deep"));
}

TEST(HelpOrVersionText, OnlyWhenAsked) {
  EXPECT_FALSE(HelpOrVersionText({"sockagentd", "--insecure"}).has_value());
  EXPECT_FALSE(HelpOrVersionText({"sockagentd", "--", "--help"}).has_value());
  auto version = HelpOrVersionText({"sockagentd", "--version"});
  ASSERT_TRUE(version.has_value());
  EXPECT_THAT(*version, HasSubstr("sockagentd " SOCKAGENT_VERSION));
}

}  // namespace
}  // namespace sockagent
