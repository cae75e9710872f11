// QuoteInput: caller input inside status messages is quoted, escaped and
// bounded.
#include "agent/quote.h"

#include <string>

#include "gtest/gtest.h"

namespace sockagent {
namespace {

TEST(QuoteInput, PlainIdsAreQuotedAsTheyAre) {
  EXPECT_EQ(QuoteInput("conn-7"), "'conn-7'");
  EXPECT_EQ(QuoteInput(""), "''");
}

TEST(QuoteInput, ControlBytesQuotesAndBackslashesAreEscaped) {
  EXPECT_EQ(QuoteInput(std::string("conn-\0\x1b[2J", 10)),
            "'conn-\\x00\\x1b[2J'");
  EXPECT_EQ(QuoteInput("a'b\\c\n"), "'a\\'b\\\\c\\n'");
  EXPECT_EQ(QuoteInput("caf\xc3\xa9"), "'caf\\xc3\\xa9'");
}

TEST(QuoteInput, ResultIsPrintableAscii) {
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  for (char c : QuoteInput(all, all.size())) {
    EXPECT_TRUE(c >= 0x20 && c < 0x7f) << static_cast<int>(c);
  }
}

TEST(QuoteInput, LongInputIsCutAndItsSizeSaid) {
  const std::string out = QuoteInput(std::string(100000, 'x'));
  EXPECT_EQ(out, "'" + std::string(kMaxQuotedInputBytes, 'x') +
                     "'... (100000 bytes)");
  EXPECT_EQ(QuoteInput("abcdef", 3), "'abc'... (6 bytes)");
}

}  // namespace
}  // namespace sockagent
