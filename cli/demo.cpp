// engine-demo: trains the tiny two-layer network of train/tiny_mlp.h on generated data and prints
// the falling loss. The main job of the README until the PP-LiteSeg trainer exists.
//   engine-demo [--device cpu|gpu] [--steps N] [--hidden N] [--lr X] [--samples N]
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>

#include "engine/device.h"
#include "engine/error.h"
#include "train/tiny_mlp.h"

int main(int argc, char** argv) {
  using namespace engine;
  try {
    TinyMlpConfig cfg;
    std::string device_name = default_device().is_cuda() ? "gpu" : "cpu";
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      auto value = [&](const char* flag) -> std::string {
        ENGINE_CHECK(i + 1 < argc, "engine-demo: flag ", flag, " needs a value");
        return argv[++i];
      };
      auto number = [&](const char* flag) {
        const std::string v = value(flag);
        char* end = nullptr;
        const double d = std::strtod(v.c_str(), &end);
        ENGINE_CHECK(!v.empty() && *end == '\0' && d > 0, "engine-demo: ", flag, " expects a positive number, got '", v, "'");
        return d;
      };
      if (a == "--device") device_name = value("--device");
      else if (a == "--steps") cfg.steps = (int)number("--steps");
      else if (a == "--hidden") cfg.hidden = (int)number("--hidden");
      else if (a == "--samples") cfg.samples = (int)number("--samples");
      else if (a == "--lr") cfg.lr = (float)number("--lr");
      else if (a == "-h" || a == "--help") {
        std::printf("usage: engine-demo [--device cpu|gpu] [--steps N] [--hidden N] [--samples N] [--lr X]\n");
        return 0;
      } else {
        fail("engine-demo: unknown flag '", a, "' (see --help)");
      }
    }
    const Device device = parse_device(device_name);
    std::printf("engine-demo: 2-layer MLP (hidden %d), %d samples, SGD lr %g, %d steps on %s%s\n", cfg.hidden,
                cfg.samples, cfg.lr, cfg.steps, device.str().c_str(),
                device.is_cuda() && cuda_is_emulated() ? " (emulated CUDA)" : "");
    const auto t0 = std::chrono::steady_clock::now();
    const auto losses = train_tiny_mlp(cfg, device);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    for (size_t s = 0; s < losses.size(); ++s)
      if (s % 25 == 0 || s + 1 == losses.size()) std::printf("step %4zu  loss %.6f\n", s, losses[s]);
    std::printf("loss %.6f -> %.6f in %.2f s (%.2f ms/step)\n", losses.front(), losses.back(), secs,
                1e3 * secs / (double)losses.size());
    return losses.back() < losses.front() ? 0 : 1;
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }
}
