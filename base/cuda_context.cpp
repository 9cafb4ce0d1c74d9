#include "base/cuda_context.h"

#include <atomic>
#include <cstdlib>
#include <mutex>

#include "base/error.h"

namespace engine {

namespace {
std::mutex g_context_mutex;  // orders the device choice against the creation of the state
std::atomic<int> g_context_device{0};
std::atomic<int> g_state_device{-1};  // the device the stream (and everything after it) was created on
}  // namespace

void set_cuda_context_device(int index) {
  std::lock_guard<std::mutex> lock(g_context_mutex);
  const int created = g_state_device.load();
  ENGINE_CHECK(created < 0 || created == index, "device cuda:", index,
               ": the engine's CUDA state (stream, allocator, handles) already exists on cuda:", created,
               "; select the device once at startup, before any CUDA work");
#if defined(ENGINE_WITH_CUDA)
  CUDA_CHECK(cudaSetDevice(index));
#endif
  g_context_device.store(index);
}

int cuda_context_device() { return g_context_device.load(); }

#if defined(ENGINE_WITH_CUDA)
cudaStream_t compute_stream() {
#if defined(ENGINE_WITH_CUDA)
  // The current device is per host thread: bind every thread that issues engine work (loader
  // threads, OpenMP workers) to the process's device before it touches the stream or the allocator.
  thread_local bool bound = false;
  if (!bound) {
    CUDA_CHECK(cudaSetDevice(g_context_device.load()));
    bound = true;
  }
#endif
  static cudaStream_t stream = [] {
    std::lock_guard<std::mutex> lock(g_context_mutex);
    cudaStream_t s = nullptr;
    CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    // Everything else of the state (allocator blocks, cuBLAS/cuDNN handles) is created after the
    // stream, on the same device: from here on the device cannot change.
    g_state_device.store(g_context_device.load());
    return s;
  }();
  return stream;
}

void cuda_check(cudaError_t e, const char* what, const char* file, int line) {
  if (e == cudaSuccess) return;
  fail("CUDA error ", cudaGetErrorName(e), " (", cudaGetErrorString(e), ") in ", what, " at ", file, ":", line);
}

void cuda_after_launch(const char* kernel, const char* file, int line) {
  cuda_check(cudaGetLastError(), kernel, file, line);
  static const bool sync_debug = [] {
    const char* v = std::getenv("ENGINE_SYNC_DEBUG");
    return v && v[0] == '1';
  }();
  if (!sync_debug) return;
  cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;  // a captured launch runs later, at replay
  cuda_check(cudaStreamIsCapturing(compute_stream(), &capturing), kernel, file, line);
  if (capturing == cudaStreamCaptureStatusNone) cuda_check(cudaStreamSynchronize(compute_stream()), kernel, file, line);
}
#endif

}  // namespace engine
