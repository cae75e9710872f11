// `inventory from-kubectl`: turns `kubectl get pods -o json` (stdin) into
// an inventory file (stdout) — see kube_inventory.h. Talks to no agent.
#include <CLI/CLI.hpp>
#include <iostream>
#include <iterator>
#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "cli/client.h"
#include "cli/commands.h"
#include "cli/kube_inventory.h"

namespace sockctl {
namespace {

// kubectl's JSON for a few thousand pods; more is not what we expect.
constexpr size_t kMaxKubectlJsonBytes = 64 << 20;

int RunFromKubectl(const KubeInventoryOptions& options) {
  std::string json;
  char buf[1 << 16];
  while (std::cin.read(buf, sizeof buf) || std::cin.gcount() > 0) {
    json.append(buf, static_cast<size_t>(std::cin.gcount()));
    if (json.size() > kMaxKubectlJsonBytes) {
      return UsageError(absl::StrCat("stdin holds more than ",
                                     kMaxKubectlJsonBytes >> 20,
                                     " MiB: not kubectl's pod list"));
    }
  }
  if (json.empty()) {
    return UsageError(
        "nothing on stdin: pipe `kubectl get pods -l "
        "app.kubernetes.io/name=sockagent -o json` into it");
  }
  absl::StatusOr<std::string> inventory = InventoryFromKubectl(json, options);
  if (!inventory.ok()) return UsageError(inventory.status().message());
  std::cout << *inventory;
  return std::cout.flush() ? kExitOk : kExitFailure;
}

}  // namespace

void AddInventoryCommands(CLI::App& app, Commands& commands) {
  CLI::App* inventory =
      app.add_subcommand("inventory", "Make inventory files (for --inventory)");
  inventory->require_subcommand(1);
  auto options = std::make_shared<KubeInventoryOptions>();
  CLI::App* from_kubectl = inventory->add_subcommand(
      "from-kubectl",
      "Inventory of the agent pods in `kubectl get pods -o json` (stdin): "
      "one line per Running pod, named after its node, at its pod IP and "
      "the port named grpc");
  from_kubectl
      ->add_option("--token-file", options->token_file,
                   "Add token-file=PATH to every line")
      ->type_name("PATH");
  from_kubectl
      ->add_option("--port", options->default_port,
                   "Port when the pod names none")
      ->check(CLI::Range(1, 65535))
      ->capture_default_str();
  from_kubectl
      ->add_option("--port-name", options->port_name,
                   "Name of the container port the agent serves on")
      ->capture_default_str();
  Command command{from_kubectl, nullptr};
  command.run_local = [options] { return RunFromKubectl(*options); };
  commands.push_back(std::move(command));
}

}  // namespace sockctl
