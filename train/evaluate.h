// Evaluation and inference of a segmentation model (PaddleSeg core/val.py + core/infer.py):
// model in eval mode, batch 1 at the image's own size, labels kept at
// their original size; with aug_eval, for each scale s the image is resized bilinearly to
// (int(h*s + 0.5), int(w*s + 0.5)), each enabled flip is inferred and un-flipped, the raw logits are
// resized back to the input size and SUMMED (then divided by the number of passes); argmax gives the
// prediction. With is_slide (PaddleSeg's slide_inference), each of those passes runs the model on
// crop_size windows instead of the whole image: windows start every `stride` pixels, the last row and
// column of windows is moved back to end at the image's edge, and each pixel's logits are the mean
// over the windows that cover it (a stride larger than the crop that leaves pixels uncovered is an
// error, as in PaddleSeg); windows go through the model up to 8 at a time, as one batch. Areas are accumulated over the
// whole data set (seg_area_counts) and turned into the metrics of train/seg_metrics.h. Tested by
// tests/test_evaluate.cpp.
#pragma once
#include <atomic>
#include <cstdint>
#include <iosfwd>
#include <vector>

#include "data/dataset.h"
#include "engine/comm/communicator.h"
#include "engine/tensor.h"
#include "models/pp_liteseg.h"
#include "train/config.h"
#include "train/seg_metrics.h"

namespace engine::train {

struct InferOptions {
  bool aug = false;  // aug_eval / aug_pred
  std::vector<double> scales{1.0};
  bool flip_horizontal = false;
  bool flip_vertical = false;
  bool is_slide = false;
  std::vector<int> crop_size, stride;  // (w, h) each, positive; needed with is_slide
};

// The inference options a config's test_config (after the command line's flags) asks for.
InferOptions infer_options(const TestConfig& t);

// Logits [1, H, W, C] (f32) at the image's size for one normalised image [1, H, W, 3] (on the model's
// device). Runs without autograd; the model must be in eval mode.
Tensor infer_logits(nn::SegModel& model, const Tensor& image, const InferOptions& opt);

struct EvalResult {
  SegMetrics metrics;
  int64_t num_images = 0;
  std::vector<int64_t> intersect, pred, label;  // per-class areas over the data set
  bool cancelled = false;                       // stopped early by `cancel`: the metrics are not valid
};

// Evaluates `model` (switched to eval mode and back to the mode it was in) on every image of `val`.
// Data parallel (`comm` with world size W > 1): rank r infers images r, r + W, r + 2W, ... and the
// per-class areas of all ranks are summed exactly (integers gathered, no padding, so the metrics are
// those of one process; PaddleSeg's evaluation pads the last batch and counts some images twice);
// cancelled on any rank = cancelled on all.
// Prints PaddleSeg's "Start evaluating" and progress lines to `log`. When `cancel` becomes non-zero
// (a stop request), evaluation ends after the current image with `cancelled` set.
EvalResult evaluate(nn::SegModel& model, const data::SegDataset& val, Device device, const InferOptions& opt,
                    std::ostream& log, const std::atomic<int>* cancel = nullptr, Communicator* comm = nullptr);

// The model of `cfg` with the weights of `model_path` (a model.safetensors file, or a folder holding
// one such as output/best_model or output/iter_1000, or ema_model.safetensors as ema_best_model/
// does), on `device`, in eval mode. Names, shapes and
// the checksum are checked; any mismatch is an error naming the file and the tensor.
std::shared_ptr<nn::SegModel> load_trained_model(const TrainConfig& cfg, const std::string& model_path, Device device);

}  // namespace engine::train
