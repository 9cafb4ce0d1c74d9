// YOLOv3 loss: argument checks, geometry, dispatch to one kernel per device, backward node.
// Semantics in engine/ops/yolo_loss.h; kernels kernels/cpu/yolo_loss_cpu.* and kernels/cuda/yolo_loss.cu.
#include "engine/ops/yolo_loss.h"

#include <algorithm>
#include <cmath>

#include "engine/autograd.h"
#include "engine/cuda_graph.h"
#include "engine/ops/copy.h"
#include "engine/ops/op_utils.h"
#include "kernels/cpu/yolo_loss_cpu.h"
#if defined(ENGINE_WITH_CUDA)
#include "base/cuda_context.h"
#include "kernels/cuda/yolo_loss_cuda.h"
#endif

namespace engine {
namespace {

using kernels::YoloGeom;

constexpr int64_t kMaxGts = 2048;  // gt boxes of an image staged in CUDA shared memory (32 KB)

Tensor contig(const Tensor& t) {
  NoGradGuard ng;
  const Tensor d = t.detach();
  return d.is_contiguous() ? d : copy_contiguous(d, d.dtype());
}

YoloGeom make_geom(const char* op, const std::vector<Tensor>& heads, const Tensor& gt_box, const Tensor& gt_class,
                   const Tensor& gt_score, const YoloLossArgs& args) {
  const int S = (int)heads.size();
  ENGINE_CHECK(S >= 1 && S <= kernels::kYoloMaxScales, op, ": needs 1 to ", kernels::kYoloMaxScales, " heads, got ", S);
  ENGINE_CHECK((int)args.anchor_masks.size() == S && (int)args.downsample.size() == S, op, ": ", S, " heads but ",
               args.anchor_masks.size(), " anchor masks and ", args.downsample.size(), " downsample ratios");
  const int A = (int)args.anchors.size();
  ENGINE_CHECK(A >= 1 && A <= kernels::kYoloMaxAnchors, op, ": needs 1 to ", kernels::kYoloMaxAnchors, " anchors, got ",
               A);
  for (const auto& an : args.anchors)
    ENGINE_CHECK(an[0] > 0.f && an[1] > 0.f && std::isfinite(an[0]) && std::isfinite(an[1]), op,
                 ": anchors must be positive, got (", an[0], ", ", an[1], ")");
  ENGINE_CHECK(args.num_classes >= 1, op, ": num_classes must be >= 1, got ", args.num_classes);
  ENGINE_CHECK(std::isfinite(args.ignore_thresh) && std::isfinite(args.scale_x_y), op,
               ": ignore_thresh and scale_x_y must be finite");
  YoloGeom g;
  g.S = S;
  g.A = A;
  g.C = args.num_classes;
  for (int k = 0; k < A; ++k) {
    g.anchor_w[k] = args.anchors[(size_t)k][0];
    g.anchor_h[k] = args.anchors[(size_t)k][1];
  }
  check_f32(op, "gt_box", gt_box);
  check_f32(op, "gt_score", gt_score);
  check_defined(op, "gt_class", gt_class);
  ENGINE_CHECK(gt_class.dtype() == DType::I32 || gt_class.dtype() == DType::I64, op,
               ": gt_class must be i32 or i64, got ", gt_class.describe());
  ENGINE_CHECK(gt_box.dim() == 3 && gt_box.shape()[2] == 4, op, ": gt_box must be [N, B, 4], got ", gt_box.describe());
  const int64_t N = gt_box.shape()[0], B = gt_box.shape()[1];
  ENGINE_CHECK(N >= 1, op, ": empty batch: gt_box ", gt_box.describe());
  ENGINE_CHECK(B <= kMaxGts, op, ": at most ", kMaxGts, " gt boxes per image, got gt_box ", gt_box.describe());
  ENGINE_CHECK(gt_class.shape() == Shape({N, B}), op, ": gt_class ", gt_class.describe(), " must be [N, B] = [", N,
               ", ", B, "]");
  ENGINE_CHECK(gt_score.shape() == Shape({N, B}), op, ": gt_score ", gt_score.describe(), " must be [N, B] = [", N,
               ", ", B, "]");
  check_same_device(op, heads[0], "heads[0]", gt_box, "gt_box");
  check_same_device(op, heads[0], "heads[0]", gt_class, "gt_class");
  check_same_device(op, heads[0], "heads[0]", gt_score, "gt_score");
  g.N = (int)N;
  g.B = (int)B;
  int64_t off = 0;
  for (int s = 0; s < S; ++s) {
    const Tensor& h = heads[(size_t)s];
    const std::string name = "heads[" + std::to_string(s) + "]";
    check_f32(op, name.c_str(), h);
    check_same_device(op, heads[0], "heads[0]", h, name.c_str());
    const auto& mask = args.anchor_masks[(size_t)s];
    const int na = (int)mask.size();
    ENGINE_CHECK(na >= 1 && na <= kernels::kYoloMaxAnchors, op, ": anchor_masks[", s, "] must hold 1 to ",
                 kernels::kYoloMaxAnchors, " anchors");
    for (int a = 0; a < na; ++a) {
      ENGINE_CHECK(mask[(size_t)a] >= 0 && mask[(size_t)a] < A, op, ": anchor_masks[", s, "] holds ", mask[(size_t)a],
                   ", outside [0, ", A, ")");
      g.mask[s][a] = mask[(size_t)a];
    }
    const int64_t L = (int64_t)na * (5 + g.C);
    ENGINE_CHECK(h.dim() == 4 && h.shape()[0] == N && h.shape()[3] == L, op, ": ", name, " ", h.describe(),
                 " must be NHWC [N, H, W, ", na, " * (5 + ", g.C, ")] = [", N, ", H, W, ", L, "]");
    ENGINE_CHECK(h.shape()[1] >= 1 && h.shape()[2] >= 1, op, ": empty ", name, " ", h.describe());
    const int ds = args.downsample[(size_t)s];
    ENGINE_CHECK(ds >= 1, op, ": downsample[", s, "] must be >= 1, got ", ds);
    g.na[s] = na;
    g.gh[s] = (int)h.shape()[1];
    g.gw[s] = (int)h.shape()[2];
    g.ds[s] = ds;
    g.off[s] = off;
    off += (int64_t)g.gh[s] * g.gw[s] * na;
    const int in_w = ds * g.gw[s], in_h = ds * g.gh[s];
    if (s == 0) {
      g.in_w = in_w;
      g.in_h = in_h;
    }
    ENGINE_CHECK(in_w == g.in_w && in_h == g.in_h, op, ": the heads imply different network inputs: ", name, " ",
                 h.describe(), " with downsample ", ds, " gives ", in_h, "x", in_w, ", heads[0] ", g.in_h, "x", g.in_w);
  }
  ENGINE_CHECK(off * N < ((int64_t)1 << 31), op, ": too many predictions (", off, " per image, batch ", N, ")");
  g.P = off;
  g.ignore_thresh = args.ignore_thresh;
  g.scale_xy = args.scale_x_y;
  g.xy_bce = std::fabs(args.scale_x_y - 1.f) < 1e-10f ? 1 : 0;
  g.label_smooth = args.label_smooth ? 1 : 0;
  if (args.label_smooth) {
    const double d = std::min(1.0 / g.C, 1.0 / 40.0);
    g.ls_pos = (float)(1.0 - d);
    g.ls_neg = (float)d;
  }
  return g;
}

// Class ids of the gts that take part in the assignment must lie in [0, C) (an IndexError in
// Gt2YoloTarget). Reads the small gt tensors on the host.
void check_classes(const char* op, const YoloGeom& g, const Tensor& box, const Tensor& cls, const Tensor& score) {
  const std::vector<float> bx = box.to_vector(), sc = score.to_vector();
  const std::vector<int64_t> cl = cls.to_vector_i64();
  for (int64_t k = 0; k < (int64_t)g.N * g.B; ++k) {
    if (!kernels::yolo_gt_valid(&bx[(size_t)k * 4], sc[(size_t)k])) continue;
    ENGINE_CHECK(cl[(size_t)k] >= 0 && cl[(size_t)k] < g.C, op, ": gt_class[", k / g.B, ", ", k % g.B,
                 "] = ", cl[(size_t)k], " is outside [0, ", g.C, ") for a gt with w, h and score > 0");
  }
}

// The heads read once (forward) or read and their gradients written (backward, passes = 2); the
// gt tables are small next to them.
profiler::Work heads_work(const std::vector<Tensor>& heads, int passes) {
  double bytes = 0;
  for (const Tensor& h : heads) bytes += tensor_bytes(h);
  return traffic_bytes(passes * bytes);
}

}  // namespace

YoloLossOutput yolov3_loss(const std::vector<Tensor>& heads, const Tensor& gt_box, const Tensor& gt_class,
                           const Tensor& gt_score, const YoloLossArgs& args) {
  const char* op = "yolov3_loss";
  ENGINE_CHECK(!heads.empty(), op, ": no heads");
  for (const Tensor& h : heads) check_defined(op, "heads", h);
  const YoloGeom g = make_geom(op, heads, gt_box, gt_class, gt_score, args);
  const Device dev = heads[0].device();
  const Tensor box = contig(gt_box), score = contig(gt_score);
  Tensor cls;
  {
    NoGradGuard ng;
    cls = copy_contiguous(gt_class.detach(), DType::I32);
  }
  // (In a CUDA graph the check follows each replay; the kernels compare class ids, never index by them.)
  check_on_host([=] { check_classes(op, g, box, cls, score); });
  std::vector<Tensor> hc;
  std::vector<const float*> hp;
  for (const Tensor& h : heads) {
    hc.push_back(contig(h));
    hp.push_back(hc.back().data<float>());
  }
  Tensor map = Tensor::empty({(int64_t)g.N, g.P}, DType::I32, dev);
  Tensor gt_pred = Tensor::empty({(int64_t)g.N, (int64_t)g.B}, DType::I32, dev);
  YoloLossOutput out;
  Tensor* outs[5] = {&out.loss_xy, &out.loss_wh, &out.loss_obj, &out.loss_cls, &out.loss};
  for (Tensor* t : outs) *t = Tensor::empty({}, DType::F32, dev);
  auto on_cpu = [&] {
    double sums[4];
    kernels::yolo_loss_fwd_cpu(g, hp.data(), box.data<float>(), score.data<float>(), cls.data<int32_t>(),
                               map.data<int32_t>(), gt_pred.data<int32_t>(), sums);
    for (int t = 0; t < 4; ++t) outs[t]->data<float>()[0] = (float)sums[t];
    out.loss.data<float>()[0] = (float)(sums[0] + sums[1] + sums[2] + sums[3]);
  };
#if defined(ENGINE_WITH_CUDA)
  auto on_cuda = [&] {
    Tensor part = Tensor::empty({kernels::yolo_part_doubles(g)}, DType::I64, dev);
    float* op_[5];
    for (int t = 0; t < 5; ++t) op_[t] = outs[t]->data<float>();
    kernels::yolo_loss_fwd_cuda(g, hp.data(), box.data<float>(), score.data<float>(), cls.data<int32_t>(),
                                map.data<int32_t>(), gt_pred.data<int32_t>(),
                                reinterpret_cast<double*>(part.data<int64_t>()), op_, compute_stream());
  };
#endif
  ENGINE_DISPATCH(op, dev, heads_work(hc, 1), on_cpu(), on_cuda());
  if (needs_grad(heads)) {
    const float inv_n = (float)(1.0 / (double)g.N);
    record_lambda(op, heads, out.loss, [=](const std::vector<Tensor>& gr) {
      std::vector<Tensor> gx;
      std::vector<float*> gp;
      for (const Tensor& h : hc) {
        gx.push_back(Tensor::empty(h.shape(), DType::F32, h.device()));
        gp.push_back(gx.back().data<float>());
      }
      std::vector<const float*> xp;
      for (const Tensor& h : hc) xp.push_back(h.data<float>());
      const Device d = hc[0].device();
      ENGINE_DISPATCH(
          "yolov3_loss_backward", d, heads_work(hc, 2),
          kernels::yolo_loss_bwd_cpu(g, xp.data(), box.data<float>(), score.data<float>(), cls.data<int32_t>(),
                                     map.data<int32_t>(), gt_pred.data<int32_t>(), gr[0].item() * inv_n, gp.data()),
          kernels::yolo_loss_bwd_cuda(g, xp.data(), box.data<float>(), score.data<float>(), cls.data<int32_t>(),
                                      map.data<int32_t>(), gt_pred.data<int32_t>(), contig(gr[0]).data<float>(), inv_n,
                                      gp.data(), compute_stream()));
      return gx;
    });
  }
  return out;
}

}  // namespace engine
