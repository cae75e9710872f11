// sockctl's word parsers and printers: what a user types becomes the right
// bytes, ports and labels, and every mistake is a clear usage error.
#include "cli/args.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "cli/client.h"
#include "cli/output.h"

namespace sockctl {
namespace {

using ::testing::HasSubstr;

TEST(UnescapeC, CommonEscapes) {
  EXPECT_EQ(*UnescapeC("GET / HTTP/1.0\\r\\n\\r\\n"), "GET / HTTP/1.0\r\n\r\n");
  EXPECT_EQ(*UnescapeC("a\\tb\\\\c"), "a\tb\\c");
  EXPECT_EQ(*UnescapeC("\\x41\\x0aZ"), "A\nZ");
  EXPECT_EQ(*UnescapeC("\\0"), std::string(1, '\0'));
  EXPECT_EQ(*UnescapeC("\\101"), "A");
  EXPECT_EQ(*UnescapeC("plain"), "plain");
}

TEST(UnescapeC, RejectsUnknownAndDanglingEscapes) {
  EXPECT_FALSE(UnescapeC("\\q").ok());
  EXPECT_FALSE(UnescapeC("trailing\\").ok());
  EXPECT_FALSE(UnescapeC("\\xZZ").ok());
}

TEST(ParseHex, PairsWithSpaces) {
  EXPECT_EQ(*ParseHex("48 65 6c6c 6F"), "Hello");
  EXPECT_EQ(*ParseHex(""), "");
  EXPECT_FALSE(ParseHex("abc").ok());  // Odd digit count.
  EXPECT_FALSE(ParseHex("zz").ok());
}

TEST(ParseLabels, KeyValuePairs) {
  google::protobuf::Map<std::string, std::string> labels;
  ASSERT_TRUE(ParseLabels({"team=sre", "empty=", "eq=a=b"}, &labels).ok());
  EXPECT_EQ(labels["team"], "sre");
  EXPECT_EQ(labels["empty"], "");
  EXPECT_EQ(labels["eq"], "a=b");
  google::protobuf::Map<std::string, std::string> bad;
  EXPECT_FALSE(ParseLabels({"novalue"}, &bad).ok());
  EXPECT_FALSE(ParseLabels({"=x"}, &bad).ok());
  EXPECT_FALSE(ParseLabels({"k=a", "k=b"}, &bad).ok());
}

TEST(ParsePort, NumbersAndServiceNames) {
  sockagent::v1::Endpoint e;
  ASSERT_TRUE(ParsePort("8080", &e).ok());
  EXPECT_EQ(e.port(), 8080u);
  ASSERT_TRUE(ParsePort("www", &e).ok());
  EXPECT_EQ(e.service(), "www");
  EXPECT_FALSE(ParsePort("70000", &e).ok());
  EXPECT_FALSE(ParsePort("", &e).ok());
}

TEST(ParseHostPort, Forms) {
  sockagent::v1::Endpoint e;
  auto r = ParseHostPort("[::1]:80", &e);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(*r);
  EXPECT_EQ(e.host(), "::1");
  EXPECT_EQ(e.port(), 80u);
  e.Clear();
  r = ParseHostPort("10.0.0.1", &e);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(*r);
  EXPECT_EQ(e.host(), "10.0.0.1");
  e.Clear();
  r = ParseHostPort("fe80::1", &e);  // Bare IPv6: all host.
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(e.host(), "fe80::1");
}

TEST(ParseAgentAddress, AcceptsAndRejects) {
  EXPECT_TRUE(ParseAgentAddress("127.0.0.1:7878").ok());
  EXPECT_TRUE(ParseAgentAddress("[::1]:7878").ok());
  EXPECT_TRUE(ParseAgentAddress("unix:/run/sockagent.sock").ok());
  EXPECT_TRUE(ParseAgentAddress("agent-a:7878").ok());
  for (const std::string bad :
       {"nonsense", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536", ":1",
        "::1:7878", "bad host:1"}) {
    EXPECT_FALSE(ParseAgentAddress(bad).ok()) << bad;
  }
  // Names longer than DNS allows never reach a resolver.
  EXPECT_FALSE(ParseAgentAddress(std::string(300, 'a') + ":1").ok());
  EXPECT_FALSE(ParseAgentAddress(std::string(64, 'a') + ".b:1").ok());
}

TEST(ParseTimeout, PositiveFiniteDurations) {
  EXPECT_EQ(*ParseTimeout("1.5s"), absl::Milliseconds(1500));
  EXPECT_EQ(*ParseTimeout("500ms"), absl::Milliseconds(500));
  EXPECT_FALSE(ParseTimeout("0s").ok());
  EXPECT_FALSE(ParseTimeout("-1s").ok());
  EXPECT_FALSE(ParseTimeout("inf").ok());
  EXPECT_FALSE(ParseTimeout("5").ok());
}

TEST(Output, BytesAndHexDump) {
  EXPECT_EQ(FormatBytes(4 << 20), "4MiB");  // Limits: exact.
  EXPECT_EQ(FormatBytes(1500), "1500B");
  EXPECT_EQ(FormatByteCount(0), "0B");  // Counters: rounded.
  EXPECT_EQ(FormatByteCount(1536), "1.5KiB");
  EXPECT_THAT(HexDump("bin\0data", 0), HasSubstr("62 69 6e"));
  EXPECT_THAT(HexDump(std::string("bin\0data", 8), 0), HasSubstr("|bin.data|"));
  EXPECT_TRUE(IsPrintableText("hello\r\n\tworld"));
  EXPECT_FALSE(IsPrintableText(std::string("a\0b", 3)));
}

}  // namespace
}  // namespace sockctl
