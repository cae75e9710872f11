// TLS contexts, certificate facts, the session cache (agent/tls.h), and TLS
// through the engine end to end on loopback: an engine TLS client to an
// engine TLS server, echo, the facts on both sides, and the close with
// close_notify.
#include "agent/tls.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <sys/socket.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tests/agent/engine_test_util.h"
#include "tests/support/tls_peer.h"

namespace sockagent::testing {
namespace {

// OpenSSL writes with write(2), so a peer's reset raises SIGPIPE; the
// engine's users ignore it (sockagentd does, service/main.cc), and so does
// this test binary.
const bool kSigpipeIgnored = [] {
  signal(SIGPIPE, SIG_IGN);
  return true;
}();

using ::testing::HasSubstr;

TEST(TlsServerContext, SelfSignedReportsItsCertificate) {
  TlsServerSpec spec;
  spec.self_signed = true;
  spec.self_signed_names = {"example.test", "127.0.0.1", "::1"};
  auto ctx = TlsServerContext::Create(spec);
  ASSERT_TRUE(ctx.ok()) << ctx.status();
  const TlsCertificateInfo& cert = (*ctx)->info()->certificate;
  EXPECT_THAT(cert.subject, HasSubstr("CN=example.test"));
  EXPECT_EQ(cert.subject, cert.issuer);
  EXPECT_THAT(cert.sans, ::testing::ElementsAre("DNS:example.test",
                                                "IP:127.0.0.1", "IP:::1"));
  EXPECT_EQ(cert.sha256_fingerprint.size(), 95u);  // 32 bytes "AB:".
  EXPECT_LT(cert.not_before, absl::Now());
  EXPECT_GT(cert.not_after, absl::Now() + absl::Hours(24));
  auto again = DescribePemCertificate(cert.pem);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->sha256_fingerprint, cert.sha256_fingerprint);
}

TEST(TlsServerContext, BadFieldsAreInvalidArgumentNamingTheField) {
  struct Case {
    std::function<void(TlsServerSpec&)> fill;
    std::string message;
  };
  const std::vector<Case> cases = {
      {[](TlsServerSpec&) {}, "tls.certificate_chain_pem: required"},
      {[](TlsServerSpec& s) {
         s.certificate_chain_pem = "garbage";
         s.private_key_pem = "garbage";
       },
       "tls.certificate_chain_pem: no PEM certificate found"},
      {[](TlsServerSpec& s) {
         s.certificate_chain_pem = std::string(kMaxTlsPemBytes + 1, 'x');
         s.private_key_pem = "x";
       },
       "tls.certificate_chain_pem: 65537 bytes is above the 65536-byte bound"},
      {[](TlsServerSpec& s) {
         s.self_signed = true;
         s.self_signed_names = {"a,DNS:evil"};
       },
       "tls.self_signed.names"},
      {[](TlsServerSpec& s) {
         s.self_signed = true;
         s.alpn = {""};
       },
       "tls.alpn: a name must have 1 to 255 bytes"},
      {[](TlsServerSpec& s) {
         s.self_signed = true;
         s.client_auth = TlsClientAuth::kRequire;
       },
       "tls.client_ca_pem: required when client_auth is REQUIRE"},
      {[](TlsServerSpec& s) {
         s.self_signed = true;
         s.min_version = TlsVersion::kTls13;
         s.max_version = TlsVersion::kTls12;
       },
       "tls.min_version: is above max_version"},
      {[](TlsServerSpec& s) {
         s.self_signed = true;
         s.handshake_timeout = absl::Hours(1);
       },
       "tls.handshake_timeout"},
  };
  for (const Case& c : cases) {
    TlsServerSpec spec;
    c.fill(spec);
    auto ctx = TlsServerContext::Create(spec);
    ASSERT_FALSE(ctx.ok()) << c.message;
    EXPECT_EQ(ctx.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(ctx.status().message(), HasSubstr(c.message));
  }
}

TEST(TlsServerContext, KeyOfAnotherCertificateIsRefused) {
  TlsServerSpec a;
  a.self_signed = true;
  auto ctx = TlsServerContext::Create(a);
  ASSERT_TRUE(ctx.ok());
  // The certificate with a key PEM that is not its key (not a key at all:
  // the key-mismatch case with a real key is in tests/e2e/bad_input_test).
  TlsServerSpec b;
  b.certificate_chain_pem = (*ctx)->info()->certificate.pem;
  b.private_key_pem =
      "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
  auto refused = TlsServerContext::Create(b);
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.status().message(), HasSubstr("tls.private_key_pem"));
}

class EngineTls : public EngineTest {};

TEST_F(EngineTls, ClientAndServerEchoOverTlsAndReportTheHandshake) {
  TlsServerSpec server_tls;
  server_tls.self_signed = true;
  server_tls.alpn = {"sockagent-test"};
  auto server_ctx = TlsServerContext::Create(server_tls);
  ASSERT_TRUE(server_ctx.ok()) << server_ctx.status();
  ServerSpec spec = LoopbackServer(BehaviorKind::kEcho);
  spec.tls = *server_ctx;
  absl::StatusOr<ServerInfo> server = sync_->StartServer(spec);
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_NE(server->tls, nullptr);

  TlsClientSpec client_tls;
  client_tls.trust = TlsTrust::kCaPem;
  client_tls.ca_pem = (*server_ctx)->info()->certificate.pem;
  client_tls.server_name = "localhost";
  client_tls.alpn = {"other", "sockagent-test"};
  auto client_ctx = TlsClientContext::Create(client_tls, "127.0.0.1");
  ASSERT_TRUE(client_ctx.ok()) << client_ctx.status();
  ClientSpec client;
  client.remote.host = "127.0.0.1";
  client.remote.port = std::to_string(server->local_addresses[0].port);
  client.tls = *client_ctx;
  absl::StatusOr<ConnectionInfo> opened = sync_->OpenClient(client);
  ASSERT_TRUE(opened.ok()) << opened.status();
  ASSERT_NE(opened->tls, nullptr);
  EXPECT_TRUE(opened->tls->handshake_done);
  EXPECT_EQ(opened->tls->version, "TLSv1.3");
  EXPECT_EQ(opened->tls->alpn, "sockagent-test");
  EXPECT_EQ(opened->tls->sni, "localhost");
  EXPECT_EQ(opened->tls->verification, "ok");
  ASSERT_EQ(opened->tls->peer_chain.size(), 1u);

  const std::string payload(300000, 'q');
  ASSERT_TRUE(sync_->Send(opened->id, payload).ok());
  absl::StatusOr<std::string> echoed =
      sync_->ReceiveExactly(opened->id, payload.size());
  ASSERT_TRUE(echoed.ok()) << echoed.status();
  EXPECT_EQ(*echoed, payload);

  // The server side saw the same handshake.
  std::vector<ConnectionInfo> accepted = sync_->ConnectionsOf(server->id);
  ASSERT_EQ(accepted.size(), 1u);
  ASSERT_NE(accepted[0].tls, nullptr);
  EXPECT_EQ(accepted[0].tls->sni, "localhost");
  EXPECT_EQ(accepted[0].tls->alpn, "sockagent-test");
  EXPECT_FALSE(accepted[0].tls->client);

  // A graceful close sends close_notify: the echo side sees an orderly
  // end, not a truncation.
  ASSERT_TRUE(sync_->Close(opened->id, CloseMode::kGraceful).ok());
  std::optional<ConnectionInfo> done =
      sync_->ConnectionWhen(accepted[0].id, [](const ConnectionInfo& c) {
        return c.state == ConnectionState::kClosed;
      });
  ASSERT_TRUE(done.has_value());
  EXPECT_EQ(done->close_reason, CloseReason::kPeerClosed);
  ASSERT_NE(done->tls, nullptr);
  EXPECT_FALSE(done->tls->truncated);
}

// An engine under a byte bound and an independent TLS echo peer (Python's
// ssl, presenting a test PKI's leaf), with client_ an OpenClient spec that
// verifies it against the PKI's CA as "localhost".
class EngineTlsFacts : public EngineTls {
 protected:
  void StartEchoUnderBound(uint64_t max_total_buffered_bytes) {
    options_.max_total_buffered_bytes = max_total_buffered_bytes;
    MakeEngine(options_);
    echo_ = std::make_unique<TlsEchoPeer>(pki_.Path("leaf.pem"),
                                          pki_.Path("leaf.key"));
    ASSERT_NE(echo_->port(), 0);
    TlsClientSpec client_tls;
    client_tls.trust = TlsTrust::kCaPem;
    client_tls.ca_pem = pki_.Pem("ca.pem");
    client_tls.server_name = "localhost";
    auto ctx = TlsClientContext::Create(client_tls, "127.0.0.1");
    ASSERT_TRUE(ctx.ok()) << ctx.status();
    client_.remote.host = "127.0.0.1";
    client_.remote.port = std::to_string(echo_->port());
    client_.tls = *std::move(ctx);
  }

  EngineOptions options_;
  Pki pki_;
  std::unique_ptr<TlsEchoPeer> echo_;
  ClientSpec client_;
};

// What a handshake leaves (the peer chain with its PEM, up to ~16 KiB) is
// charged against the agent-wide byte bound, like buffered bytes: a
// connection with nothing buffered still holds its facts' bytes. When the
// bound has no room left, the chain keeps its summary and drops the PEM.
TEST_F(EngineTlsFacts, HandshakeFactsAreChargedToTheByteBoundAndTrimmedAtIt) {
  ASSERT_NO_FATAL_FAILURE(StartEchoUnderBound(256 * 1024));

  absl::StatusOr<ConnectionInfo> first = sync_->OpenClient(client_);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_NE(first->tls, nullptr);
  ASSERT_FALSE(first->tls->peer_chain.empty());
  const size_t pem_bytes = first->tls->peer_chain[0].pem.size();
  EXPECT_GT(pem_bytes, 300u);
  EXPECT_EQ(first->counters.recv_buffered, 0u);
  const uint64_t charged = engine_->counters().buffered_bytes.load();
  EXPECT_GT(charged, pem_bytes);
  EXPECT_LT(charged, kMaxTlsReportedChainBytes + 4096);

  // Fill the bound with a plain connection's unreceived bytes.
  Fd writer;
  absl::StatusOr<ServerInfo> hold = StartWithClient(&writer);
  ASSERT_TRUE(hold.ok()) << hold.status();
  std::optional<ConnectionInfo> held = AcceptedBy(*sync_, hold->id);
  ASSERT_TRUE(held.has_value());
  const std::string fill(options_.max_total_buffered_bytes - charged, 'f');
  ASSERT_TRUE(WriteAll(writer.get(), fill));
  ASSERT_TRUE(WaitFor([&] {
    return engine_->counters().buffered_bytes.load() ==
           options_.max_total_buffered_bytes;
  }));

  // No room: the second connection's facts keep the summary only.
  absl::StatusOr<ConnectionInfo> second = sync_->OpenClient(client_);
  ASSERT_TRUE(second.ok()) << second.status();
  ASSERT_NE(second->tls, nullptr);
  EXPECT_EQ(second->tls->verification, "ok");
  ASSERT_FALSE(second->tls->peer_chain.empty());
  EXPECT_THAT(second->tls->peer_chain[0].subject, HasSubstr("localhost"));
  EXPECT_FALSE(second->tls->peer_chain[0].sha256_fingerprint.empty());
  EXPECT_TRUE(second->tls->peer_chain[0].pem.empty());

  // Room again: the next one keeps everything.
  ASSERT_TRUE(sync_->ReceiveExactly(held->id, fill.size()).ok());
  absl::StatusOr<ConnectionInfo> third = sync_->OpenClient(client_);
  ASSERT_TRUE(third.ok()) << third.status();
  ASSERT_NE(third->tls, nullptr);
  ASSERT_FALSE(third->tls->peer_chain.empty());
  EXPECT_EQ(third->tls->peer_chain[0].pem.size(), pem_bytes);

  // Closed, the first one's record keeps its PEM until the closed history
  // passes its quarter of the bound (64 KiB): then the oldest record gives
  // up its PEM first.
  ASSERT_TRUE(sync_->Close(first->id, CloseMode::kAbort).ok());
  std::optional<ConnectionInfo> closed = sync_->Connection(first->id);
  ASSERT_TRUE(closed.has_value() && closed->tls != nullptr);
  EXPECT_EQ(closed->tls->peer_chain[0].pem.size(), pem_bytes);
  ASSERT_TRUE(WriteAll(writer.get(), std::string(70 * 1024, 'h')));
  ASSERT_TRUE(WaitFor([&] {
    std::optional<ConnectionInfo> c = sync_->Connection(held->id);
    return c.has_value() && c->counters.recv_buffered == 70 * 1024;
  }));
  // The peer's reset closes it; its record keeps what the peer sent.
  const linger reset{1, 0};
  ASSERT_EQ(
      ::setsockopt(writer.get(), SOL_SOCKET, SO_LINGER, &reset, sizeof reset),
      0);
  writer.Reset();
  ASSERT_TRUE(WaitFor([&] {
    std::optional<ConnectionInfo> c = sync_->Connection(first->id);
    return c.has_value() && c->tls != nullptr && !c->tls->peer_chain.empty() &&
           c->tls->peer_chain[0].pem.empty();
  }));
  EXPECT_LE(engine_->counters().buffered_bytes.load(),
            options_.max_total_buffered_bytes);
}

// Closed TLS connections keep their facts' summaries, which no trim can
// shrink further: when they alone pass the history's quarter of the bound,
// the oldest records go whole, so the history stays within its share and
// reading never stays paused.
TEST_F(EngineTlsFacts, ClosedTlsRecordsGoWholeWhenTheirFactsFillTheHistory) {
  ASSERT_NO_FATAL_FAILURE(StartEchoUnderBound(16 * 1024));  // History: 4 KiB.
  constexpr int kClients = 12;
  for (int i = 0; i < kClients; ++i) {
    absl::StatusOr<ConnectionInfo> c = sync_->OpenClient(client_);
    ASSERT_TRUE(c.ok()) << c.status();
    ASSERT_TRUE(sync_->Close(c->id, CloseMode::kAbort).ok());
  }
  ASSERT_TRUE(WaitFor([&] {
    return engine_->counters().buffered_bytes.load() <=
           options_.max_total_buffered_bytes / 4;
  })) << engine_->counters().buffered_bytes.load();
  EXPECT_LT(sync_->AllConnections().size(), static_cast<size_t>(kClients));
  // Reading goes on: a plain connection's bytes arrive.
  Fd peer;
  absl::StatusOr<ServerInfo> hold = StartWithClient(&peer);
  ASSERT_TRUE(hold.ok()) << hold.status();
  std::optional<ConnectionInfo> held = AcceptedBy(*sync_, hold->id);
  ASSERT_TRUE(held.has_value());
  ASSERT_TRUE(WriteAll(peer.get(), "after"));
  absl::StatusOr<std::string> got = sync_->ReceiveExactly(held->id, 5);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, "after");
}

TEST_F(EngineTls, SystemTrustContextsShareOneStoreAndRefuseASelfSignedPeer) {
  // Every client context that trusts the system shares one store, loaded
  // once (each used to load the whole bundle: ~830 KiB).
  auto a = TlsClientContext::Create(TlsClientSpec{}, "localhost");
  auto b = TlsClientContext::Create(TlsClientSpec{}, "localhost");
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_NE(SSL_CTX_get_cert_store((*a)->ctx()), nullptr);
  EXPECT_EQ(SSL_CTX_get_cert_store((*a)->ctx()),
            SSL_CTX_get_cert_store((*b)->ctx()));
  TlsClientSpec own;
  own.trust = TlsTrust::kNone;
  auto c = TlsClientContext::Create(own, "localhost");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_NE(SSL_CTX_get_cert_store((*c)->ctx()),
            SSL_CTX_get_cert_store((*a)->ctx()));

  // The shared store still verifies: a self-signed server is refused.
  TlsServerSpec server_tls;
  server_tls.self_signed = true;
  auto server_ctx = TlsServerContext::Create(server_tls);
  ASSERT_TRUE(server_ctx.ok()) << server_ctx.status();
  ServerSpec spec = LoopbackServer(BehaviorKind::kEcho);
  spec.tls = *server_ctx;
  absl::StatusOr<ServerInfo> server = sync_->StartServer(spec);
  ASSERT_TRUE(server.ok()) << server.status();
  ClientSpec client;
  client.remote.host = "127.0.0.1";
  client.remote.port = std::to_string(server->local_addresses[0].port);
  client.tls = *a;
  absl::StatusOr<ConnectionInfo> opened = sync_->OpenClient(client);
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(opened.status().message()),
              HasSubstr("certificate verify failed"));
}

TEST_F(EngineTls, PeerFinDuringTheHandshakeFailsItAndIsCounted) {
  TlsServerSpec server_tls;
  server_tls.self_signed = true;
  auto server_ctx = TlsServerContext::Create(server_tls);
  ASSERT_TRUE(server_ctx.ok());
  ServerSpec spec = LoopbackServer(BehaviorKind::kEcho);
  spec.tls = *server_ctx;
  absl::StatusOr<ServerInfo> server = sync_->StartServer(spec);
  ASSERT_TRUE(server.ok());
  // A plain TCP peer that sends FIN instead of a ClientHello.
  Fd peer = TcpConnect(server->local_addresses[0]);
  ASSERT_TRUE(peer.valid());
  ::shutdown(peer.get(), SHUT_WR);
  std::optional<ConnectionInfo> closed =
      sync_->ConnectionWhen("conn-1", [](const ConnectionInfo& c) {
        return c.state == ConnectionState::kClosed;
      });
  ASSERT_TRUE(closed.has_value());
  EXPECT_THAT(closed->close_detail,
              HasSubstr("TLS handshake failed: the peer closed the "
                        "connection during the handshake"));
  std::optional<ServerInfo> s = sync_->Server(server->id);
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->counters.tls_handshake_failures, 1u);
}

}  // namespace
}  // namespace sockagent::testing
