// cuemu_runtime.cpp -- the host side of cuemu (see cuemu.h): kernel launches in fiber or OS-thread
// mode, the barrier and warp-collective checks, a watchdog, and the subset of the CUDA runtime API
// the engine uses, defined extern "C" against the real <cuda_runtime_api.h> prototypes (libcudart
// is not linked).  The work of created streams is deferred (CUEMU_DEFER_STREAMS, cuemu.h): queued, and
// run by an emulated device thread only when a synchronisation, an event or another stream needs it.
//
// Device memory: cudaMalloc returns host memory aligned to 256 bytes, filled with CUEMU_ALLOC_FILL
// (0xff), with 64-byte guard zones before and after it.  The guard words read as float NaNs
// (0x7fc0xxxx), so a kernel reading past an allocation sees NaN; a kernel writing past it is reported
// right after the launch (for allocations passed as pointer arguments), by cudaFree and by
// cuemuCheckGuards().  Under ASan the guards are dropped: allocations are exact-size, so ASan's own
// redzones report the first bad access with a stack trace.  A GPU cannot address the host's memory,
// so a kernel given a pointer that is neither device memory nor pinned host memory is refused, and
// (CUEMU_PROTECT_DEVICE, on by default) device memory is closed to host code between the runtime's
// device work, so a host dereference of a device pointer faults and is named.
// Stream capture (cudaStreamBeginCapture .. cudaStreamEndCapture, one capture at a time): the work
// enqueued on the capturing stream is recorded, not run, and runs in order at every cudaGraphLaunch;
// the calls the runtime refuses during a capture (synchronisations, and unless the thread's capture
// mode is relaxed, cudaMalloc, cudaFree, cudaMemcpy, cudaMemset; copies between device and pageable
// host memory on the capturing stream) fail and invalidate it, as on a GPU, so a step that reads
// device memory on the host while it is captured is caught here. Another stream joins the capture by
// waiting on an event recorded in it (a fork) and must be joined back (the origin waiting on an event
// recorded after its last captured work) before the capture ends, or the end fails with
// cudaErrorStreamCaptureUnjoined; querying an event recorded in the running capture fails with
// cudaErrorCapturedEvent.
// Errors of API calls print "cuemu: ..." and are returned (and become the "last error");
// CUEMU_ABORT_ON_ERROR=1 makes them fatal.  Misuse inside kernels is always fatal.
// Env knobs: see cuemu.h.  Tests: tests/emu.
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <numeric>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "kernels/emu/cuemu.h"

#if defined(__x86_64__) && !defined(CUEMU_BOOST_CONTEXT)
#define CUEMU_ASM_SWITCH 1
#elif defined(CUEMU_FIBERS)
#include <boost/context/detail/fcontext.hpp>
#endif
#if defined(CUEMU_ASAN)
#include <sanitizer/common_interface_defs.h>
#endif

#if !defined(CUEMU_ASAN)
// Bounds of the "cuemu_shared" section (all static __shared__ variables), defined by the linker.
extern "C" char __start_cuemu_shared[] __attribute__((weak));
extern "C" char __stop_cuemu_shared[] __attribute__((weak));
#endif

namespace cuemu {
namespace {

long env_long(const char* name, long dflt) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtol(v, nullptr, 0) : dflt;
}

// ------------------------------------------------------------------ diagnostics and last error
thread_local cudaError_t last_error = cudaSuccess;
std::atomic<const Launch*> running_launch{nullptr};  // read by the watchdog and by fail()
std::mutex print_mutex;

cudaError_t api_error(cudaError_t e, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
cudaError_t api_error(cudaError_t e, const char* fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  std::fprintf(stderr, "cuemu: %s -> %s\n", msg, cudaGetErrorName(e));
  if (env_long("CUEMU_ABORT_ON_ERROR", 0)) std::abort();
  last_error = e;
  return e;
}

bool same_site(const Loc& a, const Loc& b) {
  return a.line() == b.line() && a.column() == b.column() &&
         (a.file_name() == b.file_name() || std::strcmp(a.file_name(), b.file_name()) == 0);
}

[[noreturn]] void fail(const std::string& what, const Loc* loc) {
  std::lock_guard g(print_mutex);
  std::string s = "cuemu: " + what;
  char buf[512];
  if (loc) {
    std::snprintf(buf, sizeof buf, " (%s:%u:%u)", loc->file_name(), loc->line(), loc->column());
    s += buf;
  }
  if (const Launch* l = running_launch.load()) {
    std::snprintf(buf, sizeof buf, ", in kernel %s launched at %s:%u", l->name, l->file, l->line);
    s += buf;
    if (const ThreadCtx* t = cur_thread) {
      const uint3 b = block_ctx.bid;
      std::snprintf(buf, sizeof buf, ", block (%u,%u,%u) thread (%u,%u,%u)", b.x, b.y, b.z, t->tid.x, t->tid.y,
                    t->tid.z);
      s += buf;
    }
  }
  std::fprintf(stderr, "%s\n", s.c_str());
  std::fflush(stderr);
  std::abort();
}

// ------------------------------------------------------------------ watchdog (both modes)
// Every block start, scheduler pass, barrier release and thread exit bumps `progress`.  A kernel that
// spins (e.g. waits for another block, which never runs concurrently here) stops it moving.
std::atomic<uint64_t> progress{0};
std::atomic<long> watch_ms{0};  // 0 when no kernel runs
void describe_stall();          // mode-specific detail for the report

void watchdog_loop() {
  uint64_t last = 0;
  long still = 0;
  for (;;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    const long limit = watch_ms.load();
    const uint64_t now = progress.load();
    if (!limit || now != last) {
      last = now;
      still = 0;
      continue;
    }
    if ((still += 20) < limit) continue;
    {
      std::lock_guard g(print_mutex);
      const Launch* l = running_launch.load();
      std::fprintf(stderr,
                   "cuemu: watchdog: no progress for %ld ms in kernel %s launched at %s:%u "
                   "(a thread spins, e.g. waiting for another block, or a deadlock)\n",
                   limit, l ? l->name : "?", l ? l->file : "?", l ? l->line : 0u);
      describe_stall();
      std::fflush(stderr);
    }
    std::abort();
  }
}

// ------------------------------------------------------------------ shared memory
int smem_fill = 0xff;
#if !defined(CUEMU_ASAN)
unsigned char* dyn_buf = nullptr;  // one reusable buffer (ASan: an exact-size one per launch)
size_t dyn_cap = 0;
#endif

void prepare_block(uint64_t b, size_t smem) {
  const dim3 g = block_ctx.gdim;
  block_ctx.bid = make_uint3(static_cast<unsigned>(b % g.x), static_cast<unsigned>(b / g.x % g.y),
                             static_cast<unsigned>(b / (1ull * g.x * g.y)));
  if (smem_fill >= 0) {
#if defined(CUEMU_ASAN)
    if (smem) std::memset(dyn_smem, smem_fill, smem);
#else
    std::memset(dyn_smem, smem_fill, std::min(dyn_cap, smem + 256));  // small overruns read NaN too
#endif
#if !defined(CUEMU_ASAN)
    if (__start_cuemu_shared && __stop_cuemu_shared)
      std::memset(__start_cuemu_shared, smem_fill, static_cast<size_t>(__stop_cuemu_shared - __start_cuemu_shared));
#endif
  }
  progress.fetch_add(1, std::memory_order_relaxed);
}

// Source lane of a shuffle for `lane`, following the CUDA guide (out-of-segment -> own value).
int shfl_src(Op op, int lane, int arg, int width) {
  const int base = lane & ~(width - 1), off = lane & (width - 1);
  switch (op) {
    case Op::Idx:
      return base + (arg & (width - 1));
    case Op::Up:
      return off - arg >= 0 ? lane - arg : lane;
    case Op::Down:
      return off + arg < width ? lane + arg : lane;
    case Op::Xor: {
      const int s = (lane ^ arg) & 31;
      return s >= base + width ? lane : s;
    }
    default:
      return lane;
  }
}
int barrier_init(int kind) { return kind == 2 ? 1 : 0; }
int barrier_combine(int kind, int acc, int p) {
  return kind == 1 ? acc + (p != 0) : kind == 2 ? (acc && p) : kind == 3 ? (acc || p) : 0;
}

#if defined(CUEMU_FIBERS)
// ================================================================== fiber mode
// One OS thread runs a block; fiber i runs CUDA thread i.  Fibers are pooled: each loops "run the
// kernel, report exit, wait to be resumed", so starting a thread costs one context switch.
enum class St : unsigned char { Ready, AtBarrier, AtWarp, Exited };
struct FThread {
  ThreadCtx ctx;
  St st;
  Op op;
  int kind, arg, width;
  unsigned mask;
  uint64_t in, out;
  Loc site;
};
// Context switch.  x86-64: a hand-written switch of the callee-saved registers and the stack
// pointer.  Boost.Context's jump_fcontext also saves and restores MXCSR and the x87 control word;
// on the CI VM that made it ~10x slower (120 ns per switch) and kernels never change those modes.
// Other architectures (or -DCUEMU_BOOST_CONTEXT) use Boost.Context.
#if defined(CUEMU_ASM_SWITCH)
extern "C" void cuemu_switch(void** save_sp, void* new_sp);
asm(R"(
  .text
  .globl cuemu_switch
  .type cuemu_switch, @function
cuemu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size cuemu_switch, .-cuemu_switch
  .section .note.GNU-stack,"",@progbits
  .text
)");
using Ctx = void*;
void jump(Ctx* save, Ctx to) { cuemu_switch(save, to); }
#else
namespace bc = boost::context::detail;
using Ctx = bc::fcontext_t;
Ctx* jump_save = nullptr;
void jump(Ctx* save, Ctx to) {  // the resumed side stores our context through jump_save
  jump_save = save;
  const bc::transfer_t t = bc::jump_fcontext(to, nullptr);
  *jump_save = t.fctx;
}
#endif

struct Fiber {
  Ctx ctx;
  char* lo;
  size_t size;
};
std::vector<Fiber> fibers;
std::vector<FThread> th;
FThread* running = nullptr;
Ctx sched_ctx = nullptr;
const Launch* cur_launch = nullptr;
unsigned n_threads = 0;
std::atomic<unsigned> stall_thread{0};  // for the watchdog report
#if defined(CUEMU_ASAN)
const void* sched_lo = nullptr;
size_t sched_size = 0;
#endif

void to_scheduler() {
  Fiber& f = fibers[running->ctx.linear];
#if defined(CUEMU_ASAN)
  void* fake = nullptr;
  __sanitizer_start_switch_fiber(&fake, sched_lo, sched_size);
#endif
  jump(&f.ctx, sched_ctx);
#if defined(CUEMU_ASAN)
  __sanitizer_finish_switch_fiber(fake, &sched_lo, &sched_size);
#endif
}

void fiber_body() {
#if defined(CUEMU_ASAN)
  __sanitizer_finish_switch_fiber(nullptr, &sched_lo, &sched_size);
#endif
  for (;;) {
    cur_launch->body(cur_launch->payload);
    running->st = St::Exited;
    to_scheduler();
  }
}
#if defined(CUEMU_ASM_SWITCH)
[[noreturn]] void fiber_entry() {
  fiber_body();
  std::abort();
}
#else
void fiber_entry(bc::transfer_t t) {
  *jump_save = t.fctx;
  fiber_body();
}
#endif

void resume(unsigned i) {
  running = &th[i];
  cur_thread = &th[i].ctx;
  stall_thread.store(i, std::memory_order_relaxed);
  Fiber& f = fibers[i];
#if defined(CUEMU_ASAN)
  void* fake = nullptr;
  __sanitizer_start_switch_fiber(&fake, f.lo, f.size);
#endif
  jump(&sched_ctx, f.ctx);
#if defined(CUEMU_ASAN)
  __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
}

void ensure_fibers(unsigned n) {
  static const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  static const size_t stack =
      (static_cast<size_t>(std::max(16L, env_long("CUEMU_STACK_KB", 64))) * 1024 + page - 1) / page * page;
  while (fibers.size() < n) {
    // One guard page below each stack turns a stack overflow into SIGSEGV instead of corruption.
    void* m = mmap(nullptr, stack + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) fail("mmap of a fiber stack failed", nullptr);
    mprotect(m, page, PROT_NONE);
    char* lo = static_cast<char*>(m) + page;
    // Stagger the stack tops: at equal offsets modulo 4 KiB they would all compete for the same
    // cache sets.
    const size_t size = stack - fibers.size() % 64 * 64;
#if defined(CUEMU_ASM_SWITCH)
    // Initial frame for cuemu_switch: six callee-saved registers, then the "return" into
    // fiber_entry, entered with the stack aligned as after a call.
    auto* sp = reinterpret_cast<void**>(lo + size);
    sp[-1] = nullptr;
    sp[-2] = reinterpret_cast<void*>(&fiber_entry);
    for (int r = 3; r <= 8; ++r) sp[-r] = nullptr;
    fibers.push_back({sp - 8, lo, size});
#else
    fibers.push_back({bc::make_fcontext(lo + size, size, fiber_entry), lo, size});
#endif
  }
}

[[noreturn]] void fail_at(const FThread& t, const std::string& what) {
  cur_thread = &t.ctx;
  fail(what, &t.site);
}

std::string site_str(const Loc& l) {
  return std::string(l.file_name()) + ":" + std::to_string(l.line()) + ":" + std::to_string(l.column());
}

// Complete every warp collective whose lanes have all arrived; true if any lane can run again.
bool resolve_warp(unsigned base, unsigned n) {
  FThread* L = &th[base];
  unsigned done = 0;
  bool any = false;
  for (unsigned l = 0; l < n; ++l) {
    if (L[l].st != St::AtWarp || (done >> l & 1u)) continue;
    const FThread& F = L[l];
    const unsigned m = F.mask;
    done |= m;
    bool ready = true;
    for (unsigned j = 0; j < 32; ++j) {
      if (!(m >> j & 1u)) continue;
      if (j >= n) fail_at(F, "warp collective: the mask names lanes that do not exist (block has fewer threads)");
      if (L[j].st == St::Exited)
        fail_at(F, "warp collective: lane " + std::to_string(j) +
                       " named in the mask has returned (full-mask shuffle after an early exit?)");
      if (L[j].st != St::AtWarp) {
        ready = false;
        continue;
      }
      if (L[j].mask != m || L[j].op != F.op || !same_site(L[j].site, F.site))
        fail_at(L[j], "lanes of one warp are in different warp collectives (mask or call site differ; other lane at " +
                          site_str(F.site) + ")");
    }
    if (!ready) continue;
    any = true;
    unsigned ballot = 0;
    for (unsigned j = 0; j < n; ++j)
      if ((m >> j & 1u) && L[j].in) ballot |= 1u << j;
    for (unsigned j = 0; j < n; ++j) {
      if (!(m >> j & 1u)) continue;
      FThread& X = L[j];
      if (X.op == Op::Vote)
        X.out = ballot;
      else if (X.op != Op::Sync) {
        const int src = shfl_src(X.op, static_cast<int>(j), X.arg, X.width);
        if (!(m >> src & 1u))
          fail_at(X, "shuffle reads lane " + std::to_string(src) + ", which is not in the mask (undefined on a GPU)");
        X.out = L[src].in;
      }
    }
    for (unsigned j = 0; j < n; ++j)
      if (m >> j & 1u) L[j].st = St::Ready;
  }
  return any;
}

void run_block(unsigned nt, std::mt19937* rng, std::vector<unsigned>& order, bool strict) {
  for (unsigned t = 0; t < nt; ++t) th[t].st = St::Ready;
  for (;;) {
    if (rng) std::shuffle(order.begin(), order.end(), *rng);
    for (unsigned k = 0; k < nt; ++k) {
      const unsigned i = rng ? order[k] : k;
      if (th[i].st == St::Ready) resume(i);
    }
    progress.fetch_add(1, std::memory_order_relaxed);
    bool any = false;
    for (unsigned w = 0; w < nt; w += 32) any |= resolve_warp(w, std::min(32u, nt - w));
    if (any) continue;
    unsigned exited = 0, at_warp = 0;
    const FThread* first = nullptr;
    for (unsigned t = 0; t < nt; ++t) {
      const FThread& F = th[t];
      if (F.st == St::Exited)
        ++exited;
      else if (F.st == St::AtWarp)
        ++at_warp;
      else if (!first)
        first = &F;
      else if (!same_site(first->site, F.site) || first->kind != F.kind)
        fail_at(F, "divergent __syncthreads: threads of one block wait at different barriers (others at " +
                       site_str(first->site) + ")");
    }
    if (exited == nt) return;
    if (at_warp == 0) {  // every live thread waits at the same barrier: release it
      if (exited && strict)
        fail_at(*first, std::to_string(exited) +
                            " thread(s) of the block returned while others wait at __syncthreads "
                            "(early return or a barrier inside divergent code)");
      int acc = barrier_init(first->kind);
      for (unsigned t = 0; t < nt; ++t)
        if (th[t].st == St::AtBarrier) acc = barrier_combine(first->kind, acc, static_cast<int>(th[t].in));
      for (unsigned t = 0; t < nt; ++t)
        if (th[t].st == St::AtBarrier) {
          th[t].out = static_cast<uint64_t>(acc);
          th[t].st = St::Ready;
        }
      continue;
    }
    // Nothing can run and nothing can complete.
    for (unsigned t = 0; t < nt; ++t)
      if (th[t].st == St::AtWarp)
        fail_at(th[t], "deadlock: this warp collective can never complete (" + std::to_string(nt - exited - at_warp) +
                           " thread(s) wait at __syncthreads" +
                           (first ? " at " + site_str(first->site) : std::string()) + ")");
  }
}

void describe_stall() {
  const unsigned i = stall_thread.load(std::memory_order_relaxed);
  std::fprintf(stderr, "cuemu:   running thread: linear index %u of the current block\n", i);
}

void run_grid(const Launch& l, unsigned nt, uint64_t nb, const std::vector<uint64_t>& perm) {
  ensure_fibers(nt);
  if (th.size() < nt) th.resize(nt);
  const dim3 b = l.block;
  for (unsigned t = 0; t < nt; ++t) th[t].ctx = ThreadCtx{make_uint3(t % b.x, t / b.x % b.y, t / (b.x * b.y)), t};
  cur_launch = &l;
  n_threads = nt;
  const long seed = env_long("CUEMU_SCHED_SEED", 0);
  std::mt19937 rng(static_cast<unsigned>(seed));
  std::vector<unsigned> order(nt);
  std::iota(order.begin(), order.end(), 0u);
  const bool strict = env_long("CUEMU_STRICT", 1) != 0;
  for (uint64_t i = 0; i < nb; ++i) {
    prepare_block(perm.empty() ? i : perm[i], l.smem);
    run_block(nt, seed ? &rng : nullptr, order, strict);
  }
  cur_launch = nullptr;
}
}  // namespace

int barrier(int kind, int pred, const Loc& loc) {
  FThread& me = *running;
  me.st = St::AtBarrier;
  me.kind = kind;
  me.in = pred != 0;
  me.site = loc;
  to_scheduler();
  return static_cast<int>(me.out);
}

uint64_t warp_op(Op op, unsigned mask, uint64_t in, int arg, int width, const Loc& loc) {
  FThread& me = *running;
  if (width <= 0 || width > 32 || (width & (width - 1))) fail("shuffle width must be a power of two <= 32", &loc);
  if (!(mask >> (me.ctx.linear % 32u) & 1u)) fail("warp collective called by a lane that is not in its mask", &loc);
  me.st = St::AtWarp;
  me.op = op;
  me.mask = mask;
  me.in = in;
  me.arg = arg;
  me.width = width;
  me.site = loc;
  to_scheduler();
  return me.out;
}

unsigned active_mask() {
  const unsigned base = running->ctx.linear & ~31u, n = std::min(32u, n_threads - base);
  unsigned m = 0;
  for (unsigned j = 0; j < n; ++j)
    if (th[base + j].st != St::Exited) m |= 1u << j;
  return m;
}
namespace {

#else
// ================================================================== OS-thread mode
// One pooled OS thread per CUDA thread; each runs its thread of every block, with a barrier between
// blocks.  Waits use C++20 atomic wait/notify (futex), which ThreadSanitizer understands.
bool strict_mode = true;

class Barrier {  // __syncthreads: knows who is expected, checks call sites and early exits
 public:
  void reset(unsigned n) {
    std::lock_guard g(m_);
    expected_ = n;
    arrived_ = exited_ = 0;
  }
  // `last`, if given, runs in the last arriving thread before the others are released.
  int arrive(int kind, int pred, const Loc& loc, const std::function<void()>* last = nullptr) {
    uint32_t my;
    {
      std::lock_guard g(m_);
      if (exited_ && strict_mode)
        fail(std::to_string(exited_) +
                 " thread(s) of the block returned while others wait at __syncthreads "
                 "(early return or a barrier inside divergent code)",
             &loc);
      if (arrived_ == 0) {
        site_ = loc;
        kind_ = kind;
        acc_ = barrier_init(kind);
      } else if (!same_site(site_, loc) || kind_ != kind) {
        fail("divergent __syncthreads: threads of one block wait at different barriers (others at " +
                 std::string(site_.file_name()) + ":" + std::to_string(site_.line()) + ")",
             &loc);
      }
      acc_ = barrier_combine(kind, acc_, pred);
      my = gen_.load(std::memory_order_relaxed);
      if (++arrived_ == expected_) {
        if (last) (*last)();
        return release_locked();
      }
    }
    while (gen_.load(std::memory_order_acquire) == my) gen_.wait(my, std::memory_order_acquire);
    return result_;
  }
  void leave() {  // a thread finished the kernel
    std::lock_guard g(m_);
    if (arrived_ && strict_mode)
      fail("a thread returned while others wait at __syncthreads (early return or a barrier inside divergent code)",
           &site_);
    ++exited_;
    --expected_;
    progress.fetch_add(1, std::memory_order_relaxed);
    if (arrived_ && arrived_ == expected_) release_locked();
  }
  void describe(const char* what) {
    std::lock_guard g(m_);
    if (arrived_)
      std::fprintf(stderr, "cuemu:   %s: %u of %u threads wait at %s:%u\n", what, arrived_, expected_,
                   site_.file_name(), site_.line());
  }

 private:
  int release_locked() {
    result_ = acc_;
    arrived_ = 0;
    gen_.fetch_add(1, std::memory_order_release);
    gen_.notify_all();
    progress.fetch_add(1, std::memory_order_relaxed);
    return result_;
  }
  std::mutex m_;
  std::atomic<uint32_t> gen_{0};
  unsigned expected_ = 0, arrived_ = 0, exited_ = 0;
  int kind_ = 0, acc_ = 0, result_ = 0;
  Loc site_;
};

// One warp's collectives.  Lanes wait per lane, so disjoint groups of a warp (e.g. two half-warps
// with their own masks) can be in collectives at the same time.  All lanes of a mask must arrive
// with the same mask, at the same call site.
struct Warp {
  std::mutex m;
  unsigned live = 0, pending = 0;  // lanes alive / waiting in a collective
  unsigned mask_of[32] = {};
  Op op_of[32] = {};
  Loc site_of[32];
  std::atomic<uint32_t> seq[32] = {};
  uint64_t slot[32] = {};

  void sync(unsigned mask, unsigned lane, Op o, const Loc& loc) {
    uint32_t my;
    {
      std::lock_guard g(m);
      if (mask & ~live)
        fail(
            "warp collective: a lane named in the mask has returned or does not exist (full-mask shuffle after an "
            "early exit?)",
            &loc);
      for (unsigned j = 0; j < 32; ++j) {
        if (!(pending >> j & 1u) || !((mask >> j & 1u) || (mask_of[j] >> lane & 1u))) continue;
        if (mask_of[j] != mask || op_of[j] != o || !same_site(site_of[j], loc))
          fail("lanes of one warp are in different warp collectives (mask or call site differ; other lane at " +
                   std::string(site_of[j].file_name()) + ":" + std::to_string(site_of[j].line()) + ")",
               &loc);
      }
      mask_of[lane] = mask;
      op_of[lane] = o;
      site_of[lane] = loc;
      pending |= 1u << lane;
      my = seq[lane].load(std::memory_order_relaxed);
      if ((pending & mask) == mask) {  // the last lane of the group: release it
        pending &= ~mask;
        for (unsigned j = 0; j < 32; ++j)
          if (mask >> j & 1u) {
            seq[j].fetch_add(1, std::memory_order_release);
            seq[j].notify_one();
          }
        progress.fetch_add(1, std::memory_order_relaxed);
        return;
      }
    }
    while (seq[lane].load(std::memory_order_acquire) == my) seq[lane].wait(my, std::memory_order_acquire);
  }
  void leave(unsigned lane) {
    std::lock_guard g(m);
    for (unsigned j = 0; j < 32; ++j)
      if ((pending >> j & 1u) && (mask_of[j] >> lane & 1u))
        fail(
            "warp collective: a lane named in the mask returned while its warp waits (full-mask shuffle after an early "
            "exit?)",
            &site_of[j]);
    live &= ~(1u << lane);
  }
};

Barrier block_bar, between_bar;
std::vector<Warp> warps(32);
std::vector<ThreadCtx> ctxs;
unsigned n_threads = 0;

void reset_block_sync(unsigned nt) {
  block_bar.reset(nt);
  for (unsigned w = 0; w * 32 < nt; ++w) {
    const unsigned n = std::min(32u, nt - 32 * w);
    std::lock_guard g(warps[w].m);
    warps[w].live = n == 32 ? 0xffffffffu : (1u << n) - 1u;
    warps[w].pending = 0;
  }
}

// A pool of OS threads reused across launches.  Every pool thread acknowledges every launch, so
// the launcher never rewrites `job`/`active` while a thread may still read them.
struct Pool {
  std::vector<std::thread> threads;
  std::atomic<uint32_t> gen{0};
  std::atomic<unsigned> remaining{0};
  unsigned active = 0;
  const std::function<void(unsigned)>* job = nullptr;

  void ack() {
    if (remaining.fetch_sub(1, std::memory_order_acq_rel) == 1) remaining.notify_all();
  }
  void loop(unsigned i) {
    uint32_t seen = gen.load(std::memory_order_acquire);
    ack();  // started
    for (;;) {
      gen.wait(seen, std::memory_order_acquire);
      seen = gen.load(std::memory_order_acquire);  // +1 exactly: the launcher waits for every ack
      if (i < active) (*job)(i);
      ack();
    }
  }
  void run(unsigned n, const std::function<void(unsigned)>& f) {
    while (threads.size() < n) {  // grow while idle: no launch is in flight here
      const unsigned i = static_cast<unsigned>(threads.size());
      remaining.store(1);  // the new thread acknowledges the generation it starts in
      threads.emplace_back([this, i] { loop(i); });
      for (unsigned r; (r = remaining.load(std::memory_order_acquire)) != 0;) remaining.wait(r);
    }
    job = &f;
    active = n;
    remaining.store(static_cast<unsigned>(threads.size()), std::memory_order_relaxed);
    gen.fetch_add(1, std::memory_order_release);
    gen.notify_all();
    for (unsigned r; (r = remaining.load(std::memory_order_acquire)) != 0;)
      remaining.wait(r, std::memory_order_acquire);
  }
};
Pool* pool = new Pool;  // never destroyed: its threads sleep until the process exits

void describe_stall() {
  block_bar.describe("__syncthreads");
  for (unsigned w = 0; w * 32 < n_threads; ++w) {
    Warp& W = warps[w];
    std::lock_guard g(W.m);
    for (unsigned j = 0; j < 32; ++j)
      if (W.pending >> j & 1u)
        std::fprintf(stderr, "cuemu:   warp %u lane %u waits in a warp collective at %s:%u (mask %08x, live %08x)\n", w,
                     j, W.site_of[j].file_name(), W.site_of[j].line(), W.mask_of[j], W.live);
  }
}

void run_grid(const Launch& l, unsigned nt, uint64_t nb, const std::vector<uint64_t>& perm) {
  strict_mode = env_long("CUEMU_STRICT", 1) != 0;
  n_threads = nt;
  if (warps.size() * 32 < nt) warps = std::vector<Warp>((nt + 31) / 32);
  ctxs.resize(nt);
  const dim3 b = l.block;
  for (unsigned t = 0; t < nt; ++t) ctxs[t] = ThreadCtx{make_uint3(t % b.x, t / b.x % b.y, t / (b.x * b.y)), t};
  between_bar.reset(nt);
  reset_block_sync(nt);
  prepare_block(perm.empty() ? 0 : perm[0], l.smem);
  uint64_t next = 1;
  const std::function<void()> setup_next = [&] {  // runs while every thread waits between blocks
    if (next < nb) {
      reset_block_sync(nt);
      prepare_block(perm.empty() ? next : perm[next], l.smem);
    }
    ++next;
  };
  const std::function<void(unsigned)> job = [&](unsigned t) {
    cur_thread = &ctxs[t];
    for (uint64_t i = 0; i < nb; ++i) {
      l.body(l.payload);
      warps[t / 32].leave(t % 32);
      block_bar.leave();
      between_bar.arrive(0, 0, Loc::current(), &setup_next);  // block i done, block i+1 set up
    }
    cur_thread = nullptr;
  };
  pool->run(nt, job);
}
}  // namespace

int barrier(int kind, int pred, const Loc& loc) { return block_bar.arrive(kind, pred, loc); }

uint64_t warp_op(Op op, unsigned mask, uint64_t in, int arg, int width, const Loc& loc) {
  if (width <= 0 || width > 32 || (width & (width - 1))) fail("shuffle width must be a power of two <= 32", &loc);
  const unsigned lane = cur_thread->linear % 32u;
  if (!(mask >> lane & 1u)) fail("warp collective called by a lane that is not in its mask", &loc);
  Warp& w = warps[cur_thread->linear / 32u];
  if (op == Op::Sync) {
    w.sync(mask, lane, op, loc);
    return 0;
  }
  w.slot[lane] = in;
  w.sync(mask, lane, op, loc);  // every lane has written its slot
  uint64_t r = 0;
  if (op == Op::Vote) {
    for (unsigned j = 0; j < 32; ++j)
      if ((mask >> j & 1u) && w.slot[j]) r |= 1ull << j;
  } else {
    const int src = shfl_src(op, static_cast<int>(lane), arg, width);
    if (!(mask >> src & 1u))
      fail("shuffle reads lane " + std::to_string(src) + ", which is not in the mask (undefined on a GPU)", &loc);
    r = w.slot[src];
  }
  w.sync(mask, lane, op, loc);  // every lane has read: the slots may be reused
  return r;
}

unsigned active_mask() {
  Warp& w = warps[cur_thread->linear / 32u];
  std::lock_guard g(w.m);
  return w.live;
}
namespace {
#endif  // CUEMU_FIBERS

// ================================================================== device memory bookkeeping
struct Alloc {
  size_t size;
  void* raw;
  size_t mapped = 0;  // CUEMU_PROTECT_DEVICE: raw is a mapping of this many bytes (else from posix_memalign)
};
std::mutex mem_mutex;
std::map<uintptr_t, Alloc> device_allocs;  // user base -> allocation
size_t device_used = 0;                    // the sum of their sizes
std::map<uintptr_t, size_t> host_allocs;   // cudaMallocHost / cudaHostAlloc
#if defined(CUEMU_ASAN)
constexpr size_t kGuard = 0;
#else
constexpr size_t kGuard = 64;
#endif
// Guard word: a float NaN whose payload depends on the allocation, so a kernel that copies one
// allocation's guard into another's (NaN arithmetic keeps the payload) is still caught.
uint32_t guard_word(const unsigned char* base) {
  return 0x7fc00001u | static_cast<uint32_t>((reinterpret_cast<uintptr_t>(base) >> 7) & 0x3ffffeu);
}
void fill_guard(unsigned char* p, uint32_t w) {
  for (size_t i = 0; i < kGuard; i += 4) std::memcpy(p + i, &w, 4);
}
bool guard_ok(const unsigned char* p, uint32_t w) {
  for (size_t i = 0; i < kGuard; i += 4)
    if (std::memcmp(p + i, &w, 4) != 0) return false;
  return true;
}
// Which guards of an allocation were overwritten: "" if none.  Caller holds mem_mutex.
const char* broken_guard(uintptr_t base, const Alloc& a) {
  const auto* p = reinterpret_cast<const unsigned char*>(base);
  const bool before = !guard_ok(p - kGuard, guard_word(p)), after = !guard_ok(p + a.size, guard_word(p));
  return before && after ? "before and after" : before ? "before" : after ? "after" : "";
}
// ------------------------------------------------------------ host access to device memory
// CUEMU_PROTECT_DEVICE=1 (the default): every allocation is a mapping of its own, kept PROT_NONE. While a
// DeviceAccess is alive in any thread (the runtime's device work), a fault in an allocation opens it
// (the SIGSEGV handler makes it read-write and lists it), and the last DeviceAccess to end closes
// what was opened. A fault while none is alive is host code dereferencing device memory: the handler
// names it and the process ends as on any SIGSEGV. The cost is a fault and two mprotect calls per
// allocation a call touches (closing everything at every call instead spent most of a training
// test's time changing page tables).
// The handler's table has a spin lock of its own: the handler may interrupt a thread that holds
// mem_mutex (a guard check), so it cannot take that one. No code touches device memory while holding
// it, and the handler gives up after a bounded wait rather than deadlock.
struct Mapping {
  size_t bytes;
  uintptr_t user;
  size_t user_bytes;
  bool open;
  bool wrote = false;  // CUEMU_STREAM_RACES: open for writing (else read-only)
};
std::map<uintptr_t, Mapping> mappings;  // raw -> its mapping
std::vector<uintptr_t> opened;          // opened since the last close; capacity kept >= mappings.size()
std::atomic_flag map_lock = ATOMIC_FLAG_INIT;
std::atomic<int> open_count{0};       // DeviceAccess objects alive, all threads
std::atomic<bool> protecting{false};  // set at the first protected cudaMalloc
struct sigaction previous_segv {};

bool try_map_lock(long spins) {
  for (long i = 0; i < spins; ++i)
    if (!map_lock.test_and_set(std::memory_order_acquire)) return true;
  return false;
}
struct MapLock {
  MapLock() {
    while (!try_map_lock(1 << 20)) std::this_thread::yield();
  }
  ~MapLock() { map_lock.clear(std::memory_order_release); }
};

bool protect_mode() {
#if defined(CUEMU_ASAN) || defined(__SANITIZE_THREAD__)
  return false;  // the sanitizers track malloc'd memory and intercept signals
#else
  static const bool on = env_long("CUEMU_PROTECT_DEVICE", 1) != 0;
  return on;
#endif
}
bool defer_mode();
// CUEMU_STREAM_RACES (cuemu.h): the fault handler tells reads from writes by the page fault's error
// code (x86-64), so it needs protection; and it checks the orders the deferred streams keep.
bool race_mode() {
  static const bool on = [] {
    if (env_long("CUEMU_STREAM_RACES", 1) == 0) return false;
#if defined(__x86_64__)
    if (protect_mode() && defer_mode()) return true;
#endif
    if (const char* v = std::getenv("CUEMU_STREAM_RACES"); v && *v)  // asked for, not merely the default
      std::fprintf(stderr,
                   "cuemu: CUEMU_STREAM_RACES needs x86-64, CUEMU_PROTECT_DEVICE=1 and CUEMU_DEFER_STREAMS=1, and "
                   "no sanitizer: stream races are not checked\n");
    return false;
  }();
  return on;
}
// Whether the fault was a write (the page-fault error code's bit 1). Elsewhere every fault counts as one.
bool write_fault([[maybe_unused]] void* ctx) {
#if defined(__x86_64__)
  return (static_cast<ucontext_t*>(ctx)->uc_mcontext.gregs[REG_ERR] & 2) != 0;
#else
  return true;
#endif
}
void on_segv(int, siginfo_t* info, void* ctx) {
  const auto a = reinterpret_cast<uintptr_t>(info->si_addr);
  char msg[400];
  int n = 0;
  if (try_map_lock(1 << 26)) {
    auto it = mappings.upper_bound(a);
    if (it != mappings.begin() && a < std::prev(it)->first + std::prev(it)->second.bytes) {
      --it;
      Mapping& m = it->second;
      if (open_count.load() > 0) {  // device work: open this allocation until the work ends
        if (race_mode()) {          // read-only first, so that a write faults again and is seen
          const bool write = write_fault(ctx);
          if ((!m.open || (write && !m.wrote)) &&
              mprotect(reinterpret_cast<void*>(it->first), m.bytes, write ? PROT_READ | PROT_WRITE : PROT_READ) == 0) {
            if (!m.open) opened.push_back(it->first);
            m.open = true;
            m.wrote = m.wrote || write;
          }
        } else if (!m.open && mprotect(reinterpret_cast<void*>(it->first), m.bytes, PROT_READ | PROT_WRITE) == 0) {
          m.open = true;
          opened.push_back(it->first);  // within its reserved capacity: no allocation here
        }
        map_lock.clear(std::memory_order_release);
        return;  // the access runs again, now allowed
      }
      n = std::snprintf(msg, sizeof msg,
                        "cuemu: host code touched device memory at %p (allocation %p of %zu bytes) outside a kernel, "
                        "copy or library call: a GPU build cannot dereference a device pointer on the host (copy it "
                        "with cudaMemcpy) [CUEMU_PROTECT_DEVICE]\n",
                        info->si_addr, reinterpret_cast<void*>(m.user), m.user_bytes);
    }
    map_lock.clear(std::memory_order_release);
  }
  if (n > 0) (void)!write(2, msg, std::min<size_t>((size_t)n, sizeof msg - 1));
  sigaction(SIGSEGV, &previous_segv, nullptr);  // the access faults again and ends the process as before
}
// Whether the protected allocation at raw is open (touched by the running work).
bool mapping_open(const void* raw) {
  MapLock l;
  auto it = mappings.find(reinterpret_cast<uintptr_t>(raw));
  return it != mappings.end() && it->second.open;
}
void start_protecting() {
  struct sigaction sa {};
  sa.sa_sigaction = on_segv;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGSEGV, &sa, &previous_segv);
  protecting.store(true);
}
// A new protected allocation: listed, then closed.
void add_mapping(void* raw, size_t bytes, const void* user, size_t user_bytes) {
  MapLock l;
  mappings[reinterpret_cast<uintptr_t>(raw)] = Mapping{bytes, reinterpret_cast<uintptr_t>(user), user_bytes, false};
  opened.reserve(mappings.size());
  if (mprotect(raw, bytes, PROT_NONE) != 0) fail("mprotect of device memory failed", nullptr);
}
// An allocation leaving the table (cudaFree, cudaDeviceReset): open for the caller's last reads.
void remove_mapping(void* raw, size_t bytes) {
  MapLock l;
  const auto r = reinterpret_cast<uintptr_t>(raw);
  mappings.erase(r);
  opened.erase(std::remove(opened.begin(), opened.end(), r), opened.end());
  mprotect(raw, bytes, PROT_READ | PROT_WRITE);
}
void release(const Alloc& a) {
  if (a.mapped) {
    remove_mapping(a.raw, a.mapped);
    munmap(a.raw, a.mapped);
  } else {
    std::free(a.raw);
  }
}

// The device allocation holding p, or end().  Caller holds mem_mutex.
std::map<uintptr_t, Alloc>::iterator find_alloc(const void* p) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  auto it = device_allocs.upper_bound(a);
  if (it == device_allocs.begin()) return device_allocs.end();
  --it;
  return a < it->first + it->second.size ? it : device_allocs.end();
}
// Whether a kernel on a GPU could be given p: device memory (its end included, the pointer of an empty
// range there) or pinned host memory, which unified addressing maps. Caller holds mem_mutex.
bool gpu_addressable(const void* p) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  if (auto it = device_allocs.upper_bound(a); it != device_allocs.begin() && a <= (--it)->first + it->second.size)
    return true;
  auto h = host_allocs.upper_bound(a);
  return h != host_allocs.begin() && a <= (--h)->first + h->second;
}
enum Where { Host, Inside, Past };
Where classify(const void* p, size_t n, uintptr_t* base = nullptr, size_t* size = nullptr) {
  std::lock_guard g(mem_mutex);
  auto it = find_alloc(p);
  if (it == device_allocs.end()) return Host;
  if (base) *base = it->first;
  if (size) *size = it->second.size;
  return reinterpret_cast<uintptr_t>(p) + n <= it->first + it->second.size ? Inside : Past;
}

const char* kind_name(cudaMemcpyKind k) {
  switch (k) {
    case cudaMemcpyHostToHost:
      return "cudaMemcpyHostToHost";
    case cudaMemcpyHostToDevice:
      return "cudaMemcpyHostToDevice";
    case cudaMemcpyDeviceToHost:
      return "cudaMemcpyDeviceToHost";
    case cudaMemcpyDeviceToDevice:
      return "cudaMemcpyDeviceToDevice";
    default:
      return "cudaMemcpyDefault";
  }
}

cudaError_t check_range(const char* api, const char* which, const void* p, size_t n, Where* w) {
  uintptr_t base = 0;
  size_t size = 0;
  *w = classify(p, n, &base, &size);
  if (*w == Past)
    return api_error(cudaErrorInvalidValue,
                     "%s past the end of a device allocation (%s %p + %zu bytes; allocation %p has %zu bytes)", api,
                     which, p, n, reinterpret_cast<void*>(base), size);
  return cudaSuccess;
}

cudaError_t check_copy(const char* api, void* dst, const void* src, size_t n, cudaMemcpyKind kind, Where* dw,
                       Where* sw) {
  if (cudaError_t e = check_range(api, "dst", dst, n, dw)) return e;
  if (cudaError_t e = check_range(api, "src", src, n, sw)) return e;
  const Where d = *dw, s = *sw;
  const bool ok = kind == cudaMemcpyDefault || (kind == cudaMemcpyHostToDevice && d == Inside && s == Host) ||
                  (kind == cudaMemcpyDeviceToHost && d == Host && s == Inside) ||
                  (kind == cudaMemcpyDeviceToDevice && d == Inside && s == Inside) ||
                  (kind == cudaMemcpyHostToHost && d == Host && s == Host);
  if (!ok)
    return api_error(cudaErrorInvalidValue, "%s with %s but dst is %s memory and src is %s memory", api,
                     kind_name(kind), d == Host ? "host" : "device", s == Host ? "host" : "device");
  return cudaSuccess;
}
cudaError_t copy(const char* api, void* dst, const void* src, size_t n, cudaMemcpyKind kind) {
  if (n == 0) return cudaSuccess;
  Where d, s;
  if (cudaError_t e = check_copy(api, dst, src, n, kind, &d, &s)) return e;
  DeviceAccess open(api);
  std::memmove(dst, src, n);
  return cudaSuccess;
}

cudaError_t copy2d(const char* api, void* dst, size_t dpitch, const void* src, size_t spitch, size_t w, size_t h,
                   cudaMemcpyKind k) {
  if (w > dpitch || w > spitch) return api_error(cudaErrorInvalidPitchValue, "%s: width %zu exceeds a pitch", api, w);
  if (h == 0 || w == 0) return cudaSuccess;
  Where d, s;  // check the whole 2-D extent once, then copy row by row
  if (cudaError_t e = check_range(api, "dst", dst, dpitch * (h - 1) + w, &d)) return e;
  if (cudaError_t e = check_range(api, "src", src, spitch * (h - 1) + w, &s)) return e;
  for (size_t r = 0; r < h; ++r)
    if (cudaError_t e =
            copy(api, static_cast<char*>(dst) + r * dpitch, static_cast<const char*>(src) + r * spitch, w, k))
      return e;
  return cudaSuccess;
}

// ------------------------------------------------------------------ stream capture
// A captured operation, or a dependency between captured streams (work null: a wait on an event
// recorded in the capture). Replays run the operations in program order; the stream-race check
// (CUEMU_STREAM_RACES) orders them as the graph's edges do: each captured stream's own order, and
// the waits.
struct GraphNode {
  std::function<void()> work;
  cudaStream_t stream = nullptr;  // the stream it was captured on
  size_t after = 0;               // a wait: 1 + the index of the event stamp it waits for (0: none)
  bool stamp = false;             // an event's stamp
};
struct Capture {
  bool active = false;
  cudaStream_t stream = nullptr;  // the origin: where it began and must end
  cudaStreamCaptureMode mode = cudaStreamCaptureModeGlobal;
  std::vector<GraphNode> work;  // in program order, which respects every stream's order
  std::string invalid;          // why the capture was invalidated; "" while valid
  uint64_t id = 0;              // events remember the capture they were recorded in
  // Streams that joined the capture by waiting on an event recorded in it (a fork): how much work
  // each recorded, and how much of it the origin has waited for through later events (the join).
  struct Side {
    uint64_t ops = 0, joined = 0;
  };
  std::map<cudaStream_t, Side> sides;
};
Capture capture;  // launches are serialised, so one global capture (one at a time)
uint64_t captures_begun = 0;
// What other threads read while a capture runs (an NCCL watchdog querying events, a loader thread
// allocating): the running capture's id (0: none), its mode and thread. Set before and cleared after
// `capture`.
std::atomic<uint64_t> live_capture{0};
std::atomic<int> live_capture_mode{cudaStreamCaptureModeGlobal};
std::atomic<std::thread::id> live_capture_thread{};
std::mutex invalid_mutex;  // capture.invalid: another thread's refused call invalidates the capture too
thread_local cudaStreamCaptureMode thread_capture_mode = cudaStreamCaptureModeGlobal;

// CUEMU_STREAM_RACES: the agents (race-check clock entries) of an executable graph's captured
// streams, kept across its replays: ids from kGraphAgents up, and each one's operations so far.
constexpr uint64_t kGraphAgents = uint64_t(1) << 40;
struct GraphAgents {
  std::map<cudaStream_t, uint64_t> id;
  std::map<uint64_t, uint64_t> epoch;
};
struct Graph {
  std::vector<GraphNode> work;
  std::shared_ptr<GraphAgents> agents = std::make_shared<GraphAgents>();  // one set per executable graph
};

// A call the runtime refuses during a capture: invalidates the capture and returns `e`.
cudaError_t refuse_in_capture(cudaError_t e, const char* api) {
  {
    std::lock_guard g(invalid_mutex);
    if (capture.invalid.empty()) capture.invalid = api;
  }
  return api_error(e, "%s during stream capture (the capture is invalidated)", api);
}
// cudaMalloc, cudaFree, cudaMemcpy, cudaMemset...: "potentially unsafe" while a capture runs, with
// CUDA's rules (cudaThreadExchangeStreamCaptureMode): refused in the capturing thread unless the
// capture is relaxed; in another thread only when both the capture and that thread's mode are
// global; never in a thread whose mode is relaxed.
bool unsafe_call_refused() {
  if (live_capture.load(std::memory_order_acquire) == 0 || thread_capture_mode == cudaStreamCaptureModeRelaxed)
    return false;
  const int mode = live_capture_mode.load();
  if (live_capture_thread.load() == std::this_thread::get_id()) return mode != cudaStreamCaptureModeRelaxed;
  return mode == cudaStreamCaptureModeGlobal && thread_capture_mode == cudaStreamCaptureModeGlobal;
}
bool pinned_host(const void* p) {
  std::lock_guard g(mem_mutex);
  auto it = host_allocs.upper_bound(reinterpret_cast<uintptr_t>(p));
  return it != host_allocs.begin() && reinterpret_cast<uintptr_t>(p) < std::prev(it)->first + std::prev(it)->second;
}

// The device's memory: the host's, or CUEMU_DEVICE_MEMORY_MB (a smaller GPU, for out-of-memory tests).
size_t total_memory() {
  if (const long mb = env_long("CUEMU_DEVICE_MEMORY_MB", 0); mb > 0) return static_cast<size_t>(mb) << 20;
  return static_cast<size_t>(sysconf(_SC_PHYS_PAGES)) * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}
// The machine's devices: CUEMU_DEVICE_COUNT (default 1), every one the same host (one process per
// device, as the engine's data-parallel ranks use them). CUDA_VISIBLE_DEVICES selects among them as
// the driver does: entries in order, the first that is not a device ordinal of the machine (not a
// number, negative, or too large) hides itself and every later one, and a repeated ordinal hides all.
std::vector<int> visible_devices() {  // the machine ordinal of each visible device
  const int machine = static_cast<int>(std::max(1L, env_long("CUEMU_DEVICE_COUNT", 1)));
  std::vector<int> shown;
  const char* v = std::getenv("CUDA_VISIBLE_DEVICES");
  if (!v) {
    for (int d = 0; d < machine; ++d) shown.push_back(d);
    return shown;
  }
  for (const char* p = v; *p;) {
    const char* end = std::strchr(p, ',');
    std::string entry(p, end ? end : p + std::strlen(p));
    entry.erase(0, entry.find_first_not_of(" \t"));
    entry.erase(entry.find_last_not_of(" \t") + 1);
    char* stop = nullptr;
    const long ordinal = entry.empty() ? -1 : std::strtol(entry.c_str(), &stop, 10);
    if (entry.empty() || *stop != 0 || ordinal < 0 || ordinal >= machine) break;
    if (std::find(shown.begin(), shown.end(), (int)ordinal) != shown.end()) return {};
    shown.push_back((int)ordinal);
    if (!end) break;
    p = end + 1;
  }
  return shown;
}
int device_count() { return static_cast<int>(visible_devices().size()); }
thread_local int current_device = 0;  // cudaSetDevice is per thread

// Per-kernel cudaFuncAttributeMaxDynamicSharedMemorySize.
std::mutex attr_mutex;
std::unordered_map<const void*, int> max_dyn_smem;
constexpr int kDefaultSmem = 48 * 1024, kOptinSmem = 227 * 1024;

std::mutex launch_mutex;  // kernels run one at a time
}  // namespace

// ================================================================== launch
bool launch_checks(const Launch& l) {
  const dim3 g = l.grid, b = l.block;
  const uint64_t nt = 1ull * b.x * b.y * b.z, nb = 1ull * g.x * g.y * g.z;
  if (nt == 0 || nt > 1024 || b.x > 1024 || b.y > 1024 || b.z > 64 || nb == 0 || g.x > 0x7fffffffu || g.y > 65535 ||
      g.z > 65535) {
    api_error(cudaErrorInvalidConfiguration, "invalid launch of %s at %s:%u: grid (%u,%u,%u) block (%u,%u,%u)", l.name,
              l.file, l.line, g.x, g.y, g.z, b.x, b.y, b.z);
    return false;
  }
  int limit = kDefaultSmem;
  {
    std::lock_guard a(attr_mutex);
    if (auto it = max_dyn_smem.find(l.func); it != max_dyn_smem.end()) limit = it->second;
  }
  if (l.smem > static_cast<size_t>(limit)) {
    api_error(cudaErrorInvalidValue,
              "launch of %s at %s:%u asks for %zu bytes of dynamic shared memory; the limit is %d "
              "(raise it with cudaFuncSetAttribute(MaxDynamicSharedMemorySize))",
              l.name, l.file, l.line, l.smem, limit);
    return false;
  }
  // A pointer a GPU cannot address (a host stack or heap address: a missing upload) faults there; the
  // emulator's kernels could read it, so it is refused here.
  {
    std::lock_guard g2(mem_mutex);
    for (size_t i = 0; i < l.nptrs; ++i)
      if (const PointerArg& a = l.ptrs[i]; a.p && !gpu_addressable(a.p)) {
        char msg[512];
        std::snprintf(msg, sizeof msg,
                      "launch of %s at %s:%u: argument %u%s is %p, which is neither device memory (cudaMalloc) nor "
                      "pinned host memory (cudaMallocHost): a GPU faults on it",
                      l.name, l.file, l.line, a.arg, a.member ? "'s pointer member" : "", a.p);
        fail(msg, nullptr);
      }
  }
  return true;
}

void launch(const Launch& l) {
  if (!launch_checks(l)) return;
  const dim3 g = l.grid, b = l.block;
  const uint64_t nt = 1ull * b.x * b.y * b.z, nb = 1ull * g.x * g.y * g.z;
  DeviceAccess open(l.name);
  std::lock_guard lock(launch_mutex);
  static std::once_flag watchdog_once;
  std::call_once(watchdog_once, [] { std::thread(watchdog_loop).detach(); });

  std::vector<uint64_t> perm;  // empty = natural block order
  if (const long seed = env_long("CUEMU_SHUFFLE_BLOCKS", 0)) {
    perm.resize(nb);
    std::iota(perm.begin(), perm.end(), uint64_t{0});
    std::shuffle(perm.begin(), perm.end(), std::mt19937_64(static_cast<uint64_t>(seed)));
  }
  smem_fill = static_cast<int>(env_long("CUEMU_SMEM_FILL", 0xff));
#if defined(CUEMU_ASAN)
  dyn_smem = new unsigned char[l.smem];  // exact size: ASan reports overflows of dynamic shared memory
#else
  if (dyn_cap < l.smem + 256 || !dyn_buf) {
    std::free(dyn_buf);
    dyn_cap = std::max<size_t>((l.smem + 256 + 63) / 64 * 64, 1024);
    dyn_buf = static_cast<unsigned char*>(std::aligned_alloc(64, dyn_cap));
  }
  dyn_smem = dyn_buf;
#endif
  block_ctx.bdim = b;
  block_ctx.gdim = g;
  running_launch.store(&l);
  watch_ms.store(std::max(1L, env_long("CUEMU_TIMEOUT_MS", 20000)));
  run_grid(l, static_cast<unsigned>(nt), nb, perm);
  watch_ms.store(0);
  cur_thread = nullptr;
#if defined(CUEMU_ASAN)
  delete[] dyn_smem;
#endif
  dyn_smem = nullptr;
  // Writes past the end of an allocation passed to this kernel: report them here, naming the kernel.
  if (kGuard) {
    std::lock_guard g2(mem_mutex);
    for (size_t i = 0; i < l.nptrs; ++i) {
      auto it = find_alloc(l.ptrs[i].p);
      if (it == device_allocs.end()) continue;
      // CUEMU_STREAM_RACES: an allocation the kernel did not touch is not read here either (its
      // guards are intact: a write to them would have opened it), so it is no access of the kernel's.
      if (race_mode() && it->second.mapped && !mapping_open(it->second.raw)) continue;
      if (const char* side = broken_guard(it->first, it->second); *side) {
        char msg[256];
        std::snprintf(msg, sizeof msg,
                      "kernel wrote outside a device allocation: base %p, size %zu, guard %s it overwritten",
                      reinterpret_cast<void*>(it->first), it->second.size, side);
        fail(msg, nullptr);
      }
    }
  }
  running_launch.store(nullptr);
}
bool capturing(cudaStream_t s) { return capture.active && (capture.stream == s || capture.sides.count(s)); }
int machine_device(int ordinal) {
  const std::vector<int> shown = visible_devices();
  return ordinal >= 0 && ordinal < (int)shown.size() ? shown[(size_t)ordinal] : -1;
}

// ------------------------------------------------------------------ stream races (CUEMU_STREAM_RACES)
// Every device operation runs inside a DeviceAccess; with the check on, a thread's outermost one is
// one operation: they run one at a time (race_op_mutex), every allocation an operation touches
// faults once when read and once more when written (on_segv), and when it ends the allocations it
// read and wrote are compared with the earlier operations' (FastTrack's rule, per allocation: the
// last write, and the reads since). What orders operations is kept in vector clocks: for each agent
// (a deferred stream's queue, or 0, the host: the legacy default stream and the synchronous calls),
// the last of its operations known to have finished before. A stream's operation knows its stream's
// earlier ones, what the host had done when it was enqueued, and what the events it waited on had
// seen; the host learns a stream's clock when it synchronises with it.
namespace {
using Clock = std::map<uint64_t, uint64_t>;  // agent -> its last operation known to come first
void join(Clock& into, const Clock& from) {
  for (const auto& [agent, epoch] : from) into[agent] = std::max(into[agent], epoch);
}
struct RaceAgent {
  uint64_t agent = 0;  // 0: the host
  const void* stream = nullptr;
  Clock clock;
};
bool ordered_before(uint64_t agent, uint64_t epoch, const RaceAgent& me) {
  if (agent == me.agent) return true;
  auto it = me.clock.find(agent);
  return it != me.clock.end() && it->second >= epoch;
}
// The operation the device thread runs (or a graph node a replay runs): its agent and clock. A graph
// replay joins its nodes' clocks into it, and the device thread the result into the stream's.
thread_local RaceAgent* device_agent = nullptr;
thread_local int race_depth = 0;  // DeviceAccess nesting in this thread
std::mutex race_op_mutex;         // one device operation at a time, all threads
std::mutex race_mutex;            // what follows
Clock host_clock;
uint64_t host_epoch = 0;
struct Access {
  uint64_t agent = 0, epoch = 0;
  const void* stream = nullptr;
  std::string what;
};
struct Shadow {
  std::optional<Access> write;  // the last write
  std::vector<Access> reads;    // since it, one per agent
};
std::unordered_map<uintptr_t, Shadow> shadows;  // by allocation (its user base)
struct RaceOp {
  RaceAgent who;
  std::string what;
  bool tracked = true;
};
RaceOp race_op;  // the running operation (race_op_mutex)
struct Touched {
  uintptr_t user;
  size_t bytes;
  bool wrote;
};

void begin_race_op(bool tracked) {
  race_op.tracked = tracked;
  race_op.what.clear();
  if (device_agent) {
    race_op.who = *device_agent;
    return;
  }
  std::lock_guard g(race_mutex);
  host_clock[0] = ++host_epoch;
  race_op.who = RaceAgent{0, nullptr, host_clock};
}
std::string agent_name(uint64_t agent, const void* stream) {
  if (agent == 0) return "the host (a synchronous call or the legacy default stream)";
  char buf[96];
  std::snprintf(buf, sizeof buf, agent >= kGraphAgents ? "stream %p's part of a graph replay" : "stream %p", stream);
  return buf;
}
void end_race_op(const std::vector<Touched>& touched) {
  if (!race_op.tracked) return;
  std::lock_guard g(race_mutex);
  const RaceAgent& me = race_op.who;
  const uint64_t epoch = me.clock.count(me.agent) ? me.clock.at(me.agent) : 0;
  const std::string what = race_op.what.empty() ? "device work" : race_op.what;
  for (const Touched& t : touched) {
    Shadow& sh = shadows[t.user];
    const Access* other = nullptr;
    bool other_wrote = false;
    if (sh.write && !ordered_before(sh.write->agent, sh.write->epoch, me)) other = &*sh.write, other_wrote = true;
    if (!other && t.wrote)
      for (const Access& r : sh.reads)
        if (!ordered_before(r.agent, r.epoch, me)) {
          other = &r;
          break;
        }
    if (other) {
      char buf[160];
      std::snprintf(buf, sizeof buf, " allocation %p (%zu bytes), which ", reinterpret_cast<void*>(t.user), t.bytes);
      fail("stream race on device memory: " + what + " on " + agent_name(me.agent, me.stream) +
               (t.wrote ? " writes" : " reads") + buf + other->what + " on " + agent_name(other->agent, other->stream) +
               (other_wrote ? " wrote" : " read") +
               ", and no event wait or synchronisation orders the two: on a GPU they may run at the same time "
               "[CUEMU_STREAM_RACES]",
           nullptr);
    }
    Access a{me.agent, epoch, me.stream, what};
    if (t.wrote) {
      sh.write = std::move(a);
      sh.reads.clear();
    } else {
      auto it = std::find_if(sh.reads.begin(), sh.reads.end(), [&](const Access& r) { return r.agent == me.agent; });
      if (it != sh.reads.end())
        *it = std::move(a);
      else
        sh.reads.push_back(std::move(a));
    }
  }
}
// Runs a graph's nodes in program order. With the stream-race check each captured stream is an agent
// of its own: its nodes come after the launch's predecessors, its own earlier nodes and the stamps
// its waits name, and what follows the launch comes after all of them.
void replay(const std::vector<GraphNode>& nodes, GraphAgents& agents) {
  if (!race_mode()) {
    for (const GraphNode& n : nodes)
      if (n.work) n.work();
    return;
  }
  RaceAgent* const launch = device_agent;  // null: launched on the legacy default stream, by the host
  Clock base;
  if (launch) {
    base = launch->clock;
  } else {
    std::lock_guard g(race_mutex);
    host_clock[0] = ++host_epoch;
    base = host_clock;
  }
  std::map<cudaStream_t, Clock> clocks;
  std::map<size_t, Clock> stamps;
  for (size_t i = 0; i < nodes.size(); ++i) {
    const GraphNode& n = nodes[i];
    Clock& c = clocks.try_emplace(n.stream, base).first->second;
    if (!n.work) {
      if (auto it = stamps.find(n.after); it != stamps.end()) join(c, it->second);
      continue;
    }
    RaceAgent node;
    {
      std::lock_guard g(race_mutex);
      auto [id, fresh] = agents.id.try_emplace(n.stream, 0);
      if (fresh) {
        static uint64_t next = kGraphAgents;
        id->second = next++;
      }
      c[id->second] = ++agents.epoch[id->second];
      node = RaceAgent{id->second, n.stream, c};
    }
    device_agent = &node;
    n.work();
    device_agent = launch;
    if (n.stamp) stamps[i + 1] = c;
  }
  Clock all = base;
  for (const auto& [stream, c] : clocks) join(all, c);
  if (launch) {
    join(launch->clock, all);
  } else {
    std::lock_guard g(race_mutex);
    join(host_clock, all);
  }
}
void forget_shadow(const void* user) {
  std::lock_guard g(race_mutex);
  if (user)
    shadows.erase(reinterpret_cast<uintptr_t>(user));
  else
    shadows.clear();
}
}  // namespace

DeviceAccess::DeviceAccess(const char* what, bool tracked)
    : counted_(protecting.load()), racing_(counted_ && race_mode()) {
  if (racing_) {
    if (race_depth++ == 0) {
      race_op_mutex.lock();
      begin_race_op(tracked);
    }
    if (what) race_op.what = what;
  }
  if (counted_) open_count.fetch_add(1);
}
DeviceAccess::~DeviceAccess() {
  if (!counted_) return;
  std::vector<Touched> touched;
  if (open_count.fetch_sub(1) == 1) {
    MapLock l;
    if (open_count.load() == 0) {  // (else another call began meanwhile and may be using what is open)
      if (racing_) touched.reserve(opened.size());
      for (const uintptr_t r : opened)
        if (auto it = mappings.find(r); it != mappings.end() && it->second.open) {
          mprotect(reinterpret_cast<void*>(r), it->second.bytes, PROT_NONE);
          if (racing_) touched.push_back({it->second.user, it->second.user_bytes, it->second.wrote});
          it->second.open = it->second.wrote = false;
        }
      opened.clear();
    }
  }
  if (racing_ && --race_depth == 0) {
    end_race_op(touched);
    race_op_mutex.unlock();
  }
}
void record(cudaStream_t s, std::function<void()> work, bool device_work, const char* what) {
  if (device_work)
    work = [w = std::move(work), what] {
      DeviceAccess open(what);
      w();
    };
  if (auto side = capture.sides.find(s); side != capture.sides.end()) ++side->second.ops;
  std::lock_guard g(invalid_mutex);
  if (capture.invalid.empty()) capture.work.push_back(GraphNode{std::move(work), s});
}

// ------------------------------------------------------------------ deferred streams
// A GPU runs a stream's work some time after it is enqueued, and a program that reads a result
// without synchronising may pass by luck. With CUEMU_DEFER_STREAMS the work of every created stream
// waits in a queue, and one emulated device thread runs it only when something needs it done, so the
// luck runs out: work runs as late as CUDA allows.
namespace {
bool defer_mode() {
  static const bool on = env_long("CUEMU_DEFER_STREAMS", 1) != 0;
  return on;
}
struct QueuedOp {
  std::function<void()> work;  // null for a wait
  uint64_t after_queue = 0;    // a wait: queue `after_queue` must first have run `after_ops` operations
  uint64_t after_ops = 0;
  bool demanded = false;  // a wait whose target was asked for (counted in its waited_by)
  bool stamp = false;     // an event's stamp: its queue's clock there is kept (CUEMU_STREAM_RACES)
  Clock host_clock;       // CUEMU_STREAM_RACES: what the host had done when it enqueued this
};
struct StreamQueue {
  uint64_t id = 0;
  cudaStream_t stream = nullptr;
  Clock clock;                                  // CUEMU_STREAM_RACES: what its next operation comes after
  uint64_t epoch = 0;                           // its operations run so far (its own entry in the clocks)
  std::map<uint64_t, Clock> at;                 // its clock after the event stamps among its last operations
  std::deque<QueuedOp> ops;                     // operation number taken + 1 first
  uint64_t enqueued = 0, done = 0, wanted = 0;  // operations enqueued, run, and asked for (done < wanted: run)
  uint64_t taken = 0;      // operations taken off `ops`: done, or done + 1 while the device runs one
  uint64_t scanned = 0;    // the waits among the first `scanned` operations have asked for their targets
  unsigned waited_by = 0;  // asked-for waits of other queues on this one
  bool blocking = true;    // created without cudaStreamNonBlocking: the legacy default stream waits for it
};
struct EmulatedDevice {
  std::mutex mu;
  std::condition_variable cv;              // progress and new demands
  std::map<uint64_t, StreamQueue> queues;  // by id: a stream's handle may be reused after it is destroyed
  std::unordered_map<cudaStream_t, uint64_t> ids;
  uint64_t next_id = 1;
  bool started = false;
  std::thread::id thread;
};
EmulatedDevice& emulated_device() {
  static auto* d = new EmulatedDevice;  // never destroyed: its thread may wait on it while the process exits
  return *d;
}

// Asks for queue q's first `ops` operations, and through the waits among them, for what they wait on.
void ask(EmulatedDevice& d, StreamQueue& q, uint64_t ops) {  // d.mu held
  if (ops <= q.wanted) return;
  q.wanted = ops;
  for (uint64_t n = std::max(q.scanned, q.taken) + 1; n <= q.wanted; ++n) {
    QueuedOp& op = q.ops[n - q.taken - 1];
    if (op.work) continue;
    auto it = d.queues.find(op.after_queue);
    if (it == d.queues.end()) continue;
    op.demanded = true;
    ++it->second.waited_by;
    ask(d, it->second, op.after_ops);
  }
  q.scanned = std::max(q.scanned, q.wanted);
}
// CUEMU_STREAM_RACES: queue id's clock once it has run `ops` operations (exact at an event's stamp or
// at its last operation; else its clock now, which can hide a race but not invent one).
Clock clock_at(EmulatedDevice& d, uint64_t id, uint64_t ops) {  // d.mu held
  auto it = d.queues.find(id);
  if (it == d.queues.end()) return {};
  if (auto c = it->second.at.find(ops); c != it->second.at.end()) return c->second;
  return it->second.clock;
}
// The host has seen queue id run `ops` operations (a synchronisation or a query that said done).
void host_learns(EmulatedDevice& d, uint64_t id, uint64_t ops) {  // d.mu held
  if (!race_mode()) return;
  const Clock c = clock_at(d, id, ops);
  std::lock_guard g(race_mutex);
  join(host_clock, c);
}
bool front_ready(EmulatedDevice& d, const StreamQueue& q) {  // d.mu held; q.ops not empty
  const QueuedOp& op = q.ops.front();
  if (op.work) return true;
  auto it = d.queues.find(op.after_queue);
  return it == d.queues.end() || it->second.done >= op.after_ops;
}

// The emulated device: runs what was asked for, one operation at a time, in each stream's order.
// What another stream waits for goes first, and a stream's own work as late as its waits allow: a
// consumer that forgot to wait runs before its producer, a producer that was not waited for runs
// only when something asks for it.
void device_loop() {
  EmulatedDevice& d = emulated_device();
  std::unique_lock lk(d.mu);
  for (;;) {
    StreamQueue* q = nullptr;
    bool asked = false;
    for (int pass = 0; pass < 2 && !q; ++pass)
      for (auto& kv : d.queues) {
        StreamQueue& c = kv.second;
        if (c.wanted <= c.done) continue;  // (else done < enqueued: ops is not empty)
        asked = true;
        if ((pass == 1 || c.waited_by > 0) && front_ready(d, c)) {
          q = &c;
          break;
        }
      }
    if (!q) {
      if (asked) fail("streams wait on each other's events in a cycle", nullptr);
      d.cv.wait(lk);
      continue;
    }
    QueuedOp op = std::move(q->ops.front());
    q->ops.pop_front();
    ++q->taken;
    RaceAgent agent;
    if (race_mode()) {
      if (!op.work) {
        join(q->clock, clock_at(d, op.after_queue, op.after_ops));
      } else {
        join(q->clock, op.host_clock);
        q->clock[q->id] = ++q->epoch;
        agent = RaceAgent{q->id, q->stream, q->clock};
      }
    }
    if (!op.work) {
      if (auto it = d.queues.find(op.after_queue); op.demanded && it != d.queues.end()) --it->second.waited_by;
    } else {
      lk.unlock();
      device_agent = race_mode() ? &agent : nullptr;
      op.work();
      device_agent = nullptr;
      op.work = nullptr;  // what it held (a kernel's arguments, a graph's copy) goes before the host hears of it
      lk.lock();
      if (race_mode()) join(q->clock, agent.clock);  // a graph replay's nodes: what follows comes after them
    }
    ++q->done;
    if (race_mode() && op.stamp) {
      q->at[q->done] = q->clock;
      if (q->at.size() > 64) q->at.erase(q->at.begin());  // (an older one: its clock now, see clock_at)
    }
    d.cv.notify_all();
  }
}

StreamQueue* queue_of(EmulatedDevice& d, cudaStream_t s) {  // d.mu held
  if (!s) return nullptr;
  auto it = d.ids.find(s);
  return it == d.ids.end() ? nullptr : &d.queues[it->second];
}
void push(EmulatedDevice& d, StreamQueue& q, QueuedOp op) {  // d.mu held
  if (race_mode()) {
    std::lock_guard g(race_mutex);
    op.host_clock = host_clock;
  }
  q.ops.push_back(std::move(op));
  ++q.enqueued;
  if (!d.started) {
    d.started = true;
    std::thread t(device_loop);
    d.thread = t.get_id();
    t.detach();
  }
}
// Has queue `id` run its first `ops` operations? If not, asks the device to run them (without waiting).
bool queue_done(EmulatedDevice& d, uint64_t id, uint64_t ops) {  // d.mu held
  auto it = d.queues.find(id);
  if (it == d.queues.end() || it->second.done >= ops) return true;
  if (it->second.wanted < ops) {
    ask(d, it->second, ops);
    d.cv.notify_all();
  }
  return false;
}
void run_until(EmulatedDevice& d, std::unique_lock<std::mutex>& lk, uint64_t id, uint64_t ops) {
  if (!queue_done(d, id, ops)) {
    if (std::this_thread::get_id() == d.thread)
      fail("a call that waits for stream work was made from stream work (a host function): it never returns", nullptr);
    d.cv.wait(lk, [&] { return queue_done(d, id, ops); });
  }
  host_learns(d, id, ops);
}
void run_queues(bool blocking_only) {
  if (!defer_mode()) return;
  EmulatedDevice& d = emulated_device();
  std::unique_lock lk(d.mu);
  std::vector<std::pair<uint64_t, uint64_t>> targets;
  for (const auto& [id, q] : d.queues)
    if (q.blocking || !blocking_only) targets.emplace_back(id, q.enqueued);
  for (const auto& [id, ops] : targets) run_until(d, lk, id, ops);
}

// For the stream and event calls below. A queue id of 0: nothing queued (run at once).
void register_stream(cudaStream_t s, bool blocking) {
  if (!defer_mode()) return;
  EmulatedDevice& d = emulated_device();
  std::lock_guard lk(d.mu);
  const uint64_t id = d.next_id++;
  d.ids[s] = id;
  StreamQueue& q = d.queues[id];
  q.blocking = blocking;
  q.id = id;
  q.stream = s;
}
// Runs s's queued work (s null: the blocking streams', which the legacy default stream waits for).
void run_stream(cudaStream_t s) {
  if (!defer_mode()) return;
  if (!s) return run_queues(true);
  EmulatedDevice& d = emulated_device();
  std::unique_lock lk(d.mu);
  if (auto it = d.ids.find(s); it != d.ids.end()) run_until(d, lk, it->second, d.queues[it->second].enqueued);
}
void forget_stream(cudaStream_t s) {  // after run_stream(s)
  if (!defer_mode()) return;
  EmulatedDevice& d = emulated_device();
  std::lock_guard lk(d.mu);
  if (auto it = d.ids.find(s); it != d.ids.end()) {
    d.queues.erase(it->second);
    d.ids.erase(it);
  }
}
// A position in a stream's queue: done once queue `id` has run `ops` operations (id 0: nothing queued).
// An event's is written and read under the device's lock (another thread may query the event).
struct QueuePos {
  uint64_t id = 0, ops = 0;
};
QueuePos read_pos(const QueuePos& p) {
  std::lock_guard lk(emulated_device().mu);
  return p;
}
void clear_pos(QueuePos& p) {
  std::lock_guard lk(emulated_device().mu);
  p = {};
}
// Queues `stamp` on deferred stream s and stores its position in *pos. False when s is not deferred.
bool queue_stamp(cudaStream_t s, std::function<void()> stamp, QueuePos* pos) {
  if (!deferring(s)) return false;
  EmulatedDevice& d = emulated_device();
  std::lock_guard lk(d.mu);
  StreamQueue* q = queue_of(d, s);
  QueuedOp op{std::move(stamp)};
  op.stamp = true;
  push(d, *q, std::move(op));
  *pos = {d.ids[s], q->enqueued};
  return true;
}
// Stream s waits until queue `id` has run `ops` operations: queued on a deferred s, else waited for now.
void queue_wait(cudaStream_t s, QueuePos pos) {
  const auto [id, ops] = pos;
  if (!id) return;
  const bool deferred = deferring(s);
  EmulatedDevice& d = emulated_device();
  std::unique_lock lk(d.mu);
  if (deferred) {
    StreamQueue* q = queue_of(d, s);
    if (d.ids[s] != id) push(d, *q, QueuedOp{nullptr, id, ops});
    return;
  }
  run_until(d, lk, id, ops);
}
bool stream_done(cudaStream_t s) {  // asks for its work if not (does not wait)
  if (!defer_mode() || !s) return true;
  EmulatedDevice& d = emulated_device();
  std::lock_guard lk(d.mu);
  auto it = d.ids.find(s);
  if (it == d.ids.end()) return true;
  const uint64_t ops = d.queues[it->second].enqueued;
  if (!queue_done(d, it->second, ops)) return false;
  host_learns(d, it->second, ops);
  return true;
}
bool ops_done(QueuePos pos) {  // asks for them if not (does not wait)
  const auto [id, ops] = pos;
  if (!id) return true;
  EmulatedDevice& d = emulated_device();
  std::lock_guard lk(d.mu);
  if (!queue_done(d, id, ops)) return false;
  host_learns(d, id, ops);
  return true;
}
void wait_ops(QueuePos pos) {
  const auto [id, ops] = pos;
  if (!id) return;
  EmulatedDevice& d = emulated_device();
  std::unique_lock lk(d.mu);
  run_until(d, lk, id, ops);
}
}  // namespace

bool deferring(cudaStream_t s) {
  if (!defer_mode() || !s || capturing(s)) return false;
  EmulatedDevice& d = emulated_device();
  std::lock_guard lk(d.mu);
  return d.ids.count(s) != 0;
}
void submit(cudaStream_t s, std::function<void()> work, bool device_work, const char* what) {
  if (capturing(s)) return record(s, std::move(work), device_work, what);
  if (device_work)
    work = [w = std::move(work), what] {
      DeviceAccess open(what);
      w();
    };
  if (defer_mode()) {
    EmulatedDevice& d = emulated_device();
    {
      std::lock_guard lk(d.mu);
      if (StreamQueue* q = queue_of(d, s)) return push(d, *q, QueuedOp{std::move(work)});
    }
    run_queues(true);  // the legacy default stream: after the blocking streams' work
  }
  work();
}
void synchronize_device() { run_queues(false); }
}  // namespace cuemu

// ================================================================== CUDA runtime API subset
using namespace cuemu;

extern "C" {
int cuemuCheckGuards(void) {
  DeviceAccess open(nullptr, false);  // the emulator's own check, no stream's work
  std::lock_guard g(mem_mutex);
  int bad = 0;
  for (const auto& [base, a] : device_allocs) {
    if (!kGuard) break;
    if (const char* side = broken_guard(base, a); *side) {
      std::fprintf(stderr, "cuemu: device allocation base %p, size %zu: guard %s it overwritten\n",
                   reinterpret_cast<void*>(base), a.size, side);
      ++bad;
    }
  }
  return bad;
}
size_t cuemuLiveAllocations(void) {
  std::lock_guard g(mem_mutex);
  return device_allocs.size();
}

int cuemuStreamRaces(void) { return race_mode() ? 1 : 0; }

cudaError_t cudaMalloc(void** p, size_t n) {
  if (!p) return api_error(cudaErrorInvalidValue, "cudaMalloc with a null result pointer");
  if (unsafe_call_refused()) return *p = nullptr, refuse_in_capture(cudaErrorStreamCaptureUnsupported, "cudaMalloc");
  *p = nullptr;
  if (n == 0) return cudaSuccess;
  {
    std::lock_guard g(mem_mutex);
    if (device_used + n > total_memory())
      return api_error(cudaErrorMemoryAllocation, "cudaMalloc(%zu): out of memory (%zu of %zu bytes in use)", n,
                       device_used, total_memory());
    device_used += n;  // counted at once, so concurrent calls cannot both pass the check
  }
  // [256 bytes: unused + front guard][n bytes][back guard], the user block aligned to 256.
  const size_t front = kGuard ? 256 : 0;
  void* raw = nullptr;
  size_t mapped = 0;
  if (protect_mode()) {  // a mapping of its own, whose protection can change
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    mapped = (front + n + kGuard + page - 1) / page * page;
    raw = mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) raw = nullptr;
  } else if (posix_memalign(&raw, 256, front + n + kGuard) != 0) {
    raw = nullptr;
  }
  if (!raw) {
    std::lock_guard g(mem_mutex);
    device_used -= n;
    return api_error(cudaErrorMemoryAllocation, "cudaMalloc(%zu)", n);
  }
  auto* base = static_cast<unsigned char*>(raw) + front;
  if (kGuard) {
    fill_guard(base - kGuard, guard_word(base));
    fill_guard(base + n, guard_word(base));
  }
  std::memset(base, static_cast<int>(env_long("CUEMU_ALLOC_FILL", 0xff)), n);  // cudaMalloc does not zero
  if (mapped) {
    static std::once_flag once;
    std::call_once(once, start_protecting);
    add_mapping(raw, mapped, base, n);
    std::lock_guard g(mem_mutex);
    device_allocs[reinterpret_cast<uintptr_t>(base)] = Alloc{n, raw, mapped};
  } else {
    std::lock_guard g(mem_mutex);
    device_allocs[reinterpret_cast<uintptr_t>(base)] = Alloc{n, raw};
  }
  *p = base;
  return cudaSuccess;
}

cudaError_t cudaFree(void* p) {
  if (!p) return cudaSuccess;
  if (unsafe_call_refused()) return refuse_in_capture(cudaErrorStreamCaptureUnsupported, "cudaFree");
  synchronize_device();  // as CUDA's: queued work may still use the memory
  std::optional<Alloc> freed;
  {
    std::lock_guard g(mem_mutex);
    auto it = device_allocs.find(reinterpret_cast<uintptr_t>(p));
    if (it != device_allocs.end()) {
      if (it->second.mapped) remove_mapping(it->second.raw, it->second.mapped);  // opened for the guard check
      if (const char* side = broken_guard(it->first, it->second); *side) {
        char msg[256];
        std::snprintf(
            msg, sizeof msg,
            "cudaFree: device allocation base %p, size %zu: guard %s it overwritten (a kernel wrote out of bounds)", p,
            it->second.size, side);
        fail(msg, nullptr);
      }
      freed = it->second;
      device_used -= it->second.size;
      device_allocs.erase(it);
    }
  }
  if (!freed)
    return api_error(cudaErrorInvalidDevicePointer, "cudaFree of %p, which is not the start of a device allocation", p);
  forget_shadow(p);
  release(*freed);
  return cudaSuccess;
}

cudaError_t cudaMallocHost(void** p, size_t n) {
  if (!p) return api_error(cudaErrorInvalidValue, "cudaMallocHost with a null result pointer");
  if (unsafe_call_refused()) return refuse_in_capture(cudaErrorStreamCaptureUnsupported, "cudaMallocHost");
  *p = std::malloc(n ? n : 1);
  if (!*p) return api_error(cudaErrorMemoryAllocation, "cudaMallocHost(%zu)", n);
  std::lock_guard g(mem_mutex);
  host_allocs[reinterpret_cast<uintptr_t>(*p)] = n;
  return cudaSuccess;
}
cudaError_t cudaHostAlloc(void** p, size_t n, unsigned int) { return cudaMallocHost(p, n); }
cudaError_t cudaFreeHost(void* p) {
  if (!p) return cudaSuccess;
  synchronize_device();  // queued copies may still use the memory
  {
    std::lock_guard g(mem_mutex);
    if (!host_allocs.erase(reinterpret_cast<uintptr_t>(p))) p = nullptr;
  }
  if (!p) return api_error(cudaErrorInvalidValue, "cudaFreeHost of a pointer not from cudaMallocHost/cudaHostAlloc");
  std::free(p);
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void* d, const void* s, size_t n, cudaMemcpyKind k) {
  if (unsafe_call_refused()) return refuse_in_capture(cudaErrorStreamCaptureImplicit, "cudaMemcpy");
  run_stream(nullptr);  // the legacy default stream's: after the blocking streams, not the non-blocking ones
  return copy("cudaMemcpy", d, s, n, k);
}
cudaError_t cudaMemcpyAsync(void* d, const void* s, size_t n, cudaMemcpyKind k, cudaStream_t st) {
  if (capturing(st)) {
    // Recorded: checked now (as the runtime checks it), copied at every launch of the graph. A copy
    // to or from pageable host memory cannot be a graph node.
    Where dw, sw;
    if (cudaError_t e = check_range("cudaMemcpyAsync", "dst", d, n, &dw)) return e;
    if (cudaError_t e = check_range("cudaMemcpyAsync", "src", s, n, &sw)) return e;
    if ((dw == Host && !pinned_host(d)) || (sw == Host && !pinned_host(s)))
      return refuse_in_capture(cudaErrorStreamCaptureUnsupported, "cudaMemcpyAsync to or from pageable host memory");
    record(st, [=] { copy("cudaMemcpyAsync", d, s, n, k); });
    return cudaSuccess;
  }
  if (deferring(st) && n > 0) {
    Where dw, sw;
    if (cudaError_t e = check_copy("cudaMemcpyAsync", d, s, n, k, &dw, &sw)) return e;
    if ((dw == Host && !pinned_host(d)) || (sw == Host && !pinned_host(s)) || (dw == Host && sw == Host)) {
      run_stream(st);  // pageable host memory: the copy is synchronous, after the stream's earlier work
      return copy("cudaMemcpyAsync", d, s, n, k);
    }
    if (dw == Host) std::memset(d, 0xff, n);  // pinned: undefined until the copy has run
    submit(
        st, [=] { std::memmove(d, s, n); }, true, "cudaMemcpyAsync");
    return cudaSuccess;
  }
  if (!st) run_stream(nullptr);  // the legacy default stream waits for the blocking streams
  return copy("cudaMemcpyAsync", d, s, n, k);
}
cudaError_t cudaMemcpy2D(void* d, size_t dp, const void* s, size_t sp, size_t w, size_t h, cudaMemcpyKind k) {
  if (unsafe_call_refused()) return refuse_in_capture(cudaErrorStreamCaptureImplicit, "cudaMemcpy2D");
  run_stream(nullptr);
  return copy2d("cudaMemcpy2D", d, dp, s, sp, w, h, k);
}
cudaError_t cudaMemcpy2DAsync(void* d, size_t dp, const void* s, size_t sp, size_t w, size_t h, cudaMemcpyKind k,
                              cudaStream_t st) {
  if (capturing(st)) return refuse_in_capture(cudaErrorStreamCaptureUnsupported, "cudaMemcpy2DAsync (not emulated)");
  run_stream(st);  // (run at once, after the stream's earlier work)
  return copy2d("cudaMemcpy2DAsync", d, dp, s, sp, w, h, k);
}
cudaError_t cudaMemcpyToSymbol(const void* sym, const void* src, size_t n, size_t off, cudaMemcpyKind) {
  return std::memcpy(static_cast<char*>(const_cast<void*>(sym)) + off, src, n),
         cudaSuccess;  // __constant__ is a plain global
}
cudaError_t cudaMemcpyFromSymbol(void* dst, const void* sym, size_t n, size_t off, cudaMemcpyKind) {
  return std::memcpy(dst, static_cast<const char*>(sym) + off, n), cudaSuccess;
}
cudaError_t cudaMemset(void* d, int v, size_t n) {
  if (unsafe_call_refused()) return refuse_in_capture(cudaErrorStreamCaptureImplicit, "cudaMemset");
  if (n == 0) return cudaSuccess;
  Where w;
  if (cudaError_t e = check_range("cudaMemset", "dst", d, n, &w)) return e;
  if (w != Inside) return api_error(cudaErrorInvalidValue, "cudaMemset of %p, which is not device memory", d);
  run_stream(nullptr);
  DeviceAccess open("cudaMemset");
  std::memset(d, v, n);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* d, int v, size_t n, cudaStream_t st) {
  if (n == 0) return cudaSuccess;
  Where w;
  if (cudaError_t e = check_range("cudaMemsetAsync", "dst", d, n, &w)) return e;
  if (w != Inside) return api_error(cudaErrorInvalidValue, "cudaMemsetAsync of %p, which is not device memory", d);
  submit(
      st, [=] { std::memset(d, v, n); }, true, "cudaMemsetAsync");
  return cudaSuccess;
}
// `height` rows of `width` bytes, `pitch` bytes apart.
cudaError_t cudaMemset2DAsync(void* d, size_t pitch, int v, size_t width, size_t height, cudaStream_t st) {
  if (width == 0 || height == 0) return cudaSuccess;
  if (pitch < width)
    return api_error(cudaErrorInvalidPitchValue, "cudaMemset2DAsync: pitch %zu < width %zu", pitch, width);
  Where w;
  if (cudaError_t e = check_range("cudaMemset2DAsync", "dst", d, pitch * (height - 1) + width, &w)) return e;
  if (w != Inside) return api_error(cudaErrorInvalidValue, "cudaMemset2DAsync of %p, which is not device memory", d);
  auto work = [=] {
    for (size_t r = 0; r < height; ++r) std::memset(static_cast<char*>(d) + r * pitch, v, width);
  };
  submit(st, work, true, "cudaMemset2DAsync");
  return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t* free_b, size_t* total_b) {
  size_t used = 0;
  {
    std::lock_guard g(mem_mutex);
    used = device_used;
  }
  const size_t total = total_memory();
  if (free_b) *free_b = used < total ? total - used : 0;
  if (total_b) *total_b = total;
  return cudaSuccess;
}
cudaError_t cudaPointerGetAttributes(cudaPointerAttributes* a, const void* p) {
  if (!a) return api_error(cudaErrorInvalidValue, "cudaPointerGetAttributes with a null result pointer");
  *a = cudaPointerAttributes{};
  std::lock_guard g(mem_mutex);
  if (find_alloc(p) != device_allocs.end()) {
    a->type = cudaMemoryTypeDevice;
    a->devicePointer = const_cast<void*>(p);
    return cudaSuccess;
  }
  auto it = host_allocs.upper_bound(reinterpret_cast<uintptr_t>(p));
  if (it != host_allocs.begin() && reinterpret_cast<uintptr_t>(p) < std::prev(it)->first + std::prev(it)->second) {
    a->type = cudaMemoryTypeHost;
    a->hostPointer = a->devicePointer = const_cast<void*>(p);
    return cudaSuccess;
  }
  a->type = cudaMemoryTypeUnregistered;
  a->device = -2;
  a->hostPointer = const_cast<void*>(p);
  return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void) {
  if (unsafe_call_refused()) return refuse_in_capture(cudaErrorStreamCaptureUnsupported, "cudaDeviceSynchronize");
  synchronize_device();
  return cudaSuccess;
}
cudaError_t cudaDeviceReset(void) {  // like a context reset: all device memory is released
  synchronize_device();
  std::lock_guard g(mem_mutex);
  for (auto& kv : device_allocs) release(kv.second);
  device_allocs.clear();
  forget_shadow(nullptr);
  last_error = cudaSuccess;
  return cudaSuccess;
}

// Streams and events. A deferred stream's work runs on the emulated device thread (submit); an event
// recorded on one is a stamp in its queue, known by its position there (Event::q).
namespace {
struct Stream {
  unsigned flags;
};
struct Event {
  std::chrono::steady_clock::time_point t;
  bool recorded;
  unsigned flags;
  // Last recorded in a capture: its id (read by other threads' queries), the stream, and that
  // stream's captured work at the time.
  std::atomic<uint64_t> capture_id{0};
  cudaStream_t stream = nullptr;
  uint64_t ops = 0;
  size_t node = 0;  // 1 + the index of its stamp among the capture's nodes (0: none)
  QueuePos q;       // last recorded on a deferred stream: its stamp's position there (read_pos)
};
// Whether e was last recorded in the capture that is running now.
bool in_running_capture(const Event* e) {
  const uint64_t id = e->capture_id.load();
  return id != 0 && id == live_capture.load(std::memory_order_acquire);
}
}  // namespace
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned int flags) {
  if (!s) return api_error(cudaErrorInvalidValue, "cudaStreamCreate with a null result pointer");
  *s = reinterpret_cast<cudaStream_t>(new Stream{flags});
  register_stream(*s, !(flags & cudaStreamNonBlocking));
  return cudaSuccess;
}
cudaError_t cudaStreamCreate(cudaStream_t* s) { return cudaStreamCreateWithFlags(s, cudaStreamDefault); }
cudaError_t cudaStreamDestroy(cudaStream_t s) {
  if (!s) return api_error(cudaErrorInvalidResourceHandle, "cudaStreamDestroy of the default stream");
  run_stream(s);  // (CUDA lets its work finish after the call; finishing it first is one such order)
  forget_stream(s);
  delete reinterpret_cast<Stream*>(s);
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
  if (capturing(s)) return refuse_in_capture(cudaErrorStreamCaptureUnsupported, "cudaStreamSynchronize");
  run_stream(s);
  return cudaSuccess;
}
cudaError_t cudaStreamQuery(cudaStream_t s) {
  if (capturing(s)) return refuse_in_capture(cudaErrorStreamCaptureUnsupported, "cudaStreamQuery");
  return stream_done(s) ? cudaSuccess : cudaErrorNotReady;  // (not an error: the device is asked to run it)
}
// Outside a capture a wait orders deferred work (queue_wait); during a capture it forks and joins: a stream
// that waits on an event recorded in the capture joins it (its work is captured from then on), and
// the origin waiting on an event recorded on a joined stream joins that stream's work up to it. A
// capturing stream may not wait on an event recorded outside the capture (CUDA's
// cudaEventWaitExternal flag aside): that fails and invalidates the capture.
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned int flags) {
  auto* ev = reinterpret_cast<Event*>(e);
  if (!ev) return api_error(cudaErrorInvalidResourceHandle, "cudaStreamWaitEvent on a null event");
  if (capturing(s) && !in_running_capture(ev) && !(flags & cudaEventWaitExternal))
    return refuse_in_capture(cudaErrorStreamCaptureIsolation,
                             "cudaStreamWaitEvent of a capturing stream on an event recorded outside the capture");
  if (!in_running_capture(ev)) {
    if (ev->capture_id == 0) queue_wait(s, read_pos(ev->q));
    return cudaSuccess;
  }
  if (!capturing(s)) capture.sides[s] = {};
  if (s == capture.stream)
    if (auto side = capture.sides.find(ev->stream); side != capture.sides.end())
      side->second.joined = std::max(side->second.joined, ev->ops);
  std::lock_guard g(invalid_mutex);  // the graph's edge
  if (capture.invalid.empty()) capture.work.push_back(GraphNode{nullptr, s, ev->node});
  return cudaSuccess;
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned int flags) {
  if (!e) return api_error(cudaErrorInvalidValue, "cudaEventCreate with a null result pointer");
  auto* ev = new Event;
  ev->recorded = false;
  ev->flags = flags;
  *e = reinterpret_cast<cudaEvent_t>(ev);
  return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t* e) { return cudaEventCreateWithFlags(e, cudaEventDefault); }
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
  if (!e) return api_error(cudaErrorInvalidResourceHandle, "cudaEventRecord of a null event");
  auto* ev = reinterpret_cast<Event*>(e);
  if (capturing(s)) {  // an event node: stamped when the graph reaches it
    record(
        s, [ev] { ev->t = std::chrono::steady_clock::now(), ev->recorded = true; }, false);
    auto side = capture.sides.find(s);
    ev->capture_id = capture.id, ev->stream = s, ev->ops = side == capture.sides.end() ? 0 : side->second.ops;
    {
      std::lock_guard g(invalid_mutex);
      ev->node = capture.invalid.empty() ? capture.work.size() : 0;
      if (ev->node) capture.work.back().stamp = true;
    }
    clear_pos(ev->q);
    return cudaSuccess;
  }
  ev->capture_id = 0;
  if (queue_stamp(
          s, [ev] { ev->t = std::chrono::steady_clock::now(), ev->recorded = true; }, &ev->q))
    return cudaSuccess;
  if (!s) run_stream(nullptr);
  clear_pos(ev->q);
  ev->t = std::chrono::steady_clock::now();
  ev->recorded = true;
  return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t e) {
  const auto* ev = reinterpret_cast<const Event*>(e);
  if (ev && in_running_capture(ev))
    return refuse_in_capture(cudaErrorCapturedEvent,
                             "cudaEventSynchronize of an event recorded in the running capture");
  if (unsafe_call_refused()) return refuse_in_capture(cudaErrorStreamCaptureUnsupported, "cudaEventSynchronize");
  if (ev) wait_ops(read_pos(ev->q));
  return cudaSuccess;
}
cudaError_t cudaEventQuery(cudaEvent_t e) {
  const auto* ev = reinterpret_cast<const Event*>(e);
  if (ev && in_running_capture(ev))
    return refuse_in_capture(cudaErrorCapturedEvent, "cudaEventQuery of an event recorded in the running capture");
  if (ev && !ops_done(read_pos(ev->q))) return cudaErrorNotReady;  // not an error: the device is asked to run it
  return cudaSuccess;
}
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b) {
  auto *x = reinterpret_cast<Event*>(a), *y = reinterpret_cast<Event*>(b);
  if (!ms || !x || !y) return api_error(cudaErrorInvalidValue, "cudaEventElapsedTime with a null argument");
  if ((x->flags | y->flags) & cudaEventDisableTiming)
    return api_error(cudaErrorInvalidResourceHandle,
                     "cudaEventElapsedTime on an event created with cudaEventDisableTiming");
  if (in_running_capture(x) || in_running_capture(y))
    return refuse_in_capture(cudaErrorCapturedEvent,
                             "cudaEventElapsedTime of an event recorded in the running capture");
  if (!ops_done(read_pos(x->q)) || !ops_done(read_pos(y->q)))
    return api_error(cudaErrorNotReady, "cudaEventElapsedTime on an event that has not completed");
  if (!x->recorded || !y->recorded)
    return api_error(cudaErrorInvalidResourceHandle, "cudaEventElapsedTime on an event never recorded");
  *ms = std::chrono::duration<float, std::milli>(y->t - x->t).count();
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  auto* ev = reinterpret_cast<Event*>(e);
  if (ev) wait_ops(read_pos(ev->q));  // its stamp is queued work that writes it
  delete ev;
  return cudaSuccess;
}

cudaError_t cudaLaunchHostFunc(cudaStream_t s, cudaHostFn_t fn, void* data) {
  if (!fn) return api_error(cudaErrorInvalidValue, "cudaLaunchHostFunc with a null function");
  submit(
      s, [fn, data] { fn(data); }, false);  // host code: device memory closed
  return cudaSuccess;
}
cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode) {
  if (!s) return api_error(cudaErrorStreamCaptureUnsupported, "cudaStreamBeginCapture on the legacy default stream");
  if (capture.active)
    return api_error(cudaErrorIllegalState,
                     "cudaStreamBeginCapture while another capture runs (emulated: one at a time)");
  capture = Capture{true, s, mode, {}, {}, ++captures_begun, {}};
  live_capture_mode.store(mode);
  live_capture_thread.store(std::this_thread::get_id());
  live_capture.store(capture.id, std::memory_order_release);
  return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t* g) {
  if (!g) return api_error(cudaErrorInvalidValue, "cudaStreamEndCapture with a null result pointer");
  *g = nullptr;
  if (!capture.active || capture.stream != s)
    return api_error(cudaErrorIllegalState, "cudaStreamEndCapture on a stream that did not begin a capture");
  live_capture.store(0, std::memory_order_release);
  Capture done;
  {
    std::lock_guard lock(invalid_mutex);
    done = std::move(capture);
    capture = Capture{};
  }
  if (!done.invalid.empty())
    return api_error(cudaErrorStreamCaptureInvalidated, "cudaStreamEndCapture: the capture was invalidated by %s",
                     done.invalid.c_str());
  for (const auto& [stream, side] : done.sides)
    if (side.ops > side.joined)
      return api_error(cudaErrorStreamCaptureUnjoined,
                       "cudaStreamEndCapture: a stream that joined the capture has work the origin stream never "
                       "waited for (%llu of %llu operations)",
                       static_cast<unsigned long long>(side.ops - side.joined),
                       static_cast<unsigned long long>(side.ops));
  *g = reinterpret_cast<cudaGraph_t>(new Graph{std::move(done.work)});
  return cudaSuccess;
}
cudaError_t cudaStreamIsCapturing(cudaStream_t s, cudaStreamCaptureStatus* status) {
  if (!status) return api_error(cudaErrorInvalidValue, "cudaStreamIsCapturing with a null result pointer");
  std::lock_guard g(invalid_mutex);
  *status = !capturing(s)             ? cudaStreamCaptureStatusNone
            : capture.invalid.empty() ? cudaStreamCaptureStatusActive
                                      : cudaStreamCaptureStatusInvalidated;
  return cudaSuccess;
}
cudaError_t cudaThreadExchangeStreamCaptureMode(cudaStreamCaptureMode* mode) {
  if (!mode) return api_error(cudaErrorInvalidValue, "cudaThreadExchangeStreamCaptureMode with a null pointer");
  std::swap(*mode, thread_capture_mode);
  return cudaSuccess;
}
cudaError_t cudaGraphGetNodes(cudaGraph_t g, cudaGraphNode_t* nodes, size_t* n) {
  if (!g || !n) return api_error(cudaErrorInvalidValue, "cudaGraphGetNodes with a null graph or count");
  if (nodes) return api_error(cudaErrorNotSupported, "cudaGraphGetNodes: node handles are not emulated (count only)");
  const auto& work = reinterpret_cast<Graph*>(g)->work;  // (waits are edges, not nodes)
  *n = static_cast<size_t>(std::count_if(work.begin(), work.end(), [](const GraphNode& x) { return x.work; }));
  return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t g, unsigned long long) {
  if (!exec || !g) return api_error(cudaErrorInvalidValue, "cudaGraphInstantiate with a null graph or result");
  *exec = reinterpret_cast<cudaGraphExec_t>(new Graph{reinterpret_cast<Graph*>(g)->work});
  return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t s) {
  if (!exec) return api_error(cudaErrorInvalidValue, "cudaGraphLaunch of a null graph");
  if (capturing(s)) return refuse_in_capture(cudaErrorStreamCaptureUnsupported, "cudaGraphLaunch (not emulated)");
  // A copy of the nodes: the executable graph may be destroyed before a deferred launch runs.
  const Graph& graph = *reinterpret_cast<Graph*>(exec);
  submit(
      s, [work = graph.work, agents = graph.agents] { replay(work, *agents); }, false);
  return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) { return delete reinterpret_cast<Graph*>(exec), cudaSuccess; }
cudaError_t cudaGraphDestroy(cudaGraph_t g) { return delete reinterpret_cast<Graph*>(g), cudaSuccess; }

cudaError_t cudaGetLastError(void) {
  const cudaError_t e = last_error;
  last_error = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError(void) { return last_error; }

const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
// clang-format off
#define CUEMU_E(x) case x: return #x;
    CUEMU_E(cudaSuccess)
    CUEMU_E(cudaErrorInvalidValue)
    CUEMU_E(cudaErrorMemoryAllocation)
    CUEMU_E(cudaErrorInitializationError)
    CUEMU_E(cudaErrorInvalidConfiguration)
    CUEMU_E(cudaErrorInvalidPitchValue)
    CUEMU_E(cudaErrorInvalidDevicePointer)
    CUEMU_E(cudaErrorInvalidMemcpyDirection)
    CUEMU_E(cudaErrorInvalidDevice)
    CUEMU_E(cudaErrorNoDevice)
    CUEMU_E(cudaErrorInvalidResourceHandle)
    CUEMU_E(cudaErrorNotReady)
    CUEMU_E(cudaErrorLaunchFailure)
    CUEMU_E(cudaErrorInvalidDeviceFunction)
    CUEMU_E(cudaErrorNotSupported)
    CUEMU_E(cudaErrorInsufficientDriver)
    CUEMU_E(cudaErrorUnknown)
    CUEMU_E(cudaErrorIllegalState)
    CUEMU_E(cudaErrorStreamCaptureUnsupported)
    CUEMU_E(cudaErrorStreamCaptureInvalidated)
    CUEMU_E(cudaErrorStreamCaptureImplicit)
    CUEMU_E(cudaErrorStreamCaptureUnjoined)
    CUEMU_E(cudaErrorStreamCaptureIsolation)
    CUEMU_E(cudaErrorCapturedEvent)
#undef CUEMU_E
    // clang-format on
    default:
      return "cudaErrorUnrecognized";
  }
}
const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess:
      return "no error";
    case cudaErrorInvalidValue:
      return "invalid argument";
    case cudaErrorMemoryAllocation:
      return "out of memory";
    case cudaErrorInvalidConfiguration:
      return "invalid configuration argument";
    case cudaErrorInvalidPitchValue:
      return "invalid pitch argument";
    case cudaErrorInvalidDevicePointer:
      return "invalid device pointer";
    case cudaErrorInvalidDevice:
      return "invalid device ordinal";
    case cudaErrorNoDevice:
      return "no CUDA-capable device is detected";
    case cudaErrorInvalidResourceHandle:
      return "invalid resource handle";
    case cudaErrorNotReady:
      return "device not ready";
    case cudaErrorLaunchFailure:
      return "unspecified launch failure";
    case cudaErrorNotSupported:
      return "operation not supported";
    case cudaErrorIllegalState:
      return "the operation cannot be performed in the present state";
    case cudaErrorStreamCaptureUnsupported:
      return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated:
      return "operation failed due to a previous error during capture";
    case cudaErrorStreamCaptureImplicit:
      return "operation would make the legacy stream depend on a capturing blocking stream";
    case cudaErrorStreamCaptureUnjoined:
      return "capture was not joined";
    case cudaErrorStreamCaptureIsolation:
      return "operation would have resulted in a merge of independent capture sequences";
    case cudaErrorCapturedEvent:
      return "operation not permitted on an event last recorded in a capturing stream";
    default:
      return "unrecognized error code";
  }
}

cudaError_t cudaGetDeviceCount(int* n) {
  if (!n) return api_error(cudaErrorInvalidValue, "cudaGetDeviceCount with a null result pointer");
  *n = device_count();
  if (*n == 0) {
    last_error = cudaErrorNoDevice;  // the real runtime reports this quietly
    return cudaErrorNoDevice;
  }
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* d) {
  if (!d) return api_error(cudaErrorInvalidValue, "cudaGetDevice with a null result pointer");
  return *d = current_device, cudaSuccess;
}
cudaError_t cudaSetDevice(int d) {
  if (d < 0 || d >= device_count()) return api_error(cudaErrorInvalidDevice, "cudaSetDevice(%d)", d);
  current_device = d;
  return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int d) {
  if (!p) return api_error(cudaErrorInvalidValue, "cudaGetDeviceProperties with a null result pointer");
  if (d < 0 || d >= device_count()) return api_error(cudaErrorInvalidDevice, "cudaGetDeviceProperties(%d)", d);
  *p = cudaDeviceProp{};
  std::snprintf(p->name, sizeof p->name, "cuemu (CUDA emulated on the CPU)");
  p->totalGlobalMem = total_memory();
  p->major = 9;  // kernels see an sm_90-like device
  p->warpSize = 32;
  p->maxThreadsPerBlock = p->maxThreadsDim[0] = p->maxThreadsDim[1] = 1024;
  p->maxThreadsDim[2] = 64;
  p->maxGridSize[0] = 0x7fffffff;
  p->maxGridSize[1] = p->maxGridSize[2] = 65535;
  p->sharedMemPerBlock = kDefaultSmem;
  p->sharedMemPerBlockOptin = kOptinSmem;
  p->sharedMemPerMultiprocessor = 228 * 1024;
  p->regsPerBlock = p->regsPerMultiprocessor = 65536;
  p->multiProcessorCount = 1;
  p->maxThreadsPerMultiProcessor = 2048;
  p->l2CacheSize = 1 << 20;
  p->totalConstMem = 64 * 1024;
  p->unifiedAddressing = 1;
  return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int d) {
  if (!v) return api_error(cudaErrorInvalidValue, "cudaDeviceGetAttribute with a null result pointer");
  if (d < 0 || d >= device_count()) return api_error(cudaErrorInvalidDevice, "cudaDeviceGetAttribute(device %d)", d);
  switch (a) {
    case cudaDevAttrMaxThreadsPerBlock:
      *v = 1024;
      break;
    case cudaDevAttrMaxBlockDimX:
    case cudaDevAttrMaxBlockDimY:
      *v = 1024;
      break;
    case cudaDevAttrMaxBlockDimZ:
      *v = 64;
      break;
    case cudaDevAttrMaxGridDimX:
      *v = 0x7fffffff;
      break;
    case cudaDevAttrMaxGridDimY:
    case cudaDevAttrMaxGridDimZ:
      *v = 65535;
      break;
    case cudaDevAttrMaxSharedMemoryPerBlock:
      *v = kDefaultSmem;
      break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin:
      *v = kOptinSmem;
      break;
    case cudaDevAttrWarpSize:
      *v = 32;
      break;
    case cudaDevAttrMultiProcessorCount:
      *v = 1;
      break;
    case cudaDevAttrComputeCapabilityMajor:
      *v = 9;
      break;
    case cudaDevAttrComputeCapabilityMinor:
      *v = 0;
      break;
    case cudaDevAttrMaxThreadsPerMultiProcessor:
      *v = 2048;
      break;
    case cudaDevAttrMaxRegistersPerBlock:
      *v = 65536;
      break;
    case cudaDevAttrL2CacheSize:
      *v = 1 << 20;
      break;
    default:
      return api_error(cudaErrorInvalidValue, "cudaDeviceGetAttribute: attribute %d is not emulated",
                       static_cast<int>(a));
  }
  return cudaSuccess;
}
cudaError_t cudaFuncSetAttribute(const void* func, cudaFuncAttribute a, int v) {
  if (!func) return api_error(cudaErrorInvalidDeviceFunction, "cudaFuncSetAttribute of a null function");
  if (a == cudaFuncAttributeMaxDynamicSharedMemorySize) {
    if (v < 0 || v > kOptinSmem)
      return api_error(cudaErrorInvalidValue,
                       "cudaFuncSetAttribute(MaxDynamicSharedMemorySize, %d): the device allows %d", v, kOptinSmem);
    std::lock_guard g(attr_mutex);
    max_dyn_smem[func] = v;
  }
  return cudaSuccess;  // other attributes (carveout, ...) only tune performance
}
cudaError_t cudaRuntimeGetVersion(int* v) {
  if (!v) return api_error(cudaErrorInvalidValue, "cudaRuntimeGetVersion with a null result pointer");
  *v = CUDART_VERSION;
  return cudaSuccess;
}
cudaError_t cudaDriverGetVersion(int* v) {
  if (!v) return api_error(cudaErrorInvalidValue, "cudaDriverGetVersion with a null result pointer");
  *v = CUDART_VERSION;  // an emulated driver that matches the headers
  return cudaSuccess;
}
}  // extern "C"
