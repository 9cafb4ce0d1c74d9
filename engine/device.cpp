#include "engine/device.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>

#include "engine/error.h"
#if defined(ENGINE_WITH_CUDA)
#include "engine/cuda_context.h"
#endif

namespace engine {

std::string Device::str() const {
  return is_cpu() ? std::string("cpu") : "cuda:" + std::to_string(index);
}

bool cuda_is_emulated() {
#if defined(ENGINE_CUDA_EMULATED)
  return true;
#else
  return false;
#endif
}

int cuda_device_count() {
#if defined(ENGINE_WITH_CUDA)
  static int count = [] {
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n <= 0) {
      cudaGetLastError();  // clear the sticky "no device" error
      std::fprintf(stderr, "engine: no CUDA device (%s); running on the CPU\n",
                   e != cudaSuccess ? cudaGetErrorString(e) : "device count is 0");
      return 0;
    }
    return n;
  }();
  return count;
#else
  return 0;
#endif
}

Device parse_device(const std::string& s) {
  if (s == "cpu") return Device::cpu();
  int index = 0;
  std::string kind = s;
  if (auto colon = s.find(':'); colon != std::string::npos) {
    kind = s.substr(0, colon);
    const std::string num = s.substr(colon + 1);
    char* end = nullptr;
    index = (int)std::strtol(num.c_str(), &end, 10);
    ENGINE_CHECK(!num.empty() && *end == '\0' && index >= 0, "device '", s, "': expected cpu, gpu, gpu:N or cuda:N");
  }
  ENGINE_CHECK(kind == "gpu" || kind == "cuda", "device '", s, "': expected cpu, gpu, gpu:N or cuda:N");
  const int n = cuda_device_count();
  ENGINE_CHECK(n > 0, "device '", s, "' requested but no usable CUDA device exists",
#if defined(ENGINE_WITH_CUDA)
               " (no driver/GPU, or CUDA_VISIBLE_DEVICES is empty)"
#else
               " (this build has no CUDA backend)"
#endif
  );
  ENGINE_CHECK(index < n, "device '", s, "': only ", n, " CUDA device(s) visible");
  return Device::cuda(index);
}

Device default_device() { return cuda_available() ? Device::cuda(0) : Device::cpu(); }

namespace {
std::mutex g_device_mutex;                // orders select_cuda_device against the creation of the state
std::atomic<int> g_selected_device{0};
std::atomic<int> g_state_device{-1};      // the device the per-process CUDA state was created on
}  // namespace

void select_cuda_device(int index) {
  std::lock_guard<std::mutex> lock(g_device_mutex);
#if defined(ENGINE_CUDA_REAL)
  const int n = cuda_device_count();
  ENGINE_CHECK(index >= 0 && index < n, "device cuda:", index, ": only ", n,
               " CUDA device(s) visible (CUDA_VISIBLE_DEVICES and the launcher's local rank must agree)");
#else
  // CPU-only and emulated builds: one device index (the emulated GPU is the host).
  ENGINE_CHECK(index == 0, "device cuda:", index, ": only 1 device in this build (",
               cuda_is_emulated() ? "emulated CUDA" : "no CUDA backend", ")");
#endif
  const int created = g_state_device.load();
  ENGINE_CHECK(created < 0 || created == index, "device cuda:", index,
               ": the engine's CUDA state (stream, allocator, handles) already exists on cuda:", created,
               "; select the device once at startup, before any CUDA work");
#if defined(ENGINE_CUDA_REAL)
  CUDA_CHECK(cudaSetDevice(index));
#endif
  g_selected_device.store(index);
}

int selected_cuda_device() { return g_selected_device.load(); }

#if defined(ENGINE_WITH_CUDA)
cudaStream_t compute_stream() {
#if defined(ENGINE_CUDA_REAL)
  // The current device is per host thread: bind every thread that issues engine work (loader
  // threads, OpenMP workers) to the process's device before it touches the stream or the allocator.
  thread_local bool bound = false;
  if (!bound) {
    CUDA_CHECK(cudaSetDevice(g_selected_device.load()));
    bound = true;
  }
#endif
  static cudaStream_t stream = [] {
    std::lock_guard<std::mutex> lock(g_device_mutex);
    cudaStream_t s = nullptr;
    CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    // Everything else of the state (allocator blocks, cuBLAS/cuDNN handles) is created after the
    // stream, on the same device: from here on the device cannot change.
    g_state_device.store(g_selected_device.load());
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
  if (sync_debug) cuda_check(cudaStreamSynchronize(compute_stream()), kernel, file, line);
}
#endif

}  // namespace engine
