// Numeric precision of a run: PaddleSeg's `--precision` and `--amp_level` (docs/TRAINING.md "Mixed
// precision"). The engine's autocast: while the precision is BF16 or FP16, conv2d multiplies in that
// type (its inputs rounded to nearest even) and accumulates in f32. At level O1 its output and every
// other tensor stay f32, as in PaddleSeg's O1 (a white list of ops in the low type, the rest in f32).
// At O2 the models store their activations in the low type (activation_dtype()): conv2d then reads
// and writes them in it, the activation ops compute in f32 and round once on store, and losses,
// metrics, batch-norm statistics, the weights, the momentum and checkpoints stay f32. TF32 keeps
// every tensor f32 and lets cuDNN / cuBLAS use TF32 tensor-core math on a real GPU. The precision an
// op used is recorded with its backward, so a backward pass uses the same precision as its forward.
// FP16 training scales the loss (train/grad_scaler.h, Paddle's GradScaler).
// Where each runs (check_precision_available refuses the rest with a one-line error):
//   bf16: CPUs with AVX512-BF16 or AMX-BF16 (oneDNN); the emulated GPU (through the CPU kernel);
//         real GPUs of compute capability 8.0+ (cuDNN). O1 and O2.
//   fp16: the emulated GPU (through the CPU kernel's fp16 path); real GPUs (cuDNN). Not on a CPU
//         device. O1 and O2.
//   tf32: real GPUs of compute capability 8.0+ only; O1 only (its tensors are f32).
#pragma once
#include <cstdint>
#include <string>

#include "base/dtype.h"
#include "engine/device.h"

namespace engine {

enum class Precision : uint8_t { FP32, TF32, BF16, FP16 };
enum class AmpLevel : uint8_t { O1, O2 };

// "fp32", "tf32", "bf16", "fp16" / "O1", "O2"; anything else is an Error naming `what` (the flag or key).
Precision parse_precision(const std::string& s, const std::string& what);
AmpLevel parse_amp_level(const std::string& s, const std::string& what);
const char* precision_name(Precision p);
const char* amp_level_name(AmpLevel l);

// An Error (one line: what is missing and what to use instead) unless this build and machine can run
// `p` at `level` on `device`.
void check_precision_available(Precision p, AmpLevel level, Device device);

// The process-wide autocast precision of conv2d (FP32 by default) and level (O1 by default). Set
// once at startup by the programs (engine-train, engine-eval, bench_train) and by tests through
// AutocastGuard.
void set_autocast_precision(Precision p);
Precision autocast_precision();
void set_amp_level(AmpLevel l);
AmpLevel amp_level();

// The storage type of the models' activations: BF16 / F16 at O2 with that precision, else F32. The
// models cast their input images to it and their outputs back to f32 (losses, metrics and
// post-processing are f32, as Paddle's O2 black list keeps them).
DType activation_dtype();

class AutocastGuard {
 public:
  explicit AutocastGuard(Precision p, AmpLevel l = AmpLevel::O1)
      : saved_(autocast_precision()), saved_level_(amp_level()) {
    set_autocast_precision(p);
    set_amp_level(l);
  }
  ~AutocastGuard() {
    set_autocast_precision(saved_);
    set_amp_level(saved_level_);
  }
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  Precision saved_;
  AmpLevel saved_level_;
};

}  // namespace engine
