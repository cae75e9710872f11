#include "cli/client.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "proto/local_agent_socket.h"

namespace sockctl {
int UsageError(absl::string_view message) {
  std::fprintf(stderr, "sockctl: %.*s\n", static_cast<int>(message.size()),
               message.data());
  return kExitUsage;
}

std::string DefaultAgent() {
  return absl::StrCat("unix:", sockagent::LocalAgentSocketPath());
}

std::string ExplainConnectFailure(absl::string_view message,
                                  const TlsOptions& tls) {
  const std::string lower = absl::AsciiStrToLower(message);
  auto has = [&](absl::string_view s) { return absl::StrContains(lower, s); };
  const bool closed = has("socket closed") || has("connection reset");
  std::string why;
  if (tls.enabled) {
    if (has("certificate verify failed") || has("certificate_verify_failed")) {
      why =
          "TLS handshake failed: the agent's certificate is not trusted (not "
          "signed by the --tls-ca given, or by a system CA without --tls-ca)";
    } else if (has("is not in peer certificate")) {
      why =
          "TLS handshake failed: the agent's certificate does not carry the "
          "name we expect (the host of --agent, or --tls-server-name)";
    } else if (has("wrong version number") || has("wrong_version_number") ||
               has("packet length") || has("http request")) {
      why = "TLS handshake failed: the agent does not speak TLS (drop --tls-*)";
    } else if (closed || has("alert") || has("handshake")) {
      why = tls.cert.empty()
                ? "TLS handshake failed: the agent closed the connection; it "
                  "requires a client certificate (mutual TLS): pass "
                  "--tls-cert and --tls-key"
                : "TLS handshake failed: the agent refused our client "
                  "certificate (is it signed by the agent's "
                  "--tls-client-ca?)";
    }
  } else if (closed) {
    why =
        "the agent closed the connection at once: it may require TLS (pass "
        "--tls-ca, and --tls-cert/--tls-key for mutual TLS)";
  }
  if (why.empty()) return std::string(message);
  return absl::StrCat(why, " [", message, "]");
}

absl::StatusOr<absl::Duration> ParseTimeout(absl::string_view text) {
  absl::Duration timeout;
  if (!absl::ParseDuration(text, &timeout)) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid --timeout '", text,
                     "': expected a duration such as 5s, 500ms, 1m or 1.5s"));
  }
  if (timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid --timeout '", text, "': must be positive"));
  }
  if (timeout == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid --timeout '", text, "': must be finite"));
  }
  return timeout;
}

AgentClient::AgentClient(GlobalOptions options) : options_(std::move(options)) {
  grpc::ChannelArguments args;
  args.SetUserAgentPrefix("sockctl/" SOCKAGENT_VERSION);
  // The agent bounds its own responses (Limits.max_message_bytes); the
  // client's 4 MiB default would reject a large Receive the agent allows.
  args.SetMaxReceiveMessageSize(-1);
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  if (options_.tls.enabled) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = options_.tls.ca;
    ssl.pem_cert_chain = options_.tls.cert;
    ssl.pem_private_key = options_.tls.key;
    credentials = grpc::SslCredentials(ssl);
    if (!options_.tls.server_name.empty()) {
      args.SetSslTargetNameOverride(options_.tls.server_name);
    }
  } else {
    credentials = grpc::InsecureChannelCredentials();
  }
  channel_ = grpc::CreateCustomChannel(options_.agent, credentials, args);
  agent_ = sockagent::v1::SocketAgent::NewStub(channel_);
  health_ = grpc::health::v1::Health::NewStub(channel_);
  // "/sockagent.v1.SocketAgent/Stream"; RpcMethod keeps the pointer.
  static const std::string* const kStreamMethod = new std::string(absl::StrCat(
      "/", sockagent::v1::SocketAgent::service_full_name(), "/Stream"));
  stream_rpc_ = std::make_unique<grpc::internal::RpcMethod>(
      kStreamMethod->c_str(), grpc::internal::RpcMethod::BIDI_STREAMING,
      channel_);
}

std::unique_ptr<StreamCall> AgentClient::Stream(grpc::ClientContext* ctx) {
  // What the generated stub's Stream() does, with ByteBuffer requests.
  return std::unique_ptr<StreamCall>(
      grpc::internal::ClientReaderWriterFactory<
          grpc::ByteBuffer, sockagent::v1::StreamResponse>::Create(channel_
                                                                       .get(),
                                                                   *stream_rpc_,
                                                                   ctx));
}

std::unique_ptr<grpc::ClientContext> AgentClient::NewContext() const {
  return NewContext(options_.timeout);
}

std::unique_ptr<grpc::ClientContext> AgentClient::NewContext(
    absl::Duration at_least) const {
  auto ctx = std::make_unique<grpc::ClientContext>();
  // No wait_for_ready: a refused or unreachable agent must fail fast rather
  // than wait out the whole deadline.
  ctx->set_deadline(
      std::chrono::system_clock::now() +
      absl::ToChronoNanoseconds(std::max(options_.timeout, at_least)));
  if (!options_.token.empty()) {
    ctx->AddMetadata("authorization", absl::StrCat("Bearer ", options_.token));
  }
  return ctx;
}

std::string CallFailure::Detail() const {
  return unreachable ? absl::StrCat("cannot reach the agent: ", message)
                     : message;
}

CallFailure AgentClient::Describe(const grpc::Status& status) const {
  const grpc::StatusCode code = status.error_code();
  CallFailure failure;
  // grpc::StatusCode and absl::StatusCode share their numbers.
  failure.code = absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
  failure.message = status.error_message();
  const bool transport_failure = code == grpc::StatusCode::UNAVAILABLE ||
                                 code == grpc::StatusCode::DEADLINE_EXCEEDED;
  // A server-side UNAVAILABLE (e.g. a temporary resolver failure) arrives on
  // a READY channel; a refused or unreachable agent leaves it not READY.
  failure.unreachable =
      transport_failure &&
      channel_->GetState(/*try_to_connect=*/false) != GRPC_CHANNEL_READY;
  if (failure.unreachable) {
    failure.message = ExplainConnectFailure(failure.message, options_.tls);
  }
  failure.exit_code = failure.unreachable
                          ? kExitUnreachable
                          : kExitRpcBase + static_cast<int>(code);
  return failure;
}

int AgentClient::Fail(const grpc::Status& status) const {
  const CallFailure failure = Describe(status);
  if (failure.unreachable) {
    std::fprintf(stderr, "sockctl: cannot reach agent at %s: %s\n",
                 options_.agent.c_str(), failure.message.c_str());
  } else if (failure.message.empty()) {
    std::fprintf(stderr, "sockctl: %s\n", failure.code.c_str());
  } else {
    std::fprintf(stderr, "sockctl: %s: %s\n", failure.code.c_str(),
                 failure.message.c_str());
  }
  return failure.exit_code;
}

}  // namespace sockctl
