// `sockctl inventory from-kubectl`: an inventory (inventory.h) of the agent
// pods in `kubectl get pods -o json` output, so a DaemonSet's agents
// (deploy/kubernetes/) become a fleet:
//
//   kubectl get pods -l app.kubernetes.io/name=sockagent -o json |
//     sockctl inventory from-kubectl --token-file token > fleet
//
// One line per Running pod: NAME is the pod's node (a DaemonSet has one pod
// per node; a second pod on the same node, e.g. during a rollout, is named
// after the pod itself), characters an inventory name cannot hold become
// '-'; ADDRESS is the pod IP (IPv6 in brackets) and the container port
// named `grpc` (default 7878). Pods that are not Running, or have no IP
// yet, become comment lines saying so; a Running pod that is not Ready is
// listed with a comment. No gRPC here.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace sockctl {

struct KubeInventoryOptions {
  std::string token_file;  // Appended as token-file=PATH when set.
  int default_port = 7878;
  std::string port_name = "grpc";
};

// The inventory text, checked by ParseInventory. INVALID_ARGUMENT when the
// input is not kubectl's pod JSON (saying where), when no pod is Running
// with an IP, or when token_file holds whitespace.
absl::StatusOr<std::string> InventoryFromKubectl(
    absl::string_view json, const KubeInventoryOptions& options);

}  // namespace sockctl
