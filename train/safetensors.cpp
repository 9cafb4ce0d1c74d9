// safetensors checkpoints: atomic writer, validating reader, name/shape/dtype matching. Format,
// checksum and sources in safetensors.h; tested by tests/test_safetensors.cpp.
#include "train/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "train/event_writer.h"  // crc32c

static_assert(std::endian::native == std::endian::little, "checkpoints are little-endian");

namespace engine::train {

namespace {

constexpr const char* kFormat = "engine-checkpoint-2";    // checksum over canonical header + data
constexpr const char* kFormatV1 = "engine-checkpoint-1";  // checksum over the data section only
constexpr const char* kChecksumPrefix = "crc32c:";
constexpr DType kDTypes[] = {DType::F32, DType::F16, DType::BF16, DType::I32, DType::I64, DType::U8};
constexpr uint64_t kMaxHeaderLen = 100'000'000;  // as the safetensors project limits it
constexpr int kMaxDepth = 64;                    // our headers nest 3 deep
constexpr size_t kMaxShown = 200;                // bytes of a name or value quoted in a message

std::string errno_text() { return std::strerror(errno); }

std::string hex32(uint32_t v) {
  char b[16];
  std::snprintf(b, sizeof(b), "%08x", v);
  return b;
}

// A name, value or JSON excerpt for a one-line message: control characters escaped, cut after
// kMaxShown bytes.
std::string shown(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size() && i < kMaxShown; ++i) {
    const unsigned char c = (unsigned char)s[i];
    if (c < 0x20 || c == 0x7f) {
      char b[8];
      std::snprintf(b, sizeof(b), "\\x%02x", c);
      out += b;
    } else {
      out += (char)c;
    }
  }
  if (s.size() > kMaxShown) out += "...";
  return out;
}

// One row of the tensor table.
struct Entry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin, end;
};

// The canonical order of the table (safetensors.h): by offsets, ties (empty tensors) by name.
bool canonical_less(const Entry& a, const Entry& b) {
  if (a.begin != b.begin) return a.begin < b.begin;
  if (a.end != b.end) return a.end < b.end;
  return a.name < b.name;  // std::string compares bytes as unsigned char
}

void put_u64(std::string& s, uint64_t v) {
  char b[8];
  std::memcpy(b, &v, 8);
  s.append(b, 8);
}
void put_str(std::string& s, const std::string& v) {
  put_u64(s, v.size());
  s += v;
}

// The canonical header encoding that format 2's checksum covers before the data (safetensors.h).
// `entries` must be in canonical order.
std::string canonical_header(const std::vector<Entry>& entries, const std::map<std::string, std::string>& metadata) {
  std::string s;
  put_u64(s, entries.size());
  for (const Entry& e : entries) {
    put_str(s, e.name);
    put_str(s, safetensors_dtype_name(e.dtype));
    put_u64(s, e.shape.size());
    for (int64_t d : e.shape) put_u64(s, (uint64_t)d);
    put_u64(s, e.begin);
    put_u64(s, e.end);
  }
  put_u64(s, metadata.size() - metadata.count("checksum"));
  for (const auto& [k, v] : metadata) {  // std::map: byte-wise ascending keys
    if (k == "checksum") continue;
    put_str(s, k);
    put_str(s, v);
  }
  return s;
}

// Writes all n bytes (write() may write fewer or be interrupted).
bool write_all(int fd, const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= (size_t)w;
  }
  return true;
}

// Reads exactly n bytes at `offset`; false on error or end of file.
bool read_all(int fd, void* data, size_t n, uint64_t offset) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    const ssize_t r = ::pread(fd, p, n, (off_t)offset);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= (size_t)r;
    offset += (uint64_t)r;
  }
  return true;
}

struct Fd {  // closes on scope exit
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

const char* safetensors_dtype_name(DType t) {
  switch (t) {
    case DType::F32:
      return "F32";
    case DType::F16:
      return "F16";
    case DType::BF16:
      return "BF16";
    case DType::I32:
      return "I32";
    case DType::I64:
      return "I64";
    case DType::U8:
      return "U8";
  }
  return "?";
}

// ------------------------------------------------------------------ save
void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      std::map<std::string, std::string> metadata) {
  // Everything that can fail for reasons of the arguments fails before the file system is touched.
  std::set<std::string> seen;
  std::vector<Tensor> host;
  host.reserve(tensors.size());
  for (const auto& [name, t] : tensors) {
    ENGINE_CHECK(!name.empty(), "save_safetensors '", path, "': a tensor has an empty name");
    ENGINE_CHECK(name != "__metadata__", "save_safetensors '", path,
                 "': '__metadata__' is reserved, not a tensor name");
    ENGINE_CHECK(seen.insert(name).second, "save_safetensors '", path, "': tensor name '", name, "' appears twice");
    ENGINE_CHECK(t.defined(), "save_safetensors '", path, "': tensor '", name, "' is undefined");
    const Tensor d = t.detach();
    host.push_back(d.device().is_cpu() ? d.contiguous() : d.to(Device::cpu()));  // to() returns contiguous
  }

  nlohmann::json header = nlohmann::json::object();
  std::vector<Entry> table;
  uint64_t offset = 0;
  for (size_t i = 0; i < host.size(); ++i) {
    const uint64_t n = host[i].nbytes();
    header[tensors[i].first] = {{"dtype", safetensors_dtype_name(host[i].dtype())},
                                {"shape", host[i].shape()},
                                {"data_offsets", {offset, offset + n}}};
    table.push_back({tensors[i].first, host[i].dtype(), host[i].shape(), offset, offset + n});
    offset += n;
  }
  metadata["format"] = kFormat;
  metadata.erase("checksum");
  std::stable_sort(table.begin(), table.end(), canonical_less);
  const std::string canon = canonical_header(table, metadata);
  uint32_t crc = crc32c(canon.data(), canon.size());
  for (const Tensor& h : host)
    if (h.nbytes()) crc = crc32c(h.raw_data(), h.nbytes(), crc);
  metadata["checksum"] = kChecksumPrefix + hex32(crc);
  header["__metadata__"] = metadata;
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::type_error&) {
    fail("save_safetensors '", path, "': a tensor name or metadata entry is not valid UTF-8");
  }
  text.append((8 - text.size() % 8) % 8, ' ');  // 8-byte alignment of the data, as safetensors writes
  const uint64_t header_len = text.size();

  const std::string tmp = path + ".tmp-" + std::to_string((long long)::getpid());
  Fd f;
  auto fail_io = [&](const std::string& what) {
    const std::string err = errno_text();
    if (f.fd >= 0) ::close(f.fd);
    f.fd = -1;
    ::unlink(tmp.c_str());
    fail("save_safetensors: cannot ", what, " '", what == "replace" ? path : tmp, "': ", err);
  };
  f.fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (f.fd < 0) fail_io("create");
  if (!write_all(f.fd, &header_len, 8) || !write_all(f.fd, text.data(), text.size())) fail_io("write");
  for (const Tensor& h : host)
    if (h.nbytes() && !write_all(f.fd, h.raw_data(), h.nbytes())) fail_io("write");
  if (::fsync(f.fd) != 0) fail_io("fsync");
  const int fd = f.fd;
  f.fd = -1;
  if (::close(fd) != 0) fail_io("close");
  if (::rename(tmp.c_str(), path.c_str()) != 0) fail_io("replace");

  // The rename is durable only once the directory entry is on disk.
  std::string dir = std::filesystem::path(path).parent_path().string();
  if (dir.empty()) dir = ".";
  Fd d;
  d.fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ENGINE_CHECK(d.fd >= 0, "save_safetensors: wrote '", path,
               "' but cannot open its directory to fsync it: ", errno_text());
  // EINVAL: the file system does not support fsync of directories (nothing more can be done).
  ENGINE_CHECK(::fsync(d.fd) == 0 || errno == EINVAL, "save_safetensors: wrote '", path,
               "' but cannot fsync its directory: ", errno_text());
}

// ------------------------------------------------------------------ load
const Tensor* LoadedTensors::find(const std::string& name) const {
  for (const auto& [n, t] : tensors)
    if (n == name) return &t;
  return nullptr;
}

LoadedTensors load_safetensors(const std::string& path, bool verify_checksum) {
  const std::string where = "checkpoint '" + path + "'";
  Fd f;
  f.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  ENGINE_CHECK(f.fd >= 0, "cannot open ", where, ": ", errno_text());
  struct stat st {};
  ENGINE_CHECK(::fstat(f.fd, &st) == 0, "cannot stat ", where, ": ", errno_text());
  ENGINE_CHECK(S_ISREG(st.st_mode), where, " is not a regular file");
  const uint64_t file_size = (uint64_t)st.st_size;
  ENGINE_CHECK(file_size >= 8, where, " is truncated: ", file_size, " bytes, shorter than the 8-byte header length");
  uint64_t header_len = 0;
  ENGINE_CHECK(read_all(f.fd, &header_len, 8, 0), "cannot read ", where, ": ", errno_text());
  ENGINE_CHECK(header_len <= file_size - 8, where, ": header length ", header_len,
               " is larger than the rest of the file (", file_size - 8, " bytes): truncated or not a safetensors file");
  ENGINE_CHECK(header_len <= kMaxHeaderLen, where, ": header length ", header_len, " is above the limit of ",
               kMaxHeaderLen, " bytes: not a checkpoint header");
  std::string text(header_len, '\0');
  errno = 0;
  ENGINE_CHECK(read_all(f.fd, text.data(), header_len, 8), "cannot read ", where, ": ",
               errno ? errno_text() : "unexpected end of file");

  // Parsed with a callback that refuses duplicate keys (JSON readers disagree on which one wins)
  // and nesting beyond kMaxDepth (before the parser builds it), each as one line naming the file.
  nlohmann::json header;
  {
    using Event = nlohmann::json::parse_event_t;
    std::vector<std::set<std::string>> keys;  // of each open object
    auto check = [&](int depth, Event ev, nlohmann::json& parsed) {
      switch (ev) {
        case Event::object_start:
        case Event::array_start:
          ENGINE_CHECK(depth < kMaxDepth, where, ": header nests JSON deeper than ", kMaxDepth,
                       " levels: not a checkpoint header");
          if (ev == Event::object_start) keys.emplace_back();
          break;
        case Event::object_end:
          if (!keys.empty()) keys.pop_back();
          break;
        case Event::key:
          if (!keys.empty() && parsed.is_string())
            ENGINE_CHECK(keys.back().insert(parsed.get_ref<const std::string&>()).second, where,
                         ": header has the key '", shown(parsed.get_ref<const std::string&>()),
                         "' twice in one object");
          break;
        default:
          break;
      }
      return true;
    };
    try {
      header = nlohmann::json::parse(text, check);
    } catch (const nlohmann::json::parse_error& e) {
      std::string what = e.what();
      if (const size_t colon = what.find(": "); colon != std::string::npos) what = what.substr(colon + 2);
      fail(where, ": header is not valid JSON (error at byte ", e.byte, " of ", header_len, ": ", shown(what), ")");
    } catch (const nlohmann::json::exception& e) {  // e.g. out_of_range.406: a number such as 1e400
      std::string what = e.what();
      if (const size_t bracket = what.find("] "); what.rfind("[json.", 0) == 0 && bracket != std::string::npos)
        what = what.substr(bracket + 2);
      fail(where, ": header is not valid JSON (", shown(what), ")");
    }
  }
  ENGINE_CHECK(header.is_object(), where, ": header is not a JSON object");

  LoadedTensors out;
  out.path = path;
  std::vector<Entry> entries;
  try {
    for (const auto& [name, e] : header.items()) {
      if (name == "__metadata__") {
        ENGINE_CHECK(e.is_object(), where, ": __metadata__ must be an object of strings");
        for (const auto& [k, v] : e.items()) {
          ENGINE_CHECK(v.is_string(), where, ": __metadata__ value of '", shown(k), "' is not a string");
          out.metadata[k] = v.get<std::string>();
        }
        continue;
      }
      const std::string t = where + ": tensor '" + shown(name) + "'";
      ENGINE_CHECK(e.is_object(), t, " is not an object");
      for (const char* key : {"dtype", "shape", "data_offsets"})
        ENGINE_CHECK(e.contains(key), t, " has no '", key, "'");
      const auto& jd = e["dtype"];
      ENGINE_CHECK(jd.is_string(), t, ": 'dtype' is not a string");
      Entry en{name, DType::F32, {}, 0, 0};
      bool known = false;
      for (DType d : kDTypes)
        if (jd.get<std::string>() == safetensors_dtype_name(d)) en.dtype = d, known = true;
      ENGINE_CHECK(known, t, " has unknown dtype '", shown(jd.get<std::string>()),
                   "' (supported: F32, F16, BF16, I32, I64, U8)");
      const auto& js = e["shape"];
      ENGINE_CHECK(js.is_array(), t, ": 'shape' ", shown(js.dump()), " is not a list");
      // Bytes (need) and the product of the non-zero dims (the largest stride) must both fit.
      uint64_t need = dtype_size(en.dtype);
      uint64_t nonzero = 1;
      constexpr uint64_t kMaxI64 = (uint64_t)std::numeric_limits<int64_t>::max();
      for (const auto& d : js) {
        ENGINE_CHECK(d.is_number_unsigned(), t, ": 'shape' ", shown(js.dump()), " must hold non-negative integers");
        const uint64_t v = d.get<uint64_t>();
        ENGINE_CHECK(v <= kMaxI64 && (v == 0 || (need <= UINT64_MAX / v && nonzero <= kMaxI64 / v)), t, ": 'shape' ",
                     shown(js.dump()), " is too large");
        en.shape.push_back((int64_t)v);
        need *= v;
        if (v) nonzero *= v;
      }
      const auto& jo = e["data_offsets"];
      ENGINE_CHECK(jo.is_array() && jo.size() == 2 && jo[0].is_number_unsigned() && jo[1].is_number_unsigned(), t,
                   ": 'data_offsets' ", shown(jo.dump()), " must be two non-negative integers [begin, end]");
      en.begin = jo[0].get<uint64_t>();
      en.end = jo[1].get<uint64_t>();
      ENGINE_CHECK(en.begin <= en.end, t, ": data_offsets [", en.begin, ", ", en.end, "] end before they begin");
      ENGINE_CHECK(en.end - en.begin == need, t, ": data_offsets [", en.begin, ", ", en.end, "] hold ",
                   en.end - en.begin, " bytes but shape ", shape_str(en.shape), " x ", jd.get<std::string>(), " needs ",
                   need);
      entries.push_back(std::move(en));
    }
  } catch (const nlohmann::json::exception& e) {  // not expected after the checks above; one line anyway
    fail(where, ": header cannot be read (", shown(e.what()), ")");
  }

  // Packed in offset order from 0 with no gaps and no overlap, exactly filling the data section.
  std::sort(entries.begin(), entries.end(), canonical_less);
  const uint64_t data_len = file_size - 8 - header_len;
  uint64_t pos = 0;
  const Entry* prev = nullptr;
  for (const Entry& en : entries) {
    ENGINE_CHECK(en.begin >= pos, where, ": tensors '", prev ? shown(prev->name) : "", "' and '", shown(en.name),
                 "' overlap (data_offsets [", prev ? prev->begin : 0, ", ", pos, "] and [", en.begin, ", ", en.end,
                 "])");
    ENGINE_CHECK(en.begin == pos, where, ": gap of ", en.begin - pos, " bytes before tensor '", shown(en.name),
                 "' (data_offsets begin at ", en.begin, ", previous data ends at ", pos, ")");
    pos = en.end;
    prev = &en;
  }
  ENGINE_CHECK(data_len >= pos, where, " is truncated or has offsets out of range: the data section is ", data_len,
               " bytes but tensor '", prev ? shown(prev->name) : "", "' ends at byte ", pos);
  ENGINE_CHECK(data_len == pos, where, " has ", data_len - pos,
               " unexpected bytes after the last tensor (data section ", data_len, " bytes, tensors end at ", pos, ")");

  // Which checksum (safetensors.h): format 2 covers the canonical header, then the data; format 1
  // (and a checksum without a format) the data alone; no format and no checksum: nothing to check.
  const auto fmt = out.metadata.find("format");
  const auto sum = out.metadata.find("checksum");
  const bool has_fmt = fmt != out.metadata.end();
  ENGINE_CHECK(!has_fmt || fmt->second == kFormat || fmt->second == kFormatV1, where, ": unknown format '",
               shown(fmt->second), "' (this build reads '", kFormat, "' and '", kFormatV1, "')");
  const bool verify = verify_checksum && (has_fmt || sum != out.metadata.end());
  const bool v2 = has_fmt && fmt->second == kFormat;
  if (verify) {
    ENGINE_CHECK(sum != out.metadata.end(), where, ": metadata has no 'checksum'");
    ENGINE_CHECK(sum->second.size() == std::strlen(kChecksumPrefix) + 8 && sum->second.rfind(kChecksumPrefix, 0) == 0,
                 where, ": metadata checksum '", shown(sum->second), "' is not of the form crc32c:<8 hex digits>");
  }
  uint32_t crc = 0;
  if (verify && v2) {
    const std::string canon = canonical_header(entries, out.metadata);
    crc = crc32c(canon.data(), canon.size());
  }

  // Read in file order; the CRC accumulates as we go.
  for (const Entry& en : entries) {
    Tensor t = Tensor::empty(en.shape, en.dtype, Device::cpu());
    const uint64_t n = en.end - en.begin;
    if (n) {
      errno = 0;
      ENGINE_CHECK(read_all(f.fd, t.raw_data(), n, 8 + header_len + en.begin), "cannot read ", where, " (tensor '",
                   shown(en.name), "'): ", errno ? errno_text() : "unexpected end of file");
      if (verify) crc = crc32c(t.raw_data(), n, crc);
    }
    out.tensors.emplace_back(en.name, std::move(t));
  }

  if (verify) {
    const std::string expect = kChecksumPrefix + hex32(crc);
    ENGINE_CHECK(sum->second == expect, where, ": checksum mismatch (", v2 ? "header and data give " : "data gives ",
                 expect, ", header says ", shown(sum->second), "): the file is corrupted");
  }
  return out;
}

// ------------------------------------------------------------------ matching
void check_tensors_match(const LoadedTensors& file, const NamedTensors& expected, const std::string& what) {
  constexpr size_t kShow = 5;
  std::map<std::string, const Tensor*> in_file;
  for (const auto& [n, t] : file.tensors) in_file[n] = &t;
  std::set<std::string> wanted;
  std::vector<std::string> missing, unexpected, shape_bad, dtype_bad;
  for (const auto& [n, t] : expected) {
    ENGINE_CHECK(t.defined(), "check_tensors_match: expected tensor '", n, "' is undefined");
    wanted.insert(n);
    const auto it = in_file.find(n);
    if (it == in_file.end()) {
      missing.push_back(n);
      continue;
    }
    const Tensor& f = *it->second;
    if (f.shape() != t.shape())
      shape_bad.push_back(n + ": file " + shape_str(f.shape()) + " vs expected " + shape_str(t.shape()));
    if (f.dtype() != t.dtype())
      dtype_bad.push_back(n + ": file " + safetensors_dtype_name(f.dtype()) + " vs expected " +
                          safetensors_dtype_name(t.dtype()));
  }
  for (const auto& [n, t] : file.tensors)
    if (!wanted.count(n)) unexpected.push_back(n);
  if (missing.empty() && unexpected.empty() && shape_bad.empty() && dtype_bad.empty()) return;

  std::string msg = what + " '" + file.path + "' does not match:";
  bool first = true;
  auto part = [&](const std::vector<std::string>& v, const char* one, const char* many) {
    if (v.empty()) return;
    msg += first ? " " : "; ";
    first = false;
    msg += std::to_string(v.size()) + " " + (v.size() == 1 ? one : many) + " (";
    for (size_t i = 0; i < v.size() && i < kShow; ++i) msg += (i ? ", " : "") + v[i];
    if (v.size() > kShow) msg += ", ...";
    msg += ")";
  };
  part(missing, "missing", "missing");
  part(unexpected, "unexpected", "unexpected");
  part(shape_bad, "shape mismatch", "shape mismatches");
  part(dtype_bad, "dtype mismatch", "dtype mismatches");
  fail(msg);
}

}  // namespace engine::train
