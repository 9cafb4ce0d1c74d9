// Devices. Device choice follows `--device cpu|gpu` (gpu is the default when a CUDA device exists);
// CUDA_VISIBLE_DEVICES is honoured and an empty value means CPU. In the CPU-only build there is no
// CUDA device at all; in the emulated build the CUDA device is the host running the .cu kernels.
#pragma once
#include <cstdint>
#include <string>

namespace engine {

enum class DeviceKind : uint8_t { CPU, CUDA };

struct Device {
  DeviceKind kind = DeviceKind::CPU;
  int index = 0;

  static Device cpu() { return {DeviceKind::CPU, 0}; }
  static Device cuda(int i = 0) { return {DeviceKind::CUDA, i}; }
  bool is_cpu() const { return kind == DeviceKind::CPU; }
  bool is_cuda() const { return kind == DeviceKind::CUDA; }
  bool operator==(const Device& o) const { return kind == o.kind && index == o.index; }
  bool operator!=(const Device& o) const { return !(*this == o); }
  std::string str() const;
};

// Number of usable CUDA devices (0 in the CPU-only build or without a driver). The first call that
// finds none in a CUDA build prints one "no CUDA device" line to stderr.
int cuda_device_count();
inline bool cuda_available() { return cuda_device_count() > 0; }
// True when the CUDA device is the emulation layer (kernels run on the host).
bool cuda_is_emulated();
// "cpu", "gpu"/"cuda" (device 0) or "cuda:N"/"gpu:N". "gpu" without a usable device is an Error.
Device parse_device(const std::string& s);
// gpu when a CUDA device is available, else cpu.
Device default_device();

// One process per device: data-parallel training runs one process per GPU, and each process drives
// exactly one device, so the engine keeps a single per-process CUDA state (compute stream, caching
// allocator, cuBLAS/cuDNN handles), created lazily on the selected device at the first CUDA op. The
// trainer calls select_cuda_device(local index) once at startup, before any CUDA work; without a call
// the device is cuda:0. Selecting another device once that state exists is an Error (it cannot
// move), and so is a tensor on any cuda:N other than the selected one (never the wrong GPU
// silently). The CPU-only and emulated builds have one device index: 0 is accepted, others are an
// Error.
void select_cuda_device(int index);
// The index select_cuda_device chose (0 without a call).
int selected_cuda_device();

}  // namespace engine
