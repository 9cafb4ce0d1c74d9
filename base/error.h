// Errors: every user-facing failure is an engine::Error with a one-line message that names the op,
// the tensor and the shapes involved. ENGINE_CHECK builds the message only when the check fails.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace engine {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
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
