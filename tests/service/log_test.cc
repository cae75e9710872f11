// The structured log's line format and level parsing.
#include "service/log.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <string>
#include <thread>

#include "absl/time/clock.h"
#include "absl/time/time.h"

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

TEST(Log, LogfmtQuotesBytesAboveAsciiAndKeepsThem) {
  // One escaper serves both formats: logfmt escapes control characters its
  // own way (\x7f) and passes every other byte, valid UTF-8 or not.
  EXPECT_EQ(
      FormatLogLine("T", LogLevel::kInfo, "e", {{"msg", "\xc3\xa9|\x80\x7f"}}),
      "ts=T level=info event=e msg=\"\xc3\xa9|\x80\\x7f\"");
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

// A reader of stderr that stalls must not block the threads that log: lines
// queue up to a bound, then are dropped and counted.
TEST(Log, StalledStderrNeverBlocksLoggingAndDropsAreCounted) {
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  const int saved = dup(STDERR_FILENO);
  ASSERT_GE(saved, 0);
  FlushLog();
  ASSERT_EQ(dup2(pipe_fds[1], STDERR_FILENO), STDERR_FILENO);
  // 6 MiB of lines into a 64 KiB pipe nobody reads yet: more than the
  // 4 MiB queue. Without the queue this blocks at the first 64 KiB.
  const std::string filler(200, 'x');
  const absl::Time start = absl::Now();
  for (int i = 0; i < 30000; ++i) {
    LogEvent(LogLevel::kError, "stall_test", {{"filler", filler}});
  }
  const absl::Duration took = absl::Now() - start;
  std::string seen;
  std::thread reader([&] {
    char buf[1 << 16];
    for (;;) {
      const ssize_t n = read(pipe_fds[0], buf, sizeof buf);
      if (n <= 0) return;
      seen.append(buf, static_cast<size_t>(n));
    }
  });
  LogEvent(LogLevel::kError, "after_stall", {});
  FlushLog();
  dup2(saved, STDERR_FILENO);
  close(saved);
  close(pipe_fds[1]);
  reader.join();
  close(pipe_fds[0]);
  EXPECT_LT(took, absl::Seconds(20));  // Generous: it is microseconds a line.
  EXPECT_THAT(seen, ::testing::HasSubstr("event=log_dropped count="));
  EXPECT_THAT(seen, ::testing::HasSubstr("event=after_stall"));
  // Whole lines only.
  EXPECT_EQ(seen.back(), '\n');
}

}  // namespace
}  // namespace sockagent
