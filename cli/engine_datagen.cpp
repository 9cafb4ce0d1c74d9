// engine-datagen: writes a synthetic data set, so training, evaluation and prediction run with nothing downloaded.
//   --task seg (default): the fundus-like segmentation set (data/synthetic.h) in PaddleSeg's file-list layout
//     engine-datagen [--out data/synthetic_fundus] [--train 200] [--val 40] [--test 0] [--size 256]
//                    [--height H --width W] [--seed 1]
//   --task det: the coloured-shapes detection set (data/det_synthetic.h) in PaddleX's VOC layout
//     engine-datagen --task det [--out datasets/synthetic_det] [--train 200] [--val 40] [--size 256]
//                    [--height H --width W] [--seed 1]
// Exit codes: 0 done, 2 bad flags or a refused output folder.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "base/error.h"
#include "data/det_synthetic.h"
#include "data/synthetic.h"

namespace {

const char* kUsage =
    "usage: engine-datagen [--task seg|det] [--out DIR] [--train N] [--val N] [--test N] [--size S | --height H "
    "--width W] [--seed N]\n"
    "  --task seg (default): DIR/images/*.jpg, DIR/labels/*.png (0 background, 1 optic disc, 255 ignore) and\n"
    "    DIR/train_list.txt, val_list.txt, test_list.txt. Defaults: data/synthetic_fundus, 200/40/0 images, 256x256.\n"
    "  --task det: DIR/JPEGImages/*.jpg, DIR/Annotations/*.xml (Pascal VOC), DIR/labels.txt (circle, square,\n"
    "    triangle, cross) and DIR/train_list.txt, val_list.txt (PaddleX's VOCDetection layout).\n"
    "    Defaults: datasets/synthetic_det, 200/40 images, 256x256. --test does not apply.\n"
    "  Both: deterministic for a --seed (default 1).\n";

long long parse_int(const std::string& flag, const std::string& v, long long lo) {
  char* end = nullptr;
  const long long x = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || x < lo) engine::fail(flag, ": expected an integer >= ", lo, ", got '", v, "'");
  return x;
}

}  // namespace

int main(int argc, char** argv) {
  std::string task = "seg", out;
  int train = 200, val = 40, test = 0, height = 256, width = 256;
  bool test_given = false;
  uint64_t seed = 1;
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      if (a == "--help" || a == "-h") {
        std::printf("%s", kUsage);
        return 0;
      }
      if (i + 1 >= argc) engine::fail(a, ": missing value (see --help)");
      const std::string v = argv[++i];
      if (a == "--task")
        task = v;
      else if (a == "--out")
        out = v;
      else if (a == "--train")
        train = (int)parse_int(a, v, 1);
      else if (a == "--val")
        val = (int)parse_int(a, v, 0);
      else if (a == "--test")
        test = (int)parse_int(a, v, 0), test_given = true;
      else if (a == "--size")
        height = width = (int)parse_int(a, v, 32);
      else if (a == "--height")
        height = (int)parse_int(a, v, 32);
      else if (a == "--width")
        width = (int)parse_int(a, v, 32);
      else if (a == "--seed")
        seed = (uint64_t)parse_int(a, v, 0);
      else
        engine::fail("unknown flag ", a, " (see --help)");
    }
    if (task == "seg") {
      engine::data::SyntheticSpec spec;
      spec.root = out.empty() ? "data/synthetic_fundus" : out;
      spec.train = train, spec.val = val, spec.test = test;
      spec.height = height, spec.width = width;
      spec.seed = seed;
      engine::data::generate_synthetic_fundus(spec);
      std::printf("engine-datagen: wrote %d train, %d val, %d test images of %dx%d to %s\n", spec.train, spec.val,
                  spec.test, spec.width, spec.height, spec.root.c_str());
    } else if (task == "det") {
      if (test_given) engine::fail("--test: not used with --task det (the VOC layout has train and val lists)");
      engine::data::SyntheticDetSpec spec;
      spec.root = out.empty() ? "datasets/synthetic_det" : out;
      spec.train = train, spec.val = val;
      spec.height = height, spec.width = width;
      spec.seed = seed;
      engine::data::generate_synthetic_det(spec);
      std::printf("engine-datagen: wrote %d train, %d val detection images of %dx%d to %s\n", spec.train, spec.val,
                  spec.width, spec.height, spec.root.c_str());
    } else {
      engine::fail("--task: expected seg or det, got '", task, "'");
    }
    return 0;
  } catch (const engine::Error& e) {
    std::fprintf(stderr, "engine-datagen: %s\n", e.what());
    return 2;
  }
}
