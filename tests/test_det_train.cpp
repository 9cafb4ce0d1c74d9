// labels: trainer
// Detection trained the PaddleX way (train/det_task.h) on small synthetic shape sets
// (data/det_synthetic.h): the schedule at PaddleX's numbers (warmup ramp, decay at the absolute epoch
// boundaries 213 and 240), the warmup constraint at its edge (equal passes, one more step fails with
// PaddleX's message before anything is written), PaddleX's EarlyStop, the detection batch collate,
// a resumed run (from epoch_N/ and from a mid-epoch stop) bit-identical to an uninterrupted one,
// early stop ending a run, COCO data and the COCO metric (bbox_mmap with pycocotools' summary), and
// the emulated (or real) CUDA device giving the CPU's losses, and data-parallel steps of two input
// sizes replayed from CUDA graphs giving the eager weights. The learning run (bbox_map rising above a threshold) is the
// ctest `det_learns` (scripts/det_learning_check.sh).
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "data/det_loader.h"
#include "data/det_synthetic.h"
#include "engine/device.h"
#include "tests/harness/mirror_communicator.h"
#include "tests/harness/temp_dirs.h"
#include "train/det_config.h"
#include "train/det_task.h"
#include "train/early_stop.h"
#include "train/jsonl.h"
#include "train/safetensors.h"
#include "train/trainer.h"

namespace fs = std::filesystem;
using namespace engine;
using namespace engine::train;

namespace {

const fs::path& data_root() {
  static const fs::path root = [] {
    fs::path r = engine::testing::shared_test_dir("engine_det_train_data");
    data::SyntheticDetSpec s;
    s.root = r.string();
    s.train = 18;
    s.val = 4;
    s.height = s.width = 64;
    s.seed = 5;
    data::generate_synthetic_det(s);
    return r;
  }();
  return root;
}

fs::path fresh_dir(const std::string& name) { return engine::testing::fresh_test_dir("engine_det_train_" + name); }

// MobileNetV1-YOLOv3 on the tiny set: batch 4 -> 4 steps per epoch (18 // 4).
std::string write_config(const fs::path& dir, int epochs, const std::string& extra = "") {
  const std::string root = data_root().string();
  std::ostringstream y;
  y << "model:\n  type: YOLOv3\n  backbone: MobileNetV1\n"
    << "train_dataset:\n  type: VOCDetection\n  data_dir: " << root << "\n  file_list: " << root
    << "/train_list.txt\n  label_list: " << root << "/labels.txt\n  transforms:\n"
    << "    - type: RandomDistort\n    - type: RandomHorizontalFlip\n    - type: Normalize\n"
    << "  batch_transforms:\n    - type: BatchRandomResize\n      target_sizes: [64, 96]\n      interp: RANDOM\n"
    << "eval_dataset:\n  type: VOCDetection\n  data_dir: " << root << "\n  file_list: " << root
    << "/val_list.txt\n  label_list: " << root << "/labels.txt\n  transforms:\n"
    << "    - type: Resize\n      target_size: 64\n      interp: CUBIC\n    - type: Normalize\n"
    << "num_epochs: " << epochs << "\ntrain_batch_size: 4\nlearning_rate: 0.0005\nwarmup_steps: 2\n"
    << "lr_decay_epochs: [2]\nsave_interval_epochs: 1\nlog_interval_steps: 1\nnum_workers: 0\nseed: 3\n"
    << "save_dir: " << (dir / "out").string() << "\n"
    << extra;
  const fs::path p = dir / "config.yml";
  std::ofstream(p) << y.str();
  return p.string();
}

DetTrainConfig load(const std::string& path, const DetFlagOverrides& flags = {}) {
  return load_det_train_config(path, {}, flags);
}

TrainOptions run_options(Device d = Device::cpu()) {
  TrainOptions o;
  o.device = d;
  return o;
}

std::vector<nlohmann::json> records(const fs::path& save_dir, const std::string& type) {
  std::vector<nlohmann::json> out;
  for (const auto& r : read_jsonl((save_dir / "metrics.jsonl").string()))
    if (r["type"] == type) out.push_back(r);
  return out;
}

void expect_same_tensors(const std::string& a, const std::string& b) {
  const LoadedTensors x = load_safetensors(a), y = load_safetensors(b);
  ASSERT_EQ(x.tensors.size(), y.tensors.size());
  for (const auto& [name, t] : x.tensors) {
    const Tensor* u = y.find(name);
    ASSERT_NE(u, nullptr) << name;
    const auto va = t.to_vector(), vb = u->to_vector();
    ASSERT_EQ(va.size(), vb.size()) << name;
    ASSERT_EQ(std::memcmp(va.data(), vb.data(), va.size() * sizeof(float)), 0) << name;
  }
}

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

class StopWhenLogged : public std::stringbuf {
 public:
  StopWhenLogged(std::string text, std::atomic<int>& flag) : text_(std::move(text)), flag_(flag) {}
  int sync() override {
    if (str().find(text_) != std::string::npos) flag_.store(SIGINT);
    return 0;
  }

 private:
  std::string text_;
  std::atomic<int>& flag_;
};

}  // namespace

TEST(DetSchedule, PaddleXDefaultsAtTheSeedsNumbers) {
  // PaddleX 1.x YOLOv3 defaults: lr 1/8000, warmup 1000 steps from 0, decay x0.1 at epochs 213 and
  // 240 (absolute steps), 270 epochs; 10 steps per epoch here.
  DetTrainParams p;
  const int64_t spe = 10;
  const LRSchedule s = det_lr_schedule(p, spe);
  const double lr = 0.000125;
  EXPECT_DOUBLE_EQ(s.lr_at(0), 0.0);
  EXPECT_DOUBLE_EQ(s.lr_at(1), lr * 1 / 1000);
  EXPECT_DOUBLE_EQ(s.lr_at(500), lr * 0.5);
  EXPECT_DOUBLE_EQ(s.lr_at(999), lr * 999 / 1000);
  EXPECT_DOUBLE_EQ(s.lr_at(1000), lr);
  EXPECT_DOUBLE_EQ(s.lr_at(212 * spe), lr);        // epoch 213 (1-based) starts at step 2120
  EXPECT_DOUBLE_EQ(s.lr_at(213 * spe - 1), lr);    // last step of epoch 213
  EXPECT_DOUBLE_EQ(s.lr_at(213 * spe), lr * 0.1);  // first step of epoch 214
  EXPECT_DOUBLE_EQ(s.lr_at(240 * spe - 1), lr * 0.1);
  EXPECT_DOUBLE_EQ(s.lr_at(240 * spe), lr * 0.1 * 0.1);
  EXPECT_DOUBLE_EQ(s.lr_at(270 * spe - 1), lr * 0.1 * 0.1);
  EXPECT_EQ(det_steps_per_epoch(16551, 8), 2068);  // VOC07+12 trainval // 8 (drop last)
}

TEST(DetSchedule, WarmupConstraintAtItsEdge) {
  DetTrainParams p;
  p.lr_decay_epochs = {10, 20};
  p.warmup_steps = 50;
  EXPECT_NO_THROW(check_warmup_constraint(p, 5, "cfg.yml"));  // 50 <= 10 * 5
  p.warmup_steps = 51;
  try {
    check_warmup_constraint(p, 5, "cfg.yml");
    ADD_FAILURE() << "no error";
  } catch (const ConfigError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("cfg.yml: warmup_steps: In function train(), parameters must satisfy: warmup_steps <= "
                     "lr_decay_epochs[0] * num_steps_each_epoch"),
              std::string::npos)
        << m;
    EXPECT_NE(
        m.find("Either `warmup_steps` be less than 50 or lr_decay_epochs[0] be greater than 10 must be satisfied"),
        std::string::npos)
        << m;
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
  }
  p.warmup_steps = 0;  // PaddleX 2.x checks only with a warmup
  p.lr_decay_epochs = {0};
  EXPECT_NO_THROW(check_warmup_constraint(p, 5, "cfg.yml"));
}

TEST(DetSchedule, ConstraintStopsTheRunBeforeAnythingIsWritten) {
  const fs::path dir = fresh_dir("constraint");
  // 4 steps per epoch, decay at epoch 2: warmup 8 passes, 9 fails.
  const std::string cfg_path = write_config(dir, 3);
  std::ostringstream log;
  EXPECT_NO_THROW(load(cfg_path, {{"warmup_steps", "8"}, {"num_epochs", "1"}, {"save_interval_epochs", "5"}}));
  const DetTrainConfig bad = load(cfg_path, {{"warmup_steps", "9"}});
  const std::string m = error_of([&] { run_det_training(bad, run_options(), log); });
  EXPECT_NE(m.find("less than 8 or lr_decay_epochs[0] be greater than 2"), std::string::npos) << m;
  EXPECT_FALSE(fs::exists(dir / "out")) << "nothing may be written before the check";
  try {
    run_det_training(bad, run_options(), log);
  } catch (const ConfigError&) {  // engine-train maps ConfigError to exit code 2
    SUCCEED();
  } catch (...) {
    ADD_FAILURE() << "not a ConfigError";
  }
}

TEST(DetEarlyStop, PaddleXSemantics) {
  {  // a steady decline stops after `patience` evaluations that are not better than the previous one
    EarlyStop es(2);
    EXPECT_FALSE(es(0.5));   // first call: recorded (the maximum stays 0)
    EXPECT_FALSE(es(0.6));   // > max: reset
    EXPECT_FALSE(es(0.55));  // below the previous: 1 / 2
    EXPECT_EQ(es.counter(), 1);
    EXPECT_TRUE(es(0.54));  // 2 / 2
  }
  {  // within thresh of the previous counts as no progress; a rise that does not beat the max resets
    EarlyStop es(3);
    es(0.5);
    es(0.7);
    EXPECT_FALSE(es(0.69995));  // |diff| < 1e-4
    EXPECT_EQ(es.counter(), 1);
    EXPECT_FALSE(es(0.65));
    EXPECT_EQ(es.counter(), 2);
    EXPECT_FALSE(es(0.68));  // rises by more than thresh but stays under the max 0.7: reset
    EXPECT_EQ(es.counter(), 0);
    EXPECT_FALSE(es(0.71));
    EXPECT_EQ(es.counter(), 0);
    EXPECT_DOUBLE_EQ(es.max(), 0.71);
  }
  {  // the first score is never the max: a second equal score counts as no progress
    EarlyStop es(1);
    EXPECT_FALSE(es(0.0));
    EXPECT_TRUE(es(0.0));
  }
}

TEST(DetTrain, CollateNormalisesAndPadsBoxes) {
  data::DetSample a, b;
  a.image.h = 4, a.image.w = 8, a.image.c = 3, a.image.data.assign(4 * 8 * 3, 1.f);
  b.image.h = 6, b.image.w = 4, b.image.c = 3, b.image.data.assign(6 * 4 * 3, 2.f);
  a.boxes = {{0, 0, 4, 2}, {2, 1, 6, 3}};
  a.classes = {1, 3};
  a.scores = {1.f, 0.25f};
  a.orig_h = 40, a.orig_w = 80, a.scale_y = 0.1f, a.scale_x = 0.1f;
  b.boxes = {{1, 1, 3, 5}};
  b.classes = {2};
  b.scores = {1.f};
  data::Batch batch;
  data::collate_det({a, b}, 3, batch);
  EXPECT_EQ(batch.at("images").shape(), (Shape{2, 6, 8, 3}));  // padded to the largest h and w
  const auto img = batch.at("images").to_vector();
  EXPECT_EQ(img[0], 1.f);
  EXPECT_EQ(img[(5 * 8 + 7) * 3], 0.f);              // padding of image a
  EXPECT_EQ(img[6 * 8 * 3 + (5 * 8 + 3) * 3], 2.f);  // last pixel of image b
  EXPECT_EQ(img[6 * 8 * 3 + (5 * 8 + 4) * 3], 0.f);  // right of image b
  const auto box = batch.at("gt_box").to_vector();
  // a's first box (0,0)-(4,2) in the 8x6 padded image: cx 2/8, cy 1/6, w 4/8, h 2/6.
  EXPECT_FLOAT_EQ(box[0], 0.25f);
  EXPECT_FLOAT_EQ(box[1], 1.f / 6);
  EXPECT_FLOAT_EQ(box[2], 0.5f);
  EXPECT_FLOAT_EQ(box[3], 2.f / 6);
  EXPECT_EQ(std::vector<float>(box.begin() + 8, box.begin() + 12), std::vector<float>(4, 0.f));  // padding row
  EXPECT_EQ(batch.at("gt_class").dtype(), DType::I32);
  EXPECT_EQ(batch.at("gt_class").to_vector_i64(), (std::vector<int64_t>{1, 3, 0, 2, 0, 0}));
  EXPECT_EQ(batch.at("gt_score").to_vector(), (std::vector<float>{1.f, 0.25f, 0.f, 1.f, 0.f, 0.f}));
  EXPECT_EQ(batch.at("im_shape").to_vector(), (std::vector<float>{40, 80, 0, 0}));
  // More boxes than rows: the extra ones are dropped.
  data::Batch one;
  data::collate_det({a}, 1, one);
  EXPECT_EQ(one.at("gt_class").to_vector_i64(), (std::vector<int64_t>{1}));
}

TEST(DetTrain, TrainsEvaluatesAndResumesBitExactly) {
  const fs::path dir = fresh_dir("resume");
  const std::string cfg_path = write_config(dir, 3);
  std::ostringstream log;
  const DetTrainConfig cfg = load(cfg_path, {{"save_dir", (dir / "full").string()}});
  const TrainSummary s = run_det_training(cfg, run_options(), log);
  EXPECT_EQ(s.iters_done, 12) << log.str();
  for (const char* d : {"epoch_1", "epoch_2", "epoch_3", "best_model"})
    EXPECT_TRUE(fs::exists(dir / "full" / d / "model.safetensors")) << d;
  const std::string text = log.str();
  for (const char* line :
       {"[TRAIN] Epoch=1/3, Step=1/4, loss_xy=", "[TRAIN] Epoch 2 finished, loss_xy=",
        "Start to evaluate(total_samples=4, total_steps=4)...", "[EVAL] Finished, Epoch=3, bbox_map=",
        "Current evaluated best model on eval_dataset is epoch_", "Model saved in "})
    EXPECT_NE(text.find(line), std::string::npos) << line << "\n" << text;
  const auto train = records(dir / "full", "train");
  ASSERT_EQ(train.size(), 12u);
  EXPECT_TRUE(train[0].contains("loss_obj"));
  EXPECT_EQ(records(dir / "full", "eval").size(), 3u);
  // The learning rate: warmup over 2 steps, then 0.0005, x0.1 from epoch 3 (step 9).
  EXPECT_DOUBLE_EQ(train[0]["lr"].get<double>(), 0.0);
  EXPECT_DOUBLE_EQ(train[1]["lr"].get<double>(), 0.00025);
  EXPECT_DOUBLE_EQ(train[7]["lr"].get<double>(), 0.0005);
  EXPECT_NEAR(train[8]["lr"].get<double>(), 0.00005, 1e-12);

  // Resume from epoch_1/ into another folder: the same epoch_3/.
  const DetTrainConfig from1 = load(
      cfg_path, {{"save_dir", (dir / "resumed").string()}, {"resume_checkpoint", (dir / "full/epoch_1").string()}});
  run_det_training(from1, run_options(), log);
  expect_same_tensors((dir / "full/epoch_3/model.safetensors").string(),
                      (dir / "resumed/epoch_3/model.safetensors").string());

  // A stop in the middle of epoch 2 writes iter_6/, which resumes to the same epoch_3/.
  std::atomic<int> stop{0};
  StopWhenLogged buf("Epoch=2/3, Step=2/4", stop);
  std::ostream stop_log(&buf);
  TrainOptions o = run_options();
  o.stop_request = &stop;
  const DetTrainConfig stopped_cfg = load(cfg_path, {{"save_dir", (dir / "stopped").string()}});
  const TrainSummary st = run_det_training(stopped_cfg, o, stop_log);
  EXPECT_EQ(st.stopped_by_signal, SIGINT);
  EXPECT_EQ(st.iters_done, 6);
  EXPECT_EQ(st.last_checkpoint, (dir / "stopped/iter_6").string());
  const DetTrainConfig go_on =
      load(cfg_path, {{"save_dir", (dir / "stopped").string()}, {"resume_checkpoint", st.last_checkpoint}});
  run_det_training(go_on, run_options(), log);
  expect_same_tensors((dir / "full/epoch_3/model.safetensors").string(),
                      (dir / "stopped/epoch_3/model.safetensors").string());
}

TEST(DetTrain, EarlyStopEndsTheRun) {
  const fs::path dir = fresh_dir("early");
  // learning_rate 0 keeps the weights (the evaluations repeat the same bbox_map): the first
  // evaluation is recorded, the second and third count 1 / 2 and 2 / 2 -> stop after epoch 3.
  const DetTrainConfig cfg = load(write_config(dir, 6, "early_stop: True\nearly_stop_patience: 2\n"),
                                  {{"learning_rate", "1e-30"}, {"warmup_steps", "0"}});
  std::ostringstream log;
  const TrainSummary s = run_det_training(cfg, run_options(), log);
  EXPECT_TRUE(s.early_stopped) << log.str();
  EXPECT_EQ(s.iters_done, 12);
  EXPECT_NE(log.str().find("EarlyStopping: 2 / 2"), std::string::npos) << log.str();
  EXPECT_NE(log.str().find("EarlyStopping: Stop training"), std::string::npos);
  EXPECT_TRUE(fs::exists(dir / "out/epoch_3"));
  EXPECT_FALSE(fs::exists(dir / "out/epoch_4"));
}

TEST(DetTrain, CudaDeviceGivesTheCpuLosses) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device (real or emulated)";
  const fs::path dir = fresh_dir("device");
  const std::string cfg_path = write_config(dir, 1);
  std::ostringstream log;
  run_det_training(load(cfg_path, {{"save_dir", (dir / "cpu").string()}}), run_options(), log);
  run_det_training(load(cfg_path, {{"save_dir", (dir / "gpu").string()}}), run_options(Device::cuda(0)), log);
  const auto a = records(dir / "cpu", "train"), b = records(dir / "gpu", "train");
  ASSERT_EQ(a.size(), 4u);
  ASSERT_EQ(b.size(), 4u);
  // Step 1 is the same forward pass on both devices (lr 0 during the first warmup step, so step 2
  // too): tight. Then the weights differ in the last bits and training-mode BN over few values per
  // channel amplifies that, as in test_det_models.
  for (const char* term : {"loss", "loss_xy", "loss_wh", "loss_obj", "loss_cls"}) {
    EXPECT_NEAR(a[0][term].get<double>(), b[0][term].get<double>(), 1e-4 * std::fabs(a[0][term].get<double>())) << term;
    EXPECT_NEAR(a[1][term].get<double>(), b[1][term].get<double>(), 1e-3 * std::fabs(a[1][term].get<double>())) << term;
  }
  for (size_t i = 2; i < a.size(); ++i)
    EXPECT_NEAR(a[i]["loss"].get<double>(), b[i]["loss"].get<double>(), 5e-2 * a[i]["loss"].get<double>()) << i;
}

// Two mirrored ranks (tests/harness/mirror_communicator.h) on the emulated (or real) GPU, batches
// of two input sizes (BatchRandomResize [64, 96]): --cuda_graph on captures a step of each size, with
// the synchronised batch norms', the gradient buckets' and the loss terms' all-reduces inside, and
// trains to the eager run's weights and momentum, bit for bit, with the same logged loss terms.
TEST(DetTrain, DataParallelStepsOfEachInputSizeReplayedFromCudaGraphsGiveTheEagerWeights) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device (real or emulated)";
  const fs::path dir = fresh_dir("dp_graph");
  const std::string cfg_path = write_config(dir, 1);
  std::string logs[2];
  for (const bool graph : {false, true}) {
    engine::testing::MirrorCommunicator comm;
    TrainOptions o = run_options(Device::cuda(0));
    o.comm = &comm;
    o.cuda_graph = graph ? TrainOptions::CudaGraph::On : TrainOptions::CudaGraph::Off;
    std::ostringstream log;
    const TrainSummary s = run_det_training(load(cfg_path, {{"save_dir", (dir / (graph ? "graph" : "eager")).string()},
                                                            {"train_batch_size", "2"},
                                                            {"lr_decay_epochs", "[]"}}),
                                            o, log);
    logs[graph] = log.str();
    EXPECT_EQ(s.iters_done, 9) << log.str();  // (18 images as 2 ranks x 9, one per rank and step)
    EXPECT_NE(log.str().find("Convert bn to sync_bn"), std::string::npos) << log.str();
    // A size's first step runs eagerly, its second is captured and run from the graph, later ones
    // replay it: 7 of 9 run from a graph, each followed by the communicator.
    EXPECT_EQ(comm.followed, graph ? 7 : 0) << log.str();
  }
  EXPECT_NE(logs[1].find("CUDA graphs: 7 of 9 steps replayed from 2 capture(s)"), std::string::npos) << logs[1];
  EXPECT_EQ(logs[1].find("WARNING: this step cannot be a CUDA graph"), std::string::npos) << logs[1];
  const auto a = records(dir / "eager", "train"), b = records(dir / "graph", "train");
  ASSERT_EQ(a.size(), 9u);
  ASSERT_EQ(b.size(), 9u);
  for (size_t i = 0; i < a.size(); ++i)
    for (const char* term : {"loss", "loss_xy", "loss_wh", "loss_obj", "loss_cls"})
      EXPECT_EQ(a[i][term].get<double>(), b[i][term].get<double>()) << "step " << i + 1 << " " << term;
  expect_same_tensors((dir / "eager/epoch_1/model.safetensors").string(),
                      (dir / "graph/epoch_1/model.safetensors").string());
  expect_same_tensors((dir / "eager/epoch_1/optimizer.safetensors").string(),
                      (dir / "graph/epoch_1/optimizer.safetensors").string());
}

TEST(DetTrain, CocoDataAndTheCocoMetric) {
  // The synthetic VOC set rewritten as COCO JSON files (bbox [x, y, w, h], category ids 1..4): a run
  // on CocoDetection reports bbox_mmap with pycocotools' summary; a VOC set with metric COCO too.
  const fs::path dir = fresh_dir("coco");
  const std::string root = data_root().string();
  auto write_json = [&](const std::string& list, const fs::path& out) {
    data::DetDatasetSpec spec;
    spec.data_dir = root;
    spec.file_list = root + "/" + list;
    spec.label_list = root + "/labels.txt";
    const data::DetDataset voc(spec);
    nlohmann::json j;
    j["categories"] = nlohmann::json::array();
    for (size_t c = 0; c < voc.labels().size(); ++c)
      j["categories"].push_back({{"id", c + 1}, {"name", voc.labels()[c]}});
    j["images"] = nlohmann::json::array();
    j["annotations"] = nlohmann::json::array();
    int ann_id = 1;
    for (int64_t i = 0; i < voc.size(); ++i) {
      const data::DetRecord& r = voc.record(i);
      j["images"].push_back({{"id", i + 1},
                             {"file_name", fs::relative(r.image, root).string()},
                             {"height", r.height},
                             {"width", r.width}});
      for (size_t k = 0; k < r.boxes.size(); ++k) {
        const auto& b = r.boxes[k];
        j["annotations"].push_back({{"id", ann_id++},
                                    {"image_id", i + 1},
                                    {"category_id", r.classes[k] + 1},
                                    {"bbox", {b[0], b[1], b[2] - b[0], b[3] - b[1]}},
                                    {"area", (b[2] - b[0]) * (b[3] - b[1])},
                                    {"iscrowd", 0}});
      }
    }
    std::ofstream(out) << j.dump();
  };
  write_json("train_list.txt", dir / "train.json");
  write_json("val_list.txt", dir / "val.json");
  std::ostringstream y;
  y << "model:\n  type: YOLOv3\n  backbone: MobileNetV1\n"
    << "train_dataset:\n  type: CocoDetection\n  data_dir: " << root
    << "\n  ann_file: " << (dir / "train.json").string()
    << "\n  transforms:\n    - type: Normalize\n  batch_transforms:\n    - type: BatchRandomResize\n      "
       "target_sizes: [64]\n"
    << "eval_dataset:\n  type: CocoDetection\n  data_dir: " << root << "\n  ann_file: " << (dir / "val.json").string()
    << "\n  transforms:\n    - type: Resize\n      target_size: 64\n    - type: Normalize\n"
    << "num_epochs: 1\ntrain_batch_size: 4\nlearning_rate: 0.0005\nwarmup_steps: 0\nlr_decay_epochs: []\n"
    << "save_interval_epochs: 1\nnum_workers: 0\nsave_dir: " << (dir / "out").string() << "\n";
  std::ofstream(dir / "coco.yml") << y.str();
  std::ostringstream log;
  const TrainSummary s = run_det_training(load((dir / "coco.yml").string()), run_options(), log);
  EXPECT_EQ(s.best_metric_name, "bbox_mmap");
  EXPECT_GE(s.best_metric, 0.0);
  EXPECT_LE(s.best_metric, 1.0);  // a fraction, as PaddleX's COCO metric
  EXPECT_NE(log.str().find("[EVAL] Finished, Epoch=1, bbox_mmap="), std::string::npos) << log.str();
  EXPECT_NE(log.str().find(" Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] ="),
            std::string::npos);
  const auto ev = records(dir / "out", "eval");
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0]["coco_stats"].size(), 12u);

  // A VOC set evaluated with the COCO metric.
  const DetTrainConfig voc_coco = load(write_config(dir, 1, "metric: COCO\n"), {{"save_dir", (dir / "voc").string()}});
  const TrainSummary v = run_det_training(voc_coco, run_options(), log);
  EXPECT_EQ(v.best_metric_name, "bbox_mmap");
}
