// `sockctl perf` between two real sockagentd processes on loopback (TCP
// and UDP, short runs), its JSON, its cleanup on Ctrl-C, and the Perf
// RPC's bounds answered over gRPC.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "tests/support/agent_rpc.h"
#include "tests/support/posix_peer.h"
#include "tests/support/wait.h"

namespace sockagent::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::Not;

class PerfTest : public AgentTestBase {
 protected:
  void SetUp() override {
    StartAgent();
    auto b = AgentProcess::Start();
    ASSERT_TRUE(b.ok()) << b.status();
    b_ = *std::move(b);
    b_stub_ = v1::SocketAgent::NewStub(ChannelTo(b_->address()));
  }

  // sockctl --agent A --agent B ARGS...
  CommandResult Perf(std::vector<std::string> args) {
    args.insert(args.begin(), {"--agent", b_->address(), "perf"});
    return RunSockctl(agent_->address(), args);
  }

  // Listening servers on B carrying the sockctl-perf label.
  int PerfServersOnB() {
    v1::ListServersRequest request;
    v1::ListServersResponse response;
    auto context = ContextWithDeadline();
    grpc::Status s = b_stub_->ListServers(context.get(), request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    int n = 0;
    for (const auto& server : response.servers()) {
      if (server.labels().contains("sockctl-perf") &&
          server.state() == v1::SERVER_STATE_LISTENING) {
        ++n;
      }
    }
    return n;
  }

  // A discard server on B, as `server start --discard` would start it.
  v1::Server StandingDiscard(v1::Transport transport) {
    return StartLoopbackServer(*b_stub_, [&](v1::StartServerRequest& r) {
      r.set_transport(transport);
      r.mutable_behavior()->Clear();
      r.mutable_behavior()->mutable_discard();
    });
  }

  // Whether B's server `id` still listens.
  bool ListeningOnB(const std::string& id) {
    v1::ListServersRequest request;
    v1::ListServersResponse response;
    auto context = ContextWithDeadline();
    EXPECT_TRUE(b_stub_->ListServers(context.get(), request, &response).ok());
    for (const auto& server : response.servers()) {
      if (server.id() == id) {
        return server.state() == v1::SERVER_STATE_LISTENING;
      }
    }
    return false;
  }

  std::unique_ptr<AgentProcess> b_;
  std::unique_ptr<v1::SocketAgent::Stub> b_stub_;
};

// The "bytes" of the JSON object that starts at `key` in `json`.
std::string BytesOf(const std::string& json, const std::string& key) {
  const size_t object = json.find(key);
  if (object == std::string::npos) return "";
  const size_t at = json.find("\"bytes\":\"", object);
  if (at == std::string::npos) return "";
  const size_t start = at + 9;
  return json.substr(start, json.find('"', start) - start);
}

TEST_F(PerfTest, TcpBetweenTwoAgentsPrintsSenderAndReceiver) {
  CommandResult r = Perf({"--time", "0.5s", "--parallel", "2"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr(absl::StrCat("perf ", agent_->address(), " -> ",
                                            b_->address(), " tcp 127.0.0.1:")));
  EXPECT_THAT(r.out, HasSubstr("2 streams"));
  EXPECT_THAT(r.out, HasSubstr("RETR"));
  EXPECT_THAT(r.out,
              MatchesRegex("(.|\n)*sender +[0-9.]+[KMGT]?i?B +0\\.[0-9]+ "
                           "+[0-9.]+ [kMG]?bit/s +[0-9]+ +[0-9.]+(us|ms) "
                           "(.|\n)*"));
  EXPECT_THAT(r.out, MatchesRegex("(.|\n)*receiver +[0-9.]+[KMGT]?i?B(.|\n)*"));
  EXPECT_EQ(PerfServersOnB(), 0);
}

TEST_F(PerfTest, JsonHasBothSidesAndTheyAgreeForTcp) {
  CommandResult r = Perf({"--time", "0.5s", "-o", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // lowerCamelCase keys, as every sockctl JSON.
  EXPECT_THAT(r.out, HasSubstr("\"bitsPerSecond\":"));
  EXPECT_THAT(r.out, HasSubstr("\"tcpInfo\":{"));
  EXPECT_THAT(r.out, HasSubstr("\"drained\":true"));
  EXPECT_THAT(r.out, Not(HasSubstr("bits_per_second")));
  // The sender's bytes (all drained) are the receiver's.
  const std::string sender = r.out.substr(r.out.find("\"sender\":{"));
  const std::string receiver = r.out.substr(r.out.find("\"receiver\":{"));
  auto bytes = [](const std::string& side) {
    const size_t at = side.find("\"bytes\":\"") + 9;
    return side.substr(at, side.find('"', at) - at);
  };
  EXPECT_EQ(bytes(sender), bytes(receiver));
  EXPECT_NE(bytes(sender), "0");
}

TEST_F(PerfTest, UdpReportsLossAndJitterFromTheReceiver) {
  CommandResult r =
      Perf({"--udp", "--rate", "20M", "--time", "0.5s", "--length", "1200"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr(" udp 127.0.0.1:"));
  EXPECT_THAT(r.out, HasSubstr("JITTER"));
  // Loopback at 20 Mbit/s: a handful lost at most on a loaded machine.
  EXPECT_THAT(r.out,
              MatchesRegex("(.|\n)*receiver .* [0-9]+/[0-9]+ \\([0-9.e+-]+%\\) "
                           "+[0-9.]+ms +[0-9]+\n(.|\n)*"));

  r = Perf({"--udp", "--rate", "20M", "--time", "0.5s", "-o", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("\"lossPercent\":"));
  EXPECT_THAT(r.out, HasSubstr("\"jitter\":\""));
  EXPECT_THAT(r.out, HasSubstr("\"transport\":\"udp\""));
  EXPECT_EQ(PerfServersOnB(), 0);
}

TEST_F(PerfTest, PairsPrintTheThroughputTable) {
  CommandResult r = Perf({"--all-pairs", "--time", "0.3s"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("tcp bandwidth (receiver, bit/s)"));
  EXPECT_THAT(r.out, HasSubstr("SRC\\DST"));
  // Two agents: two cells with a rate, the diagonal "-".
  EXPECT_THAT(r.out, MatchesRegex("(.|\n)*[0-9.]+[kMGT] (.|\n)*"));
  EXPECT_EQ(PerfServersOnB(), 0);
}

// --port P with a discard server already there (iperf3 -s style): it is
// used, left running, and only this run's connections count at the
// receiver, not another caller's bytes.
TEST_F(PerfTest, AStandingDiscardServerOnThePortIsUsedAndLeftRunning) {
  const v1::Server tcp = StandingDiscard(v1::TRANSPORT_TCP);
  ASSERT_FALSE(tcp.id().empty());
  const uint16_t port = static_cast<uint16_t>(tcp.local_addresses(0).port());
  Fd other = TcpConnect(FirstAddress(tcp));
  ASSERT_TRUE(other.valid());
  const std::string others_bytes(100'000, 'o');
  ASSERT_TRUE(WriteAll(other.get(), others_bytes));

  CommandResult r = Perf({"--port", std::to_string(port), "--time", "0.3s",
                          "--target-host", "127.0.0.1", "-v", "-o", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("using its discard server " + tcp.id()));
  const std::string sent = BytesOf(r.out, "\"sender\":{");
  EXPECT_NE(sent, "");
  EXPECT_NE(sent, "0");
  EXPECT_EQ(BytesOf(r.out, "\"receiver\":{"), sent) << r.out;
  EXPECT_TRUE(ListeningOnB(tcp.id()));
  EXPECT_EQ(PerfServersOnB(), 0);  // None of its own was started.

  // UDP: the receiver counts this run's datagrams by the run id.
  const v1::Server udp = StandingDiscard(v1::TRANSPORT_UDP);
  ASSERT_FALSE(udp.id().empty());
  Fd stray = UdpBound();
  ASSERT_TRUE(SendTo(stray.get(), "not a perf datagram", FirstAddress(udp)));
  r = Perf({"--udp", "--rate", "10M", "--time", "0.3s", "--port",
            std::to_string(udp.local_addresses(0).port()), "--target-host",
            "127.0.0.1", "-o", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("\"receiver\":{\"bytes\":\""));
  EXPECT_NE(BytesOf(r.out, "\"receiver\":{"), "0");
  EXPECT_TRUE(ListeningOnB(udp.id()));
  EXPECT_EQ(PerfServersOnB(), 0);

  // Another perf run's own discard server is never borrowed (it stops when
  // that run ends): the port is in use.
  const v1::Server others =
      StartLoopbackServer(*b_stub_, [](v1::StartServerRequest& r) {
        r.mutable_behavior()->Clear();
        r.mutable_behavior()->mutable_discard();
        (*r.mutable_labels())["sockctl-perf"] = "another-run";
      });
  r = Perf({"--port", std::to_string(others.local_addresses(0).port()),
            "--time", "0.3s"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("start the discard server"));
  EXPECT_TRUE(ListeningOnB(others.id()));

  // A port held by something else than a discard server: StartServer's
  // own refusal, in words, and nothing left behind.
  const v1::Server hold = StartLoopbackServer(*b_stub_);
  r = Perf({"--port", std::to_string(hold.local_addresses(0).port()), "--time",
            "0.3s"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("start the discard server"));
  EXPECT_EQ(PerfServersOnB(), 1);  // Only the other run's.
}

// `matrix --bandwidth` is perf over every ordered pair; the probing flags
// are refused with it, and its own flags without it.
TEST_F(PerfTest, MatrixBandwidthRunsEveryPairAndRefusesProbeFlags) {
  auto matrix = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {"--agent", b_->address(), "matrix"});
    return RunSockctl(agent_->address(), args);
  };
  CommandResult r = matrix({"--bandwidth", "--time", "0.3s"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("tcp bandwidth (receiver, bit/s)"));
  EXPECT_THAT(r.out, MatchesRegex("(.|\n)*[0-9.]+[kMGT] (.|\n)*"));
  r = matrix(
      {"--bandwidth", "--udp", "--rate", "5M", "--time", "0.3s", "-o", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("\"transport\":\"udp\""));
  EXPECT_EQ(PerfServersOnB(), 0);

  r = matrix({"--bandwidth", "--tls"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("--tls is for the connectivity matrix"));
  r = matrix({"--bandwidth", "--tcp", "--udp"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("one transport"));
  r = matrix({"--pairs", "a:b"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("--pairs needs --bandwidth"));
}

TEST_F(PerfTest, BadFlagsAreUsageErrorsBeforeAnyCall) {
  CommandResult r = Perf({"--parallel", "17"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_THAT(r.err, HasSubstr("--parallel"));
  r = Perf({"--udp", "--rate", "fast"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_THAT(r.err, HasSubstr("--rate"));
  r = Perf({"--from", "nobody"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_THAT(r.err, HasSubstr("no agent is named 'nobody'"));
  r = Perf({"--time", "61s"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_EQ(PerfServersOnB(), 0);
}

TEST_F(PerfTest, CtrlCStopsTheRunAndCleansUp) {
  auto child =
      ChildProcess::Start({SOCKCTL_PATH, "--agent", agent_->address(),
                           "--agent", b_->address(), "perf", "--time", "30s"});
  ASSERT_TRUE(child.ok()) << child.status();
  // The run is under way once B's discard server has a connection.
  ASSERT_TRUE(WaitFor([&] {
    v1::ListConnectionsRequest request;  // B holds nothing else.
    v1::ListConnectionsResponse response;
    auto context = ContextWithDeadline();
    b_stub_->ListConnections(context.get(), request, &response);
    for (const auto& c : response.connections()) {
      if (c.counters().bytes_received() > 0) return true;
    }
    return false;
  }));
  const absl::Time signalled = absl::Now();
  absl::StatusOr<int> status =
      (*child)->Stop(SIGINT, absl::Now() + absl::Seconds(20));
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 130) << (*child)->DrainStderr();
  EXPECT_LT(absl::Now() - signalled, absl::Seconds(10));
  EXPECT_EQ(PerfServersOnB(), 0);
}

TEST_F(PerfTest, TheRpcNamesTheFieldOfABadRequest) {
  struct Case {
    std::function<void(v1::PerfRequest&)> edit;
    const char* want;
  } cases[] = {
      {[](v1::PerfRequest& r) { r.set_parallel(17); }, "parallel: "},
      {[](v1::PerfRequest& r) { r.mutable_duration()->set_seconds(61); },
       "duration: "},
      {[](v1::PerfRequest& r) { r.mutable_target()->set_port(70000); },
       "target.port"},
      {[](v1::PerfRequest& r) { r.set_transport(v1::TRANSPORT_UNIX); },
       "transport: "},
      {[](v1::PerfRequest& r) { r.set_udp_rate_bits_per_sec(5); },
       "udp_rate_bits_per_sec: "},
      {[](v1::PerfRequest& r) { r.mutable_target()->clear_host(); },
       "target.host: "},
  };
  for (const Case& c : cases) {
    v1::PerfRequest request;
    request.mutable_target()->set_host("127.0.0.1");
    request.mutable_target()->set_port(9);
    c.edit(request);
    v1::PerfResponse response;
    auto context = ContextWithDeadline();
    grpc::Status s = stub_->Perf(context.get(), request, &response);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << c.want << " " << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr(c.want));
  }
}

TEST_F(PerfTest, AllowDestRefusesTheTarget) {
  // Only 10/8 may be dialled, so the loopback target is refused; nothing is
  // ever sent to 10/8.
  StartAgent({"--allow-dest", "10.0.0.0/8"});
  CommandResult r = Perf({"--time", "0.3s"});
  EXPECT_EQ(r.exit_code, 10 + 7) << r.err;  // PERMISSION_DENIED.
  EXPECT_THAT(r.err, HasSubstr("PERMISSION_DENIED"));
  EXPECT_EQ(PerfServersOnB(), 0);
}

}  // namespace
}  // namespace sockagent::testing
