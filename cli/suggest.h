// "Did you mean ...?" for sockctl: the unknown verb or flag of a command
// line that failed to parse, and the closest known word, like git and
// kubectl. Works on the CLI11 app as defined, so new verbs and flags are
// covered without a list to keep.
#ifndef SOCKAGENT_CLI_SUGGEST_H_
#define SOCKAGENT_CLI_SUGGEST_H_

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace sockctl {

// Edit distance (insertions, deletions, substitutions, adjacent swaps).
size_t EditDistance(absl::string_view a, absl::string_view b);

// The candidate closest to `word` if it is close enough to be a typo
// (distance at most 2, and less than half of `word`; or `word` is a prefix
// of exactly one candidate); "" otherwise.
std::string ClosestWord(absl::string_view word,
                        const std::vector<std::string>& candidates);

// After `app.parse(args)` failed: a one-line explanation naming the first
// word that is neither a verb nor a flag of where it stands, with a
// suggestion when one is close, e.g. "unknown verb 'sever' (did you mean
// 'server'?)" or "server start: unknown flag '--eco' (did you mean
// '--echo'?)". "" when every word is known (the parse failed for another
// reason, which CLI11's message then says). `args` excludes argv[0].
std::string ExplainUnknownWord(const CLI::App& app,
                               const std::vector<std::string>& args);

}  // namespace sockctl

#endif  // SOCKAGENT_CLI_SUGGEST_H_
