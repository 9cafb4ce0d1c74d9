#include "engine/precision.h"

#include <atomic>

#include "base/cuda_context.h"
#include "base/error.h"
#include "kernels/cpu/cpu_isa.h"

namespace engine {

namespace {
std::atomic<Precision> g_autocast{Precision::FP32};
std::atomic<AmpLevel> g_amp_level{AmpLevel::O1};
}  // namespace

Precision parse_precision(const std::string& s, const std::string& what) {
  if (s == "fp32") return Precision::FP32;
  if (s == "tf32") return Precision::TF32;
  if (s == "bf16") return Precision::BF16;
  if (s == "fp16") return Precision::FP16;
  fail(what, ": expected fp32, tf32, bf16 or fp16, got '", s, "'");
}

AmpLevel parse_amp_level(const std::string& s, const std::string& what) {
  if (s == "O1") return AmpLevel::O1;
  if (s == "O2") return AmpLevel::O2;
  fail(what, ": expected O1 or O2, got '", s, "'");
}

const char* precision_name(Precision p) {
  switch (p) {
    case Precision::FP32:
      return "fp32";
    case Precision::TF32:
      return "tf32";
    case Precision::BF16:
      return "bf16";
    case Precision::FP16:
      return "fp16";
  }
  return "?";
}

const char* amp_level_name(AmpLevel l) { return l == AmpLevel::O1 ? "O1" : "O2"; }

#if defined(ENGINE_CUDA_REAL)
namespace {
// The compute capability major of a real GPU (8 = Ampere, 9 = Hopper).
int compute_capability_major(Device device) {
  int major = 0;
  CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device.index));
  return major;
}
}  // namespace
#endif

void check_precision_available(Precision p, AmpLevel level, Device device) {
  if (p == Precision::FP32) return;
  const std::string name = std::string("--precision ") + precision_name(p);
  ENGINE_CHECK(level == AmpLevel::O1 || p != Precision::TF32, name,
               " keeps every tensor f32, so --amp_level O2 (activations stored in bf16 or fp16) does not apply; use "
               "--amp_level O1, or --precision bf16 / fp16 with O2");
  ENGINE_CHECK(p != Precision::TF32 || !device.is_cpu(), name,
               " is a GPU tensor-core math mode; CPUs have no TF32, use fp32 or bf16");
  // fp16 convolutions exist for the GPU's numerics; on a CPU device they would be slower than fp32
  // for no gain.
  ENGINE_CHECK(p != Precision::FP16 || !device.is_cpu(), name,
               " is a GPU precision: the CPU has no faster fp16 convolution than fp32; on the CPU use --precision "
               "bf16 (needs AVX512-BF16 or AMX-BF16) or fp32");
  // The emulated GPU computes every precision on any CPU (its cuDNN widens the low types to f32,
  // kernels/emu/cudnn_emu.cpp).
  if (device.is_cuda()) {
#if defined(ENGINE_CUDA_REAL)
    const int major = compute_capability_major(device);
    ENGINE_CHECK(p == Precision::FP16 || major >= 8, name, " needs a GPU of compute capability 8.0 or newer (Ampere, ",
                 "Hopper), this one is ", major, ".x; use --precision fp16 or fp32");
#endif
    return;
  }
  ENGINE_CHECK(p != Precision::BF16 || kernels::cpu_has_bf16(), name,
               " needs a CPU with AVX512-BF16 or AMX-BF16, which this CPU (", kernels::cpu_model_name(),
               ") does not have; use --precision fp32");
}

void set_autocast_precision(Precision p) { g_autocast.store(p); }
Precision autocast_precision() { return g_autocast.load(); }
void set_amp_level(AmpLevel l) { g_amp_level.store(l); }
AmpLevel amp_level() { return g_amp_level.load(); }

DType activation_dtype() {
  if (amp_level() != AmpLevel::O2) return DType::F32;
  switch (autocast_precision()) {
    case Precision::BF16:
      return DType::BF16;
    case Precision::FP16:
      return DType::F16;
    default:
      return DType::F32;
  }
}

}  // namespace engine
