#include "agent/policy.h"

#include <arpa/inet.h>
#include <limits.h>
#include <stdlib.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace sockagent {

namespace {

struct Ip {
  bool v6 = false;
  std::array<uint8_t, 16> bytes{};
};

// Numeric IPv4 or IPv6 (brackets and %scope allowed); IPv4-mapped IPv6
// becomes IPv4, so ::ffff:10.0.0.1 cannot slip past a rule for 10.0.0.0/8.
std::optional<Ip> ParseIp(absl::string_view text) {
  if (text.size() >= 2 && text.front() == '[' && text.back() == ']') {
    text = text.substr(1, text.size() - 2);
  }
  if (size_t pct = text.find('%'); pct != absl::string_view::npos) {
    text = text.substr(0, pct);
  }
  const std::string s(text);
  Ip ip;
  if (inet_pton(AF_INET, s.c_str(), ip.bytes.data()) == 1) return ip;
  if (inet_pton(AF_INET6, s.c_str(), ip.bytes.data()) != 1) {
    return std::nullopt;
  }
  static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0,    0,
                                          0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(ip.bytes.data(), kMapped, sizeof(kMapped)) == 0) {
    std::memmove(ip.bytes.data(), ip.bytes.data() + 12, 4);
    std::fill(ip.bytes.begin() + 4, ip.bytes.end(), 0);
    return ip;
  }
  ip.v6 = true;
  return ip;
}

bool InPrefix(const IpPrefix& prefix, const Ip& ip) {
  if (prefix.v6 != ip.v6) return false;
  const int full = prefix.length / 8;
  if (std::memcmp(prefix.bytes.data(), ip.bytes.data(), full) != 0) {
    return false;
  }
  const int rest = prefix.length % 8;
  if (rest == 0) return true;
  const uint8_t mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (prefix.bytes[full] & mask) == (ip.bytes[full] & mask);
}

bool IsNone(absl::string_view text) {
  return absl::StripAsciiWhitespace(text) == "none";
}

std::vector<absl::string_view> Items(absl::string_view text) {
  std::vector<absl::string_view> out;
  for (absl::string_view item : absl::StrSplit(text, ',')) {
    item = absl::StripAsciiWhitespace(item);
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

absl::StatusOr<uint16_t> ParseOnePort(absl::string_view text,
                                      absl::string_view item) {
  uint32_t port = 0;
  if (text == "ephemeral") return 0;
  if (text.empty() || text.size() > 5 ||
      !std::all_of(text.begin(), text.end(),
                   [](char c) { return c >= '0' && c <= '9'; }) ||
      !absl::SimpleAtoi(text, &port) || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", item, "': '", text, "' is not a port (0-65535)"));
  }
  return static_cast<uint16_t>(port);
}

absl::StatusOr<PortRange> ParseOneRange(absl::string_view item) {
  std::pair<absl::string_view, absl::string_view> parts =
      absl::StrSplit(item, absl::MaxSplits('-', 1));
  absl::StatusOr<uint16_t> first = ParseOnePort(parts.first, item);
  if (!first.ok()) return first.status();
  if (item.find('-') == absl::string_view::npos)
    return PortRange{*first, *first};
  absl::StatusOr<uint16_t> last = ParseOnePort(parts.second, item);
  if (!last.ok()) return last.status();
  if (*last < *first) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", item, "': the range is empty (first > last)"));
  }
  return PortRange{*first, *last};
}

absl::StatusOr<IpPrefix> ParseOnePrefix(absl::string_view item) {
  std::pair<absl::string_view, absl::string_view> parts =
      absl::StrSplit(item, absl::MaxSplits('/', 1));
  std::optional<Ip> ip = ParseIp(parts.first);
  if (!ip.has_value() || parts.first.find('%') != absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", item, "' is not an address or CIDR prefix"));
  }
  const int max = ip->v6 ? 128 : 32;
  int length = max;
  if (item.find('/') != absl::string_view::npos) {
    if (parts.second.empty() || parts.second.size() > 3 ||
        !std::all_of(parts.second.begin(), parts.second.end(),
                     [](char c) { return c >= '0' && c <= '9'; }) ||
        !absl::SimpleAtoi(parts.second, &length) || length > max) {
      return absl::InvalidArgumentError(
          absl::StrCat("'", item, "': prefix length must be 0-", max));
    }
  }
  IpPrefix prefix;
  prefix.v6 = ip->v6;
  prefix.length = length;
  prefix.text = std::string(item);
  prefix.bytes = ip->bytes;
  // Host bits below the length must be zero: 10.1.2.3/8 is a typo.
  for (int bit = length; bit < max; ++bit) {
    if (prefix.bytes[bit / 8] & (0x80 >> (bit % 8))) {
      return absl::InvalidArgumentError(
          absl::StrCat("'", item, "' has bits set beyond its /", length,
                       " prefix (did you mean ", parts.first, "/", max, "?)"));
    }
  }
  return prefix;
}

std::string HostPort(absl::string_view ip, uint16_t port) {
  if (ip.find(':') != absl::string_view::npos) {
    return absl::StrCat("[", ip, "]:", port);
  }
  return absl::StrCat(ip, ":", port);
}

std::string RangesText(const std::vector<PortRange>& ranges) {
  if (ranges.empty()) return "none";
  return absl::StrJoin(ranges, ",", [](std::string* out, const PortRange& r) {
    if (r.first == r.last) {
      absl::StrAppend(out, r.first);
    } else {
      absl::StrAppend(out, r.first, "-", r.last);
    }
  });
}

std::string PrefixesText(const std::vector<IpPrefix>& prefixes) {
  if (prefixes.empty()) return "none";
  return absl::StrJoin(prefixes, ",", [](std::string* out, const IpPrefix& p) {
    absl::StrAppend(out, p.text);
  });
}

}  // namespace

bool PrefixContains(const IpPrefix& prefix, absl::string_view address) {
  std::optional<Ip> ip = ParseIp(address);
  return ip.has_value() && InPrefix(prefix, *ip);
}

absl::StatusOr<std::vector<PortRange>> ParsePortRanges(absl::string_view text) {
  std::vector<PortRange> out;
  if (IsNone(text)) return out;
  for (absl::string_view item : Items(text)) {
    absl::StatusOr<PortRange> range = ParseOneRange(item);
    if (!range.ok()) return range.status();
    out.push_back(*range);
  }
  if (out.empty()) {
    return absl::InvalidArgumentError(
        "empty list (write 'none' to allow nothing)");
  }
  return out;
}

absl::StatusOr<std::vector<IpPrefix>> ParseIpPrefixes(absl::string_view text) {
  std::vector<IpPrefix> out;
  if (IsNone(text)) return out;
  for (absl::string_view item : Items(text)) {
    absl::StatusOr<IpPrefix> prefix = ParseOnePrefix(item);
    if (!prefix.ok()) return prefix.status();
    out.push_back(*std::move(prefix));
  }
  if (out.empty()) {
    return absl::InvalidArgumentError(
        "empty list (write 'none' to allow nothing)");
  }
  return out;
}

absl::StatusOr<std::vector<DestinationRule>> ParseDestinationRules(
    absl::string_view text) {
  std::vector<DestinationRule> out;
  if (IsNone(text)) return out;
  for (absl::string_view item : Items(text)) {
    absl::string_view prefix_text = item;
    absl::string_view ports_text;
    bool has_ports = false;
    if (item.front() == '[') {
      const size_t close = item.find(']');
      if (close == absl::string_view::npos ||
          (close + 1 < item.size() && item[close + 1] != ':') ||
          close + 2 == item.size()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "'", item, "': write an IPv6 rule with ports as [PREFIX]:PORTS"));
      }
      prefix_text = item.substr(1, close - 1);
      if (close + 1 < item.size()) {
        has_ports = true;
        ports_text = item.substr(close + 2);
      }
    } else if (std::count(item.begin(), item.end(), ':') == 1) {
      // IPv4 with ports; several colons is a bare IPv6 prefix.
      const size_t colon = item.find(':');
      prefix_text = item.substr(0, colon);
      ports_text = item.substr(colon + 1);
      has_ports = true;
    }
    DestinationRule rule;
    absl::StatusOr<IpPrefix> prefix = ParseOnePrefix(prefix_text);
    if (!prefix.ok()) return prefix.status();
    rule.prefix = *std::move(prefix);
    rule.prefix.text = std::string(item);
    if (has_ports) {
      absl::StatusOr<PortRange> ports = ParseOneRange(ports_text);
      if (!ports.ok()) return ports.status();
      rule.ports = *ports;
    }
    out.push_back(std::move(rule));
  }
  if (out.empty()) {
    return absl::InvalidArgumentError(
        "empty list (write 'none' to allow nothing)");
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> ParseUnixPathPrefixes(
    absl::string_view text) {
  std::vector<std::string> out;
  if (IsNone(text)) return out;
  for (absl::string_view item : Items(text)) {
    if (item.front() != '/' && item.front() != '@') {
      return absl::InvalidArgumentError(absl::StrCat(
          "'", item, "': a UNIX path prefix starts with / or @ (abstract)"));
    }
    out.emplace_back(item);
  }
  if (out.empty()) {
    return absl::InvalidArgumentError(
        "empty list (write 'none' to allow nothing)");
  }
  return out;
}

namespace {

// `what` names the address in the message: "bind" or "source".
absl::Status CheckHostIn(const std::optional<std::vector<IpPrefix>>& hosts,
                         absl::string_view what, absl::string_view ip) {
  if (!hosts.has_value()) return absl::OkStatus();
  std::optional<Ip> parsed = ParseIp(ip);
  const bool ok =
      parsed.has_value() &&
      std::any_of(hosts->begin(), hosts->end(),
                  [&](const IpPrefix& p) { return InPrefix(p, *parsed); });
  if (ok) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat(
      what, " address ", ip, " is not allowed by --allow-bind-hosts (allowed: ",
      PrefixesText(*hosts), ")"));
}

absl::Status CheckPortIn(const std::optional<std::vector<PortRange>>& ports,
                         absl::string_view what, uint16_t port) {
  if (!ports.has_value() ||
      std::any_of(ports->begin(), ports->end(),
                  [port](const PortRange& r) { return r.Contains(port); })) {
    return absl::OkStatus();
  }
  return absl::PermissionDeniedError(absl::StrCat(
      what, " port ", port, port == 0 ? " (pick a free port)" : "",
      " is not allowed by --allow-bind-ports (allowed: ", RangesText(*ports),
      ")"));
}

}  // namespace

absl::Status Policy::CheckBind(absl::string_view ip, uint16_t port) const {
  if (absl::Status s = CheckHostIn(bind_hosts, "bind", ip); !s.ok()) return s;
  return CheckPortIn(bind_ports, "bind", port);
}

absl::Status Policy::CheckSource(absl::string_view ip, uint16_t port) const {
  if (!ip.empty()) {
    if (absl::Status s = CheckHostIn(bind_hosts, "source", ip); !s.ok()) {
      return s;
    }
  }
  return port == 0 ? absl::OkStatus() : CheckPortIn(bind_ports, "source", port);
}

absl::Status Policy::CheckDestination(absl::string_view ip,
                                      uint16_t port) const {
  if (!destinations.has_value()) return absl::OkStatus();
  std::optional<Ip> parsed = ParseIp(ip);
  if (parsed.has_value()) {
    for (const DestinationRule& rule : *destinations) {
      if (InPrefix(rule.prefix, *parsed) &&
          (!rule.ports.has_value() || rule.ports->Contains(port))) {
        return absl::OkStatus();
      }
    }
  }
  return absl::PermissionDeniedError(absl::StrCat(
      "destination ", HostPort(ip, port), " is not allowed by --allow-dest"));
}

namespace {

// `prefix` with its directory part resolved by realpath(3), or nullopt
// when it is abstract, already resolved, or its directory does not exist.
std::optional<std::string> ResolvedPrefix(const std::string& prefix) {
  if (prefix.empty() || prefix.front() != '/') return std::nullopt;
  const size_t slash = prefix.rfind('/');
  const std::string dir = prefix.substr(0, slash + 1);
  char real[PATH_MAX];
  if (::realpath(dir.c_str(), real) == nullptr) return std::nullopt;
  std::string out = real;
  if (out != "/") out += '/';
  out += prefix.substr(slash + 1);
  if (out == prefix) return std::nullopt;
  return out;
}

}  // namespace

absl::Status Policy::CheckUnixPath(absl::string_view what,
                                   absl::string_view path,
                                   absl::string_view resolved) const {
  if (!unix_path_prefixes.has_value()) return absl::OkStatus();
  bool dotdot = false;
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part == "..") dotdot = true;
  }
  const bool abstract = !path.empty() && path.front() == '@';
  // The path as written first: a path outside every prefix is refused
  // before the agent looks at the filesystem (no probing what exists).
  const bool written_ok =
      !dotdot &&
      std::any_of(unix_path_prefixes->begin(), unix_path_prefixes->end(),
                  [path](const std::string& prefix) {
                    return absl::StartsWith(path, prefix);
                  });
  // Then where it really leads.
  const bool resolved_ok =
      abstract || resolved == path ||
      std::any_of(unix_path_prefixes->begin(), unix_path_prefixes->end(),
                  [resolved](const std::string& prefix) {
                    if (absl::StartsWith(resolved, prefix)) return true;
                    std::optional<std::string> real = ResolvedPrefix(prefix);
                    return real.has_value() &&
                           absl::StartsWith(resolved, *real);
                  });
  if (!written_ok || !resolved_ok) {
    return absl::PermissionDeniedError(absl::StrCat(
        what, " unix:", path,
        written_ok ? absl::StrCat(" (resolves to ", resolved, ")") : "",
        " is not allowed by --allow-unix-paths",
        dotdot ? " (a path with '..' never is)" : ""));
  }
  return absl::OkStatus();
}

std::string Policy::Describe() const {
  std::vector<std::string> parts;
  if (bind_ports.has_value()) {
    parts.push_back(absl::StrCat("bind ports ", RangesText(*bind_ports)));
  }
  if (bind_hosts.has_value()) {
    parts.push_back(absl::StrCat("bind hosts ", PrefixesText(*bind_hosts)));
  }
  if (destinations.has_value()) {
    std::vector<std::string> rules;
    for (const DestinationRule& r : *destinations)
      rules.push_back(r.prefix.text);
    parts.push_back(absl::StrCat(
        "destinations ", rules.empty() ? "none" : absl::StrJoin(rules, ",")));
  }
  if (unix_path_prefixes.has_value()) {
    parts.push_back(absl::StrCat(
        "unix paths ", unix_path_prefixes->empty()
                           ? "none"
                           : absl::StrJoin(*unix_path_prefixes, ",")));
  }
  if (parts.empty()) return "none";
  return absl::StrJoin(parts, "; ");
}

}  // namespace sockagent
