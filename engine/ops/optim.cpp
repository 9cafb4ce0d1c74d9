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
namespace {

// A one-element operand read when the kernel runs: its address, or null when it is undefined.
template <class T>
const T* at_run_ptr(const char* op, const char* name, const Tensor& t, DType dtype, const Device& dev) {
  if (!t.defined()) return nullptr;
  ENGINE_CHECK(t.dtype() == dtype && t.numel() == 1 && t.device() == dev, op, ": ", name, " ", t.describe(),
               " must be one ", dtype_name(dtype), " element on ", dev.str());
  return static_cast<const T*>(t.raw_data());
}

// A gradient the kernels read: f32, bf16 or f16.
void check_grad_type(const char* op, const std::string& name, const Tensor& g) {
  ENGINE_CHECK(is_float_storage(g.dtype()), op, ": ", name, " ", g.describe(), " must be f32, bf16 or f16");
}

// 4-element accesses of the CUDA kernels: 16 bytes of f32, 8 bytes of a 16-bit type.
bool vec4_aligned(const void* q, DType t) {
  return (reinterpret_cast<uintptr_t>(q) & (t == DType::F32 ? 15u : 7u)) == 0;
}

}  // namespace

void sgd_momentum_update(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                         const std::vector<Tensor>& velocities, float lr, float momentum, float weight_decay,
                         const UpdateAtRun& at_run) {
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
  double grad_bytes = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    const Tensor &p = params[i], &g = grads[i], &v = velocities[i];
    const std::string idx = "[" + std::to_string(i) + "]";
    check_f32(op, ("params" + idx).c_str(), p);
    if (!g.defined()) continue;  // no gradient: not updated (Paddle semantics)
    check_grad_type(op, "grads" + idx, g);
    check_f32(op, ("velocities" + idx).c_str(), v);
    ENGINE_CHECK(p.device() == dev && g.device() == dev && v.device() == dev, op, ": params", idx, " ", p.describe(),
                 ", grads", idx, " ", g.describe(), " and velocities", idx, " ", v.describe(), " must all be on ",
                 dev.str());
    ENGINE_CHECK(g.shape() == p.shape() && v.shape() == p.shape(), op, ": params", idx, " ", p.describe(), ", grads",
                 idx, " ", g.describe(), " and velocities", idx, " ", v.describe(), " must have the same shape");
    ENGINE_CHECK(p.is_contiguous() && v.is_contiguous(), op, ": params", idx, " ", p.describe(), " and velocities", idx,
                 " must be contiguous (they are updated in place)");
    if (p.numel() == 0) continue;
    const Tensor gc = g.is_contiguous() ? g.detach() : copy_contiguous(g.detach(), g.dtype());
    keep.push_back(gc);
    kernels::SgdTensor r{};
    r.p = p.data<float>();
    r.g = gc.raw_data();
    r.v = v.data<float>();
    r.n = p.numel();
    r.chunk_begin = chunks;
    r.vec4 = vec4_aligned(r.p, DType::F32) && vec4_aligned(r.g, gc.dtype()) && vec4_aligned(r.v, DType::F32);
    r.g_type = (int32_t)gc.dtype();
    rows.push_back(r);
    total += r.n;
    grad_bytes += (double)gc.nbytes();
#if defined(ENGINE_WITH_CUDA)
    chunks += (r.n + kernels::kSgdChunk - 1) / kernels::kSgdChunk;
#endif
  }
  if (rows.empty()) return;
  const kernels::UpdateGate gate{at_run_ptr<float>(op, "at_run.lr", at_run.lr, DType::F32, dev),
                                 at_run_ptr<float>(op, "at_run.loss", at_run.loss, DType::F32, dev),
                                 at_run_ptr<int32_t>(op, "at_run.found_inf", at_run.found_inf, DType::I32, dev)};
  auto on_cpu = [&] {
    kernels::sgd_momentum_fwd_cpu(rows.data(), (int64_t)rows.size(), lr, momentum, weight_decay, gate);
  };
#if defined(ENGINE_WITH_CUDA)
  auto on_cuda = [&] {
    ENGINE_CHECK(rows.size() < (size_t)1 << 31, op, ": too many tensors");
    // The table travels in one host-to-device copy into a small device buffer.
    const size_t bytes = rows.size() * sizeof(kernels::SgdTensor);
    Tensor host = Tensor::empty({(int64_t)bytes}, DType::U8, Device::cpu());
    std::memcpy(host.raw_data(), rows.data(), bytes);
    const Tensor table = host.to(dev);
    kernels::sgd_momentum_fwd_cuda(reinterpret_cast<const kernels::SgdTensor*>(table.raw_data()), (int64_t)rows.size(),
                                   chunks, lr, momentum, weight_decay, gate, compute_stream());
  };
#endif
  // Per element: p, g and v read, p and v written.
  ENGINE_DISPATCH(op, dev, traffic_bytes(4.0 * sizeof(float) * (double)total + grad_bytes), on_cpu(), on_cuda());
}

namespace {

// Both forms of the unscale: the factor given (inv_scale) or read when the kernel runs (inv_dev); the
// flag is left in a one-element i32 tensor on `flag_dev` (the gradients' device). `into` empty: the
// gradients (f32) are scaled in place; else into[i] (f32) = grads[i] (f32, bf16 or f16) * factor.
Tensor unscale_into_flag(const std::vector<Tensor>& grads, float inv_scale, const Tensor& inv_dev, Device flag_dev,
                         const std::vector<Tensor>& into) {
  const char* op = "unscale_grads_check_finite";
  NoGradGuard ng;
  ENGINE_CHECK(into.empty() || into.size() == grads.size(), op, ": got ", grads.size(), " grads and ", into.size(),
               " destinations (into); the counts must match");
  std::vector<kernels::ScaleTensor> rows;
  Device dev = flag_dev;
  int64_t chunks = 0;
  double bytes_moved = 0;
  for (size_t i = 0; i < grads.size(); ++i) {
    const Tensor& g = grads[i];
    if (!g.defined()) continue;
    const std::string name = "grads[" + std::to_string(i) + "]";
    ENGINE_CHECK(g.device() == dev, op, ": ", name, " ", g.describe(), " is not on ", dev.str(),
                 inv_dev.defined() ? " like inv_scale" : " like the first gradient");
    Tensor dst = g;
    if (into.empty()) {
      check_f32(op, name.c_str(), g);
      ENGINE_CHECK(g.is_contiguous(), op, ": ", name, " ", g.describe(), " must be contiguous (scaled in place)");
    } else {
      check_grad_type(op, name, g);
      dst = into[i];
      const std::string dname = "into[" + std::to_string(i) + "]";
      ENGINE_CHECK(dst.defined(), op, ": ", dname, " is undefined while ", name, " is ", g.describe());
      check_f32(op, dname.c_str(), dst);
      ENGINE_CHECK(dst.device() == dev && dst.shape() == g.shape() && dst.is_contiguous() && g.is_contiguous(), op,
                   ": ", name, " ", g.describe(), " and ", dname, " ", dst.describe(),
                   " must be contiguous, of one shape, on ", dev.str());
      ENGINE_CHECK(dst.storage() != g.storage() || (dst.raw_data() == g.raw_data() && g.dtype() == DType::F32), op,
                   ": ", dname, " ", dst.describe(), " overlaps ", name,
                   " (only an f32 gradient itself may be its destination)");
    }
    if (g.numel() == 0) continue;
    kernels::ScaleTensor r{};
    r.src = g.raw_data();
    r.dst = dst.data<float>();
    r.n = g.numel();
    r.chunk_begin = chunks;
    r.vec4 = vec4_aligned(r.src, g.dtype()) && vec4_aligned(r.dst, DType::F32);
    r.src_type = (int32_t)g.dtype();
    rows.push_back(r);
    bytes_moved += (double)g.nbytes() + (double)dst.nbytes();
#if defined(ENGINE_WITH_CUDA)
    chunks += (r.n + kernels::kSgdChunk - 1) / kernels::kSgdChunk;
#endif
  }
  Tensor flag = Tensor::zeros({1}, DType::I32, dev);
  if (rows.empty()) return flag;
  const float* inv_at_run = at_run_ptr<float>(op, "inv_scale", inv_dev, DType::F32, dev);
  auto on_cpu = [&] {
    flag.data<int32_t>()[0] =
        kernels::unscale_check_finite_cpu(rows.data(), (int64_t)rows.size(), inv_scale, inv_at_run);
  };
#if defined(ENGINE_WITH_CUDA)
  auto on_cuda = [&] {
    ENGINE_CHECK(rows.size() < (size_t)1 << 31, op, ": too many tensors");
    const size_t bytes = rows.size() * sizeof(kernels::ScaleTensor);
    Tensor host = Tensor::empty({(int64_t)bytes}, DType::U8, Device::cpu());
    std::memcpy(host.raw_data(), rows.data(), bytes);
    const Tensor table = host.to(dev);
    kernels::unscale_check_finite_cuda(reinterpret_cast<const kernels::ScaleTensor*>(table.raw_data()),
                                       (int64_t)rows.size(), chunks, inv_scale, inv_at_run, flag.data<int32_t>(),
                                       compute_stream());
  };
#endif
  // Per element: read, and written scaled (in place or into f32).
  ENGINE_DISPATCH(op, dev, traffic_bytes(bytes_moved), on_cpu(), on_cuda());
  return flag;
}

}  // namespace

bool unscale_grads_check_finite(const std::vector<Tensor>& grads, float inv_scale, const std::vector<Tensor>& into) {
  ENGINE_CHECK(std::isfinite(inv_scale) && inv_scale > 0,
               "unscale_grads_check_finite: inv_scale must be finite and positive, got ", inv_scale);
  Device dev = Device::cpu();
  for (const Tensor& g : grads)
    if (g.defined()) {
      dev = g.device();
      break;
    }
  return unscale_into_flag(grads, inv_scale, Tensor(), dev, into).to_vector_i64()[0] != 0;
}

Tensor unscale_grads_check_finite(const std::vector<Tensor>& grads, const Tensor& inv_scale,
                                  const std::vector<Tensor>& into) {
  ENGINE_CHECK(inv_scale.defined(), "unscale_grads_check_finite: inv_scale is undefined");
  return unscale_into_flag(grads, 0.f, inv_scale, inv_scale.device(), into);
}

}  // namespace engine
