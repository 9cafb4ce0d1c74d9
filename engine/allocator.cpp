#include "engine/allocator.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "engine/error.h"
#if defined(ENGINE_WITH_CUDA)
#include "engine/cuda_context.h"
#endif
#if defined(ENGINE_CUDA_EMULATED)
#include "kernels/emu/cuemu.h"
#endif

namespace engine {
namespace {

constexpr size_t kAlign = 64;
constexpr size_t kGuard = 64;
constexpr unsigned char kGuardByte = 0xA5;

std::atomic<bool> g_guard_mode{false};

struct Stats {
  std::mutex m;
  MemoryStats s;
  void on_alloc(size_t bytes, bool system, size_t reserved_bytes) {
    s.allocated_current += bytes;
    s.allocated_peak = std::max(s.allocated_peak, s.allocated_current);
    ++s.num_allocs;
    if (system) {
      s.reserved_current += reserved_bytes;
      s.reserved_peak = std::max(s.reserved_peak, s.reserved_current);
      ++s.num_system_allocs;
    }
  }
};

Stats& cpu_stats() {
  static Stats s;
  return s;
}

// Live guarded CPU blocks: user pointer -> user size.
std::mutex g_guard_mutex;
std::unordered_map<void*, size_t>& guarded_blocks() {
  static std::unordered_map<void*, size_t> m;
  return m;
}

bool guards_intact(const unsigned char* user, size_t bytes) {
  for (size_t i = 0; i < kGuard; ++i)
    if (user[-1 - (ptrdiff_t)i] != kGuardByte || user[bytes + i] != kGuardByte) return false;
  return true;
}

void* cpu_allocate(size_t bytes) {
  const bool guard = g_guard_mode.load();
  const size_t total = guard ? bytes + 2 * kGuard : std::max<size_t>(bytes, 1);
  void* raw = std::aligned_alloc(kAlign, (total + kAlign - 1) / kAlign * kAlign);
  ENGINE_CHECK(raw != nullptr, "out of CPU memory allocating ", bytes, " bytes");
  void* user = raw;
  if (guard) {
    auto* p = static_cast<unsigned char*>(raw);
    std::memset(p, kGuardByte, kGuard);
    std::memset(p + kGuard + bytes, kGuardByte, kGuard);
    std::memset(p + kGuard, 0xff, bytes);  // uninitialised reads show up as NaN
    user = p + kGuard;
    std::lock_guard g(g_guard_mutex);
    guarded_blocks()[user] = bytes;
  }
  {
    auto& st = cpu_stats();
    std::lock_guard g(st.m);
    st.on_alloc(bytes, true, bytes);
  }
  return user;
}

void cpu_free(void* p, size_t bytes) {
  if (!p) return;
  void* raw = p;
  {
    std::lock_guard g(g_guard_mutex);
    auto it = guarded_blocks().find(p);
    if (it != guarded_blocks().end()) {
      if (!guards_intact(static_cast<unsigned char*>(p), it->second))
        std::fprintf(stderr, "engine: CPU buffer %p of %zu bytes was written outside its bounds\n", p, it->second);
      guarded_blocks().erase(it);
      raw = static_cast<unsigned char*>(p) - kGuard;
    }
  }
  std::free(raw);
  auto& st = cpu_stats();
  std::lock_guard g(st.m);
  st.s.allocated_current -= bytes;
  st.s.reserved_current -= bytes;
}

#if defined(ENGINE_WITH_CUDA)
// ----------------------------------------------------------------- CUDA caching allocator
size_t round_size(size_t bytes) {
  constexpr size_t kSmall = 512, kLargeStep = 2u << 20, kSmallLimit = 1u << 20;
  if (bytes < kSmallLimit) return std::max<size_t>(kSmall, (bytes + kSmall - 1) / kSmall * kSmall);
  return (bytes + kLargeStep - 1) / kLargeStep * kLargeStep;
}

struct CudaCache {
  std::mutex m;
  Stats stats;
  // stream -> (size class -> free blocks). One stream per device today; keyed for the future.
  std::map<cudaStream_t, std::multimap<size_t, void*>> free_blocks;
  std::unordered_map<void*, size_t> block_size;  // live or cached block -> its class size

  void* allocate(size_t bytes) {
    const bool guard = g_guard_mode.load();
    const size_t size = guard ? std::max<size_t>(bytes, 1) : round_size(bytes);
    cudaStream_t stream = compute_stream();
    std::lock_guard g(m);
    if (!guard) {
      auto& fl = free_blocks[stream];
      // Best fit within the same class family; a large cached block is not split.
      auto it = fl.lower_bound(size);
      if (it != fl.end() && it->first == size) {
        void* p = it->second;
        fl.erase(it);
        stats.on_alloc(size, false, 0);
        return p;
      }
    }
    void* p = nullptr;
    cudaError_t e = cudaMalloc(&p, size);
    if (e != cudaSuccess) {
      cudaGetLastError();
      release_cached_locked();
      e = cudaMalloc(&p, size);
    }
    ENGINE_CHECK(e == cudaSuccess, "CUDA out of memory allocating ", bytes, " bytes (", stats.s.allocated_current,
                 " allocated, ", stats.s.reserved_current, " reserved)");
    block_size[p] = size;
    stats.on_alloc(size, true, size);
    return p;
  }

  void free(void* p) {
    std::lock_guard g(m);
    auto it = block_size.find(p);
    if (it == block_size.end()) fail("CUDA free of a pointer the caching allocator does not own");
    const size_t size = it->second;
    stats.s.allocated_current -= size;
    if (g_guard_mode.load()) {
      block_size.erase(it);
      stats.s.reserved_current -= size;
      cudaFree(p);
      return;
    }
    free_blocks[compute_stream()].emplace(size, p);
  }

  void release_cached_locked() {
    cudaStreamSynchronize(compute_stream());
    for (auto& [stream, fl] : free_blocks) {
      for (auto& [size, p] : fl) {
        cudaFree(p);
        block_size.erase(p);
        stats.s.reserved_current -= size;
      }
      fl.clear();
    }
  }
};

CudaCache& cuda_cache() {
  static CudaCache* c = new CudaCache;  // never destroyed: tensors may outlive static destructors
  return *c;
}
#endif

}  // namespace

void* device_allocate(Device d, size_t bytes) {
  if (d.is_cpu()) return cpu_allocate(bytes);
#if defined(ENGINE_WITH_CUDA)
  return cuda_cache().allocate(bytes);
#else
  fail("allocation on ", d.str(), ": this build has no CUDA backend");
#endif
}

void device_free(Device d, void* p, size_t bytes) {
  if (d.is_cpu()) return cpu_free(p, bytes);
#if defined(ENGINE_WITH_CUDA)
  cuda_cache().free(p);
#endif
}

MemoryStats memory_stats(Device d) {
  if (d.is_cpu()) {
    std::lock_guard g(cpu_stats().m);
    return cpu_stats().s;
  }
#if defined(ENGINE_WITH_CUDA)
  std::lock_guard g(cuda_cache().m);
  return cuda_cache().stats.s;
#else
  return {};
#endif
}

void reset_peak_memory_stats(Device d) {
  if (d.is_cpu()) {
    std::lock_guard g(cpu_stats().m);
    cpu_stats().s.allocated_peak = cpu_stats().s.allocated_current;
    cpu_stats().s.reserved_peak = cpu_stats().s.reserved_current;
    return;
  }
#if defined(ENGINE_WITH_CUDA)
  std::lock_guard g(cuda_cache().m);
  cuda_cache().stats.s.allocated_peak = cuda_cache().stats.s.allocated_current;
  cuda_cache().stats.s.reserved_peak = cuda_cache().stats.s.reserved_current;
#endif
}

void empty_cache() {
#if defined(ENGINE_WITH_CUDA)
  if (!cuda_available()) return;
  std::lock_guard g(cuda_cache().m);
  cuda_cache().release_cached_locked();
#endif
}

void set_guard_mode(bool on) { g_guard_mode = on; }
bool guard_mode() { return g_guard_mode.load(); }

int check_guards() {
  int bad = 0;
  {
    std::lock_guard g(g_guard_mutex);
    for (auto& [p, bytes] : guarded_blocks()) {
      if (!guards_intact(static_cast<unsigned char*>(p), bytes)) {
        std::fprintf(stderr, "engine: CPU buffer %p of %zu bytes was written outside its bounds\n", p, bytes);
        ++bad;
      }
    }
  }
#if defined(ENGINE_CUDA_EMULATED)
  bad += cuemuCheckGuards();
#endif
  return bad;
}

}  // namespace engine
