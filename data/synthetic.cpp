// Synthetic fundus-like optic-disc set (see synthetic.h for the layout and guarantees).
// Every random number comes from Rng(mix_seed(seed, index)); the drawing is plain float math on the
// CPU, so the same seed gives the same files. Floating-point contraction is off so that FMA
// availability (-march=native differs between machines) does not change the pixels.
// Tested by tests/test_data.cpp.
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif
#include "data/synthetic.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <vector>

#include "base/error.h"
#include "data/image_io.h"
#include "data/transforms.h"

namespace engine::data {
namespace fs = std::filesystem;

namespace {

constexpr float kPi = 3.14159265358979f;

float smoothstep(float e0, float e1, float x) {
  const float t = std::clamp((x - e0) / (e1 - e0), 0.f, 1.f);
  return t * t * (3.f - 2.f * t);
}

// Approximately normal noise (sum of 3 uniforms: variance 1/4 -> scaled to 1).
float gauss(Rng& rng) { return (float)((rng.uniform() + rng.uniform() + rng.uniform() - 1.5) * 2.0); }

struct Fundus {
  Image image;
  Label label;
};

Fundus draw_fundus(int H, int W, int ring, Rng& rng) {
  const float m = (float)std::min(H, W);
  // Retina field.
  const float fcx = W * 0.5f + (float)rng.uniform(-0.03, 0.03) * m;
  const float fcy = H * 0.5f + (float)rng.uniform(-0.03, 0.03) * m;
  const float fr = (float)rng.uniform(0.42, 0.48) * m;
  const float base[3] = {(float)rng.uniform(150, 200), (float)rng.uniform(60, 100), (float)rng.uniform(25, 50)};
  const float bg = (float)rng.uniform(6, 18);
  // Optic disc: an ellipse well inside the field.
  const float da = (float)rng.uniform(0.07, 0.12) * m;  // semi-axis
  const float db = da * (float)rng.uniform(0.8, 1.2);   // other semi-axis
  const float theta = (float)rng.uniform(0, kPi);
  const float dist = (float)rng.uniform(0.1, 0.5) * fr;
  const float ang = (float)rng.uniform(0, 2 * kPi);
  const float dcx = fcx + dist * std::cos(ang), dcy = fcy + dist * std::sin(ang);
  const float ct = std::cos(theta), st = std::sin(theta);
  // The disc is a blend of the retina colour and a bright yellow-white, of random strength, so its
  // contrast varies between images (and overlaps with the brightest lesions).
  const float bright[3] = {(float)rng.uniform(235, 255), (float)rng.uniform(205, 235), (float)rng.uniform(130, 180)};
  const float strength_disc = (float)rng.uniform(0.45, 0.9);
  float disc_col[3];
  for (int k = 0; k < 3; ++k) disc_col[k] = base[k] + strength_disc * (bright[k] - base[k]);
  // Uneven illumination: a linear gradient across the field.
  const float ill_dir = (float)rng.uniform(0, 2 * kPi), ill_amp = (float)rng.uniform(0.0, 0.25);
  // Normalised elliptical distance: < 1 inside the disc.
  auto disc_d = [&](float x, float y) {
    const float dx = x - dcx, dy = y - dcy;
    const float u = (dx * ct + dy * st) / da, v = (-dx * st + dy * ct) / db;
    return std::sqrt(u * u + v * v);
  };
  // Low-frequency texture: a 9x9 grid of random values, bilinearly interpolated.
  constexpr int G = 9;
  float grid[G][G];
  for (auto& row : grid)
    for (float& g : row) g = (float)rng.uniform(-1, 1);

  // Vessels: random walks leaving the disc, stamped into a darkness map.
  std::vector<float> vessel((size_t)H * W, 0.f);
  const int nv = (int)rng.randint(6, 10);
  for (int v = 0; v < nv; ++v) {
    float x = dcx, y = dcy;
    float dir = (float)rng.uniform(0, 2 * kPi);
    float width = (float)rng.uniform(1.5, 3.0) * m / 256.f;
    const int steps = (int)rng.randint(25, 45);
    const float step = m / 60.f;
    const float strength = (float)rng.uniform(0.35, 0.6);
    for (int s = 0; s < steps; ++s) {
      dir += (float)rng.uniform(-0.35, 0.35);
      const float nx = x + step * std::cos(dir), ny = y + step * std::sin(dir);
      // Stamp discs along the segment every pixel.
      const int n = std::max(1, (int)std::ceil(step));
      for (int k = 0; k <= n; ++k) {
        const float px = x + (nx - x) * k / n, py = y + (ny - y) * k / n;
        const int r = (int)std::ceil(width) + 1;
        for (int yy = std::max(0, (int)py - r); yy <= std::min(H - 1, (int)py + r); ++yy)
          for (int xx = std::max(0, (int)px - r); xx <= std::min(W - 1, (int)px + r); ++xx) {
            const float d = std::sqrt((xx - px) * (xx - px) + (yy - py) * (yy - py));
            const float a = strength * (1.f - smoothstep(width * 0.5f, width * 0.5f + 1.f, d));
            float& cell = vessel[(size_t)yy * W + xx];
            cell = std::max(cell, a);
          }
      }
      x = nx, y = ny;
      width = std::max(0.8f, width * 0.97f);
    }
  }
  // Distractors: small bright spots (exudate-like), not part of the label.
  struct Spot {
    float x, y, r, a;
  };
  std::vector<Spot> spots;
  const int ns = (int)rng.randint(0, 6);
  for (int i = 0; i < ns; ++i) {
    const float sa = (float)rng.uniform(0, 2 * kPi), sd = (float)rng.uniform(0.1, 0.85) * fr;
    spots.push_back(Spot{fcx + sd * std::cos(sa), fcy + sd * std::sin(sa), (float)rng.uniform(2.0, 7.0) * m / 256.f,
                         (float)rng.uniform(0.3, 0.8)});
  }
  const float gain = (float)rng.uniform(0.7, 1.2);
  const float noise = (float)rng.uniform(2.0, 6.0);

  Fundus f;
  Image& im = f.image;
  im.h = H, im.w = W, im.c = 3;
  im.data.resize((size_t)H * W * 3);
  f.label.h = H, f.label.w = W;
  f.label.data.assign((size_t)H * W, 0);
  for (int y = 0; y < H; ++y) {
    for (int x = 0; x < W; ++x) {
      const float gx = (float)x / W * (G - 1), gy = (float)y / H * (G - 1);
      const int ix = std::min((int)gx, G - 2), iy = std::min((int)gy, G - 2);
      const float tx = gx - ix, ty = gy - iy;
      const float tex = (grid[iy][ix] * (1 - tx) + grid[iy][ix + 1] * tx) * (1 - ty) +
                        (grid[iy + 1][ix] * (1 - tx) + grid[iy + 1][ix + 1] * tx) * ty;
      const float r = std::sqrt((x - fcx) * (x - fcx) + (y - fcy) * (y - fcy)) / fr;
      const float inside = 1.f - smoothstep(0.97f, 1.01f, r);
      const float ill = 1.f + ill_amp * ((x - fcx) * std::cos(ill_dir) + (y - fcy) * std::sin(ill_dir)) / fr;
      const float vign = (1.f - 0.4f * r * r) * ill;
      const float d = disc_d((float)x, (float)y);
      const float disc = 1.f - smoothstep(0.8f, 1.15f, d);
      const float ves = vessel[(size_t)y * W + x] * (1.f - 0.5f * disc);
      float spot = 0.f;
      for (const Spot& s : spots) {
        const float d2 = (x - s.x) * (x - s.x) + (y - s.y) * (y - s.y);
        if (d2 < s.r * s.r) spot = std::max(spot, s.a * (1.f - smoothstep(s.r * 0.6f, s.r, std::sqrt(d2))));
      }
      for (int k = 0; k < 3; ++k) {
        float v = base[k] * vign * (1.f + 0.08f * tex);
        v = v * (1.f - spot) + bright[k] * vign * spot;
        v = v * (1.f - disc) + disc_col[k] * vign * (1.f - 0.06f * d) * disc;
        v *= 1.f - ves;
        v = v * inside + (bg * (1.f + 0.3f * tex)) * (1.f - inside);
        im.data[((size_t)y * W + x) * 3 + k] = v;
      }
      if (d < 1.f) f.label.data[(size_t)y * W + x] = 1;
    }
  }
  // Blur (separable [1 2 1]/4, edges clamped), then noise and global brightness.
  std::vector<float> tmp(im.data.size());
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < W; ++x)
      for (int k = 0; k < 3; ++k) {
        const int xl = std::max(0, x - 1), xr = std::min(W - 1, x + 1);
        tmp[((size_t)y * W + x) * 3 + k] = 0.25f * im.data[((size_t)y * W + xl) * 3 + k] +
                                           0.5f * im.data[((size_t)y * W + x) * 3 + k] +
                                           0.25f * im.data[((size_t)y * W + xr) * 3 + k];
      }
  for (int y = 0; y < H; ++y) {
    const int yu = std::max(0, y - 1), yd = std::min(H - 1, y + 1);
    for (int x = 0; x < W; ++x)
      for (int k = 0; k < 3; ++k) {
        const float v = 0.25f * tmp[((size_t)yu * W + x) * 3 + k] + 0.5f * tmp[((size_t)y * W + x) * 3 + k] +
                        0.25f * tmp[((size_t)yd * W + x) * 3 + k];
        im.data[((size_t)y * W + x) * 3 + k] = std::clamp(v * gain + noise * gauss(rng), 0.f, 255.f);
      }
  }
  // Ignore ring: pixels within `ring` (Chebyshev distance) of the other class, on both sides.
  if (ring > 0) {
    const Label lab = f.label;
    const int x0 = std::max(0, (int)(dcx - std::max(da, db)) - ring - 2);
    const int x1 = std::min(W - 1, (int)(dcx + std::max(da, db)) + ring + 2);
    const int y0 = std::max(0, (int)(dcy - std::max(da, db)) - ring - 2);
    const int y1 = std::min(H - 1, (int)(dcy + std::max(da, db)) + ring + 2);
    for (int y = y0; y <= y1; ++y)
      for (int x = x0; x <= x1; ++x) {
        const uint8_t c = lab.at(y, x);
        bool border = false;
        for (int yy = std::max(0, y - ring); yy <= std::min(H - 1, y + ring) && !border; ++yy)
          for (int xx = std::max(0, x - ring); xx <= std::min(W - 1, x + ring); ++xx)
            if (lab.at(yy, xx) != c) {
              border = true;
              break;
            }
        if (border) f.label.at(y, x) = 255;
      }
  }
  return f;
}

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

}  // namespace

void generate_synthetic_fundus(const SyntheticSpec& spec) {
  ENGINE_CHECK(!spec.root.empty(), "synthetic data set: root must not be empty");
  ENGINE_CHECK(spec.train >= 0 && spec.val >= 0 && spec.test >= 0 && spec.train + spec.val + spec.test > 0,
               "synthetic data set: train/val/test counts must be >= 0 and not all 0, got ", spec.train, "/", spec.val,
               "/", spec.test);
  ENGINE_CHECK(spec.height >= 32 && spec.width >= 32 && spec.height <= 8192 && spec.width <= 8192,
               "synthetic data set: height and width must be in 32..8192, got ", spec.height, "x", spec.width);
  ENGINE_CHECK(spec.ignore_ring >= 0 && spec.ignore_ring <= 8, "synthetic data set: ignore_ring must be in 0..8, got ",
               spec.ignore_ring);
  const fs::path root(spec.root);
  const fs::path marker = root / kSyntheticMarker;
  std::error_code ec;
  if (fs::exists(root)) {
    ENGINE_CHECK(fs::is_directory(root), spec.root, ": exists and is not a directory");
    const bool empty = fs::directory_iterator(root) == fs::directory_iterator();
    if (!empty && !fs::exists(marker))
      fail(spec.root, ": refusing to write the synthetic data set into a non-empty directory it did not create (no ",
           kSyntheticMarker, " marker); use an empty or new directory");
    // Our own earlier output: replace it.
    fs::remove_all(root / "images", ec);
    fs::remove_all(root / "labels", ec);
    for (const char* f : {"train_list.txt", "val_list.txt", "test_list.txt"}) fs::remove(root / f, ec);
  }
  fs::create_directories(root / "images", ec);
  fs::create_directories(root / "labels", ec);
  ENGINE_CHECK(fs::is_directory(root / "images") && fs::is_directory(root / "labels"), spec.root,
               ": cannot create the images/ and labels/ folders (", ec.message(), ")");
  write_text(marker, "engine synthetic fundus v1\nseed " + std::to_string(spec.seed) + "\nsize " +
                         std::to_string(spec.height) + "x" + std::to_string(spec.width) + "\nsplits " +
                         std::to_string(spec.train) + "/" + std::to_string(spec.val) + "/" + std::to_string(spec.test) +
                         "\nignore_ring " + std::to_string(spec.ignore_ring) + "\n");
  std::string lists[3];
  const int total = spec.train + spec.val + spec.test;
  for (int i = 0; i < total; ++i) {
    Rng rng(mix_seed(spec.seed, (uint64_t)i));
    const Fundus f = draw_fundus(spec.height, spec.width, spec.ignore_ring, rng);
    const std::string name = sample_name(i);
    write_jpeg((root / "images" / (name + ".jpg")).string(), f.image, 92);
    write_png((root / "labels" / (name + ".png")).string(), f.label);
    const int split = i < spec.train ? 0 : i < spec.train + spec.val ? 1 : 2;
    lists[split] += "images/" + name + ".jpg labels/" + name + ".png\n";
  }
  write_text(root / "train_list.txt", lists[0]);
  write_text(root / "val_list.txt", lists[1]);
  if (spec.test > 0) write_text(root / "test_list.txt", lists[2]);
}

}  // namespace engine::data
