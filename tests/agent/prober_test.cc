// agent/prober.h on a real loop against plain POSIX peers on loopback: an
// echo server (TCP, IPv4 and IPv6), a UDP echo, a server that accepts and
// never answers, closed ports, missing UNIX sockets, the policy; and TLS
// probes against Python's ssl module (tests/support/tls_echo.py) with a PKI
// made by openssl at test time.
#include "agent/prober.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "tests/support/agent_process.h"
#include "tests/support/echo_peer.h"
#include "tests/support/posix_peer.h"
#include "tests/support/tls_peer.h"
#include "tests/support/wait.h"

namespace sockagent {
namespace {

// OpenSSL writes with write(2): a peer's reset would raise SIGPIPE. The
// engine's users ignore it (sockagentd does), and so does this binary.
const bool kSigpipeIgnored = [] {
  signal(SIGPIPE, SIG_IGN);
  return true;
}();

using testing::EchoPeer;
using testing::Fd;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// A port nobody listens on: bound and closed again.
uint16_t ClosedPort(int type) {
  Fd fd(::socket(AF_INET, type | SOCK_CLOEXEC, 0));
  sockaddr_storage ss;
  const socklen_t len = testing::ToSockaddr(testing::Ip("127.0.0.1", 0), &ss);
  EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len), 0);
  return testing::LocalPort(fd.get());
}

ProbeTarget Tcp(const std::string& host, uint16_t port,
                std::string payload = "", bool echo = false) {
  ProbeTarget t;
  t.endpoint.host = host;
  t.endpoint.port = absl::StrCat(port);
  t.payload = std::move(payload);
  t.expect_echo = echo;
  return t;
}

ProbeTarget Udp(const std::string& host, uint16_t port, std::string payload) {
  ProbeTarget t = Tcp(host, port, std::move(payload), true);
  t.transport = Transport::kUdp;
  return t;
}

class ProberTest : public ::testing::Test {
 protected:
  void SetUp() override { Make({}); }
  void TearDown() override { Stop(); }

  void Make(ProberOptions options) {
    Stop();
    io_ = std::make_unique<asio::io_context>();
    work_.emplace(asio::make_work_guard(*io_));
    prober_ = std::make_unique<Prober>(*io_, options);
    loop_ = std::thread([this] { io_->run(); });
  }
  void Stop() {
    if (prober_ == nullptr) return;
    // The prober is the loop's: shut it down there, then stop the loop.
    absl::Notification shut;
    asio::post(*io_, [&] {
      prober_->Shutdown();
      shut.Notify();
    });
    shut.WaitForNotificationWithTimeout(absl::Seconds(30));
    work_.reset();
    io_->stop();
    loop_.join();
    prober_.reset();
    io_.reset();
  }

  absl::StatusOr<ProbeReport> Run(ProbeSpec spec) {
    absl::Notification done;
    std::optional<absl::StatusOr<ProbeReport>> result;
    prober_->Start(std::move(spec), [&](absl::StatusOr<ProbeReport> r) {
      result = std::move(r);
      done.Notify();
    });
    EXPECT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(60)));
    return result.value_or(absl::InternalError("no answer"));
  }

  std::unique_ptr<asio::io_context> io_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>>
      work_;
  std::unique_ptr<Prober> prober_;
  std::thread loop_;
};

TEST_F(ProberTest, ClassesFromTheSocketsOwnErrors) {
  EchoPeer echo(/*echo=*/true);
  EchoPeer silent(/*echo=*/false);
  testing::TempDir dir;
  ProbeSpec spec;
  // Generous for the probes that succeed on a loaded machine; the silent
  // ones take all of it.
  spec.timeout = absl::Seconds(2);
  spec.targets = {
      Tcp("127.0.0.1", echo.port(), "ping\n", true),         // 0 OK
      Tcp("127.0.0.1", echo.port()),                         // 1 OK, connect
      Tcp("127.0.0.1", ClosedPort(SOCK_STREAM), "x", true),  // 2 REFUSED
      Tcp("127.0.0.1", silent.port(), "hello", true),        // 3 TIMEOUT
      Udp("127.0.0.1", echo.udp_port(), "dgram"),            // 4 OK
      Udp("127.0.0.1", ClosedPort(SOCK_DGRAM), "dgram"),     // 5 REFUSED
      Udp("127.0.0.1", silent.udp_port(), "dgram"),          // 6 TIMEOUT
  };
  ProbeTarget missing;
  missing.transport = Transport::kUnix;
  missing.endpoint.unix_path = dir.path() + "/nobody.sock";
  spec.targets.push_back(missing);  // 7 REFUSED
  absl::StatusOr<ProbeReport> report = Run(spec);
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(report->outcomes.size(), spec.targets.size());
  const auto& o = report->outcomes;
  const ProbeClass want[] = {ProbeClass::kOk,      ProbeClass::kOk,
                             ProbeClass::kRefused, ProbeClass::kTimeout,
                             ProbeClass::kOk,      ProbeClass::kRefused,
                             ProbeClass::kTimeout, ProbeClass::kRefused};
  for (size_t i = 0; i < o.size(); ++i) {
    EXPECT_EQ(o[i].result, want[i])
        << i << ": " << ProbeClassName(o[i].result) << " " << o[i].error;
  }
  EXPECT_EQ(o[0].bytes_sent, 5u);
  EXPECT_EQ(o[0].bytes_received, 5u);
  EXPECT_GT(o[0].connect_time, absl::ZeroDuration());
  EXPECT_GT(o[0].round_trip, absl::ZeroDuration());
  EXPECT_EQ(o[0].remote, absl::StrCat("127.0.0.1:", echo.port()));
  EXPECT_EQ(o[0].error, "");
  EXPECT_THAT(o[2].error, HasSubstr("connection refused"));
  EXPECT_THAT(o[3].error, HasSubstr("echo 127.0.0.1:"));
  EXPECT_THAT(o[3].error, HasSubstr("(0 of 5 bytes back)"));
  EXPECT_EQ(o[4].bytes_received, 5u);
  EXPECT_THAT(o[7].error, HasSubstr("no such file"));
  EXPECT_GE(report->took, absl::Milliseconds(1900));
}

TEST_F(ProberTest, Ipv6AndNamesFromTheHostsFile) {
  EchoPeer echo6(/*echo=*/true, "::1");
  EchoPeer echo4(/*echo=*/true);
  ResolverPool pool({.threads = 1, .max_queued = 4});
  Make({.resolver = &pool});
  ProbeSpec spec;
  spec.targets = {Tcp("::1", echo6.port(), "six", true)};
  // "localhost" comes from /etc/hosts (no DNS server is asked); it may
  // name ::1 too, where echo4's port is closed: the prober tries each
  // address until one connects.
  spec.targets.push_back(Tcp("localhost", echo4.port(), "name", true));
  absl::StatusOr<ProbeReport> report = Run(spec);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->outcomes[0].result, ProbeClass::kOk)
      << report->outcomes[0].error;
  EXPECT_EQ(report->outcomes[0].remote, absl::StrCat("[::1]:", echo6.port()));
  const ProbeOutcome named = report->outcomes[1];
  Stop();  // Before the pool goes.
  EXPECT_EQ(named.result, ProbeClass::kOk) << named.error;
  EXPECT_EQ(named.remote, absl::StrCat("127.0.0.1:", echo4.port()));
}

TEST_F(ProberTest, ConcurrencyBoundsTheSocketsInFlight) {
  EchoPeer silent(/*echo=*/false);
  ProbeSpec spec;
  spec.concurrency = 3;
  spec.timeout = absl::Milliseconds(200);
  for (int i = 0; i < 9; ++i) {
    spec.targets.push_back(Tcp("127.0.0.1", silent.port(), "x", true));
  }
  absl::StatusOr<ProbeReport> report = Run(spec);
  ASSERT_TRUE(report.ok()) << report.status();
  for (const ProbeOutcome& o : report->outcomes) {
    EXPECT_EQ(o.result, ProbeClass::kTimeout) << o.error;
  }
  EXPECT_LE(silent.max_open(), 3u);
  // Three waves of 200 ms each.
  EXPECT_GE(report->took, absl::Milliseconds(550));
}

TEST_F(ProberTest, TheCallsDeadlineEndsRunningAndUnstartedProbes) {
  EchoPeer silent(/*echo=*/false);
  ProbeSpec spec;
  spec.concurrency = 2;
  spec.timeout = absl::Seconds(30);
  spec.deadline = absl::Now() + absl::Milliseconds(300);
  for (int i = 0; i < 5; ++i) {
    spec.targets.push_back(Tcp("127.0.0.1", silent.port(), "x", true));
  }
  absl::StatusOr<ProbeReport> report = Run(spec);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_LT(report->took, absl::Seconds(10));
  int not_started = 0;
  for (const ProbeOutcome& o : report->outcomes) {
    EXPECT_EQ(o.result, ProbeClass::kTimeout);
    if (o.error == "not started: the call's deadline passed") ++not_started;
  }
  EXPECT_EQ(not_started, 3);
}

TEST_F(ProberTest, PolicyRefusalIsAnErrorInWords) {
  EchoPeer echo(/*echo=*/true);
  Policy policy;
  policy.destinations.emplace();  // Nothing is allowed.
  Make({.policy = &policy});
  ProbeSpec spec;
  spec.targets = {Tcp("127.0.0.1", echo.port())};
  absl::StatusOr<ProbeReport> report = Run(spec);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->outcomes[0].result, ProbeClass::kError);
  EXPECT_THAT(report->outcomes[0].error,
              StartsWith(absl::StrCat("connect 127.0.0.1:", echo.port())));
  EXPECT_EQ(echo.max_open(), 0u);
}

TEST_F(ProberTest, CancelEndsTheCallAndClosesItsSockets) {
  EchoPeer silent(/*echo=*/false);
  ProbeSpec spec;
  spec.timeout = absl::Seconds(30);
  spec.targets = {Tcp("127.0.0.1", silent.port(), "x", true)};
  absl::Notification done;
  absl::Status status;
  const uint64_t token =
      prober_->Start(spec, [&](absl::StatusOr<ProbeReport> r) {
        status = r.status();
        done.Notify();
      });
  prober_->Cancel(token);
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_EQ(status.code(), absl::StatusCode::kCancelled);
}

TEST_F(ProberTest, BadSpecsAreRefusedNamingTheField) {
  struct Case {
    std::function<void(ProbeSpec&)> edit;
    const char* want;
  } cases[] = {
      {[](ProbeSpec& s) { s.targets.clear(); }, "targets: at least one"},
      {[](ProbeSpec& s) { s.targets.resize(1025, s.targets[0]); },
       "targets: 1025 targets; at most 1024"},
      {[](ProbeSpec& s) { s.timeout = absl::Minutes(2); }, "timeout: 2m"},
      {[](ProbeSpec& s) { s.targets[0].endpoint.port = "0"; },
       "targets[0].endpoint.port: '0' is not a port"},
      {[](ProbeSpec& s) { s.targets[0].endpoint.host = ""; },
       "targets[0].endpoint.host"},
      {[](ProbeSpec& s) { s.targets[0].payload.assign(65537, 'x'); },
       "targets[0].payload: 65537 bytes; at most 65536"},
      {[](ProbeSpec& s) {
         s.targets[0].transport = Transport::kUdp;
         s.targets[0].payload = "";
       },
       "targets[0].payload: a UDP probe needs a payload"},
      {[](ProbeSpec& s) { s.targets[0].expect_echo = true; },
       "targets[0].expect_echo: needs a payload"},
      {[](ProbeSpec& s) { s.targets[0].transport = Transport::kUnix; },
       "targets[0].endpoint.unix_path: a UNIX probe needs a path"},
      {[](ProbeSpec& s) {
         s.targets.assign(20, s.targets[0]);
         for (auto& t : s.targets) t.payload.assign(60000, 'x');
       },
       "payload: 1200000 bytes in all targets; at most 1048576"},
      {[](ProbeSpec& s) {
         s.targets[0].transport = Transport::kUdp;
         s.targets[0].payload = "x";
         s.targets[0].tls.emplace();
       },
       "targets[0].tls: TLS goes with TCP targets (UDP has no DTLS here)"},
      {[](ProbeSpec& s) {
         s.targets[0].transport = Transport::kUnix;
         s.targets[0].endpoint.unix_path = "/tmp/x.sock";
         s.targets[0].tls.emplace();
       },
       "targets[0].tls: TLS goes with TCP targets"},
      {[](ProbeSpec& s) {
         s.targets.push_back(s.targets[0]);
         s.targets[1].tls.emplace();
         s.targets[1].tls->trust = TlsTrust::kCaPem;
         s.targets[1].tls->ca_pem = "not a PEM";
       },
       "targets[1].tls.ca_pem"},
      {[](ProbeSpec& s) {
         s.targets[0].tls.emplace();
         s.targets[0].tls->alpn = {""};
       },
       "targets[0].tls.alpn: a name must have 1 to 255 bytes"},
  };
  for (const Case& c : cases) {
    ProbeSpec spec;
    spec.targets = {Tcp("127.0.0.1", 9)};
    c.edit(spec);
    absl::StatusOr<ProbeReport> report = Run(spec);
    EXPECT_EQ(report.status().code(), absl::StatusCode::kInvalidArgument)
        << c.want;
    EXPECT_THAT(report.status().message(), HasSubstr(c.want));
  }
}

ProbeTarget Tls(const std::string& host, uint16_t port, const std::string& ca,
                std::string payload = "tls ping\n") {
  ProbeTarget t = Tcp(host, port, std::move(payload), true);
  t.expect_echo = !t.payload.empty();
  t.tls.emplace();
  t.tls->trust = TlsTrust::kCaPem;
  t.tls->ca_pem = ca;
  return t;
}

TEST_F(ProberTest, TlsProbesVerifyHandshakeAndEchoOverTls) {
  testing::Pki pki;
  testing::TlsEchoPeer good(pki.Path("leaf.pem"), pki.Path("leaf.key"));
  testing::TlsEchoPeer expired(pki.Path("expired.pem"),
                               pki.Path("expired.key"));
  EchoPeer plain(/*echo=*/true);
  EchoPeer silent(/*echo=*/false);
  const std::string ca = pki.Pem("ca.pem");
  ProbeSpec spec;
  spec.timeout = absl::Seconds(3);
  spec.targets = {
      Tls("127.0.0.1", good.port(), ca),                    // 0 OK
      Tls("127.0.0.1", good.port(), pki.Pem("other.pem")),  // 1 unknown CA
      Tls("127.0.0.1", good.port(), ca),                    // 2 wrong name
      Tls("127.0.0.1", plain.port(), ca),                   // 3 not TLS
      Tls("127.0.0.1", silent.port(), ca),                  // 4 timed out
      Tls("127.0.0.1", good.port(), ""),                    // 5 verify off
      Tls("127.0.0.1", good.port(), ca, ""),                // 6 OK, no data
      Tls("127.0.0.1", expired.port(), ca),                 // 7 expired
      Tls("127.0.0.1", silent.port(), ca),                  // 8 own bound
      Tls("127.0.0.1", ClosedPort(SOCK_STREAM), ca),        // 9 REFUSED
  };
  spec.targets[2].tls->server_name = "wrong.test";
  spec.targets[5].tls->trust = TlsTrust::kNone;
  spec.targets[5].tls->ca_pem = "";
  spec.targets[8].tls->handshake_timeout = absl::Milliseconds(300);
  absl::StatusOr<ProbeReport> report = Run(spec);
  ASSERT_TRUE(report.ok()) << report.status();
  const auto& o = report->outcomes;
  ASSERT_EQ(o.size(), spec.targets.size());
  const ProbeClass want[] = {
      ProbeClass::kOk,  ProbeClass::kTls,    ProbeClass::kTls, ProbeClass::kTls,
      ProbeClass::kTls, ProbeClass::kOk,     ProbeClass::kOk,  ProbeClass::kTls,
      ProbeClass::kTls, ProbeClass::kRefused};
  for (size_t i = 0; i < o.size(); ++i) {
    EXPECT_EQ(o[i].result, want[i])
        << i << ": " << ProbeClassName(o[i].result) << " " << o[i].error;
  }
  // The echo came back through TLS, byte for byte.
  EXPECT_EQ(o[0].error, "");
  EXPECT_EQ(o[0].bytes_sent, 9u);
  EXPECT_EQ(o[0].bytes_received, 9u);
  EXPECT_GT(o[0].connect_time, absl::ZeroDuration());
  EXPECT_GT(o[0].handshake_time, absl::ZeroDuration());
  EXPECT_GT(o[0].round_trip, absl::ZeroDuration());
  // The words OpenClient's failures carry, which `sockctl matrix` classes
  // ("unknown CA", "wrong name", "expired certificate", "handshake timed
  // out"; cli/matrix.cc TlsFailureClass, tested in tests/cli).
  for (size_t i : {1, 2, 3, 4, 7, 8}) {
    EXPECT_THAT(o[i].error, StartsWith("TLS handshake failed: ")) << i;
    EXPECT_GT(o[i].handshake_time, absl::ZeroDuration()) << i;
  }
  EXPECT_THAT(o[1].error, HasSubstr("unable to get local issuer certificate"));
  EXPECT_THAT(o[2].error, HasSubstr("hostname mismatch"));
  EXPECT_THAT(o[4].error, HasSubstr("timed out after"));
  EXPECT_THAT(o[7].error, HasSubstr("certificate has expired"));
  EXPECT_THAT(o[8].error, HasSubstr("timed out after"));
  // The probe's timeout bounds the handshake; the spec's own bound, when
  // shorter, ends it first.
  EXPECT_GE(o[4].handshake_time, absl::Milliseconds(2500));
  EXPECT_LT(o[8].handshake_time, absl::Seconds(2));
  EXPECT_GE(o[8].handshake_time, absl::Milliseconds(250));
  EXPECT_EQ(o[6].bytes_sent, 0u);
  EXPECT_GT(o[6].handshake_time, absl::ZeroDuration());
  EXPECT_EQ(o[9].handshake_time, absl::ZeroDuration());
}

TEST_F(ProberTest, TargetsWithTheSameTlsSpecShareOneContextButNotTheName) {
  testing::Pki pki;
  testing::TlsEchoPeer good(pki.Path("leaf.pem"), pki.Path("leaf.key"));
  // The same certificate (IP SAN 127.0.0.1 only) served on 127.0.0.2.
  testing::TlsEchoPeer elsewhere(pki.Path("leaf.pem"), pki.Path("leaf.key"),
                                 "127.0.0.2");
  ProbeSpec spec;
  spec.timeout = absl::Seconds(10);
  for (int i = 0; i < 40; ++i) {
    spec.targets.push_back(Tls("127.0.0.1", good.port(), pki.Pem("ca.pem")));
  }
  // Other hosts, the same spec: the OpenSSL context is shared, and each
  // target still verifies its own host.
  spec.targets.push_back(
      Tls("127.0.0.2", elsewhere.port(), pki.Pem("ca.pem")));  // [40]
  spec.targets.push_back(
      Tls("::1", ClosedPort(SOCK_STREAM), pki.Pem("ca.pem")));  // [41]
  // Another trust: a context of its own.
  spec.targets.push_back(
      Tls("127.0.0.1", good.port(), pki.Pem("other.pem")));  // [42]
  absl::StatusOr<ProbeReport> report = Run(spec);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(prober_->tls_contexts_made(), 2u);
  for (int i = 0; i < 40; ++i) {
    EXPECT_EQ(report->outcomes[i].result, ProbeClass::kOk)
        << i << ": " << report->outcomes[i].error;
  }
  EXPECT_EQ(report->outcomes[40].result, ProbeClass::kTls);
  EXPECT_THAT(report->outcomes[40].error, HasSubstr("mismatch"));
  EXPECT_EQ(report->outcomes[41].result, ProbeClass::kRefused);
  EXPECT_EQ(report->outcomes[42].result, ProbeClass::kTls);
}

TEST_F(ProberTest, MoreThanSixteenDistinctTlsSettingsAreRefusedUnbuilt) {
  testing::Pki pki;
  ProbeSpec spec;
  for (int i = 0; i < 17; ++i) {
    ProbeTarget t =
        Tls("127.0.0.1", ClosedPort(SOCK_STREAM), pki.Pem("ca.pem"));
    t.tls->alpn = {absl::StrCat("p", i)};
    spec.targets.push_back(t);
  }
  absl::StatusOr<ProbeReport> report = Run(spec);
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(
      report.status().message(),
      HasSubstr("targets[16].tls: more than 16 different TLS settings"));
  // Sixteen are built; the seventeenth is refused before it costs a context.
  EXPECT_EQ(prober_->tls_contexts_made(), 0u);
}

TEST_F(ProberTest, CancelAndShutdownDuringTlsHandshakesFreeTheSessions) {
  // Each probe is inside its handshake (the peer got its hello, and never
  // answers) when the call ends; LSan (the ASan build) reports an SSL
  // object left behind.
  testing::Pki pki;
  EchoPeer silent(/*echo=*/false);
  ProbeSpec spec;
  spec.timeout = absl::Seconds(30);
  for (int i = 0; i < 3; ++i) {
    spec.targets.push_back(Tls("127.0.0.1", silent.port(), pki.Pem("ca.pem")));
  }
  absl::Notification cancelled;
  absl::Status status;
  const uint64_t token =
      prober_->Start(spec, [&](absl::StatusOr<ProbeReport> r) {
        status = r.status();
        cancelled.Notify();
      });
  ASSERT_TRUE(testing::WaitFor([&] { return silent.talkers() >= 3; },
                               absl::Seconds(30)));
  prober_->Cancel(token);
  ASSERT_TRUE(cancelled.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_EQ(status.code(), absl::StatusCode::kCancelled);

  EchoPeer silent2(/*echo=*/false);
  for (auto& t : spec.targets) t.endpoint.port = absl::StrCat(silent2.port());
  absl::Notification shut;
  prober_->Start(spec, [&](absl::StatusOr<ProbeReport> r) {
    status = r.status();
    shut.Notify();
  });
  ASSERT_TRUE(testing::WaitFor([&] { return silent2.talkers() >= 3; },
                               absl::Seconds(30)));
  Stop();
  ASSERT_TRUE(shut.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
}

TEST_F(ProberTest, CallsBeyondTheBoundAreResourceExhausted) {
  EchoPeer silent(/*echo=*/false);
  Make({.max_calls = 1});
  ProbeSpec slow;
  slow.timeout = absl::Seconds(30);
  slow.targets = {Tcp("127.0.0.1", silent.port(), "x", true)};
  absl::Notification first_done;
  const uint64_t first = prober_->Start(
      slow, [&](absl::StatusOr<ProbeReport>) { first_done.Notify(); });
  absl::StatusOr<ProbeReport> second = Run(slow);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(second.status().message(),
              HasSubstr("1 Probe calls are running"));
  prober_->Cancel(first);
  ASSERT_TRUE(first_done.WaitForNotificationWithTimeout(absl::Seconds(30)));
  // The slot is free again.
  ProbeSpec quick;
  quick.targets = {Tcp("127.0.0.1", silent.port())};
  EXPECT_TRUE(Run(quick).ok());
}

TEST_F(ProberTest, ShutdownAnswersEveryCall) {
  EchoPeer silent(/*echo=*/false);
  ProbeSpec spec;
  spec.timeout = absl::Seconds(30);
  spec.targets = {Tcp("127.0.0.1", silent.port(), "x", true)};
  absl::Notification done;
  absl::Status status;
  prober_->Start(spec, [&](absl::StatusOr<ProbeReport> r) {
    status = r.status();
    done.Notify();
  });
  Stop();
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace sockagent
