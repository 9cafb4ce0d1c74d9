// CPU kernel of the metrics family (kernels/cpu/metrics_cpu.cpp).
#pragma once
#include <cstdint>

namespace engine::kernels {

// counts = [intersect | pred | label] (3*C i64, overwritten) of seg_area_counts over n pixels.
// bad[0] = number of invalid pixels (label neither ignore nor in [0, C), or pred not in [0, C)),
// bad[1] = the lowest such pixel index (-1 if none).
void seg_area_counts_cpu(const int64_t* pred, const int64_t* label, int64_t n, int64_t C, int64_t ignore,
                         int64_t* counts, int64_t* bad);

}  // namespace engine::kernels
