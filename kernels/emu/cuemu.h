// cuemu.h -- the one header every kernel file includes.  Under nvcc it is two tiny conventions;
// under the host compiler (g++ 12, -std=c++20) it is "cuemu", an emulator that runs the unmodified
// CUDA kernel source on the CPU (design: docs/ARCHITECTURE.md, "The CUDA emulation layer").
//
// Source conventions (the only changes a kernel needs):
//   GPU_LAUNCH(grid, block, smem, stream, kernel)(args...)   == kernel<<<grid, block, smem, stream>>>(args...)
//   dynamic_smem<T>()                                        == the `extern __shared__` buffer as T*
//   inline PTX / tensor cores / cooperative groups: behind #if defined(__CUDACC__).
//
// Modes (picked by the cuemu CMake target, CUEMU_MODE):
//   FIBERS  (-DCUEMU_FIBERS=1, default): blocks run one after another on the launching thread; every
//           CUDA thread of a block is a fiber (on x86-64 a built-in switch of the callee-saved registers
//           and stack pointer, kernels/emu/cuemu_runtime.cpp; Boost.Context fcontext on other
//           architectures or with -DCUEMU_BOOST_CONTEXT).  Fast and deterministic; barrier,
//           warp-collective and deadlock checks are structural.  ASan/UBSan work (fiber switches are
//           annotated).  Not for TSan.
//   THREADS: one pooled OS thread per CUDA thread, barriers on C++20 atomic wait/notify, so
//           ThreadSanitizer sees the real concurrency (missing __syncthreads -> "data race").
//
// Environment knobs (read at every launch unless noted):
//   CUEMU_SCHED_SEED=n      fibers: shuffle the fiber run order in every phase (0 = in order)
//   CUEMU_SHUFFLE_BLOCKS=n  shuffle the block order (GPUs promise none)
//   CUEMU_STRICT=0          allow threads to exit while others wait at __syncthreads (default 1: error)
//   CUEMU_TIMEOUT_MS=n      watchdog: abort a kernel that makes no progress for n ms (default 20000)
//   CUEMU_STACK_KB=n        fiber stack size, read once at the first launch (default 64)
//   CUEMU_SMEM_FILL=b       byte that static and dynamic shared memory is filled with before every block
//                           (default 0xff, so unwritten floats read as NaN; -1 = do not fill)
//   CUEMU_ALLOC_FILL=b      byte that cudaMalloc fills new memory with (default 0xff)
//   CUEMU_DEVICE_MEMORY_MB=n the device's memory (default: the host's): cudaMalloc beyond it fails with
//                           cudaErrorMemoryAllocation, and cudaMemGetInfo reports it
//   CUEMU_DEVICE_COUNT=n    the machine's devices (default 1), all the same host, for one process per
//                           device (the engine's data-parallel ranks); CUDA_VISIBLE_DEVICES selects
//                           among them with the driver's rules (an invalid entry hides the rest, a
//                           repeated one hides all)
//   CUEMU_ABORT_ON_ERROR=1  every runtime API error is fatal (default 0: print "cuemu: ..." and return it)
//   CUEMU_PROTECT_DEVICE=0  let host code read and write device memory (default 1: device memory is
//                           PROT_NONE to host code and opens only while the runtime or an emulated
//                           library works on it: a kernel, a copy or memset, a cuDNN / cuBLAS / NCCL
//                           call, a graph's device work; so host code that dereferences a device
//                           pointer, which a GPU build cannot do, is reported as "cuemu: host code
//                           touched device memory ..." instead of working here). Read once, at the
//                           first cudaMalloc; off under ASan and TSan
//   CUEMU_DEFER_STREAMS=0   run stream work when it is enqueued (default 1: the work of created streams
//                           waits in per-stream queues, and an emulated device thread runs it only
//                           when something needs it done: a synchronisation, an event query or wait;
//                           the destination of an async copy into pinned host memory is filled with
//                           0xff bytes until the copy runs. A missing synchronisation then reads
//                           stale or NaN data here instead of passing by luck). Read once
//   CUEMU_STREAM_RACES=0    do not check that device work of different streams is ordered (default 1): the
//                           emulated device runs one operation at a time, records which allocations each
//                           one reads and writes (a protection fault per allocation and operation), and
//                           follows what orders them (stream order, event waits, the host's enqueues and
//                           synchronisations: vector clocks; in a graph replay, the captured streams and
//                           waits). Two operations that touch one allocation, one of them writing, with
//                           nothing ordering them (on a GPU they may run at the same time) end the
//                           process with "cuemu: stream race ...". x86-64, needs
//                           CUEMU_PROTECT_DEVICE and CUEMU_DEFER_STREAMS, so off under the sanitizers. Read once
// Kernel-side misuse (divergent or early-exit barriers, bad shuffle masks, deadlocks, writes past a
// device allocation, a pointer argument a GPU cannot address: host memory not from cudaMallocHost,
// also as a member of a struct argument that lists its pointers, PointerArg) is always fatal: a "cuemu: <problem>
// (file:line:col) ..." line on stderr, then abort().
//
// Measured (g++ 12 -O2, this 2-vCPU VM, tests/emu/speed_test.cpp, emu_speed):
//   fibers : elementwise 1M floats as 4096 blocks x 256 threads: 33 ms (one element per thread or
//            grid-stride); __syncthreads per call: 0.9 us at 32 threads, 8 us at 256, 50 us at 1024;
//            __shfl_xor_sync at 256 threads: 10 us; launch of one 256-thread block: 11 us.
//            (Boost.Context's jump_fcontext instead of the built-in x86-64 switch: 130 ms / 20 us.)
//   threads: elementwise 1M: 2.3 s; __syncthreads at 256 threads: 0.6 ms (2 cores, 256 OS threads).
// Tests: tests/emu (ctest -L kernel); see tests/emu/CMakeLists.txt for the sanitizer runs.
#pragma once

#if defined(__CUDACC__)  // ------------------------------------------------------------- real CUDA
#define GPU_LAUNCH(grid, block, smem, stream, ...) __VA_ARGS__<<<(grid), (block), (smem), (stream)>>>
template <class T>
__device__ __forceinline__ T* dynamic_smem() {
  extern __shared__ __align__(16) unsigned char cuemu_dynamic_smem_[];
  return reinterpret_cast<T*>(cuemu_dynamic_smem_);
}
#else  // ---------------------------------------------------------------------------- CPU emulation
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>  // the real types and prototypes; libcudart is NOT linked

#include <array>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <source_location>
#include <tuple>
#include <type_traits>
#include <utility>

#if defined(__SANITIZE_ADDRESS__)
#define CUEMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CUEMU_ASAN 1
#endif
#endif

#undef __global__
#undef __device__
#undef __host__
#undef __shared__
#undef __constant__
#undef __launch_bounds__
#undef __forceinline__
#define __global__
#define __device__
#define __host__
#define __constant__
#define __launch_bounds__(...)
#define __forceinline__ inline
// Blocks run one at a time, so one static copy is per-block storage.  Outside ASan every static
// __shared__ variable lands in the section "cuemu_shared", which the runtime fills with
// CUEMU_SMEM_FILL before each block (reads of unwritten shared memory become NaN).  ASan does not
// instrument globals in named sections, so ASan builds use plain statics and get redzones instead.
#if defined(CUEMU_ASAN)
#define __shared__ static
#else
#define __shared__ static __attribute__((section("cuemu_shared")))
#endif

inline constexpr int warpSize = 32;  // a variable as in CUDA (cudaDeviceProp has a member of that name)

// The C++ conveniences <cuda_runtime.h> only declares under nvcc.
template <class T>
inline cudaError_t cudaFuncSetAttribute(T* kernel, cudaFuncAttribute attr, int value) {
  return ::cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel), attr, value);
}
template <class T>
inline cudaError_t cudaMemcpyToSymbol(const T& symbol, const void* src, size_t n, size_t offset = 0,
                                      cudaMemcpyKind kind = cudaMemcpyHostToDevice) {
  return ::cudaMemcpyToSymbol(static_cast<const void*>(&symbol), src, n, offset, kind);
}
template <class T>
inline cudaError_t cudaMemcpyFromSymbol(void* dst, const T& symbol, size_t n, size_t offset = 0,
                                        cudaMemcpyKind kind = cudaMemcpyDeviceToHost) {
  return ::cudaMemcpyFromSymbol(dst, static_cast<const void*>(&symbol), n, offset, kind);
}

extern "C" int cuemuCheckGuards(void);         // corrupted device allocations (each one printed)
extern "C" size_t cuemuLiveAllocations(void);  // live cudaMalloc allocations, for leak checks
extern "C" int cuemuStreamRaces(void);         // whether stream races are checked (CUEMU_STREAM_RACES)

namespace cuemu {
using Loc = std::source_location;

struct ThreadCtx {  // what threadIdx reads; one per CUDA thread of the running block
  uint3 tid;
  unsigned linear;  // x + y*bx + z*bx*by; lane = linear % 32
};
struct BlockCtx {
  uint3 bid;
  dim3 bdim, gdim;
};
// Fibers: all threads of a launch run on one OS thread and launches are serialised, so a plain
// global is enough (and cheaper than TLS).  Threads: every OS thread has its own.
#if defined(CUEMU_FIBERS)
inline constinit const ThreadCtx* cur_thread = nullptr;
#else
inline constinit thread_local const ThreadCtx* cur_thread = nullptr;
#endif
inline constinit BlockCtx block_ctx{};
inline constinit unsigned char* dyn_smem = nullptr;  // this launch's dynamic shared memory

// A pointer a kernel receives: a pointer argument, or a pointer member of a struct argument that lists
// its pointers (a member function `device_pointers()` returning a std::array of them).
struct PointerArg {
  const void* p;
  unsigned arg;  // 1-based argument number
  bool member;   // a member of a struct argument
};
// Everything below is defined in cuemu_runtime.cpp.
struct Launch {
  dim3 grid, block;
  size_t smem;
  cudaStream_t stream;
  const char* name;  // kernel expression as written in GPU_LAUNCH
  const char* file;
  unsigned line;
  const void* func;     // identity for cudaFuncSetAttribute
  void (*body)(void*);  // runs the kernel once for the current thread
  void* payload;
  const PointerArg* ptrs;  // every pointer the kernel receives (PointerArg), in order: each must be
                           // device or pinned host memory, and its allocation's guards are checked afterwards
  size_t nptrs;
};
void launch(const Launch& l);
// What launch() refuses before running anything: the configuration, the dynamic shared memory and
// pointer arguments a GPU cannot address. False (the last error set) or fatal, as launch() would be.
bool launch_checks(const Launch& l);
// Stream capture (cudaStreamBeginCapture .. cudaStreamEndCapture): while stream s is captured, the
// work enqueued on it (kernels, async copies and memsets, host functions) is recorded into the graph
// instead of run, and runs at every cudaGraphLaunch of it, as on a GPU.
bool capturing(cudaStream_t s);
// device_work: the work reads or writes device memory (everything but host functions and event stamps),
// so it runs inside a DeviceAccess.
// `what` names the work in a stream-race report (CUEMU_STREAM_RACES).
void record(cudaStream_t s, std::function<void()> work, bool device_work = true, const char* what = nullptr);
// Work in stream order on stream s (kernels, copies, memsets, host functions, emulated library calls):
// recorded into a running capture of s; else, with CUEMU_DEFER_STREAMS (on by default) on a created
// stream, queued and run by the emulated device as late as CUDA allows (a synchronisation of s, an
// event recorded after it, another stream's wait on such an event, a device-wide synchronisation);
// else (the legacy default stream, or deferral off) run now, after the queued work of the blocking
// streams (created without cudaStreamNonBlocking), which the legacy stream waits for.
void submit(cudaStream_t s, std::function<void()> work, bool device_work = true, const char* what = nullptr);
// Whether submit(s, ...) queues: deferral on, s a created stream, not captured.
bool deferring(cudaStream_t s);
// Runs all queued work of every stream and returns when it is done (cudaDeviceSynchronize).
void synchronize_device();
// cvt.rna.tf32.f32, the rounding of TF32 tensor-core inputs (the emulated cuDNN and cuBLAS under
// TF32 math): 10 mantissa bits, to nearest, ties away from zero; inf and NaN unchanged.
inline float round_to_tf32(float f) {
  if (!std::isfinite(f)) return f;
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u = (u + 0x1000u) & ~0x1fffu;
  std::memcpy(&f, &u, 4);
  return f;
}
// The machine ordinal behind visible device `ordinal` (its CUDA_VISIBLE_DEVICES entry), -1 if none:
// what the emulated NCCL compares to refuse two ranks on one device.
int machine_device(int ordinal);
// While alive, device memory is open to the host (CUEMU_PROTECT_DEVICE); nests, and any thread may
// hold one. The runtime's device work takes one itself; an emulated library's host code that reads
// or writes device memory outside submit() takes its own. With CUEMU_STREAM_RACES the outermost one
// of a thread is one device operation: operations run one at a time, and the allocations each reads
// and writes are checked against the other streams' (`what` names it in a report; untracked: the
// runtime's own checks, which are no stream's work).
struct DeviceAccess {
  explicit DeviceAccess(const char* what = nullptr, bool tracked = true);
  ~DeviceAccess();
  DeviceAccess(const DeviceAccess&) = delete;
  DeviceAccess& operator=(const DeviceAccess&) = delete;

 private:
  bool counted_;  // protection was on when this one opened
  bool racing_;   // CUEMU_STREAM_RACES: this one counts in the thread's nesting
};
enum class Op : unsigned char { Idx, Up, Down, Xor, Vote, Sync };
uint64_t warp_op(Op op, unsigned mask, uint64_t in, int arg, int width, const Loc& loc);
int barrier(int kind, int pred, const Loc& loc);  // kind 0 plain, 1 count, 2 and, 3 or
unsigned active_mask();

template <class K, class Tup>
struct Payload {
  K kernel;
  Tup args;
  static void run(void* p) {  // each CUDA thread gets its own copies of the by-value parameters
    auto* self = static_cast<Payload*>(p);
    std::apply(self->kernel, self->args);
  }
};

struct Launcher {
  Launch l;
  Launcher(dim3 g, dim3 b, size_t smem, cudaStream_t s, const char* name, const char* file, unsigned line)
      : l{g, b, smem, s, name, file, line, nullptr, nullptr, nullptr, nullptr, 0} {}
  template <class... P>
  auto bind(void (*kernel)(P...)) const {
    return [l = l, kernel](auto&&... a) {
      using Tup = std::tuple<std::decay_t<P>...>;
      using Pl = Payload<void (*)(P...), Tup>;
      Pl pl{kernel, Tup(std::forward<decltype(a)>(a)...)};  // by value, like CUDA
      if (capturing(l.stream) || deferring(l.stream)) {     // the arguments are kept with the work, as CUDA keeps them
        auto shared = std::make_shared<Pl>(std::move(pl));
        if (with_args(l, *shared, [](const Launch& c) { return launch_checks(c); }))  // refused now, as on a GPU
          submit(
              l.stream, [l, shared] { run(l, *shared); }, true, l.name);
        return;
      }
      run(l, pl);
    };
  }
  // How many pointers an argument of type T carries (PointerArg).
  template <class T>
  static constexpr size_t pointer_count() {
    if constexpr (std::is_pointer_v<T>)
      return 1;
    else if constexpr (requires(const T& t) { t.device_pointers(); })
      return std::tuple_size_v<decltype(std::declval<const T&>().device_pointers())>;
    else
      return 0;
  }
  template <class Tup, size_t... I>
  static constexpr size_t pointer_total(std::index_sequence<I...>) {
    return (pointer_count<std::tuple_element_t<I, Tup>>() + ... + 0);
  }
  template <class T>
  static void add_pointers(const T& x, unsigned arg, PointerArg* out, size_t& n) {
    if constexpr (std::is_pointer_v<T>)
      out[n++] = {const_cast<const void*>(reinterpret_cast<const volatile void*>(x)), arg, false};
    else if constexpr (pointer_count<T>() > 0)
      for (const void* p : x.device_pointers()) out[n++] = {p, arg, true};
  }
  // Calls f(l) with l's argument fields filled from pl (the pointer list lives on this stack frame).
  template <class Pl, class F>
  static auto with_args(Launch l, Pl& pl, const F& f) {
    using Tup = decltype(pl.args);
    PointerArg ptrs[pointer_total<Tup>(std::make_index_sequence<std::tuple_size_v<Tup>>{}) + 1] = {};
    size_t n = 0;
    unsigned arg = 0;
    std::apply([&](const auto&... x) { (add_pointers(x, ++arg, ptrs, n), ...); }, pl.args);
    l.func = reinterpret_cast<const void*>(pl.kernel);
    l.body = &Pl::run;
    l.payload = &pl;
    l.ptrs = ptrs;
    l.nptrs = n;
    return f(l);
  }
  template <class Pl>
  static void run(const Launch& l, Pl& pl) {
    with_args(l, pl, [](const Launch& c) { launch(c); });
  }
};
}  // namespace cuemu

#define GPU_LAUNCH(grid, block, smem, stream, ...)                                                                \
  ::cuemu::Launcher(dim3(grid), dim3(block), static_cast<size_t>(smem), stream, #__VA_ARGS__, __FILE__, __LINE__) \
      .bind(__VA_ARGS__)

// ------------------------------------------------------------------- built-in variables (read-only)
#define threadIdx (::cuemu::cur_thread->tid)
#define blockIdx (static_cast<const uint3&>(::cuemu::block_ctx.bid))
#define blockDim (static_cast<const dim3&>(::cuemu::block_ctx.bdim))
#define gridDim (static_cast<const dim3&>(::cuemu::block_ctx.gdim))

template <class T>
inline T* dynamic_smem() {
  return reinterpret_cast<T*>(::cuemu::dyn_smem);
}

// ------------------------------------------------------------------- barriers and warp collectives
inline void __syncthreads(const ::cuemu::Loc& loc = ::cuemu::Loc::current()) { ::cuemu::barrier(0, 0, loc); }
inline int __syncthreads_count(int p, const ::cuemu::Loc& loc = ::cuemu::Loc::current()) {
  return ::cuemu::barrier(1, p, loc);
}
inline int __syncthreads_and(int p, const ::cuemu::Loc& loc = ::cuemu::Loc::current()) {
  return ::cuemu::barrier(2, p, loc);
}
inline int __syncthreads_or(int p, const ::cuemu::Loc& loc = ::cuemu::Loc::current()) {
  return ::cuemu::barrier(3, p, loc);
}
inline void __syncwarp(unsigned mask = 0xffffffffu, const ::cuemu::Loc& loc = ::cuemu::Loc::current()) {
  ::cuemu::warp_op(::cuemu::Op::Sync, mask, 0, 0, 32, loc);
}
inline unsigned __activemask() { return ::cuemu::active_mask(); }
// The fences as a read-modify-write of one shared word (acquire + release): every fence is ordered
// after the ones before it, so the writes a thread made before its fence happen before what another
// thread does after a later fence, as CUDA's fences order them (and stronger). Not
// std::atomic_thread_fence: ThreadSanitizer does not model stand-alone fences (GCC refuses them
// under -fsanitize=thread), and the THREADS mode exists for it.
namespace cuemu {
inline std::atomic<unsigned> fence_word{0};
}
inline void __threadfence() { ::cuemu::fence_word.fetch_add(0u, std::memory_order_acq_rel); }
inline void __threadfence_block() { ::cuemu::fence_word.fetch_add(0u, std::memory_order_acq_rel); }

namespace cuemu {
template <class T>
T shfl(Op op, unsigned mask, T v, int arg, int width, const Loc& loc) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>, "shuffle of a type larger than 8 bytes");
  uint64_t bits = 0;
  std::memcpy(&bits, static_cast<const void*>(&v), sizeof(T));  // void*: __half has private members
  bits = warp_op(op, mask, bits, arg, width, loc);
  T out;
  std::memcpy(static_cast<void*>(&out), &bits, sizeof(T));
  return out;
}
}  // namespace cuemu
template <class T>
T __shfl_sync(unsigned mask, T v, int src, int width = 32, const ::cuemu::Loc& loc = ::cuemu::Loc::current()) {
  return ::cuemu::shfl(::cuemu::Op::Idx, mask, v, src, width, loc);
}
template <class T>
T __shfl_up_sync(unsigned mask, T v, unsigned d, int width = 32, const ::cuemu::Loc& loc = ::cuemu::Loc::current()) {
  return ::cuemu::shfl(::cuemu::Op::Up, mask, v, static_cast<int>(d), width, loc);
}
template <class T>
T __shfl_down_sync(unsigned mask, T v, unsigned d, int width = 32, const ::cuemu::Loc& loc = ::cuemu::Loc::current()) {
  return ::cuemu::shfl(::cuemu::Op::Down, mask, v, static_cast<int>(d), width, loc);
}
template <class T>
T __shfl_xor_sync(unsigned mask, T v, int x, int width = 32, const ::cuemu::Loc& loc = ::cuemu::Loc::current()) {
  return ::cuemu::shfl(::cuemu::Op::Xor, mask, v, x, width, loc);
}
inline unsigned __ballot_sync(unsigned mask, int p, const ::cuemu::Loc& loc = ::cuemu::Loc::current()) {
  return static_cast<unsigned>(::cuemu::warp_op(::cuemu::Op::Vote, mask, p != 0, 0, 32, loc));
}
inline int __any_sync(unsigned mask, int p, const ::cuemu::Loc& loc = ::cuemu::Loc::current()) {
  return __ballot_sync(mask, p, loc) != 0;
}
inline int __all_sync(unsigned mask, int p, const ::cuemu::Loc& loc = ::cuemu::Loc::current()) {
  return __ballot_sync(mask, p, loc) == mask;
}

// ------------------------------------------------------------------- atomics (T deduced from the pointer)
namespace cuemu {
// Read-modify-write through a compare-exchange loop on the raw bits (float, double, __half, min/max...).
template <class T, class F>
T cas_loop(T* p, F f) {
  static_assert(sizeof(T) == 2 || sizeof(T) == 4 || sizeof(T) == 8);
  using U = std::conditional_t<sizeof(T) == 2, uint16_t, std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>>;
  U* up = reinterpret_cast<U*>(p);
  U old = __atomic_load_n(up, __ATOMIC_RELAXED), next;
  T o;
  do {
    std::memcpy(static_cast<void*>(&o), &old, sizeof o);  // void*: __half has private members
    const T n = f(o);
    std::memcpy(&next, static_cast<const void*>(&n), sizeof n);
  } while (!__atomic_compare_exchange_n(up, &old, next, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
  return o;
}
}  // namespace cuemu
template <class T>
T atomicAdd(T* p, std::type_identity_t<T> v) {
  if constexpr (std::is_integral_v<T>)
    return __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
  else if constexpr (std::is_floating_point_v<T>)
    return ::cuemu::cas_loop(p, [v](T o) { return o + v; });
  else
    return ::cuemu::cas_loop(p, [v](T o) { return T(float(o) + float(v)); });  // __half, __nv_bfloat16
}
template <class T>
T atomicSub(T* p, std::type_identity_t<T> v) {
  return __atomic_fetch_sub(p, v, __ATOMIC_RELAXED);
}
template <class T>
T atomicExch(T* p, std::type_identity_t<T> v) {
  return ::cuemu::cas_loop(p, [v](T) { return v; });
}
template <class T>
T atomicMin(T* p, std::type_identity_t<T> v) {
  return ::cuemu::cas_loop(p, [v](T o) { return v < o ? v : o; });
}
template <class T>
T atomicMax(T* p, std::type_identity_t<T> v) {
  return ::cuemu::cas_loop(p, [v](T o) { return o < v ? v : o; });
}
template <class T>
T atomicAnd(T* p, std::type_identity_t<T> v) {
  return __atomic_fetch_and(p, v, __ATOMIC_RELAXED);
}
template <class T>
T atomicOr(T* p, std::type_identity_t<T> v) {
  return __atomic_fetch_or(p, v, __ATOMIC_RELAXED);
}
template <class T>
T atomicXor(T* p, std::type_identity_t<T> v) {
  return __atomic_fetch_xor(p, v, __ATOMIC_RELAXED);
}
template <class T>
T atomicCAS(T* p, std::type_identity_t<T> cmp, std::type_identity_t<T> v) {
  __atomic_compare_exchange_n(p, &cmp, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
  return cmp;  // holds the old value either way
}
inline unsigned atomicInc(unsigned* p, unsigned m) {
  return ::cuemu::cas_loop(p, [m](unsigned o) { return o >= m ? 0u : o + 1; });
}
inline unsigned atomicDec(unsigned* p, unsigned m) {
  return ::cuemu::cas_loop(p, [m](unsigned o) { return (o == 0 || o > m) ? m : o - 1; });
}

// ------------------------------------------------------------------- device math shims
// min/max follow CUDA's overloads: usual arithmetic conversions; floating point ones behave like fmin/fmax.
template <class A, class B>
inline std::common_type_t<A, B> min(A a, B b) {
  using C = std::common_type_t<A, B>;
  if constexpr (std::is_floating_point_v<C>)
    return std::fmin(C(a), C(b));
  else
    return C(b) < C(a) ? C(b) : C(a);
}
template <class A, class B>
inline std::common_type_t<A, B> max(A a, B b) {
  using C = std::common_type_t<A, B>;
  if constexpr (std::is_floating_point_v<C>)
    return std::fmax(C(a), C(b));
  else
    return C(a) < C(b) ? C(b) : C(a);
}
inline float __expf(float x) { return std::exp(x); }
inline float __exp10f(float x) { return std::pow(10.f, x); }
inline float __logf(float x) { return std::log(x); }
inline float __log2f(float x) { return std::log2(x); }
inline float __log10f(float x) { return std::log10(x); }
inline float __powf(float a, float b) { return std::pow(a, b); }
inline float __sinf(float x) { return std::sin(x); }
inline float __cosf(float x) { return std::cos(x); }
inline float __tanf(float x) { return std::tan(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __frcp_rn(float x) { return 1.f / x; }
inline float __fsqrt_rn(float x) { return std::sqrt(x); }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float rsqrtf(float x) { return 1.f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
inline float __saturatef(float x) { return std::isnan(x) ? 0.f : std::fmin(1.f, std::fmax(0.f, x)); }
inline int __float2int_rn(float x) { return static_cast<int>(std::nearbyint(x)); }
inline int __float2int_rz(float x) { return static_cast<int>(x); }
inline float __int2float_rn(int x) { return static_cast<float>(x); }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x ? __builtin_clz(static_cast<unsigned>(x)) : 32; }
inline int __clzll(long long x) { return x ? __builtin_clzll(static_cast<unsigned long long>(x)) : 64; }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline unsigned __brev(unsigned x) {
  unsigned r = 0;
  for (int i = 0; i < 32; ++i) r |= ((x >> i) & 1u) << (31 - i);
  return r;
}
inline unsigned __umulhi(unsigned a, unsigned b) { return static_cast<unsigned>((1ull * a * b) >> 32); }
inline int __mul24(int a, int b) { return a * b; }
inline unsigned __umul24(unsigned a, unsigned b) { return a * b; }
template <class T>
inline T __ldg(const T* p) {
  return *p;
}
template <class T>
inline T __ldcg(const T* p) {  // a load through L2 only: one memory here
  return *p;
}
inline int __float_as_int(float f) {
  int i;
  std::memcpy(&i, &f, 4);
  return i;
}
inline unsigned __float_as_uint(float f) {
  unsigned i;
  std::memcpy(&i, &f, 4);
  return i;
}
inline float __int_as_float(int i) {
  float f;
  std::memcpy(&f, &i, 4);
  return f;
}
inline float __uint_as_float(unsigned i) {
  float f;
  std::memcpy(&f, &i, 4);
  return f;
}
inline long long __double_as_longlong(double d) {
  long long i;
  std::memcpy(&i, &d, 8);
  return i;
}
inline double __longlong_as_double(long long i) {
  double d;
  std::memcpy(&d, &i, 8);
  return d;
}

// __half / __nv_bfloat16: the real headers give host conversions and operators; these are the
// device-only functions they leave undeclared under g++, computed in float and rounded once.
#define CUEMU_HALF_FN(T, to, from)                                                                        \
  inline T __hfma(T a, T b, T c) { return to(std::fma(from(a), from(b), from(c))); }                      \
  inline T __hfma_relu(T a, T b, T c) { return to(std::fmax(0.f, std::fma(from(a), from(b), from(c)))); } \
  inline T hexp(T a) { return to(std::exp(from(a))); }                                                    \
  inline T hlog(T a) { return to(std::log(from(a))); }                                                    \
  inline T hsqrt(T a) { return to(std::sqrt(from(a))); }                                                  \
  inline T hrsqrt(T a) { return to(1.f / std::sqrt(from(a))); }                                           \
  inline T hrcp(T a) { return to(1.f / from(a)); }                                                        \
  inline T htanh(T a) { return to(std::tanh(from(a))); }                                                  \
  inline T hsin(T a) { return to(std::sin(from(a))); }                                                    \
  inline T hcos(T a) { return to(std::cos(from(a))); }
CUEMU_HALF_FN(__half, __float2half, __half2float)
CUEMU_HALF_FN(__nv_bfloat16, __float2bfloat16, __bfloat162float)
#undef CUEMU_HALF_FN
inline __half2 __hfma2(__half2 a, __half2 b, __half2 c) {
  return __halves2half2(__hfma(__low2half(a), __low2half(b), __low2half(c)),
                        __hfma(__high2half(a), __high2half(b), __high2half(c)));
}
inline __nv_bfloat162 __hfma2(__nv_bfloat162 a, __nv_bfloat162 b, __nv_bfloat162 c) {
  return __halves2bfloat162(__hfma(__low2bfloat16(a), __low2bfloat16(b), __low2bfloat16(c)),
                            __hfma(__high2bfloat16(a), __high2bfloat16(b), __high2bfloat16(c)));
}
inline int __half2int_rn(__half h) { return static_cast<int>(std::nearbyint(__half2float(h))); }
#endif  // __CUDACC__
