// Darknet .weights into DarkNet53-YOLOv3: layout, mapping and sources in train/darknet_weights.h.
// Tested by tests/test_darknet_weights.cpp.
#include "train/darknet_weights.h"

#include <bit>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <ostream>
#include <sstream>
#include <vector>

#include "base/error.h"
#include "train/trainer.h"

namespace engine::train {
namespace fs = std::filesystem;

static_assert(std::endian::native == std::endian::little, "darknet .weights are read as little-endian floats");

namespace {

constexpr int kBackboneCutoff = 74;  // darknet53.conv.74: layers 0..73 (examples/darknet.c partial)

// One conv layer of cfg/yolov3.cfg: its darknet index, the engine prefix, and whether it has BN.
struct DarknetConv {
  int layer;
  std::string prefix;
  bool bn;
};

// cfg/yolov3.cfg (pjreddie/darknet f6afaabc) in order; the layers without weights only advance the
// index. Layers 0-74 are cfg/darknet53.cfg's first 75 layers.
std::vector<DarknetConv> yolov3_convs() {
  std::vector<DarknetConv> v;
  int layer = 0;
  auto conv = [&](const std::string& prefix, bool bn = true) { v.push_back({layer++, prefix, bn}); };
  conv("backbone.conv0");
  conv("backbone.downsample0.conv_bn_layer");
  const int blocks[5] = {1, 2, 8, 8, 4};  // DarkNet_cfg[53]
  for (int i = 0; i < 5; ++i) {
    const std::string s = std::to_string(i);
    for (int j = 0; j < blocks[i]; ++j) {
      const std::string b = j == 0 ? "backbone.stage." + s + ".basicblock0"
                                   : "backbone.stage." + s + ".stage." + s + "." + std::to_string(j);
      conv(b + ".conv1");  // 1x1 halving
      conv(b + ".conv2");  // 3x3 doubling
      ++layer;             // [shortcut] from=-3
    }
    if (i < 4) conv("backbone.stage." + s + ".downsample.conv_bn_layer");
  }
  for (int s = 0; s < 3; ++s) {
    const std::string b = "neck.yolo_block." + std::to_string(s);
    for (const char* c : {"conv0", "conv1", "conv2", "conv3", "route"}) conv(b + ".conv_module." + c);
    conv(b + ".tip");
    conv("yolo_head.yolo_output." + std::to_string(s), false);
    layer += 2;  // [yolo], [route] layers=-4 (back to conv_module.route)
    if (s < 2) {
      conv("neck.yolo_transition." + std::to_string(s));
      layer += 2;  // [upsample], [route] layers=-1, 61 | 36
    }
  }
  return v;
}

// What a darknet conv layer is read into: the engine tensors in file order, with their names.
struct Part {
  const char* what;  // darknet's name for the array
  std::string key;
  Tensor target;
};

struct DarknetLayer {
  DarknetConv conv;
  std::vector<Part> parts;
  int64_t values = 0;
  std::string name() const { return "darknet layer " + std::to_string(conv.layer) + " (" + conv.prefix + ")"; }
  std::string describe() const {
    const Shape& w = parts.back().target.shape();
    std::ostringstream s;
    s << "darknet layer " << conv.layer << " (" << conv.prefix << ": conv " << w[1] << "->" << w[0] << " " << w[2]
      << "x" << w[3] << (conv.bn ? " with BN" : " with bias, no BN") << ")";
    return s.str();
  }
  std::string counts() const {
    std::ostringstream s;
    s << values << " floats (";
    for (size_t i = 0; i < parts.size(); ++i) s << (i ? ", " : "") << parts[i].what << " " << parts[i].target.numel();
    s << ")";
    return s.str();
  }
};

std::vector<DarknetLayer> resolve_layers(nn::DetModel& model, const std::string& path) {
  std::map<std::string, Tensor> tensors;
  for (auto& [name, t] : model.state_dict()) tensors.emplace(name, t);
  auto find = [&](const DarknetConv& c, const std::string& key) {
    auto it = tensors.find(key);
    ENGINE_CHECK(it != tensors.end(), "load_darknet_weights(", path, "): the model (", model.type_name(),
                 ") has no tensor '", key, "' for darknet layer ", c.layer,
                 "; darknet .weights load into a YOLOv3 with the DarkNet53 backbone");
    ENGINE_CHECK(it->second.dtype() == DType::F32, "load_darknet_weights(", path, "): '", key, "' is not f32");
    return it->second;
  };
  std::vector<DarknetLayer> layers;
  for (const DarknetConv& c : yolov3_convs()) {
    DarknetLayer l{c, {}, 0};
    if (c.bn) {
      // load_convolutional_weights: biases (= BN beta), scales, rolling_mean, rolling_variance, weights.
      l.parts = {{"biases", c.prefix + ".batch_norm.bias", {}},
                 {"scales", c.prefix + ".batch_norm.weight", {}},
                 {"rolling_mean", c.prefix + ".batch_norm._mean", {}},
                 {"rolling_variance", c.prefix + ".batch_norm._variance", {}},
                 {"weights", c.prefix + ".conv.weight", {}}};
    } else {
      l.parts = {{"biases", c.prefix + ".bias", {}}, {"weights", c.prefix + ".weight", {}}};
    }
    for (Part& p : l.parts) p.target = find(c, p.key);
    const Tensor& w = l.parts.back().target;
    ENGINE_CHECK(w.dim() == 4, "load_darknet_weights(", path, "): '", l.parts.back().key,
                 "' should be a conv weight [O, I, kH, kW], the model has ", shape_str(w.shape()));
    for (size_t i = 0; i + 1 < l.parts.size(); ++i)
      ENGINE_CHECK(l.parts[i].target.shape() == Shape{w.size(0)}, "load_darknet_weights(", path, "): '", l.parts[i].key,
                   "' is ", shape_str(l.parts[i].target.shape()), ", expected [", w.size(0), "]");
    for (const Part& p : l.parts) l.values += p.target.numel();
    layers.push_back(std::move(l));
  }
  return layers;
}

int64_t sum_values(const std::vector<DarknetLayer>& layers, size_t count) {
  int64_t n = 0;
  for (size_t i = 0; i < count; ++i) n += layers[i].values;
  return n;
}

size_t backbone_count(const std::vector<DarknetLayer>& layers) {
  size_t n = 0;
  while (n < layers.size() && layers[n].conv.layer < kBackboneCutoff) ++n;
  return n;
}

std::string version_str(const DarknetHeader& h) {
  return std::to_string(h.major) + "." + std::to_string(h.minor) + "." + std::to_string(h.revision);
}

// The one-line error for a file whose payload is neither the backbone's nor the whole model's size.
[[noreturn]] void size_error(const std::vector<DarknetLayer>& layers, nn::DetModel& model, const std::string& path,
                             const DarknetHeader& h, uint64_t file_bytes) {
  const int64_t payload = (int64_t)file_bytes - h.header_bytes();
  const size_t nb = backbone_count(layers);
  const int64_t backbone = sum_values(layers, nb), full = sum_values(layers, layers.size());
  const int64_t C = model.num_classes();
  std::ostringstream sizes;
  sizes << "a darknet53.conv.74 backbone file is " << h.header_bytes() + 4 * backbone << " bytes and a full " << C
        << "-class DarkNet53-YOLOv3 file " << h.header_bytes() + 4 * full << " bytes, this one is " << file_bytes;

  // A detector file for another class count: the output convs have A_i*(5+C') filters instead of
  // A_i*(5+C), so the payload differs by (C'-C) * sum_i A_i*(in_i + 1) floats.
  std::vector<const DarknetLayer*> outputs;
  for (const DarknetLayer& l : layers)
    if (!l.conv.bn) outputs.push_back(&l);
  const auto& masks = model.anchor_masks();
  if (payload % 4 == 0 && payload / 4 > backbone && outputs.size() == masks.size()) {
    int64_t per_class = 0;
    for (size_t i = 0; i < outputs.size(); ++i)
      per_class += (int64_t)masks[i].size() * (outputs[i]->parts.back().target.size(1) + 1);
    const int64_t diff = payload / 4 - full;
    if (per_class > 0 && diff % per_class == 0 && C + diff / per_class >= 1) {
      const int64_t file_c = C + diff / per_class;
      const int64_t a = (int64_t)masks[0].size();
      fail("load_darknet_weights(", path, "): the file holds a detector for ", file_c, " classes: ", outputs[0]->name(),
           " has ", a * (5 + file_c), " = ", a, "*(5+", file_c, ") filters in it, the model (num_classes ", C,
           ") expects ", a * (5 + C), " = ", a, "*(5+", C, "); ", sizes.str());
    }
  }
  if (payload > 4 * full)
    fail("load_darknet_weights(", path, "): ", payload - 4 * full, " bytes follow the last ", layers.back().describe(),
         "; ", sizes.str());
  // Truncated: name the layer the file ends in (or before).
  int64_t offset = 0;  // bytes of payload before layer i
  for (size_t i = 0; i < layers.size(); ++i) {
    const int64_t need = 4 * layers[i].values;
    if (offset + need > payload) {
      const int64_t left = payload - offset;
      std::ostringstream extra;
      if (i == nb && left > 0)  // also readable as a backbone file with trailing bytes
        extra << " (or, read as a backbone file, " << left << " bytes follow " << layers[nb - 1].describe() << ")";
      fail("load_darknet_weights(", path, "): the file ends ", left == 0 ? "before " : "inside ", layers[i].describe(),
           ": the layer needs ", layers[i].counts(), " = ", need, " bytes, ", left, " bytes are left", extra.str(),
           "; ", sizes.str());
    }
    offset += need;
  }
  fail("load_darknet_weights(", path, "): unexpected size; ", sizes.str());
}

}  // namespace

DarknetHeader read_darknet_header(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  ENGINE_CHECK(in, "load_darknet_weights: cannot open ", path);
  DarknetHeader h;
  int32_t v[3];
  in.read(reinterpret_cast<char*>(v), sizeof v);
  ENGINE_CHECK(in.gcount() == (std::streamsize)sizeof v, "load_darknet_weights(", path,
               "): the file is shorter than darknet's header (int32 major, minor, revision, then seen)");
  h.major = v[0];
  h.minor = v[1];
  h.revision = v[2];
  ENGINE_CHECK(h.major >= 0 && h.minor >= 0 && h.revision >= 0, "load_darknet_weights(", path,
               "): not a darknet weights file (header version ", version_str(h), ")");
  // src/parser.c load_weights_upto: size_t seen from version 0.2 on, int32 before (and for the
  // transposed major/minor > 1000 files).
  const bool wide = (int64_t)h.major * 10 + h.minor >= 2 && h.major < 1000 && h.minor < 1000;
  h.seen_bytes = wide ? 8 : 4;
  if (wide) {
    uint64_t s = 0;
    in.read(reinterpret_cast<char*>(&s), 8);
    h.seen = s;
  } else {
    int32_t s = 0;
    in.read(reinterpret_cast<char*>(&s), 4);
    h.seen = (uint64_t)(int64_t)s;
  }
  ENGINE_CHECK(in.gcount() == h.seen_bytes, "load_darknet_weights(", path, "): the file ends inside the header (",
               h.seen_bytes, "-byte seen of version ", version_str(h), ")");
  return h;
}

bool is_darknet_weights(const std::string& path) {
  const std::string name = fs::path(path).filename().string();
  auto ends_with = [&](const std::string& s) { return name.size() >= s.size() && name.ends_with(s); };
  if (ends_with(".weights")) return true;
  const size_t dot = name.rfind('.');
  if (dot != std::string::npos && dot + 1 < name.size() && dot >= 5 && name.compare(dot - 5, 6, ".conv.") == 0 &&
      name.find_first_not_of("0123456789", dot + 1) == std::string::npos)
    return true;
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return false;
  std::ifstream in(path, std::ios::binary);
  unsigned char b[12];
  in.read(reinterpret_cast<char*>(b), sizeof b);
  if (in.gcount() != (std::streamsize)sizeof b || b[8] == '{') return false;  // safetensors: u64 length, '{'
  int32_t v[3];
  std::memcpy(v, b, sizeof v);
  for (int32_t x : v)
    if (x < 0 || x >= 1000) return false;
  const uint64_t size = fs::file_size(path, ec);
  const int header = (v[0] * 10 + v[1] >= 2) ? 20 : 16;
  return !ec && size >= (uint64_t)header && (size - header) % 4 == 0;
}

DarknetLoadReport load_darknet_weights(nn::DetModel& model, const std::string& path, std::ostream& log) {
  ENGINE_CHECK(fs::is_regular_file(path), "load_darknet_weights: file not found: ", path);
  const std::vector<DarknetLayer> layers = resolve_layers(model, path);
  DarknetLoadReport r;
  r.header = read_darknet_header(path);
  const uint64_t file_bytes = fs::file_size(path);
  const int64_t payload = (int64_t)file_bytes - r.header.header_bytes();
  const size_t nb = backbone_count(layers);
  size_t count = 0;
  if (payload == 4 * sum_values(layers, layers.size()))
    count = layers.size();
  else if (payload == 4 * sum_values(layers, nb))
    count = nb;
  else
    size_error(layers, model, path, r.header, file_bytes);
  r.full = count == layers.size();
  r.conv_layers = (int)count;

  // Read everything into staging tensors, then copy: a failed read leaves the model untouched.
  std::ifstream in(path, std::ios::binary);
  in.seekg(r.header.header_bytes());
  nn::StateDict entries;
  for (size_t i = 0; i < count; ++i)
    for (const Part& p : layers[i].parts) {
      Tensor t = Tensor::empty(p.target.shape());
      in.read(reinterpret_cast<char*>(t.data<float>()), (std::streamsize)t.nbytes());
      ENGINE_CHECK(in.gcount() == (std::streamsize)t.nbytes(), "load_darknet_weights(", path, "): read error in ",
                   layers[i].describe(), " (", p.what, ")");
      r.values += t.numel();
      entries.emplace_back(p.key, std::move(t));
    }
  model.load_state_dict(entries, /*strict=*/false);

  r.tensors_loaded = (int64_t)entries.size();
  r.tensors_total = (int64_t)model.state_dict().size();
  std::ostringstream s;
  s << "Loading pretrained model from " << path << " (darknet weights v" << version_str(r.header) << ", seen "
    << r.header.seen << "): ";
  if (r.full)
    s << "the whole DarkNet53-YOLOv3, darknet layers 0-" << layers.back().conv.layer << " (" << count
      << " conv layers, " << model.num_classes() << " classes).";
  else
    s << "the DarkNet53 backbone, darknet layers 0-" << kBackboneCutoff - 1 << " (" << count
      << " conv layers); the neck and head keep their initialisation.";
  s << " There are " << r.tensors_loaded << "/" << r.tensors_total << " variables loaded into " << model.type_name()
    << ".";
  r.summary = s.str();
  log << log_prefix(LogStyle::PaddleX) << r.summary << std::endl;
  return r;
}

}  // namespace engine::train
