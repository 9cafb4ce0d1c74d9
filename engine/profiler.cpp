#include "engine/profiler.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <mutex>
#include <utility>

#include "base/error.h"
#include "engine/ops/op_list.h"

#if defined(ENGINE_WITH_CUDA)
#include "base/cuda_context.h"
#endif

namespace engine::profiler {

std::atomic<bool> g_enabled{false};

namespace {
std::mutex g_mutex;
std::map<std::string, Entry>& table() {
  static std::map<std::string, Entry> t;
  return t;
}
thread_local int t_depth = 0;
IdealModel& ideal_model() {
  static IdealModel m;
  return m;
}

void sync_if_cuda(Device d) {
#if defined(ENGINE_WITH_CUDA)
  if (d.is_cuda()) CUDA_CHECK(cudaStreamSynchronize(compute_stream()));
#else
  (void)d;
#endif
}
}  // namespace

void set_enabled(bool on) { g_enabled.store(on, std::memory_order_relaxed); }

void set_ideal_model(IdealModel model) {
  std::lock_guard<std::mutex> lock(g_mutex);
  ideal_model() = std::move(model);
}

void reset() {
  std::lock_guard<std::mutex> lock(g_mutex);
  table().clear();
}

std::vector<Entry> snapshot() {
  std::vector<Entry> out;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    for (const auto& [name, e] : table()) out.push_back(e);
  }
  std::sort(out.begin(), out.end(), [](const Entry& a, const Entry& b) { return a.seconds > b.seconds; });
  return out;
}

std::string report(double wall_seconds) {
  const auto entries = snapshot();
  double in_ops = 0;
  for (const auto& e : entries) in_ops += e.seconds;
  std::string s;
  char line[256];
  std::snprintf(line, sizeof line, "%-34s %8s %11s %7s %9s %9s\n", "op", "calls", "total ms", "% wall", "GB/s",
                "GFLOP/s");
  s += line;
  // The achieved rates of the Work each dispatch states (engine/profiler.h).
  auto rate = [](double amount, double seconds) { return seconds > 0 ? amount / seconds / 1e9 : 0.0; };
  for (const auto& e : entries) {
    std::snprintf(line, sizeof line, "%-34s %8lld %11.2f %6.1f%% %9.1f %9.1f\n", e.name.c_str(), (long long)e.calls,
                  e.seconds * 1e3, wall_seconds > 0 ? 100.0 * e.seconds / wall_seconds : 0.0, rate(e.bytes, e.seconds),
                  rate(e.flops, e.seconds));
    s += line;
  }
  std::snprintf(line, sizeof line, "%-34s %8s %11.2f %6.1f%%\n", "(outside ops: autograd, allocation, glue)", "",
                (wall_seconds - in_ops) * 1e3, wall_seconds > 0 ? 100.0 * (wall_seconds - in_ops) / wall_seconds : 0.0);
  s += line;
  return s;
}

bool Scope::enter(const char* name) {
  // The one list of ops: a kernel is reached only under a listed name (tests/test_op_list.cpp
  // checks each entry's kernels, test and bench row).
  ENGINE_CHECK(is_listed_op(name), "op '", name, "' is dispatched but missing from engine/ops/op_list.inc ",
               "(add it with its CPU and CUDA kernels, its test and its bench_kernels row)");
  if (!enabled()) return false;
  counted_ = true;
  if (t_depth++ > 0) return false;  // nested in a timed op: counted there
  name_ = name;
  return true;
}

void Scope::start(const Work& work) {
  work_ = work;
  IdealModel model;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    model = ideal_model();
  }
  // Before the clock starts: a model may measure on the device the first time it sees a problem.
  if (model) ideal_ = model(name_, device_, work_);
  sync_if_cuda(device_);
  start_ = std::chrono::steady_clock::now();
}

Scope::~Scope() {
  if (counted_) --t_depth;
  if (!name_) return;
  sync_if_cuda(device_);
  const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  std::lock_guard<std::mutex> lock(g_mutex);
  Entry& e = table()[name_];
  if (e.name.empty()) e.name = name_;
  e.calls += 1;
  e.seconds += sec;
  e.flops += work_.flops;
  e.bytes += work_.bytes;
  e.ideal_seconds += ideal_;
}

}  // namespace engine::profiler
