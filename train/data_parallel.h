// The data-parallel setup of one training process: which communicator it talks through and which
// device it trains on, from the launcher's environment (train/dist_env.h).
//   world size 1            LocalCommunicator, the requested device.
//   CPU ranks               MPI (the process must have been started by mpirun or srun).
//   GPU ranks               NCCL on the rank's device: its local rank among CUDA_VISIBLE_DEVICES
//                           (device_for_local_rank), selected with select_cuda_device before any CUDA
//                           work; the ncclUniqueId travels over MPI under mpirun/srun, else through
//                           the rendezvous file named by ENGINE_RENDEZVOUS_FILE (engine-launch sets it).
// Errors are ConfigError (exit code 2 in engine-train), one line naming the launcher and what to do.
#pragma once
#include <memory>

#include "engine/comm/communicator.h"
#include "engine/device.h"
#include "train/dist_env.h"

namespace engine::train {

struct DataParallelSetup {
  std::unique_ptr<Communicator> comm;
  Device device;
};

// `device_given`: the user named a device index explicitly (--device gpu:N), which a multi-rank job
// refuses (each rank's device is its local rank's).
DataParallelSetup setup_data_parallel(const DistEnv& env, Device requested, bool device_given, double timeout_seconds);

}  // namespace engine::train
