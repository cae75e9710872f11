// Turns the socket verbs' command-line words into API values: labels, bytes
// written with C-style escapes or as hex, ports and service names, HOST:PORT
// addresses, agent addresses and durations. A failure's message says what is
// wrong with the word (and names the flag where one is passed in), ready for
// UsageError(). No gRPC here.
//
//   google::protobuf::Map<std::string, std::string> labels;
//   absl::Status s = ParseLabels({"team=sre", "env=dev"}, &labels);
//   absl::StatusOr<std::string> bytes = UnescapeC("GET / HTTP/1.0\\r\\n");
#pragma once

#include <google/protobuf/map.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "sockagent/v1/agent.pb.h"

namespace sockctl {

// Each word is KEY=VALUE (VALUE may be empty, KEY may not; the first '='
// splits). The same key twice with different values is an error.
absl::Status ParseLabels(
    const std::vector<std::string>& words,
    google::protobuf::Map<std::string, std::string>* labels);

// C-style escapes, as in printf(1): \a \b \e \f \n \r \t \v \\ \' \" \?,
// \xH or \xHH (one or two hex digits, so "\x0aabc" is "\n" then "abc") and
// \N, \NN or \NNN in octal (so \0 is NUL). Any other escape, or a lone
// trailing backslash, is an error rather than a guess.
absl::StatusOr<std::string> UnescapeC(absl::string_view text);

// Hex digits in pairs; whitespace anywhere is ignored ("48 65 6c 6c 6f").
absl::StatusOr<std::string> ParseHex(absl::string_view text);

// Sets `endpoint`'s port when `text` is a decimal number (0..65535), else its
// service name ("www", "ssh"; the agent looks it up).
absl::Status ParsePort(absl::string_view text,
                       sockagent::v1::Endpoint* endpoint);

// Checks an agent address and returns it as a gRPC target. Accepted:
// HOST:PORT, [IPV6]:PORT, unix:PATH and unix-abstract:NAME. Port is 1..65535.
// The error message says what is wrong (without repeating the address), for
// a usage error.
absl::StatusOr<std::string> ParseAgentAddress(absl::string_view address);
// The host of an address ParseAgentAddress accepted, as another host would
// dial it: "10.0.0.1:7878" -> "10.0.0.1", "[::1]:7878" -> "::1". A unix:
// address has no host: FAILED_PRECONDITION.
absl::StatusOr<std::string> AgentHost(absl::string_view address);

// HOST, HOST:PORT, [IPV6]:PORT, [IPV6], :PORT or a bare IPv6 address (more
// than one ':' and no brackets: all host). PORT as in ParsePort. Sets host
// and, when one is given, the port; returns whether a port was given.
absl::StatusOr<bool> ParseHostPort(absl::string_view text,
                                   sockagent::v1::Endpoint* endpoint);

// A proxy's upstream (`--proxy-to`, `--upstream`, a toxiproxy "upstream"):
// HOST:PORT, [IPV6]:PORT, or unix:PATH (then transport UNIX). The port is
// required and not 0.
absl::Status ParseProxyUpstream(absl::string_view text,
                                sockagent::v1::ProxyBehavior* proxy);

// A duration for `flag` such as 5s, 500ms, 1m30s or 0 (none); negative and
// infinite durations are errors.
absl::StatusOr<absl::Duration> ParseDurationFlag(absl::string_view flag,
                                                 absl::string_view text);
// The same into a protobuf field, for an optional flag: an empty `text`
// (the flag was not given) leaves `out` untouched.
absl::Status ParseDurationFlag(absl::string_view flag, absl::string_view text,
                               google::protobuf::Duration* out);

}  // namespace sockctl
