#include "engine/roofline.h"

#include <omp.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>

#include "base/error.h"
#include "engine/allocator.h"
#include "engine/ops/op_list.h"
#include "engine/tensor.h"
#include "kernels/cpu/conv_cpu.h"
#if defined(ENGINE_CUDA_REAL)
#include "base/cuda_context.h"
#include "kernels/cudnn/conv_cudnn.h"
#endif

namespace engine::roofline {
namespace {

using kernels::ConvInput;
using kernels::ConvParams;
using kernels::ConvPass;

// The reference convolution of the peak rate (see the file comment).
ConvParams reference_conv(int64_t batch, Precision p) {
  ConvParams c;
  c.n = batch;
  c.h = c.w = c.ho = c.wo = 64;
  c.cin = c.cout = 1024;
  c.kh = c.kw = 1;
  c.input = p == Precision::BF16 ? ConvInput::BF16 : p == Precision::FP16 ? ConvInput::F16 : ConvInput::F32;
  c.tf32 = p == Precision::TF32;
  return c;
}
double conv_flops(const ConvParams& c) {
  return 2.0 * (double)c.n * (double)c.ho * (double)c.wo * (double)c.cout * (double)(c.cin / c.groups) * (double)c.kh *
         (double)c.kw;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// The CPU kernel's forward time for the reference convolution, best of 3 after one untimed run
// (which creates and caches the oneDNN primitive).
double cpu_reference_conv_seconds(const ConvParams& c) {
  const bool low = c.input != ConvInput::F32;
  const size_t x_elems = (size_t)(c.n * c.h * c.w * c.cin);
  // Defined inputs, no denormals: 0.5 in each type.
  std::vector<float> x32(low ? 0 : x_elems, 0.5f);
  std::vector<uint16_t> x16(low ? x_elems : 0, c.input == ConvInput::BF16 ? uint16_t(0x3F00) : uint16_t(0x3800));
  std::vector<float> w((size_t)(c.cout * c.cin), 0.01f), y((size_t)(c.n * c.ho * c.wo * c.cout));
  std::vector<unsigned char> ws(kernels::conv2d_workspace_cpu(ConvPass::Fwd, c) + 64);
  void* wsp = ws.data() + (64 - reinterpret_cast<uintptr_t>(ws.data()) % 64) % 64;
  const void* x = low ? static_cast<const void*>(x16.data()) : static_cast<const void*>(x32.data());
  double best = 0;
  for (int i = 0; i < 4; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    kernels::conv2d_fwd_cpu(c, x, w.data(), nullptr, y.data(), wsp);
    const double s = seconds_since(t0);
    if (i > 0) best = i == 1 ? s : std::min(best, s);
  }
  return best;
}

// Bandwidth of host memory over two 256 MiB arrays split across the OpenMP threads (each thread
// first touches what it later streams), counting the bytes read plus written, the best of 5 timed
// passes after an untimed one for each of two patterns: a copy (memcpy, whose stores may bypass the
// cache) and an in-place update x = 0.5 x + y (whose written lines were just read, so no
// read-for-ownership traffic is hidden from the count). Ordinary stores to a fresh output cost a
// hidden extra read; the better of the two is what the memory system can deliver.
double cpu_bandwidth() {
  const int64_t n = (int64_t(256) << 20) / (int64_t)sizeof(float);
  std::unique_ptr<float[]> x(new float[(size_t)n]), y(new float[(size_t)n]);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) x[(size_t)i] = y[(size_t)i] = 1.f;
  auto best_of = [](const auto& pass) {
    double best = 0;
    for (int i = 0; i < 6; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      pass();
      const double s = seconds_since(t0);
      if (i > 0) best = i == 1 ? s : std::min(best, s);
    }
    return best;
  };
  float* xp = x.get();
  const float* yp = y.get();
  const double copy = best_of([&] {
#pragma omp parallel
    {
      const int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
      const int64_t begin = n * t / nt, end = n * (t + 1) / nt;
      std::memcpy(xp + begin, yp + begin, (size_t)(end - begin) * sizeof(float));
    }
  });
  const double update = best_of([&] {
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; ++i) xp[i] = 0.5f * xp[i] + yp[i];
  });
  const double bytes = (double)n * sizeof(float);
  return std::max(2.0 * bytes / copy, 3.0 * bytes / update);
}

#if defined(ENGINE_CUDA_REAL)
// Device buffers for cuDNN's timing, freed (and the cached blocks handed back) when it goes away.
struct DeviceScratch {
  explicit DeviceScratch(Device d) : dev(d) {}
  ~DeviceScratch() {
    keep.clear();
    empty_cache();
  }
  kernels::CudnnWorkspaceFn fn() {
    return [this](size_t bytes) -> void* {
      if (bytes == 0) return nullptr;
      keep.push_back(Tensor::empty({(int64_t)((bytes + 3) / 4)}, DType::F32, dev));
      return keep.back().raw_data();
    };
  }
  Device dev;
  std::vector<Tensor> keep;
};

double gpu_conv_seconds(ConvPass pass, const ConvParams& c, Device dev) {
  DeviceScratch scratch(dev);
  const float ms = kernels::conv2d_best_ms_cudnn(pass, c, scratch.fn(), compute_stream());
  ENGINE_CHECK(ms > 0, "roofline: cuDNN timed no algorithm for a ", c.kh, "x", c.kw, " convolution ", c.cin, " -> ",
               c.cout, " at ", c.n, "x", c.h, "x", c.w, " (out of memory?)");
  return ms * 1e-3;
}

// Device-to-device copy bandwidth: 1 GiB with cudaMemcpyAsync on the compute stream, best of 5.
double gpu_copy_bandwidth(Device dev) {
  const int64_t bytes = int64_t(1) << 30;
  Tensor a = Tensor::zeros({bytes / 4}, DType::F32, dev), b = Tensor::zeros({bytes / 4}, DType::F32, dev);
  cudaEvent_t e0, e1;
  CUDA_CHECK(cudaEventCreate(&e0));
  CUDA_CHECK(cudaEventCreate(&e1));
  float best = 0;
  for (int i = 0; i < 6; ++i) {
    CUDA_CHECK(cudaEventRecord(e0, compute_stream()));
    CUDA_CHECK(cudaMemcpyAsync(b.raw_data(), a.raw_data(), (size_t)bytes, cudaMemcpyDeviceToDevice, compute_stream()));
    CUDA_CHECK(cudaEventRecord(e1, compute_stream()));
    CUDA_CHECK(cudaEventSynchronize(e1));
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
    if (i > 0) best = i == 1 ? ms : std::min(best, ms);
  }
  CUDA_CHECK(cudaEventDestroy(e0));
  CUDA_CHECK(cudaEventDestroy(e1));
  return 2.0 * (double)bytes / (best * 1e-3);
}

// Measured once per (pass, problem).
std::mutex g_conv_mutex;
std::map<kernels::ConvKey, double>& conv_cache() {
  static std::map<kernels::ConvKey, double> c;
  return c;
}
#endif

bool real_gpu(Device d) { return d.is_cuda() && !cuda_is_emulated(); }

}  // namespace

Machine measure(Device device, Precision precision) {
  Machine m;
  m.device = device;
  m.precision = precision;
  char buf[256];
  if (real_gpu(device)) {
#if defined(ENGINE_CUDA_REAL)
    const ConvParams c = reference_conv(16, precision);
    m.peak_flops = conv_flops(c) / gpu_conv_seconds(ConvPass::Fwd, c, device);
    m.bandwidth = gpu_copy_bandwidth(device);
    m.cudnn_convs = true;
    std::snprintf(buf, sizeof buf, "the fastest cuDNN algorithm for a 1x1 convolution 1024 -> 1024 at 16x64x64 in %s",
                  precision_name(precision));
    m.peak_from = buf;
    m.bandwidth_from = "a device-to-device copy of 1 GiB (read + write)";
#endif
    return m;
  }
  const ConvParams c = reference_conv(1, precision);
  m.peak_flops = conv_flops(c) / cpu_reference_conv_seconds(c);
  m.bandwidth = cpu_bandwidth();
  std::snprintf(buf, sizeof buf, "the CPU kernel of a 1x1 convolution 1024 -> 1024 at 1x64x64 in %s%s",
                precision_name(precision),
                device.is_cuda() ? " (the emulated GPU runs its convolutions on the CPU)" : "");
  m.peak_from = buf;
  std::snprintf(buf, sizeof buf,
                "the better of a copy and an in-place update of 256 MiB arrays over %d OpenMP threads (read + write)",
                omp_get_max_threads());
  m.bandwidth_from = buf;
  return m;
}

double ideal_seconds(const Machine& m, const profiler::Work& w) {
  const double memory = m.bandwidth > 0 ? w.bytes / m.bandwidth : 0.0;
  const double compute = m.peak_flops > 0 ? w.flops / m.peak_flops : 0.0;
#if defined(ENGINE_CUDA_REAL)
  if (w.is_conv && m.cudnn_convs) {
    const ConvParams& p = w.conv;
    const kernels::ConvKey key = kernels::conv_key(w.conv_pass, p);
    std::lock_guard<std::mutex> lock(g_conv_mutex);
    auto it = conv_cache().find(key);
    if (it == conv_cache().end()) it = conv_cache().emplace(key, gpu_conv_seconds(w.conv_pass, p, m.device)).first;
    return it->second;
  }
#endif
  return std::max(memory, compute);
}

void install(const Machine& m) {
  profiler::set_ideal_model([m](const char*, Device, const profiler::Work& w) { return ideal_seconds(m, w); });
}

std::string op_family(std::string_view op) {
  for (const OpInfo& info : op_list()) {
    if (op != info.name) continue;
    const std::string_view row = info.bench_row;
    return std::string(row.substr(0, row.find('/')));
  }
  return std::string(op);
}

std::vector<FamilyRow> by_family(const std::vector<profiler::Entry>& entries) {
  std::map<std::string, FamilyRow> rows;
  for (const profiler::Entry& e : entries) {
    FamilyRow& r = rows[op_family(e.name)];
    r.calls += e.calls;
    r.seconds += e.seconds;
    r.ideal_seconds += e.ideal_seconds;
    r.flops += e.flops;
    r.bytes += e.bytes;
  }
  std::vector<FamilyRow> out;
  for (auto& [name, r] : rows) {
    r.family = name;
    out.push_back(r);
  }
  std::sort(out.begin(), out.end(), [](const FamilyRow& a, const FamilyRow& b) { return a.seconds > b.seconds; });
  return out;
}

std::string report(const Machine& m, const std::vector<profiler::Entry>& entries, double step_seconds) {
  std::string s;
  char line[512];
  std::snprintf(line, sizeof line,
                "roofline on %s at %s\n  peak      %10.3f TFLOP/s   %s\n  bandwidth %10.1f GB/s      %s\n",
                m.device.str().c_str(), precision_name(m.precision), m.peak_flops / 1e12, m.peak_from.c_str(),
                m.bandwidth / 1e9, m.bandwidth_from.c_str());
  s += line;
  if (m.cudnn_convs)
    s += "  convolutions: the fastest cuDNN algorithm of each problem in either layout, measured once\n";
  else
    s += "  convolutions: max(flops / peak, bytes / bandwidth)\n";
  std::snprintf(line, sizeof line, "%-24s %7s %12s %10s %9s %10s %9s\n", "family", "calls", "measured ms", "ideal ms",
                "x ideal", "GFLOP", "GB");
  s += line;
  FamilyRow all;
  auto row = [&](const char* name, const FamilyRow& r) {
    std::snprintf(line, sizeof line, "%-24s %7lld %12.2f %10.2f %8.2fx %10.2f %9.3f\n", name, (long long)r.calls,
                  r.seconds * 1e3, r.ideal_seconds * 1e3, r.ideal_seconds > 0 ? r.seconds / r.ideal_seconds : 0.0,
                  r.flops / 1e9, r.bytes / 1e9);
    s += line;
  };
  for (const FamilyRow& r : by_family(entries)) {
    row(r.family.c_str(), r);
    all.calls += r.calls;
    all.seconds += r.seconds;
    all.ideal_seconds += r.ideal_seconds;
    all.flops += r.flops;
    all.bytes += r.bytes;
  }
  row("all ops (profiled)", all);
  std::snprintf(line, sizeof line, "%-24s %7s %12.2f %10.2f %8.2fx\n", "step (not profiled)", "", step_seconds * 1e3,
                all.ideal_seconds * 1e3, all.ideal_seconds > 0 ? step_seconds / all.ideal_seconds : 0.0);
  s += line;
  return s;
}

}  // namespace engine::roofline
