// CPU kernels of the YOLOv3 loss (kernels/cpu/yolo_loss_cpu.cpp). Semantics: engine/ops/yolo_loss.h;
// per-prediction math and the map / gt_pred layouts: kernels/yolo_loss_math.h (shared with
// kernels/cuda/yolo_loss.cu).
#pragma once
#include <cstdint>

#include "kernels/yolo_loss_math.h"

namespace engine::kernels {

// heads[s]: contiguous NHWC head of scale s; box [N, B, 4], score [N, B], cls i32 [N, B].
// Fills map [N, P] and gt_pred [N, B] (target assignment, ignore marks) and writes the batch means
// of the four terms, sums[0..3] = xy, wh, obj, cls (per image sums added in a fixed order).
void yolo_loss_fwd_cpu(const YoloGeom& g, const float* const* heads, const float* box, const float* score,
                       const int32_t* cls, int32_t* map, int32_t* gt_pred, double* sums);

// gheads[s][e] = coef * d(xy + wh + obj + cls)/d heads[s][e] (per image sums), from the map the
// forward wrote.
void yolo_loss_bwd_cpu(const YoloGeom& g, const float* const* heads, const float* box, const float* score,
                       const int32_t* cls, const int32_t* map, const int32_t* gt_pred, float coef,
                       float* const* gheads);

}  // namespace engine::kernels
