// Run-time choice of the CPU kernels' instruction set (kernels/cpu/cpu_isa.h) and the start-up check
// of the build's baseline. This file is compiled for plain x86-64 (CMakeLists.txt), so the check
// itself runs on any 64-bit x86 CPU; the check uses only C library calls, never inline C++ library
// code that the linker might take from a translation unit compiled for the baseline.
#include "kernels/cpu/cpu_isa.h"

#if defined(__x86_64__)
#include <cpuid.h>
#endif

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "base/error.h"

#ifndef ENGINE_CPU_BASELINE
#define ENGINE_CPU_BASELINE "native"
#endif

namespace engine::kernels {
namespace {

// The model name from /proc/cpuinfo into buf (C calls only: used by the start-up check).
void read_model_name(char* buf, size_t size) {
  std::snprintf(buf, size, "unknown CPU");
  const int fd = open("/proc/cpuinfo", O_RDONLY);
  if (fd < 0) return;
  char text[8192];
  const ssize_t n = read(fd, text, sizeof text - 1);
  close(fd);
  if (n <= 0) return;
  text[n] = '\0';
  const char* p = std::strstr(text, "model name");
  if (!p || !(p = std::strchr(p, ':'))) return;
  p += 1 + std::strspn(p + 1, " \t");
  const size_t len = std::strcspn(p, "\n");
  std::snprintf(buf, size, "%.*s", (int)len, p);
}

#if defined(__x86_64__) && defined(ENGINE_CPU_BASELINE_CHECK)
// Runs before every other constructor of the program (priority 101): a CPU below the baseline
// would otherwise die with SIGILL in the first vectorised loop, with no word of why.
__attribute__((constructor(101))) void check_cpu_baseline() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports(ENGINE_CPU_BASELINE)) return;
  char model[256];
  read_model_name(model, sizeof model);
  const bool v3 = std::strcmp(ENGINE_CPU_BASELINE, "x86-64-v3") == 0;
  std::fprintf(stderr,
               "error: this build of the engine needs an %s CPU%s, which this CPU (%s) is not; build on this "
               "machine with -DENGINE_NATIVE=ON, or with a lower -DENGINE_CPU_BASELINE\n",
               ENGINE_CPU_BASELINE, v3 ? " (AVX2, FMA, BMI2, F16C, MOVBE)" : "", model);
  std::_Exit(1);
}
#endif

bool cpu_has_avx512() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
#else
  return false;
#endif
}

std::atomic<int> g_isa{-1};  // -1: not chosen yet

// The ISA the kernels start with: the best the CPU supports, unless ENGINE_CPU_ISA says otherwise.
// A bad ENGINE_CPU_ISA is reported (into err) as one line.
CpuIsa choose_isa(char* err, size_t err_size) {
  const bool multi = ENGINE_CPU_MULTI_ISA != 0;
  const CpuIsa best = multi && cpu_has_avx512() ? CpuIsa::Avx512 : CpuIsa::Base;
  err[0] = '\0';
  const char* env = std::getenv("ENGINE_CPU_ISA");
  if (!env || !*env) return best;
  if (!std::strcmp(env, "avx2") || !std::strcmp(env, "base")) return CpuIsa::Base;
  if (!std::strcmp(env, "avx512")) {
    if (best == CpuIsa::Avx512) return best;
    char model[256];
    read_model_name(model, sizeof model);
    if (multi)
      std::snprintf(err, err_size, "ENGINE_CPU_ISA=avx512, but this CPU (%s) has no AVX-512", model);
    else
      std::snprintf(err, err_size,
                    "ENGINE_CPU_ISA=avx512, but this build compiles its kernels once (ENGINE_NATIVE=ON)");
    return best;
  }
  std::snprintf(err, err_size, "ENGINE_CPU_ISA must be avx2, base or avx512, got '%.64s'", env);
  return best;
}

// A bad ENGINE_CPU_ISA stops the program at start-up, before it does any work, whether or not it
// would have run a CPU kernel (C library calls only, as the baseline check).
__attribute__((constructor(102))) void check_cpu_isa_env() {
  char err[512];
  const CpuIsa isa = choose_isa(err, sizeof err);
  if (err[0]) {
    std::fprintf(stderr, "error: %s\n", err);
    std::_Exit(2);
  }
  g_isa.store((int)isa, std::memory_order_relaxed);
}

}  // namespace

CpuIsa cpu_isa() {
  int v = g_isa.load(std::memory_order_relaxed);
  if (v < 0) {  // a kernel called from another constructor, before check_cpu_isa_env
    char err[512];
    v = (int)choose_isa(err, sizeof err);
    ENGINE_CHECK(!err[0], err);
    g_isa.store(v, std::memory_order_relaxed);
  }
  return (CpuIsa)v;
}

bool cpu_isa_supported(CpuIsa isa) { return isa == CpuIsa::Base || (ENGINE_CPU_MULTI_ISA && cpu_has_avx512()); }

void set_cpu_isa(CpuIsa isa) {
  ENGINE_CHECK(cpu_isa_supported(isa), "set_cpu_isa: ", cpu_isa_name(isa), " kernels cannot run on this CPU (",
               cpu_model_name(), ") with this build");
  g_isa.store((int)isa, std::memory_order_relaxed);
}

const char* cpu_isa_name(CpuIsa isa) {
  if (isa == CpuIsa::Avx512) return "avx512";
  return std::strcmp(ENGINE_CPU_BASELINE, "x86-64-v3") == 0 ? "avx2" : ENGINE_CPU_BASELINE;
}

const char* cpu_build_baseline() { return ENGINE_CPU_BASELINE; }

std::string cpu_model_name() {
  char buf[256];
  read_model_name(buf, sizeof buf);
  return buf;
}

std::string cpu_description() {
  return cpu_model_name() + ", " + std::to_string(std::thread::hardware_concurrency()) +
         " hardware threads; CPU kernels: " + cpu_isa_name(cpu_isa()) + " (build baseline " + ENGINE_CPU_BASELINE + ")";
}

bool cpu_has_bf16() {
#if defined(__x86_64__)
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid_max(0, nullptr) < 7) return false;
  __cpuid_count(7, 0, a, b, c, d);
  const bool amx_bf16 = (d >> 22) & 1;
  const unsigned max_sub = a;
  bool avx512_bf16 = false;
  if (max_sub >= 1) {
    __cpuid_count(7, 1, a, b, c, d);
    avx512_bf16 = ((a >> 5) & 1) && cpu_has_avx512();
  }
  return avx512_bf16 || amx_bf16;
#else
  return false;
#endif
}

}  // namespace engine::kernels
