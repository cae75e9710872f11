// The UDP pipe format: one datagram per line, escaped so that a datagram's
// own newlines and bytes cannot run into the next, and read back exactly by
// sockctl's own unescaping (what `sockctl send DATA` takes).
#include "cli/datagram_text.h"

#include <gtest/gtest.h>

#include <string>

#include "cli/args.h"

namespace sockctl {
namespace {

TEST(DatagramLine, PrintableTextIsItselfOnOneLine) {
  EXPECT_EQ(DatagramLine("dgram1"), "dgram1\n");
  EXPECT_EQ(DatagramLine("a b ~ \" ' ?"), "a b ~ \" ' ?\n");
  EXPECT_EQ(DatagramLine(""), "\n");
}

TEST(DatagramLine, NewlinesBackslashesAndBinaryAreEscaped) {
  EXPECT_EQ(DatagramLine("two\nlines\r\n"), "two\\nlines\\r\\n\n");
  EXPECT_EQ(DatagramLine("C:\\dir\t"), "C:\\\\dir\\t\n");
  EXPECT_EQ(DatagramLine(std::string("\0\x7f\x80\xff", 4)),
            "\\x00\\x7f\\x80\\xff\n");
  // A hex digit after an escape stays itself: \x takes two digits only.
  EXPECT_EQ(DatagramLine("\x01"
                         "abc"),
            "\\x01abc\n");
}

TEST(DatagramLine, EveryByteRoundTripsThroughUnescapeC) {
  std::string all;
  for (int b = 0; b < 256; ++b) all += static_cast<char>(b);
  for (const std::string& datagram : {all,
                                      std::string("\x0a"
                                                  "0a\\x41",
                                                  7),
                                      std::string("end\\")}) {
    std::string line = DatagramLine(datagram);
    ASSERT_EQ(line.back(), '\n');
    line.pop_back();
    EXPECT_EQ(line.find('\n'), std::string::npos);
    absl::StatusOr<std::string> back = UnescapeC(line);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, datagram);
  }
}

}  // namespace
}  // namespace sockctl
