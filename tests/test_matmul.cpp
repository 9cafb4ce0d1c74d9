// labels: kernel
// matmul: the op through the harness (CPU vs a double reference, gradients vs finite differences,
// CUDA device vs CPU, strided inputs, determinism) for 2-D, batched and broadcast shapes, ragged
// sizes, size-1 dims, K = 0, transposed and column-sliced views; bad inputs; and the GEMM kernels
// directly (gemm_cpu against a double reference, the tiled CUDA kernel against gemm_cpu) for every
// transpose combination, alpha/beta, batches, broadcast operands, "sum over the batch", unaligned
// pointers and odd leading dimensions.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/ops/matmul.h"
#include "engine/precision.h"
#include "kernels/cpu/matmul_cpu.h"
#include "tests/harness/op_check.h"
#if defined(ENGINE_WITH_CUDA)
#include "base/cuda_context.h"
#include "kernels/cuda/matmul_cuda.h"
#endif

namespace engine {
namespace {

using testing::OpCase;
using testing::RefInputs;

// How an input tensor (created by the harness with its "stored" shape) becomes a matmul operand.
enum class View { Plain, Trans, Narrow };
constexpr int64_t kNarrowOff = 2, kNarrowExtra = 3;  // Narrow: columns [2, cols - 1) of the stored tensor

Tensor apply_view(const Tensor& t, View v) {
  switch (v) {
    case View::Plain:
      return t;
    case View::Trans:
      return t.transpose(-2, -1);
    case View::Narrow:
      return t.narrow(t.dim() - 1, kNarrowOff, t.size(t.dim() - 1) - kNarrowExtra);
  }
  return t;
}

// Logical [rows, cols] of a stored shape under a view, and the stored flat index of logical (z, i, j).
struct Logical {
  Shape stored;
  View view;
  int64_t rows() const { return view == View::Trans ? stored[stored.size() - 1] : stored[stored.size() - 2]; }
  int64_t cols() const {
    const int64_t c = stored.back();
    return view == View::Trans ? stored[stored.size() - 2] : view == View::Narrow ? c - kNarrowExtra : c;
  }
  bool batched() const { return stored.size() == 3; }
  int64_t index(int64_t z, int64_t i, int64_t j) const {
    const int64_t sr = stored[stored.size() - 2], sc = stored.back();
    const int64_t base = batched() ? z * sr * sc : 0;
    switch (view) {
      case View::Plain:
        return base + i * sc + j;
      case View::Trans:
        return base + j * sc + i;
      case View::Narrow:
        return base + i * sc + j + kNarrowOff;
    }
    return 0;
  }
};

testing::RefFn reference(View va, View vb) {
  return [va, vb](const RefInputs& in, const std::vector<Shape>& shapes) {
    const Logical la{shapes[0], va}, lb{shapes[1], vb};
    const int64_t m = la.rows(), k = la.cols(), n = lb.cols();
    const int64_t batch = la.batched() ? shapes[0][0] : lb.batched() ? shapes[1][0] : 1;
    std::vector<double> out((size_t)(batch * m * n), 0.0);
    for (int64_t z = 0; z < batch; ++z)
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
          double s = 0;
          for (int64_t q = 0; q < k; ++q) s += in[0][(size_t)la.index(z, i, q)] * in[1][(size_t)lb.index(z, q, j)];
          out[(size_t)((z * m + i) * n + j)] = s;
        }
    return std::vector<std::vector<double>>{out};
  };
}

testing::EngineFn engine_fn(View va, View vb) {
  return [va, vb](const std::vector<Tensor>& in) {
    return std::vector<Tensor>{matmul(apply_view(in[0], va), apply_view(in[1], vb))};
  };
}

testing::CheckOptions options() {
  testing::CheckOptions o;
  o.fwd_atol = 1e-4;
  o.fwd_rtol = 1e-5;
  o.device_atol = 1e-4;
  o.device_rtol = 1e-5;
  return o;
}

TEST(Matmul, TwoD) {
  testing::check_op("matmul",
                    {{"5x7 * 7x3", {{5, 7}, {7, 3}}},
                     {"ragged 37x29 * 29x53", {{37, 29}, {29, 53}}},
                     {"M=1", {{1, 29}, {29, 53}}},
                     {"N=1", {{37, 29}, {29, 1}}},
                     {"K=1", {{37, 1}, {1, 53}}},
                     {"1x1 * 1x1", {{1, 1}, {1, 1}}},
                     {"two tiles 70x20 * 20x66", {{70, 20}, {20, 66}}}},
                    engine_fn(View::Plain, View::Plain), reference(View::Plain, View::Plain), options());
}

TEST(Matmul, Batched) {
  testing::check_op("matmul",
                    {{"3x37x29 * 3x29x53", {{3, 37, 29}, {3, 29, 53}}},
                     {"3x5x7 * 3x7x4", {{3, 5, 7}, {3, 7, 4}}},
                     {"batch 1", {{1, 6, 5}, {1, 5, 7}}},
                     {"3x1x9 * 3x9x1", {{3, 1, 9}, {3, 9, 1}}}},
                    engine_fn(View::Plain, View::Plain), reference(View::Plain, View::Plain), options());
}

TEST(Matmul, BroadcastTwoDOperand) {
  testing::check_op("matmul",
                    {{"3x37x29 * 29x53", {{3, 37, 29}, {29, 53}}},
                     {"37x29 * 3x29x53", {{37, 29}, {3, 29, 53}}},
                     {"2x1x5 * 5x3", {{2, 1, 5}, {5, 3}}},
                     {"4x3 * 2x3x1", {{4, 3}, {2, 3, 1}}}},
                    engine_fn(View::Plain, View::Plain), reference(View::Plain, View::Plain), options());
}

TEST(Matmul, TransposedViews) {
  // The harness creates the inputs with the stored (swapped) shapes; the op sees .transpose(-2, -1).
  const auto o = options();
  testing::check_op("matmul a^T", {{"(29x37)^T * 29x53", {{29, 37}, {29, 53}}}, {"(1x6)^T * 1x4", {{1, 6}, {1, 4}}}},
                    engine_fn(View::Trans, View::Plain), reference(View::Trans, View::Plain), o);
  testing::check_op("matmul b^T", {{"37x29 * (53x29)^T", {{37, 29}, {53, 29}}}, {"5x1 * (7x1)^T", {{5, 1}, {7, 1}}}},
                    engine_fn(View::Plain, View::Trans), reference(View::Plain, View::Trans), o);
  testing::check_op("matmul a^T b^T", {{"(29x37)^T * (53x29)^T", {{29, 37}, {53, 29}}}},
                    engine_fn(View::Trans, View::Trans), reference(View::Trans, View::Trans), o);
  testing::check_op("matmul batched a^T b^T",
                    {{"(3x29x37)^T * (3x53x29)^T", {{3, 29, 37}, {3, 53, 29}}},
                     {"(3x29x37)^T * (53x29)^T", {{3, 29, 37}, {53, 29}}},
                     {"(29x37)^T * (3x53x29)^T", {{29, 37}, {3, 53, 29}}}},
                    engine_fn(View::Trans, View::Trans), reference(View::Trans, View::Trans), o);
  testing::check_op(
      "matmul batched a^T",
      {{"(3x29x37)^T * 3x29x53", {{3, 29, 37}, {3, 29, 53}}}, {"(29x37)^T * 3x29x53", {{29, 37}, {3, 29, 53}}}},
      engine_fn(View::Trans, View::Plain), reference(View::Trans, View::Plain), o);
}

TEST(Matmul, ColumnSlicedViews) {
  // Rows with a leading dimension larger than the row and an offset that breaks 16-byte alignment.
  testing::check_op(
      "matmul sliced",
      {{"37x(32->29) * 29x(56->53)", {{37, 32}, {29, 56}}}, {"3x9x(10->7) * 7x(8->5)", {{3, 9, 10}, {7, 8}}}},
      engine_fn(View::Narrow, View::Narrow), reference(View::Narrow, View::Narrow), options());
}

TEST(Matmul, EmptyDims) {
  auto o = options();
  o.check_grad = false;  // nothing to difference
  // (an empty OUTPUT, e.g. M = 0, is checked directly below: the harness memcmp()s a null pointer for it)
  testing::check_op("matmul empty", {{"K=0", {{4, 0}, {0, 5}}}, {"batch K=0", {{2, 3, 0}, {0, 4}}}},
                    engine_fn(View::Plain, View::Plain), reference(View::Plain, View::Plain), o);
  for (Device d : {Device::cpu(), Device::cuda(0)}) {
    if (d.is_cuda() && !testing::have_cuda()) continue;
    Tensor a = Tensor::from_vector({}, {4, 0}, d).set_requires_grad(true);
    Tensor b = Tensor::from_vector({}, {0, 5}, d).set_requires_grad(true);
    Tensor c = matmul(a, b);
    ASSERT_EQ(c.shape(), (Shape{4, 5}));
    for (float v : c.to_vector()) EXPECT_EQ(v, 0.f);
    c.backward(Tensor::full({4, 5}, 1.f, DType::F32, d));
    EXPECT_EQ(a.grad().shape(), (Shape{4, 0}));
    EXPECT_EQ(b.grad().shape(), (Shape{0, 5}));
    for (float v : b.grad().to_vector()) EXPECT_EQ(v, 0.f);

    Tensor e = Tensor::from_vector({}, {0, 3}, d).set_requires_grad(true);  // M = 0
    Tensor f = Tensor::randn({3, 5}, 3, 1.f, d).set_requires_grad(true);
    Tensor g = matmul(e, f);
    ASSERT_EQ(g.shape(), (Shape{0, 5}));
    g.backward(Tensor::from_vector({}, {0, 5}, d));
    EXPECT_EQ(e.grad().shape(), (Shape{0, 3}));
    ASSERT_EQ(f.grad().shape(), (Shape{3, 5}));
    for (float v : f.grad().to_vector()) EXPECT_EQ(v, 0.f);  // a sum over M = 0 rows
  }
}

TEST(Matmul, GradientOnlyForOneInput) {
  for (Device d : {Device::cpu(), Device::cuda(0)}) {
    if (d.is_cuda() && !testing::have_cuda()) continue;
    Tensor a = Tensor::randn({3, 4, 5}, 1, 1.f, d).set_requires_grad(true);
    Tensor b = Tensor::randn({5, 6}, 2, 1.f, d);
    matmul(a, b).backward(Tensor::full({3, 4, 6}, 1.f, DType::F32, d));
    ASSERT_TRUE(a.grad().defined());
    EXPECT_EQ(a.grad().shape(), (Shape{3, 4, 5}));
    EXPECT_FALSE(b.grad().defined());
  }
}

constexpr auto expect_error = &engine::testing::expect_one_line_error;

TEST(Matmul, BadInputs) {
  expect_error([] { matmul(Tensor::zeros({3}), Tensor::zeros({3, 4})); }, {"matmul", "[3]", "[3, 4]"});
  expect_error(
      [] {
        matmul(Tensor::zeros({2, 3}), Tensor::zeros({1, 2, 3, 4}));
      },
      {"matmul", "[2, 3]", "[1, 2, 3, 4]"});
  expect_error([] { matmul(Tensor::zeros({2, 3}), Tensor::zeros({4, 5})); }, {"matmul", "[2, 3]", "[4, 5]", "K"});
  expect_error(
      [] {
        matmul(Tensor::zeros({2, 3, 4}), Tensor::zeros({3, 4, 5}));
      },
      {"matmul", "[2, 3, 4]", "[3, 4, 5]", "batch"});
  expect_error(
      [] {
        matmul(Tensor::zeros({2, 3}, DType::I64), Tensor::zeros({3, 4}));
      },
      {"matmul", "i64[2, 3]", "[3, 4]", "f32"});
  expect_error([] { matmul(Tensor(), Tensor::zeros({3, 4})); }, {"matmul", "undefined"});
  if (testing::have_cuda())
    expect_error(
        [] {
          matmul(Tensor::zeros({2, 3}), Tensor::zeros({3, 4}, DType::F32, Device::cuda(0)));
        },
        {"matmul", "cpu", "cuda"});
  {  // TF32 is a tensor-core math mode: only GPUs have it (engine/precision.h)
    const AutocastGuard tf32(Precision::TF32);
    expect_error([] { matmul(Tensor::zeros({2, 3}), Tensor::zeros({3, 4})); }, {"matmul", "tf32", "needs a GPU"});
  }
}

// ------------------------------------------------------------------ the GEMM kernels directly

struct GemmCase {
  int64_t batch, m, n, k;
  bool sum = false, bcast_a = false, bcast_b = false;
  int64_t off = 0, ldpad = 0;  // pointer offset (floats) and extra leading-dimension padding
  float alpha = 1.f, beta = 0.f;
};

std::string describe(const GemmCase& c, bool ta, bool tb) {
  std::string s = "batch " + std::to_string(c.batch) + " m " + std::to_string(c.m) + " n " + std::to_string(c.n) +
                  " k " + std::to_string(c.k) + (ta ? " A^T" : "") + (tb ? " B^T" : "") + (c.sum ? " sum" : "") +
                  (c.bcast_a ? " bcastA" : "") + (c.bcast_b ? " bcastB" : "") + " off " + std::to_string(c.off) +
                  " ldpad " + std::to_string(c.ldpad) + " alpha " + std::to_string(c.alpha) + " beta " +
                  std::to_string(c.beta);
  return s;
}

// Host buffers and the GemmParams (pointers relative to the buffers' starts) for a case.
struct GemmProblem {
  std::vector<float> a, b, c;
  kernels::GemmParams p;  // a/b/c are offsets (as pointers from nullptr) until bound
};

GemmProblem make_problem(const GemmCase& gc, bool ta, bool tb, uint64_t seed) {
  GemmProblem pr;
  kernels::GemmParams& p = pr.p;
  p.m = gc.m, p.n = gc.n, p.k = gc.k, p.batch = gc.batch;
  p.trans_a = ta, p.trans_b = tb;
  const int64_t ar = ta ? gc.k : gc.m, ac = ta ? gc.m : gc.k;
  const int64_t br = tb ? gc.n : gc.k, bc = tb ? gc.k : gc.n;
  p.lda = std::max<int64_t>(ac, 1) + gc.ldpad;
  p.ldb = std::max<int64_t>(bc, 1) + gc.ldpad;
  p.ldc = std::max<int64_t>(gc.n, 1) + gc.ldpad;
  p.stride_a = gc.bcast_a ? 0 : ar * p.lda;
  p.stride_b = gc.bcast_b ? 0 : br * p.ldb;
  p.stride_c = gc.sum ? 0 : gc.m * p.ldc;
  p.alpha = gc.alpha, p.beta = gc.beta;
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> d(-1.f, 1.f);
  auto fill = [&](std::vector<float>& v, int64_t n) {
    v.resize((size_t)std::max<int64_t>(n, 1));
    for (float& x : v) x = d(rng);
  };
  fill(pr.a, gc.off + (gc.bcast_a ? 1 : gc.batch) * ar * p.lda);
  fill(pr.b, gc.off + (gc.bcast_b ? 1 : gc.batch) * br * p.ldb);
  fill(pr.c, gc.off + (gc.sum ? 1 : gc.batch) * gc.m * p.ldc);
  // beta == 0 must not read C: poison it.
  if (gc.beta == 0.f)
    for (float& x : pr.c) x = std::nanf("");
  return pr;
}

// Double-precision reference of GemmParams semantics; returns the expected C buffer and a per-element
// error scale (sum of |products| + |beta C|).
void reference_gemm(const GemmProblem& pr, int64_t off, std::vector<double>& want, std::vector<double>& scale) {
  const kernels::GemmParams& p = pr.p;
  want.assign(pr.c.begin(), pr.c.end());
  scale.assign(pr.c.size(), 0.0);
  const bool sum = p.sum_batches();
  const int64_t nc = sum ? 1 : p.batch;
  for (int64_t zc = 0; zc < nc; ++zc)
    for (int64_t i = 0; i < p.m; ++i)
      for (int64_t j = 0; j < p.n; ++j) {
        double s = 0, sa = 0;
        for (int64_t z = sum ? 0 : zc; z < (sum ? p.batch : zc + 1); ++z)
          for (int64_t q = 0; q < p.k; ++q) {
            const double x = pr.a[(size_t)(off + z * p.stride_a + (p.trans_a ? q * p.lda + i : i * p.lda + q))];
            const double y = pr.b[(size_t)(off + z * p.stride_b + (p.trans_b ? j * p.ldb + q : q * p.ldb + j))];
            s += x * y;
            sa += std::fabs(x * y);
          }
        const size_t ci = (size_t)(off + zc * p.stride_c + i * p.ldc + j);
        const double old = p.beta == 0.f ? 0.0 : (double)pr.c[ci];
        want[ci] = p.alpha * s + p.beta * old;
        scale[ci] = std::fabs(p.alpha) * sa + std::fabs(p.beta * old);
      }
}

void expect_gemm_close(const std::vector<float>& got, const std::vector<double>& want, const std::vector<double>& scale,
                       const std::string& what) {
  ASSERT_EQ(got.size(), want.size());
  int shown = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const bool ok = std::isnan(want[i]) ? std::isnan(got[i]) : std::fabs(got[i] - want[i]) <= 1e-5 * scale[i] + 1e-6;
    if (!ok) {
      ADD_FAILURE() << what << ": element " << i << " is " << got[i] << ", expected " << want[i];
      if (++shown >= 5) return;
    }
  }
}

std::vector<GemmCase> gemm_cases() {
  std::vector<GemmCase> cs;
  cs.push_back({1, 37, 53, 29});
  cs.push_back({1, 1, 53, 29});
  cs.push_back({1, 37, 1, 29});
  cs.push_back({1, 37, 53, 1});
  cs.push_back({1, 64, 64, 16});  // exactly one small tile
  cs.push_back({1, 130, 67, 70, false, false, false, 0, 0, 0.5f, 0.f});
  cs.push_back({3, 37, 53, 29, false, false, false, 0, 0, 1.f, 0.75f});  // batched, beta
  cs.push_back({3, 20, 24, 32, false, true, false});                     // broadcast A
  cs.push_back({3, 20, 24, 32, false, false, true});                 // broadcast B (foldable when A is not transposed)
  cs.push_back({3, 21, 19, 13, true});                               // sum over the batch
  cs.push_back({4, 16, 12, 8, true, false, false, 0, 0, 2.f, 1.f});  // sum, accumulate into C
  cs.push_back({2, 33, 35, 17, false, false, false, 1, 3});          // unaligned pointers, odd leading dims
  cs.push_back({2, 32, 36, 16, false, false, false, 0, 4});          // aligned, padded leading dims
  cs.push_back({2, 9, 7, 0, false, false, false, 0, 0, 1.f, 0.5f});  // k = 0: C = beta C
  cs.push_back({1, 9, 7, 0});                                        // k = 0, beta = 0: zeros
  cs.push_back({8, 260, 300, 37});  // enough CTAs for the large 128x128 tile, ragged edges
  // Large enough for gemm_cpu's OpenMP split: row blocks, column blocks, row blocks summing batches.
  cs.push_back({1, 300, 200, 50, false, false, false, 0, 0, 1.f, 0.5f});
  cs.push_back({1, 100, 301, 50});
  cs.push_back({3, 150, 130, 60, true});
  return cs;
}

TEST(GemmKernels, CpuMatchesDoubleReference) {
  uint64_t seed = 7;
  for (const GemmCase& gc : gemm_cases())
    for (int t = 0; t < 4; ++t) {
      const bool ta = t & 1, tb = t & 2;
      const std::string what = "gemm_cpu " + describe(gc, ta, tb);
      SCOPED_TRACE(what);
      GemmProblem pr = make_problem(gc, ta, tb, seed++);
      std::vector<double> want, scale;
      reference_gemm(pr, gc.off, want, scale);
      kernels::GemmParams p = pr.p;
      p.a = pr.a.data() + gc.off;
      p.b = pr.b.data() + gc.off;
      p.c = pr.c.data() + gc.off;
      kernels::gemm_cpu(p);
      expect_gemm_close(pr.c, want, scale, what);
    }
}

#if defined(ENGINE_WITH_CUDA)
TEST(GemmKernels, TiledCudaMatchesCpu) {
  if (!testing::have_cuda()) GTEST_SKIP() << "no CUDA device";
  uint64_t seed = 1000;
  for (const GemmCase& gc : gemm_cases())
    for (int t = 0; t < 4; ++t) {
      const bool ta = t & 1, tb = t & 2;
      const std::string what = "gemm_tiled_cuda " + describe(gc, ta, tb);
      SCOPED_TRACE(what);
      GemmProblem pr = make_problem(gc, ta, tb, seed++);
      // CPU result (checked against the double reference above) as the reference here.
      std::vector<float> cpu_c = pr.c;
      kernels::GemmParams p = pr.p;
      p.a = pr.a.data() + gc.off;
      p.b = pr.b.data() + gc.off;
      p.c = cpu_c.data() + gc.off;
      kernels::gemm_cpu(p);
      std::vector<double> want, scale;
      reference_gemm(pr, gc.off, want, scale);
      for (size_t i = 0; i < want.size(); ++i) want[i] = cpu_c[i];

      const Device dev = Device::cuda(0);
      Tensor da = Tensor::from_vector(pr.a, {(int64_t)pr.a.size()}, dev);
      Tensor db = Tensor::from_vector(pr.b, {(int64_t)pr.b.size()}, dev);
      Tensor dc = Tensor::from_vector(pr.c, {(int64_t)pr.c.size()}, dev);
      p.a = da.data<float>() + gc.off;
      p.b = db.data<float>() + gc.off;
      p.c = dc.data<float>() + gc.off;
      kernels::gemm_tiled_cuda(p, compute_stream());
      CUDA_CHECK(cudaStreamSynchronize(compute_stream()));
      expect_gemm_close(dc.to_vector(), want, scale, what);
    }
}
#endif

}  // namespace
}  // namespace engine
