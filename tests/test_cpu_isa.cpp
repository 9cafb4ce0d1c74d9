// labels: kernel
// The run-time instruction-set dispatch of the CPU kernels (kernels/cpu/cpu_isa.h): the AVX-512 and
// the baseline (AVX2) variant of every dispatched kernel family give bit-identical outputs and
// gradients, at shapes that take their vectorised, tiled, tail and multi-threaded paths, so one binary
// computes the same on every CPU. On a CPU without AVX-512 only the baseline exists and that test is
// skipped (the CTest entries cpu_isa_avx2_only_<program>, on qemu's emulated AVX2-only Haswell, run
// this program, 11 other op test programs, test_models and, as cpu_isa_avx2_only_train_step, one
// PP-LiteSeg-T training step there). Also: ENGINE_CPU_ISA handling and the choice reported.
#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "engine/autograd.h"
#include "engine/ops/batchnorm.h"
#include "engine/ops/conv.h"
#include "engine/ops/copy.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/loss.h"
#include "engine/ops/optim.h"
#include "engine/ops/pool.h"
#include "engine/ops/reduce.h"
#include "engine/ops/resize.h"
#include "engine/ops/softmax.h"
#include "engine/precision.h"
#include "kernels/cpu/cpu_isa.h"

using namespace engine;
using kernels::CpuIsa;

namespace {

// Named results of one scenario: outputs and input gradients as raw f32 (or i64) words.
using Results = std::vector<std::pair<std::string, std::vector<uint32_t>>>;

void add_result(Results& r, const std::string& name, const Tensor& t) {
  ASSERT_TRUE(t.defined()) << name;
  std::vector<uint32_t> words;
  if (t.dtype() == DType::I64) {
    for (int64_t v : t.to_vector_i64()) {
      words.push_back((uint32_t)v);
      words.push_back((uint32_t)((uint64_t)v >> 32));
    }
  } else {
    const std::vector<float> v = t.to(DType::F32).to_vector();
    words.resize(v.size());
    std::memcpy(words.data(), v.data(), v.size() * 4);
  }
  r.push_back({name, std::move(words)});
}

Tensor leaf(const Shape& s, uint64_t seed, float lo = -2.f, float hi = 2.f) {
  return Tensor::uniform(s, seed, lo, hi).set_requires_grad(true);
}

// Runs fn(inputs) -> outputs, then backward with fixed random output gradients; records outputs and
// the gradients of every input that requires one.
void run_case(Results& r, const std::string& name, std::vector<Tensor> in,
              const std::function<std::vector<Tensor>(const std::vector<Tensor>&)>& fn) {
  const std::vector<Tensor> out = fn(in);
  Tensor total;
  for (size_t k = 0; k < out.size(); ++k) {
    add_result(r, name + " out" + std::to_string(k), out[k]);
    if (out[k].dtype() != DType::F32 || !out[k].requires_grad()) continue;
    const Tensor w = Tensor::uniform(out[k].shape(), 900 + k, -1.f, 1.f);
    const Tensor term = sum(mul(out[k], w));
    total = total.defined() ? add(total, term) : term;
  }
  if (total.defined()) total.backward();
  for (size_t i = 0; i < in.size(); ++i)
    if (in[i].requires_grad()) add_result(r, name + " grad" + std::to_string(i), in[i].grad());
}

// Every dispatched kernel family, at sizes past their parallel grains and vector widths.
Results run_all() {
  Results r;
  const Shape big{5, 37, 41, 7};  // 53,095 elements: parallel, odd rows, a 7-wide innermost axis
  // elementwise: every unary op, broadcasting binary ops (contiguous, row-broadcast, scalar-broadcast)
  using Unary = Tensor (*)(const Tensor&);
  const std::vector<std::pair<std::string, Unary>> unary = {
      {"neg", neg}, {"exp", exp}, {"relu", relu}, {"sigmoid", sigmoid}, {"tanh", tanh}};
  for (const auto& [name, f] : unary)
    run_case(r, name, {leaf(big, 1)}, [f = f](const std::vector<Tensor>& x) { return std::vector<Tensor>{f(x[0])}; });
  run_case(r, "log_sqrt", {leaf(big, 2, 0.1f, 3.f)}, [](const std::vector<Tensor>& x) {
    return std::vector<Tensor>{log(x[0]), sqrt(x[0])};
  });
  run_case(r, "scalar_ops", {leaf(big, 3)}, [](const std::vector<Tensor>& x) {
    return std::vector<Tensor>{leaky_relu(x[0], 0.1f), add(x[0], 0.5f), mul(x[0], 3.f),           div(x[0], 7.f),
                               maximum(x[0], 0.25f),   rsub(1.f, x[0]), rdiv(2.f, add(x[0], 5.f))};
  });
  for (const Shape& bs : {big, Shape{7}, Shape{1, 37, 1, 7}})
    run_case(r, "binary " + shape_str(bs), {leaf(big, 4), leaf(bs, 5, 0.5f, 2.f)}, [](const std::vector<Tensor>& x) {
      return std::vector<Tensor>{add(x[0], x[1]), sub(x[0], x[1]), mul(x[0], x[1]), div(x[0], x[1]),
                                 maximum(x[0], x[1])};
    });
  // batch norm: train and eval, with no, the fused ReLU and the fused LeakyReLU, scalar and vector
  // channel counts
  for (const Shape& s : {Shape{4, 33, 17, 24}, Shape{2, 9, 7, 3}, Shape{300, 20}}) {
    const int64_t C = s.back();
    for (bool training : {true, false})
      for (int act = 0; act < 3; ++act) {
        const Tensor rm = Tensor::uniform({C}, 11, -0.3f, 0.3f), rv = Tensor::uniform({C}, 12, 0.5f, 2.f);
        const char* act_name[] = {"", " relu", " leaky_relu"};
        run_case(r, "batch_norm " + shape_str(s) + (training ? " train" : " eval") + act_name[act],
                 {leaf(s, 13), leaf({C}, 14, 0.5f, 1.5f), leaf({C}, 15, -0.5f, 0.5f)},
                 [&](const std::vector<Tensor>& x) {
                   BatchNormArgs a;
                   a.training = training;
                   if (act == 1) a.act = BnActivation::relu();
                   if (act == 2) a.act = BnActivation::leaky_relu(0.1f);
                   return std::vector<Tensor>{batch_norm(x[0], x[1], x[2], rm, rv, a), rm.clone(), rv.clone()};
                 });
      }
  }
  // the depthwise weight gradient of 16-bit convolutions (kernels/cpu/conv_wgrad_cpu.inc): two
  // 32-channel blocks and an 8-channel tail, several row blocks; bf16 where the CPU has it
  for (const Precision prec : {Precision::FP16, Precision::BF16}) {
    if (prec == Precision::BF16 && !kernels::cpu_has_bf16()) continue;
    run_case(r, std::string("depthwise conv2d ") + precision_name(prec),
             {leaf({2, 40, 23, 72}, 31), leaf({72, 1, 3, 3}, 32)}, [prec](const std::vector<Tensor>& x) {
               AutocastGuard low(prec);
               Conv2dArgs a;
               a.pad_h = a.pad_w = 1;
               a.groups = 72;
               return std::vector<Tensor>{conv2d(x[0], x[1], Tensor(), a)};
             });
  }
  // the thin-input weight gradient (kernels/cpu/conv_wgrad_cpu.inc): a 3-channel image layer of 40
  // output channels (a 32-channel block and a tail), stride 2, several row blocks
  for (const Precision prec : {Precision::FP16, Precision::BF16}) {
    if (prec == Precision::BF16 && !kernels::cpu_has_bf16()) continue;
    run_case(r, std::string("thin-input conv2d ") + precision_name(prec),
             {leaf({2, 70, 66, 3}, 33), leaf({40, 3, 3, 3}, 34), leaf({40}, 35)}, [prec](const std::vector<Tensor>& x) {
               AutocastGuard low(prec);
               Conv2dArgs a;
               a.stride_h = a.stride_w = 2;
               a.pad_h = a.pad_w = 1;
               return std::vector<Tensor>{conv2d(x[0], x[1], x[2], a)};
             });
  }
  // softmax family: row tiles (L = 19, 2), rows longer than a tile (L = 100), a middle axis
  for (const Shape& s : {Shape{3, 29, 31, 19}, Shape{2, 41, 37, 2}, Shape{37, 100}})
    run_case(r, "softmax " + shape_str(s), {leaf(s, 21, -4.f, 4.f)}, [](const std::vector<Tensor>& x) {
      return std::vector<Tensor>{softmax(x[0]), log_softmax(x[0]), argmax(x[0])};
    });
  run_case(r, "softmax axis 1", {leaf({3, 19, 45, 6}, 22, -4.f, 4.f)}, [](const std::vector<Tensor>& x) {
    return std::vector<Tensor>{softmax(x[0], 1), log_softmax(x[0], 1), argmax(x[0], 1)};
  });
  // losses: CE with class weights and ignored pixels, OHEM, BCE (logits and probabilities), L1.
  // CE: 4770 pixels, two 4096-pixel work items; OHEM at 0.7 / 500 masks without a selection.
  auto loss_labels = [](int64_t n, int64_t h, int64_t w, int64_t C) {
    std::vector<int64_t> labels((size_t)(n * h * w));
    for (size_t i = 0; i < labels.size(); ++i) labels[i] = i % 13 == 0 ? 255 : (int64_t)((i * 7) % (size_t)C);
    return Tensor::from_vector_i64(labels, {n, h, w});
  };
  for (int64_t C : {19, 2}) {
    const Shape s{2, 45, 53, C};
    const Tensor y = loss_labels(2, 45, 53, C);
    run_case(r, "ce C=" + std::to_string(C), {leaf(s, 31, -3.f, 3.f), Tensor::uniform({C}, 32, 0.5f, 2.f)},
             [&](const std::vector<Tensor>& x) {
               return std::vector<Tensor>{cross_entropy(x[0], y), cross_entropy(x[0], y, x[1]),
                                          ohem_cross_entropy(x[0], y, 0.7f, 500)};
             });
  }
  // OHEM selection: 18432 pixels, a few hundred valid ones below 0.001, far fewer than min_kept, so the
  // threshold is raised to the k-th probability by the sampled bracket (its AVX-512 compress-store
  // loop), multi-threaded where there are several threads
  {
    const Tensor y = loss_labels(2, 96, 96, 19);
    run_case(r, "ohem select", {leaf({2, 96, 96, 19}, 33, -3.f, 3.f)}, [&](const std::vector<Tensor>& x) {
      return std::vector<Tensor>{ohem_cross_entropy(x[0], y, 0.001f, 9000)};
    });
  }
  run_case(r, "bce l1", {leaf(big, 41), Tensor::uniform(big, 42, 0.f, 1.f), leaf(big, 43, 0.05f, 0.95f)},
           [](const std::vector<Tensor>& x) {
             return std::vector<Tensor>{bce_with_logits(x[0], x[1]), bce_with_logits(x[0], x[1], x[1]),
                                        binary_cross_entropy(x[2], x[1]), l1_loss(x[0], x[2])};
           });
  // reductions: channel statistics (columns), last axis (rows), global (chunked rows), max + index
  const Shape rs{4, 45, 47, 12};
  run_case(r, "reduce", {leaf(rs, 51)}, [](const std::vector<Tensor>& x) {
    const MaxResult m = max(x[0], {3});
    const MaxResult mc = max(x[0], {0, 1, 2});
    return std::vector<Tensor>{
        sum(x[0], {0, 1, 2}), mean(x[0], {3}), sum(x[0]), mean(x[0], {1}), m.values, m.indices, mc.values, mc.indices};
  });
  // pooling and resizing (pool: 19152 output elements, past the 16384 of the multi-threaded path)
  run_case(r, "pool", {leaf({2, 37, 41, 24}, 61)}, [](const std::vector<Tensor>& x) {
    return std::vector<Tensor>{avg_pool2d(x[0], 3, 2, 1), max_pool2d(x[0], 3, 2, 1), adaptive_avg_pool2d(x[0], 5, 7),
                               global_avg_pool2d(x[0])};
  });
  run_case(r, "resize", {leaf({2, 17, 23, 24}, 71)}, [](const std::vector<Tensor>& x) {
    return std::vector<Tensor>{resize_bilinear(x[0], 41, 37), resize_bilinear(x[0], 9, 11, true),
                               resize_nearest(x[0], 40, 50), resize_bilinear_scale(x[0], 0.5f, 0.5f)};
  });
  // copies and casts (strided source, f32 <-> bf16 / f16), fill
  {
    const Tensor src = Tensor::uniform({6, 35, 33, 17}, 81, -70000.f, 70000.f);
    add_result(r, "permuted copy", src.permute({0, 3, 1, 2}).contiguous());
    add_result(r, "bf16", src.to(DType::BF16));
    add_result(r, "f16", src.to(DType::F16));
    add_result(r, "i32", src.to(DType::I32));
    Tensor f = Tensor::zeros({70001});
    fill_(f, 0.3f);
    add_result(r, "fill", f);
  }
  // the fused SGD update over tensors of very different sizes
  {
    std::vector<Tensor> p, g, v;
    for (int64_t n : {7, 4096, 70001, 33}) {
      p.push_back(Tensor::uniform({n}, 90 + n, -1.f, 1.f));
      g.push_back(Tensor::uniform({n}, 91 + n, -1.f, 1.f));
      v.push_back(Tensor::uniform({n}, 92 + n, -1.f, 1.f));
    }
    for (int step = 0; step < 3; ++step) sgd_momentum_update(p, g, v, 0.01f, 0.9f, 4e-5f);
    for (size_t i = 0; i < p.size(); ++i) {
      add_result(r, "sgd p" + std::to_string(i), p[i]);
      add_result(r, "sgd v" + std::to_string(i), v[i]);
    }
  }
  return r;
}

// Restores the ISA the process started with.
struct IsaGuard {
  CpuIsa saved = kernels::cpu_isa();
  ~IsaGuard() { kernels::set_cpu_isa(saved); }
};

}  // namespace

TEST(CpuIsa, VariantsComputeTheSameBits) {
  if (!kernels::cpu_isa_supported(CpuIsa::Avx512))
    GTEST_SKIP() << "no AVX-512 variant here (" << kernels::cpu_description() << "): only the baseline exists";
  IsaGuard guard;
  kernels::set_cpu_isa(CpuIsa::Base);
  const Results base = run_all();
  kernels::set_cpu_isa(CpuIsa::Avx512);
  const Results wide = run_all();
  ASSERT_EQ(base.size(), wide.size());
  for (size_t i = 0; i < base.size(); ++i) {
    ASSERT_EQ(base[i].first, wide[i].first);
    const auto& a = base[i].second;
    const auto& b = wide[i].second;
    ASSERT_EQ(a.size(), b.size()) << base[i].first;
    size_t bad = 0, first = 0;
    for (size_t k = 0; k < a.size(); ++k)
      if (a[k] != b[k] && bad++ == 0) first = k;
    EXPECT_EQ(bad, 0u) << base[i].first << ": " << bad << " of " << a.size() << " words differ between "
                       << kernels::cpu_isa_name(CpuIsa::Base) << " and avx512, first at " << first;
  }
  std::printf("%zu results bit-identical between the %s and avx512 kernels (%s)\n", base.size(),
              kernels::cpu_isa_name(CpuIsa::Base), kernels::cpu_model_name().c_str());
}

TEST(CpuIsa, ChoiceAndOverride) {
  IsaGuard guard;
  const CpuIsa active = kernels::cpu_isa();
  // Without ENGINE_CPU_ISA the best supported variant is active; with it, the one asked for.
  const char* env = std::getenv("ENGINE_CPU_ISA");
  if (!env || !*env) {
    EXPECT_EQ(active, kernels::cpu_isa_supported(CpuIsa::Avx512) ? CpuIsa::Avx512 : CpuIsa::Base);
  } else if (std::string(env) == "avx2") {
    EXPECT_EQ(active, CpuIsa::Base);
  }
  kernels::set_cpu_isa(CpuIsa::Base);
  EXPECT_EQ(kernels::cpu_isa(), CpuIsa::Base);
  if (!kernels::cpu_isa_supported(CpuIsa::Avx512)) {
    try {
      kernels::set_cpu_isa(CpuIsa::Avx512);
      ADD_FAILURE() << "set_cpu_isa(Avx512) accepted on a CPU without AVX-512";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("avx512 kernels cannot run on this CPU"), std::string::npos) << e.what();
    }
  }
  const std::string d = kernels::cpu_description();
  EXPECT_NE(d.find(kernels::cpu_model_name()), std::string::npos) << d;
  EXPECT_NE(d.find(kernels::cpu_build_baseline()), std::string::npos) << d;
  std::printf("%s\n", d.c_str());
}
