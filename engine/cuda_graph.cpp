#include "engine/cuda_graph.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>

#include "engine/allocator.h"
#if defined(ENGINE_WITH_CUDA)
#include "base/cuda_context.h"
#endif

namespace engine {
namespace {
CudaGraph* g_capturing = nullptr;  // the graph being captured (captures run on the training thread)

}  // namespace

bool capturing_cuda_graph() { return g_capturing != nullptr; }

void check_on_host(std::function<void()> check) {
  if (g_capturing) {
    g_capturing->checks_.push_back(std::move(check));
    return;
  }
  check();
}

void capture_host_to_device(void* dst, const void* src, size_t bytes) {
  ENGINE_CHECK(g_capturing, "capture_host_to_device outside a CUDA graph capture");
#if defined(ENGINE_WITH_CUDA)
  void* staged = nullptr;
  cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;  // (allocating is not captured work)
  cudaThreadExchangeStreamCaptureMode(&mode);
  const cudaError_t e = cudaMallocHost(&staged, bytes);
  cudaThreadExchangeStreamCaptureMode(&mode);
  CUDA_CHECK(e);
  g_capturing->pinned_.push_back(staged);
  std::memcpy(staged, src, bytes);
  CUDA_CHECK(cudaMemcpyAsync(dst, staged, bytes, cudaMemcpyHostToDevice, compute_stream()));
#else
  (void)dst, (void)src, (void)bytes;
#endif
}

GraphPool::~GraphPool() {
#if defined(ENGINE_WITH_CUDA)
  if (!used_) return;  // (never touches CUDA: a pool made on a machine without a GPU stays unused)
  try {
    release_capture_pool(key());
  } catch (const std::exception& e) {  // a destructor must not throw; the blocks stay cached
    std::fprintf(stderr, "engine: releasing a CUDA graph memory pool failed: %s\n", e.what());
  }
#endif
}

CudaGraph::~CudaGraph() {
#if defined(ENGINE_WITH_CUDA)
  if (exec_) cudaStreamSynchronize(compute_stream());  // its host nodes and memory may still be in use
#endif
  reset();
}

void CudaGraph::reset() {
#if defined(ENGINE_WITH_CUDA)
  if (exec_) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec_));
#endif
  exec_ = nullptr;
  nodes_ = 0;
  checks_.clear();
  release_pinned();
}

void CudaGraph::release_pinned() {
#if defined(ENGINE_WITH_CUDA)
  for (void* p : pinned_) cudaFreeHost(p);
#endif
  pinned_.clear();
}

void CudaGraph::capture(const std::function<void()>& ops) {
#if defined(ENGINE_WITH_CUDA)
  ENGINE_CHECK(!g_capturing, "a CUDA graph capture is already running");
  if (exec_) {
    CUDA_CHECK(cudaStreamSynchronize(compute_stream()));
    reset();
  }
  const cudaStream_t stream = compute_stream();
  CUDA_CHECK(cudaStreamSynchronize(stream));  // the work enqueued before is not part of the graph
  // The capture cannot free memory (cudaFree would end it), so blocks cached for eager work are
  // returned to the device first: the capture's own allocations get the room they would have had.
  empty_cache();
  pool_->used_ = true;
  begin_capture_pool(pool_->key());
  if (const cudaError_t e = cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal); e != cudaSuccess) {
    end_capture_pool();
    cudaGetLastError();
    throw CaptureFailed(std::string("CUDA graph capture refused: ") + cudaGetErrorString(e));
  }
  g_capturing = this;
  std::exception_ptr thrown;
  std::string what;
  try {
    ops();
  } catch (const std::exception& e) {
    thrown = std::current_exception();
    what = e.what();
  } catch (...) {
    thrown = std::current_exception();
  }
  g_capturing = nullptr;
  cudaGraph_t graph = nullptr;
  const cudaError_t ended = cudaStreamEndCapture(stream, &graph);
  end_capture_pool();
  if (ended != cudaSuccess || thrown) {
    if (graph) cudaGraphDestroy(graph);
    cudaGetLastError();  // the capture's errors are not sticky; clear them for the eager work that follows
    checks_.clear();
    release_pinned();
    // An op that CUDA refused during the capture throws a CUDA error (cudaErrorStreamCapture*, or
    // cudaErrorCapturedEvent for an event recorded in the capture): that is a failed capture, not a
    // failed op, as is the engine's own refusal (a CaptureFailed, rethrown below as it is). Anything
    // else (a shape error) is the op's own error.
    if (ended == cudaErrorStreamCaptureInvalidated || (thrown && (what.find("StreamCapture") != std::string::npos ||
                                                                  what.find("CapturedEvent") != std::string::npos)))
      throw CaptureFailed("CUDA graph capture failed: " +
                          (what.empty() ? std::string(cudaGetErrorString(ended)) : what));
    if (thrown) std::rethrow_exception(thrown);
    CUDA_CHECK(ended);
  }
  size_t n = 0;
  cudaGraphGetNodes(graph, nullptr, &n);
  cudaGraphExec_t exec = nullptr;
  const cudaError_t inst = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  if (inst != cudaSuccess) {
    cudaGetLastError();
    checks_.clear();
    release_pinned();
    throw CaptureFailed(std::string("CUDA graph instantiation failed: ") + cudaGetErrorString(inst));
  }
  exec_ = exec;
  nodes_ = n;
#else
  (void)ops;
  throw CaptureFailed("CUDA graphs need a CUDA build (this one is CPU only)");
#endif
}

void CudaGraph::replay(const std::function<void()>& launched) {
  ENGINE_CHECK(exec_, "replay of a CUDA graph that holds no capture");
#if defined(ENGINE_WITH_CUDA)
  CUDA_CHECK(cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec_), compute_stream()));
#endif
  if (launched) launched();
#if defined(ENGINE_WITH_CUDA)
  // Waits here, so that a fault inside the graph is reported as the graph's.
  if (const cudaError_t e = cudaStreamSynchronize(compute_stream()); e != cudaSuccess)
    fail("CUDA graph replay (", nodes_, " nodes) failed: ", cudaGetErrorName(e), ": ", cudaGetErrorString(e));
#endif
  for (const auto& check : checks_) check();
}

}  // namespace engine
