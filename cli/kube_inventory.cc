#include "cli/kube_inventory.h"

#include <google/protobuf/util/json_util.h>

#include <set>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "cli/inventory.h"
#include "cli/kube.pb.h"

namespace sockctl {
namespace {

namespace kube = ::sockctl::kube;

// `raw` with every character an inventory name cannot hold replaced by '-',
// cut to kMaxAgentName.
std::string InventoryName(absl::string_view raw) {
  std::string name;
  for (char c : raw.substr(0, kMaxAgentName)) {
    const bool ok = absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
                    c == '-' || c == '_' || c == '.';
    name.push_back(ok ? c : '-');
  }
  return name.empty() ? "pod" : name;
}

int AgentPort(const kube::Object& pod, const KubeInventoryOptions& options) {
  int any = 0;
  for (const kube::Container& c : pod.spec().containers()) {
    for (const kube::ContainerPort& p : c.ports()) {
      if (p.name() != options.port_name || p.container_port() <= 0 ||
          p.container_port() > 65535) {
        continue;
      }
      if (c.name() == "sockagentd") return p.container_port();
      if (any == 0) any = p.container_port();
    }
  }
  return any != 0 ? any : options.default_port;
}

bool Ready(const kube::Object& pod) {
  for (const kube::Condition& c : pod.status().conditions()) {
    if (c.type() == "Ready") return c.status() == "True";
  }
  return false;
}

}  // namespace

absl::StatusOr<std::string> InventoryFromKubectl(
    absl::string_view json, const KubeInventoryOptions& options) {
  for (char c : options.token_file) {
    if (absl::ascii_isspace(static_cast<unsigned char>(c))) {
      return absl::InvalidArgumentError(
          "--token-file: an inventory path cannot hold whitespace");
    }
  }
  kube::Object object;
  google::protobuf::util::JsonParseOptions parse;
  parse.ignore_unknown_fields = true;
  const auto status = google::protobuf::util::JsonStringToMessage(
      std::string(json), &object, parse);
  if (!status.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the input is not kubectl's JSON (kubectl get pods -o "
                     "json): ",
                     status.message().as_string()));
  }
  std::vector<const kube::Object*> pods;
  if (object.kind() == "Pod") {
    pods.push_back(&object);
  } else if (object.kind() == "List" || object.kind() == "PodList") {
    for (const kube::Object& item : object.items()) pods.push_back(&item);
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "the input is a '", absl::CHexEscape(object.kind().substr(0, 64)),
        "', not a Pod or a List of pods (kubectl get pods -o json)"));
  }

  std::string out = "# sockctl inventory from-kubectl\n";
  std::string lines;
  std::set<std::string> names;
  size_t listed = 0;
  for (const kube::Object* pod : pods) {
    if (pod->kind() != "Pod" && !pod->kind().empty()) continue;
    const std::string pod_name = InventoryName(pod->metadata().name());
    std::string ip = pod->status().pod_ip();
    if (ip.empty() && pod->status().pod_ips_size() > 0) {
      ip = pod->status().pod_ips(0).ip();
    }
    if (pod->status().phase() != "Running" || ip.empty()) {
      absl::StrAppend(&lines, "# skipped ", pod_name, ": phase ",
                      pod->status().phase().empty()
                          ? "unknown"
                          : InventoryName(pod->status().phase()),
                      ip.empty() ? ", no pod IP" : "", "\n");
      continue;
    }
    for (char c : ip) {
      if (!absl::ascii_isxdigit(static_cast<unsigned char>(c)) && c != '.' &&
          c != ':') {
        return absl::InvalidArgumentError(absl::StrCat(
            "pod ", pod_name, ": podIP '", absl::CHexEscape(ip.substr(0, 64)),
            "' is not an IP address"));
      }
    }
    std::string name = pod->spec().node_name().empty()
                           ? pod_name
                           : InventoryName(pod->spec().node_name());
    if (names.count(name) > 0) name = pod_name;
    for (int n = 2; names.count(name) > 0; ++n) {
      name = absl::StrCat(pod_name.substr(0, kMaxAgentName - 8), "-", n);
    }
    names.insert(name);
    const int port = AgentPort(*pod, options);
    const std::string address = absl::StrContains(ip, ':')
                                    ? absl::StrCat("[", ip, "]:", port)
                                    : absl::StrCat(ip, ":", port);
    absl::StrAppend(&lines, name, " ", address);
    if (!options.token_file.empty()) {
      absl::StrAppend(&lines, " token-file=", options.token_file);
    }
    if (!Ready(*pod))
      absl::StrAppend(&lines, "  # pod ", pod_name, " not Ready");
    lines.push_back('\n');
    ++listed;
  }
  if (listed == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("no Running pod with an IP among the ", pods.size(),
                     " in the input\n", lines));
  }
  absl::StrAppend(&out, lines);
  // What we print must read back as an inventory.
  auto parsed = ParseInventory(out);
  if (!parsed.ok()) {
    return absl::InternalError(
        absl::StrCat("the inventory made from kubectl's JSON does not parse: ",
                     parsed.status().message()));
  }
  return out;
}

}  // namespace sockctl
