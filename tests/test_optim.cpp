// labels: kernel
// sgd_momentum_update: three steps over several tensors of odd sizes (crossing the CPU and CUDA
// chunk sizes, a misaligned view for the scalar CUDA path, a strided gradient, a parameter without
// gradient) against a hand computation in double, CPU vs CUDA, and bad inputs; the operands read when
// the update runs (learning rate, loss, scaler flag: UpdateAtRun); bf16 and f16 gradients read by
// the update; the loss scaler's unscale in both forms, in place and from 16-bit gradients into f32.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "engine/ops/copy.h"
#include "engine/ops/optim.h"
#include "tests/harness/op_check.h"

using namespace engine;
using namespace engine::testing;

namespace {
bool same_bits(const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype() || a.shape() != b.shape()) return false;
  const Tensor ha = a.to(Device::cpu()).contiguous(), hb = b.to(Device::cpu()).contiguous();
  return std::memcmp(ha.raw_data(), hb.raw_data(), ha.nbytes()) == 0;
}

std::vector<Device> devices() {
  std::vector<Device> d = {Device::cpu()};
  if (have_cuda()) d.push_back(Device::cuda(0));
  return d;
}
}  // namespace

TEST(Sgd, ThreeStepsAgainstHandComputation) {
  const std::vector<int64_t> sizes = {1, 3, 1027, 8197, 40001};
  const float lr = 0.01f, mu = 0.9f, wd = 5e-4f;
  std::vector<std::vector<float>> results;
  for (Device d : devices()) {
    std::vector<Tensor> params, grads, vels;
    std::vector<std::vector<double>> p_ref, v_ref;
    std::vector<std::vector<std::vector<float>>> g_steps;  // [step][tensor]
    for (size_t i = 0; i < sizes.size(); ++i) {
      Tensor p = Tensor::uniform({sizes[i]}, 10 + i, -1.f, 1.f, d);
      if (i == 2) {  // a contiguous view at a 4-byte offset: not 16-byte aligned
        Tensor big = Tensor::uniform({sizes[i] + 1}, 10 + i, -1.f, 1.f, d);
        p = big.slice(0, 1, sizes[i] + 1);
      }
      params.push_back(p);
      vels.push_back(Tensor::zeros({sizes[i]}, DType::F32, d));
      const auto pv = p.to_vector();
      p_ref.push_back(std::vector<double>(pv.begin(), pv.end()));
      v_ref.push_back(std::vector<double>(pv.size(), 0.0));
    }
    // A parameter without a gradient is left alone.
    Tensor frozen = Tensor::full({5}, 2.f, DType::F32, d), frozen_v = Tensor::zeros({5}, DType::F32, d);
    for (int step = 0; step < 3; ++step) {
      grads.clear();
      for (size_t i = 0; i < sizes.size(); ++i) {
        Tensor g = Tensor::uniform({sizes[i]}, 100 * step + i, -1.f, 1.f, d);
        if (i == 1) {  // strided gradient
          Tensor wide = Tensor::uniform({sizes[i] * 2}, 100 * step + i, -1.f, 1.f, d);
          g = wide.slice(0, 0, sizes[i] * 2, 2);
        }
        grads.push_back(g);
        const auto gv = g.to_vector();
        for (size_t j = 0; j < gv.size(); ++j) {
          const double gg = gv[j] + (double)wd * p_ref[i][j];
          v_ref[i][j] = (double)mu * v_ref[i][j] + gg;
          p_ref[i][j] -= (double)lr * v_ref[i][j];
        }
      }
      std::vector<Tensor> P = params, G = grads, V = vels;
      P.push_back(frozen);
      G.push_back(Tensor());
      V.push_back(frozen_v);
      sgd_momentum_update(P, G, V, lr, mu, wd);
    }
    std::vector<float> all;
    for (size_t i = 0; i < sizes.size(); ++i) {
      const auto pv = params[i].to_vector(), vv = vels[i].to_vector();
      for (size_t j = 0; j < pv.size(); ++j) {
        ASSERT_NEAR(pv[j], p_ref[i][j], 2e-6) << d.str() << " tensor " << i << " element " << j;
        ASSERT_NEAR(vv[j], v_ref[i][j], 2e-6) << d.str() << " tensor " << i << " element " << j;
      }
      all.insert(all.end(), pv.begin(), pv.end());
      all.insert(all.end(), vv.begin(), vv.end());
    }
    for (float f : frozen.to_vector()) EXPECT_EQ(f, 2.f);
    for (float f : frozen_v.to_vector()) EXPECT_EQ(f, 0.f);
    results.push_back(all);
  }
  // The same fmaf sequence on both devices: bit-identical results.
  if (results.size() == 2) {
    EXPECT_TRUE(results[0] == results[1]) << "cpu and cuda results differ";
  }
}

TEST(Sgd, BadInputs) {
  for (Device d : devices()) {
    Tensor p = Tensor::zeros({4}, DType::F32, d), g = Tensor::zeros({4}, DType::F32, d),
           v = Tensor::zeros({4}, DType::F32, d);
    EXPECT_THROW(sgd_momentum_update({p}, {g, g}, {v}, 0.1f, 0.9f, 0.f), Error);
    EXPECT_THROW(sgd_momentum_update({p}, {Tensor::zeros({5}, DType::F32, d)}, {v}, 0.1f, 0.9f, 0.f), Error);
    EXPECT_THROW(sgd_momentum_update({p}, {g}, {v.to(DType::F16)}, 0.1f, 0.9f, 0.f), Error);
    EXPECT_THROW(sgd_momentum_update({p}, {g}, {v}, NAN, 0.9f, 0.f), Error);
    Tensor wide = Tensor::zeros({8}, DType::F32, d);
    EXPECT_THROW(sgd_momentum_update({wide.slice(0, 0, 8, 2)}, {g}, {v}, 0.1f, 0.9f, 0.f), Error);  // strided param
    sgd_momentum_update({}, {}, {}, 0.1f, 0.9f, 0.f);                                               // nothing to do
  }
  if (have_cuda()) {
    Tensor p = Tensor::zeros({4}, DType::F32, Device::cpu());
    EXPECT_THROW(
        sgd_momentum_update({p}, {Tensor::zeros({4}, DType::F32, Device::cuda(0))}, {p.clone()}, 0.1f, 0.9f, 0.f),
        Error);
  }
}

// The operands an update reads when it runs (UpdateAtRun, what a CUDA graph of the whole step uses):
// the learning rate from a tensor replaces the argument, bit for bit; a loss of nan, +inf or -inf and a
// nonzero scaler flag each leave weights and momentum untouched; a finite loss and a zero flag update.
// 16-bit gradients (data-parallel O2's reduced ones) are widened as the update reads them: the same
// weights and momentum, bit for bit, as the update given their f32 widening. Sizes cross the chunks;
// a view at an odd element offset takes the CUDA kernel's scalar path, a strided one is copied.
TEST(Sgd, ReadsBf16AndF16Gradients) {
  const std::vector<int64_t> sizes = {1, 3, 1027, 8197, 40001};
  for (Device d : devices()) {
    for (DType t : {DType::BF16, DType::F16}) {
      SCOPED_TRACE(d.str() + " " + dtype_name(t));
      std::vector<Tensor> p16, v16, p32, v32, g16, g32;
      for (size_t i = 0; i < sizes.size(); ++i) {
        const Tensor p = Tensor::uniform({sizes[i]}, 60 + i, -1.f, 1.f, d);
        p16.push_back(p.clone()), p32.push_back(p.clone());
        const Tensor v = Tensor::uniform({sizes[i]}, 70 + i, -0.1f, 0.1f, d);
        v16.push_back(v.clone()), v32.push_back(v.clone());
        Tensor g = copy_contiguous(Tensor::uniform({sizes[i] + 1}, 80 + i, -2.f, 2.f, d), t);
        if (i == 2)
          g = g.slice(0, 1, sizes[i] + 1);  // 2-byte offset: not 8-byte aligned
        else if (i == 3)
          g = copy_contiguous(Tensor::uniform({2 * sizes[i]}, 80 + i, -2.f, 2.f, d), t).slice(0, 0, 2 * sizes[i], 2);
        else
          g = g.slice(0, 0, sizes[i]);
        g16.push_back(g);
        g32.push_back(copy_contiguous(g, DType::F32));
      }
      for (int step = 0; step < 2; ++step) {
        sgd_momentum_update(p16, g16, v16, 0.01f, 0.9f, 5e-4f);
        sgd_momentum_update(p32, g32, v32, 0.01f, 0.9f, 5e-4f);
      }
      for (size_t i = 0; i < sizes.size(); ++i) {
        const std::vector<float> a = p16[i].to_vector(), b = p32[i].to_vector();
        const std::vector<float> va = v16[i].to_vector(), vb = v32[i].to_vector();
        ASSERT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float))) << "params " << i;
        ASSERT_EQ(0, std::memcmp(va.data(), vb.data(), va.size() * sizeof(float))) << "velocities " << i;
      }
      EXPECT_FALSE(same_bits(p16[4], Tensor::uniform({sizes[4]}, 64, -1.f, 1.f, d)));  // it did update
    }
    expect_one_line_error(
        [&] {
          sgd_momentum_update({Tensor::zeros({4}, DType::F32, d)}, {Tensor::zeros({4}, DType::I32, d)},
                              {Tensor::zeros({4}, DType::F32, d)}, 0.1f, 0.9f, 0.f);
        },
        {"sgd_momentum_update", "grads[0]", "f32, bf16 or f16"});
  }
}

TEST(Sgd, OperandsReadWhenItRuns) {
  const std::vector<int64_t> sizes = {3, 8197, 40001};
  const float mu = 0.9f, wd = 5e-4f;
  for (Device d : devices()) {
    SCOPED_TRACE(d.str());
    auto make = [&](std::vector<Tensor>& p, std::vector<Tensor>& g, std::vector<Tensor>& v) {
      p.clear(), g.clear(), v.clear();
      for (size_t i = 0; i < sizes.size(); ++i) {
        p.push_back(Tensor::uniform({sizes[i]}, 70 + i, -1.f, 1.f, d));
        g.push_back(Tensor::uniform({sizes[i]}, 80 + i, -1.f, 1.f, d));
        v.push_back(Tensor::uniform({sizes[i]}, 90 + i, -1.f, 1.f, d));
      }
    };
    auto values = [](const std::vector<Tensor>& ts) {
      std::vector<std::vector<float>> out;
      for (const Tensor& t : ts) out.push_back(t.to_vector());
      return out;
    };
    std::vector<Tensor> p, g, v, pr, gr, vr;
    make(pr, gr, vr);
    sgd_momentum_update(pr, gr, vr, 0.02f, mu, wd);  // the reference: lr as the argument
    make(p, g, v);
    const Tensor lr = Tensor::full({1}, 0.02f, DType::F32, d);
    sgd_momentum_update(p, g, v, 99.f, mu, wd, UpdateAtRun{lr, Tensor(), Tensor()});
    EXPECT_EQ(values(p), values(pr));
    EXPECT_EQ(values(v), values(vr));

    const Tensor zero_flag = Tensor::zeros({1}, DType::I32, d), one_flag = Tensor::full({1}, 1.f, DType::I32, d);
    struct Gate {
      float loss;
      bool flag;
      bool updates;
    };
    for (const Gate& c : {Gate{NAN, false, false}, Gate{INFINITY, false, false}, Gate{-INFINITY, false, false},
                          Gate{1.5f, true, false}, Gate{1.5f, false, true}}) {
      SCOPED_TRACE("loss " + std::to_string(c.loss) + (c.flag ? ", flag set" : ", flag clear"));
      make(p, g, v);
      const auto p0 = values(p), v0 = values(v);
      const Tensor loss = Tensor::full({}, c.loss, DType::F32, d);
      sgd_momentum_update(p, g, v, 0.02f, mu, wd, UpdateAtRun{Tensor(), loss, c.flag ? one_flag : zero_flag});
      EXPECT_EQ(values(p), c.updates ? values(pr) : p0);
      EXPECT_EQ(values(v), c.updates ? values(vr) : v0);
    }
    expect_one_line_error(
        [&] {
          sgd_momentum_update(p, g, v, 0.02f, mu, wd, UpdateAtRun{Tensor::zeros({2}, DType::F32, d), {}, {}});
        },
        {"sgd_momentum_update", "at_run.lr", "one f32 element"});
    expect_one_line_error(
        [&] {
          sgd_momentum_update(p, g, v, 0.02f, mu, wd, UpdateAtRun{{}, {}, Tensor::zeros({1}, DType::F32, d)});
        },
        {"at_run.found_inf", "one i32 element"});
  }
  if (have_cuda()) {
    Tensor p = Tensor::zeros({4}, DType::F32, Device::cuda(0));
    expect_one_line_error(
        [&] {
          sgd_momentum_update({p}, {p.clone()}, {p.clone()}, 0.1f, 0.9f, 0.f,
                              UpdateAtRun{{}, Tensor::zeros({}, DType::F32, Device::cpu()), {}});
        },
        {"at_run.loss", "cuda"});
  }
}

// unscale_grads_check_finite (the loss scaler's unscale): tensors crossing the CPU (32768) and CUDA
// (8192) chunk sizes, a misaligned view (the CUDA scalar path) and an undefined gradient; the scale is
// a power of two, so every result is exact. Then one inf, one nan, and a -inf in a vector tail (the
// CUDA float4 loop's remainder), each alone: the flag is raised and every other element is still
// scaled.
TEST(Unscale, ScalesEveryGradientAndFlagsNonFinite) {
  const std::vector<int64_t> sizes = {1, 3, 1027, 8197, 40001, 70001};
  const float inv = 1.f / 1024.f;
  struct Poison {
    size_t tensor;
    int64_t at;
    float value;
  };
  const std::vector<Poison> cases = {{0, 0, 0.f}, {4, 33000, INFINITY}, {2, 5, NAN}, {3, 8196, -INFINITY}};
  for (Device d : devices()) {
    for (const Poison& pc : cases) {
      const bool poisoned = pc.value != 0.f;
      SCOPED_TRACE(d.str() + (poisoned ? " poisoned tensor " + std::to_string(pc.tensor) : std::string(" finite")));
      std::vector<Tensor> grads;
      std::vector<std::vector<float>> before;
      for (size_t i = 0; i < sizes.size(); ++i) {
        Tensor g = Tensor::uniform({sizes[i]}, 40 + i, -1e4f, 1e4f, d);
        if (i == 2) g = Tensor::uniform({sizes[i] + 1}, 40 + i, -1e4f, 1e4f, d).slice(0, 1, sizes[i] + 1);
        std::vector<float> v = g.to_vector();
        if (poisoned && i == pc.tensor) {
          v[(size_t)pc.at] = pc.value;
          g.copy_(Tensor::from_vector(v, {sizes[i]}, d));
        }
        grads.push_back(g);
        before.push_back(v);
      }
      grads.insert(grads.begin() + 1, Tensor());  // no gradient: skipped
      EXPECT_EQ(unscale_grads_check_finite(grads, inv), poisoned);
      grads.erase(grads.begin() + 1);
      for (size_t i = 0; i < sizes.size(); ++i) {
        const std::vector<float> after = grads[i].to_vector();
        for (size_t j = 0; j < after.size(); ++j) {
          if (poisoned && i == pc.tensor && (int64_t)j == pc.at) {
            EXPECT_FALSE(std::isfinite(after[j]));
            continue;
          }
          ASSERT_EQ(after[j], before[i][j] * inv) << "tensor " << i << " element " << j;
        }
      }
    }
  }
}

// The form with no host read: the factor read from a tensor when it runs, the flag left in a tensor;
// the same scaled gradients and the same answer as the host form.
TEST(Unscale, FactorReadWhenItRunsFlagLeftOnTheDevice) {
  const std::vector<int64_t> sizes = {1, 1027, 40001};
  for (Device d : devices()) {
    for (bool poisoned : {false, true}) {
      SCOPED_TRACE(d.str() + (poisoned ? " poisoned" : " finite"));
      std::vector<Tensor> host_form, device_form;
      for (size_t i = 0; i < sizes.size(); ++i) {
        std::vector<float> v = Tensor::uniform({sizes[i]}, 50 + i, -1e4f, 1e4f).to_vector();
        if (poisoned && i == 1) v[700] = NAN;
        host_form.push_back(Tensor::from_vector(v, {sizes[i]}, d));
        device_form.push_back(Tensor::from_vector(v, {sizes[i]}, d));
      }
      const float inv = 1.f / 3000.f;  // not a power of two: the factor's bits matter
      EXPECT_EQ(unscale_grads_check_finite(host_form, inv), poisoned);
      const Tensor flag = unscale_grads_check_finite(device_form, Tensor::full({1}, inv, DType::F32, d));
      EXPECT_EQ(flag.dtype(), DType::I32);
      EXPECT_EQ(flag.device(), d);
      EXPECT_EQ(flag.to_vector_i64(), std::vector<int64_t>{poisoned ? 1 : 0});
      for (size_t i = 0; i < sizes.size(); ++i) {
        const std::vector<float> a = host_form[i].to_vector(), b = device_form[i].to_vector();
        ASSERT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float))) << "tensor " << i;
      }
    }
    expect_one_line_error(
        [&] { unscale_grads_check_finite({Tensor::zeros({4}, DType::F32, d)}, Tensor::zeros({2}, DType::F32, d)); },
        {"unscale_grads_check_finite", "inv_scale", "one f32 element"});
  }
}

// A 16-bit gradient unscaled into an f32 destination (data-parallel fp16 O2): the f32 result of the
// widened value times the factor, the source untouched, the flag set by an inf or nan in it; both
// forms. Bad destinations get one-line errors.
TEST(Unscale, SixteenBitGradientsIntoF32) {
  const std::vector<int64_t> sizes = {1, 1027, 8197, 40001};
  const float inv = 1.f / 3000.f;
  for (Device d : devices()) {
    for (DType t : {DType::BF16, DType::F16}) {
      for (bool poisoned : {false, true}) {
        SCOPED_TRACE(d.str() + " " + dtype_name(t) + (poisoned ? " poisoned" : " finite"));
        std::vector<Tensor> src, into, into_dev, expected;
        for (size_t i = 0; i < sizes.size(); ++i) {
          std::vector<float> v = Tensor::uniform({sizes[i] + 1}, 90 + i, -6e4f, 6e4f).to_vector();
          if (poisoned && i == 2) v[8000] = INFINITY;
          Tensor g = copy_contiguous(Tensor::from_vector(v, {sizes[i] + 1}, d), t);
          g = i == 1 ? g.slice(0, 1, sizes[i] + 1) : g.slice(0, 0, sizes[i]);  // (i == 1: not 8-byte aligned)
          src.push_back(g);
          Tensor e = copy_contiguous(g, DType::F32);
          expected.push_back(e);
          into.push_back(Tensor::full({sizes[i]}, 7.f, DType::F32, d));
          into_dev.push_back(Tensor::full({sizes[i]}, 7.f, DType::F32, d));
        }
        const std::vector<Tensor> src_before = {src[0].clone(), src[1].clone(), src[2].clone(), src[3].clone()};
        EXPECT_EQ(unscale_grads_check_finite(expected, inv), poisoned);  // the f32 reference, in place
        EXPECT_EQ(unscale_grads_check_finite(src, inv, into), poisoned);
        EXPECT_EQ(unscale_grads_check_finite(src, Tensor::full({1}, inv, DType::F32, d), into_dev).to_vector_i64(),
                  std::vector<int64_t>{poisoned ? 1 : 0});
        for (size_t i = 0; i < sizes.size(); ++i) {
          const std::vector<float> a = into[i].to_vector(), b = into_dev[i].to_vector(), e = expected[i].to_vector();
          ASSERT_EQ(0, std::memcmp(a.data(), e.data(), a.size() * sizeof(float))) << "tensor " << i;
          ASSERT_EQ(0, std::memcmp(b.data(), e.data(), b.size() * sizeof(float))) << "tensor " << i;
          EXPECT_TRUE(same_bits(src[i], src_before[i])) << "source " << i << " was written";
        }
      }
    }
    const Tensor g = Tensor::zeros({8}, DType::BF16, d);
    expect_one_line_error([&] { unscale_grads_check_finite({g}, 0.5f); },
                          {"unscale_grads_check_finite", "grads[0]", "f32"});
    expect_one_line_error(
        [&] {
          unscale_grads_check_finite({g, g}, 0.5f, {Tensor::zeros({8}, DType::F32, d)});
        },
        {"unscale_grads_check_finite", "counts must match"});
    expect_one_line_error([&] { unscale_grads_check_finite({g}, 0.5f, {Tensor::zeros({8}, DType::BF16, d)}); },
                          {"unscale_grads_check_finite", "into[0]"});
    expect_one_line_error([&] { unscale_grads_check_finite({g}, 0.5f, {Tensor::zeros({4}, DType::F32, d)}); },
                          {"unscale_grads_check_finite", "into[0]", "one shape"});
    expect_one_line_error([&] { unscale_grads_check_finite({g}, 0.5f, {Tensor()}); },
                          {"unscale_grads_check_finite", "into[0] is undefined"});
    const Tensor f = Tensor::zeros({16}, DType::F32, d);
    expect_one_line_error([&] { unscale_grads_check_finite({f.slice(0, 0, 8)}, 0.5f, {f.slice(0, 4, 12)}); },
                          {"unscale_grads_check_finite", "into[0]", "overlaps grads[0]"});
  }
}

TEST(Unscale, BadInputs) {
  for (Device d : devices()) {
    Tensor g = Tensor::zeros({8}, DType::F32, d);
    expect_one_line_error([&] { unscale_grads_check_finite({g.slice(0, 0, 8, 2)}, 0.5f); },
                          {"unscale_grads_check_finite", "grads[0]", "contiguous"});
    expect_one_line_error([&] { unscale_grads_check_finite({g.to(DType::F16)}, 0.5f); },
                          {"unscale_grads_check_finite"});
    expect_one_line_error([&] { unscale_grads_check_finite({g}, INFINITY); }, {"inv_scale", "finite"});
    EXPECT_FALSE(unscale_grads_check_finite({}, 0.5f));
  }
  if (have_cuda()) {
    expect_one_line_error(
        [] {
          unscale_grads_check_finite(
              {Tensor::zeros({4}, DType::F32, Device::cpu()), Tensor::zeros({4}, DType::F32, Device::cuda(0))}, 0.5f);
        },
        {"grads[1]", "not on cpu"});
  }
}
