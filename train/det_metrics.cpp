// Detection metrics: PaddleDetection's VOC DetectionMAP and pycocotools' COCOeval ('bbox'). The
// semantics, with the source files they were read from, are listed in det_metrics.h. Tested by
// tests/test_det_metrics.cpp.
#include "train/det_metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>

#include "base/error.h"
#include "train/numpy_sum.h"

namespace engine::train {

namespace {

double numpy_mean_or_minus_one(const std::vector<double>& v) {
  if (v.empty()) return -1;
  return numpy_pairwise_sum(v.data(), v.size()) / (double)v.size();
}

}  // namespace

// ------------------------------------------------------------------------------------------ VOC

double voc_jaccard_overlap(const DetBox& pred, const DetBox& gt, bool normalized) {
  if (pred.x1 >= gt.x2 || pred.x2 <= gt.x1 || pred.y1 >= gt.y2 || pred.y2 <= gt.y1) return 0.;
  const double norm = normalized ? 0. : 1.;
  auto area = [norm](double x1, double y1, double x2, double y2) { return (x2 - x1 + norm) * (y2 - y1 + norm); };
  const double ix1 = std::max<double>(pred.x1, gt.x1), iy1 = std::max<double>(pred.y1, gt.y1);
  const double ix2 = std::min<double>(pred.x2, gt.x2), iy2 = std::min<double>(pred.y2, gt.y2);
  const double inter = area(ix1, iy1, ix2, iy2);
  const double pa = area(pred.x1, pred.y1, pred.x2, pred.y2), ga = area(gt.x1, gt.y1, gt.x2, gt.y2);
  return inter / (pa + ga - inter);
}

size_t voc_prune_zero_padding(const std::vector<VocGroundTruth>& gts) {
  size_t n = 0;
  for (const auto& g : gts) {
    if (g.box.x1 == 0 && g.box.y1 == 0 && g.box.x2 == 0 && g.box.y2 == 0) break;
    ++n;
  }
  return n;
}

VocMap::VocMap(int num_classes, double overlap_thresh, bool eleven_point, bool evaluate_difficult, bool normalized)
    : num_classes_(num_classes),
      overlap_thresh_(overlap_thresh),
      eleven_point_(eleven_point),
      evaluate_difficult_(evaluate_difficult),
      normalized_(normalized) {
  ENGINE_CHECK(num_classes > 0, "VocMap: num_classes must be positive, got ", num_classes);
  reset();
}

void VocMap::reset() {
  records_.assign(num_classes_, {});
  gt_counts_.assign(num_classes_, 0);
}

void VocMap::update(const std::vector<VocDetection>& dets, const std::vector<VocGroundTruth>& gts) {
  for (size_t i = 0; i < gts.size(); ++i)
    ENGINE_CHECK(gts[i].label >= 0 && gts[i].label < num_classes_, "VocMap::update: ground truth ", i, " has label ",
                 gts[i].label, ", expected [0, ", num_classes_, ")");
  for (size_t i = 0; i < dets.size(); ++i) {
    ENGINE_CHECK(dets[i].label >= 0 && dets[i].label < num_classes_, "VocMap::update: detection ", i, " has label ",
                 dets[i].label, ", expected [0, ", num_classes_, ")");
    ENGINE_CHECK(!std::isnan(dets[i].score), "VocMap::update: detection ", i, " has a NaN score");
  }
  for (const auto& g : gts)
    if (evaluate_difficult_ || !g.difficult) ++gt_counts_[g.label];

  std::vector<char> visited(gts.size(), 0);
  for (const auto& d : dets) {
    int best = -1;
    double best_overlap = -1.0;
    for (size_t i = 0; i < gts.size(); ++i) {
      if (gts[i].label != d.label) continue;
      const double ov = voc_jaccard_overlap(d.box, gts[i].box, normalized_);
      if (ov > best_overlap) {
        best_overlap = ov;
        best = (int)i;
      }
    }
    auto& rec = records_[d.label];
    if (best_overlap > overlap_thresh_) {
      if (evaluate_difficult_ || !gts[best].difficult) {
        rec.push_back({d.score, !visited[best]});
        visited[best] = 1;
      }  // else: best match is a difficult gt -> neither TP nor FP
    } else {
      rec.push_back({d.score, false});
    }
  }
}

int64_t VocMap::gt_count(int c) const {
  ENGINE_CHECK(c >= 0 && c < num_classes_, "VocMap::gt_count: class ", c, " out of [0, ", num_classes_, ")");
  return gt_counts_[c];
}

double VocMap::class_ap_of(int c) const {
  std::vector<Record> sorted = records_[c];
  if (sorted.empty()) return 0.0;
  std::stable_sort(sorted.begin(), sorted.end(), [](const Record& a, const Record& b) { return a.score > b.score; });
  const size_t n = sorted.size();
  const double count = (double)gt_counts_[c];
  std::vector<double> precision(n), recall(n);
  int64_t tp = 0, fp = 0;
  for (size_t i = 0; i < n; ++i) {
    tp += sorted[i].tp ? 1 : 0;
    fp += sorted[i].tp ? 0 : 1;
    precision[i] = (double)tp / (double)(tp + fp);
    recall[i] = (double)tp / count;
  }
  double ap = 0.0;
  if (eleven_point_) {
    // Walk the points from the highest recall down; each threshold j / 10 starts with the max of the
    // threshold above it and takes the points down to the first one with recall below it.
    double max_prec[11] = {0};
    std::ptrdiff_t start = (std::ptrdiff_t)n - 1;
    for (int j = 10; j >= 0; --j) {
      const double thr = (double)j / 10.;
      for (std::ptrdiff_t i = start; i >= 0; --i) {
        if (recall[i] < thr) {
          start = i;
          if (j > 0) {
            max_prec[j - 1] = max_prec[j];
            break;
          }
        } else if (max_prec[j] < precision[i]) {
          max_prec[j] = precision[i];
        }
      }
    }
    double sum = 0.0;
    for (double v : max_prec) sum += v;
    ap = sum / 11.;
  } else {
    double prev = 0.;
    for (size_t i = 0; i < n; ++i) {
      const double gap = std::fabs(recall[i] - prev);
      if (gap > 1e-6) {
        ap += precision[i] * gap;
        prev = recall[i];
      }
    }
  }
  return ap;
}

std::vector<double> VocMap::class_ap() const {
  std::vector<double> out(num_classes_, -1.0);
  for (int c = 0; c < num_classes_; ++c)
    if (gt_counts_[c] > 0) out[c] = class_ap_of(c);
  return out;
}

double VocMap::map() const {
  double sum = 0.;
  int valid = 0;
  for (int c = 0; c < num_classes_; ++c) {
    if (gt_counts_[c] == 0) continue;
    ++valid;
    if (!records_[c].empty()) sum += class_ap_of(c);
  }
  return valid > 0 ? sum / (double)valid : sum;
}

// ----------------------------------------------------------------------------------------- COCO

CocoBox coco_box_from_corners(const DetBox& b) {
  const double x1 = b.x1, y1 = b.y1, x2 = b.x2, y2 = b.y2;
  return {x1, y1, x2 - x1, y2 - y1};
}

const std::array<double, CocoEval::kNumIouThrs>& CocoEval::iou_thresholds() {
  // numpy.linspace(.5, .95, 10): y = arange(10) * ((.95 - .5) / 9), then y += .5, last = .95.
  static const std::array<double, kNumIouThrs> t = [] {
    std::array<double, kNumIouThrs> v{};
    const double step = (0.95 - 0.5) / 9;
    for (int i = 0; i < kNumIouThrs; ++i) {
      const double y = (double)i * step;
      v[i] = y + 0.5;
    }
    v[kNumIouThrs - 1] = 0.95;
    return v;
  }();
  return t;
}

const std::array<double, CocoEval::kNumRecThrs>& CocoEval::recall_thresholds() {
  // numpy.linspace(0, 1, 101): arange(101) * 0.01, last = 1.0 (not i / 100: 0.35 differs).
  static const std::array<double, kNumRecThrs> t = [] {
    std::array<double, kNumRecThrs> v{};
    const double step = 1.0 / 100;
    for (int i = 0; i < kNumRecThrs; ++i) v[i] = (double)i * step;
    v[kNumRecThrs - 1] = 1.0;
    return v;
  }();
  return t;
}

CocoEval::CocoEval(int num_categories) : num_categories_(num_categories) {
  ENGINE_CHECK(num_categories > 0, "CocoEval: num_categories must be positive, got ", num_categories);
  reset();
}

void CocoEval::reset() {
  entries_.assign(num_categories_, {});
  dets_.assign(num_categories_, {});
  image_ids_.clear();
  next_auto_id_ = 0;
}

void CocoEval::update(const std::vector<CocoDetection>& dets, const std::vector<CocoGroundTruth>& gts) {
  update(next_auto_id_, dets, gts);
}

void CocoEval::update(int64_t image_id, const std::vector<CocoDetection>& dets,
                      const std::vector<CocoGroundTruth>& gts) {
  for (size_t i = 0; i < dets.size(); ++i) {
    ENGINE_CHECK(dets[i].category >= 0 && dets[i].category < num_categories_, "CocoEval::update: detection ", i,
                 " has category ", dets[i].category, ", expected [0, ", num_categories_, ")");
    ENGINE_CHECK(!std::isnan(dets[i].score), "CocoEval::update: detection ", i, " has a NaN score");
  }
  for (size_t i = 0; i < gts.size(); ++i)
    ENGINE_CHECK(gts[i].category >= 0 && gts[i].category < num_categories_, "CocoEval::update: ground truth ", i,
                 " has category ", gts[i].category, ", expected [0, ", num_categories_, ")");
  ENGINE_CHECK(image_ids_.insert(image_id).second, "CocoEval::update: image id ", image_id, " was already added");
  next_auto_id_ = std::max(next_auto_id_, image_id + 1);

  // Indices grouped by category, original order inside a category (pycocotools' _gts/_dts lists).
  auto by_category = [](size_t n, auto cat_of) {
    std::vector<uint32_t> idx(n);
    std::iota(idx.begin(), idx.end(), 0u);
    std::stable_sort(idx.begin(), idx.end(), [&](uint32_t a, uint32_t b) { return cat_of(a) < cat_of(b); });
    return idx;
  };
  const std::vector<uint32_t> di = by_category(dets.size(), [&](uint32_t i) { return dets[i].category; });
  const std::vector<uint32_t> gi = by_category(gts.size(), [&](uint32_t i) { return gts[i].category; });

  const auto& iou_thrs = iou_thresholds();
  const int kMaxDet = kMaxDets[kNumMaxDets - 1];
  std::vector<uint32_t> d_idx, g_idx, g_order;
  std::vector<double> ious;  // [D][G], gts in original order
  std::vector<char> g_ig, g_matched;
  size_t dp = 0, gp = 0;
  while (dp < di.size() || gp < gi.size()) {
    const int c = std::min(dp < di.size() ? dets[di[dp]].category : num_categories_,
                           gp < gi.size() ? gts[gi[gp]].category : num_categories_);
    d_idx.clear();
    g_idx.clear();
    for (; dp < di.size() && dets[di[dp]].category == c; ++dp) d_idx.push_back(di[dp]);
    for (; gp < gi.size() && gts[gi[gp]].category == c; ++gp) g_idx.push_back(gi[gp]);

    // Detections by score, highest first (numpy mergesort of -score: stable), at most 100 kept.
    std::stable_sort(d_idx.begin(), d_idx.end(), [&](uint32_t a, uint32_t b) { return dets[a].score > dets[b].score; });
    if ((int)d_idx.size() > kMaxDet) d_idx.resize(kMaxDet);
    const size_t D = d_idx.size(), G = g_idx.size();

    // maskApi.c bbIou.
    ious.assign(D * G, 0.0);
    for (size_t g = 0; g < G; ++g) {
      const CocoBox& gb = gts[g_idx[g]].box;
      const double ga = gb.w * gb.h;
      const bool crowd = gts[g_idx[g]].iscrowd;
      for (size_t d = 0; d < D; ++d) {
        const CocoBox& db = dets[d_idx[d]].box;
        const double da = db.w * db.h;
        const double w = std::fmin(db.w + db.x, gb.w + gb.x) - std::fmax(db.x, gb.x);
        if (w <= 0) continue;
        const double h = std::fmin(db.h + db.y, gb.h + gb.y) - std::fmax(db.y, gb.y);
        if (h <= 0) continue;
        const double i = w * h;
        const double u = crowd ? da : da + ga - i;
        ious[d * G + g] = i / u;
      }
    }

    ImageEntry e{};
    e.image_id = image_id;
    e.begin = (uint32_t)dets_[c].size();
    e.count = (uint32_t)D;
    auto& out = dets_[c];
    for (size_t d = 0; d < D; ++d) {
      DetRecord r{};
      r.score = dets[d_idx[d]].score;
      out.push_back(r);
    }
    for (int a = 0; a < kNumAreas; ++a) {
      const double lo = kAreaRanges[a][0], hi = kAreaRanges[a][1];
      g_ig.assign(G, 0);
      int32_t npig = 0;
      for (size_t g = 0; g < G; ++g) {
        const CocoGroundTruth& gt = gts[g_idx[g]];
        const double area = gt.area < 0 ? gt.box.w * gt.box.h : gt.area;
        g_ig[g] = gt.iscrowd || area < lo || area > hi;
        npig += g_ig[g] ? 0 : 1;
      }
      e.npig[a] = npig;
      // gts with the ignored ones last (stable).
      g_order.clear();
      for (size_t g = 0; g < G; ++g)
        if (!g_ig[g]) g_order.push_back((uint32_t)g);
      for (size_t g = 0; g < G; ++g)
        if (g_ig[g]) g_order.push_back((uint32_t)g);

      for (int t = 0; t < kNumIouThrs; ++t) {
        g_matched.assign(G, 0);
        const uint16_t bit = (uint16_t)(1u << t);
        for (size_t d = 0; d < D; ++d) {
          double best = std::min(iou_thrs[t], 1 - 1e-10);
          int m = -1;
          for (uint32_t g : g_order) {
            if (g_matched[g] && !gts[g_idx[g]].iscrowd) continue;
            if (m > -1 && !g_ig[m] && g_ig[g]) break;
            const double iou = ious[d * G + g];
            if (iou < best) continue;
            best = iou;
            m = (int)g;
          }
          if (m == -1) continue;
          DetRecord& r = out[e.begin + d];
          r.matched[a] |= bit;
          if (g_ig[m]) r.ignored[a] |= bit;
          g_matched[m] = 1;
        }
      }
      // Unmatched detections outside the area range are ignored.
      for (size_t d = 0; d < D; ++d) {
        const CocoBox& db = dets[d_idx[d]].box;
        const double area = db.w * db.h;
        if (area < lo || area > hi) {
          DetRecord& r = out[e.begin + d];
          r.ignored[a] |= (uint16_t)~r.matched[a] & (uint16_t)((1u << kNumIouThrs) - 1);
        }
      }
    }
    entries_[c].push_back(e);
  }
}

CocoAccumulated CocoEval::accumulate() const {
  const int K = num_categories_;
  CocoAccumulated acc;
  acc.K = K;
  acc.precision.assign((size_t)kNumIouThrs * kNumRecThrs * K * kNumAreas * kNumMaxDets, -1.0);
  acc.recall.assign((size_t)kNumIouThrs * K * kNumAreas * kNumMaxDets, -1.0);
  const auto& rec_thrs = recall_thresholds();

  struct Item {
    double score;
    const DetRecord* rec;
  };
  std::vector<Item> items;
  std::vector<double> rc, pr;
  for (int k = 0; k < K; ++k) {
    std::vector<ImageEntry> entries = entries_[k];
    if (entries.empty()) continue;
    std::stable_sort(entries.begin(), entries.end(),
                     [](const ImageEntry& a, const ImageEntry& b) { return a.image_id < b.image_id; });
    for (int m = 0; m < kNumMaxDets; ++m) {
      const uint32_t max_det = (uint32_t)kMaxDets[m];
      items.clear();
      for (const ImageEntry& e : entries)
        for (uint32_t i = 0; i < std::min(e.count, max_det); ++i) {
          const DetRecord* r = &dets_[k][e.begin + i];
          items.push_back({r->score, r});
        }
      std::stable_sort(items.begin(), items.end(), [](const Item& a, const Item& b) { return a.score > b.score; });
      const size_t nd = items.size();
      rc.resize(nd);
      pr.resize(nd);
      for (int a = 0; a < kNumAreas; ++a) {
        int64_t npig = 0;
        for (const ImageEntry& e : entries) npig += e.npig[a];
        if (npig == 0) continue;
        for (int t = 0; t < kNumIouThrs; ++t) {
          const uint16_t bit = (uint16_t)(1u << t);
          double tp = 0, fp = 0;
          for (size_t i = 0; i < nd; ++i) {
            const DetRecord& r = *items[i].rec;
            if (!(r.ignored[a] & bit)) {
              if (r.matched[a] & bit)
                tp += 1;
              else
                fp += 1;
            }
            rc[i] = tp / (double)npig;
            pr[i] = tp / (fp + tp + 2.220446049250313e-16);  // np.spacing(1)
          }
          acc.rc(t, k, a, m) = nd ? rc[nd - 1] : 0.0;
          for (size_t i = nd; i-- > 1;)
            if (pr[i] > pr[i - 1]) pr[i - 1] = pr[i];
          for (int r = 0; r < kNumRecThrs; ++r) {
            const size_t pi = (size_t)(std::lower_bound(rc.begin(), rc.end(), rec_thrs[r]) - rc.begin());
            acc.p(t, r, k, a, m) = pi < nd ? pr[pi] : 0.0;
          }
        }
      }
    }
  }
  return acc;
}

CocoStats CocoEval::summarize(const CocoAccumulated& acc) {
  const int K = acc.K;
  ENGINE_CHECK(K > 0 && acc.precision.size() == (size_t)kNumIouThrs * kNumRecThrs * K * kNumAreas * kNumMaxDets &&
                   acc.recall.size() == (size_t)kNumIouThrs * K * kNumAreas * kNumMaxDets,
               "CocoEval::summarize: accumulated arrays do not match K = ", K);
  const auto& iou_thrs = iou_thresholds();
  // iouThr < 0: all thresholds; else the ones equal to it (np.where(iouThr == p.iouThrs)).
  auto thr_list = [&](double iou_thr) {
    std::vector<int> ts;
    for (int t = 0; t < kNumIouThrs; ++t)
      if (iou_thr < 0 || iou_thrs[t] == iou_thr) ts.push_back(t);
    return ts;
  };
  auto mind = [](int max_dets) {
    for (int m = 0; m < kNumMaxDets; ++m)
      if (kMaxDets[m] == max_dets) return m;
    return -1;
  };
  std::vector<double> v;
  auto ap = [&](double iou_thr, int a, int max_dets) {
    v.clear();
    const int m = mind(max_dets);
    for (int t : thr_list(iou_thr))
      for (int r = 0; r < kNumRecThrs; ++r)
        for (int k = 0; k < K; ++k) {
          const double x = acc.p(t, r, k, a, m);
          if (x > -1) v.push_back(x);
        }
    return numpy_mean_or_minus_one(v);
  };
  auto ar = [&](int a, int max_dets) {
    v.clear();
    const int m = mind(max_dets);
    for (int t : thr_list(-1))
      for (int k = 0; k < K; ++k) {
        const double x = acc.rc(t, k, a, m);
        if (x > -1) v.push_back(x);
      }
    return numpy_mean_or_minus_one(v);
  };
  return {ap(-1, 0, 100), ap(.5, 0, 100), ap(.75, 0, 100), ap(-1, 1, 100), ap(-1, 2, 100), ap(-1, 3, 100),
          ar(0, 1),       ar(0, 10),      ar(0, 100),      ar(1, 100),     ar(2, 100),     ar(3, 100)};
}

std::string format_coco_summary(const CocoStats& s) {
  struct Line {
    bool ap;
    const char* iou;
    const char* area;
    int max_dets;
  };
  static const Line lines[12] = {
      {true, "0.50:0.95", "all", 100},    {true, "0.50", "all", 100},          {true, "0.75", "all", 100},
      {true, "0.50:0.95", "small", 100},  {true, "0.50:0.95", "medium", 100},  {true, "0.50:0.95", "large", 100},
      {false, "0.50:0.95", "all", 1},     {false, "0.50:0.95", "all", 10},     {false, "0.50:0.95", "all", 100},
      {false, "0.50:0.95", "small", 100}, {false, "0.50:0.95", "medium", 100}, {false, "0.50:0.95", "large", 100}};
  std::string out;
  char buf[160];
  for (int i = 0; i < 12; ++i) {
    const Line& l = lines[i];
    // ' {:<18} {} @[ IoU={:<9} | area={:>6s} | maxDets={:>3d} ] = {:0.3f}'
    std::snprintf(buf, sizeof(buf), " %-18s %s @[ IoU=%-9s | area=%6s | maxDets=%3d ] = %0.3f",
                  l.ap ? "Average Precision" : "Average Recall", l.ap ? "(AP)" : "(AR)", l.iou, l.area, l.max_dets,
                  s[i]);
    if (i) out += '\n';
    out += buf;
  }
  return out;
}

}  // namespace engine::train
