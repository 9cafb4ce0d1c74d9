// kernels_test.cpp -- correct kernels give the right answers under cuemu, invalid launches are
// rejected like on a GPU, and the emulated runtime API behaves.  Small shapes: also run under TSan.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "tests/emu/test_kernels.cuh"

#define CK(x) ASSERT_EQ((x), cudaSuccess)

namespace {

template <class T>
T* dev(const std::vector<T>& h) {
  void* p = nullptr;
  EXPECT_EQ(cudaMalloc(&p, h.size() * sizeof(T)), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(p, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
  return static_cast<T*>(p);
}
template <class T>
std::vector<T> host(const T* d, size_t n) {
  std::vector<T> h(n);
  EXPECT_EQ(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
  return h;
}

// g++ only (ptxas would flag the local array): device fp16/bf16 shims, mixed min/max and a 8 KiB
// local array per thread on the fiber stack.
__global__ void half_math(const __half* a, const __nv_bfloat16* b, float* out) {
  const unsigned t = threadIdx.x;
  float local[2048];
  for (int i = 0; i < 2048; ++i) local[i] = static_cast<float>(i);
  const __half h = __hfma(a[t], a[t], __float2half(1.f));
  const __nv_bfloat16 g = __hfma(b[t], b[t], __float2bfloat16(1.f));
  out[t] = __half2float(h) + __bfloat162float(g) + __half2float(hexp(__float2half(0.f))) + local[t] -
           static_cast<float>(t) + static_cast<float>(min(-1, 2u) > 0u) + max(0.5f, 1) - 2.f +
           __shfl_xor_sync(0xffffffffu, 0.f, 1);
}

TEST(EmuKernels, BlockSum) {
  const int n = 1000;
  std::vector<float> h(n);
  double ref = 0;
  for (int i = 0; i < n; ++i) ref += h[i] = static_cast<float>((i * 37) % 101) / 7.f;
  float* d_in = dev(h);
  float* d_out = dev(std::vector<float>{0.f});
  const int B = 256;
  GPU_LAUNCH((n + B - 1) / B, B, B * sizeof(float), 0, block_sum)(d_in, d_out, n);
  CK(cudaGetLastError());
  CK(cudaDeviceSynchronize());
  EXPECT_NEAR(host(d_out, 1)[0], ref, 1e-3 * ref);
  CK(cudaFree(d_in));
  CK(cudaFree(d_out));
}

TEST(EmuKernels, TransposeRagged70x45) {
  const int R = 70, C = 45;
  std::vector<float> a(R * C);
  for (int i = 0; i < R * C; ++i) a[i] = static_cast<float>(i);
  float* d_a = dev(a);
  float* d_t = dev(std::vector<float>(R * C, 0.f));
  GPU_LAUNCH(dim3((C + kTile - 1) / kTile, (R + kTile - 1) / kTile), dim3(kTile, kTile), 0, 0, transpose)
  (d_a, d_t, R, C);
  CK(cudaGetLastError());
  const auto t = host(d_t, R * C);
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) ASSERT_EQ(t[c * R + r], a[r * C + c]) << r << "," << c;
  CK(cudaFree(d_a));
  CK(cudaFree(d_t));
}

TEST(EmuKernels, WarpScanWidth16) {
  const int m = 96;
  std::vector<int> s(m);
  for (int i = 0; i < m; ++i) s[i] = i + 1;
  int* d_s = dev(s);
  int* d_o = dev(std::vector<int>(m, 0));
  GPU_LAUNCH(2, 64, 0, 0, warp_scan<int, 16>)(d_s, d_o, m);
  CK(cudaGetLastError());
  const auto o = host(d_o, m);
  for (int i = 0; i < m; ++i) {
    int acc = 0;
    for (int j = i - i % 16; j <= i; ++j) acc += s[j];
    EXPECT_EQ(o[i], acc) << i;
  }
  CK(cudaFree(d_s));
  CK(cudaFree(d_o));
}

TEST(EmuKernels, BallotAnyAll) {
  std::vector<int> in(64);
  unsigned ballot[2] = {0, 0};
  for (int t = 0; t < 64; ++t) {
    in[t] = t % 3 == 0;
    if (in[t]) ballot[t / 32] |= 1u << (t % 32);
  }
  int* d_in = dev(in);
  unsigned* d_out = dev(std::vector<unsigned>(7, 0));
  GPU_LAUNCH(1, 64, 0, 0, votes)(d_in, d_out);
  CK(cudaGetLastError());
  const auto o = host(d_out, 7);
  EXPECT_EQ(o[0], ballot[0]);
  EXPECT_EQ(o[3], ballot[1]);
  EXPECT_EQ(o[1], 1u);  // any(odd lane)
  EXPECT_EQ(o[4], 1u);
  EXPECT_EQ(o[2], 1u);  // all(t < 40): warp 0 yes, warp 1 no
  EXPECT_EQ(o[5], 0u);
  EXPECT_EQ(o[6], 64u);  // half-warp xor shuffles, counted by __syncthreads_count
  CK(cudaFree(d_in));
  CK(cudaFree(d_out));
}

TEST(EmuKernels, AtomicsOfEachType) {
  AtomicOut init{};
  init.band = ~0u;
  init.h = __float2half(0.f);
  AtomicOut* d = dev(std::vector<AtomicOut>{init});
  GPU_LAUNCH(2, 64, 0, 0, atomics)(d);
  CK(cudaGetLastError());
  const AtomicOut o = host(d, 1)[0];
  EXPECT_EQ(o.f, 64.f);
  EXPECT_EQ(o.d, 32.0);
  EXPECT_EQ(o.i, 128);
  EXPECT_EQ(o.u, 384u);
  EXPECT_EQ(o.ull, 128ull << 33);
  EXPECT_EQ(o.imin, -127);
  EXPECT_EQ(o.imax, 127);
  EXPECT_EQ(o.band, 0u);
  EXPECT_EQ(o.bor, ~0u);
  EXPECT_EQ(o.bxor, 0u);
  EXPECT_EQ(o.inc, 128u % 10u);
  EXPECT_EQ(__half2float(o.h), 128.f);
  EXPECT_EQ(o.exch, 77);
  EXPECT_EQ(o.cas, 128);
  CK(cudaFree(d));
}

TEST(EmuKernels, Grid3dBlocks3d) {
  const dim3 g(3, 2, 2), b(4, 2, 3);
  const int n = 3 * 2 * 2 * 4 * 2 * 3;
  int* d = dev(std::vector<int>(n, -1));
  GPU_LAUNCH(g, b, 0, 0, grid3d)(d);
  CK(cudaGetLastError());
  const auto o = host(d, n);
  for (int i = 0; i < n; ++i) EXPECT_EQ(o[i], i);
  CK(cudaFree(d));
}

TEST(EmuKernels, DynamicSmemAbove48KiBNeedsOptIn) {
  const int n = 16384;  // 64 KiB
  float* d = dev(std::vector<float>{0.f});
  GPU_LAUNCH(1, 256, n * sizeof(float), 0, big_smem)(d, n);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue);
  CK(cudaFuncSetAttribute(big_smem, cudaFuncAttributeMaxDynamicSharedMemorySize, n * 4));
  GPU_LAUNCH(1, 256, n * sizeof(float), 0, big_smem)(d, n);
  CK(cudaGetLastError());
  EXPECT_EQ(host(d, 1)[0], static_cast<float>(n));
  // The opt-in is per kernel.
  GPU_LAUNCH(1, 256, n * sizeof(float), 0, block_sum)(d, d, 1);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue);
  EXPECT_EQ(cudaFuncSetAttribute(big_smem, cudaFuncAttributeMaxDynamicSharedMemorySize, 300 * 1024),
            cudaErrorInvalidValue);
  CK(cudaGetLastError() == cudaErrorInvalidValue ? cudaSuccess : cudaErrorUnknown);
  CK(cudaFree(d));
}

TEST(EmuKernels, InvalidConfigsRejected) {
  float* d = dev(std::vector<float>(4, 0.f));
  const dim3 bad_blocks[] = {dim3(2048), dim3(0), dim3(1, 1, 65), dim3(32, 32, 2), dim3(1, 1025)};
  for (const dim3& b : bad_blocks) {
    GPU_LAUNCH(1, b, 0, 0, scale)(d, d, 4);
    EXPECT_EQ(cudaPeekAtLastError(), cudaErrorInvalidConfiguration);
    EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
    EXPECT_EQ(cudaGetLastError(), cudaSuccess);  // not sticky
  }
  const dim3 bad_grids[] = {dim3(0), dim3(1, 65536), dim3(1, 1, 65536), dim3(0x80000000u)};
  for (const dim3& g : bad_grids) {
    GPU_LAUNCH(g, 32, 0, 0, scale)(d, d, 4);
    EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  }
  GPU_LAUNCH(1, 4, 0, 0, scale)(d, d, 4);  // still usable afterwards
  CK(cudaGetLastError());
  CK(cudaFree(d));
}

TEST(EmuKernels, HalfMathAndLocalArrays) {
  std::vector<__half> a(32);
  std::vector<__nv_bfloat16> b(32);
  for (int i = 0; i < 32; ++i) {
    a[i] = __float2half(static_cast<float>(i % 4));
    b[i] = __float2bfloat16(static_cast<float>(i % 3));
  }
  __half* d_a = dev(a);
  __nv_bfloat16* d_b = dev(b);
  float* d_o = dev(std::vector<float>(32, 0.f));
  GPU_LAUNCH(1, 32, 0, 0, half_math)(d_a, d_b, d_o);
  CK(cudaGetLastError());
  const auto o = host(d_o, 32);
  for (int i = 0; i < 32; ++i) {
    const float x = static_cast<float>(i % 4), y = static_cast<float>(i % 3);
    EXPECT_EQ(o[i], x * x + 1.f + y * y + 1.f + 1.f + 1.f + 1.f - 2.f) << i;
  }
  CK(cudaFree(d_a));
  CK(cudaFree(d_b));
  CK(cudaFree(d_o));
}

TEST(EmuRuntime, MemoryChecks) {
  const size_t live = cuemuLiveAllocations();
  float* d = nullptr;
  CK(cudaMalloc(&d, 100 * sizeof(float)));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(d) % 256, 0u);
  EXPECT_EQ(cuemuLiveAllocations(), live + 1);
  std::vector<float> h(200, 1.f);
  auto v = host(d, 100);
  EXPECT_TRUE(std::isnan(v[0]));  // cudaMalloc memory is 0xff-filled, not zeroed
  testing::internal::CaptureStderr();
  EXPECT_EQ(cudaMemcpy(d, h.data(), 200 * sizeof(float), cudaMemcpyHostToDevice), cudaErrorInvalidValue);
  EXPECT_NE(testing::internal::GetCapturedStderr().find("cuemu: cudaMemcpy past the end of a device allocation"),
            std::string::npos);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemcpy(h.data(), d + 50, 60 * sizeof(float), cudaMemcpyDeviceToHost), cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemcpy(d, h.data(), 4, cudaMemcpyDeviceToHost), cudaErrorInvalidValue);  // wrong kind
  EXPECT_EQ(cudaMemset(d + 90, 0, 11 * sizeof(float)), cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemset(h.data(), 0, 4), cudaErrorInvalidValue);
  CK(cudaMemset(d, 0, 100 * sizeof(float)));
  CK(cudaMemcpy(d + 10, h.data(), 10 * sizeof(float), cudaMemcpyDefault));
  float* d2 = nullptr;
  CK(cudaMalloc(&d2, 100 * sizeof(float)));
  CK(cudaMemcpy(d2, d, 100 * sizeof(float), cudaMemcpyDeviceToDevice));
  CK(cudaMemcpy2D(d2, 10 * sizeof(float), h.data(), 20 * sizeof(float), 5 * sizeof(float), 10, cudaMemcpyHostToDevice));
  EXPECT_EQ(
      cudaMemcpy2D(d2, 20 * sizeof(float), h.data(), 20 * sizeof(float), 5 * sizeof(float), 10, cudaMemcpyHostToDevice),
      cudaErrorInvalidValue);  // 2-D extent runs past the allocation
  cudaPointerAttributes at{};
  CK(cudaPointerGetAttributes(&at, d + 3));
  EXPECT_EQ(at.type, cudaMemoryTypeDevice);
  CK(cudaPointerGetAttributes(&at, h.data()));
  EXPECT_EQ(at.type, cudaMemoryTypeUnregistered);
  EXPECT_EQ(cudaFree(h.data()), cudaErrorInvalidDevicePointer);
  EXPECT_EQ(cudaFree(d + 1), cudaErrorInvalidDevicePointer);
  void* pinned = nullptr;
  CK(cudaMallocHost(&pinned, 64));
  CK(cudaPointerGetAttributes(&at, pinned));
  EXPECT_EQ(at.type, cudaMemoryTypeHost);
  CK(cudaFreeHost(pinned));
  size_t free_b = 0, total_b = 0;
  CK(cudaMemGetInfo(&free_b, &total_b));
  EXPECT_GT(total_b, 0u);
  EXPECT_LE(free_b, total_b);
  EXPECT_EQ(cuemuCheckGuards(), 0);
  CK(cudaFree(d));
  CK(cudaFree(d2));
  EXPECT_EQ(cuemuLiveAllocations(), live);
  (void)cudaGetLastError();
}

TEST(EmuRuntime, StreamsEventsDevices) {
  cudaStream_t s;
  CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  cudaEvent_t a, b, nt;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  CK(cudaEventCreateWithFlags(&nt, cudaEventDisableTiming));
  float* d = dev(std::vector<float>(256, 1.f));
  CK(cudaEventRecord(a, s));
  GPU_LAUNCH(1, 256, 0, s, scale)(d, d, 256);
  CK(cudaEventRecord(b, s));
  CK(cudaStreamWaitEvent(s, b, 0));
  CK(cudaEventSynchronize(b));
  CK(cudaEventQuery(b));
  CK(cudaStreamQuery(s));
  CK(cudaStreamSynchronize(s));
  float ms = -1.f;
  CK(cudaEventElapsedTime(&ms, a, b));
  EXPECT_GE(ms, 0.f);
  EXPECT_EQ(cudaEventElapsedTime(&ms, a, nt), cudaErrorInvalidResourceHandle);
  (void)cudaGetLastError();
  EXPECT_EQ(host(d, 256)[255], 2.f);
  CK(cudaEventDestroy(a));
  CK(cudaEventDestroy(b));
  CK(cudaEventDestroy(nt));
  CK(cudaStreamDestroy(s));
  CK(cudaFree(d));

  int n = -1, dev_id = -1, v = 0;
  const char* old = std::getenv("CUDA_VISIBLE_DEVICES");
  const std::string saved = old ? old : "";
  unsetenv("CUDA_VISIBLE_DEVICES");
  CK(cudaGetDeviceCount(&n));
  EXPECT_EQ(n, 1);
  setenv("CUDA_VISIBLE_DEVICES", "", 1);
  EXPECT_EQ(cudaGetDeviceCount(&n), cudaErrorNoDevice);
  EXPECT_EQ(n, 0);
  setenv("CUDA_VISIBLE_DEVICES", "-1,0", 1);
  EXPECT_EQ(cudaGetDeviceCount(&n), cudaErrorNoDevice);
  setenv("CUDA_VISIBLE_DEVICES", "0", 1);
  CK(cudaGetDeviceCount(&n));
  EXPECT_EQ(n, 1);
  if (old)
    setenv("CUDA_VISIBLE_DEVICES", saved.c_str(), 1);
  else
    unsetenv("CUDA_VISIBLE_DEVICES");
  (void)cudaGetLastError();
  CK(cudaGetDevice(&dev_id));
  EXPECT_EQ(dev_id, 0);
  CK(cudaSetDevice(0));
  EXPECT_EQ(cudaSetDevice(1), cudaErrorInvalidDevice);
  cudaDeviceProp p;
  CK(cudaGetDeviceProperties(&p, 0));
  EXPECT_EQ(p.warpSize, 32);
  EXPECT_EQ(p.maxThreadsPerBlock, 1024);
  CK(cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, 0));
  EXPECT_GT(v, 48 * 1024);
  CK(cudaRuntimeGetVersion(&v));
  EXPECT_EQ(v, CUDART_VERSION);
  CK(cudaDriverGetVersion(&v));
  EXPECT_STREQ(cudaGetErrorName(cudaErrorInvalidConfiguration), "cudaErrorInvalidConfiguration");
  EXPECT_STREQ(cudaGetErrorString(cudaErrorInvalidValue), "invalid argument");
  EXPECT_STREQ(cudaGetErrorString(static_cast<cudaError_t>(12345)), "unrecognized error code");
  (void)cudaGetLastError();
}

// Stream capture: the captured work does not run at capture time, runs in order at every launch of
// the graph (reading the memory as it is then), and the calls a GPU refuses during a capture fail and
// invalidate it.
TEST(EmuRuntime, StreamCaptureRecordsAndReplays) {
  cudaStream_t s;
  CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  float* a = dev(std::vector<float>(256, 1.f));
  float* b = dev(std::vector<float>(256, 0.f));
  float* pinned = nullptr;
  CK(cudaMallocHost(reinterpret_cast<void**>(&pinned), 256 * sizeof(float)));
  int host_calls = 0;
  CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  cudaStreamCaptureStatus st;
  CK(cudaStreamIsCapturing(s, &st));
  EXPECT_EQ(st, cudaStreamCaptureStatusActive);
  GPU_LAUNCH(1, 256, 0, s, scale)(a, b, 256);                                   // b = 2a
  CK(cudaMemcpyAsync(a, b, 256 * sizeof(float), cudaMemcpyDeviceToDevice, s));  // a = b
  CK(cudaMemcpyAsync(pinned, a, 256 * sizeof(float), cudaMemcpyDeviceToHost, s));
  CK(cudaLaunchHostFunc(
      s, [](void* n) { ++*static_cast<int*>(n); }, &host_calls));
  CK(cudaMemsetAsync(b, 0, 4, s));
  cudaGraph_t g = nullptr;
  CK(cudaStreamEndCapture(s, &g));
  EXPECT_EQ(host(a, 256)[7], 1.f);  // nothing ran yet
  EXPECT_EQ(host_calls, 0);
  size_t nodes = 0;
  CK(cudaGraphGetNodes(g, nullptr, &nodes));
  EXPECT_EQ(nodes, 5u);
  cudaGraphExec_t exec = nullptr;
  CK(cudaGraphInstantiate(&exec, g, 0));
  CK(cudaGraphLaunch(exec, s));
  CK(cudaStreamSynchronize(s));
  EXPECT_EQ(host(a, 256)[7], 2.f);
  EXPECT_EQ(pinned[7], 2.f);
  EXPECT_EQ(host(b, 256)[0], 0.f);
  CK(cudaGraphLaunch(exec, s));  // reads a as it is now: 2 -> 4
  CK(cudaStreamSynchronize(s));
  EXPECT_EQ(host(a, 256)[255], 4.f);
  EXPECT_EQ(pinned[255], 4.f);
  EXPECT_EQ(host_calls, 2);
  CK(cudaGraphExecDestroy(exec));
  CK(cudaGraphDestroy(g));

  // Refused during a capture: a synchronisation, a synchronous copy, cudaMalloc (unless relaxed), a
  // copy to pageable memory. Each invalidates the capture; cudaStreamEndCapture then reports it.
  std::vector<float> pageable(256);
  auto refused = [&](const std::function<cudaError_t()>& call, cudaError_t expected) {
    CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
    EXPECT_EQ(call(), expected);
    CK(cudaStreamIsCapturing(s, &st));
    EXPECT_EQ(st, cudaStreamCaptureStatusInvalidated);
    cudaGraph_t bad = nullptr;
    EXPECT_EQ(cudaStreamEndCapture(s, &bad), cudaErrorStreamCaptureInvalidated);
    EXPECT_EQ(bad, nullptr);
    (void)cudaGetLastError();
  };
  refused([&] { return cudaStreamSynchronize(s); }, cudaErrorStreamCaptureUnsupported);
  refused([&] { return cudaMemcpy(pageable.data(), a, 16, cudaMemcpyDeviceToHost); }, cudaErrorStreamCaptureImplicit);
  refused([&] { return cudaMemcpyAsync(pageable.data(), a, 16, cudaMemcpyDeviceToHost, s); },
          cudaErrorStreamCaptureUnsupported);
  refused(
      [&] {
        void* p = nullptr;
        return cudaMalloc(&p, 64);
      },
      cudaErrorStreamCaptureUnsupported);
  // cudaMalloc is allowed once the thread's capture mode is relaxed (the caching allocator's way).
  CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
  CK(cudaThreadExchangeStreamCaptureMode(&mode));
  void* p = nullptr;
  CK(cudaMalloc(&p, 64));
  CK(cudaThreadExchangeStreamCaptureMode(&mode));
  EXPECT_EQ(mode, cudaStreamCaptureModeRelaxed);
  CK(cudaStreamEndCapture(s, &g));
  CK(cudaGraphDestroy(g));
  CK(cudaFree(p));
  // Outside a capture the work runs again (deferred: by the synchronisation).
  GPU_LAUNCH(1, 256, 0, s, scale)(a, b, 256);
  CK(cudaStreamSynchronize(s));
  EXPECT_EQ(host(b, 256)[3], 8.f);
  CK(cudaFreeHost(pinned));
  CK(cudaFree(a));
  CK(cudaFree(b));
  CK(cudaStreamDestroy(s));
}

// A second stream joins a capture by waiting on an event recorded in it (the fork of the NCCL
// communicator's collectives); its work is captured, not run, and replays in order; the capture may
// end only once the origin has waited for that work (the join). Querying an event recorded in the
// running capture is an error.
TEST(EmuRuntime, StreamsForkAndJoinACapture) {
  cudaStream_t s, side, other;
  CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  CK(cudaStreamCreateWithFlags(&side, cudaStreamNonBlocking));
  CK(cudaStreamCreateWithFlags(&other, cudaStreamNonBlocking));
  cudaEvent_t fork, join;
  CK(cudaEventCreateWithFlags(&fork, cudaEventDisableTiming));
  CK(cudaEventCreateWithFlags(&join, cudaEventDisableTiming));
  float* a = dev(std::vector<float>(64, 1.f));
  float* b = dev(std::vector<float>(64, 0.f));
  cudaStreamCaptureStatus st;

  CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
  GPU_LAUNCH(1, 64, 0, s, scale)(a, b, 64);  // b = 2a
  CK(cudaEventRecord(fork, s));
  CK(cudaStreamIsCapturing(side, &st));
  EXPECT_EQ(st, cudaStreamCaptureStatusNone);
  CK(cudaStreamWaitEvent(side, fork, 0));  // the fork
  CK(cudaStreamIsCapturing(side, &st));
  EXPECT_EQ(st, cudaStreamCaptureStatusActive);
  CK(cudaStreamIsCapturing(other, &st));
  EXPECT_EQ(st, cudaStreamCaptureStatusNone);
  GPU_LAUNCH(1, 64, 0, side, scale)(b, a, 64);  // a = 2b, on the side stream: captured
  CK(cudaEventRecord(join, side));
  CK(cudaStreamWaitEvent(s, join, 0));  // the join
  cudaGraph_t g = nullptr;
  CK(cudaStreamEndCapture(s, &g));
  EXPECT_EQ(host(a, 64)[5], 1.f);  // nothing ran
  CK(cudaStreamIsCapturing(side, &st));
  EXPECT_EQ(st, cudaStreamCaptureStatusNone);
  size_t nodes = 0;
  CK(cudaGraphGetNodes(g, nullptr, &nodes));
  EXPECT_EQ(nodes, 4u);  // two kernels, two event records
  cudaGraphExec_t exec = nullptr;
  CK(cudaGraphInstantiate(&exec, g, 0));
  CK(cudaGraphLaunch(exec, s));
  CK(cudaStreamSynchronize(s));
  EXPECT_EQ(host(a, 64)[5], 4.f);
  CK(cudaGraphLaunch(exec, s));
  CK(cudaStreamSynchronize(s));
  EXPECT_EQ(host(a, 64)[63], 16.f);
  CK(cudaGraphExecDestroy(exec));
  CK(cudaGraphDestroy(g));

  // Work on the side stream after its last join: the capture cannot end.
  CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
  CK(cudaEventRecord(fork, s));
  CK(cudaStreamWaitEvent(side, fork, 0));
  CK(cudaEventRecord(join, side));
  CK(cudaStreamWaitEvent(s, join, 0));
  GPU_LAUNCH(1, 64, 0, side, scale)(a, b, 64);  // never joined
  EXPECT_EQ(cudaStreamEndCapture(s, &g), cudaErrorStreamCaptureUnjoined);
  EXPECT_EQ(g, nullptr);
  (void)cudaGetLastError();
  EXPECT_EQ(host(b, 64)[0], 8.f);  // b = 2a from the last replay (a = 4); the unjoined kernel never ran
  // After the capture the side stream runs its work again (deferred: by the synchronisation).
  GPU_LAUNCH(1, 64, 0, side, scale)(a, b, 64);
  CK(cudaStreamSynchronize(side));
  EXPECT_EQ(host(b, 64)[0], 32.f);

  // Invalid during a capture, which is lost: querying an event recorded in it, and a capturing
  // stream waiting on an event recorded outside it (unless the wait is marked external).
  cudaEvent_t outside;
  CK(cudaEventCreateWithFlags(&outside, cudaEventDisableTiming));
  CK(cudaEventRecord(outside, other));
  CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
  CK(cudaEventRecord(fork, s));
  EXPECT_EQ(cudaEventQuery(fork), cudaErrorCapturedEvent);
  EXPECT_EQ(cudaStreamEndCapture(s, &g), cudaErrorStreamCaptureInvalidated);
  (void)cudaGetLastError();
  CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
  EXPECT_EQ(cudaStreamWaitEvent(s, outside, 0), cudaErrorStreamCaptureIsolation);
  EXPECT_EQ(cudaStreamEndCapture(s, &g), cudaErrorStreamCaptureInvalidated);
  (void)cudaGetLastError();
  CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
  CK(cudaStreamWaitEvent(s, outside, cudaEventWaitExternal));
  CK(cudaStreamEndCapture(s, &g));
  CK(cudaGraphDestroy(g));
  CK(cudaEventDestroy(outside));
  CK(cudaEventDestroy(fork));
  CK(cudaEventDestroy(join));
  CK(cudaFree(a));
  CK(cudaFree(b));
  CK(cudaStreamDestroy(s));
  CK(cudaStreamDestroy(side));
  CK(cudaStreamDestroy(other));
}

// Potentially unsafe calls (cudaMalloc) from another thread during a capture: ignored by a
// thread-local capture, refused (and the capture lost) by a global one; never refused in a thread
// whose own mode is relaxed.
TEST(EmuRuntime, CaptureModesAndOtherThreads) {
  cudaStream_t s;
  CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  auto malloc_in_other_thread = [](bool relaxed) {
    cudaError_t e = cudaSuccess;
    std::thread([&] {
      if (relaxed) {
        cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
        CK(cudaThreadExchangeStreamCaptureMode(&mode));
      }
      void* p = nullptr;
      e = cudaMalloc(&p, 64);
      if (e == cudaSuccess) CK(cudaFree(p));
    }).join();
    (void)cudaGetLastError();
    return e;
  };
  cudaGraph_t g = nullptr;
  CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  EXPECT_EQ(malloc_in_other_thread(false), cudaSuccess);
  CK(cudaStreamEndCapture(s, &g));
  CK(cudaGraphDestroy(g));
  CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
  EXPECT_EQ(malloc_in_other_thread(true), cudaSuccess);
  EXPECT_EQ(malloc_in_other_thread(false), cudaErrorStreamCaptureUnsupported);
  EXPECT_EQ(cudaStreamEndCapture(s, &g), cudaErrorStreamCaptureInvalidated);
  (void)cudaGetLastError();
  CK(cudaStreamDestroy(s));
}

// Devices: the machine's CUEMU_DEVICE_COUNT, selected by CUDA_VISIBLE_DEVICES with the driver's
// rules; the current device is per thread.
// Deferred streams (CUEMU_DEFER_STREAMS): the host may ask for more of a stream while the device runs
// one of its operations (here a host function held until the test releases it), and the waits among
// the new operations must still bring in what they wait for.
std::atomic<bool> g_started{false}, g_release{false};
TEST(EmuRuntime, HostAsksWhileTheDeviceRuns) {
  if (const char* v = std::getenv("CUEMU_DEFER_STREAMS"); v && std::string(v) == "0")
    GTEST_SKIP() << "CUEMU_DEFER_STREAMS=0: the host function would run (and wait) at once";
  cudaStream_t s, t;
  CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  CK(cudaStreamCreateWithFlags(&t, cudaStreamNonBlocking));
  float* a = dev(std::vector<float>(64, 1.f));
  float* b = dev(std::vector<float>(64, 0.f));
  cudaEvent_t written;
  CK(cudaEventCreateWithFlags(&written, cudaEventDisableTiming));
  g_started = g_release = false;
  CK(cudaLaunchHostFunc(
      s,
      [](void*) {
        g_started = true;
        while (!g_release) std::this_thread::yield();
      },
      nullptr));
  EXPECT_EQ(cudaStreamQuery(s), cudaErrorNotReady);  // the device starts the host function
  while (!g_started) std::this_thread::yield();
  GPU_LAUNCH(1, 64, 0, t, scale)(a, a, 64);  // a = 2
  CK(cudaEventRecord(written, t));
  CK(cudaStreamWaitEvent(s, written, 0));
  GPU_LAUNCH(1, 64, 0, s, scale)(a, b, 64);  // b = 2a = 4
  (void)cudaStreamQuery(s);                  // asks for the wait (and so t) while the host function runs
  g_release = true;
  CK(cudaStreamSynchronize(s));
  EXPECT_EQ(host(b, 64)[17], 4.f);
  CK(cudaEventDestroy(written));
  CK(cudaStreamDestroy(s));
  CK(cudaStreamDestroy(t));
  CK(cudaFree(a));
  CK(cudaFree(b));
}

TEST(EmuRuntime, DeviceCountAndCurrentDevice) {
  const char* saved = std::getenv("CUDA_VISIBLE_DEVICES");
  const std::string keep = saved ? saved : "";
  auto count = [](const char* visible) {
    if (visible)
      setenv("CUDA_VISIBLE_DEVICES", visible, 1);
    else
      unsetenv("CUDA_VISIBLE_DEVICES");
    int n = -1;
    (void)cudaGetDeviceCount(&n);
    (void)cudaGetLastError();
    return n;
  };
  setenv("CUEMU_DEVICE_COUNT", "4", 1);
  EXPECT_EQ(count(nullptr), 4);
  EXPECT_EQ(count("0,1,3"), 3);
  EXPECT_EQ(count(" 2 , 0"), 2);
  EXPECT_EQ(count("1,0,5,2"), 2);  // 5 is not a device of the machine: it and what follows are hidden
  EXPECT_EQ(count("0,-1,1"), 1);
  EXPECT_EQ(count("0,x,1"), 1);
  EXPECT_EQ(count("0,1,0"), 0);  // a repeated ordinal hides every device
  EXPECT_EQ(count(""), 0);
  EXPECT_EQ(count("-1"), 0);
  count(nullptr);
  setenv("CUEMU_DEVICE_COUNT", "2", 1);
  CK(cudaSetDevice(1));
  int d = -1;
  CK(cudaGetDevice(&d));
  EXPECT_EQ(d, 1);
  std::thread([] {
    int other = -1;
    CK(cudaGetDevice(&other));
    EXPECT_EQ(other, 0);
  }).join();
  EXPECT_EQ(cudaSetDevice(2), cudaErrorInvalidDevice);
  (void)cudaGetLastError();
  CK(cudaSetDevice(0));
  unsetenv("CUEMU_DEVICE_COUNT");
  EXPECT_EQ(count(nullptr), 1);
  if (saved) setenv("CUDA_VISIBLE_DEVICES", keep.c_str(), 1);
}

}  // namespace
