#include "tests/harness/op_check.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "engine/allocator.h"
#include "engine/autograd.h"

namespace engine::testing {

bool have_cuda() { return cuda_available(); }

std::vector<Device> test_devices() {
  std::vector<Device> d = {Device::cpu()};
  if (have_cuda()) d.push_back(Device::cuda(0));
  return d;
}

void expect_same_bits(const std::vector<float>& got, const std::vector<float>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isnan(want[i])) {
      ASSERT_TRUE(std::isnan(got[i])) << what << " element " << i << ": " << got[i] << " vs NaN";
      continue;
    }
    ASSERT_EQ(got[i], want[i]) << what << " element " << i;
  }
}

double relative_l2_distance(const std::vector<float>& got, const std::vector<float>& want) {
  EXPECT_EQ(got.size(), want.size());
  double d = 0, n = 0;
  for (size_t i = 0; i < std::min(got.size(), want.size()); ++i) {
    d += ((double)got[i] - want[i]) * ((double)got[i] - want[i]);
    n += (double)want[i] * want[i];
  }
  return std::sqrt(d / n);
}

std::vector<int64_t> unravel(int64_t idx, const Shape& shape) {
  std::vector<int64_t> c(shape.size());
  for (int d = (int)shape.size() - 1; d >= 0; --d) {
    c[d] = shape[d] ? idx % shape[d] : 0;
    idx = shape[d] ? idx / shape[d] : 0;
  }
  return c;
}

int64_t ravel(const std::vector<int64_t>& coord, const Shape& shape) {
  int64_t idx = 0;
  for (size_t d = 0; d < shape.size(); ++d) idx = idx * shape[d] + coord[d];
  return idx;
}

namespace {

struct RunResult {
  std::vector<std::vector<float>> outputs;  // as floats (indices converted exactly up to 2^24)
  std::vector<std::vector<int64_t>> int_outputs;
  std::vector<bool> is_int;
  std::vector<std::vector<float>> grads;  // per input (empty if none)
};

std::vector<float> make_values(const CheckOptions& opt, int input, const Shape& shape, uint64_t seed) {
  if (opt.input_gen) return opt.input_gen(input, shape, seed);
  std::mt19937_64 rng(seed * 7919 + (uint64_t)input);
  std::uniform_real_distribution<float> d(opt.lo, opt.hi);
  std::vector<float> v((size_t)shape_numel(shape));
  for (float& x : v) x = d(rng);
  return v;
}

// A tensor holding `values` in `shape`, either contiguous or as a strided view (every other element
// of a buffer twice as wide in the last dim) so kernels see non-unit strides and an offset.
Tensor make_input(const std::vector<float>& values, const Shape& shape, Device dev, bool strided) {
  if (!strided || shape.empty()) return Tensor::from_vector(values, shape, dev);
  Shape wide = shape;
  wide.back() = wide.back() * 2 + 1;
  std::vector<float> buf((size_t)shape_numel(wide), std::nanf(""));
  const int64_t n = shape_numel(shape);
  for (int64_t i = 0; i < n; ++i) {
    auto c = unravel(i, shape);
    c.back() = c.back() * 2 + 1;
    buf[(size_t)ravel(c, wide)] = values[(size_t)i];
  }
  Tensor w = Tensor::from_vector(buf, wide, dev);
  return w.slice((int)shape.size() - 1, 1, wide.back(), 2).detach();
}

std::vector<std::vector<float>> grad_weights(const std::vector<Shape>& out_shapes, uint64_t seed) {
  std::vector<std::vector<float>> w;
  std::mt19937_64 rng(seed ^ 0x9e3779b97f4a7c15ull);
  std::uniform_real_distribution<float> d(-1.f, 1.f);
  for (const Shape& s : out_shapes) {
    std::vector<float> v((size_t)shape_numel(s));
    for (float& x : v) x = d(rng);
    w.push_back(v);
  }
  return w;
}

RunResult run_once(const EngineFn& fn, const std::vector<std::vector<float>>& values, const std::vector<Shape>& shapes,
                   const std::vector<bool>& diff, Device dev, bool strided, bool with_grad, uint64_t seed) {
  std::vector<Tensor> inputs;
  for (size_t i = 0; i < values.size(); ++i) {
    Tensor t = make_input(values[i], shapes[i], dev, strided);
    if (with_grad && diff[i]) t.set_requires_grad(true);
    inputs.push_back(t);
  }
  std::vector<Tensor> outs = fn(inputs);
  RunResult r;
  std::vector<Shape> out_shapes;
  for (const Tensor& o : outs) out_shapes.push_back(o.shape());
  for (const Tensor& o : outs) {
    EXPECT_EQ(o.device(), dev) << "output on the wrong device";
    const bool is_int = o.dtype() == DType::I64 || o.dtype() == DType::I32;
    r.is_int.push_back(is_int);
    r.outputs.push_back(is_int ? std::vector<float>() : o.to_vector());
    r.int_outputs.push_back(is_int ? o.to_vector_i64() : std::vector<int64_t>());
  }
  if (with_grad) {
    const auto w = grad_weights(out_shapes, seed);
    std::vector<size_t> diff_outs;
    for (size_t k = 0; k < outs.size(); ++k)
      if (outs[k].requires_grad()) diff_outs.push_back(k);
    for (size_t j = 0; j < diff_outs.size(); ++j) {
      const size_t k = diff_outs[j];
      outs[k].backward(Tensor::from_vector(w[k], outs[k].shape(), dev), j + 1 < diff_outs.size());
    }
    for (size_t i = 0; i < inputs.size(); ++i) {
      Tensor g = inputs[i].grad();
      r.grads.push_back(diff[i] && g.defined() ? g.to_vector() : std::vector<float>());
      if (diff[i]) {
        EXPECT_TRUE(g.defined()) << "input " << i << " got no gradient";
        if (g.defined()) {
          EXPECT_EQ(g.shape(), shapes[i]) << "gradient shape of input " << i;
        }
      }
    }
  }
  EXPECT_EQ(check_guards(), 0) << "a kernel wrote outside its buffers";
  return r;
}

bool close(double got, double want, double atol, double rtol) {
  if (std::isnan(want)) return std::isnan(got);
  if (std::isinf(want)) return got == want;
  return std::fabs(got - want) <= atol + rtol * std::fabs(want);
}

void expect_close(const std::vector<float>& got, const std::vector<double>& want, double atol, double rtol,
                  const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what << ": element count";
  int shown = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!close(got[i], want[i], atol, rtol)) {
      ADD_FAILURE() << what << ": element " << i << " is " << got[i] << ", expected " << want[i];
      if (++shown >= 5) return;
    }
  }
}

std::vector<double> to_double(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

void expect_bitwise(const RunResult& a, const RunResult& b, const std::string& what) {
  ASSERT_EQ(a.outputs.size(), b.outputs.size());
  for (size_t k = 0; k < a.outputs.size(); ++k) {
    EXPECT_TRUE(
        a.outputs[k].size() == b.outputs[k].size() &&
        (a.outputs[k].empty() || std::memcmp(a.outputs[k].data(), b.outputs[k].data(), a.outputs[k].size() * 4) == 0))
        << what << ": output " << k << " differs between two identical runs";
    EXPECT_EQ(a.int_outputs[k], b.int_outputs[k]) << what << ": integer output " << k << " differs between runs";
  }
  for (size_t i = 0; i < a.grads.size() && i < b.grads.size(); ++i)
    EXPECT_TRUE(a.grads[i].size() == b.grads[i].size() &&
                (a.grads[i].empty() || std::memcmp(a.grads[i].data(), b.grads[i].data(), a.grads[i].size() * 4) == 0))
        << what << ": gradient of input " << i << " differs between two identical runs";
}

void compare_runs(const RunResult& got, const RunResult& ref, double atol, double rtol, const std::string& what) {
  for (size_t k = 0; k < ref.outputs.size(); ++k) {
    if (ref.is_int[k]) {
      EXPECT_EQ(got.int_outputs[k], ref.int_outputs[k]) << what << ": integer output " << k;
    } else {
      expect_close(got.outputs[k], to_double(ref.outputs[k]), atol, rtol, what + ": output " + std::to_string(k));
    }
  }
  for (size_t i = 0; i < ref.grads.size(); ++i)
    expect_close(got.grads[i], to_double(ref.grads[i]), atol, rtol, what + ": gradient of input " + std::to_string(i));
}

}  // namespace

void check_op(const std::string& op, const std::vector<OpCase>& cases, const EngineFn& fn, const RefFn& ref,
              const CheckOptions& opt) {
  set_guard_mode(true);
  for (size_t c = 0; c < cases.size(); ++c) {
    const OpCase& oc = cases[c];
    const std::string where = op + " [" + oc.name + "]";
    SCOPED_TRACE(where);
    const uint64_t seed = opt.seed + c;
    std::vector<std::vector<float>> values;
    RefInputs ref_in;
    for (size_t i = 0; i < oc.shapes.size(); ++i) {
      values.push_back(make_values(opt, (int)i, oc.shapes[i], seed));
      ref_in.push_back(to_double(values.back()));
    }
    std::vector<bool> diff = opt.differentiable;
    diff.resize(oc.shapes.size(), opt.differentiable.empty());
    const bool grad = opt.check_grad;

    // 1. CPU forward vs reference.
    const auto want = ref(ref_in, oc.shapes);
    const RunResult cpu = run_once(fn, values, oc.shapes, diff, Device::cpu(), false, grad, seed);
    ASSERT_EQ(cpu.outputs.size(), want.size()) << where << ": number of outputs";
    for (size_t k = 0; k < want.size(); ++k) {
      if (cpu.is_int[k]) {
        std::vector<int64_t> w(want[k].begin(), want[k].end());
        EXPECT_EQ(cpu.int_outputs[k], w) << where << ": integer output " << k << " vs reference";
      } else {
        expect_close(cpu.outputs[k], want[k], opt.fwd_atol, opt.fwd_rtol,
                     where + ": cpu output " + std::to_string(k) + " vs reference");
      }
    }

    // 2. Backward vs central finite differences of the reference (double).
    if (grad) {
      std::vector<Shape> out_shapes;
      for (size_t k = 0; k < want.size(); ++k) {
        Shape s{(int64_t)want[k].size()};
        out_shapes.push_back(s);
      }
      const auto w = grad_weights(out_shapes, seed);  // same values as run_once (flat shapes, same sizes)
      auto loss = [&](const RefInputs& in) {
        const auto out = ref(in, oc.shapes);
        double l = 0;
        for (size_t k = 0; k < out.size(); ++k) {
          if (cpu.is_int[k]) continue;
          for (size_t j = 0; j < out[k].size(); ++j) l += out[k][j] * w[k][j];
        }
        return l;
      };
      for (size_t i = 0; i < oc.shapes.size(); ++i) {
        if (!diff[i]) continue;
        const size_t n = ref_in[i].size();
        const size_t step = std::max<size_t>(1, n / (size_t)opt.max_fd_elements);
        std::vector<double> fd;
        std::vector<float> analytic;
        for (size_t j = 0; j < n; j += step) {
          RefInputs p = ref_in, m = ref_in;
          p[i][j] += opt.fd_eps;
          m[i][j] -= opt.fd_eps;
          fd.push_back((loss(p) - loss(m)) / (2 * opt.fd_eps));
          analytic.push_back(cpu.grads[i].empty() ? NAN : cpu.grads[i][j]);
        }
        expect_close(analytic, fd, opt.grad_atol, opt.grad_rtol,
                     where + ": gradient of input " + std::to_string(i) + " vs finite differences");
      }
    }

    // 3. Determinism on the CPU, and non-contiguous inputs.
    expect_bitwise(cpu, run_once(fn, values, oc.shapes, diff, Device::cpu(), false, grad, seed), where + " cpu");
    if (opt.check_noncontiguous)
      compare_runs(run_once(fn, values, oc.shapes, diff, Device::cpu(), true, grad, seed), cpu, opt.device_atol,
                   opt.device_rtol, where + ": cpu strided inputs vs contiguous");

    // 4. The CUDA device against the CPU device.
    if (have_cuda()) {
      const RunResult gpu = run_once(fn, values, oc.shapes, diff, Device::cuda(0), false, grad, seed);
      compare_runs(gpu, cpu, opt.device_atol, opt.device_rtol, where + ": cuda vs cpu");
      expect_bitwise(gpu, run_once(fn, values, oc.shapes, diff, Device::cuda(0), false, grad, seed), where + " cuda");
      if (opt.check_noncontiguous)
        compare_runs(run_once(fn, values, oc.shapes, diff, Device::cuda(0), true, grad, seed), cpu, opt.device_atol,
                     opt.device_rtol, where + ": cuda strided inputs vs cpu");
    }
  }
  set_guard_mode(false);
}

void expect_one_line_error(const std::function<void()>& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "no error thrown";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "multi-line message: " << msg;
    for (const std::string& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  }
}

}  // namespace engine::testing
