// labels: sanitize
// Darknet .weights into DarkNet53-YOLOv3 (train/darknet_weights.h). A generator here writes files in
// darknet's layout (pjreddie/darknet f6afaabc src/parser.c save_weights_upto /
// load_convolutional_weights) from its own description of cfg/yolov3.cfg - layer types, filters,
// sizes, routes, with the input channels tracked the way darknet's parser does - so the loader's
// table is checked against an independent one. Every value is a function of (darknet layer, array,
// index), so each element of each engine tensor tells where it came from. Covered: the full 80-class
// file (every element of all 366 tensors, BN beta/gamma/mean/variance, OIHW layout of one full
// tensor, first/last elements and sums), the backbone file darknet53.conv.74 (head untouched), both
// header variants (8- and 4-byte seen), a truncated file, extra bytes, a 20-class model with the
// 80-class file, a model without DarkNet53, a model on the CUDA device (emulated in CI, skipped
// without one), and file detection. Each test writes its files in a fresh temp folder (up to 248 MB,
// the real yolov3.weights size), removed when the next test starts or the program exits.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "engine/device.h"
#include "models/yolov3.h"
#include "tests/harness/temp_dirs.h"
#include "train/darknet_weights.h"

using namespace engine;
using engine::testing::fresh_test_dir;
namespace fs = std::filesystem;

namespace {

// ---------------------------------------------------------------- cfg/yolov3.cfg, darknet's view
struct CfgLayer {
  enum Type { Conv, Shortcut, Route, Upsample, Yolo } type = Conv;
  int filters = 0, size = 0;
  bool bn = true;
  std::vector<int> route;   // [route] layers= (negative: relative)
  int in_c = 0, out_c = 0;  // tracked like darknet's parse_network_cfg
};

CfgLayer cfg_layer(CfgLayer::Type type, int filters = 0, int size = 0, bool bn = true, std::vector<int> route = {}) {
  CfgLayer l;
  l.type = type;
  l.filters = filters;
  l.size = size;
  l.bn = bn;
  l.route = std::move(route);
  return l;
}

std::vector<CfgLayer> yolov3_cfg(int classes) {
  std::vector<CfgLayer> v;
  auto conv = [&](int f, int k, bool bn = true) { v.push_back(cfg_layer(CfgLayer::Conv, f, k, bn)); };
  auto res = [&](int f, int n) {  // n residual blocks of [1x1 f/2, 3x3 f, shortcut -3]
    for (int i = 0; i < n; ++i) {
      conv(f / 2, 1);
      conv(f, 3);
      v.push_back(cfg_layer(CfgLayer::Shortcut));
    }
  };
  conv(32, 3);
  conv(64, 3);  // stride 2
  res(64, 1);
  conv(128, 3);
  res(128, 2);
  conv(256, 3);
  res(256, 8);
  conv(512, 3);
  res(512, 8);
  conv(1024, 3);
  res(1024, 4);  // ends at layer 74
  const int out = 3 * (5 + classes);
  const int base[3] = {512, 256, 128};
  const int skip[2] = {61, 36};
  for (int s = 0; s < 3; ++s) {
    for (int i = 0; i < 3; ++i) {
      conv(base[s], 1);
      conv(base[s] * 2, 3);
    }
    conv(out, 1, false);
    v.push_back(cfg_layer(CfgLayer::Yolo));
    if (s < 2) {
      v.push_back(cfg_layer(CfgLayer::Route, 0, 0, true, {-4}));
      conv(base[s] / 2, 1);
      v.push_back(cfg_layer(CfgLayer::Upsample));
      v.push_back(cfg_layer(CfgLayer::Route, 0, 0, true, {-1, skip[s]}));
    }
  }
  int c = 3;
  for (int i = 0; i < (int)v.size(); ++i) {
    CfgLayer& l = v[i];
    l.in_c = c;
    if (l.type == CfgLayer::Conv) {
      l.out_c = l.filters;
    } else if (l.type == CfgLayer::Route) {
      l.out_c = 0;
      for (int r : l.route) l.out_c += v[r < 0 ? i + r : r].out_c;
    } else {
      l.out_c = c;
    }
    c = l.out_c;
  }
  return v;
}

// Darknet layer index -> engine prefix. The head by hand from yolov3.cfg; the backbone's residual
// convs in order, with the stride-2 convs at the indices darknet53.cfg gives them.
std::map<int, std::string> expected_prefixes() {
  std::map<int, std::string> m = {{0, "backbone.conv0"},
                                  {1, "backbone.downsample0.conv_bn_layer"},
                                  {5, "backbone.stage.0.downsample.conv_bn_layer"},
                                  {12, "backbone.stage.1.downsample.conv_bn_layer"},
                                  {37, "backbone.stage.2.downsample.conv_bn_layer"},
                                  {62, "backbone.stage.3.downsample.conv_bn_layer"}};
  const int blocks[5] = {1, 2, 8, 8, 4}, first[5] = {2, 6, 13, 38, 63};
  for (int i = 0; i < 5; ++i)
    for (int j = 0; j < blocks[i]; ++j) {
      const std::string s = std::to_string(i);
      const std::string b = j == 0 ? "backbone.stage." + s + ".basicblock0"
                                   : "backbone.stage." + s + ".stage." + s + "." + std::to_string(j);
      m[first[i] + 3 * j] = b + ".conv1";
      m[first[i] + 3 * j + 1] = b + ".conv2";
    }
  const char* block[6] = {"conv_module.conv0", "conv_module.conv1", "conv_module.conv2",
                          "conv_module.conv3", "conv_module.route", "tip"};
  const int start[3] = {75, 87, 99};
  for (int s = 0; s < 3; ++s) {
    for (int k = 0; k < 6; ++k) m[start[s] + k] = "neck.yolo_block." + std::to_string(s) + "." + block[k];
    m[start[s] + 6] = "yolo_head.yolo_output." + std::to_string(s);
  }
  m[84] = "neck.yolo_transition.0";
  m[96] = "neck.yolo_transition.1";
  return m;
}

// ---------------------------------------------------------------- values and the generator
enum Kind { Biases = 0, Scales = 1, Mean = 2, Variance = 3, Weights = 4 };

// Exactly representable: an integer in [-2^23, 2^23) / 2^16, from a hash of (layer, kind, index).
float value(int layer, int kind, int64_t index) {
  uint64_t z = ((uint64_t)layer << 44) ^ ((uint64_t)kind << 40) ^ (uint64_t)index;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return (float)((int64_t)(z >> 40) - (1 << 23)) / 65536.f;
}

struct Header {
  int32_t major = 0, minor = 2, revision = 0;
  uint64_t seen = 0x123456789ull;  // above 2^32: the 8-byte field is read whole
  bool wide = true;
};

int64_t conv_values(const CfgLayer& l) {
  return (int64_t)l.filters * (l.bn ? 4 : 1) + (int64_t)l.filters * l.in_c * l.size * l.size;
}

// Writes header + darknet layers [0, cutoff) of cfg, then `extra` bytes; returns the file size.
uint64_t write_weights(const fs::path& path, const std::vector<CfgLayer>& cfg, int cutoff, const Header& h,
                       int64_t extra = 0) {
  std::ofstream out(path, std::ios::binary);
  const int32_t v[3] = {h.major, h.minor, h.revision};
  out.write(reinterpret_cast<const char*>(v), sizeof v);
  if (h.wide) {
    out.write(reinterpret_cast<const char*>(&h.seen), 8);
  } else {
    const int32_t s = (int32_t)h.seen;
    out.write(reinterpret_cast<const char*>(&s), 4);
  }
  std::vector<float> buf;
  auto put = [&](int layer, int kind, int64_t n) {
    buf.resize((size_t)n);
    for (int64_t i = 0; i < n; ++i) buf[(size_t)i] = value(layer, kind, i);
    out.write(reinterpret_cast<const char*>(buf.data()), (std::streamsize)(n * 4));
  };
  for (int i = 0; i < cutoff && i < (int)cfg.size(); ++i) {
    const CfgLayer& l = cfg[i];
    if (l.type != CfgLayer::Conv) continue;
    put(i, Biases, l.filters);
    if (l.bn)
      for (int k : {Scales, Mean, Variance}) put(i, k, l.filters);
    put(i, Weights, (int64_t)l.filters * l.in_c * l.size * l.size);
  }
  for (int64_t i = 0; i < extra; ++i) out.put('\x7f');
  out.close();
  return fs::file_size(path);
}

// Truncates a written file to `bytes`.
void truncate_to(const fs::path& path, uint64_t bytes) { fs::resize_file(path, bytes); }

// ---------------------------------------------------------------- model side
std::unique_ptr<nn::YOLOv3> make_model(int64_t classes, const std::string& backbone = "DarkNet53") {
  nn::DetModelSpec s;
  s.num_classes = classes;
  s.backbone = backbone;
  return std::make_unique<nn::YOLOv3>(s);  // weights zero; no init needed here
}

constexpr float kSentinel = -1234.5f;
void fill_sentinel(nn::Module& m) {
  for (auto& [n, t] : m.state_dict()) {
    float* p = t.data<float>();
    std::fill(p, p + t.numel(), kSentinel);
  }
}

std::map<std::string, Tensor> by_name(const nn::Module& m) {
  std::map<std::string, Tensor> out;
  for (auto& [n, t] : m.state_dict()) out[n] = t;
  return out;
}

// Checks that darknet layer `layer` (a conv of cfg) landed in the engine tensors under `prefix`:
// every element, the first and last, and the sum. Marks the checked keys in `seen`.
void expect_layer(const std::map<std::string, Tensor>& t, int layer, const CfgLayer& l, const std::string& prefix,
                  std::map<std::string, int>& seen) {
  std::vector<std::pair<int, std::string>> parts;
  if (l.bn)
    parts = {{Biases, prefix + ".batch_norm.bias"},
             {Scales, prefix + ".batch_norm.weight"},
             {Mean, prefix + ".batch_norm._mean"},
             {Variance, prefix + ".batch_norm._variance"},
             {Weights, prefix + ".conv.weight"}};
  else
    parts = {{Biases, prefix + ".bias"}, {Weights, prefix + ".weight"}};
  for (const auto& [kind, key] : parts) {
    auto it = t.find(key);
    ASSERT_NE(it, t.end()) << key;
    ++seen[key];
    const Tensor& x = it->second;
    const Shape want = kind == Weights ? Shape{l.filters, l.in_c, l.size, l.size} : Shape{l.filters};
    ASSERT_EQ(x.shape(), want) << key << " (darknet layer " << layer << ")";
    const float* p = x.data<float>();
    const int64_t n = x.numel();
    EXPECT_EQ(p[0], value(layer, kind, 0)) << key;
    EXPECT_EQ(p[n - 1], value(layer, kind, n - 1)) << key;
    double sum = 0, want_sum = 0;
    int64_t bad = 0, first_bad = -1;
    for (int64_t i = 0; i < n; ++i) {
      const float w = value(layer, kind, i);
      sum += p[i];
      want_sum += w;
      if (p[i] != w && bad++ == 0) first_bad = i;
    }
    EXPECT_EQ(sum, want_sum) << key;
    EXPECT_EQ(bad, 0) << key << ": " << bad << " of " << n << " elements differ, first at " << first_bad;
  }
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

void expect_one_line(const std::string& msg) { EXPECT_EQ(msg.find('\n'), std::string::npos) << msg; }

// ---------------------------------------------------------------- tests
TEST(DarknetWeights, CfgDescriptionMatchesTheRealFileSizes) {
  // Download sizes of pjreddie.com's files as third-party scripts check them: yolov3.weights
  // 248007048 bytes (e.g. Streamlit's self-driving demo, EXTERNAL_DEPENDENCIES), darknet53.conv.74
  // 162482580 bytes (wget logs of pjreddie.com/media/files/darknet53.conv.74); 20-byte headers.
  const auto cfg = yolov3_cfg(80);
  int64_t full = 0, backbone = 0;
  int convs = 0, backbone_convs = 0;
  for (int i = 0; i < (int)cfg.size(); ++i)
    if (cfg[i].type == CfgLayer::Conv) {
      full += conv_values(cfg[i]);
      ++convs;
      if (i < 74) {
        backbone += conv_values(cfg[i]);
        ++backbone_convs;
      }
    }
  EXPECT_EQ(cfg.size(), 107u);  // layers 0..106, the last [yolo]
  EXPECT_EQ(convs, 75);
  EXPECT_EQ(backbone_convs, 52);
  EXPECT_EQ(20 + 4 * full, 248007048);
  EXPECT_EQ(20 + 4 * backbone, 162482580);
  EXPECT_EQ(cfg[86].out_c, 768);  // route -1, 61: 256 upsampled + 512
  EXPECT_EQ(cfg[98].out_c, 384);
  // The engine model holds exactly these values (BN: 4 per channel, output convs: bias).
  auto model = make_model(80);
  int64_t n = 0;
  for (auto& [k, t] : model->state_dict()) n += t.numel();
  EXPECT_EQ(n, full);
}

TEST(DarknetWeights, FullFileLandsInEveryTensor) {
  const fs::path dir = fresh_test_dir("darknet_weights_full");
  const fs::path file = dir / "yolov3.weights";
  const auto cfg = yolov3_cfg(80);
  Header h;
  h.revision = 5;
  ASSERT_EQ(write_weights(file, cfg, (int)cfg.size(), h), 248007048u);

  auto model = make_model(80);
  fill_sentinel(*model);
  std::ostringstream log;
  const train::DarknetLoadReport r = train::load_darknet_weights(*model, file.string(), log);
  EXPECT_TRUE(r.full);
  EXPECT_EQ(r.conv_layers, 75);
  EXPECT_EQ(r.header.major, 0);
  EXPECT_EQ(r.header.minor, 2);
  EXPECT_EQ(r.header.revision, 5);
  EXPECT_EQ(r.header.seen, 0x123456789ull);
  EXPECT_EQ(r.header.seen_bytes, 8);
  EXPECT_EQ(r.values, (248007048 - 20) / 4);
  EXPECT_EQ(r.tensors_loaded, 366);
  EXPECT_EQ(r.tensors_total, 366);
  const std::string line = log.str();
  EXPECT_EQ(std::count(line.begin(), line.end(), '\n'), 1) << line;
  EXPECT_NE(line.find("[INFO]\tLoading pretrained model from " + file.string()), std::string::npos) << line;
  EXPECT_NE(line.find("v0.2.5, seen 4886718345"), std::string::npos) << line;
  EXPECT_NE(line.find("the whole DarkNet53-YOLOv3, darknet layers 0-105 (75 conv layers, 80 classes)"),
            std::string::npos)
      << line;
  EXPECT_NE(line.find("There are 366/366 variables loaded into YOLOv3."), std::string::npos) << line;

  const auto t = by_name(*model);
  const auto prefixes = expected_prefixes();
  ASSERT_EQ(prefixes.size(), 75u);
  std::map<std::string, int> seen;
  for (int i = 0; i < (int)cfg.size(); ++i) {
    if (cfg[i].type != CfgLayer::Conv) continue;
    ASSERT_TRUE(prefixes.count(i)) << "darknet layer " << i;
    expect_layer(t, i, cfg[i], prefixes.at(i), seen);
  }
  EXPECT_EQ(seen.size(), t.size());  // every engine tensor came from exactly one darknet array
  for (const auto& [k, c] : seen) EXPECT_EQ(c, 1) << k;

  // Darknet's OIHW order is the engine's: conv0 [32, 3, 3, 3] element by element.
  const Tensor& w0 = t.at("backbone.conv0.conv.weight");
  for (int o = 0; o < 32; ++o)
    for (int i = 0; i < 3; ++i)
      for (int y = 0; y < 3; ++y)
        for (int x = 0; x < 3; ++x)
          ASSERT_EQ(w0.data<float>()[((o * 3 + i) * 3 + y) * 3 + x], value(0, Weights, ((o * 3 + i) * 3 + y) * 3 + x));
  // BN arrays in darknet's order: biases = beta, scales = gamma, then mean and variance.
  EXPECT_EQ(t.at("backbone.conv0.batch_norm.bias").data<float>()[7], value(0, Biases, 7));
  EXPECT_EQ(t.at("backbone.conv0.batch_norm.weight").data<float>()[7], value(0, Scales, 7));
  EXPECT_EQ(t.at("backbone.conv0.batch_norm._mean").data<float>()[7], value(0, Mean, 7));
  EXPECT_EQ(t.at("backbone.conv0.batch_norm._variance").data<float>()[7], value(0, Variance, 7));
  // The head's transition convs come after the output conv in the file (84 after 81).
  EXPECT_EQ(t.at("neck.yolo_transition.0.conv.weight").shape(), (Shape{256, 512, 1, 1}));
  EXPECT_EQ(t.at("neck.yolo_transition.0.conv.weight").data<float>()[0], value(84, Weights, 0));
  EXPECT_EQ(t.at("yolo_head.yolo_output.2.bias").data<float>()[254], value(105, Biases, 254));
}

TEST(DarknetWeights, BackboneFileLeavesNeckAndHeadUntouched) {
  const fs::path dir = fresh_test_dir("darknet_weights_backbone");
  const fs::path file = dir / "darknet53.conv.74";
  const auto cfg = yolov3_cfg(80);
  Header h;  // the pre-0.2 header: a 4-byte seen
  h.minor = 1;
  h.seen = 64000;
  h.wide = false;
  ASSERT_EQ(write_weights(file, cfg, 74, h), 162482580u - 4);

  auto model = make_model(80);
  fill_sentinel(*model);
  std::ostringstream log;
  const train::DarknetLoadReport r = train::load_darknet_weights(*model, file.string(), log);
  EXPECT_FALSE(r.full);
  EXPECT_EQ(r.conv_layers, 52);
  EXPECT_EQ(r.header.minor, 1);
  EXPECT_EQ(r.header.seen, 64000u);
  EXPECT_EQ(r.header.seen_bytes, 4);
  EXPECT_EQ(r.tensors_loaded, 260);
  EXPECT_EQ(r.tensors_total, 366);
  EXPECT_NE(log.str().find("(darknet weights v0.1.0, seen 64000): the DarkNet53 backbone, darknet layers 0-73 "
                           "(52 conv layers); the neck and head keep their initialisation. There are 260/366 "
                           "variables loaded into YOLOv3."),
            std::string::npos)
      << log.str();

  const auto t = by_name(*model);
  const auto prefixes = expected_prefixes();
  std::map<std::string, int> seen;
  for (int i = 0; i < 74; ++i)
    if (cfg[i].type == CfgLayer::Conv) expect_layer(t, i, cfg[i], prefixes.at(i), seen);
  EXPECT_EQ(seen.size(), 260u);
  for (const auto& [k, x] : t) {
    if (k.rfind("backbone.", 0) == 0) continue;
    const float* p = x.data<float>();
    int64_t changed = 0;
    for (int64_t i = 0; i < x.numel(); ++i) changed += p[i] != kSentinel;
    EXPECT_EQ(changed, 0) << k;
  }
}

TEST(DarknetWeights, TruncatedAndOverlongFilesNameTheLayer) {
  const fs::path dir = fresh_test_dir("darknet_weights_sizes");
  const fs::path file = dir / "yolov3.weights";
  const auto cfg = yolov3_cfg(80);
  auto model = make_model(80);
  fill_sentinel(*model);
  std::ostringstream log;
  auto load = [&] { train::load_darknet_weights(*model, file.string(), log); };

  // Inside the backbone: layer 0 has 32*4 + 864 = 992 floats, so 1000 floats end in layer 1.
  write_weights(file, cfg, 2, Header{});
  truncate_to(file, 20 + 4 * 1000);
  std::string e = error_of(load);
  expect_one_line(e);
  EXPECT_NE(e.find("load_darknet_weights(" + file.string() +
                   "): the file ends inside darknet layer 1 "
                   "(backbone.downsample0.conv_bn_layer: conv 32->64 3x3 with BN): the layer needs 18688 floats "
                   "(biases 64, scales 64, rolling_mean 64, rolling_variance 64, weights 18432) = 74752 bytes, 32 "
                   "bytes are left"),
            std::string::npos)
      << e;
  EXPECT_NE(e.find("a darknet53.conv.74 backbone file is 162482580 bytes and a full 80-class DarkNet53-YOLOv3 file "
                   "248007048 bytes, this one is 4020"),
            std::string::npos)
      << e;

  // Just past the backbone: either a truncated detector or a backbone with trailing bytes.
  write_weights(file, cfg, 76, Header{});
  truncate_to(file, 162482580 + 100);
  e = error_of(load);
  expect_one_line(e);
  EXPECT_NE(e.find("ends inside darknet layer 75 (neck.yolo_block.0.conv_module.conv0: conv 1024->512 1x1 with BN)"),
            std::string::npos)
      << e;
  EXPECT_NE(e.find("(or, read as a backbone file, 100 bytes follow darknet layer 73 "
                   "(backbone.stage.4.stage.4.3.conv2: conv 512->1024 3x3 with BN))"),
            std::string::npos)
      << e;

  // The full file short of one float: inside the last output conv.
  write_weights(file, cfg, (int)cfg.size(), Header{});
  truncate_to(file, 248007048 - 4);
  e = error_of(load);
  expect_one_line(e);
  EXPECT_NE(e.find("ends inside darknet layer 105 (yolo_head.yolo_output.2: conv 256->255 1x1 with bias, no BN): "
                   "the layer needs 65535 floats (biases 255, weights 65280) = 262140 bytes, 262136 bytes are left"),
            std::string::npos)
      << e;

  // Ends exactly between two layers (after the first output conv, before the transition).
  write_weights(file, cfg, 82, Header{});
  e = error_of(load);
  EXPECT_NE(e.find("the file ends before darknet layer 84 (neck.yolo_transition.0: conv 512->256 1x1 with BN)"),
            std::string::npos)
      << e;

  // Extra bytes after a full file (not a multiple of 4 either).
  write_weights(file, cfg, (int)cfg.size(), Header{}, 6);
  e = error_of(load);
  expect_one_line(e);
  EXPECT_NE(e.find("6 bytes follow the last darknet layer 105 (yolo_head.yolo_output.2"), std::string::npos) << e;
  EXPECT_NE(e.find("this one is 248007054"), std::string::npos) << e;

  // Nothing was written into the model by any failed load.
  for (auto& [k, x] : model->state_dict()) ASSERT_EQ(x.data<float>()[0], kSentinel) << k;
}

TEST(DarknetWeights, DetectorFileForAnotherClassCount) {
  const fs::path dir = fresh_test_dir("darknet_weights_classes");
  const fs::path file = dir / "yolov3.weights";
  write_weights(file, yolov3_cfg(80), 200, Header{});
  auto model = make_model(20);
  fill_sentinel(*model);
  std::ostringstream log;
  const std::string e = error_of([&] { train::load_darknet_weights(*model, file.string(), log); });
  expect_one_line(e);
  EXPECT_NE(e.find("load_darknet_weights(" + file.string() +
                   "): the file holds a detector for 80 classes: darknet layer "
                   "81 (yolo_head.yolo_output.0) has 255 = 3*(5+80) filters in it, the model (num_classes 20) expects "
                   "75 = 3*(5+20)"),
            std::string::npos)
      << e;
  EXPECT_NE(e.find("a full 20-class DarkNet53-YOLOv3 file"), std::string::npos) << e;
  EXPECT_TRUE(log.str().empty());
  for (auto& [k, x] : model->state_dict()) ASSERT_EQ(x.data<float>()[0], kSentinel) << k;

  // A 20-class file (the same cfg with filters=75) loads into the 20-class model.
  const auto cfg20 = yolov3_cfg(20);
  write_weights(file, cfg20, 200, Header{});
  const train::DarknetLoadReport r = train::load_darknet_weights(*model, file.string(), log);
  EXPECT_TRUE(r.full);
  const auto t = by_name(*model);
  std::map<std::string, int> seen;
  expect_layer(t, 93, cfg20[93], "yolo_head.yolo_output.1", seen);
  expect_layer(t, 104, cfg20[104], "neck.yolo_block.2.tip", seen);
}

TEST(DarknetWeights, ModelOnTheCudaDevice) {
  // The values are staged on the CPU and copied into the model's tensors wherever they live.
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  const fs::path dir = fresh_test_dir("darknet_weights_cuda");
  const fs::path file = dir / "darknet53.conv.74";
  const auto cfg = yolov3_cfg(80);
  write_weights(file, cfg, 74, Header{});
  auto model = make_model(80);
  model->to(Device::cuda(0));
  std::ostringstream log;
  EXPECT_FALSE(train::load_darknet_weights(*model, file.string(), log).full);
  const auto t = by_name(*model);
  for (const auto& [key, layer, kind] : {std::tuple<std::string, int, int>{"backbone.conv0.conv.weight", 0, Weights},
                                         {"backbone.stage.4.stage.4.3.conv2.batch_norm._variance", 73, Variance},
                                         {"backbone.stage.2.downsample.conv_bn_layer.batch_norm.bias", 37, Biases}}) {
    const Tensor& x = t.at(key);
    EXPECT_EQ(x.device(), Device::cuda(0)) << key;
    const std::vector<float> v = x.to(Device::cpu()).to_vector();
    int64_t bad = 0;
    for (size_t i = 0; i < v.size(); ++i) bad += v[i] != value(layer, kind, (int64_t)i);
    EXPECT_EQ(bad, 0) << key;
  }
  EXPECT_EQ(t.at("neck.yolo_block.0.tip.conv.weight").to(Device::cpu()).to_vector()[5], 0.f);  // untouched
}

TEST(DarknetWeights, ModelWithoutDarkNet53IsRefused) {
  const fs::path dir = fresh_test_dir("darknet_weights_mobilenet");
  const fs::path file = dir / "darknet53.conv.74";
  write_weights(file, yolov3_cfg(80), 2, Header{});
  auto model = make_model(80, "MobileNetV1");
  std::ostringstream log;
  const std::string e = error_of([&] { train::load_darknet_weights(*model, file.string(), log); });
  expect_one_line(e);
  EXPECT_NE(e.find("load_darknet_weights(" + file.string() +
                   "): the model (YOLOv3) has no tensor "
                   "'backbone.conv0.batch_norm.bias' for darknet layer 0; darknet .weights load into a YOLOv3 with "
                   "the DarkNet53 backbone"),
            std::string::npos)
      << e;
  const std::string missing = (dir / "missing.weights").string();
  EXPECT_EQ(error_of([&] { train::load_darknet_weights(*model, missing, log); }),
            "load_darknet_weights: file not found: " + missing);
}

TEST(DarknetWeights, HeaderVariantsAndFileDetection) {
  const fs::path dir = fresh_test_dir("darknet_weights_header");
  auto write_raw = [&](const std::string& name, const std::vector<int32_t>& words) {
    const fs::path p = dir / name;
    std::ofstream out(p, std::ios::binary);
    out.write(reinterpret_cast<const char*>(words.data()), (std::streamsize)(words.size() * 4));
    return p.string();
  };
  // 0.2 and later: 8-byte seen (low word first).
  train::DarknetHeader h = train::read_darknet_header(write_raw("a.bin", {0, 2, 5, 7, 1, 0}));
  EXPECT_EQ(h.seen, (1ull << 32) + 7);
  EXPECT_EQ(h.seen_bytes, 8);
  EXPECT_EQ(h.header_bytes(), 20);
  // 0.1: int32 seen.
  h = train::read_darknet_header(write_raw("b.bin", {0, 1, 0, 640, 99}));
  EXPECT_EQ(h.seen, 640u);
  EXPECT_EQ(h.seen_bytes, 4);
  // major or minor >= 1000 (darknet's transposed files): int32 seen.
  h = train::read_darknet_header(write_raw("c.bin", {1000, 2, 0, 12}));
  EXPECT_EQ(h.seen, 12u);
  EXPECT_EQ(h.seen_bytes, 4);
  const std::string short_file = write_raw("d.bin", {0, 2, 0, 1});
  const std::string e = error_of([&] { train::read_darknet_header(short_file); });
  EXPECT_EQ(e,
            "load_darknet_weights(" + short_file + "): the file ends inside the header (8-byte seen of version 0.2.0)");
  EXPECT_NE(error_of([&] {
              train::read_darknet_header(write_raw("e.bin", {0, 2}));
            }).find("shorter than darknet's header"),
            std::string::npos);

  // File detection: by name, or by a darknet header.
  EXPECT_TRUE(train::is_darknet_weights("/nowhere/yolov3.weights"));
  EXPECT_TRUE(train::is_darknet_weights("/nowhere/darknet53.conv.74"));
  EXPECT_FALSE(train::is_darknet_weights("/nowhere/model.safetensors"));
  EXPECT_FALSE(train::is_darknet_weights("/nowhere/x.conv.7a"));
  EXPECT_TRUE(train::is_darknet_weights(write_raw("pretrained.bin", {0, 2, 0, 0, 0, 0x3f800000})));
  EXPECT_FALSE(train::is_darknet_weights(write_raw("odd.bin", {0, 2, 0, 0, 0, 1}) + "x"));  // absent file
  {
    // A safetensors file: u64 header length, then '{'.
    const fs::path p = dir / "model.bin";
    std::ofstream out(p, std::ios::binary);
    const uint64_t n = 4;
    out.write(reinterpret_cast<const char*>(&n), 8);
    out << "{}  ";
    out.close();
    EXPECT_FALSE(train::is_darknet_weights(p.string()));
  }
  EXPECT_FALSE(train::is_darknet_weights(write_raw("neg.bin", {-1, 2, 0, 0, 0})));
}

}  // namespace
