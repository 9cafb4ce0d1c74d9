// labels: kernel
// seg_area_counts (PaddleSeg calculate_area): a hand-made confusion case with ignore pixels, random
// cases against a naive reference (CPU vs CUDA device, strided inputs, determinism via the harness),
// ignore_index inside the class range, and bad inputs.
#include <gtest/gtest.h>

#include "engine/ops/metrics.h"
#include "tests/harness/op_check.h"

using namespace engine;
using namespace engine::testing;

namespace {
std::vector<Device> devices() {
  std::vector<Device> d = {Device::cpu()};
  if (have_cuda()) d.push_back(Device::cuda(0));
  return d;
}

std::vector<std::vector<double>> ref_areas(const std::vector<double>& pred, const std::vector<double>& label, int64_t C,
                                           int64_t ignore) {
  std::vector<double> inter((size_t)C, 0), pa((size_t)C, 0), la((size_t)C, 0);
  for (size_t i = 0; i < pred.size(); ++i) {
    const int64_t p = (int64_t)pred[i], l = (int64_t)label[i];
    const bool mask = l != ignore;
    for (int64_t c = 0; c < C; ++c) {
      if (p == c && mask) pa[(size_t)c] += 1;
      if (l == c) la[(size_t)c] += 1;
      if (p == c && l == c && mask) inter[(size_t)c] += 1;
    }
  }
  return {inter, pa, la};
}
}  // namespace

TEST(Metrics, HandMadeConfusion) {
  // 2x2x3 pixels, 3 classes, 255 = ignore.
  const std::vector<int64_t> pred = {0, 1, 2, 2, 1, 0, 0, 0, 1, 2, 2, 1};
  const std::vector<int64_t> label = {0, 1, 1, 2, 255, 0, 255, 0, 1, 0, 2, 255};
  // class 0: pred at non-ignored {0,5,7} = 3 (pixel 6 ignored); label {0,5,7,9} = 4; inter {0,5,7} = 3
  // class 1: pred non-ignored {1,8} = 2 (4 and 11 ignored); label {1,2,8} = 3; inter {1,8} = 2
  // class 2: pred {2,3,9,10} = 4; label {3,10} = 2; inter {3,10} = 2
  for (Device d : devices()) {
    SegAreas a = seg_area_counts(Tensor::from_vector_i64(pred, {2, 2, 3}, d),
                                 Tensor::from_vector_i64(label, {2, 2, 3}, d), 3, 255);
    EXPECT_EQ(a.intersect.to_vector_i64(), (std::vector<int64_t>{3, 2, 2})) << d.str();
    EXPECT_EQ(a.pred.to_vector_i64(), (std::vector<int64_t>{3, 2, 4})) << d.str();
    EXPECT_EQ(a.label.to_vector_i64(), (std::vector<int64_t>{4, 3, 2})) << d.str();
    EXPECT_EQ(a.pred.dtype(), DType::I64);
    EXPECT_EQ(a.pred.shape(), Shape{3});
  }
}

TEST(Metrics, RandomAgainstReference) {
  for (int64_t C : {1, 2, 19}) {
    CheckOptions o;
    o.check_grad = false;
    o.input_gen = [C](int input, const Shape& s, uint64_t seed) {
      std::vector<float> v((size_t)shape_numel(s));
      uint64_t h = seed * 1315423911u + (uint64_t)input;
      for (float& x : v) {
        h = h * 6364136223846793005ull + 1442695040888963407ull;
        const uint64_t r = h >> 33;
        x = (input == 1 && r % 9 == 0) ? 255.f : (float)(r % (uint64_t)C);
      }
      return v;
    };
    check_op(
        "seg_area_counts_c" + std::to_string(C),
        {{"small", {{2, 3, 5}, {2, 3, 5}}}, {"odd", {{1, 33, 35}, {1, 33, 35}}}, {"flat", {{1031}, {1031}}}},
        [C](const std::vector<Tensor>& in) {
          SegAreas a = seg_area_counts(in[0].to(DType::I64), in[1].to(DType::I64), C, 255);
          return std::vector<Tensor>{a.intersect, a.pred, a.label};
        },
        [C](const RefInputs& in, const std::vector<Shape>&) { return ref_areas(in[0], in[1], C, 255); }, o);
  }
}

TEST(Metrics, IgnoreIndexInsideRange) {
  // ignore_index 0 with C = 3: label_area still counts label == 0 (PaddleSeg: label_i = label == i),
  // but predictions at those pixels are not counted.
  const std::vector<int64_t> pred = {0, 1, 2, 1}, label = {0, 0, 2, 1};
  for (Device d : devices()) {
    SegAreas a = seg_area_counts(Tensor::from_vector_i64(pred, {4}, d), Tensor::from_vector_i64(label, {4}, d), 3, 0);
    EXPECT_EQ(a.intersect.to_vector_i64(), (std::vector<int64_t>{0, 1, 1}));
    EXPECT_EQ(a.pred.to_vector_i64(), (std::vector<int64_t>{0, 1, 1}));
    EXPECT_EQ(a.label.to_vector_i64(), (std::vector<int64_t>{2, 1, 1}));
  }
}

TEST(Metrics, BadInputs) {
  for (Device d : devices()) {
    Tensor p = Tensor::from_vector_i64({0, 1, 2, 1}, {2, 2}, d);
    try {
      seg_area_counts(p, Tensor::from_vector_i64({0, 5, 255, 1}, {2, 2}, d), 3, 255);
      ADD_FAILURE() << "expected an error";
    } catch (const Error& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find("seg_area_counts"), std::string::npos) << m;
      EXPECT_NE(m.find("[0, 1]"), std::string::npos) << m;
      EXPECT_NE(m.find("label 5"), std::string::npos) << m;
    }
    EXPECT_THROW(seg_area_counts(Tensor::from_vector_i64({0, 3, 2, 1}, {2, 2}, d), p, 3, 255), Error);  // pred range
    EXPECT_THROW(seg_area_counts(p, Tensor::from_vector_i64({0, 1}, {2}, d), 3, 255), Error);           // shape
    EXPECT_THROW(seg_area_counts(p.to(DType::F32), p, 3, 255), Error);                                  // dtype
    EXPECT_THROW(seg_area_counts(p, p, 0, 255), Error);
  }
}
