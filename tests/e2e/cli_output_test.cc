// sockctl's output options and help through the real binaries: every verb's
// --help is its own (the globals are one line); -o table|json|yaml|name|addr
// (--json, -q) work before or after the verb, and a verb refuses forms it
// does not print; -o addr gives a dialable address; every JSON object any
// verb prints has lowerCamelCase keys (the protobuf JSON convention); and
// connect's events come in words (-v) or as JSON lines on stderr (-o json).
#include <gmock/gmock.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <memory>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "tests/support/agent_process.h"
#include "tests/support/posix_peer.h"
#include "tests/support/sockctl_test.h"

namespace sockagent::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    lines.emplace_back(line);
  }
  return lines;
}

// The help's list of subcommands: "  NAME   description" lines after
// "Subcommands:".
std::vector<std::string> SubcommandsInHelp(const std::string& help) {
  std::vector<std::string> names;
  bool in_list = false;
  for (absl::string_view line : absl::StrSplit(help, '\n')) {
    if (line == "Subcommands:") {
      in_list = true;
      continue;
    }
    if (!in_list) continue;
    if (line.empty()) break;
    static const std::regex kEntry("^  ([a-z][a-z0-9-]*)( .*)?$");
    std::cmatch m;
    const std::string copy(line);
    if (std::regex_match(copy.c_str(), m, kEntry)) names.push_back(m[1]);
  }
  return names;
}

// A verb, as the words that name it ("server start"), and its --help.
struct Verb {
  std::vector<std::string> words;
  std::string help;
};

// Every verb, found by walking `sockctl --help` and each group's --help: a
// new verb is never missed. One run per verb (an ASan sockctl starts in
// ~0.5 s): its help is kept for the caller.
std::vector<Verb> AllVerbs() {
  std::vector<Verb> verbs;
  std::vector<std::vector<std::string>> todo = {{}};
  while (!todo.empty()) {
    std::vector<std::string> words = todo.back();
    todo.pop_back();
    std::vector<std::string> argv = {SOCKCTL_PATH};
    argv.insert(argv.end(), words.begin(), words.end());
    argv.push_back("--help");
    CommandResult r = RunCommand(argv);
    EXPECT_EQ(r.exit_code, 0) << absl::StrJoin(words, " ") << ": " << r.err;
    const std::vector<std::string> subs = SubcommandsInHelp(r.out);
    if (subs.empty() && !words.empty()) verbs.push_back({words, r.out});
    for (const std::string& sub : subs) {
      std::vector<std::string> next = words;
      next.push_back(sub);
      todo.push_back(next);
    }
  }
  return verbs;
}

CommandResult Help(const std::vector<std::string>& verb) {
  std::vector<std::string> argv = {SOCKCTL_PATH};
  argv.insert(argv.end(), verb.begin(), verb.end());
  argv.push_back("--help");
  return RunCommand(argv);
}

// Walks one JSON value and reports every object key that is not
// lowerCamelCase. Label maps hold the caller's keys, not field names.
void CheckKeys(const google::protobuf::Value& value, const std::string& path,
               std::vector<std::string>* bad) {
  static const std::regex kLowerCamel("^[a-z][a-zA-Z0-9]*$");
  if (value.has_struct_value()) {
    for (const auto& [key, item] : value.struct_value().fields()) {
      if (!std::regex_match(key, kLowerCamel)) {
        bad->push_back(absl::StrCat(path, ".", key));
      }
      if (key == "labels" || key == "labelSelector") continue;
      CheckKeys(item, absl::StrCat(path, ".", key), bad);
    }
  } else if (value.has_list_value()) {
    for (const auto& item : value.list_value().values()) {
      CheckKeys(item, absl::StrCat(path, "[]"), bad);
    }
  }
}

class CliOutputTest : public SockctlTest {
 protected:
  std::string OneLine(const std::vector<std::string>& args) {
    return std::string(absl::StripTrailingAsciiWhitespace(Ok(args)));
  }
};

TEST(SockctlHelp, EveryVerbShowsItsOwnOptionsAndOneLineOfGlobals) {
  CommandResult r = Help({"hostname"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_LT(Lines(r.out).size(), 15u) << r.out;
  EXPECT_THAT(r.out, HasSubstr("Usage: sockctl hostname"));
  EXPECT_THAT(r.out, HasSubstr("-o,--output table|json|yaml"));
  EXPECT_THAT(r.out, HasSubstr("see sockctl --help"));

  const std::vector<Verb> verbs = AllVerbs();  // Each --help exited 0.
  ASSERT_GE(verbs.size(), 15u);
  for (const Verb& verb : verbs) {
    const std::string name = absl::StrJoin(verb.words, " ");
    EXPECT_THAT(verb.help, HasSubstr("Usage: sockctl " + name)) << name;
    EXPECT_THAT(verb.help, HasSubstr("see sockctl --help")) << name;
    // The global footer (inventory format, exit codes) is not repeated.
    EXPECT_THAT(verb.help, Not(HasSubstr("Inventory file"))) << name;
    EXPECT_THAT(verb.help, Not(HasSubstr("Exit codes:"))) << name;
  }
  // The top level keeps it.
  r = RunCommand({SOCKCTL_PATH, "--help"});
  EXPECT_THAT(r.out, HasSubstr("Inventory file"));
  EXPECT_THAT(r.out, HasSubstr("-o,--output"));
}

TEST_F(CliOutputTest, QuietBeforeTheVerbWorksLikeAfterIt) {
  const std::string server = OneLine({"server", "start", "--echo", "-q"});
  EXPECT_THAT(server, ::testing::MatchesRegex("srv-[0-9]+"));
  EXPECT_EQ(OneLine({"-q", "server", "list"}), server);
  EXPECT_EQ(OneLine({"server", "list", "-q"}), server);
  EXPECT_EQ(OneLine({"-o", "name", "server", "list"}), server);

  const std::string addr = OneLine({"server", "list", "-o", "addr"});
  const std::string port(addr.substr(addr.rfind(':') + 1));
  const std::string conn = OneLine({"-q", "client", "open", "127.0.0.1", port});
  EXPECT_THAT(conn, ::testing::MatchesRegex("conn-[0-9]+"));
  const std::string listed = Ok({"-q", "conn", "list"});
  EXPECT_EQ(Ok({"conn", "list", "-q"}), listed);
  EXPECT_THAT(listed, HasSubstr(conn + "\n"));
  EXPECT_EQ(Lines(listed).size(), 2u);  // Ours and the accepted one.
}

TEST_F(CliOutputTest, AddrOfAServerOnPortZeroIsDialable) {
  for (const char* family : {"-4", "-6"}) {
    const std::string addr = OneLine(
        {"server", "start", "--echo", "--port", "0", family, "-o", "addr"});
    std::smatch m;
    ASSERT_TRUE(std::regex_match(
        addr, m, std::regex(R"(^(127\.0\.0\.1|\[::1\]):([0-9]+)$)")))
        << addr;
    const int port = std::stoi(m[2]);
    ASSERT_GT(port, 0);
    std::string host = m[1];
    if (host.front() == '[') host = host.substr(1, host.size() - 2);
    Fd client = TcpConnect(Ip(host, static_cast<uint16_t>(port)));
    ASSERT_TRUE(client.valid()) << addr;
    ASSERT_TRUE(WriteAll(client.get(), "ping"));
    EXPECT_EQ(ReadExactly(client.get(), 4), "ping") << addr;
  }
  // A connection is "LOCAL REMOTE", like the table's columns.
  const std::string server =
      OneLine({"server", "start", "--hold", "-o", "addr"});
  const std::string port(server.substr(server.rfind(':') + 1));
  const std::string conn =
      OneLine({"client", "open", "127.0.0.1", port, "-o", "addr"});
  EXPECT_THAT(conn,
              ::testing::MatchesRegex("127\\.0\\.0\\.1:[0-9]+ " +
                                      std::string("127\\.0\\.0\\.1:") + port));
}

TEST_F(CliOutputTest, EachFormOnSeveralVerbs) {
  const std::string id =
      OneLine({"server", "start", "--echo", "--label", "team=a", "-q"});
  // table
  EXPECT_THAT(Ok({"server", "list"}), HasSubstr("ID "));
  EXPECT_THAT(Ok({"-o", "table", "hostname"}), Not(HasSubstr("{")));
  // json, before or after the verb, --json the same.
  const std::string json = Ok({"server", "list", "-o", "json"});
  EXPECT_EQ(Ok({"--json", "server", "list"}), json);
  EXPECT_EQ(Ok({"server", "list", "--json"}), json);
  EXPECT_THAT(json, HasSubstr("\"localAddresses\""));
  // yaml: the same data, by a YAML parser other than ours.
  for (const std::vector<std::string>& verb :
       std::vector<std::vector<std::string>>{
           {"server", "list"}, {"info"}, {"hostname"}, {"health"}}) {
    std::vector<std::string> json_args = verb, yaml_args = verb;
    json_args.insert(json_args.end(), {"-o", "json"});
    yaml_args.insert(yaml_args.end(), {"-o", "yaml"});
    const std::string j = Ok(json_args);
    const std::string y = Ok(yaml_args);
    EXPECT_THAT(y, Not(HasSubstr("{\""))) << y;
    // uptime moves between two calls of info: compare the keys there.
    const std::string compare =
        verb[0] == "info"
            ? "a=json.loads(sys.argv[1]); b=yaml.safe_load(sys.argv[2]); "
              "sys.exit(0 if a.keys()==b.keys() and a['limits']==b['limits'] "
              "else 1)"
            : "sys.exit(0 if "
              "json.loads(sys.argv[1])==yaml.safe_load(sys.argv[2]) "
              "else 1)";
    CommandResult same = RunCommand(
        {"/usr/bin/python3", "-c", "import json,sys,yaml; " + compare, j, y});
    EXPECT_EQ(same.exit_code, 0) << absl::StrJoin(verb, " ") << "\n"
                                 << j << "\n"
                                 << y << same.err;
  }
  // name
  EXPECT_EQ(OneLine({"server", "list", "-o", "name"}), id);
  // addr
  EXPECT_THAT(OneLine({"server", "list", "-o", "addr"}),
              ::testing::MatchesRegex("127\\.0\\.0\\.1:[0-9]+"));
  EXPECT_THAT(Ok({"resolve", "-4", "--type", "stream", "localhost", "80", "-o",
                  "addr"}),
              ::testing::Eq("127.0.0.1:80\n"));

  // A form a verb does not print: a usage error naming the verb and its
  // forms, before any call.
  struct Refusal {
    std::vector<std::string> args;
    std::string message;
  };
  for (const Refusal& refusal : std::vector<Refusal>{
           {{"hostname", "-o", "addr"},
            "hostname does not print addr output (-o addr); it takes -o "
            "table|json|yaml"},
           {{"-q", "info"}, "info does not print name output (-q)"},
           {{"-o", "name", "recv", "conn-1"},
            "recv does not print name output"},
           {{"connect", "-o", "yaml", "127.0.0.1", "9"},
            "connect does not print yaml output (-o yaml); it takes -o "
            "table|json"},
           {{"resolve", "-r", "127.0.0.1", "-o", "addr"},
            "resolve -r prints a name, not addresses"},
           {{"server", "list", "-o", "xml"},
            "server list: unknown output 'xml' (server list takes -o "
            "table|json|yaml|name|addr)"},
           {{"--json", "server", "list", "-q"},
            "--json and -q ask for different output"},
       }) {
    CommandResult r = Ctl(refusal.args);
    EXPECT_EQ(r.exit_code, 2) << refusal.message << ": " << r.err;
    EXPECT_THAT(r.err, HasSubstr(refusal.message));
    EXPECT_EQ(r.out, "");
  }
}

// Every verb that prints JSON, run against a real agent: every key of every
// object is lowerCamelCase, the protobuf JSON mapping's convention, hand-
// made output (fleet wrappers, hostname, matrix) included. The list of
// verbs comes from the help, so a new JSON verb fails here until it is run.
TEST_F(CliOutputTest, EveryJsonKeyOfEveryVerbIsLowerCamelCase) {
  const std::string server =
      OneLine({"server", "start", "--echo", "--label", "team=a", "-q"});
  const std::string addr = OneLine({"server", "list", "-o", "addr"});
  const std::string port(addr.substr(addr.rfind(':') + 1));
  const std::string conn = OneLine({"client", "open", "-q", "127.0.0.1", port});
  const std::string to_close =
      OneLine({"client", "open", "-q", "127.0.0.1", port});
  const std::string to_attach =
      OneLine({"client", "open", "-q", "127.0.0.1", port});
  const std::string to_stop = OneLine({"server", "start", "-q"});
  Ok({"send", conn, "hello"});
  TempDir dir;
  const std::string toxiproxy = dir.path() + "/toxiproxy.json";
  std::ofstream(toxiproxy) << R"([{"name":"a","listen":"127.0.0.1:0",)"
                           << R"("upstream":"127.0.0.1:)" << port << R"("}])";
  Ok({"fault", "add", server, "latency", "-p", "latency=1ms", "--name",
      "json-u"});
  Ok({"fault", "add", server, "latency", "-p", "latency=1ms", "--name",
      "json-r"});

  // How to run each verb; where its JSON goes (connect/attach: stderr).
  struct Run {
    std::vector<std::string> args;
    bool on_stderr = false;
  };
  const std::string& agent = agent_->address();
  const std::string other_spelling =
      absl::StrCat("localhost:", agent.substr(agent.rfind(':') + 1));
  const std::map<std::string, std::vector<Run>> runs = {
      {"resolve", {{{"resolve", "localhost", "www"}}}},
      {"hostname", {{{"hostname"}}}},
      {"info", {{{"info"}}}},
      {"health", {{{"health"}}}},
      {"server start", {{{"server", "start", "--label", "team=b"}}}},
      {"server stop", {{{"server", "stop", to_stop}}}},
      {"server list", {{{"server", "list", "--all"}}}},
      {"client open", {{{"client", "open", "127.0.0.1", port}}}},
      {"conn list", {{{"conn", "list", "--all"}}}},
      {"conn show", {{{"conn", "show", conn}}}},
      {"close", {{{"close", to_close}}}},
      {"send", {{{"send", conn, "again"}}}},
      {"recv", {{{"recv", conn, "--wait", "5s", "--exactly", "5"}}}},
      {"watch", {{{"watch", "--snapshot", "--count", "3"}}}},
      {"connect", {{{"connect", "127.0.0.1", port}, true}}},
      {"attach", {{{"attach", to_attach}, true}}},
      {"matrix", {{{"matrix", "--self", "--timeout-per-probe", "5s"}}}},
      {"probe", {{{"probe", "127.0.0.1:" + port}}}},
      {"perf",
       {{{"perf", "--time", "0.2s"}}, {{"perf", "--udp", "--time", "0.2s"}}}},
      {"proxy start",
       {{{"proxy", "start", "--upstream", "127.0.0.1:" + port}}}},
      {"proxy import", {{{"proxy", "import", toxiproxy}}}},
      {"fault add",
       {{{"fault", "add", server, "slicer", "-p", "average_size=10", "--name",
          "json-a"}}}},
      {"fault update",
       {{{"fault", "update", "json-u", "latency", "-p", "latency=2ms"}}}},
      {"fault list", {{{"fault", "list"}}}},
      {"fault remove", {{{"fault", "remove", "json-r"}}}},
  };
  // The fleet form of the verbs that run on several agents: the same agent
  // under two names, and one that refuses (an error line).
  const std::vector<std::vector<std::string>> fleet_runs = {
      {"hostname"},
      {"info"},
      {"health"},
      {"resolve", "localhost"},
      {"server", "list"},
      {"conn", "list"},
      {"matrix", "--timeout-per-probe", "5s"},
      {"probe", "127.0.0.1:" + port},
      {"proxy", "start", "--upstream", "127.0.0.1:" + port},
      {"fault", "list"},
  };

  auto check_lines = [](const std::string& what, const std::string& text,
                        bool only_objects) {
    int objects = 0;
    for (const std::string& line : Lines(text)) {
      if (only_objects && line.front() != '{') continue;
      google::protobuf::Value value;
      auto status = google::protobuf::util::JsonStringToMessage(line, &value);
      EXPECT_TRUE(status.ok()) << what << ": " << line;
      std::vector<std::string> bad;
      CheckKeys(value, "", &bad);
      EXPECT_THAT(bad, ::testing::IsEmpty()) << what << ": " << line;
      ++objects;
    }
    EXPECT_GT(objects, 0) << what << " printed no JSON";
  };

  int json_verbs = 0;
  for (const Verb& verb : AllVerbs()) {
    const std::string name = absl::StrJoin(verb.words, " ");
    if (!absl::StrContains(verb.help, "--json")) continue;
    ++json_verbs;
    auto it = runs.find(name);
    if (it == runs.end()) {
      ADD_FAILURE() << "'" << name
                    << "' prints JSON: add it to this test's runs";
      continue;
    }
    for (const Run& run : it->second) {
      std::vector<std::string> args = {"-o", "json"};
      args.insert(args.end(), run.args.begin(), run.args.end());
      CommandResult r = RunCommand(
          [&] {
            std::vector<std::string> argv = {SOCKCTL_PATH, "--agent", agent};
            argv.insert(argv.end(), args.begin(), args.end());
            return argv;
          }(),
          "", absl::Seconds(60));
      EXPECT_EQ(r.exit_code, 0) << name << ": " << r.err;
      check_lines(name, run.on_stderr ? r.err : r.out, run.on_stderr);
    }
  }
  EXPECT_GE(json_verbs, 16);

  for (const std::vector<std::string>& verb : fleet_runs) {
    std::vector<std::string> argv = {SOCKCTL_PATH,   "--timeout", "5s",
                                     "--agent",      agent,       "--agent",
                                     other_spelling, "--json"};
    if (verb[0] != "matrix") {
      argv.insert(argv.end(), {"--agent", "unix:/nonexistent/sockagent.sock"});
    }
    argv.insert(argv.end(), verb.begin(), verb.end());
    CommandResult r = RunCommand(argv, "", absl::Seconds(60));
    const std::string name = absl::StrCat("fleet ", absl::StrJoin(verb, " "));
    check_lines(name, r.out, false);
    if (verb[0] != "matrix") {
      EXPECT_EQ(r.exit_code, 3) << name << ": " << r.err;
      EXPECT_THAT(r.out, HasSubstr("\"error\":{\"code\":\"UNAVAILABLE\""))
          << name;
      EXPECT_EQ(Lines(r.out).size(), 3u) << name << ": " << r.out;
    } else {
      EXPECT_EQ(r.exit_code, 0) << name << ": " << r.err;
      EXPECT_THAT(r.out, HasSubstr("\"asExpected\":true")) << r.out;
    }
  }
}

TEST_F(CliOutputTest, ConnectSaysHowItEndedInWordsOrAsJsonLines) {
  const std::string addr = OneLine({"server", "start", "--greeting", "hi there",
                                    "--close-after", "-o", "addr"});
  const std::string port(addr.substr(addr.rfind(':') + 1));

  CommandResult r = Ctl({"connect", "-v", "127.0.0.1", port});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "hi there");
  EXPECT_THAT(r.err, HasSubstr("sockctl: end of stream: peer closed"));
  EXPECT_THAT(r.err, Not(HasSubstr("CLOSE_REASON_")));

  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{
           {"-o", "json", "connect", "127.0.0.1", port},
           {"connect", "127.0.0.1", port, "--json"}}) {
    r = Ctl(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, "hi there");  // stdout stays the bytes.
    const std::vector<std::string> lines = Lines(r.err);
    ASSERT_EQ(lines.size(), 2u) << r.err;
    EXPECT_THAT(lines[0],
                ::testing::StartsWith("{\"connection\":{\"id\":\"conn-"));
    EXPECT_THAT(
        lines[1],
        ::testing::StartsWith(
            "{\"endOfStream\":{\"reason\":\"CLOSE_REASON_PEER_CLOSED\""));
  }
}

}  // namespace
}  // namespace sockagent::testing
