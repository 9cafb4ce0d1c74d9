// VisualDL record writer and reader. See vdl_writer.h for the format and its sources (visualdl
// 2.5.3); tested by tests/test_vdl_writer.cpp.
#include "train/vdl_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "base/error.h"
#include "train/protobuf_wire.h"

static_assert(std::endian::native == std::endian::little, "VisualDL records are little-endian");

namespace engine::train {

using namespace protobuf;

namespace {

// Value fields (record_pb2.py: Record.Value).
constexpr uint32_t kValueId = 1, kValueTag = 2, kValueTimestamp = 3, kValueValue = 4, kValueMetaData = 10;

std::string value_head(const std::string& tag, int64_t step, int64_t timestamp_ms) {
  std::string v;
  put_int64(v, kValueId, step);
  if (!tag.empty()) put_bytes(v, kValueTag, tag);
  put_int64(v, kValueTimestamp, timestamp_ms);
  return v;
}

std::string record_of(const std::string& value) {
  std::string r;
  put_bytes(r, 1, value);  // Record.values
  return r;
}

}  // namespace

std::string encode_vdl_meta_record(int64_t timestamp_ms) {
  std::string v = value_head("meta_data_tag", 0, timestamp_ms);
  put_bytes(v, kValueMetaData, "");  // MetaData{display_name = ""}: present (oneof) and empty
  return record_of(v);
}

std::string encode_vdl_scalar_record(const std::string& tag, float value, int64_t step, int64_t timestamp_ms) {
  std::string v = value_head(tag, step, timestamp_ms);
  put_key(v, kValueValue, kFixed32);
  char b[4];
  std::memcpy(b, &value, 4);
  v.append(b, 4);
  return record_of(v);
}

std::string frame_vdl_record(const std::string& data) {
  std::string r(8, '\0');
  const uint64_t n = data.size();
  std::memcpy(r.data(), &n, 8);
  return r + data;
}

// ------------------------------------------------------------------ VdlWriter
namespace {
double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}
// LogWriter: round(time.time() * 1000).
int64_t to_ms(double seconds) { return (int64_t)std::llround(seconds * 1000.0); }
}  // namespace

VdlWriter::VdlWriter(const std::string& dir) : VdlWriter(dir, now_seconds()) {}

VdlWriter::VdlWriter(const std::string& dir, double start_time) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  ENGINE_CHECK(!ec, "VdlWriter: cannot create directory '", dir, "': ", ec.message());
  char name[64];
  std::snprintf(name, sizeof(name), "vdlrecords.%010lld.log", (long long)start_time);
  const std::string base = (std::filesystem::path(dir) / name).string();
  int fd = -1;
  for (int i = 0; fd < 0; ++i) {
    path_ = i == 0 ? base : base + "." + std::to_string(i);
    // O_EXCL: an existing file (an earlier run, or a second writer in the same second) is never truncated.
    fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    ENGINE_CHECK(fd >= 0 || errno == EEXIST, "VdlWriter: cannot create '", path_, "': ", std::strerror(errno));
  }
  file_ = ::fdopen(fd, "wb");
  if (!file_) {
    const int err = errno;
    ::close(fd);
    fail("VdlWriter: cannot open '", path_, "': ", std::strerror(err));
  }
  try {
    write_record(encode_vdl_meta_record(to_ms(start_time)));
  } catch (...) {
    std::fclose(file_);  // the destructor does not run for a constructor that throws
    throw;
  }
}

VdlWriter::~VdlWriter() {
  if (file_) std::fclose(file_);
}

void VdlWriter::add_scalar(const std::string& tag, double value, int64_t step) {
  add_scalar(tag, value, step, now_seconds());
}

void VdlWriter::add_scalar(const std::string& tag, double value, int64_t step, double wall_time) {
  ENGINE_CHECK(tag.find('%') == std::string::npos, "VdlWriter: tag '", tag,
               "' contains '%', which VisualDL's reader takes for '/'");
  // Value.value is a protobuf float (VisualDL converts with float(value), protobuf rounds to float).
  write_record(encode_vdl_scalar_record(tag, (float)value, step, to_ms(wall_time)));
}

void VdlWriter::write_record(const std::string& data) {
  const std::string r = frame_vdl_record(data);
  ENGINE_CHECK(std::fwrite(r.data(), 1, r.size(), file_) == r.size() && std::fflush(file_) == 0,
               "VdlWriter: cannot write '", path_, "': ", std::strerror(errno));
}

// ------------------------------------------------------------------ reader
namespace {

struct Cursor {
  const std::string& s;
  size_t pos, end;
  const std::string& path;
  size_t record_at;
  [[noreturn]] void bad(const char* what) const {
    fail("read_vdl_records: '", path, "': record at byte ", record_at, ": ", what);
  }
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos >= end) bad("truncated varint");
      const uint8_t b = (uint8_t)s[pos++];
      v |= (uint64_t)(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
    bad("varint longer than 10 bytes");
  }
  std::string bytes() {
    const uint64_t n = varint();
    if (n > end - pos) bad("length-delimited field runs past the record");
    std::string c = s.substr(pos, n);
    pos += n;
    return c;
  }
  void skip(uint32_t wire) {
    if (wire == kVarint) {
      varint();
    } else if (wire == kLengthDelimited) {
      bytes();
    } else if (wire == kFixed64 || wire == kFixed32) {
      const size_t n = wire == kFixed64 ? 8 : 4;
      if (end - pos < n) bad("truncated fixed-size field");
      pos += n;
    } else {
      bad("unknown protobuf wire type");
    }
  }
};

VdlRecord parse_value(const std::string& v, const std::string& path, size_t at) {
  VdlRecord r;
  Cursor c{v, 0, v.size(), path, at};
  while (c.pos < c.end) {
    const uint64_t key = c.varint();
    const uint32_t field = (uint32_t)(key >> 3), wire = (uint32_t)(key & 7);
    if (field == kValueId && wire == kVarint) {
      r.step = (int64_t)c.varint();
    } else if (field == kValueTag && wire == kLengthDelimited) {
      r.tag = c.bytes();
    } else if (field == kValueTimestamp && wire == kVarint) {
      r.timestamp_ms = (int64_t)c.varint();
    } else if (field == kValueValue && wire == kFixed32) {
      if (c.end - c.pos < 4) c.bad("truncated float value");
      std::memcpy(&r.value, v.data() + c.pos, 4);
      c.pos += 4;
      r.kind = VdlRecord::kScalar;
    } else if (field == kValueMetaData && wire == kLengthDelimited) {
      const std::string m = c.bytes();
      Cursor cm{m, 0, m.size(), path, at};
      while (cm.pos < cm.end) {
        const uint64_t k = cm.varint();
        if (k == ((1u << 3) | kLengthDelimited))
          r.display_name = cm.bytes();
        else
          cm.skip((uint32_t)(k & 7));
      }
      r.kind = VdlRecord::kMeta;
    } else {
      c.skip(wire);  // image, audio, histogram, ...: the record stays kOther
    }
  }
  return r;
}

}  // namespace

std::vector<VdlRecord> read_vdl_records(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  ENGINE_CHECK(in.good(), "read_vdl_records: cannot open '", path, "': ", std::strerror(errno));
  return parse_vdl_records(std::string((std::istreambuf_iterator<char>(in)), {}), path);
}

std::vector<VdlRecord> parse_vdl_records(const std::string& s, const std::string& path) {
  std::vector<VdlRecord> out;
  size_t pos = 0;
  while (pos < s.size()) {
    const size_t at = pos;
    ENGINE_CHECK(s.size() - pos >= 8, "read_vdl_records: '", path, "': record at byte ", at, ": truncated length (",
                 s.size() - pos, " of 8 bytes)");
    uint64_t n;
    std::memcpy(&n, s.data() + pos, 8);
    pos += 8;
    ENGINE_CHECK(n <= s.size() - pos, "read_vdl_records: '", path, "': record at byte ", at, ": length ", n,
                 " runs past the end of the file (", s.size() - pos, " bytes left)");
    Cursor c{s, pos, pos + (size_t)n, path, at};
    VdlRecord r;
    bool first = true;
    while (c.pos < c.end) {
      const uint64_t key = c.varint();
      if (key == ((1u << 3) | kLengthDelimited) && first) {  // Record.values: VisualDL reads values[0]
        r = parse_value(c.bytes(), path, at);
        first = false;
      } else {
        c.skip((uint32_t)(key & 7));
      }
    }
    if (first) c.bad("no Record.values");
    out.push_back(std::move(r));
    pos += n;
  }
  return out;
}

}  // namespace engine::train
