// The convolution's weight-gradient reorder on the CPU. The kernel is in weight_reorder_cpu.inc
// (layout and strategy at its top), compiled there once per instruction set; the functions below
// check the layout and run the variant of the active one (kernels/cpu/cpu_isa.h).
#include "kernels/cpu/weight_reorder_cpu.h"

#include <omp.h>

#include <algorithm>
#include <vector>

#include "kernels/cpu/cpu_isa.h"

#define ENGINE_CPU_KERNELS "kernels/cpu/weight_reorder_cpu.inc"
#include "kernels/cpu/isa_variants.inc"

namespace engine::kernels {

bool blocked_weights_of(const dnnl_memory_desc_t& md, BlockedWeights& b) {
  if (md.ndims != 4 || md.data_type != dnnl_f32 || md.format_kind != dnnl_blocked || md.offset0 != 0 ||
      md.extra.flags != 0)
    return false;
  const dnnl_blocking_desc_t& bl = md.format_desc.blocking;
  if (bl.inner_nblks < 1 || bl.inner_nblks > 4) return false;
  int64_t block[2] = {1, 1};
  b.nblks = bl.inner_nblks;
  for (int k = 0; k < b.nblks; ++k) {
    if ((bl.inner_idxs[k] != 0 && bl.inner_idxs[k] != 1) || bl.inner_blks[k] < 1) return false;
    b.blks[k] = bl.inner_blks[k];
    b.idxs[k] = (int)bl.inner_idxs[k];
    block[b.idxs[k]] *= b.blks[k];
  }
  for (int d = 0; d < 4; ++d) {
    if (md.padded_offsets[d] != 0 || md.dims[d] < 1 || bl.strides[d] < 0) return false;
    b.dims[d] = md.dims[d];
    b.padded[d] = md.padded_dims[d];
    b.strides[d] = bl.strides[d];
  }
  const int64_t tile = block[0] * block[1];
  if (tile < 16 || tile > 4096 || tile % 16 != 0) return false;
  for (int d = 0; d < 2; ++d)
    if (b.padded[d] % block[d] != 0 || b.padded[d] < b.dims[d] || b.padded[d] - b.dims[d] >= block[d]) return false;
  if (b.padded[2] != b.dims[2] || b.padded[3] != b.dims[3]) return false;
  // int32 tables: a tile's blocked offsets at every kernel position, and each tile's origin.
  const int64_t hw = b.dims[2] * b.dims[3];
  if (tile * hw > (int64_t{1} << 16)) return false;
  int64_t max_off = tile;
  for (int d = 0; d < 4; ++d) max_off += b.strides[d] * ((d < 2 ? b.padded[d] / block[d] : b.dims[d]) - 1);
  return max_off < (int64_t{1} << 31);
}

void weights_from_blocked_cpu(const float* blocked, const BlockedWeights& b, float* oihw) {
  ENGINE_CPU_DISPATCH(weights_from_blocked_cpu)(blocked, b, oihw);
}

}  // namespace engine::kernels
