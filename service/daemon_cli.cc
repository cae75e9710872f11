#include "service/daemon_cli.h"

#include <algorithm>
#include <fstream>
#include <map>
#include <sstream>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/reflection.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"

#ifndef SOCKAGENT_GIT_COMMIT
#define SOCKAGENT_GIT_COMMIT ""
#endif

namespace sockagent {
namespace {

constexpr int kMaxFlagfileDepth = 8;

std::string Underscored(std::string arg) {
  if (!absl::StartsWith(arg, "--") || arg == "--") return arg;
  size_t end = arg.find('=');
  if (end == std::string::npos) end = arg.size();
  for (size_t j = 2; j < end; ++j) {
    if (arg[j] == '-') arg[j] = '_';
  }
  return arg;
}

absl::Status Expand(const std::vector<std::string>& in, int depth,
                    std::vector<std::string>* out) {
  for (size_t i = 0; i < in.size(); ++i) {
    std::string arg = in[i] == "-h" ? "--help" : Underscored(in[i]);
    if (arg == "--") {  // Everything after it is left alone.
      out->insert(out->end(), in.begin() + i, in.end());
      return absl::OkStatus();
    }
    std::string file;
    if (absl::StartsWith(arg, "--flagfile=")) {
      file = arg.substr(sizeof("--flagfile=") - 1);
    } else if (arg == "--flagfile" && i + 1 < in.size()) {
      file = in[++i];
    } else {
      out->push_back(std::move(arg));
      continue;
    }
    if (depth >= kMaxFlagfileDepth) {
      return absl::InvalidArgumentError(
          absl::StrCat("--flagfile ", file, ": flag files nest more than ",
                       kMaxFlagfileDepth, " deep"));
    }
    std::ifstream stream(file);
    if (!stream) {
      return absl::InvalidArgumentError(
          absl::StrCat("--flagfile ", file, ": cannot be read"));
    }
    std::vector<std::string> lines;
    std::string line;
    while (std::getline(stream, line)) {
      absl::string_view text = absl::StripAsciiWhitespace(line);
      if (text.empty() || text[0] == '#') continue;
      lines.emplace_back(text);
    }
    absl::Status s = Expand(lines, depth + 1, out);
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

// Where a flag is listed in --help, by its name.
std::string GroupOf(absl::string_view name) {
  if (absl::StartsWith(name, "allow_") || name == "no_name_lookups") {
    return "3 Policy (unset: allowed; README \"Policy\")";
  }
  if (absl::StartsWith(name, "log_")) return "4 Logging";
  if (absl::StartsWith(name, "metrics_"))
    return "6 Metrics (README \"Metrics\")";
  if (absl::StartsWith(name, "shutdown_") || name == "flagfile" ||
      name == "config") {
    return "5 Lifecycle";
  }
  if (name == "listen" || name == "insecure" ||
      absl::StartsWith(name, "token_") || absl::StartsWith(name, "tls_") ||
      absl::StartsWith(name, "keepalive_") || name == "max_connection_idle" ||
      absl::StrContains(name, "control")) {
    return "1 Listening and access (README \"Security\")";
  }
  return "2 Limits (README \"sockagentd\")";
}

std::string HelpText() {
  std::map<std::string, std::vector<const absl::CommandLineFlag*>> groups;
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    // Ours only: Abseil's and gRPC's own flags are not the agent's business.
    if (!absl::StrContains(flag->Filename(), "service/")) continue;
    groups[GroupOf(name)].push_back(flag);
  }
  std::ostringstream out;
  out << "Usage: sockagentd [flags]\n\n"
         "The sockagent daemon: serves the sockagent.v1.SocketAgent gRPC API\n"
         "(proto/sockagent/v1/agent.proto) that sockctl and other gRPC "
         "clients use\nto drive this host's sockets.\n\n"
         "Flags are --name=value or --name value; dashes and underscores "
         "in names\nare the same. --flagfile=FILE reads flags from FILE, one "
         "per line ('#'\nstarts a comment line).\n";
  for (auto& [group, flags] : groups) {
    std::sort(flags.begin(), flags.end(),
              [](auto* a, auto* b) { return a->Name() < b->Name(); });
    out << "\n" << group.substr(2) << ":\n";
    for (const absl::CommandLineFlag* flag : flags) {
      const std::string name = absl::StrReplaceAll(flag->Name(), {{"_", "-"}});
      std::string def = flag->DefaultValue();
      if (def.empty()) def = "\"\"";
      out << "  --" << name << " (default " << def << ")\n";
      // The help text, wrapped at 76 columns under the flag.
      std::istringstream words(flag->Help());
      std::string word, line;
      while (words >> word) {
        if (!line.empty() && line.size() + 1 + word.size() > 72) {
          out << "      " << line << "\n";
          line.clear();
        }
        line += line.empty() ? word : " " + word;
      }
      if (!line.empty()) out << "      " << line << "\n";
    }
  }
  out << "\n  --help, -h       this text\n"
         "  --version        the version\n";
  return out.str();
}

}  // namespace

absl::StatusOr<std::vector<std::string>> PrepareDaemonArgs(
    const std::vector<std::string>& argv) {
  std::vector<std::string> out;
  if (argv.empty()) return out;
  out.push_back(argv[0]);
  std::vector<std::string> rest(argv.begin() + 1, argv.end());
  absl::Status s = Expand(rest, 0, &out);
  if (!s.ok()) return s;
  return out;
}

std::string DaemonVersionLine() {
  std::string commit = SOCKAGENT_GIT_COMMIT;
  return absl::StrCat(
      "sockagentd ", SOCKAGENT_VERSION,
      commit.empty() ? "" : absl::StrCat(" (git ", commit, ")"));
}

std::optional<std::string> HelpOrVersionText(
    const std::vector<std::string>& args) {
  for (size_t i = 1; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--") break;
    if (a == "--version") return DaemonVersionLine() + "\n";
    if (a == "--help" || a == "--helpfull" || a == "--helpshort" ||
        absl::StartsWith(a, "--helpon") || absl::StartsWith(a, "--helpmatch") ||
        a == "--helppackage") {
      return HelpText();
    }
  }
  return std::nullopt;
}

}  // namespace sockagent
