// bench_data: the data pipeline's speed, which the training log reports as reader_cost. Measures
//   1. writing the synthetic fundus set (engine-datagen's work: drawing, JPEG and PNG encoding),
//   2. the training loader over that set with a config's train transforms (decode + augment +
//      batch), with 0 (the calling thread), 1 and 2 worker threads.
//   bench_data [--config configs/pp_liteseg_synthetic_256x256.yml] [--images 60] [--size 256]
//              [--batches 30] [--out DIR] [--json FILE]
// The set is written to --out (default: a fresh temporary folder, removed afterwards).
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "base/error.h"
#include "cli/bench_args.h"
#include "data/loader.h"
#include "data/synthetic.h"
#include "kernels/cpu/cpu_isa.h"
#include "train/config.h"

using namespace engine;
namespace fs = std::filesystem;

namespace {

// Removes a temporary folder when the program leaves, on errors too.
struct RemoveOnExit {
  std::string path;
  ~RemoveOnExit() {
    std::error_code ec;
    if (!path.empty()) fs::remove_all(path, ec);
  }
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  std::string config = "configs/pp_liteseg_synthetic_256x256.yml", out_dir, json_path;
  int images = 60, size = 256, batches = 30;
  RemoveOnExit temporary_dir;
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      auto value = [&] { return bench_args::value(argc, argv, &i); };
      auto int_value = [&] { return bench_args::positive_int(argc, argv, &i); };
      if (a == "--config")
        config = value();
      else if (a == "--images")
        images = int_value();
      else if (a == "--size")
        size = int_value();
      else if (a == "--batches")
        batches = int_value();
      else if (a == "--out")
        out_dir = value();
      else if (a == "--json")
        json_path = value();
      else if (a == "--help" || a == "-h") {
        std::printf(
            "usage: bench_data [--config FILE] [--images 60] [--size 256] [--batches 30] [--out DIR] [--json FILE]\n");
        return 0;
      } else {
        fail("unknown flag ", a, " (see --help)");
      }
    }
    if (out_dir.empty()) {
      std::string tmpl = (fs::temp_directory_path() / "bench_data.XXXXXX").string();
      if (!mkdtemp(tmpl.data())) fail("cannot create a temporary folder under ", fs::temp_directory_path().string());
      out_dir = temporary_dir.path = tmpl;
    }
    const std::string root = (fs::path(out_dir) / "set").string();
    std::printf("bench_data: %s\n", kernels::cpu_description().c_str());

    data::SyntheticSpec spec;
    spec.root = root;
    spec.train = images;
    spec.val = 0;
    spec.height = spec.width = size;
    auto t0 = std::chrono::steady_clock::now();
    data::generate_synthetic_fundus(spec);
    const double gen_s = seconds_since(t0);
    std::printf("synthetic set: %d images of %dx%d in %.3f s: %.1f images/s (one thread)\n", images, size, size, gen_s,
                images / gen_s);

    const train::TrainConfig cfg = train::load_train_config(
        config, {"train_dataset.dataset_root=" + root, "train_dataset.train_path=" + root + "/train_list.txt"});
    const auto dataset = data::make_dataset(cfg.train_dataset);
    std::vector<std::pair<int, double>> loader_rates;
    for (int workers : {0, 1, 2}) {
      data::LoaderOptions lo;
      lo.batch_size = cfg.batch_size;
      lo.shuffle = true;
      lo.drop_last = true;
      lo.num_workers = workers;
      lo.seed = 1;
      data::DataLoader loader(dataset, lo);
      loader.next();  // starts the workers; not timed
      t0 = std::chrono::steady_clock::now();
      for (int b = 0; b < batches; ++b) loader.next();
      const double s = seconds_since(t0);
      const double rate = (double)batches * (double)cfg.batch_size / s;
      loader_rates.push_back({workers, rate});
      std::printf("train loader (%s transforms, batch %lld), %d worker%s: %.1f images/s\n", config.c_str(),
                  (long long)cfg.batch_size, workers, workers == 1 ? "" : "s", rate);
    }
    if (!json_path.empty()) {
      std::ofstream js(json_path);
      js << "{\"cpu\": \"" << kernels::cpu_model_name() << "\", \"synthetic_images_per_s\": " << images / gen_s;
      for (const auto& [w, r] : loader_rates) js << ", \"loader_workers_" << w << "_images_per_s\": " << r;
      js << "}\n";
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_data: %s\n", e.what());
    return 2;
  }
}
