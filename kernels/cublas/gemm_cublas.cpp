// GEMM through cuBLAS (REAL build).
// Math: GemmParams (kernels/cpu/matmul_cpu.h): C_z = alpha op(A_z) op(B_z) + beta C_z, row-major.
// Row-major trick: cuBLAS is column-major, and a row-major [r][c] matrix read column-major is its
// transpose, so C = op(A) op(B) (row-major) is computed as C^T = op(B)^T op(A)^T (column-major):
// cublasSgemm(op_b, op_a, n, m, k, alpha, B, ldb, A, lda, beta, C, ldc) with op_x = T iff trans_x.
// Batches: cublasSgemmStridedBatched (stride 0 broadcasts an operand); "sum over the batch"
// (stride_c == 0) is a sequence of GEMMs accumulating with beta = 1 after the first.
// One handle per process, created on first use, bound to the caller's stream (the engine's
// compute_stream()); calls are serialised by a mutex because a handle is not thread-safe.
// Math mode per call: CUBLAS_DEFAULT_MATH (full fp32, no TF32, so results stay comparable with the
// CPU backend), or CUBLAS_TF32_TENSOR_OP_MATH when p.tf32 (--precision tf32).
// Tested by tests/test_gemm_gpu.cpp (real GPU); benchmarked by bench_kernels (matmul rows).
#include "kernels/cublas/gemm_cublas.h"

#include <cublas_v2.h>

#include <algorithm>
#include <climits>
#include <mutex>

#include "base/cuda_context.h"
#include "base/error.h"

#define CUBLAS_CHECK(expr)                                                                                        \
  do {                                                                                                            \
    const cublasStatus_t st_ = (expr);                                                                            \
    if (st_ != CUBLAS_STATUS_SUCCESS)                                                                             \
      ::engine::fail("cuBLAS error ", cublasGetStatusName(st_), " (", cublasGetStatusString(st_), ") in ", #expr, \
                     " at ", __FILE__, ":", __LINE__);                                                            \
  } while (0)

namespace engine::kernels {
namespace {

std::mutex& handle_mutex() {
  static std::mutex m;
  return m;
}

// Called with handle_mutex() held.
cublasHandle_t handle() {
  static cublasHandle_t h = [] {
    cublasHandle_t x = nullptr;
    (void)compute_stream();  // creates the handle on the process's device (select_cuda_device)
    CUBLAS_CHECK(cublasCreate(&x));
    CUBLAS_CHECK(cublasSetPointerMode(x, CUBLAS_POINTER_MODE_HOST));
    return x;
  }();
  return h;
}

void check_int(const char* what, int64_t v) {
  ENGINE_CHECK(v >= 0 && v <= INT_MAX, "gemm_cublas: ", what, " = ", v, " exceeds cuBLAS's int range");
}

}  // namespace

void gemm_cublas(const GemmParams& in, cudaStream_t stream) {
  GemmParams p = in;
  gemm_fold_batch(p);
  if (p.m == 0 || p.n == 0) return;
  check_int("m", p.m);
  check_int("n", p.n);
  check_int("k", p.k);
  check_int("batch", p.batch);
  check_int("lda", p.lda);
  check_int("ldb", p.ldb);
  check_int("ldc", p.ldc);
  const bool sum = p.sum_batches();
  const int m = (int)p.m, n = (int)p.n, k = (int)p.k;
  const int lda = (int)std::max<int64_t>(p.lda, 1), ldb = (int)std::max<int64_t>(p.ldb, 1);
  const int ldc = (int)std::max<int64_t>(p.ldc, 1);
  if (k == 0) {  // C = beta * C
    const int64_t nc = sum ? 1 : p.batch;
    for (int64_t z = 0; z < nc; ++z) {
      float* c = p.c + z * p.stride_c;
      if (p.beta == 0.f) {
        CUDA_CHECK(cudaMemset2DAsync(c, (size_t)ldc * sizeof(float), 0, (size_t)n * sizeof(float), (size_t)m, stream));
      } else {
        std::lock_guard<std::mutex> lock(handle_mutex());
        cublasHandle_t h = handle();
        CUBLAS_CHECK(cublasSetStream(h, stream));
        const float zero = 0.f;
        CUBLAS_CHECK(cublasSgeam(h, CUBLAS_OP_N, CUBLAS_OP_N, n, m, &p.beta, c, ldc, &zero, c, ldc, c, ldc));
      }
    }
    return;
  }
  const cublasOperation_t opa = p.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t opb = p.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  std::lock_guard<std::mutex> lock(handle_mutex());
  cublasHandle_t h = handle();
  CUBLAS_CHECK(cublasSetMathMode(h, p.tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
  CUBLAS_CHECK(cublasSetStream(h, stream));
  if (p.batch == 1) {
    CUBLAS_CHECK(cublasSgemm(h, opb, opa, n, m, k, &p.alpha, p.b, ldb, p.a, lda, &p.beta, p.c, ldc));
  } else if (!sum) {
    CUBLAS_CHECK(cublasSgemmStridedBatched(h, opb, opa, n, m, k, &p.alpha, p.b, ldb, (long long)p.stride_b, p.a, lda,
                                           (long long)p.stride_a, &p.beta, p.c, ldc, (long long)p.stride_c,
                                           (int)p.batch));
  } else {
    const float one = 1.f;
    for (int64_t z = 0; z < p.batch; ++z)
      CUBLAS_CHECK(cublasSgemm(h, opb, opa, n, m, k, &p.alpha, p.b + z * p.stride_b, ldb, p.a + z * p.stride_a, lda,
                               z == 0 ? &p.beta : &one, p.c, ldc));
  }
}

}  // namespace engine::kernels
