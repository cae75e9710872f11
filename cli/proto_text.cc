#include "cli/proto_text.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace sockctl {

using sockagent::v1::Behavior;
using sockagent::v1::Connection;
using sockagent::v1::ConnectionState;
using sockagent::v1::Family;
using sockagent::v1::ServerState;
using sockagent::v1::SocketAddress;
using sockagent::v1::SocketType;
using sockagent::v1::Transport;

namespace {

// The words of ConnectionStateName / ParseConnectionState, one table both
// ways.
constexpr std::pair<ConnectionState, const char*> kConnectionStates[] = {
    {sockagent::v1::CONNECTION_STATE_OPEN, "open"},
    {sockagent::v1::CONNECTION_STATE_PEER_CLOSED, "peer-closed"},
    {sockagent::v1::CONNECTION_STATE_LOCAL_CLOSED, "local-closed"},
    {sockagent::v1::CONNECTION_STATE_CLOSED, "closed"},
};

}  // namespace

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

void ToProto(absl::Duration d, google::protobuf::Duration* out) {
  const int64_t seconds = absl::IDivDuration(d, absl::Seconds(1), &d);
  out->set_seconds(seconds);
  out->set_nanos(static_cast<int32_t>(absl::ToInt64Nanoseconds(d)));
}

std::string FormatAddress(const SocketAddress& address) {
  if (address.family() == sockagent::v1::FAMILY_UNIX) {
    return absl::StrCat("unix:", address.unix_path().empty()
                                     ? "(unnamed)"
                                     : address.unix_path());
  }
  if (address.ip().empty()) return "";
  if (address.family() == sockagent::v1::FAMILY_IPV6 ||
      address.ip().find(':') != std::string::npos) {
    return absl::StrCat("[", address.ip(), "]:", address.port());
  }
  return absl::StrCat(address.ip(), ":", address.port());
}

std::string FormatAddresses(
    const google::protobuf::RepeatedPtrField<SocketAddress>& addresses) {
  return absl::StrJoin(addresses, ",",
                       [](std::string* out, const SocketAddress& a) {
                         absl::StrAppend(out, FormatAddress(a));
                       });
}

std::string TransportName(Transport transport) {
  switch (transport) {
    case sockagent::v1::TRANSPORT_UNSPECIFIED:  // TCP where one is required.
    case sockagent::v1::TRANSPORT_TCP:
      return "tcp";
    case sockagent::v1::TRANSPORT_UDP:
      return "udp";
    case sockagent::v1::TRANSPORT_UNIX:
      return "unix";
    default:
      return absl::StrCat("transport-", static_cast<int>(transport));
  }
}

std::string BehaviorName(const Behavior& behavior) {
  switch (behavior.kind_case()) {
    case Behavior::kEcho:
      return "echo";
    case Behavior::kDiscard:
      return "discard";
    case Behavior::kGreeting:
      return behavior.greeting().close_after() ? "greeting+close" : "greeting";
    case Behavior::kHold:
    case Behavior::KIND_NOT_SET:  // Unset means hold.
      return "hold";
    case Behavior::kProxy: {
      const sockagent::v1::Endpoint& up = behavior.proxy().upstream();
      if (!up.unix_path().empty()) {
        return absl::StrCat("proxy>unix:", up.unix_path());
      }
      const std::string port =
          up.port_spec_case() == sockagent::v1::Endpoint::kService
              ? up.service()
              : absl::StrCat(up.port());
      return absl::StrCat("proxy>",
                          absl::StrContains(up.host(), ':')
                              ? absl::StrCat("[", up.host(), "]")
                              : up.host(),
                          ":", port);
    }
  }
  return "unknown";
}

std::string ServerStateName(ServerState state) {
  switch (state) {
    case sockagent::v1::SERVER_STATE_LISTENING:
      return "listening";
    case sockagent::v1::SERVER_STATE_STOPPED:
      return "stopped";
    default:
      return absl::StrCat("state-", static_cast<int>(state));
  }
}

std::string ConnectionStateName(ConnectionState state) {
  for (const auto& [value, name] : kConnectionStates) {
    if (value == state) return name;
  }
  return absl::StrCat("state-", static_cast<int>(state));
}

std::optional<ConnectionState> ParseConnectionState(const std::string& name) {
  for (const auto& [value, word] : kConnectionStates) {
    if (name == word) return value;
  }
  return std::nullopt;
}

std::string OriginText(const Connection& connection) {
  // A proxied half names the other half of its pair.
  if (!connection.peer_connection_id().empty()) {
    Connection half;
    half.set_origin(connection.origin());
    half.set_server_id(connection.server_id());
    return absl::StrCat(OriginText(half), ", peer ",
                        connection.peer_connection_id());
  }
  switch (connection.origin()) {
    case sockagent::v1::ORIGIN_OPENED:
      return "opened";
    case sockagent::v1::ORIGIN_ACCEPTED:
      return absl::StrCat("accepted by ", connection.server_id());
    case sockagent::v1::ORIGIN_UDP_PEER:
      return absl::StrCat("udp peer of ", connection.server_id());
    case sockagent::v1::ORIGIN_PROXY_UPSTREAM:
      return absl::StrCat("proxy upstream of ", connection.server_id());
    case sockagent::v1::ORIGIN_UNSPECIFIED:
      return "";
    default:
      return absl::StrCat("origin-", static_cast<int>(connection.origin()));
  }
}

std::string CloseReasonText(const Connection& connection) {
  return CloseReasonText(connection.close_reason(), connection.close_detail());
}

std::string CloseReasonText(sockagent::v1::CloseReason reason,
                            const std::string& detail) {
  switch (reason) {
    case sockagent::v1::CLOSE_REASON_UNSPECIFIED:
      return "";
    case sockagent::v1::CLOSE_REASON_LOCAL_CLOSE:
      return "local close";
    case sockagent::v1::CLOSE_REASON_LOCAL_ABORT:
      return "local abort";
    case sockagent::v1::CLOSE_REASON_PEER_CLOSED:
      return "peer closed";
    case sockagent::v1::CLOSE_REASON_PEER_RESET:
      return "peer reset";
    case sockagent::v1::CLOSE_REASON_IDLE_TIMEOUT:
      return "idle timeout";
    case sockagent::v1::CLOSE_REASON_TTL_EXPIRED:
      return "ttl expired";
    case sockagent::v1::CLOSE_REASON_SERVER_STOPPED:
      return "server stopped";
    case sockagent::v1::CLOSE_REASON_STREAM_ENDED:
      return "stream ended";
    case sockagent::v1::CLOSE_REASON_ERROR:
      return detail.empty() ? "error" : absl::StrCat("error: ", detail);
    case sockagent::v1::CLOSE_REASON_AGENT_SHUTDOWN:
      return "agent shutdown";
    default:
      return absl::StrCat("reason-", static_cast<int>(reason));
  }
}

std::string FormatLabels(
    const google::protobuf::Map<std::string, std::string>& labels) {
  // A protobuf map's order is unspecified; people compare sorted lists.
  std::vector<std::pair<std::string, std::string>> sorted(labels.begin(),
                                                          labels.end());
  std::sort(sorted.begin(), sorted.end());
  return absl::StrJoin(sorted, ",", absl::PairFormatter("="));
}

}  // namespace sockctl
