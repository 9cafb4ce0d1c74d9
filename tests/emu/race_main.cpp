// race_main.cpp -- runs a kernel with a missing __syncthreads once (thread mode).  Built under
// -fsanitize=thread, the CTest entry emu_tsan_missing_sync requires "ThreadSanitizer: data race".
#include <cstdio>
#include <vector>

#include "tests/emu/bug_kernels.cuh"

int main() {
  std::vector<float> v(64, 1.f);
  float *in = nullptr, *out = nullptr;
  cudaMalloc(&in, 64 * sizeof(float));
  cudaMalloc(&out, 64 * sizeof(float));
  cudaMemcpy(in, v.data(), 64 * sizeof(float), cudaMemcpyHostToDevice);
  GPU_LAUNCH(1, 64, 0, 0, missing_sync)(in, out);
  cudaMemcpy(v.data(), out, 64 * sizeof(float), cudaMemcpyDeviceToHost);
  std::printf("missing_sync ran: out[0] = %g\n", static_cast<double>(v[0]));
  cudaFree(in);
  cudaFree(out);
  return 0;
}
