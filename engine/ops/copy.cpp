#include "engine/ops/copy.h"

#include "engine/cuda_graph.h"
#include "engine/ops/op_utils.h"
#include "kernels/cpu/copy_cpu.h"
#if defined(ENGINE_WITH_CUDA)
#include "kernels/cuda/copy_cuda.h"
#endif

namespace engine {

void copy_into(const Tensor& dst, const Tensor& src) {
  check_defined("copy", "dst", dst);
  check_defined("copy", "src", src);
  ENGINE_CHECK(dst.shape() == src.shape(), "copy: destination ", dst.describe(), " and source ", src.describe(),
               " differ in shape");
  for (int d = 0; d < dst.dim(); ++d)
    ENGINE_CHECK(dst.strides()[d] != 0 || dst.shape()[d] == 1, "copy: destination ", dst.describe(),
                 " is a broadcast view; writing it would store several elements in one place");
  if (dst.device() != src.device()) {
    const Tensor staged = copy_to_device(src, dst.device());
    copy_into(dst, staged);
    return;
  }
  // Coalesced, so a transpose or slice of a higher-rank tensor costs the kernels' index arithmetic of
  // the few dims it really has (a conv weight's OIHW -> OHWI permute is [O, HW, I] from [O, I, HW]).
  kernels::StridedLayout sl = layout_of(src), dl = layout_of(dst);
  coalesce({&sl, &dl});
  ENGINE_DISPATCH("copy", dst.device(), traffic(src, dst),
                  kernels::strided_copy_cpu(src.storage()->data, src.dtype(), sl, dst.storage()->data, dst.dtype(), dl,
                                            dst.numel()),
                  kernels::strided_copy_cuda(src.storage()->data, src.dtype(), sl, dst.storage()->data, dst.dtype(), dl,
                                             dst.numel(), compute_stream()));
}

Tensor copy_contiguous(const Tensor& src, DType dtype) {
  Tensor out = Tensor::empty(src.shape(), dtype, src.device());
  copy_into(out, src);
  return out;
}

void fill_(const Tensor& t, float value) {
  check_defined("fill", "t", t);
  ENGINE_CHECK(t.is_contiguous(), "fill: tensor ", t.describe(), " must be contiguous");
  ENGINE_DISPATCH("fill", t.device(), traffic(t), kernels::fill_cpu(t.raw_data(), t.dtype(), t.numel(), value),
                  kernels::fill_cuda(t.raw_data(), t.dtype(), t.numel(), value, compute_stream()));
}

Tensor copy_to_device(const Tensor& src, Device d) {
  check_defined("to", "src", src);
  const Tensor c = src.is_contiguous() ? src : copy_contiguous(src, src.dtype());
  if (c.device() == d) return c.same(src) ? copy_contiguous(src, src.dtype()) : c;
  Tensor out = Tensor::empty(c.shape(), c.dtype(), d);
  if (c.nbytes() == 0) return out;
#if defined(ENGINE_WITH_CUDA)
  if (capturing_cuda_graph() && d.is_cuda() && c.device().is_cpu()) {  // a constant of the captured step
    capture_host_to_device(out.raw_data(), c.raw_data(), c.nbytes());
    return out;
  }
  const cudaMemcpyKind kind =
      d.is_cuda() ? (c.device().is_cuda() ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice) : cudaMemcpyDeviceToHost;
  CUDA_CHECK(cudaMemcpyAsync(out.raw_data(), c.raw_data(), c.nbytes(), kind, compute_stream()));
  // The source of a host->device copy may be freed right after; the result of a device->host
  // copy is read by the caller right after. Either way the copy must be complete.
  CUDA_CHECK(cudaStreamSynchronize(compute_stream()));
#else
  no_kernel("to", d.is_cuda() ? d : c.device());
#endif
  return out;
}

}  // namespace engine
