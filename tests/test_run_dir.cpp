// labels: sanitize
// The run folder's rules (train/run_dir.h): one writer at a time, no silent clobbering of an earlier
// run, resume into the same folder keeps its earlier checkpoints but not newer ones, metrics after
// the resumed iteration are dropped, stale temporaries of dead processes are removed (an interrupted
// replacement is restored), and checkpoint folders are replaced atomically or not at all.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "tests/harness/temp_dirs.h"
#include "train/config.h"
#include "train/run_dir.h"
#include "train/safetensors.h"

namespace fs = std::filesystem;
using namespace engine;
using namespace engine::train;

namespace {

fs::path fresh_dir(const std::string& name) { return engine::testing::fresh_test_dir("engine_run_dir_" + name); }

// A pid that belonged to a process that has ended (a child, reaped).
long long dead_pid() {
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  int status = 0;
  ::waitpid(child, &status, 0);
  return child;
}

const std::vector<std::pair<std::string, Tensor>>& weights(float v) {
  static std::vector<std::pair<std::string, Tensor>> w;
  w = {{"w", Tensor::full({2, 2}, v)}};
  return w;
}

void write_checkpoint(const fs::path& dir, int64_t iter, float v) {
  save_checkpoint_dir(dir, {{"model.safetensors", &weights(v), {{"iter", std::to_string(iter)}}}});
}

float value_in(const fs::path& dir) {
  return load_safetensors((dir / "model.safetensors").string()).find("w")->to_vector()[0];
}

// A run folder as an interrupted or finished run leaves it.
void fake_run(const fs::path& d, std::vector<int> iters, int best_iter) {
  for (int i : iters) write_checkpoint(d / ("iter_" + std::to_string(i)), i, (float)i);
  if (best_iter >= 0) write_checkpoint(d / "best_model", best_iter, (float)best_iter);
  std::ofstream m(d / "metrics.jsonl");
  for (int i = 1; i <= 9; ++i) m << "{\"type\":\"train\",\"iter\":" << i << "}\n";
  m << "{\"type\":\"train\",\"it";  // a line torn by a kill
}

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST(RunDir, IterDirNames) {
  EXPECT_EQ(parse_iter_dir_name("iter_0"), 0);
  EXPECT_EQ(parse_iter_dir_name("iter_1500"), 1500);
  for (const char* bad :
       {"iter_", "iter_01", "iter_-1", "iter_1a", "best_model", "../iter_3", "iter_3/..", "iter_99999999999999999999"})
    EXPECT_EQ(parse_iter_dir_name(bad), -1) << bad;
}

TEST(RunDir, OneWriterAtATime) {
  const fs::path d = fresh_dir("lock");
  {
    const RunDirLock first(d);
    ASSERT_TRUE(first.held());
    const std::string e = error_of([&] { RunDirLock second(d); });
    EXPECT_NE(e.find("is in use by another engine-train (pid " + std::to_string(::getpid()) + ")"), std::string::npos)
        << e;
  }
  const RunDirLock again(d);  // released with the first
  EXPECT_TRUE(again.held());
}

TEST(RunDir, FreshRunRefusesAnEarlierRunUnlessOverwrite) {
  const fs::path d = fresh_dir("fresh");
  std::ostringstream log;
  prepare_run_dir({d, {}, 0, false}, log, "");  // an empty folder is fine
  fake_run(d, {3, 6}, 3);
  std::ofstream(d / "notes.txt") << "the user's own file\n";
  const std::string e = error_of([&] { prepare_run_dir({d, {}, 0, false}, log, ""); });
  EXPECT_NE(e.find("already holds the results of a run (iter_3/, iter_6/, best_model/ (iter 3), metrics.jsonl)"),
            std::string::npos)
      << e;
  EXPECT_NE(e.find("--resume_model " + (d / "iter_6").string()), std::string::npos) << e;
  EXPECT_NE(e.find("--overwrite"), std::string::npos) << e;
  EXPECT_FLOAT_EQ(value_in(d / "best_model"), 3.0f);  // untouched

  prepare_run_dir({d, {}, 0, true}, log, "");
  EXPECT_FALSE(fs::exists(d / "iter_3"));
  EXPECT_FALSE(fs::exists(d / "best_model"));
  EXPECT_FALSE(fs::exists(d / "metrics.jsonl"));
  EXPECT_TRUE(fs::exists(d / "notes.txt"));  // only a run's own results are deleted
  EXPECT_NE(log.str().find("--overwrite: deleted iter_3, iter_6, best_model, metrics.jsonl"), std::string::npos)
      << log.str();
}

// --use_ema's ema_best_model/ is a result of a run too: refused, described with its iteration, deleted by --overwrite.
TEST(RunDir, EmaBestModelIsAResultOfARun) {
  const fs::path d = fresh_dir("ema_best");
  std::ostringstream log;
  save_checkpoint_dir(d / "ema_best_model",
                      {{"ema_model.safetensors", &weights(5.f), {{"iter", "4"}, {"miou", "0.5"}}}});
  const RunContents c = scan_run_dir(d);
  EXPECT_TRUE(c.ema_best_model);
  EXPECT_EQ(c.ema_best_model_iter, 4);
  EXPECT_DOUBLE_EQ(c.ema_best_model_miou, 0.5);
  EXPECT_FALSE(c.empty());
  const std::string e = error_of([&] { prepare_run_dir({d, {}, 0, false}, log, ""); });
  EXPECT_NE(e.find("already holds the results of a run (ema_best_model/ (iter 4))"), std::string::npos) << e;
  prepare_run_dir({d, {}, 0, true}, log, "");
  EXPECT_FALSE(fs::exists(d / "ema_best_model"));
}

TEST(RunDir, TensorBoardAndVisualDlLogsAreResultsOfARun) {
  const fs::path d = fresh_dir("logs_only");
  std::ofstream(d / "events.out.tfevents.1700000000.host") << "x";
  std::ofstream(d / "vdlrecords.1700000000.log") << "x";
  std::ostringstream log;
  const std::string e = error_of([&] { prepare_run_dir({d, {}, 0, false}, log, ""); });
  EXPECT_NE(e.find("already holds the results of a run (2 event files)"), std::string::npos) << e;
  prepare_run_dir({d, {}, 0, true}, log, "");
  EXPECT_FALSE(fs::exists(d / "events.out.tfevents.1700000000.host"));
  EXPECT_FALSE(fs::exists(d / "vdlrecords.1700000000.log"));  // else VisualDL would show the old run's curves
}

TEST(RunDir, ResumeKeepsEarlierCheckpointsAndRefusesNewerOnes) {
  const fs::path d = fresh_dir("resume");
  fake_run(d, {3, 6, 9}, 6);
  std::ostringstream log;
  // From the newest checkpoint: allowed; the earlier ones stay; metrics after iter 9 (the torn line) go.
  prepare_run_dir({d, d / "iter_9", 9, false}, log, "");
  EXPECT_TRUE(fs::exists(d / "iter_3"));
  EXPECT_TRUE(fs::exists(d / "best_model"));
  // From iter_3: iter_6 and iter_9 are newer.
  const std::string e = error_of([&] { prepare_run_dir({d, d / "iter_3", 3, false}, log, ""); });
  EXPECT_NE(e.find("holds checkpoints newer than iter 3 (iter_6/, iter_9/)"), std::string::npos) << e;
  EXPECT_NE(e.find("resume from " + (d / "iter_9").string()), std::string::npos) << e;
  EXPECT_TRUE(fs::exists(d / "iter_9"));
  const RunContents c = prepare_run_dir({d, d / "iter_3", 3, true}, log, "");
  EXPECT_TRUE(fs::exists(d / "iter_3"));
  EXPECT_FALSE(fs::exists(d / "iter_6"));
  EXPECT_TRUE(fs::exists(d / "best_model"));  // stays, as the mIoU to beat
  EXPECT_EQ(c.best_model_iter, 6);
  // metrics.jsonl keeps the records up to iter 3
  std::ifstream m(d / "metrics.jsonl");
  std::string line;
  int n = 0;
  while (std::getline(m, line)) ++n;
  EXPECT_EQ(n, 3);
  EXPECT_NE(log.str().find("metrics.jsonl: dropped"), std::string::npos);
}

TEST(RunDir, ResumeIntoAnotherRunsFolderIsRefused) {
  const fs::path a = fresh_dir("resume_a"), b = fresh_dir("resume_b");
  fake_run(a, {3}, -1);
  std::ostringstream log;
  prepare_run_dir({b, a / "iter_3", 3, false}, log, "");  // an empty folder: fine
  fake_run(b, {5}, -1);
  const std::string e = error_of([&] { prepare_run_dir({b, a / "iter_3", 3, false}, log, ""); });
  EXPECT_NE(e.find("already holds the results of another run (iter_5/, metrics.jsonl)"), std::string::npos) << e;
  EXPECT_NE(e.find("--save_dir " + a.string()), std::string::npos) << e;
}

TEST(RunDir, StaleTemporariesOfDeadProcessesAreRemoved) {
  const fs::path d = fresh_dir("stale");
  const long long dead = dead_pid(), live = (long long)::getppid();
  for (const std::string& n : {".iter_4.tmp-" + std::to_string(dead), ".best_model.tmp-" + std::to_string(dead),
                               ".iter_5.tmp-" + std::to_string(live), ".iter_6.tmp-" + std::to_string(::getpid())}) {
    fs::create_directories(d / n);
    std::ofstream(d / n / "model.safetensors") << "partial";
  }
  // An interrupted replacement: best_model was moved aside and the new one never arrived.
  write_checkpoint(d / (".best_model.old-" + std::to_string(dead)), 2, 2.0f);
  std::ostringstream log;
  clean_stale_temporaries(d, /*locked=*/false, log, "");
  EXPECT_FALSE(fs::exists(d / (".iter_4.tmp-" + std::to_string(dead))));
  EXPECT_FALSE(fs::exists(d / (".best_model.tmp-" + std::to_string(dead))));
  EXPECT_TRUE(fs::exists(d / (".iter_5.tmp-" + std::to_string(live))));  // a live process's: kept without the lock
  EXPECT_TRUE(fs::exists(d / (".iter_6.tmp-" + std::to_string(::getpid()))));  // our own: kept
  EXPECT_FLOAT_EQ(value_in(d / "best_model"), 2.0f);                           // restored
  EXPECT_NE(log.str().find("Restored"), std::string::npos) << log.str();
  // Holding the run folder's lock, no other engine-train writes here: a live pid is a reused one.
  clean_stale_temporaries(d, /*locked=*/true, log, "");
  EXPECT_FALSE(fs::exists(d / (".iter_5.tmp-" + std::to_string(live))));
  EXPECT_TRUE(fs::exists(d / (".iter_6.tmp-" + std::to_string(::getpid()))));
}

TEST(RunDir, CheckpointFoldersAreReplacedWholeOrNotAtAll) {
  const fs::path d = fresh_dir("replace");
  write_checkpoint(d / "best_model", 1, 1.0f);
  write_checkpoint(d / "best_model", 2, 2.0f);  // replaced (exchanged) in one step
  EXPECT_FLOAT_EQ(value_in(d / "best_model"), 2.0f);
  // A failing write (a tensor name save_safetensors refuses) leaves the old folder and no temporary.
  const std::vector<std::pair<std::string, Tensor>> bad = {{"", Tensor::full({1}, 5.0f)}};
  EXPECT_THROW(save_checkpoint_dir(d / "best_model", {{"model.safetensors", &bad, {}}}), Error);
  EXPECT_FLOAT_EQ(value_in(d / "best_model"), 2.0f);
  int entries = 0;
  for (const auto& e : fs::directory_iterator(d)) {
    (void)e;
    ++entries;
  }
  EXPECT_EQ(entries, 1);
}
