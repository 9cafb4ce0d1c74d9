// labels: data sanitize tsan
// data/: PNG/JPEG I/O and its errors, each PaddleSeg transform against hand-computed values (incl.
// PIL's truncating arithmetic), Python's strip/split (base/text.h), transform spec validation, Dataset/Cityscapes
// parsing, the loader's determinism (workers, seek, epochs) and error propagation, and the synthetic fundus generator.
// Files are written under std::filesystem::temp_directory_path().
#include <gtest/gtest.h>
#include <png.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "base/error.h"
#include "base/text.h"
#include "data/color_map.h"
#include "data/dataset.h"
#include "data/image_io.h"
#include "data/loader.h"
#include "data/synthetic.h"
#include "data/transforms.h"

using namespace engine;
using namespace engine::data;
namespace fs = std::filesystem;

namespace {

// A fresh directory per test, removed afterwards.
class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = fs::temp_directory_path() /
            ("engine_test_data_" + std::to_string(::getpid()) + "_" + info->test_suite_name() + "_" + info->name());
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string operator/(const std::string& rel) const { return (path_ / rel).string(); }
  std::string str() const { return path_.string(); }

 private:
  fs::path path_;
};

// Runs f, expects an engine::Error whose message contains every one of `parts`.
template <class F>
void expect_error(F&& f, std::initializer_list<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "no error thrown; expected one mentioning '" << *parts.begin() << "'";
  } catch (const engine::Error& e) {
    const std::string msg = e.what();
    for (const std::string& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "message is not one line: " << msg;
  }
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), (std::streamsize)bytes.size());
}
std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

Image make_image(int h, int w, int c, float (*fn)(int y, int x, int k)) {
  Image im;
  im.h = h, im.w = w, im.c = c;
  im.data.resize((size_t)h * w * c);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int k = 0; k < c; ++k) im.at(y, x, k) = fn(y, x, k);
  return im;
}
Image filled(int h, int w, float v) {
  Image im;
  im.h = h, im.w = w, im.c = 3;
  im.data.assign((size_t)h * w * 3, v);
  return im;
}
Label make_label(int h, int w, uint8_t (*fn)(int y, int x)) {
  Label l;
  l.h = h, l.w = w;
  l.data.resize((size_t)h * w);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) l.at(y, x) = fn(y, x);
  return l;
}

// A PNG of any simplified-API format (RGBA, gray+alpha, 16-bit), written with libpng directly.
void write_png_format(const std::string& path, int w, int h, png_uint_32 format, const void* data) {
  png_image im;
  std::memset(&im, 0, sizeof im);
  im.version = PNG_IMAGE_VERSION;
  im.width = (png_uint_32)w;
  im.height = (png_uint_32)h;
  im.format = format;
  ASSERT_TRUE(png_image_write_to_file(&im, path.c_str(), 0, data, 0, nullptr)) << im.message;
}

TransformSpec spec(const std::string& type, std::map<std::string, std::vector<double>> args = {},
                   const std::string& where = "train_dataset.transforms[0]") {
  return TransformSpec{type, std::move(args), where, {}};
}

Sample apply_one(const TransformSpec& s, Sample sample, uint64_t seed = 1, int64_t ignore_index = 255) {
  Pipeline p = build_pipeline({s}, ignore_index);
  Rng rng(seed);
  p.apply(sample, rng);
  return sample;
}

Sample sample_of(Image im, Label lab) {
  Sample s;
  s.image = std::move(im);
  s.label = std::move(lab);
  s.has_label = true;
  return s;
}

}  // namespace

// ================================================================================== image I/O
// Python: ' \ta b\r\n'.strip() == 'a b'; 'a,,b,'.split(',') == ['a', '', 'b', '']; ' a \t b\n'.split() == ['a', 'b'].
TEST(Text, PythonStripAndSplit) {
  using engine::text::split;
  using engine::text::split_whitespace;
  using engine::text::strip;
  EXPECT_EQ(strip(" \ta b\r\n"), "a b");
  EXPECT_EQ(strip("\v\f"), "");
  EXPECT_EQ(strip(""), "");
  EXPECT_EQ(strip("\xC2\xA0x"), "\xC2\xA0x");  // a UTF-8 no-break space is not ASCII whitespace
  EXPECT_EQ(split("a,,b,", ","), (std::vector<std::string>{"a", "", "b", ""}));
  EXPECT_EQ(split("a b", ","), (std::vector<std::string>{"a b"}));
  EXPECT_EQ(split("", " "), (std::vector<std::string>{""}));
  EXPECT_EQ(split("x<>y<>", "<>"), (std::vector<std::string>{"x", "y", ""}));
  EXPECT_EQ(split_whitespace(" a \t b\n"), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(split_whitespace(" \n "), (std::vector<std::string>{}));
  EXPECT_EQ(split_whitespace("one"), (std::vector<std::string>{"one"}));
}

// PaddleSeg's get_color_map_list(256)[3:] by hand: class k takes the bits of k + 1.
TEST(ColorMap, PaddleSegsPalette) {
  using C = std::array<uint8_t, 3>;
  const auto map = engine::data::seg_color_map(256);
  ASSERT_EQ(map.size(), 256u);
  EXPECT_EQ(map[0], (C{128, 0, 0}));      // label 1 = 0b001
  EXPECT_EQ(map[1], (C{0, 128, 0}));      // 2 = 0b010
  EXPECT_EQ(map[2], (C{128, 128, 0}));    // 3
  EXPECT_EQ(map[3], (C{0, 0, 128}));      // 4
  EXPECT_EQ(map[6], (C{128, 128, 128}));  // 7
  EXPECT_EQ(map[7], (C{64, 0, 0}));       // 8 = 0b001_000: the second group one bit lower
  EXPECT_EQ(map[20], (C{128, 64, 128}));  // 21 = 0b010_101: 101 -> R, B at bit 7; 010 -> G at bit 6
  EXPECT_EQ(map[255], (C{0, 0, 32}));     // 256 = 0b100_000_000
  // --custom_color 0 0 0 255 255 255: classes 0 and 1 replaced, the rest unchanged.
  const auto custom = engine::data::seg_color_map(256, {0, 0, 0, 255, 255, 255});
  EXPECT_EQ(custom[0], (C{0, 0, 0}));
  EXPECT_EQ(custom[1], (C{255, 255, 255}));
  EXPECT_EQ(custom[2], map[2]);
  expect_error([] { engine::data::seg_color_map(4, {1, 2}); }, {"whole R G B triples", "2 values"});
  expect_error([] { engine::data::seg_color_map(4, {1, 2, 300}); }, {"0..255", "300"});
}

TEST(ImageIo, PngRgbRoundTripIsExact) {
  TempDir d;
  const Image im = make_image(5, 7, 3, [](int y, int x, int k) { return (float)((y * 37 + x * 11 + k * 80) % 256); });
  write_png(d / "rgb.png", im);
  const Image back = read_image(d / "rgb.png");
  ASSERT_EQ(back.h, 5);
  ASSERT_EQ(back.w, 7);
  ASSERT_EQ(back.c, 3);
  EXPECT_EQ(back.data, im.data);
}

TEST(ImageIo, GrayPngBecomesThreeEqualChannelsAndReadsAsLabel) {
  TempDir d;
  const Image g = make_image(4, 6, 1, [](int y, int x, int) { return (float)(y * 6 + x); });
  write_png(d / "gray.png", g);
  const Image back = read_image(d / "gray.png");
  ASSERT_EQ(back.c, 3);
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 6; ++x)
      for (int k = 0; k < 3; ++k) EXPECT_EQ(back.at(y, x, k), (float)(y * 6 + x));
  const Label l = read_label(d / "gray.png");
  ASSERT_EQ(l.h, 4);
  ASSERT_EQ(l.w, 6);
  EXPECT_EQ(l.at(3, 5), 23);
}

TEST(ImageIo, PaletteLabelGivesIndicesNotColours) {
  TempDir d;
  const Label lab = make_label(3, 4, [](int y, int x) { return (uint8_t)((y + x) % 3); });
  const std::vector<std::array<uint8_t, 3>> pal = {{{200, 10, 10}}, {{10, 200, 10}}, {{10, 10, 200}}};
  write_png(d / "pal.png", lab, pal);
  const Label back = read_label(d / "pal.png");
  EXPECT_EQ(back.data, lab.data);
  // As an image the same file shows the palette colours.
  const Image im = read_image(d / "pal.png");
  EXPECT_EQ(im.at(0, 1, 1), 200.f);  // index 1 = green
  EXPECT_EQ(im.at(0, 0, 0), 200.f);  // index 0 = red
  // A gray label round trip, including the ignore value.
  Label g = lab;
  g.at(0, 0) = 255;
  write_png(d / "g.png", g);
  EXPECT_EQ(read_label(d / "g.png").data, g.data);
  expect_error([&] { write_png(d / "bad.png", g, pal); }, {"bad.png", "255", "palette"});
}

TEST(ImageIo, JpegRoundTripIsClose) {
  TempDir d;
  const Image im = make_image(16, 24, 3, [](int y, int x, int k) { return (float)(40 + 6 * y + 4 * x + 20 * k); });
  write_jpeg(d / "a.jpg", im, 95);
  const Image back = read_image(d / "a.jpg");
  ASSERT_EQ(back.h, 16);
  ASSERT_EQ(back.w, 24);
  float worst = 0;
  for (size_t i = 0; i < im.data.size(); ++i) worst = std::max(worst, std::fabs(back.data[i] - im.data[i]));
  EXPECT_LE(worst, 8.f);
  // Gray JPEG -> three equal channels.
  const Image g = make_image(8, 8, 1, [](int y, int x, int) { return (float)(20 * y + 5 * x); });
  write_jpeg(d / "g.jpg", g, 90);
  const Image gb = read_image(d / "g.jpg");
  ASSERT_EQ(gb.c, 3);
  for (int y = 0; y < 8; ++y)
    for (int x = 0; x < 8; ++x) {
      EXPECT_EQ(gb.at(y, x, 0), gb.at(y, x, 1));
      EXPECT_EQ(gb.at(y, x, 0), gb.at(y, x, 2));
    }
  expect_error([&] { write_jpeg(d / "q.jpg", im, 0); }, {"q.jpg", "quality"});
}

TEST(ImageIo, AlphaIsDroppedAndGrayAlphaExpands) {
  TempDir d;
  const std::vector<uint8_t> rgba = {10, 20, 30, 0, 40, 50, 60, 255};  // 2x1, first pixel transparent
  write_png_format(d / "rgba.png", 2, 1, PNG_FORMAT_RGBA, rgba.data());
  const Image im = read_image(d / "rgba.png");
  ASSERT_EQ(im.c, 3);
  EXPECT_EQ(im.data, (std::vector<float>{10, 20, 30, 40, 50, 60}));  // not composited, as cv2
  const std::vector<uint8_t> ga = {7, 128, 9, 255};
  write_png_format(d / "ga.png", 2, 1, PNG_FORMAT_GA, ga.data());
  EXPECT_EQ(read_image(d / "ga.png").data, (std::vector<float>{7, 7, 7, 9, 9, 9}));
  // Labels must be single-channel: RGBA, gray+alpha are errors too.
  expect_error([&] { read_label(d / "rgba.png"); }, {"rgba.png", "RGBA", "single-channel"});
  expect_error([&] { read_label(d / "ga.png"); }, {"ga.png", "single-channel"});
}

TEST(ImageIo, RgbLabelIsAnErrorNamingTheFile) {
  TempDir d;
  write_png(d / "rgb_label.png", filled(3, 3, 1.f));
  expect_error([&] { read_label(d / "rgb_label.png"); }, {"rgb_label.png", "RGB", "single-channel"});
  write_jpeg(d / "label.jpg", filled(8, 8, 1.f));
  expect_error([&] { read_label(d / "label.jpg"); }, {"label.jpg", "PNG"});
}

TEST(ImageIo, SixteenBitLabelIsUnsupported) {
  TempDir d;
  const std::vector<uint16_t> px = {0, 1, 2, 3};
  write_png_format(d / "l16.png", 2, 2, PNG_FORMAT_LINEAR_Y, px.data());
  expect_error([&] { read_label(d / "l16.png"); }, {"l16.png", "bit depth 16"});
  // As an image, 16-bit keeps the high byte (cv2.imread's 8-bit conversion).
  const std::vector<uint16_t> hi = {0, 256 * 10 + 5, 65535, 256 * 200};
  write_png_format(d / "i16.png", 4, 1, PNG_FORMAT_LINEAR_Y, hi.data());
  EXPECT_EQ(read_image(d / "i16.png").data, (std::vector<float>{0, 0, 0, 10, 10, 10, 255, 255, 255, 200, 200, 200}));
}

TEST(ImageIo, PaletteWithTransparencyDropsAlpha) {
  TempDir d;
  // A colour-mapped PNG whose palette has alpha (written as PLTE + tRNS).
  const std::vector<uint8_t> cmap = {250, 0, 0, 0, 0, 250, 0, 128};  // RGBA entries: transparent red, green
  const std::vector<uint8_t> idx = {0, 1, 1, 0};
  png_image im;
  std::memset(&im, 0, sizeof im);
  im.version = PNG_IMAGE_VERSION;
  im.width = 2;
  im.height = 2;
  im.format = PNG_FORMAT_RGBA_COLORMAP;
  im.colormap_entries = 2;
  ASSERT_TRUE(png_image_write_to_file(&im, (d / "trns.png").c_str(), 0, idx.data(), 0, cmap.data())) << im.message;
  const Image rgb = read_image(d / "trns.png");
  ASSERT_EQ(rgb.c, 3);
  EXPECT_EQ(rgb.at(0, 1, 1), 250.f);
  EXPECT_EQ(read_label(d / "trns.png").data, idx);
  expect_error([&] { read_image(d.str()); }, {"is a directory"});
}

TEST(ImageIo, MissingCorruptAndTruncatedFilesAreErrorsNamingTheFile) {
  TempDir d;
  expect_error([&] { read_image(d / "nope.png"); }, {"nope.png", "cannot open"});
  expect_error([&] { read_label(d / "nope_label.png"); }, {"nope_label.png", "cannot open"});
  write_bytes(d / "empty.png", {});
  expect_error([&] { read_image(d / "empty.png"); }, {"empty.png", "empty"});
  write_bytes(d / "text.png", {'h', 'e', 'l', 'l', 'o', ' ', 'w', 'o', 'r', 'l', 'd'});
  expect_error([&] { read_image(d / "text.png"); }, {"text.png", "not a PNG or JPEG"});

  const Image im = make_image(32, 32, 3, [](int y, int x, int k) { return (float)((y * 7 + x * 13 + k * 5) % 256); });
  write_png(d / "ok.png", im);
  std::vector<uint8_t> png = read_bytes(d / "ok.png");
  write_bytes(d / "trunc.png", std::vector<uint8_t>(png.begin(), png.begin() + png.size() / 2));
  expect_error([&] { read_image(d / "trunc.png"); }, {"trunc.png", "corrupt or truncated PNG"});
  expect_error([&] { read_label(d / "trunc.png"); }, {"trunc.png"});
  std::vector<uint8_t> bad = png;
  for (size_t i = 60; i < 80 && i < bad.size(); ++i) bad[i] ^= 0x5A;  // inside IDAT: CRC/zlib error
  write_bytes(d / "corrupt.png", bad);
  expect_error([&] { read_image(d / "corrupt.png"); }, {"corrupt.png", "PNG"});

  write_jpeg(d / "ok.jpg", im, 90);
  std::vector<uint8_t> jpg = read_bytes(d / "ok.jpg");
  write_bytes(d / "trunc.jpg", std::vector<uint8_t>(jpg.begin(), jpg.begin() + jpg.size() * 2 / 3));
  expect_error([&] { read_image(d / "trunc.jpg"); }, {"trunc.jpg", "JPEG"});
  write_bytes(d / "head.jpg", std::vector<uint8_t>(jpg.begin(), jpg.begin() + 40));
  expect_error([&] { read_image(d / "head.jpg"); }, {"head.jpg", "JPEG"});
}

// ================================================================================== resampling
TEST(Transforms, BilinearMatchesOpenCvHalfPixelMapping) {
  // Row [0 10 20 30] -> 2 wide: sources 0.5 and 2.5 -> 5, 25.
  Image row = make_image(1, 4, 1, [](int, int x, int) { return 10.f * x; });
  EXPECT_EQ(resize_bilinear(row, 1, 2).data, (std::vector<float>{5, 25}));
  // [0 10] -> 4 wide: sources -0.25 (clamped), 0.25, 0.75, 1.25 (clamped) -> 0, 2.5, 7.5, 10.
  Image two = make_image(1, 2, 1, [](int, int x, int) { return 10.f * x; });
  EXPECT_EQ(resize_bilinear(two, 1, 4).data, (std::vector<float>{0, 2.5f, 7.5f, 10}));
  // 2x2 -> 4x4: output (1,1) samples (0.25, 0.25): 0.75*0.75*a + 0.75*0.25*b + 0.25*0.75*c + 0.25*0.25*d.
  Image sq = make_image(2, 2, 3, [](int y, int x, int k) { return (float)(y * 2 + x) * 16.f + k; });
  const Image up = resize_bilinear(sq, 4, 4);
  EXPECT_FLOAT_EQ(up.at(1, 1, 0), 0.5625f * 0 + 0.1875f * 16 + 0.1875f * 32 + 0.0625f * 48);
  EXPECT_FLOAT_EQ(up.at(0, 0, 2), 2.f);       // corner clamps to the corner pixel
  EXPECT_FLOAT_EQ(up.at(3, 3, 1), 48.f + 1);  // and the far corner
  EXPECT_FLOAT_EQ(up.at(0, 1, 0), 4.f);       // row 0: 0.75*0 + 0.25*16
}

TEST(Transforms, NearestMatchesOpenCvFloorMapping) {
  Label l = make_label(1, 5, [](int, int x) { return (uint8_t)x; });
  EXPECT_EQ(resize_nearest(l, 1, 3).data, (std::vector<uint8_t>{0, 1, 3}));  // floor(x * 5/3)
  Label two = make_label(2, 2, [](int y, int x) { return (uint8_t)(y * 2 + x); });
  const Label up = resize_nearest(two, 2, 5);  // floor(x * 0.4) = 0 0 0 1 1
  EXPECT_EQ(up.data, (std::vector<uint8_t>{0, 0, 0, 1, 1, 2, 2, 2, 3, 3}));
}

TEST(Transforms, PythonRoundIsHalfToEven) {
  EXPECT_EQ(python_round(2.5), 2);
  EXPECT_EQ(python_round(3.5), 4);
  EXPECT_EQ(python_round(1.5), 2);
  EXPECT_EQ(python_round(0.5), 0);
  EXPECT_EQ(python_round(2.6), 3);
}

// ================================================================================== ResizeStepScaling
TEST(Transforms, StepScalingCandidatesAreNumpyLinspace) {
  const auto c = step_scaling_candidates(0.5, 2.0, 0.25);
  EXPECT_EQ(c, (std::vector<double>{0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0}));
  const auto cs = step_scaling_candidates(0.125, 1.5, 0.125);  // the Cityscapes config: 12 scales
  ASSERT_EQ(cs.size(), 12u);
  EXPECT_EQ(cs.front(), 0.125);
  EXPECT_EQ(cs.back(), 1.5);
  EXPECT_EQ(cs[5], 0.75);
  EXPECT_EQ(step_scaling_candidates(1.0, 1.2, 0.5), (std::vector<double>{1.0}));  // int(0.4 + 1) = 1
}

TEST(Transforms, ResizeStepScalingFixedScaleRoundsHalfToEven) {
  // 3x5 at scale 0.5: w = round(2.5) = 2, h = round(1.5) = 2 (Python's round).
  const Image im = make_image(3, 5, 3, [](int y, int x, int) { return (float)(y * 5 + x); });
  const Label lab = make_label(3, 5, [](int y, int x) { return (uint8_t)(y * 5 + x); });
  const Sample s = apply_one(spec("ResizeStepScaling", {{"min_scale_factor", {0.5}}, {"max_scale_factor", {0.5}}}),
                             sample_of(im, lab));
  EXPECT_EQ(s.image.h, 2);
  EXPECT_EQ(s.image.w, 2);
  EXPECT_EQ(s.label.h, 2);
  EXPECT_EQ(s.label.w, 2);
  // nearest: rows floor(y*1.5) = 0, 1; cols floor(x*2.5) = 0, 2.
  EXPECT_EQ(s.label.data, (std::vector<uint8_t>{0, 2, 5, 7}));
  EXPECT_EQ(s.image.data, resize_bilinear(im, 2, 2).data);
}

TEST(Transforms, ResizeStepScalingDrawsFromTheCandidateSet) {
  const TransformSpec sp = spec(
      "ResizeStepScaling", {{"min_scale_factor", {0.5}}, {"max_scale_factor", {2.0}}, {"scale_step_size", {0.25}}});
  const Pipeline p = build_pipeline({sp}, 255);
  std::set<std::pair<int, int>> seen;
  for (uint64_t seed = 0; seed < 300; ++seed) {
    Sample s;
    s.image = filled(60, 100, 9.f);
    Rng rng(seed);
    p.apply(s, rng);
    seen.insert({s.image.w, s.image.h});
  }
  const std::set<std::pair<int, int>> want = {{50, 30},  {75, 45},   {100, 60}, {125, 75},
                                              {150, 90}, {175, 105}, {200, 120}};
  EXPECT_EQ(seen, want);
  // step 0: a continuous uniform draw in [min, max].
  const Pipeline pc = build_pipeline(
      {spec("ResizeStepScaling", {{"min_scale_factor", {0.5}}, {"max_scale_factor", {2.0}}, {"scale_step_size", {0}}})},
      255);
  std::set<int> widths;
  for (uint64_t seed = 0; seed < 100; ++seed) {
    Sample s;
    s.image = filled(10, 100, 1.f);
    Rng rng(seed);
    pc.apply(s, rng);
    EXPECT_GE(s.image.w, 50);
    EXPECT_LE(s.image.w, 200);
    widths.insert(s.image.w);
  }
  EXPECT_GT(widths.size(), 40u);
}

// ================================================================================== RandomPaddingCrop
TEST(Transforms, RandomPaddingCropPadsBottomRightWithPaddleValues) {
  const Sample s = apply_one(spec("RandomPaddingCrop", {{"crop_size", {6, 5}}}),  // [w, h]
                             sample_of(filled(3, 4, 10.f), make_label(3, 4, [](int, int) { return (uint8_t)1; })));
  ASSERT_EQ(s.image.h, 5);
  ASSERT_EQ(s.image.w, 6);
  ASSERT_EQ(s.label.h, 5);
  ASSERT_EQ(s.label.w, 6);
  for (int y = 0; y < 5; ++y)
    for (int x = 0; x < 6; ++x) {
      const bool orig = y < 3 && x < 4;
      EXPECT_EQ(s.image.at(y, x, 1), orig ? 10.f : 127.5f) << y << "," << x;
      EXPECT_EQ(s.label.at(y, x), orig ? 1 : 255) << y << "," << x;
    }
  // The label padding defaults to the data set's ignore index; both paddings can be set.
  const Sample s7 =
      apply_one(spec("RandomPaddingCrop", {{"crop_size", {5, 3}}}),
                sample_of(filled(3, 4, 10.f), make_label(3, 4, [](int, int) { return (uint8_t)1; })), 1, 7);
  EXPECT_EQ(s7.label.at(2, 4), 7);
  const Sample sv = apply_one(
      spec("RandomPaddingCrop", {{"crop_size", {5}}, {"im_padding_value", {0}}, {"label_padding_value", {9}}}),
      sample_of(filled(3, 4, 10.f), make_label(3, 4, [](int, int) { return (uint8_t)1; })));
  EXPECT_EQ(sv.image.h, 5);  // a scalar crop_size is a square
  EXPECT_EQ(sv.image.at(4, 4, 0), 0.f);
  EXPECT_EQ(sv.label.at(4, 4), 9);
}

TEST(Transforms, RandomPaddingCropOffsetsCoverTheInclusiveRange) {
  // Pixel value encodes its position, so the crop's top-left reveals the offsets.
  const Image im = make_image(10, 12, 3, [](int y, int x, int) { return (float)(y * 100 + x); });
  const Label lab = make_label(10, 12, [](int y, int x) { return (uint8_t)(y * 12 + x); });
  const Pipeline p = build_pipeline({spec("RandomPaddingCrop", {{"crop_size", {4, 3}}})}, 255);
  std::set<int> hs, ws;
  for (uint64_t seed = 0; seed < 400; ++seed) {
    Sample s = sample_of(im, lab);
    Rng rng(seed);
    p.apply(s, rng);
    ASSERT_EQ(s.image.h, 3);
    ASSERT_EQ(s.image.w, 4);
    const int v = (int)s.image.at(0, 0, 0), oh = v / 100, ow = v % 100;
    hs.insert(oh);
    ws.insert(ow);
    EXPECT_EQ(s.label.at(0, 0), oh * 12 + ow);  // label cropped at the same offsets
    EXPECT_EQ(s.image.at(2, 3, 2), (oh + 2) * 100.f + ow + 3);
  }
  EXPECT_EQ(hs, (std::set<int>{0, 1, 2, 3, 4, 5, 6, 7}));     // randint(0, 10-3) inclusive
  EXPECT_EQ(ws, (std::set<int>{0, 1, 2, 3, 4, 5, 6, 7, 8}));  // randint(0, 12-4) inclusive
  // Same size: unchanged.
  const Sample same = apply_one(spec("RandomPaddingCrop", {{"crop_size", {12, 10}}}), sample_of(im, lab));
  EXPECT_EQ(same.image.data, im.data);
  // Pad one axis, crop the other: h 3 -> 5 (padded), w 10 -> 4 (cropped).
  const Sample mixed = apply_one(spec("RandomPaddingCrop", {{"crop_size", {4, 5}}}),
                                 sample_of(make_image(3, 10, 3, [](int, int x, int) { return (float)x; }),
                                           make_label(3, 10, [](int, int) { return (uint8_t)0; })));
  EXPECT_EQ(mixed.image.h, 5);
  EXPECT_EQ(mixed.image.w, 4);
  EXPECT_EQ(mixed.image.at(4, 0, 0), 127.5f);
  EXPECT_EQ(mixed.label.at(4, 3), 255);
}

// ================================================================================== flip, normalize, resize
TEST(Transforms, HorizontalFlipFlipsImageAndLabel) {
  const Image im = make_image(2, 3, 3, [](int y, int x, int k) { return (float)(y * 10 + x + 100 * k); });
  const Label lab = make_label(2, 3, [](int y, int x) { return (uint8_t)(y * 3 + x); });
  const Sample f = apply_one(spec("RandomHorizontalFlip", {{"prob", {1}}}), sample_of(im, lab));
  EXPECT_EQ(f.label.data, (std::vector<uint8_t>{2, 1, 0, 5, 4, 3}));
  EXPECT_EQ(f.image.at(1, 0, 2), 212.f);
  EXPECT_EQ(f.image.at(0, 2, 0), 0.f);
  const Sample n = apply_one(spec("RandomHorizontalFlip", {{"prob", {0}}}), sample_of(im, lab));
  EXPECT_EQ(n.label.data, lab.data);
  // Default prob 0.5: both outcomes occur.
  const Pipeline p = build_pipeline({spec("RandomHorizontalFlip")}, 255);
  int flips = 0;
  for (uint64_t seed = 0; seed < 200; ++seed) {
    Sample s = sample_of(im, lab);
    Rng rng(seed);
    p.apply(s, rng);
    flips += s.label.at(0, 0) == 2;
  }
  EXPECT_GT(flips, 70);
  EXPECT_LT(flips, 130);
}

TEST(Transforms, NormalizeIsPaddleFormula) {
  Sample s;
  s.image = make_image(1, 3, 3, [](int, int x, int) { return x * 127.5f; });
  s = apply_one(spec("Normalize"), s);
  EXPECT_EQ(s.image.data, (std::vector<float>{-1, -1, -1, 0, 0, 0, 1, 1, 1}));
  Sample c;
  c.image = filled(1, 1, 100.f);
  c = apply_one(spec("Normalize", {{"mean", {0.485, 0.456, 0.406}}, {"std", {0.229, 0.224, 0.225}}}), c);
  EXPECT_NEAR(c.image.data[0], (100 / 255.0 - 0.485) / 0.229, 1e-6);
  EXPECT_NEAR(c.image.data[1], (100 / 255.0 - 0.456) / 0.224, 1e-6);
  EXPECT_NEAR(c.image.data[2], (100 / 255.0 - 0.406) / 0.225, 1e-6);
}

TEST(Transforms, ResizeUsesTargetSizeAsWidthHeight) {
  const Sample s = apply_one(spec("Resize", {{"target_size", {4, 2}}}),
                             sample_of(filled(6, 8, 3.f), make_label(6, 8, [](int y, int) { return (uint8_t)y; })));
  EXPECT_EQ(s.image.h, 2);
  EXPECT_EQ(s.image.w, 4);
  EXPECT_EQ(s.label.data, (std::vector<uint8_t>{0, 0, 0, 0, 3, 3, 3, 3}));  // floor(y * 3)
}

// ================================================================================== RandomDistort / PIL
TEST(Transforms, PilBrightnessTruncatesAndClips) {
  std::vector<uint8_t> v = {0, 1, 101, 255, 0, 0};
  pil::brightness(v, 0.5f);
  EXPECT_EQ(v, (std::vector<uint8_t>{0, 0, 50, 127, 0, 0}));  // 50.5 -> 50, 127.5 -> 127
  std::vector<uint8_t> w = {0, 1, 101, 200, 3, 0};
  pil::brightness(w, 1.5f);
  EXPECT_EQ(w, (std::vector<uint8_t>{0, 1, 151, 255, 4, 0}));  // extrapolation clips at 255
}

TEST(Transforms, PilContrastSaturationAndHsvFormulas) {
  // Contrast: L of black and white = 0, 255 -> mean 127.5 -> int(128.0) = 128.
  std::vector<uint8_t> c = {0, 0, 0, 255, 255, 255};
  pil::contrast(c, 0.5f);
  EXPECT_EQ(c, (std::vector<uint8_t>{64, 64, 64, 191, 191, 191}));
  // Luma (200, 100, 50) = (200*19595 + 100*38470 + 50*7471 + 32768) >> 16 = 124.
  EXPECT_EQ(pil::luma(200, 100, 50), 124);
  std::vector<uint8_t> s = {200, 100, 50};
  pil::saturation(s, 0.5f);
  EXPECT_EQ(s, (std::vector<uint8_t>{162, 112, 87}));
  std::vector<uint8_t> s0 = {200, 100, 50};
  pil::saturation(s0, 0.f);
  EXPECT_EQ(s0, (std::vector<uint8_t>{124, 124, 124}));
  // HSV: (200, 100, 50): s = 150/200 -> 191, h = (1 - 2/3)/6 -> 14, v = 200.
  uint8_t hsv[3];
  const uint8_t px[3] = {200, 100, 50};
  pil::rgb_to_hsv(px, hsv);
  EXPECT_EQ(hsv[0], 14);
  EXPECT_EQ(hsv[1], 191);
  EXPECT_EQ(hsv[2], 200);
  // Red shifted by a third of the circle (85/255) is green; shifting by -1 wraps to 255 = red.
  std::vector<uint8_t> red = {255, 0, 0};
  pil::hue(red, 85.0);
  EXPECT_EQ(red, (std::vector<uint8_t>{0, 255, 0}));
  std::vector<uint8_t> red2 = {255, 0, 0};
  pil::hue(red2, -1.0);
  EXPECT_EQ(red2, (std::vector<uint8_t>{255, 0, 0}));
}

TEST(Transforms, HueShiftKeepsGreyPixelsGrey) {
  std::vector<uint8_t> grey = {77, 77, 77, 0, 0, 0, 255, 255, 255};
  for (double delta : {-18.0, -3.5, 7.2, 18.0}) {
    std::vector<uint8_t> g = grey;
    pil::hue(g, delta);
    EXPECT_EQ(g, grey) << delta;
  }
  // And the whole RandomDistort keeps a grey image grey (brightness/contrast keep it grey,
  // saturation and hue leave grey alone).
  const Pipeline p = build_pipeline({spec("RandomDistort", {{"hue_prob", {1}}, {"saturation_prob", {1}}})}, 255);
  for (uint64_t seed = 0; seed < 20; ++seed) {
    Sample s;
    s.image = make_image(4, 4, 3, [](int y, int x, int) { return (float)(y * 40 + x * 9 + 30); });
    Rng rng(seed);
    p.apply(s, rng);
    for (int y = 0; y < 4; ++y)
      for (int x = 0; x < 4; ++x) {
        EXPECT_EQ(s.image.at(y, x, 0), s.image.at(y, x, 1));
        EXPECT_EQ(s.image.at(y, x, 0), s.image.at(y, x, 2));
      }
  }
}

TEST(Transforms, RandomDistortTruncatesToUint8First) {
  // All ops off: only the uint8 cast remains (127.5 -> 127: why padding becomes 127).
  const TransformSpec off = spec("RandomDistort", {{"brightness_prob", {0}},
                                                   {"contrast_prob", {0}},
                                                   {"saturation_prob", {0}},
                                                   {"hue_prob", {0}},
                                                   {"sharpness_prob", {0}}});
  Sample s;
  s.image = make_image(1, 2, 3, [](int, int x, int k) { return x == 0 ? 127.5f : 3.99f + 100 * k; });
  s = apply_one(off, s);
  EXPECT_EQ(s.image.data, (std::vector<float>{127, 127, 127, 3, 103, 203}));
  // Brightness always on with a factor in [0.5, 1.5): every output is trunc(f * trunc(in)) for one f.
  const TransformSpec bright = spec(
      "RandomDistort", {{"brightness_prob", {1}}, {"contrast_prob", {0}}, {"saturation_prob", {0}}, {"hue_prob", {0}}});
  Sample b;
  b.image = make_image(1, 2, 3, [](int, int x, int k) { return x == 0 && k == 0 ? 150.f : 100.f; });
  b = apply_one(bright, b, 5);
  const float f = b.image.data[0] / 150.f;  // 150 * 1.5 < 255: no clipping
  EXPECT_GE(f, 0.49f);
  EXPECT_LE(f, 1.5f);
  EXPECT_NEAR(b.image.data[1], std::floor(100 * f), 1.0);
  EXPECT_EQ(b.image.data[1], b.image.data[5]);
}

TEST(Transforms, SharpnessBlendsWithSmoothedImage) {
  // 3x3 with a bright centre: SMOOTH gives round((8*10 + 5*100)/13) = 45 at the centre, borders copied.
  std::vector<uint8_t> im(27, 10);
  for (int k = 0; k < 3; ++k) im[4 * 3 + k] = 100;
  std::vector<uint8_t> zero = im;
  pil::sharpness(zero, 3, 3, 0.f);  // factor 0 = the smoothed image
  EXPECT_EQ(zero[4 * 3], 45);
  EXPECT_EQ(zero[0], 10);
  std::vector<uint8_t> one = im;
  pil::sharpness(one, 3, 3, 1.f);
  EXPECT_EQ(one, im);
}

// ================================================================================== spec validation
TEST(Transforms, BadSpecsAreClearErrors) {
  expect_error([] { build_pipeline({spec("Foo", {}, "train_dataset.transforms[3]")}, 255); },
               {"train_dataset.transforms[3]", "'Foo'", "ResizeStepScaling", "RandomDistort", "Normalize"});
  expect_error(
      [] {
        build_pipeline({spec("RandomPaddingCrop", {{"crop_sise", {1, 2}}}, "t[1]")}, 255);
      },
      {"t[1].crop_sise", "unknown argument", "crop_size"});
  expect_error(
      [] {
        build_pipeline({spec("ResizeStepScaling", {{"min_scale_factor", {2}}, {"max_scale_factor", {1}}}, "t[0]")},
                       255);
      },
      {"t[0].min_scale_factor", "max_scale_factor"});
  expect_error(
      [] {
        build_pipeline({spec("RandomPaddingCrop", {{"crop_size", {1, 2, 3}}}, "t[1]")}, 255);
      },
      {"t[1].crop_size", "2 positive integers"});
  expect_error(
      [] {
        build_pipeline({spec("RandomPaddingCrop", {{"crop_size", {0, 5}}}, "t[1]")}, 255);
      },
      {"t[1].crop_size"});
  expect_error(
      [] {
        build_pipeline({spec("RandomPaddingCrop", {{"crop_size", {1.5, 5}}}, "t[1]")}, 255);
      },
      {"t[1].crop_size"});
  expect_error([] { build_pipeline({spec("Normalize", {{"std", {0.5, 0, 0.5}}}, "v[0]")}, 255); }, {"v[0].std"});
  expect_error(
      [] {
        build_pipeline({spec("Normalize", {{"mean", {0.5, 0.5}}}, "v[0]")}, 255);
      },
      {"v[0].mean", "1 or 3"});
  expect_error(
      [] {
        build_pipeline({spec("RandomHorizontalFlip", {{"prob", {1.5}}}, "t[2]")}, 255);
      },
      {"t[2].prob", "[0, 1]"});
  expect_error(
      [] {
        build_pipeline({spec("RandomHorizontalFlip", {{"prob", {0.1, 0.2}}}, "t[2]")}, 255);
      },
      {"t[2].prob", "one number"});
  expect_error(
      [] {
        build_pipeline({spec("RandomDistort", {{"hue_range", {-1}}}, "t[3]")}, 255);
      },
      {"t[3].hue_range", ">= 0"});
  expect_error(
      [] {
        build_pipeline({spec("Resize", {{"target_size", {}}}, "val_dataset.transforms[0]")}, 255);
      },
      {"val_dataset.transforms[0].target_size"});
  // The quick-start train pipeline (reference configs) builds.
  const Pipeline qs = build_pipeline(
      {spec("ResizeStepScaling",
            {{"min_scale_factor", {0.5}}, {"max_scale_factor", {2.0}}, {"scale_step_size", {0.25}}}),
       spec("RandomPaddingCrop", {{"crop_size", {512, 512}}}), spec("RandomHorizontalFlip"),
       spec("RandomDistort", {{"brightness_range", {0.5}}, {"contrast_range", {0.5}}, {"saturation_range", {0.5}}}),
       spec("Normalize")},
      255);
  ASSERT_EQ(qs.size(), 5u);
  EXPECT_STREQ(qs.at(3).type(), "RandomDistort");
}

TEST(Transforms, RngIsExplicitAndInRange) {
  Rng a(42), b(42);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(a.next_u64(), b.next_u64());
  Rng first(0);
  EXPECT_EQ(first.next_u64(), 0xE220A8397B1DCDAFull);  // SplitMix64's first output for seed 0
  Rng r(7);
  std::set<int64_t> seen;
  for (int i = 0; i < 2000; ++i) {
    const int64_t v = r.randint(-2, 3);
    ASSERT_GE(v, -2);
    ASSERT_LE(v, 3);
    seen.insert(v);
    const double u = r.uniform(1.0, 2.0);
    ASSERT_GE(u, 1.0);
    ASSERT_LT(u, 2.0);
  }
  EXPECT_EQ(seen.size(), 6u);
  EXPECT_NE(mix_seed(1, 2), mix_seed(2, 1));
  EXPECT_NE(mix_seed(1, 2, 3), mix_seed(1, 3, 2));
}

// ================================================================================== datasets
namespace {
// root/images/i.png (h x w, value 10*i) and root/labels/i.png (value i % 2), i < n.
void make_pngs(const TempDir& d, int n, int h = 6, int w = 8) {
  fs::create_directories(d / "images");
  fs::create_directories(d / "labels");
  for (int i = 0; i < n; ++i) {
    write_png(d / ("images/" + std::to_string(i) + ".png"), filled(h, w, 10.f * i));
    Label l;
    l.h = h, l.w = w;
    l.data.assign((size_t)h * w, (uint8_t)(i % 2));
    write_png(d / ("labels/" + std::to_string(i) + ".png"), l);
  }
}
void write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path);
  f << text;
}
DatasetSpec list_spec(const TempDir& d, const std::string& mode = "train") {
  DatasetSpec s;
  s.type = "Dataset";
  s.dataset_root = d.str();
  s.train_path = d / "train.txt";
  s.val_path = d / "val.txt";
  s.test_path = d / "test.txt";
  s.mode = mode;
  s.num_classes = 2;
  s.where = mode + "_dataset";
  return s;
}
}  // namespace

TEST(Dataset, FileListIsParsedAndJoinedToTheRoot) {
  TempDir d;
  make_pngs(d, 3);
  write_text(d / "train.txt",
             "images/0.png labels/0.png\n\n  images/1.png labels/1.png  \r\nimages/2.png labels/2.png");
  const auto ds = make_dataset(list_spec(d));
  ASSERT_EQ(ds->size(), 3);
  EXPECT_EQ(ds->num_classes(), 2);
  EXPECT_EQ(ds->ignore_index(), 255);
  EXPECT_EQ(ds->mode(), "train");
  EXPECT_EQ(ds->image_path(1), (fs::path(d.str()) / "images/1.png").string());
  EXPECT_EQ(ds->label_path(2), (fs::path(d.str()) / "labels/2.png").string());
  Rng rng(0);
  const Sample s = ds->load(2, rng);
  EXPECT_TRUE(s.has_label);
  EXPECT_EQ(s.image.at(0, 0, 0), 20.f);
  EXPECT_EQ(s.label.at(0, 0), 0);
  expect_error([&] { ds->image_path(3); }, {"train_dataset", "index 3"});
  // Another separator.
  write_text(d / "val.txt", "images/0.png|labels/0.png\nimages/1.png|labels/1.png\n");
  DatasetSpec v = list_spec(d, "val");
  v.separator = "|";
  EXPECT_EQ(make_dataset(v)->size(), 2);
  v.separator = " ";
  expect_error([&] { make_dataset(v); }, {"val.txt:1", "separator ' '", "1 item"});
}

TEST(Dataset, BadLinesAndMissingFilesNameTheListLine) {
  TempDir d;
  make_pngs(d, 2);
  write_text(d / "train.txt", "images/0.png labels/0.png\nimages/1.png\n");
  expect_error([&] { make_dataset(list_spec(d)); }, {"train.txt:2", "expected 'image label'", "images/1.png"});
  write_text(d / "train.txt", "images/0.png labels/0.png extra\n");
  expect_error([&] { make_dataset(list_spec(d)); }, {"train.txt:1", "3 item"});
  write_text(d / "train.txt", "images/0.png  labels/0.png\n");  // two spaces: Python's split gives 3 items
  expect_error([&] { make_dataset(list_spec(d)); }, {"train.txt:1"});
  write_text(d / "train.txt", "images/0.png labels/0.png\nimages/1.png labels/missing.png\n");
  expect_error([&] { make_dataset(list_spec(d)); }, {"labels/missing.png", "not found", "train.txt:2"});
  write_text(d / "train.txt", "images/nope.png labels/0.png\n");
  expect_error([&] { make_dataset(list_spec(d)); }, {"images/nope.png", "train.txt:1"});
  write_text(d / "train.txt", "\n\n");
  expect_error([&] { make_dataset(list_spec(d)); }, {"train_dataset.train_path", "no entries"});
  // Test mode: the label is optional.
  write_text(d / "test.txt", "images/0.png\nimages/1.png labels/1.png\n");
  const auto t = make_dataset(list_spec(d, "test"));
  Rng rng(0);
  EXPECT_FALSE(t->load(0, rng).has_label);
  EXPECT_TRUE(t->load(1, rng).has_label);
}

TEST(Dataset, SpecErrorsNameTheKey) {
  TempDir d;
  make_pngs(d, 1);
  write_text(d / "train.txt", "images/0.png labels/0.png\n");
  DatasetSpec s = list_spec(d);
  s.train_path.clear();
  expect_error([&] { make_dataset(s); }, {"train_dataset.train_path", "required"});
  s = list_spec(d);
  s.train_path = d / "nolist.txt";
  expect_error([&] { make_dataset(s); }, {"train_dataset.train_path", "nolist.txt"});
  s = list_spec(d);
  s.dataset_root = d / "nowhere";
  expect_error([&] { make_dataset(s); }, {"train_dataset.dataset_root", "nowhere"});
  s = list_spec(d);
  s.num_classes = 0;
  expect_error([&] { make_dataset(s); }, {"train_dataset.num_classes"});
  s = list_spec(d);
  s.type = "VOC";
  expect_error([&] { make_dataset(s); }, {"train_dataset.type", "VOC", "Cityscapes"});
  s = list_spec(d);
  s.mode = "eval";
  expect_error([&] { make_dataset(s); }, {"train_dataset.mode"});
  s = list_spec(d);
  s.transforms = {spec("Bogus", {}, "train_dataset.transforms[0]")};
  expect_error([&] { make_dataset(s); }, {"train_dataset.transforms[0]", "Bogus"});
}

TEST(Dataset, LabelValuesMustBeClassesOrIgnore) {
  TempDir d;
  make_pngs(d, 1);
  Label l;
  l.h = 6, l.w = 8;
  l.data.assign(48, 1);
  l.data[5] = 255;  // ignore is fine
  write_png(d / "labels/ok.png", l);
  l.data[7] = 5;
  write_png(d / "labels/bad.png", l);
  write_text(d / "train.txt", "images/0.png labels/ok.png\nimages/0.png labels/bad.png\n");
  const auto ds = make_dataset(list_spec(d));
  Rng rng(0);
  EXPECT_EQ(ds->load(0, rng).label.at(0, 5), 255);
  expect_error([&] { ds->load(1, rng); }, {"labels/bad.png", "value 5", "num_classes 2"});
  // Label and image sizes must agree.
  Label small;
  small.h = 3, small.w = 4;
  small.data.assign(12, 0);
  write_png(d / "labels/small.png", small);
  write_text(d / "train.txt", "images/0.png labels/small.png\n");
  expect_error([&] { make_dataset(list_spec(d))->load(0, rng); }, {"labels/small.png", "3x4", "6x8"});
}

TEST(Dataset, ValModeTransformsOnlyTheImage) {
  TempDir d;
  make_pngs(d, 2);
  write_text(d / "val.txt", "images/0.png labels/0.png\nimages/1.png labels/1.png\n");
  DatasetSpec v = list_spec(d, "val");
  v.transforms = {spec("Resize", {{"target_size", {4, 4}}}), spec("Normalize")};
  const auto ds = make_dataset(v);
  Rng rng(0);
  const Sample s = ds->load(1, rng);
  EXPECT_EQ(s.image.h, 4);
  EXPECT_EQ(s.image.w, 4);
  EXPECT_NEAR(s.image.at(0, 0, 0), (10 / 255.0 - 0.5) / 0.5, 1e-6);
  ASSERT_TRUE(s.has_label);
  EXPECT_EQ(s.label.h, 6);  // full size
  EXPECT_EQ(s.label.w, 8);
  // In train mode the label follows the image.
  write_text(d / "train.txt", "images/0.png labels/0.png\n");
  DatasetSpec t = list_spec(d);
  t.transforms = v.transforms;
  const Sample st = make_dataset(t)->load(0, rng);
  EXPECT_EQ(st.label.h, 4);
  EXPECT_EQ(st.label.w, 4);
}

TEST(Dataset, CityscapesLayoutIsSortedAndPaired) {
  TempDir d;
  const char* frames[] = {"bochum/bochum_000000_000313", "aachen/aachen_000001_000019", "aachen/aachen_000000_000019"};
  for (const char* city : {"aachen", "bochum"}) {
    fs::create_directories(d / (std::string("leftImg8bit/train/") + city));
    fs::create_directories(d / (std::string("gtFine/train/") + city));
  }
  for (int i = 0; i < 3; ++i) {
    write_png(d / (std::string("leftImg8bit/train/") + frames[i] + "_leftImg8bit.png"), filled(4, 8, 10.f * i));
    Label l;
    l.h = 4, l.w = 8;
    l.data.assign(32, (uint8_t)(i + 3));
    write_png(d / (std::string("gtFine/train/") + frames[i] + "_gtFine_labelTrainIds.png"), l);
    write_png(d / (std::string("gtFine/train/") + frames[i] + "_gtFine_color.png"), filled(4, 8, 1.f));  // ignored
  }
  DatasetSpec s;
  s.type = "Cityscapes";
  s.dataset_root = d.str();
  s.mode = "train";
  const auto ds = make_dataset(s);
  ASSERT_EQ(ds->size(), 3);
  EXPECT_EQ(ds->num_classes(), 19);
  EXPECT_EQ(ds->ignore_index(), 255);
  EXPECT_NE(ds->image_path(0).find("aachen_000000_000019_leftImg8bit.png"), std::string::npos);
  EXPECT_NE(ds->label_path(0).find("aachen_000000_000019_gtFine_labelTrainIds.png"), std::string::npos);
  EXPECT_NE(ds->image_path(2).find("bochum"), std::string::npos);
  Rng rng(0);
  EXPECT_EQ(ds->load(0, rng).label.at(0, 0), 5);  // frames[2] was written with label 2 + 3
  EXPECT_EQ(ds->load(2, rng).label.at(0, 0), 3);
  // A missing label shifts the zip: an error, not silently mismatched pairs.
  fs::remove(d / "gtFine/train/aachen/aachen_000001_000019_gtFine_labelTrainIds.png");
  write_png(d / "gtFine/train/bochum/bochum_000009_000001_gtFine_labelTrainIds.png",
            Label{4, 8, std::vector<uint8_t>(32, 0)});
  expect_error([&] { make_dataset(s); }, {"aachen_000001_000019", "stems differ"});
  fs::remove(d / "gtFine/train/bochum/bochum_000009_000001_gtFine_labelTrainIds.png");
  expect_error([&] { make_dataset(s); }, {"3 images", "2 "});
  s.mode = "val";
  expect_error([&] { make_dataset(s); }, {"train_dataset.dataset_root", "leftImg8bit"});
}

// ================================================================================== loader
namespace {
// n images of 8x8 (value encodes the index) with labels, and a full training pipeline.
std::shared_ptr<SegDataset> loader_dataset(const TempDir& d, int n) {
  make_pngs(d, n, 8, 8);
  std::string list;
  for (int i = 0; i < n; ++i) list += "images/" + std::to_string(i) + ".png labels/" + std::to_string(i) + ".png\n";
  write_text(d / "train.txt", list);
  DatasetSpec s = list_spec(d);
  s.transforms = {spec("ResizeStepScaling",
                       {{"min_scale_factor", {0.75}}, {"max_scale_factor", {1.5}}, {"scale_step_size", {0.25}}}),
                  spec("RandomPaddingCrop", {{"crop_size", {8, 8}}}), spec("RandomHorizontalFlip"),
                  spec("RandomDistort"), spec("Normalize")};
  return make_dataset(s);
}
std::vector<float> flat(const Batch& b) { return b.at("images").to_vector(); }
}  // namespace

TEST(Loader, BatchesPerEpochAndDropLast) {
  TempDir d;
  const auto ds = loader_dataset(d, 10);
  LoaderOptions o;
  o.batch_size = 3;
  o.drop_last = false;
  DataLoader keep(ds, o);
  EXPECT_EQ(keep.batches_per_epoch(), 4);
  o.drop_last = true;
  DataLoader drop(ds, o);
  EXPECT_EQ(drop.batches_per_epoch(), 3);
  // Without drop_last the last batch is short; after it comes epoch 1, batch 0.
  std::vector<int64_t> sizes;
  for (int i = 0; i < 5; ++i) {
    const Batch b = keep.next();
    sizes.push_back(b.at("images").size(0));
    EXPECT_EQ(b.epoch, i / 4);
    EXPECT_EQ(b.batch_in_epoch, i % 4);
    EXPECT_EQ(b.at("images").shape(), (Shape{b.at("images").size(0), 8, 8, 3}));
    EXPECT_EQ(b.at("labels").shape(), (Shape{b.at("images").size(0), 8, 8}));
    EXPECT_EQ(b.at("labels").dtype(), DType::I64);
  }
  EXPECT_EQ(sizes, (std::vector<int64_t>{3, 3, 3, 1, 3}));
  const Batch b = drop.next();
  EXPECT_EQ(b.at("images").size(0), 3);
  o.batch_size = 11;
  expect_error([&] { DataLoader bad(ds, o); }, {"train_dataset", "batch_size 11", "drop_last"});
}

TEST(Loader, EpochsAreReshuffledPermutations) {
  TempDir d;
  const auto ds = loader_dataset(d, 10);
  LoaderOptions o;
  o.batch_size = 2;
  o.shuffle = true;
  o.seed = 123;
  DataLoader l(ds, o);
  const auto e0 = l.epoch_order(0), e1 = l.epoch_order(1);
  EXPECT_NE(e0, e1);
  for (const auto& e : {e0, e1}) {
    std::vector<int64_t> sorted = e;
    std::sort(sorted.begin(), sorted.end());
    EXPECT_EQ(sorted, (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  }
  // The batches follow the permutation; another seed gives another order; no shuffle is identity.
  std::vector<int64_t> seen;
  for (int i = 0; i < 5; ++i) {
    const Batch b = l.next();
    seen.insert(seen.end(), b.indices.begin(), b.indices.end());
  }
  EXPECT_EQ(seen, e0);
  o.seed = 124;
  EXPECT_NE(DataLoader(ds, o).epoch_order(0), e0);
  o.shuffle = false;
  EXPECT_EQ(DataLoader(ds, o).epoch_order(3), (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
}

TEST(Loader, SameBatchesForAnyNumberOfWorkers) {
  TempDir d;
  const auto ds = loader_dataset(d, 10);
  LoaderOptions o;
  o.batch_size = 3;
  o.shuffle = true;
  o.drop_last = true;
  o.seed = 9;
  std::vector<std::vector<float>> ref_images;
  std::vector<std::vector<int64_t>> ref_labels, ref_indices;
  {
    DataLoader l(ds, o);
    for (int i = 0; i < 8; ++i) {  // crosses two epoch boundaries (3 batches per epoch)
      const Batch b = l.next();
      ref_images.push_back(flat(b));
      ref_labels.push_back(b.at("labels").to_vector_i64());
      ref_indices.push_back(b.indices);
    }
  }
  EXPECT_NE(ref_images[0], ref_images[3]);  // augmentation differs between epochs
  for (int workers : {1, 3}) {
    o.num_workers = workers;
    o.prefetch = 2;
    DataLoader l(ds, o);
    for (int i = 0; i < 8; ++i) {
      const Batch b = l.next();
      EXPECT_EQ(b.indices, ref_indices[i]) << workers << " workers, batch " << i;
      EXPECT_EQ(flat(b), ref_images[i]) << workers << " workers, batch " << i;
      EXPECT_EQ(b.at("labels").to_vector_i64(), ref_labels[i]) << workers << " workers, batch " << i;
      EXPECT_EQ(b.epoch, i / 3);
      EXPECT_EQ(b.batch_in_epoch, i % 3);
    }
  }  // destructors join workers that are still prefetching
}

TEST(Loader, SeekResumesExactlyWhereAnUninterruptedRunWouldBe) {
  TempDir d;
  const auto ds = loader_dataset(d, 10);
  LoaderOptions o;
  o.batch_size = 4;
  o.shuffle = true;
  o.seed = 77;
  DataLoader full(ds, o);  // 3 batches per epoch
  std::vector<Batch> ref;
  for (int i = 0; i < 8; ++i) ref.push_back(full.next());
  for (int workers : {0, 2}) {
    o.num_workers = workers;
    DataLoader resumed(ds, o);
    resumed.next();  // consume something first: seek must discard any prefetched batches
    resumed.seek(1, 2);
    EXPECT_EQ(resumed.next_epoch(), 1);
    EXPECT_EQ(resumed.next_batch_in_epoch(), 2);
    for (int i = 5; i < 8; ++i) {
      const Batch b = resumed.next();
      EXPECT_EQ(b.epoch, ref[i].epoch);
      EXPECT_EQ(b.batch_in_epoch, ref[i].batch_in_epoch);
      EXPECT_EQ(b.indices, ref[i].indices);
      EXPECT_EQ(flat(b), flat(ref[i])) << workers << " workers, batch " << i;
    }
    const Batch direct = resumed.load_batch(0, 1);
    EXPECT_EQ(flat(direct), flat(ref[1]));
  }
  expect_error([&] { full.seek(0, 3); }, {"batch 3", "3 batches per epoch"});
}

TEST(Loader, WorkerErrorSurfacesFromNextWithTheFileName) {
  TempDir d;
  make_pngs(d, 6, 8, 8);
  write_bytes(d / "images/3.png", {'n', 'o', 't', ' ', 'a', 'n', ' ', 'i', 'm', 'a', 'g', 'e'});
  std::string list;
  for (int i = 0; i < 6; ++i) list += "images/" + std::to_string(i) + ".png labels/" + std::to_string(i) + ".png\n";
  write_text(d / "train.txt", list);
  const auto ds = make_dataset(list_spec(d));
  for (int workers : {0, 1, 3}) {
    LoaderOptions o;
    o.batch_size = 2;
    o.num_workers = workers;
    o.prefetch = 4;
    DataLoader l(ds, o);
    EXPECT_EQ(l.next().indices, (std::vector<int64_t>{0, 1}));
    expect_error([&] { l.next(); }, {"images/3.png", "not a PNG or JPEG"});
    EXPECT_EQ(l.next().indices, (std::vector<int64_t>{4, 5}));  // the loader carries on
    // Destroyed while workers may be blocked on a full queue or failing again: must not hang.
  }
}

TEST(Loader, DifferentSizesInABatchAreAnError) {
  TempDir d;
  make_pngs(d, 2, 8, 8);
  write_png(d / "images/big.png", filled(9, 8, 1.f));
  Label l;
  l.h = 9, l.w = 8;
  l.data.assign(72, 0);
  write_png(d / "labels/big.png", l);
  write_text(d / "train.txt", "images/0.png labels/0.png\nimages/big.png labels/big.png\n");
  LoaderOptions o;
  o.batch_size = 2;
  DataLoader loader(make_dataset(list_spec(d)), o);
  expect_error([&] { loader.next(); }, {"same size", "images/big.png", "9x8"});
}

TEST(Loader, ImageAndLabelTensors) {
  const Image im = make_image(2, 3, 3, [](int y, int x, int k) { return (float)(y * 100 + x * 10 + k); });
  const Tensor t = image_to_tensor(im);
  EXPECT_EQ(t.shape(), (Shape{1, 2, 3, 3}));
  EXPECT_EQ(t.to_vector(), im.data);
  const Label lab = make_label(2, 3, [](int y, int x) { return (uint8_t)(y == 1 && x == 2 ? 255 : x); });
  const Tensor lt = label_to_tensor(lab);
  EXPECT_EQ(lt.shape(), (Shape{1, 2, 3}));
  EXPECT_EQ(lt.dtype(), DType::I64);
  EXPECT_EQ(lt.to_vector_i64(), (std::vector<int64_t>{0, 1, 2, 0, 1, 255}));
}

// ================================================================================== synthetic set
TEST(Synthetic, DeterministicLayoutAndLabels) {
  TempDir d;
  SyntheticSpec s;
  s.train = 4, s.val = 2, s.test = 1;
  s.height = 64, s.width = 80;
  s.seed = 3;
  s.root = d / "a";
  generate_synthetic_fundus(s);
  s.root = d / "b";
  generate_synthetic_fundus(s);
  for (int i = 0; i < 7; ++i) {
    char name[16];
    std::snprintf(name, sizeof name, "%04d", i);
    const std::string img = std::string("images/") + name + ".jpg", lab = std::string("labels/") + name + ".png";
    EXPECT_EQ(read_bytes(d / ("a/" + img)), read_bytes(d / ("b/" + img))) << img;
    EXPECT_EQ(read_bytes(d / ("a/" + lab)), read_bytes(d / ("b/" + lab))) << lab;
    const Image im = read_image(d / ("a/" + img));
    EXPECT_EQ(im.h, 64);
    EXPECT_EQ(im.w, 80);
    const Label l = read_label(d / ("a/" + lab));
    int64_t disc = 0, ring = 0;
    double disc_sum = 0, bg_sum = 0;
    for (int y = 0; y < l.h; ++y)
      for (int x = 0; x < l.w; ++x) {
        const uint8_t v = l.at(y, x);
        ASSERT_TRUE(v == 0 || v == 1 || v == 255) << (int)v;
        const double lum = im.at(y, x, 0) + im.at(y, x, 1) + im.at(y, x, 2);
        if (v == 1) disc++, disc_sum += lum;
        if (v == 0) bg_sum += lum;
        ring += v == 255;
      }
    EXPECT_GT(disc, 10) << name;
    EXPECT_GT(ring, 10) << name;
    EXPECT_GT(disc_sum / disc, 1.3 * bg_sum / (l.h * l.w - disc - ring)) << name << ": the disc must be bright";
  }
  std::ifstream tl(d / "a/train_list.txt"), vl(d / "a/val_list.txt"), te(d / "a/test_list.txt");
  std::stringstream ts, vs, es;
  ts << tl.rdbuf();
  vs << vl.rdbuf();
  es << te.rdbuf();
  EXPECT_EQ(ts.str(),
            "images/0000.jpg labels/0000.png\nimages/0001.jpg labels/0001.png\n"
            "images/0002.jpg labels/0002.png\nimages/0003.jpg labels/0003.png\n");
  EXPECT_EQ(vs.str(), "images/0004.jpg labels/0004.png\nimages/0005.jpg labels/0005.png\n");
  EXPECT_EQ(es.str(), "images/0006.jpg labels/0006.png\n");
  // It is a valid PaddleSeg Dataset.
  DatasetSpec ds;
  ds.dataset_root = d / "a";
  ds.train_path = d / "a/train_list.txt";
  ds.num_classes = 2;
  EXPECT_EQ(make_dataset(ds)->size(), 4);
  // Another seed, another set; no ring when asked.
  s.root = d / "c";
  s.seed = 4;
  s.ignore_ring = 0;
  generate_synthetic_fundus(s);
  EXPECT_NE(read_bytes(d / "a/images/0000.jpg"), read_bytes(d / "c/images/0000.jpg"));
  for (uint8_t v : read_label(d / "c/labels/0000.png").data) ASSERT_LE(v, 1);
}

TEST(Synthetic, RefusesForeignDirectoriesAndRegeneratesItsOwn) {
  TempDir d;
  fs::create_directories(d / "foreign");
  write_text(d / "foreign/notes.txt", "mine");
  SyntheticSpec s;
  s.root = d / "foreign";
  s.train = 1, s.val = 1, s.height = 32, s.width = 32;
  expect_error([&] { generate_synthetic_fundus(s); }, {"foreign", "refusing", kSyntheticMarker});
  EXPECT_TRUE(fs::exists(d / "foreign/notes.txt"));
  s.root = d / "own";
  generate_synthetic_fundus(s);
  s.train = 2;
  generate_synthetic_fundus(s);  // its own output: replaced
  EXPECT_TRUE(fs::exists(d / "own/images/0002.jpg"));
  s.train = -1;
  expect_error([&] { generate_synthetic_fundus(s); }, {"train/val/test"});
}

// ================================================================================== sharded loader
// Data-parallel shards (data/loader.h): rank r of world_size W gets every W-th run of batch_size
// positions of the epoch's order padded by its head; a batch is a pure function of (seed, epoch,
// batch, rank); world_size 1 is the single-process loader.
namespace {
// Builds no images: records each sample's padded position and the first draw of its augmentation Rng.
class PositionSource : public BatchSource {
 public:
  explicit PositionSource(int64_t n) : n_(n) {}
  int64_t size() const override { return n_; }
  const std::string& where() const override { return where_; }
  void build(Batch& b, int64_t first_position, uint64_t seed) const override {
    std::vector<int64_t> pos;
    std::vector<float> draws;
    for (size_t i = 0; i < b.indices.size(); ++i) {
      const int64_t p = first_position + (int64_t)i;
      pos.push_back(p);
      Rng rng(mix_seed(seed, (uint64_t)b.epoch, (uint64_t)p));
      draws.push_back((float)rng.uniform());
    }
    b.tensors["positions"] = Tensor::from_vector_i64(pos, {(int64_t)pos.size()});
    b.tensors["draws"] = Tensor::from_vector(draws, {(int64_t)draws.size()});
  }

 private:
  int64_t n_;
  std::string where_ = "train_dataset";
};

LoaderOptions shard_options(int64_t batch_size, int rank, int world, bool drop_last = false) {
  LoaderOptions o;
  o.batch_size = batch_size;
  o.shuffle = true;
  o.drop_last = drop_last;
  o.seed = 31;
  o.rank = rank;
  o.world_size = world;
  return o;
}
}  // namespace

TEST(ShardedLoader, ShardsAreDisjointButForThePaddingAndCoverTheData) {
  for (int64_t n : {1, 7, 10, 12, 13}) {
    for (int world : {1, 2, 3, 4, 5}) {
      for (int64_t bs : {1, 2, 3}) {
        const auto src = std::make_shared<PositionSource>(n);
        const int64_t total = (n + world - 1) / world * world;
        std::vector<int> position_seen((size_t)total, 0);
        std::vector<int> index_seen((size_t)n, 0);
        std::vector<std::vector<int64_t>> rank_positions(world);
        const std::string what =
            "n " + std::to_string(n) + ", world " + std::to_string(world) + ", batch " + std::to_string(bs);
        int64_t bpe = -1;
        for (int r = 0; r < world; ++r) {
          DataLoader l(src, shard_options(bs, r, world));
          ASSERT_EQ(l.padded_epoch_size(), total) << what;
          if (bpe < 0) bpe = l.batches_per_epoch();
          EXPECT_EQ(l.batches_per_epoch(), bpe) << what << ": every rank runs the same number of steps";
          const std::vector<int64_t> padded = l.padded_epoch_order(2);
          for (int64_t b = 0; b < l.batches_per_epoch(); ++b) {
            const Batch batch = l.load_batch(2, b);
            const std::vector<int64_t> pos = batch.at("positions").to_vector_i64();
            ASSERT_EQ(pos.size(), batch.indices.size());
            EXPECT_EQ(pos[0], batch.first_position) << what;
            for (size_t i = 0; i < pos.size(); ++i) {
              ASSERT_LT(pos[i], total) << what;
              EXPECT_EQ(pos[i], batch.first_position + (int64_t)i) << what << ": consecutive positions";
              EXPECT_EQ(batch.indices[i], padded[(size_t)pos[i]]) << what;
              position_seen[(size_t)pos[i]]++;
              index_seen[(size_t)batch.indices[i]]++;
              rank_positions[r].push_back(pos[i]);
            }
          }
          EXPECT_EQ((int64_t)rank_positions[r].size(), total / world) << what << ", rank " << r;
        }
        // Every padded position exactly once over the ranks; every sample at least once, and twice or
        // more only through the padding.
        for (int64_t p = 0; p < total; ++p) EXPECT_EQ(position_seen[(size_t)p], 1) << what << ", position " << p;
        int64_t extra = 0;
        for (int64_t i = 0; i < n; ++i) {
          EXPECT_GE(index_seen[(size_t)i], 1) << what << ", sample " << i;
          extra += index_seen[(size_t)i] - 1;
        }
        EXPECT_EQ(extra, total - n) << what;
        // Step b of all ranks together is the single-process step b of batch bs * world.
        std::vector<int64_t> step_positions;
        for (int r = 0; r < world; ++r) {
          const int64_t take = std::min<int64_t>(bs, (int64_t)rank_positions[r].size());
          step_positions.insert(step_positions.end(), rank_positions[r].begin(), rank_positions[r].begin() + take);
        }
        std::sort(step_positions.begin(), step_positions.end());
        for (size_t k = 0; k < step_positions.size(); ++k) EXPECT_EQ(step_positions[k], (int64_t)k) << what;
      }
    }
  }
}

TEST(ShardedLoader, PaddingRepeatsTheHeadOfTheShuffledOrder) {
  const auto src = std::make_shared<PositionSource>(10);
  DataLoader l(src, shard_options(2, 1, 4));
  EXPECT_EQ(l.padded_epoch_size(), 12);
  for (int64_t e : {0, 1, 5}) {
    const std::vector<int64_t> order = l.epoch_order(e), padded = l.padded_epoch_order(e);
    ASSERT_EQ(padded.size(), 12u);
    EXPECT_TRUE(std::equal(order.begin(), order.end(), padded.begin()));
    EXPECT_EQ(padded[10], order[0]);
    EXPECT_EQ(padded[11], order[1]);
  }
  std::set<int64_t> repeated;  // the repeated samples change from epoch to epoch
  for (int64_t e = 0; e < 8; ++e) repeated.insert(l.padded_epoch_order(e)[10]);
  EXPECT_GT(repeated.size(), 1u);
  // Fewer samples than ranks: the list repeats as often as needed (Paddle's rule).
  DataLoader tiny(std::make_shared<PositionSource>(2), shard_options(1, 4, 5));
  const std::vector<int64_t> o = tiny.epoch_order(0);
  EXPECT_EQ(tiny.padded_epoch_order(0), (std::vector<int64_t>{o[0], o[1], o[0], o[1], o[0]}));
  EXPECT_EQ(tiny.load_batch(0, 0).indices, (std::vector<int64_t>{o[0]}));
  EXPECT_EQ(tiny.load_batch(0, 0).first_position, 4);
  // Without shuffle the head is 0, 1, ...
  LoaderOptions plain = shard_options(3, 2, 4);
  plain.shuffle = false;
  DataLoader p(src, plain);
  EXPECT_EQ(p.padded_epoch_order(0), (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1}));
  // Rank 2: positions 6..8 of the 12 (step of 3 x 4), then nothing left for a second batch.
  EXPECT_EQ(p.batches_per_epoch(), 1);
  EXPECT_EQ(p.load_batch(0, 0).indices, (std::vector<int64_t>{6, 7, 8}));
  // Rank 3: 9, then the padding 0, 1.
  plain.rank = 3;
  EXPECT_EQ(DataLoader(src, plain).load_batch(0, 0).indices, (std::vector<int64_t>{9, 0, 1}));
}

TEST(ShardedLoader, BatchesPerEpochAreCountedPerRank) {
  const auto src = std::make_shared<PositionSource>(10);
  // 10 samples, 4 ranks: padded to 12, 3 per rank = one batch of 2 and a short one of 1.
  DataLoader keep(src, shard_options(2, 2, 4, false));
  EXPECT_EQ(keep.batches_per_epoch(), 2);
  const Batch last = keep.load_batch(0, 1);
  EXPECT_EQ(last.indices.size(), 1u);
  EXPECT_EQ(last.first_position, 10);  // a padding repeat: the evaluator's cue to drop it
  DataLoader drop(src, shard_options(2, 2, 4, true));
  EXPECT_EQ(drop.batches_per_epoch(), 1);  // Paddle's len: 3 // 2
  // Epochs roll over per rank after its own batches.
  drop.next();
  const Batch b = drop.next();
  EXPECT_EQ(b.epoch, 1);
  EXPECT_EQ(b.batch_in_epoch, 0);
  EXPECT_EQ(DataLoader(src, shard_options(4, 0, 3, true)).batches_per_epoch(), 1);  // 12 = one step of 4 x 3
  expect_error([&] { DataLoader bad(src, shard_options(4, 0, 4, true)); },
               {"train_dataset", "10 samples", "3 per rank", "world_size 4", "batch_size 4", "drop_last"});
}

TEST(ShardedLoader, WorldSizeOneIsTheSingleProcessLoader) {
  const auto src = std::make_shared<PositionSource>(10);
  for (bool drop_last : {false, true}) {
    LoaderOptions def;  // rank/world_size left at their defaults
    def.batch_size = 3;
    def.shuffle = true;
    def.drop_last = drop_last;
    def.seed = 31;
    DataLoader l(src, def), explicit_one(src, shard_options(3, 0, 1, drop_last));
    EXPECT_EQ(l.batches_per_epoch(), drop_last ? 3 : 4);
    EXPECT_EQ(l.padded_epoch_size(), 10);
    for (int64_t e : {0, 1}) {
      const std::vector<int64_t> order = l.epoch_order(e);
      EXPECT_EQ(l.padded_epoch_order(e), order);
      for (int64_t b = 0; b < l.batches_per_epoch(); ++b) {
        // The single-process rule: positions b*bs .. min(b*bs + bs, N) of the permutation, sample at
        // position p augmented from Rng(mix_seed(seed, e, p)).
        const Batch got = l.load_batch(e, b), got1 = explicit_one.load_batch(e, b);
        const int64_t begin = b * 3, end = std::min<int64_t>(begin + 3, 10);
        EXPECT_EQ(got.indices, std::vector<int64_t>(order.begin() + begin, order.begin() + end));
        EXPECT_EQ(got.first_position, begin);
        std::vector<float> draws;
        for (int64_t p = begin; p < end; ++p)
          draws.push_back((float)Rng(mix_seed(31, (uint64_t)e, (uint64_t)p)).uniform());
        EXPECT_EQ(got.at("draws").to_vector(), draws);
        EXPECT_EQ(got1.indices, got.indices);
        EXPECT_EQ(got1.at("draws").to_vector(), draws);
      }
    }
  }
}

TEST(ShardedLoader, SameBatchForAnyNumberOfWorkersOnEveryRank) {
  TempDir d;
  const auto ds = loader_dataset(d, 10);
  const int world = 3;
  // 10 samples -> 12 padded, 4 per rank, 2 batches of 2 per epoch; 5 batches cross two epochs.
  std::vector<std::vector<std::vector<float>>> ref(world);
  std::vector<std::vector<std::vector<int64_t>>> ref_idx(world);
  for (int r = 0; r < world; ++r) {
    LoaderOptions o = shard_options(2, r, world, true);
    DataLoader l(ds, o);
    ASSERT_EQ(l.batches_per_epoch(), 2);
    for (int i = 0; i < 5; ++i) {
      const Batch b = l.next();
      ref[r].push_back(flat(b));
      ref_idx[r].push_back(b.indices);
    }
    for (int workers : {1, 2}) {
      o.num_workers = workers;
      DataLoader lw(ds, o);
      for (int i = 0; i < 5; ++i) {
        const Batch b = lw.next();
        EXPECT_EQ(b.indices, ref_idx[r][i]) << "rank " << r << ", " << workers << " workers, batch " << i;
        EXPECT_EQ(flat(b), ref[r][i]) << "rank " << r << ", " << workers << " workers, batch " << i;
      }
    }
    EXPECT_EQ(flat(DataLoader(ds, shard_options(2, r, world, true)).load_batch(1, 1)), ref[r][3]);
  }
  for (int i = 0; i < 5; ++i) {
    EXPECT_NE(ref_idx[0][i], ref_idx[1][i]);
    EXPECT_NE(ref[0][i], ref[1][i]);
    EXPECT_NE(ref[1][i], ref[2][i]);
  }
  // A padding repeat is augmented differently from its original: position 10 repeats position 0.
  LoaderOptions o = shard_options(2, 2, world, false);
  DataLoader l(ds, o);
  const Batch head = DataLoader(ds, shard_options(2, 0, world, false)).load_batch(0, 0);  // positions 0, 1
  const Batch tail = l.load_batch(0, 1);                                                  // positions 10, 11
  ASSERT_EQ(tail.first_position, 10);
  EXPECT_EQ(tail.indices, head.indices);
  EXPECT_NE(flat(tail), flat(head));
}

TEST(ShardedLoader, SeekResumesEachRankExactly) {
  TempDir d;
  const auto ds = loader_dataset(d, 9);
  const int world = 2;
  for (int r = 0; r < world; ++r) {
    LoaderOptions o = shard_options(2, r, world, false);  // 9 -> 10 padded, 5 per rank: 3 batches (2, 2, 1)
    DataLoader full(ds, o);
    ASSERT_EQ(full.batches_per_epoch(), 3);
    std::vector<Batch> ref;
    for (int i = 0; i < 7; ++i) ref.push_back(full.next());
    for (int workers : {0, 2}) {
      o.num_workers = workers;
      DataLoader resumed(ds, o);
      resumed.next();
      resumed.seek(1, 1);
      EXPECT_EQ(resumed.next_epoch(), 1);
      EXPECT_EQ(resumed.next_batch_in_epoch(), 1);
      for (int i = 4; i < 7; ++i) {
        const Batch b = resumed.next();
        EXPECT_EQ(b.epoch, ref[i].epoch);
        EXPECT_EQ(b.batch_in_epoch, ref[i].batch_in_epoch);
        EXPECT_EQ(b.first_position, ref[i].first_position);
        EXPECT_EQ(b.indices, ref[i].indices);
        EXPECT_EQ(flat(b), flat(ref[i])) << "rank " << r << ", " << workers << " workers, batch " << i;
      }
    }
    EXPECT_EQ(ref[2].indices.size(), 1u);  // the short last batch of the rank
    expect_error([&] { full.seek(0, 3); }, {"batch 3", "3 batches per epoch"});
  }
}

TEST(ShardedLoader, RankAndWorldSizeErrors) {
  const auto src = std::make_shared<PositionSource>(10);
  expect_error([&] { DataLoader l(src, shard_options(2, 0, 0)); }, {"train_dataset", "world_size must be >= 1, got 0"});
  expect_error([&] { DataLoader l(src, shard_options(2, 2, 2)); }, {"train_dataset", "rank 2", "[0, world_size 2)"});
  expect_error([&] { DataLoader l(src, shard_options(2, -1, 2)); }, {"rank -1", "[0, world_size 2)"});
}
