// nccl_emu.cpp -- the emulated build's NCCL: the subset of NCCL's API that
// engine/comm/nccl_communicator.cpp calls, defined extern "C" against the real <nccl.h> prototypes
// (libnccl is not linked), so data-parallel training on the emulated GPU runs the production
// communicator (its stream fork and join, its watchdog, the step graphs with captured collectives) in
// CI, with one process per rank as on GPUs.
//
// Transport: ncclGetUniqueId creates a POSIX shared-memory segment and puts its name in the id; the
// ranks map it in ncclCommInitRank, which returns once every rank has joined (as NCCL's does). A
// collective runs in rounds of up to kSlotBytes per rank: each rank copies its part into its own slot
// and raises its progress counter; once every rank's counter has reached the round, each reads the
// slots it needs and raises its counter again; the next round starts when all have read. So every
// rank must issue the same collectives in the same order, as with NCCL.
// Arithmetic: sums run over the ranks in rank order, each addition rounded to the data type, so every
// rank gets the same bits; ncclAvg multiplies each rank's values by 1/nranks rounded to the type
// first, as NCCL's PreMulSum does for floating types.
// Streams: a call runs in stream order (cuemu::submit: deferred until the stream's work is needed, on
// the emulated device thread), or, while its stream is captured, is recorded into the graph and runs
// at every replay (cuemu::record); ncclCommDestroy first runs the work queued so far (NCCL's finalize).
// As NCCL on one node: ranks must be on different devices (ncclCommInitRank fails with
// ncclInvalidUsage for a duplicate GPU, by the machine ordinal behind CUDA_VISIBLE_DEVICES);
// ncclCommAbort affects its own rank only (a thread of it waiting in a collective stops waiting and
// leaves the output as it was), so a rank whose peer aborted, died or hangs waits until its own
// timeout ends it; ncclCommDestroy and ncclCommAbort wait until no CUDA graph holds a captured
// collective of the communicator (NCCL 2.28's commDestroySync), where a destroy that would wait
// forever is reported and aborts the process instead of hanging.
// Not modelled: NCCL's speed, its ring order of summation (whether its premultiply and add fuse into
// one rounding), and error reporting over network transports (ncclRemoteError).
// Tested by test_nccl_gpu (one rank) and scripts/dist_checks.sh (two ranks under engine-launch on the
// emulated GPU).
#include <fcntl.h>
#include <nccl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "kernels/emu/cuemu.h"
#include "kernels/shared_math.h"

namespace {

constexpr int kMaxRanks = 16;
constexpr size_t kSlotBytes = size_t(1) << 20;
constexpr uint32_t kMagic = 0x6e63636cu;  // "nccl"

struct Segment {
  std::atomic<uint32_t> magic;
  std::atomic<int> attached;
  std::atomic<int> device[kMaxRanks];  // each rank's machine device ordinal
  std::atomic<uint64_t> progress[kMaxRanks];
  alignas(64) unsigned char slots[kMaxRanks][kSlotBytes];
};
constexpr size_t kSegmentBytes = sizeof(Segment);

std::string segment_name(const ncclUniqueId& id) {
  return std::string(id.internal, strnlen(id.internal, sizeof id.internal));
}
Segment* map_segment(const std::string& name, bool create) {
  const int fd = shm_open(name.c_str(), create ? O_RDWR | O_CREAT | O_EXCL : O_RDWR, 0600);
  if (fd < 0) return nullptr;
  if (create && ftruncate(fd, (off_t)kSegmentBytes) != 0) {
    close(fd);
    shm_unlink(name.c_str());
    return nullptr;
  }
  void* p = mmap(nullptr, kSegmentBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  return p == MAP_FAILED ? nullptr : static_cast<Segment*>(p);
}

// The last error's text (one per process: the watchdog thread reads what the training thread set).
std::mutex g_error_mutex;
std::string g_last_error;
void set_last_error(const std::string& what) {
  std::lock_guard<std::mutex> lock(g_error_mutex);
  g_last_error = "emulated NCCL: " + what;
}
ncclResult_t error(ncclResult_t r, const std::string& what) {
  set_last_error(what);
  return r;
}

size_t type_size(ncclDataType_t t) {
  switch (t) {
    case ncclInt8:
    case ncclUint8:
      return 1;
    case ncclFloat16:
    case ncclBfloat16:
      return 2;
    case ncclInt32:
    case ncclUint32:
    case ncclFloat32:
      return 4;
    case ncclInt64:
    case ncclUint64:
    case ncclFloat64:
      return 8;
    default:
      return 0;
  }
}

}  // namespace

struct ncclComm {
  Segment* seg = nullptr;
  std::string name;
  int rank = 0, nranks = 1;
  uint64_t phase = 0;                // this rank's progress counter
  std::atomic<bool> aborted{false};  // ncclCommAbort of this rank
  std::atomic<int> graph_refs{0};    // copies of captured collectives held by CUDA graphs

  // Waits until every rank's counter reaches `target`; false when this rank was aborted meanwhile.
  bool wait_all(uint64_t target) {
    for (int spins = 0;; ++spins) {
      bool all = true;
      for (int r = 0; r < nranks && all; ++r) all = seg->progress[r].load(std::memory_order_acquire) >= target;
      if (all) return true;
      if (aborted.load()) {
        set_last_error("the communicator was aborted");
        return false;
      }
      if (spins < 64)
        std::this_thread::yield();
      else
        std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }
  // One round: put(my slot), then take() once every rank's slot is filled; false when aborted.
  template <class Put, class Take>
  bool round(const Put& put, const Take& take) {
    put(seg->slots[rank]);
    seg->progress[rank].store(++phase, std::memory_order_release);
    if (!wait_all(phase)) return false;
    take();
    seg->progress[rank].store(++phase, std::memory_order_release);
    return wait_all(phase);
  }
};

namespace {

ncclResult_t check_comm(ncclComm_t c) {
  if (!c || !c->seg) return error(ncclInvalidArgument, "null or destroyed communicator");
  if (c->aborted.load()) return error(ncclInvalidUsage, "communicator was aborted");
  return ncclSuccess;
}

// A captured collective's hold on its communicator: one per copy of the recorded work, so the count
// is how many graphs (cudaGraph_t and cudaGraphExec_t alike) contain it.
struct GraphRef {
  ncclComm_t c;
  explicit GraphRef(ncclComm_t comm) : c(comm) { ++c->graph_refs; }
  GraphRef(const GraphRef& o) : c(o.c) { ++c->graph_refs; }
  GraphRef(GraphRef&& o) noexcept : c(o.c) { ++c->graph_refs; }
  GraphRef& operator=(const GraphRef&) = delete;
  ~GraphRef() { --c->graph_refs; }
};
// The work of a collective in stream order; a captured one holds the communicator (GraphRef).
void enqueue(ncclComm_t c, cudaStream_t stream, const char* what, std::function<void()> work) {
  if (cuemu::capturing(stream))
    return cuemu::record(
        stream, [ref = GraphRef(c), work = std::move(work)] { work(); }, true, what);
  cuemu::submit(stream, std::move(work), true, what);
}
// Waits, as NCCL's destroy and abort do, until no graph holds a captured collective of c.
void wait_for_graphs(ncclComm_t c) {
  while (c->graph_refs.load() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

// Element-wise reduction of `count` elements over the ranks' slots into out, in rank order.
template <class T, class Load, class Store>
void reduce_slots(ncclComm_t c, size_t count, ncclRedOp_t op, void* out, const Load& load, const Store& store) {
  const float scale = op == ncclAvg ? load(store(1.f / (float)c->nranks)) : 1.f;
  for (size_t i = 0; i < count; ++i) {
    float acc = 0.f;
    for (int r = 0; r < c->nranks; ++r) {
      float v = load(reinterpret_cast<const T*>(c->seg->slots[r])[i]);
      if (op == ncclAvg) v = load(store(v * scale));
      acc = r == 0 ? v : load(store(acc + v));
    }
    static_cast<T*>(out)[i] = store(acc);
  }
}
// Integers: exact sums (wrapping), ncclAvg divides the sum (NCCL's SumPostDiv for integer types).
template <class T>
void reduce_slots_int(ncclComm_t c, size_t count, ncclRedOp_t op, void* out) {
  for (size_t i = 0; i < count; ++i) {
    T acc = 0;
    for (int r = 0; r < c->nranks; ++r) acc = T(acc + reinterpret_cast<const T*>(c->seg->slots[r])[i]);
    static_cast<T*>(out)[i] = op == ncclAvg ? T(acc / T(c->nranks)) : acc;
  }
}
// f64: premultiplied by 1/nranks for ncclAvg, as the other floating types.
void reduce_slots_f64(ncclComm_t c, size_t count, ncclRedOp_t op, void* out) {
  const double scale = 1.0 / c->nranks;
  for (size_t i = 0; i < count; ++i) {
    double acc = 0;
    for (int r = 0; r < c->nranks; ++r) {
      double v = reinterpret_cast<const double*>(c->seg->slots[r])[i];
      if (op == ncclAvg) v *= scale;
      acc = r == 0 ? v : acc + v;
    }
    static_cast<double*>(out)[i] = acc;
  }
}
void reduce_chunk(ncclComm_t c, ncclDataType_t t, size_t count, ncclRedOp_t op, void* out) {
  using namespace engine::kernels;
  switch (t) {
    case ncclFloat32:
      return reduce_slots<float>(
          c, count, op, out, [](float v) { return v; }, [](float v) { return v; });
    case ncclFloat16:
      return reduce_slots<uint16_t>(c, count, op, out, half_bits_to_float, float_to_half_bits);
    case ncclBfloat16:
      return reduce_slots<uint16_t>(c, count, op, out, bf16_bits_to_float, float_to_bf16_bits);
    case ncclFloat64:
      return reduce_slots_f64(c, count, op, out);
    case ncclInt8:
      return reduce_slots_int<int8_t>(c, count, op, out);
    case ncclInt32:
      return reduce_slots_int<int32_t>(c, count, op, out);
    case ncclUint32:
      return reduce_slots_int<uint32_t>(c, count, op, out);
    case ncclInt64:
      return reduce_slots_int<int64_t>(c, count, op, out);
    case ncclUint64:
      return reduce_slots_int<uint64_t>(c, count, op, out);
    default:
      return reduce_slots_int<uint8_t>(c, count, op, out);
  }
}

// Runs round(offset, n) over [0, total) in pieces of at most `piece`, stopping after a round that
// failed (the job was aborted).
template <class F>
void in_rounds(size_t total, size_t piece, const F& round) {
  for (size_t done = 0; done < total;) {
    const size_t n = std::min(piece, total - done);
    if (!round(done, n)) return;
    done += n;
  }
}

}  // namespace

extern "C" {

ncclResult_t ncclGetVersion(int* version) {
  if (!version) return error(ncclInvalidArgument, "ncclGetVersion with a null pointer");
  *version = NCCL_VERSION_CODE;
  return ncclSuccess;
}

const char* ncclGetErrorString(ncclResult_t r) {
  switch (r) {
    case ncclSuccess:
      return "no error";
    case ncclUnhandledCudaError:
      return "unhandled cuda error";
    case ncclSystemError:
      return "unhandled system error";
    case ncclInternalError:
      return "internal error";
    case ncclInvalidArgument:
      return "invalid argument";
    case ncclInvalidUsage:
      return "invalid usage";
    case ncclRemoteError:
      return "remote process exited or there was a network error";
    case ncclInProgress:
      return "NCCL operation in progress";
    default:
      return "unknown result code";
  }
}
const char* ncclGetLastError(ncclComm_t) {
  thread_local std::string copy;
  std::lock_guard<std::mutex> lock(g_error_mutex);
  copy = g_last_error;
  return copy.c_str();
}

ncclResult_t ncclGetUniqueId(ncclUniqueId* id) {
  if (!id) return error(ncclInvalidArgument, "ncclGetUniqueId with a null pointer");
  static std::atomic<unsigned> serial{0};
  const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
  const std::string name = "/cuemu-nccl-" + std::to_string(getpid()) + "-" + std::to_string(serial++) + "-" +
                           std::to_string((unsigned long long)now);
  Segment* seg = map_segment(name, true);
  if (!seg) return error(ncclSystemError, "cannot create the shared-memory segment " + name);
  seg->attached.store(0);
  for (auto& d : seg->device) d.store(-1);
  for (auto& p : seg->progress) p.store(0);
  seg->magic.store(kMagic, std::memory_order_release);
  munmap(seg, kSegmentBytes);
  std::memset(id->internal, 0, sizeof id->internal);
  std::memcpy(id->internal, name.data(), std::min(name.size(), sizeof id->internal - 1));
  return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId id, int rank) {
  if (!comm) return error(ncclInvalidArgument, "ncclCommInitRank with a null result pointer");
  *comm = nullptr;
  if (nranks < 1 || nranks > kMaxRanks || rank < 0 || rank >= nranks)
    return error(ncclInvalidArgument, "rank " + std::to_string(rank) + " of " + std::to_string(nranks) +
                                          " (the emulation runs 1 to " + std::to_string(kMaxRanks) + " ranks)");
  const std::string name = segment_name(id);
  Segment* seg = map_segment(name, false);
  if (!seg || seg->magic.load(std::memory_order_acquire) != kMagic) {
    if (seg) munmap(seg, kSegmentBytes);
    return error(ncclInvalidArgument, "no communicator for this unique id (" + name + ")");
  }
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) {
    munmap(seg, kSegmentBytes);
    return error(ncclUnhandledCudaError, "cudaGetDevice failed");
  }
  seg->device[rank].store(cuemu::machine_device(device));
  if (seg->attached.fetch_add(1) + 1 == nranks) shm_unlink(name.c_str());  // every rank has it mapped
  // Like NCCL's, initialisation returns once every rank has joined.
  while (seg->attached.load(std::memory_order_acquire) < nranks)
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  for (int r = 0; r < nranks; ++r)
    if (r != rank && seg->device[r].load() == seg->device[rank].load()) {
      const int d = seg->device[r].load();
      munmap(seg, kSegmentBytes);
      return error(ncclInvalidUsage, "Duplicate GPU detected: rank " + std::to_string(rank) + " and rank " +
                                         std::to_string(r) + " both on machine device " + std::to_string(d));
    }
  auto* c = new ncclComm;
  c->seg = seg, c->name = name, c->rank = rank, c->nranks = nranks;
  *comm = c;
  return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t comm) {
  if (!comm) return error(ncclInvalidArgument, "ncclCommDestroy of a null communicator");
  cuemu::synchronize_device();  // NCCL's finalize: the collectives issued so far complete first
  if (const int refs = comm->graph_refs.load(); refs > 0) {
    // NCCL would wait for those graphs' destruction, which the caller (holding them) never reaches.
    std::fprintf(stderr,
                 "emulated NCCL: ncclCommDestroy while %d CUDA graph(s) hold captured collectives of the "
                 "communicator: NCCL waits until they are destroyed, so this would hang; destroy the graphs "
                 "first\n",
                 refs);
    std::abort();
  }
  if (comm->seg) munmap(comm->seg, kSegmentBytes);
  shm_unlink(comm->name.c_str());  // (already gone unless a peer never joined)
  delete comm;
  return ncclSuccess;
}

// This rank only. Another thread may still be waiting in a collective of this communicator (the
// communicator's watchdog aborts while the training thread waits): the mapping stays, so that wait
// ends safely. Like NCCL's, it returns once no CUDA graph holds a captured collective.
ncclResult_t ncclCommAbort(ncclComm_t comm) {
  if (!comm) return error(ncclInvalidArgument, "ncclCommAbort of a null communicator");
  comm->aborted.store(true);
  shm_unlink(comm->name.c_str());
  wait_for_graphs(comm);
  return ncclSuccess;
}

ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t* async) {
  if (!comm || !async) return error(ncclInvalidArgument, "ncclCommGetAsyncError with a null argument");
  *async = ncclSuccess;  // errors of a network transport are not modelled
  return ncclSuccess;
}

ncclResult_t ncclAllReduce(const void* send, void* recv, size_t count, ncclDataType_t type, ncclRedOp_t op,
                           ncclComm_t comm, cudaStream_t stream) {
  if (const ncclResult_t r = check_comm(comm); r != ncclSuccess) return r;
  const size_t es = type_size(type);
  if (!es || (op != ncclSum && op != ncclAvg) || (count && (!send || !recv)))
    return error(ncclInvalidArgument, "ncclAllReduce: unsupported type or operation, or a null buffer");
  enqueue(comm, stream, "ncclAllReduce", [=] {
    in_rounds(count, kSlotBytes / es, [&](size_t done, size_t n) {  // in elements
      const auto* src = static_cast<const unsigned char*>(send) + done * es;
      auto* dst = static_cast<unsigned char*>(recv) + done * es;
      return comm->round([&](unsigned char* slot) { std::memcpy(slot, src, n * es); },
                         [&] { reduce_chunk(comm, type, n, op, dst); });
    });
  });
  return ncclSuccess;
}

ncclResult_t ncclBroadcast(const void* send, void* recv, size_t count, ncclDataType_t type, int root, ncclComm_t comm,
                           cudaStream_t stream) {
  if (const ncclResult_t r = check_comm(comm); r != ncclSuccess) return r;
  const size_t es = type_size(type);
  if (!es || root < 0 || root >= comm->nranks || (count && !recv) || (count && comm->rank == root && !send))
    return error(ncclInvalidArgument, "ncclBroadcast: unsupported type, bad root or a null buffer");
  enqueue(comm, stream, "ncclBroadcast", [=] {
    in_rounds(count * es, kSlotBytes, [&](size_t done, size_t n) {
      return comm->round(
          [&](unsigned char* slot) {
            if (comm->rank == root) std::memcpy(slot, static_cast<const unsigned char*>(send) + done, n);
          },
          [&] { std::memmove(static_cast<unsigned char*>(recv) + done, comm->seg->slots[root], n); });
    });
  });
  return ncclSuccess;
}

ncclResult_t ncclAllGather(const void* send, void* recv, size_t count, ncclDataType_t type, ncclComm_t comm,
                           cudaStream_t stream) {
  if (const ncclResult_t r = check_comm(comm); r != ncclSuccess) return r;
  const size_t es = type_size(type);
  if (!es || (count && (!send || !recv)))
    return error(ncclInvalidArgument, "ncclAllGather: unsupported type or a null buffer");
  enqueue(comm, stream, "ncclAllGather", [=] {
    const size_t bytes = count * es;
    in_rounds(bytes, kSlotBytes, [&](size_t done, size_t n) {
      return comm->round(
          [&](unsigned char* slot) { std::memcpy(slot, static_cast<const unsigned char*>(send) + done, n); },
          [&] {
            for (int r = 0; r < comm->nranks; ++r)
              std::memcpy(static_cast<unsigned char*>(recv) + r * bytes + done, comm->seg->slots[r], n);
          });
    });
  });
  return ncclSuccess;
}

}  // extern "C"
