#include "cli/client.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace sockctl {
int UsageError(absl::string_view message) {
  std::fprintf(stderr, "sockctl: %.*s\n", static_cast<int>(message.size()),
               message.data());
  return kExitUsage;
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
  // TODO(security): TLS credentials once the agent serves TLS.
  channel_ = grpc::CreateCustomChannel(
      options_.agent, grpc::InsecureChannelCredentials(), args);
  agent_ = sockagent::v1::SocketAgent::NewStub(channel_);
  health_ = grpc::health::v1::Health::NewStub(channel_);
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
