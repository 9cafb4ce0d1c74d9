// Memory for tensors: one caching allocator per device kind.
//  - Requests are rounded to size classes (512 B below 1 MiB, 2 MiB steps above); freed blocks go
//    to a free list (per stream on CUDA) and are reused for the same class; when the system
//    allocator fails the cache is released and the allocation retried. empty_cache() releases it.
//  - CPU: 64-byte aligned; only blocks of 1 MiB and more are cached (glibc maps them afresh each
//    time otherwise, and the page faults cost more than the ops). In guard mode (tests) every block
//    gets 64 guard bytes on each side, checked on free and by check_guards().
//  - CUDA: every block is cached. In guard mode sizes are exact and nothing is cached, so the
//    emulation layer's own guard zones around each cudaMalloc see every overrun.
#pragma once
#include <cstddef>
#include <cstdint>

#include "engine/device.h"

namespace engine {

struct MemoryStats {
  size_t allocated_current = 0;  // bytes handed out to tensors
  size_t allocated_peak = 0;
  size_t reserved_current = 0;  // bytes held from the system/driver (allocated + cached)
  size_t reserved_peak = 0;
  size_t num_allocs = 0;         // allocate() calls
  size_t num_system_allocs = 0;  // calls that went to malloc/cudaMalloc
};

void* device_allocate(Device d, size_t bytes);
void device_free(Device d, void* p, size_t bytes);
MemoryStats memory_stats(Device d);
void reset_peak_memory_stats(Device d);
// Returns cached CUDA blocks to the driver.
void empty_cache();

#if defined(ENGINE_WITH_CUDA)
// CUDA graphs (engine/cuda_graph.h): between begin_capture_pool and end_capture_pool every CUDA block
// is taken from and returned to the pool `pool` (an opaque key), including blocks allocated before
// the capture and freed during it, since the captured work reads them again at every replay. The
// pool's blocks are used by captures alone and kept until release_capture_pool (after the last
// graph that used it is destroyed): empty_cache() and out-of-memory retries leave them.
void begin_capture_pool(const void* pool);
void end_capture_pool();
void release_capture_pool(const void* pool);
#endif

// Guard mode: set before allocating the tensors to check (tests). check_guards() returns the number
// of live blocks whose guard bytes were overwritten (CPU) plus the emulation layer's count (CUDA).
void set_guard_mode(bool on);
bool guard_mode();
int check_guards();

}  // namespace engine
