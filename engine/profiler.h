// Per-op time breakdown: every kernel dispatch (ENGINE_DISPATCH in engine/ops/op_utils.h) is timed
// when profiling is on, keyed by the op name the dispatch names (e.g. "conv2d_backward_data", "relu",
// "copy"). Off by default; then a dispatch costs one relaxed atomic load. Nested dispatches (an op
// whose kernel calls another op) count once, in the outermost op. On a CUDA device the stream is
// synchronised before and after the op while profiling, so the time is the kernel's, not the launch's
// (profiling therefore slows GPU runs; use it to find bottlenecks, not to measure throughput).
// Used by the training-step benchmark (bench_train) and `engine-train --profile`.
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/device.h"

namespace engine::profiler {

extern std::atomic<bool> g_enabled;
inline bool enabled() { return g_enabled.load(std::memory_order_relaxed); }
void set_enabled(bool on);

struct Entry {
  std::string name;
  int64_t calls = 0;
  double seconds = 0;
};
// Entries sorted by time, largest first.
std::vector<Entry> snapshot();
void reset();
// A table "op  calls  ms  % of wall" over the entries, plus a line for the time outside any op
// (autograd bookkeeping, allocation, Python-free glue) measured against `wall_seconds`.
std::string report(double wall_seconds);

// Times one dispatch; a no-op unless profiling is on and this is the outermost dispatch.
class Scope {
 public:
  Scope(const char* name, Device d);
  Scope(const std::string& name, Device d) : Scope(name.c_str(), d) {}
  ~Scope();
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  const char* name_ = nullptr;  // null = not timing
  bool counted_ = false;        // this scope incremented the nesting depth
  Device device_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace engine::profiler
