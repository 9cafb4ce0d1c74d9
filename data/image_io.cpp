// PNG/JPEG decode and encode through libpng and libjpeg-turbo (see image_io.h for the semantics).
//
// Error handling: both libraries report a fatal error by calling a handler that must not return; ours
// copy the message into a plain C buffer and longjmp back to the setjmp in a small decode/encode
// function. Those functions hold only plain C data (library structs, pointers), and every C++ buffer
// they fill is owned by the caller and reached through a pointer, so the longjmp skips no destructor
// (which C++ would make undefined) and the library structs are destroyed on both paths. The caller
// then throws engine::Error naming the file.
//
// Tested by tests/test_data.cpp.
#include "data/image_io.h"

#include <png.h>
// clang-format off
#include <stdio.h>  // before jpeglib.h, which needs FILE and size_t declared
#include <jerror.h>
#include <jpeglib.h>
// clang-format on

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <csetjmp>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>

#include "base/error.h"

namespace engine::data {
namespace {

std::vector<uint8_t> read_file_bytes(const std::string& path, const char* what) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) fail(path, ": is a directory, not an ", what, " file");
  errno = 0;
  std::ifstream f(path, std::ios::binary);
  if (!f) fail(path, ": cannot open ", what, " file (", errno ? std::strerror(errno) : "unknown error", ")");
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (f.bad()) fail(path, ": read error on ", what, " file");
  if (bytes.empty()) fail(path, ": empty ", what, " file");
  return bytes;
}

void write_file_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  errno = 0;
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) fail(path, ": cannot create file (", errno ? std::strerror(errno) : "unknown error", ")");
  f.write(reinterpret_cast<const char*>(bytes.data()), (std::streamsize)bytes.size());
  f.close();
  if (!f) fail(path, ": write error");
}

bool is_png(const std::vector<uint8_t>& b) { return b.size() >= 8 && png_sig_cmp(b.data(), 0, 8) == 0; }
bool is_jpeg(const std::vector<uint8_t>& b) { return b.size() >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF; }

// Sanity bound on decoded sizes (a corrupt header must not make us allocate terabytes).
constexpr uint64_t kMaxPixels = uint64_t(1) << 28;

// ------------------------------------------------------------------------------------------ PNG
struct PngErrorState {
  std::jmp_buf jb;
  char msg[256];
};

void png_error_cb(png_structp png, png_const_charp msg) {
  auto* e = static_cast<PngErrorState*>(png_get_error_ptr(png));
  std::snprintf(e->msg, sizeof e->msg, "%s", msg);
  std::longjmp(e->jb, 1);
}
void png_warning_cb(png_structp, png_const_charp) {}  // benign (e.g. unknown ancillary chunks)

struct PngSource {
  const uint8_t* data;
  size_t size;
  size_t pos;
};

void png_read_cb(png_structp png, png_bytep out, size_t n) {
  auto* s = static_cast<PngSource*>(png_get_io_ptr(png));
  if (s->size - s->pos < n) png_error(png, "unexpected end of file");
  std::memcpy(out, s->data + s->pos, n);
  s->pos += n;
}

enum class PngTarget { Image, Label };

struct PngDecode {
  PngErrorState err{};
  PngSource src{};
  PngTarget target = PngTarget::Image;
  std::vector<uint8_t>* pixels = nullptr;  // caller-owned output
  std::vector<uint8_t*>* rows = nullptr;   // caller-owned scratch
  uint32_t w = 0, h = 0;
  int channels = 0;
  char bad[256] = {0};  // a reason to reject the file that is not a libpng error
};

const char* png_color_name(int color_type) {
  switch (color_type) {
    case PNG_COLOR_TYPE_GRAY:
      return "gray";
    case PNG_COLOR_TYPE_GRAY_ALPHA:
      return "gray+alpha";
    case PNG_COLOR_TYPE_RGB:
      return "RGB";
    case PNG_COLOR_TYPE_RGB_ALPHA:
      return "RGBA";
    case PNG_COLOR_TYPE_PALETTE:
      return "palette";
  }
  return "unknown";
}

// Returns false with d->err.msg (libpng error) or d->bad (rejected content) set.
bool png_decode(PngDecode* d) {
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &d->err, png_error_cb, png_warning_cb);
  if (!png) {
    std::snprintf(d->err.msg, sizeof d->err.msg, "cannot create the libpng reader");
    return false;
  }
  png_infop info = png_create_info_struct(png);
  if (!info) {
    png_destroy_read_struct(&png, nullptr, nullptr);
    std::snprintf(d->err.msg, sizeof d->err.msg, "cannot create the libpng info struct");
    return false;
  }
  if (setjmp(d->err.jb)) {
    png_destroy_read_struct(&png, &info, nullptr);
    return false;
  }
  png_set_read_fn(png, &d->src, png_read_cb);
  png_read_info(png, info);
  d->w = png_get_image_width(png, info);
  d->h = png_get_image_height(png, info);
  const int color_type = png_get_color_type(png, info);
  const int bit_depth = png_get_bit_depth(png, info);
  if ((uint64_t)d->w * d->h > kMaxPixels) {
    std::snprintf(d->bad, sizeof d->bad, "image of %ux%u pixels is too large", d->w, d->h);
    png_destroy_read_struct(&png, &info, nullptr);
    return false;
  }
  if (d->target == PngTarget::Label) {
    if (color_type != PNG_COLOR_TYPE_GRAY && color_type != PNG_COLOR_TYPE_PALETTE) {
      std::snprintf(d->bad, sizeof d->bad,
                    "label PNG is %s; labels must be single-channel (gray or palette) PNGs of class indices",
                    png_color_name(color_type));
      png_destroy_read_struct(&png, &info, nullptr);
      return false;
    }
    if (bit_depth > 8) {
      std::snprintf(d->bad, sizeof d->bad,
                    "unsupported bit depth %d for a label PNG (expected 1, 2, 4 or 8-bit gray or palette)", bit_depth);
      png_destroy_read_struct(&png, &info, nullptr);
      return false;
    }
    if (bit_depth < 8) png_set_packing(png);  // one byte per pixel, raw values / indices (no scaling)
  } else {
    if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (bit_depth == 16) png_set_strip_16(png);  // keep the high byte, as cv2 does for 8-bit output
    if ((color_type & PNG_COLOR_MASK_ALPHA) || png_get_valid(png, info, PNG_INFO_tRNS)) png_set_strip_alpha(png);
    if (color_type == PNG_COLOR_TYPE_GRAY || color_type == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(png);
  }
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  d->channels = png_get_channels(png, info);
  const size_t rowbytes = png_get_rowbytes(png, info);
  const int want = d->target == PngTarget::Label ? 1 : 3;
  if (d->channels != want || rowbytes != (size_t)d->w * want) {
    std::snprintf(d->bad, sizeof d->bad, "unsupported PNG layout (%s, %d-bit, %d channels after conversion)",
                  png_color_name(color_type), bit_depth, d->channels);
    png_destroy_read_struct(&png, &info, nullptr);
    return false;
  }
  bool alloc_failed = false;
  try {
    d->pixels->resize(rowbytes * d->h);
    d->rows->resize(d->h);
  } catch (...) {
    alloc_failed = true;
  }
  if (alloc_failed) {
    std::snprintf(d->bad, sizeof d->bad, "out of memory for %ux%u pixels", d->w, d->h);
    png_destroy_read_struct(&png, &info, nullptr);
    return false;
  }
  for (uint32_t y = 0; y < d->h; ++y) (*d->rows)[y] = d->pixels->data() + y * rowbytes;
  png_read_image(png, d->rows->data());
  png_read_end(png, nullptr);
  png_destroy_read_struct(&png, &info, nullptr);
  return true;
}

struct PngEncode {
  PngErrorState err{};
  std::vector<uint8_t>* out = nullptr;  // caller-owned
  const uint8_t* pixels = nullptr;
  int w = 0, h = 0, channels = 0, color_type = 0;
  const png_color* palette = nullptr;
  int palette_size = 0;
};

void png_write_cb(png_structp png, png_bytep data, size_t n) {
  auto* e = static_cast<PngEncode*>(png_get_io_ptr(png));
  bool failed = false;
  try {
    e->out->insert(e->out->end(), data, data + n);
  } catch (...) {
    failed = true;
  }
  if (failed) png_error(png, "out of memory");  // outside the catch block: longjmp must not leave it
}
void png_flush_cb(png_structp) {}

bool png_encode(PngEncode* e) {
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &e->err, png_error_cb, png_warning_cb);
  if (!png) {
    std::snprintf(e->err.msg, sizeof e->err.msg, "cannot create the libpng writer");
    return false;
  }
  png_infop info = png_create_info_struct(png);
  if (!info) {
    png_destroy_write_struct(&png, nullptr);
    std::snprintf(e->err.msg, sizeof e->err.msg, "cannot create the libpng info struct");
    return false;
  }
  if (setjmp(e->err.jb)) {
    png_destroy_write_struct(&png, &info);
    return false;
  }
  png_set_write_fn(png, e, png_write_cb, png_flush_cb);
  png_set_IHDR(png, info, (png_uint_32)e->w, (png_uint_32)e->h, 8, e->color_type, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  if (e->palette) png_set_PLTE(png, info, e->palette, e->palette_size);
  png_write_info(png, info);
  for (int y = 0; y < e->h; ++y) png_write_row(png, const_cast<png_bytep>(e->pixels + (size_t)y * e->w * e->channels));
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return true;
}

// ------------------------------------------------------------------------------------------ JPEG
struct JpegErrorState {
  jpeg_error_mgr pub;  // first member: libjpeg hands us a pointer to it
  std::jmp_buf jb;
  char msg[JMSG_LENGTH_MAX];
};

void jpeg_error_exit_cb(j_common_ptr cinfo) {
  auto* e = reinterpret_cast<JpegErrorState*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, e->msg);
  std::longjmp(e->jb, 1);
}

// Warnings (level < 0) that mean the data is damaged are fatal: libjpeg would otherwise pad a
// truncated file with grey and return an image we would silently train on.
void jpeg_emit_message_cb(j_common_ptr cinfo, int level) {
  if (level >= 0) return;  // trace messages
  const int code = cinfo->err->msg_code;
  if (code == JWRN_JPEG_EOF || code == JWRN_HUFF_BAD_CODE) {
    auto* e = reinterpret_cast<JpegErrorState*>(cinfo->err);
    (*cinfo->err->format_message)(cinfo, e->msg);
    std::longjmp(e->jb, 1);
  }
}

struct JpegDecode {
  JpegErrorState err{};
  const uint8_t* data = nullptr;
  size_t size = 0;
  std::vector<uint8_t>* pixels = nullptr;  // caller-owned output, RGB
  int w = 0, h = 0;
  char bad[256] = {0};
};

bool jpeg_decode(JpegDecode* d) {
  jpeg_decompress_struct cinfo;
  std::memset(&cinfo, 0, sizeof cinfo);
  cinfo.err = jpeg_std_error(&d->err.pub);
  d->err.pub.error_exit = jpeg_error_exit_cb;
  d->err.pub.emit_message = jpeg_emit_message_cb;
  if (setjmp(d->err.jb)) {
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, const_cast<unsigned char*>(d->data), (unsigned long)d->size);
  jpeg_read_header(&cinfo, TRUE);
  if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
    std::snprintf(d->bad, sizeof d->bad, "unsupported JPEG colour space (CMYK); expected gray or RGB/YCbCr");
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  cinfo.out_color_space = JCS_RGB;
  jpeg_start_decompress(&cinfo);
  d->w = (int)cinfo.output_width;
  d->h = (int)cinfo.output_height;
  if ((uint64_t)d->w * (uint64_t)d->h > kMaxPixels || cinfo.output_components != 3) {
    std::snprintf(d->bad, sizeof d->bad, "unsupported JPEG (%dx%d, %d components)", d->w, d->h,
                  cinfo.output_components);
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  bool alloc_failed = false;
  try {
    d->pixels->resize((size_t)d->w * d->h * 3);
  } catch (...) {
    alloc_failed = true;
  }
  if (alloc_failed) {
    std::snprintf(d->bad, sizeof d->bad, "out of memory for %dx%d pixels", d->w, d->h);
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = d->pixels->data() + (size_t)cinfo.output_scanline * d->w * 3;
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return true;
}

struct JpegEncode {
  JpegErrorState err{};
  const uint8_t* pixels = nullptr;
  int w = 0, h = 0, channels = 0, quality = 95;
  unsigned char* buf = nullptr;  // malloc'ed by libjpeg (jpeg_mem_dest); freed by the caller
  unsigned long size = 0;
};

bool jpeg_encode(JpegEncode* e) {
  jpeg_compress_struct cinfo;
  std::memset(&cinfo, 0, sizeof cinfo);
  cinfo.err = jpeg_std_error(&e->err.pub);
  e->err.pub.error_exit = jpeg_error_exit_cb;
  if (setjmp(e->err.jb)) {
    jpeg_destroy_compress(&cinfo);
    return false;
  }
  jpeg_create_compress(&cinfo);
  jpeg_mem_dest(&cinfo, &e->buf, &e->size);
  cinfo.image_width = (JDIMENSION)e->w;
  cinfo.image_height = (JDIMENSION)e->h;
  cinfo.input_components = e->channels;
  cinfo.in_color_space = e->channels == 3 ? JCS_RGB : JCS_GRAYSCALE;
  jpeg_set_defaults(&cinfo);
  jpeg_set_quality(&cinfo, e->quality, TRUE);
  jpeg_start_compress(&cinfo, TRUE);
  while (cinfo.next_scanline < cinfo.image_height) {
    JSAMPROW row = const_cast<JSAMPROW>(e->pixels + (size_t)cinfo.next_scanline * e->w * e->channels);
    jpeg_write_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_compress(&cinfo);
  jpeg_destroy_compress(&cinfo);
  return true;
}

uint8_t to_u8(float v) {
  if (!(v > 0.f)) return 0;  // also NaN
  if (v >= 255.f) return 255;
  return (uint8_t)std::lround(v);
}

std::vector<uint8_t> image_to_u8(const std::string& path, const Image& img, bool allow_gray) {
  ENGINE_CHECK(img.c == 3 || (allow_gray && img.c == 1), path, ": cannot write an image with ", img.c,
               " channels (expected ", allow_gray ? "1 or 3" : "3", ")");
  ENGINE_CHECK(img.h > 0 && img.w > 0 && img.data.size() == (size_t)img.h * img.w * img.c, path,
               ": image buffer does not match its size ", img.h, "x", img.w, "x", img.c);
  std::vector<uint8_t> px(img.data.size());
  for (size_t i = 0; i < px.size(); ++i) px[i] = to_u8(img.data[i]);
  return px;
}

void write_png_u8(const std::string& path, const uint8_t* pixels, int w, int h, int channels, int color_type,
                  const std::vector<std::array<uint8_t, 3>>* palette) {
  std::vector<png_color> pal;
  if (palette) {
    ENGINE_CHECK(!palette->empty() && palette->size() <= 256, path, ": a PNG palette has 1..256 entries, got ",
                 palette->size());
    for (const auto& c : *palette) pal.push_back(png_color{c[0], c[1], c[2]});
  }
  std::vector<uint8_t> out;
  PngEncode e;
  e.out = &out;
  e.pixels = pixels;
  e.w = w;
  e.h = h;
  e.channels = channels;
  e.color_type = color_type;
  e.palette = palette ? pal.data() : nullptr;
  e.palette_size = (int)pal.size();
  if (!png_encode(&e)) fail(path, ": cannot encode PNG (libpng: ", e.err.msg, ")");
  write_file_bytes(path, out);
}

}  // namespace

Image read_image(const std::string& path) {
  const std::vector<uint8_t> bytes = read_file_bytes(path, "image");
  std::vector<uint8_t> px;
  Image img;
  if (is_png(bytes)) {
    std::vector<uint8_t*> rows;
    PngDecode d;
    d.src = PngSource{bytes.data(), bytes.size(), 0};
    d.target = PngTarget::Image;
    d.pixels = &px;
    d.rows = &rows;
    if (!png_decode(&d)) {
      if (d.bad[0]) fail(path, ": ", d.bad);
      fail(path, ": corrupt or truncated PNG (libpng: ", d.err.msg, ")");
    }
    img.h = (int)d.h;
    img.w = (int)d.w;
  } else if (is_jpeg(bytes)) {
    JpegDecode d;
    d.data = bytes.data();
    d.size = bytes.size();
    d.pixels = &px;
    if (!jpeg_decode(&d)) {
      if (d.bad[0]) fail(path, ": ", d.bad);
      fail(path, ": corrupt or truncated JPEG (libjpeg: ", d.err.msg, ")");
    }
    img.h = d.h;
    img.w = d.w;
  } else {
    fail(path, ": not a PNG or JPEG file (unrecognised header bytes)");
  }
  img.c = 3;
  img.data.assign(px.begin(), px.end());
  return img;
}

Label read_label(const std::string& path) {
  const std::vector<uint8_t> bytes = read_file_bytes(path, "label");
  if (is_jpeg(bytes))
    fail(path, ": labels must be single-channel PNG files (got a JPEG, whose lossy compression changes class indices)");
  if (!is_png(bytes)) fail(path, ": not a PNG file (unrecognised header bytes); labels must be single-channel PNGs");
  Label lab;
  std::vector<uint8_t*> rows;
  PngDecode d;
  d.src = PngSource{bytes.data(), bytes.size(), 0};
  d.target = PngTarget::Label;
  d.pixels = &lab.data;
  d.rows = &rows;
  if (!png_decode(&d)) {
    if (d.bad[0]) fail(path, ": ", d.bad);
    fail(path, ": corrupt or truncated PNG (libpng: ", d.err.msg, ")");
  }
  lab.h = (int)d.h;
  lab.w = (int)d.w;
  return lab;
}

void write_png(const std::string& path, const Image& img) {
  const std::vector<uint8_t> px = image_to_u8(path, img, /*allow_gray=*/true);
  write_png_u8(path, px.data(), img.w, img.h, img.c, img.c == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_GRAY, nullptr);
}

void write_png(const std::string& path, const Label& label) {
  ENGINE_CHECK(label.h > 0 && label.w > 0 && label.data.size() == (size_t)label.h * label.w, path,
               ": label buffer does not match its size ", label.h, "x", label.w);
  write_png_u8(path, label.data.data(), label.w, label.h, 1, PNG_COLOR_TYPE_GRAY, nullptr);
}

void write_png(const std::string& path, const Label& label, const std::vector<std::array<uint8_t, 3>>& palette) {
  ENGINE_CHECK(label.h > 0 && label.w > 0 && label.data.size() == (size_t)label.h * label.w, path,
               ": label buffer does not match its size ", label.h, "x", label.w);
  for (uint8_t v : label.data)
    ENGINE_CHECK(v < palette.size(), path, ": label value ", (int)v, " has no palette entry (palette size ",
                 palette.size(), ")");
  write_png_u8(path, label.data.data(), label.w, label.h, 1, PNG_COLOR_TYPE_PALETTE, &palette);
}

void write_jpeg(const std::string& path, const Image& img, int quality) {
  ENGINE_CHECK(quality >= 1 && quality <= 100, path, ": JPEG quality must be in 1..100, got ", quality);
  const std::vector<uint8_t> px = image_to_u8(path, img, /*allow_gray=*/true);
  JpegEncode e;
  e.pixels = px.data();
  e.w = img.w;
  e.h = img.h;
  e.channels = img.c;
  e.quality = quality;
  const bool ok = jpeg_encode(&e);
  // libjpeg malloc'ed the output buffer (on the error path too, or left it null).
  std::unique_ptr<unsigned char, void (*)(void*)> buf(e.buf, std::free);
  if (!ok) fail(path, ": cannot encode JPEG (libjpeg: ", e.err.msg, ")");
  write_file_bytes(path, std::vector<uint8_t>(buf.get(), buf.get() + e.size));
}

}  // namespace engine::data
