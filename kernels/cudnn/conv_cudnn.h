// 2-D convolution through cuDNN 9 (REAL build only; kernels/cudnn/ is not compiled in the emulated
// build, where the conv op runs the CPU oneDNN implementation on the device's host memory).
// Math: kernels/cpu/conv_cpu.h (cross-correlation, NHWC activations). Weights here are OHWI
// [Cout, kH, kW, Cin/groups] (cuDNN's CUDNN_TENSOR_NHWC filter layout, "KRSC"): the op layer
// transposes the engine's OIHW weight before calling and the OHWI weight gradient back after.
// Bias is NOT handled here (the op adds it and reduces its gradient with the engine's own kernels).
// Asynchronous on `stream`; errors throw engine::Error naming the cuDNN call.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <functional>

#include "kernels/cpu/conv_cpu.h"  // ConvParams

namespace engine::kernels {

// Returns device memory of at least `bytes` that stays valid until the conv call returns (the op
// layer allocates a Tensor from the caching allocator); may be called more than once per call.
using CudnnWorkspaceFn = std::function<void*(size_t bytes)>;

// Every tensor (x, w, y and the gradients) is in the precision's data type: f32, or bf16 / half bits
// when p.input says so (conv_cudnn.cpp "Precision").
void conv2d_fwd_cudnn(const ConvParams& p, const void* x, const void* w_ohwi, void* y, const CudnnWorkspaceFn& ws,
                      cudaStream_t stream);
void conv2d_bwd_data_cudnn(const ConvParams& p, const void* gy, const void* w_ohwi, void* gx,
                           const CudnnWorkspaceFn& ws, cudaStream_t stream);
void conv2d_bwd_weights_cudnn(const ConvParams& p, const void* x, const void* gy, void* gw_ohwi,
                              const CudnnWorkspaceFn& ws, cudaStream_t stream);

// The roofline's ideal for a convolution (engine/roofline.h): the fastest time in milliseconds cuDNN
// measures for this pass and problem over every algorithm in either layout (NHWC and NCHW
// descriptors), deterministic or not, with any math type p's precision allows; -1 when no algorithm
// ran. Its buffers (zero-filled) and workspace come from `ws`. Synchronises `stream` (cuDNN's search
// does). Not cached: the caller measures each problem once.
float conv2d_best_ms_cudnn(ConvPass pass, const ConvParams& p, const CudnnWorkspaceFn& ws, cudaStream_t stream);

// Number of (pass, shape) entries whose algorithm and layout have been chosen; it grows when a call
// ran the algorithm search (which asks the workspace callback for large one-off buffers).
size_t conv2d_cudnn_entries();

}  // namespace engine::kernels
