// The per-op test harness. For an op and a table of input shapes, check_op():
//  1. forward on the CPU device against a naive reference written in the test, in double;
//  2. backward against central finite differences of that reference, in double
//     (loss = sum_k <out_k, w_k> with fixed random weights w_k);
//  3. the same forward and backward on the CUDA device (emulated in CI, real on a GPU), every
//     output and every input gradient compared with the CPU device;
//  4. each case with contiguous inputs and with non-contiguous (strided) views of the same values;
//  5. guard bytes around every buffer (allocator guard mode) checked after each run;
//  6. run-to-run determinism: two runs on one device give bit-identical outputs and gradients.
// Integer outputs (e.g. argmax indices) are compared exactly.
#pragma once
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace engine::testing {

// The larger of a running worst difference and a new one, where a NaN wins (std::max(worst, NaN)
// returns worst, which would let a NaN result pass the bound checked afterwards).
inline double worse_of(double worst, double d) { return std::isnan(worst) || d <= worst ? worst : d; }

using RefInputs = std::vector<std::vector<double>>;
// The engine side: builds outputs from inputs (all on one device).
using EngineFn = std::function<std::vector<Tensor>(const std::vector<Tensor>& inputs)>;
// The reference: inputs (row-major, double) and their shapes -> outputs (row-major, double).
using RefFn =
    std::function<std::vector<std::vector<double>>(const RefInputs& inputs, const std::vector<Shape>& shapes)>;
// Optional custom input values: (input index, shape, seed) -> row-major values.
using InputGen = std::function<std::vector<float>(int input, const Shape& shape, uint64_t seed)>;

struct OpCase {
  std::string name;
  std::vector<Shape> shapes;  // one per input
};

struct CheckOptions {
  double fwd_atol = 1e-5, fwd_rtol = 1e-5;        // engine CPU vs reference
  double grad_atol = 2e-3, grad_rtol = 2e-2;      // analytic vs finite differences
  double device_atol = 1e-5, device_rtol = 1e-5;  // CUDA device vs CPU device
  double fd_eps = 1e-3;
  float lo = -2.f, hi = 2.f;         // default uniform input range
  InputGen input_gen;                // overrides lo/hi
  std::vector<bool> differentiable;  // per input; default: all f32 inputs
  bool check_grad = true;
  bool check_noncontiguous = true;
  int max_fd_elements = 48;  // finite differences on at most this many elements per input
  uint64_t seed = 1234;
};

void check_op(const std::string& op, const std::vector<OpCase>& cases, const EngineFn& fn, const RefFn& ref,
              const CheckOptions& opt = {});

// Helpers for references: row-major index <-> coordinates.
std::vector<int64_t> unravel(int64_t idx, const Shape& shape);
int64_t ravel(const std::vector<int64_t>& coord, const Shape& shape);

// True when the tests can use a CUDA device (emulated or real).
bool have_cuda();
// The devices a test runs on: the CPU, and the (real or emulated) GPU when there is one.
std::vector<Device> test_devices();
// got equals want element for element, bit for bit as floats (a NaN matches a NaN); `what` names the
// comparison in the failure.
void expect_same_bits(const std::vector<float>& got, const std::vector<float>& want, const std::string& what);

// |got - want| / |want| in the 2-norm over the whole vector (the distance of a mixed-precision
// result from the f32 one).
double relative_l2_distance(const std::vector<float>& got, const std::vector<float>& want);

// f must throw an engine Error whose message is one line and contains every part.
void expect_one_line_error(const std::function<void()>& f, const std::vector<std::string>& parts);

}  // namespace engine::testing
