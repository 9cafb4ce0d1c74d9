// One detection sample as the data sets produce it and the detection transforms change it: the
// contract between data/det_dataset.h (VOC / COCO / the synthetic set), data/det_transforms.h and the
// detection collate of the loader.
//
// Semantics source: PaddleX 2.x `paddlex/cv/datasets/voc.py`, `coco.py` and `transforms/operators.py`:
// a sample carries the image (RGB), its gt boxes in pixels of the current
// image as (x1, y1, x2, y2), the 0-based class of each box, a gt score (1, or the mixup weight f / 1 - f)
// and the VOC difficult flag, plus the original size and the scale factor the evaluation maps boxes
// back with.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "data/image_io.h"

namespace engine::data {

struct DetSample {
  Image image;                              // HWC RGB, 0..255 as float until Normalize
  std::vector<std::array<float, 4>> boxes;  // x1, y1, x2, y2 in pixels of `image`
  std::vector<int32_t> classes;             // 0-based class id per box
  std::vector<float> scores;                // gt_score per box: 1, or the mixup weight
  std::vector<uint8_t> difficult;           // VOC <difficult> per box (0 for COCO / synthetic)
  int orig_h = 0, orig_w = 0;               // size of the decoded file (PaddleX's im_shape before resizing)
  float scale_y = 1.f, scale_x = 1.f;       // current size / original size (PaddleX's scale_factor)
  int64_t index = -1;                       // data set index
  std::string origin;                       // "train_list.txt:12" or the image path, for messages
};

}  // namespace engine::data
