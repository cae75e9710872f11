#include "cli/proto_text.h"

#include "absl/strings/str_cat.h"

namespace sockctl {

using sockagent::v1::Family;
using sockagent::v1::SocketType;

std::string FamilyName(Family family) {
  switch (family) {
    case sockagent::v1::FAMILY_UNSPECIFIED:
      return "AF_UNSPEC";
    case sockagent::v1::FAMILY_IPV4:
      return "AF_INET";
    case sockagent::v1::FAMILY_IPV6:
      return "AF_INET6";
    case sockagent::v1::FAMILY_UNIX:
      return "AF_UNIX";
    default:
      // A newer agent may send values this CLI does not know yet.
      return absl::StrCat("FAMILY_", static_cast<int>(family));
  }
}

std::string SocketTypeName(SocketType type) {
  switch (type) {
    case sockagent::v1::SOCKET_TYPE_UNSPECIFIED:
      return "0";
    case sockagent::v1::SOCKET_TYPE_STREAM:
      return "SOCK_STREAM";
    case sockagent::v1::SOCKET_TYPE_DGRAM:
      return "SOCK_DGRAM";
    case sockagent::v1::SOCKET_TYPE_RAW:
      return "SOCK_RAW";
    default:
      return absl::StrCat("SOCKET_TYPE_", static_cast<int>(type));
  }
}

absl::Duration FromProto(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

}  // namespace sockctl
