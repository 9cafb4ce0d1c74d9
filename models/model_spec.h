// Plain description of a segmentation model as a PaddleSeg YAML `model:` block gives it (defaults are
// PaddleSeg's PPLiteSeg constructor defaults, paddleseg/models/pp_liteseg.py). train/config fills it from
// YAML; models/ builds the network from it and validates the values.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace engine::nn {

struct SegModelSpec {
  std::string type = "PPLiteSeg";
  std::string backbone = "STDC2";  // STDC1 | STDC2 (model.backbone.type)
  int64_t num_classes = 0;         // from the config's model block or, as PaddleSeg does, the train data set
  std::vector<int> backbone_indices{2, 3, 4};
  std::string arm_type = "UAFM_SpAtten";
  std::vector<int> cm_bin_sizes{1, 2, 4};
  int cm_out_ch = 128;
  std::vector<int> arm_out_chs{64, 96, 128};
  std::vector<int> seg_head_inter_chs{64, 64, 64};
  std::string resize_mode = "bilinear";
  std::string pretrained;           // model.pretrained: URL or local file (loaded by the trainer)
  std::string backbone_pretrained;  // model.backbone.pretrained
  uint64_t seed = 0;                // weight initialisation seed
  std::string where = "model";      // config key path for error messages
};

}  // namespace engine::nn
