// engine-train: PaddleSeg's tools/train.py for segmentation configs, PaddleX's train() for detection
// configs (model.type YOLOv3; train/det_config.h), one program:
//   engine-train --config configs/pp_liteseg_synthetic_256x256.yml --do_eval --use_vdl --save_dir output
//   engine-train --config configs/yolov3_mobilenetv1_synthetic.yml --num_epochs 30 --save_dir output/det
// Flags, defaults and the config format are PaddleSeg's (train/cli_args.h, train/config.h); the loop is
// train/trainer.h. Exit codes: 0 trained; 2 bad flags or config (one line naming the flag or key path);
// 3 the loss became non-finite (the message names the iteration and the last good checkpoint);
// 128 + N stopped by signal N (SIGINT 130, SIGTERM 143) after writing a final checkpoint (one line
// on stderr says where to resume); 1 any other error (missing or corrupt data or checkpoint files:
// the message names the file).
#include <cstdio>
#include <iomanip>
#include <iostream>

#include "base/error.h"
#include "data/dataset.h"
#include "engine/device.h"
#include "train/cli_args.h"
#include "train/cli_common.h"
#include "train/config.h"
#include "train/data_parallel.h"
#include "train/det_config.h"
#include "train/det_task.h"
#include "train/dist_env.h"
#include "train/grad_buckets.h"
#include "train/seg_task.h"
#include "train/stop_signal.h"
#include "train/trainer.h"

namespace {
// The job's communicator lives outside the try block: an error must not unwind into its destructor
// while a collective may still wait for the other ranks.
std::unique_ptr<engine::Communicator> g_comm;

// The job's world size, known from the launcher's variables before the communicator exists.
int g_world_size = 1;

// A normal end: the communicator is destroyed before main returns, since its destructor makes CUDA
// and NCCL calls, which must not run during the CUDA runtime's own teardown at exit.
int done(int code) {
  g_comm.reset();
  return code;
}

// A rank that fails in a multi-rank job ends its process at once (no MPI_Finalize, which would wait
// for the others), also when it fails while the communicator is being set up: the launcher sees the
// exit code and stops every rank.
int finish(int code) {
  if (g_world_size > 1 && code != 0) {
    std::fflush(stdout);
    std::fflush(stderr);
    std::_Exit(code);
  }
  return done(code);
}
}  // namespace

int main(int argc, char** argv) {
  using namespace engine;
  using namespace engine::train;
  try {
    const TrainArgs a = parse_train_args(argc, argv);
    if (a.help) {
      std::printf("%s", train_usage().c_str());
      return 0;
    }
    install_stop_handlers("engine-train");
    // Started by a multi-process launcher (mpirun, srun, engine-launch, paddle.distributed.launch,
    // torchrun): this process is one rank of a data-parallel job.
    DistEnv dist;
    try {
      dist = dist_env();
    } catch (const Error& e) {  // a bad launcher variable is a setup problem: exit code 2
      throw ConfigError(e.what());
    }
    g_world_size = dist.world_size;
    const std::string task = config_task(a.config);
    check_train_args_for_task(a, task);
    // One process per device: the communicator and this rank's device (train/data_parallel.h).
    DataParallelSetup dp =
        setup_data_parallel(dist, device_from_flag(a.device), a.device.find(':') != std::string::npos, a.dist_timeout);
    g_comm = std::move(dp.comm);
    // Rank 0 alone prints the log; the others report errors only.
    std::ostream quiet(nullptr);
    std::ostream& log = g_comm->is_root() ? std::cout : quiet;
    if (g_comm->world_size() > 1)
      log << "engine-train: data parallel, " << describe(dist) << ", " << g_comm->name() << ", device "
          << dp.device.str() << std::endl;
    TrainOptions o;
    o.device = dp.device;
    o.comm = g_comm.get();
    o.sync_bn = a.sync_bn == "on" ? TrainOptions::SyncBn::On
                                  : (a.sync_bn == "off" ? TrainOptions::SyncBn::Off : TrainOptions::SyncBn::Auto);
    o.profile = a.profile;
    o.cuda_graph = a.cuda_graph == "on"    ? TrainOptions::CudaGraph::On
                   : a.cuda_graph == "off" ? TrainOptions::CudaGraph::Off
                                           : TrainOptions::CudaGraph::Auto;
    o.allreduce_dtype = parse_allreduce_dtype(a.allreduce_dtype, "--allreduce_dtype");
    o.overwrite = a.overwrite;
    o.save_on_stop = a.save_on_stop;
    o.stop_request = &stop_request();
    TrainSummary s;
    std::string resume_hint;
    if (task == "detection") {
      const DetTrainConfig cfg = load_det_train_config(a.config, a.opts, a.det_flags);
      const std::string precision =
          apply_precision(a.precision, a.amp_level, cfg.params.precision, cfg.params.amp_level, o.device);
      if (!precision.empty()) log << "engine-train: " << precision << std::endl;
      o.save_dir = cfg.params.save_dir;
      s = run_det_training(cfg, o, log);
      resume_hint = "--resume_checkpoint ";
    } else {
      TrainConfig cfg = load_train_config(a.config, a.opts, a.iters, a.batch_size, a.learning_rate);
      const std::string precision = apply_precision(a.precision, a.amp_level, cfg.precision, cfg.amp_level, o.device);
      if (!precision.empty()) log << "engine-train: " << precision << std::endl;
      o.save_dir = a.save_dir;
      o.num_workers = a.num_workers;
      o.use_vdl = a.use_vdl;
      o.save_interval = a.save_interval;
      o.do_eval = a.do_eval;
      o.log_iters = a.log_iters;
      o.repeats = a.repeats;
      o.use_ema = a.use_ema;
      o.early_stop_intervals = a.early_stop_intervals.value_or(0);
      o.resume_model = a.resume_model;
      o.keep_checkpoint_max = a.keep_checkpoint_max;
      o.seed_given = a.seed.has_value();
      o.seed = a.seed.value_or(0);
      if (!a.det_flags.empty()) {  // PaddleX's epoch parameters: epochs counted over the train set
        check_trainable(cfg);
        apply_paddlex_params(cfg, o, a.det_flags, data::make_dataset(cfg.train_dataset)->size(), a.given_flags);
      }
      s = run_training(cfg, o, log);
      resume_hint = "--resume_model ";
    }
    if (s.stopped_by_signal && !g_comm->is_root()) return done(128 + s.stopped_by_signal);
    if (s.stopped_by_signal) {
      std::cout << std::flush;
      if (s.last_checkpoint.empty())
        std::fprintf(stderr,
                     "engine-train: stopped by %s after iter %lld; no checkpoint to resume from (start again)\n",
                     signal_name(s.stopped_by_signal), (long long)s.iters_done);
      else
        std::fprintf(stderr, "engine-train: stopped by %s after iter %lld; resume with %s%s --save_dir %s\n",
                     signal_name(s.stopped_by_signal), (long long)s.iters_done, resume_hint.c_str(),
                     s.last_checkpoint.c_str(), o.save_dir.c_str());
      return done(128 + s.stopped_by_signal);
    }
    log << "engine-train: finished " << s.iters_done << " iterations";
    if (s.early_stopped) log << " (early stop)";
    if (s.best_iter >= 0)
      log << "; best " << s.best_metric_name << " " << std::fixed << std::setprecision(4) << s.best_metric << " at "
          << s.best_checkpoint;
    if (s.loss_scaling > 0) {
      char scale[32];
      std::snprintf(scale, sizeof scale, "%g", s.loss_scaling);
      log << "; fp16 loss scaling " << scale << ", " << s.skipped_steps << " optimizer steps skipped";
    }
    log << "; outputs in " << o.save_dir << std::endl;
    return done(0);
  } catch (const ConfigError& e) {
    report_error("engine-train", e);
    return finish(2);
  } catch (const TrainingDiverged& e) {
    report_error("engine-train", e);
    return finish(3);
  } catch (const Error& e) {
    report_error("engine-train", e);
    return finish(1);
  } catch (const std::exception& e) {
    report_error("engine-train", e);
    return finish(1);
  }
}
