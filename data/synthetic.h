// A synthetic, fundus-like optic-disc segmentation set written as real JPEG/PNG files in PaddleSeg's
// `Dataset` layout, so the default training run and the tests need no download.
//
// Layout (as PaddleSeg's optic_disc_seg, paddleseg/datasets/optic_disc_seg.py and dataset.py):
//   root/images/NNNN.jpg   RGB fundus-like image: dark textured background, a bright round retina
//                          field with vignetting and texture, darker vessel-like curves leaving the
//                          disc, a bright elliptical optic disc (random position, size, ellipticity,
//                          rotation) with a soft edge, a few small bright distractor spots, blur,
//                          noise and a random global brightness; JPEG quality 92.
//   root/labels/NNNN.png   single-channel: 1 = disc, 0 = background, and (ignore_ring > 0) a thin
//                          ring of 255 (ignore) on the disc border, ~2*ignore_ring pixels wide.
//   root/train_list.txt, val_list.txt (and test_list.txt when test > 0): "images/NNNN.jpg labels/NNNN.png"
//   root/.synthetic_fundus marker (the spec that produced the set).
// Samples 0..train-1 are the training split, then val, then test. Sample i is drawn from
// Rng(mix_seed(seed, i)) only, so the set is deterministic and independent of the split sizes.
// Refuses to write into a non-empty root without the marker; regenerating into its own output
// replaces it.
//
// Tested by tests/test_data.cpp (determinism, layout, labels, marker refusal).
#pragma once
#include <cstdint>
#include <string>

namespace engine::data {

struct SyntheticSpec {
  std::string root;
  int train = 200, val = 40, test = 0;
  int height = 256, width = 256;
  uint64_t seed = 1;
  int ignore_ring = 1;  // half-width in pixels of the 255 ring at the disc border; 0 = none
};

void generate_synthetic_fundus(const SyntheticSpec& spec);

// The marker file name inside root.
constexpr const char* kSyntheticMarker = ".synthetic_fundus";

}  // namespace engine::data
