// Element types. f32 is the compute type of every op; the others are storage types that ops
// convert from and to with cast(). Sizes and names in one place.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace engine {

enum class DType : uint8_t { F32, F16, BF16, I32, I64, U8 };

constexpr size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32:
      return 4;
    case DType::F16:
      return 2;
    case DType::BF16:
      return 2;
    case DType::I32:
      return 4;
    case DType::I64:
      return 8;
    case DType::U8:
      return 1;
  }
  return 0;
}

// The float storage types (f32 and the 16-bit ones the mixed-precision kernels read and write).
constexpr bool is_float_storage(DType t) { return t == DType::F32 || t == DType::BF16 || t == DType::F16; }

constexpr const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32:
      return "f32";
    case DType::F16:
      return "f16";
    case DType::BF16:
      return "bf16";
    case DType::I32:
      return "i32";
    case DType::I64:
      return "i64";
    case DType::U8:
      return "u8";
  }
  return "?";
}

}  // namespace engine
