#include "cli/output.h"

#include <google/protobuf/message.h>
#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace sockctl {

Table::Table(std::vector<std::string> header) {
  rows_.push_back(std::move(header));
}

void Table::AddRow(std::vector<std::string> row) {
  row.resize(std::max(row.size(), rows_.front().size()));
  rows_.push_back(std::move(row));
}

void Table::Print(std::ostream& out) const {
  std::vector<size_t> widths;
  for (const auto& row : rows_) {
    widths.resize(std::max(widths.size(), row.size()));
    for (size_t i = 0; i < row.size(); ++i) {
      const size_t w = row[i].empty() ? sizeof(kEmptyCell) - 1 : row[i].size();
      widths[i] = std::max(widths[i], w);
    }
  }
  std::string text;
  for (const auto& row : rows_) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      const std::string& cell = row[i].empty() ? kEmptyCell : row[i];
      if (i + 1 == row.size()) {
        absl::StrAppend(&line, cell);  // No trailing spaces.
      } else {
        absl::StrAppend(&line, absl::StrFormat("%-*s  ", widths[i], cell));
      }
    }
    absl::StrAppend(&text, line, "\n");
  }
  out << text;
}

void PrintFields(std::ostream& out, const Fields& fields, int indent) {
  size_t key_width = 0;
  for (const auto& [key, value] : fields) {
    key_width = std::max(key_width, key.size() + 1);  // + ':'
  }
  std::string text;
  for (const auto& [key, value] : fields) {
    absl::StrAppend(&text, std::string(indent, ' '),
                    absl::StrFormat("%-*s  ", key_width, key + ":"),
                    value.empty() ? kEmptyCell : value, "\n");
  }
  out << text;
}

bool PrintJson(std::ostream& out, const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = false;
  options.always_print_primitive_fields = true;
  std::string json;
  const auto status =
      google::protobuf::util::MessageToJsonString(message, &json, options);
  if (!status.ok()) {
    std::cerr << "sockctl: cannot print " << message.GetTypeName()
              << " as JSON: " << status.ToString() << "\n";
    return false;
  }
  out << json << "\n";
  return true;
}

std::string FormatUptime(absl::Duration d) {
  if (d < absl::ZeroDuration()) d = absl::ZeroDuration();
  if (d > absl::ZeroDuration() && d < absl::Seconds(1)) {
    return absl::StrCat(absl::ToInt64Milliseconds(d), "ms");
  }
  int64_t total = absl::ToInt64Seconds(d);
  const int64_t days = total / 86400;
  total %= 86400;
  const int64_t hours = total / 3600;
  total %= 3600;
  const int64_t minutes = total / 60;
  const int64_t seconds = total % 60;
  if (days > 0)
    return absl::StrCat(days, "d", hours, "h", minutes, "m", seconds, "s");
  if (hours > 0) return absl::StrCat(hours, "h", minutes, "m", seconds, "s");
  if (minutes > 0) return absl::StrCat(minutes, "m", seconds, "s");
  return absl::StrCat(seconds, "s");
}

std::string FormatBytes(uint64_t bytes) {
  constexpr struct {
    uint64_t size;
    const char* unit;
  } kUnits[] = {{uint64_t{1} << 40, "TiB"},
                {uint64_t{1} << 30, "GiB"},
                {uint64_t{1} << 20, "MiB"},
                {uint64_t{1} << 10, "KiB"}};
  if (bytes != 0) {
    for (const auto& u : kUnits) {
      if (bytes % u.size == 0) return absl::StrCat(bytes / u.size, u.unit);
    }
  }
  return absl::StrCat(bytes, "B");
}

}  // namespace sockctl
