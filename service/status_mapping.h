// absl <-> gRPC at the service's edge. Status: the codes are numerically
// identical; the message is kept as is, because the engine already phrases
// it for users.
#ifndef SOCKAGENT_SERVICE_STATUS_MAPPING_H_
#define SOCKAGENT_SERVICE_STATUS_MAPPING_H_

#include <grpcpp/server_context.h>
#include <grpcpp/support/status.h>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace sockagent {

grpc::Status ToGrpcStatus(const absl::Status& status);

// The call's deadline as absl::Time (InfiniteFuture when the caller set
// none).
absl::Time DeadlineOf(const grpc::ServerContextBase* context);

}  // namespace sockagent

#endif  // SOCKAGENT_SERVICE_STATUS_MAPPING_H_
