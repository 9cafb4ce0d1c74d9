#include "engine/comm/rendezvous.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <thread>
#include <vector>

#include "base/error.h"

namespace engine {
namespace {

// File layout: magic, the payload's length (8 bytes, little-endian), the payload. A file whose size
// is not exactly header + length is incomplete.
constexpr char kMagic[8] = {'E', 'N', 'G', 'R', 'D', 'V', '1', '\n'};
constexpr size_t kHeader = sizeof kMagic + 8;
constexpr auto kPoll = std::chrono::milliseconds(10);

using Clock = std::chrono::steady_clock;

std::string secs(double s) {
  char b[32];
  std::snprintf(b, sizeof b, "%g", s);
  return b;
}

std::string ack_path(const std::string& path, int r) { return path + ".ack." + std::to_string(r); }

bool exists(const std::string& p) { return ::access(p.c_str(), F_OK) == 0; }

std::string who(const std::string& path, int rank, int world_size) {
  return "rendezvous file " + path + ": rank " + std::to_string(rank) + " of " + std::to_string(world_size);
}

void write_file(const std::string& tmp, const std::string& content, const std::string& where) {
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
  ENGINE_CHECK(fd >= 0, where, ": cannot create ", tmp, " (", std::strerror(errno), ")");
  size_t done = 0;
  while (done < content.size()) {
    const ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int e = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      fail(where, ": cannot write ", tmp, " (", std::strerror(e), ")");
    }
    done += (size_t)n;
  }
  if (::close(fd) != 0) {
    const int e = errno;
    ::unlink(tmp.c_str());
    fail(where, ": cannot write ", tmp, " (", std::strerror(e), ")");
  }
}

// The payload when `path` holds a complete file, false otherwise (absent, or still being written).
bool read_complete(const std::string& path, std::string& payload) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return false;
  const std::string all((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (all.size() < kHeader || std::memcmp(all.data(), kMagic, sizeof kMagic) != 0) return false;
  uint64_t len = 0;
  for (int i = 7; i >= 0; --i) len = (len << 8) | (unsigned char)all[sizeof kMagic + i];
  if (all.size() - kHeader != len) return false;
  payload = all.substr(kHeader);
  return true;
}

std::string root(const std::string& path, int world_size, const std::string& bytes, double timeout_seconds) {
  const std::string where = who(path, 0, world_size);
  const char* fresh = " (left by another job?); the launcher must give each job a fresh ENGINE_RENDEZVOUS_FILE";
  ENGINE_CHECK(!exists(path), where, ": the file already exists", fresh);
  for (int r = 1; r < world_size; ++r)
    ENGINE_CHECK(!exists(ack_path(path, r)), where, ": ", ack_path(path, r), " already exists", fresh);

  std::string content(kMagic, sizeof kMagic);
  uint64_t len = bytes.size();
  for (int i = 0; i < 8; ++i) content.push_back((char)((len >> (8 * i)) & 0xff));
  content += bytes;
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  write_file(tmp, content, where);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    ::unlink(tmp.c_str());
    fail(where, ": cannot rename ", tmp, " to it (", std::strerror(e), ")");
  }

  const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_seconds);
  std::vector<bool> acked(world_size, false);
  int missing = world_size - 1;
  for (;;) {
    for (int r = 1; r < world_size; ++r)
      if (!acked[r] && exists(ack_path(path, r))) {
        acked[r] = true;
        --missing;
      }
    if (missing == 0 || Clock::now() >= deadline) break;
    std::this_thread::sleep_for(kPoll);
  }
  ::unlink(path.c_str());
  std::string late;
  for (int r = 1; r < world_size; ++r) {
    if (acked[r])
      ::unlink(ack_path(path, r).c_str());
    else
      late += (late.empty() ? "" : ", ") + std::to_string(r);
  }
  ENGINE_CHECK(missing == 0, where, ": rank(s) ", late, " did not read it within ", secs(timeout_seconds),
               " s (crashed, not started, or given another ENGINE_RENDEZVOUS_FILE); file removed");
  return bytes;
}

std::string reader(const std::string& path, int rank, int world_size, double timeout_seconds) {
  const std::string where = who(path, rank, world_size);
  const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_seconds);
  std::string payload;
  for (;;) {
    if (read_complete(path, payload)) break;
    ENGINE_CHECK(Clock::now() < deadline, where, ": rank 0 did not write it within ", secs(timeout_seconds),
                 " s (rank 0 crashed, not started, or given another ENGINE_RENDEZVOUS_FILE)");
    std::this_thread::sleep_for(kPoll);
  }
  const std::string ack = ack_path(path, rank);
  const int fd = ::open(ack.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
  ENGINE_CHECK(fd >= 0, where, ": cannot create ", ack, " (", std::strerror(errno), "; two processes with rank ", rank,
               "?)");
  ::close(fd);
  return payload;
}

}  // namespace

std::string exchange_root_bytes_via_file(const std::string& path, int rank, int world_size,
                                         const std::string& root_bytes, double timeout_seconds) {
  ENGINE_CHECK(!path.empty(), "rendezvous: empty file path (the launcher sets ENGINE_RENDEZVOUS_FILE)");
  ENGINE_CHECK(world_size >= 1 && rank >= 0 && rank < world_size, "rendezvous file ", path, ": rank ", rank,
               " of world size ", world_size, " is out of range");
  ENGINE_CHECK(timeout_seconds > 0, "rendezvous file ", path, ": timeout ", secs(timeout_seconds),
               " s must be positive");
  return rank == 0 ? root(path, world_size, root_bytes, timeout_seconds)
                   : reader(path, rank, world_size, timeout_seconds);
}

}  // namespace engine
