// labels: kernel
// concat / split: 2-4 inputs along every axis with odd sizes, against a naive reference; gradients
// by finite differences; CPU vs CUDA device, strided inputs, guards, determinism (the harness);
// dtype-generic copies (i64, u8, f16 widths that select every kernel unit); split views; errors.
#include <gtest/gtest.h>

#include "engine/ops/shape_ops.h"
#include "tests/harness/op_check.h"

using namespace engine;
using namespace engine::testing;

namespace {

std::vector<double> ref_concat(const RefInputs& in, const std::vector<Shape>& shapes, int axis) {
  const int nd = (int)shapes[0].size();
  const int ax = axis < 0 ? axis + nd : axis;
  Shape out = shapes[0];
  out[(size_t)ax] = 0;
  for (const Shape& s : shapes) out[(size_t)ax] += s[(size_t)ax];
  std::vector<double> r((size_t)shape_numel(out));
  for (int64_t i = 0; i < (int64_t)r.size(); ++i) {
    auto c = unravel(i, out);
    size_t k = 0;
    while (c[(size_t)ax] >= shapes[k][(size_t)ax]) c[(size_t)ax] -= shapes[k++][(size_t)ax];
    r[(size_t)i] = in[k][(size_t)ravel(c, shapes[k])];
  }
  return r;
}

}  // namespace

TEST(ShapeOps, ConcatEveryAxis) {
  struct C {
    std::string name;
    std::vector<Shape> shapes;
    int axis;
  };
  const std::vector<C> cs = {
      {"nhwc_channels_4", {{2, 3, 5, 4}, {2, 3, 5, 3}, {2, 3, 5, 1}, {2, 3, 5, 8}}, -1},  // CatBottleneck-like
      {"channels_2_odd", {{1, 2, 3, 5}, {1, 2, 3, 7}}, 3},
      {"width", {{2, 3, 4, 3}, {2, 3, 1, 3}, {2, 3, 2, 3}}, 2},
      {"height", {{2, 1, 5, 3}, {2, 4, 5, 3}}, 1},
      {"batch", {{1, 2, 3, 5}, {2, 2, 3, 5}, {1, 2, 3, 5}}, 0},
      {"1d", {{7}, {1}, {13}}, 0},
      {"2d_cols", {{3, 5}, {3, 2}}, -1},
      {"3d_middle", {{2, 3, 4}, {2, 1, 4}, {2, 5, 4}, {2, 2, 4}}, -2},
  };
  for (const C& c : cs) {
    const int axis = c.axis;
    check_op(
        "concat/" + c.name, {{c.name, c.shapes}},
        [axis](const std::vector<Tensor>& in) { return std::vector<Tensor>{concat(in, axis)}; },
        [axis](const RefInputs& in, const std::vector<Shape>& shapes) {
          return std::vector<std::vector<double>>{ref_concat(in, shapes, axis)};
        });
  }
}

TEST(ShapeOps, ConcatPartialRequiresGrad) {
  for (Device d : {Device::cpu(), have_cuda() ? Device::cuda(0) : Device::cpu()}) {
    Tensor a = Tensor::uniform({2, 3, 4}, 1, -1, 1, d).set_requires_grad(true);
    Tensor b = Tensor::uniform({2, 3, 2}, 2, -1, 1, d);
    Tensor y = concat({a, b}, -1);
    std::vector<float> gv((size_t)y.numel());
    for (size_t i = 0; i < gv.size(); ++i) gv[i] = (float)i;
    y.backward(Tensor::from_vector(gv, y.shape(), d));
    const auto ga = a.grad().to_vector();
    for (int64_t r = 0; r < 6; ++r)
      for (int64_t k = 0; k < 4; ++k) EXPECT_EQ(ga[(size_t)(r * 4 + k)], (float)(r * 6 + k));
    EXPECT_TRUE(a.grad().is_contiguous());
    EXPECT_FALSE(b.grad().defined());
  }
}

TEST(ShapeOps, ConcatOtherDtypes) {
  // i64 (8-byte elements), u8 (1-byte: the byte kernel), widths 3 x 1 byte, and i32 / f16.
  for (Device d : {Device::cpu(), have_cuda() ? Device::cuda(0) : Device::cpu()}) {
    for (DType t : {DType::I64, DType::U8, DType::I32, DType::F16}) {
      const Tensor a = Tensor::from_vector({1, 2, 3, 4, 5, 6}, {2, 3}).to(t).to(d);
      const Tensor b = Tensor::from_vector({7, 8}, {2, 1}).to(t).to(d);
      const Tensor y = concat({a, b, a}, 1);
      EXPECT_EQ(y.dtype(), t);
      EXPECT_EQ(y.to_vector(), (std::vector<float>{1, 2, 3, 7, 1, 2, 3, 4, 5, 6, 8, 4, 5, 6}));
    }
  }
}

TEST(ShapeOps, ConcatManyInputs) {
  // 11 inputs: more than one launch of the CUDA kernel (8 pieces each).
  std::vector<Shape> shapes;
  for (int i = 0; i < 11; ++i) shapes.push_back({2, 3, 1 + i % 3});
  check_op(
      "concat/many", {{"eleven", shapes}},
      [](const std::vector<Tensor>& in) { return std::vector<Tensor>{concat(in, -1)}; },
      [](const RefInputs& in, const std::vector<Shape>& s) {
        return std::vector<std::vector<double>>{ref_concat(in, s, -1)};
      });
}

TEST(ShapeOps, Split) {
  struct C {
    std::string name;
    Shape shape;
    std::vector<int64_t> sizes;
    int axis;
  };
  const std::vector<C> cs = {{"channels", {2, 3, 4, 9}, {2, 3, 4}, -1},
                             {"channels_infer", {2, 3, 2, 7}, {1, -1, 2}, 3},
                             {"height", {1, 5, 3, 2}, {2, 3}, 1},
                             {"batch", {3, 2, 2, 3}, {1, 1, 1}, 0},
                             {"1d", {11}, {4, 7}, 0}};
  for (const C& c : cs) {
    const auto sizes = c.sizes;
    const int axis = c.axis;
    check_op(
        "split/" + c.name, {{c.name, {c.shape}}},
        [=](const std::vector<Tensor>& in) { return split(in[0], sizes, axis); },
        [=](const RefInputs& in, const std::vector<Shape>& shapes) {
          const Shape& s = shapes[0];
          const int ax = axis < 0 ? axis + (int)s.size() : axis;
          std::vector<int64_t> sz = sizes;
          int64_t known = 0;
          for (int64_t v : sz) known += v > 0 ? v : 0;
          for (int64_t& v : sz)
            if (v == -1) v = s[(size_t)ax] - known;
          std::vector<std::vector<double>> outs;
          int64_t start = 0;
          for (int64_t len : sz) {
            Shape os = s;
            os[(size_t)ax] = len;
            std::vector<double> o((size_t)shape_numel(os));
            for (int64_t i = 0; i < (int64_t)o.size(); ++i) {
              auto co = unravel(i, os);
              co[(size_t)ax] += start;
              o[(size_t)i] = in[0][(size_t)ravel(co, s)];
            }
            outs.push_back(o);
            start += len;
          }
          return outs;
        });
  }
}

TEST(ShapeOps, SplitReturnsViews) {
  const Tensor x = Tensor::uniform({2, 3, 4, 6}, 5, -1, 1);
  const auto parts = split(x, {2, 4}, -1);
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[1].shape(), (Shape{2, 3, 4, 4}));
  EXPECT_EQ(static_cast<const void*>(parts[1].raw_data()), static_cast<const void*>(x.data<float>() + 2));
  // Using only one piece still gives a full-shape gradient, zero outside that piece.
  Tensor xr = Tensor::uniform({2, 5}, 6, -1, 1).set_requires_grad(true);
  const auto p = split(xr, {3, 2}, 1);
  p[1].backward(Tensor::full({2, 2}, 1.f));
  EXPECT_EQ(xr.grad().to_vector(), (std::vector<float>{0, 0, 0, 1, 1, 0, 0, 0, 1, 1}));
}

// A split of a bf16 / f16 tensor (mixed precision) of which only some pieces reach the loss: the
// unused pieces' gradients are zero-filled in the pieces' type, so the backward's concat sees one
// type, and the used piece's gradient arrives unchanged.
TEST(ShapeOps, SplitOfLowPrecisionWithUnusedPieces) {
  for (Device d : test_devices()) {
    for (const DType low : {DType::BF16, DType::F16}) {
      SCOPED_TRACE(std::string(dtype_name(low)) + " on " + d.str());
      Tensor x = Tensor::uniform({2, 3, 4}, 5, -1.f, 1.f, d).set_requires_grad(true);
      const auto parts = split(x.to(low), {1, 2, 1}, 2);
      ASSERT_EQ(parts[1].dtype(), low);
      parts[1].to(DType::F32).backward(Tensor::full({2, 3, 2}, 3.f, DType::F32, d));
      const std::vector<float> g = x.grad().to_vector();
      for (size_t i = 0; i < g.size(); ++i) EXPECT_EQ(g[i], i % 4 == 1 || i % 4 == 2 ? 3.f : 0.f) << i;
    }
  }
}

TEST(ShapeOps, BadInputErrors) {
  auto expect_error = [](const std::function<void()>& f, const std::string& what) {
    try {
      f();
      ADD_FAILURE() << "expected an error containing: " << what;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  const Tensor a = Tensor::zeros({2, 3, 4}), b = Tensor::zeros({2, 5, 4});
  expect_error([&] { concat({}, 0); }, "concat: no input tensors");
  expect_error(
      [&] {
        concat({a, b}, -1);
      },
      "concat: along axis -1, input 1 [2, 5, 4] and input 0 [2, 3, 4] differ in dimension 1");
  expect_error([&] { concat({a, Tensor::zeros({2, 3})}, 0); }, "concat: input 1 f32[2, 3] on cpu has rank 2");
  expect_error([&] { concat({a, Tensor::zeros({2, 3, 4}, DType::I64)}, 0); }, "has a different dtype");
  expect_error([&] { concat({a, a}, 3); }, "concat: axis 3 is out of range for a 3-D tensor");
  expect_error(
      [&] {
        split(a, {1, 1}, 1);
      },
      "split: sizes [1, 1] sum to 2 but x f32[2, 3, 4] on cpu has 3 along axis 1");
  expect_error([&] { split(a, {0, 3}, 1); }, "every size must be >= 1");
  expect_error([&] { split(a, {4, -1}, 2); }, "split: sizes [4, -1] leave 0 for the -1 entry");
}
