// matmul: validation, operand layouts (transposed views become GEMM transpose flags), autograd,
// and dispatch to one GEMM per device:
//   CPU                    -> kernels::gemm_cpu (OpenBLAS)
//   CUDA                   -> kernels::gemm_cublas, or kernels::gemm_tiled_cuda with ENGINE_GEMM=tiled
//                             (the emulated build's cuBLAS is kernels/emu/cublas_emu.cpp, OpenBLAS
//                             behind cuBLAS's API; test_matmul also runs the tiled kernel directly)
// Backward: dA = dC B^T, dB = A^T dC through the same GEMM entry with flipped transpose flags; for a
// 2-D operand broadcast over the batch its gradient is the GEMM "sum over the batch" mode.
#include "engine/ops/matmul.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "engine/autograd.h"
#include "engine/ops/copy.h"
#include "engine/ops/op_utils.h"
#include "engine/precision.h"
#include "kernels/cpu/matmul_cpu.h"
#if defined(ENGINE_WITH_CUDA)
#include "kernels/cuda/matmul_cuda.h"
#endif
#if defined(ENGINE_WITH_CUDA)
#include "kernels/cublas/gemm_cublas.h"
#endif

namespace engine {
namespace {

constexpr const char* kOp = "matmul";

// A (possibly batched) matrix as the GEMM reads it: logically [batch, rows, cols] (not batched = a 2-D
// operand, broadcast), stored row-major [rows][cols] with row stride ld, or, with `trans`,
// [cols][rows] with row stride ld.
struct Operand {
  Tensor keep;  // keeps the storage alive (the input itself, or a contiguous copy of it)
  const float* ptr = nullptr;
  bool batched = false;  // 3-D; a 2-D operand is broadcast over the other's batch
  int64_t batch = 1, rows = 0, cols = 0;
  int64_t ld = 1, stride = 0;
  bool trans = false;
};

// The operand for a 2-D or 3-D f32 tensor. Unit-stride rows (a slice of columns is fine) and
// transposed views (unit-stride columns) are used in place; anything else is copied first.
Operand operand_of(const Tensor& t) {
  const int d = t.dim();
  Operand o;
  o.batched = d == 3;
  o.batch = d == 3 ? t.size(0) : 1;
  o.rows = t.size(d - 2);
  o.cols = t.size(d - 1);
  o.keep = t;
  if (t.numel() == 0) {
    o.ld = std::max<int64_t>(o.cols, 1);
    return o;
  }
  const int64_t sr = t.strides()[d - 2], sc = t.strides()[d - 1];
  const bool plain = (o.cols == 1 || sc == 1) && (o.rows == 1 || sr >= std::max<int64_t>(o.cols, 1));
  const bool transposed = (o.rows == 1 || sr == 1) && (o.cols == 1 || sc >= std::max<int64_t>(o.rows, 1));
  if (plain) {
    o.ld = o.rows == 1 ? std::max<int64_t>(o.cols, 1) : sr;
  } else if (transposed) {
    o.trans = true;
    o.ld = o.cols == 1 ? std::max<int64_t>(o.rows, 1) : sc;
  } else {
    NoGradGuard no_grad;  // the copy is an implementation detail; the caller records the op
    return operand_of(copy_contiguous(t, DType::F32));
  }
  o.stride = d == 3 ? t.strides()[0] : 0;
  o.ptr = t.data<float>();
  return o;
}

// The logical transpose of an operand: same memory, flipped flag.
Operand transposed(Operand o) {
  std::swap(o.rows, o.cols);
  o.trans = !o.trans;
  return o;
}

#if defined(ENGINE_WITH_CUDA)
bool use_tiled_gemm() {
  static const bool tiled = [] {
    const char* v = std::getenv("ENGINE_GEMM");
    if (!v || !*v || std::strcmp(v, "cublas") == 0) return false;
    ENGINE_CHECK(std::strcmp(v, "tiled") == 0, "ENGINE_GEMM must be 'cublas' (default) or 'tiled', got '", v, "'");
    return true;
  }();
  return tiled;
}
#endif

#if defined(ENGINE_WITH_CUDA)
void gemm_cuda(const kernels::GemmParams& p) {
  if (!use_tiled_gemm()) {
    kernels::gemm_cublas(p, compute_stream());
    return;
  }
  kernels::gemm_tiled_cuda(p, compute_stream());
}
#endif

// 2mnk per batch; each operand read once (a broadcast operand once, not per batch), out written once.
profiler::Work gemm_work(const Operand& x, const Operand& y, const Tensor& out, const kernels::GemmParams& p) {
  profiler::Work w;
  w.flops = 2.0 * (double)p.m * (double)p.n * (double)p.k * (double)p.batch;
  const double xb = x.batched ? (double)p.batch : 1.0, yb = y.batched ? (double)p.batch : 1.0;
  w.bytes = sizeof(float) * (xb * (double)p.m * (double)p.k + yb * (double)p.k * (double)p.n) + tensor_bytes(out);
  return w;
}

// out = x * y (logical [rows, cols] matrices, batched). With sum_batch the products of all batches
// are summed into one [m, n] result (the gradient of an operand broadcast over the batch).
Tensor gemm(const Operand& x, const Operand& y, bool sum_batch, Device dev) {
  const int64_t m = x.rows, k = x.cols, n = y.cols;
  const bool batched = x.batched || y.batched;
  const int64_t batch = x.batched ? x.batch : y.batch;
  const Shape shape = batched && !sum_batch ? Shape{batch, m, n} : Shape{m, n};
  Tensor out = Tensor::empty(shape, DType::F32, dev);
  if (out.numel() == 0) return out;
  if (k == 0 || batch == 0) {  // empty sums
    fill_(out, 0.f);
    return out;
  }
  kernels::GemmParams p;
  p.m = m;
  p.n = n;
  p.k = k;
  p.batch = batch;
  p.a = x.ptr;
  p.lda = x.ld;
  p.stride_a = x.batched ? x.stride : 0;
  p.trans_a = x.trans;
  p.b = y.ptr;
  p.ldb = y.ld;
  p.stride_b = y.batched ? y.stride : 0;
  p.trans_b = y.trans;
  p.c = out.data<float>();
  p.ldc = n;
  p.stride_c = sum_batch ? 0 : m * n;
  // tf32 autocast (engine/precision.h): cuBLAS may use TF32 tensor cores (the hand-written kernel,
  // ENGINE_GEMM=tiled, computes in fp32, which TF32's permission allows); CPUs have none.
  p.tf32 = autocast_precision() == Precision::TF32;
  ENGINE_CHECK(!p.tf32 || dev.is_cuda(), "matmul: tf32 autocast needs a GPU (TF32 is a tensor-core math mode), got ",
               dev.str());
  ENGINE_DISPATCH(kOp, dev, gemm_work(x, y, out, p), kernels::gemm_cpu(p), gemm_cuda(p));
  return out;
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  check_defined(kOp, "a", a);
  check_defined(kOp, "b", b);
  ENGINE_CHECK(a.dtype() == DType::F32 && b.dtype() == DType::F32, "matmul: a ", a.describe(), " and b ", b.describe(),
               " must both be f32 (cast storage types with .to(DType::F32))");
  check_same_device(kOp, a, "a", b, "b");
  ENGINE_CHECK(a.dim() == 2 || a.dim() == 3, "matmul: a must be 2-D [M, K] or 3-D [B, M, K], got a ", a.describe(),
               " (b ", b.describe(), ")");
  ENGINE_CHECK(b.dim() == 2 || b.dim() == 3, "matmul: b must be 2-D [K, N] or 3-D [B, K, N], got b ", b.describe(),
               " (a ", a.describe(), ")");
  const int64_t ka = a.size(a.dim() - 1), kb = b.size(b.dim() - 2);
  ENGINE_CHECK(ka == kb, "matmul: inner dimensions differ: a ", a.describe(), " has K = ", ka, " but b ", b.describe(),
               " has K = ", kb);
  ENGINE_CHECK(a.dim() == 2 || b.dim() == 2 || a.size(0) == b.size(0), "matmul: batch sizes differ: a ", a.describe(),
               " vs b ", b.describe(),
               " (a 2-D operand is broadcast over the batch; 3-D operands need equal batch sizes)");

  const Device dev = a.device();
  Tensor out = gemm(operand_of(a), operand_of(b), false, dev);

  const bool need_a = a.requires_grad(), need_b = b.requires_grad();
  const Tensor sa = a.detach(), sb = b.detach();
  const bool out_batched = out.dim() == 3;
  record_lambda("MatmulBackward", {a, b}, out,
                [sa, sb, need_a, need_b, out_batched, dev](const std::vector<Tensor>& g) {
                  const Operand dc = operand_of(g[0]);
                  Tensor da, db;
                  if (need_a) da = gemm(dc, transposed(operand_of(sb)), sa.dim() == 2 && out_batched, dev);
                  if (need_b) db = gemm(transposed(operand_of(sa)), dc, sb.dim() == 2 && out_batched, dev);
                  return std::vector<Tensor>{da, db};
                });
  return out;
}

}  // namespace engine
