// Shell completion generated from the CLI definition itself: the hidden
// verb `sockctl completion bash|zsh` walks the CLI11 app (verbs, nested
// verbs, their options, which options take a value and which take a file)
// and prints a script, so completion never drifts from the parser.
//
//   source <(sockctl completion bash)         # this shell
//   sockctl completion bash > /usr/share/bash-completion/completions/sockctl
//
// The bash script completes verbs at every level (`sockctl ser<TAB>`,
// `sockctl server <TAB>`), the options of the verb typed so far plus the
// global ones (they may follow the verb), skips option values while finding
// the verb (`sockctl --agent h:1 ser<TAB>`), and completes file names after
// options whose value is a FILE or PATH. The zsh script is the same
// function run through zsh's bashcompinit.
#pragma once

#include <string>

namespace CLI {
class App;
}  // namespace CLI

namespace sockctl {

// The completion script for `app` (the root app, every verb added), for
// the program `program`. Hidden verbs (group "") are left out.
std::string BashCompletion(const CLI::App& app, const std::string& program);
std::string ZshCompletion(const CLI::App& app, const std::string& program);

}  // namespace sockctl
