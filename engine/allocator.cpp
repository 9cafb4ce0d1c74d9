#include "engine/allocator.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <map>
#include <mutex>
#include <set>
#include <unordered_map>
#include <vector>

#include "base/error.h"
#if defined(ENGINE_WITH_CUDA)
#include "base/cuda_context.h"
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

void add_alloc(MemoryStats& s, size_t bytes) {
  s.allocated_current += bytes;
  s.allocated_peak = std::max(s.allocated_peak, s.allocated_current);
  ++s.num_allocs;
}
void add_reserved(MemoryStats& s, size_t bytes) {
  s.reserved_current += bytes;
  s.reserved_peak = std::max(s.reserved_peak, s.reserved_current);
  ++s.num_system_allocs;
}

// Size classes of the caches: 512 B steps below 1 MiB, 2 MiB steps above. A training step
// allocates the same sizes every iteration, so blocks come back to the same class.
size_t round_size(size_t bytes) {
  constexpr size_t kSmall = 512, kLargeStep = 2u << 20, kSmallLimit = 1u << 20;
  if (bytes < kSmallLimit) return std::max<size_t>(kSmall, (bytes + kSmall - 1) / kSmall * kSmall);
  return (bytes + kLargeStep - 1) / kLargeStep * kLargeStep;
}

// A caching allocator over a system allocator (malloc or cudaMalloc). Freed blocks are kept in a
// free list per stream (per device for the CPU) and reused for requests of the same size class,
// most recently freed first.
// When the system allocator fails, the cache is returned to it and the request retried.
class BlockCache {
  static constexpr size_t kPoolFitRatio = 4;

 public:
  using SysAlloc = void* (*)(size_t);
  using SysFree = void (*)(void*);
  BlockCache(SysAlloc a, SysFree f, size_t min_cached) : sys_alloc_(a), sys_free_(f), min_cached_(min_cached) {}

  void* allocate(size_t bytes, const void* stream, bool exact) {
    std::lock_guard g(m_);
    if (capture_) stream = capture_, exact = false;  // a capture takes and returns blocks of its pool only
    const bool cache = !exact && bytes >= min_cached_;
    const size_t size = cache ? round_size(bytes) : std::max<size_t>(bytes, 1);
    if (cache) {
      // The most recently freed block of the class (equal keys keep insertion order, so it is the
      // last of its range): on the CPU it is the one most likely still in cache.
      auto& fl = free_[stream];
      auto it = fl.upper_bound(size);
      if (it != fl.begin() && std::prev(it)->first == size) {
        --it;
        void* p = it->second;
        fl.erase(it);
        live_[p] = {size, stream, true};
        add_alloc(stats_, size);
        return p;
      }
      // A capture's pool also hands out the smallest free block up to kPoolFitRatio times the
      // request: graphs of other batch shapes (PaddleX's BatchRandomResize: 10 input sizes) then
      // reuse each other's blocks instead of each adding its own set of every size.
      if (capture_) {
        it = fl.lower_bound(size);
        if (it != fl.end() && it->first <= size * kPoolFitRatio) {
          const size_t have = it->first;
          void* p = it->second;
          fl.erase(it);
          live_[p] = {have, stream, true};
          add_alloc(stats_, have);
          return p;
        }
      }
    }
    void* p = sys_alloc_(size);
    if (!p && !capture_) {  // (a capture cannot free memory: cudaFree would end it)
      release_locked();
      p = sys_alloc_(size);
    }
    if (!p && capture_)  // the step runs without a graph, in the memory eager steps fit in
      fail_capture("out of memory allocating ", bytes, " bytes during a CUDA graph capture (", stats_.allocated_current,
                   " allocated, ", stats_.reserved_current, " reserved)");
    ENGINE_CHECK(p != nullptr, "out of memory allocating ", bytes, " bytes (", stats_.allocated_current, " allocated, ",
                 stats_.reserved_current, " reserved)");
    live_[p] = {size, stream, cache};
    add_reserved(stats_, size);
    add_alloc(stats_, size);
    return p;
  }

  void free(void* p) {
    std::lock_guard g(m_);
    auto it = live_.find(p);
    if (it == live_.end()) fail("free of a pointer the caching allocator does not own");
    Block b = it->second;
    live_.erase(it);
    stats_.allocated_current -= b.size;
    // A block freed during a capture may still be read by the captured work at every replay: it joins
    // the capture's pool, whatever its origin, so no work outside the graphs can be handed it.
    if (capture_) b.stream = capture_, b.cached = true;
    if (b.cached) {
      free_[b.stream].emplace(b.size, p);
    } else {
      stats_.reserved_current -= b.size;
      sys_free_(p);
    }
  }

  void release() {
    std::lock_guard g(m_);
    release_locked();
  }

  // CUDA graphs: blocks of `pool` serve the capture alone until end_capture; the pool is kept (never
  // released by empty_cache or an out-of-memory retry) until release_pool.
  void begin_capture(const void* pool) {
    std::lock_guard g(m_);
    ENGINE_CHECK(!capture_, "a CUDA graph capture is already running");
    capture_ = pool;
    pools_.insert(pool);
  }
  void end_capture() {
    std::lock_guard g(m_);
    capture_ = nullptr;
  }
  // Once no graph that used `pool` remains: its cached blocks go back to the system allocator, and its
  // live blocks (a graph's outputs still held) return to `stream`'s list when freed (or, `exact`, to
  // the system allocator).
  void release_pool(const void* pool, const void* stream, bool exact) {
    std::lock_guard g(m_);
    ENGINE_CHECK(capture_ != pool, "release of a capture pool while its capture runs");
    pools_.erase(pool);
    if (auto it = free_.find(pool); it != free_.end()) {
      for (auto& [size, p] : it->second) {
        stats_.reserved_current -= size;
        sys_free_(p);
      }
      free_.erase(it);
    }
    for (auto& [p, b] : live_)
      if (b.stream == pool) b.stream = stream, b.cached = !exact;
  }

  MemoryStats stats() {
    std::lock_guard g(m_);
    return stats_;
  }
  void reset_peak() {
    std::lock_guard g(m_);
    stats_.allocated_peak = stats_.allocated_current;
    stats_.reserved_peak = stats_.reserved_current;
  }

 private:
  void release_locked() {
    if (capture_) return;  // cudaFree would end the capture
    for (auto& [stream, fl] : free_) {
      if (pools_.count(stream)) continue;  // graphs' memory (their replays write it)
      for (auto& [size, p] : fl) {
        stats_.reserved_current -= size;
        sys_free_(p);
      }
      fl.clear();
    }
  }

  SysAlloc sys_alloc_;
  SysFree sys_free_;
  size_t min_cached_;
  std::mutex m_;
  MemoryStats stats_;
  struct Block {
    size_t size;         // class size
    const void* stream;  // free list it returns to
    bool cached;         // false: goes straight back to the system allocator
  };
  std::map<const void*, std::multimap<size_t, void*>> free_;  // stream -> class size -> blocks
  std::unordered_map<void*, Block> live_;
  const void* capture_ = nullptr;  // the pool of the capture running now
  std::set<const void*> pools_;    // pools of live graphs
};

// ----------------------------------------------------------------------------- CPU
void* cpu_sys_alloc(size_t n) { return std::aligned_alloc(kAlign, (n + kAlign - 1) / kAlign * kAlign); }
void cpu_sys_free(void* p) { std::free(p); }

// Blocks of 1 MiB and more are cached: glibc serves them with fresh mmap()s whose page faults cost
// 10-50 ms for an 80 MB activation, every step. Smaller blocks are left to malloc's own bins.
BlockCache& cpu_cache() {
  static BlockCache* c = new BlockCache(cpu_sys_alloc, cpu_sys_free, 1u << 20);  // never destroyed
  return *c;
}

// Guard mode: live guarded blocks, user pointer -> user size.
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
  if (!g_guard_mode.load()) return cpu_cache().allocate(bytes, nullptr, false);
  auto* p = static_cast<unsigned char*>(cpu_cache().allocate(bytes + 2 * kGuard, nullptr, true));
  std::memset(p, kGuardByte, kGuard);
  std::memset(p + kGuard + bytes, kGuardByte, kGuard);
  std::memset(p + kGuard, 0xff, bytes);  // uninitialised reads show up as NaN
  void* user = p + kGuard;
  std::lock_guard g(g_guard_mutex);
  guarded_blocks()[user] = bytes;
  return user;
}

void cpu_free(void* p) {
  if (!p) return;
  void* block = p;
  {
    std::lock_guard g(g_guard_mutex);
    auto it = guarded_blocks().find(p);
    if (it != guarded_blocks().end()) {
      if (!guards_intact(static_cast<unsigned char*>(p), it->second))
        std::fprintf(stderr, "engine: CPU buffer %p of %zu bytes was written outside its bounds\n", p, it->second);
      guarded_blocks().erase(it);
      block = static_cast<unsigned char*>(p) - kGuard;
    }
  }
  cpu_cache().free(block);
}

#if defined(ENGINE_WITH_CUDA)
// ----------------------------------------------------------------------------- CUDA
void* cuda_sys_alloc(size_t n) {
  void* p = nullptr;
  // During a CUDA graph capture cudaMalloc is a "potentially unsafe" call: allowed for this thread in
  // relaxed mode. The capture does not record it; the block belongs to the graph's pool.
  cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
  cudaThreadExchangeStreamCaptureMode(&mode);
  const cudaError_t e = cudaMalloc(&p, n);
  cudaThreadExchangeStreamCaptureMode(&mode);
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear the error; the cache retries after releasing its blocks
    return nullptr;
  }
  return p;
}
void cuda_sys_free(void* p) {
  // Cached blocks may still be read by queued kernels on the stream they were freed from.
  cudaStreamSynchronize(compute_stream());
  cudaFree(p);
}

// Every CUDA block is cached (cudaMalloc/cudaFree synchronise the device). In guard mode sizes are
// exact and nothing is cached, so the emulation layer's guard zones see every overrun.
BlockCache& cuda_cache() {
  static BlockCache* c = new BlockCache(cuda_sys_alloc, cuda_sys_free, 0);  // never destroyed
  return *c;
}
#endif

}  // namespace

void* device_allocate(Device d, size_t bytes) {
  if (d.is_cpu()) return cpu_allocate(bytes);
#if defined(ENGINE_WITH_CUDA)
  // One process per device (select_cuda_device): a tensor on another GPU would silently land on this one.
  ENGINE_CHECK(d.index == selected_cuda_device(), "allocation on ", d.str(),
               ": this process drives cuda:", selected_cuda_device(),
               " only (one process per device; see select_cuda_device)");
  return cuda_cache().allocate(bytes, compute_stream(), g_guard_mode.load());
#else
  fail("allocation on ", d.str(), ": this build has no CUDA backend");
#endif
}

void device_free(Device d, void* p, size_t /*bytes*/) {
  if (d.is_cpu()) return cpu_free(p);
#if defined(ENGINE_WITH_CUDA)
  cuda_cache().free(p);
#endif
}

MemoryStats memory_stats(Device d) {
  if (d.is_cpu()) return cpu_cache().stats();
#if defined(ENGINE_WITH_CUDA)
  return cuda_cache().stats();
#else
  return {};
#endif
}

void reset_peak_memory_stats(Device d) {
  if (d.is_cpu()) return cpu_cache().reset_peak();
#if defined(ENGINE_WITH_CUDA)
  cuda_cache().reset_peak();
#endif
}

#if defined(ENGINE_WITH_CUDA)
void begin_capture_pool(const void* pool) { cuda_cache().begin_capture(pool); }
void end_capture_pool() { cuda_cache().end_capture(); }
void release_capture_pool(const void* pool) { cuda_cache().release_pool(pool, compute_stream(), g_guard_mode.load()); }
#endif

void empty_cache() {
  cpu_cache().release();
#if defined(ENGINE_WITH_CUDA)
  if (cuda_available()) cuda_cache().release();
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
