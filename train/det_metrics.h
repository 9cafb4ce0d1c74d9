// Detection metrics for YOLOv3 evaluation, as PaddleX reports them:
//   VocMap   - PaddleDetection's DetectionMAP (ppdet/metrics/map_utils.py; the same file is vendored
//              as PaddleX 2.x paddlex/cv/models/utils/det_metrics/map_utils.py), PaddleX's settings
//              by default: IoU > 0.5, '11point', evaluate_difficult=False, is_bbox_normalized=False.
//   CocoEval - pycocotools' COCOeval for iouType 'bbox' (PythonAPI/pycocotools/cocoeval.py with
//              common/maskApi.c bbIou; checked against pycocotools 2.0.11 from PyPI).
// Both take one image at a time and keep only what the final numbers need. No Python at run time.
// Tested by tests/test_det_metrics.cpp (hand-derived cases; pycocotools' 12 stats on a fixed random
// set in tests/golden/det_metrics/, written by tools/gen_coco_eval_golden.py).
//
// VOC details read from map_utils.py (where the fact sheet is silent or loose):
//  - jaccard_overlap returns 0 as soon as the boxes do not overlap with a positive extent
//    (pred.x1 >= gt.x2 or pred.x2 <= gt.x1, same for y), *before* the +1: boxes that only touch
//    have IoU 0 even though their +1 intersection would be one pixel wide.
//  - A detection looks at every gt of its class (difficult or visited ones included) and takes the
//    first one with the largest IoU (strict '>' from an initial -1, so a gt with IoU 0 is still
//    "best" when nothing overlaps). Only then: IoU > thresh and that gt difficult -> the detection
//    is dropped (neither TP nor FP); unvisited -> TP; visited -> FP. A duplicate of a matched gt is
//    an FP even if another, unvisited gt of the class overlaps it nearly as well.
//  - Per class the (score, tp) records of all images are sorted by score descending with Python's
//    stable sort (ties keep arrival order: image order, then detection order in the image).
//  - '11point': the nested loop of map_utils.py; it equals the mean over t = 0, 0.1, ..., 1.0
//    (t = j / 10.) of the max precision over points with recall >= t (0 if none). Sum of the 11
//    values in order, / 11.
//  - 'integral': AP = sum over points of precision_i * |recall_i - prev| where the recall step
//    exceeds 1e-6, prev being the recall at the last counted step (starting at 0). No envelope.
//  - mAP = sum of class APs in class order / number of classes with >= 1 counted gt; a class with
//    gts but no detections counts with AP 0; no counted class at all gives 0. PaddleX prints
//    100 * mAP (VOCMetric.get / log), hence map_percent().
//  - Arithmetic: double from the given float boxes. Paddle mixes numpy float32 and Python floats
//    here (the result type depends on the numpy version, NEP 50), so an IoU within ~1e-7 of the
//    threshold may decide differently there; nothing else depends on rounding.
//  - Callers: PaddleX's VOCMetric.update (paddlex/cv/models/utils/det_metrics/metrics.py) divides
//    gts by scale_factor and cuts padded gt rows at the first all-zero box (prune_zero_padding,
//    here voc_prune_zero_padding) before DetectionMAP.update; update() does neither. For an image
//    without detections BBoxPostProcess (ppdet/modeling/post_process.py) emits a fake row
//    [-1, 0, 0, 0, 0, 0]; Python's list[-1] files it as an FP with score 0 under the last class,
//    which cannot change any AP. Skip such rows: labels must be in [0, num_classes).
//
// COCO details read from cocoeval.py / coco.py / maskApi.c (beyond the fact sheet):
//  - Per image and category: detections stable-sorted by score descending and cut to 100
//    (maxDets[-1]) *per category*, not per image; maxDets 1 and 10 likewise per image and category.
//  - IoU (bbIou, double): w = min(x1+w1, x2+w2) - max(x1, x2), same for h, 0 if either <= 0;
//    union = det area for a crowd gt, else det area + gt area - inter, both areas w*h of the boxes
//    (the gt 'area' field only selects the area range).
//  - gt ignored in a range: iscrowd, or area < lo or area > hi (both bounds inclusive, so an area
//    of exactly 32^2 is small *and* medium). gts stable-sorted non-ignored first.
//  - Matching, per IoU threshold t, detections in score order: candidate gts in that order; skip
//    a gt already matched unless crowd; stop at the first ignored gt once a non-ignored one is
//    held; a gt qualifies when IoU >= best so far (best starts at t), so among equal IoUs the
//    *last* one wins. Matched to an ignored gt -> detection ignored. Unmatched detections whose
//    area w*h is outside the range are ignored.
//  - Accumulate per (category, range, maxDet): records of all images in ascending image id,
//    stable-sorted by score descending; tp/fp cumulated over non-ignored records (ignored ones
//    keep their slot); rc = tp / npig, pr = tp / (tp + fp + 2^-52); pr made non-increasing from
//    the right; precision[r] = pr[first i with rc[i] >= recThr[r]] or 0 past the end; recall =
//    last rc (0 with no records); all -1 when the category has no non-ignored gt in the range.
//  - Thresholds as numpy.linspace makes them: iouThrs[i] = i * ((0.95 - 0.5) / 9) + 0.5 (last
//    0.95), recThrs[i] = i * 0.01 (last 1.0). Summaries: numpy mean of the entries > -1 (pairwise
//    summation as numpy), -1 if none. AP50/AP75 select the threshold equal to .5 / .75.
//  - pycocotools takes a match to a gt whose annotation id is 0 for no match (dtMatches holds the
//    id); gts have no ids here, so that quirk cannot occur.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <unordered_set>
#include <vector>

namespace engine::train {

// ------------------------------------------------------------------------------------------ VOC

// Corner box in pixels, as NMS emits it (x2, y2 inclusive under the +1 convention).
struct DetBox {
  float x1 = 0, y1 = 0, x2 = 0, y2 = 0;
};

struct VocDetection {
  int label = 0;  // class index in [0, num_classes)
  float score = 0;
  DetBox box;
};

struct VocGroundTruth {
  int label = 0;
  DetBox box;
  bool difficult = false;
};

// map_utils.py jaccard_overlap (with its early exit for non-overlapping boxes); normalized = false
// adds 1 to widths and heights.
double voc_jaccard_overlap(const DetBox& pred, const DetBox& gt, bool normalized);

// map_utils.py prune_zero_padding: the number of leading gts before the first box that is all 0.
size_t voc_prune_zero_padding(const std::vector<VocGroundTruth>& gts);

class VocMap {
 public:
  // eleven_point = false selects 'integral'. overlap_thresh is compared with a strict '>'.
  explicit VocMap(int num_classes, double overlap_thresh = 0.5, bool eleven_point = true,
                  bool evaluate_difficult = false, bool normalized = false);

  // One image: its detections in NMS output order and its ground truths.
  void update(const std::vector<VocDetection>& dets, const std::vector<VocGroundTruth>& gts);
  void reset();

  double map() const;  // fraction in [0, 1]
  double map_percent() const { return 100.0 * map(); }
  // AP of each class (fraction); -1 for classes without a counted gt (not part of the mean).
  std::vector<double> class_ap() const;
  // Counted gts of class c (difficult ones only with evaluate_difficult).
  int64_t gt_count(int c) const;
  int num_classes() const { return num_classes_; }

 private:
  struct Record {
    float score;
    bool tp;
  };
  double class_ap_of(int c) const;  // requires gt_counts_[c] > 0

  int num_classes_;
  double overlap_thresh_;
  bool eleven_point_, evaluate_difficult_, normalized_;
  std::vector<std::vector<Record>> records_;  // per class, in arrival order
  std::vector<int64_t> gt_counts_;
};

// ----------------------------------------------------------------------------------------- COCO

// COCO box [x, y, w, h] in pixels (no +1), double as pycocotools reads JSON.
struct CocoBox {
  double x = 0, y = 0, w = 0, h = 0;
};

// [x1, y1, x2 - x1, y2 - y1] in double, as PaddleX turns NMS rows into COCO results.
CocoBox coco_box_from_corners(const DetBox& b);

struct CocoDetection {
  int category = 0;  // index in [0, num_categories): the position of the category id in sorted order
  double score = 0;
  CocoBox box;
};

struct CocoGroundTruth {
  int category = 0;
  CocoBox box;
  double area = -1;  // the annotation's 'area' (selects the area range); < 0: box w * h
  bool iscrowd = false;
};

// The 12 numbers of COCOeval.summarize() for 'bbox', in its order:
//   0 AP@[.50:.95]  1 AP@.50  2 AP@.75  3 AP small  4 AP medium  5 AP large   (maxDets 100)
//   6 AR maxDets 1  7 AR 10  8 AR 100  9 AR small  10 AR medium  11 AR large  (maxDets 100)
// -1 where no category has a non-ignored gt in that setting. Fractions (PaddleX's bbox_mmap =
// stats[0]).
using CocoStats = std::array<double, 12>;

// COCOeval.accumulate()'s arrays, numpy's shapes and C order:
//   precision [T=10][R=101][K][A=4][M=3], recall [T][K][A][M]; A: all, small, medium, large;
//   M: maxDets 1, 10, 100.
struct CocoAccumulated {
  int K = 0;
  std::vector<double> precision, recall;
  double& p(int t, int r, int k, int a, int m) { return precision[(((size_t)(t * 101 + r) * K + k) * 4 + a) * 3 + m]; }
  double p(int t, int r, int k, int a, int m) const {
    return precision[(((size_t)(t * 101 + r) * K + k) * 4 + a) * 3 + m];
  }
  double& rc(int t, int k, int a, int m) { return recall[(((size_t)t * K + k) * 4 + a) * 3 + m]; }
  double rc(int t, int k, int a, int m) const { return recall[(((size_t)t * K + k) * 4 + a) * 3 + m]; }
};

class CocoEval {
 public:
  static constexpr int kNumIouThrs = 10, kNumRecThrs = 101, kNumAreas = 4, kNumMaxDets = 3;
  static const std::array<double, kNumIouThrs>& iou_thresholds();     // numpy.linspace(.5, .95, 10)
  static const std::array<double, kNumRecThrs>& recall_thresholds();  // numpy.linspace(0, 1, 101)
  static constexpr std::array<int, kNumMaxDets> kMaxDets = {1, 10, 100};
  // [lo, hi] per range: all, small, medium, large (pycocotools' areaRng, 1e5^2 as the top).
  static constexpr std::array<std::array<double, 2>, kNumAreas> kAreaRanges = {
      {{0, 1e10}, {0, 32 * 32}, {32 * 32, 96 * 96}, {96 * 96, 1e10}}};

  explicit CocoEval(int num_categories);

  // One image. image_id orders the images for accumulation (pycocotools sorts image ids); the
  // overload without it takes one past the largest id so far (0, 1, 2, ... in call order). Ids
  // must be distinct.
  void update(int64_t image_id, const std::vector<CocoDetection>& dets, const std::vector<CocoGroundTruth>& gts);
  void update(const std::vector<CocoDetection>& dets, const std::vector<CocoGroundTruth>& gts);
  void reset();

  CocoAccumulated accumulate() const;
  CocoStats summarize() const { return summarize(accumulate()); }
  static CocoStats summarize(const CocoAccumulated& acc);
  int64_t num_images() const { return (int64_t)image_ids_.size(); }
  int num_categories() const { return num_categories_; }

 private:
  // One kept detection (<= 100 per image and category) after per-image matching: bit t of
  // matched[a] / ignored[a] is dtMatches != 0 / dtIgnore at IoU threshold t in area range a.
  struct DetRecord {
    double score;
    uint16_t matched[kNumAreas];
    uint16_t ignored[kNumAreas];
  };
  struct ImageEntry {
    int64_t image_id;
    uint32_t begin, count;    // into dets_[category]
    int32_t npig[kNumAreas];  // non-ignored gts per range
  };

  int num_categories_;
  std::vector<std::vector<ImageEntry>> entries_;  // per category
  std::vector<std::vector<DetRecord>> dets_;      // per category
  std::unordered_set<int64_t> image_ids_;
  int64_t next_auto_id_ = 0;  // one past the largest id seen
};

// pycocotools' printed summary, 12 lines joined by '\n', e.g.
//  " Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.504"
std::string format_coco_summary(const CocoStats& stats);

}  // namespace engine::train
