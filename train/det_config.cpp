// Detection (PaddleX) YAML configs: the schema of det_config.h on top of the generic YAML layer of
// yaml_tree.h. Order of application: the file and its `_base_` files, then --opts, then the flags
// (each parsed as YAML, origin "--<name>"); then validation into DetTrainConfig.
// Semantics: PaddleX YOLOv3 / train() (PaddleX 1.x paddlex/cv/models/yolo_v3.py defaults, base.py's
// pretrain_weights and resume_checkpoint; PX2 paddlex/cv/datasets/voc.py, coco.py for the data set arguments). Choices:
//   - PaddleX's None: YAML null or the unquoted word None (and, for pretrain_weights and
//     resume_checkpoint, an empty string) means "not set"; metric None is auto.
//   - pretrain_weights keeps PaddleX's names 'IMAGENET' / 'COCO' / 'PascalVOC' as written (resolving them is the
//     trainer's); metric is compared case-insensitively as PaddleX's metric.lower() and stored VOC/COCO.
//   - empty_ratio: any number, as PaddleX (values in [0, 1) sample the empty images, others keep all).
//   - Transform entries: only the shape is checked here (a mapping with a string `type`); names and
//     values are data/det_transforms'. Numbers become 1-element lists, booleans 0/1, lists of numbers
//     stay lists, strings (interp: CUBIC) go to str_args, null / None becomes an empty list (PaddleX's
//     None, e.g. RandomCrop aspect_ratio). Lists of lists are refused (target_sizes are squares).
//   - BatchRandomResize listed in `transforms` (PaddleX's Compose allows it) moves to
//     batch_transforms, ahead of the entries of `batch_transforms`; it keeps its `where`. PaddleX runs
//     batch transforms after all per-sample ones, so the order of execution is unchanged.
//   - A flag value for lr_decay_epochs may be "30,40" or "[30, 40]".
// Tested by tests/test_config.cpp (defaults, --opts, flags, _base_, each bad value, the configs/yolov3_*.yml).
#include "train/det_config.h"

#include <algorithm>
#include <cctype>

#include "train/precision_config.h"
#include "train/yaml_tree.h"

namespace engine::train {

const std::vector<std::string>& det_train_param_keys() {
  // clang-format off
  static const std::vector<std::string> keys = {
      "num_epochs", "train_batch_size", "learning_rate", "warmup_steps", "warmup_start_lr", "lr_decay_epochs",
      "lr_decay_gamma", "momentum", "weight_decay", "save_interval_epochs", "log_interval_steps", "early_stop",
      "early_stop_patience", "pretrain_weights", "resume_checkpoint", "use_vdl", "metric", "save_dir",
      "num_workers", "seed"};
  // clang-format on
  return keys;
}

namespace {

const std::vector<std::string> kDetectors = {"YOLOv3"};
const std::vector<std::string> kBackbones = {"DarkNet53", "MobileNetV1"};
const std::vector<std::string> kBatchTransforms = {"BatchRandomResize"};

const std::vector<std::string> kModelKeys = {
    "type",         "backbone",         "num_classes",      "anchors",
    "anchor_masks", "ignore_threshold", "label_smooth",     "nms_score_threshold",
    "nms_topk",     "nms_keep_topk",    "nms_iou_threshold"};
const std::vector<std::string> kVocKeys = {"type",        "data_dir",    "file_list",  "label_list",
                                           "allow_empty", "empty_ratio", "transforms", "batch_transforms"};
const std::vector<std::string> kCocoKeys = {"type",        "data_dir",   "ann_file",        "allow_empty",
                                            "empty_ratio", "transforms", "batch_transforms"};

// PaddleX's None in YAML: null, or the word None (which PyYAML reads as a string).
bool is_none(const ConfigValue& v) {
  return v.kind == ConfigValue::Kind::Null || (v.kind == ConfigValue::Kind::Scalar && !v.quoted && v.text == "None");
}

std::string lower(std::string s) {
  for (char& c : s) c = (char)std::tolower((unsigned char)c);
  return s;
}

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

// A path-like key where None, null and '' mean "not set".
std::string optional_path(const ConfigMap& m, const std::string& key) {
  const ConfigValue* c = m.node().find(key);
  if (!c || is_none(*c)) return "";
  return *m.string(key);
}

std::string required_path(const ConfigMap& m, const std::string& key, const std::string& why) {
  const auto s = m.string(key);
  if (!s) m.missing(key, why);
  if (s->empty()) m.bad(key, "expected a path, got ''");
  return *s;
}

// ------------------------------------------------------------------------------------- model

// anchors: [[w, h], ...], positive ints.
std::vector<std::array<int, 2>> parse_anchors(const ConfigMap& m) {
  const ConfigValue* a = m.value("anchors");
  std::vector<std::array<int, 2>> out;
  bool ok = a->kind == ConfigValue::Kind::Seq && !a->items.empty();
  for (size_t i = 0; ok && i < a->items.size(); ++i) {
    const ConfigValue& p = a->items[i];
    ok = p.kind == ConfigValue::Kind::Seq && p.items.size() == 2;
    std::array<int, 2> wh{};
    for (size_t k = 0; ok && k < 2; ++k) {
      int64_t x = 0;
      ok = p.items[k].kind == ConfigValue::Kind::Scalar && !p.items[k].quoted && parse_yaml_int(p.items[k].text, x) &&
           x > 0 && x < (1 << 30);
      wh[k] = (int)x;
    }
    out.push_back(wh);
  }
  if (!ok)
    config_fail(a->file, m.at("anchors"), "expected a list of [width, height] pairs of positive integers, got ",
                describe(*a));
  return out;
}

// anchor_masks: [[i, ...], ...], one group per output (coarse to fine).
std::vector<std::vector<int>> parse_anchor_masks(const ConfigMap& m) {
  const ConfigValue* a = m.value("anchor_masks");
  std::vector<std::vector<int>> out;
  bool ok = a->kind == ConfigValue::Kind::Seq;
  for (size_t i = 0; ok && i < a->items.size(); ++i) {
    const ConfigValue& g = a->items[i];
    ok = g.kind == ConfigValue::Kind::Seq;
    std::vector<int> group;
    for (size_t k = 0; ok && k < g.items.size(); ++k) {
      int64_t x = 0;
      ok = g.items[k].kind == ConfigValue::Kind::Scalar && !g.items[k].quoted && parse_yaml_int(g.items[k].text, x) &&
           x >= 0 && x < (1 << 30);
      group.push_back((int)x);
    }
    out.push_back(group);
  }
  if (!ok) config_fail(a->file, m.at("anchor_masks"), "expected a list of lists of anchor indices, got ", describe(*a));
  return out;
}

DetModelConfig parse_det_model(const ConfigValue& v) {
  const ConfigMap m(v, "model");
  DetModelConfig c;
  c.spec.where = "model";
  const auto type = m.string("type");
  if (!type) m.missing("type", " (YOLOv3)");
  if (!contains(kDetectors, *type))
    m.bad("type", "unknown detection model type '", *type, "' (supported: ", list_str(kDetectors), ")");
  c.spec.type = *type;
  m.check_keys(kModelKeys, " for " + *type);
  c.spec.backbone = m.string("backbone").value_or(c.spec.backbone);
  if (!contains(kBackbones, c.spec.backbone))
    m.bad("backbone", "unknown backbone '", c.spec.backbone, "'", did_you_mean(c.spec.backbone, kBackbones),
          " (supported: ", list_str(kBackbones), ")");
  // 0 or absent: the number of labels of the train set (PaddleX passes len(train_dataset.labels)).
  c.spec.num_classes = m.integer("num_classes").value_or(0);
  if (c.spec.num_classes < 0 || c.spec.num_classes > (1 << 20))
    m.bad("num_classes", "expected a positive number of classes (or 0 = from the train set's labels), got ",
          c.spec.num_classes);

  const bool own_anchors = m.has("anchors"), own_masks = m.has("anchor_masks");
  if (own_anchors) c.spec.anchors = parse_anchors(m);
  if (own_masks) c.spec.anchor_masks = parse_anchor_masks(m);
  // The masks must index the anchors (models/yolov3.cpp checks the same; here the message names the file).
  const std::string masks_key = own_masks ? "anchor_masks" : "anchors";
  const std::string masks_desc = own_masks ? describe(*m.value("anchor_masks")) : "the default masks";
  if (c.spec.anchor_masks.size() != 3)
    m.bad(masks_key, "expected 3 groups of anchor indices (one per output, strides 32, 16, 8), got ",
          c.spec.anchor_masks.size());
  for (const auto& group : c.spec.anchor_masks) {
    if (group.empty()) m.bad(masks_key, "every group of anchor_masks needs an anchor, got ", masks_desc);
    for (int i : group)
      if ((size_t)i >= c.spec.anchors.size())
        m.bad(masks_key, "anchor index ", i, " of anchor_masks is out of range for ", c.spec.anchors.size(),
              " anchors (", masks_desc, ")");
  }

  c.ignore_threshold = m.number("ignore_threshold").value_or(c.ignore_threshold);
  if (c.ignore_threshold <= 0 || c.ignore_threshold > 1)
    m.bad("ignore_threshold", "expected an IoU in (0, 1], got ", c.ignore_threshold);
  c.label_smooth = m.boolean("label_smooth").value_or(c.label_smooth);
  c.nms_score_threshold = m.number("nms_score_threshold").value_or(c.nms_score_threshold);
  if (c.nms_score_threshold < 0 || c.nms_score_threshold > 1)
    m.bad("nms_score_threshold", "expected a score in [0, 1], got ", c.nms_score_threshold);
  c.nms_topk = m.integer("nms_topk").value_or(c.nms_topk);
  if (c.nms_topk < 1) m.bad("nms_topk", "expected a positive integer, got ", c.nms_topk);
  c.nms_keep_topk = m.integer("nms_keep_topk").value_or(c.nms_keep_topk);
  if (c.nms_keep_topk < 1) m.bad("nms_keep_topk", "expected a positive integer, got ", c.nms_keep_topk);
  c.nms_iou_threshold = m.number("nms_iou_threshold").value_or(c.nms_iou_threshold);
  if (c.nms_iou_threshold <= 0 || c.nms_iou_threshold > 1)
    m.bad("nms_iou_threshold", "expected an IoU in (0, 1], got ", c.nms_iou_threshold);
  return c;
}

// --------------------------------------------------------------------------------- data sets

data::TransformSpec parse_det_transform(const ConfigValue& v, const std::string& path) {
  const ConfigMap m(v, path);
  data::TransformSpec t;
  t.where = path;
  const auto type = m.string("type");
  if (!type) m.missing("type", " (every transform names its type, e.g. {type: Normalize})");
  if (type->empty()) m.bad("type", "expected a transform name, got ''");
  t.type = *type;
  for (const auto& [key, c] : v.entries) {
    if (key == "type") continue;
    double d;
    bool b;
    if (is_none(c)) {
      t.args[key] = {};
    } else if (is_bool(c)) {
      parse_yaml_bool(c.text, b);
      t.args[key] = {b ? 1.0 : 0.0};
    } else if (is_number(c)) {
      parse_yaml_float(c.text, d);
      t.args[key] = {d};
    } else if (c.kind == ConfigValue::Kind::Scalar) {
      t.str_args[key] = c.text;
    } else if (c.kind == ConfigValue::Kind::Seq) {
      std::vector<double> vals;
      for (const ConfigValue& e : c.items) {
        if (is_bool(e)) {
          parse_yaml_bool(e.text, b);
          vals.push_back(b ? 1.0 : 0.0);
        } else if (is_number(e)) {
          parse_yaml_float(e.text, d);
          vals.push_back(d);
        } else if (e.kind == ConfigValue::Kind::Seq) {
          config_fail(c.file, key_path(path, key), "lists of lists are not supported (sizes are squares, e.g. ",
                      "target_sizes: [320, 352]), got ", describe(c));
        } else {
          config_fail(c.file, key_path(path, key), "expected a list of numbers, got ", describe(c));
        }
      }
      t.args[key] = vals;
    } else {
      config_fail(c.file, key_path(path, key), "expected a number, a boolean, a string or a list of numbers, got ",
                  describe(c));
    }
  }
  return t;
}

const ConfigValue* transform_list(const ConfigMap& m, const std::string& key) {
  const ConfigValue* tr = m.value(key);
  if (tr && tr->kind != ConfigValue::Kind::Seq)
    config_fail(tr->file, m.at(key), "expected a list of transforms, got ", describe(*tr));
  return tr;
}

DetDataConfig parse_det_dataset(const ConfigValue& v, const std::string& path) {
  const ConfigMap m(v, path);
  DetDataConfig d;
  d.where = path;
  d.type = m.string("type").value_or(d.type);
  if (d.type == "VOCDetection") {
    m.check_keys(kVocKeys, " for VOCDetection");
    const std::string why = " (VOCDetection needs data_dir, file_list and label_list)";
    d.data_dir = required_path(m, "data_dir", why);
    d.file_list = required_path(m, "file_list", why);
    d.label_list = required_path(m, "label_list", why);
  } else if (d.type == "CocoDetection") {
    m.check_keys(kCocoKeys, " for CocoDetection");
    const std::string why = " (CocoDetection needs data_dir and ann_file)";
    d.data_dir = required_path(m, "data_dir", why);
    d.ann_file = required_path(m, "ann_file", why);
  } else {
    m.bad("type", "unknown detection dataset type '", d.type, "' (supported: VOCDetection, CocoDetection)");
  }
  d.allow_empty = m.boolean("allow_empty").value_or(d.allow_empty);
  d.empty_ratio = m.number("empty_ratio").value_or(d.empty_ratio);

  if (const ConfigValue* tr = transform_list(m, "transforms")) {
    for (size_t i = 0; i < tr->items.size(); ++i) {
      data::TransformSpec t = parse_det_transform(tr->items[i], index_path(m.at("transforms"), i));
      (contains(kBatchTransforms, t.type) ? d.batch_transforms : d.transforms).push_back(std::move(t));
    }
  }
  if (const ConfigValue* tr = transform_list(m, "batch_transforms")) {
    for (size_t i = 0; i < tr->items.size(); ++i) {
      const std::string p = index_path(m.at("batch_transforms"), i);
      data::TransformSpec t = parse_det_transform(tr->items[i], p);
      if (!contains(kBatchTransforms, t.type))
        config_fail(tr->items[i].file, key_path(p, "type"), "'", t.type,
                    "' is not a batch transform (batch: ", list_str(kBatchTransforms),
                    "; per-sample transforms go in transforms)");
      d.batch_transforms.push_back(std::move(t));
    }
  }
  return d;
}

// ------------------------------------------------------------------------------ train params

DetTrainParams parse_params(const ConfigMap& top) {
  DetTrainParams p;
  auto at_least = [&](const char* key, int64_t& dst, int64_t min, const char* expected) {
    dst = top.integer(key).value_or(dst);
    if (dst < min) top.bad(key, "expected ", expected, ", got ", dst);
  };
  at_least("num_epochs", p.num_epochs, 1, "a positive integer");
  at_least("train_batch_size", p.train_batch_size, 1, "a positive integer");
  at_least("warmup_steps", p.warmup_steps, 0, "an integer >= 0");
  at_least("save_interval_epochs", p.save_interval_epochs, 1, "a positive integer");
  at_least("log_interval_steps", p.log_interval_steps, 1, "a positive integer");
  at_least("early_stop_patience", p.early_stop_patience, 1, "a positive integer");

  p.learning_rate = top.number("learning_rate").value_or(p.learning_rate);
  if (!(p.learning_rate > 0)) top.bad("learning_rate", "expected a learning rate > 0, got ", p.learning_rate);
  p.warmup_start_lr = top.number("warmup_start_lr").value_or(p.warmup_start_lr);
  if (p.warmup_start_lr < 0) top.bad("warmup_start_lr", "expected a learning rate >= 0, got ", p.warmup_start_lr);
  if (auto e = top.integers("lr_decay_epochs")) {
    for (size_t i = 0; i < e->size(); ++i)
      if ((*e)[i] < 1 || (i > 0 && (*e)[i] <= (*e)[i - 1]))
        top.bad("lr_decay_epochs", "expected strictly increasing positive epochs, got ",
                describe(*top.value("lr_decay_epochs")));
    p.lr_decay_epochs = *e;
  }
  p.lr_decay_gamma = top.number("lr_decay_gamma").value_or(p.lr_decay_gamma);
  if (!(p.lr_decay_gamma > 0)) top.bad("lr_decay_gamma", "expected a factor > 0, got ", p.lr_decay_gamma);
  p.momentum = top.number("momentum").value_or(p.momentum);
  if (p.momentum < 0 || p.momentum >= 1) top.bad("momentum", "expected a value in [0, 1), got ", p.momentum);
  p.weight_decay = top.number("weight_decay").value_or(p.weight_decay);
  if (p.weight_decay < 0) top.bad("weight_decay", "expected a number >= 0, got ", p.weight_decay);

  p.early_stop = top.boolean("early_stop").value_or(p.early_stop);
  p.use_vdl = top.boolean("use_vdl").value_or(p.use_vdl);

  p.pretrain_weights = optional_path(top, "pretrain_weights");
  p.resume_checkpoint = optional_path(top, "resume_checkpoint");
  if (!p.pretrain_weights.empty() && !p.resume_checkpoint.empty())
    top.bad("resume_checkpoint",
            "pretrain_weights and resume_checkpoint cannot be set simultaneously. "
            "(pretrain_weights is '",
            p.pretrain_weights, "' from ", top.value("pretrain_weights")->file, "; set one of them to None)");

  // PaddleX: metric None = by the eval set's type; else metric.lower() in {voc, coco}.
  const ConfigValue* mv = top.node().find("metric");
  if (mv && !is_none(*mv)) {
    const std::string metric = *top.string("metric");
    const std::string l = lower(metric);
    if (l == "voc" || l == "coco")
      p.metric = l == "voc" ? "VOC" : "COCO";
    else if (l == "auto")
      p.metric = "auto";
    else
      top.bad("metric", "expected VOC, COCO or auto, got '", metric, "'");
  }

  const PrecisionKeys precision = parse_precision_keys(top);
  p.precision = precision.precision;
  p.amp_level = precision.amp_level;
  p.loss_scaling = precision.loss_scaling;
  p.save_dir = top.string("save_dir").value_or(p.save_dir);
  if (p.save_dir.empty()) top.bad("save_dir", "expected a folder, got ''");
  const int64_t workers = top.integer("num_workers").value_or(p.num_workers);
  if (workers < 0 || workers > 1024) top.bad("num_workers", "expected an integer in [0, 1024], got ", workers);
  p.num_workers = (int)workers;
  if (auto s = top.integer("seed")) {
    if (*s < 0) top.bad("seed", "expected an integer >= 0, got ", *s);
    p.seed = (uint64_t)*s;
  }
  return p;
}

}  // namespace

DetTrainConfig load_det_train_config(const std::string& path, const std::vector<std::string>& opts,
                                     const DetFlagOverrides& flags) {
  const std::vector<std::string>& keys = det_train_param_keys();
  ConfigValue root = load_config_file(path);
  apply_opts(root, opts);
  for (const auto& [name, text] : flags) {
    if (!contains(keys, name))
      throw ConfigError("--" + name + ": unknown detection flag" + did_you_mean(name, keys) +
                        "; the detection flags are PaddleX's train() parameters: " + list_str(keys));
    // A list flag also takes "30,40" (no brackets, as typed on a command line).
    std::string t = text;
    if (name == "lr_decay_epochs" && (t.empty() || t.front() != '[')) t = "[" + t + "]";
    apply_override(root, name, parse_yaml_text(t, "--" + name, name), "--" + name);
  }
  strip_inherited(root);

  DetTrainConfig cfg;
  cfg.path = path;
  cfg.merged_yaml = emit_yaml(root);

  const ConfigMap top(root, "");
  std::vector<std::string> allowed = {"model", "train_dataset", "eval_dataset"};
  allowed.insert(allowed.end(), precision_key_names().begin(), precision_key_names().end());
  allowed.insert(allowed.end(), keys.begin(), keys.end());
  top.check_keys(allowed);

  const ConfigValue* model = top.value("model");
  if (!model) top.missing("model", " (e.g. {type: YOLOv3, backbone: DarkNet53})");
  cfg.model = parse_det_model(*model);
  const ConfigValue* train = top.value("train_dataset");
  if (!train) top.missing("train_dataset", " (needed for training, e.g. {type: VOCDetection, data_dir: ...})");
  cfg.train_dataset = parse_det_dataset(*train, "train_dataset");
  if (const ConfigValue* eval = top.value("eval_dataset")) {
    cfg.eval_dataset = parse_det_dataset(*eval, "eval_dataset");
    cfg.has_eval_dataset = true;
  }
  cfg.params = parse_params(top);
  return cfg;
}

std::string config_task(const std::string& path) {
  const ConfigValue root = load_config_file(path);
  const ConfigValue* model = root.find("model");
  const ConfigValue* type = model && model->is_map() ? model->find("type") : nullptr;
  if (type && type->kind == ConfigValue::Kind::Scalar && contains(kDetectors, type->text)) return "detection";
  return "segmentation";
}

}  // namespace engine::train
