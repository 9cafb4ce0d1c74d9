// labels: config sanitize
// PaddleSeg YAML configs (train/config.h) and the command lines of engine-train/-eval/-predict
// (train/cli_args.h). Checks: PaddleSeg's own configs (configs/quick_start/
// pp_liteseg_optic_disc_512x512_1k.yml, configs/pp_liteseg/*.yml and their _base_ files) load
// unchanged with PaddleSeg's values; those files are not part of this repository: the tests read them
// from ../shared/reference/paddleseg-configs next to the checkout and are skipped when it is absent
// (as on a plain clone). Always run: the merge
// rules on hand-written files (dict merge, list replace, _inherited_, cycles, missing bases, which
// file an error names); --opts and the typed flags; every class of bad input gives a ConfigError
// naming the file and the key path; the project's configs/ load; CLI defaults, both flag syntaxes
// and errors. Detection (PaddleX) configs (train/det_config.h): PaddleX 1.x defaults, --opts and the
// flags (list flags in both forms), _base_, every bad value and unknown key with its message, the
// pretrain/resume conflict, config_task, the PaddleX flags of engine-train, every configs/yolov3_*.yml.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "train/cli_args.h"
#include "train/config.h"
#include "train/det_config.h"

using namespace engine::train;
namespace fs = std::filesystem;

namespace {

const fs::path kRepo = fs::path(__FILE__).parent_path().parent_path();

fs::path reference_dir() { return kRepo / ".." / "shared" / "reference" / "paddleseg-configs"; }

#define REQUIRE_REFERENCE() \
  if (!fs::exists(reference_dir())) GTEST_SKIP() << "reference configs not found at " << reference_dir()

// The message of the ConfigError that `f` throws ("" and a test failure when it does not throw).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const ConfigError& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected a ConfigError, got another exception: " << e.what();
    return "";
  }
  ADD_FAILURE() << "expected a ConfigError, nothing was thrown";
  return "";
}

#define EXPECT_HAS(haystack, needle) EXPECT_NE((haystack).find(needle), std::string::npos) << (haystack)

// A fresh temporary folder per test for hand-written YAML files.
class ConfigFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    for (char& ch : name)
      if (ch == '/') ch = '_';  // parameterised tests are named "Test/param"
    dir_ = fs::temp_directory_path() / ("engine_test_config_" + std::to_string(getpid()) + "_" + name);
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string write(const std::string& name, const std::string& text) {
    const fs::path p = dir_ / name;
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text;
    return p.string();
  }
  fs::path dir_;
};

// A small complete config (quick-start shaped); bad-input tests override one thing in a child file.
const char* kGood = R"(batch_size: 2
iters: 100
train_dataset:
  type: Dataset
  dataset_root: data/x
  train_path: data/x/train.txt
  num_classes: 2
  mode: train
  transforms:
    - type: ResizeStepScaling
      min_scale_factor: 0.5
      max_scale_factor: 2.0
      scale_step_size: 0.25
    - type: RandomPaddingCrop
      crop_size: [64, 32]
    - type: RandomHorizontalFlip
    - type: Normalize
val_dataset:
  type: Dataset
  dataset_root: data/x
  val_path: data/x/val.txt
  num_classes: 2
  mode: val
  transforms:
    - type: Normalize
optimizer:
  type: SGD
  momentum: 0.9
  weight_decay: 4.0e-5
lr_scheduler:
  type: PolynomialDecay
  learning_rate: 0.01
  end_lr: 0
  power: 0.9
loss:
  types:
    - type: CrossEntropyLoss
  coef: [1, 1, 1]
model:
  type: PPLiteSeg
  backbone:
    type: STDC1
  arm_out_chs: [32, 64, 128]
  seg_head_inter_chs: [32, 64, 64]
)";

}  // namespace

// ------------------------------------------------------------------------- reference configs

TEST(ReferenceConfigs, QuickStart) {
  REQUIRE_REFERENCE();
  const std::string path = (reference_dir() / "quick_start/pp_liteseg_optic_disc_512x512_1k.yml").string();
  const TrainConfig c = load_train_config(path);
  EXPECT_EQ(c.path, path);
  EXPECT_EQ(c.batch_size, 4);
  EXPECT_EQ(c.iters, 1000);
  ASSERT_TRUE(c.has_train_dataset);
  ASSERT_TRUE(c.has_val_dataset);
  ASSERT_TRUE(c.has_model);
  const auto& t = c.train_dataset;
  EXPECT_EQ(t.type, "Dataset");
  EXPECT_EQ(t.dataset_root, "data/optic_disc_seg");
  EXPECT_EQ(t.train_path, "data/optic_disc_seg/train_list.txt");
  EXPECT_EQ(t.num_classes, 2);
  EXPECT_EQ(t.ignore_index, 255);
  EXPECT_EQ(t.mode, "train");
  EXPECT_EQ(t.where, "train_dataset");
  ASSERT_EQ(t.transforms.size(), 5u);
  EXPECT_EQ(t.transforms[0].type, "ResizeStepScaling");
  EXPECT_EQ(t.transforms[0].args.at("min_scale_factor"), std::vector<double>{0.5});
  EXPECT_EQ(t.transforms[0].args.at("max_scale_factor"), std::vector<double>{2.0});
  EXPECT_EQ(t.transforms[0].args.at("scale_step_size"), std::vector<double>{0.25});
  EXPECT_EQ(t.transforms[1].type, "RandomPaddingCrop");
  EXPECT_EQ(t.transforms[1].args.at("crop_size"), (std::vector<double>{512, 512}));
  EXPECT_EQ(t.transforms[1].where, "train_dataset.transforms[1]");
  EXPECT_EQ(t.transforms[2].type, "RandomHorizontalFlip");
  EXPECT_TRUE(t.transforms[2].args.empty());
  EXPECT_EQ(t.transforms[3].type, "RandomDistort");
  EXPECT_EQ(t.transforms[3].args.at("saturation_range"), std::vector<double>{0.5});
  EXPECT_EQ(t.transforms[4].type, "Normalize");
  const auto& v = c.val_dataset;
  EXPECT_EQ(v.mode, "val");
  EXPECT_EQ(v.val_path, "data/optic_disc_seg/val_list.txt");
  EXPECT_EQ(v.where, "val_dataset");
  ASSERT_EQ(v.transforms.size(), 1u);
  EXPECT_EQ(v.transforms[0].where, "val_dataset.transforms[0]");
  EXPECT_EQ(c.optimizer.type, "SGD");
  EXPECT_EQ(c.optimizer.momentum, 0.9);
  EXPECT_EQ(c.optimizer.weight_decay, 4.0e-5);
  EXPECT_EQ(c.lr_scheduler.type, "PolynomialDecay");
  EXPECT_EQ(c.lr_scheduler.learning_rate, 0.01);
  EXPECT_EQ(c.lr_scheduler.end_lr, 0.0);
  EXPECT_EQ(c.lr_scheduler.power, 0.9);
  EXPECT_EQ(c.lr_scheduler.warmup_iters, 0);
  EXPECT_EQ(c.lr_scheduler.decay_steps, 0);
  // One CrossEntropyLoss with coef [1, 1, 1] = three CE terms; ignore_index injected.
  ASSERT_EQ(c.loss.terms.size(), 3u);
  EXPECT_EQ(c.loss.coef, (std::vector<double>{1, 1, 1}));
  for (const auto& term : c.loss.terms) {
    EXPECT_EQ(term.type, "CrossEntropyLoss");
    EXPECT_EQ(term.ignore_index, 255);
    EXPECT_TRUE(term.avg_non_ignore);
    EXPECT_EQ(term.top_k_percent_pixels, 1.0);
    EXPECT_TRUE(term.weight.empty());
    EXPECT_EQ(term.where, "loss.types[0]");
  }
  EXPECT_EQ(c.model.type, "PPLiteSeg");
  EXPECT_EQ(c.model.backbone, "STDC2");
  EXPECT_EQ(c.model.backbone_pretrained, "https://bj.bcebos.com/paddleseg/dygraph/PP_STDCNet2.tar.gz");
  EXPECT_EQ(c.model.pretrained, "");
  EXPECT_EQ(c.model.num_classes, 2);  // injected from the train data set
  EXPECT_EQ(c.model.arm_out_chs, (std::vector<int>{64, 96, 128}));
  EXPECT_EQ(c.model.seg_head_inter_chs, (std::vector<int>{64, 64, 64}));
  EXPECT_FALSE(c.test_config.aug_eval);
  EXPECT_EQ(c.test_config.scales, std::vector<double>{1.0});
  EXPECT_NO_THROW(check_trainable(c));
}

TEST(ReferenceConfigs, BaseCityscapes) {
  REQUIRE_REFERENCE();
  const TrainConfig c = load_train_config((reference_dir() / "_base_/cityscapes.yml").string());
  EXPECT_EQ(c.batch_size, 2);
  EXPECT_EQ(c.iters, 80000);
  EXPECT_EQ(c.train_dataset.type, "Cityscapes");
  EXPECT_EQ(c.train_dataset.num_classes, 19);
  EXPECT_EQ(c.train_dataset.dataset_root, "data/cityscapes");
  EXPECT_EQ(c.val_dataset.mode, "val");
  EXPECT_EQ(c.train_dataset.transforms[1].args.at("crop_size"), (std::vector<double>{1024, 512}));
  EXPECT_EQ(c.train_dataset.transforms[3].args.at("brightness_range"), std::vector<double>{0.4});
  ASSERT_EQ(c.loss.terms.size(), 1u);
  EXPECT_FALSE(c.has_model);  // a base file: no model block
  const std::string e = error_of([&] { check_trainable(c); });
  EXPECT_HAS(e, "cityscapes.yml: model: missing");
}

TEST(ReferenceConfigs, Stdc1Cityscapes) {
  REQUIRE_REFERENCE();
  const TrainConfig c = load_train_config(
      (reference_dir() / "pp_liteseg/pp_liteseg_stdc1_cityscapes_1024x512_scale0.5_160k.yml").string());
  EXPECT_EQ(c.batch_size, 4);
  EXPECT_EQ(c.iters, 160000);
  EXPECT_EQ(c.optimizer.momentum, 0.9);  // from the base
  EXPECT_EQ(c.optimizer.weight_decay, 5.0e-4);
  EXPECT_EQ(c.lr_scheduler.learning_rate, 0.005);
  EXPECT_EQ(c.lr_scheduler.power, 0.9);
  EXPECT_EQ(c.lr_scheduler.warmup_iters, 1000);
  EXPECT_EQ(c.lr_scheduler.warmup_start_lr, 1.0e-5);
  ASSERT_EQ(c.loss.terms.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(c.loss.terms[i].type, "OhemCrossEntropyLoss");
    EXPECT_EQ(c.loss.terms[i].min_kept, 130000);
    EXPECT_EQ(c.loss.terms[i].thresh, 0.7);
    EXPECT_EQ(c.loss.terms[i].ignore_index, 255);
    EXPECT_EQ(c.loss.terms[i].where, "loss.types[" + std::to_string(i) + "]");
  }
  // train_dataset merges with the base's dict; its transforms list replaces the base's.
  EXPECT_EQ(c.train_dataset.type, "Cityscapes");
  EXPECT_EQ(c.train_dataset.dataset_root, "data/cityscapes");
  EXPECT_EQ(c.train_dataset.num_classes, 19);
  ASSERT_EQ(c.train_dataset.transforms.size(), 5u);
  EXPECT_EQ(c.train_dataset.transforms[0].args.at("min_scale_factor"), std::vector<double>{0.125});
  EXPECT_EQ(c.train_dataset.transforms[0].args.at("scale_step_size"), std::vector<double>{0.125});
  EXPECT_EQ(c.train_dataset.transforms[3].args.at("brightness_range"), std::vector<double>{0.5});
  EXPECT_EQ(c.model.backbone, "STDC1");
  EXPECT_EQ(c.model.arm_out_chs, (std::vector<int>{32, 64, 128}));
  EXPECT_EQ(c.model.seg_head_inter_chs, (std::vector<int>{32, 64, 64}));
  EXPECT_EQ(c.model.num_classes, 19);
  EXPECT_TRUE(c.test_config.aug_eval);
  EXPECT_EQ(c.test_config.scales, std::vector<double>{0.5});
}

TEST(ReferenceConfigs, Stdc2InheritsThroughStdc1) {
  REQUIRE_REFERENCE();
  const TrainConfig c = load_train_config(
      (reference_dir() / "pp_liteseg/pp_liteseg_stdc2_cityscapes_1024x512_scale0.5_160k.yml").string());
  EXPECT_EQ(c.batch_size, 4);
  EXPECT_EQ(c.iters, 160000);
  EXPECT_EQ(c.optimizer.weight_decay, 5.0e-4);
  EXPECT_EQ(c.lr_scheduler.learning_rate, 0.005);
  EXPECT_EQ(c.lr_scheduler.warmup_iters, 1000);
  EXPECT_EQ(c.lr_scheduler.warmup_start_lr, 1.0e-5);
  ASSERT_EQ(c.loss.terms.size(), 3u);
  EXPECT_EQ(c.loss.terms[2].type, "OhemCrossEntropyLoss");
  EXPECT_EQ(c.loss.terms[2].min_kept, 130000);
  EXPECT_EQ(c.train_dataset.transforms[1].args.at("crop_size"), (std::vector<double>{1024, 512}));
  EXPECT_TRUE(c.test_config.aug_eval);
  EXPECT_EQ(c.test_config.scales, std::vector<double>{0.5});
  // `_inherited_: False`: the stdc1 model block (with its T channels) is dropped.
  EXPECT_EQ(c.model.backbone, "STDC2");
  EXPECT_EQ(c.model.backbone_pretrained, "https://bj.bcebos.com/paddleseg/dygraph/PP_STDCNet2.tar.gz");
  EXPECT_EQ(c.model.arm_out_chs, (std::vector<int>{64, 96, 128}));
  EXPECT_EQ(c.model.seg_head_inter_chs, (std::vector<int>{64, 64, 64}));
  EXPECT_EQ(c.model.num_classes, 19);
  EXPECT_EQ(c.merged_yaml.find("_inherited_"), std::string::npos) << c.merged_yaml;
  EXPECT_EQ(c.merged_yaml.find("_base_"), std::string::npos) << c.merged_yaml;
  EXPECT_HAS(c.merged_yaml, "OhemCrossEntropyLoss");
}

// ------------------------------------------------------------------------------ project configs

TEST(ProjectConfigs, Synthetic256) {
  const TrainConfig c = load_train_config((kRepo / "configs/pp_liteseg_synthetic_256x256.yml").string());
  EXPECT_NO_THROW(check_trainable(c));
  EXPECT_EQ(c.batch_size, 4);
  EXPECT_EQ(c.iters, 300);
  EXPECT_EQ(c.train_dataset.dataset_root, "datasets/synthetic_fundus");
  EXPECT_EQ(c.train_dataset.train_path, "datasets/synthetic_fundus/train_list.txt");
  EXPECT_EQ(c.val_dataset.val_path, "datasets/synthetic_fundus/val_list.txt");
  EXPECT_EQ(c.train_dataset.num_classes, 2);
  ASSERT_EQ(c.train_dataset.transforms.size(), 5u);
  EXPECT_EQ(c.train_dataset.transforms[0].args.at("min_scale_factor"), std::vector<double>{0.75});
  EXPECT_EQ(c.train_dataset.transforms[0].args.at("max_scale_factor"), std::vector<double>{1.25});
  EXPECT_EQ(c.train_dataset.transforms[1].args.at("crop_size"), (std::vector<double>{256, 256}));
  EXPECT_EQ(c.train_dataset.transforms[3].args.at("contrast_range"), std::vector<double>{0.4});
  EXPECT_EQ(c.optimizer.weight_decay, 4.0e-5);
  EXPECT_EQ(c.optimizer.momentum, 0.9);
  EXPECT_EQ(c.lr_scheduler.learning_rate, 0.01);
  EXPECT_EQ(c.lr_scheduler.warmup_iters, 20);
  EXPECT_EQ(c.lr_scheduler.warmup_start_lr, 1.0e-4);
  ASSERT_EQ(c.loss.terms.size(), 3u);
  EXPECT_EQ(c.loss.terms[0].type, "CrossEntropyLoss");
  EXPECT_EQ(c.model.backbone, "STDC1");
  EXPECT_EQ(c.model.arm_out_chs, (std::vector<int>{32, 64, 128}));
  EXPECT_EQ(c.model.seg_head_inter_chs, (std::vector<int>{32, 64, 64}));
  EXPECT_EQ(c.model.num_classes, 2);
  EXPECT_EQ(c.model.backbone_pretrained, "");
  EXPECT_EQ(c.model.pretrained, "");
}

TEST(ProjectConfigs, Stdc2Synthetic512) {
  const TrainConfig c = load_train_config((kRepo / "configs/pp_liteseg_stdc2_synthetic_512x512.yml").string());
  EXPECT_NO_THROW(check_trainable(c));
  EXPECT_EQ(c.iters, 1000);
  EXPECT_EQ(c.batch_size, 4);
  EXPECT_EQ(c.train_dataset.transforms[1].args.at("crop_size"), (std::vector<double>{512, 512}));
  EXPECT_EQ(c.lr_scheduler.learning_rate, 0.01);
  EXPECT_EQ(c.lr_scheduler.warmup_iters, 0);
  EXPECT_EQ(c.model.backbone, "STDC2");
  EXPECT_EQ(c.model.arm_out_chs, (std::vector<int>{64, 96, 128}));
  EXPECT_EQ(c.model.backbone_pretrained, "");
  EXPECT_EQ(c.loss.terms.size(), 3u);
}

// -------------------------------------------------------------------------------- merge rules

TEST_F(ConfigFiles, DictsMergeListsReplace) {
  write("base.yml", kGood);
  const std::string child = write("child.yml", R"(_base_: base.yml
optimizer:
  weight_decay: 5.0e-4
train_dataset:
  transforms:
    - type: Normalize
)");
  const TrainConfig c = load_train_config(child);
  EXPECT_EQ(c.optimizer.type, "SGD");         // kept from the base
  EXPECT_EQ(c.optimizer.momentum, 0.9);       // kept from the base
  EXPECT_EQ(c.optimizer.weight_decay, 5e-4);  // overridden
  EXPECT_EQ(c.train_dataset.train_path, "data/x/train.txt");
  ASSERT_EQ(c.train_dataset.transforms.size(), 1u);  // the list replaced, not merged
  EXPECT_EQ(c.train_dataset.transforms[0].type, "Normalize");
  EXPECT_EQ(c.model.arm_out_chs, (std::vector<int>{32, 64, 128}));
}

TEST_F(ConfigFiles, InheritedFalseDropsTheBaseDict) {
  write("base.yml", kGood);
  const TrainConfig kept =
      load_train_config(write("a.yml", "_base_: base.yml\nmodel:\n  backbone:\n    type: STDC2\n"));
  EXPECT_EQ(kept.model.backbone, "STDC2");
  EXPECT_EQ(kept.model.arm_out_chs, (std::vector<int>{32, 64, 128}));  // merged: the base's channels stay
  const TrainConfig dropped = load_train_config(write("b.yml", R"(_base_: base.yml
model:
  _inherited_: False
  type: PPLiteSeg
  backbone:
    type: STDC2
)"));
  EXPECT_EQ(dropped.model.backbone, "STDC2");
  EXPECT_EQ(dropped.model.arm_out_chs, (std::vector<int>{64, 96, 128}));  // defaults again
  const TrainConfig truthy = load_train_config(
      write("c.yml", "_base_: base.yml\nmodel:\n  _inherited_: True\n  backbone:\n    type: STDC2\n"));
  EXPECT_EQ(truthy.model.arm_out_chs, (std::vector<int>{32, 64, 128}));
  // At the top level it drops the whole base.
  const std::string root = write("e.yml", "_base_: base.yml\n_inherited_: False\niters: 3\n");
  EXPECT_HAS(error_of([&] { check_trainable(load_train_config(root)); }), "model: missing");
  const std::string e =
      error_of([&] { load_train_config(write("d.yml", "_base_: base.yml\nmodel:\n  _inherited_: maybe\n")); });
  EXPECT_HAS(e, "d.yml: model._inherited_: expected True or False, got 'maybe'");
}

TEST_F(ConfigFiles, RecursiveBasesRelativeToTheIncludingFile) {
  write("bases/root.yml", kGood);
  write("bases/mid.yml", "_base_: root.yml\niters: 50\nbatch_size: 3\n");
  const std::string top = write("exp/top.yml", "_base_: ../bases/mid.yml\nbatch_size: 8\n");
  const TrainConfig c = load_train_config(top);
  EXPECT_EQ(c.iters, 50);
  EXPECT_EQ(c.batch_size, 8);
  EXPECT_EQ(c.lr_scheduler.learning_rate, 0.01);
}

TEST_F(ConfigFiles, ListOfBasesEarlierWins) {
  write("base.yml", kGood);
  write("b1.yml", "_base_: base.yml\niters: 11\n");
  write("b2.yml", "iters: 22\nbatch_size: 7\ntest_config:\n  scales: 0.5\n");
  const TrainConfig c = load_train_config(write("top.yml", "_base_: [b1.yml, b2.yml]\n"));
  EXPECT_EQ(c.iters, 11);                                     // b1 wins over b2
  EXPECT_EQ(c.batch_size, 2);                                 // b1's own base also wins over b2
  EXPECT_EQ(c.test_config.scales, std::vector<double>{0.5});  // only b2 has it
}

TEST_F(ConfigFiles, CycleIsAnError) {
  write("a.yml", "_base_: b.yml\niters: 1\n");
  write("b.yml", "_base_: c.yml\n");
  write("c.yml", "_base_: a.yml\n");
  const std::string e = error_of([&] { load_train_config((dir_ / "a.yml").string()); });
  EXPECT_HAS(e, "c.yml: _base_: cycle of _base_ files");
  EXPECT_HAS(e, "a.yml -> ");
  const std::string self = error_of([&] { load_train_config(write("self.yml", "_base_: self.yml\n")); });
  EXPECT_HAS(self, "cycle");
}

TEST_F(ConfigFiles, MissingFilesAreNamed) {
  const std::string top = write("top.yml", "_base_: ../nowhere/base.yml\n");
  const std::string e = error_of([&] { load_train_config(top); });
  EXPECT_HAS(e, top + ": _base_: base config file not found: ");
  EXPECT_HAS(e, "nowhere/base.yml");
  const std::string missing = (dir_ / "absent.yml").string();
  EXPECT_HAS(error_of([&] { load_train_config(missing); }), missing + ": config file not found");
}

TEST_F(ConfigFiles, SyntaxErrorNamesFileAndLine) {
  const std::string p = write("bad.yml", "iters: 10\nmodel: [a, b\n");
  const std::string e = error_of([&] { load_train_config(p); });
  EXPECT_HAS(e, p + ":");
  EXPECT_HAS(e, "YAML syntax error");
  EXPECT_HAS(error_of([&] { load_train_config(write("list.yml", "- 1\n- 2\n")); }),
             "expected a mapping of keys at the top level");
}

TEST_F(ConfigFiles, ErrorNamesTheFileTheValueCameFrom) {
  std::string base = kGood;
  base.replace(base.find("power: 0.9"), 10, "power: high");
  const std::string b = write("base.yml", base);
  const std::string child = write("child.yml", "_base_: base.yml\niters: 5\n");
  const std::string e = error_of([&] { load_train_config(child); });
  EXPECT_HAS(e, b + ": lr_scheduler.power: expected a number, got 'high'");
}

TEST_F(ConfigFiles, MergedYamlRoundTrips) {
  write("base.yml", kGood);
  const TrainConfig c =
      load_train_config(write("child.yml", "_base_: base.yml\nmodel:\n  pretrained: 'weights/m.safetensors'\n"),
                        {"test_config.scales=[0.75, 1.0]"}, 42);
  const TrainConfig again = load_train_config(write("merged.yml", c.merged_yaml));
  EXPECT_EQ(again.iters, 42);
  EXPECT_EQ(again.batch_size, 2);
  EXPECT_EQ(again.model.pretrained, "weights/m.safetensors");
  EXPECT_EQ(again.test_config.scales, (std::vector<double>{0.75, 1.0}));
  EXPECT_EQ(again.optimizer.weight_decay, 4e-5);
  EXPECT_EQ(again.train_dataset.transforms.size(), 4u);
  EXPECT_EQ(again.merged_yaml, c.merged_yaml);
}

// -------------------------------------------------------------------------- --opts and flags

TEST_F(ConfigFiles, OptsOverride) {
  const std::string p = write("good.yml", kGood);
  const TrainConfig c = load_train_config(
      p, {"batch_size=8", "lr_scheduler.end_lr=1.0e-4", "train_dataset.transforms[1].crop_size=[256, 128]",
          "test_config.aug_eval=True", "model.backbone.pretrained=https://x/y.tar.gz"});
  EXPECT_EQ(c.batch_size, 8);
  EXPECT_EQ(c.lr_scheduler.end_lr, 1e-4);
  EXPECT_EQ(c.train_dataset.transforms[1].args.at("crop_size"), (std::vector<double>{256, 128}));
  EXPECT_TRUE(c.test_config.aug_eval);  // creates the missing test_config dict
  EXPECT_EQ(c.model.backbone_pretrained, "https://x/y.tar.gz");
  EXPECT_HAS(c.merged_yaml, "batch_size: 8");

  // The typed flags come after --opts.
  const TrainConfig f = load_train_config(p, {"iters=5", "batch_size=3"}, 7, 6, 0.02);
  EXPECT_EQ(f.iters, 7);
  EXPECT_EQ(f.batch_size, 6);
  EXPECT_EQ(f.lr_scheduler.learning_rate, 0.02);
  EXPECT_HAS(f.merged_yaml, "learning_rate: 0.02");
  const TrainConfig o = load_train_config(p, {"iters=5"});
  EXPECT_EQ(o.iters, 5);
  EXPECT_EQ(o.precision, engine::Precision::FP32);  // absent: fp32, O1
  EXPECT_EQ(o.amp_level, engine::AmpLevel::O1);
  const TrainConfig b = load_train_config(p, {"precision=bf16", "amp_level=O2"});
  EXPECT_EQ(b.precision, engine::Precision::BF16);
  EXPECT_EQ(b.amp_level, engine::AmpLevel::O2);
  // loss_scaling: PaddleSeg's GradScaler values when absent; each of paddle.amp.GradScaler's arguments.
  EXPECT_EQ(o.loss_scaling.init_loss_scaling, 1024.0);
  EXPECT_EQ(o.loss_scaling.incr_every_n_steps, 2000);
  EXPECT_EQ(o.loss_scaling.decr_every_n_nan_or_inf, 1);
  const TrainConfig ls =
      load_train_config(p, {"precision=fp16",
                            "loss_scaling={init_loss_scaling: 65536.0, incr_ratio: 4.0, decr_ratio: 0.25, "
                            "incr_every_n_steps: 100, decr_every_n_nan_or_inf: 2, use_dynamic_loss_scaling: False}"});
  EXPECT_EQ(ls.precision, engine::Precision::FP16);
  EXPECT_EQ(ls.loss_scaling.init_loss_scaling, 65536.0);
  EXPECT_EQ(ls.loss_scaling.incr_ratio, 4.0);
  EXPECT_EQ(ls.loss_scaling.decr_ratio, 0.25);
  EXPECT_EQ(ls.loss_scaling.incr_every_n_steps, 100);
  EXPECT_EQ(ls.loss_scaling.decr_every_n_nan_or_inf, 2);
  EXPECT_FALSE(ls.loss_scaling.use_dynamic_loss_scaling);
}

TEST_F(ConfigFiles, BadOpts) {
  const std::string p = write("good.yml", kGood);
  EXPECT_HAS(error_of([&] { load_train_config(p, {"batch_size"}); }), "--opts: 'batch_size': expected key=value");
  EXPECT_HAS(error_of([&] { load_train_config(p, {"=3"}); }), "expected key=value");
  EXPECT_HAS(error_of([&] { load_train_config(p, {"batch_sise=3"}); }),
             "--opts: batch_sise: unknown key (did you mean 'batch_size'?)");
  EXPECT_HAS(error_of([&] { load_train_config(p, {"batch_size=many"}); }),
             "--opts: batch_size: expected an integer, got 'many'");
  EXPECT_HAS(error_of([&] { load_train_config(p, {"train_dataset.transforms[9].prob=1"}); }),
             "--opts: train_dataset.transforms[9]: index out of range (the list has 4 entries)");
  EXPECT_HAS(error_of([&] { load_train_config(p, {"iters.sub=1"}); }), "--opts: iters: cannot set key 'sub'");
  EXPECT_HAS(error_of([&] { load_train_config(p, {"a..b=1"}); }), "expected key.sub");
  EXPECT_HAS(error_of([&] { load_train_config(p, {"iters=[1,"}); }), "--opts: iters: cannot parse value '[1,'");
  EXPECT_HAS(error_of([&] { load_train_config(p, {}, 0); }), "--iters: iters: expected a positive integer, got 0");
  EXPECT_HAS(error_of([&] { load_train_config(p, {}, std::nullopt, std::nullopt, -0.5); }),
             "--learning_rate: lr_scheduler.learning_rate: expected a learning rate >= 0, got -0.5");
}

// ------------------------------------------------------------------------------- bad configs

struct BadCase {
  const char* name;
  const char* child;     // YAML appended after "_base_: good.yml"
  const char* key_path;  // must appear as "<child file>: <key_path>: "
  const char* what;      // and this after it
};

class BadConfigs : public ConfigFiles, public ::testing::WithParamInterface<BadCase> {};

TEST_P(BadConfigs, ConfigErrorNamesFileAndKeyPath) {
  const BadCase& bc = GetParam();
  write("good.yml", kGood);
  const std::string p = write("bad.yml", std::string("_base_: good.yml\n") + bc.child);
  const std::string e = error_of([&] { load_train_config(p); });
  EXPECT_HAS(e, p + ": " + bc.key_path + ": ");
  EXPECT_HAS(e, bc.what);
  EXPECT_EQ(e.find('\n'), std::string::npos) << "one line: " << e;
  if (getenv("SHOW_ERRORS")) std::printf("%s\n", e.c_str());
}

const BadCase kBadCases[] = {
    {"unknown_top_key", "iter: 10\n", "iter", "unknown key (did you mean 'iters'?)"},
    {"bad_precision", "precision: half\n", "precision", "expected fp32, tf32, bf16 or fp16, got 'half'"},
    {"bad_amp_level", "amp_level: O3\n", "amp_level", "expected O1 or O2, got 'O3'"},
    {"loss_scaling_scalar", "loss_scaling: 1024\n", "loss_scaling", "expected a mapping of paddle.amp.GradScaler"},
    {"loss_scaling_key", "loss_scaling:\n  init_scale: 8\n", "loss_scaling.init_scale",
     "unknown key; known keys: init_loss_scaling, incr_ratio"},
    {"loss_scaling_small", "loss_scaling:\n  init_loss_scaling: 0.5\n", "loss_scaling.init_loss_scaling",
     "expected a number in [1, 3.4e38], got 0.5"},
    {"loss_scaling_incr", "loss_scaling:\n  incr_ratio: 1\n", "loss_scaling.incr_ratio",
     "expected a number > 1, got 1"},
    {"loss_scaling_decr", "loss_scaling:\n  decr_ratio: 1.5\n", "loss_scaling.decr_ratio",
     "expected a number in (0, 1), got 1.5"},
    {"loss_scaling_steps", "loss_scaling:\n  incr_every_n_steps: 0\n", "loss_scaling.incr_every_n_steps",
     "expected a positive integer, got 0"},
    {"unknown_optimizer_key", "optimizer:\n  momentun: 0.9\n", "optimizer.momentun", "did you mean 'momentum'?"},
    {"unknown_model_key", "model:\n  arm_out_ch: [1, 2, 3]\n", "model.arm_out_ch", "did you mean 'arm_out_chs'?"},
    {"unknown_backbone_key", "model:\n  backbone:\n    layers: 3\n", "model.backbone.layers", "unknown key"},
    {"unknown_loss_key", "loss:\n  types:\n    - type: OhemCrossEntropyLoss\n      min_keep: 5\n",
     "loss.types[0].min_keep", "did you mean 'min_kept'?"},
    {"unknown_dataset_key", "train_dataset:\n  train_pth: a.txt\n", "train_dataset.train_pth",
     "did you mean 'train_path'?"},
    {"unknown_transform_arg", "val_dataset:\n  transforms:\n    - type: Normalize\n      means: [0.5]\n",
     "val_dataset.transforms[0].means", "did you mean 'mean'?"},
    {"string_for_number", "lr_scheduler:\n  learning_rate: fast\n", "lr_scheduler.learning_rate",
     "expected a number, got 'fast'"},
    {"quoted_number", "optimizer:\n  momentum: '0.9'\n", "optimizer.momentum", "expected a number, got '0.9'"},
    {"list_for_integer", "batch_size: [2]\n", "batch_size", "expected an integer, got [2]"},
    {"float_for_integer", "iters: 10.5\n", "iters", "expected an integer, got 10.5"},
    {"number_for_bool", "test_config:\n  aug_eval: 2\n", "test_config.aug_eval", "expected True or False, got 2"},
    {"map_for_string", "model:\n  pretrained: {a: 1}\n", "model.pretrained", "expected a string"},
    {"batch_size_zero", "batch_size: 0\n", "batch_size", "expected a positive integer, got 0"},
    {"iters_zero", "iters: 0\n", "iters", "expected a positive integer, got 0"},
    {"negative_lr", "lr_scheduler:\n  learning_rate: -0.01\n", "lr_scheduler.learning_rate",
     "expected a learning rate >= 0, got -0.01"},
    {"momentum_one", "optimizer:\n  momentum: 1.0\n", "optimizer.momentum", "expected a value in [0, 1), got 1"},
    {"negative_wd", "optimizer:\n  weight_decay: -1.0e-4\n", "optimizer.weight_decay", "expected a number >= 0"},
    {"adam", "optimizer:\n  type: AdamW\n", "optimizer.type", "optimizer 'AdamW' is not supported"},
    {"power_zero", "lr_scheduler:\n  power: 0\n", "lr_scheduler.power", "expected a power > 0, got 0"},
    {"warmup_too_long", "lr_scheduler:\n  warmup_iters: 100\n  warmup_start_lr: 1.0e-5\n", "lr_scheduler.warmup_iters",
     "expected fewer warmup iterations than iters (100), got 100"},
    {"warmup_without_start", "lr_scheduler:\n  warmup_iters: 10\n", "lr_scheduler.warmup_start_lr", "missing"},
    {"unknown_lr_type", "lr_scheduler:\n  type: CosineAnnealingDecay\n", "lr_scheduler.type",
     "unknown lr_scheduler type 'CosineAnnealingDecay'"},
    {"piecewise_with_lr",
     "lr_scheduler:\n  _inherited_: False\n  type: PiecewiseDecay\n  boundaries: [10]\n  values: [0.1, 0.01]\n"
     "  learning_rate: 0.1\n",
     "lr_scheduler.learning_rate", "unknown key for PiecewiseDecay"},
    {"piecewise_counts",
     "lr_scheduler:\n  _inherited_: False\n  type: PiecewiseDecay\n  boundaries: [10, 20]\n  values: [0.1, 0.01]\n",
     "lr_scheduler.values", "expected 3 values (one more than boundaries), got 2"},
    {"coef_count", "loss:\n  types:\n    - type: CrossEntropyLoss\n    - type: CrossEntropyLoss\n  coef: [1, 1, 1]\n",
     "loss.coef", "expected 2 coefficients (one per loss type), got 3"},
    {"coef_vs_outputs", "loss:\n  coef: [1]\n", "loss.coef", "PPLiteSeg has 3 outputs in training"},
    {"coef_missing", "loss:\n  _inherited_: False\n  types:\n    - type: CrossEntropyLoss\n", "loss.coef", "missing"},
    {"unknown_loss", "loss:\n  types:\n    - type: DiceLoss\n", "loss.types[0].type",
     "unknown loss type 'DiceLoss' (supported: CrossEntropyLoss, OhemCrossEntropyLoss)"},
    {"loss_ignore_mismatch", "loss:\n  types:\n    - type: CrossEntropyLoss\n      ignore_index: 0\n",
     "loss.types[0].ignore_index", "the loss ignores 0 but the dataset's ignore_index is 255"},
    {"loss_weight_count", "loss:\n  types:\n    - type: CrossEntropyLoss\n      weight: [1, 2, 3]\n",
     "loss.types[0].weight", "expected 2 class weights (num_classes), got 3"},
    {"ohem_thresh", "loss:\n  types:\n    - type: OhemCrossEntropyLoss\n      thresh: 1.5\n", "loss.types[0].thresh",
     "expected a probability in (0, 1], got 1.5"},
    {"no_num_classes",
     "train_dataset:\n  _inherited_: False\n  type: Dataset\n  dataset_root: d\n  train_path: d/t.txt\n"
     "  transforms: []\n",
     "train_dataset.num_classes", "missing"},
    {"no_train_path", "train_dataset:\n  train_path:\n", "train_dataset.train_path",
     "missing (required when mode is 'train')"},
    {"no_transforms", "val_dataset:\n  transforms:\n", "val_dataset.transforms", "missing"},
    {"unknown_dataset", "train_dataset:\n  type: ADE20K\n", "train_dataset.type",
     "unknown dataset type 'ADE20K' (supported: Dataset, Cityscapes)"},
    {"bad_mode", "val_dataset:\n  mode: eval\n", "val_dataset.mode", "expected train, val or test, got 'eval'"},
    {"cityscapes_classes",
     "train_dataset:\n  _inherited_: False\n  type: Cityscapes\n  dataset_root: c\n"
     "  num_classes: 20\n  transforms: []\n",
     "train_dataset.num_classes", "Cityscapes has 19 classes, got 20"},
    {"val_classes_mismatch", "val_dataset:\n  num_classes: 3\n", "val_dataset.num_classes",
     "val_dataset has 3 classes but train_dataset has 2"},
    {"model_classes_mismatch", "model:\n  num_classes: 5\n", "model.num_classes",
     "the model has 5 classes but train_dataset has 2"},
    {"unknown_model", "model:\n  _inherited_: False\n  type: UNet\n", "model.type",
     "unknown model type 'UNet' (supported: PPLiteSeg)"},
    {"unknown_backbone", "model:\n  backbone:\n    type: ResNet50\n", "model.backbone.type",
     "unknown backbone 'ResNet50' (supported: STDC1, STDC2)"},
    {"no_backbone", "model:\n  _inherited_: False\n  type: PPLiteSeg\n", "model.backbone", "missing"},
    {"arm_chs_len", "model:\n  arm_out_chs: [32, 64]\n", "model.arm_out_chs",
     "expected 3 entries (one per backbone_indices entry), got 2"},
    {"negative_channels", "model:\n  seg_head_inter_chs: [32, -64, 64]\n", "model.seg_head_inter_chs",
     "expected a list of positive integers, got [32, -64, 64]"},
    {"crop_size_one", "train_dataset:\n  transforms:\n    - type: RandomPaddingCrop\n      crop_size: [512]\n",
     "train_dataset.transforms[0].crop_size", "expected 2 positive integers, got [512]"},
    {"crop_size_missing", "train_dataset:\n  transforms:\n    - type: RandomPaddingCrop\n",
     "train_dataset.transforms[0].crop_size", "missing"},
    {"transform_string", "train_dataset:\n  transforms:\n    - type: Resize\n      interp: LINEAR\n",
     "train_dataset.transforms[0].interp", "expected a number, a boolean or a list of numbers, got 'LINEAR'"},
    {"transform_no_type", "train_dataset:\n  transforms:\n    - prob: 0.5\n", "train_dataset.transforms[0].type",
     "missing"},
    {"flip_prob", "train_dataset:\n  transforms:\n    - type: RandomHorizontalFlip\n      prob: 2\n",
     "train_dataset.transforms[0].prob", "expected a probability in [0, 1], got 2"},
    {"scale_order",
     "train_dataset:\n  transforms:\n    - type: ResizeStepScaling\n      min_scale_factor: 2\n"
     "      max_scale_factor: 1\n",
     "train_dataset.transforms[0].min_scale_factor", "is larger than max_scale_factor"},
    {"slide_without_crop", "test_config:\n  is_slide: True\n  stride: [1, 1]\n", "test_config.crop_size", "missing"},
    {"slide_stride_over_crop", "test_config:\n  is_slide: True\n  crop_size: [8, 6]\n  stride: [8, 7]\n",
     "test_config.stride",
     "expected at most crop_size on each side (a larger stride leaves pixels in no window), "
     "got [8, 7] with crop_size [8, 6]"},
    {"bad_scales", "test_config:\n  scales: [0.5, 0]\n", "test_config.scales", "expected scales > 0"},
    {"duplicate_key", "iters: 5\niters: 6\n", "iters", "duplicate key"},
    {"transforms_not_list", "val_dataset:\n  transforms: Normalize\n", "val_dataset.transforms",
     "expected a list of transforms, got 'Normalize'"},
};

INSTANTIATE_TEST_SUITE_P(Cases, BadConfigs, ::testing::ValuesIn(kBadCases),
                         [](const ::testing::TestParamInfo<BadCase>& i) { return std::string(i.param.name); });

TEST_F(ConfigFiles, SgdWithoutMomentumIsPlainSgd) {
  write("good.yml", kGood);
  // PaddleSeg's builder: SGD + momentum -> Momentum; SGD alone -> plain SGD; Momentum alone -> 0.9.
  const TrainConfig sgd =
      load_train_config(write("a.yml", "_base_: good.yml\noptimizer:\n  _inherited_: False\n  type: SGD\n"));
  EXPECT_EQ(sgd.optimizer.momentum, 0.0);
  const TrainConfig mom =
      load_train_config(write("b.yml", "_base_: good.yml\noptimizer:\n  _inherited_: False\n  type: Momentum\n"));
  EXPECT_EQ(mom.optimizer.type, "Momentum");
  EXPECT_EQ(mom.optimizer.momentum, 0.9);
}

TEST_F(ConfigFiles, AcceptedForms) {
  write("good.yml", kGood);
  // Scalars as 1-element lists, booleans as 0/1, `key:` with no value = absent, `1e-5` is a number,
  // export/to_static_training are accepted and ignored, a loss ignore_index equal to the data set's.
  const TrainConfig c = load_train_config(write("a.yml", R"(_base_: good.yml
to_static_training: False
export:
  transforms:
    - type: Normalize
lr_scheduler:
  warmup_iters: 10
  warmup_start_lr: 1e-5
  decay_steps:
test_config:
  scales: 0.75
  is_slide: yes
  crop_size: [64, 64]
  stride: [32, 32]
train_dataset:
  ignore_index: 250
  transforms:
    - type: RandomPaddingCrop
      crop_size: [8, 8]
      im_padding_value: [127.5, 127.5, 127.5]
    - type: RandomDistort
      hue_prob: 0
    - type: MyTransform
      enabled: true
      levels: [1, false]
val_dataset:
  ignore_index: 250
loss:
  types:
    - type: CrossEntropyLoss
      ignore_index: 250
      weight: [0.5, 2.0]
      avg_non_ignore: false
)"));
  EXPECT_EQ(c.lr_scheduler.warmup_start_lr, 1e-5);
  EXPECT_EQ(c.lr_scheduler.decay_steps, 0);
  EXPECT_EQ(c.test_config.scales, std::vector<double>{0.75});
  EXPECT_TRUE(c.test_config.is_slide);
  EXPECT_EQ(c.test_config.crop_size, (std::vector<int>{64, 64}));
  EXPECT_EQ(c.test_config.stride, (std::vector<int>{32, 32}));
  const auto& tr = c.train_dataset.transforms;
  ASSERT_EQ(tr.size(), 3u);
  EXPECT_EQ(tr[0].args.at("im_padding_value"), (std::vector<double>{127.5, 127.5, 127.5}));
  EXPECT_EQ(tr[1].args.at("hue_prob"), std::vector<double>{0});
  EXPECT_EQ(tr[2].type, "MyTransform");  // unknown transform types pass through to data/
  EXPECT_EQ(tr[2].args.at("enabled"), std::vector<double>{1});
  EXPECT_EQ(tr[2].args.at("levels"), (std::vector<double>{1, 0}));
  EXPECT_EQ(c.train_dataset.ignore_index, 250);
  ASSERT_EQ(c.loss.terms.size(), 3u);
  EXPECT_EQ(c.loss.terms[2].ignore_index, 250);
  EXPECT_EQ(c.loss.terms[2].weight, (std::vector<double>{0.5, 2.0}));
  EXPECT_FALSE(c.loss.terms[2].avg_non_ignore);
}

TEST_F(ConfigFiles, EvalOnlyConfigAndCheckTrainable) {
  // A config for evaluation: a model and a val set, no train set, no iters, no loss.
  const std::string p = write("eval.yml", R"(val_dataset:
  type: Dataset
  dataset_root: d
  val_path: d/val.txt
  num_classes: 4
  transforms: [{type: Normalize}]
model:
  type: PPLiteSeg
  backbone: {type: STDC2}
  pretrained: output/best_model/model.safetensors
)");
  const TrainConfig c = load_train_config(p);
  EXPECT_FALSE(c.has_train_dataset);
  EXPECT_EQ(c.val_dataset.mode, "val");  // the default for val_dataset
  EXPECT_EQ(c.model.num_classes, 4);     // from the val set
  EXPECT_EQ(c.model.pretrained, "output/best_model/model.safetensors");
  EXPECT_HAS(error_of([&] { check_trainable(c); }), p + ": train_dataset: missing");
  std::string no_iters = kGood;
  no_iters.replace(no_iters.find("iters: 100\n"), 11, "");
  const std::string q = write("noiters.yml", no_iters);
  EXPECT_HAS(error_of([&] { check_trainable(load_train_config(q)); }), q + ": iters: missing");
  EXPECT_NO_THROW(check_trainable(load_train_config(q, {}, 10)));
  const std::string r = write("nomodel.yml",
                              "val_dataset:\n  type: Cityscapes\n  dataset_root: c\n  transforms: []\n"
                              "model:\n  type: PPLiteSeg\n  backbone: {type: STDC1}\n");
  EXPECT_EQ(load_train_config(r).model.num_classes, 19);
  const std::string s = write("noclasses.yml", "model:\n  type: PPLiteSeg\n  backbone: {type: STDC1}\n");
  EXPECT_HAS(error_of([&] { load_train_config(s); }), s + ": model.num_classes: missing");
}

// ------------------------------------------------------------------------------------------ CLI

namespace {

struct Argv {
  explicit Argv(std::vector<std::string> a) : args(std::move(a)) {
    args.insert(args.begin(), "prog");
    for (auto& s : args) ptrs.push_back(s.data());
    ptrs.push_back(nullptr);
  }
  int argc() const { return (int)args.size(); }
  char** argv() { return ptrs.data(); }
  std::vector<std::string> args;
  std::vector<char*> ptrs;
};

TrainArgs train_args(std::vector<std::string> a) {
  Argv v(std::move(a));
  return parse_train_args(v.argc(), v.argv());
}
EvalArgs eval_args(std::vector<std::string> a) {
  Argv v(std::move(a));
  return parse_eval_args(v.argc(), v.argv());
}
PredictArgs predict_args(std::vector<std::string> a) {
  Argv v(std::move(a));
  return parse_predict_args(v.argc(), v.argv());
}

}  // namespace

TEST(TrainArgsTest, Defaults) {
  const TrainArgs a = train_args({"--config", "c.yml"});
  EXPECT_EQ(a.config, "c.yml");
  EXPECT_FALSE(a.iters);
  EXPECT_FALSE(a.batch_size);
  EXPECT_FALSE(a.learning_rate);
  EXPECT_EQ(a.save_dir, "./output");
  EXPECT_EQ(a.num_workers, 0);
  EXPECT_FALSE(a.use_vdl);
  EXPECT_EQ(a.save_interval, 1000);
  EXPECT_FALSE(a.do_eval);
  EXPECT_EQ(a.log_iters, 10);
  EXPECT_EQ(a.resume_model, "");
  EXPECT_EQ(a.keep_checkpoint_max, 5);
  EXPECT_FALSE(a.seed);
  EXPECT_EQ(a.device, "");
  EXPECT_TRUE(a.opts.empty());
  EXPECT_EQ(a.precision, "");  // "" = the config's `precision` key (fp32 when absent)
  EXPECT_EQ(a.amp_level, "");
  EXPECT_FALSE(a.help);
}

TEST(TrainArgsTest, BothSyntaxesAndLists) {
  const TrainArgs a = train_args({"--config=c.yml",
                                  "--iters",
                                  "200",
                                  "--batch_size=2",
                                  "--learning_rate",
                                  "0.005",
                                  "--save_dir=out/run1",
                                  "--num_workers",
                                  "2",
                                  "--use_vdl",
                                  "--save_interval=50",
                                  "--do_eval",
                                  "--log_iters",
                                  "5",
                                  "--resume_model",
                                  "out/iter_100",
                                  "--keep_checkpoint_max=0",
                                  "--seed",
                                  "42",
                                  "--device=cpu",
                                  "--opts",
                                  "model.num_classes=3",
                                  "train_dataset.transforms[1].crop_size=[256,256]",
                                  "--precision",
                                  "fp32",
                                  "--opts=batch_size=1"});
  EXPECT_EQ(a.config, "c.yml");
  EXPECT_EQ(a.iters, 200);
  EXPECT_EQ(a.batch_size, 2);
  EXPECT_EQ(a.learning_rate, 0.005);
  EXPECT_EQ(a.save_dir, "out/run1");
  EXPECT_EQ(a.num_workers, 2);
  EXPECT_TRUE(a.use_vdl);
  EXPECT_EQ(a.save_interval, 50);
  EXPECT_TRUE(a.do_eval);
  EXPECT_EQ(a.log_iters, 5);
  EXPECT_EQ(a.resume_model, "out/iter_100");
  EXPECT_EQ(a.keep_checkpoint_max, 0);
  EXPECT_EQ(a.seed, 42u);
  EXPECT_EQ(a.device, "cpu");
  EXPECT_EQ(a.opts, (std::vector<std::string>{"model.num_classes=3", "train_dataset.transforms[1].crop_size=[256,256]",
                                              "batch_size=1"}));
}

TEST(TrainArgsTest, Errors) {
  EXPECT_HAS(error_of([] { train_args({}); }), "engine-train: --config is required");
  EXPECT_HAS(error_of([] {
               train_args({"--config", "c", "--iters", "ten"});
             }),
             "engine-train: --iters: expected a positive integer, got 'ten'");
  EXPECT_HAS(error_of([] { train_args({"--config", "c", "--iters", "0"}); }), "--iters: expected a positive integer");
  EXPECT_HAS(error_of([] {
               train_args({"--config", "c", "--batch_size=2x"});
             }),
             "--batch_size: expected a positive integer, got '2x'");
  EXPECT_HAS(error_of([] {
               train_args({"--config", "c", "--learning_rate", "-1"});
             }),
             "--learning_rate: expected a learning rate >= 0, got '-1'");
  EXPECT_HAS(error_of([] { train_args({"--config", "c", "--iters"}); }), "--iters: needs a value");
  EXPECT_HAS(error_of([] { train_args({"--config", "c", "--iters", "1", "2"}); }), "--iters: takes one value, got 2");
  EXPECT_HAS(error_of([] { train_args({"--config"}); }), "--config: needs a value");
  EXPECT_HAS(error_of([] { train_args({"--config", "c", "--do_eval=yes"}); }), "--do_eval: takes no value");
  EXPECT_HAS(error_of([] {
               train_args({"--config", "c", "--save-dir", "x"});
             }),
             "engine-train: unknown flag '--save-dir' (did you mean '--save_dir'?)");
  // `engine-train config.yml`: the leading argument is the config; twice is an error.
  EXPECT_EQ(train_args({"c.yml", "--iters", "5"}).config, "c.yml");
  EXPECT_EQ(*train_args({"c.yml", "--iters", "5"}).iters, 5);
  EXPECT_HAS(error_of([] { train_args({"c.yml", "--config", "d.yml"}); }), "the config is given more than once");
  EXPECT_HAS(error_of([] {
               train_args({"--config", "c", "--precision", "half"});
             }),
             "--precision: expected fp32, tf32, bf16 or fp16, got 'half'");
  EXPECT_HAS(error_of([] {
               train_args({"--config", "c", "--amp_level", "O3"});
             }),
             "--amp_level: expected O1 or O2, got 'O3'");
  EXPECT_EQ(train_args({"--config", "c", "--precision", "bf16", "--amp_level", "O1"}).precision, "bf16");
  EXPECT_EQ(train_args({"--config", "c", "--precision", "bf16", "--amp_level", "O1"}).amp_level, "O1");
  EXPECT_HAS(error_of([] {
               train_args({"--config", "c", "--device", "tpu"});
             }),
             "--device: expected cpu, gpu or gpu:N, got 'tpu'");
  EXPECT_HAS(error_of([] {
               train_args({"--config", "c", "--device", "gpu:x"});
             }),
             "expected cpu, gpu or gpu:N, got 'gpu:x'");
  EXPECT_EQ(train_args({"--config", "c", "--device", "gpu:3"}).device, "gpu:3");
  // Data-parallel flags.
  EXPECT_EQ(train_args({"--config", "c", "--sync_bn", "on", "--dist_timeout", "30"}).sync_bn, "on");
  EXPECT_EQ(train_args({"--config", "c", "--dist_timeout", "2.5"}).dist_timeout, 2.5);
  EXPECT_HAS(error_of([] {
               train_args({"--config", "c", "--sync_bn", "yes"});
             }),
             "--sync_bn: expected auto, on or off, got 'yes'");
  EXPECT_HAS(error_of([] {
               train_args({"--config", "c", "--dist_timeout", "0"});
             }),
             "--dist_timeout: expected seconds > 0, got '0'");
  EXPECT_EQ(train_args({"--config", "c"}).allreduce_dtype, "auto");
  EXPECT_EQ(train_args({"--config", "c", "--allreduce_dtype", "fp16"}).allreduce_dtype, "fp16");
  EXPECT_HAS(error_of([] {
               train_args({"--config", "c", "--allreduce_dtype", "f32"});
             }),
             "--allreduce_dtype: expected auto, fp32, bf16 or fp16, got 'f32'");
  EXPECT_HAS(error_of([] {
               train_args({"--config", "c", "--opts", "nokey"});
             }),
             "--opts: expected key=value, got 'nokey'");
  EXPECT_HAS(error_of([] { train_args({"--config", "c", "--opts"}); }), "--opts: needs at least one value");
  EXPECT_HAS(error_of([] {
               train_args({"--config", "c", "--profiler_options", "x"});
             }),
             "PaddleSeg's flag --profiler_options is not supported by this engine");
  EXPECT_TRUE(train_args({"--config", "c", "--use_ema"}).use_ema);
  EXPECT_HAS(error_of([] {
               check_train_args_for_task(train_args({"c.yml", "--use_ema"}), "detection");
             }),
             "--use_ema: is a PaddleSeg flag; c.yml is a detection config");
  EXPECT_HAS(error_of([] { train_args({"--config", "c", "--seed", "-3"}); }), "--seed: expected an integer >= 0");
}

TEST(TrainArgsTest, Help) {
  // --help wins over everything else, even a missing --config or a bad value.
  EXPECT_TRUE(train_args({"--help"}).help);
  EXPECT_TRUE(train_args({"--iters", "x", "-h"}).help);
  EXPECT_HAS(train_usage(), "--config");
  EXPECT_HAS(train_usage(), "--keep_checkpoint_max");
  EXPECT_HAS(eval_usage(), "--aug_eval");
  // engine-eval takes every precision engine-train does (the GPU ones on a GPU).
  for (const char* p : {"fp32", "bf16", "fp16", "tf32"}) EXPECT_HAS(eval_usage(), p);
  EXPECT_HAS(predict_usage(), "--image_path");
}

TEST(EvalArgsTest, ParseAndApply) {
  const EvalArgs d = eval_args({"--config", "c.yml"});
  EXPECT_EQ(d.scales, std::vector<double>{1.0});
  EXPECT_FALSE(d.aug_eval);
  EXPECT_EQ(d.num_workers, 0);
  EXPECT_EQ(d.model_path, "");
  const EvalArgs a = eval_args({"--config",   "c.yml",        "--model_path=output/best_model",
                                "--aug_eval", "--scales",     "0.75",
                                "1.0",        "1.25",         "--flip_horizontal",
                                "--is_slide", "--crop_size",  "512",
                                "256",        "--stride=256", "128",
                                "--device",   "gpu",          "--num_workers=2",
                                "--opts",     "iters=1"});
  EXPECT_EQ(a.model_path, "output/best_model");
  EXPECT_TRUE(a.aug_eval);
  EXPECT_EQ(a.scales, (std::vector<double>{0.75, 1.0, 1.25}));
  EXPECT_TRUE(a.flip_horizontal);
  EXPECT_FALSE(a.flip_vertical);
  EXPECT_TRUE(a.is_slide);
  EXPECT_EQ(a.crop_size, (std::vector<int>{512, 256}));
  EXPECT_EQ(a.stride, (std::vector<int>{256, 128}));
  EXPECT_EQ(a.device, "gpu");
  EXPECT_EQ(a.num_workers, 2);
  EXPECT_EQ(a.opts, std::vector<std::string>{"iters=1"});

  TestConfig from_file;
  from_file.aug_eval = true;
  from_file.scales = {0.5};
  // No flags: the config's test_config stays (PP-LiteSeg Cityscapes evaluates at scale 0.5).
  const TestConfig same = apply_eval_args(from_file, d);
  EXPECT_TRUE(same.aug_eval);
  EXPECT_EQ(same.scales, std::vector<double>{0.5});
  const TestConfig t = apply_eval_args(from_file, a);
  EXPECT_EQ(t.scales, (std::vector<double>{0.75, 1.0, 1.25}));
  EXPECT_TRUE(t.flip_horizontal);
  EXPECT_TRUE(t.is_slide);
  EXPECT_EQ(t.crop_size, (std::vector<int>{512, 256}));

  EXPECT_HAS(error_of([] {
               eval_args({"--config", "c", "--crop_size", "512"});
             }),
             "engine-eval: --crop_size: needs two values (width height), got 1");
  EXPECT_HAS(error_of([] {
               eval_args({"--config", "c", "--scales", "0.5", "zero"});
             }),
             "--scales: expected a scale > 0, got 'zero'");
  EXPECT_HAS(error_of([] { eval_args({"--config", "c", "--is_slide"}); }), "--is_slide: needs --crop_size");
  EXPECT_HAS(error_of([] {
               eval_args({"--config", "c", "--is_slide", "--crop_size", "64", "32", "--stride", "65", "32"});
             }),
             "engine-eval: --stride: expected at most --crop_size on each side (a larger stride leaves pixels in no "
             "window), got 65 32 with --crop_size 64 32");
  EXPECT_HAS(error_of([] { eval_args({"--model_path", "m"}); }), "engine-eval: --config is required");
}

TEST(PredictArgsTest, ParseAndErrors) {
  const PredictArgs d = predict_args({"--config", "c.yml", "--image_path", "imgs/"});
  EXPECT_EQ(d.save_dir, "./output/result");
  EXPECT_EQ(d.image_path, "imgs/");
  EXPECT_FALSE(d.aug_pred);
  const PredictArgs a = predict_args({"--config=c.yml", "--model_path", "m.safetensors", "--image_path=list.txt",
                                      "--save_dir", "res", "--aug_pred", "--scales=0.5", "--flip_vertical"});
  EXPECT_EQ(a.model_path, "m.safetensors");
  EXPECT_EQ(a.save_dir, "res");
  EXPECT_EQ(a.scales, std::vector<double>{0.5});
  EXPECT_TRUE(a.flip_vertical);
  const TestConfig t = apply_predict_args(TestConfig{}, a);
  EXPECT_TRUE(t.aug_eval);
  EXPECT_EQ(t.scales, std::vector<double>{0.5});
  EXPECT_TRUE(t.flip_vertical);
  EXPECT_HAS(error_of([] { predict_args({"--config", "c"}); }), "engine-predict: --image_path is required");
  EXPECT_HAS(error_of([] {
               predict_args({"--config", "c", "--image_path", "x", "--aug_prd"});
             }),
             "unknown flag '--aug_prd' (did you mean '--aug_pred'?)");
  EXPECT_HAS(error_of([] {
               predict_args(
                   {"--config", "c", "--image_path", "x", "--is_slide", "--crop_size", "8", "8", "--stride", "8", "9"});
             }),
             "engine-predict: --stride: expected at most --crop_size on each side");
  EXPECT_EQ(predict_args({"--config", "c", "--image_path", "x", "--custom_color", "0", "0", "0", "255", "255", "255"})
                .custom_color,
            (std::vector<int>{0, 0, 0, 255, 255, 255}));
  EXPECT_HAS(
      error_of([] {
        predict_args({"--config", "c", "--image_path", "x", "--custom_color", "1", "2"});
      }),
      "engine-predict: --custom_color: expected R G B triples (a multiple of 3 values, at most 768), got 2 values");
  EXPECT_HAS(error_of([] {
               predict_args({"--config", "c", "--image_path", "x", "--custom_color", "1", "2", "256"});
             }),
             "--custom_color: expected colour values 0..255, got 256");
  EXPECT_HAS(error_of([] {
               predict_args({"--config", "c", "--image_path", "x", "--custom_color", "-1", "2", "3"});
             }),
             "--custom_color: expected a colour value 0..255, got '-1'");
  EXPECT_TRUE(predict_args({"--help"}).help);
}

// ----------------------------------------------------------------------------- detection configs

namespace {

// A small detection config with every block; the bad-input tests override one thing in a child file.
const char* kDetGood = R"(model:
  type: YOLOv3
  backbone: MobileNetV1
train_dataset:
  type: VOCDetection
  data_dir: data/det
  file_list: data/det/train_list.txt
  label_list: data/det/labels.txt
  transforms:
    - type: MixupImage
      mixup_epoch: 250
    - type: RandomCrop
      aspect_ratio: None
      allow_no_crop: True
    - type: BatchRandomResize
      target_sizes: [320, 352]
      interp: RANDOM
    - type: Normalize
      mean: [0.485, 0.456, 0.406]
eval_dataset:
  type: CocoDetection
  data_dir: data/coco/val
  ann_file: data/coco/val.json
  transforms:
    - type: Resize
      target_size: 608
      interp: CUBIC
num_epochs: 20
)";

}  // namespace

TEST_F(ConfigFiles, DetDefaultsArePaddleX1) {
  const std::string p = write("det.yml", R"(model: {type: YOLOv3}
train_dataset: {data_dir: d, file_list: d/train.txt, label_list: d/labels.txt}
)");
  const DetTrainConfig c = load_det_train_config(p);
  EXPECT_EQ(c.path, p);
  const DetTrainParams& t = c.params;
  EXPECT_EQ(t.num_epochs, 270);
  EXPECT_EQ(t.train_batch_size, 8);
  EXPECT_EQ(t.learning_rate, 1.0 / 8000);
  EXPECT_EQ(t.warmup_steps, 1000);
  EXPECT_EQ(t.warmup_start_lr, 0.0);
  EXPECT_EQ(t.lr_decay_epochs, (std::vector<int64_t>{213, 240}));
  EXPECT_EQ(t.lr_decay_gamma, 0.1);
  EXPECT_EQ(t.momentum, 0.9);
  EXPECT_EQ(t.weight_decay, 5e-4);
  EXPECT_EQ(t.save_interval_epochs, 20);
  EXPECT_EQ(t.log_interval_steps, 2);
  EXPECT_FALSE(t.early_stop);
  EXPECT_EQ(t.early_stop_patience, 5);
  EXPECT_EQ(t.pretrain_weights, "");
  EXPECT_EQ(t.resume_checkpoint, "");
  EXPECT_FALSE(t.use_vdl);
  EXPECT_EQ(t.metric, "auto");
  EXPECT_EQ(t.save_dir, "output");
  EXPECT_EQ(t.num_workers, 2);
  EXPECT_FALSE(t.seed);
  const DetModelConfig& m = c.model;
  EXPECT_EQ(m.spec.type, "YOLOv3");
  EXPECT_EQ(m.spec.backbone, "DarkNet53");
  EXPECT_EQ(m.spec.num_classes, 0);  // from the train set's labels
  EXPECT_EQ(m.spec.anchors, engine::nn::DetModelSpec().anchors);
  EXPECT_EQ(m.spec.anchor_masks, (std::vector<std::vector<int>>{{6, 7, 8}, {3, 4, 5}, {0, 1, 2}}));
  EXPECT_EQ(m.spec.where, "model");
  EXPECT_EQ(m.ignore_threshold, 0.7);
  EXPECT_FALSE(m.label_smooth);
  EXPECT_EQ(m.nms_score_threshold, 0.01);
  EXPECT_EQ(m.nms_topk, 1000);
  EXPECT_EQ(m.nms_keep_topk, 100);
  EXPECT_EQ(m.nms_iou_threshold, 0.45);
  EXPECT_EQ(c.train_dataset.type, "VOCDetection");
  EXPECT_EQ(c.train_dataset.data_dir, "d");
  EXPECT_EQ(c.train_dataset.file_list, "d/train.txt");
  EXPECT_EQ(c.train_dataset.label_list, "d/labels.txt");
  EXPECT_FALSE(c.train_dataset.allow_empty);
  EXPECT_EQ(c.train_dataset.empty_ratio, 1.0);
  EXPECT_TRUE(c.train_dataset.transforms.empty());
  EXPECT_TRUE(c.train_dataset.batch_transforms.empty());
  EXPECT_EQ(c.train_dataset.where, "train_dataset");
  EXPECT_FALSE(c.has_eval_dataset);
  EXPECT_HAS(c.merged_yaml, "YOLOv3");
}

TEST_F(ConfigFiles, DetFullConfig) {
  const std::string p = write("det.yml", kDetGood);
  const DetTrainConfig c = load_det_train_config(p);
  EXPECT_EQ(c.model.spec.backbone, "MobileNetV1");
  EXPECT_EQ(c.params.num_epochs, 20);
  const DetDataConfig& tr = c.train_dataset;
  // BatchRandomResize listed among the transforms moves to batch_transforms, keeping its where.
  ASSERT_EQ(tr.transforms.size(), 3u);
  ASSERT_EQ(tr.batch_transforms.size(), 1u);
  EXPECT_EQ(tr.transforms[0].type, "MixupImage");
  EXPECT_EQ(tr.transforms[0].args.at("mixup_epoch"), std::vector<double>{250});
  EXPECT_EQ(tr.transforms[0].where, "train_dataset.transforms[0]");
  EXPECT_EQ(tr.transforms[1].type, "RandomCrop");
  EXPECT_TRUE(tr.transforms[1].args.at("aspect_ratio").empty());  // PaddleX's None
  EXPECT_EQ(tr.transforms[1].args.at("allow_no_crop"), std::vector<double>{1});
  EXPECT_EQ(tr.transforms[2].type, "Normalize");
  EXPECT_EQ(tr.transforms[2].args.at("mean"), (std::vector<double>{0.485, 0.456, 0.406}));
  EXPECT_EQ(tr.transforms[2].where, "train_dataset.transforms[3]");
  const auto& b = tr.batch_transforms[0];
  EXPECT_EQ(b.type, "BatchRandomResize");
  EXPECT_EQ(b.args.at("target_sizes"), (std::vector<double>{320, 352}));
  EXPECT_EQ(b.str_args.at("interp"), "RANDOM");
  EXPECT_EQ(b.where, "train_dataset.transforms[2]");
  ASSERT_TRUE(c.has_eval_dataset);
  const DetDataConfig& ev = c.eval_dataset;
  EXPECT_EQ(ev.type, "CocoDetection");
  EXPECT_EQ(ev.data_dir, "data/coco/val");
  EXPECT_EQ(ev.ann_file, "data/coco/val.json");
  EXPECT_EQ(ev.where, "eval_dataset");
  ASSERT_EQ(ev.transforms.size(), 1u);
  EXPECT_EQ(ev.transforms[0].args.at("target_size"), std::vector<double>{608});
  EXPECT_EQ(ev.transforms[0].str_args.at("interp"), "CUBIC");
  EXPECT_EQ(ev.transforms[0].where, "eval_dataset.transforms[0]");
}

TEST_F(ConfigFiles, DetAcceptedForms) {
  write("good.yml", kDetGood);
  const std::string p = write("child.yml", R"(_base_: good.yml
model:
  num_classes: 3
  anchors: [[10, 13], [16, 30], [33, 23], [30, 61]]
  anchor_masks: [[2, 3], [1], [0]]
  ignore_threshold: 0.5
  label_smooth: True
  nms_score_threshold: 0.05
  nms_topk: 500
  nms_keep_topk: 50
  nms_iou_threshold: 0.5
train_dataset:
  allow_empty: True
  empty_ratio: -1
  batch_transforms:
    - {type: BatchRandomResize, target_sizes: [608], interp: 2}
metric: voc
pretrain_weights: IMAGENET
lr_decay_epochs: []
use_vdl: true
early_stop: yes
seed: 3
save_dir: out/det
num_workers: 0
)");
  const DetTrainConfig c = load_det_train_config(p);
  EXPECT_EQ(c.model.spec.num_classes, 3);
  EXPECT_EQ(c.model.spec.anchors.size(), 4u);
  EXPECT_EQ(c.model.spec.anchors[3], (std::array<int, 2>{30, 61}));
  EXPECT_EQ(c.model.spec.anchor_masks, (std::vector<std::vector<int>>{{2, 3}, {1}, {0}}));
  EXPECT_EQ(c.model.ignore_threshold, 0.5);
  EXPECT_TRUE(c.model.label_smooth);
  EXPECT_EQ(c.model.nms_score_threshold, 0.05);
  EXPECT_EQ(c.model.nms_topk, 500);
  EXPECT_EQ(c.model.nms_keep_topk, 50);
  EXPECT_EQ(c.model.nms_iou_threshold, 0.5);
  EXPECT_TRUE(c.train_dataset.allow_empty);
  EXPECT_EQ(c.train_dataset.empty_ratio, -1.0);  // PaddleX: outside [0, 1) keeps every empty image
  // The one moved from transforms comes first, then batch_transforms' own.
  ASSERT_EQ(c.train_dataset.batch_transforms.size(), 2u);
  EXPECT_EQ(c.train_dataset.batch_transforms[1].args.at("interp"), std::vector<double>{2});
  EXPECT_EQ(c.train_dataset.batch_transforms[1].where, "train_dataset.batch_transforms[0]");
  EXPECT_EQ(c.params.metric, "VOC");  // PaddleX compares metric.lower()
  EXPECT_EQ(c.params.pretrain_weights, "IMAGENET");
  EXPECT_TRUE(c.params.lr_decay_epochs.empty());
  EXPECT_TRUE(c.params.use_vdl);
  EXPECT_TRUE(c.params.early_stop);
  EXPECT_EQ(c.params.seed, 3u);
  EXPECT_EQ(c.params.save_dir, "out/det");
  EXPECT_EQ(c.params.num_workers, 0);
  // None / null / '' = not set; metric None = auto; COCO in any case.
  for (const std::string none : {"None", "null", "''", "~", ""}) {
    const std::string q =
        write("none.yml", "_base_: good.yml\npretrain_weights: " + none + "\nresume_checkpoint: out/epoch_5\n");
    const DetTrainConfig n = load_det_train_config(q);
    EXPECT_EQ(n.params.pretrain_weights, "") << none;
    EXPECT_EQ(n.params.resume_checkpoint, "out/epoch_5") << none;
  }
  for (const std::string none : {"None", "null", "~", ""})
    EXPECT_EQ(load_det_train_config(write("m.yml", "_base_: good.yml\nmetric: " + none + "\n")).params.metric, "auto");
  EXPECT_EQ(load_det_train_config(write("coco.yml", "_base_: good.yml\nmetric: Coco\n")).params.metric, "COCO");
}

TEST_F(ConfigFiles, DetBaseAndOverrides) {
  write("base/det.yml", kDetGood);
  const std::string p = write("child.yml", "_base_: base/det.yml\nlearning_rate: 0.001\ntrain_batch_size: 16\n");
  const std::vector<std::string> opts = {"num_epochs=40", "model.num_classes=4",
                                         "train_dataset.transforms[0].mixup_epoch=100", "lr_decay_epochs=[30, 35]"};
  // Flags come after --opts; list flags take "30,40" or "[30, 40]".
  const DetFlagOverrides flags = {{"num_epochs", "30"},         {"metric", "COCO"},
                                  {"lr_decay_epochs", "10,20"}, {"learning_rate", "0.002"},
                                  {"pretrain_weights", "None"}, {"use_vdl", "True"}};
  const DetTrainConfig c = load_det_train_config(p, opts, flags);
  EXPECT_EQ(c.params.num_epochs, 30);
  EXPECT_EQ(c.params.train_batch_size, 16);
  EXPECT_EQ(c.params.learning_rate, 0.002);
  EXPECT_EQ(c.params.lr_decay_epochs, (std::vector<int64_t>{10, 20}));
  EXPECT_EQ(c.params.metric, "COCO");
  EXPECT_EQ(c.params.pretrain_weights, "");
  EXPECT_TRUE(c.params.use_vdl);
  EXPECT_EQ(c.model.spec.num_classes, 4);
  EXPECT_EQ(c.model.spec.backbone, "MobileNetV1");  // from the base
  EXPECT_EQ(c.train_dataset.transforms[0].args.at("mixup_epoch"), std::vector<double>{100});
  EXPECT_EQ(c.train_dataset.data_dir, "data/det");
  EXPECT_HAS(c.merged_yaml, "num_epochs: 30");
  EXPECT_HAS(c.merged_yaml, "lr_decay_epochs: [10, 20]");
  EXPECT_EQ(c.merged_yaml.find("_base_"), std::string::npos);
  EXPECT_EQ(load_det_train_config(p, {}, {{"lr_decay_epochs", "[50, 60]"}}).params.lr_decay_epochs,
            (std::vector<int64_t>{50, 60}));
  EXPECT_EQ(load_det_train_config(p, {}, {{"lr_decay_epochs", "50"}}).params.lr_decay_epochs,
            (std::vector<int64_t>{50}));
  EXPECT_EQ(load_det_train_config(p, opts).params.lr_decay_epochs, (std::vector<int64_t>{30, 35}));

  // The merged YAML loads back to the same config.
  const DetTrainConfig back = load_det_train_config(write("merged.yml", c.merged_yaml));
  EXPECT_EQ(back.params.num_epochs, 30);
  EXPECT_EQ(back.params.lr_decay_epochs, c.params.lr_decay_epochs);
  EXPECT_EQ(back.train_dataset.batch_transforms.size(), 1u);

  // Errors name the flag (or --opts / the base file) as the origin.
  EXPECT_HAS(error_of([&] {
               load_det_train_config(p, {}, {{"num_epochs", "0"}});
             }),
             "--num_epochs: num_epochs: expected a positive integer, got 0");
  EXPECT_HAS(error_of([&] {
               load_det_train_config(p, {}, {{"lr_decay_epochs", "40,30"}});
             }),
             "--lr_decay_epochs: lr_decay_epochs: expected strictly increasing positive epochs, got [40, 30]");
  EXPECT_HAS(error_of([&] {
               load_det_train_config(p, {}, {{"num_epoch", "3"}});
             }),
             "--num_epoch: unknown detection flag (did you mean 'num_epochs'?)");
  EXPECT_HAS(error_of([&] { load_det_train_config(p, {"momentum=1.5"}); }),
             "--opts: momentum: expected a value in [0, 1), got 1.5");
  EXPECT_HAS(error_of([&] { load_det_train_config(write("c2.yml", "_base_: base/det.yml\nnum_epochs: -1\n")); }),
             "c2.yml: num_epochs: expected a positive integer, got -1");
  EXPECT_HAS(error_of([&] { load_det_train_config(p, {"train_dataset.transforms[0].type=[1]"}); }),
             "--opts: train_dataset.transforms[0].type: expected a string, got [1]");
}

TEST_F(ConfigFiles, DetPretrainAndResumeConflict) {
  write("good.yml", kDetGood);
  const std::string p = write("both.yml", "_base_: good.yml\npretrain_weights: w.pdparams\n");
  const std::string e = error_of([&] { load_det_train_config(p, {}, {{"resume_checkpoint", "out/epoch_10"}}); });
  EXPECT_HAS(e,
             "--resume_checkpoint: resume_checkpoint: pretrain_weights and resume_checkpoint cannot be set "
             "simultaneously.");
  EXPECT_HAS(e, "pretrain_weights is 'w.pdparams' from " + p);
  // Setting pretrain_weights to None makes it a plain resume.
  const DetTrainConfig c =
      load_det_train_config(p, {}, {{"resume_checkpoint", "out/epoch_10"}, {"pretrain_weights", "None"}});
  EXPECT_EQ(c.params.resume_checkpoint, "out/epoch_10");
  EXPECT_EQ(c.params.pretrain_weights, "");
}

TEST_F(ConfigFiles, DetMissingBlocks) {
  const std::string a = write("nomodel.yml", "train_dataset: {data_dir: d, file_list: f, label_list: l}\n");
  EXPECT_HAS(error_of([&] { load_det_train_config(a); }), a + ": model: missing");
  const std::string b = write("notype.yml", "model: {backbone: DarkNet53}\n");
  EXPECT_HAS(error_of([&] { load_det_train_config(b); }), b + ": model.type: missing");
  const std::string c = write("notrain.yml", "model: {type: YOLOv3}\n");
  EXPECT_HAS(error_of([&] { load_det_train_config(c); }), c + ": train_dataset: missing");
  EXPECT_HAS(error_of([&] { load_det_train_config((dir_ / "nope.yml").string()); }), "config file not found");
}

TEST_F(ConfigFiles, ConfigTask) {
  const std::string det = write("det.yml", kDetGood);
  const std::string seg = write("seg.yml", kGood);
  EXPECT_EQ(config_task(det), "detection");
  EXPECT_EQ(config_task(seg), "segmentation");
  EXPECT_EQ(config_task(write("child.yml", "_base_: det.yml\nnum_epochs: 3\n")), "detection");
  EXPECT_EQ(config_task(write("empty.yml", "")), "segmentation");
  EXPECT_HAS(error_of([&] { config_task(write("broken.yml", "model: [\n")); }), "YAML syntax error");
  EXPECT_HAS(error_of([&] { config_task((dir_ / "nope.yml").string()); }), "config file not found");
}

namespace {

struct DetBadCase {
  const char* name;
  const char* child;     // YAML appended after "_base_: good.yml" (kDetGood)
  const char* key_path;  // must appear as "<child file>: <key_path>: "
  const char* what;      // and this after it
};

class DetBadConfigs : public ConfigFiles, public ::testing::WithParamInterface<DetBadCase> {};

const DetBadCase kDetBadCases[] = {
    {"unknown_top_key", "lr_decay_epoch: [10]\n", "lr_decay_epoch", "unknown key (did you mean 'lr_decay_epochs'?)"},
    {"bad_precision", "precision: bf32\n", "precision", "expected fp32, tf32, bf16 or fp16, got 'bf32'"},
    {"loss_scaling_nan_steps", "loss_scaling:\n  decr_every_n_nan_or_inf: -1\n", "loss_scaling.decr_every_n_nan_or_inf",
     "expected a positive integer, got -1"},
    {"seg_key_in_det", "iters: 10\n", "iters", "unknown key"},
    {"num_epochs_zero", "num_epochs: 0\n", "num_epochs", "expected a positive integer, got 0"},
    {"num_epochs_float", "num_epochs: 2.5\n", "num_epochs", "expected an integer, got 2.5"},
    {"batch_zero", "train_batch_size: 0\n", "train_batch_size", "expected a positive integer, got 0"},
    {"lr_zero", "learning_rate: 0\n", "learning_rate", "expected a learning rate > 0, got 0"},
    {"lr_string", "learning_rate: fast\n", "learning_rate", "expected a number, got 'fast'"},
    {"warmup_negative", "warmup_steps: -1\n", "warmup_steps", "expected an integer >= 0, got -1"},
    {"warmup_start_negative", "warmup_start_lr: -0.1\n", "warmup_start_lr", "expected a learning rate >= 0"},
    {"decay_not_increasing", "lr_decay_epochs: [240, 213]\n", "lr_decay_epochs",
     "expected strictly increasing positive epochs, got [240, 213]"},
    {"decay_repeated", "lr_decay_epochs: [10, 10]\n", "lr_decay_epochs", "expected strictly increasing"},
    {"decay_zero", "lr_decay_epochs: [0, 10]\n", "lr_decay_epochs", "expected strictly increasing positive"},
    {"decay_scalar", "lr_decay_epochs: 213\n", "lr_decay_epochs", "expected a list of integers, got 213"},
    {"gamma_zero", "lr_decay_gamma: 0\n", "lr_decay_gamma", "expected a factor > 0, got 0"},
    {"momentum_one", "momentum: 1\n", "momentum", "expected a value in [0, 1), got 1"},
    {"momentum_negative", "momentum: -0.1\n", "momentum", "expected a value in [0, 1)"},
    {"weight_decay_negative", "weight_decay: -1.0e-4\n", "weight_decay", "expected a number >= 0"},
    {"save_interval_zero", "save_interval_epochs: 0\n", "save_interval_epochs", "expected a positive integer"},
    {"log_interval_zero", "log_interval_steps: 0\n", "log_interval_steps", "expected a positive integer"},
    {"patience_zero", "early_stop_patience: 0\n", "early_stop_patience", "expected a positive integer"},
    {"early_stop_word", "early_stop: maybe\n", "early_stop", "expected True or False, got 'maybe'"},
    {"use_vdl_number", "use_vdl: 2\n", "use_vdl", "expected True or False, got 2"},
    {"metric_unknown", "metric: mAP\n", "metric", "expected VOC, COCO or auto, got 'mAP'"},
    {"pretrain_and_resume", "pretrain_weights: COCO\nresume_checkpoint: out/epoch_20\n", "resume_checkpoint",
     "pretrain_weights and resume_checkpoint cannot be set simultaneously."},
    {"pretrain_list", "pretrain_weights: [a]\n", "pretrain_weights", "expected a string, got ['a']"},
    {"save_dir_empty", "save_dir: ''\n", "save_dir", "expected a folder, got ''"},
    {"workers_negative", "num_workers: -1\n", "num_workers", "expected an integer in [0, 1024], got -1"},
    {"seed_negative", "seed: -5\n", "seed", "expected an integer >= 0, got -5"},
    {"model_type", "model:\n  type: PPLiteSeg\n", "model.type",
     "unknown detection model type 'PPLiteSeg' (supported: YOLOv3)"},
    {"model_backbone", "model:\n  backbone: DarkNet35\n", "model.backbone",
     "unknown backbone 'DarkNet35' (did you mean 'DarkNet53'?) (supported: DarkNet53, MobileNetV1)"},
    {"model_unknown_key", "model:\n  anchor_mask: [[0]]\n", "model.anchor_mask",
     "unknown key for YOLOv3 (did you mean 'anchor_masks'?)"},
    {"model_num_classes", "model:\n  num_classes: -1\n", "model.num_classes",
     "expected a positive number of classes (or 0 = from the train set's labels), got -1"},
    {"anchors_not_pairs", "model:\n  anchors: [[10, 13], [16]]\n", "model.anchors",
     "expected a list of [width, height] pairs of positive integers, got [[10, 13], [16]]"},
    {"anchors_zero", "model:\n  anchors: [[10, 0]]\n", "model.anchors", "pairs of positive integers"},
    {"anchors_flat", "model:\n  anchors: [10, 13]\n", "model.anchors", "pairs of positive integers"},
    {"masks_two_groups", "model:\n  anchor_masks: [[0, 1], [2]]\n", "model.anchor_masks",
     "expected 3 groups of anchor indices (one per output, strides 32, 16, 8), got 2"},
    {"masks_out_of_range", "model:\n  anchor_masks: [[9], [1], [2]]\n", "model.anchor_masks",
     "anchor index 9 of anchor_masks is out of range for 9 anchors ([[9], [1], [2]])"},
    {"masks_empty_group", "model:\n  anchor_masks: [[], [1], [2]]\n", "model.anchor_masks",
     "every group of anchor_masks needs an anchor"},
    {"masks_negative", "model:\n  anchor_masks: [[-1], [1], [2]]\n", "model.anchor_masks",
     "expected a list of lists of anchor indices"},
    {"anchors_fewer_than_default_masks", "model:\n  anchors: [[10, 13], [16, 30]]\n", "model.anchors",
     "anchor index 6 of anchor_masks is out of range for 2 anchors (the default masks)"},
    {"ignore_threshold_zero", "model:\n  ignore_threshold: 0\n", "model.ignore_threshold",
     "expected an IoU in (0, 1], got 0"},
    {"ignore_threshold_big", "model:\n  ignore_threshold: 1.5\n", "model.ignore_threshold", "expected an IoU"},
    {"label_smooth_number", "model:\n  label_smooth: 0.1\n", "model.label_smooth", "expected True or False"},
    {"nms_score", "model:\n  nms_score_threshold: 2\n", "model.nms_score_threshold",
     "expected a score in [0, 1], got 2"},
    {"nms_topk", "model:\n  nms_topk: 0\n", "model.nms_topk", "expected a positive integer, got 0"},
    {"nms_keep_topk", "model:\n  nms_keep_topk: -1\n", "model.nms_keep_topk", "expected a positive integer"},
    {"nms_iou", "model:\n  nms_iou_threshold: 0\n", "model.nms_iou_threshold", "expected an IoU in (0, 1]"},
    {"dataset_type", "train_dataset:\n  type: VOC\n", "train_dataset.type",
     "unknown detection dataset type 'VOC' (supported: VOCDetection, CocoDetection)"},
    {"voc_unknown_key", "train_dataset:\n  shuffle: True\n", "train_dataset.shuffle", "unknown key for VOCDetection"},
    {"voc_key_typo", "train_dataset:\n  label_lists: x\n", "train_dataset.label_lists", "did you mean 'label_list'?"},
    {"voc_missing_file_list",
     "train_dataset:\n  _inherited_: False\n  type: VOCDetection\n  data_dir: d\n  label_list: l\n",
     "train_dataset.file_list", "missing (VOCDetection needs data_dir, file_list and label_list)"},
    {"voc_empty_path", "train_dataset:\n  data_dir: ''\n", "train_dataset.data_dir", "expected a path, got ''"},
    {"coco_missing_ann_file", "eval_dataset:\n  _inherited_: False\n  type: CocoDetection\n  data_dir: d\n",
     "eval_dataset.ann_file", "missing (CocoDetection needs data_dir and ann_file)"},
    {"coco_with_file_list", "eval_dataset:\n  file_list: f\n", "eval_dataset.file_list",
     "unknown key for CocoDetection"},
    {"allow_empty_word", "train_dataset:\n  allow_empty: sometimes\n", "train_dataset.allow_empty",
     "expected True or False"},
    {"empty_ratio_string", "train_dataset:\n  empty_ratio: half\n", "train_dataset.empty_ratio",
     "expected a number, got 'half'"},
    {"dataset_not_a_map", "eval_dataset: [1]\n", "eval_dataset", "expected a mapping of keys, got [1]"},
    {"transforms_not_a_list", "train_dataset:\n  transforms: {type: Normalize}\n", "train_dataset.transforms",
     "expected a list of transforms"},
    {"transform_not_a_map", "train_dataset:\n  transforms: [Normalize]\n", "train_dataset.transforms[0]",
     "expected a mapping of keys, got 'Normalize'"},
    {"transform_without_type", "train_dataset:\n  transforms:\n    - mean: [1, 2, 3]\n",
     "train_dataset.transforms[0].type", "missing (every transform names its type"},
    {"transform_type_list", "train_dataset:\n  transforms:\n    - type: [Resize]\n", "train_dataset.transforms[0].type",
     "expected a string, got ['Resize']"},
    {"transform_list_of_lists",
     "train_dataset:\n  transforms:\n    - type: BatchRandomResize\n      target_sizes: [[320, 320], [352, 352]]\n",
     "train_dataset.transforms[0].target_sizes", "lists of lists are not supported"},
    {"transform_list_of_strings", "eval_dataset:\n  transforms:\n    - {type: Resize, interp: [CUBIC, AREA]}\n",
     "eval_dataset.transforms[0].interp", "expected a list of numbers, got ['CUBIC', 'AREA']"},
    {"transform_mapping_arg", "eval_dataset:\n  transforms:\n    - {type: Resize, target_size: {h: 1}}\n",
     "eval_dataset.transforms[0].target_size", "expected a number, a boolean, a string or a list of numbers"},
    {"batch_transforms_per_sample", "eval_dataset:\n  batch_transforms:\n    - type: Normalize\n",
     "eval_dataset.batch_transforms[0].type",
     "'Normalize' is not a batch transform (batch: BatchRandomResize; per-sample transforms go in transforms)"},
    {"batch_transforms_not_a_list", "eval_dataset:\n  batch_transforms: 3\n", "eval_dataset.batch_transforms",
     "expected a list of transforms, got 3"},
};

}  // namespace

TEST_P(DetBadConfigs, ConfigErrorNamesFileAndKeyPath) {
  const DetBadCase& bc = GetParam();
  write("good.yml", kDetGood);
  const std::string p = write("bad.yml", std::string("_base_: good.yml\n") + bc.child);
  const std::string e = error_of([&] { load_det_train_config(p); });
  EXPECT_HAS(e, p + ": " + bc.key_path + ": ");
  EXPECT_HAS(e, bc.what);
  EXPECT_EQ(e.find('\n'), std::string::npos) << "one line: " << e;
  if (getenv("SHOW_ERRORS")) std::printf("%s\n", e.c_str());
}

INSTANTIATE_TEST_SUITE_P(Cases, DetBadConfigs, ::testing::ValuesIn(kDetBadCases),
                         [](const auto& info) { return std::string(info.param.name); });

// Every configs/yolov3_*.yml loads; the VOC and COCO ones carry PaddleX's defaults and tutorial transforms.
TEST(ProjectConfigs, Yolov3ConfigsLoad) {
  int n = 0;
  for (const auto& e : fs::directory_iterator(kRepo / "configs")) {
    const std::string name = e.path().filename().string();
    if (name.rfind("yolov3_", 0) != 0 || e.path().extension() != ".yml") continue;
    SCOPED_TRACE(name);
    EXPECT_EQ(config_task(e.path().string()), "detection");
    EXPECT_NO_THROW(load_det_train_config(e.path().string()));
    ++n;
  }
  EXPECT_GE(n, 2);
  for (const char* kind : {"voc", "coco"}) {
    SCOPED_TRACE(kind);
    const DetTrainConfig c =
        load_det_train_config((kRepo / ("configs/yolov3_darknet53_" + std::string(kind) + ".yml")).string());
    EXPECT_EQ(c.model.spec.backbone, "DarkNet53");
    EXPECT_EQ(c.model.spec.num_classes, 0);
    EXPECT_EQ(c.params.num_epochs, 270);
    EXPECT_EQ(c.params.train_batch_size, 8);
    EXPECT_EQ(c.params.learning_rate, 0.000125);
    EXPECT_EQ(c.params.warmup_steps, 1000);
    EXPECT_EQ(c.params.lr_decay_epochs, (std::vector<int64_t>{213, 240}));
    EXPECT_EQ(c.params.weight_decay, 5e-4);
    EXPECT_EQ(c.params.save_interval_epochs, 20);
    EXPECT_EQ(c.params.log_interval_steps, 2);
    EXPECT_EQ(c.params.pretrain_weights, "");
    const auto& tr = c.train_dataset;
    ASSERT_EQ(tr.transforms.size(), 6u);
    const std::vector<std::string> types = {"MixupImage", "RandomDistort",        "RandomExpand",
                                            "RandomCrop", "RandomHorizontalFlip", "Normalize"};
    for (size_t i = 0; i < types.size(); ++i) EXPECT_EQ(tr.transforms[i].type, types[i]);
    EXPECT_EQ(tr.transforms[0].args.at("mixup_epoch"), std::vector<double>{250});
    EXPECT_EQ(tr.transforms[2].args.at("im_padding_value"), (std::vector<double>{123.675, 116.28, 103.53}));
    ASSERT_EQ(tr.batch_transforms.size(), 1u);
    EXPECT_EQ(tr.batch_transforms[0].args.at("target_sizes"),
              (std::vector<double>{320, 352, 384, 416, 448, 480, 512, 544, 576, 608}));
    EXPECT_EQ(tr.batch_transforms[0].str_args.at("interp"), "RANDOM");
    ASSERT_TRUE(c.has_eval_dataset);
    ASSERT_EQ(c.eval_dataset.transforms.size(), 2u);
    EXPECT_EQ(c.eval_dataset.transforms[0].type, "Resize");
    EXPECT_EQ(c.eval_dataset.transforms[0].args.at("target_size"), std::vector<double>{608});
    EXPECT_EQ(c.eval_dataset.transforms[0].str_args.at("interp"), "CUBIC");
    EXPECT_EQ(c.eval_dataset.transforms[1].args.at("std"), (std::vector<double>{0.229, 0.224, 0.225}));
    if (std::string(kind) == "voc") {
      EXPECT_EQ(tr.type, "VOCDetection");
      EXPECT_EQ(tr.file_list, "dataset/voc/trainval.txt");
      EXPECT_EQ(c.eval_dataset.file_list, "dataset/voc/test.txt");
      EXPECT_EQ(c.params.metric, "VOC");
    } else {
      EXPECT_EQ(tr.type, "CocoDetection");
      EXPECT_EQ(tr.ann_file, "dataset/coco/annotations/instances_train2017.json");
      EXPECT_EQ(c.eval_dataset.data_dir, "dataset/coco/val2017");
      EXPECT_EQ(c.params.metric, "COCO");
    }
  }
}

// ------------------------------------------------------------------------- detection CLI flags

TEST(TrainArgsTest, DetectionFlags) {
  const TrainArgs a = train_args({"det.yml", "--num_epochs", "20", "--lr_decay_epochs", "30,40", "--metric=coco",
                                  "--learning_rate", "0.001", "--use_vdl", "False", "--pretrain_weights", "None",
                                  "--save_dir", "out", "--early_stop=True", "--seed", "5", "--opts", "momentum=0.8"});
  EXPECT_EQ(a.config, "det.yml");
  const DetFlagOverrides want = {{"num_epochs", "20"},       {"lr_decay_epochs", "30,40"}, {"metric", "coco"},
                                 {"learning_rate", "0.001"}, {"use_vdl", "False"},         {"pretrain_weights", "None"},
                                 {"save_dir", "out"},        {"early_stop", "True"},       {"seed", "5"}};
  EXPECT_EQ(a.det_flags, want);
  // The shared flags also set the PaddleSeg fields.
  EXPECT_EQ(a.learning_rate, 0.001);
  EXPECT_FALSE(a.use_vdl);
  EXPECT_EQ(a.save_dir, "out");
  EXPECT_EQ(a.seed, 5u);
  EXPECT_EQ(a.given_flags.front(), "--config");
  EXPECT_EQ(a.given_flags.size(), 11u);
  EXPECT_TRUE(train_args({"c.yml", "--use_vdl"}).use_vdl);
  EXPECT_EQ(train_args({"c.yml", "--use_vdl"}).det_flags, (DetFlagOverrides{{"use_vdl", "True"}}));
  EXPECT_TRUE(train_args({"c.yml"}).det_flags.empty());
  // Every train() parameter is a flag.
  for (const std::string& k : det_train_param_keys()) {
    const std::string v = k == "use_vdl" ? "True" : k == "learning_rate" ? "0.1" : "1";
    const TrainArgs b = train_args({"c.yml", "--" + k, v});
    ASSERT_EQ(b.det_flags.size(), 1u) << k;
    EXPECT_EQ(b.det_flags[0].first, k);
    EXPECT_HAS(train_usage(), "--" + k + " ");
  }
  EXPECT_HAS(train_usage(), "Detection (PaddleX train() parameters");
  EXPECT_HAS(error_of([] {
               train_args({"c.yml", "--use_vdl", "maybe"});
             }),
             "engine-train: --use_vdl: expected True or False, got 'maybe'");
  EXPECT_HAS(error_of([] { train_args({"c.yml", "--use_vdl", "1", "2"}); }), "--use_vdl: takes at most one value");
  EXPECT_HAS(error_of([] { train_args({"c.yml", "--num_epochs"}); }), "--num_epochs: needs a value");
  EXPECT_HAS(error_of([] {
               train_args({"c.yml", "--num_epoch", "3"});
             }),
             "unknown flag '--num_epoch' (did you mean '--num_epochs'?)");
}

// The flags of engine-train reach the detection config after --opts.
TEST_F(ConfigFiles, DetFlagsFromTheCommandLine) {
  const std::string p = write("det.yml", kDetGood);
  const TrainArgs t = train_args({p, "--num_epochs", "7", "--lr_decay_epochs", "3,5", "--opts", "num_epochs=9",
                                  "train_batch_size=4", "--metric", "voc"});
  const DetTrainConfig c = load_det_train_config(t.config, t.opts, t.det_flags);
  EXPECT_EQ(c.params.num_epochs, 7);
  EXPECT_EQ(c.params.train_batch_size, 4);
  EXPECT_EQ(c.params.lr_decay_epochs, (std::vector<int64_t>{3, 5}));
  EXPECT_EQ(c.params.metric, "VOC");
}

TEST(TrainArgsTest, FlagsOfTheOtherTask) {
  const TrainArgs seg = train_args({"c.yml", "--iters", "5", "--batch_size", "2", "--learning_rate", "0.1"});
  EXPECT_NO_THROW(check_train_args_for_task(seg, "segmentation"));
  EXPECT_HAS(error_of([&] { check_train_args_for_task(seg, "detection"); }),
             "engine-train: --iters: is a PaddleSeg flag; c.yml is a detection config (use --num_epochs)");
  const TrainArgs det = train_args({"c.yml", "--num_epochs", "5", "--seed", "1", "--use_vdl", "--save_dir", "o"});
  EXPECT_NO_THROW(check_train_args_for_task(det, "detection"));
  EXPECT_NO_THROW(check_train_args_for_task(det, "segmentation"));  // epochs work for segmentation too
  EXPECT_HAS(error_of([&] {
               check_train_args_for_task(train_args({"c.yml", "--metric", "VOC"}), "segmentation");
             }),
             "engine-train: --metric: is a detection (PaddleX) flag; c.yml is a segmentation config");
  // The shared flags are fine with both.
  const TrainArgs shared = train_args({"c.yml", "--learning_rate", "0.1", "--seed", "1", "--use_vdl", "--num_workers",
                                       "2", "--save_dir", "o", "--opts", "a=1", "--device", "cpu"});
  EXPECT_NO_THROW(check_train_args_for_task(shared, "segmentation"));
  EXPECT_NO_THROW(check_train_args_for_task(shared, "detection"));
  EXPECT_HAS(error_of([] {
               check_train_args_for_task(train_args({"c.yml", "--do_eval"}), "detection");
             }),
             "--do_eval: is a PaddleSeg flag; c.yml is a detection config (use an eval_dataset in the config)");
  // PaddleSeg's --repeats and --early_stop_intervals.
  const TrainArgs r = train_args({"c.yml", "--do_eval", "--repeats", "3", "--early_stop_intervals=4"});
  EXPECT_EQ(r.repeats, 3);
  EXPECT_EQ(r.early_stop_intervals, std::optional<int64_t>(4));
  EXPECT_EQ(train_args({"c.yml"}).repeats, 1);
  EXPECT_FALSE(train_args({"c.yml"}).early_stop_intervals.has_value());
  EXPECT_NO_THROW(check_train_args_for_task(r, "segmentation"));
  EXPECT_HAS(error_of([] { train_args({"c.yml", "--repeats", "0"}); }), "--repeats: expected a positive integer");
  EXPECT_HAS(error_of([] {
               train_args({"c.yml", "--early_stop_intervals", "0"});
             }),
             "--early_stop_intervals: expected a positive integer, got '0'");
  EXPECT_HAS(error_of([] {
               check_train_args_for_task(train_args({"c.yml", "--early_stop_intervals", "2"}), "segmentation");
             }),
             "engine-train: --early_stop_intervals: counts evaluations, so it needs --do_eval");
  EXPECT_HAS(error_of([] {
               check_train_args_for_task(
                   train_args({"c.yml", "--do_eval", "--early_stop_intervals", "2", "--early_stop", "True"}),
                   "segmentation");
             }),
             "--early_stop_intervals: PaddleX's --early_stop is given too; use one of them");
  EXPECT_NO_THROW(check_train_args_for_task(
      train_args({"c.yml", "--do_eval", "--early_stop_intervals", "2", "--early_stop", "False"}), "segmentation"));
  EXPECT_HAS(error_of([] {
               check_train_args_for_task(train_args({"c.yml", "--repeats", "2"}), "detection");
             }),
             "--repeats: is a PaddleSeg flag; c.yml is a detection config (use a file list that names the images "
             "more than once)");
  EXPECT_HAS(error_of([] {
               check_train_args_for_task(train_args({"c.yml", "--early_stop_intervals", "2"}), "detection");
             }),
             "(use --early_stop True --early_stop_patience N)");
}
