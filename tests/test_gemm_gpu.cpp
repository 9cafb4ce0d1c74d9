// labels: gpu
// GEMM on a real GPU: cuBLAS (gemm_cublas) and the hand-written tiled kernel (gemm_tiled_cuda)
// against the CPU (OpenBLAS) at larger shapes than the emulated tests can afford, for every
// transpose combination, batches, broadcast operands, "sum over the batch" and k == 0; and the
// matmul op on the GPU (cuBLAS by default) against the CPU, forward and backward.
// On the emulated GPU the cuBLAS cases run against the emulated cuBLAS (kernels/emu/cublas_emu.cpp,
// OpenBLAS behind cuBLAS's API: this checks the engine's row-major mapping, batches and k == 0 path);
// the tiled kernel at these shapes would take minutes there (test_matmul runs it at small ones).
// Without a GPU (no device, or a CPU-only build) the program exits with 77 at once, which CTest
// reports as skipped.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "engine/device.h"
#include "engine/ops/matmul.h"
#include "engine/tensor.h"
#include "kernels/cpu/matmul_cpu.h"
#if defined(ENGINE_WITH_CUDA)
#include "base/cuda_context.h"
#include "kernels/cublas/gemm_cublas.h"
#include "kernels/cuda/matmul_cuda.h"
#endif

#if defined(ENGINE_WITH_CUDA)
namespace engine {
namespace {

struct Case {
  int64_t batch, m, n, k;
  bool sum = false, bcast_a = false, bcast_b = false;
  float alpha = 1.f, beta = 0.f;
};

std::string name(const Case& c, bool ta, bool tb) {
  return "batch " + std::to_string(c.batch) + " " + std::to_string(c.m) + "x" + std::to_string(c.n) + "x" +
         std::to_string(c.k) + (ta ? " A^T" : "") + (tb ? " B^T" : "") + (c.sum ? " sum" : "") +
         (c.bcast_a ? " bcastA" : "") + (c.bcast_b ? " bcastB" : "") + " alpha " + std::to_string(c.alpha) + " beta " +
         std::to_string(c.beta);
}

std::vector<float> random(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> d(-1.f, 1.f);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// Runs one case on the CPU and with `gpu_gemm` on the GPU; compares every element of C with a
// tolerance scaled by sqrt(k) (fp32 accumulation in different orders).
void check(const Case& c, bool ta, bool tb, const std::function<void(const kernels::GemmParams&)>& gpu_gemm,
           const std::string& backend) {
  SCOPED_TRACE(backend + " " + name(c, ta, tb));
  kernels::GemmParams p;
  p.m = c.m, p.n = c.n, p.k = c.k, p.batch = c.batch, p.trans_a = ta, p.trans_b = tb, p.alpha = c.alpha,
  p.beta = c.beta;
  p.lda = ta ? c.m : c.k;
  p.ldb = tb ? c.k : c.n;
  p.ldc = c.n;
  p.stride_a = c.bcast_a ? 0 : c.m * c.k;
  p.stride_b = c.bcast_b ? 0 : c.k * c.n;
  p.stride_c = c.sum ? 0 : c.m * c.n;
  const auto a = random((size_t)((c.bcast_a ? 1 : c.batch) * c.m * c.k), 1);
  const auto b = random((size_t)((c.bcast_b ? 1 : c.batch) * c.k * c.n), 2);
  const auto c0 = random((size_t)((c.sum ? 1 : c.batch) * c.m * c.n), 3);
  std::vector<float> cpu = c0;
  kernels::GemmParams hp = p;
  hp.a = a.data(), hp.b = b.data(), hp.c = cpu.data();
  kernels::gemm_cpu(hp);

  const Device dev = Device::cuda(0);
  Tensor da = Tensor::from_vector(a, {(int64_t)a.size()}, dev);
  Tensor db = Tensor::from_vector(b, {(int64_t)b.size()}, dev);
  Tensor dc = Tensor::from_vector(c0, {(int64_t)c0.size()}, dev);
  kernels::GemmParams dp = p;
  dp.a = da.data<float>(), dp.b = db.data<float>(), dp.c = dc.data<float>();
  gpu_gemm(dp);
  CUDA_CHECK(cudaStreamSynchronize(compute_stream()));
  const std::vector<float> got = dc.to_vector();
  ASSERT_EQ(got.size(), cpu.size());
  const double tol = 2e-6 * std::sqrt((double)(c.k * (c.sum ? c.batch : 1))) * 4 + 1e-5;
  int shown = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!(std::fabs(got[i] - cpu[i]) <= tol * (1 + std::fabs(cpu[i])))) {
      ADD_FAILURE() << "element " << i << ": gpu " << got[i] << " vs cpu " << cpu[i];
      if (++shown >= 5) return;
    }
  }
}

std::vector<Case> cases() {
  return {{1, 512, 768, 1024},
          {1, 1000, 1001, 999, false, false, false, 0.5f, 0.25f},
          {8, 128, 256, 64},
          {4, 255, 129, 300, false, true, false},
          {4, 255, 129, 300, false, false, true, 1.f, 1.f},
          {6, 96, 80, 500, true},
          {1, 1, 4096, 512},
          {1, 4096, 1, 512},
          {1, 4096, 4096, 64},
          {2, 33, 17, 0, false, false, false, 1.f, 0.5f},  // k == 0: C = beta C
          {1, 33, 17, 0}};                                 // k == 0, beta 0: C = 0
}

TEST(GemmGpu, CublasMatchesCpu) {
  for (const Case& c : cases())
    for (int t = 0; t < 4; ++t)
      check(
          c, t & 1, t & 2, [](const kernels::GemmParams& p) { kernels::gemm_cublas(p, compute_stream()); }, "cublas");
}

TEST(GemmGpu, TiledMatchesCpu) {
  if (cuda_is_emulated()) GTEST_SKIP() << "the tiled kernel at these shapes takes minutes under the emulator";
  for (const Case& c : cases())
    for (int t = 0; t < 4; ++t)
      check(
          c, t & 1, t & 2, [](const kernels::GemmParams& p) { kernels::gemm_tiled_cuda(p, compute_stream()); },
          "tiled");
}

TEST(GemmGpu, MatmulOpMatchesCpu) {
  // Default backend on the GPU (cuBLAS unless ENGINE_GEMM=tiled), forward and both gradients, with a
  // transposed view and a broadcast 2-D operand.
  const Tensor a0 = Tensor::randn({3, 200, 300}, 1), b0 = Tensor::randn({250, 300}, 2);
  std::vector<std::vector<float>> res[2];
  for (int d = 0; d < 2; ++d) {
    const Device dev = d ? Device::cuda(0) : Device::cpu();
    // detach(): on the CPU to() returns a0 itself, which must stay a plain input for the GPU pass.
    Tensor a = a0.to(dev).detach().set_requires_grad(true), b = b0.to(dev).detach().set_requires_grad(true);
    Tensor out = matmul(a, b.transpose(0, 1));
    out.backward(Tensor::full(out.shape(), 1.f, DType::F32, dev));
    res[d] = {out.to_vector(), a.grad().to_vector(), b.grad().to_vector()};
  }
  for (int k = 0; k < 3; ++k) {
    ASSERT_EQ(res[0][k].size(), res[1][k].size());
    for (size_t i = 0; i < res[0][k].size(); ++i)
      ASSERT_NEAR(res[1][k][i], res[0][k][i], 1e-3 * (1 + std::fabs(res[0][k][i])))
          << "tensor " << k << " element " << i;
  }
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
  std::printf("test_gemm_gpu: no GPU (real or emulated) in this build/machine; skipped\n");
  return 77;
}
