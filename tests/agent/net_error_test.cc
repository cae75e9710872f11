// The errno -> absl::Status mapping (agent/net_error.h), with messages a
// user acts on.
#include "agent/net_error.h"

#include <asio/error.hpp>
#include <cerrno>
#include <system_error>

#include "gtest/gtest.h"

namespace sockagent {
namespace {

TEST(EngineNetError, MapsErrnoToStatus) {
  auto status = [](int e) {
    return ErrorStatus("bind 0.0.0.0:80",
                       std::error_code(e, std::system_category()));
  };
  EXPECT_EQ(status(EACCES).code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(status(EACCES).message(), "bind 0.0.0.0:80: permission denied");
  EXPECT_EQ(status(EADDRINUSE).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(status(ECONNREFUSED).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(status(ETIMEDOUT).code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(status(ECONNRESET).code(), absl::StatusCode::kAborted);
  EXPECT_EQ(status(EMFILE).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(ErrorStatus("resolve x", asio::error::host_not_found).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(
      ErrorStatus("resolve x", asio::error::host_not_found_try_again).code(),
      absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace sockagent
