// Plain descriptions of a data set and its transforms, as a PaddleSeg YAML config gives them.
// train/config fills them from YAML (and validates the key names it knows); data/ builds the
// dataset and transform pipeline from them and validates the values. Kept free of yaml-cpp so data/
// does not depend on the config format.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace engine::data {

// One entry of a `transforms:` list: its type and numeric arguments. Scalars are 1-element lists,
// booleans 0/1, e.g. {type: RandomPaddingCrop, args: {crop_size: [512, 512]}}. `where` is the config
// key path used in error messages, e.g. "train_dataset.transforms[1]".
struct TransformSpec {
  std::string type;
  std::map<std::string, std::vector<double>> args;
  std::string where;
  std::map<std::string, std::string> str_args;  // string-valued arguments, e.g. {interp: CUBIC} (detection)
};

// A data set entry (`train_dataset:` / `val_dataset:`), PaddleSeg's `Dataset` and `Cityscapes`.
// Paths are used as written (relative paths are relative to the working directory, as in PaddleSeg);
// the image/label paths inside a file list are joined to dataset_root.
struct DatasetSpec {
  std::string type = "Dataset";  // Dataset | Cityscapes
  std::string dataset_root;
  std::string train_path, val_path, test_path;  // file lists "image<sep>label" (type Dataset)
  std::string separator = " ";
  std::string mode = "train";  // train | val | test
  int64_t num_classes = 0;
  int64_t ignore_index = 255;
  int img_channels = 3;
  std::vector<TransformSpec> transforms;
  std::string where = "train_dataset";  // config key path for error messages
};

}  // namespace engine::data
