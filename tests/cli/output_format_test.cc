// -o table|json|yaml|name|addr, --json and -q: one form per command line,
// wherever the options stand, and a verb refuses what it does not print.
#include "cli/output_format.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

namespace sockctl {
namespace {

using ::testing::HasSubstr;

const OutputForms kTableJson = {OutputFormat::kTable, OutputFormat::kJson};

// Parses `args` with the options both before and after a verb "v".
absl::StatusOr<OutputFormat> Parse(std::vector<std::string> args,
                                   const OutputForms& forms) {
  CLI::App app("test", "sockctl");
  app.fallthrough();
  OutputRequest request;
  AddOutputOptions(&app, request, AllOutputForms());
  CLI::App* verb = app.add_subcommand("v", "a verb");
  AddOutputOptions(verb, request, forms);
  std::reverse(args.begin(), args.end());
  app.parse(args);
  return ChooseOutput(request, "v", forms);
}

TEST(ChooseOutput, TableWhenNothingIsGiven) {
  EXPECT_EQ(*Parse({"v"}, kTableJson), OutputFormat::kTable);
}

TEST(ChooseOutput, SameFormBeforeOrAfterTheVerb) {
  const OutputForms all = AllOutputForms();
  for (const auto& args :
       std::vector<std::vector<std::string>>{{"-q", "v"},
                                             {"v", "-q"},
                                             {"-o", "name", "v"},
                                             {"v", "-oname"},
                                             {"--output=name", "v"},
                                             {"-q", "v", "-o", "name"}}) {
    absl::StatusOr<OutputFormat> f = Parse(args, all);
    ASSERT_TRUE(f.ok()) << args[0] << " " << f.status();
    EXPECT_EQ(*f, OutputFormat::kName) << args[0];
  }
  EXPECT_EQ(*Parse({"--json", "v"}, all), OutputFormat::kJson);
  EXPECT_EQ(*Parse({"v", "--json"}, all), OutputFormat::kJson);
  EXPECT_EQ(*Parse({"v", "-o", "yaml"}, all), OutputFormat::kYaml);
  EXPECT_EQ(*Parse({"-o", "addr", "v"}, all), OutputFormat::kAddr);
}

TEST(ChooseOutput, AFormTheVerbDoesNotPrintIsRefusedByName) {
  // -q before the verb reaches the global option; the verb refuses it.
  absl::StatusOr<OutputFormat> f = Parse({"-q", "v"}, kTableJson);
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().message(),
            "v does not print name output (-q); it takes -o table|json");
  f = Parse({"v", "-o", "addr"}, kTableJson);
  ASSERT_FALSE(f.ok());
  EXPECT_THAT(f.status().message(), HasSubstr("v does not print addr"));
}

TEST(ChooseOutput, UnknownAndConflictingFormsAreRefused) {
  absl::StatusOr<OutputFormat> f = Parse({"-o", "xml", "v"}, kTableJson);
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().message(),
            "v: unknown output 'xml' (v takes -o table|json)");
  f = Parse({"--json", "v", "-o", "yaml"}, AllOutputForms());
  ASSERT_FALSE(f.ok());
  EXPECT_THAT(f.status().message(), HasSubstr("ask for different output"));
}

}  // namespace
}  // namespace sockctl
