// Darknet .weights files into the engine's DarkNet53-YOLOv3 (models/yolov3.h, PaddleDetection's
// parameter names): darknet53.conv.74 (the backbone) and yolov3.weights (the whole detector).
//
// Layout (pjreddie/darknet f6afaabc, src/parser.c load_weights_upto / load_convolutional_weights /
// save_weights_upto), all little-endian:
//   header  int32 major, minor, revision; then `seen` (images trained on) as an 8-byte size_t when
//           (major*10 + minor) >= 2 && major < 1000 && minor < 1000, otherwise as an int32
//   then, for every layer in cfg order that has weights (route, upsample, shortcut, yolo have none),
//   a convolutional layer with n filters, c inputs, k x k kernel:
//     biases [n]                     (the BN beta when batch_normalize=1)
//     if batch_normalize: scales [n] (gamma), rolling_mean [n], rolling_variance [n]
//     weights [n * c/groups * k * k] in OIHW order, the engine's Conv2d layout: copied as is.
// darknet53.conv.74 is what `darknet partial cfg/darknet53.cfg darknet53.weights darknet53.conv.74 74`
// writes (examples/darknet.c partial -> save_weights_upto(net, out, 74)): layers 0..73, the 52 conv
// layers of the backbone, identical in cfg/darknet53.cfg and cfg/yolov3.cfg. yolov3.weights holds all
// 75 conv layers of cfg/yolov3.cfg (80 classes: the three detection convs have 255 = 3*(5+80) filters,
// a bias and no BN).
//
// Darknet layer index (cfg/yolov3.cfg, 0-based as darknet counts them) -> engine prefix:
//   0                 backbone.conv0
//   1                 backbone.downsample0.conv_bn_layer
//   stage i (blocks [1, 2, 8, 8, 4]): per block j the 1x1 and the 3x3 conv, then the shortcut:
//                     backbone.stage.i.basicblock0.conv1 / .conv2                 (j = 0)
//                     backbone.stage.i.stage.i.j.conv1 / .conv2                   (j >= 1)
//                     after stages 0-3 the stride-2 conv backbone.stage.i.downsample.conv_bn_layer
//                     (layers 2-3, 5, 6-10, 12, 13-35, 37, 38-60, 62, 63-73)
//   scale s = 0, 1, 2 (strides 32, 16, 8) starting at 75, 87, 99:
//     +0..+4          neck.yolo_block.s.conv_module.conv0, conv1, conv2, conv3, route
//     +5              neck.yolo_block.s.tip
//     +6              yolo_head.yolo_output.s       (bias, no BN)
//     +7 yolo, +8 route (-4: the conv_module.route output)
//     +9              neck.yolo_transition.s        (s < 2; then upsample and the route [-1, 61 | 36]:
//                     upsampled map first, as the engine's concat)
// A DarkConvBNLayer prefix P gets biases -> P.batch_norm.bias, scales -> P.batch_norm.weight,
// rolling_mean -> P.batch_norm._mean, rolling_variance -> P.batch_norm._variance, weights ->
// P.conv.weight; an output conv gets biases -> P.bias, weights -> P.weight.
//
// Numerics to know: darknet's batch norm divides by sqrt(var) + 1e-6 (src/blas.c normalize_cpu), the
// engine's by sqrt(var + 1e-5); and darknet feeds images scaled to [0, 1] without mean/std, so a
// detector taken over as is needs Normalize(mean 0, std 1).
// Tested by tests/test_darknet_weights.cpp.
#pragma once
#include <cstdint>
#include <iosfwd>
#include <string>

#include "models/det_model.h"

namespace engine::train {

struct DarknetHeader {
  int32_t major = 0, minor = 0, revision = 0;
  uint64_t seen = 0;
  int seen_bytes = 8;  // 8 (size_t) or 4 (int32), by darknet's version rule
  int header_bytes() const { return 12 + seen_bytes; }
};

struct DarknetLoadReport {
  DarknetHeader header;
  bool full = false;    // true: all 75 conv layers; false: the backbone (darknet layers 0-73)
  int conv_layers = 0;  // 75 or 52
  int64_t values = 0;   // floats read (the whole file after the header)
  int64_t tensors_loaded = 0;
  int64_t tensors_total = 0;  // the model's state_dict() size
  std::string summary;        // the logged line, without the time prefix
};

// Reads and checks the header (one-line error naming the file when it is shorter than its header or
// the version fields are negative).
DarknetHeader read_darknet_header(const std::string& path);

// True when `path` names a darknet weights file: it ends in ".weights" or ".conv.<digits>" (darknet's
// `partial` outputs), or it is a regular file that starts with a plausible darknet header (version
// fields in [0, 1000), at least a header long, and not a safetensors file, whose byte 8 is '{').
bool is_darknet_weights(const std::string& path);

// Loads `path` into a YOLOv3 with the DarkNet53 backbone: the backbone when the file holds exactly
// darknet layers 0-73, the whole model when it holds all 75 conv layers at the model's sizes. The
// file is checked completely before any tensor changes. Logs one PaddleX-style line: "Loading
// pretrained model from <path> (darknet weights v0.2.0, seen N): <what> - There are X/Y variables
// loaded into YOLOv3." Errors (one line naming the file and the darknet layer with its engine prefix
// and the expected counts): a model without DarkNet53-YOLOv3's tensors, a file that ends inside a
// layer, bytes after the last layer, and a detector file for another class count.
DarknetLoadReport load_darknet_weights(nn::DetModel& model, const std::string& path, std::ostream& log);

}  // namespace engine::train
