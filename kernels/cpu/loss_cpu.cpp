// Loss family on the CPU. The kernels are in loss_cpu.inc (math, layout and strategy at its top),
// compiled there once per instruction set; the functions below run the variant of the active one
// (kernels/cpu/cpu_isa.h).
#include "kernels/cpu/loss_cpu.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

#include "kernels/cpu/cpu_isa.h"
#include "kernels/cpu/row_tile_cpu.h"

#define ENGINE_CPU_KERNELS "kernels/cpu/loss_cpu.inc"
#define ENGINE_CPU_KERNEL_PART "kernels/cpu/resize_rows_cpu.inc"  // shared by the resize and loss kernels
#include "kernels/cpu/isa_variants.inc"

namespace engine::kernels {

void ce_fwd_cpu(const void* x, DType xt, const int64_t* y, const float* w, int64_t P, int64_t C, int64_t ignore,
                float thresh, float* lse, float* pgt, float* nll, CeFwdStats* stats) {
  ENGINE_CPU_DISPATCH(ce_fwd_cpu)(x, xt, y, w, P, C, ignore, thresh, lse, pgt, nll, stats);
}

void ce_bwd_cpu(const void* x, DType xt, const int64_t* y, const float* w, const float* lse, const float* pgt,
                float thr, int64_t P, int64_t C, int64_t ignore, float scale, void* gx) {
  ENGINE_CPU_DISPATCH(ce_bwd_cpu)(x, xt, y, w, lse, pgt, thr, P, C, ignore, scale, gx);
}

void resize_ce_fwd_cpu(const ResizeArgs& a, DType xt, const void* x, const int64_t* y, const float* w, int64_t ignore,
                       float thresh, float* lse, float* pgt, float* nll, CeFwdStats* stats) {
  ENGINE_CPU_DISPATCH(resize_ce_fwd_cpu)(a, xt, x, y, w, ignore, thresh, lse, pgt, nll, stats);
}

void resize_ce_bwd_cpu(const ResizeArgs& a, DType xt, const void* x, const int64_t* y, const float* w, const float* lse,
                       const float* pgt, float thr, int64_t ignore, float scale, void* gx, float* ws) {
  ENGINE_CPU_DISPATCH(resize_ce_bwd_cpu)(a, xt, x, y, w, lse, pgt, thr, ignore, scale, gx, ws);
}

float ohem_select_cpu(const float* pgt, const int64_t* y, int64_t P, int64_t C, int64_t ignore, float thresh,
                      int64_t k) {
  return ENGINE_CPU_DISPATCH(ohem_select_cpu)(pgt, y, P, C, ignore, thresh, k);
}

void ohem_sum_cpu(const float* pgt, const float* nll, const int64_t* y, int64_t P, int64_t C, int64_t ignore, float thr,
                  double* sum, int64_t* count) {
  ENGINE_CPU_DISPATCH(ohem_sum_cpu)(pgt, nll, y, P, C, ignore, thr, sum, count);
}

double point_loss_fwd_cpu(PointLoss kind, const float* a, const float* b, const float* w, int64_t n, int64_t* n_bad) {
  return ENGINE_CPU_DISPATCH(point_loss_fwd_cpu)(kind, a, b, w, n, n_bad);
}

void point_loss_bwd_cpu(PointLoss kind, const float* a, const float* b, const float* w, int64_t n, float scale,
                        float* ga) {
  ENGINE_CPU_DISPATCH(point_loss_bwd_cpu)(kind, a, b, w, n, scale, ga);
}

}  // namespace engine::kernels
