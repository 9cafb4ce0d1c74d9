// The detection batch source of the loader (data/loader.h): decode, per-sample transforms, batch
// transforms, then the collate stage of PaddleX 2.x's YOLOv3 batch (paddlex/cv/transforms/batch_operators.py): images
// padded to the largest height and width of the batch (zeros at the bottom/right), gt boxes turned
// into (cx, cy, w, h) normalised by the padded image size and padded to num_max_boxes rows (extra
// boxes dropped, as PaddleX's padding does).
// Tensors of a Batch: "images" f32 [B, H, W, 3]; "gt_box" f32 [B, M, 4]; "gt_class" i32 [B, M];
// "gt_score" f32 [B, M] (0 on padding rows); "im_shape" f32 [B, 2] = the decoded (h, w);
// "scale_factor" f32 [B, 2] = (scale_y, scale_x) of the transforms (to map boxes back).
// Random draws: sample at position p of epoch e from Rng(mix_seed(seed, e, p)) (as segmentation),
// the batch transforms from Rng(mix_seed(seed ^ kBatchSalt, e, b)), so a batch stays a pure function
// of (seed, epoch, batch index). Tested by tests/test_det_train.cpp.
#pragma once
#include <cstdint>
#include <memory>

#include "data/det_dataset.h"
#include "data/det_transforms.h"
#include "data/loader.h"

namespace engine::data {

// PaddleX 2.x's num_max_boxes: 50 (100 with MixupImage), raised to the largest object count of the
// data set (twice it with MixupImage).
int num_max_boxes(const DetDataset& dataset, bool mixup);

class DetBatchSource : public BatchSource {
 public:
  DetBatchSource(std::shared_ptr<const DetDataset> dataset, DetPipeline pipeline, int max_boxes);
  int64_t size() const override { return dataset_->size(); }
  const std::string& where() const override { return dataset_->where(); }
  void build(Batch& b, int64_t first_position, uint64_t seed) const override;
  const DetDataset& dataset() const { return *dataset_; }
  int max_boxes() const { return max_boxes_; }

  // The samples of a batch after every transform (what build() collates); for the evaluator and tests.
  std::vector<DetSample> samples(const std::vector<int64_t>& indices, int64_t epoch, int64_t batch_in_epoch,
                                 int64_t first_position, uint64_t seed) const;

 private:
  std::shared_ptr<const DetDataset> dataset_;
  DetPipeline pipeline_;
  int max_boxes_;
};

// Collates transformed samples into the tensors listed above.
void collate_det(const std::vector<DetSample>& samples, int max_boxes, Batch& b);

}  // namespace engine::data
