// A synthetic detection set of coloured shapes, written in PaddleX's VOC layout (data/det_dataset.h), so the
// YOLOv3 demo and the tests train and evaluate on real files with nothing downloaded.
//
// Layout (PaddleX 2.x docs/data/format/detection.md):
//   root/JPEGImages/NNNN.jpg    RGB, JPEG quality 95
//   root/Annotations/NNNN.xml   <annotation> with <filename>, <size> (width, height, depth 3) and per object
//                               <name>, <difficult>0</difficult> and <bndbox> xmin/ymin/xmax/ymax
//   root/labels.txt             circle, square, triangle, cross (class ids 0..3)
//   root/train_list.txt, val_list.txt   "JPEGImages/NNNN.jpg Annotations/NNNN.xml"
//   root/.synthetic_det         marker (the spec that produced the set)
// Content of one image: a textured background (one of: two-colour gradient, stripes at a random angle and period,
// low-frequency colour blotches, a gradient with blocky grey grain), then 1-6 shapes drawn one over the other,
// then pixel noise.
//   - The class is the shape: circle, axis-aligned square, triangle (equilateral, random rotation), plus-shaped
//     cross. Colours are drawn independently of the class (uniform RGB, redrawn up to 30 times until at least
//     110 away (RGB distance) from the mean of what lies under the shape, else the most distant draw), with a
//     mild linear shading, so colour alone does not give the class.
//   - Sizes (extent of the shape) are 22-72 px at 256x256, and 12-20 px for about a fifth of the shapes
//     (small objects); they scale with min(height, width) / 256, down to 10 px.
//   - About a third of the shapes after the first are first tried next to an earlier one so that they overlap;
//     a placement is kept only if every earlier shape keeps at least 60% of its pixels visible (50 tries, then
//     the shape is left out, so an image can have fewer shapes than drawn for it).
//   - Boxes are the exact tight boxes of each shape's pixel mask (a pixel belongs to a shape when its centre is
//     inside), as inclusive 0-based pixel indices: xmin = first column, xmax = last column. They are always
//     inside the image, so PaddleX's clipping leaves them unchanged. An occluded shape keeps its full box.
// Defaults (200 train / 40 val, 256x256) keep YOLOv3-MobileNetV1 training on 2 CPU cores to minutes: shapes are
// large against the image and clearly contrasted, 4 classes.
// Samples 0..train-1 are the training split, then val. Sample i is drawn from Rng(mix_seed(seed, i)) only, so the
// set is deterministic and independent of the split sizes. Refuses to write into a non-empty root without the
// marker; regenerating into its own output replaces it.
//
// Tested by tests/test_det_data.cpp (same seed gives the same files, boxes inside the image and equal to the
// tight box of each mask, every earlier shape at least 60% visible, the set parses back through DetDataset with
// the drawn boxes and classes, marker refusal).
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "data/image_io.h"

namespace engine::data {

struct SyntheticDetSpec {
  std::string root;
  int train = 200, val = 40;
  int height = 256, width = 256;
  uint64_t seed = 1;
};

// Class names in id order (labels.txt).
const std::vector<std::string>& synthetic_det_classes();

// One drawn image before JPEG encoding, with what the annotation is made from.
struct SyntheticDetImage {
  Image image;                              // RGB, values 0..255 (integers)
  std::vector<std::array<int, 4>> boxes;    // xmin, ymin, xmax, ymax: inclusive pixel indices
  std::vector<int32_t> classes;             // index into synthetic_det_classes()
  std::vector<std::vector<uint8_t>> masks;  // per shape, H*W: 1 where the shape covers the pixel
  std::vector<uint8_t> owner;               // H*W: index of the top shape at the pixel, 255 = background
};

// Sample `index` of the set with this seed (what generate_synthetic_det writes for it).
SyntheticDetImage draw_synthetic_det(int height, int width, uint64_t seed, int64_t index);

void generate_synthetic_det(const SyntheticDetSpec& spec);

// The marker file name inside root.
constexpr const char* kSyntheticDetMarker = ".synthetic_det";

}  // namespace engine::data
