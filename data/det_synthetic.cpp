// Synthetic shapes detection set (see det_synthetic.h for the layout and guarantees).
// Every random number comes from Rng(mix_seed(seed, index)); the drawing is plain float math on the CPU, so the
// same seed gives the same files. Floating-point contraction is off so that FMA availability (-march=native
// differs between machines) does not change the pixels or the shape masks.
// Tested by tests/test_det_data.cpp.
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif
#include "data/det_synthetic.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "base/error.h"
#include "data/transforms.h"

namespace engine::data {
namespace fs = std::filesystem;

namespace {

constexpr float kPi = 3.14159265358979f;
constexpr uint8_t kNoOwner = 255;
constexpr int kMaxObjects = 6;
constexpr float kMinVisible = 0.6f;  // share of an earlier shape's pixels that must stay visible

// Approximately normal noise (sum of 3 uniforms: variance 1/4 -> scaled to 1).
float gauss(Rng& rng) { return (float)((rng.uniform() + rng.uniform() + rng.uniform() - 1.5) * 2.0); }

struct Rgb {
  float v[3];
};

Rgb random_rgb(Rng& rng, double lo, double hi) {
  Rgb c;
  for (float& x : c.v) x = (float)rng.uniform(lo, hi);
  return c;
}

// A shape: class, centre, extent s, rotation (triangle only).
struct Shape {
  int cls;
  float cx, cy, s, theta;
  // Whether the pixel centre (px, py) lies inside.
  bool covers(float px, float py) const {
    const float dx = px - cx, dy = py - cy;
    const float h = 0.5f * s;
    switch (cls) {
      case 0:  // circle of diameter s
        return dx * dx + dy * dy <= h * h;
      case 1:  // square of side s
        return std::fabs(dx) <= h && std::fabs(dy) <= h;
      case 2: {  // equilateral triangle, circumradius 0.55 s, rotated by theta
        const float R = 0.55f * s;
        float vx[3], vy[3];
        for (int k = 0; k < 3; ++k) {
          const float a = theta + (float)k * (2.f * kPi / 3.f);
          vx[k] = cx + R * std::cos(a);
          vy[k] = cy + R * std::sin(a);
        }
        // Inside when on the same side of all three edges (vertices are counter-clockwise in the angle).
        for (int k = 0; k < 3; ++k) {
          const int n = (k + 1) % 3;
          const float e = (vx[n] - vx[k]) * (py - vy[k]) - (vy[n] - vy[k]) * (px - vx[k]);
          if (e < 0) return false;
        }
        return true;
      }
      default: {  // plus-shaped cross: two bars of length s and width s / 3
        const float t = s / 6.f;
        const float ax = std::fabs(dx), ay = std::fabs(dy);
        return (ax <= h && ay <= t) || (ax <= t && ay <= h);
      }
    }
  }
  // Pixels that can be covered: a square of side 1.2 s around the centre (triangle's circumradius 0.55 s).
  void extent(int H, int W, int& x0, int& y0, int& x1, int& y1) const {
    const float r = 0.6f * s + 1.f;
    x0 = std::max(0, (int)std::floor(cx - r));
    y0 = std::max(0, (int)std::floor(cy - r));
    x1 = std::min(W - 1, (int)std::ceil(cx + r));
    y1 = std::min(H - 1, (int)std::ceil(cy + r));
  }
};

// Background: one of four textures, values before noise.
void draw_background(Image& im, Rng& rng) {
  const int H = im.h, W = im.w;
  const float m = (float)std::min(H, W) / 256.f;
  const int kind = (int)rng.randint(0, 3);
  const Rgb c0 = random_rgb(rng, 30, 225);
  Rgb c1 = c0;
  for (float& x : c1.v) x = std::clamp(x + (float)rng.uniform(-70, 70), 0.f, 255.f);
  const float ang = (float)rng.uniform(0, 2 * kPi);
  const float ux = std::cos(ang), uy = std::sin(ang);
  const float period = (float)rng.uniform(6, 30) * m;
  // Grain: a gradient with a random grey offset per small block (a checkerboard would look like squares).
  const int cell = (int)rng.randint(2, 4);
  const int gw = (W + cell - 1) / cell, gh = (H + cell - 1) / cell;
  std::vector<float> grain;
  if (kind == 3) {
    grain.resize((size_t)gw * gh);
    for (float& g : grain) g = (float)rng.uniform(-25, 25);
  }
  constexpr int G = 6;
  Rgb grid[G][G];
  for (auto& row : grid)  // blotches vary around c0, so shapes stay the most salient thing
    for (Rgb& g : row)
      for (int k = 0; k < 3; ++k) g.v[k] = std::clamp(c0.v[k] + (float)rng.uniform(-60, 60), 0.f, 255.f);
  const float diag = std::sqrt((float)(H * H + W * W));
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < W; ++x) {
      float t = 0, offset = 0;  // blend weight of c1, grey offset
      Rgb c = c0;
      if (kind == 0 || kind == 3) {
        t = 0.5f + ((x - 0.5f * W) * ux + (y - 0.5f * H) * uy) / diag;
      } else if (kind == 1) {
        t = 0.5f + 0.5f * std::sin(2.f * kPi * (x * ux + y * uy) / period);
      } else if (kind == 2) {
        const float gx = (float)x / W * (G - 1), gy = (float)y / H * (G - 1);
        const int ix = std::min((int)gx, G - 2), iy = std::min((int)gy, G - 2);
        const float tx = gx - ix, ty = gy - iy;
        for (int k = 0; k < 3; ++k)
          c.v[k] = (grid[iy][ix].v[k] * (1 - tx) + grid[iy][ix + 1].v[k] * tx) * (1 - ty) +
                   (grid[iy + 1][ix].v[k] * (1 - tx) + grid[iy + 1][ix + 1].v[k] * tx) * ty;
      }
      if (kind == 3) offset = grain[(size_t)(y / cell) * gw + x / cell];
      for (int k = 0; k < 3; ++k) im.at(y, x, k) = (kind == 2 ? c.v[k] : c0.v[k] * (1 - t) + c1.v[k] * t) + offset;
    }
}

float colour_distance(const Rgb& a, const float* b) {
  float d = 0;
  for (int k = 0; k < 3; ++k) d += (a.v[k] - b[k]) * (a.v[k] - b[k]);
  return std::sqrt(d);
}

}  // namespace

const std::vector<std::string>& synthetic_det_classes() {
  static const std::vector<std::string> names = {"circle", "square", "triangle", "cross"};
  return names;
}

SyntheticDetImage draw_synthetic_det(int H, int W, uint64_t seed, int64_t index) {
  ENGINE_CHECK(H >= 32 && W >= 32 && H <= 8192 && W <= 8192,
               "synthetic detection set: height and width must be in 32..8192, got ", H, "x", W);
  Rng rng(mix_seed(seed, (uint64_t)index));
  SyntheticDetImage out;
  Image& im = out.image;
  im.h = H, im.w = W, im.c = 3;
  im.data.resize((size_t)H * W * 3);
  draw_background(im, rng);
  out.owner.assign((size_t)H * W, kNoOwner);
  const float m = (float)std::min(H, W) / 256.f;
  const int want = (int)rng.randint(1, kMaxObjects);
  std::vector<Shape> shapes;
  std::vector<int64_t> area, visible;  // per shape: mask pixels, pixels still on top
  std::vector<uint8_t> mask((size_t)H * W);
  for (int n = 0; n < want; ++n) {
    Shape sh;
    sh.cls = (int)rng.randint(0, 3);
    const bool small = rng.uniform() < 0.2;
    sh.s = std::max(10.f, (float)(small ? rng.uniform(12, 20) : rng.uniform(22, 72)) * m);
    sh.theta = (float)rng.uniform(0, 2 * kPi);
    const bool near = !shapes.empty() && rng.uniform() < 0.35;
    bool placed = false;
    int bx0 = 0, by0 = 0, bx1 = 0, by1 = 0;
    for (int attempt = 0; attempt < 50 && !placed; ++attempt) {
      const float lo = 0.6f * sh.s + 1.f;  // keeps the whole shape inside the image
      if (near && attempt < 25) {
        const Shape& o = shapes[(size_t)rng.randint(0, (int64_t)shapes.size() - 1)];
        const float reach = 0.5f * (o.s + sh.s);
        sh.cx = o.cx + (float)rng.uniform(-1, 1) * reach;
        sh.cy = o.cy + (float)rng.uniform(-1, 1) * reach;
      } else {
        sh.cx = (float)rng.uniform(lo, W - lo);
        sh.cy = (float)rng.uniform(lo, H - lo);
      }
      if (sh.cx < lo || sh.cx > W - lo || sh.cy < lo || sh.cy > H - lo) continue;
      int x0, y0, x1, y1;
      sh.extent(H, W, x0, y0, x1, y1);
      std::vector<int64_t> lost(shapes.size(), 0);
      int64_t count = 0;
      bx0 = W, by0 = H, bx1 = -1, by1 = -1;
      for (int y = y0; y <= y1; ++y)
        for (int x = x0; x <= x1; ++x) {
          const bool in = sh.covers((float)x + 0.5f, (float)y + 0.5f);
          mask[(size_t)y * W + x] = in;
          if (!in) continue;
          ++count;
          bx0 = std::min(bx0, x), bx1 = std::max(bx1, x), by0 = std::min(by0, y), by1 = std::max(by1, y);
          const uint8_t o = out.owner[(size_t)y * W + x];
          if (o != kNoOwner) ++lost[o];
        }
      bool ok = count >= 12;
      for (size_t o = 0; o < shapes.size() && ok; ++o)
        ok = (float)(visible[o] - lost[o]) >= kMinVisible * (float)area[o];
      if (!ok) {
        for (int y = y0; y <= y1; ++y) std::fill(&mask[(size_t)y * W + x0], &mask[(size_t)y * W + x1] + 1, 0);
        continue;
      }
      placed = true;
      for (size_t o = 0; o < shapes.size(); ++o) visible[o] -= lost[o];
      area.push_back(count);
      visible.push_back(count);
      // Colour: uniform RGB that stands out from what lies under the shape now.
      float under[3] = {0, 0, 0};
      for (int y = y0; y <= y1; ++y)
        for (int x = x0; x <= x1; ++x)
          if (mask[(size_t)y * W + x])
            for (int k = 0; k < 3; ++k) under[k] += im.at(y, x, k);
      for (float& u : under) u /= (float)count;
      Rgb col = random_rgb(rng, 0, 255), best = col;
      for (int t = 0; t < 30 && colour_distance(col, under) < 110.f; ++t) {
        col = random_rgb(rng, 0, 255);
        if (colour_distance(col, under) > colour_distance(best, under)) best = col;
      }
      if (colour_distance(col, under) < 110.f) col = best;
      const float sdir = (float)rng.uniform(0, 2 * kPi), samp = (float)rng.uniform(0, 0.15);
      const float sx = std::cos(sdir), sy = std::sin(sdir);
      const uint8_t id = (uint8_t)shapes.size();
      std::vector<uint8_t> full((size_t)H * W, 0);
      for (int y = y0; y <= y1; ++y)
        for (int x = x0; x <= x1; ++x) {
          if (!mask[(size_t)y * W + x]) continue;
          full[(size_t)y * W + x] = 1;
          out.owner[(size_t)y * W + x] = id;
          const float shade = 1.f + samp * ((x + 0.5f - sh.cx) * sx + (y + 0.5f - sh.cy) * sy) / (0.5f * sh.s);
          for (int k = 0; k < 3; ++k) im.at(y, x, k) = col.v[k] * shade;
          mask[(size_t)y * W + x] = 0;
        }
      shapes.push_back(sh);
      out.masks.push_back(std::move(full));
      out.boxes.push_back({bx0, by0, bx1, by1});
      out.classes.push_back(sh.cls);
    }
  }
  // Pixel noise, then integers 0..255 (what the JPEG encoder rounds to anyway).
  const float sigma = (float)rng.uniform(2, 8);
  for (float& v : im.data) v = std::clamp(std::nearbyint(v + sigma * gauss(rng)), 0.f, 255.f);
  return out;
}

namespace {

std::string sample_name(int i) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%04d", i);
  return buf;
}

void write_text(const fs::path& p, const std::string& text) {
  std::ofstream f(p, std::ios::trunc);
  f << text;
  f.close();
  if (!f) fail(p.string(), ": cannot write file");
}

std::string voc_xml(const std::string& name, const SyntheticDetImage& d) {
  std::ostringstream x;
  x << "<annotation>\n  <folder>JPEGImages</folder>\n  <filename>" << name << ".jpg</filename>\n"
    << "  <source><database>engine synthetic shapes</database></source>\n"
    << "  <size>\n    <width>" << d.image.w << "</width>\n    <height>" << d.image.h << "</height>\n"
    << "    <depth>3</depth>\n  </size>\n  <segmented>0</segmented>\n";
  for (size_t i = 0; i < d.boxes.size(); ++i) {
    const auto& b = d.boxes[i];
    x << "  <object>\n    <name>" << synthetic_det_classes()[(size_t)d.classes[i]] << "</name>\n"
      << "    <pose>Unspecified</pose>\n    <truncated>0</truncated>\n    <difficult>0</difficult>\n"
      << "    <bndbox>\n      <xmin>" << b[0] << "</xmin>\n      <ymin>" << b[1] << "</ymin>\n"
      << "      <xmax>" << b[2] << "</xmax>\n      <ymax>" << b[3] << "</ymax>\n    </bndbox>\n  </object>\n";
  }
  x << "</annotation>\n";
  return x.str();
}

}  // namespace

void generate_synthetic_det(const SyntheticDetSpec& spec) {
  ENGINE_CHECK(!spec.root.empty(), "synthetic detection set: root must not be empty");
  ENGINE_CHECK(spec.train >= 1 && spec.val >= 0, "synthetic detection set: train must be >= 1 and val >= 0, got ",
               spec.train, "/", spec.val);
  ENGINE_CHECK(spec.height >= 32 && spec.width >= 32 && spec.height <= 8192 && spec.width <= 8192,
               "synthetic detection set: height and width must be in 32..8192, got ", spec.height, "x", spec.width);
  const fs::path root(spec.root);
  const fs::path marker = root / kSyntheticDetMarker;
  std::error_code ec;
  if (fs::exists(root)) {
    ENGINE_CHECK(fs::is_directory(root), spec.root, ": exists and is not a directory");
    const bool empty = fs::directory_iterator(root) == fs::directory_iterator();
    if (!empty && !fs::exists(marker))
      fail(spec.root,
           ": refusing to write the synthetic detection set into a non-empty directory it did not create (no ",
           kSyntheticDetMarker, " marker); use an empty or new directory");
    // Our own earlier output: replace it.
    fs::remove_all(root / "JPEGImages", ec);
    fs::remove_all(root / "Annotations", ec);
    for (const char* f : {"train_list.txt", "val_list.txt", "labels.txt"}) fs::remove(root / f, ec);
  }
  fs::create_directories(root / "JPEGImages", ec);
  fs::create_directories(root / "Annotations", ec);
  ENGINE_CHECK(fs::is_directory(root / "JPEGImages") && fs::is_directory(root / "Annotations"), spec.root,
               ": cannot create the JPEGImages/ and Annotations/ folders (", ec.message(), ")");
  write_text(marker, "engine synthetic shapes (detection) v1\nseed " + std::to_string(spec.seed) + "\nsize " +
                         std::to_string(spec.height) + "x" + std::to_string(spec.width) + "\nsplits " +
                         std::to_string(spec.train) + "/" + std::to_string(spec.val) + "\n");
  std::string labels;
  for (const std::string& n : synthetic_det_classes()) labels += n + "\n";
  write_text(root / "labels.txt", labels);
  std::string lists[2];
  for (int i = 0; i < spec.train + spec.val; ++i) {
    const SyntheticDetImage d = draw_synthetic_det(spec.height, spec.width, spec.seed, i);
    const std::string name = sample_name(i);
    write_jpeg((root / "JPEGImages" / (name + ".jpg")).string(), d.image, 95);
    write_text(root / "Annotations" / (name + ".xml"), voc_xml(name, d));
    lists[i < spec.train ? 0 : 1] += "JPEGImages/" + name + ".jpg Annotations/" + name + ".xml\n";
  }
  write_text(root / "train_list.txt", lists[0]);
  write_text(root / "val_list.txt", lists[1]);
}

}  // namespace engine::data
