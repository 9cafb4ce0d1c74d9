// The MPI communicator: data-parallel CPU ranks started by mpirun (OpenMPI) or srun. Every MPI call
// runs on one communication thread, in the order the collectives were started, so a gradient bucket
// is reduced while backward goes on computing the next ones; the caller waits for a collective with
// the communicator's timeout and the job is aborted (MPI_Abort: mpirun ends every rank) with
// collective_timeout_message when it expires. MPI is initialised by the first communicator of the
// process and finalised at exit.
#pragma once
#include <memory>

#include "engine/comm/communicator.h"

namespace engine {

// True when an MPI launcher started this process (mpirun: OMPI_COMM_WORLD_SIZE; srun with PMIx:
// PMIX_RANK), i.e. when make_mpi_communicator can find its peers.
bool started_by_mpi_launcher();

// The world of the launch (MPI_COMM_WORLD). Collectives take CPU f32 dense tensors.
std::unique_ptr<Communicator> make_mpi_communicator(double timeout_seconds);

}  // namespace engine
