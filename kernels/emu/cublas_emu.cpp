// cublas_emu.cpp -- the emulated build's cuBLAS: the calls kernels/cublas/gemm_cublas.cpp makes,
// defined extern "C" against the real <cublas_v2.h> prototypes (libcublas is not linked), so the
// matmul op's production path (its row-major to column-major mapping, batches, the "sum over the
// batch" sequence, k == 0) runs in CI on the emulated GPU.
//
// What it computes: column-major C = alpha op(A) op(B) + beta C through OpenBLAS (cblas_sgemm,
// CblasColMajor), C = alpha op(A) + beta op(B) for cublasSgeam; with beta == 0, C is not read (a NaN
// there does not propagate), as cuBLAS documents. Under CUBLAS_TF32_TENSOR_OP_MATH the inputs are
// rounded to TF32 first (cuBLAS may use TF32 tensor cores there; cvt.rna's rounding, where tensor
// cores fed f32 directly may truncate instead).
// What it checks as cuBLAS does: the sizes and leading dimensions (lda >= max(1, rows of A as
// stored) etc.; CUBLAS_STATUS_INVALID_VALUE otherwise), a null handle, Sgeam's in-place rules.
// Scalars: read when the call is made (CUBLAS_POINTER_MODE_HOST) or when the work runs
// (CUBLAS_POINTER_MODE_DEVICE). Calls run in stream order on the handle's stream, or are recorded
// into its capture (cuemu::submit).
// Not modelled: cuBLAS's speed and its summation order.
// Tested by test_gemm_gpu and test_matmul (the matmul op on the emulated GPU).
#include <cblas.h>
#include <cublas_v2.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/emu/cuemu.h"

struct cublasContext {
  cudaStream_t stream = nullptr;
  cublasPointerMode_t pointer_mode = CUBLAS_POINTER_MODE_HOST;
  cublasMath_t math = CUBLAS_DEFAULT_MATH;
};

namespace {

bool tf32(cublasHandle_t h) { return (h->math & 0xf) == CUBLAS_TF32_TENSOR_OP_MATH; }

// A scalar argument: its value now (host pointer mode) or a pointer read when the work runs.
struct Scalar {
  float value = 0.f;
  const float* device = nullptr;
  float get() const { return device ? *device : value; }
};
Scalar scalar(cublasHandle_t h, const float* p) {
  return h->pointer_mode == CUBLAS_POINTER_MODE_DEVICE ? Scalar{0.f, p} : Scalar{*p, nullptr};
}

// A column-major operand of `rows` x `cols` (as stored) with leading dimension ld, copied with TF32
// rounding when asked (into `keep`), else used in place.
const float* operand(const float* p, int rows, int cols, int ld, bool round, std::vector<float>& keep) {
  if (!round) return p;
  keep.assign((size_t)ld * (size_t)(cols - 1) + (size_t)rows, 0.f);
  for (int c = 0; c < cols; ++c)
    for (int r = 0; r < rows; ++r) keep[(size_t)c * ld + r] = cuemu::round_to_tf32(p[(size_t)c * ld + r]);
  return keep.data();
}

// One column-major GEMM (the work of a call, run in stream order).
void gemm(bool tf, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha, const float* A,
          int lda, const float* B, int ldb, float beta, float* C, int ldc) {
  if (beta == 0.f)
    for (int j = 0; j < n; ++j) std::fill(C + (size_t)j * ldc, C + (size_t)j * ldc + m, 0.f);
  if (k == 0 || alpha == 0.f) {  // C = beta C
    if (beta != 0.f && beta != 1.f)
      for (int j = 0; j < n; ++j)
        for (int i = 0; i < m; ++i) C[(size_t)j * ldc + i] *= beta;
    return;
  }
  std::vector<float> ka, kb;
  const bool na = ta == CUBLAS_OP_N, nb = tb == CUBLAS_OP_N;
  const float* a = operand(A, na ? m : k, na ? k : m, lda, tf, ka);
  const float* b = operand(B, nb ? k : n, nb ? n : k, ldb, tf, kb);
  cblas_sgemm(CblasColMajor, na ? CblasNoTrans : CblasTrans, nb ? CblasNoTrans : CblasTrans, m, n, k, alpha, a, lda, b,
              ldb, beta, C, ldc);
}

bool gemm_args_ok(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, int lda, int ldb, int ldc) {
  auto op_ok = [](cublasOperation_t t) { return t == CUBLAS_OP_N || t == CUBLAS_OP_T || t == CUBLAS_OP_C; };
  return op_ok(ta) && op_ok(tb) && m >= 0 && n >= 0 && k >= 0 && lda >= std::max(1, ta == CUBLAS_OP_N ? m : k) &&
         ldb >= std::max(1, tb == CUBLAS_OP_N ? k : n) && ldc >= std::max(1, m);
}

}  // namespace

extern "C" {

const char* CUBLASWINAPI cublasGetStatusName(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS:
      return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED:
      return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_INVALID_VALUE:
      return "CUBLAS_STATUS_INVALID_VALUE";
    default:
      return "CUBLAS_STATUS (emulated cuBLAS: unknown status)";
  }
}
const char* CUBLASWINAPI cublasGetStatusString(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS:
      return "success";
    case CUBLAS_STATUS_NOT_INITIALIZED:
      return "the library was not initialized";
    case CUBLAS_STATUS_INVALID_VALUE:
      return "an invalid numeric value was used as an argument";
    default:
      return "unknown error";
  }
}

cublasStatus_t CUBLASWINAPI cublasCreate_v2(cublasHandle_t* handle) {
  if (!handle) return CUBLAS_STATUS_INVALID_VALUE;
  *handle = new cublasContext;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t CUBLASWINAPI cublasDestroy_v2(cublasHandle_t handle) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t CUBLASWINAPI cublasSetStream_v2(cublasHandle_t handle, cudaStream_t stream) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  handle->stream = stream;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t CUBLASWINAPI cublasSetPointerMode_v2(cublasHandle_t handle, cublasPointerMode_t mode) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (mode != CUBLAS_POINTER_MODE_HOST && mode != CUBLAS_POINTER_MODE_DEVICE) return CUBLAS_STATUS_INVALID_VALUE;
  handle->pointer_mode = mode;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t CUBLASWINAPI cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  handle->math = mode;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t CUBLASWINAPI cublasSgemm_v2(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                           int k, const float* alpha, const float* A, int lda, const float* B, int ldb,
                                           const float* beta, float* C, int ldc) {
  return cublasSgemmStridedBatched(h, ta, tb, m, n, k, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, 1);
}

cublasStatus_t CUBLASWINAPI cublasSgemmStridedBatched(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb,
                                                      int m, int n, int k, const float* alpha, const float* A, int lda,
                                                      long long int stride_a, const float* B, int ldb,
                                                      long long int stride_b, const float* beta, float* C, int ldc,
                                                      long long int stride_c, int batch) {
  if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!gemm_args_ok(ta, tb, m, n, k, lda, ldb, ldc) || batch < 0 || !alpha || !beta) return CUBLAS_STATUS_INVALID_VALUE;
  if (m == 0 || n == 0 || batch == 0) return CUBLAS_STATUS_SUCCESS;
  const Scalar al = scalar(h, alpha), be = scalar(h, beta);
  const bool tf = tf32(h);
  cuemu::submit(
      h->stream,
      [=] {
        for (int z = 0; z < batch; ++z)
          gemm(tf, ta, tb, m, n, k, al.get(), A + z * stride_a, lda, B + z * stride_b, ldb, be.get(), C + z * stride_c,
               ldc);
      },
      true, "cublasSgemmStridedBatched");
  return CUBLAS_STATUS_SUCCESS;
}

// C = alpha op(A) + beta op(B), m x n column-major. In place (C == A or C == B) only without a
// transpose of that operand and with the same leading dimension, as cuBLAS requires.
cublasStatus_t CUBLASWINAPI cublasSgeam(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                        const float* alpha, const float* A, int lda, const float* beta, const float* B,
                                        int ldb, float* C, int ldc) {
  if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
  auto op_ok = [](cublasOperation_t t) { return t == CUBLAS_OP_N || t == CUBLAS_OP_T || t == CUBLAS_OP_C; };
  if (!op_ok(ta) || !op_ok(tb) || m < 0 || n < 0 || !alpha || !beta || lda < std::max(1, ta == CUBLAS_OP_N ? m : n) ||
      ldb < std::max(1, tb == CUBLAS_OP_N ? m : n) || ldc < std::max(1, m) ||
      (C == A && (ta != CUBLAS_OP_N || lda != ldc)) || (C == B && (tb != CUBLAS_OP_N || ldb != ldc)))
    return CUBLAS_STATUS_INVALID_VALUE;
  if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
  const Scalar al = scalar(h, alpha), be = scalar(h, beta);
  cuemu::submit(
      h->stream,
      [=] {
        const float a = al.get(), b = be.get();
        auto at = [](const float* p, cublasOperation_t t, int ld, int i, int j) {
          return t == CUBLAS_OP_N ? p[(size_t)j * ld + i] : p[(size_t)i * ld + j];
        };
        for (int j = 0; j < n; ++j)
          for (int i = 0; i < m; ++i) {
            const float va = a == 0.f ? 0.f : a * at(A, ta, lda, i, j);
            const float vb = b == 0.f ? 0.f : b * at(B, tb, ldb, i, j);
            C[(size_t)j * ldc + i] = va + vb;
          }
      },
      true, "cublasSgeam");
  return CUBLAS_STATUS_SUCCESS;
}

}  // extern "C"
