// labels: sanitize
// Segmentation metrics (train/seg_metrics.h) on hand-made confusion cases with numbers worked out
// by hand, PaddleSeg's zero-division rules (paddleseg/utils/metrics.py, develop semantics), and the [EVAL]
// lines against strings printed once by Python 3.11 / numpy 2.4.6 (str(np.round(x, 4)) and
// "{:.4f}"). The implementation was also compared with PaddleSeg's metric functions run under
// numpy on 3000 random area sets and 4000 random arrays (all identical, bit for bit).
#include <gtest/gtest.h>

#include <cmath>

#include "base/error.h"
#include "train/seg_metrics.h"

using namespace engine;
using namespace engine::train;

namespace {
void expect_vec(const std::vector<double>& got, const std::vector<double>& want, const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) EXPECT_DOUBLE_EQ(got[i], want[i]) << what << "[" << i << "]";
}
}  // namespace

TEST(SegMetrics, PerfectPredictionAndAbsentClass) {
  // Three classes; class 2 appears in neither prediction nor label: union 0 -> IoU 1 (develop).
  const SegMetrics m = compute_seg_metrics({40, 10, 0}, {40, 10, 0}, {40, 10, 0});
  expect_vec(m.class_iou, {1, 1, 1}, "iou");
  EXPECT_EQ(m.miou, 1.0);
  EXPECT_EQ(m.acc, 1.0);
  expect_vec(m.class_precision, {1, 1, 0}, "precision");  // P = 0 -> 0
  expect_vec(m.class_recall, {1, 1, 0}, "recall");        // L = 0 -> 0
  expect_vec(m.class_dice, {1, 1, 0}, "dice");            // P + L = 0 -> 0
  EXPECT_DOUBLE_EQ(m.mdice, 2.0 / 3.0);
  // po = 1, pe = (40*40 + 10*10) / 50^2 = 0.68, kappa = (1 - 0.68) / (1 - 0.68) = 1
  EXPECT_DOUBLE_EQ(m.kappa, 1.0);
}

TEST(SegMetrics, AllWrong) {
  // Label: 10 pixels of class 0. Prediction: all class 1.
  const SegMetrics m = compute_seg_metrics({0, 0}, {0, 10}, {10, 0});
  expect_vec(m.class_iou, {0, 0}, "iou");
  EXPECT_EQ(m.miou, 0.0);
  EXPECT_EQ(m.acc, 0.0);
  expect_vec(m.class_precision, {0, 0}, "precision");
  expect_vec(m.class_recall, {0, 0}, "recall");
  expect_vec(m.class_dice, {0, 0}, "dice");
  EXPECT_EQ(m.kappa, 0.0);  // po = 0, pe = (0*10 + 10*0)/100 = 0
}

TEST(SegMetrics, HandConfusionMatrix) {
  // rows = label, cols = prediction:  [[50, 5, 5], [10, 20, 0], [0, 0, 10]]
  // I = diag = [50, 20, 10], L = row sums = [60, 30, 10], P = column sums = [60, 25, 15]
  const SegMetrics m = compute_seg_metrics({50, 20, 10}, {60, 25, 15}, {60, 30, 10});
  expect_vec(m.class_iou, {50. / 70, 20. / 35, 10. / 15}, "iou");
  EXPECT_DOUBLE_EQ(m.miou, 41. / 63);  // (5/7 + 4/7 + 2/3) / 3
  EXPECT_DOUBLE_EQ(m.acc, 0.8);
  expect_vec(m.class_precision, {50. / 60, 20. / 25, 10. / 15}, "precision");
  expect_vec(m.class_recall, {50. / 60, 20. / 30, 1}, "recall");
  expect_vec(m.class_dice, {100. / 120, 40. / 55, 20. / 25}, "dice");
  // po = 80/100, pe = (60*60 + 25*30 + 15*10) / 100^2 = 0.45, kappa = 0.35 / 0.55 = 7/11
  EXPECT_DOUBLE_EQ(m.kappa, 7. / 11);
  EXPECT_EQ(format_eval_lines(m, 76),
            "[EVAL] #Images: 76 mIoU: 0.6508 Acc: 0.8000 Kappa: 0.6364 Dice: 0.7869\n"
            "[EVAL] Class IoU: \n[0.7143 0.5714 0.6667]\n"
            "[EVAL] Class Precision: \n[0.8333 0.8    0.6667]\n"
            "[EVAL] Class Recall: \n[0.8333 0.6667 1.    ]");
}

TEST(SegMetrics, PrecisionAndRecallZeroDivision) {
  // class 0 only in the label (never predicted), class 1 only predicted (absent from the label)
  const SegMetrics m = compute_seg_metrics({0, 0, 5}, {0, 3, 5}, {4, 0, 5});
  expect_vec(m.class_precision, {0, 0, 1}, "precision");
  expect_vec(m.class_recall, {0, 0, 1}, "recall");
  expect_vec(m.class_iou, {0, 0, 1}, "iou");
  EXPECT_DOUBLE_EQ(m.acc, 5. / 8);
  // po = 5/9, pe = (0*4 + 3*0 + 5*5)/81, kappa = (45/81 - 25/81) / (56/81) = 20/56
  EXPECT_DOUBLE_EQ(m.kappa, 20. / 56);
}

TEST(SegMetrics, DegenerateKappaAndEmptyAreas) {
  // One class everywhere: pe = 1 (numpy would print nan); we report 0.
  EXPECT_EQ(compute_seg_metrics({7}, {7}, {7}).kappa, 0.0);
  // No pixels at all: every IoU is 1 by the union-0 rule, the rest 0.
  const SegMetrics m = compute_seg_metrics({0, 0}, {0, 0}, {0, 0});
  EXPECT_EQ(m.miou, 1.0);
  EXPECT_EQ(m.acc, 0.0);
  EXPECT_EQ(m.kappa, 0.0);
  EXPECT_EQ(m.mdice, 0.0);
}

TEST(SegMetrics, BadInputIsAnError) {
  try {
    compute_seg_metrics({1, 2}, {1, 2, 3}, {1, 2});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              "compute_seg_metrics: intersect, pred and label areas must have one entry per class, got sizes 2, 3, 2");
  }
  try {
    compute_seg_metrics({1, 5}, {1, 4}, {1, 9});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              "compute_seg_metrics: class 1 has inconsistent areas (intersect 5, pred 4, label 9); expected 0 <= "
              "intersect <= min(pred, label)");
  }
  EXPECT_THROW(compute_seg_metrics({}, {}, {}), Error);
}

// Strings printed by numpy 2.4.6: str(np.round(np.array(values, np.float64), 4)).
TEST(NumpyFormat, MatchesNumpy) {
  struct Case {
    std::vector<double> v;
    const char* want;
  };
  const Case cases[] = {
      {{0.9802, 0.4728, 0, 0.4081}, "[0.9802 0.4728 0.     0.4081]"},  // the PaddleSeg log line
      {{0, 0, 0}, "[0. 0. 0.]"},
      {{1, 0}, "[1. 0.]"},
      {{0.99995, 0.5}, "[1.  0.5]"},
      {{0.5, 0.25}, "[0.5  0.25]"},
      {{0.123456}, "[0.1235]"},
      {{0.1, 0.0001}, "[0.1    0.0001]"},
      {{0.00004, 0.3}, "[0.  0.3]"},
      // scientific notation: max/min of the non-zero magnitudes > 1000, or a magnitude < 1e-4
      {{0.98021, 0.0005}, "[9.802e-01 5.000e-04]"},
      {{0.9, 0.00012, 0.5}, "[9.e-01 1.e-04 5.e-01]"},
      {{0.0, 0.9999, 0.0002}, "[0.000e+00 9.999e-01 2.000e-04]"},
      {{-0.00001, 0.5}, "[-0.   0.5]"},
      {{NAN, 0.5}, "[nan 0.5]"},
      {{INFINITY, 0.25, -INFINITY}, "[ inf 0.25 -inf]"},
      // 19 classes (Cityscapes) wrap at 75 characters with a one-space hanging indent
      {{0.9812, 0.8421, 0.9234, 0.5567, 0.6012, 0.6543, 0.7012, 0.7891, 0.9234, 0.6543, 0.9456, 0.8123, 0.6234, 0.9456,
        0.7891, 0.8765, 0.7654, 0.6543, 0.7654},
       "[0.9812 0.8421 0.9234 0.5567 0.6012 0.6543 0.7012 0.7891 0.9234 0.6543\n"
       " 0.9456 0.8123 0.6234 0.9456 0.7891 0.8765 0.7654 0.6543 0.7654]"},
  };
  for (const Case& c : cases) EXPECT_EQ(format_numpy_array(c.v), c.want);

  // A long array: trailing padding is stripped at each line break, kept before the bracket.
  std::vector<double> v;
  for (int i = 0; i < 100; ++i) v.push_back(i / 99.0);
  const std::string s = format_numpy_array(v);
  EXPECT_EQ(s.substr(0, 78), "[0.     0.0101 0.0202 0.0303 0.0404 0.0505 0.0606 0.0707 0.0808 0.0909\n 0.101 ");
  EXPECT_NE(s.find(" 0.5051 0.5152 0.5253 0.5354 0.5455 0.5556 0.5657 0.5758 0.5859 0.596\n 0.6061"),
            std::string::npos);
  EXPECT_EQ(s.substr(s.size() - 21), "0.9798 0.9899 1.    ]");
  EXPECT_THROW(format_numpy_array({1.0}, 9), Error);
}

TEST(NumpyFormat, EvalLinesWithScientificArrays) {
  // 10000 pixels; label: 9999 of class 0, 1 of class 1; prediction: half class 0 (all right),
  // half class 1 (one right). IoU_1 = 1/5000: numpy prints that array in scientific notation.
  const SegMetrics m = compute_seg_metrics({5000, 1}, {5000, 5000}, {9999, 1});
  EXPECT_EQ(format_eval_lines(m, 2),
            "[EVAL] #Images: 2 mIoU: 0.2501 Acc: 0.5001 Kappa: 0.0002 Dice: 0.3336\n"
            "[EVAL] Class IoU: \n[5.001e-01 2.000e-04]\n"
            "[EVAL] Class Precision: \n[1.e+00 2.e-04]\n"
            "[EVAL] Class Recall: \n[0.5001 1.    ]");
}
