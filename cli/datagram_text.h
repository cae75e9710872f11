// The pipe format of UDP datagrams (`sockctl recv` on a UDP connection):
// one datagram per line, so that boundaries survive a pipe, `read -r` and
// line-oriented tools. Each byte is written as itself when it is printable
// ASCII (0x20..0x7e) other than the backslash; otherwise as an escape:
//   \\  backslash      \n  newline (0x0a)    \r  carriage return (0x0d)
//   \t  tab (0x09)     \xNN  any other byte, two lowercase hex digits
// and the line ends with a newline. An empty datagram is an empty line.
// The escapes are a subset of what `sockctl send DATA` and printf(1)'s %b
// read back (\x takes at most two digits there), so
//   sockctl recv ID --wait 1s | while IFS= read -r d; do
//     sockctl send OTHER "$d"; done
// forwards datagram by datagram. No gRPC here.
#pragma once

#include <string>

#include "absl/strings/string_view.h"

namespace sockctl {

// `datagram` in the format above, with its terminating newline.
std::string DatagramLine(absl::string_view datagram);

}  // namespace sockctl
