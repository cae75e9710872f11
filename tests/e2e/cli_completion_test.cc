// `sockctl completion bash`: the script the real sockctl prints, sourced in
// a real bash and driven the way bash drives it on <TAB> (COMP_WORDS,
// COMP_CWORD, then the registered function), so a wrong script fails here.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "tests/support/agent_process.h"
#include "tests/support/subprocess.h"

namespace sockagent::testing {
namespace {

using ::testing::HasSubstr;

class CliCompletion : public ::testing::Test {
 protected:
  void SetUp() override {
    // No agent is called: the script comes from the CLI definition.
    CommandResult r = RunCommand({SOCKCTL_PATH, "completion", "bash"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    script_ = dir_.path() + "/sockctl.bash";
    std::ofstream(script_) << r.out;
  }

  // What bash offers for the words of `line` (the last one is being
  // completed; "" after a trailing space), one reply per line.
  std::string Complete(const std::string& words) {
    const std::string driver = absl::StrCat(
        "set -e\n"
        "source '",
        script_, "'\n",
        // The function `complete` registered for sockctl.
        "fn=$(complete -p sockctl | sed -n 's/.*-F \\([^ ]*\\) .*/\\1/p')\n"
        "COMP_WORDS=(",
        words,
        ")\n"
        "COMP_CWORD=$((${#COMP_WORDS[@]} - 1))\n"
        "COMP_LINE=\"${COMP_WORDS[*]}\"\n"
        "COMP_POINT=${#COMP_LINE}\n"
        "COMPREPLY=()\n"
        "\"$fn\" sockctl \"${COMP_WORDS[COMP_CWORD]}\" "
        "\"${COMP_WORDS[COMP_CWORD-1]}\"\n"
        "if ((${#COMPREPLY[@]})); then printf '%s\\n' \"${COMPREPLY[@]}\"; "
        "fi\n");
    CommandResult r =
        RunCommand({"bash", "--norc", "--noprofile", "-c", driver});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.out;
  }

  TempDir dir_;
  std::string script_;
};

TEST_F(CliCompletion, CompletesVerbsAtEveryLevel) {
  EXPECT_EQ(Complete("sockctl ser"), "server\n");
  EXPECT_EQ(Complete("sockctl server ''"), "start\nstop\nlist\n");
  EXPECT_EQ(Complete("sockctl server st"), "start\nstop\n");
  EXPECT_EQ(Complete("sockctl li"), "listen\n");
  // Hidden verbs are not offered.
  EXPECT_THAT(Complete("sockctl ''"), ::testing::Not(HasSubstr("completion")));
  EXPECT_THAT(Complete("sockctl ''"), HasSubstr("recv\n"));
}

TEST_F(CliCompletion, CompletesTheVerbsOptionsAndTheGlobalOnes) {
  EXPECT_EQ(Complete("sockctl server start --u"), "--udp\n--unix\n");
  EXPECT_EQ(Complete("sockctl listen --k"), "--keep-open\n");
  // Global options may follow the verb.
  EXPECT_EQ(Complete("sockctl listen --ag"), "--agent\n");
}

TEST_F(CliCompletion, SkipsOptionValuesAndCompletesFiles) {
  // The value of --agent is not taken for a verb.
  EXPECT_EQ(Complete("sockctl --agent server:1 ser"), "server\n");
  EXPECT_EQ(Complete("sockctl --agent server:1 server ''"),
            "start\nstop\nlist\n");
  // --hex takes a value in `send` (nothing to offer) but is a flag of recv.
  EXPECT_EQ(Complete("sockctl send conn-1 --hex ''"), "");
  EXPECT_EQ(Complete("sockctl recv conn-1 --hex --wa"), "--wait\n");
  // FILE values complete file names.
  std::ofstream(dir_.path() + "/inventory.txt") << "";
  EXPECT_EQ(
      Complete(absl::StrCat("sockctl --inventory '", dir_.path(), "/inv'")),
      dir_.path() + "/inventory.txt\n");
}

TEST(CliCompletionZsh, IsTheBashFunctionThroughBashcompinit) {
  CommandResult r = RunCommand({SOCKCTL_PATH, "completion", "zsh"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, ::testing::StartsWith("#compdef sockctl\n"));
  EXPECT_THAT(r.out, HasSubstr("bashcompinit"));
  EXPECT_THAT(r.out, HasSubstr("complete -F _sockctl sockctl"));
}

TEST(CliCompletionUsage, UnknownShellIsAUsageError) {
  CommandResult r = RunCommand({SOCKCTL_PATH, "completion", "fish"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
}

}  // namespace
}  // namespace sockagent::testing
