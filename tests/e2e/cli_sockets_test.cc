// The seed scenario and the socket verbs through the real sockctl and the
// real sockagentd, with plain POSIX sockets (test code) as the peers.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <regex>
#include <string>
#include <thread>

#include "tests/support/agent_process.h"
#include "tests/support/posix_peer.h"
#include "tests/support/sockctl_test.h"

namespace sockagent::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class CliSocketsTest : public SockctlTest {
 protected:
  // First match of `pattern`'s group 1 in `text`.
  static std::string Find(const std::string& text, const std::string& pattern) {
    std::smatch m;
    if (!std::regex_search(text, m, std::regex(pattern))) return "";
    return m[1];
  }

  // Starts a server with `args` and returns its port.
  uint16_t StartServer(std::vector<std::string> args, std::string* id) {
    args.insert(args.begin(), {"--json", "server", "start"});
    const std::string out = Ok(args);
    *id = Find(out, "\"id\":\"(srv-[0-9]+)\"");
    const std::string port = Find(out, "\"port\":([0-9]+)");
    EXPECT_FALSE(port.empty()) << out;
    return port.empty() ? 0 : static_cast<uint16_t>(std::stoi(port));
  }

  std::string OpenClient(uint16_t port) {
    std::string id =
        Ok({"client", "open", "-q", "127.0.0.1", std::to_string(port)});
    while (!id.empty() && id.back() == '\n') id.pop_back();
    EXPECT_THAT(id, ::testing::MatchesRegex("conn-[0-9]+"));
    return id;
  }
};

TEST_F(CliSocketsTest, SeedGreetingServerThenListings) {
  std::string id;
  const uint16_t port =
      StartServer({"--port", "0", "--greeting", "Thank you for connecting",
                   "--close-after", "--label", "demo=seed"},
                  &id);
  Fd client = TcpConnect(Ip("127.0.0.1", port));
  ASSERT_TRUE(client.valid());
  const std::string peer =
      "127.0.0.1:" + std::to_string(LocalPort(client.get()));
  EXPECT_EQ(ReadToEof(client.get()), "Thank you for connecting");

  std::string conns;
  ASSERT_TRUE(WaitFor([&] {
    conns = Ok({"conn", "list", "--all", "--label", "demo=seed"});
    return conns.find("closed") != std::string::npos;
  })) << conns;
  EXPECT_THAT(conns, HasSubstr(peer));
  EXPECT_THAT(conns, HasSubstr("accepted by " + id));
  const std::string json =
      Ok({"--json", "conn", "list", "--all", "--label", "demo=seed"});
  EXPECT_THAT(json, HasSubstr("\"bytesSent\":\"24\""));

  const std::string servers = Ok({"server", "list", "--label", "demo=seed"});
  EXPECT_THAT(servers, HasSubstr(id));
  EXPECT_THAT(Ok({"--json", "server", "list", "--label", "demo=seed"}),
              HasSubstr("\"connectionsAccepted\":\"1\""));

  Ok({"server", "stop", "--label", "demo=seed"});
  EXPECT_THAT(Ok({"server", "list", "--label", "demo=seed"}),
              Not(HasSubstr(id)));
}

TEST_F(CliSocketsTest, ClientOpenAndRecvReadPlainServersGreeting) {
  uint16_t port = 0;
  Fd listener = TcpListen(4, &port);
  std::thread server([&] {
    Fd peer = Accept(listener.get());
    WriteAll(peer.get(), "Thank you for connecting");
  });
  const std::string id = OpenClient(port);
  server.join();
  CommandResult r = Ctl({"recv", id, "--exactly", "24", "--wait", "5s"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "Thank you for connecting");
}

TEST_F(CliSocketsTest, EchoWithEscapesHexStdinAndUntil) {
  std::string server_id;
  const uint16_t port = StartServer({"--echo"}, &server_id);
  const std::string id = OpenClient(port);
  Ok({"send", id, "hello\\r\\n"});
  EXPECT_EQ(Ok({"recv", id, "--until", "\\n", "--wait", "5s"}), "hello\r\n");
  Ok({"send", id}, "abc");                // stdin
  Ok({"send", id, "--hex", "64 65 00"});  // "de\0"
  EXPECT_EQ(Ok({"recv", id, "--exactly", "6", "--wait", "5s"}),
            std::string("abcde\0", 6));
}

TEST_F(CliSocketsTest, RecvConditionsUnmetExitOne) {
  std::string server_id;
  const uint16_t port = StartServer({"--hold"}, &server_id);
  const std::string id = OpenClient(port);
  CommandResult r = Ctl({"recv", id, "--exactly", "10", "--wait", "200ms"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("no data"));
  r = Ctl({"recv", id});  // Nothing buffered, no wait: empty, success.
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "");
}

TEST_F(CliSocketsTest, LabelSelectorCleansUpEverything) {
  std::string a, b;
  const uint16_t port = StartServer({"--hold", "--label", "run=42"}, &a);
  StartServer({"--echo", "--label", "run=42"}, &b);
  Ok({"client", "open", "-q", "--label", "run=42", "127.0.0.1",
      std::to_string(port)});
  ASSERT_TRUE(WaitFor([&] {
    // The client and the connection the hold server accepted.
    std::string ids = Ok({"conn", "list", "-q", "--server", a});
    return !ids.empty();
  }));
  Ok({"server", "stop", "--label", "run=42", "--close-connections"});
  Ok({"close", "--label", "run=42"});
  EXPECT_EQ(Ok({"server", "list", "-q", "--label", "run=42"}), "");
  EXPECT_EQ(Ok({"conn", "list", "-q", "--label", "run=42"}), "");
  // Stopped and closed ones stay listable with --all.
  EXPECT_THAT(Ok({"server", "list", "--all", "-q", "--label", "run=42"}),
              HasSubstr(a));
}

TEST_F(CliSocketsTest, UdpEchoServer) {
  std::string id;
  const uint16_t port = StartServer({"--udp", "--echo"}, &id);
  Fd peer = UdpBound();
  ASSERT_TRUE(SendTo(peer.get(), "datagram", Ip("127.0.0.1", port)));
  EXPECT_EQ(RecvDatagram(peer.get()), "datagram");
  EXPECT_THAT(Ok({"conn", "list", "--server", id}), HasSubstr("udp peer"));
}

TEST_F(CliSocketsTest, UnixGreetingServer) {
  TempDir dir;
  const std::string path = dir.path() + "/seed.sock";
  Ok({"server", "start", "--unix", path, "--greeting", "hi\\n",
      "--close-after"});
  Fd client = UnixConnect(path);
  ASSERT_TRUE(client.valid());
  EXPECT_EQ(ReadToEof(client.get()), "hi\n");
}

TEST_F(CliSocketsTest, AbortAndErrors) {
  std::string server_id;
  const uint16_t port = StartServer({"--hold"}, &server_id);
  const std::string id = OpenClient(port);
  Ok({"close", id, "--abort"});
  CommandResult r = Ctl({"send", id, "late"});
  EXPECT_EQ(r.exit_code, 19);  // 10 + FAILED_PRECONDITION.
  r = Ctl({"recv", "conn-999999"});
  EXPECT_EQ(r.exit_code, 15);  // 10 + NOT_FOUND.
  EXPECT_THAT(r.err, HasSubstr("NOT_FOUND"));
  r = Ctl({"server", "start", "--label", "novalue"});
  EXPECT_EQ(r.exit_code, 2);
  r = Ctl({"server", "start", "--port", "70000"});
  EXPECT_NE(r.exit_code, 0);
  r = Ctl({"client", "open", "127.0.0.1", "0"});
  EXPECT_NE(r.exit_code, 0);
  r = Ctl({"server", "stop"});
  EXPECT_EQ(r.exit_code, 2);  // Neither id nor selector.
}

}  // namespace
}  // namespace sockagent::testing
