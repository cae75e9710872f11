// Desired state end to end (issue 17): named servers from sockctl, the
// daemon's --config at start, after kill -9 and on SIGHUP, and
// `sockctl apply` on three real agents. Real sockagentd and sockctl
// processes, loopback only.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tests/support/agent_process.h"
#include "tests/support/agent_rpc.h"
#include "tests/support/grpc_client.h"
#include "tests/support/posix_peer.h"
#include "tests/support/subprocess.h"
#include "tests/support/wait.h"

namespace sockagent::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
}

// A TCP port nobody listens on now (the kernel's pick for port 0).
uint16_t FreeTcpPort() {
  uint16_t port = 0;
  Fd fd = TcpListen(1, &port);
  EXPECT_TRUE(fd.valid());
  return port;
}

// Listening servers by name (named ones only).
std::map<std::string, v1::Server> Named(v1::SocketAgent::Stub& stub) {
  v1::ListServersRequest request;
  v1::ListServersResponse response;
  auto context = ContextWithDeadline();
  grpc::Status s = stub.ListServers(context.get(), request, &response);
  EXPECT_TRUE(s.ok()) << s.error_message();
  std::map<std::string, v1::Server> named;
  for (const v1::Server& server : response.servers()) {
    if (!server.name().empty()) named[server.name()] = server;
  }
  return named;
}

class DesiredState : public ::testing::Test {
 protected:
  void Start(const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {"--config", config_};
    args.insert(args.end(), extra.begin(), extra.end());
    auto agent = AgentProcess::Start(args);
    ASSERT_TRUE(agent.ok()) << agent.status();
    agent_ = *std::move(agent);
    stub_ = v1::SocketAgent::NewStub(ChannelTo(agent_->address()));
    log_.clear();
  }

  // Waits until a line of the agent's stderr holds every one of `parts`;
  // returns it ("" on timeout).
  std::string WaitForLog(const std::vector<std::string>& parts) {
    std::string found;
    WaitFor([&] {
      log_ += agent_->Stderr();
      for (absl::string_view line : absl::StrSplit(log_, '\n')) {
        bool all = true;
        for (const std::string& p : parts) {
          all = all && line.find(p) != absl::string_view::npos;
        }
        if (all) {
          found = std::string(line);
          return true;
        }
      }
      return false;
    });
    return found;
  }

  void Reload() {
    log_ += agent_->Stderr();  // Lines of earlier reloads do not count.
    log_.clear();
    ASSERT_EQ(kill(agent_->pid(), SIGHUP), 0);
  }

  TempDir dir_;
  std::string config_ = dir_.path() + "/agent.yaml";
  std::unique_ptr<AgentProcess> agent_;
  std::unique_ptr<v1::SocketAgent::Stub> stub_;
  std::string log_;
};

TEST_F(DesiredState, KilledAgentRestartsWithTheSameServersOnTheSamePorts) {
  const uint16_t port = FreeTcpPort();
  const std::string sock = dir_.path() + "/hold.sock";
  WriteFile(config_, absl::StrCat(R"(servers:
  - name: echo
    transport: tcp
    bind: {host: 127.0.0.1, port: )",
                                  port, R"(}
    behavior: {echo: {}}
  - name: local
    transport: unix
    bind: {unixPath: ")",
                                  sock, R"("}
  - name: dns
    transport: udp
    bind: {host: 127.0.0.1}
    behavior: {echo: {}}
)"));
  Start();
  std::map<std::string, v1::Server> first = Named(*stub_);
  ASSERT_EQ(first.size(), 3u);
  EXPECT_EQ(first["echo"].local_addresses(0).port(), port);
  EXPECT_EQ(first["echo"].labels().at("sockagent.io/source"), "config");
  EXPECT_EQ(first["local"].local_addresses(0).unix_path(), sock);
  // The echo server echoes.
  Fd peer = TcpConnect(Ip("127.0.0.1", port));
  ASSERT_TRUE(peer.valid());
  ASSERT_TRUE(WriteAll(peer.get(), "ping"));
  EXPECT_EQ(ReadExactly(peer.get(), 4), "ping");
  peer = Fd();

  const pid_t pid = agent_->pid();
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  (void)agent_->Stop();  // Reaps it.
  Start();  // The UNIX socket file the killed agent left is replaced.
  std::map<std::string, v1::Server> second = Named(*stub_);
  ASSERT_EQ(second.size(), 3u);
  EXPECT_EQ(second["echo"].local_addresses(0).port(), port);
  EXPECT_EQ(second["local"].local_addresses(0).unix_path(), sock);
  EXPECT_EQ(second["dns"].transport(), v1::TRANSPORT_UDP);
}

TEST_F(DesiredState, SighupAppliesExactlyTheDiffAndLeavesApiServersAlone) {
  WriteFile(config_, R"(servers:
  - {name: keep, bind: {host: 127.0.0.1}, behavior: {echo: {}}}
  - {name: change, bind: {host: 127.0.0.1}, behavior: {hold: {}}}
  - {name: drop, bind: {host: 127.0.0.1}, behavior: {discard: {}}}
)");
  Start();
  // Made over the API: one named, one not. Neither is the file's.
  const v1::Server api = StartLoopbackServer(
      *stub_, [](v1::StartServerRequest& r) { r.set_name("api"); });
  const v1::Server unnamed = StartLoopbackServer(*stub_);
  std::map<std::string, v1::Server> before = Named(*stub_);
  ASSERT_EQ(before.size(), 4u);

  WriteFile(config_, R"(servers:
  - {name: keep, bind: {host: 127.0.0.1}, behavior: {echo: {}}}
  - {name: change, bind: {host: 127.0.0.1}, behavior: {echo: {}}}
  - {name: add, bind: {host: 127.0.0.1}, behavior: {hold: {}}}
)");
  Reload();
  EXPECT_THAT(WaitForLog({"config_applied", "created=1", "replaced=1",
                          "unchanged=1", "stopped=1", "failed=0"}),
              Not(""));
  std::map<std::string, v1::Server> after = Named(*stub_);
  ASSERT_EQ(after.size(), 4u);
  EXPECT_EQ(after["keep"].id(), before["keep"].id());
  EXPECT_NE(after["change"].id(), before["change"].id());
  EXPECT_TRUE(after["change"].behavior().has_echo());
  EXPECT_EQ(after.count("drop"), 0u);
  EXPECT_EQ(after.count("add"), 1u);
  EXPECT_EQ(after["api"].id(), api.id());
  // The unnamed one still listens too.
  v1::ListServersRequest request;
  v1::ListServersResponse response;
  auto context = ContextWithDeadline();
  ASSERT_TRUE(stub_->ListServers(context.get(), request, &response).ok());
  EXPECT_EQ(response.servers_size(), 5);
  bool found = false;
  for (const auto& s : response.servers()) found |= s.id() == unnamed.id();
  EXPECT_TRUE(found);

  // The same file again changes nothing.
  Reload();
  EXPECT_THAT(WaitForLog({"config_applied", "created=0", "replaced=0",
                          "unchanged=3", "stopped=0"}),
              Not(""));
  EXPECT_EQ(Named(*stub_)["change"].id(), after["change"].id());
}

TEST_F(DesiredState, NameHeldByAnApiServerIsAConflictLoggedNotReplaced) {
  WriteFile(config_, "servers: []\n");
  Start();
  const v1::Server api = StartLoopbackServer(
      *stub_, [](v1::StartServerRequest& r) { r.set_name("web"); });
  WriteFile(config_, R"(servers:
  - {name: web, bind: {host: 127.0.0.1}, behavior: {echo: {}}}
)");
  Reload();
  EXPECT_THAT(WaitForLog({"config_server", "name=web", "action=failed",
                          "not started by the file"}),
              Not(""));
  EXPECT_THAT(WaitForLog({"config_applied", "failed=1"}), Not(""));
  EXPECT_EQ(Named(*stub_)["web"].id(), api.id());
}

TEST_F(DesiredState, BrokenFileOnSighupKeepsTheRunningStateAndSaysWhere) {
  WriteFile(config_, R"(servers:
  - {name: keep, bind: {host: 127.0.0.1}, behavior: {echo: {}}}
)");
  Start();
  const std::string id = Named(*stub_)["keep"].id();
  WriteFile(config_, R"(servers:
  - name: keep
    bind: {host: 127.0.0.1, port: nope}
)");
  Reload();
  const std::string line = WaitForLog({"config_rejected"});
  EXPECT_THAT(line, HasSubstr("line 3, column"));
  EXPECT_THAT(line, HasSubstr("running servers are kept"));
  std::map<std::string, v1::Server> now = Named(*stub_);
  ASSERT_EQ(now.size(), 1u);
  EXPECT_EQ(now["keep"].id(), id);
  // A file the agent refuses (a bad name) is rejected the same way.
  WriteFile(config_, R"(servers:
  - {name: keep, bind: {host: 127.0.0.1}, behavior: {echo: {}}}
  - {name: Bad_Name, bind: {host: 127.0.0.1}}
)");
  Reload();
  EXPECT_THAT(WaitForLog({"config_rejected", "line 3, column 5", "servers[1]",
                          "is not a DNS label"}),
              Not(""));
  EXPECT_EQ(Named(*stub_).size(), 1u);
}

TEST_F(DesiredState, BadFileAtStartRefusesToStartWithLineAndColumn) {
  struct Case {
    std::string file;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {"servers:\n  - name: a\n    bnd: {}\n", "line 3, column 5"},
      {"servers:\n  - {bind: {host: 127.0.0.1}}\n",
       "line 2, column 5: servers[0]: no name"},
      {"servers:\n  - {name: a}\n  - {name: a}\n",
       "line 3, column 5: servers[1].name 'a'"},
      {"servers: [\n", "not valid YAML"},
  };
  for (const Case& c : cases) {
    WriteFile(config_, c.file);
    CommandResult r = RunCommand({SOCKAGENTD_PATH, "--listen=127.0.0.1:0",
                                  "--insecure", "--config", config_});
    EXPECT_NE(r.exit_code, 0) << c.file;
    EXPECT_THAT(r.err, HasSubstr(c.expected)) << c.file;
    EXPECT_THAT(r.err, HasSubstr(", column ")) << c.file;
    EXPECT_THAT(r.out, Not(HasSubstr("serving on"))) << c.file;
  }
  CommandResult missing =
      RunCommand({SOCKAGENTD_PATH, "--listen=127.0.0.1:0", "--insecure",
                  "--config", dir_.path() + "/none.yaml"});
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_THAT(missing.err, HasSubstr("none.yaml: cannot read"));
}

TEST_F(DesiredState, PortTakenAtStartRefusesToStart) {
  uint16_t port = 0;
  Fd taken = TcpListen(1, &port);
  ASSERT_TRUE(taken.valid());
  WriteFile(config_, absl::StrCat("servers:\n  - {name: web, bind: {host: "
                                  "127.0.0.1, port: ",
                                  port, "}}\n"));
  CommandResult r = RunCommand({SOCKAGENTD_PATH, "--listen=127.0.0.1:0",
                                "--insecure", "--config", config_});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("web: bind 127.0.0.1:"));
}

// ---------------------------------------------------------------------------
// sockctl: named servers, and apply.

class NamedServersCli : public ::testing::Test {
 protected:
  void SetUp() override {
    auto agent = AgentProcess::Start();
    ASSERT_TRUE(agent.ok()) << agent.status();
    agent_ = *std::move(agent);
  }
  CommandResult Ctl(const std::vector<std::string>& args) {
    return RunSockctl(agent_->address(), args);
  }
  std::unique_ptr<AgentProcess> agent_;
};

TEST_F(NamedServersCli, StartAgainReplaceAndStopByName) {
  CommandResult r = Ctl({"-q", "server", "start", "--name", "web", "--echo"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string id = std::string(absl::StripAsciiWhitespace(r.out));
  r = Ctl({"-q", "server", "start", "--name", "web", "--echo"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(absl::StripAsciiWhitespace(r.out), id);
  EXPECT_THAT(r.err, HasSubstr("unchanged: server 'web'"));
  r = Ctl({"server", "list"});
  EXPECT_THAT(r.out, HasSubstr("NAME"));
  EXPECT_THAT(r.out, HasSubstr(" web "));
  r = Ctl({"server", "start", "--name", "web", "--discard"});
  EXPECT_EQ(r.exit_code, 16);  // 10 + ALREADY_EXISTS.
  EXPECT_THAT(r.err, HasSubstr("behavior 'echo' -> 'discard'"));
  r = Ctl({"-q", "server", "start", "--name", "web", "--discard", "--replace"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("replaced: server 'web'"));
  EXPECT_NE(absl::StripAsciiWhitespace(r.out), id);
  r = Ctl({"server", "start", "--replace", "--echo"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("--replace goes with --name"));
  r = Ctl({"server", "start", "--name", "Web!", "--echo"});
  EXPECT_EQ(r.exit_code, 13);  // 10 + INVALID_ARGUMENT.
  EXPECT_THAT(r.err, HasSubstr("is not a DNS label"));
  r = Ctl({"-q", "server", "stop", "web"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = Ctl({"server", "stop", "web"});
  EXPECT_EQ(r.exit_code, 15);  // 10 + NOT_FOUND.
  r = Ctl({"server", "stop", "--name", "web", "srv-1"});
  EXPECT_EQ(r.exit_code, 2);
}

class ApplyFleet : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int i = 0; i < 3; ++i) {
      auto agent = AgentProcess::Start();
      ASSERT_TRUE(agent.ok()) << agent.status();
      stubs_.push_back(
          v1::SocketAgent::NewStub(ChannelTo((*agent)->address())));
      agents_.push_back(*std::move(agent));
    }
  }

  CommandResult Apply(const std::vector<std::string>& extra) {
    std::vector<std::string> argv = {SOCKCTL_PATH};
    for (const auto& a : agents_) {
      argv.push_back("--agent");
      argv.push_back(a->address());
    }
    argv.push_back("apply");
    argv.insert(argv.end(), extra.begin(), extra.end());
    return RunCommand(argv, "", absl::Seconds(60));
  }

  static int Count(const std::string& text, const std::string& word) {
    int n = 0;
    for (size_t at = text.find(word); at != std::string::npos;
         at = text.find(word, at + 1)) {
      ++n;
    }
    return n;
  }

  TempDir dir_;
  std::vector<std::unique_ptr<AgentProcess>> agents_;
  std::vector<std::unique_ptr<v1::SocketAgent::Stub>> stubs_;
};

TEST_F(ApplyFleet, SecondApplyChangesNothingDryRunChangesNothingPruneStops) {
  const std::string file = dir_.path() + "/servers.yaml";
  WriteFile(file, R"(servers:
  - {name: echo, bind: {host: 127.0.0.1}, behavior: {echo: {}}}
  - {name: sink, bind: {host: 127.0.0.1}, behavior: {discard: {}}}
)");
  // One agent has a named server of its own (made over the API).
  const v1::Server manual = StartLoopbackServer(
      *stubs_[0], [](v1::StartServerRequest& r) { r.set_name("manual"); });

  CommandResult r = Apply({"-f", file});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Count(r.out, " created "), 6) << r.out;
  EXPECT_EQ(Count(r.out, "2 created, 0 replaced, 0 stopped"), 3) << r.out;
  std::vector<std::string> echo_ids;
  for (auto& stub : stubs_) {
    std::map<std::string, v1::Server> named = Named(*stub);
    ASSERT_EQ(named.count("echo"), 1u);
    echo_ids.push_back(named["echo"].id());
  }

  r = Apply({"-f", file});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Count(r.out, "no changes (2 unchanged)"), 3) << r.out;
  EXPECT_EQ(Count(r.out, " created "), 0) << r.out;

  // A changed file, dry run: the plan, and nothing changes.
  WriteFile(file, R"(servers:
  - {name: echo, bind: {host: 127.0.0.1}, behavior: {hold: {}}}
  - {name: extra, bind: {host: 127.0.0.1}}
)");
  r = Apply({"-f", file, "--dry-run", "--prune"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Count(r.out, " replace "), 3) << r.out;
  EXPECT_EQ(Count(r.out, " create "), 3) << r.out;
  EXPECT_EQ(Count(r.out, " stop "), 3) << r.out;
  EXPECT_THAT(r.out, HasSubstr("behavior 'echo' -> 'hold'"));
  EXPECT_EQ(Count(r.out, "dry run: nothing changed"), 3) << r.out;
  for (size_t i = 0; i < stubs_.size(); ++i) {
    std::map<std::string, v1::Server> named = Named(*stubs_[i]);
    EXPECT_EQ(named["echo"].id(), echo_ids[i]);
    EXPECT_EQ(named.count("sink"), 1u);
    EXPECT_EQ(named.count("extra"), 0u);
  }

  // For real, with --prune: sink stops; manual (not apply's) stays.
  r = Apply({"-f", file, "--prune"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Count(r.out, "1 created, 1 replaced, 1 stopped, 0 unchanged"), 3)
      << r.out;
  for (size_t i = 0; i < stubs_.size(); ++i) {
    std::map<std::string, v1::Server> named = Named(*stubs_[i]);
    EXPECT_NE(named["echo"].id(), echo_ids[i]);
    EXPECT_TRUE(named["echo"].behavior().has_hold());
    EXPECT_EQ(named.count("sink"), 0u);
    EXPECT_EQ(named.count("extra"), 1u);
  }
  EXPECT_EQ(Named(*stubs_[0])["manual"].id(), manual.id());
}

TEST_F(ApplyFleet, ServerListYamlAppliesBackUnchanged) {
  const std::string file = dir_.path() + "/servers.yaml";
  WriteFile(file, R"(servers:
  - {name: echo, bind: {host: 127.0.0.1}, behavior: {echo: {}}, labels: {a: b}}
  - name: hello
    transport: udp
    bind: {host: 127.0.0.1}
    behavior: {greeting: {data: aGkK}}
    ttl: 1h
)");
  ASSERT_EQ(Apply({"-f", file}).exit_code, 0);
  // The listing of the first agent, written as a file, applied to all.
  CommandResult listed =
      RunSockctl(agents_[0]->address(), {"server", "list", "-o", "yaml"});
  ASSERT_EQ(listed.exit_code, 0) << listed.err;
  const std::string round = dir_.path() + "/listed.yaml";
  WriteFile(round, listed.out);
  CommandResult r = Apply({"-f", round});
  ASSERT_EQ(r.exit_code, 0) << r.err << listed.out;
  EXPECT_EQ(Count(r.out, "no changes (2 unchanged)"), 3) << r.out;
}

TEST_F(ApplyFleet, BadFileIsAUsageErrorWithLineAndColumn) {
  const std::string file = dir_.path() + "/servers.yaml";
  WriteFile(file, "servers:\n  - name: a\n    behaviour: {echo: {}}\n");
  CommandResult r = Apply({"-f", file});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("line 3, column 5"));
  // A file the agents refuse changes nothing on them.
  WriteFile(file, R"(servers:
  - {name: fine, bind: {host: 127.0.0.1}}
  - {name: Not-A-Label, bind: {host: 127.0.0.1}}
)");
  r = Apply({"-f", file});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("nothing was applied on this agent"));
  for (auto& stub : stubs_) EXPECT_EQ(Named(*stub).size(), 0u);
}

}  // namespace
}  // namespace sockagent::testing
