// Helpers shared by the op implementations: operand layouts for kernels, broadcasting, axis
// normalisation, and the per-device dispatch error. Not part of the public op API.
#pragma once
#include <string>
#include <vector>

#include "engine/profiler.h"
#include "engine/tensor.h"
#include "kernels/kernel_types.h"
#if defined(ENGINE_WITH_CUDA)
#include "base/cuda_context.h"
#endif

namespace engine {

// Layout of `t` as a kernel operand (its own shape).
kernels::StridedLayout layout_of(const Tensor& t);
// Layout of `t` broadcast to `out_shape` (numpy rules: align trailing dims, size-1 dims get stride 0).
kernels::StridedLayout broadcast_layout(const Tensor& t, const Shape& out_shape);
// Simplifies layouts that share one shape (e.g. operands broadcast to an output): drops size-1
// dims and merges neighbouring dims that are contiguous with each other in every layout, so
// kernels see as few dims as possible (a contiguous tensor becomes 1-D; [N,H,W,C] + [C] becomes
// [N*H*W, C] with strides (C, 1) and (0, 1)). Recomputes the contiguous flags.
void coalesce(std::initializer_list<kernels::StridedLayout*> layouts);
// Broadcast result shape of a and b, or an Error naming op and both shapes.
Shape broadcast_shapes(const char* op, const Shape& a, const Shape& b);
// -ndim <= d < ndim -> [0, ndim), else an Error naming op and tensor.
int normalize_axis(const char* op, int d, int ndim);

void check_defined(const char* op, const char* arg, const Tensor& t);
void check_f32(const char* op, const char* arg, const Tensor& t);
// f32, bf16 or f16: the storage types of activations (ops with low-precision kernels, mixed precision).
void check_float_storage(const char* op, const char* arg, const Tensor& t);
void check_same_device(const char* op, const Tensor& a, const char* an, const Tensor& b, const char* bn);

// The Work (engine/profiler.h) of a dispatch whose cost is its memory traffic: the bytes of every
// given tensor, each read or written once (undefined tensors count 0; a broadcast operand counts its
// own elements, a strided view its elements, not its storage).
inline double tensor_bytes(const Tensor& t) { return t.defined() ? (double)t.nbytes() : 0.0; }
template <class... T>
profiler::Work traffic(const T&... tensors) {
  profiler::Work w;
  w.bytes = (0.0 + ... + tensor_bytes(tensors));
  return w;
}
inline profiler::Work traffic_bytes(double bytes) {
  profiler::Work w;
  w.bytes = bytes;
  return w;
}

// The error for an op that has no kernel on a device (never a silent fallback).
[[noreturn]] void no_kernel(const char* op, Device d);

}  // namespace engine

// Dispatch on a device: ENGINE_DISPATCH(op, device, work, cpu_stmt, cuda_stmt). In a build without
// CUDA the CUDA branch is an error naming the op. The op name also keys the per-op profile
// (engine/profiler.h), so each kernel pass should name itself distinctly. `work` is an expression
// giving the dispatch's profiler::Work (usually traffic(inputs..., outputs...)); it is evaluated only
// while profiling.
#if defined(ENGINE_WITH_CUDA)
#define ENGINE_DISPATCH(op_name, dev, work, cpu_stmt, cuda_stmt)                           \
  do {                                                                                     \
    const ::engine::profiler::Scope engine_profile_(op_name, dev, [&] { return (work); }); \
    if ((dev).is_cpu()) {                                                                  \
      cpu_stmt;                                                                            \
    } else {                                                                               \
      cuda_stmt;                                                                           \
    }                                                                                      \
  } while (0)
#else
#define ENGINE_DISPATCH(op_name, dev, work, cpu_stmt, cuda_stmt)                           \
  do {                                                                                     \
    const ::engine::profiler::Scope engine_profile_(op_name, dev, [&] { return (work); }); \
    if ((dev).is_cpu()) {                                                                  \
      cpu_stmt;                                                                            \
    } else {                                                                               \
      ::engine::no_kernel(op_name, (dev));                                                 \
    }                                                                                      \
  } while (0)
#endif
