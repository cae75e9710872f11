// absl::Status -> grpc::Status. The codes are numerically identical; the
// message is kept as is, because the engine already phrases it for users.
#ifndef SOCKAGENT_SERVICE_STATUS_MAPPING_H_
#define SOCKAGENT_SERVICE_STATUS_MAPPING_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace sockagent {

grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace sockagent

#endif  // SOCKAGENT_SERVICE_STATUS_MAPPING_H_
