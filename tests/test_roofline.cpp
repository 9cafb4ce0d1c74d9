// The roofline of bench_train --roofline (engine/roofline.h) and the Work each dispatch states to
// the profiler (engine/profiler.h): a convolution's arithmetic and traffic against the formulas, an
// elementwise op's traffic, every op of a PP-LiteSeg and a YOLOv3 training step stating its traffic,
// the ideal model summed per op and per family, the op families, the measured rates of this CPU, and
// the report.
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "engine/ops/conv.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/loss.h"
#include "engine/ops/optim.h"
#include "engine/ops/reduce.h"
#include "engine/ops/yolo_loss.h"
#include "engine/profiler.h"
#include "engine/roofline.h"
#include "kernels/cpu/cpu_isa.h"
#include "models/det_model.h"
#include "models/module.h"
#include "tests/harness/op_check.h"

using namespace engine;
using namespace engine::testing;

namespace {

// Runs f with profiling on and returns the profile by op name; leaves profiling off and no model.
template <class F>
std::map<std::string, profiler::Entry> profile(const F& f) {
  profiler::reset();
  profiler::set_enabled(true);
  f();
  profiler::set_enabled(false);
  std::map<std::string, profiler::Entry> out;
  for (const profiler::Entry& e : profiler::snapshot()) out[e.name] = e;
  profiler::reset();
  return out;
}

}  // namespace

TEST(RooflineWork, ConvolutionCountsItsMultiplyAddsAndThreeTensors) {
  // Grouped, strided, padded: x [2, 9, 9, 6], w [8, 3, 3, 3], groups 2, stride 2, padding 1 -> y [2, 5, 5, 8].
  const double flops = 2.0 * 2 * 5 * 5 * 8 * 3 * 3 * 3;  // N Ho Wo Cout Cin/groups kH kW, 2 per multiply-add
  const double bytes = 4.0 * (2 * 9 * 9 * 6 + 8 * 3 * 3 * 3 + 2 * 5 * 5 * 8);
  for (Device d : test_devices()) {
    SCOPED_TRACE(d.str());
    Tensor x = Tensor::uniform({2, 9, 9, 6}, 1, -1.f, 1.f, d);
    Tensor w = Tensor::uniform({8, 3, 3, 3}, 2, -1.f, 1.f, d);
    x.set_requires_grad(true);
    w.set_requires_grad(true);
    Conv2dArgs a;
    a.stride_h = a.stride_w = 2;
    a.pad_h = a.pad_w = 1;
    a.groups = 2;
    const auto prof = profile([&] { sum(conv2d(x, w, Tensor(), a)).backward(); });
    for (const char* op : {"conv2d", "conv2d_backward_data", "conv2d_backward_weights"}) {
      SCOPED_TRACE(op);
      ASSERT_EQ(prof.count(op), 1u);
      EXPECT_EQ(prof.at(op).calls, 1);
      EXPECT_DOUBLE_EQ(prof.at(op).flops, flops);
      EXPECT_DOUBLE_EQ(prof.at(op).bytes, bytes);
    }
  }
}

TEST(RooflineWork, ElementwiseCountsEachOperandOnce) {
  for (Device d : test_devices()) {
    SCOPED_TRACE(d.str());
    const Tensor a = Tensor::uniform({4, 5}, 1, -1.f, 1.f, d), b = Tensor::uniform({5}, 2, -1.f, 1.f, d);
    const auto prof = profile([&] { add(a, b); });
    ASSERT_EQ(prof.count("add"), 1u);
    EXPECT_DOUBLE_EQ(prof.at("add").bytes, 4.0 * (20 + 5 + 20));  // a, the broadcast b once, the output
    EXPECT_DOUBLE_EQ(prof.at("add").flops, 0.0);
  }
}

TEST(RooflineWork, EveryOpOfTrainingStepsStatesItsTraffic) {
  auto check = [](const std::map<std::string, profiler::Entry>& prof, size_t min_ops) {
    EXPECT_GE(prof.size(), min_ops);
    for (const auto& [name, e] : prof) {
      EXPECT_GT(e.bytes, 0.0) << name << " states no traffic";
      if (roofline::op_family(name) == "conv") {
        EXPECT_GT(e.flops, 0.0) << name;
      }
    }
  };
  {  // PP-LiteSeg-T: forward, cross-entropy, backward, SGD
    nn::SegModelSpec spec;
    spec.num_classes = 3;
    spec.seed = 1;
    spec.backbone = "STDC1";
    spec.arm_out_chs = {32, 64, 128};
    spec.seg_head_inter_chs = {32, 64, 64};
    auto model = nn::build_seg_model(spec);
    model->train();
    const Tensor images = Tensor::uniform({1, 64, 64, 3}, 3, -1.f, 1.f, Device::cpu());
    const Tensor labels = Tensor::from_vector_i64(std::vector<int64_t>(64 * 64, 1), {1, 64, 64}, Device::cpu());
    std::vector<Tensor> params, grads, vels;
    for (auto& [n, p] : model->named_parameters()) params.push_back(p);
    const auto prof = profile([&] {
      Tensor loss;
      for (const Tensor& l : model->forward(images)) {
        const Tensor li = cross_entropy(l, labels);
        loss = loss.defined() ? add(loss, li) : li;
      }
      loss.backward();
      for (const Tensor& p : params) {
        grads.push_back(p.grad());
        vels.push_back(Tensor::zeros(p.shape(), DType::F32, p.device()));
      }
      sgd_momentum_update(params, grads, vels, 0.01f, 0.9f, 4e-5f);
    });
    SCOPED_TRACE("PP-LiteSeg-T");
    check(prof, 20);
    EXPECT_EQ(prof.count("sgd_momentum_update"), 1u);
  }
  {  // YOLOv3 with MobileNetV1: forward, yolov3_loss, backward
    nn::DetModelSpec spec;
    spec.backbone = "MobileNetV1";
    spec.num_classes = 3;
    spec.seed = 1;
    auto model = nn::build_det_model(spec);
    model->train();
    const Tensor images = Tensor::uniform({1, 64, 64, 3}, 4, -1.f, 1.f, Device::cpu());
    const Tensor box = Tensor::from_vector({0.5f, 0.5f, 0.3f, 0.4f}, {1, 1, 4}, Device::cpu());
    const Tensor cls = Tensor::from_vector_i64({1}, {1, 1}, Device::cpu());
    const Tensor score = Tensor::from_vector({1.f}, {1, 1}, Device::cpu());
    YoloLossArgs args;
    args.num_classes = 3;
    const auto prof = profile([&] { yolov3_loss(model->forward(images), box, cls, score, args).loss.backward(); });
    SCOPED_TRACE("YOLOv3-MobileNetV1");
    check(prof, 10);
    EXPECT_EQ(prof.count("yolov3_loss_backward"), 1u);
  }
}

TEST(Roofline, IdealIsTheSlowerOfArithmeticAndTraffic) {
  roofline::Machine m;  // a made-up machine: 1 TFLOP/s, 100 GB/s
  m.peak_flops = 1e12;
  m.bandwidth = 1e11;
  profiler::Work mem;
  mem.bytes = 1e9;
  EXPECT_DOUBLE_EQ(roofline::ideal_seconds(m, mem), 1e-2);
  profiler::Work compute = mem;
  compute.flops = 1e11;  // 0.1 s of arithmetic against 0.01 s of traffic
  EXPECT_DOUBLE_EQ(roofline::ideal_seconds(m, compute), 0.1);
  profiler::Work conv = compute;
  conv.is_conv = true;  // without cuDNN (CPU machine): the same rule
  EXPECT_DOUBLE_EQ(roofline::ideal_seconds(m, conv), 0.1);
}

TEST(Roofline, TheInstalledModelSumsIdealTimesPerOpAndFamily) {
  roofline::Machine m;
  m.device = Device::cpu();
  m.peak_flops = 1e9;
  m.bandwidth = 1e8;
  roofline::install(m);
  Tensor x = Tensor::uniform({1, 8, 8, 4}, 1, -1.f, 1.f, Device::cpu());
  Tensor w = Tensor::uniform({4, 4, 3, 3}, 2, -1.f, 1.f, Device::cpu());
  x.set_requires_grad(true);
  w.set_requires_grad(true);
  Conv2dArgs a;
  a.pad_h = a.pad_w = 1;
  const auto prof = profile([&] { sum(relu(conv2d(x, w, Tensor(), a))).backward(); });
  profiler::set_ideal_model({});
  std::vector<profiler::Entry> entries;
  for (const auto& [name, e] : prof) {
    SCOPED_TRACE(name);
    EXPECT_NEAR(e.ideal_seconds, std::max(e.flops / m.peak_flops, e.bytes / m.bandwidth), 1e-15);
    EXPECT_GT(e.ideal_seconds, 0.0);
    entries.push_back(e);
  }
  ASSERT_EQ(prof.count("conv2d"), 1u);
  // A 3x3 convolution 4 -> 4 at 8x8: its traffic (x, w, y: 4 * (256 + 144 + 256) bytes at 100 MB/s, 26 us)
  // outweighs its arithmetic (2 * 64 * 4 * 36 flops at 1 GFLOP/s, 18 us).
  EXPECT_NEAR(prof.at("conv2d").ideal_seconds, 4.0 * (256 + 144 + 256) / 1e8, 1e-15);
  const auto families = roofline::by_family(entries);
  double conv_ideal = 0, conv_seconds = 0, total_ideal = 0, family_ideal = 0;
  for (const char* op : {"conv2d", "conv2d_backward_data", "conv2d_backward_weights"}) {
    conv_ideal += prof.at(op).ideal_seconds;
    conv_seconds += prof.at(op).seconds;
  }
  for (const auto& e : entries) total_ideal += e.ideal_seconds;
  bool saw_conv = false;
  for (const auto& f : families) {
    family_ideal += f.ideal_seconds;
    if (f.family != "conv") continue;
    saw_conv = true;
    EXPECT_EQ(f.calls, 3);
    EXPECT_DOUBLE_EQ(f.ideal_seconds, conv_ideal);
    EXPECT_DOUBLE_EQ(f.seconds, conv_seconds);
  }
  EXPECT_TRUE(saw_conv);
  EXPECT_NEAR(family_ideal, total_ideal, 1e-15);
  for (size_t i = 1; i < families.size(); ++i) EXPECT_GE(families[i - 1].seconds, families[i].seconds);
  // Without a model nothing is summed.
  const auto plain = profile([&] { relu(x); });
  EXPECT_EQ(plain.at("relu").ideal_seconds, 0.0);
  EXPECT_GT(plain.at("relu").bytes, 0.0);

  const std::string r = roofline::report(m, entries, 0.5);
  for (const char* s : {"roofline on cpu at fp32", "conv", "elementwise", "all ops (profiled)", "step (not profiled)",
                        "TFLOP/s", "GB/s"})
    EXPECT_NE(r.find(s), std::string::npos) << s << " missing from\n" << r;
}

TEST(Roofline, OpFamiliesComeFromTheBenchRows) {
  EXPECT_EQ(roofline::op_family("conv2d_backward_data"), "conv");
  EXPECT_EQ(roofline::op_family("batch_norm_apply"), "batch_norm");
  EXPECT_EQ(roofline::op_family("copy"), "elementwise");
  EXPECT_EQ(roofline::op_family("yolov3_loss_backward"), "yolo_loss");
  EXPECT_EQ(roofline::op_family("sgd_momentum_update"), "optim");
  EXPECT_EQ(roofline::op_family("not_an_op"), "not_an_op");
}

TEST(Roofline, MeasuresThisCpu) {
  std::vector<Precision> precisions = {Precision::FP32};
  if (kernels::cpu_has_bf16()) precisions.push_back(Precision::BF16);
  for (Precision p : precisions) {
    SCOPED_TRACE(precision_name(p));
    const roofline::Machine m = roofline::measure(Device::cpu(), p);
    // Any CPU that runs this suite does more than 1 GFLOP/s and copies more than 100 MB/s; a
    // broken measurement (zero, negative, inf, nan) fails.
    EXPECT_TRUE(std::isfinite(m.peak_flops) && m.peak_flops > 1e9) << m.peak_flops;
    EXPECT_TRUE(std::isfinite(m.bandwidth) && m.bandwidth > 1e8) << m.bandwidth;
    EXPECT_FALSE(m.cudnn_convs);
    EXPECT_NE(m.peak_from.find(precision_name(p)), std::string::npos) << m.peak_from;
  }
}
