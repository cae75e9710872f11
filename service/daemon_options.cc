#include "service/daemon_options.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "proto/local_agent_socket.h"

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

std::string DefaultListen() {
  return absl::StrCat("unix:", LocalAgentSocketPath());
}

absl::Status PreparePrivateDir(const std::string& dir) {
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create ", dir, ": ", strerror(errno)));
  }
  struct stat st;
  if (lstat(dir.c_str(), &st) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot inspect ", dir, ": ", strerror(errno)));
  }
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat(dir,
                     " is not a directory (a symbolic link or a file is "
                     "refused): remove it or pass --listen"));
  }
  if (st.st_uid != geteuid()) {
    return absl::FailedPreconditionError(
        absl::StrCat(dir, " belongs to uid ", st.st_uid,
                     ", not to this user (uid ", geteuid(),
                     "): another user could reach the socket; remove it or "
                     "pass --listen"));
  }
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(dir, " is writable by group or others (mode ",
                     absl::StrFormat("%04o", st.st_mode & 07777),
                     "): chmod 0700 it or pass --listen"));
  }
  return absl::OkStatus();
}

absl::Status CheckUnixSocketFree(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(
        absl::StrCat("UNIX socket path too long: ", path));
  }
  memcpy(addr.sun_path, path.data(), path.size());
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::OkStatus();
  const bool live =
      connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  if (live) {
    return absl::FailedPreconditionError(
        absl::StrCat("another agent already serves on unix:", path,
                     "; stop it first or pass another --listen"));
  }
  return absl::OkStatus();
}

absl::StatusOr<int> LockUnixSocketPath(const std::string& path) {
  const std::string lock_path = absl::StrCat(path, ".lock");
  const int fd =
      open(lock_path.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot open the lock file ", lock_path, ": ", strerror(errno),
        errno == ELOOP ? " (it is a symbolic link)" : ""));
  }
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    close(fd);
    if (err == EWOULDBLOCK) {
      return absl::FailedPreconditionError(absl::StrCat(
          "another agent already serves or is starting on unix:", path,
          " (it holds ", lock_path,
          "); stop it first or pass another "
          "--listen"));
    }
    return absl::FailedPreconditionError(
        absl::StrCat("cannot lock ", lock_path, ": ", strerror(err)));
  }
  return fd;
}

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

}  // namespace sockagent
