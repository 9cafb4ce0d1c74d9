// Downloads into the cache with libcurl; the rules are in train/download.h.
#include "train/download.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <vector>

#include "base/error.h"
#include "base/text.h"

namespace fs = std::filesystem;

namespace engine::train {
namespace {

// ------------------------------------------------------------------ MD5 (RFC 1321)
class Md5 {
 public:
  void update(const unsigned char* p, size_t n) {
    len_ += n;
    while (n > 0) {
      const size_t take = std::min(n, size_t(64) - fill_);
      std::memcpy(buf_ + fill_, p, take);
      fill_ += take, p += take, n -= take;
      if (fill_ == 64) block(buf_), fill_ = 0;
    }
  }
  std::string hex() {
    const uint64_t bits = len_ * 8;
    const unsigned char one = 0x80, zero = 0;
    update(&one, 1);
    while (fill_ != 56) update(&zero, 1);
    unsigned char tail[8];
    for (int i = 0; i < 8; ++i) tail[i] = static_cast<unsigned char>(bits >> (8 * i));
    update(tail, 8);
    static const char* digits = "0123456789abcdef";
    std::string out;
    for (uint32_t w : h_)
      for (int i = 0; i < 4; ++i) {
        const unsigned b = (w >> (8 * i)) & 0xff;
        out += digits[b >> 4], out += digits[b & 15];
      }
    return out;
  }

 private:
  static uint32_t rotl(uint32_t x, int c) { return (x << c) | (x >> (32 - c)); }
  void block(const unsigned char* p) {
    static const int s[64] = {7,  12, 17, 22, 7,  12, 17, 22, 7,  12, 17, 22, 7,  12, 17, 22, 5,  9,  14, 20, 5,  9,
                              14, 20, 5,  9,  14, 20, 5,  9,  14, 20, 4,  11, 16, 23, 4,  11, 16, 23, 4,  11, 16, 23,
                              4,  11, 16, 23, 6,  10, 15, 21, 6,  10, 15, 21, 6,  10, 15, 21, 6,  10, 15, 21};
    static uint32_t k[64];
    static std::once_flag once;
    std::call_once(once, [] {
      for (int i = 0; i < 64; ++i)
        k[i] = static_cast<uint32_t>(std::floor(std::fabs(std::sin(i + 1.0)) * 4294967296.0));
    });
    uint32_t m[16];
    for (int i = 0; i < 16; ++i)
      m[i] = uint32_t(p[4 * i]) | uint32_t(p[4 * i + 1]) << 8 | uint32_t(p[4 * i + 2]) << 16 |
             uint32_t(p[4 * i + 3]) << 24;
    uint32_t a = h_[0], b = h_[1], c = h_[2], d = h_[3];
    for (int i = 0; i < 64; ++i) {
      uint32_t f;
      int g;
      if (i < 16)
        f = (b & c) | (~b & d), g = i;
      else if (i < 32)
        f = (d & b) | (~d & c), g = (5 * i + 1) % 16;
      else if (i < 48)
        f = b ^ c ^ d, g = (3 * i + 5) % 16;
      else
        f = c ^ (b | ~d), g = (7 * i) % 16;
      const uint32_t t = d;
      d = c, c = b;
      b = b + rotl(a + f + k[i] + m[g], s[i]);
      a = t;
    }
    h_[0] += a, h_[1] += b, h_[2] += c, h_[3] += d;
  }
  uint32_t h_[4] = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476};
  unsigned char buf_[64];
  size_t fill_ = 0;
  uint64_t len_ = 0;
};

std::string md5_hex(const std::string& s) {
  Md5 m;
  m.update(reinterpret_cast<const unsigned char*>(s.data()), s.size());
  return m.hex();
}

// Content-MD5 (RFC 1864) is the base64 of the 16 digest bytes; "" when it is not that.
std::string content_md5_to_hex(std::string v) {
  if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
  static const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string bytes;
  uint32_t acc = 0;
  int nbits = 0;
  for (char ch : v) {
    if (ch == '=') break;
    const size_t i = alphabet.find(ch);
    if (i == std::string::npos) return "";
    acc = (acc << 6) | uint32_t(i), nbits += 6;
    if (nbits >= 8) nbits -= 8, bytes += char((acc >> nbits) & 0xff);
  }
  if (bytes.size() != 16) return "";
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char b : bytes) out += digits[b >> 4], out += digits[b & 15];
  return out;
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// ------------------------------------------------------------------ URLs and cache names
const char* kPpdetPrefix = "https://paddledet.bj.bcebos.com/";  // ppdet/utils/download.py parse_url

std::string expand_url(const std::string& url) {
  if (url.rfind("ppdet://", 0) == 0) return kPpdetPrefix + url.substr(8);
  return url;
}

struct UrlParts {
  std::string host;
  std::vector<std::string> segments;  // path segments, query and fragment removed
};

bool split_url(const std::string& url, UrlParts& out) {
  const size_t sep = url.find("://");
  if (sep == std::string::npos) return false;
  const std::string scheme = lower(url.substr(0, sep));
  if (scheme != "http" && scheme != "https") return false;
  const size_t host_begin = sep + 3;
  size_t host_end = url.find_first_of("/?#", host_begin);
  if (host_end == std::string::npos) host_end = url.size();
  out.host = url.substr(host_begin, host_end - host_begin);
  const size_t at = out.host.rfind('@');  // user:password@ is not part of the name
  if (at != std::string::npos) out.host = out.host.substr(at + 1);
  if (out.host.empty()) return false;
  size_t path_end = url.find_first_of("?#", host_end);
  if (path_end == std::string::npos) path_end = url.size();
  std::string path = url.substr(host_end, path_end - host_end);
  out.segments.clear();
  std::stringstream ss(path);
  for (std::string seg; std::getline(ss, seg, '/');)
    if (!seg.empty()) out.segments.push_back(seg);
  return true;
}

std::string percent_decode(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out += static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

// One path component that cannot climb out of the cache or hide ("..", ".x" stay visible as "_.x").
std::string safe_name(const std::string& s) {
  std::string out;
  for (char c : s)
    out += (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-' || c == '+') ? c : '_';
  if (out.empty() || out[0] == '.') out = "_" + out;
  return out;
}

std::string env_or_empty(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

std::string errno_text() { return std::strerror(errno); }

std::string mib(long long bytes) {
  char b[64];
  std::snprintf(b, sizeof b, "%.1f MiB", double(bytes) / (1024.0 * 1024.0));
  return b;
}

bool is_md5_hex(const std::string& s) {
  if (s.size() != 32) return false;
  for (char c : s)
    if (!std::isxdigit(static_cast<unsigned char>(c))) return false;
  return true;
}

// ------------------------------------------------------------------ the .part's companion file
// What the response that began the .part said, so that a resume can be checked against it.
struct PartInfo {
  std::string etag;
  std::string content_md5;  // hex, from a 200 response's Content-MD5
  long long total = -1;     // size of the whole file, -1 unknown
};

PartInfo read_info(const std::string& path) {
  PartInfo info;
  std::ifstream f(path);
  for (std::string line; std::getline(f, line);) {
    const size_t sp = line.find(' ');
    if (sp == std::string::npos) continue;
    const std::string k = line.substr(0, sp), v = line.substr(sp + 1);
    if (k == "etag")
      info.etag = v;
    else if (k == "content-md5")
      info.content_md5 = v;
    else if (k == "total")
      info.total = std::atoll(v.c_str());
  }
  return info;
}

void write_info(const std::string& path, const PartInfo& info) {
  std::ofstream f(path, std::ios::trunc);
  f << "etag " << info.etag << "\ncontent-md5 " << info.content_md5 << "\ntotal " << info.total << "\n";
}

void remove_quietly(const std::string& path) {
  std::error_code ec;
  fs::remove(path, ec);
}

// flock() on "<file>.lock" for the lifetime of the object.
class FileLock {
 public:
  FileLock(const std::string& path, const std::string& what, const std::string& key, std::ostream& log) {
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) fail(key, ": cannot create the download lock ", path, ": ", errno_text());
    if (::flock(fd_, LOCK_EX | LOCK_NB) == 0) return;
    if (errno != EWOULDBLOCK) fail(key, ": cannot lock ", path, ": ", errno_text());
    log << key << ": waiting for another process downloading " << what << "\n" << std::flush;
    while (::flock(fd_, LOCK_EX) != 0)
      if (errno != EINTR) fail(key, ": cannot lock ", path, ": ", errno_text());
  }
  ~FileLock() { ::close(fd_); }
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  int fd_ = -1;
};

// ------------------------------------------------------------------ one HTTP attempt
struct Transfer {
  // Set before the request.
  int fd = -1;
  long long offset = 0;  // bytes of the .part already there, asked for with Range
  std::string part_path, info_path, name, key;
  PartInfo* info = nullptr;
  std::ostream* log = nullptr;
  CURL* curl = nullptr;

  // Headers of the current response (reset at each status line: redirects, 100 Continue).
  std::string status_line;
  long long content_length = -1;
  long long range_start = -1, range_total = -1;
  std::string etag, content_md5;

  // Outcome.
  bool body_started = false;
  long status = 0;
  long long received = 0;    // body bytes written in this attempt
  bool restart = false;      // the .part does not belong to this response: start over
  std::string abort_reason;  // why a callback stopped the transfer (not retried)

  // Progress.
  std::chrono::steady_clock::time_point t0, last_print;
  int next_tenth = 1;
};

size_t on_header(char* data, size_t size, size_t n, void* user) {
  auto& t = *static_cast<Transfer*>(user);
  const std::string line = text::strip(std::string(data, size * n));
  if (line.rfind("HTTP/", 0) == 0) {
    t.status_line = line, t.content_length = -1, t.range_start = -1, t.range_total = -1;
    t.etag.clear(), t.content_md5.clear();
    return size * n;
  }
  const size_t colon = line.find(':');
  if (colon == std::string::npos) return size * n;
  const std::string name = lower(text::strip(line.substr(0, colon))), value = text::strip(line.substr(colon + 1));
  if (name == "content-length") {
    t.content_length = std::atoll(value.c_str());
  } else if (name == "content-range") {  // "bytes START-END/TOTAL"
    long long a = -1, b = -1, total = -1;
    if (std::sscanf(value.c_str(), "bytes %lld-%lld/%lld", &a, &b, &total) >= 2)
      t.range_start = a, t.range_total = total;
  } else if (name == "etag") {
    t.etag = value;
  } else if (name == "content-md5") {
    t.content_md5 = content_md5_to_hex(value);
  }
  return size * n;
}

void print_progress(Transfer& t) {
  const auto now = std::chrono::steady_clock::now();
  const double since_print = std::chrono::duration<double>(now - t.last_print).count();
  const double elapsed = std::chrono::duration<double>(now - t.t0).count();
  const long long have = t.offset + t.received;
  const long long total = t.info->total;
  char line[256];
  if (total > 0) {
    const int tenth = static_cast<int>(10 * have / total);
    if (tenth < t.next_tenth || since_print < 2.0) return;
    t.next_tenth = tenth + 1;
    std::snprintf(line, sizeof line, "%s: %s %3d%% %s of %s, %.1f MiB/s", t.key.c_str(), t.name.c_str(),
                  static_cast<int>(100 * have / total), mib(have).c_str(), mib(total).c_str(),
                  elapsed > 0 ? double(t.received) / (1024.0 * 1024.0) / elapsed : 0.0);
  } else {
    if (since_print < 10.0) return;
    std::snprintf(line, sizeof line, "%s: %s %s, %.1f MiB/s", t.key.c_str(), t.name.c_str(), mib(have).c_str(),
                  elapsed > 0 ? double(t.received) / (1024.0 * 1024.0) / elapsed : 0.0);
  }
  t.last_print = now;
  *t.log << line << "\n" << std::flush;
}

size_t on_body(char* data, size_t size, size_t n, void* user) {
  auto& t = *static_cast<Transfer*>(user);
  const size_t bytes = size * n;
  if (!t.body_started) {
    t.body_started = true;
    curl_easy_getinfo(t.curl, CURLINFO_RESPONSE_CODE, &t.status);
    if (t.status == 200) {
      if (t.offset > 0) {
        *t.log << t.key << ": the server sent the whole file instead of the rest (no byte ranges, or the file "
               << "changed); downloading " << t.name << " from the start\n"
               << std::flush;
        if (::ftruncate(t.fd, 0) != 0 || ::lseek(t.fd, 0, SEEK_SET) != 0) {
          t.abort_reason = "cannot truncate " + t.part_path + ": " + errno_text();
          return 0;
        }
        t.offset = 0;
      }
      *t.info = PartInfo{t.etag, t.content_md5, t.content_length};
      write_info(t.info_path, *t.info);
    } else if (t.status == 206) {
      const long long total = t.range_total >= 0 ? t.range_total : -1;
      if (t.range_start != t.offset || (t.info->total >= 0 && total >= 0 && total != t.info->total)) {
        t.restart = true;  // a range we did not ask for, or the file's size changed on the server
        return 0;
      }
      if (t.info->total < 0) t.info->total = total;
      if (t.info->etag.empty()) t.info->etag = t.etag;
      write_info(t.info_path, *t.info);
    } else {
      return 0;  // an HTTP error's body; the status is reported after curl returns
    }
  }
  for (size_t done = 0; done < bytes;) {
    const ssize_t w = ::write(t.fd, data + done, bytes - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      t.abort_reason = "cannot write " + t.part_path + ": " + errno_text();
      return 0;
    }
    done += static_cast<size_t>(w);
  }
  t.received += static_cast<long long>(bytes);
  print_progress(t);
  return bytes;
}

void curl_global_once() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

long long file_size(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? static_cast<long long>(st.st_size) : -1;
}

void fsync_path(const std::string& path, int flags) {
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

enum class Attempt { kDone, kRetry, kRestart };

}  // namespace

// ------------------------------------------------------------------ public functions
bool is_download_url(const std::string& s) {
  UrlParts parts;
  return split_url(expand_url(s), parts);
}

std::string default_cache_dir() {
  const std::string own = env_or_empty("ENGINE_CACHE_DIR");
  if (!own.empty()) return own;
  const std::string xdg = env_or_empty("XDG_CACHE_HOME");
  if (!xdg.empty()) return (fs::path(xdg) / "engine").string();
  const std::string home = env_or_empty("HOME");
  if (home.empty()) fail("no cache folder for downloads: set ENGINE_CACHE_DIR (HOME and XDG_CACHE_HOME are unset)");
  return (fs::path(home) / ".cache" / "engine").string();
}

std::string cached_path_for(const std::string& url, const DownloadOptions& opt) {
  const std::string full = expand_url(url);
  UrlParts parts;
  if (!split_url(full, parts) || parts.segments.empty())
    fail("'", url, "' is not an http(s) URL of a file (expected http[s]://host/.../name or ppdet://path/name)");
  const std::string file = safe_name(percent_decode(parts.segments.back()));
  const std::string parent =
      safe_name(parts.segments.size() >= 2 ? percent_decode(parts.segments[parts.segments.size() - 2]) : parts.host);
  const std::string root = opt.cache_dir.empty() ? default_cache_dir() : opt.cache_dir;
  return (fs::path(root) / "pretrained" / (parent + "-" + md5_hex(full).substr(0, 12)) / file).string();
}

std::string md5_file_hex(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("cannot read ", path, ": ", errno_text());
  Md5 m;
  std::vector<unsigned char> buf(1 << 20);
  for (;;) {
    const ssize_t r = ::read(fd, buf.data(), buf.size());
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      const std::string why = errno_text();
      ::close(fd);
      fail("cannot read ", path, ": ", why);
    }
    if (r == 0) break;
    m.update(buf.data(), static_cast<size_t>(r));
  }
  ::close(fd);
  return m.hex();
}

std::string download_to_cache(const std::string& url_in, const DownloadOptions& opt, const std::string& key,
                              std::ostream& log) {
  const std::string url = expand_url(url_in);
  const std::string where = " (" + url + ")";
  if (!opt.md5.empty() && !is_md5_hex(opt.md5))
    fail(key, ": the md5 '", opt.md5, "' given for ", url, " is not an md5, expected 32 hex digits");
  const std::string want_md5 = lower(opt.md5);
  std::string path;
  try {
    path = cached_path_for(url, opt);
  } catch (const Error& e) {
    fail(key, ": ", e.what());
  }
  const std::string name = fs::path(path).filename().string();
  const std::string part = path + ".part", info_path = part + ".info";

  // A cached file counts when it exists (only verified files are renamed to it) and matches the md5.
  auto cached_ok = [&]() {
    if (!fs::is_regular_file(path)) return false;
    if (want_md5.empty()) return true;
    const std::string got = md5_file_hex(path);
    if (got == want_md5) return true;
    log << key << ": cached " << path << " has md5 " << got << ", expected " << want_md5 << "; downloading again\n";
    return false;
  };
  if (cached_ok()) {
    log << key << ": using cached " << path << "\n" << std::flush;
    return path;
  }
  std::error_code ec;
  fs::create_directories(fs::path(path).parent_path(), ec);
  if (ec)
    fail(key, ": cannot create the cache folder ", fs::path(path).parent_path().string(), ": ", ec.message(), where);

  FileLock lock(path + ".lock", name, key, log);
  if (cached_ok()) {  // downloaded by whoever held the lock
    log << key << ": using cached " << path << "\n" << std::flush;
    return path;
  }
  remove_quietly(path);

  curl_global_once();
  const int attempts = std::max(1, opt.attempts);
  bool restarted = false;
  std::string last_error;
  const auto t_start = std::chrono::steady_clock::now();
  long long total_received = 0;
  for (int attempt = 1; attempt <= attempts; ++attempt) {
    PartInfo info = fs::exists(part) ? read_info(info_path) : PartInfo{};
    const int fd = ::open(part.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) fail(key, ": cannot write ", part, ": ", errno_text(), where);
    Transfer t;
    t.fd = fd, t.offset = file_size(part), t.part_path = part, t.info_path = info_path, t.name = name, t.key = key;
    t.info = &info, t.log = &log;
    t.t0 = t.last_print = std::chrono::steady_clock::now();
    if (t.offset > 0 && info.total >= 0 && t.offset > info.total) {  // cannot be a prefix of the file
      if (::ftruncate(fd, 0) != 0) {
        const std::string why = errno_text();
        ::close(fd);
        fail(key, ": cannot truncate ", part, ": ", why, where);
      }
      t.offset = 0, info = PartInfo{};
    }
    if (t.offset > 0 && t.offset == info.total) {
      // Complete but not verified yet (the process ended between the last byte and the rename).
      ::close(fd);
    } else {
      CURL* curl = curl_easy_init();
      if (!curl) {
        ::close(fd);
        fail(key, ": libcurl could not start a transfer", where);
      }
      t.curl = curl;
      char errbuf[CURL_ERROR_SIZE] = "";
      curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
      curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
      curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
      curl_easy_setopt(curl, CURLOPT_MAXREDIRS, 10L);
      curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);  // no SIGALRM for DNS timeouts in a threaded program
      curl_easy_setopt(curl, CURLOPT_USERAGENT, "engine-download/1 libcurl");
      const long timeout_ms = std::max(1L, static_cast<long>(opt.timeout_seconds * 1000));
      curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
      // Fewer than 1 byte/s over the timeout: a stalled connection, reported like a dropped one.
      curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
      curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, std::max(1L, (timeout_ms + 999) / 1000));
      curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
      curl_easy_setopt(curl, CURLOPT_HEADERDATA, &t);
      curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
      curl_easy_setopt(curl, CURLOPT_WRITEDATA, &t);
      // CURLOPT_RANGE rather than RESUME_FROM: libcurl fails a resume answered with 200, and that
      // answer is a whole file we can use.
      const std::string range = std::to_string(t.offset) + "-";
      struct curl_slist* headers = nullptr;
      if (t.offset > 0) {
        curl_easy_setopt(curl, CURLOPT_RANGE, range.c_str());
        if (!info.etag.empty()) headers = curl_slist_append(headers, ("If-Range: " + info.etag).c_str());
        curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
        log << key << ": resuming " << name << " at " << mib(t.offset) << " from " << url << "\n" << std::flush;
      } else {
        log << key << ": downloading " << url << " to " << path << "\n" << std::flush;
      }
      const CURLcode rc = curl_easy_perform(curl);
      long status = 0;
      curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
      t.status = status;
      std::string curl_text = errbuf[0] ? errbuf : curl_easy_strerror(rc);
      curl_easy_cleanup(curl);
      curl_slist_free_all(headers);
      ::close(fd);
      total_received += t.received;

      if (!t.abort_reason.empty()) fail(key, ": download failed", where, ": ", t.abort_reason);
      if (t.restart || (status == 416 && t.offset > 0)) {
        // The .part does not continue this file: start over once.
        remove_quietly(part), remove_quietly(info_path);
        if (restarted) fail(key, ": download failed", where, ": the server's byte ranges do not match its file");
        restarted = true;
        log << key << ": the partial " << name << " does not match the file on the server; starting over\n";
        --attempt;
        continue;
      }
      // "404 Not Found" from the status line "HTTP/1.1 404 Not Found".
      const size_t sp = t.status_line.find(' ');
      const std::string http =
          "HTTP " + (sp == std::string::npos ? std::to_string(status) : t.status_line.substr(sp + 1));
      const bool http_ok = status == 200 || status == 206;
      if (status >= 400 && status < 500) {
        remove_quietly(part), remove_quietly(info_path);
        fail(key, ": download failed", where, ": ", http, ", expected 200 OK");
      }
      if (rc != CURLE_OK || !http_ok) {
        const long long have = file_size(part);
        std::ostringstream why;
        if (status != 0 && !http_ok) {
          why << http << ", expected 200 OK";
        } else if (rc == CURLE_PARTIAL_FILE && info.total >= 0) {
          why << "wrong size: the connection closed after " << have << " of " << info.total << " bytes (" << curl_text
              << ")";
        } else {
          why << curl_text << " (" << have << (info.total >= 0 ? " of " + std::to_string(info.total) : "")
              << " bytes so far)";
        }
        last_error = why.str();
        if (have <= 0) remove_quietly(part), remove_quietly(info_path);
        if (attempt < attempts) {
          log << key << ": " << name << ": " << last_error << "; retrying (attempt " << attempt + 1 << " of "
              << attempts << ")\n"
              << std::flush;
          continue;
        }
        if (have > 0)
          fail(key, ": download failed", where, ": ", last_error, "; ", part, " is kept and resumed by the next run");
        fail(key, ": download failed", where, ": ", last_error);
      }
    }

    // Received completely as far as HTTP tells: check size and md5, then give it its name.
    const long long have = file_size(part);
    if (info.total >= 0 && have != info.total) {
      if (have > info.total) remove_quietly(part), remove_quietly(info_path);
      fail(key, ": download failed", where, ": wrong size, ", have, " bytes received, expected ", info.total,
           " (Content-Length)");
    }
    const std::string expected = !want_md5.empty() ? want_md5 : info.content_md5;
    if (!expected.empty()) {
      const std::string got = md5_file_hex(part);
      if (got != expected) {
        remove_quietly(part), remove_quietly(info_path);
        fail(key, ": download failed", where, ": md5 mismatch, got ", got, ", expected ", expected,
             want_md5.empty() ? " (the server's Content-MD5)" : "", "; the download was removed");
      }
    }
    fsync_path(part, O_RDONLY);
    if (::rename(part.c_str(), path.c_str()) != 0)
      fail(key, ": cannot rename ", part, " to ", path, ": ", errno_text());
    fsync_path(fs::path(path).parent_path().string(), O_RDONLY | O_DIRECTORY);
    remove_quietly(info_path);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
    char line[256];
    std::snprintf(line, sizeof line, "%s: downloaded %s (%lld bytes, %s) in %.1f s, %.1f MiB/s%s", key.c_str(),
                  name.c_str(), have, mib(have).c_str(), secs,
                  secs > 0 ? double(total_received) / (1024.0 * 1024.0) / secs : 0.0,
                  expected.empty() ? "" : ", md5 ok");
    log << line << "\n" << std::flush;
    return path;
  }
  fail(key, ": download failed", where, ": ", last_error);
}

}  // namespace engine::train
