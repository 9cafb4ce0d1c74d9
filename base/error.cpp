#include "base/error.h"

#include <algorithm>
#include <cstdio>

namespace engine {

std::string one_line_message(const std::string& message) {
  bool clean = message.size() <= kMaxErrorMessage;
  for (size_t i = 0; clean && i < message.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(message[i]);
    clean = c >= 0x20 && c != 0x7f;
  }
  if (clean) return message;
  std::string out;
  out.reserve(std::min(message.size(), kMaxErrorMessage) + 40);
  size_t i = 0;
  for (; i < message.size() && out.size() < kMaxErrorMessage; ++i) {
    const unsigned char c = static_cast<unsigned char>(message[i]);
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7f) {
      char hex[5];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      out += hex;
    } else {
      out += static_cast<char>(c);
    }
  }
  if (i < message.size()) {
    // Bytes from 0x80 up are copied one for one: step back to the start of a UTF-8 sequence.
    while (i > 0 && (static_cast<unsigned char>(message[i]) & 0xC0) == 0x80) {
      out.pop_back();
      --i;
    }
    out += "... (" + std::to_string(message.size() - i) + " more characters)";
  }
  return out;
}

}  // namespace engine
