// Per-process CUDA state of the engine: the device it lives on, the compute stream, error checks,
// debug synchronisation. The base layer under both engine/ and kernels/; the stream functions exist
// only in builds with ENGINE_WITH_CUDA (real or emulated CUDA).
#pragma once

namespace engine {

// The device index the per-process CUDA state is (or will be) created on; 0 until set. Setting it
// is an Error once the state exists on another device; in the real CUDA build it also makes the
// device current. engine::select_cuda_device (engine/device.h) validates the index, then calls this.
void set_cuda_context_device(int index);
int cuda_context_device();

}  // namespace engine

#if defined(ENGINE_WITH_CUDA)
#include <cuda_runtime.h>

namespace engine {

// The stream every op of the engine launches on, created at the first call on the process's device
// (select_cuda_device in engine/device.h: one process per device). In the real CUDA build each call
// also makes that device current for the calling thread (the current device is per host thread), so
// a thread that uses the stream or allocates works on the right GPU.
cudaStream_t compute_stream();
// Throws engine::Error naming `what` when `e` is not cudaSuccess.
void cuda_check(cudaError_t e, const char* what, const char* file, int line);
// Called after every kernel launch: checks the launch and, with ENGINE_SYNC_DEBUG=1, synchronises
// so that an asynchronous fault is reported at the op that caused it.
void cuda_after_launch(const char* kernel, const char* file, int line);

}  // namespace engine

#define CUDA_CHECK(expr) ::engine::cuda_check((expr), #expr, __FILE__, __LINE__)
#define CUDA_CHECK_LAUNCH(name) ::engine::cuda_after_launch((name), __FILE__, __LINE__)
#endif
