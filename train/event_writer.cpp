// TensorBoard event writer and CRC-32C. See event_writer.h for the format and its sources; tested
// by tests/test_event_writer.cpp.
#include "train/event_writer.h"

#include <unistd.h>

#include <array>
#include <bit>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>

#if defined(__SSE4_2__)
#include <nmmintrin.h>
#endif

#include "base/error.h"
#include "train/protobuf_wire.h"

static_assert(std::endian::native == std::endian::little, "event files and checkpoints are little-endian");

namespace engine::train {

// ------------------------------------------------------------------ CRC-32C
namespace {

// Slicing-by-8 tables: kTables[k][b] is the CRC of byte b followed by k zero bytes, so eight
// input bytes are folded per step with eight independent lookups.
struct Crc32cTables {
  std::array<std::array<uint32_t, 256>, 8> t{};
  Crc32cTables() {
    for (uint32_t b = 0; b < 256; ++b) {
      uint32_t c = b;
      for (int i = 0; i < 8; ++i) c = (c >> 1) ^ ((c & 1u) ? 0x82F63B78u : 0u);
      t[0][b] = c;
    }
    for (uint32_t b = 0; b < 256; ++b)
      for (int k = 1; k < 8; ++k) t[k][b] = (t[k - 1][b] >> 8) ^ t[0][t[k - 1][b] & 0xffu];
  }
};

const Crc32cTables& tables() {
  static const Crc32cTables tab;
  return tab;
}

// `state` is the raw (not inverted) register.
uint32_t crc32c_update_table(uint32_t state, const unsigned char* p, size_t n) {
  const auto& t = tables().t;
  while (n >= 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    v ^= state;
    state = t[7][v & 0xff] ^ t[6][(v >> 8) & 0xff] ^ t[5][(v >> 16) & 0xff] ^ t[4][(v >> 24) & 0xff] ^
            t[3][(v >> 32) & 0xff] ^ t[2][(v >> 40) & 0xff] ^ t[1][(v >> 48) & 0xff] ^ t[0][v >> 56];
    p += 8;
    n -= 8;
  }
  while (n--) state = (state >> 8) ^ t[0][(state ^ *p++) & 0xffu];
  return state;
}

}  // namespace

uint32_t crc32c_portable(const void* data, size_t n, uint32_t crc) {
  return ~crc32c_update_table(~crc, static_cast<const unsigned char*>(data), n);
}

uint32_t crc32c(const void* data, size_t n, uint32_t crc) {
#if defined(__SSE4_2__)
  const auto* p = static_cast<const unsigned char*>(data);
  uint64_t state = ~crc;
  while (n >= 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    state = _mm_crc32_u64(state, v);
    p += 8;
    n -= 8;
  }
  uint32_t s = (uint32_t)state;
  while (n--) s = _mm_crc32_u8(s, *p++);
  return ~s;
#else
  return crc32c_portable(data, n, crc);
#endif
}

uint32_t masked_crc32c(const void* data, size_t n) {
  const uint32_t c = crc32c(data, n);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

// ------------------------------------------------------------------ Event messages
using namespace protobuf;

std::string encode_file_version_event(double wall_time) {
  std::string e;
  put_key(e, 1, kFixed64);
  put_fixed(e, wall_time);
  put_bytes(e, 3, "brain.Event:2");
  return e;
}

std::string encode_scalar_event(double wall_time, int64_t step, const std::string& tag, float value) {
  std::string v;  // Summary.Value
  put_bytes(v, 1, tag);
  put_key(v, 2, kFixed32);
  put_fixed(v, value);
  std::string summary;
  put_bytes(summary, 1, v);
  std::string e;
  put_key(e, 1, kFixed64);
  put_fixed(e, wall_time);
  put_int64(e, 2, step);
  put_bytes(e, 5, summary);
  return e;
}

std::string frame_record(const std::string& data) {
  std::string r;
  r.reserve(data.size() + 16);
  put_fixed(r, (uint64_t)data.size());
  put_fixed(r, masked_crc32c(r.data(), 8));
  r += data;
  put_fixed(r, masked_crc32c(data.data(), data.size()));
  return r;
}

// ------------------------------------------------------------------ EventWriter
namespace {
double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}
}  // namespace

EventWriter::EventWriter(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  ENGINE_CHECK(!ec, "EventWriter: cannot create directory '", dir, "': ", ec.message());
  char host[256] = {0};
  if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == 0) std::strcpy(host, "localhost");
  const double t = now_seconds();
  const std::string base =
      (std::filesystem::path(dir) / ("events.out.tfevents." + std::to_string((long long)t) + "." + host)).string();
  path_ = base;
  for (int i = 1; std::filesystem::exists(path_, ec); ++i) path_ = base + "." + std::to_string(i);
  file_ = std::fopen(path_.c_str(), "wb");
  ENGINE_CHECK(file_ != nullptr, "EventWriter: cannot create '", path_, "': ", std::strerror(errno));
  write_record(encode_file_version_event(t));
  flush();
}

EventWriter::~EventWriter() {
  if (file_) std::fclose(file_);
}

void EventWriter::add_scalar(const std::string& tag, double value, int64_t step) {
  add_scalar(tag, value, step, now_seconds());
}

void EventWriter::add_scalar(const std::string& tag, double value, int64_t step, double wall_time) {
  // simple_value is a protobuf float: TensorBoard shows single precision anyway.
  write_record(encode_scalar_event(wall_time, step, tag, (float)value));
  flush();
}

void EventWriter::write_record(const std::string& data) {
  const std::string r = frame_record(data);
  ENGINE_CHECK(std::fwrite(r.data(), 1, r.size(), file_) == r.size(), "EventWriter: cannot write '", path_,
               "': ", std::strerror(errno));
}

void EventWriter::flush() {
  ENGINE_CHECK(std::fflush(file_) == 0, "EventWriter: cannot write '", path_, "': ", std::strerror(errno));
}

}  // namespace engine::train
