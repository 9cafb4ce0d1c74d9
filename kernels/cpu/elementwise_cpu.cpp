// Elementwise family on the CPU: unary ops (neg exp log sqrt relu leaky_relu sigmoid tanh and the
// scalar variants) and binary ops with broadcasting (add sub mul div maximum), forward and backward.
// Math: kernels/elementwise_math.h (shared with kernels/cuda/elementwise.cu).
// Layout: operands arrive as StridedLayouts already broadcast to the output shape and coalesced by
// the op layer, so the common cases have 1-2 dims. Work is split into rows of the last dim; each
// row runs a loop specialised on the operands' inner strides (1, or 0 = broadcast) that the
// compiler vectorises. OpenMP splits rows (or chunks of one long row) over the cores with a static
// schedule, so results never depend on timing.
// Tested by tests/test_elementwise.cpp; benchmarked by bench_kernels (elementwise rows).
#include "kernels/cpu/elementwise_cpu.h"

#include <omp.h>

#include <algorithm>

namespace engine::kernels {
namespace {

constexpr int64_t kParallelGrain = 1 << 15;  // below this many elements one thread is faster

// body(begin, end) over [0, n), split statically across the OpenMP threads.
template <class Body>
void parallel_range(int64_t n, const Body& body) {
  if (n < kParallelGrain || omp_get_max_threads() == 1) {
    body(0, n);
    return;
  }
#pragma omp parallel
  {
    const int nt = omp_get_num_threads(), t = omp_get_thread_num();
    const int64_t chunk = (n + nt - 1) / nt;
    const int64_t b = std::min<int64_t>(n, chunk * t), e = std::min<int64_t>(n, b + chunk);
    if (b < e) body(b, e);
  }
}

// Rows of the last dimension of a (coalesced) layout: row r starts at element r * inner.
struct Rows {
  int64_t inner, rows;
  explicit Rows(const StridedLayout& l, int64_t n) {
    inner = l.ndim ? l.shape[l.ndim - 1] : 1;
    rows = inner ? n / inner : 0;
  }
};

// Runs row_fn(row_begin_element, len) over all rows, in parallel either across rows or, when
// there are fewer rows than threads, across chunks of each row.
template <class RowFn>
void for_each_row_chunk(const Rows& R, int64_t n, const RowFn& row_fn) {
  if (R.rows >= omp_get_max_threads() * 4 || n < kParallelGrain) {
#pragma omp parallel for schedule(static) if (n >= kParallelGrain)
    for (int64_t r = 0; r < R.rows; ++r) row_fn(r, (int64_t)0, R.inner);
  } else {
    for (int64_t r = 0; r < R.rows; ++r)
      parallel_range(R.inner, [&](int64_t b, int64_t e) { row_fn(r, b, e - b); });
  }
}

// ---------------------------------------------------------------------------------- unary
template <UnaryOp op>
void unary_fwd_impl(const float* x, const StridedLayout& xl, float* out, int64_t n, float alpha) {
  if (xl.contiguous) {
    const float* xs = x + xl.offset;
    parallel_range(n, [&](int64_t b, int64_t e) {
#pragma omp simd
      for (int64_t i = b; i < e; ++i) out[i] = unary_fwd<op>(xs[i], alpha);
    });
    return;
  }
  const Rows R(xl, n);
  const int64_t sx = xl.ndim ? xl.stride[xl.ndim - 1] : 0;
  for_each_row_chunk(R, n, [&](int64_t r, int64_t j0, int64_t len) {
    const float* px = x + xl.offset_of(r * R.inner + j0);
    float* po = out + r * R.inner + j0;
    if (sx == 1) {
#pragma omp simd
      for (int64_t j = 0; j < len; ++j) po[j] = unary_fwd<op>(px[j], alpha);
    } else {
      for (int64_t j = 0; j < len; ++j) po[j] = unary_fwd<op>(px[j * sx], alpha);
    }
  });
}

template <UnaryOp op>
void unary_bwd_impl(const float* g, const float* x, const float* y, float* gx, int64_t n, float alpha) {
  parallel_range(n, [&](int64_t b, int64_t e) {
#pragma omp simd
    for (int64_t i = b; i < e; ++i) gx[i] = unary_bwd<op>(g[i], x ? x[i] : 0.f, y ? y[i] : 0.f, alpha);
  });
}

// --------------------------------------------------------------------------------- binary
// One row: out[j] = a[j*sa] op b[j*sb], specialised for the strides that vectorise.
template <BinaryOp op>
inline void binary_row(const float* a, int64_t sa, const float* b, int64_t sb, float* out, int64_t len) {
  if (sa == 1 && sb == 1) {
#pragma omp simd
    for (int64_t j = 0; j < len; ++j) out[j] = binary_fwd<op>(a[j], b[j]);
  } else if (sa == 1 && sb == 0) {
    const float bv = b[0];
#pragma omp simd
    for (int64_t j = 0; j < len; ++j) out[j] = binary_fwd<op>(a[j], bv);
  } else if (sa == 0 && sb == 1) {
    const float av = a[0];
#pragma omp simd
    for (int64_t j = 0; j < len; ++j) out[j] = binary_fwd<op>(av, b[j]);
  } else {
    for (int64_t j = 0; j < len; ++j) out[j] = binary_fwd<op>(a[j * sa], b[j * sb]);
  }
}

template <BinaryOp op>
void binary_fwd_impl(const float* a, const StridedLayout& al, const float* b, const StridedLayout& bl, float* out,
                     int64_t n) {
  if (al.contiguous && bl.contiguous) {
    const float* as = a + al.offset;
    const float* bs = b + bl.offset;
    parallel_range(n, [&](int64_t lo, int64_t hi) { binary_row<op>(as + lo, 1, bs + lo, 1, out + lo, hi - lo); });
    return;
  }
  const Rows R(al, n);
  const int64_t sa = al.ndim ? al.stride[al.ndim - 1] : 0, sb = bl.ndim ? bl.stride[bl.ndim - 1] : 0;
  for_each_row_chunk(R, n, [&](int64_t r, int64_t j0, int64_t len) {
    const int64_t e = r * R.inner + j0;
    binary_row<op>(a + al.offset_of(e), sa, b + bl.offset_of(e), sb, out + e, len);
  });
}

template <BinaryOp op>
void binary_bwd_impl(const float* g, const float* a, const StridedLayout& al, const float* b, const StridedLayout& bl,
                     float* ga, float* gb, int64_t n) {
  const Rows R(al, n);
  const int64_t sa = al.ndim ? al.stride[al.ndim - 1] : 0, sb = bl.ndim ? bl.stride[bl.ndim - 1] : 0;
  for_each_row_chunk(R, n, [&](int64_t r, int64_t j0, int64_t len) {
    const int64_t e = r * R.inner + j0;
    const float* pa = a + al.offset_of(e);
    const float* pb = b + bl.offset_of(e);
    const float* pg = g + e;
    float* pga = ga ? ga + e : nullptr;
    float* pgb = gb ? gb + e : nullptr;
    if (pga && pgb) {
#pragma omp simd
      for (int64_t j = 0; j < len; ++j) binary_bwd<op>(pg[j], pa[j * sa], pb[j * sb], &pga[j], &pgb[j]);
    } else if (pga) {
#pragma omp simd
      for (int64_t j = 0; j < len; ++j) {
        float unused;
        binary_bwd<op>(pg[j], pa[j * sa], pb[j * sb], &pga[j], &unused);
      }
    } else if (pgb) {
#pragma omp simd
      for (int64_t j = 0; j < len; ++j) {
        float unused;
        binary_bwd<op>(pg[j], pa[j * sa], pb[j * sb], &unused, &pgb[j]);
      }
    }
  });
}

}  // namespace

#define UNARY_CASES(MACRO)                                                                              \
  MACRO(Neg) MACRO(Exp) MACRO(Log) MACRO(Sqrt) MACRO(Relu) MACRO(LeakyRelu) MACRO(Sigmoid) MACRO(Tanh) \
  MACRO(AddScalar) MACRO(MulScalar) MACRO(DivScalar) MACRO(MaxScalar) MACRO(RSubScalar) MACRO(RDivScalar)
#define BINARY_CASES(MACRO) MACRO(Add) MACRO(Sub) MACRO(Mul) MACRO(Div) MACRO(Max)

void unary_fwd_cpu(UnaryOp op, const float* x, const StridedLayout& xl, float* out, int64_t n, float alpha) {
  switch (op) {
#define CASE(O) \
  case UnaryOp::O: return unary_fwd_impl<UnaryOp::O>(x, xl, out, n, alpha);
    UNARY_CASES(CASE)
#undef CASE
  }
}

void unary_bwd_cpu(UnaryOp op, const float* g, const float* x, const float* y, float* gx, int64_t n, float alpha) {
  switch (op) {
#define CASE(O) \
  case UnaryOp::O: return unary_bwd_impl<UnaryOp::O>(g, x, y, gx, n, alpha);
    UNARY_CASES(CASE)
#undef CASE
  }
}

void binary_fwd_cpu(BinaryOp op, const float* a, const StridedLayout& al, const float* b, const StridedLayout& bl,
                    float* out, int64_t n) {
  switch (op) {
#define CASE(O) \
  case BinaryOp::O: return binary_fwd_impl<BinaryOp::O>(a, al, b, bl, out, n);
    BINARY_CASES(CASE)
#undef CASE
  }
}

void binary_bwd_cpu(BinaryOp op, const float* g, const float* a, const StridedLayout& al, const float* b,
                    const StridedLayout& bl, float* ga, float* gb, int64_t n) {
  switch (op) {
#define CASE(O) \
  case BinaryOp::O: return binary_bwd_impl<BinaryOp::O>(g, a, al, b, bl, ga, gb, n);
    BINARY_CASES(CASE)
#undef CASE
  }
}

}  // namespace engine::kernels
