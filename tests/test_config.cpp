// labels: config sanitize
// PaddleSeg YAML configs (train/config.h) and the command lines of engine-train/-eval/-predict
// (train/cli_args.h). Checks: PaddleSeg's real configs load unchanged with the values of
// reference/ppliteseg.md §4.1/§4.2 (read from ../shared/reference, skipped when absent); the merge
// rules on hand-written files (dict merge, list replace, _inherited_, cycles, missing bases, which
// file an error names); --opts and the typed flags; every class of bad input gives a ConfigError
// naming the file and the key path; the project's configs/ load; CLI defaults, both flag syntaxes
// and errors.
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
  EXPECT_EQ(a.precision, "fp32");
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
               train_args({"--config", "c", "--precision", "fp16"});
             }),
             "--precision: only fp32 is supported, got 'fp16'");
  EXPECT_HAS(error_of([] {
               train_args({"--config", "c", "--device", "tpu"});
             }),
             "--device: expected cpu or gpu, got 'tpu'");
  EXPECT_HAS(error_of([] {
               train_args({"--config", "c", "--opts", "nokey"});
             }),
             "--opts: expected key=value, got 'nokey'");
  EXPECT_HAS(error_of([] { train_args({"--config", "c", "--opts"}); }), "--opts: needs at least one value");
  EXPECT_HAS(error_of([] { train_args({"--config", "c", "--use_ema"}); }), "is not supported");
  EXPECT_HAS(error_of([] { train_args({"--config", "c", "--seed", "-3"}); }), "--seed: expected an integer >= 0");
}

TEST(TrainArgsTest, Help) {
  // --help wins over everything else, even a missing --config or a bad value.
  EXPECT_TRUE(train_args({"--help"}).help);
  EXPECT_TRUE(train_args({"--iters", "x", "-h"}).help);
  EXPECT_HAS(train_usage(), "--config");
  EXPECT_HAS(train_usage(), "--keep_checkpoint_max");
  EXPECT_HAS(eval_usage(), "--aug_eval");
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
  EXPECT_TRUE(predict_args({"--help"}).help);
}
