// labels: sanitize
// The file rendezvous (engine/comm/rendezvous.h): ranks are forked processes sharing a temp folder.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "base/error.h"
#include "engine/comm/rendezvous.h"
#include "tests/harness/temp_dirs.h"

namespace fs = std::filesystem;
using engine::exchange_root_bytes_via_file;

namespace {

// Runs `body` in a child process; its return value is the exit code, an exception is code 3.
pid_t spawn(const std::function<int()>& body) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    int rc = 3;
    try {
      rc = body();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "child %d: %s\n", (int)::getpid(), e.what());
    }
    std::fflush(stderr);
    ::_exit(rc);
  }
  return pid;
}

int exit_code(pid_t pid) {
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string binary_payload() {
  std::string s;
  for (int i = 0; i < 70000; ++i) s.push_back((char)(i * 7 % 256));
  s += std::string(100, '\0');  // zeros inside and at the end
  return s;
}

std::vector<std::string> entries(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  return out;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const engine::Error& e) {
    return e.what();
  }
  return "(no error)";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// The file as rank 0 writes it: magic, little-endian 64-bit length, payload (`claimed` overrides the length).
std::string file_content(const std::string& payload, uint64_t claimed) {
  std::string s = "ENGRDV1\n";
  for (int i = 0; i < 8; ++i) s.push_back((char)((claimed >> (8 * i)) & 0xff));
  return s + payload;
}

void write_file(const fs::path& p, const std::string& content) {
  std::ofstream f(p, std::ios::binary);
  f.write(content.data(), (std::streamsize)content.size());
}

}  // namespace

TEST(Rendezvous, ThreeProcessesGetRankZerosBytes) {
  const fs::path dir = engine::testing::fresh_test_dir("rendezvous_three");
  const std::string path = (dir / "job.rdv").string();
  const std::string payload = binary_payload();
  std::vector<pid_t> pids;
  // Readers start first and poll; rank 0 comes 100 ms later.
  for (int r = 1; r < 3; ++r)
    pids.push_back(spawn([&, r] { return exchange_root_bytes_via_file(path, r, 3, "", 20.0) == payload ? 0 : 1; }));
  pids.push_back(spawn([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    return exchange_root_bytes_via_file(path, 0, 3, payload, 20.0) == payload ? 0 : 1;
  }));
  for (pid_t p : pids) EXPECT_EQ(exit_code(p), 0);
  EXPECT_TRUE(entries(dir).empty()) << "left behind: " << ::testing::PrintToString(entries(dir));
}

TEST(Rendezvous, WorldSizeOneAndEmptyBytes) {
  const fs::path dir = engine::testing::fresh_test_dir("rendezvous_one");
  const std::string path = (dir / "job.rdv").string();
  EXPECT_EQ(exchange_root_bytes_via_file(path, 0, 1, std::string("a\0b", 3), 1.0), std::string("a\0b", 3));
  EXPECT_EQ(exchange_root_bytes_via_file(path, 0, 1, "", 1.0), "");
  EXPECT_TRUE(entries(dir).empty());
}

TEST(Rendezvous, RankZeroRefusesAStaleFile) {
  const fs::path dir = engine::testing::fresh_test_dir("rendezvous_stale");
  const std::string path = (dir / "job.rdv").string();
  write_file(path, "from another job");
  const std::string msg = error_of([&] { exchange_root_bytes_via_file(path, 0, 2, "id", 1.0); });
  EXPECT_TRUE(contains(msg, path) && contains(msg, "already exists")) << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  std::ifstream f(path, std::ios::binary);
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(f), {}), "from another job");  // not ours to remove

  fs::remove(path);
  write_file(path + ".ack.1", "");
  const std::string ack_msg = error_of([&] { exchange_root_bytes_via_file(path, 0, 2, "id", 1.0); });
  EXPECT_TRUE(contains(ack_msg, path + ".ack.1") && contains(ack_msg, "already exists")) << ack_msg;
  EXPECT_FALSE(fs::exists(path));
}

TEST(Rendezvous, ReaderTimesOutWhenRankZeroNeverWrites) {
  const fs::path dir = engine::testing::fresh_test_dir("rendezvous_timeout");
  const std::string path = (dir / "job.rdv").string();
  const auto t0 = std::chrono::steady_clock::now();
  const std::string msg = error_of([&] { exchange_root_bytes_via_file(path, 1, 2, "", 0.3); });
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_TRUE(contains(msg, path) && contains(msg, "rank 1 of 2") && contains(msg, "0.3 s")) << msg;
  EXPECT_GE(s, 0.3);
  EXPECT_LT(s, 5.0);
  EXPECT_TRUE(entries(dir).empty());
}

TEST(Rendezvous, RankZeroTimesOutWhenARankNeverReadsAndCleansUp) {
  const fs::path dir = engine::testing::fresh_test_dir("rendezvous_root_timeout");
  const std::string path = (dir / "job.rdv").string();
  // Rank 1 reads; rank 2 never comes.
  const pid_t reader = spawn([&] { return exchange_root_bytes_via_file(path, 1, 3, "", 20.0) == "id" ? 0 : 1; });
  const std::string msg = error_of([&] { exchange_root_bytes_via_file(path, 0, 3, "id", 0.5); });
  EXPECT_EQ(exit_code(reader), 0);
  EXPECT_TRUE(contains(msg, path) && contains(msg, "rank 0 of 3") && contains(msg, "rank(s) 2 ") &&
              contains(msg, "0.5 s"))
      << msg;
  EXPECT_TRUE(entries(dir).empty()) << "left behind: " << ::testing::PrintToString(entries(dir));
}

TEST(Rendezvous, ReaderNeverTakesAPartialFile) {
  const fs::path dir = engine::testing::fresh_test_dir("rendezvous_partial");
  const std::string path = (dir / "job.rdv").string();
  const std::string payload = binary_payload();
  const std::string full = file_content(payload, payload.size());
  write_file(path, full.substr(0, full.size() / 2));  // as a file system might show an unfinished write
  const std::string msg = error_of([&] { exchange_root_bytes_via_file(path, 1, 2, "", 0.3); });
  EXPECT_TRUE(contains(msg, "did not write it within 0.3 s")) << msg;

  // Completed while the reader polls: it returns the whole payload.
  std::thread writer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    write_file(path + ".tmp", full);
    fs::rename(path + ".tmp", path);
  });
  std::string got;
  EXPECT_NO_THROW(got = exchange_root_bytes_via_file(path, 1, 2, "", 10.0));
  writer.join();
  EXPECT_TRUE(got == payload) << "got " << got.size() << " bytes";
  EXPECT_TRUE(fs::exists(path + ".ack.1"));
}

TEST(Rendezvous, ArgumentsAreChecked) {
  EXPECT_TRUE(contains(error_of([] { exchange_root_bytes_via_file("", 0, 1, "", 1.0); }), "ENGINE_RENDEZVOUS_FILE"));
  EXPECT_TRUE(contains(error_of([] { exchange_root_bytes_via_file("x", 2, 2, "", 1.0); }), "rank 2 of world size 2"));
  EXPECT_TRUE(contains(error_of([] { exchange_root_bytes_via_file("x", 0, 1, "", 0.0); }), "must be positive"));
}
