// The operator's policy on top of the engine's limits: which ports and
// addresses servers may bind, which destinations clients may dial, which
// UNIX paths either may use. Parsed from the daemon's --allow-* flags; each
// refusal is PermissionDenied naming the address and the flag, e.g.
//   destination 10.1.2.3:22 is not allowed by --allow-dest
//
// Every list that is not set (nullopt) allows everything: that is the
// default, today's behaviour. An empty list (flag value "none") allows
// nothing.
//
//   Policy p;
//   p.destinations = *ParseDestinationRules("127.0.0.0/8,[::1/128]:80-90");
//   p.CheckDestination("10.1.2.3", 22);  // PermissionDenied.
//
// Checks run on resolved, numeric addresses (the engine calls them after
// name resolution), so a name that resolves to a forbidden address is
// refused too. IPv4-mapped IPv6 addresses (::ffff:10.0.0.1) are checked as
// the IPv4 address they reach. Pure value type; any thread. No Asio.
#ifndef SOCKAGENT_AGENT_POLICY_H_
#define SOCKAGENT_AGENT_POLICY_H_

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace sockagent {

// Inclusive.
struct PortRange {
  uint16_t first = 0;
  uint16_t last = 65535;
  bool Contains(uint16_t port) const { return first <= port && port <= last; }
};

// An address prefix (CIDR): 10.0.0.0/8, ::1/128; a bare address means the
// full length (/32 or /128).
struct IpPrefix {
  bool v6 = false;
  std::array<uint8_t, 16> bytes{};  // IPv4 uses the first 4.
  int length = 0;
  std::string text;  // As written, for messages.
};

// A destination rule: a prefix and optionally the ports allowed there
// (none: every port).
struct DestinationRule {
  IpPrefix prefix;
  std::optional<PortRange> ports;
};

struct Policy {
  // StartServer: every bound port (after service-name lookup) must be in
  // one of these ranges. Port 0 (the kernel picks a free port) is allowed
  // only if a range contains 0 (the list may say "ephemeral" for 0).
  std::optional<std::vector<PortRange>> bind_ports;
  // StartServer: every bound address must be in one of these. Host ""
  // (every address) binds 0.0.0.0 and ::, which are checked as such.
  std::optional<std::vector<IpPrefix>> bind_hosts;
  // OpenClient (and Stream opens): every address a name resolves to is
  // checked; forbidden ones are skipped, and if none is left the call is
  // PermissionDenied.
  std::optional<std::vector<DestinationRule>> destinations;
  // UNIX servers and clients: the path must start with one of these
  // prefixes ("@" prefixes for abstract names) and have no ".." component.
  std::optional<std::vector<std::string>> unix_path_prefixes;

  // PermissionDenied when `ip` (numeric) or `port` is not allowed by
  // --allow-bind-hosts / --allow-bind-ports.
  absl::Status CheckBind(absl::string_view ip, uint16_t port) const;
  // OpenClient's source (Stream opens too): a source address must be
  // allowed by --allow-bind-hosts and a non-zero source port by
  // --allow-bind-ports; an unset source (the kernel picks) is always fine.
  // `ip` is numeric or empty.
  absl::Status CheckSource(absl::string_view ip, uint16_t port) const;
  // PermissionDenied when not allowed by --allow-dest.
  absl::Status CheckDestination(absl::string_view ip, uint16_t port) const;
  // PermissionDenied when not allowed by --allow-unix-paths. `what` is
  // "bind" or "connect", for the message. Both `path` as the caller wrote
  // it (which must also have no ".." component) and `resolved`, the path the
  // kernel will really use (symlinks resolved; see agent/unix_path.h), must
  // lie under a prefix. For `resolved` a prefix is also tried with its
  // directory resolved (/var/run/sa/ matches /run/sa/x.sock where /var/run
  // links to /run). Abstract names ("@...") are checked as written.
  absl::Status CheckUnixPath(absl::string_view what, absl::string_view path,
                             absl::string_view resolved) const;
  // The path as written only: before touching the filesystem, and for
  // abstract names.
  absl::Status CheckUnixPath(absl::string_view what,
                             absl::string_view path) const {
    return CheckUnixPath(what, path, path);
  }

  // One line for the daemon's start-up log: "bind ports 1024-65535; ..."
  // or "none" when every list is unset.
  std::string Describe() const;
};

// "1024-65535,80,ephemeral": ports or inclusive ranges; "ephemeral" is 0.
// "none": an empty list. InvalidArgument naming the bad item otherwise.
absl::StatusOr<std::vector<PortRange>> ParsePortRanges(absl::string_view text);

// "127.0.0.0/8,::1,10.1.2.3": CIDR prefixes or bare addresses. "none": an
// empty list. Host bits set below the prefix length are InvalidArgument
// (10.1.2.3/8 is a typo for 10.0.0.0/8 or 10.1.2.3/32).
absl::StatusOr<std::vector<IpPrefix>> ParseIpPrefixes(absl::string_view text);

// Comma-separated rules: PREFIX, PREFIX:PORTS for IPv4, [PREFIX]:PORTS for
// IPv6 (a bare IPv6 prefix, without brackets, allows every port); PORTS is
// a port or an inclusive range. "none": an empty list.
//   127.0.0.0/8,::1/128,10.0.0.0/8:443,[fd00::/8]:8000-8100
absl::StatusOr<std::vector<DestinationRule>> ParseDestinationRules(
    absl::string_view text);

// Comma-separated path prefixes: absolute ("/run/sockagent/") or abstract
// ("@sockagent-"). "none": an empty list.
absl::StatusOr<std::vector<std::string>> ParseUnixPathPrefixes(
    absl::string_view text);

// Whether `address` (numeric, IPv4 or IPv6, optional %scope; IPv4-mapped
// IPv6 counts as IPv4) lies in `prefix`. False for text that is no address.
bool PrefixContains(const IpPrefix& prefix, absl::string_view address);

}  // namespace sockagent

#endif  // SOCKAGENT_AGENT_POLICY_H_
