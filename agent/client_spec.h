// ValidateClientSpec: the checks of a client spec (OpenClient, OpenStream,
// a proxy's upstream dial) that need no socket and no lookup, with
// messages naming the field: durations, labels, the UNIX / IP split, ports
// and the source address. Pure; no lock.
//
//   if (absl::Status s = ValidateClientSpec(spec); !s.ok()) return done(s);
#ifndef SOCKAGENT_AGENT_CLIENT_SPEC_H_
#define SOCKAGENT_AGENT_CLIENT_SPEC_H_

#include "absl/status/status.h"
#include "agent/engine.h"

namespace sockagent {

absl::Status ValidateClientSpec(const ClientSpec& spec);

}  // namespace sockagent

#endif  // SOCKAGENT_AGENT_CLIENT_SPEC_H_
