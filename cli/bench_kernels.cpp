// bench_kernels: validate, then time every registered kernel at the shapes the models use, and
// report time, GB/s, GFLOP/s and the fraction of this machine's measured peak.
//   bench_kernels [--quick] [--device cpu|gpu|all] [--filter SUBSTR] [--repeats N] [--json FILE]
// --filter matches "family/kernel"; when it names a family, only that family is set up.
// Peaks are measured at start: CPU memcpy bandwidth (bytes read + written, all threads) and the
// OpenBLAS sgemm rate (2048^3); on a GPU the device-to-device copy bandwidth and the matmul op's
// (cuBLAS) rate at 4096^3. CPU times: warm-up, then repeats, median. GPU times: CUDA events on the
// compute stream, L2 flushed before each repeat. In the emulated build the CUDA rows only
// validate (emulated timings mean nothing) and are marked "emu".
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "base/error.h"
#include "bench/bench.h"
#include "engine/allocator.h"
#include "engine/ops/matmul.h"
#include "engine/tensor.h"
#include "kernels/cpu/cpu_isa.h"
#if defined(ENGINE_WITH_CUDA)
#include "base/cuda_context.h"
#endif

namespace engine::bench {
namespace {

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

struct Peaks {
  double cpu_bw = 0, cpu_flops = 0, gpu_bw = 0, gpu_flops = 0;
};

double measure_cpu_memcpy() {
  const size_t n = 256u << 20;  // 256 MiB, far beyond the caches
  std::vector<char> a(n, 1), b(n, 0);
  std::vector<double> t;
  for (int r = 0; r < 5; ++r) {
    const double t0 = now_s();
#pragma omp parallel
    {
      const int nt = omp_get_num_threads(), id = omp_get_thread_num();
      const size_t chunk = n / nt;
      std::memcpy(b.data() + chunk * id, a.data() + chunk * id, id == nt - 1 ? n - chunk * id : chunk);
    }
    t.push_back(now_s() - t0);
  }
  return 2.0 * n / median(t);  // read + write
}

// OpenBLAS with all cores. The engine's gemm_cpu runs OpenBLAS single-threaded inside its own
// OpenMP split (one thread pool), so the thread count is restored to 1 afterwards.
double measure_cpu_sgemm() {
  openblas_set_num_threads(omp_get_max_threads());
  const int n = 2048;
  std::vector<float> a((size_t)n * n, 0.5f), b((size_t)n * n, 0.25f), c((size_t)n * n);
  std::vector<double> t;
  for (int r = 0; r < 4; ++r) {
    const double t0 = now_s();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.f, a.data(), n, b.data(), n, 0.f, c.data(), n);
    t.push_back(now_s() - t0);
  }
  t.erase(t.begin());  // first call includes thread start-up
  openblas_set_num_threads(1);
  return 2.0 * n * n * (double)n / median(t);
}

struct Row {
  std::string family, kernel, shape, device, status;
  double ms = 0, gbs = 0, gflops = 0, frac = 0;
};

class BenchRunner : public Runner {
 public:
  BenchRunner(std::vector<Device> devs, bool quick, int repeats, std::string filter, Peaks peaks)
      : devs_(std::move(devs)), quick_(quick), repeats_(repeats), filter_(std::move(filter)), peaks_(peaks) {}

  const std::vector<Device>& devices() const override { return devs_; }
  bool quick() const override { return quick_; }
  std::string family;
  std::vector<Row> rows;
  int failures = 0;

  void run(const std::string& kernel, const std::string& shape, Device device, Work work,
           const std::function<std::string()>& validate, const std::function<void()>& body) override {
    if (!filter_.empty() && (family + "/" + kernel).find(filter_) == std::string::npos) return;
    Row row{family, kernel, shape, device.str(), "ok"};
    const bool emulated = device.is_cuda() && cuda_is_emulated();
    if (emulated) row.device += "(emu)";
    std::string err;
    try {
      err = validate();
    } catch (const Error& e) {
      err = e.what();
    }
    if (!err.empty()) {
      row.status = "FAIL: " + err;
      ++failures;
    } else if (!emulated) {
      row.ms = 1e3 * time_body(device, body);
      const double s = row.ms * 1e-3;
      row.gbs = work.bytes / s / 1e9;
      row.gflops = work.flops / s / 1e9;
      const double bw_peak = device.is_cpu() ? peaks_.cpu_bw : peaks_.gpu_bw;
      const double fl_peak = device.is_cpu() ? peaks_.cpu_flops : peaks_.gpu_flops;
      // The fraction of the roof that binds: compute for GEMM/conv, bandwidth for the rest.
      if (fl_peak > 0) row.frac = work.flops / s / fl_peak;
      if (bw_peak > 0) row.frac = std::max(row.frac, work.bytes / s / bw_peak);
    } else {
      row.status = "ok (validated only)";
    }
    print_row(row);
    rows.push_back(row);
  }

  static void print_header() {
    std::printf("%-12s %-38s %-10s %-40s %10s %9s %9s %7s  %s\n", "family", "kernel", "device", "shape", "time_ms",
                "GB/s", "GFLOP/s", "%peak", "status");
  }

 private:
  void print_row(const Row& r) {
    std::printf("%-12s %-38s %-10s %-40s %10.4f %9.2f %9.2f %6.1f%%  %s\n", r.family.c_str(), r.kernel.c_str(),
                r.device.c_str(), r.shape.c_str(), r.ms, r.gbs, r.gflops, 100 * r.frac, r.status.c_str());
    std::fflush(stdout);
  }

  double time_body(Device device, const std::function<void()>& body) {
    const int warmup = 2;
    if (device.is_cpu()) {
      for (int i = 0; i < warmup; ++i) body();
      std::vector<double> t;
      const double budget = quick_ ? 0.2 : 2.0;
      const double start = now_s();
      for (int r = 0; r < repeats_ && (r < 3 || now_s() - start < budget); ++r) {
        const double t0 = now_s();
        body();
        t.push_back(now_s() - t0);
      }
      return median(t);
    }
#if defined(ENGINE_WITH_CUDA)
    cudaStream_t s = compute_stream();
    for (int i = 0; i < warmup; ++i) body();
    int l2 = 0;
    cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, device.index);
    Tensor flush = Tensor::empty({std::max(1, 2 * l2)}, DType::U8, device);
    cudaEvent_t a, b;
    CUDA_CHECK(cudaEventCreate(&a));
    CUDA_CHECK(cudaEventCreate(&b));
    std::vector<double> t;
    for (int r = 0; r < repeats_; ++r) {
      CUDA_CHECK(cudaMemsetAsync(flush.raw_data(), r & 0xff, flush.nbytes(), s));
      CUDA_CHECK(cudaEventRecord(a, s));
      body();
      CUDA_CHECK(cudaEventRecord(b, s));
      CUDA_CHECK(cudaEventSynchronize(b));
      float ms = 0;
      CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
      t.push_back(ms * 1e-3);
    }
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    return median(t);
#else
    return 0;
#endif
  }

  std::vector<Device> devs_;
  bool quick_;
  int repeats_;
  std::string filter_;
  Peaks peaks_;
};

std::string json_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    o += c;
  }
  return o;
}

int run_main(int argc, char** argv) {
  bool quick = false;
  std::string device_arg = "all", filter, json_path;
  int repeats = 20;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      ENGINE_CHECK(i + 1 < argc, "bench_kernels: flag ", a, " needs a value");
      return argv[++i];
    };
    if (a == "--quick")
      quick = true;
    else if (a == "--device")
      device_arg = value();
    else if (a == "--filter")
      filter = value();
    else if (a == "--json")
      json_path = value();
    else if (a == "--repeats")
      repeats = std::max(1, std::atoi(value().c_str()));
    else if (a == "-h" || a == "--help") {
      std::printf(
          "usage: bench_kernels [--quick] [--device cpu|gpu|all] [--filter SUBSTR] [--repeats N] [--json FILE]\n");
      return 0;
    } else {
      fail("bench_kernels: unknown flag '", a, "' (see --help)");
    }
  }
  ENGINE_CHECK(device_arg == "cpu" || device_arg == "gpu" || device_arg == "all",
               "bench_kernels: --device must be cpu, gpu or all, got '", device_arg, "'");
  // Under mpirun (the all-reduce family): rank 0 alone prints and writes --json; each rank uses the
  // GPU of its node-local rank.
  const char* mpi_rank = std::getenv("OMPI_COMM_WORLD_RANK");
  const char* mpi_local_rank = std::getenv("OMPI_COMM_WORLD_LOCAL_RANK");
  if (mpi_rank && std::string(mpi_rank) != "0") {
    ENGINE_CHECK(std::freopen("/dev/null", "w", stdout) != nullptr, "bench_kernels: cannot silence rank ", mpi_rank);
    json_path.clear();
  }
  const int gpu = mpi_local_rank && !cuda_is_emulated() ? std::atoi(mpi_local_rank) : 0;
  std::vector<Device> devs;
  if (device_arg != "gpu") devs.push_back(Device::cpu());
  if (device_arg != "cpu" && cuda_available() && (!cuda_is_emulated() || quick)) {
    ENGINE_CHECK(gpu < cuda_device_count(), "bench_kernels: local rank ", gpu, " has no GPU of its own (",
                 cuda_device_count(), " visible)");
    select_cuda_device(gpu);
    devs.push_back(Device::cuda(gpu));
  }
  ENGINE_CHECK(!devs.empty(), "bench_kernels: --device gpu but no CUDA device is available");

  Peaks peaks;
  peaks.cpu_bw = measure_cpu_memcpy();
  peaks.cpu_flops = measure_cpu_sgemm();
  std::printf("cpu: %s\n", kernels::cpu_description().c_str());
  std::printf("machine: %d OpenMP threads; CPU memcpy %.1f GB/s (read+write), OpenBLAS sgemm %.1f GFLOP/s\n",
              omp_get_max_threads(), peaks.cpu_bw / 1e9, peaks.cpu_flops / 1e9);
#if defined(ENGINE_WITH_CUDA)
  if (cuda_available() && !cuda_is_emulated() && device_arg != "cpu") {
    const int64_t n = 1 << 28;
    Tensor a = Tensor::empty({n}, DType::U8, Device::cuda(0)), b = Tensor::empty({n}, DType::U8, Device::cuda(0));
    cudaEvent_t e0, e1;
    CUDA_CHECK(cudaEventCreate(&e0));
    CUDA_CHECK(cudaEventCreate(&e1));
    std::vector<double> t;
    for (int r = 0; r < 6; ++r) {
      CUDA_CHECK(cudaEventRecord(e0, compute_stream()));
      CUDA_CHECK(cudaMemcpyAsync(b.raw_data(), a.raw_data(), (size_t)n, cudaMemcpyDeviceToDevice, compute_stream()));
      CUDA_CHECK(cudaEventRecord(e1, compute_stream()));
      CUDA_CHECK(cudaEventSynchronize(e1));
      float ms = 0;
      CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
      t.push_back(ms * 1e-3);
    }
    peaks.gpu_bw = 2.0 * (double)n / median(t);
    const int m = 4096;
    Tensor x = Tensor::full({m, m}, 0.5f, DType::F32, Device::cuda(0)),
           y = Tensor::full({m, m}, 0.25f, DType::F32, Device::cuda(0));
    matmul(x, y);
    std::vector<double> tf;
    for (int r = 0; r < 5; ++r) {
      CUDA_CHECK(cudaEventRecord(e0, compute_stream()));
      matmul(x, y);
      CUDA_CHECK(cudaEventRecord(e1, compute_stream()));
      CUDA_CHECK(cudaEventSynchronize(e1));
      float ms = 0;
      CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
      tf.push_back(ms * 1e-3);
    }
    peaks.gpu_flops = 2.0 * m * m * (double)m / median(tf);
    cudaDeviceProp prop{};
    cudaGetDeviceProperties(&prop, 0);
    std::printf("gpu: %s; device copy %.1f GB/s (read+write), matmul (cuBLAS) %.1f GFLOP/s\n", prop.name,
                peaks.gpu_bw / 1e9, peaks.gpu_flops / 1e9);
  }
#endif

  BenchRunner runner(devs, quick, repeats, filter, peaks);
  BenchRunner::print_header();
  auto entries = registry();
  std::sort(entries.begin(), entries.end(),
            [](const Entry& a, const Entry& b) { return std::strcmp(a.family, b.family) < 0; });
  // A filter naming a family ("conv", "conv/fwd") skips the other families' set-up entirely.
  const std::string family_filter = filter.substr(0, filter.find('/'));
  const bool names_family = std::any_of(entries.begin(), entries.end(), [&](const Entry& e) {
    return !family_filter.empty() && std::string(e.family).find(family_filter) != std::string::npos;
  });
  for (const Entry& e : entries) {
    if (names_family && std::string(e.family).find(family_filter) == std::string::npos) continue;
    runner.family = e.family;
    e.fn(runner);
  }
  if (!json_path.empty()) {
    std::ofstream f(json_path);
    ENGINE_CHECK(f.good(), "bench_kernels: cannot write --json file '", json_path, "'");
    f << "{\n  \"cpu\": \"" << json_escape(kernels::cpu_model_name()) << "\", \"cpu_kernels\": \""
      << kernels::cpu_isa_name(kernels::cpu_isa()) << "\", \"build_baseline\": \"" << kernels::cpu_build_baseline()
      << "\",\n  \"peaks\": {\"cpu_memcpy_Bps\": " << peaks.cpu_bw << ", \"cpu_sgemm_flops\": " << peaks.cpu_flops
      << ", \"gpu_copy_Bps\": " << peaks.gpu_bw << ", \"gpu_sgemm_flops\": " << peaks.gpu_flops
      << ", \"threads\": " << omp_get_max_threads() << "},\n  \"rows\": [\n";
    for (size_t i = 0; i < runner.rows.size(); ++i) {
      const Row& r = runner.rows[i];
      f << "    {\"family\": \"" << r.family << "\", \"kernel\": \"" << r.kernel << "\", \"device\": \"" << r.device
        << "\", \"shape\": \"" << json_escape(r.shape) << "\", \"time_ms\": " << r.ms << ", \"GBps\": " << r.gbs
        << ", \"GFLOPps\": " << r.gflops << ", \"fraction_of_peak\": " << r.frac << ", \"status\": \""
        << json_escape(r.status) << "\"}" << (i + 1 < runner.rows.size() ? "," : "") << "\n";
    }
    f << "  ]\n}\n";
  }
  std::printf("%zu rows, %d failed validation\n", runner.rows.size(), runner.failures);
  return runner.failures ? 1 : 0;
}

}  // namespace
}  // namespace engine::bench

int main(int argc, char** argv) {
  try {
    return engine::bench::run_main(argc, argv);
  } catch (const engine::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }
}
