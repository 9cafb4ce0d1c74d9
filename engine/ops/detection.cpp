// yolo_box and multiclass_nms: checks, dispatch, and the CUDA NMS sequence (semantics in
// engine/ops/detection.h).
#include "engine/ops/detection.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "engine/autograd.h"
#include "engine/ops/copy.h"
#include "engine/ops/op_utils.h"
#include "kernels/cpu/detection_cpu.h"
#if defined(ENGINE_WITH_CUDA)
#include "kernels/cuda/detection_cuda.h"
#endif

namespace engine {

namespace {
Tensor contig_f32(const Tensor& t) { return t.is_contiguous() ? t.detach() : copy_contiguous(t, DType::F32); }
}  // namespace

YoloBoxResult yolo_box(const Tensor& x, const Tensor& img_size, const YoloBoxArgs& a) {
  const char* op = "yolo_box";
  check_defined(op, "x", x);
  check_defined(op, "img_size", img_size);
  check_f32(op, "x", x);
  check_same_device(op, x, "x", img_size, "img_size");
  ENGINE_CHECK(x.dim() == 4, op, ": x must be [N, H, W, A*(5+C)], got ", x.describe());
  ENGINE_CHECK(!a.anchors.empty() && a.anchors.size() % 2 == 0, op, ": anchors must hold (w, h) pairs, got ",
               a.anchors.size(), " values");
  ENGINE_CHECK(a.class_num > 0, op, ": class_num must be > 0, got ", a.class_num);
  ENGINE_CHECK(a.downsample_ratio > 0, op, ": downsample_ratio must be > 0, got ", a.downsample_ratio);
  ENGINE_CHECK(std::isfinite(a.conf_thresh), op, ": conf_thresh must be finite, got ", a.conf_thresh);
  ENGINE_CHECK(std::isfinite(a.scale_x_y), op, ": scale_x_y must be finite, got ", a.scale_x_y);
  const int64_t N = x.size(0), H = x.size(1), W = x.size(2);
  const int64_t A = (int64_t)a.anchors.size() / 2, C = a.class_num;
  ENGINE_CHECK(x.size(3) == A * (5 + C), op, ": x ", x.describe(), " must have A*(5+C) = ", A, "*(5+", C,
               ") = ", A * (5 + C), " channels (", A, " anchors, class_num ", C, ")");
  ENGINE_CHECK(img_size.dtype() == DType::I32 || img_size.dtype() == DType::I64, op,
               ": img_size must be i32 or i64, got ", img_size.describe());
  ENGINE_CHECK(img_size.dim() == 2 && img_size.size(0) == N && img_size.size(1) == 2, op, ": img_size ",
               img_size.describe(), " must be [N, 2] = [", N, ", 2] (h, w per image)");
  ENGINE_CHECK(std::max(H, W) * a.downsample_ratio <= std::numeric_limits<int32_t>::max(), op, ": x ", x.describe(),
               " with downsample_ratio ", a.downsample_ratio, " exceeds the supported input size");
  NoGradGuard ng;
  const Device dev = x.device();
  const Tensor xc = contig_f32(x);
  const Tensor img = (img_size.dtype() == DType::I32 && img_size.is_contiguous())
                         ? img_size.detach()
                         : img_size.to(DType::I32).contiguous();
  std::vector<float> anchors(a.anchors.begin(), a.anchors.end());
  kernels::YoloBoxGeom g;
  g.N = N;
  g.H = (int)H;
  g.W = (int)W;
  g.A = (int)A;
  g.C = (int)C;
  g.input_h = (int)(a.downsample_ratio * H);
  g.input_w = (int)(a.downsample_ratio * W);
  g.conf_thresh = a.conf_thresh;
  g.scale = a.scale_x_y;
  g.bias = -0.5f * (a.scale_x_y - 1.f);
  g.clip = a.clip_bbox;
  YoloBoxResult r;
  r.boxes = Tensor::empty({N, A * H * W, 4}, DType::F32, dev);
  r.scores = Tensor::empty({N, A * H * W, C}, DType::F32, dev);
  auto on_cpu = [&] {
    kernels::yolo_box_cpu(xc.data<float>(), img.data<int32_t>(), anchors.data(), g, r.boxes.data<float>(),
                          r.scores.data<float>());
  };
#if defined(ENGINE_WITH_CUDA)
  auto on_cuda = [&] {
    const Tensor anc = Tensor::from_vector(anchors, {2 * A}, dev);
    kernels::yolo_box_cuda(xc.data<float>(), img.data<int32_t>(), anc.data<float>(), g, r.boxes.data<float>(),
                           r.scores.data<float>(), compute_stream());
  };
#endif
  ENGINE_DISPATCH(op, dev, traffic(xc, img, r.boxes, r.scores), on_cpu(), on_cuda());
  return r;
}

MultiClassNmsResult multiclass_nms(const Tensor& boxes, const Tensor& scores, const MultiClassNmsArgs& a) {
  const char* op = "multiclass_nms";
  check_defined(op, "boxes", boxes);
  check_defined(op, "scores", scores);
  check_f32(op, "boxes", boxes);
  check_f32(op, "scores", scores);
  check_same_device(op, boxes, "boxes", scores, "scores");
  ENGINE_CHECK(boxes.dim() == 3 && boxes.size(2) == 4, op, ": boxes must be [N, M, 4], got ", boxes.describe());
  ENGINE_CHECK(scores.dim() == 3 && scores.size(0) == boxes.size(0) && scores.size(1) == boxes.size(1), op, ": scores ",
               scores.describe(), " must be [N, M, C] with N, M of boxes ", boxes.describe());
  ENGINE_CHECK(scores.size(2) > 0, op, ": scores ", scores.describe(), " must have at least one class");
  ENGINE_CHECK(boxes.size(1) <= std::numeric_limits<int32_t>::max(), op, ": boxes ", boxes.describe(),
               " has more than 2^31 - 1 boxes per image");
  ENGINE_CHECK(std::isfinite(a.score_threshold), op, ": score_threshold must be finite, got ", a.score_threshold);
  ENGINE_CHECK(std::isfinite(a.nms_threshold), op, ": nms_threshold must be finite, got ", a.nms_threshold);
  ENGINE_CHECK(std::isfinite(a.nms_eta) && a.nms_eta > 0.f, op, ": nms_eta must be finite and > 0, got ", a.nms_eta);
  NoGradGuard ng;
  const int64_t N = boxes.size(0), M = boxes.size(1), C = scores.size(2);
  const Device dev = boxes.device();
  const Tensor bc = contig_f32(boxes), sc = contig_f32(scores);
  kernels::NmsParams p;
  p.score_threshold = a.score_threshold;
  p.nms_top_k = a.nms_top_k;
  p.nms_threshold = a.nms_threshold;
  p.nms_eta = a.nms_eta;
  p.keep_top_k = a.keep_top_k;
  p.background_label = a.background_label;
  p.normalized = a.normalized;
  MultiClassNmsResult r;
  auto on_cpu = [&] {
    std::vector<float> rows;
    std::vector<int64_t> index, num;
    if (N * M > 0)
      kernels::multiclass_nms_cpu(bc.data<float>(), sc.data<float>(), N, M, C, p, &rows, &index, &num);
    else
      num.assign((size_t)N, 0);
    const int64_t R = (int64_t)index.size();
    r.out = Tensor::from_vector(rows, {R, 6}, dev);
    r.index = Tensor::from_vector_i64(index, {R}, dev);
    r.bbox_num = Tensor::from_vector_i64(num, {N}, dev);
  };
#if defined(ENGINE_WITH_CUDA)
  auto on_cuda = [&] {
    const int64_t S = N * C;
    std::vector<int64_t> num((size_t)N, 0);
    auto empty_result = [&] {
      r.out = Tensor::empty({0, 6}, DType::F32, dev);
      r.index = Tensor::empty({0}, DType::I64, dev);
      r.bbox_num = Tensor::from_vector_i64(num, {N}, dev);
    };
    if (N * M == 0) return empty_result();
    const cudaStream_t st = compute_stream();
    // 1. candidate counts -> packed offsets, mask and tile layout (first read-back).
    Tensor cnt = Tensor::empty({S}, DType::I64, dev);
    kernels::nms_count_cuda(sc.data<float>(), N, M, C, p.score_threshold, p.background_label, cnt.data<int64_t>(), st);
    const std::vector<int64_t> cnt_h = cnt.to_vector_i64();
    std::vector<int64_t> tab((size_t)(3 * (S + 1)), 0);  // seg_off | mask_off | tile_off
    int64_t* seg_off = tab.data();
    int64_t* mask_off = seg_off + (S + 1);
    int64_t* tile_off = mask_off + (S + 1);
    int64_t max_L = 0, max_nb = 0;
    for (int64_t s = 0; s < S; ++s) {
      const int64_t L = p.nms_top_k >= 0 ? std::min(cnt_h[(size_t)s], p.nms_top_k) : cnt_h[(size_t)s];
      const int64_t nb = (L + 63) / 64;
      seg_off[s + 1] = seg_off[s] + L;
      mask_off[s + 1] = mask_off[s] + L * nb;
      tile_off[s + 1] = tile_off[s] + nb * (nb + 1) / 2;
      max_L = std::max(max_L, L);
      max_nb = std::max(max_nb, nb);
    }
    const int64_t total = seg_off[S];
    if (total == 0) return empty_result();
    const Tensor tab_d = Tensor::from_vector_i64(tab, {3 * (S + 1)}, dev);
    const int64_t* seg_off_d = tab_d.data<int64_t>();
    const int64_t* mask_off_d = seg_off_d + (S + 1);
    const int64_t* tile_off_d = mask_off_d + (S + 1);
    // 2. sorted candidates.
    Tensor cand_idx = Tensor::empty({total}, DType::I32, dev);
    Tensor cand_score = Tensor::empty({total}, DType::F32, dev);
    Tensor cand_box = Tensor::empty({total, 4}, DType::F32, dev);
    Tensor gkeys;
    if (max_L > kernels::nms_sort_smem_cap()) gkeys = Tensor::empty({total}, DType::I64, dev);
    kernels::nms_sort_cuda(bc.data<float>(), sc.data<float>(), N, M, C, p.score_threshold, cnt.data<int64_t>(),
                           seg_off_d, max_L,
                           gkeys.defined() ? reinterpret_cast<uint64_t*>(gkeys.data<int64_t>()) : nullptr,
                           cand_idx.data<int32_t>(), cand_score.data<float>(), cand_box.data<float>(), st);
    // 3. greedy selection: bitmask + warp scan, or direct (adaptive threshold, or a mask too large).
    constexpr int64_t kMaskBudgetWords = (int64_t)64 << 20;  // 512 MB
    Tensor keep_pos = Tensor::empty({total}, DType::I32, dev);
    Tensor kept = Tensor::empty({S}, DType::I64, dev);
    if (p.nms_eta >= 1.f && mask_off[S] <= kMaskBudgetWords && tile_off[S] <= std::numeric_limits<int32_t>::max()) {
      Tensor mask = Tensor::empty({mask_off[S]}, DType::I64, dev);
      uint64_t* mk = reinterpret_cast<uint64_t*>(mask.data<int64_t>());
      kernels::nms_mask_cuda(cand_box.data<float>(), seg_off_d, mask_off_d, tile_off_d, S, tile_off[S], p.nms_threshold,
                             p.normalized, mk, st);
      kernels::nms_scan_mask_cuda(seg_off_d, mask_off_d, mk, S, max_nb, keep_pos.data<int32_t>(), kept.data<int64_t>(),
                                  st);
    } else {
      kernels::nms_scan_direct_cuda(cand_box.data<float>(), seg_off_d, S, p.nms_threshold, p.nms_eta, p.normalized,
                                    keep_pos.data<int32_t>(), kept.data<int64_t>(), st);
    }
    // 4. keep_top_k and the output rows (second read-back: sizes).
    const std::vector<int64_t> kept_h = kept.to_vector_i64();
    std::vector<int64_t> tab2((size_t)(S + 1 + N + 1), 0);  // det_off | out_off
    int64_t* det_off = tab2.data();
    int64_t* out_off = det_off + (S + 1);
    for (int64_t s = 0; s < S; ++s) det_off[s + 1] = det_off[s] + kept_h[(size_t)s];
    for (int64_t n = 0; n < N; ++n) {
      const int64_t D = det_off[(n + 1) * C] - det_off[n * C];
      num[(size_t)n] = (p.keep_top_k >= 0 && D > p.keep_top_k) ? p.keep_top_k : D;
      out_off[n + 1] = out_off[n] + num[(size_t)n];
    }
    const int64_t R = out_off[N];
    if (R == 0) return empty_result();
    const Tensor tab2_d = Tensor::from_vector_i64(tab2, {S + 1 + N + 1}, dev);
    r.out = Tensor::empty({R, 6}, DType::F32, dev);
    r.index = Tensor::empty({R}, DType::I64, dev);
    kernels::nms_output_cuda(cand_box.data<float>(), cand_score.data<float>(), cand_idx.data<int32_t>(),
                             keep_pos.data<int32_t>(), seg_off_d, tab2_d.data<int64_t>(),
                             tab2_d.data<int64_t>() + (S + 1), N, M, C, r.out.data<float>(), r.index.data<int64_t>(),
                             st);
    r.bbox_num = Tensor::from_vector_i64(num, {N}, dev);
  };
#endif
  // The kernel's traffic after the score threshold depends on the data; its inputs are the floor.
  ENGINE_DISPATCH(op, dev, traffic(bc, sc), on_cpu(), on_cuda());
  return r;
}

}  // namespace engine
