#include "agent/quote.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace sockagent {

std::string QuoteInput(absl::string_view input, size_t max_bytes) {
  const bool cut = input.size() > max_bytes;
  std::string out = absl::StrCat(
      "'", absl::CHexEscape(cut ? input.substr(0, max_bytes) : input), "'");
  if (cut) absl::StrAppend(&out, "... (", input.size(), " bytes)");
  return out;
}

}  // namespace sockagent
