// The roofline of a training step (bench_train --roofline): every profiled dispatch gets an ideal
// time on the present device from its profiler::Work (engine/profiler.h), and the measured and ideal
// times are summed per op family and for the step.
//   convolutions  real GPU: the fastest algorithm cuDNN measures for the problem over both layouts
//                 (NHWC and NCHW), deterministic or not, with every math type the precision allows
//                 (kernels::conv2d_best_ms_cudnn), measured once per problem and pass;
//                 CPU and emulated GPU: max(flops / peak, bytes / bandwidth).
//   matmul        max(flops / peak, bytes / bandwidth).
//   other ops     bytes / bandwidth (each input read once and each output written once).
// Both rates are measured on the device, at the step's precision:
//   peak       the arithmetic rate of a reference convolution (1x1, 1024 -> 1024 channels at 64x64;
//              batch 16 on a GPU, 1 on a CPU), timed with the same rule as the step's convolutions
//              (its fastest cuDNN algorithm on a GPU; the CPU kernel, best of 3, on a CPU);
//   bandwidth  bytes read plus bytes written per second, best of 5: on a GPU a device-to-device copy of
//              1 GiB (cudaMemcpyAsync); on a CPU the better of a copy and an in-place update
//              (x = 0.5 x + y) of 256 MiB arrays split over the OpenMP threads (roofline.cpp says why
//              both).
// The emulated GPU's kernels run on the host, so its machine is the CPU's.
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "engine/device.h"
#include "engine/precision.h"
#include "engine/profiler.h"

namespace engine::roofline {

struct Machine {
  Device device;
  Precision precision = Precision::FP32;
  double peak_flops = 0;                  // per second
  double bandwidth = 0;                   // bytes per second
  bool cudnn_convs = false;               // convolutions' ideal from cuDNN's fastest algorithm (real GPU)
  std::string peak_from, bandwidth_from;  // how each rate was measured
};

// Measures the device's rates at the precision (a second or so).
Machine measure(Device device, Precision precision);

// The ideal seconds of one dispatch (see the file comment). On a real GPU a convolution problem
// seen for the first time is measured now and remembered.
double ideal_seconds(const Machine& m, const profiler::Work& w);

// Installs ideal_seconds(m, ...) as the profiler's ideal model; profiler::set_ideal_model({})
// removes it.
void install(const Machine& m);

// The family of an op: the part of its bench_kernels row before the '/' (engine/ops/op_list.inc),
// e.g. "conv" for conv2d_backward_data, "batch_norm", "elementwise" (which includes copy and fill).
std::string op_family(std::string_view op);

struct FamilyRow {
  std::string family;
  int64_t calls = 0;
  double seconds = 0, ideal_seconds = 0, flops = 0, bytes = 0;
};
// The profile's entries summed per family, largest measured time first.
std::vector<FamilyRow> by_family(const std::vector<profiler::Entry>& entries);

// The table bench_train prints: the two rates, one row per family (measured ms, ideal ms, their
// ratio, GFLOP, GB), the sum over ops, and the step: `step_seconds` (an un-profiled step) against
// the sum of the ideal times (time outside ops, such as autograd bookkeeping, has no ideal).
std::string report(const Machine& m, const std::vector<profiler::Entry>& entries, double step_seconds);

}  // namespace engine::roofline
