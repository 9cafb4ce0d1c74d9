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
//  The output size cuDNN computes (cudnnGetConvolution2dForwardOutputDim) is checked against ours.
//
// Algorithm choice (once per key): cudnnGet*Algorithm_v7 lists the candidates with their workspace
// needs; a search workspace sized for the largest deterministic candidate (capped at 1 GiB) is
// allocated and cudnnFind*AlgorithmEx times them on the caller's real buffers (it overwrites the
// output, which the call then computes anyway). The fastest candidate that succeeded, is
// CUDNN_DETERMINISTIC (the engine promises run-to-run identical results, so the atomics-based
// backward algorithms are excluded) and does not use Tensor-Core math is cached. If the search
// fails (e.g. out of memory) the first such heuristic candidate is used; only if cuDNN offers no
// deterministic algorithm at all is a non-deterministic one taken, with a warning on stderr.
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
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "engine/error.h"

#define CUDNN_CHECK(expr)                                                                                       \
  do {                                                                                                          \
    const cudnnStatus_t st_ = (expr);                                                                           \
    if (st_ != CUDNN_STATUS_SUCCESS)                                                                            \
      ::engine::fail("conv2d: cuDNN error ", cudnnGetErrorString(st_), " in ", #expr, " at ", __FILE__, ":", \
                     __LINE__);                                                                                 \
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
    CUDNN_CHECK(cudnnCreate(&x));
    return x;
  }();
  return h;
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
  cudnnConvolutionDescriptor_t conv = nullptr;

  explicit Descs(const ConvParams& p) {
    to_int("x elements", p.n * p.h * p.w * p.cin);
    to_int("y elements", p.n * p.ho * p.wo * p.cout);
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&x));
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&y));
    CUDNN_CHECK(cudnnCreateFilterDescriptor(&w));
    CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&conv));
    // Input / input gradient: dims in N, C, H, W order, memory channels-last.
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(x, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, to_int("N", p.n),
                                           to_int("Cin", p.cin), to_int("H", p.h), to_int("W", p.w)));
    // Output / output gradient, likewise.
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(y, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, to_int("N", p.n),
                                           to_int("Cout", p.cout), to_int("Ho", p.ho), to_int("Wo", p.wo)));
    // Filter / filter gradient: K = Cout, C = Cin per group, memory KRSC (= OHWI).
    CUDNN_CHECK(cudnnSetFilter4dDescriptor(w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NHWC, to_int("Cout", p.cout),
                                           to_int("Cin/groups", p.cin / p.groups), to_int("kH", p.kh),
                                           to_int("kW", p.kw)));
    // Convolution: symmetric zero padding, strides, dilations; cross-correlation (no kernel flip),
    // fp32 accumulation; groups; FMA-only math (no TF32).
    CUDNN_CHECK(cudnnSetConvolution2dDescriptor(conv, to_int("pad_h", p.pad_h), to_int("pad_w", p.pad_w),
                                                to_int("stride_h", p.stride_h), to_int("stride_w", p.stride_w),
                                                to_int("dilation_h", p.dil_h), to_int("dilation_w", p.dil_w),
                                                CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    CUDNN_CHECK(cudnnSetConvolutionGroupCount(conv, to_int("groups", p.groups)));
    CUDNN_CHECK(cudnnSetConvolutionMathType(conv, CUDNN_FMA_MATH));
    int on = 0, oc = 0, oh = 0, ow = 0;
    CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(conv, x, w, &on, &oc, &oh, &ow));
    ENGINE_CHECK(on == p.n && oc == p.cout && oh == p.ho && ow == p.wo, "conv2d (cuDNN): output size [", on, ", ", oh,
                 ", ", ow, ", ", oc, "] differs from the engine's [", p.n, ", ", p.ho, ", ", p.wo, ", ", p.cout, "]");
  }
  ~Descs() {
    if (conv) cudnnDestroyConvolutionDescriptor(conv);
    if (w) cudnnDestroyFilterDescriptor(w);
    if (y) cudnnDestroyTensorDescriptor(y);
    if (x) cudnnDestroyTensorDescriptor(x);
  }
  Descs(const Descs&) = delete;
  Descs& operator=(const Descs&) = delete;
};

struct Entry {
  explicit Entry(const ConvParams& p) : d(p) {}
  Descs d;
  int algo = -1;
  size_t workspace = 0;
};

using Key = std::array<int64_t, 17>;
Key key_of(ConvPass pass, const ConvParams& p) {
  return {(int64_t)pass, p.n, p.h, p.w, p.cin, p.cout, p.kh, p.kw, p.ho, p.wo, p.stride_h, p.stride_w,
          p.pad_h, p.pad_w, p.dil_h, p.dil_w, p.groups};
}

// Guarded by handle_mutex().
std::map<Key, std::unique_ptr<Entry>>& cache() {
  static std::map<Key, std::unique_ptr<Entry>> c;
  return c;
}

bool fp32_math(cudnnMathType_t m) { return m == CUDNN_FMA_MATH || m == CUDNN_DEFAULT_MATH; }

// Picks the algorithm from Get_v7 candidates and a FindEx search (see the file comment). `Perf` is
// one of the cudnnConvolution*AlgoPerf_t structs; get(n, &count, perf) and find(n, &count, perf, ws,
// bytes) wrap the pass's calls.
template <class Perf, class Get, class Find>
void choose(Entry& e, const char* pass, int max_count, const Get& get, const Find& find, const CudnnWorkspaceFn& wsfn) {
  std::vector<Perf> cand((size_t)std::max(max_count, 1));
  int n = 0;
  CUDNN_CHECK(get(max_count, &n, cand.data()));
  cand.resize((size_t)n);
  auto usable = [](const Perf& r, size_t limit, bool deterministic) {
    return r.status == CUDNN_STATUS_SUCCESS && (!deterministic || r.determinism == CUDNN_DETERMINISTIC) &&
           fp32_math(r.mathType) && r.memory <= limit;
  };
  size_t search_ws = 0;
  for (const Perf& r : cand)
    if (usable(r, kMaxSearchWorkspace, false)) search_ws = std::max(search_ws, r.memory);
  std::vector<Perf> timed((size_t)std::max(max_count, 1));
  int m = 0;
  const cudnnStatus_t st = find(max_count, &m, timed.data(), wsfn(search_ws), search_ws);
  // Deterministic algorithms first; only if cuDNN has none for this shape, the fastest other one
  // (with a warning: results may then differ in the last bits from run to run).
  for (const bool det : {true, false}) {
    const Perf* pick = nullptr;
    if (st == CUDNN_STATUS_SUCCESS)
      for (int i = 0; i < m && !pick; ++i)  // sorted fastest first
        if (usable(timed[(size_t)i], search_ws, det)) pick = &timed[(size_t)i];
    for (size_t i = 0; i < cand.size() && !pick; ++i)  // heuristic order
      if (usable(cand[i], kMaxSearchWorkspace, det)) pick = &cand[i];
    if (pick) {
      e.algo = (int)pick->algo;
      e.workspace = pick->memory;
      if (!det)
        std::fprintf(stderr, "engine: conv2d: cuDNN has no deterministic %s algorithm for this shape; using algorithm %d\n",
                     pass, e.algo);
      return;
    }
  }
  fail("conv2d (cuDNN): no fp32 ", pass, " algorithm for this shape (search status ", cudnnGetErrorString(st), ")");
}

// The cache entry for (pass, p), choosing its algorithm on first use with the given buffers.
// Called with handle_mutex() held and the handle bound to the stream.
template <class Choose>
Entry& entry(ConvPass pass, const ConvParams& p, const Choose& choose_fn) {
  auto& c = cache();
  const Key k = key_of(pass, p);
  auto it = c.find(k);
  if (it != c.end()) return *it->second;
  auto e = std::make_unique<Entry>(p);
  choose_fn(*e);
  return *c.emplace(k, std::move(e)).first->second;
}

void* workspace_of(const Entry& e, const CudnnWorkspaceFn& wsfn) { return e.workspace ? wsfn(e.workspace) : nullptr; }

}  // namespace

void conv2d_fwd_cudnn(const ConvParams& p, const float* x, const float* w, float* y, const CudnnWorkspaceFn& wsfn,
                      cudaStream_t stream) {
  std::lock_guard<std::mutex> lock(handle_mutex());
  cudnnHandle_t h = handle();
  CUDNN_CHECK(cudnnSetStream(h, stream));
  Entry& e = entry(ConvPass::Fwd, p, [&](Entry& en) {
    int mx = 0;
    CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithmMaxCount(h, &mx));
    const Descs& d = en.d;
    choose<cudnnConvolutionFwdAlgoPerf_t>(
        en, "forward", mx,
        [&](int n, int* cnt, cudnnConvolutionFwdAlgoPerf_t* r) {
          return cudnnGetConvolutionForwardAlgorithm_v7(h, d.x, d.w, d.conv, d.y, n, cnt, r);
        },
        [&](int n, int* cnt, cudnnConvolutionFwdAlgoPerf_t* r, void* ws, size_t bytes) {
          return cudnnFindConvolutionForwardAlgorithmEx(h, d.x, x, d.w, w, d.conv, d.y, y, n, cnt, r, ws, bytes);
        },
        wsfn);
  });
  const float one = 1.f, zero = 0.f;
  CUDNN_CHECK(cudnnConvolutionForward(h, &one, e.d.x, x, e.d.w, w, e.d.conv, (cudnnConvolutionFwdAlgo_t)e.algo,
                                      workspace_of(e, wsfn), e.workspace, &zero, e.d.y, y));
}

void conv2d_bwd_data_cudnn(const ConvParams& p, const float* gy, const float* w, float* gx,
                           const CudnnWorkspaceFn& wsfn, cudaStream_t stream) {
  std::lock_guard<std::mutex> lock(handle_mutex());
  cudnnHandle_t h = handle();
  CUDNN_CHECK(cudnnSetStream(h, stream));
  Entry& e = entry(ConvPass::BwdData, p, [&](Entry& en) {
    int mx = 0;
    CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(h, &mx));
    const Descs& d = en.d;
    choose<cudnnConvolutionBwdDataAlgoPerf_t>(
        en, "backward-data", mx,
        [&](int n, int* cnt, cudnnConvolutionBwdDataAlgoPerf_t* r) {
          return cudnnGetConvolutionBackwardDataAlgorithm_v7(h, d.w, d.y, d.conv, d.x, n, cnt, r);
        },
        [&](int n, int* cnt, cudnnConvolutionBwdDataAlgoPerf_t* r, void* ws, size_t bytes) {
          return cudnnFindConvolutionBackwardDataAlgorithmEx(h, d.w, w, d.y, gy, d.conv, d.x, gx, n, cnt, r, ws,
                                                             bytes);
        },
        wsfn);
  });
  const float one = 1.f, zero = 0.f;
  CUDNN_CHECK(cudnnConvolutionBackwardData(h, &one, e.d.w, w, e.d.y, gy, e.d.conv,
                                           (cudnnConvolutionBwdDataAlgo_t)e.algo, workspace_of(e, wsfn), e.workspace,
                                           &zero, e.d.x, gx));
}

void conv2d_bwd_weights_cudnn(const ConvParams& p, const float* x, const float* gy, float* gw,
                              const CudnnWorkspaceFn& wsfn, cudaStream_t stream) {
  std::lock_guard<std::mutex> lock(handle_mutex());
  cudnnHandle_t h = handle();
  CUDNN_CHECK(cudnnSetStream(h, stream));
  Entry& e = entry(ConvPass::BwdWeights, p, [&](Entry& en) {
    int mx = 0;
    CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(h, &mx));
    const Descs& d = en.d;
    choose<cudnnConvolutionBwdFilterAlgoPerf_t>(
        en, "backward-filter", mx,
        [&](int n, int* cnt, cudnnConvolutionBwdFilterAlgoPerf_t* r) {
          return cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, d.x, d.y, d.conv, d.w, n, cnt, r);
        },
        [&](int n, int* cnt, cudnnConvolutionBwdFilterAlgoPerf_t* r, void* ws, size_t bytes) {
          return cudnnFindConvolutionBackwardFilterAlgorithmEx(h, d.x, x, d.y, gy, d.conv, d.w, gw, n, cnt, r, ws,
                                                               bytes);
        },
        wsfn);
  });
  const float one = 1.f, zero = 0.f;
  CUDNN_CHECK(cudnnConvolutionBackwardFilter(h, &one, e.d.x, x, e.d.y, gy, e.d.conv,
                                             (cudnnConvolutionBwdFilterAlgo_t)e.algo, workspace_of(e, wsfn),
                                             e.workspace, &zero, e.d.w, gw));
}

int conv2d_cudnn_algo(ConvPass pass, const ConvParams& p) {
  std::lock_guard<std::mutex> lock(handle_mutex());
  auto it = cache().find(key_of(pass, p));
  return it == cache().end() ? -1 : it->second->algo;
}

}  // namespace engine::kernels
