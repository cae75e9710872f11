// sockctl's output forms, kubectl-style: `-o table|json|yaml|name|addr`
// (`--json` is `-o json`, `-q` is `-o name`), given before or after the
// verb. Each verb says which forms it prints; main.cc adds the options to
// the app and to every verb (so that a verb's --help names its forms) and
// picks the one form of a command line, or a usage error. No gRPC here.
//
//   OutputRequest request;
//   AddOutputOptions(&app, request, AllOutputForms());   // before the verb
//   AddOutputOptions(verb, request, {kTable, kJson});     // after it
//   ... app.parse(argc, argv) ...
//   absl::StatusOr<OutputFormat> form =
//       ChooseOutput(request, "hostname", {kTable, kJson});
#pragma once

#include <CLI/CLI.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace sockctl {

enum class OutputFormat {
  kTable,  // The default human form: a table, a line, or the bytes.
  kJson,   // Protobuf JSON, one object per line.
  kYaml,   // The same data as YAML, block style.
  kName,   // Ids, one per line (servers, connections).
  kAddr,   // Socket addresses, one object per line.
};
using OutputForms = std::vector<OutputFormat>;

// "table", "json", "yaml", "name", "addr".
std::string OutputFormatName(OutputFormat format);
std::optional<OutputFormat> ParseOutputFormat(absl::string_view word);
// "table|json|yaml".
std::string OutputFormsText(const OutputForms& forms);
// Every form, for the options before the verb.
const OutputForms& AllOutputForms();

// The output options one command line gave, in the order parsed.
struct OutputRequest {
  struct Given {
    std::string spelling;  // "-o yaml", "--json", "-q", as the user wrote it.
    std::string word;      // The form asked for: "yaml", "json", "name".
  };
  std::vector<Given> given;
};

// Adds -o/--output FORM to `app`, plus --json when `forms` holds json and
// -q/--quiet when it holds name; each records into `request` (which must
// outlive the parse). The help text names `forms`.
void AddOutputOptions(CLI::App* app, OutputRequest& request,
                      const OutputForms& forms);

// The form asked for (kTable when none was), or InvalidArgument naming the
// verb and the forms it takes: an unknown form, two different forms, or a
// form `verb` does not print.
absl::StatusOr<OutputFormat> ChooseOutput(const OutputRequest& request,
                                          absl::string_view verb,
                                          const OutputForms& forms);

}  // namespace sockctl
