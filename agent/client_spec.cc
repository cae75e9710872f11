// ValidateClientSpec (agent/client_spec.h).
#include "agent/client_spec.h"

#include <cstdint>
#include <optional>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "agent/address.h"
#include "agent/labels.h"
#include "agent/quote.h"
#include "agent/unix_path.h"

namespace sockagent {
namespace {

absl::Status CheckDuration(absl::Duration d, absl::string_view name) {
  if (d < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(name, " is negative"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateClientSpec(const ClientSpec& spec) {
  if (absl::Status s = CheckLabels(spec.labels, "labels"); !s.ok()) return s;
  for (const auto& [d, name] :
       {std::pair<absl::Duration, absl::string_view>{spec.connect_timeout,
                                                     "connect_timeout"},
        {spec.ttl, "ttl"},
        {spec.idle_timeout, "idle_timeout"},
        {spec.keepalive_idle, "keepalive idle"},
        {spec.keepalive_interval, "keepalive interval"}}) {
    if (absl::Status s = CheckDuration(d, name); !s.ok()) return s;
  }
  if (spec.transport == Transport::kUnix) {
    if (!spec.remote.host.empty() || !spec.remote.port.empty()) {
      return absl::InvalidArgumentError(
          "a UNIX client takes unix_path only, not host or port");
    }
    if (!spec.source.host.empty() || !spec.source.port.empty() ||
        !spec.source.unix_path.empty()) {
      return absl::InvalidArgumentError(
          "a UNIX client cannot bind a source address");
    }
    if (spec.family != Family::kUnspecified && spec.family != Family::kUnix) {
      return absl::InvalidArgumentError(
          "a UNIX client cannot use an IP family");
    }
    if (spec.tcp_nodelay || spec.keepalive) {
      return absl::InvalidArgumentError(
          "tcp_nodelay and keepalive are for TCP clients");
    }
    return CheckUnixPathSyntax(spec.remote.unix_path);
  }
  if (!spec.remote.unix_path.empty() || !spec.source.unix_path.empty()) {
    return absl::InvalidArgumentError("unix_path is for UNIX clients only");
  }
  if (spec.family == Family::kUnix) {
    return absl::InvalidArgumentError("family UNIX needs transport UNIX");
  }
  if (spec.remote.host.empty()) {
    return absl::InvalidArgumentError("remote host is empty");
  }
  absl::StatusOr<std::optional<uint16_t>> port = ParsePort(spec.remote.port);
  if (!port.ok()) return port.status();
  if (port->has_value() && **port == 0) {
    return absl::InvalidArgumentError(
        "remote port 0 is not valid for a client");
  }
  if (spec.transport == Transport::kUdp &&
      (spec.tcp_nodelay || spec.keepalive)) {
    return absl::InvalidArgumentError(
        "tcp_nodelay and keepalive are for TCP clients");
  }
  if (!spec.source.host.empty() && !ParseIpLiteral(spec.source.host)) {
    return absl::InvalidArgumentError(
        absl::StrCat("source host ", QuoteInput(spec.source.host),
                     " must be a numeric address"));
  }
  absl::StatusOr<std::optional<uint16_t>> source_port =
      ParsePort(spec.source.port);
  if (!source_port.ok()) return source_port.status();
  if (!source_port->has_value()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "source port ", QuoteInput(spec.source.port), " must be a number"));
  }
  return absl::OkStatus();
}

}  // namespace sockagent
