// `sockctl proxy import`: a toxiproxy config file into StartServer requests
// (cli/cmd_proxy.cc). Here so tests/cli can check the parsing alone.
//
//   auto requests = ToxiproxyRequests(R"([{"name":"redis", ...}])", {});
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "sockagent/v1/agent.pb.h"

namespace sockctl {

// The StartServer requests (TCP proxies) of toxiproxy config `json`: a JSON
// array of {name, listen, upstream, enabled}; unknown fields (toxics) are
// ignored and disabled proxies left out. Each request carries the labels
// `labels` (KEY=VALUE words) and toxiproxy=NAME. InvalidArgument naming the
// proxy (its position and name) and what is wrong.
absl::StatusOr<std::vector<sockagent::v1::StartServerRequest>>
ToxiproxyRequests(absl::string_view json,
                  const std::vector<std::string>& labels);

}  // namespace sockctl
