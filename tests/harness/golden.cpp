#include "tests/harness/golden.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "base/error.h"

namespace engine::testing {

namespace {

constexpr uint32_t kVersion = 1;
constexpr uint32_t kDtypeF32 = 0, kDtypeI64 = 1;

// Reads from a byte buffer with bounds checks. The files are little-endian, as every target of this
// engine is (x86-64, aarch64); memcpy keeps the reads alignment-safe.
class Reader {
 public:
  Reader(const std::string& file, const std::vector<char>& buf) : file_(file), buf_(buf) {}
  void bytes(void* dst, size_t n, const char* what) {
    if (n > buf_.size() - pos_)
      fail("golden file ", file_, ": truncated while reading ", what, " at byte ", pos_, " (size ", buf_.size(), ")");
    if (n) std::memcpy(dst, buf_.data() + pos_, n);  // dst may be null for an empty tensor
    pos_ += n;
  }
  template <class T>
  T pod(const char* what) {
    T v;
    bytes(&v, sizeof v, what);
    return v;
  }
  size_t pos() const { return pos_; }
  size_t size() const { return buf_.size(); }

 private:
  const std::string& file_;
  const std::vector<char>& buf_;
  size_t pos_ = 0;
};

}  // namespace

GoldenFile GoldenFile::load(const std::filesystem::path& path) {
  const std::string file = path.string();
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(golden_missing_message(path));
  std::vector<char> buf((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  Reader r(file, buf);
  char magic[4];
  r.bytes(magic, 4, "the magic");
  if (std::memcmp(magic, "EGLD", 4) != 0) fail("golden file ", file, ": bad magic (not a golden file)");
  const uint32_t version = r.pod<uint32_t>("the version");
  if (version != kVersion) fail("golden file ", file, ": version ", version, ", this loader reads ", kVersion);
  const uint32_t count = r.pod<uint32_t>("the tensor count");
  GoldenFile g;
  g.path_ = path;
  for (uint32_t t = 0; t < count; ++t) {
    GoldenTensor gt;
    const uint32_t name_len = r.pod<uint32_t>("a name length");
    if (name_len == 0 || name_len > 4096)
      fail("golden file ", file, ": tensor ", t, " has a bad name length ", name_len);
    gt.name.resize(name_len);
    r.bytes(gt.name.data(), name_len, "a name");
    const uint32_t dtype = r.pod<uint32_t>("a dtype");
    if (dtype != kDtypeF32 && dtype != kDtypeI64)
      fail("golden file ", file, ": tensor ", gt.name, " has dtype code ", dtype);
    gt.dtype = dtype == kDtypeF32 ? DType::F32 : DType::I64;
    const uint32_t rank = r.pod<uint32_t>("a rank");
    if (rank > 8) fail("golden file ", file, ": tensor ", gt.name, " has rank ", rank);
    gt.shape.resize(rank);
    for (uint32_t d = 0; d < rank; ++d) {
      gt.shape[d] = r.pod<int64_t>("a dim");
      if (gt.shape[d] < 0 || gt.shape[d] > (int64_t)1 << 30)
        fail("golden file ", file, ": tensor ", gt.name, " has dim ", gt.shape[d]);
    }
    const size_t n = (size_t)gt.numel();
    if (gt.dtype == DType::F32) {
      gt.f32.resize(n);
      r.bytes(gt.f32.data(), n * sizeof(float), gt.name.c_str());
    } else {
      gt.i64.resize(n);
      r.bytes(gt.i64.data(), n * sizeof(int64_t), gt.name.c_str());
    }
    if (g.index_.count(gt.name)) fail("golden file ", file, ": tensor ", gt.name, " appears twice");
    g.index_[gt.name] = g.tensors_.size();
    g.tensors_.push_back(std::move(gt));
  }
  char end[4];
  r.bytes(end, 4, "the end marker");
  if (std::memcmp(end, "DNEG", 4) != 0 || r.pos() != r.size())
    fail("golden file ", file, ": bad end marker or trailing bytes (corrupt file?)");
  return g;
}

const GoldenTensor& GoldenFile::get(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end())
    fail("golden file ", path_.string(), ": no tensor '", name, "' (regenerate: python3 tests/golden/gen_golden.py)");
  return tensors_[it->second];
}

Tensor GoldenFile::tensor(const std::string& name, Device device) const {
  const GoldenTensor& g = get(name);
  return g.dtype == DType::F32 ? Tensor::from_vector(g.f32, g.shape, device)
                               : Tensor::from_vector_i64(g.i64, g.shape, device);
}

float GoldenFile::f32(const std::string& name, int64_t i) const {
  const GoldenTensor& g = get(name);
  if (g.dtype != DType::F32 || i < 0 || i >= g.numel())
    fail("golden file ", path_.string(), ": tensor '", name, "' has no f32 element ", i);
  return g.f32[(size_t)i];
}

int64_t GoldenFile::i64(const std::string& name, int64_t i) const {
  const GoldenTensor& g = get(name);
  if (g.dtype != DType::I64 || i < 0 || i >= g.numel())
    fail("golden file ", path_.string(), ": tensor '", name, "' has no i64 element ", i);
  return g.i64[(size_t)i];
}

std::vector<std::string> GoldenFile::cases() const {
  std::vector<std::string> out;
  for (const GoldenTensor& t : tensors_) {
    const size_t slash = t.name.find('/');
    if (slash == std::string::npos) continue;
    const std::string c = t.name.substr(0, slash);
    if (out.empty() || out.back() != c) {
      bool seen = false;
      for (const auto& o : out) seen = seen || o == c;
      if (!seen) out.push_back(c);
    }
  }
  return out;
}

std::filesystem::path golden_dir() {
  if (const char* env = std::getenv("ENGINE_GOLDEN_DIR"); env && *env) return env;
  return std::filesystem::path(__FILE__).parent_path().parent_path() / "golden";
}

std::string golden_missing_message(const std::filesystem::path& path) {
  return "golden file " + path.string() +
         " is missing or unreadable; the files are committed with the tests - regenerate them with "
         "'pip install torch numpy && python3 tests/golden/gen_golden.py' (see tests/golden/README.md)";
}

::testing::AssertionResult golden_close(const Tensor& got, const GoldenTensor& want, double atol, double rtol,
                                        const std::string& what) {
  if (!got.defined()) return ::testing::AssertionFailure() << what << ": the engine gave no tensor (undefined)";
  if (got.shape() != want.shape)
    return ::testing::AssertionFailure() << what << ": shape " << shape_str(got.shape()) << ", expected "
                                         << shape_str(want.shape);
  const int64_t n = want.numel();
  int64_t bad = 0, worst = -1;
  double worst_excess = -1, got_w = 0, want_w = 0;
  if (want.dtype == DType::I64) {
    if (got.dtype() != DType::I64 && got.dtype() != DType::I32)
      return ::testing::AssertionFailure() << what << ": dtype " << dtype_name(got.dtype()) << ", expected i64";
    const std::vector<int64_t> g = got.to_vector_i64();
    for (int64_t i = 0; i < n; ++i)
      if (g[(size_t)i] != want.i64[(size_t)i]) {
        if (bad++ == 0) {
          worst = i;
          got_w = (double)g[(size_t)i];
          want_w = (double)want.i64[(size_t)i];
        }
      }
  } else {
    if (got.dtype() != DType::F32)
      return ::testing::AssertionFailure() << what << ": dtype " << dtype_name(got.dtype()) << ", expected f32";
    const std::vector<float> g = got.to_vector();
    for (int64_t i = 0; i < n; ++i) {
      const double a = g[(size_t)i], b = want.f32[(size_t)i];
      const double excess = std::isfinite(a) ? std::fabs(a - b) - (atol + rtol * std::fabs(b)) : INFINITY;
      if (excess > 0) {
        ++bad;
        if (excess > worst_excess) {
          worst_excess = excess;
          worst = i;
          got_w = a;
          want_w = b;
        }
      }
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  std::vector<int64_t> coord(want.shape.size());
  for (int d = (int)want.shape.size() - 1; d >= 0; --d) {
    coord[(size_t)d] = worst % want.shape[(size_t)d];
    worst /= want.shape[(size_t)d];
  }
  std::ostringstream s;
  s.precision(9);
  s << what << ": " << bad << " of " << n << " elements differ from the golden '" << want.name << "' (atol " << atol
    << ", rtol " << rtol << "); worst at " << shape_str(coord) << ": got " << got_w << ", expected " << want_w;
  return ::testing::AssertionFailure() << s.str();
}

}  // namespace engine::testing
