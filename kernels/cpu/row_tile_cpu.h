// Row tiles: the CPU layout behind the softmax, cross-entropy and argmax kernels that reduce over a
// short innermost axis (channels-last logits: L = 2..256 classes per pixel). CPU only.
//
// A tile is kRows = 16 consecutive rows (pixels) of L contiguous floats: 16 L floats, seen two ways.
//   lanes view: t[c * 16 + j] = row j, value c: one 16-float vector per c with the rows in SIMD
//     lanes. Per-row reductions (max, sum of exp, argmax, the label's logit) run lane-parallel with
//     no horizontal work. to_lanes() (kernels/cpu/isa_helpers.inc) builds it with one gather per c (after a prefetch of
//     the next tile, which hides most of the gathers' cache misses).
//   flat view: the tile's own memory, L vectors of 16 consecutive floats. Elementwise outputs
//     (softmax, log-softmax, the CE gradient) are computed and stored here: contiguous, no scatter.
//     Element k = 16 q + i belongs to row pix[k] = k / L; per-row values (a max, a 1 / sum, a label)
//     reach it through one register permute, spread().
// Rows past the last full tile go through the same code on a padded copy (pad_rows / the callers).
// Measured (2-core AVX-512 VM, 19 classes, one thread): softmax 1.5x, log-softmax 2.4x, CE backward
// 1.9x faster than the previous transposing loops with strided row stores and 16-lane scatters.
// Tested through tests/test_softmax.cpp and tests/test_loss.cpp (odd row counts around the tiles;
// L = 1, 2, 3, 5, 19, 33, 45).
#pragma once
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/shared_math.h"  // Storage<D>, used by the helpers of kernels/cpu/isa_helpers.inc

namespace engine::kernels::row_tile {

constexpr int kRows = 16;   // rows per tile: one AVX-512 register of floats
constexpr int kMaxL = 256;  // longest row a tile can hold (stack buffers of kMaxL * kRows floats)

// GCC vector types for the lane-parallel reductions (the accumulators stay in registers across the
// loop over c, which arrays inside `omp simd` loops do not). The helpers below return them by value;
// they are inline and never cross a library ABI, so GCC's note that this "changes the ABI" without
// AVX-512 is silenced for them.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
typedef float vf16 __attribute__((vector_size(64)));
typedef int32_t vi16 __attribute__((vector_size(64)));
// Unaligned, aliasing views for single-instruction loads and stores. (memcpy of a 64-byte vector is
// expanded as two 32-byte moves under GCC's default 256-bit move limit, and a 64-byte load right
// after two 32-byte stores stalls on store forwarding.)
typedef float vf16_u __attribute__((vector_size(64), aligned(4), may_alias));
typedef int32_t vi16_u __attribute__((vector_size(64), aligned(4), may_alias));

// Always inlined: the kernels that use them are compiled once per instruction set
// (kernels/cpu/isa_variants.inc), and a 64-byte vector must never be passed between code compiled
// for different instruction sets (their calling conventions for it differ).
#define ROW_TILE_INLINE inline __attribute__((always_inline))
ROW_TILE_INLINE vf16 load(const float* p) { return *reinterpret_cast<const vf16_u*>(p); }
ROW_TILE_INLINE void store(float* p, const vf16& v) { *reinterpret_cast<vf16_u*>(p) = v; }
ROW_TILE_INLINE vi16 load(const int32_t* p) { return *reinterpret_cast<const vi16_u*>(p); }
ROW_TILE_INLINE void store(int32_t* p, const vi16& v) { *reinterpret_cast<vi16_u*>(p) = v; }

// Index tables of one row length L (1 <= L <= kMaxL), built once per kernel call and shared
// read-only by the threads.
struct Index {
  int L;
  std::vector<int32_t> pix;             // flat element k -> row k / L
  std::vector<int32_t> cls;             // flat element k -> position in its row, k % L
  alignas(64) int32_t lane_off[kRows];  // row j -> j * L (gather offsets)
  explicit Index(int L_) : L(L_), pix((size_t)(L_ * kRows)), cls((size_t)(L_ * kRows)) {
    for (int k = 0; k < L * kRows; ++k) {
      pix[(size_t)k] = k / L;
      cls[(size_t)k] = k % L;
    }
    for (int j = 0; j < kRows; ++j) lane_off[j] = j * L;
  }
};

// Starts loading the tile after the one at x (its 16 L floats) into L1: the gathers of to_lanes()
// touch 16 L / 16 lines at once and would otherwise wait for each miss.
ROW_TILE_INLINE void prefetch_next(const float* x, int L) {
  const char* p = reinterpret_cast<const char*>(x + kRows * L);
  for (int b = 0; b < L * kRows * 4; b += 64) __builtin_prefetch(p + b, 0, 3);
}
// out[i] = v[idx[i]] for the 16 entries of idx (each in [0, 16)): one vpermps with AVX-512.
ROW_TILE_INLINE void spread(const float* v, const int32_t* idx, float* out) {
#if defined(__GNUC__) && !defined(__clang__)
  store(out, __builtin_shuffle(load(v), load(idx)));
#else
  for (int k = 0; k < kRows; ++k) out[k] = v[idx[k]];
#endif
}
ROW_TILE_INLINE void spread(const int32_t* v, const int32_t* idx, int32_t* out) {
#if defined(__GNUC__) && !defined(__clang__)
  store(out, __builtin_shuffle(load(v), load(idx)));
#else
  for (int k = 0; k < kRows; ++k) out[k] = v[idx[k]];
#endif
}

// Copies the n < 16 rows at x into a full tile buffer (16 L floats), the missing rows filled with
// `fill`, so the last partial tile can run the full-tile code.
ROW_TILE_INLINE void pad_rows(const float* x, int n, int L, float fill, float* tile) {
  std::memcpy(tile, x, sizeof(float) * (size_t)(n * L));
  for (int k = n * L; k < kRows * L; ++k) tile[k] = fill;
}

}  // namespace engine::kernels::row_tile

#undef ROW_TILE_INLINE

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
