// labels: models
// The whole YOLOv3 forward (DarkNet53 and MobileNetV1 backbones, 80 classes, eval mode: BN on its
// running statistics, input 320x320, batch 1) against PaddleDetection itself:
// tests/golden/yolov3_forward/yolov3_forward.json, written by tools/gen_yolov3_forward_golden.py
// (paddledet 2.6.0 on paddlepaddle 3.3.1, float32, CPU). No weight files: every state-dict tensor
// comes from an integer formula of its key, computed in float64 and rounded once to float32, so both
// sides hold bit-identical weights (the same formula as the script's docstring):
//   h = FNV-1a 32-bit hash of the key's UTF-8 bytes; element k (row-major, conv weights OIHW)
//   u = ((k * 7919 + h) % 4001 - 2000) / 2000.0                        (in [-1, 1])
//   4-D conv weight: u * sqrt(3 / fan_in), fan_in = shape[1] * shape[2] * shape[3]
//   "._mean": 0.1 u   "._variance": 1 + 0.5 u   other ".weight" (BN gamma): 1 + 0.2 u
//   other ".bias" (BN beta, head conv bias): 0.1 u
// Input NHWC [1, 320, 320, 3], element k: 2 * ((k * 7919 + 12345) % 4001 - 2000) / 2000.0.
// Checked per model: the sorted state-dict keys and shapes equal PaddleDetection's (a renamed,
// missing or extra tensor fails by name); per head: the shape, every subsampled element within
// 1e-4 * max |value| of Paddle's, max |value| and sum of squares within 1e-4 relative, the sum within
// 1e-4 * sum |value| (the sum itself is near zero). Also the sum of |weight| over all tensors equals
// the script's (the same weights were rebuilt). CPU device only. The build uses -ffp-contract=off, so
// (float)(add + mul * u) is rounded exactly as numpy's float64 expression is.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "models/det_model.h"
#include "tests/harness/golden.h"

using namespace engine;
using namespace engine::nn;

namespace {

constexpr double kTol = 1e-4;

uint32_t fnv1a32(const std::string& s) {
  uint32_t h = 2166136261u;
  for (unsigned char c : s) {
    h ^= c;
    h *= 16777619u;
  }
  return h;
}

double unit(int64_t k, int64_t h) { return (double)((k * 7919 + h) % 4001 - 2000) / 2000.0; }

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// The formula's values of the state-dict tensor `key` of `shape` (see the file comment).
std::vector<float> tensor_value(const std::string& key, const Shape& shape) {
  const int64_t n = shape_numel(shape), h = fnv1a32(key);
  std::vector<float> v((size_t)n);
  if (shape.size() == 4) {
    const double scale = std::sqrt(3.0 / (double)(shape[1] * shape[2] * shape[3]));
    for (int64_t k = 0; k < n; ++k) v[(size_t)k] = (float)(unit(k, h) * scale);
    return v;
  }
  double mul, add;
  if (ends_with(key, "._mean")) {
    mul = 0.1, add = 0.0;
  } else if (ends_with(key, "._variance")) {
    mul = 0.5, add = 1.0;
  } else if (ends_with(key, ".weight")) {
    mul = 0.2, add = 1.0;
  } else if (ends_with(key, ".bias")) {
    mul = 0.1, add = 0.0;
  } else {
    ADD_FAILURE() << "no formula for state-dict key " << key;
    return v;
  }
  for (int64_t k = 0; k < n; ++k) v[(size_t)k] = (float)(add + mul * unit(k, h));
  return v;
}

void check_model(const std::string& backbone, const nlohmann::json& j) {
  SCOPED_TRACE(backbone);
  const auto t0 = std::chrono::steady_clock::now();
  const nlohmann::json& g = j["models"][backbone];
  DetModelSpec spec;
  spec.backbone = backbone;
  spec.num_classes = j["num_classes"].get<int64_t>();
  auto model = build_det_model(spec);

  // Keys and shapes: the engine's sorted state dict against PaddleDetection's.
  std::map<std::string, Shape> want_keys, got_keys;
  for (const auto& e : g["keys"]) want_keys[e[0].get<std::string>()] = e[1].get<Shape>();
  StateDict entries;
  std::map<std::string, std::vector<float>> values;
  for (const auto& [name, t] : model->state_dict()) {
    got_keys[name] = t.shape();
    values[name] = tensor_value(name, t.shape());
    entries.emplace_back(name, Tensor::from_vector(values[name], t.shape()));
  }
  double abs_sum = 0;  // the same weights as the script's: sum of |value| over the sorted keys
  for (const auto& [name, v] : values)
    for (float x : v) abs_sum += std::fabs((double)x);
  const double want_abs_sum = g["weights_abs_sum"].get<double>();
  EXPECT_NEAR(abs_sum, want_abs_sum, 1e-9 * want_abs_sum) << "sum of |weight| differs from the script's";
  for (const auto& [k, s] : got_keys)
    if (!want_keys.count(k)) ADD_FAILURE() << "engine key " << k << " is not in PaddleDetection's state dict";
  for (const auto& [k, s] : want_keys) {
    auto it = got_keys.find(k);
    if (it == got_keys.end())
      ADD_FAILURE() << "PaddleDetection key " << k << " is missing in the engine";
    else
      EXPECT_EQ(it->second, s) << "shape of " << k;
  }
  ASSERT_EQ(got_keys.size(), want_keys.size());
  model->load_state_dict(entries, /*strict=*/true);
  model->eval();

  const int64_t in = j["input"].get<int64_t>(), image_hash = j["image_hash"].get<int64_t>();
  std::vector<float> image((size_t)(in * in * 3));
  for (int64_t k = 0; k < (int64_t)image.size(); ++k) image[(size_t)k] = (float)(2.0 * unit(k, image_hash));
  NoGradGuard ng;
  const std::vector<Tensor> outs = model->forward(Tensor::from_vector(image, {1, in, in, 3}, Device::cpu()));
  ASSERT_EQ(outs.size(), g["heads"].size());
  for (size_t s = 0; s < outs.size(); ++s) {
    SCOPED_TRACE("head " + std::to_string(s));
    const nlohmann::json& w = g["heads"][s];
    ASSERT_EQ(outs[s].shape(), w["shape"].get<Shape>());
    const std::vector<float> y = outs[s].to_vector();
    double max_abs = 0, sum = 0, sum_abs = 0, sum_sq = 0;
    for (float v : y) {
      max_abs = std::max(max_abs, (double)std::fabs(v));
      sum += v;
      sum_abs += std::fabs(v);
      sum_sq += (double)v * v;
    }
    const double want_max = w["max_abs"].get<double>(), want_sum = w["sum"].get<double>(),
                 want_sq = w["sum_sq"].get<double>();
    const int64_t stride = w["stride"].get<int64_t>();
    const std::vector<double> sample = w["sample"].get<std::vector<double>>();
    ASSERT_EQ(sample.size(), (y.size() + (size_t)stride - 1) / (size_t)stride);
    double worst = 0;
    int64_t bad = 0;
    for (size_t i = 0; i < sample.size(); ++i) {
      const double d = std::fabs(y[i * (size_t)stride] - sample[i]);
      worst = std::max(worst, d);
      if (d > kTol * want_max && bad++ < 5)
        ADD_FAILURE() << "element " << i * (size_t)stride << ": engine " << y[i * (size_t)stride]
                      << ", PaddleDetection " << sample[i] << " (max |value| " << want_max << ")";
    }
    EXPECT_EQ(bad, 0) << "subsampled elements off by more than " << kTol << " * max |value|";
    EXPECT_NEAR(max_abs, want_max, kTol * want_max);
    EXPECT_NEAR(sum, want_sum, kTol * sum_abs) << "sum";
    EXPECT_NEAR(sum_sq, want_sq, kTol * want_sq) << "sum of squares";
    std::printf(
        "[golden %s head %zu] max|y| %.4g: max |engine - PaddleDetection| / max|y| = %.3g over %zu samples; "
        "sum %.6g vs %.6g, sum_sq rel diff %.3g\n",
        backbone.c_str(), s, want_max, worst / want_max, sample.size(), sum, want_sum,
        std::fabs(sum_sq - want_sq) / want_sq);
  }
  std::printf("[golden %s] %.2f s\n", backbone.c_str(),
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
}

nlohmann::json load_golden() {
  const auto path = engine::testing::golden_dir() / "yolov3_forward" / "yolov3_forward.json";
  std::ifstream f(path);
  if (!f.good()) return nullptr;
  return nlohmann::json::parse(f);
}

constexpr const char* kRegen =
    "golden file tests/golden/yolov3_forward/yolov3_forward.json missing; regenerate with "
    "'.venv-paddle/bin/python tools/gen_yolov3_forward_golden.py > tests/golden/yolov3_forward/yolov3_forward.json' "
    "(setup in the script's docstring)";

}  // namespace

TEST(DetGolden, DarkNet53YOLOv3ForwardMatchesPaddleDetection) {
  const nlohmann::json j = load_golden();
  if (j.is_null()) GTEST_SKIP() << kRegen;
  check_model("DarkNet53", j);
}

TEST(DetGolden, MobileNetV1YOLOv3ForwardMatchesPaddleDetection) {
  const nlohmann::json j = load_golden();
  if (j.is_null()) GTEST_SKIP() << kRegen;
  check_model("MobileNetV1", j);
}
