// PaddleX 2.x detection transforms, OpenCV resampling and the Beta sampler (see det_transforms.h for
// the semantics and sources). Tested by tests/test_det_transforms.cpp.
//
// Floating-point contraction is off in this file (as in transforms.cpp): numpy and OpenCV's scalar
// code round every float multiply and add separately, and the uint8 cast of MixupImage truncates.
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include "data/det_transforms.h"

#include <algorithm>
#include <cctype>
#include <cfloat>
#include <cmath>
#include <numeric>
#include <optional>
#include <utility>

#include "base/error.h"

namespace engine::data {

// ------------------------------------------------------------------------------------------ sampling
double sample_normal(Rng& rng) {
  // Marsaglia polar method; the second normal of the pair is dropped so a draw has no hidden state.
  for (;;) {
    const double u = 2.0 * rng.uniform() - 1.0, v = 2.0 * rng.uniform() - 1.0;
    const double s = u * u + v * v;
    if (s > 0.0 && s < 1.0) return u * std::sqrt(-2.0 * std::log(s) / s);
  }
}

double sample_gamma(Rng& rng, double shape) {
  ENGINE_CHECK(shape > 0 && std::isfinite(shape), "sample_gamma: shape must be > 0, got ", shape);
  if (shape < 1.0) {
    // Gamma(a) = Gamma(a + 1) * U^(1/a), U in (0, 1].
    const double g = sample_gamma(rng, shape + 1.0);
    return g * std::pow(1.0 - rng.uniform(), 1.0 / shape);
  }
  // Marsaglia & Tsang (2000), "A simple method for generating gamma variables".
  const double d = shape - 1.0 / 3.0, c = 1.0 / std::sqrt(9.0 * d);
  for (;;) {
    const double x = sample_normal(rng);
    double v = 1.0 + c * x;
    if (v <= 0.0) continue;
    v = v * v * v;
    const double u = rng.uniform();
    const double x2 = x * x;
    if (u < 1.0 - 0.0331 * x2 * x2) return d * v;
    if (std::log(u) < 0.5 * x2 + d * (1.0 - v + std::log(v))) return d * v;
  }
}

double sample_beta(Rng& rng, double a, double b) {
  const double x = sample_gamma(rng, a), y = sample_gamma(rng, b);
  if (x + y == 0.0) return rng.uniform() < a / (a + b) ? 1.0 : 0.0;  // both underflowed (tiny a, b)
  return x / (x + y);
}

// ------------------------------------------------------------------------------------------ resampling
const char* interp_name(Interp i) {
  switch (i) {
    case Interp::Nearest:
      return "NEAREST";
    case Interp::Linear:
      return "LINEAR";
    case Interp::Cubic:
      return "CUBIC";
    case Interp::Area:
      return "AREA";
    case Interp::Lanczos4:
      return "LANCZOS4";
  }
  return "?";
}

namespace {

// One output position of a separable resampling: the source indices and float weights, summed in
// this order from 0 (OpenCV's loops add the products left to right).
struct AxisTaps {
  std::vector<int> begin;  // size out + 1, into idx / w
  std::vector<int> idx;
  std::vector<float> w;
  void add(int i, float weight) {
    idx.push_back(i);
    w.push_back(weight);
  }
  void close() { begin.push_back((int)idx.size()); }
};

void cubic_coeffs(float x, float* c) {
  const float A = -0.75f;
  c[0] = ((A * (x + 1) - 5 * A) * (x + 1) + 8 * A) * (x + 1) - 4 * A;
  c[1] = ((A + 2) * x - (A + 3)) * x * x + 1;
  c[2] = ((A + 2) * (1 - x) - (A + 3)) * (1 - x) * (1 - x) + 1;
  c[3] = 1.f - c[0] - c[1] - c[2];
}

void lanczos4_coeffs(float x, float* c) {
  static const double s45 = 0.70710678118654752440084436210485;
  static const double cs[8][2] = {{1, 0}, {-s45, -s45}, {0, 1}, {s45, -s45}, {-1, 0}, {s45, s45}, {0, -1}, {-s45, s45}};
  const double pi = 3.14159265358979323846;
  float sum = 0;
  const double y0 = -(x + 3) * pi * 0.25, s0 = std::sin(y0), c0 = std::cos(y0);
  for (int i = 0; i < 8; ++i) {
    const float yi = x + 3 - i;
    if (std::fabs(yi) >= 1e-6f) {
      const double y = -yi * pi * 0.25;
      c[i] = (float)((cs[i][0] * s0 + cs[i][1] * c0) / (y * y));
    } else {
      c[i] = 1e30f;  // OpenCV: the tap at the sample point dominates after normalisation
    }
    sum += c[i];
  }
  sum = 1.f / sum;
  for (int i = 0; i < 8; ++i) c[i] *= sum;
}

// Cubic / Lanczos4: half-pixel centres, taps around floor(f) clamped to the edge pixel.
AxisTaps kernel_taps(int in, int out, Interp interp) {
  const int k = interp == Interp::Cubic ? 4 : 8;
  const double scale = 1.0 / ((double)out / in);
  AxisTaps t;
  t.begin.push_back(0);
  float c[8];
  for (int d = 0; d < out; ++d) {
    float f = (float)((d + 0.5) * scale - 0.5);
    const int s = (int)std::floor(f);
    f -= (float)s;
    if (k == 4)
      cubic_coeffs(f, c);
    else
      lanczos4_coeffs(f, c);
    for (int j = 0; j < k; ++j) t.add(std::clamp(s - k / 2 + 1 + j, 0, in - 1), c[j]);
    t.close();
  }
  return t;
}

// INTER_AREA when the image grows along some axis: OpenCV's area-mode bilinear weights.
AxisTaps area_linear_taps(int in, int out) {
  const double inv_scale = (double)out / in, scale = 1.0 / inv_scale;
  AxisTaps t;
  t.begin.push_back(0);
  for (int d = 0; d < out; ++d) {
    int s = (int)std::floor(d * scale);
    float f = (float)((d + 1) - (s + 1) * inv_scale);
    f = f <= 0 ? 0.f : f - std::floor(f);
    if (s >= in - 1) f = 0.f, s = in - 1;
    t.add(s, 1.f - f);
    t.add(std::min(s + 1, in - 1), f);
    t.close();
  }
  return t;
}

// INTER_AREA shrinking by a fractional factor: OpenCV's computeResizeAreaTab.
AxisTaps area_taps(int in, int out) {
  const double scale = 1.0 / ((double)out / in);
  AxisTaps t;
  t.begin.push_back(0);
  for (int d = 0; d < out; ++d) {
    const double fs1 = d * scale, fs2 = fs1 + scale;
    const double cell = std::min(scale, in - fs1);
    int s2 = (int)std::floor(fs2);
    s2 = std::min(s2, in - 1);
    const int s1 = std::min((int)std::ceil(fs1), s2);
    if (s1 - fs1 > 1e-3) t.add(s1 - 1, (float)((s1 - fs1) / cell));
    for (int s = s1; s < s2; ++s) t.add(s, (float)(1.0 / cell));
    if (fs2 - s2 > 1e-3) t.add(s2, (float)(std::min(std::min(fs2 - s2, 1.), cell) / cell));
    t.close();
  }
  return t;
}

Image new_image(int h, int w, int c) {
  Image out;
  out.h = h;
  out.w = w;
  out.c = c;
  out.data.assign((size_t)h * w * c, 0.f);
  return out;
}

// Horizontal pass over every source row, then the vertical one (OpenCV's order).
Image separable(const Image& src, int out_h, int out_w, const AxisTaps& tx, const AxisTaps& ty) {
  const int c = src.c;
  std::vector<float> rows((size_t)src.h * out_w * c);
  for (int y = 0; y < src.h; ++y) {
    const float* s = src.data.data() + (size_t)y * src.w * c;
    float* d = rows.data() + (size_t)y * out_w * c;
    for (int x = 0; x < out_w; ++x)
      for (int k = 0; k < c; ++k) {
        float acc = 0.f;
        for (int j = tx.begin[x]; j < tx.begin[x + 1]; ++j) acc += s[(size_t)tx.idx[j] * c + k] * tx.w[j];
        d[(size_t)x * c + k] = acc;
      }
  }
  Image out = new_image(out_h, out_w, c);
  const size_t row = (size_t)out_w * c;
  for (int y = 0; y < out_h; ++y) {
    float* d = out.data.data() + y * row;
    for (size_t i = 0; i < row; ++i) {
      float acc = 0.f;
      for (int j = ty.begin[y]; j < ty.begin[y + 1]; ++j) acc += rows[(size_t)ty.idx[j] * row + i] * ty.w[j];
      d[i] = acc;
    }
  }
  return out;
}

Image resize_nn(const Image& src, int out_h, int out_w) {
  // OpenCV's resizeNN: s = min(floor(d * (1 / (out/in))), in - 1).
  auto index = [](int in, int out) {
    const double inv = 1.0 / ((double)out / in);
    std::vector<int> idx(out);
    for (int d = 0; d < out; ++d) idx[d] = std::min((int)std::floor(d * inv), in - 1);
    return idx;
  };
  const std::vector<int> ix = index(src.w, out_w), iy = index(src.h, out_h);
  Image out = new_image(out_h, out_w, src.c);
  for (int y = 0; y < out_h; ++y)
    for (int x = 0; x < out_w; ++x)
      for (int k = 0; k < src.c; ++k) out.at(y, x, k) = src.at(iy[y], ix[x], k);
  return out;
}

// Integer shrink factors: the mean of each iscale_y x iscale_x block (OpenCV's resizeAreaFast).
Image resize_area_fast(const Image& src, int out_h, int out_w, int sy, int sx) {
  Image out = new_image(out_h, out_w, src.c);
  const float scale = 1.f / (float)(sx * sy);
  for (int y = 0; y < out_h; ++y)
    for (int x = 0; x < out_w; ++x)
      for (int k = 0; k < src.c; ++k) {
        float sum = 0.f;
        for (int a = 0; a < sy; ++a)
          for (int b = 0; b < sx; ++b) sum += src.at(y * sy + a, x * sx + b, k);
        out.at(y, x, k) = sum * scale;
      }
  return out;
}

}  // namespace

Image cv_resize(const Image& src, int out_h, int out_w, Interp interp) {
  ENGINE_CHECK(out_h > 0 && out_w > 0, "cv_resize: output size must be positive, got ", out_h, "x", out_w);
  ENGINE_CHECK(src.h > 0 && src.w > 0 && src.c > 0, "cv_resize: empty input image");
  if (out_h == src.h && out_w == src.w) return src;  // cv::resize copies
  if (interp == Interp::Nearest) return resize_nn(src, out_h, out_w);
  const double scale_x = 1.0 / ((double)out_w / src.w), scale_y = 1.0 / ((double)out_h / src.h);
  const int isx = (int)std::lround(scale_x), isy = (int)std::lround(scale_y);
  const bool area_fast = std::abs(scale_x - isx) < DBL_EPSILON && std::abs(scale_y - isy) < DBL_EPSILON;
  // OpenCV turns an exact 2x2 LINEAR shrink into the (equal-valued) fast area average.
  if (interp == Interp::Linear && area_fast && isx == 2 && isy == 2) interp = Interp::Area;
  switch (interp) {
    case Interp::Linear:
      return resize_bilinear(src, out_h, out_w);
    case Interp::Cubic:
    case Interp::Lanczos4:
      return separable(src, out_h, out_w, kernel_taps(src.w, out_w, interp), kernel_taps(src.h, out_h, interp));
    case Interp::Area:
      if (scale_x >= 1 && scale_y >= 1) {
        if (area_fast) return resize_area_fast(src, out_h, out_w, isy, isx);
        return separable(src, out_h, out_w, area_taps(src.w, out_w), area_taps(src.h, out_h));
      }
      return separable(src, out_h, out_w, area_linear_taps(src.w, out_w), area_linear_taps(src.h, out_h));
    default:
      break;
  }
  fail("cv_resize: unknown interpolation ", (int)interp);
}

std::vector<std::array<float, 4>> boxes_to_normalized_cxcywh(const std::vector<std::array<float, 4>>& xyxy, int width,
                                                             int height) {
  ENGINE_CHECK(width > 0 && height > 0, "boxes_to_normalized_cxcywh: image size must be positive, got ", width, "x",
               height);
  std::vector<std::array<float, 4>> out(xyxy.size());
  const float w = (float)width, h = (float)height;
  for (size_t i = 0; i < xyxy.size(); ++i) {
    const float x1 = xyxy[i][0] / w, y1 = xyxy[i][1] / h, x2 = xyxy[i][2] / w, y2 = xyxy[i][3] / h;
    const float bw = x2 - x1, bh = y2 - y1;
    out[i] = {x1 + bw / 2.f, y1 + bh / 2.f, bw, bh};
  }
  return out;
}

// ------------------------------------------------------------------------------------------ sample ops
void det_flip(DetSample& s) {
  Image& im = s.image;
  for (int y = 0; y < im.h; ++y)
    for (int x = 0; x < im.w / 2; ++x)
      for (int k = 0; k < im.c; ++k) std::swap(im.at(y, x, k), im.at(y, im.w - 1 - x, k));
  const float w = (float)im.w;
  for (auto& b : s.boxes) {
    const float x1 = b[0], x2 = b[2];
    b[0] = w - x2;
    b[2] = w - x1;
  }
}

void det_expand(DetSample& s, int h, int w, int x, int y, const std::vector<float>& fill) {
  const Image& im = s.image;
  ENGINE_CHECK(x >= 0 && y >= 0 && x + im.w <= w && y + im.h <= h, "det_expand: the image (", im.h, "x", im.w,
               ") at offset (", x, ", ", y, ") does not fit a ", h, "x", w, " canvas");
  ENGINE_CHECK(fill.size() == 1 || fill.size() == (size_t)im.c, "det_expand: ", fill.size(),
               " fill values for an image of ", im.c, " channels");
  Image out = new_image(h, w, im.c);
  for (size_t i = 0; i < out.data.size(); ++i) out.data[i] = fill[fill.size() == 1 ? 0 : i % im.c];
  for (int r = 0; r < im.h; ++r)
    std::copy_n(im.data.begin() + (size_t)r * im.w * im.c, (size_t)im.w * im.c,
                out.data.begin() + ((size_t)(y + r) * w + x) * im.c);
  s.image = std::move(out);
  for (auto& b : s.boxes) {
    b[0] += (float)x;
    b[1] += (float)y;
    b[2] += (float)x;
    b[3] += (float)y;
  }
}

namespace {

template <typename T>
std::vector<T> take(const std::vector<T>& v, const std::vector<size_t>& keep) {
  std::vector<T> out;
  out.reserve(keep.size());
  for (size_t i : keep) out.push_back(v[i]);
  return out;
}

// PaddleX's _crop_box_with_center_constraint: the indices of the boxes kept by `crop` (x1, y1, x2,
// y2) and all boxes clipped to it and shifted to its origin (float32 as numpy).
std::vector<size_t> crop_keep(const std::vector<std::array<float, 4>>& boxes, const std::array<int, 4>& crop,
                              std::vector<std::array<float, 4>>& cropped) {
  const float cx1 = (float)crop[0], cy1 = (float)crop[1], cx2 = (float)crop[2], cy2 = (float)crop[3];
  cropped.resize(boxes.size());
  std::vector<size_t> keep;
  for (size_t i = 0; i < boxes.size(); ++i) {
    const auto& b = boxes[i];
    auto& o = cropped[i];
    o = {std::max(b[0], cx1) - cx1, std::max(b[1], cy1) - cy1, std::min(b[2], cx2) - cx1, std::min(b[3], cy2) - cy1};
    const float mx = (b[0] + b[2]) / 2.f, my = (b[1] + b[3]) / 2.f;
    const bool centre_in = cx1 <= mx && mx < cx2 && cy1 <= my && my < cy2;
    if (centre_in && o[0] < o[2] && o[1] < o[3]) keep.push_back(i);
  }
  return keep;
}

Image crop_image(const Image& im, const std::array<int, 4>& c) {
  const int h = c[3] - c[1], w = c[2] - c[0];
  Image out = new_image(h, w, im.c);
  for (int y = 0; y < h; ++y)
    std::copy_n(im.data.begin() + ((size_t)(c[1] + y) * im.w + c[0]) * im.c, (size_t)w * im.c,
                out.data.begin() + (size_t)y * w * im.c);
  return out;
}

}  // namespace

bool det_crop(DetSample& s, const std::array<int, 4>& crop) {
  ENGINE_CHECK(crop[0] >= 0 && crop[1] >= 0 && crop[0] < crop[2] && crop[1] < crop[3] && crop[2] <= s.image.w &&
                   crop[3] <= s.image.h,
               "det_crop: crop box (", crop[0], ", ", crop[1], ", ", crop[2], ", ", crop[3], ") outside the ",
               s.image.h, "x", s.image.w, " image");
  std::vector<std::array<float, 4>> cropped;
  const std::vector<size_t> keep = crop_keep(s.boxes, crop, cropped);
  if (!s.boxes.empty() && keep.empty()) return false;
  s.image = crop_image(s.image, crop);
  s.boxes = take(cropped, keep);
  s.classes = take(s.classes, keep);
  s.scores = take(s.scores, keep);
  s.difficult = take(s.difficult, keep);
  return true;
}

void det_resize(DetSample& s, int h, int w, Interp interp) {
  const int ih = s.image.h, iw = s.image.w;
  const double sy = (double)h / ih, sx = (double)w / iw;
  s.image = cv_resize(s.image, h, w, interp);
  const float fx = (float)sx, fy = (float)sy;
  for (auto& b : s.boxes) {
    b[0] = std::clamp(b[0] * fx, 0.f, (float)w);
    b[2] = std::clamp(b[2] * fx, 0.f, (float)w);
    b[1] = std::clamp(b[1] * fy, 0.f, (float)h);
    b[3] = std::clamp(b[3] * fy, 0.f, (float)h);
  }
  s.scale_y = (float)((double)s.scale_y * sy);
  s.scale_x = (float)((double)s.scale_x * sx);
}

void det_mixup(DetSample& a, const DetSample& b, double factor) {
  ENGINE_CHECK(a.image.c == b.image.c, "MixupImage: ", a.origin, " has ", a.image.c, " channels, its partner ",
               b.origin, " has ", b.image.c);
  const int h = std::max(a.image.h, b.image.h), w = std::max(a.image.w, b.image.w), c = a.image.c;
  Image out = new_image(h, w, c);
  const float f = (float)factor, g = (float)(1.0 - factor);
  for (int y = 0; y < a.image.h; ++y)
    for (int x = 0; x < a.image.w; ++x)
      for (int k = 0; k < c; ++k) out.at(y, x, k) = a.image.at(y, x, k) * f;
  for (int y = 0; y < b.image.h; ++y)
    for (int x = 0; x < b.image.w; ++x)
      for (int k = 0; k < c; ++k) out.at(y, x, k) += b.image.at(y, x, k) * g;
  // astype('uint8'): truncation (the clamp only guards inputs outside 0..255).
  for (float& v : out.data) v = std::floor(std::clamp(v, 0.f, 255.f));
  a.image = std::move(out);
  const size_t na = a.boxes.size();
  a.boxes.insert(a.boxes.end(), b.boxes.begin(), b.boxes.end());
  a.classes.insert(a.classes.end(), b.classes.begin(), b.classes.end());
  a.difficult.insert(a.difficult.end(), b.difficult.begin(), b.difficult.end());
  a.scores.assign(a.boxes.size(), (float)(1.0 - factor));
  std::fill(a.scores.begin(), a.scores.begin() + (std::ptrdiff_t)na, (float)factor);
  a.orig_h = h;
  a.orig_w = w;
  a.scale_y = a.scale_x = 1.f;
}

namespace px_distort {
void brightness(Image& im, double delta) {
  const float d = (float)delta;
  for (float& v : im.data) v += d;
}
void contrast(Image& im, double delta) {
  const float d = (float)delta;
  for (float& v : im.data) v *= d;
}
void saturation(Image& im, double delta) {
  ENGINE_CHECK(im.c == 3, "RandomDistort: saturation needs an RGB image, got ", im.c, " channels");
  const float d = (float)delta, g = (float)(1.0 - delta);
  for (size_t i = 0; i + 2 < im.data.size(); i += 3) {
    float* p = &im.data[i];
    float gray = (p[0] * 0.299f + p[1] * 0.587f) + p[2] * 0.114f;  // numpy's left-to-right sum
    gray *= g;
    for (int k = 0; k < 3; ++k) p[k] = p[k] * d + gray;
  }
}
void hue(Image& im, double delta) {
  ENGINE_CHECK(im.c == 3, "RandomDistort: hue needs an RGB image, got ", im.c, " channels");
  const double pi = 3.14159265358979323846;
  const double u = std::cos(delta * pi), w = std::sin(delta * pi);
  const double bt[3][3] = {{1, 0, 0}, {0, u, -w}, {0, w, u}};
  const double tyiq[3][3] = {{0.299, 0.587, 0.114}, {0.596, -0.274, -0.321}, {0.211, -0.523, 0.311}};
  const double ityiq[3][3] = {{1.0, 0.956, 0.621}, {1.0, -0.272, -0.647}, {1.0, -1.107, 1.705}};
  double m1[3][3], m[3][3];  // m = ityiq . bt . tyiq; out_c = sum_k x_k m[c][k] (image . m^T)
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) {
      m1[i][j] = 0;
      for (int k = 0; k < 3; ++k) m1[i][j] += ityiq[i][k] * bt[k][j];
    }
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) {
      m[i][j] = 0;
      for (int k = 0; k < 3; ++k) m[i][j] += m1[i][k] * tyiq[k][j];
    }
  for (size_t i = 0; i + 2 < im.data.size(); i += 3) {
    float* p = &im.data[i];
    const double x0 = p[0], x1 = p[1], x2 = p[2];
    for (int c = 0; c < 3; ++c) p[c] = (float)(x0 * m[c][0] + x1 * m[c][1] + x2 * m[c][2]);
  }
}
}  // namespace px_distort

// ------------------------------------------------------------------------------------------ argument parsing
namespace {

const std::vector<std::string>& supported_types() {
  static const std::vector<std::string> t = {"MixupImage", "RandomDistort",        "RandomExpand",
                                             "RandomCrop", "RandomHorizontalFlip", "Resize",
                                             "Normalize",  "BatchRandomResize"};
  return t;
}

bool supported_types_has(const std::string& type) {
  const auto& t = supported_types();
  return std::find(t.begin(), t.end(), type) != t.end();
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + v[i];
  return s;
}

std::string lower(std::string s) {
  for (char& ch : s) ch = (char)std::tolower((unsigned char)ch);
  return s;
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  std::iota(prev.begin(), prev.end(), 0);
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

// The closest name (case-insensitive edit distance at most a third of its length), or "".
std::string suggest(const std::string& name, const std::vector<std::string>& known) {
  std::string best;
  size_t best_d = SIZE_MAX;
  for (const auto& k : known) {
    const size_t d = edit_distance(lower(name), lower(k));
    if (d < best_d) best_d = d, best = k;
  }
  return best_d <= std::max<size_t>(2, best.size() / 3) ? best : "";
}

std::string spec_where(const TransformSpec& s) { return s.where.empty() ? "transform " + s.type : s.where; }

class Args {
 public:
  Args(const TransformSpec& spec, std::vector<std::string> known, std::vector<std::string> known_str = {})
      : spec_(spec) {
    std::vector<std::string> all = known;
    all.insert(all.end(), known_str.begin(), known_str.end());
    auto unknown = [&](const std::string& name) {
      const std::string s = suggest(name, all);
      fail(path(name), ": unknown argument of ", spec.type, s.empty() ? "" : " (did you mean '" + s + "'?)",
           " (known: ", all.empty() ? "none" : join(all), ")");
    };
    for (const auto& [name, values] : spec.args) {
      if (std::find(all.begin(), all.end(), name) == all.end()) unknown(name);
      for (double v : values) ENGINE_CHECK(std::isfinite(v), path(name), ": expects finite numbers, got ", v);
    }
    for (const auto& [name, value] : spec.str_args) {
      if (std::find(known_str.begin(), known_str.end(), name) == known_str.end()) {
        if (std::find(known.begin(), known.end(), name) != known.end())
          fail(path(name), ": expects numbers, got the string '", value, "'");
        unknown(name);
      }
      ENGINE_CHECK(!spec.args.count(name), path(name), ": given both as a number and as a string");
    }
  }
  std::string path(const std::string& name) const { return spec_where(spec_) + "." + name; }
  bool has(const std::string& name) const { return spec_.args.count(name) || spec_.str_args.count(name); }
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
  bool flag(const std::string& name, bool def) const {
    const double v = scalar(name, def ? 1 : 0);
    ENGINE_CHECK(v == 0 || v == 1, path(name), ": expects a boolean (0 or 1), got ", v);
    return v == 1;
  }
  int64_t integer(const std::string& name, int64_t def, int64_t lo, int64_t hi) const {
    const double v = scalar(name, (double)def);
    ENGINE_CHECK(v == std::floor(v) && v >= (double)lo && v <= (double)hi, path(name), ": expects an integer in [", lo,
                 ", ", hi, "], got ", v);
    return (int64_t)v;
  }
  // [min, max] with min <= max.
  std::pair<double, double> range(const std::string& name, std::pair<double, double> def) const {
    if (!has(name)) return def;
    const std::vector<double> v = list(name, {});
    ENGINE_CHECK(v.size() == 2, path(name), ": expects [min, max] (2 numbers), got ", v.size(), " values");
    ENGINE_CHECK(v[0] <= v[1], path(name), ": expects [min, max] with min <= max, got ", shape_str(v));
    return {v[0], v[1]};
  }
  // One positive integer (a square) or [height, width].
  std::pair<int, int> size_hw(const std::string& name) const {
    const std::vector<double> v = list(name, {});
    ENGINE_CHECK(v.size() == 1 || v.size() == 2, path(name), ": expects an int or [height, width], got ", v.size(),
                 " values");
    for (double x : v)
      ENGINE_CHECK(x >= 1 && x == std::floor(x) && x < (1 << 20), path(name),
                   ": expects positive integers (an int or [height, width]), got ", shape_str(v));
    return {(int)v[0], (int)v[v.size() - 1]};
  }
  // 1 value or one per channel (3).
  std::vector<double> per_channel(const std::string& name, std::vector<double> def) const {
    const std::vector<double> v = list(name, def);
    ENGINE_CHECK(v.size() == 1 || v.size() == 3, path(name), ": expects 1 or 3 values, got ", v.size());
    return v;
  }
  // Interpolation: a name in str_args, or the cv2 code in args (-1 = RANDOM). nullopt = RANDOM.
  std::optional<Interp> interp(const std::string& def) const {
    std::string name = def;
    if (auto it = spec_.str_args.find("interp"); it != spec_.str_args.end()) {
      name = it->second;
    } else if (spec_.args.count("interp")) {
      const double v = scalar("interp", 0);
      ENGINE_CHECK(v == std::floor(v) && v >= -1 && v <= 4, path("interp"),
                   ": expects a cv2 interpolation code 0..4 (NEAREST, LINEAR, CUBIC, AREA, LANCZOS4) or -1 (RANDOM), "
                   "got ",
                   v);
      return v < 0 ? std::nullopt : std::optional<Interp>((Interp)(int)v);
    }
    if (name == "RANDOM") return std::nullopt;
    for (int i = 0; i <= 4; ++i)
      if (name == interp_name((Interp)i)) return (Interp)i;
    fail(path("interp"), ": expects one of NEAREST, LINEAR, CUBIC, AREA, LANCZOS4, RANDOM, got '", name, "'");
  }

 private:
  const TransformSpec& spec_;
};

// Scores default to 1 and difficult to 0; every per-box list must then match the boxes.
void check_annotations(DetSample& s) {
  const size_t n = s.boxes.size();
  if (s.scores.empty()) s.scores.assign(n, 1.f);
  if (s.difficult.empty()) s.difficult.assign(n, 0);
  ENGINE_CHECK(s.classes.size() == n && s.scores.size() == n && s.difficult.size() == n, "detection sample ", s.origin,
               ": ", n, " boxes but ", s.classes.size(), " classes, ", s.scores.size(), " scores and ",
               s.difficult.size(), " difficult flags");
}

// random.choice over PaddleX's interp_dict order.
Interp pick_interp(const std::optional<Interp>& fixed, Rng& rng) { return fixed ? *fixed : (Interp)rng.randint(0, 4); }

// ------------------------------------------------------------------------------------------ transforms
class MixupImage final : public DetTransform {
 public:
  explicit MixupImage(const TransformSpec& spec) {
    Args a(spec, {"alpha", "beta", "mixup_epoch"});
    alpha_ = a.scalar("alpha", 1.5);
    beta_ = a.scalar("beta", 1.5);
    ENGINE_CHECK(alpha_ > 0, a.path("alpha"), ": must be > 0, got ", alpha_);
    ENGINE_CHECK(beta_ > 0, a.path("beta"), ": must be > 0, got ", beta_);
    mixup_epoch_ = a.integer("mixup_epoch", -1, -1, INT32_MAX);
  }
  const char* type() const override { return "MixupImage"; }
  void apply(DetSample& s, Rng& rng, const DetContext& ctx) const override {
    if (mixup_epoch_ != -1 && ctx.epoch >= mixup_epoch_) return;
    ENGINE_CHECK(ctx.load_raw, "MixupImage: the loader gave no DetContext::load_raw (needed for ", s.origin, ")");
    const int64_t n = ctx.dataset_size;
    ENGINE_CHECK(n >= 1 && s.index >= 0 && s.index < n, "MixupImage: sample index ", s.index, " (", s.origin,
                 ") outside the data set of ", n, " samples");
    const int64_t pos = n > 1 ? (s.index + rng.randint(1, n - 1)) % n : 0;
    DetSample other = ctx.load_raw(pos);
    check_annotations(other);
    const double f = std::clamp(sample_beta(rng, alpha_, beta_), 0.0, 1.0);
    if (f >= 1.0) return;
    if (f <= 0.0) {
      s = std::move(other);
      return;
    }
    det_mixup(s, other, f);
  }

 private:
  double alpha_, beta_;
  int64_t mixup_epoch_;
};

class RandomDistort final : public DetTransform {
 public:
  explicit RandomDistort(const TransformSpec& spec) {
    Args a(spec, {"brightness_range", "brightness_prob", "contrast_range", "contrast_prob", "saturation_range",
                  "saturation_prob", "hue_range", "hue_prob", "random_apply", "count", "shuffle_channel"});
    const char* names[4] = {"brightness", "contrast", "saturation", "hue"};
    const double def_range[4] = {0.5, 0.5, 0.5, 18};
    for (int i = 0; i < 4; ++i) {
      const double r = a.non_negative(std::string(names[i]) + "_range", def_range[i]);
      lo_[i] = 1 - r;  // PaddleX: [1 - r, 1 + r] for all four, hue included
      hi_[i] = 1 + r;
      prob_[i] = a.prob(std::string(names[i]) + "_prob", 0.5);
    }
    random_apply_ = a.flag("random_apply", true);
    count_ = (int)a.integer("count", 4, 0, INT32_MAX);
    shuffle_channel_ = a.flag("shuffle_channel", false);
  }
  const char* type() const override { return "RandomDistort"; }
  void apply(DetSample& s, Rng& rng, const DetContext&) const override {
    ENGINE_CHECK(s.image.c == 3, "RandomDistort: expects an RGB image, got ", s.image.c, " channels (", s.origin, ")");
    if (random_apply_) {
      int order[4] = {0, 1, 2, 3};  // np.random.permutation
      for (int i = 3; i > 0; --i) std::swap(order[i], order[rng.randint(0, i)]);
      for (int i = 0; i < std::min(count_, 4); ++i) op(order[i], s.image, rng);
      return;
    }
    op(0, s.image, rng);
    const bool mode = rng.randint(0, 1) == 1;
    if (mode) op(1, s.image, rng);
    op(2, s.image, rng);
    op(3, s.image, rng);
    if (!mode) op(1, s.image, rng);
    if (shuffle_channel_ && rng.randint(0, 1) == 1) {
      int perm[3] = {0, 1, 2};
      for (int i = 2; i > 0; --i) std::swap(perm[i], perm[rng.randint(0, i)]);
      for (size_t i = 0; i + 2 < s.image.data.size(); i += 3) {
        const float px[3] = {s.image.data[i], s.image.data[i + 1], s.image.data[i + 2]};
        for (int k = 0; k < 3; ++k) s.image.data[i + k] = px[perm[k]];
      }
    }
  }

 private:
  void op(int which, Image& im, Rng& rng) const {
    if (rng.uniform() < prob_[which]) return;  // PaddleX's inverted test: skipped below prob
    const double delta = rng.uniform(lo_[which], hi_[which]);
    switch (which) {
      case 0:
        px_distort::brightness(im, delta);
        break;
      case 1:
        px_distort::contrast(im, delta);
        break;
      case 2:
        px_distort::saturation(im, delta);
        break;
      default:
        px_distort::hue(im, delta);
        break;
    }
  }
  double lo_[4], hi_[4], prob_[4];
  bool random_apply_, shuffle_channel_;
  int count_;
};

class RandomExpand final : public DetTransform {
 public:
  explicit RandomExpand(const TransformSpec& spec) {
    Args a(spec, {"upper_ratio", "prob", "im_padding_value", "label_padding_value"});
    upper_ = a.scalar("upper_ratio", 4.0);
    ENGINE_CHECK(upper_ > 1.01, a.path("upper_ratio"), ": must be > 1.01 (PaddleX's bound), got ", upper_);
    prob_ = a.prob("prob", 0.5);
    for (double v : a.per_channel("im_padding_value", {127.5, 127.5, 127.5})) fill_.push_back((float)v);
    a.integer("label_padding_value", 255, 0, 255);  // accepted for PaddleX configs; no masks here
  }
  const char* type() const override { return "RandomExpand"; }
  void apply(DetSample& s, Rng& rng, const DetContext&) const override {
    if (!(rng.uniform() < prob_)) return;
    const int ih = s.image.h, iw = s.image.w;
    const double ratio = rng.uniform(1.0, upper_);
    const int h = (int)(ih * ratio), w = (int)(iw * ratio);
    if (!(h > ih && w > iw)) return;
    const int y = (int)rng.randint(0, h - ih - 1), x = (int)rng.randint(0, w - iw - 1);
    ENGINE_CHECK(fill_.size() == 1 || (int)fill_.size() == s.image.c, "RandomExpand: ", fill_.size(),
                 " padding values for an image of ", s.image.c, " channels (", s.origin, ")");
    det_expand(s, h, w, x, y, fill_);
  }

 private:
  double upper_, prob_;
  std::vector<float> fill_;
};

class RandomCrop final : public DetTransform {
 public:
  explicit RandomCrop(const TransformSpec& spec) {
    Args a(spec,
           {"crop_size", "aspect_ratio", "thresholds", "scaling", "num_attempts", "allow_no_crop", "cover_all_box"});
    if (!a.list("crop_size", {}).empty()) crop_size_ = a.size_hw("crop_size");  // [] = None
    const std::vector<double> ar = a.list("aspect_ratio", {0.5, 2.0});
    if (!ar.empty()) {
      const auto r = a.range("aspect_ratio", {0.5, 2.0});
      ENGINE_CHECK(r.first > 0, a.path("aspect_ratio"), ": must be positive, got ", shape_str(ar));
      aspect_ = r;
    }
    thresholds_ = a.list("thresholds", {0.0, 0.1, 0.3, 0.5, 0.7, 0.9});
    for (double t : thresholds_)
      ENGINE_CHECK(t >= 0 && t <= 1, a.path("thresholds"), ": IoU thresholds must be in [0, 1], got ",
                   shape_str(thresholds_));
    scaling_ = a.range("scaling", {0.3, 1.0});
    ENGINE_CHECK(scaling_.first > 0 && scaling_.second <= 1, a.path("scaling"),
                 ": expects [min, max] within (0, 1], got [", scaling_.first, ", ", scaling_.second, "]");
    attempts_ = (int)a.integer("num_attempts", 50, 1, 1000000);
    allow_no_crop_ = a.flag("allow_no_crop", true);
    cover_all_ = a.flag("cover_all_box", false);
    ENGINE_CHECK(!thresholds_.empty() || allow_no_crop_, a.path("thresholds"),
                 ": empty and allow_no_crop is 0 (nothing to try)");
  }
  const char* type() const override { return "RandomCrop"; }
  void apply(DetSample& s, Rng& rng, const DetContext&) const override {
    if (!s.boxes.empty()) {
      crop_with_boxes(s, rng);
    } else {
      for (int i = 0; i < attempts_; ++i)
        if (const auto crop = crop_box(s.image.h, s.image.w, rng)) {
          det_crop(s, *crop);
          break;
        }
    }
    if (crop_size_) det_resize(s, crop_size_->first, crop_size_->second, Interp::Linear);
  }

 private:
  static constexpr double kNoCrop = -1.0;

  void crop_with_boxes(DetSample& s, Rng& rng) const {
    // A copy of the list per call: PaddleX grows self.thresholds with 'no_crop' on every call.
    std::vector<double> cands = thresholds_;
    if (allow_no_crop_) cands.push_back(kNoCrop);
    for (size_t i = cands.size(); i-- > 1;) std::swap(cands[i], cands[(size_t)rng.randint(0, (int64_t)i)]);
    for (double thresh : cands) {
      if (thresh == kNoCrop) return;
      for (int i = 0; i < attempts_; ++i) {
        const auto crop = crop_box(s.image.h, s.image.w, rng);
        if (!crop) continue;
        float max_iou = 0.f, min_iou = 1.f;
        for (const auto& b : s.boxes) {
          const float v = iou(b, *crop);
          max_iou = std::max(max_iou, v);
          min_iou = std::min(min_iou, v);
        }
        if ((double)max_iou < thresh) continue;
        if (cover_all_ && (double)min_iou < thresh) continue;
        if (det_crop(s, *crop)) return;
      }
    }
  }

  std::optional<std::array<int, 4>> crop_box(int ih, int iw, Rng& rng) const {
    const double scale = rng.uniform(scaling_.first, scaling_.second);
    double hs, ws;
    if (aspect_) {
      const double ar =
          rng.uniform(std::max(aspect_->first, scale * scale), std::min(aspect_->second, 1 / (scale * scale)));
      hs = scale / std::sqrt(ar);
      ws = scale * std::sqrt(ar);
    } else {
      hs = rng.uniform(scaling_.first, scaling_.second);
      ws = rng.uniform(scaling_.first, scaling_.second);
    }
    const double ch = ih * hs, cw = iw * ws;
    if (!aspect_ && (ch / cw < 0.5 || ch / cw > 2.0)) return std::nullopt;
    const int h = (int)ch, w = (int)cw;
    if (h < 1 || w < 1) return std::nullopt;  // deviation: PaddleX would crop to an empty image
    // np.random.randint(0, n) draws from [0, n); numpy raises for n == 0, here the offset is 0.
    const int y = h < ih ? (int)rng.randint(0, ih - h - 1) : 0;
    const int x = w < iw ? (int)rng.randint(0, iw - w - 1) : 0;
    return std::array<int, 4>{x, y, x + w, y + h};
  }

  static float iou(const std::array<float, 4>& a, const std::array<int, 4>& c) {
    const float bx1 = (float)c[0], by1 = (float)c[1], bx2 = (float)c[2], by2 = (float)c[3];
    const float tlx = std::max(a[0], bx1), tly = std::max(a[1], by1);
    const float brx = std::min(a[2], bx2), bry = std::min(a[3], by2);
    const float inter = (tlx < brx && tly < bry) ? (brx - tlx) * (bry - tly) : 0.f;
    const float area_a = (a[2] - a[0]) * (a[3] - a[1]), area_b = (bx2 - bx1) * (by2 - by1);
    return inter / ((area_a + area_b - inter) + 1e-10f);
  }

  std::optional<std::pair<int, int>> crop_size_;
  std::optional<std::pair<double, double>> aspect_;
  std::vector<double> thresholds_;
  std::pair<double, double> scaling_;
  int attempts_;
  bool allow_no_crop_, cover_all_;
};

class RandomHorizontalFlip final : public DetTransform {
 public:
  explicit RandomHorizontalFlip(const TransformSpec& spec) {
    Args a(spec, {"prob"});
    prob_ = a.prob("prob", 0.5);
  }
  const char* type() const override { return "RandomHorizontalFlip"; }
  void apply(DetSample& s, Rng& rng, const DetContext&) const override {
    if (rng.uniform() < prob_) det_flip(s);
  }

 private:
  double prob_;
};

class Resize final : public DetTransform {
 public:
  explicit Resize(const TransformSpec& spec) {
    Args a(spec, {"target_size", "interp", "keep_ratio"}, {"interp"});
    ENGINE_CHECK(a.has("target_size"), a.path("target_size"), ": required (an int or [height, width])");
    std::tie(h_, w_) = a.size_hw("target_size");
    interp_ = a.interp("LINEAR");
    keep_ratio_ = a.flag("keep_ratio", false);
  }
  const char* type() const override { return "Resize"; }
  void apply(DetSample& s, Rng& rng, const DetContext&) const override {
    const Interp interp = pick_interp(interp_, rng);
    int h = h_, w = w_;
    if (keep_ratio_) {
      const double scale = std::min((double)h_ / s.image.h, (double)w_ / s.image.w);
      w = std::max(1, python_round(s.image.w * scale));
      h = std::max(1, python_round(s.image.h * scale));
    }
    det_resize(s, h, w, interp);
  }

 private:
  int h_, w_;
  std::optional<Interp> interp_;
  bool keep_ratio_;
};

class Normalize final : public DetTransform {
 public:
  explicit Normalize(const TransformSpec& spec) {
    Args a(spec, {"mean", "std", "min_val", "max_val", "is_scale"});
    mean_ = a.per_channel("mean", {0.485, 0.456, 0.406});
    std_ = a.per_channel("std", {0.229, 0.224, 0.225});
    min_ = a.per_channel("min_val", {0, 0, 0});
    max_ = a.per_channel("max_val", {255, 255, 255});
    a.flag("is_scale", true);  // PaddleX 2.1 scales whatever is_scale says (see the header)
    for (double v : std_) ENGINE_CHECK(v != 0, a.path("std"), ": must not contain 0, got ", shape_str(std_));
    for (size_t i = 0; i < std::max(min_.size(), max_.size()); ++i)
      ENGINE_CHECK(max_[std::min(i, max_.size() - 1)] != min_[std::min(i, min_.size() - 1)], a.path("max_val"),
                   ": max_val - min_val must not be 0, got max_val ", shape_str(max_), " and min_val ",
                   shape_str(min_));
  }
  const char* type() const override { return "Normalize"; }
  void apply(DetSample& s, Rng&, const DetContext&) const override {
    Image& im = s.image;
    const int c = im.c;
    for (const auto* v : {&mean_, &std_, &min_, &max_})
      ENGINE_CHECK(v->size() == 1 || (int)v->size() == c, "Normalize: ", v->size(), " values for an image of ", c,
                   " channels (", s.origin, ")");
    auto at = [](const std::vector<double>& v, int k) { return v[v.size() == 1 ? 0 : k]; };
    std::vector<float> lo(c), range(c), mean(c), sd(c);
    for (int k = 0; k < c; ++k) {
      lo[k] = (float)at(min_, k);
      range[k] = (float)(1.0 / (at(max_, k) - at(min_, k)));
      mean[k] = (float)at(mean_, k);
      sd[k] = (float)at(std_, k);
    }
    for (size_t i = 0; i < im.data.size(); ++i) {
      const int k = (int)(i % (size_t)c);
      im.data[i] = ((im.data[i] - lo[k]) * range[k] - mean[k]) / sd[k];
    }
  }

 private:
  std::vector<double> mean_, std_, min_, max_;
};

class BatchRandomResize final : public DetBatchTransform {
 public:
  explicit BatchRandomResize(const TransformSpec& spec) {
    Args a(spec, {"target_sizes", "interp"}, {"interp"});
    const std::vector<double> v = a.list("target_sizes", {});
    ENGINE_CHECK(!v.empty(), a.path("target_sizes"), ": expects a non-empty list of sizes (squares), e.g. [320, 352]");
    for (double x : v) {
      ENGINE_CHECK(x >= 1 && x == std::floor(x) && x < (1 << 20), a.path("target_sizes"),
                   ": expects positive integers, got ", shape_str(v));
      sizes_.push_back((int)x);
    }
    interp_ = a.interp("NEAREST");
  }
  const char* type() const override { return "BatchRandomResize"; }
  void apply(std::vector<DetSample>& batch, Rng& rng) const override {
    const int size = sizes_[(size_t)rng.randint(0, (int64_t)sizes_.size() - 1)];
    for (DetSample& s : batch) det_resize(s, size, size, pick_interp(interp_, rng));
  }

 private:
  std::vector<int> sizes_;
  std::optional<Interp> interp_;
};

}  // namespace

// ------------------------------------------------------------------------------------------ pipeline
void DetPipeline::add(std::shared_ptr<const DetTransform> t) {
  if (std::string(t->type()) == "MixupImage")
    mixup_ = std::move(t);
  else
    sample_.push_back(std::move(t));
}

void DetPipeline::apply(DetSample& s, Rng& rng, const DetContext& ctx) const {
  check_annotations(s);
  if (mixup_) mixup_->apply(s, rng, ctx);
  for (const auto& t : sample_) t->apply(s, rng, ctx);
}

void DetPipeline::apply_batch(std::vector<DetSample>& batch, Rng& rng) const {
  for (const auto& t : batch_) t->apply(batch, rng);
}

DetPipeline build_det_pipeline(const std::vector<TransformSpec>& transforms,
                               const std::vector<TransformSpec>& batch_transforms) {
  for (const TransformSpec& s : batch_transforms)
    ENGINE_CHECK(s.type == "BatchRandomResize" || !supported_types_has(s.type), spec_where(s), ": '", s.type,
                 "' is a per-sample transform; batch_transforms takes BatchRandomResize");
  std::vector<TransformSpec> all = transforms;
  all.insert(all.end(), batch_transforms.begin(), batch_transforms.end());
  return build_det_pipeline(all);
}

DetPipeline build_det_pipeline(const std::vector<TransformSpec>& specs) {
  DetPipeline p;
  std::string mixup_where;
  for (const TransformSpec& s : specs) {
    if (s.type == "MixupImage") {
      ENGINE_CHECK(mixup_where.empty(), spec_where(s), ": a second MixupImage (the first is ", mixup_where, ")");
      mixup_where = spec_where(s);
      p.add(std::make_shared<MixupImage>(s));
    } else if (s.type == "RandomDistort") {
      p.add(std::make_shared<RandomDistort>(s));
    } else if (s.type == "RandomExpand") {
      p.add(std::make_shared<RandomExpand>(s));
    } else if (s.type == "RandomCrop") {
      p.add(std::make_shared<RandomCrop>(s));
    } else if (s.type == "RandomHorizontalFlip") {
      p.add(std::make_shared<RandomHorizontalFlip>(s));
    } else if (s.type == "Resize") {
      p.add(std::make_shared<Resize>(s));
    } else if (s.type == "Normalize") {
      p.add(std::make_shared<Normalize>(s));
    } else if (s.type == "BatchRandomResize") {
      p.add_batch(std::make_shared<BatchRandomResize>(s));
    } else {
      const std::string sug = suggest(s.type, supported_types());
      fail(spec_where(s), ": unknown detection transform type '", s.type, "'",
           sug.empty() ? "" : " (did you mean '" + sug + "'?)", " (supported: ", join(supported_types()), ")");
    }
  }
  return p;
}

}  // namespace engine::data
