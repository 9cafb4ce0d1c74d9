// bench_kernels registry (llm.c kernel-lab style). Each op family adds bench/bench_<family>.cpp
// with a BENCH_REGISTER(family) block that calls runner.run() once per kernel and shape.
// run() first validates (the body's result against a reference, e.g. the CPU device or a naive
// loop), then times: warm-up, repeats, median; on a CUDA device with events after an L2 flush.
// It reports time, GB/s and/or GFLOP/s and the fraction of the machine's measured peak (memcpy
// bandwidth and OpenBLAS sgemm rate on the CPU; device-to-device copy bandwidth on a GPU).
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "engine/device.h"
#include "engine/tensor.h"

namespace engine::bench {

struct Work {
  double bytes = 0;  // bytes read + written by one call (the kernel's compulsory traffic)
  double flops = 0;  // floating-point operations of one call (GEMM/conv: 2*M*N*K)
};

class Runner {
 public:
  virtual ~Runner() = default;
  // kernel: e.g. "add_fwd"; shape: human-readable, e.g. "4x64x128x128 + 4x64x128x128".
  // validate returns an empty string when the result is right, else what is wrong.
  virtual void run(const std::string& kernel, const std::string& shape, Device device, Work work,
                   const std::function<std::string()>& validate, const std::function<void()>& body) = 0;
  // Devices to benchmark on (cpu, and cuda when a real GPU is present), and whether to use the
  // small "quick" shape set (tests and the emulated build).
  virtual const std::vector<Device>& devices() const = 0;
  virtual bool quick() const = 0;
};

// Helpers shared by the bench files.
// "4x64x64x128".
std::string shape_name(const Shape& s);
// The shape to use: unchanged, or in quick mode smaller (rank >= 3: dims 1 and 2 divided by 8, the
// spatial dims of [N,H,W,C] / [N,H,W]; rank 1: divided by 64).
Shape scaled(Shape s, bool quick);
// "" when got matches want within tol * (1 + |want|) everywhere, else the first mismatch.
std::string compare(const std::vector<float>& got, const std::vector<double>& want, double tol);

using BenchFn = void (*)(Runner&);
int register_bench(const char* family, BenchFn fn);
struct Entry {
  const char* family;
  BenchFn fn;
};
std::vector<Entry>& registry();

}  // namespace engine::bench

#define BENCH_REGISTER(family)                                                                    \
  static void bench_##family(::engine::bench::Runner& runner);                                    \
  static const int bench_reg_##family = ::engine::bench::register_bench(#family, bench_##family); \
  static void bench_##family(::engine::bench::Runner& runner)
