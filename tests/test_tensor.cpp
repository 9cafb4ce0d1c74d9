// labels: kernel
// Tensor core: shapes/strides/views, the NHWC convention, dtype casts, device copies, allocator
// statistics and guard bytes, device parsing and the default device (with and without a usable GPU;
// CUDA_VISIBLE_DEVICES itself is exercised by the CTest entry gpu_hidden_is_an_error, not here).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "engine/allocator.h"
#include "engine/ops/copy.h"
#include "engine/tensor.h"
#include "tests/harness/op_check.h"

using namespace engine;

namespace {
std::vector<Device> devices() {
  std::vector<Device> d{Device::cpu()};
  if (engine::testing::have_cuda()) d.push_back(Device::cuda(0));
  return d;
}
std::vector<float> iota(int n) {
  std::vector<float> v((size_t)n);
  for (int i = 0; i < n; ++i) v[(size_t)i] = (float)i;
  return v;
}
}  // namespace

TEST(Tensor, ContiguousStridesAndNumel) {
  const Tensor t = Tensor::zeros({2, 3, 4, 5});
  EXPECT_EQ(t.strides(), (Shape{60, 20, 5, 1}));
  EXPECT_EQ(t.numel(), 120);
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_EQ(t.describe(), "f32[2, 3, 4, 5] on cpu");
}

TEST(Tensor, ViewsShareStorageAndCopyOnContiguous) {
  for (Device d : devices()) {
    const Tensor t = Tensor::from_vector(iota(24), {2, 3, 4}, d);
    const Tensor p = t.permute({2, 0, 1});  // [4, 2, 3]
    EXPECT_EQ(p.shape(), (Shape{4, 2, 3}));
    EXPECT_FALSE(p.is_contiguous());
    EXPECT_EQ(p.storage(), t.storage());
    const auto v = p.contiguous().to_vector();
    // p[k][i][j] = t[i][j][k] = 12 i + 4 j + k
    for (int k = 0; k < 4; ++k)
      for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 3; ++j) EXPECT_EQ(v[(size_t)(k * 6 + i * 3 + j)], (float)(12 * i + 4 * j + k));
    const Tensor s = t.slice(2, 1, 4, 2);  // last dim elements 1, 3
    EXPECT_EQ(s.shape(), (Shape{2, 3, 2}));
    EXPECT_EQ(s.to_vector(), (std::vector<float>{1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23}));
    EXPECT_EQ(t.narrow(0, 1, 1).reshape({12}).to_vector()[0], 12.f);
    EXPECT_EQ(t.reshape({6, 4}).storage(), t.storage());       // contiguous: a view
    EXPECT_NE(p.reshape({24}).storage(), t.storage());         // non-contiguous: a copy
    EXPECT_EQ(t.slice(1, -2, 100).shape(), (Shape{2, 2, 4}));  // negative start, clamped end
    const Tensor e = Tensor::from_vector({1, 2, 3}, {3, 1}, d).expand({3, 4});
    EXPECT_EQ(e.strides(), (Shape{1, 0}));
    EXPECT_EQ(e.contiguous().to_vector(), (std::vector<float>{1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3}));
  }
}

TEST(Tensor, ChannelsLastConvention) {
  // An image batch is [N, H, W, C]: the channel of pixel (n, h, w) is contiguous.
  const Tensor img = Tensor::from_vector(iota(2 * 2 * 3 * 4), {2, 2, 3, 4});
  EXPECT_EQ(img.strides().back(), 1);
  EXPECT_EQ(img.slice(3, 2, 3).contiguous().to_vector()[1], 6.f);  // pixel (0,0,1) channel 2
}

TEST(Error, MessagesAreOneLine) {
  // Text quoted from a file may hold line breaks and control bytes: they become escapes.
  EXPECT_STREQ(Error("bad label 'a\nb\r\tc\x01\x7f'").what(), "bad label 'a\\nb\\r\\tc\\x01\\x7f'");
  EXPECT_STREQ(Error(std::string("nul \0 byte", 10)).what(), "nul \\x00 byte");
  const std::string plain = "file.yml: key: expected a number, got 'x' (UTF-8 kept: \xc3\xa9)";
  EXPECT_EQ(Error(plain).what(), plain);
  // A message past kMaxErrorMessage is cut at a character boundary and says how much was cut:
  // the cut falls inside the two-byte character at kMaxErrorMessage - 1, which is left out whole.
  const std::string long_message = std::string(kMaxErrorMessage - 1, 'a') + "\xc3\xa9" + std::string(500, 'b');
  EXPECT_EQ(Error(long_message).what(), std::string(kMaxErrorMessage - 1, 'a') + "... (502 more characters)");
  // Through fail() and the subclasses too.
  try {
    fail("value '", "two\nlines", "'");
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "value 'two\\nlines'");
  }
  EXPECT_STREQ(CaptureFailed("a\nb").what(), "a\\nb");
}

TEST(Tensor, ViewErrors) {
  const Tensor t = Tensor::zeros({2, 3});
  EXPECT_THROW(t.view({4, 2}), Error);
  EXPECT_THROW(t.transpose(0, 1).view({6}), Error);
  EXPECT_THROW(t.permute({0, 0}), Error);
  EXPECT_THROW(t.expand({3, 3}), Error);
  EXPECT_THROW(t.item(), Error);
  try {
    t.view({5});
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[5]"), std::string::npos) << e.what();
  }
  EXPECT_EQ(t.view({-1}).shape(), (Shape{6}));
}

TEST(Tensor, CastsRoundTripAndRoundToNearestEven) {
  for (Device d : devices()) {
    const std::vector<float> v = {0.f, -0.f, 1.f, -2.5f, 65504.f, 70000.f, 1e-7f, 3.14159265f, 1.00048828125f};
    const Tensor f = Tensor::from_vector(v, {(int64_t)v.size()}, d);
    const auto h = f.to(DType::F16).to(DType::F32).to_vector();
    EXPECT_EQ(h[2], 1.f);
    EXPECT_EQ(h[3], -2.5f);
    EXPECT_EQ(h[4], 65504.f);
    EXPECT_TRUE(std::isinf(h[5]));
    EXPECT_NEAR(h[6], 1.1920929e-07f, 1e-12);  // a half subnormal (2 * 2^-24)
    EXPECT_EQ(h[7], 3.140625f);
    EXPECT_EQ(h[8], 1.0f);  // exactly half-way between 1 and 1+2^-10: ties to even
    const auto b = f.to(DType::BF16).to(DType::F32).to_vector();
    EXPECT_EQ(b[7], 3.140625f);
    EXPECT_EQ(b[2], 1.f);
    const auto i = Tensor::from_vector({-2.7f, 2.7f, 300.f}, {3}, d).to(DType::I32).to_vector();
    EXPECT_EQ(i, (std::vector<float>{-2.f, 2.f, 300.f}));
    // Out-of-range values saturate and NaN becomes 0 (a C cast is undefined there; GPUs saturate).
    const auto u = Tensor::from_vector({300.f, -5.f, NAN, 254.9f}, {4}, d).to(DType::U8).to_vector();
    EXPECT_EQ(u, (std::vector<float>{255.f, 0.f, 0.f, 254.f}));
    const auto s = Tensor::from_vector({3e9f, -3e9f}, {2}, d).to(DType::I32).to(DType::I64).to_vector_i64();
    EXPECT_EQ(s, (std::vector<int64_t>{2147483520ll, -2147483648ll}));
    const Tensor big = Tensor::from_vector_i64({(1ll << 40) + 1, -5}, {2}, d);
    EXPECT_EQ(big.clone().to_vector_i64(), (std::vector<int64_t>{(1ll << 40) + 1, -5}));  // bit-exact copies
  }
}

TEST(Tensor, Bf16CastIsRoundToNearestEvenForAnyBits) {
  // The contiguous cast has a vectorised CPU path; strided sources take the element loop: both must
  // give round-to-nearest-even of the upper 16 bits (NaN stays NaN) for arbitrary bit patterns.
  std::vector<float> v;
  uint64_t s = 0x9E3779B97F4A7C15ull;
  for (int i = 0; i < 20000; ++i) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    const uint32_t u = (uint32_t)(s >> 32);
    float f;
    std::memcpy(&f, &u, 4);
    v.push_back(f);
  }
  for (float f : {0.f, -0.f, INFINITY, -INFINITY, NAN, 3.4028235e38f, 1e-45f, 1.00390625f, 1.01171875f, -1.5f})
    v.push_back(f);
  auto expect_bf16 = [](float f) {
    if (std::isnan(f)) return f;
    uint32_t u;
    std::memcpy(&u, &f, 4);
    u += 0x7fffu + ((u >> 16) & 1u);
    u &= 0xffff0000u;
    float r;
    std::memcpy(&r, &u, 4);
    return r;
  };
  for (Device d : devices()) {
    const Tensor t = Tensor::from_vector(v, {(int64_t)v.size() / 2, 2}, d);
    const auto contiguous = t.to(DType::BF16).to(DType::F32).to_vector();
    const auto strided = t.transpose(0, 1).to(DType::BF16).to(DType::F32).transpose(0, 1).contiguous().to_vector();
    for (size_t i = 0; i < v.size(); ++i) {
      const float want = expect_bf16(v[i]);
      if (std::isnan(want)) {
        ASSERT_TRUE(std::isnan(contiguous[i]) && std::isnan(strided[i])) << i;
        continue;
      }
      ASSERT_EQ(std::memcmp(&contiguous[i], &want, 4), 0) << d.str() << " contiguous element " << i << ": " << v[i];
      ASSERT_EQ(std::memcmp(&strided[i], &want, 4), 0) << d.str() << " strided element " << i << ": " << v[i];
    }
  }
}

TEST(Tensor, CastBitsAgreeAcrossDevices) {
  if (!engine::testing::have_cuda()) GTEST_SKIP() << "no CUDA device";
  std::vector<float> v;
  for (int i = 0; i < 5000; ++i) v.push_back(std::ldexp((float)(i * 7919 % 10007) - 5000.f, i % 40 - 30));
  const Tensor c = Tensor::from_vector(v, {(int64_t)v.size()});
  const Tensor g = c.to(Device::cuda(0));
  for (DType t : {DType::F16, DType::BF16, DType::I32, DType::U8}) {
    const auto a = c.to(t).to(DType::F32).to_vector(), b = g.to(t).to(DType::F32).to_vector();
    for (size_t i = 0; i < a.size(); ++i)
      ASSERT_TRUE(a[i] == b[i] || (std::isnan(a[i]) && std::isnan(b[i]))) << dtype_name(t) << " element " << i;
  }
}

TEST(Tensor, DeviceCopiesAndNoncontiguousSources) {
  if (!engine::testing::have_cuda()) GTEST_SKIP() << "no CUDA device";
  const Tensor c = Tensor::from_vector(iota(60), {3, 4, 5});
  const Tensor g = c.to(Device::cuda(0));
  EXPECT_EQ(g.device(), Device::cuda(0));
  EXPECT_EQ(g.to_vector(), c.to_vector());
  const Tensor back = g.transpose(0, 2).to(Device::cpu());
  EXPECT_EQ(back.to_vector(), c.transpose(0, 2).contiguous().to_vector());
  Tensor dst = Tensor::zeros({3, 4, 5}, DType::F32, Device::cuda(0));
  dst.copy_(c);
  EXPECT_EQ(dst.to_vector(), c.to_vector());
}

TEST(Tensor, CopyIntoStridedDestination) {
  for (Device d : devices()) {
    Tensor full = Tensor::zeros({4, 6}, DType::F32, d);
    full.slice(1, 1, 6, 2).copy_(Tensor::from_vector(iota(12), {4, 3}, d));
    EXPECT_EQ(full.to_vector(),
              (std::vector<float>{0, 0, 0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 8, 0, 9, 0, 10, 0, 11}));
    EXPECT_THROW(Tensor::zeros({3}, DType::F32, d).expand({2, 3}).copy_(Tensor::zeros({2, 3})), Error);
  }
}

TEST(Allocator, StatisticsTrackCurrentAndPeak) {
  for (Device d : devices()) {
    reset_peak_memory_stats(d);
    const MemoryStats before = memory_stats(d);
    {
      const Tensor a = Tensor::empty({1 << 20}, DType::F32, d);  // 4 MiB
      const MemoryStats during = memory_stats(d);
      EXPECT_GE(during.allocated_current, before.allocated_current + (4u << 20));
      EXPECT_GE(during.allocated_peak, during.allocated_current);
    }
    const MemoryStats after = memory_stats(d);
    EXPECT_EQ(after.allocated_current, before.allocated_current);
    EXPECT_GE(after.allocated_peak, before.allocated_current + (4u << 20));
  }
}

TEST(Allocator, CpuCacheReusesLargeBlocks) {
  { Tensor a = Tensor::empty({3 << 20}, DType::F32); }  // 12 MiB, cached on free
  const size_t system_allocs = memory_stats(Device::cpu()).num_system_allocs;
  for (int i = 0; i < 5; ++i) Tensor b = Tensor::empty({3 << 20}, DType::F32);
  EXPECT_EQ(memory_stats(Device::cpu()).num_system_allocs, system_allocs) << "large CPU blocks should be reused";
  const size_t reserved = memory_stats(Device::cpu()).reserved_current;
  empty_cache();
  EXPECT_LT(memory_stats(Device::cpu()).reserved_current, reserved);
}

TEST(Allocator, CudaCacheReusesBlocks) {
  if (!engine::testing::have_cuda()) GTEST_SKIP() << "no CUDA device";
  const Device d = Device::cuda(0);
  { Tensor a = Tensor::empty({1000}, DType::F32, d); }
  const size_t system_allocs = memory_stats(d).num_system_allocs;
  for (int i = 0; i < 10; ++i) Tensor b = Tensor::empty({1000}, DType::F32, d);
  EXPECT_EQ(memory_stats(d).num_system_allocs, system_allocs) << "freed blocks should be reused";
  const size_t reserved = memory_stats(d).reserved_current;
  empty_cache();
  EXPECT_LT(memory_stats(d).reserved_current, reserved);
}

TEST(Allocator, GuardBytesCatchOverruns) {
  set_guard_mode(true);
  {
    Tensor t = Tensor::empty({10});
    EXPECT_EQ(check_guards(), 0);
    t.data<float>()[10] = 1.f;  // one past the end
    EXPECT_EQ(check_guards(), 1);
    t.data<float>()[10] = std::bit_cast<float>(0xA5A5A5A5u);  // restore the pattern before free
  }
  set_guard_mode(false);
}

TEST(Device, ParseAndDefault) {
  EXPECT_EQ(parse_device("cpu"), Device::cpu());
  EXPECT_THROW(parse_device("tpu"), Error);
  EXPECT_THROW(parse_device("cuda:x"), Error);
  if (engine::testing::have_cuda()) {
    EXPECT_EQ(parse_device("gpu"), Device::cuda(0));
    EXPECT_EQ(parse_device("cuda:0"), Device::cuda(0));
    EXPECT_THROW(parse_device("cuda:7"), Error);
    EXPECT_EQ(default_device(), Device::cuda(0));
  } else {
    try {
      parse_device("gpu");
      FAIL() << "expected an error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("no usable CUDA device"), std::string::npos) << e.what();
    }
    EXPECT_EQ(default_device(), Device::cpu());
  }
}

TEST(Device, NoKernelIsAnErrorNotAFallback) {
#if !defined(ENGINE_WITH_CUDA)
  EXPECT_THROW(Tensor::zeros({2}, DType::F32, Device::cuda(0)), Error);
#else
  GTEST_SKIP() << "this build has a CUDA backend";
#endif
}
