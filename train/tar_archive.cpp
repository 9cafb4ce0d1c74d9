#include "train/tar_archive.h"

#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <sstream>

#include "base/error.h"

namespace engine::train {
namespace {

constexpr size_t kBlock = 512;
// Refuse to inflate beyond this: published weights archives are well below it, a gzip bomb is not.
constexpr uint64_t kMaxInflated = uint64_t(16) << 30;

// A NUL-terminated (or full-width) header field.
std::string field(const char* h, size_t off, size_t len) {
  const char* p = h + off;
  return std::string(p, strnlen(p, len));
}

// Numeric header fields: octal text (spaces/NULs around it), or GNU base-256 when the top bit is set.
bool parse_number(const char* h, size_t off, size_t len, uint64_t& out) {
  const unsigned char* p = (const unsigned char*)h + off;
  if (p[0] & 0x80) {
    if (p[0] != 0x80) return false;  // negative base-256 values: not a size
    uint64_t v = 0;
    for (size_t k = 1; k < len; ++k) {
      if (v >> 56) return false;
      v = (v << 8) | p[k];
    }
    out = v;
    return true;
  }
  size_t k = 0;
  while (k < len && (p[k] == ' ' || p[k] == 0)) ++k;
  uint64_t v = 0;
  bool any = false;
  for (; k < len && p[k] >= '0' && p[k] <= '7'; ++k) {
    if (v >> 60) return false;
    v = v * 8 + (p[k] - '0');
    any = true;
  }
  for (; k < len; ++k)
    if (p[k] != ' ' && p[k] != 0) return false;
  out = v;
  return any;
}

bool checksum_ok(const char* h) {
  uint64_t want;
  if (!parse_number(h, 148, 8, want)) return false;
  uint64_t sum = 0;
  int64_t ssum = 0;  // some old tars summed signed chars
  for (size_t k = 0; k < kBlock; ++k) {
    const bool in_field = k >= 148 && k < 156;
    sum += in_field ? ' ' : (unsigned char)h[k];
    ssum += in_field ? ' ' : (signed char)h[k];
  }
  return sum == want || (uint64_t)ssum == want;
}

bool all_zero(const char* h) {
  for (size_t k = 0; k < kBlock; ++k)
    if (h[k]) return false;
  return true;
}

// pax records "<len> <key>=<value>\n": picks path and size.
void parse_pax(const std::string& rec, std::string& path, uint64_t& size, bool& has_size, const std::string& where) {
  size_t p = 0;
  while (p < rec.size()) {
    if (rec[p] == '\0') break;  // padding
    size_t sp = rec.find(' ', p);
    if (sp == std::string::npos) fail(where, ": malformed pax header");
    uint64_t len = 0;
    for (size_t k = p; k < sp; ++k) {
      if (rec[k] < '0' || rec[k] > '9' || len > rec.size()) fail(where, ": malformed pax record length");
      len = len * 10 + (uint64_t)(rec[k] - '0');
    }
    if (len < sp - p + 2 || p + len > rec.size() || rec[p + len - 1] != '\n') fail(where, ": malformed pax record");
    const std::string kv = rec.substr(sp + 1, p + len - 1 - (sp + 1));
    const size_t eq = kv.find('=');
    if (eq != std::string::npos) {
      const std::string key = kv.substr(0, eq), value = kv.substr(eq + 1);
      if (key == "path") path = value;
      if (key == "size") {
        uint64_t v = 0;
        for (char c : value) {
          if (c < '0' || c > '9' || v > (uint64_t(1) << 58)) fail(where, ": malformed pax size");
          v = v * 10 + (uint64_t)(c - '0');
        }
        size = v;
        has_size = true;
      }
    }
    p += len;
  }
}

}  // namespace

bool is_gzip(const char* data, size_t size) {
  return size >= 2 && (unsigned char)data[0] == 0x1f && (unsigned char)data[1] == 0x8b;
}

bool looks_like_tar(const char* data, size_t size) {
  if (size < kBlock || all_zero(data)) return false;
  return checksum_ok(data);
}

std::string gunzip(const char* data, size_t size, const std::string& source) {
  std::string out;
  // Weights barely compress: start near the input size and double when needed.
  out.resize(std::min<uint64_t>(std::max<uint64_t>(size + size / 2, 1 << 16), kMaxInflated));
  size_t in_pos = 0, out_pos = 0;
  while (true) {
    z_stream zs{};
    if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) fail(source, ": zlib inflateInit2 failed");
    int rc = Z_OK;
    while (rc != Z_STREAM_END) {
      if (out_pos == out.size()) {
        if (out.size() >= kMaxInflated) {
          inflateEnd(&zs);
          fail(source, ": decompresses to more than ", kMaxInflated >> 30, " GiB; refused");
        }
        out.resize(std::min<uint64_t>(out.size() * 2, kMaxInflated));
      }
      const size_t in_chunk = std::min<size_t>(size - in_pos, 1u << 30);
      const size_t out_chunk = std::min<size_t>(out.size() - out_pos, 1u << 30);
      zs.next_in = (Bytef*)(data + in_pos);
      zs.avail_in = (uInt)in_chunk;
      zs.next_out = (Bytef*)(out.data() + out_pos);
      zs.avail_out = (uInt)out_chunk;
      rc = inflate(&zs, Z_NO_FLUSH);
      in_pos += in_chunk - zs.avail_in;
      out_pos += out_chunk - zs.avail_out;
      if (rc == Z_STREAM_END) break;
      if (rc == Z_BUF_ERROR && in_pos == size) {
        inflateEnd(&zs);
        fail(source, ": truncated gzip data (ends after ", size, " bytes, ", out_pos, " bytes decompressed)");
      }
      if (rc != Z_OK && rc != Z_BUF_ERROR) {
        const std::string msg = zs.msg ? zs.msg : "error " + std::to_string(rc);
        inflateEnd(&zs);
        fail(source, ": corrupt gzip data at compressed byte ", in_pos, " (zlib: ", msg, ")");
      }
      if (in_pos == size && zs.avail_out != 0) {
        inflateEnd(&zs);
        fail(source, ": truncated gzip data (ends after ", size, " bytes, ", out_pos, " bytes decompressed)");
      }
    }
    inflateEnd(&zs);
    // gzip allows several members one after another (cat a.gz b.gz); anything else after is ignored,
    // as gzip -d does with trailing zeros.
    if (!is_gzip(data + in_pos, size - in_pos)) break;
  }
  out.resize(out_pos);
  return out;
}

std::string read_file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  ENGINE_CHECK(in, path, ": cannot open");
  std::ostringstream ss;
  ss << in.rdbuf();
  ENGINE_CHECK(!in.bad(), path, ": read error");
  return ss.str();
}

TarArchive TarArchive::open(const std::string& path) { return from_bytes(read_file_bytes(path), path); }

TarArchive TarArchive::from_bytes(std::string bytes, const std::string& source) {
  TarArchive a;
  a.source_ = source;
  a.bytes_ = is_gzip(bytes.data(), bytes.size()) ? gunzip(bytes.data(), bytes.size(), source) : std::move(bytes);
  const std::string& b = a.bytes_;
  ENGINE_CHECK(looks_like_tar(b.data(), b.size()), source, ": not a tar archive (no valid tar header at the start",
               is_gzip(b.data(), b.size()) ? "" : " of the data", ")");
  std::string next_name;  // from a GNU 'L' or pax 'x' header, for the next member
  uint64_t next_size = 0;
  bool has_next_size = false;
  uint64_t pos = 0;
  while (pos + kBlock <= b.size()) {
    const char* h = b.data() + pos;
    if (all_zero(h)) break;  // end-of-archive marker
    const std::string where = source + ": tar header at byte " + std::to_string(pos);
    ENGINE_CHECK(checksum_ok(h), where, ": bad checksum (corrupt archive)");
    uint64_t size;
    ENGINE_CHECK(parse_number(h, 124, 12, size), where, ": bad size field");
    const char type = h[156];
    if (has_next_size && type != 'x' && type != 'g' && type != 'L') size = next_size;
    const uint64_t data_pos = pos + kBlock;
    ENGINE_CHECK(size <= b.size() - data_pos, where, ": member of ", size, " bytes runs past the end (",
                 b.size() - data_pos, " bytes left): truncated archive");
    std::string name = field(h, 0, 100);
    if (std::memcmp(h + 257, "ustar\0", 6) == 0) {  // POSIX ustar: a prefix in front of the name
      const std::string prefix = field(h, 345, 155);
      if (!prefix.empty()) name = prefix + "/" + name;
    }
    if (type == 'L') {
      next_name = std::string(b.data() + data_pos, strnlen(b.data() + data_pos, size));
    } else if (type == 'x') {
      parse_pax(std::string(b.data() + data_pos, size), next_name, next_size, has_next_size, where);
    } else if (type == 'g') {
      // global pax header: nothing needed from it
    } else {
      if (!next_name.empty()) name = next_name;
      if (type == '0' || type == '\0' || type == '7') a.members_.push_back({name, data_pos, size});
      next_name.clear();
      has_next_size = false;
    }
    pos = data_pos + (size + kBlock - 1) / kBlock * kBlock;
  }
  // Ending without the zero blocks is tolerated (as Python's tarfile does), a partial header is not.
  ENGINE_CHECK(pos >= b.size() || (pos + kBlock <= b.size() && all_zero(b.data() + pos)), source,
               ": tar header at byte ", pos, ": only ", b.size() - pos, " of its 512 bytes: truncated archive");
  return a;
}

std::string TarArchive::read(const std::string& member) const {
  for (const auto& m : members_)
    if (m.name == member) return std::string(data(m), m.size);
  fail(source_, ": no member '", member, "' in the archive");
}

const TarMember& TarArchive::single_with_suffix(const std::string& suffix) const {
  std::vector<const TarMember*> hits;
  for (const auto& m : members_) {
    const size_t slash = m.name.rfind('/');
    const std::string base = slash == std::string::npos ? m.name : m.name.substr(slash + 1);
    if (base.rfind("._", 0) == 0) continue;  // AppleDouble metadata that macOS tar adds beside each file
    if (base.size() > suffix.size() && base.compare(base.size() - suffix.size(), suffix.size(), suffix) == 0)
      hits.push_back(&m);
  }
  if (hits.size() == 1) return *hits[0];
  std::string list;
  for (size_t k = 0; k < members_.size() && k < 20; ++k) list += (k ? ", " : "") + members_[k].name;
  if (members_.size() > 20) list += ", ... (" + std::to_string(members_.size()) + " in all)";
  fail(source_, ": expected exactly one *", suffix, " file in the archive, found ", hits.size(),
       " (members: ", list.empty() ? "none" : list, ")");
}

}  // namespace engine::train
