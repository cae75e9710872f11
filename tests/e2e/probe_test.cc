// The Probe RPC and `sockctl probe` against a real sockagentd, with plain
// POSIX peers (tests/support/echo_peer.h) as the targets, and for TLS
// probes Python's ssl module (tests/support/tls_echo.py) with a PKI made by
// openssl at test time.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "tests/support/agent_rpc.h"
#include "tests/support/echo_peer.h"
#include "tests/support/tls_peer.h"

namespace sockagent::testing {
namespace {

using ::testing::HasSubstr;

// A port nobody listens on (bound, then closed again).
uint16_t ClosedTcpPort() {
  uint16_t port = 0;
  Fd fd = TcpListen(1, &port);
  return port;
}

class ProbeTest : public AgentTestBase {
 protected:
  void SetUp() override { StartAgent(); }

  grpc::Status Probe(const v1::ProbeRequest& request,
                     v1::ProbeResponse* response,
                     std::chrono::seconds deadline = std::chrono::seconds(30)) {
    auto context = ContextWithDeadline(deadline);
    return stub_->Probe(context.get(), request, response);
  }
};

TEST_F(ProbeTest, SockctlProbeSaysPerTargetAndExitsOneUnlessAllOk) {
  EchoPeer echo(/*echo=*/true);
  const std::string ok = absl::StrCat("127.0.0.1:", echo.port());
  const std::string closed = absl::StrCat("127.0.0.1:", ClosedTcpPort());

  CommandResult r = RunSockctl(agent_->address(), {"probe", ok, "--echo"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("TARGET"));
  EXPECT_THAT(r.out, HasSubstr(ok + "  OK"));

  r = RunSockctl(agent_->address(), {"probe", ok, closed});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.out, HasSubstr(closed + "  REFUSED"));
  EXPECT_THAT(r.out, HasSubstr("connection refused"));

  r = RunSockctl(agent_->address(),
                 {"probe", "--udp", absl::StrCat("127.0.0.1:", echo.udp_port()),
                  "-o", "json"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("\"result\":\"PROBE_RESULT_OK\""));
  EXPECT_THAT(r.out, HasSubstr("\"bytesReceived\":\"14\""));

  r = RunSockctl(agent_->address(), {"probe", "no-port-here"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_THAT(r.err, HasSubstr("give HOST:PORT"));
}

TEST_F(ProbeTest, ManyTargetsInOneCallEachWithItsOutcome) {
  EchoPeer echo(/*echo=*/true);
  EchoPeer silent(/*echo=*/false);
  v1::ProbeRequest request;
  request.mutable_timeout()->set_nanos(300 * 1000 * 1000);
  for (int i = 0; i < 200; ++i) {
    v1::ProbeTarget* t = request.add_targets();
    t->mutable_endpoint()->set_host(i % 2 == 0 ? "127.0.0.1" : "::1");
    t->mutable_endpoint()->set_port(i % 2 == 0 ? echo.port() : ClosedTcpPort());
    t->set_payload("abc");
    t->set_expect_echo(true);
  }
  v1::ProbeTarget* quiet = request.add_targets();
  quiet->mutable_endpoint()->set_host("127.0.0.1");
  quiet->mutable_endpoint()->set_port(silent.port());
  quiet->set_payload("abc");
  quiet->set_expect_echo(true);
  v1::ProbeResponse response;
  grpc::Status s = Probe(request, &response);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(response.outcomes_size(), 201);
  for (int i = 0; i < 200; ++i) {
    EXPECT_EQ(response.outcomes(i).result(),
              i % 2 == 0 ? v1::PROBE_RESULT_OK : v1::PROBE_RESULT_REFUSED)
        << i << ": " << response.outcomes(i).error();
  }
  EXPECT_EQ(response.outcomes(200).result(), v1::PROBE_RESULT_TIMEOUT);
  EXPECT_THAT(response.outcomes(200).error(), HasSubstr("0 of 3 bytes back"));
}

TEST_F(ProbeTest, BadRequestsNameTheFieldAndTheAgentKeepsServing) {
  struct Case {
    std::function<void(v1::ProbeRequest&)> edit;
    const char* want;
  } cases[] = {
      {[](v1::ProbeRequest& r) { r.clear_targets(); },
       "targets: at least one target"},
      {[](v1::ProbeRequest& r) {
         r.mutable_targets(0)->mutable_endpoint()->set_port(70000);
       },
       "targets[0].endpoint.port 70000 is out of range"},
      {[](v1::ProbeRequest& r) {
         r.mutable_targets(0)->set_transport(static_cast<v1::Transport>(9));
       },
       "targets[0]: unknown transport value 9"},
      {[](v1::ProbeRequest& r) { r.mutable_timeout()->set_seconds(-1); },
       "timeout"},
      {[](v1::ProbeRequest& r) { r.mutable_timeout()->set_seconds(3600); },
       "timeout: 1h is not between 0 and 1m"},
      {[](v1::ProbeRequest& r) {
         r.mutable_targets(0)->set_transport(v1::TRANSPORT_UDP);
       },
       "targets[0].payload: a UDP probe needs a payload"},
      {[](v1::ProbeRequest& r) {
         for (int i = 0; i < 1100; ++i) *r.add_targets() = r.targets(0);
       },
       "targets: 1101 targets; at most 1024"},
      {[](v1::ProbeRequest& r) {
         r.mutable_targets(0)->set_transport(v1::TRANSPORT_UDP);
         r.mutable_targets(0)->set_payload("x");
         r.mutable_targets(0)->mutable_tls();
       },
       "targets[0].tls: TLS goes with TCP targets (UDP has no DTLS here)"},
      {[](v1::ProbeRequest& r) {
         r.mutable_targets(0)->mutable_tls()->set_ca_pem("not a PEM");
       },
       "targets[0].tls.ca_pem: no PEM certificate found"},
      {[](v1::ProbeRequest& r) {
         r.mutable_targets(0)->mutable_tls()->set_min_version(
             static_cast<v1::TlsVersion>(7));
       },
       "targets[0].tls.min_version: unknown version 7"},
  };
  for (const Case& c : cases) {
    v1::ProbeRequest request;
    v1::ProbeTarget* t = request.add_targets();
    t->mutable_endpoint()->set_host("127.0.0.1");
    t->mutable_endpoint()->set_port(9);
    c.edit(request);
    v1::ProbeResponse response;
    grpc::Status s = Probe(request, &response);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.want;
    EXPECT_THAT(s.error_message(), HasSubstr(c.want));
  }
  // Still serving.
  EchoPeer echo(/*echo=*/true);
  v1::ProbeRequest request;
  v1::ProbeTarget* t = request.add_targets();
  t->mutable_endpoint()->set_host("127.0.0.1");
  t->mutable_endpoint()->set_port(echo.port());
  v1::ProbeResponse response;
  ASSERT_TRUE(Probe(request, &response).ok());
  EXPECT_EQ(response.outcomes(0).result(), v1::PROBE_RESULT_OK);
}

TEST_F(ProbeTest, SockctlProbeSslVerifiesAndSaysTlsWhenTheHandshakeFails) {
  Pki pki;
  TlsEchoPeer tls(pki.Path("leaf.pem"), pki.Path("leaf.key"));
  EchoPeer plain(/*echo=*/true);
  const std::string target = absl::StrCat("127.0.0.1:", tls.port());

  CommandResult r = RunSockctl(
      agent_->address(),
      {"probe", target, "--echo", "--ssl", "--ssl-ca", pki.Path("ca.pem")});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("HANDSHAKE"));
  EXPECT_THAT(r.out, HasSubstr(target + "  OK"));

  // A CA that did not sign the server's certificate, and a server that
  // does not speak TLS: RESULT TLS, with OpenSSL's words.
  const std::string not_tls = absl::StrCat("127.0.0.1:", plain.port());
  r = RunSockctl(agent_->address(), {"probe", target, not_tls, "--ssl",
                                     "--ssl-ca", pki.Path("other.pem")});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr(target + "  TLS"));
  EXPECT_THAT(r.out, HasSubstr(not_tls + "  TLS"));
  EXPECT_THAT(r.out, HasSubstr("TLS handshake failed: certificate verify "
                               "failed: unable to get local issuer"));

  r = RunSockctl(agent_->address(),
                 {"-o", "json", "probe", target, "--ssl", "--ssl-verify-off",
                  "--echo", "--data", "hello over tls"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("\"result\":\"PROBE_RESULT_OK\""));
  EXPECT_THAT(r.out, HasSubstr("\"handshakeTime\""));
  EXPECT_THAT(r.out, HasSubstr("\"bytesReceived\":\"14\""));

  // TLS on UDP or UNIX targets is a usage error, before any call.
  r = RunSockctl(agent_->address(), {"probe", "--udp", target, "--ssl"});
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr("--ssl goes with TCP targets"));
  r = RunSockctl(agent_->address(), {"probe", "--unix", "/tmp/x", "--ssl"});
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  r = RunSockctl(agent_->address(), {"probe", target, "--sni", "x"});
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr("go with --ssl"));
}

TEST_F(ProbeTest, TheCallsDeadlineBoundsTheProbes) {
  EchoPeer silent(/*echo=*/false);
  v1::ProbeRequest request;
  request.mutable_timeout()->set_seconds(30);
  request.set_concurrency(1);
  for (int i = 0; i < 3; ++i) {
    v1::ProbeTarget* t = request.add_targets();
    t->mutable_endpoint()->set_host("127.0.0.1");
    t->mutable_endpoint()->set_port(silent.port());
    t->set_payload("x");
    t->set_expect_echo(true);
  }
  v1::ProbeResponse response;
  const absl::Time start = absl::Now();
  grpc::Status s = Probe(request, &response, std::chrono::seconds(1));
  // The agent answers at its deadline or the client gives up at it: either
  // way not 3 x 30 s later.
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  if (s.ok()) {
    EXPECT_EQ(response.outcomes(2).error(),
              "not started: the call's deadline passed");
  } else {
    EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  }
  // The agent let the sockets go: a new call is served at once.
  request.mutable_timeout()->set_nanos(100 * 1000 * 1000);
  request.mutable_timeout()->set_seconds(0);
  ASSERT_TRUE(Probe(request, &response).ok());
}

}  // namespace
}  // namespace sockagent::testing
