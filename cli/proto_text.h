// Text for API values that several verbs print: socket families and types
// the way the C and Python socket APIs name them, socket addresses the way
// people write them, the words for transports, states, origins, close
// reasons and behaviours, labels, and protobuf durations. Includes only the
// message header (no gRPC).
#pragma once

#include <google/protobuf/map.h>
#include <google/protobuf/repeated_ptr_field.h>

#include <optional>
#include <string>

#include "absl/time/time.h"
#include "google/protobuf/duration.pb.h"
#include "sockagent/v1/agent.pb.h"

namespace sockctl {

// "AF_INET", "AF_INET6", "AF_UNIX", "AF_UNSPEC".
std::string FamilyName(sockagent::v1::Family family);

// "SOCK_STREAM", "SOCK_DGRAM", "SOCK_RAW", "0" for unspecified.
std::string SocketTypeName(sockagent::v1::SocketType type);

absl::Duration FromProto(const google::protobuf::Duration& d);
void ToProto(absl::Duration d, google::protobuf::Duration* out);

// "127.0.0.1:80", "[::1]:80", "unix:/run/x.sock", "unix:@abstract",
// "unix:(unnamed)"; "" for an unset address (a table prints it as "-").
std::string FormatAddress(const sockagent::v1::SocketAddress& address);
// Comma-joined FormatAddress: a dual-stack server's two addresses.
std::string FormatAddresses(
    const google::protobuf::RepeatedPtrField<sockagent::v1::SocketAddress>&
        addresses);

// "tcp", "udp", "unix".
std::string TransportName(sockagent::v1::Transport transport);

// "hold", "echo", "discard", "greeting", "greeting+close".
std::string BehaviorName(const sockagent::v1::Behavior& behavior);

// "listening", "stopped".
std::string ServerStateName(sockagent::v1::ServerState state);

// "open", "peer-closed", "local-closed", "closed": the words `conn list
// --state` takes, which ParseConnectionState reads back.
std::string ConnectionStateName(sockagent::v1::ConnectionState state);
std::optional<sockagent::v1::ConnectionState> ParseConnectionState(
    const std::string& name);

// "opened", "accepted by srv-1", "udp peer of srv-2".
std::string OriginText(const sockagent::v1::Connection& connection);

// Why a connection closed, in words: "peer reset", "idle timeout", ...;
// "error: <detail>" for CLOSE_REASON_ERROR; "" while open (unspecified).
std::string CloseReasonText(sockagent::v1::CloseReason reason,
                            const std::string& detail);
// The same for a connection's close_reason and close_detail.
std::string CloseReasonText(const sockagent::v1::Connection& connection);

// "k=v,k2=v2", sorted by key; "" when there are none.
std::string FormatLabels(
    const google::protobuf::Map<std::string, std::string>& labels);

}  // namespace sockctl
