// Elementwise family on CUDA: unary ops (neg exp log sqrt relu leaky_relu sigmoid tanh and the
// scalar variants) and binary ops with broadcasting (add sub mul div maximum), forward and backward.
// Math: kernels/elementwise_math.h, shared with the CPU kernels.
// Layout: operands are StridedLayouts broadcast to the output shape and coalesced by the op layer;
// outputs and gradients are contiguous. Two paths per kernel:
//  - contiguous operands: float4 loads/stores when every pointer is 16-byte aligned (a scalar tail
//    covers n % 4), grid-stride over vectors;
//  - general: 64-bit index unravelling through StridedLayout::offset_of (<= kMaxDims dims).
// 256 threads per block, grid capped by grid_for(); no shared memory, no atomics (deterministic).
// Roofline: every kernel is memory bound (<= 10 flops per 8-12 bytes moved): an H100 SXM at
// ~3.35 TB/s should run a 64 MiB f32 add (192 MiB moved) in ~60 us. docs/ROOFLINE.md.
// Tested by tests/test_elementwise.cpp (CPU vs emulated CUDA); benchmarked by bench_kernels.
#include "base/cuda_context.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/elementwise_cuda.h"

namespace engine::kernels {
namespace {

constexpr int kBlock = 256;

// ------------------------------------------------------------------------------------- unary
// No __restrict__ here: with it ptxas (sm_80) hoists loads across sqrt's slow-path call and spills;
// __ldg gives the read-only load path explicitly instead.
template <UnaryOp op>
__global__ void __launch_bounds__(kBlock) unary_fwd_contig_kernel(const float* x, float* out, int64_t n, float alpha) {
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  const int64_t tid = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  int64_t vec_end = 0;
  if (cuda::is_aligned16(x) && cuda::is_aligned16(out)) {
    vec_end = n / 4 * 4;
    const float4* x4 = reinterpret_cast<const float4*>(x);
    float4* o4 = reinterpret_cast<float4*>(out);
    for (int64_t v = tid; v < n / 4; v += stride) {
      const float4 a = __ldg(&x4[v]);
      o4[v] = make_float4(unary_fwd<op>(a.x, alpha), unary_fwd<op>(a.y, alpha), unary_fwd<op>(a.z, alpha),
                          unary_fwd<op>(a.w, alpha));
    }
  }
  for (int64_t i = vec_end + tid; i < n; i += stride) out[i] = unary_fwd<op>(__ldg(&x[i]), alpha);
}

template <UnaryOp op>
__global__ void __launch_bounds__(kBlock) unary_fwd_strided_kernel(const float* __restrict__ x, StridedLayout xl,
                                                                   float* __restrict__ out, int64_t n, float alpha) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    out[i] = unary_fwd<op>(x[xl.offset_of(i)], alpha);
}

template <UnaryOp op>
__global__ void __launch_bounds__(kBlock)
    unary_bwd_kernel(const float* __restrict__ g, const float* __restrict__ x, const float* __restrict__ y,
                     float* __restrict__ gx, int64_t n, float alpha) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    gx[i] = unary_bwd<op>(g[i], x ? x[i] : 0.f, y ? y[i] : 0.f, alpha);
}

// ------------------------------------------------------------------------------------ binary
template <BinaryOp op>
__global__ void __launch_bounds__(kBlock)
    binary_fwd_contig_kernel(const float* __restrict__ a, const float* __restrict__ b, float* __restrict__ out,
                             int64_t n) {
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  const int64_t tid = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  int64_t vec_end = 0;
  if (cuda::is_aligned16(a) && cuda::is_aligned16(b) && cuda::is_aligned16(out)) {
    vec_end = n / 4 * 4;
    const float4* a4 = reinterpret_cast<const float4*>(a);
    const float4* b4 = reinterpret_cast<const float4*>(b);
    float4* o4 = reinterpret_cast<float4*>(out);
    for (int64_t v = tid; v < n / 4; v += stride) {
      const float4 p = a4[v], q = b4[v];
      o4[v] = make_float4(binary_fwd<op>(p.x, q.x), binary_fwd<op>(p.y, q.y), binary_fwd<op>(p.z, q.z),
                          binary_fwd<op>(p.w, q.w));
    }
  }
  for (int64_t i = vec_end + tid; i < n; i += stride) out[i] = binary_fwd<op>(a[i], b[i]);
}

template <BinaryOp op>
__global__ void __launch_bounds__(kBlock) binary_fwd_strided_kernel(const float* a, StridedLayout al, const float* b,
                                                                    StridedLayout bl, float* out, int64_t n) {
  // `out` may alias `a` (in-place accumulation), so no __restrict__ here.
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    out[i] = binary_fwd<op>(a[al.offset_of(i)], b[bl.offset_of(i)]);
}

template <BinaryOp op>
__global__ void __launch_bounds__(kBlock)
    binary_bwd_kernel(const float* __restrict__ g, const float* __restrict__ a, StridedLayout al,
                      const float* __restrict__ b, StridedLayout bl, float* __restrict__ ga, float* __restrict__ gb,
                      int64_t n) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    float da, db;
    binary_bwd<op>(g[i], a[al.contiguous ? i + al.offset : al.offset_of(i)],
                   b[bl.contiguous ? i + bl.offset : bl.offset_of(i)], &da, &db);
    if (ga) ga[i] = da;
    if (gb) gb[i] = db;
  }
}

// ------------------------------------------------------------------------------------ launchers
template <UnaryOp op>
void launch_unary_fwd(const float* x, const StridedLayout& xl, float* out, int64_t n, float alpha, cudaStream_t s) {
  if (xl.contiguous) {
    GPU_LAUNCH(cuda::grid_for((n + 3) / 4, kBlock), kBlock, 0, s, unary_fwd_contig_kernel<op>)
    (x + xl.offset, out, n, alpha);
  } else {
    GPU_LAUNCH(cuda::grid_for(n, kBlock), kBlock, 0, s, unary_fwd_strided_kernel<op>)(x, xl, out, n, alpha);
  }
  CUDA_CHECK_LAUNCH("unary_fwd_kernel");
}

template <UnaryOp op>
void launch_unary_bwd(const float* g, const float* x, const float* y, float* gx, int64_t n, float alpha,
                      cudaStream_t s) {
  GPU_LAUNCH(cuda::grid_for(n, kBlock), kBlock, 0, s, unary_bwd_kernel<op>)(g, x, y, gx, n, alpha);
  CUDA_CHECK_LAUNCH("unary_bwd_kernel");
}

template <BinaryOp op>
void launch_binary_fwd(const float* a, const StridedLayout& al, const float* b, const StridedLayout& bl, float* out,
                       int64_t n, cudaStream_t s) {
  if (al.contiguous && bl.contiguous && (a + al.offset != out)) {
    GPU_LAUNCH(cuda::grid_for((n + 3) / 4, kBlock), kBlock, 0, s, binary_fwd_contig_kernel<op>)
    (a + al.offset, b + bl.offset, out, n);
  } else {
    GPU_LAUNCH(cuda::grid_for(n, kBlock), kBlock, 0, s, binary_fwd_strided_kernel<op>)(a, al, b, bl, out, n);
  }
  CUDA_CHECK_LAUNCH("binary_fwd_kernel");
}

template <BinaryOp op>
void launch_binary_bwd(const float* g, const float* a, const StridedLayout& al, const float* b, const StridedLayout& bl,
                       float* ga, float* gb, int64_t n, cudaStream_t s) {
  GPU_LAUNCH(cuda::grid_for(n, kBlock), kBlock, 0, s, binary_bwd_kernel<op>)(g, a, al, b, bl, ga, gb, n);
  CUDA_CHECK_LAUNCH("binary_bwd_kernel");
}

}  // namespace

// clang-format off
#define UNARY_CASES(MACRO)                                                                  \
  MACRO(Neg) MACRO(Exp) MACRO(Log) MACRO(Sqrt) MACRO(Relu) MACRO(LeakyRelu) MACRO(Sigmoid) \
  MACRO(Tanh) MACRO(AddScalar) MACRO(MulScalar) MACRO(DivScalar) MACRO(MaxScalar)          \
  MACRO(RSubScalar) MACRO(RDivScalar)
// clang-format on
#define BINARY_CASES(MACRO) MACRO(Add) MACRO(Sub) MACRO(Mul) MACRO(Div) MACRO(Max)

void unary_fwd_cuda(UnaryOp op, const float* x, const StridedLayout& xl, float* out, int64_t n, float alpha,
                    cudaStream_t s) {
  if (n == 0) return;
  switch (op) {
#define CASE(O)    \
  case UnaryOp::O: \
    return launch_unary_fwd<UnaryOp::O>(x, xl, out, n, alpha, s);
    UNARY_CASES(CASE)
#undef CASE
  }
}

void unary_bwd_cuda(UnaryOp op, const float* g, const float* x, const float* y, float* gx, int64_t n, float alpha,
                    cudaStream_t s) {
  if (n == 0) return;
  switch (op) {
#define CASE(O)    \
  case UnaryOp::O: \
    return launch_unary_bwd<UnaryOp::O>(g, x, y, gx, n, alpha, s);
    UNARY_CASES(CASE)
#undef CASE
  }
}

void binary_fwd_cuda(BinaryOp op, const float* a, const StridedLayout& al, const float* b, const StridedLayout& bl,
                     float* out, int64_t n, cudaStream_t s) {
  if (n == 0) return;
  switch (op) {
#define CASE(O)     \
  case BinaryOp::O: \
    return launch_binary_fwd<BinaryOp::O>(a, al, b, bl, out, n, s);
    BINARY_CASES(CASE)
#undef CASE
  }
}

void binary_bwd_cuda(BinaryOp op, const float* g, const float* a, const StridedLayout& al, const float* b,
                     const StridedLayout& bl, float* ga, float* gb, int64_t n, cudaStream_t s) {
  if (n == 0) return;
  switch (op) {
#define CASE(O)     \
  case BinaryOp::O: \
    return launch_binary_bwd<BinaryOp::O>(g, a, al, b, bl, ga, gb, n, s);
    BINARY_CASES(CASE)
#undef CASE
  }
}

}  // namespace engine::kernels
