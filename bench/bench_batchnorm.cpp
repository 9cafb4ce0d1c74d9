// bench_kernels rows for the batch-norm family at the models' activation shapes: STDC/PP-LiteSeg at
// 512x512 batch 4 ([4,128,128,64], [4,64,64,256], [4,32,32,512], [4,16,16,1024]) and DarkNet53 at
// 416x416 ([4,104,104,128]).
//  batch_norm_train_fwd: batch statistics + running-stat update + normalise. Work.bytes = 12 B per
//    element: the statistics pass reads x, the normalise pass reads x again and writes y (tensors
//    larger than the caches must be read twice by any two-pass BN; 8 B/elem would be the bare
//    read-x-write-y minimum).
//  batch_norm_train_bwd: the recorded backward node (reduction over g, x, then dx = k1*g + k2*(x-mean)
//    + k3). Work.bytes = 20 B per element (reads g, x twice, writes dx).
//  batch_norm_eval_fwd: normalise with running statistics, 8 B per element.
//  batch_norm_relu_train_fwd / _bwd (the two STDC shapes [4,128,128,64], [4,64,64,256]): the same
//    with the fused ReLU (BatchNormArgs::act) - same passes and bytes, the mask recomputed from x.
//    Beside them relu_after_batch_norm_train_fwd / _bwd: relu(batch_norm(...)) unfused, as the model
//    ran before (+8 B per element forward: relu reads y, writes out; +12 B backward: relu reads g
//    and its input, writes the masked g), so the saving is read off the table. Elements whose
//    pre-activation is within 1e-4 of 0 are not validated (rounding decides their side).
//  batch_norm_relu_train_fwd_bf16 / _bwd_bf16 ([4,128,128,64]): the fused ReLU pair on bf16
//    activations, 6 / 10 B per element.
//  batch_norm_leaky_relu_train_fwd / _bwd and leaky_relu_after_batch_norm_train_fwd / _bwd (the
//    DarkNet53 shape [4,104,104,128], slope 0.1 as DarkNet53/YOLOv3's ConvBNLayer): the same pair
//    for the fused LeakyReLU.
// Each row is validated against a naive double loop on the host before timing.
#include <cmath>
#include <sstream>

#include "bench/bench.h"
#include "engine/autograd.h"
#include "engine/ops/batchnorm.h"
#include "engine/ops/elementwise.h"

namespace {

using namespace engine;
using bench::compare;
using bench::scaled;
using bench::shape_name;

// Host reference of training-mode BN forward and backward in double.
struct Ref {
  std::vector<double> y, dx;
};
// act: none, relu (y = max(0, z), g zeroed where z <= 0) or leaky_relu (y = z * slope and g * slope
// where z <= 0); `kink` lists elements with |z| < 1e-4.
Ref reference(const std::vector<float>& x, const std::vector<float>& g, const std::vector<float>& w,
              const std::vector<float>& b, int64_t C, double eps, BnActivation act = {},
              std::vector<size_t>* kink = nullptr) {
  const int64_t M = (int64_t)x.size() / C;
  std::vector<double> mean((size_t)C, 0.0), var((size_t)C, 0.0), sg((size_t)C, 0.0), sgx((size_t)C, 0.0);
  for (size_t i = 0; i < x.size(); ++i) mean[i % (size_t)C] += x[i];
  for (double& m : mean) m /= (double)M;
  for (size_t i = 0; i < x.size(); ++i) {
    const double d = x[i] - mean[i % (size_t)C];
    var[i % (size_t)C] += d * d;
  }
  for (double& v : var) v /= (double)M;
  Ref r;
  r.y.resize(x.size());
  r.dx.resize(x.size());
  std::vector<double> gm(g.begin(), g.end());
  for (size_t i = 0; i < x.size(); ++i) {
    const size_t c = i % (size_t)C;
    const double xh = (x[i] - mean[c]) / std::sqrt(var[c] + eps);
    r.y[i] = xh * w[c] + b[c];
    if (act.fused()) {
      if (kink && std::fabs(r.y[i]) < 1e-4) kink->push_back(i);
      if (r.y[i] <= 0) {
        const double k = act.kind == BnActivation::Kind::Relu ? 0.0 : (double)act.negative_slope;
        r.y[i] *= k;
        gm[i] *= k;
      }
    }
    sg[c] += gm[i];
    sgx[c] += gm[i] * xh;
  }
  for (size_t i = 0; i < x.size(); ++i) {
    const size_t c = i % (size_t)C;
    const double is = 1 / std::sqrt(var[c] + eps), xh = (x[i] - mean[c]) * is;
    r.dx[i] = w[c] * is * (gm[i] - sg[c] / (double)M - xh * sgx[c] / (double)M);
  }
  return r;
}

// compare() that skips the elements listed in `skip` (their wanted value is replaced by the result).
std::string compare_except(const std::vector<float>& got, std::vector<double> want, const std::vector<size_t>& skip,
                           double tol) {
  for (size_t i : skip)
    if (i < got.size() && i < want.size()) want[i] = got[i];
  return compare(got, want, tol);
}

}  // namespace

BENCH_REGISTER(batch_norm) {
  const bool q = runner.quick();
  const std::vector<Shape> shapes = {
      {4, 128, 128, 64}, {4, 64, 64, 256}, {4, 32, 32, 512}, {4, 16, 16, 1024}, {4, 104, 104, 128}};
  for (Device d : runner.devices()) {
    for (const Shape& full : shapes) {
      const Shape s = scaled(full, q);
      const int64_t C = s[3];
      const Tensor x = Tensor::uniform(s, 1, -1.f, 3.f, d), g = Tensor::uniform(s, 2, -1.f, 1.f, d);
      const Tensor w = Tensor::uniform({C}, 3, 0.5f, 1.5f, d), b = Tensor::uniform({C}, 4, -1.f, 1.f, d);
      Tensor rm = Tensor::zeros({C}, DType::F32, d), rv = Tensor::full({C}, 1.f, DType::F32, d);
      const auto xv = x.to_vector(), gv = g.to_vector(), wv = w.to_vector(), bv = b.to_vector();
      const Ref ref = reference(xv, gv, wv, bv, C, 1e-5);
      const double n = (double)x.numel();
      runner.run(
          "batch_norm_train_fwd", shape_name(s), d, {12.0 * n, 0},
          [&] { return compare(batch_norm(x, w, b, rm, rv, {}).to_vector(), ref.y, 1e-4); },
          [&] { batch_norm(x, w, b, rm, rv, {}); });
      // Backward through the recorded node (what autograd runs).
      const Tensor xg = x.detach().set_requires_grad(true);
      const Tensor y = batch_norm(xg, w, b, rm, rv, {});
      const auto node = y.grad_fn();
      runner.run(
          "batch_norm_train_bwd", shape_name(s), d, {20.0 * n, 0},
          [&] { return compare(node->apply({g})[0].to_vector(), ref.dx, 1e-3); }, [&] { node->apply({g}); });
      if (full == shapes[0] || full == shapes[1]) {
        // Fused ReLU, then the unfused relu(batch_norm) it replaces.
        std::vector<size_t> kink;
        const Ref rr = reference(xv, gv, wv, bv, C, 1e-5, BnActivation::relu(), &kink);
        BatchNormArgs ra;
        ra.act = BnActivation::relu();
        runner.run(
            "batch_norm_relu_train_fwd", shape_name(s), d, {12.0 * n, 0},
            [&] { return compare_except(batch_norm(x, w, b, rm, rv, ra).to_vector(), rr.y, kink, 1e-4); },
            [&] { batch_norm(x, w, b, rm, rv, ra); });
        const Tensor yr = batch_norm(xg, w, b, rm, rv, ra);
        const auto rnode = yr.grad_fn();
        runner.run(
            "batch_norm_relu_train_bwd", shape_name(s), d, {20.0 * n, 0},
            [&] { return compare_except(rnode->apply({g})[0].to_vector(), rr.dx, kink, 1e-3); },
            [&] { rnode->apply({g}); });
        if (full == shapes[0]) {
          // bf16 activations (mixed precision): half the bytes, f32 statistics and math. The
          // reference runs on the rounded inputs; the results carry bf16's rounding (2^-9 relative).
          const Tensor xb = x.to(DType::BF16), gb = g.to(DType::BF16);
          std::vector<size_t> kb;
          const Ref rb = reference(xb.to_vector(), gb.to_vector(), wv, bv, C, 1e-5, BnActivation::relu(), &kb);
          runner.run(
              "batch_norm_relu_train_fwd_bf16", shape_name(s), d, {6.0 * n, 0},
              [&] { return compare_except(batch_norm(xb, w, b, rm, rv, ra).to_vector(), rb.y, kb, 1e-2); },
              [&] { batch_norm(xb, w, b, rm, rv, ra); });
          const Tensor xbg = x.detach().set_requires_grad(true);
          const Tensor ybr = batch_norm(xbg.to(DType::BF16), w, b, rm, rv, ra);
          const auto bnode = ybr.grad_fn();
          runner.run(
              "batch_norm_relu_train_bwd_bf16", shape_name(s), d, {10.0 * n, 0},
              [&] { return compare_except(bnode->apply({gb})[0].to_vector(), rb.dx, kb, 1e-2); },
              [&] { bnode->apply({gb}); });
        }
        runner.run(
            "relu_after_batch_norm_train_fwd", shape_name(s), d, {20.0 * n, 0},
            [&] { return compare_except(relu(batch_norm(x, w, b, rm, rv, {})).to_vector(), rr.y, kink, 1e-4); },
            [&] { relu(batch_norm(x, w, b, rm, rv, {})); });
        const Tensor yu = relu(batch_norm(xg, w, b, rm, rv, {}));
        const auto relu_node = yu.grad_fn();
        const auto bn_node = relu_node->next[0].fn;
        runner.run(
            "relu_after_batch_norm_train_bwd", shape_name(s), d, {32.0 * n, 0},
            [&] { return compare_except(bn_node->apply(relu_node->apply({g}))[0].to_vector(), rr.dx, kink, 1e-3); },
            [&] { bn_node->apply(relu_node->apply({g})); });
      }
      if (full == shapes[4]) {
        // Fused LeakyReLU(0.1), then the unfused leaky_relu(batch_norm) it replaces.
        std::vector<size_t> kink;
        const BnActivation act = BnActivation::leaky_relu(0.1f);
        const Ref rr = reference(xv, gv, wv, bv, C, 1e-5, act, &kink);
        BatchNormArgs la;
        la.act = act;
        runner.run(
            "batch_norm_leaky_relu_train_fwd", shape_name(s), d, {12.0 * n, 0},
            [&] { return compare_except(batch_norm(x, w, b, rm, rv, la).to_vector(), rr.y, kink, 1e-4); },
            [&] { batch_norm(x, w, b, rm, rv, la); });
        const Tensor yl = batch_norm(xg, w, b, rm, rv, la);
        const auto lnode = yl.grad_fn();
        runner.run(
            "batch_norm_leaky_relu_train_bwd", shape_name(s), d, {20.0 * n, 0},
            [&] { return compare_except(lnode->apply({g})[0].to_vector(), rr.dx, kink, 1e-3); },
            [&] { lnode->apply({g}); });
        runner.run(
            "leaky_relu_after_batch_norm_train_fwd", shape_name(s), d, {20.0 * n, 0},
            [&] {
              return compare_except(leaky_relu(batch_norm(x, w, b, rm, rv, {}), 0.1f).to_vector(), rr.y, kink, 1e-4);
            },
            [&] { leaky_relu(batch_norm(x, w, b, rm, rv, {}), 0.1f); });
        const Tensor yu = leaky_relu(batch_norm(xg, w, b, rm, rv, {}), 0.1f);
        const auto act_node = yu.grad_fn();
        const auto bn_node = act_node->next[0].fn;
        runner.run(
            "leaky_relu_after_batch_norm_train_bwd", shape_name(s), d, {32.0 * n, 0},
            [&] { return compare_except(bn_node->apply(act_node->apply({g}))[0].to_vector(), rr.dx, kink, 1e-3); },
            [&] { bn_node->apply(act_node->apply({g})); });
      }
      if (full == shapes[0]) {
        BatchNormArgs ev;
        ev.training = false;
        const auto rmv = rm.to_vector(), rvv = rv.to_vector();
        std::vector<double> want(xv.size());
        for (size_t i = 0; i < xv.size(); ++i) {
          const size_t c = i % (size_t)C;
          want[i] = (xv[i] - rmv[c]) / std::sqrt((double)rvv[c] + 1e-5) * wv[c] + bv[c];
        }
        runner.run(
            "batch_norm_eval_fwd", shape_name(s), d, {8.0 * n, 0},
            [&] { return compare(batch_norm(x, w, b, rm, rv, ev).to_vector(), want, 1e-4); },
            [&] { batch_norm(x, w, b, rm, rv, ev); });
      }
    }
  }
}
