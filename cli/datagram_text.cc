#include "cli/datagram_text.h"

namespace sockctl {

std::string DatagramLine(absl::string_view datagram) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string line;
  line.reserve(datagram.size() + 1);
  for (const char c : datagram) {
    const unsigned char byte = static_cast<unsigned char>(c);
    switch (byte) {
      case '\\':
        line += "\\\\";
        break;
      case '\n':
        line += "\\n";
        break;
      case '\r':
        line += "\\r";
        break;
      case '\t':
        line += "\\t";
        break;
      default:
        if (byte >= 0x20 && byte <= 0x7e) {
          line += c;
        } else {
          line += "\\x";
          line += kHex[byte >> 4];
          line += kHex[byte & 0xf];
        }
    }
  }
  line += '\n';
  return line;
}

}  // namespace sockctl
