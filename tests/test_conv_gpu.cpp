// labels: gpu
// conv2d on a real GPU (cuDNN 9 through kernels/cudnn/conv_cudnn.cpp) against the CPU (oneDNN):
// forward, and the gradients of x, w and b, for every flavour the models use (3x3 s1/s2, 1x1,
// depthwise, grouped, dilated, odd sizes, channels not multiples of 8, with/without bias) at larger
// shapes than the emulated tests can afford, plus two model layers; run-to-run determinism of the
// GPU results (only deterministic cuDNN algorithms are chosen) and a non-contiguous input. Mixed
// precision (engine/precision.h): cuDNN's bf16 and fp16 convolutions against the CPU kernel at the
// same precision (the same rounded inputs and f32 accumulation; the GPU also rounds its outputs to
// the low type), and TF32 math against the CPU's fp32.
// On the emulated GPU the same runs against the emulated cuDNN (kernels/emu/cudnn_emu.cpp: the CPU
// kernel behind cuDNN's API), which checks the engine's side of it. Without a GPU (no device, or a
// CPU-only build) the program exits with 77 at once, which CTest reports as skipped.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "engine/device.h"
#include "engine/ops/conv.h"
#include "engine/precision.h"
#include "engine/tensor.h"
#include "kernels/cpu/cpu_isa.h"

#if defined(ENGINE_WITH_CUDA)
namespace engine {
namespace {

struct Case {
  std::string name;
  Shape x, w;
  bool bias;
  Conv2dArgs a;
};

Conv2dArgs args(int stride, int pad, int dil = 1, int groups = 1) {
  Conv2dArgs a;
  a.stride_h = a.stride_w = stride;
  a.pad_h = a.pad_w = pad;
  a.dilation_h = a.dilation_w = dil;
  a.groups = groups;
  return a;
}

std::vector<Case> cases() {
  Conv2dArgs asym;
  asym.stride_h = 1, asym.stride_w = 2, asym.pad_h = 0, asym.pad_w = 1, asym.dilation_h = 2, asym.dilation_w = 1;
  return {{"3x3 s1 p1 bias", {2, 33, 31, 20}, {36, 20, 3, 3}, true, args(1, 1)},
          {"3x3 s2 p1 odd", {3, 37, 29, 13}, {24, 13, 3, 3}, false, args(2, 1)},
          {"1x1", {2, 40, 24, 64}, {128, 64, 1, 1}, true, args(1, 0)},
          {"1x1 s2", {2, 17, 15, 12}, {10, 12, 1, 1}, false, args(2, 0)},
          {"depthwise 3x3 s2", {2, 64, 64, 128}, {128, 1, 3, 3}, false, args(2, 1, 1, 128)},
          {"depthwise 3x3 s1 bias odd C", {2, 21, 19, 37}, {37, 1, 3, 3}, true, args(1, 1, 1, 37)},
          {"groups 2", {2, 19, 23, 30}, {18, 15, 3, 3}, true, args(1, 1, 1, 2)},
          {"dilation 2", {2, 30, 27, 11}, {14, 11, 3, 3}, true, args(1, 2, 2)},
          {"asymmetric 2x3", {2, 25, 33, 7}, {9, 7, 2, 3}, true, asym},
          {"STDC stage3 3x3 128->64 @64", {2, 64, 64, 128}, {64, 128, 3, 3}, false, args(1, 1)},
          {"DarkNet 3x3 s2 64->128 @104", {2, 104, 104, 64}, {128, 64, 3, 3}, false, args(2, 1)},
          {"stem 3x3 s2 3->32 @128", {2, 128, 128, 3}, {32, 3, 3, 3}, false, args(2, 1)}};
}

struct Result {
  std::vector<std::vector<float>> t;  // y, gx, gw, gb
};

// x_type: the type x is stored in (bf16 / f16: the activations of --amp_level O2); the leaf whose
// gradient is read is f32 (values exact in x_type), cast to x_type for the convolution.
Result run(const Case& c, Device dev, bool strided_x, DType x_type = DType::F32) {
  Tensor x0 = Tensor::uniform(c.x, 1, -1.f, 1.f).to(x_type).to(DType::F32);
  const double wstd = 1.0 / std::sqrt((double)(c.w[1] * c.w[2] * c.w[3]));
  Tensor w = Tensor::uniform(c.w, 2, (float)-wstd, (float)wstd, dev).set_requires_grad(true);
  Tensor b = c.bias ? Tensor::uniform({c.w[0]}, 3, -1.f, 1.f, dev).set_requires_grad(true) : Tensor();
  Tensor x;
  if (strided_x) {  // the same values as a view with channel stride 2
    Shape wide = c.x;
    wide.back() *= 2;
    Tensor big = Tensor::zeros(wide, DType::F32, dev);
    Tensor view = big.slice(3, 0, wide.back(), 2);
    view.copy_(x0);
    x = view.detach().set_requires_grad(true);
  } else {
    x = x0.to(dev).detach().set_requires_grad(true);
  }
  Tensor y = conv2d(x_type == DType::F32 ? x : x.to(x_type), w, b, c.a);
  const Tensor gy = Tensor::uniform(y.shape(), 4, -1.f, 1.f, dev).to(y.dtype());
  y.backward(gy);
  Result r;
  r.t = {y.to(DType::F32).to_vector(), x.grad().to_vector(), w.grad().to_vector(),
         c.bias ? b.grad().to_vector() : std::vector<float>()};
  return r;
}

// got vs want, element by element, within tol(max |want|) of each tensor.
void compare_within(const Result& got, const Result& want, const std::function<double(double)>& tol_of_scale,
                    const std::string& what) {
  const char* names[] = {"y", "gx", "gw", "gb"};
  for (size_t i = 0; i < want.t.size(); ++i) {
    ASSERT_EQ(got.t[i].size(), want.t[i].size()) << what << " " << names[i];
    double scale = 0;
    for (float v : want.t[i]) scale = std::max(scale, (double)std::fabs(v));
    const double tol = tol_of_scale(scale);
    int shown = 0;
    for (size_t j = 0; j < want.t[i].size(); ++j)
      if (!(std::fabs(got.t[i][j] - want.t[i][j]) <= tol)) {
        ADD_FAILURE() << what << " " << names[i] << "[" << j << "]: gpu " << got.t[i][j] << " vs cpu " << want.t[i][j]
                      << " (tol " << tol << ")";
        if (++shown >= 5) break;
      }
  }
}

// fp32 sums of up to k_terms products in different orders (gw sums over N*Ho*Wo).
void compare(const Result& got, const Result& want, double k_terms, const std::string& what) {
  compare_within(
      got, want, [k_terms](double scale) { return 1e-6 * std::sqrt(k_terms) * 8 * (1 + scale); }, what);
}

// Within rel * (1e-3 + max |want|).
void compare_rel(const Result& got, const Result& want, double rel, const std::string& what) {
  compare_within(
      got, want, [rel](double scale) { return rel * (1e-3 + scale); }, what);
}

TEST(ConvGpu, CudnnMatchesCpu) {
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.name);
    const Result cpu = run(c, Device::cpu(), false);
    const Result gpu = run(c, Device::cuda(0), false);
    const double k = (double)(c.x[0] * c.x[1] * c.x[2]) + (double)(c.w[1] * c.w[2] * c.w[3] * c.w[0]);
    compare(gpu, cpu, k, c.name + " cuda vs cpu");
    const Result again = run(c, Device::cuda(0), false);
    for (size_t i = 0; i < gpu.t.size(); ++i)
      EXPECT_TRUE(gpu.t[i].size() == again.t[i].size() &&
                  std::memcmp(gpu.t[i].data(), again.t[i].data(), gpu.t[i].size() * sizeof(float)) == 0)
          << c.name << ": result " << i << " differs between two identical GPU runs";
  }
}

// Tolerances: the GPU rounds y, gx and gw to the low type (up to half an ulp: 2^-8 of the value for
// bf16's 8 significant bits, 2^-11 for fp16's 11) after an f32 accumulation in another order; 2x that
// of the largest value.
TEST(ConvGpu, Bf16AndFp16MatchTheCpuKernelAtTheSamePrecision) {
  for (const Precision prec : {Precision::BF16, Precision::FP16}) {
    if (prec == Precision::BF16 && !kernels::cpu_has_bf16()) {
      std::printf("bf16 skipped: this host CPU has no AVX512-BF16 / AMX-BF16 for the reference\n");
      continue;
    }
    const double rel = prec == Precision::BF16 ? 2.0 / 256 : 2.0 / 2048;
    const AutocastGuard low(prec);
    for (const Case& c : cases()) {
      SCOPED_TRACE(std::string(precision_name(prec)) + " " + c.name);
      const Result cpu = run(c, Device::cpu(), false);
      const Result gpu = run(c, Device::cuda(0), false);
      compare_rel(gpu, cpu, rel, c.name + " cuda vs cpu");
      const Result again = run(c, Device::cuda(0), false);
      for (size_t i = 0; i < gpu.t.size(); ++i)
        EXPECT_TRUE(std::memcmp(gpu.t[i].data(), again.t[i].data(), gpu.t[i].size() * sizeof(float)) == 0)
            << c.name << ": result " << i << " differs between two identical GPU runs";
    }
  }
}

// O2 (x stored in bf16 / f16, engine/ops/conv.cpp): y and gx are cuDNN's low-type results, gw is
// f32, and the bias gradient is the f32 sum of the low-type gy: within an f32 summation's tolerance
// of the CPU's, far below one 16-bit rounding of it.
TEST(ConvGpu, O2LowActivationsKeepAnF32BiasGradient) {
  for (const Precision prec : {Precision::BF16, Precision::FP16}) {
    if (prec == Precision::BF16 && !kernels::cpu_has_bf16()) {
      std::printf("bf16 skipped: this host CPU has no AVX512-BF16 / AMX-BF16 for the reference\n");
      continue;
    }
    const DType low = prec == Precision::BF16 ? DType::BF16 : DType::F16;
    const double rel = prec == Precision::BF16 ? 4.0 / 256 : 4.0 / 2048;
    const AutocastGuard o2(prec, AmpLevel::O2);
    for (const Case& c : cases()) {
      if (!c.bias) continue;
      SCOPED_TRACE(std::string(precision_name(prec)) + " O2 " + c.name);
      Result cpu = run(c, Device::cpu(), false, low);
      Result gpu = run(c, Device::cuda(0), false, low);
      const Result cpu_gb{{{}, {}, {}, cpu.t[3]}}, gpu_gb{{{}, {}, {}, gpu.t[3]}};  // gb alone
      cpu.t[3].clear();
      gpu.t[3].clear();
      compare_rel(gpu, cpu, rel, c.name + " cuda vs cpu");
      const double k = (double)(c.x[0] * c.x[1] * c.x[2]);
      compare_within(
          gpu_gb, cpu_gb, [k](double scale) { return 1e-6 * std::sqrt(k) * 8 * (1 + scale); }, c.name + " f32");
    }
  }
}

// TF32 products (10-bit mantissas) against the CPU's fp32: within 2^-10 of the largest value.
TEST(ConvGpu, Tf32MatchesCpuFp32) {
  for (const Case& c : cases()) {
    SCOPED_TRACE("tf32 " + c.name);
    const Result cpu = run(c, Device::cpu(), false);
    Result gpu;
    {
      const AutocastGuard tf32(Precision::TF32);
      gpu = run(c, Device::cuda(0), false);
    }
    compare_rel(gpu, cpu, 1.0 / 1024, c.name + " tf32 cuda vs fp32 cpu");
  }
}

TEST(ConvGpu, StridedInput) {
  const Case c = cases()[0];
  const Result a = run(c, Device::cuda(0), false), b = run(c, Device::cuda(0), true);
  compare(b, a, 1e4, "strided vs contiguous");
}

}  // namespace
}  // namespace engine
#endif

int main(int argc, char** argv) {
#if defined(ENGINE_WITH_CUDA)
  if (engine::cuda_available()) {
    ::testing::InitGoogleTest(&argc, argv);
    return RUN_ALL_TESTS();
  }
#endif
  (void)argc;
  (void)argv;
  std::printf("test_conv_gpu: no GPU (real or emulated) in this build/machine; skipped\n");
  return 77;
}
