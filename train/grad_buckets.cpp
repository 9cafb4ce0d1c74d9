#include "train/grad_buckets.h"

#include "base/error.h"
#include "engine/ops/copy.h"
#include "engine/ops/optim.h"
#include "engine/precision.h"

namespace engine::train {

struct GradBuckets::State {
  Communicator* comm = nullptr;
  std::vector<Tensor> params;
  std::vector<Tensor> buffers;            // one per bucket (f32: backward accumulates into them)
  std::vector<Tensor> wire;               // 16-bit wire: one per bucket, what is all-reduced
  std::vector<size_t> bucket_of;          // parameter -> bucket
  std::vector<int64_t> offset_in_bucket;  // parameter -> element offset in its bucket
  std::vector<int> params_in_bucket;
  std::vector<int> waiting;                                 // per bucket: parameters whose gradient is not complete yet
  std::vector<bool> ready;                                  // per parameter: gradient complete this step
  std::vector<std::unique_ptr<PendingCollective>> pending;  // per bucket, once started
  size_t next_to_start = 0;
  size_t started_in_backward = 0;
  bool in_step = false;

  void start_ready_buckets() {
    while (next_to_start < buffers.size() && waiting[next_to_start] == 0) {
      const size_t b = next_to_start;
      if (!wire.empty()) copy_into(wire[b], buffers[b]);  // rounded once to the wire's type
      pending[b] = comm->start_all_reduce(wire.empty() ? buffers[b] : wire[b], ReduceOp::Mean,
                                          "gradient bucket " + std::to_string(b));
      ++next_to_start;
    }
  }

  void on_grad_ready(size_t i) {
    if (!in_step || ready[i]) return;
    ready[i] = true;
    const size_t b = bucket_of[i];
    if (--waiting[b] == 0) {
      start_ready_buckets();
      started_in_backward = next_to_start;
    }
  }
};

std::optional<DType> parse_allreduce_dtype(const std::string& s, const std::string& what) {
  if (s == "auto") return std::nullopt;
  if (s == "fp32") return DType::F32;
  if (s == "bf16") return DType::BF16;
  if (s == "fp16") return DType::F16;
  fail(what, ": expected auto, fp32, bf16 or fp16, got '", s, "'");
}

std::string allreduce_dtype_name(DType wire) {
  switch (wire) {
    case DType::F32:
      return "fp32";
    case DType::BF16:
      return "bf16";
    case DType::F16:
      return "fp16";
    default:
      fail("--allreduce_dtype: no wire type ", dtype_name(wire));
  }
}

DType allreduce_dtype(std::optional<DType> requested, Device device) {
  if (requested) return *requested;
  return device.is_cuda() ? activation_dtype() : DType::F32;
}

GradBuckets::GradBuckets(const std::vector<Tensor>& params, Communicator& comm, int64_t bucket_bytes, DType wire)
    : state_(std::make_shared<State>()) {
  ENGINE_CHECK(bucket_bytes > 0, "gradient buckets: bucket_bytes must be positive, got ", bucket_bytes);
  ENGINE_CHECK(is_float_storage(wire), "gradient buckets: the wire type must be f32, bf16 or f16, got ",
               dtype_name(wire));
  State& s = *state_;
  s.comm = &comm;
  s.params = params;
  const size_t n = params.size();
  s.bucket_of.assign(n, 0);
  s.offset_in_bucket.assign(n, 0);
  s.ready.assign(n, false);
  ENGINE_CHECK(n > 0, "gradient buckets: no parameters");
  const Device dev = params[0].device();
  const int64_t cap = std::max<int64_t>(1, bucket_bytes / (int64_t)sizeof(float));
  std::vector<int64_t> sizes;
  int64_t fill = 0;
  for (size_t k = 0; k < n; ++k) {
    const size_t i = n - 1 - k;  // reverse order: the order backward completes them
    const Tensor& p = params[i];
    ENGINE_CHECK(p.dtype() == DType::F32 && p.device() == dev && p.requires_grad(), "gradient buckets: parameter ", i,
                 " is ", p.describe(), "; expected f32 on ", dev.str(), " that requires grad");
    if (sizes.empty() || (fill > 0 && fill + p.numel() > cap)) {  // a parameter larger than a bucket gets its own
      sizes.push_back(0);
      fill = 0;
    }
    s.bucket_of[i] = sizes.size() - 1;
    s.offset_in_bucket[i] = fill;
    fill += p.numel();
    sizes.back() = fill;
  }
  for (int64_t sz : sizes) s.buffers.push_back(Tensor::zeros({sz}, DType::F32, dev));
  if (wire != DType::F32)
    for (int64_t sz : sizes) s.wire.push_back(Tensor::zeros({sz}, wire, dev));
  s.params_in_bucket.assign(sizes.size(), 0);
  for (size_t i = 0; i < n; ++i) s.params_in_bucket[s.bucket_of[i]]++;
  s.waiting = s.params_in_bucket;
  s.pending.resize(sizes.size());
  const std::weak_ptr<State> weak = state_;
  for (size_t i = 0; i < n; ++i) {
    Tensor p = params[i];
    p.register_grad_ready_hook([weak, i](const Tensor&) {
      if (auto st = weak.lock()) st->on_grad_ready(i);
    });
  }
}

GradBuckets::~GradBuckets() {
  if (!state_) return;
  for (auto& p : state_->pending)
    if (p) p->wait();
  for (Tensor& p : state_->params) p.zero_grad();  // the views would keep the buffers alive
}

void GradBuckets::begin_step() {
  State& s = *state_;
  for (auto& p : s.pending)
    if (p) p->wait();  // a bucket still in flight must not be zeroed under the communicator
  for (auto& p : s.pending) p.reset();
  for (Tensor& b : s.buffers) fill_(b, 0.f);
  for (size_t i = 0; i < s.params.size(); ++i) {
    const Tensor& p = s.params[i];
    const Tensor& buf = s.buffers[s.bucket_of[i]];
    s.params[i].set_grad(
        make_view(buf, p.shape(), contiguous_strides(p.shape()), buf.offset() + s.offset_in_bucket[i]));
  }
  s.waiting = s.params_in_bucket;
  std::fill(s.ready.begin(), s.ready.end(), false);
  s.next_to_start = 0;
  s.started_in_backward = 0;
  s.in_step = true;
}

void GradBuckets::finish_step() {
  State& s = *state_;
  ENGINE_CHECK(s.in_step, "gradient buckets: finish_step without begin_step");
  s.in_step = false;
  // Buckets with parameters that got no gradient: started now, in order, zeros included.
  for (size_t b = s.next_to_start; b < s.buffers.size(); ++b) s.waiting[b] = 0;
  s.start_ready_buckets();
  for (auto& p : s.pending)
    if (p) p->wait();
}

bool GradBuckets::has_grad(size_t i) const { return state_->ready.at(i); }

Tensor GradBuckets::reduced_grad(size_t i) const {
  const State& s = *state_;
  const Tensor& p = s.params.at(i);
  if (s.wire.empty()) return p.grad();
  const Tensor& w = s.wire[s.bucket_of[i]];
  return make_view(w, p.shape(), contiguous_strides(p.shape()), w.offset() + s.offset_in_bucket[i]);
}

std::vector<Tensor> GradBuckets::grads_for_update() const {
  std::vector<Tensor> grads;
  for (size_t i = 0; i < state_->params.size(); ++i) grads.push_back(has_grad(i) ? reduced_grad(i) : Tensor());
  return grads;
}

namespace {
// The f32 buffers a 16-bit wire's reduced gradients are unscaled into; empty with an f32 wire (in place).
std::vector<Tensor> unscale_targets(const std::vector<Tensor>& params, bool wire_16bit,
                                    const std::vector<Tensor>& grads) {
  std::vector<Tensor> into;
  if (!wire_16bit) return into;
  for (size_t i = 0; i < grads.size(); ++i) into.push_back(grads[i].defined() ? params.at(i).grad() : Tensor());
  return into;
}
}  // namespace

bool GradBuckets::unscale(const GradScaler& scaler, std::vector<Tensor>& grads) const {
  const State& s = *state_;
  std::vector<Tensor> into = unscale_targets(s.params, !s.wire.empty(), grads);
  const bool found = scaler.unscale(grads, into);
  if (!into.empty()) grads = std::move(into);
  return found;
}

Tensor GradBuckets::unscale(const Tensor& inv_scale, std::vector<Tensor>& grads) const {
  const State& s = *state_;
  std::vector<Tensor> into = unscale_targets(s.params, !s.wire.empty(), grads);
  Tensor found = unscale_grads_check_finite(grads, inv_scale, into);
  if (!into.empty()) grads = std::move(into);
  return found;
}

DType GradBuckets::wire_dtype() const { return state_->wire.empty() ? DType::F32 : state_->wire[0].dtype(); }
size_t GradBuckets::num_buckets() const { return state_->buffers.size(); }
int64_t GradBuckets::bucket_numel(size_t b) const { return state_->buffers.at(b).numel(); }
size_t GradBuckets::bucket_of(size_t i) const { return state_->bucket_of.at(i); }
size_t GradBuckets::started_during_backward() const { return state_->started_in_backward; }

}  // namespace engine::train
