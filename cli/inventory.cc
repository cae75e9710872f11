#include "cli/inventory.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "cli/args.h"

namespace sockctl {
namespace {

constexpr char kTokenFileKey[] = "token-file";

absl::Status LineError(int line, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("line ", line, ": ", why));
}

}  // namespace

std::vector<absl::string_view> ConfigLineWords(absl::string_view line) {
  for (size_t i = 0; i < line.size(); ++i) {
    if (line[i] == '#' &&
        (i == 0 ||
         absl::ascii_isspace(static_cast<unsigned char>(line[i - 1])))) {
      line = line.substr(0, i);
      break;
    }
  }
  return absl::StrSplit(line, absl::ByAnyChar(" \t\r\f\v"), absl::SkipEmpty());
}

absl::Status CheckAgentName(absl::string_view name) {
  if (name.empty()) return absl::InvalidArgumentError("empty agent name");
  if (name.size() > kMaxAgentName) {
    return absl::InvalidArgumentError(
        absl::StrCat("agent name '", name, "' is longer than ", kMaxAgentName,
                     " characters"));
  }
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' &&
        c != '_' && c != '.') {
      return absl::InvalidArgumentError(
          absl::StrCat("agent name '", name,
                       "' may hold only letters, digits, '-', '_' and '.'"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<InventoryEntry>> ParseInventory(
    absl::string_view text) {
  std::vector<InventoryEntry> entries;
  std::set<std::string, std::less<>> names;
  int number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++number;
    std::vector<absl::string_view> words = ConfigLineWords(line);
    if (words.empty()) continue;
    if (words.size() < 2) {
      return LineError(number, absl::StrCat("expected NAME ADDRESS "
                                            "[token-file=PATH], got only '",
                                            words[0], "'"));
    }
    InventoryEntry entry;
    entry.line = number;
    entry.name = std::string(words[0]);
    if (absl::Status s = CheckAgentName(entry.name); !s.ok()) {
      return LineError(number, s.message());
    }
    if (names.count(entry.name) > 0) {
      return LineError(number,
                       absl::StrCat("agent name '", entry.name,
                                    "' is already used on an earlier line"));
    }
    absl::StatusOr<std::string> address = ParseAgentAddress(words[1]);
    if (!address.ok()) {
      return LineError(number, absl::StrCat("invalid address '", words[1],
                                            "': ", address.status().message()));
    }
    entry.address = *std::move(address);
    const std::pair<absl::string_view, std::string*> options[] = {
        {kTokenFileKey, &entry.token_file},
        {"tls-ca", &entry.tls_ca},
        {"tls-cert", &entry.tls_cert},
        {"tls-key", &entry.tls_key},
        {"tls-server-name", &entry.tls_server_name},
    };
    for (size_t i = 2; i < words.size(); ++i) {
      std::pair<absl::string_view, absl::string_view> kv =
          absl::StrSplit(words[i], absl::MaxSplits('=', 1));
      std::string* field = nullptr;
      for (const auto& [key, out] : options) {
        if (kv.first == key) field = out;
      }
      if (field == nullptr || !absl::StrContains(words[i], '=')) {
        return LineError(number,
                         absl::StrCat("unknown option '", words[i],
                                      "' (known: token-file=PATH, tls-ca=PATH, "
                                      "tls-cert=PATH, tls-key=PATH, "
                                      "tls-server-name=NAME)"));
      }
      if (!field->empty()) {
        return LineError(number, absl::StrCat(kv.first, "= given twice"));
      }
      if (kv.second.empty()) {
        return LineError(
            number,
            absl::StrCat(kv.first, "= needs ",
                         kv.first == "tls-server-name" ? "a NAME" : "a PATH"));
      }
      *field = std::string(kv.second);
    }
    if (entry.tls_cert.empty() != entry.tls_key.empty()) {
      return LineError(number, "tls-cert= and tls-key= go together");
    }
    names.insert(entry.name);
    entries.push_back(std::move(entry));
  }
  if (entries.empty()) {
    return absl::InvalidArgumentError(
        "names no agent (every line is blank or a comment)");
  }
  return entries;
}

absl::StatusOr<std::string> ParseToken(absl::string_view contents) {
  absl::string_view token = absl::StripAsciiWhitespace(contents);
  if (token.empty()) return absl::InvalidArgumentError("the token is empty");
  for (char c : token) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f) {
      return absl::InvalidArgumentError(
          "the token must be one word of printable ASCII");
    }
  }
  return std::string(token);
}

std::string PathRelativeTo(absl::string_view base_file,
                           absl::string_view path) {
  if (absl::StartsWith(path, "/")) return std::string(path);
  const size_t slash = base_file.rfind('/');
  if (slash == absl::string_view::npos) return std::string(path);
  return absl::StrCat(base_file.substr(0, slash + 1), path);
}

absl::StatusOr<std::string> ReadConfigFile(const std::string& path) {
  std::unique_ptr<FILE, int (*)(FILE*)> file(std::fopen(path.c_str(), "rbe"),
                                             &std::fclose);
  if (file == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot read '", path, "': ", std::strerror(errno)));
  }
  std::string contents;
  char buffer[8192];
  for (;;) {
    const size_t n = std::fread(buffer, 1, sizeof(buffer), file.get());
    contents.append(buffer, n);
    if (contents.size() > kMaxConfigFileBytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "'", path, "' is larger than ", kMaxConfigFileBytes, " bytes"));
    }
    if (n < sizeof(buffer)) break;
  }
  if (std::ferror(file.get())) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot read '", path, "': ", std::strerror(errno)));
  }
  return contents;
}

}  // namespace sockctl
