// engine-datagen: writes the synthetic fundus-like segmentation data set (data/synthetic.h) in
// PaddleSeg's file-list layout, so training, evaluation and prediction run with nothing downloaded.
//   engine-datagen [--out data/synthetic_fundus] [--train 200] [--val 40] [--test 0] [--size 256]
//                  [--height H --width W] [--seed 1]
// Exit codes: 0 done, 2 bad flags or a refused output folder.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "data/synthetic.h"
#include "engine/error.h"

namespace {

const char* kUsage =
    "usage: engine-datagen [--out DIR] [--train N] [--val N] [--test N] [--size S | --height H --width W] [--seed N]\n"
    "  Writes DIR/images/*.jpg, DIR/labels/*.png (0 background, 1 optic disc, 255 ignore) and\n"
    "  DIR/train_list.txt, val_list.txt, test_list.txt. Defaults: data/synthetic_fundus, 200/40/0 images, 256x256, seed 1.\n";

long long parse_int(const std::string& flag, const std::string& v, long long lo) {
  char* end = nullptr;
  const long long x = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || x < lo) engine::fail(flag, ": expected an integer >= ", lo, ", got '", v, "'");
  return x;
}

}  // namespace

int main(int argc, char** argv) {
  engine::data::SyntheticSpec spec;
  spec.root = "data/synthetic_fundus";
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      if (a == "--help" || a == "-h") {
        std::printf("%s", kUsage);
        return 0;
      }
      if (i + 1 >= argc) engine::fail(a, ": missing value (see --help)");
      const std::string v = argv[++i];
      if (a == "--out") spec.root = v;
      else if (a == "--train") spec.train = (int)parse_int(a, v, 1);
      else if (a == "--val") spec.val = (int)parse_int(a, v, 0);
      else if (a == "--test") spec.test = (int)parse_int(a, v, 0);
      else if (a == "--size") spec.height = spec.width = (int)parse_int(a, v, 32);
      else if (a == "--height") spec.height = (int)parse_int(a, v, 32);
      else if (a == "--width") spec.width = (int)parse_int(a, v, 32);
      else if (a == "--seed") spec.seed = (uint64_t)parse_int(a, v, 0);
      else engine::fail("unknown flag ", a, " (see --help)");
    }
    engine::data::generate_synthetic_fundus(spec);
    std::printf("engine-datagen: wrote %d train, %d val, %d test images of %dx%d to %s\n", spec.train, spec.val,
                spec.test, spec.width, spec.height, spec.root.c_str());
    return 0;
  } catch (const engine::Error& e) {
    std::fprintf(stderr, "engine-datagen: %s\n", e.what());
    return 2;
  }
}
