// A training run's output folder (--save_dir) and the rules that keep earlier work safe
// (docs/TRAINING.md, "What survives"):
//   - one writer: the run holds an exclusive lock (flock on <save_dir>/.lock, released by the kernel
//     when the process ends, however it ends); a second run into the same folder is refused;
//   - no silent clobbering: a fresh run refuses a folder that already holds a run's results (iter_N/,
//     best_model/, metrics.jsonl, event files) unless asked to --overwrite; a resumed run may continue
//     in the folder it resumes from, but not over iter_N/ newer than its starting point (a newer
//     best_model/ stays: the resumed run must beat its mIoU to replace it);
//   - checkpoint folders appear atomically (written under ".<name>.tmp-<pid>", then renamed or
//     exchanged into place), and what a killed process left behind is cleaned up at the next start.
// Used by the trainer (train/trainer.cpp); tested by tests/test_run_dir.cpp and scripts/run_safety_checks.sh.
#pragma once
#include <cstdint>
#include <filesystem>
#include <iosfwd>
#include <map>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace engine::train {

// Exclusive lock on <dir>/.lock for this process's lifetime. The file holds the owner's pid, so the
// refusal can name it. Where the file system has no locks (some network mounts), `held()` is false
// and the run goes on with a warning from the caller.
class RunDirLock {
 public:
  explicit RunDirLock(const std::filesystem::path& dir);  // throws when another process holds it
  ~RunDirLock();
  RunDirLock(const RunDirLock&) = delete;
  RunDirLock& operator=(const RunDirLock&) = delete;
  bool held() const { return held_; }

 private:
  int fd_ = -1;
  bool held_ = false;
};

// What a folder holds of earlier runs.
struct RunContents {
  std::string checkpoint_prefix = "iter";    // checkpoint folders are <prefix>_N: iter_N or epoch_N
  std::map<int64_t, std::string> iter_dirs;  // N -> "<prefix>_N" (complete checkpoint folders only by name)
  bool best_model = false;
  int64_t best_model_iter = -1;  // from best_model/model.safetensors metadata; -1 when unknown
  double best_model_miou = -1;   // its key metric (metadata `metric_key`, "miou" by default); likewise
  bool ema_best_model = false;   // ema_best_model/ (--use_ema), with the same two from its file
  int64_t ema_best_model_iter = -1;
  double ema_best_model_miou = -1;
  bool metrics = false;                  // metrics.jsonl
  std::vector<std::string> event_files;  // events.out.tfevents.* (TensorBoard) and vdlrecords.* (VisualDL)
  bool empty() const { return iter_dirs.empty() && !best_model && !ema_best_model && !metrics && event_files.empty(); }
  std::string describe() const;  // "iter_3/, iter_6/, best_model/, metrics.jsonl"
};
// `prefix` names the checkpoint folders ("iter" for PaddleSeg's iter_N, "epoch" for PaddleX's
// epoch_N); `metric_key` the best_model/ metadata entry holding its key metric.
RunContents scan_run_dir(const std::filesystem::path& dir, const std::string& prefix = "iter",
                         const std::string& metric_key = "miou");

// Removes ".<name>.tmp-<pid>" / ".<name>.old-<pid>" entries left in `dir` by processes that died
// (never this process's own; with `locked` = false only those whose pid no longer exists). A
// ".<name>.old-<pid>" whose <name> is missing is the previous complete version of a folder whose
// replacement was interrupted: it is renamed back to <name> instead. Each action is logged.
void clean_stale_temporaries(const std::filesystem::path& dir, bool locked, std::ostream& log,
                             const std::string& log_prefix);

struct RunDirRequest {
  std::filesystem::path save_dir;
  std::filesystem::path resume_dir;            // empty for a fresh run
  int64_t start_iter = 0;                      // the resumed checkpoint's iteration
  bool overwrite = false;                      // --overwrite
  std::string checkpoint_prefix = "iter";      // "epoch": folders epoch_N, N = iteration / iters_per_checkpoint_unit
  int64_t iters_per_checkpoint_unit = 1;       // iterations per epoch for epoch_N folders
  std::string metric_key = "miou";             // best_model/ metadata entry of the key metric
  std::string resume_flag = "--resume_model";  // how the user named the checkpoint (for messages)
};

// Applies the rules above to `save_dir` (created when missing); the lock must be held. Refuses with
// a ConfigError whose one line names the folder, what it holds and the ways on (resume, another
// --save_dir, --overwrite). With `overwrite`, deletes exactly what would otherwise be refused (never
// the checkpoint being resumed from) and logs it. On resume into the same folder, metrics.jsonl
// records after start_iter (written by the interrupted run after its last checkpoint) are dropped.
// Returns what the folder held before (for the trainer: a newer best_model/ to beat).
RunContents prepare_run_dir(const RunDirRequest& req, std::ostream& log, const std::string& log_prefix);

// Writes a checkpoint folder (iter_N or best_model) as a whole: files into ".<name>.tmp-<pid>", then
// the folder is renamed into place, or atomically exchanged with an existing one (renameat2
// RENAME_EXCHANGE; where unsupported, the old folder is first renamed to ".<name>.old-<pid>", which
// clean_stale_temporaries restores after a crash). On any error the temporary folder is removed and
// `dir` is untouched.
struct CheckpointFile {
  std::string name;  // "model.safetensors"
  const std::vector<std::pair<std::string, Tensor>>* tensors;
  std::map<std::string, std::string> metadata;
};
void save_checkpoint_dir(const std::filesystem::path& dir, const std::vector<CheckpointFile>& files);

// Deletes a checkpoint folder so that it is never seen half-deleted under its name: renamed to
// ".<name>.tmp-<pid>" first (one atomic step), then removed. Missing folders are fine.
void remove_checkpoint_dir(const std::filesystem::path& dir);

// "<prefix>_<digits>" (no leading zeros) -> the number; -1 for anything else.
int64_t parse_iter_dir_name(const std::string& name, const std::string& prefix = "iter");

}  // namespace engine::train
