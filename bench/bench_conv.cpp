// bench_kernels rows for conv2d at the layers of STDC (PP-LiteSeg backbone, 512x512 input, batch 4),
// DarkNet53 (YOLOv3 backbone, 416x416 input, batch 4) and MobileNetV1-YOLOv3 (416x416 input, batch 8:
// the MobileNetV1 depthwise layers and the YOLOv3 neck's 1x1 layers), channels-last, no bias (all of
// them are ConvBN units): for each layer the forward, backward-data and backward-weights passes
//  - through the engine's op (conv2d / its autograd node): what training pays, including the
//    OIHW <-> blocked weight reorders, workspace allocation and output allocation;
//  - (CPU) through the raw oneDNN primitive alone on the same shape: NHWC activations, weights
//    already in the primitive's format, nothing allocated per call -- the ceiling for the op.
// After each layer a line "conv2d op/raw" gives the op's rate as a fraction of the raw primitive's,
// from the fastest of 10 op/raw call pairs timed alternately after the rows (interleaved, so a burst
// of load from other processes on a shared machine hits both sides alike; the table rows show
// medians). Target: op >= 280 GFLOP/s for fwd, bwd_data and bwd_weights on the 3x3 layers with
// Cin >= 32, where the raw primitives reach ~330-366; the 3-channel stem, the 1x1 and the depthwise
// layers are reported without a floor.
// Layers (PaddleSeg paddleseg/models/backbones/stdcnet.py, PaddleDetection
// ppdet/modeling/backbones/darknet.py, models/mobilenet_v1.cpp, models/yolov3.cpp):
//   STDC: features[0] 3x3 s2 3->32 @512, features[1] 3x3 s2 32->64 @256, stage3 block 1: 1x1 64->128
//   @128, depthwise 3x3 s2 on 128 ch @128, conv_list[1] 3x3 128->64 @64, conv_list[2] 3x3 64->32 @64,
//   stage4 conv_list[1] 3x3 256->128 @32, stage5 conv_list[1] 3x3 512->256 @16.
//   DarkNet53: downsample0 3x3 s2 32->64 @416, stage0 downsample 3x3 s2 64->128 @208, stage2
//   BasicBlock 1x1 256->128 @52 and 3x3 128->256 @52, stage3 3x3 256->512 @26, stage4 3x3 512->1024 @13.
//   MobileNetV1: the 9 distinct depthwise 3x3 shapes of its 13 blocks (conv2_1 32 @208 ... conv6 1024
//   @13; conv5_1..5_5 share 512 @26 s1). YOLOv3 neck: the 7 distinct 1x1 shapes of the three
//   YoloDetBlocks (conv0, conv2, route) and the two transitions on MobileNetV1's 256/512/1024 maps.
// Low precision (where the machine runs it, check_precision_available): the op's three passes again at
// bf16 and fp16 O2, as training runs them (activations and gy in the low type, the f32 weights cast per
// call, f32 sums; gx in the low type, gw in f32): oneDNN's bf16 primitives on a CPU with AVX512-BF16
// or AMX, cuDNN's tensor-core algorithms on a GPU; on a GPU also the direct backward-data kernel in
// the low type. Validated against double sums of the rounded inputs, within one rounding of the output.
// Quick mode runs them at the first layer of each network only.
// ENGINE_BENCH_CONV_NET=<substring> keeps only the layers whose network name contains it (e.g.
// "MobileNetV1", "YOLOv3"), to re-measure a subset quickly.
// FLOPs = 2*N*Ho*Wo*Cout*(Cin/groups)*kH*kW; bytes = 4*(|x| + |w| + |y|) (low precision: 2 per
// activation element).
// Validation (before timing): 24-48 sampled elements of each result against double sums on the host.
// Quick mode (and the emulated CUDA device): batch 1, spatial sizes / 8.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <dnnl.hpp>
#include <functional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "bench/bench.h"
#include "engine/allocator.h"
#include "engine/autograd.h"
#include "engine/ops/conv.h"
#include "engine/ops/copy.h"
#include "engine/precision.h"
#include "engine/tensor.h"
#if defined(ENGINE_WITH_CUDA)
#include "base/cuda_context.h"
#include "kernels/cuda/conv_direct_cuda.h"
#endif

namespace {

using namespace engine;

struct Layer {
  const char* net;
  int64_t h, cin, cout, k, stride, groups;
  bool floor;     // the >= 280 GFLOP/s target applies
  int64_t n = 4;  // batch (the quick mode uses 1)
};

const std::vector<Layer> kLayers = {
    {"STDC", 512, 3, 32, 3, 2, 1, false},
    {"STDC", 256, 32, 64, 3, 2, 1, true},
    {"STDC", 128, 64, 128, 1, 1, 1, false},
    {"STDC", 128, 128, 128, 3, 2, 128, false},
    {"STDC", 64, 128, 64, 3, 1, 1, true},
    {"STDC", 64, 64, 32, 3, 1, 1, true},
    {"STDC", 32, 256, 128, 3, 1, 1, true},
    {"STDC", 16, 512, 256, 3, 1, 1, true},
    {"DarkNet53", 416, 32, 64, 3, 2, 1, true},
    {"DarkNet53", 208, 64, 128, 3, 2, 1, true},
    {"DarkNet53", 52, 256, 128, 1, 1, 1, false},
    {"DarkNet53", 52, 128, 256, 3, 1, 1, true},
    {"DarkNet53", 26, 256, 512, 3, 1, 1, true},
    {"DarkNet53", 13, 512, 1024, 3, 1, 1, true},
    // MobileNetV1 depthwise 3x3 at 416 input (conv1 is s2, so conv2_1 sees 208x208).
    {"MobileNetV1", 208, 32, 32, 3, 1, 32, false, 8},
    {"MobileNetV1", 208, 64, 64, 3, 2, 64, false, 8},
    {"MobileNetV1", 104, 128, 128, 3, 1, 128, false, 8},
    {"MobileNetV1", 104, 128, 128, 3, 2, 128, false, 8},
    {"MobileNetV1", 52, 256, 256, 3, 1, 256, false, 8},
    {"MobileNetV1", 52, 256, 256, 3, 2, 256, false, 8},
    {"MobileNetV1", 26, 512, 512, 3, 1, 512, false, 8},
    {"MobileNetV1", 26, 512, 512, 3, 2, 512, false, 8},
    {"MobileNetV1", 13, 1024, 1024, 3, 1, 1024, false, 8},
    // YOLOv3 neck 1x1 on MobileNetV1's maps: yolo_block.0 conv0/conv2/route 1024->512 @13,
    // transition.0 512->256 @13, yolo_block.1 conv0 768->256 and conv2/route 512->256 @26,
    // transition.1 256->128 @26, yolo_block.2 conv0 384->128 and conv2/route 256->128 @52.
    {"YOLOv3 neck", 13, 1024, 512, 1, 1, 1, false, 8},
    {"YOLOv3 neck", 13, 512, 256, 1, 1, 1, false, 8},
    {"YOLOv3 neck", 26, 768, 256, 1, 1, 1, false, 8},
    {"YOLOv3 neck", 26, 512, 256, 1, 1, 1, false, 8},
    {"YOLOv3 neck", 26, 256, 128, 1, 1, 1, false, 8},
    {"YOLOv3 neck", 52, 384, 128, 1, 1, 1, false, 8},
    {"YOLOv3 neck", 52, 256, 128, 1, 1, 1, false, 8},
};

struct Geo {
  int64_t n, h, w, cin, cout, k, ho, wo, cig;
  Conv2dArgs a;
};

Geo geometry(const Layer& l, bool quick) {
  Geo g;
  g.n = quick ? 1 : l.n;
  g.h = g.w = quick ? std::max<int64_t>(l.k, l.h / 8) : l.h;
  g.cin = l.cin, g.cout = l.cout, g.k = l.k, g.cig = l.cin / l.groups;
  g.a.stride_h = g.a.stride_w = (int)l.stride;
  g.a.pad_h = g.a.pad_w = (int)(l.k / 2);
  g.a.groups = (int)l.groups;
  g.ho = (g.h + 2 * g.a.pad_h - g.k) / l.stride + 1;
  g.wo = (g.w + 2 * g.a.pad_w - g.k) / l.stride + 1;
  return g;
}

std::string name_of(const Layer& l, const Geo& g) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "%s %lldx%lld%s%s %lld->%lld @%lldx%lld b%lld", l.net, (long long)l.k, (long long)l.k,
                l.stride > 1 ? " s2" : "", l.groups > 1 ? " dw" : "", (long long)l.cin, (long long)l.cout,
                (long long)g.h, (long long)g.w, (long long)g.n);
  return buf;
}

#if defined(ENGINE_WITH_CUDA)
kernels::ConvParams params_of(const Geo& g) {
  kernels::ConvParams p;
  p.n = g.n, p.h = g.h, p.w = g.w, p.cin = g.cin, p.cout = g.cout, p.kh = p.kw = g.k, p.ho = g.ho, p.wo = g.wo;
  p.stride_h = g.a.stride_h, p.stride_w = g.a.stride_w, p.pad_h = g.a.pad_h, p.pad_w = g.a.pad_w;
  p.groups = g.a.groups;
  return p;
}
#endif

bench::Work work_of(const Geo& g, double activation_bytes = 4.0) {
  bench::Work w;
  w.flops = 2.0 * (double)(g.n * g.ho * g.wo * g.cout) * (double)(g.cig * g.k * g.k);
  w.bytes = activation_bytes * (double)(g.n * g.h * g.w * g.cin + g.n * g.ho * g.wo * g.cout) +
            4.0 * (double)(g.cout * g.cig * g.k * g.k);
  return w;
}

// Host copies of the operands, and sampled double-precision references for the three passes.
struct HostData {
  std::vector<float> x, w, gy;
};

// rel: 1e-4 for f32 results; plus one rounding of the output's type (2^-8 bf16, 2^-11 fp16).
bool close(double got, double want, double scale, double rel) { return std::fabs(got - want) <= rel * scale + 1e-5; }

std::string mismatch(const char* what, int64_t idx, double got, double want) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "%s element %lld is %g, expected %g", what, (long long)idx, got, want);
  return buf;
}

std::string check_fwd(const Geo& g, const HostData& h, const std::vector<float>& y, double rel = 1e-4) {
  std::mt19937_64 rng(1);
  for (int t = 0; t < 32; ++t) {
    const int64_t n = (int64_t)(rng() % (uint64_t)g.n), i = (int64_t)(rng() % (uint64_t)g.ho),
                  j = (int64_t)(rng() % (uint64_t)g.wo), co = (int64_t)(rng() % (uint64_t)g.cout);
    const int64_t grp = co / (g.cout / g.a.groups);
    double want = 0, scale = 0;
    for (int64_t ci = 0; ci < g.cig; ++ci)
      for (int64_t r = 0; r < g.k; ++r)
        for (int64_t s = 0; s < g.k; ++s) {
          const int64_t hi = i * g.a.stride_h - g.a.pad_h + r, wi = j * g.a.stride_w - g.a.pad_w + s;
          if (hi < 0 || hi >= g.h || wi < 0 || wi >= g.w) continue;
          const double v = (double)h.x[(size_t)(((n * g.h + hi) * g.w + wi) * g.cin + grp * g.cig + ci)] *
                           h.w[(size_t)(((co * g.cig + ci) * g.k + r) * g.k + s)];
          want += v;
          scale += std::fabs(v);
        }
    const int64_t idx = ((n * g.ho + i) * g.wo + j) * g.cout + co;
    if (!close(y[(size_t)idx], want, scale, rel)) return mismatch("y", idx, y[(size_t)idx], want);
  }
  return "";
}

std::string check_bwd_data(const Geo& g, const HostData& h, const std::vector<float>& gx, double rel = 1e-4) {
  std::mt19937_64 rng(2);
  const int64_t og = g.cout / g.a.groups;
  for (int t = 0; t < 32; ++t) {
    const int64_t n = (int64_t)(rng() % (uint64_t)g.n), hi = (int64_t)(rng() % (uint64_t)g.h),
                  wi = (int64_t)(rng() % (uint64_t)g.w), c = (int64_t)(rng() % (uint64_t)g.cin);
    const int64_t grp = c / g.cig, ci = c % g.cig;
    double want = 0, scale = 0;
    for (int64_t co = grp * og; co < (grp + 1) * og; ++co)
      for (int64_t r = 0; r < g.k; ++r)
        for (int64_t s = 0; s < g.k; ++s) {
          const int64_t ti = hi + g.a.pad_h - r, tj = wi + g.a.pad_w - s;
          if (ti < 0 || tj < 0 || ti % g.a.stride_h || tj % g.a.stride_w) continue;
          const int64_t i = ti / g.a.stride_h, j = tj / g.a.stride_w;
          if (i >= g.ho || j >= g.wo) continue;
          const double v = (double)h.gy[(size_t)(((n * g.ho + i) * g.wo + j) * g.cout + co)] *
                           h.w[(size_t)(((co * g.cig + ci) * g.k + r) * g.k + s)];
          want += v;
          scale += std::fabs(v);
        }
    const int64_t idx = ((n * g.h + hi) * g.w + wi) * g.cin + c;
    if (!close(gx[(size_t)idx], want, scale, rel)) return mismatch("gx", idx, gx[(size_t)idx], want);
  }
  return "";
}

std::string check_bwd_weights(const Geo& g, const HostData& h, const std::vector<float>& gw, double rel = 1e-4) {
  std::mt19937_64 rng(3);
  for (int t = 0; t < 24; ++t) {
    const int64_t co = (int64_t)(rng() % (uint64_t)g.cout), ci = (int64_t)(rng() % (uint64_t)g.cig),
                  r = (int64_t)(rng() % (uint64_t)g.k), s = (int64_t)(rng() % (uint64_t)g.k);
    const int64_t grp = co / (g.cout / g.a.groups);
    double want = 0, scale = 0;
    for (int64_t n = 0; n < g.n; ++n)
      for (int64_t i = 0; i < g.ho; ++i)
        for (int64_t j = 0; j < g.wo; ++j) {
          const int64_t hi = i * g.a.stride_h - g.a.pad_h + r, wi = j * g.a.stride_w - g.a.pad_w + s;
          if (hi < 0 || hi >= g.h || wi < 0 || wi >= g.w) continue;
          const double v = (double)h.gy[(size_t)(((n * g.ho + i) * g.wo + j) * g.cout + co)] *
                           h.x[(size_t)(((n * g.h + hi) * g.w + wi) * g.cin + grp * g.cig + ci)];
          want += v;
          scale += std::fabs(v);
        }
    const int64_t idx = ((co * g.cig + ci) * g.k + r) * g.k + s;
    if (!close(gw[(size_t)idx], want, scale, rel)) return mismatch("gw", idx, gw[(size_t)idx], want);
  }
  return "";
}

// Wraps a body so it is known whether the runner ran it (its --filter may skip rows).
struct Recorder {
  bool ran = false;
  std::function<void()> wrap(std::function<void()> f) {
    return [this, f = std::move(f)] {
      ran = true;
      f();
    };
  }
};

// Fastest op call and fastest raw call of `pairs` alternating calls (op, raw, op, raw, ...). The
// minimum, not the median: on a shared machine other processes only ever add time, so the best call
// is the most reproducible measure of what the code costs; alternating puts both sides under the
// same load.
std::pair<double, double> interleaved_best(const std::function<void()>& op, const std::function<void()>& raw,
                                           int pairs) {
  auto timed = [](const std::function<void()>& f) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  double a = 1e30, b = 1e30;
  for (int r = 0; r < pairs; ++r) {
    a = std::min(a, timed(op));
    b = std::min(b, timed(raw));
  }
  return {a, b};
}

// ------------------------------------------------------------------ the raw oneDNN primitives
// The same descriptors as kernels/cpu/conv_cpu.cpp (nhwc activations, weights format_tag::any,
// convolution_direct) but with the weights reordered once, outside the timed call, and the
// library-managed scratchpad: the primitive's own speed.
struct Raw {
  dnnl::engine eng{dnnl::engine::kind::cpu, 0};
  dnnl::stream strm{eng};
  dnnl::convolution_forward::primitive_desc fpd;
  dnnl::convolution_backward_data::primitive_desc dpd;
  dnnl::convolution_backward_weights::primitive_desc wpd;
  dnnl::memory x, y, gy, gx, w_user, w_fwd, w_bwd, gw_prim, gw_user;

  Raw(const Geo& g, const Tensor& xt, const Tensor& wt, const Tensor& gyt, const Tensor& yt, const Tensor& gxt,
      const Tensor& gwt) {
    using dnnl::memory;
    using tag = memory::format_tag;
    const auto f32 = memory::data_type::f32;
    const memory::desc src({g.n, g.cin, g.h, g.w}, f32, tag::nhwc), dst({g.n, g.cout, g.ho, g.wo}, f32, tag::nhwc);
    const int64_t G = g.a.groups;
    const memory::dims wd =
        G == 1 ? memory::dims{g.cout, g.cin, g.k, g.k} : memory::dims{G, g.cout / G, g.cig, g.k, g.k};
    const memory::desc w_any(wd, f32, tag::any), w_usr(wd, f32, G == 1 ? tag::oihw : tag::goihw);
    const memory::dims st = {g.a.stride_h, g.a.stride_w}, dl = {0, 0}, pd = {g.a.pad_h, g.a.pad_w};
    const auto alg = dnnl::algorithm::convolution_direct;
    fpd = dnnl::convolution_forward::primitive_desc(
        dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, alg, src, w_any, dst, st, dl, pd, pd), eng);
    dpd = dnnl::convolution_backward_data::primitive_desc(
        dnnl::convolution_backward_data::desc(alg, src, w_any, dst, st, dl, pd, pd), eng, fpd);
    wpd = dnnl::convolution_backward_weights::primitive_desc(
        dnnl::convolution_backward_weights::desc(alg, src, w_any, dst, st, dl, pd, pd), eng, fpd);
    x = memory(src, eng, xt.raw_data());
    y = memory(dst, eng, yt.raw_data());
    gy = memory(dst, eng, gyt.raw_data());
    gx = memory(src, eng, gxt.raw_data());
    w_user = memory(w_usr, eng, wt.raw_data());
    gw_user = memory(w_usr, eng, gwt.raw_data());
    w_fwd = memory(fpd.weights_desc(), eng);
    w_bwd = memory(dpd.weights_desc(), eng);
    gw_prim = memory(wpd.diff_weights_desc(), eng);
    dnnl::reorder(w_user, w_fwd).execute(strm, w_user, w_fwd);
    dnnl::reorder(w_user, w_bwd).execute(strm, w_user, w_bwd);
    strm.wait();
    fwd_prim = dnnl::convolution_forward(fpd);
    bwd_data_prim = dnnl::convolution_backward_data(dpd);
    bwd_weights_prim = dnnl::convolution_backward_weights(wpd);
  }
  dnnl::primitive fwd_prim, bwd_data_prim, bwd_weights_prim;

  void fwd() {
    fwd_prim.execute(strm, {{DNNL_ARG_SRC, x}, {DNNL_ARG_WEIGHTS, w_fwd}, {DNNL_ARG_DST, y}});
    strm.wait();
  }
  void bwd_data() {
    bwd_data_prim.execute(strm, {{DNNL_ARG_DIFF_DST, gy}, {DNNL_ARG_WEIGHTS, w_bwd}, {DNNL_ARG_DIFF_SRC, gx}});
    strm.wait();
  }
  void bwd_weights() {
    bwd_weights_prim.execute(strm, {{DNNL_ARG_SRC, x}, {DNNL_ARG_DIFF_DST, gy}, {DNNL_ARG_DIFF_WEIGHTS, gw_prim}});
    strm.wait();
  }
  // For validation only: the blocked weight gradient back to OIHW.
  void gw_to_user() {
    dnnl::reorder(gw_prim, gw_user).execute(strm, gw_prim, gw_user);
    strm.wait();
  }
};

// The op's three passes at bf16 and fp16 O2 where `dev` runs them, and on a GPU the direct
// backward-data kernel in the same type (see the file comment).
void low_precision_rows(bench::Runner& runner, const Device& dev, const Geo& g, const std::string& shape,
                        const Tensor& x, const Tensor& w, const Tensor& gy) {
  for (const Precision prec : {Precision::BF16, Precision::FP16}) {
    try {
      check_precision_available(prec, AmpLevel::O2, dev);
    } catch (const std::exception&) {
      continue;  // (this CPU has no bf16 instructions; fp16 runs on GPUs only)
    }
    AutocastGuard autocast(prec, AmpLevel::O2);
    const DType low = prec == Precision::BF16 ? DType::BF16 : DType::F16;
    const std::string tag = std::string(", ") + precision_name(prec) + ")";
    const double rel = 1e-4 + (prec == Precision::BF16 ? 1.0 / 256 : 1.0 / 2048);
    const bench::Work work = work_of(g, 2.0);
    const Tensor xl = x.to(low), gyl = gy.to(low);
    const HostData h{xl.to_vector(), w.to(low).to_vector(), gyl.to_vector()};  // the rounded operands
    auto fwd = [&] {
      NoGradGuard ng;
      return conv2d(xl, w, Tensor(), g.a);
    };
    // A low-precision x that needs its gradient is an activation (a leaf must be f32): cast from one.
    const Tensor xr = x.detach().set_requires_grad(true).to(low), wr = w.detach().set_requires_grad(true);
    const auto node_d = conv2d(xr, w, Tensor(), g.a).grad_fn();
    const auto node_w = conv2d(xl, wr, Tensor(), g.a).grad_fn();
    auto bwd_d = [&] {
      NoGradGuard ng;
      return node_d->apply({gyl})[0];
    };
    auto bwd_w = [&] {
      NoGradGuard ng;
      return node_w->apply({gyl})[1];
    };
    runner.run(
        "conv2d_fwd (op" + tag, shape, dev, work, [&] { return check_fwd(g, h, fwd().to_vector(), rel); },
        [&] { fwd(); });
    runner.run(
        "conv2d_bwd_data (op" + tag, shape, dev, work, [&] { return check_bwd_data(g, h, bwd_d().to_vector(), rel); },
        [&] { bwd_d(); });
    runner.run(
        "conv2d_bwd_weights (op" + tag, shape, dev, work,
        [&] { return check_bwd_weights(g, h, bwd_w().to_vector(), rel); }, [&] { bwd_w(); });
#if defined(ENGINE_WITH_CUDA)
    kernels::ConvParams p = params_of(g);
    p.input = low == DType::BF16 ? kernels::ConvInput::BF16 : kernels::ConvInput::F16;
    if (dev.is_cuda() && kernels::conv2d_bwd_data_direct_supported(p)) {
      const Tensor w_ohwi = copy_contiguous(w.permute({0, 2, 3, 1}), low);
      const Tensor gx_d = Tensor::empty({g.n, g.h, g.w, g.cin}, low, dev);
      auto direct = [&] {
        kernels::conv2d_bwd_data_direct_cuda(p, gyl.raw_data(), w_ohwi.raw_data(), gx_d.raw_data(), compute_stream());
      };
      runner.run(
          "conv2d_bwd_data (direct kernel" + tag, shape, dev, work,
          [&] {
            direct();
            return check_bwd_data(g, h, gx_d.to_vector(), rel);
          },
          direct);
    }
#endif
  }
}

}  // namespace

BENCH_REGISTER(conv) {
  for (const Device& dev : runner.devices()) {
    const bool emulated = dev.is_cuda() && cuda_is_emulated();
    const bool quick = runner.quick() || emulated;
    const char* only = std::getenv("ENGINE_BENCH_CONV_NET");
    for (const Layer& l : kLayers) {
      if (only && *only && std::string(l.net).find(only) == std::string::npos) continue;
      // Start each layer with empty allocator caches: with several free blocks of one size class the
      // CPU cache hands out the oldest (cache-cold) one, so the op's rows would depend on what the
      // previous layer's rows left behind (see the dw 512 @26 s2 row in docs/BENCHMARKS.md).
      empty_cache();
      const Geo g = geometry(l, quick);
      const std::string shape = name_of(l, g);
      const bench::Work work = work_of(g);
      const double wstd = 1.0 / std::sqrt((double)(g.cig * g.k * g.k));
      const Tensor x = Tensor::uniform({g.n, g.h, g.w, g.cin}, 11, -1.f, 1.f, dev);
      const Tensor w = Tensor::uniform({g.cout, g.cig, g.k, g.k}, 12, (float)-wstd, (float)wstd, dev);
      const Tensor gy = Tensor::uniform({g.n, g.ho, g.wo, g.cout}, 13, -1.f, 1.f, dev);
      const HostData h{x.to_vector(), w.to_vector(), gy.to_vector()};

      // The op: forward without autograd; each backward pass through its own node (x or w requiring
      // grad) so the node computes just that gradient, as in training's backward.
      Recorder op_f, op_d, op_w;
      auto fwd = [&] {
        NoGradGuard ng;
        return conv2d(x, w, Tensor(), g.a);
      };
      const Tensor xr = x.detach().set_requires_grad(true), wr = w.detach().set_requires_grad(true);
      const auto node_d = conv2d(xr, w, Tensor(), g.a).grad_fn();
      const auto node_w = conv2d(x, wr, Tensor(), g.a).grad_fn();
      auto bwd_d = [&] {
        NoGradGuard ng;
        return node_d->apply({gy})[0];
      };
      auto bwd_w = [&] {
        NoGradGuard ng;
        return node_w->apply({gy})[1];
      };
      runner.run(
          "conv2d_fwd (op)", shape, dev, work, [&] { return check_fwd(g, h, fwd().to_vector()); },
          op_f.wrap([&] { fwd(); }));
      runner.run(
          "conv2d_bwd_data (op)", shape, dev, work, [&] { return check_bwd_data(g, h, bwd_d().to_vector()); },
          op_d.wrap([&] { bwd_d(); }));
      runner.run(
          "conv2d_bwd_weights (op)", shape, dev, work, [&] { return check_bwd_weights(g, h, bwd_w().to_vector()); },
          op_w.wrap([&] { bwd_w(); }));
#if defined(ENGINE_WITH_CUDA)
      // The hand-written backward-data (kernels/cuda/conv_direct.cu) that a real GPU's backward-data
      // takes instead of cuDNN's where it measures faster; here alone, whatever the choice.
      if (dev.is_cuda() && kernels::conv2d_bwd_data_direct_supported(params_of(g))) {
        const Tensor w_ohwi = copy_contiguous(w.permute({0, 2, 3, 1}), DType::F32);
        const Tensor gx_d = Tensor::empty({g.n, g.h, g.w, g.cin}, DType::F32, dev);
        auto direct = [&] {
          kernels::conv2d_bwd_data_direct_cuda(params_of(g), gy.data<float>(), w_ohwi.data<float>(), gx_d.data<float>(),
                                               compute_stream());
        };
        runner.run(
            "conv2d_bwd_data (direct kernel)", shape, dev, work,
            [&] {
              direct();
              return check_bwd_data(g, h, gx_d.to_vector());
            },
            direct);
      }
#endif
      // Quick mode (CI, under the emulator and ASan too): the first layer of each network only, which
      // still reaches every low-precision path (the thin-input stem, the stride-2 direct kernel case,
      // depthwise, 1x1).
      if (!quick || &l == &kLayers.front() || std::string((&l)[-1].net) != l.net)
        low_precision_rows(runner, dev, g, shape, x, w, gy);
      if (!dev.is_cpu()) continue;

      const Tensor y = Tensor::empty({g.n, g.ho, g.wo, g.cout}), gx = Tensor::empty({g.n, g.h, g.w, g.cin});
      const Tensor gw = Tensor::empty({g.cout, g.cig, g.k, g.k});
      Raw raw(g, x, w, gy, y, gx, gw);
      Recorder raw_f, raw_d, raw_w;
      runner.run(
          "conv2d_fwd (raw oneDNN)", shape, dev, work,
          [&] {
            raw.fwd();
            return check_fwd(g, h, y.to_vector());
          },
          raw_f.wrap([&] { raw.fwd(); }));
      runner.run(
          "conv2d_bwd_data (raw oneDNN)", shape, dev, work,
          [&] {
            raw.bwd_data();
            return check_bwd_data(g, h, gx.to_vector());
          },
          raw_d.wrap([&] { raw.bwd_data(); }));
      runner.run(
          "conv2d_bwd_weights (raw)", shape, dev, work,
          [&] {
            raw.bwd_weights();
            raw.gw_to_user();
            return check_bwd_weights(g, h, gw.to_vector());
          },
          raw_w.wrap([&] { raw.bwd_weights(); }));
      auto frac = [&](const Recorder& op, const Recorder& rw, const std::function<void()>& fo,
                      const std::function<void()>& fr, const char* what) {
        if (!op.ran || !rw.ran) return std::string();
        const auto [a, b] = interleaved_best(fo, fr, 10);
        char buf[128];
        std::snprintf(buf, sizeof buf, " %s %.0f/%.0f GFLOP/s = %.2f", what, work.flops / a / 1e9, work.flops / b / 1e9,
                      b / a);
        return std::string(buf);
      };
      const std::string line = frac(
                                   op_f, raw_f, [&] { fwd(); }, [&] { raw.fwd(); }, "fwd") +
                               frac(
                                   op_d, raw_d, [&] { bwd_d(); }, [&] { raw.bwd_data(); }, "bwd_data") +
                               frac(
                                   op_w, raw_w, [&] { bwd_w(); }, [&] { raw.bwd_weights(); }, "bwd_w");
      if (!line.empty())
        std::printf("conv2d op/raw [%s]%s%s  (oneDNN impls %s / %s / %s)\n", shape.c_str(), line.c_str(),
                    l.floor ? "" : " (no floor)", raw.fpd.impl_info_str(), raw.dpd.impl_info_str(),
                    raw.wpd.impl_info_str());
    }
  }
}
