// Detection training configuration: a YAML file whose training keys are PaddleX's train() parameters
// (YOLOv3.train in PaddleX 1.x / 2.x), beside the model and the two data sets, loaded with the same
// generic YAML layer as the PaddleSeg configs (`_base_`, --opts, file/key in every error).
// Facts: PaddleX paddlex/cv/models/yolo_v3.py and base.py (defaults, schedule, the warmup
// constraint), paddlex/cv/datasets/ and paddlex/cv/transforms/ (data sets and transforms). Defaults are PaddleX 1.x
// YOLOv3's (the values the PaddleX docs explain the schedule with): train_batch_size 8, learning_rate 1/8000,
// warmup_steps 1000 from 0, 270 epochs, decay at epochs [213, 240] by 0.1, momentum 0.9, L2 5e-4 (not on batch-norm
// parameters and the head's biases), save_interval_epochs 20, log_interval_steps 2, early stop off with patience 5.
//
// Layout (every key optional unless marked; model and its type are required too, as config_task
// tells a detection config by model.type):
//   model: {type: YOLOv3, backbone: DarkNet53 | MobileNetV1, num_classes (default: the labels of the
//           train set), anchors, anchor_masks, ignore_threshold 0.7, label_smooth False,
//           nms_score_threshold 0.01, nms_topk 1000, nms_keep_topk 100, nms_iou_threshold 0.45}
//   train_dataset (required) / eval_dataset:
//          {type: VOCDetection | CocoDetection, data_dir, file_list + label_list (VOC) | ann_file (COCO),
//           allow_empty False, empty_ratio 1.0, transforms: [...], batch_transforms: [...]}
//   num_epochs, train_batch_size, learning_rate, warmup_steps, warmup_start_lr, lr_decay_epochs,
//   lr_decay_gamma, momentum, weight_decay, save_interval_epochs, log_interval_steps, early_stop,
//   early_stop_patience, pretrain_weights, resume_checkpoint, use_vdl, metric (VOC | COCO | auto),
//   save_dir, num_workers, seed.
// The training keys are also flags of engine-train with the same names (--num_epochs 20 ...), which
// override the file. Tested by tests/test_config.cpp.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "data/data_spec.h"
#include "engine/precision.h"
#include "models/det_model.h"
#include "train/config.h"
#include "train/grad_scaler.h"

namespace engine::train {

// One detection data set entry (`train_dataset:` / `eval_dataset:`), PaddleX's VOCDetection and
// CocoDetection constructor arguments. Paths as written (relative to the working directory).
struct DetDataConfig {
  std::string type = "VOCDetection";  // VOCDetection | CocoDetection
  std::string data_dir;
  std::string file_list, label_list;  // VOCDetection
  std::string ann_file;               // CocoDetection
  bool allow_empty = false;
  double empty_ratio = 1.0;
  std::vector<data::TransformSpec> transforms;        // per sample, in order
  std::vector<data::TransformSpec> batch_transforms;  // per batch (BatchRandomResize)
  std::string where = "train_dataset";
};

// The YOLOv3 model block plus its loss and post-processing arguments.
struct DetModelConfig {
  nn::DetModelSpec spec;  // type, backbone, num_classes (0 = from the train set's labels), anchors, masks
  double ignore_threshold = 0.7;
  bool label_smooth = false;
  double nms_score_threshold = 0.01;
  int64_t nms_topk = 1000;
  int64_t nms_keep_topk = 100;
  double nms_iou_threshold = 0.45;
};

// PaddleX train() parameters (names and meaning as PaddleX's).
struct DetTrainParams {
  int64_t num_epochs = 270;
  int64_t train_batch_size = 8;  // total over all devices
  double learning_rate = 1.0 / 8000;
  int64_t warmup_steps = 1000;
  double warmup_start_lr = 0.0;
  std::vector<int64_t> lr_decay_epochs{213, 240};
  double lr_decay_gamma = 0.1;
  double momentum = 0.9;
  double weight_decay = 5e-4;  // L2, not applied to batch-norm parameters and the head's biases
  int64_t save_interval_epochs = 20;
  int64_t log_interval_steps = 2;
  bool early_stop = false;
  int64_t early_stop_patience = 5;
  std::string pretrain_weights;   // empty = none (PaddleX's None)
  std::string resume_checkpoint;  // empty = none; cannot be combined with pretrain_weights
  bool use_vdl = false;
  std::string metric = "auto";  // VOC | COCO | auto (VOC for VOCDetection, COCO for CocoDetection)
  std::string save_dir = "output";
  int num_workers = 2;
  std::optional<uint64_t> seed;
  // The engine's keys `precision` and `amp_level` (engine/precision.h); the flags override them.
  Precision precision = Precision::FP32;
  AmpLevel amp_level = AmpLevel::O1;
  GradScalerConfig loss_scaling;  // `loss_scaling`: fp16's dynamic loss scaling (train/grad_scaler.h)
};

struct DetTrainConfig {
  std::string path;         // the config file as given
  std::string merged_yaml;  // after _base_, --opts and the flags
  DetModelConfig model;
  DetDataConfig train_dataset, eval_dataset;
  bool has_eval_dataset = false;
  DetTrainParams params;
};

// The training keys of DetTrainParams as engine-train flags: name (without "--") -> the value as
// written on the command line. Applied after --opts, each is parsed as YAML and checked like the key.
using DetFlagOverrides = std::vector<std::pair<std::string, std::string>>;

// Loads, merges, overrides and validates. Throws ConfigError ("<file>: <key.path>: <expected, found>").
// Checks that need the data set (the warmup constraint, num_classes from labels) are the trainer's.
DetTrainConfig load_det_train_config(const std::string& path, const std::vector<std::string>& opts = {},
                                     const DetFlagOverrides& flags = {});

// The names of DetTrainParams' keys (for the flag parser and the did-you-mean of unknown keys).
const std::vector<std::string>& det_train_param_keys();

// What engine-train should do with `path`: "detection" when its model.type (after `_base_`) is a
// detector (YOLOv3), else "segmentation". Throws ConfigError for unreadable YAML.
std::string config_task(const std::string& path);

}  // namespace engine::train
