// Detection transforms with PaddleX 2.x semantics (YOLOv3 training and evaluation), built from a
// config's `transforms:` list, and cv2.resize's five interpolations on float images.
//
// Semantics source: PaddleX release/2.1 paddlex/cv/transforms/operators.py and batch_operators.py,
// paddlex/cv/datasets/voc.py (where mixup runs). Types and
// arguments (defaults as PaddleX's classes; `interp` is a string in TransformSpec::str_args or the
// cv2 code in args, -1 = RANDOM; an empty list is PaddleX's None where None is allowed):
//   MixupImage(alpha=1.5, beta=1.5, mixup_epoch=-1)
//     Runs before every other per-sample transform, wherever it is listed (PaddleX applies it in
//     Dataset.__getitem__ on the decoded pair, Compose skips it). Active when mixup_epoch == -1 or
//     DetContext::epoch < mixup_epoch. Partner: off = randint(1, N-1), index (i + off) % N (itself
//     when N == 1), loaded with no transform through DetContext::load_raw. f ~ Beta(alpha, beta) clipped to
//     [0, 1]; f >= 1 keeps the sample unchanged, f <= 0 returns the partner sample whole (as PaddleX
//     returns sample[1]). Else canvas max(h) x max(w), zeros, img1*f then += img2*(1-f) in float32,
//     then cast to uint8 (truncation; stored back as float 0..255). Boxes, classes, difficult are
//     concatenated, scores = f for the sample's boxes and 1-f for the partner's; orig_h/orig_w become
//     the canvas size and scale 1 (PaddleX's Decode re-runs on the mixed array and resets im_shape).
//   RandomDistort(brightness_range=.5, brightness_prob=.5, contrast_range=.5, contrast_prob=.5,
//     saturation_range=.5, saturation_prob=.5, hue_range=18, hue_prob=.5, random_apply=1, count=4,
//     shuffle_channel=0): PaddleX's numpy version, with its quirks reproduced:
//       - an op is skipped when uniform() < prob (applied when >= prob: prob 0 means always);
//       - brightness ADDS delta ~ U(1-r, 1+r) (about +0.5..+1.5 on 0..255 data);
//       - contrast multiplies by delta ~ U(1-r, 1+r); saturation blends with gray
//         0.299R+0.587G+0.114B (float32): x*delta + gray*(1-delta);
//       - hue draws delta ~ U(1-hue_range, 1+hue_range) (U(-17, 19) by default) and rotates the I/Q
//         plane of YIQ by delta*pi (PaddleX's matrices, whose rounded I/Q rows sum to +-0.001, so
//         gray shifts slightly), i.e. an essentially random hue rotation;
//       - no clipping and no uint8 cast: values may leave 0..255;
//       - random_apply: the first `count` ops of a random permutation of (brightness, contrast,
//         saturation, hue); else brightness, mode = randint(0, 1), contrast if mode, saturation, hue,
//         contrast if !mode, then a random channel permutation with probability 1/2 if
//         shuffle_channel (shuffle_channel is ignored with random_apply, as in PaddleX).
//   RandomExpand(upper_ratio=4, prob=.5, im_padding_value=[127.5]*3, label_padding_value=255)
//     if uniform() < prob: ratio ~ U(1, upper_ratio), h = int(H*ratio), w = int(W*ratio); only if
//     h > H and w > W: y = randint(0, h-H-1), x = randint(0, w-W-1) (numpy's exclusive high), canvas
//     filled with im_padding_value, image at (x, y), boxes + (x, y, x, y). upper_ratio must be > 1.01
//     (PaddleX's assert). label_padding_value is accepted for PaddleX configs and unused (no masks).
//   RandomCrop(crop_size=none, aspect_ratio=[.5, 2], thresholds=[0, .1, .3, .5, .7, .9],
//     scaling=[.3, 1], num_attempts=50, allow_no_crop=1, cover_all_box=0)
//     SSD-style. With boxes: the candidates thresholds + "no_crop" (if allow_no_crop) are shuffled
//     (Fisher–Yates) and tried in order; "no_crop" returns unchanged; for a threshold, up to
//     num_attempts crop boxes: scale ~ U(scaling), ar ~ U(max(ar_min, scale^2), min(ar_max,
//     scale^-2)), crop h/w = int(H*scale/sqrt(ar)), int(W*scale*sqrt(ar)), y = randint(0, H-ch-1),
//     x = randint(0, W-cw-1); rejected if max IoU(gt, crop) < thresh (or, with cover_all_box, min
//     IoU < thresh); else boxes whose centre lies in [x1, x2) x [y1, y2) of the crop and that keep a
//     positive size after clipping to it are kept (clipped, shifted), the first crop keeping any wins.
//     Without boxes: the first crop box is taken. aspect_ratio [] means PaddleX's None (h and w
//     scales drawn independently, crops with h/w outside [.5, 2] rejected). crop_size (an int or
//     [h, w]) resizes the result with Resize(crop_size) (LINEAR).
//     Deviations: PaddleX appends "no_crop" to self.thresholds in place on every call, so the
//     no-crop probability grows over training; here the list is copied per call (as PaddleDetection
//     does). PaddleX drops nothing from `difficult` (its length then disagrees with the boxes); here
//     difficult is filtered with the boxes. A crop of zero height or width (tiny images) counts as a
//     failed attempt, and numpy's randint(0, 0) error (crop as large as the image) becomes offset 0.
//   RandomHorizontalFlip(prob=.5): if uniform() < prob: image mirrored, x1' = W - x2, x2' = W - x1.
//   Resize(target_size=[h, w] or one int, interp=LINEAR, keep_ratio=0)
//     cv2.resize to (h, w); keep_ratio: s = min(h/H, w/W), size = round(H*s), round(W*s) (half to
//     even). Boxes scaled by the float32 ratios and clipped to [0, w] x [0, h]; scale_y/scale_x *=
//     the ratios (in double, stored as float, as numpy's float32 scalar * float). interp RANDOM:
//     uniform among NEAREST, LINEAR, CUBIC, AREA, LANCZOS4 (the sample's Rng).
//   Normalize(mean=[.485, .456, .406], std=[.229, .224, .225], min_val=[0]*3, max_val=[255]*3,
//     is_scale=1): x = ((x - min) * float32(1/(max-min)) - mean) / std in float32. PaddleX 2.1's
//     apply ignores is_scale (it only guards the max-min check), so the scaling always happens; that
//     is reproduced. A std of 0 or max == min is an error.
//   BatchRandomResize(target_sizes=[...] (squares), interp=NEAREST) - a batch transform: one size
//     per batch, uniform over target_sizes, drawn from the batch Rng; with interp RANDOM PaddleX's
//     Resize draws the interpolation inside apply(), i.e. once PER SAMPLE (PaddleDetection draws one
//     per batch); reproduced: after the size, one draw per sample in batch order. Boxes and scale as
//     Resize. (PaddleX also allows [h, w] pairs in target_sizes; TransformSpec's flat numeric lists
//     only express squares here.)
// Per-box lists: DetPipeline::apply fills empty scores with 1 and empty difficult with 0 (on the
// sample and on a mixup partner) and then requires classes, scores and difficult to match the boxes.
// Order: build_det_pipeline splits the list as PaddleX does: MixupImage first, then the other
// per-sample transforms in list order (Normalize included, wherever it stands), then the batch
// transforms in list order on the batch (PaddleX 2.x resizes normalized data). The random draws come
// from our Rng (different numbers from Python's), in PaddleX's order within each transform.
//
// Resampling (cv2.resize on float32 HWC data; same size = copy): NEAREST src = min(floor(d *
// (1/(out/in))), in-1); LINEAR half-pixel bilinear (resize_bilinear of data/transforms.h); CUBIC
// Keys a = -0.75 on 4 taps, LANCZOS4 8 taps (OpenCV's coefficient functions), taps outside the image
// clamped to the edge pixel; AREA: both scales >= 1: integer scales average the iscale_x*iscale_y
// block, fractional ones use OpenCV's area table (partial cells weighted by covered length); if
// either scale < 1 (upscaling), OpenCV's area-mode bilinear: sx = floor(d*scale), f = (d+1) -
// (sx+1)/scale, f = f <= 0 ? 0 : frac(f). Separable: horizontal pass then vertical, float weights.
// An exact 2x2 LINEAR shrink takes the AREA block average, as OpenCV does. Measured against cv2 4.14:
// within 6e-5 (the golden's rounding) for NEAREST, CUBIC, AREA, LANCZOS4 and 1.1e-4 for LINEAR.
//
// Thread safety: a built pipeline is immutable (unlike PaddleX's RandomCrop); loader workers share
// it, each with its own Rng. DetContext::load_raw is called from those workers.
//
// Tested by tests/test_det_transforms.cpp: cv_resize against cv2.resize (opencv-python-headless 4.x,
// float32) for the five interpolations on 8 shapes each, and the deterministic cores against
// PaddleX 2.1.0's own operators.py (Resize with boxes/scale/keep_ratio, Normalize, flip, Padding =
// expand at fixed offsets, RandomCrop with a forced crop box, MixupImage with a forced factor, the
// four distort ops with a forced delta, cxcywh), all in tests/golden/det_transforms/det_transforms.json
// (tools/gen_det_transform_golden.py); plus hand-computed expectations: flip and expand boxes,
// RandomExpand's draws replayed, RandomCrop's kept boxes, no-crop and no-box paths, MixupImage's
// partner choice, epoch gating and uint8 cast, RandomDistort's inverted probability,
// BatchRandomResize (one size per batch, cumulative scale), the Beta / Gamma / normal samplers'
// mean and variance, and every spec error.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "data/data_spec.h"
#include "data/det_sample.h"
#include "data/image_io.h"
#include "data/transforms.h"

namespace engine::data {

// What a per-sample transform may need besides the sample: MixupImage's partner and the epoch.
struct DetContext {
  int64_t epoch = 0;         // 0-based epoch being loaded (PaddleX's dataset.set_epoch(i))
  int64_t dataset_size = 0;  // N, the number of samples load_raw accepts (0..N-1)
  // The decoded sample `index` with no transform applied (the data set's read, boxes in pixels).
  std::function<DetSample(int64_t index)> load_raw;
};

class DetTransform {
 public:
  virtual ~DetTransform() = default;
  virtual void apply(DetSample& s, Rng& rng, const DetContext& ctx) const = 0;
  virtual const char* type() const = 0;
};

class DetBatchTransform {
 public:
  virtual ~DetBatchTransform() = default;
  virtual void apply(std::vector<DetSample>& batch, Rng& rng) const = 0;
  virtual const char* type() const = 0;
};

class DetPipeline {
 public:
  // Per sample: MixupImage (if any) first, then the others in list order. `rng`: the loader's
  // per-sample generator; s.index must be set when MixupImage is present.
  void apply(DetSample& s, Rng& rng, const DetContext& ctx) const;
  // Per batch, after every sample went through apply(): the batch transforms in list order.
  // `rng`: a per-batch generator (e.g. mix_seed(seed, epoch, batch index)).
  void apply_batch(std::vector<DetSample>& batch, Rng& rng) const;

  bool has_mixup() const { return mixup_ != nullptr; }  // PaddleX doubles num_max_boxes with mixup
  size_t size() const { return sample_.size(); }        // per-sample transforms, mixup excluded
  const DetTransform& at(size_t i) const { return *sample_.at(i); }
  size_t batch_size() const { return batch_.size(); }
  const DetBatchTransform& batch_at(size_t i) const { return *batch_.at(i); }

  void add(std::shared_ptr<const DetTransform> t);  // a MixupImage goes to the mixup slot
  void add_batch(std::shared_ptr<const DetBatchTransform> t) { batch_.push_back(std::move(t)); }

 private:
  std::shared_ptr<const DetTransform> mixup_;
  std::vector<std::shared_ptr<const DetTransform>> sample_;
  std::vector<std::shared_ptr<const DetBatchTransform>> batch_;
};

// One builder for the whole `transforms:` list: per-sample and batch transforms are told apart by
// type (see the file comment for the order). Validates every spec (unknown type with a suggestion,
// unknown argument, arity, impossible values, a second MixupImage); each error is one line naming
// spec.where (+ "." + argument) and what was expected.
DetPipeline build_det_pipeline(const std::vector<TransformSpec>& specs);
// The same for a config's two lists (train/det_config.h): `transforms` may hold any type (a
// BatchRandomResize there is a batch transform, as PaddleX's Compose allows), `batch_transforms` only
// batch types (an error names the entry otherwise). Batch transforms run in the order: those of
// `transforms`, then those of `batch_transforms`.
DetPipeline build_det_pipeline(const std::vector<TransformSpec>& transforms,
                               const std::vector<TransformSpec>& batch_transforms);

// ---- building blocks (public for the evaluator, engine-predict and the tests)
enum class Interp { Nearest = 0, Linear = 1, Cubic = 2, Area = 3, Lanczos4 = 4 };  // cv2 codes
const char* interp_name(Interp i);
// cv2.resize(img, (out_w, out_h), interpolation) on float32 data (see the file comment).
Image cv_resize(const Image& img, int out_h, int out_w, Interp interp);

// The deterministic cores of the transforms (each transform = its random draws + one of these).
void det_flip(DetSample& s);  // mirror the image, x1' = W - x2, x2' = W - x1
// Canvas h x w filled with `fill` (1 or c values), the image at column x, row y; boxes shifted.
void det_expand(DetSample& s, int h, int w, int x, int y, const std::vector<float>& fill);
// Crop to (x1, y1, x2, y2), keeping the boxes whose centre is inside (clipped and shifted) with their
// classes, scores and difficult flags. Returns false and leaves `s` unchanged when the sample has
// boxes and none is kept (RandomCrop then tries another crop).
bool det_crop(DetSample& s, const std::array<int, 4>& crop);
// Resize image and boxes (clipped to the new size) and multiply scale_y / scale_x (Resize's core).
void det_resize(DetSample& s, int h, int w, Interp interp);
// MixupImage's core for a factor in (0, 1): `a` becomes the mix of a (weight factor) and b.
void det_mixup(DetSample& a, const DetSample& b, double factor);
// RandomDistort's four ops on an RGB float image with a given delta (PaddleX's numpy arithmetic).
namespace px_distort {
void brightness(Image& im, double delta);  // x + delta
void contrast(Image& im, double delta);    // x * delta
void saturation(Image& im, double delta);  // x * delta + gray * (1 - delta)
void hue(Image& im, double delta);         // YIQ rotation by delta * pi
}  // namespace px_distort

// Gamma(shape, 1) by Marsaglia–Tsang (shape < 1 via Gamma(shape+1) * U^(1/shape)), normals by the
// Marsaglia polar method; Beta(a, b) = X / (X + Y). Draws consume a varying number of values.
double sample_normal(Rng& rng);
double sample_gamma(Rng& rng, double shape);
double sample_beta(Rng& rng, double a, double b);

// Boxes as the YOLOv3 target builder wants them (PaddleX's _NormalizeBox then _BboxXYXY2XYWH, in
// float32): x / width, y / height, then (cx, cy, w, h) with w = x2 - x1, cx = x1 + w / 2. The loader's
// collate calls it with the padded batch image size.
std::vector<std::array<float, 4>> boxes_to_normalized_cxcywh(const std::vector<std::array<float, 4>>& xyxy, int width,
                                                             int height);

}  // namespace engine::data
