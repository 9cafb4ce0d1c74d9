// Training/eval transforms with PaddleSeg's semantics, a small explicit RNG, and the pipeline built
// from a config's `transforms:` list.
//
// Semantics source: PaddleSeg paddleseg/transforms/transforms.py + functional.py.
// Supported types and arguments (defaults as PaddleSeg's classes):
//   ResizeStepScaling(min_scale_factor=0.75, max_scale_factor=1.25, scale_step_size=0.25)
//     scale = min if min == max; uniform(min, max) if step == 0; else uniform over the candidates
//     np.linspace(min, max, int((max-min)/step + 1)). New size = Python round(s*W), round(s*H) (round
//     half to even), at least 1.
//   RandomPaddingCrop(crop_size=[512,512] as [w,h] (a scalar means square), im_padding_value=127.5,
//     label_padding_value=<dataset ignore_index, 255 by default>, category_max_ratio=1.0,
//     ignore_index=<dataset ignore_index>, loop_times=10)
//     unchanged if the image already has the crop size; else pad bottom/right to the crop size, then
//     offset_h = randint(0, H-ch), offset_w = randint(0, W-cw) (inclusive), drawn in that order.
//   RandomHorizontalFlip(prob=0.5): flip image and label if uniform() < prob.
//   RandomDistort(brightness/contrast/saturation_range=0.5, *_prob=0.5, hue_range=18, hue_prob=0.5,
//     sharpness_range=0.5, sharpness_prob=0): image truncated to uint8 first (always), then the five
//     ops in a random order (Fisher–Yates), each applied if uniform() < prob with factor
//     uniform(1-r, 1+r) (hue: delta uniform(-r, r)); PIL ImageEnhance / HSV arithmetic, see pil_*.
//   Normalize(mean=[0.5], std=[0.5]): (x/255 - mean)/std per channel (1 or 3 values).
//   Resize(target_size=[512,512] as [w,h]): fixed-size resize (val/test configs).
// Resampling follows OpenCV, which PaddleSeg calls: images cv2.INTER_LINEAR on float data (half-pixel
// centres src = (dst+0.5)*in/out - 0.5, source index clamped to the image, float weights, horizontal
// pass then vertical), labels cv2.INTER_NEAREST (src = floor(dst * (1/(out/in))), clamped).
// The random draws come from our own Rng, so values differ from Python's; the distributions and the
// order of draws within a transform are PaddleSeg's.
// Val/test mode: the dataset runs only the image through the pipeline (labels keep their size).
//
// Tested by tests/test_data.cpp (hand-computed expectations per transform, PIL formulas, bad specs).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/data_spec.h"
#include "data/image_io.h"

namespace engine::data {

// SplitMix64 (Steele, Lea, Flood 2014): 64-bit state, one add and a mix per draw. Explicit so that
// results do not depend on the standard library's generator or distribution algorithms.
class Rng {
 public:
  explicit Rng(uint64_t seed = 0) : state_(seed) {}
  uint64_t next_u64();
  double uniform();                         // [0, 1), 53 random bits
  double uniform(double lo, double hi);     // lo + (hi - lo) * uniform()
  int64_t randint(int64_t lo, int64_t hi);  // uniform integer in [lo, hi], inclusive, unbiased
 private:
  uint64_t state_;
};

// Seeds derived from several integers (loader: (seed, epoch) and (seed, epoch, position)).
uint64_t mix_seed(uint64_t a, uint64_t b);
uint64_t mix_seed(uint64_t a, uint64_t b, uint64_t c);

struct Sample {
  Image image;
  Label label;
  bool has_label = false;  // false: transforms touch only the image
};

class Transform {
 public:
  virtual ~Transform() = default;
  virtual void apply(Sample& s, Rng& rng) const = 0;
  virtual const char* type() const = 0;
};

class Pipeline {
 public:
  void add(std::shared_ptr<const Transform> t) { transforms_.push_back(std::move(t)); }
  void apply(Sample& s, Rng& rng) const {
    for (const auto& t : transforms_) t->apply(s, rng);
  }
  size_t size() const { return transforms_.size(); }
  const Transform& at(size_t i) const { return *transforms_.at(i); }

 private:
  std::vector<std::shared_ptr<const Transform>> transforms_;
};

// Validates every spec (unknown type, unknown argument, arity, impossible values) with errors that
// name spec.where (+ "." + argument). ignore_index is the dataset's: the default label padding value
// and category_max_ratio ignore value of RandomPaddingCrop.
Pipeline build_pipeline(const std::vector<TransformSpec>& specs, int64_t ignore_index);

// ---- building blocks (public for the evaluator, engine-predict and the tests)
Image resize_bilinear(const Image& img, int out_h, int out_w);  // cv2.INTER_LINEAR on float
Label resize_nearest(const Label& lab, int out_h, int out_w);   // cv2.INTER_NEAREST
// ResizeStepScaling's candidate scales (np.linspace(min, max, int((max-min)/step + 1))).
std::vector<double> step_scaling_candidates(double min_scale, double max_scale, double step);
// Python's round() to an int: round half to even.
int python_round(double v);

// PIL operations on an interleaved uint8 RGB buffer of h*w*3 bytes (what RandomDistort applies):
//   brightness: Image.blend(black, im, f); contrast: blend(grey at int(mean(L) + 0.5), im, f);
//   saturation (ImageEnhance.Color): blend(L replicated to RGB, im, f); sharpness: blend(SMOOTH
//   3x3 filter (1 1 1 / 1 5 1 / 1 1 1)/13 with border pixels copied, im, f).
//   Blend: out = uint8(a + f*(b - a)) in float (truncation) for f in [0, 1], else clipped to 0..255.
//   L = (19595 R + 38470 G + 7471 B + 0x8000) >> 16 (ITU-R 601-2, Pillow's rgb2l).
//   hue: RGB->HSV (Pillow's rgb2hsv, H and S scaled to 0..255 and truncated), H = uint8(trunc(H +
//   delta)) modulo 256 (numpy's float->uint8 cast wraps on x86), HSV->RGB (Pillow's hsv2rgb).
namespace pil {
void brightness(std::vector<uint8_t>& rgb, float factor);
void contrast(std::vector<uint8_t>& rgb, float factor);
void saturation(std::vector<uint8_t>& rgb, float factor);
void sharpness(std::vector<uint8_t>& rgb, int h, int w, float factor);
void hue(std::vector<uint8_t>& rgb, double delta);
uint8_t luma(uint8_t r, uint8_t g, uint8_t b);
void rgb_to_hsv(const uint8_t* rgb, uint8_t* hsv);
void hsv_to_rgb(const uint8_t* hsv, uint8_t* rgb);
}  // namespace pil

}  // namespace engine::data
