// Elementwise family on CUDA: unary ops (neg exp log sqrt relu leaky_relu sigmoid tanh and the
// scalar variants) and binary ops with broadcasting (add sub mul div maximum), forward and backward.
// Math: kernels/elementwise_math.h, shared with the CPU kernels.
// Layout: operands are StridedLayouts broadcast to the output shape and coalesced by the op layer;
// outputs and gradients are contiguous. Two paths per kernel:
//  - contiguous operands: 4-element loads/stores (16 bytes in f32, 8 in bf16 / f16) when every
//    pointer is aligned to that size (a scalar tail covers n % 4), grid-stride over vectors; binary
//    ops also in place (out == a, add_inplace); the unary backward (always contiguous) too;
//  - general: index unravelling through StridedLayout::offset_at (<= kMaxDims dims), in 32-bit
//    arithmetic below 2^32 elements (offset_of32; 64-bit division is a long called routine on a GPU).
// Storage (DType D, a template parameter of every kernel): all operands and results of one call are
// f32, bf16 or f16 (mixed precision); the math is f32: loads widen, stores round once to nearest
// even (Storage<D>, kernels/shared_math.h), the same bits as the CPU kernels.
// 256 threads per block, grid capped by grid_for(); no shared memory, no atomics (deterministic).
// Roofline: every kernel is memory bound (<= 10 flops per 8-12 bytes moved): an H100 SXM at
// ~3.35 TB/s should run a 64 MiB f32 add (192 MiB moved) in ~60 us. docs/ROOFLINE.md.
// Tested by tests/test_elementwise.cpp (CPU vs emulated CUDA); benchmarked by bench_kernels.
#include "base/cuda_context.h"
#include "base/error.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/elementwise_cuda.h"

namespace engine::kernels {
namespace {

constexpr int kBlock = 256;

// ------------------------------------------------------------------------------------- unary
// No __restrict__ here: with it ptxas (sm_80) hoists loads across sqrt's slow-path call and spills;
// __ldg gives the read-only load path explicitly instead.
template <UnaryOp op, DType D>
__global__ void __launch_bounds__(kBlock)
    unary_fwd_contig_kernel(const typename Storage<D>::T* x, typename Storage<D>::T* out, int64_t n, float alpha) {
  using S = Storage<D>;
  cuda::grid_stride_by4(
      n, cuda::vec4_aligned<D>(x) && cuda::vec4_aligned<D>(out),
      [&](int64_t i) {
        float f[4];
        cuda::load4<D>(x + i, f);
        ENGINE_UNROLL
        for (int k = 0; k < 4; ++k) f[k] = unary_fwd<op>(f[k], alpha);
        cuda::store4<D>(out + i, f);
      },
      [&](int64_t i) { out[i] = S::store(unary_fwd<op>(S::load(__ldg(&x[i])), alpha)); });
}

template <UnaryOp op, DType D>
__global__ void __launch_bounds__(kBlock)
    unary_fwd_strided_kernel(const typename Storage<D>::T* __restrict__ x, StridedLayout xl,
                             typename Storage<D>::T* __restrict__ out, int64_t n, float alpha) {
  using S = Storage<D>;
  const bool idx32 = fits_index32(n);
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    out[i] = S::store(unary_fwd<op>(S::load(x[xl.offset_at(i, idx32)]), alpha));
}

// No __restrict__ (as the forward), and (kBlock, 1): without the minimum-blocks hint ptxas (sm_80)
// spilled log's f32 backward around the division's slow-path call.
template <UnaryOp op, DType D>
__global__ void __launch_bounds__(kBlock, 1)
    unary_bwd_kernel(const typename Storage<D>::T* g, const typename Storage<D>::T* x, const typename Storage<D>::T* y,
                     typename Storage<D>::T* gx, int64_t n, float alpha) {
  using S = Storage<D>;
  cuda::grid_stride_by4(
      n,
      cuda::vec4_aligned<D>(g) && cuda::vec4_aligned<D>(gx) && (!x || cuda::vec4_aligned<D>(x)) &&
          (!y || cuda::vec4_aligned<D>(y)),
      [&](int64_t i) {
        float q[4], xv[4] = {0.f, 0.f, 0.f, 0.f}, yv[4] = {0.f, 0.f, 0.f, 0.f};
        cuda::load4<D>(g + i, q);
        if (x) cuda::load4<D>(x + i, xv);
        if (y) cuda::load4<D>(y + i, yv);
        ENGINE_UNROLL
        for (int k = 0; k < 4; ++k) q[k] = unary_bwd<op>(q[k], xv[k], yv[k], alpha);
        cuda::store4<D>(gx + i, q);
      },
      [&](int64_t i) {
        gx[i] = S::store(unary_bwd<op>(S::load(g[i]), x ? S::load(x[i]) : 0.f, y ? S::load(y[i]) : 0.f, alpha));
      });
}

// ------------------------------------------------------------------------------------ binary
template <BinaryOp op, DType D>
__global__ void __launch_bounds__(kBlock)
    binary_fwd_contig_kernel(const typename Storage<D>::T* __restrict__ a, const typename Storage<D>::T* __restrict__ b,
                             typename Storage<D>::T* __restrict__ out, int64_t n) {
  using S = Storage<D>;
  cuda::grid_stride_by4(
      n, cuda::vec4_aligned<D>(a) && cuda::vec4_aligned<D>(b) && cuda::vec4_aligned<D>(out),
      [&](int64_t i) {
        float p[4], q[4];
        cuda::load4<D>(a + i, p);
        cuda::load4<D>(b + i, q);
        ENGINE_UNROLL
        for (int k = 0; k < 4; ++k) p[k] = binary_fwd<op>(p[k], q[k]);
        cuda::store4<D>(out + i, p);
      },
      [&](int64_t i) { out[i] = S::store(binary_fwd<op>(S::load(a[i]), S::load(b[i]))); });
}

// In place (out is a: add_inplace's accumulation into a gradient or a bucket): the contiguous
// kernel's vector path without __restrict__, since every element is read and then written by one
// thread. b may be a as well.
template <BinaryOp op, DType D>
__global__ void __launch_bounds__(kBlock)
    binary_fwd_inplace_contig_kernel(typename Storage<D>::T* a, const typename Storage<D>::T* b, int64_t n) {
  using S = Storage<D>;
  cuda::grid_stride_by4(
      n, cuda::vec4_aligned<D>(a) && cuda::vec4_aligned<D>(b),
      [&](int64_t i) {
        float p[4], q[4];
        cuda::load_vec_as<4, D>(a + i, p);
        cuda::load_vec_as<4, D>(b + i, q);
        ENGINE_UNROLL
        for (int k = 0; k < 4; ++k) p[k] = binary_fwd<op>(p[k], q[k]);
        cuda::store4<D>(a + i, p);
      },
      [&](int64_t i) { a[i] = S::store(binary_fwd<op>(S::load(a[i]), S::load(b[i]))); });
}

template <BinaryOp op, DType D>
__global__ void __launch_bounds__(kBlock)
    binary_fwd_strided_kernel(const typename Storage<D>::T* a, StridedLayout al, const typename Storage<D>::T* b,
                              StridedLayout bl, typename Storage<D>::T* out, int64_t n) {
  // `out` may alias `a` (in-place accumulation), so no __restrict__ here.
  using S = Storage<D>;
  const bool idx32 = fits_index32(n);
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    out[i] = S::store(binary_fwd<op>(S::load(a[al.offset_at(i, idx32)]), S::load(b[bl.offset_at(i, idx32)])));
}

template <BinaryOp op, DType D>
__global__ void __launch_bounds__(kBlock)
    binary_bwd_kernel(const typename Storage<D>::T* __restrict__ g, const typename Storage<D>::T* __restrict__ a,
                      StridedLayout al, const typename Storage<D>::T* __restrict__ b, StridedLayout bl,
                      typename Storage<D>::T* __restrict__ ga, typename Storage<D>::T* __restrict__ gb, int64_t n) {
  using S = Storage<D>;
  const bool idx32 = fits_index32(n);
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    float da, db;
    binary_bwd<op>(S::load(g[i]), S::load(a[al.contiguous ? i + al.offset : al.offset_at(i, idx32)]),
                   S::load(b[bl.contiguous ? i + bl.offset : bl.offset_at(i, idx32)]), &da, &db);
    if (ga) ga[i] = S::store(da);
    if (gb) gb[i] = S::store(db);
  }
}

// ------------------------------------------------------------------------------------ launchers
template <UnaryOp op, DType D>
void launch_unary_fwd(const void* xv, const StridedLayout& xl, void* outv, int64_t n, float alpha, cudaStream_t s) {
  using T = typename Storage<D>::T;
  const T* x = static_cast<const T*>(xv);
  T* out = static_cast<T*>(outv);
  if (xl.contiguous) {
    GPU_LAUNCH(cuda::grid_for((n + 3) / 4, kBlock), kBlock, 0, s, unary_fwd_contig_kernel<op, D>)
    (x + xl.offset, out, n, alpha);
  } else {
    GPU_LAUNCH(cuda::grid_for(n, kBlock), kBlock, 0, s, unary_fwd_strided_kernel<op, D>)(x, xl, out, n, alpha);
  }
  CUDA_CHECK_LAUNCH("unary_fwd_kernel");
}

template <UnaryOp op, DType D>
void launch_unary_bwd(const void* g, const void* x, const void* y, void* gx, int64_t n, float alpha, cudaStream_t s) {
  using T = typename Storage<D>::T;
  GPU_LAUNCH(cuda::grid_for((n + 3) / 4, kBlock), kBlock, 0, s, unary_bwd_kernel<op, D>)
  (static_cast<const T*>(g), static_cast<const T*>(x), static_cast<const T*>(y), static_cast<T*>(gx), n, alpha);
  CUDA_CHECK_LAUNCH("unary_bwd_kernel");
}

template <BinaryOp op, DType D>
void launch_binary_fwd(const void* av, const StridedLayout& al, const void* bv, const StridedLayout& bl, void* outv,
                       int64_t n, cudaStream_t s) {
  using T = typename Storage<D>::T;
  const T* a = static_cast<const T*>(av);
  const T* b = static_cast<const T*>(bv);
  T* out = static_cast<T*>(outv);
  if (al.contiguous && bl.contiguous && a + al.offset != out) {
    GPU_LAUNCH(cuda::grid_for((n + 3) / 4, kBlock), kBlock, 0, s, binary_fwd_contig_kernel<op, D>)
    (a + al.offset, b + bl.offset, out, n);
  } else if (al.contiguous && bl.contiguous) {
    GPU_LAUNCH(cuda::grid_for((n + 3) / 4, kBlock), kBlock, 0, s, binary_fwd_inplace_contig_kernel<op, D>)
    (out, b + bl.offset, n);
  } else {
    GPU_LAUNCH(cuda::grid_for(n, kBlock), kBlock, 0, s, binary_fwd_strided_kernel<op, D>)(a, al, b, bl, out, n);
  }
  CUDA_CHECK_LAUNCH("binary_fwd_kernel");
}

template <BinaryOp op, DType D>
void launch_binary_bwd(const void* g, const void* a, const StridedLayout& al, const void* b, const StridedLayout& bl,
                       void* ga, void* gb, int64_t n, cudaStream_t s) {
  using T = typename Storage<D>::T;
  GPU_LAUNCH(cuda::grid_for(n, kBlock), kBlock, 0, s, binary_bwd_kernel<op, D>)
  (static_cast<const T*>(g), static_cast<const T*>(a), al, static_cast<const T*>(b), bl, static_cast<T*>(ga),
   static_cast<T*>(gb), n);
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

void unary_fwd_cuda(UnaryOp op, DType dt, const void* x, const StridedLayout& xl, void* out, int64_t n, float alpha,
                    cudaStream_t s) {
  if (n == 0) return;
  with_storage(dt, "elementwise kernel", [&]<DType D>() {
    switch (op) {
#define CASE(O)    \
  case UnaryOp::O: \
    return launch_unary_fwd<UnaryOp::O, D>(x, xl, out, n, alpha, s);
      UNARY_CASES(CASE)
#undef CASE
    }
  });
}

void unary_bwd_cuda(UnaryOp op, DType dt, const void* g, const void* x, const void* y, void* gx, int64_t n, float alpha,
                    cudaStream_t s) {
  if (n == 0) return;
  with_storage(dt, "elementwise kernel", [&]<DType D>() {
    switch (op) {
#define CASE(O)    \
  case UnaryOp::O: \
    return launch_unary_bwd<UnaryOp::O, D>(g, x, y, gx, n, alpha, s);
      UNARY_CASES(CASE)
#undef CASE
    }
  });
}

void binary_fwd_cuda(BinaryOp op, DType dt, const void* a, const StridedLayout& al, const void* b,
                     const StridedLayout& bl, void* out, int64_t n, cudaStream_t s) {
  if (n == 0) return;
  with_storage(dt, "elementwise kernel", [&]<DType D>() {
    switch (op) {
#define CASE(O)     \
  case BinaryOp::O: \
    return launch_binary_fwd<BinaryOp::O, D>(a, al, b, bl, out, n, s);
      BINARY_CASES(CASE)
#undef CASE
    }
  });
}

void binary_bwd_cuda(BinaryOp op, DType dt, const void* g, const void* a, const StridedLayout& al, const void* b,
                     const StridedLayout& bl, void* ga, void* gb, int64_t n, cudaStream_t s) {
  if (n == 0) return;
  with_storage(dt, "elementwise kernel", [&]<DType D>() {
    switch (op) {
#define CASE(O)     \
  case BinaryOp::O: \
    return launch_binary_bwd<BinaryOp::O, D>(g, a, al, b, bl, ga, gb, n, s);
      BINARY_CASES(CASE)
#undef CASE
    }
  });
}

}  // namespace engine::kernels
