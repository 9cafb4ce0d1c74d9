#include "train/data_parallel.h"

#include <cstdlib>

#include "engine/comm/mpi_communicator.h"
#include "engine/comm/nccl_communicator.h"
#include "engine/comm/rendezvous.h"
#include "train/config.h"

namespace engine::train {

namespace {
// The world an MPI communicator found must be the one the launcher's variables describe.
void check_same_world(const Communicator& c, const DistEnv& env) {
  if (c.rank() != env.rank || c.world_size() != env.world_size)
    throw ConfigError("engine-train: MPI reports rank " + std::to_string(c.rank()) + " of " +
                      std::to_string(c.world_size()) + " but the launcher's variables say " + describe(env) +
                      "; start the ranks with one launcher");
}
}  // namespace

DataParallelSetup setup_data_parallel(const DistEnv& env, Device requested, bool device_given, double timeout_seconds) {
  DataParallelSetup s;
  if (env.world_size == 1) {
    s.comm = make_local_communicator();
    s.device = requested;
    if (requested.is_cuda()) select_cuda_device(requested.index);
    return s;
  }
  if (timeout_seconds <= 0)
    throw ConfigError("engine-train: --dist_timeout must be a positive number of seconds, got " +
                      std::to_string(timeout_seconds));
  const bool mpi = started_by_mpi_launcher();
  if (requested.is_cpu()) {
    if (!mpi)
      throw ConfigError("engine-train: started as " + describe(env) +
                        " on the CPU: CPU ranks communicate through MPI, start them with mpirun -np N (or srun)");
    s.comm = make_mpi_communicator(timeout_seconds);
    check_same_world(*s.comm, env);
    s.device = requested;
    return s;
  }
#if defined(ENGINE_WITH_CUDA)
  if (device_given)
    throw ConfigError("engine-train: --device " + requested.str() + " with " + describe(env) +
                      ": each rank trains on its local rank's device among CUDA_VISIBLE_DEVICES; pass --device gpu");
  const int index = device_for_local_rank(env.local_rank, std::getenv("CUDA_VISIBLE_DEVICES"), cuda_device_count());
  select_cuda_device(index);
  std::function<std::string(const std::string&)> exchange;
  std::unique_ptr<Communicator> bootstrap;
  if (mpi) {
    bootstrap = make_mpi_communicator(timeout_seconds);
    check_same_world(*bootstrap, env);
    Communicator* b = bootstrap.get();
    exchange = [b](const std::string& root_bytes) { return b->all_gather_bytes(root_bytes, "NCCL unique id")[0]; };
  } else {
    const char* file = std::getenv("ENGINE_RENDEZVOUS_FILE");
    if (!file || !*file)
      throw ConfigError("engine-train: started as " + describe(env) +
                        " without mpirun and without ENGINE_RENDEZVOUS_FILE: start the GPU ranks with engine-launch "
                        "or mpirun, or set ENGINE_RENDEZVOUS_FILE to a fresh path every rank can read");
    const std::string path = file;
    const int rank = env.rank, world = env.world_size;
    exchange = [path, rank, world, timeout_seconds](const std::string& root_bytes) {
      return exchange_root_bytes_via_file(path, rank, world, root_bytes, timeout_seconds);
    };
  }
  s.comm = make_nccl_communicator(env.rank, env.world_size, index, exchange, timeout_seconds);
  s.device = Device::cuda(index);
  return s;
#else
  (void)device_given;
  throw ConfigError("engine-train: started as " + describe(env) + " on " + requested.str() +
                    ": this build has no CUDA backend (multi-GPU training needs the CUDA build); "
                    "train CPU ranks with --device cpu under mpirun");
#endif
}

}  // namespace engine::train
