// engine-launch: starts one training process per GPU (or N CPU processes) on this node and watches them,
// the equivalent of `python -m paddle.distributed.launch` for one node.
//   engine-launch [--gpus 0,1,3] [--nproc_per_node N] [--log_dir DIR] [--grace_seconds S] [--] PROGRAM ARGS...
// Worker r of n gets RANK=r WORLD_SIZE=n LOCAL_RANK=r LOCAL_WORLD_SIZE=n (train/dist_env.h), with --gpus also
// CUDA_VISIBLE_DEVICES=<the list> (the worker uses entry LOCAL_RANK), ENGINE_RENDEZVOUS_FILE in a private temp
// folder removed at exit, and OMP_NUM_THREADS = cores / n unless set. Rank 0 prints to the console and
// DIR/workerlog.0, rank r > 0 only to DIR/workerlog.r.
// The first worker that fails stops the others (SIGTERM, SIGKILL after the grace) and its exit code becomes the
// launcher's (128 + signal for a signal). SIGINT/SIGTERM to the launcher are forwarded to every worker (SIGHUP
// as SIGTERM; a second one sends SIGKILL); a launcher killed outright leaves each worker a SIGTERM.
// Exit codes: 0 all workers succeeded, 2 bad flags, 127 PROGRAM cannot be executed, else the failed worker's
// code, or 128 + the signal that interrupted the launcher.
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "base/error.h"
#include "engine/device.h"

extern char** environ;

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

const char* kUsage =
    "usage: engine-launch [--gpus 0,1,3] [--nproc_per_node N] [--log_dir DIR] [--grace_seconds S] [--] PROGRAM "
    "ARGS...\n"
    "  Starts PROGRAM once per worker on this node (one-node torchrun / paddle.distributed.launch).\n"
    "  --gpus LIST          one worker per listed GPU id; every worker gets CUDA_VISIBLE_DEVICES=LIST and uses\n"
    "                       entry LOCAL_RANK of it\n"
    "  --nproc_per_node N   N workers (no GPU assignment: CPU programs; with --gpus the counts must agree)\n"
    "                       neither flag: one worker per visible GPU (CUDA_VISIBLE_DEVICES entries or all)\n"
    "  --log_dir DIR        worker logs DIR/workerlog.RANK (default: log); rank 0 also prints to the console\n"
    "  --grace_seconds S    after SIGTERM to the workers, SIGKILL those still running after S seconds (default 30)\n"
    "  Worker r of n: RANK=r WORLD_SIZE=n LOCAL_RANK=r LOCAL_WORLD_SIZE=n, ENGINE_RENDEZVOUS_FILE (a private temp\n"
    "  folder, removed at exit), OMP_NUM_THREADS=cores/n unless set; OMPI_COMM_WORLD_*, PADDLE_TRAINER_ID,\n"
    "  PADDLE_TRAINERS_NUM, SLURM_PROCID, SLURM_NTASKS and SLURM_NPROCS are removed.\n"
    "  A worker that fails stops the others; the launcher exits with its code (128+signal when killed).\n"
    "  SIGINT/SIGTERM are forwarded to every worker (SIGHUP as SIGTERM; a second signal sends SIGKILL), and\n"
    "  the launcher exits 128+signal. Exit 2: bad flags; 127: PROGRAM cannot be executed.\n";

void say(const std::string& line) {
  const std::string s = "engine-launch: " + line + "\n";
  (void)!::write(STDERR_FILENO, s.data(), s.size());
}

struct Args {
  std::vector<std::string> gpus;  // as given, in order
  std::string gpus_text;
  int nproc = 0;  // 0: not given
  std::string log_dir = "log";
  double grace_s = 30;
  std::vector<std::string> program;
};

bool all_digits(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

Args parse_args(int argc, char** argv, bool* help) {
  Args a;
  bool nproc_given = false;
  int i = 1;
  for (; i < argc; ++i) {
    std::string flag = argv[i];
    if (flag == "--") {
      ++i;
      break;
    }
    if (flag == "--help" || flag == "-h") {
      *help = true;
      return a;
    }
    if (flag.size() < 2 || flag[0] != '-') break;  // PROGRAM
    std::string v;
    if (const size_t eq = flag.find('='); eq != std::string::npos) {
      v = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
    } else if (flag == "--gpus" || flag == "--nproc_per_node" || flag == "--log_dir" || flag == "--grace_seconds") {
      if (i + 1 >= argc) engine::fail(flag, ": missing value (see --help)");
      v = argv[++i];
    }
    if (flag == "--gpus") {
      a.gpus_text = v;
      a.gpus.clear();
      std::set<long> seen;
      size_t start = 0;
      while (true) {
        const size_t comma = v.find(',', start);
        const std::string id = v.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
        if (!all_digits(id) || id.size() > 6)
          engine::fail("--gpus: expected comma-separated GPU ids (integers >= 0) like 0,1,3, got '", v, "'");
        if (!seen.insert(std::stol(id)).second) engine::fail("--gpus: GPU id ", id, " is listed twice in '", v, "'");
        a.gpus.push_back(id);
        if (comma == std::string::npos) break;
        start = comma + 1;
      }
    } else if (flag == "--nproc_per_node") {
      if (!all_digits(v) || v.size() > 5 || std::stoi(v) < 1)
        engine::fail("--nproc_per_node: expected an integer >= 1, got '", v, "'");
      a.nproc = std::stoi(v);
      nproc_given = true;
    } else if (flag == "--log_dir") {
      if (v.empty()) engine::fail("--log_dir: expected a folder, got ''");
      a.log_dir = v;
    } else if (flag == "--grace_seconds") {
      char* end = nullptr;
      const double s = std::strtod(v.c_str(), &end);
      if (v.empty() || *end != '\0' || !std::isfinite(s) || s < 0 || s > 1e6)
        engine::fail("--grace_seconds: expected a number of seconds >= 0, got '", v, "'");
      a.grace_s = s;
    } else {
      engine::fail("unknown flag ", flag,
                   " (expected --gpus, --nproc_per_node, --log_dir, --grace_seconds or "
                   "PROGRAM; see --help)");
    }
  }
  for (; i < argc; ++i) a.program.push_back(argv[i]);
  if (a.program.empty()) engine::fail("no PROGRAM given (usage: engine-launch [flags] [--] PROGRAM ARGS...)");
  if (nproc_given && !a.gpus.empty() && (size_t)a.nproc != a.gpus.size())
    engine::fail("--nproc_per_node ", a.nproc, " disagrees with --gpus ", a.gpus_text, " (", a.gpus.size(),
                 " GPUs): give one of them, or the same count");
  return a;
}

// Number of entries of a CUDA_VISIBLE_DEVICES value (ids or GPU-uuid strings, comma-separated).
int count_entries(const std::string& s) {
  int n = 0;
  size_t start = 0;
  while (start <= s.size()) {
    size_t comma = s.find(',', start);
    if (comma == std::string::npos) comma = s.size();
    if (comma > start) ++n;
    start = comma + 1;
  }
  return n;
}

int quiet_cuda_device_count() {
  // The engine prints its own "no CUDA device" notice; the launcher's message below says it for the launcher.
  fflush(stderr);
  const int saved = ::dup(STDERR_FILENO);
  const int null = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
  if (saved >= 0 && null >= 0) ::dup2(null, STDERR_FILENO);
  const int n = engine::cuda_device_count();
  fflush(stderr);
  if (saved >= 0) ::dup2(saved, STDERR_FILENO), ::close(saved);
  if (null >= 0) ::close(null);
  return n;
}

int usable_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return (int)std::max(1L, sysconf(_SC_NPROCESSORS_ONLN));
}

// The path execve will run: PROGRAM itself when it has a '/', else the first executable match on PATH.
// Checked before any worker starts, so an unusable PROGRAM leaves nothing behind. Returns "" with *err set.
std::string resolve_program(const std::string& prog, int* err) {
  auto executable = [](const std::string& p, int* e) {
    struct stat st;
    if (::stat(p.c_str(), &st) != 0) return *e = errno, false;
    if (S_ISDIR(st.st_mode)) return *e = EISDIR, false;
    if (::access(p.c_str(), X_OK) != 0) return *e = errno, false;
    return true;
  };
  *err = ENOENT;
  if (prog.find('/') != std::string::npos) return executable(prog, err) ? prog : std::string();
  const char* path = std::getenv("PATH");
  const std::string dirs = path ? path : "/usr/local/bin:/usr/bin:/bin";
  int first_err = ENOENT;
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t colon = dirs.find(':', start);
    if (colon == std::string::npos) colon = dirs.size();
    const std::string dir = colon > start ? dirs.substr(start, colon - start) : ".";
    const std::string cand = dir + "/" + prog;
    int e = 0;
    if (executable(cand, &e)) return cand;
    if (e != ENOENT && e != ENOTDIR && first_err == ENOENT) first_err = e;  // e.g. EACCES: report that, as sh does
    start = colon + 1;
  }
  *err = first_err;
  return "";
}

std::vector<std::string> worker_env(int rank, int n, const Args& a, const std::string& rendezvous_file, bool omp_set,
                                    int cores) {
  // Removed: dist_env.h prefers these launchers' variables over RANK/WORLD_SIZE, so values leaking in from an
  // outer mpirun, Paddle job or Slurm allocation would override this launcher's; and an MPI launcher's
  // (OMPI_*, PMIX_*, PMI_*: srun's PMIx plugin sets PMIX_RANK), which would make every worker take the
  // MPI path (mpi_communicator.h started_by_mpi_launcher) as a world of one instead of this rendezvous.
  auto dropped = [](const std::string& kv) {
    const std::string name = kv.substr(0, kv.find('='));
    static const std::set<std::string> names = {"PADDLE_TRAINER_ID",    "PADDLE_TRAINERS_NUM",
                                                "SLURM_PROCID",         "SLURM_NTASKS",
                                                "SLURM_NPROCS",         "RANK",
                                                "WORLD_SIZE",           "LOCAL_RANK",
                                                "LOCAL_WORLD_SIZE",     "ENGINE_RENDEZVOUS_FILE",
                                                "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS"};
    for (const char* prefix : {"OMPI_", "PMIX_", "PMI_"})
      if (name.rfind(prefix, 0) == 0) return true;
    return names.count(name) > 0;
  };
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    const std::string kv = *e;
    if (!dropped(kv)) env.push_back(kv);
  }
  env.push_back("RANK=" + std::to_string(rank));
  env.push_back("WORLD_SIZE=" + std::to_string(n));
  env.push_back("LOCAL_RANK=" + std::to_string(rank));
  env.push_back("LOCAL_WORLD_SIZE=" + std::to_string(n));
  env.push_back("ENGINE_RENDEZVOUS_FILE=" + rendezvous_file);
  if (!a.gpus.empty()) {
    env.push_back("CUDA_VISIBLE_DEVICES=" + a.gpus_text);
  } else if (const char* cvd = std::getenv("CUDA_VISIBLE_DEVICES")) {
    env.push_back(std::string("CUDA_VISIBLE_DEVICES=") + cvd);
  }
  if (omp_set)
    env.push_back(std::string("OMP_NUM_THREADS=") + std::getenv("OMP_NUM_THREADS"));
  else
    env.push_back("OMP_NUM_THREADS=" + std::to_string(std::max(1, cores / n)));
  return env;
}

// Signals reach the poll loop through a pipe (the handler only writes the signal number).
int g_sig_pipe[2] = {-1, -1};
extern "C" void on_signal(int sig) {
  const int saved = errno;
  const unsigned char b = (unsigned char)sig;
  (void)!::write(g_sig_pipe[1], &b, 1);
  errno = saved;
}

std::string signal_name(int sig) {
  switch (sig) {
    case SIGHUP:
      return "SIGHUP";
    case SIGINT:
      return "SIGINT";
    case SIGQUIT:
      return "SIGQUIT";
    case SIGILL:
      return "SIGILL";
    case SIGABRT:
      return "SIGABRT";
    case SIGBUS:
      return "SIGBUS";
    case SIGFPE:
      return "SIGFPE";
    case SIGKILL:
      return "SIGKILL";
    case SIGSEGV:
      return "SIGSEGV";
    case SIGPIPE:
      return "SIGPIPE";
    case SIGTERM:
      return "SIGTERM";
    default:
      return "signal " + std::to_string(sig);
  }
}

struct Worker {
  pid_t pid = -1;
  bool running = false;
  std::string log;
  int log_fd = -1;  // open until the worker is started
};

struct Tee {  // rank 0's stdout or stderr: copied to the console and to workerlog.0
  int fd = -1;
  int console = -1;
};

void write_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;  // a closed console (EPIPE) must not stop the launcher or the log
    p += w, n -= (size_t)w;
  }
}

// Reads what is there (at most 1 MiB, so a chatty rank 0 cannot keep the watcher from its other work);
// false at end of file.
bool pump(Tee& t, int log_fd) {
  char buf[65536];
  for (int chunk = 0; chunk < 16; ++chunk) {
    const ssize_t r = ::read(t.fd, buf, sizeof buf);
    if (r > 0) {
      write_all(t.console, buf, (size_t)r);
      write_all(log_fd, buf, (size_t)r);
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && errno == EAGAIN) return true;
    ::close(t.fd);
    t.fd = -1;
    return false;
  }
  return true;
}

class Launcher {
 public:
  Launcher(Args a, std::string program_path) : a_(std::move(a)), path_(std::move(program_path)) {}

  int run(int n) {
    std::error_code ec;
    fs::create_directories(a_.log_dir, ec);
    if (ec || !fs::is_directory(a_.log_dir)) {
      say("--log_dir: cannot create folder '" + a_.log_dir + "': " + (ec ? ec.message() : "not a folder"));
      return 2;
    }
    const char* tmp = std::getenv("TMPDIR");
    std::string templ = std::string(tmp && *tmp ? tmp : "/tmp") + "/engine-launch.XXXXXX";
    if (!::mkdtemp(templ.data())) {  // mode 0700: the NCCL id is for this job's workers only
      say("cannot create the rendezvous folder " + templ + ": " + std::strerror(errno));
      return 1;
    }
    rendezvous_dir_ = templ;
    const int code = launch_and_watch(n);
    fs::remove_all(rendezvous_dir_, ec);
    return code;
  }

 private:
  int launch_and_watch(int n) {
    if (::pipe2(g_sig_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
      say(std::string("pipe: ") + std::strerror(errno));
      return 1;
    }
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_NOCLDSTOP;
    ::sigaction(SIGCHLD, &sa, nullptr);
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
      struct sigaction old {};
      ::sigaction(sig, nullptr, &old);
      // A launcher started with a signal ignored (SIGINT in a script's background job, SIGHUP under nohup)
      // keeps it ignored.
      if (old.sa_handler != SIG_IGN) ::sigaction(sig, &sa, nullptr);
    }
    ::signal(SIGPIPE, SIG_IGN);  // a console closed early (| head) must not kill the watcher

    const bool omp_set = std::getenv("OMP_NUM_THREADS") != nullptr;
    const int cores = usable_cores();
    const std::string rendezvous_file = rendezvous_dir_ + "/nccl_id";
    std::string what = std::to_string(n) + " worker" + (n > 1 ? "s" : "") + " of " + a_.program[0];
    if (!a_.gpus.empty()) what += " on GPUs " + a_.gpus_text;
    say("starting " + what + ", logs in " + a_.log_dir + "/workerlog.*");

    // Every log file first, so a folder that cannot hold them fails before any worker runs.
    workers_.resize(n);
    for (int r = 0; r < n; ++r) {
      Worker& w = workers_[r];
      w.log = a_.log_dir + "/workerlog." + std::to_string(r);
      w.log_fd = ::open(w.log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      if (w.log_fd < 0) {
        say("--log_dir: cannot write " + w.log + ": " + std::strerror(errno));
        close_logs();
        return 2;
      }
    }
    for (int r = 0; r < n; ++r) {
      const int e = spawn(r, worker_env(r, n, a_, rendezvous_file, omp_set, cores));
      if (e != 0) {
        // PROGRAM was checked already; this is a late failure (e.g. ENOEXEC, EAGAIN): stop those started.
        say("cannot execute '" + a_.program[0] + "' for rank " + std::to_string(r) + ": " + std::strerror(e));
        stop_all(SIGTERM, -1);
        watch();
        return 127;
      }
    }
    return watch();
  }

  // Returns 0 or the errno of a failed start.
  int spawn(int rank, const std::vector<std::string>& env) {
    Worker& w = workers_[rank];
    const int log_fd = w.log_fd;
    int out_pipe[2] = {-1, -1}, err_pipe[2] = {-1, -1}, exec_pipe[2] = {-1, -1};
    auto close_pipes = [&] {
      for (int* p : {out_pipe, err_pipe, exec_pipe})
        for (int k : {0, 1})
          if (p[k] >= 0) ::close(p[k]), p[k] = -1;
    };
    if ((rank == 0 && (::pipe2(out_pipe, O_CLOEXEC) != 0 || ::pipe2(err_pipe, O_CLOEXEC) != 0)) ||
        ::pipe2(exec_pipe, O_CLOEXEC) != 0) {
      const int e = errno;
      close_pipes();
      return e;
    }
    // Everything the child needs is built before fork: between fork and exec it only makes system calls.
    std::vector<char*> argv, envp;
    for (const auto& s : a_.program) argv.push_back(const_cast<char*>(s.c_str()));
    argv.push_back(nullptr);
    for (const auto& s : env) envp.push_back(const_cast<char*>(s.c_str()));
    envp.push_back(nullptr);
    const int out_fd = rank == 0 ? out_pipe[1] : log_fd, err_fd = rank == 0 ? err_pipe[1] : log_fd;
    const pid_t launcher = ::getpid();

    // Signals stay blocked until the child has reset their handlers (the launcher's would write to its pipe).
    sigset_t all, old;
    sigfillset(&all);
    ::sigprocmask(SIG_SETMASK, &all, &old);
    const pid_t pid = ::fork();
    if (pid < 0) {
      const int e = errno;
      ::sigprocmask(SIG_SETMASK, &old, nullptr);
      close_pipes();
      return e;
    }
    if (pid == 0) {
      // Own process group: Ctrl-C reaches the launcher only (which forwards it once), and stopping a worker
      // stops whatever it started too.
      ::setpgid(0, 0);
      // A launcher killed outright (SIGKILL, OOM) must not leave workers holding GPUs: they get SIGTERM.
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() != launcher) ::_exit(128 + SIGTERM);
      struct sigaction dfl {};
      dfl.sa_handler = SIG_DFL;
      for (int s : {SIGINT, SIGTERM, SIGCHLD, SIGPIPE, SIGHUP}) ::sigaction(s, &dfl, nullptr);
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      // stdin from /dev/null: a worker in its own process group that read the terminal would be stopped.
      const int null = ::open("/dev/null", O_RDONLY);
      int e = 0;
      if (null < 0 || ::dup2(null, STDIN_FILENO) < 0 || ::dup2(out_fd, STDOUT_FILENO) < 0 ||
          ::dup2(err_fd, STDERR_FILENO) < 0) {
        e = errno;
      } else {
        ::execve(path_.c_str(), argv.data(), envp.data());
        e = errno;
      }
      (void)!::write(exec_pipe[1], &e, sizeof e);
      ::_exit(127);
    }
    ::sigprocmask(SIG_SETMASK, &old, nullptr);
    ::setpgid(pid, pid);  // also here, so the group exists before the launcher may signal it
    ::close(exec_pipe[1]), exec_pipe[1] = -1;
    int e = 0;
    ssize_t got;
    while ((got = ::read(exec_pipe[0], &e, sizeof e)) < 0 && errno == EINTR) {
    }
    if (got <= 0) e = 0;  // end of file: the exec succeeded and closed the pipe
    if (e != 0) ::waitpid(pid, nullptr, 0);
    if (rank == 0 && e == 0) {
      log0_fd_ = log_fd;  // kept open: the launcher writes rank 0's output to it
      tees_[0] = {out_pipe[0], STDOUT_FILENO};
      tees_[1] = {err_pipe[0], STDERR_FILENO};
      out_pipe[0] = err_pipe[0] = -1;
      for (Tee& t : tees_) ::fcntl(t.fd, F_SETFL, ::fcntl(t.fd, F_GETFL) | O_NONBLOCK);
    }
    close_pipes();
    if (log0_fd_ != log_fd) ::close(log_fd);
    w.log_fd = -1;
    if (e != 0) return e;
    w.pid = pid;
    w.running = true;
    return 0;
  }

  int running_count() const {
    return (int)std::count_if(workers_.begin(), workers_.end(), [](const Worker& w) { return w.running; });
  }

  // Sends sig to every running worker's process group except rank `except`; starts the SIGKILL clock.
  void stop_all(int sig, int except) {
    if (!kill_at_) stop_signal_ = sig;
    for (size_t r = 0; r < workers_.size(); ++r)
      if (workers_[r].running && (int)r != except) ::kill(-workers_[r].pid, sig);
    if (!kill_at_) {
      kill_at_ = true;
      kill_deadline_ =
          Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(a_.grace_s));
    }
  }

  void kill_remaining() {
    for (size_t r = 0; r < workers_.size(); ++r) {
      if (!workers_[r].running) continue;
      say("rank " + std::to_string(r) + " (pid " + std::to_string(workers_[r].pid) + ") still running " +
          format_seconds(a_.grace_s) + " s after " + signal_name(stop_signal_) + "; sending SIGKILL");
      ::kill(-workers_[r].pid, SIGKILL);
    }
    killed_ = true;
  }

  static std::string format_seconds(double s) {
    char b[32];
    std::snprintf(b, sizeof b, "%g", s);
    return b;
  }

  void reap() {
    while (true) {
      int status = 0;
      const pid_t pid = ::waitpid(-1, &status, WNOHANG);
      if (pid <= 0) return;
      for (size_t r = 0; r < workers_.size(); ++r) {
        Worker& w = workers_[r];
        if (w.pid != pid || !w.running) continue;
        w.running = false;
        const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
        // Stopping already: later exits are the consequence, not the cause.
        if (ok || result_ >= 0 || interrupted_) break;
        if (WIFEXITED(status)) {
          result_ = WEXITSTATUS(status);
          say("rank " + std::to_string(r) + " (pid " + std::to_string(pid) + ") exited with code " +
              std::to_string(result_) + "; see " + w.log + "; stopping the other workers");
        } else {
          const int sig = WTERMSIG(status);
          result_ = 128 + sig;
          say("rank " + std::to_string(r) + " (pid " + std::to_string(pid) + ") was killed by " + signal_name(sig) +
              "; see " + w.log + "; stopping the other workers");
        }
        stop_all(SIGTERM, (int)r);
        break;
      }
    }
  }

  void on_launcher_signal(int sig) {
    if (interrupted_ > 0) {
      // A second Ctrl-C: the user does not want to wait for the grace period.
      say("received " + signal_name(sig) + " while stopping the workers; sending them SIGKILL");
      for (auto& w : workers_)
        if (w.running) ::kill(-w.pid, SIGKILL);
      return;
    }
    interrupted_ = sig;
    // A hangup (terminal closed) stops the job as SIGTERM does, so the workers save a checkpoint.
    const int fwd = sig == SIGHUP ? SIGTERM : sig;
    say("received " + signal_name(sig) + "; sending " + signal_name(fwd) + " to " + std::to_string(running_count()) +
        " worker(s), SIGKILL after " + format_seconds(a_.grace_s) + " s");
    stop_all(fwd, -1);
  }

  int watch() {
    while (running_count() > 0) {
      std::vector<pollfd> fds;
      fds.push_back({g_sig_pipe[0], POLLIN, 0});
      for (Tee& t : tees_)
        if (t.fd >= 0) fds.push_back({t.fd, POLLIN, 0});
      int timeout_ms = -1;
      if (kill_at_ && !killed_) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(kill_deadline_ - Clock::now());
        timeout_ms = (int)std::max<long long>(0, left.count() + 1);
      }
      const int pr = ::poll(fds.data(), fds.size(), timeout_ms);
      if (pr < 0 && errno != EINTR) {
        say(std::string("poll: ") + std::strerror(errno));
        break;
      }
      unsigned char sigs[64];
      ssize_t got;
      while ((got = ::read(g_sig_pipe[0], sigs, sizeof sigs)) > 0)
        for (ssize_t k = 0; k < got; ++k)
          if (sigs[k] == SIGINT || sigs[k] == SIGTERM || sigs[k] == SIGHUP) on_launcher_signal(sigs[k]);
      for (Tee& t : tees_)
        if (t.fd >= 0) pump(t, log0_fd_);
      reap();
      if (kill_at_ && !killed_ && Clock::now() >= kill_deadline_) kill_remaining();
    }
    reap();
    drain_tees();
    close_logs();
    // A worker that failed first gives the code even if the launcher is interrupted while stopping the rest.
    if (result_ >= 0) return result_;
    return interrupted_ ? 128 + interrupted_ : 0;
  }

  void close_logs() {
    for (Worker& w : workers_)
      if (w.log_fd >= 0) ::close(w.log_fd), w.log_fd = -1;
  }

  // Rank 0 has exited: copy what is left in its pipes. Bounded, as a process it started in the background
  // may hold the pipes open.
  void drain_tees() {
    const auto until = Clock::now() + std::chrono::milliseconds(500);
    while (true) {
      std::vector<pollfd> fds;
      for (Tee& t : tees_)
        if (t.fd >= 0) fds.push_back({t.fd, POLLIN, 0});
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()).count();
      if (fds.empty() || left <= 0) break;
      if (::poll(fds.data(), fds.size(), (int)left) <= 0) continue;
      for (Tee& t : tees_)
        if (t.fd >= 0) pump(t, log0_fd_);
    }
    for (Tee& t : tees_)
      if (t.fd >= 0) ::close(t.fd), t.fd = -1;
    if (log0_fd_ >= 0) ::close(log0_fd_), log0_fd_ = -1;
  }

  Args a_;
  std::string path_;
  std::string rendezvous_dir_;
  std::vector<Worker> workers_;
  Tee tees_[2];
  int log0_fd_ = -1;
  int result_ = -1;       // exit code of the first failed worker
  int interrupted_ = 0;   // the signal the launcher received
  bool kill_at_ = false;  // the SIGKILL clock runs
  bool killed_ = false;
  int stop_signal_ = SIGTERM;  // the signal that started the SIGKILL clock
  Clock::time_point kill_deadline_;
};

}  // namespace

int main(int argc, char** argv) {
  Args a;
  int n = 0;
  try {
    bool help = false;
    a = parse_args(argc, argv, &help);
    if (help) {
      std::printf("%s", kUsage);
      return 0;
    }
    if (!a.gpus.empty()) {
      n = (int)a.gpus.size();
    } else if (a.nproc > 0) {
      n = a.nproc;
    } else if (const char* cvd = std::getenv("CUDA_VISIBLE_DEVICES")) {
      n = count_entries(cvd);
      if (n == 0)
        engine::fail("no GPU visible (CUDA_VISIBLE_DEVICES is empty): pass --gpus LIST or --nproc_per_node N");
    } else {
      n = quiet_cuda_device_count();
      if (n == 0) engine::fail("no GPU found: pass --gpus LIST or --nproc_per_node N (CPU workers)");
    }
  } catch (const engine::Error& e) {
    say(e.what());
    return 2;
  }
  int err = 0;
  const std::string path = resolve_program(a.program[0], &err);
  if (path.empty()) {
    say("cannot execute '" + a.program[0] + "': " + std::strerror(err));
    return 127;
  }
  try {
    return Launcher(a, path).run(n);
  } catch (const std::exception& e) {
    say(e.what());
    return 1;
  }
}
