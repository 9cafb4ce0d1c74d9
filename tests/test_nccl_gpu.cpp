// labels: gpu
// The NCCL communicator on a real GPU with one rank (a node with one GPU cannot run two NCCL ranks):
// the real collectives (mean, sum, broadcast, gather of bytes, barrier) on its own stream, ordered after
// the compute stream's work and before the compute stream's next ops by events; and one PP-LiteSeg-T
// training step with gradient buckets all-reduced during backward, compared with the same step without
// buckets (world size 1: the mean is the identity, so the gradients must agree); and both again
// captured in a CUDA graph (data-parallel step graphs) and replayed, with the watchdog following each
// replay.
// On the emulated GPU the same runs against the emulated NCCL (kernels/emu/nccl_emu.cpp). Without a
// GPU (no device, or a CPU-only build) the program exits with 77 at once.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "engine/device.h"
#include "engine/tensor.h"

#if defined(ENGINE_WITH_CUDA)
#include "engine/comm/nccl_communicator.h"
#include "engine/comm/rendezvous.h"
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

// A collective dropped without wait() (an exception unwinding a step) holds its tensor until it ends,
// and its destructor orders the compute stream after it: the tensor's memory, back in the compute
// stream's cache, is then reused by the next tensor of that size without the collective still writing
// it. The emulator's stream-race check (CUEMU_STREAM_RACES, on by default) reports a missing order
// even where the values happen to come out right.
TEST(NcclGpu, DroppedCollectiveKeepsItsMemoryFromTheComputeStream) {
  auto comm = one_rank();
  const Device d = Device::cuda(selected_cuda_device());
  {
    Tensor t = mul(Tensor::randn({1 << 16}, 6, 1.f, d), 2.f);
    auto pending = comm->start_all_reduce(t, ReduceOp::Sum, "dropped");
  }  // t and the pending collective go, unwaited
  const Tensor u = add(Tensor::full({1 << 16}, 1.f, DType::F32, d), 2.f);
  const Tensor v = mul(Tensor::full({1 << 16}, 1.f, DType::F32, d), 5.f);
  const std::vector<float> vu = u.to_vector(), vv = v.to_vector();
  for (size_t i = 0; i < vu.size(); i += 101) {
    ASSERT_EQ(vu[i], 3.f) << i;
    ASSERT_EQ(vv[i], 5.f) << i;
  }
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

// NCCL's destroy waits until no graph holds a captured collective of the communicator (NCCL 2.28), so
// a communicator destroyed before such a graph hangs on a GPU; the emulated NCCL reports it.
TEST(NcclGpu, DestroyingTheCommunicatorBeforeItsGraphsIsReported) {
  if (!cuda_is_emulated()) GTEST_SKIP() << "with NCCL itself this hangs";
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        auto comm = one_rank();
        const Device d = Device::cuda(selected_cuda_device());
        Tensor x = Tensor::zeros({64}, DType::F32, d);
        CudaGraph graph(std::make_shared<GraphPool>());
        graph.capture([&] { comm->start_all_reduce(x, ReduceOp::Sum, "captured sum")->wait(); });
        comm.reset();
      },
      "hold captured collectives of the communicator");
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

// ---- Two ranks: this program started twice more as workers (`--two-rank-worker R PATH`), each on
// device R, the unique id through a rendezvous file. With two ranks every expected value is exact:
// NCCL's mean multiplies each rank's values by 1/2 (exact) and a sum of two rounds once, whatever
// the order. Each worker checks its own results and exits 0, or prints what differs and exits 1.
int g_worker_failures = 0;
#define WORKER_CHECK(cond, ...)                                                   \
  do {                                                                            \
    if (!(cond)) {                                                                \
      std::fprintf(stderr, "rank %d: ", rank), std::fprintf(stderr, __VA_ARGS__); \
      std::fprintf(stderr, "\n");                                                 \
      ++g_worker_failures;                                                        \
    }                                                                             \
  } while (0)

int two_rank_worker(int rank, const std::string& path) {
  select_cuda_device(rank);
  const Device d = Device::cuda(rank);
  auto comm = make_nccl_communicator(
      rank, 2, rank, [&](const std::string& id) { return exchange_root_bytes_via_file(path, rank, 2, id, 60); }, 60);
  const int n = 3 << 18;  // above one round of the emulated NCCL's 1 MiB slots
  const Tensor x0 = Tensor::randn({n}, 40, 1.f), x1 = Tensor::randn({n}, 41, 1.f);
  const std::vector<float> v0 = x0.to_vector(), v1 = x1.to_vector();
  // f32 mean and sum, after work queued on the compute stream
  Tensor m = mul((rank == 0 ? x0 : x1).to(d), 1.f);
  comm->all_reduce({m}, ReduceOp::Mean, "f32 mean");
  Tensor s = (rank == 0 ? x0 : x1).to(d);
  comm->all_reduce({s}, ReduceOp::Sum, "f32 sum");
  const std::vector<float> vm = m.to_vector(), vs = s.to_vector();
  for (int i = 0; i < n; ++i) {
    WORKER_CHECK(vm[i] == v0[i] * 0.5f + v1[i] * 0.5f, "f32 mean [%d]: %g", i, vm[i]);
    WORKER_CHECK(vs[i] == v0[i] + v1[i], "f32 sum [%d]: %g", i, vs[i]);
    if (g_worker_failures) break;
  }
  // bf16 and fp16 means (data-parallel O2's buckets): the f32 mean of the rounded values, rounded
  for (const DType low : {DType::BF16, DType::F16}) {
    Tensor t = (rank == 0 ? x0 : x1).to(low).to(d);
    comm->all_reduce({t}, ReduceOp::Mean, "low mean");
    const std::vector<float> r0 = x0.to(low).to(DType::F32).to_vector(), r1 = x1.to(low).to(DType::F32).to_vector();
    std::vector<float> want(n);
    for (int i = 0; i < n; ++i) want[i] = r0[i] * 0.5f + r1[i] * 0.5f;
    const std::vector<float> got = t.to(DType::F32).to_vector(),
                             exp = Tensor::from_vector(want, {n}).to(low).to(DType::F32).to_vector();
    for (int i = 0; i < n && !g_worker_failures; ++i)
      WORKER_CHECK(got[i] == exp[i], "%s mean [%d]: %g, want %g", dtype_name(low), i, got[i], exp[i]);
  }
  // broadcast from rank 1, a barrier, and every rank's bytes
  Tensor b = Tensor::full({1000}, (float)(rank + 7), DType::F32, d);
  comm->broadcast(b, 1, "broadcast");
  for (float v : b.to_vector()) WORKER_CHECK(v == 8.f, "broadcast: %g", v);
  comm->barrier("barrier");
  const auto all = comm->all_gather_bytes(std::string(rank == 0 ? 3 : 1500000, char('a' + rank)), "gather");
  WORKER_CHECK(all.size() == 2 && all[0] == std::string(3, 'a') && all[1] == std::string(1500000, 'b'),
               "all_gather_bytes");
  // captured in a graph and replayed with new inputs: the mean of the two ranks' values at that replay
  Tensor in = Tensor::zeros({n}, DType::F32, d), out;
  CudaGraph graph(std::make_shared<GraphPool>());
  graph.capture([&] {
    Tensor y = mul(in, 2.f);
    comm->start_all_reduce(y, ReduceOp::Mean, "captured mean")->wait();
    out = add(y, 1.f);
  });
  for (const float base : {3.f, 5.f}) {
    copy_into(in, Tensor::full({n}, base + (float)rank, DType::F32, d));
    graph.replay([&] { comm->follow_enqueued_work("two-rank replay"); });
    const float want = (2.f * base + 2.f * (base + 1.f)) * 0.5f + 1.f;
    const std::vector<float> vo = out.to_vector();
    for (int i = 0; i < n && !g_worker_failures; i += 4099)
      WORKER_CHECK(vo[i] == want, "replay: %g, want %g", vo[i], want);
  }
  comm->barrier("end");
  return g_worker_failures ? 1 : 0;
}

TEST(NcclGpu, TwoRanksReduceBroadcastGatherAndReplay) {
  if (cuda_device_count() < 2) GTEST_SKIP() << "one GPU: two NCCL ranks need two devices";
  std::string dir = (std::filesystem::temp_directory_path() / "test_nccl_gpu.XXXXXX").string();
  ASSERT_NE(mkdtemp(dir.data()), nullptr);
  const std::string path = dir + "/rendezvous";
  std::vector<pid_t> pids;
  for (int r = 0; r < 2; ++r) {
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {  // a fresh process image: CUDA does not survive a fork
      const std::string rank = std::to_string(r);
      execl("/proc/self/exe", "test_nccl_gpu", "--two-rank-worker", rank.c_str(), path.c_str(), (char*)nullptr);
      std::_Exit(127);
    }
    pids.push_back(pid);
  }
  for (size_t r = 0; r < pids.size(); ++r) {
    int status = 0;
    ASSERT_EQ(waitpid(pids[r], &status, 0), pids[r]);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "worker " << r << " ended with status " << status;
  }
  rmdir(dir.c_str());
}

}  // namespace
}  // namespace engine
#endif

int main(int argc, char** argv) {
#if defined(ENGINE_WITH_CUDA)
  if (argc == 4 && std::string(argv[1]) == "--two-rank-worker") {
    try {
      return engine::two_rank_worker(std::atoi(argv[2]), argv[3]);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "rank %s: %s\n", argv[2], e.what());
      return 1;
    }
  }
  if (engine::cuda_available()) {
    ::testing::InitGoogleTest(&argc, argv);
    return RUN_ALL_TESTS();
  }
#endif
  (void)argc;
  (void)argv;
  std::printf("test_nccl_gpu: no GPU (real or emulated) in this build/machine; skipped\n");
  return 77;
}
