// PaddleSeg `Dataset` (file lists) and `Cityscapes` (folder layout); see dataset.h for the semantics.
// Tested by tests/test_data.cpp.
#include "data/dataset.h"

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "base/error.h"
#include "base/text.h"

namespace engine::data {
namespace fs = std::filesystem;

namespace {

std::string join(const std::string& root, const std::string& rel) { return (fs::path(root) / rel).string(); }

std::vector<SegDataset::Item> read_file_list(const DatasetSpec& spec, const std::string& key,
                                             const std::string& list_path) {
  const bool need_label = spec.mode != "test";
  std::ifstream f(list_path);
  if (!f) fail(spec.where, ".", key, ": cannot open file list '", list_path, "'");
  std::vector<SegDataset::Item> items;
  std::string line;
  for (int64_t lineno = 1; std::getline(f, line); ++lineno) {
    const std::string s = text::strip(line);
    if (s.empty()) continue;
    const std::string origin = list_path + ":" + std::to_string(lineno);
    const std::vector<std::string> parts = text::split(s, spec.separator);
    const bool ok = parts.size() == 2 || (!need_label && parts.size() == 1);
    if (!ok || parts[0].empty() || (parts.size() == 2 && parts[1].empty()))
      fail(origin, ": expected 'image", spec.separator, "label'", need_label ? "" : " or 'image'", " (separator '",
           spec.separator, "'), got ", parts.size(), " item(s): '", s, "'");
    SegDataset::Item it;
    it.image = join(spec.dataset_root, parts[0]);
    if (parts.size() == 2) it.label = join(spec.dataset_root, parts[1]);
    it.origin = origin;
    items.push_back(std::move(it));
  }
  if (f.bad()) fail(list_path, ": read error");
  if (items.empty()) fail(spec.where, ".", key, ": the file list '", list_path, "' has no entries");
  return items;
}

// Files in dir/*/ whose names end with `suffix`, sorted by full path (Python's sorted(glob(...))).
std::vector<std::string> glob_one_level(const fs::path& dir, const std::string& suffix) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& sub : fs::directory_iterator(dir, ec)) {
    if (!sub.is_directory()) continue;
    for (const auto& f : fs::directory_iterator(sub.path(), ec)) {
      const std::string name = f.path().filename().string();
      if (name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
        out.push_back(f.path().string());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<SegDataset::Item> cityscapes_items(const DatasetSpec& spec) {
  const fs::path root(spec.dataset_root);
  const fs::path img_dir = root / "leftImg8bit" / spec.mode, lab_dir = root / "gtFine" / spec.mode;
  if (!fs::is_directory(img_dir))
    fail(spec.where, ".dataset_root: '", spec.dataset_root, "' is not a Cityscapes folder (missing ", img_dir.string(),
         ")");
  const std::string img_suffix = "_leftImg8bit.png", lab_suffix = "_gtFine_labelTrainIds.png";
  const std::vector<std::string> images = glob_one_level(img_dir, img_suffix);
  const std::vector<std::string> labels =
      fs::is_directory(lab_dir) ? glob_one_level(lab_dir, lab_suffix) : std::vector<std::string>{};
  if (images.empty()) fail(spec.where, ": no */*", img_suffix, " files under ", img_dir.string());
  const bool labelled = !(spec.mode == "test" && labels.empty());
  if (labelled && labels.size() != images.size())
    fail(spec.where, ": Cityscapes ", spec.mode, " has ", images.size(), " images under ", img_dir.string(), " but ",
         labels.size(), " *", lab_suffix, " labels under ", lab_dir.string(),
         " (generate the trainId labels with PaddleSeg's tools/data/convert_cityscapes.py)");
  std::vector<SegDataset::Item> items;
  for (size_t i = 0; i < images.size(); ++i) {
    SegDataset::Item it;
    it.image = images[i];
    it.origin = images[i];
    if (labelled) {
      // city/frame stems must match: the sorted lists are zipped, so one missing file would shift
      // every later pair onto the wrong label.
      // Paths came from iterating img_dir / lab_dir, so they start with those prefixes.
      const std::string is = images[i].substr(img_dir.string().size());
      const std::string ls = labels[i].substr(lab_dir.string().size());
      const std::string istem = is.substr(0, is.size() - img_suffix.size());
      const std::string lstem = ls.substr(0, ls.size() - lab_suffix.size());
      if (istem != lstem)
        fail(spec.where, ": Cityscapes image ", images[i], " pairs with label ", labels[i], " (stems differ: '", istem,
             "' vs '", lstem, "'); a file is missing on one side");
      it.label = labels[i];
    }
    items.push_back(std::move(it));
  }
  return items;
}

}  // namespace

void check_label_values(const Label& label, int64_t num_classes, int64_t ignore_index, const std::string& path) {
  bool ok[256];
  for (int v = 0; v < 256; ++v) ok[v] = v < num_classes || v == ignore_index;
  for (uint8_t v : label.data)
    if (!ok[v])
      fail(path, ": label value ", (int)v, " is out of range (num_classes ", num_classes, ", ignore_index ",
           ignore_index, "); labels must be 0..", num_classes - 1, " or the ignore index");
}

SegDataset::SegDataset(const DatasetSpec& spec, std::vector<Item> items, int64_t num_classes, int64_t ignore_index)
    : where_(spec.where),
      mode_(spec.mode),
      items_(std::move(items)),
      num_classes_(num_classes),
      ignore_index_(ignore_index),
      pipeline_(build_pipeline(spec.transforms, ignore_index)) {}

void SegDataset::repeat_items(int64_t times) {
  ENGINE_CHECK(times >= 1, where_, ": repeats must be >= 1, got ", times);
  const size_t n = items_.size();
  items_.reserve(n * (size_t)times);
  for (int64_t t = 1; t < times; ++t)
    for (size_t i = 0; i < n; ++i) items_.push_back(items_[i]);
}

const SegDataset::Item& SegDataset::item(int64_t index) const {
  ENGINE_CHECK(index >= 0 && index < size(), where_, ": sample index ", index, " out of range (size ", size(), ")");
  return items_[(size_t)index];
}

Sample SegDataset::load_raw(int64_t index) const {
  const Item& it = item(index);
  Sample s;
  s.image = read_image(it.image);
  if (!it.label.empty()) {
    s.label = read_label(it.label);
    s.has_label = true;
    if (s.label.h != s.image.h || s.label.w != s.image.w)
      fail(it.label, ": label is ", s.label.h, "x", s.label.w, " (HxW) but its image ", it.image, " is ", s.image.h,
           "x", s.image.w);
    check_label_values(s.label, num_classes_, ignore_index_, it.label);
  }
  return s;
}

Sample SegDataset::load(int64_t index, Rng& rng) const {
  Sample s = load_raw(index);
  if (mode_ == "train") {
    pipeline_.apply(s, rng);
  } else {  // val/test: transform the image only; the label stays at the original size
    const bool had = s.has_label;
    Label keep = std::move(s.label);
    s.label = Label{};
    s.has_label = false;
    pipeline_.apply(s, rng);
    s.label = std::move(keep);
    s.has_label = had;
  }
  return s;
}

std::shared_ptr<SegDataset> make_dataset(const DatasetSpec& spec) {
  const std::string& w = spec.where;
  ENGINE_CHECK(spec.mode == "train" || spec.mode == "val" || spec.mode == "test", w,
               ".mode: must be train, val or test, got '", spec.mode, "'");
  ENGINE_CHECK(spec.img_channels == 3, w, ".img_channels: only 3 (RGB) is supported, got ", spec.img_channels);
  ENGINE_CHECK(spec.ignore_index >= 0 && spec.ignore_index <= 255, w,
               ".ignore_index: must be in 0..255 (labels are 8-bit PNGs), got ", spec.ignore_index);
  ENGINE_CHECK(!spec.dataset_root.empty(), w, ".dataset_root: required");
  ENGINE_CHECK(fs::is_directory(spec.dataset_root), w, ".dataset_root: directory '", spec.dataset_root,
               "' does not exist");
  std::vector<SegDataset::Item> items;
  int64_t num_classes = spec.num_classes, ignore_index = spec.ignore_index;
  if (spec.type == "Dataset") {
    ENGINE_CHECK(spec.num_classes >= 1 && spec.num_classes <= 256, w,
                 ".num_classes: must be a positive number of classes (at most 256), got ", spec.num_classes);
    ENGINE_CHECK(!spec.separator.empty(), w, ".separator: must not be empty");
    const std::string key = spec.mode + "_path";
    const std::string& list = spec.mode == "train" ? spec.train_path
                              : spec.mode == "val" ? spec.val_path
                                                   : spec.test_path;
    ENGINE_CHECK(!list.empty(), w, ".", key, ": required when mode is ", spec.mode);
    items = read_file_list(spec, key, list);
  } else if (spec.type == "Cityscapes") {
    ENGINE_CHECK(spec.num_classes == 0 || spec.num_classes == 19, w, ".num_classes: Cityscapes has 19 classes, got ",
                 spec.num_classes);
    ENGINE_CHECK(spec.ignore_index == 255, w, ".ignore_index: Cityscapes uses 255, got ", spec.ignore_index);
    num_classes = 19;
    ignore_index = 255;
    items = cityscapes_items(spec);
  } else {
    fail(w, ".type: unknown dataset type '", spec.type, "' (supported: Dataset, Cityscapes)");
  }
  for (const auto& it : items) {
    if (!fs::is_regular_file(it.image)) fail(it.image, ": image file not found (listed at ", it.origin, ")");
    if (!it.label.empty() && !fs::is_regular_file(it.label))
      fail(it.label, ": label file not found (listed at ", it.origin, ")");
  }
  return std::make_shared<SegDataset>(spec, std::move(items), num_classes, ignore_index);
}

}  // namespace engine::data
