// Shared by the command-line programs. --device: "" = the engine's default (the GPU when one is usable,
// else the CPU), "cpu", or "gpu"/"gpu:N". A device that cannot be used is a flag error (exit code 2),
// never a crash or a silent switch to the CPU.
#pragma once
#include <cstdio>
#include <exception>
#include <string>

#include "engine/device.h"
#include "base/error.h"
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
