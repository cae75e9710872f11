// absl <-> gRPC at the service's edge. Status: the codes are numerically
// identical; the message keeps the engine's words (it phrases them for
// users), made printable and bounded.
#ifndef SOCKAGENT_SERVICE_STATUS_MAPPING_H_
#define SOCKAGENT_SERVICE_STATUS_MAPPING_H_

#include <grpcpp/server_context.h>
#include <grpcpp/support/status.h>

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace sockagent {

// The engine's messages are printable ASCII except where they quote caller
// input; those places use QuoteInput (agent/quote.h). As a net for any that
// do not, the message is passed through PrintableStatusMessage.
grpc::Status ToGrpcStatus(const absl::Status& status);

// `message` with every byte outside printable ASCII written as \xNN and at
// most kMaxStatusMessageBytes of it kept. Status messages end up on
// terminals and in logs: no control byte (NUL, ESC) ever reaches them.
inline constexpr size_t kMaxStatusMessageBytes = 2048;
std::string PrintableStatusMessage(absl::string_view message);

// The call's deadline as absl::Time (InfiniteFuture when the caller set
// none).
absl::Time DeadlineOf(const grpc::ServerContextBase* context);

// When a call that waits (Receive) must answer so that its OK reaches the
// caller before the caller's own timer fires: a safety margin of
// max(kAnswerMarginMin, kAnswerMarginFraction of the time left) before
// `deadline`. Past or too close deadlines give a time <= now (answer at
// once); InfiniteFuture stays infinite. The proto's Receive comment states
// the same margin.
inline constexpr absl::Duration kAnswerMarginMin = absl::Milliseconds(200);
inline constexpr double kAnswerMarginFraction = 0.05;
absl::Time AnswerDeadline(absl::Time deadline, absl::Time now);

}  // namespace sockagent

#endif  // SOCKAGENT_SERVICE_STATUS_MAPPING_H_
