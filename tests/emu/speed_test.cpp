// speed_test.cpp -- measures the emulator (numbers quoted at the top of kernels/emu/cuemu.h).
// Run by hand: build/emu/tests/emu/emu_speed. Not part of the test suite (no timing assertions).
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <vector>

#include "tests/emu/test_kernels.cuh"

namespace {

template <class F>
double seconds(F&& f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

TEST(EmuSpeed, ElementwiseAndBarriers) {
  const int n = 1 << 20;
  float *a = nullptr, *b = nullptr, *o = nullptr;
  ASSERT_EQ(cudaMalloc(&a, n * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&b, n * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&o, 1024 * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMemset(a, 0, n * sizeof(float)), cudaSuccess);
  GPU_LAUNCH(n / 256, 256, 0, 0, scale)(a, b, n);  // warm-up: fiber stacks, pool
  const double one = seconds([&] { GPU_LAUNCH(n / 256, 256, 0, 0, scale)(a, b, n); });
  const double stride = seconds([&] { GPU_LAUNCH(n / 256, 256, 0, 0, scale_grid_stride)(a, b, n); });
  std::printf("elementwise 1M floats, 4096 blocks x 256: one-per-thread %.1f ms, grid-stride %.1f ms\n", one * 1e3,
              stride * 1e3);
  for (int nt : {32, 256, 1024}) {
    const int k = 200;
    const double with = seconds([&] { GPU_LAUNCH(1, nt, 0, 0, many_barriers)(o, k); });
    const double without = seconds([&] { GPU_LAUNCH(1, nt, 0, 0, many_barriers)(o, 0); });
    const double per = (with - without) / k;
    std::printf("blockDim %4d: launch %.1f us, per __syncthreads %.2f us\n", nt, without * 1e6, per * 1e6);
  }
  const double shfl = seconds([&] { GPU_LAUNCH(1, 256, 0, 0, many_shuffles)(o, 200); }) / 200;
  std::printf("256 threads: per __shfl_xor_sync %.2f us\n", shfl * 1e6);
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  cudaFree(a);
  cudaFree(b);
  cudaFree(o);
}

}  // namespace
