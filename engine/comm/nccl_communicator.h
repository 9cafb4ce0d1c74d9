// NCCL communicator: GPU ranks, one process per device (select_cuda_device in engine/device.h).
// Declared in every build; defined in the CUDA builds (engine/comm/nccl_communicator.cpp; the
// emulated build's NCCL is kernels/emu/nccl_emu.cpp), so callers guard their use with ENGINE_WITH_CUDA.
//
// How it runs:
//   - Collectives run on a dedicated communication stream. Each one first waits (on the device) for
//     the work queued so far on compute_stream(), and PendingCollective::wait() makes the compute
//     stream wait for its end: no host synchronisation on the training path.
//   - A watchdog thread follows every collective in flight; one that has not completed timeout_seconds
//     after it was started (counting the compute work queued before it), or an asynchronous NCCL
//     error, ends the process: one line on stderr (collective_timeout_message), ncclCommAbort, exit
//     code kCollectiveTimeoutExit. Communicator initialisation is held to the same limit.
//   - barrier and all_gather_bytes wait on the host, by polling under the same watchdog.
//   - All-reduces started while a CUDA graph is captured (data-parallel step graphs) are captured
//     with the same stream fork and join; NCCL supports capture from 2.9.6 on. The watchdog follows
//     each replay as a whole (follow_enqueued_work) instead of the collectives inside it.
#pragma once
#include <functional>
#include <memory>
#include <string>

#include "engine/comm/communicator.h"

namespace engine {

// Rank 0 creates the ncclUniqueId and calls exchange_root_bytes(its bytes); other ranks call it with
// "". It must return rank 0's bytes on every rank (MPI broadcast, or exchange_root_bytes_via_file in
// engine/comm/rendezvous.h). device_index must be the device select_cuda_device chose.
std::unique_ptr<Communicator> make_nccl_communicator(
    int rank, int world_size, int device_index,
    const std::function<std::string(const std::string& root_bytes)>& exchange_root_bytes, double timeout_seconds);

}  // namespace engine
