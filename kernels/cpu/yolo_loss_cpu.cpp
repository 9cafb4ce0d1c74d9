// YOLOv3 loss on the CPU. Plain scalar C++ with OpenMP: the per-prediction work is branchy (a
// positive / negative split, B IoUs per prediction for the ignore mask) and a small part of a
// training step, so the loops are not compiled per instruction set (no .inc variant).
//
// Forward: target assignment image by image (gts in order; a later gt overwrites the map entry of
// a prediction it shares, so the last one owns tx..tobj, while class targets are the union over all
// gts assigned there, see yolo_class_target), then one OpenMP task per grid row (image, scale, j):
// marks ignored negatives in the map and accumulates the four terms of the row in double into its
// own slot; the slots are then added in the fixed order (image, scale, row). Deterministic for any
// thread count.
// Backward: one OpenMP task per grid row writes every channel of its predictions
// (yolo_channel_grad), reading the map the forward left.
// Tested by tests/test_yolo_loss.cpp; benchmarked by bench_kernels --filter yolo (bench/bench_yolo_loss.cpp).
#include "kernels/cpu/yolo_loss_cpu.h"

#include <omp.h>

#include <vector>

namespace engine::kernels {
namespace {

struct Row {
  int s;
  int64_t n;
  int j;
};

std::vector<Row> rows_of(const YoloGeom& g) {
  std::vector<Row> r;
  for (int64_t n = 0; n < g.N; ++n)
    for (int s = 0; s < g.S; ++s)
      for (int j = 0; j < g.gh[s]; ++j) r.push_back({s, n, j});
  return r;
}

}  // namespace

void yolo_loss_fwd_cpu(const YoloGeom& g, const float* const* heads, const float* box, const float* score,
                       const int32_t* cls, int32_t* map, int32_t* gt_pred, double* sums) {
  const int64_t N = g.N, B = g.B, P = g.P;
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    int32_t* mp = map + n * P;
    for (int64_t p = 0; p < P; ++p) mp[p] = -1;
    for (int64_t b = 0; b < B; ++b) {
      const int64_t p = yolo_assign_gt(g, box + (n * B + b) * 4, score[n * B + b]);
      gt_pred[n * B + b] = (int32_t)p;
      if (p >= 0) mp[p] = (int32_t)b;
    }
  }
  const std::vector<Row> rows = rows_of(g);
  const int64_t R = (int64_t)rows.size();
  std::vector<double> part((size_t)R * 4);
#pragma omp parallel for schedule(dynamic, 4)
  for (int64_t r = 0; r < R; ++r) {
    const Row rw = rows[(size_t)r];
    const int s = rw.s, j = rw.j, na = g.na[s], L = 5 + g.C;
    const int64_t n = rw.n;
    const float* bx = box + n * B * 4;
    const float* sc = score + n * B;
    const int32_t* cl = cls + n * B;
    const int32_t* gp = gt_pred + n * B;
    int32_t* mp = map + n * P;
    double acc[4] = {0, 0, 0, 0};
    for (int i = 0; i < g.gw[s]; ++i)
      for (int a = 0; a < na; ++a) {
        const int64_t p = g.off[s] + ((int64_t)j * g.gw[s] + i) * na + a;
        const float* x = heads[s] + (((n * g.gh[s] + j) * g.gw[s] + i) * na + a) * L;
        if (mp[p] == -1 && yolo_ignored(g, s, a, i, j, x, bx)) mp[p] = -2;
        float l[4];
        yolo_pred_loss(g, s, a, i, j, p, x, mp[p], bx, sc, cl, gp, l);
        for (int t = 0; t < 4; ++t) acc[t] += (double)l[t];
      }
    for (int t = 0; t < 4; ++t) part[(size_t)r * 4 + t] = acc[t];
  }
  double tot[4] = {0, 0, 0, 0};
  for (int64_t r = 0; r < R; ++r)
    for (int t = 0; t < 4; ++t) tot[t] += part[(size_t)r * 4 + t];
  for (int t = 0; t < 4; ++t) sums[t] = tot[t] / (double)N;
}

void yolo_loss_bwd_cpu(const YoloGeom& g, const float* const* heads, const float* box, const float* score,
                       const int32_t* cls, const int32_t* map, const int32_t* gt_pred, float coef,
                       float* const* gheads) {
  const int64_t B = g.B, P = g.P;
  const std::vector<Row> rows = rows_of(g);
  const int64_t R = (int64_t)rows.size();
#pragma omp parallel for schedule(dynamic, 4)
  for (int64_t r = 0; r < R; ++r) {
    const Row rw = rows[(size_t)r];
    const int s = rw.s, j = rw.j, na = g.na[s], L = 5 + g.C;
    const int64_t n = rw.n;
    const float* bx = box + n * B * 4;
    const float* sc = score + n * B;
    const int32_t* cl = cls + n * B;
    const int32_t* gp = gt_pred + n * B;
    const int32_t* mp = map + n * P;
    for (int i = 0; i < g.gw[s]; ++i)
      for (int a = 0; a < na; ++a) {
        const int64_t p = g.off[s] + ((int64_t)j * g.gw[s] + i) * na + a;
        const int64_t e = (((n * g.gh[s] + j) * g.gw[s] + i) * na + a) * L;
        const float* x = heads[s] + e;
        float* gx = gheads[s] + e;
        const int32_t m = mp[p];
        if (m < 0) {  // a negative: only the objectness channel (same values as yolo_channel_grad)
          const float z = coef * 0.f;
          for (int k = 0; k < L; ++k) gx[k] = z;
          gx[4] = coef * yolo_channel_grad(g, s, a, i, j, p, 4, x, m, bx, sc, cl, gp);
          continue;
        }
        for (int k = 0; k < L; ++k) gx[k] = coef * yolo_channel_grad(g, s, a, i, j, p, k, x, m, bx, sc, cl, gp);
      }
  }
}

}  // namespace engine::kernels
