#include <algorithm>
#include <cmath>
#include <sstream>

#include "bench/bench.h"

namespace engine::bench {

std::vector<Entry>& registry() {
  static std::vector<Entry> r;
  return r;
}

std::string shape_name(const Shape& s) {
  std::ostringstream o;
  for (size_t i = 0; i < s.size(); ++i) o << (i ? "x" : "") << s[i];
  return o.str();
}

Shape scaled(Shape s, bool quick) {
  if (!quick) return s;
  if (s.size() >= 3) {
    s[1] = std::max<int64_t>(1, s[1] / 8);
    s[2] = std::max<int64_t>(1, s[2] / 8);
  } else if (s.size() == 1) {
    s[0] = std::max<int64_t>(1, s[0] / 64);
  }
  return s;
}

std::string compare(const std::vector<float>& got, const std::vector<double>& want, double tol) {
  if (got.size() != want.size()) return "size " + std::to_string(got.size()) + " vs " + std::to_string(want.size());
  for (size_t i = 0; i < got.size(); ++i)
    if (!(std::fabs(got[i] - want[i]) <= tol * (1 + std::fabs(want[i]))))
      return "element " + std::to_string(i) + " is " + std::to_string(got[i]) + ", expected " + std::to_string(want[i]);
  return "";
}

int register_bench(const char* family, BenchFn fn) {
  registry().push_back({family, fn});
  return (int)registry().size();
}

}  // namespace engine::bench
