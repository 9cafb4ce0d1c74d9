// labels: sanitize tsan
// Downloads into the cache (train/download.h) against an HTTP/1.1 server on 127.0.0.1 in this process
// (no internet needed): bytes and cache reuse without a new request, 404, a connection dropped half-way
// then resumed with Range, a body shorter than its Content-Length, a server that ignores Range, md5
// given and from Content-MD5 (match and mismatch), a refused connection, and two threads downloading
// one URL at once (one request, both get the file).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "base/error.h"
#include "tests/harness/temp_dirs.h"
#include "train/download.h"

namespace fs = std::filesystem;
using engine::train::download_to_cache;
using engine::train::DownloadOptions;

namespace {

enum class Mode {
  kNormal,       // 200, or 206 for "Range: bytes=N-"
  kDropFirst,    // the first request gets half the body, then the connection closes; later ones as kNormal
  kShortBody,    // Content-Length 100 bytes more than the body, then the connection closes
  kIgnoreRange,  // always 200 with the whole body
  kSlow,         // as kNormal, the body in 20 pieces 10 ms apart
};

struct Route {
  Route() = default;
  Route(std::string b, Mode m = Mode::kNormal, std::string md5 = "")
      : body(std::move(b)), mode(m), content_md5(std::move(md5)) {}
  std::string body;
  Mode mode = Mode::kNormal;
  std::string content_md5;  // sent as the Content-MD5 header when not empty
};

// One request per connection ("Connection: close"), each connection on its own thread.
class TestServer {
 public:
  TestServer() {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;  // any free port, read back below
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(listen_fd_, 16) != 0)
      throw std::runtime_error("test server: cannot listen on 127.0.0.1");
    socklen_t len = sizeof a;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    accept_thread_ = std::thread([this] { accept_loop(); });
  }
  ~TestServer() {
    stop_ = true;
    accept_thread_.join();
    std::vector<std::thread> workers;
    {
      std::lock_guard<std::mutex> g(mu_);
      workers.swap(workers_);
    }
    for (auto& w : workers) w.join();
    ::close(listen_fd_);
  }
  std::string url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(port_) + path; }
  void add(const std::string& path, Route r) {
    std::lock_guard<std::mutex> g(mu_);
    routes_[path] = std::move(r);
  }
  int requests(const std::string& path) {
    std::lock_guard<std::mutex> g(mu_);
    return static_cast<int>(ranges_[path].size());
  }
  // The Range header of each request of `path` ("" when it had none).
  std::vector<std::string> ranges(const std::string& path) {
    std::lock_guard<std::mutex> g(mu_);
    return ranges_[path];
  }

 private:
  void accept_loop() {
    while (!stop_) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      const int fd = ::accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) continue;
      std::lock_guard<std::mutex> g(mu_);
      workers_.emplace_back([this, fd] {
        serve(fd);
        ::close(fd);
      });
    }
  }
  static void send_all(int fd, const char* p, size_t n) {
    while (n > 0) {
      const ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
      if (w <= 0) return;
      p += w, n -= static_cast<size_t>(w);
    }
  }
  static void send_str(int fd, const std::string& s) { send_all(fd, s.data(), s.size()); }

  void serve(int fd) {
    std::string req;
    char buf[4096];
    while (req.find("\r\n\r\n") == std::string::npos) {
      const ssize_t r = ::recv(fd, buf, sizeof buf, 0);
      if (r <= 0) return;
      req.append(buf, static_cast<size_t>(r));
    }
    std::istringstream in(req);
    std::string method, path, range;
    in >> method >> path;
    for (std::string line; std::getline(in, line);) {
      if (line.rfind("Range:", 0) == 0) range = line.substr(6, line.find('\r') - 6);
    }
    if (!range.empty() && range[0] == ' ') range = range.substr(1);
    Route route;
    bool found = false;
    int nth = 0;
    {
      std::lock_guard<std::mutex> g(mu_);
      ranges_[path].push_back(range);
      nth = static_cast<int>(ranges_[path].size());
      auto it = routes_.find(path);
      if (it != routes_.end()) route = it->second, found = true;
    }
    const std::string close = "Connection: close\r\n";
    if (!found) {
      send_str(fd, "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n" + close + "\r\nnot found");
      return;
    }
    const std::string& body = route.body;
    const std::string md5 = route.content_md5.empty() ? "" : "Content-MD5: " + route.content_md5 + "\r\n";
    long long start = 0;
    if (range.rfind("bytes=", 0) == 0) start = std::atoll(range.c_str() + 6);
    const bool honour_range = !range.empty() && route.mode != Mode::kIgnoreRange && route.mode != Mode::kShortBody &&
                              !(route.mode == Mode::kDropFirst && nth == 1);
    if (route.mode == Mode::kShortBody) {
      send_str(fd, "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size() + 100) + "\r\n" + close + "\r\n");
      send_str(fd, body);
      return;
    }
    if (route.mode == Mode::kDropFirst && nth == 1) {
      send_str(fd, "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" + close + "\r\n");
      send_all(fd, body.data(), body.size() / 2);
      return;
    }
    if (honour_range && start >= static_cast<long long>(body.size())) {
      send_str(fd, "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */" + std::to_string(body.size()) +
                       "\r\nContent-Length: 0\r\n" + close + "\r\n");
      return;
    }
    if (!honour_range) start = 0;
    const std::string part = body.substr(static_cast<size_t>(start));
    std::string head = honour_range
                           ? "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes " + std::to_string(start) + "-" +
                                 std::to_string(body.size() - 1) + "/" + std::to_string(body.size()) + "\r\n"
                           : "HTTP/1.1 200 OK\r\n" + md5;
    head += "Content-Length: " + std::to_string(part.size()) + "\r\n" + close + "\r\n";
    send_str(fd, head);
    if (route.mode == Mode::kSlow) {
      const size_t piece = part.size() / 20 + 1;
      for (size_t i = 0; i < part.size(); i += piece) {
        send_all(fd, part.data() + i, std::min(piece, part.size() - i));
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    } else {
      send_str(fd, part);
    }
  }

  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread accept_thread_;
  std::mutex mu_;
  std::vector<std::thread> workers_;
  std::map<std::string, Route> routes_;
  std::map<std::string, std::vector<std::string>> ranges_;
};

std::string random_bytes(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng() & 0xff);
  return s;
}

std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

void write_file(const fs::path& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << bytes;
}

std::string md5_of(const std::string& bytes, const fs::path& dir) {
  const fs::path p = dir / "md5_input";
  write_file(p, bytes);
  return engine::train::md5_file_hex(p.string());
}

// Content-MD5 (RFC 1864): base64 of the 16 digest bytes.
std::string content_md5_header(const std::string& hex) {
  std::string raw;
  for (size_t i = 0; i < hex.size(); i += 2) raw += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
  static const char* b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (size_t i = 0; i < raw.size(); i += 3) {
    uint32_t v = uint32_t(static_cast<unsigned char>(raw[i])) << 16;
    if (i + 1 < raw.size()) v |= uint32_t(static_cast<unsigned char>(raw[i + 1])) << 8;
    if (i + 2 < raw.size()) v |= uint32_t(static_cast<unsigned char>(raw[i + 2]));
    out += b64[(v >> 18) & 63], out += b64[(v >> 12) & 63];
    out += i + 1 < raw.size() ? b64[(v >> 6) & 63] : '=';
    out += i + 2 < raw.size() ? b64[v & 63] : '=';
  }
  return out;
}

class Download : public ::testing::Test {
 protected:
  void SetUp() override {
    // A proxy set for this machine must not receive requests for 127.0.0.1.
    ::setenv("no_proxy", "127.0.0.1,localhost", 1);
    ::setenv("NO_PROXY", "127.0.0.1,localhost", 1);
    dir_ = engine::testing::fresh_test_dir("engine_download");
    opt_.cache_dir = (dir_ / "cache").string();
    opt_.timeout_seconds = 5;
  }
  // Runs a download that must fail; returns its message.
  std::string failure(const std::string& url, const DownloadOptions& opt) {
    std::ostringstream log;
    try {
      download_to_cache(url, opt, "model.pretrained", log);
    } catch (const engine::Error& e) {
      return e.what();
    }
    ADD_FAILURE() << "no error for " << url << "; log:\n" << log.str();
    return "";
  }
  fs::path dir_;
  DownloadOptions opt_;
  TestServer server_;
};

TEST_F(Download, Md5OfKnownInputs) {
  EXPECT_EQ(md5_of("", dir_), "d41d8cd98f00b204e9800998ecf8427e");
  EXPECT_EQ(md5_of("abc", dir_), "900150983cd24fb0d6963f7d28e17f72");
  EXPECT_EQ(md5_of("The quick brown fox jumps over the lazy dog", dir_), "9e107d9d372bb6826bd81d3542a419d6");
  EXPECT_EQ(md5_of(std::string(1000000, 'a'), dir_), "7707d6ae4e027c70eea2a935c2296f21");  // RFC 1321 suite
}

TEST_F(Download, CacheNamesAndRoot) {
  using engine::train::cached_path_for;
  using engine::train::is_download_url;
  EXPECT_TRUE(is_download_url("https://bj.bcebos.com/paddleseg/dygraph/PP_STDCNet2.tar.gz"));
  EXPECT_TRUE(is_download_url("ppdet://models/yolov3_darknet53_270e_voc.pdparams"));
  EXPECT_FALSE(is_download_url("pretrained/model.pdparams"));
  EXPECT_FALSE(is_download_url("/abs/model.pdparams"));
  EXPECT_FALSE(is_download_url("https:///nohost"));

  const fs::path p = cached_path_for("https://bj.bcebos.com/paddleseg/dygraph/PP_STDCNet2.tar.gz", opt_);
  EXPECT_EQ(p.filename(), "PP_STDCNet2.tar.gz");
  EXPECT_EQ(p.parent_path().parent_path(), fs::path(opt_.cache_dir) / "pretrained");
  EXPECT_EQ(p.parent_path().filename().string().rfind("dygraph-", 0), 0u) << p;
  // Same folder and file name on two hosts, or with two query strings: two cache files.
  const std::string a = cached_path_for("https://a.example/m/model.pdparams", opt_);
  const std::string b = cached_path_for("https://b.example/m/model.pdparams", opt_);
  const std::string c = cached_path_for("https://a.example/m/model.pdparams?v=2", opt_);
  EXPECT_NE(a, b);
  EXPECT_NE(a, c);
  EXPECT_EQ(fs::path(a).filename(), "model.pdparams");
  EXPECT_EQ(fs::path(c).filename(), "model.pdparams");
  // Percent-decoded as PaddleSeg does, then made a safe file name.
  EXPECT_EQ(fs::path(cached_path_for("http://h/x/my%20net.pdparams", opt_)).filename(), "my_net.pdparams");
  EXPECT_EQ(fs::path(cached_path_for("http://h/x/..", opt_)).filename(), "_..");
  EXPECT_EQ(cached_path_for("ppdet://models/a.pdparams", opt_),
            cached_path_for("https://paddledet.bj.bcebos.com/models/a.pdparams", opt_));

  // The root: ENGINE_CACHE_DIR, else XDG_CACHE_HOME/engine, else HOME/.cache/engine.
  const char* saved[3] = {std::getenv("ENGINE_CACHE_DIR"), std::getenv("XDG_CACHE_HOME"), std::getenv("HOME")};
  const std::string keep[3] = {saved[0] ? saved[0] : "", saved[1] ? saved[1] : "", saved[2] ? saved[2] : ""};
  ::setenv("ENGINE_CACHE_DIR", "/e", 1);
  ::setenv("XDG_CACHE_HOME", "/x", 1);
  ::setenv("HOME", "/h", 1);
  EXPECT_EQ(engine::train::default_cache_dir(), "/e");
  ::unsetenv("ENGINE_CACHE_DIR");
  EXPECT_EQ(engine::train::default_cache_dir(), "/x/engine");
  ::unsetenv("XDG_CACHE_HOME");
  EXPECT_EQ(engine::train::default_cache_dir(), "/h/.cache/engine");
  const char* names[3] = {"ENGINE_CACHE_DIR", "XDG_CACHE_HOME", "HOME"};
  for (int i = 0; i < 3; ++i) {
    if (saved[i])
      ::setenv(names[i], keep[i].c_str(), 1);
    else
      ::unsetenv(names[i]);
  }
}

TEST_F(Download, FileThenCacheWithoutRequest) {
  const std::string body = random_bytes(300000, 1);
  server_.add("/seg/pp_liteseg/model.pdparams", {body});
  const std::string url = server_.url("/seg/pp_liteseg/model.pdparams");
  std::ostringstream log;
  const std::string path = download_to_cache(url, opt_, "model.pretrained", log);
  EXPECT_EQ(read_all(path), body);
  EXPECT_EQ(fs::path(path).filename(), "model.pdparams");
  EXPECT_FALSE(fs::exists(path + ".part"));
  EXPECT_FALSE(fs::exists(path + ".part.info"));
  EXPECT_EQ(server_.requests("/seg/pp_liteseg/model.pdparams"), 1);
  EXPECT_NE(log.str().find("downloaded model.pdparams (300000 bytes"), std::string::npos) << log.str();

  std::ostringstream log2;
  EXPECT_EQ(download_to_cache(url, opt_, "model.pretrained", log2), path);
  EXPECT_EQ(server_.requests("/seg/pp_liteseg/model.pdparams"), 1) << "the cached file was downloaded again";
  EXPECT_NE(log2.str().find("using cached"), std::string::npos) << log2.str();
}

TEST_F(Download, NotFoundNamesStatusKeyAndUrl) {
  const std::string url = server_.url("/missing/STDCNet2.tar.gz");
  const std::string msg = failure(url, opt_);
  EXPECT_NE(msg.find("model.pretrained: "), std::string::npos) << msg;
  EXPECT_NE(msg.find("HTTP 404 Not Found"), std::string::npos) << msg;
  EXPECT_NE(msg.find(url), std::string::npos) << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  const std::string path = engine::train::cached_path_for(url, opt_);
  EXPECT_FALSE(fs::exists(path));
  EXPECT_FALSE(fs::exists(path + ".part"));
}

TEST_F(Download, DroppedConnectionKeepsPartAndNextCallResumes) {
  const std::string body = random_bytes(200001, 2);
  server_.add("/w/STDCNet2.tar.gz", {body, Mode::kDropFirst});
  const std::string url = server_.url("/w/STDCNet2.tar.gz");
  const std::string path = engine::train::cached_path_for(url, opt_);
  DownloadOptions once = opt_;
  once.attempts = 1;
  const std::string msg = failure(url, once);
  EXPECT_NE(msg.find("wrong size"), std::string::npos) << msg;
  EXPECT_NE(msg.find("kept and resumed by the next run"), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(path));
  ASSERT_TRUE(fs::exists(path + ".part"));
  EXPECT_EQ(fs::file_size(path + ".part"), body.size() / 2);

  std::ostringstream log;
  EXPECT_EQ(download_to_cache(url, opt_, "model.pretrained", log), path);
  EXPECT_EQ(read_all(path), body);
  const auto ranges = server_.ranges("/w/STDCNet2.tar.gz");
  ASSERT_EQ(ranges.size(), 2u);
  EXPECT_EQ(ranges[0], "");
  EXPECT_EQ(ranges[1], "bytes=" + std::to_string(body.size() / 2) + "-");
  EXPECT_NE(log.str().find("resuming STDCNet2.tar.gz"), std::string::npos) << log.str();
  EXPECT_FALSE(fs::exists(path + ".part"));
}

TEST_F(Download, DroppedConnectionIsRetriedWithinOneCall) {
  const std::string body = random_bytes(50000, 3);
  server_.add("/r/a.pdparams", {body, Mode::kDropFirst});
  std::ostringstream log;
  const std::string path = download_to_cache(server_.url("/r/a.pdparams"), opt_, "model.pretrained", log);
  EXPECT_EQ(read_all(path), body);
  EXPECT_EQ(server_.ranges("/r/a.pdparams").size(), 2u);
  EXPECT_NE(log.str().find("retrying (attempt 2 of 3)"), std::string::npos) << log.str();
}

TEST_F(Download, ShortBodyIsWrongSizeAndNeverFinal) {
  server_.add("/s/b.pdparams", {random_bytes(10000, 4), Mode::kShortBody});
  const std::string url = server_.url("/s/b.pdparams");
  DownloadOptions two = opt_;
  two.attempts = 2;
  const std::string msg = failure(url, two);
  EXPECT_NE(msg.find("wrong size: the connection closed after 10000 of 10100 bytes"), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(engine::train::cached_path_for(url, opt_)));
}

TEST_F(Download, ServerIgnoringRangeRestarts) {
  const std::string body = random_bytes(40000, 5);
  server_.add("/i/c.pdparams", {body, Mode::kIgnoreRange});
  const std::string url = server_.url("/i/c.pdparams");
  const std::string path = engine::train::cached_path_for(url, opt_);
  fs::create_directories(fs::path(path).parent_path());
  write_file(path + ".part", std::string(1000, 'x'));  // a partial that a blind append would corrupt
  std::ostringstream log;
  EXPECT_EQ(download_to_cache(url, opt_, "model.pretrained", log), path);
  EXPECT_EQ(read_all(path), body);
  const auto ranges = server_.ranges("/i/c.pdparams");
  ASSERT_EQ(ranges.size(), 1u);
  EXPECT_EQ(ranges[0], "bytes=1000-");
  EXPECT_NE(log.str().find("from the start"), std::string::npos) << log.str();
}

TEST_F(Download, Md5GivenMismatchAndMatch) {
  const std::string body = random_bytes(30000, 6);
  server_.add("/m/d.pdparams", {body});
  const std::string url = server_.url("/m/d.pdparams");
  const std::string path = engine::train::cached_path_for(url, opt_);
  DownloadOptions wrong = opt_;
  wrong.md5 = md5_of("something else", dir_);
  const std::string msg = failure(url, wrong);
  EXPECT_NE(msg.find("md5 mismatch, got " + md5_of(body, dir_) + ", expected " + wrong.md5), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(path));
  EXPECT_FALSE(fs::exists(path + ".part"));

  DownloadOptions right = opt_;
  right.md5 = md5_of(body, dir_);
  for (char& c : right.md5) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));  // any case
  std::ostringstream log;
  EXPECT_EQ(download_to_cache(url, right, "model.pretrained", log), path);
  EXPECT_EQ(read_all(path), body);
  EXPECT_NE(log.str().find("md5 ok"), std::string::npos) << log.str();

  // A cached file that does not match a given md5 is fetched again.
  write_file(path, "tampered");
  std::ostringstream log2;
  EXPECT_EQ(download_to_cache(url, right, "model.pretrained", log2), path);
  EXPECT_EQ(read_all(path), body);
  EXPECT_EQ(server_.requests("/m/d.pdparams"), 3);

  DownloadOptions bad = opt_;
  bad.md5 = "abc";
  EXPECT_NE(failure(url, bad).find("expected 32 hex digits"), std::string::npos);
}

TEST_F(Download, ServerContentMd5IsChecked) {
  const std::string body = random_bytes(20000, 7);
  server_.add("/h/good.pdparams", {body, Mode::kNormal, content_md5_header(md5_of(body, dir_))});
  server_.add("/h/bad.pdparams", {body, Mode::kNormal, content_md5_header(md5_of("other", dir_))});
  std::ostringstream log;
  const std::string path = download_to_cache(server_.url("/h/good.pdparams"), opt_, "model.pretrained", log);
  EXPECT_EQ(read_all(path), body);
  EXPECT_NE(log.str().find("md5 ok"), std::string::npos) << log.str();

  const std::string url = server_.url("/h/bad.pdparams");
  const std::string msg = failure(url, opt_);
  EXPECT_NE(msg.find("(the server's Content-MD5)"), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(engine::train::cached_path_for(url, opt_)));
  EXPECT_FALSE(fs::exists(engine::train::cached_path_for(url, opt_) + ".part"));
}

TEST_F(Download, RefusedConnectionIsAnError) {
  int port = 0;
  {  // a port that was free a moment ago and has no listener now
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
    ::close(fd);
  }
  const std::string url = "http://127.0.0.1:" + std::to_string(port) + "/x/e.pdparams";
  DownloadOptions once = opt_;
  once.attempts = 1;
  const std::string msg = failure(url, once);
  EXPECT_NE(msg.find("model.pretrained: download failed (" + url + ")"), std::string::npos) << msg;
  EXPECT_NE(msg.find("onnect"), std::string::npos) << msg;  // libcurl's "Failed to connect ..."
  EXPECT_FALSE(fs::exists(engine::train::cached_path_for(url, opt_)));
  EXPECT_FALSE(fs::exists(engine::train::cached_path_for(url, opt_) + ".part"));
}

TEST_F(Download, TwoThreadsOneDownload) {
  const std::string body = random_bytes(400000, 8);
  server_.add("/c/STDCNet2.tar.gz", {body, Mode::kSlow});
  const std::string url = server_.url("/c/STDCNet2.tar.gz");
  std::string paths[2];
  std::ostringstream logs[2];
  std::string errors[2];
  std::vector<std::thread> threads;
  for (int i = 0; i < 2; ++i)
    threads.emplace_back([&, i] {
      try {
        paths[i] = download_to_cache(url, opt_, "model.backbone.pretrained", logs[i]);
      } catch (const std::exception& e) {
        errors[i] = e.what();
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(errors[0], "");
  EXPECT_EQ(errors[1], "");
  EXPECT_EQ(paths[0], paths[1]);
  EXPECT_EQ(read_all(paths[0]), body);
  EXPECT_EQ(server_.requests("/c/STDCNet2.tar.gz"), 1) << logs[0].str() << logs[1].str();
  const std::string both = logs[0].str() + logs[1].str();
  EXPECT_NE(both.find("using cached"), std::string::npos) << both;
}

}  // namespace
