// engine-predict: PaddleSeg's tools/predict.py for this engine: runs saved weights on an image, a
// folder of images or a file list and writes, per image, a colour mask and an overlay:
//   <save_dir>/pseudo_color_prediction/<name>.png  (palette PNG: pixel value = class id)
//   <save_dir>/added_prediction/<name>.jpg         (0.6 image + 0.4 class colour, as PaddleSeg's visualize)
//   <save_dir>/logits/<name>.npy                   (--save_logits: float32 [H, W, classes], numpy's .npy
//                                                   format; tools/check_pdparams_logits.py compares them
//                                                   with Paddle's)
//   engine-predict --config configs/pp_liteseg_synthetic_256x256.yml --model_path output/best_model
//                  --image_path data/synthetic_fundus/images [--save_dir output/result] [--aug_pred ...]
//                  [--is_slide --crop_size W H --stride W H] [--custom_color R G B ...]
// The images go through the config's val_dataset transforms (Normalize by default). Exit codes: 0,
// 2 bad flags or config, 1 other errors (unreadable image or weights: the message names the file).
#include <algorithm>
#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "base/error.h"
#include "data/color_map.h"
#include "data/image_io.h"
#include "data/loader.h"
#include "data/transforms.h"
#include "engine/device.h"
#include "engine/ops/resize.h"
#include "engine/ops/softmax.h"
#include "train/cli_args.h"
#include "train/cli_common.h"
#include "train/config.h"
#include "train/evaluate.h"

namespace fs = std::filesystem;

namespace {

// numpy's .npy format 1.0: magic, version, a little-endian u16 header length, a Python dict literal
// padded with spaces to a multiple of 64 bytes and ending in a newline, then the C-order data.
void write_npy(const fs::path& path, const std::vector<float>& data, const std::vector<int64_t>& shape) {
  std::string dims;
  for (int64_t d : shape) dims += std::to_string(d) + ", ";
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims.substr(0, dims.size() - 2) +
                       (shape.size() == 1 ? "," : "") + "), }";
  const size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::ofstream out(path, std::ios::binary);
  ENGINE_CHECK(out.good(), "--save_logits: cannot write ", path.string());
  const uint16_t len = (uint16_t)header.size();
  out.write("\x93NUMPY\x01\x00", 8);
  out.write(reinterpret_cast<const char*>(&len), 2);
  out << header;
  out.write(reinterpret_cast<const char*>(data.data()), (std::streamsize)(data.size() * sizeof(float)));
  ENGINE_CHECK(out.good(), "--save_logits: cannot write ", path.string());
}

bool is_image_file(const fs::path& p) {
  std::string e = p.extension().string();
  std::transform(e.begin(), e.end(), e.begin(), [](unsigned char c) { return (char)std::tolower(c); });
  return e == ".jpg" || e == ".jpeg" || e == ".png";
}

std::vector<std::string> list_images(const std::string& path) {
  std::vector<std::string> out;
  if (fs::is_directory(path)) {
    for (const auto& e : fs::recursive_directory_iterator(path))
      if (e.is_regular_file() && is_image_file(e.path())) out.push_back(e.path().string());
    std::sort(out.begin(), out.end());
  } else if (fs::path(path).extension() == ".txt") {
    std::ifstream in(path);
    ENGINE_CHECK(in.good(), "--image_path: cannot read the list ", path);
    // "image [label]" lines; relative image paths are relative to the list's folder (as PaddleSeg's
    // predict.py get_image_list), so a data set's val_list.txt works as it is.
    const fs::path base = fs::path(path).parent_path();
    for (std::string line; std::getline(in, line);) {
      std::istringstream ls(line);
      std::string first;
      if (ls >> first) out.push_back(fs::path(first).is_absolute() ? first : (base / first).string());
    }
  } else {
    ENGINE_CHECK(fs::exists(path), "--image_path: ", path, " not found");
    out.push_back(path);
  }
  ENGINE_CHECK(!out.empty(), "--image_path: no .jpg/.jpeg/.png images found in ", path);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace engine;
  using namespace engine::train;
  try {
    const PredictArgs a = parse_predict_args(argc, argv);
    if (a.help) {
      std::printf("%s", predict_usage().c_str());
      return 0;
    }
    const TrainConfig cfg = load_train_config(a.config, a.opts, std::nullopt, std::nullopt, std::nullopt);
    const Device device = device_from_flag(a.device);
    const std::vector<std::string> images = list_images(a.image_path);
    std::vector<data::TransformSpec> tspecs = cfg.has_val_dataset
                                                  ? cfg.val_dataset.transforms
                                                  : std::vector<data::TransformSpec>{{"Normalize", {}, "predict", {}}};
    const data::Pipeline pipeline = data::build_pipeline(tspecs, 255);
    const auto model = load_trained_model(cfg, a.model_path, device);
    const TestConfig tc = apply_predict_args(cfg.test_config, a);
    const InferOptions io = infer_options(tc);
    const fs::path mask_dir = fs::path(a.save_dir) / "pseudo_color_prediction";
    const fs::path added_dir = fs::path(a.save_dir) / "added_prediction";
    fs::create_directories(mask_dir);
    fs::create_directories(added_dir);
    const fs::path logits_dir = fs::path(a.save_dir) / "logits";
    if (a.save_logits) fs::create_directories(logits_dir);
    const auto colors = data::seg_color_map(std::max<int>(256, (int)cfg.model.num_classes), a.custom_color);
    data::Rng rng(0);
    for (size_t i = 0; i < images.size(); ++i) {
      const data::Image original = data::read_image(images[i]);
      data::Sample s;
      s.image = original;
      s.has_label = false;
      pipeline.apply(s, rng);
      Tensor logits = infer_logits(*model, data::image_to_tensor(s.image).to(device), io);
      if (logits.shape()[1] != original.h || logits.shape()[2] != original.w)
        logits = resize_bilinear(logits, original.h, original.w, false);
      const std::vector<int64_t> pred = argmax(logits, -1).to_vector_i64();
      data::Label mask;
      mask.h = original.h;
      mask.w = original.w;
      mask.data.resize(pred.size());
      for (size_t k = 0; k < pred.size(); ++k) mask.data[k] = (uint8_t)pred[k];
      data::Image added = original;
      for (size_t k = 0; k < pred.size(); ++k)
        for (int c = 0; c < 3; ++c) {
          float& v = added.data[k * 3 + (size_t)c];
          v = 0.6f * v + 0.4f * (float)colors[(size_t)pred[k]][(size_t)c];
        }
      const std::string stem = fs::path(images[i]).stem().string();
      if (a.save_logits)
        write_npy(logits_dir / (stem + ".npy"), logits.to_vector(), {logits.size(1), logits.size(2), logits.size(3)});
      data::write_png((mask_dir / (stem + ".png")).string(), mask, colors);
      data::write_jpeg((added_dir / (stem + ".jpg")).string(), added, 95);
    }
    std::printf("engine-predict: %zu images -> %s (pseudo_color_prediction/, added_prediction/%s)\n", images.size(),
                a.save_dir.c_str(), a.save_logits ? ", logits/" : "");
    return 0;
  } catch (const ConfigError& e) {
    report_error("engine-predict", e);
    return 2;
  } catch (const std::exception& e) {
    report_error("engine-predict", e);
    return 1;
  }
}
