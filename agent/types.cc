#include "agent/types.h"

#include "absl/strings/str_cat.h"

namespace sockagent {

std::string SocketAddress::ToString() const {
  switch (family) {
    case Family::kIpv6:
      return absl::StrCat("[", ip, "]:", port);
    case Family::kUnix:
      return absl::StrCat("unix:", unix_path);
    case Family::kIpv4:
    case Family::kUnspecified:
      break;
  }
  return absl::StrCat(ip, ":", port);
}

}  // namespace sockagent
