// PaddleX 2.x VOCDetection / CocoDetection parsing; see det_dataset.h for the semantics and what differs.
// Tested by tests/test_det_data.cpp.
#include "data/det_dataset.h"

#include <tinyxml2.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <unordered_map>

#include "base/error.h"
#include "base/text.h"

namespace engine::data {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// The lines of a text file (a UTF-8 byte order mark dropped, as PaddleX's chardet-detected decoding does).
std::vector<std::string> read_lines(const std::string& path, const std::string& what) {
  std::ifstream f(path);
  if (!f) fail(what, ": cannot open '", path, "'");
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(f, line)) lines.push_back(line);
  if (f.bad()) fail(path, ": read error");
  if (!lines.empty() && lines[0].compare(0, 3, "\xEF\xBB\xBF") == 0) lines[0].erase(0, 3);
  return lines;
}

// paddlex.utils.is_pic: the text after the last '.' of the whole path, case-sensitive.
bool is_pic(const std::string& path) {
  static const std::set<std::string> ok = {"JPEG", "jpeg", "JPG", "jpg", "BMP", "bmp", "PNG", "png"};
  const size_t dot = path.rfind('.');
  return ok.count(dot == std::string::npos ? path : path.substr(dot + 1)) > 0;
}

// os.path.join(data_dir, rel) then paddlex.utils.path_normalization ('\' -> '/' off Windows).
std::string join_normalized(const std::string& dir, const std::string& rel) {
  std::string p = dir.empty() ? rel : (fs::path(dir) / rel).string();
  std::replace(p.begin(), p.end(), '\\', '/');
  return p;
}

// An image side as PaddleX stores it (numpy astype('int32'), which truncates). A value int32 cannot
// hold is refused: numpy would store an arbitrary number, and C++'s conversion is undefined.
int int32_side(double v, const std::string& where, const std::string& what) {
  if (!(v > -2147483649.0 && v < 2147483648.0)) fail(where, ": ", what, " must fit a 32-bit integer, got ", v);
  return static_cast<int>(v);
}

// Python float(text) for XML values: a finite decimal number (hex and inf/nan refused).
bool parse_number(const char* text, double& out) {
  if (!text) return false;
  const std::string s = text::strip(text);
  if (s.empty() || s.find_first_of("xXpP") != std::string::npos) return false;
  char* end = nullptr;
  out = std::strtod(s.c_str(), &end);
  return end == s.c_str() + s.size() && std::isfinite(out);
}

// Python int(text) for <difficult>: optional sign, digits with single '_' between them; false otherwise.
bool parse_python_int(const char* text, int64_t& out) {
  if (!text) return false;
  const std::string s = text::strip(text);
  size_t i = 0;
  bool neg = false;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) neg = s[i++] == '-';
  if (i >= s.size()) return false;
  int64_t v = 0;
  bool prev_digit = false;
  for (; i < s.size(); ++i) {
    const char c = s[i];
    if (c >= '0' && c <= '9') {
      v = v * 10 + (c - '0');
      if (v > (int64_t)1e15) v = (int64_t)1e15;  // only zero / non-zero matters
      prev_digit = true;
    } else if (c == '_' && prev_digit && i + 1 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '9') {
      prev_digit = false;
    } else {
      return false;
    }
  }
  out = neg ? -v : v;
  return true;
}

bool iequals(const char* a, const char* b) {
  for (; *a && *b; ++a, ++b)
    if (std::tolower((unsigned char)*a) != std::tolower((unsigned char)*b)) return false;
  return *a == *b;
}

// The first direct child element whose tag equals `name` ignoring ASCII case.
const tinyxml2::XMLElement* child_ci(const tinyxml2::XMLElement* parent, const char* name) {
  for (const tinyxml2::XMLElement* e = parent->FirstChildElement(); e; e = e->NextSiblingElement())
    if (iequals(e->Name(), name)) return e;
  return nullptr;
}

std::string text_of(const tinyxml2::XMLElement* e) {
  const char* t = e ? e->GetText() : nullptr;
  return t ? t : "";
}

// Python's float floor division a // b (CPython float_floor_div), for empty_ratio's count.
double python_floordiv(double a, double b) {
  double mod = std::fmod(a, b);
  double div = (a - mod) / b;
  if (mod != 0 && ((b < 0) != (mod < 0))) div -= 1.0;
  if (div == 0) return std::copysign(0.0, a / b);
  double fl = std::floor(div);
  if (div - fl > 0.5) fl += 1.0;
  return fl;
}

std::array<float, 4> to_float_box(double x1, double y1, double x2, double y2) {
  return {(float)x1, (float)y1, (float)x2, (float)y2};
}

struct VocParseState {
  const std::map<std::string, int32_t>* class_of = nullptr;
  std::string label_list;
  int64_t ct = 0;  // PaddleX's running image id
};

// One VOC XML into a record (boxes clipped, invalid ones skipped); returns the number of <object> elements.
int parse_voc_xml(const std::string& xml, DetRecord& rec, VocParseState& st) {
  tinyxml2::XMLDocument doc;
  if (doc.LoadFile(xml.c_str()) != tinyxml2::XML_SUCCESS)
    fail(xml, ":", doc.ErrorLineNum(), ": malformed XML (", doc.ErrorName(), ")");
  const tinyxml2::XMLElement* root = doc.RootElement();
  if (!root) fail(xml, ": malformed XML (no root element)");
  if (const tinyxml2::XMLElement* id = root->FirstChildElement("id")) {
    int64_t v = 0;
    const std::string t = text_of(id);
    if (!parse_python_int(t.c_str(), v)) fail(xml, ": <id> must be an integer, got '", t, "'");
    st.ct = v;
  }
  rec.image_id = st.ct;
  double im_w = 0, im_h = 0;
  if (const tinyxml2::XMLElement* size = child_ci(root, "size")) {
    for (const char* tag : {"width", "height"}) {
      const tinyxml2::XMLElement* e = child_ci(size, tag);
      if (!e) fail(xml, ": <size> has no <", tag, ">");
      double v = 0;
      if (!parse_number(e->GetText(), v)) fail(xml, ": <size><", tag, "> must be a number, got '", text_of(e), "'");
      (tag[0] == 'w' ? im_w : im_h) = v;
    }
  }
  rec.width = int32_side(im_w, xml, "<size><width>");
  rec.height = int32_side(im_h, xml, "<size><height>");
  const bool clip_far = im_w > 0.5 && im_h > 0.5;
  int num_objects = 0;
  for (const tinyxml2::XMLElement* obj = root->FirstChildElement(); obj; obj = obj->NextSiblingElement()) {
    if (!iequals(obj->Name(), "object")) continue;
    const int k = ++num_objects;  // 1-based, for messages
    const tinyxml2::XMLElement* name_el = child_ci(obj, "name");
    if (!name_el) fail(xml, ": object ", k, " has no <name>");
    const std::string cname = text::strip(text_of(name_el));
    if (cname.empty()) fail(xml, ": object ", k, ": <name> is empty");
    const auto cls = st.class_of->find(cname);
    if (cls == st.class_of->end())
      fail(xml, ": object ", k, ": unknown class name '", cname, "' (not in ", st.label_list, ")");
    int64_t difficult = 0;
    if (const tinyxml2::XMLElement* d = child_ci(obj, "difficult"))
      if (!parse_python_int(d->GetText(), difficult)) difficult = 0;  // PaddleX: int() failing counts as 0
    const tinyxml2::XMLElement* bb = child_ci(obj, "bndbox");
    if (!bb) continue;  // PaddleX: "There's no field '<bndbox>' in one of object, so this object will be ignored."
    double v[4];
    const char* tags[4] = {"xmin", "ymin", "xmax", "ymax"};
    for (int i = 0; i < 4; ++i) {
      const tinyxml2::XMLElement* e = child_ci(bb, tags[i]);
      if (!e) fail(xml, ": object ", k, " (", cname, "): <bndbox> has no <", tags[i], ">");
      if (!parse_number(e->GetText(), v[i]))
        fail(xml, ": object ", k, " (", cname, "): <", tags[i], "> must be a number, got '", text_of(e), "'");
    }
    const double x1 = std::max(0.0, v[0]), y1 = std::max(0.0, v[1]);
    double x2 = v[2], y2 = v[3];
    if (clip_far) {
      x2 = std::min(im_w - 1, x2);
      y2 = std::min(im_h - 1, y2);
    }
    if (!(x2 >= x1 && y2 >= y1)) continue;  // PaddleX: "... does not satisfy xmin <= xmax and ymin <= ymax ..."
    rec.boxes.push_back(to_float_box(x1, y1, x2, y2));
    rec.classes.push_back(cls->second);
    rec.difficult.push_back(difficult != 0);
    CocoGtBox g;
    g.category = cls->second;
    g.x = x1, g.y = y1, g.w = x2 - x1, g.h = y2 - y1;
    g.area = (x2 - x1) * (y2 - y1);
    rec.coco_gts.push_back(g);
  }
  return num_objects;
}

// JSON accessors with messages naming the file and the key.
const json& member(const json& obj, const char* key, const std::string& where) {
  const auto it = obj.find(key);
  if (it == obj.end()) fail(where, ": missing '", key, "'");
  return *it;
}
int64_t json_int(const json& v, const std::string& where, const char* key) {
  if (!v.is_number_integer()) fail(where, ": '", key, "' must be an integer, got ", v.dump());
  return v.get<int64_t>();
}
double json_number(const json& v, const std::string& where, const char* key) {
  if (!v.is_number()) fail(where, ": '", key, "' must be a number, got ", v.dump());
  return v.get<double>();
}

}  // namespace

DetDataset::DetDataset(const DetDatasetSpec& spec) : type_(spec.type), where_(spec.where) {
  const std::string& w = spec.where;
  ENGINE_CHECK(!spec.data_dir.empty(), w, ".data_dir: required");
  ENGINE_CHECK(fs::is_directory(spec.data_dir), w, ".data_dir: directory '", spec.data_dir, "' does not exist");
  ENGINE_CHECK(std::isfinite(spec.empty_ratio), w, ".empty_ratio: must be a finite number");
  if (spec.type == "VOCDetection") {
    ENGINE_CHECK(!spec.file_list.empty(), w, ".file_list: required for VOCDetection");
    ENGINE_CHECK(!spec.label_list.empty(), w, ".label_list: required for VOCDetection");
    parse_voc(spec);
  } else if (spec.type == "CocoDetection") {
    ENGINE_CHECK(!spec.ann_file.empty(), w, ".ann_file: required for CocoDetection");
    parse_coco(spec);
  } else {
    fail(w, ".type: unknown detection dataset type '", spec.type, "' (supported: VOCDetection, CocoDetection)");
  }
}

void DetDataset::parse_voc(const DetDatasetSpec& spec) {
  std::map<std::string, int32_t> class_of;
  std::map<std::string, int> line_of;
  const std::vector<std::string> label_lines = read_lines(spec.label_list, spec.where + ".label_list");
  for (size_t i = 0; i < label_lines.size(); ++i) {
    const std::string name = text::strip(label_lines[i]);
    const int lineno = (int)i + 1;
    if (name.empty())
      fail(spec.label_list, ":", lineno, ": blank line; every line must name one class (the line number is the id)");
    if (line_of.count(name))
      fail(spec.label_list, ":", lineno, ": class name '", name, "' repeats line ", line_of[name]);
    line_of[name] = lineno;
    class_of[name] = (int32_t)labels_.size();
    labels_.push_back(name);
    category_ids_.push_back((int64_t)labels_.size());  // PaddleX's VOC->COCO category id: class + 1
  }
  if (labels_.empty()) fail(spec.where, ".label_list: '", spec.label_list, "' names no class");

  VocParseState st;
  st.class_of = &class_of;
  st.label_list = spec.label_list;
  std::vector<DetRecord> negatives;
  int64_t parsed = 0;
  const std::vector<std::string> lines = read_lines(spec.file_list, spec.where + ".file_list");
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::string s = text::strip(lines[i]);
    if (s.empty()) continue;
    const std::string origin = spec.file_list + ":" + std::to_string(i + 1);
    const std::vector<std::string> parts = text::split_whitespace(s);
    if (parts.size() > 2)
      fail(origin, ": A space is defined as the separator, but it exists in image or label name ", s, ".");
    if (parts.size() < 2) fail(origin, ": expected 'image annotation' (two paths separated by a space), got '", s, "'");
    DetRecord rec;
    rec.image = join_normalized(spec.data_dir, parts[0]);
    const std::string xml = join_normalized(spec.data_dir, parts[1]);
    rec.origin = origin;
    if (!is_pic(rec.image))
      fail(origin, ": '", parts[0], "' is not an image name (PaddleX reads .jpg .jpeg .png .bmp, also all upper case)");
    if (!fs::is_regular_file(rec.image)) fail(rec.image, ": image file not found (listed at ", origin, ")");
    if (!fs::is_regular_file(xml)) fail(xml, ": annotation file not found (listed at ", origin, ")");
    const int n = parse_voc_xml(xml, rec, st);
    ++parsed;
    ++st.ct;
    max_objects_ = std::max(max_objects_, n);
    if (rec.boxes.empty())
      negatives.push_back(std::move(rec));
    else
      records_.push_back(std::move(rec));
  }
  if (parsed == 0)
    fail(spec.where, ".file_list: No voc record found in ", spec.file_list, " (the list has no entries)");
  num_positive_ = (int64_t)records_.size();
  const size_t num_neg = negatives.size();
  add_negatives(spec, std::move(negatives));
  if (records_.empty())
    fail(spec.where, ".file_list: none of the ", num_neg, " images of ", spec.file_list,
         " has an object with a valid box",
         spec.allow_empty ? " and empty_ratio keeps none of them" : " (allow_empty keeps images without objects)");
}

void DetDataset::parse_coco(const DetDatasetSpec& spec) {
  const std::string& path = spec.ann_file;
  std::ifstream f(path);
  if (!f) fail(spec.where, ".ann_file: cannot open '", path, "'");
  json j;
  try {
    j = json::parse(f);
  } catch (const json::exception& e) {
    fail(path, ": malformed JSON: ", e.what());
  }
  if (!j.is_object()) fail(path, ": expected a JSON object with 'images', 'annotations' and 'categories'");

  // Categories in file order = pycocotools getCatIds() = PaddleX's class ids.
  const json& cats = member(j, "categories", path);
  if (!cats.is_array()) fail(path, ": 'categories' must be a list");
  std::unordered_map<int64_t, int32_t> class_of_cat;
  std::map<std::string, int64_t> cat_of_name;
  for (size_t i = 0; i < cats.size(); ++i) {
    const std::string where = path + ": categories[" + std::to_string(i) + "]";
    if (!cats[i].is_object()) fail(where, ": expected an object with 'id' and 'name'");
    const int64_t id = json_int(member(cats[i], "id", where), where, "id");
    const json& name = member(cats[i], "name", where);
    if (!name.is_string()) fail(where, ": 'name' must be a string, got ", name.dump());
    const std::string n = name.get<std::string>();
    if (class_of_cat.count(id)) fail(where, ": category id ", id, " repeats");
    if (cat_of_name.count(n)) fail(where, ": category name '", n, "' repeats (id ", cat_of_name[n], ")");
    class_of_cat[id] = (int32_t)labels_.size();
    cat_of_name[n] = id;
    labels_.push_back(n);
    category_ids_.push_back(id);
  }
  if (labels_.empty()) fail(path, ": 'categories' is empty");

  struct Img {
    int64_t id;
    std::string file;
    double w, h;
    std::vector<size_t> anns;  // indices into 'annotations', file order
  };
  std::vector<Img> images;
  std::unordered_map<int64_t, size_t> image_at;
  if (j.contains("images")) {
    const json& ims = j["images"];
    if (!ims.is_array()) fail(path, ": 'images' must be a list");
    for (size_t i = 0; i < ims.size(); ++i) {
      const std::string where = path + ": images[" + std::to_string(i) + "]";
      if (!ims[i].is_object()) fail(where, ": expected an object with 'id', 'file_name', 'width' and 'height'");
      Img im;
      im.id = json_int(member(ims[i], "id", where), where, "id");
      const json& fn = member(ims[i], "file_name", where);
      if (!fn.is_string()) fail(where, ": 'file_name' must be a string, got ", fn.dump());
      im.file = fn.get<std::string>();
      im.w = json_number(member(ims[i], "width", where), where, "width");
      im.h = json_number(member(ims[i], "height", where), where, "height");
      if (!(im.w > 0 && im.h > 0)) fail(where, ": 'width' and 'height' must be positive, got ", im.w, "x", im.h);
      int32_side(im.w, where, "'width'");
      int32_side(im.h, where, "'height'");
      if (image_at.count(im.id)) fail(where, ": image id ", im.id, " repeats");
      image_at[im.id] = images.size();
      images.push_back(std::move(im));
    }
  }
  struct Ann {
    int32_t cls;
    double x, y, w, h, area;
    bool crowd;
  };
  std::vector<Ann> anns;
  if (j.contains("annotations")) {
    const json& as = j["annotations"];
    if (!as.is_array()) fail(path, ": 'annotations' must be a list");
    for (size_t i = 0; i < as.size(); ++i) {
      const std::string where = path + ": annotations[" + std::to_string(i) + "]";
      if (!as[i].is_object()) fail(where, ": expected an object with 'image_id', 'category_id' and 'bbox'");
      const int64_t image_id = json_int(member(as[i], "image_id", where), where, "image_id");
      const int64_t cat = json_int(member(as[i], "category_id", where), where, "category_id");
      const auto c = class_of_cat.find(cat);
      if (c == class_of_cat.end()) fail(where, ": category_id ", cat, " is not in 'categories'");
      const json& bb = member(as[i], "bbox", where);
      if (!bb.is_array() || bb.size() != 4 ||
          !std::all_of(bb.begin(), bb.end(), [](const json& v) { return v.is_number(); }))
        fail(where, ": 'bbox' must be [x, y, width, height] (4 numbers), got ", bb.dump());
      Ann a;
      a.cls = c->second;
      a.x = bb[0].get<double>(), a.y = bb[1].get<double>(), a.w = bb[2].get<double>(), a.h = bb[3].get<double>();
      a.area = as[i].contains("area") ? json_number(as[i]["area"], where, "area") : a.w * a.h;
      a.crowd = false;
      if (as[i].contains("iscrowd")) {
        const json& ic = as[i]["iscrowd"];
        if (ic.is_boolean())
          a.crowd = ic.get<bool>();
        else
          a.crowd = json_number(ic, where, "iscrowd") != 0;
      }
      const auto im = image_at.find(image_id);
      if (im != image_at.end()) images[im->second].anns.push_back(anns.size());
      anns.push_back(a);
    }
  }

  std::sort(images.begin(), images.end(), [](const Img& a, const Img& b) { return a.id < b.id; });
  std::vector<DetRecord> negatives;
  int64_t parsed = 0;
  for (const Img& im : images) {
    DetRecord rec;
    rec.image = spec.data_dir.empty() ? im.file : (fs::path(spec.data_dir) / im.file).string();
    rec.origin = path + ": image id " + std::to_string(im.id);
    if (!is_pic(rec.image))
      fail(rec.origin, ": file_name '", im.file,
           "' is not an image name (PaddleX reads .jpg .jpeg .png .bmp, also all upper case)");
    rec.image_id = im.id;
    rec.width = static_cast<int>(im.w);  // checked by int32_side above
    rec.height = static_cast<int>(im.h);
    int instances = 0;
    for (size_t ai : im.anns) {
      const Ann& a = anns[ai];
      CocoGtBox g;
      g.category = a.cls;
      g.x = a.x, g.y = a.y, g.w = a.w, g.h = a.h;
      g.area = a.area;
      g.iscrowd = a.crowd;
      rec.coco_gts.push_back(g);
      if (a.crowd) continue;
      ++instances;
      const double x1 = std::max(0.0, a.x), y1 = std::max(0.0, a.y);
      const double x2 = std::min(im.w - 1, x1 + std::max(0.0, a.w));
      const double y2 = std::min(im.h - 1, y1 + std::max(0.0, a.h));
      if (!(a.area > 0 && x2 >= x1 && y2 >= y1)) continue;  // PaddleX: "Found an invalid bbox in annotations"
      rec.boxes.push_back(to_float_box(x1, y1, x2, y2));
      rec.classes.push_back(a.cls);
      rec.difficult.push_back(0);
    }
    if (rec.boxes.empty() && !spec.allow_empty) continue;
    ++parsed;
    max_objects_ = std::max(max_objects_, instances);
    if (rec.boxes.empty())
      negatives.push_back(std::move(rec));
    else
      records_.push_back(std::move(rec));
  }
  if (parsed == 0)
    fail(spec.where, ".ann_file: No coco record found in ", path, " (", images.size(), " images, none with a valid ",
         "non-crowd box", spec.allow_empty ? "" : "; allow_empty keeps images without boxes", ")");
  num_positive_ = (int64_t)records_.size();
  add_negatives(spec, std::move(negatives));
  if (records_.empty())
    fail(spec.where, ".ann_file: none of the images of ", path, " has a valid box and empty_ratio keeps none of them");
  for (const DetRecord& r : records_)
    if (!fs::is_regular_file(r.image)) fail(r.image, ": image file not found (listed at ", r.origin, ")");
}

void DetDataset::add_negatives(const DetDatasetSpec& spec, std::vector<DetRecord> negatives) {
  if (!spec.allow_empty || negatives.empty()) return;
  const double r = spec.empty_ratio;
  size_t keep = negatives.size();
  if (r >= 0 && r < 1) {
    // PaddleX: min((total * r - neg) // (1 - r), len(neg_file_list)) with total = positives, neg = 0.
    const double want = python_floordiv((double)num_positive_ * r - 0.0, 1.0 - r);
    keep = want <= 0 ? 0 : std::min(keep, (size_t)want);
  }
  // Evenly spaced over the negatives: the centres of `keep` equal parts.
  const size_t n = negatives.size();
  for (size_t i = 0; i < keep; ++i) records_.push_back(std::move(negatives[(2 * i + 1) * n / (2 * keep)]));
}

const DetRecord& DetDataset::record(int64_t index) const {
  ENGINE_CHECK(index >= 0 && index < size(), where_, ": sample index ", index, " out of range (size ", size(), ")");
  return records_[(size_t)index];
}

DetSample DetDataset::load_raw(int64_t index) const {
  const DetRecord& rec = record(index);
  DetSample s;
  s.image = read_image(rec.image);
  s.boxes = rec.boxes;
  s.classes = rec.classes;
  s.scores.assign(rec.boxes.size(), 1.f);
  s.difficult = rec.difficult;
  s.orig_h = s.image.h;
  s.orig_w = s.image.w;
  s.index = index;
  s.origin = rec.origin;
  return s;
}

}  // namespace engine::data
