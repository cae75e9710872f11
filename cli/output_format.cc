#include "cli/output_format.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace sockctl {
namespace {

constexpr std::pair<OutputFormat, const char*> kNames[] = {
    {OutputFormat::kTable, "table"}, {OutputFormat::kJson, "json"},
    {OutputFormat::kYaml, "yaml"},   {OutputFormat::kName, "name"},
    {OutputFormat::kAddr, "addr"},
};

bool Has(const OutputForms& forms, OutputFormat format) {
  return std::find(forms.begin(), forms.end(), format) != forms.end();
}

// What -o's help says of each form.
std::string FormHelp(const OutputForms& forms) {
  std::vector<std::string> parts;
  for (OutputFormat f : forms) {
    switch (f) {
      case OutputFormat::kTable:
        parts.push_back("table (default)");
        break;
      case OutputFormat::kJson:
        parts.push_back("json (protobuf JSON, one line)");
        break;
      case OutputFormat::kYaml:
        parts.push_back("yaml");
        break;
      case OutputFormat::kName:
        parts.push_back("name (ids, one per line)");
        break;
      case OutputFormat::kAddr:
        parts.push_back("addr (addresses, one per line)");
        break;
    }
  }
  return absl::StrJoin(parts, ", ");
}

}  // namespace

std::string OutputFormatName(OutputFormat format) {
  for (const auto& [f, name] : kNames) {
    if (f == format) return name;
  }
  return "table";
}

std::optional<OutputFormat> ParseOutputFormat(absl::string_view word) {
  for (const auto& [f, name] : kNames) {
    if (word == name) return f;
  }
  return std::nullopt;
}

std::string OutputFormsText(const OutputForms& forms) {
  std::vector<std::string> names;
  for (OutputFormat f : forms) names.push_back(OutputFormatName(f));
  return absl::StrJoin(names, "|");
}

const OutputForms& AllOutputForms() {
  static const auto* const kAll = new OutputForms{
      OutputFormat::kTable, OutputFormat::kJson, OutputFormat::kYaml,
      OutputFormat::kName, OutputFormat::kAddr};
  return *kAll;
}

void AddOutputOptions(CLI::App* app, OutputRequest& request,
                      const OutputForms& forms) {
  app->add_option_function<std::string>(
         "-o,--output",
         [&request](const std::string& word) {
           request.given.push_back({absl::StrCat("-o ", word), word});
         },
         absl::StrCat("Output: ", FormHelp(forms)))
      ->type_name(OutputFormsText(forms))
      ->group("Output");
  if (Has(forms, OutputFormat::kJson)) {
    app->add_flag_callback(
           "--json",
           [&request] {
             request.given.push_back({"--json", "json"});
           },
           "Same as -o json")
        ->group("Output");
  }
  if (Has(forms, OutputFormat::kName)) {
    app->add_flag_callback(
           "-q,--quiet",
           [&request] {
             request.given.push_back({"-q", "name"});
           },
           "Same as -o name: only the ids")
        ->group("Output");
  }
}

absl::StatusOr<OutputFormat> ChooseOutput(const OutputRequest& request,
                                          absl::string_view verb,
                                          const OutputForms& forms) {
  if (request.given.empty()) return OutputFormat::kTable;
  const OutputRequest::Given* first = nullptr;
  for (const OutputRequest::Given& given : request.given) {
    if (first != nullptr && given.word != first->word) {
      return absl::InvalidArgumentError(
          absl::StrCat(verb, ": ", first->spelling, " and ", given.spelling,
                       " ask for different output; give one"));
    }
    if (first == nullptr) first = &given;
  }
  std::optional<OutputFormat> format = ParseOutputFormat(first->word);
  if (!format.has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat(verb, ": unknown output '", first->word, "' (", verb,
                     " takes -o ", OutputFormsText(forms), ")"));
  }
  if (!Has(forms, *format)) {
    return absl::InvalidArgumentError(absl::StrCat(
        verb, " does not print ", first->word, " output (", first->spelling,
        "); it takes -o ", OutputFormsText(forms)));
  }
  return *format;
}

}  // namespace sockctl
