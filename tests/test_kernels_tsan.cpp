// labels: kernel tsan
// Every CUDA kernel family (kernels/cuda/*.cu) on tiny shapes, forward and backward: under
// ThreadSanitizer (OS-thread emulation, one OS thread per CUDA thread, resident grids of 2 blocks)
// this finds missing barriers and shared-memory races; elsewhere it is a quick CPU-vs-CUDA smoke
// test. Shapes stay small because every emulated CUDA thread is an OS thread, but each test is sized
// to reach its family's tiled, multi-tile-per-block and double-buffered paths; the comment above
// each test names the kernels and why the shape reaches them. Results are compared with the CPU
// device: integer outputs exactly, floats within the tolerance the test states.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <vector>

#include "engine/autograd.h"
#include "engine/ops/batchnorm.h"
#include "engine/ops/conv.h"
#include "engine/ops/copy.h"
#include "engine/ops/detection.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/loss.h"
#include "engine/ops/matmul.h"
#include "engine/ops/metrics.h"
#include "engine/ops/optim.h"
#include "engine/ops/pool.h"
#include "engine/ops/reduce.h"
#include "engine/ops/resize.h"
#include "engine/ops/shape_ops.h"
#include "engine/ops/softmax.h"
#include "engine/ops/yolo_loss.h"
#include "tests/harness/op_check.h"
#if defined(ENGINE_WITH_CUDA)
#include "base/cuda_context.h"
#include "kernels/cuda/conv_direct_cuda.h"
#endif

using namespace engine;

namespace {

// The CPU references run on one OpenMP thread: libgomp is not built with ThreadSanitizer, so TSan
// cannot see its barriers and reports every parallel CPU loop as a race. The kernels under test
// here are the CUDA ones, whose emulated threads synchronise through the instrumented cuemu runtime.
[[maybe_unused]] const bool kSerialCpuReference = [] {
  omp_set_num_threads(1);
  return true;
}();

bool is_integer(DType t) { return t == DType::I32 || t == DType::I64 || t == DType::U8; }

// Runs fn on the CPU and on the (emulated) CUDA device and compares every output: integer dtypes
// exactly, floating ones within tol * (1 + |cpu|) (tol = 0: equal values).
void expect_same_on_devices(const std::function<std::vector<Tensor>(Device)>& fn, double tol = 1e-5) {
  if (!engine::testing::have_cuda()) GTEST_SKIP() << "no CUDA device";
  const auto c = fn(Device::cpu());
  const auto g = fn(Device::cuda(0));
  ASSERT_EQ(c.size(), g.size());
  for (size_t k = 0; k < c.size(); ++k) {
    ASSERT_TRUE(c[k].defined() && g[k].defined()) << "output " << k;
    ASSERT_EQ(c[k].shape(), g[k].shape()) << "output " << k;
    ASSERT_EQ(c[k].dtype(), g[k].dtype()) << "output " << k;
    if (is_integer(c[k].dtype())) {
      EXPECT_EQ(c[k].to_vector_i64(), g[k].to_vector_i64()) << "output " << k;
      continue;
    }
    const auto a = c[k].to_vector(), b = g[k].to_vector();
    ASSERT_EQ(a.size(), b.size());
    int64_t bad = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      if (std::fabs(a[i] - b[i]) <= tol * (1.0 + std::fabs(a[i]))) continue;
      if (bad++ < 5) ADD_FAILURE() << "output " << k << " element " << i << ": cpu " << a[i] << ", cuda " << b[i];
    }
    EXPECT_EQ(bad, 0) << "output " << k << ": " << bad << " of " << a.size() << " elements differ";
  }
}

// Deterministic hash -> [0, 1).
double urand(uint64_t a, uint64_t b) {
  uint64_t h = a * 0x9E3779B97F4A7C15ull ^ (b + 0x632BE59BD9B4E019ull) * 0xBF58476D1CE4E5B9ull;
  h ^= h >> 31;
  h *= 0xD6E8FEB86659FD93ull;
  h ^= h >> 32;
  return (double)(h >> 11) * 0x1.0p-53;
}

// Labels in [0, C) with every `ignore_every`-th one set to 255 (0: none ignored).
Tensor labels(int64_t n, int64_t C, uint64_t seed, int ignore_every, Device d) {
  std::vector<int64_t> v((size_t)n);
  for (int64_t i = 0; i < n; ++i)
    v[(size_t)i] = ignore_every > 0 && i % ignore_every == 3 ? 255 : (int64_t)(urand(seed, (uint64_t)i) * (double)C);
  return Tensor::from_vector_i64(v, {n}, d);
}

}  // namespace

// elementwise.cu: binary_fwd_strided_kernel (b broadcast over x), unary_fwd_contig_kernel on 16-byte
// aligned data (float4 body of 27 vectors + a 3-element tail), unary_bwd_kernel, binary_bwd_kernel.
TEST(KernelsTsan, ElementwiseForwardBackward) {
  expect_same_on_devices([](Device d) {
    Tensor x = Tensor::uniform({3, 37}, 1, -1, 1, d).set_requires_grad(true);
    Tensor b = Tensor::uniform({37}, 2, -1, 1, d).set_requires_grad(true);
    const Tensor y = sigmoid(x * b) + relu(x - b);
    y.backward(Tensor::full({3, 37}, 1.f, DType::F32, d));
    return std::vector<Tensor>{y, x.grad(), b.grad(), x.transpose(0, 1).contiguous()};
  });
}

// elementwise.cu: binary_fwd_contig_kernel with float4 loads (same-shape aligned operands, 205 =
// 51 vectors + 1), unary_fwd_contig_kernel on an unaligned contiguous view (offset 1 float: the
// scalar loop only), unary_fwd_strided_kernel (a transposed view), the scalar-operand ops, and
// their backward kernels. Tolerance 1e-5: both devices use kernels/elementwise_math.h.
TEST(KernelsTsan, ElementwiseContiguousUnalignedStrided) {
  expect_same_on_devices([](Device d) {
    Tensor a = Tensor::uniform({5, 41}, 11, 0.5f, 2, d).set_requires_grad(true);
    Tensor b = Tensor::uniform({5, 41}, 12, 0.5f, 2, d).set_requires_grad(true);
    Tensor flat = Tensor::uniform({206}, 13, -1, 1, d).set_requires_grad(true);
    const Tensor u = flat.narrow(0, 1, 205);  // contiguous, 4 bytes past a 16-byte boundary
    const Tensor y1 = maximum(a, b) * (a / b) - tanh(a);
    const Tensor y2 = leaky_relu(u, 0.1f) * 3.f + exp(u);
    const Tensor y3 = sqrt(a.transpose(0, 1)) + log(b.transpose(0, 1)) - rsub(1.f, a.transpose(0, 1));
    (sum(y1) + sum(y2) + sum(y3)).backward();
    return std::vector<Tensor>{y1, y2, y3, a.grad(), b.grad(), flat.grad()};
  });
}

TEST(KernelsTsan, Reductions) {
  expect_same_on_devices([](Device d) {
    Tensor x = Tensor::uniform({4, 3, 70}, 3, -1, 1, d).set_requires_grad(true);
    const Tensor s = sum(x, {2});
    const MaxResult m = max(x, {0, 1});
    (sum(s) + sum(m.values) + sum(mean(x, {0}))).backward();
    return std::vector<Tensor>{s, m.values, m.indices, x.grad()};
  });
}

// reduce.cu, the remaining plans (make_plan): [2, 5000] over axis 1 splits the 5000-long rows
// into 3 segments of 1668 (outer 2 < 512 tasks, reduce >= 2 * 2048): reduce_row_block_fwd_kernel
// (segments > 256) writes the partials, reduce_row_warp_fwd_kernel merges them (max: with the
// partial indices). [1100, 3] over axis 0 is a column plan (bx 4, by 64) split into 3 segments of
// 367 rows: reduce_col_fwd_kernel twice. [3, 300] is an unsplit row-block plan, one block per row;
// [2, 50, 40] over axis 1 a column plan with 2 column tiles of 32. The backward runs
// reduce_sum_bwd_kernel and reduce_max_bwd_kernel. Tolerance 1e-5 (summation orders differ).
TEST(KernelsTsan, ReductionSplitAndBlockPlans) {
  expect_same_on_devices([](Device d) {
    Tensor a = Tensor::uniform({2, 5000}, 21, -1, 1, d).set_requires_grad(true);
    Tensor b = Tensor::uniform({1100, 3}, 22, -1, 1, d).set_requires_grad(true);
    Tensor c = Tensor::uniform({3, 300}, 23, -1, 1, d).set_requires_grad(true);
    Tensor e = Tensor::uniform({2, 50, 40}, 24, -1, 1, d).set_requires_grad(true);
    const Tensor sa = sum(a, {1});
    const MaxResult ma = max(a, {1});
    const Tensor sb = mean(b, {0});
    const MaxResult mb = max(b, {0});
    const Tensor sc = sum(c, {1});
    const MaxResult mc = max(c, {1});
    const Tensor se = sum(e, {1});
    const MaxResult me = max(e, {1});
    (sum(sa) + sum(ma.values) + sum(sb) + sum(mb.values) + sum(sc) + sum(mc.values) + sum(se) + sum(me.values))
        .backward();
    return std::vector<Tensor>{sa,       ma.values, ma.indices, sb,      mb.values, mb.indices,
                               sc,       mc.values, mc.indices, se,      me.values, me.indices,
                               a.grad(), b.grad(),  c.grad(),   e.grad()};
  });
}

TEST(KernelsTsan, Matmul) {
  expect_same_on_devices([](Device d) {
    Tensor a = Tensor::uniform({9, 13}, 4, -1, 1, d).set_requires_grad(true);
    Tensor b = Tensor::uniform({13, 7}, 5, -1, 1, d).set_requires_grad(true);
    const Tensor c = matmul(a, b);
    sum(c).backward();
    return std::vector<Tensor>{c, a.grad(), b.grad()};
  });
}

// matmul.cu gemm_tiled_kernel, both configurations, with several K slabs so the double-buffered slab
// loop (fetch t + 1 into registers, stash into the other buffer, one barrier per slab) runs:
//  - small (64x64, BK 16): [3, 9, 40] x [40, 7] has K = 40 = 3 slabs; A is 9 of 10 rows of each
//    batch (batch stride 400 != 9 * 40), so gemm_fold_batch cannot fold the batch into M: 3 CTAs on
//    blockIdx.z (< 64 large CTAs); float4 loads of A (lda 40), scalar loads of B (ldb 7). Backward:
//    dA = dC B^T (trans_b; folded into one CTA) and dB = sum_z A_z^T dC_z, the "sum over the batch"
//    mode (trans_a; 3 batches x 1 slab looped inside the CTA).
//  - large (128x128, BK 8): 64 batches of [6, 20] x [20, 5]^T give 64 CTAs, K = 20 = 3 slabs, B
//    read transposed (trans_b).
// Tolerance 1e-5 (fmaf order may differ from the CPU GEMM).
TEST(KernelsTsan, MatmulTiledSlabs) {
  expect_same_on_devices([](Device d) {
    Tensor a_full = Tensor::uniform({3, 10, 40}, 31, -1, 1, d).set_requires_grad(true);
    Tensor b = Tensor::uniform({40, 7}, 32, -1, 1, d).set_requires_grad(true);
    const Tensor c = matmul(a_full.narrow(1, 0, 9), b);
    sum(c * c).backward();
    const Tensor p = Tensor::uniform({64, 6, 20}, 33, -1, 1, d);
    const Tensor q = Tensor::uniform({64, 5, 20}, 34, -1, 1, d);
    const Tensor r = matmul(p, q.transpose(1, 2));
    return std::vector<Tensor>{c, a_full.grad(), b.grad(), r};
  });
}

// softmax.cu row tiles (inner == 1, L <= 32; 128 threads, resident grid of 2 blocks):
//  - L = 19 (odd, aligned: kVec, 16-byte cp.async): 128 rows per tile, 549 rows = 5 tiles, so in
//    pipelined_tiles block 0 takes tiles 0, 2, 4 (the last one partial, 37 rows) and block 1 tiles 1,
//    3: the next tile is fetched into the other buffer while one is computed, with the barriers
//    between. softmax_fwd_tile_kernel<false, true>, log_softmax <true, true>, argmax_tile_kernel<true>.
//    The backward softmax_bwd_tile_kernel (g and y tiles, one tile per block, 5 blocks).
//  - L = 8 (even: padded row stride 9, the divmod fetch/store path, kVec = false): 128 rows per tile,
//    300 rows = 3 tiles (block 0 takes 2). Forward, backward, argmax.
//  - L = 19 from a view one row into its storage (76 bytes: not 16-byte aligned, kVec = false with
//    odd L): log_softmax forward/backward and argmax on the scalar copies.
// Tolerance 1e-5 (the same exp/log, different summation order); argmax indices exact.
TEST(KernelsTsan, SoftmaxRowTilesDoubleBuffered) {
  expect_same_on_devices([](Device d) {
    Tensor x19 = Tensor::uniform({3, 183, 19}, 41, -3, 3, d).set_requires_grad(true);
    Tensor x8 = Tensor::uniform({300, 8}, 42, -3, 3, d).set_requires_grad(true);
    Tensor wide = Tensor::uniform({201, 19}, 43, -3, 3, d).set_requires_grad(true);
    const Tensor xu = wide.narrow(0, 1, 200);
    const Tensor s19 = softmax(x19), l19 = log_softmax(x19);
    const Tensor s8 = softmax(x8), l8 = log_softmax(x8);
    const Tensor lu = log_softmax(xu);
    const Tensor w19 = Tensor::uniform({3, 183, 19}, 44, -1, 1, d), w8 = Tensor::uniform({300, 8}, 45, -1, 1, d);
    const Tensor wu = Tensor::uniform({200, 19}, 46, -1, 1, d);
    (sum(s19 * w19) + sum(l19 * w19) + sum(s8 * w8) + sum(l8 * w8) + sum(lu * wu)).backward();
    return std::vector<Tensor>{s19,       l19,         s8,          l8,         lu,        x19.grad(),
                               x8.grad(), wide.grad(), argmax(x19), argmax(x8), argmax(xu)};
  });
}

// softmax.cu, the other kernels: L = 40 > 32 gives softmax_fwd_row_kernel<32> / bwd_row / argmax_row
// (a warp per row, shuffle reductions; 6 rows); axis 1 of [2, 5, 30] (inner 30) the column kernels
// softmax_fwd_col_kernel, softmax_bwd_col_kernel and argmax_col_kernel.
TEST(KernelsTsan, SoftmaxRowsAndColumns) {
  expect_same_on_devices([](Device d) {
    Tensor x = Tensor::uniform({6, 40}, 47, -3, 3, d).set_requires_grad(true);
    Tensor z = Tensor::uniform({2, 5, 30}, 48, -3, 3, d).set_requires_grad(true);
    const Tensor sx = softmax(x), lx = log_softmax(x), sz = softmax(z, 1), lz = log_softmax(z, 1);
    const Tensor wx = Tensor::uniform({6, 40}, 49, -1, 1, d), wz = Tensor::uniform({2, 5, 30}, 50, -1, 1, d);
    (sum(sx * wx) + sum(lx * wx) + sum(sz * wz) + sum(lz * wz)).backward();
    return std::vector<Tensor>{sx, lx, sz, lz, x.grad(), z.grad(), argmax(x), argmax(z, 1, true)};
  });
}

// loss.cu cross entropy:
//  - C = 19 with class weights and ignored pixels, P = 677: ce_fwd_tile_kernel<false, true> (128 px
//    per tile, 6 tiles on the resident grid of 2 blocks: 3 tiles each through the double buffer,
//    logits by 16-byte cp.async, labels by 8-byte copies), block partials, loss_finalize_kernel;
//    the backward ce_bwd_kernel<true> (C <= 40: 256-pixel tiles staged in shared memory, 3 blocks).
//  - C = 8, P = 300: the even-C tile kernel <false, false> (padded stride, 3 tiles).
//  - C = 45 > 40, P = 300: ce_fwd_row_kernel and ce_bwd_kernel<false> (2 blocks).
// Tolerance 1e-5: the per-pixel math is bit-exact, the block partials add in another order.
TEST(KernelsTsan, CrossEntropyTilesAndRows) {
  expect_same_on_devices([](Device d) {
    std::vector<Tensor> out;
    const std::vector<std::pair<int64_t, int64_t>> cases = {{677, 19}, {300, 8}, {300, 45}};
    for (size_t k = 0; k < cases.size(); ++k) {
      const auto [P, C] = cases[k];
      Tensor x = Tensor::uniform({P, C}, 60 + k, -3, 3, d).set_requires_grad(true);
      const Tensor y = labels(P, C, 70 + k, 11, d);
      const Tensor w = k == 0 ? Tensor::uniform({C}, 80, 0.5f, 1.5f, d) : Tensor();
      const Tensor loss = cross_entropy(x, y, w);
      loss.backward();
      out.push_back(loss);
      out.push_back(x.grad());
    }
    return out;
  });
}

// loss.cu OHEM: C = 19, P = 677 (about 1 in 11 ignored), thresh 0.02 and min_kept 400: fewer than 400
// valid pixels have p_gt < 0.02 (checked below on the CPU), so the threshold is raised by
// ohem_mine_cuda's select: 4 rounds of ohem_hist_kernel (3 blocks of 256, shared-memory histogram with
// integer atomics, a barrier before and after) and ohem_scan_kernel; then ohem_gate_kernel,
// ohem_sum_kernel, loss_finalize_kernel, and ce_bwd_kernel<true> with the p_gt mask. The forward is
// the OHEM tile kernel <true, true> (6 tiles on 2 blocks). Two more cases with thresh 0.7 and
// min_kept 50 (enough pixels below thresh: the select's k-th value is below thresh, so the threshold
// stays thresh): C = 8 runs the even-C OHEM tile
// kernel <true, false>, C = 45 ce_fwd_row_kernel<true> and ce_bwd_kernel<false>. Tolerance 1e-5 (p_gt and the selection
// are bit-exact; sums in another order).
TEST(KernelsTsan, OhemCrossEntropyRadixSelect) {
  const int64_t P = 677, C = 19, min_kept = 400;
  const float thresh = 0.02f;
  {  // The shape reaches the select: valid pixels below thresh < min_kept < valid pixels.
    const Tensor x = Tensor::uniform({P, C}, 90, -3, 3);
    const std::vector<float> p = softmax(x).to_vector();
    const std::vector<int64_t> y = labels(P, C, 91, 11, Device::cpu()).to_vector_i64();
    int64_t valid = 0, below = 0;
    for (int64_t i = 0; i < P; ++i) {
      if (y[(size_t)i] == 255) continue;
      ++valid;
      below += p[(size_t)(i * C + y[(size_t)i])] < thresh;
    }
    ASSERT_LT(below, min_kept);
    ASSERT_LT(min_kept, valid);
  }
  expect_same_on_devices([&](Device d) {
    Tensor x = Tensor::uniform({P, C}, 90, -3, 3, d).set_requires_grad(true);
    const Tensor loss = ohem_cross_entropy(x, labels(P, C, 91, 11, d), thresh, min_kept);
    loss.backward();
    Tensor x8 = Tensor::uniform({300, 8}, 92, -3, 3, d).set_requires_grad(true);
    const Tensor loss8 = ohem_cross_entropy(x8, labels(300, 8, 93, 7, d), 0.7f, 50);
    loss8.backward();
    Tensor x45 = Tensor::uniform({300, 45}, 94, -3, 3, d).set_requires_grad(true);
    const Tensor loss45 = ohem_cross_entropy(x45, labels(300, 45, 95, 7, d), 0.7f, 50);
    loss45.backward();
    return std::vector<Tensor>{loss, x.grad(), loss8, x8.grad(), loss45, x45.grad()};
  });
}

// loss.cu pointwise losses, n = 700 (3 blocks of 256, grid-stride): point_fwd_kernel and
// point_bwd_kernel for BCE with logits (weighted), BCE on probabilities and L1 (gradients of a and b),
// each finalised by loss_finalize_kernel over 3 block partials. Tolerance 1e-5.
TEST(KernelsTsan, PointwiseLosses) {
  expect_same_on_devices([](Device d) {
    Tensor a = Tensor::uniform({7, 100}, 100, -3, 3, d).set_requires_grad(true);
    Tensor p = Tensor::uniform({7, 100}, 101, 0.05f, 0.95f, d).set_requires_grad(true);
    Tensor b = Tensor::uniform({7, 100}, 102, -3, 3, d).set_requires_grad(true);
    const Tensor t = Tensor::uniform({7, 100}, 103, 0, 1, d), w = Tensor::uniform({7, 100}, 104, 0, 2, d);
    const Tensor l1 = bce_with_logits(a, t, w), l2 = binary_cross_entropy(p, t), l3 = l1_loss(a, b);
    (l1 + l2 + l3).backward();
    return std::vector<Tensor>{l1, l2, l3, a.grad(), p.grad(), b.grad()};
  });
}

// batchnorm.cu, training with running statistics and the backward through the batch statistics:
//  - C = 36 (C % 4 == 0: V = 4, tile bx 16 x by 16), M = 4 * 15 * 19 = 1140 rows: gy = 9 row blocks,
//    so batch_norm_stats_kernel's shared-memory Welford tree runs in 9 blocks, which count their
//    arrival, and the last of them merges the 9 partials (16 slices, most of them empty) in its
//    double trees; the same for batch_norm_bwd_reduce_kernel; batch_norm_fwd_kernel<4>,
//    batch_norm_bwd_kernel<4>.
//  - C = 37 (V = 1, bx 32 x by 8, 2 channel tiles with a counter each: the second one mostly
//    inactive threads that still join the trees), M = 84: gy = 2.
//  - eval mode with the fused ReLU (bwd kernel <kG, !kX, Relu>) and training with LeakyReLU fused
//    and no affine / running statistics; batch_norm_update_running_kernel (the sync-BN update).
// Tolerance 1e-4 (Welford merges in another order than the CPU).
TEST(KernelsTsan, BatchNormTrainEvalFused) {
  expect_same_on_devices(
      [](Device d) {
        std::vector<Tensor> out;
        const std::vector<Shape> shapes = {{4, 15, 19, 36}, {2, 6, 7, 37}};
        for (size_t k = 0; k < shapes.size(); ++k) {
          const int64_t C = shapes[k].back();
          Tensor x = Tensor::uniform(shapes[k], 110 + k, -2, 3, d).set_requires_grad(true);
          Tensor w = Tensor::uniform({C}, 120 + k, 0.5f, 1.5f, d).set_requires_grad(true);
          Tensor b = Tensor::uniform({C}, 130 + k, -0.5f, 0.5f, d).set_requires_grad(true);
          const Tensor rm = Tensor::zeros({C}, DType::F32, d), rv = Tensor::full({C}, 1.f, DType::F32, d);
          const Tensor y = batch_norm(x, w, b, rm, rv, BatchNormArgs{});
          BatchNormArgs ev;
          ev.training = false;
          ev.act = BnActivation::relu();
          const Tensor ye = batch_norm(x, w, b, rm, rv, ev);
          BatchNormArgs lk;
          lk.act = BnActivation::leaky_relu(0.1f);
          const Tensor yl = batch_norm(x, Tensor(), Tensor(), Tensor(), Tensor(), lk);
          const Tensor gw = Tensor::uniform(shapes[k], 140 + k, -1, 1, d);
          (sum(y * gw) + sum(ye * gw) + sum(yl * gw)).backward();
          const Tensor rm2 = Tensor::zeros({C}, DType::F32, d), rv2 = Tensor::full({C}, 1.f, DType::F32, d);
          batch_norm_update_running(rm2, rv2, w.detach(), b.detach() + 1.f, 0.8f);
          for (const Tensor& t : {y, ye, yl, rm, rv, x.grad(), w.grad(), b.grad(), rm2, rv2}) out.push_back(t);
        }
        return out;
      },
      1e-4);
}

// pool.cu on [2, 9, 9, C] with C = 8 (V = 4: bx 2 x by 128) and C = 5 (V = 1: bx 8 x by 32):
// avg_pool2d_fwd_kernel (3x3 windows, exclusive and not), max_pool2d_fwd_kernel (i32 argmax
// positions), adaptive 4x4 (windows <= 16 cells: the pixel kernel), global average (the adaptive
// window bound 10 x 10 >= 32 cells: avg_pool2d_fwd_window_kernel, one block per output pixel and a
// shared-memory tree over by = 128 / 32 threads); backward avg_pool2d_bwd_kernel<4/1> and
// max_pool2d_bwd_kernel<4/1> over the 162 input pixels (2 blocks for V = 4, 6 for V = 1).
// Tolerance 1e-5 (window sums in another order in the tree kernel).
TEST(KernelsTsan, PoolForwardBackward) {
  expect_same_on_devices([](Device d) {
    std::vector<Tensor> out;
    for (int64_t C : {8, 5}) {
      Tensor x = Tensor::uniform({2, 9, 9, C}, 150 + (uint64_t)C, -1, 1, d).set_requires_grad(true);
      const Tensor a = avg_pool2d(x, 3, 2, 1), ai = avg_pool2d(x, 3, 2, 1, false), m = max_pool2d(x, 3, 2, 1);
      const Tensor ad = adaptive_avg_pool2d(x, 4, 4), gl = global_avg_pool2d(x);
      (sum(a) + sum(ai * 2.f) + sum(m * m) + sum(ad * 3.f) + sum(gl * gl)).backward();
      for (const Tensor& t : {a, ai, m, ad, gl, x.grad()}) out.push_back(t);
    }
    return out;
  });
}

// resize.cu: resize_fwd_kernel<bilinear / nearest, V = 4> on [2, 5, 7, 8] (C % 4 == 0, aligned) up to
// 9 x 11 (both align_corners) and down to 3 x 4; V = 1 on C = 3 and on a channels-last view of an
// NCHW tensor (sc != 1); the backward resize_bwd_kernel<4> and <1> (each input pixel gathers its
// output range, several outputs per input when upsampling). Grid: blocks over one image x N = 2.
// Tolerance 1e-5.
TEST(KernelsTsan, ResizeForwardBackward) {
  expect_same_on_devices([](Device d) {
    std::vector<Tensor> out;
    Tensor x4 = Tensor::uniform({2, 5, 7, 8}, 160, -1, 1, d).set_requires_grad(true);
    Tensor x1 = Tensor::uniform({2, 5, 7, 3}, 161, -1, 1, d).set_requires_grad(true);
    Tensor nchw = Tensor::uniform({2, 3, 5, 7}, 162, -1, 1, d).set_requires_grad(true);
    const Tensor xs = nchw.permute({0, 2, 3, 1});
    Tensor total = Tensor::zeros({}, DType::F32, d);
    for (const Tensor& x : {x4, x1, xs}) {
      const Tensor up = resize_bilinear(x, 9, 11), upa = resize_bilinear(x, 9, 11, true);
      const Tensor dn = resize_bilinear(x, 3, 4), nn = resize_nearest(x, 9, 11);
      total = total + sum(up * up) + sum(upa) + sum(dn * 2.f) + sum(nn * nn);
      for (const Tensor& t : {up, upa, dn, nn}) out.push_back(t);
    }
    total.backward();
    for (const Tensor& t : {x4.grad(), x1.grad(), nchw.grad()}) out.push_back(t);
    return out;
  });
}

// shape_ops.cu concat_kernel: 10 f32 pieces [3, 4k] along the last axis (every width and column a
// multiple of 16 bytes: uint4 units; more than kMaxPieces = 8 pieces: two launches), their backward
// (concat_kernel<kBwd>: split into gradients); f32 pieces of odd widths (4-byte units) with a
// split whose backward is a concat; f16 pieces of odd widths (2-byte units) and u8 pieces (1-byte
// units). Exact (copies).
TEST(KernelsTsan, ConcatSplitAllUnits) {
  expect_same_on_devices(
      [](Device d) {
        std::vector<Tensor> pieces, odd, halves, bytes;
        for (int j = 0; j < 10; ++j)
          pieces.push_back(Tensor::uniform({3, 4 * (j % 3 + 1)}, 170 + (uint64_t)j, -1, 1, d).set_requires_grad(true));
        for (int j = 0; j < 3; ++j) {
          const Tensor t = Tensor::uniform({5, 2 * j + 3}, 180 + (uint64_t)j, -4, 4, d);
          odd.push_back(t.detach().set_requires_grad(true));
          halves.push_back(t.to(DType::F16));
          bytes.push_back((t + 4.f).to(DType::U8));
        }
        const Tensor c = concat(pieces, 1), co = concat(odd, 1);
        const Tensor ch = concat(halves, 1), cb = concat(bytes, 1);
        const std::vector<Tensor> parts = split(co, {4, -1, 2}, 1);
        const Tensor gw = Tensor::uniform(c.shape(), 190, -1, 1, d);
        (sum(c * gw) + sum(parts[0] * 2.f) + sum(parts[2] * parts[2])).backward();
        std::vector<Tensor> out = {c, co, ch, cb};
        for (const Tensor& t : pieces) out.push_back(t.grad());
        for (const Tensor& t : odd) out.push_back(t.grad());
        return out;
      },
      0.0);
}

// copy.cu: strided_copy_same_kernel for every element size (transposed f32 / i64 / f16 / u8 made
// contiguous: uint32 / uint64 / uint16 / uint8 units), strided_copy_cast_kernel (casts of a strided
// view to f16, bf16, i32, u8 and back to f32), fill_kernel (fill_ on f32 and i64), and the
// contiguous same-type copy (cudaMemcpyAsync). 5 x 67 = 335 elements: 2 blocks. Exact.
TEST(KernelsTsan, CopyCastFill) {
  expect_same_on_devices(
      [](Device d) {
        const Tensor x = Tensor::uniform({5, 67}, 200, -300, 300, d);
        const Tensor xt = x.transpose(0, 1);
        const Tensor i64 = x.to(DType::I64), f16 = x.to(DType::F16), u8 = (x * 0.4f + 128.f).to(DType::U8);
        const Tensor filled = Tensor::empty({3, 70}, DType::F32, d), filled_i = Tensor::empty({70}, DType::I64, d);
        fill_(filled, 2.5f);
        fill_(filled_i, -7.f);
        const Tensor into = Tensor::zeros({67, 5}, DType::F32, d);
        copy_into(into, xt);
        return std::vector<Tensor>{xt.contiguous(),
                                   i64.transpose(0, 1).contiguous(),
                                   f16.transpose(0, 1).contiguous(),
                                   u8.transpose(0, 1).contiguous(),
                                   copy_contiguous(xt, DType::F16),
                                   copy_contiguous(xt, DType::BF16),
                                   copy_contiguous(xt, DType::I32),
                                   copy_contiguous(xt, DType::U8),
                                   copy_contiguous(f16.transpose(0, 1), DType::F32),
                                   copy_contiguous(x, DType::F32),
                                   filled,
                                   filled_i,
                                   into};
      },
      0.0);
}

// metrics.cu seg_area_kernel: 90 classes (3 * 90 = 270 shared-memory bins > 256 threads: the
// zeroing and flushing loops stride), n = 2 * 19 * 19 = 722 pixels (3 blocks: shared histograms
// with integer atomics, a barrier before and after, global atomics), some labels ignored. Exact.
TEST(KernelsTsan, SegAreaCounts) {
  expect_same_on_devices([](Device d) {
    const int64_t C = 90, n = 722;
    std::vector<int64_t> p((size_t)n), l((size_t)n);
    for (int64_t i = 0; i < n; ++i) {
      l[(size_t)i] = i % 13 == 5 ? 255 : (int64_t)(urand(210, (uint64_t)i) * (double)C);
      p[(size_t)i] = urand(211, (uint64_t)i) < 0.5 ? l[(size_t)i] % C : (int64_t)(urand(212, (uint64_t)i) * (double)C);
    }
    const SegAreas a =
        seg_area_counts(Tensor::from_vector_i64(p, {2, 19, 19}, d), Tensor::from_vector_i64(l, {2, 19, 19}, d), C);
    return std::vector<Tensor>{a.intersect, a.pred, a.label};
  });
}

// optim.cu sgd_momentum_fwd_kernel: one launch over 3 tensors = 4 chunks of 8192 (a block per chunk,
// binary search of the table): 8229 elements (2 chunks; float4 body and a scalar tail), an unaligned
// contiguous view of 100 elements (vec4 false: scalar loop), and 7 elements; two steps so the
// velocities feed back. Tolerance 1e-6 (same sgd_momentum_f on both devices).
TEST(KernelsTsan, SgdMomentumFused) {
  expect_same_on_devices(
      [](Device d) {
        const Tensor p0 = Tensor::uniform({8229}, 220, -1, 1, d), v0 = Tensor::zeros({8229}, DType::F32, d);
        const Tensor s1 = Tensor::uniform({101}, 221, -1, 1, d), p1 = s1.narrow(0, 1, 100);
        const Tensor v1 = Tensor::zeros({100}, DType::F32, d);
        const Tensor p2 = Tensor::uniform({7}, 222, -1, 1, d), v2 = Tensor::zeros({7}, DType::F32, d);
        for (int step = 0; step < 2; ++step) {
          const Tensor g0 = Tensor::uniform({8229}, 230 + (uint64_t)step, -1, 1, d);
          const Tensor g1 = Tensor::uniform({100}, 240 + (uint64_t)step, -1, 1, d);
          const Tensor g2 = Tensor::uniform({7}, 250 + (uint64_t)step, -1, 1, d);
          sgd_momentum_update({p0, p1, p2}, {g0, g1, g2}, {v0, v1, v2}, 0.1f, 0.9f, 1e-4f);
        }
        return std::vector<Tensor>{p0, v0, s1, v1, p2, v2};
      },
      1e-6);
}

// optim.cu unscale_check_finite_kernel: one launch over an aligned tensor of 3 chunks (float4 body,
// scalar tail) with an inf in chunk 0 and a nan in chunk 2, and an unaligned view (scalar loop): two
// blocks raise the flag with atomicOr after __syncthreads_or. Exact (a power-of-two scale).
TEST(KernelsTsan, UnscaleCheckFinite) {
  expect_same_on_devices(
      [](Device d) {
        std::vector<float> v(20000);
        for (size_t i = 0; i < v.size(); ++i) v[i] = (float)i - 7000.f;
        v[17] = INFINITY;
        v[19999] = NAN;
        const Tensor g0 = Tensor::from_vector(v, {20000}, d);
        const Tensor s1 = Tensor::uniform({301}, 262, -1, 1, d), g1 = s1.narrow(0, 1, 300);
        const bool found = unscale_grads_check_finite({g0, g1}, 0.25f);
        const Tensor flag = Tensor::full({1}, found ? 1.f : 0.f, DType::F32, d);
        return std::vector<Tensor>{g0.narrow(0, 0, 17), g0.narrow(0, 18, 19981), s1, flag};
      },
      0.0);
}

// conv_direct.cu conv_bwd_data_direct_kernel: 3x3 stride 2 on 9x9 (classes of 25, 20, 20 and 16
// pixels, one, two or four taps), Cin 70 (two channel tiles, the second partial), Cout 20 (K slabs
// cross taps): the CPU side is the conv op's backward-data (oneDNN), the CUDA side the kernel alone.
#if defined(ENGINE_WITH_CUDA)
TEST(KernelsTsan, ConvBackwardDataDirect) {
  expect_same_on_devices(
      [](Device d) {
        const Tensor gy = Tensor::uniform({1, 5, 5, 20}, 270, -1, 1, d);
        const Tensor w = Tensor::uniform({20, 70, 3, 3}, 271, -1, 1, d);
        Conv2dArgs a;
        a.stride_h = a.stride_w = 2;
        a.pad_h = a.pad_w = 1;
        if (d.is_cpu()) {
          const Tensor x = Tensor::zeros({1, 9, 9, 70}, DType::F32, d).set_requires_grad(true);
          conv2d(x, w, Tensor(), a).backward(gy);
          return std::vector<Tensor>{x.grad()};
        }
        kernels::ConvParams p;
        p.n = 1, p.h = p.w = 9, p.cin = 70, p.cout = 20, p.kh = p.kw = 3, p.ho = p.wo = 5;
        p.stride_h = p.stride_w = 2, p.pad_h = p.pad_w = 1;
        const Tensor w_ohwi = copy_contiguous(w.permute({0, 2, 3, 1}), DType::F32);
        const Tensor gx = Tensor::empty({1, 9, 9, 70}, DType::F32, d);
        kernels::conv2d_bwd_data_direct_cuda(p, gy.data<float>(), w_ohwi.data<float>(), gx.data<float>(),
                                             compute_stream());
        return std::vector<Tensor>{gx};
      },
      1e-5);
}
#endif

// detection.cu yolo_box_kernel<uint32_t>: [2, 5, 6, 3 * (5 + 4)] -> 720 scores (3 blocks,
// grid-stride) and 180 boxes, about half above the confidence threshold. Exact (the decode uses the
// __f*_rn intrinsics shared with the CPU).
TEST(KernelsTsan, YoloBox) {
  expect_same_on_devices(
      [](Device d) {
        YoloBoxArgs a;
        a.anchors = {10, 13, 16, 30, 33, 23};
        a.class_num = 4;
        a.downsample_ratio = 8;
        a.conf_thresh = 0.3f;
        const Tensor x = Tensor::uniform({2, 5, 6, 27}, 260, -2, 2, d);
        const Tensor img = Tensor::from_vector_i64({40, 48, 37, 50}, {2, 2}, d);
        const YoloBoxResult r = yolo_box(x, img, a);
        return std::vector<Tensor>{r.boxes, r.scores};
      },
      0.0);
}

namespace {
// Boxes around `clusters` centres (heavy overlap inside a cluster), scores quantised to 1/64 (many
// exact ties) on [N, M, C].
void nms_inputs(int64_t N, int64_t M, int64_t C, int clusters, uint64_t seed, std::vector<float>* boxes,
                std::vector<float>* scores) {
  boxes->resize((size_t)(N * M * 4));
  scores->resize((size_t)(N * M * C));
  for (int64_t i = 0; i < N * M; ++i) {
    const int cl = (int)(urand(seed, (uint64_t)i) * clusters);
    const double cx = urand(seed + 1, (uint64_t)cl) * 0.8 + 0.1, cy = urand(seed + 2, (uint64_t)cl) * 0.8 + 0.1;
    const double w = 0.03 + urand(seed + 3, (uint64_t)i) * 0.05, h = 0.03 + urand(seed + 4, (uint64_t)i) * 0.05;
    const double jx = (urand(seed + 5, (uint64_t)i) - 0.5) * 0.03, jy = (urand(seed + 6, (uint64_t)i) - 0.5) * 0.03;
    float* b = &(*boxes)[(size_t)(i * 4)];
    b[0] = (float)(cx + jx - w / 2);
    b[1] = (float)(cy + jy - h / 2);
    b[2] = (float)(cx + jx + w / 2);
    b[3] = (float)(cy + jy + h / 2);
    for (int64_t c = 0; c < C; ++c)
      (*scores)[(size_t)(i * C + c)] = (float)(std::floor(urand(seed + 7 + (uint64_t)c, (uint64_t)i) * 64) / 64);
  }
}
}  // namespace

// detection.cu multiclass NMS, shared-memory sort and IoU mask: N = 2, M = 600, C = 3 (6 segments,
// a 256-thread block each). ~590 candidates per class > nms_top_k 150: nms_sort_kernel's
// radix_select (4 passes, shared histogram) finds the cut, ordered_select (3 rounds of 256 items,
// ballots, double-buffered warp totals, ties at the cut in index order) compacts, bitonic_sort
// sorts 150 keys in shared memory; nms_mask_kernel on 3 x 3 tiles of 64 (6 upper-triangle tiles per
// segment), nms_scan_mask_kernel; keep_top_k 40 < kept: nms_output_kernel's radix select and
// ordered compaction. Exact.
TEST(KernelsTsan, MultiClassNmsSharedSortAndMask) {
  std::vector<float> boxes, scores;
  nms_inputs(2, 600, 3, 40, 270, &boxes, &scores);
  expect_same_on_devices(
      [&](Device d) {
        MultiClassNmsArgs a;
        a.score_threshold = 0.02f;
        a.nms_top_k = 150;
        a.keep_top_k = 40;
        a.nms_threshold = 0.5f;
        const MultiClassNmsResult r =
            multiclass_nms(Tensor::from_vector(boxes, {2, 600, 4}, d), Tensor::from_vector(scores, {2, 600, 3}, d), a);
        return std::vector<Tensor>{r.out, r.bbox_num, r.index};
      },
      0.0);
}

// detection.cu multiclass NMS, global-memory sort and direct scan: one segment of M = 4200 boxes with
// nms_top_k -1: ~4130 candidates > kSortCap 4096 keys, so bitonic_sort runs on the global workspace
// (8192-wide network, 16 comparators per thread per stage) after ordered_select's 17 rounds; eta 0.9
// < 1 selects nms_scan_direct_kernel (one warp, __all_sync per candidate, adaptive threshold).
// keep_top_k -1: nms_output_kernel without a cut. Exact.
TEST(KernelsTsan, MultiClassNmsGlobalSortDirectScan) {
  std::vector<float> boxes, scores;
  nms_inputs(1, 4200, 1, 25, 280, &boxes, &scores);
  int64_t candidates = 0;
  for (float s : scores) candidates += s > 0.01f;
  ASSERT_GT(candidates, 4096);
  expect_same_on_devices(
      [&](Device d) {
        MultiClassNmsArgs a;
        a.score_threshold = 0.01f;
        a.nms_top_k = -1;
        a.keep_top_k = -1;
        a.nms_threshold = 0.6f;
        a.nms_eta = 0.9f;
        const MultiClassNmsResult r = multiclass_nms(Tensor::from_vector(boxes, {1, 4200, 4}, d),
                                                     Tensor::from_vector(scores, {1, 4200, 1}, d), a);
        return std::vector<Tensor>{r.out, r.bbox_num, r.index};
      },
      0.0);
}

// yolo_loss.cu: a 96 x 96 input with 3 classes: heads [2, 3, 3, 24], [2, 6, 6, 24], [2, 12, 12, 24];
// 4 gts per image (one padded) matching anchors of every scale. yolo_fill_kernel, yolo_assign_kernel,
// yolo_owner_kernel, yolo_fwd_kernel (grid 2 x 2 images x 3 scales: gt boxes staged in dynamic shared
// memory behind a barrier, grid-stride over the 432 predictions of the largest scale, block_sum of
// the four terms), yolo_finalize_kernel over 12 partials; the backward yolo_bwd_kernel<int32_t>
// (27 x 3 blocks). Tolerance 1e-5 (partial sums in another order; gradients bit-exact).
TEST(KernelsTsan, Yolov3LossForwardBackward) {
  expect_same_on_devices([](Device d) {
    YoloLossArgs args;
    args.num_classes = 3;
    const int64_t N = 2, B = 4;
    std::vector<Tensor> heads;
    for (int64_t g : {3, 6, 12})
      heads.push_back(Tensor::uniform({N, g, g, 24}, 300 + (uint64_t)g, -2, 2, d).set_requires_grad(true));
    const auto px = [](double v) { return (float)(v / 96); };
    const Tensor box = Tensor::from_vector(
        {0.30f, 0.40f, px(12), px(14), 0.55f, 0.52f, px(60), px(47), 0.50f, 0.50f, px(90), px(80), 0.f, 0.f, 0.f, 0.f,
         0.70f, 0.30f, px(30), px(60), 0.20f, 0.70f, px(16), px(30), 0.81f, 0.12f, px(40), px(40), 0.f, 0.f, 0.f, 0.f},
        {N, B, 4}, d);
    const Tensor cls = Tensor::from_vector_i64({0, 1, 2, 0, 2, 1, 0, 0}, {N, B}, d);
    const Tensor score = Tensor::from_vector({1.f, 0.8f, 1.f, 0.f, 1.f, 0.5f, 1.f, 0.f}, {N, B}, d);
    const YoloLossOutput r = yolov3_loss(heads, box, cls, score, args);
    r.loss.backward();
    return std::vector<Tensor>{r.loss_xy, r.loss_wh,       r.loss_obj,      r.loss_cls,
                               r.loss,    heads[0].grad(), heads[1].grad(), heads[2].grad()};
  });
}
