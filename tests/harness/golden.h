// Loader for the golden files of tests/golden/ (written by tests/golden/gen_golden.py from PyTorch
// and numpy; format in tests/golden/README.md):
//   "EGLD", u32 version (1), u32 count,
//   count x { u32 name_len, name (utf-8), u32 dtype (0 = f32, 1 = i64), u32 rank, i64 dims[rank],
//             raw little-endian data, row-major },
//   "DNEG" (end marker: a truncated file is detected).
// Names are "<case>/<tensor>" (e.g. "stride2/gx"); cases() lists the distinct <case> prefixes in
// file order, so a new case in the script needs no change to the C++ test.
// Every problem (missing file, bad magic, truncation, unknown name, wrong dtype) is an engine::Error
// with a one-line message naming the file and the tensor.
#pragma once
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace engine::testing {

struct GoldenTensor {
  std::string name;
  DType dtype = DType::F32;  // F32 or I64
  Shape shape;
  std::vector<float> f32;    // when dtype == F32
  std::vector<int64_t> i64;  // when dtype == I64
  int64_t numel() const { return shape_numel(shape); }
};

class GoldenFile {
 public:
  // Reads and validates the whole file. Throws engine::Error.
  static GoldenFile load(const std::filesystem::path& path);

  const std::filesystem::path& path() const { return path_; }
  bool has(const std::string& name) const { return index_.count(name) != 0; }
  const GoldenTensor& get(const std::string& name) const;  // Error naming file and tensor if absent
  // The tensor on `device` (a fresh leaf, not requiring grad).
  Tensor tensor(const std::string& name, Device device = Device::cpu()) const;
  // Element `i` of an f32 / i64 tensor (scalar arguments such as strides or thresholds).
  float f32(const std::string& name, int64_t i = 0) const;
  int64_t i64(const std::string& name, int64_t i = 0) const;
  // Distinct "<case>" prefixes of the names, in file order.
  std::vector<std::string> cases() const;
  const std::vector<GoldenTensor>& tensors() const { return tensors_; }

 private:
  std::filesystem::path path_;
  std::vector<GoldenTensor> tensors_;
  std::map<std::string, size_t> index_;
};

// tests/golden/ in the source tree (located from this file's path; ENGINE_GOLDEN_DIR overrides).
std::filesystem::path golden_dir();

// The message for a missing golden file: what is missing and how to regenerate it.
std::string golden_missing_message(const std::filesystem::path& path);

// Compares an engine tensor (any device; f32 or i64) with a golden tensor: same shape, and
// |got - want| <= atol + rtol * |want| elementwise for f32 (exact for i64). On failure the message
// names `what`, the count of bad elements, and the worst one with its coordinates.
::testing::AssertionResult golden_close(const Tensor& got, const GoldenTensor& want, double atol, double rtol,
                                        const std::string& what);

}  // namespace engine::testing
