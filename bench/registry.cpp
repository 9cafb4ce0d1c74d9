#include "bench/bench.h"

namespace engine::bench {

std::vector<Entry>& registry() {
  static std::vector<Entry> r;
  return r;
}

int register_bench(const char* family, BenchFn fn) {
  registry().push_back({family, fn});
  return (int)registry().size();
}

}  // namespace engine::bench
