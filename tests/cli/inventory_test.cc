// The inventory file that names a fleet, token files, and the helpers that
// run one call per agent: every malformed line is a usage error that names
// its line, and the fan-out never runs more than its bound at once.
#include "cli/inventory.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "cli/args.h"
#include "cli/output.h"
#include "cli/parallel.h"

namespace sockctl {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string ErrorOf(absl::string_view text) {
  absl::StatusOr<std::vector<InventoryEntry>> r = ParseInventory(text);
  EXPECT_FALSE(r.ok()) << text;
  return std::string(r.status().message());
}

TEST(ParseInventory, NamesAddressesTokensCommentsAndBlankLines) {
  absl::StatusOr<std::vector<InventoryEntry>> r = ParseInventory(
      "# the fleet\n"
      "\n"
      "web-1   10.0.0.11:7878  token-file=web.token\n"
      "  db_1\t[fd00::12]:7878   # trailing comment\n"
      "local.x unix:/run/sockagent.sock\r\n");
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->size(), 3u);
  EXPECT_EQ((*r)[0].name, "web-1");
  EXPECT_EQ((*r)[0].address, "10.0.0.11:7878");
  EXPECT_EQ((*r)[0].token_file, "web.token");
  EXPECT_EQ((*r)[0].line, 3);
  EXPECT_EQ((*r)[1].name, "db_1");
  EXPECT_EQ((*r)[1].address, "[fd00::12]:7878");
  EXPECT_EQ((*r)[1].token_file, "");
  EXPECT_EQ((*r)[1].line, 4);
  EXPECT_EQ((*r)[2].address, "unix:/run/sockagent.sock");
}

TEST(ParseInventory, MalformedLinesNameTheirLineNumber) {
  EXPECT_THAT(ErrorOf("a 127.0.0.1:1\nlonely\n"),
              HasSubstr("line 2: expected NAME ADDRESS"));
  EXPECT_THAT(ErrorOf("a 127.0.0.1:1\n\nb!x 127.0.0.1:2\n"),
              HasSubstr("line 3: agent name 'b!x'"));
  EXPECT_THAT(ErrorOf("a 127.0.0.1\n"),
              HasSubstr("line 1: invalid address '127.0.0.1': missing port"));
  EXPECT_THAT(ErrorOf("a 127.0.0.1:1\na 127.0.0.1:2\n"),
              HasSubstr("line 2: agent name 'a' is already used"));
  EXPECT_THAT(ErrorOf("a 127.0.0.1:1 tls=yes\n"),
              HasSubstr("line 1: unknown option 'tls=yes'"));
  EXPECT_THAT(ErrorOf("a 127.0.0.1:1 token-file\n"),
              HasSubstr("line 1: unknown option 'token-file'"));
  EXPECT_THAT(ErrorOf("a 127.0.0.1:1 token-file=\n"),
              HasSubstr("line 1: token-file= needs a PATH"));
  EXPECT_THAT(ErrorOf("a 127.0.0.1:1 token-file=x token-file=y\n"),
              HasSubstr("line 1: token-file= given twice"));
  EXPECT_THAT(ErrorOf(std::string(65, 'n') + " 127.0.0.1:1\n"),
              HasSubstr("line 1: agent name"));
}

TEST(Inventory, TlsOptionsPerAgent) {
  auto r = ParseInventory(
      "web 10.0.0.1:7878 tls-ca=ca.pem tls-cert=me.pem tls-key=me.key "
      "tls-server-name=web.internal token-file=t\n"
      "db 10.0.0.2:7878\n");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)[0].tls_ca, "ca.pem");
  EXPECT_EQ((*r)[0].tls_cert, "me.pem");
  EXPECT_EQ((*r)[0].tls_key, "me.key");
  EXPECT_EQ((*r)[0].tls_server_name, "web.internal");
  EXPECT_EQ((*r)[0].token_file, "t");
  EXPECT_EQ((*r)[1].tls_ca, "");
  auto bad = ParseInventory("a 127.0.0.1:1 tls-cert=c.pem\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(),
              HasSubstr("line 1: tls-cert= and tls-key= go together"));
  bad = ParseInventory("a 127.0.0.1:1 tls-ca=x tls-ca=y\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("tls-ca= given twice"));
  bad = ParseInventory("a 127.0.0.1:1 tls-server-name=\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(),
              HasSubstr("tls-server-name= needs a NAME"));
}

TEST(ParseInventory, AFileWithoutAgentsIsAnError) {
  EXPECT_THAT(ErrorOf(""), HasSubstr("names no agent"));
  EXPECT_THAT(ErrorOf("# only a comment\n\n   \n"),
              HasSubstr("names no agent"));
}

TEST(ParseInventory, HashInsideAWordIsNotAComment) {
  absl::StatusOr<std::vector<InventoryEntry>> r =
      ParseInventory("a 127.0.0.1:1 token-file=dir/x#1.token #real comment\n");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)[0].token_file, "dir/x#1.token");
}

TEST(ConfigLineWords, SplitsAtWhitespaceAndDropsComments) {
  EXPECT_THAT(ConfigLineWords("  a\tb  c # d e"), ElementsAre("a", "b", "c"));
  EXPECT_THAT(ConfigLineWords("#all of it"), ElementsAre());
  EXPECT_THAT(ConfigLineWords(""), ElementsAre());
}

TEST(ParseToken, TrimsWhitespaceAndRejectsWhatAHeaderCannotCarry) {
  EXPECT_EQ(*ParseToken("  s3cret.token-_~+/=\n"), "s3cret.token-_~+/=");
  EXPECT_FALSE(ParseToken("").ok());
  EXPECT_FALSE(ParseToken(" \n\t").ok());
  EXPECT_FALSE(ParseToken("two words").ok());
  EXPECT_FALSE(ParseToken("bad\x01").ok());
  EXPECT_FALSE(ParseToken("caf\xc3\xa9").ok());
}

TEST(PathRelativeTo, RelativePathsFollowTheInventory) {
  EXPECT_EQ(PathRelativeTo("/etc/fleet/inv.txt", "a.token"),
            "/etc/fleet/a.token");
  EXPECT_EQ(PathRelativeTo("conf/inv.txt", "a.token"), "conf/a.token");
  EXPECT_EQ(PathRelativeTo("inv.txt", "a.token"), "a.token");
  EXPECT_EQ(PathRelativeTo("/etc/fleet/inv.txt", "/run/a.token"),
            "/run/a.token");
}

TEST(AgentHost, HostPartAsAnotherAgentWouldDialIt) {
  EXPECT_EQ(*AgentHost("10.0.0.1:7878"), "10.0.0.1");
  EXPECT_EQ(*AgentHost("[fd00::1]:7878"), "fd00::1");
  EXPECT_EQ(*AgentHost("db.example.net:7878"), "db.example.net");
  EXPECT_EQ(AgentHost("unix:/run/sockagent.sock").status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(JsonString, EscapesQuotesBackslashesAndControls) {
  EXPECT_EQ(JsonString("plain"), "\"plain\"");
  EXPECT_EQ(JsonString("a\"b\\c\nd\te"), "\"a\\\"b\\\\c\\nd\\te\"");
  EXPECT_EQ(JsonString(std::string("\x01", 1)), "\"\\u0001\"");
}

TEST(ForEachBounded, EveryItemOnceAndNeverMoreThanTheBoundAtOnce) {
  constexpr size_t kItems = 200;
  constexpr size_t kBound = 7;
  std::vector<std::atomic<int>> calls(kItems);
  std::atomic<int> running{0};
  std::atomic<int> peak{0};
  ForEachBounded(kItems, kBound, [&](size_t i) {
    const int now = running.fetch_add(1) + 1;
    int seen = peak.load();
    while (now > seen && !peak.compare_exchange_weak(seen, now)) {
    }
    calls[i].fetch_add(1);
    running.fetch_sub(1);
  });
  for (size_t i = 0; i < kItems; ++i) EXPECT_EQ(calls[i].load(), 1) << i;
  EXPECT_LE(peak.load(), static_cast<int>(kBound));
  EXPECT_GE(peak.load(), 1);
}

TEST(ForEachBounded, RunsAsManyAsTheBoundTogether) {
  constexpr size_t kBound = 4;
  std::mutex mu;
  std::condition_variable all_in;
  size_t inside = 0;
  bool reached = false;
  ForEachBounded(2 * kBound, kBound, [&](size_t) {
    std::unique_lock<std::mutex> lock(mu);
    if (++inside == kBound) {
      reached = true;
      all_in.notify_all();
    }
    // The first kBound items meet here only if they run at the same time.
    all_in.wait_for(lock, std::chrono::seconds(10), [&] { return reached; });
  });
  EXPECT_TRUE(reached);
}

TEST(ForEachBounded, NoItemsAndZeroBound) {
  int calls = 0;
  ForEachBounded(0, 4, [&](size_t) { ++calls; });
  EXPECT_EQ(calls, 0);
  std::vector<size_t> order;
  ForEachBounded(3, 0, [&](size_t i) { order.push_back(i); });  // One thread.
  EXPECT_THAT(order, ElementsAre(0, 1, 2));
}

}  // namespace
}  // namespace sockctl
