#include "train/evaluate.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <ostream>

#include "base/error.h"
#include "data/loader.h"
#include "engine/autograd.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/metrics.h"
#include "engine/ops/resize.h"
#include "engine/ops/shape_ops.h"
#include "engine/ops/softmax.h"
#include "train/safetensors.h"
#include "train/weights_file.h"

namespace engine::train {
namespace {

// x reversed along `axis` (a negative-stride view made contiguous; eval only, no autograd).
Tensor flip(const Tensor& x, int axis) {
  Shape strides = x.strides();
  const int64_t len = x.shape()[(size_t)axis];
  const int64_t offset = x.offset() + (len - 1) * strides[(size_t)axis];
  strides[(size_t)axis] = -strides[(size_t)axis];
  return make_view(x, x.shape(), strides, offset).contiguous();
}

std::string progress_bar(int64_t done, int64_t total) {
  const int width = 30;
  const int filled = total > 0 ? (int)(width * done / total) : width;
  std::string bar = "[";
  for (int i = 0; i < width; ++i) bar += i < filled ? '=' : (i == filled ? '>' : '.');
  if (done == total) bar[(size_t)width] = '=';
  return bar + "]";
}

// The [begin, end) ranges of slide_inference's windows along one side of `len` pixels: a window
// every `stride` pixels, ceil((len - crop) / stride) + 1 of them (one when the side fits a crop),
// the ones that would cross the edge moved back to end at it (and clipped at 0).
std::vector<std::pair<int64_t, int64_t>> slide_windows(int64_t len, int64_t crop, int64_t stride) {
  const int64_t n = len <= crop ? 1 : (len - crop + stride - 1) / stride + 1;
  std::vector<std::pair<int64_t, int64_t>> windows;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t end = std::min(i * stride + crop, len);
    windows.emplace_back(std::max(end - crop, int64_t{0}), end);
  }
  return windows;
}

// How many windows cover each pixel of the side; an uncovered pixel is the error PaddleSeg raises.
std::vector<float> window_counts(const std::vector<std::pair<int64_t, int64_t>>& windows, int64_t len, const char* side,
                                 const InferOptions& opt, int64_t h, int64_t w) {
  std::vector<float> count((size_t)len, 0.f);
  for (auto [b, e] : windows)
    for (int64_t i = b; i < e; ++i) count[(size_t)i] += 1;
  for (int64_t i = 0; i < len; ++i)
    if (count[(size_t)i] == 0)
      fail("is_slide: stride (", opt.stride[0], ", ", opt.stride[1], ") is larger than crop_size (", opt.crop_size[0],
           ", ", opt.crop_size[1], "): ", side, " ", i, " of a ", h, "x", w,
           " image is in no window; use a stride no larger than the crop");
  return count;
}

// Windows per forward pass of slide_logits: bounds the activations to that many windows' worth.
constexpr size_t kSlideBatch = 8;

// PaddleSeg's slide_inference (see evaluate.h): f32 logits [1, H, W, C].
Tensor slide_logits(nn::SegModel& model, const Tensor& image, const InferOptions& opt) {
  ENGINE_CHECK(opt.crop_size.size() == 2 && opt.stride.size() == 2 && opt.crop_size[0] > 0 && opt.crop_size[1] > 0 &&
                   opt.stride[0] > 0 && opt.stride[1] > 0,
               "is_slide: needs crop_size (w, h) and stride (w, h), positive");
  const int64_t h = image.shape()[1], w = image.shape()[2];
  const auto rows = slide_windows(h, opt.crop_size[1], opt.stride[1]);
  const auto cols = slide_windows(w, opt.crop_size[0], opt.stride[0]);
  const std::vector<float> row_count = window_counts(rows, h, "row", opt, h, w);
  const std::vector<float> col_count = window_counts(cols, w, "column", opt, h, w);
  // Every window has the same size (the crop, or the image's side where that is shorter), so the
  // windows go through the model kSlideBatch at a time as one batch (eval mode: batch items do not
  // mix); PaddleSeg runs them one by one.
  const int64_t wh = rows[0].second - rows[0].first, ww = cols[0].second - cols[0].first;
  std::vector<std::pair<int64_t, int64_t>> origins;  // (row, column) of each window's top-left pixel
  for (auto [r0, r1] : rows)
    for (auto [c0, c1] : cols) origins.emplace_back(r0, c0);
  Tensor sum;
  for (size_t first = 0; first < origins.size(); first += kSlideBatch) {
    const size_t n = std::min(kSlideBatch, origins.size() - first);
    std::vector<Tensor> crops;
    for (size_t k = first; k < first + n; ++k)
      crops.push_back(image.narrow(1, origins[k].first, wh).narrow(2, origins[k].second, ww));
    const Tensor logits = model.forward(n == 1 ? crops[0].contiguous() : concat(crops, 0)).at(0);
    ENGINE_CHECK(logits.dim() == 4 && logits.size(0) == (int64_t)n && logits.size(1) >= wh && logits.size(2) >= ww,
                 "is_slide: the model gave logits ", logits.describe(), " for ", n, " windows of ", wh, "x", ww);
    if (!sum.defined()) sum = Tensor::zeros({1, h, w, logits.size(3)}, DType::F32, image.device());
    for (size_t k = 0; k < n; ++k) {
      // PaddleSeg: logit[:, :, :h2-h1, :w2-w1]
      const Tensor logit = logits.narrow(0, (int64_t)k, 1).narrow(1, 0, wh).narrow(2, 0, ww);
      Tensor region = sum.narrow(1, origins[first + k].first, wh).narrow(2, origins[first + k].second, ww);
      region.copy_(add(region, logit.dtype() == DType::F32 ? logit : logit.to(DType::F32)));
    }
  }
  std::vector<float> count((size_t)(h * w));  // windows are a grid: rows x columns
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) count[(size_t)(y * w + x)] = row_count[(size_t)y] * col_count[(size_t)x];
  return div(sum, Tensor::from_vector(count, {1, h, w, 1}, image.device()));
}

// One pass of the model over `image`: whole, or in windows.
Tensor model_logits(nn::SegModel& model, const Tensor& image, const InferOptions& opt) {
  return opt.is_slide ? slide_logits(model, image, opt) : model.forward(image).at(0);
}

}  // namespace

InferOptions infer_options(const TestConfig& t) {
  InferOptions o;
  o.aug = t.aug_eval;
  o.scales = t.scales;
  o.flip_horizontal = t.flip_horizontal;
  o.flip_vertical = t.flip_vertical;
  o.is_slide = t.is_slide;
  o.crop_size = t.crop_size;
  o.stride = t.stride;
  return o;
}

Tensor infer_logits(nn::SegModel& model, const Tensor& image, const InferOptions& opt) {
  NoGradGuard no_grad;
  const int h = (int)image.shape()[1], w = (int)image.shape()[2];
  if (!opt.aug) return model_logits(model, image, opt);
  ENGINE_CHECK(!opt.scales.empty(), "aug_eval: no scales given");
  Tensor sum;
  int passes = 0;
  for (double s : opt.scales) {
    ENGINE_CHECK(s > 0, "aug_eval: scale must be positive, got ", s);
    const int sh = (int)(h * s + 0.5), sw = (int)(w * s + 0.5);
    const Tensor scaled = (sh == h && sw == w) ? image : resize_bilinear(image, sh, sw, false);
    std::vector<std::pair<bool, bool>> flips{{false, false}};
    if (opt.flip_horizontal) flips.push_back({true, false});
    if (opt.flip_vertical) flips.push_back({false, true});
    if (opt.flip_horizontal && opt.flip_vertical) flips.push_back({true, true});
    for (auto [fh, fv] : flips) {
      Tensor in = scaled;
      if (fh) in = flip(in, 2);
      if (fv) in = flip(in, 1);
      Tensor logit = model_logits(model, in, opt);
      if (fv) logit = flip(logit, 1);
      if (fh) logit = flip(logit, 2);
      if (logit.shape()[1] != h || logit.shape()[2] != w) logit = resize_bilinear(logit, h, w, false);
      sum = sum.defined() ? add(sum, logit) : logit;
      ++passes;
    }
  }
  return passes == 1 ? sum : div(sum, (float)passes);
}

EvalResult evaluate(nn::SegModel& model, const data::SegDataset& val, Device device, const InferOptions& opt,
                    std::ostream& log, const std::atomic<int>* cancel, Communicator* comm) {
  const int rank = comm ? comm->rank() : 0, world = comm ? comm->world_size() : 1;
  const bool was_training = model.training();
  model.eval();
  const int64_t n = val.size(), c = val.num_classes();
  ENGINE_CHECK(n > 0, "evaluation: the validation data set is empty");
  log << "Start evaluating (total_samples: " << n << ", total_iters: " << n << ")..." << std::endl;
  const bool tty = isatty(STDOUT_FILENO);
  std::vector<int64_t> inter((size_t)c, 0), pred((size_t)c, 0), label((size_t)c, 0);
  double reader = 0, total = 0;
  const auto start = std::chrono::steady_clock::now();
  data::Rng rng(0);  // the val pipeline is deterministic; the generator is unused
  const int64_t mine = n / world + (rank < n % world ? 1 : 0);  // images r, r + W, ... of this rank
  bool cancelled = false;
  for (int64_t j = 0; j < mine; ++j) {
    const int64_t i = rank + j * world;
    if (cancel && cancel->load() != 0) {
      log << (tty ? "\n" : "") << "Evaluation stopped after " << j << " of " << mine << " images" << std::endl;
      cancelled = true;
      break;
    }
    const auto t0 = std::chrono::steady_clock::now();
    data::Sample s = val.load(i, rng);
    ENGINE_CHECK(s.has_label, "evaluation: sample ", i, " (", val.image_path(i), ") has no label");
    const Tensor image = data::image_to_tensor(s.image).to(device);
    const Tensor lab = data::label_to_tensor(s.label).to(device);
    const auto t1 = std::chrono::steady_clock::now();
    Tensor logits = infer_logits(model, image, opt);
    if (logits.shape()[1] != lab.shape()[1] || logits.shape()[2] != lab.shape()[2]) {
      NoGradGuard no_grad;  // the val pipeline resized the image: map the logits back to the label's size
      logits = resize_bilinear(logits, (int)lab.shape()[1], (int)lab.shape()[2], false);
    }
    const Tensor p = argmax(logits, -1);
    const SegAreas a = seg_area_counts(p, lab, c, val.ignore_index());
    const auto ai = a.intersect.to_vector_i64(), ap = a.pred.to_vector_i64(), al = a.label.to_vector_i64();
    for (int64_t k = 0; k < c; ++k) {
      inter[(size_t)k] += ai[(size_t)k];
      pred[(size_t)k] += ap[(size_t)k];
      label[(size_t)k] += al[(size_t)k];
    }
    const auto t2 = std::chrono::steady_clock::now();
    reader += std::chrono::duration<double>(t1 - t0).count();
    total += std::chrono::duration<double>(t2 - t0).count();
    if (tty || j + 1 == mine) {  // a rank's progress over its own images
      const double elapsed = std::chrono::duration<double>(t2 - start).count();
      char line[256];
      std::snprintf(line, sizeof line, "%lld/%lld %s - %.0fs %.0fms/step - batch_cost: %.4f - reader cost: %.4g",
                    (long long)(j + 1), (long long)mine, progress_bar(j + 1, mine).c_str(), elapsed,
                    1e3 * total / (double)(j + 1), total / (double)(j + 1), reader / (double)(j + 1));
      log << (tty ? "\r" : "") << line << (j + 1 == mine ? "\n" : "") << std::flush;
    }
  }
  if (was_training) model.train();
  if (world > 1) {  // exact integer sums over the ranks (and one cancelled rank cancels all)
    std::vector<int64_t> packed;
    packed.push_back(cancelled ? 1 : 0);
    for (const auto* v : {&inter, &pred, &label}) packed.insert(packed.end(), v->begin(), v->end());
    const std::string bytes(reinterpret_cast<const char*>(packed.data()), packed.size() * sizeof(int64_t));
    const std::vector<std::string> all = comm->all_gather_bytes(bytes, "evaluation area counts");
    std::fill(inter.begin(), inter.end(), 0);
    std::fill(pred.begin(), pred.end(), 0);
    std::fill(label.begin(), label.end(), 0);
    for (const std::string& b : all) {
      ENGINE_CHECK(b.size() == bytes.size(), "evaluation: a rank sent ", b.size(), " bytes of area counts, expected ",
                   bytes.size(), " (different numbers of classes?)");
      std::vector<int64_t> v(packed.size());
      std::memcpy(v.data(), b.data(), b.size());
      cancelled = cancelled || v[0] != 0;
      for (int64_t k = 0; k < c; ++k) {
        inter[(size_t)k] += v[(size_t)(1 + k)];
        pred[(size_t)k] += v[(size_t)(1 + c + k)];
        label[(size_t)k] += v[(size_t)(1 + 2 * c + k)];
      }
    }
  }
  EvalResult r;
  if (cancelled) {
    r.cancelled = true;
    return r;
  }
  r.metrics = compute_seg_metrics(inter, pred, label);
  r.num_images = n;
  r.intersect = std::move(inter);
  r.pred = std::move(pred);
  r.label = std::move(label);
  return r;
}

std::shared_ptr<nn::SegModel> load_trained_model(const TrainConfig& cfg, const std::string& model_path, Device device) {
  namespace fs = std::filesystem;
  ENGINE_CHECK(
      !model_path.empty(),
      "--model_path: missing (a model.safetensors / model.pdparams file or a folder such as output/best_model)");
  fs::path file(model_path);
  // A folder: ours holds model.safetensors, PaddleSeg's (e.g. output/best_model) model.pdparams; an
  // ema_best_model/ (--use_ema) holds ema_model.safetensors, PaddleSeg's ema_model.pdparams.
  if (fs::is_directory(file)) {
    fs::path found = file / "model.safetensors";
    for (const char* name : {"model.safetensors", "model.pdparams", "ema_model.safetensors", "ema_model.pdparams"})
      if (fs::exists(file / name)) {
        found = file / name;
        break;
      }
    file = found;
  }
  ENGINE_CHECK(fs::exists(file), "--model_path: ", file.string(), " not found");
  std::shared_ptr<nn::SegModel> model = nn::build_seg_model(cfg.model);
  const LoadedTensors weights = read_weights_file(file.string(), "--model_path");  // .safetensors / .pdparams / .tar.gz
  check_tensors_match(weights, model->state_dict(), file.string());
  model->load_state_dict(weights.tensors, true);
  model->to(device);
  model->eval();
  return model;
}

}  // namespace engine::train
