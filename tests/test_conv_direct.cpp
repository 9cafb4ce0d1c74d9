// labels: kernel
// The hand-written backward-data kernel (kernels/cuda/conv_direct.cu) against the CPU's oneDNN
// backward-data (kernels/cpu/conv_cpu.h), under the emulator in CI and on a real GPU: strides 2 and
// 1, an asymmetric stride with dilation (classes with one, two or no taps), 1x1 stride 2 (a class no
// tap reaches: zeros), odd sizes, channel counts that are not multiples of the channel tiles (64, or
// 32 where Cin <= 32) or of the 16-wide K slabs, more pixels than one tile; in f32, bf16 and f16 (16-bit data widened,
// f32 sums, gx rounded once: within one rounding of the CPU's f32 result from the same 16-bit inputs); twice, bit for
// bit (deterministic); and the shapes it refuses.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "engine/device.h"
#include "engine/ops/copy.h"
#include "engine/tensor.h"
#include "kernels/cpu/conv_cpu.h"
#include "tests/harness/op_check.h"

#if defined(ENGINE_WITH_CUDA)
#include "base/cuda_context.h"
#include "kernels/cuda/conv_direct_cuda.h"

using namespace engine;

namespace {

struct Case {
  std::string name;
  int64_t n, h, w, cin, cout, kh, kw, sh, sw, ph, pw, dh, dw;
};

kernels::ConvParams params_of(const Case& c) {
  kernels::ConvParams p;
  p.n = c.n, p.h = c.h, p.w = c.w, p.cin = c.cin, p.cout = c.cout, p.kh = c.kh, p.kw = c.kw;
  p.stride_h = c.sh, p.stride_w = c.sw, p.pad_h = c.ph, p.pad_w = c.pw, p.dil_h = c.dh, p.dil_w = c.dw;
  p.ho = (c.h + 2 * c.ph - c.dh * (c.kh - 1) - 1) / c.sh + 1;
  p.wo = (c.w + 2 * c.pw - c.dw * (c.kw - 1) - 1) / c.sw + 1;
  return p;
}

// OIHW -> OHWI.
std::vector<float> to_ohwi(const std::vector<float>& w, const kernels::ConvParams& p) {
  std::vector<float> o(w.size());
  for (int64_t co = 0; co < p.cout; ++co)
    for (int64_t ci = 0; ci < p.cin; ++ci)
      for (int64_t r = 0; r < p.kh; ++r)
        for (int64_t s = 0; s < p.kw; ++s)
          o[((co * p.kh + r) * p.kw + s) * p.cin + ci] = w[((co * p.cin + ci) * p.kh + r) * p.kw + s];
  return o;
}

// gy and w_ohwi on the device in the kernel's type; gx widened to f32.
std::vector<float> run_direct(const kernels::ConvParams& p, const Tensor& gy, const Tensor& w_ohwi) {
  // Poisoned output: every element must be written.
  const Tensor gx = copy_contiguous(Tensor::full({p.n, p.h, p.w, p.cin}, NAN, DType::F32, Device::cuda(0)), gy.dtype());
  kernels::conv2d_bwd_data_direct_cuda(p, gy.raw_data(), w_ohwi.raw_data(), gx.raw_data(), compute_stream());
  return copy_contiguous(gx, DType::F32).to_vector();
}

}  // namespace

TEST(ConvDirect, BackwardDataMatchesCpu) {
  if (!engine::testing::have_cuda()) GTEST_SKIP() << "no CUDA device (real or emulated)";
  const std::vector<Case> cases = {
      {"3x3 s2 p1 (DarkNet 32->64)", 2, 24, 24, 32, 64, 3, 3, 2, 2, 1, 1, 1, 1},
      {"3x3 s2 p1 odd sizes and channels", 2, 13, 11, 13, 20, 3, 3, 2, 2, 1, 1, 1, 1},
      {"3x3 s1 p1, Cin 70 (two channel tiles)", 1, 9, 10, 70, 33, 3, 3, 1, 1, 1, 1, 1, 1},
      {"1x1 s2 (one class has no tap)", 2, 9, 8, 24, 16, 1, 1, 2, 2, 0, 0, 1, 1},
      {"2x3 strides (1, 2) dilation (2, 1)", 2, 14, 17, 7, 9, 2, 3, 1, 2, 0, 1, 2, 1},
      {"3x3 s2 p1, 150 pixels per class (3 tiles)", 6, 10, 10, 8, 17, 3, 3, 2, 2, 1, 1, 1, 1},
  };
  const std::pair<DType, kernels::ConvInput> types[] = {{DType::F32, kernels::ConvInput::F32},
                                                        {DType::BF16, kernels::ConvInput::BF16},
                                                        {DType::F16, kernels::ConvInput::F16}};
  for (const auto& [dt, input] : types)
    for (const Case& c : cases) {
      SCOPED_TRACE(c.name + " in " + dtype_name(dt));
      kernels::ConvParams p = params_of(c);
      p.input = input;
      ASSERT_TRUE(kernels::conv2d_bwd_data_direct_supported(p));
      // The inputs as the kernel's type holds them; the CPU reference takes their f32 values.
      const Tensor gy = copy_contiguous(Tensor::uniform({p.n, p.ho, p.wo, p.cout}, 31, -1, 1), dt);
      const Tensor w = copy_contiguous(Tensor::uniform({p.cout, p.cin, p.kh, p.kw}, 32, -1, 1), dt);
      const Tensor gy32 = copy_contiguous(gy, DType::F32), w32 = copy_contiguous(w, DType::F32);
      kernels::ConvParams p32 = p;
      p32.input = kernels::ConvInput::F32;
      std::vector<float> want(p.n * p.h * p.w * p.cin);
      std::vector<char> ws(kernels::conv2d_workspace_cpu(kernels::ConvPass::BwdData, p32) + 64);
      void* ws_aligned = reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(ws.data()) + 63) & ~uintptr_t(63));
      kernels::conv2d_bwd_data_cpu(p32, gy32.data<float>(), w32.data<float>(), want.data(), ws_aligned);

      const Tensor gy_d = gy.to(Device::cuda(0));
      const Tensor w_d = copy_contiguous(
          Tensor::from_vector(to_ohwi(w32.to_vector(), p), {p.cout, p.kh, p.kw, p.cin}, Device::cuda(0)), dt);
      const std::vector<float> got = run_direct(p, gy_d, w_d);
      double scale = 0;
      for (float v : want) scale = std::max(scale, (double)std::fabs(v));
      const double tol_sum = 2e-6 * (1 + scale) * std::sqrt((double)(p.kh * p.kw * p.cout));
      // One rounding of the result: at most half an ulp, 2^-8 of the value in bf16 and 2^-11 in f16.
      const double rounding = dt == DType::BF16 ? 0x1p-8 : dt == DType::F16 ? 0x1p-11 : 0.0;
      int bad = 0;
      for (size_t i = 0; i < want.size() && bad < 5; ++i) {
        const double tol = tol_sum + rounding * std::fabs(want[i]) * (1 + 1e-3);
        if (!(std::fabs(got[i] - want[i]) <= tol)) {
          ADD_FAILURE() << "gx[" << i << "]: direct " << got[i] << " vs cpu " << want[i] << " (tol " << tol << ")";
          ++bad;
        }
      }
      const std::vector<float> again = run_direct(p, gy_d, w_d);
      EXPECT_EQ(std::memcmp(got.data(), again.data(), got.size() * sizeof(float)), 0) << "two runs differ";
    }
}

TEST(ConvDirect, RefusesWhatItDoesNotHandle) {
  kernels::ConvParams p = params_of({"", 1, 8, 8, 4, 4, 3, 3, 2, 2, 1, 1, 1, 1});
  EXPECT_TRUE(kernels::conv2d_bwd_data_direct_supported(p));
  kernels::ConvParams grouped = p;
  grouped.groups = 2;
  EXPECT_FALSE(kernels::conv2d_bwd_data_direct_supported(grouped));
  kernels::ConvParams half = p;
  half.input = kernels::ConvInput::F16;
  EXPECT_TRUE(kernels::conv2d_bwd_data_direct_supported(half));
  kernels::ConvParams big_kernel = p;
  big_kernel.kh = big_kernel.kw = 9;  // 81 taps
  EXPECT_FALSE(kernels::conv2d_bwd_data_direct_supported(big_kernel));
  if (engine::testing::have_cuda())
    engine::testing::expect_one_line_error(
        [&] { kernels::conv2d_bwd_data_direct_cuda(grouped, nullptr, nullptr, nullptr, compute_stream()); },
        {"conv2d_bwd_data_direct_cuda", "groups 2"});
}
#else
TEST(ConvDirect, NeedsACudaBuild) { GTEST_SKIP() << "a CPU-only build has no CUDA kernels"; }
#endif
