#include "train/det_task.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <ostream>

#include "base/error.h"
#include "engine/autograd.h"
#include "engine/ops/detection.h"
#include "engine/ops/shape_ops.h"
#include "engine/precision.h"
#include "train/darknet_weights.h"
#include "train/det_metrics.h"
#include "train/download.h"
#include "train/safetensors.h"
#include "train/weights_file.h"

namespace fs = std::filesystem;

namespace engine::train {
namespace {

// Names of the parameters PaddleX gives L2Decay(0): every batch norm's weight and bias, and the
// biases of the head's output convolutions.
void collect_no_decay(const nn::Module& m, const std::string& prefix, std::set<std::string>& out) {
  const bool is_bn = m.type_name() == "BatchNorm2D";
  for (const auto& [name, child] : m.children()) collect_no_decay(*child, prefix + name + ".", out);
  if (is_bn) {
    out.insert(prefix + "weight");
    out.insert(prefix + "bias");
  }
}

// PaddleX 2.x's names for its published YOLOv3 weights (paddlex/cv/models/utils/pretrain_weights.py:
// imagenet_weights, coco_weights, pascalvoc_weights; det_pretrain_weights_dict says which exist).
std::string paddlex_weights_url(const std::string& backbone, const std::string& name) {
  static const std::map<std::string, std::string> urls = {
      {"DarkNet53/IMAGENET", "https://paddledet.bj.bcebos.com/models/pretrained/DarkNet53_pretrained.pdparams"},
      {"DarkNet53/COCO", "https://paddledet.bj.bcebos.com/models/yolov3_darknet53_270e_coco.pdparams"},
      {"MobileNetV1/IMAGENET", "https://paddledet.bj.bcebos.com/models/pretrained/MobileNetV1_pretrained.pdparams"},
      {"MobileNetV1/COCO", "https://paddledet.bj.bcebos.com/models/yolov3_mobilenet_v1_270e_coco.pdparams"},
      {"MobileNetV1/PascalVOC", "https://paddledet.bj.bcebos.com/models/yolov3_mobilenet_v1_270e_voc.pdparams"}};
  const auto it = urls.find(backbone + "/" + name);
  if (it == urls.end())
    throw ConfigError(
        "pretrain_weights: PaddleX publishes no " + name + " weights for YOLOv3_" + backbone +
        (backbone == "DarkNet53" ? " (it has COCO and IMAGENET)" : " (it has COCO, PascalVOC and IMAGENET)"));
  return it->second;
}

bool is_paddlex_weights_name(const std::string& s) { return s == "IMAGENET" || s == "COCO" || s == "PascalVOC"; }

void load_pretrain_weights(nn::DetModel& model, const std::string& backbone, const std::string& given,
                           std::ostream& log) {
  if (given.empty()) return;
  std::string path = is_paddlex_weights_name(given) ? paddlex_weights_url(backbone, given) : given;
  if (is_download_url(path)) path = download_to_cache(path, DownloadOptions{}, "pretrain_weights", log);
  if (is_darknet_weights(path)) {  // darknet53.conv.74 or yolov3.weights (train/darknet_weights.h; it logs the load)
    ENGINE_CHECK(backbone == "DarkNet53", "pretrain_weights: ", path, " is a darknet .weights file, which fits ",
                 "the DarkNet53 backbone; this model's backbone is ", backbone);
    load_darknet_weights(model, path, log);
    return;
  }
  log << log_prefix(LogStyle::PaddleX) << "Loading pretrained model from " << path << std::endl;
  const LoadedTensors file = read_weights_file(path, "pretrain_weights");  // .safetensors / .pdparams / .tar.gz
  // Keys matched by PaddleDetection's suffix rule, so a backbone-only file (DarkNet53_pretrained.pdparams:
  // "conv0.conv.weight") fills "backbone.conv0.conv.weight"; full-model files match key for key.
  const nn::StateDict entries = match_state_dict_by_suffix(model.state_dict(), file, &log);
  model.load_matching(entries, &log);  // "[SKIP]"-style lines for shape mismatches and the n/total summary
}

}  // namespace

data::DetDatasetSpec det_dataset_spec(const DetDataConfig& c) {
  data::DetDatasetSpec s;
  s.type = c.type;
  s.data_dir = c.data_dir;
  s.file_list = c.file_list;
  s.label_list = c.label_list;
  s.ann_file = c.ann_file;
  s.allow_empty = c.allow_empty;
  s.empty_ratio = c.empty_ratio;
  s.where = c.where;
  return s;
}

int64_t det_steps_per_epoch(int64_t num_samples, int64_t train_batch_size) { return num_samples / train_batch_size; }

void check_warmup_constraint(const DetTrainParams& p, int64_t steps_per_epoch, const std::string& config_path) {
  if (p.warmup_steps <= 0 || p.lr_decay_epochs.empty()) return;
  const int64_t a = p.lr_decay_epochs[0] * steps_per_epoch;
  if (p.warmup_steps <= a) return;
  const int64_t b = steps_per_epoch > 0 ? p.warmup_steps / steps_per_epoch : 0;
  throw ConfigError(config_path +
                    ": warmup_steps: In function train(), parameters must satisfy: warmup_steps <= "
                    "lr_decay_epochs[0] * num_steps_each_epoch (here " +
                    std::to_string(p.warmup_steps) + " > " + std::to_string(p.lr_decay_epochs[0]) + " * " +
                    std::to_string(steps_per_epoch) + " = " + std::to_string(a) +
                    "). Either `warmup_steps` be less than " + std::to_string(a) +
                    " or lr_decay_epochs[0] be greater than " + std::to_string(b) +
                    " must be satisfied, please modify 'warmup_steps' or 'lr_decay_epochs' in train function");
}

LRSchedule det_lr_schedule(const DetTrainParams& p, int64_t steps_per_epoch) {
  LRSpec s;
  s.type = "PiecewiseDecay";
  s.learning_rate = p.learning_rate;
  s.warmup_iters = p.warmup_steps;
  s.warmup_start_lr = p.warmup_start_lr;
  double v = p.learning_rate;
  s.values.push_back(v);
  for (int64_t e : p.lr_decay_epochs) {
    s.boundaries.push_back(e * steps_per_epoch);
    v *= p.lr_decay_gamma;
    s.values.push_back(v);
  }
  return LRSchedule(s, p.num_epochs * steps_per_epoch, WarmupMode::Absolute);
}

DetTask::DetTask(const DetTrainConfig& cfg, uint64_t seed, Device device, std::ostream& log) : cfg_(cfg) {
  train_set_ = std::make_shared<data::DetDataset>(det_dataset_spec(cfg.train_dataset));
  nn::DetModelSpec mspec = cfg.model.spec;
  if (mspec.num_classes == 0) mspec.num_classes = train_set_->num_classes();
  ENGINE_CHECK(mspec.num_classes == train_set_->num_classes(), cfg.path, ": model.num_classes: the model has ",
               mspec.num_classes, " classes but ", cfg.train_dataset.where, " has ", train_set_->num_classes(),
               " labels");
  mspec.seed = seed;
  model_ = nn::build_det_model(mspec);
  load_pretrain_weights(*model_, cfg.model.spec.backbone, cfg.params.pretrain_weights, log);
  model_->to(device);
  model_->train();
  collect_no_decay(*model_, "", no_decay_);
  for (auto& [name, t] : model_->named_parameters())
    if (name.rfind("yolo_head.yolo_output.", 0) == 0 && name.size() > 5 &&
        name.compare(name.size() - 5, 5, ".bias") == 0)
      no_decay_.insert(name);

  data::DetPipeline train_pipe =
      data::build_det_pipeline(cfg.train_dataset.transforms, cfg.train_dataset.batch_transforms);
  const int max_boxes = data::num_max_boxes(*train_set_, train_pipe.has_mixup());
  train_source_ = std::make_shared<data::DetBatchSource>(train_set_, std::move(train_pipe), max_boxes);
  if (cfg.has_eval_dataset) {
    eval_set_ = std::make_shared<data::DetDataset>(det_dataset_spec(cfg.eval_dataset));
    ENGINE_CHECK(eval_set_->labels() == train_set_->labels(), cfg.path, ": ", cfg.eval_dataset.where,
                 ": its labels differ from ", cfg.train_dataset.where,
                 "'s (the same classes in the same order are needed)");
    data::DetPipeline eval_pipe =
        data::build_det_pipeline(cfg.eval_dataset.transforms, cfg.eval_dataset.batch_transforms);
    eval_source_ =
        std::make_shared<data::DetBatchSource>(eval_set_, std::move(eval_pipe), std::max(1, eval_set_->max_objects()));
  }
  metric_ = cfg.params.metric;
  if (metric_ == "auto") metric_ = cfg.train_dataset.type == "CocoDetection" ? "COCO" : "VOC";

  loss_args_.anchors.clear();
  for (const auto& a : mspec.anchors) loss_args_.anchors.push_back({(float)a[0], (float)a[1]});
  loss_args_.anchor_masks = mspec.anchor_masks;
  loss_args_.downsample = model_->downsample_ratios();
  loss_args_.num_classes = (int)mspec.num_classes;
  loss_args_.ignore_thresh = (float)cfg.model.ignore_threshold;
  loss_args_.label_smooth = cfg.model.label_smooth;
}

std::string DetTask::describe() const {
  return "Model " + cfg_.model.spec.type + " (" + cfg_.model.spec.backbone + ", " +
         std::to_string(model_->num_classes()) + " classes): " + std::to_string(model_->num_trainable_parameters()) +
         " trainable parameters, " + std::to_string(no_decay_.size()) + " without L2 decay; metric " + metric_ +
         "; at most " + std::to_string(train_source_->max_boxes()) + " gt boxes per image";
}

TaskLoss DetTask::loss(const data::Batch& batch, Device device) {
  const Tensor images = batch.at("images").to(device);
  const std::vector<Tensor> heads = model_->forward(images);
  const YoloLossOutput l = yolov3_loss(heads, batch.at("gt_box").to(device), batch.at("gt_class").to(device),
                                       batch.at("gt_score").to(device), loss_args_);
  TaskLoss out;
  out.total = l.loss;
  out.terms = {{"loss_xy", l.loss_xy}, {"loss_wh", l.loss_wh}, {"loss_obj", l.loss_obj}, {"loss_cls", l.loss_cls}};
  return out;
}

TaskEval DetTask::evaluate(Device device, std::ostream& log, const std::atomic<int>* cancel, Communicator& comm) {
  if (!comm.is_root()) return TaskEval{};  // rank 0 evaluates the whole set; the loop shares its result
  const bool was_training = model_->training();
  model_->eval();
  NoGradGuard no_grad;
  const int64_t n = eval_source_->size();
  const int num_classes = (int)model_->num_classes();
  log << log_prefix(LogStyle::PaddleX) << "Start to evaluate(total_samples=" << n << ", total_steps=" << n << ")..."
      << std::endl;
  VocMap voc(num_classes, 0.5, /*eleven_point=*/true, /*evaluate_difficult=*/false, /*normalized=*/false);
  CocoEval coco(num_classes);
  const auto& anchors = model_->anchors();
  const auto& masks = model_->anchor_masks();
  const std::vector<int> strides = model_->downsample_ratios();
  MultiClassNmsArgs nms_args;
  nms_args.score_threshold = (float)cfg_.model.nms_score_threshold;
  nms_args.nms_top_k = cfg_.model.nms_topk;
  nms_args.nms_threshold = (float)cfg_.model.nms_iou_threshold;
  nms_args.keep_top_k = cfg_.model.nms_keep_topk;
  TaskEval result;
  for (int64_t i = 0; i < n; ++i) {
    if (cancel && cancel->load() != 0) {
      if (was_training) model_->train();
      log << "Evaluation stopped after " << i << " of " << n << " images" << std::endl;
      result.cancelled = true;
      return result;
    }
    const std::vector<data::DetSample> samples = eval_source_->samples({i}, 0, i, i, 0);
    data::Batch b;
    data::collate_det(samples, 1, b);
    const std::vector<Tensor> heads = model_->forward(b.at("images").to(device));
    Tensor img_size = Tensor::empty({1, 2}, DType::I32);
    img_size.data<int32_t>()[0] = samples[0].orig_h;
    img_size.data<int32_t>()[1] = samples[0].orig_w;
    img_size = img_size.to(device);
    std::vector<Tensor> boxes, scores;
    for (size_t s = 0; s < heads.size(); ++s) {
      YoloBoxArgs a;
      for (int idx : masks[s]) a.anchors.insert(a.anchors.end(), {anchors[(size_t)idx][0], anchors[(size_t)idx][1]});
      a.class_num = num_classes;
      a.downsample_ratio = strides[s];
      const YoloBoxResult r = yolo_box(heads[s], img_size, a);
      boxes.push_back(r.boxes);
      scores.push_back(r.scores);
    }
    const MultiClassNmsResult nms = multiclass_nms(concat(boxes, 1), concat(scores, 1), nms_args);
    const std::vector<float> rows = nms.out.to(Device::cpu()).to_vector();
    const data::DetRecord& rec = eval_set_->record(i);
    if (metric_ == "VOC") {
      std::vector<VocDetection> dets;
      for (size_t r = 0; r + 6 <= rows.size(); r += 6)
        dets.push_back({(int)rows[r], rows[r + 1], {rows[r + 2], rows[r + 3], rows[r + 4], rows[r + 5]}});
      std::vector<VocGroundTruth> gts;
      for (size_t k = 0; k < rec.boxes.size(); ++k)
        gts.push_back({rec.classes[k],
                       {rec.boxes[k][0], rec.boxes[k][1], rec.boxes[k][2], rec.boxes[k][3]},
                       rec.difficult.empty() ? false : rec.difficult[k] != 0});
      voc.update(dets, gts);
    } else {
      std::vector<CocoDetection> dets;
      for (size_t r = 0; r + 6 <= rows.size(); r += 6)
        dets.push_back(
            {(int)rows[r], rows[r + 1], coco_box_from_corners({rows[r + 2], rows[r + 3], rows[r + 4], rows[r + 5]})});
      // The annotations as COCOeval sees them (for a VOC set: PaddleX's VOC->COCO conversion).
      std::vector<CocoGroundTruth> gts;
      for (const data::CocoGtBox& g : rec.coco_gts)
        gts.push_back({g.category, {g.x, g.y, g.w, g.h}, g.area, g.iscrowd});
      coco.update(eval_set_->type() == "CocoDetection" ? rec.image_id : i, dets, gts);
    }
  }
  if (was_training) model_->train();
  if (metric_ == "VOC") {
    result.key_metric = voc.map_percent();
    result.scalars = {{"bbox_map", result.key_metric}};
    result.record = {{"bbox_map", result.key_metric}, {"class_ap", voc.class_ap()}};
  } else {
    const CocoStats st = coco.summarize();
    result.key_metric = st[0];
    result.scalars = {{"bbox_mmap", st[0]}};
    result.record = {{"bbox_mmap", st[0]}, {"coco_stats", std::vector<double>(st.begin(), st.end())}};
    std::istringstream lines(format_coco_summary(st));
    for (std::string l; std::getline(lines, l);) result.log_lines.push_back(l);
  }
  return result;
}

TrainSummary run_det_training(const DetTrainConfig& cfg, const TrainOptions& run_opt, std::ostream& log) {
  const DetTrainParams& p = cfg.params;
  TrainOptions opt = run_opt;
  opt.save_dir = p.save_dir;
  opt.num_workers = p.num_workers;
  opt.use_vdl = p.use_vdl;
  opt.resume_model = p.resume_checkpoint;
  opt.seed_given = p.seed.has_value();
  opt.seed = p.seed.value_or(0);
  opt.do_eval = cfg.has_eval_dataset;
  const ResumePoint resume = open_resume_point(p.resume_checkpoint, "--resume_checkpoint");
  const uint64_t seed = resolve_seed(resume, opt, LogStyle::PaddleX, log);
  DetTask task(cfg, seed, opt.device, log);
  const int64_t n = task.train_set().size();
  if (n <= p.train_batch_size)  // PaddleX 2.x's check (strictly larger)
    throw ConfigError(cfg.path + ": train_batch_size: The volume of dataset(" + std::to_string(n) +
                      ") must be larger than batch size(" + std::to_string(p.train_batch_size) + ").");
  // PaddleX's train_batch_size is the total over the devices: each rank takes its share.
  const int world = opt.comm ? opt.comm->world_size() : 1;
  if (p.train_batch_size % world != 0)
    throw ConfigError(cfg.path + ": train_batch_size: " + std::to_string(p.train_batch_size) +
                      " is the total over all devices and must be divisible by their number (" + std::to_string(world) +
                      ")");
  // With several ranks the loader pads the epoch to a multiple of the world size (Paddle's
  // DistributedBatchSampler), which can add a step; one rank gives PaddleX's n // batch.
  const int64_t steps = det_steps_per_epoch((n + world - 1) / world * world, p.train_batch_size);
  check_warmup_constraint(p, steps, cfg.path);
  const LRSchedule schedule = det_lr_schedule(p, steps);
  LoopSpec spec;
  spec.total_iters = p.num_epochs * steps;
  spec.batch_size = p.train_batch_size / world;
  spec.schedule = &schedule;
  spec.momentum = p.momentum;
  spec.weight_decay = p.weight_decay;
  spec.by_epoch = true;
  spec.save_interval = p.save_interval_epochs;
  spec.keep_checkpoint_max = 0;  // PaddleX keeps every epoch_N/
  spec.log_every = p.log_interval_steps;
  spec.log_style = LogStyle::PaddleX;
  spec.early_stop = p.early_stop;
  spec.early_stop_patience = p.early_stop_patience;
  spec.resume_flag = "--resume_checkpoint";
  spec.fresh_start_hint = "--pretrain_weights ";
  if (autocast_precision() == Precision::FP16) spec.loss_scaling = p.loss_scaling;
  log << log_prefix(LogStyle::PaddleX) << "num_steps_each_epoch " << steps << " (" << n << " samples // "
      << p.train_batch_size << "), " << spec.total_iters << " steps in " << p.num_epochs << " epochs; lr "
      << schedule.describe() << std::endl;
  return run_task(task, spec, opt, seed, resume, log);
}

}  // namespace engine::train
