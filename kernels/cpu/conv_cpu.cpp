// 2-D convolution on the CPU through oneDNN 2.6 (Debian libdnnl-dev, the v2 `op::desc` API).
//
// Math and layouts: see conv_cpu.h. Activations are handed to oneDNN as channels-last memory
// (format_tag::nhwc on the logical NCHW dims oneDNN always uses), so x, y, gx and gy are used in
// place, never copied. The weights are OIHW (goihw for groups > 1, the same bytes); each primitive
// is created with format_tag::any for them and picks its blocked format (e.g. OIhw16i16o on AVX-512),
// so the OIHW weights are reordered into the workspace before forward / backward-data, and the
// blocked weight gradient is reordered back into the caller's OIHW buffer after backward-weights
// (by the engine's kernel where it takes the layout: kernels/cpu/weight_reorder_cpu.h).
// These reorders are part of the op's time (bench_kernels reports op vs raw primitive).
//
// Plain weight formats are no alternative: with oihw/ohwi weights oneDNN 2.6 falls back to
// ref:any, with hwio to gemm:jit (both far slower); only format_tag::any gets brgconv/jit.
// Why the reordered weights are NOT cached across calls: a Tensor has no version counter, and the
// optimizer updates weights in place (same pointer, new values), so a cache keyed by pointer would
// silently return stale weights. Measured cost of everything the op adds (reorders, workspace,
// output allocation), as op/raw-primitive in process CPU time with 1 thread (immune to the other
// processes on this shared machine): 0.91-1.05 on every STDC/DarkNet53 layer, the lowest being the
// 19 MB-weight 512->1024 @13x13 layer (0.92 fwd, 0.95 bwd_data, 0.91 bwd_weights) -- PROVIDED the
// process's malloc keeps freed memory. With glibc's defaults every block above 32 MB is mmap'd and
// munmap'd per call, and first-touch page faults on a fresh output cost up to 30-80% (e.g. DarkNet
// 32->64 s2 @416 fwd and bwd_data 0.68, STDC 1x1 64->128 fwd 0.37): the fix belongs in the CPU
// allocator (cache large blocks, as the CUDA one does), not here.
//
// Primitive cache: every (pass, all dims, stride, pad, dilation, groups, bias) key maps to one
// entry holding the primitive, its descriptor and the weight reorder primitives, created once
// (primitive creation costs 0.1-10 ms: JIT code generation). The map is guarded by a mutex; the
// primitives themselves run outside it (they are stateless: scratchpad_mode::user, so every call
// brings its own scratchpad in the caller's workspace and concurrent calls are safe).
// Padding: oneDNN wants padding_l and padding_r; we pass the symmetric (pad, pad). oneDNN checks
// Ho == (H + pl + pr - ext_k) / s + 1 with floor division, which is exactly our output size, and its
// kernels derive the effective right padding themselves. oneDNN's dilation is ours minus one.
// Algorithm: convolution_direct (the jit AVX-512 kernels; convolution_auto could pick Winograd,
// whose numerics differ). Threads: oneDNN's own OpenMP (the Debian build), i.e. the engine's pool.
//
// bf16 (p.input == BF16, --precision bf16): the primitives are created with bf16 src / weights / diff_dst and
// f32 dst / diff_src / diff_weights / bias (oneDNN's avx512_core_bf16 or AMX kernels accumulate in
// f32). x and gy arrive as bf16 (the op layer casts them once: x in forward, kept for backward;
// gy once for both backward passes); the weight reorder into the blocked format converts the f32
// weights at the same time. Measured (1 thread, 3x3
// 128->128 at 64x64, batch 4, AMD EPYC Zen 4): 2.0x (forward), 2.1x (backward-data), 2.3x
// (backward-weights) faster than f32 primitives.
//
// fp16 (p.input == F16): oneDNN 2.6 has no f16 convolution on these CPUs, so x / gy are widened and
// w rounded to half and back, into f32 staging buffers at the end of the workspace, and the f32
// primitives run on them (conv_cpu.h says why that is exact fp16-product arithmetic); with low_out
// (O2) y / gx are written to an f32 staging buffer and rounded to half from there.
//
// O2 (p.low_out with BF16): dst and diff_src are bf16 too; oneDNN adds the f32 bias to the f32
// accumulator and rounds the sum once to nearest even.
//
// Tested by tests/test_conv.cpp (naive double reference, finite differences, CPU vs the emulated
// CUDA device which calls these functions, strided inputs, guards, determinism); benchmarked by
// bench/bench_conv.cpp (`bench_kernels --filter conv`: op vs raw primitive at STDC/DarkNet53 shapes).
#include "kernels/cpu/conv_cpu.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <dnnl.hpp>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "base/error.h"
#include "kernels/cpu/conv_wgrad_cpu.h"
#include "kernels/cpu/cpu_isa.h"
#include "kernels/cpu/weight_reorder_cpu.h"
#include "kernels/shared_math.h"

namespace engine::kernels {
namespace {

using dnnl::memory;
using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

constexpr size_t kAlign = 64;
size_t align_up(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

dnnl::engine& cpu_engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

dnnl::stream& cpu_stream() {
  thread_local dnnl::stream s(cpu_engine());
  return s;
}

// The descriptors shared by the three passes of one convolution. src / dst describe the outputs
// (gx, y): f32, or bf16 for BF16 input with low_out; src_in / dst_in the inputs x and gy, bf16 for
// BF16 input. Weights: user OIHW f32; the primitive's are bf16 for forward / backward-data for BF16
// input, and the weight gradient is always f32. (F16 runs the f32 primitives on staged copies.)
struct Descs {
  memory::desc src, dst, src_in, dst_in, weights_any, diff_weights_any, weights_user, bias;
  memory::dims strides, dilates, pad_l, pad_r;
};

Descs make_descs(const ConvParams& p) {
  Descs d;
  const dt in_type = p.input == ConvInput::BF16 ? dt::bf16 : dt::f32;
  const dt out_type = p.low_out ? in_type : dt::f32;
  const memory::dims src_dims = {p.n, p.cin, p.h, p.w}, dst_dims = {p.n, p.cout, p.ho, p.wo};
  d.src = memory::desc(src_dims, out_type, tag::nhwc);
  d.dst = memory::desc(dst_dims, out_type, tag::nhwc);
  d.src_in = memory::desc(src_dims, in_type, tag::nhwc);
  d.dst_in = memory::desc(dst_dims, in_type, tag::nhwc);
  const memory::dims wd = p.groups == 1 ? memory::dims{p.cout, p.cin, p.kh, p.kw}
                                        : memory::dims{p.groups, p.cout / p.groups, p.cin / p.groups, p.kh, p.kw};
  d.weights_any = memory::desc(wd, in_type, tag::any);
  d.diff_weights_any = memory::desc(wd, dt::f32, tag::any);
  d.weights_user = memory::desc(wd, dt::f32, p.groups == 1 ? tag::oihw : tag::goihw);
  d.bias = memory::desc({p.cout}, dt::f32, tag::x);
  d.strides = {p.stride_h, p.stride_w};
  d.dilates = {p.dil_h - 1, p.dil_w - 1};
  d.pad_l = {p.pad_h, p.pad_w};
  d.pad_r = {p.pad_h, p.pad_w};
  return d;
}

dnnl::primitive_attr user_scratchpad() {
  dnnl::primitive_attr a;
  a.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return a;
}

dnnl::convolution_forward::primitive_desc fwd_pd(const ConvParams& p, const Descs& d) {
  using F = dnnl::convolution_forward;
  const auto pk = dnnl::prop_kind::forward_training;
  const auto alg = dnnl::algorithm::convolution_direct;
  if (p.bias) {
    F::desc desc(pk, alg, d.src_in, d.weights_any, d.bias, d.dst, d.strides, d.dilates, d.pad_l, d.pad_r);
    return F::primitive_desc(desc, user_scratchpad(), cpu_engine());
  }
  F::desc desc(pk, alg, d.src_in, d.weights_any, d.dst, d.strides, d.dilates, d.pad_l, d.pad_r);
  return F::primitive_desc(desc, user_scratchpad(), cpu_engine());
}

// One cached pass: the primitive, the weights memory descriptor it wants, and the reorder between
// that and the user's OIHW weights (null when the formats coincide).
struct Entry {
  dnnl::primitive prim;
  bool is_matmul = false;     // a bf16 1x1 backward-weights run as a matmul (see pointwise_bwd_weights)
  memory::desc prim_weights;  // the primitive's (diff_)weights format
  size_t prim_scratch = 0;
  dnnl::primitive reorder;  // fwd/bwd_data: OIHW -> prim_weights; bwd_weights: prim_weights -> OIHW
  size_t reorder_scratch = 0;
  bool needs_reorder = false;
  // bwd_weights: the engine's reorder of the gradient (kernels/cpu/weight_reorder_cpu.h) instead of
  // `reorder`, when it takes prim_weights' layout.
  bool own_reorder = false;
  BlockedWeights blocked;
  // Workspace layout: [weights buffer | primitive scratchpad | reorder scratchpad], each 64-aligned.
  size_t off_scratch = 0, off_reorder_scratch = 0, workspace = 0;
};

void finish_entry(Entry& e, const memory::desc& user_weights, bool user_to_prim) {
  e.needs_reorder = e.prim_weights != user_weights;
  size_t wbytes = 0;
  if (e.needs_reorder) {
    e.own_reorder = !user_to_prim && user_weights.data.ndims == 4 && blocked_weights_of(e.prim_weights.data, e.blocked);
    if (!e.own_reorder) {  // oneDNN's reorder, created only where it runs
      const memory::desc& from = user_to_prim ? user_weights : e.prim_weights;
      const memory::desc& to = user_to_prim ? e.prim_weights : user_weights;
      dnnl::reorder::primitive_desc rpd(cpu_engine(), from, cpu_engine(), to, user_scratchpad());
      e.reorder = dnnl::reorder(rpd);
      e.reorder_scratch = rpd.scratchpad_desc().get_size();
    }
    wbytes = e.prim_weights.get_size();
  }
  e.off_scratch = align_up(wbytes);
  e.off_reorder_scratch = e.off_scratch + align_up(e.prim_scratch);
  e.workspace = e.off_reorder_scratch + align_up(e.reorder_scratch);
  if (e.workspace == 0) e.off_scratch = e.off_reorder_scratch = 0;
}

// oneDNN 2.6 has no 1x1-specialised bf16 backward-weights on AMX: its generic
// jit:avx512_core_amx_bf16 kernel reached 190-560 GFLOP/s on STDC's 1x1 layers (batch 4, Intel Xeon
// with AMX, 2 threads), against 1300-1500 for its brgemm matmul on the same products. A 1x1
// stride-1 unpadded convolution's weight gradient is the matmul gw[cout, cin] = gy^T x over the
// P = N*H*W pixels: gy and x are NHWC, i.e. row-major [P, cout] and [P, cin], so gy^T is a strided
// view and gw comes out in OIHW order with no reorder. Measured per layer (ms, bf16, same machine):
// 64->128 @128 5.64 -> 1.70, 256->256 @64 5.13 -> 1.58, 512->512 @32 3.87 -> 1.45. f32 keeps the
// convolution (its jit_1x1 kernel is as fast as the f32 matmul), and so does a layer with a bias
// gradient (only the seg heads' last, tiny layers).
bool pointwise_bwd_weights(ConvPass pass, const ConvParams& p) {
  return pass == ConvPass::BwdWeights && p.input == ConvInput::BF16 && p.kh == 1 && p.kw == 1 && p.stride_h == 1 &&
         p.stride_w == 1 && p.pad_h == 0 && p.pad_w == 0 && p.groups == 1 && !p.bias;
}

// The matmul's operands: src gy^T [cout, P] (strides 1, cout), weights x [P, cin], dst gw [cout, cin].
struct PointwiseDescs {
  memory::desc gy_t, x, gw;
};
PointwiseDescs pointwise_descs(const ConvParams& p) {
  const int64_t pixels = p.n * p.h * p.w;
  return {memory::desc({p.cout, pixels}, dt::bf16, memory::dims{1, p.cout}),
          memory::desc({pixels, p.cin}, dt::bf16, memory::dims{p.cin, 1}),
          memory::desc({p.cout, p.cin}, dt::f32, memory::dims{p.cin, 1})};
}

std::shared_ptr<Entry> build_pointwise_bwd_weights(const ConvParams& p) {
  auto e = std::make_shared<Entry>();
  const PointwiseDescs m = pointwise_descs(p);
  const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(m.gy_t, m.x, m.gw), user_scratchpad(), cpu_engine());
  e->prim = dnnl::matmul(pd);
  e->is_matmul = true;
  e->prim_scratch = pd.scratchpad_desc().get_size();
  e->prim_weights = make_descs(p).weights_user;
  finish_entry(*e, e->prim_weights, false);
  return e;
}

std::shared_ptr<Entry> build(ConvPass pass, const ConvParams& p) {
  if (pointwise_bwd_weights(pass, p)) return build_pointwise_bwd_weights(p);
  const Descs d = make_descs(p);
  auto e = std::make_shared<Entry>();
  const auto fpd = fwd_pd(p, d);
  const auto alg = dnnl::algorithm::convolution_direct;
  if (pass == ConvPass::Fwd) {
    e->prim = dnnl::convolution_forward(fpd);
    e->prim_weights = fpd.weights_desc();
    e->prim_scratch = fpd.scratchpad_desc().get_size();
    finish_entry(*e, d.weights_user, true);
  } else if (pass == ConvPass::BwdData) {
    using B = dnnl::convolution_backward_data;
    B::desc desc(alg, d.src, d.weights_any, d.dst_in, d.strides, d.dilates, d.pad_l, d.pad_r);
    B::primitive_desc pd(desc, user_scratchpad(), cpu_engine(), fpd);
    e->prim = B(pd);
    e->prim_weights = pd.weights_desc();
    e->prim_scratch = pd.scratchpad_desc().get_size();
    finish_entry(*e, d.weights_user, true);
  } else {
    using B = dnnl::convolution_backward_weights;
    auto make = [&]() {
      if (p.bias) {
        B::desc desc(alg, d.src_in, d.diff_weights_any, d.bias, d.dst_in, d.strides, d.dilates, d.pad_l, d.pad_r);
        return B::primitive_desc(desc, user_scratchpad(), cpu_engine(), fpd);
      }
      B::desc desc(alg, d.src_in, d.diff_weights_any, d.dst_in, d.strides, d.dilates, d.pad_l, d.pad_r);
      return B::primitive_desc(desc, user_scratchpad(), cpu_engine(), fpd);
    };
    const B::primitive_desc pd = make();
    e->prim = B(pd);
    e->prim_weights = pd.diff_weights_desc();
    e->prim_scratch = pd.scratchpad_desc().get_size();
    finish_entry(*e, d.weights_user, false);
  }
  return e;
}

using Key = ConvKey;

std::mutex& cache_mutex() {
  static std::mutex m;
  return m;
}
std::map<Key, std::shared_ptr<Entry>>& cache() {
  static std::map<Key, std::shared_ptr<Entry>> c;
  return c;
}

const Entry& entry(ConvPass pass, const ConvParams& p) {
  const Key k = conv_key(pass, p);
  std::lock_guard<std::mutex> lock(cache_mutex());
  auto& c = cache();
  auto it = c.find(k);
  if (it == c.end()) {
    ENGINE_CHECK(!p.tf32, "conv2d: TF32 math is a GPU (tensor-core) mode; the CPU has none");
    ENGINE_CHECK(p.input != ConvInput::BF16 || cpu_has_bf16(),
                 "conv2d: bf16 convolutions on the CPU need AVX512-BF16 or AMX-BF16, which "
                 "this CPU (",
                 cpu_model_name(), ") does not have; train with --precision fp32 here");
    std::shared_ptr<Entry> e;
    try {
      e = build(pass, p);
    } catch (const dnnl::error& err) {
      fail("conv2d: oneDNN could not create a primitive for x [", p.n, ", ", p.h, ", ", p.w, ", ", p.cin, "], w [",
           p.cout, ", ", p.cin / p.groups, ", ", p.kh, ", ", p.kw, "], groups ", p.groups, ": ", err.what());
    }
    it = c.emplace(k, std::move(e)).first;
  }
  return *it->second;  // entries are never removed, so the reference stays valid
}

memory mem(const memory::desc& md, const void* ptr) { return memory(md, cpu_engine(), const_cast<void*>(ptr)); }

using Args = std::unordered_map<int, memory>;

// Adds the scratchpad argument (bytes at ws + off) when the primitive needs one.
void add_scratch(Args& args, size_t bytes, void* ws, size_t off) {
  if (bytes == 0) return;
  args.emplace(DNNL_ARG_SCRATCHPAD, mem(memory::desc({(int64_t)bytes}, dt::u8, tag::x), static_cast<char*>(ws) + off));
}

// OIHW <-> primitive format through e.reorder, or the engine's reorder of a weight gradient.
void reorder_weights(const Entry& e, dnnl::stream& s, const memory& from, const memory& to, void* ws) {
  if (e.own_reorder) {
    s.wait();  // the backward-weights primitive wrote `from`
    weights_from_blocked_cpu(static_cast<const float*>(from.get_data_handle()), e.blocked,
                             static_cast<float*>(to.get_data_handle()));
    return;
  }
  Args args = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
  add_scratch(args, e.reorder_scratch, ws, e.off_reorder_scratch);
  e.reorder.execute(s, args);
}

void run(const char* what, const std::function<void()>& f) {
  try {
    f();
  } catch (const dnnl::error& err) {
    fail("conv2d: oneDNN ", what, " failed: ", err.what());
  }
}

// fp16 staging (p.input == F16): f32 copies of the half inputs and of the half-rounded weights,
// placed after the entry's own workspace. Offsets are from the workspace start; bytes = 0 otherwise.
struct F16Staging {
  size_t x = 0, gy = 0, w = 0, out = 0, bytes = 0;  // out: f32 y / gx, rounded to half after (low_out)
};

// oneDNN 2.6's bf16 backward-weights is wrong for inputs of fewer than 4 channels per group (an
// image input layer): on an Intel Xeon with AMX its only bf16 implementation (jit:avx512_core_amx_bf16)
// returned a weight gradient with relative error 1.55 for YOLOv3-DarkNet53's 3->32 3x3 stride-1
// first layer at 416, and crashed reading before its workspace in the full model.
// Two kinds of layer therefore take neither oneDNN path for their bf16 / fp16 weight gradient but a
// direct kernel that reads x and gy as they are (conv_wgrad_cpu.h):
//  - depthwise layers (one channel per group): oneDNN's bf16 depthwise backward-weights
//    (jit_dw:avx512_core_bf16) is correct but slower than its f32 kernel (STDC's 128-channel
//    stride-2 layer: 4.4-4.8 ms against 2.6 on a 2-core Xeon), which needs x and gy widened first;
//  - thin-input layers (groups 1, fewer than 4 input channels): widening the full-size gy for the
//    f32 kernel cost more than the layer (PP-LiteSeg's 3->32 stride-2 layer at 512: 8.4 ms).
// Any other layer with fewer than 4 input channels per group (grouped, not depthwise) widens the bf16
// x and gy to f32 (staged as for fp16) and runs the f32 primitive: the products of bf16 values are
// exact in f32, so this is the same arithmetic.
bool direct_wgrad(ConvPass pass, const ConvParams& p) {
  return pass == ConvPass::BwdWeights && p.input != ConvInput::F32 &&
         (conv2d_is_depthwise(p) || conv2d_is_thin_input(p));
}
bool bwd_weights_in_f32(ConvPass pass, const ConvParams& p) {
  return pass == ConvPass::BwdWeights && p.input == ConvInput::BF16 && p.cin / p.groups < 4 && !direct_wgrad(pass, p);
}
ConvParams as_f32(ConvParams p) {
  p.input = ConvInput::F32;
  p.low_out = false;
  return p;
}

F16Staging f16_staging(ConvPass pass, const ConvParams& p, size_t base) {
  F16Staging st;
  if (p.input != ConvInput::F16 && !bwd_weights_in_f32(pass, p)) return st;
  size_t off = align_up(base);
  auto take = [&](int64_t elems) {
    const size_t at = off;
    off += align_up((size_t)elems * sizeof(float));
    return at;
  };
  if (pass != ConvPass::BwdData) st.x = take(p.n * p.h * p.w * p.cin);
  if (pass != ConvPass::Fwd) st.gy = take(p.n * p.ho * p.wo * p.cout);
  if (pass != ConvPass::BwdWeights) st.w = take(p.cout * (p.cin / p.groups) * p.kh * p.kw);
  if (p.low_out && pass == ConvPass::Fwd) st.out = take(p.n * p.ho * p.wo * p.cout);
  if (p.low_out && pass == ConvPass::BwdData) st.out = take(p.n * p.h * p.w * p.cin);
  st.bytes = off - base;
  return st;
}

float* staged(void* ws, size_t off) { return reinterpret_cast<float*>(static_cast<char*>(ws) + off); }

void widen_bf16(const void* src, float* dst, int64_t n) {
  const uint16_t* h = static_cast<const uint16_t*>(src);
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) dst[i] = bf16_bits_to_float(h[i]);
}

void widen_half(const void* src, float* dst, int64_t n) {
  const uint16_t* h = static_cast<const uint16_t*>(src);
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) dst[i] = half_bits_to_float(h[i]);
}

void round_to_half(const float* src, float* dst, int64_t n) {
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) dst[i] = half_bits_to_float(float_to_half_bits(src[i]));
}

void narrow_to_half(const float* src, void* dst, int64_t n) {
  uint16_t* h = static_cast<uint16_t*>(dst);
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) h[i] = float_to_half_bits(src[i]);
}

}  // namespace

size_t conv2d_workspace_cpu(ConvPass pass, const ConvParams& p) {
  if (direct_wgrad(pass, p)) return 0;
  const size_t base = entry(pass, bwd_weights_in_f32(pass, p) ? as_f32(p) : p).workspace;
  return base + f16_staging(pass, p, base).bytes;
}

size_t conv2d_cpu_cache_size() {
  std::lock_guard<std::mutex> lock(cache_mutex());
  return cache().size();
}

void conv2d_fwd_cpu(const ConvParams& p, const void* x, const float* w, const float* b, void* y_out, void* ws) {
  ENGINE_CHECK(!p.low_out || p.input != ConvInput::F32, "conv2d: a low-precision output needs a bf16 / f16 input");
  const Entry& e = entry(ConvPass::Fwd, p);
  const Descs d = make_descs(p);
  void* y = y_out;
  const F16Staging st = f16_staging(ConvPass::Fwd, p, e.workspace);
  if (p.input == ConvInput::F16) {
    widen_half(x, staged(ws, st.x), p.n * p.h * p.w * p.cin);
    round_to_half(w, staged(ws, st.w), p.cout * (p.cin / p.groups) * p.kh * p.kw);
    x = staged(ws, st.x);
    w = staged(ws, st.w);
    if (p.low_out) y = staged(ws, st.out);
  }
  run("forward", [&] {
    dnnl::stream& s = cpu_stream();
    memory wm = mem(d.weights_user, w);
    if (e.needs_reorder) {
      memory wp = mem(e.prim_weights, ws);
      reorder_weights(e, s, wm, wp, ws);
      wm = wp;
    }
    Args args = {{DNNL_ARG_SRC, mem(d.src_in, x)}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DST, mem(d.dst, y)}};
    add_scratch(args, e.prim_scratch, ws, e.off_scratch);
    if (p.bias) args.emplace(DNNL_ARG_BIAS, mem(d.bias, b));
    e.prim.execute(s, args);
    s.wait();
  });
  if (p.input == ConvInput::F16 && p.low_out) narrow_to_half(staged(ws, st.out), y_out, p.n * p.ho * p.wo * p.cout);
}

void conv2d_bwd_data_cpu(const ConvParams& p, const void* gy, const float* w, void* gx_out, void* ws) {
  ENGINE_CHECK(!p.low_out || p.input != ConvInput::F32, "conv2d: a low-precision output needs a bf16 / f16 input");
  const Entry& e = entry(ConvPass::BwdData, p);
  const Descs d = make_descs(p);
  void* gx = gx_out;
  const F16Staging st = f16_staging(ConvPass::BwdData, p, e.workspace);
  if (p.input == ConvInput::F16) {
    widen_half(gy, staged(ws, st.gy), p.n * p.ho * p.wo * p.cout);
    round_to_half(w, staged(ws, st.w), p.cout * (p.cin / p.groups) * p.kh * p.kw);
    gy = staged(ws, st.gy);
    w = staged(ws, st.w);
    if (p.low_out) gx = staged(ws, st.out);
  }
  run("backward-data", [&] {
    dnnl::stream& s = cpu_stream();
    memory wm = mem(d.weights_user, w);
    if (e.needs_reorder) {
      memory wp = mem(e.prim_weights, ws);
      reorder_weights(e, s, wm, wp, ws);
      wm = wp;
    }
    Args args = {{DNNL_ARG_DIFF_DST, mem(d.dst_in, gy)}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DIFF_SRC, mem(d.src, gx)}};
    add_scratch(args, e.prim_scratch, ws, e.off_scratch);
    e.prim.execute(s, args);
    s.wait();
  });
  if (p.input == ConvInput::F16 && p.low_out) narrow_to_half(staged(ws, st.out), gx_out, p.n * p.h * p.w * p.cin);
}

void conv2d_bwd_weights_cpu(const ConvParams& p, const void* x, const void* gy, float* gw, float* gb, void* ws) {
  if (direct_wgrad(ConvPass::BwdWeights, p)) {
    const DType dt = p.input == ConvInput::BF16 ? DType::BF16 : DType::F16;
    if (conv2d_is_depthwise(p))
      conv2d_dw_bwd_weights_cpu(dt, p, x, gy, gw, p.bias ? gb : nullptr);
    else
      conv2d_thin_bwd_weights_cpu(dt, p, x, gy, gw, p.bias ? gb : nullptr);
    return;
  }
  const bool in_f32 = bwd_weights_in_f32(ConvPass::BwdWeights, p);  // (see bwd_weights_in_f32)
  const ConvParams q = in_f32 ? as_f32(p) : p;
  const Entry& e = entry(ConvPass::BwdWeights, q);
  const Descs d = make_descs(q);
  if (p.input == ConvInput::F16 || in_f32) {
    const F16Staging st = f16_staging(ConvPass::BwdWeights, p, e.workspace);
    auto widen = in_f32 ? widen_bf16 : widen_half;
    widen(x, staged(ws, st.x), p.n * p.h * p.w * p.cin);
    widen(gy, staged(ws, st.gy), p.n * p.ho * p.wo * p.cout);
    x = staged(ws, st.x);
    gy = staged(ws, st.gy);
  }
  run("backward-weights", [&] {
    dnnl::stream& s = cpu_stream();
    if (e.is_matmul) {
      const PointwiseDescs m = pointwise_descs(p);
      Args args = {{DNNL_ARG_SRC, mem(m.gy_t, gy)}, {DNNL_ARG_WEIGHTS, mem(m.x, x)}, {DNNL_ARG_DST, mem(m.gw, gw)}};
      add_scratch(args, e.prim_scratch, ws, e.off_scratch);
      e.prim.execute(s, args);
      s.wait();
      return;
    }
    memory wu = mem(d.weights_user, gw);
    memory wm = e.needs_reorder ? mem(e.prim_weights, ws) : wu;
    Args args = {{DNNL_ARG_SRC, mem(d.src_in, x)}, {DNNL_ARG_DIFF_DST, mem(d.dst_in, gy)}, {DNNL_ARG_DIFF_WEIGHTS, wm}};
    add_scratch(args, e.prim_scratch, ws, e.off_scratch);
    if (p.bias) args.emplace(DNNL_ARG_DIFF_BIAS, mem(d.bias, gb));
    e.prim.execute(s, args);
    if (e.needs_reorder) reorder_weights(e, s, wm, wu, ws);
    s.wait();
  });
}

}  // namespace engine::kernels
