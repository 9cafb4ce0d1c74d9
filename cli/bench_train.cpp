// bench_train: the training-step benchmark of PP-LiteSeg (images/s of forward + 3 losses + backward
// + fused SGD) and of YOLOv3 with a DarkNet53 or MobileNetV1 backbone (forward + yolov3_loss +
// backward + fused SGD; with --precision fp16 also the loss scaler's scaling, unscale and check, as
// engine-train runs them), with the per-op time breakdown (engine/profiler.h) so the next bottleneck is
// visible.
// The batch is random data already on the device: this measures the engine, not JPEG decoding
// (engine-train's log reports reader_cost separately).
//   bench_train [--model B|T|yolov3_darknet53|yolov3_mobilenetv1] [--size N] [--batch N] [--steps 5]
//               [--warmup 2] [--classes N] [--device cpu|gpu] [--precision fp32|tf32|bf16|fp16]
//               [--no-profile] [--roofline] [--cuda_graph]
//               [--json FILE] [--allreduce_dtype auto|fp32|bf16|fp16]
// Defaults: PP-LiteSeg 512x512, batch 4, 19 classes; YOLOv3 416x416, batch 8, 80 classes with 8
// ground-truth boxes per image (padded to 50 rows, as PaddleX's batches are).
// Prints one line per timed step, the median images/s, and the per-op table of a separate profiled
// step (profiling synchronises a GPU after every op, so it is never part of the timed steps).
// --roofline adds the step's roofline (engine/roofline.h): the device's peak arithmetic rate and
// memory bandwidth are measured at the precision, each op of the profiled step gets its ideal time
// (convolutions on a GPU: cuDNN's fastest algorithm for the problem), and measured against ideal is
// printed per op family and for the step (the median step above against the summed ideal).
// --cuda_graph replays the whole step (forward, backward, the fp16 unscale and the update) as one
// CUDA graph in the timed steps (engine/cuda_graph.h), captured after the warm-up steps, as
// engine-train does (train/step_graphs.h); with several GPU ranks the buckets' all-reduces are part of
// it, as under engine-train --cuda_graph on.
// Data parallel: `mpirun -np N bench_train ...` runs N ranks of --batch images each, gradients in
// 25 MB buckets all-reduced during backward (train/grad_buckets.h; MPI between CPU ranks, NCCL
// between GPU ranks in the real CUDA build; in the type of --allreduce_dtype, by default as
// engine-train's); images/s counts every rank's images, rank 0 prints.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "base/error.h"
#include "cli/bench_args.h"
#include "engine/cuda_graph.h"
#include "engine/device.h"
#include "engine/ops/copy.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/loss.h"
#include "engine/ops/optim.h"
#include "engine/ops/yolo_loss.h"
#include "engine/precision.h"
#include "engine/profiler.h"
#include "engine/roofline.h"
#include "kernels/cpu/cpu_isa.h"
#include "models/det_model.h"
#include "models/module.h"
#include "train/data_parallel.h"
#include "train/grad_buckets.h"
#include "train/grad_scaler.h"

#if defined(ENGINE_WITH_CUDA)
#include "base/cuda_context.h"
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

constexpr float kLr = 0.01f, kMomentum = 0.9f, kDecay = 4e-5f;

// One training step on a fixed batch already on the device.
struct Step {
  std::vector<Tensor> params, velocities;
  Device device;
  std::function<Tensor()> loss;                 // forward + loss of the model
  std::unique_ptr<train::GradBuckets> buckets;  // data parallel only
  Communicator* comm = nullptr;                 // data parallel only (follows each graph replay)
  std::unique_ptr<train::GradScaler> scaler;    // fp16 only (engine-train's loss scaling)

  void init_params(const std::vector<std::pair<std::string, Tensor>>& named) {
    for (const auto& [name, p] : named) {
      params.push_back(p);
      velocities.push_back(Tensor::zeros(p.shape(), DType::F32, device));
    }
  }
  // --cuda_graph: the whole step (forward, backward, the fp16 unscale and the update) captured once
  // and replayed, as engine-train's (train/step_graphs.h): the loss scale and its inverse are read
  // from device memory when the step runs, and the update does nothing after an inf or nan.
  bool use_graph = false;
  std::shared_ptr<GraphPool> pool = std::make_shared<GraphPool>();
  std::unique_ptr<CudaGraph> graph;
  Tensor graph_loss, graph_found;  // (kept with the graph, which writes them)
  std::vector<Tensor> graph_grads;
  Tensor lr_at_run, scale_at_run, inv_scale_at_run;

  void forward_backward() {
    if (scaler)
      (loss() * (float)scaler->scale()).backward();
    else
      loss().backward();
  }
  void capture_step() {
    lr_at_run = Tensor::full({1}, kLr, DType::F32, device);
    if (scaler) {
      scale_at_run = Tensor::zeros({}, DType::F32, device);
      inv_scale_at_run = Tensor::zeros({1}, DType::F32, device);
    }
    for (Tensor& p : params) p.zero_grad();
    graph = std::make_unique<CudaGraph>(pool);
    graph->capture([this] {
      graph_loss = loss();
      if (buckets) buckets->begin_step();
      (scaler ? graph_loss * scale_at_run : graph_loss).backward();
      if (buckets) {
        buckets->finish_step();
        graph_grads = buckets->grads_for_update();
      } else {
        for (Tensor& p : params) graph_grads.push_back(p.grad());
      }
      if (scaler)
        graph_found = buckets ? buckets->unscale(inv_scale_at_run, graph_grads)
                              : unscale_grads_check_finite(graph_grads, inv_scale_at_run);
      sgd_momentum_update(params, graph_grads, velocities, 0.f, kMomentum, kDecay,
                          UpdateAtRun{lr_at_run, graph_loss, graph_found});
    });
    for (Tensor& p : params) p.zero_grad();
  }
  void run() {
    std::vector<Tensor> grads;
    if (use_graph) {
      if (!graph) capture_step();
      if (scaler) {
        fill_(scale_at_run, (float)scaler->scale());
        fill_(inv_scale_at_run, (float)(1.0 / scaler->scale()));
      }
      graph->replay([this] {
        if (comm) comm->follow_enqueued_work("a bench_train step (a CUDA graph replay)");
      });
      if (scaler) scaler->update(graph_found.to_vector_i64()[0] != 0);
      sync(device);
      return;
    }
    if (buckets) buckets->begin_step();
    forward_backward();
    if (buckets) buckets->finish_step();
    if (buckets)
      grads = buckets->grads_for_update();
    else
      for (const Tensor& p : params) grads.push_back(p.grad());
    bool skip = false;
    if (scaler) {
      skip = buckets ? buckets->unscale(*scaler, grads) : scaler->unscale(grads);
      scaler->update(skip);
    }
    if (!skip) sgd_momentum_update(params, grads, velocities, kLr, kMomentum, kDecay);
    if (!buckets)
      for (Tensor& p : params) p.zero_grad();
    sync(device);
  }
};

}  // namespace

int main(int argc, char** argv) {
  std::string variant = "B", device_name, json_path, precision_name_flag = "fp32", amp_level_flag = "O1";
  int size = 512, batch = 4, steps = 5, warmup = 2, classes = 19;
  bool profile = true, roofline = false, cuda_graph = false, size_given = false, batch_given = false,
       classes_given = false;
  std::optional<DType> allreduce_dtype_flag;
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      auto value = [&] { return bench_args::value(argc, argv, &i); };
      auto int_value = [&] { return bench_args::positive_int(argc, argv, &i); };
      if (a == "--model")
        variant = value();
      else if (a == "--size")
        size = int_value(), size_given = true;
      else if (a == "--batch")
        batch = int_value(), batch_given = true;
      else if (a == "--steps")
        steps = int_value();
      else if (a == "--warmup")
        warmup = int_value();
      else if (a == "--classes")
        classes = int_value(), classes_given = true;
      else if (a == "--device")
        device_name = value();
      else if (a == "--json")
        json_path = value();
      else if (a == "--precision")
        precision_name_flag = value();
      else if (a == "--amp_level")
        amp_level_flag = value();
      else if (a == "--no-profile")
        profile = false;
      else if (a == "--roofline")
        roofline = true;
      else if (a == "--cuda_graph")
        cuda_graph = true;
      else if (a == "--allreduce_dtype")
        allreduce_dtype_flag = train::parse_allreduce_dtype(value(), "--allreduce_dtype");
      else if (a == "--help" || a == "-h") {
        std::printf(
            "usage: bench_train [--model B|T|yolov3_darknet53|yolov3_mobilenetv1] [--size N] [--batch N]\n"
            "                   [--steps 5] [--warmup 2] [--classes N] [--device cpu|gpu] [--no-profile] [--roofline]\n"
            "                   [--precision fp32|tf32|bf16|fp16] [--amp_level O1|O2] [--cuda_graph] [--json FILE]\n"
            "                   [--allreduce_dtype auto|fp32|bf16|fp16]\n"
            "--allreduce_dtype: the gradients' type in a data-parallel run's all-reduce (as engine-train's)\n"
            "--cuda_graph: the timed steps replay a CUDA graph of the whole step (GPU; with several ranks\n"
            "the gradient all-reduces too); the per-op profile and the roofline steps run eagerly\n"
            "defaults: PP-LiteSeg 512x512, batch 4, 19 classes; YOLOv3 416x416, batch 8, 80 classes\n");
        return 0;
      } else {
        fail("unknown flag ", a, " (see --help)");
      }
    }
    const bool yolo = variant == "yolov3_darknet53" || variant == "yolov3_mobilenetv1";
    if (variant != "B" && variant != "T" && !yolo)
      fail(
          "--model: expected B (PP-LiteSeg STDC2), T (PP-LiteSeg STDC1), yolov3_darknet53 or yolov3_mobilenetv1, got '",
          variant, "'");
    if (yolo) {  // the detection defaults unless given
      if (!size_given) size = 416;
      if (!batch_given) batch = 8;
      if (!classes_given) classes = 80;
      if (size % 32 != 0) fail("--size: YOLOv3 needs a multiple of 32, got ", size);
    }
    // One rank, or one of a data-parallel launch (the communicator and device as engine-train gets them).
    train::DataParallelSetup dp = train::setup_data_parallel(
        train::dist_env(), device_name.empty() ? default_device() : parse_device(device_name),
        device_name.find(':') != std::string::npos, /*timeout_seconds=*/600);
    const Device dev = dp.device;
    const int world = dp.comm->world_size();
    // Autocast (engine/precision.h): low-precision convolutions (O1), and low-precision activations (O2).
    const Precision precision = parse_precision(precision_name_flag, "--precision");
    const AmpLevel level = parse_amp_level(amp_level_flag, "--amp_level");
    check_precision_available(precision, level, dev);
    set_autocast_precision(precision);
    set_amp_level(level);
    if (!dp.comm->is_root()) {
      if (!std::freopen("/dev/null", "w", stdout)) fail("cannot silence rank ", dp.comm->rank());
      json_path.clear();
    }

    Step st;
    st.device = dev;
    if (precision == Precision::FP16) st.scaler = std::make_unique<train::GradScaler>(train::GradScalerConfig{});
    std::string model_name;
    const Tensor images = Tensor::uniform({batch, size, size, 3}, 11, -1.f, 1.f, dev);
    if (!yolo) {
      nn::SegModelSpec spec;
      spec.num_classes = classes;
      spec.seed = 1;
      if (variant == "T") {
        spec.backbone = "STDC1";
        spec.arm_out_chs = {32, 64, 128};
        spec.seg_head_inter_chs = {32, 64, 64};
      }
      std::shared_ptr<nn::SegModel> model = nn::build_seg_model(spec);
      model->to(dev);
      model->train();
      model->set_loss_upsamples(true);  // as the trainer: the loss upsamples the logits itself
      st.init_params(model->named_parameters());
      std::vector<int64_t> lab((size_t)batch * size * size);
      for (size_t i = 0; i < lab.size(); ++i) lab[i] = (int64_t)((i / 97 + i % 13) % (size_t)classes);
      const Tensor labels = Tensor::from_vector_i64(lab, {batch, size, size}, dev);
      st.loss = [model, images, labels] {
        Tensor loss;
        for (const Tensor& l : model->forward(images)) {
          Tensor li = upsampled_cross_entropy(l, labels);
          loss = loss.defined() ? add(loss, li) : li;
        }
        return loss;
      };
      model_name = "PP-LiteSeg-" + variant + " (" + spec.backbone + ")";
    } else {
      nn::DetModelSpec spec;
      spec.backbone = variant == "yolov3_darknet53" ? "DarkNet53" : "MobileNetV1";
      spec.num_classes = classes;
      spec.seed = 1;
      std::shared_ptr<nn::DetModel> model = nn::build_det_model(spec);
      model->to(dev);
      model->train();
      st.init_params(model->named_parameters());
      // 8 boxes per image spread over the image and over the anchor sizes, padded to 50 rows.
      const int64_t rows = 50, real = 8;
      std::vector<float> box((size_t)(batch * rows * 4), 0.f), score((size_t)(batch * rows), 0.f);
      std::vector<int64_t> cls((size_t)(batch * rows), 0);
      for (int64_t n = 0; n < batch; ++n)
        for (int64_t b = 0; b < real; ++b) {
          const size_t r = (size_t)(n * rows + b);
          box[4 * r + 0] = 0.1f + 0.8f * (float)((b * 37 + n * 11) % 97) / 97.f;
          box[4 * r + 1] = 0.1f + 0.8f * (float)((b * 53 + n * 7) % 89) / 89.f;
          box[4 * r + 2] = 0.03f + 0.6f * (float)((b * 29 + n) % 31) / 31.f;
          box[4 * r + 3] = 0.03f + 0.6f * (float)((b * 17 + n * 3) % 29) / 29.f;
          score[r] = 1.f;
          cls[r] = (b * 13 + n) % classes;
        }
      const Tensor gt_box = Tensor::from_vector(box, {batch, rows, 4}, dev);
      const Tensor gt_score = Tensor::from_vector(score, {batch, rows}, dev);
      const Tensor gt_class = Tensor::from_vector_i64(cls, {batch, rows}, dev);
      YoloLossArgs args;
      args.num_classes = classes;
      st.loss = [model, images, gt_box, gt_class, gt_score, args] {
        return yolov3_loss(model->forward(images), gt_box, gt_class, gt_score, args).loss;
      };
      model_name = "YOLOv3 (" + spec.backbone + ")";
    }

    if (world > 1) {
      st.buckets = std::make_unique<train::GradBuckets>(st.params, *dp.comm, train::GradBuckets::kDefaultBucketBytes,
                                                        train::allreduce_dtype(allreduce_dtype_flag, dev));
      st.comm = dp.comm.get();
    }
    std::printf("bench_train: %s, %d classes, batch %d at %dx%d, %s %s, device %s%s\n", model_name.c_str(), classes,
                batch, size, size, precision_name(precision), amp_level_name(level), dev.str().c_str(),
                cuda_graph ? ", CUDA graph" : "");
    if (world > 1) {
      std::string sizes;
      int64_t total = 0;
      for (size_t b = 0; b < st.buckets->num_buckets(); ++b) {
        char mb[32];
        const double bytes = (double)st.buckets->bucket_numel(b) * (double)dtype_size(st.buckets->wire_dtype());
        std::snprintf(mb, sizeof mb, "%s%.1f", b ? " + " : "", bytes / 1e6);
        sizes += mb;
        total += (int64_t)bytes;
      }
      std::printf(
          "data parallel: %d ranks (%s), batch %d per rank; gradients all-reduced per step: %.1f MB of %s in %zu "
          "buckets (%s MB, in the order backward fills them); images/s counts all ranks\n",
          world, dp.comm->name().c_str(), batch, total / 1e6, dtype_name(st.buckets->wire_dtype()),
          st.buckets->num_buckets(), sizes.c_str());
    }
    std::printf("cpu: %s, %d OpenMP threads\n", kernels::cpu_description().c_str(), omp_get_max_threads());
    if (cuda_graph && !dev.is_cuda()) fail("--cuda_graph needs a GPU device (device ", dev.str(), ")");
    for (int i = 0; i < warmup; ++i) st.run();
    if (cuda_graph) {  // captured after the eager warm-up steps (cuDNN's algorithm search is not capturable)
      st.use_graph = true;
      st.run();
      std::printf("CUDA graph: %zu nodes\n", st.graph->nodes());
    }
    std::vector<double> ips;
    for (int i = 0; i < steps; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      st.run();
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      ips.push_back(world * batch / s);
      std::printf("step %d: %.3f s, %.2f images/s\n", i + 1, s, world * batch / s);
    }
    std::vector<double> sorted = ips;
    std::sort(sorted.begin(), sorted.end());
    const double median = sorted[sorted.size() / 2];
    std::printf("median: %.2f images/s (%.3f s per step)\n", median, world * batch / median);
    const double step_seconds = world * batch / median;
    double ideal_step_seconds = 0;
    std::vector<roofline::FamilyRow> families;
    if (profile || roofline) {
      st.use_graph = false;  // per-op times need eager launches
      roofline::Machine machine;
      if (roofline) {
        machine = roofline::measure(dev, precision);
        roofline::install(machine);
        // A first profiled step measures each convolution problem's ideal once (outside the op
        // timings but inside that step's wall time); the reported step is the second.
        profiler::set_enabled(true);
        st.run();
        profiler::set_enabled(false);
      }
      profiler::reset();
      profiler::set_enabled(true);
      const auto t0 = std::chrono::steady_clock::now();
      st.run();
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      profiler::set_enabled(false);
      std::printf("\nper-op time of one profiled step (%.3f s):\n%s", s, profiler::report(s).c_str());
      if (roofline) {
        profiler::set_ideal_model({});
        const auto entries = profiler::snapshot();
        families = roofline::by_family(entries);
        for (const auto& f : families) ideal_step_seconds += f.ideal_seconds;
        std::printf("\n%s", roofline::report(machine, entries, step_seconds).c_str());
      }
    }
    if (!json_path.empty()) {
      std::ofstream out(json_path);
      out << "{\"model\": \"" << model_name << "\", \"size\": " << size << ", \"batch\": " << batch
          << ", \"device\": \"" << dev.str() << "\", \"cpu\": \"" << kernels::cpu_model_name()
          << "\", \"cpu_kernels\": \"" << kernels::cpu_isa_name(kernels::cpu_isa()) << "\", \"precision\": \""
          << precision_name(precision) << "\", \"amp_level\": \"" << amp_level_name(level) << "\", \"ranks\": " << world
          << ", \"cuda_graph\": " << (cuda_graph ? "true" : "false") << ", \"median_images_per_s\": " << median
          << ", \"step_s\": " << step_seconds;
      if (roofline) {
        out << ", \"ideal_step_s\": " << ideal_step_seconds << ", \"families\": [";
        for (size_t i = 0; i < families.size(); ++i)
          out << (i ? ", " : "") << "{\"family\": \"" << families[i].family << "\", \"calls\": " << families[i].calls
              << ", \"measured_s\": " << families[i].seconds << ", \"ideal_s\": " << families[i].ideal_seconds
              << ", \"flops\": " << families[i].flops << ", \"bytes\": " << families[i].bytes << "}";
        out << "]";
      }
      out << "}\n";
    }
    return 0;
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_train: %s\n", e.what());
    return 2;
  }
}
