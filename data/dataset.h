// Segmentation data sets: PaddleSeg's `Dataset` (file lists) and `Cityscapes` (folder layout).
//
// Semantics source: PaddleSeg paddleseg/datasets/dataset.py and cityscapes.py:
//   - Dataset: the list for the mode (train_path / val_path / test_path) has one sample per line,
//     "image<separator>label" after stripping surrounding whitespace, both joined to dataset_root (an
//     absolute path stays as is). Train/val lines need exactly 2 items; a test line may omit the label.
//     Blank lines are skipped (PaddleSeg would reject them in train/val mode).
//   - Cityscapes: leftImg8bit/<mode>/*/*_leftImg8bit.png and gtFine/<mode>/*/*_gtFine_labelTrainIds.png,
//     each sorted by path and zipped; 19 classes, ignore 255. Unlike PaddleSeg's plain zip, the two
//     lists must pair up file by file (same city/frame stem), otherwise it is an error.
//   - Images are RGB (cv2 BGR->RGB), labels single-channel indices; every label value must be
//     < num_classes or == ignore_index (checked on each load, the error names the file and value).
//   - Train mode: image and label go through the transforms together. Val/test mode: only the image is
//     transformed; the label keeps the original size (predictions are compared at full size).
// Construction checks that every listed file exists, so a broken list fails before training starts;
// errors name the list file and line.
//
// Tested by tests/test_data.cpp (list parsing, separators, bad lines, missing files, label range,
// Cityscapes pairing, val mode keeping the label size).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/data_spec.h"
#include "data/transforms.h"

namespace engine::data {

class SegDataset {
 public:
  struct Item {
    std::string image, label;  // label empty: none (test mode)
    std::string origin;        // "list.txt:12" (or the image path for Cityscapes), for messages
  };

  SegDataset(const DatasetSpec& spec, std::vector<Item> items, int64_t num_classes, int64_t ignore_index);

  int64_t size() const { return (int64_t)items_.size(); }
  int64_t num_classes() const { return num_classes_; }
  int64_t ignore_index() const { return ignore_index_; }
  const std::string& mode() const { return mode_; }
  const std::string& where() const { return where_; }  // config key path, e.g. "train_dataset"
  const Item& item(int64_t index) const;
  const std::string& image_path(int64_t index) const { return item(index).image; }
  const std::string& label_path(int64_t index) const { return item(index).label; }
  const Pipeline& pipeline() const { return pipeline_; }

  // PaddleSeg's --repeats (tools/train.py: train_dataset.file_list *= repeats): the list `times` times
  // over, in order, so that one epoch visits every image `times` times. times >= 1.
  void repeat_items(int64_t times);

  // Decode (and check) without transforms.
  Sample load_raw(int64_t index) const;
  // Decode + transforms (train: image and label; val/test: image only). Thread-safe.
  Sample load(int64_t index, Rng& rng) const;

 private:
  std::string where_, mode_;
  std::vector<Item> items_;
  int64_t num_classes_, ignore_index_;
  Pipeline pipeline_;
};

// Builds a data set from a config entry; validates the spec (errors name spec.where + "." + key).
std::shared_ptr<SegDataset> make_dataset(const DatasetSpec& spec);

// Checks label values (< num_classes or == ignore_index); the error names `path`.
void check_label_values(const Label& label, int64_t num_classes, int64_t ignore_index, const std::string& path);

}  // namespace engine::data
