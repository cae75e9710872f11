#include "proto/yaml_proto.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <yaml-cpp/yaml.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"

namespace sockagent {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::EnumDescriptor;
using google::protobuf::EnumValueDescriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Reflection;

class Mapper {
 public:
  explicit Mapper(const YamlToMessageOptions& options) : options_(options) {}

  // `node` (a mapping, or a well-known type's scalar) into `message`.
  absl::Status Object(const YAML::Node& node,
                      google::protobuf::Message* message,
                      const std::string& path, int depth);

 private:
  absl::Status Fail(const YAML::Node& node, const std::string& path,
                    absl::string_view what) const {
    const YAML::Mark mark = node.Mark();
    std::string where;
    if (mark.line >= 0) {
      where = absl::StrCat("line ", mark.line + 1, ", column ", mark.column + 1,
                           ": ");
    }
    return absl::InvalidArgumentError(absl::StrCat(
        where, path.empty() ? "" : absl::StrCat(path, ": "), what));
  }

  absl::Status Visit(const YAML::Node& node, const std::string& path,
                     int depth) {
    if (++nodes_ > options_.max_nodes) {
      return Fail(node, path,
                  absl::StrCat("more than ", options_.max_nodes,
                               " YAML nodes (aliases included)"));
    }
    if (depth > options_.max_depth) {
      return Fail(node, path,
                  absl::StrCat("nested deeper than ", options_.max_depth));
    }
    return absl::OkStatus();
  }

  absl::Status Field(const YAML::Node& node, google::protobuf::Message* message,
                     const FieldDescriptor* field, const std::string& path,
                     int depth);
  absl::Status MapField(const YAML::Node& node,
                        google::protobuf::Message* message,
                        const FieldDescriptor* field, const std::string& path,
                        int depth);
  // One value of `field` (an element when it is repeated).
  absl::Status Value(const YAML::Node& node, google::protobuf::Message* message,
                     const FieldDescriptor* field, const std::string& path,
                     int depth);
  absl::Status WellKnown(const YAML::Node& node,
                         google::protobuf::Message* message,
                         const std::string& path, bool* handled);
  absl::StatusOr<const EnumValueDescriptor*> Enum(const YAML::Node& node,
                                                  const EnumDescriptor* type,
                                                  const std::string& path);

  const YamlToMessageOptions& options_;
  size_t nodes_ = 0;
};

std::string Known(const Descriptor* type) {
  std::vector<std::string> names;
  for (int i = 0; i < type->field_count(); ++i) {
    names.push_back(type->field(i)->json_name());
  }
  return names.empty() ? "none" : absl::StrJoin(names, ", ");
}

const FieldDescriptor* FindField(const Descriptor* type,
                                 absl::string_view key) {
  for (int i = 0; i < type->field_count(); ++i) {
    const FieldDescriptor* f = type->field(i);
    if (f->json_name() == key || f->name() == key) return f;
  }
  return nullptr;
}

// "TRANSPORT_" for enum Transport, "CLOSE_MODE_" for CloseMode.
std::string EnumPrefix(const EnumDescriptor* type) {
  std::string prefix;
  for (char c : type->name()) {
    if (absl::ascii_isupper(static_cast<unsigned char>(c)) && !prefix.empty()) {
      prefix.push_back('_');
    }
    prefix.push_back(absl::ascii_toupper(static_cast<unsigned char>(c)));
  }
  return prefix + "_";
}

absl::StatusOr<const EnumValueDescriptor*> Mapper::Enum(
    const YAML::Node& node, const EnumDescriptor* type,
    const std::string& path) {
  const std::string& text = node.Scalar();
  if (const EnumValueDescriptor* v = type->FindValueByName(text)) return v;
  int number = 0;
  if (absl::SimpleAtoi(text, &number)) {
    if (const EnumValueDescriptor* v = type->FindValueByNumber(number)) {
      return v;
    }
  }
  const std::string wanted = EnumPrefix(type) + absl::AsciiStrToUpper(text);
  if (const EnumValueDescriptor* v = type->FindValueByName(wanted)) return v;
  std::vector<std::string> names;
  for (int i = 0; i < type->value_count(); ++i) {
    names.push_back(type->value(i)->name());
  }
  return Fail(
      node, path,
      absl::StrCat("\"", absl::CHexEscape(text), "\" is not a ", type->name(),
                   " (", absl::StrJoin(names, ", "), ")"));
}

template <typename Int>
absl::StatusOr<Int> ParseInt(const std::string& text) {
  int64_t wide = 0;
  uint64_t uwide = 0;
  if constexpr (std::is_signed_v<Int>) {
    if (absl::SimpleAtoi(text, &wide) &&
        wide >= std::numeric_limits<Int>::min() &&
        wide <= std::numeric_limits<Int>::max()) {
      return static_cast<Int>(wide);
    }
  } else {
    if (absl::SimpleAtoi(text, &uwide) &&
        uwide <= std::numeric_limits<Int>::max()) {
      return static_cast<Int>(uwide);
    }
  }
  return absl::InvalidArgumentError("");
}

absl::Status Mapper::WellKnown(const YAML::Node& node,
                               google::protobuf::Message* message,
                               const std::string& path, bool* handled) {
  const Descriptor* type = message->GetDescriptor();
  const Reflection* r = message->GetReflection();
  const std::string& name = type->full_name();
  *handled = false;
  if (!absl::StartsWith(name, "google.protobuf.")) return absl::OkStatus();
  if (name == "google.protobuf.Duration") {
    *handled = true;
    if (!node.IsScalar()) {
      return Fail(node, path, "a duration is a string such as \"1.5s\"");
    }
    absl::Duration d;
    if (!absl::ParseDuration(node.Scalar(), &d) ||
        d == absl::InfiniteDuration() || d == -absl::InfiniteDuration()) {
      return Fail(node, path,
                  absl::StrCat("\"", absl::CHexEscape(node.Scalar()),
                               "\" is not a duration (say \"1.5s\", "
                               "\"500ms\", \"2m\")"));
    }
    const int64_t seconds = absl::IDivDuration(d, absl::Seconds(1), &d);
    r->SetInt64(message, type->FindFieldByName("seconds"), seconds);
    r->SetInt32(message, type->FindFieldByName("nanos"),
                static_cast<int32_t>(absl::ToInt64Nanoseconds(d)));
    return absl::OkStatus();
  }
  if (name == "google.protobuf.Timestamp") {
    *handled = true;
    absl::Time t;
    std::string err;
    if (!node.IsScalar() ||
        !absl::ParseTime(absl::RFC3339_full, node.Scalar(), &t, &err)) {
      return Fail(node, path,
                  "a timestamp is RFC 3339, e.g. \"2026-12-05T10:00:00Z\"");
    }
    const int64_t seconds = absl::ToUnixSeconds(t);
    r->SetInt64(message, type->FindFieldByName("seconds"), seconds);
    r->SetInt32(message, type->FindFieldByName("nanos"),
                static_cast<int32_t>(absl::ToInt64Nanoseconds(
                    t - absl::FromUnixSeconds(seconds))));
    return absl::OkStatus();
  }
  if (absl::EndsWith(name, "Value") && type->field_count() == 1 &&
      type->field(0)->name() == "value" && node.IsScalar()) {
    *handled = true;
    return Value(node, message, type->field(0), path, 0);
  }
  return absl::OkStatus();
}

absl::Status Mapper::Object(const YAML::Node& node,
                            google::protobuf::Message* message,
                            const std::string& path, int depth) {
  if (absl::Status s = Visit(node, path, depth); !s.ok()) return s;
  if (node.IsNull()) return absl::OkStatus();
  bool handled = false;
  if (absl::Status s = WellKnown(node, message, path, &handled); !s.ok()) {
    return s;
  }
  if (handled) return absl::OkStatus();
  const Descriptor* type = message->GetDescriptor();
  if (!node.IsMap()) {
    return Fail(node, path,
                absl::StrCat("expected a mapping (", type->name(), ": ",
                             Known(type), ")"));
  }
  const Reflection* r = message->GetReflection();
  for (auto it = node.begin(); it != node.end(); ++it) {
    // Copies: the iterator hands out a temporary pair of handles.
    const YAML::Node key = it->first;
    const YAML::Node value = it->second;
    if (!key.IsScalar()) return Fail(key, path, "a key must be a plain name");
    const std::string& name = key.Scalar();
    const std::string child =
        path.empty() ? name : absl::StrCat(path, ".", name);
    const FieldDescriptor* field = FindField(type, name);
    if (field == nullptr) {
      if (options_.ignore_unknown_fields) continue;
      return Fail(
          key, path,
          absl::StrCat("unknown field \"", absl::CHexEscape(name), "\" (",
                       type->name(), " has ", Known(type), ")"));
    }
    if (const auto* oneof = field->real_containing_oneof()) {
      const FieldDescriptor* set = r->GetOneofFieldDescriptor(*message, oneof);
      if (set != nullptr && set != field && !value.IsNull()) {
        return Fail(key, path,
                    absl::StrCat("\"", field->json_name(), "\" and \"",
                                 set->json_name(), "\" are both set; ",
                                 oneof->name(), " takes one"));
      }
    }
    if (absl::Status s = Field(value, message, field, child, depth + 1);
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

absl::Status Mapper::Field(const YAML::Node& node,
                           google::protobuf::Message* message,
                           const FieldDescriptor* field,
                           const std::string& path, int depth) {
  if (absl::Status s = Visit(node, path, depth); !s.ok()) return s;
  if (node.IsNull()) return absl::OkStatus();
  if (field->is_map()) return MapField(node, message, field, path, depth);
  if (field->is_repeated()) {
    if (!node.IsSequence()) {
      return Fail(node, path, "expected a sequence (a YAML list)");
    }
    for (size_t i = 0; i < node.size(); ++i) {
      if (absl::Status s = Value(node[i], message, field,
                                 absl::StrCat(path, "[", i, "]"), depth + 1);
          !s.ok()) {
        return s;
      }
    }
    return absl::OkStatus();
  }
  return Value(node, message, field, path, depth);
}

absl::Status Mapper::MapField(const YAML::Node& node,
                              google::protobuf::Message* message,
                              const FieldDescriptor* field,
                              const std::string& path, int depth) {
  if (!node.IsMap()) return Fail(node, path, "expected a mapping");
  const Reflection* r = message->GetReflection();
  const Descriptor* entry_type = field->message_type();
  const FieldDescriptor* key_field = entry_type->map_key();
  const FieldDescriptor* value_field = entry_type->map_value();
  for (auto it = node.begin(); it != node.end(); ++it) {
    const YAML::Node key = it->first;
    const YAML::Node value = it->second;
    if (!key.IsScalar()) return Fail(key, path, "a map key must be a scalar");
    const std::string child = absl::StrCat(path, "[", key.Scalar(), "]");
    google::protobuf::Message* entry = r->AddMessage(message, field);
    if (absl::Status s = Value(key, entry, key_field, child, depth + 1);
        !s.ok()) {
      return s;
    }
    if (value.IsNull()) continue;
    if (absl::Status s = Value(value, entry, value_field, child, depth + 1);
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

absl::Status Mapper::Value(const YAML::Node& node,
                           google::protobuf::Message* message,
                           const FieldDescriptor* field,
                           const std::string& path, int depth) {
  if (absl::Status s = Visit(node, path, depth); !s.ok()) return s;
  const Reflection* r = message->GetReflection();
  const bool repeated = field->is_repeated();
  if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
    google::protobuf::Message* child = repeated
                                           ? r->AddMessage(message, field)
                                           : r->MutableMessage(message, field);
    return Object(node, child, path, depth);
  }
  if (!node.IsScalar()) {
    return Fail(
        node, path,
        absl::StrCat("expected a single value (", field->type_name(), ")"));
  }
  const std::string& text = node.Scalar();
  auto bad = [&](absl::string_view what) {
    return Fail(node, path,
                absl::StrCat("\"", absl::CHexEscape(text), "\" is not ", what));
  };
  switch (field->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32: {
      auto v = ParseInt<int32_t>(text);
      if (!v.ok()) return bad("a 32-bit integer");
      repeated ? r->AddInt32(message, field, *v)
               : r->SetInt32(message, field, *v);
      break;
    }
    case FieldDescriptor::CPPTYPE_INT64: {
      auto v = ParseInt<int64_t>(text);
      if (!v.ok()) return bad("a 64-bit integer");
      repeated ? r->AddInt64(message, field, *v)
               : r->SetInt64(message, field, *v);
      break;
    }
    case FieldDescriptor::CPPTYPE_UINT32: {
      auto v = ParseInt<uint32_t>(text);
      if (!v.ok()) return bad("an unsigned 32-bit integer");
      repeated ? r->AddUInt32(message, field, *v)
               : r->SetUInt32(message, field, *v);
      break;
    }
    case FieldDescriptor::CPPTYPE_UINT64: {
      auto v = ParseInt<uint64_t>(text);
      if (!v.ok()) return bad("an unsigned 64-bit integer");
      repeated ? r->AddUInt64(message, field, *v)
               : r->SetUInt64(message, field, *v);
      break;
    }
    case FieldDescriptor::CPPTYPE_DOUBLE:
    case FieldDescriptor::CPPTYPE_FLOAT: {
      double v = 0;
      if (!absl::SimpleAtod(text, &v) || std::isnan(v)) return bad("a number");
      if (field->cpp_type() == FieldDescriptor::CPPTYPE_DOUBLE) {
        repeated ? r->AddDouble(message, field, v)
                 : r->SetDouble(message, field, v);
      } else {
        const float f = static_cast<float>(v);
        repeated ? r->AddFloat(message, field, f)
                 : r->SetFloat(message, field, f);
      }
      break;
    }
    case FieldDescriptor::CPPTYPE_BOOL: {
      const std::string lower = absl::AsciiStrToLower(text);
      if (lower != "true" && lower != "false") return bad("true or false");
      repeated ? r->AddBool(message, field, lower == "true")
               : r->SetBool(message, field, lower == "true");
      break;
    }
    case FieldDescriptor::CPPTYPE_ENUM: {
      auto v = Enum(node, field->enum_type(), path);
      if (!v.ok()) return v.status();
      repeated ? r->AddEnum(message, field, *v)
               : r->SetEnum(message, field, *v);
      break;
    }
    case FieldDescriptor::CPPTYPE_STRING: {
      std::string value = text;
      if (field->type() == FieldDescriptor::TYPE_BYTES) {
        std::string decoded;
        if (!absl::Base64Unescape(text, &decoded) &&
            !absl::WebSafeBase64Unescape(text, &decoded)) {
          return bad("base64 (bytes fields are base64, as in JSON)");
        }
        value = std::move(decoded);
      }
      repeated ? r->AddString(message, field, std::move(value))
               : r->SetString(message, field, std::move(value));
      break;
    }
    case FieldDescriptor::CPPTYPE_MESSAGE:
      break;  // Handled above.
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status YamlToMessage(absl::string_view yaml,
                           google::protobuf::Message* message,
                           const YamlToMessageOptions& options) {
  message->Clear();
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    std::string where;
    if (e.mark.line >= 0) {
      where = absl::StrCat("line ", e.mark.line + 1, ", column ",
                           e.mark.column + 1, ": ");
    }
    return absl::InvalidArgumentError(
        absl::StrCat(where, "not valid YAML: ", e.msg));
  }
  try {
    Mapper mapper(options);
    return mapper.Object(root, message, "", 0);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("unusable YAML: ", e.msg));
  }
}

std::vector<std::string> YamlItemPositions(absl::string_view yaml,
                                           absl::string_view key) {
  std::vector<std::string> out;
  try {
    const YAML::Node root = YAML::Load(std::string(yaml));
    if (!root.IsMap()) return out;
    const YAML::Node list = root[std::string(key)];
    if (!list.IsSequence()) return out;
    for (const YAML::Node& item : list) {
      const YAML::Mark mark = item.Mark();
      out.push_back(mark.line < 0
                        ? std::string()
                        : absl::StrCat("line ", mark.line + 1, ", column ",
                                       mark.column + 1, ": "));
    }
  } catch (const YAML::Exception&) {
    out.clear();
  }
  return out;
}

}  // namespace sockagent
