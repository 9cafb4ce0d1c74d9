// The instruction set of the CPU kernels, chosen at run time, so one binary runs on any x86-64 CPU of
// the build's baseline and uses AVX-512 where the CPU has it.
//
// The build targets a baseline (CMake ENGINE_CPU_BASELINE, default x86-64-v3: AVX2, FMA, BMI2, F16C);
// a program started on a CPU below it stops at once with one line naming the CPU and the baseline
// instead of dying with SIGILL later. Each kernel family whose loops gain from wider vectors is
// compiled twice inside its translation unit (kernels/cpu/isa_variants.inc): once for the baseline
// (namespace isa_base) and once with AVX-512 F/BW/CD/DQ/VL enabled (namespace isa_avx512); its public
// functions call ENGINE_CPU_DISPATCH(fn), which picks the variant for the active ISA.
//
// The active ISA is the best the CPU supports; ENGINE_CPU_ISA=avx2 (or "base") caps it at the
// baseline, ENGINE_CPU_ISA=avx512 insists on AVX-512 (an error on a CPU without it). Both variants
// compute the same bits: host code is compiled with -ffp-contract=off, fused multiply-adds are the
// explicit fmaf calls of the shared math headers, and every reduction's association is fixed by the
// shape (16-lane accumulators), never by the vector width. tests/test_cpu_isa.cpp checks that.
// With -DENGINE_NATIVE=ON the whole build targets the build machine (-march=native) and the kernels
// are compiled once (no dispatch, no baseline check).
#pragma once
#include <string>

namespace engine::kernels {

enum class CpuIsa : int { Base = 0, Avx512 = 1 };

// The ISA the kernels run now (detected on first use; ENGINE_CPU_ISA caps it). Cheap: a load.
CpuIsa cpu_isa();
// Whether this CPU (and this build) can run the given ISA's kernels.
bool cpu_isa_supported(CpuIsa isa);
// Switches the kernels to another ISA (tests and benchmarks); an unsupported one is an Error.
void set_cpu_isa(CpuIsa isa);
// "avx2" (the x86-64-v3 baseline), "native", or "avx512".
const char* cpu_isa_name(CpuIsa isa);
// The baseline the build targets: "x86-64-v3" (default), another -march value, or "native".
const char* cpu_build_baseline();
// The CPU's marketing name from /proc/cpuinfo (e.g. "AMD EPYC 9R14"), or "unknown CPU".
std::string cpu_model_name();
// Whether the CPU multiplies bfloat16 natively (AVX512-BF16 or AMX-BF16): what bf16 convolutions
// (--precision bf16) need on the CPU. Independent of the kernels' ISA above: oneDNN picks its own.
bool cpu_has_bf16();
// One line for benchmark and test reports: model, cores, the kernels' ISA and the build baseline.
std::string cpu_description();

}  // namespace engine::kernels

#if defined(ENGINE_CPU_MULTI_ISA) && ENGINE_CPU_MULTI_ISA
#define ENGINE_CPU_DISPATCH(fn) \
  (::engine::kernels::cpu_isa() == ::engine::kernels::CpuIsa::Avx512 ? isa_avx512::fn : isa_base::fn)
#else
#define ENGINE_CPU_DISPATCH(fn) (isa_base::fn)
#endif
