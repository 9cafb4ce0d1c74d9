// bench_train: the training-step benchmark of PP-LiteSeg (images/s of forward + 3 losses + backward
// + fused SGD), with the per-op time breakdown (engine/profiler.h) so the next bottleneck is visible.
// The batch is random data already on the device: this measures the engine, not JPEG decoding
// (engine-train's log reports reader_cost separately).
//   bench_train [--model B|T] [--size 512] [--batch 4] [--steps 5] [--warmup 2] [--classes 19]
//               [--device cpu|gpu] [--no-profile] [--json FILE]
// Prints one line per timed step, the median images/s, and the per-op table of a separate profiled
// step (profiling synchronises a GPU after every op, so it is never part of the timed steps).
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "cli/bench_args.h"
#include "engine/device.h"
#include "engine/error.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/loss.h"
#include "engine/ops/optim.h"
#include "engine/profiler.h"
#include "kernels/cpu/cpu_isa.h"
#include "models/module.h"

#if defined(ENGINE_WITH_CUDA)
#include "engine/cuda_context.h"
#endif

using namespace engine;

namespace {

void sync(Device d) {
#if defined(ENGINE_WITH_CUDA)
  if (d.is_cuda()) CUDA_CHECK(cudaStreamSynchronize(compute_stream()));
#else
  (void)d;
#endif
}

struct Step {
  std::shared_ptr<nn::SegModel> model;
  std::vector<Tensor> params, velocities;
  Tensor images, labels;
  Device device;

  void run() {
    const std::vector<Tensor> logits = model->forward(images);
    Tensor loss;
    for (const Tensor& l : logits) {
      Tensor li = cross_entropy(l, labels);
      loss = loss.defined() ? add(loss, li) : li;
    }
    loss.backward();
    std::vector<Tensor> grads;
    for (const Tensor& p : params) grads.push_back(p.grad());
    sgd_momentum_update(params, grads, velocities, 0.01f, 0.9f, 4e-5f);
    for (Tensor& p : params) p.zero_grad();
    sync(device);
  }
};

}  // namespace

int main(int argc, char** argv) {
  std::string variant = "B", device_name, json_path;
  int size = 512, batch = 4, steps = 5, warmup = 2, classes = 19;
  bool profile = true;
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      auto value = [&] { return bench_args::value(argc, argv, &i); };
      auto int_value = [&] { return bench_args::positive_int(argc, argv, &i); };
      if (a == "--model") variant = value();
      else if (a == "--size") size = int_value();
      else if (a == "--batch") batch = int_value();
      else if (a == "--steps") steps = int_value();
      else if (a == "--warmup") warmup = int_value();
      else if (a == "--classes") classes = int_value();
      else if (a == "--device") device_name = value();
      else if (a == "--json") json_path = value();
      else if (a == "--no-profile") profile = false;
      else if (a == "--help" || a == "-h") {
        std::printf("usage: bench_train [--model B|T] [--size 512] [--batch 4] [--steps 5] [--warmup 2] [--classes 19]\n"
                    "                   [--device cpu|gpu] [--no-profile] [--json FILE]\n");
        return 0;
      } else {
        fail("unknown flag ", a, " (see --help)");
      }
    }
    if (variant != "B" && variant != "T") fail("--model: expected B (STDC2) or T (STDC1), got '", variant, "'");
    const Device dev = device_name.empty() ? default_device() : parse_device(device_name);

    nn::SegModelSpec spec;
    spec.num_classes = classes;
    spec.seed = 1;
    if (variant == "T") {
      spec.backbone = "STDC1";
      spec.arm_out_chs = {32, 64, 128};
      spec.seg_head_inter_chs = {32, 64, 64};
    }
    Step st;
    st.device = dev;
    st.model = nn::build_seg_model(spec);
    st.model->to(dev);
    st.model->train();
    for (const auto& [name, p] : st.model->named_parameters()) {
      st.params.push_back(p);
      st.velocities.push_back(Tensor::zeros(p.shape(), DType::F32, dev));
    }
    st.images = Tensor::uniform({batch, size, size, 3}, 11, -1.f, 1.f, dev);
    std::vector<int64_t> lab((size_t)batch * size * size);
    for (size_t i = 0; i < lab.size(); ++i) lab[i] = (int64_t)((i / 97 + i % 13) % (size_t)classes);
    st.labels = Tensor::from_vector_i64(lab, {batch, size, size}, dev);

    std::printf("bench_train: PP-LiteSeg-%s (%s), %d classes, batch %d at %dx%d, fp32, device %s\n", variant.c_str(),
                spec.backbone.c_str(), classes, batch, size, size, dev.str().c_str());
    std::printf("cpu: %s, %d OpenMP threads\n", kernels::cpu_description().c_str(), omp_get_max_threads());
    for (int i = 0; i < warmup; ++i) st.run();
    std::vector<double> ips;
    for (int i = 0; i < steps; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      st.run();
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      ips.push_back(batch / s);
      std::printf("step %d: %.3f s, %.2f images/s\n", i + 1, s, batch / s);
    }
    std::vector<double> sorted = ips;
    std::sort(sorted.begin(), sorted.end());
    const double median = sorted[sorted.size() / 2];
    std::printf("median: %.2f images/s (%.3f s per step)\n", median, batch / median);
    if (profile) {
      profiler::reset();
      profiler::set_enabled(true);
      const auto t0 = std::chrono::steady_clock::now();
      st.run();
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      profiler::set_enabled(false);
      std::printf("\nper-op time of one profiled step (%.3f s):\n%s", s, profiler::report(s).c_str());
    }
    if (!json_path.empty()) {
      std::ofstream out(json_path);
      out << "{\"model\": \"PP-LiteSeg-" << variant << "\", \"size\": " << size << ", \"batch\": " << batch
          << ", \"device\": \"" << dev.str() << "\", \"cpu\": \"" << kernels::cpu_model_name()
          << "\", \"cpu_kernels\": \"" << kernels::cpu_isa_name(kernels::cpu_isa())
          << "\", \"median_images_per_s\": " << median << "}\n";
    }
    return 0;
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_train: %s\n", e.what());
    return 2;
  }
}
