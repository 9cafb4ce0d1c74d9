// Detection models: the plain spec a detector is built from, the interfaces shared by the YOLOv3
// backbones (DarkNet53, MobileNetV1) and the YOLOv3 model, and build_det_model(). Facts:
// PaddleDetection ppdet/modeling/backbones/darknet.py, mobilenet_v1.py,
// necks/yolo_fpn.py, heads/yolo_head.py, architectures/yolo.py.
// Kept apart from SegModelSpec / build_seg_model (models/model_spec.h, models/module.h): a second task
// is a new file beside the first. Nothing reads a DetModelSpec from YAML yet.
// Tested by tests/test_det_models.cpp.
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "models/module.h"

namespace engine::nn {

struct DetModelSpec {
  std::string type = "YOLOv3";
  std::string backbone = "DarkNet53";  // DarkNet53 | MobileNetV1 (scale 1.0, feature_maps [4, 6, 13])
  int64_t num_classes = 80;            // PaddleDetection YOLOv3Head's default (COCO)
  // Anchor sizes (w, h) in pixels of the network input, and which anchors each output uses, coarse
  // to fine (strides 32, 16, 8). Defaults: the COCO k-means anchors of PaddleDetection, PaddleX and
  // darknet's cfg/yolov3.cfg.
  std::vector<std::array<int, 2>> anchors = {{10, 13},  {16, 30},  {33, 23},   {30, 61},  {62, 45},
                                             {59, 119}, {116, 90}, {156, 198}, {373, 326}};
  std::vector<std::vector<int>> anchor_masks = {{6, 7, 8}, {3, 4, 5}, {0, 1, 2}};
  uint64_t seed = 0;            // weight initialisation seed
  std::string where = "model";  // config key path for error messages
};

// A module that only holds named children: the intermediate nodes of a Paddle sublayer registered
// under a dotted name. add_sublayer("stage.2.1", block) in Paddle gives keys "...stage.2.1.conv1...";
// Module member names have no dots, so such a path is a chain of scopes ("stage" -> "2" -> "1"). The
// keys are Paddle's; only the order of state_dict() can differ from Paddle's (scopes group their
// children), which no loader depends on.
class NameScope : public Module {
 public:
  NameScope() : Module("NameScope") {}
  template <class M>
  std::shared_ptr<M> add(const std::string& name, std::shared_ptr<M> m) {
    return register_module(name, std::move(m));
  }
  // The child scope `name`, created on first use.
  NameScope& scope(const std::string& name) {
    for (const auto& [n, c] : children())
      if (n == name)
        if (auto* s = dynamic_cast<NameScope*>(c.get())) return *s;
    return *add(name, std::make_shared<NameScope>());  // (a non-scope child of that name: add() refuses)
  }
};

// A detection backbone: images f32 [N, H, W, 3] -> feature maps shallow to deep (strides 8, 16, 32).
class DetBackbone : public Module {
 public:
  using Module::Module;
  virtual std::vector<Tensor> forward(const Tensor& images) = 0;
  virtual std::vector<int> out_channels() const = 0;  // channels of the maps forward() returns
};

// A detector: images f32 [N, H, W, 3] (normalised, channels-last) -> the raw head outputs, one per
// level, coarse to fine. For YOLOv3: [N, H/32, W/32, A0*(5+C)], [N, H/16, W/16, A1*(5+C)],
// [N, H/8, W/8, A2*(5+C)] with A_i = anchor_masks[i].size(); the same in training and eval (the loss
// and the decoding are separate).
class DetModel : public Module {
 public:
  using Module::Module;
  virtual std::vector<Tensor> forward(const Tensor& images) = 0;
  virtual int64_t num_classes() const = 0;
  virtual const std::vector<std::array<int, 2>>& anchors() const = 0;
  virtual const std::vector<std::vector<int>>& anchor_masks() const = 0;
  virtual std::vector<int> downsample_ratios() const = 0;  // stride of each output ({32, 16, 8})
};

// Validates the spec (one-line errors naming spec.where and the key, e.g. "model.backbone: 'ResNet34'
// is not supported (supported: DarkNet53, MobileNetV1)"), builds the model and initialises it from
// spec.seed. Types: "YOLOv3". Defined in models/yolov3.cpp.
std::shared_ptr<DetModel> build_det_model(const DetModelSpec& spec);

}  // namespace engine::nn
