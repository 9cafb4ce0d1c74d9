// seg_area_counts: checks, dispatch, and the invalid-value error (semantics in engine/ops/metrics.h).
#include "engine/ops/metrics.h"

#include <limits>

#include "engine/autograd.h"
#include "engine/ops/copy.h"
#include "engine/ops/op_utils.h"
#include "kernels/cpu/metrics_cpu.h"
#if defined(ENGINE_WITH_CUDA)
#include "kernels/cuda/metrics_cuda.h"
#endif

namespace engine {

SegAreas seg_area_counts(const Tensor& pred, const Tensor& label, int64_t num_classes, int64_t ignore_index) {
  const char* op = "seg_area_counts";
  check_defined(op, "pred", pred);
  check_defined(op, "label", label);
  ENGINE_CHECK(pred.dtype() == DType::I64, op, ": pred must be i64, got ", pred.describe());
  ENGINE_CHECK(label.dtype() == DType::I64, op, ": label must be i64, got ", label.describe());
  check_same_device(op, pred, "pred", label, "label");
  ENGINE_CHECK(pred.shape() == label.shape(), op, ": pred ", pred.describe(), " and label ", label.describe(),
               " must have the same shape");
  ENGINE_CHECK(num_classes > 0 && num_classes <= 4096, op, ": num_classes must be in [1, 4096], got ", num_classes);
  NoGradGuard ng;
  const Tensor pc = pred.is_contiguous() ? pred.detach() : copy_contiguous(pred, DType::I64);
  const Tensor lc = label.is_contiguous() ? label.detach() : copy_contiguous(label, DType::I64);
  const int64_t n = pred.numel(), C = num_classes;
  const Device dev = pred.device();
  Tensor counts;
  int64_t nbad = 0, first = -1;
  auto on_cpu = [&] {
    counts = Tensor::empty({3 * C}, DType::I64, dev);
    int64_t bad[2];
    kernels::seg_area_counts_cpu(pc.data<int64_t>(), lc.data<int64_t>(), n, C, ignore_index, counts.data<int64_t>(),
                                 bad);
    nbad = bad[0];
    first = bad[1];
  };
#if defined(ENGINE_WITH_CUDA)
  auto on_cuda = [&] {
    counts = Tensor::from_vector_i64(std::vector<int64_t>((size_t)(3 * C), 0), {3 * C}, dev);
    Tensor bad = Tensor::from_vector_i64({0, std::numeric_limits<int64_t>::max()}, {2}, dev);
    if (n > 0)
      kernels::seg_area_counts_cuda(pc.data<int64_t>(), lc.data<int64_t>(), n, C, ignore_index, counts.data<int64_t>(),
                                    bad.data<int64_t>(), compute_stream());
    const auto b = bad.to_vector_i64();
    nbad = b[0];
    first = b[1];
  };
#endif
  ENGINE_DISPATCH(op, dev, traffic(pc, lc), on_cpu(), on_cuda());
  if (nbad) {
    const int64_t pv = pc.reshape({n}).slice(0, first, first + 1).to_vector_i64()[0];
    const int64_t lv = lc.reshape({n}).slice(0, first, first + 1).to_vector_i64()[0];
    std::vector<int64_t> pos(pred.dim());
    int64_t r = first;
    for (int d = pred.dim() - 1; d >= 0; --d) {
      pos[d] = r % pred.shape()[d];
      r /= pred.shape()[d];
    }
    fail(op, ": ", nbad, " pixel(s) of pred ", pred.describe(), " / label ", label.describe(),
         " hold a label outside [0, ", C, ") other than ignore_index ", ignore_index, " or a prediction outside [0, ",
         C, "); the first at position ", shape_str(pos), " has pred ", pv, ", label ", lv);
  }
  return {counts.narrow(0, 0, C), counts.narrow(0, C, C), counts.narrow(0, 2 * C, C)};
}

}  // namespace engine
