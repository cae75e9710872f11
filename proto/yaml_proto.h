// YAML onto protobuf messages: protobuf's JSON mapping, read from YAML, with
// the line and column of every mistake. For files people write (the
// daemon's --config, `sockctl apply -f`): the message types are the API's
// own, so a file and the API can never drift. Shared by service/ and cli/,
// which both may depend on proto/; it uses only protobuf reflection and
// yaml-cpp, never gRPC.
//
//   v1::StartServerRequest req;
//   absl::Status s = YamlToMessage("transport: tcp\nbind: {port: 9000}\n"
//                                  "behavior: {echo: {}}\n", &req);
//   // s: "line 2, column 15: bind.port: ..." when something is wrong.
//
// The mapping (what `sockctl -o yaml` prints reads back unchanged):
// - keys: a field's JSON name (lowerCamelCase) or its proto name;
// - enums: the value's name (TRANSPORT_TCP), or the same without the type's
//   prefix in any case (tcp), or its number;
// - integers and floats: YAML numbers or strings holding them (64-bit
//   values print as strings in JSON); booleans: true/false;
// - bytes: base64 (standard or URL-safe), as in JSON;
// - google.protobuf.Duration: "1.5s" as in JSON, and absl's forms ("500ms",
//   "1m30s"); Timestamp: RFC 3339; wrapper types: their plain value;
// - maps: YAML mappings; repeated fields: sequences; null: the default;
// - a oneof takes at most one member; an unknown key is an error naming the
//   known ones (unless `ignore_unknown_fields`).
// Bounded: at most `max_nodes` YAML nodes are visited (YAML aliases can
// make a small file a huge tree) and nesting is at most `max_depth`.
#ifndef SOCKAGENT_PROTO_YAML_PROTO_H_
#define SOCKAGENT_PROTO_YAML_PROTO_H_

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace google::protobuf {
class Message;
}

namespace sockagent {

struct YamlToMessageOptions {
  bool ignore_unknown_fields = false;
  size_t max_nodes = 100000;
  int max_depth = 32;
};

// Parses one YAML document into `message` (cleared first). An empty
// document leaves it empty. INVALID_ARGUMENT "line L, column C: PATH: what"
// (1-based; PATH like "servers[2].bind.port") for every mistake, the first
// one found.
absl::Status YamlToMessage(absl::string_view yaml,
                           google::protobuf::Message* message,
                           const YamlToMessageOptions& options = {});

// "line L, column C: " of each item of the top-level sequence `key` (e.g.
// "servers"), in order, for errors found after parsing (a repeated name);
// empty when there is no such sequence. Bounded like the file it reads.
std::vector<std::string> YamlItemPositions(absl::string_view yaml,
                                           absl::string_view key);

}  // namespace sockagent

#endif  // SOCKAGENT_PROTO_YAML_PROTO_H_
