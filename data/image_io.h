// Image and label file I/O: PNG (libpng) and JPEG (libjpeg-turbo) decode/encode.
//
// Semantics (paddleseg/datasets/dataset.py, paddleseg/transforms/transforms.py): PaddleSeg reads
// images with cv2.imread(IMREAD_COLOR) and converts them to RGB float32, and reads labels with PIL
// (np.asarray(Image.open(...))), which gives the raw indices of a palette PNG. So:
//   - read_image: 8-bit (or 16-bit, reduced to 8 by dropping the low byte as cv2 does) gray, gray+alpha,
//     RGB, RGBA and palette PNGs, and JPEG (gray, YCbCr/RGB). Gray becomes 3 equal channels, alpha is
//     dropped (not composited, as cv2). The format is detected from the file's magic bytes.
//   - read_label: single-channel PNG (gray of 1/2/4/8 bits: the raw values) or palette PNG (the
//     indices, whatever the palette's colours). Anything with colour or alpha channels is an error:
//     labels must be single-channel class-index maps.
// Every failure throws engine::Error with one line that starts with the file name.
// libpng/libjpeg report errors by longjmp; the setjmp frames hold only plain C data and all buffers
// live outside them, so an error path runs no skipped destructors and leaks nothing.
//
// Tested by tests/test_data.cpp (round trips, palette labels, missing/corrupt/truncated files, RGB labels).
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace engine::data {

// An image, HWC interleaved, values 0..255 stored as float (RGB order for c == 3).
struct Image {
  int h = 0, w = 0, c = 0;
  std::vector<float> data;
  float& at(int y, int x, int ch) { return data[((size_t)y * w + x) * c + ch]; }
  float at(int y, int x, int ch) const { return data[((size_t)y * w + x) * c + ch]; }
};

// A label map: one class index per pixel (255 usually = ignore).
struct Label {
  int h = 0, w = 0;
  std::vector<uint8_t> data;
  uint8_t& at(int y, int x) { return data[(size_t)y * w + x]; }
  uint8_t at(int y, int x) const { return data[(size_t)y * w + x]; }
};

Image read_image(const std::string& path);  // always c == 3 (RGB)
Label read_label(const std::string& path);

// PNG writers. An Image with c == 1 is written as 8-bit gray, c == 3 as RGB; values are rounded to
// the nearest integer and clamped to 0..255. A Label is written as 8-bit gray, or as an indexed
// (palette) PNG when a palette is given (index i shows as palette[i]; at most 256 entries).
void write_png(const std::string& path, const Image& img);
void write_png(const std::string& path, const Label& label);
void write_png(const std::string& path, const Label& label, const std::vector<std::array<uint8_t, 3>>& palette);
// Baseline JPEG of an RGB (c == 3) or gray (c == 1) image; quality 1..100.
void write_jpeg(const std::string& path, const Image& img, int quality = 95);

}  // namespace engine::data
