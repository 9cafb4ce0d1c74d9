// labels: kernel sanitize
// CUDA graphs (engine/cuda_graph.h) on the (emulated) GPU: a captured sequence of ops does not run at
// capture time and reruns on the tensors' contents at every replay; memory the graph uses is never
// handed to work outside it; a host read of device memory during a capture fails the capture
// (CaptureFailed) and leaves the engine usable; checks handed to check_on_host run after every
// replay, and a bad batch's nan loss keeps a captured update from running; a step's update held in the graph reads its
// learning rate, loss scale and skip decision when it runs; and the training steps of PP-LiteSeg-T and YOLOv3 replayed
// from a graph give the eager step's loss and gradients bit for bit, also for a new batch copied into the captured
// inputs. Under the emulator the captured work is recorded and rerun on the host exactly as a GPU reruns it, so these
// checks run in CI; on a real GPU the same tests run against CUDA itself.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "engine/allocator.h"
#include "engine/autograd.h"
#include "engine/cuda_graph.h"
#include "engine/ops/copy.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/loss.h"
#include "engine/ops/optim.h"
#include "engine/ops/reduce.h"
#include "engine/ops/yolo_loss.h"
#include "models/det_model.h"
#include "models/pp_liteseg.h"
#include "train/step_graphs.h"

using namespace engine;

namespace {

#define REQUIRE_CUDA() \
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device (real or emulated)"

bool same_bits(const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype() || a.shape() != b.shape()) return false;
  const Tensor ha = a.to(Device::cpu()).contiguous(), hb = b.to(Device::cpu()).contiguous();
  return std::memcmp(ha.raw_data(), hb.raw_data(), ha.nbytes()) == 0;
}

// Programs make a pool and a graph before they know the device (bench_train's step); on a machine
// without a GPU, where any CUDA call fails, making and dropping them must not touch CUDA.
TEST(CudaGraph, AnUnusedPoolAndGraphTouchNoDevice) {
  auto pool = std::make_shared<GraphPool>();
  { CudaGraph g(pool); }
  pool.reset();
  EXPECT_FALSE(capturing_cuda_graph());
}

TEST(CudaGraph, ReplaysOnTheCurrentInputsAndDoesNotRunAtCapture) {
  REQUIRE_CUDA();
  const Device d = Device::cuda();
  const Tensor x = Tensor::from_vector({1, -2, 3, -4}, {4}, d);
  Tensor y;
  CudaGraph g(std::make_shared<GraphPool>());
  g.capture([&] { y = relu(add(mul(x, x), x)); });  // x^2 + x, then relu
  ASSERT_TRUE(g.captured());
  EXPECT_GT(g.nodes(), 2u);
  g.replay();
  EXPECT_EQ(y.to_vector(), (std::vector<float>{2, 2, 12, 12}));
  copy_into(x, Tensor::from_vector({-1, 0.5f, 2, 10}, {4}));
  g.replay();
  EXPECT_EQ(y.to_vector(), (std::vector<float>{0, 0.75f, 6, 110}));
}

TEST(CudaGraph, ItsMemoryIsNotHandedToWorkOutsideIt) {
  REQUIRE_CUDA();
  const Device d = Device::cuda();
  const Tensor x = Tensor::full({1000}, 2.f, DType::F32, d);
  Tensor y;
  CudaGraph g(std::make_shared<GraphPool>());
  // The temporaries (x * 3, + 1) are freed during the capture and rewritten at every replay.
  g.capture([&] { y = mul(add(mul(x, 3.f), 1.f), 2.f); });
  std::vector<Tensor> outside;
  for (int i = 0; i < 8; ++i) outside.push_back(Tensor::full({1000}, 100.f + (float)i, DType::F32, d));
  g.replay();
  EXPECT_EQ(y.to_vector()[999], 14.f);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(outside[(size_t)i].to_vector()[0], 100.f + (float)i) << i;
  empty_cache();  // keeps the graph's pool
  g.replay();
  EXPECT_EQ(y.to_vector()[0], 14.f);
}

TEST(CudaGraph, AHostReadDuringCaptureFailsTheCaptureAndTheEngineGoesOn) {
  REQUIRE_CUDA();
  const Device d = Device::cuda();
  const Tensor x = Tensor::full({16}, 3.f, DType::F32, d);
  CudaGraph g(std::make_shared<GraphPool>());
  try {
    g.capture([&] { (void)mul(x, 2.f).to_vector(); });
    FAIL() << "expected CaptureFailed";
  } catch (const CaptureFailed& e) {
    EXPECT_NE(std::string(e.what()).find("StreamCapture"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(g.captured());
  EXPECT_FALSE(capturing_cuda_graph());
  EXPECT_EQ(mul(x, 2.f).to_vector()[5], 6.f);  // eager work after the failed capture
  // An op's own error inside a capture is rethrown as itself.
  EXPECT_THROW(g.capture([&] { (void)add(x, Tensor::full({3}, 1.f, DType::F32, d)); }), Error);
  EXPECT_FALSE(g.captured());
  // Constants uploaded during the capture are copied again at every replay.
  Tensor c;
  g.capture([&] { c = add(x, Tensor::from_vector({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, {16}, d)); });
  g.replay();
  EXPECT_EQ(c.to_vector()[15], 19.f);
}

TEST(CudaGraph, HostChecksRunAfterEveryReplay) {
  REQUIRE_CUDA();
  const Device d = Device::cuda();
  const Tensor logits = Tensor::uniform({6, 3}, 1, -1.f, 1.f, d);
  const Tensor labels = Tensor::from_vector_i64({0, 1, 2, 0, 1, 2}, {6}, d);
  Tensor loss;
  CudaGraph g(std::make_shared<GraphPool>());
  g.capture([&] { loss = cross_entropy(logits, labels); });
  g.replay();
  const float good = loss.item();
  EXPECT_TRUE(std::isfinite(good));
  copy_into(labels, Tensor::from_vector_i64({0, 1, 7, 0, 1, 2}, {6}));
  try {
    g.replay();
    FAIL() << "expected the label error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("outside [0, 3)"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(std::isnan(loss.item()));  // what a step's update reads: it does nothing on a nan loss
  copy_into(labels, Tensor::from_vector_i64({0, 1, 2, 0, 1, 2}, {6}));
  g.replay();
  EXPECT_EQ(loss.item(), good);
}

// A bad batch in a captured step with its update. The host check of the batch runs after the replay,
// so the loss is made nan on the device (a label outside the classes, a probability outside [0, 1],
// a gt class out of range) and the update, which reads the loss when it runs, does nothing: the
// replay reports the error by name and leaves the weights and momentum of the step before. A good
// batch afterwards updates again.
void expect_a_bad_batch_leaves_the_weights(Tensor w, const std::function<Tensor()>& loss_of,
                                           const std::function<void(bool bad)>& set_batch, const std::string& error) {
  const Device d = w.device();
  const Tensor lr = Tensor::full({1}, 0.1f, DType::F32, d);
  const Tensor v = Tensor::zeros(w.shape(), DType::F32, d);
  Tensor loss;
  set_batch(false);
  CudaGraph g(std::make_shared<GraphPool>());
  g.capture([&] {
    loss = loss_of();
    loss.backward();
    sgd_momentum_update({w}, {w.grad()}, {v}, 0.f, 0.9f, 0.f, UpdateAtRun{lr, loss, Tensor()});
  });
  w.zero_grad();
  Tensor w0 = w.detach().clone();
  g.replay();
  ASSERT_TRUE(std::isfinite(loss.item()));
  EXPECT_FALSE(same_bits(w, w0));  // a good batch updates
  w0 = w.detach().clone();
  const Tensor v0 = v.clone();
  set_batch(true);
  try {
    g.replay();
    FAIL() << "expected: " << error;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(error), std::string::npos) << e.what();
  }
  EXPECT_TRUE(std::isnan(loss.item()));
  EXPECT_TRUE(same_bits(w, w0));
  EXPECT_TRUE(same_bits(v, v0));
  set_batch(false);
  g.replay();
  EXPECT_TRUE(std::isfinite(loss.item()));
  EXPECT_FALSE(same_bits(w, w0));
}

TEST(CudaGraph, ABadLabelInACapturedStepLeavesTheWeights) {
  REQUIRE_CUDA();
  const Device d = Device::cuda();
  Tensor w = Tensor::uniform({8, 3}, 5, -1.f, 1.f, d);
  w.set_requires_grad(true);
  const Tensor x = Tensor::uniform({8, 3}, 6, -2.f, 2.f, d);
  const Tensor labels = Tensor::empty({8}, DType::I64, d);
  auto set_labels = [&](bool bad) {
    copy_into(labels, Tensor::from_vector_i64({0, 1, 2, 255, 1, 2, 0, bad ? 3 : 1}, {8}));
  };
  expect_a_bad_batch_leaves_the_weights(
      w, [&] { return cross_entropy(mul(w, x), labels); }, set_labels, "outside [0, 3)");
  // OHEM shares the cross entropy's forward; when it mines, its own finalize writes the loss.
  expect_a_bad_batch_leaves_the_weights(
      w, [&] { return ohem_cross_entropy(mul(w, x), labels, 0.9f, 4); }, set_labels, "outside [0, 3)");
}

TEST(CudaGraph, AProbabilityOutOfRangeInACapturedStepLeavesTheWeights) {
  REQUIRE_CUDA();
  const Device d = Device::cuda();
  Tensor w = Tensor::uniform({16}, 5, 0.2f, 0.8f, d);
  w.set_requires_grad(true);
  const Tensor x = Tensor::empty({16}, DType::F32, d);
  const Tensor target = Tensor::uniform({16}, 6, 0.f, 1.f, d);
  auto set_x = [&](bool bad) {
    std::vector<float> v(16, 0.5f);
    if (bad) v[11] = 3.f;  // w * 3 > 1
    copy_into(x, Tensor::from_vector(v, {16}));
  };
  expect_a_bad_batch_leaves_the_weights(
      w, [&] { return binary_cross_entropy(mul(w, x), target); }, set_x, "binary_cross_entropy");
}

TEST(CudaGraph, AGtClassOutOfRangeInACapturedStepLeavesTheWeights) {
  REQUIRE_CUDA();
  const Device d = Device::cuda();
  // Heads of a 64x64 input at strides 32, 16, 8 with 3 anchors each and 2 classes: 3 * (5 + 2) channels.
  YoloLossArgs args;
  args.num_classes = 2;
  Tensor w = Tensor::uniform({21}, 5, -0.5f, 0.5f, d);
  w.set_requires_grad(true);
  std::vector<Tensor> features;
  for (int64_t side : {2, 4, 8}) features.push_back(Tensor::uniform({2, side, side, 21}, 7 + side, -1.f, 1.f, d));
  const Tensor box = Tensor::from_vector({0.3f, 0.4f, 0.2f, 0.3f, 0.6f, 0.5f, 0.5f, 0.4f, 0.f, 0.f, 0.f, 0.f,
                                          0.5f, 0.5f, 0.9f, 0.8f, 0.2f, 0.7f, 0.1f, 0.1f, 0.f, 0.f, 0.f, 0.f},
                                         {2, 3, 4}, d);
  const Tensor score = Tensor::from_vector({1.f, 1.f, 0.f, 1.f, 1.f, 0.f}, {2, 3}, d);
  const Tensor cls = Tensor::empty({2, 3}, DType::I64, d);
  auto set_classes = [&](bool bad) {
    // (the padding rows' classes are never checked: their w, h and score are 0)
    copy_into(cls, Tensor::from_vector_i64({0, 1, 9, 1, bad ? 2 : 0, -4}, {2, 3}));
  };
  expect_a_bad_batch_leaves_the_weights(
      w,
      [&] {
        std::vector<Tensor> heads;
        for (const Tensor& f : features) heads.push_back(mul(f, w));
        return yolov3_loss(heads, box, cls, score, args).loss;
      },
      set_classes, "gt_class[1, 1] = 2 is outside [0, 2)");
}

// Graphs of one pool reuse each other's freed blocks across size classes (the smallest free block up
// to 4x the request): a second graph of a smaller batch shape takes the first one's temporaries'
// blocks instead of new ones, and both replay correctly.
TEST(CudaGraph, GraphsOfAPoolShareBlocksOfOtherSizes) {
  REQUIRE_CUDA();
  const Device d = Device::cuda();
  const Tensor big = Tensor::full({3 << 20}, 1.f, DType::F32, d);    // 12 MiB
  const Tensor small = Tensor::full({3 << 19}, 2.f, DType::F32, d);  // 6 MiB
  auto pool = std::make_shared<GraphPool>();
  CudaGraph g1(pool), g2(pool);
  Tensor y1, y2;
  g1.capture([&] { y1 = max(add(big, 1.f), {0}).values; });  // its 12 MiB temporary returns to the pool
  const size_t reserved = memory_stats(d).reserved_current;
  g2.capture([&] { y2 = max(add(small, 3.f), {0}).values; });  // a 6 MiB temporary
  EXPECT_LT(memory_stats(d).reserved_current, reserved + (1u << 20));
  for (int i = 0; i < 2; ++i) {
    g1.replay();
    EXPECT_EQ(y1.item(), 2.f);
    g2.replay();
    EXPECT_EQ(y2.item(), 5.f);
  }
}

// A capture that runs out of device memory fails as a capture (the caller goes on eagerly), not as
// the op's error, and eager work fits again afterwards. The device's size is the emulator's
// CUEMU_DEVICE_MEMORY_MB; a real GPU's is not made smaller for a test.
TEST(CudaGraph, OutOfMemoryDuringACaptureFailsTheCapture) {
  REQUIRE_CUDA();
  if (!cuda_is_emulated()) GTEST_SKIP() << "needs the emulator's CUEMU_DEVICE_MEMORY_MB";
  const Device d = Device::cuda();
  const Tensor big = Tensor::full({1 << 20}, 1.f, DType::F32, d);  // 4 MiB
  empty_cache();
  // Room for 6-7 MiB more (the tensors held, rounded up, plus the few device buffers the allocator
  // does not hold): one 4 MiB temporary fits, three live at once do not.
  const size_t used_mb = (memory_stats(d).reserved_current >> 20) + 1;
  struct SmallDevice {  // (unset however the test ends)
    explicit SmallDevice(size_t mb) { setenv("CUEMU_DEVICE_MEMORY_MB", std::to_string(mb).c_str(), 1); }
    ~SmallDevice() { unsetenv("CUEMU_DEVICE_MEMORY_MB"); }
  } small(used_mb + 6);
  EXPECT_EQ(add(big, 1.f).to_vector()[7], 2.f);  // eager, one temporary at a time
  auto three_at_once = [&] {
    const Tensor a = add(big, 1.f), b = add(big, 2.f), c = add(big, 3.f);
    return add(add(a, b), c);
  };
  {
    CudaGraph g(std::make_shared<GraphPool>());
    try {
      g.capture([&] { (void)three_at_once(); });
      ADD_FAILURE() << "expected CaptureFailed";
    } catch (const CaptureFailed& e) {
      EXPECT_NE(std::string(e.what()).find("out of memory"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("CUDA graph capture"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(g.captured());
  }  // (the graph's pool holds the blocks the failed capture took until the graph is gone)
  EXPECT_EQ(add(big, 3.f).to_vector()[0], 4.f);  // eager work goes on

  // Through StepGraphs: the failed capture's memory is freed (no graph holds its pool), so the step
  // that failed to capture runs eagerly in the memory it had, here one temporary at a time.
  const Tensor w = Tensor::full({1}, 1.f, DType::F32, d).set_requires_grad(true);
  train::StepGraphs graphs(
      {w}, d,
      [&](const data::Batch&) {
        train::StepOutputs out;
        out.loss.total = sum(three_at_once());
        return out;
      },
      nullptr, [](const std::string&) {});
  data::Batch batch;
  batch.tensors["x"] = Tensor::full({1}, 1.f);
  const size_t reserved = memory_stats(d).reserved_current;
  EXPECT_FALSE(graphs.step(batch).has_value());  // warm-up
  EXPECT_FALSE(graphs.step(batch).has_value());  // the capture fails
  EXPECT_FALSE(graphs.step(batch).has_value());  // eager from now on
  EXPECT_EQ(graphs.captures(), 0);
  EXPECT_LE(memory_stats(d).reserved_current, reserved);
  EXPECT_EQ(add(big, 3.f).to_vector()[1], 4.f);
}

// A shape whose eager warm-up step skipped its backward (fp16's non-finite loss) is not captured on
// its next step: that step runs eagerly again, and the one after is captured.
TEST(CudaGraph, AWarmUpStepWithoutItsBackwardDoesNotCount) {
  REQUIRE_CUDA();
  const Device d = Device::cuda();
  const Tensor w = Tensor::full({8}, 0.5f, DType::F32, d).set_requires_grad(true);
  int enqueued = 0;
  train::StepGraphs graphs(
      {w}, d,
      [&](const data::Batch& in) {
        ++enqueued;
        train::StepOutputs out;
        out.loss.total = sum(mul(in.tensors.at("x"), w));
        out.loss.total.backward();
        return out;
      },
      nullptr, [](const std::string&) {});
  data::Batch batch;
  batch.tensors["x"] = Tensor::full({8}, 2.f);
  EXPECT_FALSE(graphs.step(batch).has_value());  // warm-up, run eagerly by the caller
  graphs.not_warmed(batch);                      // ... which skipped its backward
  EXPECT_FALSE(graphs.step(batch).has_value());  // eager again
  EXPECT_EQ(graphs.captures(), 0);
  const auto replayed = graphs.step(batch);
  ASSERT_TRUE(replayed.has_value());
  EXPECT_EQ(graphs.captures(), 1);
  EXPECT_EQ(enqueued, 1);
  EXPECT_EQ(replayed->loss.total.item(), 8.f);
}

// With several ranks a failed capture ends the run (NCCL needs the ranks to capture alike); with one
// the shape runs eagerly.
TEST(CudaGraph, AFailedCaptureIsAnErrorWithSeveralRanks) {
  REQUIRE_CUDA();
  const Device d = Device::cuda();
  const Tensor w = Tensor::full({4}, 1.f, DType::F32, d).set_requires_grad(true);
  auto host_read = [&](const data::Batch& in) {
    train::StepOutputs out;
    out.loss.total = sum(mul(in.tensors.at("x"), w));
    (void)out.loss.total.item();  // refused during a capture
    return out;
  };
  data::Batch batch;
  batch.tensors["x"] = Tensor::full({4}, 2.f);
  for (const bool several : {false, true}) {
    SCOPED_TRACE(several ? "several ranks" : "one rank");
    std::vector<std::string> lines;
    train::StepGraphs graphs(
        {w}, d, host_read, nullptr, [&](const std::string& l) { lines.push_back(l); }, several);
    EXPECT_FALSE(graphs.step(batch).has_value());  // warm-up
    if (several) {
      try {
        (void)graphs.step(batch);
        ADD_FAILURE() << "expected an error";
      } catch (const CaptureFailed&) {
        ADD_FAILURE() << "expected the run's error, not CaptureFailed";
      } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("--cuda_graph off"), std::string::npos) << e.what();
      }
    } else {
      EXPECT_FALSE(graphs.step(batch).has_value());
      ASSERT_EQ(lines.size(), 1u);
      EXPECT_NE(lines[0].find("WARNING"), std::string::npos) << lines[0];
    }
  }
}

// A whole training step's tail held in a graph (train/step_graphs.h): the loss times a scale read
// from device memory, backward, the unscale and the gated update, all reading their scalars when they
// run. Replays with a new learning rate and scale give the eager step's weights and momentum bit for
// bit; a replay whose loss is nan leaves them untouched, and so does one whose gradients overflow.
TEST(CudaGraph, AStepWithItsUpdateReplaysWithTheScalarsOfTheMoment) {
  REQUIRE_CUDA();
  const Device d = Device::cuda();
  const Tensor x = Tensor::uniform({64}, 7, -1.f, 1.f, d);
  auto fresh_weights = [&] {
    Tensor w = Tensor::uniform({64}, 8, -1.f, 1.f, d);
    w.set_requires_grad(true);
    return w;
  };
  // loss = sum(w * x) * k: k = nan poisons it, a huge k overflows the scaled gradient
  const Tensor k = Tensor::full({}, 1.f, DType::F32, d);
  const Tensor lr = Tensor::zeros({1}, DType::F32, d), scale = Tensor::zeros({}, DType::F32, d),
               inv = Tensor::zeros({1}, DType::F32, d);
  Tensor w = fresh_weights(), v = Tensor::zeros({64}, DType::F32, d);
  Tensor loss, found;
  std::vector<Tensor> grads;
  CudaGraph g(std::make_shared<GraphPool>());
  g.capture([&] {
    loss = mul(sum(mul(w, x), {0}), k);
    mul(loss, scale).backward();
    grads = {w.grad()};
    found = unscale_grads_check_finite(grads, inv);
    sgd_momentum_update({w}, grads, {v}, 0.f, 0.9f, 1e-3f, UpdateAtRun{lr, loss, found});
  });
  w.zero_grad();
  // The eager reference: the same ops with the scalars as arguments, the skip decided on the host.
  Tensor we = fresh_weights(), ve = Tensor::zeros({64}, DType::F32, d);
  auto eager_step = [&](float k_value, float lr_value, float scale_value) {
    const Tensor l = mul(sum(mul(we, x), {0}), Tensor::full({}, k_value, DType::F32, d));
    (l * scale_value).backward();
    const bool overflow = unscale_grads_check_finite({we.grad()}, (float)(1.0 / scale_value));
    if (std::isfinite(l.item()) && !overflow) sgd_momentum_update({we}, {we.grad()}, {ve}, lr_value, 0.9f, 1e-3f);
    we.zero_grad();
  };
  struct Step {
    float k, lr, scale;
    bool updates;
  };
  for (const Step& st : {Step{1.f, 0.1f, 1024.f, true}, Step{1.f, 0.05f, 8.f, true}, Step{NAN, 0.05f, 8.f, false},
                         Step{1e30f, 0.05f, 1e10f, false}, Step{2.f, 0.01f, 4096.f, true}}) {
    SCOPED_TRACE("k " + std::to_string(st.k) + " lr " + std::to_string(st.lr));
    const Tensor w0 = w.detach().clone();
    fill_(k, st.k);
    fill_(lr, st.lr);
    fill_(scale, st.scale);
    fill_(inv, (float)(1.0 / st.scale));
    g.replay();
    eager_step(st.k, st.lr, st.scale);
    EXPECT_EQ(same_bits(w, w0), !st.updates);
    EXPECT_TRUE(same_bits(w, we));
    EXPECT_TRUE(same_bits(v, ve));
  }
}

// OHEM decides on the device whether to mine, so it captures; replays with labels that make it mine
// and not mine give the eager loss and gradient bit for bit.
TEST(CudaGraph, OhemCapturesAndDecidesOnTheDevice) {
  REQUIRE_CUDA();
  const Device d = Device::cuda();
  const int64_t P = 64, C = 4;
  Tensor logits = Tensor::uniform({P, C}, 4, -2.f, 2.f, d);
  logits.set_requires_grad(true);
  const Tensor labels = Tensor::empty({P}, DType::I64, d);
  std::vector<int64_t> many(P), few(P, 255);  // 64 valid pixels (mines 20), or 8 (fewer than min_kept)
  for (int64_t i = 0; i < P; ++i) many[(size_t)i] = i % C;
  for (int64_t i = 0; i < 8; ++i) few[(size_t)i] = i % C;
  auto step = [&] {
    logits.zero_grad();
    Tensor loss = ohem_cross_entropy(logits, labels, 0.7f, 20, 255);
    loss.backward();
    return loss;
  };
  std::vector<Tensor> want_loss, want_grad;
  for (const auto* lab : {&many, &few}) {
    copy_into(labels, Tensor::from_vector_i64(*lab, {P}));
    want_loss.push_back(step());
    want_grad.push_back(logits.grad());
  }
  Tensor loss;
  logits.zero_grad();
  CudaGraph g(std::make_shared<GraphPool>());
  g.capture([&] { loss = step(); });
  const Tensor grad = logits.grad();
  for (int i : {0, 1, 0}) {
    copy_into(labels, Tensor::from_vector_i64(i == 0 ? many : few, {P}));
    g.replay();
    EXPECT_TRUE(same_bits(loss, want_loss[(size_t)i]))
        << i << ": " << loss.item() << " vs " << want_loss[(size_t)i].item();
    EXPECT_TRUE(same_bits(grad, want_grad[(size_t)i])) << i;
  }
  EXPECT_NE(want_loss[0].item(), want_loss[1].item());
}

// One training step's forward and backward, eager and replayed from a graph: the same loss and
// gradients bit for bit, for the batch it was captured with and for another one copied in.
void expect_replay_matches_eager(nn::Module& model, const std::vector<Tensor>& inputs,
                                 const std::vector<std::vector<Tensor>>& batches,
                                 const std::function<Tensor()>& forward_loss) {
  std::vector<Tensor> params;
  for (auto& [n, p] : model.named_parameters()) params.push_back(p);
  auto load = [&](size_t b) {
    for (size_t i = 0; i < inputs.size(); ++i) copy_into(inputs[i], batches[b][i]);
  };
  auto eager = [&](size_t b, Tensor& loss, std::vector<Tensor>& grads) {
    load(b);
    for (Tensor& p : params) p.zero_grad();
    loss = forward_loss();
    loss.backward();
    grads.clear();
    for (Tensor& p : params) grads.push_back(p.grad());
  };
  Tensor l0, l1;
  std::vector<Tensor> g0, g1;
  eager(0, l0, g0);  // (also the warm-up the capture needs)
  eager(1, l1, g1);
  Tensor loss;
  std::vector<Tensor> grads;
  for (Tensor& p : params) p.zero_grad();
  CudaGraph graph(std::make_shared<GraphPool>());
  graph.capture([&] {
    loss = forward_loss();
    loss.backward();
  });
  for (Tensor& p : params) grads.push_back(p.grad()), p.zero_grad();
  for (size_t b : {0, 1, 0}) {
    load(b);
    graph.replay();
    const Tensor& want = b == 0 ? l0 : l1;
    const std::vector<Tensor>& want_g = b == 0 ? g0 : g1;
    EXPECT_TRUE(same_bits(loss, want)) << "batch " << b << ": " << loss.item() << " vs " << want.item();
    size_t differing = 0;
    for (size_t i = 0; i < params.size(); ++i) differing += same_bits(grads[i], want_g[i]) ? 0 : 1;
    EXPECT_EQ(differing, 0u) << "batch " << b << ": gradients of " << differing << " of " << params.size()
                             << " parameters differ";
  }
}

TEST(CudaGraph, PPLiteSegTrainingStepReplaysBitExact) {
  REQUIRE_CUDA();
  const Device d = Device::cuda();
  nn::SegModelSpec spec;
  spec.backbone = "STDC1";
  spec.num_classes = 3;
  spec.arm_out_chs = {32, 64, 128};
  spec.seg_head_inter_chs = {32, 64, 64};
  spec.seed = 2;
  auto model = nn::build_seg_model(spec);
  model->to(d);
  model->train();
  const Tensor images = Tensor::empty({2, 64, 64, 3}, DType::F32, d);
  const Tensor labels = Tensor::empty({2, 64, 64}, DType::I64, d);
  std::vector<std::vector<Tensor>> batches;
  for (uint64_t s : {5, 6}) {
    std::vector<int64_t> lab(2 * 64 * 64);
    for (size_t i = 0; i < lab.size(); ++i) lab[i] = (int64_t)((i / 61 + s * i % 7) % 3);
    batches.push_back({Tensor::uniform({2, 64, 64, 3}, s, -1.f, 1.f), Tensor::from_vector_i64(lab, {2, 64, 64})});
  }
  expect_replay_matches_eager(*model, {images, labels}, batches, [&] {
    Tensor loss;
    for (const Tensor& l : model->forward(images)) {
      const Tensor li = cross_entropy(l, labels);
      loss = loss.defined() ? add(loss, li) : li;
    }
    return loss;
  });
}

TEST(CudaGraph, YoloV3TrainingStepReplaysBitExact) {
  REQUIRE_CUDA();
  const Device d = Device::cuda();
  nn::DetModelSpec spec;
  spec.backbone = "MobileNetV1";
  spec.num_classes = 4;
  spec.seed = 3;
  auto model = nn::build_det_model(spec);
  model->to(d);
  model->train();
  const int64_t n = 1, rows = 6, size = 96;
  const Tensor images = Tensor::empty({n, size, size, 3}, DType::F32, d);
  const Tensor box = Tensor::empty({n, rows, 4}, DType::F32, d), score = Tensor::empty({n, rows}, DType::F32, d);
  const Tensor cls = Tensor::empty({n, rows}, DType::I64, d);
  std::vector<std::vector<Tensor>> batches;
  for (uint64_t s : {8, 9}) {
    std::vector<float> bx((size_t)(n * rows * 4), 0.f), sc((size_t)(n * rows), 0.f);
    std::vector<int64_t> cl((size_t)(n * rows), 0);
    for (int64_t b = 0; b < 3; ++b) {  // 3 real boxes, 3 padding rows
      const size_t r = (size_t)b;
      bx[4 * r] = 0.2f + 0.2f * (float)b + 0.01f * (float)s;
      bx[4 * r + 1] = 0.3f + 0.15f * (float)b;
      bx[4 * r + 2] = 0.1f + 0.2f * (float)b;
      bx[4 * r + 3] = 0.2f + 0.1f * (float)s / 9.f;
      sc[r] = 1.f;
      cl[r] = (int64_t)((b + s) % 4);
    }
    batches.push_back({Tensor::uniform({n, size, size, 3}, s, -1.f, 1.f), Tensor::from_vector(bx, {n, rows, 4}),
                       Tensor::from_vector(sc, {n, rows}), Tensor::from_vector_i64(cl, {n, rows})});
  }
  YoloLossArgs args;
  args.num_classes = 4;
  expect_replay_matches_eager(*model, {images, box, score, cls}, batches,
                              [&] { return yolov3_loss(model->forward(images), box, cls, score, args).loss; });
}

}  // namespace
