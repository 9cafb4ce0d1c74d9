// Gradient buckets of data-parallel training (train/grad_buckets.h) in one process, with a recording
// communicator that stands in for MPI/NCCL: the layout (reverse parameter order, the size cap, a
// parameter larger than a bucket alone in its own), gradients as views into the buckets (backward adds
// into them in place, so no two parameters share storage), buckets started in index order as their
// last gradient completes during backward, parameters without a gradient, zeroing between steps, and
// hooks that do nothing once the buckets are gone; a 16-bit wire (a rounded twin of each bucket is
// reduced). Across real MPI ranks: tests/test_distributed.cpp.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "engine/comm/communicator.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "engine/precision.h"
#include "models/layers.h"
#include "models/module.h"
#include "train/grad_buckets.h"

using namespace engine;

namespace {

// Records every collective; a "reduction" doubles the tensor so that a test sees it was applied once.
class RecordingCommunicator final : public Communicator {
 public:
  struct Started {
    std::string what;
    int64_t numel;
    bool waited = false;
  };
  std::vector<Started> started;
  // Something that happens between collectives (e.g. "backward done"), in the same log.
  std::vector<std::string> log;

  int rank() const override { return 0; }
  int world_size() const override { return 2; }
  std::string name() const override { return "recording"; }
  std::unique_ptr<PendingCollective> start_all_reduce(const Tensor& t, ReduceOp op, const std::string& what) override {
    EXPECT_EQ(op, ReduceOp::Mean) << what;
    started.push_back({what, t.numel()});
    log.push_back("start " + what);
    class Pending final : public PendingCollective {
     public:
      Pending(RecordingCommunicator* c, size_t i, Tensor t) : c_(c), i_(i), t_(std::move(t)) {}
      void wait() override {
        if (c_->started[i_].waited) return;
        c_->started[i_].waited = true;
        t_.copy_(mul(t_, 2.f));  // the "mean over ranks" of this fake world: visible and applied once
      }

     private:
      RecordingCommunicator* c_;
      size_t i_;
      Tensor t_;
    };
    return std::make_unique<Pending>(this, started.size() - 1, t);
  }
  void broadcast(const Tensor&, int, const std::string&) override {}
  void barrier(const std::string&) override {}
  std::vector<std::string> all_gather_bytes(const std::string& mine, const std::string&) override {
    return {mine, mine};
  }
};

Tensor param(const Shape& s, uint64_t seed) { return Tensor::randn(s, seed).set_requires_grad(true); }

}  // namespace

TEST(GradBuckets, LayoutIsReverseParameterOrderWithACap) {
  RecordingCommunicator comm;
  // 4 bytes per element; cap 100 elements = 400 bytes.
  std::vector<Tensor> p = {param({30}, 1), param({50}, 2), param({150}, 3), param({40}, 4), param({70}, 5)};
  train::GradBuckets b(p, comm, 400);
  // Reverse order: p4 (70) -> bucket 0; p3 (40) does not fit (110 > 100) -> bucket 1; p2 (150) alone
  // (larger than a bucket) -> bucket 2; p1 (50) + p0 (30) -> bucket 3, the small last bucket.
  ASSERT_EQ(b.num_buckets(), 4u);
  EXPECT_EQ(b.bucket_of(4), 0u);
  EXPECT_EQ(b.bucket_of(3), 1u);
  EXPECT_EQ(b.bucket_of(2), 2u);
  EXPECT_EQ(b.bucket_of(1), 3u);
  EXPECT_EQ(b.bucket_of(0), 3u);
  EXPECT_EQ(b.bucket_numel(0), 70);
  EXPECT_EQ(b.bucket_numel(1), 40);
  EXPECT_EQ(b.bucket_numel(2), 150);
  EXPECT_EQ(b.bucket_numel(3), 80);
}

TEST(GradBuckets, GradientsAreViewsReducedOnceAndStartedInOrderDuringBackward) {
  RecordingCommunicator comm;
  // A chain: y = sum(((x * a) * b) * c); backward completes c first, then b, then a.
  Tensor a = param({64}, 1), b2 = param({64}, 2), c = param({64}, 3);
  const Tensor x = Tensor::randn({64}, 4);
  train::GradBuckets buckets({a, b2, c}, comm, 64 * 4);  // one parameter per bucket
  ASSERT_EQ(buckets.num_buckets(), 3u);
  // The reference gradients of one process.
  sum(mul(mul(mul(x, a), b2), c)).backward();
  const std::vector<float> ga = a.grad().to_vector(), gb = b2.grad().to_vector(), gc = c.grad().to_vector();
  for (Tensor t : {a, b2, c}) t.zero_grad();

  for (int step = 0; step < 2; ++step) {  // the second step checks that begin_step zeroes the buckets
    comm.started.clear();
    comm.log.clear();
    buckets.begin_step();
    // The gradients point into the buckets: three different storages here (one bucket each).
    EXPECT_NE(a.grad().storage().get(), b2.grad().storage().get());
    sum(mul(mul(mul(x, a), b2), c)).backward();
    comm.log.push_back("backward done");
    buckets.finish_step();
    // Started in bucket order (c's bucket 0 first), all of them before backward returned.
    ASSERT_EQ(comm.started.size(), 3u);
    EXPECT_EQ(comm.started[0].what, "gradient bucket 0");
    EXPECT_EQ(comm.started[2].what, "gradient bucket 2");
    EXPECT_EQ(comm.log.back(), "backward done");
    EXPECT_EQ(buckets.started_during_backward(), 3u);
    // Each gradient reduced exactly once (the fake reduction doubles): 2 * the one-process gradient.
    const std::vector<float> ra = a.grad().to_vector(), rb = b2.grad().to_vector(), rc = c.grad().to_vector();
    for (size_t i = 0; i < 64; ++i) {
      ASSERT_FLOAT_EQ(ra[i], 2 * ga[i]) << "step " << step << " element " << i;
      ASSERT_FLOAT_EQ(rb[i], 2 * gb[i]) << "step " << step << " element " << i;
      ASSERT_FLOAT_EQ(rc[i], 2 * gc[i]) << "step " << step << " element " << i;
    }
  }
}

// A 16-bit wire: each bucket is rounded once into its 16-bit twin when it starts, the twin is what is
// reduced, and reduced_grad() views it; backward's f32 buffers keep the rank's own gradients.
TEST(GradBuckets, SixteenBitWireReducesARoundedTwin) {
  for (DType wire : {DType::BF16, DType::F16}) {
    SCOPED_TRACE(dtype_name(wire));
    RecordingCommunicator comm;
    Tensor a = param({64}, 1), b2 = param({48}, 2);
    const Tensor x = Tensor::randn({64}, 4);
    train::GradBuckets buckets({a, b2}, comm, 64 * 4, wire);
    EXPECT_EQ(buckets.wire_dtype(), wire);
    sum(mul(x, a)).backward();
    sum(mul(b2, b2)).backward();
    const Tensor ga = a.grad().clone(), gb = b2.grad().clone();
    for (Tensor t : {a, b2}) t.zero_grad();
    buckets.begin_step();
    sum(mul(x, a)).backward();
    sum(mul(b2, b2)).backward();
    buckets.finish_step();
    ASSERT_EQ(comm.started.size(), 2u);
    for (auto [p, g, i] : {std::tuple{a, ga, size_t(0)}, std::tuple{b2, gb, size_t(1)}}) {
      const Tensor r = buckets.reduced_grad(i);
      ASSERT_EQ(r.dtype(), wire);
      ASSERT_EQ(r.shape(), p.shape());
      // The fake reduction doubles, exactly in any type: 2 * the gradient rounded to the wire's type.
      const std::vector<float> got = r.to(DType::F32).to_vector(), want = g.to(wire).to(DType::F32).to_vector();
      for (size_t j = 0; j < got.size(); ++j) ASSERT_EQ(got[j], 2 * want[j]) << "parameter " << i << " element " << j;
      EXPECT_EQ(p.grad().to_vector(), g.to_vector()) << "the f32 buffer of parameter " << i << " was changed";
    }
  }
  RecordingCommunicator comm;
  try {
    train::GradBuckets bad({param({4}, 1)}, comm, 1024, DType::I32);
    ADD_FAILURE() << "an i32 wire was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("wire type must be f32, bf16 or f16"), std::string::npos) << e.what();
  }
}

// --allreduce_dtype: auto is the low type at O2 on GPU ranks, f32 on CPU ranks and below O2; an
// explicit type wins.
TEST(GradBuckets, AllreduceDtypeRule) {
  EXPECT_EQ(train::parse_allreduce_dtype("auto", "--allreduce_dtype"), std::nullopt);
  EXPECT_EQ(train::parse_allreduce_dtype("bf16", "--allreduce_dtype"), DType::BF16);
  EXPECT_THROW(train::parse_allreduce_dtype("half", "--allreduce_dtype"), Error);
  for (Precision p : {Precision::BF16, Precision::FP16}) {
    const DType low = p == Precision::BF16 ? DType::BF16 : DType::F16;
    {
      const AutocastGuard o2(p, AmpLevel::O2);
      EXPECT_EQ(train::allreduce_dtype(std::nullopt, Device::cuda(0)), low);
      EXPECT_EQ(train::allreduce_dtype(std::nullopt, Device::cpu()), DType::F32);
      EXPECT_EQ(train::allreduce_dtype(DType::F32, Device::cuda(0)), DType::F32);
      EXPECT_EQ(train::allreduce_dtype(DType::BF16, Device::cpu()), DType::BF16);
    }
    const AutocastGuard o1(p, AmpLevel::O1);
    EXPECT_EQ(train::allreduce_dtype(std::nullopt, Device::cuda(0)), DType::F32);
  }
}

TEST(GradBuckets, ParametersSharingABucketAndAnAddDoNotShareGradients) {
  // add() hands one gradient tensor to both inputs; in a bucket each parameter still gets its own slot.
  RecordingCommunicator comm;
  Tensor a = param({8}, 1), b2 = param({8}, 2);
  train::GradBuckets buckets({a, b2}, comm);  // both in one bucket
  ASSERT_EQ(buckets.num_buckets(), 1u);
  buckets.begin_step();
  sum(mul(add(a, b2), 3.f)).backward();
  buckets.finish_step();
  ASSERT_EQ(comm.started.size(), 1u);
  for (float v : a.grad().to_vector()) ASSERT_FLOAT_EQ(v, 6.f);  // 3, reduced once (x2)
  for (float v : b2.grad().to_vector()) ASSERT_FLOAT_EQ(v, 6.f);
  EXPECT_EQ(a.grad().storage().get(), b2.grad().storage().get());  // one bucket...
  EXPECT_NE(a.grad().offset(), b2.grad().offset());                // ...two slots
}

TEST(GradBuckets, AParameterWithoutAGradientIsStartedAtTheEndAndReported) {
  RecordingCommunicator comm;
  Tensor used = param({16}, 1), unused = param({16}, 2);
  train::GradBuckets buckets({unused, used}, comm, 16 * 4);  // bucket 0 = used, bucket 1 = unused
  buckets.begin_step();
  sum(mul(used, 2.f)).backward();
  EXPECT_EQ(buckets.started_during_backward(), 1u);
  buckets.finish_step();
  ASSERT_EQ(comm.started.size(), 2u);  // every rank starts every bucket, in order
  EXPECT_TRUE(buckets.has_grad(1));
  EXPECT_FALSE(buckets.has_grad(0));  // the optimizer skips it (Paddle updates only parameters with a gradient)
  for (float v : unused.grad().to_vector()) ASSERT_EQ(v, 0.f);
}

TEST(GradBuckets, HooksDoNothingOnceTheBucketsAreGone) {
  RecordingCommunicator comm;
  Tensor a = param({4}, 1);
  {
    train::GradBuckets buckets({a}, comm);
    buckets.begin_step();
    sum(a).backward();
    buckets.finish_step();
  }
  EXPECT_FALSE(a.grad().defined());  // the bucket views were dropped with the buckets
  comm.started.clear();
  sum(mul(a, 5.f)).backward();  // the leftover hook must not touch the destroyed buckets
  EXPECT_TRUE(comm.started.empty());
  for (float v : a.grad().to_vector()) ASSERT_FLOAT_EQ(v, 5.f);
}

TEST(GradBuckets, PPLiteSegBucketsCoverEveryParameterOnce) {
  nn::SegModelSpec spec;
  spec.backbone = "STDC1";
  spec.num_classes = 3;
  spec.arm_out_chs = {32, 64, 128};
  spec.seg_head_inter_chs = {32, 64, 64};
  auto model = nn::build_seg_model(spec);
  std::vector<Tensor> params;
  int64_t total = 0;
  for (auto& [n, p] : model->named_parameters()) params.push_back(p), total += p.numel();
  RecordingCommunicator comm;
  train::GradBuckets buckets(params, comm, int64_t(1) << 20);  // 1 MB buckets
  int64_t covered = 0;
  std::vector<int> members(buckets.num_buckets(), 0);
  for (size_t i = 0; i < params.size(); ++i) members[buckets.bucket_of(i)]++;
  for (size_t b = 0; b < buckets.num_buckets(); ++b) {
    covered += buckets.bucket_numel(b);
    // Within the cap, unless it is one parameter larger than the cap.
    EXPECT_TRUE(buckets.bucket_numel(b) * 4 <= (int64_t(1) << 20) || members[b] == 1) << "bucket " << b;
  }
  EXPECT_EQ(covered, total);
  EXPECT_GT(buckets.num_buckets(), 5u);
  // Bucket indices never decrease from the last parameter to the first.
  for (size_t i = 0; i + 1 < params.size(); ++i) EXPECT_GE(buckets.bucket_of(i), buckets.bucket_of(i + 1));
}
