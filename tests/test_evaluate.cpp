// Inference of a segmentation model (train/evaluate.h): the sliding-window passes of PaddleSeg's
// slide_inference (window placement, the last windows moved back inside the image, the mean over
// overlapping windows, the error for a stride that leaves pixels out) and the test-time augmentation
// (flips undone, scales, the mean over passes), each against a reference written here on the host
// over a small model whose zero-padded 3x3 convolution makes every window's border visible.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "base/error.h"
#include "engine/autograd.h"
#include "engine/device.h"
#include "engine/ops/conv.h"
#include "engine/ops/resize.h"
#include "train/evaluate.h"

namespace {

using namespace engine;
using engine::train::InferOptions;

constexpr int kClasses = 2;

// Deterministic values in [-1, 1).
std::vector<float> pattern(size_t n, int seed) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = (float)(((i * 7919 + (size_t)seed * 104729) % 2003) / 1001.5 - 1.0);
  return v;
}

// One 3x3 convolution (3 -> kClasses channels, zero padding 1): logits [1, H, W, kClasses].
class ConvSegModel : public nn::SegModel {
 public:
  ConvSegModel() : SegModel("ConvSegModel"), weights(pattern(kClasses * 3 * 9, 1)), bias{0.25f, -0.5f} {}
  std::vector<Tensor> forward(const Tensor& images) override {
    forwards += 1;
    for (int64_t i = 0; i < images.size(0); ++i) windows.push_back({images.size(1), images.size(2)});
    const Tensor w = Tensor::from_vector(weights, {kClasses, 3, 3, 3}, images.device());
    const Tensor b = Tensor::from_vector(bias, {kClasses}, images.device());
    Conv2dArgs a;
    a.pad_h = a.pad_w = 1;
    return {conv2d(images, w, b, a)};
  }
  int64_t num_classes() const override { return kClasses; }

  const std::vector<float> weights, bias;            // OIHW, as conv2d takes them
  std::vector<std::pair<int64_t, int64_t>> windows;  // (h, w) of every image given to forward
  int forwards = 0;
};

// A host image or logit map, [H][W][C] row-major.
struct Map {
  int64_t h = 0, w = 0, c = 0;
  std::vector<double> v;
  double& at(int64_t y, int64_t x, int64_t k) { return v[(size_t)((y * w + x) * c + k)]; }
  double at(int64_t y, int64_t x, int64_t k) const { return v[(size_t)((y * w + x) * c + k)]; }
};

Map make_map(int64_t h, int64_t w, int64_t c) { return {h, w, c, std::vector<double>((size_t)(h * w * c), 0.0)}; }

// The model's output on the host: the convolution of the window [y0, y0 + h) x [x0, x0 + w) of
// `image` as an image of its own (zero outside the window).
Map conv_reference(const ConvSegModel& m, const Map& image, int64_t y0, int64_t x0, int64_t h, int64_t w) {
  Map out = make_map(h, w, kClasses);
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x)
      for (int64_t o = 0; o < kClasses; ++o) {
        double s = m.bias[(size_t)o];
        for (int64_t i = 0; i < 3; ++i)
          for (int64_t ky = 0; ky < 3; ++ky)
            for (int64_t kx = 0; kx < 3; ++kx) {
              const int64_t yy = y + ky - 1, xx = x + kx - 1;
              if (yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
              s += m.weights[(size_t)(((o * 3 + i) * 3 + ky) * 3 + kx)] * image.at(y0 + yy, x0 + xx, i);
            }
        out.at(y, x, o) = s;
      }
  return out;
}

// PaddleSeg paddleseg/core/infer.py slide_inference, written out as the Python reads.
Map slide_reference(const ConvSegModel& m, const Map& image, int64_t w_crop, int64_t h_crop, int64_t w_stride,
                    int64_t h_stride) {
  const int64_t h_im = image.h, w_im = image.w;
  int64_t rows = (int64_t)std::ceil(1.0 * (double)(h_im - h_crop) / (double)h_stride) + 1;
  int64_t cols = (int64_t)std::ceil(1.0 * (double)(w_im - w_crop) / (double)w_stride) + 1;
  rows = h_im <= h_crop ? 1 : rows;
  cols = w_im <= w_crop ? 1 : cols;
  Map sum = make_map(h_im, w_im, kClasses), count = make_map(h_im, w_im, 1);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      int64_t h1 = r * h_stride, w1 = c * w_stride;
      const int64_t h2 = std::min(h1 + h_crop, h_im), w2 = std::min(w1 + w_crop, w_im);
      h1 = std::max(h2 - h_crop, int64_t{0});
      w1 = std::max(w2 - w_crop, int64_t{0});
      const Map logit = conv_reference(m, image, h1, w1, h2 - h1, w2 - w1);
      for (int64_t y = h1; y < h2; ++y)
        for (int64_t x = w1; x < w2; ++x) {
          for (int64_t k = 0; k < kClasses; ++k) sum.at(y, x, k) += logit.at(y - h1, x - w1, k);
          count.at(y, x, 0) += 1;
        }
    }
  for (int64_t y = 0; y < h_im; ++y)
    for (int64_t x = 0; x < w_im; ++x) {
      EXPECT_GT(count.at(y, x, 0), 0) << "reference: pixel " << y << "," << x << " in no window";
      for (int64_t k = 0; k < kClasses; ++k) sum.at(y, x, k) /= count.at(y, x, 0);
    }
  return sum;
}

Map flipped(const Map& m, bool horizontal, bool vertical) {
  Map out = make_map(m.h, m.w, m.c);
  for (int64_t y = 0; y < m.h; ++y)
    for (int64_t x = 0; x < m.w; ++x)
      for (int64_t k = 0; k < m.c; ++k)
        out.at(y, x, k) = m.at(vertical ? m.h - 1 - y : y, horizontal ? m.w - 1 - x : x, k);
  return out;
}

Tensor to_tensor(const Map& m) {
  return Tensor::from_vector(std::vector<float>(m.v.begin(), m.v.end()), {1, m.h, m.w, m.c});
}

Map to_map(const Tensor& t) {
  EXPECT_EQ(t.dim(), 4);
  Map m = make_map(t.size(1), t.size(2), t.size(3));
  const std::vector<float> v = t.to_vector();
  m.v.assign(v.begin(), v.end());
  return m;
}

Map test_image(int64_t h, int64_t w) {
  Map m = make_map(h, w, 3);
  const std::vector<float> p = pattern(m.v.size(), 2);
  m.v.assign(p.begin(), p.end());
  return m;
}

void expect_near(const Map& got, const Map& want, double tol) {
  ASSERT_EQ(got.h, want.h);
  ASSERT_EQ(got.w, want.w);
  ASSERT_EQ(got.c, want.c);
  double worst = 0;
  size_t where = 0;
  for (size_t i = 0; i < got.v.size(); ++i)
    if (std::abs(got.v[i] - want.v[i]) > worst) worst = std::abs(got.v[(where = i)] - want.v[i]);
  EXPECT_LE(worst, tol) << "at element " << where << ": " << got.v[where] << " vs " << want.v[where];
}

InferOptions slide(int crop_w, int crop_h, int stride_w, int stride_h) {
  InferOptions o;
  o.is_slide = true;
  o.crop_size = {crop_w, crop_h};
  o.stride = {stride_w, stride_h};
  return o;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const engine::Error& e) {
    return e.what();
  }
  return "";
}

TEST(SlideInference, OverlappingWindowsAreAveraged) {
  ConvSegModel model;
  const Map image = test_image(23, 37);
  // rows: ceil((23 - 10) / 6) + 1 = 4 windows, the last moved back to [13, 23); columns:
  // ceil((37 - 16) / 8) + 1 = 4, the last [21, 37): pixels are covered by 1 to 3 windows each way.
  const Map got = to_map(train::infer_logits(model, to_tensor(image), slide(16, 10, 8, 6)));
  expect_near(got, slide_reference(model, image, 16, 10, 8, 6), 1e-5);
  ASSERT_EQ(model.windows.size(), 16u);
  EXPECT_EQ(model.forwards, 2);  // 8 windows per batch
  for (auto [h, w] : model.windows) {
    EXPECT_EQ(h, 10);
    EXPECT_EQ(w, 16);
  }
  // The windows' borders matter: the whole-image pass differs from the windowed one.
  double differs = 0;
  const Map whole = conv_reference(model, image, 0, 0, 23, 37);
  for (size_t i = 0; i < whole.v.size(); ++i) differs = std::max(differs, std::abs(whole.v[i] - got.v[i]));
  EXPECT_GT(differs, 0.05);
}

TEST(SlideInference, StrideThatTilesExactlyAndNonSquareWindows) {
  ConvSegModel model;
  const Map image = test_image(24, 20);
  // 24 = 8 + 2 * 8 rows of windows without overlap; columns 20 with crop 12, stride 5: 3 windows.
  const Map got = to_map(train::infer_logits(model, to_tensor(image), slide(12, 8, 5, 8)));
  expect_near(got, slide_reference(model, image, 12, 8, 5, 8), 1e-5);
  EXPECT_EQ(model.windows.size(), 3u * 3u);
  EXPECT_EQ(model.forwards, 2);  // 8 + 1
}

TEST(SlideInference, ImageWithinOneCropIsOneWholePass) {
  ConvSegModel model;
  const Map image = test_image(9, 14);
  const Tensor x = to_tensor(image);
  const Map got = to_map(train::infer_logits(model, x, slide(14, 32, 50, 50)));  // stride > crop is fine here
  ASSERT_EQ(model.windows.size(), 1u);
  EXPECT_EQ(model.windows[0], (std::pair<int64_t, int64_t>{9, 14}));
  expect_near(got, to_map(train::infer_logits(model, x, InferOptions{})), 0);
  // Taller than the crop, narrower: rows slide, one column of windows the image's width.
  model.windows.clear();
  const Map rows_only = to_map(train::infer_logits(model, x, slide(32, 4, 32, 3)));
  expect_near(rows_only, slide_reference(model, image, 32, 4, 32, 3), 1e-5);
  for (auto [h, w] : model.windows) EXPECT_EQ(w, 14);
}

TEST(SlideInference, StrideLeavingPixelsOutIsAnError) {
  ConvSegModel model;
  // rows: windows [0, 6), [8, 14), [14, 20): rows 6 and 7 are in none (PaddleSeg: RuntimeError).
  const std::string msg =
      error_of([&] { train::infer_logits(model, to_tensor(test_image(20, 6)), slide(6, 6, 6, 8)); });
  EXPECT_NE(msg.find("is_slide: stride (6, 8) is larger than crop_size (6, 6): row 6 of a 20x6 image"),
            std::string::npos)
      << msg;
  EXPECT_TRUE(model.windows.empty()) << "checked before any window runs";
  EXPECT_NE(
      error_of([&] { train::infer_logits(model, to_tensor(test_image(6, 20)), slide(6, 6, 8, 6)); }).find("column 6"),
      std::string::npos);
  EXPECT_NE(error_of([&] {
              train::infer_logits(model, to_tensor(test_image(6, 6)), slide(0, 6, 8, 6));
            }).find("is_slide: needs crop_size (w, h) and stride (w, h), positive"),
            std::string::npos);
}

// The same windows on the CUDA device (the emulated one in an EMU build, where the kernels run on
// the CPU); skipped where the build has none.
TEST(SlideInference, OnTheDevice) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device in this build";
  ConvSegModel model;
  const Map image = test_image(23, 37);
  const Tensor logits = train::infer_logits(model, to_tensor(image).to(Device::cuda(0)), slide(16, 10, 8, 6));
  EXPECT_TRUE(logits.device().is_cuda());
  expect_near(to_map(logits), slide_reference(model, image, 16, 10, 8, 6), 1e-4);
}

// PP-LiteSeg-T (batch norm in eval mode): the windows batched together give what each gives alone.
TEST(SlideInference, PpLiteSegWindowsInOneBatchEqualWindowsAlone) {
  nn::SegModelSpec spec;
  spec.backbone = "STDC1";
  spec.num_classes = 3;
  spec.arm_out_chs = {32, 64, 128};
  spec.seg_head_inter_chs = {32, 64, 64};
  spec.seed = 5;
  const auto model = nn::build_seg_model(spec);
  model->eval();
  const Map image = test_image(40, 56);
  // rows [0, 32), [8, 40); columns [0, 32), [24, 56): four windows, one batch.
  const Map got = to_map(train::infer_logits(*model, to_tensor(image), slide(32, 32, 24, 24)));
  Map want = make_map(40, 56, 3), count = make_map(40, 56, 1);
  for (int64_t r0 : {0, 8})
    for (int64_t c0 : {0, 24}) {
      NoGradGuard no_grad;
      const Tensor crop = to_tensor(image).narrow(1, r0, 32).narrow(2, c0, 32).contiguous();
      const Map alone = to_map(model->forward(crop).at(0));
      for (int64_t y = 0; y < 32; ++y)
        for (int64_t x = 0; x < 32; ++x) {
          for (int64_t k = 0; k < 3; ++k) want.at(r0 + y, c0 + x, k) += alone.at(y, x, k);
          count.at(r0 + y, c0 + x, 0) += 1;
        }
    }
  for (int64_t y = 0; y < 40; ++y)
    for (int64_t x = 0; x < 56; ++x)
      for (int64_t k = 0; k < 3; ++k) want.at(y, x, k) /= count.at(y, x, 0);
  expect_near(got, want, 1e-4);
}

TEST(AugInference, FlipsAreUndoneAndPassesAveraged) {
  ConvSegModel model;
  const Map image = test_image(11, 13);
  InferOptions o;
  o.aug = true;
  o.flip_horizontal = o.flip_vertical = true;
  const Map got = to_map(train::infer_logits(model, to_tensor(image), o));
  Map want = make_map(11, 13, kClasses);
  for (auto [fh, fv] : std::vector<std::pair<bool, bool>>{{false, false}, {true, false}, {false, true}, {true, true}}) {
    const Map logit = flipped(conv_reference(model, flipped(image, fh, fv), 0, 0, 11, 13), fh, fv);
    for (size_t i = 0; i < want.v.size(); ++i) want.v[i] += logit.v[i] / 4;
  }
  expect_near(got, want, 1e-5);
  EXPECT_EQ(model.windows.size(), 4u);
}

TEST(AugInference, ScalesWithSlidingWindows) {
  ConvSegModel model;
  const Map image = test_image(21, 30);
  InferOptions o = slide(12, 8, 9, 6);
  o.aug = true;
  o.scales = {1.0, 0.75};
  o.flip_horizontal = true;
  const Map got = to_map(train::infer_logits(model, to_tensor(image), o));
  // Each scale s: the image resized to (int(21 s + 0.5), int(30 s + 0.5)) = (16, 23) at 0.75, each
  // flip slid over, un-flipped, the logits resized back to 21x30; the mean of the four passes.
  Map want = make_map(21, 30, kClasses);
  for (double s : o.scales) {
    const int sh = (int)(21 * s + 0.5), sw = (int)(30 * s + 0.5);
    const Map scaled = s == 1.0 ? image : to_map(resize_bilinear(to_tensor(image), sh, sw, false));
    for (bool fh : {false, true}) {
      Map logit = flipped(slide_reference(model, flipped(scaled, fh, false), 12, 8, 9, 6), fh, false);
      if (s != 1.0) logit = to_map(resize_bilinear(to_tensor(logit), 21, 30, false));
      for (size_t i = 0; i < want.v.size(); ++i) want.v[i] += logit.v[i] / 4;
    }
  }
  expect_near(got, want, 1e-5);
  // 1.0 (21 x 30): 4 rows x 3 columns of windows per flip; 0.75 (16 x 23): 3 x 3.
  EXPECT_EQ(model.windows.size(), 2u * 12u + 2u * 9u);
}

TEST(InferOptions, FromTestConfig) {
  train::TestConfig t;
  t.aug_eval = true;
  t.scales = {0.5, 1.0};
  t.flip_vertical = true;
  t.is_slide = true;
  t.crop_size = {512, 256};
  t.stride = {384, 192};
  const InferOptions o = train::infer_options(t);
  EXPECT_TRUE(o.aug);
  EXPECT_EQ(o.scales, t.scales);
  EXPECT_FALSE(o.flip_horizontal);
  EXPECT_TRUE(o.flip_vertical);
  EXPECT_TRUE(o.is_slide);
  EXPECT_EQ(o.crop_size, t.crop_size);
  EXPECT_EQ(o.stride, t.stride);
}

}  // namespace
