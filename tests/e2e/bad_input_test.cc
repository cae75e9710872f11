// Bad input against one real sockagentd, as a table: each row sends one
// kind of bad input and expects a status code and a message substring;
// after every row the agent must still answer health and its existing
// connections must still carry data both ways. README's "Bad input" table
// lists the same rows (keep them in step).
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <functional>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "sockagent/v1/agent.grpc.pb.h"
#include "tests/support/agent_process.h"
#include "tests/support/agent_rpc.h"
#include "tests/support/grpc_client.h"
#include "tests/support/posix_peer.h"

namespace sockagent::testing {
namespace {

using ::testing::HasSubstr;

// The agent runs with these, so "above the limit" rows are cheap.
constexpr size_t kMaxSendBytes = 64 * 1024;
constexpr size_t kMaxMessageBytes = 1024 * 1024;
constexpr int kConcurrentRpcs = 1000;

struct Outcome {
  grpc::StatusCode code = grpc::StatusCode::OK;
  std::string message;
};

struct Row {
  std::string input;  // As in README's table.
  std::function<Outcome()> run;
  grpc::StatusCode want;
  std::string message;  // Substring of the status message.
};

Outcome Of(const grpc::Status& s) {
  return {s.error_code(), s.error_message()};
}

// A raw TCP connection to the control port (no gRPC).
Fd RawControlConnection(const std::string& address) {
  const int port = std::stoi(address.substr(address.rfind(':') + 1));
  return TcpConnect(Ip("127.0.0.1", static_cast<uint16_t>(port)));
}

// PEM made by Debian's openssl for the TLS rows (never committed keys).
std::string OpensslOut(const std::vector<std::string>& argv) {
  CommandResult r = RunCommand(argv);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return r.out;
}
std::string FreshKeyPem() {
  return OpensslOut({"openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                     "ec_paramgen_curve:P-256"});
}
std::string SelfSignedPem() {
  TempDir dir;
  const std::string key = dir.path() + "/k.pem";
  const std::string cert = dir.path() + "/c.pem";
  CommandResult r =
      RunCommand({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                  "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out",
                  cert, "-days", "1", "-subj", "/CN=bad-input"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return OpensslOut({"cat", cert});
}

class BadInput : public AgentTestBase {
 protected:
  void SetUp() override {
    StartAgent({absl::StrCat("--max-send-bytes=", kMaxSendBytes),
                absl::StrCat("--max-message-bytes=", kMaxMessageBytes)});
    if (HasFatalFailure()) return;
    // Existing connections that must survive every row: a plain client of
    // an echo server of the agent, and a connection the agent opened to a
    // plain listener.
    v1::Server echo =
        StartLoopbackServer(*stub_, [](v1::StartServerRequest& r) {
          r.mutable_behavior()->mutable_echo();
        });
    echo_client_ = TcpConnect(FirstAddress(echo));
    ASSERT_TRUE(echo_client_.valid());
    opened_id_ = OpenToPlainPeer(&opened_peer_);
    ASSERT_FALSE(opened_id_.empty());
    ASSERT_TRUE(opened_peer_.valid());
  }

  grpc::Status StartServer(const v1::StartServerRequest& request) {
    v1::StartServerResponse response;
    auto context = ContextWithDeadline();
    return stub_->StartServer(context.get(), request, &response);
  }
  grpc::Status OpenClient(const v1::OpenClientRequest& request) {
    v1::OpenClientResponse response;
    auto context = ContextWithDeadline();
    return stub_->OpenClient(context.get(), request, &response);
  }
  grpc::Status Receive(const std::string& id, std::string* data = nullptr) {
    v1::ReceiveRequest request;
    request.set_connection_id(id);
    request.mutable_wait()->set_seconds(5);
    v1::ReceiveResponse response;
    auto context = ContextWithDeadline();
    grpc::Status s = stub_->Receive(context.get(), request, &response);
    if (data != nullptr) *data = response.data();
    return s;
  }
  static v1::StartServerRequest TcpServer(uint32_t port) {
    v1::StartServerRequest r;
    r.mutable_bind()->set_host("127.0.0.1");
    r.mutable_bind()->set_port(port);
    return r;
  }
  static v1::OpenClientRequest ClientTo(const std::string& host,
                                        uint32_t port) {
    v1::OpenClientRequest r;
    r.mutable_remote()->set_host(host);
    r.mutable_remote()->set_port(port);
    return r;
  }

  // Health answers and both existing connections carry `tag` both ways.
  void ExpectAgentStillWorks(const std::string& tag) {
    auto health =
        grpc::health::v1::Health::NewStub(ChannelTo(agent_->address()));
    grpc::health::v1::HealthCheckRequest hreq;
    grpc::health::v1::HealthCheckResponse hresp;
    auto context = ContextWithDeadline();
    grpc::Status s = health->Check(context.get(), hreq, &hresp);
    ASSERT_TRUE(s.ok()) << tag << ": " << s.error_message();
    EXPECT_EQ(hresp.status(), grpc::health::v1::HealthCheckResponse::SERVING);
    ASSERT_TRUE(WriteAll(echo_client_.get(), tag)) << tag;
    EXPECT_EQ(ReadExactly(echo_client_.get(), tag.size()), tag);
    ASSERT_TRUE(Send(opened_id_, tag).ok()) << tag;
    EXPECT_EQ(ReadExactly(opened_peer_.get(), tag.size()), tag);
    ASSERT_TRUE(WriteAll(opened_peer_.get(), tag)) << tag;
    std::string got;
    while (got.size() < tag.size()) {
      std::string more;
      ASSERT_TRUE(Receive(opened_id_, &more).ok()) << tag;
      ASSERT_FALSE(more.empty()) << tag;
      got += more;
    }
    EXPECT_EQ(got, tag);
  }

  std::vector<Row> Rows();

  Fd echo_client_;
  std::string opened_id_;
  Fd opened_peer_;
  Fd half_open_;  // The half-open HTTP/2 row's connection.
};

std::vector<Row> BadInput::Rows() {
  using grpc::StatusCode;
  std::vector<Row> rows;
  rows.push_back({"StartServer service \"-1\" (port -1)",
                  [this] {
                    v1::StartServerRequest r = TcpServer(0);
                    r.mutable_bind()->set_service("-1");
                    return Of(StartServer(r));
                  },
                  StatusCode::INVALID_ARGUMENT,
                  "port -1 is out of range 0..65535"});
  rows.push_back({"OpenClient service \"-1\" (port -1)",
                  [this] {
                    v1::OpenClientRequest r = ClientTo("127.0.0.1", 0);
                    r.mutable_remote()->set_service("-1");
                    return Of(OpenClient(r));
                  },
                  StatusCode::INVALID_ARGUMENT,
                  "port -1 is out of range 0..65535"});
  rows.push_back({"StartServer port 65536",
                  [this] { return Of(StartServer(TcpServer(65536))); },
                  StatusCode::INVALID_ARGUMENT, "65536"});
  rows.push_back(
      {"OpenClient port 65536",
       [this] { return Of(OpenClient(ClientTo("127.0.0.1", 65536))); },
       StatusCode::INVALID_ARGUMENT, "65536"});
  rows.push_back({"OpenClient port 0",
                  [this] { return Of(OpenClient(ClientTo("127.0.0.1", 0))); },
                  StatusCode::INVALID_ARGUMENT,
                  "remote port 0 is not valid for a client"});
  rows.push_back({"OpenClient host \"\"",
                  [this] { return Of(OpenClient(ClientTo("", 80))); },
                  StatusCode::INVALID_ARGUMENT, "remote host is empty"});
  rows.push_back(
      {"OpenClient host of 10 KiB",
       [this] { return Of(OpenClient(ClientTo(std::string(10240, 'a'), 80))); },
       StatusCode::INVALID_ARGUMENT, "longer than the limit"});
  rows.push_back({"StartServer host of 10 KiB",
                  [this] {
                    v1::StartServerRequest r = TcpServer(0);
                    r.mutable_bind()->set_host(std::string(10240, 'a'));
                    return Of(StartServer(r));
                  },
                  StatusCode::INVALID_ARGUMENT, "longer than the limit"});
  rows.push_back({"Resolve host of 10 KiB",
                  [this] {
                    v1::ResolveRequest r;
                    r.set_host(std::string(10240, 'a'));
                    v1::ResolveResponse response;
                    auto context = ContextWithDeadline();
                    return Of(stub_->Resolve(context.get(), r, &response));
                  },
                  StatusCode::INVALID_ARGUMENT, "longer than the limit"});
  rows.push_back({"Send to unknown id conn-999999",
                  [this] { return Of(Send("conn-999999", "x")); },
                  StatusCode::NOT_FOUND, "conn-999999"});
  rows.push_back({"Receive from unknown id conn-999999",
                  [this] { return Of(Receive("conn-999999")); },
                  StatusCode::NOT_FOUND, "conn-999999"});
  rows.push_back({"StopServer unknown id srv-999999",
                  [this] {
                    v1::StopServerRequest r;
                    r.set_id("srv-999999");
                    v1::StopServerResponse response;
                    auto context = ContextWithDeadline();
                    return Of(stub_->StopServer(context.get(), r, &response));
                  },
                  StatusCode::NOT_FOUND, "srv-999999"});
  rows.push_back({"Send to malformed id \"conn-x\\0y\"",
                  [this] { return Of(Send(std::string("conn-x\0y", 8), "x")); },
                  StatusCode::NOT_FOUND, "not found"});
  rows.push_back({"Send to malformed id \"\"",
                  [this] { return Of(Send("", "x")); },
                  StatusCode::INVALID_ARGUMENT, "id"});
  rows.push_back({"CloseConnection malformed id \"srv-1\" (a server's)",
                  [this] {
                    v1::CloseConnectionRequest r;
                    r.set_id("srv-1");
                    v1::CloseConnectionResponse response;
                    auto context = ContextWithDeadline();
                    return Of(
                        stub_->CloseConnection(context.get(), r, &response));
                  },
                  StatusCode::NOT_FOUND, "srv-1"});
  rows.push_back({"Send above --max-send-bytes",
                  [this] {
                    return Of(
                        Send(opened_id_, std::string(kMaxSendBytes + 1, 'x')));
                  },
                  StatusCode::INVALID_ARGUMENT, "above"});
  rows.push_back(
      {"Message above --max-message-bytes",
       [this] {
         return Of(Send(opened_id_, std::string(kMaxMessageBytes + 1, 'x')));
       },
       StatusCode::RESOURCE_EXHAUSTED, "larger than max"});
  rows.push_back({"StartServer transport 77 (unknown enum)",
                  [this] {
                    v1::StartServerRequest r = TcpServer(0);
                    r.set_transport(static_cast<v1::Transport>(77));
                    return Of(StartServer(r));
                  },
                  StatusCode::INVALID_ARGUMENT, "77"});
  rows.push_back({"OpenClient family 42 (unknown enum)",
                  [this] {
                    v1::OpenClientRequest r = ClientTo("127.0.0.1", 9);
                    r.set_family(static_cast<v1::Family>(42));
                    return Of(OpenClient(r));
                  },
                  StatusCode::INVALID_ARGUMENT, "42"});
  rows.push_back({"CloseConnection mode 99 (unknown enum)",
                  [this] {
                    v1::CloseConnectionRequest r;
                    r.set_id(opened_id_);
                    r.set_mode(static_cast<v1::CloseMode>(99));
                    v1::CloseConnectionResponse response;
                    auto context = ContextWithDeadline();
                    return Of(
                        stub_->CloseConnection(context.get(), r, &response));
                  },
                  StatusCode::INVALID_ARGUMENT, "99"});
  rows.push_back({"StartServer UNIX file name of 103 bytes",
                  [this] {
                    v1::StartServerRequest r;
                    r.set_transport(v1::TRANSPORT_UNIX);
                    r.mutable_bind()->set_unix_path("/tmp/" +
                                                    std::string(103, 'p'));
                    return Of(StartServer(r));
                  },
                  StatusCode::INVALID_ARGUMENT, "may have at most 85"});
  rows.push_back({"OpenClient relative UNIX path",
                  [this] {
                    v1::OpenClientRequest r;
                    r.set_transport(v1::TRANSPORT_UNIX);
                    r.mutable_remote()->set_unix_path("relative.sock");
                    return Of(OpenClient(r));
                  },
                  StatusCode::INVALID_ARGUMENT, "is relative"});
  // Faults (AddFault): the parameter's field is named.
  const auto add_fault = [this](std::function<void(v1::Fault&)> fill) {
    v1::AddFaultRequest r;
    r.mutable_fault()->set_name("bad");
    r.mutable_fault()->mutable_target()->set_connection_id(opened_id_);
    fill(*r.mutable_fault());
    v1::AddFaultResponse response;
    auto context = ContextWithDeadline();
    return Of(stub_->AddFault(context.get(), r, &response));
  };
  rows.push_back({"AddFault latency jitter 2h",
                  [add_fault] {
                    return add_fault([](v1::Fault& f) {
                      f.mutable_latency()->mutable_jitter()->set_seconds(7200);
                    });
                  },
                  StatusCode::INVALID_ARGUMENT,
                  "fault.latency.jitter must be <= 1h"});
  rows.push_back({"AddFault latency -1s",
                  [add_fault] {
                    return add_fault([](v1::Fault& f) {
                      f.mutable_latency()->mutable_latency()->set_seconds(-1);
                    });
                  },
                  StatusCode::INVALID_ARGUMENT,
                  "fault.latency.latency must not be negative"});
  rows.push_back(
      {"AddFault bandwidth rate 0",
       [add_fault] {
         return add_fault([](v1::Fault& f) { f.mutable_bandwidth(); });
       },
       StatusCode::INVALID_ARGUMENT, "fault.bandwidth.rate_bytes_per_second"});
  rows.push_back({"AddFault slicer size_variation >= average_size",
                  [add_fault] {
                    return add_fault([](v1::Fault& f) {
                      f.mutable_slicer()->set_average_size(10);
                      f.mutable_slicer()->set_size_variation(10);
                    });
                  },
                  StatusCode::INVALID_ARGUMENT, "fault.slicer.size_variation"});
  rows.push_back({"AddFault toxicity 1.5",
                  [add_fault] {
                    return add_fault([](v1::Fault& f) {
                      f.set_toxicity(1.5);
                      f.mutable_limit_data();
                    });
                  },
                  StatusCode::INVALID_ARGUMENT,
                  "fault.toxicity must be between 0 and 1"});
  rows.push_back({"AddFault name \"Bad Name\"",
                  [add_fault] {
                    return add_fault([](v1::Fault& f) {
                      f.set_name("Bad Name");
                      f.mutable_limit_data();
                    });
                  },
                  StatusCode::INVALID_ARGUMENT,
                  "fault.name must be a DNS label"});
  rows.push_back({"AddFault without a type",
                  [add_fault] { return add_fault([](v1::Fault&) {}); },
                  StatusCode::INVALID_ARGUMENT, "a type is required"});
  rows.push_back({"AddFault direction 9 (unknown enum)",
                  [add_fault] {
                    return add_fault([](v1::Fault& f) {
                      f.set_direction(static_cast<v1::FaultDirection>(9));
                      f.mutable_limit_data();
                    });
                  },
                  StatusCode::INVALID_ARGUMENT, "fault.direction"});
  rows.push_back({"AddFault on unknown server srv-999999",
                  [add_fault] {
                    return add_fault([](v1::Fault& f) {
                      f.mutable_target()->set_server_id("srv-999999");
                      f.mutable_target()->clear_connection_id();
                      f.mutable_limit_data();
                    });
                  },
                  StatusCode::NOT_FOUND, "not found"});
  rows.push_back(
      {"4 KiB of garbage bytes on the control port",
       [this] {
         Fd raw = RawControlConnection(agent_->address());
         const std::string garbage(4096, '\xff');
         if (!WriteAll(raw.get(), garbage))
           return Outcome{grpc::StatusCode::UNKNOWN, "write"};
         // The agent drops the connection: EOF or reset, never an
         // answer.
         int error = 0;
         ReadToEof(raw.get(), &error);
         if (error != 0 && error != ECONNRESET) {
           return Outcome{grpc::StatusCode::UNKNOWN,
                          absl::StrCat("not closed: errno ", error)};
         }
         return Outcome{grpc::StatusCode::OK, "connection closed by the agent"};
       },
       StatusCode::OK, "connection closed by the agent"});
  rows.push_back({"Half-open HTTP/2 preface held open on the control port",
                  [this] {
                    half_open_ = RawControlConnection(agent_->address());
                    const std::string preface =
                        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
                    if (!WriteAll(half_open_.get(), preface)) {
                      return Outcome{grpc::StatusCode::UNKNOWN, "write"};
                    }
                    // Kept open (no SETTINGS) while the checks after this row
                    // run.
                    return Outcome{grpc::StatusCode::OK, "held open"};
                  },
                  StatusCode::OK, "held open"});
  rows.push_back(
      {absl::StrCat(kConcurrentRpcs, " concurrent RPCs"),
       [this] {
         absl::Mutex mu;
         int done = 0;
         int failed = 0;
         std::string first_error;
         struct Call {
           grpc::ClientContext context;
           v1::ListServersRequest request;
           v1::ListServersResponse response;
         };
         std::vector<std::unique_ptr<Call>> calls;
         const absl::Time start = absl::Now();
         for (int i = 0; i < kConcurrentRpcs; ++i) {
           auto call = std::make_unique<Call>();
           call->context.set_deadline(std::chrono::system_clock::now() +
                                      std::chrono::seconds(60));
           stub_->async()->ListServers(&call->context, &call->request,
                                       &call->response, [&](grpc::Status s) {
                                         absl::MutexLock lock(&mu);
                                         ++done;
                                         if (!s.ok() && failed++ == 0)
                                           first_error = s.error_message();
                                       });
           calls.push_back(std::move(call));
         }
         absl::MutexLock lock(&mu);
         mu.Await(absl::Condition(
             +[](int* d) { return *d == kConcurrentRpcs; }, &done));
         if (failed > 0) {
           return Outcome{grpc::StatusCode::UNKNOWN,
                          absl::StrCat(failed, " failed: ", first_error)};
         }
         return Outcome{
             grpc::StatusCode::OK,
             absl::StrCat("all ", kConcurrentRpcs, " OK in ",
                          absl::ToInt64Milliseconds(absl::Now() - start),
                          " ms")};
       },
       StatusCode::OK, absl::StrCat("all ", kConcurrentRpcs, " OK")});
  // TLS on data sockets (agent/tls.h): each field named in the answer.
  auto tls_server = [this](std::function<void(v1::TlsServerOptions*)> fill) {
    v1::StartServerRequest r = TcpServer(0);
    fill(r.mutable_tls());
    return Of(StartServer(r));
  };
  rows.push_back({"StartServer tls with malformed PEM",
                  [tls_server] {
                    return tls_server([](v1::TlsServerOptions* t) {
                      t->set_certificate_chain_pem(
                          "-----BEGIN CERTIFICATE-----\nnot base64!\n"
                          "-----END CERTIFICATE-----\n");
                      t->set_private_key_pem("x");
                    });
                  },
                  StatusCode::INVALID_ARGUMENT,
                  "tls.certificate_chain_pem: malformed PEM certificate"});
  rows.push_back({"StartServer tls key not matching the certificate",
                  [tls_server] {
                    // A certificate and someone else's fresh key.
                    const std::string cert = SelfSignedPem();
                    const std::string key = FreshKeyPem();
                    return tls_server([&](v1::TlsServerOptions* t) {
                      t->set_certificate_chain_pem(cert);
                      t->set_private_key_pem(key);
                    });
                  },
                  StatusCode::INVALID_ARGUMENT,
                  "tls.private_key_pem: does not match the certificate"});
  rows.push_back({"StartServer tls ALPN name with a space or empty",
                  [tls_server] {
                    return tls_server([](v1::TlsServerOptions* t) {
                      t->mutable_self_signed();
                      t->add_alpn("h2 x");
                    });
                  },
                  StatusCode::INVALID_ARGUMENT, "tls.alpn: name"});
  rows.push_back({"StartServer tls PEM of 100 KiB",
                  [tls_server] {
                    return tls_server([](v1::TlsServerOptions* t) {
                      t->set_certificate_chain_pem(std::string(100 << 10, 'A'));
                      t->set_private_key_pem("x");
                    });
                  },
                  StatusCode::INVALID_ARGUMENT,
                  "tls.certificate_chain_pem: 102400 bytes is above the "
                  "65536-byte bound"});
  rows.push_back({"StartServer tls with UDP",
                  [this] {
                    v1::StartServerRequest r = TcpServer(0);
                    r.set_transport(v1::TRANSPORT_UDP);
                    r.mutable_tls()->mutable_self_signed();
                    return Of(StartServer(r));
                  },
                  StatusCode::INVALID_ARGUMENT, "UDP has no TLS"});
  rows.push_back({"StartServer tls certificate path without --allow-tls-paths",
                  [tls_server] {
                    return tls_server([](v1::TlsServerOptions* t) {
                      t->set_certificate_chain_path("/etc/passwd");
                      t->set_private_key_path("/etc/shadow");
                    });
                  },
                  StatusCode::PERMISSION_DENIED, "--allow-tls-paths is unset"});
  rows.push_back({"OpenClient tls with 17 ALPN names",
                  [this] {
                    v1::OpenClientRequest r = ClientTo("127.0.0.1", 9);
                    for (int i = 0; i < 17; ++i) r.mutable_tls()->add_alpn("x");
                    return Of(OpenClient(r));
                  },
                  StatusCode::INVALID_ARGUMENT, "tls.alpn: 17 names"});
  rows.push_back({"OpenClient tls server_name \"a b\"",
                  [this] {
                    v1::OpenClientRequest r = ClientTo("127.0.0.1", 9);
                    r.mutable_tls()->set_server_name("a b");
                    return Of(OpenClient(r));
                  },
                  StatusCode::INVALID_ARGUMENT, "tls.server_name"});
  rows.push_back({"OpenClient tls min_version 1.3 above max_version 1.2",
                  [this] {
                    v1::OpenClientRequest r = ClientTo("127.0.0.1", 9);
                    r.mutable_tls()->set_min_version(v1::TLS_VERSION_1_3);
                    r.mutable_tls()->set_max_version(v1::TLS_VERSION_1_2);
                    return Of(OpenClient(r));
                  },
                  StatusCode::INVALID_ARGUMENT,
                  "tls.min_version: is above max_version"});
  return rows;
}

TEST_F(BadInput, EveryRowGetsItsStatusAndTheAgentKeepsWorking) {
  ExpectAgentStillWorks("before");
  int n = 0;
  for (const Row& row : Rows()) {
    SCOPED_TRACE(row.input);
    const Outcome got = row.run();
    // The table as run, for README and for reading a failure.
    std::cout << "| " << row.input << " | " << got.code << " | "
              << got.message.substr(0, 120) << " |\n";
    EXPECT_EQ(got.code, row.want) << got.message;
    EXPECT_THAT(got.message, HasSubstr(row.message));
    ExpectAgentStillWorks(absl::StrCat("row-", n++, "\n"));
    if (HasFatalFailure()) return;
  }
  // The half-open connection was held through the later rows.
  EXPECT_TRUE(half_open_.valid());
}

}  // namespace
}  // namespace sockagent::testing
