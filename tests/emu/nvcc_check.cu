// nvcc_check.cu -- compiled (not run) by nvcc in the emu_nvcc_compile test: the test kernels and
// cuemu.h's nvcc branch must build warning-free for sm_80/sm_90 with spills/local memory as errors.
#include "tests/emu/bug_kernels.cuh"
#include "tests/emu/test_kernels.cuh"

void launch_all(float* f, int* i, unsigned* u, AtomicOut* a, cudaStream_t s) {
  GPU_LAUNCH(4, 256, 256 * sizeof(float), s, block_sum)(f, f, 1000);
  GPU_LAUNCH(dim3(2, 3), dim3(kTile, kTile), 0, s, transpose)(f, f, 70, 45);
  GPU_LAUNCH(1, 64, 0, s, warp_scan<int, 16>)(i, i, 64);
  GPU_LAUNCH(1, 64, 0, s, votes)(i, u);
  GPU_LAUNCH(2, 64, 0, s, atomics)(a);
  GPU_LAUNCH(dim3(3, 2, 2), dim3(4, 2, 3), 0, s, grid3d)(i);
  GPU_LAUNCH(1, 256, 65536, s, big_smem)(f, 16384);
  GPU_LAUNCH(4096, 256, 0, s, scale)(f, f, 1 << 20);
  GPU_LAUNCH(64, 256, 0, s, scale_grid_stride)(f, f, 1 << 20);
  GPU_LAUNCH(1, 256, 0, s, many_barriers)(f, 10);
  GPU_LAUNCH(1, 256, 0, s, many_shuffles)(f, 10);
  GPU_LAUNCH(1, 64, 0, s, missing_sync)(f, f);
  GPU_LAUNCH(1, 64, 0, s, reduce_race)(f, f);
  GPU_LAUNCH(2, 64, 0, s, global_oob)(f, f, 64);
  GPU_LAUNCH(1, 64, 0, s, smem_oob)(f);
  GPU_LAUNCH(1, 64, 256, s, dyn_smem_oob)(f);
  GPU_LAUNCH(1, 64, 0, s, divergent_barrier)(f);
  GPU_LAUNCH(1, 64, 0, s, two_barriers)(f);
  GPU_LAUNCH(1, 64, 0, s, early_return)(f, f, 40);
  GPU_LAUNCH(1, 64, 0, s, full_mask_after_exit)(f, f, 40);
  GPU_LAUNCH(1, 32, 0, s, shfl_outside_mask)(f, f);
  GPU_LAUNCH(1, 32, 0, s, shfl_vs_barrier)(f);
  GPU_LAUNCH(2, 32, 0, s, spin_on_other_block)(i);
  GPU_LAUNCH(64, 32, 0, s, order_dependent)(i);
  GPU_LAUNCH(1, 64, 0, s, accumulate)(f, f);
  GPU_LAUNCH(1, 64, 0, s, partial_tile)(f, f, 40);
}
