// Backward-data of a convolution as a hand-written implicit GEMM (groups 1, NHWC), split by the
// parity of the input pixel so that a strided convolution does no work on taps that cannot touch a
// pixel. Why: on an H200 cuDNN's deterministic NHWC fp32 backward-data of DarkNet53's 3x3 stride-2
// layers took up to 14 ms (32 -> 64 channels at 608x608, batch 8; docs/GPU.md), a fifth of the step.
//
// Math (kernels/cpu/conv_cpu.h): gx[n, ih, iw, ci] = sum over taps (r, s) and co of
//   gy[n, oh, ow, co] * w[co, r, s, ci]   where ih + pad_h - r*dil_h = oh*stride_h (likewise for w),
//   0 <= oh < Ho, 0 <= ow < Wo.
// A pixel of parity class (ph, pw) = (ih % stride_h, iw % stride_w) is reached only by the taps with
// (ph + pad_h - r*dil_h) divisible by stride_h (and likewise s): for 3x3 stride 2, one, two or four
// of the nine. For ih = ph + stride_h*a: oh = a + (ph + pad_h - r*dil_h) / stride_h (exact). So each
// class is a dense GEMM: M = N * Ha * Wb pixels, N = Cin, K = taps * Cout, A[m, k] = gy at the tap's
// (oh, ow) (zero outside), B[k, ci] = w[co, r, s, ci].
// Grid: x = pixel tiles (of the largest class; blocks past their class's end return), y = channel
// tiles of Cin, z = the stride_h * stride_w classes. Block: 256 threads, a 64 x 64 output tile (64
// pixels x 64 channels), or 128 x 32 where Cin <= 32 (a 64-channel tile would leave half its threads
// computing zeros there: DarkNet53's 32 -> 64 layer, the slowest in cuDNN); 4 x 4 per thread; K in
// slabs of 16 through shared memory (A stored k-major with 4 floats of padding so the k-strided
// stores spread over the banks; both read as float4). Every gx element is written by
// exactly one thread of one class (zero where no tap reaches it), summed in a fixed order:
// deterministic, no atomics.
// Types: gy, the weight and gx all f32, or all bf16 / f16 (the buffers cuDNN's low-precision
// backward-data takes); a 16-bit value is widened on load, products and sums are f32, and each gx
// element is rounded once, to nearest even (kernels/shared_math.h Storage), as cuDNN's tensor-core
// algorithms multiply exactly and accumulate in f32.
// Tested by tests/test_conv_direct.cpp (against the CPU's oneDNN backward-data, under the emulator
// in CI and on a real GPU) and test_kernels_tsan; benchmarked by bench_kernels (conv rows).
#include "base/cuda_context.h"
#include "base/error.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/conv_direct_cuda.h"

namespace engine::kernels {
namespace {

constexpr int kBK = 16, kThreads = 256, kMaxTaps = 64;
constexpr int kPadA = 4;

struct DirectArgs {
  int n, h, w, cin, cout, kh, kw, ho, wo;
  int stride_h, stride_w, pad_h, pad_w, dil_h, dil_w;
};

template <DType D>
using Elem = typename Storage<D>::T;

// kBM pixels x kBN channels per block; 256 threads of 4 x 4 each.
template <int kBM, int kBN, DType D>
__global__ void __launch_bounds__(kThreads)
    conv_bwd_data_direct_kernel(DirectArgs a, const Elem<D>* __restrict__ gy, const Elem<D>* __restrict__ w,
                                Elem<D>* __restrict__ gx) {
  const int cls = blockIdx.z;
  const int ph = cls / a.stride_w, pw = cls % a.stride_w;
  const int ha = ph < a.h ? (a.h - ph + a.stride_h - 1) / a.stride_h : 0;  // rows of this class
  const int wb = pw < a.w ? (a.w - pw + a.stride_w - 1) / a.stride_w : 0;
  const int64_t m_total = (int64_t)a.n * ha * wb;
  const int64_t m0 = (int64_t)blockIdx.x * kBM;
  if (m0 >= m_total) return;  // the whole block: no barrier has been reached yet
  const int ci0 = blockIdx.y * kBN;

  __shared__ int s_tap_w[kMaxTaps];  // r * kw + s: the tap's offset in a weight row
  __shared__ int s_tap_oh[kMaxTaps], s_tap_ow[kMaxTaps];
  __shared__ int s_ntaps;
  __shared__ __align__(16) float s_a[kBK][kBM + kPadA];
  __shared__ __align__(16) float s_b[kBK][kBN];
  if (threadIdx.x == 0) {
    int t = 0;
    for (int r = 0; r < a.kh; ++r) {
      const int dh = ph + a.pad_h - r * a.dil_h;
      if (dh % a.stride_h != 0) continue;
      for (int s = 0; s < a.kw; ++s) {
        const int dw = pw + a.pad_w - s * a.dil_w;
        if (dw % a.stride_w != 0) continue;
        s_tap_w[t] = r * a.kw + s;
        s_tap_oh[t] = dh / a.stride_h;
        s_tap_ow[t] = dw / a.stride_w;
        ++t;
      }
    }
    s_ntaps = t;
  }
  __syncthreads();
  const int k_total = s_ntaps * a.cout;
  const int tid = threadIdx.x;

  static_assert(kBM * kBN == 16 * kThreads && kBN % 4 == 0 && (kBK * kBN) % kThreads == 0, "4 x 4 per thread");
  // A loads: 4 pixels per thread (rows a_row + kARowStep * i) and kACols k columns (a_k + kAColStep *
  // j), so a taller tile loads more k columns, not more pixels: the pixels' coordinates stay 4 sets of
  // registers whatever the tile.
  constexpr int kACols = kBM * kBK / (kThreads * 4);
  constexpr int kAColStep = kBK / kACols, kARowStep = kThreads / kAColStep;
  static_assert(kACols >= 1 && kARowStep * 4 == kBM, "A tile");
  constexpr int kBRows = kBN * kBK / kThreads;  // B elements each thread loads per slab
  constexpr int kBRowStep = kThreads / kBN;

  const int a_k = tid % kAColStep, a_row = tid / kAColStep;
  int pix_n[4], pix_a[4], pix_b[4];
  bool pix_ok[4];
  ENGINE_UNROLL
  for (int i = 0; i < 4; ++i) {
    const int64_t m = m0 + a_row + kARowStep * i;
    pix_ok[i] = m < m_total;
    const int64_t mm = pix_ok[i] ? m : 0;
    pix_b[i] = (int)(mm % wb);
    pix_a[i] = (int)((mm / wb) % ha);
    pix_n[i] = (int)(mm / ((int64_t)wb * ha));
  }
  // B loads: this thread's channel and its kBRows k rows (b_row + kBRowStep * i).
  const int b_c = tid % kBN, b_row = tid / kBN;
  const int ci_load = ci0 + b_c;
  const int64_t w_row = (int64_t)a.kh * a.kw * a.cin;  // elements per output channel of w

  // Compute: a 4 x 4 block of (pixel, channel) at (ty * 4, tx * 4).
  const int tx = tid % (kBN / 4), ty = tid / (kBN / 4);
  float acc[4][4];
  ENGINE_UNROLL
  for (int i = 0; i < 4; ++i) ENGINE_UNROLL
  for (int j = 0; j < 4; ++j) acc[i][j] = 0.f;

  for (int k0 = 0; k0 < k_total; k0 += kBK) {
    ENGINE_UNROLL
    for (int j = 0; j < kACols; ++j) {
      const int kc = a_k + kAColStep * j, k = k0 + kc;
      const int tap = k < k_total ? k / a.cout : 0;
      const int co = k - tap * a.cout;
      const int doh = s_tap_oh[tap], dow = s_tap_ow[tap];
      ENGINE_UNROLL
      for (int i = 0; i < 4; ++i) {
        const int oh = pix_a[i] + doh, ow = pix_b[i] + dow;
        float v = 0.f;
        if (k < k_total && pix_ok[i] && oh >= 0 && oh < a.ho && ow >= 0 && ow < a.wo)
          v = Storage<D>::load(gy[(((int64_t)pix_n[i] * a.ho + oh) * a.wo + ow) * a.cout + co]);
        s_a[kc][a_row + kARowStep * i] = v;
      }
    }
    ENGINE_UNROLL
    for (int i = 0; i < kBRows; ++i) {
      const int k = k0 + b_row + kBRowStep * i;
      float v = 0.f;
      if (k < k_total && ci_load < a.cin) {
        const int tap = k / a.cout, co = k - tap * a.cout;
        v = Storage<D>::load(w[(int64_t)co * w_row + (int64_t)s_tap_w[tap] * a.cin + ci_load]);
      }
      s_b[b_row + kBRowStep * i][b_c] = v;
    }
    __syncthreads();
    ENGINE_UNROLL
    for (int kk = 0; kk < kBK; ++kk) {
      const float4 av = *reinterpret_cast<const float4*>(&s_a[kk][ty * 4]);
      const float4 bv = *reinterpret_cast<const float4*>(&s_b[kk][tx * 4]);
      const float ar[4] = {av.x, av.y, av.z, av.w}, br[4] = {bv.x, bv.y, bv.z, bv.w};
      ENGINE_UNROLL
      for (int i = 0; i < 4; ++i) ENGINE_UNROLL
      for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(ar[i], br[j], acc[i][j]);
    }
    __syncthreads();
  }

  ENGINE_UNROLL
  for (int i = 0; i < 4; ++i) {
    const int64_t m = m0 + ty * 4 + i;
    if (m >= m_total) continue;
    const int b = (int)(m % wb), aa = (int)((m / wb) % ha), n = (int)(m / ((int64_t)wb * ha));
    const int ih = ph + a.stride_h * aa, iw = pw + a.stride_w * b;
    Elem<D>* row = gx + (((int64_t)n * a.h + ih) * a.w + iw) * a.cin;
    ENGINE_UNROLL
    for (int j = 0; j < 4; ++j) {
      const int ci = ci0 + tx * 4 + j;
      if (ci < a.cin) row[ci] = Storage<D>::store(acc[i][j]);
    }
  }
}

bool fits_int(int64_t v) { return v >= 0 && v <= INT32_MAX; }

template <int kBM, int kBN, DType D>
void launch_direct(const DirectArgs& a, int64_t m_max, int64_t cin, int64_t classes, const void* gy, const void* w_ohwi,
                   void* gx, cudaStream_t stream) {
  const dim3 grid((unsigned)((m_max + kBM - 1) / kBM), (unsigned)((cin + kBN - 1) / kBN), (unsigned)classes);
  GPU_LAUNCH(grid, kThreads, 0, stream, conv_bwd_data_direct_kernel<kBM, kBN, D>)
  (a, static_cast<const Elem<D>*>(gy), static_cast<const Elem<D>*>(w_ohwi), static_cast<Elem<D>*>(gx));
  CUDA_CHECK_LAUNCH("conv_bwd_data_direct_kernel");
}

}  // namespace

bool conv2d_bwd_data_direct_supported(const ConvParams& p) {
  return p.groups == 1 && p.kh * p.kw <= kMaxTaps && p.stride_h * p.stride_w <= 65535 && fits_int(p.n * p.h * p.w) &&
         fits_int(p.n * p.ho * p.wo) && fits_int(p.cin) && fits_int(p.cout) &&
         fits_int(p.cout * p.kh * p.kw * p.cin / p.groups) && fits_int(p.kh * p.kw * p.cout);
}

void conv2d_bwd_data_direct_cuda(const ConvParams& p, const void* gy, const void* w_ohwi, void* gx,
                                 cudaStream_t stream) {
  ENGINE_CHECK(conv2d_bwd_data_direct_supported(p), "conv2d_bwd_data_direct_cuda: unsupported convolution (groups ",
               p.groups, ", ", p.kh, "x", p.kw, " kernel, strides ", p.stride_h, "x", p.stride_w, ")");
  if (p.n * p.h * p.w * p.cin == 0) return;
  DirectArgs a{(int)p.n,        (int)p.h,     (int)p.w,     (int)p.cin,   (int)p.cout,
               (int)p.kh,       (int)p.kw,    (int)p.ho,    (int)p.wo,    (int)p.stride_h,
               (int)p.stride_w, (int)p.pad_h, (int)p.pad_w, (int)p.dil_h, (int)p.dil_w};
  // Class (0, 0) has the most pixels.
  const int64_t m_max = p.n * ((p.h + p.stride_h - 1) / p.stride_h) * ((p.w + p.stride_w - 1) / p.stride_w);
  const int64_t classes = p.stride_h * p.stride_w;
  const DType type = p.input == ConvInput::BF16 ? DType::BF16 : p.input == ConvInput::F16 ? DType::F16 : DType::F32;
  with_storage(type, "conv_bwd_data_direct_kernel", [&]<DType D>() {
    if (p.cin <= 32)
      launch_direct<128, 32, D>(a, m_max, p.cin, classes, gy, w_ohwi, gx, stream);
    else
      launch_direct<64, 64, D>(a, m_max, p.cin, classes, gy, w_ohwi, gx, stream);
  });
}

}  // namespace engine::kernels
