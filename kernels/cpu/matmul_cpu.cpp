// GEMM on the CPU through OpenBLAS (Debian libopenblas, pthread variant).
// Math: C_z = alpha * op(A_z) op(B_z) + beta * C_z per batch, or summed over the batch when
// stride_c == 0 (see GemmParams in matmul_cpu.h). Row-major; transposes are BLAS flags, no copies.
// Threads: ONE pool. OpenBLAS (pthread variant) is set to a single thread once, and gemm_cpu splits
// the work itself over the engine's OpenMP threads (omp_get_max_threads(), so OMP_NUM_THREADS is the
// one knob): whole batches per thread when there are enough, else row blocks of C (or column
// blocks when N > M), each thread calling single-threaded sgemm on its block. Two pools (OpenBLAS's
// pthreads + OpenMP) spin-wait against each other on 2 cores: measured here (2 cores, AVX-512,
// GFLOP/s, OpenBLAS 2 threads vs this split): 16384x64x576 186 vs 214, 16384x576x64 (B^T) 182 vs
// 231, 576x64x16384 (A^T) 139 vs 202, 1024^3 292 vs 288; right after an OpenMP loop the 2-thread
// OpenBLAS call lost a further 10-45%. Each C element is computed by one sgemm call over the full
// K in a fixed order, so results are deterministic for a given thread count.
// "Sum over the batch" (stride_c == 0): each thread owns a block of C and accumulates the batches
// in order with beta = 1 after the first (deterministic, no atomics).
// Tested by tests/test_matmul.cpp (against a double reference, and the CUDA device against this);
// benchmarked by bench_kernels (matmul rows: GFLOP/s = 2*M*N*K / time).
#include "kernels/cpu/matmul_cpu.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <climits>
#include <cstring>

#include "base/error.h"

namespace engine::kernels {
namespace {

void init_openblas() {
  static const bool done = [] {
    openblas_set_num_threads(1);
    return true;
  }();
  (void)done;
}

void check_int(const char* what, int64_t v) {
  ENGINE_CHECK(v >= 0 && v <= INT_MAX, "gemm_cpu: ", what, " = ", v, " exceeds the BLAS integer range");
}

// C = beta * C over an m x n block (k == 0: nothing to multiply).
void scale_c(float* c, int64_t m, int64_t n, int64_t ldc, float beta) {
  for (int64_t i = 0; i < m; ++i) {
    float* row = c + i * ldc;
    if (beta == 0.f) {
      std::memset(row, 0, (size_t)n * sizeof(float));
    } else {
      for (int64_t j = 0; j < n; ++j) row[j] *= beta;
    }
  }
}

// Single-threaded: rows [r0, r1) and columns [c0, c1) of C, all batches of p (summed or not).
void gemm_block(const GemmParams& p, int64_t z0, int64_t z1, int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
  if (r0 >= r1 || c0 >= c1) return;
  const bool sum = p.sum_batches();
  const CBLAS_TRANSPOSE ta = p.trans_a ? CblasTrans : CblasNoTrans;
  const CBLAS_TRANSPOSE tb = p.trans_b ? CblasTrans : CblasNoTrans;
  const int64_t a_off = p.trans_a ? r0 : r0 * p.lda;
  const int64_t b_off = p.trans_b ? c0 * p.ldb : c0;
  const int64_t c_off = r0 * p.ldc + c0;
  for (int64_t z = z0; z < z1; ++z) {
    const float beta = sum && z > 0 ? 1.f : p.beta;
    float* c = p.c + (sum ? 0 : z * p.stride_c) + c_off;
    cblas_sgemm(CblasRowMajor, ta, tb, (int)(r1 - r0), (int)(c1 - c0), (int)p.k, p.alpha, p.a + z * p.stride_a + a_off,
                (int)p.lda, p.b + z * p.stride_b + b_off, (int)p.ldb, beta, c, (int)p.ldc);
  }
}

}  // namespace

int gemm_cpu_threads() { return std::max(1, omp_get_max_threads()); }

void gemm_cpu(const GemmParams& in) {
  GemmParams p = in;
  gemm_fold_batch(p);
  if (p.m == 0 || p.n == 0) return;
  init_openblas();
  const bool sum = p.sum_batches();
  if (p.k == 0) {
    if (sum) {
      scale_c(p.c, p.m, p.n, p.ldc, p.beta);
    } else {
      for (int64_t z = 0; z < p.batch; ++z) scale_c(p.c + z * p.stride_c, p.m, p.n, p.ldc, p.beta);
    }
    return;
  }
  check_int("m", p.m);
  check_int("n", p.n);
  check_int("k", p.k);
  check_int("lda", p.lda);
  check_int("ldb", p.ldb);
  check_int("ldc", p.ldc);
  const double flops = 2.0 * (double)p.m * (double)p.n * (double)p.k * (double)p.batch;
  const int nt = omp_in_parallel() || flops < 2e6 ? 1 : gemm_cpu_threads();
  if (nt == 1) {
    gemm_block(p, 0, p.batch, 0, p.m, 0, p.n);
    return;
  }
  if (!sum && p.batch >= nt) {  // whole batches per thread
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t z = 0; z < p.batch; ++z) gemm_block(p, z, z + 1, 0, p.m, 0, p.n);
    return;
  }
  // Blocks of rows (or columns when N > M) of C, multiples of 16, one per thread.
  const bool by_rows = p.m >= p.n;
  const int64_t extent = by_rows ? p.m : p.n;
  const int64_t chunk = ((extent + nt - 1) / nt + 15) / 16 * 16;
  const int64_t nchunks = (extent + chunk - 1) / chunk;
#pragma omp parallel for schedule(static) num_threads(nt)
  for (int64_t t = 0; t < nchunks; ++t) {
    const int64_t lo = t * chunk, hi = std::min(extent, lo + chunk);
    if (by_rows) {
      gemm_block(p, 0, p.batch, lo, hi, 0, p.n);
    } else {
      gemm_block(p, 0, p.batch, 0, p.m, lo, hi);
    }
  }
}

}  // namespace engine::kernels
