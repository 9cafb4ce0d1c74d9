// labels: sanitize
// train/dist_env.h: rank, world size and local rank from each launcher's variables (a fake getenv, so
// the process's own environment plays no part), the priority between launchers that are set together,
// every bad value's one-line error, and the CUDA device of a local rank with and without
// CUDA_VISIBLE_DEVICES.
#include <gtest/gtest.h>

#include <initializer_list>
#include <map>
#include <string>

#include "base/error.h"
#include "train/dist_env.h"

using namespace engine;
using namespace engine::train;

namespace {

using Vars = std::map<std::string, std::string>;

DistEnv from(const Vars& vars) {
  return dist_env_from([&vars](const char* name) -> const char* {
    auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  });
}

// Runs f, expects an engine::Error whose one-line message contains every one of `parts`.
template <class F>
void expect_error(F&& f, std::initializer_list<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "no error thrown; expected one mentioning '" << *parts.begin() << "'";
  } catch (const engine::Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    for (const std::string& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  }
}

void expect_env(const DistEnv& e, int rank, int world, int local_rank, int local_world, const std::string& launcher) {
  EXPECT_EQ(e.rank, rank);
  EXPECT_EQ(e.world_size, world);
  EXPECT_EQ(e.local_rank, local_rank);
  EXPECT_EQ(e.local_world_size, local_world);
  EXPECT_EQ(e.launcher, launcher);
}

const Vars kOmpi = {{"OMPI_COMM_WORLD_RANK", "5"},
                    {"OMPI_COMM_WORLD_SIZE", "8"},
                    {"OMPI_COMM_WORLD_LOCAL_RANK", "1"},
                    {"OMPI_COMM_WORLD_LOCAL_SIZE", "4"}};
const Vars kPaddle = {{"PADDLE_TRAINER_ID", "3"},   {"PADDLE_TRAINERS_NUM", "4"}, {"PADDLE_LOCAL_RANK", "1"},
                      {"PADDLE_RANK_IN_NODE", "1"}, {"PADDLE_LOCAL_SIZE", "2"},   {"PADDLE_GLOBAL_RANK", "3"},
                      {"PADDLE_GLOBAL_SIZE", "4"}};
const Vars kTorchrun = {{"RANK", "6"}, {"WORLD_SIZE", "16"}, {"LOCAL_RANK", "6"}, {"LOCAL_WORLD_SIZE", "8"}};
const Vars kSlurm = {{"SLURM_PROCID", "2"},
                     {"SLURM_NTASKS", "6"},
                     {"SLURM_LOCALID", "0"},
                     {"SLURM_NTASKS_PER_NODE", "2"},
                     {"SLURM_TASKS_PER_NODE", "2(x3)"}};

Vars merged(std::initializer_list<Vars> parts) {
  Vars v;
  for (const Vars& p : parts) v.insert(p.begin(), p.end());
  return v;
}

}  // namespace

TEST(DistEnv, NoLauncherIsOneProcess) {
  const DistEnv e = from({{"PATH", "/usr/bin"}, {"CUDA_VISIBLE_DEVICES", "0"}});
  expect_env(e, 0, 1, 0, 1, "none");
  EXPECT_TRUE(e.ignored.empty());
  EXPECT_EQ(describe(e), "rank 0 of 1 (local 0 of 1, none)");
}

TEST(DistEnv, EachLauncher) {
  expect_env(from(kOmpi), 5, 8, 1, 4, "openmpi");
  expect_env(from(kPaddle), 3, 4, 1, 2, "paddle");
  expect_env(from(kTorchrun), 6, 16, 6, 8, "torchrun-style");
  expect_env(from(kSlurm), 2, 6, 0, 2, "slurm");
  EXPECT_EQ(describe(from(kOmpi)), "rank 5 of 8 (local 1 of 4, openmpi)");
}

TEST(DistEnv, LauncherVariants) {
  // The older fleet launcher: PADDLE_RANK_IN_NODE only, no local size (world size stands in).
  expect_env(from({{"PADDLE_TRAINER_ID", "1"}, {"PADDLE_TRAINERS_NUM", "2"}, {"PADDLE_RANK_IN_NODE", "1"}}), 1, 2, 1, 2,
             "paddle");
  // PADDLE_LOCAL_RANK is preferred to PADDLE_RANK_IN_NODE.
  expect_env(from({{"PADDLE_TRAINER_ID", "3"},
                   {"PADDLE_TRAINERS_NUM", "4"},
                   {"PADDLE_LOCAL_RANK", "1"},
                   {"PADDLE_RANK_IN_NODE", "0"},
                   {"PADDLE_LOCAL_SIZE", "2"}}),
             3, 4, 1, 2, "paddle");
  // Slurm without --ntasks-per-node: the first number of SLURM_TASKS_PER_NODE.
  expect_env(
      from({{"SLURM_PROCID", "4"}, {"SLURM_NTASKS", "5"}, {"SLURM_LOCALID", "1"}, {"SLURM_TASKS_PER_NODE", "3(x1),2"}}),
      4, 5, 1, 3, "slurm");
  // SLURM_NTASKS_PER_NODE wins over SLURM_TASKS_PER_NODE; the legacy SLURM_NPROCS stands in for SLURM_NTASKS.
  expect_env(from({{"SLURM_PROCID", "1"},
                   {"SLURM_NPROCS", "2"},
                   {"SLURM_LOCALID", "1"},
                   {"SLURM_NTASKS_PER_NODE", "2"},
                   {"SLURM_TASKS_PER_NODE", "7"}}),
             1, 2, 1, 2, "slurm");
  // RANK/WORLD_SIZE only (no local rank or size): one node.
  expect_env(from({{"RANK", "2"}, {"WORLD_SIZE", "3"}}), 2, 3, 2, 3, "torchrun-style");
  // A local size without a local rank: ranks fill the nodes in order.
  expect_env(from({{"RANK", "5"}, {"WORLD_SIZE", "8"}, {"LOCAL_WORLD_SIZE", "4"}}), 5, 8, 1, 4, "torchrun-style");
  // Surrounding blanks are tolerated.
  expect_env(from({{"RANK", " 1 "}, {"WORLD_SIZE", "2\n"}}), 1, 2, 1, 2, "torchrun-style");
}

TEST(DistEnv, PriorityWhenLaunchersNest) {
  // mpirun inside a Slurm allocation: OpenMPI's own variables win, Slurm's are reported as ignored.
  DistEnv e = from(merged({kOmpi, kSlurm}));
  expect_env(e, 5, 8, 1, 4, "openmpi");
  EXPECT_EQ(e.ignored, (std::vector<std::string>{"slurm"}));
  EXPECT_EQ(describe(e), "rank 5 of 8 (local 1 of 4, openmpi; ignored slurm)");
  // Every launcher at once: the documented order.
  e = from(merged({kOmpi, kPaddle, kTorchrun, kSlurm}));
  expect_env(e, 5, 8, 1, 4, "openmpi");
  EXPECT_EQ(e.ignored, (std::vector<std::string>{"paddle", "torchrun-style", "slurm"}));
  expect_env(from(merged({kPaddle, kTorchrun, kSlurm})), 3, 4, 1, 2, "paddle");
  // torchrun started by srun (one per node): the worker's RANK, not the node's SLURM_PROCID.
  e = from(merged({kTorchrun, kSlurm}));
  expect_env(e, 6, 16, 6, 8, "torchrun-style");
  EXPECT_EQ(e.ignored, (std::vector<std::string>{"slurm"}));
  // A lower-priority launcher's bad values do not matter once a higher one is chosen.
  expect_env(from(merged({kOmpi, {{"SLURM_PROCID", "x"}, {"SLURM_NTASKS", "-3"}}})), 5, 8, 1, 4, "openmpi");
  // A launcher counts as present with just its world size (and then its rank is missing: an error).
  expect_error(
      [] {
        from(merged({{{"OMPI_COMM_WORLD_SIZE", "2"}}, kTorchrun}));
      },
      {"openmpi", "OMPI_COMM_WORLD_SIZE=2", "OMPI_COMM_WORLD_RANK is not"});
}

TEST(DistEnv, BadValuesNameTheVariableAndTheValue) {
  // Not an integer.
  expect_error([] { from({{"RANK", "one"}, {"WORLD_SIZE", "2"}}); }, {"RANK='one'", "not an integer"});
  expect_error([] { from({{"RANK", "1"}, {"WORLD_SIZE", "2.0"}}); }, {"WORLD_SIZE='2.0'", "not an integer"});
  expect_error([] { from({{"RANK", ""}, {"WORLD_SIZE", "2"}}); }, {"RANK=''", "not an integer"});
  expect_error(
      [] {
        from({{"RANK", "0"}, {"WORLD_SIZE", "99999999999"}});
      },
      {"WORLD_SIZE='99999999999'", "not an integer"});
  expect_error(
      [] {
        from({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "0x1"}});
      },
      {"LOCAL_RANK='0x1'", "not an integer"});
  expect_error(
      [] {
        from({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"}, {"SLURM_TASKS_PER_NODE", "(x2)"}});
      },
      {"slurm", "SLURM_TASKS_PER_NODE='(x2)'", "not an integer"});
  expect_error(
      [] {
        from({{"OMPI_COMM_WORLD_RANK", "+1"}, {"OMPI_COMM_WORLD_SIZE", "2"}});
      },
      {"openmpi", "OMPI_COMM_WORLD_RANK='+1'"});
  // A global variable without its partner.
  expect_error([] { from({{"RANK", "1"}}); }, {"RANK=1 is set but WORLD_SIZE is not"});
  expect_error([] { from({{"PADDLE_TRAINERS_NUM", "4"}}); }, {"PADDLE_TRAINERS_NUM=4 is set but PADDLE_TRAINER_ID"});
  // Sizes below 1, negative ranks.
  expect_error([] { from({{"RANK", "0"}, {"WORLD_SIZE", "0"}}); }, {"WORLD_SIZE=0", "at least 1"});
  expect_error([] { from({{"RANK", "-1"}, {"WORLD_SIZE", "2"}}); }, {"RANK=-1", "negative"});
  expect_error([] { from({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "-2"}}); }, {"LOCAL_RANK=-2", "negative"});
  expect_error(
      [] {
        from({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "0"}, {"LOCAL_WORLD_SIZE", "0"}});
      },
      {"LOCAL_WORLD_SIZE=0", "at least 1"});
  // Rank not below the world size.
  expect_error(
      [] {
        from({{"OMPI_COMM_WORLD_RANK", "4"}, {"OMPI_COMM_WORLD_SIZE", "4"}});
      },
      {"OMPI_COMM_WORLD_RANK=4 is not below OMPI_COMM_WORLD_SIZE=4"});
  expect_error(
      [] {
        from({{"PADDLE_TRAINER_ID", "7"}, {"PADDLE_TRAINERS_NUM", "2"}});
      },
      {"PADDLE_TRAINER_ID=7 is not below PADDLE_TRAINERS_NUM=2"});
  // Local rank not below the local size (or the world size standing in for it).
  expect_error(
      [] {
        from({{"RANK", "3"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "2"}, {"LOCAL_WORLD_SIZE", "2"}});
      },
      {"LOCAL_RANK=2 is not below LOCAL_WORLD_SIZE=2"});
  expect_error(
      [] {
        from({{"SLURM_PROCID", "1"}, {"SLURM_NTASKS", "4"}, {"SLURM_LOCALID", "2"}, {"SLURM_TASKS_PER_NODE", "2(x2)"}});
      },
      {"SLURM_LOCALID=2 is not below SLURM_TASKS_PER_NODE=2"});
  expect_error(
      [] {
        from({{"PADDLE_TRAINER_ID", "1"}, {"PADDLE_TRAINERS_NUM", "2"}, {"PADDLE_RANK_IN_NODE", "2"}});
      },
      {"PADDLE_RANK_IN_NODE=2 is not below PADDLE_TRAINERS_NUM=2"});
  // A local size above the world size.
  expect_error(
      [] {
        from({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "0"}, {"LOCAL_WORLD_SIZE", "4"}});
      },
      {"LOCAL_WORLD_SIZE=4 exceeds WORLD_SIZE=2"});
}

TEST(DistEnv, RealEnvironmentIsReadable) {
  // Whatever launched the tests, dist_env() gives a consistent answer or a one-line error.
  try {
    const DistEnv e = dist_env();
    EXPECT_GE(e.rank, 0);
    EXPECT_LT(e.rank, e.world_size);
    EXPECT_LT(e.local_rank, e.local_world_size);
  } catch (const engine::Error& e) {
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos);
  }
}

TEST(DeviceForLocalRank, WithoutCudaVisibleDevices) {
  EXPECT_EQ(device_for_local_rank(0, nullptr, 1), 0);
  EXPECT_EQ(device_for_local_rank(3, nullptr, 8), 3);
  expect_error([] { device_for_local_rank(2, nullptr, 2); }, {"local rank is 2", "2 CUDA devices"});
  expect_error([] { device_for_local_rank(0, nullptr, 0); }, {"local rank is 0", "0 CUDA devices"});
  expect_error([] { device_for_local_rank(-1, nullptr, 2); }, {"local rank is -1", "negative"});
}

TEST(DeviceForLocalRank, CudaVisibleDevicesRenumbers) {
  // The listed devices are 0..n-1 inside the process, whatever their physical numbers.
  EXPECT_EQ(device_for_local_rank(0, "3", 1), 0);
  EXPECT_EQ(device_for_local_rank(2, "0,1,3", 3), 2);
  EXPECT_EQ(
      device_for_local_rank(1, "GPU-8e2b1f3c-aaaa-bbbb-cccc-000000000001,GPU-8e2b1f3c-aaaa-bbbb-cccc-000000000002", 2),
      1);
  EXPECT_EQ(device_for_local_rank(1, "4, 5", 2), 1);
  expect_error([] { device_for_local_rank(3, "0,1,3", 3); },
               {"CUDA_VISIBLE_DEVICES=0,1,3 lists 3 devices but the local rank is 3"});
  // One listed device: the launcher bound it to this process (Slurm --gpus-per-task=1), any local rank.
  EXPECT_EQ(device_for_local_rank(1, "2", 1), 0);
  EXPECT_EQ(device_for_local_rank(3, "GPU-8e2b1f3c-aaaa-bbbb-cccc-000000000003", 1), 0);
  expect_error([] { device_for_local_rank(1, "2", 0); }, {"CUDA_VISIBLE_DEVICES=2 lists 1 device", "sees none"});
  expect_error([] { device_for_local_rank(2, "0,1", 2); }, {"CUDA_VISIBLE_DEVICES=0,1 lists 2 devices but", "is 2"});
  // Empty: no device (CPU only).
  expect_error([] { device_for_local_rank(0, "", 0); }, {"CUDA_VISIBLE_DEVICES=''", "no device"});
  // More listed than the runtime can use (an invalid entry hides the rest).
  expect_error([] { device_for_local_rank(2, "0,1,9", 2); },
               {"CUDA_VISIBLE_DEVICES=0,1,9 lists 3 devices but the CUDA runtime sees 2", "local rank is 2"});
}
