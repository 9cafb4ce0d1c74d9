// conv2d: validation, output allocation, dispatch to one implementation per device, and backward.
//   CPU                    -> kernels::conv2d_*_cpu (oneDNN, kernels/cpu/conv_cpu.cpp): x/y NHWC in place,
//                             OIHW weights reordered inside; bias added and its gradient computed by
//                             oneDNN (db alone, without dw, is sum(gy) over N, H, W).
//   CUDA                   -> kernels::conv2d_*_cudnn (cuDNN 9, kernels/cudnn/conv_cudnn.cpp): x/y NHWC in
//                             place; the weight is transposed OIHW -> OHWI (cuDNN's NHWC filter layout,
//                             "KRSC") by the copy op, and dw back OHWI -> OIHW; bias added by add_inplace
//                             and db = sum_f32(gy, {0, 1, 2}) (the engine's deterministic reduction).
//                             The emulated build runs this same path against the emulated cuDNN
//                             (kernels/emu/cudnn_emu.cpp: the CPU kernel behind cuDNN's API), so the
//                             op harness's CPU-vs-CUDA comparison covers the cuDNN host code;
//                             tests/test_conv_gpu.cpp compares cuDNN with the CPU on a real GPU too.
// Precision: under bf16 / fp16 autocast (engine/precision.h, p.input): x is cast to the low type once
// (the cast op, round to nearest even) and that copy is what the backward keeps; gy is cast once for
// both backward passes; the kernel rounds w and multiplies in the low type with f32 accumulation and
// f32 outputs (kernels/cpu/conv_cpu.h). An fp16 gy that overflows (|gy| > 65504 after loss scaling)
// becomes inf and so do the gradients: the loss scaler (train/grad_scaler.h) detects that and skips
// the step. On a GPU cuDNN computes in the low type end to end (the OHWI weight copy is made
// in it too) and writes y, gx and gw in it; they are cast back to f32 here, and the bias gradient
// sums the f32 gy. tf32 autocast (GPUs only) keeps f32 tensors and lets cuDNN use TF32 math.
// O2 (x itself bf16 / f16, the models' activations at --amp_level O2): the kernel multiplies in x's
// type whatever the autocast precision, and y and gx are stored in it (ConvParams::low_out: the CPU
// rounds the f32 accumulator plus bias once; cuDNN's low-type y and gx are kept, and its bias is
// rounded to y's type and added by add_inplace). gy arrives in the low type; gw and gb stay f32.
// Workspaces (oneDNN's reordered weights + scratchpad, cuDNN's algorithm workspace) are Tensors
// allocated here, so they come from the engine's allocators.
// Backward: gx = conv_bwd_data(gy, w), (gw, gb) = conv_bwd_weights(x, gy); each only when that input
// requires grad. Saved tensors are detached: x (contiguous) when w needs a gradient, the weight in the
// device kernel's layout when x needs one.
#include "engine/ops/conv.h"

#include <sstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "engine/allocator.h"
#include "engine/autograd.h"
#include "engine/cuda_graph.h"
#include "engine/ops/copy.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/op_utils.h"
#include "engine/ops/reduce.h"
#include "engine/precision.h"
#include "kernels/cpu/conv_cpu.h"
#if defined(ENGINE_WITH_CUDA)
#include "kernels/cudnn/conv_cudnn.h"
#endif

namespace engine {
namespace {

constexpr const char* kOp = "conv2d";
using kernels::ConvInput;
using kernels::ConvParams;
using kernels::ConvPass;

std::string args_str(const Conv2dArgs& a) {
  std::ostringstream s;
  s << "stride (" << a.stride_h << ", " << a.stride_w << "), padding (" << a.pad_h << ", " << a.pad_w << "), dilation ("
    << a.dilation_h << ", " << a.dilation_w << "), groups " << a.groups;
  return s.str();
}

// Validates the arguments and returns the kernel parameters (output size included).
ConvParams check_and_params(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dArgs& a) {
  check_defined(kOp, "x", x);
  check_defined(kOp, "w", w);
  const std::string shapes = "x " + x.describe() + ", w " + w.describe() + (b.defined() ? ", b " + b.describe() : "");
  ENGINE_CHECK(is_float_storage(x.dtype()) && w.dtype() == DType::F32 && (!b.defined() || b.dtype() == DType::F32),
               "conv2d: x must be f32, bf16 or f16 and w and b f32 (the master weights), got ", shapes);
  check_same_device(kOp, x, "x", w, "w");
  if (b.defined()) check_same_device(kOp, x, "x", b, "b");
  ENGINE_CHECK(x.dim() == 4, "conv2d: x must be 4-D [N, H, W, Cin] (channels last), got ", shapes);
  ENGINE_CHECK(w.dim() == 4, "conv2d: w must be 4-D [Cout, Cin/groups, kH, kW], got ", shapes);
  ENGINE_CHECK(a.stride_h >= 1 && a.stride_w >= 1 && a.dilation_h >= 1 && a.dilation_w >= 1 && a.pad_h >= 0 &&
                   a.pad_w >= 0 && a.groups >= 1,
               "conv2d: stride and dilation must be >= 1, padding >= 0 and groups >= 1, got ", args_str(a), " for ",
               shapes);
  ConvParams p;
  p.n = x.size(0), p.h = x.size(1), p.w = x.size(2), p.cin = x.size(3);
  p.cout = w.size(0), p.kh = w.size(2), p.kw = w.size(3);
  p.stride_h = a.stride_h, p.stride_w = a.stride_w, p.pad_h = a.pad_h, p.pad_w = a.pad_w;
  p.dil_h = a.dilation_h, p.dil_w = a.dilation_w, p.groups = a.groups;
  p.bias = b.defined();
  ENGINE_CHECK(p.h > 0 && p.w > 0 && p.cin > 0, "conv2d: x has an empty spatial or channel dimension: ", shapes);
  ENGINE_CHECK(p.cout > 0 && w.size(1) > 0 && p.kh > 0 && p.kw > 0, "conv2d: w has an empty dimension: ", shapes);
  ENGINE_CHECK(p.cin % p.groups == 0 && p.cout % p.groups == 0, "conv2d: groups ", p.groups,
               " must divide both Cin = ", p.cin, " and Cout = ", p.cout, ": ", shapes);
  ENGINE_CHECK(w.size(1) * p.groups == p.cin, "conv2d: channel mismatch: x has Cin = ", p.cin,
               " but w expects Cin = ", w.size(1), " * groups ", p.groups, " = ", w.size(1) * p.groups, ": ", shapes);
  ENGINE_CHECK(!b.defined() || (b.dim() == 1 && b.size(0) == p.cout), "conv2d: b must be [Cout] = [", p.cout,
               "] or undefined: ", shapes);
  const int64_t ext_h = p.dil_h * (p.kh - 1) + 1, ext_w = p.dil_w * (p.kw - 1) + 1;
  ENGINE_CHECK(ext_h <= p.h + 2 * p.pad_h && ext_w <= p.w + 2 * p.pad_w, "conv2d: the kernel (", ext_h, " x ", ext_w,
               " after dilation) is larger than the padded input (", p.h + 2 * p.pad_h, " x ", p.w + 2 * p.pad_w,
               "): ", shapes, ", ", args_str(a));
  p.ho = (p.h + 2 * p.pad_h - ext_h) / p.stride_h + 1;
  p.wo = (p.w + 2 * p.pad_w - ext_w) / p.stride_w + 1;
  // Autocast (engine/precision.h), recorded in p so the backward runs at the forward's precision. A
  // bf16 / f16 x (O2) multiplies in its own type and the output is stored in it too; an f32 x (O1)
  // multiplies at the autocast precision and the output is f32.
  const Precision prec = autocast_precision();
  if (x.dtype() != DType::F32) {
    p.input = x.dtype() == DType::BF16 ? ConvInput::BF16 : ConvInput::F16;
    p.low_out = true;
  } else {
    p.input = prec == Precision::BF16 ? ConvInput::BF16 : prec == Precision::FP16 ? ConvInput::F16 : ConvInput::F32;
  }
  p.tf32 = prec == Precision::TF32 && p.input == ConvInput::F32;
  ENGINE_CHECK(!p.tf32 || x.device().is_cuda(),
               "conv2d: tf32 autocast needs a GPU (TF32 is a tensor-core math mode), got ", shapes);
  return p;
}

// The storage type of x and gy for the kernel under autocast.
DType low_dtype(const ConvParams& p) { return p.input == ConvInput::BF16 ? DType::BF16 : DType::F16; }
// The storage type of y and gx: x's.
DType out_dtype(const ConvParams& p) { return p.low_out ? low_dtype(p) : DType::F32; }

// A pass's arithmetic (2 per multiply-add, the same count for all three passes) and the traffic of
// its three tensors (x, w, y or their gradients) in the kernel's data type; the roofline times the
// best engine for the problem where it can (engine/roofline.h).
profiler::Work conv_work(const ConvParams& p, ConvPass pass) {
  profiler::Work w;
  const double macs = (double)p.n * (double)p.ho * (double)p.wo * (double)p.cout * (double)(p.cin / p.groups) *
                      (double)p.kh * (double)p.kw;
  w.flops = 2.0 * macs;
  const double x_elems = (double)(p.n * p.h * p.w * p.cin), y_elems = (double)(p.n * p.ho * p.wo * p.cout);
  const double w_elems = (double)(p.cout * (p.cin / p.groups) * p.kh * p.kw);
  const double in = p.input == ConvInput::F32 ? 4.0 : 2.0, out = p.low_out ? 2.0 : 4.0;
  // The two inputs in the product type, the output in its storage type (the weight gradient f32).
  if (pass == ConvPass::Fwd) w.bytes = (x_elems + w_elems) * in + y_elems * out;
  if (pass == ConvPass::BwdData) w.bytes = (y_elems + w_elems) * in + x_elems * out;
  if (pass == ConvPass::BwdWeights) w.bytes = (x_elems + y_elems) * in + w_elems * 4.0;
  w.is_conv = true;
  w.conv = p;
  w.conv_pass = pass;
  return w;
}

// A contiguous version of t in `dt` (default: its own type), not recorded (the op records itself
// against the original input).
Tensor contiguous_nograd(const Tensor& t, DType dt) {
  if (t.is_contiguous() && t.dtype() == dt) return t;
  NoGradGuard no_grad;
  return copy_contiguous(t, dt);
}
Tensor contiguous_nograd(const Tensor& t) { return contiguous_nograd(t, t.dtype()); }

// A host buffer of at least `bytes` (64-byte aligned by the CPU allocator), or undefined for 0.
Tensor host_workspace(size_t bytes) {
  if (bytes == 0) return Tensor();
  return Tensor::empty({(int64_t)((bytes + 3) / 4)}, DType::F32, Device::cpu());
}
void* ptr(const Tensor& t) { return t.defined() ? t.raw_data() : nullptr; }

#if defined(ENGINE_WITH_CUDA)
// The element type of cuDNN's tensors for p (conv_cudnn.cpp "Precision").
DType cudnn_dtype(const ConvParams& p) { return p.input == ConvInput::F32 ? DType::F32 : low_dtype(p); }

// cuDNN's filter layout for NHWC data: OIHW [Cout, Cin/g, kH, kW] -> OHWI [Cout, kH, kW, Cin/g], in
// the precision's type.
Tensor to_ohwi(const Tensor& w, const ConvParams& p) {
  NoGradGuard no_grad;
  return copy_contiguous(w.permute({0, 2, 3, 1}), cudnn_dtype(p));
}
// Workspace callback for the cuDNN wrapper: device Tensors kept alive in `keep` until the op returns
// (stream-ordered reuse by the caching allocator makes freeing after the enqueue safe).
// A call that ran cuDNN's algorithm search for a new shape asked for large one-off workspaces and
// layout copies (up to ~1 GiB each); once they are freed, hand the cached blocks back to the driver
// so the caching allocator does not hold gigabytes it will not reuse. Declared before the call's
// buffers, so it runs after they are released. Once per new shape and pass.
struct SearchCacheRelease {
  size_t entries = kernels::conv2d_cudnn_entries();
  ~SearchCacheRelease() {
    if (kernels::conv2d_cudnn_entries() != entries) empty_cache();
  }
};

kernels::CudnnWorkspaceFn device_workspace(std::vector<Tensor>& keep, Device dev) {
  return [&keep, dev](size_t bytes) -> void* {
    if (bytes == 0) return nullptr;
    keep.push_back(Tensor::empty({(int64_t)((bytes + 3) / 4)}, DType::F32, dev));
    return keep.back().raw_data();
  };
}
#endif

// The weight in the layout (and, on a GPU, the type) the device's kernel reads (see the file comment).
Tensor kernel_weight(const Tensor& w, const ConvParams& p) {
#if defined(ENGINE_WITH_CUDA)
  if (w.device().is_cuda()) return to_ohwi(w, p);
#endif
  return contiguous_nograd(w);
}

void run_fwd(const ConvParams& p, const Tensor& x, const Tensor& wk, const Tensor& b, const Tensor& y) {
  auto cpu = [&] {
    const Tensor ws = host_workspace(kernels::conv2d_workspace_cpu(ConvPass::Fwd, p));
    kernels::conv2d_fwd_cpu(p, x.raw_data(), wk.data<float>(), b.defined() ? b.data<float>() : nullptr, y.raw_data(),
                            ptr(ws));
  };
#if defined(ENGINE_WITH_CUDA)
  auto cuda = [&] {
    const SearchCacheRelease release;
    {
      std::vector<Tensor> keep;
      const bool widen = p.input != ConvInput::F32 && !p.low_out;  // O1: cuDNN's low-type y, widened
      const Tensor yk = widen ? Tensor::empty(y.shape(), cudnn_dtype(p), y.device()) : y;
      kernels::conv2d_fwd_cudnn(p, x.raw_data(), wk.raw_data(), yk.raw_data(), device_workspace(keep, y.device()),
                                compute_stream());
      if (widen) copy_into(y, yk);
    }
    // [N, Ho, Wo, Cout] += [Cout]; at O2 the bias is rounded to y's type first (cuDNN's y is already
    // rounded, so the sum rounds twice; the CPU adds the bias before its one rounding).
    if (b.defined()) add_inplace(y, p.low_out ? contiguous_nograd(b, y.dtype()) : b);
  };
#endif
  ENGINE_DISPATCH(kOp, y.device(), conv_work(p, ConvPass::Fwd), cpu(), cuda());
}

Tensor run_bwd_data(const ConvParams& p, const Tensor& gy, const Tensor& wk) {
  Tensor gx = Tensor::empty({p.n, p.h, p.w, p.cin}, out_dtype(p), gy.device());
  auto cpu = [&] {
    const Tensor ws = host_workspace(kernels::conv2d_workspace_cpu(ConvPass::BwdData, p));
    kernels::conv2d_bwd_data_cpu(p, gy.raw_data(), wk.data<float>(), gx.raw_data(), ptr(ws));
  };
#if defined(ENGINE_WITH_CUDA)
  auto cuda = [&] {
    const SearchCacheRelease release;
    std::vector<Tensor> keep;
    const bool widen = p.input != ConvInput::F32 && !p.low_out;
    const Tensor gxk = widen ? Tensor::empty(gx.shape(), cudnn_dtype(p), gx.device()) : gx;
    kernels::conv2d_bwd_data_cudnn(p, gy.raw_data(), wk.raw_data(), gxk.raw_data(), device_workspace(keep, gx.device()),
                                   compute_stream());
    if (widen) copy_into(gx, gxk);
  };
#endif
  ENGINE_DISPATCH("conv2d_backward_data", gy.device(), conv_work(p, ConvPass::BwdData), cpu(), cuda());
  return gx;
}

// dw (OIHW) and, when want_b, db.
// gy: the output gradient in the kernel's type; gy_in: as it arrived (the GPU's bias gradient,
// summed in f32 whatever its storage type).
std::pair<Tensor, Tensor> run_bwd_weights(ConvParams p, const Tensor& x, const Tensor& gy, const Tensor& gy_in,
                                          bool want_b) {
  const Device dev = gy.device();
  Tensor gw, gb;
  p.bias = want_b;
  auto cpu = [&] {
    gw = Tensor::empty({p.cout, p.cin / p.groups, p.kh, p.kw}, DType::F32, dev);
    if (want_b) gb = Tensor::empty({p.cout}, DType::F32, dev);
    const Tensor ws = host_workspace(kernels::conv2d_workspace_cpu(ConvPass::BwdWeights, p));
    kernels::conv2d_bwd_weights_cpu(p, x.raw_data(), gy.raw_data(), gw.data<float>(),
                                    gb.defined() ? gb.data<float>() : nullptr, ptr(ws));
  };
#if defined(ENGINE_WITH_CUDA)
  auto cuda = [&] {
    const SearchCacheRelease release;
    std::vector<Tensor> keep;
    Tensor gw_ohwi = Tensor::empty({p.cout, p.kh, p.kw, p.cin / p.groups}, cudnn_dtype(p), dev);
    kernels::conv2d_bwd_weights_cudnn(p, x.raw_data(), gy.raw_data(), gw_ohwi.raw_data(), device_workspace(keep, dev),
                                      compute_stream());
    gw = copy_contiguous(gw_ohwi.permute({0, 3, 1, 2}), DType::F32);  // OHWI -> OIHW (and widened)
    if (want_b) gb = sum_f32(gy_in, {0, 1, 2});
  };
#endif
  ENGINE_DISPATCH("conv2d_backward_weights", dev, conv_work(p, ConvPass::BwdWeights), cpu(), cuda());
  return {gw, gb};
}

std::vector<Tensor> conv2d_backward(const ConvParams& p, const Tensor& g_in, const Tensor& xs, const Tensor& wk,
                                    bool need_x, bool need_w, bool need_b) {
  NoGradGuard no_grad;
  const Tensor gy = contiguous_nograd(g_in);
  Tensor gx, gw, gb;
  if (p.n == 0) {  // empty batch: nothing flows back
    if (need_x) gx = Tensor::zeros({p.n, p.h, p.w, p.cin}, out_dtype(p), gy.device());
    if (need_w) gw = Tensor::zeros({p.cout, p.cin / p.groups, p.kh, p.kw}, DType::F32, gy.device());
    if (need_b) gb = Tensor::zeros({p.cout}, DType::F32, gy.device());
    return {gx, gw, gb};
  }
  // bf16 / fp16: gy is cast once for both passes at O1 and arrives in the low type at O2 (xs was
  // saved in the low type by the forward).
  const Tensor gyk = p.input != ConvInput::F32 && (need_x || need_w) ? contiguous_nograd(gy, low_dtype(p)) : gy;
  if (need_x) gx = run_bwd_data(p, gyk, wk);
  if (need_w) {
    std::tie(gw, gb) = run_bwd_weights(p, xs, gyk, gy, need_b);
  } else if (need_b) {
    gb = sum_f32(gy, {0, 1, 2});
  }
  return {gx, gw, gb};
}

}  // namespace

Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dArgs& a) {
  const ConvParams p = check_and_params(x, w, b, a);
  const Device dev = x.device();
  Tensor y = Tensor::empty({p.n, p.ho, p.wo, p.cout}, out_dtype(p), dev);
  // The kernel reads x in the product type; at O1 the backward keeps this half-size copy.
  const Tensor xc = contiguous_nograd(x, p.input == ConvInput::F32 ? DType::F32 : low_dtype(p));
  const Tensor wk = kernel_weight(w, p);
  const Tensor bc = b.defined() ? contiguous_nograd(b) : Tensor();
  if (p.n > 0) run_fwd(p, xc, wk, bc, y);

  const bool need_x = x.requires_grad(), need_w = w.requires_grad(), need_b = b.defined() && b.requires_grad();
  if (needs_grad({&x, &w, &b})) {
    const Tensor xs = need_w ? xc.detach() : Tensor();
    const Tensor ws = need_x ? wk.detach() : Tensor();
    record_lambda("Conv2dBackward", {x, w, b}, y, [p, xs, ws, need_x, need_w, need_b](const std::vector<Tensor>& g) {
      return conv2d_backward(p, g[0], xs, ws, need_x, need_w, need_b);
    });
  }
  return y;
}

}  // namespace engine
