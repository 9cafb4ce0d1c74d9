// CUDA launchers of the YOLOv3 loss (kernels/cuda/yolo_loss.cu). Same math as
// kernels/cpu/yolo_loss_cpu.h (per-prediction functions in kernels/yolo_loss_math.h). All pointers
// are device pointers; the launchers run on `stream` and never synchronise.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/yolo_loss_math.h"

namespace engine::kernels {

// Doubles of workspace the forward needs for its block partials.
int64_t yolo_part_doubles(const YoloGeom& g);

// heads[s]: contiguous NHWC head of scale s; box [N, B, 4], score [N, B], cls i32 [N, B]. Fills
// map [N, P] and gt_pred [N, B] and writes out[0..3] = batch means of xy, wh, obj, cls and out[4] =
// their sum (five device scalars).
void yolo_loss_fwd_cuda(const YoloGeom& g, const float* const* heads, const float* box, const float* score,
                        const int32_t* cls, int32_t* map, int32_t* gt_pred, double* part, float* const* out,
                        cudaStream_t stream);

// gheads[s][e] = gup[0] * inv_n * d(per image sums)/d heads[s][e].
void yolo_loss_bwd_cuda(const YoloGeom& g, const float* const* heads, const float* box, const float* score,
                        const int32_t* cls, const int32_t* map, const int32_t* gt_pred, const float* gup, float inv_n,
                        float* const* gheads, cudaStream_t stream);

}  // namespace engine::kernels
