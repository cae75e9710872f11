// Quoting caller input inside status messages. Ids, labels, paths, host
// and service names come from the caller and may hold any bytes: a message
// that echoes them raw can carry a NUL, a terminal escape or a megabyte.
// QuoteInput shows them C-escaped and bounded:
//
//   absl::NotFoundError(absl::StrCat("connection ", QuoteInput(id),
//                                    " not found"));
//   // id "conn-\0\x1b[2J" -> connection 'conn-\x00\x1b[2J' not found
#ifndef SOCKAGENT_AGENT_QUOTE_H_
#define SOCKAGENT_AGENT_QUOTE_H_

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace sockagent {

// At most this many bytes of the input are shown (escaped, up to 4 times
// as many characters).
inline constexpr size_t kMaxQuotedInputBytes = 128;

// 'input' in single quotes with every byte outside printable ASCII, and
// the quote characters and backslash, C-escaped (\n, \t, \x00, \x1b,
// \xc3...; absl::CHexEscape). Input longer than `max_bytes` is cut there
// and followed by "... (N bytes)". The result is printable ASCII only.
std::string QuoteInput(absl::string_view input,
                       size_t max_bytes = kMaxQuotedInputBytes);

}  // namespace sockagent

#endif  // SOCKAGENT_AGENT_QUOTE_H_
