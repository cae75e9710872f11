// How sockctl prints: aligned tables and "key: value" blocks for people,
// one-line protobuf JSON for scripts, and the small formatters (durations,
// byte sizes, enum names) every verb shares. No gRPC here.
//
//   Table table({"NAME", "PORT"});
//   table.AddRow({"www", "80"});
//   table.Print(std::cout);
//   // NAME  PORT
//   // www   80
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "cli/output_format.h"

namespace google::protobuf {
class Message;
}  // namespace google::protobuf

namespace sockctl {

// Printed for an empty cell so that columns stay whitespace-separated.
inline constexpr char kEmptyCell[] = "-";

// Columns sized to their widest cell, two spaces between columns, a header
// row first, no trailing spaces. Empty cells print as kEmptyCell.
class Table final {
 public:
  explicit Table(std::vector<std::string> header);

  // Rows shorter than the header are padded with empty cells.
  void AddRow(std::vector<std::string> row);
  void Print(std::ostream& out) const;

 private:
  std::vector<std::vector<std::string>> rows_;  // rows_[0] is the header.
};

// "key:" then the value, values aligned one column past the longest key,
// each line prefixed by `indent` spaces. Empty values print as kEmptyCell.
using Fields = std::vector<std::pair<std::string, std::string>>;
void PrintFields(std::ostream& out, const Fields& fields, int indent = 0);

// The message as protobuf JSON on one line (lowerCamelCase field names,
// enums as names, default-valued scalars included). Returns false (and says
// why on stderr) if the message cannot be converted.
bool PrintJson(std::ostream& out, const google::protobuf::Message& message);
// The same JSON into `json` (no newline), for output that wraps it.
bool FormatJson(const google::protobuf::Message& message, std::string* json);
// The message as YAML (cli/yaml.h: the same data as its JSON). With
// `stream`, a "---" line first: one document of several (watch, fleet).
bool PrintYaml(std::ostream& out, const google::protobuf::Message& message,
               bool stream = false);
// PrintYaml for kYaml, else PrintJson: for verbs whose structured forms are
// json and yaml.
bool PrintStructured(std::ostream& out,
                     const google::protobuf::Message& message,
                     OutputFormat format, bool stream = false);

// `text` as a JSON string literal, quotes included: "a\"b\n" for a"b
// plus a newline. Bytes that are not valid UTF-8 pass through unchanged.
std::string JsonString(absl::string_view text);

// Whole seconds, largest unit first: "0s", "42s", "3m12s", "2h0m5s",
// "1d4h0m0s". Sub-second durations below one second print as e.g. "250ms".
std::string FormatUptime(absl::Duration d);

// Exact binary multiples as "4MiB", "64KiB"; anything else as "1500B".
// For sizes that are set, like limits.
std::string FormatBytes(uint64_t bytes);

// Rounded for reading at a glance, like `ls -lh`: "0B", "999B", "1.5KiB",
// "12KiB", "3.2MiB". For sizes that are counted, like bytes received.
std::string FormatByteCount(uint64_t bytes);

// Lines of `hexdump -C`: offset, 16 bytes in hex (a gap after 8), then the
// printable ASCII column; every line ends with '\n'. Offsets start at
// `offset`.
//   00000000  48 65 6c 6c 6f 0d 0a                              |Hello..|
std::string HexDump(absl::string_view data, uint64_t offset = 0);

// True when `data` is valid UTF-8 with no control characters other than
// tab, newline and carriage return: safe to write to a terminal as text.
bool IsPrintableText(absl::string_view data);

}  // namespace sockctl
