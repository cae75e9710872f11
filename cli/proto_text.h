// Text for API values that several verbs print: socket families and types
// the way the C and Python socket APIs name them, and protobuf durations.
// Includes only the message header (no gRPC).
#pragma once

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

}  // namespace sockctl
