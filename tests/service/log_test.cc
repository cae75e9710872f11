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

TEST(Log, JsonLineKeepsOrderAndEveryValueIsAString) {
  EXPECT_EQ(
      FormatLogLine(LogFormat::kJson, "T", LogLevel::kWarn, "auth_failure",
                    {{"peer", "ipv4:127.0.0.1:5"}, {"suppressed", "0"}}),
      "{\"ts\":\"T\",\"level\":\"warn\",\"event\":\"auth_failure\","
      "\"peer\":\"ipv4:127.0.0.1:5\",\"suppressed\":\"0\"}");
}

TEST(Log, JsonEscapesWhatCouldForgeALineOrBreakTheObject) {
  EXPECT_EQ(FormatLogLine(LogFormat::kJson, "T", LogLevel::kInfo, "e",
                          {{"msg", "a\"b\\c\n\x01\x7f}"}}),
            "{\"ts\":\"T\",\"level\":\"info\",\"event\":\"e\","
            "\"msg\":\"a\\\"b\\\\c\\n\\u0001\\u007f}\"}");
}

TEST(Log, JsonKeepsUtf8AndReplacesBytesThatAreNot) {
  // "é" and "€" pass; a stray continuation byte, an overlong "/", a UTF-16
  // surrogate and a truncated sequence become U+FFFD, one per bad byte.
  const std::string line = FormatLogLine(
      LogFormat::kJson, "T", LogLevel::kInfo, "e",
      {{"msg", "\xc3\xa9\xe2\x82\xac|\x80|\xc0\xaf|\xed\xa0\x80|\xe2\x82"}});
  EXPECT_THAT(line, ::testing::HasSubstr(
                        "\"msg\":\"\xc3\xa9\xe2\x82\xac|\\ufffd|\\ufffd\\ufffd|"
                        "\\ufffd\\ufffd\\ufffd|\\ufffd\\ufffd\"}"));
}

TEST(Log, ParsesFormats) {
  EXPECT_EQ(*ParseLogFormat("logfmt"), LogFormat::kLogfmt);
  EXPECT_EQ(*ParseLogFormat("JSON"), LogFormat::kJson);
  auto bad = ParseLogFormat("xml");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(),
              ::testing::HasSubstr("expected logfmt or json"));
}

}  // namespace
}  // namespace sockagent
