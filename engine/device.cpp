#include "engine/device.h"

#include <cstdio>
#include <cstdlib>

#include "base/cuda_context.h"
#include "base/error.h"

namespace engine {

std::string Device::str() const { return is_cpu() ? std::string("cpu") : "cuda:" + std::to_string(index); }

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

void select_cuda_device(int index) {
#if defined(ENGINE_WITH_CUDA)
  // (The emulated build shows CUEMU_DEVICE_COUNT devices, each the host, kernels/emu/cuemu.h.)
  const int n = cuda_device_count();
  ENGINE_CHECK(index >= 0 && index < n, "device cuda:", index, ": only ", n,
               " CUDA device(s) visible (CUDA_VISIBLE_DEVICES and the launcher's local rank must agree)");
#else
  ENGINE_CHECK(index == 0, "device cuda:", index, ": only 1 device in this build (no CUDA backend)");
#endif
  set_cuda_context_device(index);
}

int selected_cuda_device() { return cuda_context_device(); }

}  // namespace engine
