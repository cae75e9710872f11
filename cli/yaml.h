// YAML for `-o yaml`: the protobuf JSON sockctl prints anyway, re-emitted in
// YAML block style, so YAML and JSON always hold the same keys and values
// (lowerCamelCase keys, 64-bit integers and bytes as strings, enums by
// name). Object keys keep their order. Strings print plain when YAML would
// read them back as the same string, else double-quoted with JSON escapes
// (valid YAML). No gRPC, no YAML library.
//
//   JsonToYaml(R"({"id":"srv-1","ports":[80,443],"labels":{}})")
//   // id: srv-1
//   // ports:
//   // - 80
//   // - 443
//   // labels: {}
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace sockctl {

// `json` is one JSON value (as protobuf's JSON printer writes it); the
// result ends with a newline. InvalidArgument for malformed JSON; nesting
// deeper than 64 levels is refused.
absl::StatusOr<std::string> JsonToYaml(absl::string_view json);

}  // namespace sockctl
