#include "agent/net_error.h"

#include <asio.hpp>
#include <cerrno>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace sockagent {

std::string ErrorText(const std::error_code& ec) {
  std::string text = ec.message();
  if (!text.empty()) text[0] = absl::ascii_tolower(text[0]);
  return text;
}

absl::StatusCode StatusCodeFor(const std::error_code& ec) {
  if (ec.category() == asio::error::get_netdb_category()) {
    switch (ec.value()) {
      case asio::error::host_not_found:
      case asio::error::no_data:
        return absl::StatusCode::kNotFound;
      case asio::error::host_not_found_try_again:
      case asio::error::no_recovery:
        return absl::StatusCode::kUnavailable;
      default:
        return absl::StatusCode::kInternal;
    }
  }
  if (ec.category() == asio::error::get_addrinfo_category()) {
    switch (ec.value()) {
      case asio::error::service_not_found:
        return absl::StatusCode::kNotFound;
      case asio::error::socket_type_not_supported:
        return absl::StatusCode::kInvalidArgument;
      default:
        return absl::StatusCode::kInternal;
    }
  }
  if (ec.category() == asio::error::get_misc_category()) {
    if (ec == asio::error::eof) return absl::StatusCode::kUnavailable;
    return absl::StatusCode::kInternal;
  }
  // Asio reports errno values in its own system category.
  if (ec.category() != asio::error::get_system_category() &&
      ec.category() != std::system_category() &&
      ec.category() != std::generic_category()) {
    return absl::StatusCode::kInternal;
  }
  switch (ec.value()) {
    case EADDRINUSE:
    case EEXIST:
      return absl::StatusCode::kAlreadyExists;
    case EACCES:
    case EPERM:
      return absl::StatusCode::kPermissionDenied;
    case ECONNREFUSED:
    case EHOSTUNREACH:
    case ENETUNREACH:
    case ENETDOWN:
    case EHOSTDOWN:
      return absl::StatusCode::kUnavailable;
    case ETIMEDOUT:
      return absl::StatusCode::kDeadlineExceeded;
    case ECONNRESET:
    case EPIPE:
    case ECONNABORTED:
      return absl::StatusCode::kAborted;
    case EMFILE:
    case ENFILE:
    case ENOBUFS:
    case ENOMEM:
      return absl::StatusCode::kResourceExhausted;
    case EINVAL:
    case EADDRNOTAVAIL:
    case EAFNOSUPPORT:
    case EPROTONOSUPPORT:
    case ENAMETOOLONG:
    case EMSGSIZE:
    case ENOTDIR:
      return absl::StatusCode::kInvalidArgument;
    case ENOENT:
      return absl::StatusCode::kNotFound;
    case ECANCELED:
      return absl::StatusCode::kCancelled;
    default:
      return absl::StatusCode::kInternal;
  }
}

absl::Status ErrorStatus(absl::string_view what, const std::error_code& ec) {
  return absl::Status(StatusCodeFor(ec),
                      absl::StrCat(what, ": ", ErrorText(ec)));
}

bool IsResetError(const std::error_code& ec) {
  return ec == asio::error::connection_reset ||
         ec == asio::error::broken_pipe ||
         ec == asio::error::connection_aborted;
}

bool IsWouldBlock(const std::error_code& ec) {
  return ec == asio::error::would_block || ec == asio::error::try_again;
}

}  // namespace sockagent
