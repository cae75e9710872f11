#include "cli/client.h"

#include <arpa/inet.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace sockctl {
namespace {

constexpr char kAddressForms[] = "expected HOST:PORT, [IPV6]:PORT or unix:PATH";

absl::Status BadAddress(absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(why, "; ", kAddressForms));
}

bool IsIpv4(const std::string& text) {
  in_addr addr;
  return inet_pton(AF_INET, text.c_str(), &addr) == 1;
}

bool IsIpv6(absl::string_view text) {
  // A link-local address may carry a zone: fe80::1%eth0.
  const size_t percent = text.find('%');
  if (percent != absl::string_view::npos) {
    if (percent + 1 == text.size()) return false;
    text = text.substr(0, percent);
  }
  in6_addr addr;
  return inet_pton(AF_INET6, std::string(text).c_str(), &addr) == 1;
}

// A DNS name (RFC 1035): at most 253 characters, labels of 1..63.
bool IsHostName(absl::string_view host) {
  if (host.size() > 253) return false;
  size_t label = 0;
  for (char c : host) {
    if (c == '.') {
      label = 0;
      continue;
    }
    if (!absl::ascii_isalnum(c) && c != '-' && c != '_') return false;
    if (++label > 63) return false;
  }
  return true;
}

}  // namespace

absl::StatusOr<std::string> ParseAgentAddress(absl::string_view address) {
  for (absl::string_view scheme :
       {absl::string_view("unix:"), absl::string_view("unix-abstract:")}) {
    if (absl::StartsWith(address, scheme)) {
      if (address.size() == scheme.size()) {
        return BadAddress("empty socket path");
      }
      return std::string(address);
    }
  }
  if (address.empty()) return BadAddress("empty address");

  absl::string_view host;
  absl::string_view port;
  if (address.front() == '[') {
    const size_t close = address.find(']');
    if (close == absl::string_view::npos) {
      return BadAddress("missing ']'");
    }
    host = address.substr(1, close - 1);
    absl::string_view rest = address.substr(close + 1);
    if (rest.empty()) return BadAddress("missing port");
    if (rest.front() != ':') {
      return BadAddress("expected ':' after ']'");
    }
    port = rest.substr(1);
    if (host.empty()) return BadAddress("empty host");
    if (!IsIpv6(host)) {
      return BadAddress("not an IPv6 address inside brackets");
    }
  } else {
    const size_t colon = address.rfind(':');
    if (colon == absl::string_view::npos) {
      return BadAddress("missing port");
    }
    host = address.substr(0, colon);
    port = address.substr(colon + 1);
    if (host.empty()) return BadAddress("empty host");
    if (host.find(':') != absl::string_view::npos) {
      return BadAddress("an IPv6 address needs brackets, e.g. [::1]:7878");
    }
    if (!IsHostName(host)) {
      return BadAddress(
          "not a host name (letters, digits, '-', '.'; at most 253 "
          "characters, 63 between dots)");
    }
    const bool looks_numeric =
        host.find_first_not_of("0123456789.") == absl::string_view::npos;
    if (looks_numeric && !IsIpv4(std::string(host))) {
      return BadAddress("not a valid IPv4 address");
    }
  }

  if (port.empty()) return BadAddress("missing port");
  uint32_t port_number = 0;
  if (port.find_first_not_of("0123456789") != absl::string_view::npos ||
      port.size() > 5 || !absl::SimpleAtoi(port, &port_number) ||
      port_number < 1 || port_number > 65535) {
    return BadAddress(
        absl::StrCat("port '", port, "' is not a number in 1..65535"));
  }
  return std::string(address);
}

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

int AgentClient::Fail(const grpc::Status& status) const {
  const grpc::StatusCode code = status.error_code();
  const bool transport_failure = code == grpc::StatusCode::UNAVAILABLE ||
                                 code == grpc::StatusCode::DEADLINE_EXCEEDED;
  // A server-side UNAVAILABLE (e.g. a temporary resolver failure) arrives on
  // a READY channel; a refused or unreachable agent leaves it not READY.
  if (transport_failure &&
      channel_->GetState(/*try_to_connect=*/false) != GRPC_CHANNEL_READY) {
    std::fprintf(stderr, "sockctl: cannot reach agent at %s: %s\n",
                 options_.agent.c_str(), status.error_message().c_str());
    return kExitUnreachable;
  }
  // grpc::StatusCode and absl::StatusCode share their numbers.
  const std::string name =
      absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
  if (status.error_message().empty()) {
    std::fprintf(stderr, "sockctl: %s\n", name.c_str());
  } else {
    std::fprintf(stderr, "sockctl: %s: %s\n", name.c_str(),
                 status.error_message().c_str());
  }
  return kExitRpcBase + static_cast<int>(code);
}

}  // namespace sockctl
