// Segmentation metrics from the per-class areas that engine::seg_area_counts accumulates over a
// whole data set (intersect_i, pred_i, label_i), and PaddleSeg's printed [EVAL] lines.
// Semantics source: paddleseg/utils/metrics.py (mean_iou, class_measurement, kappa, dice) and
// core/val.py of PaddleSeg develop.
// Tested by tests/test_seg_metrics.cpp (hand-made confusion cases, strings printed by numpy).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace engine::train {

struct SegMetrics {
  std::vector<double> class_iou, class_precision, class_recall, class_dice;
  double miou = 0, acc = 0, kappa = 0, mdice = 0;
};

// All in double, from int64 counts (same length = num_classes):
//   IoU_i = I/(P+L-I); a class with union 0 (absent from prediction and label) gets IoU 1: the
//          develop / 2.9 rule (PaddleSeg commit 3fea7bb9, Oct 2023); <= 2.8 gave 0. mIoU = mean
//          over ALL classes.
//   Acc = sum(I)/sum(P)                       (0 when sum(P) = 0; numpy would give nan)
//   precision_i = I/P (0 if P = 0); recall_i = I/L (0 if L = 0)
//   po = sum(I)/sum(L), pe = sum(P_i*L_i)/sum(L)^2, kappa = (po-pe)/(1-pe)
//                                             (0 when sum(L) = 0 or pe = 1; numpy: nan)
//   Dice_i = 2I/(P+L) (0 if P+L = 0); mDice = mean.
// Sizes that differ, negative counts or I > min(P, L) are an Error.
SegMetrics compute_seg_metrics(const std::vector<int64_t>& intersect, const std::vector<int64_t>& pred,
                               const std::vector<int64_t>& label);

// PaddleSeg's evaluation log messages (without the "[time] INFO: " logger prefix), '\n'-joined:
//   [EVAL] #Images: 76 mIoU: 0.8526 Acc: 0.9942 Kappa: 0.8283 Dice: 0.9001
//   [EVAL] Class IoU: \n[0.9802 0.4728]
//   [EVAL] Class Precision: \n[...]
//   [EVAL] Class Recall: \n[...]
// Scalars use {:.4f}; arrays are str(np.round(x, 4)) (see format_numpy_array).
std::string format_eval_lines(const SegMetrics& m, int64_t num_images);

// str(np.round(np.array(values, float64), decimals)) with numpy's default print options
// (numpy >= 1.14 style, checked against numpy 2.4): rounding as numpy does it
// (rint(x * 10^d) / 10^d), shortest digits, columns padded to equal width, 0 printed as "0.",
// scientific notation when a non-zero |x| < 1e-4 or max/min of the non-zero |x| > 1000, lines
// wrapped at 75 characters with a one-space hanging indent. Arrays longer than numpy's summary
// threshold (1000) are printed in full (numpy would elide the middle with "...").
// decimals must be in [0, 8].
std::string format_numpy_array(const std::vector<double>& values, int decimals = 4);

}  // namespace engine::train
