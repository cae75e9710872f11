// Which agents one sockctl invocation talks to when there are many: the
// inventory file (--inventory) that names a fleet, and the bearer tokens
// read from token files. No gRPC here.
//
// Inventory format (also in `sockctl --help`), one agent per line:
//
//   # NAME   ADDRESS                    [token-file=PATH] [tls-...]
//   web-1    10.0.0.11:7878             token-file=/etc/sockagent/web.token
//   web-2    10.0.0.12:7878             tls-ca=ca.pem tls-cert=me.pem
//   tls-key=me.key db_1     [fd00::12]:7878            # comments may end a
//   line too local    unix:/run/sockagent.sock
//
// NAME is a short label for tables and JSON: letters, digits, '-', '_' and
// '.', at most 64, unique in the file. ADDRESS is what --agent takes. A
// token file holds the bearer token sent to that agent as `authorization:
// Bearer <token>` (surrounding whitespace trimmed). tls-ca=, tls-cert=,
// tls-key= and tls-server-name= are sockctl's --tls-* flags for that agent
// (any of them: TLS; they replace the command line's --tls-* for it). A
// relative PATH is relative to the inventory file's directory. '#' at the start
// of a word comments out the rest of the line; blank lines are ignored.
// Anything else is an error naming the line.
//
//   absl::StatusOr<std::vector<InventoryEntry>> agents = ParseInventory(text);
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace sockctl {

inline constexpr size_t kMaxAgentName = 64;
// Inventory and token files are read whole; anything larger is a mistake.
inline constexpr size_t kMaxConfigFileBytes = 1 << 20;

struct InventoryEntry {
  std::string name;
  std::string address;     // Accepted by ParseAgentAddress.
  std::string token_file;  // As written; "" when the line names none.
  // TLS towards this agent (paths as written; any of them set = TLS).
  std::string tls_ca;
  std::string tls_cert;
  std::string tls_key;
  std::string tls_server_name;
  int line = 0;  // 1-based, for messages.
};

// Every agent of the inventory, in file order. An error says "line N: ..."
// (bad name, duplicate name, bad address, unknown or repeated option) or
// that the file names no agent at all.
absl::StatusOr<std::vector<InventoryEntry>> ParseInventory(
    absl::string_view text);

// The words of one line of an inventory or expectation file: split at
// whitespace, without the comment ('#' at the start of a word, to the end of
// the line). Empty for a blank or comment line.
std::vector<absl::string_view> ConfigLineWords(absl::string_view line);

// OK for a NAME as described above; else says what is wrong with it.
absl::Status CheckAgentName(absl::string_view name);

// A token file's contents as the token: surrounding whitespace trimmed, then
// one non-empty word of printable ASCII (what an HTTP header value can
// carry unquoted).
absl::StatusOr<std::string> ParseToken(absl::string_view contents);

// `path` itself when absolute (or when `base_file` has no directory part),
// else `path` inside `base_file`'s directory.
std::string PathRelativeTo(absl::string_view base_file, absl::string_view path);

// The whole file, at most kMaxConfigFileBytes. The error names the path and
// the cause ("no such file or directory").
absl::StatusOr<std::string> ReadConfigFile(const std::string& path);

}  // namespace sockctl
