// Small gRPC client helpers for end-to-end tests: a channel to an agent
// address (plaintext or TLS), a context with a deadline, a bearer token.
#ifndef SOCKAGENT_TESTS_SUPPORT_GRPC_CLIENT_H_
#define SOCKAGENT_TESTS_SUPPORT_GRPC_CLIENT_H_

#include <grpcpp/grpcpp.h>
#include <stdlib.h>

#include <chrono>
#include <memory>
#include <string>

namespace sockagent::testing {

// A gRPC C++ client whose channel is idle (no call in progress) polls its
// connection only every few seconds (the "backup poller", 5 s by default),
// so it is slow to answer the GOAWAY and PING of a server shutting down; the
// agent's graceful shutdown then waits out its whole --shutdown-grace.
// Test processes keep idle channels to agents they stop, so they poll often,
// as a busy client would. Set before the first channel starts gRPC.
inline const bool kClientPollsOften =
    setenv("GRPC_CLIENT_CHANNEL_BACKUP_POLL_INTERVAL_MS", "50",
           /*overwrite=*/0) == 0;

inline std::shared_ptr<grpc::Channel> ChannelTo(const std::string& address) {
  return grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
}

// TLS towards an agent serving --tls-cert: `ca_pem` verifies it; with
// `cert_pem`/`key_pem` the client presents a certificate (mutual TLS).
// `server_name` overrides the name checked in the agent's certificate.
inline std::shared_ptr<grpc::Channel> TlsChannelTo(
    const std::string& address, const std::string& ca_pem,
    const std::string& cert_pem = "", const std::string& key_pem = "",
    const std::string& server_name = "localhost") {
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = ca_pem;
  ssl.pem_cert_chain = cert_pem;
  ssl.pem_private_key = key_pem;
  grpc::ChannelArguments args;
  if (!server_name.empty()) args.SetSslTargetNameOverride(server_name);
  return grpc::CreateCustomChannel(address, grpc::SslCredentials(ssl), args);
}

// Adds `authorization: Bearer <token>` as sockctl sends it.
inline void AddBearerToken(grpc::ClientContext* context,
                           const std::string& token) {
  context->AddMetadata("authorization", "Bearer " + token);
}

inline std::unique_ptr<grpc::ClientContext> ContextWithDeadline(
    std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() + timeout);
  return context;
}

}  // namespace sockagent::testing

#endif  // SOCKAGENT_TESTS_SUPPORT_GRPC_CLIENT_H_
