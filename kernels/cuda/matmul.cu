// Hand-written tiled SGEMM (f32) for the CUDA device.
// Math: C_z = alpha * op(A_z) op(B_z) + beta * C_z, row-major, for z in [0, batch); or, with
// stride_c == 0, C = alpha * sum_z op(A_z) op(B_z) + beta * C (GemmParams, kernels/cpu/matmul_cpu.h).
// op(X) = X or X^T (trans flags, handled by index math: no transposed copies).
//
// Design (one CTA of 256 threads computes a BM x BN tile of C):
//   - two configurations: "large" BM = BN = 128, BK = 8, 8x8 register micro-tile per thread;
//     "small" BM = BN = 64, BK = 16, 4x4 micro-tile (chosen when the large one gives too few CTAs).
//   - the K loop walks BK-deep slabs of A (BM x BK) and B (BK x BN), staged k-major in shared memory
//     (As[k][m], Bs[k][n], rows padded by 4 floats so the transposing stores are conflict-free and
//     float4 alignment is kept), double-buffered: the next slab is fetched into registers while the
//     current one is multiplied, then stored into the other buffer; one __syncthreads per slab.
//   - each thread's micro-tile is split into 4-wide groups spaced BM/2 (BN/2) apart, so its shared
//     memory reads are float4 and a warp's reads hit distinct banks; output stores are float4 rows.
//   - global loads are float4 along the operand's contiguous axis when the pointer, leading
//     dimension and batch stride are multiples of 4 floats; otherwise (and at ragged edges) scalar
//     with bounds checks, zero-filling outside [0, M) x [0, K) / [0, K) x [0, N).
//   - batches on blockIdx.z (chunks of 65535); "sum over the batch" loops z inside the CTA, so the
//     reduction over the batch is a plain register accumulation (deterministic, no atomics).
//   - beta == 0 never reads C. 64-bit offsets for batch / row arithmetic.
// Constraints: m, n, k < 2^31; any leading dims >= the stored row length; any alignment.
// Resources: see build-dir/resource_report.txt (REAL build); must not spill (ptxas -warn-spills).
// Tests: tests/test_matmul.cpp (through the op, and directly against gemm_cpu for all transpose
// combinations, alpha/beta, batches, sum mode; emulated in CI), tests/test_gemm_gpu.cpp (real GPU,
// larger shapes, against cuBLAS and the CPU). Benchmark: bench_kernels (matmul rows, tiled vs cuBLAS).
#include <array>
#include <climits>
#include <cstdint>

#include "base/cuda_context.h"
#include "base/error.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/matmul_cuda.h"

#if defined(__CUDACC__)
#define GEMM_UNROLL _Pragma("unroll")
#else
#define GEMM_UNROLL _Pragma("GCC unroll 16")
#endif

namespace engine::kernels {
namespace {

constexpr int kThreads = 256;
constexpr int kPad = 4;

struct TiledArgs {
  const float* a;
  const float* b;
  float* c;
  int64_t lda, ldb, ldc;
  int64_t stride_a, stride_b, stride_c;
  int m, n, k;
  int sum_batches;        // > 0: number of batches summed inside the CTA; 0: batch = blockIdx.z
  int z0;                 // first batch index of this launch (batches beyond gridDim.z limit)
#if !defined(__CUDACC__)  // (nvcc: unused there, and an unused internal function is a warning)
  // For the CUDA emulator's launch check (kernels/emu/cuemu.h PointerArg): each must be device memory.
  std::array<const void*, 3> device_pointers() const { return {a, b, c}; }
#endif
  float alpha, beta;
  bool vec_a, vec_b, vec_c;
};

// Four consecutive floats at p (valid: `ok` and the first `rem` of them); zeros elsewhere.
__device__ __forceinline__ float4 load4(const float* p, bool ok, int rem, bool vec) {
  float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
  if (ok && rem > 0) {
    if (vec && rem >= 4) {
      v = *reinterpret_cast<const float4*>(p);
    } else {
      v.x = p[0];
      if (rem > 1) v.y = p[1];
      if (rem > 2) v.z = p[2];
      if (rem > 3) v.w = p[3];
    }
  }
  return v;
}

template <int BM, int BN, int BK, int TM, int TN, bool TA, bool TB>
__global__ void __launch_bounds__(kThreads, 2) gemm_tiled_kernel(TiledArgs p) {
  static_assert((BM / TM) * (BN / TN) == kThreads, "one micro-tile per thread");
  static_assert(TM % 4 == 0 && TN % 4 == 0 && BK % 4 == 0, "float4 groups");
  static_assert((BM * BK) % (4 * kThreads) == 0 && (BN * BK) % (4 * kThreads) == 0, "whole float4 loads");
  constexpr int TX = BN / TN;                                                  // threads along n
  constexpr int GM = TM / 4, GN = TN / 4;                                      // 4-wide groups per thread
  constexpr int SM = BM / GM, SN = BN / GN;                                    // spacing of the groups
  constexpr int LA = BM * BK / (4 * kThreads), LB = BN * BK / (4 * kThreads);  // float4 loads per slab

  __shared__ __align__(16) float As[2][BK][BM + kPad];
  __shared__ __align__(16) float Bs[2][BK][BN + kPad];

  const int tid = (int)threadIdx.x;
  const int tx = tid % TX, ty = tid / TX;
  const int m0 = (int)blockIdx.x * BM, n0 = (int)blockIdx.y * BN;
  const int ktiles = (p.k + BK - 1) / BK;
  const int nz = p.sum_batches > 0 ? p.sum_batches : 1;
  const int total = ktiles * nz;
  const int64_t zfix = p.sum_batches > 0 ? 0 : (int64_t)p.z0 + blockIdx.z;

  float acc[TM][TN];
  GEMM_UNROLL
  for (int i = 0; i < TM; ++i) {
    GEMM_UNROLL
    for (int j = 0; j < TN; ++j) acc[i][j] = 0.f;
  }

  float4 ra[LA], rb[LB];
  // Fetches slab t (batch t / ktiles, k-offset (t % ktiles) * BK) into registers.
  auto fetch = [&](int t) {
    const int kt = t % ktiles;
    const int64_t z = p.sum_batches > 0 ? t / ktiles : zfix;
    const int k0 = kt * BK;
    const float* a = p.a + z * p.stride_a;
    const float* b = p.b + z * p.stride_b;
    GEMM_UNROLL
    for (int l = 0; l < LA; ++l) {
      const int q = tid + l * kThreads;
      if constexpr (!TA) {  // A stored [m][k]: contiguous along k
        const int r = q / (BK / 4), kq = (q % (BK / 4)) * 4;
        const int gm = m0 + r, gk = k0 + kq;
        ra[l] = load4(a + (int64_t)gm * p.lda + gk, gm < p.m, p.k - gk, p.vec_a);
      } else {  // A stored [k][m]: contiguous along m
        const int r = q / (BM / 4), mq = (q % (BM / 4)) * 4;
        const int gk = k0 + r, gm = m0 + mq;
        ra[l] = load4(a + (int64_t)gk * p.lda + gm, gk < p.k, p.m - gm, p.vec_a);
      }
    }
    GEMM_UNROLL
    for (int l = 0; l < LB; ++l) {
      const int q = tid + l * kThreads;
      if constexpr (!TB) {  // B stored [k][n]: contiguous along n
        const int r = q / (BN / 4), nq = (q % (BN / 4)) * 4;
        const int gk = k0 + r, gn = n0 + nq;
        rb[l] = load4(b + (int64_t)gk * p.ldb + gn, gk < p.k, p.n - gn, p.vec_b);
      } else {  // B stored [n][k]: contiguous along k
        const int r = q / (BK / 4), kq = (q % (BK / 4)) * 4;
        const int gn = n0 + r, gk = k0 + kq;
        rb[l] = load4(b + (int64_t)gn * p.ldb + gk, gn < p.n, p.k - gk, p.vec_b);
      }
    }
  };
  // Stores the fetched slab into shared buffer `buf` (k-major).
  auto stash = [&](int buf) {
    GEMM_UNROLL
    for (int l = 0; l < LA; ++l) {
      const int q = tid + l * kThreads;
      if constexpr (!TA) {
        const int r = q / (BK / 4), kq = (q % (BK / 4)) * 4;
        As[buf][kq + 0][r] = ra[l].x;
        As[buf][kq + 1][r] = ra[l].y;
        As[buf][kq + 2][r] = ra[l].z;
        As[buf][kq + 3][r] = ra[l].w;
      } else {
        const int r = q / (BM / 4), mq = (q % (BM / 4)) * 4;
        *reinterpret_cast<float4*>(&As[buf][r][mq]) = ra[l];
      }
    }
    GEMM_UNROLL
    for (int l = 0; l < LB; ++l) {
      const int q = tid + l * kThreads;
      if constexpr (!TB) {
        const int r = q / (BN / 4), nq = (q % (BN / 4)) * 4;
        *reinterpret_cast<float4*>(&Bs[buf][r][nq]) = rb[l];
      } else {
        const int r = q / (BK / 4), kq = (q % (BK / 4)) * 4;
        Bs[buf][kq + 0][r] = rb[l].x;
        Bs[buf][kq + 1][r] = rb[l].y;
        Bs[buf][kq + 2][r] = rb[l].z;
        Bs[buf][kq + 3][r] = rb[l].w;
      }
    }
  };

  if (total > 0) {
    fetch(0);
    stash(0);
    __syncthreads();
  }
  for (int t = 0; t < total; ++t) {
    const int cur = t & 1;
    if (t + 1 < total) fetch(t + 1);  // global loads in flight during the FMAs below
    GEMM_UNROLL
    for (int kk = 0; kk < BK; ++kk) {
      float fa[TM], fb[TN];
      GEMM_UNROLL
      for (int g = 0; g < GM; ++g) {
        const float4 v = *reinterpret_cast<const float4*>(&As[cur][kk][g * SM + ty * 4]);
        fa[g * 4 + 0] = v.x;
        fa[g * 4 + 1] = v.y;
        fa[g * 4 + 2] = v.z;
        fa[g * 4 + 3] = v.w;
      }
      GEMM_UNROLL
      for (int g = 0; g < GN; ++g) {
        const float4 v = *reinterpret_cast<const float4*>(&Bs[cur][kk][g * SN + tx * 4]);
        fb[g * 4 + 0] = v.x;
        fb[g * 4 + 1] = v.y;
        fb[g * 4 + 2] = v.z;
        fb[g * 4 + 3] = v.w;
      }
      GEMM_UNROLL
      for (int i = 0; i < TM; ++i) {
        GEMM_UNROLL
        for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(fa[i], fb[j], acc[i][j]);
      }
    }
    if (t + 1 < total) stash(cur ^ 1);
    __syncthreads();
  }

  // Epilogue: C = alpha * acc + beta * C, 4-wide rows.
  float* c = p.c + zfix * p.stride_c;
  GEMM_UNROLL
  for (int gi = 0; gi < GM; ++gi) {
    GEMM_UNROLL
    for (int i = 0; i < 4; ++i) {
      const int row = m0 + gi * SM + ty * 4 + i;
      if (row >= p.m) continue;
      float* crow = c + (int64_t)row * p.ldc;
      GEMM_UNROLL
      for (int gj = 0; gj < GN; ++gj) {
        const int col = n0 + gj * SN + tx * 4;
        const int rem = p.n - col;
        if (rem <= 0) continue;
        const float* v = acc[gi * 4 + i] + gj * 4;
        if (p.vec_c && rem >= 4) {
          float4 o = make_float4(p.alpha * v[0], p.alpha * v[1], p.alpha * v[2], p.alpha * v[3]);
          if (p.beta != 0.f) {
            const float4 old = *reinterpret_cast<const float4*>(crow + col);
            o.x = fmaf(p.beta, old.x, o.x);
            o.y = fmaf(p.beta, old.y, o.y);
            o.z = fmaf(p.beta, old.z, o.z);
            o.w = fmaf(p.beta, old.w, o.w);
          }
          *reinterpret_cast<float4*>(crow + col) = o;
        } else {
          GEMM_UNROLL
          for (int j = 0; j < 4; ++j) {
            if (j < rem) {
              const float o = p.alpha * v[j];
              crow[col + j] = p.beta != 0.f ? fmaf(p.beta, crow[col + j], o) : o;
            }
          }
        }
      }
    }
  }
}

bool aligned16(const void* ptr, int64_t ld, int64_t stride) {
  return reinterpret_cast<uintptr_t>(ptr) % 16 == 0 && ld % 4 == 0 && stride % 4 == 0;
}

template <int BM, int BN, int BK, int TM, int TN, bool TA, bool TB>
void launch(const TiledArgs& args, int64_t batches, cudaStream_t stream) {
  const dim3 block(kThreads);
  const unsigned gx = (unsigned)((args.m + BM - 1) / BM), gy = (unsigned)((args.n + BN - 1) / BN);
  constexpr int64_t kMaxZ = 65535;
  ENGINE_CHECK(gy <= 65535, "gemm_tiled_cuda: n = ", args.n, " needs ", gy,
               " column tiles, more than gridDim.y allows");
  for (int64_t z0 = 0; z0 < batches; z0 += kMaxZ) {
    TiledArgs a = args;
    a.z0 = (int)z0;
    const unsigned gz = (unsigned)(batches - z0 < kMaxZ ? batches - z0 : kMaxZ);
    GPU_LAUNCH(dim3(gx, gy, gz), block, 0, stream, gemm_tiled_kernel<BM, BN, BK, TM, TN, TA, TB>)(a);
    CUDA_CHECK_LAUNCH("gemm_tiled_kernel");
  }
}

template <int BM, int BN, int BK, int TM, int TN>
void launch_cfg(const TiledArgs& args, bool ta, bool tb, int64_t batches, cudaStream_t stream) {
  if (!ta && !tb) launch<BM, BN, BK, TM, TN, false, false>(args, batches, stream);
  if (!ta && tb) launch<BM, BN, BK, TM, TN, false, true>(args, batches, stream);
  if (ta && !tb) launch<BM, BN, BK, TM, TN, true, false>(args, batches, stream);
  if (ta && tb) launch<BM, BN, BK, TM, TN, true, true>(args, batches, stream);
}

}  // namespace

void gemm_tiled_cuda(const GemmParams& in, cudaStream_t stream) {
  GemmParams p = in;
  gemm_fold_batch(p);
  if (p.m == 0 || p.n == 0) return;
  ENGINE_CHECK(p.m <= INT_MAX && p.n <= INT_MAX && p.k <= INT_MAX && p.batch <= INT_MAX, "gemm_tiled_cuda: m = ", p.m,
               ", n = ", p.n, ", k = ", p.k, ", batch = ", p.batch, " exceed the kernel's 32-bit index range");
  TiledArgs a{};
  a.a = p.a;
  a.b = p.b;
  a.c = p.c;
  a.lda = p.lda;
  a.ldb = p.ldb;
  a.ldc = p.ldc;
  a.stride_a = p.stride_a;
  a.stride_b = p.stride_b;
  a.stride_c = p.stride_c;
  a.m = (int)p.m;
  a.n = (int)p.n;
  a.k = (int)p.k;
  const bool sum = p.sum_batches();
  a.sum_batches = sum ? (int)p.batch : 0;
  a.z0 = 0;
  a.alpha = p.alpha;
  a.beta = p.beta;
  a.vec_a = aligned16(p.a, p.lda, p.stride_a);
  a.vec_b = aligned16(p.b, p.ldb, p.stride_b);
  a.vec_c = aligned16(p.c, p.ldc, p.stride_c);
  const int64_t batches = sum ? 1 : p.batch;
  // The large tile when it still gives enough CTAs to fill a GPU (>= 64), else the small one.
  const int64_t large_ctas = ((p.m + 127) / 128) * ((p.n + 127) / 128) * batches;
  if (large_ctas >= 64) {
    launch_cfg<128, 128, 8, 8, 8>(a, p.trans_a, p.trans_b, batches, stream);
  } else {
    launch_cfg<64, 64, 16, 4, 4>(a, p.trans_a, p.trans_b, batches, stream);
  }
}

}  // namespace engine::kernels
