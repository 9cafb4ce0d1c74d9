// PaddleSeg transforms (see transforms.h for the semantics and sources), the RNG and the pipeline
// builder with its argument validation. Tested by tests/test_data.cpp.
//
// Floating-point contraction is off in this file: with -march=native GCC would fuse a*b + c into one
// FMA, which rounds differently from the separate float multiply and add of Pillow's and OpenCV's C
// code (and of numpy), and the uint8 truncations that follow would then differ at boundaries.
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include "data/transforms.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <sstream>

#include "base/error.h"

namespace engine::data {

// ------------------------------------------------------------------------------------------ RNG
uint64_t Rng::next_u64() {
  uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

double Rng::uniform() { return (double)(next_u64() >> 11) * 0x1.0p-53; }

double Rng::uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }

int64_t Rng::randint(int64_t lo, int64_t hi) {
  ENGINE_CHECK(lo <= hi, "Rng::randint: empty range [", lo, ", ", hi, "]");
  const uint64_t range = (uint64_t)hi - (uint64_t)lo + 1;
  if (range == 0) return (int64_t)next_u64();  // the full 64-bit range
  // Rejection sampling: drop the lowest (2^64 mod range) values so every residue is equally likely.
  const uint64_t threshold = (0 - range) % range;
  uint64_t r;
  do {
    r = next_u64();
  } while (r < threshold);
  return (int64_t)((uint64_t)lo + r % range);
}

namespace {
uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
}  // namespace

uint64_t mix_seed(uint64_t a, uint64_t b) {
  return mix64(mix64(a + 0x9E3779B97F4A7C15ull) ^ (b + 0x6A09E667F3BCC909ull));
}
uint64_t mix_seed(uint64_t a, uint64_t b, uint64_t c) { return mix_seed(mix_seed(a, b), c); }

// ------------------------------------------------------------------------------------------ resampling
int python_round(double v) { return (int)std::nearbyint(v); }  // default rounding mode: half to even

Image resize_bilinear(const Image& src, int out_h, int out_w) {
  ENGINE_CHECK(out_h > 0 && out_w > 0, "resize_bilinear: output size must be positive, got ", out_h, "x", out_w);
  ENGINE_CHECK(src.h > 0 && src.w > 0 && src.c > 0, "resize_bilinear: empty input image");
  if (out_h == src.h && out_w == src.w) return src;
  struct Tap {
    int i0, i1;
    float w0, w1;
  };
  // OpenCV's resize(): scale = 1/(out/in); fx = (float)((d + 0.5)*scale - 0.5); sx = floor(fx);
  // sources left of 0 or at/after the last pixel clamp to it with weight 1.
  auto taps = [](int in, int out) {
    const double scale = 1.0 / ((double)out / in);
    std::vector<Tap> t(out);
    for (int d = 0; d < out; ++d) {
      float f = (float)((d + 0.5) * scale - 0.5);
      int s = (int)std::floor(f);
      f -= (float)s;
      if (s < 0) f = 0.f, s = 0;
      if (s >= in - 1) f = 0.f, s = in - 1;
      t[d] = Tap{s, std::min(s + 1, in - 1), 1.f - f, f};
    }
    return t;
  };
  const std::vector<Tap> tx = taps(src.w, out_w), ty = taps(src.h, out_h);
  const int c = src.c;
  // Horizontal pass over every source row, then the vertical blend (OpenCV's order).
  std::vector<float> hrows((size_t)src.h * out_w * c);
  for (int y = 0; y < src.h; ++y) {
    const float* s = src.data.data() + (size_t)y * src.w * c;
    float* d = hrows.data() + (size_t)y * out_w * c;
    for (int x = 0; x < out_w; ++x) {
      const Tap& t = tx[x];
      for (int k = 0; k < c; ++k) d[x * c + k] = s[t.i0 * c + k] * t.w0 + s[t.i1 * c + k] * t.w1;
    }
  }
  Image out;
  out.h = out_h;
  out.w = out_w;
  out.c = c;
  out.data.resize((size_t)out_h * out_w * c);
  const size_t row = (size_t)out_w * c;
  for (int y = 0; y < out_h; ++y) {
    const Tap& t = ty[y];
    const float* r0 = hrows.data() + t.i0 * row;
    const float* r1 = hrows.data() + t.i1 * row;
    float* d = out.data.data() + y * row;
    for (size_t i = 0; i < row; ++i) d[i] = r0[i] * t.w0 + r1[i] * t.w1;
  }
  return out;
}

Label resize_nearest(const Label& src, int out_h, int out_w) {
  ENGINE_CHECK(out_h > 0 && out_w > 0, "resize_nearest: output size must be positive, got ", out_h, "x", out_w);
  ENGINE_CHECK(src.h > 0 && src.w > 0, "resize_nearest: empty input label");
  if (out_h == src.h && out_w == src.w) return src;
  // OpenCV's resizeNN: ifx = 1/(out/in); sx = min(floor(dx * ifx), in - 1).
  auto index = [](int in, int out) {
    const double inv = 1.0 / ((double)out / in);
    std::vector<int> idx(out);
    for (int d = 0; d < out; ++d) idx[d] = std::min((int)std::floor(d * inv), in - 1);
    return idx;
  };
  const std::vector<int> ix = index(src.w, out_w), iy = index(src.h, out_h);
  Label out;
  out.h = out_h;
  out.w = out_w;
  out.data.resize((size_t)out_h * out_w);
  for (int y = 0; y < out_h; ++y)
    for (int x = 0; x < out_w; ++x) out.at(y, x) = src.at(iy[y], ix[x]);
  return out;
}

std::vector<double> step_scaling_candidates(double min_scale, double max_scale, double step) {
  ENGINE_CHECK(step > 0 && max_scale >= min_scale, "step_scaling_candidates: bad range");
  const int n = (int)((max_scale - min_scale) / step + 1);  // Python int(): truncation
  std::vector<double> v(n);
  if (n == 1) {
    v[0] = min_scale;
    return v;
  }
  const double delta = (max_scale - min_scale) / (n - 1);  // np.linspace: i*step + start, last = stop
  for (int i = 0; i < n; ++i) v[i] = i * delta + min_scale;
  v[n - 1] = max_scale;
  return v;
}

// ------------------------------------------------------------------------------------------ PIL ops
namespace pil {
namespace {
// Image.blend for one channel value: Pillow computes (int)a + alpha*((int)b - (int)a) in float, then
// truncates (alpha in [0,1]) or clips. The product of a float and a small int is exact in double, so
// rounding it to float gives exactly the float product; the sum is then rounded once more.
inline uint8_t blend(int a, int b, float alpha) {
  const float prod = (float)((double)alpha * (double)(b - a));
  const float t = (float)a + prod;
  if (alpha >= 0.f && alpha <= 1.f) return (uint8_t)t;
  if (t <= 0.f) return 0;
  if (t >= 255.f) return 255;
  return (uint8_t)t;
}
}  // namespace

uint8_t luma(uint8_t r, uint8_t g, uint8_t b) {
  return (uint8_t)((r * 19595u + g * 38470u + b * 7471u + 0x8000u) >> 16);
}

void brightness(std::vector<uint8_t>& rgb, float factor) {
  for (uint8_t& v : rgb) v = blend(0, v, factor);
}

void contrast(std::vector<uint8_t>& rgb, float factor) {
  // ImageStat mean of the L image, then int(mean + 0.5).
  const size_t n = rgb.size() / 3;
  if (n == 0) return;
  uint64_t sum = 0;
  for (size_t i = 0; i < n; ++i) sum += luma(rgb[3 * i], rgb[3 * i + 1], rgb[3 * i + 2]);
  const int mean = (int)((double)sum / (double)n + 0.5);
  for (uint8_t& v : rgb) v = blend(mean, v, factor);
}

void saturation(std::vector<uint8_t>& rgb, float factor) {
  for (size_t i = 0; i + 2 < rgb.size(); i += 3) {
    const int l = luma(rgb[i], rgb[i + 1], rgb[i + 2]);
    for (int k = 0; k < 3; ++k) rgb[i + k] = blend(l, rgb[i + k], factor);
  }
}

void sharpness(std::vector<uint8_t>& rgb, int h, int w, float factor) {
  // Degenerate = ImageFilter.SMOOTH: 3x3 kernel (1 1 1 / 1 5 1 / 1 1 1)/13, rounded to nearest;
  // the outermost rows and columns are copied unchanged, as Pillow's 3x3 filter does.
  std::vector<uint8_t> smooth = rgb;
  for (int y = 1; y + 1 < h; ++y)
    for (int x = 1; x + 1 < w; ++x)
      for (int k = 0; k < 3; ++k) {
        int s = 0;
        for (int dy = -1; dy <= 1; ++dy)
          for (int dx = -1; dx <= 1; ++dx) s += rgb[((size_t)(y + dy) * w + (x + dx)) * 3 + k];
        s += 4 * rgb[((size_t)y * w + x) * 3 + k];
        const float v = (float)s / 13.f + 0.5f;
        smooth[((size_t)y * w + x) * 3 + k] = v >= 255.f ? 255 : (uint8_t)v;
      }
  for (size_t i = 0; i < rgb.size(); ++i) rgb[i] = blend(smooth[i], rgb[i], factor);
}

// Pillow's rgb2hsv_row, with its float/double mix.
void rgb_to_hsv(const uint8_t* in, uint8_t* out) {
  const uint8_t r = in[0], g = in[1], b = in[2];
  const uint8_t maxc = std::max(r, std::max(g, b));
  const uint8_t minc = std::min(r, std::min(g, b));
  uint8_t uh = 0, us = 0;
  if (minc != maxc) {
    const float cr = (float)(maxc - minc);
    const float s = cr / (float)maxc;
    const float rc = (float)(maxc - r) / cr;
    const float gc = (float)(maxc - g) / cr;
    const float bc = (float)(maxc - b) / cr;
    float h;
    if (r == maxc)
      h = bc - gc;
    else if (g == maxc)
      h = (float)(2.0 + rc - bc);
    else
      h = (float)(4.0 + gc - rc);
    h = (float)std::fmod(h / 6.0 + 1.0, 1.0);
    uh = (uint8_t)std::clamp((int)(h * 255.0), 0, 255);
    us = (uint8_t)std::clamp((int)(s * 255.0), 0, 255);
  }
  out[0] = uh;
  out[1] = us;
  out[2] = maxc;
}

// Pillow's hsv2rgb.
void hsv_to_rgb(const uint8_t* in, uint8_t* out) {
  const uint8_t h = in[0], s = in[1], v = in[2];
  if (s == 0) {
    out[0] = out[1] = out[2] = v;
    return;
  }
  const int i = (int)std::floor((float)h * 6.0 / 255.0);
  const float f = (float)((float)h * 6.0 / 255.0 - (float)i);
  const float fs = (float)((float)s / 255.0);
  const int p = (int)std::round((float)v * (1.0 - fs));
  const int q = (int)std::round((float)v * (1.0 - fs * f));
  const int t = (int)std::round((float)v * (1.0 - fs * (1.0 - f)));
  const uint8_t up = (uint8_t)std::clamp(p, 0, 255), uq = (uint8_t)std::clamp(q, 0, 255),
                ut = (uint8_t)std::clamp(t, 0, 255);
  switch (i % 6) {
    case 0:
      out[0] = v, out[1] = ut, out[2] = up;
      break;
    case 1:
      out[0] = uq, out[1] = v, out[2] = up;
      break;
    case 2:
      out[0] = up, out[1] = v, out[2] = ut;
      break;
    case 3:
      out[0] = up, out[1] = uq, out[2] = v;
      break;
    case 4:
      out[0] = ut, out[1] = up, out[2] = v;
      break;
    default:
      out[0] = v, out[1] = up, out[2] = uq;
      break;
  }
}

void hue(std::vector<uint8_t>& rgb, double delta) {
  uint8_t hsv[3];
  for (size_t i = 0; i + 2 < rgb.size(); i += 3) {
    rgb_to_hsv(&rgb[i], hsv);
    // numpy assigns float64 H + delta into the uint8 array: truncation toward zero, then the low
    // 8 bits (x86 behaviour of the C cast), i.e. hue wraps around.
    const long long shifted = (long long)std::trunc((double)hsv[0] + delta);
    hsv[0] = (uint8_t)(shifted & 0xFF);
    hsv_to_rgb(hsv, &rgb[i]);
  }
}
}  // namespace pil

// ------------------------------------------------------------------------------------------ argument parsing
namespace {

const char* kSupported = "ResizeStepScaling, RandomPaddingCrop, RandomHorizontalFlip, RandomDistort, Normalize, Resize";

std::string spec_where(const TransformSpec& s) { return s.where.empty() ? "transform " + s.type : s.where; }

// Reads the arguments of one spec; rejects names the transform does not have.
class Args {
 public:
  Args(const TransformSpec& spec, std::vector<std::string> known) : spec_(spec) {
    for (const auto& [name, values] : spec.args) {
      if (std::find(known.begin(), known.end(), name) == known.end()) {
        std::ostringstream k;
        for (size_t i = 0; i < known.size(); ++i) k << (i ? ", " : "") << known[i];
        fail(path(name), ": unknown argument of ", spec.type, " (known: ", known.empty() ? "none" : k.str(), ")");
      }
      for (double v : values) ENGINE_CHECK(std::isfinite(v), path(name), ": expects finite numbers, got ", v);
    }
  }
  std::string path(const std::string& name) const { return spec_where(spec_) + "." + name; }
  bool has(const std::string& name) const { return spec_.args.count(name) != 0; }
  double scalar(const std::string& name, double def) const {
    auto it = spec_.args.find(name);
    if (it == spec_.args.end()) return def;
    ENGINE_CHECK(it->second.size() == 1, path(name), ": expects one number, got ", it->second.size(), " values");
    return it->second[0];
  }
  std::vector<double> list(const std::string& name, std::vector<double> def) const {
    auto it = spec_.args.find(name);
    return it == spec_.args.end() ? def : it->second;
  }
  double prob(const std::string& name, double def) const {
    const double p = scalar(name, def);
    ENGINE_CHECK(p >= 0 && p <= 1, path(name), ": a probability must be in [0, 1], got ", p);
    return p;
  }
  double non_negative(const std::string& name, double def) const {
    const double v = scalar(name, def);
    ENGINE_CHECK(v >= 0, path(name), ": must be >= 0, got ", v);
    return v;
  }
  // [w, h] of positive integers; one value means a square (PaddleSeg accepts an int).
  std::pair<int, int> size_wh(const std::string& name, std::pair<int, int> def) const {
    if (!has(name)) return def;
    const std::vector<double> v = list(name, {});
    ENGINE_CHECK(v.size() == 1 || v.size() == 2, path(name), ": expects [width, height] (2 positive integers), got ",
                 v.size(), " values");
    for (double x : v)
      ENGINE_CHECK(x >= 1 && x == std::floor(x) && x < (1 << 20), path(name),
                   ": expects [width, height] (2 positive integers), got ", shape_str(v));
    return {(int)v[0], (int)v[v.size() - 1]};
  }

 private:
  const TransformSpec& spec_;
};

// ------------------------------------------------------------------------------------------ transforms
void flip_image(Image& im) {
  for (int y = 0; y < im.h; ++y)
    for (int x = 0; x < im.w / 2; ++x)
      for (int k = 0; k < im.c; ++k) std::swap(im.at(y, x, k), im.at(y, im.w - 1 - x, k));
}
void flip_label(Label& lab) {
  for (int y = 0; y < lab.h; ++y)
    for (int x = 0; x < lab.w / 2; ++x) std::swap(lab.at(y, x), lab.at(y, lab.w - 1 - x));
}

Image pad_image(const Image& im, int new_h, int new_w, float value) {
  Image out;
  out.h = new_h;
  out.w = new_w;
  out.c = im.c;
  out.data.assign((size_t)new_h * new_w * im.c, value);
  for (int y = 0; y < im.h; ++y)
    std::copy_n(im.data.begin() + (size_t)y * im.w * im.c, (size_t)im.w * im.c,
                out.data.begin() + (size_t)y * new_w * im.c);
  return out;
}
Label pad_label(const Label& lab, int new_h, int new_w, uint8_t value) {
  Label out;
  out.h = new_h;
  out.w = new_w;
  out.data.assign((size_t)new_h * new_w, value);
  for (int y = 0; y < lab.h; ++y)
    std::copy_n(lab.data.begin() + (size_t)y * lab.w, lab.w, out.data.begin() + (size_t)y * new_w);
  return out;
}
Image crop_image(const Image& im, int y0, int x0, int h, int w) {
  Image out;
  out.h = h;
  out.w = w;
  out.c = im.c;
  out.data.resize((size_t)h * w * im.c);
  for (int y = 0; y < h; ++y)
    std::copy_n(im.data.begin() + ((size_t)(y0 + y) * im.w + x0) * im.c, (size_t)w * im.c,
                out.data.begin() + (size_t)y * w * im.c);
  return out;
}
Label crop_label(const Label& lab, int y0, int x0, int h, int w) {
  Label out;
  out.h = h;
  out.w = w;
  out.data.resize((size_t)h * w);
  for (int y = 0; y < h; ++y)
    std::copy_n(lab.data.begin() + (size_t)(y0 + y) * lab.w + x0, w, out.data.begin() + (size_t)y * w);
  return out;
}

void resize_sample(Sample& s, int h, int w) {
  s.image = resize_bilinear(s.image, h, w);
  if (s.has_label) s.label = resize_nearest(s.label, h, w);
}

class ResizeStepScaling final : public Transform {
 public:
  explicit ResizeStepScaling(const TransformSpec& spec) {
    Args a(spec, {"min_scale_factor", "max_scale_factor", "scale_step_size"});
    min_ = a.scalar("min_scale_factor", 0.75);
    max_ = a.scalar("max_scale_factor", 1.25);
    step_ = a.scalar("scale_step_size", 0.25);
    ENGINE_CHECK(min_ > 0, a.path("min_scale_factor"), ": must be > 0, got ", min_);
    ENGINE_CHECK(min_ <= max_, a.path("min_scale_factor"), ": must be <= max_scale_factor (got ", min_, " > ", max_,
                 ")");
    ENGINE_CHECK(step_ >= 0, a.path("scale_step_size"), ": must be >= 0, got ", step_);
    if (min_ != max_ && step_ > 0) candidates_ = step_scaling_candidates(min_, max_, step_);
  }
  const char* type() const override { return "ResizeStepScaling"; }
  void apply(Sample& s, Rng& rng) const override {
    double scale;
    if (min_ == max_)
      scale = min_;
    else if (step_ == 0)
      scale = rng.uniform(min_, max_);
    else  // np.random.shuffle(candidates)[0]: uniform over the candidates
      scale = candidates_[(size_t)rng.randint(0, (int64_t)candidates_.size() - 1)];
    const int w = std::max(1, python_round(scale * s.image.w));
    const int h = std::max(1, python_round(scale * s.image.h));
    resize_sample(s, h, w);
  }

 private:
  double min_, max_, step_;
  std::vector<double> candidates_;
};

class RandomPaddingCrop final : public Transform {
 public:
  RandomPaddingCrop(const TransformSpec& spec, int64_t ignore_index) {
    Args a(spec, {"crop_size", "im_padding_value", "label_padding_value", "category_max_ratio", "ignore_index",
                  "loop_times"});
    std::tie(crop_w_, crop_h_) = a.size_wh("crop_size", {512, 512});
    im_pad_ = (float)a.scalar("im_padding_value", 127.5);
    const double lp = a.scalar("label_padding_value", (double)ignore_index);
    ENGINE_CHECK(lp >= 0 && lp <= 255 && lp == std::floor(lp), a.path("label_padding_value"),
                 ": must be an integer in 0..255, got ", lp);
    label_pad_ = (uint8_t)lp;
    cat_max_ratio_ = a.scalar("category_max_ratio", 1.0);
    ENGINE_CHECK(cat_max_ratio_ > 0, a.path("category_max_ratio"), ": must be > 0, got ", cat_max_ratio_);
    ignore_ = (int64_t)a.scalar("ignore_index", (double)ignore_index);
    const double loops = a.scalar("loop_times", 10);
    ENGINE_CHECK(loops >= 1 && loops == std::floor(loops), a.path("loop_times"), ": must be an integer >= 1, got ",
                 loops);
    loop_times_ = (int)loops;
  }
  const char* type() const override { return "RandomPaddingCrop"; }
  void apply(Sample& s, Rng& rng) const override {
    int h = s.image.h, w = s.image.w;
    if (h == crop_h_ && w == crop_w_) return;
    const int pad_h = std::max(crop_h_ - h, 0), pad_w = std::max(crop_w_ - w, 0);
    if (pad_h > 0 || pad_w > 0) {  // bottom/right only
      s.image = pad_image(s.image, h + pad_h, w + pad_w, im_pad_);
      if (s.has_label) s.label = pad_label(s.label, h + pad_h, w + pad_w, label_pad_);
      h += pad_h;
      w += pad_w;
    }
    int off_h = 0, off_w = 0;
    for (int i = 0; i < loop_times_; ++i) {
      off_h = (int)rng.randint(0, h - crop_h_);
      off_w = (int)rng.randint(0, w - crop_w_);
      if (cat_max_ratio_ >= 1.0 || !s.has_label) break;
      // Re-draw while one category dominates the crop (np.unique counts without ignore).
      std::map<int, int64_t> counts;
      for (int y = 0; y < crop_h_; ++y)
        for (int x = 0; x < crop_w_; ++x) ++counts[s.label.at(off_h + y, off_w + x)];
      counts.erase((int)ignore_);
      int64_t total = 0, most = 0;
      for (const auto& kv : counts) total += kv.second, most = std::max(most, kv.second);
      if (counts.size() > 1 && (double)most / (double)total < cat_max_ratio_) break;
    }
    s.image = crop_image(s.image, off_h, off_w, crop_h_, crop_w_);
    if (s.has_label) s.label = crop_label(s.label, off_h, off_w, crop_h_, crop_w_);
  }

 private:
  int crop_w_, crop_h_;
  float im_pad_;
  uint8_t label_pad_;
  double cat_max_ratio_;
  int64_t ignore_;
  int loop_times_;
};

class RandomHorizontalFlip final : public Transform {
 public:
  explicit RandomHorizontalFlip(const TransformSpec& spec) {
    Args a(spec, {"prob"});
    prob_ = a.prob("prob", 0.5);
  }
  const char* type() const override { return "RandomHorizontalFlip"; }
  void apply(Sample& s, Rng& rng) const override {
    if (rng.uniform() < prob_) {
      flip_image(s.image);
      if (s.has_label) flip_label(s.label);
    }
  }

 private:
  double prob_;
};

class RandomDistort final : public Transform {
 public:
  explicit RandomDistort(const TransformSpec& spec) {
    Args a(spec, {"brightness_range", "brightness_prob", "contrast_range", "contrast_prob", "saturation_range",
                  "saturation_prob", "hue_range", "hue_prob", "sharpness_range", "sharpness_prob"});
    const char* names[kOps] = {"brightness", "contrast", "saturation", "sharpness", "hue"};
    const double def_range[kOps] = {0.5, 0.5, 0.5, 0.5, 18};
    const double def_prob[kOps] = {0.5, 0.5, 0.5, 0, 0.5};
    for (int i = 0; i < kOps; ++i) {
      range_[i] = a.non_negative(std::string(names[i]) + "_range", def_range[i]);
      prob_[i] = a.prob(std::string(names[i]) + "_prob", def_prob[i]);
    }
  }
  const char* type() const override { return "RandomDistort"; }
  void apply(Sample& s, Rng& rng) const override {
    Image& im = s.image;
    ENGINE_CHECK(im.c == 3, "RandomDistort: expects an RGB image, got ", im.c, " channels");
    // astype('uint8'): truncation (values are 0..255 here; clamp guards the cast).
    std::vector<uint8_t> px(im.data.size());
    for (size_t i = 0; i < px.size(); ++i) {
      const float v = im.data[i];
      px[i] = !(v > 0.f) ? 0 : v >= 255.f ? 255 : (uint8_t)v;
    }
    int order[kOps] = {0, 1, 2, 3, 4};  // brightness, contrast, saturation, sharpness, hue
    for (int i = kOps - 1; i > 0; --i) std::swap(order[i], order[rng.randint(0, i)]);
    for (int op : order) {
      if (!(rng.uniform() < prob_[op])) continue;
      const double lo = op == 4 ? -range_[op] : 1 - range_[op];
      const double hi = op == 4 ? range_[op] : 1 + range_[op];
      const double f = rng.uniform(lo, hi);
      switch (op) {
        case 0:
          pil::brightness(px, (float)f);
          break;
        case 1:
          pil::contrast(px, (float)f);
          break;
        case 2:
          pil::saturation(px, (float)f);
          break;
        case 3:
          pil::sharpness(px, im.h, im.w, (float)f);
          break;
        default:
          pil::hue(px, f);
          break;
      }
    }
    for (size_t i = 0; i < px.size(); ++i) im.data[i] = px[i];
  }

 private:
  static constexpr int kOps = 5;
  double range_[kOps], prob_[kOps];
};

class Normalize final : public Transform {
 public:
  explicit Normalize(const TransformSpec& spec) {
    Args a(spec, {"mean", "std"});
    mean_ = a.list("mean", {0.5});
    std_ = a.list("std", {0.5});
    ENGINE_CHECK(mean_.size() == 1 || mean_.size() == 3, a.path("mean"), ": expects 1 or 3 values, got ", mean_.size());
    ENGINE_CHECK(std_.size() == 1 || std_.size() == 3, a.path("std"), ": expects 1 or 3 values, got ", std_.size());
    for (double v : std_) ENGINE_CHECK(v != 0, a.path("std"), ": must not contain 0, got ", shape_str(std_));
  }
  const char* type() const override { return "Normalize"; }
  void apply(Sample& s, Rng&) const override {
    Image& im = s.image;
    for (size_t i = 0; i < im.data.size(); ++i) {
      const size_t k = i % (size_t)im.c;
      const double m = mean_[mean_.size() == 1 ? 0 : k], sd = std_[std_.size() == 1 ? 0 : k];
      // numpy: float32 x / 255.0 stays float32; `-= mean` and `/= std` (float64 arrays) compute in
      // float64 and store float32 after each step.
      const float x = im.data[i] / 255.0f;
      const float centred = (float)((double)x - m);
      im.data[i] = (float)((double)centred / sd);
    }
  }

 private:
  std::vector<double> mean_, std_;
};

class Resize final : public Transform {
 public:
  explicit Resize(const TransformSpec& spec) {
    Args a(spec, {"target_size"});
    std::tie(w_, h_) = a.size_wh("target_size", {512, 512});
  }
  const char* type() const override { return "Resize"; }
  void apply(Sample& s, Rng&) const override { resize_sample(s, h_, w_); }

 private:
  int w_, h_;
};

}  // namespace

Pipeline build_pipeline(const std::vector<TransformSpec>& specs, int64_t ignore_index) {
  Pipeline p;
  for (const TransformSpec& s : specs) {
    if (s.type == "ResizeStepScaling")
      p.add(std::make_shared<ResizeStepScaling>(s));
    else if (s.type == "RandomPaddingCrop")
      p.add(std::make_shared<RandomPaddingCrop>(s, ignore_index));
    else if (s.type == "RandomHorizontalFlip")
      p.add(std::make_shared<RandomHorizontalFlip>(s));
    else if (s.type == "RandomDistort")
      p.add(std::make_shared<RandomDistort>(s));
    else if (s.type == "Normalize")
      p.add(std::make_shared<Normalize>(s));
    else if (s.type == "Resize")
      p.add(std::make_shared<Resize>(s));
    else
      fail(spec_where(s), ": unknown transform type '", s.type, "' (supported: ", kSupported, ")");
  }
  return p;
}

}  // namespace engine::data
