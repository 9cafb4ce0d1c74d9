// Copy and cast family on the CPU. The kernels are in copy_cpu.inc (math, layout and strategy at its top),
// compiled there once per instruction set; the functions below run the variant of the active one
// (kernels/cpu/cpu_isa.h).
#include "kernels/cpu/copy_cpu.h"

#include <cstring>

#include "kernels/cpu/cpu_isa.h"
#define ENGINE_CPU_KERNELS "kernels/cpu/copy_cpu.inc"
#include "kernels/cpu/isa_variants.inc"

namespace engine::kernels {

void strided_copy_cpu(const void* src, DType sdt, const StridedLayout& sl, void* dst, DType ddt,
                      const StridedLayout& dl, int64_t n) {
  ENGINE_CPU_DISPATCH(strided_copy_cpu)(src, sdt, sl, dst, ddt, dl, n);
}

void fill_cpu(void* dst, DType dtype, int64_t n, float value) { ENGINE_CPU_DISPATCH(fill_cpu)(dst, dtype, n, value); }

}  // namespace engine::kernels
