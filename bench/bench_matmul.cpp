// matmul benchmarks: the GEMM backends at shapes the models use.
//   CPU: OpenBLAS (gemm_cpu). CUDA: the hand-written tiled kernel (gemm_tiled_cuda) and, in the
//   REAL build, cuBLAS (gemm_cublas) at the same shapes, so the table compares them directly.
// Shapes (M x N x K, row-major C[M,N] = A[M,K] B[K,N]; "A^T"/"B^T" = transposed operand):
//   1024^3 (square reference), 4096x256x1024 (1x1 conv as GEMM: M = N*H*W, K = Cin, N = Cout),
//   16384x64x576 (3x3 conv by im2col: K = 9*Cin) and its two backward GEMMs
//   (dX: 16384x576x64 with B^T; dW: 576x64x16384 with A^T), 4096^3 on a GPU.
// Validation: 256 sampled output elements against a double-precision dot product.
// Work: flops = 2*M*N*K, bytes = 4*(M*K + K*N + M*N).
// Quick mode (and the emulated CUDA device, where timings mean nothing): small shapes only.
#include <cmath>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "bench/bench.h"
#include "engine/device.h"
#include "engine/tensor.h"
#include "kernels/cpu/matmul_cpu.h"
#if defined(ENGINE_WITH_CUDA)
#include "base/cuda_context.h"
#include "kernels/cuda/matmul_cuda.h"
#endif
#if defined(ENGINE_CUDA_REAL)
#include "kernels/cublas/gemm_cublas.h"
#endif

namespace {

using engine::Device;
using engine::Tensor;
using engine::kernels::GemmParams;

struct Shape3 {
  int64_t m, n, k;
  bool ta, tb;
  const char* what;
};

std::string shape_name(const Shape3& s) {
  char buf[128];
  std::snprintf(buf, sizeof buf, "%lldx%lldx%lld%s%s %s", (long long)s.m, (long long)s.n, (long long)s.k,
                s.ta ? " A^T" : "", s.tb ? " B^T" : "", s.what);
  return buf;
}

// Operands on `dev` for one shape, and the GemmParams that multiply them.
struct Problem {
  Tensor a, b, c;
  GemmParams p;
};

Problem make(const Shape3& s, Device dev) {
  Problem pr;
  pr.a = s.ta ? Tensor::randn({s.k, s.m}, 11, 1.f, dev) : Tensor::randn({s.m, s.k}, 11, 1.f, dev);
  pr.b = s.tb ? Tensor::randn({s.n, s.k}, 12, 1.f, dev) : Tensor::randn({s.k, s.n}, 12, 1.f, dev);
  pr.c = Tensor::empty({s.m, s.n}, engine::DType::F32, dev);
  GemmParams& p = pr.p;
  p.m = s.m, p.n = s.n, p.k = s.k;
  p.a = pr.a.data<float>(), p.lda = s.ta ? s.m : s.k, p.trans_a = s.ta;
  p.b = pr.b.data<float>(), p.ldb = s.tb ? s.k : s.n, p.trans_b = s.tb;
  p.c = pr.c.data<float>(), p.ldc = s.n;
  return pr;
}

// Checks 256 sampled elements of C (after `run`) against double dot products on the host.
std::string validate(const Shape3& s, Problem& pr, const std::function<void()>& run) {
  run();
  const std::vector<float> a = pr.a.to_vector(), b = pr.b.to_vector(), c = pr.c.to_vector();
  std::mt19937_64 rng(5);
  for (int t = 0; t < 256; ++t) {
    const int64_t i = (int64_t)(rng() % (uint64_t)s.m), j = (int64_t)(rng() % (uint64_t)s.n);
    double want = 0, scale = 0;
    for (int64_t q = 0; q < s.k; ++q) {
      const double x = a[(size_t)(s.ta ? q * s.m + i : i * s.k + q)];
      const double y = b[(size_t)(s.tb ? j * s.k + q : q * s.n + j)];
      want += x * y;
      scale += std::fabs(x * y);
    }
    const double got = c[(size_t)(i * s.n + j)];
    if (!(std::fabs(got - want) <= 1e-5 * scale + 1e-5)) {
      char buf[160];
      std::snprintf(buf, sizeof buf, "C[%lld, %lld] = %g, expected %g", (long long)i, (long long)j, got, want);
      return buf;
    }
  }
  return "";
}

engine::bench::Work work_of(const Shape3& s) {
  engine::bench::Work w;
  w.flops = 2.0 * (double)s.m * (double)s.n * (double)s.k;
  w.bytes = 4.0 * (double)(s.m * s.k + s.k * s.n + s.m * s.n);
  return w;
}

std::vector<Shape3> shapes(bool quick, bool gpu) {
  if (quick)
    return {{256, 256, 256, false, false, "square"},
            {37, 53, 29, false, false, "ragged"},
            {128, 64, 96, true, false, "transposed"},
            {128, 64, 96, false, true, "transposed"}};
  std::vector<Shape3> v = {{1024, 1024, 1024, false, false, "square"},
                           {4096, 256, 1024, false, false, "1x1 conv"},
                           {16384, 64, 576, false, false, "3x3 conv im2col fwd"},
                           {16384, 576, 64, false, true, "3x3 conv im2col dX"},
                           {576, 64, 16384, true, false, "3x3 conv im2col dW"}};
  if (gpu) v.push_back({4096, 4096, 4096, false, false, "square"});
  return v;
}

}  // namespace

BENCH_REGISTER(matmul) {
  for (const Device& dev : runner.devices()) {
    const bool emulated = dev.is_cuda() && engine::cuda_is_emulated();
    for (const Shape3& s : shapes(runner.quick() || emulated, dev.is_cuda())) {
      Problem pr = make(s, dev);
      const std::string name = shape_name(s);
      if (dev.is_cpu()) {
        auto body = [&] { engine::kernels::gemm_cpu(pr.p); };
        runner.run(
            "gemm_cpu (OpenBLAS)", name, dev, work_of(s), [&] { return validate(s, pr, body); }, body);
        continue;
      }
#if defined(ENGINE_WITH_CUDA)
      auto tiled = [&] { engine::kernels::gemm_tiled_cuda(pr.p, engine::compute_stream()); };
      runner.run(
          "gemm_tiled_cuda", name, dev, work_of(s), [&] { return validate(s, pr, tiled); }, tiled);
#if defined(ENGINE_CUDA_REAL)
      auto cublas = [&] { engine::kernels::gemm_cublas(pr.p, engine::compute_stream()); };
      runner.run(
          "gemm_cublas", name, dev, work_of(s), [&] { return validate(s, pr, cublas); }, cublas);
#endif
#endif
    }
  }
}
