#include "cli/completion.h"

#include <CLI/CLI.hpp>
#include <cctype>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "cli/client.h"
#include "cli/commands.h"

namespace sockctl {
namespace {

// One verb path ("" for the program itself, "server start") and what may
// follow it.
struct Level {
  std::vector<std::string> verbs;  // Subcommands, in definition order.
  // Option spelling -> takes a value; nearest definition wins (a verb's own
  // option over the global one it shadows: --hex is a flag of `recv` but
  // takes a value in `send`).
  std::map<std::string, bool> options;
  std::vector<std::string> file_options;  // Value is a FILE or PATH.
};

void AddOptions(const CLI::App& app, Level* level) {
  for (const CLI::Option* opt : app.get_options()) {
    if (!opt->nonpositional()) continue;
    // Flags expect no value (CLI11 parses them with expected_min 0).
    const bool value = opt->get_expected_min() > 0;
    const std::string type = opt->get_type_name();
    const bool file = value && (type == "FILE" || type == "PATH");
    std::vector<std::string> names;
    for (const std::string& s : opt->get_snames()) names.push_back("-" + s);
    for (const std::string& l : opt->get_lnames()) names.push_back("--" + l);
    for (const std::string& name : names) {
      if (level->options.emplace(name, value).second && file) {
        level->file_options.push_back(name);
      }
    }
  }
}

// Walks `app` and its visible subcommands; `parents` are the apps above it
// (their options fall through to it).
void Walk(const CLI::App& app, const std::string& path,
          std::vector<const CLI::App*> parents,
          std::map<std::string, Level>* levels) {
  Level& level = (*levels)[path];
  AddOptions(app, &level);
  for (auto it = parents.rbegin(); it != parents.rend(); ++it) {
    AddOptions(**it, &level);
  }
  parents.push_back(&app);
  for (const CLI::App* sub :
       app.get_subcommands([](const CLI::App*) { return true; })) {
    if (sub->get_group().empty()) continue;  // Hidden.
    level.verbs.push_back(sub->get_name());
    Walk(*sub, path.empty() ? sub->get_name() : path + " " + sub->get_name(),
         parents, levels);
  }
}

// The completion function; @FN@ and @PROGRAM@ are filled in.
constexpr char kMain[] = R"sh(@FN@() {
  local cur="${COMP_WORDS[COMP_CWORD]}" verb="" word i skip=0
  # The verb path typed so far: words that name a verb at their level;
  # options and their values are skipped.
  for ((i = 1; i < COMP_CWORD; i++)); do
    word="${COMP_WORDS[i]}"
    if ((skip)); then
      skip=0
      continue
    fi
    case "$word" in
      --*=*) continue ;;
      -*)
        @FN@_takes_value "$verb" "$word" && skip=1
        continue
        ;;
    esac
    case " $(@FN@_verbs "$verb") " in
      *" $word "*) verb="${verb:+$verb }$word" ;;
    esac
  done
  if ((skip)); then
    if @FN@_takes_file "$verb" "${COMP_WORDS[COMP_CWORD-1]}"; then
      COMPREPLY=($(compgen -f -- "$cur"))
    else
      COMPREPLY=()
    fi
    return 0
  fi
  if [[ "$cur" == -* ]]; then
    COMPREPLY=($(compgen -W "$(@FN@_options "$verb")" -- "$cur"))
  else
    COMPREPLY=($(compgen -W "$(@FN@_verbs "$verb")" -- "$cur"))
  fi
  return 0
}
complete -F @FN@ @PROGRAM@
)sh";

// A word as a bash case pattern / single-quoted string: our names are
// [A-Za-z0-9_-] only, but quote anyway.
std::string Quote(const std::string& word) {
  std::string out = "'";
  for (char c : word) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

std::string Function(const std::string& program) {
  std::string name;
  for (char c : program)
    name += (isalnum(static_cast<unsigned char>(c)) ? c : '_');
  return "_" + name;
}

}  // namespace

std::string BashCompletion(const CLI::App& app, const std::string& program) {
  std::map<std::string, Level> levels;
  Walk(app, "", {}, &levels);
  const std::string fn = Function(program);

  std::string verbs, options, values, files;
  for (const auto& [path, level] : levels) {
    std::vector<std::string> all, with_value;
    for (const auto& [name, value] : level.options) {
      all.push_back(name);
      if (value) with_value.push_back(name);
    }
    if (!level.verbs.empty()) {
      absl::StrAppend(&verbs, "    ", Quote(path), ") echo ",
                      Quote(absl::StrJoin(level.verbs, " ")), " ;;\n");
    }
    absl::StrAppend(&options, "    ", Quote(path), ") echo ",
                    Quote(absl::StrJoin(all, " ")), " ;;\n");
    if (!with_value.empty()) {
      absl::StrAppend(&values, "    ", Quote(path), ") case \"$2\" in ",
                      absl::StrJoin(with_value, "|"),
                      ") return 0 ;; esac ;;\n");
    }
    if (!level.file_options.empty()) {
      absl::StrAppend(&files, "    ", Quote(path), ") case \"$2\" in ",
                      absl::StrJoin(level.file_options, "|"),
                      ") return 0 ;; esac ;;\n");
    }
  }

  return absl::StrCat(
      "# ", program, " completion for bash; generated by `", program,
      " completion bash` from its own\n"
      "# command-line definition. Install: save as\n"
      "# /usr/share/bash-completion/completions/",
      program, ", or run: source <(", program, " completion bash)\n\n",
      // The verbs that may follow a verb path.
      fn, "_verbs() {\n  case \"$1\" in\n", verbs, "  esac\n}\n\n",
      // Every option spelling valid after a verb path (its own, then the
      // ones of the verbs above it and the global ones).
      fn, "_options() {\n  case \"$1\" in\n", options, "  esac\n}\n\n", fn,
      "_takes_value() {\n  case \"$1\" in\n", values,
      "  esac\n  return 1\n}\n\n", fn, "_takes_file() {\n  case \"$1\" in\n",
      files, "  esac\n  return 1\n}\n\n",
      absl::StrReplaceAll(kMain, {{"@FN@", fn}, {"@PROGRAM@", program}}));
}

std::string ZshCompletion(const CLI::App& app, const std::string& program) {
  return absl::StrCat("#compdef ", program, "\n",
                      "# zsh runs the bash completion function through "
                      "bashcompinit.\n"
                      "autoload -U +X bashcompinit && bashcompinit\n",
                      BashCompletion(app, program));
}

void AddCompletionCommands(CLI::App& app, Commands& commands) {
  auto shell = std::make_shared<std::string>();
  CLI::App* completion = app.add_subcommand(
      "completion", "Print a shell completion script: bash or zsh");
  completion->group("");  // Hidden: a setup step, not a verb for users.
  completion->footer(
      "bash: source <(sockctl completion bash), or save it as "
      "/usr/share/bash-completion/completions/sockctl\n"
      "zsh: sockctl completion zsh > \"${fpath[1]}/_sockctl\"");
  completion->add_option("SHELL", *shell, "bash or zsh")
      ->required()
      ->check(CLI::IsMember({"bash", "zsh"}));
  const CLI::App* root = &app;
  // Local: no agent address or token is looked at.
  Command command{completion, nullptr};
  command.run_local = [shell, root] {
    const std::string script = *shell == "zsh"
                                   ? ZshCompletion(*root, "sockctl")
                                   : BashCompletion(*root, "sockctl");
    std::fwrite(script.data(), 1, script.size(), stdout);
    return std::fflush(stdout) == 0 ? kExitOk : kExitFailure;
  };
  commands.push_back(std::move(command));
}

}  // namespace sockctl
