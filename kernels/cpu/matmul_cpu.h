// GEMM parameters shared by every GEMM backend (CPU OpenBLAS, the hand-written CUDA tiled kernel,
// cuBLAS), and the CPU entry point.
//
// Semantics (row-major, f32), for every batch index z in [0, batch):
//   C_z = alpha * op(A_z) * op(B_z) + beta * C_z
//   A_z = a + z * stride_a, op(A_z) is [m, k]: stored [m, k] with row stride lda, or, with trans_a,
//         stored [k, m] with row stride lda (op = transpose). B likewise: op(B_z) is [k, n].
//   C_z = c + z * stride_c, [m, n] with row stride ldc (never transposed).
//   stride_a / stride_b == 0 broadcasts that operand over the batch.
//   stride_c == 0 with batch > 1 means "sum over the batch": C = alpha * sum_z op(A_z) op(B_z) + beta * C
//   (used by the backward of a broadcast 2-D operand).
//   beta == 0: C is write-only (never read, so NaN garbage in C does not propagate).
//   k == 0: C = beta * C (zeros for beta == 0).
// Constraints: m, n, k, batch >= 0; lda >= max(1, cols of the stored A), same for ldb, ldc >= max(1, n);
// a/b/c need no particular alignment (backends vectorise when they can).
#pragma once
#include <cstdint>

namespace engine::kernels {

struct GemmParams {
  int64_t m = 0, n = 0, k = 0, batch = 1;
  const float* a = nullptr;
  int64_t lda = 1, stride_a = 0;
  bool trans_a = false;
  const float* b = nullptr;
  int64_t ldb = 1, stride_b = 0;
  bool trans_b = false;
  float* c = nullptr;
  int64_t ldc = 1, stride_c = 0;
  float alpha = 1.f, beta = 0.f;
  // TF32 tensor-core math allowed (--precision tf32): used by cuBLAS on a real GPU only; the other
  // backends compute in full fp32 (the op layer refuses tf32 on devices without it).
  bool tf32 = false;

  bool sum_batches() const { return batch > 1 && stride_c == 0; }
};

// Rewrites p into an equivalent GEMM with fewer batches when the layout allows (no data moves):
//  - an operand B shared by all batches (stride_b == 0) with A stacked along its rows
//    (!trans_a, stride_a == m*lda) and C likewise (stride_c == m*ldc): one GEMM with m*batch rows;
//  - "sum over the batch" with A and B stacked along k (trans_a, stride_a == k*lda;
//    !trans_b, stride_b == k*ldb): one GEMM with k*batch (e.g. dW = X^T dY of a batched input).
// Each backend calls this first. Also normalises batch to 1 when it is 1 or less.
inline void gemm_fold_batch(GemmParams& p) {
  if (p.batch <= 1) {
    p.batch = 1;
    return;
  }
  if (!p.sum_batches()) {
    if (p.stride_b == 0 && !p.trans_a && p.stride_a == p.m * p.lda && p.lda >= p.k && p.stride_c == p.m * p.ldc &&
        p.ldc >= p.n) {
      p.m *= p.batch;
      p.batch = 1;
    }
  } else if (p.trans_a && !p.trans_b && p.stride_a == p.k * p.lda && p.lda >= p.m && p.stride_b == p.k * p.ldb &&
             p.ldb >= p.n) {
    p.k *= p.batch;
    p.batch = 1;
  }
}

// OpenBLAS cblas_sgemm, single-threaded per call, with the work split over the engine's OpenMP
// threads (one thread pool on the machine; see matmul_cpu.cpp). Safe to call inside an OpenMP
// parallel region (then runs on the calling thread). The first call sets OpenBLAS to one thread
// for the whole process: call GEMMs through here rather than cblas_sgemm directly.
void gemm_cpu(const GemmParams& p);

// Threads gemm_cpu uses for a large GEMM (omp_get_max_threads()).
int gemm_cpu_threads();

}  // namespace engine::kernels
