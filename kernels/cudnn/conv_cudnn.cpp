// 2-D convolution through cuDNN 9's legacy (still supported) convolution API (REAL build).
//
// Math: kernels/cpu/conv_cpu.h. Calls: cudnnConvolutionForward, cudnnConvolutionBackwardData,
// cudnnConvolutionBackwardFilter; algorithms chosen once per (pass, shape, args) and cached.
// No call removed in cuDNN 8/9 is used (no cudnnGetConvolution*Algorithm without _v7, no
// *_PREFER_* preferences).
//
// Descriptors (one set per cache entry, created once, read-only afterwards):
//  - x / y (and gx / gy): cudnnSetTensor4dDescriptor(CUDNN_TENSOR_NHWC, FLOAT, n, c, h, w). The dims
//    are always passed in N, C, H, W order; the format says the memory is channels-last packed
//    (strides c = 1, w = C, h = W*C, n = H*W*C), which is exactly the engine's contiguous [N, H, W, C].
//  - w (and gw): cudnnSetFilter4dDescriptor(FLOAT, CUDNN_TENSOR_NHWC, k = Cout, c = Cin/groups, kH, kW):
//    memory [Cout][kH][kW][Cin/groups] ("KRSC" = OHWI). Why not the engine's OIHW (= CUDNN_TENSOR_NCHW
//    filter) directly: cuDNN documents NHWC data with an NHWC filter as the channels-last
//    configuration (its Tensor-Core and implicit-GEMM NHWC kernels are written for it), while an NCHW
//    filter with NHWC data is accepted by fewer algorithms and may be refused
//    (CUDNN_STATUS_NOT_SUPPORTED) or transposed internally. The op layer transposes the weight with
//    the engine's copy kernel (|w| bytes, < 20 MB for every layer of the two models: microseconds)
//    and the weight gradient back; PyTorch's channels-last path makes the same choice.
//  - conv: cudnnSetConvolution2dDescriptor(pad, stride, dilation, CUDNN_CROSS_CORRELATION, compute
//    FLOAT) + cudnnSetConvolutionGroupCount(groups) (weights [Cout, Cin/groups, ...], depthwise =
//    groups == Cin) + cudnnSetConvolutionMathType(CUDNN_FMA_MATH). FMA rather than
//    CUDNN_DEFAULT_MATH: on Ampere and newer DEFAULT permits TF32 Tensor Cores for fp32 data
//    (10-bit mantissa products), which would break the engine's "fp32 matches the CPU to ~1e-5"
//    contract (and test_conv_gpu); FMA_MATH restricts cuDNN to true fp32 FMA kernels. A later
//    TF32/mixed-precision mode would switch this in one place.
//  Precision (ConvParams.input / .tf32, engine/precision.h): the same descriptors with another data
//  type and math type, chosen in one place (data_type / math_type below):
//    fp32            FLOAT data, FMA math (above);
//    tf32            FLOAT data, DEFAULT math: cuDNN may use TF32 tensor cores (10-bit mantissa
//                    products, f32 accumulation) on sm_80 and newer;
//    bf16 / fp16     BFLOAT16 / HALF data (x, w, y and their gradients), FLOAT compute, TENSOR_OP
//                    math: tensor-core products with f32 accumulation, results rounded to the low
//                    type (the op layer casts them back to f32).
//  The algorithm filter follows: fp32 keeps FMA-only algorithms; tf32 accepts tensor-core ones but
//  never TENSOR_OP_MATH_ALLOW_CONVERSION (which would round fp32 data to fp16); bf16 / fp16 accept
//  every math type.
//  The output size cuDNN computes (cudnnGetConvolution2dForwardOutputDim) is checked against ours.
//
// Algorithm choice (once per key): cudnnGet*Algorithm_v7 lists the candidates with their workspace
// needs; a search workspace sized for the largest deterministic candidate (capped at 1 GiB) is
// allocated and cudnnFind*AlgorithmEx times them on the caller's real buffers (it overwrites the
// output, which the call then computes anyway). The fastest candidate that succeeded, is
// CUDNN_DETERMINISTIC (the engine promises run-to-run identical results, so the atomics-based
// backward algorithms are excluded) and uses a math type the precision allows is cached. Without
// memory for the search workspace the search times the candidates that need none; if the search
// fails, the first such heuristic candidate that it did not see fail is used; only if cuDNN offers no
// deterministic algorithm at all is a non-deterministic one taken, with a warning on stderr.
// Timing makes the choice stable within a process, not across processes: on a near tie two runs may
// pick different algorithms, which round differently. ENGINE_CONV_ALGO=heuristic skips the timing
// (the first usable deterministic candidate in cuDNN's heuristic order, cuDNN's backward-data, no
// layout search), so the choice depends only on the shape, the GPU and the cuDNN version and runs
// repeat bit for bit across processes (a resumed run continues as the uninterrupted one would).
// Layout choice (opt-in: ENGINE_CUDNN_NCHW=1; once per key, after the search above): the same
// convolution is also searched with NCHW descriptors (x/y NCHW, filter NCHW = OIHW) on NCHW copies of
// the inputs made with cudnnTransformTensor. On an H200 with cuDNN 9.19, fp32 FMA, cuDNN's
// deterministic NCHW kernels were up to 6.6x faster for several of the models' backward passes
// (DarkNet53 3x3 s2 32->64 backward-data 14.1 -> 2.1 ms; STDC 1x1 64->128 backward-data 0.235 ->
// 0.064 ms; STDC 3x3 64->32 backward-filter 0.245 -> 0.079 ms) and PP-LiteSeg-B trained 29 % faster,
// but the winners include FFT and Winograd kernels, whose rounding differs more from the CPU: the
// model-level CPU-vs-GPU agreement test (test_models) then failed in one of two runs. So it is off by
// default. NCHW is kept only when its best deterministic time plus the measured cost of the layout
// transforms is below 90 % of the NHWC time; such a call transforms its inputs into temporary NCHW
// buffers (from the workspace callback), runs there and transforms the result back, on the caller's
// stream.
// Backward-data may instead run the hand-written kernel of kernels/cuda/conv_direct.cu (groups 1,
// fp32 / tf32, bf16, fp16): timed once per shape after cuDNN's search and kept when it takes under 90 % of
// cuDNN's best time (not under the emulator, whose cuDNN times are synthetic: cuDNN is kept);
// ENGINE_CONV_BWD_DATA=cudnn | direct forces either (direct_mode below).
// Workspace: from the caller (the op layer allocates a Tensor on the caching allocator).
// Handle: one per process, created on first use, bound with cudnnSetStream to the caller's stream
// (the engine's compute_stream()) before every call; a mutex serialises use (handles are not
// thread-safe). Legacy descriptors take int dims: tensors above 2^31 - 1 elements are an error.
// Tested by tests/test_conv_gpu.cpp (real GPU: cuDNN vs the CPU oneDNN path, forward and all
// gradients, every conv flavour); benchmarked by bench_kernels --filter conv on a GPU.
#include "kernels/cudnn/conv_cudnn.h"

#include <cudnn.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "base/cuda_context.h"
#include "base/error.h"
#include "kernels/cuda/conv_direct_cuda.h"

#define CUDNN_CHECK(expr)                                                                                    \
  do {                                                                                                       \
    const cudnnStatus_t st_ = (expr);                                                                        \
    if (st_ != CUDNN_STATUS_SUCCESS)                                                                         \
      ::engine::fail("conv2d: cuDNN error ", cudnnGetErrorString(st_), " in ", #expr, " at ", __FILE__, ":", \
                     __LINE__);                                                                              \
  } while (0)

namespace engine::kernels {
namespace {

constexpr size_t kMaxSearchWorkspace = size_t(1) << 30;

std::mutex& handle_mutex() {
  static std::mutex m;
  return m;
}

// Called with handle_mutex() held.
cudnnHandle_t handle() {
  static cudnnHandle_t h = [] {
    cudnnHandle_t x = nullptr;
    (void)compute_stream();  // creates the handle on the process's device (select_cuda_device)
    CUDNN_CHECK(cudnnCreate(&x));
    return x;
  }();
  return h;
}

// The data type of x, w, y (and their gradients) and the math type of the convolution descriptor.
cudnnDataType_t data_type(const ConvParams& p) {
  switch (p.input) {
    case ConvInput::BF16:
      return CUDNN_DATA_BFLOAT16;
    case ConvInput::F16:
      return CUDNN_DATA_HALF;
    case ConvInput::F32:
      break;
  }
  return CUDNN_DATA_FLOAT;
}
size_t elem_size(const ConvParams& p) { return p.input == ConvInput::F32 ? 4 : 2; }
const char* type_name(const ConvParams& p) {
  return p.input == ConvInput::BF16 ? "bf16" : p.input == ConvInput::F16 ? "fp16" : p.tf32 ? "tf32" : "fp32";
}
cudnnMathType_t math_type(const ConvParams& p) {
  if (p.input != ConvInput::F32) return CUDNN_TENSOR_OP_MATH;
  return p.tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH;
}
// Whether an algorithm of math type m computes at the precision p asks for (see the file comment).
bool math_allowed(const ConvParams& p, cudnnMathType_t m) {
  if (p.input != ConvInput::F32) return true;
  if (p.tf32) return m != CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION;
  // fp32 runs every algorithm under the FMA descriptor (settle), so only FMA results were timed as
  // they will run.
  return m == CUDNN_FMA_MATH;
}

int to_int(const char* what, int64_t v) {
  ENGINE_CHECK(v >= 0 && v <= INT_MAX, "conv2d (cuDNN): ", what, " = ", v,
               " exceeds cuDNN's int range; split the batch");
  return (int)v;
}

// The descriptors of one convolution (see the file comment).
struct Descs {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnTensorDescriptor_t wt = nullptr;  // the filter seen as a 4-D tensor, for layout transforms
  cudnnConvolutionDescriptor_t conv = nullptr;

  Descs(const ConvParams& p, cudnnTensorFormat_t fmt) {
    to_int("x elements", p.n * p.h * p.w * p.cin);
    to_int("y elements", p.n * p.ho * p.wo * p.cout);
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&x));
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&y));
    CUDNN_CHECK(cudnnCreateFilterDescriptor(&w));
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&wt));
    CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&conv));
    // Input / input gradient: dims in N, C, H, W order; memory channels-last (NHWC, the engine's
    // layout) or NCHW (the temporary copies of the layout choice).
    const cudnnDataType_t dt = data_type(p);
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(x, fmt, dt, to_int("N", p.n), to_int("Cin", p.cin), to_int("H", p.h),
                                           to_int("W", p.w)));
    // Output / output gradient, likewise.
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(y, fmt, dt, to_int("N", p.n), to_int("Cout", p.cout), to_int("Ho", p.ho),
                                           to_int("Wo", p.wo)));
    // Filter / filter gradient: K = Cout, C = Cin per group; memory KRSC (= OHWI) for NHWC, KCRS
    // (= OIHW) for NCHW. `wt` describes the same memory as a tensor (N = K, C = Cin/groups).
    CUDNN_CHECK(cudnnSetFilter4dDescriptor(w, dt, fmt, to_int("Cout", p.cout), to_int("Cin/groups", p.cin / p.groups),
                                           to_int("kH", p.kh), to_int("kW", p.kw)));
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(wt, fmt, dt, to_int("Cout", p.cout), to_int("Cin/groups", p.cin / p.groups),
                                           to_int("kH", p.kh), to_int("kW", p.kw)));
    // Convolution: symmetric zero padding, strides, dilations; cross-correlation (no kernel flip),
    // fp32 accumulation; groups; the precision's math type.
    CUDNN_CHECK(cudnnSetConvolution2dDescriptor(conv, to_int("pad_h", p.pad_h), to_int("pad_w", p.pad_w),
                                                to_int("stride_h", p.stride_h), to_int("stride_w", p.stride_w),
                                                to_int("dilation_h", p.dil_h), to_int("dilation_w", p.dil_w),
                                                CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    CUDNN_CHECK(cudnnSetConvolutionGroupCount(conv, to_int("groups", p.groups)));
    CUDNN_CHECK(cudnnSetConvolutionMathType(conv, math_type(p)));
    int on = 0, oc = 0, oh = 0, ow = 0;
    CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(conv, x, w, &on, &oc, &oh, &ow));
    ENGINE_CHECK(on == p.n && oc == p.cout && oh == p.ho && ow == p.wo, "conv2d (cuDNN): output size [", on, ", ", oh,
                 ", ", ow, ", ", oc, "] differs from the engine's [", p.n, ", ", p.ho, ", ", p.wo, ", ", p.cout, "]");
  }
  ~Descs() {
    if (conv) cudnnDestroyConvolutionDescriptor(conv);
    if (wt) cudnnDestroyTensorDescriptor(wt);
    if (w) cudnnDestroyFilterDescriptor(w);
    if (y) cudnnDestroyTensorDescriptor(y);
    if (x) cudnnDestroyTensorDescriptor(x);
  }
  Descs(const Descs&) = delete;
  Descs& operator=(const Descs&) = delete;
};

struct Entry {
  explicit Entry(const ConvParams& p)
      : d(p, CUDNN_TENSOR_NHWC),
        dn(p, CUDNN_TENSOR_NCHW),
        x_bytes((size_t)(p.n * p.h * p.w * p.cin) * elem_size(p)),
        y_bytes((size_t)(p.n * p.ho * p.wo * p.cout) * elem_size(p)),
        w_bytes((size_t)(p.cout * (p.cin / p.groups) * p.kh * p.kw) * elem_size(p)),
        params(p) {}
  Descs d;   // NHWC: the engine's tensors as they are
  Descs dn;  // NCHW: temporary copies, when the layout choice picked it
  size_t x_bytes, y_bytes, w_bytes;
  ConvParams params;
  bool nchw = false;
  int algo = -1;
  size_t workspace = 0;
  float time_ms = -1.f;  // cuDNN's measured time of the pick (with NCHW transforms); -1 = not timed
  bool direct = false;   // backward-data: the hand-written kernel runs instead
};

using Key = ConvKey;

// Guarded by handle_mutex().
std::map<Key, std::unique_ptr<Entry>>& cache() {
  static std::map<Key, std::unique_ptr<Entry>> c;
  return c;
}

// The best algorithm of one layout: Get_v7 candidates and a FindEx search (see the file comment).
// `Perf` is one of the cudnnConvolution*AlgoPerf_t structs; get(n, &count, perf) and find(n, &count,
// perf, ws, bytes) wrap the pass's calls. Deterministic algorithms first; a non-deterministic one
// only when `allow_nondet` and cuDNN has no deterministic one. time < 0: from the heuristic list
// (the search failed), not timed.
struct Pick {
  int algo = -1;
  size_t memory = 0;
  float time = -1.f;
  bool deterministic = true;
  cudnnMathType_t math = CUDNN_FMA_MATH;  // the math type cuDNN reported for the algorithm
};

// ENGINE_CONV_ALGO=heuristic: choices without timing (see the file comment); search (the default)
// times them.
bool heuristic_choice() {
  static const bool h = [] {
    const char* v = std::getenv("ENGINE_CONV_ALGO");
    if (!v || !*v || std::string(v) == "search") return false;
    ENGINE_CHECK(std::string(v) == "heuristic", "ENGINE_CONV_ALGO must be search or heuristic, got '", v, "'");
    return true;
  }();
  return h;
}

template <class Perf, class Get, class Find>
Pick search(const ConvParams& p, int max_count, const Get& get, const Find& find, const CudnnWorkspaceFn& wsfn,
            bool allow_nondet) {
  std::vector<Perf> cand((size_t)std::max(max_count, 1));
  int n = 0;
  CUDNN_CHECK(get(max_count, &n, cand.data()));
  cand.resize((size_t)n);
  auto usable = [&p](const Perf& r, size_t limit, bool deterministic) {
    return r.status == CUDNN_STATUS_SUCCESS && (!deterministic || r.determinism == CUDNN_DETERMINISTIC) &&
           math_allowed(p, r.mathType) && r.memory <= limit;
  };
  size_t search_ws = 0;
  for (const Perf& r : cand)
    if (usable(r, kMaxSearchWorkspace, false)) search_ws = std::max(search_ws, r.memory);
  std::vector<Perf> timed((size_t)std::max(max_count, 1));
  int m = 0;
  cudnnStatus_t st = CUDNN_STATUS_NOT_SUPPORTED;  // (heuristic mode: no search)
  if (!heuristic_choice()) {
    // No memory for the largest candidate's workspace: search among those that need none.
    void* ws = nullptr;
    try {
      ws = wsfn(search_ws);
    } catch (const CaptureFailed&) {
      throw;
    } catch (const Error&) {
      search_ws = 0;
    }
    st = find(max_count, &m, timed.data(), ws, search_ws);
  }
  // An algorithm the search ran and saw fail is not taken from the heuristic list either.
  auto failed_in_search = [&](const Perf& r) {
    if (st != CUDNN_STATUS_SUCCESS) return false;
    for (int i = 0; i < m; ++i)
      if (timed[(size_t)i].algo == r.algo && timed[(size_t)i].status != CUDNN_STATUS_SUCCESS) return true;
    return false;
  };
  for (const bool det : {true, false}) {
    if (!det && !allow_nondet) break;
    const Perf* pick = nullptr;
    bool was_timed = false;
    if (st == CUDNN_STATUS_SUCCESS)
      for (int i = 0; i < m && !pick; ++i)  // sorted fastest first
        if (usable(timed[(size_t)i], search_ws, det)) {
          pick = &timed[(size_t)i];
          was_timed = true;
        }
    for (size_t i = 0; i < cand.size() && !pick; ++i)  // heuristic order
      if (usable(cand[i], kMaxSearchWorkspace, det) && !failed_in_search(cand[i])) pick = &cand[i];
    if (pick) return {(int)pick->algo, pick->memory, was_timed ? pick->time : -1.f, det, pick->mathType};
  }
  return {};
}

// Elapsed milliseconds of f() on `stream` (CUDA events).
struct Event {  // destroyed on every path out, errors included
  cudaEvent_t e = nullptr;
  Event() { CUDA_CHECK(cudaEventCreate(&e)); }
  ~Event() { cudaEventDestroy(e); }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
};
template <class F>
float time_on_stream(cudaStream_t stream, const F& f) {
  const Event a, b;
  CUDA_CHECK(cudaEventRecord(a.e, stream));
  f();
  CUDA_CHECK(cudaEventRecord(b.e, stream));
  CUDA_CHECK(cudaEventSynchronize(b.e));
  float ms = 0.f;
  CUDA_CHECK(cudaEventElapsedTime(&ms, a.e, b.e));
  return ms;
}

// ENGINE_CUDNN_NCHW=1 turns the layout choice on (see the file comment); it is a choice by timing,
// so ENGINE_CONV_ALGO=heuristic turns it off.
bool layout_search_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("ENGINE_CUDNN_NCHW");
    return v && std::string(v) == "1" && !heuristic_choice();
  }();
  return on;
}

// Layout conversion of one tensor (same dims, different formats) on the handle's stream.
void transform(cudnnHandle_t h, cudnnTensorDescriptor_t from_desc, const void* from, cudnnTensorDescriptor_t to_desc,
               void* to) {
  const float one = 1.f, zero = 0.f;
  CUDNN_CHECK(cudnnTransformTensor(h, &one, from_desc, from, &zero, to_desc, to));
}

// Settles the entry from the NHWC pick and the NCHW pick (see the file comment); `transform_ms` is
// the measured cost of the NCHW path's layout transforms.
void settle(Entry& e, const char* pass, const Pick& nhwc, const Pick& nchw, float transform_ms) {
  const bool nchw_wins =
      nchw.algo >= 0 && nchw.deterministic && nchw.time >= 0 &&
      (nhwc.algo < 0 || !nhwc.deterministic || (nhwc.time >= 0 && nchw.time + transform_ms < 0.9f * nhwc.time));
  const Pick& p = nchw_wins ? nchw : nhwc;
  if (p.algo < 0) fail("conv2d (cuDNN): no ", type_name(e.params), " ", pass, " algorithm for this shape");
  if (!p.deterministic)
    std::fprintf(stderr,
                 "engine: conv2d: cuDNN has no deterministic %s %s algorithm for this shape; using algorithm %d\n",
                 type_name(e.params), pass, p.algo);
  e.nchw = nchw_wins;
  e.algo = p.algo;
  e.workspace = p.memory;
  e.time_ms = p.time < 0 ? -1.f : p.time + (nchw_wins ? transform_ms : 0.f);
  // Outside fp32 the algorithm runs with the math type cuDNN reported for it (a tensor-core
  // algorithm listed for another descriptor setting would otherwise see a mismatched descriptor).
  // fp32 keeps FMA math on the descriptor, so no TF32 can slip in.
  if (e.params.input != ConvInput::F32 || e.params.tf32)
    CUDNN_CHECK(cudnnSetConvolutionMathType(nchw_wins ? e.dn.conv : e.d.conv, p.math));
}

// Backward-data: the hand-written kernel (kernels/cuda/conv_direct.cu) instead of cuDNN's algorithm
// for this shape? ENGINE_CONV_BWD_DATA=cudnn | direct forces one; by default (auto) the kernel is
// timed once on the caller's buffers and taken when below 90 % of cuDNN's measured time.
enum class DirectMode { Auto, Cudnn, Direct };
DirectMode direct_mode() {
  static const DirectMode m = [] {
    const char* v = std::getenv("ENGINE_CONV_BWD_DATA");
    if (!v || !*v || std::string(v) == "auto") return DirectMode::Auto;
    if (std::string(v) == "cudnn") return DirectMode::Cudnn;
    ENGINE_CHECK(std::string(v) == "direct", "ENGINE_CONV_BWD_DATA must be auto, cudnn or direct, got '", v, "'");
    return DirectMode::Direct;
  }();
  return m;
}

// The cache entry for (pass, p), choosing its algorithm on first use with the given buffers.
// Called with handle_mutex() held and the handle bound to the stream. The choice runs and times
// algorithms and waits for them, which a stream capture refuses: a shape's first use during one
// fails the capture (the step then runs eagerly and makes the choice).
template <class Choose>
Entry& entry(ConvPass pass, const ConvParams& p, cudaStream_t stream, const Choose& choose_fn) {
  auto& c = cache();
  // The bias is added by the op layer, not here, and cuDNN's tensors are in the low type at O1 and
  // O2 alike (the op layer widens at O1): one entry serves a shape with and without either.
  ConvParams shape = p;
  shape.bias = false;
  shape.low_out = false;
  const Key k = conv_key(pass, shape);
  auto it = c.find(k);
  if (it != c.end()) return *it->second;
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  CUDA_CHECK(cudaStreamIsCapturing(stream, &capture));
  if (capture != cudaStreamCaptureStatusNone)
    fail_capture("conv2d (cuDNN): the first ", type_name(p), " ",
                 pass == ConvPass::Fwd       ? "forward"
                 : pass == ConvPass::BwdData ? "backward-data"
                                             : "backward-weights",
                 " of a shape during a CUDA graph capture; its algorithm is chosen outside captures");
  auto e = std::make_unique<Entry>(p);
  choose_fn(*e);
  return *c.emplace(k, std::move(e)).first->second;
}

void* workspace_of(const Entry& e, const CudnnWorkspaceFn& wsfn) { return e.workspace ? wsfn(e.workspace) : nullptr; }

}  // namespace

// Each pass: on first use of a shape, search NHWC on the caller's buffers, then NCHW on transformed
// copies, and settle (see the file comment); then run in the chosen layout.
void conv2d_fwd_cudnn(const ConvParams& p, const void* x, const void* w, void* y, const CudnnWorkspaceFn& wsfn,
                      cudaStream_t stream) {
  std::lock_guard<std::mutex> lock(handle_mutex());
  cudnnHandle_t h = handle();
  CUDNN_CHECK(cudnnSetStream(h, stream));
  int mx = 0;
  CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithmMaxCount(h, &mx));
  auto find_in = [&](const Descs& d, const void* xx, const void* ww, void* yy, bool nondet) {
    return search<cudnnConvolutionFwdAlgoPerf_t>(
        p, mx,
        [&](int n, int* cnt, cudnnConvolutionFwdAlgoPerf_t* r) {
          return cudnnGetConvolutionForwardAlgorithm_v7(h, d.x, d.w, d.conv, d.y, n, cnt, r);
        },
        [&](int n, int* cnt, cudnnConvolutionFwdAlgoPerf_t* r, void* ws, size_t bytes) {
          return cudnnFindConvolutionForwardAlgorithmEx(h, d.x, xx, d.w, ww, d.conv, d.y, yy, n, cnt, r, ws, bytes);
        },
        wsfn, nondet);
  };
  Entry& e = entry(ConvPass::Fwd, p, stream, [&](Entry& en) {
    const Pick a = find_in(en.d, x, w, y, true);
    if (!layout_search_enabled()) return settle(en, "forward", a, Pick{}, 0.f);
    void* xn = wsfn(en.x_bytes);
    void* wn = wsfn(en.w_bytes);
    void* yn = wsfn(en.y_bytes);
    const float t = time_on_stream(stream, [&] {
      transform(h, en.d.x, x, en.dn.x, xn);
      transform(h, en.d.wt, w, en.dn.wt, wn);
      transform(h, en.d.y, y, en.dn.y, yn);  // stands in for the transform back (same bytes)
    });
    settle(en, "forward", a, find_in(en.dn, xn, wn, yn, false), t);
  });
  const float one = 1.f, zero = 0.f;
  if (!e.nchw) {
    CUDNN_CHECK(cudnnConvolutionForward(h, &one, e.d.x, x, e.d.w, w, e.d.conv, (cudnnConvolutionFwdAlgo_t)e.algo,
                                        workspace_of(e, wsfn), e.workspace, &zero, e.d.y, y));
    return;
  }
  void* xn = wsfn(e.x_bytes);
  void* wn = wsfn(e.w_bytes);
  void* yn = wsfn(e.y_bytes);
  transform(h, e.d.x, x, e.dn.x, xn);
  transform(h, e.d.wt, w, e.dn.wt, wn);
  CUDNN_CHECK(cudnnConvolutionForward(h, &one, e.dn.x, xn, e.dn.w, wn, e.dn.conv, (cudnnConvolutionFwdAlgo_t)e.algo,
                                      workspace_of(e, wsfn), e.workspace, &zero, e.dn.y, yn));
  transform(h, e.dn.y, yn, e.d.y, y);
}

void conv2d_bwd_data_cudnn(const ConvParams& p, const void* gy, const void* w, void* gx, const CudnnWorkspaceFn& wsfn,
                           cudaStream_t stream) {
  std::lock_guard<std::mutex> lock(handle_mutex());
  cudnnHandle_t h = handle();
  CUDNN_CHECK(cudnnSetStream(h, stream));
  int mx = 0;
  CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(h, &mx));
  auto find_in = [&](const Descs& d, const void* gyy, const void* ww, void* gxx, bool nondet) {
    return search<cudnnConvolutionBwdDataAlgoPerf_t>(
        p, mx,
        [&](int n, int* cnt, cudnnConvolutionBwdDataAlgoPerf_t* r) {
          return cudnnGetConvolutionBackwardDataAlgorithm_v7(h, d.w, d.y, d.conv, d.x, n, cnt, r);
        },
        [&](int n, int* cnt, cudnnConvolutionBwdDataAlgoPerf_t* r, void* ws, size_t bytes) {
          return cudnnFindConvolutionBackwardDataAlgorithmEx(h, d.w, ww, d.y, gyy, d.conv, d.x, gxx, n, cnt, r, ws,
                                                             bytes);
        },
        wsfn, nondet);
  };
  auto run_direct = [&] { conv2d_bwd_data_direct_cuda(p, gy, w, gx, stream); };
  Entry& e = entry(ConvPass::BwdData, p, stream, [&](Entry& en) {
    const Pick a = find_in(en.d, gy, w, gx, true);
    if (!layout_search_enabled()) {
      settle(en, "backward-data", a, Pick{}, 0.f);
    } else {
      void* gyn = wsfn(en.y_bytes);
      void* wn = wsfn(en.w_bytes);
      void* gxn = wsfn(en.x_bytes);
      const float t = time_on_stream(stream, [&] {
        transform(h, en.d.y, gy, en.dn.y, gyn);
        transform(h, en.d.wt, w, en.dn.wt, wn);
        transform(h, en.d.x, gx, en.dn.x, gxn);  // stands in for the transform back (same bytes)
      });
      settle(en, "backward-data", a, find_in(en.dn, gyn, wn, gxn, false), t);
    }
    const DirectMode mode = direct_mode();
    if (mode == DirectMode::Cudnn || !conv2d_bwd_data_direct_supported(p)) return;
    if (mode == DirectMode::Auto && heuristic_choice()) return;  // a choice by timing
#if defined(ENGINE_CUDA_EMULATED)
    // The emulated cuDNN's times are synthetic (a nominal 1 TFLOP/s, kernels/emu/cudnn_emu.cpp) and
    // the emulated kernel runs at host speed, so the race below always keeps cuDNN there; it would
    // only run the kernel twice per shape (most of an ASan test's time).
    if (mode == DirectMode::Auto) return;
#endif
    if (mode == DirectMode::Direct) {
      en.direct = true;
      return;
    }
    run_direct();  // first launch (module load) outside the timing
    const float direct_ms = time_on_stream(stream, run_direct);
    en.direct = en.time_ms >= 0 && direct_ms < 0.9f * en.time_ms;
  });
  if (e.direct) {
    run_direct();
    return;
  }
  const float one = 1.f, zero = 0.f;
  if (!e.nchw) {
    CUDNN_CHECK(cudnnConvolutionBackwardData(h, &one, e.d.w, w, e.d.y, gy, e.d.conv,
                                             (cudnnConvolutionBwdDataAlgo_t)e.algo, workspace_of(e, wsfn), e.workspace,
                                             &zero, e.d.x, gx));
    return;
  }
  void* gyn = wsfn(e.y_bytes);
  void* wn = wsfn(e.w_bytes);
  void* gxn = wsfn(e.x_bytes);
  transform(h, e.d.y, gy, e.dn.y, gyn);
  transform(h, e.d.wt, w, e.dn.wt, wn);
  CUDNN_CHECK(cudnnConvolutionBackwardData(h, &one, e.dn.w, wn, e.dn.y, gyn, e.dn.conv,
                                           (cudnnConvolutionBwdDataAlgo_t)e.algo, workspace_of(e, wsfn), e.workspace,
                                           &zero, e.dn.x, gxn));
  transform(h, e.dn.x, gxn, e.d.x, gx);
}

void conv2d_bwd_weights_cudnn(const ConvParams& p, const void* x, const void* gy, void* gw,
                              const CudnnWorkspaceFn& wsfn, cudaStream_t stream) {
  std::lock_guard<std::mutex> lock(handle_mutex());
  cudnnHandle_t h = handle();
  CUDNN_CHECK(cudnnSetStream(h, stream));
  int mx = 0;
  CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(h, &mx));
  auto find_in = [&](const Descs& d, const void* xx, const void* gyy, void* gww, bool nondet) {
    return search<cudnnConvolutionBwdFilterAlgoPerf_t>(
        p, mx,
        [&](int n, int* cnt, cudnnConvolutionBwdFilterAlgoPerf_t* r) {
          return cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, d.x, d.y, d.conv, d.w, n, cnt, r);
        },
        [&](int n, int* cnt, cudnnConvolutionBwdFilterAlgoPerf_t* r, void* ws, size_t bytes) {
          return cudnnFindConvolutionBackwardFilterAlgorithmEx(h, d.x, xx, d.y, gyy, d.conv, d.w, gww, n, cnt, r, ws,
                                                               bytes);
        },
        wsfn, nondet);
  };
  Entry& e = entry(ConvPass::BwdWeights, p, stream, [&](Entry& en) {
    const Pick a = find_in(en.d, x, gy, gw, true);
    if (!layout_search_enabled()) return settle(en, "backward-filter", a, Pick{}, 0.f);
    void* xn = wsfn(en.x_bytes);
    void* gyn = wsfn(en.y_bytes);
    void* gwn = wsfn(en.w_bytes);
    const float t = time_on_stream(stream, [&] {
      transform(h, en.d.x, x, en.dn.x, xn);
      transform(h, en.d.y, gy, en.dn.y, gyn);
      transform(h, en.d.wt, gw, en.dn.wt, gwn);  // stands in for the transform back (same bytes)
    });
    settle(en, "backward-filter", a, find_in(en.dn, xn, gyn, gwn, false), t);
  });
  const float one = 1.f, zero = 0.f;
  if (!e.nchw) {
    CUDNN_CHECK(cudnnConvolutionBackwardFilter(h, &one, e.d.x, x, e.d.y, gy, e.d.conv,
                                               (cudnnConvolutionBwdFilterAlgo_t)e.algo, workspace_of(e, wsfn),
                                               e.workspace, &zero, e.d.w, gw));
    return;
  }
  void* xn = wsfn(e.x_bytes);
  void* gyn = wsfn(e.y_bytes);
  void* gwn = wsfn(e.w_bytes);
  transform(h, e.d.x, x, e.dn.x, xn);
  transform(h, e.d.y, gy, e.dn.y, gyn);
  CUDNN_CHECK(cudnnConvolutionBackwardFilter(h, &one, e.dn.x, xn, e.dn.y, gyn, e.dn.conv,
                                             (cudnnConvolutionBwdFilterAlgo_t)e.algo, workspace_of(e, wsfn),
                                             e.workspace, &zero, e.dn.w, gwn));
  transform(h, e.dn.wt, gwn, e.d.wt, gw);
}

namespace {
// The fastest measured time of any algorithm cuDNN runs for one layout's descriptors: Get_v7 lists
// the candidates, FindEx times them in a workspace sized for the largest (capped at 1 GiB); every
// successful result with a math type the precision allows counts, deterministic or not. -1 when
// none ran.
template <class Perf, class Get, class Find>
float fastest_ms(const ConvParams& p, int max_count, const Get& get, const Find& find, const CudnnWorkspaceFn& wsfn) {
  std::vector<Perf> cand((size_t)std::max(max_count, 1));
  int n = 0;
  CUDNN_CHECK(get(max_count, &n, cand.data()));
  size_t ws_bytes = 0;
  for (int i = 0; i < n; ++i) {
    const Perf& r = cand[(size_t)i];
    if (r.status == CUDNN_STATUS_SUCCESS && math_allowed(p, r.mathType) && r.memory <= kMaxSearchWorkspace)
      ws_bytes = std::max(ws_bytes, r.memory);
  }
  std::vector<Perf> timed((size_t)std::max(max_count, 1));
  int m = 0;
  if (find(max_count, &m, timed.data(), wsfn(ws_bytes), ws_bytes) != CUDNN_STATUS_SUCCESS) return -1.f;
  float best = -1.f;
  for (int i = 0; i < m; ++i) {
    const Perf& r = timed[(size_t)i];
    if (r.status != CUDNN_STATUS_SUCCESS || !math_allowed(p, r.mathType) || r.memory > ws_bytes || r.time < 0) continue;
    best = best < 0 ? r.time : std::min(best, r.time);
  }
  return best;
}
}  // namespace

float conv2d_best_ms_cudnn(ConvPass pass, const ConvParams& p, const CudnnWorkspaceFn& wsfn, cudaStream_t stream) {
  std::lock_guard<std::mutex> lock(handle_mutex());
  cudnnHandle_t h = handle();
  CUDNN_CHECK(cudnnSetStream(h, stream));
  const size_t es = elem_size(p);
  const size_t xb = (size_t)(p.n * p.h * p.w * p.cin) * es, yb = (size_t)(p.n * p.ho * p.wo * p.cout) * es;
  const size_t wb = (size_t)(p.cout * (p.cin / p.groups) * p.kh * p.kw) * es;
  // Zeros: defined inputs (no NaN or denormal slow paths); the kernels' speed does not depend on values.
  void* x = wsfn(xb);
  void* w = wsfn(wb);
  void* y = wsfn(yb);
  CUDA_CHECK(cudaMemsetAsync(x, 0, xb, stream));
  CUDA_CHECK(cudaMemsetAsync(w, 0, wb, stream));
  CUDA_CHECK(cudaMemsetAsync(y, 0, yb, stream));
  float best = -1.f;
  for (const cudnnTensorFormat_t fmt : {CUDNN_TENSOR_NHWC, CUDNN_TENSOR_NCHW}) {
    const Descs d(p, fmt);
    int mx = 0;
    float t = -1.f;
    if (pass == ConvPass::Fwd) {
      CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithmMaxCount(h, &mx));
      t = fastest_ms<cudnnConvolutionFwdAlgoPerf_t>(
          p, mx,
          [&](int n, int* cnt, cudnnConvolutionFwdAlgoPerf_t* r) {
            return cudnnGetConvolutionForwardAlgorithm_v7(h, d.x, d.w, d.conv, d.y, n, cnt, r);
          },
          [&](int n, int* cnt, cudnnConvolutionFwdAlgoPerf_t* r, void* ws, size_t bytes) {
            return cudnnFindConvolutionForwardAlgorithmEx(h, d.x, x, d.w, w, d.conv, d.y, y, n, cnt, r, ws, bytes);
          },
          wsfn);
    } else if (pass == ConvPass::BwdData) {
      CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(h, &mx));
      t = fastest_ms<cudnnConvolutionBwdDataAlgoPerf_t>(
          p, mx,
          [&](int n, int* cnt, cudnnConvolutionBwdDataAlgoPerf_t* r) {
            return cudnnGetConvolutionBackwardDataAlgorithm_v7(h, d.w, d.y, d.conv, d.x, n, cnt, r);
          },
          [&](int n, int* cnt, cudnnConvolutionBwdDataAlgoPerf_t* r, void* ws, size_t bytes) {
            return cudnnFindConvolutionBackwardDataAlgorithmEx(h, d.w, w, d.y, y, d.conv, d.x, x, n, cnt, r, ws, bytes);
          },
          wsfn);
    } else {
      CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(h, &mx));
      t = fastest_ms<cudnnConvolutionBwdFilterAlgoPerf_t>(
          p, mx,
          [&](int n, int* cnt, cudnnConvolutionBwdFilterAlgoPerf_t* r) {
            return cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, d.x, d.y, d.conv, d.w, n, cnt, r);
          },
          [&](int n, int* cnt, cudnnConvolutionBwdFilterAlgoPerf_t* r, void* ws, size_t bytes) {
            return cudnnFindConvolutionBackwardFilterAlgorithmEx(h, d.x, x, d.y, y, d.conv, d.w, w, n, cnt, r, ws,
                                                                 bytes);
          },
          wsfn);
    }
    if (t >= 0) best = best < 0 ? t : std::min(best, t);
  }
  return best;
}

size_t conv2d_cudnn_entries() {
  std::lock_guard<std::mutex> lock(handle_mutex());
  return cache().size();
}

}  // namespace engine::kernels
