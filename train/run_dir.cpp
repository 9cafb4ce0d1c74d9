// The run folder's lock, scan, clean-up, refusal rules and atomic checkpoint folders (run_dir.h).
#include "train/run_dir.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <ostream>

#include "base/error.h"
#include "train/config.h"  // ConfigError
#include "train/safetensors.h"

namespace fs = std::filesystem;

namespace engine::train {
namespace {

std::string errno_text() { return std::strerror(errno); }

// Makes renames and removals inside `dir` durable. EINVAL: the file system cannot fsync folders.
void fsync_dir(const fs::path& dir) {
  const int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ENGINE_CHECK(fd >= 0, "cannot open folder '", dir.string(), "' to fsync it: ", errno_text());
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  errno = err;
  ENGINE_CHECK(rc == 0 || errno == EINVAL, "cannot fsync folder '", dir.string(), "': ", errno_text());
}

// ".<target>.tmp-<pid>" / ".<target>.old-<pid>"; pid -1 for any other name.
struct TemporaryName {
  std::string target;
  bool old = false;
  long long pid = -1;
};
TemporaryName parse_temporary_name(const std::string& name) {
  TemporaryName t;
  const size_t dash = name.rfind('-');
  if (name.size() < 8 || name[0] != '.' || dash == std::string::npos || dash < 6) return t;
  const std::string digits = name.substr(dash + 1), kind = name.substr(dash - 4, 4);
  if (digits.empty() || digits.size() > 10 || digits.find_first_not_of("0123456789") != std::string::npos) return t;
  if (kind != ".tmp" && kind != ".old") return t;
  t.target = name.substr(1, dash - 5);
  if (t.target.empty()) return t;
  t.old = kind == ".old";
  t.pid = std::stoll(digits);
  return t;
}

bool process_exists(long long pid) {
  if (pid <= 0 || pid > (long long)INT32_MAX) return false;
  return ::kill((pid_t)pid, 0) == 0 || errno == EPERM;
}

// The path as the user would type it: relative paths stay relative.
std::string shown(const fs::path& p) { return p.lexically_normal().string(); }

}  // namespace

int64_t parse_iter_dir_name(const std::string& name, const std::string& prefix) {
  const size_t p = prefix.size() + 1;
  if (name.size() <= p || name.compare(0, p, prefix + "_") != 0 || name.size() > p + 18) return -1;
  int64_t v = 0;
  for (size_t i = p; i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9') return -1;
    v = v * 10 + (name[i] - '0');
  }
  return std::to_string(v) == name.substr(p) ? v : -1;  // no leading zeros: one spelling per folder
}

// ------------------------------------------------------------------ lock
RunDirLock::RunDirLock(const fs::path& dir) {
  const fs::path file = dir / ".lock";
  fd_ = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  ENGINE_CHECK(fd_ >= 0, "cannot create the lock file '", file.string(), "': ", errno_text());
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      char buf[32] = {0};
      const ssize_t n = ::pread(fd_, buf, sizeof buf - 1, 0);
      std::string owner = n > 0 ? std::string(buf, (size_t)n) : "";
      while (!owner.empty() && (owner.back() == '\n' || owner.back() == ' ')) owner.pop_back();
      ::close(fd_);
      fd_ = -1;
      throw ConfigError("--save_dir '" + shown(dir) + "' is in use by another engine-train" +
                        (owner.empty() ? std::string() : " (pid " + owner + ")") +
                        ": wait for it to finish or choose another --save_dir");
    }
    if (errno == ENOLCK || errno == EOPNOTSUPP || errno == ENOSYS || errno == EINVAL) return;  // held_ = false
    const std::string err = errno_text();
    ::close(fd_);
    fd_ = -1;
    fail("cannot lock '", file.string(), "': ", err);
  }
  held_ = true;
  const std::string pid = std::to_string((long long)::getpid()) + "\n";
  if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, pid.data(), pid.size(), 0) != (ssize_t)pid.size()) {
    // The pid is only for the message of a refused second run; the lock itself is what counts.
  }
}

RunDirLock::~RunDirLock() {
  if (fd_ >= 0) ::close(fd_);  // releases the lock
}

// ------------------------------------------------------------------ scan
std::string RunContents::describe() const {
  std::string s;
  auto add = [&](const std::string& x) { s += (s.empty() ? "" : ", ") + x; };
  size_t shown_iters = 0;
  for (const auto& [n, name] : iter_dirs) {
    if (shown_iters++ == 4 && iter_dirs.size() > 5) {
      add("... (" + std::to_string(iter_dirs.size()) + " " + checkpoint_prefix + "_N/ in all)");
      break;
    }
    add(name + "/");
  }
  if (best_model)
    add(best_model_iter >= 0 ? "best_model/ (iter " + std::to_string(best_model_iter) + ")" : "best_model/");
  if (ema_best_model)
    add(ema_best_model_iter >= 0 ? "ema_best_model/ (iter " + std::to_string(ema_best_model_iter) + ")"
                                 : "ema_best_model/");
  if (metrics) add("metrics.jsonl");
  if (!event_files.empty())
    add(event_files.size() == 1 ? event_files[0] : std::to_string(event_files.size()) + " event files");
  return s;
}

namespace {
// The iteration and key metric a best-model file's metadata records; left as they are when the
// file or an entry is unreadable (such a folder still counts as a result, of unknown iteration).
void read_best_metadata(const fs::path& file, const std::string& metric_key, int64_t& iter, double& metric) {
  try {
    const LoadedTensors m = load_safetensors(file.string());
    const auto it = m.metadata.find("iter");
    if (it != m.metadata.end()) iter = parse_iter_dir_name("iter_" + it->second);
    const auto mi = m.metadata.find(metric_key);
    if (mi != m.metadata.end()) {
      char* end = nullptr;
      const double v = std::strtod(mi->second.c_str(), &end);
      if (!mi->second.empty() && *end == '\0' && std::isfinite(v) && v >= 0) metric = v;
    }
  } catch (const Error&) {
  }
}
}  // namespace

RunContents scan_run_dir(const fs::path& dir, const std::string& prefix, const std::string& metric_key) {
  RunContents c;
  c.checkpoint_prefix = prefix;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return c;
  for (const fs::directory_entry& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    const int64_t n = parse_iter_dir_name(name, prefix);
    if (n >= 0 && e.is_directory()) {
      c.iter_dirs[n] = name;
    } else if (name == "best_model" && e.is_directory()) {
      c.best_model = true;
      read_best_metadata(e.path() / "model.safetensors", metric_key, c.best_model_iter, c.best_model_miou);
    } else if (name == "ema_best_model" && e.is_directory()) {
      c.ema_best_model = true;
      read_best_metadata(e.path() / "ema_model.safetensors", metric_key, c.ema_best_model_iter, c.ema_best_model_miou);
    } else if (name == "metrics.jsonl") {
      c.metrics = true;
    } else if (name.rfind("events.out.tfevents.", 0) == 0 || name.rfind("vdlrecords.", 0) == 0) {
      c.event_files.push_back(name);
    }
  }
  return c;
}

// ------------------------------------------------------------------ stale temporaries
void clean_stale_temporaries(const fs::path& dir, bool locked, std::ostream& log, const std::string& prefix) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return;
  std::vector<fs::path> entries;
  for (const fs::directory_entry& e : fs::directory_iterator(dir)) entries.push_back(e.path());
  std::sort(entries.begin(), entries.end());  // ".x.old-*" before ".x.tmp-*": restore first, then remove
  for (const fs::path& p : entries) {
    const std::string name = p.filename().string();
    const TemporaryName m = parse_temporary_name(name);
    if (m.pid < 0) continue;
    const long long pid = m.pid;
    if (pid == (long long)::getpid()) continue;
    if (!locked && process_exists(pid)) continue;  // without the lock, a live pid may be a writer
    const fs::path target = dir / m.target;
    if (m.old && !fs::exists(target, ec)) {
      fs::rename(p, target);
      fsync_dir(dir);
      log << prefix << "Restored " << shown(target) << " from " << name
          << " (its replacement was interrupted by the end of process " << pid << ")" << std::endl;
      continue;
    }
    const uintmax_t removed = fs::remove_all(p, ec);
    if (ec) {
      log << prefix << "WARNING: cannot remove the stale temporary " << shown(p) << ": " << ec.message() << std::endl;
      continue;
    }
    log << prefix << "Removed " << shown(p) << " (" << removed << " entries), left by an interrupted save of process "
        << pid << std::endl;
  }
}

// ------------------------------------------------------------------ refusal rules
namespace {

// Keeps the records up to `start_iter` (and no torn last line): what follows was logged by the
// interrupted run after its last checkpoint and is trained again. Rewritten atomically.
size_t truncate_metrics(const fs::path& file, int64_t start_iter) {
  std::ifstream in(file);
  ENGINE_CHECK(in.good(), "cannot read '", file.string(), "'");
  std::string kept, line;
  size_t dropped = 0;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    const bool keep = !j.is_discarded() && j.is_object() && j.contains("iter") && j["iter"].is_number_integer() &&
                      j["iter"].get<int64_t>() <= start_iter;
    if (keep) {
      kept += line;
      kept += '\n';
    } else {
      ++dropped;
    }
  }
  if (dropped == 0) return 0;
  const fs::path tmp = file.parent_path() / ("." + file.filename().string() + ".tmp-" + std::to_string(::getpid()));
  {
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ENGINE_CHECK(fd >= 0, "cannot create '", tmp.string(), "': ", errno_text());
    const bool ok = ::write(fd, kept.data(), kept.size()) == (ssize_t)kept.size() && ::fsync(fd) == 0;
    const std::string err = errno_text();
    ::close(fd);
    if (!ok) {
      ::unlink(tmp.c_str());
      fail("cannot write '", tmp.string(), "': ", err);
    }
  }
  fs::rename(tmp, file);
  fsync_dir(file.parent_path());
  return dropped;
}

void remove_listed(const fs::path& dir, const std::vector<std::string>& names, const fs::path& keep, std::ostream& log,
                   const std::string& prefix) {
  std::error_code ec;
  std::string done;
  for (const std::string& n : names) {
    const fs::path p = dir / n;
    if (!keep.empty() && fs::equivalent(p, keep, ec)) continue;  // never the checkpoint being resumed
    if (fs::is_directory(p))
      remove_checkpoint_dir(p);
    else
      fs::remove(p);
    done += (done.empty() ? "" : ", ") + n;
  }
  fsync_dir(dir);
  if (!done.empty()) log << prefix << "--overwrite: deleted " << done << " in " << shown(dir) << std::endl;
}

}  // namespace

RunContents prepare_run_dir(const RunDirRequest& req, std::ostream& log, const std::string& prefix) {
  const fs::path& dir = req.save_dir;
  const RunContents c = scan_run_dir(dir, req.checkpoint_prefix, req.metric_key);
  const int64_t start_n = req.start_iter / std::max<int64_t>(1, req.iters_per_checkpoint_unit);
  std::error_code ec;
  const fs::path resume_parent =
      req.resume_dir.empty() ? fs::path() : (req.resume_dir.has_parent_path() ? req.resume_dir.parent_path() : ".");
  const bool same_dir = !req.resume_dir.empty() && fs::equivalent(resume_parent, dir, ec);
  const std::string d = shown(dir);

  if (!same_dir) {
    if (c.empty()) return c;
    if (!req.overwrite) {
      if (req.resume_dir.empty()) {
        const std::string newest = c.iter_dirs.empty() ? "" : shown(dir / c.iter_dirs.rbegin()->second);
        throw ConfigError(
            "--save_dir '" + d + "' already holds the results of a run (" + c.describe() +
            "): " + (newest.empty() ? std::string() : "to continue it add " + req.resume_flag + " " + newest + ", ") +
            "to keep it choose another --save_dir, to replace it add --overwrite");
      }
      throw ConfigError("--save_dir '" + d + "' already holds the results of another run (" + c.describe() +
                        "); resuming " + shown(req.resume_dir) +
                        " there would mix the two: choose another --save_dir, "
                        "use the checkpoint's own folder (--save_dir " +
                        shown(resume_parent) + "), or add --overwrite to delete them");
    }
    std::vector<std::string> names;
    for (const auto& [n, name] : c.iter_dirs) names.push_back(name);
    if (c.best_model) names.push_back("best_model");
    if (c.ema_best_model) names.push_back("ema_best_model");
    if (c.metrics) names.push_back("metrics.jsonl");
    for (const std::string& e : c.event_files) names.push_back(e);
    remove_listed(dir, names, req.resume_dir, log, prefix);
    return c;
  }

  // Resuming in the checkpoint's own folder: its earlier checkpoints stay; newer ones are refused.
  // A newer best_model/ (a crash between writing it and its iter_N/) stays as the one to beat.
  std::vector<std::string> newer;
  for (const auto& [n, name] : c.iter_dirs)
    if (n > start_n) newer.push_back(name);
  if (!newer.empty()) {
    std::string what;
    for (const std::string& n : newer) what += (what.empty() ? "" : ", ") + n + "/";
    if (!req.overwrite)
      throw ConfigError(req.resume_flag + " " + shown(req.resume_dir) + ": '" + d + "' holds checkpoints newer than " +
                        req.checkpoint_prefix + " " + std::to_string(start_n) + " (" + what +
                        ") that resuming here would overwrite: resume from " + shown(dir / newer.back()) +
                        ", choose another --save_dir, or add --overwrite to delete them");
    remove_listed(dir, newer, req.resume_dir, log, prefix);
  }
  if (c.metrics) {
    const size_t dropped = truncate_metrics(dir / "metrics.jsonl", req.start_iter);
    if (dropped)
      log << prefix << "metrics.jsonl: dropped " << dropped << " record(s) after iter " << req.start_iter
          << " (logged after the checkpoint resumed from; those iterations are trained again)" << std::endl;
  }
  return c;
}

// ------------------------------------------------------------------ atomic checkpoint folders
void remove_checkpoint_dir(const fs::path& dir) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) return;
  const fs::path parent = dir.has_parent_path() ? dir.parent_path() : fs::path(".");
  const fs::path doomed = parent / ("." + dir.filename().string() + ".tmp-" + std::to_string((long long)::getpid()));
  fs::remove_all(doomed, ec);
  fs::rename(dir, doomed);
  fsync_dir(parent);
  fs::remove_all(doomed);
}

void save_checkpoint_dir(const fs::path& dir, const std::vector<CheckpointFile>& files) {
  const fs::path parent = dir.has_parent_path() ? dir.parent_path() : fs::path(".");
  const std::string pid = std::to_string((long long)::getpid());
  const fs::path tmp = parent / ("." + dir.filename().string() + ".tmp-" + pid);
  try {
    fs::remove_all(tmp);
    fs::create_directories(tmp);
    for (const CheckpointFile& f : files) save_safetensors((tmp / f.name).string(), *f.tensors, f.metadata);
    fsync_dir(tmp);
    std::error_code ec;
    if (!fs::exists(dir, ec)) {
      fs::rename(tmp, dir);
      fsync_dir(parent);
      return;
    }
    // Swap the complete new folder with the old one in one step; the old one then lies at `tmp`.
    if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, dir.c_str(), RENAME_EXCHANGE) == 0) {
      fsync_dir(parent);
      fs::remove_all(tmp);
      return;
    }
    ENGINE_CHECK(errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP, "cannot replace '", dir.string(),
                 "': ", errno_text());
    // No exchange on this file system: move the old folder aside first (restored at the next start
    // if the process dies before the new one is in place).
    const fs::path old = parent / ("." + dir.filename().string() + ".old-" + pid);
    fs::remove_all(old);
    fs::rename(dir, old);
    fs::rename(tmp, dir);
    fsync_dir(parent);
    fs::remove_all(old);
  } catch (const fs::filesystem_error& e) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    fail("cannot write the checkpoint folder '", dir.string(), "': ", e.code().message(), " (", e.path1().string(),
         ")");
  } catch (...) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw;
  }
}

}  // namespace engine::train
