// The convolution's weight-gradient reorder on the CPU (kernels/cpu/conv_cpu.cpp): oneDNN's
// backward-weights primitives write the gradient in a blocked layout of their choice (e.g.
// ABcd16b16a), and the engine's parameters and optimizer want OIHW.
//
// Why not oneDNN's own reorder: measured in PP-LiteSeg-B's bf16 training step on a 2-core Xeon
// (AMX), oneDNN 2.6's jit:uni reorder took about 6.4 ms per step for these gradients and this kernel
// about 4.5 ms (docs/BENCHMARKS.md). (The other direction, OIHW f32 weights into the forward's and
// backward-data's blocked bf16 layouts, was written the same way and ran no faster than oneDNN's,
// both at the DRAM bandwidth of reading the weights cold, so oneDNN keeps it.)
#pragma once
#include <dnnl_types.h>

#include <cstdint>

namespace engine::kernels {

// A 4-D weight layout of oneDNN's blocked kind without oneDNN's types: logical dims (O, I, H, W),
// the dims padded up to whole blocks, each dim's outer stride in elements (the stride of
// index / block), and the inner blocks, outermost first, each over dim 0 (O) or 1 (I): oneDNN's
// AcdB16b32a2b is blocks {16, 32, 2} over dims {1, 0, 1}.
struct BlockedWeights {
  int64_t dims[4] = {0, 0, 0, 0};
  int64_t padded[4] = {0, 0, 0, 0};
  int64_t strides[4] = {0, 0, 0, 0};
  int nblks = 0;
  int64_t blks[4] = {0, 0, 0, 0};
  int idxs[4] = {0, 0, 0, 0};
};

// md as a BlockedWeights when the kernel below takes it: f32, 4-D, blocked, no offsets or extra
// data, 1 to 4 inner blocks over O and I only making a tile (one O block x one I block at one
// kernel position) of 16 to 4096 elements, a multiple of 16; H and W not padded; index tables
// within int32. False otherwise (conv_cpu.cpp then uses oneDNN's reorder).
bool blocked_weights_of(const dnnl_memory_desc_t& md, BlockedWeights& out);

// blocked (layout b) -> OIHW f32; the padding of partial blocks is not read.
void weights_from_blocked_cpu(const float* blocked, const BlockedWeights& b, float* oihw);

}  // namespace engine::kernels
