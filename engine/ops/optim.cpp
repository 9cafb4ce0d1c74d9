// sgd_momentum_update: checks, the multi-tensor table, dispatch (semantics in engine/ops/optim.h).
#include "engine/ops/optim.h"

#include <cmath>
#include <cstring>

#include "engine/autograd.h"
#include "engine/ops/copy.h"
#include "engine/ops/op_utils.h"
#include "kernels/cpu/optim_cpu.h"
#if defined(ENGINE_WITH_CUDA)
#include "kernels/cuda/optim_cuda.h"
#endif

namespace engine {

void sgd_momentum_update(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                         const std::vector<Tensor>& velocities, float lr, float momentum, float weight_decay) {
  const char* op = "sgd_momentum_update";
  ENGINE_CHECK(params.size() == grads.size() && params.size() == velocities.size(), op, ": got ", params.size(),
               " params, ", grads.size(), " grads and ", velocities.size(), " velocities; the counts must match");
  ENGINE_CHECK(std::isfinite(lr) && std::isfinite(momentum) && std::isfinite(weight_decay), op,
               ": lr, momentum and weight_decay must be finite, got ", lr, ", ", momentum, ", ", weight_decay);
  if (params.empty()) return;
  NoGradGuard ng;
  std::vector<kernels::SgdTensor> rows;
  std::vector<Tensor> keep;  // contiguous copies of strided grads, alive until the update ran
  Device dev = params[0].device();
  int64_t chunks = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    const Tensor &p = params[i], &g = grads[i], &v = velocities[i];
    const std::string idx = "[" + std::to_string(i) + "]";
    check_f32(op, ("params" + idx).c_str(), p);
    if (!g.defined()) continue;  // no gradient: not updated (Paddle semantics)
    check_f32(op, ("grads" + idx).c_str(), g);
    check_f32(op, ("velocities" + idx).c_str(), v);
    ENGINE_CHECK(p.device() == dev && g.device() == dev && v.device() == dev, op, ": params", idx, " ", p.describe(),
                 ", grads", idx, " ", g.describe(), " and velocities", idx, " ", v.describe(), " must all be on ",
                 dev.str());
    ENGINE_CHECK(g.shape() == p.shape() && v.shape() == p.shape(), op, ": params", idx, " ", p.describe(), ", grads",
                 idx, " ", g.describe(), " and velocities", idx, " ", v.describe(), " must have the same shape");
    ENGINE_CHECK(p.is_contiguous() && v.is_contiguous(), op, ": params", idx, " ", p.describe(), " and velocities", idx,
                 " must be contiguous (they are updated in place)");
    if (p.numel() == 0) continue;
    const Tensor gc = g.is_contiguous() ? g.detach() : copy_contiguous(g.detach(), DType::F32);
    keep.push_back(gc);
    kernels::SgdTensor r{};
    r.p = p.data<float>();
    r.g = gc.data<float>();
    r.v = v.data<float>();
    r.n = p.numel();
    r.chunk_begin = chunks;
    auto al = [](const void* q) { return (reinterpret_cast<uintptr_t>(q) & 15u) == 0; };
    r.vec4 = al(r.p) && al(r.g) && al(r.v);
    rows.push_back(r);
#if defined(ENGINE_WITH_CUDA)
    chunks += (r.n + kernels::kSgdChunk - 1) / kernels::kSgdChunk;
#endif
  }
  if (rows.empty()) return;
  auto on_cpu = [&] { kernels::sgd_momentum_fwd_cpu(rows.data(), (int64_t)rows.size(), lr, momentum, weight_decay); };
#if defined(ENGINE_WITH_CUDA)
  auto on_cuda = [&] {
    ENGINE_CHECK(rows.size() < (size_t)1 << 31, op, ": too many tensors");
    // The table travels in one host-to-device copy into a small device buffer.
    const size_t bytes = rows.size() * sizeof(kernels::SgdTensor);
    Tensor host = Tensor::empty({(int64_t)bytes}, DType::U8, Device::cpu());
    std::memcpy(host.raw_data(), rows.data(), bytes);
    const Tensor table = host.to(dev);
    kernels::sgd_momentum_fwd_cuda(reinterpret_cast<const kernels::SgdTensor*>(table.raw_data()), (int64_t)rows.size(),
                                   chunks, lr, momentum, weight_decay, compute_stream());
  };
#endif
  ENGINE_DISPATCH(op, dev, on_cpu(), on_cuda());
}

}  // namespace engine
