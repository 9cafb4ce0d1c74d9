// labels: kernel
// Copy family through the harness: contiguous() of permuted, sliced and broadcast views, clone, and
// cross-device transfers, with gradients.
#include <gtest/gtest.h>

#include "engine/ops/copy.h"
#include "engine/ops/elementwise.h"
#include "tests/harness/op_check.h"

using namespace engine;
using namespace engine::testing;

TEST(Copy, PermuteContiguous) {
  check_op(
      "permute_contiguous", {{"3d", {{3, 5, 7}}}, {"size1", {{1, 9, 1}}}, {"large", {{17, 33, 9}}}},
      [](const std::vector<Tensor>& in) {
        return std::vector<Tensor>{in[0].permute({2, 0, 1}).contiguous()};
      },
      [](const RefInputs& in, const std::vector<Shape>& s) {
        const Shape& a = s[0];
        const Shape o{a[2], a[0], a[1]};
        std::vector<double> out((size_t)shape_numel(o));
        for (int64_t i = 0; i < shape_numel(o); ++i) {
          const auto c = unravel(i, o);
          out[(size_t)i] = in[0][(size_t)ravel({c[1], c[2], c[0]}, a)];
        }
        return std::vector<std::vector<double>>{out};
      });
}

TEST(Copy, SliceStepClone) {
  check_op(
      "slice_clone", {{"2d", {{6, 11}}}, {"4d", {{2, 3, 4, 9}}}},
      [](const std::vector<Tensor>& in) { return std::vector<Tensor>{in[0].slice(-1, 1, 8, 3).clone()}; },
      [](const RefInputs& in, const std::vector<Shape>& s) {
        const Shape& a = s[0];
        Shape o = a;
        o.back() = 3;  // elements 1, 4, 7
        std::vector<double> out;
        for (int64_t i = 0; i < shape_numel(o); ++i) {
          auto c = unravel(i, o);
          c.back() = 1 + 3 * c.back();
          out.push_back(in[0][(size_t)ravel(c, a)]);
        }
        return std::vector<std::vector<double>>{out};
      });
}

TEST(Copy, ExpandContiguousSumsGradient) {
  check_op(
      "expand", {{"col", {{4, 1}}}, {"lead", {{3}}}},
      [](const std::vector<Tensor>& in) {
        const Shape target = in[0].dim() == 2 ? Shape{4, 5} : Shape{2, 3};
        return std::vector<Tensor>{in[0].expand(target).contiguous()};
      },
      [](const RefInputs& in, const std::vector<Shape>& s) {
        std::vector<double> out;
        if (s[0].size() == 2) {
          for (int i = 0; i < 4; ++i)
            for (int j = 0; j < 5; ++j) out.push_back(in[0][(size_t)i]);
        } else {
          for (int i = 0; i < 2; ++i)
            for (int j = 0; j < 3; ++j) out.push_back(in[0][(size_t)j]);
        }
        return std::vector<std::vector<double>>{out};
      });
}

TEST(Copy, ToDeviceRoundTrip) {
  if (!have_cuda()) GTEST_SKIP() << "no CUDA device";
  check_op(
      "to_device", {{"odd", {{5, 7}}}},
      [](const std::vector<Tensor>& in) {
        const Device other = in[0].device().is_cpu() ? Device::cuda(0) : Device::cpu();
        return std::vector<Tensor>{(in[0].to(other) * 1.f).to(in[0].device())};
      },
      [](const RefInputs& in, const std::vector<Shape>&) { return std::vector<std::vector<double>>{in[0]}; });
}

// fill on the (emulated) GPU: every storage type, lengths around the 16-byte stores, views starting
// off a 16-byte boundary (head, body and tail); the CPU's values, integers saturated alike, and the
// elements around the view untouched.
TEST(Copy, FillEveryTypeAtEveryAlignment) {
  if (!have_cuda()) GTEST_SKIP() << "no CUDA device (real or emulated)";
  for (DType dt : {DType::F32, DType::BF16, DType::F16, DType::I32, DType::I64, DType::U8})
    for (float value : {-3.7f, 1e6f, 0.1f})
      for (int64_t n : {1, 2, 5, 16, 17, 33, 1000, 4099})
        for (int64_t offset : {0, 1, 3, 8}) {
          const std::string what = std::string(dtype_name(dt)) + " value " + std::to_string(value) + " n " +
                                   std::to_string(n) + " offset " + std::to_string(offset);
          std::vector<float> got[2];
          for (const Device d : {Device::cpu(), Device::cuda(0)}) {
            const Tensor base = Tensor::full({n + 16}, 7.f, dt, d);
            fill_(base.narrow(0, offset, n), value);
            got[d.is_cuda()] = base.to_vector();
          }
          ASSERT_EQ(got[1], got[0]) << what;
          ASSERT_EQ(got[1][(size_t)offset], Tensor::full({1}, value, dt).to_vector()[0]) << what;
          for (int64_t i = 0; i < n + 16; ++i)
            if (i < offset || i >= offset + n) {
              ASSERT_EQ(got[1][(size_t)i], 7.f) << what << " at " << i;
            }
        }
}
