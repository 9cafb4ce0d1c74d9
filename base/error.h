// Errors: every user-facing failure is an engine::Error with a one-line message that names the op,
// the tensor and the shapes involved. ENGINE_CHECK builds the message only when the check fails.
#pragma once
#include <cstddef>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace engine {

// What an Error's message becomes: one line whatever the caller quoted into it (a label, a YAML
// scalar or an XML field read from a file may hold newlines and other control bytes). Control
// characters are written as escapes (\n, \t, \x01: a backslash and letters), and a message
// longer than kMaxErrorMessage characters is cut at a character boundary, saying how much was cut.
inline constexpr size_t kMaxErrorMessage = 10000;
std::string one_line_message(const std::string& message);

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(one_line_message(message)) {}
  explicit Error(const char* message) : Error(std::string(message)) {}
};

template <class... A>
[[noreturn]] void fail(const A&... parts) {
  std::ostringstream s;
  (s << ... << parts);
  throw Error(s.str());
}

// A CUDA graph capture that cannot complete (engine/cuda_graph.h): CUDA refused a call, or the engine
// refused work it cannot do inside a capture (a first-use algorithm search, memory it cannot get
// while capturing). The graph stays empty, none of the captured work ran, and the caller runs the
// work without a graph instead. Here so that kernels and allocators below the engine can throw it.
class CaptureFailed : public Error {
 public:
  using Error::Error;
};

template <class... A>
[[noreturn]] void fail_capture(const A&... parts) {
  std::ostringstream s;
  (s << ... << parts);
  throw CaptureFailed(s.str());
}

// "[2, 3, 4]" for messages.
template <class T>
std::string shape_str(const std::vector<T>& v) {
  std::ostringstream s;
  s << '[';
  for (size_t i = 0; i < v.size(); ++i) s << (i ? ", " : "") << v[i];
  s << ']';
  return s.str();
}

}  // namespace engine

#define ENGINE_CHECK(cond, ...)               \
  do {                                        \
    if (!(cond)) ::engine::fail(__VA_ARGS__); \
  } while (0)
