// engine-launch (cli/engine_launch.cpp), run as a program with `sh -c` scripts as workers, so no GPU is
// needed: each rank's environment (and what train/dist_env.h makes of it), where output goes, a failing
// worker stopping the others, SIGKILL after the grace, signals forwarded from the launcher (or sent when it
// is killed), bad flags, an unexecutable program, and the rendezvous folder removed at exit.
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "engine/device.h"
#include "tests/harness/temp_dirs.h"
#include "train/dist_env.h"

extern char** environ;

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using Env = std::map<std::string, std::string>;

const char* kNoValue = "\x01unset";  // in an Env passed to start(): remove the variable

std::string read_text(const fs::path& p) {
  std::ifstream f(p);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream s(text);
  for (std::string l; std::getline(s, l);) out.push_back(l);
  return out;
}

// The launcher's environment: this process's, without any launcher's variables, plus `extra`.
std::vector<std::string> launcher_env(const fs::path& dir, const Env& extra) {
  Env env;
  for (char** e = environ; *e; ++e) {
    const std::string kv = *e;
    const size_t eq = kv.find('=');
    env[kv.substr(0, eq)] = eq == std::string::npos ? "" : kv.substr(eq + 1);
  }
  for (const char* v : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "OMPI_COMM_WORLD_RANK",
                        "OMPI_COMM_WORLD_SIZE", "PADDLE_TRAINER_ID", "PADDLE_TRAINERS_NUM", "SLURM_PROCID",
                        "SLURM_NTASKS", "OMP_NUM_THREADS", "CUDA_VISIBLE_DEVICES"})
    env.erase(v);
  env["T"] = dir.string();  // the scripts' folder for their reports
  fs::create_directories(dir / "tmp");
  env["TMPDIR"] = (dir / "tmp").string();  // so the test sees the launcher's rendezvous folder come and go
  for (const auto& [k, v] : extra) {
    if (v == kNoValue)
      env.erase(k);
    else
      env[k] = v;
  }
  std::vector<std::string> out;
  for (const auto& [k, v] : env) out.push_back(k + "=" + v);
  return out;
}

// engine-launch ARGS, in `dir`, its stdout and stderr to dir/console.{out,err}.
pid_t start(const fs::path& dir, const std::vector<std::string>& args, const Env& extra = {}) {
  std::vector<std::string> argv_s = {ENGINE_LAUNCH_BIN};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  const std::vector<std::string> env_s = launcher_env(dir, extra);
  std::vector<char*> argv, envp;
  for (const auto& s : argv_s) argv.push_back(const_cast<char*>(s.c_str()));
  argv.push_back(nullptr);
  for (const auto& s : env_s) envp.push_back(const_cast<char*>(s.c_str()));
  envp.push_back(nullptr);
  const std::string out = (dir / "console.out").string(), err = (dir / "console.err").string();
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (::chdir(dir.c_str()) != 0 || !std::freopen(out.c_str(), "w", stdout) || !std::freopen(err.c_str(), "w", stderr))
      ::_exit(99);
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(98);
  }
  return pid;
}

struct Result {
  int code = -1;
  std::string out, err;
  double seconds = 0;
};

Result finish(pid_t pid, const fs::path& dir, Clock::time_point started) {
  Result r;
  int status = 0;
  while (::waitpid(pid, &status, WNOHANG) == 0) {
    if (Clock::now() - started > std::chrono::seconds(30)) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      ADD_FAILURE() << "engine-launch did not exit within 30 s";
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  r.seconds = std::chrono::duration<double>(Clock::now() - started).count();
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = read_text(dir / "console.out");
  r.err = read_text(dir / "console.err");
  return r;
}

Result launch(const fs::path& dir, const std::vector<std::string>& args, const Env& extra = {}) {
  const auto t0 = Clock::now();
  return finish(start(dir, args, extra), dir, t0);
}

bool wait_for_file(const fs::path& p, double seconds = 10) {
  const auto until = Clock::now() + std::chrono::duration<double>(seconds);
  while (!fs::exists(p)) {
    if (Clock::now() > until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

bool process_gone(pid_t pid) { return ::kill(pid, 0) != 0 && errno == ESRCH; }

pid_t pid_in(const fs::path& p) {
  std::ifstream f(p);
  long pid = -1;
  f >> pid;
  return (pid_t)pid;
}

// Each worker's environment as `env` printed it to T/env.RANK (written under another name first, so a file
// that exists is complete).
const char* kDumpEnv = "env > \"$T/env.$RANK.tmp\"; mv \"$T/env.$RANK.tmp\" \"$T/env.$RANK\"";

Env read_env(const fs::path& p) {
  Env env;
  for (const auto& l : lines_of(read_text(p))) {
    const size_t eq = l.find('=');
    if (eq != std::string::npos) env[l.substr(0, eq)] = l.substr(eq + 1);
  }
  return env;
}

int usable_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  return sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : (int)sysconf(_SC_NPROCESSORS_ONLN);
}

// The launcher's own stderr lines all carry its prefix; the rest is rank 0's stderr.
void expect_launcher_lines(const std::string& err, const std::string& rank0_err_line = "") {
  for (const auto& l : lines_of(err))
    if (l != rank0_err_line) {
      EXPECT_EQ(l.rfind("engine-launch: ", 0), 0u) << l;
    }
}

TEST(Launch, EveryRankGetsItsOwnTorchrunStyleEnvironment) {
  const fs::path dir = engine::testing::fresh_test_dir("launch_env");
  // Variables of outer launchers, which dist_env.h would prefer, must not reach the workers.
  const Env outer = {{"OMPI_COMM_WORLD_RANK", "5"},
                     {"OMPI_COMM_WORLD_SIZE", "8"},
                     {"PADDLE_TRAINER_ID", "1"},
                     {"PADDLE_TRAINERS_NUM", "2"},
                     {"SLURM_PROCID", "3"},
                     {"SLURM_NTASKS", "4"},
                     {"RANK", "7"},
                     {"WORLD_SIZE", "9"},
                     {"PMIX_RANK", "2"},
                     {"PMI_RANK", "2"},
                     {"OMPI_MCA_orte_ess_num_procs", "8"}};
  const std::string script =
      std::string("[ -d \"$(dirname \"$ENGINE_RENDEZVOUS_FILE\")\" ] && export RDV_DIR=yes; ") + kDumpEnv;
  const Result r = launch(dir, {"--nproc_per_node", "3", "sh", "-c", script}, outer);
  ASSERT_EQ(r.code, 0) << r.err;
  expect_launcher_lines(r.err);
  std::set<std::string> ranks, rendezvous;
  for (int rank = 0; rank < 3; ++rank) {
    SCOPED_TRACE("rank " + std::to_string(rank));
    const Env env = read_env(dir / ("env." + std::to_string(rank)));
    ranks.insert(env.at("RANK"));
    EXPECT_EQ(env.at("RANK"), std::to_string(rank));
    EXPECT_EQ(env.at("LOCAL_RANK"), std::to_string(rank));
    EXPECT_EQ(env.at("WORLD_SIZE"), "3");
    EXPECT_EQ(env.at("LOCAL_WORLD_SIZE"), "3");
    EXPECT_EQ(env.count("CUDA_VISIBLE_DEVICES"), 0u) << "--nproc_per_node assigns no GPU";
    EXPECT_EQ(env.at("OMP_NUM_THREADS"), std::to_string(std::max(1, usable_cores() / 3)));
    for (const char* v : {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "PADDLE_TRAINER_ID", "PADDLE_TRAINERS_NUM",
                          "SLURM_PROCID", "SLURM_NTASKS", "PMIX_RANK", "PMI_RANK", "OMPI_MCA_orte_ess_num_procs"})
      EXPECT_EQ(env.count(v), 0u) << v;
    const fs::path rdv = env.at("ENGINE_RENDEZVOUS_FILE");
    EXPECT_EQ(rdv.filename(), "nccl_id");
    EXPECT_EQ(rdv.parent_path().parent_path(), dir / "tmp") << "under TMPDIR";
    EXPECT_EQ(env.count("RDV_DIR"), 1u) << "the rendezvous folder exists while the workers run";
    rendezvous.insert(rdv.string());
    // What the trainer makes of it.
    const engine::train::DistEnv d = engine::train::dist_env_from([&env](const char* name) -> const char* {
      auto it = env.find(name);
      return it == env.end() ? nullptr : it->second.c_str();
    });
    EXPECT_EQ(d.launcher, "torchrun-style");
    EXPECT_TRUE(d.ignored.empty());
    EXPECT_EQ(d.rank, rank);
    EXPECT_EQ(d.world_size, 3);
    EXPECT_EQ(d.local_rank, rank);
    EXPECT_EQ(d.local_world_size, 3);
  }
  EXPECT_EQ(ranks.size(), 3u);
  ASSERT_EQ(rendezvous.size(), 1u) << "one rendezvous file for the whole job";
  EXPECT_FALSE(fs::exists(fs::path(*rendezvous.begin()).parent_path())) << "removed at exit";
  EXPECT_TRUE(fs::is_empty(dir / "tmp"));
}

TEST(Launch, GpusListIsEveryWorkersCudaVisibleDevicesWithoutAGpu) {
  const fs::path dir = engine::testing::fresh_test_dir("launch_gpus");
  const Result r = launch(dir, {"--gpus", "3,1", "--", "sh", "-c", kDumpEnv},
                          {{"CUDA_VISIBLE_DEVICES", "0"}, {"OMP_NUM_THREADS", "7"}});
  ASSERT_EQ(r.code, 0) << r.err;
  for (int rank = 0; rank < 2; ++rank) {
    SCOPED_TRACE("rank " + std::to_string(rank));
    const Env env = read_env(dir / ("env." + std::to_string(rank)));
    EXPECT_EQ(env.at("RANK"), std::to_string(rank));
    EXPECT_EQ(env.at("WORLD_SIZE"), "2");
    EXPECT_EQ(env.at("CUDA_VISIBLE_DEVICES"), "3,1") << "the list as given, the same for every worker";
    EXPECT_EQ(env.at("OMP_NUM_THREADS"), "7") << "the user's value stays";
    // Worker r uses entry r of the list (renumbered r by CUDA).
    EXPECT_EQ(engine::train::device_for_local_rank(rank, env.at("CUDA_VISIBLE_DEVICES").c_str(), 4), rank);
  }
  EXPECT_FALSE(fs::exists(dir / "env.2"));
}

TEST(Launch, WithoutFlagsOneWorkerPerVisibleGpu) {
  const fs::path dir = engine::testing::fresh_test_dir("launch_default");
  Result r = launch(dir, {"sh", "-c", kDumpEnv}, {{"CUDA_VISIBLE_DEVICES", "0,1,2"}});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(fs::exists(dir / "env.2"));
  EXPECT_FALSE(fs::exists(dir / "env.3"));
  EXPECT_EQ(read_env(dir / "env.1").at("CUDA_VISIBLE_DEVICES"), "0,1,2");

  r = launch(dir, {"sh", "-c", "true"}, {{"CUDA_VISIBLE_DEVICES", ""}});
  EXPECT_EQ(r.code, 2);
  ASSERT_EQ(lines_of(r.err).size(), 1u) << r.err;
  EXPECT_NE(r.err.find("--gpus"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("--nproc_per_node"), std::string::npos) << r.err;

  // CUDA_VISIBLE_DEVICES unset: the CUDA device count (the emulated build has one, a CPU-only build none).
  for (int rank = 0; rank < 3; ++rank) fs::remove(dir / ("env." + std::to_string(rank)));
  const int gpus = engine::cuda_device_count();
  r = launch(dir, {"sh", "-c", kDumpEnv}, {{"CUDA_VISIBLE_DEVICES", kNoValue}});
  if (gpus == 0) {
    EXPECT_EQ(r.code, 2);
    ASSERT_EQ(lines_of(r.err).size(), 1u) << r.err;
    EXPECT_NE(r.err.find("--nproc_per_node"), std::string::npos) << r.err;
  } else {
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_TRUE(fs::exists(dir / ("env." + std::to_string(gpus - 1))));
    EXPECT_FALSE(fs::exists(dir / ("env." + std::to_string(gpus))));
  }
}

TEST(Launch, RankZeroOnTheConsoleEveryRankInItsWorkerlog) {
  const fs::path dir = engine::testing::fresh_test_dir("launch_logs");
  const std::string script = "echo \"out of rank $RANK\"; echo \"err of rank $RANK\" >&2";
  Result r = launch(dir, {"--nproc_per_node", "3", "--log_dir", "logs/run1", "sh", "-c", script});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "out of rank 0\n");
  EXPECT_NE(r.err.find("err of rank 0\n"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("rank 1"), std::string::npos) << r.err;
  expect_launcher_lines(r.err, "err of rank 0");
  for (int rank = 0; rank < 3; ++rank) {
    const std::string log = read_text(dir / "logs/run1" / ("workerlog." + std::to_string(rank)));
    const std::string n = std::to_string(rank);
    EXPECT_NE(log.find("out of rank " + n + "\n"), std::string::npos) << log;
    EXPECT_NE(log.find("err of rank " + n + "\n"), std::string::npos) << log;
    EXPECT_EQ(lines_of(log).size(), 2u) << log;
  }
  // Paddle's default folder, "log" in the working directory.
  r = launch(dir, {"--nproc_per_node", "2", "sh", "-c", script});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(read_text(dir / "log/workerlog.1").find("out of rank 1"), std::string::npos);
  EXPECT_FALSE(fs::exists(dir / "log/workerlog.2"));
}

TEST(Launch, AFailingWorkerStopsTheOthersAndGivesItsCode) {
  const fs::path dir = engine::testing::fresh_test_dir("launch_fail");
  // Ranks 0 and 2 sleep; rank 1 fails once they have written their pids.
  const std::string script =
      "if [ $RANK = 1 ]; then"
      "  while [ ! -f \"$T/pid.0\" ] || [ ! -f \"$T/pid.2\" ]; do sleep 0.02; done; echo failing; exit 3; "
      "fi; echo $$ > \"$T/pid.$RANK.tmp\"; mv \"$T/pid.$RANK.tmp\" \"$T/pid.$RANK\"; exec sleep 30";
  const Result r = launch(dir, {"--nproc_per_node", "3", "--grace_seconds", "10", "sh", "-c", script});
  EXPECT_EQ(r.code, 3) << r.err;
  EXPECT_LT(r.seconds, 8) << "SIGTERM stops the sleeping workers at once";
  EXPECT_NE(r.err.find("rank 1 (pid "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("code 3"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("log/workerlog.1"), std::string::npos) << r.err;
  expect_launcher_lines(r.err);
  EXPECT_NE(read_text(dir / "log/workerlog.1").find("failing"), std::string::npos);
  for (int rank : {0, 2}) {
    const pid_t pid = pid_in(dir / ("pid." + std::to_string(rank)));
    ASSERT_GT(pid, 0);
    EXPECT_TRUE(process_gone(pid)) << "rank " << rank << " pid " << pid;
  }
}

TEST(Launch, AWorkerIgnoringSigtermIsKilledAfterTheGrace) {
  const fs::path dir = engine::testing::fresh_test_dir("launch_grace");
  const std::string script =
      "if [ $RANK = 0 ]; then while [ ! -f \"$T/pid.1\" ]; do sleep 0.02; done; exit 4; fi; "
      "trap '' TERM; echo $$ > \"$T/pid.1.tmp\"; mv \"$T/pid.1.tmp\" \"$T/pid.1\"; exec sleep 30";
  const Result r = launch(dir, {"--nproc_per_node", "2", "--grace_seconds", "1", "sh", "-c", script});
  EXPECT_EQ(r.code, 4) << r.err;
  EXPECT_GE(r.seconds, 1.0);
  EXPECT_LT(r.seconds, 8);
  EXPECT_NE(r.err.find("rank 1"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("SIGKILL"), std::string::npos) << r.err;
  const pid_t pid = pid_in(dir / "pid.1");
  ASSERT_GT(pid, 0);
  EXPECT_TRUE(process_gone(pid));
}

TEST(Launch, AWorkerKilledByASignalGives128PlusIt) {
  const fs::path dir = engine::testing::fresh_test_dir("launch_signalled");
  const Result r =
      launch(dir, {"--nproc_per_node", "2", "sh", "-c", "if [ $RANK = 1 ]; then kill -KILL $$; fi; exec sleep 30"});
  EXPECT_EQ(r.code, 128 + SIGKILL) << r.err;
  EXPECT_NE(r.err.find("rank 1"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("SIGKILL"), std::string::npos) << r.err;
  EXPECT_LT(r.seconds, 8);
}

TEST(Launch, SigtermAndSigintToTheLauncherReachEveryWorker) {
  for (int sig : {SIGTERM, SIGINT}) {
    SCOPED_TRACE("signal " + std::to_string(sig));
    const fs::path dir = engine::testing::fresh_test_dir("launch_forward_" + std::to_string(sig));
    // As engine-train does: the signal makes the worker save and exit 0.
    const std::string script =
        "trap 'echo saved > \"$T/saved.$RANK\"; exit 0' INT TERM; touch \"$T/ready.$RANK\"; "
        "while :; do sleep 0.05; done";
    const auto t0 = Clock::now();
    const pid_t pid = start(dir, {"--nproc_per_node", "2", "--grace_seconds", "10", "sh", "-c", script});
    ASSERT_TRUE(wait_for_file(dir / "ready.0") && wait_for_file(dir / "ready.1"));
    ASSERT_EQ(::kill(pid, sig), 0);
    const Result r = finish(pid, dir, t0);
    EXPECT_EQ(r.code, 128 + sig) << r.err;
    EXPECT_TRUE(fs::exists(dir / "saved.0"));
    EXPECT_TRUE(fs::exists(dir / "saved.1"));
    // (rank 0's sh reports its killed sleep on the console too, so no check that all lines are the launcher's)
    EXPECT_NE(r.err.find(sig == SIGTERM ? "received SIGTERM" : "received SIGINT"), std::string::npos) << r.err;
    EXPECT_TRUE(fs::is_empty(dir / "tmp")) << "the rendezvous folder is removed after a signal too";
  }
}

TEST(Launch, AWorkerOutlivingAKilledLauncherGetsSigterm) {
  const fs::path dir = engine::testing::fresh_test_dir("launch_orphan");
  const std::string script =
      "trap 'echo stopped > \"$T/stopped.$RANK\"; exit 0' TERM; touch \"$T/ready.$RANK\"; "
      "while :; do sleep 0.05; done";
  const auto t0 = Clock::now();
  const pid_t pid = start(dir, {"--nproc_per_node", "2", "sh", "-c", script});
  ASSERT_TRUE(wait_for_file(dir / "ready.0") && wait_for_file(dir / "ready.1"));
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  EXPECT_EQ(finish(pid, dir, t0).code, 128 + SIGKILL);
  EXPECT_TRUE(wait_for_file(dir / "stopped.0"));
  EXPECT_TRUE(wait_for_file(dir / "stopped.1"));
}

TEST(Launch, BadFlagsExit2NamingTheFlag) {
  const fs::path dir = engine::testing::fresh_test_dir("launch_flags");
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--gpus", "0,x", "true"}, "--gpus"},
      {{"--gpus", "0,1,0", "true"}, "--gpus"},
      {{"--gpus", "", "true"}, "--gpus"},
      {{"--gpus=1,", "true"}, "--gpus"},
      {{"--nproc_per_node", "0", "true"}, "--nproc_per_node"},
      {{"--nproc_per_node", "two", "true"}, "--nproc_per_node"},
      {{"--gpus", "0,1", "--nproc_per_node", "3", "true"}, "--nproc_per_node"},
      {{"--grace_seconds", "-1", "true"}, "--grace_seconds"},
      {{"--log_dir"}, "--log_dir"},
      {{"--nproc_per_node", "2"}, "PROGRAM"},
      {{"--nproc_per_node", "2", "--"}, "PROGRAM"},
      {{"--bogus", "true"}, "--bogus"},
  };
  for (const auto& [args, flag] : cases) {
    std::string joined;
    for (const auto& a : args) joined += a + " ";
    SCOPED_TRACE(joined);
    const Result r = launch(dir, args);
    EXPECT_EQ(r.code, 2);
    ASSERT_EQ(lines_of(r.err).size(), 1u) << r.err;
    EXPECT_EQ(r.err.rfind("engine-launch: ", 0), 0u) << r.err;
    EXPECT_NE(r.err.find(flag), std::string::npos) << r.err;
  }
  EXPECT_FALSE(fs::exists(dir / "log")) << "nothing started";
  // The same count twice is fine.
  EXPECT_EQ(launch(dir, {"--gpus", "0,1", "--nproc_per_node", "2", "true"}).code, 0);

  const Result help = launch(dir, {"--help"});
  EXPECT_EQ(help.code, 0);
  EXPECT_EQ(help.out.rfind("usage: engine-launch", 0), 0u) << help.out;
}

TEST(Launch, AProgramThatCannotBeExecutedExits127WithNoWorker) {
  const fs::path dir = engine::testing::fresh_test_dir("launch_noexec");
  {
    std::ofstream f(dir / "not_executable.sh");
    f << "#!/bin/sh\necho ran > \"$T/ran\"\n";
  }
  ::chmod((dir / "not_executable.sh").c_str(), 0644);
  for (const std::string prog : {"./no_such_program", "./not_executable.sh", "engine_launch_test_no_such_command"}) {
    SCOPED_TRACE(prog);
    const Result r = launch(dir, {"--nproc_per_node", "2", prog});
    EXPECT_EQ(r.code, 127);
    ASSERT_EQ(lines_of(r.err).size(), 1u) << r.err;
    EXPECT_NE(r.err.find(prog), std::string::npos) << r.err;
  }
  EXPECT_FALSE(fs::exists(dir / "ran"));
  EXPECT_FALSE(fs::exists(dir / "log")) << "no worker was started";
  EXPECT_TRUE(fs::is_empty(dir / "tmp"));
}

}  // namespace
