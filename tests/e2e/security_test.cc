// Who may drive an agent: bearer tokens on every method (found through
// reflection, streams included), TLS and mutual TLS with the real sockctl,
// the owner-only UNIX socket that is the default (checked by another local
// user, with privileges dropped), the refusal to serve TCP without
// authentication, and the log lines of refused calls. Certificates are made
// at test time with openssl, never committed.
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <google/protobuf/descriptor.pb.h>
#include <grpcpp/generic/generic_stub.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "sockagent/v1/agent.grpc.pb.h"
#include "tests/support/agent_process.h"
#include "tests/support/grpc_client.h"
#include "tests/support/wait.h"

namespace sockagent::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kToken[] = "t0ken-for-tests-7f3a";
constexpr int kExitUnauthenticated = 10 + 16;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void WriteFile(const std::string& path, const std::string& text,
               mode_t mode = 0600) {
  std::ofstream(path) << text;
  chmod(path.c_str(), mode);
}

// A CA, a server certificate for localhost/127.0.0.1 and a client
// certificate signed by it, and a second CA with its own client
// certificate (that the agent must refuse).
class Certs {
 public:
  absl::Status Make() {
    const std::string d = dir_.path();
    auto run = [&](std::vector<std::string> argv) -> absl::Status {
      CommandResult r = RunCommand(argv, "", absl::Seconds(60));
      if (r.exit_code != 0) {
        return absl::InternalError(
            absl::StrCat(argv[0], " ", argv[1], ": ", r.err));
      }
      return absl::OkStatus();
    };
    auto key = [&](const std::string& name) {
      return run({"openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                  "ec_paramgen_curve:P-256", "-out", d + "/" + name + ".key"});
    };
    auto ca = [&](const std::string& name) -> absl::Status {
      if (auto s = key(name); !s.ok()) return s;
      return run({"openssl", "req", "-x509", "-new", "-key",
                  d + "/" + name + ".key", "-out", d + "/" + name + ".crt",
                  "-days", "1", "-subj", "/CN=" + name});
    };
    auto leaf = [&](const std::string& name, const std::string& signer,
                    const std::string& ext) -> absl::Status {
      if (auto s = key(name); !s.ok()) return s;
      if (auto s =
              run({"openssl", "req", "-new", "-key", d + "/" + name + ".key",
                   "-out", d + "/" + name + ".csr", "-subj", "/CN=" + name});
          !s.ok()) {
        return s;
      }
      WriteFile(d + "/" + name + ".ext", ext);
      return run({"openssl", "x509", "-req", "-in", d + "/" + name + ".csr",
                  "-CA", d + "/" + signer + ".crt", "-CAkey",
                  d + "/" + signer + ".key", "-CAcreateserial", "-out",
                  d + "/" + name + ".crt", "-days", "1", "-extfile",
                  d + "/" + name + ".ext"});
    };
    for (absl::Status s :
         {ca("ca"), ca("other-ca"),
          leaf("server", "ca",
               "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
               "extendedKeyUsage=serverAuth\n"),
          leaf("client", "ca", "extendedKeyUsage=clientAuth\n"),
          leaf("stranger", "other-ca", "extendedKeyUsage=clientAuth\n")}) {
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  }
  std::string Path(const std::string& file) const {
    return dir_.path() + "/" + file;
  }
  std::string Pem(const std::string& file) const {
    return ReadFile(Path(file));
  }

 private:
  TempDir dir_;
};

std::vector<std::string> TlsServerFlags(const Certs& certs, bool mutual) {
  std::vector<std::string> flags = {"--tls-cert=" + certs.Path("server.crt"),
                                    "--tls-key=" + certs.Path("server.key")};
  if (mutual) flags.push_back("--tls-client-ca=" + certs.Path("ca.crt"));
  return flags;
}

// sockctl with extra environment (e.g. SOCKAGENT_TOKEN=...).
CommandResult RunSockctlEnv(const std::vector<std::string>& env,
                            const std::string& address,
                            const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"env"};
  argv.insert(argv.end(), env.begin(), env.end());
  argv.insert(argv.end(), {SOCKCTL_PATH, "--agent", address});
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv, "", absl::Seconds(60));
}

// Waits until the agent's stderr so far contains `text`; returns it all.
std::string WaitForLog(AgentProcess& agent, const std::string& text) {
  std::string log;
  WaitFor(
      [&] {
        log += agent.Stderr();
        return log.find(text) != std::string::npos;
      },
      absl::Seconds(10));
  return log;
}

// ---------------------------------------------------------------------------
// Bearer tokens.

class TokenAgent : public ::testing::Test {
 protected:
  void SetUp() override {
    token_file_ = dir_.path() + "/token";
    WriteFile(token_file_, std::string("  ") + kToken + "\n");
    // Every refusal logged (no rate limit), so tests can look for each.
    auto agent = AgentProcess::Start(
        {"--token-file=" + token_file_, "--log-refusal-interval=1ns"});
    ASSERT_TRUE(agent.ok()) << agent.status();
    agent_ = *std::move(agent);
  }
  TempDir dir_;
  std::string token_file_;
  std::unique_ptr<AgentProcess> agent_;
};

TEST_F(TokenAgent, SockctlWithoutTokenIsUnauthenticated) {
  CommandResult r = RunSockctl(agent_->address(), {"hostname"});
  EXPECT_EQ(r.exit_code, kExitUnauthenticated) << r.err;
  EXPECT_THAT(r.err, HasSubstr("UNAUTHENTICATED: missing bearer token"));
  EXPECT_EQ(r.out, "");
}

TEST_F(TokenAgent, SockctlWithWrongTokenIsUnauthenticatedAndLogged) {
  CommandResult r =
      RunSockctlEnv({"SOCKAGENT_TOKEN=not-the-token"}, agent_->address(),
                    {"server", "start", "--echo"});
  EXPECT_EQ(r.exit_code, kExitUnauthenticated) << r.err;
  EXPECT_THAT(r.err, HasSubstr("UNAUTHENTICATED: wrong bearer token"));
  const std::string log = WaitForLog(*agent_, "event=auth_failure");
  EXPECT_THAT(log, HasSubstr("level=warn event=auth_failure "
                             "method=/sockagent.v1.SocketAgent/StartServer "
                             "peer=ipv4:127.0.0.1:"));
  EXPECT_THAT(log,
              HasSubstr("code=UNAUTHENTICATED msg=\"wrong bearer token\""));
  // No partial effect: nothing was started.
  r = RunSockctlEnv({std::string("SOCKAGENT_TOKEN=") + kToken},
                    agent_->address(), {"server", "list", "-q", "--all"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "");
}

TEST_F(TokenAgent, SockctlWithRightTokenWorks) {
  CommandResult r =
      RunSockctlEnv({std::string("SOCKAGENT_TOKEN=") + kToken},
                    agent_->address(), {"server", "start", "-q", "--echo"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  r = RunSockctl(agent_->address(),
                 {"--token-file", token_file_, "server", "list", "-q"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("srv-"));
  // Health stays open: probes need no secret.
  r = RunSockctl(agent_->address(), {"health"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("SERVING"));
}

TEST_F(TokenAgent, RawClientTokenVariants) {
  auto stub = v1::SocketAgent::NewStub(ChannelTo(agent_->address()));
  struct Case {
    std::string authorization;  // "" = no metadata.
    grpc::StatusCode code;
    std::string message;
  };
  const std::string token = kToken;
  const std::vector<Case> cases = {
      {"", grpc::StatusCode::UNAUTHENTICATED, "missing bearer token"},
      {"Bearer wrong", grpc::StatusCode::UNAUTHENTICATED, "wrong bearer token"},
      {"Bearer " + token.substr(0, token.size() - 1),
       grpc::StatusCode::UNAUTHENTICATED, "wrong bearer token"},
      {"Bearer " + token + "x", grpc::StatusCode::UNAUTHENTICATED,
       "wrong bearer token"},
      {"Bearer ", grpc::StatusCode::UNAUTHENTICATED, "wrong bearer token"},
      {"Basic " + token, grpc::StatusCode::UNAUTHENTICATED,
       "malformed authorization"},
      {token, grpc::StatusCode::UNAUTHENTICATED, "malformed authorization"},
      {"Bearer " + token, grpc::StatusCode::OK, ""},
  };
  for (const Case& c : cases) {
    auto context = ContextWithDeadline();
    if (!c.authorization.empty()) {
      context->AddMetadata("authorization", c.authorization);
    }
    v1::HostInfo info;
    grpc::Status status =
        stub->GetHostInfo(context.get(), v1::GetHostInfoRequest(), &info);
    EXPECT_EQ(status.error_code(), c.code) << "'" << c.authorization << "'";
    EXPECT_THAT(status.error_message(), HasSubstr(c.message));
    EXPECT_EQ(info.hostname().empty(), c.code != grpc::StatusCode::OK);
  }
}

// Every method of sockagent.v1.SocketAgent, as the agent's reflection
// service describes it: name and whether each side streams.
struct Method {
  std::string name;
  bool client_streaming = false;
  bool server_streaming = false;
};

std::vector<Method> MethodsByReflection(const std::string& address) {
  auto stub =
      grpc::reflection::v1alpha::ServerReflection::NewStub(ChannelTo(address));
  auto context = ContextWithDeadline();
  auto stream = stub->ServerReflectionInfo(context.get());
  grpc::reflection::v1alpha::ServerReflectionRequest request;
  request.set_file_containing_symbol("sockagent.v1.SocketAgent");
  EXPECT_TRUE(stream->Write(request));
  grpc::reflection::v1alpha::ServerReflectionResponse response;
  EXPECT_TRUE(stream->Read(&response));
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
  std::vector<Method> methods;
  for (const std::string& bytes :
       response.file_descriptor_response().file_descriptor_proto()) {
    google::protobuf::FileDescriptorProto file;
    if (!file.ParseFromString(bytes)) continue;
    for (const auto& service : file.service()) {
      if (file.package() + "." + service.name() != "sockagent.v1.SocketAgent") {
        continue;
      }
      for (const auto& m : service.method()) {
        methods.push_back(
            {m.name(), m.client_streaming(), m.server_streaming()});
      }
    }
  }
  return methods;
}

// Calls `method` through the generic API (every kind of RPC is a stream on
// the wire: one request message, half-close, read until the end) and
// returns its status.
grpc::Status CallGeneric(const std::shared_ptr<grpc::Channel>& channel,
                         const std::string& method, const std::string& request,
                         const std::string& authorization) {
  grpc::GenericStub stub(channel);
  grpc::CompletionQueue cq;
  auto context = ContextWithDeadline(std::chrono::seconds(10));
  if (!authorization.empty()) {
    context->AddMetadata("authorization", authorization);
  }
  auto call = stub.PrepareCall(context.get(),
                               "/sockagent.v1.SocketAgent/" + method, &cq);
  void* tag = nullptr;
  bool ok = false;
  auto step = [&](intptr_t id) {
    EXPECT_TRUE(cq.Next(&tag, &ok));
    EXPECT_EQ(reinterpret_cast<intptr_t>(tag), id);
    return ok;
  };
  call->StartCall(reinterpret_cast<void*>(1));
  step(1);
  grpc::Slice slice(request);
  grpc::ByteBuffer buffer(&slice, 1);
  call->Write(buffer, reinterpret_cast<void*>(2));
  step(2);
  call->WritesDone(reinterpret_cast<void*>(3));
  step(3);
  grpc::ByteBuffer response;
  bool got_response = false;
  while (true) {
    call->Read(&response, reinterpret_cast<void*>(4));
    if (!step(4)) break;
    got_response = true;
  }
  grpc::Status status;
  call->Finish(&status, reinterpret_cast<void*>(5));
  step(5);
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  EXPECT_TRUE(!got_response || status.ok())
      << method << " answered before being refused";
  return status;
}

TEST_F(TokenAgent, EveryMethodRefusesMissingAndWrongTokenWithoutEffect) {
  // A peer the OpenClient/Stream requests would dial if they got through.
  // Non-blocking, so that checking "nobody connected" below does not wait.
  const int peer = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  ASSERT_GE(peer, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(peer, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(peer, 16), 0);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(getsockname(peer, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const int peer_port = ntohs(addr.sin_port);

  // Requests that would change something if they were served.
  std::map<std::string, std::string> requests;
  {
    v1::StartServerRequest r;
    r.set_transport(v1::TRANSPORT_TCP);
    r.mutable_bind()->set_host("127.0.0.1");
    r.mutable_bind()->set_port(0);
    requests["StartServer"] = r.SerializeAsString();
    v1::OpenClientRequest o;
    o.mutable_remote()->set_host("127.0.0.1");
    o.mutable_remote()->set_port(peer_port);
    requests["OpenClient"] = o.SerializeAsString();
    v1::StreamRequest s;
    *s.mutable_start()->mutable_open() = o;
    requests["Stream"] = s.SerializeAsString();
  }

  const std::vector<Method> methods = MethodsByReflection(agent_->address());
  std::vector<std::string> names;
  for (const Method& m : methods) names.push_back(m.name);
  // Every method the API has today; a new one is checked automatically.
  for (const char* expected :
       {"StartServer", "StopServer", "ListServers", "OpenClient",
        "ListConnections", "Send", "Receive", "CloseConnection", "Watch",
        "Stream", "Resolve", "GetHostInfo"}) {
    EXPECT_THAT(names, ::testing::Contains(expected));
  }
  bool saw_streams = false;
  auto channel = ChannelTo(agent_->address());
  for (const Method& m : methods) {
    saw_streams |= m.client_streaming || m.server_streaming;
    for (const std::string& authorization :
         {std::string(""), std::string("Bearer wrong-token")}) {
      grpc::Status status =
          CallGeneric(channel, m.name, requests[m.name], authorization);
      EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED)
          << m.name << " with '" << authorization
          << "': " << status.error_message();
      EXPECT_THAT(status.error_message(),
                  HasSubstr(authorization.empty() ? "missing bearer token"
                                                  : "wrong bearer token"))
          << m.name;
    }
  }
  EXPECT_TRUE(saw_streams);

  // Nothing happened: no server, no connection, no connect to the peer.
  auto stub = v1::SocketAgent::NewStub(channel);
  auto context = ContextWithDeadline();
  AddBearerToken(context.get(), kToken);
  v1::ListServersRequest list_servers;
  list_servers.set_include_stopped(true);
  v1::ListServersResponse servers;
  ASSERT_TRUE(stub->ListServers(context.get(), list_servers, &servers).ok());
  EXPECT_EQ(servers.servers_size(), 0);
  context = ContextWithDeadline();
  AddBearerToken(context.get(), kToken);
  v1::ListConnectionsRequest list_connections;
  list_connections.set_include_closed(true);
  v1::ListConnectionsResponse connections;
  ASSERT_TRUE(
      stub->ListConnections(context.get(), list_connections, &connections)
          .ok());
  EXPECT_EQ(connections.connections_size(), 0);
  const int accepted = accept(peer, nullptr, nullptr);
  EXPECT_LT(accepted, 0) << "a refused call connected to the peer";
  if (accepted >= 0) close(accepted);
  close(peer);

  // The refusals are logged with their method.
  const std::string log =
      WaitForLog(*agent_, "method=/sockagent.v1.SocketAgent/Stream");
  EXPECT_THAT(log, HasSubstr("method=/sockagent.v1.SocketAgent/Watch"));
}

// ---------------------------------------------------------------------------
// TLS and mutual TLS.

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::Status made = certs_.Make();
    ASSERT_TRUE(made.ok()) << made;
  }
  Certs certs_;
};

TEST_F(TlsTest, SockctlTalksTlsAndExplainsPlaintextMismatch) {
  auto agent = AgentProcess::Start(TlsServerFlags(certs_, /*mutual=*/false));
  ASSERT_TRUE(agent.ok()) << agent.status();
  const std::string address = (*agent)->address();
  CommandResult r = RunSockctl(
      address, {"--tls-ca", certs_.Path("ca.crt"), "server", "start", "-q"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  r = RunSockctl(address,
                 {"--tls-ca", certs_.Path("ca.crt"), "server", "list", "-q"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("srv-"));
  // Plaintext against TLS: said in words.
  r = RunSockctl(address, {"hostname"});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_THAT(r.err, HasSubstr("may require TLS"));
  // An agent certificate we do not trust.
  r = RunSockctl(address,
                 {"--tls-ca", certs_.Path("other-ca.crt"), "hostname"});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_THAT(r.err, HasSubstr("TLS handshake failed: the agent's certificate "
                               "is not trusted"));
  // A name the certificate does not carry.
  r = RunSockctl(address, {"--tls-ca", certs_.Path("ca.crt"),
                           "--tls-server-name", "other.example", "hostname"});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_THAT(r.err, HasSubstr("does not carry the name"));
}

TEST_F(TlsTest, MutualTlsRefusesClientsWithoutTheRightCertificate) {
  auto agent = AgentProcess::Start(TlsServerFlags(certs_, /*mutual=*/true));
  ASSERT_TRUE(agent.ok()) << agent.status();
  const std::string address = (*agent)->address();
  const std::string ca = certs_.Path("ca.crt");

  CommandResult r = RunSockctl(address, {"--tls-ca", ca, "hostname"});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_THAT(r.err, HasSubstr("TLS handshake failed"));
  EXPECT_THAT(r.err, HasSubstr("requires a client certificate"));
  EXPECT_THAT(r.err, HasSubstr("--tls-cert"));

  r = RunSockctl(address,
                 {"--tls-ca", ca, "--tls-cert", certs_.Path("stranger.crt"),
                  "--tls-key", certs_.Path("stranger.key"), "hostname"});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_THAT(r.err, HasSubstr("refused our client certificate"));

  r = RunSockctl(address,
                 {"--tls-ca", ca, "--tls-cert", certs_.Path("client.crt"),
                  "--tls-key", certs_.Path("client.key"), "hostname"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out, "");

  // A raw gRPC client without a certificate fails in the handshake too,
  // and the agent logs it.
  auto stub =
      v1::SocketAgent::NewStub(TlsChannelTo(address, certs_.Pem("ca.crt")));
  auto context = ContextWithDeadline(std::chrono::seconds(5));
  v1::HostInfo info;
  grpc::Status status =
      stub->GetHostInfo(context.get(), v1::GetHostInfoRequest(), &info);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << status.error_message();
  EXPECT_THAT(WaitForLog(**agent, "peer did not return a certificate"),
              HasSubstr("level=warn event=tls_handshake_failure"));

  // With the client certificate: served.
  stub = v1::SocketAgent::NewStub(TlsChannelTo(address, certs_.Pem("ca.crt"),
                                               certs_.Pem("client.crt"),
                                               certs_.Pem("client.key")));
  context = ContextWithDeadline();
  status = stub->GetHostInfo(context.get(), v1::GetHostInfoRequest(), &info);
  EXPECT_TRUE(status.ok()) << status.error_message();

  // The audit line names the verified certificate's subject CN.
  r = RunSockctl(address, {"--tls-ca", ca, "--tls-cert",
                           certs_.Path("client.crt"), "--tls-key",
                           certs_.Path("client.key"), "server", "start", "-q"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(WaitForLog(**agent, "event=audit method=StartServer"),
              HasSubstr("client_cn=client token=none"));
}

TEST_F(TlsTest, InventoryCarriesTlsPerAgent) {
  auto mutual = AgentProcess::Start(TlsServerFlags(certs_, /*mutual=*/true));
  ASSERT_TRUE(mutual.ok()) << mutual.status();
  auto plain = AgentProcess::Start();
  ASSERT_TRUE(plain.ok()) << plain.status();
  // Paths relative to the inventory's directory, which holds the certs.
  const std::string inventory = certs_.Path("inventory");
  WriteFile(inventory, "secure " + (*mutual)->address() +
                           " tls-ca=ca.crt tls-cert=client.crt "
                           "tls-key=client.key\n"
                           "plain " +
                           (*plain)->address() + "\n");
  CommandResult r =
      RunCommand({SOCKCTL_PATH, "--inventory", inventory, "hostname"}, "",
                 absl::Seconds(60));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("secure"));
  EXPECT_THAT(r.out, HasSubstr("plain"));
}

TEST_F(TlsTest, TlsAndTokenTogether) {
  TempDir dir;
  WriteFile(dir.path() + "/token", kToken);
  std::vector<std::string> flags = TlsServerFlags(certs_, /*mutual=*/false);
  flags.push_back("--token-file=" + dir.path() + "/token");
  auto agent = AgentProcess::Start(flags);
  ASSERT_TRUE(agent.ok()) << agent.status();
  CommandResult r = RunSockctl((*agent)->address(),
                               {"--tls-ca", certs_.Path("ca.crt"), "hostname"});
  EXPECT_EQ(r.exit_code, kExitUnauthenticated) << r.err;
  r = RunSockctlEnv({std::string("SOCKAGENT_TOKEN=") + kToken},
                    (*agent)->address(),
                    {"--tls-ca", certs_.Path("ca.crt"), "hostname"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

// ---------------------------------------------------------------------------
// Refusals at start.

CommandResult RunDaemon(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {SOCKAGENTD_PATH};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv, "", absl::Seconds(30));
}

TEST(SecureDefaults, TcpWithoutAuthenticationRefusesToStartSayingWhy) {
  CommandResult r = RunDaemon({"--listen=0.0.0.0:0"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_THAT(r.err, HasSubstr("refusing to listen on 0.0.0.0:0 without "
                               "authentication: it is not a loopback address"));
  EXPECT_THAT(r.err, HasSubstr("--token-file"));
  EXPECT_THAT(r.err, HasSubstr("--tls-cert"));
  EXPECT_THAT(r.err, HasSubstr("--insecure"));

  r = RunDaemon({"--listen=127.0.0.1:0"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("every local user could open sockets"));
}

TEST(SecureDefaults, InsecureServesButWarnsLoudly) {
  auto agent = AgentProcess::Start({"--listen=127.0.0.1:0", "--insecure"});
  ASSERT_TRUE(agent.ok()) << agent.status();
  EXPECT_THAT(WaitForLog(**agent, "event=start"),
              HasSubstr("level=warn event=insecure listen=127.0.0.1:0 "
                        "msg=\"INSECURE: serving without authentication"));
}

TEST(SecureDefaults, BadTokenFilesRefuseToStart) {
  TempDir dir;
  const std::string empty = dir.path() + "/empty";
  WriteFile(empty, " \n");
  CommandResult r =
      RunDaemon({"--listen=127.0.0.1:0", "--token-file=" + empty});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("is empty"));
  r = RunDaemon(
      {"--listen=127.0.0.1:0", "--token-file=" + dir.path() + "/missing"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("No such file or directory"));
  const std::string two = dir.path() + "/two";
  WriteFile(two, "two words\n");
  r = RunDaemon({"--listen=127.0.0.1:0", "--token-file=" + two});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("one word of printable ASCII"));
  r = RunDaemon({"--listen=127.0.0.1:0", "--tls-cert=" + two});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("TLS needs both --tls-cert and --tls-key"));
  r = RunDaemon(
      {"--listen=127.0.0.1:0", "--tls-cert=" + two, "--tls-key=" + two});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("not a PEM file"));
  r = RunDaemon({"--log-level=loud"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("expected debug, info, warn or error"));
}

TEST(SecureDefaults, ReadableTokenFileIsWarnedAbout) {
  TempDir dir;
  const std::string token = dir.path() + "/token";
  WriteFile(token, kToken, 0644);
  auto agent = AgentProcess::Start({"--token-file=" + token});
  ASSERT_TRUE(agent.ok()) << agent.status();
  EXPECT_THAT(WaitForLog(**agent, "event=start"),
              HasSubstr("level=warn event=token_file_readable"));
}

TEST(SecureDefaults, LogLevelErrorHidesAuthFailures) {
  TempDir dir;
  WriteFile(dir.path() + "/token", kToken);
  auto agent = AgentProcess::Start(
      {"--token-file=" + dir.path() + "/token", "--log-level=error"});
  ASSERT_TRUE(agent.ok()) << agent.status();
  CommandResult r = RunSockctl((*agent)->address(), {"hostname"});
  EXPECT_EQ(r.exit_code, kExitUnauthenticated);
  // Stop flushes nothing more: every line is written as it happens.
  ASSERT_TRUE((*agent)->Stop().ok());
  EXPECT_THAT((*agent)->Stderr(), Not(HasSubstr("auth_failure")));
}

// ---------------------------------------------------------------------------
// The default: an owner-only UNIX socket. Another local user (nobody,
// privileges dropped with setpriv) must not drive an agent run by root.

bool CanDropPrivileges() {
  return geteuid() == 0 &&
         RunCommand({"setpriv", "--reuid=65534", "--regid=65534",
                     "--clear-groups", "true"})
                 .exit_code == 0;
}

std::vector<std::string> AsNobody(std::vector<std::string> argv) {
  argv.insert(argv.begin(),
              {"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
               "env", "-u", "XDG_RUNTIME_DIR", "HOME=/"});
  return argv;
}

TEST(SecureDefaults, OtherLocalUserCannotDriveTheDefaultAgent) {
  if (!CanDropPrivileges()) GTEST_SKIP() << "needs root and setpriv";
  const std::string socket_path = "/run/sockagent/sockagentd.sock";
  if (RunCommand({SOCKCTL_PATH, "--timeout", "2s", "health"}).exit_code == 0) {
    GTEST_SKIP() << "an agent already serves on " << socket_path;
  }
  auto agent = AgentProcess::Start({"--listen="});
  ASSERT_TRUE(agent.ok()) << agent.status();
  ASSERT_EQ((*agent)->address(), "unix:" + socket_path);
  struct stat st;
  ASSERT_EQ(stat("/run/sockagent", &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  EXPECT_EQ(st.st_uid, 0u);
  ASSERT_EQ(stat(socket_path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0600u);

  // root, with no --agent at all: the default is this socket.
  CommandResult r = RunCommand({SOCKCTL_PATH, "server", "start", "-q"});
  EXPECT_EQ(r.exit_code, 0) << r.err;

  // nobody, naming the socket: refused by the kernel before any gRPC.
  r = RunCommand(AsNobody({SOCKCTL_PATH, "--agent", "unix:" + socket_path,
                           "server", "start", "-q"}));
  EXPECT_EQ(r.exit_code, 3) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr("Permission denied"));
  r = RunCommand(
      AsNobody({"/usr/bin/python3", "-c",
                "import socket; s=socket.socket(socket.AF_UNIX); s.connect('" +
                    socket_path + "'); print('connected')"}));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("PermissionError"));
  EXPECT_THAT(r.out, Not(HasSubstr("connected")));

  // Still exactly the one server root started.
  r = RunCommand({SOCKCTL_PATH, "server", "list", "-q"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;

  // A second agent on the same default socket refuses instead of taking it.
  CommandResult second = RunDaemon({});
  EXPECT_EQ(second.exit_code, 1);
  EXPECT_THAT(second.err, HasSubstr("another agent already serves"));
}

TEST(SecureDefaults, ControlNobodyCanDriveAnInsecureTcpAgent) {
  // The counter-check of the test above: the same user, binary and call do
  // reach an agent that opted out with --insecure, so the refusal above is
  // the socket's permissions and nothing else.
  if (!CanDropPrivileges()) GTEST_SKIP() << "needs root and setpriv";
  auto agent = AgentProcess::Start({"--listen=127.0.0.1:0", "--insecure"});
  ASSERT_TRUE(agent.ok()) << agent.status();
  CommandResult r = RunCommand(
      AsNobody({SOCKCTL_PATH, "--agent", (*agent)->address(), "hostname"}));
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST(SecureDefaults, NonRootDefaultSocketDirectoryIsChecked) {
  if (!CanDropPrivileges()) GTEST_SKIP() << "needs root and setpriv";
  TempDir runtime;
  chmod(runtime.path().c_str(), 0755);
  const std::string dir = runtime.path() + "/sockagent";
  auto nobody_daemon = [&](std::vector<std::string> extra) {
    std::vector<std::string> argv = {
        "setpriv",        "--reuid=65534", "--regid=65534",
        "--clear-groups", "env",           "XDG_RUNTIME_DIR=" + runtime.path(),
        SOCKAGENTD_PATH};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return argv;
  };
  // Owned by root: nobody's agent refuses to put its socket there.
  ASSERT_EQ(mkdir(dir.c_str(), 0700), 0);
  CommandResult r = RunCommand(nobody_daemon({}));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("belongs to uid 0, not to this user"));
  // Nobody's, but group-writable: refused too.
  ASSERT_EQ(chown(dir.c_str(), 65534, 65534), 0);
  ASSERT_EQ(chmod(dir.c_str(), 0770), 0);
  r = RunCommand(nobody_daemon({}));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("writable by group or others (mode 0770)"));
  // Missing: created 0700 and served; nobody's sockctl finds it by default.
  ASSERT_EQ(rmdir(dir.c_str()), 0);
  ASSERT_EQ(chmod(runtime.path().c_str(), 0777), 0);
  auto child = ChildProcess::Start(nobody_daemon({}));
  ASSERT_TRUE(child.ok()) << child.status();
  auto line = (*child)->ReadLine(absl::Now() + absl::Seconds(30));
  ASSERT_TRUE(line.ok()) << line.status();
  EXPECT_EQ(*line, "sockagentd serving on unix:" + dir + "/sockagentd.sock");
  struct stat st;
  ASSERT_EQ(stat(dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  EXPECT_EQ(st.st_uid, 65534u);
  r = RunCommand({"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                  "env", "XDG_RUNTIME_DIR=" + runtime.path(), SOCKCTL_PATH,
                  "hostname"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  auto stopped = (*child)->Stop(SIGTERM, absl::Now() + absl::Seconds(20));
  ASSERT_TRUE(stopped.ok()) << stopped.status();
  EXPECT_TRUE(WIFEXITED(*stopped) && WEXITSTATUS(*stopped) == 0);
}

}  // namespace
}  // namespace sockagent::testing
