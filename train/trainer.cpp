#include "train/trainer.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <deque>
#include <filesystem>
#include <functional>
#include <iterator>
#include <memory>
#include <ostream>
#include <sstream>

#include "data/dataset.h"
#include "data/loader.h"
#include "engine/allocator.h"
#include "engine/autograd.h"
#include "engine/comm/communicator.h"
#include "engine/ops/copy.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/optim.h"
#include "engine/ops/shape_ops.h"
#include "engine/precision.h"
#include "engine/profiler.h"
#include "models/layers.h"
#include "train/early_stop.h"
#include "train/evaluate.h"
#include "train/event_writer.h"
#include "train/grad_buckets.h"
#include "train/jsonl.h"
#include "train/lr_schedule.h"
#include "train/model_ema.h"
#include "train/run_dir.h"
#include "train/safetensors.h"
#include "train/seg_task.h"
#include "train/step_graphs.h"
#include "train/stop_signal.h"
#include "train/vdl_writer.h"

namespace fs = std::filesystem;

namespace engine::train {
namespace {

using Clock = std::chrono::steady_clock;

// fp16: this many non-finite losses in a row stop training as divergence (fewer are skipped steps).
// With PaddleSeg's initial loss scaling of 1024 and decr_ratio 0.5, ten skips also bring the scale to
// its floor of 1, so by then loss scaling has had every chance.
constexpr int64_t kMaxNonFiniteFp16Losses = 10;

// --use_vdl: every scalar goes to TensorBoard's event file and to VisualDL's record file (PaddleSeg
// documents `visualdl --logdir`), with one wall time.
struct ScalarLogs {
  EventWriter tensorboard;
  VdlWriter visualdl;
  explicit ScalarLogs(const std::string& dir) : tensorboard(dir), visualdl(dir) {}
  void add_scalar(const std::string& tag, double value, int64_t step) {
    const double t = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    tensorboard.add_scalar(tag, value, step, t);
    visualdl.add_scalar(tag, value, step, t);
  }
};

// Rank 0's evaluation result on every rank, so that every rank takes the same decisions (best
// model, early stop); a cancellation on any rank cancels it everywhere.
TaskEval share_root_eval(Communicator& comm, TaskEval r) {
  if (comm.world_size() == 1) return r;
  nlohmann::json j;
  if (comm.is_root()) {
    j["key_metric"] = r.key_metric;
    j["scalars"] = r.scalars;
    j["record"] = r.record;
    j["log_lines"] = r.log_lines;
    j["best_model_metadata"] = r.best_model_metadata;
  }
  j["cancelled"] = r.cancelled;
  const std::vector<std::string> all = comm.all_gather_bytes(j.dump(), "evaluation result");
  TaskEval out;
  for (const std::string& s : all)
    out.cancelled = out.cancelled || nlohmann::json::parse(s).at("cancelled").get<bool>();
  if (out.cancelled) return out;
  const nlohmann::json rj = nlohmann::json::parse(all[0]);
  out.key_metric = rj.at("key_metric").get<double>();
  out.scalars = rj.at("scalars").get<std::vector<std::pair<std::string, double>>>();
  out.record = rj.at("record");
  out.log_lines = rj.at("log_lines").get<std::vector<std::string>>();
  out.best_model_metadata = rj.at("best_model_metadata").get<std::map<std::string, std::string>>();
  return out;
}

// Rank 0 runs `write` after every rank has arrived here; its error, if any, is thrown on every rank.
void root_writes(Communicator& comm, const std::string& what, const std::function<void()>& write) {
  if (comm.world_size() == 1) return write();
  comm.barrier(what + ": every rank at the same iteration");
  std::string error;
  if (comm.is_root()) {
    try {
      write();
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  const std::string verdict = comm.all_gather_bytes(error, what + ": written")[0];
  if (!verdict.empty()) throw Error(verdict);
}
// The loss and its terms as one f32 vector on the loss's device, followed by `stop` (one element)
// when it is given: a new tensor then, which an all-reduce may overwrite.
Tensor loss_vector(const TaskLoss& lv, const Tensor& stop = Tensor()) {
  NoGradGuard no_grad;
  std::vector<Tensor> parts{lv.total.detach().reshape({1})};
  for (const auto& [name, t] : lv.terms) parts.push_back(t.detach().reshape({1}));
  if (stop.defined()) parts.push_back(stop.reshape({1}));
  return parts.size() == 1 ? parts[0] : concat(parts, 0);
}

// The loss and its terms on the host, in one device-to-host copy (on a GPU each item() would wait for
// the device once more).
std::vector<float> host_scalars(const TaskLoss& lv) { return loss_vector(lv).to_vector(); }

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

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

bool same_value(double a, double b) {
  return a == b || std::fabs(a - b) <= 1e-9 * std::max(std::fabs(a), std::fabs(b));
}

// PaddleX's eta: h:m:s without zero padding ("1:36:41", "0:9:44").
std::string eta_string_paddlex(double seconds) {
  const long long s = std::max(0LL, (long long)std::llround(seconds));
  return std::to_string(s / 3600) + ":" + std::to_string((s / 60) % 60) + ":" + std::to_string(s % 60);
}

// Python's str(round(v, 2)): "1.0", "0.41".
std::string python_round2(double v) {
  std::string t = fmt("%.2f", v);
  while (t.size() > 1 && t.back() == '0' && t[t.size() - 2] != '.') t.pop_back();
  return t;
}

}  // namespace

std::string log_prefix(LogStyle style) {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  char buf[64];
  if (style == LogStyle::PaddleSeg)
    std::strftime(buf, sizeof buf, "[%Y/%m/%d %H:%M:%S] INFO: ", &tm);
  else
    std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S [INFO]\t", &tm);
  return buf;
}

ResumePoint open_resume_point(const std::string& dir, const std::string& flag) {
  ResumePoint rp;
  if (dir.empty()) return rp;
  std::string d = fs::path(dir).lexically_normal().string();
  while (d.size() > 1 && d.back() == '/') d.pop_back();
  ENGINE_CHECK(fs::is_directory(d), flag, ": directory not found: ", dir,
               " (expected a checkpoint folder such as output/iter_500 or output/epoch_20)");
  const std::string mf = (fs::path(d) / kModelFile).string(), of = (fs::path(d) / kOptimizerFile).string();
  ENGINE_CHECK(fs::exists(mf), flag, ": ", mf, " is missing");
  ENGINE_CHECK(fs::exists(of), flag, ": ", of,
               " is missing (best_model/ holds weights only; resume from an iter_N or epoch_N folder)");
  rp.dir = d;
  rp.model = std::make_shared<LoadedTensors>(load_safetensors(mf));
  rp.optimizer = std::make_shared<LoadedTensors>(load_safetensors(of));
  const int64_t model_iter = meta_int(*rp.model, "iter"), opt_iter = meta_int(*rp.optimizer, "iter");
  ENGINE_CHECK(model_iter == opt_iter, flag, " ", d, ": ", kModelFile, " is from iter ", model_iter, " but ",
               kOptimizerFile, " from iter ", opt_iter, " (files of two checkpoints mixed)");
  ENGINE_CHECK(opt_iter >= 0, "checkpoint '", of, "': metadata 'iter' is ", opt_iter);
  rp.iter = opt_iter;
  return rp;
}

uint64_t resolve_seed(const ResumePoint& resume, const TrainOptions& opt, LogStyle style, std::ostream& log) {
  if (!resume.optimizer) return opt.seed;
  const uint64_t ckpt_seed = (uint64_t)meta_int(*resume.optimizer, "seed");
  if (opt.seed_given && ckpt_seed != opt.seed)
    log << log_prefix(style) << "WARNING: --seed " << opt.seed << " differs from the checkpoint's seed " << ckpt_seed
        << "; using the checkpoint's so the data order continues" << std::endl;
  return ckpt_seed;
}

TrainSummary run_task(Task& task, const LoopSpec& spec, const TrainOptions& opt, uint64_t seed,
                      const ResumePoint& resume, std::ostream& log) {
  ENGINE_CHECK(spec.schedule != nullptr, "run_task: no learning-rate schedule");
  ENGINE_CHECK(spec.save_interval > 0, "--save_interval must be positive, got ", spec.save_interval);
  ENGINE_CHECK(spec.log_every > 0, "--log_iters must be positive, got ", spec.log_every);
  const LogStyle style = spec.log_style;
  auto prefix = [style] { return log_prefix(style); };
  const Device dev = opt.device;
  const fs::path save_dir(opt.save_dir);
  const LRSchedule& schedule = *spec.schedule;
  const std::string metric_name = task.key_metric_name(), metric_key = task.key_metric_key();
  TrainSummary summary;
  summary.best_metric_name = metric_name;
  auto stop_signal = [&opt]() { return opt.stop_request ? opt.stop_request->load() : 0; };
  LocalCommunicator local_comm;
  Communicator& comm = opt.comm ? *opt.comm : local_comm;
  const int world = comm.world_size();
  const bool root = comm.is_root();

  nn::Module& model = task.model();
  std::vector<std::pair<std::string, Tensor>> named = model.named_parameters();
  std::vector<Tensor> params, velocities;
  std::vector<bool> decay;
  for (auto& [name, p] : named) {
    params.push_back(p);
    velocities.push_back(Tensor::zeros(p.shape(), DType::F32, dev));
    decay.push_back(task.decays(name));
  }
  const bool all_decay = std::all_of(decay.begin(), decay.end(), [](bool d) { return d; });
  // fp16: the loss scaler (restored from the checkpoint below when it holds one).
  std::unique_ptr<GradScaler> scaler;
  if (spec.loss_scaling) scaler = std::make_unique<GradScaler>(*spec.loss_scaling);

  // ---- data
  std::shared_ptr<const data::BatchSource> source = task.train_source();
  data::LoaderOptions lopt;
  lopt.batch_size = spec.batch_size;
  lopt.shuffle = true;
  lopt.drop_last = true;
  lopt.num_workers = opt.num_workers;
  lopt.seed = seed;
  lopt.rank = comm.rank();
  lopt.world_size = world;
  const int64_t per_rank_images = (source->size() + world - 1) / world;
  ENGINE_CHECK(per_rank_images >= spec.batch_size, source->where(), ": ", source->size(), " images",
               world > 1 ? " (" + std::to_string(per_rank_images) + " per rank of " + std::to_string(world) + ")" : "",
               " are fewer than one batch of ", spec.batch_size, " (drop_last)");
  data::DataLoader loader(source, lopt);
  const int64_t steps_per_epoch = loader.batches_per_epoch();
  const int64_t total = spec.total_iters;

  // Synchronised BN (Paddle's convert_sync_batchnorm): PaddleSeg switches it on for multi-GPU runs.
  const bool sync_bn = world > 1 && (opt.sync_bn == TrainOptions::SyncBn::On ||
                                     (opt.sync_bn == TrainOptions::SyncBn::Auto && dev.is_cuda()));
  if (sync_bn) {
    const int n = nn::set_sync_batch_norm(model, [&comm](const std::vector<Tensor>& t) {
      comm.all_reduce(t, ReduceOp::Sum, "sync batch norm statistics");
    });
    log << prefix() << "Convert bn to sync_bn (" << n << " layers)" << std::endl;
  }

  // Checkpoint folder of the state after `iter` iterations.
  auto checkpoint_name = [&](int64_t iter) {
    if (spec.by_epoch && iter % steps_per_epoch == 0) return "epoch_" + std::to_string(iter / steps_per_epoch);
    return "iter_" + std::to_string(iter);  // iteration-based runs, and a stop in the middle of an epoch
  };
  auto is_checkpoint_name = [](const std::string& n) {
    return parse_iter_dir_name(n, "iter") >= 0 || parse_iter_dir_name(n, "epoch") >= 0;
  };

  // ---- state restored on resume
  int64_t start_iter = 0;
  double best_metric = -1.0;
  int64_t best_iter = -1;
  EarlyStop early_stop(std::max<int64_t>(1, spec.early_stop_patience), spec.early_stop_rule);
  std::deque<std::string>
      kept;               // checkpoint folders in save_dir this run (and the runs it resumes) wrote, oldest first
  std::string last_good;  // the newest complete checkpoint to resume from; empty when none
  double best_ema_metric = -1.0;  // --use_ema: the averaged model's best key metric and its iteration
  int64_t best_ema_iter = -1;
  if (resume.optimizer) {
    const std::string& resume_dir = resume.dir;
    const std::string mf = (fs::path(resume_dir) / kModelFile).string(),
                      of = (fs::path(resume_dir) / kOptimizerFile).string();
    const LoadedTensors& ro = *resume.optimizer;
    const std::string& flag = spec.resume_flag;
    // What the data position and the exact-resume promise depend on must match; the optimizer's
    // settings may change (with a warning: the run is then not the uninterrupted one).
    const std::string fresh_hint =
        "; to go on with other settings, start a new run from its weights: " + spec.fresh_start_hint + mf;
    // A checkpoint of a job with another number of ranks: its data position is mapped by samples
    // (docs/DISTRIBUTED.md); with the same number the per-rank batch must match.
    const int64_t ckpt_world = ro.metadata.count("world_size") ? meta_int(ro, "world_size") : 1;
    if (ckpt_world == world && ro.metadata.count("batch_size") && meta_int(ro, "batch_size") != spec.batch_size)
      throw ConfigError(
          flag + " " + resume_dir + ": the checkpoint was trained with batch_size " +
          std::to_string(meta_int(ro, "batch_size")) + ", this run has batch_size " + std::to_string(spec.batch_size) +
          "; its data position is counted in batches, so resuming needs the same batch_size" + fresh_hint);
    if (ro.metadata.count("train_images") && meta_int(ro, "train_images") != source->size())
      throw ConfigError(
          flag + " " + resume_dir + ": the checkpoint was trained on " + std::to_string(meta_int(ro, "train_images")) +
          " training images, this run's train set (" + source->where() + ") has " + std::to_string(source->size()) +
          "; its data order and position belong to that set, so resuming needs the same one" + fresh_hint);
    int64_t next_epoch = meta_int(ro, "next_epoch"), next_batch = meta_int(ro, "next_batch");
    if (ckpt_world != world) {
      ENGINE_CHECK(ckpt_world >= 1, "checkpoint '", of, "': metadata 'world_size' is ", ckpt_world);
      const int64_t ckpt_batch = meta_int(ro, "batch_size");
      const int64_t samples = next_batch * ckpt_batch * ckpt_world;  // of the epoch, already trained on
      const int64_t mapped = samples / (spec.batch_size * world);
      log << prefix() << "WARNING: " << flag << " " << resume_dir << ": the checkpoint was trained by " << ckpt_world
          << " rank(s) with batch_size " << ckpt_batch << " each (global batch " << ckpt_batch * ckpt_world
          << "), this run has " << world << " with batch_size " << spec.batch_size << " (global batch "
          << spec.batch_size * world << "); epoch " << next_epoch + 1 << " continues after "
          << mapped * spec.batch_size * world << " of the " << samples
          << " samples already trained on, the iteration count and the learning-rate "
          << "schedule go on from iter " << resume.iter << std::endl;
      next_batch = mapped;
      if (next_batch >= steps_per_epoch) {
        next_epoch += 1;
        next_batch = 0;
      }
    }
    if (next_epoch < 0 || next_batch < 0 || next_batch >= steps_per_epoch)
      throw ConfigError(flag + " " + resume_dir + ": the checkpoint's data position (epoch " +
                        std::to_string(next_epoch + 1) + ", batch " + std::to_string(next_batch + 1) +
                        ") does not exist with this run's batch_size " + std::to_string(spec.batch_size) + " and " +
                        std::to_string(source->size()) + " training images (" + std::to_string(steps_per_epoch) +
                        " batches per epoch); resume with the batch_size and train set it was trained with" +
                        fresh_hint);
    if (ro.metadata.count("momentum") && ro.metadata.count("weight_decay")) {
      const double m = meta_double(ro, "momentum"), wd = meta_double(ro, "weight_decay");
      if (!same_value(m, spec.momentum) || !same_value(wd, spec.weight_decay))
        log << prefix() << "WARNING: " << flag << " " << resume_dir << ": the checkpoint was trained with momentum "
            << fmt("%g", m) << ", weight_decay " << fmt("%g", wd) << "; this run uses momentum "
            << fmt("%g", spec.momentum) << ", weight_decay " << fmt("%g", spec.weight_decay)
            << ": training continues with this run's values, so it is no longer the run the checkpoint came from"
            << std::endl;
    }

    check_tensors_match(*resume.model, model.state_dict(), mf);
    model.load_state_dict(resume.model->tensors, true);
    std::vector<std::pair<std::string, Tensor>> expected_v;
    for (size_t i = 0; i < named.size(); ++i) expected_v.emplace_back(named[i].first + ".velocity", velocities[i]);
    check_tensors_match(ro, expected_v, of);
    for (size_t i = 0; i < named.size(); ++i) velocities[i].copy_(*ro.find(named[i].first + ".velocity"));
    if (scaler && GradScaler::has_state(ro.metadata)) {
      scaler->load_state(ro.metadata, of);
      log << prefix() << "Loss scaling " << fmt("%g", scaler->scale()) << " restored from the checkpoint" << std::endl;
    }
    start_iter = resume.iter;
    best_metric = meta_double(ro, "best_" + metric_key);
    best_iter = meta_int(ro, "best_iter");
    if (spec.use_ema && ro.metadata.count("best_ema_iter")) {
      best_ema_metric = meta_double(ro, "best_ema_" + metric_key);
      best_ema_iter = meta_int(ro, "best_ema_iter");
    }
    if (ro.metadata.count("early_stop_counter")) {
      const std::string& sc = meta_at(ro, "early_stop_score");
      early_stop.restore(sc.empty() ? std::nullopt : std::optional<double>(meta_double(ro, "early_stop_score")),
                         meta_double(ro, "early_stop_max"), meta_int(ro, "early_stop_counter"));
    }
    if (ro.metadata.count("lr_next")) {
      const double ck = meta_double(ro, "lr_next"), here = schedule.lr_at(start_iter);
      if (!same_value(ck, here))
        log << prefix() << "WARNING: " << flag << " " << resume_dir << ": the learning rate at iter " << start_iter + 1
            << " is " << fmt("%.6g", here) << " with this run's schedule but " << fmt("%.6g", ck)
            << " with the checkpoint's (the number of iterations or epochs, the learning rate or "
            << "its schedule changed); training continues with this run's schedule" << std::endl;
    }
    // The list names folders of the checkpoint's own save_dir: kept only when training goes on there.
    std::error_code ec;
    const fs::path resume_parent = fs::path(resume_dir).has_parent_path() ? fs::path(resume_dir).parent_path() : ".";
    if (fs::exists(save_dir, ec) && fs::equivalent(resume_parent, save_dir, ec)) {
      for (const std::string& name : split_list(meta_at(ro, "checkpoints"))) {
        ENGINE_CHECK(is_checkpoint_name(name), "checkpoint '", of, "': metadata 'checkpoints' lists '", name,
                     "', not an iter_N or epoch_N folder name");
        kept.push_back(name);
      }
    }
    loader.seek(next_epoch, next_batch);
    last_good = resume_dir;
    log << prefix() << "Resume model from " << resume_dir << " (iter " << start_iter << ")" << std::endl;
  }
  // --use_ema: the average starts from the model (fresh, or as resumed) unless the checkpoint holds it.
  std::unique_ptr<ModelEma> ema;
  if (spec.use_ema) {
    ema = std::make_unique<ModelEma>(model);
    if (resume.optimizer) {
      const fs::path ema_file = fs::path(resume.dir) / kEmaModelFile;
      if (fs::exists(ema_file)) {
        ema->load(load_safetensors(ema_file.string()), ema_file.string());
      } else {
        log << prefix() << "EMA: " << resume.dir << " holds no " << kEmaModelFile
            << "; the average starts from the resumed weights (as PaddleSeg's resume does)" << std::endl;
      }
    }
  }
  if (start_iter >= total) {
    log << prefix() << "Nothing to train: the checkpoint is at iter " << start_iter << " and the run has " << total
        << " iterations" << std::endl;
    summary.iters_done = start_iter;
    return summary;
  }

  // Every rank starts from rank 0's weights and momentum (they are equal already when every rank drew
  // the same initialisation or read the same checkpoint; this makes it a guarantee).
  if (world > 1) {
    for (auto& [name, t] : model.state_dict()) comm.broadcast(t, 0, "initial " + name);
    for (size_t i = 0; i < velocities.size(); ++i)
      comm.broadcast(velocities[i], 0, "initial momentum of " + named[i].first);
  }

  // ---- the run folder (rank 0 alone writes): one writer, nothing of an earlier run clobbered, stale
  // temporaries removed. Its verdict reaches every rank, so a refusal stops the whole job.
  std::unique_ptr<RunDirLock> lock;
  std::unique_ptr<ScalarLogs> vdl;
  std::unique_ptr<JsonlWriter> jsonl;
  std::string setup_error;
  if (root) {
    try {
      fs::create_directories(save_dir);
      lock = std::make_unique<RunDirLock>(save_dir);
      if (!lock->held())
        log << prefix() << "WARNING: the file system of " << save_dir.string()
            << " has no file locks: nothing stops a second run from writing into it at the same time" << std::endl;
      clean_stale_temporaries(save_dir, lock->held(), log, prefix());
      RunDirRequest req{save_dir, resume.dir.empty() ? fs::path() : fs::path(resume.dir), start_iter, opt.overwrite};
      req.checkpoint_prefix = spec.by_epoch ? "epoch" : "iter";
      req.iters_per_checkpoint_unit = spec.by_epoch ? steps_per_epoch : 1;
      req.metric_key = metric_key;
      req.resume_flag = spec.resume_flag;
      const RunContents earlier = prepare_run_dir(req, log, prefix());
      if (resume.optimizer && earlier.best_model && earlier.best_model_miou > best_metric) {
        // best_model/ was written after the checkpoint (the run ended before its checkpoint): keep it as the bar.
        best_metric = earlier.best_model_miou;
        best_iter = earlier.best_model_iter;
        log << prefix() << "best_model/ (iter " << best_iter << ", " << metric_name << " " << fmt("%.4f", best_metric)
            << ") is newer than the checkpoint; it is replaced only by a higher " << metric_name << std::endl;
      }
      if (resume.optimizer && ema && earlier.ema_best_model && earlier.ema_best_model_miou > best_ema_metric) {
        best_ema_metric = earlier.ema_best_model_miou;  // likewise for the average's best
        best_ema_iter = earlier.ema_best_model_iter;
      }
      if (opt.use_vdl) vdl = std::make_unique<ScalarLogs>(save_dir.string());
      // prepare_run_dir left either no metrics.jsonl or the resumed run's records up to start_iter.
      jsonl = std::make_unique<JsonlWriter>((save_dir / "metrics.jsonl").string(), /*append=*/true);
    } catch (const std::exception& e) {
      if (world == 1) throw;
      setup_error = (dynamic_cast<const ConfigError*>(&e) ? "C" : "E") + std::string(e.what());
    }
  }
  if (world > 1) {  // rank 0's verdict and its best-model bars, on every rank
    const std::vector<std::string> verdict = comm.all_gather_bytes(
        root ? fmt("%.17g", best_metric) + "\n" + std::to_string(best_iter) + "\n" + fmt("%.17g", best_ema_metric) +
                   "\n" + std::to_string(best_ema_iter) + "\n" + setup_error
             : "",
        "run folder setup");
    std::istringstream in(verdict[0]);
    std::string bm, bi, bem, bei;
    std::getline(in, bm);
    std::getline(in, bi);
    std::getline(in, bem);
    std::getline(in, bei);
    const std::string err((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (!err.empty()) {
      if (err[0] == 'C') throw ConfigError(err.substr(1));
      throw Error(err.substr(1));
    }
    best_metric = std::stod(bm);
    best_iter = std::stoll(bi);
    best_ema_metric = std::stod(bem);
    best_ema_iter = std::stoll(bei);
  }

  log << prefix() << task.describe() << "; device " << dev.str() << "; train images " << source->size() << ", "
      << steps_per_epoch << " iters per epoch"
      << (task.can_evaluate() ? "; val images " + std::to_string(task.eval_size()) : std::string()) << std::endl;
  if (opt.profile) {
    profiler::reset();
    profiler::set_enabled(true);
  }

  // ---- loop
  size_t nterms = 0;
  std::vector<std::string> term_names;
  double win_loss = 0, win_batch = 0, win_reader = 0;
  std::vector<double> win_terms, epoch_terms;
  double epoch_loss = 0;
  int64_t win_n = 0;
  int64_t win_loss_n = 0, epoch_loss_n = 0;  // iterations whose loss entered the sums (finite ones)
  int64_t nonfinite_in_a_row = 0;            // fp16: skipped steps with a non-finite loss, consecutive
  int64_t next_epoch = 0, next_batch = 0, epoch = 0;
  int64_t last_saved_iter = start_iter;
  double last_eval_seconds = 0;
  Clock::time_point batch_start = Clock::now(), window_start = batch_start;
  if (dev.is_cuda()) reset_peak_memory_stats(dev);
  std::string best_checkpoint;

  // A checkpoint folder: weights, momentum and everything an exact resume needs; prunes beyond keep_checkpoint_max.
  auto save_checkpoint = [&](int64_t iter) {
    const std::string name = checkpoint_name(iter);
    kept.erase(std::remove(kept.begin(), kept.end(), name), kept.end());
    kept.push_back(name);
    std::deque<std::string> to_remove;
    if (spec.keep_checkpoint_max > 0)
      while ((int)kept.size() > spec.keep_checkpoint_max) {
        to_remove.push_back(kept.front());
        kept.pop_front();
      }
    const std::vector<std::pair<std::string, Tensor>> model_state = model.state_dict();
    std::vector<std::pair<std::string, Tensor>> opt_state;
    for (size_t i = 0; i < named.size(); ++i) opt_state.emplace_back(named[i].first + ".velocity", velocities[i]);
    std::map<std::string, std::string> opt_meta = {
        {"iter", std::to_string(iter)},
        {"seed", std::to_string(seed)},
        {"next_epoch", std::to_string(next_epoch)},
        {"next_batch", std::to_string(next_batch)},
        {"batch_size", std::to_string(spec.batch_size)},
        {"train_images", std::to_string(source->size())},
        {"best_" + metric_key, fmt("%.17g", best_metric)},
        {"best_iter", std::to_string(best_iter)},
        {"checkpoints", join(kept)},
        {"lr_next", fmt("%.17g", schedule.lr_at(iter))},
        {"momentum", fmt("%.17g", spec.momentum)},
        {"weight_decay", fmt("%.17g", spec.weight_decay)},
        {"optimizer", "Momentum(momentum=" + fmt("%g", spec.momentum) +
                          ", weight_decay=" + fmt("%g", spec.weight_decay) +
                          (all_decay ? "" : ", not on batch-norm parameters and head biases") + ")"}};
    if (spec.early_stop) {
      opt_meta["early_stop_score"] = early_stop.score() ? fmt("%.17g", *early_stop.score()) : "";
      opt_meta["early_stop_max"] = fmt("%.17g", early_stop.max());
      opt_meta["early_stop_counter"] = std::to_string(early_stop.counter());
    }
    if (ema) {
      opt_meta["best_ema_" + metric_key] = fmt("%.17g", best_ema_metric);
      opt_meta["best_ema_iter"] = std::to_string(best_ema_iter);
    }
    if (spec.by_epoch) opt_meta["epoch"] = std::to_string(iter / steps_per_epoch);
    opt_meta["world_size"] = std::to_string(world);
    if (scaler)
      for (const auto& [k, v] : scaler->state()) opt_meta[k] = v;
    // Rank 0 writes the checkpoint once every rank has finished the iteration, and every rank learns
    // whether it was written: a checkpoint is never completed by a partial job, nor silently missing.
    root_writes(comm, "checkpoint " + name, [&] {
      std::vector<CheckpointFile> files = {{kModelFile, &model_state, {{"iter", std::to_string(iter)}}},
                                           {kOptimizerFile, &opt_state, opt_meta}};
      if (ema) files.push_back({kEmaModelFile, &ema->state(), {{"iter", std::to_string(iter)}}});
      save_checkpoint_dir(save_dir / name, files);
    });
    last_good = (save_dir / name).string();
    last_saved_iter = iter;
    if (style == LogStyle::PaddleX) log << prefix() << "Model saved in " << last_good << "." << std::endl;
    for (const std::string& old : to_remove) {
      if (!root) break;
      try {
        remove_checkpoint_dir(save_dir / old);
      } catch (const std::exception& e) {  // a checkpoint that cannot be pruned is no reason to stop training
        log << prefix() << "WARNING: cannot remove " << (save_dir / old).string() << ": " << e.what() << std::endl;
      }
    }
  };
  // An evaluation's metrics.jsonl record (`type` "eval" or "eval_ema") and its logged scalars.
  auto record_eval = [&](const TaskEval& r, int64_t iter, const char* type, const std::string& scalar_prefix) {
    nlohmann::json rec = {{"type", type}, {"iter", iter}};
    if (spec.by_epoch) rec["epoch"] = iter / steps_per_epoch;
    for (auto& [k, v] : r.record.items()) rec[k] = v;
    if (jsonl) jsonl->write(rec);
    if (vdl)
      for (const auto& [n, v] : r.scalars) vdl->add_scalar(scalar_prefix + n, v, iter);
  };
  // --use_ema: the averaged model evaluated as the model is (PaddleSeg's ema_model), its best kept in
  // ema_best_model/. Every rank swaps the average in and back, as every rank evaluates.
  auto evaluate_ema = [&](int64_t iter) {
    ema->swap_with(model);
    TaskEval r;
    try {
      r = share_root_eval(comm, task.evaluate(dev, log, opt.stop_request, comm));
    } catch (...) {
      ema->swap_with(model);
      throw;
    }
    ema->swap_with(model);
    if (r.cancelled) return;
    for (const std::string& l : r.log_lines) log << prefix() << l << std::endl;
    record_eval(r, iter, "eval_ema", "Evaluate/Ema_");
    if (r.key_metric > best_ema_metric) {
      best_ema_metric = r.key_metric;
      best_ema_iter = iter;
      const std::map<std::string, std::string> meta = {{"iter", std::to_string(iter)},
                                                       {metric_key, fmt("%.17g", best_ema_metric)}};
      root_writes(comm, "ema_best_model", [&] {
        save_checkpoint_dir(save_dir / "ema_best_model", {{kEmaModelFile, &ema->state(), meta}});
      });
    }
  };
  auto terms_line = [&](const std::vector<double>& values, double loss, double n) {
    std::string line;
    for (size_t i = 0; i < nterms; ++i) line += term_names[i] + "=" + fmt("%.6f", values[i] / n) + ", ";
    return line + "loss=" + fmt("%.6f", loss / n);
  };

  // Data parallel: gradients in buckets all-reduced during backward (train/grad_buckets.h), in the
  // type --allreduce_dtype gives (by default 16-bit at O2 on GPU ranks); the update reads 16-bit ones
  // as they are, or after the fp16 loss scaler unscaled them into the f32 buffers.
  std::unique_ptr<GradBuckets> buckets;
  if (world > 1) {
    buckets = std::make_unique<GradBuckets>(params, comm, opt.bucket_bytes, allreduce_dtype(opt.allreduce_dtype, dev));
    log << prefix() << "Gradient all-reduce: " << world << " ranks, " << buckets->num_buckets() << " buckets in "
        << dtype_name(buckets->wire_dtype()) << std::endl;
  } else if (opt.allreduce_dtype) {
    log << prefix() << "--allreduce_dtype " << allreduce_dtype_name(*opt.allreduce_dtype)
        << ": one rank, so there is no gradient all-reduce (the flag sets data-parallel runs' wire type)" << std::endl;
  }
  // The optimizer update (Paddle's Momentum): one fused launch when every parameter decays, else one
  // per group (with and without L2 decay). at_run: operands read when it runs (a CUDA graph's step).
  auto apply_update = [&](const std::vector<Tensor>& grads, float lr, const UpdateAtRun& at_run) {
    if (all_decay) {
      sgd_momentum_update(params, grads, velocities, lr, (float)spec.momentum, (float)spec.weight_decay, at_run);
      return;
    }
    for (bool group : {true, false}) {
      std::vector<Tensor> p, g, v;
      for (size_t i = 0; i < params.size(); ++i)
        if (decay[i] == group) p.push_back(params[i]), g.push_back(grads[i]), v.push_back(velocities[i]);
      if (!p.empty())
        sgd_momentum_update(p, g, v, lr, (float)spec.momentum, group ? (float)spec.weight_decay : 0.f, at_run);
    }
  };
  // CUDA graphs of the whole step (train/step_graphs.h) on a GPU, unless switched off or profiling
  // (the per-op times need eager launches). With several ranks the graph holds the gradient buckets',
  // the loss's and the synchronised batch norms' all-reduces too; that takes --cuda_graph on, as NCCL
  // inside graphs is not yet proven on a multi-GPU machine (docs/TRAINING.md). The scalars the graphs
  // read are written before every step.
  using GraphMode = TrainOptions::CudaGraph;
  std::unique_ptr<StepGraphs> graphs;
  StepScalars step_scalars;
  int64_t replay_iter = 0;  // the iteration a replay runs (named by the watchdog's timeout line)
  if (dev.is_cuda()) {
    const char* why_not = opt.cuda_graph == GraphMode::Off ? "switched off (--cuda_graph off)"
                          : world > 1 && opt.cuda_graph == GraphMode::Auto
                              ? "not by default with several ranks (--cuda_graph on captures the all-reduces too)"
                          : opt.profile ? "not while profiling (the per-op times need eager launches)"
                                        : nullptr;
    if (!why_not) {
      step_scalars.lr = Tensor::zeros({1}, DType::F32, dev);
      if (scaler) {
        step_scalars.loss_scale = Tensor::zeros({}, DType::F32, dev);
        step_scalars.inv_scale = Tensor::zeros({1}, DType::F32, dev);
      }
      if (world > 1) step_scalars.stop = Tensor::zeros({1}, DType::F32, dev);
      // The eager step below without its host reads: the loss (with several ranks summed over them,
      // with the stop requests, while backward runs) stays on the device, the scaler unscales there,
      // and the update does nothing when the loss is not finite or a gradient held an inf or nan.
      // With several ranks the summed loss decides, so every rank's update does the same.
      auto enqueue_step = [&, s = step_scalars](const data::Batch& inputs) {
        StepOutputs out;
        out.loss = task.loss(inputs, dev);
        const TaskLoss& lv = out.loss;
        std::unique_ptr<PendingCollective> sums_pending;
        if (world > 1) {
          out.rank_sums = loss_vector(lv, s.stop);
          sums_pending = comm.start_all_reduce(out.rank_sums, ReduceOp::Sum, "loss of a CUDA graph step");
        }
        if (buckets) buckets->begin_step();
        (s.loss_scale.defined() ? lv.total * s.loss_scale : lv.total).backward();
        if (buckets) buckets->finish_step();
        if (sums_pending) sums_pending->wait();
        std::vector<Tensor> grads;
        if (buckets)
          grads = buckets->grads_for_update();
        else
          for (const Tensor& p : params) grads.push_back(p.grad());
        if (s.inv_scale.defined())
          out.found_inf =
              buckets ? buckets->unscale(s.inv_scale, grads) : unscale_grads_check_finite(grads, s.inv_scale);
        const Tensor loss = world > 1 ? out.rank_sums.narrow(0, 0, 1) : lv.total;
        apply_update(grads, 0.f, UpdateAtRun{s.lr, loss, out.found_inf});
        out.keep = std::move(grads);
        return out;
      };
      graphs = std::make_unique<StepGraphs>(
          params, dev, enqueue_step,
          [&] { comm.follow_enqueued_work("step of iter " + std::to_string(replay_iter) + " (a CUDA graph replay)"); },
          [&](const std::string& line) { log << prefix() << line << std::endl; }, world > 1);
    }
    log << prefix() << "CUDA graphs: "
        << (why_not ? std::string(why_not)
                    : "on (one per batch shape: its first batch runs eagerly, the second is captured, later ones "
                      "replay it)")
        << std::endl;
  }
  // A stop request reaches the ranks at different moments: with several ranks it is agreed on in
  // each iteration's all-reduce and acted on by all of them before the next iteration.
  int agreed_stop = 0;

  for (int64_t iter = start_iter + 1; iter <= total; ++iter) {
    if (const int sig = world == 1 ? stop_signal() : agreed_stop) {  // iterations up to iter - 1 are complete
      summary.stopped_by_signal = sig;
      if (opt.save_on_stop && iter - 1 > last_saved_iter) {
        save_checkpoint(iter - 1);
        summary.stop_checkpoint_written = true;
      }
      log << prefix() << "Stopped by " << signal_name(sig) << " after iter " << iter - 1 << std::endl;
      break;
    }
    data::Batch batch = loader.next();
    epoch = batch.epoch;
    next_epoch = batch.epoch;
    next_batch = batch.batch_in_epoch + 1;
    if (next_batch == steps_per_epoch) {
      next_epoch += 1;
      next_batch = 0;
    }
    const double reader_cost = seconds_since(batch_start);

    // The whole step through the batch shape's CUDA graph (forward, backward and update: only the
    // host's reading of the loss and the scaler's flag below remains), or forward and backward eagerly.
    const double lr = schedule.lr_at(iter - 1);
    const int local_stop = world > 1 ? stop_signal() : 0;
    std::optional<StepOutputs> graphed;
    if (graphs) {
      fill_(step_scalars.lr, (float)lr);  // (a fill kernel in stream order: no host wait)
      if (scaler) {
        fill_(step_scalars.loss_scale, (float)scaler->scale());
        fill_(step_scalars.inv_scale, (float)(1.0 / scaler->scale()));  // as GradScaler::unscale
      }
      if (world > 1) fill_(step_scalars.stop, local_stop != 0 ? 1.f : 0.f);
      replay_iter = iter;
      graphed = graphs->step(batch);
    }
    const TaskLoss lv = graphed ? graphed->loss : task.loss(batch, dev);
    if (term_names.empty() && !lv.terms.empty()) {
      for (const auto& [n, t] : lv.terms) term_names.push_back(n);
      nterms = term_names.size();
      win_terms.assign(nterms, 0.0);
      epoch_terms.assign(nterms, 0.0);
    }
    // The loss and its terms: this rank's, or with several ranks their mean (all-reduced while
    // backward runs, together with the stop flag; a graph's step did that on the device).
    std::vector<float> scalars = graphed && world > 1 ? graphed->rank_sums.to_vector() : host_scalars(lv);
    // A non-finite loss stops training, except under fp16 loss scaling, where the step is skipped as
    // Paddle's GradScaler skips it (an fp16 forward can overflow on one batch) until
    // kMaxNonFiniteFp16Losses come in a row: then it is divergence, not one batch.
    bool nonfinite_loss = false;
    auto check_finite = [&](double loss) {
      if (std::isfinite(loss)) {
        nonfinite_in_a_row = 0;
        return;
      }
      if (scaler && ++nonfinite_in_a_row < kMaxNonFiniteFp16Losses) {
        nonfinite_loss = true;
        return;
      }
      throw TrainingDiverged("training diverged: the loss is " + fmt("%g", loss) + " at iter " + std::to_string(iter) +
                             (scaler
                                  ? " (the " + std::to_string(nonfinite_in_a_row) + "th non-finite fp16 loss in a row)"
                                  : std::string()) +
                             "; stopped before the optimizer step. Last good checkpoint: " +
                             (last_good.empty() ? std::string("none was saved") : last_good) +
                             ". Lower the learning rate or check the labels.");
    };
    // With several ranks: the sums over the ranks of the loss, its terms and the stop requests.
    auto take_rank_sums = [&](const std::vector<float> sums) {  // (a copy: it may be `scalars` itself)
      scalars.assign(sums.begin(), sums.end() - 1);
      for (float& v : scalars) v /= (float)world;
      agreed_stop = local_stop != 0 ? local_stop : (sums.back() > 0 ? SIGTERM : 0);
      check_finite(scalars[0]);
    };
    Tensor reduced_scalars;
    std::unique_ptr<PendingCollective> scalars_pending;
    if (world == 1) {
      check_finite(scalars[0]);
    } else if (graphed) {
      take_rank_sums(scalars);
    } else {
      scalars.push_back(local_stop != 0 ? 1.f : 0.f);
      reduced_scalars = Tensor::from_vector(scalars, {(int64_t)scalars.size()}, dev);
      scalars_pending = comm.start_all_reduce(reduced_scalars, ReduceOp::Sum, "loss of iter " + std::to_string(iter));
    }
    if (!graphed) {
      if (buckets) buckets->begin_step();
      if (!nonfinite_loss) {  // (one rank, fp16: a skipped step, whose gradients would be inf or nan)
        if (scaler)
          (lv.total * (float)scaler->scale()).backward();
        else
          lv.total.backward();
      }
      if (buckets) buckets->finish_step();
      if (graphs && nonfinite_loss) graphs->not_warmed(batch);
    }
    if (scalars_pending) {
      scalars_pending->wait();
      take_rank_sums(reduced_scalars.to_vector());
    }
    const double total_loss = scalars[0];
    // The gradients the update reads (with several ranks: averaged, in the buckets' wire type).
    std::vector<Tensor> grads;
    if (graphed) {
      // (the graph's step made its update, or skipped it, on the device)
    } else if (buckets) {
      grads = buckets->grads_for_update();
    } else {
      for (const Tensor& p : params) grads.push_back(p.grad());
    }
    bool skip_step = false;
    if (scaler && nonfinite_loss) {
      const double scale = scaler->scale();
      skip_step = true;
      scaler->update(true);
      summary.skipped_steps += 1;
      log << prefix() << "WARNING: iter " << iter << ": the fp16 loss is " << fmt("%g", total_loss)
          << " at loss scaling " << fmt("%g", scale) << "; optimizer step skipped, loss scaling now "
          << fmt("%g", scaler->scale()) << " (" << nonfinite_in_a_row << " in a row; training stops at "
          << kMaxNonFiniteFp16Losses << ")" << std::endl;
    } else if (scaler) {
      const double scale = scaler->scale();
      // (A graph's step unscaled on the device and left the flag there.)
      skip_step = graphed   ? graphed->found_inf.to_vector_i64()[0] != 0
                  : buckets ? buckets->unscale(*scaler, grads)
                            : scaler->unscale(grads);
      scaler->update(skip_step);
      if (skip_step) {
        summary.skipped_steps += 1;
        log << prefix() << "WARNING: iter " << iter << ": inf or nan in the fp16 gradients at loss scaling "
            << fmt("%g", scale) << "; optimizer step skipped, loss scaling now " << fmt("%g", scaler->scale())
            << std::endl;
      }
    }
    // A skipped step (Paddle's GradScaler) updates neither the weights nor the momentum. (A graph's
    // step made its update, or skipped it, on the device.)
    if (!skip_step && !graphed) apply_update(grads, (float)lr, UpdateAtRun{});
    if (!buckets)
      for (Tensor& p : params) p.zero_grad();  // (the buckets are zeroed by the next begin_step)
    if (ema) ema->update(model, iter);         // every iteration, a skipped step too (PaddleSeg)

    std::vector<double> term_values(nterms);
    for (size_t i = 0; i < nterms; ++i) term_values[i] = scalars[1 + i];
    if (!nonfinite_loss) {  // a skipped non-finite loss is logged above, not averaged
      win_loss += total_loss;
      epoch_loss += total_loss;
      for (size_t i = 0; i < nterms; ++i) win_terms[i] += term_values[i], epoch_terms[i] += term_values[i];
      win_loss_n += 1;
      epoch_loss_n += 1;
    }
    win_reader += reader_cost;
    win_batch += seconds_since(batch_start);
    win_n += 1;
    summary.iters_done = iter;
    const bool epoch_end = iter % steps_per_epoch == 0;
    const bool checkpoint_now =
        spec.by_epoch ? (epoch_end && ((iter / steps_per_epoch) % spec.save_interval == 0 || iter == total))
                      : (iter % spec.save_interval == 0 || iter == total);

    if (iter % spec.log_every == 0 || iter == total) {
      const double avg_loss = win_loss / (double)win_loss_n, avg_batch = win_batch / (double)win_n;
      const double avg_reader = win_reader / (double)win_n;
      const double ips = (double)spec.batch_size * (double)win_n / win_batch;
      if (style == LogStyle::PaddleSeg) {
        std::string line = prefix() + "[TRAIN] epoch: " + std::to_string(epoch + 1) +
                           ", iter: " + std::to_string(iter) + "/" + std::to_string(total) +
                           ", loss: " + fmt("%.4f", avg_loss) + ", lr: " + fmt("%.6f", lr) +
                           ", batch_cost: " + fmt("%.4f", avg_batch) + ", reader_cost: " + fmt("%.5f", avg_reader) +
                           ", ips: " + fmt("%.4f", ips) + " samples/sec";
        if (dev.is_cuda()) {
          const MemoryStats ms = memory_stats(dev);
          line += ", max_mem_reserved: " + std::to_string(ms.reserved_peak >> 20) +
                  " MB, max_mem_allocated: " + std::to_string(ms.allocated_peak >> 20) + " MB";
        }
        line += " | ETA " + eta_string((double)(total - iter) * avg_batch);
        log << line << std::endl;
      } else {
        // PaddleX: the current batch's losses, the step time averaged over the window, and an eta
        // that includes the evaluations still to come (at the last one's duration).
        const int64_t epochs_total = (total + steps_per_epoch - 1) / steps_per_epoch;
        int64_t evals_left = 0;
        for (int64_t e = iter / steps_per_epoch + 1; e <= epochs_total; ++e)
          if (e % spec.save_interval == 0 || e == epochs_total) ++evals_left;
        std::vector<double> one(nterms);
        for (size_t i = 0; i < nterms; ++i) one[i] = term_values[i];
        log << prefix() << "[TRAIN] Epoch=" << epoch + 1 << "/" << epochs_total
            << ", Step=" << (iter - 1) % steps_per_epoch + 1 << "/" << steps_per_epoch << ", "
            << terms_line(one, total_loss, 1.0) << ", lr=" << fmt("%.6f", lr)
            << ", time_each_step=" << python_round2(avg_batch) << "s, eta="
            << eta_string_paddlex((double)(total - iter) * avg_batch + (double)evals_left * last_eval_seconds)
            << std::endl;
      }
      summary.last_loss = avg_loss;
      nlohmann::json rec = {{"type", "train"},           {"iter", iter}, {"epoch", epoch + 1},
                            {"loss", avg_loss},          {"lr", lr},     {"batch_cost", avg_batch},
                            {"reader_cost", avg_reader}, {"ips", ips}};
      std::vector<double> terms_avg;
      for (double t : win_terms) terms_avg.push_back(t / (double)win_loss_n);
      rec["loss_terms"] = terms_avg;
      if (style == LogStyle::PaddleX)
        for (size_t i = 0; i < nterms; ++i) rec[term_names[i]] = terms_avg[i];
      if (scaler) {  // fp16: the scale now and the steps skipped so far
        rec["loss_scaling"] = scaler->scale();
        rec["skipped_steps"] = summary.skipped_steps;
      }
      if (jsonl) jsonl->write(rec);
      if (vdl) {
        vdl->add_scalar("Train/loss", avg_loss, iter);
        if (nterms > 1)
          for (size_t i = 0; i < nterms; ++i) vdl->add_scalar("Train/" + term_names[i], terms_avg[i], iter);
        vdl->add_scalar("Train/lr", lr, iter);
        if (scaler) vdl->add_scalar("Train/loss_scaling", scaler->scale(), iter);
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
      win_n = win_loss_n = 0;
    }
    if (epoch_end && style == LogStyle::PaddleX) {
      log << prefix() << "[TRAIN] Epoch " << epoch + 1 << " finished, "
          << terms_line(epoch_terms, epoch_loss, (double)epoch_loss_n) << " ." << std::endl;
    }
    if (epoch_end) {
      epoch_loss = 0;
      std::fill(epoch_terms.begin(), epoch_terms.end(), 0.0);
      epoch_loss_n = 0;
    }

    if (checkpoint_now) {
      bool stop_early = false;
      if (task.can_evaluate()) {
        if (opt.profile) profiler::set_enabled(false);
        const Clock::time_point eval_start = Clock::now();
        const TaskEval r = share_root_eval(comm, task.evaluate(dev, log, opt.stop_request, comm));
        last_eval_seconds = seconds_since(eval_start);
        if (opt.profile) profiler::set_enabled(true);
        if (!r.cancelled) {
          if (style == LogStyle::PaddleSeg) {
            for (const std::string& l : r.log_lines) log << prefix() << l << std::endl;
          } else {
            for (const std::string& l : r.log_lines) log << prefix() << l << std::endl;
            std::string m;
            for (const auto& [n, v] : r.scalars) m += ", " + n + "=" + fmt("%.6f", v);
            log << prefix() << "[EVAL] Finished, Epoch=" << iter / steps_per_epoch << m << " ." << std::endl;
          }
          record_eval(r, iter, "eval", "Evaluate/");
          if (r.key_metric > best_metric) {
            best_metric = r.key_metric;
            best_iter = iter;
            best_checkpoint = checkpoint_name(iter);
            const std::vector<std::pair<std::string, Tensor>> weights = model.state_dict();
            std::map<std::string, std::string> meta = {{"iter", std::to_string(iter)},
                                                       {metric_key, fmt("%.17g", best_metric)}};
            for (const auto& [k, v] : r.best_model_metadata) meta[k] = v;
            root_writes(comm, "best_model", [&] {
              save_checkpoint_dir(save_dir / "best_model", {{kModelFile, &weights, meta}});
            });
            if (style == LogStyle::PaddleX)
              log << prefix() << "Model saved in " << (save_dir / "best_model").string() << "." << std::endl;
          }
          if (spec.early_stop) stop_early = early_stop(r.key_metric);
          if (ema) evaluate_ema(iter);
        }
      }
      save_checkpoint(iter);
      // PaddleSeg's rule logs its stop in place of the best-model line; PaddleX's counts down.
      const bool paddleseg_rule = spec.early_stop && spec.early_stop_rule == EarlyStop::Rule::PaddleSeg;
      if (task.can_evaluate() && best_iter >= 0) {
        if (stop_early && paddleseg_rule)
          log << prefix() << "Early stopping at iter " << iter << ". The best mean IoU is " << fmt("%.4f", best_metric)
              << "." << std::endl;
        else if (style == LogStyle::PaddleSeg)
          log << prefix() << "[EVAL] The model with the best validation " << metric_name << " ("
              << fmt("%.4f", best_metric) << ") was saved at iter " << best_iter << "." << std::endl;
        else
          log << prefix() << "Current evaluated best model on eval_dataset is " << checkpoint_name(best_iter) << ", "
              << metric_name << "=" << fmt("%.6f", best_metric) << std::endl;
      }
      if (ema && best_ema_iter >= 0)
        log << prefix() << "[EVAL] The EMA model with the best validation " << metric_name << " ("
            << fmt("%.4f", best_ema_metric) << ") was saved at iter " << best_ema_iter << "." << std::endl;
      if (spec.early_stop && !paddleseg_rule && early_stop.counter() > 0)
        log << prefix() << "EarlyStopping: " << early_stop.counter() << " / " << early_stop.patience() << std::endl;
      if (stop_early) {
        if (!paddleseg_rule) log << prefix() << "EarlyStopping: Stop training" << std::endl;
        summary.early_stopped = true;
        break;
      }
      batch_start = Clock::now();  // evaluation and saving are not part of batch_cost
      window_start = batch_start;
      continue;
    }
    batch_start = Clock::now();
    if (win_n == 0) window_start = batch_start;
  }
  if (opt.profile) profiler::set_enabled(false);
  if (graphs)
    log << prefix() << "CUDA graphs: " << graphs->replays() << " of " << summary.iters_done - start_iter
        << " steps replayed from " << graphs->captures() << " capture(s)" << std::endl;
  summary.best_metric = best_metric;
  summary.best_iter = best_iter;
  summary.best_checkpoint = best_iter >= 0 ? checkpoint_name(best_iter) : "";
  summary.last_checkpoint = last_good;
  if (scaler) summary.loss_scaling = scaler->scale();
  return summary;
}

TrainSummary run_training(const TrainConfig& cfg, const TrainOptions& opt, std::ostream& log) {
  check_trainable(cfg);
  ENGINE_CHECK(opt.save_interval > 0, "--save_interval must be positive, got ", opt.save_interval);
  ENGINE_CHECK(opt.log_iters > 0, "--log_iters must be positive, got ", opt.log_iters);
  // Resume metadata first: it decides the seed the data order and init were drawn with.
  const ResumePoint resume = open_resume_point(opt.resume_model, "--resume_model");
  const uint64_t seed = resolve_seed(resume, opt, LogStyle::PaddleSeg, log);
  ENGINE_CHECK(opt.repeats >= 1, "--repeats must be >= 1, got ", opt.repeats);
  SegTask task(cfg, seed, opt.do_eval, opt.device, log, opt.repeats);
  const LRSchedule schedule(cfg.lr_scheduler, cfg.iters,
                            opt.absolute_warmup ? WarmupMode::Absolute : WarmupMode::ShiftsInner);
  LoopSpec spec;
  spec.total_iters = cfg.iters;
  spec.batch_size = cfg.batch_size;
  spec.schedule = &schedule;
  spec.momentum = cfg.optimizer.momentum;
  spec.weight_decay = cfg.optimizer.weight_decay;
  spec.save_interval = opt.save_interval;
  spec.keep_checkpoint_max = opt.keep_checkpoint_max;
  spec.log_every = opt.log_iters;
  spec.log_style = LogStyle::PaddleSeg;
  spec.resume_flag = "--resume_model";
  spec.fresh_start_hint = "--opts model.pretrained=";
  spec.early_stop = opt.early_stop;
  spec.early_stop_patience = opt.early_stop_patience;
  spec.use_ema = opt.use_ema;
  if (opt.early_stop_intervals > 0) {
    ENGINE_CHECK(!opt.early_stop, "--early_stop_intervals: PaddleX's --early_stop is given too; use one of them");
    spec.early_stop = true;
    spec.early_stop_patience = opt.early_stop_intervals;
    spec.early_stop_rule = EarlyStop::Rule::PaddleSeg;
  }
  if (autocast_precision() == Precision::FP16) spec.loss_scaling = cfg.loss_scaling;
  return run_task(task, spec, opt, seed, resume, log);
}

}  // namespace engine::train
