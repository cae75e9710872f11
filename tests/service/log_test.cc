// The structured log's line format and level parsing.
#include "service/log.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace sockagent {
namespace {

TEST(Log, PlainValuesStayBareAndOthersAreQuoted) {
  EXPECT_EQ(FormatLogLine("T", LogLevel::kWarn, "auth_failure",
                          {{"method", "/a.B/C"},
                           {"peer", "ipv4:127.0.0.1:5"},
                           {"msg", "wrong bearer token"},
                           {"empty", ""}}),
            "ts=T level=warn event=auth_failure method=/a.B/C "
            "peer=ipv4:127.0.0.1:5 msg=\"wrong bearer token\" empty=\"\"");
}

TEST(Log, QuotingEscapesWhatCouldForgeALine) {
  // A client-chosen string (a method name, a message) cannot start a new
  // line or close the quotes early.
  EXPECT_EQ(FormatLogLine("T", LogLevel::kInfo, "e",
                          {{"msg", "a\"b\\c\nlevel=error d=\x01"}}),
            "ts=T level=info event=e msg=\"a\\\"b\\\\c\\nlevel=error "
            "d=\\x01\"");
}

TEST(Log, ParsesLevels) {
  EXPECT_EQ(*ParseLogLevel("debug"), LogLevel::kDebug);
  EXPECT_EQ(*ParseLogLevel("INFO"), LogLevel::kInfo);
  EXPECT_EQ(*ParseLogLevel("warning"), LogLevel::kWarn);
  EXPECT_EQ(*ParseLogLevel("warn"), LogLevel::kWarn);
  EXPECT_EQ(*ParseLogLevel("error"), LogLevel::kError);
  auto bad = ParseLogLevel("verbose");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(),
              ::testing::HasSubstr("expected debug, info, warn or error"));
}

TEST(Log, LevelFiltersLowerLevels) {
  SetLogLevel(LogLevel::kWarn);
  EXPECT_FALSE(LogEnabled(LogLevel::kInfo));
  EXPECT_TRUE(LogEnabled(LogLevel::kWarn));
  EXPECT_TRUE(LogEnabled(LogLevel::kError));
  SetLogLevel(LogLevel::kInfo);
  EXPECT_TRUE(LogEnabled(LogLevel::kInfo));
  EXPECT_FALSE(LogEnabled(LogLevel::kDebug));
}

}  // namespace
}  // namespace sockagent
