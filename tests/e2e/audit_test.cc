// The audit log (service/audit_log.h) as an operator reads it: a real
// sockagentd with a token, driven by the real sockctl, its stderr read back.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <memory>
#include <regex>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "tests/support/agent_process.h"
#include "tests/support/subprocess.h"
#include "tests/support/wait.h"

namespace sockagent::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kToken[] = "audit-test-token-0123456789abcdef";

class AuditLog : public ::testing::Test {
 protected:
  void Start(std::vector<std::string> extra = {}) {
    token_file_ = dir_.path() + "/token";
    std::ofstream(token_file_) << kToken << "\n";
    std::vector<std::string> args = {"--token-file=" + token_file_,
                                     "--log-refusal-interval=1ns"};
    args.insert(args.end(), extra.begin(), extra.end());
    auto agent = AgentProcess::Start(args);
    ASSERT_TRUE(agent.ok()) << agent.status();
    agent_ = *std::move(agent);
  }

  CommandResult Ctl(const std::vector<std::string>& args) {
    std::vector<std::string> all = {"--token-file", token_file_};
    all.insert(all.end(), args.begin(), args.end());
    return RunSockctl(agent_->address(), all);
  }

  // Waits until `count` lines of the agent's stderr contain `text`; returns
  // those lines.
  std::vector<std::string> WaitForLines(const std::string& text, size_t count) {
    std::vector<std::string> found;
    WaitFor(
        [&] {
          log_ += agent_->Stderr();
          found.clear();
          for (absl::string_view line : absl::StrSplit(log_, '\n')) {
            if (line.find(text) != absl::string_view::npos) {
              found.emplace_back(line);
            }
          }
          return found.size() >= count;
        },
        absl::Seconds(20));
    return found;
  }

  TempDir dir_;
  std::string token_file_;
  std::string log_;
  std::unique_ptr<AgentProcess> agent_;
};

TEST_F(AuditLog, EveryCreateAndCloseIsOneLineSayingWhoWhatResultAndTook) {
  Start();
  CommandResult r = Ctl({"server", "start", "-q", "--echo", "--label", "a=1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string server = std::string(absl::StripAsciiWhitespace(r.out));
  r = Ctl({"--json", "server", "list", "--label", "a=1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::smatch port;
  ASSERT_TRUE(std::regex_search(r.out, port, std::regex("\"port\":(\\d+)")))
      << r.out;
  r = Ctl({"client", "open", "-q", "127.0.0.1", port[1].str()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string conn = std::string(absl::StripAsciiWhitespace(r.out));
  ASSERT_EQ(Ctl({"close", conn}).exit_code, 0);
  ASSERT_EQ(Ctl({"server", "stop", server}).exit_code, 0);
  // A call that fails is audited too, with its code and message.
  EXPECT_NE(Ctl({"close", "conn-999"}).exit_code, 0);

  const std::vector<std::string> lines = WaitForLines("event=audit", 5);
  ASSERT_EQ(lines.size(), 5u) << log_;
  const std::regex who(
      "level=info event=audit method=\\w+ peer=ipv4:127\\.0\\.0\\.1:\\d+ "
      "client_cn=\"\" token=sha256:[0-9a-f]{8} request=");
  for (const std::string& line : lines) {
    EXPECT_TRUE(std::regex_search(line, who)) << line;
    EXPECT_TRUE(std::regex_search(line, std::regex(" took=[0-9.]+[mun]?s$")))
        << line;
  }
  EXPECT_THAT(lines[0], HasSubstr("method=StartServer"));
  EXPECT_THAT(lines[0], HasSubstr("behavior { echo { } }"));
  EXPECT_THAT(lines[0], HasSubstr("code=OK msg=\"\" ids=" + server));
  EXPECT_THAT(lines[1], HasSubstr("method=OpenClient"));
  EXPECT_THAT(lines[1], HasSubstr("port: " + port[1].str()));
  EXPECT_THAT(lines[1], HasSubstr("ids=" + conn));
  EXPECT_THAT(lines[2], HasSubstr("method=CloseConnection"));
  EXPECT_THAT(lines[2], HasSubstr("ids=" + conn));
  EXPECT_THAT(lines[3], HasSubstr("method=StopServer"));
  EXPECT_THAT(lines[3], HasSubstr("ids=" + server));
  EXPECT_THAT(lines[4], HasSubstr("method=CloseConnection"));
  EXPECT_THAT(lines[4], HasSubstr("code=NOT_FOUND"));
  // The same token, the same fingerprint; never the token itself.
  std::smatch fp;
  ASSERT_TRUE(std::regex_search(lines[0], fp, std::regex("token=\\S+")));
  for (const std::string& line : lines) EXPECT_THAT(line, HasSubstr(fp[0]));
  EXPECT_THAT(log_, Not(HasSubstr(kToken)));
  // Reads are not audited.
  EXPECT_THAT(log_, Not(HasSubstr("method=ListServers")));
}

TEST_F(AuditLog, StreamIsAuditedWhenItOpens) {
  Start();
  CommandResult r = Ctl({"server", "start", "-q", "--echo"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = Ctl({"--json", "server", "list"});
  std::smatch port;
  ASSERT_TRUE(std::regex_search(r.out, port, std::regex("\"port\":(\\d+)")));
  // "hi" goes out, stdin's end becomes a FIN, the echo comes back and the
  // echo server closes: sockctl exits. The line was written at the open.
  CommandResult c =
      RunCommand({SOCKCTL_PATH, "--agent", agent_->address(), "--token-file",
                  token_file_, "connect", "127.0.0.1", port[1].str()},
                 "hi\n", absl::Seconds(30));
  EXPECT_EQ(c.exit_code, 0) << c.err;
  EXPECT_EQ(c.out, "hi\n");
  const std::vector<std::string> lines =
      WaitForLines("event=audit method=Stream", 1);
  ASSERT_EQ(lines.size(), 1u) << log_;
  EXPECT_THAT(lines[0], HasSubstr("request=\"start { open {"));
  EXPECT_TRUE(std::regex_search(lines[0], std::regex("ids=conn-\\d+ ")))
      << lines[0];
}

TEST_F(AuditLog, UnauthenticatedCallsAreNotAudited) {
  Start();
  CommandResult r =
      RunSockctl(agent_->address(), {"server", "start", "--echo"});
  EXPECT_NE(r.exit_code, 0);
  WaitForLines("event=auth_failure", 1);
  EXPECT_THAT(log_, Not(HasSubstr("event=audit")));
}

TEST_F(AuditLog, JsonFormatWritesOneObjectPerLine) {
  Start({"--log-format=json"});
  ASSERT_EQ(Ctl({"server", "start", "-q", "--echo"}).exit_code, 0);
  const std::vector<std::string> lines = WaitForLines("\"event\":\"audit\"", 1);
  ASSERT_EQ(lines.size(), 1u) << log_;
  // Every line the agent wrote parses as one JSON object (checked by an
  // independent parser), the start line included.
  std::string script =
      "import json,sys\n"
      "n=0\n"
      "for l in sys.stdin.read().splitlines():\n"
      "  o=json.loads(l); assert isinstance(o, dict); n+=1\n"
      "  assert list(o)[:3]==['ts','level','event'], o\n"
      "print(n)\n";
  CommandResult parsed =
      RunCommand({"/usr/bin/python3", "-c", script}, log_, absl::Seconds(30));
  EXPECT_EQ(parsed.exit_code, 0) << parsed.err << log_;
  EXPECT_THAT(log_, HasSubstr("\"event\":\"start\""));
  EXPECT_THAT(lines[0], HasSubstr("\"method\":\"StartServer\""));
}

}  // namespace
}  // namespace sockagent::testing
