#include "data/det_loader.h"

#include <algorithm>
#include <cstring>

#include "base/error.h"

namespace engine::data {
namespace {
constexpr uint64_t kBatchSalt = 0x9e3779b97f4a7c15ull;  // separates the batch draws from the per-sample ones
}

int num_max_boxes(const DetDataset& dataset, bool mixup) {
  const int base = mixup ? 100 : 50;
  const int most = mixup ? 2 * dataset.max_objects() : dataset.max_objects();
  return std::max(base, most);
}

DetBatchSource::DetBatchSource(std::shared_ptr<const DetDataset> dataset, DetPipeline pipeline, int max_boxes)
    : dataset_(std::move(dataset)), pipeline_(std::move(pipeline)), max_boxes_(max_boxes) {
  ENGINE_CHECK(dataset_ != nullptr, "DetBatchSource: no data set");
  ENGINE_CHECK(max_boxes_ >= 1, "DetBatchSource(", dataset_->where(), "): max_boxes must be >= 1, got ", max_boxes_);
}

std::vector<DetSample> DetBatchSource::samples(const std::vector<int64_t>& indices, int64_t epoch,
                                               int64_t batch_in_epoch, int64_t first_position, uint64_t seed) const {
  DetContext ctx;
  ctx.epoch = epoch;
  ctx.dataset_size = dataset_->size();
  const DetDataset* ds = dataset_.get();
  ctx.load_raw = [ds](int64_t i) { return ds->load_raw(i); };
  std::vector<DetSample> out;
  out.reserve(indices.size());
  for (size_t i = 0; i < indices.size(); ++i) {
    Rng rng(mix_seed(seed, (uint64_t)epoch, (uint64_t)(first_position + (int64_t)i)));
    DetSample s = dataset_->load_raw(indices[i]);
    pipeline_.apply(s, rng, ctx);
    out.push_back(std::move(s));
  }
  Rng batch_rng(mix_seed(seed ^ kBatchSalt, (uint64_t)epoch, (uint64_t)batch_in_epoch));
  pipeline_.apply_batch(out, batch_rng);
  return out;
}

void DetBatchSource::build(Batch& b, int64_t first_position, uint64_t seed) const {
  collate_det(samples(b.indices, b.epoch, b.batch_in_epoch, first_position, seed), max_boxes_, b);
}

void collate_det(const std::vector<DetSample>& samples, int max_boxes, Batch& b) {
  ENGINE_CHECK(!samples.empty(), "collate_det: empty batch");
  int h = 0, w = 0;
  for (const DetSample& s : samples) {
    ENGINE_CHECK(s.image.c == 3 && s.image.h > 0 && s.image.w > 0, "collate_det: ", s.origin, ": image is ", s.image.h,
                 "x", s.image.w, "x", s.image.c, ", expected RGB");
    h = std::max(h, s.image.h);
    w = std::max(w, s.image.w);
  }
  const int64_t n = (int64_t)samples.size(), m = max_boxes;
  Tensor images = Tensor::zeros({n, h, w, 3}, DType::F32);
  Tensor gt_box = Tensor::zeros({n, m, 4}, DType::F32);
  Tensor gt_class = Tensor::zeros({n, m}, DType::I32);
  Tensor gt_score = Tensor::zeros({n, m}, DType::F32);
  Tensor im_shape = Tensor::empty({n, 2}, DType::F32);
  Tensor scale_factor = Tensor::empty({n, 2}, DType::F32);
  float* img = images.data<float>();
  float* box = gt_box.data<float>();
  int32_t* cls = gt_class.data<int32_t>();
  float* score = gt_score.data<float>();
  for (int64_t i = 0; i < n; ++i) {
    const DetSample& s = samples[(size_t)i];
    for (int y = 0; y < s.image.h; ++y)
      std::memcpy(img + (((size_t)i * h + y) * w) * 3, s.image.data.data() + (size_t)y * s.image.w * 3,
                  (size_t)s.image.w * 3 * sizeof(float));
    const std::vector<std::array<float, 4>> cxcywh = boxes_to_normalized_cxcywh(s.boxes, w, h);
    const size_t kept = std::min(cxcywh.size(), (size_t)m);
    for (size_t k = 0; k < kept; ++k) {
      std::memcpy(box + ((size_t)i * m + k) * 4, cxcywh[k].data(), 4 * sizeof(float));
      cls[(size_t)i * m + k] = s.classes[k];
      score[(size_t)i * m + k] = s.scores.empty() ? 1.f : s.scores[k];
    }
    im_shape.data<float>()[2 * i] = (float)s.orig_h;
    im_shape.data<float>()[2 * i + 1] = (float)s.orig_w;
    scale_factor.data<float>()[2 * i] = s.scale_y;
    scale_factor.data<float>()[2 * i + 1] = s.scale_x;
  }
  b.tensors["images"] = images;
  b.tensors["gt_box"] = gt_box;
  b.tensors["gt_class"] = gt_class;
  b.tensors["gt_score"] = gt_score;
  b.tensors["im_shape"] = im_shape;
  b.tensors["scale_factor"] = scale_factor;
}

}  // namespace engine::data
