// Per-op time breakdown: every kernel dispatch (ENGINE_DISPATCH in engine/ops/op_utils.h) is timed
// when profiling is on, keyed by the op name the dispatch names (e.g. "conv2d_backward_data", "relu",
// "copy"). Off by default; then a dispatch costs one relaxed atomic load. Nested dispatches (an op
// whose kernel calls another op) count once, in the outermost op. On a CUDA device the stream is
// synchronised before and after the op while profiling, so the time is the kernel's, not the launch's
// (profiling therefore slows GPU runs; use it to find bottlenecks, not to measure throughput).
// Each dispatch also states its Work (arithmetic and minimum memory traffic); with an ideal model
// installed (engine/roofline.h) the profile sums every dispatch's ideal time next to its measured one.
// Used by the training-step benchmark (bench_train, --roofline) and `engine-train --profile`.
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/device.h"
#include "kernels/cpu/conv_cpu.h"  // ConvParams, ConvPass

namespace engine::profiler {

extern std::atomic<bool> g_enabled;
inline bool enabled() { return g_enabled.load(std::memory_order_relaxed); }
void set_enabled(bool on);

// What one dispatch has to do at least, whatever the kernel: the roofline's input.
struct Work {
  double flops = 0;  // arithmetic, a multiply-add counting 2; 0 where it is negligible next to the traffic
  double bytes = 0;  // every input read once and every output written once, in their storage types
  // Convolution passes: the problem, so the roofline can time the best engine for it.
  bool is_conv = false;
  kernels::ConvParams conv;
  kernels::ConvPass conv_pass = kernels::ConvPass::Fwd;
};

// Ideal seconds of one dispatch of `op` with `work` on `device` (engine/roofline.h installs one).
// Called outside the timed region, so a model may measure (once per problem) on the device.
using IdealModel = std::function<double(const char* op, Device device, const Work& work)>;
void set_ideal_model(IdealModel model);  // an empty function removes it

struct Entry {
  std::string name;
  int64_t calls = 0;
  double seconds = 0;
  double flops = 0, bytes = 0;  // summed Work
  double ideal_seconds = 0;     // summed ideal model (0 without one)
};
// Entries sorted by time, largest first.
std::vector<Entry> snapshot();
void reset();
// A table "op  calls  ms  % of wall  GB/s  GFLOP/s" (the rates achieved on the stated Work) over the entries, plus a
// line for the time outside any op (autograd bookkeeping, allocation, Python-free glue) measured against
// `wall_seconds`.
std::string report(double wall_seconds);

// Times one dispatch; a no-op unless profiling is on and this is the outermost dispatch. `work` is
// a callable returning the dispatch's Work, called only then.
class Scope {
 public:
  template <class WorkFn>
  Scope(const char* name, Device d, const WorkFn& work) : device_(d) {
    if (enter(name)) start(work());
  }
  ~Scope();
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  bool enter(const char* name);  // true when this dispatch is the one to time
  void start(const Work& work);
  const char* name_ = nullptr;  // null = not timing
  bool counted_ = false;        // this scope incremented the nesting depth
  Device device_;
  Work work_;
  double ideal_ = 0;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace engine::profiler
