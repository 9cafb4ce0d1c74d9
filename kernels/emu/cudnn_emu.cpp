// cudnn_emu.cpp -- the emulated build's cuDNN: the subset of cuDNN 9's legacy convolution API that
// kernels/cudnn/conv_cudnn.cpp calls, defined extern "C" against the real <cudnn.h> prototypes
// (libcudnn is not linked), so the production build's cuDNN host code (descriptors, the algorithm
// search and its filters, workspaces, the layout transforms, the conv op's OHWI weights, low-type
// outputs and bias handling) runs in CI on the emulated device.
//
// What it computes: every convolution through the CPU kernel (kernels/cpu/conv_cpu.h, oneDNN, f32)
// on f32 copies of the operands, gathered from the descriptors' layouts and types; the result is
// written in the destination descriptor's layout and type (y = alpha * result + beta * y, with y
// not read when beta is 0), rounded to nearest even. So a bf16 / fp16 convolution has exact products
// and f32 accumulation with its output rounded to the low type, as on tensor cores. f32 data under a
// math type other than CUDNN_FMA_MATH rounds the inputs to TF32 (10-bit mantissa, nearest, ties away
// from zero, as cvt.rna.tf32.f32) first, as if cuDNN always took a TF32 algorithm there (tensor cores
// fed f32 directly may truncate instead).
//
// What it models of cuDNN's behaviour, so the engine's choices are exercised:
//  - descriptors are validated (positive sizes, matching types and channel counts, the output size
//    of cudnnGetConvolution2dForwardOutputDim); violations return CUDNN_STATUS_BAD_PARAM;
//  - a fixed algorithm table per pass (kAlgos below): algorithms that need a workspace, ones that
//    are not supported for NHWC or for some shapes, and the backward passes' non-deterministic
//    algorithms (CUDNN_CONVOLUTION_BWD_DATA_ALGO_0, BWD_FILTER_ALGO_0 and _3), listed as the fastest;
//    a non-deterministic algorithm flips the last bit of a varying eighth of its outputs on every
//    call, so a run that used one is not repeatable;
//  - Get*_v7 lists the table in its (synthetic) speed order, FindEx "times" it: the reported times
//    are a fixed function of the problem, so choices repeat across processes;
//  - a workspace smaller than the algorithm needs is refused (a null pointer counts as 0 bytes), and
//    the whole workspace passed is written, so a buffer shorter than the size claimed trips the
//    emulator's guards (or ASan); FindEx leaves NaNs in its output (cuDNN: arbitrary values);
//  - calls run in stream order on the handle's stream (cuemu::submit): deferred, or recorded into a
//    capture and run at every replay; FindEx synchronises the stream, which fails and invalidates a capture, as
//    cuDNN's search does on a GPU.
// Not modelled: cuDNN's speed and its algorithms' own rounding (every algorithm computes the same
// f32 sums here), and shapes a real cuDNN would refuse for lack of an algorithm.
// Tested by test_conv (the op harness, CPU against the emulated device) and test_conv_gpu, which
// runs on the emulated device as on a real one.
#include <cudnn.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <new>
#include <vector>

#include "kernels/cpu/conv_cpu.h"
#include "kernels/emu/cuemu.h"
#include "kernels/shared_math.h"

struct cudnnContext {
  cudaStream_t stream = nullptr;
};
struct cudnnTensorStruct {
  bool set = false;
  cudnnDataType_t type = CUDNN_DATA_FLOAT;
  int dims[4] = {0, 0, 0, 0};         // N, C, H, W
  int64_t strides[4] = {0, 0, 0, 0};  // in elements, same order
};
struct cudnnFilterStruct {
  bool set = false;
  cudnnDataType_t type = CUDNN_DATA_FLOAT;
  cudnnTensorFormat_t format = CUDNN_TENSOR_NCHW;
  int k = 0, c = 0, h = 0, w = 0;
};
struct cudnnConvolutionStruct {
  bool set = false;
  int pad_h = 0, pad_w = 0, stride_h = 1, stride_w = 1, dil_h = 1, dil_w = 1;
  cudnnConvolutionMode_t mode = CUDNN_CROSS_CORRELATION;
  cudnnDataType_t compute = CUDNN_DATA_FLOAT;
  int groups = 1;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
};

namespace {

using engine::kernels::ConvParams;
using engine::kernels::ConvPass;

// ------------------------------------------------------------------ element access
bool supported_type(cudnnDataType_t t) {
  return t == CUDNN_DATA_FLOAT || t == CUDNN_DATA_HALF || t == CUDNN_DATA_BFLOAT16;
}
// Calls visit(i, o) for the tensor's elements in [N, H, W, C] order (the CPU kernel's activation
// layout): i counts them, o is the element's offset.
template <class Visit>
void for_each_nhwc(const cudnnTensorStruct& d, const Visit& visit) {
  const int N = d.dims[0], C = d.dims[1], H = d.dims[2], W = d.dims[3];
  size_t i = 0;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t w = 0; w < W; ++w) {
        const int64_t base = n * d.strides[0] + h * d.strides[2] + w * d.strides[3];
        for (int64_t c = 0; c < C; ++c) visit(i++, base + c * d.strides[1]);
      }
}
// The same for a filter's elements in OIHW order (the CPU kernel's weight layout) in the
// descriptor's memory layout, KRSC or KCRS; CUDNN_CONVOLUTION mode flips the filter (reverses its
// kH*kW positions).
template <class Visit>
void for_each_oihw(const cudnnFilterStruct& f, bool flip, const Visit& visit) {
  const int64_t K = f.k, C = f.c, HW = (int64_t)f.h * f.w;
  const bool krsc = f.format == CUDNN_TENSOR_NHWC;
  const int64_t sk = C * HW, sc = krsc ? 1 : HW, sm = krsc ? C : 1;  // strides of k, c, and position m
  const int64_t step = flip ? -sm : sm;
  size_t i = 0;
  for (int64_t k = 0; k < K; ++k)
    for (int64_t c = 0; c < C; ++c) {
      const int64_t first = k * sk + c * sc + (flip ? (HW - 1) * sm : 0);
      for (int64_t rs = 0; rs < HW; ++rs) visit(i++, first + rs * step);
    }
}

// Calls f.template operator()<D>() with D the engine storage type of t, whose Storage<D>
// (kernels/shared_math.h) converts as the kernels do, so the loops below switch on the type once.
template <class F>
void with_storage_of(cudnnDataType_t t, const F& f) {
  using engine::DType;
  if (t == CUDNN_DATA_FLOAT) return f.template operator()<DType::F32>();
  if (t == CUDNN_DATA_HALF) return f.template operator()<DType::F16>();
  return f.template operator()<DType::BF16>();
}
// A stored value with its lowest bit toggled (a non-deterministic algorithm's noise).
float flip_low_bit(float v) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  u ^= 1u;
  std::memcpy(&v, &u, 4);
  return v;
}
uint16_t flip_low_bit(uint16_t v) { return (uint16_t)(v ^ 1u); }

// The elements for_each visits in p, in its order, as f32 (rounded to TF32 when tf32).
template <class ForEach>
std::vector<float> gather_each(cudnnDataType_t t, const void* p, size_t count, bool tf32, const ForEach& for_each) {
  std::vector<float> out(count);
  with_storage_of(t, [&]<engine::DType D>() {
    using S = engine::kernels::Storage<D>;
    const auto* src = static_cast<const typename S::T*>(p);
    for_each([&](size_t i, int64_t o) {
      const float v = S::load(src[o]);
      out[i] = tf32 ? cuemu::round_to_tf32(v) : v;
    });
  });
  return out;
}
size_t element_count(const cudnnTensorStruct& d) { return (size_t)d.dims[0] * d.dims[1] * d.dims[2] * d.dims[3]; }
size_t element_count(const cudnnFilterStruct& f) { return (size_t)f.k * f.c * f.h * f.w; }
std::vector<float> gather(const cudnnTensorStruct& d, const void* p, bool tf32) {
  return gather_each(d.type, p, element_count(d), tf32, [&](const auto& visit) { for_each_nhwc(d, visit); });
}
std::vector<float> gather_filter(const cudnnFilterStruct& f, const void* p, bool flip, bool tf32) {
  return gather_each(f.type, p, element_count(f), tf32, [&](const auto& visit) { for_each_oihw(f, flip, visit); });
}

// Which outputs a non-deterministic algorithm perturbs: a different eighth on every call.
std::atomic<uint64_t> g_nondet_calls{0};
struct Noise {
  bool on = false;
  uint64_t seed = 0;
  bool flip(uint64_t i) const {
    if (!on) return false;
    uint64_t z = (i + 1) * 0x9e3779b97f4a7c15ull ^ seed;
    z ^= z >> 31;
    z *= 0xbf58476d1ce4e5b9ull;
    return ((z >> 29) & 7) == 0;
  }
};
// For the elements for_each visits, dst = alpha * v[i] + beta * dst in dst's type (dst not read when
// beta is 0); a flipped element (noise) has the lowest bit of its stored value toggled.
template <class ForEach>
void scatter_each(cudnnDataType_t t, void* p, const std::vector<float>& v, float alpha, float beta, const Noise& noise,
                  const ForEach& for_each) {
  with_storage_of(t, [&]<engine::DType D>() {
    using S = engine::kernels::Storage<D>;
    auto* dst = static_cast<typename S::T*>(p);
    for_each([&](size_t i, int64_t o) {
      const float r = beta == 0.f ? alpha * v[i] : alpha * v[i] + beta * S::load(dst[o]);
      dst[o] = noise.flip(i) ? flip_low_bit(S::store(r)) : S::store(r);
    });
  });
}
// v in [N, H, W, C] order.
void scatter(const cudnnTensorStruct& d, void* p, const std::vector<float>& v, float alpha, float beta,
             const Noise& noise) {
  scatter_each(d.type, p, v, alpha, beta, noise, [&](const auto& visit) { for_each_nhwc(d, visit); });
}
// v in OIHW order.
void scatter_filter(const cudnnFilterStruct& f, void* p, const std::vector<float>& v, bool flip, float alpha,
                    float beta, const Noise& noise) {
  scatter_each(f.type, p, v, alpha, beta, noise, [&](const auto& visit) { for_each_oihw(f, flip, visit); });
}

// ------------------------------------------------------------------ problems and algorithms
// One convolution as its three descriptors describe it.
struct Problem {
  cudnnTensorStruct x, y;
  cudnnFilterStruct w;
  cudnnConvolutionStruct conv;
  ConvParams params() const {
    ConvParams p;
    p.n = x.dims[0], p.cin = x.dims[1], p.h = x.dims[2], p.w = x.dims[3];
    p.cout = w.k, p.kh = w.h, p.kw = w.w;
    p.ho = y.dims[2], p.wo = y.dims[3];
    p.stride_h = conv.stride_h, p.stride_w = conv.stride_w;
    p.pad_h = conv.pad_h, p.pad_w = conv.pad_w;
    p.dil_h = conv.dil_h, p.dil_w = conv.dil_w;
    p.groups = conv.groups;
    return p;
  }
  bool nhwc() const { return x.strides[1] == 1 && w.format == CUDNN_TENSOR_NHWC; }
  bool tf32() const { return x.type == CUDNN_DATA_FLOAT && conv.math != CUDNN_FMA_MATH; }
  double flops() const { return 2.0 * y.dims[0] * y.dims[1] * y.dims[2] * y.dims[3] * w.c * w.h * w.w; }
};

bool output_dims(const cudnnConvolutionStruct& c, const cudnnTensorStruct& x, const cudnnFilterStruct& w, int* out) {
  if (!c.set || !x.set || !w.set) return false;
  if (x.type != w.type || x.dims[1] != w.c * c.groups || w.k % c.groups != 0) return false;
  const int eh = (w.h - 1) * c.dil_h + 1, ew = (w.w - 1) * c.dil_w + 1;
  const int ho = (x.dims[2] + 2 * c.pad_h - eh) / c.stride_h + 1, wo = (x.dims[3] + 2 * c.pad_w - ew) / c.stride_w + 1;
  if (x.dims[2] + 2 * c.pad_h < eh || x.dims[3] + 2 * c.pad_w < ew) return false;
  out[0] = x.dims[0], out[1] = w.k, out[2] = ho, out[3] = wo;
  return true;
}
cudnnStatus_t check(const Problem& pr) {
  int d[4];
  if (!output_dims(pr.conv, pr.x, pr.w, d) || !pr.y.set || pr.y.type != pr.x.type) return CUDNN_STATUS_BAD_PARAM;
  for (int i = 0; i < 4; ++i)
    if (pr.y.dims[i] != d[i]) return CUDNN_STATUS_BAD_PARAM;
  // FLOAT compute for every data type, or HALF compute for HALF data (cuDNN's TRUE_HALF_CONFIG).
  if (pr.conv.compute != CUDNN_DATA_FLOAT && !(pr.conv.compute == CUDNN_DATA_HALF && pr.x.type == CUDNN_DATA_HALF))
    return CUDNN_STATUS_NOT_SUPPORTED;
  return CUDNN_STATUS_SUCCESS;
}

// One algorithm of the table: its number, whether it is deterministic, its speed relative to the
// problem's work (smaller is faster), whether it runs on NHWC data, whether it needs a 3x3
// stride-1 ungrouped problem, and its workspace (bytes per multiply-add of one output position).
struct Algo {
  int algo;
  bool deterministic;
  float speed;
  bool nhwc;
  bool only_3x3_s1;
  size_t ws_per_tap;  // workspace = ws_per_tap * (Cin/groups * kH * kW) + (ws_per_tap ? 256 : 0)
};
// The same algorithm numbers as cuDNN (cudnn_ops.h); the choices the engine must make among them:
// forward, the fastest needs a workspace; backward, the fastest are non-deterministic.
constexpr Algo kFwd[] = {
    {CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM, true, 1.0f, true, false, 16},
    {CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, true, 2.0f, true, false, 0},
    {CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED, true, 0.6f, false, true, 64},
    {CUDNN_CONVOLUTION_FWD_ALGO_FFT, true, 0.8f, false, false, 256},
};
constexpr Algo kBwdData[] = {
    {CUDNN_CONVOLUTION_BWD_DATA_ALGO_0, false, 0.5f, true, false, 0},
    {CUDNN_CONVOLUTION_BWD_DATA_ALGO_1, true, 1.0f, true, false, 8},
    {CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED, true, 0.7f, false, true, 64},
    {CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING, true, 0.9f, false, false, 256},
};
constexpr Algo kBwdFilter[] = {
    {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0, false, 0.5f, true, false, 0},
    {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3, false, 0.7f, true, false, 4},
    {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1, true, 1.0f, true, false, 8},
    {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT, true, 0.9f, false, false, 256},
};
constexpr int kTableSize = 4;
const Algo* table(ConvPass pass) {
  return pass == ConvPass::Fwd ? kFwd : pass == ConvPass::BwdData ? kBwdData : kBwdFilter;
}
const Algo* find_algo(ConvPass pass, int algo) {
  for (int i = 0; i < kTableSize; ++i)
    if (table(pass)[i].algo == algo) return &table(pass)[i];
  return nullptr;
}
bool algo_supports(const Algo& a, const Problem& pr) {
  if (pr.nhwc() && !a.nhwc) return false;
  if (a.only_3x3_s1 && !(pr.w.h == 3 && pr.w.w == 3 && pr.conv.stride_h == 1 && pr.conv.stride_w == 1 &&
                         pr.conv.dil_h == 1 && pr.conv.dil_w == 1 && pr.conv.groups == 1))
    return false;
  return true;
}
size_t algo_workspace(const Algo& a, const Problem& pr) {
  return a.ws_per_tap ? a.ws_per_tap * (size_t)pr.w.c * pr.w.h * pr.w.w + 256 : 0;
}
// The math types an algorithm is listed with: the descriptor's, and under DEFAULT math with f32
// data both the tensor-op (TF32) and the FMA variant, as cuDNN lists them.
std::vector<cudnnMathType_t> listed_math(const Problem& pr) {
  if (pr.x.type != CUDNN_DATA_FLOAT) return {pr.conv.math == CUDNN_FMA_MATH ? CUDNN_FMA_MATH : CUDNN_TENSOR_OP_MATH};
  if (pr.conv.math == CUDNN_FMA_MATH) return {CUDNN_FMA_MATH};
  return {CUDNN_TENSOR_OP_MATH, CUDNN_FMA_MATH};
}

// The table for pr as Get*_v7 / FindEx report it, fastest first, unsupported ones last.
template <class Perf, class AlgoT>
std::vector<Perf> list(ConvPass pass, const Problem& pr, size_t ws_limit, bool limit_ws) {
  std::vector<Perf> ok, refused;
  const double base_ms = pr.flops() / 1e9;  // a nominal 1 TFLOP/s
  for (const cudnnMathType_t m : listed_math(pr))
    for (int i = 0; i < kTableSize; ++i) {
      const Algo& a = table(pass)[i];
      Perf r{};
      r.algo = (AlgoT)a.algo;
      r.determinism = a.deterministic ? CUDNN_DETERMINISTIC : CUDNN_NON_DETERMINISTIC;
      r.mathType = m;
      r.memory = algo_workspace(a, pr);
      // tensor-op variants twice as fast as FMA ones
      r.time = float(base_ms * a.speed * (m == CUDNN_FMA_MATH && pr.x.type == CUDNN_DATA_FLOAT ? 2.0 : 1.0) + 1e-3);
      r.status = CUDNN_STATUS_SUCCESS;
      if (!algo_supports(a, pr))
        r.status = CUDNN_STATUS_NOT_SUPPORTED, r.time = -1.f, r.memory = 0;
      else if (limit_ws && r.memory > ws_limit)
        r.status = CUDNN_STATUS_BAD_PARAM_SIZE_INSUFFICIENT, r.time = -1.f;
      (r.status == CUDNN_STATUS_SUCCESS ? ok : refused).push_back(r);
    }
  std::stable_sort(ok.begin(), ok.end(), [](const Perf& a, const Perf& b) { return a.time < b.time; });
  ok.insert(ok.end(), refused.begin(), refused.end());
  return ok;
}
template <class Perf>
void copy_out(const std::vector<Perf>& rows, int requested, int* returned, Perf* out) {
  const int n = std::min<int>(requested, (int)rows.size());
  for (int i = 0; i < n; ++i) out[i] = rows[(size_t)i];
  *returned = n;
}

// Runs one pass of pr with algorithm `algo` in stream order on the handle's stream.
struct Buffers {
  const void* a;  // Fwd: x, BwdData: w, BwdWeights: x
  const void* b;  // Fwd: w, BwdData: dy, BwdWeights: dy
  void* out;      // Fwd: y, BwdData: dx, BwdWeights: dw
};
void compute(ConvPass pass, const Problem& pr, const Buffers& buf, float alpha, float beta, const Noise& noise) {
  const ConvParams p = pr.params();
  const bool tf32 = pr.tf32(), flip = pr.conv.mode == CUDNN_CONVOLUTION;
  const size_t ws_bytes = engine::kernels::conv2d_workspace_cpu(pass, p);
  std::unique_ptr<unsigned char[], void (*)(unsigned char*)> ws(
      ws_bytes ? static_cast<unsigned char*>(::operator new[](ws_bytes, std::align_val_t(64))) : nullptr,
      [](unsigned char* q) { ::operator delete[](q, std::align_val_t(64)); });
  if (pass == ConvPass::Fwd) {
    const std::vector<float> x = gather(pr.x, buf.a, tf32), w = gather_filter(pr.w, buf.b, flip, tf32);
    std::vector<float> y((size_t)p.n * p.ho * p.wo * p.cout);
    engine::kernels::conv2d_fwd_cpu(p, x.data(), w.data(), nullptr, y.data(), ws.get());
    scatter(pr.y, buf.out, y, alpha, beta, noise);
  } else if (pass == ConvPass::BwdData) {
    const std::vector<float> w = gather_filter(pr.w, buf.a, flip, tf32), dy = gather(pr.y, buf.b, tf32);
    std::vector<float> dx((size_t)p.n * p.h * p.w * p.cin);
    engine::kernels::conv2d_bwd_data_cpu(p, dy.data(), w.data(), dx.data(), ws.get());
    scatter(pr.x, buf.out, dx, alpha, beta, noise);
  } else {
    const std::vector<float> x = gather(pr.x, buf.a, tf32), dy = gather(pr.y, buf.b, tf32);
    std::vector<float> dw((size_t)p.cout * (p.cin / p.groups) * p.kh * p.kw);
    engine::kernels::conv2d_bwd_weights_cpu(p, x.data(), dy.data(), dw.data(), nullptr, ws.get());
    scatter_filter(pr.w, buf.out, dw, flip, alpha, beta, noise);
  }
}

cudnnStatus_t run(cudnnHandle_t h, ConvPass pass, const Problem& pr, int algo, const Buffers& buf, void* workspace,
                  size_t workspace_bytes, const void* alpha, const void* beta) {
  if (!h || !alpha || !beta || !buf.a || !buf.b || !buf.out) return CUDNN_STATUS_BAD_PARAM;
  if (const cudnnStatus_t st = check(pr); st != CUDNN_STATUS_SUCCESS) return st;
  const Algo* a = find_algo(pass, algo);
  if (!a || !algo_supports(*a, pr)) return CUDNN_STATUS_NOT_SUPPORTED;
  if (!workspace) workspace_bytes = 0;  // cuDNN: "a nil pointer is considered a workSpace of 0 bytes"
  if (workspace_bytes < algo_workspace(*a, pr)) return CUDNN_STATUS_BAD_PARAM;
  const float al = *static_cast<const float*>(alpha), be = *static_cast<const float*>(beta);
  const Noise noise{!a->deterministic, 0};
  cuemu::submit(
      h->stream,
      [pass, pr, buf, workspace, workspace_bytes, al, be, noise] {
        if (workspace_bytes) std::memset(workspace, 0xa5, workspace_bytes);  // the whole claimed workspace is used
        Noise n = noise;
        if (n.on) n.seed = g_nondet_calls.fetch_add(1) * 0x632be59bd9b4e019ull + 1;
        compute(pass, pr, buf, al, be, n);
      },
      true,
      pass == ConvPass::Fwd       ? "cudnnConvolutionForward"
      : pass == ConvPass::BwdData ? "cudnnConvolutionBackwardData"
                                  : "cudnnConvolutionBackwardFilter");
  return CUDNN_STATUS_SUCCESS;
}

// FindEx: synchronises the stream (refused during a capture, which it invalidates), overwrites the
// output (as cuDNN's search does) and reports the table.
template <class Perf, class AlgoT>
cudnnStatus_t find(cudnnHandle_t h, ConvPass pass, const Problem& pr, const Buffers& buf, int requested, int* returned,
                   Perf* out, void* workspace, size_t workspace_bytes) {
  if (!h || !returned || !out || requested < 1 || !buf.a || !buf.b || !buf.out) return CUDNN_STATUS_BAD_PARAM;
  if (const cudnnStatus_t st = check(pr); st != CUDNN_STATUS_SUCCESS) return st;
  if (cudaStreamSynchronize(h->stream) != cudaSuccess) return CUDNN_STATUS_EXECUTION_FAILED_CUDART;
  if (!workspace) workspace_bytes = 0;
  const std::vector<Perf> rows = list<Perf, AlgoT>(pass, pr, workspace_bytes, true);
  cuemu::DeviceAccess open("a cuDNN FindEx search");  // the search's writes below are device work
  if (workspace_bytes) std::memset(workspace, 0xa5, workspace_bytes);
  // cuDNN documents the output as overwritten with arbitrary values: NaNs here, so a caller that kept
  // the search's output instead of running the convolution fails.
  if (pass == ConvPass::BwdWeights)
    scatter_filter(pr.w, buf.out, std::vector<float>((size_t)pr.w.k * pr.w.c * pr.w.h * pr.w.w, NAN), false, 1.f, 0.f,
                   Noise{});
  else {
    const cudnnTensorStruct& d = pass == ConvPass::Fwd ? pr.y : pr.x;
    scatter(d, buf.out, std::vector<float>((size_t)d.dims[0] * d.dims[1] * d.dims[2] * d.dims[3], NAN), 1.f, 0.f,
            Noise{});
  }
  copy_out(rows, requested, returned, out);
  return CUDNN_STATUS_SUCCESS;
}
template <class Perf, class AlgoT>
cudnnStatus_t get_v7(cudnnHandle_t h, ConvPass pass, const Problem& pr, int requested, int* returned, Perf* out) {
  if (!h || !returned || !out || requested < 1) return CUDNN_STATUS_BAD_PARAM;
  if (const cudnnStatus_t st = check(pr); st != CUDNN_STATUS_SUCCESS) return st;
  copy_out(list<Perf, AlgoT>(pass, pr, 0, false), requested, returned, out);
  return CUDNN_STATUS_SUCCESS;
}
Problem problem(cudnnTensorDescriptor_t x, cudnnFilterDescriptor_t w, cudnnConvolutionDescriptor_t c,
                cudnnTensorDescriptor_t y) {
  Problem pr;
  if (x) pr.x = *x;
  if (w) pr.w = *w;
  if (c) pr.conv = *c;
  if (y) pr.y = *y;
  return pr;
}
constexpr int kMaxListed = 2 * kTableSize;  // every algorithm in two math variants

}  // namespace

extern "C" {

const char* CUDNNWINAPI cudnnGetErrorString(cudnnStatus_t status) {
  switch (status) {
    case CUDNN_STATUS_SUCCESS:
      return "CUDNN_STATUS_SUCCESS";
    case CUDNN_STATUS_BAD_PARAM:
      return "CUDNN_STATUS_BAD_PARAM";
    case CUDNN_STATUS_BAD_PARAM_SIZE_INSUFFICIENT:
      return "CUDNN_STATUS_BAD_PARAM_SIZE_INSUFFICIENT";
    case CUDNN_STATUS_NOT_SUPPORTED:
      return "CUDNN_STATUS_NOT_SUPPORTED";
    case CUDNN_STATUS_EXECUTION_FAILED_CUDART:
      return "CUDNN_STATUS_EXECUTION_FAILED_CUDART";
    default:
      return "CUDNN_STATUS (emulated cuDNN: unknown status)";
  }
}

cudnnStatus_t CUDNNWINAPI cudnnCreate(cudnnHandle_t* handle) {
  if (!handle) return CUDNN_STATUS_BAD_PARAM;
  *handle = new cudnnContext;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t CUDNNWINAPI cudnnDestroy(cudnnHandle_t handle) {
  delete handle;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t CUDNNWINAPI cudnnSetStream(cudnnHandle_t handle, cudaStream_t stream) {
  if (!handle) return CUDNN_STATUS_BAD_PARAM;
  handle->stream = stream;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t CUDNNWINAPI cudnnGetStream(cudnnHandle_t handle, cudaStream_t* stream) {
  if (!handle || !stream) return CUDNN_STATUS_BAD_PARAM;
  *stream = handle->stream;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t CUDNNWINAPI cudnnCreateTensorDescriptor(cudnnTensorDescriptor_t* d) {
  if (!d) return CUDNN_STATUS_BAD_PARAM;
  *d = new cudnnTensorStruct;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t CUDNNWINAPI cudnnDestroyTensorDescriptor(cudnnTensorDescriptor_t d) {
  delete d;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t CUDNNWINAPI cudnnSetTensor4dDescriptor(cudnnTensorDescriptor_t d, cudnnTensorFormat_t format,
                                                     cudnnDataType_t type, int n, int c, int h, int w) {
  if (!d || n <= 0 || c <= 0 || h <= 0 || w <= 0) return CUDNN_STATUS_BAD_PARAM;
  if (!supported_type(type) || (format != CUDNN_TENSOR_NCHW && format != CUDNN_TENSOR_NHWC))
    return CUDNN_STATUS_NOT_SUPPORTED;
  d->set = true;
  d->type = type;
  d->dims[0] = n, d->dims[1] = c, d->dims[2] = h, d->dims[3] = w;
  if (format == CUDNN_TENSOR_NCHW) {
    d->strides[0] = int64_t(c) * h * w, d->strides[1] = int64_t(h) * w, d->strides[2] = w, d->strides[3] = 1;
  } else {
    d->strides[0] = int64_t(h) * w * c, d->strides[1] = 1, d->strides[2] = int64_t(w) * c, d->strides[3] = c;
  }
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t CUDNNWINAPI cudnnCreateFilterDescriptor(cudnnFilterDescriptor_t* d) {
  if (!d) return CUDNN_STATUS_BAD_PARAM;
  *d = new cudnnFilterStruct;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t CUDNNWINAPI cudnnDestroyFilterDescriptor(cudnnFilterDescriptor_t d) {
  delete d;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t CUDNNWINAPI cudnnSetFilter4dDescriptor(cudnnFilterDescriptor_t d, cudnnDataType_t type,
                                                     cudnnTensorFormat_t format, int k, int c, int h, int w) {
  if (!d || k <= 0 || c <= 0 || h <= 0 || w <= 0) return CUDNN_STATUS_BAD_PARAM;
  if (!supported_type(type) || (format != CUDNN_TENSOR_NCHW && format != CUDNN_TENSOR_NHWC))
    return CUDNN_STATUS_NOT_SUPPORTED;
  *d = cudnnFilterStruct{true, type, format, k, c, h, w};
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t CUDNNWINAPI cudnnCreateConvolutionDescriptor(cudnnConvolutionDescriptor_t* d) {
  if (!d) return CUDNN_STATUS_BAD_PARAM;
  *d = new cudnnConvolutionStruct;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t CUDNNWINAPI cudnnDestroyConvolutionDescriptor(cudnnConvolutionDescriptor_t d) {
  delete d;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t CUDNNWINAPI cudnnSetConvolution2dDescriptor(cudnnConvolutionDescriptor_t d, int pad_h, int pad_w, int u,
                                                          int v, int dilation_h, int dilation_w,
                                                          cudnnConvolutionMode_t mode, cudnnDataType_t compute) {
  if (!d || pad_h < 0 || pad_w < 0 || u <= 0 || v <= 0 || dilation_h <= 0 || dilation_w <= 0 ||
      (mode != CUDNN_CONVOLUTION && mode != CUDNN_CROSS_CORRELATION))
    return CUDNN_STATUS_BAD_PARAM;
  if (!supported_type(compute)) return CUDNN_STATUS_NOT_SUPPORTED;
  d->set = true;
  d->pad_h = pad_h, d->pad_w = pad_w, d->stride_h = u, d->stride_w = v, d->dil_h = dilation_h, d->dil_w = dilation_w;
  d->mode = mode;
  d->compute = compute;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t CUDNNWINAPI cudnnSetConvolutionGroupCount(cudnnConvolutionDescriptor_t d, int groups) {
  if (!d || groups <= 0) return CUDNN_STATUS_BAD_PARAM;
  d->groups = groups;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t CUDNNWINAPI cudnnSetConvolutionMathType(cudnnConvolutionDescriptor_t d, cudnnMathType_t math) {
  if (!d || (math != CUDNN_DEFAULT_MATH && math != CUDNN_TENSOR_OP_MATH &&
             math != CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION && math != CUDNN_FMA_MATH))
    return CUDNN_STATUS_BAD_PARAM;
  d->math = math;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t CUDNNWINAPI cudnnGetConvolution2dForwardOutputDim(const cudnnConvolutionDescriptor_t c,
                                                                const cudnnTensorDescriptor_t x,
                                                                const cudnnFilterDescriptor_t w, int* n, int* k, int* h,
                                                                int* wo) {
  int d[4];
  if (!c || !x || !w || !n || !k || !h || !wo || !output_dims(*c, *x, *w, d)) return CUDNN_STATUS_BAD_PARAM;
  *n = d[0], *k = d[1], *h = d[2], *wo = d[3];
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t CUDNNWINAPI cudnnTransformTensor(cudnnHandle_t h, const void* alpha, const cudnnTensorDescriptor_t xd,
                                               const void* x, const void* beta, const cudnnTensorDescriptor_t yd,
                                               void* y) {
  if (!h || !alpha || !beta || !xd || !yd || !x || !y || !xd->set || !yd->set) return CUDNN_STATUS_BAD_PARAM;
  for (int i = 0; i < 4; ++i)
    if (xd->dims[i] != yd->dims[i]) return CUDNN_STATUS_BAD_PARAM;
  const float al = *static_cast<const float*>(alpha), be = *static_cast<const float*>(beta);
  cuemu::submit(
      h->stream, [xs = *xd, ys = *yd, x, y, al, be] { scatter(ys, y, gather(xs, x, false), al, be, {}); }, true,
      "cudnnTransformTensor");
  return CUDNN_STATUS_SUCCESS;
}

// ---------------------------------------------------------------- forward
cudnnStatus_t CUDNNWINAPI cudnnGetConvolutionForwardAlgorithmMaxCount(cudnnHandle_t h, int* count) {
  if (!h || !count) return CUDNN_STATUS_BAD_PARAM;
  *count = kMaxListed;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t CUDNNWINAPI cudnnGetConvolutionForwardAlgorithm_v7(cudnnHandle_t h, const cudnnTensorDescriptor_t x,
                                                                 const cudnnFilterDescriptor_t w,
                                                                 const cudnnConvolutionDescriptor_t c,
                                                                 const cudnnTensorDescriptor_t y, const int requested,
                                                                 int* returned, cudnnConvolutionFwdAlgoPerf_t* out) {
  return get_v7<cudnnConvolutionFwdAlgoPerf_t, cudnnConvolutionFwdAlgo_t>(h, ConvPass::Fwd, problem(x, w, c, y),
                                                                          requested, returned, out);
}
cudnnStatus_t CUDNNWINAPI cudnnFindConvolutionForwardAlgorithmEx(
    cudnnHandle_t h, const cudnnTensorDescriptor_t xd, const void* x, const cudnnFilterDescriptor_t wd, const void* w,
    const cudnnConvolutionDescriptor_t c, const cudnnTensorDescriptor_t yd, void* y, const int requested, int* returned,
    cudnnConvolutionFwdAlgoPerf_t* out, void* ws, size_t ws_bytes) {
  return find<cudnnConvolutionFwdAlgoPerf_t, cudnnConvolutionFwdAlgo_t>(
      h, ConvPass::Fwd, problem(xd, wd, c, yd), {x, w, y}, requested, returned, out, ws, ws_bytes);
}
cudnnStatus_t CUDNNWINAPI cudnnConvolutionForward(cudnnHandle_t h, const void* alpha, const cudnnTensorDescriptor_t xd,
                                                  const void* x, const cudnnFilterDescriptor_t wd, const void* w,
                                                  const cudnnConvolutionDescriptor_t c, cudnnConvolutionFwdAlgo_t algo,
                                                  void* ws, size_t ws_bytes, const void* beta,
                                                  const cudnnTensorDescriptor_t yd, void* y) {
  return run(h, ConvPass::Fwd, problem(xd, wd, c, yd), algo, {x, w, y}, ws, ws_bytes, alpha, beta);
}

// ---------------------------------------------------------------- backward data
cudnnStatus_t CUDNNWINAPI cudnnGetConvolutionBackwardDataAlgorithmMaxCount(cudnnHandle_t h, int* count) {
  if (!h || !count) return CUDNN_STATUS_BAD_PARAM;
  *count = kMaxListed;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t CUDNNWINAPI cudnnGetConvolutionBackwardDataAlgorithm_v7(cudnnHandle_t h, const cudnnFilterDescriptor_t w,
                                                                      const cudnnTensorDescriptor_t dy,
                                                                      const cudnnConvolutionDescriptor_t c,
                                                                      const cudnnTensorDescriptor_t dx,
                                                                      const int requested, int* returned,
                                                                      cudnnConvolutionBwdDataAlgoPerf_t* out) {
  return get_v7<cudnnConvolutionBwdDataAlgoPerf_t, cudnnConvolutionBwdDataAlgo_t>(
      h, ConvPass::BwdData, problem(dx, w, c, dy), requested, returned, out);
}
cudnnStatus_t CUDNNWINAPI cudnnFindConvolutionBackwardDataAlgorithmEx(
    cudnnHandle_t h, const cudnnFilterDescriptor_t wd, const void* w, const cudnnTensorDescriptor_t dyd, const void* dy,
    const cudnnConvolutionDescriptor_t c, const cudnnTensorDescriptor_t dxd, void* dx, const int requested,
    int* returned, cudnnConvolutionBwdDataAlgoPerf_t* out, void* ws, size_t ws_bytes) {
  return find<cudnnConvolutionBwdDataAlgoPerf_t, cudnnConvolutionBwdDataAlgo_t>(
      h, ConvPass::BwdData, problem(dxd, wd, c, dyd), {w, dy, dx}, requested, returned, out, ws, ws_bytes);
}
cudnnStatus_t CUDNNWINAPI cudnnConvolutionBackwardData(cudnnHandle_t h, const void* alpha,
                                                       const cudnnFilterDescriptor_t wd, const void* w,
                                                       const cudnnTensorDescriptor_t dyd, const void* dy,
                                                       const cudnnConvolutionDescriptor_t c,
                                                       cudnnConvolutionBwdDataAlgo_t algo, void* ws, size_t ws_bytes,
                                                       const void* beta, const cudnnTensorDescriptor_t dxd, void* dx) {
  return run(h, ConvPass::BwdData, problem(dxd, wd, c, dyd), algo, {w, dy, dx}, ws, ws_bytes, alpha, beta);
}

// ---------------------------------------------------------------- backward filter
cudnnStatus_t CUDNNWINAPI cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(cudnnHandle_t h, int* count) {
  if (!h || !count) return CUDNN_STATUS_BAD_PARAM;
  *count = kMaxListed;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t CUDNNWINAPI cudnnGetConvolutionBackwardFilterAlgorithm_v7(
    cudnnHandle_t h, const cudnnTensorDescriptor_t x, const cudnnTensorDescriptor_t dy,
    const cudnnConvolutionDescriptor_t c, const cudnnFilterDescriptor_t dw, const int requested, int* returned,
    cudnnConvolutionBwdFilterAlgoPerf_t* out) {
  return get_v7<cudnnConvolutionBwdFilterAlgoPerf_t, cudnnConvolutionBwdFilterAlgo_t>(
      h, ConvPass::BwdWeights, problem(x, dw, c, dy), requested, returned, out);
}
cudnnStatus_t CUDNNWINAPI cudnnFindConvolutionBackwardFilterAlgorithmEx(
    cudnnHandle_t h, const cudnnTensorDescriptor_t xd, const void* x, const cudnnTensorDescriptor_t dyd, const void* dy,
    const cudnnConvolutionDescriptor_t c, const cudnnFilterDescriptor_t dwd, void* dw, const int requested,
    int* returned, cudnnConvolutionBwdFilterAlgoPerf_t* out, void* ws, size_t ws_bytes) {
  return find<cudnnConvolutionBwdFilterAlgoPerf_t, cudnnConvolutionBwdFilterAlgo_t>(
      h, ConvPass::BwdWeights, problem(xd, dwd, c, dyd), {x, dy, dw}, requested, returned, out, ws, ws_bytes);
}
cudnnStatus_t CUDNNWINAPI cudnnConvolutionBackwardFilter(cudnnHandle_t h, const void* alpha,
                                                         const cudnnTensorDescriptor_t xd, const void* x,
                                                         const cudnnTensorDescriptor_t dyd, const void* dy,
                                                         const cudnnConvolutionDescriptor_t c,
                                                         cudnnConvolutionBwdFilterAlgo_t algo, void* ws,
                                                         size_t ws_bytes, const void* beta,
                                                         const cudnnFilterDescriptor_t dwd, void* dw) {
  return run(h, ConvPass::BwdWeights, problem(xd, dwd, c, dyd), algo, {x, dy, dw}, ws, ws_bytes, alpha, beta);
}

}  // extern "C"
