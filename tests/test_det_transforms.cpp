// labels: sanitize
// Detection transforms (data/det_transforms.h). Two kinds of checks:
//   - tests/golden/det_transforms/det_transforms.json (tools/gen_det_transform_golden.py): cv2.resize
//     on float32 for the five interpolations (8 shapes each: grow, fractional and integer shrink,
//     mixed), and PaddleX 2.1.0's own operators.py on fixed inputs: Resize (boxes, scale_factor,
//     keep_ratio), Normalize, flip, Padding at fixed offsets (RandomExpand's core), RandomCrop with a
//     forced crop box, MixupImage with a forced factor, the four RandomDistort ops with a forced
//     delta, and the box normalisation to cxcywh. Images within 1e-3 (the file rounds to 4
//     decimals), boxes and scales within 1e-5.
//   - hand-computed expectations and properties: flip/expand/crop boxes, the draws of RandomExpand
//     replayed, RandomCrop's no-crop and no-box paths, MixupImage's partner, epochs, weights and
//     uint8 cast, RandomDistort's inverted probability, BatchRandomResize (one size per batch,
//     cumulative scale), the Beta and Gamma samplers' mean and variance, and every bad spec.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "base/error.h"
#include "data/det_transforms.h"
#include "tests/harness/golden.h"

using namespace engine;
using namespace engine::data;
using Box = std::array<float, 4>;

namespace {

TransformSpec spec(const std::string& type, std::map<std::string, std::vector<double>> args = {},
                   std::map<std::string, std::string> str_args = {},
                   const std::string& where = "train_dataset.transforms[0]") {
  TransformSpec s;
  s.type = type;
  s.args = std::move(args);
  s.str_args = std::move(str_args);
  s.where = where;
  return s;
}

const nlohmann::json& golden() {
  static const nlohmann::json j = [] {
    const auto path = engine::testing::golden_dir() / "det_transforms" / "det_transforms.json";
    std::ifstream f(path);
    if (!f)
      throw std::runtime_error("missing " + path.string() +
                               " (regenerate with the command at the top of tools/gen_det_transform_golden.py)");
    return nlohmann::json::parse(f);
  }();
  return j;
}

Image golden_image(const std::string& key) {
  const auto& g = golden()["images"][key];
  Image im;
  im.h = g["h"];
  im.w = g["w"];
  im.c = g["c"];
  for (int v : g["data"]) im.data.push_back((float)v);
  return im;
}

std::vector<float> floats(const nlohmann::json& j) {
  std::vector<float> v;
  for (double x : j) v.push_back((float)x);
  return v;
}

std::vector<Box> boxes_of(const nlohmann::json& j) {
  const std::vector<float> v = floats(j);
  std::vector<Box> b(v.size() / 4);
  for (size_t i = 0; i < b.size(); ++i) b[i] = {v[4 * i], v[4 * i + 1], v[4 * i + 2], v[4 * i + 3]};
  return b;
}

// The golden's sample: image a (7x9) or b (8x12) with its three boxes.
DetSample golden_sample(const std::string& key = "a") {
  DetSample s;
  s.image = golden_image(key);
  s.boxes = boxes_of(golden()["px"]["boxes"]);
  for (int c : golden()["px"]["classes"]) s.classes.push_back(c);
  s.scores.assign(s.boxes.size(), 1.f);
  s.difficult.assign(s.boxes.size(), 0);
  s.orig_h = s.image.h;
  s.orig_w = s.image.w;
  s.origin = "golden:" + key;
  return s;
}

void expect_image(const Image& im, int h, int w, const nlohmann::json& want, const std::string& what,
                  double tol = 1e-3) {
  ASSERT_EQ(im.h, h) << what;
  ASSERT_EQ(im.w, w) << what;
  const std::vector<float> v = floats(want);
  ASSERT_EQ(im.data.size(), v.size()) << what;
  double worst = 0;
  size_t at = 0;
  for (size_t i = 0; i < v.size(); ++i) {
    const double d = std::fabs((double)im.data[i] - v[i]);
    if (!(d <= worst)) worst = d, at = i;
  }
  EXPECT_LE(worst, tol) << what << ": element " << at << " is " << im.data[at] << ", want " << v[at];
}

void expect_boxes(const std::vector<Box>& got, const nlohmann::json& want, const std::string& what) {
  const std::vector<Box> w = boxes_of(want);
  ASSERT_EQ(got.size(), w.size()) << what;
  for (size_t i = 0; i < w.size(); ++i)
    for (int k = 0; k < 4; ++k) EXPECT_NEAR(got[i][k], w[i][k], 1e-5) << what << " box " << i << "[" << k << "]";
}

DetSample apply_one(const TransformSpec& s, DetSample sample, uint64_t seed = 1, const DetContext& ctx = {}) {
  DetPipeline p = build_det_pipeline({s});
  Rng rng(seed);
  p.apply(sample, rng, ctx);
  return sample;
}

// The one-line error message of building `s`.
std::string build_error(const TransformSpec& s) {
  try {
    build_det_pipeline({s});
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

// ------------------------------------------------------------------------------------------ resampling
TEST(DetResize, MatchesOpenCvForEveryInterpolation) {
  const std::map<std::string, Interp> names = {{"NEAREST", Interp::Nearest},
                                               {"LINEAR", Interp::Linear},
                                               {"CUBIC", Interp::Cubic},
                                               {"AREA", Interp::Area},
                                               {"LANCZOS4", Interp::Lanczos4}};
  std::set<std::string> seen;
  for (const auto& c : golden()["resize"]) {
    const std::string interp = c["interp"], key = c["image"];
    const int h = c["h"], w = c["w"];
    const Image src = golden_image(key);
    const Image out = cv_resize(src, h, w, names.at(interp));
    expect_image(out, h, w, c["out"],
                 interp + " " + std::to_string(src.h) + "x" + std::to_string(src.w) + " -> " + std::to_string(h) + "x" +
                     std::to_string(w));
    seen.insert(interp);
  }
  EXPECT_EQ(seen.size(), 5u);
}

TEST(DetResize, SameSizeIsACopyAndBadSizesFail) {
  const Image a = golden_image("a");
  for (int i = 0; i <= 4; ++i) EXPECT_EQ(cv_resize(a, a.h, a.w, (Interp)i).data, a.data);
  EXPECT_THROW(cv_resize(a, 0, 3, Interp::Cubic), Error);
}

// ------------------------------------------------------------------------------------------ PaddleX goldens
TEST(DetTransformsPaddleX, Resize) {
  for (const auto& c : golden()["px"]["resize"]) {
    const std::vector<double> target = {c["target"][0], c["target"][1]};
    const std::string interp = c["interp"];
    const DetSample s = apply_one(
        spec("Resize", {{"target_size", target}, {"keep_ratio", {(double)c["keep_ratio"]}}}, {{"interp", interp}}),
        golden_sample());
    const std::string what = "Resize " + interp;
    expect_image(s.image, c["out_h"], c["out_w"], c["out"], what);
    expect_boxes(s.boxes, c["out_boxes"], what);
    const std::vector<float> sf = floats(c["scale_factor"]);
    EXPECT_FLOAT_EQ(s.scale_y, sf[0]) << what;
    EXPECT_FLOAT_EQ(s.scale_x, sf[1]) << what;
  }
}

TEST(DetTransformsPaddleX, Normalize) {
  const auto& g = golden()["px"]["normalize"];
  std::vector<double> mean, sd;
  for (double v : g["mean"]) mean.push_back(v);
  for (double v : g["std"]) sd.push_back(v);
  const DetSample s = apply_one(spec("Normalize", {{"mean", mean}, {"std", sd}}), golden_sample());
  expect_image(s.image, 7, 9, g["out"], "Normalize", 1e-4);
  // By hand: pixel 0 channel 0.
  const float x = golden_image("a").data[0];
  EXPECT_NEAR(s.image.data[0], (x / 255.0 - 0.485) / 0.229, 1e-5);
}

TEST(DetTransformsPaddleX, HorizontalFlip) {
  const auto& g = golden()["px"]["flip"];
  const DetSample s = apply_one(spec("RandomHorizontalFlip", {{"prob", {1}}}), golden_sample());
  expect_image(s.image, 7, 9, g["out"], "flip");
  expect_boxes(s.boxes, g["out_boxes"], "flip");
  // x' = W - x (W = 9): box 0 (0.5, 1, 6, 5.5) -> (3, 1, 8.5, 5.5).
  EXPECT_EQ(s.boxes[0], (Box{3.f, 1.f, 8.5f, 5.5f}));
  const DetSample kept = apply_one(spec("RandomHorizontalFlip", {{"prob", {0}}}), golden_sample());
  EXPECT_EQ(kept.boxes, golden_sample().boxes);
}

TEST(DetTransformsPaddleX, ExpandCore) {
  const auto& g = golden()["px"]["expand"];
  DetSample s = golden_sample();
  det_expand(s, g["h"], g["w"], g["x"], g["y"], floats(g["fill"]));
  expect_image(s.image, g["h"], g["w"], g["out"], "expand");
  expect_boxes(s.boxes, g["out_boxes"], "expand");
  EXPECT_EQ(s.boxes[0], (Box{5.5f, 4.f, 11.f, 8.5f}));  // + (x, y) = (5, 3)
}

TEST(DetTransformsPaddleX, CropWithForcedBox) {
  for (const auto& c : golden()["px"]["crop"]) {
    const std::array<int, 4> crop = {c["crop"][0], c["crop"][1], c["crop"][2], c["crop"][3]};
    DetSample s = golden_sample();
    ASSERT_TRUE(det_crop(s, crop));
    expect_image(s.image, c["out_h"], c["out_w"], c["out"], "crop");
    expect_boxes(s.boxes, c["out_boxes"], "crop");
    std::vector<int32_t> want;
    for (int v : c["out_classes"]) want.push_back(v);
    EXPECT_EQ(s.classes, want);
    EXPECT_EQ(s.scores.size(), want.size());
    EXPECT_EQ(s.difficult.size(), want.size());  // filtered with the boxes (PaddleX leaves it)
  }
  // A crop that keeps no box leaves the sample unchanged.
  DetSample s = golden_sample();
  EXPECT_FALSE(det_crop(s, {0, 5, 2, 7}));
  EXPECT_EQ(s.boxes.size(), 3u);
  EXPECT_EQ(s.image.h, 7);
}

TEST(DetTransformsPaddleX, MixupWithForcedFactor) {
  const auto& g = golden()["px"]["mixup"];
  DetSample a = golden_sample("a"), b = golden_sample("b");
  b.boxes.resize(2);
  b.classes.resize(2);
  b.scores.resize(2);
  b.difficult.assign(2, 1);
  for (auto& box : b.boxes)
    for (float& v : box) v += 1.f;
  for (auto& c : b.classes) c += 10;
  det_mixup(a, b, (double)g["factor"]);
  expect_image(a.image, g["out_h"], g["out_w"], g["out"], "mixup", 0);  // exact: uint8 values
  expect_boxes(a.boxes, g["out_boxes"], "mixup");
  std::vector<int32_t> want;
  for (int v : g["out_classes"]) want.push_back(v);
  EXPECT_EQ(a.classes, want);
  const std::vector<float> scores = floats(g["out_scores"]);
  EXPECT_EQ(a.scores, scores);
  EXPECT_EQ(a.difficult, (std::vector<uint8_t>{0, 0, 0, 1, 1}));
  EXPECT_EQ(a.orig_h, 8);  // the canvas (PaddleX re-decodes the mixed array)
  EXPECT_EQ(a.orig_w, 12);
  // By hand: pixel (0, 0, 0) = trunc(a*f + b*(1-f)); pixel (7, 11) lies only in b.
  const float f = 0.3125f;
  EXPECT_EQ(a.image.at(0, 0, 0),
            std::floor(golden_image("a").at(0, 0, 0) * f + golden_image("b").at(0, 0, 0) * (1 - f)));
  EXPECT_EQ(a.image.at(7, 11, 2), std::floor(golden_image("b").at(7, 11, 2) * (1 - f)));
}

TEST(DetTransformsPaddleX, DistortOps) {
  for (const auto& c : golden()["px"]["distort"]) {
    Image im = golden_image("a");
    const std::string op = c["op"];
    const double delta = c["delta"];
    if (op == "brightness") px_distort::brightness(im, delta);
    if (op == "contrast") px_distort::contrast(im, delta);
    if (op == "saturation") px_distort::saturation(im, delta);
    if (op == "hue") px_distort::hue(im, delta);
    expect_image(im, 7, 9, c["out"], "distort " + op);
  }
  // By hand: brightness adds (PaddleX's quirk), contrast multiplies, saturation keeps gray pixels.
  Image im = golden_image("a");
  const float x0 = im.data[0];
  px_distort::brightness(im, 1.25);
  EXPECT_EQ(im.data[0], x0 + 1.25f);
  Image gray;
  gray.h = gray.w = 1;
  gray.c = 3;
  gray.data = {100, 100, 100};
  px_distort::saturation(gray, 0.3);
  for (float v : gray.data) EXPECT_NEAR(v, 100.f, 1e-4);
  // A gray pixel has almost no chroma to rotate: PaddleX's rounded YIQ rows (I and Q sum to +-0.001)
  // leave a little, so gray moves by a fraction of a level.
  px_distort::hue(gray, 0.77);
  for (float v : gray.data) EXPECT_NEAR(v, 100.f, 0.3);
}

TEST(DetTransformsPaddleX, NormalizedCxCyWh) {
  const auto& g = golden()["px"]["cxcywh"];
  expect_boxes(boxes_to_normalized_cxcywh(golden_sample().boxes, g["w"], g["h"]), g["out"], "cxcywh");
}

// ------------------------------------------------------------------------------------------ random transforms
TEST(DetTransforms, RandomExpandReplaysItsDraws) {
  const TransformSpec s = spec("RandomExpand", {{"prob", {1}}, {"upper_ratio", {3}}, {"im_padding_value", {1, 2, 3}}});
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    Rng r(seed);
    r.uniform();  // the prob draw
    const double ratio = r.uniform(1.0, 3.0);
    const int h = (int)(7 * ratio), w = (int)(9 * ratio);
    const DetSample out = apply_one(s, golden_sample(), seed);
    if (!(h > 7 && w > 9)) {
      EXPECT_EQ(out.image.h, 7);
      continue;
    }
    const int y = (int)r.randint(0, h - 7 - 1), x = (int)r.randint(0, w - 9 - 1);
    ASSERT_EQ(out.image.h, h);
    ASSERT_EQ(out.image.w, w);
    EXPECT_EQ(out.boxes[0], (Box{0.5f + x, 1.f + y, 6.f + x, 5.5f + y}));
    EXPECT_EQ(out.image.at(y, x, 1), golden_image("a").at(0, 0, 1));
    EXPECT_EQ(out.image.at(y + 6, x + 8, 2), golden_image("a").at(6, 8, 2));
    if (y > 0) {
      EXPECT_EQ(out.image.at(0, 0, 2), 3.f);
    }
    EXPECT_EQ(out.image.at(h - 1, w - 1, 0), 1.f);
  }
  // prob 0: never.
  EXPECT_EQ(apply_one(spec("RandomExpand", {{"prob", {0}}}), golden_sample()).image.h, 7);
}

TEST(DetTransforms, RandomCropKeepsCentredBoxes) {
  // A large image with two boxes; every crop keeps only boxes whose centre it contains, clipped.
  DetSample base;
  base.image.h = 60;
  base.image.w = 80;
  base.image.c = 3;
  base.image.data.assign(60 * 80 * 3, 0.f);
  for (size_t i = 0; i < base.image.data.size(); ++i) base.image.data[i] = (float)(i % 251);
  base.boxes = {{5, 5, 30, 25}, {40, 30, 75, 58}};
  base.classes = {0, 1};
  int cropped = 0;
  for (uint64_t seed = 1; seed <= 60; ++seed) {
    const DetSample s = apply_one(spec("RandomCrop"), base, seed);
    ASSERT_FALSE(s.boxes.empty());  // a crop is taken only when it keeps a box
    ASSERT_EQ(s.boxes.size(), s.classes.size());
    if (s.image.h == 60 && s.image.w == 80) continue;  // no_crop
    ++cropped;
    for (const Box& b : s.boxes) {
      EXPECT_GE(b[0], 0.f);
      EXPECT_GE(b[1], 0.f);
      EXPECT_LE(b[2], (float)s.image.w);
      EXPECT_LE(b[3], (float)s.image.h);
      EXPECT_LT(b[0], b[2]);
      EXPECT_LT(b[1], b[3]);
    }
    // Each kept box is its original shifted and clipped: never larger.
    for (size_t i = 0; i < s.boxes.size(); ++i) {
      const Box& o = base.boxes[(size_t)s.classes[i]];
      EXPECT_LE(s.boxes[i][2] - s.boxes[i][0], o[2] - o[0] + 1e-4f);
      EXPECT_LE(s.boxes[i][3] - s.boxes[i][1], o[3] - o[1] + 1e-4f);
    }
  }
  EXPECT_GT(cropped, 10);
  // Only the no_crop candidate: unchanged. No boxes: PaddleX always crops (first crop box).
  const DetSample same = apply_one(spec("RandomCrop", {{"thresholds", {}}}), base, 3);
  EXPECT_EQ(same.image.h, 60);
  EXPECT_EQ(same.boxes, base.boxes);
  DetSample empty = base;
  empty.boxes.clear();
  empty.classes.clear();
  const DetSample c = apply_one(spec("RandomCrop"), empty, 3);
  EXPECT_LT((int64_t)c.image.h * c.image.w, 60 * 80);
  // crop_size resizes the result.
  const DetSample r = apply_one(spec("RandomCrop", {{"crop_size", {16, 24}}}), base, 5);
  EXPECT_EQ(r.image.h, 16);
  EXPECT_EQ(r.image.w, 24);
}

TEST(DetTransforms, MixupPartnerEpochsAndWeights) {
  const int64_t n = 5;
  std::vector<int64_t> loaded;
  DetContext ctx;
  ctx.dataset_size = n;
  ctx.load_raw = [&](int64_t i) {
    loaded.push_back(i);
    DetSample s = golden_sample(i % 2 ? "b" : "a");
    s.index = i;
    return s;
  };
  const TransformSpec mix = spec("MixupImage", {{"mixup_epoch", {3}}});
  for (uint64_t seed = 1; seed <= 30; ++seed) {
    DetSample s = golden_sample("a");
    s.index = 2;
    loaded.clear();
    ctx.epoch = 2;
    s = apply_one(mix, s, seed, ctx);
    ASSERT_EQ(loaded.size(), 1u);
    EXPECT_NE(loaded[0], 2);  // a random other index
    ASSERT_EQ(s.boxes.size(), 6u);
    const float f = s.scores[0];
    EXPECT_GT(f, 0.f);
    EXPECT_LT(f, 1.f);
    EXPECT_FLOAT_EQ(s.scores[3], 1.f - f);
    for (float v : s.image.data) EXPECT_EQ(v, std::floor(v));  // cast to uint8
  }
  // Epoch 3 >= mixup_epoch 3: no mixup, no partner read.
  loaded.clear();
  ctx.epoch = 3;
  DetSample s = golden_sample("a");
  s.index = 0;
  EXPECT_EQ(apply_one(mix, s, 1, ctx).boxes.size(), 3u);
  EXPECT_TRUE(loaded.empty());
  // mixup_epoch -1: always. A one-sample data set mixes the sample with itself (PaddleX's mix_pos 0).
  ctx.epoch = 1000;
  ctx.dataset_size = 1;
  EXPECT_EQ(apply_one(spec("MixupImage"), s, 1, ctx).boxes.size(), 6u);
  EXPECT_EQ(loaded.back(), 0);
  // Without load_raw: a clear error.
  EXPECT_THROW(apply_one(spec("MixupImage"), s, 1, DetContext{}), Error);
  // MixupImage runs first wherever it is listed (PaddleX: in Dataset.__getitem__).
  DetPipeline p = build_det_pipeline({spec("Normalize"), spec("MixupImage")});
  EXPECT_TRUE(p.has_mixup());
  EXPECT_EQ(p.size(), 1u);
  ctx.dataset_size = 5;
  DetSample t = golden_sample("a");
  t.index = 1;
  Rng rng(9);
  p.apply(t, rng, ctx);
  EXPECT_EQ(t.boxes.size(), 6u);
  for (float v : t.image.data) EXPECT_LT(std::fabs(v), 3.f);  // normalized after mixing
}

TEST(DetTransforms, MixupEdgeFactorsAsPaddleX) {
  // Beta(1000, 0.001) is exactly 1 when the second gamma underflows: the sample stays unchanged.
  // Beta(0.001, 1000) is exactly 0 when the first does: the partner comes back whole.
  DetContext ctx;
  ctx.dataset_size = 4;
  ctx.load_raw = [](int64_t i) {
    DetSample s = golden_sample("b");
    s.boxes.resize(1);
    s.classes.resize(1);
    s.scores.resize(1);
    s.difficult.resize(1);
    s.index = i;
    return s;
  };
  int unchanged = 0, partner = 0;
  for (uint64_t seed = 1; seed <= 40; ++seed) {
    DetSample s = golden_sample("a");
    s.index = 0;
    const DetSample one = apply_one(spec("MixupImage", {{"alpha", {1000}}, {"beta", {0.001}}}), s, seed, ctx);
    if (one.boxes.size() == 3) {
      ++unchanged;
      EXPECT_EQ(one.image.data, s.image.data);
      EXPECT_EQ(one.scores, std::vector<float>(3, 1.f));
    }
    const DetSample zero = apply_one(spec("MixupImage", {{"alpha", {0.001}}, {"beta", {1000}}}), s, seed, ctx);
    if (zero.boxes.size() == 1) {
      ++partner;
      EXPECT_NE(zero.index, 0);
      EXPECT_EQ(zero.image.h, 8);
      EXPECT_EQ(zero.scores, std::vector<float>(1, 1.f));
    }
  }
  EXPECT_GT(unchanged, 5);
  EXPECT_GT(partner, 5);
}

TEST(DetTransforms, RandomDistortProbabilityIsInverted) {
  // PaddleX skips an op when uniform() < prob: prob 1 never distorts, prob 0 always does.
  const DetSample never =
      apply_one(spec("RandomDistort",
                     {{"brightness_prob", {1}}, {"contrast_prob", {1}}, {"saturation_prob", {1}}, {"hue_prob", {1}}}),
                golden_sample());
  EXPECT_EQ(never.image.data, golden_sample().image.data);
  const DetSample bright =
      apply_one(spec("RandomDistort",
                     {{"brightness_prob", {0}}, {"contrast_prob", {1}}, {"saturation_prob", {1}}, {"hue_prob", {1}}}),
                golden_sample());
  const float d = bright.image.data[0] - golden_sample().image.data[0];  // brightness adds U(0.5, 1.5)
  EXPECT_GE(d, 0.5f);
  EXPECT_LE(d, 1.5f);
  for (size_t i = 0; i < bright.image.data.size(); ++i)
    EXPECT_FLOAT_EQ(bright.image.data[i], golden_sample().image.data[i] + d);
  const DetSample none = apply_one(spec("RandomDistort", {{"count", {0}}, {"brightness_prob", {0}}}), golden_sample());
  EXPECT_EQ(none.image.data, golden_sample().image.data);
  // The fixed (SSD) order with channel shuffling runs and keeps the shape.
  const DetSample ssd =
      apply_one(spec("RandomDistort", {{"random_apply", {0}}, {"shuffle_channel", {1}}}), golden_sample(), 4);
  EXPECT_EQ(ssd.image.data.size(), golden_sample().image.data.size());
}

TEST(DetTransforms, BatchRandomResizeOneSizePerBatchCumulativeScale) {
  DetPipeline p =
      build_det_pipeline({spec("Resize", {{"target_size", {14, 18}}}),
                          spec("BatchRandomResize", {{"target_sizes", {7, 21, 35}}}, {{"interp", "RANDOM"}})});
  ASSERT_EQ(p.size(), 1u);
  ASSERT_EQ(p.batch_size(), 1u);
  std::set<int> sizes;
  for (uint64_t seed = 1; seed <= 12; ++seed) {
    std::vector<DetSample> batch;
    Rng rng(seed);
    for (int i = 0; i < 3; ++i) {
      DetSample s = golden_sample(i == 1 ? "b" : "a");
      p.apply(s, rng, {});
      batch.push_back(std::move(s));
    }
    Rng brng(mix_seed(7, seed));
    p.apply_batch(batch, brng);
    const int sz = batch[0].image.h;
    sizes.insert(sz);
    for (const DetSample& s : batch) {
      ASSERT_EQ(s.image.h, sz);
      ASSERT_EQ(s.image.w, sz);
    }
    // Sample a: 7x9 -> 14x18 -> sz x sz; scale relative to the original.
    EXPECT_NEAR(batch[0].scale_y, sz / 7.0, 1e-5);
    EXPECT_NEAR(batch[0].scale_x, sz / 9.0, 1e-5);
    EXPECT_NEAR(batch[1].scale_x, sz / 12.0, 1e-5);
    // Box 0 of a: x1 0.5 -> 0.5 * sz / 9 (within float rounding of the two steps).
    EXPECT_NEAR(batch[0].boxes[0][0], 0.5 * sz / 9.0, 1e-4);
    EXPECT_NEAR(batch[0].boxes[0][3], 5.5 * sz / 7.0, 1e-4);
  }
  EXPECT_EQ(sizes, (std::set<int>{7, 21, 35}));
  // The two-list builder: a BatchRandomResize in `transforms` is a batch transform too.
  DetPipeline two =
      build_det_pipeline({spec("BatchRandomResize", {{"target_sizes", {32}}})},
                         {spec("BatchRandomResize", {{"target_sizes", {64}}}, {}, "batch_transforms[0]")});
  EXPECT_EQ(two.batch_size(), 2u);
  try {
    build_det_pipeline({}, {spec("Normalize", {}, {}, "batch_transforms[0]")});
    ADD_FAILURE() << "a per-sample transform in batch_transforms was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("batch_transforms[0]: 'Normalize' is a per-sample transform"),
              std::string::npos)
        << e.what();
  }
}

TEST(DetTransforms, ResizeKeepRatioAndRandomInterp) {
  const DetSample s = apply_one(spec("Resize", {{"target_size", {20}}, {"keep_ratio", {1}}}), golden_sample());
  EXPECT_EQ(s.image.h, 16);  // min(20/7, 20/9) = 2.222: round(7 * 2.222) = 16, round(9 * 2.222) = 20
  EXPECT_EQ(s.image.w, 20);
  // RANDOM draws one of the five per call; the numeric code -1 means the same.
  const DetSample r1 = apply_one(spec("Resize", {{"target_size", {5, 6}}}, {{"interp", "RANDOM"}}), golden_sample(), 3);
  const DetSample r2 = apply_one(spec("Resize", {{"target_size", {5, 6}}, {"interp", {-1}}}), golden_sample(), 3);
  EXPECT_EQ(r1.image.data, r2.image.data);
  const DetSample c = apply_one(spec("Resize", {{"target_size", {5, 6}}, {"interp", {2}}}), golden_sample());
  EXPECT_EQ(c.image.data, cv_resize(golden_image("a"), 5, 6, Interp::Cubic).data);
}

TEST(DetTransforms, PipelineFillsDefaultsAndChecksLengths) {
  DetSample s = golden_sample();
  s.scores.clear();
  s.difficult.clear();
  DetPipeline p = build_det_pipeline({spec("RandomHorizontalFlip", {{"prob", {0}}})});
  Rng rng(1);
  p.apply(s, rng, {});
  EXPECT_EQ(s.scores, std::vector<float>(3, 1.f));
  EXPECT_EQ(s.difficult, std::vector<uint8_t>(3, 0));
  s.classes.pop_back();
  try {
    p.apply(s, rng, {});
    ADD_FAILURE() << "mismatched per-box lists were accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("golden:a: 3 boxes but 2 classes"), std::string::npos) << e.what();
  }
}

// ------------------------------------------------------------------------------------------ samplers
TEST(DetSamplers, BetaAndGammaMoments) {
  struct Case {
    double a, b;
  };
  for (const Case c : {Case{1.5, 1.5}, Case{0.5, 2.0}, Case{3.0, 0.7}, Case{8.0, 8.0}}) {
    Rng rng(mix_seed(11, (uint64_t)(c.a * 10), (uint64_t)(c.b * 10)));
    const int n = 200000;
    double sum = 0, sum2 = 0;
    for (int i = 0; i < n; ++i) {
      const double x = sample_beta(rng, c.a, c.b);
      ASSERT_GE(x, 0.0);
      ASSERT_LE(x, 1.0);
      sum += x;
      sum2 += x * x;
    }
    const double mean = sum / n, var = sum2 / n - mean * mean;
    const double want_mean = c.a / (c.a + c.b);
    const double want_var = c.a * c.b / ((c.a + c.b) * (c.a + c.b) * (c.a + c.b + 1));
    // 200k draws: the standard error of the mean is sqrt(var / n) < 0.0012; allow 5 of them.
    EXPECT_NEAR(mean, want_mean, 5 * std::sqrt(want_var / n)) << "Beta(" << c.a << ", " << c.b << ")";
    EXPECT_NEAR(var, want_var, 0.03 * want_var + 1e-4) << "Beta(" << c.a << ", " << c.b << ")";
  }
  for (const double shape : {0.3, 1.0, 2.5, 9.0}) {
    Rng rng(mix_seed(5, (uint64_t)(shape * 10)));
    const int n = 200000;
    double sum = 0, sum2 = 0;
    for (int i = 0; i < n; ++i) {
      const double x = sample_gamma(rng, shape);
      sum += x;
      sum2 += x * x;
    }
    const double mean = sum / n, var = sum2 / n - mean * mean;
    EXPECT_NEAR(mean, shape, 5 * std::sqrt(shape / n)) << "Gamma(" << shape << ")";
    EXPECT_NEAR(var, shape, 0.05 * shape) << "Gamma(" << shape << ")";
  }
  Rng rng(3);
  const int n = 200000;
  double sum = 0, sum2 = 0;
  for (int i = 0; i < n; ++i) {
    const double x = sample_normal(rng);
    sum += x;
    sum2 += x * x;
  }
  EXPECT_NEAR(sum / n, 0.0, 0.012);
  EXPECT_NEAR(sum2 / n, 1.0, 0.02);
}

// ------------------------------------------------------------------------------------------ bad specs
TEST(DetTransformSpecs, EveryBadSpecIsOneLineNamingTheArgument) {
  struct Bad {
    TransformSpec spec;
    std::string expect;
  };
  const std::string w = "train_dataset.transforms[0]";
  const std::vector<Bad> bad = {
      {spec("RandomHorizonalFlip"),
       w + ": unknown detection transform type 'RandomHorizonalFlip' (did you mean 'RandomHorizontalFlip'?)"},
      {spec("RandomFlip"), w + ": unknown detection transform type 'RandomFlip'"},
      {spec("normalize"), "(did you mean 'Normalize'?)"},
      {spec("RandomPaddingCrop"), "unknown detection transform type 'RandomPaddingCrop'"},
      {spec("Normalize", {{"means", {0.5}}}), w + ".means: unknown argument of Normalize (did you mean 'mean'?)"},
      {spec("Normalize", {{"std", {0.2, 0}}}), w + ".std: expects 1 or 3 values, got 2"},
      {spec("Normalize", {{"std", {0.2, 0, 0.2}}}), w + ".std: must not contain 0"},
      {spec("Normalize", {{"min_val", {5}}, {"max_val", {5}}}), w + ".max_val: max_val - min_val must not be 0"},
      {spec("Normalize", {{"is_scale", {2}}}), w + ".is_scale: expects a boolean (0 or 1), got 2"},
      {spec("RandomHorizontalFlip", {{"prob", {1.5}}}), w + ".prob: a probability must be in [0, 1], got 1.5"},
      {spec("RandomHorizontalFlip", {{"prob", {0.5, 0.5}}}), w + ".prob: expects one number, got 2 values"},
      {spec("RandomHorizontalFlip", {{"prob", {NAN}}}), w + ".prob: expects finite numbers"},
      {spec("RandomExpand", {{"upper_ratio", {0.9}}}), w + ".upper_ratio: must be > 1.01"},
      {spec("RandomExpand", {{"prob", {-0.1}}}), w + ".prob: a probability must be in [0, 1]"},
      {spec("RandomExpand", {{"im_padding_value", {1, 2}}}), w + ".im_padding_value: expects 1 or 3 values, got 2"},
      {spec("RandomExpand", {{"label_padding_value", {300}}}),
       w + ".label_padding_value: expects an integer in [0, 255]"},
      {spec("RandomCrop", {{"aspect_ratio", {2, 0.5}}}), w + ".aspect_ratio: expects [min, max] with min <= max"},
      {spec("RandomCrop", {{"aspect_ratio", {0.5}}}), w + ".aspect_ratio: expects [min, max] (2 numbers), got 1"},
      {spec("RandomCrop", {{"thresholds", {0.1, 1.5}}}), w + ".thresholds: IoU thresholds must be in [0, 1]"},
      {spec("RandomCrop", {{"scaling", {0.3, 1.5}}}), w + ".scaling: expects [min, max] within (0, 1]"},
      {spec("RandomCrop", {{"num_attempts", {0}}}), w + ".num_attempts: expects an integer in [1, 1000000], got 0"},
      {spec("RandomCrop", {{"thresholds", {}}, {"allow_no_crop", {0}}}),
       w + ".thresholds: empty and allow_no_crop is 0"},
      {spec("RandomCrop", {{"crop_size", {0}}}), w + ".crop_size: expects positive integers"},
      {spec("RandomDistort", {{"hue_range", {-1}}}), w + ".hue_range: must be >= 0, got -1"},
      {spec("RandomDistort", {{"count", {1.5}}}), w + ".count: expects an integer"},
      {spec("RandomDistort", {{"sharpness_prob", {0.5}}}), w + ".sharpness_prob: unknown argument of RandomDistort"},
      {spec("MixupImage", {{"alpha", {0}}}), w + ".alpha: must be > 0, got 0"},
      {spec("MixupImage", {{"beta", {-1}}}), w + ".beta: must be > 0, got -1"},
      {spec("MixupImage", {{"mixup_epoch", {-2}}}), w + ".mixup_epoch: expects an integer in [-1, "},
      {spec("Resize"), w + ".target_size: required (an int or [height, width])"},
      {spec("Resize", {{"target_size", {608, 608, 3}}}), w + ".target_size: expects an int or [height, width], got 3"},
      {spec("Resize", {{"target_size", {608}}}, {{"interp", "BICUBIC"}}),
       w + ".interp: expects one of NEAREST, LINEAR, CUBIC, AREA, LANCZOS4, RANDOM, got 'BICUBIC'"},
      {spec("Resize", {{"target_size", {608}}, {"interp", {7}}}), w + ".interp: expects a cv2 interpolation code 0..4"},
      {spec("Resize", {{"target_size", {608}}, {"interp", {2}}}, {{"interp", "CUBIC"}}),
       w + ".interp: given both as a number and as a string"},
      {spec("Resize", {}, {{"target_size", "608"}}), w + ".target_size: expects numbers, got the string '608'"},
      {spec("Normalize", {}, {{"mode", "x"}}), w + ".mode: unknown argument of Normalize"},
      {spec("BatchRandomResize"), w + ".target_sizes: expects a non-empty list of sizes"},
      {spec("BatchRandomResize", {{"target_sizes", {}}}), w + ".target_sizes: expects a non-empty list of sizes"},
      {spec("BatchRandomResize", {{"target_sizes", {320, 0}}}), w + ".target_sizes: expects positive integers"},
      {spec("BatchRandomResize", {{"target_sizes", {320}}}, {{"interp", "bilinear"}}), w + ".interp: expects one of"},
  };
  for (const Bad& b : bad) {
    const std::string msg = build_error(b.spec);
    EXPECT_NE(msg.find(b.expect), std::string::npos) << "spec " << b.spec.type << ": got '" << msg << "'";
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
  // A second MixupImage names both entries.
  try {
    build_det_pipeline({spec("MixupImage", {}, {}, "t[0]"), spec("MixupImage", {}, {}, "t[3]")});
    ADD_FAILURE() << "two MixupImage were accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("t[3]: a second MixupImage (the first is t[0])"), std::string::npos)
        << e.what();
  }
  // The default YOLOv3 chain (PaddleX 2.x paddlex/cv/models/detector.py) builds.
  std::vector<double> sizes;
  for (int s = 320; s <= 608; s += 32) sizes.push_back(s);
  const DetPipeline p = build_det_pipeline(
      {spec("MixupImage", {{"mixup_epoch", {250}}}), spec("RandomDistort"),
       spec("RandomExpand", {{"im_padding_value", {123.675, 116.28, 103.53}}}), spec("RandomCrop"),
       spec("RandomHorizontalFlip"), spec("BatchRandomResize", {{"target_sizes", sizes}}, {{"interp", "RANDOM"}}),
       spec("Normalize", {{"mean", {0.485, 0.456, 0.406}}, {"std", {0.229, 0.224, 0.225}}})});
  EXPECT_TRUE(p.has_mixup());
  EXPECT_EQ(p.size(), 5u);
  EXPECT_EQ(p.batch_size(), 1u);
}
