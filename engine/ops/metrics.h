// Segmentation metrics: per-class pixel areas, the statistics PaddleSeg's evaluation accumulates
// (paddleseg/utils/metrics.py calculate_area). No gradient. CPU and CUDA; exact (integer counts).
//   mask_p = (label_p != ignore_index)
//   pred[i]      = #(pred == i and mask)          (predictions at ignored pixels are not counted)
//   label[i]     = #(label == i)
//   intersect[i] = #(pred == i and label == i and mask)
// pred and label are i64 of the same shape (e.g. [N, H, W]); the results are i64 [num_classes].
// Unlike PaddleSeg (which silently skips them), a label outside [0, num_classes) other than
// ignore_index, or a prediction outside [0, num_classes), is an Error naming the count, the first
// position and its value.
#pragma once
#include <cstdint>

#include "engine/tensor.h"

namespace engine {

struct SegAreas {
  Tensor intersect, pred, label;  // i64 [num_classes]
};

SegAreas seg_area_counts(const Tensor& pred, const Tensor& label, int64_t num_classes, int64_t ignore_index = 255);

}  // namespace engine
