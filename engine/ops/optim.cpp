// sgd_momentum_update and unscale_grads_check_finite: checks, the multi-tensor tables, dispatch
// (semantics in engine/ops/optim.h).
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
  int64_t chunks = 0, total = 0;
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
    total += r.n;
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
  // Per element: p, g and v read, p and v written.
  ENGINE_DISPATCH(op, dev, traffic_bytes(5.0 * sizeof(float) * (double)total), on_cpu(), on_cuda());
}

bool unscale_grads_check_finite(const std::vector<Tensor>& grads, float inv_scale) {
  const char* op = "unscale_grads_check_finite";
  ENGINE_CHECK(std::isfinite(inv_scale) && inv_scale > 0, op, ": inv_scale must be finite and positive, got ",
               inv_scale);
  NoGradGuard ng;
  std::vector<kernels::ScaleTensor> rows;
  Device dev = Device::cpu();
  bool have_dev = false;
  int64_t chunks = 0, total = 0;
  for (size_t i = 0; i < grads.size(); ++i) {
    const Tensor& g = grads[i];
    if (!g.defined()) continue;
    const std::string name = "grads[" + std::to_string(i) + "]";
    check_f32(op, name.c_str(), g);
    if (!have_dev) dev = g.device(), have_dev = true;
    ENGINE_CHECK(g.device() == dev, op, ": ", name, " ", g.describe(), " is not on ", dev.str(),
                 " like the first gradient");
    ENGINE_CHECK(g.is_contiguous(), op, ": ", name, " ", g.describe(), " must be contiguous (scaled in place)");
    if (g.numel() == 0) continue;
    kernels::ScaleTensor r{};
    r.x = g.data<float>();
    r.n = g.numel();
    r.chunk_begin = chunks;
    r.vec4 = (reinterpret_cast<uintptr_t>(r.x) & 15u) == 0;
    rows.push_back(r);
    total += r.n;
#if defined(ENGINE_WITH_CUDA)
    chunks += (r.n + kernels::kSgdChunk - 1) / kernels::kSgdChunk;
#endif
  }
  if (rows.empty()) return false;
  int found = 0;
  auto on_cpu = [&] { found = kernels::unscale_check_finite_cpu(rows.data(), (int64_t)rows.size(), inv_scale); };
#if defined(ENGINE_WITH_CUDA)
  auto on_cuda = [&] {
    ENGINE_CHECK(rows.size() < (size_t)1 << 31, op, ": too many tensors");
    const size_t bytes = rows.size() * sizeof(kernels::ScaleTensor);
    Tensor host = Tensor::empty({(int64_t)bytes}, DType::U8, Device::cpu());
    std::memcpy(host.raw_data(), rows.data(), bytes);
    const Tensor table = host.to(dev);
    Tensor flag = Tensor::zeros({1}, DType::I32, dev);
    kernels::unscale_check_finite_cuda(reinterpret_cast<const kernels::ScaleTensor*>(table.raw_data()),
                                       (int64_t)rows.size(), chunks, inv_scale, flag.data<int32_t>(), compute_stream());
    found = flag.to(Device::cpu()).data<int32_t>()[0];
  };
#endif
  // Per element: read and written back scaled.
  ENGINE_DISPATCH(op, dev, traffic_bytes(2.0 * sizeof(float) * (double)total), on_cpu(), on_cuda());
  return found != 0;
}

}  // namespace engine
