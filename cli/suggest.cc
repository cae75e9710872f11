#include "cli/suggest.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace sockctl {
namespace {

// The verb path of `app` ("server start"), for messages; "" at the top.
std::string Path(const CLI::App* app) {
  std::string path;
  for (; app != nullptr && app->get_parent() != nullptr;
       app = app->get_parent()) {
    path = path.empty() ? app->get_name()
                        : absl::StrCat(app->get_name(), " ", path);
  }
  return path;
}

// The option named `flag` ("--echo", "-q") on `app` or, as global options
// fall through, on one of its parents.
const CLI::Option* FindOption(const CLI::App* app, const std::string& flag) {
  for (; app != nullptr; app = app->get_parent()) {
    for (const CLI::Option* opt : app->get_options()) {
      if (opt->check_name(flag)) return opt;
    }
  }
  return nullptr;
}

std::vector<std::string> FlagNames(const CLI::App* app) {
  std::vector<std::string> names;
  for (; app != nullptr; app = app->get_parent()) {
    for (const CLI::Option* opt : app->get_options()) {
      for (const std::string& l : opt->get_lnames()) {
        names.push_back("--" + l);
      }
    }
  }
  return names;
}

std::vector<std::string> VerbNames(const CLI::App* app) {
  std::vector<std::string> names;
  for (const CLI::App* sub : app->get_subcommands({})) {
    names.push_back(sub->get_name());
  }
  return names;
}

std::string DidYouMean(const std::string& suggestion) {
  return suggestion.empty()
             ? ""
             : absl::StrCat(" (did you mean '", suggestion, "'?)");
}

}  // namespace

size_t EditDistance(absl::string_view a, absl::string_view b) {
  // Optimal string alignment distance, O(|a|·|b|) on short words.
  std::vector<std::vector<size_t>> d(a.size() + 1,
                                     std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] =
          std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

std::string ClosestWord(absl::string_view word,
                        const std::vector<std::string>& candidates) {
  if (word.size() > 64) return "";  // Not a typo; spare the quadratic work.
  std::string best;
  size_t best_distance = SIZE_MAX;
  std::vector<std::string> prefixed;
  for (const std::string& c : candidates) {
    if (c.size() > 64) continue;
    const size_t d = EditDistance(word, c);
    if (d < best_distance) {
      best_distance = d;
      best = c;
    }
    if (word.size() >= 2 && absl::StartsWith(c, word)) prefixed.push_back(c);
  }
  if (best_distance <= 2 && best_distance * 2 < word.size()) return best;
  if (prefixed.size() == 1) return prefixed.front();
  return "";
}

std::string ExplainUnknownWord(const CLI::App& app,
                               const std::vector<std::string>& args) {
  const CLI::App* current = &app;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& word = args[i];
    if (word == "--") return "";  // Positional arguments follow.
    if (absl::StartsWith(word, "-") && word.size() > 1) {
      const std::string name = word.substr(0, word.find('='));
      const CLI::Option* opt = FindOption(current, name);
      if (opt == nullptr) {
        if (absl::StartsWith(name, "--")) {
          const std::string where = Path(current);
          return absl::StrCat(
              where.empty() ? "" : where + ": ", "unknown flag '", name, "'",
              DidYouMean(ClosestWord(name, FlagNames(current))));
        }
        // A short flag: CLI11's message names it well enough.
        return "";
      }
      // An option with a value given as the next word: skip the value.
      if (opt->get_type_size() != 0 && name == word && i + 1 < args.size()) {
        ++i;
      }
      continue;
    }
    // A word: a verb of `current`, else a positional argument of a leaf.
    const std::vector<std::string> verbs = VerbNames(current);
    if (verbs.empty()) continue;
    CLI::App* sub = nullptr;
    try {
      sub = current->get_subcommand(word);
    } catch (const CLI::OptionNotFound&) {
      sub = nullptr;
    }
    if (sub != nullptr) {
      current = sub;
      continue;
    }
    const std::string where = Path(current);
    return absl::StrCat("unknown verb '", word, "'",
                        where.empty() ? "" : absl::StrCat(" for '", where, "'"),
                        DidYouMean(ClosestWord(word, verbs)));
  }
  return "";
}

}  // namespace sockctl
