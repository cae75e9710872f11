#include "cli/args.h"

#include <cstdint>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
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

}  // namespace sockctl
