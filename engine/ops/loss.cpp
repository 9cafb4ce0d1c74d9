// Losses: argument checks, workspace, dispatch to one kernel per device, backward nodes.
// Kernels: kernels/cpu/loss_cpu.* and kernels/cuda/loss.cu; per-element math kernels/loss_math.h.
// Semantics (PaddleSeg / Paddle) are documented in engine/ops/loss.h.
#include "engine/ops/loss.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "engine/autograd.h"
#include "engine/cuda_graph.h"
#include "engine/ops/copy.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/op_utils.h"
#include "kernels/cpu/loss_cpu.h"
#include "kernels/cpu/resize_cpu.h"
#if defined(ENGINE_WITH_CUDA)
#include "kernels/cuda/loss_cuda.h"
#include "kernels/cuda/resize_cuda.h"
#endif

namespace engine {
namespace {

using kernels::PointLoss;

constexpr double kCeEps = 1e-8;    // PaddleSeg CrossEntropyLoss.EPS
constexpr double kOhemEps = 1e-5;  // PaddleSeg OhemCrossEntropyLoss: mean(valid) + 1e-5

// A contiguous, detached copy (or view) of t for the kernels.
Tensor contig(const Tensor& t) {
  NoGradGuard ng;
  const Tensor d = t.detach();
  return d.is_contiguous() ? d : copy_contiguous(d, d.dtype());
}

struct CeGeom {
  int64_t P = 0, C = 0;
};

CeGeom check_ce_inputs(const char* op, const Tensor& logits, const Tensor& labels) {
  check_float_storage(op, "logits", logits);
  check_defined(op, "labels", labels);
  ENGINE_CHECK(labels.dtype() == DType::I64, op, ": labels must be i64, got ", labels.describe());
  check_same_device(op, logits, "logits", labels, "labels");
  ENGINE_CHECK(logits.dim() >= 2, op, ": logits must be [N, H, W, C] (channels last) or [N, C], got ",
               logits.describe());
  Shape lead(logits.shape().begin(), logits.shape().end() - 1);
  ENGINE_CHECK(labels.shape() == lead, op, ": labels ", labels.describe(), " must have the shape of logits ",
               logits.describe(), " without its class axis, ", shape_str(lead));
  CeGeom g;
  g.C = logits.shape().back();
  g.P = shape_numel(lead);
  ENGINE_CHECK(g.C > 0 && g.P > 0, op, ": empty input: logits ", logits.describe());
  ENGINE_CHECK(g.C < (int64_t)1 << 30, op, ": too many classes in logits ", logits.describe());
  return g;
}

[[noreturn]] void fail_bad_labels(const char* op, const Tensor& labels_c, int64_t C, int64_t ignore, int64_t count,
                                  int64_t first) {
  const int64_t v = labels_c.reshape({labels_c.numel()}).slice(0, first, first + 1).to_vector_i64()[0];
  std::vector<int64_t> pos(labels_c.dim());
  int64_t r = first;
  for (int d = labels_c.dim() - 1; d >= 0; --d) {
    pos[d] = r % labels_c.shape()[d];
    r /= labels_c.shape()[d];
  }
  fail(op, ": labels ", labels_c.describe(), " hold ", count, " value(s) outside [0, ", C,
       ") that are not ignore_index ", ignore, "; the first is ", v, " at position ", shape_str(pos));
}

#if defined(ENGINE_WITH_CUDA)
// Device statistics buffer (CeStat layout): zeros, first-bad = INT64_MAX.
Tensor new_stats(Device d) {
  return Tensor::from_vector_i64({0, std::numeric_limits<int64_t>::max(), 0, 0, 0}, {kernels::kCeStatsLen}, d);
}
#endif

// The logits a cross entropy reads: the tensor itself, or (upsampled) the bilinear half-pixel
// resize of a smaller one to the labels' size. The kernels of both devices make the upsampled values
// as they go (kernels/cpu/loss_cpu.h resize_ce_*, kernels/cuda/loss_cuda.h resize_ce_*): the
// numbers of the resize followed by the plain loss, without the full-size logits in memory.
struct CeLogits {
  Tensor x;  // contiguous and detached: the logits, or the small logits when upsampled
  bool upsampled = false;
  kernels::ResizeArgs ra;                           // upsampled: x [N, h, w, C] -> [N, H, W, C]
  const char* bwd_name = "cross_entropy_backward";  // the backward's dispatch (the forward's is the op's name)
};

CeLogits plain_logits(const Tensor& logits) {
  CeLogits src;
  src.x = contig(logits);
  return src;
}

// logits [N, h, w, C] upsampled to the labels' [N, H, W].
CeLogits upsampled_logits(const char* op, const Tensor& logits, const Tensor& labels) {
  check_float_storage(op, "logits", logits);
  check_defined(op, "labels", labels);
  ENGINE_CHECK(labels.dtype() == DType::I64, op, ": labels must be i64, got ", labels.describe());
  check_same_device(op, logits, "logits", labels, "labels");
  ENGINE_CHECK(logits.dim() == 4, op, ": logits must be [N, h, w, C] (channels last), got ", logits.describe());
  ENGINE_CHECK(labels.dim() == 3 && labels.size(0) == logits.size(0), op, ": labels ", labels.describe(),
               " must be [N, H, W] with the N of logits ", logits.describe());
  ENGINE_CHECK(logits.numel() > 0 && labels.numel() > 0, op, ": empty input: logits ", logits.describe(), ", labels ",
               labels.describe());
  CeLogits src;
  src.x = contig(logits);
  src.upsampled = true;
  kernels::ResizeArgs& a = src.ra;
  a.N = logits.size(0);
  a.C = logits.size(3);
  a.h = kernels::make_resize1d(logits.size(1), labels.size(1), kernels::ResizeMode::BilinearHalfPixel, 0.f);
  a.w = kernels::make_resize1d(logits.size(2), labels.size(2), kernels::ResizeMode::BilinearHalfPixel, 0.f);
  a.sn = src.x.strides()[0];
  a.sh = src.x.strides()[1];
  a.sw = src.x.strides()[2];
  a.sc = src.x.strides()[3];
  src.bwd_name = "upsampled_cross_entropy_backward";
  return src;
}

// CE / OHEM forward on the CPU (pgt, nll null for CE).
kernels::CeFwdStats ce_fwd_on_cpu(const CeLogits& src, const Tensor& yc, const float* wp, int64_t P, int64_t C,
                                  int64_t ignore, float thresh, Tensor& lse, float* pgt, float* nll) {
  kernels::CeFwdStats st;
  if (src.upsampled)
    kernels::resize_ce_fwd_cpu(src.ra, src.x.dtype(), src.x.raw_data(), yc.data<int64_t>(), wp, ignore, thresh,
                               lse.data<float>(), pgt, nll, &st);
  else
    kernels::ce_fwd_cpu(src.x.raw_data(), src.x.dtype(), yc.data<int64_t>(), wp, P, C, ignore, thresh,
                        lse.data<float>(), pgt, nll, &st);
  return st;
}

#if defined(ENGINE_WITH_CUDA)
// CE / OHEM forward on the GPU (pgt, nll null for CE): lse and the statistics, loss and inv on the
// device (kernels/cuda/loss_cuda.h ce_fwd_cuda).
void ce_fwd_on_cuda(const CeLogits& src, const Tensor& yc, const float* wp, int64_t P, int64_t C, int64_t ignore,
                    float thresh, Tensor& lse, float* pgt, float* nll, double* part, const Tensor& stats,
                    double denom_add, Tensor& out, Tensor& inv) {
  if (src.upsampled)
    kernels::resize_ce_fwd_cuda(src.ra, src.x.dtype(), src.x.raw_data(), yc.data<int64_t>(), wp, ignore, thresh,
                                lse.data<float>(), pgt, nll, part, stats.data<int64_t>(), denom_add, out.data<float>(),
                                inv.data<float>(), compute_stream());
  else
    kernels::ce_fwd_cuda(src.x.raw_data(), src.x.dtype(), yc.data<int64_t>(), wp, P, C, ignore, thresh,
                         lse.data<float>(), pgt, nll, part, stats.data<int64_t>(), denom_add, out.data<float>(),
                         inv.data<float>(), compute_stream());
}
#endif

// Backward of CE / OHEM: gx = g * inv * coef_p * (softmax - onehot), for src.x (the small logits'
// gradient when upsampled: the resize's backward of the full-size one).
Tensor ce_backward(const Tensor& g, const CeLogits& src, const Tensor& yc, const Tensor& w, const Tensor& lse,
                   const Tensor& pgt, float thr_host, const Tensor& thr_dev, float inv_host, const Tensor& inv_dev,
                   int64_t P, int64_t C, int64_t ignore) {
  const Tensor& xc = src.x;
  Tensor gx = Tensor::empty(xc.shape(), xc.dtype(), xc.device());  // the logits' storage type
  const float* wp = w.defined() ? w.data<float>() : nullptr;
  const float* pp = pgt.defined() ? pgt.data<float>() : nullptr;
  auto on_cpu = [&] {
    const float scale = g.item() * inv_host;
    if (src.upsampled) {
      Tensor ws = Tensor::empty({kernels::resize_bwd_workspace_cpu(src.ra)}, DType::F32, xc.device());
      kernels::resize_ce_bwd_cpu(src.ra, xc.dtype(), xc.raw_data(), yc.data<int64_t>(), wp, lse.data<float>(), pp,
                                 thr_host, ignore, scale, gx.raw_data(), ws.data<float>());
    } else {
      kernels::ce_bwd_cpu(xc.raw_data(), xc.dtype(), yc.data<int64_t>(), wp, lse.data<float>(), pp, thr_host, P, C,
                          ignore, scale, gx.raw_data());
    }
  };
#if defined(ENGINE_WITH_CUDA)
  auto on_cuda = [&] {
    const float* thr = thr_dev.defined() ? thr_dev.data<float>() : nullptr;
    const Tensor gc = contig(g);
    if (src.upsampled) {
      Tensor ws = Tensor::empty({kernels::resize_bwd_workspace_cuda(src.ra)}, DType::F32, xc.device());
      kernels::resize_ce_bwd_cuda(src.ra, xc.dtype(), xc.raw_data(), yc.data<int64_t>(), wp, lse.data<float>(), pp, thr,
                                  thr_host, ignore, gc.data<float>(), inv_dev.data<float>(), gx.raw_data(),
                                  ws.data<float>(), compute_stream());
    } else {
      kernels::ce_bwd_cuda(xc.raw_data(), xc.dtype(), yc.data<int64_t>(), wp, lse.data<float>(), pp, thr, thr_host, P,
                           C, ignore, gc.data<float>(), inv_dev.data<float>(), gx.raw_data(), compute_stream());
    }
  };
#endif
  ENGINE_DISPATCH(src.bwd_name, xc.device(), traffic(xc, yc, w, lse, pgt, gx), on_cpu(), on_cuda());
  return gx;
}

Tensor cross_entropy_impl(const char* op, const Tensor& logits, const CeLogits& src, const Tensor& labels, int64_t P,
                          int64_t C, const Tensor& class_weight, int64_t ignore_index) {
  Tensor w;
  if (class_weight.defined()) {
    check_f32(op, "class_weight", class_weight);
    check_same_device(op, logits, "logits", class_weight, "class_weight");
    ENGINE_CHECK(class_weight.shape() == Shape{C}, op, ": class_weight ", class_weight.describe(), " must be [C] = [",
                 C, "] for logits ", logits.describe());
    w = contig(class_weight);
  }
  const Tensor yc = contig(labels);
  const Device dev = logits.device();
  Tensor lse = Tensor::empty({P}, DType::F32, dev);
  Tensor out = Tensor::empty({}, DType::F32, dev);
  const float* wp = w.defined() ? w.data<float>() : nullptr;
  float inv_host = 0.f;
  Tensor inv_dev;
  auto on_cpu = [&] {
    const kernels::CeFwdStats st = ce_fwd_on_cpu(src, yc, wp, P, C, ignore_index, 0.f, lse, nullptr, nullptr);
    if (st.n_bad) fail_bad_labels(op, yc, C, ignore_index, st.n_bad, st.first_bad);
    const double denom = st.sum_w + kCeEps * (double)P;
    out.data<float>()[0] = (float)(st.sum_loss / denom);
    inv_host = (float)(1.0 / denom);
  };
#if defined(ENGINE_WITH_CUDA)
  auto on_cuda = [&] {
    Tensor stats = new_stats(dev);
    Tensor part = Tensor::empty({kernels::ce_part_doubles(P)}, DType::I64, dev);
    inv_dev = Tensor::empty({1}, DType::F32, dev);
    ce_fwd_on_cuda(src, yc, wp, P, C, ignore_index, 0.f, lse, nullptr, nullptr,
                   reinterpret_cast<double*>(part.data<int64_t>()), stats, kCeEps * (double)P, out, inv_dev);
    check_on_host([=] {
      const auto st = stats.to_vector_i64();
      if (st[kernels::kBadCount])
        fail_bad_labels(op, yc, C, ignore_index, st[kernels::kBadCount], st[kernels::kFirstBad]);
    });
  };
#endif
  ENGINE_DISPATCH(op, dev, traffic(src.x, yc, w, lse), on_cpu(), on_cuda());
  if (needs_grad({&logits})) {
    record_lambda(op, {logits}, out, [=](const std::vector<Tensor>& g) {
      return std::vector<Tensor>{
          ce_backward(g[0], src, yc, w, lse, Tensor(), 0.f, Tensor(), inv_host, inv_dev, P, C, ignore_index)};
    });
  }
  return out;
}

Tensor ohem_cross_entropy_impl(const char* op, const Tensor& logits, const CeLogits& src, const Tensor& labels,
                               int64_t P, int64_t C, float thresh, int64_t min_kept, int64_t ignore_index) {
  ENGINE_CHECK(std::isfinite(thresh), op, ": thresh must be finite, got ", thresh);
  ENGINE_CHECK(min_kept >= 0, op, ": min_kept must be >= 0, got ", min_kept);
  const Tensor yc = contig(labels);
  const Device dev = logits.device();
  Tensor lse = Tensor::empty({P}, DType::F32, dev);
  Tensor pgt = Tensor::empty({P}, DType::F32, dev);
  Tensor nll = Tensor::empty({P}, DType::F32, dev);
  Tensor out = Tensor::empty({}, DType::F32, dev);
  const double denom_add = kOhemEps * (double)P;
  bool mining = false;
  float thr_host = 0.f, inv_host = 0.f;
  Tensor thr_dev, inv_dev;
  auto on_cpu = [&] {
    const kernels::CeFwdStats st =
        ce_fwd_on_cpu(src, yc, nullptr, P, C, ignore_index, thresh, lse, pgt.data<float>(), nll.data<float>());
    if (st.n_bad) fail_bad_labels(op, yc, C, ignore_index, st.n_bad, st.first_bad);
    const int64_t num_valid = (int64_t)st.sum_w;
    mining = min_kept > 0 && min_kept < num_valid && num_valid > 0;  // PaddleSeg masks only when min_kept > 0
    double s1 = st.sum_loss;
    int64_t kept = num_valid;
    if (mining) {
      thr_host = thresh;
      // p_(k) < thresh exactly when at least min_kept valid pixels lie below thresh; otherwise p_(k) is
      // the (min_kept - below)-th smallest of the valid values >= thresh.
      if (min_kept > 0 && st.n_below < min_kept)
        thr_host = std::max(thresh, kernels::ohem_select_cpu(pgt.data<float>(), yc.data<int64_t>(), P, C, ignore_index,
                                                             thresh, min_kept - st.n_below));
      kernels::ohem_sum_cpu(pgt.data<float>(), nll.data<float>(), yc.data<int64_t>(), P, C, ignore_index, thr_host, &s1,
                            &kept);
    }
    const double denom = (double)kept + denom_add;
    out.data<float>()[0] = (float)(s1 / denom);
    inv_host = (float)(1.0 / denom);
  };
#if defined(ENGINE_WITH_CUDA)
  auto on_cuda = [&] {
    Tensor stats = new_stats(dev);
    Tensor part = Tensor::empty({kernels::ce_part_doubles(P)}, DType::I64, dev);
    double* partp = reinterpret_cast<double*>(part.data<int64_t>());
    inv_dev = Tensor::empty({1}, DType::F32, dev);
    ce_fwd_on_cuda(src, yc, nullptr, P, C, ignore_index, thresh, lse, pgt.data<float>(), nll.data<float>(), partp,
                   stats, denom_add, out, inv_dev);
    check_on_host([=] {
      const auto st = stats.to_vector_i64();
      if (st[kernels::kBadCount])
        fail_bad_labels(op, yc, C, ignore_index, st[kernels::kBadCount], st[kernels::kFirstBad]);
    });
    // Whether to mine is decided on the device (no host read: a CUDA graph can capture the step); when
    // it does not mine, the threshold is +inf and the backward's keep test passes every valid pixel.
    if (min_kept > 0) {
      mining = true;
      thr_dev = Tensor::empty({1}, DType::F32, dev);
      Tensor ws = Tensor::empty({4 + 256}, DType::I64, dev);
      uint64_t* wsp = reinterpret_cast<uint64_t*>(ws.data<int64_t>());
      kernels::ohem_mine_cuda(pgt.data<float>(), nll.data<float>(), yc.data<int64_t>(), P, C, ignore_index, min_kept,
                              thresh, wsp, wsp + 4, partp, stats.data<int64_t>(), denom_add, out.data<float>(),
                              inv_dev.data<float>(), thr_dev.data<float>(), compute_stream());
    }
  };
#endif
  ENGINE_DISPATCH(op, dev, traffic(src.x, yc, lse, pgt, nll), on_cpu(), on_cuda());
  if (needs_grad({&logits})) {
    const Tensor pg = mining ? pgt : Tensor();
    record_lambda(op, {logits}, out, [=](const std::vector<Tensor>& g) {
      return std::vector<Tensor>{
          ce_backward(g[0], src, yc, Tensor(), lse, pg, thr_host, thr_dev, inv_host, inv_dev, P, C, ignore_index)};
    });
  }
  return out;
}

}  // namespace

Tensor cross_entropy(const Tensor& logits, const Tensor& labels, const Tensor& class_weight, int64_t ignore_index) {
  const CeGeom geo = check_ce_inputs("cross_entropy", logits, labels);
  return cross_entropy_impl("cross_entropy", logits, plain_logits(logits), labels, geo.P, geo.C, class_weight,
                            ignore_index);
}

Tensor ohem_cross_entropy(const Tensor& logits, const Tensor& labels, float thresh, int64_t min_kept,
                          int64_t ignore_index) {
  const CeGeom geo = check_ce_inputs("ohem_cross_entropy", logits, labels);
  return ohem_cross_entropy_impl("ohem_cross_entropy", logits, plain_logits(logits), labels, geo.P, geo.C, thresh,
                                 min_kept, ignore_index);
}

Tensor upsampled_cross_entropy(const Tensor& logits, const Tensor& labels, const Tensor& class_weight,
                               int64_t ignore_index) {
  const char* op = "upsampled_cross_entropy";
  const CeLogits src = upsampled_logits(op, logits, labels);
  return cross_entropy_impl(op, logits, src, labels, labels.numel(), logits.size(3), class_weight, ignore_index);
}

Tensor upsampled_ohem_cross_entropy(const Tensor& logits, const Tensor& labels, float thresh, int64_t min_kept,
                                    int64_t ignore_index) {
  const char* op = "upsampled_ohem_cross_entropy";
  const CeLogits src = upsampled_logits(op, logits, labels);
  return ohem_cross_entropy_impl(op, logits, src, labels, labels.numel(), logits.size(3), thresh, min_kept,
                                 ignore_index);
}

// ------------------------------------------------------------------------------ pointwise losses
namespace {

void check_probs(const char* op, const Tensor& probs, int64_t n_bad) {
  ENGINE_CHECK(
      n_bad == 0, op, ": probs ", probs.describe(), " hold ", n_bad,
      " value(s) outside [0, 1] or NaN; binary_cross_entropy takes probabilities (use bce_with_logits on logits)");
}

Tensor point_loss(const char* op, PointLoss kind, const Tensor& a, const Tensor& b, const Tensor& weight, bool grad_b) {
  const char* an = kind == PointLoss::L1 ? "a" : (kind == PointLoss::Bce ? "probs" : "logits");
  const char* bn = kind == PointLoss::L1 ? "b" : "targets";
  check_f32(op, an, a);
  check_f32(op, bn, b);
  check_same_device(op, a, an, b, bn);
  ENGINE_CHECK(a.shape() == b.shape(), op, ": ", an, " ", a.describe(), " and ", bn, " ", b.describe(),
               " must have the same shape");
  ENGINE_CHECK(a.numel() > 0, op, ": empty input ", a.describe());
  Tensor w;
  if (weight.defined()) {
    check_f32(op, "weight", weight);
    check_same_device(op, a, an, weight, "weight");
    ENGINE_CHECK(weight.shape() == a.shape(), op, ": weight ", weight.describe(), " must have the shape of ", an, " ",
                 a.describe());
    w = contig(weight);
  }
  const Tensor ac = contig(a), bc = contig(b);
  const int64_t n = a.numel();
  const Device dev = a.device();
  Tensor out = Tensor::empty({}, DType::F32, dev);
  const float* wp = w.defined() ? w.data<float>() : nullptr;
  int64_t n_bad = 0;
  auto on_cpu = [&] {
    const double s = kernels::point_loss_fwd_cpu(kind, ac.data<float>(), bc.data<float>(), wp, n, &n_bad);
    out.data<float>()[0] = (float)(s / (double)n);
  };
#if defined(ENGINE_WITH_CUDA)
  auto on_cuda = [&] {
    Tensor stats = new_stats(dev);
    Tensor part = Tensor::empty({kernels::ce_part_doubles(n)}, DType::I64, dev);
    kernels::point_loss_fwd_cuda(kind, ac.data<float>(), bc.data<float>(), wp, n,
                                 reinterpret_cast<double*>(part.data<int64_t>()), stats.data<int64_t>(),
                                 out.data<float>(), compute_stream());
    if (kind == PointLoss::Bce) check_on_host([=] { check_probs(op, a, stats.to_vector_i64()[kernels::kBadCount]); });
  };
#endif
  ENGINE_DISPATCH(op, dev, traffic(ac, bc, w), on_cpu(), on_cuda());
  check_probs(op, a, n_bad);
  const bool need_a = needs_grad({&a}), need_b = grad_b && needs_grad({&b});
  if (need_a || need_b) {
    const float scale = (float)(1.0 / (double)n);
    const Shape shape = a.shape();
    std::vector<Tensor> inputs = {a};
    if (grad_b) inputs.push_back(b);
    record_lambda(op, inputs, out, [=](const std::vector<Tensor>& g) {
      Tensor ga = Tensor::empty(shape, DType::F32, ac.device());
      ENGINE_DISPATCH(
          op, ac.device(), traffic(ac, bc, w, ga),
          kernels::point_loss_bwd_cpu(kind, ac.data<float>(), bc.data<float>(), wp, n, g[0].item() * scale,
                                      ga.data<float>()),
          kernels::point_loss_bwd_cuda(kind, ac.data<float>(), bc.data<float>(), wp, n, contig(g[0]).data<float>(),
                                       scale, ga.data<float>(), compute_stream()));
      (void)w;  // keeps the weight storage alive for wp
      std::vector<Tensor> r = {need_a ? ga : Tensor()};
      if (grad_b) {
        NoGradGuard ng;
        r.push_back(need_b ? neg(ga) : Tensor());
      }
      return r;
    });
  }
  return out;
}

}  // namespace

Tensor bce_with_logits(const Tensor& logits, const Tensor& targets, const Tensor& weight) {
  return point_loss("bce_with_logits", PointLoss::BceLogits, logits, targets, weight, false);
}
Tensor binary_cross_entropy(const Tensor& probs, const Tensor& targets, const Tensor& weight) {
  return point_loss("binary_cross_entropy", PointLoss::Bce, probs, targets, weight, false);
}
Tensor l1_loss(const Tensor& a, const Tensor& b) { return point_loss("l1_loss", PointLoss::L1, a, b, Tensor(), true); }

}  // namespace engine
