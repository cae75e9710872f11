#include "cli/suggest.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sockctl {
namespace {

TEST(EditDistance, CountsEditsAndSwaps) {
  EXPECT_EQ(EditDistance("server", "server"), 0u);
  EXPECT_EQ(EditDistance("sever", "server"), 1u);
  EXPECT_EQ(EditDistance("lst", "list"), 1u);
  EXPECT_EQ(EditDistance("sevrer", "server"), 1u);  // Adjacent swap.
  EXPECT_EQ(EditDistance("", "abc"), 3u);
}

TEST(ClosestWord, SuggestsOnlyPlausibleTypos) {
  const std::vector<std::string> verbs = {"server",  "send",  "recv",
                                          "resolve", "close", "conn"};
  EXPECT_EQ(ClosestWord("sever", verbs), "server");
  EXPECT_EQ(ClosestWord("resolv", verbs), "resolve");
  EXPECT_EQ(ClosestWord("xyzzy", verbs), "");
  EXPECT_EQ(ClosestWord("se", verbs), "");          // Prefix of two: no guess.
  EXPECT_EQ(ClosestWord("res", verbs), "resolve");  // Prefix of one.
  EXPECT_EQ(ClosestWord(std::string(10000, 'a'), verbs), "");
}

class ExplainTest : public ::testing::Test {
 protected:
  ExplainTest() {
    app_.add_option("--agent", agent_);
    app_.add_flag("--json", json_);
    app_.fallthrough();
    CLI::App* server = app_.add_subcommand("server");
    CLI::App* start = server->add_subcommand("start");
    start->add_flag("--echo", json_);
    start->add_option("--port", agent_);
    server->add_subcommand("list");
    app_.add_subcommand("send")->add_option("id", agent_);
  }
  std::string Explain(std::vector<std::string> args) {
    return ExplainUnknownWord(app_, args);
  }
  CLI::App app_;
  std::string agent_;
  bool json_ = false;
};

TEST_F(ExplainTest, NamesUnknownVerbsAndFlagsWithSuggestions) {
  EXPECT_EQ(Explain({"sever", "list"}),
            "unknown verb 'sever' (did you mean 'server'?)");
  EXPECT_EQ(Explain({"--agent", "h:1", "server", "lst"}),
            "unknown verb 'lst' for 'server' (did you mean 'list'?)");
  EXPECT_EQ(Explain({"server", "start", "--eco"}),
            "server start: unknown flag '--eco' (did you mean '--echo'?)");
  EXPECT_EQ(Explain({"server", "start", "--jsn"}),
            "server start: unknown flag '--jsn' (did you mean '--json'?)");
  EXPECT_EQ(Explain({"bogus"}), "unknown verb 'bogus'");
  // Known words only: nothing to explain; positional arguments of a leaf.
  EXPECT_EQ(Explain({"server", "start", "--port", "lst", "--echo"}), "");
  EXPECT_EQ(Explain({"send", "conn-1"}), "");
}

}  // namespace
}  // namespace sockctl
