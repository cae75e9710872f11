// Named servers: the name's syntax and the "same spec" rule that makes
// StartServer with a name idempotent (agent/engine.h, ServerSpec::name).
//
//   if (absl::Status s = CheckServerName(spec.name); !s.ok()) ...
//   std::string diff = SpecDifference(old_requested, old_info, old_greeting,
//                                     new_spec);  // "" when the same
//
// The same spec: the two requests are equal field by field as given (no
// defaults filled in: backlog 0 and backlog 4096 differ, labels and TTL are
// compared as given, the TTL of the running server is not restarted),
// except:
//   * port: a request port "" or "0" equals any port, and a number equal to
//     the port the running server is bound to equals it (so a port-0 server
//     listed and applied again with its real port is the same server);
//   * replace, replace_stale and dry_run are how to start, not what: ignored.
#ifndef SOCKAGENT_AGENT_SERVER_NAME_H_
#define SOCKAGENT_AGENT_SERVER_NAME_H_

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "agent/engine.h"

namespace sockagent {

inline constexpr size_t kMaxServerNameBytes = 63;

// "" (unnamed) or a DNS label (RFC 1123): 1 to 63 of a-z, 0-9 and '-',
// starting and ending with a letter or digit, and not of the form srv-N (it
// would read as an id). InvalidArgument naming `field` otherwise.
absl::Status CheckServerName(absl::string_view name, absl::string_view field);

// How `requested` differs from the running server's spec (`old`, as it was
// requested, its greeting taken out into `old_greeting`; `old_info` for the
// bound port): "" when the same, else "; "-separated items such as
// "bind.port '9000' -> '9001'" or "labels".
std::string SpecDifference(const ServerSpec& old, const ServerInfo& old_info,
                           absl::string_view old_greeting,
                           const ServerSpec& requested);

}  // namespace sockagent

#endif  // SOCKAGENT_AGENT_SERVER_NAME_H_
