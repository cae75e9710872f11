#include "service/daemon_options.h"

#include <arpa/inet.h>
#include <sys/un.h>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace sockagent {
namespace {

bool IsLoopbackHost(const std::string& host) {
  if (host == "localhost") return true;
  in_addr v4;
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) {
    return (ntohl(v4.s_addr) >> 24) == 127;
  }
  in6_addr v6;
  if (inet_pton(AF_INET6, host.c_str(), &v6) == 1) {
    return IN6_IS_ADDR_LOOPBACK(&v6);
  }
  return false;
}

absl::Status Bad(absl::string_view text, absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("--listen \"", text, "\": ", why));
}

}  // namespace

std::string ListenAddress::GrpcTarget() const { return Display(port); }

std::string ListenAddress::Display(int actual_port) const {
  if (!unix_path.empty()) return absl::StrCat("unix:", unix_path);
  if (absl::StrContains(host, ':')) {
    return absl::StrCat("[", host, "]:", actual_port);
  }
  return absl::StrCat(host, ":", actual_port);
}

absl::StatusOr<ListenAddress> ParseListenAddress(absl::string_view text) {
  ListenAddress out;
  if (absl::StartsWith(text, "unix:")) {
    absl::string_view path = text.substr(5);
    if (!absl::StartsWith(path, "/")) {
      return Bad(text, "a UNIX socket path must be absolute");
    }
    if (path.size() >= sizeof(sockaddr_un::sun_path)) {
      return Bad(text,
                 absl::StrCat("UNIX socket path longer than ",
                              sizeof(sockaddr_un::sun_path) - 1, " bytes"));
    }
    out.unix_path = std::string(path);
    out.loopback = true;
    return out;
  }
  size_t colon = text.rfind(':');
  if (colon == absl::string_view::npos) {
    return Bad(text, "expected HOST:PORT, [IPV6]:PORT or unix:/PATH");
  }
  absl::string_view host = text.substr(0, colon);
  absl::string_view port = text.substr(colon + 1);
  if (absl::StartsWith(host, "[")) {
    if (!absl::EndsWith(host, "]")) return Bad(text, "unbalanced brackets");
    host = host.substr(1, host.size() - 2);
    in6_addr v6;
    if (inet_pton(AF_INET6, std::string(host).c_str(), &v6) != 1) {
      return Bad(text, "not an IPv6 address inside brackets");
    }
  } else if (absl::StrContains(host, ':')) {
    return Bad(text, "put an IPv6 address in brackets: [::1]:7878");
  }
  if (host.empty()) {
    return Bad(text, "empty host (use 0.0.0.0 or [::] for every address)");
  }
  uint32_t port_number = 0;
  if (port.empty() || !absl::SimpleAtoi(port, &port_number) ||
      port_number > 65535) {
    return Bad(text, "port must be a number from 0 to 65535");
  }
  out.host = std::string(host);
  out.port = static_cast<uint16_t>(port_number);
  in_addr v4;
  in6_addr v6;
  if (out.host != "localhost" &&
      inet_pton(AF_INET, out.host.c_str(), &v4) != 1 &&
      inet_pton(AF_INET6, out.host.c_str(), &v6) != 1) {
    return Bad(text, "host must be an IP address or localhost");
  }
  out.loopback = IsLoopbackHost(out.host);
  return out;
}

std::vector<std::string> NormalizeFlagNames(int argc, char** argv) {
  std::vector<std::string> out;
  bool flags_done = false;
  for (int i = 0; i < argc; ++i) {
    std::string arg = argv[i];
    if (i > 0 && !flags_done && absl::StartsWith(arg, "--")) {
      if (arg == "--") {
        flags_done = true;
      } else {
        size_t end = arg.find('=');
        if (end == std::string::npos) end = arg.size();
        for (size_t j = 2; j < end; ++j) {
          if (arg[j] == '-') arg[j] = '_';
        }
      }
    }
    out.push_back(std::move(arg));
  }
  return out;
}

}  // namespace sockagent
