// labels: kernel
// Copy family through the harness: contiguous() of permuted, sliced and broadcast views, clone, and
// cross-device transfers, with gradients.
#include <gtest/gtest.h>

#include <cstring>

#include "engine/ops/copy.h"
#include "engine/ops/elementwise.h"
#include "kernels/kernel_types.h"
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

// The CUDA strided kernels unravel indices with 32-bit arithmetic below 2^32 elements
// (StridedLayout::offset_of32): the same offsets as the 64-bit offset_of, for every index of random
// layouts (broadcast and negative-free strides, size-1 dims, an offset) and for the last indices of
// a layout just under 2^32 elements.
TEST(Copy, StridedOffsetsIn32BitArithmeticEqualThe64BitOnes) {
  uint64_t state = 12345;
  auto next = [&](int64_t bound) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return (int64_t)((state >> 33) % (uint64_t)bound);
  };
  for (int trial = 0; trial < 200; ++trial) {
    kernels::StridedLayout l;
    l.ndim = 1 + (int)next(kernels::kMaxDims);
    int64_t n = 1;
    for (int d = 0; d < l.ndim; ++d) {
      l.shape[d] = 1 + next(7);
      l.stride[d] = next(3) == 0 ? 0 : next(1000);
      n *= l.shape[d];
    }
    l.offset = next(50);
    ASSERT_TRUE(kernels::fits_index32(n));
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(l.offset_at(i, true), l.offset_of(i)) << "trial " << trial << " i " << i;
  }
  kernels::StridedLayout big;
  big.ndim = 3;
  const int64_t shape[3] = {3, 65519, 21845}, stride[3] = {1, 3 * 21845, 3};  // 4293787665 elements, permuted
  for (int d = 0; d < 3; ++d) big.shape[d] = shape[d], big.stride[d] = stride[d];
  const int64_t n = shape[0] * shape[1] * shape[2];
  ASSERT_TRUE(kernels::fits_index32(n));
  ASSERT_FALSE(kernels::fits_index32(n + 1179631));
  for (int64_t i : {int64_t(0), n / 2 + 7, n - 21846, n - 2, n - 1})
    EXPECT_EQ(big.offset_of32((uint32_t)i), big.offset_of(i)) << i;
}

// Contiguous conversions between float types on the (emulated) GPU (four elements per access where
// both ends are aligned, else one): the CPU's bits for every pair, for arbitrary bit patterns (NaN,
// infinities, subnormals, values that overflow f16), lengths around the vector width and views
// starting off the alignment.
TEST(Copy, FloatCastsAtEveryAlignmentGiveTheCpuBits) {
  if (!have_cuda()) GTEST_SKIP() << "no CUDA device (real or emulated)";
  std::vector<float> bits;
  uint64_t state = 0x9E3779B97F4A7C15ull;
  for (int i = 0; i < 1040; ++i) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    const uint32_t u = (uint32_t)(state >> 32) >> (i % 3 == 0 ? 3 : 0);  // some with smaller exponents
    float f;
    std::memcpy(&f, &u, 4);
    bits.push_back(f);
  }
  for (DType from : {DType::F32, DType::BF16, DType::F16})
    for (DType to : {DType::F32, DType::BF16, DType::F16}) {
      if (from == to) continue;
      for (int64_t n : {1, 3, 4, 5, 1027})
        for (int64_t offset : {0, 1, 2, 4}) {
          const std::string what = std::string(dtype_name(from)) + " -> " + dtype_name(to) + " n " + std::to_string(n) +
                                   " offset " + std::to_string(offset);
          std::vector<float> got[2];
          for (const Device d : {Device::cpu(), Device::cuda(0)}) {
            const Tensor src = Tensor::from_vector(bits, {(int64_t)bits.size()}, d).to(from).narrow(0, offset, n);
            got[d.is_cuda()] = src.to(to).to(DType::F32).to_vector();
          }
          expect_same_bits(got[1], got[0], what);
        }
    }
}

// The bytes of t, copied to the host.
std::vector<unsigned char> host_bytes(const Tensor& t) {
  const Tensor h = t.to(Device::cpu()).contiguous();
  const auto* p = static_cast<const unsigned char*>(h.raw_data());
  return std::vector<unsigned char>(p, p + h.nbytes());
}

// A conv weight's layout changes, OIHW -> OHWI and back (coalesced, a batched transpose with the
// short kH*kW on either side: on a GPU the rows kernel, threads along the longer dim), and one whose
// kH*kW is too long for it (the strided kernel): the CPU's bytes on the (emulated) GPU for every
// storage type and the float casts, from a view starting at an offset.
TEST(Copy, WeightLayoutChangesGiveTheCpuBytes) {
  if (!have_cuda()) GTEST_SKIP() << "no CUDA device (real or emulated)";
  const std::vector<Shape> shapes = {{5, 7, 3, 3}, {4, 12, 3, 3}, {3, 70, 9, 9}, {2, 3, 1, 5}};
  for (const Shape& oihw : shapes) {
    Shape padded = oihw;
    padded[0] += 1;  // the view starts one filter in
    std::vector<float> values((size_t)shape_numel(padded));
    uint64_t state = 0x2545F4914F6CDD1Dull;
    for (float& v : values) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      v = (float)(int64_t)(state >> 40) / 4096.f - 2000.f;  // exact in f32, rounds in bf16 / f16
    }
    for (DType from : {DType::F32, DType::BF16, DType::F16, DType::I64, DType::I32, DType::U8})
      for (DType to : {DType::F32, DType::BF16, DType::F16, DType::I64, DType::I32, DType::U8}) {
        const bool both_float = is_float_storage(from) && is_float_storage(to);
        if (from != to && !both_float) continue;
        for (const auto& perm : {std::vector<int>{0, 2, 3, 1}, std::vector<int>{0, 3, 1, 2}}) {
          const std::string what = shape_str(oihw) + " permute " + std::to_string(perm[1]) + std::to_string(perm[2]) +
                                   std::to_string(perm[3]) + " " + dtype_name(from) + " -> " + dtype_name(to);
          std::vector<unsigned char> got[2];
          for (const Device d : {Device::cpu(), Device::cuda(0)}) {
            const Tensor base = Tensor::from_vector(values, padded, d).to(from);
            const Tensor view = base.narrow(0, 1, oihw[0]).permute(perm);
            got[d.is_cuda()] = host_bytes(copy_contiguous(view, to));
          }
          ASSERT_EQ(got[1].size(), got[0].size()) << what;
          EXPECT_TRUE(got[1] == got[0]) << what;
        }
      }
  }
}
