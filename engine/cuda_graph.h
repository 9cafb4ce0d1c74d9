// CUDA graphs: a sequence of ops captured once on the compute stream and replayed with one launch
// (cudaGraphLaunch), so the host's per-kernel launch cost disappears from a training step whose
// shapes repeat. Design and limits: docs/ARCHITECTURE.md "CUDA graphs".
//
// What capture requires of the ops it records:
//  - no host read of device memory (it would synchronise, which a capture refuses): an op that
//    validates a device result on the host (a label outside [0, C)) hands the check to
//    check_on_host, which runs it at once outside a capture and after every replay inside one;
//  - no host work between kernels (every op enqueues its work on the compute stream);
//  - device memory from the graph's pool (engine/allocator.h): addresses are baked into the graph,
//    so the pool's blocks stay the graph's until it is destroyed.
// Replaying reruns the captured kernels on whatever the captured tensors hold at that moment: the
// caller copies new inputs into the tensors the capture read, and reads the results from the tensors
// it wrote.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/error.h"
#include "engine/tensor.h"

namespace engine {

// CaptureFailed (base/error.h): a capture that CUDA or the engine refused.

// True while a CudaGraph capture runs (on this process's compute stream).
bool capturing_cuda_graph();

// Runs `check`, which reads device tensors on the host and throws what is wrong with them: at once,
// or while a capture runs, after every replay of the graph (CudaGraph::replay throws what it
// throws). It must hold the tensors it reads by value.
void check_on_host(std::function<void()> check);

// A host-to-device copy while a capture runs: the bytes are staged in pinned memory the graph keeps,
// and every replay copies them again. For values that stay the same between replays: constants the
// host computes from shapes and settings (a captured step's batch is on the device already).
void capture_host_to_device(void* dst, const void* src, size_t bytes);

// Device memory of step graphs: the graphs of one GraphPool share its blocks. Sharing is safe when
// the graphs are replayed one at a time and each replay's outputs are consumed (read, copied or
// dropped) before the next replay of any graph of the pool: a graph's temporaries may occupy
// another's output blocks.
class GraphPool {
 public:
  GraphPool() = default;
  ~GraphPool();
  GraphPool(const GraphPool&) = delete;
  GraphPool& operator=(const GraphPool&) = delete;
  const void* key() const { return this; }

 private:
  friend class CudaGraph;
  bool used_ = false;  // a capture took blocks from it (a pool never used owns nothing to release)
};

class CudaGraph {
 public:
  explicit CudaGraph(std::shared_ptr<GraphPool> pool) : pool_(std::move(pool)) {}
  ~CudaGraph();
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;

  // Captures what `ops` enqueues on the compute stream; none of it runs now. Throws CaptureFailed
  // when CUDA refused the capture (the message names the call), and rethrows what `ops` throws;
  // either way the graph stays empty.
  void capture(const std::function<void()>& ops);
  // Launches the captured work, waits for it and runs the checks handed to check_on_host.
  // `launched` runs between the launch and the wait (a communicator's watchdog starts following the
  // replay: engine/comm/communicator.h follow_enqueued_work).
  void replay(const std::function<void()>& launched = nullptr);
  bool captured() const { return exec_ != nullptr; }
  size_t nodes() const { return nodes_; }

 private:
  void reset();
  void release_pinned();
  friend void check_on_host(std::function<void()>);
  friend void capture_host_to_device(void*, const void*, size_t);

  std::shared_ptr<GraphPool> pool_;
  void* exec_ = nullptr;  // cudaGraphExec_t
  size_t nodes_ = 0;
  std::vector<std::function<void()>> checks_;
  std::vector<void*> pinned_;  // staged constants of capture_host_to_device
};

}  // namespace engine
