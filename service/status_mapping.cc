#include "service/status_mapping.h"

#include <algorithm>
#include <chrono>
#include <string>

#include "absl/strings/str_cat.h"

namespace sockagent {

std::string PrintableStatusMessage(absl::string_view message) {
  const bool cut = message.size() > kMaxStatusMessageBytes;
  if (cut) message = message.substr(0, kMaxStatusMessageBytes);
  std::string out;
  out.reserve(message.size() + (cut ? 32 : 0));
  for (const char ch : message) {
    const auto b = static_cast<unsigned char>(ch);
    if (b >= 0x20 && b < 0x7f) {
      out.push_back(ch);
    } else {
      absl::StrAppend(&out, "\\x", absl::Hex(b, absl::kZeroPad2));
    }
  }
  if (cut) out += "... (message cut)";
  return out;
}

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      PrintableStatusMessage(status.message()));
}

absl::Time DeadlineOf(const grpc::ServerContextBase* context) {
  const auto deadline = context->deadline();
  if (deadline == std::chrono::system_clock::time_point::max()) {
    return absl::InfiniteFuture();
  }
  return absl::FromChrono(deadline);
}

absl::Time AnswerDeadline(absl::Time deadline, absl::Time now) {
  if (deadline == absl::InfiniteFuture()) return deadline;
  const absl::Duration left = deadline - now;
  if (left <= absl::ZeroDuration()) return deadline;
  return deadline - std::max(kAnswerMarginMin, left * kAnswerMarginFraction);
}

}  // namespace sockagent
