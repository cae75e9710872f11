#include "service/auth.h"

#include <sys/stat.h>

#include <fstream>
#include <iterator>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace sockagent {
namespace {

constexpr absl::string_view kBearer = "Bearer ";

// Equal contents, in time that depends on the lengths only.
bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  volatile unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) {
    const unsigned char other =
        b.empty() ? 0 : static_cast<unsigned char>(b[i % b.size()]);
    diff = diff | (static_cast<unsigned char>(a[i]) ^ other);
  }
  return diff == 0;
}

absl::StatusOr<std::string> ReadSmallFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot read \"", path, "\": ", strerror(errno)));
  }
  std::string content;
  content.resize(kMaxCredentialFileBytes + 1);
  in.read(content.data(), static_cast<std::streamsize>(content.size()));
  content.resize(static_cast<size_t>(in.gcount()));
  if (content.size() > kMaxCredentialFileBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "\"", path, "\" is larger than ", kMaxCredentialFileBytes, " bytes"));
  }
  return content;
}

}  // namespace

absl::Status CheckBearerToken(const grpc::ServerContextBase& context,
                              absl::string_view expected) {
  if (expected.empty()) return absl::OkStatus();
  const auto& metadata = context.client_metadata();
  const auto [first, last] = metadata.equal_range("authorization");
  if (first == last) {
    return absl::UnauthenticatedError(
        "missing bearer token: this agent requires 'authorization: Bearer "
        "<token>' metadata (sockctl: --token-file or $SOCKAGENT_TOKEN)");
  }
  if (std::next(first) != last) {
    return absl::UnauthenticatedError(
        "malformed authorization metadata: given more than once");
  }
  const absl::string_view value(first->second.data(), first->second.size());
  if (!absl::StartsWith(value, kBearer)) {
    return absl::UnauthenticatedError(
        "malformed authorization metadata: expected 'Bearer <token>'");
  }
  if (!ConstantTimeEquals(expected, value.substr(kBearer.size()))) {
    return absl::UnauthenticatedError("wrong bearer token");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> LoadTokenFile(const std::string& path,
                                          bool* loose_permissions) {
  auto content = ReadSmallFile(path);
  if (!content.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--token-file: ", content.status().message()));
  }
  const absl::string_view token = absl::StripAsciiWhitespace(*content);
  if (token.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--token-file \"", path, "\" is empty"));
  }
  for (char c : token) {
    if (c <= ' ' || c > '~') {
      return absl::InvalidArgumentError(
          absl::StrCat("--token-file \"", path,
                       "\": the token must be one word of printable ASCII"));
    }
  }
  if (token.size() < kMinTokenChars) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--token-file \"", path, "\": the token has ", token.size(),
        " characters; at least ", kMinTokenChars,
        " are needed (a short token can be guessed). Make one with: head -c "
        "32 /dev/urandom | base64 > ",
        path, "; chmod 600 ", path));
  }
  struct stat st;
  *loose_permissions =
      stat(path.c_str(), &st) == 0 && (st.st_mode & (S_IRWXG | S_IRWXO)) != 0;
  return std::string(token);
}

absl::StatusOr<std::string> ReadPemFile(absl::string_view flag,
                                        const std::string& path) {
  auto content = ReadSmallFile(path);
  if (!content.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": ", content.status().message()));
  }
  if (!absl::StrContains(*content, "-----BEGIN ")) {
    return absl::InvalidArgumentError(absl::StrCat(
        flag, " \"", path, "\": not a PEM file (no -----BEGIN line)"));
  }
  return content;
}

}  // namespace sockagent
