// PaddleSeg YAML configs: the PaddleSeg schema on top of the generic YAML layer of yaml_tree.h
// (`_base_` / `_inherited_` merging, --opts, typed getters): the typed-flag overrides, then validation
// into the typed specs of config.h.
// Semantics: PaddleSeg paddleseg/cvlibs/config.py (merge), builder.py (optimizer, LR scheduler),
// config_checker.py (loss sugar, ignore_index and num_classes injection),
// paddleseg/optimizers/optimizer.py. Tested by tests/test_config.cpp.
#include "train/config.h"

#include <algorithm>
#include <string>
#include <vector>

#include "train/precision_config.h"
#include "train/yaml_tree.h"

namespace engine::train {
namespace {

// ----------------------------------------------------------------------------- sections

const std::vector<std::string> kTopKeys = {
    "batch_size", "iters",       "train_dataset", "val_dataset",        "optimizer", "lr_scheduler", "loss",
    "model",      "test_config", "export",        "to_static_training", "precision", "amp_level",    "loss_scaling"};

// Transforms whose argument names and shapes PaddleSeg's transforms.py defines (§4.4); other types
// pass through and data/ accepts or rejects them.
struct KnownTransform {
  const char* type;
  std::vector<std::string> args;
};
const std::vector<KnownTransform> kKnownTransforms = {
    {"ResizeStepScaling", {"min_scale_factor", "max_scale_factor", "scale_step_size"}},
    {"RandomPaddingCrop",
     {"crop_size", "im_padding_value", "label_padding_value", "category_max_ratio", "ignore_index", "loop_times"}},
    {"RandomHorizontalFlip", {"prob"}},
    {"RandomVerticalFlip", {"prob"}},
    {"RandomDistort",
     {"brightness_range", "brightness_prob", "contrast_range", "contrast_prob", "saturation_range", "saturation_prob",
      "hue_range", "hue_prob", "sharpness_range", "sharpness_prob"}},
    {"Normalize", {"mean", "std"}},
};

data::TransformSpec parse_transform(const ConfigValue& v, const std::string& path) {
  const ConfigMap m(v, path);
  data::TransformSpec t;
  t.where = path;
  const auto type = m.string("type");
  if (!type) m.missing("type", " (every transform names its type)");
  t.type = *type;
  const KnownTransform* known = nullptr;
  for (const auto& k : kKnownTransforms)
    if (t.type == k.type) known = &k;
  if (known) {
    std::vector<std::string> allowed = known->args;
    allowed.insert(allowed.begin(), "type");
    m.check_keys(allowed, " for " + t.type);
  }
  for (const auto& [key, c] : v.entries) {
    if (key == "type") continue;
    std::vector<double> vals;
    bool b;
    double d;
    bool ok = true;
    if (c.kind == ConfigValue::Kind::Scalar && !c.quoted && parse_yaml_bool(c.text, b)) {
      vals.push_back(b ? 1 : 0);
    } else if (is_number(c)) {
      parse_yaml_float(c.text, d);
      vals.push_back(d);
    } else if (c.kind == ConfigValue::Kind::Seq) {
      for (const ConfigValue& e : c.items) {
        if (is_number(e)) {
          parse_yaml_float(e.text, d);
          vals.push_back(d);
        } else if (e.kind == ConfigValue::Kind::Scalar && !e.quoted && parse_yaml_bool(e.text, b)) {
          vals.push_back(b ? 1 : 0);
        } else {
          ok = false;
        }
      }
    } else {
      ok = false;
    }
    if (!ok)
      config_fail(c.file, key_path(path, key), "expected a number, a boolean or a list of numbers, got ", describe(c));
    t.args[key] = vals;
  }
  // Shapes and ranges of the arguments whose semantics are fixed (§4.4).
  if (t.type == "RandomPaddingCrop") {
    if (!m.has("crop_size")) m.missing("crop_size", " (RandomPaddingCrop needs [width, height])");
    m.positive_ints("crop_size", 2);
  }
  if (t.type == "ResizeStepScaling") {
    for (const char* k : {"min_scale_factor", "max_scale_factor", "scale_step_size"})
      if (auto x = m.number(k); x && *x < 0) m.bad(k, "expected a number >= 0, got ", *x);
    const double lo = m.number("min_scale_factor").value_or(0.75), hi = m.number("max_scale_factor").value_or(1.25);
    if (lo > hi) m.bad("min_scale_factor", "min_scale_factor ", lo, " is larger than max_scale_factor ", hi);
  }
  if (t.type == "RandomHorizontalFlip" || t.type == "RandomVerticalFlip") {
    if (auto p = m.number("prob"); p && (*p < 0 || *p > 1)) m.bad("prob", "expected a probability in [0, 1], got ", *p);
  }
  if (t.type == "RandomDistort") {
    for (const char* k : {"brightness_prob", "contrast_prob", "saturation_prob", "hue_prob", "sharpness_prob"})
      if (auto p = m.number(k); p && (*p < 0 || *p > 1)) m.bad(k, "expected a probability in [0, 1], got ", *p);
    for (const char* k : {"brightness_range", "contrast_range", "saturation_range", "hue_range", "sharpness_range"})
      if (auto x = m.number(k); x && *x < 0) m.bad(k, "expected a number >= 0, got ", *x);
  }
  if (t.type == "Normalize") {
    for (const char* k : {"mean", "std"}) m.numbers(k);
    if (auto s = m.numbers("std"))
      for (double x : *s)
        if (x == 0) m.bad("std", "expected non-zero values, got ", describe(*m.value("std")));
  }
  return t;
}

const std::vector<std::string> kDatasetKeys = {"type",         "dataset_root", "train_path", "val_path",
                                               "test_path",    "separator",    "mode",       "num_classes",
                                               "ignore_index", "img_channels", "transforms"};
const std::vector<std::string> kCityscapesKeys = {"type", "dataset_root", "transforms",
                                                  "mode", "num_classes",  "ignore_index"};

data::DatasetSpec parse_dataset(const ConfigValue& v, const std::string& path, const std::string& default_mode) {
  const ConfigMap m(v, path);
  data::DatasetSpec d;
  d.where = path;
  const auto type = m.string("type");
  if (!type) m.missing("type", " (Dataset or Cityscapes)");
  d.type = *type;
  if (d.type == "Dataset") {
    m.check_keys(kDatasetKeys, " for a Dataset");
  } else if (d.type == "Cityscapes") {
    m.check_keys(kCityscapesKeys, " for Cityscapes");
  } else {
    m.bad("type", "unknown dataset type '", d.type, "' (supported: Dataset, Cityscapes)");
  }
  const auto root = m.string("dataset_root");
  if (!root) m.missing("dataset_root");
  d.dataset_root = *root;
  d.mode = m.string("mode").value_or(default_mode);
  if (d.mode != "train" && d.mode != "val" && d.mode != "test")
    m.bad("mode", "expected train, val or test, got '", d.mode, "'");

  if (d.type == "Cityscapes") {
    // paddleseg/datasets/cityscapes.py: NUM_CLASSES = 19, IGNORE_INDEX = 255, fixed.
    d.num_classes = 19;
    if (auto n = m.integer("num_classes"); n && *n != 19) m.bad("num_classes", "Cityscapes has 19 classes, got ", *n);
    if (auto n = m.integer("ignore_index"); n && *n != 255)
      m.bad("ignore_index", "Cityscapes ignores label 255, got ", *n);
  } else {
    d.train_path = m.string("train_path").value_or("");
    d.val_path = m.string("val_path").value_or("");
    d.test_path = m.string("test_path").value_or("");
    d.separator = m.string("separator").value_or(" ");
    if (d.separator.empty()) m.bad("separator", "expected a non-empty separator");
    const auto n = m.integer("num_classes");
    if (!n) m.missing("num_classes", " (a Dataset must say how many classes its labels have)");
    if (*n < 1) m.bad("num_classes", "expected a positive integer, got ", *n);
    d.num_classes = *n;
    d.ignore_index = m.integer("ignore_index").value_or(255);
    const int64_t ch = m.integer("img_channels").value_or(3);
    if (ch < 1 || ch > 4) m.bad("img_channels", "expected 1 to 4 channels, got ", ch);
    d.img_channels = (int)ch;
    // PaddleSeg's Dataset: "When `mode` is 'train', `train_path` is necessary", etc.
    const std::string need = d.mode + "_path";
    if ((d.mode == "train" && d.train_path.empty()) || (d.mode == "val" && d.val_path.empty()) ||
        (d.mode == "test" && d.test_path.empty()))
      m.missing(need, " (required when mode is '" + d.mode + "')");
  }

  const ConfigValue* tr = m.value("transforms");
  if (!tr) m.missing("transforms", " (a list, e.g. [{type: Normalize}])");
  if (tr->kind != ConfigValue::Kind::Seq)
    config_fail(tr->file, m.at("transforms"), "expected a list of transforms, got ", describe(*tr));
  for (size_t i = 0; i < tr->items.size(); ++i)
    d.transforms.push_back(parse_transform(tr->items[i], index_path(m.at("transforms"), i)));
  return d;
}

OptimizerSpec parse_optimizer(const ConfigValue& v) {
  const ConfigMap m(v, "optimizer");
  m.check_keys({"type", "momentum", "weight_decay"});
  OptimizerSpec o;
  const auto type = m.string("type");
  if (!type) m.missing("type", " (SGD)");
  o.type = *type;
  if (o.type != "SGD" && o.type != "Momentum")
    m.bad("type", "optimizer '", o.type, "' is not supported (supported: SGD with momentum, Momentum)");
  // PaddleSeg's builder turns SGD + momentum into Momentum; plain SGD has no momentum.
  o.momentum = m.number("momentum").value_or(o.type == "SGD" ? 0.0 : 0.9);
  if (o.momentum < 0 || o.momentum >= 1) m.bad("momentum", "expected a value in [0, 1), got ", o.momentum);
  o.weight_decay = m.number("weight_decay").value_or(0.0);
  if (o.weight_decay < 0) m.bad("weight_decay", "expected a number >= 0, got ", o.weight_decay);
  return o;
}

LRSpec parse_lr(const ConfigValue& v, int64_t iters) {
  const ConfigMap m(v, "lr_scheduler");
  LRSpec s;
  const auto type = m.string("type");
  if (!type) m.missing("type", " (PolynomialDecay or PiecewiseDecay)");
  s.type = *type;
  const std::vector<std::string> warm = {"warmup_iters", "warmup_start_lr"};
  if (s.type == "PolynomialDecay") {
    m.check_keys(
        {"type", "learning_rate", "end_lr", "power", "decay_steps", "cycle", "warmup_iters", "warmup_start_lr"},
        " for PolynomialDecay");
    const auto lr = m.number("learning_rate");
    if (!lr) m.missing("learning_rate");
    s.learning_rate = *lr;
    s.end_lr = m.number("end_lr").value_or(0.0);
    s.power = m.number("power").value_or(0.9);
    s.decay_steps = m.integer("decay_steps").value_or(0);
    if (m.boolean("cycle").value_or(false)) m.bad("cycle", "cycle: True is not supported");
    if (s.learning_rate < 0) m.bad("learning_rate", "expected a learning rate >= 0, got ", s.learning_rate);
    if (s.end_lr < 0) m.bad("end_lr", "expected a learning rate >= 0, got ", s.end_lr);
    if (s.power <= 0) m.bad("power", "expected a power > 0, got ", s.power);
    if (m.has("decay_steps") && s.decay_steps < 1)
      m.bad("decay_steps", "expected a positive integer, got ", s.decay_steps);
  } else if (s.type == "PiecewiseDecay") {
    m.check_keys({"type", "boundaries", "values", "warmup_iters", "warmup_start_lr"},
                 " for PiecewiseDecay (its rates are `values`)");
    const auto b = m.integers("boundaries");
    const auto vals = m.numbers("values", false);
    if (!b) m.missing("boundaries");
    if (!vals) m.missing("values");
    s.boundaries = *b;
    s.values = *vals;
    if (s.values.size() != s.boundaries.size() + 1)
      m.bad("values", "expected ", s.boundaries.size() + 1, " values (one more than boundaries), got ",
            s.values.size());
    for (size_t i = 0; i < s.boundaries.size(); ++i)
      if (s.boundaries[i] < 0 || (i > 0 && s.boundaries[i] <= s.boundaries[i - 1]))
        m.bad("boundaries", "expected increasing non-negative steps, got ", describe(*m.value("boundaries")));
    for (double x : s.values)
      if (x < 0) m.bad("values", "expected learning rates >= 0, got ", describe(*m.value("values")));
    s.learning_rate = s.values[0];
  } else {
    m.bad("type", "unknown lr_scheduler type '", s.type, "' (supported: PolynomialDecay, PiecewiseDecay)");
  }
  // PaddleSeg's builder: warmup_iters needs warmup_start_lr; both wrap the schedule in LinearWarmup.
  if (m.has("warmup_iters") != m.has("warmup_start_lr"))
    m.missing(m.has("warmup_iters") ? "warmup_start_lr" : "warmup_iters",
              " (warmup needs warmup_iters and warmup_start_lr)");
  s.warmup_iters = m.integer("warmup_iters").value_or(0);
  s.warmup_start_lr = m.number("warmup_start_lr").value_or(0.0);
  if (s.warmup_iters < 0) m.bad("warmup_iters", "expected an integer >= 0, got ", s.warmup_iters);
  if (s.warmup_start_lr < 0) m.bad("warmup_start_lr", "expected a learning rate >= 0, got ", s.warmup_start_lr);
  if (iters > 0 && s.warmup_iters >= iters)
    m.bad("warmup_iters", "expected fewer warmup iterations than iters (", iters, "), got ", s.warmup_iters);
  return s;
}

LossSpec parse_loss(const ConfigValue& v, int64_t ignore_index, int64_t num_classes) {
  const ConfigMap m(v, "loss");
  m.check_keys({"types", "coef"});
  const ConfigValue* types = m.value("types");
  if (!types) m.missing("types", " (a list like [{type: CrossEntropyLoss}])");
  if (types->kind != ConfigValue::Kind::Seq || types->items.empty())
    config_fail(types->file, m.at("types"), "expected a non-empty list of losses, got ", describe(*types));
  const auto coef = m.numbers("coef", false);
  if (!coef) m.missing("coef", " (one weight per model output, e.g. [1, 1, 1])");
  LossSpec loss;
  loss.coef = *coef;
  for (size_t i = 0; i < types->items.size(); ++i) {
    const std::string p = index_path(m.at("types"), i);
    const ConfigMap t(types->items[i], p);
    LossTermSpec term;
    term.where = p;
    const auto type = t.string("type");
    if (!type) t.missing("type", " (CrossEntropyLoss or OhemCrossEntropyLoss)");
    term.type = *type;
    if (term.type == "CrossEntropyLoss") {
      t.check_keys({"type", "weight", "ignore_index", "top_k_percent_pixels", "avg_non_ignore"},
                   " for CrossEntropyLoss");
      term.top_k_percent_pixels = t.number("top_k_percent_pixels").value_or(1.0);
      if (term.top_k_percent_pixels <= 0 || term.top_k_percent_pixels > 1)
        t.bad("top_k_percent_pixels", "expected a fraction in (0, 1], got ", term.top_k_percent_pixels);
      term.avg_non_ignore = t.boolean("avg_non_ignore").value_or(true);
    } else if (term.type == "OhemCrossEntropyLoss") {
      t.check_keys({"type", "thresh", "min_kept", "ignore_index", "weight"}, " for OhemCrossEntropyLoss");
      term.thresh = t.number("thresh").value_or(0.7);
      if (term.thresh <= 0 || term.thresh > 1) t.bad("thresh", "expected a probability in (0, 1], got ", term.thresh);
      term.min_kept = t.integer("min_kept").value_or(10000);
      if (term.min_kept < 0) t.bad("min_kept", "expected an integer >= 0, got ", term.min_kept);
    } else {
      t.bad("type", "unknown loss type '", term.type, "' (supported: CrossEntropyLoss, OhemCrossEntropyLoss)");
    }
    if (auto w = t.numbers("weight", false)) {
      for (double x : *w)
        if (x < 0) t.bad("weight", "expected class weights >= 0, got ", describe(*t.value("weight")));
      if (num_classes > 0 && (int64_t)w->size() != num_classes)
        t.bad("weight", "expected ", num_classes, " class weights (num_classes), got ", w->size());
      term.weight = *w;
    }
    // config_checker: ignore_index is injected from the data set; a different value is an error.
    term.ignore_index = t.integer("ignore_index").value_or(ignore_index);
    if (term.ignore_index != ignore_index)
      t.bad("ignore_index", "the loss ignores ", term.ignore_index, " but the dataset's ignore_index is ",
            ignore_index);
    loss.terms.push_back(term);
  }
  // DefaultLossRule: one type and n coefs = that type n times.
  if (loss.terms.size() == 1 && loss.coef.size() > 1) loss.terms.resize(loss.coef.size(), loss.terms[0]);
  if (loss.terms.size() != loss.coef.size())
    m.bad("coef", "expected ", loss.terms.size(), " coefficients (one per loss type), got ", loss.coef.size());
  if (loss.coef.empty()) m.bad("coef", "expected at least one coefficient");
  return loss;
}

const std::vector<std::string> kModelKeys = {
    "type",      "backbone",    "num_classes",        "backbone_indices", "arm_type",  "cm_bin_sizes",
    "cm_out_ch", "arm_out_chs", "seg_head_inter_chs", "resize_mode",      "pretrained"};

nn::SegModelSpec parse_model(const ConfigValue& v) {
  const ConfigMap m(v, "model");
  m.check_keys(kModelKeys, " for PPLiteSeg");
  nn::SegModelSpec s;
  s.where = "model";
  const auto type = m.string("type");
  if (!type) m.missing("type", " (PPLiteSeg)");
  s.type = *type;
  if (s.type != "PPLiteSeg") m.bad("type", "unknown model type '", s.type, "' (supported: PPLiteSeg)");
  const ConfigValue* bb = m.value("backbone");
  if (!bb) m.missing("backbone", " (e.g. {type: STDC2})");
  const ConfigMap b(*bb, m.at("backbone"));
  b.check_keys({"type", "pretrained"}, " for an STDC backbone");
  const auto bt = b.string("type");
  if (!bt) b.missing("type", " (STDC1 or STDC2)");
  s.backbone = *bt;
  if (s.backbone != "STDC1" && s.backbone != "STDC2")
    b.bad("type", "unknown backbone '", s.backbone, "' (supported: STDC1, STDC2)");
  s.backbone_pretrained = b.string("pretrained").value_or("");
  s.pretrained = m.string("pretrained").value_or("");
  if (auto n = m.integer("num_classes")) {
    if (*n < 1) m.bad("num_classes", "expected a positive integer, got ", *n);
    s.num_classes = *n;
  }
  if (auto x = m.positive_ints("backbone_indices")) {
    for (int i : *x)
      if (i > 4)
        m.bad("backbone_indices", "expected indices of the STDC stages 0..4, got ",
              describe(*m.value("backbone_indices")));
    s.backbone_indices = *x;
  }
  if (auto x = m.positive_ints("cm_bin_sizes")) s.cm_bin_sizes = *x;
  if (auto x = m.positive_ints("arm_out_chs")) s.arm_out_chs = *x;
  if (auto x = m.positive_ints("seg_head_inter_chs")) s.seg_head_inter_chs = *x;
  if (auto x = m.integer("cm_out_ch")) {
    if (*x < 1) m.bad("cm_out_ch", "expected a positive integer, got ", *x);
    s.cm_out_ch = (int)*x;
  }
  s.arm_type = m.string("arm_type").value_or(s.arm_type);
  s.resize_mode = m.string("resize_mode").value_or(s.resize_mode);
  // PP-LiteSeg pairs backbone_indices, arm_out_chs and seg_head_inter_chs index by index.
  if (s.arm_out_chs.size() != s.backbone_indices.size())
    m.bad("arm_out_chs", "expected ", s.backbone_indices.size(), " entries (one per backbone_indices entry), got ",
          s.arm_out_chs.size());
  if (s.seg_head_inter_chs.size() != s.arm_out_chs.size())
    m.bad("seg_head_inter_chs", "expected ", s.arm_out_chs.size(), " entries (one per arm_out_chs entry), got ",
          s.seg_head_inter_chs.size());
  return s;
}

TestConfig parse_test_config(const ConfigValue& v) {
  const ConfigMap m(v, "test_config");
  m.check_keys({"aug_eval", "scales", "flip_horizontal", "flip_vertical", "is_slide", "crop_size", "stride"});
  TestConfig t;
  t.aug_eval = m.boolean("aug_eval").value_or(false);
  if (auto s = m.numbers("scales")) {
    if (s->empty()) m.bad("scales", "expected at least one scale");
    for (double x : *s)
      if (x <= 0) m.bad("scales", "expected scales > 0, got ", describe(*m.value("scales")));
    t.scales = *s;
  }
  t.flip_horizontal = m.boolean("flip_horizontal").value_or(false);
  t.flip_vertical = m.boolean("flip_vertical").value_or(false);
  t.is_slide = m.boolean("is_slide").value_or(false);
  if (auto c = m.positive_ints("crop_size", 2)) t.crop_size = *c;
  if (auto c = m.positive_ints("stride", 2)) t.stride = *c;
  if (t.is_slide && t.crop_size.empty()) m.missing("crop_size", " (is_slide needs crop_size [w, h])");
  if (t.is_slide && t.stride.empty()) m.missing("stride", " (is_slide needs stride [w, h])");
  if (t.is_slide && (t.stride[0] > t.crop_size[0] || t.stride[1] > t.crop_size[1]))
    m.bad("stride", "expected at most crop_size on each side (a larger stride leaves pixels in no window), got ",
          describe(*m.value("stride")), " with crop_size ", describe(*m.value("crop_size")));
  return t;
}

}  // namespace

// ------------------------------------------------------------------------------------- loading

TrainConfig load_train_config(const std::string& path, const std::vector<std::string>& opts,
                              std::optional<int64_t> iters, std::optional<int64_t> batch_size,
                              std::optional<double> learning_rate) {
  ConfigValue root = load_config_file(path);
  apply_opts(root, opts);
  if (iters) apply_override(root, "iters", scalar_value(std::to_string(*iters), "--iters"), "--iters");
  if (batch_size)
    apply_override(root, "batch_size", scalar_value(std::to_string(*batch_size), "--batch_size"), "--batch_size");
  if (learning_rate)
    apply_override(root, "lr_scheduler.learning_rate", scalar_value(fmt_double(*learning_rate), "--learning_rate"),
                   "--learning_rate");
  strip_inherited(root, "");

  TrainConfig cfg;
  cfg.path = path;
  cfg.merged_yaml = emit_yaml(root);

  const ConfigMap top(root, "");
  top.check_keys(kTopKeys);
  // `export` (deployment transforms) and `to_static_training` (a Paddle compilation switch) do not
  // change training; they are accepted and ignored so PaddleSeg configs load.
  top.boolean("to_static_training");

  cfg.batch_size = top.integer("batch_size").value_or(1);
  if (cfg.batch_size < 1) top.bad("batch_size", "expected a positive integer, got ", cfg.batch_size);
  cfg.iters = top.integer("iters").value_or(0);
  if (top.has("iters") && cfg.iters < 1) top.bad("iters", "expected a positive integer, got ", cfg.iters);
  const PrecisionKeys precision = parse_precision_keys(top);
  cfg.precision = precision.precision;
  cfg.amp_level = precision.amp_level;
  cfg.loss_scaling = precision.loss_scaling;

  if (const ConfigValue* d = top.value("train_dataset")) {
    cfg.train_dataset = parse_dataset(*d, "train_dataset", "train");
    cfg.has_train_dataset = true;
  }
  if (const ConfigValue* d = top.value("val_dataset")) {
    cfg.val_dataset = parse_dataset(*d, "val_dataset", "val");
    cfg.has_val_dataset = true;
  }
  if (cfg.has_train_dataset && cfg.has_val_dataset) {
    // DefaultSyncNumClassesRule / ignore index: the data sets must agree.
    const ConfigMap vd(*top.value("val_dataset"), "val_dataset");
    if (cfg.val_dataset.num_classes != cfg.train_dataset.num_classes)
      vd.bad("num_classes", "val_dataset has ", cfg.val_dataset.num_classes, " classes but train_dataset has ",
             cfg.train_dataset.num_classes);
    if (cfg.val_dataset.ignore_index != cfg.train_dataset.ignore_index)
      vd.bad("ignore_index", "val_dataset ignores ", cfg.val_dataset.ignore_index, " but train_dataset ignores ",
             cfg.train_dataset.ignore_index);
  }
  const data::DatasetSpec* ds = cfg.has_train_dataset ? &cfg.train_dataset
                                : cfg.has_val_dataset ? &cfg.val_dataset
                                                      : nullptr;

  if (const ConfigValue* o = top.value("optimizer")) cfg.optimizer = parse_optimizer(*o);
  if (const ConfigValue* l = top.value("lr_scheduler")) cfg.lr_scheduler = parse_lr(*l, cfg.iters);

  if (const ConfigValue* mv = top.value("model")) {
    cfg.model = parse_model(*mv);
    cfg.has_model = true;
    const ConfigMap model_map(*mv, "model");
    if (cfg.model.num_classes == 0) {
      if (!ds) model_map.missing("num_classes", " (not in the model block and no dataset gives it)");
      cfg.model.num_classes = ds->num_classes;  // PaddleSeg injects the data set's num_classes
    } else if (ds && cfg.model.num_classes != ds->num_classes) {
      model_map.bad("num_classes", "the model has ", cfg.model.num_classes, " classes but ", ds->where, " has ",
                    ds->num_classes);
    }
  }

  if (const ConfigValue* l = top.value("loss")) {
    cfg.loss = parse_loss(*l, ds ? ds->ignore_index : 255, cfg.has_model ? cfg.model.num_classes : 0);
    // PP-LiteSeg returns one logit per seg head in training; PaddleSeg requires one loss per logit.
    const size_t outputs = cfg.model.arm_out_chs.size();
    if (cfg.has_model && cfg.loss.coef.size() != outputs)
      ConfigMap(*l, "loss")
          .bad("coef", "PPLiteSeg has ", outputs, " outputs in training (one per arm_out_chs entry), so ", outputs,
               " loss coefficients are needed, got ", cfg.loss.coef.size());
  }
  if (const ConfigValue* t = top.value("test_config")) cfg.test_config = parse_test_config(*t);
  return cfg;
}

void check_trainable(const TrainConfig& cfg) {
  if (!cfg.has_model)
    throw ConfigError(cfg.path + ": model: missing (e.g. {type: PPLiteSeg, backbone: {type: STDC2}})");
  if (!cfg.has_train_dataset) throw ConfigError(cfg.path + ": train_dataset: missing (needed for training)");
  if (cfg.iters < 1) throw ConfigError(cfg.path + ": iters: missing (needed for training; or pass --iters)");
  if (cfg.loss.terms.empty()) throw ConfigError(cfg.path + ": loss: missing (needed for training)");
}

}  // namespace engine::train
