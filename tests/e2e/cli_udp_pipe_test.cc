// `sockctl recv` on a UDP peer session with stdout through a pipe: the
// datagram boundaries survive (one escaped line per datagram,
// cli/datagram_text.h); --raw gives the bytes run together, as asked.
#include <gtest/gtest.h>

#include <string>

#include "tests/support/agent_rpc.h"
#include "tests/support/posix_peer.h"
#include "tests/support/wait.h"

namespace sockagent::testing {
namespace {

class CliUdpPipe : public AgentTestBase {
 protected:
  void SetUp() override {
    StartAgent();
    server_ = StartLoopbackServer(*stub_, [](v1::StartServerRequest& r) {
      r.set_transport(v1::TRANSPORT_UDP);
    });
    peer_ = UdpBound();
    ASSERT_TRUE(peer_.valid());
  }

  // Sends `datagrams` from the plain peer and waits until the agent holds
  // all of them in the peer's session; returns the session's id.
  std::string SendAndWait(const std::vector<std::string>& datagrams) {
    for (const std::string& d : datagrams) {
      EXPECT_TRUE(SendTo(peer_.get(), d, FirstAddress(server_)));
    }
    std::string id;
    EXPECT_TRUE(WaitFor([&] {
      v1::ListConnectionsRequest request;
      request.set_server_id(server_.id());
      v1::ListConnectionsResponse response;
      auto ctx = ContextWithDeadline();
      if (!stub_->ListConnections(ctx.get(), request, &response).ok() ||
          response.connections_size() != 1) {
        return false;
      }
      id = response.connections(0).id();
      return response.connections(0).counters().datagrams_received() ==
             received_ + datagrams.size();
    }));
    received_ += datagrams.size();
    return id;
  }

  v1::Server server_;
  Fd peer_;
  size_t received_ = 0;
};

TEST_F(CliUdpPipe, OneEscapedLinePerDatagram) {
  const std::string id = SendAndWait(
      {"dgram1", "dgram2", "two\nlines\\", std::string("\0\xff", 2), ""});
  ASSERT_FALSE(id.empty());
  CommandResult r = RunSockctl(agent_->address(), {"recv", id, "--wait", "5s"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "dgram1\ndgram2\ntwo\\nlines\\\\\n\\x00\\xff\n\n");
}

TEST_F(CliUdpPipe, RawRunsDatagramsTogether) {
  const std::string id = SendAndWait({"dgram1", "dgram2"});
  ASSERT_FALSE(id.empty());
  CommandResult r =
      RunSockctl(agent_->address(), {"recv", id, "--wait", "5s", "--raw"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "dgram1dgram2");
}

}  // namespace
}  // namespace sockagent::testing
