// labels: mpi
// Data-parallel training across real processes: run by CTest as `mpirun -np 2 test_distributed`
// (tests/CMakeLists.txt); started without an MPI launcher it skips (exit code 77).
//   - one training step of PP-LiteSeg-T on 2 ranks x batch 2 (SyncBN, gradient buckets all-reduced
//     during backward, the fused SGD update) equals one process with the whole batch of 4: gradients,
//     weights and BN running statistics within a stated tolerance, and bit-identical on both ranks;
//   - SyncBN with uneven batches (1 + 3 rows) equals batch norm over the 4 rows (outputs, input
//     gradients, summed parameter gradients, running statistics);
//   - the loader's shards are disjoint and cover the data set;
//   - the MPI communicator's collectives (mean, broadcast, gather of unequal sizes, barrier);
//   - fp16: an overflow in one rank's gradients makes every rank's loss-scaling check skip the step;
//   - O2's 16-bit gradient buckets (bf16, f16 on the wire): the rounded mean on both ranks, bit for
//     bit, read by the update as they are.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <future>
#include <memory>
#include <set>
#include <stdexcept>
#include <thread>

#include "data/loader.h"
#include "engine/comm/mpi_communicator.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/loss.h"
#include "engine/ops/optim.h"
#include "engine/ops/reduce.h"
#include "engine/precision.h"
#include "kernels/shared_math.h"
#include "models/layers.h"
#include "models/module.h"
#include "train/grad_buckets.h"

using namespace engine;

namespace {

Communicator& world() {
  static std::unique_ptr<Communicator> comm = make_mpi_communicator(/*timeout_seconds=*/120);
  return *comm;
}

class Distributed : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!started_by_mpi_launcher()) GTEST_SKIP() << "needs mpirun -np 2 (CTest runs it so)";
    ASSERT_EQ(world().world_size(), 2) << "run with mpirun -np 2";
  }
};

// The bounded wait of a call that may never return (the NCCL communicator's abort on the way out):
// a call that returns is waited for, one that blocks is left behind after the deadline.
TEST(RunWithDeadline, WaitsForAReturningCallAndLeavesABlockedOne) {
  auto finished = std::make_shared<std::atomic<bool>>(false);
  EXPECT_TRUE(run_with_deadline(
      [finished] {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        finished->store(true);
      },
      30));
  EXPECT_TRUE(finished->load());
  auto release = std::make_shared<std::promise<void>>();
  const auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(run_with_deadline([f = release->get_future().share()] { f.wait(); }, 0.2));
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_GE(waited, 0.19);
  EXPECT_LT(waited, 20.0);
  release->set_value();  // (lets the thread left behind end)
  EXPECT_TRUE(run_with_deadline([] { throw std::runtime_error("a throwing call still finishes"); }, 30));
}

nn::SegModelSpec spec_t(uint64_t seed) {  // PP-LiteSeg-T, 3 classes
  nn::SegModelSpec s;
  s.backbone = "STDC1";
  s.num_classes = 3;
  s.arm_out_chs = {32, 64, 128};
  s.seg_head_inter_chs = {32, 64, 64};
  s.seed = seed;
  return s;
}

Tensor seg_loss(const std::vector<Tensor>& logits, const Tensor& labels) {
  Tensor total;
  for (const Tensor& l : logits)
    total = total.defined() ? add(total, cross_entropy(l, labels)) : cross_entropy(l, labels);
  return total;
}

// max |a - b| / max(1e-3, max |b|): the error relative to the tensor's scale.
double scaled_diff(const Tensor& a, const Tensor& b) {
  const std::vector<float> va = a.to_vector(), vb = b.to_vector();
  double d = 0, scale = 1e-3;
  for (size_t i = 0; i < va.size(); ++i) {
    d = std::max(d, (double)std::fabs(va[i] - vb[i]));
    scale = std::max(scale, (double)std::fabs(vb[i]));
  }
  return d / scale;
}

std::string bytes_of(const Tensor& t) {
  const std::vector<float> v = t.to_vector();
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

}  // namespace

TEST_F(Distributed, TrainingStepOfTwoRanksEqualsOneProcessWithTheWholeBatch) {
  Communicator& c = world();
  const int r = c.rank();
  auto ref = nn::build_seg_model(spec_t(7));
  auto dp = nn::build_seg_model(spec_t(7));
  ref->train();
  dp->train();
  nn::set_sync_batch_norm(*dp, [&c](const std::vector<Tensor>& t) { c.all_reduce(t, ReduceOp::Sum, "sync bn"); });
  const Tensor x = Tensor::randn({4, 64, 64, 3}, 11);
  std::vector<int64_t> lab(4 * 64 * 64);
  for (size_t i = 0; i < lab.size(); ++i) lab[i] = (int64_t)((i * 2654435761u >> 7) % 3);  // no ignored pixels
  const Tensor y = Tensor::from_vector_i64(lab, {4, 64, 64});

  // One process, the whole batch (plain BN).
  seg_loss(ref->forward(x), y).backward();
  // Two ranks, two images each: the per-rank mean losses average to the whole batch's mean, since
  // every rank has the same number of labelled pixels (plain cross-entropy; OHEM selects per rank).
  std::vector<Tensor> params;
  for (auto& [n, p] : dp->named_parameters()) params.push_back(p);
  train::GradBuckets buckets(params, c, /*bucket_bytes=*/512 << 10);  // several buckets for PP-LiteSeg-T
  buckets.begin_step();
  seg_loss(dp->forward(x.narrow(0, 2 * r, 2).contiguous()), y.narrow(0, 2 * r, 2).contiguous()).backward();
  buckets.finish_step();
  EXPECT_GT(buckets.num_buckets(), 3u);
  // Buckets started from the gradient-ready hooks while backward was still running.
  EXPECT_GE(buckets.started_during_backward(), buckets.num_buckets() - 1);

  // Tolerance: float sums in another order (per-rank partial sums, the all-reduce, the statistics).
  // Measured on this step: 7.5e-5 of a tensor's scale for the gradients, 1.5e-4 after the update (both
  // at the batch-norm weight of an attention branch, whose gradient is a small difference of large
  // sums). 1e-3 leaves room and still catches a missing or doubled rank (errors of about 1) or
  // statistics of one rank only.
  const auto ref_named = ref->named_parameters();
  const auto dp_named = dp->named_parameters();
  ASSERT_EQ(ref_named.size(), dp_named.size());
  double worst = 0;
  std::string worst_name;
  std::string grad_bytes;
  for (size_t i = 0; i < ref_named.size(); ++i) {
    ASSERT_TRUE(buckets.has_grad(i)) << dp_named[i].first;
    const double d = scaled_diff(dp_named[i].second.grad(), ref_named[i].second.grad());
    if (d > worst) worst = d, worst_name = dp_named[i].first;
    grad_bytes += bytes_of(dp_named[i].second.grad());
  }
  EXPECT_LT(worst, 1e-3) << "gradient of " << worst_name;
  const auto all = c.all_gather_bytes(grad_bytes, "gradients");
  EXPECT_TRUE(all[0] == all[1]) << "the averaged gradients differ between the ranks";

  // The fused SGD step on both: weights and BN running statistics.
  std::vector<Tensor> rp, rg, rv, dpp, dg, dv;
  for (size_t i = 0; i < ref_named.size(); ++i) {
    rp.push_back(ref_named[i].second), rg.push_back(ref_named[i].second.grad());
    rv.push_back(Tensor::zeros(ref_named[i].second.shape()));
    dpp.push_back(dp_named[i].second), dg.push_back(dp_named[i].second.grad());
    dv.push_back(Tensor::zeros(dp_named[i].second.shape()));
  }
  sgd_momentum_update(rp, rg, rv, 0.1f, 0.9f, 4e-5f);
  sgd_momentum_update(dpp, dg, dv, 0.1f, 0.9f, 4e-5f);
  const auto ref_state = ref->state_dict(), dp_state = dp->state_dict();
  worst = 0;
  for (size_t i = 0; i < ref_state.size(); ++i) {
    ASSERT_EQ(ref_state[i].first, dp_state[i].first);
    const double d = scaled_diff(dp_state[i].second, ref_state[i].second);
    if (d > worst) worst = d, worst_name = dp_state[i].first;
  }
  EXPECT_LT(worst, 1e-3) << "after the step: " << worst_name;
}

// fp16 loss scaling with several ranks (train/trainer.cpp): the ranks do not agree on a flag; an
// inf or nan in one rank's gradients reaches every rank through the all-reduce, so every rank's
// unscale check finds it and all skip the step. First both ranks scale by 1 (finite everywhere),
// then rank 0 alone by 2^40, which overflows its fp16 output gradients.
TEST_F(Distributed, Fp16OverflowOnOneRankMakesEveryRankSkipTheStep) {
  Communicator& c = world();
  const int r = c.rank();
  const AutocastGuard fp16(Precision::FP16);
  auto dp = nn::build_seg_model(spec_t(7));
  dp->train();
  std::vector<Tensor> params;
  for (auto& [n, p] : dp->named_parameters()) params.push_back(p);
  train::GradBuckets buckets(params, c, /*bucket_bytes=*/512 << 10);
  const Tensor x = Tensor::randn({2, 64, 64, 3}, 21 + (uint64_t)r);
  std::vector<int64_t> lab(2 * 64 * 64);
  for (size_t i = 0; i < lab.size(); ++i) lab[i] = (int64_t)((i * 2654435761u >> 7) % 3);
  const Tensor y = Tensor::from_vector_i64(lab, {2, 64, 64});
  for (const bool overflow_on_rank0 : {false, true}) {
    SCOPED_TRACE(overflow_on_rank0 ? "rank 0 overflows" : "no rank overflows");
    const float scale = overflow_on_rank0 && r == 0 ? 1099511627776.f : 1.f;
    buckets.begin_step();
    mul(seg_loss(dp->forward(x), y), scale).backward();
    buckets.finish_step();
    std::vector<Tensor> grads;
    for (size_t i = 0; i < params.size(); ++i) grads.push_back(buckets.has_grad(i) ? params[i].grad() : Tensor());
    const bool found = unscale_grads_check_finite(grads, 1.f / scale);
    EXPECT_EQ(found, overflow_on_rank0);
    const auto flags = c.all_gather_bytes(found ? "skip" : "step", "unscale verdicts");
    EXPECT_EQ(flags[0], flags[1]) << "the ranks disagree on skipping the step";
  }
}

// Data-parallel O2's 16-bit gradient buckets (bf16 and f16 on the wire): each rank's reduced
// gradient is the mean of the two ranks' f32 gradients rounded to the type (each rounded, their sum
// rounded, the halving rounded), bit for bit, and the same on both ranks; the f32 buffers keep the
// rank's own gradient; an update reading the 16-bit gradients leaves the same weights on both ranks.
TEST_F(Distributed, SixteenBitGradientBucketsHoldTheRoundedMeanOnEveryRank) {
  Communicator& c = world();
  const int r = c.rank();
  for (DType wire : {DType::BF16, DType::F16}) {
    SCOPED_TRACE(dtype_name(wire));
    auto dp = nn::build_seg_model(spec_t(7));
    dp->train();
    std::vector<Tensor> params;
    for (auto& [n, p] : dp->named_parameters()) params.push_back(p);
    train::GradBuckets buckets(params, c, /*bucket_bytes=*/512 << 10, wire);
    ASSERT_EQ(buckets.wire_dtype(), wire);
    const Tensor x = Tensor::randn({1, 64, 64, 3}, 31 + (uint64_t)r);
    std::vector<int64_t> lab(64 * 64);
    for (size_t i = 0; i < lab.size(); ++i) lab[i] = (int64_t)((i * 2654435761u >> 9) % 3);
    buckets.begin_step();
    seg_loss(dp->forward(x), Tensor::from_vector_i64(lab, {1, 64, 64})).backward();
    buckets.finish_step();
    // Every rank's own f32 gradients, in parameter order.
    std::string mine;
    std::vector<Tensor> reduced;
    for (size_t i = 0; i < params.size(); ++i) {
      ASSERT_TRUE(buckets.has_grad(i)) << i;
      mine += bytes_of(params[i].grad());
      reduced.push_back(buckets.reduced_grad(i));
      ASSERT_EQ(reduced.back().dtype(), wire);
      ASSERT_EQ(reduced.back().shape(), params[i].shape());
    }
    const auto all = c.all_gather_bytes(mine, "local gradients");
    ASSERT_EQ(all[0].size(), all[1].size());
    const float* g0 = reinterpret_cast<const float*>(all[0].data());
    const float* g1 = reinterpret_cast<const float*>(all[1].data());
    size_t at = 0, rounded_differently = 0;
    for (size_t i = 0; i < params.size(); ++i) {
      const Tensor got = reduced[i].contiguous();
      const uint16_t* bits = static_cast<const uint16_t*>(got.raw_data());
      for (int64_t j = 0; j < got.numel(); ++j, ++at) {
        uint16_t want = 0;
        kernels::with_storage(wire, "test", [&]<DType D>() {
          using S = kernels::Storage<D>;
          const float sum = S::load(S::store(S::load(S::store(g0[at])) + S::load(S::store(g1[at]))));
          want = S::store(sum * 0.5f);
          if (want != S::store((g0[at] + g1[at]) * 0.5f)) ++rounded_differently;
        });
        ASSERT_EQ(bits[j], want) << "parameter " << i << " element " << j;
      }
    }
    EXPECT_EQ(at * sizeof(float), all[0].size());
    // (Most elements round the same either way; some do not, so the test sees the order of roundings.)
    EXPECT_GT(rounded_differently, 0u);
    // The f32 buffers still hold this rank's gradients.
    const float* own = reinterpret_cast<const float*>(all[(size_t)r].data());
    EXPECT_EQ(0, std::memcmp(own, mine.data(), mine.size()));
    std::vector<Tensor> velocities;
    for (const Tensor& p : params) velocities.push_back(Tensor::zeros(p.shape(), DType::F32));
    sgd_momentum_update(params, reduced, velocities, 0.01f, 0.9f, 5e-4f);
    std::string weights;
    for (const Tensor& p : params) weights += bytes_of(p);
    const auto both = c.all_gather_bytes(weights, "weights after the update");
    EXPECT_TRUE(both[0] == both[1]) << "the ranks' weights differ after the update";
  }
}

TEST_F(Distributed, SyncBatchNormWithUnevenBatchesEqualsBatchNormOverAllRows) {
  Communicator& c = world();
  const int r = c.rank();
  const Tensor x = Tensor::randn({4, 5, 6, 8}, 21, 2.f);
  const Tensor w = Tensor::randn({4, 5, 6, 8}, 22);  // loss = sum(y * w)
  nn::BatchNorm2d full(8), synced(8);
  full.train();
  synced.train();
  synced.set_sync([&c](const std::vector<Tensor>& t) { c.all_reduce(t, ReduceOp::Sum, "sync bn"); });
  Tensor xf = x.clone().detach().set_requires_grad(true);
  const Tensor yf = full.forward(xf);
  sum(mul(yf, w)).backward();

  const int64_t first = r == 0 ? 0 : 1, rows = r == 0 ? 1 : 3;  // uneven: 1 + 3 rows
  Tensor xs = x.narrow(0, first, rows).contiguous().detach().set_requires_grad(true);
  const Tensor ys = synced.forward(xs);
  sum(mul(ys, w.narrow(0, first, rows).contiguous())).backward();

  EXPECT_LT(scaled_diff(ys, yf.narrow(0, first, rows).contiguous()), 1e-5);
  EXPECT_LT(scaled_diff(xs.grad(), xf.grad().narrow(0, first, rows).contiguous()), 1e-5);
  // Each rank holds its part of the parameter gradients: their sum is the whole batch's.
  Tensor gw = synced.weight().grad().clone(), gb = synced.bias().grad().clone();
  c.all_reduce({gw, gb}, ReduceOp::Sum, "bn parameter gradients");
  EXPECT_LT(scaled_diff(gw, full.weight().grad()), 1e-5);
  EXPECT_LT(scaled_diff(gb, full.bias().grad()), 1e-5);
  EXPECT_LT(scaled_diff(synced.running_mean(), full.running_mean()), 1e-6);
  EXPECT_LT(scaled_diff(synced.running_var(), full.running_var()), 1e-6);
}

namespace {
// A source whose samples are their own indices.
class IndexSource : public data::BatchSource {
 public:
  explicit IndexSource(int64_t n) : n_(n) {}
  int64_t size() const override { return n_; }
  const std::string& where() const override { return where_; }
  void build(data::Batch& b, int64_t, uint64_t) const override {
    b.tensors["index"] = Tensor::from_vector_i64(b.indices, {(int64_t)b.indices.size()});
  }

 private:
  int64_t n_;
  std::string where_ = "index_source";
};
}  // namespace

TEST_F(Distributed, LoaderShardsAreDisjointAndCoverTheDataSet) {
  Communicator& c = world();
  for (const int64_t n : {11, 12}) {
    data::LoaderOptions o;
    o.batch_size = 2;
    o.shuffle = true;
    o.drop_last = false;
    o.seed = 5;
    o.rank = c.rank();
    o.world_size = c.world_size();
    data::DataLoader loader(std::make_shared<IndexSource>(n), o);
    for (int epoch = 0; epoch < 2; ++epoch) {
      std::vector<int64_t> mine;
      for (int64_t b = 0; b < loader.batches_per_epoch(); ++b) {
        const data::Batch batch = loader.next();
        for (int64_t i : batch.at("index").to_vector_i64()) mine.push_back(i);
      }
      const auto all = c.all_gather_bytes(
          std::string(reinterpret_cast<const char*>(mine.data()), mine.size() * sizeof(int64_t)), "shards");
      std::vector<int64_t> seen;
      for (const std::string& s : all) {
        EXPECT_EQ(s.size(), all[0].size()) << "ranks got different numbers of samples";
        std::vector<int64_t> v(s.size() / sizeof(int64_t));
        std::memcpy(v.data(), s.data(), s.size());
        seen.insert(seen.end(), v.begin(), v.end());
      }
      // Every index once, plus the padding repeats that make the epoch a multiple of the world size.
      const int64_t padded = (n + 1) / 2 * 2;
      EXPECT_EQ((int64_t)seen.size(), padded) << "n " << n;
      const std::set<int64_t> distinct(seen.begin(), seen.end());
      EXPECT_EQ((int64_t)distinct.size(), n) << "n " << n << " epoch " << epoch;
      EXPECT_EQ(*distinct.begin(), 0);
      EXPECT_EQ(*distinct.rbegin(), n - 1);
    }
  }
}

TEST_F(Distributed, CollectivesOfTheMpiCommunicator) {
  Communicator& c = world();
  const int r = c.rank();
  // Mean and sum, a size that is not a multiple of anything convenient.
  Tensor t = Tensor::full({1001}, (float)(r + 1));
  c.all_reduce({t}, ReduceOp::Mean, "mean");
  for (float v : t.to_vector()) ASSERT_EQ(v, 1.5f);
  Tensor s = Tensor::full({3}, (float)(10 * r + 1));
  c.all_reduce({s}, ReduceOp::Sum, "sum");
  EXPECT_EQ(s.to_vector(), (std::vector<float>{12, 12, 12}));
  // Broadcast from rank 1.
  Tensor b = Tensor::full({4}, (float)r);
  c.broadcast(b, 1, "broadcast");
  EXPECT_EQ(b.to_vector(), (std::vector<float>{1, 1, 1, 1}));
  // Gather of unequal sizes, including an empty one and a zero byte.
  const std::string mine = r == 0 ? std::string() : std::string("a\0b", 3);
  const auto all = c.all_gather_bytes(mine, "gather");
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0], "");
  EXPECT_EQ(all[1], std::string("a\0b", 3));
  c.barrier("end of test");
  // A tensor the MPI communicator cannot take is refused with its description.
  Tensor i64 = Tensor::zeros({2}, DType::I64);
  try {
    c.all_reduce({i64}, ReduceOp::Sum, "an i64 tensor");
    ADD_FAILURE() << "an i64 tensor was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("dense f32, bf16 or f16 CPU tensors"), std::string::npos) << e.what();
  }
}
