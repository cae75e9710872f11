// TLS on data sockets, against independent peers only: Debian's `openssl
// s_client` / `s_server` and Python's ssl module (/usr/bin/python3), with a
// real sockagentd and the real sockctl. Certificates are made at test time
// with openssl (a CA, a leaf for localhost/127.0.0.1, a client certificate,
// an expired leaf, a second CA nobody trusts); no key is committed.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "sockagent/v1/agent.grpc.pb.h"
#include "tests/support/agent_process.h"
#include "tests/support/agent_rpc.h"
#include "tests/support/grpc_client.h"
#include "tests/support/posix_peer.h"
#include "tests/support/subprocess.h"
#include "tests/support/tls_peer.h"
#include "tests/support/wait.h"

namespace sockagent::testing {
namespace {

using ::testing::HasSubstr;

constexpr char kGreeting[] = "Thank you for connecting\n";

std::string ReadFileText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteFileText(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

// `openssl s_server` on 127.0.0.1, port 0, in -rev mode (it echoes lines
// reversed and never reads stdin: on stdin's EOF a plain s_server quits);
// reads its ACCEPT line. It serves one connection at a time.
class SServer {
 public:
  explicit SServer(std::vector<std::string> extra) {
    std::vector<std::string> argv = {"openssl", "s_server", "-rev", "-accept",
                                     "127.0.0.1:0"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    auto child = ChildProcess::Start(argv);
    EXPECT_TRUE(child.ok()) << child.status();
    if (!child.ok()) return;
    child_ = *std::move(child);
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    while (port_ == 0) {
      auto line = child_->ReadLine(deadline);
      if (!line.ok()) {
        ADD_FAILURE() << "s_server: " << line.status() << " "
                      << child_->DrainStderr();
        return;
      }
      if (absl::StartsWith(*line, "ACCEPT ")) {
        uint32_t port = 0;
        EXPECT_TRUE(
            absl::SimpleAtoi(line->substr(line->rfind(':') + 1), &port));
        port_ = static_cast<uint16_t>(port);
      }
    }
  }
  ~SServer() {
    if (child_ != nullptr) {
      (void)child_->Stop(SIGTERM, absl::Now() + absl::Seconds(10));
    }
  }
  uint16_t port() const { return port_; }
  // Waits for a stdout line containing `text` (everything before it is
  // dropped); stderr is searched too.
  bool Saw(const std::string& text) {
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    while (true) {
      err_ += child_->DrainStderr();
      if (absl::StrContains(err_, text)) return true;
      auto line = child_->ReadLine(
          std::min(deadline, absl::Now() + absl::Milliseconds(200)));
      if (line.ok()) {
        out_ += *line + "\n";
        if (absl::StrContains(*line, text)) return true;
      } else if (absl::Now() > deadline) {
        return false;
      }
    }
  }
  std::string output() const { return out_ + err_; }

 private:
  std::unique_ptr<ChildProcess> child_;
  uint16_t port_ = 0;
  std::string out_;
  std::string err_;
};

class DataTlsTest : public AgentTestBase {
 protected:
  void SetUp() override { StartAgent(); }

  v1::Server StartTls(std::function<void(v1::StartServerRequest&)> fill) {
    return StartLoopbackServer(*stub_, std::move(fill));
  }
  uint16_t PortOf(const v1::Server& s) {
    return static_cast<uint16_t>(s.local_addresses(0).port());
  }
  grpc::Status Open(uint16_t port,
                    std::function<void(v1::TlsClientOptions*)> fill,
                    v1::Connection* out = nullptr) {
    v1::OpenClientRequest request;
    request.mutable_remote()->set_host("127.0.0.1");
    request.mutable_remote()->set_port(port);
    fill(request.mutable_tls());
    v1::OpenClientResponse response;
    auto context = ContextWithDeadline();
    grpc::Status s = stub_->OpenClient(context.get(), request, &response);
    if (out != nullptr) *out = response.connection();
    return s;
  }
  v1::Connection Get(const std::string& id) {
    v1::ListConnectionsRequest request;
    request.set_id(id);
    v1::ListConnectionsResponse response;
    auto context = ContextWithDeadline();
    grpc::Status s = stub_->ListConnections(context.get(), request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return response.connections_size() == 1 ? response.connections(0)
                                            : v1::Connection();
  }
  std::vector<v1::Connection> ClosedOf(const std::string& server_id) {
    v1::ListConnectionsRequest request;
    request.set_server_id(server_id);
    request.set_include_closed(true);
    v1::ListConnectionsResponse response;
    auto context = ContextWithDeadline();
    grpc::Status s = stub_->ListConnections(context.get(), request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return {response.connections().begin(), response.connections().end()};
  }
  v1::Server Server(const std::string& id) {
    v1::ListServersRequest request;
    request.set_include_stopped(true);
    v1::ListServersResponse response;
    auto context = ContextWithDeadline();
    EXPECT_TRUE(stub_->ListServers(context.get(), request, &response).ok());
    for (const auto& s : response.servers()) {
      if (s.id() == id) return s;
    }
    return v1::Server();
  }

  Pki pki_;
};

TEST_F(DataTlsTest, GreetingOverTlsIsReadByOpensslSClient) {
  v1::Server server = StartTls([](v1::StartServerRequest& r) {
    r.mutable_behavior()->mutable_greeting()->set_data(kGreeting);
    r.mutable_behavior()->mutable_greeting()->set_close_after(true);
    r.mutable_tls()->mutable_self_signed()->add_names("localhost");
    r.mutable_tls()->mutable_self_signed()->add_names("127.0.0.1");
  });
  ASSERT_TRUE(server.has_tls());
  EXPECT_TRUE(server.tls().self_signed());
  EXPECT_THAT(server.tls().certificate().pem(), HasSubstr("BEGIN CERTIFICATE"));
  EXPECT_THAT(server.tls().certificate().sans(),
              ::testing::ElementsAre("DNS:localhost", "IP:127.0.0.1"));
  // The client trusts exactly the certificate the agent reported.
  TempDir dir;
  WriteFileText(dir.path() + "/server.pem", server.tls().certificate().pem());
  CommandResult r = RunCommand(
      {"openssl", "s_client", "-connect",
       absl::StrCat("127.0.0.1:", PortOf(server)), "-servername", "localhost",
       "-verify_hostname", "localhost", "-CAfile", dir.path() + "/server.pem",
       "-verify_return_error", "-quiet"});
  EXPECT_EQ(r.out, kGreeting) << r.err;
  ASSERT_TRUE(WaitFor(
      [&] { return Server(server.id()).counters().tls_handshakes() == 1; },
      absl::Seconds(20)));
  std::vector<v1::Connection> conns = ClosedOf(server.id());
  ASSERT_EQ(conns.size(), 1u);
  EXPECT_EQ(conns[0].tls().sni(), "localhost");
  EXPECT_EQ(conns[0].tls().version(), "TLSv1.3");
  EXPECT_EQ(conns[0].tls().verification(), "not requested");
}

TEST_F(DataTlsTest, EchoOf64MiBIsByteExactWithPythonSsl) {
  v1::Server server = StartTls([this](v1::StartServerRequest& r) {
    r.mutable_behavior()->mutable_echo();
    r.mutable_tls()->set_certificate_chain_pem(pki_.Pem("leaf.pem"));
    r.mutable_tls()->set_private_key_pem(pki_.Pem("leaf.key"));
  });
  // One thread, non-blocking: an SSL object must not be read and written
  // from two threads at once.
  const std::string script = R"PY(
import hashlib, os, select, socket, ssl, sys
port, ca = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=ca)
raw = socket.create_connection(("127.0.0.1", port), timeout=120)
s = ctx.wrap_socket(raw, server_hostname="localhost")
s.setblocking(False)
total = 64 << 20
data = memoryview(os.urandom(total))
off, got, h = 0, 0, hashlib.sha256()
while got < total:
    want_w = [s] if off < total else []
    r, w, _ = select.select([s], want_w, [], 60)
    if not r and not w and not s.pending():
        break
    if w:
        try:
            off += s.send(data[off:off + (256 << 10)])
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
            pass
    while True:
        try:
            chunk = s.recv(1 << 20)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            break
        if not chunk:
            got = total + 1
            break
        got += len(chunk)
        h.update(chunk)
same = h.digest() == hashlib.sha256(data).digest()
print(s.version(), got, "same" if same else "DIFFERENT")
)PY";
  CommandResult r =
      RunCommand({"/usr/bin/python3", "-c", script,
                  absl::StrCat(PortOf(server)), pki_.Path("ca.pem")},
                 "", absl::Seconds(300));
  EXPECT_EQ(r.out, absl::StrCat("TLSv1.3 ", 64 << 20, " same\n")) << r.err;
}

TEST_F(DataTlsTest, ClientSniAndAlpnAreSeenByOpensslSServer) {
  // -tlsextdebug: s_server prints every extension the client sent.
  SServer peer({"-cert", pki_.Path("leaf.pem"), "-key", pki_.Path("leaf.key"),
                "-tlsextdebug", "-alpn", "h2,http/1.1"});
  ASSERT_NE(peer.port(), 0);
  v1::Connection c;
  grpc::Status s = Open(
      peer.port(),
      [this](v1::TlsClientOptions* t) {
        t->set_server_name("localhost");
        t->set_ca_pem(pki_.Pem("ca.pem"));
        t->add_alpn("h2");
        t->add_alpn("http/1.1");
      },
      &c);
  ASSERT_TRUE(s.ok()) << s.error_message();
  // The server name extension's dump ends with the name's bytes; s_server
  // chose h2 from the ALPN list the agent offered.
  EXPECT_TRUE(peer.Saw("TLS client extension \"server name\""))
      << peer.output();
  EXPECT_TRUE(peer.Saw(".....localhost")) << peer.output();
  EXPECT_TRUE(peer.Saw("application layer protocol negotiation"))
      << peer.output();
  EXPECT_EQ(c.tls().alpn(), "h2");
  EXPECT_EQ(c.tls().sni(), "localhost");
  EXPECT_EQ(c.tls().verification(), "ok");
  EXPECT_TRUE(c.tls().verified());
  ASSERT_EQ(c.tls().peer_chain_size(), 1);
  EXPECT_EQ(c.tls().peer_chain(0).subject(), "CN=localhost");
  EXPECT_EQ(c.tls().peer_chain(0).issuer(), "CN=sockagent test CA");
  // A list page carries no PEM; the single-connection read does.
  EXPECT_TRUE(c.tls().peer_chain(0).pem().empty());
  v1::Connection full = Get(c.id());
  EXPECT_THAT(full.tls().peer_chain(0).pem(), HasSubstr("BEGIN CERTIFICATE"));
  EXPECT_EQ(full.tls().peer_chain(0).sha256_fingerprint().size(), 95u);
}

TEST_F(DataTlsTest, OpenClientReportsExpiredWrongNameAndUnknownCaInWords) {
  SServer expired(
      {"-cert", pki_.Path("expired.pem"), "-key", pki_.Path("expired.key")});
  SServer good({"-cert", pki_.Path("leaf.pem"), "-key", pki_.Path("leaf.key")});
  ASSERT_NE(expired.port(), 0);
  ASSERT_NE(good.port(), 0);
  const std::string ca = pki_.Pem("ca.pem");
  grpc::Status s = Open(expired.port(), [&](v1::TlsClientOptions* t) {
    t->set_server_name("localhost");
    t->set_ca_pem(ca);
  });
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(s.error_message(),
              HasSubstr("certificate verify failed: certificate has expired"));
  s = Open(good.port(), [&](v1::TlsClientOptions* t) {
    t->set_server_name("wrong.test");
    t->set_ca_pem(ca);
  });
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(s.error_message(),
              HasSubstr("certificate verify failed: hostname mismatch"));
  s = Open(good.port(), [&](v1::TlsClientOptions* t) {
    t->set_server_name("localhost");
    t->set_ca_pem(pki_.Pem("other.pem"));
  });
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(s.error_message(),
              HasSubstr("certificate verify failed: unable to get local "
                        "issuer certificate"));
  // Verification off connects, and says so.
  v1::Connection c;
  s = Open(
      good.port(), [](v1::TlsClientOptions* t) { t->set_verify_off(true); },
      &c);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(c.tls().verification(), "verification off");
  EXPECT_FALSE(c.tls().verified());
}

TEST_F(DataTlsTest, MutualTlsAcceptsTheRightClientAndRefusesOneWithout) {
  v1::Server server = StartTls([this](v1::StartServerRequest& r) {
    r.mutable_behavior()->mutable_greeting()->set_data(kGreeting);
    r.mutable_behavior()->mutable_greeting()->set_close_after(true);
    r.mutable_tls()->set_certificate_chain_pem(pki_.Pem("leaf.pem"));
    r.mutable_tls()->set_private_key_pem(pki_.Pem("leaf.key"));
    r.mutable_tls()->set_client_ca_pem(pki_.Pem("ca.pem"));
    r.mutable_tls()->set_client_auth(v1::TLS_CLIENT_AUTH_REQUIRE);
  });
  const std::string target = absl::StrCat("127.0.0.1:", PortOf(server));
  auto watch = ChildProcess::Start(
      {SOCKCTL_PATH, "--agent", agent_->address(), "watch", "--snapshot"});
  ASSERT_TRUE(watch.ok()) << watch.status();
  // The snapshot's line for the server: the watch is live from here on.
  ASSERT_TRUE((*watch)->ReadLine(absl::Now() + absl::Seconds(20)).ok());
  CommandResult good =
      RunCommand({"openssl", "s_client", "-connect", target, "-CAfile",
                  pki_.Path("ca.pem"), "-cert", pki_.Path("client.pem"), "-key",
                  pki_.Path("client.key"), "-verify_return_error", "-quiet"});
  EXPECT_EQ(good.out, kGreeting) << good.err;
  CommandResult bad = RunCommand({"openssl", "s_client", "-connect", target,
                                  "-CAfile", pki_.Path("ca.pem"), "-quiet"});
  EXPECT_NE(bad.out, kGreeting);
  ASSERT_TRUE(WaitFor(
      [&] {
        return Server(server.id()).counters().tls_handshake_failures() == 1;
      },
      absl::Seconds(20)));
  EXPECT_EQ(Server(server.id()).counters().tls_handshakes(), 1u);
  std::vector<v1::Connection> conns = ClosedOf(server.id());
  ASSERT_EQ(conns.size(), 2u);
  EXPECT_EQ(conns[0].tls().verification(), "ok");
  ASSERT_GE(conns[0].tls().peer_chain_size(), 1);
  EXPECT_EQ(conns[0].tls().peer_chain(0).subject(), "CN=test client");
  EXPECT_THAT(conns[1].close_detail(),
              HasSubstr("TLS handshake failed: peer did not return a "
                        "certificate"));
  // Watch shows the refusal too.
  bool seen = false;
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (!seen && absl::Now() < deadline) {
    auto line = (*watch)->ReadLine(deadline);
    if (!line.ok()) break;
    seen = absl::StrContains(*line, "peer did not return a certificate");
  }
  EXPECT_TRUE(seen);
}

TEST_F(DataTlsTest, Tls12OnlyAgainstTls13OnlyIsReported) {
  SServer peer({"-cert", pki_.Path("leaf.pem"), "-key", pki_.Path("leaf.key"),
                "-tls1_3"});
  ASSERT_NE(peer.port(), 0);
  grpc::Status s = Open(peer.port(), [](v1::TlsClientOptions* t) {
    t->set_verify_off(true);
    t->set_max_version(v1::TLS_VERSION_1_2);
  });
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(s.error_message(), HasSubstr("TLS handshake failed: "));
  EXPECT_THAT(s.error_message(), HasSubstr("protocol version"));
}

TEST_F(DataTlsTest, HandshakeTimesOutAgainstASilentPeer) {
  uint16_t port = 0;
  Fd listener = TcpListen(4, &port);
  ASSERT_TRUE(listener.valid());
  const absl::Time start = absl::Now();
  grpc::Status s = Open(port, [](v1::TlsClientOptions* t) {
    t->set_verify_off(true);
    t->mutable_handshake_timeout()->set_seconds(1);
  });
  const absl::Duration took = absl::Now() - start;
  Fd silent = Accept(listener.get());  // Accepted, never speaks.
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(s.error_message(),
              HasSubstr("TLS handshake failed: timed out after 1s"));
  EXPECT_GE(took, absl::Milliseconds(900));
  EXPECT_LT(took, absl::Seconds(15));
}

TEST_F(DataTlsTest, SessionsAreResumedAndReported) {
  v1::Server server = StartTls([](v1::StartServerRequest& r) {
    r.mutable_tls()->mutable_self_signed();
  });
  v1::Connection first, second;
  auto fill = [&](v1::TlsClientOptions* t) {
    t->set_ca_pem(server.tls().certificate().pem());
    t->set_server_name("localhost");
  };
  ASSERT_TRUE(Open(PortOf(server), fill, &first).ok());
  EXPECT_FALSE(first.tls().resumed());
  // TLS 1.3 tickets arrive after the handshake: the first connection
  // must read once for its ticket to be kept.
  ASSERT_TRUE(Send(first.id(), "x").ok());
  ASSERT_TRUE(WaitFor(
      [&] { return Server(server.id()).counters().bytes_received() >= 1; },
      absl::Seconds(20)));
  grpc::Status s;
  ASSERT_TRUE(WaitFor(
      [&] {
        s = Open(PortOf(server), fill, &second);
        return s.ok() && second.tls().resumed();
      },
      absl::Seconds(20)))
      << s.error_message();
}

TEST_F(DataTlsTest, SockctlOpensListsAndShowsATlsConnection) {
  CommandResult started = RunSockctl(
      agent_->address(),
      {"server", "start", "--ssl-self-signed", "--echo", "-o", "addr"});
  ASSERT_EQ(started.exit_code, 0) << started.err;
  const std::string addr(absl::StripAsciiWhitespace(started.out));
  const std::string port = addr.substr(addr.rfind(':') + 1);
  CommandResult opened = RunSockctl(
      agent_->address(), {"client", "open", "-q", "--ssl", "--ssl-verify-off",
                          "--alpn", "h2,http/1.1", "127.0.0.1", port});
  ASSERT_EQ(opened.exit_code, 0) << opened.err;
  const std::string id(absl::StripAsciiWhitespace(opened.out));
  CommandResult list = RunSockctl(agent_->address(), {"conn", "list"});
  EXPECT_THAT(list.out, HasSubstr("TLSv1.3 (verification off)")) << list.out;
  CommandResult show = RunSockctl(agent_->address(), {"conn", "show", id});
  EXPECT_EQ(show.exit_code, 0) << show.err;
  EXPECT_THAT(show.out, HasSubstr("verification: verification off"));
  EXPECT_THAT(show.out, HasSubstr("BEGIN CERTIFICATE"));
  EXPECT_THAT(show.out, HasSubstr("san: DNS:localhost"));
  // netcat with TLS: sockctl connect --ssl through the agent to its echo.
  CommandResult nc = RunSockctl(
      agent_->address(),
      {"connect", "--ssl", "--ssl-verify-off", "127.0.0.1", port}, "hello\n");
  EXPECT_EQ(nc.out, "hello\n") << nc.err;
}

// Faults act on the plaintext of TLS connections: before SSL_write (SENT)
// and after SSL_read (RECEIVED). Python's ssl module measures: round trips
// through two 100 ms latencies (one each way) on an echo, and limit_data
// cutting an echo after exactly 1000 bytes with close_notify and a FIN. A
// fault aimed at a TLS connection by id is taken too.
TEST_F(DataTlsTest, FaultsActOnTheTlsPlaintextBothWays) {
  auto echo = [this](v1::StartServerRequest& r) {
    r.mutable_behavior()->mutable_echo();
    r.mutable_tls()->set_certificate_chain_pem(pki_.Pem("leaf.pem"));
    r.mutable_tls()->set_private_key_pem(pki_.Pem("leaf.key"));
  };
  v1::Server slow = StartTls(echo);
  v1::Server cut = StartTls(echo);
  auto add = [&](const v1::Server& s, const std::string& name,
                 v1::FaultDirection direction,
                 std::function<void(v1::Fault&)> fill) {
    v1::Fault f;
    f.set_name(name);
    f.set_direction(direction);
    f.mutable_target()->set_server_id(s.id());
    fill(f);
    grpc::Status st = AddFault(*stub_, f);
    EXPECT_TRUE(st.ok()) << st.error_message();
  };
  auto latency = [](v1::Fault& f) {
    SetDuration(absl::Milliseconds(100),
                f.mutable_latency()->mutable_latency());
  };
  add(slow, "tls-out", v1::FAULT_DIRECTION_SENT, latency);
  add(slow, "tls-in", v1::FAULT_DIRECTION_RECEIVED, latency);
  add(cut, "tls-cut", v1::FAULT_DIRECTION_SENT,
      [](v1::Fault& f) { f.mutable_limit_data()->set_bytes(1000); });
  const std::string script = R"PY(
import socket, ssl, sys, time
slow, cut, ca = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context(cafile=ca)
def connect(port):
    raw = socket.create_connection(("127.0.0.1", port), timeout=60)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return ctx.wrap_socket(raw, server_hostname="localhost")
s = connect(slow)
rtts = []
for i in range(5):
    msg = b"%016d" % i
    t0 = time.monotonic()
    s.sendall(msg)
    got = b""
    while len(got) < len(msg):
        got += s.recv(64)
    rtts.append(time.monotonic() - t0)
    assert got == msg, got
s = connect(cut)
s.sendall(bytes(range(256)) * 20)
total = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    total += chunk
print("min_rtt_ms", int(min(rtts) * 1000), "cut", len(total),
      total == (bytes(range(256)) * 4)[:1000])
)PY";
  CommandResult r =
      RunCommand({"/usr/bin/python3", "-c", script, absl::StrCat(PortOf(slow)),
                  absl::StrCat(PortOf(cut)), pki_.Path("ca.pem")},
                 "", absl::Seconds(120));
  std::cout << r.out << r.err;
  std::vector<std::string> words = absl::StrSplit(r.out, ' ');
  ASSERT_EQ(words.size(), 5u) << r.out << r.err;
  int min_rtt_ms = 0;
  ASSERT_TRUE(absl::SimpleAtoi(words[1], &min_rtt_ms));
  EXPECT_GE(min_rtt_ms, 200);  // 100 ms in, 100 ms out.
  EXPECT_EQ(words[3], "1000");
  EXPECT_EQ(words[4], "True\n");
  for (const v1::Connection& c : ClosedOf(slow.id())) {
    EXPECT_EQ(c.tls().version(), "TLSv1.3");
  }
  const std::vector<v1::Connection> cut_conns = ClosedOf(cut.id());
  ASSERT_EQ(cut_conns.size(), 1u);
  EXPECT_THAT(cut_conns[0].close_detail(), HasSubstr("limit_data"));

  // By id, on a TLS connection the agent opened.
  v1::Connection conn;
  ASSERT_TRUE(Open(
                  PortOf(slow),
                  [](v1::TlsClientOptions* t) { t->set_verify_off(true); },
                  &conn)
                  .ok());
  v1::Fault by_id;
  by_id.set_name("by-id");
  by_id.mutable_target()->set_connection_id(conn.id());
  by_id.mutable_bandwidth()->set_rate_bytes_per_second(1000);
  v1::Fault stored;
  grpc::Status s = AddFault(*stub_, by_id, &stored);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(stored.applied(), 1u);
  EXPECT_THAT(Get(conn.id()).faults(), ::testing::ElementsAre("by-id"));
}

// Named servers with TLS: the same TLS options are the same server, other
// options are a difference named "tls", and a listing never carries the key.
TEST_F(DataTlsTest, NamedTlsServersCompareTheirOptionsAndListNoKey) {
  auto start = [&](std::function<void(v1::TlsServerOptions*)> fill,
                   v1::StartServerResponse* response) {
    v1::StartServerRequest request;
    request.set_transport(v1::TRANSPORT_TCP);
    request.mutable_bind()->set_host("127.0.0.1");
    request.mutable_behavior()->mutable_echo();
    request.set_name("tls-named");
    fill(request.mutable_tls());
    auto context = ContextWithDeadline();
    return stub_->StartServer(context.get(), request, response);
  };
  auto pem = [&](v1::TlsServerOptions* t) {
    t->set_certificate_chain_pem(pki_.Pem("leaf.pem"));
    t->set_private_key_pem(pki_.Pem("leaf.key"));
    t->add_alpn("h2");
  };
  v1::StartServerResponse first, again, other;
  ASSERT_TRUE(start(pem, &first).ok());
  EXPECT_EQ(first.outcome(), v1::START_OUTCOME_CREATED);
  ASSERT_TRUE(start(pem, &again).ok());
  EXPECT_EQ(again.outcome(), v1::START_OUTCOME_UNCHANGED);
  EXPECT_EQ(again.server().id(), first.server().id());
  grpc::Status s = start(
      [&](v1::TlsServerOptions* t) {
        pem(t);
        t->set_alpn(0, "http/1.1");
      },
      &other);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_THAT(s.error_message(), HasSubstr("tls"));
  const v1::StartServerRequest spec = Server(first.server().id()).spec();
  ASSERT_TRUE(spec.has_tls());
  EXPECT_EQ(spec.tls().certificate_chain_pem(), pki_.Pem("leaf.pem"));
  EXPECT_THAT(spec.tls().alpn(), ::testing::ElementsAre("h2"));
  EXPECT_TRUE(spec.tls().private_key_pem().empty());
}

// A proxy terminating TLS: Python's ssl client on the accepted side, the
// upstream a plain POSIX echo peer that sees only plaintext.
TEST_F(DataTlsTest, ProxyTerminatesTlsForAPlainUpstream) {
  uint16_t up_port = 0;
  Fd listener = TcpListen(4, &up_port);
  v1::Server proxy = StartTls([&](v1::StartServerRequest& r) {
    v1::ProxyBehavior* p = r.mutable_behavior()->mutable_proxy();
    p->mutable_upstream()->set_host("127.0.0.1");
    p->mutable_upstream()->set_port(up_port);
    r.mutable_tls()->set_certificate_chain_pem(pki_.Pem("leaf.pem"));
    r.mutable_tls()->set_private_key_pem(pki_.Pem("leaf.key"));
  });
  // A client that never starts its handshake (a port scanner) is accepted
  // first: the proxy dials only after a handshake, so it costs no upstream
  // connection.
  Fd silent = TcpConnect(FirstAddress(proxy));
  ASSERT_TRUE(silent.valid());
  ASSERT_TRUE(WaitFor([&] { return ClosedOf(proxy.id()).size() == 1; }));
  const std::string script = R"PY(
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
raw = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=60)
s = ctx.wrap_socket(raw, server_hostname="localhost")
s.sendall(b"plaintext upstream\n")
print(s.version(), s.recv(100).decode().strip())
)PY";
  auto child =
      ChildProcess::Start({"/usr/bin/python3", "-c", script,
                           absl::StrCat(PortOf(proxy)), pki_.Path("ca.pem")});
  ASSERT_TRUE(child.ok()) << child.status();
  Fd up = Accept(listener.get());
  ASSERT_TRUE(up.valid());
  const std::string line = "plaintext upstream\n";
  EXPECT_EQ(ReadExactly(up.get(), line.size()), line);
  ASSERT_TRUE(WriteAll(up.get(), "reply\n"));
  auto out = (*child)->ReadLine(absl::Now() + absl::Seconds(60));
  ASSERT_TRUE(out.ok()) << out.status() << (*child)->DrainStderr();
  EXPECT_EQ(*out, "TLSv1.3 reply");
  EXPECT_EQ(Server(proxy.id()).counters().tls_handshakes(), 1u);
  // Had the silent client's accept dialled, its connection (started
  // before the handshaken one) would wait in the listener's queue.
  pollfd pending{listener.get(), POLLIN, 0};
  EXPECT_EQ(::poll(&pending, 1, 0), 0)
      << "the silent client's half dialled the upstream";
}

// A proxy originating TLS: a plain POSIX client on the accepted side,
// `openssl s_server -rev` as the upstream; the upstream half reports what
// its handshake saw, and an untrusted upstream closes the client's half
// with the reason.
TEST_F(DataTlsTest, ProxyOriginatesTlsToOpensslSServer) {
  SServer upstream(
      {"-cert", pki_.Path("leaf.pem"), "-key", pki_.Path("leaf.key")});
  ASSERT_NE(upstream.port(), 0);
  auto start = [&](const std::string& ca) {
    return StartTls([&](v1::StartServerRequest& r) {
      v1::ProxyBehavior* p = r.mutable_behavior()->mutable_proxy();
      p->mutable_upstream()->set_host("127.0.0.1");
      p->mutable_upstream()->set_port(upstream.port());
      p->mutable_tls()->set_ca_pem(pki_.Pem(ca));
      p->mutable_tls()->set_server_name("localhost");
    });
  };
  v1::Server proxy = start("ca.pem");
  ASSERT_TRUE(proxy.behavior().proxy().has_tls());
  {
    Fd client = TcpConnect(FirstAddress(proxy));
    ASSERT_TRUE(WriteAll(client.get(), "hello\n"));
    EXPECT_EQ(ReadExactly(client.get(), 6), "olleh\n");
  }
  ASSERT_TRUE(WaitFor(
      [&] {
        v1::ListConnectionsRequest request;
        request.set_include_closed(true);
        v1::ListConnectionsResponse response;
        auto context = ContextWithDeadline();
        if (!stub_->ListConnections(context.get(), request, &response).ok()) {
          return false;
        }
        for (const v1::Connection& c : response.connections()) {
          if (c.tls().client() && c.tls().verification() == "ok" &&
              c.tls().sni() == "localhost") {
            return true;
          }
        }
        return false;
      },
      absl::Seconds(20)));
  // Trusting another CA: the upstream handshake fails, the client gets a
  // FIN, and its half says why.
  v1::Server untrusted = start("other.pem");
  Fd client = TcpConnect(FirstAddress(untrusted));
  EXPECT_EQ(ReadToEof(client.get()), "");
  ASSERT_TRUE(WaitFor(
      [&] {
        std::vector<v1::Connection> conns = ClosedOf(untrusted.id());
        return !conns.empty() &&
               absl::StrContains(conns[0].close_detail(),
                                 "TLS handshake failed: certificate verify "
                                 "failed");
      },
      absl::Seconds(20)))
      << (ClosedOf(untrusted.id()).empty()
              ? "no closed connection"
              : ClosedOf(untrusted.id())[0].close_detail());
}

// UDP proxies have no TLS (no DTLS), on either side.
TEST_F(DataTlsTest, UdpProxyWithUpstreamTlsIsInvalidArgument) {
  v1::StartServerRequest request;
  request.set_transport(v1::TRANSPORT_UDP);
  request.mutable_bind()->set_host("127.0.0.1");
  v1::ProxyBehavior* p = request.mutable_behavior()->mutable_proxy();
  p->mutable_upstream()->set_host("127.0.0.1");
  p->mutable_upstream()->set_port(9);
  p->mutable_tls()->set_verify_off(true);
  v1::StartServerResponse response;
  auto context = ContextWithDeadline();
  grpc::Status s = stub_->StartServer(context.get(), request, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("behavior.proxy.tls"));
}

// SANs of types that hold no string are named, not read as one (reading
// them as strings crashed the agent), on the server's own certificate and
// on a peer's.
TEST_F(DataTlsTest, OtherNameAndDirNameSansAreReportedWithoutCrashing) {
  v1::Server server = StartTls([this](v1::StartServerRequest& r) {
    r.mutable_behavior()->mutable_echo();
    r.mutable_tls()->set_certificate_chain_pem(pki_.Pem("odd.pem"));
    r.mutable_tls()->set_private_key_pem(pki_.Pem("odd.key"));
  });
  EXPECT_THAT(server.tls().certificate().sans(),
              ::testing::ElementsAre("DNS:localhost", "othername:<unsupported>",
                                     "DirName:CN=dir"));
  v1::Connection conn;
  grpc::Status s = Open(
      PortOf(server),
      [this](v1::TlsClientOptions* t) {
        t->set_ca_pem(pki_.Pem("ca.pem"));
        t->set_server_name("localhost");
      },
      &conn);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_GE(conn.tls().peer_chain_size(), 1);
  EXPECT_THAT(conn.tls().peer_chain(0).sans(),
              ::testing::ElementsAre("DNS:localhost", "othername:<unsupported>",
                                     "DirName:CN=dir"));
}

// A key whose every handshake would stall the loop is refused up front.
TEST_F(DataTlsTest, AnRsaKeyAbove4096BitsIsInvalidArgument) {
  TempDir dir;
  const std::string key = dir.path() + "/big.key";
  const std::string cert = dir.path() + "/big.pem";
  CommandResult r = RunCommand(
      {"openssl", "req", "-x509", "-newkey", "rsa:4608", "-nodes", "-keyout",
       key, "-out", cert, "-days", "1", "-subj", "/CN=localhost"},
      "", absl::Seconds(120));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  v1::StartServerRequest request;
  request.set_transport(v1::TRANSPORT_TCP);
  request.mutable_bind()->set_host("127.0.0.1");
  request.mutable_tls()->set_certificate_chain_pem(ReadFileText(cert));
  request.mutable_tls()->set_private_key_pem(ReadFileText(key));
  v1::StartServerResponse response;
  auto context = ContextWithDeadline();
  grpc::Status s = stub_->StartServer(context.get(), request, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(),
              HasSubstr("tls.private_key_pem: an RSA key of 4608 bits; at "
                        "most 4096"));
}

// sockctl proxy start terminates TLS (server flags) and originates it
// (--upstream-ssl): netcat-with-TLS -> TLS-terminating proxy -> plain echo,
// and plain netcat -> TLS-originating proxy -> TLS echo.
TEST_F(DataTlsTest, SockctlProxyTerminatesAndOriginatesTls) {
  auto addr_port = [](const CommandResult& r) {
    const std::string addr(absl::StripAsciiWhitespace(r.out));
    return addr.substr(addr.rfind(':') + 1);
  };
  CommandResult plain_echo = RunSockctl(
      agent_->address(), {"server", "start", "--echo", "-o", "addr"});
  ASSERT_EQ(plain_echo.exit_code, 0) << plain_echo.err;
  CommandResult tls_echo = RunSockctl(
      agent_->address(),
      {"server", "start", "--echo", "--ssl-self-signed", "-o", "addr"});
  ASSERT_EQ(tls_echo.exit_code, 0) << tls_echo.err;
  CommandResult terminating = RunSockctl(
      agent_->address(),
      {"proxy", "start", "--ssl-self-signed", "--upstream",
       absl::StrCat("127.0.0.1:", addr_port(plain_echo)), "-o", "addr"});
  ASSERT_EQ(terminating.exit_code, 0) << terminating.err;
  CommandResult nc = RunSockctl(agent_->address(),
                                {"connect", "--ssl", "--ssl-verify-off",
                                 "127.0.0.1", addr_port(terminating)},
                                "through TLS\n");
  EXPECT_EQ(nc.out, "through TLS\n") << nc.err;
  CommandResult originating =
      RunSockctl(agent_->address(),
                 {"proxy", "start", "--upstream",
                  absl::StrCat("127.0.0.1:", addr_port(tls_echo)),
                  "--upstream-ssl", "--upstream-ssl-verify-off", "-o", "addr"});
  ASSERT_EQ(originating.exit_code, 0) << originating.err;
  nc = RunSockctl(agent_->address(),
                  {"connect", "127.0.0.1", addr_port(originating)}, "to TLS\n");
  EXPECT_EQ(nc.out, "to TLS\n") << nc.err;
  // A flag of the upstream's TLS without --upstream-ssl is a usage error.
  CommandResult bad = RunSockctl(
      agent_->address(),
      {"proxy", "start", "--upstream", "127.0.0.1:1", "--upstream-sni", "x"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.err, HasSubstr("go with --upstream-ssl"));
}

// CPU time (user + system) of process `pid` so far.
absl::Duration ProcessCpu(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string stat((std::istreambuf_iterator<char>(in)), {});
  // Fields after the command's closing parenthesis: utime is the 12th,
  // stime the 13th of them.
  std::vector<std::string> f =
      absl::StrSplit(stat.substr(stat.rfind(')') + 2), ' ');
  int64_t utime = 0, stime = 0;
  if (f.size() < 13 || !absl::SimpleAtoi(f[11], &utime) ||
      !absl::SimpleAtoi(f[12], &stime)) {
    return absl::InfiniteDuration();
  }
  return absl::Seconds(static_cast<double>(utime + stime) /
                       sysconf(_SC_CLK_TCK));
}

// A peer that sends a TLS record's first 3 bytes and stops: the agent must
// wait on the socket for the rest, not re-post reads (a review feared
// SSL_has_pending, which counts a partial record, would do that; measured
// with it on OpenSSL 3.0.19, it did not: 0-10 ms here either way, and the
// engine now asks SSL_pending). The window is a measurement, not a
// synchronisation: spinning costs about the whole window, waiting nothing.
TEST_F(DataTlsTest, APartialRecordDoesNotSpinTheLoop) {
  v1::Server server = StartTls([](v1::StartServerRequest& r) {
    r.mutable_behavior()->mutable_echo();
    r.mutable_tls()->mutable_self_signed();
  });
  const std::string script = R"PY(
import signal, socket, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
tls = ctx.wrap_bio(inc, out, server_hostname="localhost")
sock = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=60)
while True:
    try:
        tls.do_handshake()
        break
    except ssl.SSLWantReadError:
        sock.sendall(out.read())
        inc.write(sock.recv(65536))
sock.sendall(out.read())
tls.write(b"x" * 1000)
record = out.read()
sock.sendall(record[:3])
print("partial", len(record), flush=True)
signal.pause()  # Until the test stops it (stdin is not ours to read).
)PY";
  auto child = ChildProcess::Start(
      {"/usr/bin/python3", "-c", script, absl::StrCat(PortOf(server))});
  ASSERT_TRUE(child.ok()) << child.status();
  auto line = (*child)->ReadLine(absl::Now() + absl::Seconds(60));
  ASSERT_TRUE(line.ok()) << line.status() << (*child)->DrainStderr();
  ASSERT_TRUE(absl::StartsWith(*line, "partial ")) << *line;
  // The handshake's own work is over once the server counted it.
  ASSERT_TRUE(WaitFor(
      [&] { return Server(server.id()).counters().tls_handshakes() == 1; },
      absl::Seconds(20)));
  const absl::Duration before = ProcessCpu(agent_->pid());
  const absl::Time window_end = absl::Now() + absl::Seconds(2);
  while (absl::Now() < window_end) {
    absl::SleepFor(window_end - absl::Now());
  }
  const absl::Duration used = ProcessCpu(agent_->pid()) - before;
  EXPECT_LT(used, absl::Milliseconds(600)) << "the agent spun for " << used;
  (void)(*child)->Stop(SIGTERM, absl::Now() + absl::Seconds(10));
}

TEST_F(DataTlsTest, UdpWithTlsIsInvalidArgument) {
  v1::StartServerRequest request;
  request.set_transport(v1::TRANSPORT_UDP);
  request.mutable_bind()->set_host("127.0.0.1");
  request.mutable_tls()->mutable_self_signed();
  v1::StartServerResponse response;
  auto context = ContextWithDeadline();
  grpc::Status s = stub_->StartServer(context.get(), request, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("UDP has no TLS"));
}

// 1,000 concurrent TLS connections held by one agent (Python's ssl module
// as the clients), on a RelWithDebInfo agent (ASan's RSS says nothing).
// What one costs is printed for BENCHMARKS.md; the bound is one-sided and
// generous (each session's record buffers are released while idle).
TEST(DataTlsMemory, AThousandHeldTlsConnectionsCostBoundedMemory) {
  const std::string release = ReleaseAgentPath();
  if (release.empty()) {
    if (ReleaseAgentRequired()) FAIL() << "SOCKAGENTD_RELEASE is not set";
    GTEST_SKIP() << "SOCKAGENTD_RELEASE not set (scripts/test.sh sets it)";
  }
  auto agent = AgentProcess::Start({}, "", release);
  ASSERT_TRUE(agent.ok()) << agent.status();
  auto stub = v1::SocketAgent::NewStub(ChannelTo((*agent)->address()));
  v1::Server server = StartLoopbackServer(*stub, [](v1::StartServerRequest& r) {
    r.mutable_tls()->mutable_self_signed();
  });
  ASSERT_FALSE(server.id().empty());
  const int64_t rss_before = ProcessRssBytes((*agent)->pid());
  constexpr int kConns = 1000;
  const std::string script = R"PY(
import resource, signal, socket, ssl, sys
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
if hard != resource.RLIM_INFINITY and hard < 4096:
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
else:
    resource.setrlimit(resource.RLIMIT_NOFILE, (4096, hard))
port, n = int(sys.argv[1]), int(sys.argv[2])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
held = []
for _ in range(n):
    raw = socket.create_connection(("127.0.0.1", port), timeout=60)
    held.append(ctx.wrap_socket(raw, server_hostname="localhost"))
print("held", len(held), held[0].version(), flush=True)
signal.pause()  # Until the test stops it (stdin is not ours to read).
)PY";
  auto child = ChildProcess::Start(
      {"/usr/bin/python3", "-c", script,
       absl::StrCat(server.local_addresses(0).port()), absl::StrCat(kConns)});
  ASSERT_TRUE(child.ok()) << child.status();
  auto line = (*child)->ReadLine(absl::Now() + absl::Seconds(120));
  ASSERT_TRUE(line.ok()) << line.status() << (*child)->DrainStderr();
  EXPECT_EQ(*line, absl::StrCat("held ", kConns, " TLSv1.3"));
  auto counters = [&] {
    v1::ListServersRequest request;
    v1::ListServersResponse response;
    auto context = ContextWithDeadline();
    (void)stub->ListServers(context.get(), request, &response);
    return response.servers_size() == 1 ? response.servers(0).counters()
                                        : v1::ServerCounters();
  };
  v1::ServerCounters seen;
  ASSERT_TRUE(WaitFor(
      [&] {
        seen = counters();
        return seen.tls_handshakes() == kConns &&
               seen.connections_active() == kConns;
      },
      absl::Seconds(60)))
      << seen.DebugString();
  const int64_t rss_held = ProcessRssBytes((*agent)->pid());
  const int64_t per_conn = (rss_held - rss_before) / kConns;
  std::printf("TLS held: %d connections, RSS %.1f -> %.1f MiB, %.1f KiB each\n",
              kConns, rss_before / 1048576.0, rss_held / 1048576.0,
              per_conn / 1024.0);
  EXPECT_LT(per_conn, 96 * 1024);
  (void)(*child)->Stop(SIGTERM, absl::Now() + absl::Seconds(20));
  // Closed by the peer: the agent keeps serving.
  ASSERT_TRUE(WaitFor([&] { return counters().connections_active() == 0; },
                      absl::Seconds(60)));
}

}  // namespace
}  // namespace sockagent::testing
