// Copy family: contiguous copies, casts between storage types, fills, device transfers.
// Casts to integer types truncate toward zero and saturate at the type's range (NaN -> 0; a plain C
// cast is undefined there and differs between x86 and GPUs); f16/bf16 round to nearest even.
#pragma once
#include "engine/tensor.h"

namespace engine {

// A new contiguous tensor on src's device with dtype `dtype` holding src's values.
Tensor copy_contiguous(const Tensor& src, DType dtype);
// dst (any non-broadcast strides) <- src (any strides/dtype/device, same shape). No autograd.
void copy_into(const Tensor& dst, const Tensor& src);
// Every element of the contiguous tensor t <- value. No autograd.
void fill_(const Tensor& t, float value);
// A contiguous copy of src on device d. No autograd (Tensor::to(Device) adds it).
Tensor copy_to_device(const Tensor& src, Device d);

}  // namespace engine
