#include "cli/yaml.h"

#include <cctype>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "cli/output.h"

namespace sockctl {
namespace {

constexpr int kMaxDepth = 64;

// A parsed JSON value; numbers keep their text.
struct Value {
  enum Kind { kNull, kBool, kNumber, kString, kArray, kObject } kind = kNull;
  std::string text;  // kBool: "true"/"false"; kNumber: as written; kString.
  std::vector<Value> items;                           // kArray.
  std::vector<std::pair<std::string, Value>> fields;  // kObject, in order.
};

class Parser {
 public:
  explicit Parser(absl::string_view json) : in_(json) {}

  absl::StatusOr<Value> ParseDocument() {
    Value v;
    if (!ParseValue(&v, 0)) return Error();
    SkipSpace();
    if (pos_ != in_.size()) {
      error_ = "trailing characters";
      return Error();
    }
    return v;
  }

 private:
  absl::Status Error() const {
    return absl::InvalidArgumentError(
        absl::StrCat("not JSON at offset ", pos_, ": ", error_));
  }

  void SkipSpace() {
    while (pos_ < in_.size() && (in_[pos_] == ' ' || in_[pos_] == '\n' ||
                                 in_[pos_] == '\r' || in_[pos_] == '\t')) {
      ++pos_;
    }
  }

  bool Consume(absl::string_view word) {
    if (!absl::StartsWith(in_.substr(pos_), word)) return false;
    pos_ += word.size();
    return true;
  }

  bool ParseValue(Value* v, int depth) {
    if (depth > kMaxDepth) {
      error_ = "nested too deeply";
      return false;
    }
    SkipSpace();
    if (pos_ >= in_.size()) {
      error_ = "unexpected end";
      return false;
    }
    const char c = in_[pos_];
    if (c == '{') return ParseObject(v, depth);
    if (c == '[') return ParseArray(v, depth);
    if (c == '"') {
      v->kind = Value::kString;
      return ParseString(&v->text);
    }
    if (Consume("true") || Consume("false")) {
      v->kind = Value::kBool;
      v->text = c == 't' ? "true" : "false";
      return true;
    }
    if (Consume("null")) {
      v->kind = Value::kNull;
      return true;
    }
    const size_t start = pos_;
    while (pos_ < in_.size() &&
           (absl::ascii_isdigit(in_[pos_]) || in_[pos_] == '-' ||
            in_[pos_] == '+' || in_[pos_] == '.' || in_[pos_] == 'e' ||
            in_[pos_] == 'E')) {
      ++pos_;
    }
    if (pos_ == start) {
      error_ = "unexpected character";
      return false;
    }
    v->kind = Value::kNumber;
    v->text = std::string(in_.substr(start, pos_ - start));
    return true;
  }

  bool ParseObject(Value* v, int depth) {
    v->kind = Value::kObject;
    ++pos_;  // '{'
    SkipSpace();
    if (Consume("}")) return true;
    for (;;) {
      SkipSpace();
      std::string key;
      if (pos_ >= in_.size() || in_[pos_] != '"' || !ParseString(&key)) {
        if (error_.empty()) error_ = "expected a key";
        return false;
      }
      SkipSpace();
      if (!Consume(":")) {
        error_ = "expected ':'";
        return false;
      }
      Value item;
      if (!ParseValue(&item, depth + 1)) return false;
      v->fields.emplace_back(std::move(key), std::move(item));
      SkipSpace();
      if (Consume("}")) return true;
      if (!Consume(",")) {
        error_ = "expected ',' or '}'";
        return false;
      }
    }
  }

  bool ParseArray(Value* v, int depth) {
    v->kind = Value::kArray;
    ++pos_;  // '['
    SkipSpace();
    if (Consume("]")) return true;
    for (;;) {
      Value item;
      if (!ParseValue(&item, depth + 1)) return false;
      v->items.push_back(std::move(item));
      SkipSpace();
      if (Consume("]")) return true;
      if (!Consume(",")) {
        error_ = "expected ',' or ']'";
        return false;
      }
    }
  }

  static void AppendUtf8(uint32_t code, std::string* out) {
    if (code < 0x80) {
      out->push_back(static_cast<char>(code));
    } else if (code < 0x800) {
      out->push_back(static_cast<char>(0xc0 | (code >> 6)));
      out->push_back(static_cast<char>(0x80 | (code & 0x3f)));
    } else if (code < 0x10000) {
      out->push_back(static_cast<char>(0xe0 | (code >> 12)));
      out->push_back(static_cast<char>(0x80 | ((code >> 6) & 0x3f)));
      out->push_back(static_cast<char>(0x80 | (code & 0x3f)));
    } else {
      out->push_back(static_cast<char>(0xf0 | (code >> 18)));
      out->push_back(static_cast<char>(0x80 | ((code >> 12) & 0x3f)));
      out->push_back(static_cast<char>(0x80 | ((code >> 6) & 0x3f)));
      out->push_back(static_cast<char>(0x80 | (code & 0x3f)));
    }
  }

  bool ParseHex4(uint32_t* code) {
    if (pos_ + 4 > in_.size()) return false;
    *code = 0;
    for (int i = 0; i < 4; ++i) {
      const char h = in_[pos_++];
      if (!absl::ascii_isxdigit(h)) return false;
      *code = *code * 16 + (absl::ascii_isdigit(h)
                                ? h - '0'
                                : absl::ascii_tolower(h) - 'a' + 10);
    }
    return true;
  }

  bool ParseString(std::string* out) {
    ++pos_;  // '"'
    while (pos_ < in_.size()) {
      const char c = in_[pos_++];
      if (c == '"') return true;
      if (c != '\\') {
        out->push_back(c);
        continue;
      }
      if (pos_ >= in_.size()) break;
      const char e = in_[pos_++];
      switch (e) {
        case '"':
        case '\\':
        case '/':
          out->push_back(e);
          break;
        case 'b':
          out->push_back('\b');
          break;
        case 'f':
          out->push_back('\f');
          break;
        case 'n':
          out->push_back('\n');
          break;
        case 'r':
          out->push_back('\r');
          break;
        case 't':
          out->push_back('\t');
          break;
        case 'u': {
          uint32_t code;
          if (!ParseHex4(&code)) {
            error_ = "bad \\u escape";
            return false;
          }
          // A surrogate pair is one code point.
          if (code >= 0xd800 && code < 0xdc00 && Consume("\\u")) {
            uint32_t low;
            if (!ParseHex4(&low) || low < 0xdc00 || low > 0xdfff) {
              error_ = "bad surrogate pair";
              return false;
            }
            code = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00);
          }
          AppendUtf8(code, out);
          break;
        }
        default:
          error_ = "bad escape";
          return false;
      }
    }
    error_ = "unterminated string";
    return false;
  }

  absl::string_view in_;
  size_t pos_ = 0;
  std::string error_;
};

// Whether `s` reads back as this same string when written plain.
bool PlainIsSafe(absl::string_view s) {
  if (s.empty() || !absl::ascii_isalpha(s.front()) || s.back() == ' ' ||
      s.back() == ':') {
    return false;
  }
  for (char c : s) {
    if (!absl::ascii_isalnum(c) && c != ' ' && c != '.' && c != '_' &&
        c != '/' && c != '@' && c != ':' && c != '+' && c != '-' && c != ',' &&
        c != '=' && c != '(' && c != ')') {
      return false;
    }
  }
  if (absl::StrContains(s, ": ") || absl::StrContains(s, " #")) return false;
  // Words YAML (1.1 or 1.2) reads as booleans or null.
  static constexpr const char* kReserved[] = {
      "true", "false", "yes", "no", "on", "off", "null", "y", "n"};
  const std::string lower = absl::AsciiStrToLower(s);
  for (const char* word : kReserved) {
    if (lower == word) return false;
  }
  return true;
}

std::string Scalar(const Value& v) {
  switch (v.kind) {
    case Value::kNull:
      return "null";
    case Value::kBool:
    case Value::kNumber:
      return v.text;
    case Value::kString:
      return PlainIsSafe(v.text) ? v.text : JsonString(v.text);
    default:
      return "";
  }
}

bool IsEmptyCollection(const Value& v) {
  return (v.kind == Value::kArray && v.items.empty()) ||
         (v.kind == Value::kObject && v.fields.empty());
}

void Emit(const Value& v, int indent, std::string* out);

// Sequence items start with "- " at `indent` (kubectl's style: a key's list
// is not indented past the key).
void EmitItems(const Value& v, int indent, std::string* out) {
  const std::string pad(indent, ' ');
  for (const Value& item : v.items) {
    if (item.kind == Value::kObject && !item.fields.empty()) {
      // The object's lines at indent + 2, its first line's pad -> "- ".
      std::string lines;
      Emit(item, indent + 2, &lines);
      lines[indent] = '-';
      out->append(lines);
    } else if (item.kind == Value::kArray && !item.items.empty()) {
      absl::StrAppend(out, pad, "-\n");
      EmitItems(item, indent + 2, out);
    } else {
      absl::StrAppend(out, pad, "- ",
                      IsEmptyCollection(item)
                          ? (item.kind == Value::kArray ? "[]" : "{}")
                          : Scalar(item),
                      "\n");
    }
  }
}

void Emit(const Value& v, int indent, std::string* out) {
  const std::string pad(indent, ' ');
  if (v.kind == Value::kArray) {
    if (v.items.empty()) {
      absl::StrAppend(out, pad, "[]\n");
    } else {
      EmitItems(v, indent, out);
    }
    return;
  }
  if (v.kind != Value::kObject) {
    absl::StrAppend(out, pad, Scalar(v), "\n");
    return;
  }
  if (v.fields.empty()) {
    absl::StrAppend(out, pad, "{}\n");
    return;
  }
  for (const auto& [key, item] : v.fields) {
    Value key_value;
    key_value.kind = Value::kString;
    key_value.text = key;
    absl::StrAppend(out, pad, Scalar(key_value), ":");
    if (IsEmptyCollection(item)) {
      absl::StrAppend(out, item.kind == Value::kArray ? " []\n" : " {}\n");
    } else if (item.kind == Value::kObject) {
      out->append("\n");
      Emit(item, indent + 2, out);
    } else if (item.kind == Value::kArray) {
      out->append("\n");
      EmitItems(item, indent, out);
    } else {
      absl::StrAppend(out, " ", Scalar(item), "\n");
    }
  }
}

}  // namespace

absl::StatusOr<std::string> JsonToYaml(absl::string_view json) {
  absl::StatusOr<Value> value = Parser(json).ParseDocument();
  if (!value.ok()) return value.status();
  std::string out;
  Emit(*value, 0, &out);
  return out;
}

}  // namespace sockctl
