// labels: kernel
// The end-to-end check of the core: a small network trained with plain SGD reaches the same loss
// curve on the CPU and on the CUDA device (emulated in CI), and the loss falls.
#include <gtest/gtest.h>

#include "tests/harness/op_check.h"
#include "train/tiny_mlp.h"

using namespace engine;

TEST(TinyMlp, LossFallsOnCpu) {
  TinyMlpConfig cfg;
  cfg.steps = 150;
  const auto losses = train_tiny_mlp(cfg, Device::cpu());
  ASSERT_EQ(losses.size(), 150u);
  EXPECT_LT(losses.back(), 0.35f * losses.front()) << "first " << losses.front() << " last " << losses.back();
  EXPECT_EQ(train_tiny_mlp(cfg, Device::cpu()), losses) << "training is not deterministic";
}

TEST(TinyMlp, CudaDeviceFollowsTheSameCurve) {
  if (!engine::testing::have_cuda()) GTEST_SKIP() << "no CUDA device";
  TinyMlpConfig cfg;
  cfg.samples = 128;
  cfg.hidden = 16;
  cfg.steps = 40;
  const auto cpu = train_tiny_mlp(cfg, Device::cpu());
  const auto gpu = train_tiny_mlp(cfg, Device::cuda(0));
  ASSERT_EQ(cpu.size(), gpu.size());
  for (size_t i = 0; i < cpu.size(); ++i) EXPECT_NEAR(gpu[i], cpu[i], 1e-4 + 1e-3 * cpu[i]) << "step " << i;
  EXPECT_LT(gpu.back(), gpu.front());
}
