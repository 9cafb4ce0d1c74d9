// Python's str.strip() and str.split() on std::string, for the readers of text files that PaddleSeg
// and PaddleX read with those calls (file lists, label lists, HTTP headers): ASCII whitespace only,
// as Python has it for the bytes these files hold. Tested by tests/test_data.cpp (Text.*).
#pragma once
#include <string>
#include <vector>

namespace engine::text {

inline constexpr const char* kAsciiWhitespace = " \t\n\r\v\f";

// str.strip(): whitespace removed at both ends.
inline std::string strip(const std::string& s) {
  const size_t b = s.find_first_not_of(kAsciiWhitespace);
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(kAsciiWhitespace) - b + 1);
}

// str.split(sep) with a separator (non-empty): every occurrence splits, empty items kept.
inline std::vector<std::string> split(const std::string& s, const std::string& sep) {
  std::vector<std::string> out;
  size_t start = 0;
  for (size_t p; (p = s.find(sep, start)) != std::string::npos; start = p + sep.size())
    out.push_back(s.substr(start, p - start));
  out.push_back(s.substr(start));
  return out;
}

// str.split() without a separator: runs of whitespace split, no empty items.
inline std::vector<std::string> split_whitespace(const std::string& s) {
  std::vector<std::string> out;
  size_t p = s.find_first_not_of(kAsciiWhitespace);
  while (p != std::string::npos) {
    const size_t e = s.find_first_of(kAsciiWhitespace, p);
    out.push_back(s.substr(p, e == std::string::npos ? std::string::npos : e - p));
    p = e == std::string::npos ? e : s.find_first_not_of(kAsciiWhitespace, e);
  }
  return out;
}

}  // namespace engine::text
