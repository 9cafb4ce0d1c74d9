#include "train/trainer.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <ctime>
#include <deque>
#include <filesystem>
#include <memory>
#include <ostream>
#include <sstream>

#include "data/dataset.h"
#include "data/loader.h"
#include "engine/allocator.h"
#include "engine/ops/optim.h"
#include "engine/profiler.h"
#include "models/layers.h"
#include "models/pp_liteseg.h"
#include "train/communicator.h"
#include "train/evaluate.h"
#include "train/event_writer.h"
#include "train/jsonl.h"
#include "train/lr_schedule.h"
#include "train/run_dir.h"
#include "train/safetensors.h"
#include "train/seg_loss.h"
#include "train/seg_metrics.h"
#include "train/stop_signal.h"

namespace fs = std::filesystem;

namespace engine::train {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// "[2025/04/15 15:01:15] INFO: " as PaddleSeg's logger prints it.
std::string log_prefix() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "[%Y/%m/%d %H:%M:%S] INFO: ", &tm);
  return buf;
}

std::string eta_string(double seconds) {
  const long long s = std::max(0LL, (long long)std::llround(seconds));
  char buf[64];
  std::snprintf(buf, sizeof buf, "%02lld:%02lld:%02lld", s / 3600, (s / 60) % 60, s % 60);
  return buf;
}

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

bool is_url(const std::string& s) { return s.rfind("http://", 0) == 0 || s.rfind("https://", 0) == 0; }

void load_pretrained(nn::SegModel& model, const std::string& path, const std::string& key, const std::string& prefix,
                     std::ostream& log) {
  if (path.empty()) return;
  if (is_url(path)) {
    log << log_prefix() << "WARNING: " << key << " is a URL (" << path
        << "); this engine does not download weights, so training starts from random initialisation. "
        << "To start from pretrained weights, convert them to a .safetensors file and give its local path." << std::endl;
    return;
  }
  ENGINE_CHECK(fs::exists(path), key, ": pretrained weights file not found: ", path);
  LoadedTensors file = load_safetensors(path);
  std::vector<std::pair<std::string, Tensor>> entries;
  for (auto& [name, t] : file.tensors) entries.emplace_back(prefix + name, t);
  model.load_matching(entries, &log);  // logs "There are X/Y variables loaded into ..." and each skip
}

std::string join(const std::deque<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ",") + x;
  return s;
}
std::deque<std::string> split_list(const std::string& s) {
  std::deque<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

const std::string& meta_at(const LoadedTensors& f, const std::string& key) {
  auto it = f.metadata.find(key);
  ENGINE_CHECK(it != f.metadata.end(), "checkpoint '", f.path, "': metadata has no '", key,
               "' (not an optimizer checkpoint written by engine-train?)");
  return it->second;
}

// A metadata integer, checked whole: "12x", "" or out of range name the file and key.
int64_t meta_int(const LoadedTensors& f, const std::string& key) {
  const std::string& v = meta_at(f, key);
  errno = 0;
  char* end = nullptr;
  const long long x = std::strtoll(v.c_str(), &end, 10);
  ENGINE_CHECK(!v.empty() && *end == '\0' && errno == 0, "checkpoint '", f.path, "': metadata '", key, "' is '", v,
               "', not an integer");
  return x;
}

double meta_double(const LoadedTensors& f, const std::string& key) {
  const std::string& v = meta_at(f, key);
  char* end = nullptr;
  const double x = std::strtod(v.c_str(), &end);
  ENGINE_CHECK(!v.empty() && *end == '\0', "checkpoint '", f.path, "': metadata '", key, "' is '", v,
               "', not a number");
  return x;
}

bool same_value(double a, double b) { return a == b || std::fabs(a - b) <= 1e-9 * std::max(std::fabs(a), std::fabs(b)); }

}  // namespace

TrainSummary run_training(const TrainConfig& cfg, const TrainOptions& opt, std::ostream& log) {
  check_trainable(cfg);
  ENGINE_CHECK(opt.save_interval > 0, "--save_interval must be positive, got ", opt.save_interval);
  ENGINE_CHECK(opt.log_iters > 0, "--log_iters must be positive, got ", opt.log_iters);
  const Device dev = opt.device;
  const fs::path save_dir(opt.save_dir);
  TrainSummary summary;
  auto stop_signal = [&opt]() { return opt.stop_request ? opt.stop_request->load() : 0; };

  // ---- resume metadata first: it decides the seed the data order and init were drawn with
  std::unique_ptr<LoadedTensors> resume_model, resume_opt;
  std::string resume_dir;
  if (!opt.resume_model.empty()) {
    resume_dir = fs::path(opt.resume_model).lexically_normal().string();
    while (resume_dir.size() > 1 && resume_dir.back() == '/') resume_dir.pop_back();
    ENGINE_CHECK(fs::is_directory(resume_dir), "--resume_model: directory not found: ", opt.resume_model,
                 " (expected a checkpoint folder such as output/iter_500)");
    const std::string mf = (fs::path(resume_dir) / kModelFile).string(), of = (fs::path(resume_dir) / kOptimizerFile).string();
    ENGINE_CHECK(fs::exists(mf), "--resume_model: ", mf, " is missing");
    ENGINE_CHECK(fs::exists(of), "--resume_model: ", of, " is missing (best_model/ holds weights only; resume from an iter_N folder)");
    resume_model = std::make_unique<LoadedTensors>(load_safetensors(mf));
    resume_opt = std::make_unique<LoadedTensors>(load_safetensors(of));
    const int64_t model_iter = meta_int(*resume_model, "iter"), opt_iter = meta_int(*resume_opt, "iter");
    ENGINE_CHECK(model_iter == opt_iter, "--resume_model ", resume_dir, ": ", kModelFile, " is from iter ", model_iter,
                 " but ", kOptimizerFile, " from iter ", opt_iter, " (files of two checkpoints mixed)");
  }
  uint64_t seed = opt.seed;
  if (resume_opt) {
    const uint64_t ckpt_seed = (uint64_t)meta_int(*resume_opt, "seed");
    if (opt.seed_given && ckpt_seed != opt.seed)
      log << log_prefix() << "WARNING: --seed " << opt.seed << " differs from the checkpoint's seed " << ckpt_seed
          << "; using the checkpoint's so the data order continues" << std::endl;
    seed = ckpt_seed;
  }

  // ---- model
  nn::SegModelSpec mspec = cfg.model;
  mspec.seed = seed;
  std::shared_ptr<nn::SegModel> model = nn::build_seg_model(mspec);
  load_pretrained(*model, mspec.backbone_pretrained, mspec.where + ".backbone.pretrained", "backbone.", log);
  load_pretrained(*model, mspec.pretrained, mspec.where + ".pretrained", "", log);
  model->to(dev);
  model->train();
  std::vector<std::pair<std::string, Tensor>> named = model->named_parameters();
  std::vector<Tensor> params, velocities;
  for (auto& [name, p] : named) {
    params.push_back(p);
    velocities.push_back(Tensor::zeros(p.shape(), DType::F32, dev));
  }

  // ---- data
  std::shared_ptr<const data::SegDataset> train_set = data::make_dataset(cfg.train_dataset);
  std::shared_ptr<const data::SegDataset> val_set;
  if (opt.do_eval) {
    if (cfg.has_val_dataset)
      val_set = data::make_dataset(cfg.val_dataset);
    else
      log << log_prefix() << "WARNING: --do_eval given but the config has no val_dataset: no evaluation" << std::endl;
  }
  data::LoaderOptions lopt;
  lopt.batch_size = cfg.batch_size;
  lopt.shuffle = true;
  lopt.drop_last = true;
  lopt.num_workers = opt.num_workers;
  lopt.seed = seed;
  data::DataLoader loader(train_set, lopt);
  ENGINE_CHECK(loader.batches_per_epoch() > 0, cfg.train_dataset.where, ": ", train_set->size(),
               " images are fewer than one batch of ", cfg.batch_size, " (drop_last)");

  const SegLoss loss_fn(cfg.loss, train_set->num_classes(), dev);
  const LRSchedule schedule(cfg.lr_scheduler, cfg.iters);
  std::unique_ptr<Communicator> comm = make_local_communicator();
  if (comm->world_size() > 1) {  // as Paddle's convert_sync_batchnorm under a multi-process launch
    Communicator& c = *comm;
    const int n = nn::set_sync_batch_norm(*model, [&c](const std::vector<Tensor>& t) { c.all_reduce_sum(t); });
    log << log_prefix() << "Convert bn to sync_bn (" << n << " layers)" << std::endl;
  }

  // ---- state restored on resume
  int64_t start_iter = 0;
  double best_miou = -1.0;
  int64_t best_iter = -1;
  std::deque<std::string> kept;  // iter_N folders in save_dir this run (and the runs it resumes) wrote, oldest first
  std::string last_good;         // the newest complete checkpoint to resume from; empty when none
  if (resume_model) {
    const std::string mf = (fs::path(resume_dir) / kModelFile).string(), of = (fs::path(resume_dir) / kOptimizerFile).string();
    const LoadedTensors& ro = *resume_opt;
    // What the data position and the exact-resume promise depend on must match; the optimizer's
    // settings may change (with a warning: the run is then not the uninterrupted one).
    const std::string fresh_hint = "; to go on with other settings, start a new run from its weights: --opts model.pretrained=" + mf;
    if (ro.metadata.count("batch_size") && meta_int(ro, "batch_size") != cfg.batch_size)
      throw ConfigError("--resume_model " + resume_dir + ": the checkpoint was trained with batch_size " +
                        std::to_string(meta_int(ro, "batch_size")) + ", this run has batch_size " +
                        std::to_string(cfg.batch_size) + "; its data position is counted in batches, so resuming needs the same batch_size" + fresh_hint);
    if (ro.metadata.count("train_images") && meta_int(ro, "train_images") != train_set->size())
      throw ConfigError("--resume_model " + resume_dir + ": the checkpoint was trained on " +
                        std::to_string(meta_int(ro, "train_images")) + " training images, this run's train set (" +
                        cfg.train_dataset.where + ") has " + std::to_string(train_set->size()) +
                        "; its data order and position belong to that set, so resuming needs the same one" + fresh_hint);
    const int64_t next_epoch = meta_int(ro, "next_epoch"), next_batch = meta_int(ro, "next_batch");
    if (next_epoch < 0 || next_batch < 0 || next_batch >= loader.batches_per_epoch())
      throw ConfigError("--resume_model " + resume_dir + ": the checkpoint's data position (epoch " +
                        std::to_string(next_epoch + 1) + ", batch " + std::to_string(next_batch + 1) +
                        ") does not exist with this run's batch_size " + std::to_string(cfg.batch_size) + " and " +
                        std::to_string(train_set->size()) + " training images (" +
                        std::to_string(loader.batches_per_epoch()) + " batches per epoch); resume with the batch_size and train set it was trained with" + fresh_hint);
    if (ro.metadata.count("momentum") && ro.metadata.count("weight_decay")) {
      const double m = meta_double(ro, "momentum"), wd = meta_double(ro, "weight_decay");
      if (!same_value(m, cfg.optimizer.momentum) || !same_value(wd, cfg.optimizer.weight_decay))
        log << log_prefix() << "WARNING: --resume_model " << resume_dir << ": the checkpoint was trained with momentum "
            << fmt("%g", m) << ", weight_decay " << fmt("%g", wd) << "; this run uses momentum "
            << fmt("%g", cfg.optimizer.momentum) << ", weight_decay " << fmt("%g", cfg.optimizer.weight_decay)
            << ": training continues with this run's values, so it is no longer the run the checkpoint came from"
            << std::endl;
    }

    check_tensors_match(*resume_model, model->state_dict(), mf);
    model->load_state_dict(resume_model->tensors, true);
    std::vector<std::pair<std::string, Tensor>> expected_v;
    for (size_t i = 0; i < named.size(); ++i) expected_v.emplace_back(named[i].first + ".velocity", velocities[i]);
    check_tensors_match(ro, expected_v, of);
    for (size_t i = 0; i < named.size(); ++i) velocities[i].copy_(*ro.find(named[i].first + ".velocity"));
    start_iter = meta_int(ro, "iter");
    ENGINE_CHECK(start_iter >= 0, "checkpoint '", of, "': metadata 'iter' is ", start_iter);
    best_miou = meta_double(ro, "best_miou");
    best_iter = meta_int(ro, "best_iter");
    if (ro.metadata.count("lr_next")) {
      const double ck = meta_double(ro, "lr_next"), here = schedule.lr_at(start_iter);
      if (!same_value(ck, here))
        log << log_prefix() << "WARNING: --resume_model " << resume_dir << ": the learning rate at iter "
            << start_iter + 1 << " is " << fmt("%.6g", here) << " with this run's schedule but "
            << fmt("%.6g", ck) << " with the checkpoint's (iters, learning_rate or lr_scheduler changed); training "
            << "continues with this run's schedule" << std::endl;
    }
    // The list names folders of the checkpoint's own save_dir: kept only when training goes on there.
    std::error_code ec;
    const fs::path resume_parent = fs::path(resume_dir).has_parent_path() ? fs::path(resume_dir).parent_path() : ".";
    if (fs::exists(save_dir, ec) && fs::equivalent(resume_parent, save_dir, ec)) {
      for (const std::string& name : split_list(meta_at(ro, "checkpoints"))) {
        ENGINE_CHECK(parse_iter_dir_name(name) >= 0, "checkpoint '", of, "': metadata 'checkpoints' lists '", name,
                     "', not an iter_N folder name");
        kept.push_back(name);
      }
    }
    loader.seek(next_epoch, next_batch);
    last_good = resume_dir;
    log << log_prefix() << "Resume model from " << resume_dir << " (iter " << start_iter << ")" << std::endl;
  }
  if (start_iter >= cfg.iters) {
    log << log_prefix() << "Nothing to train: the checkpoint is at iter " << start_iter << " and iters is " << cfg.iters
        << std::endl;
    summary.iters_done = start_iter;
    return summary;
  }

  // ---- the run folder: one writer, nothing of an earlier run clobbered, stale temporaries removed
  fs::create_directories(save_dir);
  const RunDirLock lock(save_dir);
  if (!lock.held())
    log << log_prefix() << "WARNING: the file system of " << save_dir.string()
        << " has no file locks: nothing stops a second run from writing into it at the same time" << std::endl;
  clean_stale_temporaries(save_dir, lock.held(), log, log_prefix());
  const RunContents earlier = prepare_run_dir(
      {save_dir, resume_dir.empty() ? fs::path() : fs::path(resume_dir), start_iter, opt.overwrite}, log, log_prefix());
  if (resume_model && earlier.best_model && earlier.best_model_miou > best_miou) {
    // best_model/ was written after the checkpoint (the run ended before its iter_N/): keep it as the bar.
    best_miou = earlier.best_model_miou;
    best_iter = earlier.best_model_iter;
    log << log_prefix() << "best_model/ (iter " << best_iter << ", mIoU " << fmt("%.4f", best_miou)
        << ") is newer than the checkpoint; it is replaced only by a higher mIoU" << std::endl;
  }

  std::unique_ptr<EventWriter> vdl;
  if (opt.use_vdl) vdl = std::make_unique<EventWriter>(save_dir.string());
  // prepare_run_dir left either no metrics.jsonl or the resumed run's records up to start_iter.
  JsonlWriter jsonl((save_dir / "metrics.jsonl").string(), /*append=*/true);

  log << log_prefix() << "Model " << mspec.type << " (" << mspec.backbone << ", " << train_set->num_classes()
      << " classes): " << model->num_trainable_parameters() << " trainable parameters; device " << dev.str()
      << "; train images " << train_set->size() << ", " << loader.batches_per_epoch() << " iters per epoch"
      << (val_set ? "; val images " + std::to_string(val_set->size()) : std::string()) << std::endl;
  if (opt.profile) {
    profiler::reset();
    profiler::set_enabled(true);
  }

  // ---- loop
  const InferOptions eval_opt{cfg.test_config.aug_eval, cfg.test_config.scales, cfg.test_config.flip_horizontal,
                              cfg.test_config.flip_vertical};
  const size_t nterms = loss_fn.num_terms();
  double win_loss = 0, win_batch = 0, win_reader = 0;
  std::vector<double> win_terms(nterms, 0.0);
  int64_t win_n = 0;
  int64_t next_epoch = 0, next_batch = 0, epoch = 0;
  int64_t last_saved_iter = start_iter;
  Clock::time_point batch_start = Clock::now(), window_start = batch_start;
  if (dev.is_cuda()) reset_peak_memory_stats(dev);

  // iter_N/: weights, momentum and everything an exact resume needs; prunes beyond keep_checkpoint_max.
  auto save_iter_checkpoint = [&](int64_t iter) {
    const std::string name = "iter_" + std::to_string(iter);
    kept.erase(std::remove(kept.begin(), kept.end(), name), kept.end());
    kept.push_back(name);
    std::deque<std::string> to_remove;
    if (opt.keep_checkpoint_max > 0)
      while ((int)kept.size() > opt.keep_checkpoint_max) {
        to_remove.push_back(kept.front());
        kept.pop_front();
      }
    const std::vector<std::pair<std::string, Tensor>> model_state = model->state_dict();
    std::vector<std::pair<std::string, Tensor>> opt_state;
    for (size_t i = 0; i < named.size(); ++i) opt_state.emplace_back(named[i].first + ".velocity", velocities[i]);
    const std::map<std::string, std::string> opt_meta = {
        {"iter", std::to_string(iter)},
        {"seed", std::to_string(seed)},
        {"next_epoch", std::to_string(next_epoch)},
        {"next_batch", std::to_string(next_batch)},
        {"batch_size", std::to_string(cfg.batch_size)},
        {"train_images", std::to_string(train_set->size())},
        {"best_miou", fmt("%.17g", best_miou)},
        {"best_iter", std::to_string(best_iter)},
        {"checkpoints", join(kept)},
        {"lr_next", fmt("%.17g", schedule.lr_at(iter))},
        {"momentum", fmt("%.17g", cfg.optimizer.momentum)},
        {"weight_decay", fmt("%.17g", cfg.optimizer.weight_decay)},
        {"optimizer", "Momentum(momentum=" + fmt("%g", cfg.optimizer.momentum) +
                          ", weight_decay=" + fmt("%g", cfg.optimizer.weight_decay) + ")"}};
    save_checkpoint_dir(save_dir / name, {{kModelFile, &model_state, {{"iter", std::to_string(iter)}}},
                                          {kOptimizerFile, &opt_state, opt_meta}});
    last_good = (save_dir / name).string();
    last_saved_iter = iter;
    for (const std::string& old : to_remove) {
      try {
        remove_checkpoint_dir(save_dir / old);
      } catch (const std::exception& e) {  // a checkpoint that cannot be pruned is no reason to stop training
        log << log_prefix() << "WARNING: cannot remove " << (save_dir / old).string() << ": " << e.what() << std::endl;
      }
    }
  };

  for (int64_t iter = start_iter + 1; iter <= cfg.iters; ++iter) {
    if (const int sig = stop_signal()) {  // iterations up to iter - 1 are complete
      summary.stopped_by_signal = sig;
      if (opt.save_on_stop && iter - 1 > last_saved_iter) {
        save_iter_checkpoint(iter - 1);
        summary.stop_checkpoint_written = true;
      }
      log << log_prefix() << "Stopped by " << signal_name(sig) << " after iter " << iter - 1 << std::endl;
      break;
    }
    data::Batch batch = loader.next();
    epoch = batch.epoch;
    next_epoch = batch.epoch;
    next_batch = batch.batch_in_epoch + 1;
    if (next_batch == loader.batches_per_epoch()) {
      next_epoch += 1;
      next_batch = 0;
    }
    const Tensor images = batch.images.to(dev), labels = batch.labels.to(dev);
    const double reader_cost = seconds_since(batch_start);

    const std::vector<Tensor> logits = model->forward(images);
    const SegLossValues lv = loss_fn(logits, labels);
    const double total = lv.total.item();
    if (!std::isfinite(total)) {
      throw TrainingDiverged("training diverged: the loss is " + fmt("%g", total) + " at iter " +
                             std::to_string(iter) + "; stopped before the optimizer step. Last good checkpoint: " +
                             (last_good.empty() ? std::string("none was saved") : last_good) +
                             ". Lower the learning rate or check the labels.");
    }
    lv.total.backward();
    std::vector<Tensor> grads;
    for (const Tensor& p : params) grads.push_back(p.grad());
    std::vector<Tensor> present;
    for (const Tensor& g : grads)
      if (g.defined()) present.push_back(g);
    comm->all_reduce_mean(present);
    const double lr = schedule.lr_at(iter - 1);
    sgd_momentum_update(params, grads, velocities, (float)lr, (float)cfg.optimizer.momentum,
                        (float)cfg.optimizer.weight_decay);
    for (Tensor& p : params) p.zero_grad();

    win_loss += total;
    for (size_t i = 0; i < nterms; ++i) win_terms[i] += lv.terms[i].item();
    win_reader += reader_cost;
    win_batch += seconds_since(batch_start);
    win_n += 1;
    summary.iters_done = iter;

    if (iter % opt.log_iters == 0 || iter == cfg.iters) {
      const double avg_loss = win_loss / (double)win_n, avg_batch = win_batch / (double)win_n;
      const double avg_reader = win_reader / (double)win_n;
      const double ips = (double)cfg.batch_size * (double)win_n / win_batch;
      std::string line = log_prefix() + "[TRAIN] epoch: " + std::to_string(epoch + 1) + ", iter: " + std::to_string(iter) +
                         "/" + std::to_string(cfg.iters) + ", loss: " + fmt("%.4f", avg_loss) + ", lr: " +
                         fmt("%.6f", lr) + ", batch_cost: " + fmt("%.4f", avg_batch) + ", reader_cost: " +
                         fmt("%.5f", avg_reader) + ", ips: " + fmt("%.4f", ips) + " samples/sec";
      if (dev.is_cuda()) {
        const MemoryStats ms = memory_stats(dev);
        line += ", max_mem_reserved: " + std::to_string(ms.reserved_peak >> 20) + " MB, max_mem_allocated: " +
                std::to_string(ms.allocated_peak >> 20) + " MB";
      }
      line += " | ETA " + eta_string((double)(cfg.iters - iter) * avg_batch);
      log << line << std::endl;
      summary.last_loss = avg_loss;
      nlohmann::json rec = {{"type", "train"}, {"iter", iter},           {"epoch", epoch + 1},
                            {"loss", avg_loss}, {"lr", lr},              {"batch_cost", avg_batch},
                            {"reader_cost", avg_reader}, {"ips", ips}};
      std::vector<double> terms_avg;
      for (double t : win_terms) terms_avg.push_back(t / (double)win_n);
      rec["loss_terms"] = terms_avg;
      jsonl.write(rec);
      if (vdl) {
        vdl->add_scalar("Train/loss", avg_loss, iter);
        if (nterms > 1)
          for (size_t i = 0; i < nterms; ++i) vdl->add_scalar("Train/loss_" + std::to_string(i), terms_avg[i], iter);
        vdl->add_scalar("Train/lr", lr, iter);
        vdl->add_scalar("Train/batch_cost", avg_batch, iter);
        vdl->add_scalar("Train/reader_cost", avg_reader, iter);
      }
      if (opt.profile) {
        log << "Per-op time over the last " << win_n << " iterations:\n"
            << profiler::report(seconds_since(window_start)) << std::flush;
        profiler::reset();
      }
      win_loss = win_batch = win_reader = 0;
      std::fill(win_terms.begin(), win_terms.end(), 0.0);
      win_n = 0;
    }

    if (iter % opt.save_interval == 0 || iter == cfg.iters) {
      if (val_set) {
        if (opt.profile) profiler::set_enabled(false);
        const EvalResult r = evaluate(*model, *val_set, dev, eval_opt, log, opt.stop_request);
        if (opt.profile) profiler::set_enabled(true);
        if (!r.cancelled) {
          std::istringstream lines(format_eval_lines(r.metrics, r.num_images));
          for (std::string l; std::getline(lines, l);) log << log_prefix() << l << std::endl;
          jsonl.write({{"type", "eval"}, {"iter", iter}, {"miou", r.metrics.miou}, {"acc", r.metrics.acc},
                       {"kappa", r.metrics.kappa}, {"dice", r.metrics.mdice}, {"class_iou", r.metrics.class_iou},
                       {"class_precision", r.metrics.class_precision}, {"class_recall", r.metrics.class_recall}});
          if (vdl) {
            vdl->add_scalar("Evaluate/mIoU", r.metrics.miou, iter);
            vdl->add_scalar("Evaluate/Acc", r.metrics.acc, iter);
          }
          if (r.metrics.miou > best_miou) {
            best_miou = r.metrics.miou;
            best_iter = iter;
            const std::vector<std::pair<std::string, Tensor>> weights = model->state_dict();
            save_checkpoint_dir(save_dir / "best_model",
                                {{kModelFile, &weights,
                                  {{"iter", std::to_string(iter)}, {"miou", fmt("%.17g", best_miou)},
                                   {"acc", fmt("%.17g", r.metrics.acc)}}}});
          }
          log << log_prefix() << "[EVAL] The model with the best validation mIoU (" << fmt("%.4f", best_miou)
              << ") was saved at iter " << best_iter << "." << std::endl;
        }
      }
      save_iter_checkpoint(iter);
      batch_start = Clock::now();  // evaluation and saving are not part of batch_cost
      window_start = batch_start;
      continue;
    }
    batch_start = Clock::now();
    if (win_n == 0) window_start = batch_start;
  }
  if (opt.profile) profiler::set_enabled(false);
  summary.best_miou = best_miou;
  summary.best_iter = best_iter;
  summary.last_checkpoint = last_good;
  return summary;
}

}  // namespace engine::train
