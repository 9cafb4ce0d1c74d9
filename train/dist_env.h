// The process's place in a data-parallel job, as its launcher put it in the environment, and the CUDA
// device a rank uses. No communication happens here; the communicators (engine/comm/communicator.h) start
// from what this reads.
//
// Sources (each launcher's documented variables: Open MPI's "Environment variables" page, Paddle's
// paddle.distributed.launch, torchrun's torch/distributed/run.py, Slurm's srun man page), in this
// priority; the first launcher with any of its global (rank or world size) variables set is used and
// every other launcher's variables are ignored:
//   1. "openmpi"        OMPI_COMM_WORLD_RANK / _SIZE / _LOCAL_RANK / _LOCAL_SIZE (mpirun)
//   2. "paddle"         PADDLE_TRAINER_ID / PADDLE_TRAINERS_NUM, local rank PADDLE_LOCAL_RANK or else
//                       PADDLE_RANK_IN_NODE, local size PADDLE_LOCAL_SIZE (paddle.distributed.launch sets
//                       all of them, launch/controllers/collective.py; the older fleet launcher,
//                       fleet/launch_utils.py, sets PADDLE_RANK_IN_NODE and no local size)
//   3. "torchrun-style" RANK / WORLD_SIZE / LOCAL_RANK / LOCAL_WORLD_SIZE
//   4. "slurm"          SLURM_PROCID / SLURM_NTASKS (or the legacy SLURM_NPROCS) / SLURM_LOCALID, local
//                       size SLURM_NTASKS_PER_NODE or else the first number of SLURM_TASKS_PER_NODE
//                       ("2(x3),1" -> 2; nodes with fewer tasks are not told apart)
//   none of them:       "none", rank 0 of 1.
// Why this order: launchers nest (mpirun or torchrun inside a Slurm allocation, srun starting one
// torchrun per node), and the innermost one, which started this very process, sets its variables
// over the outer ones that leak through. So two launchers that disagree are not an error: e.g. under
// mpirun in an sbatch script the SLURM_* values describe the allocation, not this rank, and OpenMPI's
// own variables win.
// The launchers that were also present are listed in DistEnv::ignored so the trainer can say so.
// Slurm's variables describe srun's tasks: start the program with srun, not directly in the batch
// script (whose own SLURM_* values would be taken for a job step's).
// Missing values: no local size -> world_size (an upper bound: the launcher did not say); no local
// rank -> rank mod the local size (ranks fill the nodes in order; one node when both are missing).
// Errors (engine::Error, one line naming the variable and its value): not an integer, a global
// variable without its partner, world or local size < 1, a negative rank, rank >= world size,
// local rank >= local size, local size > world size.
//
// Tested by tests/test_dist_env.cpp (a fake getenv for every launcher, the precedence, each bad value,
// device_for_local_rank with and without CUDA_VISIBLE_DEVICES).
#pragma once
#include <functional>
#include <string>
#include <vector>

namespace engine::train {

struct DistEnv {
  int rank = 0, world_size = 1, local_rank = 0, local_world_size = 1;
  std::string launcher = "none";     // "none", "openmpi", "paddle", "torchrun-style", "slurm"
  std::vector<std::string> ignored;  // lower-priority launchers whose variables were set too
};

// Reads the variables through getenv_fn (returns nullptr for an unset variable).
DistEnv dist_env_from(const std::function<const char*(const char*)>& getenv_fn);
// The process's real environment.
DistEnv dist_env();
// "rank 1 of 4 (local 1 of 2, openmpi)" for logs; "+ ignored slurm" when others were present.
std::string describe(const DistEnv& env);

// The CUDA device index a process with this node-local rank uses: one device per process, in local
// rank order. With CUDA_VISIBLE_DEVICES set (cuda_visible_devices != nullptr) the process sees the
// listed devices renumbered 0..n-1, so the index is local_rank and must be below the number of listed
// entries (an empty value lists none: CPU only); unset, it must be below device_count. In both cases
// it must also be below device_count, the number the CUDA runtime reports (an entry CUDA cannot use
// hides itself and every later one). One listed device is the process's own whatever its local
// rank: a launcher that binds a device per task (Slurm's --gpus-per-task=1) gives each process a
// different single entry (ranks given the same one are refused by NCCL as a duplicate GPU).
// Errors name CUDA_VISIBLE_DEVICES and its value where it is set.
int device_for_local_rank(int local_rank, const char* cuda_visible_devices, int device_count);

}  // namespace engine::train
