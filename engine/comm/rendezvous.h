// File rendezvous: how the ranks of a job learn rank 0's bytes (the ncclUniqueId) without MPI.
//
// Contract:
//   - The launcher gives every job a fresh path on a file system all ranks see, through the
//     environment variable ENGINE_RENDEZVOUS_FILE; every rank of the job passes the same path.
//   - Rank 0 refuses a path that already exists (a file left by another job would hand its bytes to
//     ours). It writes path + ".tmp.<pid>" and renames it to `path`, so the file appears whole; the
//     content carries a magic and a length header, so a reader never takes a partial file (file
//     systems that show a rename before the data) for the bytes.
//   - Every other rank polls every 10 ms until the file is complete, reads it and creates
//     path + ".ack.<rank>". Rank 0 waits for every ack, then removes the file and the acks: after a
//     successful exchange nothing is left, and the path may not be reused by the same job.
//   - Every wait ends after timeout_seconds with an engine::Error naming the path, the rank and the
//     timeout (rank 0 also removes what it wrote). World size 1 goes through the same steps.
#pragma once
#include <string>

namespace engine {

// Returns rank 0's root_bytes on every rank (non-root ranks' root_bytes are ignored).
std::string exchange_root_bytes_via_file(const std::string& path, int rank, int world_size,
                                         const std::string& root_bytes, double timeout_seconds);

}  // namespace engine
