// bugs_test.cpp -- the bug catalogue: each deliberately broken kernel in bug_kernels.cuh must be
// caught, either as a fatal "cuemu:" diagnostic naming the kernel statement (death tests), as a
// visibly wrong result (NaN from the 0xff fill, order-dependent results), or by ASan.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "tests/emu/bug_kernels.cuh"

namespace {

#if defined(CUEMU_ASAN)
constexpr bool kAsan = true;
#else
constexpr bool kAsan = false;
#endif
#if defined(CUEMU_FIBERS)
constexpr bool kFibers = true;
#else
constexpr bool kFibers = false;
#endif

// Sets an environment variable for one scope (the launcher reads the knobs at every launch).
struct ScopedEnv {
  std::string name, old;
  bool had;
  ScopedEnv(const char* n, const char* v) : name(n), had(std::getenv(n) != nullptr) {
    if (had) old = std::getenv(n);
    setenv(n, v, 1);
  }
  ~ScopedEnv() {
    if (had)
      setenv(name.c_str(), old.c_str(), 1);
    else
      unsetenv(name.c_str());
  }
};

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
std::vector<float> iota64() {
  std::vector<float> v(64);
  for (int i = 0; i < 64; ++i) v[i] = static_cast<float>(i);
  return v;
}

class EmuBugs : public testing::Test {
 protected:
  void SetUp() override { testing::FLAGS_gtest_death_test_style = "threadsafe"; }
};

// Missing __syncthreads: in fiber mode each thread runs to the end before the next starts, so the
// neighbour's slot still holds the 0xff fill (NaN); with CUEMU_SCHED_SEED the pattern changes but
// stays wrong.  Under TSan the same kernel is a reported data race (emu_tsan_missing_sync).
TEST_F(EmuBugs, MissingSyncthreadsGivesWrongResults) {
  if (!kFibers) GTEST_SKIP() << "thread mode: the result is timing-dependent; TSan reports the race";
  auto v = iota64();
  float* in = dev(v);
  float* out = dev(std::vector<float>(64, 0.f));
  for (const char* seed : {"0", "1", "2"}) {
    ScopedEnv e("CUEMU_SCHED_SEED", seed);
    for (float& x : v) x += 100.f;  // new values each run: stale shared memory (ASan builds) is wrong too
    ASSERT_EQ(cudaMemcpy(in, v.data(), 64 * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
    GPU_LAUNCH(1, 64, 0, 0, missing_sync)(in, out);
    const auto r = host(out, 64);
    int wrong = 0;
    for (int t = 0; t < 64; ++t) wrong += r[t] != v[t] + v[(t + 1) % 64];
    EXPECT_GT(wrong, 0) << "seed " << seed;
  }
  cudaFree(in);
  cudaFree(out);
}

TEST_F(EmuBugs, SharedMemoryRaceInReduction) {
  if (!kFibers) GTEST_SKIP() << "thread mode: timing-dependent; TSan reports the race";
  float* in = dev(std::vector<float>(64, 1.f));
  float* out = dev(std::vector<float>{0.f});
  GPU_LAUNCH(1, 64, 0, 0, reduce_race)(in, out);
  EXPECT_NE(host(out, 1)[0], 64.f);  // thread 0 sums before the others have added their pairs
  cudaFree(in);
  cudaFree(out);
}

TEST_F(EmuBugs, GlobalOutOfBoundsWrite) {
  float* in = dev(std::vector<float>(64, 1.f));
  float* out = dev(std::vector<float>(64, 0.f));
  // 80 threads on 64 elements: the overrun stays inside the 64-byte guard zone (a longer one would
  // scribble over malloc's own data first).
  if (kAsan)
    EXPECT_DEATH(GPU_LAUNCH(1, 80, 0, 0, global_oob)(in, out, 64), "AddressSanitizer: heap-buffer-overflow");
  else
    EXPECT_DEATH(
        GPU_LAUNCH(1, 80, 0, 0, global_oob)(in, out, 64),
        "cuemu: kernel wrote outside a device allocation: base 0x[0-9a-f]+, size 256, guard after.*kernel global_oob");
  cudaFree(in);
  cudaFree(out);
}

TEST_F(EmuBugs, GlobalOutOfBoundsReadSeesNaN) {
  if (kAsan) GTEST_SKIP() << "ASan reports the read itself (GlobalOutOfBoundsWrite)";
  float* in = dev(std::vector<float>(64, 1.f));
  float* out = dev(std::vector<float>(80, 0.f));
  GPU_LAUNCH(1, 80, 0, 0, global_oob)(in, out, 64);  // reads in[64..79]: the guard zone
  const auto r = host(out, 80);
  for (int i = 64; i < 80; ++i) EXPECT_TRUE(std::isnan(r[i])) << i;
  EXPECT_EQ(cuemuCheckGuards(), 0);
  cudaFree(in);
  cudaFree(out);
}

TEST_F(EmuBugs, GuardCheckReportsCorruption) {
  if (kAsan) GTEST_SKIP() << "no guard zones under ASan";
  float* d = dev(std::vector<float>(8, 0.f));
  {
    cuemu::DeviceAccess as_a_kernel;  // device memory is closed to host code (CUEMU_PROTECT_DEVICE)
    d[8] = 1.f;                       // a write one past the end, as a kernel would do it
  }
  testing::internal::CaptureStderr();
  EXPECT_EQ(cuemuCheckGuards(), 1);
  EXPECT_NE(testing::internal::GetCapturedStderr().find("size 32: guard after it overwritten"), std::string::npos);
  EXPECT_DEATH(cudaFree(d), "cuemu: cudaFree: device allocation base 0x[0-9a-f]+, size 32: guard after it overwritten");
}

TEST_F(EmuBugs, SharedOutOfBounds) {
  float* out = dev(std::vector<float>(64, 0.f));
  if (kAsan) {
    // UBSan's bounds check sees the static array index first (it aborts: -fno-sanitize-recover).
    EXPECT_DEATH(GPU_LAUNCH(1, 64, 0, 0, smem_oob)(out),
                 "AddressSanitizer: global-buffer-overflow|runtime error: index 64 out of bounds");
    EXPECT_DEATH(GPU_LAUNCH(1, 64, 64 * sizeof(float), 0, dyn_smem_oob)(out), "AddressSanitizer: heap-buffer-overflow");
  } else {  // the read lands in filled memory: NaN
    GPU_LAUNCH(1, 64, 64 * sizeof(float), 0, dyn_smem_oob)(out);
    EXPECT_TRUE(std::isnan(host(out, 64)[63]));
  }
  cudaFree(out);
}

TEST_F(EmuBugs, DivergentBarrier) {
  float* out = dev(std::vector<float>(64, 0.f));
  EXPECT_DEATH(GPU_LAUNCH(1, 64, 0, 0, divergent_barrier)(out),
               "cuemu: .*returned while others wait at __syncthreads.*bug_kernels.cuh:42:.*kernel divergent_barrier");
  EXPECT_DEATH(GPU_LAUNCH(1, 64, 0, 0, two_barriers)(out), "cuemu: divergent __syncthreads.*bug_kernels.cuh:46:");
  cudaFree(out);
}

TEST_F(EmuBugs, EarlyReturnBeforeBarrier) {
  float* in = dev(std::vector<float>(64, 1.f));
  float* out = dev(std::vector<float>(64, 0.f));
  EXPECT_DEATH(GPU_LAUNCH(1, 64, 0, 0, early_return)(in, out, 40),
               "cuemu: .*returned while others wait at __syncthreads.*bug_kernels.cuh:54:");
  cudaFree(in);
  cudaFree(out);
}

TEST_F(EmuBugs, FullMaskShuffleAfterExit) {
  float* in = dev(std::vector<float>(64, 1.f));
  float* out = dev(std::vector<float>(64, 0.f));
  EXPECT_DEATH(GPU_LAUNCH(1, 64, 0, 0, full_mask_after_exit)(in, out, 40),
               "cuemu: warp collective: .*named in the mask (has )?returned.*bug_kernels.cuh:61:");
  cudaFree(in);
  cudaFree(out);
}

TEST_F(EmuBugs, ShuffleOfLaneOutsideMask) {
  float* in = dev(std::vector<float>(32, 1.f));
  float* out = dev(std::vector<float>(32, 0.f));
  EXPECT_DEATH(GPU_LAUNCH(1, 32, 0, 0, shfl_outside_mask)(in, out),
               "cuemu: shuffle reads lane (1[6-9]|2[0-3]), which is not in the mask.*bug_kernels.cuh:67:");
  cudaFree(in);
  cudaFree(out);
}

TEST_F(EmuBugs, ShuffleBarrierDeadlock) {
  float* out = dev(std::vector<float>(32, 0.f));
  // Fibers see it structurally; OS threads through the watchdog.
  EXPECT_DEATH(
      {
        ScopedEnv e("CUEMU_TIMEOUT_MS", "300");
        GPU_LAUNCH(1, 32, 0, 0, shfl_vs_barrier)(out);
      },
      kFibers ? "cuemu: deadlock: this warp collective can never complete.*bug_kernels.cuh:72:"
              : "cuemu: watchdog: no progress for 300 ms in kernel shfl_vs_barrier(.|\n)*bug_kernels.cuh:72");
  cudaFree(out);
}

TEST_F(EmuBugs, SpinOnAnotherBlockHitsWatchdog) {
  int* flag = dev(std::vector<int>{0});
  EXPECT_DEATH(
      {
        ScopedEnv e("CUEMU_TIMEOUT_MS", "300");
        ScopedEnv b("CUEMU_SHUFFLE_BLOCKS", "0");
        GPU_LAUNCH(2, 32, 0, 0, spin_on_other_block)(flag);
      },
      "cuemu: watchdog: no progress for 300 ms in kernel spin_on_other_block");
  cudaFree(flag);
}

TEST_F(EmuBugs, BlockOrderDependenceExposedByShuffle) {
  int* o = dev(std::vector<int>(64, 0));
  auto run = [&](const char* seed) {
    ScopedEnv e("CUEMU_SHUFFLE_BLOCKS", seed);
    EXPECT_EQ(cudaMemset(o, 0, 64 * sizeof(int)), cudaSuccess);
    GPU_LAUNCH(64, 32, 0, 0, order_dependent)(o);
    const auto r = host(o, 64);
    for (int b = 0; b < 64; ++b)
      if (r[b] != b + 1) return false;
    return true;
  };
  EXPECT_TRUE(run("0"));   // in order it happens to work ...
  EXPECT_FALSE(run("3"));  // ... a shuffled order shows the dependence
  cudaFree(o);
}

TEST_F(EmuBugs, UninitialisedDeviceMemoryIsNaN) {
  float* in = dev(std::vector<float>(64, 1.f));
  float* acc = nullptr;
  ASSERT_EQ(cudaMalloc(&acc, sizeof(float)), cudaSuccess);  // forgot cudaMemset(acc, 0, 4)
  GPU_LAUNCH(1, 64, 0, 0, accumulate)(in, acc);
  EXPECT_TRUE(std::isnan(host(acc, 1)[0]));
  cudaFree(in);
  cudaFree(acc);
}

TEST_F(EmuBugs, UninitialisedSharedMemoryIsNaN) {
  if (kAsan) GTEST_SKIP() << "static __shared__ is not filled under ASan";
  float* in = dev(std::vector<float>(64, 1.f));
  float* out = dev(std::vector<float>{0.f});
  GPU_LAUNCH(1, 64, 0, 0, partial_tile)(in, out, 40);
  EXPECT_TRUE(std::isnan(host(out, 1)[0]));
  cudaFree(in);
  cudaFree(out);
}

TEST_F(EmuBugs, MemcpyPastAllocation) {
  float* d = dev(std::vector<float>(128, 0.f));
  std::vector<float> h(256, 1.f);
  testing::internal::CaptureStderr();
  EXPECT_EQ(cudaMemcpy(d, h.data(), 256 * sizeof(float), cudaMemcpyHostToDevice), cudaErrorInvalidValue);
  EXPECT_NE(testing::internal::GetCapturedStderr().find("cuemu: cudaMemcpy past the end of a device allocation"),
            std::string::npos);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue);
  EXPECT_DEATH(
      {
        ScopedEnv e("CUEMU_ABORT_ON_ERROR", "1");
        (void)cudaMemcpy(d, h.data(), 256 * sizeof(float), cudaMemcpyHostToDevice);
      },
      "cuemu: cudaMemcpy past the end of a device allocation.*cudaErrorInvalidValue");
  cudaFree(d);
}

// A host address given to a kernel (a buffer never uploaded): the emulator's threads could read it,
// a GPU faults. Pinned host memory, device memory and the end of a device allocation (an empty
// range's pointer) are addressable.
TEST_F(EmuBugs, HostPointerArgument) {
  std::vector<float> pageable(64, 1.f);
  float* out = dev(std::vector<float>(64, 0.f));
  EXPECT_DEATH(GPU_LAUNCH(1, 64, 0, 0, missing_sync)(pageable.data(), out),
               "cuemu: launch of missing_sync at .*bugs_test.cpp:[0-9]+: argument 1 is 0x[0-9a-f]+, which is "
               "neither device memory \\(cudaMalloc\\) nor pinned host memory");
  float* in = dev(std::vector<float>(64, 2.f));
  EXPECT_DEATH(GPU_LAUNCH(1, 64, 0, 0, missing_sync)(in, pageable.data()), "argument 2 is 0x[0-9a-f]+, which is");
  float on_stack[4] = {};
  EXPECT_DEATH(GPU_LAUNCH(1, 64, 0, 0, bounded_scale)(in, on_stack, 0), "argument 2 is 0x[0-9a-f]+, which is");
  void* pinned = nullptr;
  ASSERT_EQ(cudaMallocHost(&pinned, 64 * sizeof(float)), cudaSuccess);
  GPU_LAUNCH(1, 64, 0, 0, bounded_scale)(in, static_cast<float*>(pinned), 64);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  EXPECT_EQ(static_cast<float*>(pinned)[63], 4.f);
  GPU_LAUNCH(1, 64, 0, 0, bounded_scale)(in, out + 64, 0);  // an empty range at the allocation's end
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  // Pointer members of a struct argument that lists them (device_pointers()) are checked too.
  EXPECT_DEATH(GPU_LAUNCH(1, 64, 0, 0, bounded_scale_struct)(ScaleArgs{in, pageable.data(), 64}),
               "cuemu: launch of bounded_scale_struct at .*bugs_test.cpp:[0-9]+: argument 1's pointer member is "
               "0x[0-9a-f]+, which is neither device memory");
  GPU_LAUNCH(1, 64, 0, 0, bounded_scale_struct)(ScaleArgs{in, out, 64});
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  EXPECT_EQ(host(out, 64)[5], 4.f);
  cudaFreeHost(pinned);
  cudaFree(in);
  cudaFree(out);
}

// Host code dereferencing a device pointer works on the emulator's host memory but not on a GPU.
// With CUEMU_PROTECT_DEVICE=1 (the default; read at a process's first cudaMalloc, so in the death
// test's own process) device memory is closed to the host outside the runtime's work: the read
// faults and is named, while kernels, copies and memsets on the same memory still work.
TEST_F(EmuBugs, HostReadOfDeviceMemory) {
  if (kAsan) GTEST_SKIP() << "the protection is off under ASan";
  ScopedEnv protect("CUEMU_PROTECT_DEVICE", "1");
  auto host_read = [] {
    float* d = nullptr;
    if (cudaMalloc(reinterpret_cast<void**>(&d), 64 * sizeof(float)) != cudaSuccess) std::abort();
    if (cudaMemset(d, 0, 64 * sizeof(float)) != cudaSuccess) std::abort();
    std::vector<float> ones(64, 1.f);
    float* in = nullptr;
    if (cudaMalloc(reinterpret_cast<void**>(&in), 64 * sizeof(float)) != cudaSuccess) std::abort();
    if (cudaMemcpy(in, ones.data(), 64 * sizeof(float), cudaMemcpyHostToDevice) != cudaSuccess) std::abort();
    GPU_LAUNCH(1, 64, 0, 0, bounded_scale)(in, d, 64);
    float back[64];
    if (cudaMemcpy(back, d, sizeof back, cudaMemcpyDeviceToHost) != cudaSuccess || back[63] != 2.f) std::abort();
    std::fprintf(stderr, "device work done\n");
    std::fprintf(stderr, "%f\n", static_cast<double>(d[5]));  // the bug: a device pointer read on the host
  };
  EXPECT_DEATH(host_read(),
               "device work done\n.*cuemu: host code touched device memory at 0x[0-9a-f]+ \\(allocation 0x[0-9a-f]+ "
               "of 256 bytes\\) outside a kernel, copy or library call");
}

// Missing stream synchronisation. A GPU runs a stream's work some time after it is enqueued, so a
// program that reads a result without waiting for it may pass by luck. The emulator runs the work of
// created streams as late as CUDA allows (CUEMU_DEFER_STREAMS, on by default), so each of these
// mistakes reads stale or NaN data every time, while the synchronised variant reads the result.
bool deferred_streams() {
  const char* v = std::getenv("CUEMU_DEFER_STREAMS");
  return !v || !*v || std::strtol(v, nullptr, 0) != 0;
}
TEST_F(EmuBugs, MissingStreamSynchronisation) {
  if (!deferred_streams()) GTEST_SKIP() << "CUEMU_DEFER_STREAMS=0: streams run their work at once";
  float* one = dev(std::vector<float>(64, 1.f));
  float* out = dev(std::vector<float>(64, 0.f));
  cudaStream_t s, blocking, other;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  ASSERT_EQ(cudaStreamCreateWithFlags(&other, cudaStreamNonBlocking), cudaSuccess);
  ASSERT_EQ(cudaStreamCreate(&blocking), cudaSuccess);

  // 1. cudaMemcpy runs on the legacy default stream, which does not wait for a non-blocking stream.
  GPU_LAUNCH(1, 64, 0, s, bounded_scale)(one, out, 64);
  EXPECT_EQ(host(out, 64)[9], 0.f);  // the bug: the kernel has not run
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  EXPECT_EQ(host(out, 64)[9], 2.f);
  // ... but it does wait for a blocking one (created without cudaStreamNonBlocking).
  GPU_LAUNCH(1, 64, 0, blocking, bounded_scale)(out, out, 64);
  EXPECT_EQ(host(out, 64)[9], 4.f);

  // 2. An asynchronous copy into pinned memory, read before the stream is synchronised: 0xff bytes.
  float* pinned = nullptr;
  ASSERT_EQ(cudaMallocHost(reinterpret_cast<void**>(&pinned), 64 * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMemcpyAsync(pinned, out, 64 * sizeof(float), cudaMemcpyDeviceToHost, s), cudaSuccess);
  EXPECT_TRUE(std::isnan(pinned[9]));  // the bug
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  EXPECT_EQ(pinned[9], 4.f);
  // A pinned source rewritten before its copy has run: the copy takes what is there when it runs.
  for (int i = 0; i < 64; ++i) pinned[i] = 5.f;
  ASSERT_EQ(cudaMemcpyAsync(out, pinned, 64 * sizeof(float), cudaMemcpyHostToDevice, s), cudaSuccess);
  pinned[9] = 6.f;  // the bug: the host reuses the buffer too early
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  EXPECT_EQ(host(out, 64)[9], 6.f);

  // 3. A stream that reads what another writes, without waiting on an event recorded after it: the
  // reader runs first. With the wait, the writer runs first.
  float* mid = dev(std::vector<float>(64, 0.f));
  GPU_LAUNCH(1, 64, 0, s, bounded_scale)(one, mid, 64);      // mid = 2
  GPU_LAUNCH(1, 64, 0, other, bounded_scale)(mid, out, 64);  // out = 2 mid, without a wait
  ASSERT_EQ(cudaStreamSynchronize(other), cudaSuccess);
  EXPECT_EQ(host(out, 64)[9], 0.f);  // the bug: mid was still 0
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  cudaEvent_t written, t0;
  ASSERT_EQ(cudaEventCreate(&written), cudaSuccess);
  ASSERT_EQ(cudaEventCreate(&t0), cudaSuccess);
  ASSERT_EQ(cudaEventRecord(t0, s), cudaSuccess);
  GPU_LAUNCH(1, 64, 0, s, bounded_scale)(mid, mid, 64);  // mid = 4
  ASSERT_EQ(cudaEventRecord(written, s), cudaSuccess);
  ASSERT_EQ(cudaStreamWaitEvent(other, written, 0), cudaSuccess);
  GPU_LAUNCH(1, 64, 0, other, bounded_scale)(mid, out, 64);  // out = 8
  float ms = 0.f;
  EXPECT_EQ(cudaEventElapsedTime(&ms, t0, written), cudaErrorNotReady);  // not run yet
  (void)cudaGetLastError();
  ASSERT_EQ(cudaStreamSynchronize(other), cudaSuccess);
  EXPECT_EQ(host(out, 64)[9], 8.f);
  ASSERT_EQ(cudaEventElapsedTime(&ms, t0, written), cudaSuccess);  // other's wait ran s up to `written`

  // 4. Polling: a query asks the device to run the work and reports it not ready until it has.
  GPU_LAUNCH(1, 64, 0, s, bounded_scale)(one, out, 64);
  ASSERT_EQ(cudaEventRecord(written, s), cudaSuccess);
  EXPECT_EQ(cudaEventQuery(written), cudaErrorNotReady);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);  // (not an error)
  int polls = 0;
  while (cudaEventQuery(written) == cudaErrorNotReady && ++polls < 100000) std::this_thread::yield();
  EXPECT_EQ(cudaEventQuery(written), cudaSuccess);
  EXPECT_EQ(host(out, 64)[9], 2.f);

  // 5. Freeing memory waits for every stream's queued work (cudaFree synchronises the device).
  int ran = 0;
  ASSERT_EQ(cudaLaunchHostFunc(
                other, [](void* n) { ++*static_cast<int*>(n); }, &ran),
            cudaSuccess);
  EXPECT_EQ(ran, 0);
  ASSERT_EQ(cudaFree(mid), cudaSuccess);
  EXPECT_EQ(ran, 1);

  cudaEventDestroy(written);
  cudaEventDestroy(t0);
  cudaFreeHost(pinned);
  cudaStreamDestroy(s);
  cudaStreamDestroy(other);
  cudaStreamDestroy(blocking);
  cudaFree(one);
  cudaFree(out);
}

// CUDA forbids CUDA calls in a host function; one that waits for stream work would never return.
TEST_F(EmuBugs, HostFunctionWaitingForStreamWork) {
  if (!deferred_streams()) GTEST_SKIP() << "CUEMU_DEFER_STREAMS=0: host functions run at once";
  EXPECT_DEATH(
      {
        cudaStream_t s;
        if (cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) != cudaSuccess) std::abort();
        cudaLaunchHostFunc(
            s, [](void* p) { cudaStreamSynchronize(*static_cast<cudaStream_t*>(p)); }, &s);
        cudaStreamSynchronize(s);
      },
      "cuemu: a call that waits for stream work was made from stream work \\(a host function\\)");
}

// The stream-race check (CUEMU_STREAM_RACES, on by default; the CTest entry emu_stream_races runs
// these, emu_bugs runs the rest without it): device work of two streams that touches one allocation,
// one of them writing, must be ordered by an event wait or a synchronisation, or the process ends
// naming both. Each bug is followed by its ordered version.
class EmuStreamRaces : public EmuBugs {
 protected:
  void SetUp() override {
    EmuBugs::SetUp();
    if (!cuemuStreamRaces())
      GTEST_SKIP() << "stream races are not checked (CUEMU_STREAM_RACES=0, or a sanitizer build)";
    ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
    ASSERT_EQ(cudaStreamCreateWithFlags(&other, cudaStreamNonBlocking), cudaSuccess);
    ASSERT_EQ(cudaEventCreate(&written), cudaSuccess);
    one = dev(std::vector<float>(64, 1.f));
    mid = dev(std::vector<float>(64, 0.f));
    out = dev(std::vector<float>(64, 0.f));
  }
  cudaStream_t s = nullptr, other = nullptr;
  cudaEvent_t written = nullptr;
  float *one = nullptr, *mid = nullptr, *out = nullptr;
};

TEST_F(EmuStreamRaces, ReaderWithoutWait) {
  GPU_LAUNCH(1, 64, 0, s, bounded_scale)(one, mid, 64);  // mid = 2
  EXPECT_DEATH(
      {
        GPU_LAUNCH(1, 64, 0, other, bounded_scale)(mid, out, 64);
        cudaDeviceSynchronize();
      },
      "cuemu: stream race on device memory: bounded_scale on stream 0x[0-9a-f]+ reads allocation 0x[0-9a-f]+ \\(256 "
      "bytes\\), which bounded_scale on stream 0x[0-9a-f]+ wrote, and no event wait or synchronisation orders the two");
  ASSERT_EQ(cudaEventRecord(written, s), cudaSuccess);
  ASSERT_EQ(cudaStreamWaitEvent(other, written, 0), cudaSuccess);
  GPU_LAUNCH(1, 64, 0, other, bounded_scale)(mid, out, 64);  // out = 4
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_EQ(host(out, 64)[9], 4.f);
}

TEST_F(EmuStreamRaces, WriterOverAnotherStreamsRead) {
  GPU_LAUNCH(1, 64, 0, s, bounded_scale)(mid, out, 64);  // reads mid
  EXPECT_DEATH(
      {
        cudaMemsetAsync(mid, 0, 64 * sizeof(float), other);
        cudaDeviceSynchronize();
      },
      "cuemu: stream race on device memory: cudaMemsetAsync on stream 0x[0-9a-f]+ writes allocation 0x[0-9a-f]+ "
      "\\(256 bytes\\), which bounded_scale on stream 0x[0-9a-f]+ read");
  // Two writers: the same, whichever runs first.
  EXPECT_DEATH(
      {
        cudaMemsetAsync(out, 0, 64 * sizeof(float), other);
        cudaDeviceSynchronize();
      },
      "cuemu: stream race on device memory: .* writes allocation 0x[0-9a-f]+ \\(256 bytes\\), which .* wrote");
  ASSERT_EQ(cudaEventRecord(written, s), cudaSuccess);
  ASSERT_EQ(cudaStreamWaitEvent(other, written, 0), cudaSuccess);
  ASSERT_EQ(cudaMemsetAsync(mid, 0, 64 * sizeof(float), other), cudaSuccess);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_EQ(host(mid, 64)[9], 0.f);
}

TEST_F(EmuStreamRaces, HostCopyWithoutSynchronisation) {
  // cudaMemcpy (the legacy default stream) does not wait for a non-blocking stream.
  GPU_LAUNCH(1, 64, 0, s, bounded_scale)(one, out, 64);
  ASSERT_EQ(cudaStreamQuery(s), cudaErrorNotReady);  // asks for the kernel: it runs before the copy
  while (cudaStreamQuery(s) == cudaErrorNotReady) std::this_thread::yield();
  GPU_LAUNCH(1, 64, 0, s, bounded_scale)(out, out, 64);
  EXPECT_DEATH(
      {
        std::vector<float> h(64);
        cudaMemcpy(h.data(), out, 64 * sizeof(float), cudaMemcpyDeviceToHost);
        cudaDeviceSynchronize();
      },
      // (either runs first: the message names both)
      "cuemu: stream race on device memory: "
      "(cudaMemcpy on the host \\(a synchronous call or the legacy default stream\\).*bounded_scale on stream|"
      "bounded_scale on stream.*cudaMemcpy on the host \\(a synchronous call or the legacy default stream\\))");
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  EXPECT_EQ(host(out, 64)[9], 4.f);  // the query that said "done" ordered the first kernel, the sync the second
}

// A graph replays its nodes in program order, but on a GPU its branches run as its edges allow: a
// branch forked onto another stream and joined only after the origin read what the branch writes is
// a race within the graph, although the replay's values come out right.
TEST_F(EmuStreamRaces, GraphBranchesWithoutAnEdge) {
  cudaEvent_t fork, join;
  ASSERT_EQ(cudaEventCreate(&fork), cudaSuccess);
  ASSERT_EQ(cudaEventCreate(&join), cudaSuccess);
  auto capture = [&](bool joined_before_the_read) {
    cudaGraph_t g = nullptr;
    cudaGraphExec_t e = nullptr;
    EXPECT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
    EXPECT_EQ(cudaEventRecord(fork, s), cudaSuccess);
    EXPECT_EQ(cudaStreamWaitEvent(other, fork, 0), cudaSuccess);
    GPU_LAUNCH(1, 64, 0, other, bounded_scale)(one, mid, 64);  // the branch: mid = 2
    EXPECT_EQ(cudaEventRecord(join, other), cudaSuccess);
    if (joined_before_the_read) EXPECT_EQ(cudaStreamWaitEvent(s, join, 0), cudaSuccess);
    GPU_LAUNCH(1, 64, 0, s, bounded_scale)(mid, out, 64);  // the origin: out = 2 mid
    if (!joined_before_the_read) EXPECT_EQ(cudaStreamWaitEvent(s, join, 0), cudaSuccess);
    EXPECT_EQ(cudaStreamEndCapture(s, &g), cudaSuccess);  // joined either way: a valid capture
    EXPECT_EQ(cudaGraphInstantiate(&e, g, 0), cudaSuccess);
    EXPECT_EQ(cudaGraphDestroy(g), cudaSuccess);
    return e;
  };
  cudaGraphExec_t racy = capture(false);
  EXPECT_DEATH(
      {
        cudaGraphLaunch(racy, s);
        cudaStreamSynchronize(s);
      },
      "cuemu: stream race on device memory: bounded_scale on stream 0x[0-9a-f]+'s part of a graph replay reads "
      "allocation 0x[0-9a-f]+ \\(256 bytes\\), which bounded_scale on stream 0x[0-9a-f]+'s part of a graph replay "
      "wrote");
  cudaGraphExec_t ordered = capture(true);
  for (int r = 0; r < 3; ++r) ASSERT_EQ(cudaGraphLaunch(ordered, s), cudaSuccess);  // replays follow each other
  ASSERT_EQ(cudaMemsetAsync(one, 0, 64 * sizeof(float), s), cudaSuccess);           // after the last replay
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  EXPECT_EQ(host(out, 64)[9], 4.f);
  ASSERT_EQ(cudaMemsetAsync(mid, 0, 64 * sizeof(float), other), cudaSuccess);  // the host saw the replays end
  ASSERT_EQ(cudaStreamSynchronize(other), cudaSuccess);
  EXPECT_EQ(cudaGraphExecDestroy(racy), cudaSuccess);
  EXPECT_EQ(cudaGraphExecDestroy(ordered), cudaSuccess);
}

TEST_F(EmuStreamRaces, OrderedWorkPasses) {
  // Reads of one allocation by two streams at once are no race; stream order, event waits, host
  // synchronisations and later enqueues order the rest.
  GPU_LAUNCH(1, 64, 0, s, bounded_scale)(one, mid, 64);      // mid = 2
  GPU_LAUNCH(1, 64, 0, other, bounded_scale)(one, out, 64);  // out = 2: both read `one`
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  GPU_LAUNCH(1, 64, 0, other, bounded_scale)(mid, out, 64);  // after the host saw s finish
  ASSERT_EQ(cudaEventRecord(written, other), cudaSuccess);
  ASSERT_EQ(cudaStreamWaitEvent(s, written, 0), cudaSuccess);
  GPU_LAUNCH(1, 64, 0, s, bounded_scale)(out, mid, 64);  // mid = 8
  GPU_LAUNCH(1, 64, 0, s, bounded_scale)(mid, mid, 64);  // mid = 16, stream order
  float* pinned = nullptr;
  ASSERT_EQ(cudaMallocHost(reinterpret_cast<void**>(&pinned), 64 * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMemcpyAsync(pinned, mid, 64 * sizeof(float), cudaMemcpyDeviceToHost, s), cudaSuccess);
  ASSERT_EQ(cudaEventRecord(written, s), cudaSuccess);
  ASSERT_EQ(cudaEventSynchronize(written), cudaSuccess);
  EXPECT_EQ(pinned[9], 16.f);
  ASSERT_EQ(cudaMemsetAsync(mid, 0, 64 * sizeof(float), other), cudaSuccess);  // the host saw s's reads end
  ASSERT_EQ(cudaStreamSynchronize(other), cudaSuccess);
  EXPECT_EQ(host(mid, 64)[9], 0.f);
  ASSERT_EQ(cudaFreeHost(pinned), cudaSuccess);
}

TEST_F(EmuBugs, InvalidLaunch) {
  float* d = dev(std::vector<float>(64, 0.f));
  GPU_LAUNCH(1, 2048, 0, 0, divergent_barrier)(d);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  EXPECT_EQ(host(d, 64)[0], 0.f);  // the kernel did not run
  EXPECT_DEATH(
      {
        ScopedEnv e("CUEMU_ABORT_ON_ERROR", "1");
        GPU_LAUNCH(dim3(1, 70000), 32, 0, 0, divergent_barrier)(d);
      },
      "cuemu: invalid launch of divergent_barrier at .*bugs_test.cpp:[0-9]+: grid \\(1,70000,1\\)");
  cudaFree(d);
}

}  // namespace
