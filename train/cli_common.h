// Shared by the command-line programs. --device: "" = the engine's default (the GPU when one is usable,
// else the CPU), "cpu", or "gpu"/"gpu:N". A device that cannot be used is a flag error (exit code 2),
// never a crash or a silent switch to the CPU.
#pragma once
#include <cstdio>
#include <exception>
#include <string>

#include "base/error.h"
#include "engine/device.h"
#include "engine/precision.h"
#include "train/config.h"

namespace engine::train {

// The process then drives that device (select_cuda_device: gpu:N works as CUDA_VISIBLE_DEVICES=N).
inline Device device_from_flag(const std::string& flag) {
  if (flag.empty()) return default_device();
  try {
    const Device d = parse_device(flag);
    if (d.is_cuda()) select_cuda_device(d.index);
    return d;
  } catch (const ConfigError&) {
    throw;
  } catch (const Error& e) {
    throw ConfigError(std::string("--device: ") + e.what());
  }
}

// The run's precision (engine/precision.h): the --precision / --amp_level flags when given, else the
// config's `precision` / `amp_level` keys. Checked for this build, CPU and device (what is not
// available is a ConfigError, exit code 2, before anything is written) and set as the autocast
// precision of the process. Returns the line the programs log, e.g. "precision bf16 (O1: ...)", or
// "" for fp32 (the logs of fp32 runs stay as they were).
inline std::string apply_precision(const std::string& precision_flag, const std::string& amp_flag,
                                   Precision config_precision, AmpLevel config_level, Device device) {
  const Precision p = precision_flag.empty() ? config_precision : parse_precision(precision_flag, "--precision");
  const AmpLevel l = amp_flag.empty() ? config_level : parse_amp_level(amp_flag, "--amp_level");
  try {
    check_precision_available(p, l, device);
  } catch (const Error& e) {
    throw ConfigError(e.what());
  }
  set_autocast_precision(p);
  set_amp_level(l);
  if (p == Precision::FP32) return "";
  if (p == Precision::TF32) return "precision tf32 (O1: f32 tensors, TF32 tensor-core math in cuDNN and cuBLAS)";
  const std::string what = l == AmpLevel::O1 ? "convolutions multiply in " + std::string(precision_name(p)) +
                                                   " and accumulate in f32; activations, weights, momentum, batch "
                                                   "norm, losses and checkpoints f32"
                                             : "activations stored in " + std::string(precision_name(p)) +
                                                   ", computed in f32; weights, momentum, batch-norm statistics, "
                                                   "losses and checkpoints f32";
  return std::string("precision ") + precision_name(p) + " (" + amp_level_name(l) + ": " + what +
         (p == Precision::FP16 ? "; dynamic loss scaling in training)" : ")");
}

// Prints "<program>: <message>" to stderr once (messages from the flag parsers already start with
// the program's name).
inline void report_error(const char* program, const std::exception& e) {
  const std::string msg = e.what(), prefix = std::string(program) + ":";
  if (msg.rfind(prefix, 0) == 0)
    std::fprintf(stderr, "%s\n", msg.c_str());
  else
    std::fprintf(stderr, "%s: %s\n", program, msg.c_str());
}

}  // namespace engine::train
