// Math shared by the CPU kernels and the CUDA kernels, so the two backends cannot drift apart.
// Under nvcc these are __host__ __device__; under the host compiler plain inline functions.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "base/dtype.h"
#include "base/error.h"

#if defined(__CUDACC__)
#include <cuda_fp16.h>
#define ENGINE_HD __host__ __device__ __forceinline__
#define ENGINE_UNROLL _Pragma("unroll")
#else
#define ENGINE_HD inline
#define ENGINE_UNROLL _Pragma("GCC unroll 8")
#endif

namespace engine::kernels {

// Bit casts that gcc keeps in registers inside vectorised loops (memcpy through a stack slot stops
// the vectoriser when the value comes from a select).
ENGINE_HD uint32_t f2u(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  return __builtin_bit_cast(uint32_t, f);
#endif
}
ENGINE_HD float u2f(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  return __builtin_bit_cast(float, u);
#endif
}

// exp of an argument already clamped to [-87.3, 88.72], as p * 2^n: n = round(x / ln2) with the
// 1.5*2^23 trick (exact for |n| < 2^22), r = x - n*ln2 in two parts, p = Taylor to degree 7 on
// |r| <= ln2/2 (truncation error < 6e-9 relative). Branch-free, every step an explicit fmaf, so CPU
// loops vectorise and both devices round identically.
ENGINE_HD float exp_reduced(float xc, float* n_out) {
  const float t = fmaf(xc, 1.44269504088896341f, 12582912.f);
  const float n = t - 12582912.f;
  float r = fmaf(n, -0.693145751953125f, xc);
  r = fmaf(n, -1.428606765330187e-06f, r);
  float p = 1.f / 5040.f;
  p = fmaf(p, r, 1.f / 720.f);
  p = fmaf(p, r, 1.f / 120.f);
  p = fmaf(p, r, 1.f / 24.f);
  p = fmaf(p, r, 1.f / 6.f);
  p = fmaf(p, r, 0.5f);
  p = fmaf(p, r, 1.f);
  p = fmaf(p, r, 1.f);
  *n_out = n;
  return p;
}

// exp(x) for x <= 0 (softmax after max subtraction, exp(-|x|) in BCE). Relative error ~1 ulp;
// x < -87.3 (result below FLT_MIN) gives 0; NaN propagates; x > 0 is clamped to 0 (returns 1).
ENGINE_HD float exp_neg_f(float x) {
  float n;
  const float p = exp_reduced(x > 0.f ? 0.f : (x < -87.3f ? -87.3f : x), &n);
  const float y = p * u2f((uint32_t)((int32_t)n + 127) << 23);  // n in [-126, 0]: a normal power of two
  const float r0 = x < -87.3f ? 0.f : y;
  return std::isnan(x) ? x : r0;
}

// exp(x) for any x: x > 88.72 gives +inf, x < -87.3 gives 0 (no subnormal results), NaN
// propagates. 2^n is applied as two normal powers of two so n can span [-126, 128].
ENGINE_HD float exp_f(float x) {
  float n;
  const float p = exp_reduced(x > 88.72f ? 88.72f : (x < -87.3f ? -87.3f : x), &n);
  const int32_t ni = (int32_t)n, n1 = ni / 2, n2 = ni - n1;
  const float y = p * u2f((uint32_t)(n1 + 127) << 23) * u2f((uint32_t)(n2 + 127) << 23);
  const float big = x > 88.72f ? INFINITY : y;
  const float r0 = x < -87.3f ? 0.f : big;
  return std::isnan(x) ? x : r0;
}

// exp(x) for x <= 88 in the fewest vector instructions, for the CPU's hot loops (softmax, cross
// entropy: x - max <= 0, x - lse <= 0). Same reduction and polynomial as exp_neg_f / exp_f with no
// clamps and no float->int conversion (2^n is built from n + 1.5*2^23, whose low bits hold n), so
// on [-87.3, 88] it returns exactly their bits (the result is a normal float there). x < -87.3
// gives 0 (the final select also hides the garbage that a huge negative or infinite x makes of the
// scale), NaN propagates. x > 88 is outside the contract (2^n overflows the exponent field).
ENGINE_HD float exp_fast_f(float x) {
  float n;
  const float p = exp_reduced(x, &n);
  const float y = p * u2f((f2u(n + 12582912.f) + 127u) << 23);
  return x < -87.3f ? 0.f : y;
}

// Logistic, branch-free on top of exp_neg_f so the CPU loops vectorise (libm's expf does not) and
// both devices compute the same bits: e = exp(-|x|); x >= 0: 1 / (1 + e), x < 0: e / (1 + e).
ENGINE_HD float sigmoid_f(float x) {
  const float e = exp_neg_f(-fabsf(x));
  const float inv = 1.f / (1.f + e);
  return x >= 0.f ? inv : e * inv;
}

// IEEE round-to-nearest square root. On the GPU the intrinsic avoids the out-of-line slow-path
// call that sqrtf makes on sm_80, which costs a stack frame and spills in vectorised loops.
ENGINE_HD float sqrt_f(float x) {
#if defined(__CUDA_ARCH__)
  return __fsqrt_rn(x);
#else
  return sqrtf(x);
#endif
}

ENGINE_HD float leaky_relu_f(float x, float slope) { return x > 0.f ? x : x * slope; }

// Operations nvcc never contracts. nvcc fuses a product followed by an add into one FMA by default
// (--fmad=true), even across statements, and the host compiler does not (-ffp-contract=off): an
// expression both devices must round alike, where a product feeds an add, is written with these
// (or with an explicit fmaf). On the device they are the __f*_rn / __d*_rn intrinsics, on the host
// the plain operators; the emulated kernels, which the host compiler contracts as nvcc does
// (ENGINE_EMU_FP_CONTRACT, CMakeLists.txt), pass their operands through an empty asm statement that
// the compiler cannot see through, so no product is fused across one.
#if defined(ENGINE_EMU_FP_CONTRACT) && !defined(__CUDA_ARCH__)
#define ENGINE_RN_OPAQUE(v) asm("" : "+g"(v))
#else
#define ENGINE_RN_OPAQUE(v) (void)0
#endif
// T: float or double.
template <class T>
ENGINE_HD T add_rn(T a, T b) {
#if defined(__CUDA_ARCH__)
  if constexpr (sizeof(T) == 8)
    return __dadd_rn(a, b);
  else
    return __fadd_rn(a, b);
#else
  ENGINE_RN_OPAQUE(a);
  ENGINE_RN_OPAQUE(b);
  return a + b;
#endif
}
template <class T>
ENGINE_HD T sub_rn(T a, T b) {
#if defined(__CUDA_ARCH__)
  if constexpr (sizeof(T) == 8)
    return __dsub_rn(a, b);
  else
    return __fsub_rn(a, b);
#else
  ENGINE_RN_OPAQUE(a);
  ENGINE_RN_OPAQUE(b);
  return a - b;
#endif
}
template <class T>
ENGINE_HD T mul_rn(T a, T b) {
#if defined(__CUDA_ARCH__)
  if constexpr (sizeof(T) == 8)
    return __dmul_rn(a, b);
  else
    return __fmul_rn(a, b);
#else
  T r = a * b;
  ENGINE_RN_OPAQUE(r);
  return r;
#endif
}
ENGINE_HD float div_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}

}  // namespace engine::kernels

namespace engine::kernels {

// ---- storage-type conversions (bit exact, round to nearest even), used by the cast kernels of
// both backends so that f16/bf16 tensors hold identical bits whichever device wrote them.
// On the device the intrinsics (a register move): a memcpy through a local can cost stack space in
// register-heavy kernels.
ENGINE_HD uint32_t float_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
#endif
}
ENGINE_HD float bits_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  memcpy(&f, &u, 4);
  return f;
#endif
}

// Written with a select, not a branch, so CPU loops that store bf16 vectorise.
ENGINE_HD uint16_t float_to_bf16_bits(float f) {
  const uint32_t u = float_bits(f);
  const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  const uint32_t quiet_nan = (u >> 16) | 0x40u;
  return (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? quiet_nan : rounded);
}
ENGINE_HD float bf16_bits_to_float(uint16_t b) { return bits_float((uint32_t)b << 16); }

ENGINE_HD uint16_t float_to_half_bits(float f) {
#if defined(__CUDA_ARCH__)
  // The hardware conversion (round to nearest even, subnormals, overflow to inf: the same bits as
  // below); a NaN becomes the host version's quiet NaN.
  const uint16_t hw = __half_as_ushort(__float2half_rn(f));
  return f != f ? (uint16_t)(((float_bits(f) >> 16) & 0x8000u) | 0x7e00u) : hw;
#else
  const uint32_t x = float_bits(f);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t absx = x & 0x7fffffffu;
  if (absx >= 0x7f800000u) return (uint16_t)(sign | 0x7c00u | (absx > 0x7f800000u ? 0x200u : 0u));
  if (absx >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);           // rounds past 65504: inf
  if (absx < 0x38800000u) {                                             // below 2^-14: half subnormal
    const uint32_t m = (uint32_t)rintf(bits_float(absx) * 16777216.f);  // units of 2^-24, RNE
    return (uint16_t)(sign | m);
  }
  const uint32_t mant = absx & 0x7fffffu;
  const uint32_t exp = (absx >> 23) - 127u + 15u;
  uint32_t h = (exp << 10) | (mant >> 13);
  const uint32_t rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h += 1u;  // a carry rolls into the exponent
  return (uint16_t)(sign | h);
#endif
}
ENGINE_HD float half_bits_to_float(uint16_t h) {
#if defined(__CUDA_ARCH__)
  // The hardware conversion (exact); a NaN keeps its payload as in the host version.
  const bool nan = (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0;
  const uint32_t nan_bits = ((uint32_t)(h & 0x8000u) << 16) | 0x7f800000u | ((uint32_t)(h & 0x3ffu) << 13);
  return nan ? bits_float(nan_bits) : __half2float(__ushort_as_half(h));
#else
  const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  if (exp == 0) {
    const float v = (float)mant * 5.9604644775390625e-8f;  // mant * 2^-24
    return sign ? -v : v;
  }
  if (exp == 31) return bits_float(sign | 0x7f800000u | (mant << 13));
  return bits_float(sign | ((exp - 15u + 127u) << 23) | (mant << 13));
#endif
}

// Storage of activations (mixed precision): f32, or bf16 / f16 bits. Kernels that take a storage type
// compute in f32: they widen on load and round once, to nearest even, on store (the bits of the cast
// kernels above), so a low-precision result is the f32 result of the widened inputs, rounded.
template <DType D>
struct Storage;
template <>
struct Storage<DType::F32> {
  using T = float;
  static ENGINE_HD float load(float v) { return v; }
  static ENGINE_HD float store(float v) { return v; }
};
template <>
struct Storage<DType::BF16> {
  using T = uint16_t;
  static ENGINE_HD float load(uint16_t b) { return bf16_bits_to_float(b); }
  static ENGINE_HD uint16_t store(float v) { return float_to_bf16_bits(v); }
};
template <>
struct Storage<DType::F16> {
  using T = uint16_t;
  static ENGINE_HD float load(uint16_t h) { return half_bits_to_float(h); }
  static ENGINE_HD uint16_t store(float v) { return float_to_half_bits(v); }
};

// Runs f.template operator()<D>() with D the float storage type dt (f32, bf16 or f16), so one
// templated kernel serves the three; any other type is an Error naming `kernel`. Host code (the
// launchers and the CPU kernels' entry points).
template <class F>
void with_storage(DType dt, const char* kernel, const F& f) {
  switch (dt) {
    case DType::F32:
      return f.template operator()<DType::F32>();
    case DType::BF16:
      return f.template operator()<DType::BF16>();
    case DType::F16:
      return f.template operator()<DType::F16>();
    default:
      fail(kernel, ": storage type ", dtype_name(dt), " is not f32, bf16 or f16");
  }
}

// Load element i of a buffer of any storage type as f32, and store f32 into any storage type.
// Integer stores truncate toward zero and saturate at the type's range; NaN stores 0 (documented in
// engine/ops/copy.h). A plain C cast of an out-of-range float is undefined: x86 wraps, a GPU's cvt
// saturates, so the clamp is explicit to give both devices the same bits.
ENGINE_HD float saturate_for_int(float v, float lo, float hi) {
  return v != v ? 0.f : (v < lo ? lo : (v > hi ? hi : v));
}
ENGINE_HD float load_as_float(const void* p, DType t, int64_t i) {
  switch (t) {
    case DType::F32:
      return static_cast<const float*>(p)[i];
    case DType::F16:
      return half_bits_to_float(static_cast<const uint16_t*>(p)[i]);
    case DType::BF16:
      return bf16_bits_to_float(static_cast<const uint16_t*>(p)[i]);
    case DType::I32:
      return (float)static_cast<const int32_t*>(p)[i];
    case DType::I64:
      return (float)static_cast<const int64_t*>(p)[i];
    case DType::U8:
      return (float)static_cast<const uint8_t*>(p)[i];
  }
  return 0.f;
}
ENGINE_HD void store_from_float(void* p, DType t, int64_t i, float v) {
  switch (t) {
    case DType::F32:
      static_cast<float*>(p)[i] = v;
      break;
    case DType::F16:
      static_cast<uint16_t*>(p)[i] = float_to_half_bits(v);
      break;
    case DType::BF16:
      static_cast<uint16_t*>(p)[i] = float_to_bf16_bits(v);
      break;
    case DType::I32:
      static_cast<int32_t*>(p)[i] = (int32_t)saturate_for_int(v, -2147483648.f, 2147483520.f);
      break;
    case DType::I64:
      static_cast<int64_t*>(p)[i] = (int64_t)saturate_for_int(v, -9223372036854775808.f, 9223371487098961920.f);
      break;
    case DType::U8:
      static_cast<uint8_t*>(p)[i] = (uint8_t)saturate_for_int(v, 0.f, 255.f);
      break;
  }
}

}  // namespace engine::kernels
