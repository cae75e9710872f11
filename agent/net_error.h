// Turns Asio/system error codes into absl::Status with messages a user can
// act on: "bind 0.0.0.0:80: permission denied", "connect 127.0.0.1:1:
// connection refused". One mapping from errno (and resolver errors) to
// status codes, used by every part of the engine. Pure functions; any thread.
#ifndef SOCKAGENT_AGENT_NET_ERROR_H_
#define SOCKAGENT_AGENT_NET_ERROR_H_

#include <string>
#include <system_error>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace sockagent {

// The system's words for `ec`, first letter lower-cased: "connection
// refused", "address already in use".
std::string ErrorText(const std::error_code& ec);

// EADDRINUSE -> AlreadyExists, EACCES/EPERM -> PermissionDenied,
// ECONNREFUSED/EHOSTUNREACH/ENETUNREACH -> Unavailable, ETIMEDOUT ->
// DeadlineExceeded, ECONNRESET/EPIPE -> Aborted, EMFILE/ENFILE/ENOBUFS/ENOMEM
// -> ResourceExhausted, EINVAL/EADDRNOTAVAIL/EAFNOSUPPORT/ENAMETOOLONG ->
// InvalidArgument, ENOENT and unknown names -> NotFound, temporary resolver
// failure -> Unavailable; anything else -> Internal.
absl::StatusCode StatusCodeFor(const std::error_code& ec);

// "<what>: <ErrorText(ec)>" with StatusCodeFor(ec).
absl::Status ErrorStatus(absl::string_view what, const std::error_code& ec);

// True for the errors that mean the peer reset or vanished mid-stream.
bool IsResetError(const std::error_code& ec);

// True for EAGAIN/EWOULDBLOCK (non-blocking call found nothing to do).
bool IsWouldBlock(const std::error_code& ec);

}  // namespace sockagent

#endif  // SOCKAGENT_AGENT_NET_ERROR_H_
