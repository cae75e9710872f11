#include "cli/output.h"

#include <google/protobuf/message.h>
#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <iterator>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cli/yaml.h"

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

bool FormatJson(const google::protobuf::Message& message, std::string* json) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = false;
  options.always_print_primitive_fields = true;
  json->clear();
  const auto status =
      google::protobuf::util::MessageToJsonString(message, json, options);
  if (!status.ok()) {
    std::cerr << "sockctl: cannot print " << message.GetTypeName()
              << " as JSON: " << status.ToString() << "\n";
    return false;
  }
  return true;
}

bool PrintJson(std::ostream& out, const google::protobuf::Message& message) {
  std::string json;
  if (!FormatJson(message, &json)) return false;
  out << json << "\n";
  return true;
}

bool PrintYaml(std::ostream& out, const google::protobuf::Message& message,
               bool stream) {
  std::string json;
  if (!FormatJson(message, &json)) return false;
  absl::StatusOr<std::string> yaml = JsonToYaml(json);
  if (!yaml.ok()) {
    std::cerr << "sockctl: cannot print " << message.GetTypeName()
              << " as YAML: " << yaml.status().message() << "\n";
    return false;
  }
  if (stream) out << "---\n";
  out << *yaml;
  return true;
}

bool PrintStructured(std::ostream& out,
                     const google::protobuf::Message& message,
                     OutputFormat format, bool stream) {
  return format == OutputFormat::kYaml ? PrintYaml(out, message, stream)
                                       : PrintJson(out, message);
}

std::string JsonString(absl::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    const unsigned char u = static_cast<unsigned char>(c);
    switch (c) {
      case '"':
        out.append("\\\"");
        break;
      case '\\':
        out.append("\\\\");
        break;
      case '\n':
        out.append("\\n");
        break;
      case '\r':
        out.append("\\r");
        break;
      case '\t':
        out.append("\\t");
        break;
      default:
        if (u < 0x20 || u == 0x7f) {
          absl::StrAppend(&out, absl::StrFormat("\\u%04x", u));
        } else {
          out.push_back(c);
        }
    }
  }
  out.push_back('"');
  return out;
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

std::string FormatByteCount(uint64_t bytes) {
  constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 1024) return absl::StrCat(bytes, "B");
  double value = static_cast<double>(bytes);
  for (const char* unit : kUnits) {
    value /= 1024;
    // One decimal below 10, whole numbers above; move up a unit when the
    // rounding would print 1024.
    const double rounded =
        value < 9.95 ? std::round(value * 10) / 10 : std::round(value);
    if (rounded < 1024 || unit == kUnits[std::size(kUnits) - 1]) {
      if (rounded < 10 && rounded != std::floor(rounded)) {
        return absl::StrFormat("%.1f%s", rounded, unit);
      }
      return absl::StrFormat("%.0f%s", rounded, unit);
    }
  }
  return absl::StrCat(bytes, "B");  // Unreachable: EiB covers uint64_t.
}

std::string HexDump(absl::string_view data, uint64_t offset) {
  constexpr size_t kPerLine = 16;
  std::string out;
  for (size_t line = 0; line < data.size(); line += kPerLine) {
    absl::string_view chunk = data.substr(line, kPerLine);
    absl::StrAppend(&out, absl::StrFormat("%08x ", offset + line));
    for (size_t i = 0; i < kPerLine; ++i) {
      if (i == kPerLine / 2) out.push_back(' ');
      if (i < chunk.size()) {
        absl::StrAppend(
            &out,
            absl::StrFormat(" %02x", static_cast<unsigned char>(chunk[i])));
      } else {
        out.append("   ");
      }
    }
    out.append("  |");
    for (char c : chunk) {
      const unsigned char u = static_cast<unsigned char>(c);
      out.push_back(u >= 0x20 && u < 0x7f ? c : '.');
    }
    out.append("|\n");
  }
  return out;
}

bool IsPrintableText(absl::string_view data) {
  size_t i = 0;
  while (i < data.size()) {
    const unsigned char c = static_cast<unsigned char>(data[i]);
    if (c < 0x80) {
      if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f) {
        return false;
      }
      ++i;
      continue;
    }
    // A multi-byte UTF-8 sequence: its length from the lead byte, then
    // continuation bytes; reject overlong forms, surrogates, > U+10FFFF
    // and the C1 controls (U+0080..U+009F).
    size_t length;
    uint32_t code;
    if ((c & 0xe0) == 0xc0) {
      length = 2;
      code = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      length = 3;
      code = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      length = 4;
      code = c & 0x07;
    } else {
      return false;
    }
    if (i + length > data.size()) return false;
    for (size_t k = 1; k < length; ++k) {
      const unsigned char cc = static_cast<unsigned char>(data[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      code = (code << 6) | (cc & 0x3f);
    }
    constexpr uint32_t kMinimum[] = {0, 0, 0x80, 0x800, 0x10000};
    if (code < kMinimum[length] || code > 0x10ffff ||
        (code >= 0xd800 && code <= 0xdfff) || code <= 0x9f) {
      return false;
    }
    i += length;
  }
  return true;
}

}  // namespace sockctl
