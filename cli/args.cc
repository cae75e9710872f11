#include "cli/args.h"

#include <arpa/inet.h>

#include <cstdint>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "cli/proto_text.h"

namespace sockctl {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool IsOctal(char c) { return c >= '0' && c <= '7'; }

}  // namespace

absl::Status ParseLabels(
    const std::vector<std::string>& words,
    google::protobuf::Map<std::string, std::string>* labels) {
  for (const std::string& word : words) {
    const size_t eq = word.find('=');
    if (eq == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          "invalid --label '", word, "': expected KEY=VALUE, e.g. team=sre"));
    }
    if (eq == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid --label '", word, "': empty key"));
    }
    std::string key = word.substr(0, eq);
    std::string value = word.substr(eq + 1);
    auto [it, inserted] = labels->insert({key, value});
    if (!inserted && it->second != value) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--label '", key, "' given twice with different values"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> UnescapeC(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '\\') {
      out.push_back(text[i]);
      continue;
    }
    if (++i == text.size()) {
      return absl::InvalidArgumentError(
          "a trailing '\\' escapes nothing (write '\\\\' for a backslash)");
    }
    const char c = text[i];
    switch (c) {
      case 'a':
        out.push_back('\a');
        break;
      case 'b':
        out.push_back('\b');
        break;
      case 'e':
        out.push_back('\x1b');
        break;
      case 'f':
        out.push_back('\f');
        break;
      case 'n':
        out.push_back('\n');
        break;
      case 'r':
        out.push_back('\r');
        break;
      case 't':
        out.push_back('\t');
        break;
      case 'v':
        out.push_back('\v');
        break;
      case '\\':
      case '\'':
      case '"':
      case '?':
        out.push_back(c);
        break;
      case 'x': {
        int value = 0;
        int digits = 0;
        while (digits < 2 && i + 1 < text.size() &&
               HexValue(text[i + 1]) >= 0) {
          value = value * 16 + HexValue(text[++i]);
          ++digits;
        }
        if (digits == 0) {
          return absl::InvalidArgumentError(
              "'\\x' needs one or two hex digits, e.g. \\x00 or \\x7f");
        }
        out.push_back(static_cast<char>(value));
        break;
      }
      default: {
        if (!IsOctal(c)) {
          return absl::InvalidArgumentError(
              absl::StrCat("unknown escape '\\", std::string(1, c),
                           "' (known: \\n \\r \\t \\0 \\\\ \\xHH \\NNN \\a \\b "
                           "\\e \\f \\v)"));
        }
        int value = c - '0';
        for (int digits = 1;
             digits < 3 && i + 1 < text.size() && IsOctal(text[i + 1]);
             ++digits) {
          value = value * 8 + (text[++i] - '0');
        }
        if (value > 0xff) {
          return absl::InvalidArgumentError(
              "an octal escape is at most \\377 (one byte)");
        }
        out.push_back(static_cast<char>(value));
      }
    }
  }
  return out;
}

absl::StatusOr<std::string> ParseHex(absl::string_view text) {
  std::string out;
  int high = -1;  // The first digit of a pair, while waiting for the second.
  for (char c : text) {
    if (absl::ascii_isspace(static_cast<unsigned char>(c))) continue;
    const int value = HexValue(c);
    if (value < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("'", std::string(1, c), "' is not a hex digit"));
    }
    if (high < 0) {
      high = value;
    } else {
      out.push_back(static_cast<char>(high * 16 + value));
      high = -1;
    }
  }
  if (high >= 0) {
    return absl::InvalidArgumentError(
        "odd number of hex digits: each byte is two digits");
  }
  return out;
}

absl::Status ParsePort(absl::string_view text,
                       sockagent::v1::Endpoint* endpoint) {
  if (text.empty()) {
    return absl::InvalidArgumentError(
        "empty port: expected a number (0..65535) or a service name such as "
        "www");
  }
  if (text.find_first_not_of("0123456789") == absl::string_view::npos) {
    uint32_t port = 0;
    if (text.size() > 5 || !absl::SimpleAtoi(text, &port) || port > 65535) {
      return absl::InvalidArgumentError(
          absl::StrCat("port '", text, "' is not in 0..65535"));
    }
    endpoint->set_port(port);
  } else {
    endpoint->set_service(std::string(text));
  }
  return absl::OkStatus();
}

absl::Status ParseProxyUpstream(absl::string_view text,
                                sockagent::v1::ProxyBehavior* proxy) {
  if (absl::ConsumePrefix(&text, "unix:")) {
    if (text.empty()) {
      return absl::InvalidArgumentError("unix: needs a socket path");
    }
    proxy->set_transport(sockagent::v1::TRANSPORT_UNIX);
    proxy->mutable_upstream()->set_unix_path(std::string(text));
    return absl::OkStatus();
  }
  absl::StatusOr<bool> has_port =
      ParseHostPort(text, proxy->mutable_upstream());
  if (!has_port.ok()) return has_port.status();
  const sockagent::v1::Endpoint& up = proxy->upstream();
  if (!*has_port || up.host().empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "'", text, "': expected HOST:PORT, [IPV6]:PORT or unix:PATH"));
  }
  if (up.port_spec_case() == sockagent::v1::Endpoint::kPort && up.port() == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", text, "': the upstream port must not be 0"));
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> ParseHostPort(absl::string_view text,
                                   sockagent::v1::Endpoint* endpoint) {
  absl::string_view host = text;
  absl::string_view port;
  bool has_port = false;
  if (!text.empty() && text.front() == '[') {
    const size_t close = text.find(']');
    if (close == absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("'", text, "': missing ']' after an IPv6 address"));
    }
    host = text.substr(1, close - 1);
    absl::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') {
        return absl::InvalidArgumentError(
            absl::StrCat("'", text, "': expected ':PORT' after ']'"));
      }
      port = rest.substr(1);
      has_port = true;
    }
  } else {
    const size_t colon = text.find(':');
    // Two or more colons without brackets: an IPv6 address and no port.
    if (colon != absl::string_view::npos &&
        text.find(':', colon + 1) == absl::string_view::npos) {
      host = text.substr(0, colon);
      port = text.substr(colon + 1);
      has_port = true;
    }
  }
  endpoint->set_host(std::string(host));
  if (has_port) {
    if (absl::Status s = ParsePort(port, endpoint); !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("'", text, "': ", s.message()));
    }
  }
  return has_port;
}

absl::StatusOr<absl::Duration> ParseDurationFlag(absl::string_view flag,
                                                 absl::string_view text) {
  absl::Duration d;
  if (!absl::ParseDuration(text, &d)) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid ", flag, " '", text,
                     "': expected a duration such as 5s, 500ms, 1m30s or 0"));
  }
  if (d < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid ", flag, " '", text, "': must not be negative"));
  }
  if (d == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid ", flag, " '", text, "': must be finite"));
  }
  return d;
}

absl::Status ParseDurationFlag(absl::string_view flag, absl::string_view text,
                               google::protobuf::Duration* out) {
  if (text.empty()) return absl::OkStatus();
  absl::StatusOr<absl::Duration> d = ParseDurationFlag(flag, text);
  if (!d.ok()) return d.status();
  ToProto(*d, out);
  return absl::OkStatus();
}

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

absl::StatusOr<std::string> AgentHost(absl::string_view address) {
  if (absl::StartsWith(address, "unix")) {
    return absl::FailedPreconditionError(
        "a unix: address has no host that other agents could dial");
  }
  if (!address.empty() && address.front() == '[') {
    const size_t close = address.find(']');
    if (close != absl::string_view::npos) {
      return std::string(address.substr(1, close - 1));
    }
  }
  const size_t colon = address.rfind(':');
  if (colon == absl::string_view::npos || colon == 0) {
    return absl::InvalidArgumentError("not a HOST:PORT address");
  }
  return std::string(address.substr(0, colon));
}

}  // namespace sockctl
