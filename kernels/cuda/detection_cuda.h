// CUDA launchers of the detection post-processing family (kernels/cuda/detection.cu). Same semantics
// as kernels/cpu/detection_cpu.h, bit for bit. All pointers are device pointers; every launcher runs
// on `stream` and never synchronises. The op layer (engine/ops/detection.cpp) sequences the NMS
// launchers and reads back the two count arrays that size the workspaces and the output.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cpu/detection_cpu.h"

namespace engine::kernels {

// yolo_box: x f32 [N, H, W, A*(5+C)], img_hw i32 [N, 2], anchors f32 [2A]; writes every element of
// boxes [N, A*H*W, 4] and scores [N, A*H*W, C].
void yolo_box_cuda(const float* x, const int32_t* img_hw, const float* anchors, const YoloBoxGeom& g, float* boxes,
                   float* scores, cudaStream_t stream);

// ---- multiclass NMS, in launch order. A segment s = n*C + c is one (image, class) pair; its
// candidates are packed at [seg_off[s], seg_off[s+1]) of the cand_* arrays (L_s = min(cnt_s, top_k)).

// cnt[s] = #{m : scores[n, m, c] > thr} (0 for the background class).
void nms_count_cuda(const float* scores, int64_t N, int64_t M, int64_t C, float thr, int64_t background, int64_t* cnt,
                    cudaStream_t stream);

// Candidates of every segment, sorted by (score desc, index asc) and cut to L_s: cand_idx (box
// index m), cand_score, cand_box (4 floats). Sorting happens in shared memory when L_s <=
// nms_sort_smem_cap(), else in gkeys (i64 workspace of seg_off[S] entries; may be null when
// max_L <= the cap).
int64_t nms_sort_smem_cap();
void nms_sort_cuda(const float* boxes, const float* scores, int64_t N, int64_t M, int64_t C, float thr,
                   const int64_t* cnt, const int64_t* seg_off, int64_t max_L, uint64_t* gkeys, int32_t* cand_idx,
                   float* cand_score, float* cand_box, cudaStream_t stream);

// Suppression bitmask (fixed threshold): for each segment, row i, 64-column block b (b >= i / 64):
// bit j set when candidate 64b + j > i has !(IoU <= thr) with candidate i. Segment s's rows start at
// mask_off[s] (L_s * nb_s words, nb_s = ceil(L_s / 64)); its upper-triangle tiles are numbered from
// tile_off[s] (nb_s (nb_s + 1) / 2 tiles of 64 x 64).
void nms_mask_cuda(const float* cand_box, const int64_t* seg_off, const int64_t* mask_off, const int64_t* tile_off,
                   int64_t nseg, int64_t ntiles, float thr, bool normalized, uint64_t* mask, cudaStream_t stream);
// Greedy scan of the mask, one warp per segment: keep_pos[seg_off[s] + k] = sorted position of the
// k-th kept candidate, kept[s] = their number. max_nb = max over segments of nb_s.
void nms_scan_mask_cuda(const int64_t* seg_off, const int64_t* mask_off, const uint64_t* mask, int64_t nseg,
                        int64_t max_nb, int32_t* keep_pos, int64_t* kept, cudaStream_t stream);
// The same greedy selection without a mask, with Paddle's adaptive threshold (eta < 1): one warp per
// segment tests each candidate against the kept boxes.
void nms_scan_direct_cuda(const float* cand_box, const int64_t* seg_off, int64_t nseg, float thr, float eta,
                          bool normalized, int32_t* keep_pos, int64_t* kept, cudaStream_t stream);

// Output rows: image n's detections are the kept candidates of its segments in (class asc, selection
// order), of which the keep_top_k best by (score desc, that order) are written, in that order, to
// out [out_off[n] .. out_off[n+1]) x 6 (label, score, x1, y1, x2, y2) and index (n*M + m).
// det_off[s] = number of kept candidates of segments before s.
void nms_output_cuda(const float* cand_box, const float* cand_score, const int32_t* cand_idx, const int32_t* keep_pos,
                     const int64_t* seg_off, const int64_t* det_off, const int64_t* out_off, int64_t N, int64_t M,
                     int64_t C, float* out, int64_t* index, cudaStream_t stream);

}  // namespace engine::kernels
