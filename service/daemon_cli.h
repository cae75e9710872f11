// The daemon's command line before Abseil parses it: flag-name spelling,
// flag files, -h/--help and --version. Abseil's own help lists flags by
// source file and drowns ours in its own; ours lists the agent's flags
// grouped by what they are for, with their defaults.
#ifndef SOCKAGENT_SERVICE_DAEMON_CLI_H_
#define SOCKAGENT_SERVICE_DAEMON_CLI_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace sockagent {

// argv with every flag file expanded in place and every flag name spelled
// with underscores, so `--log-level=debug` works on the command line and in
// a file alike. A flag file (`--flagfile=F` or `--flagfile F`) holds one flag
// per line; blank lines and lines starting with `#` are skipped; files may
// name further flag files (at most 8 deep). `-h` becomes `--help`.
// INVALID_ARGUMENT naming the file when one cannot be read.
absl::StatusOr<std::vector<std::string>> PrepareDaemonArgs(
    const std::vector<std::string>& argv);

// "sockagentd 0.1.0 (git 1a2b3c4)" (the commit when built from a checkout).
std::string DaemonVersionLine();

// When `args` ask for --help/--helpfull/--version, what to print on stdout;
// nullopt otherwise. Help lists every flag the daemon defines (service/),
// grouped (listening and access, limits, policy, logging, lifecycle), with
// its default and text.
std::optional<std::string> HelpOrVersionText(
    const std::vector<std::string>& args);

}  // namespace sockagent

#endif  // SOCKAGENT_SERVICE_DAEMON_CLI_H_
