#include "agent/labels.h"

#include <algorithm>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace sockagent {
namespace {

// A key as shown in a message: at most 40 bytes, escaped.
std::string Shown(absl::string_view key) {
  constexpr size_t kShown = 40;
  if (key.size() <= kShown) return absl::StrCat("\"", absl::CEscape(key), "\"");
  return absl::StrCat("\"", absl::CEscape(key.substr(0, kShown)), "...\"");
}

}  // namespace

size_t LabelsBytes(const Labels& labels) {
  size_t n = 0;
  for (const auto& [key, value] : labels) n += key.size() + value.size();
  return n;
}

absl::Status CheckLabels(const Labels& labels, absl::string_view field) {
  if (labels.size() > kMaxLabels) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": ", labels.size(), " labels; at most ",
                     kMaxLabels, " labels per object"));
  }
  size_t total = 0;
  for (const auto& [key, value] : labels) {
    if (key.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": a label key is empty"));
    }
    const size_t slash = key.rfind('/');
    if (slash == std::string::npos) {
      if (key.size() > kMaxLabelNameBytes) {
        return absl::InvalidArgumentError(
            absl::StrCat(field, ": label key ", Shown(key), " is ", key.size(),
                         " bytes; at most ", kMaxLabelNameBytes, " bytes (",
                         kMaxPrefixedLabelKeyBytes, " with a prefix/)"));
      }
    } else {
      const size_t name = key.size() - slash - 1;
      if (key.size() > kMaxPrefixedLabelKeyBytes) {
        return absl::InvalidArgumentError(
            absl::StrCat(field, ": label key ", Shown(key), " is ", key.size(),
                         " bytes; at most ", kMaxPrefixedLabelKeyBytes,
                         " bytes with a prefix/"));
      }
      if (name == 0 || name > kMaxLabelNameBytes) {
        return absl::InvalidArgumentError(
            absl::StrCat(field, ": label key ", Shown(key), " has a ", name,
                         "-byte name after its prefix/; it must be 1 to ",
                         kMaxLabelNameBytes, " bytes"));
      }
    }
    if (value.size() > kMaxLabelValueBytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ": the value of label ", Shown(key), " is ", value.size(),
          " bytes; at most ", kMaxLabelValueBytes, " bytes"));
    }
    total += key.size() + value.size();
  }
  if (total > kMaxLabelsTotalBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": ", total, " bytes of keys and values; at most ",
                     kMaxLabelsTotalBytes, " bytes of labels per object"));
  }
  return absl::OkStatus();
}

}  // namespace sockagent
