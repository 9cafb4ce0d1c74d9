// labels: gpu
// The NCCL communicator on a real GPU with one rank (a node with one GPU cannot run two NCCL ranks):
// the real collectives (mean, sum, broadcast, gather of bytes, barrier) on its own stream, ordered after
// the compute stream's work and before the compute stream's next ops by events; and one PP-LiteSeg-T
// training step with gradient buckets all-reduced during backward, compared with the same step without
// buckets (world size 1: the mean is the identity, so the gradients must agree); and both again
// captured in a CUDA graph (data-parallel step graphs) and replayed, with the watchdog following each
// replay.
// Without a real GPU (no device, CPU-only or emulated build) the program exits with 77 at once.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "engine/device.h"
#include "engine/tensor.h"

#if defined(ENGINE_CUDA_REAL)
#include "engine/comm/nccl_communicator.h"
#include "engine/cuda_graph.h"
#include "engine/ops/copy.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/loss.h"
#include "models/module.h"
#include "train/grad_buckets.h"

namespace engine {
namespace {

std::unique_ptr<Communicator> one_rank() {
  return make_nccl_communicator(
      0, 1, selected_cuda_device(), [](const std::string& id) { return id; }, 120);
}

TEST(NcclGpu, CollectivesOfOneRank) {
  auto comm = one_rank();
  const Device d = Device::cuda(selected_cuda_device());
  // Work queued on the compute stream before the collective must be in its input: the mean of
  // (x * 3) over one rank is x * 3.
  const Tensor x = Tensor::randn({1 << 20}, 5, 1.f, d);
  Tensor y = mul(x, 3.f);
  comm->all_reduce({y}, ReduceOp::Mean, "mean");
  const Tensor z = add(y, 1.f);  // runs on the compute stream after the collective
  const std::vector<float> vx = x.to_vector(), vz = z.to_vector();
  for (size_t i = 0; i < vx.size(); i += 997) ASSERT_FLOAT_EQ(vz[i], vx[i] * 3.f + 1.f) << i;
  Tensor s = Tensor::full({7}, 2.f, DType::F32, d);
  comm->all_reduce({s}, ReduceOp::Sum, "sum");
  for (float v : s.to_vector()) ASSERT_EQ(v, 2.f);
  comm->broadcast(s, 0, "broadcast");
  comm->barrier("barrier");
  const auto all = comm->all_gather_bytes(std::string("a\0bc", 4), "gather");
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0], std::string("a\0bc", 4));
}

// A collective captured in a graph runs at every replay, after the captured work before it and
// before the captured work after it, on the values the inputs hold at that replay.
TEST(NcclGpu, CapturedCollectivesRunAtEveryReplay) {
  auto comm = one_rank();
  const Device d = Device::cuda(selected_cuda_device());
  Tensor x = Tensor::zeros({1 << 20}, DType::F32, d);
  Tensor z;
  CudaGraph graph(std::make_shared<GraphPool>());
  graph.capture([&] {
    Tensor y = mul(x, 3.f);
    comm->start_all_reduce(y, ReduceOp::Mean, "captured mean")->wait();
    z = add(y, 1.f);
  });
  for (uint64_t seed : {5, 6}) {
    const Tensor fresh = Tensor::randn({1 << 20}, seed, 1.f, d);
    copy_into(x, fresh);
    graph.replay([&] { comm->follow_enqueued_work("replay of seed " + std::to_string(seed)); });
    const std::vector<float> vx = fresh.to_vector(), vz = z.to_vector();
    for (size_t i = 0; i < vx.size(); i += 997) ASSERT_FLOAT_EQ(vz[i], vx[i] * 3.f + 1.f) << seed << " " << i;
  }
  // Eager collectives go on after the graph's, under the watchdog.
  Tensor s = Tensor::full({7}, 2.f, DType::F32, d);
  comm->all_reduce({s}, ReduceOp::Sum, "sum after the replays");
  for (float v : s.to_vector()) ASSERT_EQ(v, 2.f);
}

// One training step with gradient buckets against the plain step; `captured`: the bucketed step
// (begin_step, backward with the buckets' all-reduces, finish_step) runs once eagerly (cuDNN's
// algorithm search), then is captured and replayed twice (the zeroing of the buckets is part of it).
void bucketed_step_equals_plain_step(bool captured) {
  auto comm = one_rank();
  const Device d = Device::cuda(selected_cuda_device());
  nn::SegModelSpec spec;
  spec.backbone = "STDC1";
  spec.num_classes = 3;
  spec.arm_out_chs = {32, 64, 128};
  spec.seg_head_inter_chs = {32, 64, 64};
  spec.seed = 3;
  auto plain = nn::build_seg_model(spec), bucketed = nn::build_seg_model(spec);
  plain->to(d);
  bucketed->to(d);
  plain->train();
  bucketed->train();
  const Tensor x = Tensor::randn({2, 64, 64, 3}, 8, 1.f, d);
  std::vector<int64_t> lab(2 * 64 * 64);
  for (size_t i = 0; i < lab.size(); ++i) lab[i] = (int64_t)(i % 3);
  const Tensor y = Tensor::from_vector_i64(lab, {2, 64, 64}, d);
  auto loss = [&](nn::SegModel& m) {
    Tensor total;
    for (const Tensor& l : m.forward(x))
      total = total.defined() ? add(total, cross_entropy(l, y)) : cross_entropy(l, y);
    return total;
  };
  loss(*plain).backward();
  std::vector<Tensor> params;
  for (auto& [n, p] : bucketed->named_parameters()) params.push_back(p);
  train::GradBuckets buckets(params, *comm, 256 << 10);
  auto step = [&] {
    buckets.begin_step();
    loss(*bucketed).backward();
    buckets.finish_step();
  };
  step();
  if (captured) {
    CudaGraph graph(std::make_shared<GraphPool>());
    graph.capture(step);
    for (int r = 0; r < 2; ++r) graph.replay([&] { comm->follow_enqueued_work("bucketed step replay"); });
  }
  EXPECT_GT(buckets.num_buckets(), 3u);
  const auto a = plain->named_parameters(), b = bucketed->named_parameters();
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_TRUE(buckets.has_grad(i)) << b[i].first;
    // The identity mean must leave the gradients as the plain step computed them (up to the summation
    // order of a gradient that is first added into a zeroed bucket slot); a reduction applied twice,
    // or a bucket read before its collective finished, is far outside this.
    const std::vector<float> ga = a[i].second.grad().to_vector(), gb = b[i].second.grad().to_vector();
    ASSERT_EQ(ga.size(), gb.size());
    float scale = 1e-3f;
    for (float v : ga) scale = std::max(scale, std::fabs(v));
    for (size_t k = 0; k < ga.size(); ++k) ASSERT_NEAR(gb[k], ga[k], 1e-5f * scale) << b[i].first << " element " << k;
  }
}

TEST(NcclGpu, BucketedStepEqualsThePlainStep) { bucketed_step_equals_plain_step(false); }
TEST(NcclGpu, CapturedBucketedStepEqualsThePlainStep) { bucketed_step_equals_plain_step(true); }

}  // namespace
}  // namespace engine
#endif

int main(int argc, char** argv) {
#if defined(ENGINE_CUDA_REAL)
  if (engine::cuda_available() && !engine::cuda_is_emulated()) {
    ::testing::InitGoogleTest(&argc, argv);
    return RUN_ALL_TESTS();
  }
#endif
  (void)argc;
  (void)argv;
  std::printf("test_nccl_gpu: no real GPU in this build/machine; skipped\n");
  return 77;
}
